//! The orchestrator's built-in tools over the engine (spec §8.4, "missions" are issues).
//!
//! The five dispatch tools never spawn: they check what can be checked now (the issue exists,
//! its plan is approved, it is not closed or running), preview the gate decision and the cost,
//! and store a [`Proposal`] for the person to confirm.

use super::proposal::{Proposal, ProposalStatus, ProposalTarget, estimate_cost};
use crate::engine::{ColumnRef, DedupRequest, Dispatch, IssueChanges, IssueQuery};
use crate::error::{Error, Result};
use crate::gate::{self, Decision, GateSnapshot, Trigger};
use crate::ids::{IssueRef, ProposalId};
use crate::issue::{Actor, Column, Issue, Priority};
use crate::plan;
use crate::ports::{ToolContext, ToolProvider, ToolSpec};
use crate::run::WorkflowKind;
use async_trait::async_trait;
use chrono::Duration;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// How many recent runs the cost estimate reads.
const COST_SAMPLE: usize = 20;
const DESCRIPTION_CHARS: usize = 500;
const PLAN_CHARS: usize = 2000;

/// The mission tools.
pub struct MissionTools {
    engine: Dispatch,
    proposal_ttl: Duration,
}

impl MissionTools {
    pub fn new(engine: Dispatch, proposal_ttl: Duration) -> Self {
        MissionTools {
            engine,
            proposal_ttl,
        }
    }
}

fn spec(name: &str, description: &str, properties: Value, required: &[&str]) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: description.into(),
        input_schema: json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        }),
    }
}

fn ident_prop() -> Value {
    json!({ "type": "string", "description": "The issue's identifier (e.g. ACME-12) or UUID." })
}

fn priority_prop() -> Value {
    json!({ "type": "string", "enum": ["P1", "P2", "P3", "P4"],
            "description": "P1 most urgent … P4 least." })
}

/// The tool specs, in the order the model sees them.
pub fn mission_tool_specs() -> Vec<ToolSpec> {
    vec![
        spec(
            "dispatch_investigation",
            "Propose creating an issue and sending an agent to investigate it and write a plan. \
             Returns a proposal (gate decision now, estimated cost); nothing starts until the \
             person confirms. Search first (search_missions) so work is not duplicated.",
            json!({
                "title": { "type": "string", "description": "Short title of the work." },
                "description": { "type": "string", "description": "What is wanted and why, with any detail the agent needs." },
                "priority": priority_prop(),
            }),
            &["title", "description"],
        ),
        spec(
            "dispatch_implementation",
            "Propose sending an agent to implement an issue's approved plan (refused when the \
             plan is not approved). Nothing starts until the person confirms.",
            json!({ "mission_identifier": ident_prop() }),
            &["mission_identifier"],
        ),
        spec(
            "dispatch_qa",
            "Propose sending an agent to test an issue's implementation against its approved \
             plan. Nothing starts until the person confirms.",
            json!({
                "mission_identifier": ident_prop(),
                "test_instructions": { "type": "string", "description": "What to test, beyond the plan." },
            }),
            &["mission_identifier"],
        ),
        spec(
            "dispatch_research",
            "Propose creating an issue for a question and sending an agent to research it in \
             depth and report. Nothing starts until the person confirms.",
            json!({
                "topic": { "type": "string", "description": "The question, as a title." },
                "description": { "type": "string", "description": "What to find out and what the answer is for." },
            }),
            &["topic", "description"],
        ),
        spec(
            "dispatch_triage",
            "Propose sending an agent to triage one open issue: close it, fix it if under 50 \
             lines, or escalate. Refused for closed issues or issues with an agent running. \
             Nothing starts until the person confirms.",
            json!({ "mission_identifier": ident_prop() }),
            &["mission_identifier"],
        ),
        spec(
            "deduplicate_missions",
            "Find clusters of duplicate open issues and describe what would be merged (a dry \
             run: it changes nothing; the person runs `/dedup execute` to cancel duplicates).",
            json!({
                "statuses": { "type": "array", "items": { "type": "string" },
                              "description": "Status names to compare (default Backlog and Investigating)." },
                "threshold": { "type": "number", "minimum": 0.05, "maximum": 1,
                               "description": "Similarity from which issues are duplicates (default 0.85 with embeddings, lexical default otherwise)." },
            }),
            &[],
        ),
        spec(
            "get_fleet_status",
            "The agent fleet now: kill switch, running and queued agents, today's budgets and \
             cost against their limits, and the issues with an agent.",
            json!({}),
            &[],
        ),
        spec(
            "get_mission",
            "One issue in full: description, status, priority, agent and plan status, the plan \
             (first 2,000 characters), spawn state, cost, outcome, labels, assignee.",
            json!({ "mission_identifier": ident_prop() }),
            &["mission_identifier"],
        ),
        spec(
            "search_missions",
            "Search issues by meaning and words; the best matches with a similarity score.",
            json!({
                "query": { "type": "string", "description": "What to look for." },
                "limit": { "type": "integer", "minimum": 1, "maximum": 50, "description": "At most this many (default 5)." },
            }),
            &["query"],
        ),
        spec(
            "list_missions",
            "List issues, most urgent first then newest, optionally by status (a name or part of \
             one) and priority.",
            json!({
                "status": { "type": "string", "description": "Status name or part of one (e.g. backlog)." },
                "priority": priority_prop(),
                "limit": { "type": "integer", "minimum": 1, "maximum": 500, "description": "At most this many (default 50)." },
            }),
            &[],
        ),
        spec(
            "update_mission",
            "Change an issue's status, priority, title or description. Closing an issue whose \
             fix is not verified is refused (the close gate), with the reason.",
            json!({
                "mission_identifier": ident_prop(),
                "status": { "type": "string", "description": "Status name or an unambiguous part of one." },
                "priority": priority_prop(),
                "title": { "type": "string" },
                "description": { "type": "string" },
            }),
            &["mission_identifier"],
        ),
    ]
}

fn args<T: DeserializeOwned>(input: Value) -> Result<T> {
    let input = if input.is_null() { json!({}) } else { input };
    serde_json::from_value(input).map_err(|e| Error::invalid("input", e.to_string()))
}

fn required<'a>(field: &str, v: &'a str) -> Result<&'a str> {
    let t = v.trim();
    if t.is_empty() {
        Err(Error::invalid(field, format!("{field} must not be empty")))
    } else {
        Ok(t)
    }
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(n).collect();
        out.push('…');
        out
    }
}

fn status_of(cols: &[Column], i: &Issue) -> String {
    cols.iter()
        .find(|c| c.id == i.column_id)
        .map(|c| c.name.clone())
        .unwrap_or_default()
}

fn row(cols: &[Column], i: &Issue) -> Value {
    json!({
        "identifier": i.identifier,
        "title": i.title,
        "status": status_of(cols, i),
        "priority": i.priority,
        "agent_status": i.agent_status,
        "spawn_status": i.spawn_status,
        "assignee": i.assignee,
    })
}

fn gate_json(d: &Decision) -> Value {
    match d {
        Decision::Allow => json!({ "allowed": true }),
        Decision::Defer { until, reason } => json!({
            "allowed": false, "deferred_until": until, "code": reason.code(), "reason": reason.explain(),
        }),
        Decision::Deny { reason } => json!({
            "allowed": false, "code": reason.code(), "reason": reason.explain(),
        }),
    }
}

#[derive(Deserialize)]
struct Investigation {
    title: String,
    description: String,
    #[serde(default)]
    priority: Option<Priority>,
}

#[derive(Deserialize)]
struct Mission {
    mission_identifier: String,
}

#[derive(Deserialize)]
struct Qa {
    mission_identifier: String,
    #[serde(default)]
    test_instructions: Option<String>,
}

#[derive(Deserialize)]
struct Research {
    topic: String,
    description: String,
}

#[derive(Deserialize)]
struct Dedup {
    #[serde(default)]
    statuses: Vec<String>,
    #[serde(default)]
    threshold: Option<f64>,
    #[serde(default)]
    execute: bool,
}

#[derive(Deserialize)]
struct Search {
    query: String,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Deserialize)]
struct List {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    priority: Option<Priority>,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Deserialize)]
struct Update {
    mission_identifier: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    priority: Option<Priority>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

impl MissionTools {
    async fn issue(&self, identifier: &str) -> Result<Issue> {
        let id = required("mission_identifier", identifier)?;
        self.engine.get_issue(IssueRef::parse(id)).await
    }

    /// The decision a spawn of `kind` would get now (the gates' own rule over today's counts).
    async fn preview(&self, kind: WorkflowKind) -> Result<Decision> {
        let fleet = self.engine.fleet_status().await?;
        let s = &fleet.stats;
        let snapshot = GateSnapshot {
            bucket: kind.bucket(),
            trigger: Trigger::Manual,
            force: false,
            active_error: s.active_error,
            active_prd: s.active_prd,
            spawned_today_error: s.spawned_today_error,
            spawned_today_prd: s.spawned_today_prd,
            cost_today_usd: s.cost_today_usd,
        };
        Ok(gate::decide(&fleet.policy, &snapshot, self.engine.now()))
    }

    async fn propose(
        &self,
        ctx: &ToolContext,
        kind: WorkflowKind,
        target: ProposalTarget,
        additional_context: Option<String>,
    ) -> Result<Value> {
        let gate = self.preview(kind).await?;
        let costs = self
            .engine
            .store()
            .recent_run_costs(kind, COST_SAMPLE)
            .await?;
        let now = self.engine.now();
        let p = Proposal {
            id: ProposalId::new(),
            session_id: ctx.session_id,
            workspace_id: ctx.workspace_id,
            kind,
            target,
            additional_context: additional_context.filter(|c| !c.trim().is_empty()),
            gate,
            estimated_cost_usd: estimate_cost(&costs),
            status: ProposalStatus::Pending,
            created_at: now,
            expires_at: now + self.proposal_ttl,
            decided_at: None,
            outcome: None,
        };
        let p = self.engine.store().create_proposal(&p).await?;
        Ok(json!({
            "proposal_id": p.id.to_string(),
            "status": "pending_confirmation",
            "proposal": p.describe(),
            "workflow": kind.spawn_type(),
            "gate_now": gate_json(&p.gate),
            "estimated_cost_usd": p.estimated_cost_usd,
            "expires_at": p.expires_at,
            "next": "Nothing has started. Ask the person to confirm with /confirm (or yes) or decline with /cancel.",
        }))
    }

    async fn existing_target(&self, identifier: &str) -> Result<(Issue, ProposalTarget)> {
        let issue = self.issue(identifier).await?;
        let target = ProposalTarget::Issue {
            issue_id: issue.id,
            identifier: issue.identifier.clone(),
            title: issue.title.clone(),
        };
        Ok((issue, target))
    }

    async fn mission(&self, identifier: &str) -> Result<Value> {
        let i = self.issue(identifier).await?;
        let cols = self.engine.columns_for_display().await?;
        let labels = if i.labels.is_empty() {
            Vec::new()
        } else {
            let all = self.engine.labels().await?;
            all.into_iter()
                .filter(|l| i.labels.contains(&l.id))
                .map(|l| l.name)
                .collect()
        };
        Ok(json!({
            "identifier": i.identifier,
            "title": i.title,
            "description": i.description,
            "status": status_of(&cols, &i),
            "priority": i.priority,
            "agent_status": i.agent_status,
            "plan_status": i.plan.status,
            "plan_content": i.plan.content.as_deref().map(|c| cut(c, PLAN_CHARS)),
            "spawn_status": i.spawn_status,
            "spawn_attempt_count": i.spawn_attempt_count,
            "cost_usd": i.cost_usd,
            "run_outcome": i.run_outcome,
            "outcome_summary": i.outcome_summary,
            "labels": labels,
            "assignee": i.assignee,
            "created_at": i.created_at,
        }))
    }

    async fn list(&self, a: List) -> Result<Value> {
        let limit = a.limit.unwrap_or(50).clamp(1, 500) as usize;
        let cols = self.engine.columns_for_display().await?;
        let mut out = self
            .engine
            .query_issues(&IssueQuery {
                status: a.status,
                priority: a.priority,
                assignee: None,
                limit: 50_000,
            })
            .await?;
        // Most urgent first, then newest (the list came newest first; the sort is stable).
        out.sort_by_key(|i| i.priority);
        let total = out.len();
        out.truncate(limit);
        Ok(json!({
            "count": out.len(),
            "total": total,
            "missions": out.iter().map(|i| row(&cols, i)).collect::<Vec<_>>(),
        }))
    }

    async fn fleet(&self) -> Result<Value> {
        let f = self.engine.fleet_status().await?;
        let active = self.engine.active_issues(20).await?;
        let p = &f.policy;
        let s = &f.stats;
        Ok(json!({
            "kill_switch": f.kill_switch(),
            "running": s.running,
            "queued": s.queued,
            "deferred": s.deferred,
            "stale_runs": f.stale_runs,
            "concurrency": {
                "error": format!("{}/{}", s.active_error, p.max_concurrent_error),
                "prd": format!("{}/{}", s.active_prd, p.max_concurrent_prd),
                "global": format!("{}/{}", s.active_error + s.active_prd, p.max_concurrent_global),
            },
            "budget_today": {
                "error": format!("{}/{}", s.spawned_today_error, p.daily_budget_error),
                "prd": format!("{}/{}", s.spawned_today_prd, p.daily_budget_prd),
            },
            "cost_today_usd": (s.cost_today_usd * 100.0).round() / 100.0,
            "cost_limit_usd": p.daily_cost_limit_usd,
            "outcomes_today": s.outcomes_today.iter().map(|(o, n)| json!({"outcome": o, "count": n})).collect::<Vec<_>>(),
            "agents": active.iter().map(|i| json!({
                "identifier": i.identifier,
                "title": i.title,
                "type": i.spawn_kind.map(|k| k.spawn_type()),
                "spawn_status": i.spawn_status,
                "agent_status": i.agent_status,
                "started_at": i.spawn_started_at,
            })).collect::<Vec<_>>(),
        }))
    }
}

#[async_trait]
impl ToolProvider for MissionTools {
    fn name(&self) -> &str {
        "missions"
    }

    fn tools(&self) -> Vec<ToolSpec> {
        mission_tool_specs()
    }

    async fn call(&self, ctx: &ToolContext, name: &str, input: Value) -> Result<Value> {
        match name {
            "dispatch_investigation" => {
                let a: Investigation = args(input)?;
                let target = ProposalTarget::NewIssue {
                    title: required("title", &a.title)?.to_owned(),
                    description: required("description", &a.description)?.to_owned(),
                    priority: a.priority.unwrap_or_default(),
                };
                self.propose(ctx, WorkflowKind::PrdInvestigate, target, None)
                    .await
            }
            "dispatch_research" => {
                let a: Research = args(input)?;
                let target = ProposalTarget::NewIssue {
                    title: required("topic", &a.topic)?.to_owned(),
                    description: required("description", &a.description)?.to_owned(),
                    priority: Priority::P3,
                };
                self.propose(ctx, WorkflowKind::DeepResearch, target, None)
                    .await
            }
            "dispatch_implementation" => {
                let a: Mission = args(input)?;
                let (issue, target) = self.existing_target(&a.mission_identifier).await?;
                plan::require_approved(&issue.plan)?;
                self.propose(ctx, WorkflowKind::PrdImplement, target, None)
                    .await
            }
            "dispatch_qa" => {
                let a: Qa = args(input)?;
                let (issue, target) = self.existing_target(&a.mission_identifier).await?;
                plan::require_approved(&issue.plan)?;
                self.propose(ctx, WorkflowKind::Qa, target, a.test_instructions)
                    .await
            }
            "dispatch_triage" => {
                let a: Mission = args(input)?;
                let (issue, target) = self.existing_target(&a.mission_identifier).await?;
                let cols = self.engine.columns_for_display().await?;
                if cols
                    .iter()
                    .any(|c| c.id == issue.column_id && c.is_closed())
                {
                    return Err(Error::conflict(format!(
                        "{} is {}: triage is for open issues",
                        issue.identifier,
                        status_of(&cols, &issue)
                    )));
                }
                if issue.current_run_id.is_some() {
                    return Err(Error::conflict(format!(
                        "{} already has an agent; wait for it or cancel it",
                        issue.identifier
                    )));
                }
                self.propose(ctx, WorkflowKind::AutoTriage, target, None)
                    .await
            }
            "deduplicate_missions" => {
                let a: Dedup = args(input)?;
                if a.execute {
                    return Err(Error::forbidden(
                        "only the person can execute a deduplication: they type /dedup execute",
                    ));
                }
                let report = self
                    .engine
                    .deduplicate(
                        DedupRequest {
                            columns: a.statuses,
                            threshold: a.threshold,
                            dry_run: true,
                            ..DedupRequest::default()
                        },
                        &Actor::user(&ctx.user),
                    )
                    .await?;
                Ok(serde_json::to_value(&report).unwrap_or_default())
            }
            "get_fleet_status" => self.fleet().await,
            "get_mission" => {
                let a: Mission = args(input)?;
                self.mission(&a.mission_identifier).await
            }
            "search_missions" => {
                let a: Search = args(input)?;
                let limit = a.limit.unwrap_or(5).clamp(1, 50) as usize;
                let cols = self.engine.columns_for_display().await?;
                let hits = self
                    .engine
                    .search(required("query", &a.query)?, limit)
                    .await?;
                Ok(json!({
                    "count": hits.len(),
                    "missions": hits.iter().map(|h| {
                        let mut r = row(&cols, &h.issue);
                        r["similarity"] = json!((h.score * 1000.0).round() / 1000.0);
                        r["description"] = json!(h.issue.description.as_deref().map(|d| cut(d, DESCRIPTION_CHARS)));
                        r
                    }).collect::<Vec<_>>(),
                }))
            }
            "list_missions" => self.list(args(input)?).await,
            "update_mission" => {
                let a: Update = args(input)?;
                let issue = self.issue(&a.mission_identifier).await?;
                let changes = IssueChanges {
                    title: a.title,
                    description: a.description.map(Some),
                    column: a
                        .status
                        .filter(|st| !st.trim().is_empty())
                        .map(ColumnRef::Typed),
                    priority: a.priority,
                    ..IssueChanges::default()
                };
                let updated = self
                    .engine
                    .update_issue(issue.id, changes, &Actor::user(&ctx.user))
                    .await?;
                let cols = self.engine.columns_for_display().await?;
                Ok(json!({ "updated": true, "mission": row(&cols, &updated) }))
            }
            other => Err(Error::not_found(format!("there is no tool {other:?}"))),
        }
    }
}
