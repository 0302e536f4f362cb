//! `lantern report impact|mh-team|vulnerable-callers|demand --config FILE [--from D] [--to D]
//! [--format md|csv|json]` (SPEC sections 9 and 11). Printing the vulnerable-callers list is a
//! disclosure and is written to the audit log.

use crate::privacy::operator;
use lantern_desk::reports::{self, Format, Kind, Period};
use lantern_desk::store::{self, AuditEntry};
use lantern_shared::store::Db;
use lantern_shared::{Clock, Config};
use std::path::Path;
use std::process::ExitCode;

pub fn parse_kind(s: &str) -> Result<Kind, String> {
    match s {
        "impact" => Ok(Kind::Impact),
        "mh-team" => Ok(Kind::MhTeam),
        "vulnerable-callers" => Ok(Kind::VulnerableCallers),
        "demand" => Ok(Kind::Demand),
        other => Err(format!("`{other}` is not a report; reports: impact, mh-team, vulnerable-callers, demand")),
    }
}

pub fn main(kind: Kind, config_path: &Path, from: Option<&str>, to: Option<&str>, format: &str) -> ExitCode {
    let result = (|| -> anyhow::Result<String> {
        let config = Config::load(config_path).map_err(|p| anyhow::anyhow!("{}: {p}", config_path.display()))?;
        let format = Format::parse(format).map_err(anyhow::Error::msg)?;
        let now = Clock::System.now_ms();
        let default_days = match kind {
            Kind::Impact | Kind::Demand => 365,
            Kind::MhTeam | Kind::VulnerableCallers => 30,
        };
        let period = Period::from_bounds(from, to, now, default_days).map_err(anyhow::Error::msg)?;
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async {
            let db = Db::connect(&config.database.url).await?;
            let out = reports::write(&db, kind, period, format, &config, now).await?;
            if kind == Kind::VulnerableCallers {
                let who = operator();
                let reason = format!("{} to {}", period.from_text(), period.to_text());
                let entry = AuditEntry {
                    at_ms: now,
                    user: &who,
                    role: "cli",
                    action: "export_vulnerable_callers",
                    target: "report",
                    reason: Some(&reason),
                };
                let mut tx = db.begin().await?;
                store::audit(&mut tx, &entry).await?;
                tx.commit().await?;
            }
            db.close().await;
            Ok(out)
        })
    })();
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lantern report: {e:#}");
            ExitCode::FAILURE
        }
    }
}
