//! Helpers for whole-system tests: brokers, databases, configs, probes, metrics.
//!
//! Every test gets its own topic prefix, MQTT client ids, listen ports (port 0) and database
//! (a SQLite file in a temp dir, or a fresh PostgreSQL database), so tests run in parallel and
//! beside a running Lantern.

use lantern_shared::Config;
use rumqttc::{AsyncClient, Event, Packet, Publish, QoS};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, OnceCell};
use tokio_util::sync::CancellationToken;

/// In CI (`LANTERN_TEST_REQUIRE=1`) a missing broker, database or program fails the test.
pub fn required() -> bool {
    std::env::var("LANTERN_TEST_REQUIRE").is_ok_and(|v| v == "1")
}

/// Says a test cannot run here; in CI that is a failure.
pub fn skip(why: &str) {
    assert!(!required(), "required for this test but missing: {why}");
    eprintln!("SKIPPED: {why}");
}

/// `prefix` and 12 random letters. Letters only: Lantern masks any run of nine or more digits
/// as a possible phone number wherever it echoes text, and a hex id has such a run about one
/// time in thirty, which once made a test lose sight of its own marker.
pub fn unique(prefix: &str) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let tail: String = (0..12).map(|_| char::from(b'a' + rng.gen_range(0..26u8))).collect();
    format!("{prefix}{tail}")
}

static EMBEDDED: OnceCell<String> = OnceCell::const_new();

/// The broker under test: `LANTERN_TEST_MQTT_URL`, or the embedded broker on a free port.
pub async fn broker_url() -> String {
    if let Ok(url) = std::env::var("LANTERN_TEST_MQTT_URL") {
        return url;
    }
    EMBEDDED
        .get_or_init(|| async {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}").parse().expect("loopback address");
            tokio::task::spawn_blocking(move || lantern_broker::start(addr)).await.expect("broker thread").expect("embedded broker");
            format!("mqtt://127.0.0.1:{port}")
        })
        .await
        .clone()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Which databases to run a test against: SQLite always, PostgreSQL when configured.
pub fn backends() -> Vec<&'static str> {
    let mut b = vec!["sqlite"];
    if std::env::var("LANTERN_TEST_DATABASE_URL").is_ok() {
        b.push("postgres");
    } else if required() {
        panic!("LANTERN_TEST_DATABASE_URL is required");
    }
    b
}

/// A database of the test's own.
pub struct TestDb {
    pub url: String,
    pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn new(backend: &str, dir: &Path) -> TestDb {
        match backend {
            "postgres" => {
                let admin = std::env::var("LANTERN_TEST_DATABASE_URL").expect("LANTERN_TEST_DATABASE_URL");
                let name = unique("lantern_t_");
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.expect("connect to PostgreSQL");
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create test database");
                let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin.clone());
                TestDb { url: format!("{base}/{name}"), pg: Some((admin, name)) }
            }
            _ => TestDb { url: format!("sqlite://{}", dir.join("lantern.db").display()), pg: None },
        }
    }

    /// Drops a PostgreSQL test database (best effort; `.ci/run` sweeps leftovers).
    pub async fn cleanup(self) {
        if let Some((admin, name)) = self.pg {
            if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
            }
        }
    }
}

/// A test's world: temp dir with a key file, a unique topic prefix and a config.
pub struct World {
    pub dir: tempfile::TempDir,
    pub prefix: String,
    pub config: Config,
}

impl World {
    pub async fn new(mqtt_url: &str, db_url: &str) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let prefix = unique("t");
        std::fs::write(dir.path().join("key"), b"test-key").expect("key file");
        let mut config = Config::default();
        config.mqtt.url = mqtt_url.to_string();
        config.mqtt.client_id = prefix.clone();
        config.mqtt.calls_topic = format!("{prefix}/calls/#");
        config.mqtt.topic_root = format!("{prefix}/lantern");
        config.database.url = db_url.to_string();
        config.privacy.key_file = dir.path().join("key");
        config.flagger.listen = "127.0.0.1:0".into();
        config.demand.listen = "127.0.0.1:0".into();
        config.desk.listen = "127.0.0.1:0".into();
        World { dir, prefix, config }
    }

    pub fn topic(&self) -> String {
        format!("{}/calls/West", self.prefix)
    }

    /// Where this test's Lantern publishes `suffix` (`flags/#`, `rejected`, ...).
    pub fn out(&self, suffix: &str) -> String {
        self.config.topic(suffix)
    }

    /// Writes the config as TOML (for a child process, or to be edited live).
    pub fn write_config(&self) -> PathBuf {
        let path = self.dir.path().join("lantern.toml");
        std::fs::write(&path, toml_of(&self.config)).expect("write config");
        path
    }
}

/// A config as the TOML text an operator would write.
pub fn toml_of(config: &Config) -> String {
    let v = serde_json::to_value(config).expect("config to json");
    toml_shim::from_json(v).0
}

impl World {}

/// Minimal JSON-to-TOML writer for configs (tables, arrays of tables, scalars).
mod toml_shim {
    use serde_json::Value as J;
    pub struct Value(pub String);

    pub fn from_json(v: J) -> Value {
        let mut out = String::new();
        if let J::Object(map) = v {
            write_table(&mut out, "", &map);
        }
        Value(out)
    }

    fn scalar(v: &J) -> Option<String> {
        Some(match v {
            J::String(s) => serde_json::to_string(s).unwrap_or_default(),
            J::Number(n) => n.to_string(),
            J::Bool(b) => b.to_string(),
            J::Array(items) if items.iter().all(|i| !i.is_object()) => {
                format!("[{}]", items.iter().filter_map(scalar).collect::<Vec<_>>().join(", "))
            }
            _ => return None,
        })
    }

    fn write_table(out: &mut String, path: &str, map: &serde_json::Map<String, J>) {
        for (k, v) in map {
            if v.is_null() {
                continue;
            }
            if let Some(s) = scalar(v) {
                out.push_str(&format!("{k} = {s}\n"));
            }
        }
        for (k, v) in map {
            let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            match v {
                J::Object(m) => {
                    out.push_str(&format!("\n[{p}]\n"));
                    write_table(out, &p, m);
                }
                J::Array(items) if items.iter().any(|i| i.is_object()) => {
                    for item in items {
                        out.push_str(&format!("\n[[{p}]]\n"));
                        if let J::Object(m) = item {
                            write_table(out, &p, m);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// A call event as the control room would publish it.
pub fn event(event_id: &str, call_id: &str, kind: &str, at: &str, number: Option<&str>, notes: Option<&str>) -> Vec<u8> {
    let mut v = serde_json::json!({
        "event_id": event_id, "call_id": call_id, "kind": kind, "occurred_at": at, "channel": "999", "division": "West",
    });
    if let Some(n) = number {
        v["caller"] = serde_json::json!({"number": n, "presentation": "allowed"});
    }
    if let Some(n) = notes {
        v["notes"] = serde_json::json!(n);
    }
    serde_json::to_vec(&v).expect("json")
}

/// A plain MQTT client for tests: publishes, and collects what arrives on its subscriptions.
pub struct Probe {
    pub client: AsyncClient,
    pub rx: mpsc::UnboundedReceiver<Publish>,
    stop: CancellationToken,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Probe {
    pub async fn connect(url: &str, filters: &[&str]) -> Probe {
        Probe::connect_with(url, filters, true, &unique("probe-")).await
    }

    /// `clean_session = false` keeps publishes queued across a broker restart.
    pub async fn connect_with(url: &str, filters: &[&str], clean: bool, id: &str) -> Probe {
        let mut o = lantern_shared::mqtt::options(url, id).expect("mqtt url");
        o.set_manual_acks(false).set_clean_session(clean).set_inflight(1000).set_max_packet_size(64 * 1024 * 1024, 8 * 1024 * 1024);
        let (client, mut eventloop) = AsyncClient::new(o, 100_000);
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let s = stop.clone();
        let subs: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let c = client.clone();
        tokio::spawn(async move {
            loop {
                let e = tokio::select! { _ = s.cancelled() => break, e = eventloop.poll() => e };
                match e {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for f in &subs {
                            let _ = c.try_subscribe(f.clone(), QoS::AtLeastOnce);
                        }
                        if subs.is_empty() {
                            let _ = ready_tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(p);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let expected = filters.len().max(1);
        for _ in 0..expected {
            tokio::time::timeout(Duration::from_secs(10), ready_rx.recv()).await.expect("probe connected and subscribed");
        }
        Probe { client, rx, stop }
    }

    pub async fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload).await.expect("publish queued");
    }

    /// The next JSON message for which `pred` holds, or `None` after `wait`.
    pub async fn next_json(&mut self, wait: Duration, pred: impl Fn(&serde_json::Value) -> bool) -> Option<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let p = tokio::time::timeout_at(deadline, self.rx.recv()).await.ok()??;
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p.payload) {
                if pred(&v) {
                    return Some(v);
                }
            }
        }
    }
}

/// A Lantern service running in this process, on its own port.
pub struct Running {
    pub name: &'static str,
    pub addr: std::net::SocketAddr,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Spawns `run` and waits until the service answers `/readyz`.
    async fn spawn<F>(name: &'static str, addr: std::net::SocketAddr, stop: CancellationToken, run: F) -> Running
    where
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let running = Running { name, addr, stop, task: tokio::spawn(run) };
        running.wait_ready().await;
        running
    }

    pub async fn flagger(config: &Config) -> Running {
        Running::flagger_watching(config, None).await
    }

    /// A flagger that applies live reloads of the file at `watch`.
    pub async fn flagger_watching(config: &Config, watch: Option<&Path>) -> Running {
        let mut flagger = lantern_flagger::Flagger::build(config.clone()).await.expect("flagger builds");
        let stop = CancellationToken::new();
        if let Some(path) = watch {
            let reloader = lantern_shared::config::reload::Reloader::start(path.to_path_buf(), config.clone(), stop.clone());
            flagger = flagger.with_reloads(reloader.subscribe());
        }
        let addr = flagger.local_addr();
        Running::spawn("flagger", addr, stop.clone(), flagger.run(stop)).await
    }

    pub async fn demand(config: &Config) -> Running {
        let demand = lantern_demand::Demand::build(config.clone()).await.expect("demand builds");
        let stop = CancellationToken::new();
        Running::spawn("demand", demand.local_addr(), stop.clone(), demand.run(stop)).await
    }

    pub async fn desk(config: &Config) -> Running {
        let desk = lantern_desk::Desk::build(config.clone()).await.expect("desk builds");
        let stop = CancellationToken::new();
        Running::spawn("desk", desk.local_addr(), stop.clone(), desk.run(stop)).await
    }

    pub async fn wait_ready(&self) {
        let url = self.url("/readyz");
        for _ in 0..200 {
            if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} never became ready", self.name);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.task
            .await
            .unwrap_or_else(|e| panic!("{} task: {e}", self.name))
            .unwrap_or_else(|e| panic!("{} stopped with an error: {e:#}", self.name));
    }

    pub async fn metric(&self, series: &str) -> f64 {
        metric(self.addr, series).await
    }
}

/// The value of one series (`name{labels}` exactly as exposed) on a service's `/metrics`.
pub async fn metric(addr: std::net::SocketAddr, series: &str) -> f64 {
    let body = reqwest::get(format!("http://{addr}/metrics")).await.expect("metrics").text().await.expect("metrics body");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.rsplit_once(' ').filter(|(name, _)| *name == series).and_then(|(_, v)| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Polls `check` until it holds or `wait` passes.
pub async fn eventually<F, Fut>(wait: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A Mosquitto of the test's own on a random port, with the repo's recommended settings,
/// persistence in the test's temp dir, and `user root` so it can write there.
pub struct OwnMosquitto {
    pub port: u16,
    conf: PathBuf,
    child: Option<std::process::Child>,
}

impl OwnMosquitto {
    /// `None` (test skipped) where Mosquitto is not installed, unless CI requires it.
    pub fn start(dir: &Path) -> Option<OwnMosquitto> {
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].into_iter().find(|p| Path::new(p).exists());
        let Some(bin) = bin else {
            skip("mosquitto is not installed");
            return None;
        };
        let port = free_port();
        let recommended =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/mosquitto.conf")).expect("config/mosquitto.conf");
        let mut conf: String = recommended
            .lines()
            .filter(|l| !["listener", "persistence_location", "log_dest", "log_type", "user"].iter().any(|k| l.starts_with(k)))
            .map(|l| format!("{l}\n"))
            .collect();
        conf.push_str(&format!(
            "listener {port} 127.0.0.1\npersistence_location {}/\nuser root\nlog_dest file {}/mosquitto.log\n",
            dir.display(),
            dir.display()
        ));
        let path = dir.join("mosquitto.conf");
        std::fs::write(&path, conf).expect("write mosquitto.conf");
        let mut m = OwnMosquitto { port, conf: path, child: None };
        let _ = bin;
        m.spawn();
        Some(m)
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].into_iter().find(|p| Path::new(p).exists()).expect("mosquitto");
        let child = std::process::Command::new(bin)
            .arg("-c")
            .arg(&self.conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mosquitto did not start on port {}", self.port);
    }

    /// Stops the broker cleanly (SIGTERM, so it saves its persistence file).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Freezes the broker (SIGSTOP): connections stay open and nothing moves.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen broker go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = std::process::Command::new("kill").arg(sig).arg(c.id().to_string()).status();
        }
    }
}

impl Drop for OwnMosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Flags the desk lists, asked as the `nurse` test user (see [`desk_users`]).
pub async fn desk_flags(desk: std::net::SocketAddr) -> Vec<serde_json::Value> {
    let resp = reqwest::Client::new()
        .get(format!("http://{desk}/api/flags?limit=1000"))
        .basic_auth("nurse", Some("nurse-pass"))
        .send()
        .await
        .expect("desk answers");
    resp.json::<Vec<serde_json::Value>>().await.unwrap_or_default()
}

/// Waits until the desk lists a flag for `call_id`.
pub async fn desk_flag(desk: std::net::SocketAddr, call_id: &str, wait: Duration) -> Option<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        if let Some(f) = desk_flags(desk).await.into_iter().find(|f| f["call_id"] == call_id) {
            return Some(f);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// One number from the database at `db_url` (SQLite or PostgreSQL).
pub async fn query_i64(db_url: &str, q: &str) -> i64 {
    let db = lantern_shared::store::Db::connect(db_url).await.expect("db");
    let n: i64 = lantern_shared::with_db!(&db, |pool| sqlx::query_scalar(q).fetch_one(pool).await).expect("query");
    db.close().await;
    n
}

/// Runs one statement on the database at `db_url` (SQLite or PostgreSQL).
pub async fn execute(db_url: &str, q: &str) {
    let db = lantern_shared::store::Db::connect(db_url).await.expect("db");
    lantern_shared::with_db!(&db, |pool| sqlx::raw_sql(q).execute(pool).await.map(|_| ())).expect("statement");
    db.close().await;
}

/// Starts the real `lantern` command (`bin`, the test package's `lantern-under-test`) with
/// `args`, logging to `log`.
pub fn spawn_lantern(bin: &str, args: &[&str], config: &Path, log: &Path) -> std::process::Child {
    std::process::Command::new(bin)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("LANTERN_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).map(std::process::Stdio::from).unwrap_or(std::process::Stdio::null()))
        .spawn()
        .expect("start lantern")
}

/// Resident memory of a process in KiB, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok())
}

/// Desk users for tests: `nurse`, `inspector` and `admin`, each with password `<name>-pass`.
pub fn desk_users() -> Vec<lantern_shared::config::UserConfig> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    use lantern_shared::config::Role;
    // Light argon2 settings: tests hash and verify many times.
    let params = argon2::Params::new(1024, 1, 1, None).expect("params");
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    [("nurse", Role::Nurse), ("inspector", Role::Inspector), ("admin", Role::Admin)]
        .into_iter()
        .map(|(name, role)| {
            let salt = SaltString::encode_b64(format!("salt-{name}-0123").as_bytes()).expect("salt");
            let hash = hasher.hash_password(format!("{name}-pass").as_bytes(), &salt).expect("hash").to_string();
            lantern_shared::config::UserConfig { name: name.into(), role, password_hash: hash }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn unique_markers_survive_phone_masking() {
        for _ in 0..1000 {
            let m = super::unique("bad-");
            assert_eq!(lantern_shared::mask::mask(&m), m);
        }
        // What used to happen one time in thirty: a hex id with a nine-digit run.
        assert_ne!(lantern_shared::mask::mask("bad-123456789abc"), "bad-123456789abc");
    }
}
