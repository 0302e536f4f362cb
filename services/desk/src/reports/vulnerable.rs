//! The vulnerable-callers list (SPEC section 11): the period's most frequent callers, by caller
//! reference only, with the rules they met, their flags, risk factors and referral status.
//! Exporting it is a disclosure: the caller of [`report`] audits it.

use super::{Period, Table};
use lantern_shared::domain::flag::{FlagMessage, Reasons};
use lantern_shared::store::Db;
use serde::Serialize;
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Caller {
    pub caller_ref: String,
    pub identity: String,
    pub calls: i64,
    pub rules: Vec<String>,
    pub flags: usize,
    pub risk_factors: Vec<String>,
    pub referral_status: String,
    pub team: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Vulnerable {
    pub from: String,
    pub to: String,
    pub callers: Vec<Caller>,
}

pub async fn report(db: &Db, period: Period, limit: i64) -> Result<Vulnerable, sqlx::Error> {
    let top = lantern_flagger::store::most_frequent(db, period.from_ms, period.to_ms, limit).await?;
    let refs: Vec<&str> = top.iter().map(|t| t.0.as_str()).collect();
    let referrals = crate::store::latest_referrals(db, &refs).await?;
    let mut callers = Vec::new();
    for (caller_ref, identity, calls) in &top {
        let flags: Vec<_> = crate::store::caller_flags(db, caller_ref, 1000)
            .await?
            .into_iter()
            .filter(|f| (period.from_ms..period.to_ms).contains(&f.raised_ms))
            .collect();
        let mut rules = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for f in &flags {
            let Ok(m) = FlagMessage::parse(f.payload.as_bytes()) else { continue };
            match &m.reasons {
                Reasons::Rules(r) => rules.extend(r.iter().map(|r| r.rule.clone())),
                Reasons::Cues(cues) => {
                    for c in cues.iter().filter(|c| !c.negated) {
                        seen.insert(match c.category.as_str() {
                            "alcohol" | "drugs" => c.category.clone(),
                            _ => "mental_health".to_string(),
                        });
                    }
                }
            }
        }
        let referral = referrals.get(caller_ref);
        let risk_factors: Vec<String> = match referral {
            Some(r) => r.risk_factors(),
            None => seen.into_iter().collect(),
        };
        callers.push(Caller {
            caller_ref: caller_ref.clone(),
            identity: identity.clone(),
            calls: *calls,
            rules: rules.into_iter().collect(),
            flags: flags.len(),
            risk_factors,
            referral_status: referral.map(|r| r.status.clone()).unwrap_or_else(|| "none".into()),
            team: referral.map(|r| r.team.clone()),
        });
    }
    Ok(Vulnerable { from: period.from_text(), to: period.to_text(), callers })
}

pub fn tables(r: &Vulnerable) -> Vec<(String, Table)> {
    let mut t = Table::new(&["caller_ref", "identity", "calls", "rules met", "flags", "risk factors", "referral", "team"]);
    for c in &r.callers {
        t.rows.push(vec![
            c.caller_ref.clone(),
            c.identity.clone(),
            c.calls.to_string(),
            c.rules.join("; "),
            c.flags.to_string(),
            c.risk_factors.join("; "),
            c.referral_status.clone(),
            c.team.clone().unwrap_or_default(),
        ]);
    }
    vec![(format!("Most frequent callers, {} to {}", r.from, r.to), t)]
}
