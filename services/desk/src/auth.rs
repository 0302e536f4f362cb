//! Sign-in: users from config with argon2 hashes; a session cookie for the page (HttpOnly,
//! SameSite=Strict) and HTTP Basic for API clients.

use crate::error::ApiError;
use crate::AppState;
use argon2::{PasswordHash, PasswordVerifier};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use lantern_shared::config::{Role, UserConfig};
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

impl User {
    /// Refuses unless the user has one of `roles` (admins may do everything).
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.role == Role::Admin || roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

#[derive(Default)]
pub struct Auth {
    sessions: Mutex<HashMap<String, (User, Instant)>>,
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

    pub fn start_session(&self, user: User) -> String {
        let token = data_encoding::BASE64URL_NOPAD.encode(&rand::random::<[u8; 32]>());
        if let Ok(mut m) = self.sessions.lock() {
            m.retain(|_, (_, at)| at.elapsed() < SESSION_TTL);
            m.insert(token.clone(), (user, Instant::now()));
        }
        token
    }

    pub fn end_session(&self, token: &str) {
        if let Ok(mut m) = self.sessions.lock() {
            m.remove(token);
        }
    }

    fn session(&self, token: &str, users: &[UserConfig]) -> Option<User> {
        let (u, at) = self.sessions.lock().ok()?.get(token).cloned()?;
        // A user removed from config (or whose role changed) loses their session at once.
        (at.elapsed() < SESSION_TTL && users.iter().any(|c| c.name == u.name && c.role == u.role)).then_some(u)
    }
}

/// The session token in a request's cookies.
pub fn session_token(parts: &Parts) -> Option<String> {
    parts.headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == COOKIE).then(|| v.to_string())
    })
}

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let users = state.users.load();
        if let Some(token) = session_token(parts) {
            if let Some(u) = state.auth.session(&token, &users) {
                return Ok(u);
            }
        }
        let basic = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic "));
        if let Some(b64) = basic {
            let decoded = data_encoding::BASE64.decode(b64.trim().as_bytes()).ok().and_then(|b| String::from_utf8(b).ok());
            if let Some((name, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
                if let Some(u) = state.auth.verify(&users, name, password).await {
                    return Ok(u);
                }
            }
        }
        Err(ApiError::Unauthorized)
    }
}
