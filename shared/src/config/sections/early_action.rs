//! `[early_action]`: the teams callers are referred to, the risk factors recorded, and the
//! window the impact report compares before and after an intervention (SPEC section 11).

use super::Checks;
use crate::domain::Span;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EarlyActionConfig {
    /// The early-action teams a nurse can refer a caller to.
    pub teams: Vec<String>,
    /// The risk factors a referral records (the impact report gives each one's share).
    pub risk_factors: Vec<String>,
    /// Calls in this long before an intervention are compared with this long after.
    pub impact_window: Span,
}

impl Default for EarlyActionConfig {
    fn default() -> Self {
        EarlyActionConfig {
            teams: vec!["early-action".into()],
            risk_factors: ["mental_health", "alcohol", "drugs", "domestic_abuse", "housing", "loneliness", "dementia", "self_harm"]
                .into_iter()
                .map(String::from)
                .collect(),
            impact_window: Span::from_days(90),
        }
    }
}

impl EarlyActionConfig {
    pub(crate) fn check(&self, c: &mut Checks<'_>) {
        for (key, names) in [("early_action.teams", &self.teams), ("early_action.risk_factors", &self.risk_factors)] {
            if names.is_empty() {
                c.err(key, "needs at least one name");
            }
            let mut seen = BTreeSet::new();
            for (i, n) in names.iter().enumerate() {
                if n.trim().is_empty() || n.chars().count() > 64 || n.chars().any(char::is_control) {
                    c.err(format!("{key}[{i}]"), "must be 1 to 64 characters");
                } else if !seen.insert(n.as_str()) {
                    c.err(format!("{key}[{i}]"), format!("`{n}` is listed twice"));
                }
            }
        }
        let days = self.impact_window.millis() / 86_400_000;
        if !(7..=365).contains(&days) {
            c.err("early_action.impact_window", format!("is {}; it must be between 7d and 365d", self.impact_window));
        }
    }
}
