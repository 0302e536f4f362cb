//! The sections that say where things are and how long they are kept: `[mqtt]`, `[broker]`,
//! `[database]`, `[ingest]`, `[privacy]`, `[flagger]`, `[demand]`.

use super::Checks;
use crate::domain::Span;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MqttConfig {
    /// One broker URL, or a list tried in order (a clustered broker); kept comma-separated.
    #[serde(deserialize_with = "one_or_many")]
    pub url: String,
    pub client_id: String,
    pub calls_topic: String,
    /// Root of the topics Lantern publishes: `<root>/flags/...` and `<root>/rejected`.
    pub topic_root: String,
    /// The broker account; its password comes from `password_file` or `LANTERN_MQTT_PASSWORD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// For `mqtts://`: the CA that signed the broker's certificate (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// A client certificate and key (PEM), when the broker asks for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
}

/// `url = "mqtt://a:1883"` or `url = ["mqtts://a:8883", "mqtts://b:8883"]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Url {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Url::deserialize(d)? {
        Url::One(u) => u,
        Url::Many(list) => list.join(","),
    })
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: "lantern".into(),
            calls_topic: "contact-centre/calls/#".into(),
            topic_root: "lantern".into(),
            username: None,
            password_file: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
        }
    }
}

impl MqttConfig {
    pub(crate) fn check(&self, c: &mut Checks<'_>) {
        let urls = crate::runtime::mqtt::account::urls(&self.url);
        if urls.is_empty() {
            c.err("mqtt.url", "needs a broker URL such as mqtt://127.0.0.1:1883");
        }
        let mut url_ok = !urls.is_empty();
        for url in urls {
            if let Err(why) = crate::runtime::mqtt::BrokerAddress::parse(url) {
                c.err("mqtt.url", why);
                url_ok = false;
            }
        }
        if url_ok {
            if let Err(why) = crate::runtime::mqtt::account::check(self) {
                let (key, why) = why.split_once(": ").unwrap_or(("mqtt", &why));
                c.err(key, why);
            }
        }
        if self.client_id.trim().is_empty() || self.client_id.len() > 64 {
            c.err("mqtt.client_id", "must be 1 to 64 characters; each service connects as <client_id>-<service>");
        }
        let root = &self.topic_root;
        if root.is_empty() || root.contains(['#', '+']) || root.ends_with('/') {
            c.err("mqtt.topic_root", format!("`{root}` must be a topic without wildcards or a trailing /, such as \"lantern\""));
        }
        let topic = &self.calls_topic;
        if topic.is_empty() || topic.find('#').is_some_and(|i| i != topic.len() - 1) {
            c.err("mqtt.calls_topic", "must be an MQTT topic filter such as \"contact-centre/calls/#\"");
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BrokerConfig {
    pub enabled: bool,
    pub listen: String,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig { enabled: false, listen: "127.0.0.1:1883".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: "sqlite://data/lantern.db".into() }
    }
}

impl DatabaseConfig {
    pub(crate) fn check(&self, c: &mut Checks<'_>) {
        if !(self.url.starts_with("sqlite:") || self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
            c.err("database.url", format!("`{}` must start with sqlite:// or postgres://", crate::store::redact_url(&self.url)));
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestConfig {
    pub default_region: String,
    pub max_future_skew: Span,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig { default_region: "GB".into(), max_future_skew: Span::from_secs(300) }
    }
}

impl IngestConfig {
    pub(crate) fn check(&self, c: &mut Checks<'_>) {
        if self.default_region.to_ascii_uppercase().parse::<phonenumber::country::Id>().is_err() {
            c.err("ingest.default_region", format!("`{}` is not a two-letter region code such as \"GB\"", self.default_region));
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrivacyConfig {
    pub key_file: PathBuf,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig { key_file: "data/pseudonym.key".into() }
    }
}

impl PrivacyConfig {
    pub(crate) fn check(&self, c: &mut Checks<'_>) {
        if self.key_file.as_os_str().is_empty() {
            c.err("privacy.key_file", "must name the file holding the pseudonym key");
        }
    }
}

/// A section that only says where a service serves its metrics and health routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenConfig {
    pub listen: String,
}

impl ListenConfig {
    pub fn flagger() -> ListenConfig {
        ListenConfig { listen: "127.0.0.1:9101".into() }
    }
}

/// `listen` must be an address and port: used for every section that has one.
pub(crate) fn check_listen(c: &mut Checks<'_>, key: &str, addr: &str) {
    if addr.parse::<SocketAddr>().is_err() {
        c.err(key, format!("`{addr}` is not an address and port such as \"127.0.0.1:8080\""));
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DemandConfig {
    pub listen: String,
    pub windows: Vec<Span>,
    pub max_divisions: usize,
}

impl Default for DemandConfig {
    fn default() -> Self {
        DemandConfig {
            listen: "127.0.0.1:9102".into(),
            windows: vec![Span::from_secs(900), Span::from_secs(3600), Span::from_secs(86_400)],
            max_divisions: 32,
        }
    }
}

impl DemandConfig {
    pub(crate) fn check(&self, c: &mut Checks<'_>) {
        if self.windows.is_empty() {
            c.err("demand.windows", "needs at least one window such as \"15m\"");
        }
        if self.windows.contains(&Span::ZERO) {
            c.err("demand.windows", "a window must be longer than 0s");
        }
        if self.max_divisions == 0 || self.max_divisions > 1000 {
            c.err("demand.max_divisions", "must be between 1 and 1000 (it bounds the label values Prometheus stores)");
        }
    }
}
