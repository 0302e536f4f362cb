//! Erasures done, numbered (`shared_erasures`): a running service that sees a new one forgets
//! what it holds in memory and reads it again from the database, where the erased records are
//! gone. No caller is named here.

use super::{Db, Tx};
use crate::{with_db, with_tx};

/// Records that an erasure happened, in the erasure's own transaction.
pub async fn record(tx: &mut Tx<'_>, now_ms: i64) -> Result<(), sqlx::Error> {
    with_tx!(tx, |c| sqlx::query("INSERT INTO shared_erasures (at_ms) VALUES ($1)").bind(now_ms).execute(&mut **c).await.map(|_| ()))
}

/// The number of the latest erasure (0 when there has been none).
pub async fn latest(db: &Db) -> Result<i64, sqlx::Error> {
    with_db!(db, |pool| sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(id) FROM shared_erasures").fetch_one(pool).await)
        .map(|v| v.unwrap_or(0))
}
