//! The de-duplication every consumer shares (SPEC section 2: the same `event_id` again changes
//! nothing). `shared_processed_events` holds one row per service and event it has processed.

use super::{with_list, Db, Tx, CHUNK};
use crate::with_db;
use std::collections::HashSet;

/// Records the batch's events as processed by `service` and returns the ids that were not
/// already: each id once, however often the batch repeats it.
///
/// On PostgreSQL, `INSERT ... ON CONFLICT DO NOTHING RETURNING` is cheap. On SQLite the lookup
/// of ids already stored (usually none) is: sqlx-sqlite hands every row a RETURNING clause gives
/// back across threads one by one. The transaction holds SQLite's write lock from its start, so
/// nothing can insert between the lookup and the insert.
pub async fn record_new<'a>(tx: &mut Tx<'_>, service: &str, ids: &[&'a str], now_ms: i64) -> Result<HashSet<&'a str>, sqlx::Error> {
    let mut fresh: HashSet<&'a str> = HashSet::with_capacity(ids.len());
    match tx {
        Tx::Postgres(conn) => {
            let mut inserted: HashSet<String> = HashSet::with_capacity(ids.len());
            for chunk in ids.chunks(CHUNK) {
                let mut q = sqlx::QueryBuilder::new("INSERT INTO shared_processed_events (service, event_id, received_ms) ");
                q.push_values(chunk, |mut b, id| {
                    b.push_bind(service).push_bind(*id).push_bind(now_ms);
                });
                q.push(" ON CONFLICT DO NOTHING RETURNING event_id");
                inserted.extend(q.build_query_scalar::<String>().fetch_all(&mut **conn).await?);
            }
            fresh.extend(ids.iter().copied().filter(|id| inserted.contains(*id)));
        }
        Tx::Sqlite(conn) => {
            let mut stored: HashSet<String> = HashSet::new();
            for chunk in ids.chunks(CHUNK) {
                let mut q = with_list("SELECT event_id FROM shared_processed_events WHERE event_id IN ", chunk);
                q.push(" AND service = ").push_bind(service);
                stored.extend(q.build_query_scalar::<String>().fetch_all(&mut **conn).await?);
            }
            fresh.extend(ids.iter().copied().filter(|id| !stored.contains(*id)));
            let new_ids: Vec<&str> = fresh.iter().copied().collect();
            for chunk in new_ids.chunks(CHUNK) {
                let mut q = sqlx::QueryBuilder::new("INSERT INTO shared_processed_events (service, event_id, received_ms) ");
                q.push_values(chunk, |mut b, id| {
                    b.push_bind(service).push_bind(*id).push_bind(now_ms);
                });
                q.build().execute(&mut **conn).await?;
            }
        }
    }
    Ok(fresh)
}

/// Forgets the events `service` processed before `before_ms`: past that, a repeat is no longer
/// recognised (`retention.event_ids`).
pub async fn prune(db: &Db, service: &str, before_ms: i64) -> Result<u64, sqlx::Error> {
    let q = "DELETE FROM shared_processed_events WHERE service = $1 AND received_ms < $2";
    with_db!(db, |pool| sqlx::query(q).bind(service).bind(before_ms).execute(pool).await.map(|r| r.rows_affected()))
}
