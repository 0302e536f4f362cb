//! Whole-system tests: real services on port 0, a real broker, SQLite and PostgreSQL.

mod browser;
mod cli;
mod conformance;
mod crash;
mod dashboards;
mod demand;
mod desk;
mod flags;
mod ingest;
mod reload;
