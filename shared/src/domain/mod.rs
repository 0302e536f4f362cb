//! Lantern's domain: what a call event and a flag are, the names they use, pseudonyms, time,
//! durations, and the masking of anything phone-like. Pure code, no I/O.

pub mod clock;
pub mod duration;
pub mod event;
pub mod flag;
pub mod ingest;
pub mod mask;
mod names;
pub mod pseudonym;
pub mod text;

pub use clock::Clock;
pub use duration::Span;
pub use names::{
    listed, AgeBand, Channel, CueSource, EventKind, FlagKind, FlagStatus, Identity, Outcome, Presentation, Role, Severity, Verdict,
};
