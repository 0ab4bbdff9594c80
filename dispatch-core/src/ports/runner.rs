use crate::error::Result;
use crate::ids::RunId;
use crate::issue::Issue;
use crate::run::{NewActivity, Outcome, Run, RunStatus};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a runner gets: the run, its issue, and the workflow inputs (spec §7.2, length-capped).
#[derive(Debug, Clone, PartialEq)]
pub struct RunJob {
    pub run: Run,
    pub issue: Issue,
    pub inputs: BTreeMap<String, String>,
}

/// The runner accepted the job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DispatchReceipt {
    /// The runner's own id (GitHub run id, pid, ...), when known at once.
    pub external_id: Option<String>,
    pub external_url: Option<String>,
}

/// The end of a run as the agent reports it. Values are set, not added.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// `Completed` or `Failed` (or `Cancelled`/`TimedOut` from the runner itself).
    pub status: Option<RunStatus>,
    pub outcome: Option<Outcome>,
    pub summary: Option<String>,
    pub cost_usd: Option<f64>,
    pub num_turns: Option<u32>,
    pub model: Option<String>,
    pub tokens_used: Option<u64>,
    pub pr_number: Option<i64>,
    pub files_changed: Option<Vec<String>>,
    pub follow_ups: Option<Vec<String>>,
    pub report: Option<String>,
    pub prompt_text: Option<String>,
}

/// How runners that execute in-process (the local runner, tests) report back; the engine
/// implements it with the same code paths as the HTTP agent callbacks.
#[async_trait]
pub trait RunReporter: Send + Sync {
    async fn started(
        &self,
        run: RunId,
        external_id: Option<String>,
        url: Option<String>,
    ) -> Result<()>;
    async fn terminal(&self, run: RunId, content: &str) -> Result<()>;
    async fn activity(&self, run: RunId, activity: NewActivity) -> Result<()>;
    async fn finish(&self, run: RunId, result: RunResult) -> Result<()>;
}

/// What a runner knows about a run it started, for polling when callbacks stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteRunStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

#[async_trait]
pub trait Runner: Send + Sync {
    fn name(&self) -> &str;
    /// Starts the job. Must be idempotent by `job.run.id`: a retry after a dispatch that did go
    /// through must not start a second agent.
    async fn dispatch(
        &self,
        job: RunJob,
        reporter: Arc<dyn RunReporter>,
    ) -> Result<DispatchReceipt>;
    /// Stops the run; `true` when the runner confirmed the cancel.
    async fn cancel(&self, run: &Run) -> Result<bool>;
    /// Polls the runner; `None` when it cannot tell.
    async fn status(&self, _run: &Run) -> Result<Option<RemoteRunStatus>> {
        Ok(None)
    }
    /// `true` when the run's agent is known to be lost for good without a result — the process
    /// that started and watched it is gone (a server restarted) — after the runner stopped
    /// whatever was left of it. The sweeper then ends the run at once instead of waiting for the
    /// stale timeout. `false` when the run is alive or the runner cannot tell.
    async fn orphaned(&self, _run: &Run) -> Result<bool> {
        Ok(false)
    }
}
