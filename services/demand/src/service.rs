//! The demand service: call events and mental-health flags in, rolling demand out.
//!
//! A batch runs in three steps inside one transaction: read (which events are new, which calls
//! the database holds but memory has let go of: [`crate::store`]), stage ([`DemandState`],
//! pure), write. Memory and counters change only once the transaction has committed, so a
//! retried batch never counts twice.

use crate::metrics::DemandMetrics;
use crate::state::{DemandState, Effect};
use crate::store;
use chrono::{DateTime, Utc};
use lantern_shared::config::reload::Reload;
use lantern_shared::domain::event::{CallEvent, Rejection};
use lantern_shared::domain::flag::{FlagKind, FlagMessage, FlagRejection};
use lantern_shared::domain::ingest::IngestContext;
use lantern_shared::runtime::consumer::{self, guard, BatchConsumer, CommitError};
use lantern_shared::runtime::lock;
use lantern_shared::runtime::mqtt::{Publisher, Received};
use lantern_shared::runtime::service::{ServiceBase, Started};
use lantern_shared::store::{processed, Db};
use lantern_shared::{Clock, Config};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const SERVICE: &str = "demand";
/// How often history past its windows is pruned, by the service's clock.
const PRUNE_EVERY_MS: i64 = 600_000;

/// A built demand service; call [`Demand::run`].
pub struct Demand {
    base: ServiceBase,
    config: Config,
    ingest: IngestContext,
    db: Db,
    clock: Clock,
    metrics: DemandMetrics,
    /// Shared with the `/metrics` scrape, which counts calls in each window.
    state: Arc<Mutex<DemandState>>,
    /// When pruning last ran, by the service's clock (ms).
    last_prune_ms: i64,
}

/// One message demand consumes: a call event, or a flag message from the flagger.
pub enum Item {
    Event(Result<CallEvent, Rejection>),
    Flag(Result<FlagMessage, FlagRejection>),
}

impl Demand {
    pub async fn build(config: Config) -> anyhow::Result<Demand> {
        Demand::build_with_clock(config, Clock::System).await
    }

    /// A demand service that reads time from `clock` (tests move it).
    pub async fn build_with_clock(config: Config, clock: Clock) -> anyhow::Result<Demand> {
        let ingest = IngestContext::from_config(&config)?;
        let base = ServiceBase::build(SERVICE, &config, &config.demand.listen).await?;
        let db = base.db.clone();
        let state = Arc::new(Mutex::new(DemandState::new(config.demand.windows.clone(), config.demand.max_divisions)));
        let metrics = DemandMetrics::new(&base.registry, state.clone(), clock.clone());
        metrics.ingest.config_info.set(&lantern_shared::config::diff::fingerprint(&config));
        let mut demand = Demand { base, config, ingest, db, last_prune_ms: clock.now_ms(), clock, metrics, state };
        demand.rebuild().await?;
        Ok(demand)
    }

    pub fn with_reloads(mut self, reloads: tokio::sync::broadcast::Receiver<Reload>) -> Demand {
        self.base.reloads = Some(reloads);
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.base.local_addr()
    }

    /// Reloads the windows' calls from the database, as at start-up.
    async fn rebuild(&mut self) -> anyhow::Result<()> {
        let mut state = DemandState::new(self.config.demand.windows.clone(), self.config.demand.max_divisions);
        let since = self.clock.now_ms() - state.keep_ms();
        for d in store::divisions(&self.db).await? {
            state.restore_division(d);
        }
        for row in store::calls_since(&self.db, since).await? {
            state.restore_call(row);
        }
        for ms in store::mental_health_since(&self.db, since).await? {
            state.restore_mental_health(ms);
        }
        state.finish_restore();
        for (channel, division) in state.labels() {
            self.metrics.calls_total.with_label_values(&[channel.as_str(), &division]);
        }
        *lock(&self.state) = state;
        Ok(())
    }

    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let subscriptions = vec![self.config.mqtt.calls_topic.clone(), self.config.topic(FlagKind::MentalHealth.topic_suffix())];
        let connected = self.metrics.ingest.mqtt_connected.clone();
        let dropped = self.metrics.ingest.rejected.with_label_values(&["overloaded"]);
        let Started { link, hard_stop } = self.base.start(subscriptions, &connected, Some(dropped), axum::Router::new(), &shutdown)?;
        let reloads = self.base.reloads.take();
        consumer::consume(&mut self, link, hard_stop, &shutdown, reloads, Duration::from_secs(5)).await;
        self.base.stop().await?;
        Ok(())
    }

    fn apply_reload(&mut self, reload: Reload) {
        match reload {
            Reload::Refused { .. } => self.metrics.ingest.config_reloads.with_label_values(&["error"]).inc(),
            Reload::Applied { config, hash, .. } => {
                self.config = (*config).clone();
                lock(&self.state).set_windows(self.config.demand.windows.clone(), self.config.demand.max_divisions);
                self.metrics.ingest.config_reloads.with_label_values(&["ok"]).inc();
                self.metrics.ingest.config_info.set(&hash);
            }
        }
    }

    /// One transaction for the batch; memory changes once it has committed.
    async fn store(&mut self, items: &[Item], now: DateTime<Utc>) -> Result<(Vec<Effect>, u64), CommitError> {
        let now_ms = now.timestamp_millis();
        let mut effects = Vec::new();
        // (index in the batch, event)
        let mut events = Vec::new();
        let mut mh = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item {
                Item::Event(Ok(ev)) => {
                    effects.push(Effect::Received(ev.kind.as_str()));
                    events.push((i, ev));
                }
                Item::Event(Err(rej)) => effects.push(Effect::Rejected(rej.reason)),
                Item::Flag(Ok(flag)) if flag.kind == FlagKind::MentalHealth => mh.push((flag.call_id.clone(), flag.occurred_ms())),
                Item::Flag(_) => {}
            }
        }
        let mut tx = self.db.begin().await?;
        let ids: Vec<&str> = events.iter().map(|(_, ev)| ev.event_id.as_str()).collect();
        let mut fresh = processed::record_new(&mut tx, SERVICE, &ids, now_ms).await?;
        // Calls the database knows but memory has let go of (late events for old calls).
        let unknown: Vec<&str> = {
            let state = lock(&self.state);
            events
                .iter()
                .filter(|(_, e)| fresh.contains(e.event_id.as_str()) && !state.known(&e.call_id))
                .map(|(_, e)| e.call_id.as_str())
                .collect()
        };
        let stored = store::calls_by_id(&mut tx, &unknown).await?;
        let mut duplicates = 0;
        let mut staged_effects = Vec::new();
        let mut scratch = {
            let mut state = lock(&self.state);
            for row in stored {
                state.preload(row);
            }
            let mut scratch = state.begin();
            for (index, ev) in &events {
                if !fresh.remove(ev.event_id.as_str()) {
                    duplicates += 1;
                    continue;
                }
                guard(|| state.stage(&mut scratch, ev, &mut staged_effects))
                    .map_err(|error| CommitError::Poisoned { index: *index, error })?;
            }
            scratch
        };
        let (calls, divisions) = scratch.dirty();
        store::insert_divisions(&mut tx, &divisions, now_ms).await?;
        store::upsert_calls(&mut tx, &calls).await?;
        for ms in store::insert_mental_health(&mut tx, &mh).await? {
            scratch.mental_health(ms);
        }
        tx.commit().await?;
        lock(&self.state).apply(scratch);
        effects.extend(staged_effects);
        Ok((effects, duplicates))
    }

    async fn prune(&mut self) {
        let now = self.clock.now_ms();
        {
            let mut state = lock(&self.state);
            let before = now - state.keep_ms();
            state.prune(before);
        }
        let r = &self.config.retention;
        let result = async {
            store::prune(&self.db, now - r.demand_calls.millis()).await?;
            processed::prune(&self.db, SERVICE, now - r.event_ids.millis()).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "pruning failed; will try again");
        }
    }

    fn is_flag_topic(&self, received: &Received) -> bool {
        received.publish.topic == self.config.topic(FlagKind::MentalHealth.topic_suffix())
    }
}

impl BatchConsumer for Demand {
    type Item = Item;
    type Committed = (Vec<Effect>, u64);

    fn prepare(&mut self, received: &Received, now: DateTime<Utc>) -> Item {
        if self.is_flag_topic(received) {
            Item::Flag(FlagMessage::parse(&received.publish.payload))
        } else {
            Item::Event(CallEvent::parse(&received.publish.payload, &self.ingest, now))
        }
    }

    fn rejected(&mut self, received: &Received, reason: &'static str, error: String) -> Item {
        if self.is_flag_topic(received) {
            Item::Flag(Err(FlagRejection::new(reason, error)))
        } else {
            Item::Event(Err(Rejection::new(reason, error)))
        }
    }

    async fn commit(&mut self, _batch: &[Received], items: &[Item], now: DateTime<Utc>) -> Result<Self::Committed, CommitError> {
        self.store(items, now).await
    }

    async fn recover(&mut self, _out: &Publisher) {
        if let Err(e) = self.rebuild().await {
            tracing::error!(error = %e, "could not reload demand state");
        }
    }

    /// Counters move only once the batch is committed: a retry never counts twice.
    async fn finish(&mut self, _out: &Publisher, batch: &[Received], items: &[Item], (effects, duplicates): Self::Committed) {
        let m = &self.metrics;
        m.ingest.duplicate.inc_by(duplicates);
        for (received, item) in batch.iter().zip(items) {
            if let Item::Flag(Err(rejection)) = item {
                m.flags_rejected.with_label_values(&[rejection.reason]).inc();
                tracing::warn!(reason = rejection.reason, error = %rejection.error, topic = %received.publish.topic, "flag message refused");
            }
        }
        for e in effects {
            m.apply(e);
        }
    }

    fn reload(&mut self, reload: Reload) {
        self.apply_reload(reload);
    }

    async fn tick(&mut self, _out: &Publisher) {
        if self.clock.now_ms() - self.last_prune_ms > PRUNE_EVERY_MS {
            self.prune().await;
            self.last_prune_ms = self.clock.now_ms();
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}
