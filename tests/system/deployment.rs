//! Deploying as a force would (SPEC sections 8 to 10): MQTT over TLS with accounts and the
//! repo's ACL on a Mosquitto of the test's own, the services as three processes, and the
//! systemd units.

use lantern_shared::config::MqttConfig;
use lantern_tests::*;
use rumqttc::{AsyncClient, Event, Packet, Publish, QoS};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// A CA, and a broker certificate for 127.0.0.1 it signed; written as PEM files in `dir`.
fn certificates(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let key = KeyPair::generate().expect("key");
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    server.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
    let cert = server.signed_by(&key, &ca_cert, &ca_key).expect("server certificate");
    let paths = (dir.join(format!("{name}-ca.crt")), dir.join(format!("{name}-broker.crt")), dir.join(format!("{name}-broker.key")));
    std::fs::write(&paths.0, ca_cert.pem()).expect("write");
    std::fs::write(&paths.1, cert.pem()).expect("write");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write");
    paths
}

/// An MQTT client with `account` (TLS and password as Lantern's own), subscribed to `filters`.
async fn client(mqtt: &MqttConfig, filters: &[&str]) -> Result<(AsyncClient, mpsc::UnboundedReceiver<Publish>), String> {
    let mut o = lantern_shared::runtime::mqtt::account::client_options(mqtt, &unique("acct-"))?.remove(0);
    o.set_clean_session(true).set_manual_acks(false);
    let (c, mut eventloop) = AsyncClient::new(o, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready) = mpsc::unbounded_channel();
    let subs: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
    let sub = c.clone();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    for f in &subs {
                        let _ = sub.subscribe(f.clone(), QoS::AtLeastOnce).await;
                    }
                    if subs.is_empty() {
                        let _ = ready_tx.send(Ok(()));
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ready_tx.send(Ok(()));
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(p);
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    break;
                }
            }
        }
    });
    match tokio::time::timeout(Duration::from_secs(10), ready.recv()).await {
        Ok(Some(Ok(()))) => Ok((c, rx)),
        Ok(Some(Err(e))) => Err(e),
        _ => Err("no answer from the broker".into()),
    }
}

fn account(url: &str, ca: &Path, user: &str, password_file: &Path) -> MqttConfig {
    MqttConfig {
        url: url.to_string(),
        username: Some(user.to_string()),
        password_file: Some(password_file.to_path_buf()),
        ca_file: Some(ca.to_path_buf()),
        ..MqttConfig::default()
    }
}

/// `/readyz` of a child `lantern run --service flagger` stays false for `wait` while the child
/// keeps running (no crash loop); returns its log.
async fn stays_unready(config: &lantern_shared::Config, dir: &Path, name: &str, wait: Duration) -> String {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml_of(config)).expect("config");
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).expect("log");
    let mut child = std::process::Command::new(crate::LANTERN)
        .args(["run", "--service", "flagger", "--config"])
        .arg(&path)
        .env("LANTERN_LOG", "warn")
        .stdout(file.try_clone().map(std::process::Stdio::from).unwrap_or(std::process::Stdio::null()))
        .stderr(file)
        .spawn()
        .expect("start lantern");
    let deadline = tokio::time::Instant::now() + wait;
    let mut answered = false;
    while tokio::time::Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("http://{}/readyz", config.flagger.listen)).await {
            answered = true;
            assert_ne!(r.status().as_u16(), 200, "{name}: ready without a broker that accepts it");
        }
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "{name}: the service exited: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(answered, "{name}: the service answers /readyz meanwhile");
    std::fs::read_to_string(&log).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_tls_with_accounts_and_the_repo_acl() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let (ca, cert, key) = certificates(dir, "force");
    let (other_ca, _, _) = certificates(dir, "other");
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, "producer:producer-pass\nlantern:lantern-pass\nwatcher:watcher-pass\n").expect("passwd");
    let hashed = std::process::Command::new("mosquitto_passwd").arg("-U").arg(&passwd).status();
    if !hashed.is_ok_and(|s| s.success()) {
        skip("mosquitto_passwd is not installed");
        return;
    }
    let acl = Path::new(REPO).join("config/mosquitto.acl");
    let listener = |port: u16| {
        format!(
            "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nallow_anonymous false\npassword_file {}\nacl_file {}\n",
            ca.display(),
            cert.display(),
            key.display(),
            passwd.display(),
            acl.display()
        )
    };
    let Some(broker) = OwnMosquitto::start_with(dir, listener) else { return };
    let url = format!("mqtts://127.0.0.1:{}", broker.port);
    let secret = |name: &str, pw: &str| {
        let p = dir.join(name);
        std::fs::write(&p, format!("{pw}\n")).expect("password file");
        p
    };

    // Lantern with its account over TLS, on the ACL's default topics.
    let mut world = World::new(&url, &format!("sqlite://{}", dir.join("lantern.db").display())).await;
    world.config.mqtt = MqttConfig {
        calls_topic: "contact-centre/calls/#".into(),
        topic_root: "lantern".into(),
        client_id: world.config.mqtt.client_id.clone(),
        ..account(&url, &ca, "lantern", &secret("lantern.pw", "lantern-pass"))
    };
    let flagger = Running::flagger(&world.config).await;
    let (_watcher, mut seen) =
        client(&account(&url, &ca, "watcher", &secret("watcher.pw", "watcher-pass")), &["lantern/#"]).await.expect("watcher");
    let (producer, _) = client(&account(&url, &ca, "producer", &secret("producer.pw", "producer-pass")), &[]).await.expect("producer");

    // A producer's calls are checked, and the flag comes out.
    let p = world.prefix.clone();
    for i in 0..3 {
        let t = (chrono::Utc::now() - chrono::Duration::minutes(5 - i)).to_rfc3339();
        let ev = event(&format!("{p}-e{i}"), &format!("{p}-c{i}"), "offered", &t, Some("07700 900123"), None);
        producer.publish("contact-centre/calls/West", QoS::AtLeastOnce, false, ev).await.expect("publish");
    }
    let flag = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(m) = seen.recv().await {
            if m.topic == "lantern/flags/repeat-caller" {
                return Some(m);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    assert!(flag.is_some(), "a flag from calls a producer sent over TLS");

    // A producer cannot publish a flag: the broker drops it.
    let forged = serde_json::json!({"flag_id": format!("{p}-forged"), "status": "raised", "kind": "repeat_caller"}).to_string();
    producer.publish("lantern/flags/repeat-caller", QoS::AtLeastOnce, false, forged.into_bytes()).await.expect("publish");
    let leaked = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(m) = seen.recv().await {
            if String::from_utf8_lossy(&m.payload).contains("forged") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(!leaked, "the ACL let a producer publish a flag");
    flagger.stop().await;

    // A wrong password or a wrong CA: a clear error and /readyz false, not a crash loop.
    let mut wrong = world.config.clone();
    wrong.flagger.listen = format!("127.0.0.1:{}", free_port());
    wrong.mqtt.password_file = Some(secret("wrong.pw", "not-the-password"));
    let log = stays_unready(&wrong, dir, "wrong-password", Duration::from_secs(3)).await;
    assert!(log.to_lowercase().contains("refused") || log.contains("NotAuthorized") || log.contains("BadUserNamePassword"), "{log}");
    let mut wrong = world.config.clone();
    wrong.flagger.listen = format!("127.0.0.1:{}", free_port());
    wrong.mqtt.ca_file = Some(other_ca.clone());
    let log = stays_unready(&wrong, dir, "wrong-ca", Duration::from_secs(3)).await;
    assert!(log.to_lowercase().contains("certificate") || log.to_lowercase().contains("tls"), "{log}");

    // check-config names what is missing.
    let mut no_ca = world.config.clone();
    no_ca.mqtt.ca_file = None;
    let path = dir.join("no-ca.toml");
    std::fs::write(&path, toml_of(&no_ca)).expect("config");
    let out = std::process::Command::new(crate::LANTERN).arg("check-config").arg(&path).output().expect("check-config");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("mqtt.ca_file") || String::from_utf8_lossy(&out.stderr).contains("mqtt.ca_file"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flagger_demand_and_desk_as_three_processes_bring_a_flag_to_the_desk() {
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let backend = if backends().contains(&"postgres") { "postgres" } else { "sqlite" };
    let db = TestDb::new(backend, tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    world.config.broker.enabled = false;
    world.config.desk.users = desk_users();
    for listen in [&mut world.config.flagger.listen, &mut world.config.demand.listen, &mut world.config.desk.listen] {
        *listen = format!("127.0.0.1:{}", free_port());
    }
    let config = world.write_config();
    let mut children: Vec<std::process::Child> = ["flagger", "demand", "desk"]
        .iter()
        .map(|s| spawn_lantern(crate::LANTERN, &["run", "--service", s], &config, &tmp.path().join(format!("{s}.log"))))
        .collect();
    let http = reqwest::Client::new();
    for (i, listen) in [&world.config.flagger.listen, &world.config.demand.listen, &world.config.desk.listen].into_iter().enumerate() {
        let ready = eventually(Duration::from_secs(60), || async {
            http.get(format!("http://{listen}/readyz")).send().await.is_ok_and(|r| r.status().is_success())
        })
        .await;
        if !ready {
            let status = children[i].try_wait();
            for c in &mut children {
                let _ = c.kill();
            }
            let logs: Vec<String> = ["flagger", "demand", "desk"]
                .iter()
                .map(|s| format!("{s}: {}", std::fs::read_to_string(tmp.path().join(format!("{s}.log"))).unwrap_or_default()))
                .collect();
            panic!("{listen} not ready (exit: {status:?}); logs:\n{}", logs.join("\n"));
        }
    }
    let probe = Probe::connect(&url, &[]).await;
    let p = world.prefix.clone();
    for i in 0..3 {
        let t = (chrono::Utc::now() - chrono::Duration::minutes(5 - i)).to_rfc3339();
        probe.publish(&world.topic(), event(&format!("{p}-e{i}"), &format!("{p}-c{i}"), "offered", &t, Some("07700 900124"), None)).await;
    }
    let desk: std::net::SocketAddr = world.config.desk.listen.parse().expect("addr");
    let flag = desk_flag(desk, &format!("{p}-c2"), Duration::from_secs(20)).await;
    let demand: std::net::SocketAddr = world.config.demand.listen.parse().expect("addr");
    let counted = eventually(Duration::from_secs(10), || async {
        metric(demand, "lantern_calls_total{channel=\"999\",division=\"West\"}").await == 3.0
    })
    .await;
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert!(flag.is_some(), "the flagger's flag reached the desk process");
    assert!(counted, "the demand process counted the calls");
    db.cleanup().await;
}

#[test]
fn the_systemd_units_are_hardened_and_pass_systemd_analyze_verify() {
    let units = Path::new(REPO).join("deploy/systemd");
    let tmp = tempfile::tempdir().expect("tmp");
    let mut files = Vec::new();
    for service in ["flagger", "demand", "desk"] {
        let text = std::fs::read_to_string(units.join(format!("lantern-{service}.service"))).expect("unit");
        for line in [
            "User=lantern",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "ReadWritePaths=/var/lib/lantern",
            &format!("--service {service} "),
        ] {
            assert!(text.contains(line), "lantern-{service}.service has {line}");
        }
        // Verified against the binary built for the tests in place of /usr/local/bin/lantern.
        let path = tmp.path().join(format!("lantern-{service}.service"));
        std::fs::write(&path, text.replace("/usr/local/bin/lantern", crate::LANTERN)).expect("write");
        files.push(path);
    }
    // Where it exists: the units are also checked above without it.
    let Ok(out) = std::process::Command::new("systemd-analyze").arg("verify").arg("--man=no").args(&files).output() else {
        eprintln!("systemd-analyze is not installed: the units were checked for their hardening only");
        return;
    };
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_list_of_brokers_a_service_moves_to_the_next_when_its_broker_dies() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a_dir).expect("dir");
    std::fs::create_dir_all(&b_dir).expect("dir");
    let Some(mut a) = OwnMosquitto::start(&a_dir) else { return };
    let Some(b) = OwnMosquitto::start(&b_dir) else { return };
    let mut world = World::new(&a.url(), &format!("sqlite://{}", tmp.path().join("lantern.db").display())).await;
    // Written as an operator would: a TOML list.
    let path = world.write_config();
    let text = std::fs::read_to_string(&path).expect("config");
    let listed = text.replacen(&format!("url = \"{}\"", a.url()), &format!("url = [\"{}\", \"{}\"]", a.url(), b.url()), 1);
    assert_ne!(text, listed, "the config names the broker");
    std::fs::write(&path, listed).expect("config");
    world.config = lantern_shared::Config::load(&path).expect("a list of URLs is a valid mqtt.url");
    let flagger = Running::flagger(&world.config).await;
    let mut flags = Probe::connect(&b.url(), &[&world.out("flags/#")]).await;
    a.stop();
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = eventually(Duration::from_secs(20), || async {
        http.get(flagger.url("/readyz")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(ready, "connected to the second broker");
    let probe = Probe::connect(&b.url(), &[]).await;
    let p = world.prefix.clone();
    for i in 0..3 {
        let t = (chrono::Utc::now() - chrono::Duration::minutes(5 - i)).to_rfc3339();
        probe.publish(&world.topic(), event(&format!("{p}-e{i}"), &format!("{p}-c{i}"), "offered", &t, Some("07700 900125"), None)).await;
    }
    let flag = flags.next_json(Duration::from_secs(15), |f| f["kind"] == "repeat_caller").await;
    assert!(flag.is_some(), "calls sent to the second broker are flagged");
    flagger.stop().await;
}

/// `lantern_ha_active{service}` of an instance, or none while it does not answer yet.
async fn active(addr: std::net::SocketAddr, service: &str) -> Option<f64> {
    let body = reqwest::get(format!("http://{addr}/metrics")).await.ok()?.text().await.ok()?;
    let series = format!("lantern_ha_active{{service=\"{service}\"}} ");
    body.lines().find_map(|l| l.strip_prefix(&series)).and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_when_the_active_instance_is_killed_and_nothing_is_lost() {
    if !backends().contains(&"postgres") {
        skip("standby instances need PostgreSQL");
        return;
    }
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new("postgres", tmp.path()).await;
    let mut world = World::new(&url, &db.url).await;
    world.config.broker.enabled = false;
    world.config.desk.users = desk_users();
    // Two instances of the flagger, demand and the desk, each set a process with its own
    // addresses.
    let mut instances = Vec::new();
    for name in ["a", "b"] {
        let mut c = world.config.clone();
        c.flagger.listen = format!("127.0.0.1:{}", free_port());
        c.desk.listen = format!("127.0.0.1:{}", free_port());
        c.demand.listen = format!("127.0.0.1:{}", free_port());
        let path = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&path, toml_of(&c)).expect("config");
        let child = spawn_lantern(
            crate::LANTERN,
            &["run", "--service", "flagger", "--service", "demand", "--service", "desk"],
            &path,
            &tmp.path().join(format!("{name}.log")),
        );
        let flagger: std::net::SocketAddr = c.flagger.listen.parse().expect("addr");
        let desk: std::net::SocketAddr = c.desk.listen.parse().expect("addr");
        let demand: std::net::SocketAddr = c.demand.listen.parse().expect("addr");
        let role = if name == "a" { 1.0 } else { 0.0 };
        let settled = eventually(Duration::from_secs(60), || async {
            active(flagger, "flagger").await == Some(role)
                && active(desk, "desk").await == Some(role)
                && active(demand, "demand").await == Some(role)
        })
        .await;
        assert!(settled, "instance {name} is {}", if role == 1.0 { "active" } else { "standing by" });
        instances.push((child, flagger, desk, demand));
    }
    // Both desks serve the page and the API at once.
    for (_, _, desk, _) in &instances {
        let page = reqwest::get(format!("http://{desk}/login")).await.expect("page");
        assert!(page.status().is_success());
        assert!(desk_flags(*desk).await.is_empty());
    }

    // 200 callers calling three times: the third call of each raises one flag. The active
    // instance dies while the third calls arrive.
    let probe = Probe::connect(&url, &[]).await;
    let p = world.prefix.clone();
    let send = |caller: usize, n: usize| {
        let t = (chrono::Utc::now() - chrono::Duration::minutes(10 - n as i64)).to_rfc3339();
        event(&format!("{p}-e{caller}-{n}"), &format!("{p}-c{caller}-{n}"), "offered", &t, Some(&format!("07700 9{caller:05}")), None)
    };
    for n in 0..3 {
        for caller in 0..200 {
            if n == 2 && caller == 100 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = instances[0].0.kill();
                let _ = instances[0].0.wait();
            }
            probe.publish(&world.topic(), send(caller, n)).await;
        }
    }
    let (_, flagger_b, desk_b, demand_b) = instances[1];
    let took_over = eventually(Duration::from_secs(30), || async { active(flagger_b, "flagger").await == Some(1.0) }).await;
    assert!(took_over, "the standby flagger took over");
    let all = eventually(Duration::from_secs(60), || async { query_i64(&db.url, "SELECT COUNT(*) FROM flagger_calls").await == 600 }).await;
    assert!(all, "every call stored once: {}", query_i64(&db.url, "SELECT COUNT(*) FROM flagger_calls").await);
    let counted =
        eventually(Duration::from_secs(30), || async { query_i64(&db.url, "SELECT COUNT(*) FROM demand_calls").await == 600 }).await;
    assert!(counted, "demand counted every call once: {}", query_i64(&db.url, "SELECT COUNT(*) FROM demand_calls").await);
    assert_eq!(active(demand_b, "demand").await, Some(1.0), "the standby demand took over");
    let flagged = eventually(Duration::from_secs(30), || async {
        query_i64(&db.url, "SELECT COUNT(DISTINCT caller_ref) FROM flagger_repeat_flags").await == 200
    })
    .await;
    assert!(flagged, "every caller flagged: {}", query_i64(&db.url, "SELECT COUNT(DISTINCT caller_ref) FROM flagger_repeat_flags").await);
    assert_eq!(query_i64(&db.url, "SELECT COUNT(*) FROM flagger_repeat_flags").await, 200, "and none twice");
    let on_desk = eventually(Duration::from_secs(30), || async {
        let flags = desk_flags(desk_b).await;
        flags.iter().filter(|f| f["kind"] == "repeat_caller").count() == 200
    })
    .await;
    assert!(on_desk, "the standby desk took over ingest and lists every flag: {}", desk_flags(desk_b).await.len());
    assert_eq!(active(desk_b, "desk").await, Some(1.0));
    let _ = instances[1].0.kill();
    let _ = instances[1].0.wait();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_over_tls_with_sslmode_and_sslrootcert() {
    if !backends().contains(&"postgres") {
        skip("PostgreSQL over TLS needs PostgreSQL");
        return;
    }
    // Debian's PostgreSQL serves TLS with the machine's snakeoil certificate (package ssl-cert).
    let root = Path::new("/etc/ssl/certs/ssl-cert-snakeoil.pem");
    if !root.exists() {
        skip("the machine's PostgreSQL has no TLS certificate");
        return;
    }
    let url = broker_url().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let db = TestDb::new("postgres", tmp.path()).await;
    // verify-full: the certificate is for `localhost`. (sqlx's verify-ca still checks the name
    // with rustls 0.23, so a force names the server as its certificate does.)
    let tls_url = format!("{}?sslmode=verify-full&sslrootcert={}", db.url.replacen("127.0.0.1", "localhost", 1), root.display());
    let conn = lantern_shared::store::Db::connect(&tls_url).await.expect("a TLS connection, the server's certificate checked");
    let ssl: bool = lantern_shared::with_db!(&conn, |pool| sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(pool)
        .await)
    .expect("query");
    conn.close().await;
    assert!(ssl, "the session is encrypted");

    // A service runs over it.
    let world = World::new(&url, &tls_url).await;
    let flagger = Running::flagger(&world.config).await;
    let probe = Probe::connect(&url, &[]).await;
    let p = world.prefix.clone();
    probe
        .publish(&world.topic(), event(&format!("{p}-e1"), &format!("{p}-c1"), "offered", &chrono::Utc::now().to_rfc3339(), None, None))
        .await;
    let stored =
        eventually(Duration::from_secs(15), || async { query_i64(&db.url, "SELECT COUNT(*) FROM flagger_calls").await == 1 }).await;
    flagger.stop().await;
    assert!(stored, "the flagger stored a call over TLS");

    // A server certificate the given CA did not sign is refused, with a reason.
    let (other_ca, _, _) = certificates(tmp.path(), "other");
    let wrong = format!("{}?sslmode=verify-full&sslrootcert={}", db.url.replacen("127.0.0.1", "localhost", 1), other_ca.display());
    let err = lantern_shared::store::Db::connect(&wrong).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.to_lowercase().contains("certificate") || err.to_lowercase().contains("tls"), "refused with a reason: {err:?}");
    db.cleanup().await;
}

/// One node of a NATS cluster with JetStream and its MQTT listener, on loopback ports.
struct NatsNode {
    child: Option<std::process::Child>,
    mqtt: u16,
}

impl Drop for NatsNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Three NATS nodes clustered with each other; `None` (skipped) where nats-server is missing.
fn nats_cluster(dir: &Path) -> Option<Vec<NatsNode>> {
    let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"].into_iter().find(|p| Path::new(p).exists());
    let Some(bin) = bin else {
        skip("nats-server is not installed");
        return None;
    };
    let ports: Vec<(u16, u16, u16)> = (0..3).map(|_| (free_port(), free_port(), free_port())).collect();
    let mut nodes = Vec::new();
    for (i, (client, cluster, mqtt)) in ports.iter().enumerate() {
        let routes: Vec<String> =
            ports.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, p)| format!("\"nats://127.0.0.1:{}\"", p.1)).collect();
        let store = dir.join(format!("n{i}"));
        let conf = format!(
            "server_name: n{i}\nlisten: \"127.0.0.1:{client}\"\njetstream {{ store_dir: \"{}\" }}\n\
             cluster {{ name: lantern_test, listen: \"127.0.0.1:{cluster}\", routes: [{}] }}\n\
             mqtt {{ listen: \"127.0.0.1:{mqtt}\", stream_replicas: 3 }}\n",
            store.display(),
            routes.join(", ")
        );
        let path = dir.join(format!("n{i}.conf"));
        std::fs::write(&path, conf).expect("nats config");
        let log =
            std::fs::File::create(dir.join(format!("n{i}.log"))).map(std::process::Stdio::from).unwrap_or(std::process::Stdio::null());
        let child = std::process::Command::new(bin)
            .arg("-c")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        nodes.push(NatsNode { child: Some(child), mqtt: *mqtt });
    }
    Some(nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fails about half its runs on Debian 12's nats-server 2.9.10: after the node holding \
            Lantern's session dies, the other nodes close Lantern's reconnecting session \
            ('connection closed by peer') or deliver nothing more on it; run it with \
            `cargo test -p lantern-tests --test system -- --ignored nats`; see README, Production"]
async fn on_a_three_node_nats_cluster_lantern_moves_to_another_node_and_loses_nothing() {
    nats_run(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_three_node_nats_cluster_calls_and_flags_flow_between_nodes() {
    nats_run(false).await;
}

/// Lantern on the first node of a NATS cluster, calls sent to the second, flags watched on the
/// third; with `kill`, the node Lantern is connected to dies midway.
async fn nats_run(kill: bool) {
    let tmp = tempfile::tempdir().expect("tmp");
    let Some(mut nodes) = nats_cluster(tmp.path()) else { return };
    let urls: Vec<String> = nodes.iter().map(|n| format!("mqtt://127.0.0.1:{}", n.mqtt)).collect();
    // The cluster is ready for MQTT once a client can hold a session on it (JetStream elected).
    let ready = eventually(Duration::from_secs(60), || async {
        let mut o = lantern_shared::runtime::mqtt::options(&urls[1], &unique("nats-ready-")).expect("url");
        o.set_clean_session(false);
        let (c, mut el) = AsyncClient::new(o, 10);
        let ok = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = c.subscribe("ready/check", QoS::AtLeastOnce).await;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => return true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
        })
        .await
        .unwrap_or(false);
        let _ = c.disconnect().await;
        ok
    })
    .await;
    assert!(ready, "the NATS cluster serves MQTT sessions: {}", std::fs::read_to_string(tmp.path().join("n1.log")).unwrap_or_default());

    let mut world = World::new(&urls.join(","), &format!("sqlite://{}", tmp.path().join("lantern.db").display())).await;
    world.config.broker.enabled = false;
    world.config.flagger.listen = format!("127.0.0.1:{}", free_port());
    let config = world.write_config();
    let log = tmp.path().join("flagger.log");
    let mut flagger = spawn_lantern(crate::LANTERN, &["run", "--service", "flagger"], &config, &log);
    let listen = world.config.flagger.listen.clone();
    let ready = eventually(Duration::from_secs(30), || async {
        reqwest::get(format!("http://{listen}/readyz")).await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(ready, "the flagger connected to the cluster: {}", std::fs::read_to_string(&log).unwrap_or_default());
    // The watcher keeps a persistent session, as the desk and demand do.
    let mut flags = Probe::connect_with(&urls[2], &[&world.out("flags/repeat-caller")], false, &unique("watch-")).await;
    let probe = Probe::connect(&urls[1], &[]).await;
    let p = world.prefix.clone();
    let send = |caller: usize, n: usize| {
        let t = (chrono::Utc::now() - chrono::Duration::minutes(10 - n as i64)).to_rfc3339();
        event(&format!("{p}-e{caller}-{n}"), &format!("{p}-c{caller}-{n}"), "offered", &t, Some(&format!("07700 9{caller:05}")), None)
    };
    // 100 callers, three calls each; the node Lantern is connected to (the first) dies midway.
    for n in 0..3 {
        for caller in 0..100 {
            if kill && n == 1 && caller == 50 {
                drop(nodes.remove(0));
            }
            probe.publish(&world.topic(), send(caller, n)).await;
        }
    }
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while seen.len() < 100 && tokio::time::Instant::now() < deadline {
        if let Some(f) = flags.next_json(Duration::from_secs(5), |f| f["status"] == "raised").await {
            seen.insert(f["caller_ref"].as_str().unwrap_or_default().to_string());
        }
    }
    let db = &world.config.database.url;
    let stored = query_i64(db, "SELECT COUNT(*) FROM flagger_calls").await;
    let flagged = query_i64(db, "SELECT COUNT(DISTINCT caller_ref) FROM flagger_repeat_flags").await;
    let unacked = query_i64(db, "SELECT COUNT(*) FROM flagger_flag_messages WHERE published_ms IS NULL").await;
    let _ = flagger.kill();
    let _ = flagger.wait();
    let tail = |name: &str| {
        let text = std::fs::read_to_string(tmp.path().join(name)).unwrap_or_default();
        text.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    };
    let logs = format!("flagger:\n{}\nn1:\n{}\nn2:\n{}", tail("flagger.log"), tail("n1.log"), tail("n2.log"));
    assert_eq!(stored, 300, "every call stored once; {logs}");
    assert_eq!(flagged, 100, "every caller flagged");
    assert_eq!(seen.len(), 100, "every caller's flag arrived through the cluster ({unacked} not acknowledged by the broker)");
}
