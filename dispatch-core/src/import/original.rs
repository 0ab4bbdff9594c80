//! The original Dispatch's database (its 22 tables; see the spec §2) → an [`ImportPlan`]. The
//! rows are read by an adapter (`dispatch_adapters::original`) into [`OriginalData`]; the rules
//! of what each becomes are here. Identifiers are kept when the original's prefix is the
//! workspace's (the counter ends above every imported number); customers keep their portal
//! token, so an original portal link keeps working; error links keep their key (the original's
//! fingerprints are ours by design), counts and cooldown, so a new alert deduplicates onto the
//! imported issue; agents keep their webhook and its secret; agent runs keep their outcome,
//! cost, turns, PR and times and are imported ended (one the original left running becomes
//! failed, "stale at import", in [`super::resolve`]).
//!
//! Tables brought over: workspace (its counter), status (onto our columns by name), label,
//! agent, customer, customer_user, issue, issue_label, issue_watcher, comment, agent_activity,
//! external_issue, issue_history, issue_pr, fix_attempt, agent_runs, orchestrator_session (the
//! text of each conversation). Not brought over (see [`NOT_IMPORTED`]): sentry_event_log,
//! reconciliation, spawn_budget, webhook (reported, row by row, with what to configure),
//! webhook_delivery.

use super::{
    ImportActivity, ImportAgent, ImportComment, ImportCustomer, ImportCustomerUser, ImportFix,
    ImportHistory, ImportIssue, ImportLink, ImportPlan, ImportPrLink, ImportRun, ImportSession,
    ImportWatcher, KIND_ACTIVITY, KIND_FIX, KIND_HISTORY, KIND_ISSUE, KIND_PR_LINK, KIND_RUN,
    RowProblem, linear,
};
use crate::Timestamp;
use crate::ids::{FixAttemptId, IssueId, PrLinkId, RunId};
use crate::issue::{
    Actor, ActorKind, AgentStatus, HistoryAction, NewHistory, PlanFields, Priority, names,
    parse_identifier,
};
use crate::plan::PlanStatus;
use crate::ports::{ContentBlock, LlmMessage, Role};
use crate::pr::{PrLink, PrStatus};
use crate::run::{ActivityType, NewRun, Outcome, RunStatus, WorkflowKind};
use crate::verify::{FixAttempt, VerificationStatus};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub const SOURCE: &str = "original";

/// The original's tables the import leaves behind, and why.
pub const NOT_IMPORTED: &[(&str, &str)] = &[
    (
        "dispatch_sentry_event_log",
        "snapshots of Sentry counts the original took for its lazy fix verification; our fix attempts keep their own post-deploy count (imported with them) and the sweeper verifies from the error links",
    ),
    (
        "dispatch_reconciliation",
        "never written by the original (spec §2.2)",
    ),
    (
        "dispatch_spawn_budget",
        "a per-day counter; here the daily budgets are counted from the runs, which are imported",
    ),
    (
        "dispatch_webhook",
        "event webhooks are configured in the environment here (EVENT_WEBHOOK_URLS, EVENT_WEBHOOK_SECRET, EVENT_WEBHOOK_EVENTS), not in the store: each enabled row is reported (URL and events, never the secret) as a row left out, saying what to set",
    ),
    (
        "dispatch_webhook_delivery",
        "the original's delivery log; deliveries here are the outbox's own work (kept OUTBOX_RETENTION_DAYS after they settle), which old deliveries are not",
    ),
];

/// The runner name imported runs carry: no runner here answers to it, so no sweeper or
/// dispatcher of this instance takes them up.
pub const RUNNER: &str = "original";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OriginalData {
    /// (prefix, next_issue_number) of each workspace.
    pub workspaces: Vec<(String, i64)>,
    /// (id, name) of each status (board column).
    pub statuses: Vec<(String, String)>,
    /// (id, name) of each label.
    pub labels: Vec<(String, String)>,
    /// The registered agents (also the assignees and comment authors, by id).
    pub agents: Vec<OriginalAgent>,
    pub customers: Vec<ImportCustomer>,
    #[serde(default)]
    pub customer_users: Vec<OriginalCustomerUser>,
    pub issues: Vec<OriginalIssue>,
    /// (issue id, label id).
    pub issue_labels: Vec<(String, String)>,
    pub watchers: Vec<ImportWatcher>,
    pub comments: Vec<OriginalComment>,
    pub history: Vec<OriginalHistory>,
    pub links: Vec<OriginalLink>,
    pub fixes: Vec<OriginalFix>,
    #[serde(default)]
    pub runs: Vec<OriginalRun>,
    #[serde(default)]
    pub activities: Vec<OriginalActivity>,
    #[serde(default)]
    pub prs: Vec<OriginalPr>,
    #[serde(default)]
    pub sessions: Vec<OriginalSession>,
    #[serde(default)]
    pub webhooks: Vec<OriginalWebhook>,
}

/// A `dispatch_webhook` row (its secret is not read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginalWebhook {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
}

/// A `dispatch_orchestrator_session` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginalSession {
    pub id: String,
    /// The Messages API conversation (`[{role, content}]`, content a string or blocks).
    pub messages: serde_json::Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A `dispatch_agent` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginalAgent {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub is_active: bool,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

impl OriginalAgent {
    /// An active agent with just a name (assignees and authors in tests).
    pub fn named(id: &str, name: &str, at: Timestamp) -> Self {
        OriginalAgent {
            id: id.into(),
            name: name.into(),
            description: None,
            webhook_url: None,
            webhook_secret: None,
            is_active: true,
            created_at: at,
            updated_at: None,
        }
    }
}

/// A `dispatch_customer_user` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginalCustomerUser {
    pub id: String,
    pub customer_id: String,
    pub slack_user_id: String,
    pub slack_display_name: String,
    pub slack_avatar_url: Option<String>,
    pub email: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A `dispatch_agent_runs` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginalRun {
    pub id: String,
    pub issue_id: String,
    pub github_run_id: Option<String>,
    pub github_run_url: Option<String>,
    pub workflow_type: String,
    pub status: String,
    pub prompt_text: Option<String>,
    #[serde(default)]
    pub transcript: Option<String>,
    pub report_content: Option<String>,
    pub outcome: Option<String>,
    pub outcome_summary: Option<String>,
    pub cost_usd: Option<f64>,
    pub num_turns: Option<i64>,
    pub model: Option<String>,
    pub tokens_used: Option<i64>,
    pub pr_number: Option<i64>,
    pub files_changed: Option<serde_json::Value>,
    pub follow_ups: Option<serde_json::Value>,
    pub started_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// A `dispatch_agent_activity` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginalActivity {
    pub id: String,
    pub issue_id: String,
    pub run_id: Option<String>,
    pub kind: String,
    pub content: String,
    pub metadata: Option<serde_json::Value>,
    pub created_at: Timestamp,
}

/// A `dispatch_issue_pr` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginalPr {
    pub id: String,
    pub issue_id: String,
    pub run_id: Option<String>,
    pub pr_number: i64,
    pub pr_url: String,
    pub pr_title: String,
    pub pr_status: String,
    pub branch_name: Option<String>,
    pub author: Option<String>,
    pub base_branch: Option<String>,
    pub head_branch: Option<String>,
    pub match_confidence: Option<f64>,
    pub merged_at: Option<Timestamp>,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
}

/// A `dispatch_fix_attempt` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginalFix {
    pub id: String,
    pub issue_id: String,
    pub pr_number: i64,
    pub pr_url: String,
    pub pr_title: String,
    pub merged_at: Timestamp,
    pub merged_sha: String,
    pub deployed_sha: Option<String>,
    pub deployed_at: Option<Timestamp>,
    pub verification_status: String,
    pub verification_deadline: Option<Timestamp>,
    pub verification_checked_at: Option<Timestamp>,
    pub failure_reason: Option<String>,
    pub sentry_events_post_deploy: Option<i64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginalIssue {
    pub id: String,
    pub identifier: String,
    pub title: String,
    pub description: Option<String>,
    pub status_id: String,
    pub priority: String,
    pub assignee_id: Option<String>,
    pub customer_id: Option<String>,
    /// The customer user who reported it.
    #[serde(default)]
    pub reporter_id: Option<String>,
    /// The PRD workflow's plan and its review, and the agent's state.
    #[serde(default)]
    pub plan_status: Option<String>,
    #[serde(default)]
    pub plan_content: Option<String>,
    #[serde(default)]
    pub plan_feedback: Option<String>,
    #[serde(default)]
    pub plan_approved_at: Option<Timestamp>,
    #[serde(default)]
    pub plan_approved_by: Option<String>,
    #[serde(default)]
    pub blocked_reason: Option<String>,
    #[serde(default)]
    pub agent_status: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginalComment {
    pub id: String,
    pub issue_id: String,
    pub author_id: Option<String>,
    pub body: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginalHistory {
    pub id: String,
    pub issue_id: String,
    pub action: String,
    pub old_value: Option<serde_json::Value>,
    pub new_value: Option<serde_json::Value>,
    pub actor_type: String,
    pub actor_name: Option<String>,
    pub created_at: Timestamp,
}

/// A `dispatch_external_issue` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginalLink {
    pub id: String,
    pub issue_id: String,
    pub source: String,
    pub external_id: String,
    pub external_url: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub cooldown_until: Option<Timestamp>,
    pub event_count: Option<i64>,
    pub last_seen_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// Our column for an original status name: our default columns by name, the names the original
/// retired (migrations 005/007) as those migrations moved them, anything else Backlog.
pub fn column_for(status: &str) -> Option<&'static str> {
    linear::column_for_status(status)
}

/// The original's actor types: user, system, agent, github_webhook, reconciliation.
pub fn actor_of(actor_type: &str, name: Option<&str>) -> Actor {
    let kind = match actor_type {
        "user" => ActorKind::User,
        "agent" => ActorKind::Agent,
        "github_webhook" => ActorKind::Webhook,
        _ => ActorKind::System,
    };
    Actor {
        kind,
        name: name.unwrap_or(actor_type).to_string(),
    }
}

/// What the original database becomes in the workspace with prefix `prefix`.
pub fn plan(data: &OriginalData, prefix: &str) -> ImportPlan {
    let statuses: HashMap<&str, &str> = data
        .statuses
        .iter()
        .map(|(id, n)| (id.as_str(), n.as_str()))
        .collect();
    let labels: HashMap<&str, &str> = data
        .labels
        .iter()
        .map(|(id, n)| (id.as_str(), n.as_str()))
        .collect();
    let agents: HashMap<&str, &str> = data
        .agents
        .iter()
        .map(|a| (a.id.as_str(), a.name.as_str()))
        .collect();
    let mut p = ImportPlan {
        source: SOURCE.into(),
        customers: data.customers.clone(),
        watchers: data.watchers.clone(),
        next_issue_number: data
            .workspaces
            .iter()
            .filter(|(pre, _)| pre.eq_ignore_ascii_case(prefix))
            .map(|(_, n)| *n)
            .max(),
        ..ImportPlan::default()
    };
    for i in &data.issues {
        p.rows += 1;
        let status = statuses.get(i.status_id.as_str()).copied().unwrap_or("");
        let column = column_for(status).unwrap_or_else(|| {
            p.problems.push(RowProblem {
                line: None,
                external_id: Some(i.identifier.clone()),
                kind: Some(KIND_ISSUE.into()),
                message: format!("unknown status {status:?}: put in {}", names::BACKLOG),
                skipped: false,
            });
            names::BACKLOG
        });
        let priority: Priority = i.priority.parse().unwrap_or_default();
        let number = parse_identifier(&i.identifier)
            .filter(|(pre, _)| pre.eq_ignore_ascii_case(prefix))
            .map(|(_, n)| n);
        let plan_status = match i.plan_status.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(st) => match st.parse::<PlanStatus>() {
                Ok(st) => Some(st),
                Err(_) => {
                    p.problems.push(RowProblem {
                        line: None,
                        external_id: Some(i.identifier.clone()),
                        kind: Some(KIND_ISSUE.into()),
                        message: format!("unknown plan status {st:?}: left out"),
                        skipped: false,
                    });
                    None
                }
            },
        };
        let agent_status = i
            .agent_status
            .as_deref()
            .and_then(|a| a.trim().parse::<AgentStatus>().ok())
            .unwrap_or_default();
        p.issues.push(ImportIssue {
            external_id: i.id.clone(),
            line: None,
            title: i.title.clone(),
            description: i.description.clone(),
            source_status: status.to_string(),
            column: column.to_string(),
            source_priority: i.priority.clone(),
            priority,
            assignee: i
                .assignee_id
                .as_deref()
                .and_then(|a| agents.get(a))
                .map(|n| n.to_string()),
            labels: data
                .issue_labels
                .iter()
                .filter(|(issue, _)| *issue == i.id)
                .filter_map(|(_, l)| labels.get(l.as_str()).map(|n| n.to_string()))
                .collect(),
            created_at: i.created_at,
            updated_at: i.updated_at,
            number,
            customer: i.customer_id.clone(),
            reporter: i.reporter_id.clone(),
            plan: PlanFields {
                status: plan_status,
                content: i.plan_content.clone(),
                feedback: i.plan_feedback.clone(),
                approved_at: i.plan_approved_at,
                approved_by: i.plan_approved_by.clone(),
            },
            blocked_reason: i.blocked_reason.clone(),
            agent_status,
            record_created: false,
        });
    }
    for c in &data.comments {
        p.comments.push(ImportComment {
            external_id: c.id.clone(),
            issue: c.issue_id.clone(),
            author: c
                .author_id
                .as_deref()
                .and_then(|a| agents.get(a))
                .map(|n| n.to_string()),
            body: c.body.clone(),
            created_at: c.created_at,
        });
    }
    for h in &data.history {
        let Ok(action) = serde_json::from_value::<HistoryAction>(serde_json::json!(h.action))
        else {
            p.problems.push(RowProblem {
                line: None,
                external_id: Some(h.id.clone()),
                kind: Some(KIND_HISTORY.into()),
                message: format!("unknown history action {:?}", h.action),
                skipped: true,
            });
            continue;
        };
        let actor = actor_of(&h.actor_type, h.actor_name.as_deref());
        p.history.push(ImportHistory {
            external_id: h.id.clone(),
            issue: h.issue_id.clone(),
            entry: NewHistory::new(action, &actor).values(h.old_value.clone(), h.new_value.clone()),
            created_at: h.created_at,
        });
    }
    for l in &data.links {
        let last = l.last_seen_at.unwrap_or(l.created_at);
        p.links.push(ImportLink {
            external_id: l.id.clone(),
            issue: l.issue_id.clone(),
            source: l.source.clone(),
            external_key: l.external_id.clone(),
            // The original keys Loki links by the fingerprint itself (spec §5.2).
            fingerprint: l.external_id.clone(),
            url: l.external_url.clone(),
            metadata: l.metadata.clone().unwrap_or_else(|| serde_json::json!({})),
            event_count: l.event_count.unwrap_or(1).max(1) as u64,
            first_seen_at: l.created_at.min(last),
            last_seen_at: last,
            cooldown_until: l.cooldown_until,
        });
    }
    for f in &data.fixes {
        let Ok(status) = f.verification_status.parse::<VerificationStatus>() else {
            p.problems.push(RowProblem {
                line: None,
                external_id: Some(f.id.clone()),
                kind: Some(KIND_FIX.into()),
                message: format!("unknown verification status {:?}", f.verification_status),
                skipped: true,
            });
            continue;
        };
        p.fixes.push(ImportFix {
            external_id: f.id.clone(),
            issue: f.issue_id.clone(),
            attempt: FixAttempt {
                // Replaced by the import's own ids.
                id: FixAttemptId(uuid::Uuid::nil()),
                issue_id: IssueId(uuid::Uuid::nil()),
                pr_number: f.pr_number,
                pr_url: Some(f.pr_url.clone()),
                pr_title: Some(f.pr_title.clone()),
                merged_at: f.merged_at,
                merged_sha: Some(f.merged_sha.clone()),
                deployed_sha: f.deployed_sha.clone(),
                deployed_at: f.deployed_at,
                status,
                deadline: f.verification_deadline,
                checked_at: f.verification_checked_at,
                failure_reason: f.failure_reason.clone(),
                events_after_deploy: f.sentry_events_post_deploy.map(|n| n.max(0) as u64),
                created_at: f.created_at,
                updated_at: f.updated_at,
            },
        });
    }
    for a in &data.agents {
        p.agents.push(ImportAgent {
            external_id: a.id.clone(),
            name: a.name.clone(),
            description: a.description.clone(),
            webhook_url: a.webhook_url.clone(),
            webhook_secret: a.webhook_secret.clone(),
            active: a.is_active,
            created_at: a.created_at,
            updated_at: a.updated_at.unwrap_or(a.created_at),
        });
    }
    for u in &data.customer_users {
        p.customer_users.push(ImportCustomerUser {
            external_id: u.id.clone(),
            customer: u.customer_id.clone(),
            slack_user_id: u.slack_user_id.clone(),
            display_name: Some(u.slack_display_name.clone()),
            avatar_url: u.slack_avatar_url.clone(),
            email: u.email.clone(),
            created_at: u.created_at,
            updated_at: u.updated_at,
        });
    }
    for r in &data.runs {
        match run_of(r) {
            Ok((run, warning)) => {
                if let Some(message) = warning {
                    p.problems.push(RowProblem {
                        line: None,
                        external_id: Some(r.id.clone()),
                        kind: Some(KIND_RUN.into()),
                        message,
                        skipped: false,
                    });
                }
                p.runs.push(run);
            }
            Err(message) => p.problems.push(RowProblem {
                line: None,
                external_id: Some(r.id.clone()),
                kind: Some(KIND_RUN.into()),
                message,
                skipped: true,
            }),
        }
    }
    for a in &data.activities {
        let Ok(kind) = ActivityType::parse(&a.kind) else {
            p.problems.push(RowProblem {
                line: None,
                external_id: Some(a.id.clone()),
                kind: Some(KIND_ACTIVITY.into()),
                message: format!("activity type {:?} is not a type name", a.kind),
                skipped: true,
            });
            continue;
        };
        p.activities.push(ImportActivity {
            external_id: a.id.clone(),
            issue: a.issue_id.clone(),
            run: a.run_id.clone(),
            kind,
            content: a.content.clone(),
            metadata: a.metadata.clone().unwrap_or(serde_json::Value::Null),
            created_at: a.created_at,
        });
    }
    for x in &data.prs {
        let Ok(status) = x.pr_status.parse::<PrStatus>() else {
            p.problems.push(RowProblem {
                line: None,
                external_id: Some(x.id.clone()),
                kind: Some(KIND_PR_LINK.into()),
                message: format!("unknown PR status {:?}", x.pr_status),
                skipped: true,
            });
            continue;
        };
        let created = x.created_at.or(x.merged_at).unwrap_or_default();
        let text = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        p.pr_links.push(ImportPrLink {
            external_id: x.id.clone(),
            issue: x.issue_id.clone(),
            run: x.run_id.clone(),
            link: PrLink {
                // Replaced by the import's own ids.
                id: PrLinkId(uuid::Uuid::nil()),
                issue_id: IssueId(uuid::Uuid::nil()),
                pr_number: x.pr_number,
                status,
                title: text(&Some(x.pr_title.clone())),
                url: text(&Some(x.pr_url.clone())),
                head_branch: text(&x.head_branch).or_else(|| text(&x.branch_name)),
                base_branch: text(&x.base_branch),
                author: text(&x.author),
                match_confidence: x
                    .match_confidence
                    .filter(|c| c.is_finite())
                    .map(|c| c.clamp(0.0, 1.0)),
                merged_at: x.merged_at,
                run_id: None,
                created_at: created,
                updated_at: x.updated_at.unwrap_or(created).max(created),
            },
        });
    }
    for x in data.webhooks.iter().filter(|x| x.enabled) {
        p.problems.push(RowProblem {
            line: None,
            external_id: Some(x.id.clone()),
            kind: Some("webhook".into()),
            message: format!(
                "event webhooks are configured in the environment here: add {} to EVENT_WEBHOOK_URLS (events: {}) and set EVENT_WEBHOOK_SECRET to its secret",
                x.url,
                if x.events.is_empty() {
                    "all".to_string()
                } else {
                    x.events.join(",")
                }
            ),
            skipped: true,
        });
    }
    for x in &data.sessions {
        p.sessions.push(ImportSession {
            external_id: x.id.clone(),
            messages: conversation(&x.messages),
            created_at: x.created_at,
            updated_at: x.updated_at,
        });
    }
    p
}

/// The text of an original orchestrator conversation as a history our orchestrator continues:
/// text blocks only (the calls and results of the original's own tools are left out, as tools
/// here have other names and inputs), consecutive messages of one role merged, starting with
/// the person and ending with the assistant's answer.
pub fn conversation(messages: &serde_json::Value) -> Vec<LlmMessage> {
    let mut out: Vec<LlmMessage> = Vec::new();
    for m in messages.as_array().map(Vec::as_slice).unwrap_or_default() {
        let role = match m.get("role").and_then(|r| r.as_str()) {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            _ => continue,
        };
        let texts: Vec<String> = match m.get("content") {
            Some(serde_json::Value::String(t)) => vec![t.clone()],
            Some(serde_json::Value::Array(blocks)) => blocks
                .iter()
                .filter(|b| b.get("type").and_then(|t| t.as_str()) == Some("text"))
                .filter_map(|b| b.get("text").and_then(|t| t.as_str()).map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        let blocks: Vec<ContentBlock> = texts
            .into_iter()
            .filter(|t| !t.trim().is_empty())
            .map(|text| ContentBlock::Text { text })
            .collect();
        if blocks.is_empty() || (out.is_empty() && role != Role::User) {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => out.push(LlmMessage {
                role,
                content: blocks,
            }),
        }
    }
    if out.last().is_some_and(|m| m.role == Role::User) {
        out.pop();
    }
    out
}

/// What an original `dispatch_agent_runs` row becomes: the run (as the original left it; an
/// active one is ended by [`super::resolve`]) and a warning, or why it cannot be imported.
fn run_of(r: &OriginalRun) -> Result<(ImportRun, Option<String>), String> {
    let kind = WorkflowKind::from_spawn_type(&r.workflow_type)
        .map_err(|_| format!("unknown workflow type {:?}", r.workflow_type))?;
    let mut warning = None;
    let status = match r.status.trim() {
        "running" => RunStatus::Running,
        "completed" => RunStatus::Completed,
        "cancelled" | "canceled" => RunStatus::Cancelled,
        "failed" => RunStatus::Failed,
        other => {
            warning = Some(format!("unknown run status {other:?}: imported as failed"));
            RunStatus::Failed
        }
    };
    let outcome = match r
        .outcome
        .as_deref()
        .map(str::trim)
        .filter(|o| !o.is_empty())
    {
        None => None,
        Some(o) => match o.parse::<Outcome>() {
            Ok(o) => Some(o),
            Err(_) => {
                warning = Some(format!("unknown outcome {o:?}: left out"));
                None
            }
        },
    };
    let strings = |v: &Option<serde_json::Value>| -> Vec<String> {
        let Some(serde_json::Value::Array(items)) = v else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|i| match i {
                serde_json::Value::String(s) => Some(s.clone()),
                // A follow-up: the issue it became, else its title.
                serde_json::Value::Object(o) => o
                    .get("created_issue_identifier")
                    .or_else(|| o.get("title"))
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            })
            .collect()
    };
    let mut run = NewRun {
        issue_id: IssueId(uuid::Uuid::nil()),
        kind,
        additional_context: None,
        force: false,
        requested_by: format!("{SOURCE} import"),
    }
    .into_run(r.created_at);
    run.id = RunId(uuid::Uuid::nil());
    run.status = status;
    run.runner = Some(RUNNER.into());
    run.external_id = r
        .github_run_id
        .as_deref()
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string);
    run.external_url = r.github_run_url.clone();
    run.outcome = outcome;
    run.outcome_summary = r.outcome_summary.clone();
    run.cost_usd = r.cost_usd.filter(|c| c.is_finite()).unwrap_or(0.0).max(0.0);
    run.num_turns = u32::try_from(r.num_turns.unwrap_or(0).max(0)).unwrap_or(u32::MAX);
    run.model = r.model.clone();
    run.tokens_used = r.tokens_used.map(|t| t.max(0) as u64);
    run.pr_number = r.pr_number;
    run.files_changed = strings(&r.files_changed);
    run.follow_ups = strings(&r.follow_ups);
    run.prompt_text = r.prompt_text.clone();
    run.report_content = r.report_content.clone();
    run.started_at = r.started_at;
    run.completed_at = r.completed_at;
    run.updated_at = r.completed_at.unwrap_or(r.created_at);
    Ok((
        ImportRun {
            external_id: r.id.clone(),
            issue: r.issue_id.clone(),
            run,
            transcript: r.transcript.clone(),
        },
        warning,
    ))
}
