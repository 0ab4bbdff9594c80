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
