//! The desk's routes (SPEC section 6), one file per resource: the page and sign-in
//! ([`page`], [`session`]), flags and nurses' changes to them ([`flags`]), the live stream
//! ([`stream`]), callers ([`callers`]) and the audit log ([`audit`]). [`router`] needs no
//! broker: tests call it directly.

mod audit;
mod callers;
mod demand;
mod error;
mod flags;
mod page;
mod privacy;
mod referrals;
mod reports;
mod session;
mod stream;
#[cfg(test)]
mod tests;

pub use audit::csv as audit_csv;
pub use error::{ApiError, JsonBody};
pub use flags::flag_json;
pub use referrals::referral_json;
pub use session::authenticate;

use crate::state::AppState;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lantern_shared::domain::clock::rfc3339_ms;
use serde_json::Value;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/login", get(page::login_form).post(session::login))
        .route("/logout", post(session::logout))
        .route("/assets/desk.js", get(page::script))
        .route("/assets/desk.css", get(page::style))
        .route("/assets/demand.js", get(page::demand_script))
        .route("/demand", get(page::demand))
        .route("/reports", get(page::reports))
        .route("/assets/reports.js", get(page::reports_script))
        .route("/api/demand", get(demand::figures))
        .route("/api/me", get(session::me))
        .route("/api/flags", get(flags::list))
        .route("/api/flags/stream", get(stream::stream))
        .route("/api/flags/{flag_id}", get(flags::one))
        .route("/api/flags/{flag_id}/acknowledge", post(flags::acknowledge))
        .route("/api/flags/{flag_id}/outcome", post(flags::outcome))
        .route("/api/flags/{flag_id}/feedback", post(flags::feedback))
        .route("/api/callers/top", get(callers::top))
        .route("/api/callers/{caller_ref}", get(callers::history))
        .route("/api/callers/{caller_ref}/referrals", post(referrals::refer))
        .route("/api/referrals", get(referrals::list))
        .route("/api/referrals/suggest", get(referrals::suggest))
        .route("/api/referrals/{referral_id}", post(referrals::advance))
        .route("/api/reports/impact", get(reports::impact))
        .route("/api/reports/mh-team", get(reports::mh_team))
        .route("/api/reports/demand", get(reports::demand))
        .route("/api/reports/vulnerable-callers", get(reports::vulnerable_callers))
        .route("/api/audit", get(audit::entries))
        .route("/api/subject-access", get(privacy::subject_access))
        .layer(axum::middleware::from_fn(guard))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Whether a request comes from the desk's own origin: `Sec-Fetch-Site` when the browser sends
/// it, else `Origin` against `Host`; `None` when neither is there (not a browser).
fn same_origin(headers: &HeaderMap) -> Option<bool> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return Some(site == "same-origin");
    }
    let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let origin_host = origin.split_once("://").map(|(_, rest)| rest.trim_end_matches('/')).unwrap_or_default();
    Some(!host.is_empty() && origin_host.eq_ignore_ascii_case(host))
}

/// True for a request a browser's page made: it sends `Sec-Fetch-*`, a cookie, or asks for HTML.
fn from_a_browser(headers: &HeaderMap) -> bool {
    headers.contains_key("sec-fetch-site")
        || headers.contains_key("sec-fetch-mode")
        || headers.contains_key(header::COOKIE)
        || headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

fn forbidden(why: &str) -> Response {
    (StatusCode::FORBIDDEN, Json(serde_json::json!({"error": why}))).into_response()
}

/// Cross-site request forgery and the Basic challenge (SPEC section 6):
/// - a request that changes anything, authenticated by the session cookie, must be JSON from
///   the desk's own origin; signing in and out must not come from another origin;
/// - the page's own requests never get `WWW-Authenticate: Basic` (the browser would show its
///   own prompt, then keep sending those credentials); API clients still do.
async fn guard(req: Request, next: Next) -> Response {
    let headers = req.headers();
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes {
        let path = req.uri().path();
        let origin = same_origin(headers);
        if path == "/login" || path == "/logout" {
            if origin == Some(false) {
                return forbidden("signing in and out must come from the desk's own page");
            }
        } else if session::session_token(headers).is_some() {
            let json = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
            if !json {
                return forbidden("a change made with the desk's session must be JSON (Content-Type: application/json)");
            }
            if origin != Some(true) {
                return forbidden("a change made with the desk's session must come from the desk's own page");
            }
        }
    }
    let browser = from_a_browser(headers);
    let mut resp = next.run(req).await;
    if browser && resp.status() == StatusCode::UNAUTHORIZED {
        resp.headers_mut().remove(header::WWW_AUTHENTICATE);
    }
    resp
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
