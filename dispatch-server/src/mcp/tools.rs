//! The MCP tools: the 18 of the original (spec §10) and the dispatch tools its README promised.
//!
//! Each tool is a parameter struct (its JSON schema, with the doc comments as descriptions, is
//! what clients show the model) and a function that calls the engine. Arguments are checked
//! here, at the edge: a missing or mistyped argument, an unknown identifier, a gate refusal or
//! the close gate come back as a tool result with `isError: true` and a message naming the
//! cause, so that the model can correct itself; only an unknown method is a protocol error.

use crate::dto::{comment_json, issue_json};
use crate::error::ApiError;
use crate::state::AppState;
use dispatch_core::customer::NewCustomerUser;
use dispatch_core::engine::{
    AgentStatusReport, CancelOutcome, ChannelIntake, ColumnRef, IssueChanges, IssueQuery,
    SpawnOptions,
};
use dispatch_core::gate::{Decision, GateReason};
use dispatch_core::ids::IssueRef;
use dispatch_core::issue::{Actor, Column, Issue, NewComment, NewIssue};
use dispatch_core::plan::PlanStatus;
use dispatch_core::run::{ActivityType, Blocker, BlockerCategory, NewActivity, WorkflowKind};
use dispatch_core::{Error, ErrorKind};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, OnceLock};

/// A tool's failure, shown to the model as the tool's result.
#[derive(Debug)]
pub struct ToolError {
    pub code: String,
    pub message: String,
    pub field: Option<String>,
    pub extra: Option<Value>,
}

impl ToolError {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        ToolError {
            code: "INVALID_INPUT".into(),
            message: message.into(),
            field: Some(field.into()),
            extra: None,
        }
    }
}

impl From<ApiError> for ToolError {
    fn from(e: ApiError) -> Self {
        ToolError {
            code: e.code,
            message: e.message,
            field: e.field,
            extra: e.extra,
        }
    }
}

impl From<Error> for ToolError {
    fn from(e: Error) -> Self {
        // Through the API mapping, so that internal details stay in the log.
        ApiError::from(e).into()
    }
}

type ToolResult<T = Value> = Result<T, ToolError>;

/// A tool's result as JSON text, serialised once: it is both the text content and, as it is,
/// the structured content of the answer (the direct path writes it into the response as is).
/// Also the `Value` it was serialised from, when the tool built one (rmcp's result takes a
/// `Value`; parsing the text again could change a float in its last digit).
#[derive(Debug)]
pub struct Json {
    text: String,
    value: Option<Value>,
}

impl Json {
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether it is an object (the structured content then is it; else `{"result": it}`).
    pub fn is_object(&self) -> bool {
        self.text.starts_with('{')
    }

    fn of(v: &impl Serialize) -> ToolResult<Json> {
        serde_json::to_string(v)
            .map(|text| Json { text, value: None })
            .map_err(|e| {
                tracing::error!(error = %e, "cannot serialise a tool result");
                ToolError {
                    code: "INTERNAL".into(),
                    message: "the result could not be serialised".into(),
                    field: None,
                    extra: None,
                }
            })
    }
}

/// What a tool function returns: a JSON value, or a result it serialised itself (a borrowed
/// structure, without a `Value` in between).
trait ToolOutput {
    fn into_json(self) -> ToolResult<Json>;
}

impl ToolOutput for Value {
    fn into_json(self) -> ToolResult<Json> {
        let mut json = Json::of(&self)?;
        json.value = Some(self);
        Ok(json)
    }
}

impl ToolOutput for Json {
    fn into_json(self) -> ToolResult<Json> {
        Ok(self)
    }
}

/// The actor of a tool call: the agent it names, else "MCP".
fn actor(agent: Option<&str>) -> Actor {
    Actor::agent(
        agent
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .unwrap_or("MCP")
            .to_string(),
    )
}

fn issue_ref(identifier: &str) -> Result<IssueRef, ToolError> {
    let s = identifier.trim();
    if s.is_empty() || s.len() > 64 {
        return Err(ToolError::invalid(
            "identifier",
            "identifier must be an issue identifier such as DISPATCH-12 (or its UUID)",
        ));
    }
    Ok(IssueRef::parse(s))
}

fn required<'a>(field: &str, v: &'a str) -> Result<&'a str, ToolError> {
    let t = v.trim();
    if t.is_empty() {
        return Err(ToolError::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    Ok(t)
}

fn cut(s: &str, n: usize) -> Cow<'_, str> {
    if s.chars().count() <= n {
        Cow::Borrowed(s)
    } else {
        let mut out: String = s.chars().take(n).collect();
        out.push('…');
        Cow::Owned(out)
    }
}

/// A text filter argument: trimmed, lower-cased, `None` when empty.
fn lowered(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_lowercase)
}

fn status_name<'a>(cols: &'a [Column], i: &Issue) -> &'a str {
    cols.iter()
        .find(|c| c.id == i.column_id)
        .map_or("", |c| c.name.as_str())
}

/// A short row for lists. Serialised as it is (no `Value` in between), its fields in the order
/// of a JSON object's keys, as every other result is.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row<'a> {
    agent_status: &'a dispatch_core::issue::AgentStatus,
    assignee: &'a Option<String>,
    description: Option<Cow<'a, str>>,
    identifier: &'a str,
    priority: &'a dispatch_core::issue::Priority,
    /// Search hits only.
    #[serde(skip_serializing_if = "Option::is_none")]
    similarity: Option<f64>,
    spawn_status: &'a Option<dispatch_core::issue::SpawnStatus>,
    status: &'a str,
    title: &'a str,
    updated_at: &'a dispatch_core::Timestamp,
}

/// A list of rows: `{"count": …, "issues": […]}`.
#[derive(Serialize)]
struct Rows<'a> {
    count: usize,
    issues: Vec<Row<'a>>,
}

impl<'a> Rows<'a> {
    fn new(issues: Vec<Row<'a>>) -> Self {
        Rows {
            count: issues.len(),
            issues,
        }
    }
}

fn row<'a>(i: &'a Issue, cols: &'a [Column]) -> Row<'a> {
    Row {
        agent_status: &i.agent_status,
        assignee: &i.assignee,
        description: i.description.as_deref().map(|d| cut(d, 200)),
        identifier: &i.identifier,
        priority: &i.priority,
        similarity: None,
        spawn_status: &i.spawn_status,
        status: status_name(cols, i),
        title: &i.title,
        updated_at: &i.updated_at,
    }
}

async fn full_issue(s: &AppState, i: &Issue) -> ToolResult {
    let cols = s.dispatch.columns_for_display().await?;
    // Most issues have no labels: then the workspace's labels are not read.
    let labels = if i.labels.is_empty() {
        Vec::new()
    } else {
        s.dispatch.labels().await?
    };
    let mut v = issue_json(i, &cols, &labels);
    let comments = s.dispatch.comments_of(i).await?;
    let start = comments.len().saturating_sub(20);
    v["comments"] = json!(
        comments[start..]
            .iter()
            .map(comment_json)
            .collect::<Vec<_>>()
    );
    v["plan"] = json!({
        "status": i.plan.status,
        "content": i.plan.content,
        "feedback": i.plan.feedback,
        "approvedAt": i.plan.approved_at,
        "approvedBy": i.plan.approved_by,
    });
    v["url"] = json!(format!("{}/issue/{}", s.config.app_url, i.identifier));
    Ok(v)
}

fn portal_url(s: &AppState, c: &dispatch_core::customer::Customer, identifier: &str) -> String {
    format!(
        "{}/portal/{}/issue/{}?token={}",
        s.config.app_url, c.slug, identifier, c.portal_token
    )
}

// ---------------------------------------------------------------- parameters

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
enum PriorityArg {
    P1,
    P2,
    P3,
    P4,
}

impl PriorityArg {
    fn priority(self) -> dispatch_core::issue::Priority {
        use dispatch_core::issue::Priority;
        match self {
            PriorityArg::P1 => Priority::P1,
            PriorityArg::P2 => Priority::P2,
            PriorityArg::P3 => Priority::P3,
            PriorityArg::P4 => Priority::P4,
        }
    }
}

/// An issue, by identifier.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IssueArg {
    /// The issue's identifier, e.g. "DISPATCH-12" (case does not matter).
    identifier: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SearchIssues {
    /// Words to look for in titles, descriptions and comments.
    query: String,
    /// How many results (default 10, at most 50).
    limit: Option<u32>,
    /// Only issues whose status contains this text, e.g. "progress".
    status: Option<String>,
    /// Only issues of this priority (P1 most urgent).
    priority: Option<PriorityArg>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListIssues {
    /// Only issues whose status contains this text, e.g. "backlog".
    status: Option<String>,
    /// Only issues of this priority.
    priority: Option<PriorityArg>,
    /// Only issues whose assignee contains this text.
    assignee: Option<String>,
    /// How many issues, newest first (default 20, at most 100).
    limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateIssue {
    /// A short summary.
    title: String,
    /// What is wrong or wanted, in markdown.
    description: Option<String>,
    /// P1 (urgent) to P4 (low); default P3.
    priority: Option<PriorityArg>,
    /// Who should work on it (an agent or person name).
    assignee: Option<String>,
    /// The Slack channel the request came from: its customer (found or created) owns the issue
    /// and watches it on their portal.
    slack_channel_id: Option<String>,
    /// The Slack channel's name, used to name a new customer.
    slack_channel_name: Option<String>,
    /// The reporter's Slack user id.
    slack_user_id: Option<String>,
    /// The reporter's display name.
    slack_display_name: Option<String>,
    /// The reporter's avatar URL.
    slack_avatar_url: Option<String>,
    /// The reporter's email.
    user_email: Option<String>,
    /// The Slack thread the request is in.
    slack_thread_ts: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateIssue {
    /// The issue's identifier.
    identifier: String,
    title: Option<String>,
    description: Option<String>,
    /// Move to the status with this name (or the one status containing it). Closing an issue
    /// that came from an error needs its fix verified.
    status: Option<String>,
    priority: Option<PriorityArg>,
    /// Assign to this name; "" unassigns.
    assignee: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AssignToMe {
    /// The issue's identifier.
    identifier: String,
    /// Your agent name; it is registered if new.
    agent_name: String,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum ActivityKind {
    Thought,
    Action,
    Observation,
    ToolCall,
    FileRead,
    FileWrite,
    Search,
    Complete,
    Error,
}

impl ActivityKind {
    fn activity_type(self) -> ActivityType {
        match self {
            ActivityKind::Thought => ActivityType::Thought,
            ActivityKind::Action => ActivityType::Action,
            ActivityKind::Observation => ActivityType::Observation,
            ActivityKind::ToolCall => ActivityType::ToolCall,
            ActivityKind::FileRead => ActivityType::FileRead,
            ActivityKind::FileWrite => ActivityType::FileWrite,
            ActivityKind::Search => ActivityType::Search,
            ActivityKind::Complete => ActivityType::Complete,
            ActivityKind::Error => ActivityType::Error,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PostActivity {
    /// The issue's identifier.
    identifier: String,
    /// What kind of step this is.
    #[serde(rename = "type")]
    kind: ActivityKind,
    /// What happened, in a sentence or a few lines.
    content: String,
    /// The tool used, for tool_call.
    tool: Option<String>,
    /// The file read or written.
    file: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum AgentStatusArg {
    Idle,
    Investigating,
    Implementing,
    Blocked,
    AwaitingReview,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateAgentStatus {
    /// The issue's identifier.
    identifier: String,
    status: AgentStatusArg,
    /// The phase you are in, e.g. "reading logs".
    phase: Option<String>,
    /// What you found or did so far.
    summary: Option<String>,
    /// The pull request you opened.
    pr_url: Option<String>,
    /// What went wrong.
    error: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RegisterWebhook {
    /// Where Dispatch POSTs ISSUE_ASSIGNED (signed with the secret returned once).
    webhook_url: String,
    /// Your agent name; it is registered if new.
    agent_name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PollEvents {
    /// Your agent name: you get the events queued for you, each once.
    agent_name: String,
    /// At most this many, oldest first (default 50, at most 100).
    limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AgentArg {
    /// Your agent name.
    agent_name: String,
    /// At most this many (default 20, at most 100).
    limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddComment {
    /// The issue's identifier.
    identifier: String,
    /// The comment, in markdown.
    content: String,
    /// Who writes it.
    author_name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddWatcher {
    /// The issue's identifier.
    identifier: String,
    /// The Slack channel whose customer should watch the issue (found or created).
    slack_channel_id: String,
    /// The channel's name, used to name a new customer.
    slack_channel_name: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PortalUrl {
    /// The issue's identifier.
    identifier: String,
    /// The Slack channel of the customer to link for.
    slack_channel_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PostPlan {
    /// The issue's identifier.
    identifier: String,
    /// The plan, in markdown: what you will change, how you will test it, the risks.
    content: String,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum BlockerArg {
    MissingEnv,
    UnclearRequirement,
    MissingDependency,
    TestFailure,
    DesignDecision,
    OutOfScope,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReportBlocker {
    /// The issue's identifier.
    identifier: String,
    /// Why you cannot go on, and what would unblock you.
    reason: String,
    /// What kind of blocker (default unclear_requirement).
    category: Option<BlockerArg>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DispatchArgs {
    /// The issue's identifier.
    identifier: String,
    /// Extra instructions for the agent.
    context: Option<String>,
    /// Skip thresholds, delays, concurrency limits and budgets (never the kill switch).
    #[serde(default)]
    force: bool,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

// ---------------------------------------------------------------- the table

struct Spec {
    name: &'static str,
    description: &'static str,
    schema: fn() -> JsonObject,
    read_only: bool,
}

fn schema<T: JsonSchema>() -> JsonObject {
    let mut v = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.remove("$schema");
        m.remove("title");
        m.entry("type").or_insert_with(|| json!("object"));
        m.entry("properties").or_insert_with(|| json!({}));
    }
    match v {
        Value::Object(m) => m,
        _ => JsonObject::new(),
    }
}

macro_rules! spec {
    ($name:literal, $ty:ty, $ro:expr, $desc:literal) => {
        Spec {
            name: $name,
            description: $desc,
            schema: schema::<$ty>,
            read_only: $ro,
        }
    };
}

const SPECS: &[Spec] = &[
    spec!(
        "search_issues",
        SearchIssues,
        true,
        "Search issues by words in their title, description and comments, best match first. Returns identifier, title, the first 200 characters of the description, priority, status, assignee and a relevance score."
    ),
    spec!(
        "list_issues",
        ListIssues,
        true,
        "List issues newest first, optionally only those whose status or assignee contains some text, or of one priority."
    ),
    spec!(
        "get_issue",
        IssueArg,
        true,
        "Read one issue in full: description, status, priority, assignee, labels, agent and spawn state, plan, cost, and its latest comments."
    ),
    spec!(
        "create_issue",
        CreateIssue,
        false,
        "Create an issue. From Slack, pass slackChannelId (and slackChannelName): the channel's customer owns the issue and watches it, and the result carries their portal URL."
    ),
    spec!(
        "update_issue",
        UpdateIssue,
        false,
        "Change an issue's title, description, status, priority or assignee. Moving an issue that came from a production error to a closed status is refused until its fix is verified; the refusal says why."
    ),
    spec!(
        "assign_to_me",
        AssignToMe,
        false,
        "Assign an issue to yourself (your agent name is registered if new)."
    ),
    spec!(
        "post_activity",
        PostActivity,
        false,
        "Record a step of your work on an issue's timeline (thought, action, observation, tool_call, file_read, file_write, search, complete, error); people watching the issue see it live."
    ),
    spec!(
        "update_agent_status",
        UpdateAgentStatus,
        false,
        "Say what you are doing on an issue: idle, investigating, implementing, blocked or awaiting_review, with the phase, a summary, your PR URL or an error."
    ),
    spec!(
        "register_webhook",
        RegisterWebhook,
        false,
        "Register (or replace) your webhook: Dispatch POSTs ISSUE_ASSIGNED there when an issue is assigned to you, signed with the secret returned once (X-Webhook-Signature: sha256=HMAC of the body)."
    ),
    spec!(
        "poll_events",
        PollEvents,
        false,
        "Take the events queued for you (POST /api/mcp/webhook), oldest first; each event is handed out once."
    ),
    spec!(
        "get_my_issues",
        AgentArg,
        true,
        "Your open issues (assigned to your agent name, not closed), most urgent first, then oldest."
    ),
    spec!(
        "add_comment",
        AddComment,
        false,
        "Comment on an issue (markdown)."
    ),
    spec!(
        "add_watcher",
        AddWatcher,
        false,
        "Let a Slack channel's customer watch an issue (the customer is created for the channel if new); watched issues show on the customer's portal."
    ),
    spec!(
        "list_watchers",
        IssueArg,
        true,
        "The customers watching an issue, with their Slack channels."
    ),
    spec!(
        "get_portal_url",
        PortalUrl,
        true,
        "The customer-portal link to an issue for the customer of a Slack channel (share it with the reporter)."
    ),
    spec!(
        "post_plan",
        PostPlan,
        false,
        "Submit your implementation plan for review. Then stop and wait: a person approves or rejects it, and get_approved_plan returns it once approved."
    ),
    spec!(
        "report_blocker",
        ReportBlocker,
        false,
        "Report that you are blocked and why; the issue shows it and people are told. Stop working on the issue after this."
    ),
    spec!(
        "get_approved_plan",
        IssueArg,
        true,
        "The issue's plan once a person approved it (an error while it is still waiting, was rejected, or there is none)."
    ),
    spec!(
        "dispatch_investigation",
        DispatchArgs,
        false,
        "Send an agent to investigate an issue and write a plan. Passes the spawn gates (kill switch, budgets, concurrency, cooldowns): a refusal is an error that says which gate; a deferral says when it will be tried again."
    ),
    spec!(
        "dispatch_implementation",
        DispatchArgs,
        false,
        "Send an agent to implement an issue's approved plan (refused without one). Passes the spawn gates."
    ),
    spec!(
        "dispatch_qa",
        DispatchArgs,
        false,
        "Send an agent to test an issue's implementation against its approved plan. Passes the spawn gates."
    ),
    spec!(
        "dispatch_research",
        DispatchArgs,
        false,
        "Send an agent to research a question in depth and report. Passes the spawn gates."
    ),
    spec!(
        "dispatch_triage",
        DispatchArgs,
        false,
        "Send an agent to triage an issue: reproduce, assess severity and suggest priority and labels. Passes the spawn gates."
    ),
    spec!(
        "get_fleet_status",
        NoArgs,
        true,
        "The agent fleet now: kill switch, active/queued/deferred runs, today's budgets and cost against their limits, concurrency, stale runs, and the issues with an agent."
    ),
    spec!(
        "cancel_run",
        IssueArg,
        false,
        "Cancel the agent run of an issue. A run still being dispatched is stopped as soon as its dispatch returns."
    ),
];

pub fn is_known(name: &str) -> bool {
    SPECS.iter().any(|s| s.name == name)
}

/// Whether the tool only reads (an unknown tool changes nothing either).
pub fn is_read_only(name: &str) -> bool {
    SPECS
        .iter()
        .find(|s| s.name == name)
        .is_none_or(|s| s.read_only)
}

/// Every tool, with its schema (built once).
pub fn list() -> Vec<Tool> {
    static TOOLS: OnceLock<Vec<Tool>> = OnceLock::new();
    TOOLS
        .get_or_init(|| {
            SPECS
                .iter()
                .map(|s| {
                    let mut ann = ToolAnnotations::new();
                    ann.read_only_hint = Some(s.read_only);
                    ann.destructive_hint = Some(false);
                    ann.open_world_hint = Some(false);
                    Tool::new(s.name, s.description, Arc::new((s.schema)())).with_annotations(ann)
                })
                .collect()
        })
        .clone()
}

// ---------------------------------------------------------------- calling

async fn with_args<P, T, F, Fut>(args: Value, f: F) -> ToolResult<Json>
where
    P: DeserializeOwned,
    T: ToolOutput,
    F: FnOnce(P) -> Fut,
    Fut: Future<Output = ToolResult<T>>,
{
    let p: P = serde_path_to_error::deserialize(args).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "arguments".to_string()
        } else {
            path
        };
        ToolError::invalid(
            &field,
            format!("invalid argument {field}: {}", e.into_inner()),
        )
    })?;
    f(p).await?.into_json()
}

/// Runs a tool: its result as JSON text, or why it failed.
pub async fn run(s: &AppState, name: &str, args: Option<JsonObject>) -> ToolResult<Json> {
    let a = Value::Object(args.unwrap_or_default());
    match name {
        "search_issues" => with_args(a, |p| search_issues(s, p)).await,
        "list_issues" => with_args(a, |p| list_issues(s, p)).await,
        "get_issue" => with_args(a, |p: IssueArg| get_issue(s, p)).await,
        "create_issue" => with_args(a, |p| create_issue(s, p)).await,
        "update_issue" => with_args(a, |p| update_issue(s, p)).await,
        "assign_to_me" => with_args(a, |p| assign_to_me(s, p)).await,
        "post_activity" => with_args(a, |p| post_activity(s, p)).await,
        "update_agent_status" => with_args(a, |p| update_agent_status(s, p)).await,
        "register_webhook" => with_args(a, |p| register_webhook(s, p)).await,
        "poll_events" => with_args(a, |p| poll_events(s, p)).await,
        "get_my_issues" => with_args(a, |p| get_my_issues(s, p)).await,
        "add_comment" => with_args(a, |p| add_comment(s, p)).await,
        "add_watcher" => with_args(a, |p| add_watcher(s, p)).await,
        "list_watchers" => with_args(a, |p: IssueArg| list_watchers(s, p)).await,
        "get_portal_url" => with_args(a, |p| get_portal_url(s, p)).await,
        "post_plan" => with_args(a, |p| post_plan(s, p)).await,
        "report_blocker" => with_args(a, |p| report_blocker(s, p)).await,
        "get_approved_plan" => with_args(a, |p: IssueArg| get_approved_plan(s, p)).await,
        "dispatch_investigation" => {
            with_args(a, |p| dispatch(s, p, WorkflowKind::PrdInvestigate)).await
        }
        "dispatch_implementation" => {
            with_args(a, |p| dispatch(s, p, WorkflowKind::PrdImplement)).await
        }
        "dispatch_qa" => with_args(a, |p| dispatch(s, p, WorkflowKind::Qa)).await,
        "dispatch_research" => with_args(a, |p| dispatch(s, p, WorkflowKind::DeepResearch)).await,
        "dispatch_triage" => with_args(a, |p| dispatch(s, p, WorkflowKind::AutoTriage)).await,
        "get_fleet_status" => with_args(a, |_: NoArgs| fleet_status(s)).await,
        "cancel_run" => with_args(a, |p: IssueArg| cancel_run(s, p)).await,
        other => Err(ToolError {
            code: "UNKNOWN_TOOL".into(),
            message: format!("there is no tool {other:?}; list the tools to see them"),
            field: None,
            extra: None,
        }),
    }
}

/// A tool's outcome as MCP's result; every failure is a result with `isError: true`.
pub fn call_result(r: ToolResult<Json>) -> CallToolResult {
    match r {
        Ok(Json { text, value }) => {
            // A tool that serialised its own result made it of rows (strings, numbers of two
            // decimals): parsed back exactly.
            let v = match value {
                Some(v) => v,
                None => serde_json::from_str(&text).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "cannot parse a tool result again");
                    Value::Null
                }),
            };
            let mut res = CallToolResult::success(vec![ContentBlock::text(text)]);
            res.structured_content = Some(match v {
                Value::Object(_) => v,
                other => json!({ "result": other }),
            });
            res
        }
        Err(e) => {
            let mut text = format!("{}: {}", e.code, e.message);
            if let Some(f) = &e.field {
                text.push_str(&format!(" (argument: {f})"));
            }
            let mut res = CallToolResult::error(vec![ContentBlock::text(text)]);
            let mut body = json!({ "error": e.message, "code": e.code });
            if let Some(f) = e.field {
                body["field"] = json!(f);
            }
            if let (Some(Value::Object(extra)), Value::Object(m)) = (e.extra, &mut body) {
                m.extend(extra);
            }
            res.structured_content = Some(body);
            res
        }
    }
}

// ---------------------------------------------------------------- the tools

async fn search_issues(s: &AppState, p: SearchIssues) -> ToolResult<Json> {
    let query = required("query", &p.query)?;
    let limit = p.limit.unwrap_or(10).clamp(1, 50) as usize;
    let cols = s.dispatch.columns_for_display().await?;
    let status = lowered(&p.status);
    // Filters apply to the ranked hits, so ask for more than the limit when filtering.
    let fetch = if status.is_some() || p.priority.is_some() {
        100
    } else {
        limit
    };
    let hits = s.dispatch.search_keywords(query, fetch).await?;
    let rows: Vec<Row> = hits
        .iter()
        .filter(|h| {
            status
                .as_deref()
                .is_none_or(|st| status_name(&cols, &h.issue).to_lowercase().contains(st))
        })
        .filter(|h| {
            p.priority
                .is_none_or(|pr| h.issue.priority == pr.priority())
        })
        .take(limit)
        .map(|h| Row {
            similarity: Some((h.score * 100.0).round() / 100.0),
            ..row(&h.issue, &cols)
        })
        .collect();
    Json::of(&Rows::new(rows))
}

async fn list_issues(s: &AppState, p: ListIssues) -> ToolResult<Json> {
    let limit = p.limit.unwrap_or(20).clamp(1, 100) as usize;
    let cols = s.dispatch.columns_for_display().await?;
    let out = s
        .dispatch
        .query_issues(&IssueQuery {
            status: p.status,
            priority: p.priority.map(PriorityArg::priority),
            assignee: p.assignee,
            limit,
        })
        .await?;
    Json::of(&Rows::new(out.iter().map(|i| row(i, &cols)).collect()))
}

async fn get_issue(s: &AppState, p: IssueArg) -> ToolResult {
    let issue = s.dispatch.get_issue(issue_ref(&p.identifier)?).await?;
    full_issue(s, &issue).await
}

async fn create_issue(s: &AppState, p: CreateIssue) -> ToolResult {
    let title = required("title", &p.title)?.to_string();
    let new = NewIssue {
        title,
        description: p.description.filter(|d| !d.trim().is_empty()),
        column_id: None,
        priority: p.priority.map(PriorityArg::priority).unwrap_or_default(),
        assignee: p.assignee.filter(|a| !a.trim().is_empty()),
        labels: Vec::new(),
        customer_id: None,
        reporter_id: None,
        customer_watches: false,
    };
    let who = p
        .slack_display_name
        .as_deref()
        .filter(|n| !n.trim().is_empty())
        .map(|n| format!("{} (via MCP)", n.trim()));
    let act = actor(who.as_deref());
    let channel = p
        .slack_channel_id
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let reporter = p
        .slack_user_id
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .map(|u| NewCustomerUser {
            slack_user_id: u.to_string(),
            display_name: p.slack_display_name.clone(),
            avatar_url: p.slack_avatar_url.clone(),
            email: p.user_email.clone(),
        });
    let (issue, customer, reporter) = match channel {
        Some(id) => {
            let intake = ChannelIntake {
                channel_id: id.to_string(),
                channel_name: p.slack_channel_name.clone(),
                thread_ts: p.slack_thread_ts.clone().filter(|t| !t.trim().is_empty()),
            };
            let made = s
                .dispatch
                .create_issue_from_channel(new, &intake, reporter.as_ref(), &act)
                .await?;
            (made.issue, Some(made.customer), made.reporter)
        }
        None if reporter.is_some() => {
            return Err(ToolError::invalid(
                "slackChannelId",
                "a reporter (slackUserId) belongs to a customer: give the Slack channel too",
            ));
        }
        None => (s.dispatch.create_issue(new, &act).await?, None, None),
    };
    // Who reported it, where: kept on the issue's timeline.
    let reported: serde_json::Map<String, Value> = [
        ("slackUserId", &p.slack_user_id),
        ("slackDisplayName", &p.slack_display_name),
        ("slackAvatarUrl", &p.slack_avatar_url),
        ("userEmail", &p.user_email),
        ("slackChannelId", &p.slack_channel_id),
        ("slackThreadTs", &p.slack_thread_ts),
    ]
    .into_iter()
    .filter_map(|(k, v)| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| (k.to_string(), json!(cut(v, 500))))
    })
    .collect();
    if !reported.is_empty() {
        let name = p
            .slack_display_name
            .as_deref()
            .or(p.user_email.as_deref())
            .or(p.slack_user_id.as_deref())
            .unwrap_or("someone");
        let mut a = NewActivity::new(
            ActivityType::Observation,
            format!(
                "Reported by {}{}",
                cut(name.trim(), 100),
                customer
                    .as_ref()
                    .map(|c| format!(" in {}", c.name))
                    .unwrap_or_default()
            ),
        );
        a.metadata = Value::Object(reported);
        s.dispatch.record_activity(issue.id, a).await?;
    }
    Ok(json!({
        "identifier": issue.identifier,
        "id": issue.id,
        "title": issue.title,
        "priority": issue.priority,
        "customerId": customer.as_ref().map(|c| c.id),
        "reporterId": reporter.as_ref().map(|r| r.id),
        "customerName": customer.as_ref().map(|c| c.name.clone()),
        "portalUrl": customer.as_ref().map(|c| portal_url(s, c, &issue.identifier)),
        "url": format!("{}/issue/{}", s.config.app_url, issue.identifier),
    }))
}

async fn update_issue(s: &AppState, p: UpdateIssue) -> ToolResult {
    let r = issue_ref(&p.identifier)?;
    let changes = IssueChanges {
        title: p.title,
        description: p.description.map(Some),
        column: p
            .status
            .filter(|st| !st.trim().is_empty())
            .map(ColumnRef::Typed),
        priority: p.priority.map(PriorityArg::priority),
        assignee: p.assignee.map(|a| Some(a).filter(|a| !a.trim().is_empty())),
        ..IssueChanges::default()
    };
    let issue = match s.dispatch.update_issue(r, changes, &actor(None)).await {
        Ok(i) => i,
        Err(e) if e.kind == ErrorKind::Forbidden => {
            return Err(ToolError {
                code: "FIX_VERIFICATION_REQUIRED".into(),
                message: format!("cannot close {}: {}", p.identifier.trim(), e.message),
                field: Some("status".into()),
                extra: None,
            });
        }
        Err(e) => return Err(e.into()),
    };
    full_issue(s, &issue).await
}

async fn assign_to_me(s: &AppState, p: AssignToMe) -> ToolResult {
    let name = required("agentName", &p.agent_name)?;
    let r = issue_ref(&p.identifier)?;
    let agent = s.dispatch.ensure_agent(name).await?;
    let issue = s
        .dispatch
        .update_issue(
            r,
            IssueChanges {
                assignee: Some(Some(agent.name.clone())),
                ..IssueChanges::default()
            },
            &actor(Some(&agent.name)),
        )
        .await?;
    Ok(json!({
        "identifier": issue.identifier,
        "assignee": issue.assignee,
        "message": format!("{} is assigned to {}", issue.identifier, agent.name),
    }))
}

async fn post_activity(s: &AppState, p: PostActivity) -> ToolResult {
    let content = required("content", &p.content)?;
    let issue = s.dispatch.get_issue(issue_ref(&p.identifier)?).await?;
    let mut a = NewActivity::new(p.kind.activity_type(), content.to_string());
    a.run_id = issue.current_run_id;
    let mut meta = serde_json::Map::new();
    if let Some(t) = p.tool.filter(|t| !t.trim().is_empty()) {
        meta.insert("tool".into(), json!(t));
    }
    if let Some(f) = p.file.filter(|f| !f.trim().is_empty()) {
        meta.insert("file".into(), json!(f));
    }
    if !meta.is_empty() {
        a.metadata = Value::Object(meta);
    }
    let act = s.dispatch.record_activity(issue.id, a).await?;
    Ok(json!({ "success": true, "activityId": act.id, "identifier": issue.identifier }))
}

async fn update_agent_status(s: &AppState, p: UpdateAgentStatus) -> ToolResult {
    use dispatch_core::issue::AgentStatus;
    let status = match p.status {
        AgentStatusArg::Idle => AgentStatus::Idle,
        AgentStatusArg::Investigating => AgentStatus::Investigating,
        AgentStatusArg::Implementing => AgentStatus::Implementing,
        AgentStatusArg::Blocked => AgentStatus::Blocked,
        AgentStatusArg::AwaitingReview => AgentStatus::AwaitingReview,
    };
    let clean = |v: Option<String>| v.filter(|x| !x.trim().is_empty());
    let report = AgentStatusReport {
        status,
        phase: clean(p.phase),
        summary: clean(p.summary),
        pr_url: clean(p.pr_url),
        error: clean(p.error),
    };
    let issue = s
        .dispatch
        .report_agent_status(issue_ref(&p.identifier)?, report, &actor(None))
        .await?;
    Ok(json!({
        "identifier": issue.identifier,
        "agentStatus": issue.agent_status,
        "blockedReason": issue.blocked_reason,
    }))
}

async fn register_webhook(s: &AppState, p: RegisterWebhook) -> ToolResult {
    let name = required("agentName", &p.agent_name)?;
    crate::routes::agents::check_receiver(s, &p.webhook_url)?;
    let agent = s.dispatch.ensure_agent(name).await?;
    let agent = s
        .dispatch
        .set_agent_webhook(&agent.name, &p.webhook_url)
        .await?;
    Ok(json!({
        "success": true,
        "agentName": agent.name,
        "webhookUrl": agent.webhook_url,
        "webhookSecret": agent.webhook_secret,
        "message": "Keep webhookSecret: it is shown only now. Deliveries carry X-Webhook-Signature: sha256=<hex HMAC-SHA256 of the body>.",
    }))
}

async fn poll_events(s: &AppState, p: PollEvents) -> ToolResult {
    let name = required("agentName", &p.agent_name)?;
    let limit = p.limit.unwrap_or(50) as usize;
    let events = s.dispatch.poll_agent_events(name, limit).await?;
    Ok(json!({ "count": events.len(), "events": events }))
}

async fn get_my_issues(s: &AppState, p: AgentArg) -> ToolResult<Json> {
    let name = required("agentName", &p.agent_name)?;
    let limit = p.limit.unwrap_or(20).clamp(1, 100) as usize;
    let issues = s.dispatch.agent_issues(name, limit).await?;
    let cols = s.dispatch.columns().await?;
    Json::of(&Rows::new(issues.iter().map(|i| row(i, &cols)).collect()))
}

async fn add_comment(s: &AppState, p: AddComment) -> ToolResult {
    let author = required("authorName", &p.author_name)?;
    let body = required("content", &p.content)?;
    let c = s
        .dispatch
        .add_comment(
            issue_ref(&p.identifier)?,
            NewComment {
                author: Some(author.to_string()),
                body: body.to_string(),
            },
            &actor(Some(author)),
        )
        .await?;
    Ok(json!({ "success": true, "comment": comment_json(&c) }))
}

async fn add_watcher(s: &AppState, p: AddWatcher) -> ToolResult {
    let issue = s.dispatch.get_issue(issue_ref(&p.identifier)?).await?;
    let customer = s
        .dispatch
        .customer_for_channel(&ChannelIntake {
            channel_id: p.slack_channel_id,
            channel_name: p.slack_channel_name,
            thread_ts: None,
        })
        .await?;
    let added = s.dispatch.add_watcher(issue.id, customer.id).await?;
    Ok(json!({
        "success": true,
        "added": added,
        "identifier": issue.identifier,
        "customerId": customer.id,
        "customerName": customer.name,
        "portalUrl": portal_url(s, &customer, &issue.identifier),
    }))
}

async fn list_watchers(s: &AppState, p: IssueArg) -> ToolResult {
    let issue = s.dispatch.get_issue(issue_ref(&p.identifier)?).await?;
    let mut rows = Vec::new();
    for id in s.dispatch.watchers(issue.id).await? {
        match s.dispatch.customer(id).await {
            Ok(c) => rows.push(json!({
                "customerId": c.id,
                "name": c.name,
                "slackChannelId": c.slack_channel_id,
            })),
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(json!({ "identifier": issue.identifier, "count": rows.len(), "watchers": rows }))
}

async fn get_portal_url(s: &AppState, p: PortalUrl) -> ToolResult {
    let issue = s.dispatch.get_issue(issue_ref(&p.identifier)?).await?;
    let customer = s
        .dispatch
        .customer_for_channel(&ChannelIntake {
            channel_id: p.slack_channel_id,
            channel_name: None,
            thread_ts: None,
        })
        .await?;
    // The portal shows a customer only the issues they watch.
    s.dispatch.add_watcher(issue.id, customer.id).await?;
    Ok(json!({
        "identifier": issue.identifier,
        "title": issue.title,
        "customerName": customer.name,
        "portalUrl": portal_url(s, &customer, &issue.identifier),
    }))
}

async fn post_plan(s: &AppState, p: PostPlan) -> ToolResult {
    let content = required("content", &p.content)?;
    let issue = s
        .dispatch
        .submit_plan(issue_ref(&p.identifier)?, content, &actor(None))
        .await?;
    Ok(json!({
        "success": true,
        "identifier": issue.identifier,
        "planStatus": issue.plan.status,
        "message": "Plan submitted for review. Stop here and wait: call get_approved_plan later; implement only once it is approved.",
    }))
}

async fn report_blocker(s: &AppState, p: ReportBlocker) -> ToolResult {
    let reason = required("reason", &p.reason)?;
    let category = match p.category.unwrap_or(BlockerArg::UnclearRequirement) {
        BlockerArg::MissingEnv => BlockerCategory::MissingEnv,
        BlockerArg::UnclearRequirement => BlockerCategory::UnclearRequirement,
        BlockerArg::MissingDependency => BlockerCategory::MissingDependency,
        BlockerArg::TestFailure => BlockerCategory::TestFailure,
        BlockerArg::DesignDecision => BlockerCategory::DesignDecision,
        BlockerArg::OutOfScope => BlockerCategory::OutOfScope,
    };
    let r = issue_ref(&p.identifier)?;
    let blocker = Blocker {
        category,
        reason: reason.to_string(),
    };
    let text = blocker.display();
    s.dispatch
        .report_blocker(r.clone(), blocker, &actor(None))
        .await?;
    let issue = s.dispatch.get_issue(r).await?;
    Ok(json!({
        "success": true,
        "identifier": issue.identifier,
        "blockedReason": text,
        "message": "Blocker reported; people have been told. Stop working on this issue now.",
    }))
}

async fn get_approved_plan(s: &AppState, p: IssueArg) -> ToolResult {
    let issue = s.dispatch.get_issue(issue_ref(&p.identifier)?).await?;
    match issue.plan.status {
        Some(PlanStatus::Approved) => Ok(json!({
            "identifier": issue.identifier,
            "title": issue.title,
            "planStatus": issue.plan.status,
            "planContent": issue.plan.content,
            "approvedAt": issue.plan.approved_at,
            "approvedBy": issue.plan.approved_by,
            "feedback": issue.plan.feedback,
        })),
        other => Err(ToolError {
            code: "PLAN_NOT_APPROVED".into(),
            message: match other {
                None => format!("{} has no plan yet", issue.identifier),
                Some(st) => format!(
                    "the plan of {} is {st}, not approved{}",
                    issue.identifier,
                    issue
                        .plan
                        .feedback
                        .as_deref()
                        .map(|f| format!("; feedback: {f}"))
                        .unwrap_or_default()
                ),
            },
            field: None,
            extra: Some(json!({ "planStatus": other })),
        }),
    }
}

async fn dispatch(s: &AppState, p: DispatchArgs, kind: WorkflowKind) -> ToolResult {
    let options = SpawnOptions {
        kind,
        force: p.force,
        additional_context: p.context.filter(|c| !c.trim().is_empty()),
    };
    let outcome = s
        .dispatch
        .spawn(issue_ref(&p.identifier)?, options, &actor(None))
        .await?;
    s.metrics.gate_decision(&outcome.decision);
    match outcome.decision {
        Decision::Allow => Ok(json!({
            "success": true,
            "identifier": outcome.identifier,
            "type": kind.spawn_type(),
            "runId": outcome.run_id,
            "message": format!("{} agent queued for {}", kind.spawn_type(), outcome.identifier),
        })),
        Decision::Defer { until, reason } => Ok(json!({
            "success": true,
            "deferred": true,
            "identifier": outcome.identifier,
            "type": kind.spawn_type(),
            "until": until,
            "code": reason.code(),
            "reason": reason.to_string(),
            "message": format!("deferred until {until}: {reason}; it is retried then, nothing else to do"),
        })),
        Decision::Deny { reason } => Err(ToolError {
            code: "GATE_DENIED".into(),
            message: format!(
                "the spawn gates refused a {} agent for {}: {reason}{}",
                kind.spawn_type(),
                outcome.identifier,
                match reason {
                    GateReason::KillSwitch =>
                        " (the kill switch is on: no agent starts until a person turns it off)",
                    _ => "",
                }
            ),
            field: None,
            extra: Some(json!({ "reason": reason.code(), "identifier": outcome.identifier })),
        }),
    }
}

async fn fleet_status(s: &AppState) -> ToolResult {
    let f = s.dispatch.fleet_status().await?;
    let active = s.dispatch.active_issues(50).await?;
    let mut v = crate::dto::fleet_json(&f);
    v["activeIssues"] = json!(
        active
            .iter()
            .map(|i| json!({
                "identifier": i.identifier,
                "title": i.title,
                "type": i.spawn_kind.map(|k| k.spawn_type()),
                "spawnStatus": i.spawn_status,
                "agentStatus": i.agent_status,
                "startedAt": i.spawn_started_at,
                "runId": i.current_run_id,
            }))
            .collect::<Vec<_>>()
    );
    Ok(v)
}

async fn cancel_run(s: &AppState, p: IssueArg) -> ToolResult {
    let r = issue_ref(&p.identifier)?;
    let outcome = s.dispatch.cancel(r.clone(), &actor(None)).await?;
    let issue = s.dispatch.get_issue(r).await?;
    let (confirmed, message) = match outcome {
        CancelOutcome::Cancelled {
            runner_confirmed: true,
        } => (true, "Agent cancelled"),
        CancelOutcome::Cancelled {
            runner_confirmed: false,
        } => (
            false,
            "Run cancelled; the runner did not confirm the agent stopped",
        ),
        CancelOutcome::Requested => (
            false,
            "Cancel requested: the run is being dispatched and is stopped as soon as that returns",
        ),
    };
    Ok(json!({
        "success": true,
        "identifier": issue.identifier,
        "spawnStatus": issue.spawn_status,
        "runnerConfirmed": confirmed,
        "cancelRequested": matches!(outcome, CancelOutcome::Requested),
        "message": message,
    }))
}
