//! `/api/issues`: create, list (paginated), read, change (people and agent callbacks), delete,
//! history, similar issues, fix status, investigation context.

use super::{IssueKey, Num, Page, Text, issue_ref, link_next_page, params, schema};
use crate::auth::{AuthMethod, Authenticated};
use crate::dto::{IssueDto, link_json, pr_link_json};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::extract::{ApiPath, ApiQuery};
use crate::openapi::{ApiRouter, doc, get};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use dispatch_core::ErrorKind;
use dispatch_core::engine::{ColumnRef, IssueChanges};
use dispatch_core::ids::{ColumnId, CustomerId, IssueId, LabelId};
use dispatch_core::issue::{Actor, AgentStatus, Issue, IssueFilter, NewIssue, Priority};
use dispatch_core::ports::RunResult;
use dispatch_core::run::{Outcome, RunPatch, RunStatus};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::str::FromStr;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .route(
            "/api/issues",
            get(
                list,
                doc("Issues, newest first; paginated with limit/cursor (next page in the Link header)"),
            )
            .post(create, doc("Create an issue").status(201)),
        )
        .route(
            "/api/issues/{id}",
            get(read, doc("An issue by UUID or identifier, with its error links"))
                .patch(
                    patch,
                    doc("Change an issue (people and agent callbacks); closing passes the fix-verification gate"),
                )
                .delete(delete, doc("Delete an issue")),
        )
        .route(
            "/api/issues/{id}/history",
            get(history, doc("History, newest first, with readable sentences")),
        )
        .route(
            "/api/issues/{id}/pr",
            get(list_prs, doc("Linked pull requests, newest first")).delete(
                unlink_pr,
                doc("Unlink a pull request (history pr_unlinked); 404 if the issue has no such link"),
            ),
        )
        .route("/api/issues/{id}/similar", get(similar, doc("Similar issues")))
        .route(
            "/api/issues/{id}/fix-status",
            get(
                fix_status,
                doc("Fix attempts, verification status and whether the issue may close"),
            ),
        )
        .route(
            "/api/issues/{id}/investigation-context",
            get(
                investigation_context,
                doc("Previous runs of the issue for the next agent"),
            ),
        )
}

/// Issue JSON with the workspace's columns and labels resolved.
pub async fn render_issue(s: &AppState, i: &Issue) -> ApiResult<IssueDto> {
    let cols = s.dispatch.columns_for_display().await?;
    // Most issues have no labels: then the workspace's labels are not read.
    let labels = if i.labels.is_empty() {
        Vec::new()
    } else {
        s.dispatch.labels().await?
    };
    Ok(IssueDto::new(i, &cols, &labels))
}

#[derive(Debug, Deserialize, JsonSchema)]
struct ListQuery {
    limit: Option<usize>,
    /// The `issue_number` to continue before (from the `Link` header).
    cursor: Option<i64>,
    #[serde(rename = "statusId")]
    #[schemars(with = "Option<schema::Uuid>")]
    status_id: Option<ColumnId>,
    #[serde(rename = "customerId")]
    #[schemars(with = "Option<schema::Uuid>")]
    customer_id: Option<CustomerId>,
    #[serde(rename = "labelId")]
    #[schemars(with = "Option<schema::Uuid>")]
    label_id: Option<LabelId>,
    /// Only issues with an active agent.
    active: Option<bool>,
}

/// Newest first. The body stays a bare array (as the original's); the next page is announced in
/// a `Link: <…?cursor=N>; rel="next"` header.
async fn list(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiQuery(f): ApiQuery<ListQuery>,
) -> ApiResult<(HeaderMap, Json<Vec<IssueDto>>)> {
    let limit = Page { limit: f.limit }.limit(None);
    let filter = IssueFilter {
        column_id: f.status_id,
        customer_id: f.customer_id,
        label_id: f.label_id,
        spawn_active: f.active,
        before_number: f.cursor,
        limit: Some(limit + 1),
        ..IssueFilter::default()
    };
    let mut issues = s.dispatch.list_issues(&filter).await?;
    let more = issues.len() > limit;
    issues.truncate(limit);
    let cols = s.dispatch.columns().await?;
    let labels = s.dispatch.labels().await?;
    let body: Vec<IssueDto> = issues
        .iter()
        .map(|i| IssueDto::new(i, &cols, &labels))
        .collect();
    let mut headers = HeaderMap::new();
    if more && let Some(last) = issues.last() {
        link_next_page(&mut headers, "/api/issues", limit, last.number);
    }
    Ok((headers, Json(body)))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct CreateIssue {
    #[schemars(regex(pattern = r"\S"))]
    title: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, alias = "status_id")]
    #[schemars(with = "Option<schema::Uuid>")]
    status_id: Option<String>,
    /// A column by name (when `statusId` is not given).
    #[serde(default)]
    status_name: Option<String>,
    #[serde(default)]
    #[schemars(with = "Option<PriorityName>")]
    priority: Option<String>,
    #[serde(default)]
    assignee_name: Option<String>,
    #[serde(default)]
    #[schemars(with = "Vec<schema::Uuid>")]
    label_ids: Vec<String>,
    #[serde(default)]
    #[schemars(with = "Option<schema::Uuid>")]
    customer_id: Option<String>,
    #[serde(default)]
    #[schemars(with = "Vec<schema::Uuid>")]
    watcher_ids: Vec<String>,
}

/// A priority as the API takes it (`P1`..`P4`, or the original's words).
#[derive(JsonSchema)]
#[allow(dead_code)] // a schema only: the handler parses the text with `Priority::from_str`
enum PriorityName {
    P1,
    P2,
    P3,
    P4,
    #[schemars(rename = "critical")]
    Critical,
    #[schemars(rename = "urgent")]
    Urgent,
    #[schemars(rename = "high")]
    High,
    #[schemars(rename = "medium")]
    Medium,
    #[schemars(rename = "normal")]
    Normal,
    #[schemars(rename = "low")]
    Low,
}

async fn create(
    State(s): State<AppState>,
    a: Authenticated,
    ApiJson(b): ApiJson<CreateIssue>,
) -> ApiResult<(StatusCode, Json<IssueDto>)> {
    let column = match (&b.status_id, &b.status_name) {
        (Some(id), _) => Some(
            s.dispatch
                .resolve_column(&ColumnRef::Id(params::column_id("statusId", id)?))
                .await?
                .id,
        ),
        (None, Some(name)) => Some(
            s.dispatch
                .resolve_column(&ColumnRef::Name(name.clone()))
                .await?
                .id,
        ),
        _ => None,
    };
    let new = NewIssue {
        title: b.title,
        description: b.description.filter(|d| !d.trim().is_empty()),
        column_id: column,
        priority: match &b.priority {
            Some(p) => Priority::from_str(p)?,
            None => Priority::P3,
        },
        assignee: b.assignee_name.filter(|n| !n.trim().is_empty()),
        labels: b
            .label_ids
            .iter()
            .map(|l| params::label_id("labelIds", l))
            .collect::<ApiResult<_>>()?,
        customer_id: b
            .customer_id
            .as_deref()
            .map(|c| params::customer_id("customerId", c))
            .transpose()?,
        reporter_id: None,
        customer_watches: false,
    };
    let actor = match a.method {
        AuthMethod::Session => Actor::user("User"),
        AuthMethod::ApiKey => Actor::system("API"),
    };
    let issue = s.dispatch.create_issue(new, &actor).await?;
    for w in &b.watcher_ids {
        s.dispatch
            .add_watcher(issue.id, params::customer_id("watcherIds", w)?)
            .await?;
    }
    Ok((StatusCode::CREATED, Json(render_issue(&s, &issue).await?)))
}

/// An issue with its error links, watchers and linked pull requests.
#[derive(Debug, Serialize, JsonSchema)]
struct IssueDetail {
    #[serde(flatten)]
    issue: IssueDto,
    external_links: Vec<Value>,
    #[schemars(with = "Vec<schema::Uuid>")]
    watchers: Vec<CustomerId>,
    linked_prs: Vec<Value>,
}

async fn read(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
) -> ApiResult<Json<IssueDetail>> {
    let issue = s.dispatch.get_issue(issue_ref(&id)?).await?;
    let links = s.dispatch.store().links_for_issue(issue.id).await?;
    let prs = s.dispatch.store().list_pr_links(issue.id).await?;
    Ok(Json(IssueDetail {
        issue: render_issue(&s, &issue).await?,
        external_links: links.iter().map(link_json).collect(),
        watchers: s.dispatch.watchers(issue.id).await?,
        linked_prs: prs.iter().map(pr_link_json).collect(),
    }))
}

/// The issue's linked pull requests, newest first.
async fn list_prs(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
) -> ApiResult<Json<Value>> {
    let prs = s.dispatch.pr_links(issue_ref(&id)?).await?;
    Ok(Json(json!(
        prs.iter().map(pr_link_json).collect::<Vec<_>>()
    )))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct UnlinkPr {
    #[serde(alias = "pr_id")]
    #[schemars(with = "schema::Uuid")]
    pr_id: String,
}

/// Removes a wrong link: `{prId}` → `{success: true}`, 404 when the issue has no such link.
async fn unlink_pr(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
    ApiJson(b): ApiJson<UnlinkPr>,
) -> ApiResult<Json<Value>> {
    let r = issue_ref(&id)?;
    let pr_id = uuid::Uuid::parse_str(b.pr_id.trim())
        .map(dispatch_core::ids::PrLinkId)
        .map_err(|_| ApiError::bad_request("prId", "prId must be a UUID"))?;
    if !s
        .dispatch
        .unlink_pr(r, pr_id, &Actor::user("Manual unlink"))
        .await?
    {
        return Err(
            dispatch_core::Error::not_found(format!("no linked PR {pr_id} on this issue")).into(),
        );
    }
    Ok(Json(json!({ "success": true })))
}

async fn delete(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
) -> ApiResult<Json<Value>> {
    let issue = s.dispatch.delete_issue(issue_ref(&id)?).await?;
    Ok(Json(
        json!({ "success": true, "identifier": issue.identifier }),
    ))
}

/// `Some(None)` for an explicit `null` (clear the field), `None` when the key is absent.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

fn text(v: &Option<Option<Text>>) -> Option<Option<String>> {
    v.clone().map(|t| t.map(Text::into_string))
}

fn flat(v: &Option<Option<Text>>) -> Option<String> {
    text(v).flatten()
}

fn num(key: &str, v: &Option<Num>) -> ApiResult<Option<f64>> {
    v.as_ref().map(|n| n.value(key)).transpose()
}

fn parse_enum<T: FromStr<Err = dispatch_core::Error>>(
    key: &str,
    v: Option<String>,
) -> ApiResult<Option<T>> {
    match v {
        None => Ok(None),
        Some(s) => T::from_str(&s)
            .map(Some)
            .map_err(|e| ApiError::bad_request(key, e.message)),
    }
}

/// The body of `PATCH /api/issues/{id}`: every field optional; `null` clears a nullable field.
/// Snake-case names are the original's (agent workflows send them); camelCase ones are accepted
/// where the original's UI sent them.
#[derive(Debug, Default, Deserialize, JsonSchema)]
struct PatchIssue {
    #[serde(default, alias = "planStatus", deserialize_with = "nullable")]
    #[schemars(with = "Option<PlanStatusName>")]
    plan_status: Option<Option<Text>>,
    #[serde(default, alias = "planContent", deserialize_with = "nullable")]
    plan_content: Option<Option<Text>>,
    #[serde(default, alias = "planApprovedBy", deserialize_with = "nullable")]
    plan_approved_by: Option<Option<Text>>,
    #[serde(default, alias = "planFeedback", deserialize_with = "nullable")]
    plan_feedback: Option<Option<Text>>,
    #[serde(default, alias = "spawnStatus", deserialize_with = "nullable")]
    #[schemars(with = "Option<SpawnStatusName>")]
    spawn_status: Option<Option<Text>>,
    #[serde(default, alias = "runOutcome", deserialize_with = "nullable")]
    #[schemars(with = "Option<schema::OneOf<Outcome>>")]
    run_outcome: Option<Option<Text>>,
    #[serde(default, alias = "outcomeSummary", deserialize_with = "nullable")]
    outcome_summary: Option<Option<Text>>,
    #[serde(default)]
    #[schemars(with = "Option<schema::Cost>")]
    cost_usd: Option<Num>,
    #[serde(default)]
    #[schemars(with = "Option<schema::Number>")]
    num_turns: Option<Num>,
    #[serde(default, deserialize_with = "nullable")]
    model: Option<Option<Text>>,
    #[serde(default)]
    #[schemars(with = "Option<schema::Number>")]
    pr_number: Option<Num>,
    /// The runner's id of the run being reported on.
    #[serde(
        default,
        alias = "spawnRunId",
        alias = "github_run_id",
        deserialize_with = "nullable"
    )]
    spawn_run_id: Option<Option<Text>>,
    /// The run's page, recorded with `spawn_status: running`.
    #[serde(default, deserialize_with = "nullable")]
    github_run_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<NonBlank>")]
    title: Option<Option<Text>>,
    #[serde(default, deserialize_with = "nullable")]
    description: Option<Option<Text>>,
    #[serde(
        default,
        rename = "statusId",
        alias = "status_id",
        deserialize_with = "nullable"
    )]
    #[schemars(with = "Option<Option<schema::Uuid>>")]
    status_id: Option<Option<Text>>,
    /// A column by name (`Canceled`, `in_progress`); an unknown name is ignored.
    #[serde(default, deserialize_with = "nullable")]
    status: Option<Option<Text>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<Option<PriorityName>>")]
    priority: Option<Option<Text>>,
    #[serde(
        default,
        rename = "assigneeName",
        alias = "assignee_name",
        deserialize_with = "nullable"
    )]
    assignee_name: Option<Option<Text>>,
    #[serde(default, rename = "labelIds", alias = "label_ids")]
    #[schemars(with = "Option<Vec<schema::Uuid>>")]
    label_ids: Option<Vec<String>>,
    #[serde(
        default,
        rename = "customerId",
        alias = "customer_id",
        deserialize_with = "nullable"
    )]
    #[schemars(with = "Option<Option<schema::Uuid>>")]
    customer_id: Option<Option<Text>>,
    #[serde(default, alias = "agentStatus", deserialize_with = "nullable")]
    #[schemars(with = "Option<Option<schema::OneOf<AgentStatus>>>")]
    agent_status: Option<Option<Text>>,
    #[serde(default, alias = "blockedReason", deserialize_with = "nullable")]
    blocked_reason: Option<Option<Text>>,
}

/// Schema only: a title as `Text` takes it: a string with a non-space character, or a number.
struct NonBlank;

impl JsonSchema for NonBlank {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NonBlankText".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": ["string", "number"], "pattern": "\\S" })
    }
}

/// Schema only: the plan statuses a PATCH may set.
#[derive(JsonSchema)]
#[allow(dead_code)]
enum PlanStatusName {
    #[schemars(rename = "awaiting_review")]
    AwaitingReview,
    #[schemars(rename = "posted")]
    Posted,
    #[schemars(rename = "approved")]
    Approved,
    #[schemars(rename = "needs_revision")]
    NeedsRevision,
    #[schemars(rename = "rejected")]
    Rejected,
    #[schemars(rename = "investigating")]
    Investigating,
}

/// Schema only: the run states a callback may report.
#[derive(JsonSchema)]
#[allow(dead_code)]
enum SpawnStatusName {
    #[schemars(rename = "running")]
    Running,
    #[schemars(rename = "completed")]
    Completed,
    #[schemars(rename = "failed")]
    Failed,
    #[schemars(rename = "cancelled")]
    Cancelled,
}

/// PATCH for people and for agent workflows (§3.1, §7.6): plan fields go through plan review,
/// `spawn_status` and cost/turns/outcome go to the issue's current run (values are set, never
/// added, so a retried callback is harmless), and the rest are plain changes. Moving into a
/// closed column passes the close gate.
async fn patch(
    State(s): State<AppState>,
    a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
    ApiJson(m): ApiJson<PatchIssue>,
) -> ApiResult<Json<IssueDto>> {
    let actor = a.actor();
    let issue = s.dispatch.get_issue(issue_ref(&id)?).await?;

    // 1. Plan.
    let plan_status = flat(&m.plan_status);
    let plan_content = flat(&m.plan_content);
    match plan_status.as_deref() {
        Some("awaiting_review") => {
            let c = plan_content.clone().ok_or_else(|| {
                ApiError::bad_request("plan_content", "plan_content is required to submit a plan")
            })?;
            s.dispatch.submit_plan(issue.id, &c, &actor).await?;
        }
        Some("posted") => {
            let c = plan_content.clone().ok_or_else(|| {
                ApiError::bad_request(
                    "plan_content",
                    "plan_content is required to post an assessment",
                )
            })?;
            s.dispatch.post_assessment(issue.id, &c, &actor).await?;
        }
        Some("approved") => {
            let by = flat(&m.plan_approved_by).unwrap_or_else(|| "human".into());
            s.dispatch
                .approve_plan(issue.id, &by, false, &actor)
                .await?;
        }
        Some("needs_revision" | "rejected") => {
            let f = flat(&m.plan_feedback).ok_or_else(|| {
                ApiError::bad_request(
                    "plan_feedback",
                    "plan_feedback is required to reject a plan",
                )
            })?;
            s.dispatch.reject_plan(issue.id, &f, &actor).await?;
        }
        Some("investigating") | None => {
            if plan_content.is_some() && plan_status.is_none() {
                s.dispatch
                    .submit_plan(
                        issue.id,
                        plan_content.as_deref().unwrap_or_default(),
                        &actor,
                    )
                    .await?;
            }
        }
        Some(other) => {
            return Err(ApiError::bad_request(
                "plan_status",
                format!("unknown plan_status {other:?}"),
            ));
        }
    }

    // 2. The current run.
    let spawn_status = flat(&m.spawn_status);
    let outcome: Option<Outcome> = parse_enum("run_outcome", flat(&m.run_outcome))?;
    let summary = flat(&m.outcome_summary);
    let cost = num("cost_usd", &m.cost_usd)?;
    if let Some(c) = cost
        && (!c.is_finite() || c < 0.0)
    {
        return Err(ApiError::bad_request(
            "cost_usd",
            "cost_usd must be a non-negative number",
        ));
    }
    let turns = num("num_turns", &m.num_turns)?.map(|n| n.max(0.0) as u32);
    let model = flat(&m.model);
    let pr_number = num("pr_number", &m.pr_number)?.map(|n| n as i64);
    let external = flat(&m.spawn_run_id);
    let run_touched = spawn_status.is_some()
        || outcome.is_some()
        || cost.is_some()
        || turns.is_some()
        || pr_number.is_some();
    if run_touched {
        match s
            .dispatch
            .resolve_reported_run(issue.id, external.as_deref())
            .await
        {
            Ok(run) => match spawn_status.as_deref() {
                Some("running") => {
                    s.dispatch
                        .run_started(run.id, external, m.github_run_url.clone().flatten(), &actor)
                        .await?;
                }
                Some(st @ ("completed" | "failed" | "cancelled")) => {
                    let status = match st {
                        "completed" => RunStatus::Completed,
                        "failed" => RunStatus::Failed,
                        _ => RunStatus::Cancelled,
                    };
                    let result = RunResult {
                        status: Some(status),
                        outcome,
                        summary,
                        cost_usd: cost,
                        num_turns: turns,
                        model,
                        pr_number,
                        ..RunResult::default()
                    };
                    s.dispatch.finish_run(run.id, result, &actor).await?;
                }
                Some(other) => {
                    return Err(ApiError::bad_request(
                        "spawn_status",
                        format!("unknown spawn_status {other:?}"),
                    ));
                }
                None => {
                    let p = RunPatch {
                        outcome,
                        outcome_summary: summary,
                        cost_usd: cost,
                        num_turns: turns,
                        model,
                        pr_number,
                        ..RunPatch::default()
                    };
                    s.dispatch.update_run(run.id, p, &actor).await?;
                }
            },
            Err(e) if e.kind == ErrorKind::NotFound => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "CONFLICT",
                    format!("{} has no run to report on", issue.identifier),
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }

    // 3. Plain changes (an explicit status wins over the automatic moves above).
    let mut changes = IssueChanges::default();
    if let Some(t) = text(&m.title) {
        changes.title =
            Some(t.ok_or_else(|| ApiError::bad_request("title", "title cannot be null"))?);
    }
    if let Some(d) = text(&m.description) {
        changes.description = Some(d);
    }
    if let Some(Some(sid)) = text(&m.status_id) {
        changes.column = Some(ColumnRef::Id(params::column_id("statusId", &sid)?));
    } else if let Some(Some(name)) = text(&m.status) {
        // Workflows send names such as "Canceled", "Needs Review" or "in_progress"; an unknown
        // name is ignored, as the original did.
        let wanted = name.replace('_', " ");
        if let Ok(c) = s.dispatch.resolve_column(&ColumnRef::Name(wanted)).await {
            changes.column = Some(ColumnRef::Id(c.id));
        }
    }
    if let Some(p) = flat(&m.priority) {
        changes.priority =
            Some(Priority::from_str(&p).map_err(|e| ApiError::bad_request("priority", e.message))?);
    }
    if let Some(n) = text(&m.assignee_name) {
        changes.assignee = Some(n.filter(|x| !x.trim().is_empty()));
    }
    if let Some(arr) = &m.label_ids {
        let ids = arr
            .iter()
            .enumerate()
            .map(|(i, x)| params::label_id(&format!("labelIds[{i}]"), x))
            .collect::<ApiResult<Vec<_>>>()?;
        changes.labels = Some(ids);
    }
    if let Some(c) = text(&m.customer_id) {
        changes.customer_id = Some(
            c.map(|c| params::customer_id("customerId", &c))
                .transpose()?,
        );
    }
    if let Some(st) = parse_enum::<AgentStatus>("agent_status", flat(&m.agent_status))? {
        // A run that just ended already set the agent status; an explicit one still wins.
        changes.agent_status = Some(st);
    }
    if let Some(b) = text(&m.blocked_reason) {
        changes.blocked_reason = Some(b);
    }
    if changes != IssueChanges::default() {
        match s.dispatch.update_issue(issue.id, changes, &actor).await {
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::Forbidden => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "FIX_VERIFICATION_REQUIRED",
                    "Cannot close issue",
                )
                .with_extra(json!({ "reason": e.message })));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let issue = s.dispatch.get_issue(issue.id).await?;
    Ok(Json(render_issue(&s, &issue).await?))
}

async fn history(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
    q: ApiQuery<Page>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit(None);
    let entries = s.dispatch.history(issue_ref(&id)?, limit).await?;
    let cols = s.dispatch.columns().await?;
    let labels = s.dispatch.labels().await?;
    let out: Vec<Value> = entries
        .iter()
        .map(|h| {
            json!({
                "id": h.id,
                "action": h.action,
                "old_value": h.old_value,
                "new_value": h.new_value,
                "actor_type": h.actor.kind,
                "actor_name": h.actor.name,
                "created_at": h.created_at,
                "formatted": super::history_sentence(h, &cols, &labels),
            })
        })
        .collect();
    Ok(Json(json!(out)))
}

async fn similar(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
    q: ApiQuery<Page>,
) -> ApiResult<Json<Value>> {
    let hits = s
        .dispatch
        .similar_issues(issue_ref(&id)?, q.limit.unwrap_or(5))
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
                "status_name": c.map(|c| c.name.clone()),
                "status_color": c.map(|c| c.color.clone()),
                "similarity": h.score,
            })
        })
        .collect();
    Ok(Json(json!(out)))
}

async fn fix_status(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
) -> ApiResult<Json<Value>> {
    let st = s.dispatch.fix_status(issue_ref(&id)?).await?;
    let now = s.dispatch.clock().now();
    let latest = st.latest.as_ref().map(|a| {
        json!({
            "status": a.status,
            "color": a.status.color(),
            "description": dispatch_core::verify::describe(a, now),
        })
    });
    let has_sentry = st.links.iter().any(|l| l.source == "sentry");
    Ok(Json(json!({
        "issueId": st.issue_id,
        "identifier": st.identifier,
        "hasSentryLink": has_sentry,
        "hasErrorLink": st.has_error_link,
        "sentryLinks": st.links.iter().map(|l| json!({ "id": l.id, "source": l.source, "externalId": l.external_key, "url": l.url, "metadata": l.metadata })).collect::<Vec<_>>(),
        "fixAttempts": st.attempts.iter().map(|a| json!({
            "id": a.id,
            "prNumber": a.pr_number,
            "prUrl": a.pr_url,
            "prTitle": a.pr_title,
            "mergedAt": a.merged_at,
            "mergedSha": a.merged_sha,
            "deployedAt": a.deployed_at,
            "deployedSha": a.deployed_sha,
            "verificationStatus": a.status,
            "verificationDeadline": a.deadline,
            "failureReason": a.failure_reason,
            "sentryEventsPostDeploy": a.events_after_deploy,
        })).collect::<Vec<_>>(),
        "latestFixStatus": latest,
        "canClose": st.can_close,
        "closeBlockReason": st.close_block_reason,
    })))
}

async fn investigation_context(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
) -> ApiResult<Json<Value>> {
    let issue_id: IssueId = s.dispatch.get_issue(issue_ref(&id)?).await?.id;
    let mut runs = s.dispatch.runs(issue_id).await?;
    runs.retain(|r| r.status.is_terminal());
    runs.reverse();
    let attempts = s.dispatch.store().list_fix_attempts(issue_id).await?;
    let total: f64 = runs.iter().map(|r| r.cost_usd).sum();
    let prev: Vec<Value> = runs
        .iter()
        .enumerate()
        .map(|(n, r)| {
            let pr = r
                .pr_number
                .and_then(|p| attempts.iter().find(|a| a.pr_number == p));
            json!({
                "run_number": n + 1,
                "date": r.created_at,
                "workflow_type": r.kind,
                "outcome": r.outcome,
                "outcome_summary": r.outcome_summary,
                "files_changed": r.files_changed,
                "follow_ups": r.follow_ups,
                "pr_number": r.pr_number,
                "pr_status": pr.map(|_| "merged"),
                "pr_merged": pr.is_some(),
                "fix_verification": pr.map(|a| a.status),
                "cost_usd": r.cost_usd,
                "num_turns": r.num_turns,
            })
        })
        .collect();
    Ok(Json(
        json!({ "previous_runs": prev, "total_runs": runs.len(), "total_cost_usd": total }),
    ))
}
