//! Whole-system tests: real services on port 0, a real broker, SQLite and PostgreSQL.

mod browser;
mod cli;
mod conformance;
mod crash;
mod dashboards;
mod delivery;
mod demand;
mod desk;
mod flags;
mod ingest;
mod properties;
mod reload;
mod robustness;

/// The real `lantern` command, built for these tests.
pub const LANTERN: &str = env!("CARGO_BIN_EXE_lantern-under-test");
