//! Replaying a year, starting up on 90 days of history, memory.

use crate::{ingest, median, Report};
use chrono::{Duration, Utc};
use lantern_flagger::detect::repeat::Rules;
use lantern_shared::domain::event::CallEvent;
use lantern_shared::domain::ingest::IngestContext;
use lantern_shared::domain::pseudonym::CallerRef;
use lantern_shared::Config;
use std::io::Write;
use std::time::Instant;

/// `lantern replay` of a year of a large force (about a million calls).
pub(crate) fn replay_year(report: &mut Report, dir: &std::path::Path) {
    let path = dir.join("year.jsonl");
    let params = lantern::simulate::Params { calls_per_day: 2740.0, ..Default::default() };
    let mut w = std::io::BufWriter::new(std::fs::File::create(&path).expect("year file"));
    let n = lantern::simulate::write_jsonl(params, Utc::now(), Duration::days(365), &mut w).expect("write year");
    w.flush().expect("flush");
    drop(w);
    std::fs::write(dir.join("key"), b"bench").expect("key");
    let mut config = Config::default();
    config.privacy.key_file = dir.join("key");
    let ctx = ingest();
    let mut runs = Vec::new();
    let mut calls = 0;
    for _ in 0..3 {
        let file = std::io::BufReader::new(std::fs::File::open(&path).expect("open"));
        let mut sink = std::io::sink();
        let start = Instant::now();
        let summary = lantern_flagger::replay::replay(&config, &ctx, chrono::Utc::now(), file, Some(&mut sink)).expect("replay");
        runs.push(start.elapsed().as_secs_f64());
        calls = summary.calls;
    }
    let mut base = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let text = std::fs::read_to_string(&path).expect("read");
        let lines = text.lines().filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()).count();
        std::hint::black_box(lines);
        base.push(start.elapsed().as_secs_f64());
    }
    let t = median(runs);
    report.add(
        "replay: a year of a large force, wall time",
        t,
        "s",
        &format!("{n} events, {calls} calls, {:.0} events/s (target under 5 s)", n as f64 / t),
    );
    let b = median(base);
    report.add("baseline: read and JSON-parse the same file", b, "s", &format!("replay takes {:.1}x the baseline", t / b));
}

pub(crate) async fn runs_in_process(config: &Config) -> Vec<f64> {
    let mut runs = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let flagger = lantern_flagger::Flagger::build(config.clone()).await.expect("build");
        runs.push(start.elapsed().as_secs_f64());
        std::hint::black_box(flagger.calls_held());
    }
    runs
}

/// Starts `lantern run` as its own process on `world`'s database, waits until it is ready and
/// returns its resident set in bytes.
pub(crate) async fn process_rss(world: &lantern_tests::World, url: &str) -> f64 {
    let mut w = lantern_tests::World::new(url, &world.config.database.url).await;
    w.config.privacy.key_file = world.config.privacy.key_file.clone();
    w.config.broker.enabled = false;
    w.config.flagger.listen = format!("127.0.0.1:{}", lantern_tests::free_port());
    w.config.demand.listen = format!("127.0.0.1:{}", lantern_tests::free_port());
    w.config.desk.listen = format!("127.0.0.1:{}", lantern_tests::free_port());
    let path = w.write_config();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lantern-under-test"))
        .args(["run", "--config"])
        .arg(&path)
        .env("LANTERN_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("lantern run");
    let ready = format!("http://{}/readyz", w.config.flagger.listen);
    let up = lantern_tests::eventually(std::time::Duration::from_secs(60), || async {
        reqwest::get(&ready).await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    let rss = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .unwrap_or(0.0)
        * 1024.0;
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "lantern run did not become ready");
    rss
}

/// Start-up with 90 days of a large force's history in the database, and the memory it takes.
pub(crate) async fn startup(report: &mut Report, url: &str) {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = lantern_tests::TestDb::new("sqlite", tmp.path()).await;
    let world = lantern_tests::World::new(url, &db.url).await;
    let ctx = IngestContext::from_config(&world.config).expect("key");
    let params = lantern::simulate::Params { calls_per_day: 2740.0, ..Default::default() };
    let mut buf = Vec::new();
    lantern::simulate::write_jsonl(params, Utc::now(), Duration::days(90), &mut buf).expect("events");
    // What start-up costs with no history at all (the database opened and migrated, the
    // detector's lexicon, patterns and model built, the listener bound), to set apart from
    // reading the history.
    let fixed = median(runs_in_process(&world.config).await);
    let store = lantern_shared::store::Db::connect(&db.url).await.expect("db");
    let lantern_shared::store::Db::Sqlite(pool) = &store else { return };
    let mut tx = pool.begin().await.expect("tx");
    let mut calls = 0u64;
    let rules = Rules::from_config(&world.config, &ctx);
    for line in String::from_utf8(buf).expect("utf8").lines() {
        let Ok(ev) = CallEvent::parse(line.as_bytes(), &ctx, Utc::now()) else { continue };
        if ev.kind != lantern_shared::domain::EventKind::Offered {
            continue;
        }
        let keep = |r: Option<CallerRef>, ex: &std::collections::HashSet<CallerRef>| r.filter(|r| !ex.contains(r)).map(|r| r.to_string());
        sqlx::query("INSERT INTO flagger_calls (call_id, event_id, occurred_ms, channel, division, phone_ref, address_ref, communal, age_band, received_ms) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)")
            .bind(&ev.call_id)
            .bind(&ev.event_id)
            .bind(ev.occurred_ms())
            .bind(ev.channel.as_str())
            .bind(ev.division.as_deref())
            .bind(keep(ev.caller.phone, &rules.excluded_phones))
            .bind(keep(ev.caller.address, &rules.excluded_addresses))
            .bind(ev.caller.communal_address.map(i16::from))
            .bind(ev.caller.age_band.map(|a| a.as_str()))
            .bind(0i64)
            .execute(&mut *tx)
            .await
            .expect("insert");
        calls += 1;
    }
    tx.commit().await.expect("commit");
    let mut base = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let rows: Vec<(Option<String>, Option<String>, i64)> =
            sqlx::query_as("SELECT phone_ref, address_ref, occurred_ms FROM flagger_calls").fetch_all(pool).await.expect("scan");
        std::hint::black_box(rows.len());
        base.push(start.elapsed().as_secs_f64());
    }
    store.close().await;
    let t = median(runs_in_process(&world.config).await);
    let b = median(base);
    report.add(
        "flagger start-up with 90 days of a large force's history",
        t * 1000.0,
        "ms",
        &format!("{calls} calls; rebuilt from SQLite (target under 1,000 ms)"),
    );
    report.add(
        "baseline: reading those rows from SQLite, a row at a time through sqlx",
        b * 1000.0,
        "ms",
        &format!("start-up takes {:.1}x the baseline", t / b),
    );
    report.add(
        "flagger start-up on an empty database",
        fixed * 1000.0,
        "ms",
        &format!("so reading the history took {:.0} ms, {:.1}x the baseline", (t - fixed) * 1000.0, (t - fixed) / b),
    );

    // The resident set of a real `lantern run` process (flagger, demand and desk) holding that
    // history, against the same process over an empty database.
    let full = median(vec![process_rss(&world, url).await, process_rss(&world, url).await, process_rss(&world, url).await]);
    let empty_dir = tempfile::tempdir().expect("tmp");
    let empty_db = lantern_tests::TestDb::new("sqlite", empty_dir.path()).await;
    let empty_world = lantern_tests::World::new(url, &empty_db.url).await;
    let empty =
        median(vec![process_rss(&empty_world, url).await, process_rss(&empty_world, url).await, process_rss(&empty_world, url).await]);
    report.add(
        "lantern run resident memory holding 90 days of history",
        full / 1_048_576.0,
        "MiB",
        &format!("{:.0} bytes per call held above the empty baseline (target under 100)", (full - empty) / calls as f64),
    );
    report.add("baseline: lantern run resident memory, empty database", empty / 1_048_576.0, "MiB", "same process and config");
    db.cleanup().await;
}
