//! Adapters for Dispatch: implementations of the core's ports, one cargo feature each.
//!
//! - `sqlite` (default): [`sqlite::SqliteStore`], the embedded default.
//! - `postgres`: [`postgres::PostgresStore`] and [`postgres::PostgresEventBus`] for several
//!   server processes on one database.
//! - `loki-tools`, `analytics-sql`: [`analytics`], the orchestrator's Loki and read-only SQL
//!   tool providers.

#[cfg(feature = "_sql")]
#[macro_use]
mod sql;

#[cfg(feature = "sqlite")]
pub mod sqlite;

#[cfg(feature = "sqlite")]
pub mod sqlite_backup;

#[cfg(feature = "sqlite")]
mod sqlite_inline;

#[cfg(feature = "sqlite")]
mod sqlite_rank;

/// Reading an original Dispatch database for `dispatch import original`.
#[cfg(feature = "postgres")]
pub mod original;
#[cfg(feature = "postgres")]
pub mod postgres;

#[cfg(feature = "_sql")]
pub mod open;

#[cfg(feature = "github")]
pub mod github;

#[cfg(feature = "claude")]
pub mod claude;

#[cfg(feature = "claude-sse")]
pub mod claude_sse;

#[cfg(feature = "local")]
pub mod local;

#[cfg(feature = "loki")]
pub mod loki;

#[cfg(feature = "loki-gateway")]
pub mod loki_gateway;

#[cfg(any(feature = "loki-gateway", feature = "loki-tools"))]
mod loki_client;

#[cfg(feature = "sentry")]
pub mod sentry;

#[cfg(feature = "webhook")]
pub mod webhook;

#[cfg(feature = "json-body")]
pub mod json_body;

#[cfg(feature = "signature")]
pub mod signature;

#[cfg(feature = "github-webhook")]
pub mod github_webhook;

#[cfg(feature = "slack")]
pub mod slack;

#[cfg(feature = "openai-embed")]
pub mod openai_embed;

#[cfg(any(feature = "loki-tools", feature = "analytics-sql"))]
pub mod analytics;

#[cfg(feature = "http")]
mod tls;

#[cfg(feature = "http")]
pub mod http;

/// Installs the process-wide rustls provider (ring) that every HTTPS client of the adapters uses;
/// call it before building another reqwest client in the same process (`dispatch status`).
#[cfg(feature = "http")]
pub fn ensure_crypto_provider() {
    tls::ensure_crypto_provider();
}
