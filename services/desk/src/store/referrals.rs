//! Referrals to early-action teams (`desk_referrals`).

use lantern_shared::store::{with_list, Db, Tx, CHUNK};
use lantern_shared::{with_db, with_tx};
use std::collections::HashMap;

/// A referral as stored. `risk_factors` is a JSON list.
#[derive(sqlx::FromRow, Debug, Clone, PartialEq)]
pub struct ReferralRow {
    pub referral_id: String,
    pub caller_ref: Option<String>,
    pub team: String,
    pub risk_factors: String,
    pub note: Option<String>,
    pub status: String,
    pub flag_id: Option<String>,
    pub referred_by: String,
    pub referred_ms: i64,
    pub engaged_by: Option<String>,
    pub engaged_ms: Option<i64>,
    pub closed_by: Option<String>,
    pub closed_ms: Option<i64>,
    pub updated_ms: i64,
}

impl ReferralRow {
    pub fn risk_factors(&self) -> Vec<String> {
        serde_json::from_str(&self.risk_factors).unwrap_or_default()
    }

    /// When the intervention started: when the team engaged, or the referral until then.
    pub fn intervention_ms(&self) -> i64 {
        self.engaged_ms.unwrap_or(self.referred_ms)
    }
}

pub(crate) const REFERRAL_COLUMNS: &str = "referral_id, caller_ref, team, risk_factors, note, status, flag_id, referred_by, referred_ms, \
     engaged_by, engaged_ms, closed_by, closed_ms, updated_ms";

pub async fn insert_referral(tx: &mut Tx<'_>, r: &ReferralRow) -> Result<(), sqlx::Error> {
    let q = format!("INSERT INTO desk_referrals ({REFERRAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)");
    with_tx!(tx, |c| sqlx::query(&q)
        .bind(&r.referral_id)
        .bind(&r.caller_ref)
        .bind(&r.team)
        .bind(&r.risk_factors)
        .bind(&r.note)
        .bind(&r.status)
        .bind(&r.flag_id)
        .bind(&r.referred_by)
        .bind(r.referred_ms)
        .bind(&r.engaged_by)
        .bind(r.engaged_ms)
        .bind(&r.closed_by)
        .bind(r.closed_ms)
        .bind(r.updated_ms)
        .execute(&mut **c)
        .await
        .map(|_| ()))
}

/// Marks a referral engaged (from `referred`) or closed (from `referred` or `engaged`) at
/// `at_ms`, by `by`, adding `note`; 0 rows when the referral is not in a state to allow it.
pub async fn advance_referral(
    tx: &mut Tx<'_>,
    id: &str,
    engaged: bool,
    at_ms: i64,
    by: &str,
    note: &str,
    now_ms: i64,
) -> Result<u64, sqlx::Error> {
    let q = if engaged {
        "UPDATE desk_referrals SET status = 'engaged', engaged_ms = $1, engaged_by = $2, note = CASE WHEN $3 = '' THEN note ELSE $3 END, updated_ms = $4 \
         WHERE referral_id = $5 AND status = 'referred'"
    } else {
        "UPDATE desk_referrals SET status = 'closed', closed_ms = $1, closed_by = $2, note = CASE WHEN $3 = '' THEN note ELSE $3 END, updated_ms = $4 \
         WHERE referral_id = $5 AND status <> 'closed'"
    };
    with_tx!(tx, |c| sqlx::query(q)
        .bind(at_ms)
        .bind(by)
        .bind(note)
        .bind(now_ms)
        .bind(id)
        .execute(&mut **c)
        .await
        .map(|r| r.rows_affected()))
}

pub async fn referral(db: &Db, id: &str) -> Result<Option<ReferralRow>, sqlx::Error> {
    let q = format!("SELECT {REFERRAL_COLUMNS} FROM desk_referrals WHERE referral_id = $1");
    with_db!(db, |pool| sqlx::query_as(&q).bind(id).fetch_optional(pool).await)
}

/// A caller's referral still open (not closed), if any.
pub async fn open_referral(tx: &mut Tx<'_>, caller_ref: &str) -> Result<Option<ReferralRow>, sqlx::Error> {
    let q = format!(
        "SELECT {REFERRAL_COLUMNS} FROM desk_referrals WHERE caller_ref = $1 AND status <> 'closed' ORDER BY referred_ms DESC LIMIT 1"
    );
    with_tx!(tx, |c| sqlx::query_as(&q).bind(caller_ref).fetch_optional(&mut **c).await)
}

/// Referrals, newest first, optionally of one status.
pub async fn referrals(db: &Db, status: Option<&str>, limit: i64) -> Result<Vec<ReferralRow>, sqlx::Error> {
    let q = format!("SELECT {REFERRAL_COLUMNS} FROM desk_referrals WHERE ($1 IS NULL OR status = $1) ORDER BY referred_ms DESC, referral_id DESC LIMIT $2");
    with_db!(db, |pool| sqlx::query_as(&q).bind(status).bind(limit).fetch_all(pool).await)
}

/// Every referral (for the reports), oldest first.
pub async fn all_referrals(db: &Db) -> Result<Vec<ReferralRow>, sqlx::Error> {
    let q = format!("SELECT {REFERRAL_COLUMNS} FROM desk_referrals ORDER BY referred_ms");
    with_db!(db, |pool| sqlx::query_as(&q).fetch_all(pool).await)
}

/// The latest referral of each of these callers.
pub async fn latest_referrals(db: &Db, refs: &[&str]) -> Result<HashMap<String, ReferralRow>, sqlx::Error> {
    let mut out: HashMap<String, ReferralRow> = HashMap::new();
    for chunk in refs.chunks(CHUNK) {
        let sql = format!("SELECT {REFERRAL_COLUMNS} FROM desk_referrals WHERE caller_ref IN ");
        let rows: Vec<ReferralRow> = with_db!(db, |pool| with_list(sql.clone(), chunk).build_query_as().fetch_all(pool).await)?;
        for r in rows {
            let Some(key) = r.caller_ref.clone() else { continue };
            if out.get(&key).is_none_or(|old| old.referred_ms < r.referred_ms) {
                out.insert(key, r);
            }
        }
    }
    Ok(out)
}
