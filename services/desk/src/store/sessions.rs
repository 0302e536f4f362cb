//! Desk sign-in sessions (`desk_sessions`): only a hash of each token is stored.

use lantern_shared::store::Db;
use lantern_shared::{with_db, with_tx};

/// A session to store.
pub struct NewSession<'a> {
    pub token_hash: &'a str,
    pub name: &'a str,
    pub role: &'a str,
    /// The fingerprint of the password hash the user signed in with.
    pub fingerprint: &'a str,
}

/// A stored session.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct SessionRow {
    pub name: String,
    pub role: String,
    pub created_ms: i64,
    #[sqlx(rename = "password_fingerprint")]
    pub fingerprint: String,
    pub last_seen_ms: i64,
}

/// Stores a session, deleting sessions that began before `expired_before`.
pub async fn start_session(db: &Db, s: &NewSession<'_>, now_ms: i64, expired_before: i64) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    let q = "DELETE FROM desk_sessions WHERE created_ms < $1";
    with_tx!(&mut tx, |c| sqlx::query(q).bind(expired_before).execute(&mut **c).await.map(|_| ()))?;
    let q = "INSERT INTO desk_sessions (token_hash, name, role, created_ms, password_fingerprint, last_seen_ms) VALUES ($1, $2, $3, $4, $5, $4)";
    with_tx!(&mut tx, |c| sqlx::query(q)
        .bind(s.token_hash)
        .bind(s.name)
        .bind(s.role)
        .bind(now_ms)
        .bind(s.fingerprint)
        .execute(&mut **c)
        .await
        .map(|_| ()))?;
    tx.commit().await
}

pub async fn end_session(db: &Db, token_hash: &str) -> Result<(), sqlx::Error> {
    with_db!(db, |pool| sqlx::query("DELETE FROM desk_sessions WHERE token_hash = $1").bind(token_hash).execute(pool).await.map(|_| ()))
}

pub async fn session(db: &Db, token_hash: &str) -> Result<Option<SessionRow>, sqlx::Error> {
    let q = "SELECT name, role, created_ms, password_fingerprint, last_seen_ms FROM desk_sessions WHERE token_hash = $1";
    with_db!(db, |pool| sqlx::query_as(q).bind(token_hash).fetch_optional(pool).await)
}

/// Notes a session's latest request (for the idle timeout).
pub async fn touch_session(db: &Db, token_hash: &str, now_ms: i64) -> Result<(), sqlx::Error> {
    let q = "UPDATE desk_sessions SET last_seen_ms = $1 WHERE token_hash = $2";
    with_db!(db, |pool| sqlx::query(q).bind(now_ms).bind(token_hash).execute(pool).await.map(|_| ()))
}
