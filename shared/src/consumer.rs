//! The loop every consuming service runs: take what the broker has handed over as one batch,
//! commit its effects (retrying until the database takes them), act on them, then ack every
//! message in the order received. Reloads and timers run between batches, so each batch is
//! handled under one config.

use crate::config::reload::{self, Reload};
use crate::mqtt::{Link, Received};
use rumqttc::AsyncClient;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Most messages taken into one batch.
pub const MAX_BATCH: usize = 1024;

/// A service's part in [`consume`].
#[allow(async_fn_in_trait)]
pub trait BatchConsumer {
    /// Work done once per batch before committing (parsing, say).
    type Prepared;
    /// What a successful commit hands to [`BatchConsumer::finish`].
    type Committed;

    fn prepare(&mut self, batch: &[Received]) -> Self::Prepared;
    /// Makes the batch's effects durable, in one transaction.
    async fn commit(&mut self, batch: &[Received], prepared: &Self::Prepared) -> Result<Self::Committed, sqlx::Error>;
    /// After a failed commit: bring in-memory state back in line with the database.
    async fn recover(&mut self) {}
    /// After the commit and before the acks: publish, count, tell.
    async fn finish(&mut self, client: &AsyncClient, batch: &[Received], prepared: Self::Prepared, committed: Self::Committed);
    fn reload(&mut self, reload: Reload);
    /// Runs every `tick` between batches (gauges, pruning).
    async fn tick(&mut self) {}
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
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = reload::next(&mut reloads) => { consumer.reload(r); continue; }
            _ = ticks.tick() => { consumer.tick().await; continue; }
            r = link.incoming.recv() => match r { Some(r) => r, None => break },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match link.incoming.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        if !process(consumer, &link.client, &batch, shutdown).await {
            break;
        }
    }
    let _ = link.client.disconnect().await;
    if tokio::time::timeout(Duration::from_secs(5), &mut link.task).await.is_err() {
        hard_stop.cancel();
    }
}

/// One batch. Returns false if shutdown came before it could be committed (nothing acked).
async fn process<C: BatchConsumer>(consumer: &mut C, client: &AsyncClient, batch: &[Received], shutdown: &CancellationToken) -> bool {
    let prepared = consumer.prepare(batch);
    let mut delay = Duration::from_millis(200);
    let committed = loop {
        match consumer.commit(batch, &prepared).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::error!(error = %e, retry_in_ms = delay.as_millis() as u64, "could not store a batch; will retry");
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
                consumer.recover().await;
            }
        }
    };
    consumer.finish(client, batch, prepared, committed).await;
    for r in batch {
        if let Err(e) = client.ack(&r.publish).await {
            tracing::error!(error = %e, "could not queue an ack");
        }
    }
    true
}
