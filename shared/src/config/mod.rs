//! The one config file every part of Lantern reads (SPEC section 8).
//!
//! The schema is the types: one file per section under `sections/` holds its struct, its
//! defaults and the checks its values need. Loading is two steps: [`Config::parse`] turns TOML
//! into typed values (a key the types do not take is an unknown key, found by serde itself), then
//! [`Config::validate`] checks every section. Both report every problem they find with the key it
//! concerns, so `lantern check-config` can list them all. What needs a restart is a type of its
//! own, [`RestartOnly`].

pub mod diff;
pub mod model_file;
mod problems;
pub mod reload;
mod restart;
mod sections;

pub use problems::{Problem, Problems};
pub use restart::RestartOnly;
pub use sections::{
    BrokerConfig, CueConfig, DatabaseConfig, DemandConfig, DeskConfig, EarlyActionConfig, IngestConfig, ListenConfig, MentalHealthConfig,
    MqttConfig, PatternConfig, PrivacyConfig, RepeatCallersConfig, RetentionConfig, RuleConfig, Saving, UserConfig, UsersFile,
};

use crate::domain::Span;
use sections::Checks;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The shipped config file; its `[mental_health]` section is the default for files without one.
pub const SHIPPED: &str = include_str!("../../../config/lantern.toml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
    pub early_action: EarlyActionConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mqtt: MqttConfig::default(),
            broker: BrokerConfig::default(),
            database: DatabaseConfig::default(),
            ingest: IngestConfig::default(),
            privacy: PrivacyConfig::default(),
            flagger: ListenConfig::flagger(),
            demand: DemandConfig::default(),
            repeat_callers: RepeatCallersConfig::default(),
            mental_health: MentalHealthConfig::default(),
            desk: DeskConfig::default(),
            retention: RetentionConfig::default(),
            early_action: EarlyActionConfig::default(),
        }
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
        let mut problems = Vec::new();
        // A config read from a file takes in its users file too (text alone does not).
        if base.is_some() {
            match UsersFile::read(&config.desk.users_file) {
                Ok(file) => {
                    for u in file.users {
                        if config.desk.users.iter().any(|m| m.name == u.name) {
                            problems.push(Problem::new(
                                "desk.users_file",
                                format!("user `{}` is also in [[desk.users]] of the main file; keep each user in one place", u.name),
                            ));
                        }
                        config.desk.users.push(u);
                    }
                }
                Err(e) => problems.push(Problem::new("desk.users_file", e)),
            }
        }
        problems.extend(config.validate());
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(Problems::from_vec(problems).with_lines(text))
        }
    }

    /// Typed parse only. Every key the types do not take is reported, with wrong types for the
    /// sections without one; unknown keys are fixed first, then values are checked.
    pub fn parse(text: &str) -> Result<Config, Problems> {
        let table: toml::Table = toml::from_str(text).map_err(|e| Problems::one(Problem::syntax(text, &e)))?;
        let mut problems = Vec::new();
        // Each section is read on its own, so a bad value in one does not hide another's.
        for (section, value) in &table {
            let mut single = toml::Table::new();
            single.insert(section.clone(), value.clone());
            let mut unknown = Vec::new();
            let read: Result<Config, _> = serde_ignored::deserialize(toml::Value::Table(single), |path| unknown.push(path.to_string()));
            if unknown.is_empty() {
                if let Err(e) = read {
                    problems.push(Problem::value(section, &e));
                }
            }
            problems.extend(unknown.into_iter().map(|path| Problem::unknown_key(&path)));
        }
        if !problems.is_empty() {
            return Err(Problems::from_vec(problems).with_lines(text));
        }
        toml::Value::Table(table).try_into::<Config>().map_err(|e| Problems::one(Problem::value("", &e)).with_lines(text))
    }

    /// Checks values that types alone cannot: ranges, names, references between keys.
    pub fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut c = Checks::new(&mut out);
        self.mqtt.check(&mut c);
        for (key, addr) in
            [("broker.listen", &self.broker.listen), ("flagger.listen", &self.flagger.listen), ("demand.listen", &self.demand.listen)]
        {
            sections::check_listen(&mut c, key, addr);
        }
        self.database.check(&mut c);
        self.ingest.check(&mut c);
        self.privacy.check(&mut c);
        self.demand.check(&mut c);
        self.repeat_callers.check(&mut c);
        self.mental_health.check(&mut c);
        self.desk.check(&mut c);
        self.retention.check(&mut c, self.longest_window(), self.repeat_callers.cooldown);
        self.early_action.check(&mut c);
        out
    }

    /// The longest rule window: how far back history must reach.
    pub fn longest_window(&self) -> Span {
        self.repeat_callers.longest_window()
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
