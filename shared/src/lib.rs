//! Lantern's common library.
//!
//! - [`domain`]: what call events and flags are, and the names, pseudonyms, durations and masking
//!   they use; pure code.
//! - [`config`]: the one config file, section by section, and its live reload.
//! - [`runtime`]: what runs a service: MQTT link, consumer loop, service shell, health routes,
//!   telemetry.
//! - [`store`]: the database (SQLite or PostgreSQL), its migrations, and the processed-event
//!   de-duplication every consumer shares.

pub mod config;
pub mod domain;
pub mod runtime;
pub mod store;

pub use config::Config;
pub use domain::{Clock, Span};
