//! Desk sign-in sessions (`desk_sessions`): only a hash of each token is stored.

use lantern_shared::store::Db;
use lantern_shared::{with_db, with_tx};

/// Stores a session by its token's hash, deleting sessions that began before `expired_before`.
pub async fn start_session(db: &Db, token_hash: &str, name: &str, role: &str, now_ms: i64, expired_before: i64) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    with_tx!(&mut tx, |c| sqlx::query("DELETE FROM desk_sessions WHERE created_ms < $1")
        .bind(expired_before)
        .execute(&mut **c)
        .await
        .map(|_| ()))?;
    let q = "INSERT INTO desk_sessions (token_hash, name, role, created_ms) VALUES ($1, $2, $3, $4)";
    with_tx!(&mut tx, |c| sqlx::query(q).bind(token_hash).bind(name).bind(role).bind(now_ms).execute(&mut **c).await.map(|_| ()))?;
    tx.commit().await
}

pub async fn end_session(db: &Db, token_hash: &str) -> Result<(), sqlx::Error> {
    with_db!(db, |pool| sqlx::query("DELETE FROM desk_sessions WHERE token_hash = $1").bind(token_hash).execute(pool).await.map(|_| ()))
}

/// A stored session: (name, role, began).
pub async fn session(db: &Db, token_hash: &str) -> Result<Option<(String, String, i64)>, sqlx::Error> {
    let q = "SELECT name, role, created_ms FROM desk_sessions WHERE token_hash = $1";
    with_db!(db, |pool| sqlx::query_as(q).bind(token_hash).fetch_optional(pool).await)
}
