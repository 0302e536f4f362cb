//! Nurses' verdicts as labelled notes for the next training round (`lantern mh export-feedback`).

use lantern_shared::flag::{FlagMessage, Reasons};
use lantern_shared::store::Db;
use lantern_shared::with_db;
use std::io::Write;

/// Writes one JSON line per verdict on a mental-health flag: the flag's snippets (masked when
/// the flag was raised, and masked again here), the verdict, and what raised it. Returns how many
/// lines were written. `useful` reads as a mental-health note and `not_useful` as not one;
/// `wrong_person` says nothing about the note and is written with `"mh": null`.
pub async fn export(db: &Db, out: &mut dyn Write) -> anyhow::Result<usize> {
    let q = "SELECT b.flag_id, b.verdict, b.at_ms, f.payload FROM desk_feedback b JOIN desk_flags f ON f.flag_id = b.flag_id \
             WHERE f.kind = 'mental_health' ORDER BY b.at_ms, b.flag_id";
    let rows: Vec<(String, String, i64, String)> = with_db!(db, |pool| sqlx::query_as(q).fetch_all(pool).await)?;
    let mut n = 0;
    for (flag_id, verdict, at_ms, payload) in rows {
        let Ok(msg) = FlagMessage::parse(payload.as_bytes()) else { continue };
        let Reasons::Cues(cues) = &msg.reasons else { continue };
        let mut snippets: Vec<String> = Vec::new();
        for c in cues.iter().filter(|c| !c.snippet.is_empty()) {
            let s = lantern_shared::mask::mask(&c.snippet);
            if !snippets.iter().any(|x| x.contains(&s)) {
                snippets.push(s);
            }
        }
        let sources: Vec<&str> = cues.iter().filter(|c| !c.negated).map(|c| c.source.as_str()).collect();
        let categories: Vec<&str> = cues.iter().filter(|c| !c.negated).map(|c| c.category.as_str()).collect();
        let mh = match verdict.as_str() {
            "useful" => serde_json::Value::Bool(true),
            "not_useful" => serde_json::Value::Bool(false),
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
    Ok(n)
}
