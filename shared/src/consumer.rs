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
use crate::mqtt::{Delivery, Link, Publisher, Received};
use chrono::{DateTime, Utc};
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use tokio::sync::broadcast;
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

/// A service's part in [`consume`].
#[allow(async_fn_in_trait)]
pub trait BatchConsumer {
    /// One message after preparation (parsing, say): what commit and finish work from.
    type Item;
    /// What a successful commit hands to [`BatchConsumer::finish`].
    type Committed;

    /// Prepares one message. Runs inside a panic guard: a panic becomes an `internal_error`
    /// rejection through [`BatchConsumer::rejected`].
    fn prepare(&mut self, received: &Received, now: DateTime<Utc>) -> Self::Item;
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
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = reload::next(&mut reloads) => { consumer.reload(r); continue; }
            _ = ticks.tick() => { consumer.tick(&out).await; continue; }
            Some(d) = link.deliveries.recv() => {
                consumer.delivered(&out, d);
                while let Ok(d) = link.deliveries.try_recv() {
                    consumer.delivered(&out, d);
                }
                continue;
            }
            r = link.incoming.recv() => match r { Some(r) => r, None => break },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match link.incoming.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        if !process(consumer, &out, &batch, shutdown).await {
            break;
        }
        for r in &batch {
            if let Err(e) = link.client.ack(&r.publish).await {
                tracing::error!(error = %e, "could not queue an ack");
            }
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
    let _ = link.client.disconnect().await;
    if tokio::time::timeout(Duration::from_secs(5), &mut link.task).await.is_err() {
        hard_stop.cancel();
    }
}

/// The panic message, for the log and the rejection.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    let text = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
    crate::mask::mask(&text.unwrap_or_else(|| "a panic".into()))
}

/// Runs `f`, turning a panic into an error that says what failed.
pub fn guard<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_text(p.as_ref()))
}

/// One batch. Returns false if shutdown came before it could all be committed (nothing acked).
pub async fn process<C: BatchConsumer>(consumer: &mut C, out: &Publisher, batch: &[Received], shutdown: &CancellationToken) -> bool {
    let now = consumer.now();
    let mut items: Vec<Option<C::Item>> = Vec::with_capacity(batch.len());
    for r in batch {
        let item = match guard(|| consumer.prepare(r, now)) {
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
mod tests {
    use super::*;
    use rumqttc::{Publish, QoS};

    /// A consumer that stores numbers: "panic-prepare" panics while preparing, "panic-commit"
    /// while committing, "refuse" is refused by the "database" for what it holds, and the first
    /// `busy` commits fail as if the database were unreachable.
    #[derive(Default)]
    struct Fake {
        stored: Vec<String>,
        rejected: Vec<(String, &'static str)>,
        recovered: usize,
        busy: usize,
        commits: usize,
    }

    impl BatchConsumer for Fake {
        type Item = Result<String, (&'static str, String)>;
        type Committed = Vec<String>;

        fn prepare(&mut self, r: &Received, _now: DateTime<Utc>) -> Self::Item {
            let text = String::from_utf8_lossy(&r.publish.payload).to_string();
            assert!(text != "panic-prepare", "a parser bug");
            Ok(text)
        }
        fn rejected(&mut self, r: &Received, reason: &'static str, _error: String) -> Self::Item {
            Err((reason, String::from_utf8_lossy(&r.publish.payload).to_string()))
        }
        async fn commit(&mut self, _b: &[Received], items: &[Self::Item], _now: DateTime<Utc>) -> Result<Vec<String>, CommitError> {
            self.commits += 1;
            if self.busy > 0 {
                self.busy -= 1;
                return Err(CommitError::Transient(sqlx::Error::PoolTimedOut));
            }
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Ok(t) if t == "panic-commit" => {
                        guard(|| panic!("a detection bug")).map_err(|error| CommitError::Poisoned { index: i, error })?;
                    }
                    Ok(t) if t == "refuse" => return Err(CommitError::Permanent(sqlx::Error::RowNotFound)),
                    Ok(t) => out.push(t.clone()),
                    Err(_) => {}
                }
            }
            Ok(out)
        }
        async fn recover(&mut self, _out: &Publisher) {
            self.recovered += 1;
        }
        async fn finish(&mut self, _out: &Publisher, _b: &[Received], items: &[Self::Item], committed: Vec<String>) {
            self.stored.extend(committed);
            self.rejected.extend(items.iter().filter_map(|i| i.as_ref().err().map(|(r, t)| (t.clone(), *r))));
        }
        fn reload(&mut self, _reload: Reload) {}
        fn now(&self) -> DateTime<Utc> {
            Utc::now()
        }
    }

    fn batch(texts: &[&str]) -> Vec<Received> {
        texts.iter().map(|t| Received::new(Publish::new("t", QoS::AtLeastOnce, t.as_bytes().to_vec()))).collect()
    }

    async fn run(fake: &mut Fake, texts: &[&str]) {
        let (out, _rx) = Publisher::unconnected();
        assert!(process(fake, &out, &batch(texts), &CancellationToken::new()).await);
    }

    #[tokio::test]
    async fn a_panic_while_preparing_rejects_that_message_alone() {
        let mut f = Fake::default();
        run(&mut f, &["a", "panic-prepare", "b"]).await;
        assert_eq!(f.stored, ["a", "b"]);
        assert_eq!(f.rejected, [("panic-prepare".to_string(), "internal_error")]);
    }

    #[tokio::test]
    async fn a_panic_while_committing_rejects_that_message_and_rebuilds_state() {
        let mut f = Fake::default();
        run(&mut f, &["a", "b", "panic-commit", "c"]).await;
        assert_eq!(f.stored, ["a", "b", "c"]);
        assert_eq!(f.rejected, [("panic-commit".to_string(), "internal_error")]);
        assert_eq!(f.recovered, 1, "state is rebuilt before the rest is committed");
    }

    #[tokio::test]
    async fn a_message_the_database_refuses_is_found_by_splitting_and_the_rest_is_committed() {
        let mut f = Fake::default();
        let texts: Vec<String> = (0..50).map(|i| if i == 37 { "refuse".into() } else { format!("m{i}") }).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        run(&mut f, &refs).await;
        let want: Vec<String> = texts.iter().filter(|t| *t != "refuse").cloned().collect();
        assert_eq!(f.stored, want, "every other message committed, in order");
        assert_eq!(f.rejected, [("refuse".to_string(), "storage_error")]);
        assert!(f.commits <= 2 * 7 + 2, "found by halving, not one by one: {} commits", f.commits);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_database_holds_the_batch_back_only_while_it_lasts() {
        let mut f = Fake { busy: 3, ..Fake::default() };
        run(&mut f, &["a", "b"]).await;
        assert_eq!(f.stored, ["a", "b"]);
        assert!(f.rejected.is_empty(), "a transient failure rejects nothing");
        assert_eq!(f.commits, 4);
    }
}
