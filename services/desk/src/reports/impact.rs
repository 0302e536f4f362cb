//! The impact report (SPEC section 11). A referral puts a caller in the cohort from its
//! intervention date `t` (engaged, or the referral date until then); the report covers the
//! interventions dated in `[from, to)`. For each cohort caller whose whole after-window has
//! passed, distinct calls in `[t - window, t)` are compared with `[t, t + window)`; the same for
//! a comparison group: callers never referred who met a repeat-caller rule in the period,
//! aligned on the first date in the period they met one. A before/after fall on its own means
//! little for people chosen because they called most (they call less anyway: regression to
//! the mean); the difference from the comparison group is the figure to read.

use super::{round3, share, Period, Table};
use crate::store::ReferralRow;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// One group's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub callers: usize,
    pub calls_before: usize,
    pub calls_after: usize,
    /// `(after - before) / before`, three decimals; none when there were no calls before.
    pub change: Option<f64>,
}

/// A cohort caller whose after-window has not passed yet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pending {
    pub caller_ref: String,
    pub intervention_at: String,
    pub complete_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Impact {
    pub window: String,
    pub from: String,
    pub to: String,
    pub cohort: Group,
    pub comparison: Group,
    pub difference_in_differences: Option<f64>,
    /// Shares of (counted) cohort callers with each risk factor.
    pub risk_factors: BTreeMap<String, f64>,
    pub pending: Vec<Pending>,
    /// Comparison callers not counted yet for the same reason.
    pub comparison_pending: usize,
}

/// What the report is computed from.
pub struct Inputs<'a> {
    pub referrals: &'a [ReferralRow],
    /// Identities' first repeat-caller flag in the period: (caller ref, identity, when).
    pub first_flags: &'a [(String, String, i64)],
    /// Event times of each caller's calls, covering every window the report looks at.
    pub calls: &'a HashMap<String, Vec<i64>>,
    pub risk_factors: &'a [String],
}

/// Who the report looks at and from when: (cohort, comparison), each caller with its `t`.
pub fn members(
    referrals: &[ReferralRow],
    first_flags: &[(String, String, i64)],
    period: Period,
) -> (BTreeMap<String, i64>, BTreeMap<String, i64>) {
    let mut cohort: BTreeMap<String, i64> = BTreeMap::new();
    for r in referrals {
        let Some(caller) = &r.caller_ref else { continue };
        let t = r.intervention_ms();
        if (period.from_ms..period.to_ms).contains(&t) {
            let e = cohort.entry(caller.clone()).or_insert(t);
            *e = (*e).min(t);
        }
    }
    let referred: std::collections::HashSet<&str> = referrals.iter().filter_map(|r| r.caller_ref.as_deref()).collect();
    let mut comparison: BTreeMap<String, i64> = BTreeMap::new();
    for (caller, _, t) in first_flags {
        if referred.contains(caller.as_str()) || !(period.from_ms..period.to_ms).contains(t) {
            continue;
        }
        let e = comparison.entry(caller.clone()).or_insert(*t);
        *e = (*e).min(*t);
    }
    (cohort, comparison)
}

fn count_in(times: Option<&Vec<i64>>, from: i64, to: i64) -> usize {
    times.map(|v| v.iter().filter(|t| (from..to).contains(*t)).count()).unwrap_or(0)
}

/// Counts one group: callers whose after-window has passed, and the calls either side.
fn group(members: &BTreeMap<String, i64>, calls: &HashMap<String, Vec<i64>>, window: i64, now_ms: i64) -> (Group, Vec<(String, i64)>) {
    let (mut callers, mut before, mut after) = (0, 0, 0);
    let mut pending = Vec::new();
    for (caller, t) in members {
        if t + window > now_ms {
            pending.push((caller.clone(), *t));
            continue;
        }
        callers += 1;
        before += count_in(calls.get(caller), t - window, *t);
        after += count_in(calls.get(caller), *t, t + window);
    }
    let change = (before > 0).then(|| round3((after as f64 - before as f64) / before as f64));
    (Group { callers, calls_before: before, calls_after: after, change }, pending)
}

/// The report for `period`, `window` ms either side of each intervention, as of `now_ms`.
pub fn compute(inputs: &Inputs<'_>, period: Period, window: i64, now_ms: i64) -> Impact {
    let (cohort, comparison) = members(inputs.referrals, inputs.first_flags, period);
    let (c, pending) = group(&cohort, inputs.calls, window, now_ms);
    let (k, comparison_pending) = group(&comparison, inputs.calls, window, now_ms);
    let difference_in_differences = match (c.change, k.change) {
        (Some(a), Some(b)) => Some(round3(a - b)),
        _ => None,
    };
    let counted: Vec<&String> = cohort.iter().filter(|(_, t)| **t + window <= now_ms).map(|(c, _)| c).collect();
    let mut risk_factors = BTreeMap::new();
    for factor in inputs.risk_factors {
        let with = counted
            .iter()
            .filter(|caller| {
                inputs.referrals.iter().any(|r| {
                    r.caller_ref.as_deref() == Some(caller.as_str())
                        && (period.from_ms..period.to_ms).contains(&r.intervention_ms())
                        && r.risk_factors().contains(factor)
                })
            })
            .count();
        risk_factors.insert(factor.clone(), share(with as f64, counted.len() as f64).unwrap_or(0.0));
    }
    let text = lantern_shared::domain::clock::rfc3339_ms;
    Impact {
        window: lantern_shared::Span::from_millis(window).to_string(),
        from: period.from_text(),
        to: period.to_text(),
        cohort: c,
        comparison: k,
        difference_in_differences,
        risk_factors,
        pending: pending
            .into_iter()
            .map(|(caller_ref, t)| Pending { caller_ref, intervention_at: text(t), complete_at: text(t + window) })
            .collect(),
        comparison_pending: comparison_pending.len(),
    }
}

/// Reads what the report needs and computes it.
pub async fn report(
    db: &lantern_shared::store::Db,
    period: Period,
    window: i64,
    risk_factors: &[String],
    now_ms: i64,
) -> Result<Impact, sqlx::Error> {
    let referrals = crate::store::all_referrals(db).await?;
    let first_flags = lantern_flagger::store::first_repeat_flags(db, period.from_ms, period.to_ms).await?;
    let (cohort, comparison) = members(&referrals, &first_flags, period);
    let refs: Vec<&str> = cohort.keys().chain(comparison.keys()).map(String::as_str).collect();
    let calls = lantern_flagger::store::call_times(db, &refs, period.from_ms - window, period.to_ms + window).await?;
    Ok(compute(&Inputs { referrals: &referrals, first_flags: &first_flags, calls: &calls, risk_factors }, period, window, now_ms))
}

fn show(v: Option<f64>) -> String {
    v.map(|x| format!("{:+.1}%", x * 100.0)).unwrap_or_else(|| "–".into())
}

/// The report as tables: the two groups, then risk factors, then pending callers.
pub fn tables(r: &Impact) -> Vec<(String, Table)> {
    let mut groups = Table::new(&["group", "callers", "calls before", "calls after", "change"]);
    for (name, g) in [("cohort (referred)", &r.cohort), ("comparison (not referred)", &r.comparison)] {
        groups.rows.push(vec![name.into(), g.callers.to_string(), g.calls_before.to_string(), g.calls_after.to_string(), show(g.change)]);
    }
    groups.rows.push(vec![
        "difference in differences".into(),
        String::new(),
        String::new(),
        String::new(),
        show(r.difference_in_differences),
    ]);
    let mut factors = Table::new(&["risk factor", "share of cohort callers"]);
    for (f, s) in &r.risk_factors {
        factors.rows.push(vec![f.clone(), format!("{:.1}%", s * 100.0)]);
    }
    let mut pending = Table::new(&["caller", "intervention", "after-window complete"]);
    for p in &r.pending {
        pending.rows.push(vec![p.caller_ref.clone(), p.intervention_at.clone(), p.complete_at.clone()]);
    }
    vec![
        (format!("Impact of early action, interventions {} to {} ({} either side)", r.from, r.to, r.window), groups),
        ("Risk factors".into(), factors),
        (format!("Pending ({} cohort callers; {} comparison callers also wait)", r.pending.len(), r.comparison_pending), pending),
    ]
}
