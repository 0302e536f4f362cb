//! Events through the broker: draining a queue, publish-to-flag latency.

use chrono::{Duration, Utc};
use std::time::Instant;

/// Publishes every payload at QoS 1 and waits until the broker has acknowledged them all.
pub(crate) async fn publish_all(url: &str, topic: &str, payloads: Vec<Vec<u8>>) {
    use rumqttc::{Event, Packet, QoS};
    let mut o = lantern_shared::runtime::mqtt::options(url, &lantern_tests::unique("bench-pub-")).expect("url");
    o.set_clean_session(true).set_manual_acks(false).set_inflight(1000);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 10_000);
    let n = payloads.len();
    let topic = topic.to_string();
    tokio::spawn(async move {
        for p in payloads {
            let _ = client.publish(topic.clone(), QoS::AtLeastOnce, false, p).await;
        }
    });
    let mut acked = 0;
    while acked < n {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(_) => {}
            Err(e) => panic!("publisher: {e}"),
        }
    }
}

/// The last `n` events of simulated force traffic (realistic mix, repeat callers, notes).
pub(crate) fn traffic(n: usize) -> Vec<Vec<u8>> {
    let mut buf = Vec::new();
    let params = lantern::simulate::Params { calls_per_day: 2740.0, ..Default::default() };
    lantern::simulate::write_jsonl(params, Utc::now(), Duration::days(8), &mut buf).expect("traffic");
    let lines: Vec<&[u8]> = buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| l.to_vec()).collect()
}

/// A bare QoS 1 subscriber that only acks: how fast the broker can hand over queued events.
pub(crate) async fn bare_drain(url: &str, n: usize) -> f64 {
    use rumqttc::{Event, Packet, QoS};
    let id = lantern_tests::unique("bench-bare-");
    let topic = format!("{id}/calls/x");
    let connect = |id: &str| {
        let o = lantern_shared::runtime::mqtt::options(url, id).expect("url");
        rumqttc::AsyncClient::new(o, 10_000)
    };
    // Register a persistent session and subscription, then go away while events queue.
    let (client, mut el) = connect(&id);
    client.subscribe(topic.clone(), QoS::AtLeastOnce).await.expect("subscribe");
    loop {
        if let Ok(Event::Incoming(Packet::SubAck(_))) = el.poll().await {
            break;
        }
    }
    client.disconnect().await.expect("disconnect");
    while !matches!(el.poll().await, Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_)) {}
    drop(el);
    publish_all(
        url,
        &topic,
        (0..n)
            .map(|i| {
                lantern_tests::event(&format!("b{i}"), &format!("bc{i}"), "offered", "2026-11-01T00:00:00Z", Some("07700 900001"), None)
            })
            .collect(),
    )
    .await;
    let (client, mut el) = connect(&id);
    let start = Instant::now();
    let mut got = 0;
    while got < n {
        if let Ok(Event::Incoming(Packet::Publish(p))) = el.poll().await {
            got += 1;
            let _ = client.try_ack(&p);
        }
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = client.disconnect().await;
    rate
}

/// The flagger draining the same queue: each event parsed, stored, detected, committed, acked.
pub(crate) async fn flagger_drain(url: &str, n: usize, backend: &str) -> f64 {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = lantern_tests::TestDb::new(backend, tmp.path()).await;
    let world = lantern_tests::World::new(url, &db.url).await;
    let first = lantern_tests::Running::flagger(&world.config).await;
    first.stop().await;
    publish_all(url, &world.topic(), traffic(n)).await;
    let flagger = lantern_flagger::Flagger::build(world.config.clone()).await.expect("build");
    let addr = flagger.local_addr();
    let stop = tokio_util::sync::CancellationToken::new();
    let start = Instant::now();
    let task = tokio::spawn(flagger.run(stop.clone()));
    let target = n as f64;
    loop {
        let body = reqwest::get(format!("http://{addr}/metrics")).await.expect("metrics").text().await.unwrap_or_default();
        let received: f64 = body
            .lines()
            .filter(|l| l.starts_with("lantern_events_received_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if received >= target {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let rate = target / start.elapsed().as_secs_f64();
    stop.cancel();
    let _ = task.await;
    db.cleanup().await;
    rate
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Publish-to-flag latency at a steady 1,000 events a second, every event raising a
/// mental-health flag; baseline: publish-to-receive on a bare subscriber at the same pace.
pub(crate) async fn latency(url: &str, seconds: u64, backend: &str, with_bare: bool) -> (Vec<f64>, Vec<f64>) {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = lantern_tests::TestDb::new(backend, tmp.path()).await;
    let world = lantern_tests::World::new(url, &db.url).await;
    let flagger = lantern_tests::Running::flagger(&world.config).await;
    let p = world.prefix.clone();
    let measure = |topic: String, listen: String| {
        let url = url.to_string();
        let p = p.clone();
        async move {
            let mut probe = lantern_tests::Probe::connect(&url, &[&listen]).await;
            let publisher = lantern_tests::Probe::connect(&url, &[]).await;
            let total = (seconds * 1000) as usize;
            let sent: std::sync::Arc<std::sync::Mutex<Vec<Option<Instant>>>> =
                std::sync::Arc::new(std::sync::Mutex::new(vec![None; total]));
            let s2 = sent.clone();
            let p2 = p.clone();
            let pubtask = tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_millis(1));
                for i in 0..total {
                    tick.tick().await;
                    let ev = lantern_tests::event(
                        &format!("{p2}-l{i}"),
                        &format!("{p2}-lat-{i}"),
                        "offered",
                        &Utc::now().to_rfc3339(),
                        None,
                        Some("says he's going to jump off the bridge"),
                    );
                    if let Ok(mut v) = s2.lock() {
                        v[i] = Some(Instant::now());
                    }
                    publisher.publish(&topic, ev).await;
                }
                publisher
            });
            let mut lat = Vec::with_capacity(total);
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds + 30);
            while lat.len() < total {
                let Ok(Some(msg)) = tokio::time::timeout_at(deadline, probe.rx.recv()).await else { break };
                let v: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap_or_default();
                let call = v["call_id"].as_str().map(str::to_string);
                let Some(i) = call.and_then(|c| c.rsplit('-').next().and_then(|n| n.parse::<usize>().ok())) else { continue };
                if let Some(Some(at)) = sent.lock().ok().and_then(|v| v.get(i).copied()) {
                    lat.push(at.elapsed().as_secs_f64() * 1000.0);
                    if std::env::var_os("LANTERN_BENCH_TRACE").is_some() && at.elapsed().as_secs_f64() > 0.005 {
                        println!("slow: event {i} took {:.1} ms", at.elapsed().as_secs_f64() * 1000.0);
                    }
                }
            }
            let _ = pubtask.await;
            lat.sort_by(|a, b| a.total_cmp(b));
            lat
        }
    };
    let flags = measure(world.topic(), world.out("flags/mental-health")).await;
    let bare_topic = format!("{}/bare/x", world.prefix);
    let bare = if with_bare { measure(bare_topic.clone(), bare_topic).await } else { Vec::new() };
    flagger.stop().await;
    (flags, bare)
}
