//! `lantern check-config --against` and `lantern replay --compare` on fixed inputs.

use std::path::Path;

const OLD: &str = r#"
[privacy]
key_file = "{dir}/key"

[repeat_callers]
cooldown = "30d"

[[repeat_callers.rules]]
name = "frecann-month"
identity = "phone"
window = "30d"
min_calls = 5
severity = "medium"

[[repeat_callers.rules]]
name = "acute-day"
identity = "phone"
window = "24h"
min_calls = 3
severity = "high"
"#;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text.replace("{dir}", &dir.display().to_string())).expect("write");
    p
}

/// Caller A calls 4 times, caller B 5 times, caller C 3 times in one day, all within 30 days.
fn events() -> String {
    let mut out = String::new();
    let mut n = 0;
    for (caller, calls, spacing_h) in [("07700 900001", 4, 48), ("07700 900002", 5, 48), ("07700 900003", 3, 2)] {
        for i in 0..calls {
            let at = chrono::DateTime::parse_from_rfc3339("2026-10-01T08:00:00+00:00").expect("t") + chrono::Duration::hours(i * spacing_h);
            out.push_str(&format!(
                "{{\"event_id\":\"e{n}\",\"call_id\":\"c{n}\",\"kind\":\"offered\",\"occurred_at\":\"{}\",\"channel\":\"101\",\"caller\":{{\"number\":\"{caller}\"}}}}\n",
                at.to_rfc3339()
            ));
            n += 1;
        }
    }
    out
}

#[test]
fn check_config_against_the_file_in_force_prints_the_change_summary() {
    let dir = tempfile::tempdir().expect("tmp");
    let old = write(dir.path(), "old.toml", OLD);
    let new = write(
        dir.path(),
        "new.toml",
        &OLD.replacen("min_calls = 5", "min_calls = 4", 1).replace("cooldown = \"30d\"", "cooldown = \"14d\""),
    );
    let (ok, report) = lantern::check_config_report(&new, Some(&old));
    assert!(ok);
    let body: Vec<&str> = report.lines().skip(1).collect();
    assert_eq!(
        body,
        [&format!("changes against {}:", old.display()), "  repeat_callers.cooldown: 30d -> 14d", "  rule frecann-month: min_calls 5 -> 4"]
    );

    let broken = write(
        dir.path(),
        "broken.toml",
        &OLD.replacen("min_calls = 5", "min_calls = -1", 1).replacen("window = \"24h\"", "window = \"1 day\"", 1),
    );
    let (ok, report) = lantern::check_config_report(&broken, None);
    assert!(!ok);
    assert!(report.contains("repeat_callers"), "{report}");
    let broken = write(
        dir.path(),
        "broken2.toml",
        &OLD.replacen("min_calls = 5", "min_calls = -1", 1).replacen("min_calls = 3", "min_calls = 0", 1),
    );
    let (_, report) = lantern::check_config_report(&broken, None);
    assert!(report.contains("2 problem(s)"), "{report}");
    assert!(report.contains("line 12: repeat_callers.rules[0].min_calls: is -1"), "{report}");
    assert!(report.contains("line 19: repeat_callers.rules[1].min_calls: is 0"), "{report}");
}

#[test]
fn replay_compare_shows_flags_and_callers_per_rule_under_old_and_new() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("key"), b"k").expect("key");
    let old = write(dir.path(), "old.toml", OLD);
    let new = write(dir.path(), "new.toml", &OLD.replacen("min_calls = 5", "min_calls = 4", 1));
    let events = write(dir.path(), "events.jsonl", &events());
    let report = lantern::compare_report(&new, &old, &events).expect("compare");
    let lines: Vec<Vec<&str>> = report.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[1], ["acute-day", "1", "1", "+0", "1", "1", "+0"]);
    assert_eq!(lines[2], ["frecann-month", "1", "2", "+1", "1", "2", "+1"]);
    assert_eq!(lines[3], ["all", "repeat-caller", "rules", "2", "3", "+1", "2", "3", "+1"]);
}

#[test]
fn replay_compare_shows_mental_health_flags_per_category_and_layer() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("key"), b"k").expect("key");
    let without_model = write(dir.path(), "old.toml", &format!("{OLD}\n[mental_health]\nmodel = \"\"\n"));
    let with_model = write(dir.path(), "new.toml", OLD);
    let notes = [
        "says he is going to jump off the bridge",
        "lad sat on the parapet of the footbridge with his back to the road, legs over, wont talk",
        "lock keeper reports man pacing the lock gates for over an hour staring into the water, asked staff how deep it was",
        "two vehicle rtc on the a38, no injuries, details exchanged",
    ];
    let events: String = notes
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{{\"event_id\":\"m{i}\",\"call_id\":\"m{i}\",\"kind\":\"offered\",\"occurred_at\":\"2026-10-01T08:00:00+00:00\",\"channel\":\"999\",\"notes\":\"{n}\"}}\n"))
        .collect();
    let events = write(dir.path(), "events.jsonl", &events);
    let report = lantern::compare_report(&with_model, &without_model, &events).expect("compare");
    let row = |prefix: &str| -> Vec<String> {
        let line = report.lines().find(|l| l.trim_start().starts_with(prefix)).unwrap_or_else(|| panic!("no `{prefix}` in\n{report}"));
        line.split_whitespace().map(str::to_string).collect()
    };
    assert!(report.contains("mental-health flags: 2 old, 3 new"), "{report}");
    assert_eq!(row("mental health raised by model")[5..], ["0", "1", "+1"], "{report}");
    assert_eq!(row("mental health raised by lexicon")[5..], ["2", "2", "+0"], "{report}");
    assert_eq!(row("mental health raised by pattern")[5..], ["1", "1", "+0"], "{report}");
    assert_eq!(row("mental health category at_height_or_jumping")[4..], ["2", "2", "+0"], "{report}");
    assert!(report.contains("mental health category heights_rail_water"), "the model's category shows: {report}");
}
