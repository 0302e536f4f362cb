//! What a running Lantern cannot change without a restart: where it listens, which broker and
//! database it uses, and its pseudonym key. A reload keeps these as they were and says so.

use super::{BrokerConfig, Config, DatabaseConfig, ListenConfig, MqttConfig, PrivacyConfig};
use serde::Serialize;
use serde_json::Value;

/// The restart-only part of a config, shaped as in the file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestartOnly {
    pub mqtt: MqttConfig,
    pub broker: BrokerConfig,
    pub database: DatabaseConfig,
    pub privacy: PrivacyConfig,
    pub flagger: ListenConfig,
    pub demand: ListenConfig,
    pub desk: DeskListen,
}

/// Where and how the desk serves: its address and its TLS files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeskListen {
    pub listen: String,
    /// The users file a running Lantern watches.
    pub users_file: std::path::PathBuf,
    pub tls_cert_file: Option<std::path::PathBuf>,
    pub tls_key_file: Option<std::path::PathBuf>,
}

impl RestartOnly {
    pub fn of(c: &Config) -> RestartOnly {
        RestartOnly {
            mqtt: c.mqtt.clone(),
            broker: c.broker.clone(),
            database: c.database.clone(),
            privacy: c.privacy.clone(),
            flagger: c.flagger.clone(),
            demand: ListenConfig { listen: c.demand.listen.clone() },
            desk: DeskListen {
                listen: c.desk.listen.clone(),
                users_file: c.desk.users_file.clone(),
                tls_cert_file: c.desk.tls_cert_file.clone(),
                tls_key_file: c.desk.tls_key_file.clone(),
            },
        }
    }

    /// Puts these settings into `c`, leaving the rest of it as it is.
    pub fn apply_to(self, c: &mut Config) {
        c.mqtt = self.mqtt;
        c.broker = self.broker;
        c.database = self.database;
        c.privacy = self.privacy;
        c.flagger = self.flagger;
        c.demand.listen = self.demand.listen;
        c.desk.listen = self.desk.listen;
        c.desk.users_file = self.desk.users_file;
        c.desk.tls_cert_file = self.desk.tls_cert_file;
        c.desk.tls_key_file = self.desk.tls_key_file;
    }

    /// True when the dotted key (`mqtt.url`, `desk.listen`, `demand.windows`) is restart-only.
    pub fn covers(key: &str) -> bool {
        let shape = serde_json::to_value(RestartOnly::of(&Config::default())).unwrap_or(Value::Null);
        let mut at = &shape;
        for part in key.split('.') {
            match at.get(part) {
                Some(v) => at = v,
                None => return false,
            }
        }
        true
    }
}

/// The config `new` with the restart-only settings of `old`: what a reload puts in force.
pub fn applicable(old: &Config, new: &Config) -> Config {
    let mut c = new.clone();
    RestartOnly::of(old).apply_to(&mut c);
    c
}
