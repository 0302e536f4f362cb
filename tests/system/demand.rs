//! The duty inspector's numbers through a real broker: distinct calls, trailing windows by
//! event time, time to answer, abandonment, mental-health calls, and a restart in between.

use lantern_tests::*;
use std::time::Duration;

fn at(mins_ago: i64, plus_s: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(mins_ago) + chrono::Duration::seconds(plus_s)).to_rfc3339()
}

async fn demand_counts_calls_by_window_and_survives_a_restart(backend: &str) {
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new(backend, tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    world.config.demand.max_divisions = 2;
    let p = world.prefix.clone();
    let demand = Running::demand(&world.config).await;
    let flagger = Running::flagger(&world.config).await;
    let probe = Probe::connect(&url, &[]).await;
    let send = |id: &str, call: &str, kind: &str, when: String, division: &str, channel: &str, notes: Option<&str>| {
        let mut v: serde_json::Value =
            serde_json::from_slice(&event(&format!("{p}-{id}"), &format!("{p}-{call}"), kind, &when, None, notes)).expect("json");
        v["division"] = division.into();
        v["channel"] = channel.into();
        serde_json::to_vec(&v).expect("json")
    };
    let topic = world.topic();
    // Call 1 (999, West): offered 5 min ago, answered 8 s later, closed; its events out of order.
    probe.publish(&topic, send("1b", "c1", "answered", at(5, 8), "West", "999", None)).await;
    probe.publish(&topic, send("1a", "c1", "offered", at(5, 0), "West", "999", None)).await;
    probe.publish(&topic, send("1c", "c1", "closed", at(5, 300), "West", "999", None)).await;
    // Call 2 (101, East): two hours ago, abandoned; arrives late.
    probe.publish(&topic, send("2a", "c2", "offered", at(120, 0), "East", "101", None)).await;
    probe.publish(&topic, send("2b", "c2", "abandoned", at(120, 45), "East", "101", None)).await;
    // Call 3 (999, a third division: beyond max_divisions = 2), a mental-health call.
    probe.publish(&topic, send("3a", "c3", "offered", at(1, 0), "Central", "999", Some("says he is going to jump off the bridge"))).await;
    // A duplicate.
    probe.publish(&topic, send("1a", "c1", "offered", at(5, 0), "West", "999", None)).await;

    let ready =
        eventually(Duration::from_secs(10), || async { demand.metric("lantern_mental_health_calls_window{window=\"15m\"}").await == 1.0 })
            .await;
    assert!(ready, "the mental-health flag reached demand");
    assert!(eventually(Duration::from_secs(10), || async { demand.metric("lantern_events_duplicate_total").await == 1.0 }).await);
    assert_eq!(demand.metric("lantern_calls_total{channel=\"999\",division=\"West\"}").await, 1.0);
    assert_eq!(demand.metric("lantern_calls_total{channel=\"101\",division=\"East\"}").await, 1.0);
    assert_eq!(demand.metric("lantern_calls_total{channel=\"999\",division=\"other\"}").await, 1.0, "a third division counts as other");
    assert_eq!(demand.metric("lantern_calls_abandoned_total{channel=\"101\"}").await, 1.0);
    assert_eq!(demand.metric("lantern_answer_seconds_count{channel=\"999\"}").await, 1.0);
    assert_eq!(demand.metric("lantern_answer_seconds_bucket{channel=\"999\",le=\"10\"}").await, 1.0);
    assert_eq!(demand.metric("lantern_answer_seconds_bucket{channel=\"999\",le=\"5\"}").await, 0.0);
    let home_office = |bucket: &str| format!("lantern_answered_within_seconds_total{{bucket=\"{bucket}\",channel=\"999\"}}");
    assert_eq!(demand.metric(&home_office("10")).await, 1.0, "answered in 8 s: within 10 s");
    assert_eq!(demand.metric(&home_office("60")).await, 0.0, "the buckets do not overlap");
    let window = |w: &str, ch: &str, d: &str| format!("lantern_calls_window{{channel=\"{ch}\",division=\"{d}\",window=\"{w}\"}}");
    assert!(eventually(Duration::from_secs(10), || async { demand.metric(&window("15m", "999", "West")).await == 1.0 }).await);
    assert_eq!(demand.metric(&window("1h", "101", "East")).await, 0.0, "the late call is two hours old");
    assert_eq!(demand.metric(&window("24h", "101", "East")).await, 1.0);
    let body = reqwest::get(format!("http://{}/metrics", demand.addr)).await.expect("metrics").text().await.expect("body");
    assert!(!body.contains(&p), "no call id, number or free text in any label");
    demand.stop().await;

    // Restarted: windows come back from the database; the answer for a call offered before
    // the restart is still measured when its answer arrives after it.
    probe.publish(&topic, send("4a", "c4", "offered", at(2, 0), "West", "999", None)).await;
    let demand = Running::demand(&world.config).await;
    probe.publish(&topic, send("4b", "c4", "answered", at(2, 30), "West", "999", None)).await;
    assert!(
        eventually(Duration::from_secs(10), || async { demand.metric("lantern_answer_seconds_count{channel=\"999\"}").await == 1.0 }).await
    );
    assert_eq!(demand.metric("lantern_answer_seconds_bucket{channel=\"999\",le=\"10\"}").await, 0.0);
    assert_eq!(demand.metric(&home_office("60")).await, 1.0, "answered in 30 s: 10 to 60 s");
    probe.publish(&topic, send("5a", "c5", "offered", at(3, 0), "West", "999", None)).await;
    probe.publish(&topic, send("5b", "c5", "answered", at(3, 90), "West", "999", None)).await;
    assert!(
        eventually(Duration::from_secs(10), || async { demand.metric(&home_office("inf")).await == 1.0 }).await,
        "answered in 90 s: over 60 s"
    );
    assert!(
        eventually(Duration::from_secs(10), || async { demand.metric(&window("15m", "999", "West")).await == 3.0 }).await,
        "window state survived the restart"
    );
    assert_eq!(demand.metric(&window("24h", "101", "East")).await, 1.0);
    assert_eq!(demand.metric("lantern_mental_health_calls_window{window=\"1h\"}").await, 1.0);
    demand.stop().await;
    flagger.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demand_counts_calls_by_window_and_survives_a_restart_on_every_database() {
    for backend in backends() {
        demand_counts_calls_by_window_and_survives_a_restart(backend).await;
    }
}
