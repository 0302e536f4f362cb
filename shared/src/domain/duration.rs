//! Durations as operations staff write them: `90s`, `15m`, `24h`, `30d`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A non-negative span of time, held in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span(i64);

impl Span {
    pub const ZERO: Span = Span(0);

    pub const fn from_millis(ms: i64) -> Span {
        Span(ms)
    }
    pub const fn from_secs(s: i64) -> Span {
        Span(s * 1000)
    }
    pub const fn from_days(d: i64) -> Span {
        Span(d * 86_400_000)
    }
    pub const fn millis(self) -> i64 {
        self.0
    }
    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.max(0) as u64)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a duration: write a whole number followed by s, m, h or d (for example \"90s\", \"15m\", \"24h\", \"30d\")")]
pub struct SpanError(pub String);

impl FromStr for Span {
    type Err = SpanError;
    fn from_str(s: &str) -> Result<Span, SpanError> {
        let t = s.trim();
        let err = || SpanError(s.to_string());
        let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?);
        if digits.is_empty() {
            return Err(err());
        }
        let n: i64 = digits.parse().map_err(|_| err())?;
        let unit_ms: i64 = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(err()),
        };
        // Ten years is far past any window a contact centre would use.
        let ms = n.checked_mul(unit_ms).filter(|ms| *ms <= 3650 * 86_400_000).ok_or_else(err)?;
        Ok(Span(ms))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
            // A day reads better as 24h; longer spans in whole days read as days.
            if ms != 0 && ms % size == 0 && (unit != "d" || ms >= 2 * size) {
                return write!(f, "{}{}", ms / size, unit);
            }
        }
        if ms == 0 {
            write!(f, "0s")
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_units_staff_write() {
        for (text, ms) in [("90s", 90_000), ("15m", 900_000), ("24h", 86_400_000), ("30d", 2_592_000_000), ("0s", 0)] {
            let span: Span = text.parse().unwrap();
            assert_eq!(span.millis(), ms);
            assert_eq!(span.to_string(), text);
        }
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in ["", "5", "m", "-5m", "5 minutes", "1.5h", "99999999999d", "5w"] {
            assert!(bad.parse::<Span>().is_err(), "{bad} should be refused");
        }
    }
}
