//! Flag messages between the database and the broker. Every flag message is stored in
//! `flagger_flag_messages` in the transaction that raised it, then handed to the broker; it is
//! marked published only once the broker has acknowledged it (PUBACK). Marking rides in the
//! next batch's transaction (or a tick, or shutdown) rather than a write of its own. A crash in
//! between publishes it again: consumers de-duplicate on `flag_id` and `status`.

use crate::detect::FlagKind;
use crate::metrics::FlaggerMetrics;
use crate::store;
use lantern_shared::domain::Severity;
use lantern_shared::runtime::mqtt::Publisher;
use lantern_shared::store::Db;
use std::collections::BTreeSet;
use std::time::Instant;

/// Outbox rows read per query when scanning for what is left to publish.
const PAGE: i64 = 5000;

/// One stored flag message to hand to the broker.
#[derive(Debug)]
pub struct Outgoing {
    pub seq: i64,
    pub topic: String,
    pub payload: String,
    pub kind: FlagKind,
    /// True for a newly raised flag (counted in `lantern_flags_raised_total`).
    pub raised: bool,
    pub severity: Option<Severity>,
    /// When the event behind it arrived, for `lantern_flag_latency_seconds`; none when
    /// published again from the outbox.
    pub received: Option<Instant>,
}

/// What is on its way to the broker, and what it has acknowledged but is not yet marked.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Handed to the link, not yet acknowledged.
    in_flight: BTreeSet<i64>,
    /// Acknowledged by the broker, not yet marked in the table: ranges of seq.
    acked: Vec<(i64, i64)>,
}

impl Outbox {
    /// The broker acknowledged `seq`.
    pub fn acked(&mut self, seq: i64) {
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

    /// The session carrying these went away unacknowledged: the next scan publishes them again.
    pub fn lost(&mut self, seqs: impl IntoIterator<Item = i64>) {
        for seq in seqs {
            self.in_flight.remove(&seq);
        }
    }

    /// Acknowledged ranges to mark in the next write.
    pub fn to_mark(&self) -> &[(i64, i64)] {
        &self.acked
    }

    /// The ranges from [`Outbox::to_mark`] are marked (their transaction committed).
    pub fn marked(&mut self) {
        self.acked.clear();
    }

    pub fn awaiting_acks(&self) -> bool {
        !self.in_flight.is_empty()
    }

    fn pending(&self, seq: i64) -> bool {
        self.in_flight.contains(&seq) || self.acked.iter().any(|(a, b)| (*a..=*b).contains(&seq))
    }

    /// Hands messages to the broker, counting each. Stops when the link has gone: what is
    /// left stays in the table for the next scan.
    pub fn publish(&mut self, out: &Publisher, metrics: &FlaggerMetrics, outgoing: Vec<Outgoing>) {
        for o in outgoing {
            if !out.publish(o.topic, o.payload.into_bytes(), Some(o.seq as u64)) {
                tracing::error!("the MQTT link has gone; flags stay in the outbox");
                return;
            }
            self.in_flight.insert(o.seq);
            metrics.published(o.kind, o.raised, o.severity, o.received);
        }
    }

    /// Marks what the broker has acknowledged as published, in a write of its own.
    pub async fn mark(&mut self, db: &Db, now_ms: i64) {
        if self.acked.is_empty() {
            return;
        }
        let result = async {
            let mut tx = db.begin().await?;
            store::mark_published(&mut tx, &self.acked, now_ms).await?;
            tx.commit().await
        }
        .await;
        match result {
            Ok(()) => self.marked(),
            Err(e) => tracing::error!(error = %e, "could not mark flags published; will try again (a restart publishes them again)"),
        }
    }

    /// Publishes every stored message that is neither acknowledged nor on its way: what a
    /// previous run left, what a failed commit or a lost broker session left. Runs at start-up,
    /// on a timer and after a failed commit.
    pub async fn publish_stored(&mut self, db: &Db, out: &Publisher, metrics: &FlaggerMetrics) {
        let mut after = 0i64;
        let mut sent = 0usize;
        loop {
            let rows = match store::unpublished(db, after, PAGE).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, "could not read the flag outbox; will try again");
                    return;
                }
            };
            let full = rows.len() as i64 == PAGE;
            after = rows.last().map(|r| r.seq).unwrap_or(after);
            let outgoing: Vec<Outgoing> = rows
                .into_iter()
                .filter(|row| !self.pending(row.seq))
                .map(|row| {
                    let kind = if row.topic.ends_with(FlagKind::MentalHealth.topic_suffix()) {
                        FlagKind::MentalHealth
                    } else {
                        FlagKind::RepeatCaller
                    };
                    Outgoing { seq: row.seq, topic: row.topic, payload: row.payload, kind, raised: false, severity: None, received: None }
                })
                .collect();
            sent += outgoing.len();
            self.publish(out, metrics, outgoing);
            if !full {
                break;
            }
        }
        if sent > 0 {
            tracing::info!(flags = sent, "publishing flags stored but not yet acknowledged by the broker");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_merge_into_ranges_and_only_count_what_was_sent() {
        let mut outbox = Outbox::default();
        outbox.in_flight.extend([1, 2, 3, 5]);
        outbox.acked(2);
        outbox.acked(1);
        outbox.acked(3);
        outbox.acked(5);
        outbox.acked(9);
        assert_eq!(outbox.to_mark(), &[(1, 3), (5, 5)]);
        assert!(outbox.pending(2) && !outbox.pending(4));
        assert!(!outbox.awaiting_acks());
        outbox.marked();
        assert!(outbox.to_mark().is_empty());
    }

    #[test]
    fn lost_messages_are_no_longer_pending() {
        let mut outbox = Outbox::default();
        outbox.in_flight.extend([7, 8]);
        outbox.lost([7]);
        assert!(!outbox.pending(7) && outbox.pending(8));
        assert!(outbox.awaiting_acks());
    }
}
