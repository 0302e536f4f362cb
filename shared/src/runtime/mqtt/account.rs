//! How a Lantern service reaches a force's broker (SPEC sections 8 and 10): one URL or several
//! (tried in turn, for a clustered broker), `mqtts://` with the force's CA and optionally a
//! client certificate, and a user name with a password from a file or `LANTERN_MQTT_PASSWORD`.

use super::BrokerAddress;
use crate::config::MqttConfig;
use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// The environment variable that carries the MQTT password when no `password_file` is set.
pub const PASSWORD_ENV: &str = "LANTERN_MQTT_PASSWORD";
/// Overrides `mqtt.username`, so one config serves services that each have their own account
/// (deploy/systemd: one environment file per service).
pub const USERNAME_ENV: &str = "LANTERN_MQTT_USERNAME";

/// The URLs of `mqtt.url`: one, or a comma-separated list (a TOML list is read as one).
pub fn urls(url: &str) -> Vec<&str> {
    url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect()
}

/// The password: the first line of `password_file`, or `LANTERN_MQTT_PASSWORD`.
fn password(config: &MqttConfig) -> Result<Option<String>, String> {
    if let Some(file) = &config.password_file {
        let text = std::fs::read_to_string(file).map_err(|e| format!("mqtt.password_file: cannot read {}: {e}", file.display()))?;
        return Ok(Some(text.lines().next().unwrap_or_default().to_string()));
    }
    Ok(std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty()))
}

/// The TLS settings for `mqtts://`: the CA that signed the broker's certificate, and the
/// client's certificate and key when the broker asks for one.
fn tls(config: &MqttConfig) -> Result<TlsConfiguration, String> {
    let ca_file = config.ca_file.as_ref().ok_or("mqtt.ca_file: an mqtts:// URL needs the CA file that signed the broker's certificate")?;
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| format!("mqtt.ca_file: cannot read a PEM certificate from {}: {e}", ca_file.display()))?;
    if certs.is_empty() {
        return Err(format!("mqtt.ca_file: {} holds no certificate", ca_file.display()));
    }
    for c in certs {
        roots.add(c).map_err(|e| format!("mqtt.ca_file: {}: {e}", ca_file.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots);
    let client = match (&config.client_cert_file, &config.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<_, _>>())
                .map_err(|e| format!("mqtt.client_cert_file: cannot read {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("mqtt.client_key_file: cannot read {}: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("mqtt.client_cert_file: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("mqtt.client_cert_file and mqtt.client_key_file go together".into()),
    };
    Ok(TlsConfiguration::Rustls(Arc::new(client)))
}

/// Client options for each broker URL of `config`, in the order they are tried.
pub fn client_options(config: &MqttConfig, client_id: &str) -> Result<Vec<MqttOptions>, String> {
    let password = password(config)?;
    // Read the CA and client files once, whatever the number of brokers.
    let mut tls_config: Option<TlsConfiguration> = None;
    let mut all = Vec::new();
    for url in urls(&config.url) {
        let addr = BrokerAddress::parse(url)?;
        let mut o = super::options(url, client_id)?;
        if addr.tls {
            let t = match &tls_config {
                Some(t) => t.clone(),
                None => tls_config.insert(tls(config)?).clone(),
            };
            o.set_transport(Transport::tls_with_config(t));
        }
        let username = std::env::var(USERNAME_ENV).ok().filter(|u| !u.is_empty()).or_else(|| config.username.clone());
        match (&username, &password) {
            (Some(user), pw) => {
                o.set_credentials(user.clone(), pw.clone().unwrap_or_default());
            }
            (None, Some(_)) => return Err("mqtt.username: a password is set but no user name".into()),
            (None, None) => {}
        }
        all.push(o);
    }
    if all.is_empty() {
        return Err("mqtt.url: no broker URL".into());
    }
    Ok(all)
}

/// The problems with the account and TLS settings, for `check-config` (files readable,
/// certificates parse).
pub fn check(config: &MqttConfig) -> Result<(), String> {
    client_options(config, "check").map(|_| ())
}
