//! Routes of the flag desk (SPEC section 6).

use crate::auth::{session_token, User, COOKIE};
use crate::error::{ApiError, JsonBody};
use crate::metrics::OUTCOMES;
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use lantern_shared::config::Role;
use lantern_shared::{with_db, Span};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(crate::page::index))
        .route("/login", get(crate::page::login_form).post(login))
        .route("/logout", post(logout))
        .route("/assets/desk.js", get(crate::page::script))
        .route("/assets/desk.css", get(crate::page::style))
        .route("/api/me", get(me))
        .route("/api/flags", get(list_flags))
        .route("/api/flags/stream", get(stream))
        .route("/api/flags/{flag_id}", get(one_flag))
        .route("/api/flags/{flag_id}/acknowledge", post(acknowledge))
        .route("/api/flags/{flag_id}/outcome", post(outcome))
        .route("/api/flags/{flag_id}/feedback", post(feedback))
        .route("/api/callers/top", get(top_callers))
        .route("/api/callers/{caller_ref}", get(caller))
        .route("/api/audit", get(audit))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Headers on every response: no inline script, no framing, no sniffing, no referrer.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn iso(ms: Option<i64>) -> Value {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, false)))
        .unwrap_or(Value::Null)
}

async fn audit_log(state: &AppState, user: &User, action: &str, target: &str, reason: Option<&str>) -> Result<(), ApiError> {
    let db = &state.db;
    let role = format!("{:?}", user.role).to_lowercase();
    let q = "INSERT INTO desk_audit (at_ms, user_name, role, action, target, reason) VALUES ($1, $2, $3, $4, $5, $6)";
    with_db!(db, |pool| sqlx::query(q)
        .bind(state.clock.now_ms())
        .bind(&user.name)
        .bind(&role)
        .bind(action)
        .bind(target)
        .bind(reason)
        .execute(pool)
        .await
        .map(|_| ()))?;
    Ok(())
}

/// A nurse's change to a flag.
enum Change<'a> {
    Acknowledge,
    Outcome { outcome: &'a str, note: &'a str },
    Feedback { verdict: &'a str, note: &'a str },
}

/// Applies a change to a flag, with its audit entry and its live-stream update, in one
/// transaction: a change never happens without its audit entry. On PostgreSQL the transaction
/// takes the stream's advisory lock, so stream sequence numbers are handed out in commit order.
/// Returns false (and changes nothing) when the flag is not in a state the change applies to.
async fn change_flag(state: &AppState, user: &User, flag_id: &str, change: Change<'_>, now: i64) -> Result<bool, ApiError> {
    let role = format!("{:?}", user.role).to_lowercase();
    let (action, update) = match &change {
        Change::Acknowledge => {
            ("acknowledge".to_string(), json!({"flag_id": flag_id, "status": "acknowledged", "by": user.name, "at": iso(Some(now))}))
        }
        Change::Outcome { outcome, .. } => (
            format!("outcome:{outcome}"),
            json!({"flag_id": flag_id, "status": "closed", "outcome": outcome, "by": user.name, "at": iso(Some(now))}),
        ),
        // Feedback is not shown on other pages' live streams.
        Change::Feedback { verdict, .. } => (format!("feedback:{verdict}"), Value::Null),
    };
    let key = format!("{flag_id}:status:{}", uuid_like());
    let mut seq = None;
    let mut changed_any = false;
    macro_rules! body {
        ($pool:expr, $lock:expr) => {{
            let mut tx = $pool.begin().await?;
            if $lock {
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(crate::ingest::UPDATES_LOCK).execute(&mut *tx).await?;
            }
            let changed = match &change {
                Change::Acknowledge => sqlx::query(
                    "UPDATE desk_flags SET status = 'acknowledged', acknowledged_by = $1, acknowledged_ms = $2 WHERE flag_id = $3 AND status = 'open'",
                )
                .bind(&user.name)
                .bind(now)
                .bind(flag_id)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                Change::Outcome { outcome, note } => sqlx::query(
                    "UPDATE desk_flags SET status = 'closed', outcome = $1, note = $2, closed_by = $3, closed_ms = $4, \
                     acknowledged_by = COALESCE(acknowledged_by, $3), acknowledged_ms = COALESCE(acknowledged_ms, $4) WHERE flag_id = $5 AND status <> 'closed'",
                )
                .bind(*outcome)
                .bind(*note)
                .bind(&user.name)
                .bind(now)
                .bind(flag_id)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                // One verdict per nurse per flag: the last one counts.
                Change::Feedback { verdict, note } => sqlx::query(
                    "INSERT INTO desk_feedback (flag_id, user_name, verdict, note, at_ms) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (flag_id, user_name) DO UPDATE SET verdict = excluded.verdict, note = excluded.note, at_ms = excluded.at_ms",
                )
                .bind(flag_id)
                .bind(&user.name)
                .bind(*verdict)
                .bind(*note)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            };
            if changed > 0 {
                sqlx::query("INSERT INTO desk_audit (at_ms, user_name, role, action, target, reason) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(now)
                    .bind(&user.name)
                    .bind(&role)
                    .bind(&action)
                    .bind(flag_id)
                    .bind(None::<String>)
                    .execute(&mut *tx)
                    .await?;
                if !update.is_null() {
                    let s: i64 = sqlx::query_scalar(
                        "INSERT INTO desk_updates (flag_id, event, message_key, payload, received_ms) VALUES ($1, 'status', $2, $3, $4) RETURNING seq",
                    )
                    .bind(flag_id)
                    .bind(&key)
                    .bind(update.to_string())
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    seq = Some(s);
                }
                tx.commit().await?;
                changed_any = true;
            }
        }};
    }
    match &state.db {
        lantern_shared::store::Db::Sqlite(pool) => body!(pool, false),
        lantern_shared::store::Db::Postgres(pool) => body!(pool, true),
    }
    if let Some(seq) = seq {
        let _ = state.updates.send(seq);
    }
    if changed_any {
        let _ = crate::metrics::refresh(state).await;
    }
    Ok(changed_any)
}

fn uuid_like() -> String {
    data_encoding::HEXLOWER.encode(&rand::random::<[u8; 12]>())
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
}

async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let users = state.users.load();
    match state.auth.verify(&users, &form.name, &form.password).await {
        Some(user) => {
            let _ = audit_log(&state, &user, "sign_in", "desk", None).await;
            let token = match state.auth.start_session(&state.db, user).await {
                Ok(token) => token,
                Err(e) => {
                    tracing::error!(error = %e, "could not store a desk session");
                    let page = crate::page::login_page(Some("Signing in failed: the desk cannot reach its database. Try again shortly."));
                    return (StatusCode::SERVICE_UNAVAILABLE, page).into_response();
                }
            };
            let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200");
            let mut resp = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        None => (StatusCode::UNAUTHORIZED, crate::page::login_page(Some("That name and password do not match."))).into_response(),
    }
}

async fn logout(State(state): State<AppState>, req: axum::extract::Request) -> Response {
    let (parts, _) = req.into_parts();
    if let Some(t) = session_token(&parts) {
        if let Err(e) = state.auth.end_session(&state.db, &t).await {
            tracing::warn!(error = %e, "could not delete a desk session");
        }
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_static("lantern_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"));
    resp
}

async fn me(user: User) -> Json<Value> {
    Json(json!({"name": user.name, "role": format!("{:?}", user.role).to_lowercase()}))
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    kind: Option<String>,
    limit: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct FlagRow {
    flag_id: String,
    kind: String,
    severity: String,
    status: String,
    call_id: String,
    caller_ref: Option<String>,
    channel: Option<String>,
    division: Option<String>,
    payload: String,
    raised_ms: i64,
    updated_ms: i64,
    acknowledged_by: Option<String>,
    acknowledged_ms: Option<i64>,
    outcome: Option<String>,
    note: Option<String>,
    closed_by: Option<String>,
    closed_ms: Option<i64>,
}
const FLAG_COLUMNS: &str = "flag_id, kind, severity, status, call_id, caller_ref, channel, division, payload, raised_ms, updated_ms, acknowledged_by, acknowledged_ms, outcome, note, closed_by, closed_ms";

fn flag_json(r: FlagRow) -> Value {
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

async fn list_flags(State(state): State<AppState>, user: User, Query(q): Query<ListQuery>) -> Result<Json<Value>, ApiError> {
    user.require(&[Role::Nurse, Role::Inspector])?;
    let status = q.status.filter(|s| !s.is_empty());
    if let Some(s) = &status {
        if !["open", "acknowledged", "closed"].contains(&s.as_str()) {
            return Err(ApiError::BadRequest(format!("status `{s}` must be open, acknowledged or closed")));
        }
    }
    let kind = q.kind.filter(|k| !k.is_empty());
    if let Some(k) = &kind {
        if !["repeat_caller", "mental_health"].contains(&k.as_str()) {
            return Err(ApiError::BadRequest(format!("kind `{k}` must be repeat_caller or mental_health")));
        }
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be between 1 and 1000".into()));
    }
    let sql = format!(
        "SELECT {FLAG_COLUMNS} FROM desk_flags WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR kind = $2) ORDER BY raised_ms DESC, flag_id DESC LIMIT $3"
    );
    let db = &state.db;
    let rows: Vec<FlagRow> =
        with_db!(db, |pool| sqlx::query_as(&sql).bind(status.as_deref()).bind(kind.as_deref()).bind(limit).fetch_all(pool).await)?;
    Ok(Json(Value::Array(rows.into_iter().map(flag_json).collect())))
}

async fn load_flag(state: &AppState, flag_id: &str) -> Result<FlagRow, ApiError> {
    let sql = format!("SELECT {FLAG_COLUMNS} FROM desk_flags WHERE flag_id = $1");
    let db = &state.db;
    let row: Option<FlagRow> = with_db!(db, |pool| sqlx::query_as(&sql).bind(flag_id).fetch_optional(pool).await)?;
    row.ok_or(ApiError::NotFound("flag"))
}

async fn one_flag(State(state): State<AppState>, user: User, Path(flag_id): Path<String>) -> Result<Json<Value>, ApiError> {
    user.require(&[Role::Nurse, Role::Inspector])?;
    let row = load_flag(&state, &flag_id).await?;
    let db = &state.db;
    let q = "SELECT seq, event, payload, received_ms FROM desk_updates WHERE flag_id = $1 ORDER BY seq";
    let updates: Vec<(i64, String, String, i64)> = with_db!(db, |pool| sqlx::query_as(q).bind(&flag_id).fetch_all(pool).await)?;
    let mut flag = flag_json(row);
    flag["updates"] = updates
        .into_iter()
        .map(|(seq, event, payload, at)| json!({"seq": seq, "event": event, "received_at": iso(Some(at)), "message": serde_json::from_str::<Value>(&payload).unwrap_or(Value::Null)}))
        .collect();
    Ok(Json(flag))
}

async fn acknowledge(
    State(state): State<AppState>,
    user: User,
    Path(flag_id): Path<String>,
    JsonBody(_body): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    user.require(&[Role::Nurse])?;
    let row = load_flag(&state, &flag_id).await?;
    let now = state.clock.now_ms();
    if !change_flag(&state, &user, &flag_id, Change::Acknowledge, now).await? {
        return Err(ApiError::Conflict(format!("flag {flag_id} is already {}", row.status)));
    }
    state.metrics.acknowledge_seconds.with_label_values(&[&row.kind]).observe(((now - row.raised_ms).max(0)) as f64 / 1000.0);
    let row = load_flag(&state, &flag_id).await?;
    Ok(Json(flag_json(row)))
}

#[derive(Deserialize)]
struct OutcomeBody {
    outcome: String,
    #[serde(default)]
    note: Option<String>,
}

async fn outcome(
    State(state): State<AppState>,
    user: User,
    Path(flag_id): Path<String>,
    JsonBody(body): JsonBody<OutcomeBody>,
) -> Result<Json<Value>, ApiError> {
    user.require(&[Role::Nurse])?;
    if !OUTCOMES.contains(&body.outcome.as_str()) {
        return Err(ApiError::BadRequest(format!("outcome `{}` must be one of {}", body.outcome, OUTCOMES.join(", "))));
    }
    let note = body.note.unwrap_or_default();
    if note.len() > 4000 {
        return Err(ApiError::BadRequest("note is over 4000 characters".into()));
    }
    let row = load_flag(&state, &flag_id).await?;
    let now = state.clock.now_ms();
    if !change_flag(&state, &user, &flag_id, Change::Outcome { outcome: &body.outcome, note: &note }, now).await? {
        return Err(ApiError::Conflict(format!("flag {flag_id} is already closed")));
    }
    if row.acknowledged_ms.is_none() {
        state.metrics.acknowledge_seconds.with_label_values(&[&row.kind]).observe(((now - row.raised_ms).max(0)) as f64 / 1000.0);
    }
    state.metrics.outcomes.with_label_values(&[&body.outcome]).inc();
    if body.outcome == "s136_avoided" {
        for (agency, pounds) in state.unit_savings.load().iter() {
            state.metrics.savings.with_label_values(&[agency]).inc_by(*pounds);
        }
    }
    let row = load_flag(&state, &flag_id).await?;
    Ok(Json(flag_json(row)))
}

pub const VERDICTS: [&str; 3] = ["useful", "not_useful", "wrong_person"];

#[derive(Deserialize)]
struct FeedbackBody {
    verdict: String,
    #[serde(default)]
    note: Option<String>,
}

/// A nurse's verdict on a flag: one per nurse per flag, the last one counts; audited, counted.
async fn feedback(
    State(state): State<AppState>,
    user: User,
    Path(flag_id): Path<String>,
    JsonBody(body): JsonBody<FeedbackBody>,
) -> Result<Json<Value>, ApiError> {
    user.require(&[Role::Nurse])?;
    if !VERDICTS.contains(&body.verdict.as_str()) {
        return Err(ApiError::BadRequest(format!("verdict `{}` must be one of {}", body.verdict, VERDICTS.join(", "))));
    }
    let note = lantern_shared::mask::mask(body.note.as_deref().unwrap_or_default());
    if note.len() > 4000 {
        return Err(ApiError::BadRequest("note is over 4000 characters".into()));
    }
    let row = load_flag(&state, &flag_id).await?;
    let now = state.clock.now_ms();
    change_flag(&state, &user, &flag_id, Change::Feedback { verdict: &body.verdict, note: &note }, now).await?;
    state.metrics.feedback.with_label_values(&[&row.kind, &body.verdict]).inc();
    if let Err(e) = crate::metrics::refresh_feedback(&state).await {
        tracing::warn!(error = %e, "could not count feedback for the dashboard");
    }
    Ok(Json(json!({"flag_id": flag_id, "by": user.name, "verdict": body.verdict, "note": note, "at": iso(Some(now))})))
}

#[derive(Deserialize)]
struct StreamQuery {
    after: Option<i64>,
}

/// Server-sent events: every flag message and desk change, `id:` = its sequence. A client
/// resumes with `Last-Event-ID` (or `?after=`) and gets everything after it, from the database.
async fn stream(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Result<impl IntoResponse, ApiError> {
    user.require(&[Role::Nurse, Role::Inspector])?;
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<i64>().ok()).or(q.after);
    let db = state.db.clone();
    // Subscribe before the first read, so nothing slips between the two.
    let rx = state.updates.subscribe();
    let start = match last {
        Some(seq) => seq,
        None => {
            // A new page starts from now: it loads current flags through /api/flags.
            let q = "SELECT COALESCE(MAX(seq), 0) FROM desk_updates";
            with_db!(&db, |pool| sqlx::query_scalar::<_, i64>(q).fetch_one(pool).await)?
        }
    };
    let stopping = state.stopping.clone();
    let events = futures::stream::unfold(
        (db, rx, start, std::collections::VecDeque::<(i64, String, String)>::new()),
        move |(db, mut rx, mut after, mut queue)| {
            let stopping = stopping.clone();
            async move {
                loop {
                    if let Some((seq, event, payload)) = queue.pop_front() {
                        let ev = Event::default().id(seq.to_string()).event(event).data(payload);
                        return Some((Ok::<_, Infallible>(ev), (db, rx, after, queue)));
                    }
                    let q = "SELECT seq, event, payload FROM desk_updates WHERE seq > $1 ORDER BY seq LIMIT 500";
                    let rows: Vec<(i64, String, String)> = match with_db!(&db, |pool| sqlx::query_as(q).bind(after).fetch_all(pool).await) {
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
                        r = rx.recv() => r,
                    };
                    match told {
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

#[derive(Deserialize)]
struct CallerQuery {
    reason: Option<String>,
}

async fn caller(
    State(state): State<AppState>,
    user: User,
    Path(caller_ref): Path<String>,
    Query(q): Query<CallerQuery>,
) -> Result<Json<Value>, ApiError> {
    user.require(&[Role::Nurse])?;
    let reason = q.reason.map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).ok_or_else(|| {
        ApiError::BadRequest("reason is required: say why you are looking at this caller's history (it is written to the audit log)".into())
    })?;
    if reason.len() > 500 {
        return Err(ApiError::BadRequest("reason is over 500 characters".into()));
    }
    if lantern_shared::pseudonym::CallerRef::parse(&caller_ref).is_none() {
        return Err(ApiError::BadRequest("caller_ref must be a 16-character caller reference".into()));
    }
    audit_log(&state, &user, "view_caller", &caller_ref, Some(&reason)).await?;
    let db = &state.db;
    let q = "SELECT call_id, occurred_ms, channel, division FROM flagger_calls WHERE phone_ref = $1 OR address_ref = $1 ORDER BY occurred_ms DESC LIMIT 200";
    let calls: Vec<(String, i64, String, Option<String>)> = with_db!(db, |pool| sqlx::query_as(q).bind(&caller_ref).fetch_all(pool).await)?;
    let sql = format!("SELECT {FLAG_COLUMNS} FROM desk_flags WHERE caller_ref = $1 ORDER BY raised_ms DESC LIMIT 100");
    let flags: Vec<FlagRow> = with_db!(db, |pool| sqlx::query_as(&sql).bind(&caller_ref).fetch_all(pool).await)?;
    Ok(Json(json!({
        "caller_ref": caller_ref,
        "calls": calls.into_iter().map(|(id, ms, ch, div)| json!({"call_id": id, "occurred_at": iso(Some(ms)), "channel": ch, "division": div})).collect::<Vec<_>>(),
        "flags": flags.into_iter().map(flag_json).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
struct TopQuery {
    window: Option<String>,
    limit: Option<i64>,
}

async fn top_callers(State(state): State<AppState>, user: User, Query(q): Query<TopQuery>) -> Result<Json<Value>, ApiError> {
    user.require(&[Role::Nurse, Role::Inspector])?;
    let window: Span = q
        .window
        .as_deref()
        .unwrap_or("90d")
        .parse()
        .map_err(|e: lantern_shared::duration::SpanError| ApiError::BadRequest(format!("window: {e}")))?;
    let limit = q.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be between 1 and 100".into()));
    }
    let since = state.clock.now_ms() - window.millis();
    let db = &state.db;
    let q = "SELECT ref, identity, n FROM ( \
               SELECT phone_ref AS ref, 'phone' AS identity, COUNT(*) AS n FROM flagger_calls WHERE phone_ref IS NOT NULL AND occurred_ms >= $1 GROUP BY phone_ref \
               UNION ALL \
               SELECT address_ref AS ref, 'address' AS identity, COUNT(*) AS n FROM flagger_calls WHERE address_ref IS NOT NULL AND occurred_ms >= $1 GROUP BY address_ref \
             ) t ORDER BY n DESC, ref LIMIT $2";
    let rows: Vec<(String, String, i64)> = with_db!(db, |pool| sqlx::query_as(q).bind(since).bind(limit).fetch_all(pool).await)?;
    Ok(Json(json!({
        "window": window.to_string(),
        "callers": rows.into_iter().map(|(r, i, n)| json!({"caller_ref": r, "identity": i, "calls": n})).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<i64>,
}

async fn audit(State(state): State<AppState>, user: User, Query(q): Query<AuditQuery>) -> Result<Json<Value>, ApiError> {
    if user.role != Role::Admin {
        return Err(ApiError::Forbidden);
    }
    let limit = q.limit.unwrap_or(200).clamp(1, 5000);
    let db = &state.db;
    let q = "SELECT at_ms, user_name, role, action, target, reason FROM desk_audit ORDER BY id DESC LIMIT $1";
    let rows: Vec<(i64, String, String, String, String, Option<String>)> =
        with_db!(db, |pool| sqlx::query_as(q).bind(limit).fetch_all(pool).await)?;
    Ok(Json(Value::Array(
        rows.into_iter()
            .map(|(at, u, r, a, t, why)| json!({"at": iso(Some(at)), "user": u, "role": r, "action": a, "target": t, "reason": why}))
            .collect(),
    )))
}
