//! Customers (admin API), their health (`/stats`), which issues they watch, and the read-only
//! customer portal.
//!
//! The portal endpoints take ONLY the customer's portal token (`?token=`; no session, no API
//! key) and show only the issues that customer watches. A wrong token and a slug that does not
//! belong to the token look the same (401), and failed token checks are rate-limited per
//! client address.

use super::{IssueKey, Page, issue_ref, params, schema};
use crate::auth::Authenticated;
use crate::dto::{CustomerDto, CustomerEnvelope};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::extract::{ApiPath, ApiQuery, MaybeJson};
use crate::openapi::{ApiRouter, doc, get};
use crate::state::AppState;
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dispatch_core::ErrorKind;
use dispatch_core::customer::{
    Customer, CustomerIssueFilter, CustomerPatch, NewCustomer, validate_slug,
};
use dispatch_core::engine::{
    CUSTOMER_LIST_MAX, CustomerHealth, CustomerIssue, CustomerStatsRequest,
};
use dispatch_core::ids::{CustomerId, IssueId};
use dispatch_core::issue::{Column, Issue, IssueFilter};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::net::SocketAddr;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .route(
            "/api/customers",
            get(list, doc("Customers by name")).post(
                create,
                doc("Create a customer (with a portal token)").status(201),
            ),
        )
        .route(
            "/api/customers/{id}",
            get(read, doc("A customer"))
                .patch(patch, doc("Change a customer"))
                .delete(delete, doc("Delete a customer"))
                .post(action, doc("?action=regenerate-token: a new portal token")),
        )
        .route(
            "/api/customers/{id}/stats",
            get(stats, doc("Health metrics and score, issues, activity")),
        )
        .route(
            "/api/issues/{id}/watchers",
            get(list_watchers, doc("The customers watching an issue"))
                .post(
                    add_watcher,
                    doc("Add a customer as a watcher (201 when new, 200 when already watching)")
                        .status(201)
                        .also(&[200]),
                )
                .delete(remove_watcher, doc("Remove a watcher")),
        )
        .route(
            "/api/portal/{slug}",
            get(portal_board, doc("Customer portal board (token)").portal()),
        )
        .route(
            "/api/portal/{slug}/issue/{identifier}",
            get(
                portal_issue,
                doc("Customer portal issue (token, watched issues only)").portal(),
            ),
        )
}

/// A customer in a path: its UUID or its slug.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(transparent)]
struct CustomerKey(#[schemars(with = "schema::CustomerKey")] String);

/// A customer path parameter: its UUID or its slug.
pub(crate) async fn find_customer(s: &AppState, raw: &str) -> ApiResult<Customer> {
    let raw = raw.trim();
    if let Ok(u) = uuid::Uuid::parse_str(raw) {
        return Ok(s.dispatch.customer(CustomerId::from(u)).await?);
    }
    if validate_slug(raw).is_err() {
        // Nothing can be named so: no such customer (as for any slug that names none).
        return Err(dispatch_core::Error::not_found(format!(
            "no customer {raw:?} (a customer is named by its UUID or its slug)"
        ))
        .into());
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

#[derive(Debug, Default, Deserialize, JsonSchema)]
struct ListQuery {
    /// The offset to continue from (`nextCursor`).
    cursor: Option<usize>,
}

/// A customer in the list, with how many issues it has.
#[derive(Debug, Serialize, JsonSchema)]
struct CustomerRow {
    #[serde(flatten)]
    customer: CustomerDto,
    #[serde(rename = "issueCount")]
    issue_count: usize,
}

#[derive(Debug, Serialize, JsonSchema)]
struct CustomerList {
    customers: Vec<CustomerRow>,
    /// The `cursor` of the next page, when there is one.
    #[serde(rename = "nextCursor", skip_serializing_if = "Option::is_none")]
    next_cursor: Option<usize>,
}

/// `{customers: [..., issueCount]}` in name order; `limit`/`cursor` page it (`nextCursor`).
async fn list(
    State(s): State<AppState>,
    _a: Authenticated,
    q: ApiQuery<Page>,
    ApiQuery(lq): ApiQuery<ListQuery>,
) -> ApiResult<Json<CustomerList>> {
    let all = s.dispatch.customers().await?;
    let limit = q.limit(Some(500));
    let start = lq.cursor.unwrap_or(0).min(all.len());
    let mut out = Vec::new();
    for c in all.iter().skip(start).take(limit) {
        let count = s.dispatch.store().health_inputs(c.id).await?.issues.len();
        out.push(CustomerRow {
            customer: CustomerDto::from(c),
            issue_count: count,
        });
    }
    let next = start + out.len();
    Ok(Json(CustomerList {
        customers: out,
        next_cursor: (next < all.len()).then_some(next),
    }))
}

/// Without a slug (or with `""`), the slug is made from the name's ASCII letters and digits,
/// so the name needs one.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend(
    "if" = { "anyOf": [
        { "not": { "required": ["slug"] } },
        { "properties": { "slug": { "anyOf": [{ "type": "null" }, { "const": "" }] } } }
    ] },
    "then" = { "properties": { "name": { "pattern": "[A-Za-z0-9]" } } }
))]
struct CreateCustomer {
    /// The display name.
    #[schemars(regex(pattern = r"\S"))]
    name: String,
    /// `""` is the same as no slug.
    #[serde(default)]
    #[schemars(with = "Option<schema::OrBlank<schema::Slug>>")]
    slug: Option<String>,
    #[serde(default, alias = "slack_channel_id")]
    slack_channel_id: Option<String>,
    #[serde(default, alias = "brand_color")]
    #[schemars(with = "Option<schema::OrBlank<schema::Color>>")]
    brand_color: Option<String>,
    #[serde(default, alias = "logo_url")]
    #[schemars(with = "Option<schema::OrBlank<schema::Url>>")]
    logo_url: Option<String>,
}

async fn create(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiJson(b): ApiJson<CreateCustomer>,
) -> ApiResult<(StatusCode, Json<CustomerEnvelope>)> {
    let new = NewCustomer {
        name: b.name,
        slug: blank_to_none(b.slug),
        slack_channel_id: blank_to_none(b.slack_channel_id),
        brand_color: blank_to_none(b.brand_color),
        logo_url: blank_to_none(b.logo_url),
    };
    let c = s.dispatch.create_customer(new).await?;
    Ok((StatusCode::CREATED, Json(CustomerEnvelope::from(&c))))
}

async fn read(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(CustomerKey(id)): ApiPath<CustomerKey>,
) -> ApiResult<Json<CustomerEnvelope>> {
    let c = find_customer(&s, &id).await?;
    Ok(Json(CustomerEnvelope::from(&c)))
}

/// `Some(None)` for an explicit `null`, `None` when the key is absent.
fn present<'de, D>(d: D) -> Result<Option<Option<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<String>::deserialize(d).map(Some)
}

/// The body of `PATCH /api/customers/{id}`: only the fields sent change; `null` or `""` clears
/// a nullable one.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct PatchCustomer {
    #[serde(default)]
    #[schemars(regex(pattern = r"\S"))]
    name: Option<String>,
    #[serde(default)]
    #[schemars(with = "Option<schema::Slug>")]
    slug: Option<String>,
    #[serde(default, alias = "slack_channel_id", deserialize_with = "present")]
    slack_channel_id: Option<Option<String>>,
    #[serde(default, alias = "brand_color", deserialize_with = "present")]
    #[schemars(with = "Option<Option<schema::OrBlank<schema::Color>>>")]
    brand_color: Option<Option<String>>,
    #[serde(default, alias = "logo_url", deserialize_with = "present")]
    #[schemars(with = "Option<Option<schema::OrBlank<schema::Url>>>")]
    logo_url: Option<Option<String>>,
}

fn required(field: &str, v: Option<String>) -> ApiResult<Option<String>> {
    match v {
        None => Ok(None),
        Some(x) => blank_to_none(Some(x))
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(field, format!("{field} must not be empty"))),
    }
}

/// Accepts `name`, `slug`, `slackChannelId`, `brandColor`, `logoUrl` (the original ignored the
/// last two).
async fn patch(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(CustomerKey(id)): ApiPath<CustomerKey>,
    ApiJson(b): ApiJson<PatchCustomer>,
) -> ApiResult<Json<CustomerEnvelope>> {
    let c = find_customer(&s, &id).await?;
    let p = CustomerPatch {
        name: required("name", b.name)?,
        slug: required("slug", b.slug)?,
        slack_channel_id: b.slack_channel_id.map(blank_to_none),
        brand_color: b.brand_color.map(blank_to_none),
        logo_url: b.logo_url.map(blank_to_none),
    };
    p.validate()?;
    let c = s.dispatch.update_customer(c.id, p).await?;
    Ok(Json(CustomerEnvelope::from(&c)))
}

async fn delete(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(CustomerKey(id)): ApiPath<CustomerKey>,
) -> ApiResult<Json<Value>> {
    let c = find_customer(&s, &id).await?;
    s.dispatch.delete_customer(c.id).await?;
    Ok(Json(json!({ "success": true })))
}

#[derive(Debug, Deserialize, JsonSchema)]
struct ActionQuery {
    #[schemars(with = "CustomerAction")]
    action: Option<String>,
}

/// Schema only: the actions `POST /api/customers/{id}` takes.
#[derive(JsonSchema)]
#[allow(dead_code)]
enum CustomerAction {
    #[schemars(rename = "regenerate-token")]
    RegenerateToken,
}

/// `POST /api/customers/{id}?action=regenerate-token`: a new portal token; the old link stops
/// working at once.
async fn action(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(CustomerKey(id)): ApiPath<CustomerKey>,
    ApiQuery(q): ApiQuery<ActionQuery>,
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

#[derive(Debug, Deserialize, JsonSchema)]
struct StatsQuery {
    /// Comma-separated parts (default `metrics,issues,activity`; empty parts are ignored).
    #[schemars(regex(
        pattern = r"^\s*(metrics|issues|activity)?\s*(,\s*(metrics|issues|activity)?\s*)*$"
    ))]
    include: Option<String>,
    #[schemars(with = "Option<StatsFilter>")]
    filter: Option<String>,
    limit: Option<usize>,
}

/// Schema only: the issue filters of `/stats`.
#[derive(JsonSchema)]
#[allow(dead_code)]
#[schemars(rename_all = "lowercase")]
enum StatsFilter {
    All,
    Stale,
    Unresponded,
    Critical,
}

/// Health of one customer (spec §11.3): `metrics` (with `healthScore` and `healthColor`), the
/// customer's issues with a filter, and a recent-activity feed. The rules are core's
/// (`dispatch_core::customer`); this parses, asks the engine once and renders.
async fn stats(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(CustomerKey(id)): ApiPath<CustomerKey>,
    ApiQuery(q): ApiQuery<StatsQuery>,
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

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct AddWatcher {
    #[serde(alias = "customer_id")]
    #[schemars(with = "schema::Uuid")]
    customer_id: String,
}

/// `DELETE …/watchers`: `{customerId}` in the body (a JSON client) or `?customerId=` (one that
/// sends no DELETE body); the document names the query form, which every client can send.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct WatcherBody {
    #[serde(default, alias = "customer_id")]
    #[schemars(with = "Option<schema::Uuid>")]
    customer_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct WatcherQuery {
    #[serde(alias = "customer_id")]
    #[schemars(with = "schema::Uuid")]
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
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
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
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
    ApiJson(b): ApiJson<AddWatcher>,
) -> ApiResult<Response> {
    let (issue, c) = watcher_target(&s, &id, Some(b.customer_id)).await?;
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
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
    ApiQuery(q): ApiQuery<WatcherQuery>,
    MaybeJson(b): MaybeJson<WatcherBody>,
) -> ApiResult<Json<Value>> {
    let b = b.unwrap_or_default();
    let (issue, c) = watcher_target(
        &s,
        &id,
        // `?customerId=` when given (a wrong one is a 400), else the body's.
        q.customer_id
            .or(b.customer_id.filter(|c| !c.trim().is_empty())),
    )
    .await?;
    let removed = s.dispatch.remove_watcher(issue.id, c.id).await?;
    Ok(Json(
        json!({ "success": true, "removed": removed, "identifier": issue.identifier, "watchers": watchers_json(&s, issue.id).await? }),
    ))
}

// --- portal ----------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
struct PortalQuery {
    /// The customer's portal token.
    token: Option<String>,
    /// `true` or `1` includes closed columns; any other value leaves them out.
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
    if let Err(wait) = s.portal_limiter.check(ip) {
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
            s.portal_limiter.reset(ip);
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
    ApiPath(slug): ApiPath<String>,
    ApiQuery(q): ApiQuery<PortalQuery>,
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
    ApiPath((slug, identifier)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<PortalQuery>,
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
