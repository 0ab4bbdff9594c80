//! What agents and their workflows call (and what the issue page reads): activities, terminal
//! output, runs, plans, spawning and cancelling. Every callback names its issue (UUID or
//! identifier) and, where it matters, its run; retries set values and never add them twice.

use super::{IssueKey, Num, Page, Text, issue_ref, schema};
use crate::auth::Authenticated;
use crate::dto::{ActivityDto, RunDto, RunWithTranscript};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::extract::{ApiPath, ApiQuery, MaybeJson};
use crate::openapi::{ApiRouter, doc, get, post};
use crate::routes::issues::render_issue;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dispatch_core::ErrorKind;
use dispatch_core::engine::CancelOutcome;
use dispatch_core::engine::{RunSelector, SpawnOptions};
use dispatch_core::gate::Decision;
use dispatch_core::run::{
    ActivityType, NewActivity, Outcome, Run, RunPatch, RunStatus, WorkflowKind,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use std::str::FromStr;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .route(
            "/api/issues/{id}/activity",
            get(
                list_activity,
                doc("Activities, newest page in time order"),
            )
            .post(
                post_activity,
                doc("Record an activity (agent report)").status(201),
            ),
        )
        .route(
            "/api/issues/{id}/terminal",
            post(
                post_terminal,
                doc("Append terminal output to a run (idempotent with seq)"),
            )
            .get(
                get_terminal,
                doc("Terminal chunks of a run after a sequence number"),
            ),
        )
        .route(
            "/api/issues/{id}/runs",
            get(list_runs, doc("Runs, newest first")).post(
                create_run,
                doc("Record a run a workflow started by itself (it becomes the current run; 409 if another is active; a retry with the same github_run_id answers 200)")
                    .status(201)
                    .also(&[200]),
            ),
        )
        .route(
            "/api/issues/{id}/runs/current",
            get(get_current_run, doc("The current run with its transcript")).patch(
                patch_current_run,
                doc("Update the current run (or ?github_run_id=/run_id=)"),
            ),
        )
        .route(
            "/api/issues/{id}/runs/current/heartbeat",
            post(
                heartbeat,
                doc("An agent's heartbeat for its run (or ?github_run_id=/run_id=): from its first heartbeat on, the run ends when heartbeats stop for AGENT_HEARTBEAT_TIMEOUT_SECONDS; answers the run (its status tells a cancelled agent to stop)"),
            ),
        )
        .route(
            "/api/issues/{id}/runs/{run_id}",
            get(get_run, doc("A run by our id or the runner's id"))
                .patch(patch_run, doc("Update a run")),
        )
        .route(
            "/api/issues/{id}/plan",
            get(get_plan, doc("The plan and its review state")).post(
                post_plan,
                doc("Submit, approve (optionally auto-spawn implementation) or reject a plan"),
            ),
        )
        .route(
            "/api/issues/{id}/spawn",
            post(
                spawn,
                doc("Ask for an agent through the gates: 200 queued, 202 deferred, 429 refused")
                    .also(&[202]),
            ),
        )
        .route(
            "/api/issues/{id}/spawn/cancel",
            post(cancel, doc("Cancel the issue's active run")),
        )
        // A callback's effects run to the end even when the workflow's curl gives up waiting.
        .map(|r| {
            r.layer(axum::middleware::from_fn_with_state(
                super::webhooks::DetachLimit::new(super::webhooks::MAX_DETACHED),
                super::webhooks::detached,
            ))
        })
}

#[derive(Debug, Deserialize, JsonSchema)]
struct ActivityQuery {
    /// Page further back: activities before this time.
    before: Option<chrono::DateTime<chrono::Utc>>,
}

/// The newest `limit` activities, oldest first (the original returned the *oldest* 50).
/// `before` pages further back.
async fn list_activity(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
    q: ApiQuery<Page>,
    ApiQuery(aq): ApiQuery<ActivityQuery>,
) -> ApiResult<Json<Vec<ActivityDto>>> {
    let mut acts = s
        .dispatch
        .activities(issue_ref(&id)?, aq.before, q.limit(None))
        .await?;
    acts.reverse();
    Ok(Json(acts.iter().map(ActivityDto::from).collect()))
}

#[derive(Debug, Deserialize, JsonSchema)]
struct PostActivity {
    /// A short snake_case word (`agent_progress`, `agent_blocker`, …; others are kept as given).
    #[serde(rename = "type")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    kind: String,
    /// The text (may be empty only for `agent_heartbeat`).
    #[schemars(length(min = 1))]
    content: String,
    /// Free-form; `run_id`/`github_run_id` in it names the run.
    #[serde(default)]
    metadata: Option<serde_json::Map<String, Value>>,
    /// Makes a retried post idempotent (also the `Idempotency-Key` header).
    #[serde(default, rename = "idempotencyKey", alias = "idempotency_key")]
    idempotency_key: Option<String>,
}

async fn run_from_metadata(s: &AppState, issue: &str, meta: &Value) -> ApiResult<Option<Run>> {
    let raw = ["run_id", "agent_run_id", "dispatch_run_id", "github_run_id"]
        .iter()
        .find_map(|k| meta.get(*k))
        .and_then(|v| match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    match raw {
        None => Ok(None),
        Some(r) => match s
            .dispatch
            .resolve_run(issue_ref(issue)?, &RunSelector::External(r))
            .await
        {
            Ok(run) => Ok(Some(run)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        },
    }
}

async fn post_activity(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
    headers: axum::http::HeaderMap,
    ApiJson(b): ApiJson<PostActivity>,
) -> ApiResult<(StatusCode, Json<ActivityDto>)> {
    let kind =
        ActivityType::parse(&b.kind).map_err(|e| ApiError::bad_request("type", e.message))?;
    if b.content.is_empty() && kind != ActivityType::AgentHeartbeat {
        return Err(ApiError::bad_request("content", "content is required"));
    }
    let metadata = b.metadata.map(Value::Object).unwrap_or(Value::Null);
    let run = run_from_metadata(&s, &id, &metadata).await?;
    let mut act = NewActivity::new(kind, b.content);
    act.metadata = metadata;
    act.run_id = run.map(|r| r.id);
    act.key = b.idempotency_key.or_else(|| {
        headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    let a = s.dispatch.record_activity(issue_ref(&id)?, act).await?;
    Ok((StatusCode::CREATED, Json(ActivityDto::from(&a))))
}

#[derive(Debug, Deserialize, JsonSchema)]
struct PostTerminal {
    content: String,
    /// Makes a retried post idempotent.
    #[serde(default)]
    seq: Option<u64>,
    /// Our run id or the runner's id; default: the issue's current run.
    #[serde(default)]
    run_id: Option<Text>,
}

async fn post_terminal(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
    ApiJson(b): ApiJson<PostTerminal>,
) -> ApiResult<Json<Value>> {
    let sel = match b.run_id {
        None => RunSelector::Current,
        Some(x) => RunSelector::External(x.into_string()),
    };
    // The original appended a newline per post; chunks keep the text exactly as sent plus that
    // newline, so the transcript reads the same.
    let content = if b.content.ends_with('\n') {
        b.content
    } else {
        format!("{}\n", b.content)
    };
    let c = s
        .dispatch
        .append_terminal(issue_ref(&id)?, &sel, &content, b.seq)
        .await?;
    Ok(Json(
        json!({ "ok": true, "seq": c.seq, "run_id": c.run_id }),
    ))
}

#[derive(Debug, Deserialize, JsonSchema)]
struct TerminalQuery {
    /// Our run id or the runner's id; default: the issue's current run.
    run_id: Option<String>,
    /// Chunks after this sequence number.
    #[serde(default)]
    after: u64,
}

/// Terminal chunks of a run after sequence number `after` (default: the current run, from 0).
async fn get_terminal(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
    ApiQuery(q): ApiQuery<TerminalQuery>,
) -> ApiResult<Json<Value>> {
    let sel = q
        .run_id
        .map(RunSelector::External)
        .unwrap_or(RunSelector::Current);
    let run = s.dispatch.resolve_run(issue_ref(&id)?, &sel).await?;
    let chunks = s.dispatch.read_terminal(run.id, q.after, 1000).await?;
    Ok(Json(json!({
        "run_id": run.id,
        "chunks": chunks.iter().map(|c| json!({ "seq": c.seq, "content": c.content, "timestamp": c.at })).collect::<Vec<_>>(),
    })))
}

async fn list_runs(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
) -> ApiResult<Json<Vec<RunDto>>> {
    let runs = s.dispatch.runs(issue_ref(&id)?).await?;
    let now = s.dispatch.clock().now();
    Ok(Json(
        runs.iter().map(|r| RunDto::new(r, now, false)).collect(),
    ))
}

#[derive(Debug, Deserialize, JsonSchema)]
struct CreateRun {
    #[schemars(with = "schema::SpawnType")]
    workflow_type: String,
    #[serde(default)]
    github_run_id: Option<Text>,
    /// The run's page (an http(s) URL; `""` is none).
    #[serde(default)]
    #[schemars(with = "Option<schema::OrBlank<schema::WebhookUrl>>")]
    github_run_url: Option<String>,
    #[serde(default)]
    prompt_text: Option<String>,
}

/// Records a run a workflow started by itself (201); it becomes the issue's current run. A
/// retried post with the same `github_run_id` answers 200 with the same run; 409 when another
/// run of the issue is active.
async fn create_run(
    State(s): State<AppState>,
    a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
    ApiJson(b): ApiJson<CreateRun>,
) -> ApiResult<(StatusCode, Json<RunDto>)> {
    let kind = WorkflowKind::from_spawn_type(&b.workflow_type)
        .map_err(|e| ApiError::bad_request("workflow_type", e.message))?;
    let external_id = b
        .github_run_id
        .map(Text::into_string)
        .filter(|x| !x.is_empty());
    let ext = dispatch_core::engine::ExternalRun {
        external_id,
        external_url: b.github_run_url.filter(|u| !u.trim().is_empty()),
        prompt_text: b.prompt_text,
    };
    let (run, created) = s
        .dispatch
        .record_external_run(issue_ref(&id)?, kind, ext, &a.actor())
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(RunDto::new(&run, s.dispatch.clock().now(), true)),
    ))
}

async fn full_run(s: &AppState, run: &Run) -> ApiResult<RunWithTranscript> {
    Ok(RunWithTranscript {
        run: RunDto::new(run, s.dispatch.clock().now(), true),
        transcript: s.dispatch.transcript(run.id).await?,
    })
}

async fn get_run(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath((IssueKey(id), run_id)): ApiPath<(IssueKey, String)>,
) -> ApiResult<Json<RunWithTranscript>> {
    let run = s
        .dispatch
        .resolve_run(issue_ref(&id)?, &RunSelector::External(run_id))
        .await?;
    Ok(Json(full_run(&s, &run).await?))
}

async fn get_current_run(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
) -> ApiResult<Json<RunWithTranscript>> {
    let run = s
        .dispatch
        .resolve_run(issue_ref(&id)?, &RunSelector::Current)
        .await?;
    Ok(Json(full_run(&s, &run).await?))
}

#[derive(Debug, Deserialize, Default, JsonSchema)]
struct RunBody {
    #[schemars(with = "Option<schema::OneOf<RunStatus>>")]
    status: Option<String>,
    #[schemars(with = "Option<schema::OneOf<Outcome>>")]
    outcome: Option<String>,
    outcome_summary: Option<String>,
    #[schemars(with = "Option<schema::Cost>")]
    cost_usd: Option<Num>,
    num_turns: Option<u32>,
    model: Option<String>,
    tokens_used: Option<u64>,
    pr_number: Option<i64>,
    github_run_id: Option<Text>,
    github_run_url: Option<String>,
    prompt_text: Option<String>,
    report_content: Option<String>,
    transcript: Option<String>,
    files_changed: Option<Vec<String>>,
    follow_ups: Option<Vec<Value>>,
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

async fn apply_run_body(
    s: &AppState,
    a: &Authenticated,
    run: Run,
    b: RunBody,
) -> ApiResult<RunDto> {
    let status = match b.status.as_deref() {
        None => None,
        Some("running") => Some(RunStatus::Running),
        Some(other) => Some(
            RunStatus::from_str(other).map_err(|e| ApiError::bad_request("status", e.message))?,
        ),
    };
    let outcome = b
        .outcome
        .as_deref()
        .map(Outcome::from_str)
        .transpose()
        .map_err(|e| ApiError::bad_request("outcome", e.message))?;
    let cost = match &b.cost_usd {
        None => None,
        Some(v) => Some(
            v.value("cost_usd")
                .ok()
                .filter(|c| c.is_finite() && *c >= 0.0)
                .ok_or_else(|| {
                    ApiError::bad_request("cost_usd", "cost_usd must be a non-negative number")
                })?,
        ),
    };
    let patch = RunPatch {
        status,
        outcome,
        outcome_summary: b.outcome_summary,
        cost_usd: cost,
        num_turns: b.num_turns,
        model: b.model,
        tokens_used: b.tokens_used,
        pr_number: b.pr_number,
        external_id: b
            .github_run_id
            .map(Text::into_string)
            .filter(|x| !x.is_empty()),
        external_url: b.github_run_url,
        prompt_text: b.prompt_text,
        report_content: b.report_content,
        files_changed: b.files_changed,
        follow_ups: b.follow_ups.map(|f| {
            f.iter()
                .map(|v| text_of(v).unwrap_or_else(|| v.to_string()))
                .collect()
        }),
        ..RunPatch::default()
    };
    let updated = s.dispatch.update_run(run.id, patch, &a.actor()).await?;
    // The workflow's final full transcript: kept only when no live chunk arrived.
    if let Some(t) = b.transcript.filter(|t| !t.is_empty())
        && s.dispatch.read_terminal(run.id, 0, 1).await?.is_empty()
    {
        s.dispatch
            .append_terminal(run.issue_id, &RunSelector::Id(run.id), &t, None)
            .await?;
    }
    // A callback's answer carries the run, not its transcript (which grows with every chunk
    // and is read with GET).
    Ok(RunDto::new(&updated, s.dispatch.clock().now(), true))
}

async fn patch_run(
    State(s): State<AppState>,
    a: Authenticated,
    ApiPath((IssueKey(id), run_id)): ApiPath<(IssueKey, String)>,
    ApiJson(b): ApiJson<RunBody>,
) -> ApiResult<Json<RunDto>> {
    let run = s
        .dispatch
        .resolve_run(issue_ref(&id)?, &RunSelector::External(run_id))
        .await?;
    Ok(Json(apply_run_body(&s, &a, run, b).await?))
}

#[derive(Debug, Deserialize, JsonSchema)]
struct CurrentQuery {
    github_run_id: Option<String>,
    run_id: Option<String>,
}

/// Targets the run named by `?github_run_id=` / `?run_id=` (our id works there too), else the
/// issue's current run — so overlapping runs never update each other.
async fn patch_current_run(
    State(s): State<AppState>,
    a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
    ApiQuery(q): ApiQuery<CurrentQuery>,
    ApiJson(b): ApiJson<RunBody>,
) -> ApiResult<Json<RunDto>> {
    let sel = match q.run_id.or(q.github_run_id).filter(|x| !x.is_empty()) {
        Some(x) => RunSelector::External(x),
        None => RunSelector::Current,
    };
    let run = match s.dispatch.resolve_run(issue_ref(&id)?, &sel).await {
        Ok(r) => r,
        // A workflow that reports its GitHub run id before we learned it: the current run.
        Err(e) if e.kind == ErrorKind::NotFound && sel != RunSelector::Current => {
            s.dispatch
                .resolve_run(issue_ref(&id)?, &RunSelector::Current)
                .await?
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Json(apply_run_body(&s, &a, run, b).await?))
}

/// The workflows send one a minute while their agent works (`dispatch-callback.sh heartbeat`).
async fn heartbeat(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
    ApiQuery(q): ApiQuery<CurrentQuery>,
) -> ApiResult<Json<RunDto>> {
    let external = q.run_id.or(q.github_run_id).filter(|x| !x.is_empty());
    let run = s
        .dispatch
        .heartbeat(issue_ref(&id)?, external.as_deref())
        .await?;
    Ok(Json(RunDto::new(&run, s.dispatch.now(), false)))
}

async fn get_plan(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
) -> ApiResult<Json<Value>> {
    let i = s.dispatch.get_issue(issue_ref(&id)?).await?;
    Ok(Json(json!({
        "identifier": i.identifier,
        "plan_status": i.plan.status,
        "plan_content": i.plan.content,
        "plan_feedback": i.plan.feedback,
        "plan_approved_at": i.plan.approved_at,
        "plan_approved_by": i.plan.approved_by,
    })))
}

/// `{action: submit, content}`, `{action: approve, approvedBy?, autoSpawn?}` or
/// `{action: reject, feedback}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "lowercase")]
enum PlanAction {
    Submit {
        #[schemars(regex(pattern = r"\S"))]
        content: String,
    },
    Approve {
        #[serde(default, rename = "approvedBy", alias = "approved_by")]
        approved_by: Option<String>,
        #[serde(default, rename = "autoSpawn", alias = "auto_spawn")]
        auto_spawn: bool,
    },
    Reject {
        #[schemars(regex(pattern = r"\S"))]
        feedback: String,
    },
}

fn spawn_json(o: &dispatch_core::engine::SpawnOutcome) -> Value {
    match &o.decision {
        Decision::Allow => json!({ "spawned": true, "dispatchId": o.run_id }),
        Decision::Defer { until, reason } => {
            json!({ "spawned": false, "deferred": true, "until": until, "reason": reason.to_string(), "code": reason.code() })
        }
        Decision::Deny { reason } => {
            json!({ "spawned": false, "reason": reason.to_string(), "code": reason.code() })
        }
    }
}

async fn post_plan(
    State(s): State<AppState>,
    a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
    ApiJson(b): ApiJson<PlanAction>,
) -> ApiResult<Json<Value>> {
    let r = issue_ref(&id)?;
    let actor = a.actor();
    let (issue, spawn) = match b {
        PlanAction::Submit { content } => {
            if content.trim().is_empty() {
                return Err(ApiError::bad_request(
                    "content",
                    "content is required to submit a plan",
                ));
            }
            (s.dispatch.submit_plan(r, &content, &actor).await?, None)
        }
        PlanAction::Approve {
            approved_by,
            auto_spawn,
        } => {
            let review = s
                .dispatch
                .approve_plan(
                    r,
                    approved_by.as_deref().unwrap_or("human"),
                    auto_spawn,
                    &actor,
                )
                .await?;
            (review.issue, review.spawn)
        }
        PlanAction::Reject { feedback } => {
            if feedback.trim().is_empty() {
                return Err(ApiError::bad_request(
                    "feedback",
                    "feedback is required to reject a plan",
                ));
            }
            (s.dispatch.reject_plan(r, &feedback, &actor).await?, None)
        }
    };
    let mut v = json!({ "success": true, "identifier": issue.identifier, "plan_status": issue.plan.status });
    if let Some(o) = &spawn {
        if let Some(reason) = o.decision.reason() {
            s.metrics.gate(reason.code());
        } else {
            s.metrics.gate("allow");
        }
        v["spawn"] = spawn_json(o);
    }
    Ok(Json(v))
}

#[derive(Debug, Deserialize, Default, JsonSchema)]
struct SpawnBody {
    /// The workflow (default `investigate`).
    #[serde(rename = "type")]
    #[schemars(with = "Option<schema::SpawnType>")]
    kind: Option<String>,
    #[serde(default)]
    force: bool,
    additional_context: Option<String>,
}

/// 200 spawned; 202 deferred (it will start when the gates allow, e.g. a concurrency slot
/// frees); 429 refused with the gate's reason; 400 for implement/QA without an approved plan.
async fn spawn(
    State(s): State<AppState>,
    a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
    MaybeJson(b): MaybeJson<SpawnBody>,
) -> ApiResult<Response> {
    // An empty body means "investigate", as in the original.
    let b = b.unwrap_or_default();
    let kind = match b.kind.as_deref() {
        None => WorkflowKind::PrdInvestigate,
        Some(t) => WorkflowKind::from_spawn_type(t)
            .map_err(|e| ApiError::bad_request("type", e.message))?,
    };
    let options = SpawnOptions {
        kind,
        force: b.force,
        additional_context: b.additional_context,
    };
    let outcome = match s.dispatch.spawn(issue_ref(&id)?, options, &a.actor()).await {
        Ok(o) => o,
        Err(e) if e.kind == ErrorKind::Conflict && kind.needs_approved_plan() => {
            return Err(ApiError::bad_request("type", e.message));
        }
        Err(e) => return Err(e.into()),
    };
    s.metrics.gate_decision(&outcome.decision);
    let base = json!({ "identifier": outcome.identifier, "type": kind.spawn_type(), "workflow_type": kind });
    let (status, extra) = match &outcome.decision {
        Decision::Allow => (
            StatusCode::OK,
            json!({ "success": true, "dispatchId": outcome.run_id, "message": format!("{} agent queued", kind.spawn_type()) }),
        ),
        Decision::Defer { until, reason } => (
            StatusCode::ACCEPTED,
            json!({ "success": true, "deferred": true, "until": until, "reason": reason.to_string(), "code": reason.code(), "message": format!("deferred until {until}: {reason}") }),
        ),
        Decision::Deny { reason } => (
            StatusCode::TOO_MANY_REQUESTS,
            json!({ "success": false, "error": "Spawn blocked", "reason": reason.to_string(), "code": reason.code() }),
        ),
    };
    let mut v = base;
    if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
        m.extend(e);
    }
    Ok((status, Json(v)).into_response())
}

async fn cancel(
    State(s): State<AppState>,
    a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
) -> ApiResult<Json<Value>> {
    let r = issue_ref(&id)?;
    let identifier = s.dispatch.get_issue(r.clone()).await?.identifier;
    match s.dispatch.cancel(r, &a.actor()).await {
        Ok(outcome) => {
            let issue = s.dispatch.get_issue(identifier.as_str()).await?;
            let (confirmed, requested, message) = match outcome {
                CancelOutcome::Cancelled {
                    runner_confirmed: true,
                } => (true, false, "Agent cancelled"),
                CancelOutcome::Cancelled {
                    runner_confirmed: false,
                } => (
                    false,
                    false,
                    "Run marked cancelled; the runner did not confirm",
                ),
                CancelOutcome::Requested => (
                    false,
                    true,
                    "Cancel requested: the agent is being started and is stopped as soon as its dispatch returns",
                ),
            };
            Ok(Json(json!({
                "success": true,
                "identifier": identifier,
                "ghCancelled": confirmed,
                "cancelRequested": requested,
                "message": message,
                "issue": render_issue(&s, &issue).await?,
            })))
        }
        Err(e) if e.kind == ErrorKind::Conflict => Err(ApiError::bad_request("id", e.message)),
        Err(e) => Err(e.into()),
    }
}
