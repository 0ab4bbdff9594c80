//! The HTTP routes, one file per group. Handlers parse and check input, call one engine
//! use-case and render; rules live in the core.

pub mod agent;
pub mod agents;
pub mod board;
pub mod customers;
pub mod dedup;
pub mod issues;
pub mod ops;
pub mod orchestrator;
pub mod session;
pub mod streams;
pub mod webhooks;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Router;
use axum::http::HeaderMap;
use dispatch_core::ids::IssueRef;
use dispatch_core::issue::{Column, HistoryAction, HistoryEntry, Label};
use serde::Deserialize;

pub fn api() -> Router<AppState> {
    Router::new()
        .merge(session::router())
        .merge(issues::router())
        .merge(agent::router())
        .merge(agents::router())
        .merge(board::router())
        .merge(customers::router())
        .merge(dedup::router())
        .merge(webhooks::router())
        .merge(streams::router())
        .merge(ops::router())
        .merge(orchestrator::router())
}

/// `limit` of list endpoints (default 50, at most 500).
#[derive(Debug, Default, Deserialize)]
pub struct Page {
    pub limit: Option<usize>,
}

impl Page {
    pub fn limit(&self, other: Option<usize>) -> usize {
        self.limit.or(other).unwrap_or(50).clamp(1, 500)
    }
}

pub fn link_next_page(
    headers: &mut HeaderMap,
    path: &str,
    limit: usize,
    cursor: impl std::fmt::Display,
) {
    if let Ok(v) = format!("<{path}?limit={limit}&cursor={cursor}>; rel=\"next\"").parse() {
        headers.insert(axum::http::header::LINK, v);
    }
}

/// An issue path parameter: UUID or identifier.
pub fn issue_ref(s: &str) -> ApiResult<IssueRef> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 {
        return Err(ApiError::bad_request("id", "not an issue id or identifier"));
    }
    Ok(IssueRef::parse(s))
}

/// Typed ids from request fields, with errors naming the field.
pub mod params {
    use crate::error::{ApiError, ApiResult};
    use dispatch_core::ids::{ColumnId, CustomerId, LabelId};

    fn uuid<T: From<uuid::Uuid>>(field: &str, s: &str) -> ApiResult<T> {
        uuid::Uuid::parse_str(s.trim())
            .map(T::from)
            .map_err(|_| ApiError::bad_request(field, format!("{field} must be a UUID")))
    }
    pub fn column_id(field: &str, s: &str) -> ApiResult<ColumnId> {
        uuid(field, s)
    }
    pub fn label_id(field: &str, s: &str) -> ApiResult<LabelId> {
        uuid(field, s)
    }
    pub fn customer_id(field: &str, s: &str) -> ApiResult<CustomerId> {
        uuid(field, s)
    }
}

/// A readable sentence for a history entry ("User moved it from Backlog to Investigating").
pub fn history_sentence(h: &HistoryEntry, cols: &[Column], labels: &[Label]) -> String {
    let who = &h.actor.name;
    let col = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .and_then(|v| v.get("column_id"))
            .and_then(|x| x.as_str())
            .and_then(|id| cols.iter().find(|c| c.id.to_string() == id))
            .map(|c| c.name.clone())
            .unwrap_or_else(|| "?".into())
    };
    let text = |v: &Option<serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => "nobody".into(),
        Some(other) => other.to_string(),
    };
    let label = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .and_then(|v| v.get("label_id"))
            .and_then(|x| x.as_str())
            .and_then(|id| labels.iter().find(|l| l.id.to_string() == id))
            .map(|l| l.name.clone())
            .unwrap_or_else(|| "a label".into())
    };
    match h.action {
        HistoryAction::Created => format!("{who} created the issue"),
        HistoryAction::StatusChanged => format!(
            "{who} moved it from {} to {}",
            col(&h.old_value),
            col(&h.new_value)
        ),
        HistoryAction::PriorityChanged => format!(
            "{who} changed priority from {} to {}",
            text(&h.old_value),
            text(&h.new_value)
        ),
        HistoryAction::AssigneeChanged => format!("{who} assigned it to {}", text(&h.new_value)),
        HistoryAction::Edited => format!("{who} edited the issue"),
        HistoryAction::LabelAdded => format!("{who} added {}", label(&h.new_value)),
        HistoryAction::LabelRemoved => format!("{who} removed {}", label(&h.old_value)),
        HistoryAction::AgentStarted => format!("{who} started an agent"),
        HistoryAction::AgentCompleted => format!("{who}: the agent finished"),
        HistoryAction::CommentAdded => format!("{who} commented"),
        HistoryAction::PlanChanged => format!("{who} changed the plan to {}", text(&h.new_value)),
        HistoryAction::PrLinked => format!("{who} linked a pull request"),
        HistoryAction::PrUnlinked => format!("{who} unlinked a pull request"),
        HistoryAction::PrStatusChanged => format!("{who} updated a pull request"),
        HistoryAction::FixAttemptChanged => format!("{who} updated fix verification"),
        HistoryAction::WatcherAdded => format!("{who} added a watcher"),
        HistoryAction::WatcherRemoved => format!("{who} removed a watcher"),
        HistoryAction::Reconciled => format!("{who} reconciled the issue"),
    }
}
