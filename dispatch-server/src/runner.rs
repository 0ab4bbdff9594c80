//! Which runner executes agent runs.

use async_trait::async_trait;
use dispatch_core::ports::{DispatchReceipt, RunJob, RunReporter, Runner};
use dispatch_core::run::Run;
use dispatch_core::{Error, Result};
use std::sync::Arc;

/// Used when no runner can work on this machine: every run fails at once with the reason, so
/// nothing waits forever for an agent that will never come.
pub struct UnavailableRunner {
    pub reason: String,
}

#[async_trait]
impl Runner for UnavailableRunner {
    fn name(&self) -> &str {
        "none"
    }

    async fn dispatch(&self, _job: RunJob, _reporter: Arc<dyn RunReporter>) -> Result<DispatchReceipt> {
        Err(Error::invalid("runner", self.reason.clone()))
    }

    async fn cancel(&self, _run: &Run) -> Result<bool> {
        Ok(false)
    }
}

/// The runner for this configuration, and a line for the start-up banner.
pub fn select(_get: &dyn Fn(&str) -> Option<String>) -> (Arc<dyn Runner>, String) {
    let reason = "no agent runner is available: set GITHUB_TOKEN and GITHUB_REPO for GitHub Actions, or install the Claude Code CLI (`claude`) for the local runner".to_string();
    (Arc::new(UnavailableRunner { reason: reason.clone() }), reason)
}
