//! `lantern-flagger`: consumes call events, flags repeat callers and mental-health cues.
//!
//! - [`detect`]: pure detection (repeat-caller rules, mental-health lexicon, patterns, model);
//! - [`batch`]: one batch's detection between its reads and writes (pure);
//! - [`store`]: every statement the flagger runs, and the tables it owns;
//! - [`outbox`]: flag messages between the database and the broker;
//! - [`metrics`], [`service`] (the glue), [`replay`] (`lantern replay`).

pub mod batch;
pub mod detect;
pub mod fuzzing;
pub mod metrics;
pub mod outbox;
pub mod replay;
pub mod service;
pub mod store;

pub use service::Flagger;
