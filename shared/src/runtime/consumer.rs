//! The loop every consuming service runs: take what the broker has handed over as one batch,
//! commit its effects, act on them, then ack every message in the order received. Reloads,
//! timers and delivery reports run between batches, so each batch is handled under one config.
//!
//! No single message can stop the loop. A message whose preparation or processing fails (a
//! panic included) is rejected with `internal_error`; a message the database refuses for what
//! it holds is found by splitting the batch and rejected with `storage_error`; the rest of the
//! batch is committed as usual. Only transient failures (the database unreachable or busy) hold
//! the batch back, retried with backoff for as long as they last.

use crate::config::reload::{self, Reload};
use crate::runtime::mqtt::{Delivery, Link, Publisher, Received};
use chrono::{DateTime, Utc};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// Most messages taken into one batch.
pub const MAX_BATCH: usize = 1024;

/// Why a batch could not be committed.
#[derive(Debug)]
pub enum CommitError {
    /// The database is unreachable or busy: retry the same batch after a pause.
    Transient(sqlx::Error),
    /// The database refused something the batch holds (a NUL byte on PostgreSQL, a value too
    /// long, a broken constraint): retrying the same batch would fail again.
    Permanent(sqlx::Error),
    /// Processing message `index` of the batch failed (a panic in detection, say): reject it,
    /// bring state back from the database, and commit the rest.
    Poisoned { index: usize, error: String },
}

impl From<sqlx::Error> for CommitError {
    fn from(e: sqlx::Error) -> CommitError {
        if crate::store::is_transient(&e) {
            CommitError::Transient(e)
        } else {
            CommitError::Permanent(e)
        }
    }
}

impl std::fmt::Display for CommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommitError::Transient(e) => write!(f, "database unavailable: {e}"),
            CommitError::Permanent(e) => write!(f, "database refused the batch: {e}"),
            CommitError::Poisoned { index, error } => write!(f, "message {index} of the batch failed: {error}"),
        }
    }
}

/// Prepares one message away from the batch loop: what [`BatchConsumer::prepare`] would give,
/// reading the time from the consumer's clock.
pub type Preparer<T> = Arc<dyn Fn(&Received) -> T + Send + Sync>;

/// A service's part in [`consume`].
#[allow(async_fn_in_trait)]
pub trait BatchConsumer {
    /// One message after preparation (parsing, say): what commit and finish work from.
    type Item: Send + 'static;
    /// What a successful commit hands to [`BatchConsumer::finish`].
    type Committed;

    /// Prepares one message. Runs inside a panic guard: a panic becomes an `internal_error`
    /// rejection through [`BatchConsumer::rejected`].
    fn prepare(&mut self, received: &Received, now: DateTime<Utc>) -> Self::Item;
    /// Prepares messages on a task of their own as they arrive, so the next batch is parsed
    /// while this one commits. `None`: each batch is prepared in the loop with
    /// [`BatchConsumer::prepare`].
    fn preparer(&self) -> Option<Preparer<Self::Item>> {
        None
    }
    /// The item for a message refused with `reason` ("internal_error", "storage_error").
    fn rejected(&mut self, received: &Received, reason: &'static str, error: String) -> Self::Item;
    /// Makes the effects of `batch` durable, in one transaction. `items[i]` belongs to `batch[i]`.
    async fn commit(&mut self, batch: &[Received], items: &[Self::Item], now: DateTime<Utc>) -> Result<Self::Committed, CommitError>;
    /// After a failed commit: bring in-memory state back in line with the database.
    async fn recover(&mut self, _out: &Publisher) {}
    /// After the commit and before the acks: publish, count, tell.
    async fn finish(&mut self, out: &Publisher, batch: &[Received], items: &[Self::Item], committed: Self::Committed);
    fn reload(&mut self, reload: Reload);
    /// Runs every `tick` between batches (gauges, pruning, the outbox).
    async fn tick(&mut self, _out: &Publisher) {}
    /// The broker acknowledged, or lost, a tagged publish.
    fn delivered(&mut self, _out: &Publisher, _delivery: Delivery) {}
    /// True while tagged publishes wait for the broker's acknowledgement: a clean stop waits
    /// (briefly) for them, so nothing is published twice after a restart.
    fn awaiting_acks(&self) -> bool {
        false
    }
    /// The time now: the service's clock.
    fn now(&self) -> DateTime<Utc>;
    /// A standby instance became the active one: read state again from the database, where the
    /// instance before it left it, before the first message.
    async fn activated(&mut self, out: &Publisher) {
        self.recover(out).await;
    }
}

/// Runs `consumer` on `link` until `shutdown`; then finishes the batch in hand, acks it and
/// disconnects. Messages received but not processed stay queued at the broker.
pub async fn consume<C: BatchConsumer>(
    consumer: &mut C,
    mut link: Link,
    hard_stop: CancellationToken,
    shutdown: &CancellationToken,
    mut reloads: Option<broadcast::Receiver<Reload>>,
    tick: Duration,
) {
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let out = link.publisher.clone();
    // A standby does nothing on its ticks (pruning, the outbox) until it is the active one.
    let mut activation = link.activation.take();
    let mut incoming = Incoming::start(link.incoming, consumer.preparer());
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = reload::next(&mut reloads) => { consumer.reload(r); continue; }
            a = async { match activation.as_mut() { Some(rx) => rx.await, None => std::future::pending().await } }, if activation.is_some() => {
                activation = None;
                if let Ok(ready) = a {
                    consumer.activated(&out).await;
                    let _ = ready.send(());
                }
                continue;
            }
            _ = ticks.tick(), if activation.is_none() => { consumer.tick(&out).await; continue; }
            Some(d) = link.deliveries.recv() => {
                consumer.delivered(&out, d);
                while let Ok(d) = link.deliveries.try_recv() {
                    consumer.delivered(&out, d);
                }
                continue;
            }
            r = incoming.recv() => match r { Some(r) => r, None => break },
        };
        let (mut batch, mut prepared) = (Vec::with_capacity(MAX_BATCH), Vec::with_capacity(MAX_BATCH));
        let mut next = Some(first);
        while let Some((r, p)) = next {
            batch.push(r);
            prepared.push(p);
            next = if batch.len() < MAX_BATCH { incoming.try_recv() } else { None };
        }
        if !process_prepared(consumer, &out, &batch, prepared, shutdown).await {
            break;
        }
        for r in &batch {
            link.acker.ack(&r.publish);
        }
    }
    // What the broker acknowledges meanwhile, so the outbox is marked before the stop.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while consumer.awaiting_acks() {
        match tokio::time::timeout_at(deadline, link.deliveries.recv()).await {
            Ok(Some(d)) => consumer.delivered(&out, d),
            _ => break,
        }
    }
    link.acker.disconnect();
    if tokio::time::timeout(Duration::from_secs(5), &mut link.task).await.is_err() {
        hard_stop.cancel();
    }
}

/// The panic message, for the log and the rejection.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    let text = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
    crate::domain::mask::mask(&text.unwrap_or_else(|| "a panic".into()))
}

/// Runs `f`, turning a panic into an error that says what failed.
pub fn guard<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_text(p.as_ref()))
}

/// What the loop takes in: messages as received, or with their items when a task of their own
/// prepares them ([`BatchConsumer::preparer`]). That task ends with the loop.
enum Incoming<T> {
    Received(mpsc::Receiver<Received>),
    Prepared { rx: mpsc::Receiver<Prepared<T>>, _task: tokio_util::task::AbortOnDropHandle<()> },
}

/// A message and, when prepared already, its item or what its preparation panicked with.
type Prepared<T> = (Received, Option<Result<T, String>>);

impl<T: Send + 'static> Incoming<T> {
    fn start(rx: mpsc::Receiver<Received>, preparer: Option<Preparer<T>>) -> Incoming<T> {
        let Some(prepare) = preparer else { return Incoming::Received(rx) };
        // Room for a batch being taken and the next; the receive buffer holds the rest.
        let (tx, prepared) = mpsc::channel(2 * MAX_BATCH);
        let task = tokio::spawn(async move {
            let mut rx = rx;
            while let Some(r) = rx.recv().await {
                let item = guard(|| prepare(&r));
                if tx.send((r, Some(item))).await.is_err() {
                    break;
                }
            }
        });
        Incoming::Prepared { rx: prepared, _task: tokio_util::task::AbortOnDropHandle::new(task) }
    }

    async fn recv(&mut self) -> Option<Prepared<T>> {
        match self {
            Incoming::Received(rx) => rx.recv().await.map(|r| (r, None)),
            Incoming::Prepared { rx, .. } => rx.recv().await,
        }
    }

    fn try_recv(&mut self) -> Option<Prepared<T>> {
        match self {
            Incoming::Received(rx) => rx.try_recv().ok().map(|r| (r, None)),
            Incoming::Prepared { rx, .. } => rx.try_recv().ok(),
        }
    }
}

/// One batch. Returns false if shutdown came before it could all be committed (nothing acked).
pub async fn process<C: BatchConsumer>(consumer: &mut C, out: &Publisher, batch: &[Received], shutdown: &CancellationToken) -> bool {
    process_prepared(consumer, out, batch, batch.iter().map(|_| None).collect(), shutdown).await
}

/// [`process`] for a batch some of whose messages are prepared already (`prepared[i]` for
/// `batch[i]`).
async fn process_prepared<C: BatchConsumer>(
    consumer: &mut C,
    out: &Publisher,
    batch: &[Received],
    prepared: Vec<Option<Result<C::Item, String>>>,
    shutdown: &CancellationToken,
) -> bool {
    let now = consumer.now();
    let mut items: Vec<Option<C::Item>> = Vec::with_capacity(batch.len());
    for (r, p) in batch.iter().zip(prepared) {
        let item = match p.unwrap_or_else(|| guard(|| consumer.prepare(r, now))) {
            Ok(item) => item,
            Err(why) => {
                tracing::error!(topic = %r.publish.topic, error = %why, "preparing a message failed; it is rejected");
                consumer.rejected(r, "internal_error", format!("processing this message failed: {why}"))
            }
        };
        items.push(Some(item));
    }
    let mut items: Vec<C::Item> = items.into_iter().flatten().collect();
    // Ranges still to commit, the next at the end. A range the database refuses is split in two.
    let mut ranges = vec![(0, batch.len())];
    let mut delay = Duration::from_millis(200);
    while let Some((a, b)) = ranges.pop() {
        loop {
            match consumer.commit(&batch[a..b], &items[a..b], now).await {
                Ok(committed) => {
                    consumer.finish(out, &batch[a..b], &items[a..b], committed).await;
                    delay = Duration::from_millis(200);
                    break;
                }
                Err(CommitError::Transient(e)) => {
                    tracing::error!(error = %e, retry_in_ms = delay.as_millis() as u64, "could not store a batch; will retry");
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(10));
                    consumer.recover(out).await;
                }
                Err(CommitError::Poisoned { index, error }) => {
                    tracing::error!(topic = %batch[a + index].publish.topic, error = %error, "processing a message failed; it is rejected and state is rebuilt from the database");
                    items[a + index] =
                        consumer.rejected(&batch[a + index], "internal_error", format!("processing this message failed: {error}"));
                    consumer.recover(out).await;
                }
                Err(CommitError::Permanent(e)) => {
                    consumer.recover(out).await;
                    if b - a == 1 {
                        tracing::error!(topic = %batch[a].publish.topic, error = %e, "the database refused a message for what it holds; it is rejected");
                        items[a] = consumer.rejected(&batch[a], "storage_error", format!("the database refused this message: {e}"));
                    } else {
                        tracing::warn!(error = %e, messages = b - a, "the database refused part of a batch; splitting it to find the message");
                        let mid = a + (b - a) / 2;
                        ranges.push((mid, b));
                        ranges.push((a, mid));
                        break;
                    }
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests;
