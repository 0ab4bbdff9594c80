use super::history::{Actor, HistoryAction, NewHistory};
use super::issue::{AgentStatus, Issue, PlanFields, Priority, SpawnStatus};
use crate::Timestamp;
use crate::ids::{ColumnId, CustomerId, LabelId, RunId};
use crate::run::{Outcome, WorkflowKind};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A partial update. `Option<Option<T>>` fields can be cleared (`Some(None)`), which the original's
/// COALESCE updates could not do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IssuePatch {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub column_id: Option<ColumnId>,
    pub priority: Option<Priority>,
    pub assignee: Option<Option<String>>,
    /// Replaces the label set.
    pub labels: Option<Vec<LabelId>>,
    pub customer_id: Option<Option<CustomerId>>,
    pub agent_status: Option<AgentStatus>,
    pub spawn_status: Option<Option<SpawnStatus>>,
    pub spawn_kind: Option<Option<WorkflowKind>>,
    pub current_run_id: Option<Option<RunId>>,
    pub spawn_attempt_count: Option<u32>,
    pub spawn_started_at: Option<Option<Timestamp>>,
    pub spawn_completed_at: Option<Option<Timestamp>>,
    pub plan: Option<PlanFields>,
    pub blocked_reason: Option<Option<String>>,
    pub model: Option<Option<String>>,
    pub run_outcome: Option<Option<Outcome>>,
    pub outcome_summary: Option<Option<String>>,
}

impl IssuePatch {
    pub fn is_empty(&self) -> bool {
        *self == IssuePatch::default()
    }

    /// Applies the patch to `issue` in place (the store calls this inside its transaction so that
    /// every store applies patches the same way). Does not touch `version` or `updated_at`.
    pub fn apply_to(&self, issue: &mut Issue) {
        macro_rules! set {
            ($f:ident) => {
                if let Some(v) = &self.$f {
                    issue.$f = v.clone();
                }
            };
        }
        set!(title);
        set!(description);
        set!(column_id);
        set!(priority);
        set!(assignee);
        set!(labels);
        set!(customer_id);
        set!(agent_status);
        set!(spawn_status);
        set!(spawn_kind);
        set!(current_run_id);
        set!(spawn_attempt_count);
        set!(spawn_started_at);
        set!(spawn_completed_at);
        set!(plan);
        set!(blocked_reason);
        set!(model);
        set!(run_outcome);
        set!(outcome_summary);
    }
}

/// The history entries that describe applying `patch` to `old`: one per kind of visible change.
/// Pure, so every store records the same history for the same change.
pub fn diff_history(old: &Issue, patch: &IssuePatch, actor: &Actor) -> Vec<NewHistory> {
    let mut out = Vec::new();
    if let Some(col) = patch.column_id
        && col != old.column_id
    {
        out.push(NewHistory::new(HistoryAction::StatusChanged, actor).values(
            Some(json!({"column_id": old.column_id})),
            Some(json!({"column_id": col})),
        ));
    }
    if let Some(p) = patch.priority
        && p != old.priority
    {
        out.push(
            NewHistory::new(HistoryAction::PriorityChanged, actor)
                .values(Some(json!(old.priority)), Some(json!(p))),
        );
    }
    if let Some(a) = &patch.assignee
        && *a != old.assignee
    {
        out.push(
            NewHistory::new(HistoryAction::AssigneeChanged, actor)
                .values(Some(json!(old.assignee)), Some(json!(a))),
        );
    }
    let title_changed = patch.title.as_ref().is_some_and(|t| *t != old.title);
    let desc_changed = patch
        .description
        .as_ref()
        .is_some_and(|d| *d != old.description);
    if title_changed || desc_changed {
        let mut old_v = serde_json::Map::new();
        let mut new_v = serde_json::Map::new();
        if title_changed {
            old_v.insert("title".into(), json!(old.title));
            new_v.insert("title".into(), json!(patch.title));
        }
        if desc_changed {
            old_v.insert("description".into(), json!(old.description));
            new_v.insert(
                "description".into(),
                json!(patch.description.clone().flatten()),
            );
        }
        out.push(
            NewHistory::new(HistoryAction::Edited, actor)
                .values(Some(old_v.into()), Some(new_v.into())),
        );
    }
    if let Some(labels) = &patch.labels {
        for added in labels.iter().filter(|l| !old.labels.contains(l)) {
            out.push(
                NewHistory::new(HistoryAction::LabelAdded, actor)
                    .values(None, Some(json!({"label_id": added}))),
            );
        }
        for removed in old.labels.iter().filter(|l| !labels.contains(l)) {
            out.push(
                NewHistory::new(HistoryAction::LabelRemoved, actor)
                    .values(Some(json!({"label_id": removed})), None),
            );
        }
    }
    if let Some(plan) = &patch.plan
        && plan.status != old.plan.status
    {
        out.push(
            NewHistory::new(HistoryAction::PlanChanged, actor)
                .values(Some(json!(old.plan.status)), Some(json!(plan.status))),
        );
    }
    let spawn_changed = patch
        .spawn_status
        .as_ref()
        .is_some_and(|s| *s != old.spawn_status);
    if spawn_changed {
        let new_status = patch.spawn_status.flatten();
        let action = match new_status {
            Some(s) if s.is_active() => HistoryAction::AgentStarted,
            _ => HistoryAction::AgentCompleted,
        };
        out.push(NewHistory::new(action, actor).values(
            Some(json!({"spawn_status": old.spawn_status, "agent_status": old.agent_status})),
            Some(json!({
                "spawn_status": new_status,
                "agent_status": patch.agent_status.unwrap_or(old.agent_status),
                "spawn_kind": patch.spawn_kind.unwrap_or(old.spawn_kind),
                "run_id": patch.current_run_id.unwrap_or(old.current_run_id),
            })),
        ));
    }
    out
}
