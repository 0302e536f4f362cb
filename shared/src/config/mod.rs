//! The one config file every part of Lantern reads (SPEC section 8).
//!
//! Loading is two steps: [`Config::parse`] turns TOML into typed values, refusing unknown keys
//! and wrong types, then [`Config::validate`] checks the whole thing at once. Both report every
//! problem they find with the key it concerns, so `lantern check-config` can list them all.

pub mod diff;
mod problems;
pub mod reload;
pub use problems::{Problem, Problems};

use crate::duration::Span;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The shipped config file; its lexicon is the default when a file has no `[[mental_health.cues]]`.
pub const SHIPPED: &str = include_str!("../../../config/lantern.toml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub mqtt: MqttConfig,
    pub broker: BrokerConfig,
    pub database: DatabaseConfig,
    pub ingest: IngestConfig,
    pub privacy: PrivacyConfig,
    pub flagger: ListenConfig,
    pub demand: DemandConfig,
    pub repeat_callers: RepeatCallersConfig,
    pub mental_health: MentalHealthConfig,
    pub desk: DeskConfig,
    pub retention: RetentionConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mqtt: MqttConfig::default(),
            broker: BrokerConfig::default(),
            database: DatabaseConfig::default(),
            ingest: IngestConfig::default(),
            privacy: PrivacyConfig::default(),
            flagger: ListenConfig { listen: "127.0.0.1:9101".into() },
            demand: DemandConfig::default(),
            repeat_callers: RepeatCallersConfig::default(),
            mental_health: MentalHealthConfig::default(),
            desk: DeskConfig::default(),
            retention: RetentionConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    pub url: String,
    pub client_id: String,
    pub calls_topic: String,
    /// Root of the topics Lantern publishes: `<root>/flags/...` and `<root>/rejected`.
    pub topic_root: String,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: "lantern".into(),
            calls_topic: "contact-centre/calls/#".into(),
            topic_root: "lantern".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    pub enabled: bool,
    pub listen: String,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig { enabled: false, listen: "127.0.0.1:1883".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: "sqlite://data/lantern.db".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub default_region: String,
    pub max_future_skew: Span,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig { default_region: "GB".into(), max_future_skew: Span::from_secs(300) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    pub key_file: PathBuf,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig { key_file: "data/pseudonym.key".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    pub listen: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemandConfig {
    pub listen: String,
    pub windows: Vec<Span>,
    pub max_divisions: usize,
}

impl Default for DemandConfig {
    fn default() -> Self {
        DemandConfig {
            listen: "127.0.0.1:9102".into(),
            windows: vec![Span::from_secs(900), Span::from_secs(3600), Span::from_secs(86_400)],
            max_divisions: 32,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepeatCallersConfig {
    pub cooldown: Span,
    pub exclude_numbers: Vec<String>,
    pub exclude_addresses: Vec<String>,
    pub merge_within: Span,
    pub rules: Vec<RuleConfig>,
}

impl Default for RepeatCallersConfig {
    fn default() -> Self {
        let rule = |name: &str, identity, days, min_calls, severity| RuleConfig {
            name: name.into(),
            identity,
            window: Span::from_days(days),
            min_calls,
            severity,
            channels: None,
            communal_address: None,
            age_band: None,
        };
        let mut communal = rule("communal-month", Identity::Address, 30, 15, Severity::Medium);
        communal.communal_address = Some(true);
        let mut young = rule("young-person", Identity::Phone, 180, 3, Severity::High);
        young.age_band = Some(AgeBand::Under18);
        let mut acute = rule("acute-day", Identity::Phone, 1, 3, Severity::High);
        acute.window = Span::from_secs(86_400);
        RepeatCallersConfig {
            cooldown: Span::from_days(30),
            exclude_numbers: Vec::new(),
            exclude_addresses: Vec::new(),
            merge_within: Span::ZERO,
            rules: vec![
                rule("frecann-month", Identity::Phone, 30, 5, Severity::Medium),
                rule("frecann-quarter", Identity::Phone, 90, 12, Severity::High),
                communal,
                young,
                acute,
            ],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Identity {
    Phone,
    Address,
}

impl Identity {
    pub fn as_str(self) -> &'static str {
        match self {
            Identity::Phone => "phone",
            Identity::Address => "address",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" => Some(Severity::Info),
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Channel {
    #[serde(rename = "999")]
    Emergency,
    #[serde(rename = "101")]
    NonEmergency,
    #[serde(rename = "online")]
    Online,
    #[serde(rename = "other")]
    Other,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Emergency, Channel::NonEmergency, Channel::Online, Channel::Other];
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Emergency => "999",
            Channel::NonEmergency => "101",
            Channel::Online => "online",
            Channel::Other => "other",
        }
    }
    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgeBand {
    #[serde(rename = "under_18")]
    Under18,
    Adult,
    Unknown,
}

impl AgeBand {
    pub fn as_str(self) -> &'static str {
        match self {
            AgeBand::Under18 => "under_18",
            AgeBand::Adult => "adult",
            AgeBand::Unknown => "unknown",
        }
    }
    pub fn parse(s: &str) -> Option<AgeBand> {
        match s {
            "under_18" => Some(AgeBand::Under18),
            "adult" => Some(AgeBand::Adult),
            "unknown" => Some(AgeBand::Unknown),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    pub identity: Identity,
    pub window: Span,
    pub min_calls: i64,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<Channel>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communal_address: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_band: Option<AgeBand>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MentalHealthConfig {
    pub negation_terms: Vec<String>,
    pub negation_window: i64,
    pub incident_types: Vec<String>,
    pub qualifiers: Vec<String>,
    /// The model file (`tools/mh/train.py` writes one). Absent: the model shipped in the binary
    /// (the same as `config/mh-model.json`); `""`: no model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Score at or above which the model flags a note; absent: the threshold the file carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_threshold: Option<f64>,
    /// A cue or pattern flags a note only when the model's score is at least this: below it the
    /// model reads the note as plainly about something else ("found a strip of tablets in the
    /// playground"). Absent: the value the model file carries (0 when it carries none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_veto: Option<f64>,
    /// Phrases that make a cue or pattern beside them (two words either side) mean something else:
    /// "end it with her boyfriend", "hanging baskets", "jump start".
    pub false_friends: Vec<String>,
    pub cues: Vec<CueConfig>,
    pub patterns: Vec<PatternConfig>,
}

/// A pattern (SPEC section 4): words of one set within a few words of words of another, such as
/// a place of danger near a posture or movement, unless a blocking phrase is there too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    pub name: String,
    pub category: String,
    pub severity: Severity,
    /// Sets of words or phrases, written as lexicon phrases (whole words, `*` ends a word).
    pub near: Vec<Vec<String>>,
    /// How many words apart the matches may be at most; 0 means anywhere in the note.
    #[serde(default = "default_within")]
    pub within: i64,
    /// How many of the sets must match; absent: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_sets: Option<i64>,
    /// Phrases that cancel the pattern when they come within `block_within` words of its match
    /// ("hanging baskets").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block: Vec<String>,
    /// How near a blocking phrase must be to cancel; absent: `within`; 0: anywhere in the note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_within: Option<i64>,
    /// Plain words shown to nurses; defaults to the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

fn default_within() -> i64 {
    4
}

impl MentalHealthConfig {
    /// The model this section names, read and checked: `Ok(None)` when it names none.
    pub fn load_model(&self) -> Result<Option<crate::mh_model::ModelFile>, String> {
        match self.model.as_deref() {
            None => crate::mh_model::ModelFile::parse(crate::mh_model::SHIPPED_MODEL).map(Some),
            Some("") => Ok(None),
            Some(path) => crate::mh_model::ModelFile::load(Path::new(path)).map(Some),
        }
    }
}

impl Default for MentalHealthConfig {
    /// The shipped file's lexicon, parsed once.
    fn default() -> Self {
        static SHIPPED_MH: std::sync::OnceLock<MentalHealthConfig> = std::sync::OnceLock::new();
        SHIPPED_MH
            .get_or_init(|| {
                shipped_mental_health().unwrap_or(MentalHealthConfig {
                    negation_terms: Vec::new(),
                    negation_window: 5,
                    incident_types: Vec::new(),
                    qualifiers: Vec::new(),
                    model: None,
                    model_threshold: None,
                    model_veto: None,
                    false_friends: Vec::new(),
                    cues: Vec::new(),
                    patterns: Vec::new(),
                })
            })
            .clone()
    }
}

/// The `[mental_health]` section of the shipped file (a test keeps it complete and valid).
/// Every key is required here, so reading it never falls back on `Default` (which calls this).
fn shipped_mental_health() -> Option<MentalHealthConfig> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Section {
        negation_terms: Vec<String>,
        negation_window: i64,
        incident_types: Vec<String>,
        qualifiers: Vec<String>,
        // The shipped file names config/mh-model.json; the default is the same model, built in.
        #[allow(dead_code)]
        model: String,
        model_threshold: Option<f64>,
        model_veto: Option<f64>,
        false_friends: Vec<String>,
        cues: Vec<CueConfig>,
        patterns: Vec<PatternConfig>,
    }
    let table: toml::Table = toml::from_str(SHIPPED).ok()?;
    let s: Section = table.get("mental_health")?.clone().try_into().ok()?;
    Some(MentalHealthConfig {
        negation_terms: s.negation_terms,
        negation_window: s.negation_window,
        incident_types: s.incident_types,
        qualifiers: s.qualifiers,
        model: None,
        model_threshold: s.model_threshold,
        model_veto: s.model_veto,
        false_friends: s.false_friends,
        cues: s.cues,
        patterns: s.patterns,
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CueConfig {
    pub category: String,
    pub severity: Severity,
    pub phrases: Vec<String>,
    /// Optional plain-words label shown to nurses; defaults to the category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Phrases that cancel this group's cues when they come within `block_within` words of
    /// one ("abseil" near "hanging from the bridge").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block: Vec<String>,
    /// How near a blocking phrase must be; absent or 0: anywhere in the note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_within: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeskConfig {
    pub listen: String,
    pub users: Vec<UserConfig>,
    /// Estimated saving per avoided section 136 detention, by agency, in pounds.
    pub unit_savings: BTreeMap<String, f64>,
}

impl Default for DeskConfig {
    fn default() -> Self {
        DeskConfig {
            listen: "127.0.0.1:8080".into(),
            users: Vec::new(),
            unit_savings: BTreeMap::from([
                ("police".to_string(), 287.0),
                ("ambulance".to_string(), 130.0),
                ("emergency_department".to_string(), 64.0),
            ]),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub role: Role,
    pub password_hash: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Nurse,
    Inspector,
    Admin,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// How long past the longest rule window a call stays in history before it is pruned.
    pub history_margin: Span,
    /// How long processed event ids are remembered to spot duplicates.
    pub event_ids: Span,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { history_margin: Span::from_days(7), event_ids: Span::from_days(30) }
    }
}

impl Config {
    /// Reads and checks a config file; every problem is returned, each with its key.
    pub fn load(path: &Path) -> Result<Config, Problems> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Problems::one(Problem::file(format!("cannot read {}: {e}", path.display()))))?;
        Config::from_toml_in(&text, path.parent())
    }

    /// Parses and validates TOML text; relative file names it holds are read from the current
    /// folder.
    pub fn from_toml(text: &str) -> Result<Config, Problems> {
        Config::from_toml_in(text, None)
    }

    /// Parses and validates TOML text written in the folder `base`: a relative
    /// `mental_health.model` names a file there, beside the config, wherever Lantern is started.
    pub fn from_toml_in(text: &str, base: Option<&Path>) -> Result<Config, Problems> {
        let mut config = Config::parse(text)?;
        if let (Some(base), Some(model)) = (base.filter(|b| !b.as_os_str().is_empty()), config.mental_health.model.as_mut()) {
            if !model.is_empty() && Path::new(model.as_str()).is_relative() {
                *model = base.join(model.as_str()).display().to_string();
            }
        }
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(Problems::from_vec(problems).with_lines(text))
        }
    }

    /// Typed parse only. Unknown keys anywhere are all reported, then wrong types per section.
    pub fn parse(text: &str) -> Result<Config, Problems> {
        let table: toml::Table = toml::from_str(text).map_err(|e| Problems::one(Problem::syntax(text, &e)))?;
        let mut problems = problems::unknown_keys(&table);
        // Each section is deserialized on its own so a bad value in one does not hide another's.
        for (section, value) in &table {
            let mut single = toml::Table::new();
            single.insert(section.clone(), value.clone());
            if let Err(e) = single.try_into::<Config>() {
                let p = Problem::value(section, &e);
                if !problems.iter().any(|q| q.key.starts_with(section.as_str()) && q.message.contains("unknown key")) {
                    problems.push(p);
                }
            }
        }
        if !problems.is_empty() {
            return Err(Problems::from_vec(problems).with_lines(text));
        }
        table.try_into::<Config>().map_err(|e| Problems::one(Problem::value("", &e)).with_lines(text))
    }

    /// Checks values that types alone cannot: ranges, names, references between keys.
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let mut err = |key: String, message: String| p.push(Problem::new(key, message));

        if let Err(why) = crate::mqtt::BrokerAddress::parse(&self.mqtt.url) {
            err("mqtt.url".into(), why);
        }
        if self.mqtt.client_id.trim().is_empty() || self.mqtt.client_id.len() > 64 {
            err("mqtt.client_id".into(), "must be 1 to 64 characters; each service connects as <client_id>-<service>".into());
        }
        let root = &self.mqtt.topic_root;
        if root.is_empty() || root.contains(['#', '+']) || root.ends_with('/') {
            err("mqtt.topic_root".into(), format!("`{root}` must be a topic without wildcards or a trailing /, such as \"lantern\""));
        }
        let topic = &self.mqtt.calls_topic;
        if topic.is_empty() || topic.find('#').is_some_and(|i| i != topic.len() - 1) {
            err("mqtt.calls_topic".into(), "must be an MQTT topic filter such as \"contact-centre/calls/#\"".into());
        }
        for (key, addr) in [
            ("broker.listen", &self.broker.listen),
            ("flagger.listen", &self.flagger.listen),
            ("demand.listen", &self.demand.listen),
            ("desk.listen", &self.desk.listen),
        ] {
            if addr.parse::<SocketAddr>().is_err() {
                err(key.into(), format!("`{addr}` is not an address and port such as \"127.0.0.1:8080\""));
            }
        }
        if !(self.database.url.starts_with("sqlite:")
            || self.database.url.starts_with("postgres://")
            || self.database.url.starts_with("postgresql://"))
        {
            err("database.url".into(), format!("`{}` must start with sqlite:// or postgres://", self.database.url));
        }
        if self.ingest.default_region.to_ascii_uppercase().parse::<phonenumber::country::Id>().is_err() {
            err("ingest.default_region".into(), format!("`{}` is not a two-letter region code such as \"GB\"", self.ingest.default_region));
        }
        if self.privacy.key_file.as_os_str().is_empty() {
            err("privacy.key_file".into(), "must name the file holding the pseudonym key".into());
        }
        if self.demand.windows.is_empty() {
            err("demand.windows".into(), "needs at least one window such as \"15m\"".into());
        }
        if self.demand.windows.contains(&Span::ZERO) {
            err("demand.windows".into(), "a window must be longer than 0s".into());
        }
        if self.demand.max_divisions == 0 || self.demand.max_divisions > 1000 {
            err("demand.max_divisions".into(), "must be between 1 and 1000 (it bounds the label values Prometheus stores)".into());
        }

        let rc = &self.repeat_callers;
        let mut names = BTreeSet::new();
        for (i, rule) in rc.rules.iter().enumerate() {
            let key = |field: &str| format!("repeat_callers.rules[{i}].{field}");
            if rule.name.trim().is_empty() {
                err(key("name"), "every rule needs a name".into());
            } else if !rule.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                err(key("name"), format!("`{}` may use only letters, digits, - and _ (it becomes a metric label)", rule.name));
            } else if !names.insert(rule.name.as_str()) {
                err(key("name"), format!("`{}` is used by two rules; names must be unique", rule.name));
            }
            if rule.window <= Span::ZERO {
                err(key("window"), "must be longer than 0s".into());
            }
            if rule.min_calls < 1 {
                err(key("min_calls"), format!("is {}; it must be at least 1", rule.min_calls));
            } else if rule.min_calls > 100_000 {
                err(key("min_calls"), format!("is {}; it must be at most 100000", rule.min_calls));
            }
            if rule.severity == Severity::Info {
                err(key("severity"), "a repeat-caller rule must be low, medium or high".into());
            }
            if let Some(ch) = &rule.channels {
                if ch.is_empty() {
                    err(key("channels"), "an empty list would match no call; remove the key to match every channel".into());
                }
            }
        }
        for (i, n) in rc.exclude_numbers.iter().enumerate() {
            if !n.chars().any(|c| c.is_ascii_digit()) {
                err(format!("repeat_callers.exclude_numbers[{i}]"), "holds no digits".into());
            }
        }

        let mh = &self.mental_health;
        if !(0..=50).contains(&mh.negation_window) {
            err("mental_health.negation_window".into(), format!("is {}; it must be between 0 and 50 words", mh.negation_window));
        }
        for (i, cue) in mh.cues.iter().enumerate() {
            if cue.category.trim().is_empty() {
                err(format!("mental_health.cues[{i}].category"), "every cue needs a category".into());
            }
            if cue.phrases.is_empty() {
                err(format!("mental_health.cues[{i}].phrases"), "needs at least one phrase".into());
            }
            for (j, phrase) in cue.phrases.iter().enumerate() {
                if let Err(why) = crate::lexicon::check_phrase(phrase) {
                    err(format!("mental_health.cues[{i}].phrases[{j}]"), why);
                }
            }
            for (j, phrase) in cue.block.iter().enumerate() {
                if let Err(why) = crate::lexicon::check_phrase(phrase) {
                    err(format!("mental_health.cues[{i}].block[{j}]"), why);
                }
            }
            if let Some(b) = cue.block_within {
                if !(0..=50).contains(&b) {
                    err(
                        format!("mental_health.cues[{i}].block_within"),
                        format!("is {b}; it must be between 0 (anywhere in the note) and 50 words"),
                    );
                }
            }
        }
        let mut pattern_names = BTreeSet::new();
        for (i, pat) in mh.patterns.iter().enumerate() {
            let key = |field: &str| format!("mental_health.patterns[{i}].{field}");
            if pat.name.trim().is_empty() {
                err(key("name"), "every pattern needs a name".into());
            } else if !pattern_names.insert(pat.name.as_str()) {
                err(key("name"), format!("`{}` is used by two patterns; names must be unique", pat.name));
            }
            if pat.category.trim().is_empty() {
                err(key("category"), "every pattern needs a category".into());
            }
            if pat.near.is_empty() || pat.near.iter().any(Vec::is_empty) {
                err(key("near"), "needs one or more sets, each with at least one word or phrase".into());
            }
            for (j, set) in pat.near.iter().enumerate() {
                for (k, phrase) in set.iter().enumerate() {
                    if let Err(why) = crate::lexicon::check_phrase(phrase) {
                        err(format!("mental_health.patterns[{i}].near[{j}][{k}]"), why);
                    }
                }
            }
            for (j, phrase) in pat.block.iter().enumerate() {
                if let Err(why) = crate::lexicon::check_phrase(phrase) {
                    err(format!("mental_health.patterns[{i}].block[{j}]"), why);
                }
            }
            if !(0..=50).contains(&pat.within) {
                err(key("within"), format!("is {}; it must be between 0 (anywhere in the note) and 50 words", pat.within));
            }
            if let Some(b) = pat.block_within {
                if !(0..=50).contains(&b) {
                    err(key("block_within"), format!("is {b}; it must be between 0 (anywhere in the note) and 50 words"));
                }
            }
            if let Some(k) = pat.min_sets {
                if k < 1 || k as usize > pat.near.len() {
                    err(key("min_sets"), format!("is {k}; it must be between 1 and the number of sets ({})", pat.near.len()));
                }
            }
        }
        for (i, phrase) in mh.false_friends.iter().enumerate() {
            if let Err(why) = crate::lexicon::check_phrase(phrase) {
                err(format!("mental_health.false_friends[{i}]"), why);
            }
        }
        for (key, value) in [("model_threshold", mh.model_threshold), ("model_veto", mh.model_veto)] {
            if let Some(t) = value {
                if !(0.0..1.0).contains(&t) {
                    err(format!("mental_health.{key}"), format!("is {t}; it must be from 0 up to 1"));
                }
            }
        }
        if let Err(why) = mh.load_model() {
            err("mental_health.model".into(), why);
        }

        let mut users = BTreeSet::new();
        for (i, user) in self.desk.users.iter().enumerate() {
            if user.name.trim().is_empty() {
                err(format!("desk.users[{i}].name"), "every user needs a name".into());
            } else if !users.insert(user.name.as_str()) {
                err(format!("desk.users[{i}].name"), format!("`{}` is listed twice", user.name));
            }
            if !argon2::PasswordHash::new(&user.password_hash).is_ok_and(|h| h.algorithm.as_str().starts_with("argon2")) {
                err(
                    format!("desk.users[{i}].password_hash"),
                    "must be an argon2 hash in PHC form ($argon2id$v=19$...); make one with `lantern hash-password`".into(),
                );
            }
        }
        for (agency, value) in &self.desk.unit_savings {
            if !value.is_finite() || *value < 0.0 {
                err(format!("desk.unit_savings.{agency}"), format!("is {value}; it must be a non-negative amount in pounds"));
            }
        }
        p
    }

    /// The longest rule window: how far back history must reach.
    pub fn longest_window(&self) -> Span {
        self.repeat_callers.rules.iter().map(|r| r.window).max().unwrap_or(Span::ZERO)
    }

    /// The topic a kind of output goes to: `flags/repeat-caller`, `flags/mental-health`, `rejected`.
    pub fn topic(&self, suffix: &str) -> String {
        format!("{}/{suffix}", self.mqtt.topic_root)
    }

    /// The client id a service uses on the broker.
    pub fn client_id(&self, service: &str) -> String {
        format!("{}-{}", self.mqtt.client_id, service)
    }
}

#[cfg(test)]
mod tests;
