//! The nurses' desk through its API: every route and role, the live stream resuming after a
//! dropped connection, sign-in, security headers, audit.

use futures::StreamExt;
use lantern_tests::*;
use serde_json::Value;
use std::time::Duration;

struct Desk {
    world: World,
    db: TestDb,
    flagger: Running,
    desk: Running,
    probe: Probe,
    http: reqwest::Client,
    _tmp: tempfile::TempDir,
}

async fn setup(backend: &str) -> Desk {
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new(backend, tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    world.config.desk.users = desk_users();
    let flagger = Running::flagger(&world.config).await;
    let desk = Running::desk(&world.config).await;
    let probe = Probe::connect(&url, &[]).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    Desk { world, db, flagger, desk, probe, http, _tmp: tmp }
}

impl Desk {
    /// Publishes a call whose notes raise a mental-health flag, and waits for the desk to list it.
    async fn flag(&self, n: usize, notes: &str) -> Value {
        let p = &self.world.prefix;
        let ev = event(
            &format!("{p}-e{n}"),
            &format!("{p}-call{n}"),
            "offered",
            &chrono::Utc::now().to_rfc3339(),
            Some("07700 900123"),
            Some(notes),
        );
        self.probe.publish(&self.world.topic(), ev).await;
        let call = format!("{p}-call{n}");
        for _ in 0..200 {
            let list: Value = self.get("nurse", "/api/flags").await.json().await.expect("json");
            if let Some(f) = list.as_array().and_then(|a| a.iter().find(|f| f["call_id"] == call.as_str())) {
                return f.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("flag for {call} never reached the desk");
    }

    async fn get(&self, user: &str, path: &str) -> reqwest::Response {
        self.http.get(self.desk.url(path)).basic_auth(user, Some(format!("{user}-pass"))).send().await.expect("request")
    }

    async fn post(&self, user: &str, path: &str, body: &str) -> reqwest::Response {
        self.http
            .post(self.desk.url(path))
            .basic_auth(user, Some(format!("{user}-pass")))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request")
    }

    async fn finish(self) {
        self.desk.stop().await;
        self.flagger.stop().await;
        self.db.cleanup().await;
    }
}

async fn status_and_error(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body["error"].as_str().unwrap_or("").to_string())
}

async fn every_route_and_role(backend: &str) {
    let d = setup(backend).await;
    let flag = d.flag(1, "says he's going to jump off the bridge").await;
    let id = flag["flag_id"].as_str().expect("id").to_string();
    assert_eq!(flag["status"], "open");
    assert_eq!(flag["severity"], "high");
    assert!(flag["reasons"][0]["snippet"].as_str().is_some_and(|s| s.contains("jump off")));

    // No credentials, wrong password: 401 with a JSON error.
    let (code, err) = status_and_error(d.http.get(d.desk.url("/api/flags")).send().await.expect("req")).await;
    assert_eq!((code, err.is_empty()), (401, false));
    let resp = d.http.get(d.desk.url("/api/flags")).basic_auth("nurse", Some("wrong")).send().await.expect("req");
    assert_eq!(resp.status().as_u16(), 401);
    for path in ["/api/flags/stream", "/api/callers/top", "/api/audit", &format!("/api/flags/{id}")] {
        assert_eq!(d.http.get(d.desk.url(path)).send().await.expect("req").status().as_u16(), 401, "{path}");
    }
    let resp = d.http.post(d.desk.url(&format!("/api/flags/{id}/acknowledge"))).body("{}").send().await.expect("req");
    assert_eq!(resp.status().as_u16(), 401);
    // The page sends a visitor without a session to the sign-in form.
    let resp = d.http.get(d.desk.url("/")).send().await.expect("req");
    assert_eq!(resp.headers()["location"], "/login");

    // Inspectors watch; they do not acknowledge, close, or open caller history; only admins read the audit.
    assert_eq!(d.get("inspector", "/api/flags?status=open").await.status().as_u16(), 200);
    assert_eq!(d.get("inspector", &format!("/api/flags/{id}")).await.status().as_u16(), 200);
    assert_eq!(d.get("inspector", "/api/callers/top?window=30d&limit=5").await.status().as_u16(), 200);
    assert_eq!(status_and_error(d.post("inspector", &format!("/api/flags/{id}/acknowledge"), "{}").await).await.0, 403);
    assert_eq!(status_and_error(d.post("inspector", &format!("/api/flags/{id}/outcome"), r#"{"outcome":"referred"}"#).await).await.0, 403);
    let caller_ref = flag["caller_ref"].as_str().expect("caller_ref").to_string();
    assert_eq!(d.get("inspector", &format!("/api/callers/{caller_ref}?reason=curious")).await.status().as_u16(), 403);
    assert_eq!(d.get("inspector", "/api/audit").await.status().as_u16(), 403);
    assert_eq!(d.get("nurse", "/api/audit").await.status().as_u16(), 403);

    // Bad requests name what is wrong.
    assert_eq!(status_and_error(d.get("nurse", "/api/flags?status=pending").await).await.0, 400);
    assert_eq!(status_and_error(d.get("nurse", "/api/flags?kind=other").await).await.0, 400);
    assert_eq!(status_and_error(d.get("nurse", "/api/callers/top?window=forever").await).await.0, 400);
    let (code, err) = status_and_error(d.get("nurse", &format!("/api/callers/{caller_ref}")).await).await;
    assert_eq!(code, 400);
    assert!(err.contains("reason"), "{err}");
    assert_eq!(status_and_error(d.get("nurse", "/api/flags/no-such-flag").await).await.0, 404);
    assert_eq!(status_and_error(d.post("nurse", "/api/flags/no-such-flag/acknowledge", "{}").await).await.0, 404);
    let (code, err) = status_and_error(d.post("nurse", &format!("/api/flags/{id}/acknowledge"), "{not json").await).await;
    assert_eq!(code, 400, "{err}");

    // Acknowledge once; twice is a conflict.
    let acked: Value = d.post("nurse", &format!("/api/flags/{id}/acknowledge"), "{}").await.json().await.expect("json");
    assert_eq!(acked["status"], "acknowledged");
    assert_eq!(acked["acknowledged_by"], "nurse");
    assert_eq!(status_and_error(d.post("nurse", &format!("/api/flags/{id}/acknowledge"), "{}").await).await.0, 409);

    // Outcomes: unknown or malformed are 400; a good one closes the flag; a second is 409.
    let (code, err) = status_and_error(d.post("nurse", &format!("/api/flags/{id}/outcome"), r#"{"outcome":"arrested"}"#).await).await;
    assert_eq!(code, 400);
    assert!(err.contains("outcome"), "{err}");
    assert_eq!(status_and_error(d.post("nurse", &format!("/api/flags/{id}/outcome"), r#"{"note": "x"}"#).await).await.0, 400);
    let closed: Value = d
        .post("nurse", &format!("/api/flags/{id}/outcome"), r#"{"outcome":"s136_avoided","note":"talked down, home with family"}"#)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["outcome"], "s136_avoided");
    assert_eq!(status_and_error(d.post("nurse", &format!("/api/flags/{id}/outcome"), r#"{"outcome":"referred"}"#).await).await.0, 409);
    let list: Value = d.get("nurse", "/api/flags?status=closed").await.json().await.expect("json");
    assert!(list.as_array().is_some_and(|a| a.iter().any(|f| f["flag_id"] == id.as_str())));
    let one: Value = d.get("inspector", &format!("/api/flags/{id}")).await.json().await.expect("json");
    assert!(one["updates"].as_array().is_some_and(|u| u.len() >= 3), "the flag, its acknowledgement and outcome: {one}");

    // Caller history with a reason, written to the audit log that admins read.
    let history: Value =
        d.get("nurse", &format!("/api/callers/{caller_ref}?reason=checking%20for%20earlier%20crises")).await.json().await.expect("json");
    assert!(history["calls"].as_array().is_some_and(|c| !c.is_empty()));
    assert!(history["flags"].as_array().is_some_and(|f| !f.is_empty()));
    let audit: Value = d.get("admin", "/api/audit").await.json().await.expect("json");
    let look = audit.as_array().and_then(|a| a.iter().find(|e| e["action"] == "view_caller")).expect("the look is audited").clone();
    assert_eq!(look["user"], "nurse");
    assert_eq!(look["reason"], "checking for earlier crises");
    assert_eq!(look["target"], caller_ref.as_str());
    assert!(audit
        .as_array()
        .is_some_and(|a| a.iter().any(|e| e["action"] == "acknowledge") && a.iter().any(|e| e["action"] == "outcome:s136_avoided")));
    let top: Value = d.get("inspector", "/api/callers/top?window=90d&limit=3").await.json().await.expect("json");
    assert!(top["callers"].as_array().is_some_and(|c| !c.is_empty()));

    // Metrics.
    let m = |s: &'static str| {
        let addr = d.desk.addr;
        async move { metric(addr, s).await }
    };
    assert_eq!(m("lantern_outcomes_total{outcome=\"s136_avoided\"}").await, 1.0);
    assert_eq!(m("lantern_estimated_savings_pounds_total{agency=\"police\"}").await, 287.0);
    assert_eq!(m("lantern_estimated_savings_pounds_total{agency=\"ambulance\"}").await, 130.0);
    assert_eq!(m("lantern_flag_acknowledge_seconds_count{kind=\"mental_health\"}").await, 1.0);
    assert_eq!(m("lantern_flags_open{kind=\"mental_health\",severity=\"high\"}").await, 0.0);
    d.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_role_as_the_spec_says() {
    for backend in backends() {
        every_route_and_role(backend).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_sets_a_strict_http_only_cookie_and_pages_carry_security_headers() {
    let d = setup("sqlite").await;
    let resp = d.http.post(d.desk.url("/login")).form(&[("name", "nurse"), ("password", "wrong")]).send().await.expect("req");
    assert_eq!(resp.status().as_u16(), 401);
    let resp = d.http.post(d.desk.url("/login")).form(&[("name", "nurse"), ("password", "nurse-pass")]).send().await.expect("req");
    assert_eq!(resp.status().as_u16(), 303);
    let cookie = resp.headers()["set-cookie"].to_str().expect("cookie").to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().expect("pair").to_string();
    let page = d.http.get(d.desk.url("/")).header("cookie", &session).send().await.expect("req");
    assert_eq!(page.status().as_u16(), 200);
    let csp = page.headers()["content-security-policy"].to_str().expect("csp").to_string();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.expect("html");
    assert!(!html.contains("<script>") && html.contains("/assets/desk.js"), "no inline script");
    let me: Value = d.http.get(d.desk.url("/api/me")).header("cookie", &session).send().await.expect("req").json().await.expect("json");
    assert_eq!(me["role"], "nurse");
    // The script never parses event text as HTML.
    let js = d.http.get(d.desk.url("/assets/desk.js")).send().await.expect("req").text().await.expect("js");
    assert!(!js.contains("innerHTML") && !js.contains("insertAdjacentHTML") && !js.contains("document.write"));
    // Event text comes back as JSON data, never interpreted.
    let f = d.flag(7, "<script>alert(1)</script> <img src=x onerror=alert(2)> wants to end his life").await;
    assert!(f["reasons"].to_string().contains("<img src=x onerror=alert(2)>") || f["reasons"].to_string().contains("\\u003cimg"));
    let out = d.http.post(d.desk.url("/logout")).header("cookie", &session).send().await.expect("req");
    assert_eq!(out.status().as_u16(), 303);
    assert_eq!(d.http.get(d.desk.url("/api/me")).header("cookie", &session).send().await.expect("req").status().as_u16(), 401);
    d.finish().await;
}

/// Reads SSE events (id, event, data) from a response until `n` arrive or `wait` passes.
async fn read_events(resp: reqwest::Response, n: usize, wait: Duration) -> Vec<(i64, String, Value)> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let deadline = tokio::time::Instant::now() + wait;
    while out.len() < n {
        let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, stream.next()).await else { break };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if let Some(id) = id {
                out.push((id, event, serde_json::from_str(&data).unwrap_or(Value::Null)));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_resumes_after_a_dropped_connection_with_no_flag_missed() {
    let d = setup("sqlite").await;
    let open = || d.http.get(d.desk.url("/api/flags/stream")).basic_auth("inspector", Some("inspector-pass")).send();
    let first = open().await.expect("stream");
    assert_eq!(first.status().as_u16(), 200);
    let p = d.world.prefix.clone();
    let topic = d.world.topic();
    let publish = |n: usize| {
        let ev = event(
            &format!("{p}-s{n}"),
            &format!("{p}-scall{n}"),
            "offered",
            &chrono::Utc::now().to_rfc3339(),
            None,
            Some("threatening to jump from the bridge"),
        );
        d.probe.publish(&topic, ev)
    };
    publish(0).await;
    let got = read_events(first, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "the first flag streams live");
    assert_eq!(got[0].1, "flag");
    let last_id = got[0].0;
    // The connection drops; five flags are raised meanwhile.
    for n in 1..=5 {
        publish(n).await;
    }
    let d2 = &d;
    assert!(
        eventually(Duration::from_secs(10), || async move {
            let list: Value = d2.get("nurse", "/api/flags").await.json().await.unwrap_or(Value::Null);
            list.as_array().is_some_and(|a| a.len() >= 6)
        })
        .await
    );
    let resumed = d
        .http
        .get(d.desk.url("/api/flags/stream"))
        .basic_auth("inspector", Some("inspector-pass"))
        .header("Last-Event-ID", last_id.to_string())
        .send()
        .await
        .expect("stream");
    let got = read_events(resumed, 5, Duration::from_secs(10)).await;
    let calls: Vec<String> = got.iter().map(|e| e.2["call_id"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(calls, (1..=5).map(|n| format!("{p}-scall{n}")).collect::<Vec<_>>(), "every flag after the last one seen, in order");
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "ids increase");
    assert!(got[0].0 > last_id);
    d.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_desk_shows_what_it_had_and_what_was_raised_while_it_was_down() {
    let mut d = setup("sqlite").await;
    let first = d.flag(1, "taken an overdose of her tablets").await;
    let id = first["flag_id"].as_str().expect("id").to_string();
    assert_eq!(d.post("nurse", &format!("/api/flags/{id}/acknowledge"), "{}").await.status().as_u16(), 200);
    let config = d.world.config.clone();
    let desk = std::mem::replace(
        &mut d.desk,
        Running::desk(&{
            // A stand-in on its own session and topics, so it takes nothing meant for the real desk.
            let mut c = config.clone();
            c.mqtt.client_id = format!("{}-spare", c.mqtt.client_id);
            c.mqtt.topic_root = format!("{}-spare", c.mqtt.topic_root);
            c
        })
        .await,
    );
    desk.stop().await;
    // While the desk is down, two more flags are raised.
    let p = d.world.prefix.clone();
    for n in 2..=3 {
        let ev = event(
            &format!("{p}-e{n}"),
            &format!("{p}-call{n}"),
            "offered",
            &chrono::Utc::now().to_rfc3339(),
            None,
            Some("hearing voices telling him to hurt himself"),
        );
        d.probe.publish(&d.world.topic(), ev).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let spare = std::mem::replace(&mut d.desk, Running::desk(&config).await);
    spare.stop().await;
    let d2 = &d;
    let ok = eventually(Duration::from_secs(10), || async move {
        let list: Value = d2.get("nurse", "/api/flags").await.json().await.unwrap_or(Value::Null);
        list.as_array().is_some_and(|a| a.len() == 3)
    })
    .await;
    assert!(ok, "the flags raised while the desk was down arrive after it restarts");
    let one: Value = d.get("nurse", &format!("/api/flags/{id}")).await.json().await.expect("json");
    assert_eq!(one["status"], "acknowledged", "state from before the restart is kept");
    d.finish().await;
}

async fn feedback_is_stored_audited_and_counted_on(backend: &str) {
    let d = setup(backend).await;
    let flag = d.flag(3, "neighbour says he is stood on the parapet of the railway bridge saying he will jump").await;
    let id = flag["flag_id"].as_str().expect("id").to_string();
    let path = format!("/api/flags/{id}/feedback");
    // A verdict a nurse cannot give, a role that may not give one, a flag that does not exist.
    assert_eq!(status_and_error(d.post("nurse", &path, r#"{"verdict": "brilliant"}"#).await).await.0, 400);
    assert_eq!(status_and_error(d.post("nurse", &path, "not json").await).await.0, 400);
    assert_eq!(status_and_error(d.post("inspector", &path, r#"{"verdict": "useful"}"#).await).await.0, 403);
    let missing = "/api/flags/0193f3c2-8a1e-7b4c-9d2e-5f6a7b8c9d0e/feedback";
    assert_eq!(status_and_error(d.post("nurse", missing, r#"{"verdict": "useful"}"#).await).await.0, 404);
    // One verdict per nurse per flag: the last one counts.
    let first = d.post("nurse", &path, r#"{"verdict": "not_useful", "note": "rang back on 07700 900123, he is fine"}"#).await;
    assert_eq!(first.status().as_u16(), 200);
    let stored: Value = first.json().await.expect("json");
    assert!(!stored["note"].as_str().unwrap_or("").contains("900123"), "the note is masked: {stored}");
    assert_eq!(d.post("nurse", &path, r#"{"verdict": "useful"}"#).await.status().as_u16(), 200);
    let db = lantern_shared::store::Db::connect(&d.db.url).await.expect("db");
    let q = "SELECT verdict FROM desk_feedback WHERE flag_id = $1";
    let verdicts: Vec<String> = lantern_shared::with_db!(&db, |pool| sqlx::query_scalar(q).bind(&id).fetch_all(pool).await).expect("rows");
    assert_eq!(verdicts, ["useful"]);
    db.close().await;
    let audit: Value = d.get("admin", "/api/audit").await.json().await.expect("json");
    let actions: Vec<&str> =
        audit.as_array().expect("list").iter().filter(|e| e["target"] == id.as_str()).filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"feedback:not_useful") && actions.contains(&"feedback:useful"), "{actions:?}");
    assert_eq!(d.desk.metric("lantern_flag_feedback_total{kind=\"mental_health\",verdict=\"useful\"}").await, 1.0);
    assert_eq!(d.desk.metric("lantern_flag_feedback_total{kind=\"mental_health\",verdict=\"not_useful\"}").await, 1.0);
    // The verdicts go out as labelled notes for the next training round, masked.
    let mut out = Vec::new();
    let db = lantern_shared::store::Db::connect(&d.db.url).await.expect("db");
    assert_eq!(lantern_desk::feedback::export(&db, &mut out, "cli:test", chrono::Utc::now().timestamp_millis()).await.expect("export"), 1);
    db.close().await;
    let line: Value = serde_json::from_slice(out.trim_ascii()).expect("one JSON line");
    assert_eq!((line["mh"].clone(), line["verdict"].clone()), (Value::Bool(true), Value::from("useful")));
    assert!(line["notes"].as_str().is_some_and(|n| n.contains("parapet")), "{line}");
    // The verdict in force counts once for the flag's category, for precision by category.
    let body = reqwest::get(d.desk.url("/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(
        body.lines().any(|l| l.starts_with("lantern_flag_feedback_verdicts{") && l.contains("verdict=\"useful\"") && l.ends_with(" 1")),
        "{body}"
    );
    d.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nurses_feedback_on_a_flag_is_stored_audited_and_counted() {
    for backend in backends() {
        feedback_is_stored_audited_and_counted_on(backend).await;
    }
}
