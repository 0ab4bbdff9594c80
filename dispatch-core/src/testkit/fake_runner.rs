use crate::error::{Error, ErrorKind, Result};
use crate::ids::RunId;
use crate::ports::{DispatchReceipt, RunJob, RunReporter, Runner};
use crate::run::Run;
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// A runner that starts nothing. It records every dispatch call, can be told to fail the next
/// calls, keeps the reporter of each run so a test can play the agent, and is idempotent by run
/// id like a real runner must be (a repeated dispatch returns the first receipt).
#[derive(Default)]
pub struct FakeRunner {
    state: Mutex<State>,
    /// Signalled on every dispatch call.
    entered: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    calls: Vec<RunId>,
    jobs: Vec<RunJob>,
    receipts: HashMap<RunId, DispatchReceipt>,
    reporters: HashMap<RunId, Arc<dyn RunReporter>>,
    failures: VecDeque<ErrorKind>,
    cancelled: Vec<RunId>,
    /// Runs whose agent the fake says is lost (`orphan`).
    orphans: Vec<RunId>,
    /// While set, dispatch calls wait here for a permit (`hold_dispatches` / `release`).
    gate: Option<Arc<tokio::sync::Semaphore>>,
    /// The runner's handles of the agents `cancel` was asked to stop.
    cancelled_agents: Vec<Option<String>>,
    /// Receipts name agents `<prefix>-<run id>` ("fake" by default).
    prefix: Option<String>,
}

impl FakeRunner {
    pub fn new() -> Arc<Self> {
        Arc::new(FakeRunner::default())
    }
    /// A runner whose agents are named `<prefix>-<run id>`: two processes' runners start
    /// different agents for the same run.
    pub fn named(prefix: &str) -> Arc<Self> {
        let r = FakeRunner::default();
        r.lock().prefix = Some(prefix.to_string());
        Arc::new(r)
    }
    /// The handles (external ids) of the agents `cancel` was asked to stop, in order.
    pub fn cancelled_agents(&self) -> Vec<Option<String>> {
        self.lock().cancelled_agents.clone()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// The next `n` dispatch calls fail with `kind`.
    pub fn fail_next(&self, n: usize, kind: ErrorKind) {
        let mut s = self.lock();
        for _ in 0..n {
            s.failures.push_back(kind.clone());
        }
    }
    /// Every dispatch call, in order (a run appearing twice was dispatched twice).
    pub fn calls(&self) -> Vec<RunId> {
        self.lock().calls.clone()
    }
    /// Jobs accepted (one per run).
    pub fn jobs(&self) -> Vec<RunJob> {
        self.lock().jobs.clone()
    }
    pub fn job(&self, run: RunId) -> Option<RunJob> {
        self.lock().jobs.iter().find(|j| j.run.id == run).cloned()
    }
    pub fn reporter(&self, run: RunId) -> Option<Arc<dyn RunReporter>> {
        self.lock().reporters.get(&run).cloned()
    }
    pub fn cancelled(&self) -> Vec<RunId> {
        self.lock().cancelled.clone()
    }
    /// From now on the run's agent is lost (as after a restart of the server that watched it).
    pub fn orphan(&self, run: RunId) {
        self.lock().orphans.push(run);
    }
    /// From now on a dispatch call is recorded, then waits until `release` lets it return (a
    /// slow dispatch: a GitHub retry, a worktree being prepared).
    pub fn hold_dispatches(&self) {
        self.lock().gate = Some(Arc::new(tokio::sync::Semaphore::new(0)));
    }
    /// Lets `n` held dispatch calls return.
    pub fn release(&self, n: usize) {
        if let Some(g) = &self.lock().gate {
            g.add_permits(n);
        }
    }
    /// Waits until `n` dispatch calls have been made (held ones included).
    pub async fn wait_for_calls(&self, n: usize) {
        loop {
            let entered = self.entered.notified();
            tokio::pin!(entered);
            // Registered before the check, so a call made in between still wakes us.
            entered.as_mut().enable();
            if self.lock().calls.len() >= n {
                return;
            }
            entered.await;
        }
    }
}

#[async_trait]
impl Runner for FakeRunner {
    fn name(&self) -> &str {
        "fake"
    }

    async fn dispatch(
        &self,
        job: RunJob,
        reporter: Arc<dyn RunReporter>,
    ) -> Result<DispatchReceipt> {
        let gate = {
            let mut s = self.lock();
            s.calls.push(job.run.id);
            s.gate.clone()
        };
        self.entered.notify_waiters();
        if let Some(g) = gate {
            g.acquire()
                .await
                .map_err(|_| Error::unavailable("fake runner gate closed"))?
                .forget();
        }
        let mut s = self.lock();
        if let Some(kind) = s.failures.pop_front() {
            return Err(Error::new(kind, "fake runner told to fail"));
        }
        if let Some(r) = s.receipts.get(&job.run.id) {
            return Ok(r.clone());
        }
        let prefix = s.prefix.clone().unwrap_or_else(|| "fake".into());
        let receipt = DispatchReceipt {
            external_id: Some(format!("{prefix}-{}", job.run.id)),
            external_url: Some(format!("https://runner.invalid/runs/{}", job.run.id)),
        };
        s.receipts.insert(job.run.id, receipt.clone());
        s.reporters.insert(job.run.id, reporter);
        s.jobs.push(job);
        Ok(receipt)
    }

    async fn cancel(&self, run: &Run) -> Result<bool> {
        let mut s = self.lock();
        s.cancelled.push(run.id);
        s.cancelled_agents.push(run.external_id.clone());
        Ok(true)
    }

    async fn orphaned(&self, run: &Run) -> Result<bool> {
        Ok(self.lock().orphans.contains(&run.id))
    }
}
