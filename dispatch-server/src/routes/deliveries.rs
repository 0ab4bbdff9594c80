//! `/api/deliveries`: the outbox — Slack notifications and outbound webhooks with their state,
//! tries, last error and the receiver's status code (a Slack message's `ts` as `response`).
//! Signing secrets are never shown; a webhook URL is shown without its query string.

use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::openapi::{ApiRouter, doc, get};
use crate::routes::{issue_ref, schema};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use dispatch_core::Timestamp;
use dispatch_core::ids::{DeliveryId, IssueId};
use dispatch_core::outbox::{Delivery, DeliveryFilter, DeliveryState};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .route(
            "/api/deliveries",
            get(
                list,
                doc("Outbox deliveries (Slack messages, webhooks), newest first; ?kind=slack|webhook, ?state=pending|delivered|skipped|failed, ?issue=, ?event=, ?limit= (100, at most 500)")
                    .tag("deliveries"),
            ),
        )
        .route(
            "/api/deliveries/{id}",
            get(read, doc("One outbox delivery").tag("deliveries")),
        )
}

/// A delivery as the API shows it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDto {
    #[schemars(with = "schema::Uuid")]
    pub id: DeliveryId,
    /// `slack` or `webhook`.
    pub kind: String,
    /// The Slack channel, or the webhook URL without its query.
    pub target: String,
    /// `ISSUE_CREATED`, `STATUS_CHANGED`, …, or `slack.new_error`, `slack.agent_started`, ….
    pub event: String,
    /// `pending`, `delivered`, `skipped` or `failed`.
    pub state: String,
    #[schemars(with = "Option<schema::Uuid>")]
    pub issue_id: Option<IssueId>,
    /// Tries so far.
    pub attempts: u32,
    /// When the next try is due (pending deliveries).
    pub due_at: Timestamp,
    pub last_error: Option<String>,
    /// The receiver's HTTP status of the last try.
    pub response_code: Option<u16>,
    /// The receiver's answer (a Slack message's `ts`; the start of a webhook receiver's body).
    pub response: Option<String>,
    /// What is (or was) sent: the Slack message or the webhook body.
    pub payload: serde_json::Value,
    pub created_at: Timestamp,
    pub settled_at: Option<Timestamp>,
}

impl From<&Delivery> for DeliveryDto {
    fn from(d: &Delivery) -> Self {
        let target = d
            .target
            .split(['?', '#'])
            .next()
            .unwrap_or(&d.target)
            .to_string();
        DeliveryDto {
            id: d.id,
            kind: d.kind.clone(),
            target,
            event: d.event.clone(),
            state: d.state.as_str().to_string(),
            issue_id: d.issue_id,
            attempts: d.attempts,
            due_at: d.due_at,
            last_error: d.last_error.clone(),
            response_code: d.response_code,
            response: d.response.clone(),
            payload: d.payload.clone(),
            created_at: d.created_at,
            settled_at: d.settled_at,
        }
    }
}

/// A delivery's state, as a filter.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum StateParam {
    Pending,
    Delivered,
    Skipped,
    Failed,
}

impl From<StateParam> for DeliveryState {
    fn from(s: StateParam) -> Self {
        match s {
            StateParam::Pending => DeliveryState::Pending,
            StateParam::Delivered => DeliveryState::Delivered,
            StateParam::Skipped => DeliveryState::Skipped,
            StateParam::Failed => DeliveryState::Failed,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    /// `slack` or `webhook`.
    kind: Option<String>,
    state: Option<StateParam>,
    /// An issue's UUID or identifier.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"\S"))]
    issue: Option<String>,
    event: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<DeliveryDto>>> {
    let state = q.state.map(DeliveryState::from);
    // A blank issue is a malformed one (400), not "no filter".
    let issue_id = match q.issue.as_deref() {
        None => None,
        Some(i) => Some(s.dispatch.get_issue(issue_ref(i)?).await?.id),
    };
    let nonempty = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let filter = DeliveryFilter {
        kind: nonempty(&q.kind),
        state,
        issue_id,
        event: nonempty(&q.event),
        limit: q.limit.unwrap_or(100).clamp(1, 500),
    };
    let rows = s.dispatch.deliveries(&filter).await?;
    Ok(Json(rows.iter().map(DeliveryDto::from).collect()))
}

/// A delivery in a path: its UUID.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(transparent)]
struct DeliveryKey(#[schemars(with = "schema::Uuid")] String);

async fn read(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(DeliveryKey(id)): ApiPath<DeliveryKey>,
) -> ApiResult<Json<DeliveryDto>> {
    let id: DeliveryId = id
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_request("id", "id must be a delivery's UUID"))?;
    let d = s.dispatch.delivery(id).await?;
    Ok(Json(DeliveryDto::from(&d)))
}
