//! Desk metrics (SPEC section 7), recomputed from the database so a restart loses nothing.

use crate::AppState;
use lantern_shared::telemetry::{self, ConfigInfo, ServiceMetrics};
use lantern_shared::{with_db, Config};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

pub const OUTCOMES: [&str; 5] = ["advice_given", "face_to_face", "referred", "s136_avoided", "no_action"];
const KINDS: [&str; 2] = ["repeat_caller", "mental_health"];
const SEVERITIES: [&str; 3] = ["low", "medium", "high"];

#[derive(Clone)]
pub struct DeskMetrics {
    pub flags_open: IntGaugeVec,
    pub oldest_unacknowledged: IntGaugeVec,
    pub acknowledge_seconds: HistogramVec,
    pub outcomes: IntCounterVec,
    pub savings: prometheus::CounterVec,
    pub mqtt_connected: IntGauge,
    pub config_reloads: IntCounterVec,
    pub config_info: ConfigInfo,
    pub flags_rejected: IntCounterVec,
    pub feedback: IntCounterVec,
    /// Verdicts in force (the last per nurse per flag), by what raised the flag: each rule of a
    /// repeat-caller flag, each cue category of a mental-health flag. Precision by rule or
    /// category is useful / all.
    pub feedback_by_reason: IntGaugeVec,
}

impl DeskMetrics {
    pub fn new(registry: &Registry, config: &Config) -> DeskMetrics {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            telemetry::register(registry, IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("{e}")))
        };
        let flags_open = gauge("lantern_flags_open", "Flags not yet closed with an outcome, by kind and severity.", &["kind", "severity"]);
        let oldest_unacknowledged =
            gauge("lantern_flag_oldest_unacknowledged_seconds", "Age of the oldest flag not yet acknowledged, by severity.", &["severity"]);
        let acknowledge_seconds = telemetry::register(
            registry,
            HistogramVec::new(
                HistogramOpts::new("lantern_flag_acknowledge_seconds", "From flag raised to acknowledged, by kind.")
                    .buckets(vec![10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0]),
                &["kind"],
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        let outcomes = telemetry::counter_vec(registry, "lantern_outcomes_total", "Outcomes recorded by nurses.", &["outcome"]);
        let savings = telemetry::register(
            registry,
            prometheus::CounterVec::new(
                Opts::new(
                    "lantern_estimated_savings_pounds_total",
                    "Estimated savings from avoided section 136 detentions, by agency (desk.unit_savings).",
                ),
                &["agency"],
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        for k in KINDS {
            acknowledge_seconds.with_label_values(&[k]);
            for s in SEVERITIES {
                flags_open.with_label_values(&[k, s]);
            }
        }
        for s in SEVERITIES {
            oldest_unacknowledged.with_label_values(&[s]);
        }
        for o in OUTCOMES {
            outcomes.with_label_values(&[o]);
        }
        for agency in config.desk.unit_savings.keys() {
            savings.with_label_values(&[agency]);
        }
        let info = ConfigInfo::new(registry);
        info.set(&lantern_shared::config::diff::fingerprint(config));
        DeskMetrics {
            flags_open,
            oldest_unacknowledged,
            acknowledge_seconds,
            outcomes,
            savings,
            mqtt_connected: ServiceMetrics::mqtt_connected(registry),
            config_reloads: ServiceMetrics::config_reloads(registry),
            config_info: info,
            flags_rejected: telemetry::flag_messages_rejected(registry),
            feedback: {
                let c = telemetry::counter_vec(
                    registry,
                    "lantern_flag_feedback_total",
                    "Nurses' verdicts on flags, by kind and verdict.",
                    &["kind", "verdict"],
                );
                for k in KINDS {
                    for v in crate::api::VERDICTS {
                        c.with_label_values(&[k, v]);
                    }
                }
                c
            },
            feedback_by_reason: gauge(
                "lantern_flag_feedback_verdicts",
                "Verdicts in force on flags, by kind, by the rule or cue category that raised the flag, and by verdict.",
                &["kind", "reason", "verdict"],
            ),
        }
    }
}

/// Sets the open-flag gauges from the database.
pub async fn refresh(state: &AppState) -> Result<(), sqlx::Error> {
    let db = &state.db;
    let q = "SELECT kind, severity, COUNT(*) FROM desk_flags WHERE status <> 'closed' GROUP BY kind, severity";
    let rows: Vec<(String, String, i64)> = with_db!(db, |pool| sqlx::query_as(q).fetch_all(pool).await)?;
    let m = &state.metrics;
    for k in KINDS {
        for s in SEVERITIES {
            let n = rows.iter().find(|r| r.0 == k && r.1 == s).map(|r| r.2).unwrap_or(0);
            m.flags_open.with_label_values(&[k, s]).set(n);
        }
    }
    let q = "SELECT severity, MIN(raised_ms) FROM desk_flags WHERE status = 'open' GROUP BY severity";
    let rows: Vec<(String, Option<i64>)> = with_db!(db, |pool| sqlx::query_as(q).fetch_all(pool).await)?;
    let now = state.clock.now_ms();
    for s in SEVERITIES {
        let age = rows.iter().find(|r| r.0 == s).and_then(|r| r.1).map(|ms| (now - ms).max(0) / 1000).unwrap_or(0);
        m.oldest_unacknowledged.with_label_values(&[s]).set(age);
    }
    Ok(())
}

/// Most distinct reasons `lantern_flag_feedback_verdicts` labels; the rest count as `other`.
const MAX_FEEDBACK_REASONS: usize = 64;

/// Sets the verdicts-in-force gauge from the database: each verdict counts once for every rule
/// (repeat callers) or cue category (mental health) among the flag's unnegated reasons.
pub async fn refresh_feedback(state: &AppState) -> Result<(), sqlx::Error> {
    let db = &state.db;
    let q = "SELECT f.kind, f.payload, b.verdict FROM desk_feedback b JOIN desk_flags f ON f.flag_id = b.flag_id";
    let rows: Vec<(String, String, String)> = with_db!(db, |pool| sqlx::query_as(q).fetch_all(pool).await)?;
    let mut counts: std::collections::BTreeMap<(String, String, String), i64> = Default::default();
    let mut reasons_seen: std::collections::BTreeSet<String> = Default::default();
    for (kind, payload, verdict) in rows {
        let Ok(msg) = lantern_shared::flag::FlagMessage::parse(payload.as_bytes()) else { continue };
        let mut names: Vec<String> = match &msg.reasons {
            lantern_shared::flag::Reasons::Rules(r) => r.iter().map(|r| r.rule.clone()).collect(),
            lantern_shared::flag::Reasons::Cues(c) => c.iter().filter(|c| !c.negated).map(|c| c.category.clone()).collect(),
        };
        names.sort();
        names.dedup();
        for name in names {
            let label = if reasons_seen.contains(&name) || reasons_seen.len() < MAX_FEEDBACK_REASONS {
                reasons_seen.insert(name.clone());
                name
            } else {
                "other".to_string()
            };
            *counts.entry((kind.clone(), label, verdict.clone())).or_default() += 1;
        }
    }
    let m = &state.metrics;
    m.feedback_by_reason.reset();
    for ((kind, reason, verdict), n) in counts {
        m.feedback_by_reason.with_label_values(&[&kind, &reason, &verdict]).set(n);
    }
    Ok(())
}
