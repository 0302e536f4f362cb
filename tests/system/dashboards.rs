//! The duty inspector's dashboard and alerts against a real Prometheus: the shipped files pass
//! promtool, and every panel's query returns data from the running services.

use lantern_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn grafana() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../grafana")
}

fn tool(name: &str) -> Option<PathBuf> {
    let found = ["/usr/bin", "/usr/local/bin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.exists());
    if found.is_none() {
        skip(&format!("{name} is not installed (Debian package prometheus)"));
    }
    found
}

#[test]
fn the_shipped_prometheus_config_and_alert_rules_pass_promtool_and_their_tests() {
    let Some(promtool) = tool("promtool") else { return };
    for args in [vec!["check", "config", "prometheus.yml"], vec!["check", "rules", "alerts.yml"], vec!["test", "rules", "alerts.test.yml"]]
    {
        let out = Command::new(&promtool).args(&args).current_dir(grafana()).output().expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_dashboard_has_pinned_uids_a_division_variable_and_rate_intervals() {
    let text = std::fs::read_to_string(grafana().join("dashboards/lantern-duty-inspector.json")).expect("dashboard");
    let d: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(d["uid"], "lantern-duty-inspector");
    assert_eq!(d["templating"]["list"][0]["name"], "division");
    for p in d["panels"].as_array().expect("panels") {
        assert_eq!(p["datasource"]["uid"], "lantern-prometheus", "{}", p["title"]);
        for t in p["targets"].as_array().expect("targets") {
            let e = t["expr"].as_str().expect("expr");
            assert!(
                !e.contains("rate(") || e.contains("$__rate_interval") || e.contains("[1h]") || e.contains("[24h]"),
                "{}: {e}",
                p["title"]
            );
        }
    }
    let ds = std::fs::read_to_string(grafana().join("provisioning/datasources/lantern.yml")).expect("datasource");
    assert!(ds.contains("uid: lantern-prometheus"));
}

fn panel_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(grafana().join("dashboards/lantern-duty-inspector.json")).expect("dashboard");
    let d: serde_json::Value = serde_json::from_str(&text).expect("json");
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or("").replace("$division", ".*").replace("$__rate_interval", "20s");
            out.push((p["title"].as_str().unwrap_or("").to_string(), expr));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_returns_data_from_a_real_prometheus() {
    let Some(prometheus) = tool("prometheus") else { return };
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new("sqlite", tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    world.config.desk.users = desk_users();
    let flagger = Running::flagger(&world.config).await;
    let demand = Running::demand(&world.config).await;
    let desk = Running::desk(&world.config).await;

    let port = free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: lantern-flagger\n    static_configs:\n      - targets: ['{}']\n  - job_name: lantern-demand\n    static_configs:\n      - targets: ['{}']\n  - job_name: lantern-desk\n    static_configs:\n      - targets: ['{}']\n",
        flagger.addr, demand.addr, desk.addr
    );
    std::fs::write(tmp.path().join("prometheus.yml"), config).expect("config");
    let mut prom = Command::new(prometheus)
        .arg(format!("--config.file={}", tmp.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", tmp.path().join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let api = format!("http://127.0.0.1:{port}");
    assert!(
        eventually(Duration::from_secs(30), || async {
            reqwest::get(format!("{api}/-/ready")).await.is_ok_and(|r| r.status().is_success())
        })
        .await
    );

    // Twelve seconds of traffic stamped now: calls answered and abandoned, mental-health notes.
    let probe = Probe::connect(&url, &[]).await;
    let p = world.prefix.clone();
    for i in 0..120 {
        let now = chrono::Utc::now();
        let (channel, division) = [("999", "West"), ("101", "East"), ("999", "North")][i % 3];
        let mk = |suffix: &str, kind: &str, at: chrono::DateTime<chrono::Utc>, notes: Option<&str>| {
            let mut v: serde_json::Value = serde_json::from_slice(&event(
                &format!("{p}-{i}-{suffix}"),
                &format!("{p}-c{i}"),
                kind,
                &at.to_rfc3339(),
                Some(&format!("07700 90{:04}", i % 7)),
                notes,
            ))
            .expect("json");
            v["channel"] = channel.into();
            v["division"] = division.into();
            serde_json::to_vec(&v).expect("json")
        };
        let notes = (i % 4 == 0).then_some("says he's going to jump off the bridge");
        probe.publish(&world.topic(), mk("o", "offered", now - chrono::Duration::seconds(8), notes)).await;
        let second = if i % 5 == 1 { mk("x", "abandoned", now, None) } else { mk("a", "answered", now, None) };
        probe.publish(&world.topic(), second).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Nurses work the desk meanwhile: acknowledge a flag and record an outcome.
        if i % 10 == 9 {
            let nurse = reqwest::Client::new();
            let list: serde_json::Value = nurse
                .get(desk.url("/api/flags?status=open"))
                .basic_auth("nurse", Some("nurse-pass"))
                .send()
                .await
                .expect("flags")
                .json()
                .await
                .expect("json");
            if let Some(id) = list.as_array().and_then(|a| a.first()).and_then(|f| f["flag_id"].as_str()) {
                let base = desk.url(&format!("/api/flags/{id}"));
                let _ = nurse.post(format!("{base}/acknowledge")).basic_auth("nurse", Some("nurse-pass")).body("{}").send().await;
                let _ = nurse
                    .post(format!("{base}/feedback"))
                    .basic_auth("nurse", Some("nurse-pass"))
                    .body(r#"{"verdict":"useful"}"#)
                    .send()
                    .await;
                let _ = nurse
                    .post(format!("{base}/outcome"))
                    .basic_auth("nurse", Some("nurse-pass"))
                    .body(r#"{"outcome":"s136_avoided"}"#)
                    .send()
                    .await;
            }
        }
    }
    // Let the gauges refresh and Prometheus scrape a few more times.
    tokio::time::sleep(Duration::from_secs(7)).await;

    let client = reqwest::Client::new();
    let mut empty = Vec::new();
    let mut checked = 0;
    for (title, expr) in panel_queries() {
        let r: serde_json::Value = client
            .get(format!("{api}/api/v1/query"))
            .query(&[("query", expr.as_str())])
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("json");
        assert_eq!(r["status"], "success", "{title}: `{expr}` failed: {r}");
        checked += 1;
        if r["data"]["result"].as_array().is_none_or(|a| a.is_empty()) {
            empty.push(format!("{title}: {expr}"));
        }
    }
    let _ = prom.kill();
    let _ = prom.wait();
    flagger.stop().await;
    demand.stop().await;
    desk.stop().await;
    assert!(checked >= 20, "only {checked} queries checked");
    assert!(empty.is_empty(), "panels with no data:\n{}", empty.join("\n"));
}
