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
    for listen in [&world.config.flagger.listen, &world.config.demand.listen, &world.config.desk.listen] {
        let ready = eventually(Duration::from_secs(30), || async {
            http.get(format!("http://{listen}/readyz")).send().await.is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(ready, "{listen} ready");
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
