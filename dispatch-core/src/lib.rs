//! # dispatch-core
//!
//! The Dispatch domain and engine, with no network and no SQL. Production errors and plain-language
//! requests become [`issue::Issue`]s; errors are normalised and fingerprinted ([`event`]), pass the
//! spawn [`gate`]s, become queued [`run::Run`]s that a [`ports::Runner`] executes, and a merged fix is
//! proved by watching whether the same fingerprint comes back ([`verify`]).
//!
//! Everything that touches the outside world is a trait in [`ports`]; the [`engine::Dispatch`] facade
//! owns `Arc<dyn …>` ports and exposes every use-case. [`memory`] holds a complete in-memory store and
//! event bus; the `testkit` feature adds a manual clock, a fake runner and the Store conformance suite
//! that every store implementation must pass.

#[macro_use]
mod macros;

pub mod agent;
pub mod agent_output;
pub mod brand;
pub mod clock;
pub mod config;
pub mod customer;
pub mod dedup;
pub mod embedding;
pub mod engine;
pub mod error;
pub mod event;
pub mod gate;
pub mod ids;
pub mod import;
pub mod issue;
pub mod memory;
pub mod orchestrator;
pub mod outbox;
pub mod plan;
pub mod ports;
pub mod pr;
pub mod pr_match;
pub mod run;
pub mod search;
pub mod verify;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use clock::{Clock, SystemClock};
pub use engine::Dispatch;
pub use error::{Error, ErrorKind, Result};

/// Timestamps are UTC everywhere; the spawn budget's day boundary is midnight UTC.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
