//! The reports of SPEC section 11, computed from the database for a period, as JSON, CSV or
//! Markdown: the impact of early action against a comparison group ([`impact`]), the
//! mental-health team's figures ([`mh_team`]), the month's most frequent callers
//! ([`vulnerable`]) and the Home Office's 999 answer-time figures ([`demand`]). The same code
//! serves `lantern report` and the desk's routes.

pub mod demand;
pub mod impact;
pub mod mh_team;
pub mod vulnerable;

use chrono::{DateTime, NaiveDate, Utc};

/// A report's period `[from, to)`, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from_ms: i64,
    pub to_ms: i64,
}

/// Reads a period bound: a date (`YYYY-MM-DD`, midnight UTC) or an RFC 3339 time.
pub fn parse_bound(key: &str, text: &str) -> Result<i64, String> {
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis()).unwrap_or(0));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("{key} `{}` must be a date (2026-11-01) or an RFC 3339 time", lantern_shared::domain::mask::mask(text)))
}

impl Period {
    /// The period from optional bounds; without them, the `default_days` up to `now_ms`.
    pub fn from_bounds(from: Option<&str>, to: Option<&str>, now_ms: i64, default_days: i64) -> Result<Period, String> {
        let to_ms = match to.filter(|t| !t.is_empty()) {
            Some(t) => parse_bound("to", t)?,
            None => now_ms,
        };
        let from_ms = match from.filter(|f| !f.is_empty()) {
            Some(f) => parse_bound("from", f)?,
            None => to_ms - default_days * 86_400_000,
        };
        if from_ms >= to_ms {
            return Err("from must be before to".into());
        }
        Ok(Period { from_ms, to_ms })
    }

    pub fn from_text(&self) -> String {
        lantern_shared::domain::clock::rfc3339_ms(self.from_ms)
    }

    pub fn to_text(&self) -> String {
        lantern_shared::domain::clock::rfc3339_ms(self.to_ms)
    }
}

/// How a report is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Csv,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "md" | "markdown" => Ok(Format::Markdown),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            other => Err(format!("format `{}` must be md, csv or json", lantern_shared::domain::mask::mask(other))),
        }
    }
}

/// A table: a header row and rows, as a report writes it in Markdown or CSV.
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table { header: header.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    pub fn markdown(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.iter().map(|c| c.replace('|', "/")).collect::<Vec<_>>().join(" | "));
        let mut out = line(&self.header);
        out.push_str(&format!("|{}\n", "---|".repeat(self.header.len())));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }

    pub fn csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let _ = w.write_record(&self.header);
        for r in &self.rows {
            let _ = w.write_record(r);
        }
        String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
    }
}

/// A share rounded as the reports print it (three decimals), or none.
pub fn share(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| round3(part / whole))
}

pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Midnight UTC of the day holding `ms`.
pub fn day_start(ms: i64) -> i64 {
    ms.div_euclid(86_400_000) * 86_400_000
}

pub fn day_text(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_default()
}

/// A report written out: JSON as computed, or its tables in Markdown or CSV (each table after
/// a line naming it; CSV readers take them one at a time).
pub fn render<T: serde::Serialize>(format: Format, report: &T, tables: Vec<(String, Table)>) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(report).unwrap_or_default() + "\n",
        Format::Markdown => tables.iter().map(|(title, t)| format!("## {title}\n\n{}\n", t.markdown())).collect::<Vec<_>>().join("\n"),
        Format::Csv => tables.iter().map(|(title, t)| format!("{}\n{}", csv_title(title), t.csv())).collect::<Vec<_>>().join("\n"),
    }
}

fn csv_title(title: &str) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([title]);
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default().trim_end().to_string()
}

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Impact,
    MhTeam,
    VulnerableCallers,
    Demand,
}

/// Computes a report and writes it out. The vulnerable-callers list is a disclosure: the
/// caller audits it.
pub async fn write(
    db: &lantern_shared::store::Db,
    kind: Kind,
    period: Period,
    format: Format,
    config: &lantern_shared::Config,
    now_ms: i64,
) -> Result<String, sqlx::Error> {
    Ok(match kind {
        Kind::Impact => {
            let r =
                impact::report(db, period, config.early_action.impact_window.millis(), &config.early_action.risk_factors, now_ms).await?;
            render(format, &r, impact::tables(&r))
        }
        Kind::MhTeam => {
            let r = mh_team::report(db, period, &config.desk.unit_savings).await?;
            render(format, &r, mh_team::tables(&r))
        }
        Kind::VulnerableCallers => {
            let r = vulnerable::report(db, period, 50).await?;
            render(format, &r, vulnerable::tables(&r))
        }
        Kind::Demand => {
            let r = demand::report(db, period).await?;
            render(format, &r, demand::tables(&r))
        }
    })
}
