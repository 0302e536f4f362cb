//! The inspector's glance without Grafana (SPEC section 6, `GET /demand`): calls in the last 15
//! minutes, hour and day by channel, 999 calls answered within 10 s, abandonment, open flags by
//! severity and the oldest unacknowledged one. Read-only; the page refreshes it every few
//! seconds from `GET /api/demand`.

use super::ApiError;
use crate::auth::User;
use crate::state::AppState;
use crate::store;
use axum::extract::State;
use axum::Json;
use lantern_shared::domain::clock::rfc3339_ms;
use lantern_shared::domain::{Channel, FlagKind, Role, Severity};
use serde_json::{json, Value};

/// The windows shown, as (name, length in ms).
const WINDOWS: [(&str, i64); 3] = [("15m", 15 * 60_000), ("1h", 3_600_000), ("24h", 86_400_000)];
/// The 999 answer target, in ms.
const TARGET_MS: i64 = 10_000;

pub async fn figures(State(state): State<AppState>, user: User) -> Result<Json<Value>, ApiError> {
    user.require(&[Role::Inspector, Role::Nurse])?;
    let now = state.clock.now_ms();
    let calls = store::demand_calls_since(&state.db, now - WINDOWS[2].1).await?;
    let windows: Vec<Value> = WINDOWS
        .iter()
        .map(|(name, ms)| {
            let recent: Vec<_> = calls.iter().filter(|c| c.0 > now - ms).collect();
            let channels: Vec<Value> = Channel::ALL
                .iter()
                .map(|ch| {
                    let of: Vec<_> = recent.iter().filter(|c| c.1 == ch.as_str()).collect();
                    let answered: Vec<i64> = of.iter().filter_map(|c| Some(c.3? - c.2?)).collect();
                    json!({
                        "channel": ch.as_str(),
                        "calls": of.len(),
                        "answered": answered.len(),
                        "answered_within_10s": answered.iter().filter(|t| **t <= TARGET_MS).count(),
                        "abandoned": of.iter().filter(|c| c.4 != 0).count(),
                    })
                })
                .collect();
            let share = |part: usize, whole: usize| if whole == 0 { Value::Null } else { json!(part as f64 / whole as f64) };
            let all_999: Vec<_> = recent.iter().filter(|c| c.1 == Channel::Emergency.as_str()).collect();
            let answered_999: Vec<i64> = all_999.iter().filter_map(|c| Some(c.3? - c.2?)).collect();
            let offered = recent.iter().filter(|c| c.2.is_some()).count();
            json!({
                "window": name,
                "calls": recent.len(),
                "channels": channels,
                "answered_999_within_10s": share(answered_999.iter().filter(|t| **t <= TARGET_MS).count(), answered_999.len()),
                "abandonment": share(recent.iter().filter(|c| c.4 != 0).count(), offered),
            })
        })
        .collect();
    let open = store::open_counts(&state.db).await?;
    let oldest = store::oldest_open(&state.db).await?;
    let open_flags: Vec<Value> = Severity::ALL
        .iter()
        .rev()
        .map(|s| {
            let count = |k: FlagKind| open.iter().find(|r| r.0 == k.as_str() && r.1 == s.as_str()).map(|r| r.2).unwrap_or(0);
            let age = oldest.iter().find(|r| r.0 == s.as_str()).and_then(|r| r.1).map(|ms| (now - ms).max(0) / 1000);
            json!({
                "severity": s.as_str(),
                "repeat_caller": count(FlagKind::RepeatCaller),
                "mental_health": count(FlagKind::MentalHealth),
                "oldest_unacknowledged_seconds": age,
            })
        })
        .collect();
    Ok(Json(json!({"at": rfc3339_ms(now), "windows": windows, "open_flags": open_flags})))
}
