//! The desk's routes (SPEC section 6), one file per resource: the page and sign-in
//! ([`page`], [`session`]), flags and nurses' changes to them ([`flags`]), the live stream
//! ([`stream`]), callers ([`callers`]) and the audit log ([`audit`]). [`router`] needs no
//! broker: tests call it directly.

mod audit;
mod callers;
mod error;
mod flags;
mod page;
mod privacy;
mod session;
mod stream;
#[cfg(test)]
mod tests;

pub use audit::csv as audit_csv;
pub use error::{ApiError, JsonBody};
pub use flags::flag_json;

use crate::state::AppState;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use lantern_shared::domain::clock::rfc3339_ms;
use serde_json::Value;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/login", get(page::login_form).post(session::login))
        .route("/logout", post(session::logout))
        .route("/assets/desk.js", get(page::script))
        .route("/assets/desk.css", get(page::style))
        .route("/api/me", get(session::me))
        .route("/api/flags", get(flags::list))
        .route("/api/flags/stream", get(stream::stream))
        .route("/api/flags/{flag_id}", get(flags::one))
        .route("/api/flags/{flag_id}/acknowledge", post(flags::acknowledge))
        .route("/api/flags/{flag_id}/outcome", post(flags::outcome))
        .route("/api/flags/{flag_id}/feedback", post(flags::feedback))
        .route("/api/callers/top", get(callers::top))
        .route("/api/callers/{caller_ref}", get(callers::history))
        .route("/api/audit", get(audit::entries))
        .route("/api/subject-access", get(privacy::subject_access))
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

/// A time as the API writes it (RFC 3339, milliseconds), or null.
pub fn iso(ms: Option<i64>) -> Value {
    ms.map(|ms| Value::String(rfc3339_ms(ms))).unwrap_or(Value::Null)
}
