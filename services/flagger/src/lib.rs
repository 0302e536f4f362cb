//! `lantern-flagger`: consumes call events, flags repeat callers and mental-health cues.

pub mod detect;
pub mod fuzzing;
pub mod replay;
pub mod service;

pub use service::Flagger;
