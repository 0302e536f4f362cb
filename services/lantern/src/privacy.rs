//! `lantern subject-access`, `lantern erase` and `lantern audit verify` (SPEC section 10).
//! The number is read from the command line, turned into its pseudonym at once, and never
//! written anywhere: not to the output, the log or the audit entry.

use anyhow::{bail, Context};
use lantern_desk::privacy::{self, Request};
use lantern_shared::domain::ingest::IngestContext;
use lantern_shared::domain::mask::mask;
use lantern_shared::domain::pseudonym::Pseudonymizer;
use lantern_shared::store::Db;
use lantern_shared::{Clock, Config};
use std::path::Path;
use std::process::ExitCode;

/// Whom a request is about: a phone number, an address id, or both.
pub struct Subject<'a> {
    pub number: Option<&'a str>,
    pub address: Option<&'a str>,
}

/// The config, the database and the pseudonym key (made if there is none yet, as `run` does).
pub async fn open(config_path: &Path) -> anyhow::Result<(Config, Db, IngestContext)> {
    let config = Config::load(config_path).map_err(|p| anyhow::anyhow!("{}: {p}", config_path.display()))?;
    let key = Pseudonymizer::load_or_create(&config.privacy.key_file)?;
    let ingest = IngestContext::new(key, &config.ingest.default_region, config.ingest.max_future_skew.millis());
    let db = Db::connect(&config.database.url).await.context("database")?;
    Ok((config, db, ingest))
}

/// The caller references of a subject: its number's and its address's.
pub fn refs(ingest: &IngestContext, subject: &Subject<'_>) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    if let Some(n) = subject.number {
        match ingest.phone_ref(n) {
            Some(r) => out.push(r.to_string()),
            None => bail!("--number holds no digits"),
        }
    }
    if let Some(a) = subject.address.map(str::trim).filter(|a| !a.is_empty()) {
        out.push(ingest.pseudonymizer.address(a).to_string());
    }
    if out.is_empty() {
        bail!("say whom: --number N (a phone number, in any format) and/or --address ID (an address id)");
    }
    Ok(out)
}

/// Who runs the command, as the audit log names them.
pub fn operator() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

fn checked_reason(reason: &str) -> anyhow::Result<String> {
    let reason = mask(reason.trim());
    if reason.is_empty() {
        bail!("--reason is required: the request's reference, say; it is written to the audit log");
    }
    Ok(reason)
}

fn run<T>(what: &str, f: impl std::future::Future<Output = anyhow::Result<T>>) -> Result<T, ExitCode> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("{what}: {e}");
        ExitCode::FAILURE
    })?;
    runtime.block_on(f).map_err(|e| {
        eprintln!("{what}: {e:#}");
        ExitCode::FAILURE
    })
}

/// `lantern subject-access`: every record held about the subject, as JSON on standard output.
pub fn subject_access(config_path: &Path, subject: &Subject<'_>, reason: &str) -> ExitCode {
    let result = run("subject access", async {
        let reason = checked_reason(reason)?;
        let (_, db, ingest) = open(config_path).await?;
        let refs = refs(&ingest, subject)?;
        let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
        let user = operator();
        let who = Request { user: &user, role: "cli", reason: &reason, now_ms: Clock::System.now_ms() };
        let records = privacy::subject_access(&db, &refs, &who).await?;
        db.close().await;
        Ok(records)
    });
    match result {
        Ok(records) => {
            println!("{}", serde_json::to_string_pretty(&records).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `lantern erase`: erases every record about the subject; running services forget it too.
pub fn erase(config_path: &Path, subject: &Subject<'_>, reason: &str) -> ExitCode {
    let result = run("erase", async {
        let reason = checked_reason(reason)?;
        let (_, db, ingest) = open(config_path).await?;
        let refs = refs(&ingest, subject)?;
        let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
        let user = operator();
        let who = Request { user: &user, role: "cli", reason: &reason, now_ms: Clock::System.now_ms() };
        let erased = privacy::erase(&db, &refs, &who).await?;
        db.close().await;
        Ok(erased)
    });
    match result {
        Ok(e) => {
            println!("erased {} calls and {} flags ({} rows); running services forget them within seconds", e.calls, e.flags, e.rows);
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `lantern audit verify`: walks the audit log's hash chain; exit 1 at the first broken link.
pub fn audit_verify(config_path: &Path) -> ExitCode {
    let result = run("audit verify", async {
        let (_, db, _) = open(config_path).await?;
        let found = lantern_desk::store::verify_audit(&db).await?;
        db.close().await;
        Ok(found)
    });
    match result {
        Ok(v) => match v.first_break {
            None => {
                let unsealed = if v.unsealed > 0 {
                    format!(" ({} written before the chain began; the desk seals them when it starts)", v.unsealed)
                } else {
                    String::new()
                };
                println!("audit log intact: {} entries, every link checked{unsealed}", v.entries);
                ExitCode::SUCCESS
            }
            Some(b) => {
                println!(
                    "audit log BROKEN at entry {} ({}): {}. Entries before it check out.",
                    b.id,
                    lantern_shared::domain::clock::rfc3339_ms(b.at_ms),
                    b.why
                );
                ExitCode::FAILURE
            }
        },
        Err(code) => code,
    }
}
