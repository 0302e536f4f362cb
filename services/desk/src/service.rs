//! The desk service: flag messages in from MQTT, stored, acked after commit; the page and API
//! served beside them.

use crate::ingest::{self, Committed};
use crate::state::AppState;
use anyhow::Context;
use chrono::{DateTime, Utc};
use lantern_shared::config::reload::Reload;
use lantern_shared::domain::flag::{FlagMessage, FlagRejection};
use lantern_shared::runtime::consumer::{self, BatchConsumer, CommitError};
use lantern_shared::runtime::mqtt::{Publisher, Received};
use lantern_shared::runtime::service::{ServiceBase, Started};
use lantern_shared::{Clock, Config};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

const SERVICE: &str = "desk";

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
        let state = AppState::new(base.db.clone(), &config, &base.registry, clock);
        crate::metrics::refresh(&state.db, &state.metrics).await.context("desk metrics from the database")?;
        crate::metrics::refresh_feedback(&state.db, &state.metrics).await.context("desk feedback metrics from the database")?;
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
        let routes = crate::http::router(self.state.clone());
        let Started { link, hard_stop } = self.base.start(vec![self.config.topic("flags/#")], &connected, None, routes, &shutdown)?;
        let (stopping, stop) = (self.state.stopping.clone(), shutdown.clone());
        self.base.spawn(async move {
            stop.cancelled().await;
            stopping.cancel();
        });
        let reloads = self.base.reloads.take();
        consumer::consume(&mut self, link, hard_stop, &shutdown, reloads, Duration::from_secs(15)).await;
        self.base.stop().await;
        Ok(())
    }

    fn apply_reload(&mut self, reload: Reload) {
        match reload {
            Reload::Refused { .. } => self.state.metrics.config_reloads.with_label_values(&["error"]).inc(),
            Reload::Applied { config, hash, .. } => {
                self.state.reload(&config);
                self.config = (*config).clone();
                self.state.metrics.config_reloads.with_label_values(&["ok"]).inc();
                self.state.metrics.config_info.set(&hash);
            }
        }
    }
}

impl BatchConsumer for Desk {
    type Item = Result<FlagMessage, FlagRejection>;
    type Committed = Committed;

    fn prepare(&mut self, received: &Received, _now: DateTime<Utc>) -> Self::Item {
        FlagMessage::parse(&received.publish.payload)
    }

    fn rejected(&mut self, _received: &Received, reason: &'static str, error: String) -> Self::Item {
        Err(FlagRejection::new(reason, error))
    }

    async fn commit(&mut self, _batch: &[Received], items: &[Self::Item], now: DateTime<Utc>) -> Result<Committed, CommitError> {
        ingest::store(&self.state.db, items, now.timestamp_millis()).await
    }

    /// Counts refusals and tells live pages how far the stream now reaches.
    async fn finish(&mut self, _out: &Publisher, batch: &[Received], items: &[Self::Item], committed: Committed) {
        let refused = items
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.as_ref().err().map(|e| (i, e)))
            .chain(committed.refused.iter().map(|(i, e)| (*i, e)));
        for (i, why) in refused {
            self.state.metrics.flags_rejected.with_label_values(&[why.reason]).inc();
            tracing::warn!(reason = why.reason, error = %why.error, topic = %batch[i].publish.topic, "flag message refused");
        }
        if committed.last_seq.is_some() {
            self.state.changed(committed.last_seq).await;
        }
    }

    fn reload(&mut self, reload: Reload) {
        self.apply_reload(reload);
    }

    async fn tick(&mut self, _out: &Publisher) {
        let _ = crate::metrics::refresh(&self.state.db, &self.state.metrics).await;
        let _ = crate::metrics::refresh_feedback(&self.state.db, &self.state.metrics).await;
    }

    fn now(&self) -> DateTime<Utc> {
        self.state.clock.now()
    }
}
