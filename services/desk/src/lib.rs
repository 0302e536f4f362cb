//! `lantern-desk`: the nurses' flag desk (SPEC section 6).
//!
//! Flags arrive over MQTT (persistent session, acked after commit) and are stored; the page
//! and API read the database, and a live stream tells pages about every raised or updated
//! flag and every acknowledgement and outcome, numbered so a page that reconnects misses
//! nothing.

mod api;
mod auth;
mod error;
pub mod feedback;
mod ingest;
mod metrics;
mod page;

pub use auth::User;
pub use metrics::DeskMetrics;

use anyhow::Context;
use arc_swap::ArcSwap;
use lantern_shared::config::reload::Reload;
use lantern_shared::config::UserConfig;
use lantern_shared::consumer::{self, BatchConsumer, CommitError};
use lantern_shared::flag::{FlagMessage, FlagRejection};
use lantern_shared::mqtt::{Publisher, Received};
use lantern_shared::service::{ServiceBase, Started};
use lantern_shared::store::Db;
use lantern_shared::{Clock, Config};
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
    pub clock: Clock,
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
        Desk::build_with_clock(config, Clock::System).await
    }

    /// A desk that reads time from `clock` (tests move it).
    pub async fn build_with_clock(config: Config, clock: Clock) -> anyhow::Result<Desk> {
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
            clock,
        }));
        metrics::refresh(&state).await.context("desk metrics from the database")?;
        metrics::refresh_feedback(&state).await.context("desk feedback metrics from the database")?;
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
        let Started { link, hard_stop, server } =
            self.base.start(vec![self.config.topic("flags/#")], &connected, None, routes, &shutdown)?;
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
    type Item = Result<FlagMessage, FlagRejection>;
    type Committed = ingest::Committed;

    fn prepare(&mut self, received: &Received, _now: chrono::DateTime<chrono::Utc>) -> Self::Item {
        FlagMessage::parse(&received.publish.payload)
    }

    fn rejected(&mut self, _received: &Received, reason: &'static str, error: String) -> Self::Item {
        Err(FlagRejection::new(reason, error))
    }

    async fn commit(
        &mut self,
        _batch: &[Received],
        items: &[Self::Item],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Self::Committed, CommitError> {
        ingest::store(&self.state, items, now.timestamp_millis()).await
    }

    /// Counts refusals and tells live pages how far the stream now reaches.
    async fn finish(&mut self, _out: &Publisher, batch: &[Received], items: &[Self::Item], committed: Self::Committed) {
        let refused = items
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.as_ref().err().map(|e| (i, e)))
            .chain(committed.refused.iter().map(|(i, e)| (*i, e)));
        for (i, why) in refused {
            self.state.metrics.flags_rejected.with_label_values(&[why.reason]).inc();
            tracing::warn!(reason = why.reason, error = %why.error, topic = %batch[i].publish.topic, "flag message refused");
        }
        if let Some(seq) = committed.last_seq {
            let _ = self.state.updates.send(seq);
            let _ = metrics::refresh(&self.state).await;
        }
    }

    fn reload(&mut self, reload: Reload) {
        self.apply_reload(reload);
    }

    async fn tick(&mut self, _out: &Publisher) {
        let _ = metrics::refresh(&self.state).await;
        let _ = metrics::refresh_feedback(&self.state).await;
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.state.clock.now()
    }
}
