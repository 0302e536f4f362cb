//! Lantern's common library: the event model, config, pseudonyms, MQTT, storage, telemetry.

pub mod clock;
pub mod config;
pub mod consumer;
pub mod duration;
pub mod event;
pub mod flag;
pub mod http;
pub mod lexicon;
pub mod mask;
pub mod mh_model;
pub mod mqtt;
pub mod pseudonym;
pub mod service;
pub mod store;
pub mod telemetry;

pub use clock::Clock;
pub use config::Config;
pub use duration::Span;
