//! The live flag page: static HTML, CSS and script from this binary (nothing from the
//! internet). The script builds every element with textContent, so no event text is ever
//! read as HTML.

use super::ApiError;
use crate::auth::User;
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};

const INDEX: &str = include_str!("../../static/index.html");
const SCRIPT: &str = include_str!("../../static/desk.js");
const STYLE: &str = include_str!("../../static/desk.css");
const DEMAND: &str = include_str!("../../static/demand.html");
const DEMAND_SCRIPT: &str = include_str!("../../static/demand.js");
const REPORTS: &str = include_str!("../../static/reports.html");
const REPORTS_SCRIPT: &str = include_str!("../../static/reports.js");

pub async fn index(user: Result<User, ApiError>) -> Response {
    match user {
        // Early-action staff work from the referrals, not the flags.
        Ok(u) if u.role == lantern_shared::domain::Role::EarlyAction => Redirect::to("/reports").into_response(),
        Ok(_) => Html(INDEX).into_response(),
        Err(_) => Redirect::to("/login").into_response(),
    }
}

/// The demand page (inspectors and nurses); signed-out visitors go to the sign-in form.
pub async fn demand(user: Result<User, ApiError>) -> Response {
    match user {
        Ok(u) if u.require(&[lantern_shared::domain::Role::Inspector, lantern_shared::domain::Role::Nurse]).is_ok() => {
            Html(DEMAND).into_response()
        }
        Ok(_) => ApiError::Forbidden.into_response(),
        Err(_) => Redirect::to("/login").into_response(),
    }
}

/// Referrals and the reports (every role but admin reads some of it; the page asks per part).
pub async fn reports(user: Result<User, ApiError>) -> Response {
    match user {
        Ok(_) => Html(REPORTS).into_response(),
        Err(_) => Redirect::to("/login").into_response(),
    }
}

pub async fn reports_script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], REPORTS_SCRIPT)
}

pub async fn demand_script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], DEMAND_SCRIPT)
}

pub async fn login_form() -> Html<String> {
    login_page(None)
}

/// The sign-in form; `message` is one of our own fixed sentences, never user input.
pub fn login_page(message: Option<&'static str>) -> Html<String> {
    let note = message.map(|m| format!("<p class=\"error\" role=\"alert\">{m}</p>")).unwrap_or_default();
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Lantern: sign in</title><link rel=\"stylesheet\" href=\"/assets/desk.css\"></head><body class=\"login\">\
         <main><h1>Lantern flag desk</h1>{note}<form method=\"post\" action=\"/login\">\
         <label for=\"name\">Name</label><input id=\"name\" name=\"name\" autocomplete=\"username\" required autofocus>\
         <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\" id=\"sign-in\">Sign in</button></form></main></body></html>"
    ))
}

pub async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT)
}

pub async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}
