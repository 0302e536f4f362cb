//! The database: SQLite for one machine, PostgreSQL in production, one schema for both.
//!
//! Queries are written once with `$1`-style parameters, which both SQLite and PostgreSQL
//! accept, and run through [`Db`], which knows which pool it holds.

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database.url `{0}` is neither sqlite:// nor postgres://")]
    Url(String),
    #[error("cannot create the database folder {path}: {source}")]
    Folder { path: String, source: std::io::Error },
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A pool on either database.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same query text on whichever pool `$db` holds: `with_db!(db, |pool| ...)`.
#[macro_export]
macro_rules! with_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($pool) => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}

impl Db {
    /// Connects and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Db, StoreError> {
        let db = if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // Checkpoints run from [`checkpoint_wal`], not inside whichever commit crosses
                // the threshold: that commit would wait for the checkpoint's fsyncs.
                .pragma("wal_autocheckpoint", "0")
                // After a burst, give the log file back down to 64 MiB once it is checkpointed.
                .pragma("journal_size_limit", "67108864");
            let path = opts.get_filename().to_path_buf();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder { path: dir.display().to_string(), source })?;
            }
            // Several services may share one file in `lantern run`; busy_timeout queues writers.
            let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await?;
            SQLITE_MIGRATIONS.run(&pool).await?;
            Db::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new().max_connections(8).acquire_timeout(Duration::from_secs(10)).connect_with(opts).await?;
            // Several services migrate the same database at start-up; the migrator takes an advisory lock.
            POSTGRES_MIGRATIONS.run(&pool).await?;
            Db::Postgres(pool)
        } else {
            return Err(StoreError::Url(url.to_string()));
        };
        Ok(db)
    }

    /// True when a trivial query answers.
    pub async fn ping(&self) -> bool {
        let q = "SELECT 1";
        with_db!(self, |pool| sqlx::query(q).execute(pool).await.is_ok())
    }

    pub async fn close(&self) {
        with_db!(self, |pool| pool.close().await)
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }
}

/// Copies SQLite's write-ahead log back into the database every ten seconds until `stop`, on a
/// connection of its own, so no event's commit waits for a checkpoint. PASSIVE never blocks
/// readers or writers; what it cannot copy now it copies next time. Each checkpoint's fsyncs
/// still slow the commits around them through the disk, so they are kept rare: at 1,000
/// events/s, checkpoints every second put p99 flag latency at 4-5 ms on a busy disk, every ten
/// seconds at 1.6-1.7 ms.
pub async fn checkpoint_wal(pool: SqlitePool, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(10));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = every.tick() => {}
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            tracing::warn!(error = %e, "SQLite checkpoint failed; will try again");
        }
    }
}

/// True when an error says the database is unreachable or busy, so the same work may succeed
/// later; false when it refused the work for what it holds (a NUL byte in text on PostgreSQL,
/// a value too long, a broken constraint), which no retry will mend.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_PROTOCOL,
                // and their extended codes (the primary code is the low byte).
                let primary = code.parse::<i64>().map(|c| c & 0xff).unwrap_or(0);
                matches!(primary, 5 | 6 | 10 | 13 | 14 | 15)
            } else {
                // PostgreSQL classes: 08 connection exception, 53 insufficient resources, 57P
                // operator intervention (shutdown), 40001/40P01 serialization failure and deadlock,
                // 55P03 lock not available, 58 system error.
                code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57P")
                    || code.starts_with("58")
                    || matches!(code.as_str(), "40001" | "40P01" | "55P03")
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unreachable_is_transient_and_a_refused_value_is_not() {
        assert!(super::is_transient(&sqlx::Error::PoolTimedOut));
        assert!(super::is_transient(&sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))));
        assert!(!super::is_transient(&sqlx::Error::RowNotFound));
        assert!(!super::is_transient(&sqlx::Error::ColumnNotFound("x".into())));
    }
}
