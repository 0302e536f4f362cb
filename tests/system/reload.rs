//! Operations staff edit the file while events flow: the new threshold applies from the next
//! call, nothing is lost or handled twice, and bad edits are refused with the old config kept.

use lantern_tests::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

async fn count(db_url: &str, q: &str) -> i64 {
    let db = lantern_shared::store::Db::connect(db_url).await.expect("db");
    let n = match &db {
        lantern_shared::store::Db::Sqlite(p) => sqlx::query_scalar(q).fetch_one(p).await.expect("count"),
        lantern_shared::store::Db::Postgres(p) => sqlx::query_scalar(q).fetch_one(p).await.expect("count"),
    };
    db.close().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_min_calls_in_the_file_applies_to_the_next_call_without_losing_events() {
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new("sqlite", tmp.path()).await;
    let world = World::new(&url, &db.url).await;
    let path = world.write_config();
    let flagger = Running::flagger_watching(&world.config, Some(&path)).await;
    let mut probe = Probe::connect(&url, &[&world.out("flags/repeat-caller")]).await;
    let p = world.prefix.clone();
    let topic = world.topic();

    // Background traffic throughout: every event a distinct call from a distinct number.
    let published = Arc::new(AtomicU64::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let background = {
        let (published, stop, topic, p) = (published.clone(), stop.clone(), topic.clone(), p.clone());
        let publisher = Probe::connect(&url, &[]).await;
        tokio::spawn(async move {
            for i in 0..20_000u64 {
                if stop.is_cancelled() {
                    break;
                }
                let ev = event(
                    &format!("{p}-bg-{i}"),
                    &format!("{p}-bgcall-{i}"),
                    "offered",
                    &chrono::Utc::now().to_rfc3339(),
                    Some(&format!("+4479{i:08}")),
                    None,
                );
                publisher.publish(&topic, ev).await;
                published.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    // Three calls from one caller this week: under both the old (5) and the new (4) bar.
    let days = |d: i64| (chrono::Utc::now() - chrono::Duration::days(d)).to_rfc3339();
    for i in 0..3 {
        probe
            .publish(&topic, event(&format!("{p}-y{i}"), &format!("{p}-ycall{i}"), "offered", &days(6 - i), Some("0113 496 0777"), None))
            .await;
    }
    let mine = |v: &serde_json::Value| v["call_id"].as_str().is_some_and(|c| c.starts_with(&format!("{p}-y")));
    assert!(probe.next_json(Duration::from_millis(500), mine).await.is_none());

    // Bad edits first: each refused, counted, the service stays ready on the old config.
    let good_text = std::fs::read_to_string(&path).expect("config");
    let bad = [
        good_text[..good_text.len() / 2].to_string(),
        good_text.replacen("min_calls = 5", "min_cals = 4", 1),
        good_text.replacen("window = \"30d\"", "window = \"a month\"", 1),
        good_text.replacen("min_calls = 5", "min_calls = -4", 1),
    ];
    for (n, text) in bad.iter().enumerate() {
        std::fs::write(&path, text).expect("edit");
        let want = (n + 1) as f64;
        assert!(
            eventually(Duration::from_secs(10), || async {
                flagger.metric("lantern_config_reloads_total{result=\"error\"}").await == want
            })
            .await,
            "bad edit {n} not refused and counted"
        );
        assert!(reqwest::get(format!("http://{}/readyz", flagger.addr)).await.is_ok_and(|r| r.status().is_success()));
    }
    // An unreadable file: a link to nowhere where the file was.
    std::fs::remove_file(&path).expect("rm");
    std::os::unix::fs::symlink(tmp.path().join("nowhere"), &path).expect("symlink");
    assert!(
        eventually(Duration::from_secs(10), || async { flagger.metric("lantern_config_reloads_total{result=\"error\"}").await == 5.0 })
            .await
    );
    std::fs::remove_file(&path).expect("rm link");
    assert_eq!(flagger.metric("lantern_config_reloads_total{result=\"ok\"}").await, 0.0);

    // The fix: min_calls 5 -> 4, written the way an editor does (new file, then rename).
    let edited = good_text.replacen("min_calls = 5", "min_calls = 4", 1);
    std::fs::write(tmp.path().join(".lantern.toml.swp"), &edited).expect("write");
    std::fs::rename(tmp.path().join(".lantern.toml.swp"), &path).expect("rename");
    assert!(
        eventually(Duration::from_secs(10), || async { flagger.metric("lantern_config_reloads_total{result=\"ok\"}").await == 1.0 }).await
    );

    probe.publish(&topic, event(&format!("{p}-y3"), &format!("{p}-ycall3"), "offered", &days(0), Some("0113 496 0777"), None)).await;
    let flag = probe.next_json(Duration::from_secs(10), mine).await.expect("the fourth call flags under the new rule");
    assert_eq!(flag["reasons"][0]["rule"], "frecann-month");
    assert_eq!(flag["reasons"][0]["calls"], 4);
    assert_eq!(flag["reasons"][0]["min_calls"], 4);

    // The lexicon too: a phrase added to a cue flags from the next call, with no restart.
    let mut mh_probe = Probe::connect(&url, &[&world.out("flags/mental-health")]).await;
    let with_phrase = edited.replacen("phrases = [", "phrases = [\"walking on the ceiling\", ", 1);
    std::fs::write(&path, &with_phrase).expect("edit lexicon");
    assert!(
        eventually(Duration::from_secs(10), || async { flagger.metric("lantern_config_reloads_total{result=\"ok\"}").await == 2.0 }).await
    );
    probe
        .publish(
            &topic,
            event(&format!("{p}-z0"), &format!("{p}-zcall0"), "offered", &days(0), None, Some("RP says her dad is walking on the ceiling")),
        )
        .await;
    let mh = mh_probe
        .next_json(Duration::from_secs(10), |v| v["call_id"].as_str().is_some_and(|c| c.ends_with("zcall0")))
        .await
        .expect("the new phrase flags");
    assert_eq!(mh["reasons"][0]["cue"], "walking on the ceiling");

    stop.cancel();
    background.await.expect("publisher");
    let total = published.load(Ordering::SeqCst) as i64 + 5;
    assert!(total > 100, "events flowed during the edits ({total})");
    let ok =
        eventually(Duration::from_secs(30), || async { count(&db.url, "SELECT COUNT(*) FROM shared_processed_events").await == total })
            .await;
    assert!(ok, "every event processed once across the reloads");
    assert_eq!(count(&db.url, "SELECT COUNT(*) FROM flagger_calls").await, total, "no call counted twice");
    flagger.stop().await;
}
