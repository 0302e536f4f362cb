//! Flags in from MQTT: stored, then acked; a repeated message (the flagger publishes again
//! after a crash) changes nothing.

use crate::AppState;
use lantern_shared::mqtt::Received;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct FlagMsg {
    flag_id: String,
    status: String,
    kind: String,
    severity: String,
    call_id: String,
    #[serde(default)]
    event_id: String,
    #[serde(default)]
    raised_at: Option<String>,
    #[serde(default)]
    caller_ref: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    division: Option<String>,
}

fn parse(payload: &[u8]) -> Option<(FlagMsg, String)> {
    let text = std::str::from_utf8(payload).ok()?;
    let m: FlagMsg = serde_json::from_str(text).ok()?;
    let known = ["repeat_caller", "mental_health"].contains(&m.kind.as_str())
        && ["low", "medium", "high"].contains(&m.severity.as_str())
        && ["raised", "updated"].contains(&m.status.as_str())
        && !m.flag_id.is_empty()
        && m.flag_id.len() <= 64;
    known.then(|| (m, text.to_string()))
}

/// Stores a batch of flag messages; returns the last stream sequence it added, if any.
pub async fn store(state: &AppState, batch: &[Received]) -> Result<Option<i64>, sqlx::Error> {
    let msgs: Vec<(FlagMsg, String)> = batch
        .iter()
        .filter_map(|r| {
            let parsed = parse(&r.publish.payload);
            if parsed.is_none() {
                tracing::warn!(topic = %r.publish.topic, "ignored a message on the flag topics that is not a flag");
            }
            parsed
        })
        .collect();
    commit(state, &msgs).await
}

async fn commit(state: &AppState, msgs: &[(FlagMsg, String)]) -> Result<Option<i64>, sqlx::Error> {
    if msgs.is_empty() {
        return Ok(None);
    }
    let now = chrono::Utc::now().timestamp_millis();
    let mut last = None;
    macro_rules! body {
        ($pool:expr) => {{
            let mut tx = $pool.begin().await?;
            for (m, payload) in msgs {
                let key = format!("{}:{}:{}", m.flag_id, m.status, m.event_id);
                let seq: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO desk_updates (flag_id, event, message_key, payload, received_ms) VALUES ($1, 'flag', $2, $3, $4) ON CONFLICT DO NOTHING RETURNING seq",
                )
                .bind(&m.flag_id)
                .bind(&key)
                .bind(payload)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(seq) = seq else { continue };
                last = Some(seq);
                let raised_ms = m.raised_at.as_deref().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).map(|t| t.timestamp_millis()).unwrap_or(now);
                // A new call on a closed flag opens it again: there is something new to look at.
                sqlx::query(
                    "INSERT INTO desk_flags (flag_id, kind, severity, status, call_id, caller_ref, channel, division, payload, raised_ms, updated_ms) \
                     VALUES ($1, $2, $3, 'open', $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (flag_id) DO UPDATE SET severity = excluded.severity, payload = excluded.payload, call_id = excluded.call_id, \
                     updated_ms = excluded.updated_ms, status = CASE WHEN desk_flags.status = 'closed' THEN 'open' ELSE desk_flags.status END",
                )
                .bind(&m.flag_id)
                .bind(&m.kind)
                .bind(&m.severity)
                .bind(&m.call_id)
                .bind(m.caller_ref.as_deref())
                .bind(m.channel.as_deref())
                .bind(m.division.as_deref())
                .bind(payload)
                .bind(raised_ms)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        }};
    }
    match &state.db {
        lantern_shared::store::Db::Sqlite(pool) => body!(pool),
        lantern_shared::store::Db::Postgres(pool) => body!(pool),
    }
    Ok(last)
}
