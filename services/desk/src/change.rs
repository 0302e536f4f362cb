//! A nurse's change to a flag, applied with its audit entry and its live-stream entry in one
//! transaction: a change never happens without its audit entry, and on PostgreSQL the
//! transaction takes the stream's advisory lock, so stream numbers follow commit order.

use crate::auth::User;
use crate::state::AppState;
use crate::store::{self, AuditEntry, UPDATES_LOCK};
use lantern_shared::domain::clock::rfc3339_ms;
use serde_json::{json, Value};

/// What a nurse does to a flag.
pub enum Change<'a> {
    Acknowledge,
    Outcome { outcome: &'a str, note: &'a str },
    Feedback { verdict: &'a str, note: &'a str },
}

impl Change<'_> {
    /// The audit action: `acknowledge`, `outcome:<outcome>`, `feedback:<verdict>`.
    fn action(&self) -> String {
        match self {
            Change::Acknowledge => "acknowledge".to_string(),
            Change::Outcome { outcome, .. } => format!("outcome:{outcome}"),
            Change::Feedback { verdict, .. } => format!("feedback:{verdict}"),
        }
    }

    /// What live pages are told; feedback is not shown on other pages' streams.
    fn update(&self, flag_id: &str, by: &str, now_ms: i64) -> Option<Value> {
        match self {
            Change::Acknowledge => Some(json!({"flag_id": flag_id, "status": "acknowledged", "by": by, "at": rfc3339_ms(now_ms)})),
            Change::Outcome { outcome, .. } => {
                Some(json!({"flag_id": flag_id, "status": "closed", "outcome": outcome, "by": by, "at": rfc3339_ms(now_ms)}))
            }
            Change::Feedback { .. } => None,
        }
    }
}

/// Applies `change`. Returns false, changing nothing, when the flag is not in a state the
/// change applies to (acknowledging a flag not open, closing a closed one).
pub async fn apply(state: &AppState, user: &User, flag_id: &str, change: Change<'_>, now_ms: i64) -> Result<bool, sqlx::Error> {
    let mut tx = state.db.begin().await?;
    tx.serialize_on(UPDATES_LOCK).await?;
    let changed = match &change {
        Change::Acknowledge => store::acknowledge(&mut tx, flag_id, &user.name, now_ms).await?,
        Change::Outcome { outcome, note } => store::close(&mut tx, flag_id, outcome, note, &user.name, now_ms).await?,
        Change::Feedback { verdict, note } => store::record_feedback(&mut tx, flag_id, &user.name, verdict, note, now_ms).await?,
    };
    if changed == 0 {
        return Ok(false);
    }
    let action = change.action();
    let entry = AuditEntry { at_ms: now_ms, user: &user.name, role: user.role.as_str(), action: &action, target: flag_id, reason: None };
    store::audit(&mut tx, &entry).await?;
    let mut seq = None;
    if let Some(update) = change.update(flag_id, &user.name, now_ms) {
        let key = format!("{flag_id}:status:{}", data_encoding::HEXLOWER.encode(&rand::random::<[u8; 12]>()));
        seq = store::add_update(&mut tx, flag_id, "status", &key, &update.to_string(), now_ms).await?;
    }
    tx.commit().await?;
    state.changed(seq).await;
    Ok(true)
}

/// Writes an audit entry of its own (signing in, viewing a caller's history).
pub async fn audit(state: &AppState, user: &User, action: &str, target: &str, reason: Option<&str>) -> Result<(), sqlx::Error> {
    audit_as(state, user, user.role.as_str(), action, target, reason).await
}

/// [`audit`] with the role written as given (`unknown` for a failed sign-in).
pub async fn audit_as(
    state: &AppState,
    user: &User,
    role: &str,
    action: &str,
    target: &str,
    reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    let mut tx = state.db.begin().await?;
    let entry = AuditEntry { at_ms: state.clock.now_ms(), user: &user.name, role, action, target, reason };
    store::audit(&mut tx, &entry).await?;
    tx.commit().await
}
