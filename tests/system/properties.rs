//! The fuzz targets' properties (`lantern_flagger::fuzzing`), run as property tests on stable so
//! `make test` checks them on every change: random bytes, and random values in every field of
//! well-formed events and flag messages. `make fuzz` runs the same properties under cargo-fuzz.

use lantern_flagger::fuzzing;
use proptest::prelude::*;
use serde_json::{json, Value};

/// Text that reaches the awkward corners: digits and separators, control and format characters,
/// combining marks, wide characters, emoji, quotes and very long runs.
fn nasty_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9 ()+./_-]{0,40}",
        "[\\x00-\\x1f\\u{202e}\\u{200b}\\u{feff}\\u{0301}a-z ]{0,60}",
        "(jump off|ligature|hang himself|end it|tablets|bridge|suicid)[a-z ]{0,300}",
        ("[a-z]{1,3}", 0usize..20_000).prop_map(|(s, n)| s.repeat(n / s.len().max(1))),
        "[０-９一-龥🌉😢]{0,30}",
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        nasty_text().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z_.]{1,12}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const EVENT_FIELDS: &[&str] = &["event_id", "call_id", "kind", "occurred_at", "channel", "division", "caller", "incident", "notes", "cli"];
const FLAG_FIELDS: &[&str] = &[
    "flag_id",
    "status",
    "kind",
    "severity",
    "call_id",
    "event_id",
    "occurred_at",
    "raised_at",
    "channel",
    "division",
    "caller_ref",
    "reasons",
    "score",
];

fn good_event() -> Value {
    json!({
        "event_id": "e1", "call_id": "c1", "kind": "offered", "occurred_at": "2026-11-23T21:14:03+00:00", "channel": "999",
        "division": "West", "caller": {"number": "0113 496 0123", "address_id": "1000", "age_band": "adult"},
        "incident": {"type": "CONCERN", "qualifiers": ["MENTAL_HEALTH"]}, "notes": "says he will jump off the bridge"
    })
}

fn good_flag() -> Value {
    json!({
        "flag_id": "0193f3c2-8a1e-7b4c-9d2e-5f6a7b8c9d0e", "status": "raised", "kind": "mental_health", "severity": "high",
        "call_id": "c1", "event_id": "e1", "occurred_at": "2026-11-23T21:14:03+00:00", "raised_at": "2026-11-23T21:14:03+00:00",
        "channel": "999", "division": "West", "caller_ref": null,
        "reasons": [{"category": "suicide", "cue": "jump off", "severity": "high", "negated": false, "snippet": "jump off", "source": "lexicon"}]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_are_an_event_or_a_clean_refusal(data in prop::collection::vec(any::<u8>(), 0..4096)) {
        fuzzing::event(&data);
    }

    #[test]
    fn any_value_in_any_event_field_is_an_event_or_a_clean_refusal(field in prop::sample::select(EVENT_FIELDS), value in any_json(), nested in any_json()) {
        let mut v = good_event();
        v["caller"]["number"] = nested;
        v[field] = value;
        fuzzing::event(&serde_json::to_vec(&v).expect("json"));
    }

    #[test]
    fn any_text_scans_with_snippets_that_fit(text in nasty_text()) {
        fuzzing::lexicon(text.as_bytes());
    }

    #[test]
    fn any_text_is_a_config_or_its_problems(text in prop_oneof![any::<String>(), "\\[[a-z_.]{1,20}\\]\n[a-z_]{1,12} = (\"[^\"]{0,20}\"|[0-9]{1,6}|true|\\[\\])\n"]) {
        fuzzing::config(text.as_bytes());
    }

    #[test]
    fn any_value_in_any_flag_field_is_a_flag_or_a_clean_refusal(field in prop::sample::select(FLAG_FIELDS), value in any_json(), reason in any_json()) {
        let mut v = good_flag();
        v["reasons"][0]["cue"] = reason;
        v[field] = value;
        fuzzing::flag(&serde_json::to_vec(&v).expect("json"));
    }
}

#[test]
fn the_fuzz_seeds_hold_the_properties() {
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    type Check = fn(&[u8]);
    let targets: [(&str, Check); 4] =
        [("event", fuzzing::event), ("lexicon", fuzzing::lexicon), ("config", fuzzing::config), ("flag", fuzzing::flag)];
    for (name, check) in targets {
        let files = std::fs::read_dir(seeds.join(name)).expect("seed folder");
        for f in files.flatten() {
            check(&std::fs::read(f.path()).expect("seed"));
        }
    }
}

/// Every seed of every fuzz target, and every input a fuzzer once crashed on (kept as a seed
/// named `regression-*`), holds its property here too, on the stable toolchain.
#[test]
fn every_fuzz_seed_and_past_crash_holds() {
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    type Check = fn(&[u8]);
    let targets: [(&str, Check); 4] =
        [("event", fuzzing::event), ("lexicon", fuzzing::lexicon), ("config", fuzzing::config), ("flag", fuzzing::flag)];
    let mut n = 0;
    for (target, check) in targets {
        for entry in std::fs::read_dir(seeds.join(target)).expect("seeds").flatten() {
            check(&std::fs::read(entry.path()).expect("seed"));
            n += 1;
        }
    }
    assert!(n >= 20, "{n} seeds");
}
