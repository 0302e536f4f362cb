//! The flagger service: MQTT in, detection, storage, flags out.

use crate::detect::repeat::CallAttrs;
use crate::detect::{Detector, FlagKind};
use chrono::Utc;
use futures::TryStreamExt;
use lantern_shared::config::reload::Reload;
use lantern_shared::config::{AgeBand, Channel, Identity, Severity};
use lantern_shared::consumer::{self, guard, BatchConsumer, CommitError};
use lantern_shared::event::{CallEvent, IngestContext, Rejection};
use lantern_shared::mqtt::{Delivery, Publisher, Received};
use lantern_shared::pseudonym::CallerRef;
use lantern_shared::service::{ServiceBase, Started};
use lantern_shared::store::Db;
use lantern_shared::telemetry::{self, IngestMetrics};
use lantern_shared::{with_db, Clock, Config};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const SERVICE: &str = "flagger";
/// Rows per multi-row statement (well under SQLite's and PostgreSQL's parameter limits).
const CHUNK: usize = 256;
/// How often history past its windows is pruned, by the service's clock.
const PRUNE_EVERY_MS: i64 = 600_000;
const MARK_PUBLISHED: &str = "UPDATE flag_messages SET published_ms = $1 WHERE seq >= $2 AND seq <= $3 AND published_ms IS NULL";

/// Flagger metrics (SPEC section 7).
#[derive(Clone)]
pub struct FlaggerMetrics {
    pub ingest: IngestMetrics,
    pub flags_raised: IntCounterVec,
    pub flag_latency: HistogramVec,
    pub repeat_callers: IntGaugeVec,
}

impl FlaggerMetrics {
    fn new(registry: &Registry, config: &Config) -> FlaggerMetrics {
        let ingest = IngestMetrics::new(registry);
        let flags_raised =
            telemetry::counter_vec(registry, "lantern_flags_raised_total", "Flags raised, by kind and severity.", &["kind", "severity"]);
        for kind in FlagKind::ALL {
            for sev in [Severity::Low, Severity::Medium, Severity::High] {
                flags_raised.with_label_values(&[kind.as_str(), sev.as_str()]);
            }
        }
        let buckets = vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
        let flag_latency = telemetry::register(
            registry,
            HistogramVec::new(
                HistogramOpts::new("lantern_flag_latency_seconds", "From event received to flag published, by kind.").buckets(buckets),
                &["kind"],
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        for kind in FlagKind::ALL {
            flag_latency.with_label_values(&[kind.as_str()]);
        }
        let repeat_callers = telemetry::register(
            registry,
            IntGaugeVec::new(Opts::new("lantern_repeat_callers", "Identities whose count is at or over the rule now."), &["rule"])
                .unwrap_or_else(|e| panic!("{e}")),
        );
        for r in &config.repeat_callers.rules {
            repeat_callers.with_label_values(&[&r.name]);
        }
        FlaggerMetrics { ingest, flags_raised, flag_latency, repeat_callers }
    }
}

/// A built flagger: listener bound, database migrated, history rebuilt. Call [`Flagger::run`].
pub struct Flagger {
    base: ServiceBase,
    config: Config,
    ingest: IngestContext,
    db: Db,
    clock: Clock,
    metrics: FlaggerMetrics,
    detector: Detector,
    /// The next `flag_messages.seq`: this service is the table's only writer.
    next_seq: i64,
    outbox: Outbox,
    /// When pruning last ran, by the service's clock (ms).
    last_prune_ms: i64,
}

/// Flag messages between the database and the broker. A message is marked published only once
/// the broker has acknowledged it (PUBACK); marking rides in the next batch's transaction (or a
/// tick, or shutdown) rather than a write of its own. A crash in between publishes it again.
#[derive(Debug, Default)]
struct Outbox {
    /// Handed to the link, not yet acknowledged.
    in_flight: BTreeSet<i64>,
    /// Acknowledged by the broker, not yet marked in `flag_messages`: ranges of seq.
    acked: Vec<(i64, i64)>,
}

impl Outbox {
    fn acked(&mut self, seq: i64) {
        if !self.in_flight.remove(&seq) {
            return;
        }
        match self.acked.iter_mut().find(|(a, b)| *a - 1 == seq || *b + 1 == seq) {
            Some(r) => {
                r.0 = r.0.min(seq);
                r.1 = r.1.max(seq);
            }
            None => self.acked.push((seq, seq)),
        }
    }

    fn pending(&self, seq: i64) -> bool {
        self.in_flight.contains(&seq) || self.acked.iter().any(|(a, b)| (*a..=*b).contains(&seq))
    }
}

/// One stored flag message waiting to be published.
pub struct Outgoing {
    seq: i64,
    topic: String,
    payload: String,
    kind: FlagKind,
    raised: bool,
    severity: &'static str,
    received: Option<Instant>,
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
        let metrics = FlaggerMetrics::new(&base.registry, &config);
        let detector = Detector::new(&config, &ingest);
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

    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// Rebuilds the in-memory history from the database, as at start-up.
    async fn rebuild(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        self.detector = Detector::new(&self.config, &self.ingest);
        let db = &self.db;
        let max_seq: Option<i64> = with_db!(db, |pool| sqlx::query_scalar("SELECT MAX(seq) FROM flag_messages").fetch_one(pool).await)?;
        self.next_seq = max_seq.unwrap_or(0) + 1;
        let latest: Option<i64> =
            with_db!(db, |pool| sqlx::query_scalar("SELECT MAX(occurred_ms) FROM flagger_calls").fetch_one(pool).await)?;
        let Some(latest) = latest else { return Ok(()) };
        let from = latest - self.config.longest_window().millis() - self.config.retention.history_margin.millis();
        let q = "SELECT phone_ref, address_ref, occurred_ms, channel, communal, age_band FROM flagger_calls WHERE occurred_ms >= $1";
        type Row = (Option<String>, Option<String>, i64, String, Option<i16>, Option<String>);
        // Streamed row by row: holding every row at once would double the memory at start-up.
        let repeat = &mut self.detector.repeat;
        let mut restore = |(phone, address, ms, channel, communal, age): Row| {
            let attrs = CallAttrs::new(
                Channel::parse(&channel).unwrap_or(Channel::Other),
                communal.map(|c| c != 0),
                age.as_deref().and_then(AgeBand::parse),
            );
            if let Some(r) = phone.as_deref().and_then(CallerRef::parse) {
                repeat.restore_call(Identity::Phone, r, ms, attrs);
            }
            if let Some(r) = address.as_deref().and_then(CallerRef::parse) {
                repeat.restore_call(Identity::Address, r, ms, attrs);
            }
        };
        with_db!(db, |pool| {
            let mut rows = sqlx::query_as::<_, Row>(q).bind(from).fetch(pool);
            while let Some(row) = rows.try_next().await? {
                restore(row);
            }
            Ok::<(), sqlx::Error>(())
        })?;
        let q = "SELECT identity, caller_ref, flag_id, t0_ms, raised_ms FROM repeat_flags WHERE t0_ms >= $1";
        let from_flags = from - self.config.repeat_callers.cooldown.millis();
        let rows: Vec<(String, String, String, i64, i64)> = with_db!(db, |pool| sqlx::query_as(q).bind(from_flags).fetch_all(pool).await)?;
        for (identity, r, flag_id, t0, raised) in rows {
            let identity = if identity == "address" { Identity::Address } else { Identity::Phone };
            if let (Some(r), Ok(id)) = (CallerRef::parse(&r), uuid::Uuid::parse_str(&flag_id)) {
                self.detector.repeat.restore_flag(identity, r, id.as_u128(), t0, raised);
            }
        }
        self.detector.repeat.finish_restore();
        let q = "SELECT call_id, flag_id, severity, occurred_ms, raised_ms FROM mh_flags WHERE occurred_ms >= $1";
        let rows: Vec<(String, String, String, i64, i64)> =
            with_db!(db, |pool| sqlx::query_as(q).bind(latest - crate::detect::MH_CALL_MEMORY_MS).fetch_all(pool).await)?;
        for (call_id, flag_id, severity, occurred, raised) in rows {
            if let (Ok(id), Some(sev)) = (uuid::Uuid::parse_str(&flag_id), Severity::parse(&severity)) {
                self.detector.restore_mental_health(call_id, id.as_u128(), sev, occurred, raised);
            }
        }
        tracing::info!(
            calls = self.detector.repeat.calls_held(),
            identities = self.detector.repeat.identities(),
            ms = started.elapsed().as_millis() as u64,
            "caller history rebuilt from the database"
        );
        Ok(())
    }

    /// Runs until `shutdown` is cancelled; then finishes the batch in hand, acks it, and
    /// disconnects. Events received but not processed stay queued at the broker.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let subscriptions = vec![self.config.mqtt.calls_topic.clone()];
        let connected = self.metrics.ingest.mqtt_connected.clone();
        let dropped = self.metrics.ingest.rejected.with_label_values(&["overloaded"]);
        let Started { link, hard_stop, server } =
            self.base.start(subscriptions, &connected, Some(dropped), axum::Router::new(), &shutdown)?;
        self.publish_outbox(&link.publisher).await;
        let reloads = self.base.reloads.take();
        consumer::consume(&mut self, link, hard_stop, &shutdown, reloads, Duration::from_secs(5)).await;
        self.mark_published().await;
        self.base.stop(server).await;
        tracing::info!("flagger stopped");
        Ok(())
    }

    /// One transaction for the whole batch, with one statement per table rather than per
    /// event. Detection runs inside, so a flag exists in the database exactly when the event
    /// that raised it does.
    async fn store(
        &mut self,
        batch: &[Received],
        parsed: &[Result<CallEvent, Rejection>],
        now: chrono::DateTime<Utc>,
    ) -> Result<Committed, CommitError> {
        let now_ms = now.timestamp_millis();
        // (index in the batch, received, event)
        let valid: Vec<(usize, &Received, &CallEvent)> =
            batch.iter().zip(parsed).enumerate().filter_map(|(i, (r, p))| p.as_ref().ok().map(|e| (i, r, e))).collect();
        if valid.is_empty() {
            return Ok(Committed { outgoing: Vec::new(), duplicates: 0 });
        }
        let mut outgoing = Vec::new();
        let mut duplicates = 0u64;
        let detector = &mut self.detector;
        let next_seq = &mut self.next_seq;
        let topic_root = &self.config;
        let unmarked = &self.outbox.acked;
        macro_rules! body {
            ($begin:expr, $returning:expr) => {{
                let mut tx = $begin.await?;
                for (first, last) in unmarked {
                    sqlx::query(MARK_PUBLISHED).bind(now_ms).bind(*first).bind(*last).execute(&mut *tx).await?;
                }
                // Which event ids are new. On SQLite, ask for the ones already stored (usually
                // none) and insert the rest: sqlx-sqlite hands every row a RETURNING clause gives
                // back across threads on its own. On PostgreSQL, INSERT ... RETURNING is cheap,
                // and the lookup is not: on a young table the planner scans it for each list.
                let mut fresh: HashSet<&str> = HashSet::new();
                if $returning {
                    let mut inserted: HashSet<String> = HashSet::new();
                    for chunk in valid.chunks(CHUNK) {
                        let mut q = sqlx::QueryBuilder::new("INSERT INTO processed_events (service, event_id, received_ms) ");
                        q.push_values(chunk, |mut b, (_, _, ev)| {
                            b.push_bind(SERVICE).push_bind(ev.event_id.as_str()).push_bind(now_ms);
                        });
                        q.push(" ON CONFLICT DO NOTHING RETURNING event_id");
                        inserted.extend(q.build_query_scalar::<String>().fetch_all(&mut *tx).await?);
                    }
                    fresh.extend(valid.iter().map(|(_, _, ev)| ev.event_id.as_str()).filter(|id| inserted.contains(*id)));
                } else {
                    let mut stored: HashSet<String> = HashSet::new();
                    for chunk in valid.chunks(CHUNK) {
                        let mut q = sqlx::QueryBuilder::new("SELECT event_id FROM processed_events WHERE service = ");
                        q.push_bind(SERVICE).push(" AND event_id IN (");
                        let mut list = q.separated(", ");
                        for (_, _, ev) in chunk {
                            list.push_bind(ev.event_id.as_str());
                        }
                        q.push(")");
                        stored.extend(q.build_query_scalar::<String>().fetch_all(&mut *tx).await?);
                    }
                    // A set, so an id repeated within the batch counts once.
                    fresh.extend(valid.iter().map(|(_, _, ev)| ev.event_id.as_str()).filter(|id| !stored.contains(*id)));
                    let new_ids: Vec<&str> = fresh.iter().copied().collect();
                    for chunk in new_ids.chunks(CHUNK) {
                        let mut q = sqlx::QueryBuilder::new("INSERT INTO processed_events (service, event_id, received_ms) ");
                        q.push_values(chunk, |mut b, id| {
                            b.push_bind(SERVICE).push_bind(*id).push_bind(now_ms);
                        });
                        // No conflict is possible: the write lock was taken before the lookup.
                        q.build().execute(&mut *tx).await?;
                    }
                }
                // Which calls the database has seen already, with their mental-health flag when
                // memory no longer holds it (an old call, or after a restart): an update to such a
                // call updates that flag rather than raising a second one.
                let mut known: HashSet<String> = HashSet::new();
                let call_ids: Vec<&str> = valid.iter().filter(|(_, _, ev)| fresh.contains(ev.event_id.as_str())).map(|(_, _, ev)| ev.call_id.as_str()).collect();
                for chunk in call_ids.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::new(
                        "SELECT c.call_id, m.flag_id, m.severity, m.occurred_ms, m.raised_ms FROM flagger_calls c LEFT JOIN mh_flags m ON m.call_id = c.call_id WHERE c.call_id IN (",
                    );
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    q.push(")");
                    let rows: Vec<(String, Option<String>, Option<String>, Option<i64>, Option<i64>)> = q.build_query_as().fetch_all(&mut *tx).await?;
                    for (call_id, flag_id, severity, occurred, raised) in rows {
                        if let (Some(id), Some(sev), Some(occurred), Some(raised)) = (flag_id.as_deref().and_then(|f| uuid::Uuid::parse_str(f).ok()), severity.as_deref().and_then(Severity::parse), occurred, raised) {
                            if !detector.knows_mental_health(&call_id) {
                                detector.restore_mental_health(call_id.clone(), id.as_u128(), sev, occurred, raised);
                            }
                        }
                        known.insert(call_id);
                    }
                }
                // Detection, in the order received. A failure here rejects that event alone.
                let mut new_calls: Vec<(&CallEvent, Option<String>, Option<String>)> = Vec::new();
                let mut flags = Vec::new();
                for (index, received, ev) in &valid {
                    if !fresh.remove(ev.event_id.as_str()) {
                        duplicates += 1;
                        continue;
                    }
                    let new_call = known.insert(ev.call_id.clone());
                    let detection = guard(|| detector.on_event(ev, new_call, now, &mut crate::detect::new_flag_id))
                        .map_err(|error| CommitError::Poisoned { index: *index, error })?;
                    if new_call {
                        let c = &detection.counted;
                        new_calls.push((ev, c.counted_phone.map(|r| r.to_string()), c.counted_address.map(|r| r.to_string())));
                    }
                    for flag in detection.flags {
                        flags.push((*received, *ev, flag));
                    }
                }
                for chunk in new_calls.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::new(
                        "INSERT INTO flagger_calls (call_id, event_id, occurred_ms, channel, division, phone_ref, address_ref, communal, age_band, received_ms) ",
                    );
                    q.push_values(chunk, |mut b, (ev, phone, address)| {
                        b.push_bind(ev.call_id.as_str())
                            .push_bind(ev.event_id.as_str())
                            .push_bind(ev.occurred_ms())
                            .push_bind(ev.channel.as_str())
                            .push_bind(ev.division.as_deref())
                            .push_bind(phone.as_deref())
                            .push_bind(address.as_deref())
                            .push_bind(ev.caller.communal_address.map(i16::from))
                            .push_bind(ev.caller.age_band.map(|a| a.as_str()))
                            .push_bind(now_ms);
                    });
                    q.build().execute(&mut *tx).await?;
                }
                // Flags: one statement per table for the batch; messages numbered here, in order.
                let mut raised_repeat = Vec::new();
                let mut raised_mh: Vec<(String, String, &str, i64)> = Vec::new();
                let mut mh_updates = Vec::new();
                let mut messages = Vec::new();
                for (received, ev, flag) in flags {
                    let m = &flag.message;
                    let severity = m.severity.as_str();
                    match (m.kind, flag.meta.raised) {
                        (FlagKind::RepeatCaller, true) => raised_repeat.push((m.flag_id.clone(), flag.meta, m.caller_ref.clone().unwrap_or_default())),
                        (FlagKind::MentalHealth, true) => raised_mh.push((ev.call_id.clone(), m.flag_id.clone(), severity, ev.occurred_ms())),
                        (FlagKind::MentalHealth, false) => match raised_mh.iter_mut().find(|r| r.0 == ev.call_id) {
                            // Raised earlier in this same batch: store the final severity.
                            Some(r) => r.2 = severity,
                            None => mh_updates.push((ev.call_id.clone(), severity)),
                        },
                        (FlagKind::RepeatCaller, false) => {}
                    }
                    let payload = flag.to_json();
                    let seq = *next_seq;
                    *next_seq += 1;
                    let topic = topic_root.topic(m.kind.topic_suffix());
                    messages.push((seq, m.flag_id.clone(), topic.clone(), payload.clone()));
                    outgoing.push(Outgoing {
                        seq,
                        topic,
                        payload,
                        kind: m.kind,
                        raised: flag.meta.raised,
                        severity,
                        received: Some(received.at),
                    });
                }
                for chunk in raised_repeat.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::new("INSERT INTO repeat_flags (flag_id, identity, caller_ref, t0_ms, raised_ms) ");
                    q.push_values(chunk, |mut b, (id, meta, r)| {
                        b.push_bind(id.as_str()).push_bind(meta.identity.map(|i| i.as_str()).unwrap_or("phone")).push_bind(r.as_str()).push_bind(meta.t0_ms).push_bind(meta.raised_ms);
                    });
                    q.build().execute(&mut *tx).await?;
                }
                for chunk in raised_mh.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::new("INSERT INTO mh_flags (call_id, flag_id, severity, occurred_ms, raised_ms) ");
                    q.push_values(chunk, |mut b, (call, id, severity, occurred)| {
                        b.push_bind(call.as_str()).push_bind(id.as_str()).push_bind(*severity).push_bind(*occurred).push_bind(now_ms);
                    });
                    // A call older than the history kept (its row in flagger_calls pruned) may still
                    // have a flag here: the newest flag for the call is the one kept.
                    q.push(" ON CONFLICT (call_id) DO UPDATE SET flag_id = excluded.flag_id, severity = excluded.severity, occurred_ms = excluded.occurred_ms, raised_ms = excluded.raised_ms");
                    q.build().execute(&mut *tx).await?;
                }
                for (call_id, severity) in mh_updates {
                    sqlx::query("UPDATE mh_flags SET severity = $1 WHERE call_id = $2").bind(severity).bind(call_id).execute(&mut *tx).await?;
                }
                for chunk in messages.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::new("INSERT INTO flag_messages (seq, flag_id, topic, payload, created_ms) ");
                    q.push_values(chunk, |mut b, (seq, id, topic, payload)| {
                        b.push_bind(*seq).push_bind(id.as_str()).push_bind(topic.as_str()).push_bind(payload.as_str()).push_bind(now_ms);
                    });
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }};
        }
        match &self.db {
            // IMMEDIATE: take SQLite's write lock first, so the reads that decide what is new
            // cannot be overtaken by another service writing the same file.
            Db::Sqlite(pool) => body!(pool.begin_with("BEGIN IMMEDIATE"), false),
            Db::Postgres(pool) => body!(pool.begin(), true),
        }
        self.outbox.acked.clear();
        Ok(Committed { outgoing, duplicates })
    }

    /// Hands stored flag messages to the broker; each is marked published once the broker has
    /// acknowledged it.
    fn publish(&mut self, out: &Publisher, outgoing: Vec<Outgoing>) {
        for o in outgoing {
            if !out.publish(o.topic, o.payload.into_bytes(), Some(o.seq as u64)) {
                tracing::error!("the MQTT link has gone; flags stay in the outbox");
                return;
            }
            self.outbox.in_flight.insert(o.seq);
            if let Some(at) = o.received {
                self.metrics.flag_latency.with_label_values(&[o.kind.as_str()]).observe(at.elapsed().as_secs_f64());
            }
            if o.raised {
                self.metrics.flags_raised.with_label_values(&[o.kind.as_str(), o.severity]).inc();
            }
        }
    }

    /// Marks what the broker has acknowledged as published, in a write of its own.
    async fn mark_published(&mut self) {
        if self.outbox.acked.is_empty() {
            return;
        }
        let now = self.clock.now_ms();
        let (db, acked) = (&self.db, &self.outbox.acked);
        let result: Result<(), sqlx::Error> = with_db!(db, |pool| async {
            let mut tx = pool.begin().await?;
            for (first, last) in acked {
                sqlx::query(MARK_PUBLISHED).bind(now).bind(*first).bind(*last).execute(&mut *tx).await?;
            }
            tx.commit().await
        }
        .await);
        match result {
            Ok(()) => self.outbox.acked.clear(),
            Err(e) => tracing::error!(error = %e, "could not mark flags published; will try again (a restart publishes them again)"),
        }
    }

    /// Publishes every stored flag message that is neither acknowledged nor on its way: what a
    /// previous run left, what a failed commit or a lost broker session left. Runs at start-up,
    /// on a timer and after a failed commit.
    async fn publish_outbox(&mut self, out: &Publisher) {
        const PAGE: i64 = 5000;
        let q = "SELECT seq, topic, payload FROM flag_messages WHERE published_ms IS NULL AND seq > $1 ORDER BY seq LIMIT $2";
        let mut after = 0i64;
        let mut sent = 0usize;
        loop {
            let db = &self.db;
            let rows: Vec<(i64, String, String)> = match with_db!(db, |pool| sqlx::query_as(q).bind(after).bind(PAGE).fetch_all(pool).await)
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, "could not read the flag outbox; will try again");
                    return;
                }
            };
            let full = rows.len() as i64 == PAGE;
            after = rows.last().map(|r| r.0).unwrap_or(after);
            let outgoing: Vec<Outgoing> = rows
                .into_iter()
                .filter(|(seq, _, _)| !self.outbox.pending(*seq))
                .map(|(seq, topic, payload)| {
                    let kind = if topic.ends_with("/mental-health") { FlagKind::MentalHealth } else { FlagKind::RepeatCaller };
                    Outgoing { seq, topic, payload, kind, raised: false, severity: "", received: None }
                })
                .collect();
            sent += outgoing.len();
            self.publish(out, outgoing);
            if !full {
                break;
            }
        }
        if sent > 0 {
            tracing::info!(flags = sent, "publishing flags stored but not yet acknowledged by the broker");
        }
    }

    /// Swaps in a reloaded config between batches, so each event is handled under one version.
    fn apply_reload(&mut self, reload: Reload) {
        match reload {
            Reload::Refused { .. } => self.metrics.ingest.config_reloads.with_label_values(&["error"]).inc(),
            Reload::Applied { config, hash, .. } => {
                let old_history = self.config.longest_window().millis() + self.config.retention.history_margin.millis();
                self.config = (*config).clone();
                self.detector.reload(&self.config, &self.ingest);
                for r in &self.config.repeat_callers.rules {
                    self.metrics.repeat_callers.with_label_values(&[&r.name]);
                    if r.window.millis() > old_history {
                        let from = self.detector.repeat.earliest_ms().map(crate::detect::fmt_ms).unwrap_or_else(|| "now".into());
                        tracing::warn!(rule = %r.name, window = %r.window, history_from = %from, "the window reaches further back than the history held; counts are complete once the window is covered");
                    }
                }
                self.metrics.ingest.config_reloads.with_label_values(&["ok"]).inc();
                self.metrics.ingest.config_info.set(&hash);
                self.update_gauges();
            }
        }
    }

    fn update_gauges(&self) {
        for (rule, n) in self.detector.repeat.at_or_over(self.clock.now_ms()) {
            self.metrics.repeat_callers.with_label_values(&[&rule]).set(n as i64);
        }
    }

    /// Forgets calls no rule window can reach and event ids past their retention.
    async fn prune(&mut self) {
        let now = self.clock.now_ms();
        let cutoff = now - self.config.longest_window().millis() - self.config.retention.history_margin.millis();
        let dropped = self.detector.prune(cutoff, now - crate::detect::MH_CALL_MEMORY_MS);
        let events_before = now - self.config.retention.event_ids.millis();
        let db = &self.db;
        let result: Result<(), sqlx::Error> = with_db!(db, |pool| async {
            sqlx::query("DELETE FROM flagger_calls WHERE occurred_ms < $1").bind(cutoff).execute(pool).await?;
            sqlx::query("DELETE FROM processed_events WHERE service = $1 AND received_ms < $2")
                .bind(SERVICE)
                .bind(events_before)
                .execute(pool)
                .await?;
            sqlx::query("DELETE FROM flag_messages WHERE published_ms IS NOT NULL AND created_ms < $1")
                .bind(events_before)
                .execute(pool)
                .await?;
            Ok(())
        }
        .await);
        match result {
            Ok(()) => tracing::info!(calls = dropped, "pruned history past the longest window"),
            Err(e) => tracing::warn!(error = %e, "pruning failed; will try again"),
        }
    }
}

impl BatchConsumer for Flagger {
    type Item = Result<CallEvent, Rejection>;
    type Committed = Committed;

    fn prepare(&mut self, received: &Received, now: chrono::DateTime<Utc>) -> Self::Item {
        CallEvent::parse(&received.publish.payload, &self.ingest, now)
    }

    fn rejected(&mut self, _received: &Received, reason: &'static str, error: String) -> Self::Item {
        Err(Rejection::new(reason, error))
    }

    async fn commit(&mut self, batch: &[Received], items: &[Self::Item], now: chrono::DateTime<Utc>) -> Result<Committed, CommitError> {
        self.store(batch, items, now).await
    }

    async fn recover(&mut self, out: &Publisher) {
        if let Err(e) = self.rebuild().await {
            tracing::error!(error = %e, "could not rebuild history from the database");
        }
        self.publish_outbox(out).await;
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
                    let event_id = lantern_shared::event::event_id_of(&received.publish.payload);
                    tracing::warn!(reason = rejection.reason, error = %rejection.error, event_id = %event_id, topic = %received.publish.topic, "event rejected");
                    out.publish(self.config.topic("rejected"), rejection.to_message(&received.publish.payload), None);
                }
            }
        }
        self.publish(out, committed.outgoing);
    }

    fn reload(&mut self, reload: Reload) {
        self.apply_reload(reload);
    }

    async fn tick(&mut self, out: &Publisher) {
        self.mark_published().await;
        self.publish_outbox(out).await;
        self.update_gauges();
        if self.clock.now_ms() - self.last_prune_ms > PRUNE_EVERY_MS {
            self.prune().await;
            self.last_prune_ms = self.clock.now_ms();
        }
    }

    fn delivered(&mut self, _out: &Publisher, delivery: Delivery) {
        match delivery {
            Delivery::Acked(seq) => self.outbox.acked(seq as i64),
            Delivery::Lost(seqs) => {
                // Published again by the next outbox scan, within one tick.
                for seq in seqs {
                    self.outbox.in_flight.remove(&(seq as i64));
                }
            }
        }
    }

    fn awaiting_acks(&self) -> bool {
        !self.outbox.in_flight.is_empty()
    }

    fn now(&self) -> chrono::DateTime<Utc> {
        self.clock.now()
    }
}
