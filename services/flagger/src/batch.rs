//! One batch's detection: the pure step between what the batch reads from the database (which
//! events are new, which calls are known) and what it writes. No I/O; the service runs it
//! inside the batch's transaction, so a flag exists in the database exactly when the event
//! that raised it does.

use crate::detect::{new_flag_id, Detector, FlagKind, FlagMeta};
use crate::outbox::Outgoing;
use crate::store::{CallRow, MhFlagRow};
use lantern_shared::domain::event::CallEvent;
use lantern_shared::domain::Severity;
use lantern_shared::runtime::consumer::{guard, CommitError};
use std::collections::HashSet;
use std::time::Instant;

/// A valid event of the batch.
pub struct Valid<'a> {
    /// Its place in the batch, so a failure names it.
    pub index: usize,
    pub received: Instant,
    pub event: &'a CallEvent,
}

/// Everything one batch writes, and the flags it will publish.
#[derive(Default)]
pub struct Writes<'a> {
    pub calls: Vec<CallRow<'a>>,
    /// Newly raised repeat-caller flags: (flag id, meta, caller reference).
    pub repeat_flags: Vec<(String, FlagMeta, String)>,
    /// Newly raised mental-health flags: (call, flag id, severity, event time).
    pub mh_flags: Vec<(String, String, Severity, i64)>,
    /// Mental-health flags raised by an earlier batch whose severity went up.
    pub mh_updates: Vec<(String, Severity)>,
    /// Outbox rows: (seq, flag id, topic, payload).
    pub messages: Vec<(i64, String, String, String)>,
    pub outgoing: Vec<Outgoing>,
    /// Events already processed (the same `event_id` again).
    pub duplicates: u64,
}

/// Runs detection over the batch's valid events in the order received.
///
/// `fresh` holds the event ids not processed before; `known` the calls the database has seen,
/// with their mental-health flag when it has one, so an update to a call memory has let go of
/// updates that flag rather than raising a second. Flag messages are numbered from `next_seq`.
/// A panic in detection rejects that event alone ([`CommitError::Poisoned`]).
pub fn detect<'a>(
    detector: &mut Detector,
    events: &[Valid<'a>],
    mut fresh: HashSet<&str>,
    known: Vec<(String, Option<MhFlagRow>)>,
    now: chrono::DateTime<chrono::Utc>,
    next_seq: &mut i64,
    topic: impl Fn(FlagKind) -> String,
) -> Result<Writes<'a>, CommitError> {
    let mut known_calls = HashSet::with_capacity(known.len());
    for (call_id, flag) in known {
        if let Some(f) = flag.filter(|f| !detector.knows_mental_health(&f.call_id)) {
            detector.restore_mental_health(f.call_id, f.flag_uuid, f.severity, f.occurred_ms, f.raised_ms);
        }
        known_calls.insert(call_id);
    }
    let mut out = Writes::default();
    for v in events {
        let ev = v.event;
        if !fresh.remove(ev.event_id.as_str()) {
            out.duplicates += 1;
            continue;
        }
        let new_call = known_calls.insert(ev.call_id.clone());
        let detection = guard(|| detector.on_event(ev, new_call, now, &mut new_flag_id))
            .map_err(|error| CommitError::Poisoned { index: v.index, error })?;
        if new_call {
            let c = &detection.counted;
            out.calls.push(CallRow {
                call_id: &ev.call_id,
                event_id: &ev.event_id,
                occurred_ms: ev.occurred_ms(),
                channel: ev.channel,
                division: ev.division.as_deref(),
                phone: c.counted_phone.map(|r| r.to_string()),
                address: c.counted_address.map(|r| r.to_string()),
                communal: ev.caller.communal_address,
                age_band: ev.caller.age_band,
            });
        }
        for flag in detection.flags {
            let m = &flag.message;
            match (m.kind, flag.meta.raised) {
                (FlagKind::RepeatCaller, true) => {
                    out.repeat_flags.push((m.flag_id.clone(), flag.meta, m.caller_ref.clone().unwrap_or_default()))
                }
                (FlagKind::MentalHealth, true) => out.mh_flags.push((ev.call_id.clone(), m.flag_id.clone(), m.severity, ev.occurred_ms())),
                (FlagKind::MentalHealth, false) => match out.mh_flags.iter_mut().find(|r| r.0 == ev.call_id) {
                    // Raised earlier in this same batch: store the final severity.
                    Some(r) => r.2 = m.severity,
                    None => out.mh_updates.push((ev.call_id.clone(), m.severity)),
                },
                (FlagKind::RepeatCaller, false) => {}
            }
            let payload = flag.to_json();
            let seq = *next_seq;
            *next_seq += 1;
            let topic = topic(m.kind);
            out.messages.push((seq, m.flag_id.clone(), topic.clone(), payload.clone()));
            out.outgoing.push(Outgoing {
                seq,
                topic,
                payload,
                kind: m.kind,
                raised: flag.meta.raised,
                severity: Some(m.severity),
                received: Some(v.received),
            });
        }
    }
    Ok(out)
}
