//! What starting and ending a run does to its issue (spec §5.9, §5.8, §7.6). Pure functions: stores
//! call them inside the transaction that records the run, so every store behaves the same.

use super::run::{Run, RunStatus, WorkflowKind};
use crate::Timestamp;
use crate::issue::{
    Actor, AgentStatus, Column, Issue, IssuePatch, NewHistory, SpawnStatus, diff_history, names,
};
use crate::ports::IssueUpdate;

#[derive(Debug, Clone, PartialEq)]
pub struct SpawnEffects {
    pub patch: IssuePatch,
    pub history: Vec<NewHistory>,
}

impl SpawnEffects {
    /// The unconditional issue write that applies these effects (inside the transaction that
    /// records the run, so no version check).
    pub fn into_update(self, now: Timestamp) -> IssueUpdate {
        IssueUpdate {
            outbox: Default::default(),
            patch: self.patch,
            history: self.history,
            expected_version: None,
            now,
        }
    }
}

fn find<'a>(columns: &'a [Column], name: &str) -> Option<&'a Column> {
    columns.iter().find(|c| c.is_named(name))
}

fn in_any(issue: &Issue, columns: &[Column], names: &[&str]) -> bool {
    columns
        .iter()
        .any(|c| c.id == issue.column_id && names.iter().any(|n| c.is_named(n)))
}

/// Recording a reserved spawn: agent status, spawn fields, attempt count, column auto-move and
/// the matching history entries.
pub fn spawn_effects(
    issue: &Issue,
    run: &Run,
    columns: &[Column],
    actor: &Actor,
    now: Timestamp,
) -> SpawnEffects {
    let mut patch = IssuePatch {
        agent_status: Some(run.kind.agent_status()),
        spawn_status: Some(Some(SpawnStatus::Queued)),
        spawn_kind: Some(Some(run.kind)),
        current_run_id: Some(Some(run.id)),
        spawn_attempt_count: Some(issue.spawn_attempt_count.saturating_add(1)),
        spawn_started_at: Some(Some(now)),
        spawn_completed_at: Some(None),
        blocked_reason: Some(None),
        ..IssuePatch::default()
    };
    let target = match run.kind {
        WorkflowKind::ErrorFix | WorkflowKind::PrdInvestigate | WorkflowKind::AutoTriage => {
            if in_any(issue, columns, &[names::BACKLOG]) {
                find(columns, names::INVESTIGATING)
            } else {
                None
            }
        }
        WorkflowKind::PrdImplement => {
            if in_any(
                issue,
                columns,
                &[
                    names::BACKLOG,
                    names::INVESTIGATING,
                    names::NEEDS_REVIEW,
                    names::WAITING_FOR_AGENT,
                ],
            ) {
                find(columns, names::IN_PROGRESS).or_else(|| find(columns, names::BEING_DEVELOPED))
            } else {
                None
            }
        }
        WorkflowKind::Qa | WorkflowKind::DeepResearch => None,
    };
    if let Some(col) = target {
        patch.column_id = Some(col.id);
    }
    let history = diff_history(issue, &patch, actor);
    SpawnEffects { patch, history }
}

/// Recording a run that started outside Dispatch (it is already running): the spawn effects,
/// with the spawn status `running`.
pub fn external_run_effects(
    issue: &Issue,
    run: &Run,
    columns: &[Column],
    actor: &Actor,
    now: Timestamp,
) -> SpawnEffects {
    let mut fx = spawn_effects(issue, run, columns, actor, now);
    fx.patch.spawn_status = Some(Some(SpawnStatus::Running));
    fx.history = diff_history(issue, &fx.patch, actor);
    fx
}

/// A run reached a terminal status. Only the issue's *current* run moves the issue; a late end of
/// an older run changes nothing here (its cost still counts through the run totals).
pub fn run_end_effects(
    issue: &Issue,
    run: &Run,
    columns: &[Column],
    actor: &Actor,
) -> Option<SpawnEffects> {
    if issue.current_run_id != Some(run.id) || !run.status.is_terminal() {
        return None;
    }
    let spawn_status = match run.status {
        RunStatus::Completed => SpawnStatus::Completed,
        RunStatus::Cancelled => SpawnStatus::Cancelled,
        _ => SpawnStatus::Failed,
    };
    if issue.spawn_status == Some(spawn_status) && issue.spawn_completed_at.is_some() {
        return None;
    }
    // A plan submitted or a blocker reported during the run stays visible (the original reset
    // them to idle seconds after setting them).
    let agent_status = match issue.agent_status {
        AgentStatus::AwaitingReview | AgentStatus::Blocked => issue.agent_status,
        _ => AgentStatus::Idle,
    };
    let mut patch = IssuePatch {
        agent_status: Some(agent_status),
        spawn_status: Some(Some(spawn_status)),
        spawn_completed_at: Some(run.completed_at),
        ..IssuePatch::default()
    };
    if run.outcome.is_some() {
        patch.run_outcome = Some(run.outcome);
    }
    if run.outcome_summary.is_some() {
        patch.outcome_summary = Some(run.outcome_summary.clone());
    }
    if run.model.is_some() {
        patch.model = Some(run.model.clone());
    }
    let target = match run.status {
        RunStatus::Completed => {
            if in_any(issue, columns, &[names::INVESTIGATING]) {
                if run.pr_number.is_some() {
                    find(columns, names::IN_REVIEW)
                } else {
                    find(columns, names::NEEDS_REVIEW)
                }
            } else if in_any(
                issue,
                columns,
                &[names::IN_PROGRESS, names::BEING_DEVELOPED],
            ) {
                find(columns, names::IN_REVIEW)
            } else {
                None
            }
        }
        RunStatus::Failed | RunStatus::TimedOut | RunStatus::Cancelled => {
            if in_any(issue, columns, &[names::INVESTIGATING]) {
                find(columns, names::BACKLOG)
            } else {
                None
            }
        }
        _ => None,
    };
    if let Some(col) = target
        && col.id != issue.column_id
    {
        patch.column_id = Some(col.id);
    }
    let history = diff_history(issue, &patch, actor);
    Some(SpawnEffects { patch, history })
}

/// A run update as one plan (issue 10): the run after the patch and what that does to its issue
/// and its error, so that every store applies the same rules inside the one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct RunUpdatePlan {
    pub run: Run,
    pub status_changed: bool,
    /// The run just reached a terminal status.
    pub ended: bool,
    /// Cost or turns changed: the issue's totals are recomputed from its runs.
    pub totals_changed: bool,
}

/// What a run update does beyond the run itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunUpdateEffects {
    pub issue_update: Option<IssueUpdate>,
    /// An error fix ended: the issue's error links wait until then before spawning again —
    /// written in the same transaction, so no alert in between spawns at once.
    pub cooldown_until: Option<Timestamp>,
}

impl RunUpdatePlan {
    /// `Conflict` when the patch is fenced to a claim the run no longer holds.
    pub fn new(
        before: &Run,
        patch: &super::run::RunPatch,
        now: Timestamp,
    ) -> crate::error::Result<Self> {
        if let Some(c) = patch.expect_claim
            && c != before.claim
        {
            return Err(crate::error::Error::conflict(format!(
                "run {} was claimed again (claim {}, this write holds claim {c}); the write is not recorded",
                before.id, before.claim
            )));
        }
        let mut run = before.clone();
        patch.apply_to(&mut run, now);
        let status_changed = run.status != before.status;
        Ok(RunUpdatePlan {
            ended: status_changed && run.status.is_terminal(),
            totals_changed: run.cost_usd != before.cost_usd || run.num_turns != before.num_turns,
            status_changed,
            run,
        })
    }

    /// The issue and error effects; `columns` are read only when [`RunUpdatePlan::ended`].
    pub fn effects(
        &self,
        issue: &Issue,
        columns: &[Column],
        actor: &Actor,
        now: Timestamp,
    ) -> RunUpdateEffects {
        let run = &self.run;
        if self.ended {
            return RunUpdateEffects {
                issue_update: run_end_effects(issue, run, columns, actor)
                    .map(|fx| fx.into_update(now)),
                cooldown_until: match (run.kind, run.cooldown_seconds) {
                    (WorkflowKind::ErrorFix, Some(secs)) => {
                        Some(now + chrono::Duration::seconds(secs.clamp(0, MAX_COOLDOWN_SECONDS)))
                    }
                    _ => None,
                },
            };
        }
        if self.status_changed
            && run.status == RunStatus::Running
            && issue.current_run_id == Some(run.id)
        {
            return RunUpdateEffects {
                issue_update: Some(IssueUpdate {
                    outbox: Default::default(),
                    patch: IssuePatch {
                        spawn_status: Some(Some(SpawnStatus::Running)),
                        ..IssuePatch::default()
                    },
                    history: Vec::new(),
                    expected_version: None,
                    now,
                }),
                cooldown_until: None,
            };
        }
        RunUpdateEffects::default()
    }
}

/// Ten years: a cooldown beyond it is a configuration mistake, not a wish.
const MAX_COOLDOWN_SECONDS: i64 = 10 * 366 * 24 * 3600;
