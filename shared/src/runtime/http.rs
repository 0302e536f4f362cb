//! Routes every service serves on its own `listen` address: `/healthz`, `/readyz`, `/metrics`.

use crate::store::Db;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use prometheus::Registry;
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

/// Serves until `shutdown` is cancelled, then finishes requests in flight.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}
