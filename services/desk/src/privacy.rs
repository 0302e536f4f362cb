//! Subject access and erasure across the parts of Lantern that hold records about a caller
//! (SPEC section 10): the flagger's calls and flags, the desk's flags, feedback and audit
//! entries. Used by `lantern subject-access`, `lantern erase` and the admin route.

use crate::store::{self, AuditEntry};
use lantern_flagger::store::{self as flagger_store, CallerRecords};
use lantern_shared::domain::clock::rfc3339_ms;
use lantern_shared::store::{erasures, Db};
use serde_json::{json, Value};

/// Who asked, and why: written to the audit log with what was done.
pub struct Request<'a> {
    pub user: &'a str,
    pub role: &'a str,
    pub reason: &'a str,
    pub now_ms: i64,
}

/// What erasure changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Erased {
    pub calls: usize,
    pub flags: usize,
    pub rows: u64,
}

fn ms(v: i64) -> Value {
    Value::String(rfc3339_ms(v))
}

fn records_json(refs: &[&str], f: &CallerRecords, d: &store::DeskRecords) -> Value {
    json!({
        "caller_refs": refs,
        "calls": f.calls.iter().map(|(id, at, ch, div, phone, address)| json!({"call_id": id, "occurred_at": ms(*at), "channel": ch, "division": div, "phone_ref": phone, "address_ref": address})).collect::<Vec<_>>(),
        "repeat_caller_flags": f.repeat_flags.iter().map(|(id, identity, r, t0, raised)| json!({"flag_id": id, "identity": identity, "caller_ref": r, "call_at": ms(*t0), "raised_at": ms(*raised)})).collect::<Vec<_>>(),
        "mental_health_flags": f.mental_health_flags.iter().map(|(call, id, sev, at, raised)| json!({"flag_id": id, "call_id": call, "severity": sev, "occurred_at": ms(*at), "raised_at": ms(*raised)})).collect::<Vec<_>>(),
        "flag_messages": f.flag_messages.iter().map(|(seq, id, topic, payload, at)| json!({"seq": seq, "flag_id": id, "topic": topic, "created_at": ms(*at), "message": serde_json::from_str::<Value>(payload).unwrap_or(Value::Null)})).collect::<Vec<_>>(),
        "desk_flags": d.flags.iter().cloned().map(crate::http::flag_json).collect::<Vec<_>>(),
        "referrals": d.referrals.iter().map(|r| json!({"referral_id": r.referral_id, "team": r.team, "risk_factors": r.risk_factors(), "status": r.status, "note": r.note, "referred_by": r.referred_by, "referred_at": ms(r.referred_ms), "engaged_at": r.engaged_ms.map(ms), "closed_at": r.closed_ms.map(ms)})).collect::<Vec<_>>(),
        "feedback": d.feedback.iter().map(|(id, by, verdict, note, at)| json!({"flag_id": id, "by": by, "verdict": verdict, "note": note, "at": ms(*at)})).collect::<Vec<_>>(),
        "audit": d.audit.iter().map(|a| json!({"at": ms(a.at_ms), "user": a.user_name, "role": a.role, "action": a.action, "reason": a.reason})).collect::<Vec<_>>(),
    })
}

/// True when nothing but audit entries is held (what is left after erasure).
pub fn holds_nothing(v: &Value) -> bool {
    ["calls", "repeat_caller_flags", "mental_health_flags", "flag_messages", "desk_flags", "feedback", "referrals"]
        .iter()
        .all(|k| v[*k].as_array().is_none_or(Vec::is_empty))
}

/// Every record held about the callers with these references, as JSON; the request is audited
/// (target: each reference). Audit entries about the callers are included: they stay after
/// erasure, as the record of what was done (DPA 2018 s.62).
pub async fn subject_access(db: &Db, refs: &[&str], who: &Request<'_>) -> Result<Value, sqlx::Error> {
    let mut tx = db.begin().await?;
    for r in refs {
        let entry =
            AuditEntry { at_ms: who.now_ms, user: who.user, role: who.role, action: "subject_access", target: r, reason: Some(who.reason) };
        store::audit(&mut tx, &entry).await?;
    }
    let flagger = flagger_store::caller_records(&mut tx, refs).await?;
    let flag_ids = flagger.flag_ids();
    let ids: Vec<&str> = flag_ids.iter().map(String::as_str).collect();
    let desk = store::caller_records(&mut tx, refs, &ids).await?;
    tx.commit().await?;
    let mut out = records_json(refs, &flagger, &desk);
    out["requested_at"] = ms(who.now_ms);
    Ok(out)
}

/// Erases every record about the callers with these references, in one transaction with its
/// audit entry, and tells running services to forget what they hold in memory.
pub async fn erase(db: &Db, refs: &[&str], who: &Request<'_>) -> Result<Erased, sqlx::Error> {
    let mut tx = db.begin().await?;
    let flagger = flagger_store::caller_records(&mut tx, refs).await?;
    let flag_ids = flagger.flag_ids();
    let ids: Vec<&str> = flag_ids.iter().map(String::as_str).collect();
    let desk = store::caller_records(&mut tx, refs, &ids).await?;
    let mut rows = flagger_store::erase_caller(&mut tx, &flagger).await?;
    rows += store::erase_caller(&mut tx, &desk).await?;
    erasures::record(&mut tx, who.now_ms).await?;
    let erased = Erased { calls: flagger.calls.len(), flags: desk.flags.len().max(flag_ids.len()), rows };
    for r in refs {
        let reason = format!("{} (erased {} calls, {} flags)", who.reason, erased.calls, erased.flags);
        let entry = AuditEntry { at_ms: who.now_ms, user: who.user, role: who.role, action: "erase", target: r, reason: Some(&reason) };
        store::audit(&mut tx, &entry).await?;
    }
    tx.commit().await?;
    Ok(erased)
}
