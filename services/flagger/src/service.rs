//! The flagger service: call events in from MQTT, detection, storage, flags out.
//!
//! A batch runs in three steps inside one transaction: read (which events are new, which calls
//! are known: [`crate::store`]), detect ([`crate::batch::detect`], pure), write (calls, flags and
//! outbox rows). After the commit the flags go to the broker ([`crate::outbox`]).

use crate::batch::{self, Valid};
use crate::detect::{Detector, MH_CALL_MEMORY_MS};
use crate::metrics::FlaggerMetrics;
use crate::outbox::{Outbox, Outgoing};
use crate::store;
use chrono::{DateTime, Utc};
use lantern_shared::config::reload::Reload;
use lantern_shared::domain::event::{event_id_of, CallEvent, Rejection};
use lantern_shared::domain::ingest::IngestContext;
use lantern_shared::domain::Identity;
use lantern_shared::runtime::consumer::{self, BatchConsumer, CommitError, Preparer};
use lantern_shared::runtime::lock;
use lantern_shared::runtime::mqtt::{Delivery, Publisher, Received};
use lantern_shared::runtime::service::{ServiceBase, Started};
use lantern_shared::store::{erasures, processed, Db};
use lantern_shared::{Clock, Config};
use prometheus::Registry;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const SERVICE: &str = "flagger";
/// How often history past its windows is pruned, by the service's clock.
const PRUNE_EVERY_MS: i64 = 600_000;

/// A built flagger: listener bound, database migrated, history rebuilt. Call [`Flagger::run`].
pub struct Flagger {
    base: ServiceBase,
    config: Config,
    ingest: IngestContext,
    db: Db,
    clock: Clock,
    metrics: FlaggerMetrics,
    /// Shared with the `/metrics` scrape, which counts identities over each rule.
    detector: Arc<Mutex<Detector>>,
    /// The next `flagger_flag_messages.seq`: this service is the table's only writer.
    next_seq: i64,
    outbox: Outbox,
    /// When pruning last ran, by the service's clock (ms).
    last_prune_ms: i64,
    /// The latest erasure seen (`shared_erasures`): a newer one means memory must be read again.
    last_erasure: i64,
}

/// What one batch committed: flags to publish and duplicates seen.
pub struct Committed {
    outgoing: Vec<Outgoing>,
    duplicates: u64,
}

impl Flagger {
    pub async fn build(config: Config) -> anyhow::Result<Flagger> {
        Flagger::build_with_clock(config, Clock::System).await
    }

    /// A flagger that reads time from `clock` (tests move it).
    pub async fn build_with_clock(config: Config, clock: Clock) -> anyhow::Result<Flagger> {
        let ingest = IngestContext::from_config(&config)?;
        let base = ServiceBase::build(SERVICE, &config, &config.flagger.listen).await?;
        let db = base.db.clone();
        let detector = Arc::new(Mutex::new(Detector::new(&config, &ingest)));
        let metrics = FlaggerMetrics::new(&base.registry, detector.clone(), clock.clone());
        metrics.ingest.config_info.set(&lantern_shared::config::diff::fingerprint(&config));
        let mut flagger = Flagger {
            base,
            config,
            ingest,
            db,
            last_prune_ms: clock.now_ms(),
            clock,
            metrics,
            detector,
            next_seq: 1,
            outbox: Outbox::default(),
            last_erasure: 0,
        };
        flagger.rebuild().await?;
        Ok(flagger)
    }

    /// Applies live config reloads from a [`lantern_shared::config::reload::Reloader`].
    pub fn with_reloads(mut self, reloads: tokio::sync::broadcast::Receiver<Reload>) -> Flagger {
        self.base.reloads = Some(reloads);
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.base.local_addr()
    }

    pub fn registry(&self) -> &Registry {
        &self.base.registry
    }

    /// Calls held in memory for the repeat-caller windows.
    pub fn calls_held(&self) -> usize {
        lock(&self.detector).repeat.calls_held()
    }

    /// Rebuilds the in-memory history from the database, as at start-up.
    async fn rebuild(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let erasure = erasures::latest(&self.db).await?;
        let mut detector = lock(&self.detector).emptied();
        self.next_seq = store::max_seq(&self.db).await? + 1;
        if let Some(latest) = store::latest_call_ms(&self.db).await? {
            let from = latest - self.history_ms();
            let repeat = &mut detector.repeat;
            store::each_call_since(&self.db, from, |row| {
                if let Some(r) = row.phone {
                    repeat.restore_call(Identity::Phone, r, row.occurred_ms, row.attrs);
                }
                if let Some(r) = row.address {
                    repeat.restore_call(Identity::Address, r, row.occurred_ms, row.attrs);
                }
            })
            .await?;
            for f in store::repeat_flags_since(&self.db, from - self.config.repeat_callers.cooldown.millis()).await? {
                detector.repeat.restore_flag(f.identity, f.caller_ref, f.flag_uuid, f.t0_ms, f.raised_ms);
            }
            detector.repeat.finish_restore();
            for f in store::mh_flags_since(&self.db, latest - MH_CALL_MEMORY_MS).await? {
                detector.restore_mental_health(f.call_id, f.flag_uuid, f.severity, f.occurred_ms, f.raised_ms);
            }
        }
        tracing::info!(
            calls = detector.repeat.calls_held(),
            identities = detector.repeat.identities(),
            ms = started.elapsed().as_millis() as u64,
            "caller history rebuilt from the database"
        );
        *lock(&self.detector) = detector;
        self.last_erasure = erasure;
        Ok(())
    }

    /// How far back history is kept: the longest rule window and a margin for late events.
    fn history_ms(&self) -> i64 {
        self.config.longest_window().millis() + self.config.retention.history_margin.millis()
    }

    /// Runs until `shutdown` is cancelled; then finishes the batch in hand, acks it, and
    /// disconnects. Events received but not processed stay queued at the broker.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let subscriptions = vec![self.config.mqtt.calls_topic.clone()];
        let connected = self.metrics.ingest.mqtt_connected.clone();
        let dropped = self.metrics.ingest.rejected.with_label_values(&["overloaded"]);
        let Started { link, hard_stop } = self.base.start(subscriptions, &connected, Some(dropped), axum::Router::new(), &shutdown)?;
        self.outbox.publish_stored(&self.db, &link.publisher, &self.metrics).await;
        let reloads = self.base.reloads.take();
        consumer::consume(&mut self, link, hard_stop, &shutdown, reloads, Duration::from_secs(5)).await;
        self.outbox.mark(&self.db, self.clock.now_ms()).await;
        self.base.stop().await?;
        tracing::info!("flagger stopped");
        Ok(())
    }

    /// One transaction for the whole batch, with one statement per table rather than per event.
    async fn store(
        &mut self,
        batch: &[Received],
        parsed: &[Result<CallEvent, Rejection>],
        now: DateTime<Utc>,
    ) -> Result<Committed, CommitError> {
        let now_ms = now.timestamp_millis();
        let valid: Vec<Valid> = batch
            .iter()
            .zip(parsed)
            .enumerate()
            .filter_map(|(index, (r, p))| p.as_ref().ok().map(|event| Valid { index, received: r.at, event }))
            .collect();
        if valid.is_empty() {
            return Ok(Committed { outgoing: Vec::new(), duplicates: 0 });
        }
        let mut tx = self.db.begin().await?;
        store::mark_published(&mut tx, self.outbox.to_mark(), now_ms).await?;
        let ids: Vec<&str> = valid.iter().map(|v| v.event.event_id.as_str()).collect();
        let fresh = processed::record_new(&mut tx, SERVICE, &ids, now_ms).await?;
        let call_ids: Vec<&str> =
            valid.iter().filter(|v| fresh.contains(v.event.event_id.as_str())).map(|v| v.event.call_id.as_str()).collect();
        let known = store::known_calls(&mut tx, &call_ids).await?;
        let writes = {
            let mut detector = lock(&self.detector);
            let config = &self.config;
            batch::detect(&mut detector, &valid, fresh, known, now, &mut self.next_seq, |kind| config.topic(kind.topic_suffix()))?
        };
        store::insert_calls(&mut tx, &writes.calls, now_ms).await?;
        store::insert_repeat_flags(&mut tx, &writes.repeat_flags).await?;
        store::upsert_mh_flags(&mut tx, &writes.mh_flags, now_ms).await?;
        for (call_id, severity) in &writes.mh_updates {
            store::update_mh_severity(&mut tx, call_id, *severity).await?;
        }
        store::insert_messages(&mut tx, &writes.messages, now_ms).await?;
        tx.commit().await?;
        self.outbox.marked();
        Ok(Committed { outgoing: writes.outgoing, duplicates: writes.duplicates })
    }

    /// Swaps in a reloaded config between batches, so each event is handled under one version.
    fn apply_reload(&mut self, reload: Reload) {
        match reload {
            Reload::Refused { .. } => self.metrics.ingest.config_reloads.with_label_values(&["error"]).inc(),
            Reload::Applied { config, hash, .. } => {
                let old_history = self.history_ms();
                self.config = (*config).clone();
                let mut detector = lock(&self.detector);
                detector.reload(&self.config, &self.ingest);
                for r in self.config.repeat_callers.rules.iter().filter(|r| r.window.millis() > old_history) {
                    let from = detector.repeat.earliest_ms().map(crate::detect::fmt_ms).unwrap_or_else(|| "now".into());
                    tracing::warn!(rule = %r.name, window = %r.window, history_from = %from, "the window reaches further back than the history held; counts are complete once the window is covered");
                }
                self.metrics.ingest.config_reloads.with_label_values(&["ok"]).inc();
                self.metrics.ingest.config_info.set(&hash);
            }
        }
    }

    /// After an erasure (`lantern erase`), reads history again from the database, where the
    /// erased calls and flags are gone.
    async fn forget_erased(&mut self) {
        match erasures::latest(&self.db).await {
            Ok(n) if n != self.last_erasure => {
                tracing::info!("records were erased; reading caller history again");
                if let Err(e) = self.rebuild().await {
                    tracing::error!(error = %e, "could not read caller history again after an erasure; will try again");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not check for erasures"),
        }
    }

    /// Forgets from memory the calls no rule window can reach, and deletes from the database
    /// what is past its retention.
    async fn prune(&mut self) {
        let now = self.clock.now_ms();
        let dropped = lock(&self.detector).prune(now - self.history_ms(), now - MH_CALL_MEMORY_MS);
        let r = &self.config.retention;
        let before =
            store::PruneBefore { calls: now - r.calls.millis(), flags: now - r.flags.millis(), messages: now - r.flag_messages.millis() };
        let result = async {
            let rows = store::prune(&self.db, &before).await?;
            Ok::<u64, sqlx::Error>(rows + processed::prune(&self.db, SERVICE, now - r.event_ids.millis()).await?)
        }
        .await;
        match result {
            Ok(rows) => tracing::info!(calls = dropped, rows, "pruned history past the longest window and records past their retention"),
            Err(e) => tracing::warn!(error = %e, "pruning failed; will try again"),
        }
    }
}

impl BatchConsumer for Flagger {
    type Item = Result<CallEvent, Rejection>;
    type Committed = Committed;

    fn prepare(&mut self, received: &Received, now: DateTime<Utc>) -> Self::Item {
        CallEvent::parse(&received.publish.payload, &self.ingest, now)
    }

    /// Parsing, masking and pseudonymising take about a fifth of a batch's time: done as events
    /// arrive, they overlap the commit of the batch before.
    fn preparer(&self) -> Option<Preparer<Self::Item>> {
        let (ingest, clock) = (self.ingest.clone(), self.clock.clone());
        Some(Arc::new(move |received: &Received| CallEvent::parse(&received.publish.payload, &ingest, clock.now())))
    }

    fn rejected(&mut self, _received: &Received, reason: &'static str, error: String) -> Self::Item {
        Err(Rejection::new(reason, error))
    }

    async fn commit(&mut self, batch: &[Received], items: &[Self::Item], now: DateTime<Utc>) -> Result<Committed, CommitError> {
        self.store(batch, items, now).await
    }

    async fn recover(&mut self, out: &Publisher) {
        if let Err(e) = self.rebuild().await {
            tracing::error!(error = %e, "could not rebuild history from the database");
        }
        self.outbox.publish_stored(&self.db, out, &self.metrics).await;
    }

    /// Counts, publishes refusals to `<root>/rejected`, then the batch's flags.
    async fn finish(&mut self, out: &Publisher, batch: &[Received], items: &[Self::Item], committed: Committed) {
        let m = &self.metrics;
        m.ingest.duplicate.inc_by(committed.duplicates);
        for (received, result) in batch.iter().zip(items) {
            match result {
                Ok(ev) => m.ingest.received.with_label_values(&[ev.kind.as_str()]).inc(),
                Err(rejection) => {
                    m.ingest.rejected.with_label_values(&[rejection.reason]).inc();
                    let event_id = event_id_of(&received.publish.payload);
                    tracing::warn!(reason = rejection.reason, error = %rejection.error, event_id = %event_id, topic = %received.publish.topic, "event rejected");
                    out.publish(self.config.topic("rejected"), rejection.to_message(&received.publish.payload), None);
                }
            }
        }
        self.outbox.publish(out, &self.metrics, committed.outgoing);
    }

    fn reload(&mut self, reload: Reload) {
        self.apply_reload(reload);
    }

    async fn tick(&mut self, out: &Publisher) {
        self.outbox.mark(&self.db, self.clock.now_ms()).await;
        self.forget_erased().await;
        self.outbox.publish_stored(&self.db, out, &self.metrics).await;
        if self.clock.now_ms() - self.last_prune_ms > PRUNE_EVERY_MS {
            self.prune().await;
            self.last_prune_ms = self.clock.now_ms();
        }
    }

    fn delivered(&mut self, _out: &Publisher, delivery: Delivery) {
        match delivery {
            Delivery::Acked(seq) => self.outbox.acked(seq as i64),
            Delivery::Lost(seqs) => self.outbox.lost(seqs.into_iter().map(|s| s as i64)),
        }
    }

    fn awaiting_acks(&self) -> bool {
        self.outbox.awaiting_acks()
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}
