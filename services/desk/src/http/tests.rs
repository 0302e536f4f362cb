//! The desk's routes called directly, without a broker or a listening socket.

use super::router;
use crate::auth::{User, COOKIE};
use crate::state::AppState;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use lantern_shared::config::UserConfig;
use lantern_shared::domain::flag::FlagMessage;
use lantern_shared::domain::Role;
use lantern_shared::store::Db;
use lantern_shared::{Clock, Config};
use serde_json::{json, Value};
use tower::ServiceExt;

const FLAG_ID: &str = "0193f3c2-8a1e-7b4c-9d2e-5f6a7b8c9d0f";
const CALLER: &str = "k7q2m4x5r3t6w2zd";

struct Desk {
    app: Router,
    state: AppState,
    _dir: tempfile::TempDir,
}

/// A desk on its own SQLite file with a nurse, an inspector and an admin, holding one open
/// mental-health flag.
async fn desk() -> Desk {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Db::connect(&format!("sqlite://{}/desk.db", dir.path().display())).await.expect("database");
    let mut config = Config::default();
    config.desk.users = [("nora", Role::Nurse), ("ian", Role::Inspector), ("ada", Role::Admin)]
        .into_iter()
        .map(|(name, role)| UserConfig {
            name: name.into(),
            role,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$invalid".into(),
            disabled: false,
        })
        .collect();
    let clock = Clock::manual(chrono::DateTime::from_timestamp_millis(1_795_000_000_000).expect("time"));
    let state = AppState::new(db, &config, &prometheus::Registry::new(), clock);
    let flag = json!({
        "flag_id": FLAG_ID, "status": "raised", "kind": "mental_health", "severity": "high",
        "call_id": "LC-2", "event_id": "e2", "occurred_at": "2026-11-23T21:14:03+00:00", "raised_at": "2026-11-23T21:14:03.012+00:00",
        "channel": "101", "division": "West", "caller_ref": CALLER, "score": 0.93,
        "reasons": [{"category": "suicide", "cue": "end my life", "severity": "high", "negated": false, "snippet": "wants to end my life", "source": "lexicon"}]
    });
    let msg = FlagMessage::parse(flag.to_string().as_bytes());
    let committed = crate::ingest::store(&state.db, &[msg], state.clock.now_ms()).await.expect("stored");
    assert!(committed.last_seq.is_some());
    Desk { app: router(state.clone()), state, _dir: dir }
}

impl Desk {
    async fn cookie(&self, name: &str) -> String {
        let users = self.state.users.load();
        let role = users.iter().find(|u| u.name == name).expect("user").role;
        let token = self
            .state
            .auth
            .start_session(&self.state.db, &users, &User { name: name.into(), role }, self.state.clock.now_ms())
            .await
            .expect("session");
        format!("{COOKIE}={token}")
    }

    async fn call(&self, method: &str, uri: &str, user: Option<&str>, body: Option<Value>) -> (StatusCode, Value, axum::http::HeaderMap) {
        // As the desk's own page sends it: its session cookie, from its own origin.
        let mut req = Request::builder().method(method).uri(uri).header("sec-fetch-site", "same-origin");
        if let Some(name) = user {
            req = req.header(header::COOKIE, self.cookie(name).await);
        }
        let req = match body {
            Some(b) => req.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        let resp = self.app.clone().oneshot(req).await.expect("response");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), headers)
    }
}

#[tokio::test]
async fn signed_out_requests_are_refused_and_the_page_sends_them_to_sign_in() {
    let d = desk().await;
    let (status, body, _) = d.call("GET", "/api/flags", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "sign in required");
    let (status, _, headers) = d.call("GET", "/", None, None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/login");
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let d = desk().await;
    for (uri, user) in [("/login", None), ("/api/flags", Some("nora")), ("/api/flags", None)] {
        let (_, _, headers) = d.call("GET", uri, user, None).await;
        assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().expect("csp").contains("frame-ancestors 'none'"), "{uri}");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    }
}

#[tokio::test]
async fn a_nurse_lists_acknowledges_and_closes_a_flag_and_each_change_is_audited() {
    let d = desk().await;
    let (status, list, _) = d.call("GET", "/api/flags?status=open", Some("nora"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list[0]["flag_id"], FLAG_ID);
    assert_eq!(list[0]["reasons"][0]["category"], "suicide");

    let ack = format!("/api/flags/{FLAG_ID}/acknowledge");
    let (status, flag, _) = d.call("POST", &ack, Some("nora"), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((flag["status"].as_str(), flag["acknowledged_by"].as_str()), (Some("acknowledged"), Some("nora")));
    let (status, body, _) = d.call("POST", &ack, Some("nora"), Some(json!({}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let outcome = format!("/api/flags/{FLAG_ID}/outcome");
    let (status, body, _) = d.call("POST", &outcome, Some("nora"), Some(json!({"outcome": "arrested"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().expect("error").contains("outcome `arrested` must be one of advice_given"), "{body}");
    let (status, flag, _) = d.call("POST", &outcome, Some("nora"), Some(json!({"outcome": "referred", "note": "to crisis team"}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((flag["status"].as_str(), flag["outcome"].as_str()), (Some("closed"), Some("referred")));

    let (status, one, _) = d.call("GET", &format!("/api/flags/{FLAG_ID}"), Some("ian"), None).await;
    assert_eq!(status, StatusCode::OK);
    let events: Vec<&str> = one["updates"].as_array().expect("updates").iter().filter_map(|u| u["event"].as_str()).collect();
    assert_eq!(events, ["flag", "status", "status"]);

    let (status, audit, _) = d.call("GET", "/api/audit", Some("ada"), None).await;
    assert_eq!(status, StatusCode::OK);
    let actions: Vec<&str> = audit.as_array().expect("entries").iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["outcome:referred", "acknowledge"]);
}

#[tokio::test]
async fn roles_limit_what_each_user_may_do() {
    let d = desk().await;
    let (status, _, _) = d.call("POST", &format!("/api/flags/{FLAG_ID}/acknowledge"), Some("ian"), Some(json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "inspectors watch, nurses act");
    let (status, _, _) = d.call("GET", "/api/audit", Some("nora"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the audit log is for admins");
    let (status, _, _) = d.call("GET", &format!("/api/callers/{CALLER}?reason=welfare"), Some("ian"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "caller history is for nurses");
}

#[tokio::test]
async fn caller_history_needs_a_reason_which_goes_to_the_audit_log() {
    let d = desk().await;
    let (status, body, _) = d.call("GET", &format!("/api/callers/{CALLER}"), Some("nora"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().expect("error").starts_with("reason is required"));
    let (status, body, _) = d.call("GET", &format!("/api/callers/{CALLER}?reason=follow-up%20call"), Some("nora"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["flags"][0]["flag_id"], FLAG_ID);
    let (_, audit, _) = d.call("GET", "/api/audit", Some("ada"), None).await;
    assert_eq!((audit[0]["action"].as_str(), audit[0]["reason"].as_str()), (Some("view_caller"), Some("follow-up call")));
}

#[tokio::test]
async fn bad_queries_and_bodies_are_refused_naming_what_is_wrong() {
    let d = desk().await;
    let cases = [
        ("/api/flags?status=pending", "status `pending` must be open, acknowledged or closed"),
        ("/api/flags?kind=burglary", "kind `burglary` must be repeat_caller or mental_health"),
        ("/api/flags?limit=0", "limit must be between 1 and 1000"),
        ("/api/callers/top?window=fortnight", "window:"),
    ];
    for (uri, message) in cases {
        let (status, body, _) = d.call("GET", uri, Some("nora"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(body["error"].as_str().expect("error").contains(message), "{uri}: {body}");
    }
    let req = Request::builder()
        .method("POST")
        .uri(format!("/api/flags/{FLAG_ID}/feedback"))
        .header(header::COOKIE, d.cookie("nora").await)
        .header(header::CONTENT_TYPE, "application/json")
        .header("sec-fetch-site", "same-origin")
        .body(Body::from("{not json"))
        .expect("request");
    let resp = d.app.clone().oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let (status, _, _) = d.call("GET", "/api/flags/no-such-flag", Some("nora"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn feedback_is_recorded_masked_and_counted() {
    let d = desk().await;
    let uri = format!("/api/flags/{FLAG_ID}/feedback");
    let (status, body, _) =
        d.call("POST", &uri, Some("nora"), Some(json!({"verdict": "useful", "note": "rang back on 07700 900123"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!body["note"].as_str().expect("note").contains("900123"), "phone numbers are masked: {body}");
    assert_eq!(d.state.metrics.feedback.with_label_values(&["mental_health", "useful"]).get(), 1);
    let (status, body, _) = d.call("POST", &uri, Some("nora"), Some(json!({"verdict": "great"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().expect("error").contains("useful, not_useful, wrong_person"));
}

#[tokio::test]
async fn a_change_with_the_session_cookie_must_be_json_from_the_desks_own_origin() {
    let d = desk().await;
    let cookie = d.cookie("nora").await;
    let ack = format!("/api/flags/{FLAG_ID}/acknowledge");
    let send = |content_type: &'static str, origin: Option<(&'static str, &'static str)>| {
        let mut req = Request::builder().method("POST").uri(&ack).header(header::HOST, "desk.force.local").header(header::COOKIE, &cookie);
        req = req.header(header::CONTENT_TYPE, content_type);
        if let Some((k, v)) = origin {
            req = req.header(k, v);
        }
        d.app.clone().oneshot(req.body(Body::from("{}")).expect("request"))
    };
    // What a cross-site form can send: text/plain, or JSON from another origin.
    let cross = [
        ("text/plain", Some(("origin", "https://desk.force.local"))),
        ("application/x-www-form-urlencoded", Some(("sec-fetch-site", "same-origin"))),
        ("application/json", Some(("origin", "https://evil.example"))),
        ("application/json", Some(("sec-fetch-site", "cross-site"))),
        ("application/json", Some(("sec-fetch-site", "same-site"))),
        ("application/json", None),
    ];
    for (content_type, origin) in cross {
        let resp = send(content_type, origin).await.expect("response");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{content_type} {origin:?}");
    }
    let resp = send("application/json", Some(("origin", "http://desk.force.local"))).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK, "the page's own request");
}

#[tokio::test]
async fn only_api_clients_are_offered_basic_sign_in() {
    let d = desk().await;
    let ask = |headers: &[(&'static str, &'static str)]| {
        let mut req = Request::builder().uri("/api/flags");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        d.app.clone().oneshot(req.body(Body::empty()).expect("request"))
    };
    let api = ask(&[("accept", "application/json")]).await.expect("response");
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    assert!(api.headers().contains_key(header::WWW_AUTHENTICATE), "an API client may sign in with Basic");
    for page in [
        &[("sec-fetch-site", "same-origin"), ("accept", "application/json")][..],
        &[("cookie", "lantern_session=expired")],
        &[("accept", "text/html")],
    ] {
        let resp = ask(page).await.expect("response");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(!resp.headers().contains_key(header::WWW_AUTHENTICATE), "no browser prompt for {page:?}");
    }
}

#[tokio::test]
async fn the_demand_figures_cover_three_windows_four_channels_and_open_flags() {
    let d = desk().await;
    let (status, body, _) = d.call("GET", "/api/demand", Some("ian"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let windows = body["windows"].as_array().expect("windows");
    assert_eq!(windows.iter().map(|w| w["window"].as_str().unwrap_or_default()).collect::<Vec<_>>(), ["15m", "1h", "24h"]);
    assert_eq!(windows[0]["channels"].as_array().map(Vec::len), Some(4));
    let high = &body["open_flags"][0];
    assert_eq!((high["severity"].as_str(), high["mental_health"].as_i64()), (Some("high"), Some(1)));
    let (status, _, headers) = d.call("GET", "/demand", None, None).await;
    assert_eq!((status, headers.get(header::LOCATION).and_then(|v| v.to_str().ok())), (StatusCode::SEE_OTHER, Some("/login")));
}
