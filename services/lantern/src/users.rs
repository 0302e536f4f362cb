//! `lantern user add|disable|enable|passwd|list`: desk accounts without editing files by hand.
//! They live in `desk.users_file` (default `config/users.toml`), which running services reload
//! live; users written in the main file keep working and are listed too. Passwords come from a
//! prompt (typed twice, not shown) or, when standard input is not a terminal, its first line;
//! never from an argument, where the shell history and `ps` would keep them. Every change is
//! written to the audit log.

use crate::privacy::operator;
use anyhow::{bail, Context};
use lantern_desk::store::{self, AuditEntry};
use lantern_shared::config::{UserConfig, UsersFile};
use lantern_shared::domain::{listed, Role};
use lantern_shared::store::Db;
use lantern_shared::{Clock, Config};
use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// What a `lantern user` command does.
pub enum Change {
    Add { name: String, role: Role },
    Disable { name: String },
    Enable { name: String },
    Passwd { name: String },
}

/// Reads a new password: a prompt typed twice, or the first line of standard input.
pub fn read_password(name: &str) -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("new password for {name}: "))?;
        let again = rpassword::prompt_password("again: ")?;
        if first != again {
            bail!("the two passwords differ; nothing changed");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.chars().count() < MIN_PASSWORD_CHARS {
        bail!("the password must be at least {MIN_PASSWORD_CHARS} characters (a few words make a good one)");
    }
    Ok(password)
}

/// An argon2id hash of `password` in PHC form, as the desk checks it.
pub fn hash(password: &str) -> anyhow::Result<String> {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Applies `change` to the users file of `config` with `password` (for add and passwd);
/// returns what to say and what to audit (action, target, reason).
pub fn apply(config: &Config, change: &Change, password: Option<&str>) -> anyhow::Result<(String, &'static str, String, String)> {
    let path = &config.desk.users_file;
    let mut file = UsersFile::read(path).map_err(anyhow::Error::msg)?;
    let in_main = |name: &str| config.desk.users.iter().any(|u| u.name == name) && !file.users.iter().any(|u| u.name == name);
    let name = match change {
        Change::Add { name, .. } | Change::Disable { name } | Change::Enable { name } | Change::Passwd { name } => name.trim().to_string(),
    };
    if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) || name.chars().count() > 64 {
        bail!("a user name is 1 to 64 characters with no spaces");
    }
    if in_main(&name) && !matches!(change, Change::Add { .. }) {
        bail!("`{name}` is written in the main config file ([[desk.users]]); change it there");
    }
    let said = match change {
        Change::Add { role, .. } => {
            if in_main(&name) || file.users.iter().any(|u| u.name == name) {
                bail!("`{name}` exists already; `lantern user passwd {name}` sets a new password");
            }
            let password_hash = hash(password.context("a password")?)?;
            file.users.push(UserConfig { name: name.clone(), role: *role, password_hash, disabled: false });
            (format!("added {name} ({})", role.as_str()), "user_add", format!("role {}", role.as_str()))
        }
        Change::Disable { .. } | Change::Enable { .. } => {
            let disable = matches!(change, Change::Disable { .. });
            let user = file.users.iter_mut().find(|u| u.name == name).with_context(|| format!("no user `{name}` in {}", path.display()))?;
            user.disabled = disable;
            let (verb, action) = if disable { ("disabled", "user_disable") } else { ("enabled", "user_enable") };
            (format!("{verb} {name}"), action, String::new())
        }
        Change::Passwd { .. } => {
            let user = file.users.iter_mut().find(|u| u.name == name).with_context(|| format!("no user `{name}` in {}", path.display()))?;
            user.password_hash = hash(password.context("a password")?)?;
            (format!("new password for {name}"), "user_passwd", String::new())
        }
    };
    file.write(path).with_context(|| format!("writing {}", path.display()))?;
    Ok((said.0, said.1, name, said.2))
}

/// Writes one audit entry for an account change.
pub async fn audit(db: &Db, action: &str, target: &str, reason: &str) -> anyhow::Result<()> {
    let who = operator();
    let entry = AuditEntry {
        at_ms: Clock::System.now_ms(),
        user: &who,
        role: "cli",
        action,
        target,
        reason: Some(reason).filter(|r| !r.is_empty()),
    };
    let mut tx = db.begin().await?;
    store::audit(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(())
}

fn load(config_path: &Path) -> anyhow::Result<Config> {
    Config::load(config_path).map_err(|p| anyhow::anyhow!("{}: {p}", config_path.display()))
}

/// `lantern user add|disable|enable|passwd`.
pub fn change(config_path: &Path, change: Change) -> ExitCode {
    let result = (|| -> anyhow::Result<String> {
        let config = load(config_path)?;
        let password = match &change {
            Change::Add { name, .. } | Change::Passwd { name } => Some(read_password(name)?),
            _ => None,
        };
        let (said, action, target, reason) = apply(&config, &change, password.as_deref())?;
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async {
            let db = Db::connect(&config.database.url).await.context("database (for the audit log)")?;
            audit(&db, action, &target, &reason).await?;
            db.close().await;
            Ok::<(), anyhow::Error>(())
        })?;
        Ok(format!("{said}; running desks pick it up within seconds"))
    })();
    match result {
        Ok(said) => {
            println!("{said}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lantern user: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `lantern user list`: every user, where they are kept, and whether they may sign in.
pub fn list(config_path: &Path) -> ExitCode {
    let config = match load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lantern user list: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let in_file: Vec<String> =
        UsersFile::read(&config.desk.users_file).map(|f| f.users.into_iter().map(|u| u.name).collect()).unwrap_or_default();
    println!("{:<24} {:<13} {:<9} kept in", "name", "role", "status");
    for u in &config.desk.users {
        let place =
            if in_file.contains(&u.name) { config.desk.users_file.display().to_string() } else { "the main config file".to_string() };
        println!("{:<24} {:<13} {:<9} {place}", u.name, u.role.as_str(), if u.disabled { "disabled" } else { "active" });
    }
    if config.desk.users.is_empty() {
        println!("(no users yet: `lantern user add NAME --role nurse`; roles: {})", listed(&Role::ALL, Role::as_str));
    }
    ExitCode::SUCCESS
}
