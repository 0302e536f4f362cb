//! `[desk]`: the nurses' flag desk, its users and the savings its outcomes count.

use super::service::check_listen;
use super::Checks;
use crate::domain::Role;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeskConfig {
    pub listen: String,
    pub users: Vec<UserConfig>,
    /// Estimated saving per avoided section 136 detention, by agency, in pounds.
    pub unit_savings: BTreeMap<String, f64>,
}

impl Default for DeskConfig {
    fn default() -> Self {
        DeskConfig {
            listen: "127.0.0.1:8080".into(),
            users: Vec::new(),
            unit_savings: BTreeMap::from([
                ("police".to_string(), 287.0),
                ("ambulance".to_string(), 130.0),
                ("emergency_department".to_string(), 64.0),
            ]),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserConfig {
    pub name: String,
    pub role: Role,
    pub password_hash: String,
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
        for (agency, value) in &self.unit_savings {
            if !value.is_finite() || *value < 0.0 {
                c.err(format!("desk.unit_savings.{agency}"), format!("is {value}; it must be a non-negative amount in pounds"));
            }
        }
    }
}
