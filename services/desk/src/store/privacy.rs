//! The desk's part of retention, subject access and erasure (SPEC section 10).

use super::audit::{self, AuditRow};
use super::{FlagRow, FLAG_COLUMNS};
use lantern_shared::domain::flag::{FlagMessage, Reasons};
use lantern_shared::store::{with_list, Tx, CHUNK};
use lantern_shared::with_tx;

/// Cut-off times (ms) for pruning the desk's tables, one per kind of record.
pub struct PruneBefore {
    pub updates: i64,
    pub open_flags: i64,
    pub outcomes: i64,
    pub feedback: i64,
    pub sessions: i64,
    pub referrals: i64,
    pub audit: i64,
}

/// Deletes what is past its retention. Returns (rows deleted, of which audit entries).
pub async fn prune(tx: &mut Tx<'_>, before: &PruneBefore) -> Result<(u64, u64), sqlx::Error> {
    let statements = [
        ("DELETE FROM desk_updates WHERE received_ms < $1", before.updates),
        ("DELETE FROM desk_flags WHERE status <> 'closed' AND updated_ms < $1", before.open_flags),
        ("DELETE FROM desk_flags WHERE status = 'closed' AND closed_ms < $1", before.outcomes),
        ("DELETE FROM desk_feedback WHERE at_ms < $1", before.feedback),
        ("DELETE FROM desk_sessions WHERE created_ms < $1", before.sessions),
        ("DELETE FROM desk_referrals WHERE updated_ms < $1", before.referrals),
    ];
    let mut n = 0;
    for (q, cut) in statements {
        n += with_tx!(tx, |c| sqlx::query(q).bind(cut).execute(&mut **c).await.map(|r| r.rows_affected()))?;
    }
    let audit = audit::prune(tx, before.audit).await?;
    Ok((n + audit, audit))
}

/// What the desk holds about a caller.
#[derive(Debug, Default)]
pub struct DeskRecords {
    pub flags: Vec<FlagRow>,
    /// (flag, nurse, verdict, note, at)
    pub feedback: Vec<(String, String, String, Option<String>, i64)>,
    pub referrals: Vec<super::ReferralRow>,
    /// Audit entries about the caller (views of their history, say): kept under DPA 2018 s.62.
    pub audit: Vec<AuditRow>,
}

/// The desk's flags on these caller references or with these flag ids (mental-health flags of
/// the caller's calls), with nurses' feedback on them and audit entries about the references.
pub async fn caller_records(tx: &mut Tx<'_>, refs: &[&str], flag_ids: &[&str]) -> Result<DeskRecords, sqlx::Error> {
    let mut out = DeskRecords::default();
    for chunk in refs.chunks(CHUNK) {
        let sql = format!("SELECT {FLAG_COLUMNS} FROM desk_flags WHERE caller_ref IN ");
        out.flags.extend(with_tx!(tx, |c| with_list(sql.clone(), chunk).build_query_as::<FlagRow>().fetch_all(&mut **c).await)?);
    }
    for chunk in flag_ids.chunks(CHUNK) {
        let sql = format!("SELECT {FLAG_COLUMNS} FROM desk_flags WHERE flag_id IN ");
        let rows: Vec<FlagRow> = with_tx!(tx, |c| with_list(sql.clone(), chunk).build_query_as::<FlagRow>().fetch_all(&mut **c).await)?;
        for r in rows {
            if !out.flags.iter().any(|f| f.flag_id == r.flag_id) {
                out.flags.push(r);
            }
        }
    }
    out.flags.sort_by_key(|f| f.raised_ms);
    let ids: Vec<&str> = out.flags.iter().map(|f| f.flag_id.as_str()).collect();
    for chunk in ids.chunks(CHUNK) {
        let sql = "SELECT flag_id, user_name, verdict, note, at_ms FROM desk_feedback WHERE flag_id IN ";
        out.feedback.extend(with_tx!(tx, |c| with_list(sql, chunk).build_query_as().fetch_all(&mut **c).await)?);
    }
    for r in refs {
        let q = format!("SELECT {} FROM desk_referrals WHERE caller_ref = $1 ORDER BY referred_ms", super::referrals::REFERRAL_COLUMNS);
        out.referrals.extend(with_tx!(tx, |c| sqlx::query_as::<_, super::ReferralRow>(&q).bind(*r).fetch_all(&mut **c).await)?);
        let q = "SELECT id, at_ms, user_name, role, action, target, reason, prev_hash, hash FROM desk_audit WHERE target = $1 ORDER BY id";
        out.audit.extend(with_tx!(tx, |c| sqlx::query_as::<_, AuditRow>(q).bind(*r).fetch_all(&mut **c).await)?);
    }
    Ok(out)
}

/// A flag message with everything about the caller taken out: caller reference, call and event
/// ids, division, snippets and model terms. What raised it (rules, cue categories, severity)
/// stays, so counts by rule and category stay right.
fn erased_payload(payload: &str) -> String {
    let Ok(mut m) = FlagMessage::parse(payload.as_bytes()) else { return r#"{"erased":true}"#.to_string() };
    m.caller_ref = None;
    m.call_id = "erased".into();
    m.event_id = "erased".into();
    m.division = None;
    if let Reasons::Cues(cues) = &mut m.reasons {
        for c in cues {
            c.snippet.clear();
            c.terms.clear();
        }
    }
    m.to_json()
}

/// Erases what [`caller_records`] found, keeping aggregate counts right: each flag keeps its
/// kind, severity, status, outcome and times, but loses its caller, call, division, snippets
/// and note; its live-stream history goes; nurses' verdicts stay without their notes. Audit
/// entries stay (they are the record of what was done). Returns the rows changed.
pub async fn erase_caller(tx: &mut Tx<'_>, records: &DeskRecords) -> Result<u64, sqlx::Error> {
    let mut n = 0;
    for f in &records.flags {
        let q =
            "UPDATE desk_flags SET caller_ref = NULL, call_id = 'erased', division = NULL, note = NULL, payload = $1 WHERE flag_id = $2";
        let payload = erased_payload(&f.payload);
        n += with_tx!(tx, |c| sqlx::query(q).bind(&payload).bind(&f.flag_id).execute(&mut **c).await.map(|r| r.rows_affected()))?;
    }
    for r in &records.referrals {
        // The referral stays for the counts (team, risk factors, dates), without its caller or note.
        let q = "UPDATE desk_referrals SET caller_ref = NULL, note = NULL WHERE referral_id = $1";
        n += with_tx!(tx, |c| sqlx::query(q).bind(&r.referral_id).execute(&mut **c).await.map(|r| r.rows_affected()))?;
    }
    let ids: Vec<&str> = records.flags.iter().map(|f| f.flag_id.as_str()).collect();
    for chunk in ids.chunks(CHUNK) {
        n += with_tx!(tx, |c| with_list("DELETE FROM desk_updates WHERE flag_id IN ", chunk)
            .build()
            .execute(&mut **c)
            .await
            .map(|r| r.rows_affected()))?;
        n += with_tx!(tx, |c| with_list("UPDATE desk_feedback SET note = NULL WHERE flag_id IN ", chunk)
            .build()
            .execute(&mut **c)
            .await
            .map(|r| r.rows_affected()))?;
    }
    Ok(n)
}
