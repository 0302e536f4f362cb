//! Signing in and out, who is signed in, and how every request is authenticated: the session
//! cookie (the page) or HTTP Basic (API clients).

use super::page::login_page;
use super::ApiError;
use crate::auth::{Refused, User, COOKIE, SECURE_COOKIE};
use crate::state::AppState;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{FromRequest, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use lantern_shared::domain::mask::mask;
use lantern_shared::domain::Role;
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};

/// The client's address, as the socket gives it (never a header a client could set).
pub fn client_addr(parts: &Parts) -> Option<IpAddr> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// True when the request reached the desk over HTTPS: the desk serves TLS itself, or a reverse
/// proxy in front of it says so.
pub fn over_https(state: &AppState, headers: &HeaderMap) -> bool {
    state.tls || headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// The session token in a request's cookies (either cookie name).
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == COOKIE || k == SECURE_COOKIE).then(|| v.to_string()).filter(|v| !v.is_empty())
    })
}

/// The name and password of an HTTP Basic `Authorization` header.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let b64 = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(data_encoding::BASE64.decode(b64.trim().as_bytes()).ok()?).ok()?;
    let (name, password) = decoded.split_once(':')?;
    Some((name.to_string(), password.to_string()))
}

/// Counts, logs (never the password) and audits a failed sign-in.
async fn failed(state: &AppState, name: &str, from: Option<IpAddr>, via: &str) {
    state.metrics.signin_failures.inc();
    let name = mask(name);
    let from = from.map(|a| a.to_string()).unwrap_or_else(|| "an unknown address".into());
    tracing::warn!(user = %name, from = %from, via, "sign-in failed");
    let attempted = User { name: name.clone(), role: Role::Nurse };
    let reason = format!("from {from} ({via})");
    if let Err(e) = crate::change::audit_as(state, &attempted, "unknown", "sign_in_failed", "desk", Some(&reason)).await {
        tracing::warn!(error = %e, "could not audit a failed sign-in");
    }
}

fn refused(r: Refused) -> ApiError {
    match r {
        Refused::Wrong => ApiError::Unauthorized,
        Refused::Throttled { retry_after_secs } => ApiError::TooManyAttempts(retry_after_secs),
        Refused::Busy => ApiError::Busy,
    }
}

/// Who is asking: a live session, else HTTP Basic credentials, else nobody (401).
pub async fn authenticate(state: &AppState, headers: &HeaderMap, from: Option<IpAddr>) -> Result<User, ApiError> {
    let users = state.users.load();
    let now = state.clock.now_ms();
    if let Some(token) = session_token(headers) {
        if let Some(u) = state.auth.session(&state.db, &token, &users, now, state.idle_ms()).await {
            return Ok(u);
        }
    }
    let Some((name, password)) = basic(headers) else { return Err(ApiError::Unauthorized) };
    match state.auth.verify(&users, &name, &password, from, now).await {
        Ok(u) => Ok(u),
        Err(r) => {
            if r == Refused::Wrong {
                failed(state, &name, from, "basic").await;
            }
            Err(refused(r))
        }
    }
}

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        authenticate(state, &parts.headers, client_addr(parts)).await
    }
}

/// What a signed-in user's role allows.
impl User {
    /// Refuses unless the user has one of `roles` (admins may do everything else).
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.role == Role::Admin || roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    /// Refuses unless the user has one of `roles` exactly: routes that are not for admins
    /// (a caller's history: admins read the audit log, not caller histories).
    pub fn require_only(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
}

fn session_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")).ok()
}

pub async fn login(State(state): State<AppState>, req: axum::extract::Request) -> Response {
    let from = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let https = over_https(&state, req.headers());
    let Ok(Form(form)) = Form::<LoginForm>::from_request(req, &state).await else {
        return (StatusCode::BAD_REQUEST, login_page(Some("Sign in with a name and a password."))).into_response();
    };
    let users = state.users.load();
    let user = match state.auth.verify(&users, &form.name, &form.password, from, state.clock.now_ms()).await {
        Ok(u) => u,
        Err(Refused::Wrong) => {
            failed(&state, &form.name, from, "form").await;
            return (StatusCode::UNAUTHORIZED, login_page(Some("That name and password do not match."))).into_response();
        }
        Err(Refused::Throttled { retry_after_secs }) => {
            let mut resp =
                (StatusCode::TOO_MANY_REQUESTS, login_page(Some("Too many attempts. Wait a little, then try again."))).into_response();
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            return resp;
        }
        Err(Refused::Busy) => {
            let mut resp = (StatusCode::SERVICE_UNAVAILABLE, login_page(Some("The desk is busy. Try again in a moment."))).into_response();
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
            return resp;
        }
    };
    if let Err(e) = crate::change::audit(&state, &user, "sign_in", "desk", None).await {
        tracing::warn!(error = %e, "could not audit a sign-in");
    }
    let token = match state.auth.start_session(&state.db, &users, &user, state.clock.now_ms()).await {
        Ok(token) => token,
        Err(e) => {
            tracing::error!(error = %e, "could not store a desk session");
            let page = login_page(Some("Signing in failed: the desk cannot reach its database. Try again shortly."));
            return (StatusCode::SERVICE_UNAVAILABLE, page).into_response();
        }
    };
    let mut resp = Redirect::to("/").into_response();
    let name = if https { SECURE_COOKIE } else { COOKIE };
    if let Some(v) = session_cookie(name, &token, crate::auth::SESSION_MAX_MS / 1000, https) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Ends the session in the database (so on every desk instance) and clears the cookie.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(t) = session_token(&headers) {
        if let Err(e) = state.auth.end_session(&state.db, &t).await {
            tracing::warn!(error = %e, "could not delete a desk session");
        }
    }
    let https = over_https(&state, &headers);
    let mut resp = Redirect::to("/login").into_response();
    for (name, secure) in [(COOKIE, false), (SECURE_COOKIE, true)] {
        if secure && !https {
            continue;
        }
        if let Some(v) = session_cookie(name, "", 0, secure) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

pub async fn me(user: User) -> Json<Value> {
    Json(json!({"name": user.name, "role": user.role.as_str()}))
}
