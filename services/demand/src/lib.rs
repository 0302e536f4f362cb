//! `lantern-demand`: rolling demand metrics for duty inspectors (SPEC section 7).
//!
//! Consumes call events and mental-health flags; counts distinct calls by channel and
//! division, calls in trailing windows by event time (late events land in their window), time
//! to answer, abandonment and mental-health calls per window. What the windows need is kept in
//! the database, so a restart resumes them.
//!
//! - [`state`]: the counting itself (pure, time passed in);
//! - [`store`]: every statement demand runs, and the tables it owns;
//! - [`metrics`], [`service`] (the glue).

pub mod metrics;
pub mod service;
pub mod state;
pub mod store;

pub use metrics::ANSWER_BUCKETS;
pub use service::{Demand, Item};
pub use state::{CallRow, DemandState, Effect, Windows};
