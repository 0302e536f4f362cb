//! The de-duplication every consumer shares (SPEC section 2: the same `event_id` again changes
//! nothing). `shared_processed_events` holds one row per service and event it has processed.

use super::{with_list, Db, Tx, CHUNK};
use crate::with_db;
use std::collections::HashSet;

/// Records the batch's events as processed by `service` and returns the ids that were not
/// already: each id once, however often the batch repeats it.
///
/// On PostgreSQL, `INSERT ... ON CONFLICT DO NOTHING RETURNING` is cheap. On SQLite it is not:
/// sqlx-sqlite hands every row a RETURNING clause gives back across threads one by one, so the
/// ids are inserted first and looked up only when some were stored already. The transaction
/// holds SQLite's write lock from its start, so nothing can insert between the lookup and the
/// insert.
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
            // Usually every id is new: insert them all, ignoring ids stored already, and if
            // as many rows went in as there are ids, they are all fresh. Otherwise undo that
            // and look up which were stored, which costs a lookup per id.
            let unique: Vec<&'a str> = ids.iter().copied().filter(|id| fresh.insert(id)).collect();
            sqlx::query("SAVEPOINT record_new").execute(&mut **conn).await?;
            if insert_sqlite(conn, service, &unique, now_ms).await? == unique.len() as u64 {
                sqlx::query("RELEASE record_new").execute(&mut **conn).await?;
                return Ok(fresh);
            }
            sqlx::query("ROLLBACK TO record_new").execute(&mut **conn).await?;
            sqlx::query("RELEASE record_new").execute(&mut **conn).await?;
            let mut stored: HashSet<String> = HashSet::new();
            for chunk in unique.chunks(CHUNK) {
                let mut q = with_list("SELECT event_id FROM shared_processed_events WHERE event_id IN ", chunk);
                q.push(" AND service = ").push_bind(service);
                stored.extend(q.build_query_scalar::<String>().fetch_all(&mut **conn).await?);
            }
            fresh.retain(|id| !stored.contains(*id));
            let new_ids: Vec<&str> = unique.iter().copied().filter(|id| fresh.contains(id)).collect();
            insert_sqlite(conn, service, &new_ids, now_ms).await?;
        }
    }
    Ok(fresh)
}

/// Inserts `ids` as processed by `service` on SQLite, leaving out those stored already.
/// Returns how many went in.
async fn insert_sqlite(conn: &mut sqlx::SqliteConnection, service: &str, ids: &[&str], now_ms: i64) -> Result<u64, sqlx::Error> {
    let mut inserted = 0;
    for chunk in ids.chunks(CHUNK) {
        let mut q = sqlx::QueryBuilder::new("INSERT OR IGNORE INTO shared_processed_events (service, event_id, received_ms) ");
        q.push_values(chunk, |mut b, id| {
            b.push_bind(service).push_bind(*id).push_bind(now_ms);
        });
        inserted += q.build().execute(&mut *conn).await?.rows_affected();
    }
    Ok(inserted)
}

/// Forgets the events `service` processed before `before_ms`: past that, a repeat is no longer
/// recognised (`retention.event_ids`).
pub async fn prune(db: &Db, service: &str, before_ms: i64) -> Result<u64, sqlx::Error> {
    let q = "DELETE FROM shared_processed_events WHERE service = $1 AND received_ms < $2";
    with_db!(db, |pool| sqlx::query(q).bind(service).bind(before_ms).execute(pool).await.map(|r| r.rows_affected()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite inserts first and looks up only when some ids were stored already. New ids, ids
    /// an earlier batch stored and ids the batch repeats: each new id is fresh once, and every
    /// id is stored once. (PostgreSQL's `ON CONFLICT DO NOTHING RETURNING` is covered by the
    /// system tests' duplicates.)
    #[tokio::test]
    async fn only_ids_not_stored_before_are_fresh_on_sqlite() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.expect("a database");
        let fresh_of = |ids: &'static [&'static str]| {
            let db = &db;
            async move {
                let mut tx = db.begin().await.expect("begin");
                let fresh = record_new(&mut tx, "flagger", ids, 1).await.expect("record");
                tx.commit().await.expect("commit");
                let mut fresh: Vec<&str> = fresh.into_iter().collect();
                fresh.sort();
                fresh
            }
        };
        assert_eq!(fresh_of(&["a", "b", "a"]).await, ["a", "b"], "all new, one repeated");
        assert_eq!(fresh_of(&["b", "c", "c", "d"]).await, ["c", "d"], "one stored already");
        assert!(fresh_of(&["a", "d"]).await.is_empty());
        let q = "SELECT count(*) FROM shared_processed_events";
        let stored: i64 = crate::with_db!(&db, |pool| sqlx::query_scalar(q).fetch_one(pool).await).expect("count");
        assert_eq!(stored, 4);
    }
}
