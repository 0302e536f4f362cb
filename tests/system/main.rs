//! Whole-system tests: real services on port 0, a real broker, SQLite and PostgreSQL.

mod browser;
mod cli;
mod conformance;
mod crash;
mod dashboards;
mod delivery;
mod demand;
mod deployment;
mod desk;
mod early_action;
mod first_run;
mod flags;
mod ingest;
mod privacy;
mod properties;
mod reload;
mod retention;
mod robustness;
mod security;
mod sweep;

/// The real `lantern` command, built for these tests.
pub const LANTERN: &str = env!("CARGO_BIN_EXE_lantern-under-test");
