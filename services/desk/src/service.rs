//! The desk service: flag messages in from MQTT, stored, acked after commit; the page and API
//! served beside them.

use crate::ingest::{self, Committed};
use crate::state::AppState;
use crate::store;
use anyhow::Context;
use chrono::{DateTime, Utc};
use lantern_shared::config::reload::Reload;
use lantern_shared::domain::clock::rfc3339_ms;
use lantern_shared::domain::flag::{FlagMessage, FlagRejection};
use lantern_shared::runtime::consumer::{self, BatchConsumer, CommitError};
use lantern_shared::runtime::http::Tls;
use lantern_shared::runtime::mqtt::{Publisher, Received};
use lantern_shared::runtime::service::{ServiceBase, Started};
use lantern_shared::{Clock, Config};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

const SERVICE: &str = "desk";
/// How often records past their retention are pruned, by the service's clock.
const PRUNE_EVERY_MS: i64 = 600_000;
/// How often the early-action gauges are worked out again.
const IMPACT_EVERY_MS: i64 = 300_000;

/// A built desk; call [`Desk::run`].
pub struct Desk {
    base: ServiceBase,
    config: Config,
    state: AppState,
    /// The certificate and key when the desk serves HTTPS itself.
    tls: Option<Tls>,
    /// When pruning last ran, by the service's clock (ms).
    last_prune_ms: i64,
    /// When the early-action gauges were last worked out (ms).
    last_impact_ms: i64,
}

impl Desk {
    pub async fn build(config: Config) -> anyhow::Result<Desk> {
        Desk::build_with_clock(config, Clock::System).await
    }

    /// A desk that reads time from `clock` (tests move it).
    pub async fn build_with_clock(config: Config, clock: Clock) -> anyhow::Result<Desk> {
        let tls = match (&config.desk.tls_cert_file, &config.desk.tls_key_file) {
            (Some(cert), Some(key)) => Some(Tls::load(cert, key).await?),
            _ => None,
        };
        let base = ServiceBase::build(SERVICE, &config, &config.desk.listen).await?;
        let state = AppState::new(base.db.clone(), &config, &base.registry, clock);
        // Entries written before the audit log was chained are chained now, in order.
        let mut tx = state.db.begin().await?;
        store::seal_audit(&mut tx).await.context("sealing the audit log")?;
        tx.commit().await?;
        crate::metrics::refresh(&state.db, &state.metrics).await.context("desk metrics from the database")?;
        crate::metrics::refresh_feedback(&state.db, &state.metrics).await.context("desk feedback metrics from the database")?;
        let last_prune_ms = state.clock.now_ms();
        if let Err(e) = crate::metrics::refresh_impact(&state.db, &state.metrics, &config.early_action, last_prune_ms).await {
            tracing::warn!(error = %e, "could not work out the early-action figures; will try again");
        }
        Ok(Desk { base, config, state, tls, last_prune_ms, last_impact_ms: last_prune_ms })
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
        let subscriptions = vec![self.config.topic("flags/#")];
        let Started { link, hard_stop } = self.base.start_with(subscriptions, &connected, None, routes, &shutdown, self.tls.take())?;
        let (stopping, stop) = (self.state.stopping.clone(), shutdown.clone());
        self.base.spawn(async move {
            stop.cancelled().await;
            stopping.cancel();
        });
        let reloads = self.base.reloads.take();
        consumer::consume(&mut self, link, hard_stop, &shutdown, reloads, Duration::from_secs(5)).await;
        self.base.stop().await?;
        Ok(())
    }

    /// Deletes what is past its retention, in one transaction; pruning the audit log is itself
    /// written to the audit log.
    async fn prune(&mut self) -> Result<(), sqlx::Error> {
        let now = self.state.clock.now_ms();
        let r = &self.config.retention;
        let before = store::PruneBefore {
            updates: now - r.desk_updates.millis(),
            open_flags: now - r.flags.millis(),
            outcomes: now - r.outcomes.millis(),
            feedback: now - r.feedback.millis(),
            sessions: now - r.sessions.millis(),
            referrals: now - r.referrals.millis(),
            audit: now - r.audit.millis(),
        };
        let mut tx = self.state.db.begin().await?;
        let (rows, audit) = store::prune(&mut tx, &before).await?;
        if audit > 0 {
            let reason = format!("{audit} entries before {} (retention.audit {})", rfc3339_ms(before.audit), r.audit);
            let entry = store::AuditEntry {
                at_ms: now,
                user: "lantern",
                role: "system",
                action: "prune_audit",
                target: "desk_audit",
                reason: Some(&reason),
            };
            store::audit(&mut tx, &entry).await?;
        }
        tx.commit().await?;
        if rows > 0 {
            tracing::info!(rows, "pruned desk records past their retention");
            self.state.changed(None).await;
        }
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
        let now = self.state.clock.now_ms();
        if now - self.last_impact_ms > IMPACT_EVERY_MS {
            let live = self.state.live.load();
            if let Err(e) = crate::metrics::refresh_impact(&self.state.db, &self.state.metrics, &live.early_action, now).await {
                tracing::warn!(error = %e, "could not work out the early-action figures; will try again");
            }
            self.last_impact_ms = now;
        }
        if self.state.clock.now_ms() - self.last_prune_ms > PRUNE_EVERY_MS {
            if let Err(e) = self.prune().await {
                tracing::warn!(error = %e, "pruning failed; will try again");
            }
            self.last_prune_ms = self.state.clock.now_ms();
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.state.clock.now()
    }
}
