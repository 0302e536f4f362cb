use super::*;
use lantern_shared::domain::ingest::IngestContext;
use lantern_shared::domain::pseudonym::Pseudonymizer;

const T0: i64 = 1_795_000_000_000;

fn ev(id: &str, call: &str, kind: &str, at_ms: i64, channel: &str, division: Option<&str>) -> CallEvent {
    let at = chrono::DateTime::from_timestamp_millis(at_ms).unwrap().to_rfc3339();
    let mut v = serde_json::json!({"event_id": id, "call_id": call, "kind": kind, "occurred_at": at, "channel": channel});
    if let Some(d) = division {
        v["division"] = d.into();
    }
    let ctx = IngestContext::new(Pseudonymizer::new(b"k"), "GB", 300_000);
    CallEvent::parse(v.to_string().as_bytes(), &ctx, chrono::DateTime::from_timestamp_millis(at_ms + 1000).unwrap()).unwrap()
}

fn run(state: &mut DemandState, events: &[CallEvent]) -> Vec<Effect> {
    let mut scratch = state.begin();
    let mut effects = Vec::new();
    for e in events {
        state.stage(&mut scratch, e, &mut effects);
    }
    state.apply(scratch);
    effects
}

fn windows() -> Vec<Span> {
    vec![Span::from_secs(900), Span::from_secs(3600), Span::from_secs(86_400)]
}

#[test]
fn late_and_out_of_order_events_land_in_their_window_by_event_time() {
    let mut s = DemandState::new(windows(), 32);
    let now = T0;
    run(
        &mut s,
        &[
            ev("a", "c1", "offered", now - 60_000, "999", Some("West")),
            // Arrives later, happened earlier: two hours ago.
            ev("b", "c2", "offered", now - 7_200_000, "999", Some("West")),
            ev("c", "c3", "answered", now - 20 * 60_000, "101", Some("East")),
        ],
    );
    let counts = s.window_counts(now);
    let get = |w: &str, ch: Channel, d: &str| counts.iter().find(|c| c.0 == w && c.1 == ch && c.2 == d).map(|c| c.3).unwrap_or(0);
    assert_eq!(get("15m", Channel::Emergency, "West"), 1);
    assert_eq!(get("1h", Channel::Emergency, "West"), 1);
    assert_eq!(get("24h", Channel::Emergency, "West"), 2);
    assert_eq!(get("15m", Channel::NonEmergency, "East"), 0);
    assert_eq!(get("1h", Channel::NonEmergency, "East"), 1);
    // Time moves on: the same calls drop out of the short windows.
    let later = s.window_counts(now + 3_600_000);
    assert_eq!(later.iter().filter(|c| c.0 == "1h").map(|c| c.3).sum::<usize>(), 0);
    assert_eq!(later.iter().filter(|c| c.0 == "24h").map(|c| c.3).sum::<usize>(), 3);
}

#[test]
fn each_call_counts_once_and_answer_time_needs_both_ends_in_any_order() {
    let mut s = DemandState::new(windows(), 32);
    let e = run(
        &mut s,
        &[
            ev("1", "c1", "answered", T0 + 8_000, "999", Some("West")),
            ev("2", "c1", "offered", T0, "999", Some("West")),
            ev("3", "c1", "closed", T0 + 60_000, "999", Some("West")),
            ev("4", "c2", "offered", T0, "101", None),
            ev("5", "c2", "abandoned", T0 + 30_000, "101", None),
            ev("6", "c2", "abandoned", T0 + 31_000, "101", None),
        ],
    );
    let new_calls = e.iter().filter(|x| matches!(x, Effect::NewCall { .. })).count();
    assert_eq!(new_calls, 2);
    assert!(e.contains(&Effect::Answered { channel: Channel::Emergency, seconds: 8.0 }));
    assert_eq!(e.iter().filter(|x| matches!(x, Effect::Abandoned { .. })).count(), 1);
    assert!(e.contains(&Effect::NewCall { channel: Channel::NonEmergency, division: "unknown".into() }));
}

#[test]
fn divisions_beyond_the_limit_count_as_other() {
    let mut s = DemandState::new(windows(), 2);
    let e = run(
        &mut s,
        &[
            ev("1", "a", "offered", T0, "999", Some("North")),
            ev("2", "b", "offered", T0, "999", Some("South")),
            ev("3", "c", "offered", T0, "999", Some("East")),
        ],
    );
    let divisions: Vec<String> =
        e.iter().filter_map(|x| if let Effect::NewCall { division, .. } = x { Some(division.clone()) } else { None }).collect();
    assert_eq!(divisions, ["North", "South", "other"]);
}

#[test]
fn nothing_changes_until_the_batch_is_applied() {
    let s = DemandState::new(windows(), 32);
    let mut scratch = s.begin();
    let mut effects = Vec::new();
    s.stage(&mut scratch, &ev("1", "a", "offered", T0, "999", Some("West")), &mut effects);
    assert!(s.window_counts(T0).iter().all(|c| c.3 == 0), "a failed commit must leave no trace");
    assert!(!s.known("a"));
}
