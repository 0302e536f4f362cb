//! Subject access for admins (SPEC section 10): every record held about one caller reference.

use super::ApiError;
use crate::auth::User;
use crate::privacy::{self, Request};
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::Json;
use lantern_shared::domain::mask::mask;
use lantern_shared::domain::pseudonym::CallerRef;
use lantern_shared::domain::Role;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
pub struct AccessQuery {
    caller_ref: Option<String>,
    reason: Option<String>,
}

pub async fn subject_access(State(state): State<AppState>, user: User, Query(q): Query<AccessQuery>) -> Result<Json<Value>, ApiError> {
    if user.role != Role::Admin {
        return Err(ApiError::Forbidden);
    }
    let caller_ref = q.caller_ref.unwrap_or_default();
    if CallerRef::parse(&caller_ref).is_none() {
        return Err(ApiError::BadRequest(
            "caller_ref must be a 16-character caller reference (`lantern subject-access --number` computes it from a number)".into(),
        ));
    }
    let reason = q.reason.map(|r| mask(r.trim())).filter(|r| !r.is_empty()).ok_or_else(|| {
        ApiError::BadRequest("reason is required: say why (the request reference, say); it is written to the audit log".into())
    })?;
    if reason.len() > 500 {
        return Err(ApiError::BadRequest("reason is over 500 characters".into()));
    }
    let who = Request { user: &user.name, role: user.role.as_str(), reason: &reason, now_ms: state.clock.now_ms() };
    Ok(Json(privacy::subject_access(&state.db, &[caller_ref.as_str()], &who).await?))
}
