//! The sweeper: deferred spawns whose time came, stale runs, verification deadlines, retention.
//! Time is persisted, never slept: a restart forgets nothing.

use super::Dispatch;
use crate::error::Result;
use crate::issue::Actor;
use crate::run::{ActivityType, NewActivity, Outcome, RunPatch, RunStatus};
use serde::{Deserialize, Serialize};

const BATCH: usize = 64;

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepReport {
    pub deferred_checked: usize,
    pub deferred_spawned: usize,
    /// Running runs ended because their agent was lost (its server restarted).
    pub orphaned: usize,
    pub timed_out: usize,
    pub verified: usize,
    /// Ingest follow-ups (fix verification, regression, gates) finished for stored events
    /// whose ingest could not finish them.
    #[serde(default)]
    pub follow_ups: usize,
    pub pruned: u64,
    /// Webhook delivery ids forgotten after [`DELIVERY_DAYS`].
    pub deliveries_pruned: u64,
    /// Settled outbox deliveries deleted after the outbox retention.
    #[serde(default)]
    pub outbox_pruned: u64,
}

/// Settled outbox deliveries deleted per statement, and statements per sweep at most (the rest
/// waits for the next sweep, so one sweep never holds the database long).
const OUTBOX_PRUNE_BATCH: usize = 500;
const OUTBOX_PRUNE_BATCHES: usize = 20;

/// Webhook delivery ids are kept this long for de-duplication (GitHub lets a person redeliver
/// for three days; Sentry and Grafana retry within hours).
pub const DELIVERY_DAYS: i64 = 30;

impl Dispatch {
    /// One sweeper pass. Safe in several processes at once: deferred spawns are leased, and
    /// every state move is guarded in the store so only one process performs it.
    pub async fn sweeper_step(&self) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        let now = self.now();
        // With the kill switch on, deferred spawns keep waiting instead of being refused.
        let due = if self.kill_switch().await?.enabled {
            Vec::new()
        } else {
            self.inner
                .store
                .claim_due_deferred(now, self.inner.config.lease, BATCH)
                .await?
        };
        for d in &due {
            report.deferred_checked += 1;
            match self.retry_deferred(d).await {
                Ok(o) if o.spawned() => report.deferred_spawned += 1,
                Ok(_) => {}
                Err(e) => tracing::warn!(issue = %d.issue_id, error = %e, "deferred spawn failed"),
            }
        }

        report.orphaned = self.settle_orphaned_runs().await?;
        report.timed_out = self.time_out_stale_runs().await?;
        report.follow_ups = self.finish_owed_follow_ups(now).await?;
        report.verified = self.verify_due_attempts().await?;

        if let Some(age) = self.inner.config.retention {
            report.pruned = self.inner.store.prune(self.now() - age).await?;
        }
        report.deliveries_pruned = self
            .inner
            .store
            .prune_deliveries(self.now() - chrono::Duration::days(DELIVERY_DAYS))
            .await?;
        if let Some(keep) = self.inner.outbox.retention {
            report.outbox_pruned = self.prune_outbox(self.now() - keep).await?;
        }
        Ok(report)
    }

    /// Deletes settled outbox deliveries whose last try was due before `before`, in bounded
    /// batches (at most [`OUTBOX_PRUNE_BATCHES`] of [`OUTBOX_PRUNE_BATCH`] per call).
    async fn prune_outbox(&self, before: crate::Timestamp) -> Result<u64> {
        let mut total = 0u64;
        for _ in 0..OUTBOX_PRUNE_BATCHES {
            let n = self
                .inner
                .store
                .prune_outbox(before, OUTBOX_PRUNE_BATCH)
                .await?;
            total += n as u64;
            if n < OUTBOX_PRUNE_BATCH {
                break;
            }
        }
        Ok(total)
    }

    /// Running runs of this process's runner whose agent is lost for good (`Runner::orphaned`:
    /// the server process that watched it is gone) end `failed` now — no run waits for the stale
    /// timeout because its server restarted. Returns how many this call ended.
    pub async fn settle_orphaned_runs(&self) -> Result<usize> {
        let running = self.inner.store.stale_runs(self.now(), BATCH).await?;
        let actor = Actor::system("Orphan Cleanup");
        let mut n = 0;
        for run in running {
            if run.runner.as_deref() != Some(self.inner.runner.name()) {
                continue;
            }
            match self.inner.runner.orphaned(&run).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(run = %run.id, error = %e, "cannot tell whether the agent is alive");
                    continue;
                }
            }
            let summary = "Agent lost: the server process that started it is gone";
            if self
                .end_unattended(&run, RunStatus::Failed, summary, &actor)
                .await?
                .is_some()
            {
                n += 1;
                tracing::warn!(run = %run.id, "agent lost with its server; run failed");
            }
        }
        Ok(n)
    }

    /// Ends a run nobody reports on any more (`status`, outcome failed, `summary`), with the
    /// events and an error activity; the updated run when this call ended it.
    async fn end_unattended(
        &self,
        run: &crate::run::Run,
        status: RunStatus,
        summary: &str,
        actor: &Actor,
    ) -> Result<Option<crate::run::Run>> {
        let Ok(before) = self.get_issue(run.issue_id).await else {
            return Ok(None);
        };
        let patch = RunPatch {
            status: Some(status),
            outcome: Some(Outcome::Failed),
            outcome_summary: Some(summary.to_string()),
            ..RunPatch::default()
        };
        let update = self
            .write_run(run.id, patch, &before, actor, self.now())
            .await?;
        if !update.ended {
            return Ok(None);
        }
        self.after_run_update(&update, &before).await?;
        let a = NewActivity::new(ActivityType::Error, summary).run(run.id);
        self.record_activity(run.issue_id, a).await?;
        Ok(Some(update.run))
    }

    /// Running runs silent for longer than their liveness timeout ([`crate::run::liveness`]: no
    /// heartbeat for `heartbeat_timeout` when the agent heartbeats, no callback for `stale_after`
    /// when it never did) end `timed_out` and their agent is stopped; their issues return to
    /// Backlog if they were Investigating (spec §5.8). Returns how many this call ended.
    pub async fn time_out_stale_runs(&self) -> Result<usize> {
        let policy = self.inner.config.liveness();
        let now = self.now();
        // Running runs are few (the concurrency limits bound them): the store finds those silent
        // for the shorter timeout, the rule decides each.
        let silent = self
            .inner
            .store
            .stale_runs(now - policy.shortest(), BATCH)
            .await?;
        let mut n = 0;
        for run in silent {
            let verdict = crate::run::liveness(&run, now, &policy);
            let Some(summary) = verdict.summary() else {
                continue;
            };
            let actor = match verdict {
                crate::run::Liveness::Dead {
                    heartbeats: true, ..
                } => Actor::system("Heartbeat Check"),
                _ => Actor::system("Stale Run Cleanup"),
            };
            if let Some(ended) = self
                .end_unattended(&run, RunStatus::TimedOut, &summary, &actor)
                .await?
            {
                n += 1;
                if let Err(e) = self.inner.runner.cancel(&ended).await {
                    tracing::warn!(run = %run.id, error = %e, "could not stop a timed-out run");
                }
            }
        }
        Ok(n)
    }
}
