use super::*;
use crate::domain::pseudonym::Pseudonymizer;
use chrono::TimeZone;

fn ctx() -> IngestContext {
    IngestContext::new(Pseudonymizer::new(b"test-key"), "GB", 300_000)
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 22, 0, 0).unwrap()
}

const GOOD: &str = r#"{
  "event_id": "01JD7Z8Q6Y2M3N4P5Q6R7S8T9V", "call_id": "LC-20261123-004211", "kind": "offered",
  "occurred_at": "2026-11-23T21:14:03+00:00", "channel": "999", "division": "West",
  "caller": {"number": "0113 496 0123", "presentation": "allowed", "address_id": "100010012345",
             "communal_address": false, "age_band": "adult"},
  "incident": {"type": "CONCERN_FOR_SAFETY", "qualifiers": ["MENTAL_HEALTH"], "grade": "priority"},
  "notes": "caller says her son is talking about ending his life, has taken tablets",
  "some_future_field": {"ignored": true}
}"#;

#[test]
fn the_spec_example_parses_and_the_number_becomes_a_pseudonym() {
    let ev = CallEvent::parse(GOOD.as_bytes(), &ctx(), now()).unwrap();
    assert_eq!(ev.kind, EventKind::Offered);
    assert_eq!(ev.channel, Channel::Emergency);
    assert_eq!(ev.division.as_deref(), Some("West"));
    assert_eq!(ev.caller.phone, Some(ctx().pseudonymizer.phone("+441134960123")));
    assert_eq!(ev.caller.address, Some(ctx().pseudonymizer.address("100010012345")));
    assert_eq!(ev.caller.age_band, Some(AgeBand::Adult));
    assert_eq!(ev.incident.qualifiers, vec!["MENTAL_HEALTH".to_string()]);
    assert_eq!(ev.occurred_ms(), Utc.with_ymd_and_hms(2026, 11, 23, 21, 14, 3).unwrap().timestamp_millis());
}

#[test]
fn every_common_format_of_one_number_gets_one_pseudonym() {
    let c = ctx();
    let want = c.phone_ref("+441134960123");
    for n in
        ["0113 496 0123", "01134960123", "(0113) 496 0123", "+44 113 496 0123", "+44 (0)113 496 0123", "0044 113 496 0123", "0113-496-0123"]
    {
        assert_eq!(c.phone_ref(n), want, "{n}");
    }
    assert_eq!(c.normalise_number("07700 900123").as_deref(), Some("+447700900123"));
}

#[test]
fn an_unusual_number_is_kept_as_its_digits_not_rejected() {
    let c = ctx();
    assert!(c.normalise_number("x").is_none());
    let weird = c.normalise_number("ext. 12").unwrap();
    assert!(weird.chars().all(|ch| ch.is_ascii_digit() || ch == '+'), "{weird}");
    let payload = GOOD.replace("0113 496 0123", "**12**");
    assert!(CallEvent::parse(payload.as_bytes(), &c, now()).is_ok());
}

fn reason(payload: &[u8]) -> Rejection {
    CallEvent::parse(payload, &ctx(), now()).expect_err("should be rejected")
}

#[test]
fn each_bad_input_is_rejected_with_its_reason_and_the_field_named() {
    let base: Value = serde_json::from_str(GOOD).unwrap();
    let with = |path: &[&str], v: Value| {
        let mut b = base.clone();
        let mut cur = &mut b;
        for p in &path[..path.len() - 1] {
            cur = cur.get_mut(*p).unwrap();
        }
        cur.as_object_mut().unwrap().insert(path[path.len() - 1].to_string(), v);
        serde_json::to_vec(&b).unwrap()
    };
    let without = |name: &str| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().remove(name);
        serde_json::to_vec(&b).unwrap()
    };
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (b"not json".to_vec(), "invalid_json", "JSON"),
        (GOOD.as_bytes()[..40].to_vec(), "invalid_json", "JSON"),
        (b"[1,2,3]".to_vec(), "not_object", "object"),
        (b"\"text\"".to_vec(), "not_object", "object"),
        (vec![0xff, 0xfe, b'{'], "invalid_utf8", "UTF-8"),
        (vec![b' '; MAX_PAYLOAD_BYTES + 1], "too_large", "64 KiB"),
        (without("event_id"), "missing_field", "event_id"),
        (without("kind"), "missing_field", "kind"),
        (without("occurred_at"), "missing_field", "occurred_at"),
        (without("channel"), "missing_field", "channel"),
        (without("call_id"), "missing_field", "call_id"),
        (with(&["event_id"], Value::from(5)), "wrong_type", "event_id"),
        (with(&["event_id"], Value::from("")), "empty_field", "event_id"),
        (with(&["event_id"], Value::from("x".repeat(129))), "too_long", "event_id"),
        (with(&["call_id"], Value::from("a\u{0}b")), "control_characters", "call_id"),
        (with(&["kind"], Value::from("teleported")), "unknown_kind", "kind"),
        (with(&["channel"], Value::from("112")), "unknown_channel", "channel"),
        (with(&["channel"], Value::from(999)), "wrong_type", "channel"),
        (with(&["occurred_at"], Value::from("yesterday")), "bad_timestamp", "occurred_at"),
        (with(&["occurred_at"], Value::from("2026-11-20T10:00:00")), "bad_timestamp", "occurred_at"),
        (with(&["occurred_at"], Value::from("2027-01-01T00:00:00+00:00")), "future_timestamp", "occurred_at"),
        (with(&["division"], Value::from("d".repeat(65))), "too_long", "division"),
        (with(&["caller"], Value::from("0113")), "wrong_type", "caller"),
        (with(&["caller", "number"], Value::from(1134960123)), "wrong_type", "caller.number"),
        (with(&["caller", "presentation"], Value::from("hidden")), "invalid_value", "caller.presentation"),
        (with(&["caller", "communal_address"], Value::from("yes")), "wrong_type", "caller.communal_address"),
        (with(&["caller", "age_band"], Value::from("teen")), "invalid_value", "caller.age_band"),
        (with(&["incident", "qualifiers"], Value::from("MENTAL_HEALTH")), "wrong_type", "incident.qualifiers"),
        (with(&["notes"], Value::from("n".repeat(MAX_NOTES_BYTES + 1))), "too_long", "notes"),
        (with(&["notes"], Value::from("bell \u{7} here")), "control_characters", "notes"),
        (with(&["notes"], Value::from(42)), "wrong_type", "notes"),
    ];
    assert!(cases.len() >= 30);
    for (payload, want_reason, want_field) in cases {
        let r = reason(&payload);
        assert_eq!(r.reason, want_reason, "{}", r.error);
        assert!(REJECT_REASONS.contains(&r.reason));
        assert!(r.error.contains(want_field), "error `{}` should name `{want_field}`", r.error);
    }
}

#[test]
fn nulls_and_empty_optional_strings_count_as_absent() {
    let p = r#"{"event_id":"e","call_id":"c","kind":"closed","occurred_at":"2026-11-23T21:00:00Z","channel":"101","division":null,"caller":{"address_id":""},"notes":null}"#;
    let ev = CallEvent::parse(p.as_bytes(), &ctx(), now()).unwrap();
    assert!(ev.division.is_none() && ev.caller.address.is_none() && ev.notes.is_none());
}

#[test]
fn the_rejected_message_never_carries_the_caller_number() {
    let payload = GOOD.replace("\"999\"", "\"112\"");
    let r = reason(payload.as_bytes());
    let msg: Value = serde_json::from_slice(&r.to_message(payload.as_bytes())).unwrap();
    assert_eq!(msg["reason"], "unknown_channel");
    let echoed = msg["payload"].as_str().unwrap();
    assert!(!echoed.contains("496 0123") && echoed.contains("LC-20261123-004211"), "{echoed}");

    let garbled = b"{\"caller\": {\"number\": \"0113 496 0123\"";
    let msg: Value = serde_json::from_slice(&reason(garbled).to_message(garbled)).unwrap();
    assert!(!msg["payload"].as_str().unwrap().contains("496 0123"));
}

#[test]
fn the_rejected_echo_is_at_most_four_kibibytes() {
    let payload = format!("{{\"notes\": \"{}\"", "é".repeat(5000));
    let r = reason(payload.as_bytes());
    let msg: Value = serde_json::from_slice(&r.to_message(payload.as_bytes())).unwrap();
    assert!(msg["payload"].as_str().unwrap().len() <= REJECTED_PAYLOAD_BYTES);
}

#[test]
fn a_number_sent_in_the_wrong_field_is_not_echoed_in_the_error() {
    let payload = GOOD.replace("\"offered\"", "\"07700 900123\"");
    let r = reason(payload.as_bytes());
    assert_eq!(r.reason, "unknown_kind");
    assert!(!r.error.contains("900123"), "{}", r.error);
}

#[test]
fn numbers_in_ids_labels_and_incident_codes_are_masked_before_anything_keeps_them() {
    let c = ctx();
    let with = |event_id: &str, call_id: &str| {
        let v: Value = serde_json::from_str(GOOD).unwrap();
        let mut v = v.as_object().unwrap().clone();
        v.insert("event_id".into(), event_id.into());
        v.insert("call_id".into(), call_id.into());
        v.insert("division".into(), "West 07700 900123".into());
        v.insert(
            "incident".into(),
            serde_json::json!({"type": "CB 0113 496 0123", "grade": "07700900123", "qualifiers": ["ring +44 7700 900123"]}),
        );
        CallEvent::parse(Value::Object(v).to_string().as_bytes(), &c, now()).unwrap()
    };
    let a = with("evt-07700900123-1", "call-07700 900123");
    let b = with("evt-07700900124-1", "call-07700 900124");
    let kept = [
        &a.event_id,
        &a.call_id,
        a.division.as_ref().unwrap(),
        a.incident.kind.as_ref().unwrap(),
        a.incident.grade.as_ref().unwrap(),
        &a.incident.qualifiers[0],
    ];
    for text in kept {
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        assert!(!digits.contains("900123") && !digits.contains("4960123"), "{text}");
    }
    assert_eq!(a.division.as_deref(), Some("West ##### ######"));
    assert!(a.event_id.starts_with("evt-~") && a.event_id.ends_with("-1"), "{}", a.event_id);
    assert_ne!(a.event_id, b.event_id, "ids that differ only in a number stay distinct");
    assert_ne!(a.call_id, b.call_id);
    assert_eq!(with("LC-20261123-004211", "LC-20261123-004211").call_id, "LC-20261123-004211", "ordinary ids stay");
}
