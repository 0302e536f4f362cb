//! Flags reach nurses through a frozen broker and a killed Lantern; the PostgreSQL live stream
//! never skips an update; a flood of oversized junk cannot grow memory without bound.

use futures::StreamExt;
use lantern_tests::*;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

/// Every call raises or updates a repeat-caller flag: one rule, one call is enough.
fn every_call_flags(world: &mut World) {
    world.config.repeat_callers.rules.retain(|r| r.name == "acute-day");
    world.config.repeat_callers.rules[0].min_calls = 1;
    world.config.repeat_callers.rules[0].channels = None;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_in_flight_when_the_broker_freezes_and_lantern_dies_all_arrive() {
    let tmp = tempfile::tempdir().expect("tmp");
    let Some(broker) = OwnMosquitto::start(tmp.path()) else {
        return;
    };
    let url = broker.url();
    let db = TestDb::new("sqlite", tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    every_call_flags(&mut world);
    world.config.flagger.listen = format!("127.0.0.1:{}", free_port());
    let config = world.write_config();
    let flagger_addr: std::net::SocketAddr = world.config.flagger.listen.parse().expect("addr");
    let ready = || async move { reqwest::get(format!("http://{flagger_addr}/readyz")).await.is_ok_and(|r| r.status().is_success()) };

    // A nurse's view of the topic: a persistent session, so nothing is missed across the freeze.
    let mut watcher = Probe::connect_with(&url, &[&world.out("flags/#")], false, &unique("watch-")).await;
    let log = tmp.path().join("lantern.log");
    let mut child = spawn_lantern(crate::LANTERN, &["run", "--service", "flagger"], &config, &log);
    assert!(eventually(Duration::from_secs(30), ready).await, "lantern started");

    let total = 6000usize;
    let publisher = Probe::connect_with(&url, &[], false, &unique("pub-")).await;
    let base = chrono::Utc::now() - chrono::Duration::hours(1);
    for i in 0..total {
        let at = (base + chrono::Duration::milliseconds(i as i64)).to_rfc3339();
        let ev = event(
            &format!("{}-e{i}", world.prefix),
            &format!("{}-c{i}", world.prefix),
            "offered",
            &at,
            Some(&format!("+4477009{:05}", i % 50)),
            None,
        );
        publisher.publish(&world.topic(), ev).await;
    }
    // Freeze the broker while flags are going out, kill Lantern meanwhile, then bring both back.
    let mut seen: HashSet<String> = HashSet::new();
    let key = |v: &Value| format!("{}:{}", v["flag_id"].as_str().unwrap_or(""), v["event_id"].as_str().unwrap_or(""));
    while seen.len() < total / 10 {
        let v = watcher.next_json(Duration::from_secs(30), |_| true).await.expect("flags start arriving");
        seen.insert(key(&v));
    }
    broker.freeze();
    tokio::time::sleep(Duration::from_secs(1)).await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    broker.thaw();
    let mut child = spawn_lantern(crate::LANTERN, &["run", "--service", "flagger"], &config, &log);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while seen.len() < total && tokio::time::Instant::now() < deadline {
        if let Some(v) = watcher.next_json(Duration::from_secs(5), |_| true).await {
            seen.insert(key(&v));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(seen.len(), total, "every flag message arrived at least once; log: {}", std::fs::read_to_string(&log).unwrap_or_default());
    let unpublished = query_i64(&db.url, "SELECT COUNT(*) FROM flagger_flag_messages WHERE published_ms IS NULL").await;
    assert!(unpublished < total as i64, "the outbox is being marked as the broker acknowledges ({unpublished} left)");
}

/// Reads `n` stream events (or what arrives within `wait`): (seq, event name).
async fn read_stream(resp: reqwest::Response, n: usize, wait: Duration) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let deadline = tokio::time::Instant::now() + wait;
    while out.len() < n {
        let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, body.next()).await else { break };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let id = block.lines().find_map(|l| l.strip_prefix("id:")).and_then(|v| v.trim().parse().ok());
            let event = block.lines().find_map(|l| l.strip_prefix("event:")).map(|v| v.trim().to_string());
            if let (Some(id), Some(event)) = (id, event) {
                out.push((id, event));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgresql_live_stream_sees_every_update_once_in_order_under_concurrent_writers() {
    if std::env::var("LANTERN_TEST_DATABASE_URL").is_err() {
        skip("LANTERN_TEST_DATABASE_URL is not set");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    // The recommended broker settings: Mosquitto's default queue limit would drop events here.
    let Some(broker) = OwnMosquitto::start(tmp.path()) else {
        return;
    };
    let url = broker.url();
    let db = TestDb::new("postgres", tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    every_call_flags(&mut world);
    world.config.desk.users = desk_users();
    let flagger = Running::flagger(&world.config).await;
    let desk = Running::desk(&world.config).await;
    let http = reqwest::Client::new();
    let stream = http.get(desk.url("/api/flags/stream?after=0")).basic_auth("nurse", Some("nurse-pass")).send().await.expect("stream");

    // Flags arrive in batches while three nurses acknowledge them as fast as they can.
    let total = 3000usize;
    let publisher = Probe::connect(&url, &[]).await;
    let p = world.prefix.clone();
    let feed = tokio::spawn({
        let topic = world.topic();
        async move {
            let base = chrono::Utc::now() - chrono::Duration::hours(1);
            for i in 0..total {
                let at = (base + chrono::Duration::milliseconds(i as i64)).to_rfc3339();
                let ev = event(&format!("{p}-e{i}"), &format!("{p}-c{i}"), "offered", &at, Some(&format!("+4477008{i:05}")), None);
                publisher.publish(&topic, ev).await;
                if i % 200 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            publisher
        }
    });
    let mut nurses = Vec::new();
    for n in 0..3 {
        let (http, base) = (http.clone(), desk.url(""));
        let desk_addr = desk.addr;
        nurses.push(tokio::spawn(async move {
            let mut acked = 0usize;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while acked < 300 && tokio::time::Instant::now() < deadline {
                let open: Vec<Value> = desk_flags(desk_addr).await.into_iter().filter(|f| f["status"] == "open").collect();
                for f in open.iter().skip(n).step_by(3).take(20) {
                    let id = f["flag_id"].as_str().unwrap_or("");
                    let r = http
                        .post(format!("{base}/api/flags/{id}/acknowledge"))
                        .basic_auth("nurse", Some("nurse-pass"))
                        .header("content-type", "application/json")
                        .body("{}")
                        .send()
                        .await
                        .expect("acknowledge");
                    acked += usize::from(r.status().is_success());
                }
            }
            acked
        }));
    }
    let _publisher = feed.await.expect("feed");
    let mut acked = 0;
    for n in nurses {
        acked += n.await.expect("nurse");
    }
    let flags = "SELECT COUNT(*) FROM desk_updates WHERE event = 'flag'";
    let stored = eventually(Duration::from_secs(60), || async { query_i64(&db.url, flags).await as usize >= total }).await;
    assert!(
        stored,
        "every flag stored: desk has {}, flagger stored {} flag messages ({} unpublished) for {} events",
        query_i64(&db.url, flags).await,
        query_i64(&db.url, "SELECT COUNT(*) FROM flagger_flag_messages").await,
        query_i64(&db.url, "SELECT COUNT(*) FROM flagger_flag_messages WHERE published_ms IS NULL").await,
        query_i64(&db.url, "SELECT COUNT(*) FROM shared_processed_events WHERE service = 'flagger'").await,
    );
    let expected = query_i64(&db.url, "SELECT COUNT(*) FROM desk_updates").await;
    let got = read_stream(stream, expected as usize, Duration::from_secs(60)).await;
    let seqs: Vec<i64> = got.iter().map(|(s, _)| *s).collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, seqs, "in order, each once");
    assert_eq!(seqs.len() as i64, expected, "no update skipped ({acked} acknowledgements among them)");
    desk.stop().await;
    flagger.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_oversized_qos0_junk_keeps_memory_bounded_and_flags_flowing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let Some(broker) = OwnMosquitto::start(tmp.path()) else {
        return;
    };
    let url = broker.url();
    let db = TestDb::new("sqlite", tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    world.config.desk.users = desk_users();
    world.config.flagger.listen = format!("127.0.0.1:{}", free_port());
    world.config.desk.listen = format!("127.0.0.1:{}", free_port());
    let config = world.write_config();
    let log = tmp.path().join("lantern.log");
    let mut child = spawn_lantern(crate::LANTERN, &["run"], &config, &log);
    let desk: std::net::SocketAddr = world.config.desk.listen.parse().expect("addr");
    assert!(
        eventually(Duration::from_secs(30), || async move {
            reqwest::get(format!("http://{desk}/readyz")).await.is_ok_and(|r| r.status().is_success())
        })
        .await
    );

    let mut o = lantern_shared::runtime::mqtt::options(&url, &unique("flood-")).expect("options");
    o.set_clean_session(true).set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 64);
    let pump = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let junk = vec![b'x'; 60 * 1024];
    let pid = child.id();
    let mut peak = 0u64;
    let started = tokio::time::Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(10) && sent < 400_000 {
        if client.publish(world.topic(), rumqttc::QoS::AtMostOnce, false, junk.clone()).await.is_err() {
            break;
        }
        sent += 1;
        if sent.is_multiple_of(100) {
            peak = peak.max(rss_kib(pid).unwrap_or(0));
        }
    }
    pump.abort();
    for _ in 0..20 {
        peak = peak.max(rss_kib(pid).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It keeps up afterwards: a good event is flagged and reaches the desk.
    let probe = Probe::connect(&url, &[]).await;
    let call = format!("{}-after-flood", world.prefix);
    let ev = event(
        &format!("{call}-e"),
        &call,
        "offered",
        &chrono::Utc::now().to_rfc3339(),
        None,
        Some("says he is going to jump off the bridge"),
    );
    probe.publish(&world.topic(), ev).await;
    let flagged = desk_flag(desk, &call, Duration::from_secs(60)).await;
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("flood: {sent} messages of 60 KiB in 10 s; peak resident memory {} MiB", peak / 1024);
    assert!(sent > 1000, "the flood ran ({sent} messages)");
    assert!(peak < 200 * 1024, "resident memory peaked at {} MiB", peak / 1024);
    assert!(flagged.is_some(), "a flag after the flood; log: {}", std::fs::read_to_string(&log).unwrap_or_default());
}

/// A backlog where every event raises or updates a flag, larger than rumqttc's request queue:
/// acks and flag publishes once filled that queue while the receive buffer was full, and the
/// flagger stopped for good at about 65,000 events (each side waiting on the other).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_heavy_backlog_larger_than_the_client_queues_drains_to_the_last_event() {
    let tmp = tempfile::tempdir().expect("tmp");
    let Some(broker) = OwnMosquitto::start(tmp.path()) else {
        return;
    };
    let url = broker.url();
    let db = TestDb::new("sqlite", tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    every_call_flags(&mut world);
    // Register the flagger's persistent session, then queue the backlog while it is away.
    Running::flagger(&world.config).await.stop().await;
    let total = 80_000usize;
    let publisher = Probe::connect(&url, &[]).await;
    let base = chrono::Utc::now() - chrono::Duration::hours(2);
    for i in 0..total {
        let at = (base + chrono::Duration::milliseconds(i as i64 * 50)).to_rfc3339();
        let number = format!("+4474001{:05}", i % 997);
        let ev = event(&format!("{}-e{i}", world.prefix), &format!("{}-c{i}", world.prefix), "offered", &at, Some(&number), None);
        publisher.publish(&world.topic(), ev).await;
    }
    let flagger = Running::flagger(&world.config).await;
    // Progress, not speed: fail only if the count stops moving for 30 s.
    let (mut last, mut moved) = (0.0, tokio::time::Instant::now());
    while last < total as f64 && moved.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let received = flagger.metric("lantern_events_received_total{kind=\"offered\"}").await;
        if received > last {
            (last, moved) = (received, tokio::time::Instant::now());
        }
    }
    flagger.stop().await;
    assert_eq!(last, total as f64, "every event of the backlog was processed");
    let calls = query_i64(&db.url, "SELECT COUNT(*) FROM flagger_calls").await;
    assert_eq!(calls, total as i64, "every call stored once");
    let messages = query_i64(&db.url, "SELECT COUNT(*) FROM flagger_flag_messages").await;
    assert_eq!(messages, total as i64, "one flag message per event");
    db.cleanup().await;
}
