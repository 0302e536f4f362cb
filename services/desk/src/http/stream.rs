//! The live stream (server-sent events): every flag message and desk change, `id:` = its
//! sequence. A client resumes with `Last-Event-ID` (or `?after=`) and gets everything after it,
//! from the database.

use super::ApiError;
use crate::auth::User;
use crate::state::AppState;
use crate::store;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use lantern_shared::domain::Role;
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use tokio::sync::broadcast::error::RecvError;

/// Entries read from the database at a time.
const PAGE: i64 = 500;
/// How often a stream checks that whoever opened it may still read it (SPEC: at least every
/// 30 s); a user removed, whose role or password changed, or signed out, loses the stream.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(15);
/// How often a quiet stream reads the database for entries it was not told of: those written
/// by another desk instance (several desks serve at once; one ingests).
const POLL: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Deserialize)]
pub struct StreamQuery {
    after: Option<i64>,
}

pub async fn stream(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    connect: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    Query(q): Query<StreamQuery>,
) -> Result<impl IntoResponse, ApiError> {
    user.require(&[Role::Nurse, Role::Inspector])?;
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<i64>().ok()).or(q.after);
    // Subscribe before the first read, so nothing slips between the two.
    let rx = state.updates.subscribe();
    let start = match last {
        Some(seq) => seq,
        // A new page starts from now: it loads current flags through /api/flags.
        None => store::last_update(&state.db).await?,
    };
    let stopping = state.stopping.clone();
    let from = connect.map(|c| c.0 .0.ip());
    let who = (state.clone(), headers, user);
    let mut checked = tokio::time::Instant::now();
    let events = futures::stream::unfold((state.db.clone(), rx, start, VecDeque::new()), move |(db, mut rx, mut after, mut queue)| {
        let stopping = stopping.clone();
        let who = who.clone();
        let due = checked.elapsed() >= RECHECK;
        if due {
            checked = tokio::time::Instant::now();
        }
        async move {
            if due && !still_allowed(&who.0, &who.1, from, &who.2).await {
                return None;
            }
            let mut quiet = tokio::time::Instant::now();
            loop {
                if let Some((seq, event, payload)) = queue.pop_front() {
                    let ev = Event::default().id(i64::to_string(&seq)).event(event).data(payload);
                    return Some((Ok::<_, Infallible>(ev), (db, rx, after, queue)));
                }
                let rows = match store::updates_after(&db, after, PAGE).await {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::warn!(error = %e, "live stream could not read updates; closing it so the page reconnects");
                        return None;
                    }
                };
                if let Some(last) = rows.last() {
                    after = last.0;
                    queue.extend(rows);
                    continue;
                }
                // Nothing new: wait for a tell. Lagging only means "read again", never skipping.
                // At shutdown the stream ends, so the server can stop and the page reconnects.
                let told = tokio::select! {
                    _ = stopping.cancelled() => return None,
                    r = rx.recv() => Some(r),
                    // Wake to read again, and now and then to check the reader, even when
                    // nothing happens.
                    _ = tokio::time::sleep(POLL) => None,
                };
                match told {
                    Some(Err(RecvError::Closed)) => return None,
                    None if quiet.elapsed() >= RECHECK => {
                        if !still_allowed(&who.0, &who.1, from, &who.2).await {
                            return None;
                        }
                        quiet = tokio::time::Instant::now();
                    }
                    _ => {}
                }
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// Whoever opened the stream may still read it, with the same role.
async fn still_allowed(state: &AppState, headers: &HeaderMap, from: Option<std::net::IpAddr>, opened_by: &User) -> bool {
    super::authenticate(state, headers, from).await.is_ok_and(|u| u == *opened_by)
}
