//! `[desk]`: the nurses' flag desk, its users and the savings its outcomes count.

use super::service::check_listen;
use super::Checks;
use crate::domain::{Role, Span};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeskConfig {
    pub listen: String,
    /// Users written in the main file, and (after loading) those of `users_file`.
    pub users: Vec<UserConfig>,
    /// The users file `lantern user` keeps (relative to the working folder); reloaded live.
    pub users_file: PathBuf,
    /// What each avoided section 136 detention saves, by agency: pounds, or pounds and hours
    /// (and what each other face-to-face contact saves, for the "other efficiencies" row).
    pub unit_savings: BTreeMap<String, Saving>,
    /// A signed-in session ends after this long without a request (and after 12 hours in any case).
    pub session_idle_timeout: Span,
    /// Serve the desk over HTTPS with this certificate chain (PEM) and key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
}

impl Default for DeskConfig {
    fn default() -> Self {
        DeskConfig {
            listen: "127.0.0.1:8080".into(),
            users: Vec::new(),
            users_file: PathBuf::from("config/users.toml"),
            unit_savings: BTreeMap::from([
                ("police".to_string(), Saving::Detailed { pounds: 287.0, hours: 8.5, other_pounds: 0.0, other_hours: 0.0 }),
                ("ambulance".to_string(), Saving::Pounds(130.0)),
                ("emergency_department".to_string(), Saving::Pounds(64.0)),
            ]),
            session_idle_timeout: Span::from_secs(30 * 60),
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// What an avoided section 136 detention saves one agency: a number (pounds), or a table with
/// pounds, hours, and what another face-to-face contact saves (`other_pounds`, `other_hours`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Saving {
    Pounds(f64),
    Detailed {
        pounds: f64,
        #[serde(default)]
        hours: f64,
        #[serde(default)]
        other_pounds: f64,
        #[serde(default)]
        other_hours: f64,
    },
}

impl Saving {
    pub fn pounds(self) -> f64 {
        match self {
            Saving::Pounds(p) | Saving::Detailed { pounds: p, .. } => p,
        }
    }
    pub fn hours(self) -> f64 {
        match self {
            Saving::Pounds(_) => 0.0,
            Saving::Detailed { hours, .. } => hours,
        }
    }
    pub fn other_pounds(self) -> f64 {
        match self {
            Saving::Pounds(_) => 0.0,
            Saving::Detailed { other_pounds, .. } => other_pounds,
        }
    }
    pub fn other_hours(self) -> f64 {
        match self {
            Saving::Pounds(_) => 0.0,
            Saving::Detailed { other_hours, .. } => other_hours,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserConfig {
    pub name: String,
    pub role: Role,
    pub password_hash: String,
    /// A disabled user cannot sign in, and their sessions end (`lantern user disable`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The users file (`desk.users_file`): `[[users]]` tables as in `[[desk.users]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    #[serde(default)]
    pub users: Vec<UserConfig>,
}

impl UsersFile {
    /// Reads the users file; a file that does not exist holds no users.
    pub fn read(path: &std::path::Path) -> Result<UsersFile, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UsersFile::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Writes the users file whole, readable by its owner only, replacing it in one step.
    pub fn write(&self, path: &std::path::Path) -> std::io::Result<()> {
        let text = format!(
            "# Desk users, kept by `lantern user` (add, disable, enable, passwd, list). Reloaded live.\n\n{}",
            toml::to_string(self).map_err(std::io::Error::other)?
        );
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("users.toml")));
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options.open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }
}

impl DeskConfig {
    /// The users who may sign in now: not disabled.
    pub fn active_users(&self) -> Vec<UserConfig> {
        self.users.iter().filter(|u| !u.disabled).cloned().collect()
    }
}

impl DeskConfig {
    pub(crate) fn check(&self, c: &mut Checks<'_>) {
        check_listen(c, "desk.listen", &self.listen);
        let mut users = BTreeSet::new();
        for (i, user) in self.users.iter().enumerate() {
            if user.name.trim().is_empty() {
                c.err(format!("desk.users[{i}].name"), "every user needs a name");
            } else if !users.insert(user.name.as_str()) {
                c.err(format!("desk.users[{i}].name"), format!("`{}` is listed twice", user.name));
            }
            if !argon2::PasswordHash::new(&user.password_hash).is_ok_and(|h| h.algorithm.as_str().starts_with("argon2")) {
                c.err(
                    format!("desk.users[{i}].password_hash"),
                    "must be an argon2 hash in PHC form ($argon2id$v=19$...); make one with `lantern hash-password`",
                );
            }
        }
        let idle = self.session_idle_timeout.millis();
        if !(60_000..=12 * 3_600_000).contains(&idle) {
            c.err("desk.session_idle_timeout", format!("is {}; it must be between 1m and 12h", self.session_idle_timeout));
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => c.err("desk.tls_key_file", "is needed with desk.tls_cert_file"),
            (None, Some(_)) => c.err("desk.tls_cert_file", "is needed with desk.tls_key_file"),
            _ => {}
        }
        for (agency, value) in &self.unit_savings {
            let figures = [
                ("", value.pounds()),
                (".hours", value.hours()),
                (".other_pounds", value.other_pounds()),
                (".other_hours", value.other_hours()),
            ];
            for (part, v) in figures {
                if !v.is_finite() || v < 0.0 {
                    c.err(format!("desk.unit_savings.{agency}{part}"), format!("is {v}; it must be zero or more"));
                }
            }
        }
    }
}
