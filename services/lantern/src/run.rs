//! `lantern run`: every service in one process, kept apart by their own listen addresses
//! and MQTT client ids, stopped together on Ctrl-C or SIGTERM.

use anyhow::Context;
use lantern_shared::config::reload::Reloader;
use lantern_shared::domain::pseudonym::Pseudonymizer;
use lantern_shared::Config;
use std::path::Path;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// A part `lantern run --service` can start on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Flagger,
    Demand,
    Desk,
    Broker,
}

pub fn main(config_path: &Path, parts: &[Part]) -> ExitCode {
    let config_path = config_path.to_path_buf();
    lantern_shared::runtime::telemetry::init_tracing();
    let config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!("{}: the config has {} problem(s); nothing started:", config_path.display(), problems.0.len());
            eprint!("{problems}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    runtime.spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping: finishing events in hand");
        stop.cancel();
    });
    match runtime.block_on(run(config, config_path, parts, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "lantern stopped");
            ExitCode::FAILURE
        }
    }
}

/// Runs the parts asked for (all when `parts` is empty) until `shutdown` is cancelled.
pub async fn run(config: Config, config_path: std::path::PathBuf, parts: &[Part], shutdown: CancellationToken) -> anyhow::Result<()> {
    let all = parts.is_empty();
    let wants = |p: Part| all || parts.contains(&p);
    if wants(Part::Desk) && config.desk.active_users().is_empty() {
        tracing::warn!(
            "no desk users yet, so nobody can sign in: add one with `lantern user add NAME --role nurse --config {}` (it asks for the password)",
            config_path.display()
        );
    }
    if all {
        // One machine: make the pseudonym key on first run. Services alone never do.
        Pseudonymizer::load_or_create(&config.privacy.key_file)?;
    }
    // The embedded broker runs when enabled in config and `lantern run` starts everything, or
    // when asked for by name.
    if (all && config.broker.enabled) || parts.contains(&Part::Broker) {
        let listen = config.broker.listen.parse().context("broker.listen")?;
        tokio::task::spawn_blocking(move || lantern_broker::start(listen)).await??;
    }
    // One reload path for SIGHUP and file changes; every service hears each reload.
    let reloader = Reloader::start(config_path, config.clone(), shutdown.clone());
    let mut tasks = tokio::task::JoinSet::new();
    if wants(Part::Flagger) {
        let flagger =
            lantern_flagger::Flagger::build(config.clone()).await.context("starting lantern-flagger")?.with_reloads(reloader.subscribe());
        tracing::info!(listen = %flagger.local_addr(), "lantern-flagger started");
        tasks.spawn(flagger.run(shutdown.clone()));
    }
    if wants(Part::Demand) {
        let demand =
            lantern_demand::Demand::build(config.clone()).await.context("starting lantern-demand")?.with_reloads(reloader.subscribe());
        tracing::info!(listen = %demand.local_addr(), "lantern-demand started");
        tasks.spawn(demand.run(shutdown.clone()));
    }
    if wants(Part::Desk) {
        let desk = lantern_desk::Desk::build(config.clone()).await.context("starting lantern-desk")?.with_reloads(reloader.subscribe());
        tracing::info!(listen = %desk.local_addr(), "lantern-desk started");
        tasks.spawn(desk.run(shutdown.clone()));
    }
    tracing::info!("lantern started; Ctrl-C stops it");
    if tasks.is_empty() {
        // Only the broker: run until stopped.
        shutdown.cancelled().await;
        return Ok(());
    }
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        let outcome = done.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = outcome {
            // One service failing stops the others cleanly rather than running half a system.
            shutdown.cancel();
            result = Err(e);
        }
    }
    result
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
