//! The Home Office's 999 figures, month by month (as police.uk publishes them per force): the
//! share of 999 calls answered within 10 seconds, in 10 to 60 seconds and after more than 60,
//! and the mean time to answer. Demand keeps the answer times (`demand_call_times`).

use super::{round3, Period, Table};
use chrono::{Datelike, TimeZone, Utc};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Month {
    pub month: String,
    pub answered: usize,
    pub within_10s: Option<f64>,
    pub within_10_to_60s: Option<f64>,
    pub over_60s: Option<f64>,
    pub mean_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Demand {
    pub from: String,
    pub to: String,
    pub channel: String,
    pub months: Vec<Month>,
}

/// From 999 calls' (first seen, offered, answered) times.
pub fn compute(calls: &[(i64, Option<i64>, Option<i64>)], period: Period) -> Demand {
    let mut months: std::collections::BTreeMap<String, Vec<f64>> = std::collections::BTreeMap::new();
    let month_of = |ms: i64| Utc.timestamp_millis_opt(ms).single().map(|t| format!("{:04}-{:02}", t.year(), t.month())).unwrap_or_default();
    let mut m = period.from_ms;
    while m < period.to_ms {
        months.entry(month_of(m)).or_default();
        m += 86_400_000;
    }
    for (first, offered, answered) in calls {
        if let (Some(o), Some(a)) = (offered, answered) {
            months.entry(month_of(*first)).or_default().push(((a - o).max(0)) as f64 / 1000.0);
        }
    }
    let months = months
        .into_iter()
        .map(|(month, secs)| {
            let n = secs.len();
            let part = |f: &dyn Fn(f64) -> bool| super::share(secs.iter().filter(|s| f(**s)).count() as f64, n as f64);
            Month {
                month,
                answered: n,
                within_10s: part(&|s| s <= 10.0),
                within_10_to_60s: part(&|s| s > 10.0 && s <= 60.0),
                over_60s: part(&|s| s > 60.0),
                mean_seconds: (n > 0).then(|| round3(secs.iter().sum::<f64>() / n as f64)),
            }
        })
        .collect();
    Demand { from: period.from_text(), to: period.to_text(), channel: "999".into(), months }
}

pub async fn report(db: &lantern_shared::store::Db, period: Period) -> Result<Demand, sqlx::Error> {
    let calls = crate::store::demand_answer_times(db, "999", period.from_ms, period.to_ms).await?;
    Ok(compute(&calls, period))
}

pub fn tables(r: &Demand) -> Vec<(String, Table)> {
    let pct = |v: Option<f64>| v.map(|x| format!("{:.1}%", x * 100.0)).unwrap_or_else(|| "–".into());
    let mut t = Table::new(&["month", "999 calls answered", "within 10 s", "10 to 60 s", "over 60 s", "mean time to answer (s)"]);
    for m in &r.months {
        t.rows.push(vec![
            m.month.clone(),
            m.answered.to_string(),
            pct(m.within_10s),
            pct(m.within_10_to_60s),
            pct(m.over_60s),
            m.mean_seconds.map(|s| format!("{s:.1}")).unwrap_or_else(|| "–".into()),
        ]);
    }
    vec![(format!("999 calls answered, {} to {}", r.from, r.to), t)]
}
