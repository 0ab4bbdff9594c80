//! JSON shapes of the HTTP API. Field names follow the original Dispatch (its issue rows were
//! returned as `snake_case` columns plus `status`, `assignee` and `labels`), so existing clients
//! and agent workflows keep working. Embeddings are never returned.

use dispatch_core::issue::{Column, Issue, Label};
use dispatch_core::ports::ErrorLink;
use dispatch_core::run::{Activity, Run};
use serde::Serialize;
use serde_json::{Value, json};

/// A board column as the API returns it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StatusDto {
    pub id: String,
    pub name: String,
    pub color: String,
    pub position: i32,
    #[serde(rename = "isClosed")]
    pub is_closed: bool,
}

impl From<&Column> for StatusDto {
    fn from(c: &Column) -> Self {
        StatusDto {
            id: c.id.to_string(),
            name: c.name.clone(),
            color: c.color.clone(),
            position: c.position,
            is_closed: c.is_closed(),
        }
    }
}

pub fn label_json(l: &Label) -> Value {
    json!({ "id": l.id, "name": l.name, "color": l.color })
}

/// What the board and the issue endpoints return for an issue.
pub fn issue_json(i: &Issue, columns: &[Column], labels: &[Label]) -> Value {
    let status = columns.iter().find(|c| c.id == i.column_id);
    json!({
        "id": i.id,
        "identifier": i.identifier,
        "issue_number": i.number,
        "workspace_id": i.workspace_id,
        "title": i.title,
        "description": i.description,
        "status_id": i.column_id,
        "status": status.map(|c| json!({ "id": c.id, "name": c.name, "color": c.color, "isClosed": c.is_closed() })),
        "priority": i.priority,
        "assignee": i.assignee.as_ref().map(|n| json!({ "name": n })),
        "customer_id": i.customer_id,
        "labels": i.labels.iter().filter_map(|id| labels.iter().find(|l| l.id == *id)).map(|l| json!({ "label": label_json(l) })).collect::<Vec<_>>(),
        "agent_status": i.agent_status,
        "spawn_status": i.spawn_status,
        "spawn_type": i.spawn_kind.map(|k| k.spawn_type()),
        "workflow_type": i.spawn_kind,
        "spawn_run_id": i.current_run_id,
        "spawn_started_at": i.spawn_started_at,
        "spawn_completed_at": i.spawn_completed_at,
        "spawn_attempt_count": i.spawn_attempt_count,
        "plan_status": i.plan.status,
        "plan_content": i.plan.content,
        "plan_feedback": i.plan.feedback,
        "plan_approved_at": i.plan.approved_at,
        "plan_approved_by": i.plan.approved_by,
        "blocked_reason": i.blocked_reason,
        "cost_usd": i.cost_usd,
        "num_turns": i.num_turns,
        "model": i.model,
        "run_outcome": i.run_outcome,
        "outcome_summary": i.outcome_summary,
        "created_at": i.created_at,
        "updated_at": i.updated_at,
        "version": i.version,
    })
}

pub fn link_json(l: &ErrorLink) -> Value {
    json!({
        "id": l.id,
        "source": l.source,
        "external_id": l.external_key,
        "external_url": l.url,
        "fingerprint": l.fingerprint,
        "event_count": l.event_count,
        "first_seen_at": l.first_seen_at,
        "last_seen_at": l.last_seen_at,
        "cooldown_until": l.cooldown_until,
        "metadata": l.metadata,
    })
}

/// A run; `full` adds the prompt, report and transcript-related fields.
pub fn run_json(r: &Run, now: dispatch_core::Timestamp, full: bool) -> Value {
    let mut v = json!({
        "id": r.id,
        "issue_id": r.issue_id,
        "workflow_type": r.kind,
        "status": r.status,
        "github_run_id": r.external_id,
        "github_run_url": r.external_url,
        "runner": r.runner,
        "outcome": r.outcome,
        "outcome_summary": r.outcome_summary,
        "cost_usd": r.cost_usd,
        "num_turns": r.num_turns,
        "model": r.model,
        "tokens_used": r.tokens_used,
        "pr_number": r.pr_number,
        "files_changed": r.files_changed,
        "follow_ups": r.follow_ups,
        "dispatch_attempts": r.dispatch_attempts,
        "claim": r.claim,
        "lease_until": r.lease_until,
        "last_error": r.last_error,
        "created_at": r.created_at,
        "started_at": r.started_at,
        "completed_at": r.completed_at,
        "last_callback_at": r.last_callback_at,
        "duration_seconds": r.duration_seconds(now),
    });
    if full {
        v["prompt_text"] = json!(r.prompt_text);
        v["report_content"] = json!(r.report_content);
        v["additional_context"] = json!(r.additional_context);
    }
    v
}

pub fn activity_json(a: &Activity) -> Value {
    json!({
        "id": a.id,
        "timestamp": a.created_at,
        "type": a.kind,
        "content": a.content,
        "metadata": a.metadata,
        "run_id": a.run_id,
    })
}

/// A comment as the original's rows plus `author_name`.
pub fn comment_json(c: &dispatch_core::issue::Comment) -> Value {
    json!({
        "id": c.id,
        "issue_id": c.issue_id,
        "body": c.body,
        "author_name": c.author,
        "created_at": c.created_at,
    })
}

/// A customer for the admin API (camelCase, as the original's customer routes). Includes the
/// portal token: only authenticated callers get this shape.
pub fn customer_json(c: &dispatch_core::customer::Customer) -> Value {
    json!({
        "id": c.id,
        "workspaceId": c.workspace_id,
        "name": c.name,
        "slug": c.slug,
        "slackChannelId": c.slack_channel_id,
        "portalToken": c.portal_token,
        "brandColor": c.brand_color,
        "logoUrl": c.logo_url,
        "createdAt": c.created_at,
        "updatedAt": c.updated_at,
    })
}

/// A linked pull request, in the original's `dispatch_issue_pr` column names.
pub fn pr_link_json(l: &dispatch_core::pr::PrLink) -> Value {
    json!({
        "id": l.id,
        "issue_id": l.issue_id,
        "pr_number": l.pr_number,
        "pr_url": l.url,
        "pr_title": l.title,
        "pr_status": l.status,
        "branch_name": l.head_branch,
        "head_branch": l.head_branch,
        "base_branch": l.base_branch,
        "author": l.author,
        "match_confidence": l.match_confidence,
        "merged_at": l.merged_at,
        "run_id": l.run_id,
        "created_at": l.created_at,
        "updated_at": l.updated_at,
    })
}

/// A registered agent. The webhook secret is never part of it.
pub fn agent_json(a: &dispatch_core::agent::Agent) -> Value {
    json!({
        "id": a.id,
        "name": a.name,
        "description": a.description,
        "isActive": a.active,
        "webhookUrl": a.webhook_url,
        "hasWebhook": a.webhook_url.is_some(),
        "createdAt": a.created_at,
        "updatedAt": a.updated_at,
    })
}

/// The fleet as `/api/spawns/stats` answers it (and the MCP tool `get_fleet_status`).
pub fn fleet_json(f: &dispatch_core::engine::FleetStatus) -> Value {
    let (st, policy) = (&f.stats, &f.policy);
    let outcomes: serde_json::Map<String, Value> = st
        .outcomes_today
        .iter()
        .map(|(k, n)| (k.clone(), json!(n)))
        .collect();
    json!({
        "active": f.active(),
        "budget": {
            "error_fix": { "used": st.spawned_today_error, "max": policy.daily_budget_error },
            "prd": { "used": st.spawned_today_prd, "max": policy.daily_budget_prd },
        },
        "concurrency": {
            "error_fix": { "active": st.active_error, "max": policy.max_concurrent_error },
            "prd": { "active": st.active_prd, "max": policy.max_concurrent_prd },
            "global": { "max": policy.max_concurrent_global },
        },
        "dailyCost": st.cost_today_usd,
        "dailyCostLimit": policy.daily_cost_limit_usd,
        "killSwitch": f.kill_switch(),
        "staleCount": f.stale_runs,
        "outcomes": outcomes,
        "queued": st.queued,
        "running": st.running,
        "deferred": st.deferred,
    })
}
