//! A Mosquitto of the test's own, for tests that stop or overload the broker.

use crate::{free_port, skip};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
        OwnMosquitto::start_with(dir, |port| format!("listener {port} 127.0.0.1\n"))
    }

    /// [`OwnMosquitto::start`] with its own listener and account lines in place of the plain
    /// listener (`listener`, TLS files, `allow_anonymous`, `password_file`, `acl_file`).
    pub fn start_with(dir: &Path, listener: impl Fn(u16) -> String) -> Option<OwnMosquitto> {
        let recommended =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/mosquitto.conf")).expect("config/mosquitto.conf");
        OwnMosquitto::start_from(dir, &recommended, listener)
    }

    /// [`OwnMosquitto::start`] on Mosquitto's own defaults (20 messages in flight per client,
    /// 1,000 queued, Nagle on), as a force's broker may be set: only the listener, persistence
    /// and logging are set.
    pub fn start_on_defaults(dir: &Path) -> Option<OwnMosquitto> {
        OwnMosquitto::start_from(dir, "persistence true\n", |port| format!("listener {port} 127.0.0.1\n"))
    }

    fn start_from(dir: &Path, settings: &str, listener: impl Fn(u16) -> String) -> Option<OwnMosquitto> {
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].into_iter().find(|p| Path::new(p).exists());
        let Some(bin) = bin else {
            skip("mosquitto is not installed");
            return None;
        };
        let port = free_port();
        let mut conf: String = settings
            .lines()
            .filter(|l| {
                !["listener", "persistence_location", "log_dest", "log_type", "user", "allow_anonymous"].iter().any(|k| l.starts_with(k))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let listener = listener(port);
        if !listener.contains("allow_anonymous") {
            conf.push_str("allow_anonymous true\n");
        }
        conf.push_str(&format!("persistence_location {}/\nuser root\nlog_dest file {}/mosquitto.log\n", dir.display(), dir.display()));
        conf.push_str(&listener);
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
