//! Referrals to early-action teams (SPEC sections 6 and 11): a nurse (or early-action staff)
//! refers a caller; early-action staff record when the intervention started (`engaged`) and
//! ended (`closed`). Every step is audited and told to live pages.

use super::{iso, ApiError, JsonBody};
use crate::auth::User;
use crate::state::AppState;
use crate::store::{self, AuditEntry, ReferralRow, UPDATES_LOCK};
use axum::extract::{Path, Query, State};
use axum::Json;
use lantern_shared::domain::flag::{FlagMessage, Reasons};
use lantern_shared::domain::mask::mask;
use lantern_shared::domain::pseudonym::CallerRef;
use lantern_shared::domain::Role;
use serde::Deserialize;
use serde_json::{json, Value};

const MAX_NOTE: usize = 4000;
const STATUSES: [&str; 3] = ["referred", "engaged", "closed"];

/// A referral as the API shows it.
pub fn referral_json(r: &ReferralRow) -> Value {
    json!({
        "referral_id": r.referral_id, "caller_ref": r.caller_ref, "team": r.team, "risk_factors": r.risk_factors(),
        "note": r.note, "status": r.status, "flag_id": r.flag_id,
        "referred_by": r.referred_by, "referred_at": iso(Some(r.referred_ms)),
        "engaged_by": r.engaged_by, "engaged_at": iso(r.engaged_ms), "closed_by": r.closed_by, "closed_at": iso(r.closed_ms),
        "intervention_at": iso(Some(r.intervention_ms())),
    })
}

fn checked_caller(caller_ref: &str) -> Result<(), ApiError> {
    if CallerRef::parse(caller_ref).is_none() {
        return Err(ApiError::BadRequest("caller_ref must be a 16-character caller reference".into()));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferBody {
    team: String,
    #[serde(default)]
    risk_factors: Vec<String>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    flag_id: Option<String>,
}

/// `POST /api/callers/{caller_ref}/referrals`.
pub async fn refer(
    State(state): State<AppState>,
    user: User,
    Path(caller_ref): Path<String>,
    JsonBody(body): JsonBody<ReferBody>,
) -> Result<Json<Value>, ApiError> {
    user.require_only(&[Role::Nurse, Role::EarlyAction])?;
    checked_caller(&caller_ref)?;
    let live = state.live.load();
    let ea = &live.early_action;
    if !ea.teams.contains(&body.team) {
        return Err(ApiError::BadRequest(format!("team `{}` must be one of {}", mask(&body.team), ea.teams.join(", "))));
    }
    if let Some(bad) = body.risk_factors.iter().find(|f| !ea.risk_factors.contains(f)) {
        return Err(ApiError::BadRequest(format!("risk_factors: `{}` must be one of {}", mask(bad), ea.risk_factors.join(", "))));
    }
    let mut factors = body.risk_factors.clone();
    factors.sort();
    factors.dedup();
    let note = mask(body.note.as_deref().unwrap_or_default());
    if note.len() > MAX_NOTE {
        return Err(ApiError::BadRequest(format!("note is over {MAX_NOTE} characters")));
    }
    let now = state.clock.now_ms();
    let row = ReferralRow {
        referral_id: uuid::Uuid::now_v7().hyphenated().to_string(),
        caller_ref: Some(caller_ref.clone()),
        team: body.team.clone(),
        risk_factors: serde_json::to_string(&factors).unwrap_or_else(|_| "[]".into()),
        note: Some(note).filter(|n| !n.is_empty()),
        status: "referred".into(),
        flag_id: body.flag_id.clone().map(|f| mask(&f)),
        referred_by: user.name.clone(),
        referred_ms: now,
        engaged_by: None,
        engaged_ms: None,
        closed_by: None,
        closed_ms: None,
        updated_ms: now,
    };
    let mut tx = state.db.begin().await?;
    tx.serialize_on(UPDATES_LOCK).await?;
    if let Some(open) = store::open_referral(&mut tx, &caller_ref).await? {
        return Err(ApiError::Conflict(format!("this caller is already referred (referral {}, {})", open.referral_id, open.status)));
    }
    store::insert_referral(&mut tx, &row).await?;
    let reason = format!("to {}; risk factors: {}", row.team, factors.join(", "));
    store::audit(
        &mut tx,
        &AuditEntry { at_ms: now, user: &user.name, role: user.role.as_str(), action: "refer", target: &caller_ref, reason: Some(&reason) },
    )
    .await?;
    let update = json!({"referral_id": row.referral_id, "status": row.status, "team": row.team});
    let key = format!("{}:referral:referred", row.referral_id);
    let seq = store::add_update(&mut tx, &row.referral_id, "referral", &key, &update.to_string(), now).await?;
    tx.commit().await?;
    state.metrics.referrals.with_label_values(&[&row.team]).inc();
    state.changed(seq).await;
    Ok(Json(referral_json(&row)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvanceBody {
    status: String,
    at: String,
    #[serde(default)]
    note: Option<String>,
}

/// `POST /api/referrals/{referral_id}`: the intervention started (`engaged`) or ended (`closed`).
pub async fn advance(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AdvanceBody>,
) -> Result<Json<Value>, ApiError> {
    user.require_only(&[Role::EarlyAction])?;
    let engaged = match body.status.as_str() {
        "engaged" => true,
        "closed" => false,
        other => return Err(ApiError::BadRequest(format!("status `{}` must be engaged or closed", mask(other)))),
    };
    let at = chrono::DateTime::parse_from_rfc3339(&body.at)
        .map_err(|e| {
            ApiError::BadRequest(format!("at `{}` must be an RFC 3339 time such as 2026-11-30T09:00:00+00:00 ({e})", mask(&body.at)))
        })?
        .timestamp_millis();
    let now = state.clock.now_ms();
    let note = mask(body.note.as_deref().unwrap_or_default());
    if note.len() > MAX_NOTE {
        return Err(ApiError::BadRequest(format!("note is over {MAX_NOTE} characters")));
    }
    let row = store::referral(&state.db, &id).await?.ok_or(ApiError::NotFound("referral"))?;
    if at > now + 5 * 60_000 {
        return Err(ApiError::BadRequest("at is in the future".into()));
    }
    if at < row.referred_ms {
        return Err(ApiError::BadRequest("at is before the caller was referred".into()));
    }
    if !engaged && row.engaged_ms.is_some_and(|e| at < e) {
        return Err(ApiError::BadRequest("at is before the intervention started".into()));
    }
    let mut tx = state.db.begin().await?;
    tx.serialize_on(UPDATES_LOCK).await?;
    if store::advance_referral(&mut tx, &id, engaged, at, &user.name, &note, now).await? == 0 {
        return Err(ApiError::Conflict(format!("referral {id} is already {}", row.status)));
    }
    let action = if engaged { "referral_engaged" } else { "referral_closed" };
    let reason = format!("{} at {}", row.team, lantern_shared::domain::clock::rfc3339_ms(at));
    store::audit(
        &mut tx,
        &AuditEntry { at_ms: now, user: &user.name, role: user.role.as_str(), action, target: &id, reason: Some(&reason) },
    )
    .await?;
    let update = json!({"referral_id": id, "status": body.status, "team": row.team});
    let seq = store::add_update(&mut tx, &id, "referral", &format!("{id}:referral:{}", body.status), &update.to_string(), now).await?;
    tx.commit().await?;
    state.changed(seq).await;
    let row = store::referral(&state.db, &id).await?.ok_or(ApiError::NotFound("referral"))?;
    Ok(Json(referral_json(&row)))
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/referrals?status=`: newest first.
pub async fn list(State(state): State<AppState>, user: User, Query(q): Query<ListQuery>) -> Result<Json<Value>, ApiError> {
    user.require(&[Role::Nurse, Role::Inspector, Role::EarlyAction])?;
    let status = q.status.filter(|s| !s.is_empty());
    if let Some(s) = status.as_deref().filter(|s| !STATUSES.contains(s)) {
        return Err(ApiError::BadRequest(format!("status `{}` must be referred, engaged or closed", mask(s))));
    }
    let limit = q.limit.unwrap_or(200);
    if !(1..=5000).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be between 1 and 5000".into()));
    }
    let rows = store::referrals(&state.db, status.as_deref(), limit).await?;
    Ok(Json(Value::Array(rows.iter().map(referral_json).collect())))
}

#[derive(Deserialize)]
pub struct SuggestQuery {
    caller_ref: Option<String>,
}

/// `GET /api/referrals/suggest?caller_ref=`: the teams and risk factors to choose from, and the
/// risk factors the caller's flags saw (to pre-tick): mental-health cues, and alcohol and drug
/// cues, and the categories that name a factor (self harm, dementia).
pub async fn suggest(State(state): State<AppState>, user: User, Query(q): Query<SuggestQuery>) -> Result<Json<Value>, ApiError> {
    user.require_only(&[Role::Nurse, Role::EarlyAction])?;
    let caller_ref = q.caller_ref.unwrap_or_default();
    checked_caller(&caller_ref)?;
    let live = state.live.load();
    let ea = &live.early_action;
    let mut seen: Vec<String> = Vec::new();
    for f in store::caller_flags(&state.db, &caller_ref, 500).await? {
        let Ok(m) = FlagMessage::parse(f.payload.as_bytes()) else { continue };
        if let Reasons::Cues(cues) = &m.reasons {
            for c in cues.iter().filter(|c| !c.negated) {
                let factor = match c.category.as_str() {
                    "alcohol" => "alcohol",
                    "drugs" => "drugs",
                    "self_harm" | "weapon_self_harm" => "self_harm",
                    "dementia_confusion" => "dementia",
                    _ if c.severity != lantern_shared::domain::Severity::Info => "mental_health",
                    _ => continue,
                };
                seen.push(factor.to_string());
            }
        }
    }
    seen.retain(|f| ea.risk_factors.contains(f));
    seen.sort();
    seen.dedup();
    let open = store::latest_referrals(&state.db, &[caller_ref.as_str()]).await?.remove(&caller_ref).filter(|r| r.status != "closed");
    Ok(Json(json!({
        "teams": ea.teams, "risk_factors": ea.risk_factors, "suggested": seen,
        "open_referral": open.as_ref().map(referral_json),
    })))
}
