//! `[repeat_callers]`: the rules of SPEC section 3, with the FreCaNN defaults.

use super::Checks;
use crate::domain::{AgeBand, Channel, Identity, Severity, Span};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RepeatCallersConfig {
    pub cooldown: Span,
    pub exclude_numbers: Vec<String>,
    pub exclude_addresses: Vec<String>,
    pub merge_within: Span,
    pub rules: Vec<RuleConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

impl Default for RepeatCallersConfig {
    /// The ambulance services' frequent-caller definition (FreCaNN) and an acute rule.
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

impl RepeatCallersConfig {
    pub(crate) fn check(&self, c: &mut Checks<'_>) {
        let mut names = BTreeSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let key = |field: &str| format!("repeat_callers.rules[{i}].{field}");
            if rule.name.trim().is_empty() {
                c.err(key("name"), "every rule needs a name");
            } else if !rule.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                c.err(key("name"), format!("`{}` may use only letters, digits, - and _ (it becomes a metric label)", rule.name));
            } else if !names.insert(rule.name.as_str()) {
                c.err(key("name"), format!("`{}` is used by two rules; names must be unique", rule.name));
            }
            if rule.window <= Span::ZERO {
                c.err(key("window"), "must be longer than 0s");
            }
            if rule.min_calls < 1 {
                c.err(key("min_calls"), format!("is {}; it must be at least 1", rule.min_calls));
            } else if rule.min_calls > 100_000 {
                c.err(key("min_calls"), format!("is {}; it must be at most 100000", rule.min_calls));
            }
            if rule.severity == Severity::Info {
                c.err(key("severity"), "a repeat-caller rule must be low, medium or high");
            }
            if rule.channels.as_ref().is_some_and(Vec::is_empty) {
                c.err(key("channels"), "an empty list would match no call; remove the key to match every channel");
            }
        }
        for (i, n) in self.exclude_numbers.iter().enumerate() {
            if !n.chars().any(|c| c.is_ascii_digit()) {
                c.err(format!("repeat_callers.exclude_numbers[{i}]"), "holds no digits");
            }
        }
    }

    /// The longest rule window: how far back history must reach.
    pub fn longest_window(&self) -> Span {
        self.rules.iter().map(|r| r.window).max().unwrap_or(Span::ZERO)
    }
}
