//! `lantern-broker`: an MQTT broker inside the process (rumqttd), so one machine needs
//! nothing installed. Production uses Mosquitto, EMQX or HiveMQ instead.

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// What [`start`] found at the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// The embedded broker is listening.
    Embedded(SocketAddr),
    /// Something else already listens there (another broker); Lantern uses it.
    AlreadyServed(SocketAddr),
}

fn config(listen: SocketAddr) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        // Large enough that an oversized event reaches the services to be rejected and counted.
        max_payload_size: 2 * 1024 * 1024,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings { name: "lantern-v4".into(), listen, tls: None, next_connection_delay_ms: 1, connections };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1024,
            max_outgoing_packet_count: 1000,
            max_segment_size: 64 * 1024 * 1024,
            max_segment_count: 10,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("lantern".to_string(), server)])),
        ..Config::default()
    }
}

/// Starts the broker on `listen` (loopback only) and waits until it accepts connections.
pub fn start(listen: SocketAddr) -> anyhow::Result<Started> {
    anyhow::ensure!(
        listen.ip().is_loopback(),
        "broker.listen {listen} must be a loopback address: the embedded broker has no authentication"
    );
    if let Err(e) = TcpListener::bind(listen) {
        if TcpStream::connect_timeout(&listen, Duration::from_secs(1)).is_ok() {
            tracing::warn!(%listen, "the embedded broker's address is taken by another server (a broker already running?); using it");
            return Ok(Started::AlreadyServed(listen));
        }
        anyhow::bail!("cannot listen on broker.listen {listen}: {e}");
    }
    let mut broker = Broker::new(config(listen));
    std::thread::Builder::new().name("lantern-broker".into()).spawn(move || {
        if let Err(e) = broker.start() {
            tracing::error!(error = %e, "embedded broker stopped");
        }
    })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok() {
            tracing::info!(%listen, "embedded MQTT broker listening");
            return Ok(Started::Embedded(listen));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("the embedded broker did not start listening on {listen} within 10s")
}
