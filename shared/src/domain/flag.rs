//! The flag message of SPEC section 5: one type the flagger publishes and the desk and demand
//! parse. [`FlagMessage::parse`] is the only way in for a consumer: a payload either becomes a
//! valid message or a [`FlagRejection`] with a short reason code (the bounded `reason` label of
//! `lantern_flag_messages_rejected_total`) and a sentence naming the field.

use super::names::{Channel, Identity, Severity};
pub use super::names::{CueSource, FlagKind, FlagStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Every reason code a refused flag message can carry.
pub const FLAG_REJECT_REASONS: &[&str] = &[
    "invalid_json",
    "not_object",
    "invalid_field",
    "control_characters",
    "empty_reasons",
    "flag_id_conflict",
    "internal_error",
    "storage_error",
];

/// Longest flag message a consumer reads.
pub const MAX_FLAG_BYTES: usize = 256 * 1024;

/// Why a repeat-caller rule was met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleReason {
    pub rule: String,
    pub identity: Identity,
    pub window: String,
    pub calls: u32,
    pub min_calls: u32,
}

/// Why a call was flagged for mental health: a cue, a pattern, a model score or an incident code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CueReason {
    pub category: String,
    pub cue: String,
    pub severity: Severity,
    pub negated: bool,
    pub snippet: String,
    pub source: CueSource,
    /// For a model reason: its score, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// For a model reason: the words or n-grams that pushed the score most.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terms: Vec<String>,
}

/// The `reasons` of a flag: rule rows for repeat callers, cue rows for mental health.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Reasons {
    Rules(Vec<RuleReason>),
    Cues(Vec<CueReason>),
}

impl Reasons {
    pub fn is_empty(&self) -> bool {
        match self {
            Reasons::Rules(r) => r.is_empty(),
            Reasons::Cues(c) => c.is_empty(),
        }
    }
}

/// A flag message as published on `lantern/flags/...`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagMessage {
    pub flag_id: String,
    pub status: FlagStatus,
    pub kind: FlagKind,
    pub severity: Severity,
    pub call_id: String,
    pub event_id: String,
    pub occurred_at: String,
    pub raised_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    pub channel: Channel,
    pub division: Option<String>,
    pub caller_ref: Option<String>,
    pub reasons: Reasons,
    /// The model's score, when a model ran (mental-health flags).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// A refused flag message: a reason code and a sentence naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagRejection {
    pub reason: &'static str,
    pub error: String,
}

impl FlagRejection {
    pub fn new(reason: &'static str, error: impl Into<String>) -> FlagRejection {
        FlagRejection { reason, error: super::mask::mask(&error.into()) }
    }
}

/// The fields every flag message carries, read before the reasons.
#[derive(Deserialize)]
struct Head {
    flag_id: String,
    status: FlagStatus,
    kind: FlagKind,
    severity: Severity,
    call_id: String,
    event_id: String,
    occurred_at: String,
    raised_at: String,
    #[serde(default)]
    updated_at: Option<String>,
    channel: Channel,
    #[serde(default)]
    division: Option<String>,
    #[serde(default)]
    caller_ref: Option<String>,
    reasons: Vec<Value>,
    #[serde(default)]
    score: Option<f64>,
}

impl FlagMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Event time of the call in milliseconds, as the message says it.
    pub fn occurred_ms(&self) -> i64 {
        chrono::DateTime::parse_from_rfc3339(&self.occurred_at).map(|t| t.timestamp_millis()).unwrap_or(0)
    }

    /// When the flag was first raised, in milliseconds.
    pub fn raised_ms(&self) -> i64 {
        chrono::DateTime::parse_from_rfc3339(&self.raised_at).map(|t| t.timestamp_millis()).unwrap_or(0)
    }

    /// Parses and validates a message from the flag topics (SPEC section 5). Unknown fields are
    /// ignored; anything else wrong is refused with the field it concerns.
    pub fn parse(payload: &[u8]) -> Result<FlagMessage, FlagRejection> {
        if payload.len() > MAX_FLAG_BYTES {
            return Err(FlagRejection::new("invalid_field", format!("the message is {} bytes; the limit is 256 KiB", payload.len())));
        }
        let value: Value = serde_json::from_slice(payload)
            .map_err(|e| FlagRejection::new("invalid_json", format!("the message is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(FlagRejection::new("not_object", "the message must be a JSON object"));
        }
        let head: Head = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            FlagRejection::new("invalid_field", format!("field `{path}`: {}", e.inner()))
        })?;
        check_text("flag_id", &head.flag_id, 64)?;
        if uuid::Uuid::parse_str(&head.flag_id).is_err() {
            return Err(FlagRejection::new("invalid_field", "field `flag_id` is not a UUID"));
        }
        if head.severity == Severity::Info {
            return Err(FlagRejection::new("invalid_field", "field `severity` must be low, medium or high"));
        }
        check_text("call_id", &head.call_id, 128)?;
        check_text("event_id", &head.event_id, 128)?;
        for (name, t) in
            [("occurred_at", Some(&head.occurred_at)), ("raised_at", Some(&head.raised_at)), ("updated_at", head.updated_at.as_ref())]
        {
            if let Some(t) = t {
                if chrono::DateTime::parse_from_rfc3339(t).is_err() {
                    return Err(FlagRejection::new("invalid_field", format!("field `{name}` is not an RFC 3339 time")));
                }
            }
        }
        if let Some(d) = &head.division {
            check_text("division", d, 64)?;
        }
        if let Some(r) = &head.caller_ref {
            if super::pseudonym::CallerRef::parse(r).is_none() {
                return Err(FlagRejection::new("invalid_field", "field `caller_ref` is not a 16-character caller reference"));
            }
        }
        if let Some(s) = head.score {
            if !(0.0..=1.0).contains(&s) {
                return Err(FlagRejection::new("invalid_field", "field `score` must be between 0 and 1"));
            }
        }
        if head.reasons.is_empty() {
            return Err(FlagRejection::new("empty_reasons", "field `reasons` is empty: a flag must say why it was raised"));
        }
        let reasons = match head.kind {
            FlagKind::RepeatCaller => Reasons::Rules(parse_reasons(head.reasons, |r: &RuleReason| {
                check_text("rule", &r.rule, 128)?;
                check_text("window", &r.window, 32)
            })?),
            FlagKind::MentalHealth => Reasons::Cues(parse_reasons(head.reasons, |r: &CueReason| {
                check_text("category", &r.category, 128)?;
                check_text("cue", &r.cue, 512)?;
                check_free_text("snippet", &r.snippet, 2048)?;
                for t in &r.terms {
                    check_text("terms", t, 128)?;
                }
                Ok(())
            })?),
        };
        Ok(FlagMessage {
            flag_id: head.flag_id,
            status: head.status,
            kind: head.kind,
            severity: head.severity,
            call_id: head.call_id,
            event_id: head.event_id,
            occurred_at: head.occurred_at,
            raised_at: head.raised_at,
            updated_at: head.updated_at,
            channel: head.channel,
            division: head.division,
            caller_ref: head.caller_ref,
            reasons,
            score: head.score,
        })
    }
}

fn parse_reasons<R: serde::de::DeserializeOwned>(
    values: Vec<Value>,
    check: impl Fn(&R) -> Result<(), FlagRejection>,
) -> Result<Vec<R>, FlagRejection> {
    let mut out = Vec::with_capacity(values.len());
    for (i, v) in values.into_iter().enumerate() {
        let r: R = serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            FlagRejection::new("invalid_field", format!("field `reasons[{i}].{path}`: {}", e.inner()))
        })?;
        check(&r).map_err(|mut e| {
            e.error = e.error.replacen("field `", &format!("field `reasons[{i}]."), 1);
            e
        })?;
        out.push(r);
    }
    Ok(out)
}

/// An identifier or label: 1 to `max` characters, no control characters.
fn check_text(name: &str, s: &str, max: usize) -> Result<(), FlagRejection> {
    if s.is_empty() {
        return Err(FlagRejection::new("invalid_field", format!("field `{name}` is empty")));
    }
    check_free_text(name, s, max)
}

/// Text that may be empty but holds no control characters and is at most `max` characters.
fn check_free_text(name: &str, s: &str, max: usize) -> Result<(), FlagRejection> {
    if s.chars().count() > max {
        return Err(FlagRejection::new("invalid_field", format!("field `{name}` is over {max} characters")));
    }
    if s.chars().any(char::is_control) {
        return Err(FlagRejection::new("control_characters", format!("field `{name}` holds control characters")));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
