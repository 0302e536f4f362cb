//! The audit log, for admins.

use super::{iso, ApiError};
use crate::auth::User;
use crate::state::AppState;
use crate::store;
use axum::extract::{Query, State};
use axum::Json;
use lantern_shared::domain::Role;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<i64>,
}

pub async fn entries(State(state): State<AppState>, user: User, Query(q): Query<AuditQuery>) -> Result<Json<Value>, ApiError> {
    if user.role != Role::Admin {
        return Err(ApiError::Forbidden);
    }
    let rows = store::audit_entries(&state.db, q.limit.unwrap_or(200).clamp(1, 5000)).await?;
    Ok(Json(Value::Array(
        rows.into_iter()
            .map(|(at, u, r, a, t, why)| json!({"at": iso(Some(at)), "user": u, "role": r, "action": a, "target": t, "reason": why}))
            .collect(),
    )))
}
