//! Named examples of SPEC section 3, beside the property test in `tests.rs`: each one a rule a
//! reader can check by hand.

use super::{CallAttrs, CallFacts, FlagStatus, Observed, RepeatEngine, Rules};
use lantern_shared::config::{Config, RuleConfig};
use lantern_shared::domain::ingest::IngestContext;
use lantern_shared::domain::pseudonym::Pseudonymizer;
use lantern_shared::domain::{Channel, Identity, Severity};
use lantern_shared::Span;

const DAY: i64 = 86_400_000;
const MINUTE: i64 = 60_000;
const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// One rule, three calls in seven days, on the phone identity; cooldown 30 days.
fn setup(edit: impl FnOnce(&mut Config)) -> (RepeatEngine, IngestContext) {
    let mut config = Config::default();
    config.repeat_callers.rules = vec![RuleConfig {
        name: "three-in-a-week".into(),
        identity: Identity::Phone,
        window: Span::from_days(7),
        min_calls: 3,
        severity: Severity::Medium,
        channels: None,
        communal_address: None,
        age_band: None,
    }];
    config.repeat_callers.cooldown = Span::from_days(30);
    edit(&mut config);
    let ingest = IngestContext::new(Pseudonymizer::new(b"examples"), "GB", 300_000);
    (RepeatEngine::new(Rules::from_config(&config, &ingest)), ingest)
}

struct Caller<'a> {
    engine: &'a mut RepeatEngine,
    ingest: &'a IngestContext,
    next_id: u128,
}

impl Caller<'_> {
    fn call(&mut self, number: &str, at_ms: i64) -> Observed {
        self.call_from(Some(number), None, at_ms)
    }

    fn call_from(&mut self, number: Option<&str>, address: Option<&str>, at_ms: i64) -> Observed {
        let facts = CallFacts {
            occurred_ms: at_ms,
            attrs: CallAttrs::new(Channel::NonEmergency, None, None),
            phone: number.and_then(|n| self.ingest.phone_ref(n)),
            address: address.map(|a| self.ingest.pseudonymizer.address(a)),
        };
        let next = &mut self.next_id;
        self.engine.observe(&facts, at_ms, &mut || {
            *next += 1;
            *next
        })
    }
}

fn statuses(o: &Observed) -> Vec<(FlagStatus, u128)> {
    o.hits.iter().map(|h| (h.status, h.flag_id)).collect()
}

#[test]
fn the_third_call_in_a_week_raises_a_flag_and_the_next_updates_it() {
    let (mut engine, ingest) = setup(|_| {});
    let mut c = Caller { engine: &mut engine, ingest: &ingest, next_id: 0 };
    assert!(c.call("0113 496 0001", T0).hits.is_empty());
    assert!(c.call("0113 496 0001", T0 + DAY).hits.is_empty());
    let third = c.call("0113 496 0001", T0 + 2 * DAY);
    assert_eq!(statuses(&third), [(FlagStatus::Raised, 1)]);
    assert_eq!((third.hits[0].reasons[0].calls, third.hits[0].severity), (3, Severity::Medium));
    let fourth = c.call("0113 496 0001", T0 + 3 * DAY);
    assert_eq!(statuses(&fourth), [(FlagStatus::Updated, 1)], "same flag, with this call");
    assert_eq!(fourth.hits[0].reasons[0].calls, 4);
}

#[test]
fn cooldown_keeps_one_flag_until_it_ends_then_a_new_flag_is_raised() {
    let (mut engine, ingest) = setup(|_| {});
    let mut c = Caller { engine: &mut engine, ingest: &ingest, next_id: 0 };
    let n = "07700 900002";
    for d in 0..3 {
        c.call(n, T0 + d * DAY);
    }
    let t0 = T0 + 2 * DAY; // raised here
                           // Weeks later the rule is met again, just inside the 30-day cooldown: the same flag.
    assert!(c.call(n, t0 + 29 * DAY).hits.is_empty());
    assert!(c.call(n, t0 + 29 * DAY + MINUTE).hits.is_empty());
    let inside = c.call(n, t0 + 30 * DAY - 1);
    assert_eq!(statuses(&inside), [(FlagStatus::Updated, 1)], "t < t0 + cooldown: still the first flag");
    let after = c.call(n, t0 + 30 * DAY);
    assert_eq!(statuses(&after), [(FlagStatus::Raised, 2)], "t = t0 + cooldown: a new flag");
    assert_eq!(after.hits[0].reasons[0].calls, 4);
}

#[test]
fn calls_within_merge_within_of_the_previous_counted_call_count_once() {
    let (mut engine, ingest) = setup(|c| c.repeat_callers.merge_within = Span::from_secs(600));
    let mut c = Caller { engine: &mut engine, ingest: &ingest, next_id: 0 };
    let n = "0161 496 0003";
    assert!(c.call(n, T0).counted_phone.is_some());
    assert!(c.call(n, T0 + 5 * MINUTE).counted_phone.is_none(), "5 minutes after: the same episode");
    assert!(c.call(n, T0 + 10 * MINUTE).counted_phone.is_none(), "10 minutes after: still within");
    let later = c.call(n, T0 + 10 * MINUTE + 1);
    assert!(later.counted_phone.is_some(), "just over 10 minutes after the last counted call");
    assert!(later.hits.is_empty(), "two counted calls, not four");
    assert_eq!(statuses(&c.call(n, T0 + DAY)), [(FlagStatus::Raised, 1)], "the third counted call");
}

#[test]
fn excluded_numbers_in_any_spelling_and_excluded_addresses_are_never_counted() {
    let (mut engine, ingest) = setup(|c| {
        c.repeat_callers.exclude_numbers = vec!["+44 113 496 0999".into()];
        c.repeat_callers.exclude_addresses = vec!["UPRN-HOSPITAL".into()];
        c.repeat_callers.rules[0].identity = Identity::Phone;
    });
    let mut c = Caller { engine: &mut engine, ingest: &ingest, next_id: 0 };
    for (d, spelling) in ["0113 496 0999", "(0113) 4960999", "0044 113 496 0999", "+441134960999"].iter().enumerate() {
        let o = c.call_from(Some(spelling), Some("UPRN-HOSPITAL"), T0 + d as i64 * MINUTE);
        assert_eq!((o.counted_phone, o.counted_address), (None, None), "{spelling}");
        assert!(o.hits.is_empty());
    }
    let other = c.call_from(Some("0113 496 0998"), Some("UPRN-HOME"), T0);
    assert!(other.counted_phone.is_some() && other.counted_address.is_some(), "others still count");
}

#[test]
fn a_late_call_counts_by_its_event_time() {
    let (mut engine, ingest) = setup(|_| {});
    let mut c = Caller { engine: &mut engine, ingest: &ingest, next_id: 0 };
    let n = "0113 496 0004";
    c.call(n, T0 + 6 * DAY);
    c.call(n, T0 + 8 * DAY);
    // Arrives last, happened first: counted, but at its own time it is alone in its week.
    let late = c.call(n, T0);
    assert!(late.counted_phone.is_some() && late.hits.is_empty());
    // Eight days after T0, the week (T0 + 1 day, T0 + 8 days] holds two calls, plus this one.
    assert_eq!(statuses(&c.call(n, T0 + 8 * DAY + MINUTE)), [(FlagStatus::Raised, 1)]);
}
