//! The original Dispatch's database (its 22 tables; see the spec §2) → an [`ImportPlan`]. The
//! rows are read by an adapter (`dispatch_adapters::original`) into [`OriginalData`]; the rules
//! of what each becomes are here. Identifiers are kept when the original's prefix is the
//! workspace's (the counter ends above every imported number); customers keep their portal
//! token, so an original portal link keeps working; error links keep their key (the original's
//! fingerprints are ours by design), counts and cooldown, so a new alert deduplicates onto the
//! imported issue.

use super::{
    ImportComment, ImportCustomer, ImportFix, ImportHistory, ImportIssue, ImportLink, ImportPlan,
    ImportWatcher, RowProblem, linear,
};
use crate::Timestamp;
use crate::ids::{FixAttemptId, IssueId};
use crate::issue::{
    Actor, ActorKind, HistoryAction, NewHistory, Priority, names, parse_identifier,
};
use crate::verify::{FixAttempt, VerificationStatus};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub const SOURCE: &str = "original";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OriginalData {
    /// (prefix, next_issue_number) of each workspace.
    pub workspaces: Vec<(String, i64)>,
    /// (id, name) of each status (board column).
    pub statuses: Vec<(String, String)>,
    /// (id, name) of each label.
    pub labels: Vec<(String, String)>,
    /// (id, name) of each agent (assignees and comment authors).
    pub agents: Vec<(String, String)>,
    pub customers: Vec<ImportCustomer>,
    pub issues: Vec<OriginalIssue>,
    /// (issue id, label id).
    pub issue_labels: Vec<(String, String)>,
    pub watchers: Vec<ImportWatcher>,
    pub comments: Vec<OriginalComment>,
    pub history: Vec<OriginalHistory>,
    pub links: Vec<OriginalLink>,
    pub fixes: Vec<OriginalFix>,
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
        .map(|(id, n)| (id.as_str(), n.as_str()))
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
                message: format!("unknown status {status:?}: put in {}", names::BACKLOG),
                skipped: false,
            });
            names::BACKLOG
        });
        let priority: Priority = i.priority.parse().unwrap_or_default();
        let number = parse_identifier(&i.identifier)
            .filter(|(pre, _)| pre.eq_ignore_ascii_case(prefix))
            .map(|(_, n)| n);
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
    p
}
