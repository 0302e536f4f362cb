//! Standby instances (SPEC section 10). On PostgreSQL any number of instances of a consuming
//! service may run against one database and broker: the instance holding the service's
//! advisory lock consumes (`lantern_ha_active` 1); the others wait (0) with their HTTP routes
//! up, and one of them takes over within a second or so of the holder's database session
//! ending (the process died or stopped, or its machine went). All use the same MQTT client id,
//! so the new holder resumes the same persistent session: whatever the old one had not
//! acknowledged is delivered again, and the processed-event table keeps it from counting twice.
//! On SQLite (one machine, one instance) an instance is active at once.

use crate::store::Db;
use sqlx::Connection;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often a standby asks for the lock, and the holder checks it still has its session.
const POLL: Duration = Duration::from_millis(500);

/// The lock of a service in a deployment: the same on every instance (its MQTT client id),
/// different for each service. FNV-1a, so it is stable across builds and machines.
pub fn lock_key(client_id: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "lantern-ha:".bytes().chain(client_id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// This instance consumes while it holds one of these. Dropping it ends the session that holds
/// the lock, so a standby takes over.
pub struct Leader {
    /// Cancelled when the session that holds the lock is lost: stop consuming at once, as a
    /// standby may already have taken over.
    pub lost: CancellationToken,
    release: CancellationToken,
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.release.cancel();
    }
}

/// Waits until this instance may consume: at once on SQLite; on PostgreSQL once it holds the
/// lock for `client_id`. `None` if `shutdown` comes first.
pub async fn acquire(db: &Db, client_id: &str, shutdown: &CancellationToken) -> Option<Leader> {
    let Db::Postgres(pool) = db else {
        return Some(Leader { lost: CancellationToken::new(), release: CancellationToken::new() });
    };
    let key = lock_key(client_id);
    let options = pool.connect_options();
    let mut waiting_logged = false;
    loop {
        let attempt = async {
            let mut conn = sqlx::PgConnection::connect_with(&options).await?;
            loop {
                let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(&mut conn).await?;
                if held {
                    return Ok::<_, sqlx::Error>(conn);
                }
                if !waiting_logged {
                    tracing::info!(client = client_id, "standing by: another instance of this service is active");
                    waiting_logged = true;
                }
                tokio::time::sleep(POLL).await;
            }
        };
        let conn = tokio::select! {
            _ = shutdown.cancelled() => return None,
            r = attempt => r,
        };
        match conn {
            Ok(conn) => {
                tracing::info!(client = client_id, "active: this instance consumes");
                let (lost, release) = (CancellationToken::new(), CancellationToken::new());
                tokio::spawn(hold(conn, lost.clone(), release.clone(), client_id.to_string()));
                return Some(Leader { lost, release });
            }
            Err(e) => {
                tracing::warn!(error = %e, "standby could not reach the database; trying again");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(POLL * 4) => {}
                }
            }
        }
    }
}

/// Keeps the session that holds the lock, checking it; tells `lost` if it breaks.
async fn hold(mut conn: sqlx::PgConnection, lost: CancellationToken, release: CancellationToken, client_id: String) {
    loop {
        tokio::select! {
            _ = release.cancelled() => {
                let _ = conn.close().await;
                return;
            }
            _ = tokio::time::sleep(POLL) => {}
        }
        let check = tokio::time::timeout(POLL * 4, sqlx::query("SELECT 1").execute(&mut conn)).await;
        if !matches!(check, Ok(Ok(_))) {
            tracing::error!(client = %client_id, "lost the database session that made this instance active; stopping so a standby takes over");
            lost.cancel();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_service_of_a_deployment_has_its_own_stable_lock() {
        assert_eq!(super::lock_key("lantern-flagger"), super::lock_key("lantern-flagger"));
        assert_ne!(super::lock_key("lantern-flagger"), super::lock_key("lantern-demand"));
        assert_ne!(super::lock_key("lantern-flagger"), super::lock_key("force2-flagger"));
    }
}
