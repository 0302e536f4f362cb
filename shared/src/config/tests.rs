use super::*;

/// The shipped file as `Config::load` reads it: its model file beside it.
fn shipped_file() -> Result<Config, Problems> {
    Config::from_toml_in(SHIPPED, Some(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")))
}

#[test]
fn the_shipped_file_is_valid_and_holds_the_frecann_defaults() {
    let c = shipped_file().unwrap_or_else(|p| panic!("{p}"));
    let names: Vec<&str> = c.repeat_callers.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["frecann-month", "frecann-quarter", "communal-month", "young-person", "acute-day"]);
    assert_eq!(c.repeat_callers.rules, RepeatCallersConfig::default().rules);
    assert_eq!(c.longest_window(), Span::from_days(180));
    // The shipped lexicon is the default for files without one.
    assert!(c.mental_health.cues.len() >= 10);
    let mut shipped_mh = c.mental_health.clone();
    assert!(shipped_mh.model.take().is_some_and(|m| m.ends_with("mh-model.json")), "the shipped file names its model");
    assert_eq!(Config::default().mental_health, shipped_mh, "the default is the shipped file, model built in");
}

#[test]
fn an_empty_file_gives_working_defaults() {
    let c = Config::from_toml("").unwrap();
    assert_eq!(c.mqtt.url, "mqtt://127.0.0.1:1883");
    assert_eq!(c.client_id("flagger"), "lantern-flagger");
    assert_eq!(c.demand.max_divisions, 32);
}

#[test]
fn every_problem_is_listed_with_its_key() {
    let text = r#"
[mqtt]
url = "http://x"
colour = "blue"

[demand]
windows = []

[[repeat_callers.rules]]
name = "a"
identity = "phone"
window = "30d"
min_calls = -2
severity = "medium"
frequency = 3

[[repeat_callers.rules]]
name = "b"
identity = "phone"
window = "fortnight"
min_calls = 3
severity = "high"

[nonsense]
x = 1
"#;
    let problems = Config::from_toml(text).unwrap_err();
    let shown = problems.to_string();
    for key in ["mqtt.colour", "repeat_callers.rules[0].frequency", "nonsense", "repeat_callers"] {
        assert!(shown.contains(key), "missing {key} in:\n{shown}");
    }
    // Unknown keys are fixed first; then values are checked.
    let text = text.replace("colour = \"blue\"", "").replace("frequency = 3", "").replace("[nonsense]\nx = 1", "");
    let shown = Config::from_toml(&text).unwrap_err().to_string();
    assert!(shown.contains("fortnight"), "{shown}");
    let text = text.replace("\"fortnight\"", "\"14d\"");
    let shown = Config::from_toml(&text).unwrap_err().to_string();
    for key in ["mqtt.url", "demand.windows", "repeat_callers.rules[0].min_calls"] {
        assert!(shown.contains(key), "missing {key} in:\n{shown}");
    }
    assert!(shown.contains("line 13: repeat_callers.rules[0].min_calls"), "{shown}");
}

#[test]
fn truncated_toml_reports_the_line() {
    let problems = Config::from_toml("[mqtt]\nurl = \"mqtt://127.0.0.1").unwrap_err();
    assert_eq!(problems.0.len(), 1);
    assert_eq!(problems.0[0].line, Some(2));
}

#[test]
fn duplicate_rule_names_and_bad_password_hashes_are_refused() {
    let text = r#"
[[repeat_callers.rules]]
name = "x"
identity = "phone"
window = "1d"
min_calls = 2
severity = "low"
[[repeat_callers.rules]]
name = "x"
identity = "address"
window = "1d"
min_calls = 2
severity = "low"
[[desk.users]]
name = "nurse"
role = "nurse"
password_hash = "hunter2"
"#;
    let shown = Config::from_toml(text).unwrap_err().to_string();
    assert!(shown.contains("repeat_callers.rules[1].name"), "{shown}");
    assert!(shown.contains("desk.users[0].password_hash"), "{shown}");
}

mod reloading {
    use super::super::diff::{diff, fingerprint};
    use super::super::reload::{reload_once, InForce, Reload};
    use super::*;

    fn shipped() -> Config {
        shipped_file().unwrap()
    }

    #[test]
    fn the_change_summary_reads_as_a_person_would_say_it() {
        let old = shipped();
        let new_text = SHIPPED
            .replacen("min_calls = 5", "min_calls = 4", 1)
            .replace("cooldown = \"30d\"", "cooldown = \"14d\"")
            .replace("url = \"sqlite://data/lantern.db\"", "url = \"sqlite://data/other.db\"");
        let new = Config::from_toml_in(&new_text, Some(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../config"))).unwrap();
        let lines: Vec<String> =
            diff(&old, &new).into_iter().map(|c| format!("{}{}", c.text, if c.needs_restart { " [restart]" } else { "" })).collect();
        assert_eq!(
            lines,
            [
                "database.url: sqlite://data/lantern.db -> sqlite://data/other.db [restart]",
                "repeat_callers.cooldown: 30d -> 14d",
                "rule frecann-month: min_calls 5 -> 4"
            ]
        );
        assert_ne!(fingerprint(&old), fingerprint(&new));
    }

    #[test]
    fn change_lines_redact_credentials_and_mask_numbers() {
        let old = shipped();
        let mut new = old.clone();
        new.database.url = "postgres://lantern:s3cret@db.force.internal/lantern".into();
        new.repeat_callers.exclude_numbers.push("0113 496 0999".into());
        let text: Vec<String> = diff(&old, &new).into_iter().map(|c| c.text).collect();
        let all = text.join("\n");
        assert!(!all.contains("s3cret") && all.contains("db.force.internal"), "{all}");
        assert!(!all.contains("496 0999") && all.contains("exclude_numbers: added #### ### ####"), "{all}");
    }

    #[test]
    fn rules_and_phrases_added_and_removed_are_named() {
        let old = shipped();
        let mut new = old.clone();
        new.repeat_callers.rules.pop();
        let mut rule = new.repeat_callers.rules[0].clone();
        rule.name = "fortnight".into();
        new.repeat_callers.rules.push(rule);
        new.mental_health.cues[0].phrases.push("new phrase".into());
        let text: Vec<String> = diff(&old, &new).into_iter().map(|c| c.text).collect();
        assert!(text.contains(&"rule acute-day removed".to_string()), "{text:?}");
        assert!(text.contains(&"rule fortnight added".to_string()), "{text:?}");
        assert!(text.iter().any(|t| t.starts_with("cue ") && t.contains("phrases added new phrase")), "{text:?}");
    }

    #[test]
    fn a_bad_edit_is_refused_and_the_config_in_force_stays() {
        let dir = tempfile_dir();
        let path = dir.join("lantern.toml");
        std::fs::write(&path, SHIPPED).unwrap();
        let mut current = InForce::new(Config::load(&path).unwrap(), &path);
        let before = current.clone();
        let bad: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", SHIPPED.as_bytes()[..SHIPPED.len() / 3].to_vec()),
            ("typo in a key", SHIPPED.replacen("min_calls = 5", "min_cals = 5", 1).into_bytes()),
            ("invalid duration", SHIPPED.replacen("window = \"30d\"", "window = \"30 days\"", 1).into_bytes()),
            ("negative count", SHIPPED.replacen("min_calls = 5", "min_calls = -5", 1).into_bytes()),
            ("not text", vec![0xff, 0xfe, 0x00, 0x80]),
        ];
        for (what, bytes) in bad {
            std::fs::write(&path, bytes).unwrap();
            match reload_once(&path, &mut current, "test") {
                Reload::Refused { error } => assert!(!error.is_empty(), "{what}"),
                Reload::Applied { .. } => panic!("{what} was applied"),
            }
            assert_eq!(current, before, "{what} changed the config in force");
        }
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(dir.join("nowhere"), &path).unwrap();
        assert!(matches!(reload_once(&path, &mut current, "test"), Reload::Refused { .. }), "an unreadable file is refused");
        assert_eq!(current, before);
    }

    #[test]
    fn a_restart_only_change_is_reported_but_not_applied() {
        let dir = tempfile_dir();
        let path = dir.join("lantern.toml");
        std::fs::write(&path, SHIPPED).unwrap();
        let mut current = InForce::new(Config::load(&path).unwrap(), &path);
        std::fs::write(&path, SHIPPED.replace("127.0.0.1:9101", "127.0.0.1:9999").replacen("min_calls = 5", "min_calls = 4", 1)).unwrap();
        match reload_once(&path, &mut current, "test") {
            Reload::Applied { config, changes, .. } => {
                assert_eq!(config.flagger.listen, "127.0.0.1:9101", "listen needs a restart");
                assert_eq!(config.repeat_callers.rules[0].min_calls, 4);
                assert_eq!(changes, ["rule frecann-month: min_calls 5 -> 4"]);
            }
            Reload::Refused { error } => panic!("{error}"),
        }
    }

    /// A folder of the test's own, holding the shipped model as the shipped config expects.
    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("lantern-cfg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("mh-model.json"), crate::config::model_file::SHIPPED_MODEL).unwrap();
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
