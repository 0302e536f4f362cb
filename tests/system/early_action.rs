//! Early action: a referral through the API with every role and its audit trail, and the impact
//! report on a seeded scenario against a brute-force count in the test, on both databases.

use chrono::{SecondsFormat, TimeZone, Utc};
use lantern_shared::Clock;
use lantern_tests::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

const DAY: i64 = 86_400_000;

fn at(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms).single().expect("time").to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn ms_of(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text).expect("rfc3339").timestamp_millis()
}

struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    fn new(desk: &Running) -> Http {
        Http { client: reqwest::Client::new(), base: desk.url("") }
    }

    async fn get(&self, user: &str, path: &str) -> reqwest::Response {
        let url = format!("{}{}", self.base.trim_end_matches('/'), path);
        self.client.get(url).basic_auth(user, Some(format!("{user}-pass"))).send().await.expect("request")
    }

    async fn post(&self, user: &str, path: &str, body: Value) -> reqwest::Response {
        let url = format!("{}{}", self.base.trim_end_matches('/'), path);
        self.client.post(url).basic_auth(user, Some(format!("{user}-pass"))).json(&body).send().await.expect("request")
    }
}

async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referral_goes_through_the_api_by_role_and_every_step_is_audited() {
    for backend in backends() {
        referral_flow(backend).await;
    }
}

async fn referral_flow(backend: &str) {
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new(backend, tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    world.config.desk.users = desk_users();
    let flagger = Running::flagger(&world.config).await;
    let desk = Running::desk(&world.config).await;
    let probe = Probe::connect(&url, &[]).await;
    let http = Http::new(&desk);
    let p = world.prefix.clone();
    let now = Utc::now();
    for i in 0..3 {
        let notes = (i == 2).then_some("He is very drunk and says he wants to kill himself tonight");
        let t = (now - chrono::Duration::minutes(10 - i)).to_rfc3339();
        probe.publish(&world.topic(), event(&format!("{p}-e{i}"), &format!("{p}-c{i}"), "offered", &t, Some("07700 900123"), notes)).await;
    }
    let flag = desk_flag(desk.addr, &format!("{p}-c2"), Duration::from_secs(20)).await.expect("the third call raises a flag");
    let caller = flag["caller_ref"].as_str().expect("caller_ref").to_string();
    let flag_id = flag["flag_id"].as_str().expect("flag_id").to_string();
    // The dialog's pre-ticked risk factors come from what the caller's flags saw.
    let ok = eventually(Duration::from_secs(10), || async {
        let (_, s) = json_of(http.get("nurse", &format!("/api/referrals/suggest?caller_ref={caller}")).await).await;
        let suggested: Vec<&str> = s["suggested"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        suggested.contains(&"mental_health") && suggested.contains(&"alcohol")
    })
    .await;
    assert!(ok, "mental-health and alcohol cues pre-tick their risk factors");

    let refer = |team: &str, factors: Value| json!({"team": team, "risk_factors": factors, "note": "ring back on 07700 900123", "flag_id": flag_id});
    let path = format!("/api/callers/{caller}/referrals");
    for who in ["inspector", "admin"] {
        assert_eq!(http.post(who, &path, refer("early-action", json!([]))).await.status(), 403, "{who} cannot refer");
    }
    let (status, err) = json_of(http.post("nurse", &path, refer("nowhere", json!([]))).await).await;
    assert_eq!(status, 400);
    assert!(err.to_string().contains("team"), "the error names the field: {err}");
    let (status, err) = json_of(http.post("nurse", &path, refer("early-action", json!(["horoscope"]))).await).await;
    assert_eq!(status, 400);
    assert!(err.to_string().contains("risk_factors"), "the error names the field: {err}");

    let (status, referral) = json_of(http.post("nurse", &path, refer("early-action", json!(["mental_health", "alcohol"]))).await).await;
    assert_eq!(status, 200, "{referral}");
    assert_eq!(referral["status"], "referred");
    assert_eq!(referral["risk_factors"], json!(["alcohol", "mental_health"]));
    assert!(!referral.to_string().contains("900123"), "the note is masked before it is kept: {referral}");
    let id = referral["referral_id"].as_str().expect("referral_id").to_string();
    assert_eq!(http.post("early", &path, refer("early-action", json!([]))).await.status(), 409, "one open referral per caller");

    // The caller's flags show the referral.
    let shown = eventually(Duration::from_secs(10), || async {
        desk_flags(desk.addr).await.iter().filter(|f| f["caller_ref"] == caller.as_str()).all(|f| f["referral"]["status"] == "referred")
    })
    .await;
    assert!(shown, "every flag of the caller shows the referral status");

    let step = |status: &str, when: i64| json!({"status": status, "at": at(when), "note": "first visit"});
    let path = format!("/api/referrals/{id}");
    // Times are sent to the second; a second ahead is after the referral and not in the future.
    let t = Utc::now().timestamp_millis() + 1000;
    assert_eq!(http.post("nurse", &path, step("engaged", t)).await.status(), 403, "only early-action staff record the intervention");
    assert_eq!(http.post("early", &path, step("engaged", t + 3_600_000)).await.status(), 400, "not in the future");
    let (status, engaged) = json_of(http.post("early", &path, step("engaged", t)).await).await;
    assert_eq!((status, engaged["status"].as_str()), (200, Some("engaged")), "{engaged}");
    assert_eq!(http.post("early", &path, step("closed", t - DAY)).await.status(), 400, "cannot end before it started");
    let (status, closed) = json_of(http.post("early", &path, step("closed", t + 1000)).await).await;
    assert_eq!((status, closed["status"].as_str()), (200, Some("closed")), "{closed}");
    assert_eq!(http.post("early", &path, step("closed", t + 2000)).await.status(), 409, "already closed");

    let (_, list) = json_of(http.get("inspector", "/api/referrals?status=closed").await).await;
    assert!(list.as_array().is_some_and(|l| l.iter().any(|r| r["referral_id"] == id.as_str())), "{list}");
    let (_, audit) = json_of(http.get("admin", "/api/audit?limit=500").await).await;
    let actions: Vec<(String, String)> = audit
        .as_array()
        .map(|a| a.iter().map(|e| (e["action"].as_str().unwrap_or("").to_string(), e["user"].as_str().unwrap_or("").to_string())).collect())
        .unwrap_or_default();
    for (action, user) in [("refer", "nurse"), ("referral_engaged", "early"), ("referral_closed", "early")] {
        assert!(actions.contains(&(action.to_string(), user.to_string())), "{action} by {user} is audited: {audit}");
    }
    assert_eq!(desk.metric("lantern_referrals_total{team=\"early-action\"}").await, 1.0);
    desk.stop().await;
    flagger.stop().await;
    db.cleanup().await;
}

/// A small fixed generator: the scenario is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// A caller of the scenario: the number, when it called, and its referral if any
/// (referred at, engaged at, risk factors).
struct Caller {
    number: String,
    calls: Vec<i64>,
    referral: Option<(i64, Option<i64>, Vec<&'static str>)>,
}

/// Sixteen callers over most of a year: seven referred (one before the period, one not yet
/// engaged, one too recent to count), the rest frequent or occasional callers never referred.
fn scenario(now: i64) -> Vec<Caller> {
    let mut rng = Lcg(20261130);
    let mut callers = Vec::new();
    for i in 0..16u64 {
        let mut calls: Vec<i64> = (0..4 + rng.below(10)).map(|_| now - 330 * DAY + rng.below(328 * DAY as u64) as i64).collect();
        let factors = [vec!["mental_health"], vec!["mental_health", "alcohol"], vec!["alcohol"], vec![]];
        let referral = match i {
            0..=4 => {
                let referred = now - 200 * DAY + (i as i64) * 33 * DAY + rng.below(DAY as u64) as i64;
                let engaged = (i != 3).then(|| referred + rng.below(6 * DAY as u64) as i64);
                Some((referred, engaged, factors[i as usize % 4].clone()))
            }
            5 => Some((now - 12 * DAY, Some(now - 10 * DAY), vec!["mental_health"])),
            6 => Some((now - 280 * DAY, Some(now - 275 * DAY), vec!["alcohol"])),
            _ => None,
        };
        // Frequent callers call in bursts (three in a few hours); the referred ones before they
        // are referred, and more often in the month before.
        let burst_day = match &referral {
            Some((referred, _, _)) => referred - DAY - rng.below(3 * DAY as u64) as i64,
            None if i < 13 => now - 230 * DAY + rng.below(210 * DAY as u64) as i64,
            None => 0,
        };
        if burst_day != 0 {
            calls.extend((0..3).map(|k| burst_day + k * 3_600_000));
            calls.extend((0..3).map(|_| burst_day - rng.below(25 * DAY as u64) as i64));
        }
        calls.retain(|t| *t < now - 60_000);
        calls.sort();
        callers.push(Caller { number: format!("07700 900{:03}", 200 + i), calls, referral });
    }
    callers
}

fn change(before: usize, after: usize) -> Option<f64> {
    (before > 0).then(|| ((after as f64 - before as f64) / before as f64 * 1000.0).round() / 1000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_impact_report_equals_a_brute_force_count_on_both_databases() {
    for backend in backends() {
        impact_against_brute_force(backend).await;
    }
}

async fn impact_against_brute_force(backend: &str) {
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new(backend, tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    world.config.desk.users = desk_users();
    world.config.early_action.impact_window = "30d".parse().expect("span");
    let now = Utc::now().timestamp_millis() / 1000 * 1000;
    let clock = Clock::manual(Utc.timestamp_millis_opt(now).single().expect("now"));
    let flagger = Running::flagger(&world.config).await;
    let desk = Running::desk_with_clock(&world.config, clock.clone()).await;
    let mut flags = Probe::connect(&url, &[&world.out("flags/repeat-caller")]).await;
    let probe = Probe::connect(&url, &[]).await;
    let http = Http::new(&desk);
    let callers = scenario(now);

    // Every call, in time order, as the control room would have sent it.
    let mut all: Vec<(i64, usize)> = callers.iter().enumerate().flat_map(|(i, c)| c.calls.iter().map(move |t| (*t, i))).collect();
    all.sort();
    let p = world.prefix.clone();
    for (n, (t, i)) in all.iter().enumerate() {
        probe
            .publish(&world.topic(), event(&format!("{p}-e{n}"), &format!("{p}-c{n}"), "offered", &at(*t), Some(&callers[*i].number), None))
            .await;
    }
    let stored = eventually(Duration::from_secs(60), || async {
        query_i64(&db.url, "SELECT COUNT(*) FROM flagger_calls").await == all.len() as i64
    })
    .await;
    assert!(stored, "all {} calls stored", all.len());
    // Who met a repeat-caller rule, and when first, as the flags on the wire say.
    let mut raised: Vec<(String, usize, i64)> = Vec::new();
    while let Some(f) = flags.next_json(Duration::from_secs(3), |_| true).await {
        if f["status"] == "raised" {
            let n: usize = f["event_id"].as_str().and_then(|e| e.rsplit_once("-e")).and_then(|(_, n)| n.parse().ok()).expect("event id");
            raised.push((
                f["caller_ref"].as_str().expect("ref").to_string(),
                all[n].1,
                ms_of(f["occurred_at"].as_str().expect("occurred_at")),
            ));
        }
    }
    let ref_of: HashMap<usize, String> = raised.iter().map(|(r, i, _)| (*i, r.clone())).collect();

    // The referrals, made and engaged on the days the scenario says.
    for (i, c) in callers.iter().enumerate() {
        let Some((referred, engaged, factors)) = &c.referral else { continue };
        let caller = ref_of.get(&i).unwrap_or_else(|| panic!("referred caller {i} has a flag"));
        clock.set(Utc.timestamp_millis_opt(*referred).single().expect("t"));
        let (status, r) = json_of(
            http.post("nurse", &format!("/api/callers/{caller}/referrals"), json!({"team": "early-action", "risk_factors": factors})).await,
        )
        .await;
        assert_eq!(status, 200, "{r}");
        if let Some(e) = engaged {
            clock.set(Utc.timestamp_millis_opt(*e).single().expect("t"));
            let path = format!("/api/referrals/{}", r["referral_id"].as_str().expect("id"));
            assert_eq!(http.post("early", &path, json!({"status": "engaged", "at": at(*e)})).await.status(), 200);
        }
    }
    clock.set(Utc.timestamp_millis_opt(now).single().expect("now"));

    // The brute force: SPEC section 11 read literally.
    let (from, to, window) = (now - 240 * DAY, now, 30 * DAY);
    let referred: BTreeSet<usize> = (0..callers.len()).filter(|i| callers[*i].referral.is_some()).collect();
    let mut cohort: BTreeMap<usize, i64> = BTreeMap::new();
    for i in &referred {
        let (r, e, _) = callers[*i].referral.as_ref().expect("referral");
        let t = e.unwrap_or(*r);
        if (from..to).contains(&t) {
            cohort.insert(*i, t);
        }
    }
    let mut comparison: BTreeMap<usize, i64> = BTreeMap::new();
    for (_, i, t) in &raised {
        if !referred.contains(i) && (from..to).contains(t) {
            let e = comparison.entry(*i).or_insert(*t);
            *e = (*e).min(*t);
        }
    }
    let count = |group: &BTreeMap<usize, i64>| {
        let (mut n, mut before, mut after, mut pending) = (0, 0, 0, BTreeSet::new());
        for (i, t) in group {
            if t + window > now {
                pending.insert(ref_of[i].clone());
                continue;
            }
            n += 1;
            before += callers[*i].calls.iter().filter(|c| (t - window..*t).contains(*c)).count();
            after += callers[*i].calls.iter().filter(|c| (*t..t + window).contains(*c)).count();
        }
        (n, before, after, pending)
    };
    let (cn, cb, ca, pending) = count(&cohort);
    let (kn, kb, ka, _) = count(&comparison);
    assert!(cn >= 3 && kn >= 3 && !pending.is_empty(), "the scenario has both groups and a pending caller: {cn} {kn} {pending:?}");

    let q = format!("/api/reports/impact?from={}&to={}&window=30d", at(from), at(to));
    let (status, report) = json_of(http.get("inspector", &q).await).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["window"], "30d");
    for (group, n, b, a) in [("cohort", cn, cb, ca), ("comparison", kn, kb, ka)] {
        let g = &report[group];
        assert_eq!(
            (g["callers"].as_u64(), g["calls_before"].as_u64(), g["calls_after"].as_u64()),
            (Some(n as u64), Some(b as u64), Some(a as u64)),
            "{group}: {report}"
        );
        assert_eq!(g["change"].as_f64(), change(b, a), "{group} change: {report}");
    }
    let did = change(cb, ca).zip(change(kb, ka)).map(|(a, b)| ((a - b) * 1000.0).round() / 1000.0);
    assert_eq!(report["difference_in_differences"].as_f64(), did, "{report}");
    let counted: Vec<usize> = cohort.iter().filter(|(_, t)| **t + window <= now).map(|(i, _)| *i).collect();
    for factor in ["mental_health", "alcohol", "drugs"] {
        let with = counted.iter().filter(|i| callers[**i].referral.as_ref().is_some_and(|(_, _, f)| f.contains(&factor))).count();
        let share = ((with as f64 / counted.len() as f64) * 1000.0).round() / 1000.0;
        assert_eq!(report["risk_factors"][factor].as_f64(), Some(share), "{factor}: {report}");
    }
    let listed: BTreeSet<String> =
        report["pending"].as_array().expect("pending").iter().filter_map(|p| p["caller_ref"].as_str().map(str::to_string)).collect();
    assert_eq!(listed, pending, "callers whose after-window has not passed are listed, not counted");

    // The same report from the command line, in each format.
    let config = world.write_config();
    let cli = |format: &str| {
        let out = std::process::Command::new(crate::LANTERN)
            .args(["report", "impact", "--from", &at(from), "--to", &at(to), "--format", format, "--config"])
            .arg(&config)
            .output()
            .expect("report runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let from_cli: Value = serde_json::from_str(&cli("json")).expect("json");
    for key in ["cohort", "comparison", "difference_in_differences", "risk_factors", "window"] {
        assert_eq!(from_cli[key], report[key], "{key}: the command and the API agree");
    }
    let csv = cli("csv");
    assert!(csv.contains("group,callers,calls before,calls after,change"), "{csv}");
    assert!(csv.contains(&format!("cohort (referred),{cn},{cb},{ca},")), "{csv}");
    assert!(csv.contains("risk factor,share of cohort callers"), "{csv}");
    let md = cli("md");
    assert!(md.contains("| group | callers |") && md.contains("difference in differences"), "{md}");

    // The mental-health team report and the vulnerable-callers list, in their shapes.
    let (status, team) =
        json_of(http.get("inspector", &format!("/api/reports/mh-team?from={}&to={}", at(now - 7 * DAY), at(now))).await).await;
    assert_eq!(status, 200, "{team}");
    let rows: Vec<&str> = team["savings"].as_array().expect("savings").iter().filter_map(|s| s["row"].as_str()).collect();
    assert_eq!(rows, ["avoided section 136", "other efficiencies", "total"]);
    assert!(team["savings"][0]["pounds"]["police"].is_number() && team["savings"][0]["police_hours"].is_number(), "{team}");
    assert!(team["days"].as_array().is_some_and(|d| (7..=8).contains(&d.len())), "a row per day: {team}");
    let resp =
        http.get("inspector", &format!("/api/reports/vulnerable-callers?from={}&to={}&format=csv", at(now - 330 * DAY), at(now))).await;
    assert!(resp.headers()["content-type"].to_str().unwrap_or("").starts_with("text/csv"));
    let csv = resp.text().await.expect("csv");
    assert!(csv.starts_with("caller_ref,identity,calls,rules met,flags,risk factors,referral,team"), "{csv}");
    assert_eq!(csv.lines().count(), 1 + callers.len(), "one row per caller: {csv}");
    assert!(!csv.contains("07700"), "pseudonyms only");
    let (_, audit) = json_of(http.get("admin", "/api/audit?limit=500").await).await;
    assert!(audit.to_string().contains("export_vulnerable_callers"), "the export is audited as a disclosure");

    desk.stop().await;
    flagger.stop().await;
    db.cleanup().await;
}
