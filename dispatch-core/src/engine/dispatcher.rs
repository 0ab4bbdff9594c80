//! The dispatcher: claims due queued runs and hands them to the Runner, retrying with backoff.

use super::Dispatch;
use super::job::job_inputs;
use crate::error::{ErrorKind, Result};
use crate::issue::Actor;
use crate::ports::{RunJob, RunReporter};
use crate::run::{Outcome, Run, RunPatch, RunStatus};
use chrono::Duration;
use std::sync::Arc;

/// How many runs one step claims.
const BATCH: usize = 16;
const MAX_BACKOFF_SECONDS: i64 = 600;

impl Dispatch {
    /// One dispatcher pass: claim due runs (exactly once across processes) and dispatch them.
    /// Returns how many runs were handed to the runner successfully.
    pub async fn dispatcher_step(&self) -> Result<usize> {
        // With the kill switch on, queued runs stay queued (they go out once it is off).
        if self.kill_switch().await?.enabled {
            return Ok(0);
        }
        let claimed = self
            .inner
            .store
            .claim_due_runs(self.now(), self.inner.config.lease, BATCH)
            .await?;
        let results =
            futures::future::join_all(claimed.into_iter().map(|run| self.dispatch_one(run))).await;
        let mut ok = 0;
        for r in results {
            match r {
                Ok(true) => ok += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "dispatch bookkeeping failed"),
            }
        }
        Ok(ok)
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let base = self.inner.config.retry_base.num_seconds().max(1);
        let secs = base
            .saturating_mul(1i64 << attempts.saturating_sub(1).min(16))
            .min(MAX_BACKOFF_SECONDS);
        Duration::seconds(secs)
    }

    async fn dispatch_one(&self, run: Run) -> Result<bool> {
        let actor = Actor::system("Dispatcher");
        let issue = match self.get_issue(run.issue_id).await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(run = %run.id, error = %e, "run without issue; failing it");
                let patch = RunPatch {
                    status: Some(RunStatus::Failed),
                    outcome: Some(Outcome::Failed),
                    outcome_summary: Some("Issue no longer exists".into()),
                    lease_until: Some(None),
                    expect_claim: Some(run.claim),
                    ..RunPatch::default()
                };
                self.inner
                    .store
                    .update_run(run.id, &patch, &actor, self.now())
                    .await?;
                return Ok(false);
            }
        };
        // Cancelled while it waited (a claim that outlived a crashed dispatcher included).
        if run.cancel_requested_at.is_some() {
            self.end_cancelled(&run, &issue, "Cancelled before its agent started", &actor)
                .await?;
            return Ok(false);
        }
        let link = self
            .inner
            .store
            .links_for_issue(issue.id)
            .await?
            .into_iter()
            .max_by_key(|l| l.last_seen_at);
        let inputs = job_inputs(&run, &issue, link.as_ref());
        let attempts = run.dispatch_attempts.saturating_add(1);
        let job = RunJob {
            run: run.clone(),
            issue: issue.clone(),
            inputs,
        };
        let reporter: Arc<dyn RunReporter> = Arc::new(self.clone());
        let dispatched = self.inner.runner.dispatch(job, reporter);
        tokio::pin!(dispatched);
        // While the runner works (GitHub retries, a worktree being prepared), the claim's lease
        // is renewed, so no other process takes the run over from a dispatcher that is alive.
        let result = tokio::select! {
            r = &mut dispatched => r,
            () = self.renew_lease(&run, &actor) => dispatched.await,
        };
        match result {
            Ok(receipt) => {
                let now = self.now();
                let patch = RunPatch {
                    status: Some(RunStatus::Running),
                    runner: Some(self.inner.runner.name().to_string()),
                    external_id: receipt.external_id.clone(),
                    external_url: receipt.external_url.clone(),
                    dispatch_attempts: Some(attempts),
                    last_error: Some(None),
                    lease_until: Some(None),
                    last_callback_at: Some(now),
                    expect_claim: Some(run.claim),
                    ..RunPatch::default()
                };
                let update = match self.write_run(run.id, patch, &issue, &actor, now).await {
                    Ok(u) => u,
                    Err(e) if e.kind == ErrorKind::Conflict => {
                        self.fenced_dispatch(&run, receipt).await;
                        return Ok(false);
                    }
                    Err(e) => return Err(e),
                };
                self.after_run_update(&update, &issue).await?;
                // A cancel that arrived while the runner worked (stored before this write, so
                // this read sees it): stop what was just started.
                if update.run.cancel_requested_at.is_some() || update.run.status.is_terminal() {
                    let confirmed = self.stop_agent(&update.run).await;
                    tracing::warn!(run = %run.id, confirmed, "cancelled during dispatch; agent stopped");
                    if !update.run.status.is_terminal() {
                        self.end_cancelled(
                            &update.run,
                            &update.issue,
                            "Cancelled while its agent was being started",
                            &actor,
                        )
                        .await?;
                    }
                    return Ok(false);
                }
                tracing::info!(run = %run.id, issue = %issue.identifier, "run dispatched");
                Ok(true)
            }
            Err(e) => {
                let now = self.now();
                let retry =
                    e.kind.is_retryable() && attempts < self.inner.config.max_dispatch_attempts;
                let patch = if retry {
                    tracing::warn!(run = %run.id, attempt = attempts, error = %e, "dispatch failed; will retry");
                    RunPatch {
                        status: Some(RunStatus::Queued),
                        not_before: Some(now + self.backoff(attempts)),
                        dispatch_attempts: Some(attempts),
                        last_error: Some(Some(e.to_string())),
                        lease_until: Some(None),
                        expect_claim: Some(run.claim),
                        ..RunPatch::default()
                    }
                } else {
                    tracing::error!(run = %run.id, attempt = attempts, error = %e, "dispatch failed; giving up");
                    RunPatch {
                        status: Some(RunStatus::Failed),
                        outcome: Some(Outcome::Failed),
                        outcome_summary: Some(format!(
                            "Dispatch failed after {attempts} attempt(s): {e}"
                        )),
                        dispatch_attempts: Some(attempts),
                        last_error: Some(Some(e.to_string())),
                        lease_until: Some(None),
                        expect_claim: Some(run.claim),
                        ..RunPatch::default()
                    }
                };
                let update = match self.write_run(run.id, patch, &issue, &actor, now).await {
                    Ok(u) => u,
                    Err(e) if e.kind == ErrorKind::Conflict => {
                        tracing::warn!(run = %run.id, claim = run.claim, "dispatch failed after another process claimed the run; its result is not recorded");
                        return Ok(false);
                    }
                    Err(e) => return Err(e),
                };
                self.after_run_update(&update, &issue).await?;
                // Cancelled while the failed dispatch ran: no retry.
                if update.run.cancel_requested_at.is_some() && !update.run.status.is_terminal() {
                    self.end_cancelled(
                        &update.run,
                        &update.issue,
                        "Cancelled while its agent was being started",
                        &actor,
                    )
                    .await?;
                }
                Ok(false)
            }
        }
    }

    /// Renews the claim's lease every third of the lease until the claim is lost (another
    /// process claimed the run: the lease had run out) — then it returns. Never returns while
    /// the claim holds.
    async fn renew_lease(&self, run: &Run, actor: &Actor) {
        let lease = self.inner.config.lease;
        let every = (lease / 3)
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(60))
            .max(std::time::Duration::from_millis(100));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            let now = self.now();
            let patch = RunPatch {
                lease_until: Some(Some(now + lease)),
                expect_claim: Some(run.claim),
                ..RunPatch::default()
            };
            match self
                .inner
                .store
                .update_run(run.id, &patch, actor, now)
                .await
            {
                Ok(u) if u.run.status == RunStatus::Dispatching => {}
                // The run ended (cancelled) while the runner worked: nothing left to hold.
                Ok(_) => return std::future::pending().await,
                Err(e) if e.kind == ErrorKind::Conflict => {
                    tracing::warn!(run = %run.id, claim = run.claim, "the run was claimed again by another process");
                    return;
                }
                Err(e) => {
                    tracing::warn!(run = %run.id, error = %e, "cannot renew the dispatch lease")
                }
            }
        }
    }

    /// Another process claimed the run while this one's runner worked (its lease had run out):
    /// the other claim owns the run. What this dispatch started is stopped, unless the runner
    /// answered with the very agent the run now records (an idempotent runner found it again).
    async fn fenced_dispatch(&self, run: &Run, receipt: crate::ports::DispatchReceipt) {
        let current = self.inner.store.get_run(run.id).await.ok();
        let same_agent = receipt.external_id.is_some()
            && current.as_ref().and_then(|r| r.external_id.as_ref())
                == receipt.external_id.as_ref();
        tracing::warn!(run = %run.id, claim = run.claim, same_agent, "dispatch returned after another process claimed the run; its result is not recorded");
        if same_agent || receipt.external_id.is_none() {
            return;
        }
        let mut mine = run.clone();
        mine.external_id = receipt.external_id;
        mine.external_url = receipt.external_url;
        let stopped = self.stop_agent(&mine).await;
        tracing::warn!(run = %run.id, stopped, "stopped the agent of the superseded dispatch");
    }
}
