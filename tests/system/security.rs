//! The desk against an attacker on the force network (SPEC section 6): each attack tried
//! against a running desk, and refused.

use lantern_shared::Clock;
use lantern_tests::*;
use serde_json::Value;
use std::time::Duration;

struct Desk {
    world: World,
    db: TestDb,
    desk: Running,
    flagger: Option<Running>,
    http: reqwest::Client,
    config_file: std::path::PathBuf,
    clock: Clock,
    _tmp: tempfile::TempDir,
}

async fn setup(with_flagger: bool) -> Desk {
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new("sqlite", tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    world.config.desk.users = desk_users();
    let config_file = world.write_config();
    let clock = Clock::manual(chrono::Utc::now());
    let flagger = if with_flagger { Some(Running::flagger(&world.config).await) } else { None };
    let desk = Running::desk_watching(&world.config, &config_file, clock.clone()).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    Desk { world, db, desk, flagger, http, config_file, clock, _tmp: tmp }
}

impl Desk {
    /// Signs in through the form, as the page does; returns the cookie header value.
    async fn sign_in(&self, name: &str, password: &str) -> reqwest::Response {
        let origin = format!("http://{}", self.desk.addr);
        self.http
            .post(self.desk.url("/login"))
            .header("origin", origin)
            .form(&[("name", name), ("password", password)])
            .send()
            .await
            .expect("sign in")
    }

    async fn cookie(&self, name: &str) -> String {
        let resp = self.sign_in(name, &format!("{name}-pass")).await;
        assert_eq!(resp.status().as_u16(), 303, "{name} signs in");
        let set = resp.headers()["set-cookie"].to_str().expect("cookie").to_string();
        set.split(';').next().expect("name=value").to_string()
    }

    /// A GET as the page makes it, with a session cookie.
    async fn page_get(&self, cookie: &str, path: &str) -> reqwest::Response {
        self.http.get(self.desk.url(path)).header("cookie", cookie).header("sec-fetch-site", "same-origin").send().await.expect("get")
    }

    /// Rewrites the config file the desk watches, and waits for the desk to apply it.
    async fn change_users(&mut self, edit: impl FnOnce(&mut Vec<lantern_shared::config::UserConfig>)) {
        let before = self.desk.metric("lantern_config_reloads_total{result=\"ok\"}").await;
        edit(&mut self.world.config.desk.users);
        std::fs::write(&self.config_file, toml_of(&self.world.config)).expect("write config");
        let applied = eventually(Duration::from_secs(20), || async {
            self.desk.metric("lantern_config_reloads_total{result=\"ok\"}").await > before
        })
        .await;
        assert!(applied, "the desk applied the new users");
    }

    async fn finish(self) {
        self.desk.stop().await;
        if let Some(f) = self.flagger {
            f.stop().await;
        }
        self.db.cleanup().await;
    }
}

/// A user's argon2 hash for `password` (light settings, like the other test users).
fn hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(1024, 1, 1, None).expect("params");
    let salt = SaltString::encode_b64(b"another-salt-123").expect("salt");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .expect("hash")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_gets_no_basic_challenge_and_cross_site_changes_are_refused() {
    let d = setup(true).await;
    // No session: the page's requests get 401 without a challenge, the page itself redirects.
    let resp = d.http.get(d.desk.url("/api/flags")).header("sec-fetch-site", "same-origin").send().await.expect("get");
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.headers().get("www-authenticate").is_none());
    let resp = d.http.get(d.desk.url("/")).header("accept", "text/html").send().await.expect("get");
    assert_eq!((resp.status().as_u16(), resp.headers()["location"].to_str().ok()), (303, Some("/login")));
    // An API client without a cookie still may use Basic.
    let resp = d.http.get(d.desk.url("/api/flags")).header("accept", "application/json").send().await.expect("get");
    assert!(resp.headers().get("www-authenticate").is_some_and(|v| v.to_str().unwrap_or_default().starts_with("Basic")));

    // A flag to act on.
    let probe = Probe::connect(&d.world.config.mqtt.url, &[]).await;
    let p = &d.world.prefix;
    probe
        .publish(
            &d.world.topic(),
            event(
                &format!("{p}-e1"),
                &format!("{p}-c1"),
                "offered",
                &chrono::Utc::now().to_rfc3339(),
                Some("07700 900111"),
                Some("wants to end his life"),
            ),
        )
        .await;
    let flag = desk_flag(d.desk.addr, &format!("{p}-c1"), Duration::from_secs(20)).await.expect("flag");
    let ack = d.desk.url(&format!("/api/flags/{}/acknowledge", flag["flag_id"].as_str().expect("id")));
    let cookie = d.cookie("nurse").await;
    let own = format!("http://{}", d.desk.addr);
    // What another site can make a nurse's browser send: a form (text/plain), or JSON from elsewhere.
    let attacks: [(&str, &str, &str); 4] = [
        ("text/plain", "origin", own.as_str()),
        ("application/json", "origin", "https://intranet.evil.example"),
        ("application/json", "sec-fetch-site", "cross-site"),
        ("application/x-www-form-urlencoded", "sec-fetch-site", "same-origin"),
    ];
    for (content_type, header, value) in attacks {
        let resp = d
            .http
            .post(&ack)
            .header("cookie", &cookie)
            .header("content-type", content_type)
            .header(header, value)
            .body("{}")
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status().as_u16(), 403, "{content_type} with {header}: {value}");
        let body: Value = resp.json().await.expect("JSON error");
        assert!(body["error"].is_string());
    }
    let still: Value =
        d.page_get(&cookie, &format!("/api/flags/{}", flag["flag_id"].as_str().unwrap_or_default())).await.json().await.expect("flag");
    assert_eq!(still["status"], "open", "no attack changed the flag");
    // Sign-in from another origin is refused too.
    let resp = d
        .http
        .post(d.desk.url("/login"))
        .header("origin", "https://evil.example")
        .form(&[("name", "nurse"), ("password", "nurse-pass")])
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 403);
    // The page's own request works.
    let resp = d
        .http
        .post(&ack)
        .header("cookie", &cookie)
        .header("content-type", "application/json")
        .header("origin", own.as_str())
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 200);
    d.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_does_the_same_work_for_unknown_names_and_throttles_repeated_failures() {
    let d = setup(false).await;
    // Unknown names cost a password hash, as known ones do: the time says nothing.
    let base = signin_hashes(&d).await;
    assert_eq!(d.sign_in("nobody-here", "x").await.status().as_u16(), 401);
    assert_eq!(signin_hashes(&d).await, base + 1.0, "an unknown name is checked against a stand-in hash");
    assert_eq!(d.sign_in("nurse", "wrong").await.status().as_u16(), 401);
    assert_eq!(signin_hashes(&d).await, base + 2.0);

    // 25 wrong passwords for one user: a few are answered 401, then 429 with Retry-After.
    let mut statuses = Vec::new();
    for _ in 0..25 {
        let resp = d.sign_in("inspector", "guess").await;
        let status = resp.status().as_u16();
        if status == 429 {
            let retry: u64 = resp.headers()["retry-after"].to_str().expect("retry-after").parse().expect("seconds");
            assert!(retry >= 1);
        }
        statuses.push(status);
    }
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert!(refused >= 18, "throttled after a few failures: {statuses:?}");
    // Basic is throttled the same way.
    let resp = d.http.get(d.desk.url("/api/flags")).basic_auth("inspector", Some("inspector-pass")).send().await.expect("get");
    assert_eq!(resp.status().as_u16(), 429, "even the right password waits while the name is throttled");
    assert!(d.desk.metric("lantern_signin_failures_total").await >= 6.0);
    let audit: Value = d
        .http
        .get(d.desk.url("/api/audit?limit=100"))
        .basic_auth("admin", Some("admin-pass"))
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    let failures: Vec<&Value> = audit.as_array().expect("entries").iter().filter(|e| e["action"] == "sign_in_failed").collect();
    assert!(
        failures.len() >= 6 && failures.iter().all(|e| !e.to_string().contains("guess")),
        "failures are audited, never with the password"
    );

    // A flood of Basic attempts under many names: hashing runs a few at a time at most.
    let flood = (0..24).map(|i| {
        let http = d.http.clone();
        let url = d.desk.url("/api/flags");
        async move { http.get(url).basic_auth(format!("flood{i}"), Some("x")).send().await.map(|r| r.status().as_u16()) }
    });
    let answers = futures::future::join_all(flood).await;
    assert!(answers.iter().all(|a| matches!(a, Ok(401 | 429 | 503))), "{answers:?}");
    let most = d.desk.metric("lantern_signin_hashing_most_at_once").await;
    assert!(
        most <= lantern_desk::auth::HASHING_AT_ONCE as f64,
        "at most {} hashes at once, saw {most}",
        lantern_desk::auth::HASHING_AT_ONCE
    );
    d.finish().await;
}

async fn signin_hashes(d: &Desk) -> f64 {
    d.desk.metric("lantern_signin_hashes").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_on_password_change_role_change_removal_idleness_and_sign_out() {
    let mut d = setup(false).await;
    let nurse = d.cookie("nurse").await;
    let inspector = d.cookie("inspector").await;
    let admin_a = d.cookie("admin").await;
    let admin_b = d.cookie("admin").await;
    for c in [&nurse, &inspector, &admin_a] {
        assert_eq!(d.page_get(c, "/api/me").await.status().as_u16(), 200);
    }
    let (http, me_url) = (d.http.clone(), d.desk.url("/api/me"));
    let basic_ok = |user: &'static str, password: &'static str| {
        let (http, url) = (http.clone(), me_url.clone());
        async move { http.get(url).basic_auth(user, Some(password)).send().await.expect("get").status().as_u16() }
    };
    assert_eq!(basic_ok("nurse", "nurse-pass").await, 200, "and the Basic credential is now cached");

    // A live stream opened by the nurse.
    let mut stream = d
        .http
        .get(d.desk.url("/api/flags/stream"))
        .header("cookie", &nurse)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status().as_u16(), 200);

    // The nurse's password changes: her session, her cached Basic password and her stream end.
    d.change_users(|users| users.iter_mut().filter(|u| u.name == "nurse").for_each(|u| u.password_hash = hash("new-pass"))).await;
    assert_eq!(d.page_get(&nurse, "/api/me").await.status().as_u16(), 401);
    assert_eq!(basic_ok("nurse", "nurse-pass").await, 401, "the old password no longer works over Basic");
    let ended = tokio::time::timeout(Duration::from_secs(35), async { while let Ok(Some(_)) = stream.chunk().await {} }).await;
    assert!(ended.is_ok(), "the live stream closes within 30 s of the change");

    // The inspector becomes a nurse: the inspector's session ends.
    d.change_users(|users| users.iter_mut().filter(|u| u.name == "inspector").for_each(|u| u.role = lantern_shared::domain::Role::Nurse))
        .await;
    assert_eq!(d.page_get(&inspector, "/api/me").await.status().as_u16(), 401);

    // Signing out ends that session (in the database, so on every desk instance).
    let own = format!("http://{}", d.desk.addr);
    let out = d.http.post(d.desk.url("/logout")).header("cookie", &admin_a).header("origin", own).send().await.expect("logout");
    assert_eq!(out.status().as_u16(), 303);
    assert!(out.headers().get_all("set-cookie").iter().any(|v| v.to_str().unwrap_or_default().contains("Max-Age=0")));
    assert_eq!(d.page_get(&admin_a, "/api/me").await.status().as_u16(), 401);
    assert_eq!(d.page_get(&admin_b, "/api/me").await.status().as_u16(), 200, "other sessions stay");

    // Thirty-one idle minutes end a session.
    d.clock.advance(chrono::Duration::minutes(31));
    assert_eq!(d.page_get(&admin_b, "/api/me").await.status().as_u16(), 401);

    // Removing a user ends their sessions at once.
    let admin_c = d.cookie("admin").await;
    d.change_users(|users| users.retain(|u| u.name != "admin")).await;
    assert_eq!(d.page_get(&admin_c, "/api/me").await.status().as_u16(), 401);
    d.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_do_not_read_caller_histories_and_a_change_never_happens_without_its_audit_entry() {
    let d = setup(true).await;
    let caller = "abcdefghjkmnpqrs";
    let resp = d
        .http
        .get(d.desk.url(&format!("/api/callers/{caller}?reason=curious")))
        .basic_auth("admin", Some("admin-pass"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status().as_u16(), 403, "admins read the audit log, not caller histories");

    let probe = Probe::connect(&d.world.config.mqtt.url, &[]).await;
    let p = &d.world.prefix;
    probe
        .publish(
            &d.world.topic(),
            event(
                &format!("{p}-e1"),
                &format!("{p}-c1"),
                "offered",
                &chrono::Utc::now().to_rfc3339(),
                Some("07700 900222"),
                Some("wants to end his life"),
            ),
        )
        .await;
    let flag = desk_flag(d.desk.addr, &format!("{p}-c1"), Duration::from_secs(20)).await.expect("flag");
    let id = flag["flag_id"].as_str().expect("id").to_string();
    // The audit log refuses writes: the acknowledgement must not happen without its entry.
    execute(&d.db.url, "CREATE TRIGGER no_audit BEFORE INSERT ON desk_audit BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END").await;
    let resp = d
        .http
        .post(d.desk.url(&format!("/api/flags/{id}/acknowledge")))
        .basic_auth("nurse", Some("nurse-pass"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 500);
    let now: Value = d
        .http
        .get(d.desk.url(&format!("/api/flags/{id}")))
        .basic_auth("nurse", Some("nurse-pass"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(now["status"], "open", "no change without its audit entry");
    execute(&d.db.url, "DROP TRIGGER no_audit").await;
    let resp = d
        .http
        .post(d.desk.url(&format!("/api/flags/{id}/acknowledge")))
        .basic_auth("nurse", Some("nurse-pass"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 200);
    d.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_the_session_cookie_is_host_bound_and_secure() {
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new("sqlite", tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    world.config.desk.users = desk_users();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let (cert_file, key_file) = (tmp.path().join("desk.crt"), tmp.path().join("desk.key"));
    std::fs::write(&cert_file, cert.cert.pem()).expect("write");
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).expect("write");
    world.config.desk.tls_cert_file = Some(cert_file);
    world.config.desk.tls_key_file = Some(key_file);
    world.config.desk.listen = format!("127.0.0.1:{}", free_port());
    let desk = lantern_desk::Desk::build(world.config.clone()).await.expect("desk builds with TLS");
    let port = desk.local_addr().port();
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(desk.run(stop.clone()));
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).expect("ca"))
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let base = format!("https://localhost:{port}");
    assert!(
        eventually(Duration::from_secs(20), || async { https.get(format!("{base}/healthz")).send().await.is_ok() }).await,
        "the desk serves HTTPS"
    );
    let resp = https
        .post(format!("{base}/login"))
        .header("origin", base.as_str())
        .form(&[("name", "nurse"), ("password", "nurse-pass")])
        .send()
        .await
        .expect("sign in");
    assert_eq!(resp.status().as_u16(), 303);
    let cookie = resp.headers()["set-cookie"].to_str().expect("cookie").to_string();
    assert!(
        cookie.starts_with("__Host-lantern_session=")
            && cookie.contains("; Secure")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/"),
        "{cookie}"
    );
    let session = cookie.split(';').next().expect("pair").to_string();
    let me = https.get(format!("{base}/api/me")).header("cookie", session).send().await.expect("me");
    assert_eq!(me.status().as_u16(), 200);
    // Plain HTTP to the same port is not served.
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.map(|r| !r.status().is_success()).unwrap_or(true));
    stop.cancel();
    let _ = task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_tls_proxy_the_cookie_is_secure_too() {
    let d = setup(false).await;
    let own = format!("http://{}", d.desk.addr);
    let resp = d
        .http
        .post(d.desk.url("/login"))
        .header("origin", own)
        .header("x-forwarded-proto", "https")
        .form(&[("name", "nurse"), ("password", "nurse-pass")])
        .send()
        .await
        .expect("post");
    let cookie = resp.headers()["set-cookie"].to_str().expect("cookie").to_string();
    assert!(cookie.starts_with("__Host-lantern_session=") && cookie.contains("; Secure"), "{cookie}");
    d.finish().await;
}
