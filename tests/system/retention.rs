//! Every kind of record is pruned once it is past its `[retention]` period, by the service that
//! owns it, on that service's clock: a test clock moved forward here.

use lantern_shared::Clock;
use lantern_tests::*;
use std::time::Duration;

const TABLES: [&str; 13] = [
    "shared_processed_events",
    "flagger_calls",
    "flagger_repeat_flags",
    "flagger_mh_flags",
    "flagger_flag_messages",
    "demand_calls",
    "demand_mh",
    "desk_flags",
    "desk_updates",
    "desk_feedback",
    "desk_sessions",
    "desk_audit",
    "shared_erasures",
];

async fn count(db: &str, table: &str) -> i64 {
    query_i64(db, &format!("SELECT COUNT(*) FROM {table}")).await
}

async fn counts(db: &str) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    for t in TABLES {
        out.push((t, count(db, t).await));
    }
    out
}

/// Waits until every table in `empty` holds nothing and every table in `kept` still holds rows.
async fn pruned(db: &str, empty: &[&str], kept: &[&str]) {
    let ok = eventually(Duration::from_secs(30), || async {
        for t in empty {
            if count(db, t).await != 0 {
                return false;
            }
        }
        true
    })
    .await;
    let now = counts(db).await;
    assert!(ok, "expected {empty:?} to be pruned: {now:?}");
    for t in kept {
        assert!(count(db, t).await > 0, "{t} should be kept yet: {now:?}");
    }
}

async fn each_kind_of_record_is_pruned_after_its_period(backend: &str) {
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new(backend, tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    world.config.desk.users = desk_users();
    let clock = Clock::manual(chrono::Utc::now());
    let flagger = Running::flagger_with_clock(&world.config, clock.clone()).await;
    let demand = Running::demand_with_clock(&world.config, clock.clone()).await;
    let desk = Running::desk_with_clock(&world.config, clock.clone()).await;
    let probe = Probe::connect(&url, &[]).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");

    // Three calls in an hour (the acute rule) with crisis notes: repeat-caller and
    // mental-health flags, then a nurse acknowledges one, closes another and gives feedback.
    let p = &world.prefix;
    for n in 0..3 {
        let at = (chrono::Utc::now() - chrono::Duration::minutes(30 - n)).to_rfc3339();
        let ev =
            event(&format!("{p}-e{n}"), &format!("{p}-c{n}"), "offered", &at, Some("07700 900456"), Some("says he wants to end his life"));
        probe.publish(&world.topic(), ev).await;
    }
    assert!(eventually(Duration::from_secs(20), || async { desk_flags(desk.addr).await.len() >= 4 }).await, "flags reach the desk");
    let flags = desk_flags(desk.addr).await;
    let id = |i: usize| flags[i]["flag_id"].as_str().expect("id").to_string();
    let post = |path: String, body: &'static str| {
        let http = http.clone();
        let url = desk.url(&path);
        async move {
            let resp =
                http.post(url).basic_auth("nurse", Some("nurse-pass")).header("content-type", "application/json").body(body).send().await;
            assert!(resp.expect("desk answers").status().is_success(), "{path}");
        }
    };
    post(format!("/api/flags/{}/acknowledge", id(0)), "{}").await;
    post(format!("/api/flags/{}/outcome", id(1)), r#"{"outcome":"advice_given","note":"spoke to him"}"#).await;
    post(format!("/api/flags/{}/feedback", id(1)), r#"{"verdict":"useful"}"#).await;
    let form = http.post(desk.url("/login")).form(&[("name", "nurse"), ("password", "nurse-pass")]).send().await.expect("sign in");
    assert_eq!(form.status().as_u16(), 303);
    assert!(eventually(Duration::from_secs(20), || async { count(&db.url, "demand_mh").await > 0 }).await);
    assert!(
        eventually(Duration::from_secs(20), || async { count(&db.url, "flagger_flag_messages WHERE published_ms IS NOT NULL").await > 0 })
            .await
    );
    let before = counts(&db.url).await;
    for (t, n) in &before {
        assert!(*n > 0 || *t == "shared_erasures", "{t} holds records before pruning: {before:?}");
    }

    // Ten days on: published flag messages (7d) and sessions (1d) go; the rest stays.
    clock.advance(chrono::Duration::days(10));
    pruned(&db.url, &["flagger_flag_messages", "desk_sessions"], &["desk_updates", "flagger_calls", "desk_flags", "desk_audit"]).await;
    // Forty days: the live-stream history (30d) goes; shared_processed_events (30d) too.
    clock.advance(chrono::Duration::days(30));
    pruned(&db.url, &["desk_updates", "shared_processed_events"], &["flagger_calls", "desk_flags", "desk_feedback", "demand_calls"]).await;
    // Five hundred days: calls, flags, outcomes, feedback and demand's calls (400d) go.
    clock.advance(chrono::Duration::days(460));
    let gone = ["flagger_calls", "flagger_repeat_flags", "flagger_mh_flags", "demand_calls", "demand_mh", "desk_flags", "desk_feedback"];
    pruned(&db.url, &gone, &["desk_audit"]).await;
    // Seven years: the audit log (6y) goes, all but the entry that says so, and it still checks.
    clock.advance(chrono::Duration::days(1900));
    let ok = eventually(Duration::from_secs(30), || async {
        query_i64(&db.url, "SELECT COUNT(*) FROM desk_audit WHERE action <> 'prune_audit'").await == 0
    })
    .await;
    assert!(ok, "audit entries past six years are pruned: {:?}", counts(&db.url).await);
    assert_eq!(query_i64(&db.url, "SELECT COUNT(*) FROM desk_audit WHERE action = 'prune_audit'").await, 1);
    let db_handle = lantern_shared::store::Db::connect(&db.url).await.expect("db");
    let verified = lantern_desk::store::verify_audit(&db_handle).await.expect("verify");
    assert_eq!(verified.first_break, None, "{verified:?}");
    db_handle.close().await;

    desk.stop().await;
    demand.stop().await;
    flagger.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_every_kind_of_record_on_each_database() {
    for backend in backends() {
        each_kind_of_record_is_pruned_after_its_period(backend).await;
    }
}
