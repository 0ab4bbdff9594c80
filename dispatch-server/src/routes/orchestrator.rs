//! The orchestrator over HTTP (spec §8.3, plus proposals):
//! - `POST /api/orchestrator` `{message, sessionId?}` → SSE, one `data: {"type", "data"}` line
//!   per event (`session_id`, `text_delta` per token, `tool_start`, `tool_result`, `proposal`,
//!   `usage`, `error`, `done`). A busy session is 409 before the stream starts. Closing the
//!   connection cancels the turn; its history is saved valid.
//! - `GET /api/orchestrator?sessionId=` → the session's history and proposals (restore after a
//!   reload or a restart); without `sessionId`, the recent sessions.
//! - `POST /api/orchestrator/proposals/{id}/confirm` and `/cancel`.
//!
//! Session cookie (with the CSRF header for writes) or API key.

use super::schema;
use super::streams::sse_response;
use crate::auth::{AuthMethod, Authenticated};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::openapi::{ApiRouter, doc, post};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::response::Response;
use axum::response::sse::Event as SseEvent;
use dispatch_core::ids::{ProposalId, SessionId};
use dispatch_core::orchestrator::{Proposal, ProposalDecision, Session, TurnRequest};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use tokio::sync::mpsc;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .route(
            "/api/orchestrator",
            post(
                turn,
                doc("One turn of the orchestrator chat: server-sent {type, data} events (session_id, text_delta, tool_start, tool_result, proposal, usage, error, done); 409 while the session answers another message")
                    .media("text/event-stream")
                    .fails(&[404, 409]),
            )
            .get(
                history,
                doc("A session's history and proposals (sessionId), or the recent sessions")
                    .fails(&[404]),
            ),
        )
        .route(
            "/api/orchestrator/proposals/{id}/confirm",
            post(
                confirm,
                doc("Confirm a proposed dispatch: it goes through the spawn gates; 409 when already decided or expired")
                    .fails(&[404, 409]),
            ),
        )
        .route(
            "/api/orchestrator/proposals/{id}/cancel",
            post(
                cancel,
                doc("Decline a proposed dispatch; 409 when already decided or expired")
                    .fails(&[404, 409]),
            ),
        )
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TurnBody {
    /// What the person typed (`/help` lists the slash commands).
    #[schemars(length(min = 1, max = 20000), regex(pattern = r"\S"))]
    message: String,
    /// Continue this session (default: a new one).
    #[serde(default)]
    #[schemars(with = "Option<schema::Uuid>")]
    session_id: Option<String>,
}

/// A proposal in a path.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(transparent)]
struct ProposalKey(#[schemars(with = "schema::Uuid")] String);

fn session_id(field: &str, s: &str) -> ApiResult<SessionId> {
    s.trim()
        .parse()
        .map_err(|_| ApiError::bad_request(field, format!("{field} must be a UUID")))
}

fn user_of(auth: &Authenticated) -> String {
    match auth.method {
        AuthMethod::Session => "User".into(),
        AuthMethod::ApiKey => "API".into(),
    }
}

/// Events waiting to be written per connection; a slow client holds the turn back rather than
/// growing memory.
const EVENT_BUFFER: usize = 256;

async fn turn(
    State(s): State<AppState>,
    auth: Authenticated,
    ApiJson(body): ApiJson<TurnBody>,
) -> ApiResult<Response> {
    let session_id = body
        .session_id
        .as_deref()
        .map(|x| session_id("sessionId", x))
        .transpose()?;
    let turn = s
        .orchestrator
        .start(TurnRequest {
            session_id,
            message: body.message,
            user: user_of(&auth),
        })
        .await?;
    let (tx, rx) = mpsc::channel(EVENT_BUFFER);
    // Cancelled when the server shuts down; a closed connection cancels through `tx`.
    let cancel = s.shutdown.child_token();
    tokio::spawn(turn.run(tx, cancel));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let e = rx.recv().await?;
        let data = serde_json::to_string(&e).unwrap_or_default();
        Some((Ok::<_, Infallible>(SseEvent::default().data(data)), rx))
    });
    Ok(sse_response(stream, s.config.sse_keepalive))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct HistoryQuery {
    /// The session to read (default: the list of recent sessions).
    #[schemars(with = "Option<schema::Uuid>")]
    session_id: Option<String>,
    /// How many recent sessions (default 20, at most 100).
    limit: Option<usize>,
}

fn session_json(
    session: &Session,
    proposals: &[Proposal],
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    json!({
        "sessionId": session.id,
        "title": session.title,
        "messages": session.messages,
        "usage": session.usage,
        "busy": session.busy_at(now),
        "createdAt": session.created_at,
        "updatedAt": session.updated_at,
        "proposals": proposals,
    })
}

async fn history(
    State(s): State<AppState>,
    _auth: Authenticated,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<Value>> {
    let now = s.dispatch.now();
    match q.session_id.as_deref() {
        Some(id) => {
            let (session, proposals) = s.orchestrator.session(session_id("sessionId", id)?).await?;
            Ok(Json(session_json(&session, &proposals, now)))
        }
        None => {
            let limit = q.limit.unwrap_or(20).clamp(1, 100);
            let sessions = s.orchestrator.sessions(limit).await?;
            Ok(Json(json!({
                "model": s.config.brand.model_label,
                "hasModel": s.orchestrator.has_model(),
                "sessions": sessions.iter().map(|x| json!({
                    "sessionId": x.id,
                    "title": x.title,
                    "messages": x.messages.len(),
                    "busy": x.busy_at(now),
                    "updatedAt": x.updated_at,
                })).collect::<Vec<_>>(),
            })))
        }
    }
}

async fn confirm(
    s: State<AppState>,
    auth: Authenticated,
    id: ApiPath<ProposalKey>,
) -> ApiResult<Json<Value>> {
    decide(s, auth, id, ProposalDecision::Confirm).await
}

async fn cancel(
    s: State<AppState>,
    auth: Authenticated,
    id: ApiPath<ProposalKey>,
) -> ApiResult<Json<Value>> {
    decide(s, auth, id, ProposalDecision::Cancel).await
}

async fn decide(
    State(s): State<AppState>,
    auth: Authenticated,
    ApiPath(ProposalKey(id)): ApiPath<ProposalKey>,
    decision: ProposalDecision,
) -> ApiResult<Json<Value>> {
    let id: ProposalId = id
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_request("id", "id must be a proposal UUID"))?;
    let p: Proposal = s.orchestrator.decide(id, decision, &user_of(&auth)).await?;
    Ok(Json(serde_json::to_value(p).unwrap_or_default()))
}
