//! Routes every service serves on its own `listen` address: `/healthz`, `/readyz`, `/metrics`.

use crate::store::Db;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use prometheus::Registry;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What `/readyz` looks at.
#[derive(Clone)]
pub struct Readiness {
    pub mqtt: watch::Receiver<bool>,
    pub db: Option<Db>,
}

#[derive(Clone)]
struct Ops {
    registry: Registry,
    readiness: Arc<Readiness>,
}

/// The health and metrics routes, to be merged into a service's own router.
pub fn ops_router(registry: Registry, readiness: Readiness) -> Router {
    let ops = Ops { registry, readiness: Arc::new(readiness) };
    Router::new()
        .route("/healthz", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
}

async fn readyz(State(ops): State<Ops>) -> impl IntoResponse {
    let mqtt = *ops.readiness.mqtt.borrow();
    let db = match &ops.readiness.db {
        Some(db) => db.ping().await,
        None => true,
    };
    let status = if mqtt && db { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(serde_json::json!({"ready": mqtt && db, "mqtt": mqtt, "database": db})))
}

async fn metrics(State(ops): State<Ops>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::runtime::telemetry::render(&ops.registry))
}

/// Binds a listener; port 0 picks a free port (tests read the real one back).
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Serves until `shutdown` is cancelled, then finishes requests in flight. Handlers can read
/// the client's address (`ConnectInfo<SocketAddr>`).
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// A certificate chain and key for serving HTTPS, read and checked.
#[derive(Clone)]
pub struct Tls(axum_server::tls_rustls::RustlsConfig);

impl Tls {
    /// Reads a PEM certificate chain and a PEM private key.
    pub async fn load(cert: &Path, key: &Path) -> anyhow::Result<Tls> {
        // One TLS implementation for the whole process (ring); a second call changes nothing.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
            .await
            .map_err(|e| anyhow::anyhow!("cannot use the TLS certificate {} and key {}: {e}", cert.display(), key.display()))?;
        Ok(Tls(config))
    }
}

/// [`serve`] over HTTPS.
pub async fn serve_tls(listener: TcpListener, router: Router, shutdown: CancellationToken, tls: Tls) -> std::io::Result<()> {
    let handle = axum_server::Handle::new();
    let stop = handle.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stop.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    axum_server::from_tcp_rustls(listener.into_std()?, tls.0)
        .handle(handle)
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await
}
