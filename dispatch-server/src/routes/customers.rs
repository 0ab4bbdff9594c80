//! Customers (admin API), their health (`/stats`), which issues they watch, and the read-only
//! customer portal.
//!
//! The portal endpoints take ONLY the customer's portal token (`?token=`; no session, no API
//! key) and show only the issues that customer watches. A wrong token and a slug that does not
//! belong to the token look the same (401), and failed token checks are rate-limited per
//! client address.

use super::{Page, issue_ref, params};
use crate::auth::{Authenticated, LoginLimiter};
use crate::dto::customer_json;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, parse_json};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use dispatch_core::ErrorKind;
use dispatch_core::customer::{
    Customer, CustomerIssueFilter, CustomerPatch, NewCustomer, validate_slug,
};
use dispatch_core::engine::{
    CUSTOMER_LIST_MAX, CustomerHealth, CustomerIssue, CustomerStatsRequest,
};
use dispatch_core::ids::{CustomerId, IssueId};
use dispatch_core::issue::{Column, Issue, IssueFilter};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/customers", get(list).post(create))
        .route(
            "/api/customers/{id}",
            get(read).patch(patch).delete(delete).post(action),
        )
        .route("/api/customers/{id}/stats", get(stats))
        .route(
            "/api/issues/{id}/watchers",
            get(list_watchers).post(add_watcher).delete(remove_watcher),
        )
        .route("/api/portal/{slug}", get(portal_board))
        .route("/api/portal/{slug}/issue/{identifier}", get(portal_issue))
}

/// A customer path parameter: its UUID or its slug.
pub(crate) async fn find_customer(s: &AppState, raw: &str) -> ApiResult<Customer> {
    let raw = raw.trim();
    if let Ok(u) = uuid::Uuid::parse_str(raw) {
        return Ok(s.dispatch.customer(CustomerId::from(u)).await?);
    }
    if validate_slug(raw).is_err() {
        return Err(ApiError::bad_request("id", "not a customer id or slug"));
    }
    Ok(s.dispatch
        .store()
        .get_customer_by_slug(s.dispatch.workspace().id, raw)
        .await?)
}

/// `""` means "not set" for optional text fields sent by forms.
fn blank_to_none(v: Option<String>) -> Option<String> {
    v.map(|x| x.trim().to_string()).filter(|x| !x.is_empty())
}

// --- admin: customers ----------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    cursor: Option<usize>,
}

/// `{customers: [..., issueCount]}` in name order; `limit`/`cursor` page it (`nextCursor`).
async fn list(
    State(s): State<AppState>,
    _a: Authenticated,
    q: Query<Page>,
    Query(lq): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let all = s.dispatch.customers().await?;
    let limit = q.limit(Some(500));
    let start = lq.cursor.unwrap_or(0).min(all.len());
    let mut out = Vec::new();
    for c in all.iter().skip(start).take(limit) {
        let count = s.dispatch.store().health_inputs(c.id).await?.issues.len();
        let mut v = customer_json(c);
        v["issueCount"] = json!(count);
        out.push(v);
    }
    let next = start + out.len();
    let mut body = json!({ "customers": out });
    if next < all.len() {
        body["nextCursor"] = json!(next);
    }
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateCustomer {
    name: String,
    #[serde(default)]
    slug: Option<String>,
    #[serde(default, alias = "slack_channel_id")]
    slack_channel_id: Option<String>,
    #[serde(default, alias = "brand_color")]
    brand_color: Option<String>,
    #[serde(default, alias = "logo_url")]
    logo_url: Option<String>,
}

async fn create(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiJson(b): ApiJson<CreateCustomer>,
) -> ApiResult<Response> {
    let new = NewCustomer {
        name: b.name,
        slug: blank_to_none(b.slug),
        slack_channel_id: blank_to_none(b.slack_channel_id),
        brand_color: blank_to_none(b.brand_color),
        logo_url: blank_to_none(b.logo_url),
    };
    let c = s.dispatch.create_customer(new).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "customer": customer_json(&c) })),
    )
        .into_response())
}

async fn read(
    State(s): State<AppState>,
    _a: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let c = find_customer(&s, &id).await?;
    Ok(Json(json!({ "customer": customer_json(&c) })))
}

/// A nullable text field of a PATCH body: absent → `None`, `null`/`""` → `Some(None)`.
fn nullable(m: &Map<String, Value>, keys: &[&str]) -> ApiResult<Option<Option<String>>> {
    for k in keys {
        if let Some(v) = m.get(*k) {
            return match v {
                Value::Null => Ok(Some(None)),
                Value::String(x) => Ok(Some(blank_to_none(Some(x.clone())))),
                _ => Err(ApiError::bad_request(
                    keys[0],
                    format!("{} must be a string", keys[0]),
                )),
            };
        }
    }
    Ok(None)
}

fn required(m: &Map<String, Value>, keys: &[&str]) -> ApiResult<Option<String>> {
    match nullable(m, keys)? {
        None => Ok(None),
        Some(Some(v)) => Ok(Some(v)),
        Some(None) => Err(ApiError::bad_request(
            keys[0],
            format!("{} must not be empty", keys[0]),
        )),
    }
}

/// Accepts `name`, `slug`, `slackChannelId`, `brandColor`, `logoUrl` (the original ignored the
/// last two).
async fn patch(
    State(s): State<AppState>,
    _a: Authenticated,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let Value::Object(m) = body else {
        return Err(ApiError::bad_request(
            "body",
            "the body must be a JSON object",
        ));
    };
    let c = find_customer(&s, &id).await?;
    let p = CustomerPatch {
        name: required(&m, &["name"])?,
        slug: required(&m, &["slug"])?,
        slack_channel_id: nullable(&m, &["slackChannelId", "slack_channel_id"])?,
        brand_color: nullable(&m, &["brandColor", "brand_color"])?,
        logo_url: nullable(&m, &["logoUrl", "logo_url"])?,
    };
    p.validate()?;
    let c = s.dispatch.update_customer(c.id, p).await?;
    Ok(Json(json!({ "customer": customer_json(&c) })))
}

async fn delete(
    State(s): State<AppState>,
    _a: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let c = find_customer(&s, &id).await?;
    s.dispatch.delete_customer(c.id).await?;
    Ok(Json(json!({ "success": true })))
}

#[derive(Debug, Deserialize)]
struct ActionQuery {
    action: Option<String>,
}

/// `POST /api/customers/{id}?action=regenerate-token`: a new portal token; the old link stops
/// working at once.
async fn action(
    State(s): State<AppState>,
    _a: Authenticated,
    Path(id): Path<String>,
    Query(q): Query<ActionQuery>,
) -> ApiResult<Json<Value>> {
    match q.action.as_deref() {
        Some("regenerate-token") => {
            let c = find_customer(&s, &id).await?;
            let c = s.dispatch.regenerate_portal_token(c.id).await?;
            Ok(Json(json!({ "token": c.portal_token })))
        }
        Some(other) => Err(ApiError::bad_request(
            "action",
            format!("unknown action {other:?}; expected regenerate-token"),
        )),
        None => Err(ApiError::bad_request(
            "action",
            "action is required (regenerate-token)",
        )),
    }
}

// --- admin: health -------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct StatsQuery {
    include: Option<String>,
    filter: Option<String>,
    limit: Option<usize>,
}

/// Health of one customer (spec §11.3): `metrics` (with `healthScore` and `healthColor`), the
/// customer's issues with a filter, and a recent-activity feed. The rules are core's
/// (`dispatch_core::customer`); this parses, asks the engine once and renders.
async fn stats(
    State(s): State<AppState>,
    _a: Authenticated,
    Path(id): Path<String>,
    Query(q): Query<StatsQuery>,
) -> ApiResult<Json<Value>> {
    let include = q
        .include
        .unwrap_or_else(|| "metrics,issues,activity".into());
    let parts: Vec<&str> = include
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if let Some(bad) = parts
        .iter()
        .find(|p| !matches!(**p, "metrics" | "issues" | "activity"))
    {
        return Err(ApiError::bad_request(
            "include",
            format!("unknown part {bad:?}; expected metrics, issues, activity"),
        ));
    }
    let filter = CustomerIssueFilter::parse(q.filter.as_deref().unwrap_or("all"))?;
    let limit = q.limit.unwrap_or(20).clamp(1, CUSTOMER_LIST_MAX);
    let c = find_customer(&s, &id).await?;
    let req = CustomerStatsRequest {
        metrics: parts.contains(&"metrics"),
        issues: parts.contains(&"issues").then_some((filter, limit)),
        activity: parts.contains(&"activity").then_some(limit),
    };
    let st = s.dispatch.customer_stats(c.id, &req).await?;
    let mut out = json!({});
    if let Some(h) = st.health {
        out["metrics"] = health_json(&h)?;
    }
    if let Some(rows) = st.issues {
        out["issues"] = rows.iter().map(customer_issue_json).collect();
    }
    if let Some(items) = st.activity {
        out["activity"] = json!(items);
    }
    Ok(Json(out))
}

/// The metrics with `healthScore`, `healthColor` and `healthBand`.
pub(crate) fn health_json(h: &CustomerHealth) -> ApiResult<Value> {
    let mut m = serde_json::to_value(&h.metrics)
        .map_err(|e| ApiError::from(dispatch_core::Error::internal(e.to_string())))?;
    m["healthScore"] = json!(h.score);
    m["healthColor"] = json!(h.color);
    m["healthBand"] = json!(h.band);
    Ok(m)
}

fn customer_issue_json(r: &CustomerIssue) -> Value {
    let i = &r.issue;
    json!({
        "id": i.id,
        "identifier": i.identifier,
        "title": i.title,
        "priority": i.priority,
        "status": r.status.as_ref().map(|c| json!({ "id": c.id, "name": c.name, "color": c.color, "isClosed": c.is_closed() })),
        "agentStatus": i.agent_status,
        "createdAt": i.created_at,
        "updatedAt": i.updated_at,
        "daysSinceUpdate": r.age.days_since_update,
        "commentCount": r.age.comment_count,
        "hasTeamResponse": r.age.has_team_response,
    })
}

// --- admin: watchers -----------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WatcherBody {
    #[serde(default, alias = "customer_id")]
    customer_id: Option<String>,
}

async fn watchers_json(s: &AppState, issue: IssueId) -> ApiResult<Vec<Value>> {
    let ids = s.dispatch.watchers(issue).await?;
    let mut out = Vec::new();
    for id in ids {
        match s.dispatch.customer(id).await {
            Ok(c) => out.push(json!({ "id": c.id, "name": c.name, "slug": c.slug })),
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

async fn list_watchers(
    State(s): State<AppState>,
    _a: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let issue = s.dispatch.get_issue(issue_ref(&id)?).await?;
    Ok(Json(
        json!({ "watchers": watchers_json(&s, issue.id).await? }),
    ))
}

async fn watcher_target(
    s: &AppState,
    id: &str,
    customer: Option<String>,
) -> ApiResult<(Issue, Customer)> {
    let raw = customer
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("customerId", "customerId is required"))?;
    let cid = params::customer_id("customerId", &raw)?;
    let issue = s.dispatch.get_issue(issue_ref(id)?).await?;
    let c = s.dispatch.customer(cid).await?;
    Ok((issue, c))
}

/// `{customerId}`: the customer watches the issue (sees it in the portal). 201 when new.
async fn add_watcher(
    State(s): State<AppState>,
    _a: Authenticated,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<WatcherBody>,
) -> ApiResult<Response> {
    let (issue, c) = watcher_target(&s, &id, b.customer_id).await?;
    let added = s.dispatch.add_watcher(issue.id, c.id).await?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = json!({ "success": true, "added": added, "identifier": issue.identifier, "watchers": watchers_json(&s, issue.id).await? });
    Ok((status, Json(body)).into_response())
}

/// `{customerId}` in the body, or `?customerId=` for clients that send no DELETE body.
async fn remove_watcher(
    State(s): State<AppState>,
    _a: Authenticated,
    Path(id): Path<String>,
    Query(q): Query<WatcherBody>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let b: WatcherBody = if body.iter().all(|c| c.is_ascii_whitespace()) {
        WatcherBody::default()
    } else {
        parse_json(&body)?
    };
    let (issue, c) = watcher_target(&s, &id, b.customer_id.or(q.customer_id)).await?;
    let removed = s.dispatch.remove_watcher(issue.id, c.id).await?;
    Ok(Json(
        json!({ "success": true, "removed": removed, "identifier": issue.identifier, "watchers": watchers_json(&s, issue.id).await? }),
    ))
}

// --- portal ----------------------------------------------------------------------------------------

/// Failed portal token checks per client address: 30 per 5 minutes. A valid token clears the
/// count (as a successful login does).
static PORTAL_LIMITER: LazyLock<LoginLimiter> =
    LazyLock::new(|| LoginLimiter::new(30, Duration::from_secs(300)));

#[derive(Debug, Deserialize)]
struct PortalQuery {
    token: Option<String>,
    #[serde(rename = "showClosed")]
    show_closed: Option<String>,
}

/// The customer a portal request is for, from the token alone.
pub(crate) async fn portal_auth(
    s: &AppState,
    addr: SocketAddr,
    slug: &str,
    token: Option<&str>,
) -> ApiResult<Customer> {
    let ip = addr.ip();
    if let Err(wait) = PORTAL_LIMITER.check(ip) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!(
                "too many invalid portal links; try again in {} s",
                wait.as_secs().max(1)
            ),
        ));
    }
    let token = token.map(str::trim).unwrap_or_default();
    match s.dispatch.portal_customer(slug, token).await {
        Ok(c) => {
            PORTAL_LIMITER.reset(ip);
            Ok(c)
        }
        Err(e) if e.kind == ErrorKind::Unauthorized => {
            tracing::warn!(client = %ip, slug = slug.chars().take(64).collect::<String>(), "invalid portal token");
            Err(ApiError::unauthorized("invalid or missing portal token"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Portal answers carry the token in the URL: never cached, never sent on as a referrer (the
/// JSON portal and the portal pages alike).
pub(crate) fn portal_private(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn portal_response(body: Value) -> Response {
    portal_private(Json(body).into_response())
}

fn portal_customer_json(c: &Customer) -> Value {
    json!({ "name": c.name, "slug": c.slug, "brandColor": c.brand_color_or_default(), "logoUrl": c.logo_url })
}

/// The reporter's display name (chat intake), when the issue has one.
pub(crate) async fn reporter_names(
    s: &AppState,
    issues: &[Issue],
) -> ApiResult<std::collections::HashMap<dispatch_core::ids::CustomerUserId, String>> {
    let mut names = std::collections::HashMap::new();
    for id in issues.iter().filter_map(|i| i.reporter_id) {
        if names.contains_key(&id) {
            continue;
        }
        match s.dispatch.customer_user(id).await {
            Ok(u) => {
                if let Some(n) = u.display_name {
                    names.insert(id, n);
                }
            }
            Err(e) if e.kind == dispatch_core::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(names)
}

fn portal_card(
    i: &Issue,
    col: &Column,
    reporters: &std::collections::HashMap<dispatch_core::ids::CustomerUserId, String>,
) -> Value {
    json!({
        "id": i.id,
        "identifier": i.identifier,
        "title": i.title,
        "description": i.description,
        "priority": i.priority,
        "reporterName": i.reporter_id.and_then(|r| reporters.get(&r)),
        "status": { "id": col.id, "name": col.name, "color": col.color },
        "agentStatus": i.agent_status,
        "createdAt": i.created_at,
        "updatedAt": i.updated_at,
    })
}

/// The customer's board: every (open, or with `showClosed=true` every) column with the issues
/// this customer watches, most recently updated first.
async fn portal_board(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(slug): Path<String>,
    Query(q): Query<PortalQuery>,
) -> ApiResult<Response> {
    let c = portal_auth(&s, addr, &slug, q.token.as_deref()).await?;
    let show_closed = q
        .show_closed
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let cols = s.dispatch.columns().await?;
    let filter = IssueFilter {
        watched_by: Some(c.id),
        ..IssueFilter::default()
    };
    let mut issues = s.dispatch.list_issues(&filter).await?;
    issues.sort_by_key(|i| std::cmp::Reverse(i.updated_at));
    let reporters = reporter_names(&s, &issues).await?;
    let statuses: Vec<Value> = cols
        .iter()
        .filter(|col| show_closed || !col.is_closed())
        .map(|col| {
            let cards: Vec<Value> = issues.iter().filter(|i| i.column_id == col.id).map(|i| portal_card(i, col, &reporters)).collect();
            json!({ "id": col.id, "name": col.name, "color": col.color, "position": col.position, "isClosed": col.is_closed(), "issues": cards })
        })
        .collect();
    Ok(portal_response(
        json!({ "customer": portal_customer_json(&c), "statuses": statuses, "showingClosed": show_closed }),
    ))
}

/// The issue `identifier` when `c` watches it, with its watchers; 403 otherwise (also when
/// there is no such issue, so a portal reveals nothing about other issues).
pub(crate) async fn portal_watched_issue(
    s: &AppState,
    c: &Customer,
    identifier: &str,
) -> ApiResult<(
    dispatch_core::issue::Issue,
    Vec<dispatch_core::ids::CustomerId>,
)> {
    let forbidden = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "this issue is not shared with you",
        )
    };
    let issue = match s
        .dispatch
        .get_issue(issue_ref(identifier).map_err(|_| forbidden())?)
        .await
    {
        Ok(i) => i,
        Err(e) if e.kind == ErrorKind::NotFound => return Err(forbidden()),
        Err(e) => return Err(e.into()),
    };
    let watchers = s.dispatch.watchers(issue.id).await?;
    if !watchers.contains(&c.id) {
        return Err(forbidden());
    }
    Ok((issue, watchers))
}

/// One watched issue, read-only, with its comments. 403 when the customer does not watch it
/// (also when there is no such issue, so the portal reveals nothing about other issues).
async fn portal_issue(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path((slug, identifier)): Path<(String, String)>,
    Query(q): Query<PortalQuery>,
) -> ApiResult<Response> {
    let c = portal_auth(&s, addr, &slug, q.token.as_deref()).await?;
    let (issue, watchers) = portal_watched_issue(&s, &c, &identifier).await?;
    let cols = s.dispatch.columns().await?;
    let status = cols.iter().find(|col| col.id == issue.column_id);
    let comments: Vec<Value> = s
        .dispatch
        .comments(issue.id)
        .await?
        .iter()
        .map(|cm| json!({ "id": cm.id, "body": cm.body, "author": cm.author.as_ref().map(|n| json!({ "name": n })), "createdAt": cm.created_at }))
        .collect();
    Ok(portal_response(json!({
        "customer": portal_customer_json(&c),
        "issue": {
            "id": issue.id,
            "identifier": issue.identifier,
            "title": issue.title,
            "description": issue.description,
            "priority": issue.priority,
            "reporterName": reporter_names(&s, std::slice::from_ref(&issue)).await?.into_values().next(),
            "status": status.map(|col| json!({ "id": col.id, "name": col.name, "color": col.color, "isClosed": col.is_closed() })),
            "agentStatus": issue.agent_status,
            "createdAt": issue.created_at,
            "updatedAt": issue.updated_at,
            "comments": comments,
            "watcherCount": watchers.len(),
        },
    })))
}
