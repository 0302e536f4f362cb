//! The engine against a brute-force reading of SPEC section 3 that rescans all history for
//! every call, on random streams: duplicates, late and out-of-order events, several
//! identities, every rule option.

use crate::replay::replay;
use lantern_shared::config::{Config, RuleConfig};
use lantern_shared::domain::ingest::IngestContext;
use lantern_shared::domain::pseudonym::Pseudonymizer;
use lantern_shared::domain::{AgeBand, Channel, Identity, Severity};
use lantern_shared::Span;
use proptest::prelude::*;
use std::collections::HashMap;

const BASE_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

#[derive(Debug, Clone)]
struct Call {
    number: Option<usize>,
    address: Option<usize>,
    at_ms: i64,
    channel: Channel,
    communal: Option<bool>,
    age: Option<AgeBand>,
}

/// Several spellings of a few numbers: normalisation must make each one identity.
const NUMBERS: [[&str; 3]; 3] = [
    ["0113 496 0001", "+441134960001", "(0113) 4960001"],
    ["07700 900002", "+44 7700 900002", "07700900002"],
    ["0161 496 0003", "+441614960003", "0044 161 496 0003"],
];

fn rule_strategy() -> impl Strategy<Value = RuleConfig> {
    (
        prop_oneof![Just(Identity::Phone), Just(Identity::Address)],
        1i64..=30,
        1i64..=4,
        prop_oneof![Just(Severity::Low), Just(Severity::Medium), Just(Severity::High)],
        proptest::option::of(proptest::sample::subsequence(Channel::ALL.to_vec(), 1..=2)),
        proptest::option::of(any::<bool>()),
        proptest::option::of(prop_oneof![Just(AgeBand::Under18), Just(AgeBand::Adult), Just(AgeBand::Unknown)]),
    )
        .prop_map(|(identity, hours, min_calls, severity, channels, communal_address, age_band)| RuleConfig {
            name: String::new(),
            identity,
            window: Span::from_secs(hours * 3600),
            min_calls,
            severity,
            channels,
            communal_address,
            age_band,
        })
}

fn call_strategy() -> impl Strategy<Value = Call> {
    (
        proptest::option::of(0usize..3),
        proptest::option::of(0usize..2),
        // Three days on an hourly grid, so equal times and exact window boundaries happen.
        0i64..(3 * 24),
        proptest::sample::select(Channel::ALL.to_vec()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(prop_oneof![Just(AgeBand::Under18), Just(AgeBand::Adult), Just(AgeBand::Unknown)]),
    )
        .prop_map(|(number, address, hours, channel, communal, age)| Call {
            number,
            address,
            at_ms: BASE_MS + hours * 3_600_000,
            channel,
            communal,
            age,
        })
}

#[derive(Debug, Clone)]
struct Scenario {
    rules: Vec<RuleConfig>,
    cooldown_hours: i64,
    merge_minutes: i64,
    exclude_number: Option<usize>,
    calls: Vec<Call>,
    /// The order events arrive in: (call index, event number); repeats are duplicates.
    arrivals: Vec<(usize, u8)>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        proptest::collection::vec(rule_strategy(), 1..=3),
        0i64..=72,
        prop_oneof![3 => Just(0i64), 1 => 1i64..=180],
        proptest::option::of(0usize..3),
        proptest::collection::vec(call_strategy(), 1..40),
    )
        .prop_flat_map(|(rules, cooldown_hours, merge_minutes, exclude_number, calls)| {
            let n = calls.len();
            // Mostly first events (offered), so calls land on the grid; some later ones and repeats.
            let arrivals = proptest::collection::vec((0..n, prop_oneof![4 => Just(0u8), 1 => 1u8..3]), n..n * 3);
            (Just(rules), Just(cooldown_hours), Just(merge_minutes), Just(exclude_number), Just(calls), arrivals)
        })
        .prop_map(|(mut rules, cooldown_hours, merge_minutes, exclude_number, calls, arrivals)| {
            for (i, r) in rules.iter_mut().enumerate() {
                r.name = format!("rule-{i}");
            }
            Scenario { rules, cooldown_hours, merge_minutes, exclude_number, calls, arrivals }
        })
}

fn config_of(s: &Scenario) -> Config {
    let mut c = Config::default();
    c.repeat_callers.rules = s.rules.clone();
    c.repeat_callers.cooldown = Span::from_secs(s.cooldown_hours * 3600);
    c.repeat_callers.merge_within = Span::from_secs(s.merge_minutes * 60);
    c.repeat_callers.exclude_numbers = s.exclude_number.map(|n| vec![NUMBERS[n][2].to_string()]).unwrap_or_default();
    c.repeat_callers.exclude_addresses = vec!["ADDR-EXCLUDED".into()];
    c.mental_health.cues.clear();
    c
}

fn events_of(s: &Scenario) -> String {
    let mut out = String::new();
    for (k, (ci, n)) in s.arrivals.iter().enumerate() {
        let c = &s.calls[*ci];
        let kind = ["offered", "answered", "closed"][*n as usize];
        let at = chrono::DateTime::from_timestamp_millis(c.at_ms + i64::from(*n) * 60_000).expect("time").to_rfc3339();
        let mut caller = serde_json::Map::new();
        if let Some(num) = c.number {
            caller.insert("number".into(), NUMBERS[num][(ci + k) % 3].into());
        }
        if let Some(a) = c.address {
            caller.insert("address_id".into(), if a == 0 { "ADDR-EXCLUDED".into() } else { format!("ADDR-{a}").into() });
        }
        if let Some(cm) = c.communal {
            caller.insert("communal_address".into(), cm.into());
        }
        if let Some(age) = c.age {
            caller.insert("age_band".into(), age.as_str().into());
        }
        let v = serde_json::json!({
            "event_id": format!("e-{ci}-{n}"), "call_id": format!("c-{ci}"), "kind": kind,
            "occurred_at": at, "channel": c.channel.as_str(), "caller": caller,
        });
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

/// One expected flag: (status, identity, identity index, call index, severity, [(rule, calls)], flag number).
type Expected = (&'static str, Identity, usize, usize, Severity, Vec<(String, u32)>, usize);

/// SPEC section 3 read literally: for every new call, rescan all history.
fn reference(s: &Scenario) -> Vec<Expected> {
    let cooldown = s.cooldown_hours * 3_600_000;
    let merge = s.merge_minutes * 60_000;
    let mut seen_events = std::collections::HashSet::new();
    let mut seen_calls = std::collections::HashSet::new();
    // Counted calls: (identity, index, call index, event time of its first event seen).
    let mut counted: Vec<(Identity, usize, usize, i64)> = Vec::new();
    // Raised flags: (identity, index, t0, flag number).
    let mut flags: Vec<(Identity, usize, i64, usize)> = Vec::new();
    let mut out = Vec::new();
    let passes = |r: &RuleConfig, c: &Call| {
        r.channels.as_ref().is_none_or(|ch| ch.contains(&c.channel))
            && r.communal_address.is_none_or(|want| want == c.communal.unwrap_or(false))
            && r.age_band.is_none_or(|want| want == c.age.unwrap_or(AgeBand::Unknown))
    };
    for (ci, n) in &s.arrivals {
        if !seen_events.insert((*ci, *n)) || !seen_calls.insert(*ci) {
            continue;
        }
        let call = &s.calls[*ci];
        let t = call.at_ms + i64::from(*n) * 60_000;
        let idents = [
            (Identity::Phone, call.number.filter(|num| Some(*num) != s.exclude_number)),
            (Identity::Address, call.address.filter(|a| *a != 0)),
        ];
        for (identity, idx) in idents {
            let Some(idx) = idx else { continue };
            if merge > 0 && counted.iter().any(|(i, x, _, ct)| *i == identity && *x == idx && *ct >= t - merge && *ct <= t) {
                continue;
            }
            counted.push((identity, idx, *ci, t));
            let mut met = Vec::new();
            let mut severity = None;
            for r in s.rules.iter().filter(|r| r.identity == identity && passes(r, call)) {
                let w = r.window.millis();
                let n = counted
                    .iter()
                    .filter(|(i, x, cj, ct)| *i == identity && *x == idx && *ct > t - w && *ct <= t && passes(r, &s.calls[*cj]))
                    .count() as u32;
                if i64::from(n) >= r.min_calls {
                    met.push((r.name.clone(), n));
                    severity = severity.max(Some(r.severity));
                }
            }
            let Some(severity) = severity else { continue };
            let open = flags.iter().filter(|(i, x, t0, _)| *i == identity && *x == idx && t < t0 + cooldown).max_by_key(|f| f.2).copied();
            let (status, number) = match open {
                Some((_, _, _, number)) => ("updated", number),
                None => {
                    flags.push((identity, idx, t, flags.len()));
                    ("raised", flags.len() - 1)
                }
            };
            met.sort();
            out.push((status, identity, idx, *ci, severity, met, number));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn the_engine_raises_exactly_the_flags_a_brute_force_rescan_does(s in scenario()) {
        let config = config_of(&s);
        let ingest = IngestContext::new(Pseudonymizer::new(b"prop"), "GB", 300_000);
        let mut out = Vec::new();
        replay(&config, &ingest, chrono::Utc::now(), s.events_of_reader(), Some(&mut out)).expect("replay");
        let refs: HashMap<String, (Identity, usize)> = (0..3)
            .map(|i| (ingest.phone_ref(NUMBERS[i][0]).expect("ref").to_string(), (Identity::Phone, i)))
            .chain((1..2).map(|a| (ingest.pseudonymizer.address(&format!("ADDR-{a}")).to_string(), (Identity::Address, a))))
            .collect();
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut got = Vec::new();
        for line in String::from_utf8(out).expect("utf8").lines() {
            let f: serde_json::Value = serde_json::from_str(line).expect("json");
            let (identity, idx) = refs[f["caller_ref"].as_str().expect("ref")];
            let ci: usize = f["call_id"].as_str().and_then(|c| c.strip_prefix("c-")).and_then(|c| c.parse().ok()).expect("call");
            let next = ids.len();
            let number = *ids.entry(f["flag_id"].as_str().expect("id").to_string()).or_insert(next);
            let mut met: Vec<(String, u32)> = f["reasons"].as_array().expect("reasons").iter()
                .map(|r| (r["rule"].as_str().expect("rule").to_string(), r["calls"].as_u64().expect("calls") as u32)).collect();
            met.sort();
            let severity = Severity::parse(f["severity"].as_str().expect("severity")).expect("severity");
            let status = if f["status"] == "raised" { "raised" } else { "updated" };
            got.push((status, identity, idx, ci, severity, met, number));
        }
        let want = reference(&s);
        // Flag numbers are compared by first appearance on both sides.
        let renumber = |v: Vec<Expected>| {
            let mut map = HashMap::new();
            v.into_iter().map(|mut e| { let n = map.len(); e.6 = *map.entry(e.6).or_insert(n); e }).collect::<Vec<_>>()
        };
        prop_assert_eq!(renumber(got), renumber(want));
    }
}

/// A call for the history test below: which of six identities (three phones, three
/// addresses), when, and a channel.
fn history_call() -> impl Strategy<Value = (usize, i64, usize)> {
    (0usize..6, 0i64..20 * 86_400_000, 0usize..4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    /// What start-up rebuilds is what the running engine holds: calls observed and then
    /// pruned, and the same calls from the cut on restored in any order, give the same
    /// counts, the same oldest call, and the same flags for the calls that follow.
    #[test]
    fn history_restored_at_start_up_is_history_observed_then_pruned(
        before in proptest::collection::vec(history_call(), 0..60),
        cut_day in 0i64..20,
        after in proptest::collection::vec(history_call(), 1..30),
    ) {
        use super::{CallAttrs, CallFacts, RepeatEngine, Rules};
        let mut config = Config::default();
        config.repeat_callers.rules = [(Identity::Phone, 3, 7, None), (Identity::Address, 2, 2, None), (Identity::Phone, 2, 30, Some(vec![Channel::Emergency]))]
            .into_iter()
            .enumerate()
            .map(|(i, (identity, min_calls, days, channels))| RuleConfig {
                name: format!("rule-{i}"),
                identity,
                window: Span::from_days(days),
                min_calls,
                severity: Severity::Medium,
                channels,
                communal_address: None,
                age_band: None,
            })
            .collect();
        config.repeat_callers.merge_within = Span::ZERO;
        let ingest = IngestContext::new(Pseudonymizer::new(b"prop"), "GB", 300_000);
        let rules = Rules::from_config(&config, &ingest);
        let facts = |&(who, at, channel): &(usize, i64, usize)| {
            let r = lantern_shared::domain::pseudonym::CallerRef::from_u128(who as u128 % 3 + 1);
            CallFacts {
                occurred_ms: BASE_MS + at,
                attrs: CallAttrs::new(Channel::ALL[channel], None, None),
                phone: (who < 3).then_some(r),
                address: (who >= 3).then_some(r),
            }
        };
        let cut = BASE_MS + cut_day * 86_400_000;
        let mut running = RepeatEngine::new(rules.clone());
        for c in &before {
            running.observe(&facts(c), 0, &mut || 1);
        }
        running.prune(cut);
        let mut restored = RepeatEngine::new(rules);
        for c in before.iter().rev().filter(|c| BASE_MS + c.1 >= cut) {
            let f = facts(c);
            for (identity, r) in [(Identity::Phone, f.phone), (Identity::Address, f.address)] {
                if let Some(r) = r {
                    restored.restore_call(identity, r, f.occurred_ms, f.attrs);
                }
            }
        }
        restored.finish_restore();
        prop_assert_eq!(running.calls_held(), restored.calls_held());
        prop_assert_eq!(running.identities(), restored.identities());
        prop_assert_eq!(running.earliest_ms(), restored.earliest_ms());
        for c in &after {
            let now = facts(c).occurred_ms;
            prop_assert_eq!(running.at_or_over(now), restored.at_or_over(now));
            let counts = |o: super::Observed| o.hits.into_iter().map(|h| (h.identity, h.reasons)).collect::<Vec<_>>();
            prop_assert_eq!(counts(running.observe(&facts(c), 0, &mut || 1)), counts(restored.observe(&facts(c), 0, &mut || 1)));
        }
        running.prune(cut + 10 * 86_400_000);
        restored.prune(cut + 10 * 86_400_000);
        prop_assert_eq!(running.calls_held(), restored.calls_held());
        prop_assert_eq!(running.identities(), restored.identities());
    }
}

impl Scenario {
    fn events_of_reader(&self) -> std::io::Cursor<Vec<u8>> {
        std::io::Cursor::new(events_of(self).into_bytes())
    }
}
