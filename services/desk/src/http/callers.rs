//! Callers: one caller's history (nurses, with a reason, audited) and the most frequent callers.

use super::flags::flag_json;
use super::{iso, ApiError};
use crate::auth::User;
use crate::state::AppState;
use crate::store;
use axum::extract::{Path, Query, State};
use axum::Json;
use lantern_shared::domain::duration::SpanError;
use lantern_shared::domain::mask::mask;
use lantern_shared::domain::pseudonym::CallerRef;
use lantern_shared::domain::Role;
use lantern_shared::Span;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
pub struct HistoryQuery {
    reason: Option<String>,
}

pub async fn history(
    State(state): State<AppState>,
    user: User,
    Path(caller_ref): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    user.require_only(&[Role::Nurse])?;
    let reason = q.reason.map(|r| mask(r.trim())).filter(|r| !r.is_empty()).ok_or_else(|| {
        ApiError::BadRequest("reason is required: say why you are looking at this caller's history (it is written to the audit log)".into())
    })?;
    if reason.len() > 500 {
        return Err(ApiError::BadRequest("reason is over 500 characters".into()));
    }
    if CallerRef::parse(&caller_ref).is_none() {
        return Err(ApiError::BadRequest("caller_ref must be a 16-character caller reference".into()));
    }
    crate::change::audit(&state, &user, "view_caller", &caller_ref, Some(&reason)).await?;
    let calls = store::caller_calls(&state.db, &caller_ref, 200).await?;
    let flags = store::caller_flags(&state.db, &caller_ref, 100).await?;
    Ok(Json(json!({
        "caller_ref": caller_ref,
        "calls": calls.into_iter().map(|(id, ms, ch, div)| json!({"call_id": id, "occurred_at": iso(Some(ms)), "channel": ch, "division": div})).collect::<Vec<_>>(),
        "flags": flags.into_iter().map(flag_json).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
pub struct TopQuery {
    window: Option<String>,
    limit: Option<i64>,
}

pub async fn top(State(state): State<AppState>, user: User, Query(q): Query<TopQuery>) -> Result<Json<Value>, ApiError> {
    user.require(&[Role::Nurse, Role::Inspector])?;
    let window: Span = q.window.as_deref().unwrap_or("90d").parse().map_err(|e: SpanError| ApiError::BadRequest(format!("window: {e}")))?;
    let limit = q.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be between 1 and 100".into()));
    }
    let rows = store::top_callers(&state.db, state.clock.now_ms() - window.millis(), limit).await?;
    Ok(Json(json!({
        "window": window.to_string(),
        "callers": rows.into_iter().map(|(r, i, n)| json!({"caller_ref": r, "identity": i, "calls": n})).collect::<Vec<_>>(),
    })))
}
