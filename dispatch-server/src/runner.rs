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

    async fn dispatch(
        &self,
        _job: RunJob,
        _reporter: Arc<dyn RunReporter>,
    ) -> Result<DispatchReceipt> {
        Err(Error::invalid("runner", self.reason.clone()))
    }

    async fn cancel(&self, _run: &Run) -> Result<bool> {
        Ok(false)
    }
}

/// The runner for this configuration, and a line for the start-up banner: GitHub Actions when
/// `GITHUB_TOKEN` is set, else the local agent command when it can run here, else a runner that
/// fails every run at once with the reason.
pub fn select(get: &dyn Fn(&str) -> Option<String>) -> Result<(Arc<dyn Runner>, String)> {
    #[cfg(feature = "github")]
    if let Some(cfg) = dispatch_adapters::github::GithubConfig::from_lookup(get)? {
        let line = format!("GitHub Actions on {} at {}", cfg.full_name(), cfg.git_ref);
        let runner = dispatch_adapters::github::GithubActionsRunner::new(cfg)?;
        return Ok((Arc::new(runner), line));
    }
    #[cfg(feature = "local")]
    {
        let cfg = dispatch_adapters::local::LocalConfig::from_lookup(get)?;
        let repo = cfg.repo.display().to_string();
        let runner = dispatch_adapters::local::LocalRunner::new(cfg);
        // A runner that cannot work here still fails each run at once with the reason, which
        // is also printed now.
        let line = match runner.preflight() {
            Ok(()) => format!("local agent command in {repo}"),
            Err(e) => format!("local agent command in {repo} — NOT READY: {e}"),
        };
        return Ok((Arc::new(runner), line));
    }
    #[allow(unreachable_code)]
    let _ = get;
    let reason = "no agent runner is available: set GITHUB_TOKEN and GITHUB_REPO for GitHub Actions, or install the Claude Code CLI (`claude`) for the local runner".to_string();
    Ok((
        Arc::new(UnavailableRunner {
            reason: reason.clone(),
        }),
        reason,
    ))
}
