//! Flags in from MQTT: validated, stored, then acked; a repeated message (the flagger publishes
//! again after a crash) changes nothing. A message that is not a valid flag, or that reuses a
//! flag id for another call or caller, is refused and counted, never retried.

use crate::AppState;
use lantern_shared::consumer::CommitError;
use lantern_shared::flag::{FlagKind, FlagMessage, FlagRejection};
use lantern_shared::store::Db;

/// Key of the transaction-level advisory lock every PostgreSQL writer of `desk_updates` takes, so
/// sequence numbers are handed out in commit order and a live stream never skips one.
pub const UPDATES_LOCK: i64 = 0x6c616e7465726e01;

/// What a batch committed: the last stream sequence it added, and the messages refused for
/// clashing with a stored flag (index in the batch, why).
#[derive(Debug, Default)]
pub struct Committed {
    pub last_seq: Option<i64>,
    pub refused: Vec<(usize, FlagRejection)>,
}

/// The stored flag a new message must agree with.
fn conflict(m: &FlagMessage, stored: &(String, String, Option<String>)) -> Option<FlagRejection> {
    let (kind, call_id, caller_ref) = stored;
    let clash = if kind != m.kind.as_str() {
        Some(format!("flag {} is a {kind} flag; this message says {}", m.flag_id, m.kind.as_str()))
    } else if m.kind == FlagKind::MentalHealth && *call_id != m.call_id {
        Some(format!("flag {} belongs to another call", m.flag_id))
    } else if m.kind == FlagKind::RepeatCaller && *caller_ref != m.caller_ref {
        Some(format!("flag {} belongs to another caller", m.flag_id))
    } else {
        None
    };
    clash.map(|why| FlagRejection::new("flag_id_conflict", format!("field `flag_id`: {why}")))
}

/// Stores the valid messages of a batch (`items[i]` belongs to message `i`) in one transaction.
pub async fn store(state: &AppState, items: &[Result<FlagMessage, FlagRejection>], now: i64) -> Result<Committed, CommitError> {
    let msgs: Vec<(usize, &FlagMessage)> = items.iter().enumerate().filter_map(|(i, m)| m.as_ref().ok().map(|m| (i, m))).collect();
    if msgs.is_empty() {
        return Ok(Committed::default());
    }
    let mut out = Committed::default();
    macro_rules! body {
        ($pool:expr, $lock:expr) => {{
            let mut tx = $pool.begin().await?;
            if $lock {
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(UPDATES_LOCK).execute(&mut *tx).await?;
            }
            for (index, m) in &msgs {
                let stored: Option<(String, String, Option<String>)> =
                    sqlx::query_as("SELECT kind, call_id, caller_ref FROM desk_flags WHERE flag_id = $1").bind(&m.flag_id).fetch_optional(&mut *tx).await?;
                if let Some(why) = stored.as_ref().and_then(|s| conflict(m, s)) {
                    out.refused.push((*index, why));
                    continue;
                }
                let payload = m.to_json();
                let key = format!("{}:{}:{}", m.flag_id, m.status.as_str(), m.event_id);
                let seq: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO desk_updates (flag_id, event, message_key, payload, received_ms) VALUES ($1, 'flag', $2, $3, $4) ON CONFLICT DO NOTHING RETURNING seq",
                )
                .bind(&m.flag_id)
                .bind(&key)
                .bind(&payload)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(seq) = seq else { continue };
                out.last_seq = Some(seq);
                // A new call on a closed flag opens it again: there is something new to look at.
                sqlx::query(
                    "INSERT INTO desk_flags (flag_id, kind, severity, status, call_id, caller_ref, channel, division, payload, raised_ms, updated_ms) \
                     VALUES ($1, $2, $3, 'open', $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (flag_id) DO UPDATE SET severity = excluded.severity, payload = excluded.payload, call_id = excluded.call_id, \
                     updated_ms = excluded.updated_ms, status = CASE WHEN desk_flags.status = 'closed' THEN 'open' ELSE desk_flags.status END",
                )
                .bind(&m.flag_id)
                .bind(m.kind.as_str())
                .bind(m.severity.as_str())
                .bind(&m.call_id)
                .bind(m.caller_ref.as_deref())
                .bind(m.channel.as_str())
                .bind(m.division.as_deref())
                .bind(&payload)
                .bind(m.raised_ms())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        }};
    }
    match &state.db {
        Db::Sqlite(pool) => body!(pool, false),
        Db::Postgres(pool) => body!(pool, true),
    }
    Ok(out)
}
