//! Detection: pure code that turns call events into flags. No I/O, time passed in, so the
//! service, `lantern replay`, the tests and the benchmarks all run exactly this.

pub mod cues;
pub mod mental_health;
pub mod model;
pub mod patterns;
pub mod repeat;
pub mod text;

use chrono::{DateTime, Utc};
use lantern_shared::config::Config;
use lantern_shared::domain::event::CallEvent;
pub use lantern_shared::domain::flag::{CueReason, FlagKind, FlagMessage, FlagStatus, Reasons, RuleReason};
use lantern_shared::domain::ingest::IngestContext;
use lantern_shared::domain::{Identity, Severity};
pub use mental_health::{Assessment, MentalHealth};
use repeat::{CallAttrs, CallFacts, Observed, RepeatEngine, Rules};
use std::collections::HashMap;

/// How long a call's mental-health state is kept for later `updated` events.
pub const MH_CALL_MEMORY_MS: i64 = 3 * 86_400_000;

/// A flag to publish (SPEC section 5) and what the service stores about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Flag {
    pub message: FlagMessage,
    pub meta: FlagMeta,
}

/// What the service stores about a flag besides its message.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FlagMeta {
    pub flag_uuid: u128,
    pub raised: bool,
    /// For repeat-caller flags: the identity and its raise time (event time).
    pub identity: Option<Identity>,
    pub t0_ms: i64,
    pub raised_ms: i64,
}

impl Flag {
    pub fn to_json(&self) -> String {
        self.message.to_json()
    }
}

#[derive(Debug, Clone, Copy)]
struct MhState {
    flag_id: u128,
    severity: Severity,
    raised_ms: i64,
    occurred_ms: i64,
}

/// What one event led to.
#[derive(Debug, Default)]
pub struct Detection {
    /// Identities counted, when the event was a call's first.
    pub counted: Observed,
    pub flags: Vec<Flag>,
}

pub use lantern_shared::domain::clock::rfc3339_ms as fmt_ms;

pub fn uuid_string(id: u128) -> String {
    uuid::Uuid::from_u128(id).hyphenated().to_string()
}

/// A new time-ordered flag id.
pub fn new_flag_id() -> u128 {
    uuid::Uuid::now_v7().as_u128()
}

/// Repeat-caller engine and mental-health detection together, with each call's
/// mental-health state.
pub struct Detector {
    pub repeat: RepeatEngine,
    /// Shared, so a replay's workers scan with the same lexicon, patterns and model.
    mental_health: std::sync::Arc<MentalHealth>,
    mh_calls: HashMap<String, MhState>,
}

/// What the mental-health layers say about an event's notes and incident: pure, so it can run
/// on any thread and in any order.
pub fn assess(scanner: &MentalHealth, ev: &CallEvent) -> Assessment {
    scanner.assess(ev.notes.as_deref(), ev.incident.kind.as_deref(), &ev.incident.qualifiers)
}

impl Detector {
    pub fn new(config: &Config, ingest: &IngestContext) -> Detector {
        Detector {
            repeat: RepeatEngine::new(Rules::from_config(config, ingest)),
            mental_health: std::sync::Arc::new(MentalHealth::new(&config.mental_health)),
            mh_calls: HashMap::new(),
        }
    }

    /// The same rules and mental-health layers with no history held: what a rebuild from the
    /// database fills, without loading the model and compiling the lexicon a second time.
    pub fn emptied(&self) -> Detector {
        Detector {
            repeat: RepeatEngine::new(self.repeat.rules().clone()),
            mental_health: self.mental_health.clone(),
            mh_calls: HashMap::new(),
        }
    }

    /// Swaps in new rules, lexicon, patterns and model; the history held stays.
    pub fn reload(&mut self, config: &Config, ingest: &IngestContext) {
        self.repeat.set_rules(Rules::from_config(config, ingest));
        self.mental_health = std::sync::Arc::new(MentalHealth::new(&config.mental_health));
    }

    pub fn mental_health(&self) -> &MentalHealth {
        &self.mental_health
    }

    /// The mental-health layers, to scan with on other threads ([`assess`]).
    pub fn scanner(&self) -> std::sync::Arc<MentalHealth> {
        self.mental_health.clone()
    }

    /// Runs one valid, non-duplicate event. `new_call` is true for the first event of a call.
    pub fn on_event(&mut self, ev: &CallEvent, new_call: bool, now: DateTime<Utc>, ids: &mut dyn FnMut() -> u128) -> Detection {
        // The scan changes nothing, so a failure inside it leaves no state half-changed.
        let assessment = assess(&self.mental_health, ev);
        self.on_assessed(ev, new_call, now, ids, assessment)
    }

    /// [`Detector::on_event`] for an event whose notes were already scanned (by [`assess`],
    /// perhaps on another thread): the part that changes state, in event order.
    pub fn on_assessed(
        &mut self,
        ev: &CallEvent,
        new_call: bool,
        now: DateTime<Utc>,
        ids: &mut dyn FnMut() -> u128,
        assessment: Assessment,
    ) -> Detection {
        let now_ms = now.timestamp_millis();
        let mut out = Detection::default();
        if new_call {
            let facts = CallFacts {
                occurred_ms: ev.occurred_ms(),
                attrs: CallAttrs::new(ev.channel, ev.caller.communal_address, ev.caller.age_band),
                phone: ev.caller.phone,
                address: ev.caller.address,
            };
            out.counted = self.repeat.observe(&facts, now_ms, ids);
            for hit in &out.counted.hits {
                out.flags.push(Flag {
                    message: FlagMessage {
                        flag_id: uuid_string(hit.flag_id),
                        status: hit.status,
                        kind: FlagKind::RepeatCaller,
                        severity: hit.severity,
                        call_id: ev.call_id.clone(),
                        event_id: ev.event_id.clone(),
                        occurred_at: ev.occurred_at.to_rfc3339(),
                        raised_at: fmt_ms(hit.raised_ms),
                        updated_at: (hit.status == FlagStatus::Updated).then(|| fmt_ms(now_ms)),
                        channel: ev.channel,
                        division: ev.division.clone(),
                        caller_ref: Some(hit.caller_ref.to_string()),
                        reasons: Reasons::Rules(hit.reasons.clone()),
                        score: None,
                    },
                    meta: FlagMeta {
                        flag_uuid: hit.flag_id,
                        raised: hit.status == FlagStatus::Raised,
                        identity: Some(hit.identity),
                        t0_ms: hit.t0_ms,
                        raised_ms: hit.raised_ms,
                    },
                });
            }
        }
        if let Some(flag) = self.mental_health_flag(ev, assessment, now_ms, ids) {
            out.flags.push(flag);
        }
        out
    }

    fn mental_health_flag(&mut self, ev: &CallEvent, assessment: Assessment, now_ms: i64, ids: &mut dyn FnMut() -> u128) -> Option<Flag> {
        let severity = assessment.severity?;
        let Assessment { reasons: hits, score, .. } = assessment;
        let (status, state) = match self.mh_calls.get(&ev.call_id) {
            None => {
                let s = MhState { flag_id: ids(), severity, raised_ms: now_ms, occurred_ms: ev.occurred_ms() };
                (FlagStatus::Raised, s)
            }
            Some(s) if severity > s.severity => (FlagStatus::Updated, MhState { severity, ..*s }),
            Some(_) => return None,
        };
        self.mh_calls.insert(ev.call_id.clone(), state);
        Some(Flag {
            message: FlagMessage {
                flag_id: uuid_string(state.flag_id),
                status,
                kind: FlagKind::MentalHealth,
                severity,
                call_id: ev.call_id.clone(),
                event_id: ev.event_id.clone(),
                occurred_at: ev.occurred_at.to_rfc3339(),
                raised_at: fmt_ms(state.raised_ms),
                updated_at: (status == FlagStatus::Updated).then(|| fmt_ms(now_ms)),
                channel: ev.channel,
                division: ev.division.clone(),
                caller_ref: ev.caller.phone.or(ev.caller.address).map(|r| r.to_string()),
                reasons: Reasons::Cues(hits),
                score,
            },
            meta: FlagMeta {
                flag_uuid: state.flag_id,
                raised: status == FlagStatus::Raised,
                identity: None,
                t0_ms: state.occurred_ms,
                raised_ms: state.raised_ms,
            },
        })
    }

    /// True when this call's mental-health state is held in memory.
    pub fn knows_mental_health(&self, call_id: &str) -> bool {
        self.mh_calls.contains_key(call_id)
    }

    /// Puts back a call's mental-health flag at start-up.
    pub fn restore_mental_health(&mut self, call_id: String, flag_id: u128, severity: Severity, occurred_ms: i64, raised_ms: i64) {
        self.mh_calls.insert(call_id, MhState { flag_id, severity, raised_ms, occurred_ms });
    }

    /// Forgets history no rule can reach any more.
    pub fn prune(&mut self, history_before_ms: i64, mh_before_ms: i64) -> usize {
        self.mh_calls.retain(|_, s| s.occurred_ms >= mh_before_ms);
        self.repeat.prune(history_before_ms)
    }
}
