//! Every statement the desk runs, one named function each. The desk owns `desk_flags`,
//! `desk_updates`, `desk_audit`, `desk_sessions` and `desk_feedback`; it reads call history
//! only through the flagger's view `flagger_caller_calls`.

mod audit;
mod privacy;
mod referrals;
mod sessions;

pub use audit::{
    about as audit_about, audit, newest as audit_newest, seal as seal_audit, verify as verify_audit, AuditEntry, AuditRow, Broken,
    Verified, AUDIT_LOCK,
};
pub use privacy::*;
pub use referrals::*;
pub use sessions::*;

use lantern_shared::domain::flag::FlagMessage;
use lantern_shared::store::{Db, Tx};
use lantern_shared::{with_db, with_tx};

/// Key of the transaction-level advisory lock every PostgreSQL writer of `desk_updates` takes,
/// so sequence numbers are handed out in commit order and a live stream never skips one.
pub const UPDATES_LOCK: i64 = 0x6c616e7465726e01;

/// A flag as the desk holds it.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct FlagRow {
    pub flag_id: String,
    pub kind: String,
    pub severity: String,
    pub status: String,
    pub call_id: String,
    pub caller_ref: Option<String>,
    pub channel: Option<String>,
    pub division: Option<String>,
    pub payload: String,
    pub raised_ms: i64,
    pub updated_ms: i64,
    pub acknowledged_by: Option<String>,
    pub acknowledged_ms: Option<i64>,
    pub outcome: Option<String>,
    pub note: Option<String>,
    pub closed_by: Option<String>,
    pub closed_ms: Option<i64>,
}

pub(crate) const FLAG_COLUMNS: &str =
    "flag_id, kind, severity, status, call_id, caller_ref, channel, division, payload, raised_ms, updated_ms, \
                            acknowledged_by, acknowledged_ms, outcome, note, closed_by, closed_ms";

/// A stored call of a caller, from the flagger's view.
pub type CallerCall = (String, i64, String, Option<String>);

// Flags in from MQTT.

/// The kind, call and caller of a stored flag, which a new message for it must agree with.
pub async fn stored_flag(tx: &mut Tx<'_>, flag_id: &str) -> Result<Option<(String, String, Option<String>)>, sqlx::Error> {
    let q = "SELECT kind, call_id, caller_ref FROM desk_flags WHERE flag_id = $1";
    with_tx!(tx, |c| sqlx::query_as(q).bind(flag_id).fetch_optional(&mut **c).await)
}

/// Adds an entry to the live stream unless `key` is there already; returns its sequence.
pub async fn add_update(
    tx: &mut Tx<'_>,
    flag_id: &str,
    event: &str,
    key: &str,
    payload: &str,
    now_ms: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let q = "INSERT INTO desk_updates (flag_id, event, message_key, payload, received_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING RETURNING seq";
    with_tx!(tx, |c| sqlx::query_scalar(q).bind(flag_id).bind(event).bind(key).bind(payload).bind(now_ms).fetch_optional(&mut **c).await)
}

/// Stores a flag message: a new flag opens; a known one takes the new severity and payload, and
/// opens again if it was closed (a new call on a closed flag is something new to look at).
pub async fn upsert_flag(tx: &mut Tx<'_>, m: &FlagMessage, payload: &str, now_ms: i64) -> Result<(), sqlx::Error> {
    let q =
        "INSERT INTO desk_flags (flag_id, kind, severity, status, call_id, caller_ref, channel, division, payload, raised_ms, updated_ms) \
             VALUES ($1, $2, $3, 'open', $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (flag_id) DO UPDATE SET severity = excluded.severity, payload = excluded.payload, call_id = excluded.call_id, \
             updated_ms = excluded.updated_ms, status = CASE WHEN desk_flags.status = 'closed' THEN 'open' ELSE desk_flags.status END";
    with_tx!(tx, |c| sqlx::query(q)
        .bind(&m.flag_id)
        .bind(m.kind.as_str())
        .bind(m.severity.as_str())
        .bind(&m.call_id)
        .bind(m.caller_ref.as_deref())
        .bind(m.channel.as_str())
        .bind(m.division.as_deref())
        .bind(payload)
        .bind(m.raised_ms())
        .bind(now_ms)
        .execute(&mut **c)
        .await
        .map(|_| ()))
}

// Nurses' changes.

/// Acknowledges an open flag; 0 rows when it is not open.
pub async fn acknowledge(tx: &mut Tx<'_>, flag_id: &str, by: &str, now_ms: i64) -> Result<u64, sqlx::Error> {
    let q =
        "UPDATE desk_flags SET status = 'acknowledged', acknowledged_by = $1, acknowledged_ms = $2 WHERE flag_id = $3 AND status = 'open'";
    with_tx!(tx, |c| sqlx::query(q).bind(by).bind(now_ms).bind(flag_id).execute(&mut **c).await.map(|r| r.rows_affected()))
}

/// Closes a flag with an outcome (acknowledging it too if it was not); 0 rows when closed.
pub async fn close(tx: &mut Tx<'_>, flag_id: &str, outcome: &str, note: &str, by: &str, now_ms: i64) -> Result<u64, sqlx::Error> {
    let q = "UPDATE desk_flags SET status = 'closed', outcome = $1, note = $2, closed_by = $3, closed_ms = $4, \
             acknowledged_by = COALESCE(acknowledged_by, $3), acknowledged_ms = COALESCE(acknowledged_ms, $4) WHERE flag_id = $5 AND status <> 'closed'";
    with_tx!(tx, |c| sqlx::query(q)
        .bind(outcome)
        .bind(note)
        .bind(by)
        .bind(now_ms)
        .bind(flag_id)
        .execute(&mut **c)
        .await
        .map(|r| r.rows_affected()))
}

/// Records a nurse's verdict on a flag: one per nurse per flag, the last one counts.
pub async fn record_feedback(tx: &mut Tx<'_>, flag_id: &str, by: &str, verdict: &str, note: &str, now_ms: i64) -> Result<u64, sqlx::Error> {
    let q = "INSERT INTO desk_feedback (flag_id, user_name, verdict, note, at_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (flag_id, user_name) DO UPDATE SET verdict = excluded.verdict, note = excluded.note, at_ms = excluded.at_ms";
    with_tx!(tx, |c| sqlx::query(q)
        .bind(flag_id)
        .bind(by)
        .bind(verdict)
        .bind(note)
        .bind(now_ms)
        .execute(&mut **c)
        .await
        .map(|r| r.rows_affected()))
}

// Reads for the page and the API.

pub async fn flags(db: &Db, status: Option<&str>, kind: Option<&str>, limit: i64) -> Result<Vec<FlagRow>, sqlx::Error> {
    let q = format!(
        "SELECT {FLAG_COLUMNS} FROM desk_flags WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR kind = $2) \
         ORDER BY raised_ms DESC, flag_id DESC LIMIT $3"
    );
    with_db!(db, |pool| sqlx::query_as(&q).bind(status).bind(kind).bind(limit).fetch_all(pool).await)
}

pub async fn flag(db: &Db, flag_id: &str) -> Result<Option<FlagRow>, sqlx::Error> {
    let q = format!("SELECT {FLAG_COLUMNS} FROM desk_flags WHERE flag_id = $1");
    with_db!(db, |pool| sqlx::query_as(&q).bind(flag_id).fetch_optional(pool).await)
}

/// A flag's stream entries in order: (seq, event, payload, received).
pub async fn flag_updates(db: &Db, flag_id: &str) -> Result<Vec<(i64, String, String, i64)>, sqlx::Error> {
    let q = "SELECT seq, event, payload, received_ms FROM desk_updates WHERE flag_id = $1 ORDER BY seq";
    with_db!(db, |pool| sqlx::query_as(q).bind(flag_id).fetch_all(pool).await)
}

/// The newest stream sequence (0 when empty).
pub async fn last_update(db: &Db) -> Result<i64, sqlx::Error> {
    let q = "SELECT COALESCE(MAX(seq), 0) FROM desk_updates";
    with_db!(db, |pool| sqlx::query_scalar(q).fetch_one(pool).await)
}

/// Up to `limit` stream entries after `after`: (seq, event, payload).
pub async fn updates_after(db: &Db, after: i64, limit: i64) -> Result<Vec<(i64, String, String)>, sqlx::Error> {
    let q = "SELECT seq, event, payload FROM desk_updates WHERE seq > $1 ORDER BY seq LIMIT $2";
    with_db!(db, |pool| sqlx::query_as(q).bind(after).bind(limit).fetch_all(pool).await)
}

/// A caller's calls, newest first: (call, event time, channel, division).
pub async fn caller_calls(db: &Db, caller_ref: &str, limit: i64) -> Result<Vec<CallerCall>, sqlx::Error> {
    let q = "SELECT call_id, occurred_ms, channel, division FROM flagger_caller_calls WHERE phone_ref = $1 OR address_ref = $1 \
             ORDER BY occurred_ms DESC LIMIT $2";
    with_db!(db, |pool| sqlx::query_as(q).bind(caller_ref).bind(limit).fetch_all(pool).await)
}

pub async fn caller_flags(db: &Db, caller_ref: &str, limit: i64) -> Result<Vec<FlagRow>, sqlx::Error> {
    let q = format!("SELECT {FLAG_COLUMNS} FROM desk_flags WHERE caller_ref = $1 ORDER BY raised_ms DESC LIMIT $2");
    with_db!(db, |pool| sqlx::query_as(&q).bind(caller_ref).bind(limit).fetch_all(pool).await)
}

/// The callers with most calls since `since_ms`: (caller reference, identity, calls).
pub async fn top_callers(db: &Db, since_ms: i64, limit: i64) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    let q = "SELECT ref, identity, n FROM ( \
               SELECT phone_ref AS ref, 'phone' AS identity, COUNT(*) AS n FROM flagger_caller_calls \
                 WHERE phone_ref IS NOT NULL AND occurred_ms >= $1 GROUP BY phone_ref \
               UNION ALL \
               SELECT address_ref AS ref, 'address' AS identity, COUNT(*) AS n FROM flagger_caller_calls \
                 WHERE address_ref IS NOT NULL AND occurred_ms >= $1 GROUP BY address_ref \
             ) t ORDER BY n DESC, ref LIMIT $2";
    with_db!(db, |pool| sqlx::query_as(q).bind(since_ms).bind(limit).fetch_all(pool).await)
}

// Figures for the metrics and the feedback export.

/// Flags not closed: (kind, severity, count).
pub async fn open_counts(db: &Db) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    let q = "SELECT kind, severity, COUNT(*) FROM desk_flags WHERE status <> 'closed' GROUP BY kind, severity";
    with_db!(db, |pool| sqlx::query_as(q).fetch_all(pool).await)
}

/// When the oldest flag still open (not acknowledged) was raised, by severity.
pub async fn oldest_open(db: &Db) -> Result<Vec<(String, Option<i64>)>, sqlx::Error> {
    let q = "SELECT severity, MIN(raised_ms) FROM desk_flags WHERE status = 'open' GROUP BY severity";
    with_db!(db, |pool| sqlx::query_as(q).fetch_all(pool).await)
}

/// Verdicts in force with their flag: (kind, flag payload, verdict).
pub async fn verdicts(db: &Db) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    let q = "SELECT f.kind, f.payload, b.verdict FROM desk_feedback b JOIN desk_flags f ON f.flag_id = b.flag_id";
    with_db!(db, |pool| sqlx::query_as(q).fetch_all(pool).await)
}

/// Verdicts on mental-health flags, oldest first: (flag, verdict, at, flag payload).
pub async fn mental_health_verdicts(db: &Db) -> Result<Vec<(String, String, i64, String)>, sqlx::Error> {
    let q = "SELECT b.flag_id, b.verdict, b.at_ms, f.payload FROM desk_feedback b JOIN desk_flags f ON f.flag_id = b.flag_id \
             WHERE f.kind = 'mental_health' ORDER BY b.at_ms, b.flag_id";
    with_db!(db, |pool| sqlx::query_as(q).fetch_all(pool).await)
}

/// Demand's calls first seen since `since_ms`, through the view its migrations own:
/// (first seen, channel, offered, answered, abandoned).
pub async fn demand_calls_since(db: &Db, since_ms: i64) -> Result<Vec<(i64, String, Option<i64>, Option<i64>, i16)>, sqlx::Error> {
    let q = "SELECT first_ms, channel, offered_ms, answered_ms, abandoned FROM demand_call_times WHERE first_ms >= $1";
    with_db!(db, |pool| sqlx::query_as(q).bind(since_ms).fetch_all(pool).await)
}

/// Flags raised or closed in `[from_ms, to_ms)`: (kind, raised, outcome, closed).
pub async fn flags_between(db: &Db, from_ms: i64, to_ms: i64) -> Result<Vec<(String, i64, Option<String>, Option<i64>)>, sqlx::Error> {
    let q = "SELECT kind, raised_ms, outcome, closed_ms FROM desk_flags \
             WHERE (raised_ms >= $1 AND raised_ms < $2) OR (closed_ms >= $1 AND closed_ms < $2)";
    with_db!(db, |pool| sqlx::query_as(q).bind(from_ms).bind(to_ms).fetch_all(pool).await)
}

/// Demand's answered and offered times of calls first seen in `[from_ms, to_ms)` on a channel.
pub async fn demand_answer_times(
    db: &Db,
    channel: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(i64, Option<i64>, Option<i64>)>, sqlx::Error> {
    let q = "SELECT first_ms, offered_ms, answered_ms FROM demand_call_times WHERE channel = $1 AND first_ms >= $2 AND first_ms < $3";
    with_db!(db, |pool| sqlx::query_as(q).bind(channel).bind(from_ms).bind(to_ms).fetch_all(pool).await)
}
