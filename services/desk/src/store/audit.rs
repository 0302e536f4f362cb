//! The audit log (`desk_audit`): append-only and tamper-evident. Each entry carries the hash of
//! the entry before it (`prev_hash`) and its own hash over that and its fields (`hash`), so an
//! edited, inserted or deleted entry breaks the chain at that point ([`verify`]). Writers take
//! the log's lock (an advisory lock on PostgreSQL; SQLite's write lock, which every write
//! transaction takes at its start), so the chain has one order.

use lantern_shared::domain::mask::mask;
use lantern_shared::store::{Db, Tx};
use lantern_shared::{with_db, with_tx};
use sha2::{Digest, Sha256};

/// Key of the transaction-level advisory lock every PostgreSQL writer of the audit log takes.
pub const AUDIT_LOCK: i64 = 0x6c616e7465726e02;

/// One line of the audit log, to write.
pub struct AuditEntry<'a> {
    pub at_ms: i64,
    pub user: &'a str,
    pub role: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub reason: Option<&'a str>,
}

/// One line of the audit log as stored.
#[derive(sqlx::FromRow, Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub id: i64,
    pub at_ms: i64,
    pub user_name: String,
    pub role: String,
    pub action: String,
    pub target: String,
    pub reason: Option<String>,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

const COLUMNS: &str = "id, at_ms, user_name, role, action, target, reason, prev_hash, hash";

/// The hash of an entry: SHA-256 over the previous hash and the entry's fields, written as a
/// JSON array so no two different entries read the same.
pub fn entry_hash(prev: &str, at_ms: i64, user: &str, role: &str, action: &str, target: &str, reason: Option<&str>) -> String {
    let text = serde_json::json!([prev, at_ms, user, role, action, target, reason]).to_string();
    data_encoding::HEXLOWER.encode(&Sha256::digest(text.as_bytes()))
}

fn row_hash(r: &AuditRow) -> String {
    entry_hash(r.prev_hash.as_deref().unwrap_or_default(), r.at_ms, &r.user_name, &r.role, &r.action, &r.target, r.reason.as_deref())
}

async fn last(tx: &mut Tx<'_>) -> Result<Option<(i64, Option<String>)>, sqlx::Error> {
    with_tx!(tx, |c| sqlx::query_as("SELECT id, hash FROM desk_audit ORDER BY id DESC LIMIT 1").fetch_optional(&mut **c).await)
}

/// Appends an entry, chained to the last. The reason (free text) is masked first; the target is
/// an identifier Lantern chose (a flag id, a caller reference, a user name).
pub async fn audit(tx: &mut Tx<'_>, e: &AuditEntry<'_>) -> Result<(), sqlx::Error> {
    tx.serialize_on(AUDIT_LOCK).await?;
    let prev = match last(tx).await? {
        None => String::new(),
        Some((_, Some(hash))) => hash,
        // Entries from before the chain began: seal them first.
        Some((_, None)) => seal(tx).await?,
    };
    let (target, reason) = (e.target.to_string(), e.reason.map(mask));
    let hash = entry_hash(&prev, e.at_ms, e.user, e.role, e.action, &target, reason.as_deref());
    let q =
        "INSERT INTO desk_audit (at_ms, user_name, role, action, target, reason, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    with_tx!(tx, |c| sqlx::query(q)
        .bind(e.at_ms)
        .bind(e.user)
        .bind(e.role)
        .bind(e.action)
        .bind(&target)
        .bind(reason.as_deref())
        .bind(&prev)
        .bind(&hash)
        .execute(&mut **c)
        .await
        .map(|_| ()))
}

/// Chains entries written before the chain began (no hash yet), in order, after the last sealed
/// one. Returns the hash of the last entry.
pub async fn seal(tx: &mut Tx<'_>) -> Result<String, sqlx::Error> {
    tx.serialize_on(AUDIT_LOCK).await?;
    let q = format!("SELECT {COLUMNS} FROM desk_audit WHERE hash IS NULL ORDER BY id");
    let open: Vec<AuditRow> = with_tx!(tx, |c| sqlx::query_as(&q).fetch_all(&mut **c).await)?;
    let before = open.first().map(|r| r.id).unwrap_or(i64::MAX);
    let q = "SELECT hash FROM desk_audit WHERE id < $1 AND hash IS NOT NULL ORDER BY id DESC LIMIT 1";
    let mut prev: String = with_tx!(tx, |c| sqlx::query_scalar::<_, Option<String>>(q).bind(before).fetch_optional(&mut **c).await)?
        .flatten()
        .unwrap_or_default();
    for mut r in open {
        r.prev_hash = Some(prev.clone());
        let hash = row_hash(&r);
        let q = "UPDATE desk_audit SET prev_hash = $1, hash = $2 WHERE id = $3";
        with_tx!(tx, |c| sqlx::query(q).bind(&prev).bind(&hash).bind(r.id).execute(&mut **c).await.map(|_| ()))?;
        prev = hash;
    }
    if prev.is_empty() {
        prev = last(tx).await?.and_then(|(_, h)| h).unwrap_or_default();
    }
    Ok(prev)
}

/// Up to `limit` entries after `after_id`, oldest first.
pub async fn rows_after(db: &Db, after_id: i64, limit: i64) -> Result<Vec<AuditRow>, sqlx::Error> {
    let q = format!("SELECT {COLUMNS} FROM desk_audit WHERE id > $1 ORDER BY id LIMIT $2");
    with_db!(db, |pool| sqlx::query_as(&q).bind(after_id).bind(limit).fetch_all(pool).await)
}

/// The newest `limit` entries, newest first.
pub async fn newest(db: &Db, limit: i64) -> Result<Vec<AuditRow>, sqlx::Error> {
    let q = format!("SELECT {COLUMNS} FROM desk_audit ORDER BY id DESC LIMIT $1");
    with_db!(db, |pool| sqlx::query_as(&q).bind(limit).fetch_all(pool).await)
}

/// Entries about one target (a caller reference, say), oldest first.
pub async fn about(db: &Db, target: &str) -> Result<Vec<AuditRow>, sqlx::Error> {
    let q = format!("SELECT {COLUMNS} FROM desk_audit WHERE target = $1 ORDER BY id");
    with_db!(db, |pool| sqlx::query_as(&q).bind(target).fetch_all(pool).await)
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq)]
pub struct Broken {
    pub id: i64,
    pub at_ms: i64,
    pub why: &'static str,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub entries: u64,
    /// Entries not yet sealed (written before the chain began, by a desk not yet restarted).
    pub unsealed: u64,
    pub first_break: Option<Broken>,
}

/// Walks the whole log in order and reports the first broken link: an entry whose hash does
/// not match its fields (edited), or whose `prev_hash` is not the hash of the entry before it
/// (one inserted or deleted in between). The oldest entry left after retention pruning starts
/// the chain.
pub async fn verify(db: &Db) -> Result<Verified, sqlx::Error> {
    const PAGE: i64 = 5000;
    let mut out = Verified { entries: 0, unsealed: 0, first_break: None };
    let mut prev: Option<String> = None;
    let mut after = 0;
    loop {
        let rows = rows_after(db, after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for r in &rows {
            out.entries += 1;
            if out.first_break.is_some() {
                continue;
            }
            let Some(hash) = &r.hash else {
                out.unsealed += 1;
                continue;
            };
            let why = if *hash != row_hash(r) {
                Some("its fields do not match its hash: it was changed after it was written")
            } else if prev.as_ref().is_some_and(|p| r.prev_hash.as_ref() != Some(p)) {
                Some("it does not follow the entry before it: an entry was inserted or deleted here")
            } else {
                None
            };
            if let Some(why) = why {
                out.first_break = Some(Broken { id: r.id, at_ms: r.at_ms, why });
            }
            prev = Some(hash.clone());
        }
    }
    Ok(out)
}

/// Deletes entries older than `before_ms` (retention); returns how many.
pub async fn prune(tx: &mut Tx<'_>, before_ms: i64) -> Result<u64, sqlx::Error> {
    tx.serialize_on(AUDIT_LOCK).await?;
    with_tx!(tx, |c| sqlx::query("DELETE FROM desk_audit WHERE at_ms < $1")
        .bind(before_ms)
        .execute(&mut **c)
        .await
        .map(|r| r.rows_affected()))
}
