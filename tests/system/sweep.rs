//! The privacy sweep: events carrying caller numbers in every field and in every format a
//! contact centre writes them, the desk used as a nurse and an admin would, then every sink
//! searched for any eight consecutive digits of those numbers. Sinks: every MQTT message
//! Lantern publishes, its log, every database table (the SQLite file with its write-ahead log,
//! or every PostgreSQL table), every `/metrics`, every desk API response. Zero hits.

use lantern_tests::*;
use serde_json::{json, Value};
use std::time::Duration;

/// The numbers, each in the digit forms a leak could take: national and international.
const NUMBERS: [(&str, &str); 3] = [("07700900512", "447700900512"), ("01134960871", "441134960871"), ("02079460333", "442079460333")];

/// Every eight-digit window of every form of every number.
fn needles() -> Vec<String> {
    let mut out = Vec::new();
    for (national, international) in NUMBERS {
        for form in [national, international] {
            for i in 0..=form.len() - 8 {
                out.push(form[i..i + 8].to_string());
            }
        }
    }
    out
}

/// Digits joined across the separators a number is written with (full-width digits folded),
/// one string per run: `0113 496-0871` reads `01134960871`.
fn digit_runs(text: &str) -> Vec<String> {
    let mut runs = Vec::new();
    let mut cur = String::new();
    let mut gap = 0;
    for c in text.chars() {
        let d = match c {
            '0'..='9' => Some(c),
            '\u{FF10}'..='\u{FF19}' => char::from_u32(c as u32 - 0xFF10 + '0' as u32),
            _ => None,
        };
        match d {
            Some(d) => {
                cur.push(d);
                gap = 0;
            }
            None if !cur.is_empty() && gap < 2 && matches!(c, ' ' | '-' | '.' | '/' | '_' | '(' | ')' | '+' | '\u{3000}' | '\u{00A0}') => {
                gap += 1
            }
            None => {
                if cur.len() >= 8 {
                    runs.push(std::mem::take(&mut cur));
                }
                cur.clear();
                gap = 0;
            }
        }
    }
    if cur.len() >= 8 {
        runs.push(cur);
    }
    runs
}

/// Where in `text` (named `sink`) any needle appears, with some context.
fn hits(sink: &str, text: &str, needles: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for run in digit_runs(text) {
        if let Some(n) = needles.iter().find(|n| run.contains(n.as_str())) {
            let at = text.find(&n[..4]).unwrap_or(0);
            let context: String = text.chars().skip(text[..at].chars().count().saturating_sub(60)).take(140).collect();
            out.push(format!("{sink}: digits {n} in …{context}…"));
        }
    }
    out
}

fn events(prefix: &str) -> Vec<Vec<u8>> {
    let now = chrono::Utc::now();
    let at = |m: i64| (now - chrono::Duration::minutes(m)).to_rfc3339();
    let notes = "says she wants to end her life; call back on 07700 900512 or 07700_900512, \
                 her sister on 0113/496/0871 or (0113) 496 0871, work +44 20 7946 0333, \
                 text ０２０ ７９４６ ０３３３, old number 0044 7700 900 512";
    let mut out = Vec::new();
    for n in 0..3 {
        let number = ["07700 900512", "+447700900512", "07700-900-512"][n as usize];
        let v = json!({
            "event_id": format!("{prefix}-evt-07700900512-{n}"),
            "call_id": format!("{prefix}-call-0113 496 0871-{n}"),
            "kind": "offered",
            "occurred_at": at(40 - n),
            "channel": "999",
            "division": "West 0113 496 0871",
            "caller": {"number": number, "presentation": "allowed",
                       "address_id": "UPRN 02079460333", "phone": "+447700900512"},
            "incident": {"type": "CB 07700900512", "grade": "ring 01134960871", "qualifiers": ["MENTAL_HEALTH", "tel 020 7946 0333"]},
            "notes": notes,
            "cli": "07700900512",
            "07700900512": "a key that is a number",
        });
        out.push(v.to_string().into_bytes());
    }
    // Refused, each echoed on `rejected`: notes as a list, a number where a string belongs,
    // broken JSON holding a number.
    let mut bad = json!({"event_id": format!("{prefix}-bad-1"), "call_id": "c1", "kind": "offered", "occurred_at": at(5),
                         "channel": "999", "notes": ["rang on 07700 900512"], "cli": "+44 113 496 0871"});
    out.push(bad.to_string().into_bytes());
    bad["notes"] = json!("fine");
    bad["event_id"] = json!(format!("{prefix}-bad-2"));
    bad["caller"] = json!({"number": 7700900512u64});
    out.push(bad.to_string().into_bytes());
    out.push(format!("{{\"event_id\": \"{prefix}-bad-3\", \"notes\": \"07700 900512\"").into_bytes());
    out
}

async fn database_text(url: &str, dir: &std::path::Path) -> String {
    if url.starts_with("sqlite:") {
        let mut text = String::new();
        for entry in std::fs::read_dir(dir).expect("dir").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("lantern.db") {
                text.push_str(&String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap_or_default()));
            }
        }
        assert!(text.len() > 10_000, "the SQLite file was read");
        return text;
    }
    let pool = sqlx::PgPool::connect(url).await.expect("postgres");
    let tables: Vec<String> = sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'")
        .fetch_all(&pool)
        .await
        .expect("tables");
    let mut text = String::new();
    for t in tables {
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM \"{t}\" t")).fetch_all(&pool).await.expect("rows");
        text.push_str(&format!("== {t}\n{}\n", rows.join("\n")));
    }
    pool.close().await;
    text
}

async fn sweep(backend: &str) {
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new(backend, tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    world.config.desk.users = desk_users();
    world.config.broker.enabled = false;
    for listen in [&mut world.config.flagger.listen, &mut world.config.demand.listen, &mut world.config.desk.listen] {
        *listen = format!("127.0.0.1:{}", free_port());
    }
    let config = world.write_config();
    let log = tmp.path().join("lantern.log");
    let log_file = std::fs::File::create(&log).expect("log");
    let mut child = std::process::Command::new(crate::LANTERN)
        .args(["run", "--config"])
        .arg(&config)
        .env("LANTERN_LOG", "info")
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .spawn()
        .expect("lantern runs");
    let addr = |listen: &str| -> std::net::SocketAddr { listen.parse().expect("addr") };
    let (flagger, demand, desk) = (addr(&world.config.flagger.listen), addr(&world.config.demand.listen), addr(&world.config.desk.listen));
    for a in [flagger, demand, desk] {
        let ready = eventually(Duration::from_secs(60), || async {
            reqwest::get(format!("http://{a}/readyz")).await.is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(ready, "lantern serves {a}; log: {}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    let root = world.config.mqtt.topic_root.clone();
    let mut watch = Probe::connect(&url, &[&format!("{root}/#")]).await;
    let publisher = Probe::connect(&url, &[]).await;
    for e in events(&world.prefix) {
        publisher.publish(&world.topic(), e).await;
    }
    assert!(eventually(Duration::from_secs(30), || async { desk_flags(desk).await.len() >= 4 }).await, "flags reach the desk");

    // The desk as a nurse and an admin use it; every response is a sink.
    let http = reqwest::Client::new();
    let mut responses = String::new();
    let flags = desk_flags(desk).await;
    let ids: Vec<String> = flags.iter().filter_map(|f| f["flag_id"].as_str().map(str::to_string)).collect();
    let caller_ref = flags.iter().find_map(|f| f["caller_ref"].as_str()).expect("a caller ref").to_string();
    let mut calls: Vec<(&str, &str, String, Option<Value>)> = vec![
        ("nurse", "GET", "/api/flags?limit=1000".into(), None),
        ("nurse", "GET", "/api/me".into(), None),
        ("nurse", "POST", format!("/api/flags/{}/acknowledge", ids[0]), Some(json!({}))),
        (
            "nurse",
            "POST",
            format!("/api/flags/{}/outcome", ids[1]),
            Some(json!({"outcome": "advice_given", "note": "rang her back on 07700 900512, sister 0113 496 0871"})),
        ),
        ("nurse", "POST", format!("/api/flags/{}/outcome", ids[2]), Some(json!({"outcome": "07700900512"}))),
        (
            "nurse",
            "POST",
            format!("/api/flags/{}/feedback", ids[2]),
            Some(json!({"verdict": "useful", "note": "her number is +44 7700 900512"})),
        ),
        ("nurse", "GET", format!("/api/callers/{caller_ref}?reason=follow-up%20on%200113%20496%200871"), None),
        ("nurse", "GET", "/api/callers/top?window=30d".into(), None),
        ("admin", "GET", "/api/audit".into(), None),
        ("admin", "GET", "/api/audit?format=csv".into(), None),
        ("admin", "GET", format!("/api/subject-access?caller_ref={caller_ref}&reason=SAR%2007700%20900512"), None),
    ];
    calls.extend(ids.iter().map(|id| ("inspector", "GET", format!("/api/flags/{id}"), None)));
    for (user, method, path, body) in calls {
        let req = match method {
            "GET" => http.get(format!("http://{desk}{path}")),
            _ => http.post(format!("http://{desk}{path}")).json(&body.unwrap_or(Value::Null)),
        };
        let resp = req.basic_auth(user, Some(format!("{user}-pass"))).send().await.expect("desk answers");
        responses.push_str(&format!("== {method} {path} {}\n{}\n", resp.status(), resp.text().await.unwrap_or_default()));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Everything Lantern published (not the events this test sent).
    let mut published = String::new();
    while let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(500), watch_next(&mut watch)).await {
        published.push_str(&format!("== {}\n{}\n", p.0, p.1));
    }
    assert!(published.contains("rejected") && published.contains("flags/"), "the probe saw Lantern's output: {published}");
    let mut metrics = String::new();
    for a in [flagger, demand, desk] {
        metrics.push_str(&reqwest::get(format!("http://{a}/metrics")).await.expect("metrics").text().await.expect("body"));
    }
    let _ = child.kill();
    let _ = child.wait();
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(logs.contains("event rejected"), "the log holds the rejections: {logs}");
    let database = database_text(&db.url, tmp.path()).await;

    let needles = needles();
    let mut found = Vec::new();
    for (sink, text) in [("MQTT", &published), ("log", &logs), ("database", &database), ("/metrics", &metrics), ("desk API", &responses)] {
        found.extend(hits(sink, text, &needles));
    }
    assert!(found.is_empty(), "{} caller numbers leaked ({backend}):\n{}", found.len(), found.join("\n"));
    db.cleanup().await;
}

/// The next message on a topic other than the calls topic: (topic, payload).
async fn watch_next(probe: &mut Probe) -> Option<(String, String)> {
    loop {
        let p = probe.rx.recv().await?;
        if !p.topic.contains("/calls/") {
            return Some((p.topic.to_string(), String::from_utf8_lossy(&p.payload).into_owned()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_caller_number_reaches_any_sink() {
    // The sweep's own search works: it finds numbers written every way this test uses.
    let needles = needles();
    for text in ["07700 900512", "0113/496/0871", "０２０ ７９４６ ０３３３", "+44 (0)20 7946 0333", "x07700_900512y"] {
        assert!(!hits("self-check", text, &needles).is_empty(), "{text}");
    }
    for backend in backends() {
        sweep(backend).await;
    }
}
