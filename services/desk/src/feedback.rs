//! Nurses' verdicts as labelled notes for the next training round (`lantern mh export-feedback`).

use crate::store::{self, AuditEntry};
use lantern_shared::domain::flag::{FlagMessage, Reasons};
use lantern_shared::domain::mask::mask;
use lantern_shared::domain::Verdict;
use lantern_shared::store::Db;
use std::io::Write;

/// Writes one JSON line per verdict on a mental-health flag: the flag's snippets (masked when
/// the flag was raised, and masked again here), the verdict, and what raised it. Returns how many
/// lines were written. `useful` reads as a mental-health note and `not_useful` as not one;
/// `wrong_person` says nothing about the note and is written with `"mh": null`. The export is
/// written to the audit log as done by `who` (`cli:<login>`).
pub async fn export(db: &Db, out: &mut dyn Write, who: &str, now_ms: i64) -> anyhow::Result<usize> {
    let mut n = 0;
    for (flag_id, verdict, at_ms, payload) in store::mental_health_verdicts(db).await? {
        let Ok(msg) = FlagMessage::parse(payload.as_bytes()) else { continue };
        let Reasons::Cues(cues) = &msg.reasons else { continue };
        let mut snippets: Vec<String> = Vec::new();
        for c in cues.iter().filter(|c| !c.snippet.is_empty()) {
            let s = mask(&c.snippet);
            if !snippets.iter().any(|x| x.contains(&s)) {
                snippets.push(s);
            }
        }
        let sources: Vec<&str> = cues.iter().filter(|c| !c.negated).map(|c| c.source.as_str()).collect();
        let categories: Vec<&str> = cues.iter().filter(|c| !c.negated).map(|c| c.category.as_str()).collect();
        let mh = match Verdict::parse(&verdict) {
            Some(Verdict::Useful) => serde_json::Value::Bool(true),
            Some(Verdict::NotUseful) => serde_json::Value::Bool(false),
            _ => serde_json::Value::Null,
        };
        let line = serde_json::json!({
            "id": format!("feedback-{flag_id}"), "notes": snippets.join(" … "), "mh": mh, "verdict": verdict,
            "categories": categories, "sources": sources, "score": msg.score,
            "at": chrono::DateTime::from_timestamp_millis(at_ms).map(|t| t.to_rfc3339()),
        });
        writeln!(out, "{line}")?;
        n += 1;
    }
    out.flush()?;
    let reason = format!("{n} verdicts exported for training");
    let entry =
        AuditEntry { at_ms: now_ms, user: who, role: "cli", action: "export_feedback", target: "desk_feedback", reason: Some(&reason) };
    let mut tx = db.begin().await?;
    store::audit(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(n)
}
