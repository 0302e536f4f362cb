//! Live reload: one path for SIGHUP and for changes to the file (its directory is watched,
//! since editors and config managers replace files). The whole new file is validated first;
//! a bad edit is refused and the config in force stays.

use super::diff::{applicable, diff, fingerprint};
use super::Config;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// What every service hears after a reload attempt.
#[derive(Debug, Clone)]
pub enum Reload {
    /// A new config is in force (restart-only settings kept as they were).
    Applied { config: Arc<Config>, hash: String, changes: Vec<String> },
    /// The edit was refused; the previous config stays.
    Refused { error: String },
}

/// Runs reloads for one process. Subscribe each service with [`Reloader::subscribe`].
#[derive(Clone)]
pub struct Reloader {
    tx: broadcast::Sender<Reload>,
    trigger: mpsc::UnboundedSender<&'static str>,
}

impl Reloader {
    pub fn subscribe(&self) -> broadcast::Receiver<Reload> {
        self.tx.subscribe()
    }

    /// Asks for a reload now, as SIGHUP does.
    pub fn trigger(&self) {
        let _ = self.trigger.send("request");
    }

    /// Starts watching `path` (and SIGHUP) until `stop` is cancelled. The model file and the
    /// users file are watched too: a change to either reloads the whole config.
    pub fn start(path: PathBuf, initial: Config, stop: CancellationToken) -> Reloader {
        let mut watched = vec![path.clone()];
        watched.extend(initial.mental_health.model.as_deref().filter(|m| !m.is_empty()).map(PathBuf::from));
        watched.push(initial.desk.users_file.clone());
        let initial = InForce::new(initial, &path);
        let (tx, _) = broadcast::channel(64);
        let (trigger, mut triggers) = mpsc::unbounded_channel::<&'static str>();
        let watcher = watch_files(&watched, trigger.clone());
        #[cfg(unix)]
        {
            let t = trigger.clone();
            let s = stop.clone();
            tokio::spawn(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
                loop {
                    tokio::select! {
                        _ = s.cancelled() => break,
                        r = hup.recv() => { if r.is_none() { break } let _ = t.send("SIGHUP"); }
                    }
                }
            });
        }
        let out = tx.clone();
        tokio::spawn(async move {
            let _watcher = watcher;
            let mut current = initial;
            loop {
                let cause = tokio::select! {
                    _ = stop.cancelled() => break,
                    c = triggers.recv() => match c { Some(c) => c, None => break },
                };
                // Debounce: an editor's save is several events; read once it settles.
                tokio::time::sleep(Duration::from_millis(250)).await;
                while triggers.try_recv().is_ok() {}
                let event = reload_once(&path, &mut current, cause);
                let _ = out.send(event);
            }
        });
        Reloader { tx, trigger }
    }
}

/// The config in force and the sections its file spelled out.
#[derive(Debug, Clone, PartialEq)]
pub struct InForce {
    pub config: Config,
    sections: std::collections::BTreeSet<String>,
}

impl InForce {
    pub fn new(config: Config, path: &Path) -> InForce {
        let sections = std::fs::read_to_string(path).map(|t| sections_of(&t)).unwrap_or_default();
        InForce { config, sections }
    }
}

fn sections_of(text: &str) -> std::collections::BTreeSet<String> {
    toml::from_str::<toml::Table>(text).map(|t| t.keys().cloned().collect()).unwrap_or_default()
}

/// Loads, validates and diffs; logs what happened in words a person can read.
///
/// A file that parses but has lost whole sections the config in force had is refused too:
/// that is what a truncated write looks like, and applying it would silently put defaults in
/// force. Removing a section takes a restart.
pub fn reload_once(path: &Path, in_force: &mut InForce, cause: &str) -> Reload {
    let current = &mut in_force.config;
    let loaded = Config::load(path).and_then(|c| {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let now = sections_of(&text);
        let lost: Vec<&String> = in_force.sections.difference(&now).collect();
        if lost.is_empty() {
            Ok((c, now))
        } else {
            let names: Vec<String> = lost.iter().map(|s| format!("[{s}]")).collect();
            Err(super::Problems::one(super::Problem::file(format!(
                "section {} is missing (a truncated or half-written file?); remove a section only with a restart",
                names.join(", ")
            ))))
        }
    });
    match loaded {
        Err(problems) => {
            let error = problems.to_string().trim_end().replace('\n', "; ");
            tracing::error!(file = %path.display(), cause, error = %error, "config edit refused; the previous config stays in force");
            Reload::Refused { error }
        }
        Ok((new, sections)) => {
            in_force.sections = sections;
            let changes = diff(current, &new);
            for c in changes.iter().filter(|c| c.needs_restart) {
                tracing::warn!(change = %c.text, "this setting needs a restart; ignored until then");
            }
            let applied = applicable(current, &new);
            let lines: Vec<String> = changes.iter().filter(|c| !c.needs_restart).map(|c| c.text.clone()).collect();
            for line in &lines {
                tracing::info!(change = %line, "config reloaded");
            }
            if lines.is_empty() {
                tracing::info!(file = %path.display(), cause, "config reloaded: nothing that applies live changed");
            }
            *current = applied.clone();
            Reload::Applied { hash: fingerprint(&applied), config: Arc::new(applied), changes: lines }
        }
    }
}

/// Watches the folders of `files` (editors and config managers replace files, so the folder is
/// what shows it) and triggers a reload when any of these files is written, made or removed.
fn watch_files(files: &[PathBuf], trigger: mpsc::UnboundedSender<&'static str>) -> Option<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let folder = |p: &Path| -> PathBuf {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
    };
    let targets: Vec<(PathBuf, std::ffi::OsString)> =
        files.iter().filter_map(|f| Some((folder(f), f.file_name()?.to_os_string()))).collect();
    let wanted = targets.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            let watched = |p: &PathBuf| wanted.iter().any(|(dir, name)| p.file_name() == Some(name.as_os_str()) && folder(p) == *dir);
            let relevant =
                matches!(ev.kind, EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)) && ev.paths.iter().any(watched);
            if relevant {
                let _ = trigger.send("file change");
            }
        }
    })
    .map_err(|e| tracing::warn!(error = %e, "cannot watch the config file; SIGHUP still reloads"))
    .ok()?;
    let mut dirs: Vec<&PathBuf> = targets.iter().map(|(d, _)| d).collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot watch a config folder; SIGHUP still reloads");
        }
    }
    Some(watcher)
}

/// The next reload, or never when there is none to listen to (or the reloader has gone).
pub async fn next(reloads: &mut Option<broadcast::Receiver<Reload>>) -> Reload {
    loop {
        match reloads {
            Some(rx) => match rx.recv().await {
                Ok(r) => return r,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "config reloads came faster than they were applied; applying the latest");
                }
                Err(broadcast::error::RecvError::Closed) => *reloads = None,
            },
            None => std::future::pending::<()>().await,
        }
    }
}
