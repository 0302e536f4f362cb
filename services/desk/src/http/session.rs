//! Signing in and out, and who is signed in.

use super::page::login_page;
use super::ApiError;
use crate::auth::{session_token, User, COOKIE};
use crate::state::AppState;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use lantern_shared::domain::Role;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
}

pub async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let users = state.users.load();
    let Some(user) = state.auth.verify(&users, &form.name, &form.password).await else {
        return (StatusCode::UNAUTHORIZED, login_page(Some("That name and password do not match."))).into_response();
    };
    if let Err(e) = crate::change::audit(&state, &user, "sign_in", "desk", None).await {
        tracing::warn!(error = %e, "could not audit a sign-in");
    }
    let token = match state.auth.start_session(&state.db, user, state.clock.now_ms()).await {
        Ok(token) => token,
        Err(e) => {
            tracing::error!(error = %e, "could not store a desk session");
            let page = login_page(Some("Signing in failed: the desk cannot reach its database. Try again shortly."));
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

pub async fn logout(State(state): State<AppState>, req: axum::extract::Request) -> Response {
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

pub async fn me(user: User) -> Json<Value> {
    Json(json!({"name": user.name, "role": user.role.as_str()}))
}

/// What a signed-in user's role allows.
impl User {
    /// Refuses unless the user has one of `roles` (admins may do everything).
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.role == Role::Admin || roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// Who is asking: a session cookie (the page) or HTTP Basic (API clients).
impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let users = state.users.load();
        if let Some(token) = session_token(parts) {
            if let Some(u) = state.auth.session(&state.db, &token, &users, state.clock.now_ms()).await {
                return Ok(u);
            }
        }
        let basic = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic "));
        if let Some(b64) = basic {
            let decoded = data_encoding::BASE64.decode(b64.trim().as_bytes()).ok().and_then(|b| String::from_utf8(b).ok());
            if let Some((name, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
                if let Some(u) = state.auth.verify(&users, name, password).await {
                    return Ok(u);
                }
            }
        }
        Err(ApiError::Unauthorized)
    }
}
