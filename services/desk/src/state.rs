//! What every handler and the flag consumer share.

use crate::auth::Auth;
use crate::metrics::DeskMetrics;
use arc_swap::ArcSwap;
use lantern_shared::config::{EarlyActionConfig, Saving, UserConfig};
use lantern_shared::store::Db;
use lantern_shared::{Clock, Config};
use prometheus::Registry;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The desk's settings that reload live, besides users.
#[derive(Debug, Clone)]
pub struct Live {
    pub unit_savings: BTreeMap<String, Saving>,
    pub early_action: EarlyActionConfig,
}

impl Live {
    fn of(config: &Config) -> Live {
        Live { unit_savings: config.desk.unit_savings.clone(), early_action: config.early_action.clone() }
    }
}

pub struct Inner {
    pub db: Db,
    pub users: ArcSwap<Vec<UserConfig>>,
    /// The settings that reload live: savings figures and early action.
    pub live: ArcSwap<Live>,
    pub auth: Arc<Auth>,
    pub metrics: DeskMetrics,
    /// Tells live streams that rows up to this seq exist.
    pub updates: broadcast::Sender<i64>,
    /// Cancelled at shutdown: live streams end, or the server would wait for them for ever.
    pub stopping: CancellationToken,
    pub clock: Clock,
    /// The desk serves HTTPS itself (session cookies are then `__Host-` and Secure).
    pub tls: bool,
    /// `desk.session_idle_timeout`, in ms; follows reloads.
    pub idle_ms: std::sync::atomic::AtomicI64,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// The desk's state on `db`, with its metrics in `registry`; no broker needed (router
    /// tests build one of these and call the router directly).
    pub fn new(db: Db, config: &Config, registry: &Registry, clock: Clock) -> AppState {
        let (updates, _) = broadcast::channel(1024);
        let auth = Arc::new(Auth::default());
        AppState(Arc::new(Inner {
            db,
            users: ArcSwap::from_pointee(config.desk.active_users()),
            live: ArcSwap::from_pointee(Live::of(config)),
            metrics: DeskMetrics::new(registry, config, clock.clone(), auth.clone()),
            auth,
            updates,
            stopping: CancellationToken::new(),
            clock,
            tls: config.desk.tls_cert_file.is_some(),
            idle_ms: std::sync::atomic::AtomicI64::new(config.desk.session_idle_timeout.millis()),
        }))
    }

    /// Takes in a reloaded config: users (a removed user loses their session at once) and
    /// savings figures.
    pub fn reload(&self, config: &Config) {
        self.users.store(Arc::new(config.desk.active_users()));
        self.live.store(Arc::new(Live::of(config)));
        self.idle_ms.store(config.desk.session_idle_timeout.millis(), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn idle_ms(&self) -> i64 {
        self.idle_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Tells live streams that entries up to `seq` exist, and brings the open-flag figures up
    /// to date.
    pub async fn changed(&self, seq: Option<i64>) {
        if let Some(seq) = seq {
            let _ = self.updates.send(seq);
        }
        if let Err(e) = crate::metrics::refresh(&self.db, &self.metrics).await {
            tracing::warn!(error = %e, "could not count open flags");
        }
    }
}
