//! The HTTP client every adapter that calls an outside service uses: timeouts, bounded answers,
//! one try classified into answer / retry / failure, retries with capped exponential backoff and
//! full jitter, the server's `Retry-After`, and "maybe applied" for non-idempotent requests.
//! What is one service's own (GitHub's rate-limit headers and discovery before a repeat, Slack's
//! `ok: false` answers, Anthropic's `x-should-retry`) stays in its adapter, on these pieces.

mod client;
mod retry;
pub mod settings;

pub use client::{
    ERROR_BODY_LIMIT, ErrorBody, HttpClient, HttpConfig, Reply, Transport, classify, join,
    parse_base, truncate,
};
pub use retry::{
    Attempt, Idempotency, RetryConfig, after_attempts, parse_retry_after, retry, retry_after,
};
