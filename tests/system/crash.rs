//! Crashes and broker restarts lose nothing and count nothing twice. These start their own
//! Mosquitto (the repo's recommended config) so they can stop it, and hold 10,000 events.

use lantern_tests::*;
use std::time::Duration;

/// 2,000 callers with five calls each in one week: exactly 2,000 raised frecann-month flags.
fn stream(prefix: &str, callers: usize) -> Vec<Vec<u8>> {
    let base = chrono::Utc::now() - chrono::Duration::days(7);
    let mut out = Vec::with_capacity(callers * 5);
    for round in 0..5 {
        for c in 0..callers {
            let at = (base + chrono::Duration::minutes((round * callers + c) as i64)).to_rfc3339();
            let number = format!("+4477009{c:05}");
            out.push(event(&format!("{prefix}-{round}-{c}"), &format!("{prefix}-call-{round}-{c}"), "offered", &at, Some(&number), None));
        }
    }
    out
}

async fn counts(db_url: &str) -> (i64, i64, i64) {
    let db = lantern_shared::store::Db::connect(db_url).await.expect("db");
    let pool = match &db {
        lantern_shared::store::Db::Sqlite(p) => p.clone(),
        _ => unreachable!("these tests use SQLite"),
    };
    let events: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM shared_processed_events WHERE service = 'flagger'").fetch_one(&pool).await.expect("count");
    let calls: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM flagger_calls").fetch_one(&pool).await.expect("count");
    let flags: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM flagger_repeat_flags").fetch_one(&pool).await.expect("count");
    db.close().await;
    (events, calls, flags)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_ten_thousand_events_in_flight_loses_none_and_counts_none_twice() {
    let tmp = tempfile::tempdir().expect("tmp");
    let Some(broker) = OwnMosquitto::start(tmp.path()) else {
        return;
    };
    let url = broker.url();
    let db = TestDb::new("sqlite", tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    world.config.broker.enabled = false;
    world.config.flagger.listen = format!("127.0.0.1:{}", free_port());
    let config = world.write_config();
    let log = tmp.path().join("lantern.log");

    // First run registers the persistent session and subscription.
    let mut child = spawn_lantern(crate::LANTERN, &["run"], &config, &log);
    let addr: std::net::SocketAddr = world.config.flagger.listen.parse().expect("addr");
    assert!(
        eventually(Duration::from_secs(30), || async {
            reqwest::get(format!("http://{addr}/readyz")).await.is_ok_and(|r| r.status().is_success())
        })
        .await
    );

    let events = stream(&world.prefix, 2000);
    let total = events.len() as i64;
    let publisher = Probe::connect(&url, &[]).await;
    for e in events.iter().take(5000) {
        publisher.publish(&world.topic(), e.clone()).await;
    }
    // Kill it mid-stream, while the rest is still being published.
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    for e in events.iter().skip(5000) {
        publisher.publish(&world.topic(), e.clone()).await;
    }
    let (done_before, _, _) = counts(&db.url).await;
    assert!(done_before < total, "the kill should have interrupted the stream ({done_before} of {total} done)");

    let mut child = spawn_lantern(crate::LANTERN, &["run"], &config, &log);
    let ok = eventually(Duration::from_secs(120), || async { counts(&db.url).await.0 == total }).await;
    let (processed, calls, flags) = counts(&db.url).await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "processed {processed} of {total} after the restart; log: {}", std::fs::read_to_string(&log).unwrap_or_default());
    assert_eq!(calls, total, "every call counted once");
    assert_eq!(flags, 2000, "each caller flagged exactly once at the fifth call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_restarts_mid_stream_and_the_service_reconnects_losing_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let Some(mut broker) = OwnMosquitto::start(tmp.path()) else {
        return;
    };
    let url = broker.url();
    let db = TestDb::new("sqlite", tmp.path()).await;
    let world = World::new(&url, &db.url).await;
    let flagger = Running::flagger(&world.config).await;

    let events = stream(&world.prefix, 400);
    let total = events.len() as i64;
    // A persistent publisher session, so its unacknowledged publishes survive the restart too.
    let publisher = Probe::connect_with(&url, &[], false, &unique("pub-")).await;
    for e in events.iter().take(1000) {
        publisher.publish(&world.topic(), e.clone()).await;
    }
    assert!(eventually(Duration::from_secs(20), || async { counts(&db.url).await.0 >= 1000 }).await);
    broker.stop();
    assert!(
        eventually(Duration::from_secs(10), || async {
            !reqwest::get(format!("http://{}/readyz", flagger.addr)).await.is_ok_and(|r| r.status().is_success())
        })
        .await,
        "/readyz must say not ready while the broker is down"
    );
    assert_eq!(flagger.metric("lantern_mqtt_connected").await, 0.0);
    for e in events.iter().skip(1000) {
        publisher.publish(&world.topic(), e.clone()).await;
    }
    broker.restart();
    let ok = eventually(Duration::from_secs(60), || async { counts(&db.url).await.0 == total }).await;
    let (processed, calls, flags) = counts(&db.url).await;
    assert!(ok, "processed {processed} of {total} after the broker restart");
    assert_eq!(calls, total);
    assert_eq!(flags, 400);
    flagger.wait_ready().await;
    assert_eq!(flagger.metric("lantern_mqtt_connected").await, 1.0);
    flagger.stop().await;
}
