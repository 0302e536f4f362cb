//! The flagger service: MQTT in, detection, storage, flags out.

use crate::detect::repeat::CallAttrs;
use crate::detect::{Detector, FlagKind};
use chrono::Utc;
use futures::TryStreamExt;
use lantern_shared::config::reload::Reload;
use lantern_shared::config::{AgeBand, Channel, Identity, Severity};
use lantern_shared::consumer::{self, BatchConsumer};
use lantern_shared::event::{CallEvent, IngestContext, Rejection};
use lantern_shared::mqtt::Received;
use lantern_shared::pseudonym::CallerRef;
use lantern_shared::service::{ServiceBase, Started};
use lantern_shared::store::Db;
use lantern_shared::telemetry::{self, IngestMetrics};
use lantern_shared::{with_db, Config};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use rumqttc::{AsyncClient, QoS};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const SERVICE: &str = "flagger";
/// Rows per multi-row statement (well under SQLite's and PostgreSQL's parameter limits).
const CHUNK: usize = 256;
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
        for kind in [FlagKind::RepeatCaller, FlagKind::MentalHealth] {
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
        for kind in [FlagKind::RepeatCaller, FlagKind::MentalHealth] {
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
    metrics: FlaggerMetrics,
    detector: Detector,
    /// The next `flag_messages.seq`: this service is the table's only writer.
    next_seq: i64,
    /// Flag messages handed to the broker but not yet marked published in `flag_messages`:
    /// ranges of seq, marked in the next batch's transaction (or on a tick, or at shutdown)
    /// rather than in a write of their own. A crash in between publishes them again at start-up.
    unmarked: Vec<(i64, i64)>,
    last_prune: Instant,
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

impl Flagger {
    pub async fn build(config: Config) -> anyhow::Result<Flagger> {
        let ingest = IngestContext::from_config(&config)?;
        let base = ServiceBase::build(SERVICE, &config, &config.flagger.listen).await?;
        let db = base.db.clone();
        let metrics = FlaggerMetrics::new(&base.registry, &config);
        let detector = Detector::new(&config, &ingest);
        metrics.ingest.config_info.set(&lantern_shared::config::diff::fingerprint(&config));
        let mut flagger =
            Flagger { base, config, ingest, db, metrics, detector, next_seq: 1, unmarked: Vec::new(), last_prune: Instant::now() };
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
        let Started { link, hard_stop, server } = self.base.start(subscriptions, &connected, axum::Router::new(), &shutdown)?;
        self.publish_outbox(&link.client).await;
        let reloads = self.base.reloads.take();
        consumer::consume(&mut self, link, hard_stop, &shutdown, reloads, Duration::from_secs(15)).await;
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
    ) -> Result<(Vec<Outgoing>, u64), sqlx::Error> {
        let now_ms = now.timestamp_millis();
        let valid: Vec<(&Received, &CallEvent)> = batch.iter().zip(parsed).filter_map(|(r, p)| p.as_ref().ok().map(|e| (r, e))).collect();
        if valid.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let mut outgoing = Vec::new();
        let mut duplicates = 0u64;
        let detector = &mut self.detector;
        let next_seq = &mut self.next_seq;
        let topic_root = &self.config;
        let unmarked = &self.unmarked;
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
                        q.push_values(chunk, |mut b, (_, ev)| {
                            b.push_bind(SERVICE).push_bind(ev.event_id.as_str()).push_bind(now_ms);
                        });
                        q.push(" ON CONFLICT DO NOTHING RETURNING event_id");
                        inserted.extend(q.build_query_scalar::<String>().fetch_all(&mut *tx).await?);
                    }
                    fresh.extend(valid.iter().map(|(_, ev)| ev.event_id.as_str()).filter(|id| inserted.contains(*id)));
                } else {
                    let mut stored: HashSet<String> = HashSet::new();
                    for chunk in valid.chunks(CHUNK) {
                        let mut q = sqlx::QueryBuilder::new("SELECT event_id FROM processed_events WHERE service = ");
                        q.push_bind(SERVICE).push(" AND event_id IN (");
                        let mut list = q.separated(", ");
                        for (_, ev) in chunk {
                            list.push_bind(ev.event_id.as_str());
                        }
                        q.push(")");
                        stored.extend(q.build_query_scalar::<String>().fetch_all(&mut *tx).await?);
                    }
                    // A set, so an id repeated within the batch counts once.
                    fresh.extend(valid.iter().map(|(_, ev)| ev.event_id.as_str()).filter(|id| !stored.contains(*id)));
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
                // Which calls the database has seen already.
                let mut known: HashSet<String> = HashSet::new();
                let call_ids: Vec<&str> = valid.iter().filter(|(_, ev)| fresh.contains(ev.event_id.as_str())).map(|(_, ev)| ev.call_id.as_str()).collect();
                for chunk in call_ids.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::new("SELECT call_id FROM flagger_calls WHERE call_id IN (");
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    q.push(")");
                    known.extend(q.build_query_scalar::<String>().fetch_all(&mut *tx).await?);
                }
                // Detection, in the order received.
                let mut new_calls: Vec<(&CallEvent, Option<String>, Option<String>)> = Vec::new();
                let mut flags = Vec::new();
                for (received, ev) in &valid {
                    if !fresh.remove(ev.event_id.as_str()) {
                        duplicates += 1;
                        continue;
                    }
                    let new_call = known.insert(ev.call_id.clone());
                    let detection = detector.on_event(ev, new_call, now, &mut crate::detect::new_flag_id);
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
                    match (flag.kind, flag.meta.raised) {
                        (FlagKind::RepeatCaller, true) => raised_repeat.push((flag.flag_id.clone(), flag.meta, flag.caller_ref.clone().unwrap_or_default())),
                        (FlagKind::MentalHealth, true) => raised_mh.push((ev.call_id.clone(), flag.flag_id.clone(), flag.severity, ev.occurred_ms())),
                        (FlagKind::MentalHealth, false) => match raised_mh.iter_mut().find(|m| m.0 == ev.call_id) {
                            // Raised earlier in this same batch: store the final severity.
                            Some(m) => m.2 = flag.severity,
                            None => mh_updates.push((ev.call_id.clone(), flag.severity)),
                        },
                        (FlagKind::RepeatCaller, false) => {}
                    }
                    let payload = flag.to_json();
                    let seq = *next_seq;
                    *next_seq += 1;
                    let topic = topic_root.topic(flag.kind.topic_suffix());
                    messages.push((seq, flag.flag_id.clone(), topic.clone(), payload.clone()));
                    outgoing.push(Outgoing {
                        seq,
                        topic,
                        payload,
                        kind: flag.kind,
                        raised: flag.meta.raised,
                        severity: flag.severity,
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
        self.unmarked.clear();
        Ok((outgoing, duplicates))
    }

    /// Hands stored flag messages to the broker; they are marked published with the next write.
    async fn publish(&mut self, client: &AsyncClient, outgoing: Vec<Outgoing>) {
        for o in outgoing {
            let seq = o.seq;
            if let Err(e) = client.publish(o.topic, QoS::AtLeastOnce, false, o.payload.into_bytes()).await {
                tracing::error!(error = %e, "could not publish a flag; it stays in the outbox");
                return;
            }
            match self.unmarked.last_mut() {
                Some((_, last)) if *last + 1 == seq => *last = seq,
                _ => self.unmarked.push((seq, seq)),
            }
            if let Some(at) = o.received {
                self.metrics.flag_latency.with_label_values(&[o.kind.as_str()]).observe(at.elapsed().as_secs_f64());
            }
            if o.raised {
                self.metrics.flags_raised.with_label_values(&[o.kind.as_str(), o.severity]).inc();
            }
        }
    }

    /// Marks what was handed to the broker as published, in a write of its own.
    async fn mark_published(&mut self) {
        if self.unmarked.is_empty() {
            return;
        }
        let now = Utc::now().timestamp_millis();
        let (db, unmarked) = (&self.db, &self.unmarked);
        let result: Result<(), sqlx::Error> = with_db!(db, |pool| async {
            let mut tx = pool.begin().await?;
            for (first, last) in unmarked {
                sqlx::query(MARK_PUBLISHED).bind(now).bind(*first).bind(*last).execute(&mut *tx).await?;
            }
            tx.commit().await
        }
        .await);
        match result {
            Ok(()) => self.unmarked.clear(),
            Err(e) => tracing::error!(error = %e, "could not mark flags published; will try again (a restart publishes them again)"),
        }
    }

    /// Publishes what a previous run stored but did not hand to the broker.
    async fn publish_outbox(&mut self, client: &AsyncClient) {
        let q = "SELECT seq, topic, payload FROM flag_messages WHERE published_ms IS NULL ORDER BY seq";
        let db = &self.db;
        let rows: Vec<(i64, String, String)> = match with_db!(db, |pool| sqlx::query_as(q).fetch_all(pool).await) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "could not read the flag outbox");
                return;
            }
        };
        if rows.is_empty() {
            return;
        }
        tracing::info!(flags = rows.len(), "publishing flags stored before the last stop");
        let outgoing = rows
            .into_iter()
            .map(|(seq, topic, payload)| {
                let kind = if topic.ends_with("/mental-health") { FlagKind::MentalHealth } else { FlagKind::RepeatCaller };
                Outgoing { seq, topic, payload, kind, raised: false, severity: "", received: None }
            })
            .collect();
        self.publish(client, outgoing).await;
        self.mark_published().await;
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
        for (rule, n) in self.detector.repeat.at_or_over(Utc::now().timestamp_millis()) {
            self.metrics.repeat_callers.with_label_values(&[&rule]).set(n as i64);
        }
    }

    /// Forgets calls no rule window can reach and event ids past their retention.
    async fn prune(&mut self) {
        let now = Utc::now().timestamp_millis();
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
    type Prepared = (Vec<Result<CallEvent, Rejection>>, chrono::DateTime<Utc>);
    type Committed = (Vec<Outgoing>, u64);

    fn prepare(&mut self, batch: &[Received]) -> Self::Prepared {
        let now = Utc::now();
        (batch.iter().map(|r| CallEvent::parse(&r.publish.payload, &self.ingest, now)).collect(), now)
    }

    async fn commit(&mut self, batch: &[Received], (parsed, now): &Self::Prepared) -> Result<Self::Committed, sqlx::Error> {
        self.store(batch, parsed, *now).await
    }

    async fn recover(&mut self) {
        if let Err(e) = self.rebuild().await {
            tracing::error!(error = %e, "could not rebuild history from the database");
        }
    }

    /// Counts, publishes refusals to `<root>/rejected`, then the batch's flags.
    async fn finish(
        &mut self,
        client: &AsyncClient,
        batch: &[Received],
        (parsed, _): Self::Prepared,
        (outgoing, duplicates): Self::Committed,
    ) {
        let m = &self.metrics;
        m.ingest.duplicate.inc_by(duplicates);
        for (received, result) in batch.iter().zip(&parsed) {
            match result {
                Ok(ev) => m.ingest.received.with_label_values(&[ev.kind.as_str()]).inc(),
                Err(rejection) => {
                    m.ingest.rejected.with_label_values(&[rejection.reason]).inc();
                    tracing::warn!(reason = rejection.reason, error = %rejection.error, topic = %received.publish.topic, "event rejected");
                    let msg = rejection.to_message(&received.publish.payload);
                    if let Err(e) = client.publish(self.config.topic("rejected"), QoS::AtLeastOnce, false, msg).await {
                        tracing::error!(error = %e, "could not publish a rejection");
                    }
                }
            }
        }
        self.publish(client, outgoing).await;
    }

    fn reload(&mut self, reload: Reload) {
        self.apply_reload(reload);
    }

    async fn tick(&mut self) {
        self.mark_published().await;
        self.update_gauges();
        if self.last_prune.elapsed() > Duration::from_secs(600) {
            self.prune().await;
            self.last_prune = Instant::now();
        }
    }
}
