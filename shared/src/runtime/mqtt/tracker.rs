//! Which publish each packet id stands for, so a flag is marked published only on its PUBACK.

use std::collections::{HashMap, VecDeque};

/// Which tag each in-flight packet id carries, kept by watching rumqttc's events in order.
///
/// Only the poll task submits publishes, and only while connected, so every publish rumqttc
/// has not yet numbered sits in `fifo` in submission order; a numbered one sits in `inflight`
/// until its PUBACK. A resend of an unacknowledged packet (same id) is recognised by its id
/// being in flight already. When the broker starts a new session, rumqttc drops everything it
/// had not had acknowledged: all of it is reported lost.
#[derive(Debug, Default)]
pub(super) struct PubackTracker {
    pub(super) fifo: VecDeque<Option<u64>>,
    inflight: HashMap<u16, Option<u64>>,
    collided: Option<(u16, Option<u64>)>,
}

impl PubackTracker {
    pub(super) fn submitted(&mut self, tag: Option<u64>) {
        self.fifo.push_back(tag);
    }

    pub(super) fn outgoing_publish(&mut self, pkid: u16) {
        if pkid == 0 || self.inflight.contains_key(&pkid) {
            return; // QoS 0, or a resend of a packet in flight
        }
        let tag = match self.collided.take() {
            Some((p, tag)) if p == pkid => tag,
            other => {
                self.collided = other;
                self.fifo.pop_front().flatten()
            }
        };
        self.inflight.insert(pkid, tag);
    }

    /// rumqttc parked a publish whose packet id was still in flight; it goes out after that ack.
    pub(super) fn await_ack(&mut self, pkid: u16) {
        let tag = self.fifo.pop_front().flatten();
        self.collided = Some((pkid, tag));
    }

    pub(super) fn puback(&mut self, pkid: u16) -> Option<u64> {
        self.inflight.remove(&pkid).flatten()
    }

    /// A new session: everything submitted and not acknowledged is gone.
    pub(super) fn session_lost(&mut self) -> Vec<u64> {
        let mut lost: Vec<u64> = self.inflight.drain().filter_map(|(_, t)| t).collect();
        lost.extend(self.fifo.drain(..).flatten());
        lost.extend(self.collided.take().and_then(|(_, t)| t));
        lost.sort_unstable();
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::PubackTracker;

    #[test]
    fn tags_follow_packet_ids_through_resends_and_collisions() {
        let mut t = PubackTracker::default();
        t.submitted(Some(10));
        t.submitted(None);
        t.submitted(Some(12));
        t.outgoing_publish(1);
        t.outgoing_publish(2);
        // A resend of packet 1 after a reconnect keeps its tag.
        t.outgoing_publish(1);
        // Packet 1 is still in flight when the third publish is numbered 1 again: parked.
        t.await_ack(1);
        assert_eq!(t.puback(2), None);
        assert_eq!(t.puback(1), Some(10));
        // rumqttc sends the parked publish right after that ack.
        t.outgoing_publish(1);
        assert_eq!(t.puback(1), Some(12));
        assert!(t.fifo.is_empty() && t.inflight.is_empty() && t.collided.is_none());
    }

    #[test]
    fn a_new_session_reports_every_unacknowledged_tag_lost() {
        let mut t = PubackTracker::default();
        for tag in [1, 2, 3] {
            t.submitted(Some(tag));
        }
        t.outgoing_publish(5);
        assert_eq!(t.puback(5), Some(1));
        t.outgoing_publish(6);
        assert_eq!(t.session_lost(), vec![2, 3]);
        t.submitted(Some(4));
        t.outgoing_publish(1);
        assert_eq!(t.puback(1), Some(4));
    }
}
