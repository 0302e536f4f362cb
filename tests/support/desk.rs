//! The desk as tests sign in to it.

use std::time::Duration;

/// Flags the desk lists, asked as the `nurse` test user (see [`desk_users`]).
pub async fn desk_flags(desk: std::net::SocketAddr) -> Vec<serde_json::Value> {
    let resp = reqwest::Client::new()
        .get(format!("http://{desk}/api/flags?limit=1000"))
        .basic_auth("nurse", Some("nurse-pass"))
        .send()
        .await
        .expect("desk answers");
    resp.json::<Vec<serde_json::Value>>().await.unwrap_or_default()
}

/// Waits until the desk lists a flag for `call_id`.
pub async fn desk_flag(desk: std::net::SocketAddr, call_id: &str, wait: Duration) -> Option<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        if let Some(f) = desk_flags(desk).await.into_iter().find(|f| f["call_id"] == call_id) {
            return Some(f);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Desk users for tests: `nurse`, `inspector`, `admin` and `early` (early action), each with password `<name>-pass`.
pub fn desk_users() -> Vec<lantern_shared::config::UserConfig> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    use lantern_shared::domain::Role;
    // Light argon2 settings: tests hash and verify many times.
    let params = argon2::Params::new(1024, 1, 1, None).expect("params");
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    [("nurse", Role::Nurse), ("inspector", Role::Inspector), ("admin", Role::Admin), ("early", Role::EarlyAction)]
        .into_iter()
        .map(|(name, role)| {
            let salt = SaltString::encode_b64(format!("salt-{name}-0123").as_bytes()).expect("salt");
            let hash = hasher.hash_password(format!("{name}-pass").as_bytes(), &salt).expect("hash").to_string();
            lantern_shared::config::UserConfig { name: name.into(), role, password_hash: hash, disabled: false }
        })
        .collect()
}
