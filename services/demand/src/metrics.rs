//! The demand service's metrics (SPEC section 7). The window gauges are computed when
//! `/metrics` is scraped, from the calls held and the service's clock, so they are never stale.

use crate::state::{DemandState, Effect};
use lantern_shared::domain::Channel;
use lantern_shared::runtime::lock;
use lantern_shared::runtime::telemetry::{self, IngestMetrics};
use lantern_shared::Clock;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Registry};
use std::sync::{Arc, Mutex};

/// Buckets for time to answer: the 999 target is 10 s, 101's commonly 40 s.
pub const ANSWER_BUCKETS: [f64; 13] = [1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0, 90.0, 120.0, 300.0, 600.0];

#[derive(Clone)]
pub struct DemandMetrics {
    pub ingest: IngestMetrics,
    pub calls_total: IntCounterVec,
    pub answer_seconds: HistogramVec,
    pub abandoned: IntCounterVec,
    pub flags_rejected: IntCounterVec,
    /// The Home Office's 999 answer-time buckets: within 10 s, 10 to 60 s, over 60 s.
    pub answered_within: IntCounterVec,
}

/// The bucket of `lantern_answered_within_seconds_total` a time to answer falls in: `10` (at
/// most 10 s), `60` (over 10, at most 60) or `inf` (over 60). Each call counts in one bucket.
pub fn answer_bucket(seconds: f64) -> &'static str {
    if seconds <= 10.0 {
        "10"
    } else if seconds <= 60.0 {
        "60"
    } else {
        "inf"
    }
}

impl DemandMetrics {
    pub fn new(registry: &Registry, state: Arc<Mutex<DemandState>>, clock: Clock) -> DemandMetrics {
        let ingest = IngestMetrics::new(registry);
        let calls_total =
            telemetry::counter_vec(registry, "lantern_calls_total", "Distinct calls, by channel and division.", &["channel", "division"]);
        let answer_seconds = telemetry::register(
            registry,
            HistogramVec::new(
                HistogramOpts::new("lantern_answer_seconds", "Time from offered to answered, by channel.").buckets(ANSWER_BUCKETS.to_vec()),
                &["channel"],
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        let abandoned =
            telemetry::counter_vec(registry, "lantern_calls_abandoned_total", "Calls abandoned before answer, by channel.", &["channel"]);
        for ch in Channel::ALL {
            answer_seconds.with_label_values(&[ch.as_str()]);
            abandoned.with_label_values(&[ch.as_str()]);
        }
        let flags_rejected = telemetry::flag_messages_rejected(registry);
        let answered_within = telemetry::counter_vec(
            registry,
            "lantern_answered_within_seconds_total",
            "Calls answered, by channel and the Home Office's answer-time bucket: 10 (within 10 s), 60 (10 to 60 s), inf (over 60 s).",
            &["channel", "bucket"],
        );
        for ch in Channel::ALL {
            for b in ["10", "60", "inf"] {
                answered_within.with_label_values(&[ch.as_str(), b]);
            }
        }
        let calls = state.clone();
        let calls_clock = clock.clone();
        telemetry::computed_gauges(
            registry,
            "lantern_calls_window",
            "Distinct calls with event time in the trailing window.",
            &["window", "channel", "division"],
            move || {
                let counts = lock(&calls).window_counts(calls_clock.now_ms());
                counts.into_iter().map(|(w, ch, d, n)| (vec![w, ch.as_str().to_string(), d], n as i64)).collect()
            },
        );
        telemetry::computed_gauges(
            registry,
            "lantern_mental_health_calls_window",
            "Calls with a mental-health flag, event time in the trailing window.",
            &["window"],
            move || lock(&state).mental_health_counts(clock.now_ms()).into_iter().map(|(w, n)| (vec![w], n as i64)).collect(),
        );
        DemandMetrics { ingest, calls_total, answer_seconds, abandoned, flags_rejected, answered_within }
    }

    /// Moves counters once a batch is committed.
    pub fn apply(&self, effect: Effect) {
        match effect {
            Effect::Received(kind) => self.ingest.received.with_label_values(&[kind]).inc(),
            Effect::Rejected(reason) => self.ingest.rejected.with_label_values(&[reason]).inc(),
            Effect::NewCall { channel, division } => self.calls_total.with_label_values(&[channel.as_str(), &division]).inc(),
            Effect::Answered { channel, seconds } => {
                self.answer_seconds.with_label_values(&[channel.as_str()]).observe(seconds);
                self.answered_within.with_label_values(&[channel.as_str(), answer_bucket(seconds)]).inc();
            }
            Effect::Abandoned { channel } => self.abandoned.with_label_values(&[channel.as_str()]).inc(),
        }
    }
}
