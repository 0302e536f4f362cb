//! The desk page in headless Chromium (Debian's chromium and chromium-driver), driven over
//! WebDriver: sign in, see a flag appear without reloading, acknowledge it, record an outcome,
//! and a note carrying script renders as inert text.

use fantoccini::{ClientBuilder, Locator};
use lantern_tests::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nurse_signs_in_sees_a_flag_arrive_live_acknowledges_and_closes_it() {
    let (Some(driver_bin), Some(chromium)) = (
        ["/usr/bin/chromedriver"].into_iter().find(|p| Path::new(p).exists()),
        ["/usr/bin/chromium"].into_iter().find(|p| Path::new(p).exists()),
    ) else {
        skip("chromium and chromium-driver are not installed");
        return;
    };
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new("sqlite", tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    world.config.desk.users = desk_users();
    // A fixed port, so the page can reach the desk again after it restarts.
    world.config.desk.listen = format!("127.0.0.1:{}", free_port());
    let flagger = Running::flagger(&world.config).await;
    let demand = Running::demand(&world.config).await;
    let desk = Running::desk(&world.config).await;

    let port = free_port();
    let _driver = Driver(
        Command::new(driver_bin).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("chromedriver"),
    );
    let webdriver = format!("http://127.0.0.1:{port}");
    assert!(
        eventually(Duration::from_secs(20), || async {
            reqwest::get(format!("{webdriver}/status")).await.is_ok_and(|r| r.status().is_success())
        })
        .await
    );
    let profile = tmp.path().join("chromium-profile");
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,900",
                     format!("--user-data-dir={}", profile.display())]
        }
    }))
    .expect("caps");
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let browser = ClientBuilder::new(connector).capabilities(caps).connect(&webdriver).await.expect("browser session");

    // Sign in through the form.
    browser.goto(&desk.url("/")).await.expect("open desk");
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#name"))
        .await
        .expect("sign-in form")
        .send_keys("nurse")
        .await
        .expect("type");
    browser.find(Locator::Css("#password")).await.expect("password").send_keys("nurse-pass").await.expect("type");
    browser.find(Locator::Css("#sign-in")).await.expect("button").click().await.expect("sign in");
    let live = browser.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#live")).await.expect("desk page");
    assert!(
        eventually(Duration::from_secs(10), || async { live.text().await.is_ok_and(|t| t == "live") }).await,
        "the live stream connects"
    );

    // A call is published: its flag appears without a reload, with the note's text inert.
    let p = world.prefix.clone();
    let notes =
        "<img src=x onerror=\"document.title='pwned'\"> says he's going to jump off the bridge <script>document.title='pwned2'</script>";
    let probe = Probe::connect(&url, &[]).await;
    // A call offered now, from `number`, with `notes`.
    let call = |n: u32, number: &str, notes: &str| {
        event(&format!("{p}-b{n}"), &format!("{p}-call{n}"), "offered", &chrono::Utc::now().to_rfc3339(), Some(number), Some(notes))
    };
    probe.publish(&world.topic(), call(1, "07700 900555", notes)).await;
    let card =
        browser.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("li.flag.high")).await.expect("the flag appears live");
    let text = card.text().await.expect("text");
    assert!(text.contains("jump off"), "{text}");
    assert!(text.contains("<img src=x") || text.contains("<script>"), "event text shows as text: {text}");
    assert!(
        browser.find_all(Locator::Css("#flags img, #flags script")).await.expect("query").is_empty(),
        "no element made from event text"
    );
    let title = browser.title().await.expect("title");
    assert!(!title.contains("pwned"), "a script in the notes ran: {title}");
    let shot = browser.screenshot().await.expect("screenshot");
    let _ = std::fs::create_dir_all(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let _ = std::fs::write(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/desk-screenshot.png"), shot);

    // Acknowledge with one click.
    card.find(Locator::Css("button.ack")).await.expect("acknowledge button").click().await.expect("click");
    assert!(
        eventually(Duration::from_secs(10), || async {
            match browser.find(Locator::Css("li.flag.high")).await {
                Ok(c) => c.text().await.is_ok_and(|t| t.contains("acknowledged by nurse")),
                Err(_) => false,
            }
        })
        .await,
        "the card shows the acknowledgement"
    );

    // Record an outcome with a note: the flag closes and leaves the active list.
    let card = browser.find(Locator::Css("li.flag.high")).await.expect("card");
    card.find(Locator::Css("select.outcome option[value='s136_avoided']")).await.expect("option").click().await.expect("choose");
    card.find(Locator::Css("input.note")).await.expect("note").send_keys("calmed, home with brother").await.expect("type");
    card.find(Locator::Css("button.record")).await.expect("record").click().await.expect("click");
    assert!(
        eventually(Duration::from_secs(10), || async { browser.find_all(Locator::Css("li.flag.high")).await.is_ok_and(|v| v.is_empty()) })
            .await,
        "closed flags leave the list"
    );
    let closed: serde_json::Value = reqwest::Client::new()
        .get(desk.url("/api/flags?status=closed"))
        .basic_auth("nurse", Some("nurse-pass"))
        .send()
        .await
        .expect("api")
        .json()
        .await
        .expect("json");
    let f = closed.as_array().and_then(|a| a.first()).expect("closed flag").clone();
    assert_eq!(f["outcome"], "s136_avoided");
    assert_eq!(f["note"], "calmed, home with brother");
    assert_eq!(f["closed_by"], "nurse");

    // The desk restarts mid-shift: the open page is still signed in, reconnects by itself and
    // shows the next flag live, with no reload.
    desk.stop().await;
    let desk = Running::desk(&world.config).await;
    probe.publish(&world.topic(), call(2, "07700 900556", "on the phone from the bridge, says she is going to jump off it")).await;
    let card = browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("li.flag.high"))
        .await
        .expect("after the desk restarts, the next flag appears on the open page");
    assert!(card.text().await.expect("text").contains("jump off"));
    assert_eq!(browser.current_url().await.expect("url").path(), "/", "the nurse was not sent back to sign in");
    assert!(
        eventually(Duration::from_secs(10), || async { live.text().await.is_ok_and(|t| t == "live") }).await,
        "the page says it is live again"
    );

    // A note only the model recognises: its card says so, in words a nurse can check, and the
    // nurse says whether the flag was useful.
    let plain = "lock keeper reports man pacing the lock gates for over an hour staring into the water, asked staff how deep it was";
    probe.publish(&world.topic(), call(3, "07700 900557", plain)).await;
    let explained = || async {
        for c in browser.find_all(Locator::Css("li.flag")).await.unwrap_or_default() {
            if c.text().await.is_ok_and(|t| t.contains("[model") && t.contains("words like:")) {
                return Some(c);
            }
        }
        None
    };
    let mut card = None;
    for _ in 0..200 {
        card = explained().await;
        if card.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let card = card.expect("a model flag shows the words that raised it");
    let text = card.text().await.expect("text");
    assert!(text.contains("score 0."), "{text}");
    card.find(Locator::Css("button.verdict.useful")).await.expect("feedback buttons").click().await.expect("click");
    assert!(
        eventually(Duration::from_secs(10), || async {
            desk.metric("lantern_flag_feedback_total{kind=\"mental_health\",verdict=\"useful\"}").await == 1.0
        })
        .await,
        "the verdict reached the desk"
    );
    let shot = browser.screenshot().await.expect("screenshot");
    let _ = std::fs::write(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/desk-screenshot-model.png"), shot);

    // The nurse refers that caller to early action from the card: the dialog has the
    // mental-health factor ticked already from what the flag saw.
    card.find(Locator::Css("button.refer")).await.expect("refer button").click().await.expect("click");
    let send = browser.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#refer-send")).await.expect("the dialog opens");
    let ticked = browser.find(Locator::Css("#risk-mental_health")).await.expect("risk factor box").prop("checked").await.expect("checked");
    assert_eq!(ticked.as_deref(), Some("true"), "the mental-health factor is pre-ticked");
    browser.find(Locator::Css("#refer-note")).await.expect("note").send_keys("pacing by the lock, agreed to a visit").await.expect("type");
    send.click().await.expect("refer");
    let referred = eventually(Duration::from_secs(10), || async {
        let mut shown = false;
        for c in browser.find_all(Locator::Css("li.flag")).await.unwrap_or_default() {
            shown |= c.text().await.is_ok_and(|t| t.contains("lock gates") && t.contains("referred to early-action: referred"));
        }
        shown
    })
    .await;
    assert!(referred, "the card shows the caller's referral");
    let referrals: serde_json::Value = reqwest::Client::new()
        .get(desk.url("/api/referrals"))
        .basic_auth("inspector", Some("inspector-pass"))
        .send()
        .await
        .expect("referrals")
        .json()
        .await
        .expect("json");
    assert_eq!(referrals.as_array().map(Vec::len), Some(1), "{referrals}");
    assert!(referrals[0]["risk_factors"].as_array().is_some_and(|f| f.iter().any(|x| x == "mental_health")), "{referrals}");
    assert_eq!(referrals[0]["referred_by"], "nurse");

    // The demand page: calls by channel and window, service figures, open flags; live.
    browser.goto(&desk.url("/demand")).await.expect("demand page");
    let filled = eventually(Duration::from_secs(15), || async {
        let rows = browser.find_all(Locator::Css("#calls tbody tr")).await.unwrap_or_default();
        let flags = browser.find_all(Locator::Css("#open-flags tbody tr")).await.unwrap_or_default();
        rows.len() == 12 && flags.len() == lantern_shared::domain::Severity::ALL.len()
    })
    .await;
    let counted = (
        browser.find_all(Locator::Css("#calls tbody tr")).await.map(|v| v.len()),
        browser.find_all(Locator::Css("#open-flags tbody tr")).await.map(|v| v.len()),
    );
    assert!(filled, "the demand page shows calls for three windows and four channels, and open flags by severity: {counted:?}");
    let calls = browser.find(Locator::Css("#calls")).await.expect("calls").text().await.expect("text");
    assert!(calls.contains("15m") && calls.contains("999"), "{calls}");
    let shot = browser.screenshot().await.expect("screenshot");
    let _ = std::fs::write(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/demand-screenshot.png"), &shot);
    // `LANTERN_DOCS_SCREENSHOTS=1 make test` refreshes the README's pictures.
    if std::env::var_os("LANTERN_DOCS_SCREENSHOTS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        let _ = std::fs::create_dir_all(&docs);
        let _ = std::fs::write(docs.join("demand.png"), &shot);
        let _ = std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/desk-screenshot-model.png"), docs.join("desk.png"));
    }
    browser.goto(&desk.url("/")).await.expect("back to the flags");
    browser.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("li.flag")).await.expect("flags again");

    // The session ends (here: deleted, as sign-out elsewhere or the idle timeout would): the open
    // page goes to the sign-in form by itself, with no browser password prompt on the way.
    execute(&db.url, "DELETE FROM desk_sessions").await;
    let asked: serde_json::Value = browser
        .execute_async(
            "const done = arguments[0]; fetch('/api/me', {headers: {'Accept': 'application/json'}}).then(r => done({status: r.status, challenge: r.headers.get('www-authenticate')}));",
            vec![],
        )
        .await
        .expect("fetch from the page");
    assert_eq!(asked["status"], 401);
    assert_eq!(asked["challenge"], serde_json::Value::Null, "the page's own request gets no Basic challenge: {asked}");
    let signed_out = eventually(Duration::from_secs(40), || async {
        browser.current_url().await.is_ok_and(|u| u.path() == "/login") && browser.find(Locator::Css("#name")).await.is_ok()
    })
    .await;
    assert!(signed_out, "the page went to the sign-in form: {:?}", browser.current_url().await);

    let _ = browser.close().await;
    desk.stop().await;
    demand.stop().await;
    flagger.stop().await;
}
