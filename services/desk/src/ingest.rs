//! Flags in from MQTT: validated, stored, then acked; a repeated message (the flagger publishes
//! again after a crash) changes nothing. A message that is not a valid flag, or that reuses a
//! flag id for another call or caller, is refused and counted, never retried.

use crate::store::{self, UPDATES_LOCK};
use lantern_shared::domain::flag::{FlagKind, FlagMessage, FlagRejection};
use lantern_shared::runtime::consumer::CommitError;
use lantern_shared::store::Db;

/// What a batch committed: the last stream sequence it added, and the messages refused for
/// clashing with a stored flag (index in the batch, why).
#[derive(Debug, Default)]
pub struct Committed {
    pub last_seq: Option<i64>,
    pub refused: Vec<(usize, FlagRejection)>,
}

/// Why a message may not change the stored flag (kind, call, caller) it names, if it may not.
pub fn conflict(m: &FlagMessage, stored: &(String, String, Option<String>)) -> Option<FlagRejection> {
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
/// The live stream's sequence numbers are handed out in commit order (see [`UPDATES_LOCK`]).
pub async fn store(db: &Db, items: &[Result<FlagMessage, FlagRejection>], now_ms: i64) -> Result<Committed, CommitError> {
    let msgs: Vec<(usize, &FlagMessage)> = items.iter().enumerate().filter_map(|(i, m)| m.as_ref().ok().map(|m| (i, m))).collect();
    if msgs.is_empty() {
        return Ok(Committed::default());
    }
    let mut out = Committed::default();
    let mut tx = db.begin().await?;
    tx.serialize_on(UPDATES_LOCK).await?;
    for (index, m) in msgs {
        if let Some(why) = store::stored_flag(&mut tx, &m.flag_id).await?.and_then(|s| conflict(m, &s)) {
            out.refused.push((index, why));
            continue;
        }
        let payload = m.to_json();
        let key = format!("{}:{}:{}", m.flag_id, m.status.as_str(), m.event_id);
        let Some(seq) = store::add_update(&mut tx, &m.flag_id, "flag", &key, &payload, now_ms).await? else { continue };
        out.last_seq = Some(seq);
        store::upsert_flag(&mut tx, m, &payload, now_ms).await?;
    }
    tx.commit().await?;
    Ok(out)
}
