use super::*;

fn repeat() -> Value {
    serde_json::json!({
        "flag_id": "0193f3c2-8a1e-7b4c-9d2e-5f6a7b8c9d0e", "status": "raised", "kind": "repeat_caller", "severity": "medium",
        "call_id": "LC-1", "event_id": "e1", "occurred_at": "2026-11-23T21:14:03+00:00", "raised_at": "2026-11-23T21:14:03.012+00:00",
        "channel": "999", "division": "West", "caller_ref": "k7q2m4x5r3t6w2zd",
        "reasons": [{"rule": "frecann-month", "identity": "phone", "window": "30d", "calls": 5, "min_calls": 5}],
        "new_field": {"ignored": true}
    })
}

fn mental_health() -> Value {
    serde_json::json!({
        "flag_id": "0193f3c2-8a1e-7b4c-9d2e-5f6a7b8c9d0f", "status": "updated", "kind": "mental_health", "severity": "high",
        "call_id": "LC-2", "event_id": "e2", "occurred_at": "2026-11-23T21:14:03+00:00", "raised_at": "2026-11-23T21:14:03.012+00:00",
        "updated_at": "2026-11-23T21:15:03.012+00:00", "channel": "101", "division": null, "caller_ref": null, "score": 0.93,
        "reasons": [
            {"category": "suicide", "cue": "end my life", "severity": "high", "negated": false, "snippet": "wants to end my life", "source": "lexicon"},
            {"category": "suicide", "cue": "model", "severity": "high", "negated": false, "snippet": "", "source": "model", "score": 0.93, "terms": ["goodbye"]}
        ]
    })
}

fn parse(v: &Value) -> Result<FlagMessage, FlagRejection> {
    FlagMessage::parse(&serde_json::to_vec(v).expect("json"))
}

#[test]
fn valid_messages_parse_and_round_trip() {
    for v in [repeat(), mental_health()] {
        let m = parse(&v).expect("valid");
        let again = FlagMessage::parse(m.to_json().as_bytes()).expect("round trip");
        assert_eq!(m, again);
    }
}

#[test]
fn each_kind_of_bad_message_is_refused_with_its_reason() {
    type Patch = (&'static str, Box<dyn Fn(&mut Value)>);
    let cases: Vec<Patch> = vec![
        ("invalid_field", Box::new(|v| v["flag_id"] = serde_json::json!(12))),
        ("invalid_field", Box::new(|v| v["flag_id"] = serde_json::json!("not-a-uuid"))),
        ("invalid_field", Box::new(|v| v["kind"] = serde_json::json!("other"))),
        ("invalid_field", Box::new(|v| v["severity"] = serde_json::json!("info"))),
        ("invalid_field", Box::new(|v| v["status"] = serde_json::json!(null))),
        ("invalid_field", Box::new(|v| v["occurred_at"] = serde_json::json!("yesterday"))),
        ("invalid_field", Box::new(|v| v["caller_ref"] = serde_json::json!("0113 496 0123"))),
        ("invalid_field", Box::new(|v| v["reasons"] = serde_json::json!([1, 2]))),
        ("invalid_field", Box::new(|v| v["reasons"] = serde_json::json!("x"))),
        ("invalid_field", Box::new(|v| drop(v.as_object_mut().map(|o| o.remove("call_id"))))),
        ("empty_reasons", Box::new(|v| v["reasons"] = serde_json::json!([]))),
        ("control_characters", Box::new(|v| v["call_id"] = serde_json::json!("a\u{0}b"))),
        ("control_characters", Box::new(|v| v["division"] = serde_json::json!("We\u{0}st"))),
        ("control_characters", Box::new(|v| v["reasons"][0]["rule"] = serde_json::json!("r\u{1b}[31m"))),
    ];
    for (i, (reason, patch)) in cases.iter().enumerate() {
        let mut v = repeat();
        patch(&mut v);
        let e = parse(&v).expect_err(&format!("case {i} accepted"));
        assert_eq!(e.reason, *reason, "case {i}: {}", e.error);
        assert!(e.error.contains('`'), "case {i}: the error names the field: {}", e.error);
    }
    assert_eq!(FlagMessage::parse(b"[1,2]").expect_err("array").reason, "not_object");
    assert_eq!(FlagMessage::parse(b"{").expect_err("truncated").reason, "invalid_json");
    let mut v = mental_health();
    v["reasons"][0]["snippet"] = serde_json::json!("bad\u{0}snippet");
    assert_eq!(parse(&v).expect_err("nul in snippet").reason, "control_characters");
}
