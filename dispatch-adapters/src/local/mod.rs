//! The local runner: runs a coding agent (Claude Code by default) as a process on this machine.
//!
//! For each run, [`LocalRunner`]:
//! 1. creates a fresh git worktree of `DISPATCH_LOCAL_REPO` on a new branch
//!    `dispatch/<identifier>-<8 hex of the run id>` from `DISPATCH_LOCAL_BASE_REF` (default `HEAD`),
//!    under `DISPATCH_WORKTREE_DIR/<repo>/`, with a git-ignored `.scratch/` holding the prompt;
//! 2. starts the agent command (`DISPATCH_AGENT_COMMAND`, a template split shell-words style;
//!    see [`CommandTemplate`] and [`DEFAULT_AGENT_COMMAND`]) in its own process group. The prompt is
//!    one argument (`{prompt}`), a file (`{prompt_file}`) and `DISPATCH_PROMPT`; no shell ever sees
//!    it. The agent also gets `DISPATCH_RUN_ID`, `DISPATCH_ISSUE_ID`, `DISPATCH_ISSUE_IDENTIFIER`,
//!    `DISPATCH_RESULT_FILE`, `DISPATCH_REPORT_FILE`, … and every workflow input as
//!    `DISPATCH_INPUT_<NAME>`;
//! 3. returns at once; a task reads stdout and stderr line by line, renders stdout through the
//!    core's [`StreamFilter`](dispatch_core::agent_output::StreamFilter) (Claude Code stream-json:
//!    text, `[TOOL]`, `[RESULT]`, `[COMPLETED] Cost: …`) and posts the lines as terminal chunks: lines
//!    arriving within `batch_window` (200 ms) go out together, and no line waits longer than that;
//! 4. enforces the kind's wall-clock limit (`DISPATCH_AGENT_TIMEOUT_MINUTES`, default §7.1) and
//!    cancel: SIGTERM to the process group, SIGKILL after `kill_grace`. When the agent exits, the
//!    rest of its process group is killed too (no stray dev servers);
//! 5. reads `.scratch/run-result.json` (§7.4: missing → failed "Agent exited without declaring an
//!    outcome", unknown outcome → failed "Invalid outcome"), commits what the agent left uncommitted,
//!    posts the kind's report file as an activity (`investigation_complete`, …, or `…_failed` with
//!    the output tail) and finishes the run with cost, turns and model from the stream's `result`.
//!
//! The worktree and branch are kept after the run for a person to inspect or push.
//! Concurrency is bounded by the spawn gates, not here. A missing agent executable fails
//! [`Runner::dispatch`] at once with a non-retryable error naming `DISPATCH_AGENT_COMMAND`, so the
//! dispatcher fails the run immediately; [`LocalRunner::preflight`] reports the same at start-up.

mod config;
mod process;
pub mod prompts;
mod worktree;

pub use config::{
    CommandTemplate, DEFAULT_AGENT_COMMAND, LocalConfig, PLACEHOLDERS, default_timeout,
    find_executable,
};

use async_trait::async_trait;
use dispatch_core::ids::RunId;
use dispatch_core::ports::{DispatchReceipt, RemoteRunStatus, RunJob, RunReporter, Runner};
use dispatch_core::run::{Run, RunStatus};
use dispatch_core::{Error, Result};
use process::{Stop, Supervision};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// Runs agents as local processes. See the [module documentation](self).
pub struct LocalRunner {
    config: Arc<LocalConfig>,
    /// This server process, recorded in every run's external id: another process can then tell
    /// whether the process that watches an agent is still there.
    owner: process::Owner,
    runs: Arc<Mutex<HashMap<RunId, RunEntry>>>,
    /// Counts run ends (the order [`forget_oldest_ended`] forgets in).
    ends: Arc<std::sync::atomic::AtomicU64>,
    /// Dispatches are started one at a time: the idempotency check and the start are one step,
    /// and git does not like concurrent `worktree add` on one repository.
    starting: tokio::sync::Mutex<()>,
}

struct RunEntry {
    receipt: DispatchReceipt,
    workdir: PathBuf,
    pgid: i32,
    stop: watch::Sender<Option<Stop>>,
    done: watch::Receiver<bool>,
    /// Set when the supervisor has reported the end.
    final_status: Option<RunStatus>,
    /// The order in which runs ended (oldest first), for forgetting them.
    ended: Option<u64>,
}

/// Ended runs this runner keeps answering `status` and `workdir` for; beyond it the oldest are
/// forgotten (the store holds their end), so a long-lived server's map does not grow with every
/// run it ever started.
const ENDED_KEPT: usize = 256;

/// Forgets the oldest ended runs beyond [`ENDED_KEPT`]; running ones are never forgotten.
fn forget_oldest_ended<V>(runs: &mut HashMap<RunId, V>, ended: impl Fn(&V) -> Option<u64>) {
    let mut order: Vec<(u64, RunId)> = runs
        .iter()
        .filter_map(|(id, e)| ended(e).map(|n| (n, *id)))
        .collect();
    if order.len() <= ENDED_KEPT {
        return;
    }
    order.sort_unstable();
    let excess = order.len() - ENDED_KEPT;
    for (_, id) in order.into_iter().take(excess) {
        runs.remove(&id);
    }
}

impl LocalRunner {
    pub fn new(config: LocalConfig) -> Self {
        LocalRunner {
            config: Arc::new(config),
            owner: process::Owner::current(),
            runs: Arc::new(Mutex::new(HashMap::new())),
            ends: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            starting: tokio::sync::Mutex::new(()),
        }
    }

    pub fn config(&self) -> &LocalConfig {
        &self.config
    }

    fn runs(&self) -> MutexGuard<'_, HashMap<RunId, RunEntry>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The agent executable, found like `execvp` would (on the agent's `PATH`).
    fn program(&self) -> Result<PathBuf> {
        let name = self.config.agent_command.program();
        find_executable(name, self.config.search_path().as_deref()).ok_or_else(|| {
            let hint = if name == "claude" {
                " Install Claude Code (`npm install -g @anthropic-ai/claude-code`) or set DISPATCH_AGENT_COMMAND to another agent."
            } else {
                ""
            };
            Error::invalid(
                "DISPATCH_AGENT_COMMAND",
                format!("the agent command `{name}` was not found on PATH, so local agent runs fail at once.{hint}"),
            )
        })
    }

    /// Start-up check for `dispatch serve`: the agent executable exists, git is installed, the
    /// repository is a git checkout with a commit to branch from. The error says what to fix.
    pub fn preflight(&self) -> Result<()> {
        self.program()?;
        if find_executable("git", std::env::var("PATH").ok().as_deref()).is_none() {
            return Err(Error::invalid(
                "DISPATCH_LOCAL_REPO",
                "git was not found on PATH; the local runner needs it for worktrees",
            ));
        }
        worktree::check_repo_sync(&self.config).map(|_| ())
    }

    /// The worktree of a run this runner started.
    pub fn workdir(&self, run: RunId) -> Option<PathBuf> {
        self.runs().get(&run).map(|e| e.workdir.clone())
    }

    /// Runs whose agent is still running.
    pub fn active_runs(&self) -> Vec<RunId> {
        self.runs()
            .iter()
            .filter(|(_, e)| e.final_status.is_none())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Stops every running agent (their runs fail with "Dispatch shut down …") and waits until
    /// each has reported its end. For a graceful server shutdown.
    pub async fn shutdown(&self) {
        let waiting: Vec<watch::Receiver<bool>> = self
            .runs()
            .values()
            .filter(|e| e.final_status.is_none())
            .map(|e| {
                let _ = e.stop.send(Some(Stop::Shutdown));
                e.done.clone()
            })
            .collect();
        for mut d in waiting {
            let _ = tokio::time::timeout(self.stop_wait(), d.wait_for(|done| *done)).await;
        }
    }

    /// How long a stop may take: the kill grace, draining, and reporting.
    fn stop_wait(&self) -> Duration {
        self.config.kill_grace + self.config.drain_grace + Duration::from_secs(30)
    }
}

impl LocalRunner {
    /// The agent another server process of this host started for this run and that still
    /// runs (noted in the run's worktree), as its receipt.
    fn agent_of_another_process(&self, job: &RunJob) -> Option<DispatchReceipt> {
        let workdir = worktree::workdir_path(&self.config, job);
        let noted = std::fs::read_to_string(workdir.join(worktree::AGENT_MARKER)).ok()?;
        let noted = noted.trim();
        let (pgid, owner) = process::parse_external_id(noted)?;
        (owner.host == self.owner.host && owner != self.owner && process::group_alive(pgid)).then(
            || DispatchReceipt {
                external_id: Some(noted.to_string()),
                external_url: Some(format!("file://{}", workdir.display())),
            },
        )
    }
}

impl Drop for LocalRunner {
    /// Agents must not outlive the runner: kill every process group still running.
    fn drop(&mut self) {
        for e in self.runs().values() {
            if e.final_status.is_none() {
                process::signal_group(e.pgid, libc::SIGKILL);
            }
        }
    }
}

#[async_trait]
impl Runner for LocalRunner {
    fn name(&self) -> &str {
        "local"
    }

    async fn dispatch(
        &self,
        job: RunJob,
        reporter: Arc<dyn RunReporter>,
    ) -> Result<DispatchReceipt> {
        let _one_at_a_time = self.starting.lock().await;
        if let Some(e) = self.runs().get(&job.run.id) {
            return Ok(e.receipt.clone());
        }
        if let Some(receipt) = self.agent_of_another_process(&job) {
            // Never a second agent for a run while the first is alive: the run records this
            // one. When its server is gone the sweeper finds it orphaned (`orphaned`), stops
            // it and fails the run; when its server lives, that server's fenced dispatch sees
            // the run record its own agent.
            tracing::warn!(run = %job.run.id, agent = ?receipt.external_id, "an agent of this run started by another server process is still running; not starting a second");
            return Ok(receipt);
        }
        let program = self.program()?;
        let prep = worktree::prepare(&self.config, &job).await?;
        let note = process::AgentNote::new(&worktree::short_id(&job), &self.owner);
        let spawned = match process::spawn(&self.config, &program, &job, &prep, &note) {
            Ok(s) => s,
            Err(e) => {
                worktree::discard(&self.config, &prep).await;
                return Err(e);
            }
        };
        let run_id = job.run.id;
        let pgid = spawned.pgid;
        // The agent noted itself in its worktree before it started (`process::spawn`).
        let receipt = DispatchReceipt {
            external_id: Some(note.id(pgid)),
            external_url: Some(format!("file://{}", prep.workdir.display())),
        };
        let (stop_tx, stop_rx) = watch::channel(None);
        let (done_tx, done_rx) = watch::channel(false);
        self.runs().insert(
            run_id,
            RunEntry {
                receipt: receipt.clone(),
                workdir: prep.workdir.clone(),
                pgid,
                stop: stop_tx,
                done: done_rx,
                final_status: None,
                ended: None,
            },
        );
        let sup = Supervision {
            config: self.config.clone(),
            job,
            prep,
            spawned,
            receipt: receipt.clone(),
            reporter,
            stop: stop_rx,
            program: program.display().to_string(),
        };
        let runs = self.runs.clone();
        let ends = self.ends.clone();
        tokio::spawn(async move {
            let status = process::supervise(sup).await;
            {
                let mut runs = runs.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(e) = runs.get_mut(&run_id) {
                    e.final_status = Some(status);
                    e.ended = Some(ends.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                }
                forget_oldest_ended(&mut runs, |e| e.ended);
            }
            let _ = done_tx.send(true);
        });
        Ok(receipt)
    }

    /// Stops the agent's process group (SIGTERM, then SIGKILL after the grace period) and waits
    /// until the run has reported its end. `false` for a run that is not running here.
    async fn cancel(&self, run: &Run) -> Result<bool> {
        let mut done = {
            let runs = self.runs();
            match runs.get(&run.id) {
                Some(e) if e.final_status.is_none() => {
                    if e.stop.send(Some(Stop::Cancelled)).is_err() {
                        return Ok(false);
                    }
                    e.done.clone()
                }
                _ => return Ok(false),
            }
        };
        match tokio::time::timeout(self.stop_wait(), done.wait_for(|d| *d)).await {
            Ok(_) => Ok(true),
            Err(_) => Err(Error::unavailable(format!(
                "the agent of run {} did not stop in time",
                run.id
            ))),
        }
    }

    /// A run this process does not watch, started by a process of this host that is gone (the
    /// server restarted): whatever is left of its agent's process group is killed and the run is
    /// lost. Runs of other hosts, of live processes, or with an id of an older format: `false`.
    async fn orphaned(&self, run: &Run) -> Result<bool> {
        if self.runs().contains_key(&run.id) {
            return Ok(false);
        }
        let Some((pgid, owner)) = run
            .external_id
            .as_deref()
            .and_then(process::parse_external_id)
        else {
            return Ok(false);
        };
        if owner.host != self.owner.host || owner == self.owner || owner.is_alive() {
            return Ok(false);
        }
        process::signal_group(pgid, libc::SIGKILL);
        Ok(true)
    }

    async fn status(&self, run: &Run) -> Result<Option<RemoteRunStatus>> {
        Ok(self.runs().get(&run.id).map(|e| match e.final_status {
            None => RemoteRunStatus::Running,
            Some(RunStatus::Completed) => RemoteRunStatus::Succeeded,
            Some(RunStatus::Cancelled) => RemoteRunStatus::Cancelled,
            Some(_) => RemoteRunStatus::Failed,
        }))
    }
}

#[cfg(test)]
mod forget_tests {
    use super::*;

    #[test]
    fn the_oldest_ended_runs_beyond_the_bound_are_forgotten_and_running_ones_kept() {
        let mut runs: HashMap<RunId, Option<u64>> = HashMap::new();
        let running: Vec<RunId> = (0..10).map(|_| RunId::new()).collect();
        for id in &running {
            runs.insert(*id, None);
        }
        let ended: Vec<RunId> = (0..ENDED_KEPT + 5).map(|_| RunId::new()).collect();
        for (n, id) in ended.iter().enumerate() {
            runs.insert(*id, Some(n as u64));
        }
        forget_oldest_ended(&mut runs, |e| *e);
        assert_eq!(runs.len(), 10 + ENDED_KEPT);
        assert!(running.iter().all(|id| runs.contains_key(id)));
        assert!(
            ended[..5].iter().all(|id| !runs.contains_key(id)),
            "the oldest go"
        );
        assert!(ended[5..].iter().all(|id| runs.contains_key(id)));
    }
}
