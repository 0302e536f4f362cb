//! Lantern running: services in this process, or the real command as a child process.

use crate::metric;
use lantern_shared::{Clock, Config};
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
        Running::demand_with_clock(config, Clock::System).await
    }

    /// A flagger that reads time from `clock`.
    pub async fn flagger_with_clock(config: &Config, clock: Clock) -> Running {
        let flagger = lantern_flagger::Flagger::build_with_clock(config.clone(), clock).await.expect("flagger builds");
        let stop = CancellationToken::new();
        Running::spawn("flagger", flagger.local_addr(), stop.clone(), flagger.run(stop)).await
    }

    /// A demand service that reads time from `clock`.
    pub async fn demand_with_clock(config: &Config, clock: Clock) -> Running {
        let demand = lantern_demand::Demand::build_with_clock(config.clone(), clock).await.expect("demand builds");
        let stop = CancellationToken::new();
        Running::spawn("demand", demand.local_addr(), stop.clone(), demand.run(stop)).await
    }

    pub async fn desk(config: &Config) -> Running {
        Running::desk_with_clock(config, Clock::System).await
    }

    /// A desk that applies live reloads of the file at `watch` and reads time from `clock`.
    pub async fn desk_watching(config: &Config, watch: &Path, clock: Clock) -> Running {
        let desk = lantern_desk::Desk::build_with_clock(config.clone(), clock).await.expect("desk builds");
        let stop = CancellationToken::new();
        let reloader = lantern_shared::config::reload::Reloader::start(watch.to_path_buf(), config.clone(), stop.clone());
        let desk = desk.with_reloads(reloader.subscribe());
        Running::spawn("desk", desk.local_addr(), stop.clone(), desk.run(stop)).await
    }

    /// A desk that reads time from `clock`.
    pub async fn desk_with_clock(config: &Config, clock: Clock) -> Running {
        let desk = lantern_desk::Desk::build_with_clock(config.clone(), clock).await.expect("desk builds");
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

/// Starts the real `lantern` command (`bin`, the test package's `lantern-under-test`) with
/// `args`, logging to `log`.
pub fn spawn_lantern(bin: &str, args: &[&str], config: &Path, log: &Path) -> std::process::Child {
    std::process::Command::new(bin)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("LANTERN_LOG", "warn")
        // The log goes to stdout, problems before it starts to stderr: both into `log`.
        .stdout(std::fs::File::create(log).map(std::process::Stdio::from).unwrap_or(std::process::Stdio::null()))
        .stderr(std::fs::OpenOptions::new().append(true).open(log).map(std::process::Stdio::from).unwrap_or(std::process::Stdio::null()))
        .spawn()
        .expect("start lantern")
}

/// Resident memory of a process in KiB, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok())
}
