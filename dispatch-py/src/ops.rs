//! Every operation the Python package offers, as ONE call into a `dispatch_core::Dispatch`
//! use-case. Arguments arrive as a JSON object and results leave as JSON (the core types' own
//! serde form), so the sync and the async facade share this code and hold no rule.

use dispatch_core::customer::{CustomerPatch, NewCustomer};
use dispatch_core::engine::{CancelOutcome, ColumnRef, IssueChanges, SpawnOptions};
use dispatch_core::event::ErrorEvent;
use dispatch_core::ids::{CustomerId, IssueRef, RunId};
use dispatch_core::issue::{Actor, IssueFilter, NewComment, NewIssue, Priority};
use dispatch_core::ports::{AlertRequest, AlertSource, RunReporter, RunResult};
use dispatch_core::run::WorkflowKind;
use dispatch_core::verify::MergedPr;
use dispatch_core::{Dispatch, Error, Result, Timestamp};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// What an operation runs against.
#[derive(Clone)]
pub struct Ctx {
    pub engine: Dispatch,
    pub sources: Arc<HashMap<String, Arc<dyn AlertSource>>>,
}

struct Args(Map<String, Value>);

impl Args {
    fn parse(text: &str) -> Result<Args> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => Ok(Args(m)),
            Ok(_) => Err(Error::invalid("args", "arguments must be a JSON object")),
            Err(e) => Err(Error::invalid(
                "args",
                format!("arguments are not JSON: {e}"),
            )),
        }
    }
    fn has(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }
    /// An optional argument (absent and `null` are both `None`).
    fn opt<T: DeserializeOwned>(&self, k: &str) -> Result<Option<T>> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| Error::invalid(k, format!("{k}: {e}"))),
        }
    }
    fn req<T: DeserializeOwned>(&self, k: &str) -> Result<T> {
        self.opt(k)?
            .ok_or_else(|| Error::invalid(k, format!("{k} is required")))
    }
    /// A present key means "change it", `null` included (`Some(None)` clears).
    fn change<T: DeserializeOwned>(&self, k: &str) -> Result<Option<Option<T>>> {
        if self.has(k) {
            Ok(Some(self.opt(k)?))
        } else {
            Ok(None)
        }
    }
    fn issue(&self) -> Result<IssueRef> {
        let s: String = self.req("issue")?;
        Ok(IssueRef::from(s.as_str()))
    }
    fn actor(&self) -> Result<Actor> {
        let name: Option<String> = self.opt("actor")?;
        Ok(Actor::user(name.unwrap_or_else(|| "python".into())))
    }
    fn id<T: std::str::FromStr>(&self, k: &str) -> Result<T> {
        let s: String = self.req(k)?;
        s.parse::<T>()
            .map_err(|_| Error::invalid(k, format!("{k}: {s:?} is not a valid id")))
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::internal(format!("serialising a result: {e}")))
}

fn parse_kind(s: &str) -> Result<WorkflowKind> {
    serde_json::from_value(Value::String(s.to_string()))
        .map_err(|_| Error::invalid("kind", format!("unknown workflow kind {s:?}")))
}

fn parse_priority(s: &str) -> Result<Priority> {
    s.parse()
}

fn column_ref(name: String) -> ColumnRef {
    match name.parse() {
        Ok(id) => ColumnRef::Id(id),
        Err(_) => ColumnRef::Name(name),
    }
}

/// Runs operation `op` with JSON arguments `args`; answers JSON text.
pub async fn exec(ctx: Ctx, op: String, args: String) -> Result<String> {
    if op == "ingest" {
        return ingest_fast(&ctx, &args).await;
    }
    let a = Args::parse(&args)?;
    let v = run(&ctx, &op, &a).await?;
    serde_json::to_string(&v).map_err(|e| Error::internal(format!("serialising a result: {e}")))
}

/// An error event as the Python package sends it: fields that are empty or `None` may be left
/// out (the hot path sends only what is set).
#[derive(serde::Deserialize)]
#[serde(default)]
struct EventIn {
    origin: String,
    source: String,
    feature: String,
    message: String,
    level: String,
    error_message: Option<String>,
    stack_trace: Option<String>,
    sample_lines: Vec<String>,
    event_count: u64,
    first_seen: Option<Timestamp>,
    last_seen: Option<Timestamp>,
    labels: std::collections::BTreeMap<String, String>,
    values: std::collections::BTreeMap<String, String>,
    external_id: Option<String>,
    link: Option<String>,
    title: Option<String>,
    description: Option<String>,
    priority: Option<Priority>,
}

impl Default for EventIn {
    fn default() -> Self {
        EventIn {
            origin: "python".into(),
            source: String::new(),
            feature: String::new(),
            message: String::new(),
            level: "error".into(),
            error_message: None,
            stack_trace: None,
            sample_lines: Vec::new(),
            event_count: 1,
            first_seen: None,
            last_seen: None,
            labels: Default::default(),
            values: Default::default(),
            external_id: None,
            link: None,
            title: None,
            description: None,
            priority: None,
        }
    }
}

impl From<EventIn> for ErrorEvent {
    fn from(e: EventIn) -> Self {
        ErrorEvent {
            origin: e.origin,
            source: e.source,
            feature: e.feature,
            message: e.message,
            level: e.level,
            error_message: e.error_message,
            stack_trace: e.stack_trace,
            sample_lines: e.sample_lines,
            event_count: e.event_count,
            first_seen: e.first_seen,
            last_seen: e.last_seen,
            labels: e.labels,
            values: e.values,
            external_id: e.external_id,
            link: e.link,
            title: e.title,
            description: e.description,
            priority: e.priority,
        }
    }
}

/// The hot path (a logging handler, a webhook relay): the events straight from the text and the
/// reports straight to text, without the `Value` tree the other operations go through.
async fn ingest_fast(ctx: &Ctx, args: &str) -> Result<String> {
    #[derive(serde::Deserialize)]
    struct IngestArgs {
        events: Vec<EventIn>,
    }
    let a: IngestArgs =
        serde_json::from_str(args).map_err(|e| Error::invalid("events", format!("events: {e}")))?;
    let mut out = Vec::with_capacity(a.events.len());
    for e in a.events {
        out.push(ctx.engine.ingest(e.into()).await?);
    }
    serde_json::to_string(&out).map_err(|e| Error::internal(format!("serialising a result: {e}")))
}

async fn run(ctx: &Ctx, op: &str, a: &Args) -> Result<Value> {
    let d = &ctx.engine;
    match op {
        "ingest_payload" => {
            let source: String = a.req("source")?;
            let body: String = a.req("body")?;
            let headers: Vec<(String, String)> = a.opt("headers")?.unwrap_or_default();
            let src = ctx.sources.get(&source).ok_or_else(|| {
                let mut names: Vec<&str> = ctx.sources.keys().map(|s| s.as_str()).collect();
                names.sort();
                Error::invalid(
                    "source",
                    format!(
                        "unknown alert source {source:?} (known: {})",
                        names.join(", ")
                    ),
                )
            })?;
            let batch = src
                .parse(AlertRequest {
                    headers: &headers,
                    body: body.as_bytes(),
                })
                .await?;
            let mut reports = Vec::with_capacity(batch.events.len());
            for e in batch.events {
                reports.push(d.ingest(e).await?);
            }
            Ok(json!({ "reports": to_json(&reports)?, "skipped": batch.skipped }))
        }
        "create_issue" => {
            let mut new = NewIssue::titled(a.req::<String>("title")?);
            new.description = a.opt("description")?;
            if let Some(p) = a.opt::<String>("priority")? {
                new.priority = parse_priority(&p)?;
            }
            new.assignee = a.opt("assignee")?;
            new.labels = a.opt("labels")?.unwrap_or_default();
            new.customer_id = a.opt("customer_id")?;
            if let Some(c) = a.opt::<String>("column")? {
                new.column_id = Some(d.resolve_column(&column_ref(c)).await?.id);
            }
            to_json(&d.create_issue(new, &a.actor()?).await?)
        }
        "get_issue" => to_json(&d.get_issue(a.issue()?).await?),
        "list_issues" => {
            let mut f = IssueFilter {
                customer_id: a.opt("customer_id")?,
                watched_by: a.opt("watched_by")?,
                spawn_active: a.opt("spawn_active")?,
                label_id: a.opt("label_id")?,
                before_number: a.opt("before_number")?,
                limit: a.opt("limit")?,
                assignee: a.opt("assignee")?,
                ..IssueFilter::default()
            };
            if let Some(c) = a.opt::<String>("column")? {
                f.column_id = Some(d.resolve_column(&column_ref(c)).await?.id);
            }
            to_json(&d.list_issues(&f).await?)
        }
        "update_issue" => {
            let changes = IssueChanges {
                title: a.opt("title")?,
                description: a.change("description")?,
                column: a.opt::<String>("column")?.map(column_ref),
                priority: a
                    .opt::<String>("priority")?
                    .map(|p| parse_priority(&p))
                    .transpose()?,
                assignee: a.change("assignee")?,
                labels: a.opt("labels")?,
                customer_id: a.change("customer_id")?,
                agent_status: a.opt("agent_status")?,
                blocked_reason: a.change("blocked_reason")?,
            };
            to_json(&d.update_issue(a.issue()?, changes, &a.actor()?).await?)
        }
        "delete_issue" => to_json(&d.delete_issue(a.issue()?).await?),
        "search" => {
            let q: String = a.req("query")?;
            let limit: usize = a.opt("limit")?.unwrap_or(20);
            to_json(&d.search(&q, limit).await?)
        }
        "add_comment" => {
            let c = NewComment {
                author: a.opt("author")?,
                body: a.req("body")?,
            };
            to_json(&d.add_comment(a.issue()?, c, &a.actor()?).await?)
        }
        "comments" => to_json(&d.comments(a.issue()?).await?),
        "spawn" => {
            let kind: String = a.opt("kind")?.unwrap_or_else(|| "error_fix".into());
            let mut o = SpawnOptions::new(parse_kind(&kind)?);
            o.force = a.opt("force")?.unwrap_or(false);
            o.additional_context = a.opt("additional_context")?;
            to_json(&d.spawn(a.issue()?, o, &a.actor()?).await?)
        }
        "cancel" => Ok(match d.cancel(a.issue()?, &a.actor()?).await? {
            CancelOutcome::Cancelled { runner_confirmed } => {
                json!({ "state": "cancelled", "runner_confirmed": runner_confirmed })
            }
            CancelOutcome::Requested => json!({ "state": "requested", "runner_confirmed": false }),
        }),
        "runs" => to_json(&d.runs(a.issue()?).await?),
        "finish_run" => {
            let run: RunId = a.id("run_id")?;
            let result: RunResult = a.opt("result")?.unwrap_or_default();
            let actor = Actor::agent(
                a.opt::<String>("actor")?
                    .unwrap_or_else(|| d.runner().name().to_string()),
            );
            to_json(&d.finish_run(run, result, &actor).await?)
        }
        "append_terminal" => {
            let run: RunId = a.id("run_id")?;
            let text: String = a.req("text")?;
            RunReporter::terminal(d, run, &text).await?;
            Ok(Value::Null)
        }
        "transcript" => Ok(json!(d.transcript(a.id("run_id")?).await?)),
        "submit_plan" => {
            let content: String = a.req("content")?;
            let actor = Actor::agent(a.opt::<String>("actor")?.unwrap_or_else(|| "python".into()));
            to_json(&d.submit_plan(a.issue()?, &content, &actor).await?)
        }
        "approve_plan" => {
            let actor = a.actor()?;
            let by: String = a.opt("approved_by")?.unwrap_or_else(|| actor.name.clone());
            let start: bool = a.opt("start_implementation")?.unwrap_or(false);
            to_json(&d.approve_plan(a.issue()?, &by, start, &actor).await?)
        }
        "reject_plan" => {
            let feedback: String = a.req("feedback")?;
            to_json(&d.reject_plan(a.issue()?, &feedback, &a.actor()?).await?)
        }
        "pr_merged" => {
            let pr: MergedPr = a.req("pr")?;
            let actor =
                Actor::webhook(a.opt::<String>("actor")?.unwrap_or_else(|| "python".into()));
            to_json(&d.pr_merged(&pr, &actor).await?)
        }
        "record_fix" => {
            let pr: MergedPr = a.req("pr")?;
            let issues: Vec<String> = a.req("issues")?;
            let refs: Vec<IssueRef> = issues.iter().map(|s| IssueRef::from(s.as_str())).collect();
            to_json(&d.record_fix(&pr, &refs, &a.actor()?).await?)
        }
        "deploy" => {
            let sha: Option<String> = a.opt("sha")?;
            let at: Timestamp = match a.opt("deployed_at")? {
                Some(t) => t,
                None => d.clock().now(),
            };
            Ok(json!(d.deploy_signal(sha.as_deref(), at).await?))
        }
        "fix_status" => to_json(&d.fix_status(a.issue()?).await?),
        "create_customer" => {
            let new = NewCustomer {
                name: a.req("name")?,
                slug: a.opt("slug")?,
                slack_channel_id: a.opt("slack_channel_id")?,
                brand_color: a.opt("brand_color")?,
                logo_url: a.opt("logo_url")?,
            };
            to_json(&d.create_customer(new).await?)
        }
        "customers" => to_json(&d.customers().await?),
        "customer" => to_json(&d.customer(a.id::<CustomerId>("id")?).await?),
        "update_customer" => {
            let patch = CustomerPatch {
                name: a.opt("name")?,
                slug: a.opt("slug")?,
                slack_channel_id: a.change("slack_channel_id")?,
                brand_color: a.change("brand_color")?,
                logo_url: a.change("logo_url")?,
            };
            to_json(&d.update_customer(a.id("id")?, patch).await?)
        }
        "delete_customer" => {
            d.delete_customer(a.id("id")?).await?;
            Ok(Value::Null)
        }
        "regenerate_portal_token" => to_json(&d.regenerate_portal_token(a.id("id")?).await?),
        "portal_customer" => {
            let slug: String = a.req("slug")?;
            let token: String = a.req("token")?;
            to_json(&d.portal_customer(&slug, &token).await?)
        }
        "add_watcher" => {
            let c: CustomerId = a.id("customer_id")?;
            Ok(json!(d.add_watcher(a.issue()?, c).await?))
        }
        "fleet_status" => fleet_status(d).await,
        "kill_switch" => to_json(&d.kill_switch().await?),
        "set_kill_switch" => {
            let on: bool = a.req("enabled")?;
            to_json(&d.set_kill_switch(on, &a.actor()?).await?)
        }
        "dispatcher_step" => Ok(json!(d.dispatcher_step().await?)),
        "sweeper_step" => to_json(&d.sweeper_step().await?),
        other => Err(Error::invalid("op", format!("unknown operation {other:?}"))),
    }
}

/// The fleet as `GET /api/spawns/stats` shows it, in snake case.
async fn fleet_status(d: &Dispatch) -> Result<Value> {
    let now = d.clock().now();
    let st = d.store().spawn_stats(now).await?;
    let cfg = d.config();
    let p = &cfg.policy;
    let stale = d
        .store()
        .stale_runs(now - cfg.stale_after, 1000)
        .await?
        .len();
    let outcomes: Map<String, Value> = st
        .outcomes_today
        .iter()
        .map(|(k, n)| (k.clone(), json!(n)))
        .collect();
    Ok(json!({
        "kill_switch": d.kill_switch().await?.enabled,
        "queued": st.queued,
        "running": st.running,
        "deferred": st.deferred,
        "stale_runs": stale,
        "active_error_fix": st.active_error,
        "active_prd": st.active_prd,
        "max_concurrent_error_fix": p.max_concurrent_error,
        "max_concurrent_prd": p.max_concurrent_prd,
        "max_concurrent_global": p.max_concurrent_global,
        "spawned_today_error_fix": st.spawned_today_error,
        "spawned_today_prd": st.spawned_today_prd,
        "daily_budget_error_fix": p.daily_budget_error,
        "daily_budget_prd": p.daily_budget_prd,
        "cost_today_usd": st.cost_today_usd,
        "daily_cost_limit_usd": p.daily_cost_limit_usd,
        "outcomes_today": outcomes,
    }))
}
