//! One file per section of `config/lantern.toml`: its struct, its defaults, and the checks
//! its values need beyond their types.

mod desk;
mod early_action;
mod mental_health;
mod repeat_callers;
mod retention;
mod service;

pub use desk::{DeskConfig, Saving, UserConfig, UsersFile};
pub use early_action::EarlyActionConfig;
pub use mental_health::{CueConfig, MentalHealthConfig, PatternConfig};
pub use repeat_callers::{RepeatCallersConfig, RuleConfig};
pub use retention::RetentionConfig;
pub(crate) use service::check_listen;
pub use service::{BrokerConfig, DatabaseConfig, DemandConfig, IngestConfig, ListenConfig, MqttConfig, PrivacyConfig};

use super::Problem;

/// Collects a section's problems under its key.
pub(crate) struct Checks<'a> {
    out: &'a mut Vec<Problem>,
}

impl<'a> Checks<'a> {
    pub(crate) fn new(out: &'a mut Vec<Problem>) -> Checks<'a> {
        Checks { out }
    }

    pub(crate) fn err(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.out.push(Problem::new(key, message));
    }

    /// Every phrase of `phrases` must be a valid lexicon phrase (`key[i]` names the bad one).
    pub(crate) fn phrases(&mut self, key: &str, phrases: &[String]) {
        for (i, phrase) in phrases.iter().enumerate() {
            if let Err(why) = crate::domain::text::check_phrase(phrase) {
                self.err(format!("{key}[{i}]"), why);
            }
        }
    }

    /// A word count such as a window or a reach: 0 to 50.
    pub(crate) fn words(&mut self, key: &str, n: i64, zero_means: &str) {
        if !(0..=50).contains(&n) {
            self.err(key, format!("is {n}; it must be between 0 ({zero_means}) and 50 words"));
        }
    }
}
