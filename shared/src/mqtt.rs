//! MQTT: one task owns the event loop; consumers get publishes through a channel and ack them
//! in receive order after their effects are committed.

use rand::Rng;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Host and port from `mqtt://host:port` (or `tcp://`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
}

impl BrokerAddress {
    pub fn parse(url: &str) -> Result<BrokerAddress, String> {
        let rest = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
            .ok_or_else(|| format!("`{url}` must start with mqtt:// (for example mqtt://127.0.0.1:1883)"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("`{url}` has a port that is not a number from 1 to 65535"))?),
            None => (rest, 1883),
        };
        if host.is_empty() || host.contains('/') || port == 0 {
            return Err(format!("`{url}` needs a host and port such as mqtt://127.0.0.1:1883"));
        }
        Ok(BrokerAddress { host: host.trim_matches(|c| c == '[' || c == ']').to_string(), port })
    }
}

/// Options every Lantern client uses: a stable id, a persistent session, manual acks.
pub fn options(url: &str, client_id: &str) -> Result<MqttOptions, String> {
    let addr = BrokerAddress::parse(url)?;
    let mut o = MqttOptions::new(client_id, addr.host, addr.port);
    o.set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(15))
        // Oversized events must reach us to be rejected and counted, not kill the connection.
        .set_max_packet_size(64 * 1024 * 1024, 1024 * 1024)
        .set_inflight(100);
    Ok(o)
}

/// A publish and when the event loop handed it over.
#[derive(Debug)]
pub struct Received {
    pub at: std::time::Instant,
    pub publish: Publish,
}

/// A running connection: the client to publish and ack with, the publishes received, and
/// whether the broker is reachable now.
pub struct Link {
    pub client: AsyncClient,
    pub incoming: mpsc::UnboundedReceiver<Received>,
    pub connected: watch::Receiver<bool>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the task that owns the event loop. It subscribes to `subscriptions` on every ConnAck
/// without a stored session, reconnects with backoff and jitter, and ends after a
/// disconnect requested through the client, or when `hard_stop` is cancelled.
///
/// TCP_NODELAY is left off here on purpose. What keeps flags fast is the broker sending without
/// Nagle's delay (`set_tcp_nodelay true` in config/mosquitto.conf). Measured at 1,000 events/s,
/// publish to flag, p50/p99: broker nodelay 0.7/2.2 ms; both ends 0.6/1.4 ms; neither
/// 0.7/10-16 ms; but this end alone, against a broker that keeps Nagle (Mosquitto's default,
/// the embedded rumqttd), 8.8 ms at p50. So a setting that helps by 0.8 ms in one case and
/// costs 8 ms in another stays off.
pub fn connect(options: MqttOptions, subscriptions: Vec<(String, QoS)>, hard_stop: CancellationToken) -> Link {
    let (client, eventloop) = AsyncClient::new(options, 4096);
    let (tx, incoming) = mpsc::unbounded_channel();
    let (connected_tx, connected) = watch::channel(false);
    let task = tokio::spawn(poll_loop(eventloop, client.clone(), subscriptions, tx, connected_tx, hard_stop));
    Link { client, incoming, connected, task }
}

async fn poll_loop(
    mut eventloop: EventLoop,
    client: AsyncClient,
    subscriptions: Vec<(String, QoS)>,
    tx: mpsc::UnboundedSender<Received>,
    connected: watch::Sender<bool>,
    hard_stop: CancellationToken,
) {
    let client_id = eventloop.mqtt_options.client_id();
    let mut backoff = Duration::from_millis(100);
    let mut awaiting_suback = false;
    loop {
        let event = tokio::select! {
            _ = hard_stop.cancelled() => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(100);
                tracing::info!(client = %client_id, session_present = ack.session_present, "connected to MQTT broker");
                if !ack.session_present && !subscriptions.is_empty() {
                    let filters = subscriptions.iter().map(|(t, q)| rumqttc::SubscribeFilter::new(t.clone(), *q));
                    match client.try_subscribe_many(filters) {
                        // Ready once the broker confirms the subscription: an event published
                        // between ConnAck and SubAck would otherwise be missed by a fresh session.
                        Ok(()) => awaiting_suback = true,
                        Err(e) => tracing::error!(error = %e, "could not queue the subscription"),
                    }
                }
                if !awaiting_suback {
                    let _ = connected.send(true);
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack.return_codes.iter().any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) {
                    tracing::error!(client = %client_id, "the broker refused a subscription; check its ACL for the event topics");
                }
                if std::mem::take(&mut awaiting_suback) {
                    let _ = connected.send(true);
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if tx.send(Received { at: std::time::Instant::now(), publish: p }).is_err() {
                    // The consumer has gone; nothing more will be acked.
                    break;
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                let _ = connected.send(false);
                break;
            }
            Ok(_) => {}
            Err(e) => {
                let _ = connected.send(false);
                awaiting_suback = false;
                if matches!(e, ConnectionError::RequestsDone) {
                    break;
                }
                tracing::warn!(client = %client_id, error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT connection lost; reconnecting");
                let jitter = rand::thread_rng().gen_range(0..=backoff.as_millis() as u64 / 2);
                tokio::select! {
                    _ = hard_stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff + Duration::from_millis(jitter)) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    let _ = connected.send(false);
}
