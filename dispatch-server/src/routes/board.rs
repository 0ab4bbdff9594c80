//! The board's supporting endpoints: statuses (columns), labels, comments, search and the fleet
//! panel (`/api/spawns/*`).
//!
//! Lists stay bare JSON arrays as in the original; `limit` bounds them and, where more remain,
//! a `Link: <…&cursor=N>; rel="next"` header names the next page (`cursor` is an offset).

use super::{IssueKey, Page, issue_ref, params, schema};
use crate::auth::Authenticated;
use crate::dto::{CommentDto, LabelDto, StatusDto};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::extract::ApiQuery;
use crate::openapi::{ApiRouter, doc, get, post};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dispatch_core::issue::{Actor, ColumnCategory, NewColumn, NewComment, NewLabel};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .route(
            "/api/statuses",
            get(list_statuses, doc("Board columns by position"))
                .post(create_status, doc("Add a column").status(201))
                .put(reorder_statuses, doc("Reorder the columns")),
        )
        .route(
            "/api/labels",
            get(list_labels, doc("Labels by name (?name= looks one up)"))
                .post(create_label, doc("Create a label").status(201)),
        )
        .route(
            "/api/comments",
            get(
                list_comments,
                doc("Comments of an issue (?issueId=), oldest first"),
            )
            .post(create_comment, doc("Comment on an issue").status(201)),
        )
        .route("/api/search", get(search, doc("Ranked search (?q=): lexical, merged with the nearest issues by embedding when OPENAI_API_KEY is set")))
        .route(
            "/api/spawns/active",
            get(active_spawns, doc("Issues with an active agent")),
        )
        .route(
            "/api/spawns/stats",
            get(
                spawn_stats,
                doc("Fleet: active runs, budgets, daily cost, outcomes"),
            ),
        )
        .route(
            "/api/spawns/cleanup",
            post(cleanup, doc("Time out stale runs now")),
        )
        .route(
            "/api/spawns/kill-switch",
            get(
                get_kill_switch,
                doc("The kill switch as every process sees it: {enabled, forcedByEnvironment, stored}"),
            )
            .put(
                put_kill_switch,
                doc("Stop (enabled: true) or resume spawning on every process of the store; queued runs and deferred spawns wait while it is on. 409 when SPAWN_KILL_SWITCH=true keeps it on"),
            ),
        )
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct KillSwitchBody {
    enabled: bool,
}

fn kill_switch_json(k: &dispatch_core::engine::KillSwitch) -> Value {
    json!({ "enabled": k.enabled, "forcedByEnvironment": k.forced_by_environment, "stored": k.stored })
}

/// The kill switch as every process sees it.
async fn get_kill_switch(State(s): State<AppState>, _a: Authenticated) -> ApiResult<Json<Value>> {
    Ok(Json(kill_switch_json(&s.dispatch.kill_switch().await?)))
}

/// `{enabled}`: stop (true) or resume (false) spawning on every process of the store; 409 when
/// `SPAWN_KILL_SWITCH=true` in the environment keeps it on.
async fn put_kill_switch(
    State(s): State<AppState>,
    a: Authenticated,
    ApiJson(b): ApiJson<KillSwitchBody>,
) -> ApiResult<Json<Value>> {
    let k = s.dispatch.set_kill_switch(b.enabled, &a.actor()).await?;
    Ok(Json(kill_switch_json(&k)))
}

/// Small, bounded lists (columns, labels, an issue's comments) default to the largest page so
/// that clients of the original, which knew no paging, still see everything.
const SMALL_LIST_DEFAULT: usize = 500;

#[derive(Debug, Default, Deserialize, JsonSchema)]
struct Cursor {
    /// The offset to continue from (from the `Link` header).
    cursor: Option<usize>,
}

/// One page of `items` from offset `cursor`, with the `Link` header for the next one.
/// `query` is the list's own query string (without `limit`/`cursor`), kept in the link.
fn paged<T>(
    items: Vec<T>,
    cursor: Option<usize>,
    limit: usize,
    path: &str,
    query: &str,
) -> (HeaderMap, Vec<T>) {
    let start = cursor.unwrap_or(0).min(items.len());
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(limit).collect();
    let mut headers = HeaderMap::new();
    let next = start + page.len();
    if next < total {
        let sep = if query.is_empty() {
            String::new()
        } else {
            format!("{query}&")
        };
        if let Ok(v) = format!("<{path}?{sep}limit={limit}&cursor={next}>; rel=\"next\"").parse() {
            headers.insert(header::LINK, v);
        }
    }
    (headers, page)
}

// --- statuses ----------------------------------------------------------------------------------

async fn list_statuses(
    State(s): State<AppState>,
    _a: Authenticated,
    q: ApiQuery<Page>,
    ApiQuery(c): ApiQuery<Cursor>,
) -> ApiResult<(HeaderMap, Json<Vec<StatusDto>>)> {
    let cols: Vec<StatusDto> = s
        .dispatch
        .columns()
        .await?
        .iter()
        .map(StatusDto::from)
        .collect();
    let (headers, page) = paged(
        cols,
        c.cursor,
        q.limit(Some(SMALL_LIST_DEFAULT)),
        "/api/statuses",
        "",
    );
    Ok((headers, Json(page)))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct CreateStatus {
    #[schemars(regex(pattern = r"\S"))]
    name: String,
    #[schemars(with = "schema::Color")]
    color: String,
    #[serde(default)]
    #[schemars(range(min = 0))]
    position: Option<i32>,
    #[serde(default, alias = "is_closed")]
    is_closed: bool,
}

async fn create_status(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiJson(b): ApiJson<CreateStatus>,
) -> ApiResult<(StatusCode, Json<StatusDto>)> {
    if let Some(p) = b.position
        && p < 0
    {
        return Err(ApiError::bad_request(
            "position",
            "position must not be negative",
        ));
    }
    let new = NewColumn {
        name: b.name.trim().to_string(),
        color: b.color,
        position: b.position,
        category: if b.is_closed {
            ColumnCategory::Closed
        } else {
            ColumnCategory::Open
        },
    };
    new.validate()?;
    let col = s.dispatch.add_column(new).await?;
    Ok((StatusCode::CREATED, Json(StatusDto::from(&col))))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct Reorder {
    /// Every column's id, in the new order.
    #[serde(alias = "status_ids")]
    #[schemars(with = "Vec<schema::Uuid>")]
    status_ids: Vec<String>,
}

async fn reorder_statuses(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiJson(b): ApiJson<Reorder>,
) -> ApiResult<Json<Vec<StatusDto>>> {
    let ids = b
        .status_ids
        .iter()
        .enumerate()
        .map(|(i, id)| params::column_id(&format!("statusIds[{i}]"), id))
        .collect::<ApiResult<Vec<_>>>()?;
    let cols = s.dispatch.reorder_columns(&ids).await?;
    Ok(Json(cols.iter().map(StatusDto::from).collect()))
}

// --- labels ------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
struct LabelQuery {
    name: Option<String>,
}

/// All labels by name, or `[label]` / `[]` for `?name=` (case-insensitive, as names are unique
/// that way).
async fn list_labels(
    State(s): State<AppState>,
    _a: Authenticated,
    q: ApiQuery<Page>,
    ApiQuery(c): ApiQuery<Cursor>,
    ApiQuery(lq): ApiQuery<LabelQuery>,
) -> ApiResult<(HeaderMap, Json<Vec<LabelDto>>)> {
    let labels = s.dispatch.labels().await?;
    if let Some(name) = lq.name {
        let hit: Vec<LabelDto> = labels
            .iter()
            .filter(|l| l.name.eq_ignore_ascii_case(name.trim()))
            .take(1)
            .map(LabelDto::from)
            .collect();
        return Ok((HeaderMap::new(), Json(hit)));
    }
    let all: Vec<LabelDto> = labels.iter().map(LabelDto::from).collect();
    let (headers, page) = paged(
        all,
        c.cursor,
        q.limit(Some(SMALL_LIST_DEFAULT)),
        "/api/labels",
        "",
    );
    Ok((headers, Json(page)))
}

#[derive(Debug, Deserialize, JsonSchema)]
struct CreateLabel {
    #[schemars(regex(pattern = r"\S"))]
    name: String,
    #[schemars(with = "schema::Color")]
    color: String,
}

async fn create_label(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiJson(b): ApiJson<CreateLabel>,
) -> ApiResult<(StatusCode, Json<LabelDto>)> {
    let new = NewLabel::new(b.name.trim(), b.color);
    new.validate()?;
    let l = s.dispatch.create_label(new).await?;
    Ok((StatusCode::CREATED, Json(LabelDto::from(&l))))
}

// --- comments ----------------------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
struct CommentQuery {
    /// The issue (UUID or identifier).
    #[serde(rename = "issueId", alias = "issue_id")]
    issue_id: IssueKey,
}

/// An issue's comments, oldest first.
async fn list_comments(
    State(s): State<AppState>,
    _a: Authenticated,
    q: ApiQuery<Page>,
    ApiQuery(c): ApiQuery<Cursor>,
    ApiQuery(cq): ApiQuery<CommentQuery>,
) -> ApiResult<(HeaderMap, Json<Vec<CommentDto>>)> {
    let id = cq.issue_id.0;
    let issue = s.dispatch.get_issue(issue_ref(&id)?).await?;
    let comments: Vec<CommentDto> = s
        .dispatch
        .comments(issue.id)
        .await?
        .iter()
        .map(CommentDto::from)
        .collect();
    let (headers, page) = paged(
        comments,
        c.cursor,
        q.limit(Some(SMALL_LIST_DEFAULT)),
        "/api/comments",
        &format!("issueId={}", issue.id),
    );
    Ok((headers, Json(page)))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct CreateComment {
    #[serde(alias = "issue_id")]
    issue_id: IssueKey,
    #[schemars(regex(pattern = r"\S"))]
    body: String,
    #[serde(default, alias = "author_name")]
    author_name: Option<String>,
}

async fn create_comment(
    State(s): State<AppState>,
    a: Authenticated,
    ApiJson(b): ApiJson<CreateComment>,
) -> ApiResult<(StatusCode, Json<CommentDto>)> {
    let actor = a.actor();
    let author = b
        .author_name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    let actor = match &author {
        Some(n) => Actor {
            name: n.clone(),
            ..actor
        },
        None => actor,
    };
    let new = NewComment {
        author: Some(actor.name.clone()),
        body: b.body,
    };
    let c = s
        .dispatch
        .add_comment(
            issue_ref(&b.issue_id.0)
                .map_err(|_| ApiError::bad_request("issueId", "not an issue id or identifier"))?,
            new,
            &actor,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(CommentDto::from(&c))))
}

// --- search ------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
struct SearchQuery {
    /// The words to look for.
    #[schemars(length(min = 1, max = 1000), regex(pattern = r"\S"))]
    q: String,
    limit: Option<usize>,
}

async fn search(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> ApiResult<Json<Value>> {
    let text = q.q;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("q", "query parameter q is required"));
    }
    if text.chars().count() > 1000 {
        return Err(ApiError::bad_request(
            "q",
            "the query is limited to 1000 characters",
        ));
    }
    let hits = s
        .dispatch
        .search(&text, q.limit.unwrap_or(10).clamp(1, 100))
        .await?;
    let cols = s.dispatch.columns().await?;
    let out: Vec<Value> = hits
        .iter()
        .map(|h| {
            let c = cols.iter().find(|c| c.id == h.issue.column_id);
            json!({
                "id": h.issue.id,
                "identifier": h.issue.identifier,
                "title": h.issue.title,
                "description": h.issue.description,
                "priority": h.issue.priority,
                "status": c.map(|c| json!({ "name": c.name, "color": c.color })),
                "score": h.score,
            })
        })
        .collect();
    Ok(Json(json!(out)))
}

// --- fleet ---------------------------------------------------------------------------------------

/// Issues with an active spawn (queued, dispatching or running), oldest spawn first.
async fn active_spawns(
    State(s): State<AppState>,
    _a: Authenticated,
    q: ApiQuery<Page>,
    ApiQuery(c): ApiQuery<Cursor>,
) -> ApiResult<Response> {
    let issues = s.dispatch.active_issues(10_000).await?;
    let rows: Vec<Value> = issues
        .iter()
        .map(|i| {
            json!({
                "id": i.id,
                "identifier": i.identifier,
                "title": i.title,
                "spawn_type": i.spawn_kind.map(|k| k.spawn_type()),
                "workflow_type": i.spawn_kind,
                "spawn_status": i.spawn_status,
                "spawn_started_at": i.spawn_started_at,
                "spawn_run_id": i.current_run_id,
                "agent_status": i.agent_status,
                "cost_usd": i.cost_usd,
            })
        })
        .collect();
    let (headers, page) = paged(rows, c.cursor, q.limit(None), "/api/spawns/active", "");
    Ok((headers, Json(page)).into_response())
}

async fn spawn_stats(State(s): State<AppState>, _a: Authenticated) -> ApiResult<Json<Value>> {
    Ok(Json(crate::dto::fleet_json(
        &s.dispatch.fleet_status().await?,
    )))
}

/// Times out running runs with no callback for `STALE_RUN_MINUTES` (the sweeper does this too).
async fn cleanup(State(s): State<AppState>, _a: Authenticated) -> ApiResult<Json<Value>> {
    let n = s.dispatch.time_out_stale_runs().await?;
    Ok(Json(json!({ "cleaned": n })))
}
