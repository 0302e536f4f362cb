//! A new user, from a fresh checkout: accounts without editing files, commands that make their
//! own key, and a demo to watch.

use lantern_tests::*;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs `lantern ARGS --config CONFIG` with `stdin` piped in; returns (success, stdout, stderr).
fn lantern(args: &[&str], config: &Path, stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(crate::LANTERN)
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lantern runs");
    // A command that needs no input may finish before reading it.
    let _ = child.stdin.take().expect("stdin").write_all(stdin.as_bytes());
    let out = child.wait_with_output().expect("lantern finishes");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

async fn basic_status(desk: &Running, user: &str, password: &str) -> u16 {
    reqwest::Client::new().get(desk.url("/api/me")).basic_auth(user, Some(password)).send().await.expect("desk").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_added_changed_and_disabled_by_command_live_and_audited() {
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new("sqlite", tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    world.config.desk.users = desk_users();
    world.config.desk.users_file = tmp.path().join("users.toml");
    let config = world.write_config();
    let desk = Running::desk_watching(&world.config, &config, lantern_shared::Clock::System).await;

    let (ok, out, err) = lantern(&["user", "add", "nora", "--role", "nurse"], &config, "short\n");
    assert!(!ok && err.contains("at least 10 characters"), "{out}{err}");
    let (ok, out, err) = lantern(&["user", "add", "nora", "--role", "nurse"], &config, "harbour lights at dusk\n");
    assert!(ok, "{out}{err}");
    assert!(out.contains("added nora (nurse)"), "{out}");
    assert!(
        eventually(Duration::from_secs(15), || async { basic_status(&desk, "nora", "harbour lights at dusk").await == 200 }).await,
        "the desk took the new user in live"
    );
    let (ok, _, err) = lantern(&["user", "add", "nora", "--role", "admin"], &config, "harbour lights at dusk\n");
    assert!(!ok && err.contains("exists already"), "{err}");
    let (ok, _, err) = lantern(&["user", "add", "zed", "--role", "janitor"], &config, "harbour lights at dusk\n");
    assert!(!ok && err.contains("not a role"), "{err}");

    // A session, then a new password: the session ends and only the new password works.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let signed_in = |password: &'static str| {
        let http = http.clone();
        let url = desk.url("/login");
        async move {
            let resp = http.post(url).form(&[("name", "nora"), ("password", password)]).send().await.expect("sign in");
            resp.headers().get("set-cookie").map(|c| c.to_str().unwrap_or_default().split(';').next().unwrap_or_default().to_string())
        }
    };
    let cookie = signed_in("harbour lights at dusk").await.expect("signed in");
    let me = |cookie: String| {
        let http = http.clone();
        let url = desk.url("/api/me");
        async move { http.get(url).header("cookie", cookie).send().await.expect("me").status().as_u16() }
    };
    assert_eq!(me(cookie.clone()).await, 200);
    let (ok, out, err) = lantern(&["user", "passwd", "nora"], &config, "tide tables and tea\n");
    assert!(ok, "{out}{err}");
    assert!(eventually(Duration::from_secs(15), || async { me(cookie.clone()).await == 401 }).await, "the old session ended");
    assert_eq!(basic_status(&desk, "nora", "harbour lights at dusk").await, 401);
    assert_eq!(basic_status(&desk, "nora", "tide tables and tea").await, 200);

    // Disabled: her sessions end and she cannot sign in; the list says so.
    let cookie = signed_in("tide tables and tea").await.expect("signed in again");
    let (ok, out, err) = lantern(&["user", "disable", "nora"], &config, "");
    assert!(ok, "{out}{err}");
    assert!(eventually(Duration::from_secs(15), || async { me(cookie.clone()).await == 401 }).await, "a disabled user's session ends");
    assert_eq!(basic_status(&desk, "nora", "tide tables and tea").await, 401);
    let (ok, list, _) = lantern(&["user", "list"], &config, "");
    assert!(ok);
    let line = list.lines().find(|l| l.starts_with("nora")).expect("nora is listed");
    assert!(line.contains("nurse") && line.contains("disabled") && line.contains("users.toml"), "{list}");
    assert!(
        list.lines().any(|l| l.starts_with("nurse ") && l.contains("main config file")),
        "users of the main file are listed too: {list}"
    );
    let (ok, _, err) = lantern(&["user", "disable", "nurse"], &config, "");
    assert!(!ok && err.contains("main config file"), "{err}");

    let audit: serde_json::Value = reqwest::Client::new()
        .get(desk.url("/api/audit"))
        .basic_auth("admin", Some("admin-pass"))
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    let actions: Vec<&str> =
        audit.as_array().expect("entries").iter().filter(|e| e["target"] == "nora").filter_map(|e| e["action"].as_str()).collect();
    for a in ["user_add", "user_passwd", "user_disable"] {
        assert!(actions.contains(&a), "{a} is audited: {actions:?}");
    }
    let file = std::fs::read_to_string(tmp.path().join("users.toml")).expect("users file");
    assert!(!file.contains("tide tables") && file.contains("$argon2id$"), "only hashes are written");
    desk.stop().await;
}

#[test]
fn replay_works_on_a_fresh_checkout_and_makes_its_key() {
    let tmp = tempfile::tempdir().expect("tmp");
    let key = tmp.path().join("data/pseudonym.key");
    let config = tmp.path().join("lantern.toml");
    std::fs::write(&config, format!("[privacy]\nkey_file = \"{}\"\n", key.display())).expect("config");
    let events = tmp.path().join("calls.jsonl");
    let at = chrono::Utc::now().to_rfc3339();
    let lines: String = (0..3)
        .map(|i| format!("{{\"event_id\":\"e{i}\",\"call_id\":\"c{i}\",\"kind\":\"offered\",\"occurred_at\":\"{at}\",\"channel\":\"999\",\"caller\":{{\"number\":\"07700 900123\"}}}}\n"))
        .collect();
    std::fs::write(&events, lines).expect("events");
    let out = Command::new(crate::LANTERN).arg("replay").arg("--config").arg(&config).arg(&events).output().expect("replay runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(key.exists(), "the key was made");
    assert!(stderr.contains("back it up"), "with the same warning as run: {stderr}");
    assert!(stdout.contains("acute-day"), "three calls in a day: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_prints_the_desk_and_a_password_and_flags_arrive() {
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let mut world = World::new(&url, "sqlite://unused").await;
    world.config.broker.enabled = false;
    for listen in [&mut world.config.flagger.listen, &mut world.config.demand.listen, &mut world.config.desk.listen] {
        *listen = format!("127.0.0.1:{}", free_port());
    }
    let config = world.write_config();
    let data = tmp.path().join("demo");
    let mut child = Command::new(crate::LANTERN)
        .args(["demo", "--rate", "1200", "--duration", "90s", "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(tmp.path().join("demo.log")).map(Stdio::from).unwrap_or(Stdio::null()))
        .spawn()
        .expect("demo runs");
    let stdout = child.stdout.take().expect("stdout");
    let printed = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        let mut reading = std::io::BufReader::new(stdout).lines();
        for line in reading.by_ref().map_while(Result::ok) {
            let done = line.starts_with("Ctrl-C");
            lines.push(line);
            if done {
                break;
            }
        }
        // Keep the pipe open and drained for as long as the demo writes to it.
        std::thread::spawn(move || reading.for_each(drop));
        lines.join("\n")
    })
    .await
    .expect("read");
    let desk = world.config.desk.listen.clone();
    assert!(printed.contains(&format!("http://{desk}/")), "{printed}");
    let password = printed
        .split("password ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("a password is printed: {printed}"));
    assert!(data.join("users.toml").exists(), "the demo nurse lives in the demo folder");
    let http = reqwest::Client::new();
    let flags = eventually(Duration::from_secs(60), || async {
        let resp = http.get(format!("http://{desk}/api/flags")).basic_auth("demo.nurse", Some(&password)).send().await;
        match resp {
            Ok(r) if r.status().is_success() => r.json::<Vec<serde_json::Value>>().await.is_ok_and(|f| !f.is_empty()),
            _ => false,
        }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(tmp.path().join("demo.log")).unwrap_or_default();
    assert!(flags, "flags reach the desk, and the demo nurse signs in with the printed password; log: {}", &log[..log.len().min(4000)]);
    assert!(data.join("lantern.db").exists() && data.join("pseudonym.key").exists(), "its database and key are in the demo folder");
}
