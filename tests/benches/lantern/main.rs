//! `make bench`: how fast Lantern is, each figure beside a baseline measured in the same run,
//! medians of several runs. Writes `target/bench/report.md` and `target/bench/report.json`.
//!
//! Not a test: nothing here asserts a timing.

mod detection;
mod pipeline;
mod signin;
mod startup;

use chrono::{Duration, Utc};
use detection::*;
use lantern_shared::domain::ingest::IngestContext;
use lantern_shared::domain::pseudonym::{CallerRef, Pseudonymizer};
use pipeline::*;
use rand::Rng;
use startup::*;

pub(crate) struct Report {
    rows: Vec<(String, f64, String, String)>,
}

impl Report {
    pub(crate) fn add(&mut self, name: &str, value: f64, unit: &str, note: &str) {
        println!("{name:<58} {value:>14.1} {unit:<12} {note}");
        self.rows.push((name.into(), value, unit.into(), note.into()));
    }
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub(crate) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

pub(crate) fn ingest() -> IngestContext {
    IngestContext::new(Pseudonymizer::new(b"bench-key"), "GB", 300_000)
}

pub(crate) fn random_ref(rng: &mut impl Rng) -> CallerRef {
    CallerRef(rng.gen())
}

/// Draining a queue of `n` unique callers, on SQLite and (when given) PostgreSQL, and of
/// simulated traffic, against the bare subscriber draining as many; returns the bare rate.
async fn e2e(report: &mut Report, url: &str, n: usize) -> f64 {
    let pg = std::env::var("LANTERN_TEST_DATABASE_URL").is_ok();
    let backends: &[&str] = if pg { &["sqlite", "postgres"] } else { &["sqlite"] };
    let bare = bare_baseline(report, url, n).await;
    for backend in backends {
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(flagger_drain(url, backend, unique_callers(&lantern_tests::unique("u"), n)).await);
        }
        let rate = median(runs);
        report.add(
            &format!("unique callers, no flags: events/s stored ({backend})"),
            rate,
            "events/s",
            &format!("{n} queued events; {:.2} of the bare subscriber (target 0.5)", rate / bare),
        );
    }
    let rate = median(vec![
        flagger_drain(url, "sqlite", traffic(n)).await,
        flagger_drain(url, "sqlite", traffic(n)).await,
        flagger_drain(url, "sqlite", traffic(n)).await,
    ]);
    report.add(
        "simulated force traffic: events/s stored (sqlite)",
        rate,
        "events/s",
        &format!("{n} queued events, few flags; {:.2} of the bare subscriber", rate / bare),
    );
    bare
}

/// The bare subscriber draining `n` queued events, as many as the workload it is compared
/// with (fewer would make its rate the noisiest figure in the report). Median of three.
async fn bare_baseline(report: &mut Report, url: &str, n: usize) -> f64 {
    let bare = median(vec![bare_drain(url, n).await, bare_drain(url, n).await, bare_drain(url, n).await]);
    report.add(
        &format!("baseline: bare QoS 1 subscriber that only acks, same broker ({n} events)"),
        bare,
        "events/s",
        "recommended Mosquitto settings",
    );
    bare
}

/// Flag-heavy traffic drained by Lantern and by the naive Python peer.
async fn heavy(report: &mut Report, url: &str, heavy: usize, bare: f64) {
    let pg = std::env::var("LANTERN_TEST_DATABASE_URL").is_ok();
    let backends: &[&str] = if pg { &["sqlite", "postgres"] } else { &["sqlite"] };
    let peer = {
        let mut runs = Vec::new();
        for _ in 0..3 {
            match naive_peer_drain(url, flag_heavy(&lantern_tests::unique("p"), 0, heavy, Utc::now())).await {
                Some(r) => runs.push(r),
                None => break,
            }
        }
        (!runs.is_empty()).then(|| median(runs))
    };
    match peer {
        Some(p) => report.add(
            "baseline: naive Python peer, flag-heavy",
            p,
            "events/s",
            "paho-mqtt, phonenumbers, SQLite in memory, commit per event, one rule",
        ),
        None => println!("(naive peer skipped: install python3-paho-mqtt and python3-phonenumbers)"),
    }
    for backend in backends {
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(flagger_drain(url, backend, flag_heavy(&lantern_tests::unique("h"), 0, heavy, Utc::now())).await);
        }
        let rate = median(runs);
        let vs_peer = peer.map(|p| format!(", {:.1}x the naive peer (target 3x)", rate / p)).unwrap_or_default();
        report.add(
            &format!("flag-heavy: events/s stored ({backend})"),
            rate,
            "events/s",
            &format!("{heavy} events from 997 callers, each event a flag; {:.2} of the bare subscriber (target 0.3){vs_peer}", rate / bare),
        );
    }
}

/// Publish-to-flag latency at 1,000 events/s, every event flagged, a flag-heavy history held;
/// right after a 100,000-event burst and after 15 s idle. Medians over three runs.
async fn latencies(report: &mut Report, url: &str, broker: &str, target: f64) {
    let mut runs = Vec::new();
    let n: usize = std::env::var("LANTERN_BENCH_RUNS").ok().and_then(|n| n.parse().ok()).unwrap_or(3);
    for _ in 0..n {
        runs.push(latency(url, 10, "sqlite", 100_000, 15).await);
    }
    let at = |pick: fn(&Latencies) -> &Vec<f64>, p: f64| {
        median(runs.iter().filter(|r| !pick(r).is_empty()).map(|r| percentile(pick(r), p)).collect())
    };
    for (name, pick, want) in [
        ("after 15 s idle", (|r: &Latencies| &r.idle) as fn(&Latencies) -> &Vec<f64>, target),
        ("right after a 100,000-event burst", |r: &Latencies| &r.after_burst, 50.0),
        ("baseline: bare subscriber", |r: &Latencies| &r.bare, f64::NAN),
    ] {
        let samples: usize = runs.iter().map(|r| pick(r).len()).sum();
        if samples == 0 {
            continue;
        }
        let goal = if want.is_nan() { String::new() } else { format!(" (target p99 < {want} ms)") };
        report.add(&format!("latency, {broker}, {name}: p50"), at(pick, 0.5), "ms", &format!("{samples} samples in {n} runs"));
        report.add(&format!("latency, {broker}, {name}: p99"), at(pick, 0.99), "ms", &goal);
    }
}

fn main() {
    // `cargo test --all-targets` runs this binary too; benchmarks only run under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benchmarks run with `make bench`");
        return;
    }
    if std::env::var_os("LANTERN_BENCH_LOG").is_some() {
        lantern_shared::runtime::telemetry::init_tracing_stderr();
    }
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let want = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    let mut report = Report { rows: Vec::new() };
    let machine = format!(
        "{} cores, {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
            .unwrap_or_default()
    );
    println!("machine: {machine}");
    let dir = tempfile::tempdir().expect("tmp");
    let defaults_dir = tempfile::tempdir().expect("tmp");
    if want("engine") {
        engine(&mut report);
    }
    if want("lexicon") {
        lexicon(&mut report);
    }
    if want("mental-health") {
        mental_health(&mut report);
    }
    if want("signin") {
        signin::signin(&mut report);
    }
    if want("parse") {
        let params = lantern::simulate::Params::default();
        let mut buf = Vec::new();
        lantern::simulate::write_jsonl(params, Utc::now() - Duration::hours(1), Duration::days(30), &mut buf).expect("events");
        let events: Vec<String> = String::from_utf8(buf).expect("utf8").lines().take(200_000).map(str::to_string).collect();
        parse(&mut report, &events);
    }
    if want("replay") {
        replay_year(&mut report, dir.path());
    }
    if want("e2e") || want("heavy") || want("latency") || want("startup") {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        runtime.block_on(async {
            let Some(broker) = lantern_tests::OwnMosquitto::start(dir.path()) else {
                println!("(end-to-end benchmarks skipped: mosquitto is not installed)");
                return;
            };
            let url = broker.url();
            // LANTERN_BENCH_EVENTS makes the unique-caller queues longer, for profiling the drain.
            let n = std::env::var("LANTERN_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
            let mut bare = None;
            if want("e2e") {
                bare = Some((n, e2e(&mut report, &url, n).await));
            }
            if want("heavy") {
                // The flag-heavy queue is 100,000 events; its baseline drains as many.
                let heavy_n = 100_000;
                let bare = match bare {
                    Some((n, rate)) if n == heavy_n => rate,
                    _ => bare_baseline(&mut report, &url, heavy_n).await,
                };
                heavy(&mut report, &url, heavy_n, bare).await;
            }
            if want("latency") {
                latencies(&mut report, &url, "the recommended Mosquitto settings", 5.0).await;
                match lantern_tests::OwnMosquitto::start_on_defaults(defaults_dir.path()) {
                    Some(defaults) => latencies(&mut report, &defaults.url(), "Mosquitto's defaults", 20.0).await,
                    None => println!("(latency on Mosquitto's defaults skipped)"),
                }
            }
            if want("startup") {
                startup(&mut report, &url).await;
            }
        });
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    let _ = std::fs::create_dir_all(&out);
    let mut md = format!(
        "# Lantern benchmarks\n\nMachine: {machine}. Run: {}. Medians of 3 runs.\n\n| figure | value | unit | note |\n|---|---:|---|---|\n",
        Utc::now().to_rfc3339()
    );
    for (name, v, unit, note) in &report.rows {
        md.push_str(&format!("| {name} | {v:.1} | {unit} | {note} |\n"));
    }
    let json = serde_json::json!({
        "machine": machine,
        "figures": report.rows.iter().map(|(n, v, u, note)| serde_json::json!({"name": n, "value": v, "unit": u, "note": note})).collect::<Vec<_>>(),
    });
    let _ = std::fs::write(out.join("report.md"), md);
    let _ = std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&json).unwrap_or_default());
    println!("report: {}", out.join("report.md").display());
}
