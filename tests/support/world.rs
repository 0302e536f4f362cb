//! A test's world: its database, temp dir, topic prefix and config; events; SQL probes.

use crate::unique;
use lantern_shared::Config;
use std::path::{Path, PathBuf};

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
