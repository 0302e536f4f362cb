//! Flags: the list, one flag with its history, and nurses' changes (acknowledge, outcome,
//! feedback).

use super::{iso, ApiError, JsonBody};
use crate::auth::User;
use crate::change::{self, Change};
use crate::state::AppState;
use crate::store::{self, FlagRow};
use axum::extract::{Path, Query, State};
use axum::Json;
use lantern_shared::domain::mask::mask;
use lantern_shared::domain::{listed, FlagKind, Outcome, Role, Verdict};
use serde::Deserialize;
use serde_json::{json, Value};

/// Longest note a nurse may write.
const MAX_NOTE: usize = 4000;
const STATUSES: [&str; 3] = ["open", "acknowledged", "closed"];

/// A flag as the API shows it.
pub fn flag_json(r: FlagRow) -> Value {
    let payload: Value = serde_json::from_str(&r.payload).unwrap_or(Value::Null);
    json!({
        "flag_id": r.flag_id, "kind": r.kind, "severity": r.severity, "status": r.status, "call_id": r.call_id, "caller_ref": r.caller_ref,
        "channel": r.channel, "division": r.division, "reasons": payload.get("reasons").cloned().unwrap_or(Value::Null),
        "occurred_at": payload.get("occurred_at").cloned().unwrap_or(Value::Null),
        "raised_at": iso(Some(r.raised_ms)), "updated_at": iso(Some(r.updated_ms)),
        "acknowledged_by": r.acknowledged_by, "acknowledged_at": iso(r.acknowledged_ms), "outcome": r.outcome, "note": r.note,
        "closed_by": r.closed_by, "closed_at": iso(r.closed_ms),
    })
}

/// Flags as the API shows them, each with its caller's latest referral (status, team), so the
/// page can say where the caller stands.
async fn with_referrals(state: &AppState, rows: Vec<FlagRow>) -> Result<Vec<Value>, ApiError> {
    let refs: Vec<String> = rows.iter().filter_map(|r| r.caller_ref.clone()).collect();
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    let referrals = store::latest_referrals(&state.db, &refs).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let referral = r.caller_ref.as_ref().and_then(|c| referrals.get(c));
            let mut v = flag_json(r);
            v["referral"] =
                referral.map(|x| json!({"referral_id": x.referral_id, "status": x.status, "team": x.team})).unwrap_or(Value::Null);
            v
        })
        .collect())
}

async fn load(state: &AppState, flag_id: &str) -> Result<FlagRow, ApiError> {
    store::flag(&state.db, flag_id).await?.ok_or(ApiError::NotFound("flag"))
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    kind: Option<String>,
    limit: Option<i64>,
}

pub async fn list(State(state): State<AppState>, user: User, Query(q): Query<ListQuery>) -> Result<Json<Value>, ApiError> {
    user.require(&[Role::Nurse, Role::Inspector])?;
    let status = q.status.filter(|s| !s.is_empty());
    if let Some(s) = status.as_deref().filter(|s| !STATUSES.contains(s)) {
        return Err(ApiError::BadRequest(format!("status `{s}` must be open, acknowledged or closed")));
    }
    let kind = q.kind.filter(|k| !k.is_empty());
    if let Some(k) = kind.as_deref().filter(|k| FlagKind::parse(k).is_none()) {
        return Err(ApiError::BadRequest(format!("kind `{k}` must be repeat_caller or mental_health")));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be between 1 and 1000".into()));
    }
    let rows = store::flags(&state.db, status.as_deref(), kind.as_deref(), limit).await?;
    Ok(Json(Value::Array(with_referrals(&state, rows).await?)))
}

pub async fn one(State(state): State<AppState>, user: User, Path(flag_id): Path<String>) -> Result<Json<Value>, ApiError> {
    user.require(&[Role::Nurse, Role::Inspector])?;
    let row = load(&state, &flag_id).await?;
    let updates = store::flag_updates(&state.db, &flag_id).await?;
    let mut flag = with_referrals(&state, vec![row]).await?.pop().unwrap_or(Value::Null);
    flag["updates"] = updates
        .into_iter()
        .map(|(seq, event, payload, at)| json!({"seq": seq, "event": event, "received_at": iso(Some(at)), "message": serde_json::from_str::<Value>(&payload).unwrap_or(Value::Null)}))
        .collect();
    Ok(Json(flag))
}

pub async fn acknowledge(
    State(state): State<AppState>,
    user: User,
    Path(flag_id): Path<String>,
    JsonBody(_body): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    user.require(&[Role::Nurse])?;
    let row = load(&state, &flag_id).await?;
    let now = state.clock.now_ms();
    if !change::apply(&state, &user, &flag_id, Change::Acknowledge, now).await? {
        return Err(ApiError::Conflict(format!("flag {flag_id} is already {}", row.status)));
    }
    state.metrics.acknowledged(&row.kind, row.raised_ms, now);
    Ok(Json(flag_json(load(&state, &flag_id).await?)))
}

#[derive(Deserialize)]
pub struct OutcomeBody {
    outcome: String,
    #[serde(default)]
    note: Option<String>,
}

pub async fn outcome(
    State(state): State<AppState>,
    user: User,
    Path(flag_id): Path<String>,
    JsonBody(body): JsonBody<OutcomeBody>,
) -> Result<Json<Value>, ApiError> {
    user.require(&[Role::Nurse])?;
    let Some(outcome) = Outcome::parse(&body.outcome) else {
        return Err(ApiError::BadRequest(format!("outcome `{}` must be one of {}", body.outcome, listed(&Outcome::ALL, Outcome::as_str))));
    };
    let note = mask(&body.note.unwrap_or_default());
    if note.len() > MAX_NOTE {
        return Err(ApiError::BadRequest(format!("note is over {MAX_NOTE} characters")));
    }
    let row = load(&state, &flag_id).await?;
    let now = state.clock.now_ms();
    if !change::apply(&state, &user, &flag_id, Change::Outcome { outcome: outcome.as_str(), note: &note }, now).await? {
        return Err(ApiError::Conflict(format!("flag {flag_id} is already closed")));
    }
    if row.acknowledged_ms.is_none() {
        state.metrics.acknowledged(&row.kind, row.raised_ms, now);
    }
    state.metrics.outcomes.with_label_values(&[outcome.as_str()]).inc();
    if outcome == Outcome::S136Avoided {
        for (agency, saving) in state.live.load().unit_savings.iter() {
            state.metrics.savings.with_label_values(&[agency]).inc_by(saving.pounds());
        }
    }
    Ok(Json(flag_json(load(&state, &flag_id).await?)))
}

#[derive(Deserialize)]
pub struct FeedbackBody {
    verdict: String,
    #[serde(default)]
    note: Option<String>,
}

/// A nurse's verdict on a flag: one per nurse per flag, the last one counts; audited, counted.
pub async fn feedback(
    State(state): State<AppState>,
    user: User,
    Path(flag_id): Path<String>,
    JsonBody(body): JsonBody<FeedbackBody>,
) -> Result<Json<Value>, ApiError> {
    user.require(&[Role::Nurse])?;
    let Some(verdict) = Verdict::parse(&body.verdict) else {
        return Err(ApiError::BadRequest(format!("verdict `{}` must be one of {}", body.verdict, listed(&Verdict::ALL, Verdict::as_str))));
    };
    let note = mask(body.note.as_deref().unwrap_or_default());
    if note.len() > MAX_NOTE {
        return Err(ApiError::BadRequest(format!("note is over {MAX_NOTE} characters")));
    }
    let row = load(&state, &flag_id).await?;
    let now = state.clock.now_ms();
    change::apply(&state, &user, &flag_id, Change::Feedback { verdict: verdict.as_str(), note: &note }, now).await?;
    state.metrics.feedback.with_label_values(&[&row.kind, verdict.as_str()]).inc();
    if let Err(e) = crate::metrics::refresh_feedback(&state.db, &state.metrics).await {
        tracing::warn!(error = %e, "could not count feedback for the dashboard");
    }
    Ok(Json(json!({"flag_id": flag_id, "by": user.name, "verdict": verdict.as_str(), "note": note, "at": iso(Some(now))})))
}
