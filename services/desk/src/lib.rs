//! `lantern-desk`: the nurses' flag desk (SPEC section 6).
//!
//! Flags arrive over MQTT (persistent session, acked after commit) and are stored; the page
//! and API read the database, and a live stream tells pages about every raised or updated
//! flag and every acknowledgement and outcome, numbered so a page that reconnects misses
//! nothing.
//!
//! - [`http`]: the routes, one file per resource; [`auth`]: sign-in and sessions;
//! - [`change`]: nurses' changes with their audit entries; [`ingest`]: flags in from MQTT;
//! - [`store`]: every statement the desk runs, and the tables it owns;
//! - [`metrics`], [`state`], [`service`] (the glue), [`feedback`] (the training export).

pub mod auth;
pub mod change;
pub mod feedback;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod privacy;
pub mod reports;
pub mod service;
pub mod state;
pub mod store;

pub use auth::User;
pub use metrics::DeskMetrics;
pub use service::Desk;
pub use state::AppState;
