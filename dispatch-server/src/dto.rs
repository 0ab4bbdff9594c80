//! JSON shapes of the HTTP API. Field names follow the original Dispatch (its issue rows were
//! returned as `snake_case` columns plus `status`, `assignee` and `labels`), so existing clients
//! and agent workflows keep working. Embeddings are never returned.

use crate::routes::schema;
use dispatch_core::Timestamp;
use dispatch_core::ids::{
    ActivityId, AgentId, ColumnId, CommentId, CustomerId, IssueId, LabelId, RunId, WorkspaceId,
};
use dispatch_core::issue::{AgentStatus, Column, Issue, Label, Priority, SpawnStatus};
use dispatch_core::plan::PlanStatus;
use dispatch_core::ports::ErrorLink;
use dispatch_core::run::{Activity, ActivityType, Outcome, Run, RunStatus, WorkflowKind};
use schemars::JsonSchema;
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

/// A label as the API returns it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LabelDto {
    #[schemars(with = "schema::Uuid")]
    pub id: LabelId,
    pub name: String,
    pub color: String,
}

impl From<&Label> for LabelDto {
    fn from(l: &Label) -> Self {
        LabelDto {
            id: l.id,
            name: l.name.clone(),
            color: l.color.clone(),
        }
    }
}

/// An issue's column, inside the issue.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct IssueStatus {
    #[schemars(with = "schema::Uuid")]
    pub id: ColumnId,
    pub name: String,
    pub color: String,
    #[serde(rename = "isClosed")]
    pub is_closed: bool,
}

/// `{name}`: a person or agent by name.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Named {
    pub name: String,
}

/// `{label}`: an issue's label, as the original's join rows.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct IssueLabel {
    pub label: LabelDto,
}

/// What the board and the issue endpoints return for an issue.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct IssueDto {
    #[schemars(with = "schema::Uuid")]
    pub id: IssueId,
    pub identifier: String,
    pub issue_number: i64,
    #[schemars(with = "schema::Uuid")]
    pub workspace_id: WorkspaceId,
    pub title: String,
    pub description: Option<String>,
    #[schemars(with = "schema::Uuid")]
    pub status_id: ColumnId,
    pub status: Option<IssueStatus>,
    #[schemars(with = "schema::PriorityValue")]
    pub priority: Priority,
    pub assignee: Option<Named>,
    #[schemars(with = "Option<schema::Uuid>")]
    pub customer_id: Option<CustomerId>,
    pub labels: Vec<IssueLabel>,
    #[schemars(with = "schema::OneOf<AgentStatus>")]
    pub agent_status: AgentStatus,
    #[schemars(with = "Option<schema::OneOf<SpawnStatus>>")]
    pub spawn_status: Option<SpawnStatus>,
    pub spawn_type: Option<&'static str>,
    #[schemars(with = "Option<schema::OneOf<WorkflowKind>>")]
    pub workflow_type: Option<WorkflowKind>,
    #[schemars(with = "Option<schema::Uuid>")]
    pub spawn_run_id: Option<RunId>,
    pub spawn_started_at: Option<Timestamp>,
    pub spawn_completed_at: Option<Timestamp>,
    pub spawn_attempt_count: u32,
    #[schemars(with = "Option<schema::OneOf<PlanStatus>>")]
    pub plan_status: Option<PlanStatus>,
    pub plan_content: Option<String>,
    pub plan_feedback: Option<String>,
    pub plan_approved_at: Option<Timestamp>,
    pub plan_approved_by: Option<String>,
    pub blocked_reason: Option<String>,
    pub cost_usd: f64,
    pub num_turns: u32,
    pub model: Option<String>,
    #[schemars(with = "Option<schema::OneOf<Outcome>>")]
    pub run_outcome: Option<Outcome>,
    pub outcome_summary: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

impl IssueDto {
    pub fn new(i: &Issue, columns: &[Column], labels: &[Label]) -> Self {
        let status = columns.iter().find(|c| c.id == i.column_id);
        IssueDto {
            id: i.id,
            identifier: i.identifier.clone(),
            issue_number: i.number,
            workspace_id: i.workspace_id,
            title: i.title.clone(),
            description: i.description.clone(),
            status_id: i.column_id,
            status: status.map(|c| IssueStatus {
                id: c.id,
                name: c.name.clone(),
                color: c.color.clone(),
                is_closed: c.is_closed(),
            }),
            priority: i.priority,
            assignee: i.assignee.as_ref().map(|n| Named { name: n.clone() }),
            customer_id: i.customer_id,
            labels: i
                .labels
                .iter()
                .filter_map(|id| labels.iter().find(|l| l.id == *id))
                .map(|l| IssueLabel {
                    label: LabelDto::from(l),
                })
                .collect(),
            agent_status: i.agent_status,
            spawn_status: i.spawn_status,
            spawn_type: i.spawn_kind.map(|k| k.spawn_type()),
            workflow_type: i.spawn_kind,
            spawn_run_id: i.current_run_id,
            spawn_started_at: i.spawn_started_at,
            spawn_completed_at: i.spawn_completed_at,
            spawn_attempt_count: i.spawn_attempt_count,
            plan_status: i.plan.status,
            plan_content: i.plan.content.clone(),
            plan_feedback: i.plan.feedback.clone(),
            plan_approved_at: i.plan.approved_at,
            plan_approved_by: i.plan.approved_by.clone(),
            blocked_reason: i.blocked_reason.clone(),
            cost_usd: i.cost_usd,
            num_turns: i.num_turns,
            model: i.model.clone(),
            run_outcome: i.run_outcome,
            outcome_summary: i.outcome_summary.clone(),
            created_at: i.created_at,
            updated_at: i.updated_at,
            version: i.version,
        }
    }
}

/// What the board and the issue endpoints return for an issue.
pub fn issue_json(i: &Issue, columns: &[Column], labels: &[Label]) -> Value {
    json!(IssueDto::new(i, columns, labels))
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

/// A run as the API returns it; the single-run answers add [`RunText`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunDto {
    #[schemars(with = "schema::Uuid")]
    pub id: RunId,
    #[schemars(with = "schema::Uuid")]
    pub issue_id: IssueId,
    #[schemars(with = "schema::OneOf<WorkflowKind>")]
    pub workflow_type: WorkflowKind,
    #[schemars(with = "schema::OneOf<RunStatus>")]
    pub status: RunStatus,
    pub github_run_id: Option<String>,
    pub github_run_url: Option<String>,
    pub runner: Option<String>,
    #[schemars(with = "Option<schema::OneOf<Outcome>>")]
    pub outcome: Option<Outcome>,
    pub outcome_summary: Option<String>,
    pub cost_usd: f64,
    pub num_turns: u32,
    pub model: Option<String>,
    pub tokens_used: Option<u64>,
    pub pr_number: Option<i64>,
    pub files_changed: Vec<String>,
    pub follow_ups: Vec<String>,
    pub dispatch_attempts: u32,
    pub claim: u64,
    pub lease_until: Option<Timestamp>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    pub last_callback_at: Option<Timestamp>,
    /// The agent's last heartbeat: once it has one, the run ends when heartbeats stop for
    /// `AGENT_HEARTBEAT_TIMEOUT_SECONDS`.
    pub heartbeat_at: Option<Timestamp>,
    pub duration_seconds: Option<i64>,
    #[serde(flatten)]
    pub text: Option<RunText>,
}

/// The prompt, report and context of a run (single-run answers only).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunText {
    pub prompt_text: Option<String>,
    pub report_content: Option<String>,
    pub additional_context: Option<String>,
}

impl RunDto {
    /// `full` adds the prompt, report and additional context.
    pub fn new(r: &Run, now: dispatch_core::Timestamp, full: bool) -> Self {
        RunDto {
            id: r.id,
            issue_id: r.issue_id,
            workflow_type: r.kind,
            status: r.status,
            github_run_id: r.external_id.clone(),
            github_run_url: r.external_url.clone(),
            runner: r.runner.clone(),
            outcome: r.outcome,
            outcome_summary: r.outcome_summary.clone(),
            cost_usd: r.cost_usd,
            num_turns: r.num_turns,
            model: r.model.clone(),
            tokens_used: r.tokens_used,
            pr_number: r.pr_number,
            files_changed: r.files_changed.clone(),
            follow_ups: r.follow_ups.clone(),
            dispatch_attempts: r.dispatch_attempts,
            claim: r.claim,
            lease_until: r.lease_until,
            last_error: r.last_error.clone(),
            created_at: r.created_at,
            started_at: r.started_at,
            completed_at: r.completed_at,
            last_callback_at: r.last_callback_at,
            heartbeat_at: r.heartbeat_at,
            duration_seconds: r.duration_seconds(now),
            text: full.then(|| RunText {
                prompt_text: r.prompt_text.clone(),
                report_content: r.report_content.clone(),
                additional_context: r.additional_context.clone(),
            }),
        }
    }
}

/// A run with its whole transcript (`GET …/runs/current`, `GET …/runs/{run_id}`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunWithTranscript {
    #[serde(flatten)]
    pub run: RunDto,
    pub transcript: String,
}

/// An activity (agent report) of an issue.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ActivityDto {
    #[schemars(with = "schema::Uuid")]
    pub id: ActivityId,
    pub timestamp: Timestamp,
    #[serde(rename = "type")]
    #[schemars(with = "String")]
    pub kind: ActivityType,
    pub content: String,
    pub metadata: Value,
    #[schemars(with = "Option<schema::Uuid>")]
    pub run_id: Option<RunId>,
}

impl From<&Activity> for ActivityDto {
    fn from(a: &Activity) -> Self {
        ActivityDto {
            id: a.id,
            timestamp: a.created_at,
            kind: a.kind.clone(),
            content: a.content.clone(),
            metadata: a.metadata.clone(),
            run_id: a.run_id,
        }
    }
}

pub fn activity_json(a: &Activity) -> Value {
    json!(ActivityDto::from(a))
}

/// A comment as the original's rows plus `author_name`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CommentDto {
    #[schemars(with = "schema::Uuid")]
    pub id: CommentId,
    #[schemars(with = "schema::Uuid")]
    pub issue_id: IssueId,
    pub body: String,
    pub author_name: Option<String>,
    pub created_at: Timestamp,
}

impl From<&dispatch_core::issue::Comment> for CommentDto {
    fn from(c: &dispatch_core::issue::Comment) -> Self {
        CommentDto {
            id: c.id,
            issue_id: c.issue_id,
            body: c.body.clone(),
            author_name: c.author.clone(),
            created_at: c.created_at,
        }
    }
}

/// A comment as the original's rows plus `author_name`.
pub fn comment_json(c: &dispatch_core::issue::Comment) -> Value {
    json!(CommentDto::from(c))
}

/// A customer for the admin API (camelCase, as the original's customer routes). Includes the
/// portal token: only authenticated callers get this shape.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerDto {
    #[schemars(with = "schema::Uuid")]
    pub id: CustomerId,
    #[schemars(with = "schema::Uuid")]
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub slug: String,
    pub slack_channel_id: Option<String>,
    pub portal_token: String,
    pub brand_color: Option<String>,
    pub logo_url: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<&dispatch_core::customer::Customer> for CustomerDto {
    fn from(c: &dispatch_core::customer::Customer) -> Self {
        CustomerDto {
            id: c.id,
            workspace_id: c.workspace_id,
            name: c.name.clone(),
            slug: c.slug.clone(),
            slack_channel_id: c.slack_channel_id.clone(),
            portal_token: c.portal_token.clone(),
            brand_color: c.brand_color.clone(),
            logo_url: c.logo_url.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// `{customer}`: one customer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CustomerEnvelope {
    pub customer: CustomerDto,
}

impl From<&dispatch_core::customer::Customer> for CustomerEnvelope {
    fn from(c: &dispatch_core::customer::Customer) -> Self {
        CustomerEnvelope {
            customer: CustomerDto::from(c),
        }
    }
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

/// A registered agent. The webhook secret is never part of it (except `webhookSecret` in the
/// answer that made it).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentDto {
    #[schemars(with = "schema::Uuid")]
    pub id: AgentId,
    pub name: String,
    pub description: Option<String>,
    pub is_active: bool,
    pub webhook_url: Option<String>,
    pub has_webhook: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Only in the answer that made the secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

impl From<&dispatch_core::agent::Agent> for AgentDto {
    fn from(a: &dispatch_core::agent::Agent) -> Self {
        AgentDto {
            id: a.id,
            name: a.name.clone(),
            description: a.description.clone(),
            is_active: a.active,
            webhook_url: a.webhook_url.clone(),
            has_webhook: a.webhook_url.is_some(),
            created_at: a.created_at,
            updated_at: a.updated_at,
            webhook_secret: None,
        }
    }
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
