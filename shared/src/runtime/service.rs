//! What every Lantern service builds and starts the same way: its database, its listener and
//! metrics registry, its broker connection, and the health routes beside its own.

use crate::config::reload::Reload;
use crate::runtime::http::{self, Readiness};
use crate::runtime::mqtt::{self, Link};
use crate::store::Db;
use crate::Config;
use anyhow::Context;
use axum::Router;
use prometheus::{IntGauge, Registry};
use rumqttc::QoS;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct ServiceBase {
    pub name: &'static str,
    pub db: Db,
    pub registry: Registry,
    pub reloads: Option<broadcast::Receiver<Reload>>,
    listener: Option<TcpListener>,
    addr: SocketAddr,
    /// Every task the service runs besides its consumer loop: HTTP server, checkpoints,
    /// connection gauge. [`ServiceBase::stop`] waits for them all.
    tasks: TaskTracker,
    /// Broker settings need a restart, so they are fixed here; the rest of the config lives
    /// with the service and reloads.
    mqtt: crate::config::MqttConfig,
    client_id: String,
    /// Cancelled when this instance lost the lock that made it the active one.
    ha_lost: CancellationToken,
}

/// A started service's broker link; its HTTP server and helpers run in the base's task tracker.
pub struct Started {
    pub link: Link,
    pub hard_stop: CancellationToken,
}

impl ServiceBase {
    /// Connects to the database (migrating it) and binds `listen` (port 0 picks a free port).
    pub async fn build(name: &'static str, config: &Config, listen: &str) -> anyhow::Result<ServiceBase> {
        let db = Db::connect(&config.database.url).await.with_context(|| format!("{name} database"))?;
        let listener = http::bind(listen).await?;
        let addr = listener.local_addr()?;
        Ok(ServiceBase {
            name,
            db,
            registry: Registry::new(),
            reloads: None,
            listener: Some(listener),
            addr,
            tasks: TaskTracker::new(),
            mqtt: config.mqtt.clone(),
            client_id: config.client_id(name),
            ha_lost: CancellationToken::new(),
        })
    }

    /// The address the service serves on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connects to the broker as `<client_id>-<name>` with `subscriptions`, keeps
    /// `connected` in step, and serves `routes` with `/healthz`, `/readyz` and `/metrics`
    /// until `shutdown`.
    pub fn start(
        &mut self,
        subscriptions: Vec<String>,
        connected: &IntGauge,
        dropped: Option<prometheus::IntCounter>,
        routes: Router,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Started> {
        self.start_with(subscriptions, connected, dropped, routes, shutdown, None)
    }

    /// [`ServiceBase::start`], serving HTTPS when `tls` is given.
    pub fn start_with(
        &mut self,
        subscriptions: Vec<String>,
        connected: &IntGauge,
        dropped: Option<prometheus::IntCounter>,
        routes: Router,
        shutdown: &CancellationToken,
        tls: Option<http::Tls>,
    ) -> anyhow::Result<Started> {
        let listener = self.listener.take().context("a service starts once")?;
        let options = mqtt::account::client_options(&self.mqtt, &self.client_id).map_err(anyhow::Error::msg)?;
        let hard_stop = CancellationToken::new();
        let gate = self.ha_gate(shutdown, &hard_stop)?;
        let subscriptions = subscriptions.into_iter().map(|t| (t, QoS::AtLeastOnce)).collect();
        let link = mqtt::connect_any(options, subscriptions, hard_stop.clone(), dropped, gate);
        self.tasks.spawn(crate::runtime::telemetry::follow_connection(link.connected.clone(), connected.clone()));
        let ops = http::ops_router(self.registry.clone(), Readiness { mqtt: link.connected.clone(), db: Some(self.db.clone()) });
        let name = self.name;
        let router = routes.merge(ops);
        let stop = shutdown.clone();
        self.tasks.spawn(async move {
            let served = match tls {
                Some(tls) => http::serve_tls(listener, router, stop, tls).await,
                None => http::serve(listener, router, stop).await,
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "{name}: the HTTP server stopped");
            }
        });
        if let Db::Sqlite(pool) = &self.db {
            self.tasks.spawn(crate::store::checkpoint_wal(pool.clone(), shutdown.clone()));
        }
        tracing::info!(listen = %self.addr, "{} running", self.name);
        Ok(Started { link, hard_stop })
    }

    /// On PostgreSQL, holds the link back until this instance holds the service's lock (a
    /// standby waits; [`crate::runtime::ha`]); `lantern_ha_active{service}` says which it is.
    fn ha_gate(&self, shutdown: &CancellationToken, hard_stop: &CancellationToken) -> anyhow::Result<Option<mqtt::Gate>> {
        let opts =
            prometheus::Opts::new("lantern_ha_active", "1 on the instance that consumes, 0 on a standby").const_label("service", self.name);
        let active = IntGauge::with_opts(opts)?;
        self.registry.register(Box::new(active.clone()))?;
        if !matches!(self.db, Db::Postgres(_)) {
            active.set(1);
            return Ok(None);
        }
        let (db, id, stop, hard, lost) =
            (self.db.clone(), self.client_id.clone(), shutdown.clone(), hard_stop.clone(), self.ha_lost.clone());
        Ok(Some(Box::pin(async move {
            let Some(leader) = crate::runtime::ha::acquire(&db, &id, &stop).await else { return false };
            active.set(1);
            tokio::spawn(async move {
                tokio::select! {
                    _ = leader.lost.cancelled() => {
                        active.set(0);
                        lost.cancel();
                        stop.cancel();
                        hard.cancel();
                    }
                    _ = stop.cancelled() => {}
                }
                drop(leader);
            });
            true
        })))
    }

    /// Runs a task of the service's own until the service stops.
    pub fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, task: F) {
        self.tasks.spawn(task);
    }

    /// Waits for every task the service started (after shutdown is cancelled) and closes the
    /// database.
    /// An error when the service stopped because it lost its turn as the active instance, so
    /// the process exits non-zero and its supervisor starts it again (as a standby).
    pub async fn stop(&self) -> anyhow::Result<()> {
        self.tasks.close();
        if tokio::time::timeout(std::time::Duration::from_secs(10), self.tasks.wait()).await.is_err() {
            tracing::warn!("{}: some tasks did not stop within 10 s", self.name);
        }
        self.db.close().await;
        if self.ha_lost.is_cancelled() {
            anyhow::bail!("{} lost the database session that made it the active instance", self.name);
        }
        Ok(())
    }
}
