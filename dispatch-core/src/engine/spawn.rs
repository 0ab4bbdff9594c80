//! Spawning agents: through the gates into a queued run, cancelling, and what a run's end does.

use super::Dispatch;
use crate::Timestamp;
use crate::error::{Error, Result};
use crate::gate::Decision;
use crate::ids::{IssueRef, RunId};
use crate::issue::{Actor, Issue};
use crate::plan;
use crate::ports::{DeferredSpawn, Event, Notification, RunUpdate, SpawnRequest, SpawnReservation};
use crate::run::{ActivityType, NewActivity, Outcome, Run, RunPatch, RunStatus, WorkflowKind};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpawnOptions {
    pub kind: WorkflowKind,
    /// Skips thresholds, delays, concurrency and budgets — never the kill switch.
    pub force: bool,
    pub additional_context: Option<String>,
}

impl SpawnOptions {
    pub fn new(kind: WorkflowKind) -> Self {
        SpawnOptions {
            kind,
            force: false,
            additional_context: None,
        }
    }
}

/// What a spawn request came to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpawnOutcome {
    pub decision: Decision,
    pub run_id: Option<RunId>,
    pub identifier: String,
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The run ended `cancelled`; whether the runner confirmed it stopped the agent (a queued
    /// run had none).
    Cancelled { runner_confirmed: bool },
    /// The run was being dispatched: it ends as soon as the dispatch returns, and whatever the
    /// runner started is stopped then.
    Requested,
}

impl SpawnOutcome {
    pub fn spawned(&self) -> bool {
        self.run_id.is_some()
    }
    /// `Allow` → Ok; `Deny`/`Defer` → a `GateDenied` error carrying the reason code, for callers
    /// that want an error.
    pub fn into_result(self) -> Result<RunId> {
        match (self.run_id, self.decision.reason()) {
            (Some(id), _) => Ok(id),
            (None, Some(reason)) => Err(Error::gate_denied(reason.code(), reason.to_string())),
            (None, None) => Err(Error::internal("spawn neither allowed nor refused")),
        }
    }
}

const CONTEXT_MAX: usize = 2000;

impl Dispatch {
    /// Asks for an agent on an issue. Implement and QA need an approved plan. The gates decide in
    /// the same transaction that queues the run; a deferred spawn is retried by the sweeper.
    pub async fn spawn(
        &self,
        issue: impl Into<IssueRef>,
        options: SpawnOptions,
        actor: &Actor,
    ) -> Result<SpawnOutcome> {
        let issue = self.get_issue(issue).await?;
        if options.kind.needs_approved_plan() {
            plan::require_approved(&issue.plan)?;
        }
        if let Some(c) = &options.additional_context
            && c.chars().count() > CONTEXT_MAX
        {
            return Err(Error::invalid(
                "additional_context",
                format!("additional context is limited to {CONTEXT_MAX} characters"),
            ));
        }
        let req = SpawnRequest {
            issue_id: issue.id,
            kind: options.kind,
            force: options.force,
            from_alert: false,
            additional_context: options.additional_context.filter(|c| !c.trim().is_empty()),
            actor: actor.clone(),
            policy: self.current_policy().await?,
            deferred_id: None,
            outbox: Default::default(),
        };
        self.reserve(&issue, req).await
    }

    /// An error alert asks for an error_fix agent (cooldown, threshold and delay apply).
    pub(crate) async fn spawn_for_alert(
        &self,
        issue: &Issue,
        actor: &Actor,
    ) -> Result<SpawnOutcome> {
        let req = SpawnRequest {
            issue_id: issue.id,
            kind: WorkflowKind::ErrorFix,
            force: false,
            from_alert: true,
            additional_context: None,
            actor: actor.clone(),
            policy: self.current_policy().await?,
            deferred_id: None,
            outbox: Default::default(),
        };
        self.reserve(issue, req).await
    }

    pub(crate) async fn retry_deferred(&self, d: &DeferredSpawn) -> Result<SpawnOutcome> {
        let issue = match self.get_issue(d.issue_id).await {
            Ok(i) => i,
            Err(e) => return Err(e),
        };
        let req = SpawnRequest {
            issue_id: d.issue_id,
            kind: d.kind,
            force: d.force,
            from_alert: d.from_alert,
            additional_context: d.additional_context.clone(),
            actor: d.actor.clone(),
            policy: self.current_policy().await?,
            deferred_id: Some(d.id),
            outbox: Default::default(),
        };
        self.reserve(&issue, req).await
    }

    async fn reserve(&self, before: &Issue, mut req: SpawnRequest) -> Result<SpawnOutcome> {
        req.outbox = self.spawn_outbox(before).await;
        let SpawnReservation {
            decision,
            run,
            issue,
        } = self.inner.store.reserve_spawn(&req, self.now()).await?;
        match &run {
            Some(run) => {
                tracing::info!(issue = %issue.identifier, kind = %run.kind, run = %run.id, "spawn queued");
                if issue.column_id != before.column_id {
                    self.publish(Event::IssueMoved {
                        issue_id: issue.id,
                        from: before.column_id,
                        to: issue.column_id,
                    })
                    .await;
                } else {
                    self.publish(Event::IssueUpdated { issue_id: issue.id })
                        .await;
                }
                self.publish(Event::RunChanged {
                    issue_id: issue.id,
                    run_id: run.id,
                    status: run.status,
                })
                .await;
                self.notify_stored(Notification::AgentStarted {
                    issue: issue.clone(),
                    run: run.clone(),
                })
                .await;
                self.inner.wake_dispatcher.notify_one();
            }
            None => {
                if let Some(reason) = decision.reason() {
                    tracing::info!(issue = %issue.identifier, kind = %req.kind, reason = reason.code(), "spawn not allowed now");
                }
            }
        }
        Ok(SpawnOutcome {
            decision,
            run_id: run.map(|r| r.id),
            identifier: issue.identifier,
        })
    }

    /// Cancels the issue's active run. The request is stored on the run first (one store
    /// transaction, so it is ordered against the dispatcher's own write): a run that is being
    /// dispatched keeps its concurrency slot and the dispatcher stops what the runner started as
    /// soon as the runner returns (`CancelOutcome::Requested`); a queued or running run ends
    /// `cancelled` now, after the runner was asked to stop a running one.
    pub async fn cancel(&self, issue: impl Into<IssueRef>, actor: &Actor) -> Result<CancelOutcome> {
        let issue = self.get_issue(issue).await?;
        let runs = self.inner.store.list_runs(issue.id).await?;
        let run = runs
            .into_iter()
            .find(|r| r.status.is_active())
            .ok_or_else(|| Error::conflict(format!("{} has no running agent", issue.identifier)))?;
        let now = self.now();
        let flagged = self
            .inner
            .store
            .update_run(
                run.id,
                &RunPatch {
                    cancel_requested_at: Some(now),
                    ..RunPatch::default()
                },
                actor,
                now,
            )
            .await?
            .run;
        let outcome = match flagged.status {
            RunStatus::Dispatching => {
                self.inner
                    .store
                    .add_activity(
                        issue.id,
                        NewActivity::new(
                            ActivityType::Action,
                            format!(
                                "Cancel requested by {}: the agent is stopped as soon as its dispatch returns",
                                actor.name
                            ),
                        )
                        .run(run.id),
                        now,
                    )
                    .await?;
                return Ok(CancelOutcome::Requested);
            }
            s if s.is_terminal() => {
                return Err(Error::conflict(format!(
                    "{}'s run has already ended",
                    issue.identifier
                )));
            }
            RunStatus::Queued => CancelOutcome::Cancelled {
                runner_confirmed: true,
            },
            _ => CancelOutcome::Cancelled {
                runner_confirmed: self.stop_agent(&flagged).await,
            },
        };
        self.end_cancelled(
            &flagged,
            &issue,
            &format!("Cancelled by {}", actor.name),
            actor,
        )
        .await?;
        self.inner
            .store
            .add_activity(
                issue.id,
                NewActivity::new(
                    ActivityType::Action,
                    format!("Agent cancelled by {}", actor.name),
                )
                .run(run.id),
                self.now(),
            )
            .await
            .map(|_| ())?;
        Ok(outcome)
    }

    /// Asks the runner to stop the run's agent; whether it confirmed.
    pub(crate) async fn stop_agent(&self, run: &Run) -> bool {
        match self.inner.runner.cancel(run).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(run = %run.id, error = %e, "runner cancel failed; cancelling locally");
                false
            }
        }
    }

    /// Ends the run `cancelled` (the store refuses nothing but a move out of a terminal state).
    pub(crate) async fn end_cancelled(
        &self,
        run: &Run,
        issue: &Issue,
        summary: &str,
        actor: &Actor,
    ) -> Result<()> {
        let patch = RunPatch {
            status: Some(RunStatus::Cancelled),
            outcome: Some(Outcome::Failed),
            outcome_summary: Some(summary.to_string()),
            lease_until: Some(None),
            ..RunPatch::default()
        };
        let update = self
            .write_run(run.id, patch, issue, actor, self.now())
            .await?;
        self.after_run_update(&update, issue).await
    }

    /// Applies a patch to a run of `before` in one store transaction together with the
    /// notifications it causes ([`Self::run_outbox`]); the caller then runs
    /// [`Self::after_run_update`].
    pub(crate) async fn write_run(
        &self,
        run_id: RunId,
        mut patch: RunPatch,
        before: &Issue,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<RunUpdate> {
        patch.outbox = self.run_outbox(before, &patch).await;
        self.inner
            .store
            .update_run(run_id, &patch, actor, now)
            .await
    }

    /// Events, cooldown and notifications after a run update written by [`Self::write_run`]
    /// (which stored the notifications' outbox rows with it).
    pub(crate) async fn after_run_update(&self, update: &RunUpdate, before: &Issue) -> Result<()> {
        let run = &update.run;
        if update.status_changed {
            self.publish(Event::RunChanged {
                issue_id: run.issue_id,
                run_id: run.id,
                status: run.status,
            })
            .await;
        }
        if update.issue.column_id != before.column_id {
            self.publish(Event::IssueMoved {
                issue_id: update.issue.id,
                from: before.column_id,
                to: update.issue.column_id,
            })
            .await;
        } else if update.issue.version != before.version {
            self.publish(Event::IssueUpdated {
                issue_id: update.issue.id,
            })
            .await;
        }
        if update.ended {
            // The store set the cooldown in the transaction that ended the run; a run reserved
            // before runs carried their cooldown gets it here.
            if run.kind == WorkflowKind::ErrorFix && run.cooldown_seconds.is_none() {
                let until: Timestamp = self.now() + self.inner.config.policy.cooldown;
                self.inner.store.set_cooldown(run.issue_id, until).await?;
            }
            // A slot is free: deferred spawns waiting on concurrency can go now.
            self.inner.wake_dispatcher.notify_one();
        }
        for n in super::outbox::run_notifications(update, self.slack_budget_cap()) {
            self.notify_stored(n).await;
        }
        Ok(())
    }
}
