//! The database: SQLite for one machine, PostgreSQL in production, one schema for both.
//!
//! One approach everywhere: every statement is written once, with `$1`-style parameters that
//! both databases accept, in a named function of the store module of the service that owns the
//! table, and runs on whichever database [`Db`] (a pool) or [`Tx`] (a transaction) holds through
//! [`with_db!`] and [`with_tx!`], which expand the one text for each. Where the two databases
//! need different SQL (locking, the duplicate check), the function says so and branches on
//! [`Db::kind`]. Tables are prefixed by the service that owns them (`flagger_`, `demand_`,
//! `desk_`); `shared_processed_events` belongs to this module ([`processed`]).

pub mod erasures;
pub mod processed;

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

/// A transaction on either database.
pub enum Tx<'a> {
    Sqlite(sqlx::Transaction<'a, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'a, sqlx::Postgres>),
}

/// Runs the same statement text on whichever transaction `$tx` holds:
/// `with_tx!(tx, |conn| sqlx::query(..).execute(&mut **conn).await)`.
#[macro_export]
macro_rules! with_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            $crate::store::Tx::Sqlite($conn) => $body,
            $crate::store::Tx::Postgres($conn) => $body,
        }
    };
}

/// Starts a query `<sql> (<id>, <id>, ...)` with each id a bound parameter: the list of an
/// `IN`. Callers pass at most [`CHUNK`] ids.
pub fn with_list<'a, DB: sqlx::Database>(sql: impl Into<String>, ids: &[&'a str]) -> sqlx::QueryBuilder<'a, DB>
where
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut q = sqlx::QueryBuilder::new(sql);
    q.push("(");
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    list.push_unseparated(")");
    q
}

/// Rows per multi-row statement or list (well under SQLite's and PostgreSQL's parameter limits).
pub const CHUNK: usize = 256;

/// Which database a pool or transaction is on, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

impl Tx<'_> {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        with_tx!(self, |tx| tx.commit().await)
    }

    pub fn kind(&self) -> Kind {
        match self {
            Tx::Sqlite(_) => Kind::Sqlite,
            Tx::Postgres(_) => Kind::Postgres,
        }
    }

    /// Holds a transaction-level advisory lock (PostgreSQL) so transactions taking the same
    /// `key` commit in the order they took it; SQLite has one writer at a time anyway.
    pub async fn serialize_on(&mut self, key: i64) -> Result<(), sqlx::Error> {
        if let Tx::Postgres(tx) = self {
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(key).execute(&mut **tx).await?;
        }
        Ok(())
    }
}

impl Db {
    /// Starts a write transaction. On SQLite it takes the write lock at once (IMMEDIATE), so
    /// the reads that decide what to write cannot be overtaken by another writer of the file.
    pub async fn begin(&self) -> Result<Tx<'static>, sqlx::Error> {
        Ok(match self {
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// Connects and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Db, StoreError> {
        let db = if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(BUSY_TIMEOUT)
                .foreign_keys(true)
                // Checkpoints run from [`checkpoint_wal`], not inside whichever commit crosses
                // the threshold: that commit would wait for the checkpoint's fsyncs.
                .pragma("wal_autocheckpoint", "0")
                // The log file is never cut inside a commit: [`checkpoint_wal`] empties it
                // once writes have paused.
                .pragma("journal_size_limit", "-1")
                // Statement journals and sorts stay in memory: on disk, each multi-row write
                // created, wrote and deleted a file under /var/tmp, and those writes queued
                // behind the log's on the same disk (4-9 ms each while a checkpoint ran).
                .pragma("temp_store", "memory");
            let path = opts.get_filename().to_path_buf();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder { path: dir.display().to_string(), source })?;
            }
            // Several services may share one file in `lantern run`; busy_timeout queues writers.
            // A connection to a file does not drop, so none is pinged before use: a round trip to
            // SQLite's worker thread saved on every transaction.
            let pool = SqlitePoolOptions::new().max_connections(4).test_before_acquire(false).connect_with(opts).await?;
            SQLITE_MIGRATIONS.run(&pool).await?;
            Db::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new().max_connections(8).acquire_timeout(Duration::from_secs(10)).connect_with(opts).await?;
            // Several services migrate the same database at start-up; the migrator takes an advisory lock.
            POSTGRES_MIGRATIONS.run(&pool).await?;
            Db::Postgres(pool)
        } else {
            return Err(StoreError::Url(redact_url(url)));
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

    pub fn kind(&self) -> Kind {
        match self {
            Db::Sqlite(_) => Kind::Sqlite,
            Db::Postgres(_) => Kind::Postgres,
        }
    }
}

/// How long a statement waits for another connection's lock on SQLite before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps SQLite's write-ahead log short until `stop`, without ever making an event's commit
/// wait for it; it works on a pool connection of its own, never inside a commit.
/// - Every ten seconds a PASSIVE checkpoint copies the log into the database. PASSIVE never
///   blocks readers or writers; what it cannot copy now it copies next time. Its fsyncs still
///   slow the commits around them through the disk, so they are kept rare: at 1,000 events/s,
///   checkpoints every second put p99 flag latency at 4-5 ms on a busy disk, every ten seconds
///   at 1.6-1.7 ms.
/// - Once the log has not changed for two seconds, it copies what is left and empties the log
///   file (TRUNCATE), waiting for no one: if a writer or reader is busy it tries again a second
///   later. A burst leaves a log of hundreds of megabytes. SQLite would otherwise give that
///   back inside the first commit after the log restarts (`journal_size_limit`), and that
///   held the first flag after a quiet spell for about a second.
pub async fn checkpoint_wal(pool: SqlitePool, stop: CancellationToken) {
    let mut wal = pool.connect_options().get_filename().as_os_str().to_owned();
    wal.push("-wal");
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut since_checkpoint = 0u32;
    let mut last_seen = None;
    let mut quiet_for = 0u32;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = every.tick() => {}
        }
        since_checkpoint += 1;
        // The log file's size and modification time: unchanged means no commit since.
        let seen = std::fs::metadata(&wal).ok().map(|m| (m.len(), m.modified().ok()));
        quiet_for = if seen.is_some() && seen == last_seen { quiet_for + 1 } else { 0 };
        last_seen = seen;
        let holds_frames = seen.is_some_and(|(len, _)| len > 0);
        let done = if quiet_for >= 2 && holds_frames {
            empty_wal(&pool).await
        } else if since_checkpoint >= 10 {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await.map(|_| ())
        } else {
            continue;
        };
        since_checkpoint = 0;
        if let Err(e) = done {
            tracing::warn!(error = %e, "SQLite checkpoint failed; will try again");
        }
    }
}

/// Copies the whole log into the database and truncates the log file to nothing, if no
/// connection is writing or reading the log right now; otherwise leaves it for the next try.
/// The copying is done first by a PASSIVE checkpoint, which holds no lock writers need, so
/// TRUNCATE, which holds the write lock, only has the truncation left to do.
async fn empty_wal(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(pool).await?;
    let mut conn = pool.acquire().await?;
    sqlx::query("PRAGMA busy_timeout = 0").execute(&mut *conn).await?;
    let truncated = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut *conn).await;
    let restored = sqlx::query(&format!("PRAGMA busy_timeout = {}", BUSY_TIMEOUT.as_millis())).execute(&mut *conn).await;
    if restored.is_err() {
        // Never hand a connection that gives up at once back to the pool.
        conn.close_on_drop();
    }
    truncated?;
    restored.map(|_| ())
}

/// A URL with any password in it replaced by `***`, for logs and command output.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(name, _)| name);
            let tail = redact_query_password(tail);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => format!("{scheme}://{authority}{}", redact_query_password(tail)),
    }
}

/// `password=` in a query string (libpq accepts it there too) replaced by `***`.
fn redact_query_password(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else { return tail.to_string() };
    let parts: Vec<String> = query
        .split('&')
        .map(|p| if p.to_ascii_lowercase().starts_with("password=") { "password=***".to_string() } else { p.to_string() })
        .collect();
    format!("{path}?{}", parts.join("&"))
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

    /// A burst leaves a long write-ahead log. No commit cuts it (that held the first flag
    /// after a quiet spell); once writes pause, the checkpointer copies it into the database
    /// and empties the file.
    #[tokio::test]
    async fn the_log_a_burst_leaves_is_emptied_once_writes_pause() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let db = super::Db::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.expect("a database");
        let super::Db::Sqlite(pool) = &db else { panic!("a sqlite:// URL opens SQLite") };
        sqlx::query("CREATE TABLE burst (n INTEGER, pad TEXT)").execute(pool).await.expect("create");
        for n in 0..2000i64 {
            sqlx::query("INSERT INTO burst VALUES ($1, $2)").bind(n).bind("x".repeat(1000)).execute(pool).await.expect("insert");
        }
        let wal = dir.path().join("t.db-wal");
        let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert!(size() > 2_000_000, "2,000 commits of 1 kB each leave a log of megabytes, not {} bytes", size());

        // True once the log file is empty, polled for at most 20 s.
        let emptied = || async {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while size() > 0 && std::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            size() == 0
        };

        let stop = tokio_util::sync::CancellationToken::new();
        let checkpoints = tokio::spawn(super::checkpoint_wal(pool.clone(), stop.clone()));
        assert!(emptied().await, "the log is emptied within seconds of the last write");
        let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM burst").fetch_one(pool).await.expect("count");
        assert_eq!(rows, 2000);

        // Writing again starts a new log, and a pause empties that one too.
        sqlx::query("INSERT INTO burst VALUES (2000, 'y')").execute(pool).await.expect("insert");
        assert!(size() > 0);
        assert!(emptied().await, "the new log is emptied too");
        stop.cancel();
        checkpoints.await.expect("the checkpointer stops when asked");
        db.close().await;
    }

    #[test]
    fn passwords_never_reach_a_log_line() {
        assert_eq!(
            super::redact_url("postgres://lantern:s3cret@db.internal:5432/lantern"),
            "postgres://lantern:***@db.internal:5432/lantern"
        );
        assert_eq!(
            super::redact_url("postgres://db/lantern?user=l&password=s3cret&sslmode=verify-full"),
            "postgres://db/lantern?user=l&password=***&sslmode=verify-full"
        );
        assert_eq!(super::redact_url("sqlite://data/lantern.db"), "sqlite://data/lantern.db");
        assert!(!super::redact_url("mqtts://svc:pw@broker:8883").contains("pw"));
    }
}
