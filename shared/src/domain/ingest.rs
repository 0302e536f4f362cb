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
            Ok(n) => Some(e164(&n)),
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

    /// An id with each phone-like run (see [`super::mask`]) replaced by the run's keyed token
    /// (`~` and the pseudonym of its digits): the number is gone, and ids that differed only in
    /// the number still differ. Ids without such a run come back as they were.
    pub fn mask_id(&self, id: &str) -> String {
        if id.chars().filter(char::is_ascii_digit).count() < 9 && !id.chars().any(|c| ('\u{FF10}'..='\u{FF19}').contains(&c)) {
            return id.to_string();
        }
        let chars: Vec<char> = id.chars().collect();
        let runs = super::mask::phone_like_runs(&chars);
        if runs.is_empty() {
            return id.to_string();
        }
        let mut out = String::with_capacity(id.len());
        let mut at = 0;
        for (start, end) in runs {
            out.extend(&chars[at..start]);
            let digits: String = chars[start..end]
                .iter()
                .filter_map(|c| c.to_digit(10).or_else(|| full_width_digit(*c)))
                .map(|d| char::from(b'0' + d as u8))
                .collect();
            out.push('~');
            out.push_str(&self.pseudonymizer.phone(&digits).to_string());
            at = end;
        }
        out.extend(&chars[at..]);
        out
    }
}

fn full_width_digit(c: char) -> Option<u32> {
    ('\u{FF10}'..='\u{FF19}').contains(&c).then(|| c as u32 - 0xFF10)
}

/// The number in E.164 form, as the library's formatter writes it: `+`, the calling code and
/// the national number. The formatter first looks up the national format that fits the
/// number, which E.164 does not use (a tenth of the cost of reading an event in a replay).
fn e164(n: &phonenumber::PhoneNumber) -> String {
    let code = n.country().code();
    if phonenumber::metadata::DATABASE.by_code(&code).is_none() {
        // The formatter refuses a calling code it has no metadata for: let it say so.
        return n.format().mode(phonenumber::Mode::E164).to_string();
    }
    format!("+{code}{}", n.national())
}

#[cfg(test)]
mod tests {
    use super::e164;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn e164_is_written_as_the_library_writes_it(
            region in prop::sample::select(vec!["GB", "US", "DE", "FR", "IE", "IT", "AU", "IN", "JP", "BR", "ZA", "NZ"]),
            // Written forms with trunk zeros, international prefixes and Italian leading zeros.
            opening in prop::sample::select(vec!["", "0", "00", "+", "+39 0", "+44 (0)", "011", "07700 "]),
            digits in "[0-9]{6,15}",
        ) {
            let id: phonenumber::country::Id = region.parse().expect("a region");
            let text = format!("{opening}{digits}");
            if let Ok(n) = phonenumber::parse(Some(id), &text) {
                prop_assert_eq!(e164(&n), n.format().mode(phonenumber::Mode::E164).to_string(), "{} in {}", text, region);
            }
        }
    }
}
