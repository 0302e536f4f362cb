//! The public conformance check (`../shared/conformance`), run inside the suite: the same
//! comparison `check.py` makes, through the same replay code `lantern replay` runs.

use lantern_shared::domain::ingest::IngestContext;
use lantern_shared::domain::pseudonym::Pseudonymizer;
use lantern_shared::Config;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn key(f: &serde_json::Value) -> String {
    let mut reasons: Vec<(String, i64)> = f["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| (r["rule"].as_str().unwrap_or("").to_string(), r["calls"].as_i64().unwrap_or(-1)))
        .collect();
    reasons.sort();
    serde_json::json!([f["status"], f["severity"], f["call_id"], f["caller_ref"], reasons]).to_string()
}

#[test]
fn repeat_caller_flags_match_the_public_conformance_scenario() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance");
    if !dir.exists() {
        lantern_tests::skip("../shared/conformance is not beside the repository");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::write(tmp.path().join("key"), b"conformance-key").expect("key");
    let text = std::fs::read_to_string(dir.join("lantern.toml.in")).expect("config").replace("{dir}", &tmp.path().display().to_string());
    let config = Config::from_toml(&text).unwrap_or_else(|p| panic!("{p}"));
    let ingest = IngestContext::new(Pseudonymizer::new(b"conformance-key"), "GB", config.ingest.max_future_skew.millis());
    let events = std::fs::File::open(dir.join("events.jsonl")).expect("events");
    let mut out = Vec::new();
    lantern_flagger::replay::replay(&config, &ingest, chrono::Utc::now(), std::io::BufReader::new(events), Some(&mut out)).expect("replay");
    let fields =
        ["flag_id", "status", "kind", "severity", "call_id", "event_id", "occurred_at", "raised_at", "channel", "caller_ref", "reasons"];
    let mut got: BTreeMap<String, i64> = BTreeMap::new();
    for line in String::from_utf8(out).expect("utf8").lines() {
        let f: serde_json::Value = serde_json::from_str(line).expect("each line is a JSON flag");
        for field in fields {
            assert!(f.get(field).is_some(), "flag lacks {field}: {f}");
        }
        if f["kind"] == "repeat_caller" {
            *got.entry(key(&f)).or_default() += 1;
        }
    }
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for line in std::fs::read_to_string(dir.join("expected-repeat-caller.jsonl")).expect("expected").lines() {
        *want.entry(key(&serde_json::from_str(line).expect("json"))).or_default() += 1;
    }
    let missing: Vec<_> = want.iter().filter(|(k, n)| got.get(*k) != Some(n)).take(5).collect();
    let unexpected: Vec<_> = got.iter().filter(|(k, n)| want.get(*k) != Some(n)).take(5).collect();
    assert!(missing.is_empty() && unexpected.is_empty(), "missing {missing:?}\nunexpected {unexpected:?}");
    assert_eq!(want.values().sum::<i64>(), 336);
}
