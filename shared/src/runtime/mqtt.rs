//! MQTT: one task owns the event loop; consumers get publishes through a channel and ack them
//! in receive order after their effects are committed.

use quickack::{Before, QuickAck};
use rand::Rng;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracker::PubackTracker;

/// Host and port from `mqtt://host:port` (or `tcp://`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    /// `mqtts://`: TLS (port 8883 unless given).
    pub tls: bool,
}

impl BrokerAddress {
    pub fn parse(url: &str) -> Result<BrokerAddress, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://").or_else(|| url.strip_prefix("ssl://")) {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://").or_else(|| url.strip_prefix("tcp://")) {
            (false, r)
        } else {
            return Err(format!(
                "`{}` must start with mqtt:// or mqtts:// (for example mqtt://127.0.0.1:1883)",
                crate::store::redact_url(url)
            ));
        };
        if rest.contains('@') {
            return Err("a user name or password does not go in the URL: use mqtt.username and mqtt.password_file".into());
        }
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':').filter(|(h, _)| !h.ends_with('[') && (!h.contains(':') || h.ends_with(']'))) {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("`{url}` has a port that is not a number from 1 to 65535"))?),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() || host.contains('/') || port == 0 {
            return Err(format!("`{url}` needs a host and port such as mqtt://127.0.0.1:1883"));
        }
        Ok(BrokerAddress { host: host.trim_matches(|c| c == '[' || c == ']').to_string(), port, tls })
    }
}

/// The largest packet a Lantern client reads: `message_size_limit` in config/mosquitto.conf
/// (4 MiB of payload) plus room for the topic and header. A larger packet from a broker without
/// that limit drops the connection (rumqttc's rule); everything the recommended broker accepts
/// is read, and a payload over 64 KiB is rejected as `too_large` and counted.
pub const MAX_INCOMING_PACKET: usize = 4 * 1024 * 1024 + 64 * 1024;
/// Bytes of received payload held between the MQTT task and the consumer at most. QoS 1 beyond it
/// waits at the broker (backpressure); QoS 0 beyond it is dropped and counted.
pub const MAX_BUFFERED_BYTES: usize = 32 * 1024 * 1024;
/// Publishes handed to rumqttc but not yet written, at most.
const MAX_SUBMITTED: usize = 4096;
const REQUEST_CHANNEL: usize = 65_536;

/// Options every Lantern client uses: a stable id, a persistent session, manual acks.
pub fn options(url: &str, client_id: &str) -> Result<MqttOptions, String> {
    let addr = BrokerAddress::parse(url)?;
    let mut o = MqttOptions::new(client_id, addr.host, addr.port);
    o.set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(15))
        .set_max_packet_size(MAX_INCOMING_PACKET, 1024 * 1024)
        .set_inflight(100);
    Ok(o)
}

/// A publish and when the event loop handed it over. It holds its share of the receive buffer
/// until dropped.
#[derive(Debug)]
pub struct Received {
    pub at: std::time::Instant,
    pub publish: Publish,
    _budget: Option<OwnedSemaphorePermit>,
}

impl Received {
    /// A publish that holds no share of any buffer (tests, replays).
    pub fn new(publish: Publish) -> Received {
        Received { at: std::time::Instant::now(), publish, _budget: None }
    }
}

/// What became of a tagged publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The broker acknowledged it (PUBACK): it has the message.
    Acked(u64),
    /// The broker started a new session and dropped these before acknowledging them: publish
    /// them again.
    Lost(Vec<u64>),
}

/// Publishes QoS 1 messages through the link; a tagged publish is reported on
/// [`Link::deliveries`] once the broker has acknowledged it.
#[derive(Clone, Debug)]
pub struct Publisher {
    tx: mpsc::UnboundedSender<Outbound>,
}

/// A publish on its way to the broker.
#[derive(Debug)]
pub struct Outbound {
    pub topic: String,
    pub payload: Vec<u8>,
    pub tag: Option<u64>,
}

impl Publisher {
    /// A publisher that is not connected to a broker, with the receiving end of what it is
    /// asked to publish (tests, tools).
    pub fn unconnected() -> (Publisher, mpsc::UnboundedReceiver<Outbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Publisher { tx }, rx)
    }

    /// Queues a publish; false when the link has gone.
    pub fn publish(&self, topic: String, payload: Vec<u8>, tag: Option<u64>) -> bool {
        self.tx.send(Outbound { topic, payload, tag }).is_ok()
    }
}

/// Acks received publishes, in the order given, through the poll task; never waits.
///
/// The consumer must not wait on the poll task: the poll task waits on the consumer when the
/// receive buffer is full, and rumqttc reads the network up to ten packets for each request it
/// takes, so a long queue of publishes behind a backlog once filled its request channel with
/// acks, the consumer waited for room there while holding a full buffer, and both stopped for
/// good. Acks now queue in the poll task, which hands them to rumqttc as it has room.
#[derive(Clone, Debug)]
pub struct Acker {
    tx: mpsc::UnboundedSender<AckRequest>,
}

#[derive(Debug)]
enum AckRequest {
    Ack(u16, QoS),
    /// After every ack asked for before it: a clean disconnect.
    Disconnect,
}

impl Acker {
    /// Queues the ack for `publish` (nothing for QoS 0).
    pub fn ack(&self, publish: &Publish) {
        if publish.qos != QoS::AtMostOnce {
            let _ = self.tx.send(AckRequest::Ack(publish.pkid, publish.qos));
        }
    }

    /// Disconnects cleanly once every ack queued before is handed over.
    pub fn disconnect(&self) {
        let _ = self.tx.send(AckRequest::Disconnect);
    }
}

/// A running connection: the acker, the publishes received, a publisher, what the broker has
/// acknowledged, and whether the broker is reachable now.
pub struct Link {
    pub acker: Acker,
    pub incoming: mpsc::Receiver<Received>,
    pub publisher: Publisher,
    pub deliveries: mpsc::UnboundedReceiver<Delivery>,
    pub connected: watch::Receiver<bool>,
    pub task: tokio::task::JoinHandle<()>,
    /// For a standby instance: told when it becomes the one that consumes.
    pub activation: Option<Activation>,
}

/// Starts the task that owns the event loop. It subscribes to `subscriptions` on every ConnAck
/// without a stored session, reconnects with backoff and jitter, and ends after a
/// disconnect requested through the client, or when `hard_stop` is cancelled. QoS 0 messages
/// dropped because the consumer is behind are counted in `dropped`.
///
/// On Linux both ends of Lantern's TCP connection skip a delay (`mqtt/quickack.rs`): the
/// acknowledgements the kernel would delay are sent at once, so a broker that keeps Nagle's
/// algorithm on (Mosquitto's default) does not hold the next event back waiting for them, and
/// TCP_NODELAY sends a flag or an ack as soon as it is written. Measured at 1,000 events/s,
/// every event flagged, publish to flag (latency benchmark, one run each, 2026-12-05), p99
/// (p50): on Mosquitto's defaults 19.1 ms (1.8) after idling and 18.4 ms (1.6) after a burst
/// before, 2.1 ms (0.8) and 3.2 ms (0.7) after; on the recommended settings 3.2 ms (2.0) and
/// 6.8 ms (1.7) before, 1.9 ms (0.8) and 3.3 ms (0.8) after. TCP_NODELAY alone made the
/// defaults worse (p50 8.8 ms), so the two go together: where the socket is not found, neither
/// is set.
pub fn connect(
    options: MqttOptions,
    subscriptions: Vec<(String, QoS)>,
    hard_stop: CancellationToken,
    dropped: Option<prometheus::IntCounter>,
) -> Link {
    connect_any(vec![options], subscriptions, hard_stop, dropped, None)
}

/// Holds a link back until it resolves: `true` to connect, `false` to give up (a standby
/// instance waiting for its turn, [`crate::runtime::ha`]).
pub type Gate = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>;

/// Told once a gated link may connect; the consumer answers on the sender it carries when it
/// is ready for the first message (its state read again from the database).
pub type Activation = oneshot::Receiver<oneshot::Sender<()>>;

/// [`connect`] to the first of several brokers (the nodes of a cluster) that answers: after a
/// failed connection the next is tried, round and round.
pub fn connect_any(
    mut brokers: Vec<MqttOptions>,
    subscriptions: Vec<(String, QoS)>,
    hard_stop: CancellationToken,
    dropped: Option<prometheus::IntCounter>,
    gate: Option<Gate>,
) -> Link {
    let (activate, activation) = match gate {
        Some(_) => {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    for o in &mut brokers {
        o.set_request_channel_capacity(REQUEST_CHANNEL);
    }
    let first = brokers.first().cloned().unwrap_or_else(|| MqttOptions::new("lantern", "127.0.0.1", 1883));
    let (client, eventloop) = AsyncClient::new(first, REQUEST_CHANNEL);
    let budget = Arc::new(Semaphore::new(MAX_BUFFERED_BYTES / 1024));
    let (tx, incoming) = mpsc::channel(MAX_BUFFERED_BYTES / 1024);
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let (delivered_tx, deliveries) = mpsc::unbounded_channel();
    let (connected_tx, connected) = watch::channel(false);
    let task = tokio::spawn(
        PollLoop {
            eventloop,
            client,
            subscriptions,
            tx,
            budget,
            dropped,
            connected: connected_tx,
            outbound: out_rx,
            acks: ack_rx,
            acks_waiting: VecDeque::new(),
            delivered: delivered_tx,
            tracker: PubackTracker::default(),
            waiting: VecDeque::new(),
            up: false,
            brokers,
            current: 0,
            gate,
            activate,
            quickack: QuickAck::default(),
            before: Before::default(),
        }
        .run(hard_stop),
    );
    Link { acker: Acker { tx: ack_tx }, incoming, publisher: Publisher { tx: out_tx }, deliveries, connected, task, activation }
}

struct PollLoop {
    eventloop: EventLoop,
    client: AsyncClient,
    subscriptions: Vec<(String, QoS)>,
    tx: mpsc::Sender<Received>,
    budget: Arc<Semaphore>,
    dropped: Option<prometheus::IntCounter>,
    connected: watch::Sender<bool>,
    outbound: mpsc::UnboundedReceiver<Outbound>,
    /// Acks from the consumer, and those not yet handed to rumqttc, in order.
    acks: mpsc::UnboundedReceiver<AckRequest>,
    acks_waiting: VecDeque<AckRequest>,
    delivered: mpsc::UnboundedSender<Delivery>,
    tracker: PubackTracker,
    /// Publishes asked for and not yet handed to rumqttc.
    waiting: VecDeque<Outbound>,
    /// Connected (ConnAck seen, no error since): publishes are handed over only then.
    up: bool,
    /// Every broker that may be tried, and the one tried now.
    brokers: Vec<MqttOptions>,
    current: usize,
    /// Waited for before the first connection, and who to tell when it opens.
    gate: Option<Gate>,
    activate: Option<oneshot::Sender<oneshot::Sender<()>>>,
    /// Sends the TCP acknowledgements the kernel holds back (see [`quickack`]), and the sockets
    /// open before this connection attempt, to find its own.
    quickack: QuickAck,
    before: Before,
}

impl PollLoop {
    async fn run(mut self, hard_stop: CancellationToken) {
        let client_id = self.eventloop.mqtt_options.client_id();
        if let Some(gate) = self.gate.take() {
            let open = tokio::select! {
                _ = hard_stop.cancelled() => false,
                open = gate => open,
            };
            if !open {
                return;
            }
            if let Some(tell) = self.activate.take() {
                let (ready_tx, ready_rx) = oneshot::channel();
                if tell.send(ready_tx).is_ok() {
                    tokio::select! {
                        _ = hard_stop.cancelled() => return,
                        _ = ready_rx => {}
                    }
                }
            }
        }
        self.before = Before::now();
        let mut backoff = Duration::from_millis(100);
        let mut awaiting_suback = false;
        let mut outbound_open = true;
        let mut acks_open = true;
        loop {
            self.submit_acks();
            self.submit();
            // Nothing read and not yet handed out: the next incoming packet comes off the network.
            let fresh = self.eventloop.state.events.is_empty();
            let event = tokio::select! {
                _ = hard_stop.cancelled() => break,
                a = self.acks.recv(), if acks_open => {
                    match a {
                        Some(a) => self.acks_waiting.push_back(a),
                        None => acks_open = false,
                    }
                    while let Ok(a) = self.acks.try_recv() {
                        self.acks_waiting.push_back(a);
                    }
                    continue;
                }
                o = self.outbound.recv(), if outbound_open => {
                    match o {
                        Some(o) => self.waiting.push_back(o),
                        None => outbound_open = false,
                    }
                    while let Ok(o) = self.outbound.try_recv() {
                        self.waiting.push_back(o);
                    }
                    continue;
                }
                e = self.eventloop.poll() => e,
            };
            if fresh && matches!(event, Ok(Event::Incoming(_))) {
                // Just read from the network: acknowledge it now, before handing it on, or the
                // broker may hold the next event back until it hears.
                self.quickack.now();
            }
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff = Duration::from_millis(100);
                    self.up = true;
                    self.quickack = QuickAck::found(&std::mem::take(&mut self.before), self.eventloop.mqtt_options.broker_address().1);
                    tracing::info!(client = %client_id, session_present = ack.session_present, "connected to MQTT broker");
                    if !ack.session_present {
                        let lost = self.tracker.session_lost();
                        if !lost.is_empty() {
                            tracing::warn!(
                                messages = lost.len(),
                                "the broker started a new session; publishing again what it had not acknowledged"
                            );
                            let _ = self.delivered.send(Delivery::Lost(lost));
                        }
                        if !self.subscriptions.is_empty() {
                            let filters = self.subscriptions.iter().map(|(t, q)| rumqttc::SubscribeFilter::new(t.clone(), *q));
                            match self.client.try_subscribe_many(filters) {
                                // Ready once the broker confirms the subscription: an event published
                                // between ConnAck and SubAck would otherwise be missed by a fresh session.
                                Ok(()) => awaiting_suback = true,
                                Err(e) => tracing::error!(error = %e, "could not queue the subscription"),
                            }
                        }
                    }
                    if !awaiting_suback {
                        let _ = self.connected.send(true);
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack.return_codes.iter().any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) {
                        tracing::error!(client = %client_id, "the broker refused a subscription; check its ACL for the event topics");
                    }
                    if std::mem::take(&mut awaiting_suback) {
                        let _ = self.connected.send(true);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if !self.deliver(p).await {
                        break; // the consumer has gone; nothing more will be acked
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    if let Some(tag) = self.tracker.puback(ack.pkid) {
                        let _ = self.delivered.send(Delivery::Acked(tag));
                    }
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => self.tracker.outgoing_publish(pkid),
                Ok(Event::Outgoing(Outgoing::AwaitAck(pkid))) => self.tracker.await_ack(pkid),
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    let _ = self.connected.send(false);
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = self.connected.send(false);
                    self.up = false;
                    self.quickack = QuickAck::default();
                    awaiting_suback = false;
                    if matches!(e, ConnectionError::RequestsDone) {
                        break;
                    }
                    let broker = self.eventloop.mqtt_options.broker_address();
                    tracing::warn!(client = %client_id, broker = %format!("{}:{}", broker.0, broker.1), error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT connection lost or refused; reconnecting");
                    if self.brokers.len() > 1 {
                        self.current = (self.current + 1) % self.brokers.len();
                        self.eventloop.mqtt_options = self.brokers[self.current].clone();
                        if self.current != 0 {
                            backoff = Duration::from_millis(100); // the next node at once; back off after a full round
                        }
                    }
                    let jitter = rand::thread_rng().gen_range(0..=backoff.as_millis() as u64 / 2);
                    tokio::select! {
                        _ = hard_stop.cancelled() => break,
                        _ = tokio::time::sleep(backoff + Duration::from_millis(jitter)) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    self.before = Before::now();
                }
            }
        }
        let _ = self.connected.send(false);
    }

    /// Hands waiting acks (and a disconnect after them) to rumqttc, in order, while its queue
    /// has room.
    fn submit_acks(&mut self) {
        while let Some(a) = self.acks_waiting.front() {
            let handed = match a {
                AckRequest::Ack(pkid, qos) => {
                    let mut p = Publish::new("", *qos, Vec::new());
                    p.pkid = *pkid;
                    self.client.try_ack(&p)
                }
                AckRequest::Disconnect => self.client.try_disconnect(),
            };
            match handed {
                Ok(()) => {
                    self.acks_waiting.pop_front();
                }
                Err(rumqttc::ClientError::TryRequest(_)) => break, // full: after the next event
                Err(e) => {
                    tracing::error!(error = %e, "could not queue an ack");
                    self.acks_waiting.pop_front();
                }
            }
        }
    }

    /// Hands waiting publishes to rumqttc while connected and while its queue has room.
    fn submit(&mut self) {
        while self.up && self.tracker.fifo.len() < MAX_SUBMITTED {
            let Some(o) = self.waiting.pop_front() else { break };
            match self.client.try_publish(o.topic.clone(), QoS::AtLeastOnce, false, o.payload) {
                Ok(()) => self.tracker.submitted(o.tag),
                Err(rumqttc::ClientError::TryRequest(rumqttc::Request::Publish(p)))
                | Err(rumqttc::ClientError::Request(rumqttc::Request::Publish(p))) => {
                    self.waiting.push_front(Outbound { topic: o.topic, payload: p.payload.to_vec(), tag: o.tag });
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not hand a publish to the MQTT client");
                    break;
                }
            }
        }
    }

    /// Passes a publish to the consumer within the receive budget. Returns false once the
    /// consumer has gone.
    async fn deliver(&mut self, p: Publish) -> bool {
        let units = (p.payload.len() / 1024 + 1).min(MAX_BUFFERED_BYTES / 1024) as u32;
        let permit = match Arc::clone(&self.budget).try_acquire_many_owned(units) {
            Ok(permit) => permit,
            Err(_) if p.qos == QoS::AtMostOnce => {
                // Nothing would send it again anyway; holding it would only grow memory.
                if let Some(c) = &self.dropped {
                    c.inc();
                }
                return true;
            }
            // QoS 1 waits here, and the broker holds the rest until we ack (backpressure).
            Err(_) => match Arc::clone(&self.budget).acquire_many_owned(units).await {
                Ok(permit) => permit,
                Err(_) => return false,
            },
        };
        self.tx.send(Received { at: std::time::Instant::now(), publish: p, _budget: Some(permit) }).await.is_ok()
    }
}

pub mod account;
mod quickack;
mod tracker;
