//! What parsing a call event needs besides the payload: the pseudonym key, the default region
//! and the allowed clock skew, and a cache of numbers already normalised.

use super::pseudonym::{CallerRef, Pseudonymizer};

/// What parsing needs besides the payload.
#[derive(Debug, Clone)]
pub struct IngestContext {
    pub pseudonymizer: Pseudonymizer,
    pub default_region: phonenumber::country::Id,
    pub max_future_skew_ms: i64,
    numbers: std::sync::Arc<NumberCache>,
}

/// Recently seen numbers, so each is normalised (slow: libphonenumber) once, not per event.
/// Keyed by a hash with a per-process random key: no raw number is kept, even in memory.
#[derive(Debug, Default)]
struct NumberCache {
    hasher: std::collections::hash_map::RandomState,
    refs: std::sync::Mutex<std::collections::HashMap<u64, Option<CallerRef>>>,
}

const NUMBER_CACHE_ENTRIES: usize = 200_000;

impl IngestContext {
    pub fn new(pseudonymizer: Pseudonymizer, region: &str, max_future_skew_ms: i64) -> IngestContext {
        let default_region = region.to_ascii_uppercase().parse().unwrap_or(phonenumber::country::Id::GB);
        IngestContext { pseudonymizer, default_region, max_future_skew_ms, numbers: Default::default() }
    }

    /// The context a config describes: its pseudonym key (`LANTERN_PSEUDONYM_KEY` or
    /// `privacy.key_file`), default region and allowed clock skew.
    pub fn from_config(config: &crate::Config) -> Result<IngestContext, super::pseudonym::KeyError> {
        let key = Pseudonymizer::from_env_or_file(&config.privacy.key_file)?;
        Ok(IngestContext::new(key, &config.ingest.default_region, config.ingest.max_future_skew.millis()))
    }

    /// Normalises a number to E.164; a number that will not parse is kept as its digits.
    /// Returns `None` when the text holds no digits at all ("anonymous", "").
    pub fn normalise_number(&self, raw: &str) -> Option<String> {
        let digits: String = raw.chars().filter(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() {
            return None;
        }
        match phonenumber::parse(Some(self.default_region), raw) {
            Ok(n) => Some(n.format().mode(phonenumber::Mode::E164).to_string()),
            Err(_) => Some(digits),
        }
    }

    /// The pseudonym of a number as it would arrive in an event.
    pub fn phone_ref(&self, raw: &str) -> Option<CallerRef> {
        use std::hash::BuildHasher;
        let key = self.numbers.hasher.hash_one(raw);
        if let Some(found) = self.numbers.refs.lock().ok().and_then(|m| m.get(&key).copied()) {
            return found;
        }
        let r = self.normalise_number(raw).map(|n| self.pseudonymizer.phone(&n));
        if let Ok(mut m) = self.numbers.refs.lock() {
            if m.len() >= NUMBER_CACHE_ENTRIES {
                m.clear();
            }
            m.insert(key, r);
        }
        r
    }
}
