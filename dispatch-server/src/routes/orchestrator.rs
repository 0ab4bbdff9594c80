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

use super::streams::sse_response;
use crate::auth::{AuthMethod, Authenticated};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::response::sse::Event as SseEvent;
use axum::routing::post;
use dispatch_core::ids::{ProposalId, SessionId};
use dispatch_core::orchestrator::{Proposal, ProposalDecision, Session, TurnRequest};
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use tokio::sync::mpsc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/orchestrator", post(turn).get(history))
        .route("/api/orchestrator/proposals/{id}/confirm", post(confirm))
        .route("/api/orchestrator/proposals/{id}/cancel", post(cancel))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TurnBody {
    message: String,
    #[serde(default)]
    session_id: Option<String>,
}

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
        .filter(|x| !x.trim().is_empty())
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
    Ok(sse_response(stream))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryQuery {
    session_id: Option<String>,
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
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<Value>> {
    let now = s.dispatch.now();
    match q.session_id.as_deref().filter(|x| !x.trim().is_empty()) {
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
    id: Path<String>,
) -> ApiResult<Json<Proposal>> {
    decide(s, auth, id, ProposalDecision::Confirm).await
}

async fn cancel(
    s: State<AppState>,
    auth: Authenticated,
    id: Path<String>,
) -> ApiResult<Json<Proposal>> {
    decide(s, auth, id, ProposalDecision::Cancel).await
}

async fn decide(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    decision: ProposalDecision,
) -> ApiResult<Json<Proposal>> {
    let id: ProposalId = id
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_request("id", "id must be a proposal UUID"))?;
    let p = s.orchestrator.decide(id, decision, &user_of(&auth)).await?;
    Ok(Json(p))
}
