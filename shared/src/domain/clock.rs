//! Time, passed in: services read the clock they were built with, so tests can move it.

use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Where a service reads the time.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// A clock a test sets and moves (milliseconds since the epoch).
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// A manual clock reading `at`.
    pub fn manual(at: DateTime<Utc>) -> Clock {
        Clock::Manual(Arc::new(AtomicI64::new(at.timestamp_millis())))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(ms) => DateTime::from_timestamp_millis(ms.load(Ordering::SeqCst)).unwrap_or_default(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }

    /// Moves a manual clock; the system clock cannot be moved.
    pub fn advance(&self, by: chrono::Duration) {
        if let Clock::Manual(ms) = self {
            ms.fetch_add(by.num_milliseconds(), Ordering::SeqCst);
        }
    }

    pub fn set(&self, at: DateTime<Utc>) {
        if let Clock::Manual(ms) = self {
            ms.store(at.timestamp_millis(), Ordering::SeqCst);
        }
    }
}

/// A time in milliseconds since the epoch as Lantern writes times: RFC 3339 with
/// milliseconds and the offset (`2026-11-23T21:14:03.012+00:00`). Out of range reads as the
/// epoch.
pub fn rfc3339_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}
