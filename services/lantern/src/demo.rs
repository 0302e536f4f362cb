//! `lantern demo` (`make demo`): Lantern with the simulator playing a force's traffic fast
//! enough that new flags arrive every few seconds, a throwaway demo nurse whose password is
//! printed, and Prometheus if it is installed. Everything it writes goes in its own data
//! folder (default `target/demo`): never the real database, key or users file.

use crate::run::{self, Part};
use anyhow::Context;
use lantern_shared::config::{UserConfig, UsersFile};
use lantern_shared::domain::Role;
use lantern_shared::{Config, Span};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

pub struct Args {
    pub config: PathBuf,
    pub data_dir: PathBuf,
    /// Pace multiplier for the simulator: 120 plays two hours of a force's calls a minute.
    pub rate: f64,
    /// Stop after this long (default: run until Ctrl-C).
    pub duration: Option<Span>,
}

/// The demo nurse's name.
pub const DEMO_USER: &str = "demo.nurse";

/// A password that is easy to type from the screen: four short words and a number.
fn demo_password() -> String {
    const WORDS: [&str; 24] = [
        "amber", "birch", "cedar", "delta", "ember", "fjord", "grove", "heron", "ivory", "juniper", "kestrel", "lantern", "maple", "north",
        "olive", "pebble", "quartz", "river", "slate", "thistle", "umber", "violet", "willow", "yarrow",
    ];
    let pick = || WORDS[rand::random::<usize>() % WORDS.len()];
    format!("{}-{}-{}-{}-{}", pick(), pick(), pick(), pick(), rand::random::<u16>() % 100)
}

/// The demo's config: the given one with its database, key and users file moved into `data`.
pub fn demo_config(base: &Config, data: &Path) -> Config {
    let mut c = base.clone();
    c.database.url = format!("sqlite://{}", data.join("lantern.db").display());
    c.privacy.key_file = data.join("pseudonym.key");
    c.desk.users_file = data.join("users.toml");
    c.desk.users.retain(|_| false);
    c
}

/// Makes (or remakes) the demo nurse in the demo's users file, and in `config`; returns the
/// password.
pub fn demo_nurse(config: &mut Config) -> anyhow::Result<String> {
    let password = demo_password();
    let file = UsersFile {
        users: vec![UserConfig {
            name: DEMO_USER.into(),
            role: Role::Nurse,
            password_hash: crate::users::hash(&password)?,
            disabled: false,
        }],
    };
    file.write(&config.desk.users_file).with_context(|| format!("writing {}", config.desk.users_file.display()))?;
    config.desk.users = file.users;
    Ok(password)
}

/// Starts Prometheus with `grafana/prometheus.yml` when it is installed.
fn prometheus(data: &Path) -> Option<std::process::Child> {
    let bin = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"].into_iter().find(|p| Path::new(p).exists())?;
    let config = Path::new("grafana/prometheus.yml");
    if !config.exists() {
        return None;
    }
    std::process::Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.join("prometheus").display()))
        .arg("--web.listen-address=127.0.0.1:9090")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(data.join("prometheus.log")).map(std::process::Stdio::from).unwrap_or(std::process::Stdio::null()))
        .spawn()
        .ok()
}

pub fn main(args: Args) -> ExitCode {
    lantern_shared::runtime::telemetry::init_tracing_stderr();
    let result = (|| -> anyhow::Result<()> {
        let base = Config::load(&args.config).map_err(|p| anyhow::anyhow!("{}: {p}", args.config.display()))?;
        std::fs::create_dir_all(&args.data_dir).with_context(|| format!("making {}", args.data_dir.display()))?;
        let data = args.data_dir.canonicalize()?;
        let mut config = demo_config(&base, &data);
        let password = demo_nurse(&mut config)?;
        let mut prom = prometheus(&data);
        // Written whole and once; a closed stdout (a pipe whose reader left) must not stop the demo.
        let mut banner = String::new();
        banner.push_str(&format!("\nLantern demo: simulated calls at {}x, new flags every few seconds.\n", args.rate));
        banner.push_str(&format!("  desk:     http://{}/  (sign in as {DEMO_USER}, password {password})\n", config.desk.listen));
        banner.push_str(&format!("  demand:   http://{}/demand\n", config.desk.listen));
        banner.push_str(&format!("  metrics:  http://{}/metrics  http://{}/metrics\n", config.flagger.listen, config.demand.listen));
        banner.push_str(match &prom {
            Some(_) => "  prometheus: http://127.0.0.1:9090 (point Grafana at it: README, \"Dashboards\")\n",
            None => "  (install Debian's `prometheus` to have it started too)\n",
        });
        banner.push_str(&format!("  demo data: {} (throwaway; the real database is untouched)\n", data.display()));
        banner.push_str("Ctrl-C stops it.\n\n");
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
        }
        let runtime = tokio::runtime::Runtime::new()?;
        let outcome = runtime.block_on(async {
            let shutdown = CancellationToken::new();
            let stop = shutdown.clone();
            let duration = args.duration;
            tokio::spawn(async move {
                match duration {
                    Some(d) => {
                        tokio::select! {
                            _ = tokio::time::sleep(std::time::Duration::from_millis(d.millis().max(0) as u64)) => {}
                            _ = tokio::signal::ctrl_c() => {}
                        }
                    }
                    None => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
                stop.cancel();
            });
            let services = tokio::spawn(run::run(config.clone(), args.config.clone(), &[] as &[Part], shutdown.clone()));
            // Give the services a moment to subscribe, then play traffic until stopped.
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            // Ten minutes at a time: each plays the traffic that leads up to now at the pace
            // asked for, so no event is ever stamped in the future.
            let playing = async {
                loop {
                    let params = crate::simulate::Params { seed: rand::random(), ..crate::simulate::Params::default() };
                    if let Err(e) = crate::simulate::publish(params, &config, args.rate, Span::from_secs(600)).await {
                        tracing::warn!(error = %e, "the simulator stopped; starting it again");
                        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    }
                }
            };
            tokio::select! {
                _ = playing => {}
                _ = shutdown.cancelled() => {}
            }
            shutdown.cancel();
            services.await?
        });
        if let Some(p) = prom.as_mut() {
            let _ = p.kill();
            let _ = p.wait();
        }
        outcome
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lantern demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}
