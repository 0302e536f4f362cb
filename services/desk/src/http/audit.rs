//! The audit log, for admins: newest first as JSON, or the whole log as CSV (`?format=csv`),
//! which is itself audited as an export.

use super::{iso, ApiError};
use crate::auth::User;
use crate::state::AppState;
use crate::store::{self, AuditRow};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lantern_shared::domain::clock::rfc3339_ms;
use lantern_shared::domain::Role;
use serde::Deserialize;
use serde_json::{json, Value};

/// Most entries one CSV export holds.
const MAX_EXPORT: i64 = 1_000_000;

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<i64>,
    format: Option<String>,
}

pub async fn entries(State(state): State<AppState>, user: User, Query(q): Query<AuditQuery>) -> Result<Response, ApiError> {
    if user.role != Role::Admin {
        return Err(ApiError::Forbidden);
    }
    match q.format.as_deref() {
        None | Some("json") => {
            let rows = store::audit_newest(&state.db, q.limit.unwrap_or(200).clamp(1, 5000)).await?;
            Ok(Json(Value::Array(rows.into_iter().map(entry_json).collect())).into_response())
        }
        Some("csv") => {
            let limit = q.limit.unwrap_or(MAX_EXPORT).clamp(1, MAX_EXPORT);
            let reason = format!("audit log exported as CSV (newest {limit} entries at most)");
            crate::change::audit(&state, &user, "export_audit", "desk_audit", Some(&reason)).await?;
            let mut rows = store::audit_newest(&state.db, limit).await?;
            rows.reverse();
            let body = csv(&rows).map_err(|e| ApiError::Internal(format!("writing the CSV: {e}")))?;
            Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (header::CONTENT_DISPOSITION, "attachment; filename=\"lantern-audit.csv\""),
                ],
                body,
            )
                .into_response())
        }
        Some(other) => Err(ApiError::BadRequest(format!("format `{other}` must be json or csv"))),
    }
}

fn entry_json(r: AuditRow) -> Value {
    json!({"id": r.id, "at": iso(Some(r.at_ms)), "user": r.user_name, "role": r.role, "action": r.action, "target": r.target, "reason": r.reason, "hash": r.hash})
}

/// The entries as CSV, oldest first, with the chain's hashes so the export can be checked.
pub fn csv(rows: &[AuditRow]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["id", "at", "user", "role", "action", "target", "reason", "prev_hash", "hash"])?;
    for r in rows {
        let id = r.id.to_string();
        let at = rfc3339_ms(r.at_ms);
        w.write_record([
            id.as_str(),
            at.as_str(),
            &r.user_name,
            &r.role,
            &r.action,
            &r.target,
            r.reason.as_deref().unwrap_or_default(),
            r.prev_hash.as_deref().unwrap_or_default(),
            r.hash.as_deref().unwrap_or_default(),
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| csv::Error::from(std::io::Error::other(e.to_string())))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
