//! Properties that hold for any input whatsoever: what the fuzz targets in `fuzz/` check under
//! cargo-fuzz (`make fuzz`, nightly) and what the property tests check in `make test` (stable).
//! Each function panics when its property breaks, which is how both tools see a failure.

use crate::detect::cues::{Lexicon, SNIPPET_CHARS};
use lantern_shared::domain::event::{CallEvent, REJECTED_PAYLOAD_BYTES, REJECT_REASONS};
use lantern_shared::domain::flag::{FlagMessage, FLAG_REJECT_REASONS};
use lantern_shared::domain::ingest::IngestContext;
use lantern_shared::domain::pseudonym::Pseudonymizer;
use lantern_shared::Config;
use std::sync::OnceLock;

fn ingest() -> &'static IngestContext {
    static CTX: OnceLock<IngestContext> = OnceLock::new();
    CTX.get_or_init(|| IngestContext::new(Pseudonymizer::new(b"fuzz"), "GB", 300_000))
}

fn lexicon_shipped() -> &'static Lexicon {
    static LEX: OnceLock<Lexicon> = OnceLock::new();
    LEX.get_or_init(|| Lexicon::new(&Config::default().mental_health))
}

/// True when `s` still holds a phone-like run (SPEC section 2, "Masking").
fn holds_number(s: &str) -> bool {
    !lantern_shared::domain::mask::phone_like_runs(&s.chars().collect::<Vec<_>>()).is_empty()
}

/// An event payload either parses into a valid event or is refused with a known reason, and the
/// refusal's echo is valid JSON, at most 4 KiB of payload, with no run of digits long enough to be
/// a phone number.
pub fn event(data: &[u8]) {
    let now = chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap_or_default();
    match CallEvent::parse(data, ingest(), now) {
        Ok(ev) => {
            assert!((1..=128).contains(&ev.event_id.chars().count()));
            assert!((1..=128).contains(&ev.call_id.chars().count()));
            assert!(ev.notes.as_ref().is_none_or(|n| n.len() <= 16 * 1024));
            assert!(ev.division.as_ref().is_none_or(|d| d.chars().count() <= 64));
        }
        Err(r) => {
            assert!(REJECT_REASONS.contains(&r.reason), "unknown reason {}", r.reason);
            assert!(!holds_number(&r.error), "a number in the error sentence: {}", r.error);
            let msg = r.to_message(data);
            let v: serde_json::Value = serde_json::from_slice(&msg).expect("the rejected message is JSON");
            let payload = v["payload"].as_str().expect("payload is text");
            assert!(payload.len() <= REJECTED_PAYLOAD_BYTES);
            assert!(!holds_number(payload), "a number in the echo: {payload}");
        }
    }
}

/// Scanning any text with the shipped lexicon returns reasons whose snippets fit.
pub fn lexicon(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for hit in lexicon_shipped().scan(&text) {
        assert!(hit.snippet.chars().count() <= SNIPPET_CHARS);
        assert!(!holds_number(&hit.snippet), "a number in a snippet: {}", hit.snippet);
    }
}

/// Any text is a config or a list of problems, never a panic.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(problems) = Config::from_toml(text) {
            assert!(!problems.0.is_empty());
        }
    }
}

/// A flag message either parses (and survives a round trip unchanged) or is refused with a known
/// reason.
pub fn flag(data: &[u8]) {
    match FlagMessage::parse(data) {
        Ok(m) => assert_eq!(FlagMessage::parse(m.to_json().as_bytes()).as_ref(), Ok(&m)),
        Err(r) => assert!(FLAG_REJECT_REASONS.contains(&r.reason), "unknown reason {}", r.reason),
    }
}
