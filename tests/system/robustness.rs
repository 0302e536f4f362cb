//! SPEC section 2, "No single message may stop a service": whatever a producer, a peer or a crash
//! sends, the services keep running and the messages after it are processed as usual.

use lantern_shared::Clock;
use lantern_tests::*;
use serde_json::{json, Value};
use std::time::Duration;

/// A change to one field of a message, named for the failure report.
type Patch<'a> = (&'static str, Box<dyn Fn(&mut Value) + 'a>);

const CUE: &str = "says he is going to jump off the bridge tonight";

/// A good call that raises a mental-health flag.
fn good(prefix: &str, n: usize) -> (String, Vec<u8>) {
    let call = format!("{prefix}-good-{n}");
    let ev = event(&format!("{call}-e"), &call, "offered", &chrono::Utc::now().to_rfc3339(), Some("07700 900123"), Some(CUE));
    (call, ev)
}

/// A call event with `patch` applied.
fn shaped(prefix: &str, n: usize, patch: impl Fn(&mut Value)) -> Vec<u8> {
    let mut v = json!({
        "event_id": format!("{prefix}-h{n}"), "call_id": format!("{prefix}-hc{n}"), "kind": "offered",
        "occurred_at": chrono::Utc::now().to_rfc3339(), "channel": "999", "division": "West",
        "caller": {"number": "0113 496 0123"}, "notes": "caller locked out"
    });
    patch(&mut v);
    serde_json::to_vec(&v).expect("json")
}

/// A flag message as the flagger would publish it, with `patch` applied.
fn flag_message(prefix: &str, n: usize, patch: impl Fn(&mut Value)) -> Vec<u8> {
    let mut v = json!({
        "flag_id": uuid::Uuid::now_v7().to_string(), "status": "raised", "kind": "mental_health", "severity": "high",
        "call_id": format!("{prefix}-fc{n}"), "event_id": format!("{prefix}-fe{n}"),
        "occurred_at": chrono::Utc::now().to_rfc3339(), "raised_at": chrono::Utc::now().to_rfc3339(),
        "channel": "999", "division": "West", "caller_ref": null,
        "reasons": [{"category": "suicide", "cue": "jump off", "severity": "high", "negated": false, "snippet": "jump off", "source": "lexicon"}]
    });
    patch(&mut v);
    serde_json::to_vec(&v).expect("json")
}

/// Hostile messages: (which topic: "calls" or "flags", payload).
fn hostile(prefix: &str) -> Vec<(&'static str, Vec<u8>)> {
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let mut cases: Vec<(&'static str, Vec<u8>)> = vec![
        // A wildcard cue whose match runs on for hundreds of letters (it once panicked the snippet).
        ("calls", shaped(prefix, 0, |v| v["notes"] = json!(format!("found with a ligature{}", "a".repeat(400))))),
        ("calls", shaped(prefix, 1, |v| v["notes"] = json!(format!("ligature{} around his neck", "x".repeat(15_000))))),
        // A multi-word cue with a long run of spaces inside it.
        ("calls", shaped(prefix, 2, |v| v["notes"] = json!(format!("wants to hang{}himself", " ".repeat(300))))),
        // 16 KiB of notes that are one word; and of newlines.
        ("calls", shaped(prefix, 3, |v| v["notes"] = json!("a".repeat(16 * 1024)))),
        ("calls", shaped(prefix, 4, |v| v["notes"] = json!("\n".repeat(16 * 1024)))),
        // Bidi overrides, combining marks and emoji inside cues.
        ("calls", shaped(prefix, 5, |v| v["notes"] = json!("\u{202e}jump off the bridge\u{202c} \u{2066}now\u{2069}"))),
        ("calls", shaped(prefix, 6, |v| v["division"] = json!("\u{202e}tseW"))),
        (
            "calls",
            shaped(prefix, 7, |v| {
                v["notes"] =
                    json!("ju\u{301}mp o\u{308}ff the bri\u{327}dge s\u{336}u\u{336}i\u{336}c\u{336}i\u{336}d\u{336}a\u{336}l\u{336}")
            }),
        ),
        ("calls", shaped(prefix, 8, |v| v["notes"] = json!("going to 🌉 jump 🌉 off the 🌉 bridge 😢 hanging🙂himself"))),
        ("calls", shaped(prefix, 9, |v| v["call_id"] = json!("🌉".repeat(128)))),
        // A 5,000-digit number, a 40 KiB address id, thousands of qualifiers.
        ("calls", shaped(prefix, 10, |v| v["caller"]["number"] = json!("7".repeat(5000)))),
        ("calls", shaped(prefix, 11, |v| v["notes"] = json!(format!("call back on {}", "4".repeat(5000))))),
        ("calls", shaped(prefix, 12, |v| v["caller"]["address_id"] = json!("u".repeat(40 * 1024)))),
        ("calls", shaped(prefix, 13, |v| v["incident"] = json!({"type": "CONCERN", "qualifiers": vec!["MENTAL_HEALTH"; 3000]}))),
        // Deep nesting in an unknown field; an unknown field holding everything at once.
        (
            "calls",
            shaped(prefix, 14, |v| {
                v["extra"] =
                    serde_json::from_str(&"[".repeat(100).chars().chain("]".repeat(100).chars()).collect::<String>()).unwrap_or(Value::Null)
            }),
        ),
        ("calls", format!("{{\"event_id\": \"{prefix}-deep\", \"x\": {deep}}}").into_bytes()),
        // Year 1, a leap second, extreme offsets.
        ("calls", shaped(prefix, 15, |v| v["occurred_at"] = json!("0001-01-01T00:00:00+00:00"))),
        ("calls", shaped(prefix, 16, |v| v["occurred_at"] = json!("2016-12-31T23:59:60+00:00"))),
        ("calls", shaped(prefix, 17, |v| v["occurred_at"] = json!("2020-01-01T00:00:00+23:59"))),
        // An update for a call never seen.
        (
            "calls",
            shaped(prefix, 18, |v| {
                v["kind"] = json!("updated");
                v["notes"] = json!("update: now says he has taken all his tablets");
            }),
        ),
        // SQL in every text field, lone surrogates, a byte-order mark.
        (
            "calls",
            shaped(prefix, 19, |v| {
                v["division"] = json!("'); DROP TABLE flagger_calls; --");
                v["incident"] = json!({"type": "x'; DELETE FROM desk_flags; --", "grade": "\"\\"});
            }),
        ),
        ("calls", format!("{{\"event_id\": \"{prefix}-sur\", \"call_id\": \"\\ud800\", \"kind\": \"offered\"}}").into_bytes()),
        ("calls", shaped(prefix, 20, |v| v["notes"] = json!("\u{feff}\u{200b}\u{2028}\u{2029}tablets"))),
        ("calls", vec![0u8; 1000]),
        ("calls", b"null".to_vec()),
        // Flag messages from a peer: not objects, empty reasons, wrong types, a reused flag id.
        ("flags", b"[1, 2, 3]".to_vec()),
        ("flags", b"\"a flag\"".to_vec()),
        ("flags", flag_message(prefix, 0, |v| v["reasons"] = json!([]))),
        ("flags", flag_message(prefix, 1, |v| v["reasons"] = json!([{"category": 7}]))),
        ("flags", flag_message(prefix, 2, |v| v["severity"] = json!(["high"]))),
        ("flags", flag_message(prefix, 3, |v| v["call_id"] = json!("x".repeat(5000)))),
        ("flags", flag_message(prefix, 4, |v| v["division"] = json!("\u{1b}[2J"))),
    ];
    // The same flag id twice, for two different calls: the second would overwrite the first.
    let reused = uuid::Uuid::now_v7().to_string();
    cases.push(("flags", flag_message(prefix, 5, |v| v["flag_id"] = json!(reused))));
    cases.push(("flags", flag_message(prefix, 6, |v| v["flag_id"] = json!(reused))));
    cases
}

async fn hostile_messages_never_stop_the_flags_on(backend: &str) {
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new(backend, tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    world.config.desk.users = desk_users();
    let flagger = Running::flagger(&world.config).await;
    let demand = Running::demand(&world.config).await;
    let desk = Running::desk(&world.config).await;
    let probe = Probe::connect(&url, &[]).await;
    let cases = hostile(&world.prefix);
    assert!(cases.len() >= 25, "at least 25 hostile messages");
    for (i, (topic, payload)) in cases.iter().enumerate() {
        let t = if *topic == "calls" { world.topic() } else { world.out("flags/mental-health") };
        probe.publish(&t, payload.clone()).await;
        let (call, ev) = good(&world.prefix, i);
        probe.publish(&world.topic(), ev).await;
        let flag = desk_flag(desk.addr, &call, Duration::from_secs(15)).await;
        assert!(flag.is_some(), "case {i} ({topic}): the good event after it never reached the desk");
    }
    // Every service is still up, and what was refused was counted.
    for s in [&flagger, &demand, &desk] {
        s.wait_ready().await;
    }
    let refused = ["not_object", "empty_reasons", "invalid_field", "control_characters", "flag_id_conflict"];
    let mut desk_refused = 0.0;
    for r in refused {
        desk_refused += desk.metric(&format!("lantern_flag_messages_rejected_total{{reason=\"{r}\"}}")).await;
    }
    assert_eq!(desk_refused, 8.0, "the desk refused each bad flag message and the reused flag id");
    assert_eq!(demand.metric("lantern_flag_messages_rejected_total{reason=\"not_object\"}").await, 2.0);
    assert_eq!(flagger.metric("lantern_events_rejected_total{reason=\"internal_error\"}").await, 0.0, "no detection failure");
    let received = demand.metric("lantern_events_received_total{kind=\"offered\"}").await;
    assert!(received >= cases.len() as f64, "demand kept counting ({received})");
    desk.stop().await;
    demand.stop().await;
    flagger.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_never_stop_the_flags_reaching_the_desk() {
    for backend in backends() {
        hostile_messages_never_stop_the_flags_on(backend).await;
    }
}

/// Makes the database refuse any call whose id holds `poison`, as a constraint would.
async fn install_refusal(backend: &str, db_url: &str) {
    let sql = if backend == "postgres" {
        "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
           IF NEW.call_id LIKE '%poison%' THEN RAISE EXCEPTION 'refused' USING ERRCODE = '23514'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER refuse_poison BEFORE INSERT ON flagger_calls FOR EACH ROW EXECUTE FUNCTION refuse_poison();"
    } else {
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON flagger_calls WHEN NEW.call_id LIKE '%poison%' \
         BEGIN SELECT RAISE(ABORT, 'refused'); END;"
    };
    execute(db_url, sql).await;
}

async fn a_refused_event_is_rejected_and_its_batch_committed_on(backend: &str) {
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new(backend, tmp.path()).await;
    let world = World::new(&url, &db.url).await;
    // Build once so the schema exists, then add the refusal, then run.
    lantern_shared::store::Db::connect(&db.url).await.expect("migrate").close().await;
    install_refusal(backend, &db.url).await;
    let flagger = Running::flagger(&world.config).await;
    let mut probe = Probe::connect(&url, &[&world.out("rejected")]).await;
    let p = &world.prefix;
    let now = chrono::Utc::now().to_rfc3339();
    // Published together, so they arrive as one batch or a few.
    for i in 0..60 {
        let call = if i == 37 { format!("{p}-poison") } else { format!("{p}-c{i}") };
        probe.publish(&world.topic(), event(&format!("{p}-e{i}"), &call, "offered", &now, Some("07700 900777"), None)).await;
    }
    let msg = probe
        .next_json(Duration::from_secs(30), |v| v["payload"].as_str().is_some_and(|s| s.contains("poison")))
        .await
        .expect("the refused event is published on lantern/rejected");
    assert_eq!(msg["reason"], "storage_error", "{}", msg["error"]);
    let stored = format!("SELECT COUNT(*) FROM flagger_calls WHERE call_id LIKE '{p}-c%'");
    assert!(eventually(Duration::from_secs(20), || async { query_i64(&db.url, &stored).await == 59 }).await, "the other 59 were committed");
    assert_eq!(flagger.metric("lantern_events_rejected_total{reason=\"storage_error\"}").await, 1.0);
    // And the stream goes on.
    probe.publish(&world.topic(), event(&format!("{p}-after"), &format!("{p}-c-after"), "offered", &now, None, None)).await;
    let after = format!("SELECT COUNT(*) FROM flagger_calls WHERE call_id = '{p}-c-after'");
    assert!(eventually(Duration::from_secs(10), || async { query_i64(&db.url, &after).await == 1 }).await);
    flagger.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_database_refuses_is_rejected_and_the_rest_of_its_batch_committed() {
    for backend in backends() {
        a_refused_event_is_rejected_and_its_batch_committed_on(backend).await;
    }
}

async fn nul_bytes_are_refused_on(backend: &str) {
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new(backend, tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    world.config.desk.users = desk_users();
    let flagger = Running::flagger(&world.config).await;
    let demand = Running::demand(&world.config).await;
    let desk = Running::desk(&world.config).await;
    let probe = Probe::connect(&url, &[]).await;
    let p = world.prefix.clone();
    let nul = |s: &str| json!(format!("{s}\u{0}x"));
    let event_fields: Vec<Patch<'_>> = vec![
        ("event_id", Box::new(|v| v["event_id"] = nul("e"))),
        ("call_id", Box::new(|v| v["call_id"] = nul("c"))),
        ("kind", Box::new(|v| v["kind"] = nul("offered"))),
        ("occurred_at", Box::new(|v| v["occurred_at"] = nul("2026-11-20T10:00:00+00:00"))),
        ("channel", Box::new(|v| v["channel"] = nul("999"))),
        ("division", Box::new(|v| v["division"] = nul("West"))),
        ("caller.number", Box::new(|v| v["caller"]["number"] = nul("0113 496 0123"))),
        ("caller.presentation", Box::new(|v| v["caller"]["presentation"] = nul("allowed"))),
        ("caller.address_id", Box::new(|v| v["caller"]["address_id"] = nul("1000"))),
        ("caller.age_band", Box::new(|v| v["caller"]["age_band"] = nul("adult"))),
        ("incident.type", Box::new(|v| v["incident"] = json!({"type": "CONCERN\u{0}"}))),
        ("incident.qualifiers", Box::new(|v| v["incident"] = json!({"qualifiers": ["MH\u{0}"]}))),
        ("incident.grade", Box::new(|v| v["incident"] = json!({"grade": "p\u{0}"}))),
        ("notes", Box::new(|v| v["notes"] = nul("jump off the bridge"))),
    ];
    for (i, (field, patch)) in event_fields.iter().enumerate() {
        probe.publish(&world.topic(), shaped(&p, 100 + i, patch)).await;
        let (call, ev) = good(&p, 100 + i);
        probe.publish(&world.topic(), ev).await;
        assert!(desk_flag(desk.addr, &call, Duration::from_secs(15)).await.is_some(), "after a NUL in {field}");
    }
    let mut rejected = 0.0;
    for r in lantern_shared::domain::event::REJECT_REASONS {
        rejected += flagger.metric(&format!("lantern_events_rejected_total{{reason=\"{r}\"}}")).await;
    }
    assert_eq!(rejected, event_fields.len() as f64, "each refused before anything was stored");
    assert!(flagger.metric("lantern_events_rejected_total{reason=\"control_characters\"}").await >= 10.0);
    let flag_fields: Vec<Patch<'_>> = vec![
        ("flag_id", Box::new(|v| v["flag_id"] = nul("0193f3c2-8a1e-7b4c-9d2e-5f6a7b8c9d0e"))),
        ("status", Box::new(|v| v["status"] = nul("raised"))),
        ("kind", Box::new(|v| v["kind"] = nul("mental_health"))),
        ("severity", Box::new(|v| v["severity"] = nul("high"))),
        ("call_id", Box::new(|v| v["call_id"] = nul("c"))),
        ("event_id", Box::new(|v| v["event_id"] = nul("e"))),
        ("occurred_at", Box::new(|v| v["occurred_at"] = nul("2026-11-20T10:00:00+00:00"))),
        ("raised_at", Box::new(|v| v["raised_at"] = nul("2026-11-20T10:00:00+00:00"))),
        ("channel", Box::new(|v| v["channel"] = nul("999"))),
        ("division", Box::new(|v| v["division"] = nul("West"))),
        ("caller_ref", Box::new(|v| v["caller_ref"] = nul("k7q2m4x5r3t6w2z"))),
        ("reasons.category", Box::new(|v| v["reasons"][0]["category"] = nul("suicide"))),
        ("reasons.cue", Box::new(|v| v["reasons"][0]["cue"] = nul("jump"))),
        ("reasons.snippet", Box::new(|v| v["reasons"][0]["snippet"] = nul("jump"))),
        ("reasons.source", Box::new(|v| v["reasons"][0]["source"] = nul("lexicon"))),
    ];
    for (i, (field, patch)) in flag_fields.iter().enumerate() {
        probe.publish(&world.out("flags/mental-health"), flag_message(&p, 100 + i, patch)).await;
        let (call, ev) = good(&p, 200 + i);
        probe.publish(&world.topic(), ev).await;
        assert!(desk_flag(desk.addr, &call, Duration::from_secs(15)).await.is_some(), "after a NUL in the flag's {field}");
    }
    let stored = desk_flags(desk.addr).await;
    assert!(stored.iter().all(|f| !f["call_id"].as_str().unwrap_or("").contains(&format!("{p}-fc"))), "no refused flag was stored");
    let mut desk_refused = 0.0;
    for r in ["invalid_field", "control_characters"] {
        desk_refused += desk.metric(&format!("lantern_flag_messages_rejected_total{{reason=\"{r}\"}}")).await;
    }
    assert_eq!(desk_refused, flag_fields.len() as f64);
    assert!(demand.metric("lantern_flag_messages_rejected_total{reason=\"control_characters\"}").await >= 1.0);
    desk.stop().await;
    demand.stop().await;
    flagger.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_bytes_in_every_string_field_of_events_and_flag_messages_are_refused() {
    for backend in backends() {
        nul_bytes_are_refused_on(backend).await;
    }
}

async fn mental_health_state_across_prune_and_restart_on(backend: &str) {
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new(backend, tmp.path()).await;
    let world = World::new(&url, &db.url).await;
    let start = chrono::Utc::now() - chrono::Duration::days(8);
    let clock = Clock::manual(start);
    let build = |clock: Clock| {
        let config = world.config.clone();
        async move {
            let f = lantern_flagger::Flagger::build_with_clock(config, clock).await.expect("flagger builds");
            let addr = f.local_addr();
            let stop = tokio_util::sync::CancellationToken::new();
            let task = tokio::spawn(f.run(stop.clone()));
            let r = Running { name: "flagger", addr, stop, task };
            r.wait_ready().await;
            r
        }
    };
    let mut probe = Probe::connect(&url, &[&world.out("flags/mental-health")]).await;
    let p = world.prefix.clone();
    let at = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339();
    let call = format!("{p}-old");
    let is_call = |c: &str| {
        let c = c.to_string();
        move |v: &Value| v["call_id"] == c.as_str()
    };

    // A medium flag on day 0.
    let flagger = build(clock.clone()).await;
    probe.publish(&world.topic(), event(&format!("{p}-1"), &call, "offered", &at(start), None, Some("says she feels hopeless"))).await;
    let raised = probe.next_json(Duration::from_secs(10), is_call(&call)).await.expect("raised");
    assert_eq!(raised["status"], "raised");
    // Four days on, memory lets the call go at the next prune.
    clock.advance(chrono::Duration::days(4));
    let later = start + chrono::Duration::days(4);
    probe.publish(&world.topic(), event(&format!("{p}-2"), &format!("{p}-other"), "offered", &at(later), None, None)).await;
    tokio::time::sleep(Duration::from_secs(7)).await; // one tick: the prune runs
                                                      // An update with a higher-severity cue updates the same flag; nothing fails on the key.
    probe
        .publish(
            &world.topic(),
            event(&format!("{p}-3"), &call, "updated", &at(start), None, Some("now on the bridge railings saying he will jump")),
        )
        .await;
    let updated = probe.next_json(Duration::from_secs(10), is_call(&call)).await.expect("updated after the prune");
    assert_eq!(updated["status"], "updated");
    assert_eq!(updated["flag_id"], raised["flag_id"]);
    assert_eq!(updated["severity"], "high");
    flagger.stop().await;

    // After a restart with newer history, the call is not in memory either.
    let flagger = build(clock.clone()).await;
    probe
        .publish(&world.topic(), event(&format!("{p}-4"), &call, "updated", &at(start), None, Some("has taken an overdose on the bridge")))
        .await;
    let none = probe.next_json(Duration::from_secs(2), is_call(&call)).await;
    assert!(none.is_none(), "no higher severity: nothing new to publish ({none:?})");
    assert_eq!(flagger.metric("lantern_events_rejected_total{reason=\"storage_error\"}").await, 0.0);
    let processed = format!("SELECT COUNT(*) FROM shared_processed_events WHERE service = 'flagger' AND event_id LIKE '{p}-%'");
    assert_eq!(query_i64(&db.url, &processed).await, 4, "every event processed once");
    assert_eq!(query_i64(&db.url, &format!("SELECT COUNT(*) FROM flagger_mh_flags WHERE call_id = '{call}'")).await, 1);
    flagger.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_for_a_call_whose_flag_left_memory_updates_that_flag() {
    for backend in backends() {
        mental_health_state_across_prune_and_restart_on(backend).await;
    }
}
