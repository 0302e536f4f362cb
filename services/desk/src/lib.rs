//! `lantern-desk`: the nurses' flag desk (SPEC section 6).
//!
//! Flags arrive over MQTT (persistent session, acked after commit) and are stored; the page
//! and API read the database, and a live stream tells pages about every raised or updated
//! flag and every acknowledgement and outcome, numbered so a page that reconnects misses
//! nothing.

mod api;
mod auth;
mod error;
mod ingest;
mod metrics;
mod page;

pub use auth::User;
pub use metrics::DeskMetrics;

use anyhow::Context;
use arc_swap::ArcSwap;
use lantern_shared::config::reload::Reload;
use lantern_shared::config::UserConfig;
use lantern_shared::consumer::{self, BatchConsumer};
use lantern_shared::mqtt::Received;
use lantern_shared::service::{ServiceBase, Started};
use lantern_shared::store::Db;
use lantern_shared::Config;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

const SERVICE: &str = "desk";

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub db: Db,
    pub users: ArcSwap<Vec<UserConfig>>,
    pub unit_savings: ArcSwap<BTreeMap<String, f64>>,
    pub auth: auth::Auth,
    pub metrics: DeskMetrics,
    /// Tells live streams that rows up to this seq exist.
    pub updates: broadcast::Sender<i64>,
    /// Cancelled at shutdown: live streams end, or the server would wait for them for ever.
    pub stopping: CancellationToken,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// A built desk; call [`Desk::run`].
pub struct Desk {
    base: ServiceBase,
    config: Config,
    state: AppState,
}

impl Desk {
    pub async fn build(config: Config) -> anyhow::Result<Desk> {
        let base = ServiceBase::build(SERVICE, &config, &config.desk.listen).await?;
        let db = base.db.clone();
        let metrics = DeskMetrics::new(&base.registry, &config);
        let (updates, _) = broadcast::channel(1024);
        let state = AppState(Arc::new(Inner {
            db,
            users: ArcSwap::from_pointee(config.desk.users.clone()),
            unit_savings: ArcSwap::from_pointee(config.desk.unit_savings.clone()),
            auth: auth::Auth::default(),
            metrics,
            updates,
            stopping: CancellationToken::new(),
        }));
        metrics::refresh(&state).await.context("desk metrics from the database")?;
        if config.desk.users.is_empty() {
            tracing::warn!("no [[desk.users]] in config: nobody can sign in to the desk (make one with `lantern hash-password`)");
        }
        Ok(Desk { base, config, state })
    }

    pub fn with_reloads(mut self, reloads: broadcast::Receiver<Reload>) -> Desk {
        self.base.reloads = Some(reloads);
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.base.local_addr()
    }

    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let connected = self.state.metrics.mqtt_connected.clone();
        let routes = api::router(self.state.clone());
        let Started { link, hard_stop, server } = self.base.start(vec![self.config.topic("flags/#")], &connected, routes, &shutdown)?;
        let (stopping, stop) = (self.state.stopping.clone(), shutdown.clone());
        tokio::spawn(async move {
            stop.cancelled().await;
            stopping.cancel();
        });
        let reloads = self.base.reloads.take();
        consumer::consume(&mut self, link, hard_stop, &shutdown, reloads, Duration::from_secs(15)).await;
        self.base.stop(server).await;
        Ok(())
    }

    fn apply_reload(&mut self, reload: Reload) {
        match reload {
            Reload::Refused { .. } => self.state.metrics.config_reloads.with_label_values(&["error"]).inc(),
            Reload::Applied { config, hash, .. } => {
                self.state.users.store(Arc::new(config.desk.users.clone()));
                self.state.unit_savings.store(Arc::new(config.desk.unit_savings.clone()));
                self.config = (*config).clone();
                self.state.metrics.config_reloads.with_label_values(&["ok"]).inc();
                self.state.metrics.config_info.set(&hash);
            }
        }
    }
}

impl BatchConsumer for Desk {
    type Prepared = ();
    type Committed = Option<i64>;

    fn prepare(&mut self, _batch: &[Received]) {}

    async fn commit(&mut self, batch: &[Received], _: &()) -> Result<Option<i64>, sqlx::Error> {
        ingest::store(&self.state, batch).await
    }

    /// Tells live pages how far the stream now reaches.
    async fn finish(&mut self, _client: &rumqttc::AsyncClient, _batch: &[Received], _: (), last_seq: Option<i64>) {
        if let Some(seq) = last_seq {
            let _ = self.state.updates.send(seq);
            let _ = metrics::refresh(&self.state).await;
        }
    }

    fn reload(&mut self, reload: Reload) {
        self.apply_reload(reload);
    }

    async fn tick(&mut self) {
        let _ = metrics::refresh(&self.state).await;
    }
}
