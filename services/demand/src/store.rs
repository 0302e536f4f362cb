//! Every statement the demand service runs, one named function each. Demand owns
//! `demand_calls`, `demand_divisions` and `demand_mh`.

use crate::state::CallRow;
use lantern_shared::domain::Channel;
use lantern_shared::store::{with_list, Db, Tx, CHUNK};
use lantern_shared::{with_db, with_tx};

type Row = (String, i64, String, String, Option<i64>, Option<i64>, i16);
const CALL_COLUMNS: &str = "call_id, first_ms, channel, division, offered_ms, answered_ms, abandoned";

fn call_row((call_id, first_ms, channel, division, offered_ms, answered_ms, abandoned): Row) -> CallRow {
    let channel = Channel::parse(&channel).unwrap_or(Channel::Other);
    CallRow { call_id, first_ms, channel, division, offered_ms, answered_ms, abandoned: abandoned != 0 }
}

/// Division labels in the order first seen (the first `max_divisions` keep their own label).
pub async fn divisions(db: &Db) -> Result<Vec<String>, sqlx::Error> {
    let q = "SELECT division FROM demand_divisions ORDER BY first_ms, division";
    with_db!(db, |pool| sqlx::query_scalar(q).fetch_all(pool).await)
}

/// Calls first seen (event time) from `since_ms`.
pub async fn calls_since(db: &Db, since_ms: i64) -> Result<Vec<CallRow>, sqlx::Error> {
    let q = format!("SELECT {CALL_COLUMNS} FROM demand_calls WHERE first_ms >= $1");
    let rows: Vec<Row> = with_db!(db, |pool| sqlx::query_as(&q).bind(since_ms).fetch_all(pool).await)?;
    Ok(rows.into_iter().map(call_row).collect())
}

/// Event times of mental-health calls from `since_ms`.
pub async fn mental_health_since(db: &Db, since_ms: i64) -> Result<Vec<i64>, sqlx::Error> {
    let q = "SELECT occurred_ms FROM demand_mh WHERE occurred_ms >= $1";
    with_db!(db, |pool| sqlx::query_scalar(q).bind(since_ms).fetch_all(pool).await)
}

/// The stored rows of these calls (those the database has).
pub async fn calls_by_id(tx: &mut Tx<'_>, call_ids: &[&str]) -> Result<Vec<CallRow>, sqlx::Error> {
    let mut out = Vec::new();
    for chunk in call_ids.chunks(CHUNK) {
        let rows: Vec<Row> = with_tx!(tx, |c| {
            with_list(format!("SELECT {CALL_COLUMNS} FROM demand_calls WHERE call_id IN "), chunk)
                .build_query_as()
                .fetch_all(&mut **c)
                .await
        })?;
        out.extend(rows.into_iter().map(call_row));
    }
    Ok(out)
}

pub async fn insert_divisions(tx: &mut Tx<'_>, divisions: &[String], now_ms: i64) -> Result<(), sqlx::Error> {
    for chunk in divisions.chunks(CHUNK) {
        with_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new("INSERT INTO demand_divisions (division, first_ms) ");
            q.push_values(chunk, |mut b, d| {
                b.push_bind(d.as_str()).push_bind(now_ms);
            });
            q.push(" ON CONFLICT DO NOTHING");
            q.build().execute(&mut **c).await.map(|r| r.rows_affected())
        })?;
    }
    Ok(())
}

/// Stores calls, new or changed (offered, answered, abandoned).
pub async fn upsert_calls(tx: &mut Tx<'_>, calls: &[&CallRow]) -> Result<(), sqlx::Error> {
    for chunk in calls.chunks(CHUNK) {
        with_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new(format!("INSERT INTO demand_calls ({CALL_COLUMNS}) "));
            q.push_values(chunk, |mut b, row| {
                b.push_bind(row.call_id.as_str())
                    .push_bind(row.first_ms)
                    .push_bind(row.channel.as_str())
                    .push_bind(row.division.as_str())
                    .push_bind(row.offered_ms)
                    .push_bind(row.answered_ms)
                    .push_bind(i16::from(row.abandoned));
            });
            q.push(" ON CONFLICT (call_id) DO UPDATE SET offered_ms = excluded.offered_ms, answered_ms = excluded.answered_ms, abandoned = excluded.abandoned");
            q.build().execute(&mut **c).await.map(|r| r.rows_affected())
        })?;
    }
    Ok(())
}

/// Records mental-health calls (call, event time); returns the event times of those not
/// recorded before (a call's flag may arrive more than once: raised, then updated).
pub async fn insert_mental_health(tx: &mut Tx<'_>, calls: &[(String, i64)]) -> Result<Vec<i64>, sqlx::Error> {
    let mut new = Vec::new();
    for chunk in calls.chunks(CHUNK) {
        let times: Vec<i64> = with_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new("INSERT INTO demand_mh (call_id, occurred_ms) ");
            q.push_values(chunk, |mut b, (call_id, ms)| {
                b.push_bind(call_id.as_str()).push_bind(*ms);
            });
            q.push(" ON CONFLICT DO NOTHING RETURNING occurred_ms");
            q.build_query_scalar::<i64>().fetch_all(&mut **c).await
        })?;
        new.extend(times);
    }
    Ok(new)
}

/// Deletes calls and mental-health calls first seen before `before_ms` (event time).
pub async fn prune(db: &Db, before_ms: i64) -> Result<u64, sqlx::Error> {
    let mut n = 0;
    for q in ["DELETE FROM demand_calls WHERE first_ms < $1", "DELETE FROM demand_mh WHERE occurred_ms < $1"] {
        n += with_db!(db, |pool| sqlx::query(q).bind(before_ms).execute(pool).await.map(|r| r.rows_affected()))?;
    }
    Ok(n)
}
