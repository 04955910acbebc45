//! rlmd: Recursive Language Model tasks as durable jobs behind an HTTP API.

pub mod answers;
pub mod api;
pub mod cli;
pub mod config;
pub mod contexts;
pub mod domain;
pub mod engine;
pub mod events;
pub mod keys;
pub mod metrics;
pub mod providers;
pub mod repl;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod webhooks;
pub mod worker;
