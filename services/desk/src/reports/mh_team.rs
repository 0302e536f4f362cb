//! The mental-health team report (SPEC section 11): per day and in total, mental-health flags,
//! face-to-face outcomes and section 136 detentions avoided; and what they saved, laid out as a
//! constabulary's board report does (rows: avoided section 136, other efficiencies, total;
//! columns: police £, police hours, ambulance £, A&E £, total £). Savings per event come from
//! `desk.unit_savings`; "other efficiencies" are face-to-face contacts at each agency's
//! `other_pounds` and `other_hours`.

use super::{day_start, day_text, Period, Table};
use lantern_shared::config::Saving;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Day {
    pub date: String,
    pub mental_health_flags: usize,
    pub face_to_face: usize,
    pub s136_avoided: usize,
}

/// One row of the savings table: pounds by agency, police hours, total pounds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Savings {
    pub row: String,
    pub pounds: BTreeMap<String, f64>,
    pub police_hours: f64,
    pub total_pounds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MhTeam {
    pub from: String,
    pub to: String,
    pub days: Vec<Day>,
    pub total: Day,
    /// Mean mental-health flags and face-to-face contacts per day over the period.
    pub per_day: BTreeMap<String, f64>,
    pub savings: Vec<Savings>,
}

/// Computes the report from the flags raised or closed in the period: (kind, raised, outcome, closed).
pub fn compute(flags: &[(String, i64, Option<String>, Option<i64>)], period: Period, unit_savings: &BTreeMap<String, Saving>) -> MhTeam {
    let mut days: BTreeMap<i64, Day> = BTreeMap::new();
    let mut day = day_start(period.from_ms);
    while day < period.to_ms {
        days.insert(day, Day { date: day_text(day), ..Day::default() });
        day += 86_400_000;
    }
    let within = |ms: i64| (period.from_ms..period.to_ms).contains(&ms);
    for (kind, raised, outcome, closed) in flags {
        if kind == "mental_health" && within(*raised) {
            if let Some(d) = days.get_mut(&day_start(*raised)) {
                d.mental_health_flags += 1;
            }
        }
        if let (Some(outcome), Some(closed)) = (outcome, closed) {
            if within(*closed) {
                if let Some(d) = days.get_mut(&day_start(*closed)) {
                    match outcome.as_str() {
                        "face_to_face" => d.face_to_face += 1,
                        "s136_avoided" => d.s136_avoided += 1,
                        _ => {}
                    }
                }
            }
        }
    }
    let days: Vec<Day> = days.into_values().collect();
    let total = Day {
        date: "total".into(),
        mental_health_flags: days.iter().map(|d| d.mental_health_flags).sum(),
        face_to_face: days.iter().map(|d| d.face_to_face).sum(),
        s136_avoided: days.iter().map(|d| d.s136_avoided).sum(),
    };
    let n = days.len().max(1) as f64;
    let per_day = BTreeMap::from([
        ("mental_health_flags".to_string(), super::round3(total.mental_health_flags as f64 / n)),
        ("face_to_face".to_string(), super::round3(total.face_to_face as f64 / n)),
        ("s136_avoided".to_string(), super::round3(total.s136_avoided as f64 / n)),
    ]);
    let row = |name: &str, count: usize, pounds: fn(Saving) -> f64, hours: fn(Saving) -> f64| {
        let by_agency: BTreeMap<String, f64> = unit_savings.iter().map(|(a, s)| (a.clone(), pounds(*s) * count as f64)).collect();
        let police_hours = unit_savings.get("police").map(|s| hours(*s) * count as f64).unwrap_or(0.0);
        Savings { row: name.into(), total_pounds: by_agency.values().sum(), pounds: by_agency, police_hours }
    };
    let s136 = row("avoided section 136", total.s136_avoided, Saving::pounds, Saving::hours);
    let other = row("other efficiencies", total.face_to_face, Saving::other_pounds, Saving::other_hours);
    let total_row = Savings {
        row: "total".into(),
        pounds: s136.pounds.iter().map(|(a, p)| (a.clone(), p + other.pounds.get(a).copied().unwrap_or(0.0))).collect(),
        police_hours: s136.police_hours + other.police_hours,
        total_pounds: s136.total_pounds + other.total_pounds,
    };
    MhTeam { from: period.from_text(), to: period.to_text(), days, total, per_day, savings: vec![s136, other, total_row] }
}

pub async fn report(
    db: &lantern_shared::store::Db,
    period: Period,
    unit_savings: &BTreeMap<String, Saving>,
) -> Result<MhTeam, sqlx::Error> {
    let flags = crate::store::flags_between(db, period.from_ms, period.to_ms).await?;
    Ok(compute(&flags, period, unit_savings))
}

fn agency_title(a: &str) -> String {
    match a {
        "emergency_department" => "A&E".into(),
        other => {
            let mut c = other.chars();
            c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default().replace('_', " ")
        }
    }
}

pub fn tables(r: &MhTeam) -> Vec<(String, Table)> {
    let mut savings_header: Vec<String> = Vec::new();
    let agencies: Vec<&String> = {
        let mut a: Vec<&String> = r.savings[0].pounds.keys().collect();
        // Police first, then ambulance and A&E, then any others, as the board report orders them.
        let rank = |x: &str| match x {
            "police" => 0,
            "ambulance" => 1,
            "emergency_department" => 2,
            _ => 3,
        };
        a.sort_by_key(|x| (rank(x), x.to_string()));
        a
    };
    savings_header.push(String::new());
    for a in &agencies {
        savings_header.push(format!("{} £", agency_title(a)));
        if a.as_str() == "police" {
            savings_header.push("Police hours".into());
        }
    }
    savings_header.push("Total £".into());
    let mut savings = Table { header: savings_header, rows: Vec::new() };
    for s in &r.savings {
        let mut row = vec![s.row.clone()];
        for a in &agencies {
            row.push(format!("{:.0}", s.pounds.get(*a).copied().unwrap_or(0.0)));
            if a.as_str() == "police" {
                row.push(format!("{:.1}", s.police_hours));
            }
        }
        row.push(format!("{:.0}", s.total_pounds));
        savings.rows.push(row);
    }
    let mut days = Table::new(&["date", "mental-health flags", "face-to-face", "section 136 avoided"]);
    for d in r.days.iter().chain(std::iter::once(&r.total)) {
        days.rows.push(vec![d.date.clone(), d.mental_health_flags.to_string(), d.face_to_face.to_string(), d.s136_avoided.to_string()]);
    }
    vec![(format!("Mental-health team, {} to {}: savings", r.from, r.to), savings), ("Per day".into(), days)]
}
