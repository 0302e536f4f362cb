//! `lantern-demand`: rolling demand metrics for duty inspectors (SPEC section 7).
//!
//! Consumes call events and mental-health flags; counts distinct calls by channel and
//! division, calls in trailing windows by event time (late events land in their window), time
//! to answer, abandonment and mental-health calls per window. What the windows need is kept in
//! the database, so a restart resumes them.

mod state;

pub use state::{CallRow, DemandState, Effect, Windows};

use chrono::Utc;
use lantern_shared::config::reload::Reload;
use lantern_shared::config::Channel;
use lantern_shared::consumer::{self, guard, BatchConsumer, CommitError};
use lantern_shared::event::{CallEvent, IngestContext, Rejection};
use lantern_shared::flag::{FlagKind, FlagMessage, FlagRejection};
use lantern_shared::mqtt::{Publisher, Received};
use lantern_shared::service::{ServiceBase, Started};
use lantern_shared::store::Db;
use lantern_shared::telemetry::{self, IngestMetrics};
use lantern_shared::{with_db, Clock, Config};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const SERVICE: &str = "demand";
const CHUNK: usize = 256;
/// How often history past its windows is pruned, by the service's clock.
const PRUNE_EVERY_MS: i64 = 600_000;

/// Buckets for time to answer: the 999 target is 10 s, 101's commonly 40 s.
pub const ANSWER_BUCKETS: [f64; 13] = [1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0, 90.0, 120.0, 300.0, 600.0];

#[derive(Clone)]
pub struct DemandMetrics {
    pub ingest: IngestMetrics,
    pub calls_total: IntCounterVec,
    pub calls_window: IntGaugeVec,
    pub mh_window: IntGaugeVec,
    pub answer_seconds: HistogramVec,
    pub abandoned: IntCounterVec,
    pub flags_rejected: IntCounterVec,
}

impl DemandMetrics {
    fn new(registry: &Registry) -> DemandMetrics {
        let ingest = IngestMetrics::new(registry);
        let calls_total =
            telemetry::counter_vec(registry, "lantern_calls_total", "Distinct calls, by channel and division.", &["channel", "division"]);
        let calls_window = telemetry::register(
            registry,
            IntGaugeVec::new(
                Opts::new("lantern_calls_window", "Distinct calls with event time in the trailing window."),
                &["window", "channel", "division"],
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        let mh_window = telemetry::register(
            registry,
            IntGaugeVec::new(
                Opts::new("lantern_mental_health_calls_window", "Calls with a mental-health flag, event time in the trailing window."),
                &["window"],
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        let answer_seconds = telemetry::register(
            registry,
            HistogramVec::new(
                HistogramOpts::new("lantern_answer_seconds", "Time from offered to answered, by channel.").buckets(ANSWER_BUCKETS.to_vec()),
                &["channel"],
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        let abandoned =
            telemetry::counter_vec(registry, "lantern_calls_abandoned_total", "Calls abandoned before answer, by channel.", &["channel"]);
        for ch in Channel::ALL {
            answer_seconds.with_label_values(&[ch.as_str()]);
            abandoned.with_label_values(&[ch.as_str()]);
        }
        let flags_rejected = telemetry::flag_messages_rejected(registry);
        DemandMetrics { ingest, calls_total, calls_window, mh_window, answer_seconds, abandoned, flags_rejected }
    }
}

/// A built demand service; call [`Demand::run`].
pub struct Demand {
    base: ServiceBase,
    config: Config,
    ingest: IngestContext,
    db: Db,
    clock: Clock,
    metrics: DemandMetrics,
    state: DemandState,
    /// When pruning last ran, by the service's clock (ms).
    last_prune_ms: i64,
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
        let metrics = DemandMetrics::new(&base.registry);
        metrics.ingest.config_info.set(&lantern_shared::config::diff::fingerprint(&config));
        let state = DemandState::new(config.demand.windows.clone(), config.demand.max_divisions);
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
        self.state = DemandState::new(self.config.demand.windows.clone(), self.config.demand.max_divisions);
        let since = self.clock.now_ms() - self.state.keep_ms();
        let db = &self.db;
        let divisions: Vec<String> =
            with_db!(db, |pool| sqlx::query_scalar("SELECT division FROM demand_divisions ORDER BY first_ms, division")
                .fetch_all(pool)
                .await)?;
        for d in divisions {
            self.state.restore_division(d);
        }
        type Row = (String, i64, String, String, Option<i64>, Option<i64>, i16);
        let q = "SELECT call_id, first_ms, channel, division, offered_ms, answered_ms, abandoned FROM demand_calls WHERE first_ms >= $1";
        let rows: Vec<Row> = with_db!(db, |pool| sqlx::query_as(q).bind(since).fetch_all(pool).await)?;
        for (call_id, first_ms, channel, division, offered, answered, abandoned) in rows {
            self.state.restore_call(
                call_id,
                first_ms,
                Channel::parse(&channel).unwrap_or(Channel::Other),
                division,
                offered,
                answered,
                abandoned != 0,
            );
        }
        let mh: Vec<i64> = with_db!(db, |pool| sqlx::query_scalar("SELECT occurred_ms FROM demand_mh WHERE occurred_ms >= $1")
            .bind(since)
            .fetch_all(pool)
            .await)?;
        for ms in mh {
            self.state.restore_mental_health(ms);
        }
        self.state.finish_restore();
        for (channel, division) in self.state.labels() {
            self.metrics.calls_total.with_label_values(&[channel.as_str(), &division]);
        }
        self.update_gauges();
        Ok(())
    }

    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let subscriptions = vec![self.config.mqtt.calls_topic.clone(), self.config.topic("flags/mental-health")];
        let connected = self.metrics.ingest.mqtt_connected.clone();
        let dropped = self.metrics.ingest.rejected.with_label_values(&["overloaded"]);
        let Started { link, hard_stop, server } =
            self.base.start(subscriptions, &connected, Some(dropped), axum::Router::new(), &shutdown)?;
        let reloads = self.base.reloads.take();
        consumer::consume(&mut self, link, hard_stop, &shutdown, reloads, Duration::from_secs(5)).await;
        self.base.stop(server).await;
        Ok(())
    }

    fn apply_reload(&mut self, reload: Reload) {
        match reload {
            Reload::Refused { .. } => self.metrics.ingest.config_reloads.with_label_values(&["error"]).inc(),
            Reload::Applied { config, hash, .. } => {
                self.config = (*config).clone();
                self.state.set_windows(self.config.demand.windows.clone(), self.config.demand.max_divisions);
                self.metrics.calls_window.reset();
                self.metrics.mh_window.reset();
                self.metrics.ingest.config_reloads.with_label_values(&["ok"]).inc();
                self.metrics.ingest.config_info.set(&hash);
                self.update_gauges();
            }
        }
    }

    fn update_gauges(&self) {
        let now = self.clock.now_ms();
        for (window, channel, division, n) in self.state.window_counts(now) {
            self.metrics.calls_window.with_label_values(&[&window, channel.as_str(), &division]).set(n as i64);
        }
        for (window, n) in self.state.mental_health_counts(now) {
            self.metrics.mh_window.with_label_values(&[&window]).set(n as i64);
        }
    }

    async fn store(&mut self, items: &[Item], now: chrono::DateTime<Utc>) -> Result<(Vec<Effect>, u64), CommitError> {
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
        let mut duplicates = 0;
        let state = &mut self.state;
        let mut scratch = state.begin();
        let mut staged_effects = Vec::new();
        macro_rules! body {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await?;
                let mut fresh: HashSet<String> = HashSet::new();
                for chunk in events.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::new("INSERT INTO processed_events (service, event_id, received_ms) ");
                    q.push_values(chunk, |mut b, (_, ev)| {
                        b.push_bind(SERVICE).push_bind(ev.event_id.as_str()).push_bind(now_ms);
                    });
                    q.push(" ON CONFLICT DO NOTHING RETURNING event_id");
                    fresh.extend(q.build_query_scalar::<String>().fetch_all(&mut *tx).await?);
                }
                // Calls the database knows but memory has let go of (late events for old calls).
                let unknown: Vec<&str> = events.iter().filter(|(_, e)| fresh.contains(&e.event_id) && !state.known(&e.call_id)).map(|(_, e)| e.call_id.as_str()).collect();
                for chunk in unknown.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::new("SELECT call_id, first_ms, channel, division, offered_ms, answered_ms, abandoned FROM demand_calls WHERE call_id IN (");
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    q.push(")");
                    let rows: Vec<(String, i64, String, String, Option<i64>, Option<i64>, i16)> = q.build_query_as().fetch_all(&mut *tx).await?;
                    for (call_id, first_ms, channel, division, offered_ms, answered_ms, abandoned) in rows {
                        let channel = Channel::parse(&channel).unwrap_or(Channel::Other);
                        state.preload(CallRow { call_id, first_ms, channel, division, offered_ms, answered_ms, abandoned: abandoned != 0 });
                    }
                }
                for (index, ev) in &events {
                    if !fresh.remove(&ev.event_id) {
                        duplicates += 1;
                        continue;
                    }
                    guard(|| state.stage(&mut scratch, ev, &mut staged_effects)).map_err(|error| CommitError::Poisoned { index: *index, error })?;
                }
                let (calls, divisions) = scratch.dirty();
                for chunk in divisions.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::new("INSERT INTO demand_divisions (division, first_ms) ");
                    q.push_values(chunk, |mut b, d| {
                        b.push_bind(d.as_str()).push_bind(now_ms);
                    });
                    q.push(" ON CONFLICT DO NOTHING");
                    q.build().execute(&mut *tx).await?;
                }
                for chunk in calls.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::new("INSERT INTO demand_calls (call_id, first_ms, channel, division, offered_ms, answered_ms, abandoned) ");
                    q.push_values(chunk, |mut b, c| {
                        b.push_bind(c.call_id.as_str())
                            .push_bind(c.first_ms)
                            .push_bind(c.channel.as_str())
                            .push_bind(c.division.as_str())
                            .push_bind(c.offered_ms)
                            .push_bind(c.answered_ms)
                            .push_bind(i16::from(c.abandoned));
                    });
                    q.push(
                        " ON CONFLICT (call_id) DO UPDATE SET offered_ms = excluded.offered_ms, answered_ms = excluded.answered_ms, abandoned = excluded.abandoned",
                    );
                    q.build().execute(&mut *tx).await?;
                }
                for chunk in mh.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::new("INSERT INTO demand_mh (call_id, occurred_ms) ");
                    q.push_values(chunk, |mut b, (call_id, ms)| {
                        b.push_bind(call_id.as_str()).push_bind(*ms);
                    });
                    q.push(" ON CONFLICT DO NOTHING RETURNING occurred_ms");
                    for ms in q.build_query_scalar::<i64>().fetch_all(&mut *tx).await? {
                        scratch.mental_health(ms);
                    }
                }
                tx.commit().await?;
            }};
        }
        match &self.db {
            Db::Sqlite(pool) => body!(pool),
            Db::Postgres(pool) => body!(pool),
        }
        state.apply(scratch);
        effects.extend(staged_effects);
        Ok((effects, duplicates))
    }

    async fn prune(&mut self) {
        let now = self.clock.now_ms();
        let before = now - self.state.keep_ms();
        self.state.prune(before);
        let events_before = now - self.config.retention.event_ids.millis();
        let db = &self.db;
        let result: Result<(), sqlx::Error> = with_db!(db, |pool| async {
            sqlx::query("DELETE FROM demand_calls WHERE first_ms < $1").bind(before).execute(pool).await?;
            sqlx::query("DELETE FROM demand_mh WHERE occurred_ms < $1").bind(before).execute(pool).await?;
            sqlx::query("DELETE FROM processed_events WHERE service = $1 AND received_ms < $2")
                .bind(SERVICE)
                .bind(events_before)
                .execute(pool)
                .await?;
            Ok(())
        }
        .await);
        if let Err(e) = result {
            tracing::warn!(error = %e, "pruning failed; will try again");
        }
    }
}

/// One message demand consumes: a call event, or a flag message from the flagger.
pub enum Item {
    Event(Result<CallEvent, Rejection>),
    Flag(Result<FlagMessage, FlagRejection>),
}

impl BatchConsumer for Demand {
    type Item = Item;
    type Committed = (Vec<Effect>, u64);

    fn prepare(&mut self, received: &Received, now: chrono::DateTime<Utc>) -> Item {
        if received.publish.topic == self.config.topic(FlagKind::MentalHealth.topic_suffix()) {
            Item::Flag(FlagMessage::parse(&received.publish.payload))
        } else {
            Item::Event(CallEvent::parse(&received.publish.payload, &self.ingest, now))
        }
    }

    fn rejected(&mut self, received: &Received, reason: &'static str, error: String) -> Item {
        if received.publish.topic == self.config.topic(FlagKind::MentalHealth.topic_suffix()) {
            Item::Flag(Err(FlagRejection::new(reason, error)))
        } else {
            Item::Event(Err(Rejection::new(reason, error)))
        }
    }

    async fn commit(&mut self, _batch: &[Received], items: &[Item], now: chrono::DateTime<Utc>) -> Result<Self::Committed, CommitError> {
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
            match e {
                Effect::Received(kind) => m.ingest.received.with_label_values(&[kind]).inc(),
                Effect::Rejected(reason) => m.ingest.rejected.with_label_values(&[reason]).inc(),
                Effect::NewCall { channel, division } => m.calls_total.with_label_values(&[channel.as_str(), &division]).inc(),
                Effect::Answered { channel, seconds } => m.answer_seconds.with_label_values(&[channel.as_str()]).observe(seconds),
                Effect::Abandoned { channel } => m.abandoned.with_label_values(&[channel.as_str()]).inc(),
            }
        }
    }

    fn reload(&mut self, reload: Reload) {
        self.apply_reload(reload);
    }

    async fn tick(&mut self, _out: &Publisher) {
        self.update_gauges();
        if self.clock.now_ms() - self.last_prune_ms > PRUNE_EVERY_MS {
            self.prune().await;
            self.last_prune_ms = self.clock.now_ms();
        }
    }

    fn now(&self) -> chrono::DateTime<Utc> {
        self.clock.now()
    }
}
