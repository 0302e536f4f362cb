//! Watching from outside: an MQTT probe, metrics, polling.

use crate::unique;
use rumqttc::{AsyncClient, Event, Packet, Publish, QoS};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A plain MQTT client for tests: publishes, and collects what arrives on its subscriptions.
pub struct Probe {
    pub client: AsyncClient,
    pub rx: mpsc::UnboundedReceiver<Publish>,
    stop: CancellationToken,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Probe {
    pub async fn connect(url: &str, filters: &[&str]) -> Probe {
        Probe::connect_with(url, filters, true, &unique("probe-")).await
    }

    /// `clean_session = false` keeps publishes queued across a broker restart.
    pub async fn connect_with(url: &str, filters: &[&str], clean: bool, id: &str) -> Probe {
        let mut o = lantern_shared::runtime::mqtt::options(url, id).expect("mqtt url");
        o.set_manual_acks(false).set_clean_session(clean).set_inflight(1000).set_max_packet_size(64 * 1024 * 1024, 8 * 1024 * 1024);
        let (client, mut eventloop) = AsyncClient::new(o, 100_000);
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let s = stop.clone();
        let subs: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let c = client.clone();
        tokio::spawn(async move {
            loop {
                let e = tokio::select! { _ = s.cancelled() => break, e = eventloop.poll() => e };
                match e {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for f in &subs {
                            let _ = c.try_subscribe(f.clone(), QoS::AtLeastOnce);
                        }
                        if subs.is_empty() {
                            let _ = ready_tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(p);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let expected = filters.len().max(1);
        for _ in 0..expected {
            tokio::time::timeout(Duration::from_secs(10), ready_rx.recv()).await.expect("probe connected and subscribed");
        }
        Probe { client, rx, stop }
    }

    pub async fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload).await.expect("publish queued");
    }

    /// The next JSON message for which `pred` holds, or `None` after `wait`.
    pub async fn next_json(&mut self, wait: Duration, pred: impl Fn(&serde_json::Value) -> bool) -> Option<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let p = tokio::time::timeout_at(deadline, self.rx.recv()).await.ok()??;
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p.payload) {
                if pred(&v) {
                    return Some(v);
                }
            }
        }
    }
}

/// The value of one series (`name{labels}` exactly as exposed) on a service's `/metrics`.
pub async fn metric(addr: std::net::SocketAddr, series: &str) -> f64 {
    let body = reqwest::get(format!("http://{addr}/metrics")).await.expect("metrics").text().await.expect("metrics body");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.rsplit_once(' ').filter(|(name, _)| *name == series).and_then(|(_, v)| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Polls `check` until it holds or `wait` passes.
pub async fn eventually<F, Fut>(wait: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
