//! Subject access and erasure round trip; the audit log's hash chain catches an edited or a
//! deleted entry; admins export the log as CSV, and the export is itself audited.

use lantern_tests::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const NUMBER: &str = "07700 900789";
const OTHER: &str = "07700 900321";

/// Runs the real `lantern` command; returns (exit success, stdout, stderr).
fn lantern(args: &[&str], config: &Path) -> (bool, String, String) {
    let out = std::process::Command::new(crate::LANTERN).args(args).arg("--config").arg(config).output().expect("lantern runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

async fn subject_access_and_erasure_round_trip(backend: &str) {
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new(backend, tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    world.config.desk.users = desk_users();
    let config = world.write_config();
    let flagger = Running::flagger(&world.config).await;
    let desk = Running::desk(&world.config).await;
    let mut probe = Probe::connect(&url, &[&world.out("flags/repeat-caller")]).await;
    let http = reqwest::Client::new();
    let p = world.prefix.clone();
    let publish = |n: usize, number: &'static str, minutes_ago: i64| {
        let at = (chrono::Utc::now() - chrono::Duration::minutes(minutes_ago)).to_rfc3339();
        event(&format!("{p}-e{n}"), &format!("{p}-c{n}"), "offered", &at, Some(number), Some("says she wants to end her life"))
    };
    // Three calls in an hour from NUMBER (the acute rule), one from OTHER.
    for n in 0..3 {
        probe.publish(&world.topic(), publish(n, NUMBER, 50 - n as i64)).await;
    }
    probe.publish(&world.topic(), publish(3, OTHER, 10)).await;
    let raised = probe.next_json(Duration::from_secs(20), |v| v["status"] == "raised").await.expect("a repeat-caller flag");
    let caller_ref = raised["caller_ref"].as_str().expect("caller ref").to_string();
    assert!(eventually(Duration::from_secs(20), || async { desk_flags(desk.addr).await.len() >= 5 }).await);
    let flag_id = raised["flag_id"].as_str().expect("id");
    let resp = http
        .post(desk.url(&format!("/api/flags/{flag_id}/feedback")))
        .basic_auth("nurse", Some("nurse-pass"))
        .json(&serde_json::json!({"verdict": "useful", "note": "rang her back"}))
        .send()
        .await
        .expect("feedback");
    assert!(resp.status().is_success());
    let open_before = desk.metric("lantern_flags_open{kind=\"mental_health\",severity=\"high\"}").await;

    // Subject access: the CLI from the number, the route from the reference.
    let (ok, out, err) = lantern(&["subject-access", "--number", NUMBER, "--reason", "SAR-2026-0042"], &config);
    assert!(ok, "{err}");
    let records: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(records["calls"].as_array().map(Vec::len), Some(3), "{records}");
    assert!(records["repeat_caller_flags"].as_array().is_some_and(|f| !f.is_empty()));
    assert_eq!(records["mental_health_flags"].as_array().map(Vec::len), Some(3));
    assert!(records["feedback"].as_array().is_some_and(|f| f.len() == 1));
    assert!(!digits(&out).contains("7700900789") && !out.contains("900789"), "the number appears only in the request");
    let route = |user: &'static str, query: String| {
        let http = http.clone();
        let url = desk.url(&format!("/api/subject-access?{query}"));
        async move { http.get(url).basic_auth(user, Some(format!("{user}-pass"))).send().await.expect("route") }
    };
    assert_eq!(route("nurse", format!("caller_ref={caller_ref}&reason=x")).await.status().as_u16(), 403);
    assert_eq!(route("admin", format!("caller_ref={caller_ref}")).await.status().as_u16(), 400, "a reason is required");
    let via_route: Value = route("admin", format!("caller_ref={caller_ref}&reason=SAR-2026-0042")).await.json().await.expect("json");
    assert_eq!(via_route["calls"], records["calls"]);

    // Erasure, then nothing is found; the other caller is untouched; counts stay right.
    let (ok, out, err) = lantern(&["erase", "--number", NUMBER, "--reason", "erasure request ER-7"], &config);
    assert!(ok, "{err}");
    assert!(out.contains("erased 3 calls"), "{out}");
    let (_, out, _) = lantern(&["subject-access", "--number", NUMBER, "--reason", "SAR-2026-0043"], &config);
    let after: Value = serde_json::from_str(&out).expect("JSON");
    assert!(lantern_desk::privacy::holds_nothing(&after), "{after}");
    assert!(after["audit"].as_array().is_some_and(|a| a.iter().any(|e| e["action"] == "erase")), "the erasure is on the record");
    let (_, out, _) = lantern(&["subject-access", "--number", OTHER, "--reason", "check"], &config);
    let other: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(other["calls"].as_array().map(Vec::len), Some(1));
    assert_eq!(desk.metric("lantern_flags_open{kind=\"mental_health\",severity=\"high\"}").await, open_before);

    // The running flagger forgets the erased calls: three new calls raise a new flag counting three.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for n in 10..13 {
        probe.publish(&world.topic(), publish(n, NUMBER, 13 - n as i64)).await;
    }
    let again = probe.next_json(Duration::from_secs(20), |v| v["caller_ref"] == caller_ref.as_str()).await.expect("a flag");
    assert_eq!(again["status"], "raised", "{again}");
    assert_ne!(again["flag_id"], raised["flag_id"]);
    assert_eq!(again["reasons"][0]["calls"], 3, "{again}");

    // The audit log: intact, then an edited entry and a deleted one are caught.
    let (ok, out, _) = lantern(&["audit", "verify"], &config);
    assert!(ok && out.contains("intact"), "{out}");
    let csv = http.get(desk.url("/api/audit?format=csv")).basic_auth("admin", Some("admin-pass")).send().await.expect("csv");
    assert!(csv.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/csv"));
    let csv = csv.text().await.expect("body");
    assert!(csv.starts_with("id,at,user,role,action,target,reason,prev_hash,hash"), "{csv}");
    assert!(csv.contains("export_audit") && csv.contains("subject_access") && csv.contains(",erase,"), "{csv}");
    let second = query_i64(&db.url, "SELECT MIN(id) + 1 FROM desk_audit").await;
    execute(&db.url, &format!("UPDATE desk_audit SET reason = 'nothing to see' WHERE id = {second}")).await;
    let (ok, out, _) = lantern(&["audit", "verify"], &config);
    assert!(!ok && out.contains(&format!("BROKEN at entry {second}")) && out.contains("changed"), "{out}");
    execute(&db.url, &format!("DELETE FROM desk_audit WHERE id = {second}")).await;
    let (ok, out, _) = lantern(&["audit", "verify"], &config);
    assert!(!ok && out.contains("inserted or deleted"), "{out}");

    desk.stop().await;
    flagger.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_access_erasure_and_the_audit_chain_on_each_database() {
    for backend in backends() {
        subject_access_and_erasure_round_trip(backend).await;
    }
}
