//! Logging and the metrics every consuming service shares (SPEC section 7).

use crate::domain::event::REJECT_REASONS;
use crate::domain::EventKind;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// Sets up `tracing` once, to standard output (services): `LANTERN_LOG` (or `RUST_LOG`)
/// filters, default `info`.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt().with_env_filter(filter()).with_target(false).try_init();
}

/// Sets up `tracing` once, to standard error: for commands whose output is their standard
/// output (`replay`, `subject-access`), so warnings never mix into it.
pub fn init_tracing_stderr() {
    let _ = tracing_subscriber::fmt().with_env_filter(filter()).with_target(false).with_writer(std::io::stderr).try_init();
}

fn filter() -> tracing_subscriber::EnvFilter {
    let filter =
        std::env::var("LANTERN_LOG").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| "info,rumqttd=warn,sqlx=warn".to_string());
    tracing_subscriber::EnvFilter::new(filter)
}

pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// Registers a collector, which only fails on a programming error (a clashing name).
pub fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    if let Err(e) = registry.register(Box::new(c.clone())) {
        tracing::error!(error = %e, "metric registration failed");
    }
    c
}

pub fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    register(registry, c)
}

/// The current values of a computed gauge family: one (label values, value) per series.
pub type Series = Vec<(Vec<String>, i64)>;

/// A gauge family computed when `/metrics` is scraped, so it is never stale: counts over
/// trailing windows change as time passes, with no event to move them.
struct ComputedGauges {
    opts: Opts,
    labels: Vec<&'static str>,
    desc: prometheus::core::Desc,
    compute: Box<dyn Fn() -> Series + Send + Sync>,
}

impl prometheus::core::Collector for ComputedGauges {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let Ok(family) = IntGaugeVec::new(self.opts.clone(), &self.labels) else { return Vec::new() };
        for (values, n) in (self.compute)() {
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            if let Ok(g) = family.get_metric_with_label_values(&values) {
                g.set(n);
            }
        }
        prometheus::core::Collector::collect(&family)
    }
}

/// Registers gauge family `name` whose series `compute` returns at each scrape.
pub fn computed_gauges(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&'static str],
    compute: impl Fn() -> Series + Send + Sync + 'static,
) {
    let opts = Opts::new(name, help);
    let desc =
        prometheus::core::Desc::new(name.to_string(), help.to_string(), labels.iter().map(|l| l.to_string()).collect(), Default::default())
            .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let c = ComputedGauges { opts, labels: labels.to_vec(), desc, compute: Box::new(compute) };
    if let Err(e) = registry.register(Box::new(c)) {
        tracing::error!(error = %e, "metric registration failed");
    }
}

/// Counters and gauges of every service that consumes call events.
#[derive(Clone)]
pub struct IngestMetrics {
    pub received: IntCounterVec,
    pub rejected: IntCounterVec,
    pub duplicate: IntCounter,
    pub mqtt_connected: IntGauge,
    pub config_reloads: IntCounterVec,
    pub config_info: ConfigInfo,
}

impl IngestMetrics {
    pub fn new(registry: &Registry) -> IngestMetrics {
        let received =
            counter_vec(registry, "lantern_events_received_total", "Valid call events received, by kind (duplicates included).", &["kind"]);
        let rejected = counter_vec(registry, "lantern_events_rejected_total", "Call events refused, by reason.", &["reason"]);
        let duplicate = register(
            registry,
            IntCounter::new("lantern_events_duplicate_total", "Call events whose event_id had been processed already.")
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let config_reloads = ServiceMetrics::config_reloads(registry);
        let mqtt_connected = ServiceMetrics::mqtt_connected(registry);
        let config_info = ConfigInfo::new(registry);
        for k in EventKind::ALL {
            received.with_label_values(&[k.as_str()]);
        }
        for r in REJECT_REASONS {
            rejected.with_label_values(&[r]);
        }
        IngestMetrics { received, rejected, duplicate, mqtt_connected, config_reloads, config_info }
    }
}

/// `lantern_flag_messages_rejected_total{reason}`: flag messages a consumer refused.
pub fn flag_messages_rejected(registry: &Registry) -> IntCounterVec {
    let c = counter_vec(registry, "lantern_flag_messages_rejected_total", "Flag messages refused, by reason.", &["reason"]);
    for r in crate::domain::flag::FLAG_REJECT_REASONS {
        c.with_label_values(&[r]);
    }
    c
}

/// Metrics every service has, consuming call events or not.
pub struct ServiceMetrics;

impl ServiceMetrics {
    pub fn mqtt_connected(registry: &Registry) -> IntGauge {
        register(
            registry,
            IntGauge::new("lantern_mqtt_connected", "1 while connected to the MQTT broker.").unwrap_or_else(|e| panic!("{e}")),
        )
    }
    pub fn config_reloads(registry: &Registry) -> IntCounterVec {
        let c = counter_vec(registry, "lantern_config_reloads_total", "Config reloads, by result (ok, error).", &["result"]);
        for r in ["ok", "error"] {
            c.with_label_values(&[r]);
        }
        c
    }
}

/// `lantern_config_info{hash}`: 1 for the config version in force, so dashboards show it.
#[derive(Clone)]
pub struct ConfigInfo(IntGaugeVec);

impl ConfigInfo {
    pub fn new(registry: &Registry) -> ConfigInfo {
        let g = IntGaugeVec::new(Opts::new("lantern_config_info", "The config in force: 1 for its hash."), &["hash"])
            .unwrap_or_else(|e| panic!("{e}"));
        ConfigInfo(register(registry, g))
    }

    pub fn set(&self, hash: &str) {
        self.0.reset();
        self.0.with_label_values(&[hash]).set(1);
    }
}

/// Keeps `lantern_mqtt_connected` in step with the connection.
pub async fn follow_connection(mut connected: tokio::sync::watch::Receiver<bool>, gauge: IntGauge) {
    loop {
        gauge.set(i64::from(*connected.borrow_and_update()));
        if connected.changed().await.is_err() {
            gauge.set(0);
            break;
        }
    }
}
