//! Helpers for whole-system tests: brokers, databases, configs, probes, metrics.
//!
//! Every test gets its own topic prefix, MQTT client ids, listen ports (port 0) and database
//! (a SQLite file in a temp dir, or a fresh PostgreSQL database), so tests run in parallel and
//! beside a running Lantern.

use tokio::sync::OnceCell;

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

mod desk;
mod mosquitto;
mod probe;
mod running;
mod world;

pub use desk::*;
pub use mosquitto::*;
pub use probe::*;
pub use running::*;
pub use world::*;

#[cfg(test)]
mod tests {
    #[test]
    fn unique_markers_survive_phone_masking() {
        for _ in 0..1000 {
            let m = super::unique("bad-");
            assert_eq!(lantern_shared::domain::mask::mask(&m), m);
        }
        // What used to happen one time in thirty: a hex id with a nine-digit run.
        assert_ne!(lantern_shared::domain::mask::mask("bad-123456789abc"), "bad-123456789abc");
    }
}
