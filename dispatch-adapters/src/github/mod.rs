//! GitHub Actions as the agent runner (feature `github`).
//!
//! [`GithubActionsRunner`] dispatches the agent workflows (spec §7.1, §7.2) with plain `reqwest`,
//! finds the run it started by our `dispatch_run_id` (the workflows' `run-name` carries it), and
//! can poll and cancel that run. [`GithubConfig::from_lookup`] reads the original's variables.
//!
//! Each workflow must declare the `dispatch_run_id` input (and `callback_url` when
//! `DISPATCH_CALLBACK_URL` is set; GitHub answers 422 to undeclared inputs) and carry it in its
//! name, e.g. `run-name: "Auto Investigate ${{ inputs.issue_identifier }} [${{ inputs.dispatch_run_id }}]"`.
//!
//! TLS: reqwest's `rustls-no-provider` plus rustls with the `ring` provider, installed as the
//! process default when no provider is installed yet. The default `rustls` feature of reqwest 0.13
//! would bring aws-lc-rs, a large C/assembly build; `ring` needs only the C compiler that the
//! Rust toolchain needs anyway. Certificates come from the platform (rustls-platform-verifier).

mod client;
mod config;
mod runner;
#[cfg(feature = "sentry")]
mod suspects;

pub use config::{DEFAULT_API_URL, DEFAULT_REF, DiscoveryPolicy, GithubConfig, RetryPolicy};
pub use runner::{CALLBACK_URL_INPUT, GithubActionsRunner, RUN_ID_INPUT, remote_status};
#[cfg(feature = "sentry")]
pub use suspects::{
    Correlation, DeploymentInfo, GithubSuspectFinder, SuspectCommit, SuspectPolicy, paths_match,
};
