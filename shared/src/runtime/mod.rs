//! What runs a service: the MQTT link, the consumer loop, the service shell that starts and
//! stops it all, the health and metrics routes, and telemetry.

pub mod consumer;
pub mod ha;
pub mod http;
pub mod mqtt;
pub mod service;
pub mod telemetry;

/// Locks state a service shares with its `/metrics` scrape. A panic while it is held would
/// poison it; the state is then rebuilt from the database by the consumer's recovery, so the
/// lock carries on rather than failing every scrape after.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
