//! The reports of SPEC section 11 on the desk: JSON for the page and for other systems; the
//! vulnerable-callers list also as CSV, each export audited as a disclosure.

use super::ApiError;
use crate::auth::User;
use crate::reports::{self, demand, impact, mh_team, vulnerable, Format, Period};
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lantern_shared::domain::Role;
use lantern_shared::Span;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
pub struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
    window: Option<String>,
    format: Option<String>,
    limit: Option<i64>,
}

fn period(state: &AppState, q: &ReportQuery, default_days: i64) -> Result<Period, ApiError> {
    Period::from_bounds(q.from.as_deref(), q.to.as_deref(), state.clock.now_ms(), default_days).map_err(ApiError::BadRequest)
}

fn json<T: serde::Serialize>(r: &T) -> Json<Value> {
    Json(serde_json::to_value(r).unwrap_or(Value::Null))
}

/// `GET /api/reports/impact?from=&to=&window=`.
pub async fn impact(State(state): State<AppState>, user: User, Query(q): Query<ReportQuery>) -> Result<Json<Value>, ApiError> {
    user.require(&[Role::Inspector, Role::EarlyAction])?;
    let period = period(&state, &q, 365)?;
    let live = state.live.load();
    let window = match q.window.as_deref().filter(|w| !w.is_empty()) {
        Some(w) => w.parse::<Span>().map_err(|e| ApiError::BadRequest(format!("window: {e}")))?.millis(),
        None => live.early_action.impact_window.millis(),
    };
    if window <= 0 {
        return Err(ApiError::BadRequest("window must be longer than 0s".into()));
    }
    Ok(json(&impact::report(&state.db, period, window, &live.early_action.risk_factors, state.clock.now_ms()).await?))
}

/// `GET /api/reports/mh-team?from=&to=`.
pub async fn mh_team(State(state): State<AppState>, user: User, Query(q): Query<ReportQuery>) -> Result<Json<Value>, ApiError> {
    user.require(&[Role::Inspector])?;
    let period = period(&state, &q, 30)?;
    Ok(json(&mh_team::report(&state.db, period, &state.live.load().unit_savings).await?))
}

/// `GET /api/reports/demand?from=&to=`.
pub async fn demand(State(state): State<AppState>, user: User, Query(q): Query<ReportQuery>) -> Result<Json<Value>, ApiError> {
    user.require(&[Role::Inspector])?;
    let period = period(&state, &q, 365)?;
    Ok(json(&demand::report(&state.db, period).await?))
}

/// `GET /api/reports/vulnerable-callers?from=&to=&format=json|csv`: audited as a disclosure.
pub async fn vulnerable_callers(State(state): State<AppState>, user: User, Query(q): Query<ReportQuery>) -> Result<Response, ApiError> {
    user.require(&[Role::Inspector, Role::EarlyAction])?;
    let period = period(&state, &q, 30)?;
    let format = Format::parse(q.format.as_deref().unwrap_or("json")).map_err(ApiError::BadRequest)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let r = vulnerable::report(&state.db, period, limit).await?;
    let reason = format!("{} callers, {} to {}", r.callers.len(), r.from, r.to);
    crate::change::audit(&state, &user, "export_vulnerable_callers", "report", Some(&reason)).await?;
    Ok(match format {
        Format::Json => json(&r).into_response(),
        Format::Csv => ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], vulnerable::tables(&r).remove(0).1.csv()).into_response(),
        Format::Markdown => {
            ([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], reports::render(format, &r, vulnerable::tables(&r))).into_response()
        }
    })
}
