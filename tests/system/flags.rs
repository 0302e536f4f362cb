//! Flags to nurses through the running service, and history that survives a restart.

use lantern_tests::*;
use std::time::Duration;

fn days_ago(d: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(d)).to_rfc3339()
}

async fn restart_continues_counting(backend: &str) {
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new(backend, tmp.path()).await;
    let world = World::new(&url, &db.url).await;
    let mut probe = Probe::connect(&url, &[&world.out("flags/repeat-caller")]).await;
    let p = world.prefix.clone();
    let mine = |v: &serde_json::Value| v["call_id"].as_str().is_some_and(|c| c.starts_with(&p));

    // Four calls over four weeks from one number, in assorted formats: no flag yet.
    let flagger = Running::flagger(&world.config).await;
    for (i, n) in ["0113 496 0555", "+44 113 496 0555", "01134960555", "(0113) 4960555"].iter().enumerate() {
        let ev = event(&format!("{p}-e{i}"), &format!("{p}-c{i}"), "offered", &days_ago(28 - 7 * i as i64), Some(n), None);
        probe.publish(&world.topic(), ev).await;
    }
    assert!(
        eventually(Duration::from_secs(10), || async { flagger.metric("lantern_events_received_total{kind=\"offered\"}").await == 4.0 })
            .await
    );
    assert!(probe.next_json(Duration::from_millis(300), mine).await.is_none(), "four calls must not flag");
    flagger.stop().await;

    // Restarted: the fifth call flags exactly as an uninterrupted run would.
    let flagger = Running::flagger(&world.config).await;
    let ev = event(&format!("{p}-e4"), &format!("{p}-c4"), "offered", &days_ago(0), Some("0113 496 0555"), None);
    probe.publish(&world.topic(), ev).await;
    let flag = probe.next_json(Duration::from_secs(10), mine).await.expect("the fifth call in 30 days flags after a restart");
    assert_eq!(flag["status"], "raised");
    assert_eq!(flag["kind"], "repeat_caller");
    assert_eq!(flag["severity"], "medium");
    assert_eq!(flag["reasons"][0]["rule"], "frecann-month");
    assert_eq!(flag["reasons"][0]["calls"], 5);
    let flag_id = flag["flag_id"].clone();
    assert!(flag["caller_ref"].as_str().is_some_and(|r| r.len() == 16));
    assert!(!flag.to_string().contains("4960555"), "no raw number in a flag");
    flagger.stop().await;

    // And again: the sixth call updates the same flag (cooldown survives the restart).
    let flagger = Running::flagger(&world.config).await;
    let ev = event(&format!("{p}-e5"), &format!("{p}-c5"), "offered", &days_ago(0), Some("0113 496 0555"), None);
    probe.publish(&world.topic(), ev).await;
    let flag = probe.next_json(Duration::from_secs(10), mine).await.expect("sixth call updates");
    assert_eq!(flag["status"], "updated");
    assert_eq!(flag["flag_id"], flag_id);
    assert_eq!(flag["reasons"][0]["calls"], 6);
    assert_eq!(flagger.metric("lantern_flags_raised_total{kind=\"repeat_caller\",severity=\"medium\"}").await, 0.0);
    flagger.stop().await;

    // A clean stop leaves nothing in the outbox, so no flag is sent again at the next start.
    let store = lantern_shared::store::Db::connect(&db.url).await.expect("database");
    let q = "SELECT COUNT(*) FROM flagger_flag_messages WHERE published_ms IS NULL";
    let unpublished: i64 = lantern_shared::with_db!(&store, |pool| sqlx::query_scalar(q).fetch_one(pool).await).expect("outbox");
    assert_eq!(unpublished, 0, "flags handed to the broker are marked published by shutdown");
    store.close().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_restart_and_the_next_call_flags_as_if_uninterrupted() {
    for backend in backends() {
        restart_continues_counting(backend).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nurse_sees_a_mental_health_flag_for_a_bridge_and_none_for_a_maniac_driver() {
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new("sqlite", tmp.path()).await;
    let world = World::new(&url, &db.url).await;
    let flagger = Running::flagger(&world.config).await;
    let mut probe = Probe::connect(&url, &[&world.out("flags/mental-health")]).await;
    let p = world.prefix.clone();
    let now = chrono::Utc::now().to_rfc3339();
    probe
        .publish(
            &world.topic(),
            event(&format!("{p}-m1"), &format!("{p}-maniac"), "offered", &now, None, Some("driving like a maniac on the M6")),
        )
        .await;
    probe
        .publish(
            &world.topic(),
            event(
                &format!("{p}-b1"),
                &format!("{p}-bridge"),
                "offered",
                &now,
                Some("07700 900777"),
                Some("says he's going to jump off the bridge"),
            ),
        )
        .await;
    let flag = probe
        .next_json(Duration::from_secs(10), |v| v["call_id"].as_str().is_some_and(|c| c.starts_with(&p)))
        .await
        .expect("a mental-health flag");
    assert_eq!(flag["call_id"], format!("{p}-bridge"), "the maniac driver must not flag");
    assert_eq!(flag["kind"], "mental_health");
    assert_eq!(flag["severity"], "high");
    let reason = &flag["reasons"][0];
    assert_eq!(reason["negated"], false);
    assert!(reason["snippet"].as_str().is_some_and(|s| s.contains("jump off")), "{reason}");
    // A later update with a lower-severity cue publishes nothing; one with a new higher cue would.
    probe
        .publish(&world.topic(), event(&format!("{p}-b2"), &format!("{p}-bridge"), "updated", &now, None, Some("known to the crisis team")))
        .await;
    assert!(probe.next_json(Duration::from_millis(500), |v| v["call_id"].as_str().is_some_and(|c| c.starts_with(&p))).await.is_none());
    assert_eq!(flagger.metric("lantern_flags_raised_total{kind=\"mental_health\",severity=\"high\"}").await, 1.0);
    flagger.stop().await;
}

/// The single-machine default: the embedded broker (rumqttd) carries events and flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_carries_events_and_flags() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let started = tokio::task::spawn_blocking(move || lantern_broker::start(addr)).await.expect("thread").expect("embedded broker");
    assert_eq!(started, lantern_broker::Started::Embedded(addr));
    let url = format!("mqtt://127.0.0.1:{port}");
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new("sqlite", tmp.path()).await;
    let world = World::new(&url, &db.url).await;
    let flagger = Running::flagger(&world.config).await;
    let mut probe = Probe::connect(&url, &[&world.out("flags/#")]).await;
    let p = world.prefix.clone();
    probe
        .publish(
            &world.topic(),
            event(
                &format!("{p}-1"),
                &format!("{p}-c1"),
                "offered",
                &chrono::Utc::now().to_rfc3339(),
                None,
                Some("wants to kill himself tonight"),
            ),
        )
        .await;
    let flag = probe
        .next_json(Duration::from_secs(10), |v| v["call_id"].as_str().is_some_and(|c| c.starts_with(&p)))
        .await
        .expect("a flag through the embedded broker");
    assert_eq!(flag["kind"], "mental_health");
    assert_eq!(flagger.metric("lantern_events_received_total{kind=\"offered\"}").await, 1.0);
    // A second start on the same address finds it taken and uses the broker already there.
    let again = tokio::task::spawn_blocking(move || lantern_broker::start(addr)).await.expect("thread").expect("start");
    assert_eq!(again, lantern_broker::Started::AlreadyServed(addr));
    flagger.stop().await;
}
