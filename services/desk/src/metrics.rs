//! Desk metrics (SPEC section 7), recomputed from the database so a restart loses nothing.
//! The age of the oldest unacknowledged flag is computed when `/metrics` is scraped, so it is
//! never stale.

use crate::store;
use lantern_shared::domain::flag::{FlagMessage, Reasons};
use lantern_shared::domain::{FlagKind, Outcome, Severity, Verdict};
use lantern_shared::runtime::lock;
use lantern_shared::runtime::telemetry::{self, ConfigInfo, ServiceMetrics};
use lantern_shared::store::Db;
use lantern_shared::{Clock, Config};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// Most distinct reasons `lantern_flag_feedback_verdicts` labels; the rest count as `other`.
const MAX_FEEDBACK_REASONS: usize = 64;
const ACKNOWLEDGE_BUCKETS: [f64; 9] = [10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0];

#[derive(Clone)]
pub struct DeskMetrics {
    pub flags_open: IntGaugeVec,
    /// When the oldest flag still open was raised, by severity (ms).
    oldest_open: Arc<Mutex<HashMap<String, i64>>>,
    pub acknowledge_seconds: HistogramVec,
    pub outcomes: IntCounterVec,
    pub savings: prometheus::CounterVec,
    pub mqtt_connected: IntGauge,
    pub config_reloads: IntCounterVec,
    pub config_info: ConfigInfo,
    pub flags_rejected: IntCounterVec,
    pub feedback: IntCounterVec,
    pub signin_failures: prometheus::IntCounter,
    pub referrals: IntCounterVec,
    /// The impact report over interventions in the last year, for the dashboard's early-action
    /// row: callers counted and the change in calls, by group; the difference in differences.
    pub impact_callers: IntGaugeVec,
    pub impact_change: prometheus::GaugeVec,
    pub impact_difference: prometheus::Gauge,
    /// Verdicts in force (the last per nurse per flag), by what raised the flag: each rule of a
    /// repeat-caller flag, each cue category of a mental-health flag. Precision by rule or
    /// category is useful / all.
    pub feedback_by_reason: IntGaugeVec,
}

impl DeskMetrics {
    pub fn new(registry: &Registry, config: &Config, clock: Clock, auth: Arc<crate::auth::Auth>) -> DeskMetrics {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            telemetry::register(registry, IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("{e}")))
        };
        let flags_open = gauge("lantern_flags_open", "Flags not yet closed with an outcome, by kind and severity.", &["kind", "severity"]);
        let oldest_open: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
        let oldest = oldest_open.clone();
        telemetry::computed_gauges(
            registry,
            "lantern_flag_oldest_unacknowledged_seconds",
            "Age of the oldest flag not yet acknowledged, by severity.",
            &["severity"],
            move || {
                let now = clock.now_ms();
                let oldest = lock(&oldest);
                let age = |s: Severity| oldest.get(s.as_str()).map(|ms| (now - ms).max(0) / 1000).unwrap_or(0);
                Severity::ALL.into_iter().map(|s| (vec![s.as_str().to_string()], age(s))).collect()
            },
        );
        let acknowledge_seconds = telemetry::register(
            registry,
            HistogramVec::new(
                HistogramOpts::new("lantern_flag_acknowledge_seconds", "From flag raised to acknowledged, by kind.")
                    .buckets(ACKNOWLEDGE_BUCKETS.to_vec()),
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
        let feedback = telemetry::counter_vec(
            registry,
            "lantern_flag_feedback_total",
            "Nurses' verdicts on flags, by kind and verdict.",
            &["kind", "verdict"],
        );
        for k in FlagKind::ALL {
            acknowledge_seconds.with_label_values(&[k.as_str()]);
            for s in Severity::ALL {
                flags_open.with_label_values(&[k.as_str(), s.as_str()]);
            }
            for v in Verdict::ALL {
                feedback.with_label_values(&[k.as_str(), v.as_str()]);
            }
        }
        for o in Outcome::ALL {
            outcomes.with_label_values(&[o.as_str()]);
        }
        for agency in config.desk.unit_savings.keys() {
            savings.with_label_values(&[agency]);
        }
        // The sign-in work: how many password hashes, and the most computed at once.
        telemetry::computed_gauges(registry, "lantern_signin_hashes", "Password hashes computed for sign-ins since start.", &[], {
            let auth = auth.clone();
            move || vec![(Vec::new(), auth.hashes.load(std::sync::atomic::Ordering::Relaxed) as i64)]
        });
        telemetry::computed_gauges(
            registry,
            "lantern_signin_hashing_most_at_once",
            "The most password hashes computed at the same time since start.",
            &[],
            move || vec![(Vec::new(), auth.most_at_once.load(std::sync::atomic::Ordering::Relaxed) as i64)],
        );
        let config_info = ConfigInfo::new(registry);
        config_info.set(&lantern_shared::config::diff::fingerprint(config));
        DeskMetrics {
            flags_open,
            oldest_open,
            acknowledge_seconds,
            outcomes,
            savings,
            mqtt_connected: ServiceMetrics::mqtt_connected(registry),
            config_reloads: ServiceMetrics::config_reloads(registry),
            config_info,
            flags_rejected: telemetry::flag_messages_rejected(registry),
            feedback,
            referrals: {
                let c = telemetry::counter_vec(
                    registry,
                    "lantern_referrals_total",
                    "Callers referred to early-action teams, by team.",
                    &["team"],
                );
                for team in &config.early_action.teams {
                    c.with_label_values(&[team]);
                }
                c
            },
            impact_callers: gauge(
                "lantern_impact_callers",
                "Callers counted in the impact report (interventions in the last year), by group.",
                &["group"],
            ),
            impact_change: telemetry::register(
                registry,
                prometheus::GaugeVec::new(
                    Opts::new("lantern_impact_change", "Change in calls after intervention, (after - before) / before, by group."),
                    &["group"],
                )
                .unwrap_or_else(|e| panic!("{e}")),
            ),
            impact_difference: telemetry::register(
                registry,
                prometheus::Gauge::new(
                    "lantern_impact_difference_in_differences",
                    "The cohort's change in calls less the comparison group's.",
                )
                .unwrap_or_else(|e| panic!("{e}")),
            ),
            signin_failures: telemetry::register(
                registry,
                prometheus::IntCounter::new("lantern_signin_failures_total", "Sign-ins refused for a wrong name or password.")
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            feedback_by_reason: gauge(
                "lantern_flag_feedback_verdicts",
                "Verdicts in force on flags, by kind, by the rule or cue category that raised the flag, and by verdict.",
                &["kind", "reason", "verdict"],
            ),
        }
    }

    /// Counts the time from raised to acknowledged.
    pub fn acknowledged(&self, kind: &str, raised_ms: i64, now_ms: i64) {
        self.acknowledge_seconds.with_label_values(&[kind]).observe(((now_ms - raised_ms).max(0)) as f64 / 1000.0);
    }
}

/// Sets the open-flag figures from the database.
pub async fn refresh(db: &Db, m: &DeskMetrics) -> Result<(), sqlx::Error> {
    let rows = store::open_counts(db).await?;
    for k in FlagKind::ALL {
        for s in Severity::ALL {
            let n = rows.iter().find(|r| r.0 == k.as_str() && r.1 == s.as_str()).map(|r| r.2).unwrap_or(0);
            m.flags_open.with_label_values(&[k.as_str(), s.as_str()]).set(n);
        }
    }
    let oldest: HashMap<String, i64> = store::oldest_open(db).await?.into_iter().filter_map(|(s, ms)| Some((s, ms?))).collect();
    *lock(&m.oldest_open) = oldest;
    Ok(())
}

/// Sets the verdicts-in-force gauge from the database: each verdict counts once for every rule
/// (repeat callers) or cue category (mental health) among the flag's unnegated reasons.
pub async fn refresh_feedback(db: &Db, m: &DeskMetrics) -> Result<(), sqlx::Error> {
    let mut counts: BTreeMap<(String, String, String), i64> = BTreeMap::new();
    let mut reasons_seen: BTreeSet<String> = BTreeSet::new();
    for (kind, payload, verdict) in store::verdicts(db).await? {
        let Ok(msg) = FlagMessage::parse(payload.as_bytes()) else { continue };
        let mut names: Vec<String> = match &msg.reasons {
            Reasons::Rules(r) => r.iter().map(|r| r.rule.clone()).collect(),
            Reasons::Cues(c) => c.iter().filter(|c| !c.negated).map(|c| c.category.clone()).collect(),
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
    m.feedback_by_reason.reset();
    for ((kind, reason, verdict), n) in counts {
        m.feedback_by_reason.with_label_values(&[&kind, &reason, &verdict]).set(n);
    }
    Ok(())
}

/// Sets the early-action gauges from the impact report over interventions in the last year
/// (a figure that cannot be computed yet reads NaN, not 0).
pub async fn refresh_impact(
    db: &Db,
    m: &DeskMetrics,
    early_action: &lantern_shared::config::EarlyActionConfig,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let period = crate::reports::Period { from_ms: now_ms - 365 * 86_400_000, to_ms: now_ms };
    let r = crate::reports::impact::report(db, period, early_action.impact_window.millis(), &early_action.risk_factors, now_ms).await?;
    for (group, g) in [("cohort", &r.cohort), ("comparison", &r.comparison)] {
        m.impact_callers.with_label_values(&[group]).set(g.callers as i64);
        m.impact_change.with_label_values(&[group]).set(g.change.unwrap_or(f64::NAN));
    }
    m.impact_difference.set(r.difference_in_differences.unwrap_or(f64::NAN));
    Ok(())
}
