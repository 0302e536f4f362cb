//! The `lantern` command's subcommands, callable from tests.

pub mod allocator;
pub mod demo;
pub mod privacy;
pub mod report;
pub mod run;
pub mod simulate;
pub mod users;

use clap::{Parser, Subcommand};
use lantern_shared::domain::ingest::IngestContext;
use lantern_shared::{Clock, Config};
use std::io::{BufReader, Write};
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn check_config(file: &Path, against: Option<&Path>) -> ExitCode {
    let (ok, report) = check_config_report(file, against);
    if ok {
        print!("{report}");
        ExitCode::SUCCESS
    } else {
        eprint!("{report}");
        ExitCode::FAILURE
    }
}

/// What `lantern check-config` prints, and whether the file is good.
pub fn check_config_report(file: &Path, against: Option<&Path>) -> (bool, String) {
    let new = match Config::load(file) {
        Ok(c) => c,
        Err(problems) => return (false, format!("{}: {} problem(s)\n{problems}", file.display(), problems.0.len())),
    };
    let mut out = format!("{}: ok\n", file.display());
    if let Some(old_path) = against {
        match Config::load(old_path) {
            Err(problems) => out.push_str(&format!("(cannot compare: {} has problems)\n{problems}", old_path.display())),
            Ok(old) => {
                let changes = lantern_shared::config::diff::diff(&old, &new);
                if changes.is_empty() {
                    out.push_str(&format!("no changes against {}\n", old_path.display()));
                } else {
                    out.push_str(&format!("changes against {}:\n", old_path.display()));
                    for c in changes {
                        let note = if c.needs_restart { " (needs a restart)" } else { "" };
                        out.push_str(&format!("  {}{note}\n", c.text));
                    }
                }
            }
        }
    }
    (true, out)
}

fn load_for_replay(config_path: &Path) -> Result<(Config, IngestContext), String> {
    let config = Config::load(config_path).map_err(|p| format!("{}: {p}", config_path.display()))?;
    // On a fresh checkout the key does not exist yet: make it as `run` does (with its warning).
    let key = lantern_shared::domain::pseudonym::Pseudonymizer::load_or_create(&config.privacy.key_file).map_err(|e| e.to_string())?;
    let ingest = IngestContext::new(key, &config.ingest.default_region, config.ingest.max_future_skew.millis());
    Ok((config, ingest))
}

/// `lantern replay --config NEW --compare OLD EVENTS`: the same events under both configs.
pub fn replay_compare(new_path: &Path, old_path: &Path, events: &Path) -> ExitCode {
    match compare_report(new_path, old_path, events) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The comparison table `replay --compare` prints.
pub fn compare_report(new_path: &Path, old_path: &Path, events: &Path) -> Result<String, String> {
    let run = |path: &Path| -> Result<lantern_flagger::replay::Summary, String> {
        let (config, ingest) = load_for_replay(path)?;
        let file = std::fs::File::open(events).map_err(|e| format!("cannot read {}: {e}", events.display()))?;
        lantern_flagger::replay::replay(&config, &ingest, Clock::System.now(), BufReader::new(file), None)
            .map_err(|e| format!("replay failed: {e}"))
    };
    let new = run(new_path)?;
    let old = run(old_path)?;
    Ok(lantern_flagger::replay::compare_table(&old, &new))
}

pub fn replay(config_path: &Path, events: &Path) -> ExitCode {
    let (config, ingest) = match load_for_replay(config_path) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let file = match std::fs::File::open(events) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot read {}: {e}", events.display());
            return ExitCode::FAILURE;
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = lantern_flagger::replay::replay(&config, &ingest, Clock::System.now(), BufReader::new(file), Some(&mut out));
    match result {
        Ok(summary) => {
            let _ = write!(out, "{}", summary.table());
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("replay failed: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn hash_password() -> ExitCode {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() || line.trim_end_matches(['\r', '\n']).is_empty() {
        eprintln!("type the password on standard input");
        return ExitCode::FAILURE;
    }
    let salt = SaltString::generate(&mut OsRng);
    match argon2::Argon2::default().hash_password(line.trim_end_matches(['\r', '\n']).as_bytes(), &salt) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Parser)]
#[command(name = "lantern", version, about = "Early flags for people in crisis, for police contact-centre nurses")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service in one process (and the embedded broker if [broker] enabled).
    Run {
        #[arg(long, default_value = "config/lantern.toml")]
        config: PathBuf,
        /// Run only this part (repeatable): flagger, demand, desk, broker. Default: all of them.
        #[arg(long = "service", value_name = "NAME")]
        services: Vec<run::Part>,
    },
    /// Check a config file; exit 0, or list every problem and exit 1.
    CheckConfig {
        file: PathBuf,
        /// Also print what changes against this config (the one in force), for review before applying.
        #[arg(long)]
        against: Option<PathBuf>,
    },
    /// Run historical events (JSON lines) through detection and print the flags, then a summary per rule.
    Replay {
        #[arg(long)]
        config: PathBuf,
        /// Compare with this (older) config: flags and callers per rule under each.
        #[arg(long)]
        compare: Option<PathBuf>,
        events: PathBuf,
    },
    /// Publish realistic synthetic traffic (seeded), or write it as JSON lines with --out.
    Simulate {
        /// Pace multiplier: 60 plays an hour of a force's traffic in a minute.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// How long to run (wall clock), such as 10m. With --out, the span written is duration x rate.
        #[arg(long, default_value = "10m")]
        duration: lantern_shared::Span,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long, default_value_t = 2200.0)]
        calls_per_day: f64,
        /// Busiest frequent callers referred to early action each simulated week.
        #[arg(long, default_value_t = 3)]
        referrals_per_week: usize,
        /// How much a referred caller's call rate falls (0.5 halves it).
        #[arg(long, default_value_t = 0.5)]
        referral_effect: f64,
        /// Write the events to this file (JSON lines) instead of publishing them.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where to publish: the [mqtt] url of this config.
        #[arg(long, default_value = "config/lantern.toml")]
        config: PathBuf,
    },
    /// Print the argon2 hash of a password read from standard input, for [[desk.users]].
    HashPassword,
    /// Mental-health detection tools.
    Mh {
        #[command(subcommand)]
        command: MhCommand,
    },
    /// Every record held about a caller, as JSON (a subject access request). Audited.
    SubjectAccess {
        #[arg(long, default_value = "config/lantern.toml")]
        config: PathBuf,
        /// The caller's phone number, in any format.
        #[arg(long)]
        number: Option<String>,
        /// The caller's address id (UPRN), for records about the address.
        #[arg(long)]
        address: Option<String>,
        /// Why: the request's reference, say. Written to the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Erase every record about a caller (calls, flags, outcomes, feedback, referrals). Audited.
    Erase {
        #[arg(long, default_value = "config/lantern.toml")]
        config: PathBuf,
        #[arg(long)]
        number: Option<String>,
        #[arg(long)]
        address: Option<String>,
        #[arg(long)]
        reason: String,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Lantern with simulated traffic and a throwaway demo nurse, in its own data folder.
    Demo {
        #[arg(long, default_value = "config/lantern.toml")]
        config: PathBuf,
        /// Where the demo keeps its database, key and users (never the real ones).
        #[arg(long, default_value = "target/demo")]
        data_dir: PathBuf,
        /// Pace: 120 plays two hours of a force's calls a minute.
        #[arg(long, default_value_t = 120.0)]
        rate: f64,
        /// Stop after this long, such as 10m (default: run until Ctrl-C).
        #[arg(long)]
        duration: Option<lantern_shared::Span>,
    },
    /// The reports of early action and the mental-health team (md, csv or json).
    Report {
        /// impact, mh-team, vulnerable-callers or demand.
        #[arg(value_parser = report::parse_kind)]
        kind: lantern_desk::reports::Kind,
        #[arg(long, default_value = "config/lantern.toml")]
        config: PathBuf,
        /// Start of the period: a date (2026-11-01) or an RFC 3339 time.
        #[arg(long)]
        from: Option<String>,
        /// End of the period (not included).
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value = "md")]
        format: String,
    },
    /// Desk accounts, kept in desk.users_file; every change is audited.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is asked for (or read from standard input), never an argument.
    Add {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: lantern_shared::domain::Role,
        #[arg(long, default_value = "config/lantern.toml")]
        config: PathBuf,
    },
    /// Stop a user signing in; their sessions end at once.
    Disable {
        name: String,
        #[arg(long, default_value = "config/lantern.toml")]
        config: PathBuf,
    },
    /// Let a disabled user sign in again.
    Enable {
        name: String,
        #[arg(long, default_value = "config/lantern.toml")]
        config: PathBuf,
    },
    /// Set a new password (asked for, or read from standard input); the user's sessions end.
    Passwd {
        name: String,
        #[arg(long, default_value = "config/lantern.toml")]
        config: PathBuf,
    },
    /// List the users, their roles, and whether they may sign in.
    List {
        #[arg(long, default_value = "config/lantern.toml")]
        config: PathBuf,
    },
}

fn parse_role(s: &str) -> Result<lantern_shared::domain::Role, String> {
    use lantern_shared::domain::{listed, Role};
    Role::parse(s).ok_or_else(|| format!("`{s}` is not a role; roles: {}", listed(&Role::ALL, Role::as_str)))
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit log's hash chain; report the first broken link (exit 1) or that it is intact.
    Verify {
        #[arg(long, default_value = "config/lantern.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum MhCommand {
    /// Write nurses' verdicts on mental-health flags as labelled JSON lines (masked snippets),
    /// for the next training round of the model. The export is written to the audit log.
    ExportFeedback {
        #[arg(long, default_value = "config/lantern.toml")]
        config: PathBuf,
        /// Where to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `lantern mh export-feedback`.
pub fn export_feedback(config_path: &Path, out: Option<&Path>) -> ExitCode {
    let result = (|| -> anyhow::Result<usize> {
        let config = Config::load(config_path).map_err(|p| anyhow::anyhow!("{}: {p}", config_path.display()))?;
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async {
            let db = lantern_shared::store::Db::connect(&config.database.url).await?;
            let mut sink: Box<dyn Write> = match out {
                Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p)?)),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let who = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
            let n = lantern_desk::feedback::export(&db, &mut sink, &who, Clock::System.now_ms()).await?;
            db.close().await;
            Ok(n)
        })
    })();
    match result {
        Ok(n) => {
            eprintln!("{n} verdicts exported");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("export failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The `lantern` command line; `main` is only this.
pub fn cli_main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. } | Command::Simulate { .. } | Command::Demo { .. }) {
        lantern_shared::runtime::telemetry::init_tracing_stderr();
    }
    match cli.command {
        Command::Run { config, services } => run::main(&config, &services),
        Command::CheckConfig { file, against } => check_config(&file, against.as_deref()),
        Command::Replay { config, compare, events } => match compare {
            Some(old) => replay_compare(&config, &old, &events),
            None => replay(&config, &events),
        },
        Command::HashPassword => hash_password(),
        Command::Mh { command: MhCommand::ExportFeedback { config, out } } => export_feedback(&config, out.as_deref()),
        Command::SubjectAccess { config, number, address, reason } => {
            privacy::subject_access(&config, &privacy::Subject { number: number.as_deref(), address: address.as_deref() }, &reason)
        }
        Command::Erase { config, number, address, reason } => {
            privacy::erase(&config, &privacy::Subject { number: number.as_deref(), address: address.as_deref() }, &reason)
        }
        Command::Audit { command: AuditCommand::Verify { config } } => privacy::audit_verify(&config),
        Command::Demo { config, data_dir, rate, duration } => demo::main(demo::Args { config, data_dir, rate, duration }),
        Command::Report { kind, config, from, to, format } => report::main(kind, &config, from.as_deref(), to.as_deref(), &format),
        Command::User { command } => match command {
            UserCommand::Add { name, role, config } => users::change(&config, users::Change::Add { name, role }),
            UserCommand::Disable { name, config } => users::change(&config, users::Change::Disable { name }),
            UserCommand::Enable { name, config } => users::change(&config, users::Change::Enable { name }),
            UserCommand::Passwd { name, config } => users::change(&config, users::Change::Passwd { name }),
            UserCommand::List { config } => users::list(&config),
        },
        Command::Simulate { rate, duration, seed, calls_per_day, referrals_per_week, referral_effect, out, config } => {
            let referral = simulate::ReferralParams { per_week: referrals_per_week, effect: referral_effect, ..Default::default() };
            simulate::main(simulate::Args { rate, duration, seed, calls_per_day, referral, out, config })
        }
    }
}
