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
        match stalled(eventloop.poll()).await {
            Some(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("publisher: {e}"),
            None => panic!("publisher: the broker acknowledged {acked} of {n} events, then nothing for {STALL:?}"),
        }
    }
}

/// How long a drain or a publish may go without progress before the benchmark gives up on it.
const STALL: std::time::Duration = std::time::Duration::from_secs(5);

/// `step`, or none if it took longer than [`STALL`].
async fn stalled<T>(step: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(STALL, step).await.ok()
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
        match stalled(el.poll()).await {
            Some(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
            Some(_) => {}
            None => panic!("bare subscriber: no SUBACK within {STALL:?}"),
        }
    }
    client.disconnect().await.expect("disconnect");
    while !matches!(stalled(el.poll()).await, Some(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_)) | None) {}
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
    let (mut got, mut last) = (0, start);
    while got < n {
        match stalled(el.poll()).await {
            Some(Ok(Event::Incoming(Packet::Publish(p)))) => {
                got += 1;
                last = Instant::now();
                let _ = client.try_ack(&p);
            }
            Some(_) => {}
            None => {
                println!("(the broker handed the bare subscriber {got} of {n} events, then nothing for {STALL:?})");
                break;
            }
        }
    }
    let rate = got as f64 / last.duration_since(start).as_secs_f64();
    // Acks can fill the client's request queue on a long drain, and nothing polls the event
    // loop any more: a disconnect waiting for room there would wait for ever.
    let _ = client.try_disconnect();
    rate
}

/// Unique callers: `n` calls, each from a number not seen before, no notes, so no flags.
pub(crate) fn unique_callers(tag: &str, n: usize) -> Vec<Vec<u8>> {
    let at = Utc::now().to_rfc3339();
    (0..n)
        .map(|i| {
            let number = format!("07400 {}", 200_000 + i);
            lantern_tests::event(&format!("{tag}-e{i}"), &format!("{tag}-c{i}"), "offered", &at, Some(&number), None)
        })
        .collect()
}

/// Flag-heavy traffic: events `from..from + n` of 997 callers calling in turn, spread over the
/// 29 days before `end` (about 100 calls each per 100,000 events), so that from each caller's
/// fifth call on every event raises or updates a repeat-caller flag. `tag` keeps ids apart.
pub(crate) fn flag_heavy(tag: &str, from: usize, n: usize, end: chrono::DateTime<Utc>) -> Vec<Vec<u8>> {
    let span = Duration::days(29).num_milliseconds() as f64;
    (from..from + n)
        .map(|i| {
            let at = end - Duration::milliseconds((span * (1.0 - (i - from) as f64 / n.max(1) as f64)) as i64);
            let number = format!("07400 {}", 100_000 + i % 997);
            lantern_tests::event(&format!("{tag}-e{i}"), &format!("{tag}-c{i}"), "offered", &at.to_rfc3339(), Some(&number), None)
        })
        .collect()
}

/// The flagger draining a queue of `payloads`: each event parsed, stored, detected, committed,
/// acked, its flags stored and published.
pub(crate) async fn flagger_drain(url: &str, backend: &str, payloads: Vec<Vec<u8>>) -> f64 {
    let n = payloads.len();
    let tmp = tempfile::tempdir().expect("tmp");
    let db = lantern_tests::TestDb::new(backend, tmp.path()).await;
    let world = lantern_tests::World::new(url, &db.url).await;
    let first = lantern_tests::Running::flagger(&world.config).await;
    first.stop().await;
    publish_all(url, &world.topic(), payloads).await;
    let flagger = lantern_flagger::Flagger::build(world.config.clone()).await.expect("build");
    let addr = flagger.local_addr();
    let stop = tokio_util::sync::CancellationToken::new();
    let start = Instant::now();
    let task = tokio::spawn(flagger.run(stop.clone()));
    let done = received_at_least(addr, n).await;
    if done < n {
        println!("(the broker delivered {done} of {n} events: it dropped the rest)");
    }
    let rate = done as f64 / start.elapsed().as_secs_f64();
    stop.cancel();
    let _ = task.await;
    db.cleanup().await;
    rate
}

/// Waits until the flagger at `addr` has processed `n` events, or until the count has not
/// moved for 5 s (a broker on its defaults drops QoS 1 messages beyond 1,000 queued for a
/// client). Returns the count.
async fn received_at_least(addr: std::net::SocketAddr, n: usize) -> usize {
    let (mut last, mut moved) = (0.0, Instant::now());
    loop {
        let body = reqwest::get(format!("http://{addr}/metrics")).await.expect("metrics").text().await.unwrap_or_default();
        let received: f64 = body
            .lines()
            .filter(|l| l.starts_with("lantern_events_received_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if received >= n as f64 || moved.elapsed() > STALL {
            return received as usize;
        }
        if received > last {
            (last, moved) = (received, Instant::now());
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A Python with paho-mqtt and phonenumbers, for the naive peer.
fn python_with_peer_modules() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|py| {
        std::process::Command::new(py)
            .args(["-c", "import paho.mqtt.client, phonenumbers"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// The naive Python peer (tests/benches/peer/naive_peer.py) draining a queue of `payloads`:
/// events per second, or `None` where Python lacks paho-mqtt or phonenumbers.
pub(crate) async fn naive_peer_drain(url: &str, payloads: Vec<Vec<u8>>) -> Option<f64> {
    let python = python_with_peer_modules()?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer/naive_peer.py");
    let port = url.rsplit(':').next().unwrap_or("1883").to_string();
    let id = lantern_tests::unique("bench-peer-");
    let topic = format!("{id}/calls/x");
    let n = payloads.len();
    let run = |n: usize| {
        let (python, script, port, id, topic) = (python, script.clone(), port.clone(), id.clone(), topic.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(python)
                .arg(&script)
                .args(["127.0.0.1", &port, &id, &topic, &format!("{id}/flags"), &n.to_string()])
                .output()
        })
    };
    // Register the persistent session, queue the events, then drain them.
    run(0).await.ok()?.ok()?;
    publish_all(url, &topic, payloads).await;
    let out = run(n).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().last()?.split_whitespace().next()?.parse().ok()
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Publish-to-flag latency at a steady 1,000 events a second, every event updating a
/// repeat-caller flag, with a flag-heavy history held: the flagger first takes a burst of
/// `history` flag-heavy events; one run of `seconds` starts as soon as it has processed them
/// (what the burst leaves behind must not hold new flags back), a second after `idle` seconds
/// of quiet. Baseline: publish to a bare subscriber at the same pace, same broker.
pub(crate) struct Latencies {
    pub after_burst: Vec<f64>,
    pub idle: Vec<f64>,
    pub bare: Vec<f64>,
}

pub(crate) async fn latency(url: &str, seconds: u64, backend: &str, history: usize, idle: u64) -> Latencies {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = lantern_tests::TestDb::new(backend, tmp.path()).await;
    let world = lantern_tests::World::new(url, &db.url).await;
    let flagger = lantern_tests::Running::flagger(&world.config).await;
    let p = world.prefix.clone();
    publish_all(url, &world.topic(), flag_heavy(&p, 0, history, Utc::now())).await;
    received_at_least(flagger.addr, history).await;
    let flags = world.out("flags/repeat-caller");
    let after_burst = steady(url, &world.topic(), &flags, &p, history, seconds).await;
    tokio::time::sleep(std::time::Duration::from_secs(idle)).await;
    let idle = steady(url, &world.topic(), &flags, &p, history + 2 * after_burst.len().max(1000 * seconds as usize), seconds).await;
    let bare_topic = format!("{p}/bare/x");
    let bare = steady(url, &bare_topic, &bare_topic, &p, 10_000_000, seconds).await;
    flagger.stop().await;
    db.cleanup().await;
    Latencies { after_burst, idle, bare }
}

/// Publishes `seconds` × 1,000 flag-heavy events (numbered from `from`), one a millisecond,
/// timed now, and returns each one's publish-to-receipt time on `listen`, sorted, in ms.
async fn steady(url: &str, topic: &str, listen: &str, tag: &str, from: usize, seconds: u64) -> Vec<f64> {
    let mut probe = lantern_tests::Probe::connect(url, &[listen]).await;
    let publisher = lantern_tests::Probe::connect(url, &[]).await;
    let total = (seconds * 1000) as usize;
    let sent: std::sync::Arc<std::sync::Mutex<Vec<Option<Instant>>>> = std::sync::Arc::new(std::sync::Mutex::new(vec![None; total]));
    let s2 = sent.clone();
    let (topic, tag) = (topic.to_string(), tag.to_string());
    let pubtask = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(1));
        for i in 0..total {
            tick.tick().await;
            let ev = flag_heavy(&tag, from + i, 1, Utc::now() + Duration::days(29)).remove(0);
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
        let Some(i) = v["call_id"].as_str().and_then(|c| c.rsplit("-c").next()).and_then(|n| n.parse::<usize>().ok()) else { continue };
        let Some(i) = i.checked_sub(from) else { continue };
        // The first flag message for each event (one event may update two rules' flags).
        if let Some(at) = sent.lock().ok().and_then(|mut v| v.get_mut(i).and_then(Option::take)) {
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
