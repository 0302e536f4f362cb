//! The flagger's metrics (SPEC section 7). `lantern_repeat_callers` is computed when `/metrics`
//! is scraped, from the history held and the service's clock, so it is never stale.

use crate::detect::{Detector, FlagKind};
use lantern_shared::domain::Severity;
use lantern_shared::runtime::telemetry::{self, IngestMetrics};
use lantern_shared::Clock;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Registry};
use std::sync::{Arc, Mutex};

/// Buckets for the time from event received to flag published.
const LATENCY_BUCKETS: [f64; 13] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

#[derive(Clone)]
pub struct FlaggerMetrics {
    pub ingest: IngestMetrics,
    pub flags_raised: IntCounterVec,
    pub flag_latency: HistogramVec,
}

impl FlaggerMetrics {
    pub fn new(registry: &Registry, detector: Arc<Mutex<Detector>>, clock: Clock) -> FlaggerMetrics {
        let ingest = IngestMetrics::new(registry);
        let flags_raised =
            telemetry::counter_vec(registry, "lantern_flags_raised_total", "Flags raised, by kind and severity.", &["kind", "severity"]);
        for kind in FlagKind::ALL {
            for severity in Severity::ALL {
                flags_raised.with_label_values(&[kind.as_str(), severity.as_str()]);
            }
        }
        let flag_latency = telemetry::register(
            registry,
            HistogramVec::new(
                HistogramOpts::new("lantern_flag_latency_seconds", "From event received to flag published, by kind.")
                    .buckets(LATENCY_BUCKETS.to_vec()),
                &["kind"],
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        for kind in FlagKind::ALL {
            flag_latency.with_label_values(&[kind.as_str()]);
        }
        telemetry::computed_gauges(
            registry,
            "lantern_repeat_callers",
            "Identities whose count is at or over the rule now.",
            &["rule"],
            move || {
                let counts = lantern_shared::runtime::lock(&detector).repeat.at_or_over(clock.now_ms());
                counts.into_iter().map(|(rule, n)| (vec![rule], n as i64)).collect()
            },
        );
        FlaggerMetrics { ingest, flags_raised, flag_latency }
    }

    /// Counts a flag handed to the broker.
    pub fn published(&self, kind: FlagKind, raised: bool, severity: Option<Severity>, received: Option<std::time::Instant>) {
        if let Some(at) = received {
            self.flag_latency.with_label_values(&[kind.as_str()]).observe(at.elapsed().as_secs_f64());
        }
        if let (true, Some(severity)) = (raised, severity) {
            self.flags_raised.with_label_values(&[kind.as_str(), severity.as_str()]).inc();
        }
    }
}
