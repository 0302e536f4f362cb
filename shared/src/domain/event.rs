//! The call event of SPEC section 2, parsed and validated at the edge.
//!
//! [`CallEvent::parse`] is the only way in: a payload either becomes a typed event, with the
//! caller's number already normalised and replaced by its pseudonym, or a [`Rejection`] that
//! names the field and carries a short reason code for `lantern_events_rejected_total{reason}`.

use super::ingest::IngestContext;
use super::mask::{mask, mask_json};
use super::names::{AgeBand, Channel, EventKind, Presentation};
use super::pseudonym::CallerRef;
use chrono::{DateTime, FixedOffset, Utc};
use raw::{Fields, Raw};
use serde_json::Value;

mod raw;

pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
pub const MAX_NOTES_BYTES: usize = 16 * 1024;
/// How much of a rejected payload goes back out on `lantern/rejected`.
pub const REJECTED_PAYLOAD_BYTES: usize = 4 * 1024;

/// Every reason code a rejection can carry (the bounded `reason` label).
pub const REJECT_REASONS: &[&str] = &[
    "too_large",
    "invalid_utf8",
    "invalid_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "empty_field",
    "too_long",
    "control_characters",
    "bad_timestamp",
    "future_timestamp",
    "unknown_kind",
    "unknown_channel",
    "invalid_value",
    "internal_error",
    "storage_error",
    "overloaded",
];

/// What the event says about the caller, pseudonymised.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Caller {
    /// Pseudonym of the normalised number (or of its digits if it would not parse).
    pub phone: Option<CallerRef>,
    pub presentation: Option<Presentation>,
    pub address: Option<CallerRef>,
    pub communal_address: Option<bool>,
    pub age_band: Option<AgeBand>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Incident {
    pub kind: Option<String>,
    pub qualifiers: Vec<String>,
    pub grade: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallEvent {
    pub event_id: String,
    pub call_id: String,
    pub kind: EventKind,
    pub occurred_at: DateTime<FixedOffset>,
    pub channel: Channel,
    pub division: Option<String>,
    pub caller: Caller,
    pub incident: Incident,
    pub notes: Option<String>,
}

impl CallEvent {
    /// Event time in milliseconds since the Unix epoch.
    pub fn occurred_ms(&self) -> i64 {
        self.occurred_at.timestamp_millis()
    }
}

/// A refused payload: a reason code and a sentence naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
    pub error: String,
}

impl Rejection {
    /// The sentence may echo a bad value; anything phone-like in it is masked, so a number
    /// sent in the wrong field is not logged or published either.
    pub fn new(reason: &'static str, error: impl Into<String>) -> Rejection {
        Rejection { reason, error: mask(&error.into()) }
    }

    /// The message published on `lantern/rejected`. The payload echo is redacted first: a
    /// caller number is never published, even inside a refused event.
    pub fn to_message(&self, payload: &[u8]) -> Vec<u8> {
        let mut text = redact_payload(payload);
        if text.len() > REJECTED_PAYLOAD_BYTES {
            let mut end = REJECTED_PAYLOAD_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            // A long digit run that was no number whole (a float of many decimals) can read as
            // one once cut: mask the cut text again.
            text = crate::domain::mask::mask(&text);
        }
        let v = serde_json::json!({"reason": self.reason, "error": self.error, "payload": text});
        serde_json::to_vec(&v).unwrap_or_default()
    }
}

/// The `event_id` a payload carries, for logging a refusal: masked, at most 128 characters,
/// empty when there is none to read.
pub fn event_id_of(payload: &[u8]) -> String {
    let id = serde_json::from_slice::<Value>(payload).ok().and_then(|v| {
        v.get("event_id").and_then(Value::as_str).map(|s| s.chars().take(128).filter(|c| !c.is_control()).collect::<String>())
    });
    mask(&id.unwrap_or_default())
}

/// The payload as text with every phone-like run masked: a JSON payload has every string,
/// key and number masked, known fields or not, and loses `caller.number` whatever it holds;
/// anything else is masked as text. Masking comes before any cutting.
pub fn redact_payload(payload: &[u8]) -> String {
    let head = &payload[..payload.len().min(MAX_PAYLOAD_BYTES)];
    let text = String::from_utf8_lossy(head);
    if let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(&text) {
        match obj.get_mut("caller") {
            Some(Value::Object(caller)) if caller.contains_key("number") => {
                caller.insert("number".into(), Value::String("[redacted]".into()));
            }
            Some(Value::Object(_)) => {}
            Some(other) if !other.is_null() => *other = Value::String("[redacted]".into()),
            _ => {}
        }
        return serde_json::to_string(&mask_json(Value::Object(obj))).unwrap_or_default();
    }
    mask(&text)
}

impl CallEvent {
    /// Parses and validates one payload against SPEC section 2.
    pub fn parse(payload: &[u8], ctx: &IngestContext, now: DateTime<Utc>) -> Result<CallEvent, Rejection> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(Rejection::new(
                "too_large",
                format!("the payload is {} bytes; the limit is {} bytes (64 KiB)", payload.len(), MAX_PAYLOAD_BYTES),
            ));
        }
        let text = std::str::from_utf8(payload)
            .map_err(|e| Rejection::new("invalid_utf8", format!("the payload is not UTF-8 (bad byte at offset {})", e.valid_up_to())))?;
        let value = Raw::parse(text).map_err(|e| Rejection::new("invalid_json", format!("the payload is not valid JSON: {e}")))?;
        let Raw::Object(obj) = value else {
            return Err(Rejection::new("not_object", format!("the payload must be a JSON object, not {}", value.type_name())));
        };

        // Ids are kept and echoed, so a number inside one becomes a keyed token: distinct
        // numbers stay distinct ids, and no number is stored.
        let event_id = ctx.mask_id(&required_id(&obj, "event_id")?);
        let call_id = ctx.mask_id(&required_id(&obj, "call_id")?);
        let kind_text = required_str(&obj, "kind")?;
        let kind = EventKind::parse(kind_text).ok_or_else(|| {
            Rejection::new(
                "unknown_kind",
                format!("field `kind` is `{}`; it must be one of offered, answered, abandoned, updated, closed", clip(kind_text)),
            )
        })?;
        let at_text = required_str(&obj, "occurred_at")?;
        let occurred_at = DateTime::parse_from_rfc3339(at_text).map_err(|e| {
            Rejection::new(
                "bad_timestamp",
                format!(
                    "field `occurred_at` is `{}`, not an RFC 3339 time with an offset such as 2026-11-23T21:14:03+00:00 ({e})",
                    clip(at_text)
                ),
            )
        })?;
        if occurred_at.timestamp_millis() < 0 {
            return Err(Rejection::new("bad_timestamp", "field `occurred_at` is before 1970"));
        }
        let ahead = occurred_at.timestamp_millis() - now.timestamp_millis();
        if ahead > ctx.max_future_skew_ms {
            return Err(Rejection::new(
                "future_timestamp",
                format!(
                    "field `occurred_at` is {}s ahead of the clock; at most {}s is allowed (ingest.max_future_skew)",
                    ahead / 1000,
                    ctx.max_future_skew_ms / 1000
                ),
            ));
        }
        let channel_text = required_str(&obj, "channel")?;
        let channel = Channel::parse(channel_text).ok_or_else(|| {
            Rejection::new(
                "unknown_channel",
                format!("field `channel` is `{}`; it must be one of 999, 101, online, other", clip(channel_text)),
            )
        })?;
        // Labels become metric labels and rows: masked like everything typed.
        let division = optional_str(&obj, "division", 64, false)?.map(mask);

        let caller = match field(&obj, "caller") {
            None => Caller::default(),
            Some(Raw::Object(c)) => parse_caller(c, ctx)?,
            Some(other) => return Err(wrong_type("caller", "an object", other)),
        };
        let incident = match field(&obj, "incident") {
            None => Incident::default(),
            Some(Raw::Object(i)) => parse_incident(i)?,
            Some(other) => return Err(wrong_type("incident", "an object", other)),
        };
        let notes = match field(&obj, "notes") {
            None => None,
            Some(Raw::Str(s)) => {
                if s.len() > MAX_NOTES_BYTES {
                    return Err(Rejection::new("too_long", format!("field `notes` is {} bytes; the limit is 16 KiB", s.len())));
                }
                if s.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
                    return Err(Rejection::new("control_characters", "field `notes` holds control characters other than tab and newline"));
                }
                Some(s.to_string())
            }
            Some(other) => return Err(wrong_type("notes", "a string", other)),
        };
        Ok(CallEvent { event_id, call_id, kind, occurred_at, channel, division, caller, incident, notes })
    }
}

fn parse_caller(c: &Fields, ctx: &IngestContext) -> Result<Caller, Rejection> {
    let number = optional_str(c, "number", 64, true).map_err(|r| prefix("caller", r))?;
    let presentation = match optional_str(c, "presentation", 32, true).map_err(|r| prefix("caller", r))? {
        None => None,
        Some(p) if Presentation::parse(p).is_some() => Presentation::parse(p),
        Some(other) => {
            return Err(Rejection::new(
                "invalid_value",
                format!("field `caller.presentation` is `{}`; it must be allowed, withheld or unavailable", clip(other)),
            ))
        }
    };
    let address = optional_str(c, "address_id", 128, false).map_err(|r| prefix("caller", r))?;
    let communal_address = match field(c, "communal_address") {
        None => None,
        Some(Raw::Bool(b)) => Some(*b),
        Some(other) => return Err(wrong_type("caller.communal_address", "true or false", other)),
    };
    let age_band = match optional_str(c, "age_band", 32, true).map_err(|r| prefix("caller", r))? {
        None => None,
        Some(s) => Some(AgeBand::parse(s).ok_or_else(|| {
            Rejection::new("invalid_value", format!("field `caller.age_band` is `{}`; it must be under_18, adult or unknown", clip(s)))
        })?),
    };
    Ok(Caller {
        phone: number.and_then(|n| ctx.phone_ref(n)),
        presentation,
        address: address.filter(|a| !a.trim().is_empty()).map(|a| ctx.pseudonymizer.address(a)),
        communal_address,
        age_band,
    })
}

fn parse_incident(i: &Fields) -> Result<Incident, Rejection> {
    let kind = optional_str(i, "type", 128, false).map_err(|r| prefix("incident", r))?.map(mask);
    let grade = optional_str(i, "grade", 128, false).map_err(|r| prefix("incident", r))?.map(mask);
    let qualifiers = match field(i, "qualifiers") {
        None => Vec::new(),
        Some(Raw::Array(items)) => {
            if items.len() > 64 {
                return Err(Rejection::new("too_long", "field `incident.qualifiers` has more than 64 entries"));
            }
            let mut out = Vec::with_capacity(items.len());
            for (n, item) in items.iter().enumerate() {
                match item {
                    Raw::Str(s) if s.chars().any(char::is_control) => {
                        return Err(Rejection::new(
                            "control_characters",
                            format!("field `incident.qualifiers[{n}]` holds control characters"),
                        ))
                    }
                    Raw::Str(s) if s.chars().count() > 128 => {
                        return Err(Rejection::new("too_long", format!("field `incident.qualifiers[{n}]` is over 128 characters")))
                    }
                    Raw::Str(s) => out.push(mask(s)),
                    other => return Err(wrong_type(&format!("incident.qualifiers[{n}]"), "a string", other)),
                }
            }
            out
        }
        Some(other) => return Err(wrong_type("incident.qualifiers", "a list of strings", other)),
    };
    Ok(Incident { kind, qualifiers, grade })
}

/// A present, non-null field.
fn field<'f, 'a>(obj: &'f Fields<'a>, name: &str) -> Option<&'f Raw<'a>> {
    obj.get(name).filter(|v| !v.is_null())
}

fn required_str<'f>(obj: &'f Fields, name: &str) -> Result<&'f str, Rejection> {
    match field(obj, name) {
        None => Err(Rejection::new("missing_field", format!("required field `{name}` is missing"))),
        Some(Raw::Str(s)) => Ok(s),
        Some(other) => Err(wrong_type(name, "a string", other)),
    }
}

fn required_id(obj: &Fields, name: &str) -> Result<String, Rejection> {
    let s = required_str(obj, name)?;
    if s.is_empty() {
        return Err(Rejection::new("empty_field", format!("field `{name}` is empty; it must be 1 to 128 characters")));
    }
    if s.chars().count() > 128 {
        return Err(Rejection::new("too_long", format!("field `{name}` is {} characters; the limit is 128", s.chars().count())));
    }
    if s.chars().any(char::is_control) {
        return Err(Rejection::new("control_characters", format!("field `{name}` holds control characters")));
    }
    Ok(s.to_string())
}

fn optional_str<'f>(obj: &'f Fields, name: &str, max_chars: usize, allow_empty: bool) -> Result<Option<&'f str>, Rejection> {
    match field(obj, name) {
        None => Ok(None),
        Some(Raw::Str(s)) => {
            if s.chars().count() > max_chars {
                return Err(Rejection::new("too_long", format!("field `{name}` is over {max_chars} characters")));
            }
            if s.chars().any(char::is_control) {
                return Err(Rejection::new("control_characters", format!("field `{name}` holds control characters")));
            }
            if s.is_empty() && !allow_empty {
                return Ok(None);
            }
            Ok(Some(s))
        }
        Some(other) => Err(wrong_type(name, "a string", other)),
    }
}

fn wrong_type(name: &str, want: &str, got: &Raw) -> Rejection {
    Rejection::new("wrong_type", format!("field `{name}` must be {want}, not {}", got.type_name()))
}

fn prefix(parent: &str, mut r: Rejection) -> Rejection {
    r.error = r.error.replacen("field `", &format!("field `{parent}."), 1);
    r
}

/// Echoes at most 40 characters of a bad value in an error sentence.
fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(40).filter(|c| !c.is_control()).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
