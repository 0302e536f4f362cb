//! Sign-in: users from config with argon2 hashes; a session cookie for the page (HttpOnly,
//! SameSite=Strict) and HTTP Basic for API clients. Sessions are kept in the database (as a
//! hash of the token), so a restarted desk keeps its nurses signed in.

use crate::store;
use argon2::{PasswordHash, PasswordVerifier};
use axum::http::header;
use axum::http::request::Parts;
use lantern_shared::config::UserConfig;
use lantern_shared::domain::Role;
use lantern_shared::store::Db;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const COOKIE: &str = "lantern_session";
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// A verified Basic credential is remembered briefly: argon2 is slow on purpose.
const VERIFIED_TTL: Duration = Duration::from_secs(300);

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
}

#[derive(Default)]
pub struct Auth {
    /// Sessions seen since start-up, by token hash, with when they began (ms since the epoch).
    sessions: Mutex<HashMap<String, (User, i64)>>,
    verified: Mutex<HashMap<[u8; 32], (User, Instant)>>,
}

impl Auth {
    /// Checks a name and password against the users in force.
    pub async fn verify(&self, users: &[UserConfig], name: &str, password: &str) -> Option<User> {
        let key: [u8; 32] =
            Sha256::new().chain_update(name.as_bytes()).chain_update([0]).chain_update(password.as_bytes()).finalize().into();
        if let Some((u, at)) = self.verified.lock().ok().and_then(|m| m.get(&key).cloned()) {
            if at.elapsed() < VERIFIED_TTL && users.iter().any(|c| c.name == u.name && c.role == u.role) {
                return Some(u);
            }
        }
        let config = users.iter().find(|u| u.name == name)?.clone();
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&config.password_hash)
                .is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        })
        .await
        .unwrap_or(false);
        let user = users.iter().find(|u| u.name == name).filter(|_| ok).map(|u| User { name: u.name.clone(), role: u.role })?;
        if let Ok(mut m) = self.verified.lock() {
            m.retain(|_, (_, at)| at.elapsed() < VERIFIED_TTL);
            m.insert(key, (user.clone(), Instant::now()));
        }
        Some(user)
    }

    /// Starts a session and returns its token; the database keeps only the token's hash.
    pub async fn start_session(&self, db: &Db, user: User, now_ms: i64) -> Result<String, sqlx::Error> {
        let token = data_encoding::BASE64URL_NOPAD.encode(&rand::random::<[u8; 32]>());
        let hash = token_hash(&token);
        let expired_before = now_ms - SESSION_TTL.as_millis() as i64;
        store::start_session(db, &hash, &user.name, user.role.as_str(), now_ms, expired_before).await?;
        if let Ok(mut m) = self.sessions.lock() {
            m.retain(|_, (_, at)| *at >= expired_before);
            m.insert(hash, (user, now_ms));
        }
        Ok(token)
    }

    pub async fn end_session(&self, db: &Db, token: &str) -> Result<(), sqlx::Error> {
        let hash = token_hash(token);
        if let Ok(mut m) = self.sessions.lock() {
            m.remove(&hash);
        }
        store::end_session(db, &hash).await
    }

    /// The user a session token belongs to, while the session lasts and the user is still in config.
    pub async fn session(&self, db: &Db, token: &str, users: &[UserConfig], now_ms: i64) -> Option<User> {
        let hash = token_hash(token);
        let cached = self.sessions.lock().ok()?.get(&hash).cloned();
        let (user, at) = match cached {
            Some(found) => found,
            None => {
                let row = match store::session(db, &hash).await {
                    Ok(row) => row,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read a desk session");
                        None
                    }
                };
                let (name, role, at) = row?;
                let found = (User { name, role: Role::parse(&role)? }, at);
                if let Ok(mut m) = self.sessions.lock() {
                    m.insert(hash, found.clone());
                }
                found
            }
        };
        let fresh = now_ms - at < SESSION_TTL.as_millis() as i64;
        // A user removed from config (or whose role changed) loses their session at once.
        (fresh && users.iter().any(|c| c.name == user.name && c.role == user.role)).then_some(user)
    }
}

fn token_hash(token: &str) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(token.as_bytes()))
}

/// The session token in a request's cookies.
pub fn session_token(parts: &Parts) -> Option<String> {
    parts.headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == COOKIE).then(|| v.to_string())
    })
}
