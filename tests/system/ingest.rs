//! SPEC section 2 through a real broker: bad input is rejected with its reason and published to
//! `lantern/rejected`, the service keeps going, and duplicates change nothing.

use lantern_tests::*;
use std::time::Duration;

fn bad_inputs(marker: &str) -> Vec<(&'static str, Vec<u8>)> {
    let good = |patch: &dyn Fn(&mut serde_json::Value)| {
        let mut v = serde_json::json!({
            "event_id": format!("{marker}-x"), "call_id": marker, "kind": "offered",
            "occurred_at": "2026-11-20T10:00:00+00:00", "channel": "999", "division": "West",
            "caller": {"number": "0113 496 0123"}, "notes": "n"
        });
        patch(&mut v);
        serde_json::to_vec(&v).expect("json")
    };
    let mut big = format!("{{\"event_id\": \"{marker}\", \"notes\": \"").into_bytes();
    big.resize(1024 * 1024, b'a');
    vec![
        ("invalid_json", format!("not json {marker}").into_bytes()),
        ("invalid_json", format!("{{\"event_id\": \"{marker}\", \"call_id\": ").into_bytes()),
        ("invalid_json", format!("{{\"event_id\": \"{marker}\"}} trailing").into_bytes()),
        ("invalid_json", format!("{{\"event_id\": \"{marker}\", \"notes\": \"a\u{1}b\"}}").into_bytes()),
        ("not_object", format!("[\"{marker}\", 1, 2]").into_bytes()),
        ("not_object", format!("\"{marker}\"").into_bytes()),
        ("invalid_utf8", [format!("{{\"event_id\": \"{marker}\", \"notes\": \"").as_bytes(), &[0xff, 0xfe], b"\"}"].concat()),
        ("too_large", big),
        ("missing_field", good(&|v| drop(v.as_object_mut().map(|o| o.remove("event_id"))))),
        ("missing_field", good(&|v| drop(v.as_object_mut().map(|o| o.remove("call_id"))))),
        ("missing_field", good(&|v| drop(v.as_object_mut().map(|o| o.remove("kind"))))),
        ("missing_field", good(&|v| drop(v.as_object_mut().map(|o| o.remove("occurred_at"))))),
        ("missing_field", good(&|v| drop(v.as_object_mut().map(|o| o.remove("channel"))))),
        ("wrong_type", good(&|v| v["event_id"] = serde_json::json!(42))),
        ("wrong_type", good(&|v| v["kind"] = serde_json::json!(["offered"]))),
        ("wrong_type", good(&|v| v["channel"] = serde_json::json!(999))),
        ("wrong_type", good(&|v| v["caller"] = serde_json::json!("0113 496 0123"))),
        ("wrong_type", good(&|v| v["caller"]["communal_address"] = serde_json::json!("yes"))),
        ("wrong_type", good(&|v| v["notes"] = serde_json::json!({"text": "x"}))),
        ("empty_field", good(&|v| v["event_id"] = serde_json::json!(""))),
        ("too_long", good(&|v| v["call_id"] = serde_json::json!("c".repeat(129)))),
        ("too_long", good(&|v| v["division"] = serde_json::json!("d".repeat(65)))),
        ("too_long", good(&|v| v["notes"] = serde_json::json!("n".repeat(16 * 1024 + 1)))),
        ("control_characters", good(&|v| v["call_id"] = serde_json::json!("a\u{0}b"))),
        ("control_characters", good(&|v| v["notes"] = serde_json::json!("bell\u{7}"))),
        ("bad_timestamp", good(&|v| v["occurred_at"] = serde_json::json!("yesterday"))),
        ("bad_timestamp", good(&|v| v["occurred_at"] = serde_json::json!("2026-11-20T10:00:00"))),
        ("bad_timestamp", good(&|v| v["occurred_at"] = serde_json::json!("2026-13-45T10:00:00+00:00"))),
        ("future_timestamp", good(&|v| v["occurred_at"] = serde_json::json!("2099-01-01T00:00:00+00:00"))),
        ("unknown_kind", good(&|v| v["kind"] = serde_json::json!("teleported"))),
        ("unknown_channel", good(&|v| v["channel"] = serde_json::json!("112"))),
        ("invalid_value", good(&|v| v["caller"]["age_band"] = serde_json::json!("teen"))),
        ("invalid_value", good(&|v| v["caller"]["presentation"] = serde_json::json!("secret"))),
    ]
}

async fn rejects_each_bad_input_and_processes_the_next(backend: &str) {
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new(backend, tmp.path()).await;
    let world = World::new(&url, &db.url).await;
    let flagger = Running::flagger(&world.config).await;
    let marker = unique("bad-");
    let mut probe = Probe::connect(&url, &[&world.out("rejected")]).await;
    let cases = bad_inputs(&marker);
    assert!(cases.len() >= 30);
    let now = chrono::Utc::now().to_rfc3339();
    for (i, (reason, payload)) in cases.iter().enumerate() {
        probe.publish(&world.topic(), payload.clone()).await;
        let msg = probe
            .next_json(Duration::from_secs(10), |v| v["payload"].as_str().is_some_and(|p| p.contains(&marker)))
            .await
            .unwrap_or_else(|| panic!("case {i} ({reason}): nothing on lantern/rejected"));
        assert_eq!(msg["reason"], *reason, "case {i}: {}", msg["error"]);
        assert!(msg["error"].as_str().is_some_and(|e| !e.is_empty()));
        assert!(msg["payload"].as_str().is_some_and(|p| p.len() <= 4096), "payload echo is at most 4 KiB");
        assert!(!msg["payload"].as_str().unwrap_or("").contains("496 0123"), "no caller number in the echo");
        // A good event right after is processed.
        let good = event(&format!("{marker}-good-{i}"), &format!("{marker}-call-{i}"), "offered", &now, Some("0113 496 0999"), None);
        probe.publish(&world.topic(), good).await;
        let want = (i + 1) as f64;
        assert!(
            eventually(Duration::from_secs(10), || async {
                flagger.metric("lantern_events_received_total{kind=\"offered\"}").await >= want
            })
            .await,
            "case {i}: the good event after it was not processed"
        );
    }
    for reason in ["invalid_json", "missing_field", "wrong_type", "too_large", "invalid_utf8", "future_timestamp"] {
        let n = flagger.metric(&format!("lantern_events_rejected_total{{reason=\"{reason}\"}}")).await;
        let want = cases.iter().filter(|(r, _)| *r == reason).count() as f64;
        assert_eq!(n, want, "lantern_events_rejected_total{{reason=\"{reason}\"}}");
    }
    flagger.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_rejected_with_their_reason_and_the_next_good_event_is_processed() {
    for backend in backends() {
        rejects_each_bad_input_and_processes_the_next(backend).await;
    }
}

async fn duplicate_counts_once(backend: &str) {
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new(backend, tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    // Two calls in a day from one number flag on the second: a duplicate must not do it.
    world.config.repeat_callers.rules.retain(|r| r.name == "acute-day");
    world.config.repeat_callers.rules[0].min_calls = 2;
    world.config.repeat_callers.rules[0].channels = None;
    let flagger = Running::flagger(&world.config).await;
    let mut probe = Probe::connect(&url, &[&world.out("flags/#")]).await;
    let now = chrono::Utc::now();
    let number = "07700 900461";
    let first = event(&format!("{}-e1", world.prefix), &format!("{}-c1", world.prefix), "offered", &now.to_rfc3339(), Some(number), None);
    for _ in 0..3 {
        probe.publish(&world.topic(), first.clone()).await;
    }
    assert!(eventually(Duration::from_secs(10), || async { flagger.metric("lantern_events_duplicate_total").await == 2.0 }).await);
    assert_eq!(flagger.metric("lantern_events_received_total{kind=\"offered\"}").await, 3.0);
    let prefix = world.prefix.clone();
    let none = probe.next_json(Duration::from_millis(500), |v| v["call_id"].as_str().is_some_and(|c| c.starts_with(&prefix))).await;
    assert!(none.is_none(), "a duplicate counted as a second call: {none:?}");
    let second =
        event(&format!("{}-e2", world.prefix), &format!("{}-c2", world.prefix), "offered", &now.to_rfc3339(), Some("+447700900461"), None);
    probe.publish(&world.topic(), second).await;
    let flag = probe
        .next_json(Duration::from_secs(10), |v| v["call_id"].as_str().is_some_and(|c| c.starts_with(&prefix)))
        .await
        .expect("flag on the real second call");
    assert_eq!(flag["reasons"][0]["calls"], 2);
    assert_eq!(flag["status"], "raised");
    flagger.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_event_is_counted_once() {
    for backend in backends() {
        duplicate_counts_once(backend).await;
    }
}
