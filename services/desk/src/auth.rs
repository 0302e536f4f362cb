//! Sign-in: users from config with argon2 hashes; a session cookie for the page (HttpOnly,
//! SameSite=Strict) and HTTP Basic for API clients. Sessions are kept in the database (as a
//! hash of the token), so a restarted desk keeps its nurses signed in.

use crate::error::ApiError;
use crate::AppState;
use argon2::{PasswordHash, PasswordVerifier};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use lantern_shared::config::{Role, UserConfig};
use lantern_shared::store::Db;
use lantern_shared::with_db;
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
    pub async fn start_session(&self, db: &Db, user: User) -> Result<String, sqlx::Error> {
        let token = data_encoding::BASE64URL_NOPAD.encode(&rand::random::<[u8; 32]>());
        let hash = token_hash(&token);
        let now = chrono::Utc::now().timestamp_millis();
        let expired_before = now - SESSION_TTL.as_millis() as i64;
        with_db!(db, |pool| async {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM desk_sessions WHERE created_ms < $1").bind(expired_before).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO desk_sessions (token_hash, name, role, created_ms) VALUES ($1, $2, $3, $4)")
                .bind(&hash)
                .bind(&user.name)
                .bind(role_name(user.role))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
        .await)?;
        if let Ok(mut m) = self.sessions.lock() {
            m.retain(|_, (_, at)| *at >= expired_before);
            m.insert(hash, (user, now));
        }
        Ok(token)
    }

    pub async fn end_session(&self, db: &Db, token: &str) -> Result<(), sqlx::Error> {
        let hash = token_hash(token);
        if let Ok(mut m) = self.sessions.lock() {
            m.remove(&hash);
        }
        with_db!(db, |pool| sqlx::query("DELETE FROM desk_sessions WHERE token_hash = $1").bind(&hash).execute(pool).await.map(|_| ()))
    }

    async fn session(&self, db: &Db, token: &str, users: &[UserConfig]) -> Option<User> {
        let hash = token_hash(token);
        let cached = self.sessions.lock().ok()?.get(&hash).cloned();
        let (user, at) = match cached {
            Some(found) => found,
            None => {
                let q = "SELECT name, role, created_ms FROM desk_sessions WHERE token_hash = $1";
                let row: Option<(String, String, i64)> = match with_db!(db, |pool| sqlx::query_as(q).bind(&hash).fetch_optional(pool).await)
                {
                    Ok(row) => row,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read a desk session");
                        None
                    }
                };
                let (name, role, at) = row?;
                let role = [Role::Nurse, Role::Inspector, Role::Admin].into_iter().find(|r| role_name(*r) == role)?;
                let found = (User { name, role }, at);
                if let Ok(mut m) = self.sessions.lock() {
                    m.insert(hash, found.clone());
                }
                found
            }
        };
        let fresh = chrono::Utc::now().timestamp_millis() - at < SESSION_TTL.as_millis() as i64;
        // A user removed from config (or whose role changed) loses their session at once.
        (fresh && users.iter().any(|c| c.name == user.name && c.role == user.role)).then_some(user)
    }
}

fn token_hash(token: &str) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(token.as_bytes()))
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Nurse => "nurse",
        Role::Inspector => "inspector",
        Role::Admin => "admin",
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
            if let Some(u) = state.auth.session(&state.db, &token, &users).await {
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
