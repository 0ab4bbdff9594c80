//! One turn of the orchestrator: the person's message, the model's rounds of text and tool
//! calls, and a history that is valid whatever happens (a stream error, a cancel, a crash).
//!
//! Text is relayed as it arrives — one [`TurnEvent::TextDelta`] per upstream delta, not per
//! block as the original did. Tool calls run one at a time and their results are fed back;
//! after `max_rounds` model calls the turn stops with a message. Dispatch tools never spawn:
//! they store a [`Proposal`] that the person confirms (`/confirm`, "yes", or the confirm
//! endpoint), and only then does the engine spawn, through the same gates as every spawn.

use super::commands::{self, Command};
use super::missions::MissionTools;
use super::proposal::{
    Proposal, ProposalDecision, ProposalOutcome, ProposalStatus, ProposalTarget,
};
use super::session::Session;
use crate::engine::{Dispatch, SpawnOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::gate::Decision;
use crate::ids::{ProposalId, SessionId};
use crate::issue::{Actor, NewIssue};
use crate::ports::{
    ContentBlock, DeltaAssembler, Llm, LlmDelta, LlmMessage, LlmRequest, Role, ToolContext,
    ToolProvider, ToolSpec, Usage,
};
use chrono::Duration;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// `ORCHESTRATOR_*` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OrchestratorConfig {
    /// `ORCHESTRATOR_MODEL`; `None` uses the model the `Llm` was configured with.
    pub model: Option<String>,
    /// `ORCHESTRATOR_MAX_TOKENS` (4096).
    pub max_tokens: u32,
    /// `ORCHESTRATOR_MAX_TOOL_ROUNDS` (10): model calls per turn.
    pub max_rounds: u32,
    /// How long a proposal waits for the person (15 minutes).
    pub proposal_ttl: Duration,
    /// How long a turn holds its session before another may take it over (10 minutes; renewed
    /// at every round).
    pub turn_lease: Duration,
    /// The product's name in the system prompt.
    pub app_name: String,
    /// How much of a long conversation is sent to the model, in characters of content (the
    /// newest whole exchanges; the stored history keeps everything). 400,000 ≈ 100k tokens.
    pub history_chars: usize,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        OrchestratorConfig {
            model: None,
            max_tokens: 4096,
            max_rounds: 10,
            proposal_ttl: Duration::minutes(15),
            turn_lease: Duration::minutes(10),
            app_name: "Dispatch".into(),
            history_chars: 400_000,
        }
    }
}

/// What a turn reports, in order. Serialized as `{"type": …, "data": …}` (the original's
/// protocol, §8.3, plus `proposal`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum TurnEvent {
    SessionId(SessionId),
    /// A piece of the answer's text, as the model produced it.
    TextDelta(String),
    /// The model started a tool call (its input follows with the result).
    ToolStart {
        id: String,
        name: String,
    },
    ToolResult {
        tool_use_id: String,
        name: String,
        input: Value,
        /// The result as JSON text (`{"error": …}` when `is_error`).
        result: String,
        is_error: bool,
    },
    /// A proposal made, or decided (its status and outcome tell which).
    Proposal(Box<Proposal>),
    /// Tokens of one model call.
    Usage(TurnUsage),
    Error {
        code: String,
        message: String,
    },
    /// The turn is over and its history saved.
    Done(SessionId),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnUsage {
    pub model: String,
    #[serde(flatten)]
    pub usage: Usage,
}

/// A person's message.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnRequest {
    /// Continue this session; `None` starts one.
    pub session_id: Option<SessionId>,
    pub message: String,
    /// Who is typing (history records it as the actor of what they confirm).
    pub user: String,
}

/// The longest message a person may send.
pub const MESSAGE_MAX_CHARS: usize = 20_000;

/// The orchestrator: the engine, a model and tool sets. Cheap to clone.
#[derive(Clone)]
pub struct Orchestrator {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Dispatch,
    llm: Option<Arc<dyn Llm>>,
    providers: Vec<Arc<dyn ToolProvider>>,
    config: OrchestratorConfig,
}

impl Orchestrator {
    /// The mission tools come first; `extra` tool sets (Loki, SQL, …) follow. A tool name
    /// offered twice is refused, naming both providers.
    pub fn new(
        engine: Dispatch,
        llm: Option<Arc<dyn Llm>>,
        extra: Vec<Arc<dyn ToolProvider>>,
        config: OrchestratorConfig,
    ) -> Result<Self> {
        let mut providers: Vec<Arc<dyn ToolProvider>> = vec![Arc::new(MissionTools::new(
            engine.clone(),
            config.proposal_ttl,
        ))];
        providers.extend(extra);
        let mut seen: Vec<(String, String)> = Vec::new();
        for p in &providers {
            for t in p.tools() {
                if let Some((_, other)) = seen.iter().find(|(n, _)| *n == t.name) {
                    return Err(Error::invalid(
                        "tools",
                        format!(
                            "tool {} is offered by both {other} and {}",
                            t.name,
                            p.name()
                        ),
                    ));
                }
                seen.push((t.name.clone(), p.name().to_owned()));
            }
        }
        Ok(Orchestrator {
            inner: Arc::new(Inner {
                engine,
                llm,
                providers,
                config,
            }),
        })
    }

    pub fn engine(&self) -> &Dispatch {
        &self.inner.engine
    }

    pub fn config(&self) -> &OrchestratorConfig {
        &self.inner.config
    }

    /// Whether a model is configured (without one, only slash commands answer).
    pub fn has_model(&self) -> bool {
        self.inner.llm.is_some()
    }

    /// The names of the tool sets ("missions", "loki", "sql").
    pub fn tool_sets(&self) -> Vec<String> {
        self.inner
            .providers
            .iter()
            .map(|p| p.name().to_owned())
            .collect()
    }

    /// Every tool the model is offered.
    pub fn tools(&self) -> Vec<ToolSpec> {
        self.inner
            .providers
            .iter()
            .flat_map(|p| p.tools())
            .collect()
    }

    fn provider_of(&self, tool: &str) -> Option<&Arc<dyn ToolProvider>> {
        self.inner
            .providers
            .iter()
            .find(|p| p.tools().iter().any(|t| t.name == tool))
    }

    /// Runs one tool; a failure becomes `{"error": message}` (and `true`).
    pub async fn call_tool(&self, ctx: &ToolContext, name: &str, input: Value) -> (Value, bool) {
        let Some(p) = self.provider_of(name) else {
            return (
                json!({ "error": format!("there is no tool {name:?}") }),
                true,
            );
        };
        match p.call(ctx, name, input).await {
            Ok(v) => (v, false),
            Err(e) => (json!({ "error": e.message }), true),
        }
    }

    /// A session and its proposals (statuses as of now).
    pub async fn session(&self, id: SessionId) -> Result<(Session, Vec<Proposal>)> {
        let store = self.inner.engine.store();
        let session = store.get_session(id).await?;
        if session.workspace_id != self.inner.engine.workspace().id {
            return Err(Error::not_found(format!("no session {id}")));
        }
        let now = self.inner.engine.now();
        let proposals = store
            .list_proposals(id)
            .await?
            .into_iter()
            .map(|mut p| {
                p.status = p.status_at(now);
                p
            })
            .collect();
        Ok((session, proposals))
    }

    /// The workspace's recent sessions, most recently used first.
    pub async fn sessions(&self, limit: usize) -> Result<Vec<Session>> {
        self.inner
            .engine
            .store()
            .list_sessions(self.inner.engine.workspace().id, limit)
            .await
    }

    /// Claims the session for a new turn (`Conflict` when a turn is running on it). Errors
    /// here come before any event, so a server can answer them as a status.
    pub async fn start(&self, req: TurnRequest) -> Result<Turn> {
        let message = req.message.trim().to_owned();
        if message.is_empty() {
            return Err(Error::invalid("message", "the message is empty"));
        }
        if message.chars().count() > MESSAGE_MAX_CHARS {
            return Err(Error::invalid(
                "message",
                format!("a message is limited to {MESSAGE_MAX_CHARS} characters"),
            ));
        }
        let engine = &self.inner.engine;
        let store = engine.store();
        let now = engine.now();
        let session = match req.session_id {
            Some(id) => {
                let s = store.get_session(id).await?;
                if s.workspace_id != engine.workspace().id {
                    return Err(Error::not_found(format!("no session {id}")));
                }
                s
            }
            None => {
                store
                    .create_session(&Session::new(engine.workspace().id, now))
                    .await?
            }
        };
        let turn_id = Uuid::now_v7();
        let session = store
            .begin_turn(session.id, turn_id, now, now + self.inner.config.turn_lease)
            .await?;
        Ok(Turn {
            orch: self.clone(),
            session,
            turn_id,
            message,
            user: req.user,
        })
    }

    /// Confirms or cancels a proposal. Confirming creates the issue it names (if new) and
    /// spawns through the gates; the outcome says what happened, a refusal included.
    pub async fn decide(
        &self,
        id: ProposalId,
        decision: ProposalDecision,
        user: &str,
    ) -> Result<Proposal> {
        let engine = &self.inner.engine;
        let store = engine.store();
        let p = store.get_proposal(id).await?;
        if p.workspace_id != engine.workspace().id {
            return Err(Error::not_found(format!("no proposal {id}")));
        }
        let decided = store.decide_proposal(id, decision, engine.now()).await?;
        if decision == ProposalDecision::Cancel {
            return Ok(decided);
        }
        let actor = Actor::user(user);
        let outcome = match self.carry_out(&decided, &actor).await {
            Ok(o) => o,
            Err(e) => ProposalOutcome {
                identifier: match &decided.target {
                    ProposalTarget::Issue { identifier, .. } => identifier.clone(),
                    ProposalTarget::NewIssue { .. } => String::new(),
                },
                run_id: None,
                decision: None,
                message: format!("not dispatched: {}", e.message),
            },
        };
        store.set_proposal_outcome(id, &outcome).await
    }

    async fn carry_out(&self, p: &Proposal, actor: &Actor) -> Result<ProposalOutcome> {
        let engine = &self.inner.engine;
        let issue_ref: crate::ids::IssueRef = match &p.target {
            ProposalTarget::Issue { issue_id, .. } => (*issue_id).into(),
            ProposalTarget::NewIssue {
                title,
                description,
                priority,
            } => {
                let issue = engine
                    .create_issue(
                        NewIssue {
                            title: title.clone(),
                            description: Some(description.clone()).filter(|d| !d.is_empty()),
                            column_id: None,
                            priority: *priority,
                            assignee: None,
                            labels: Vec::new(),
                            customer_id: None,
                            reporter_id: None,
                            customer_watches: false,
                        },
                        actor,
                    )
                    .await?;
                issue.id.into()
            }
        };
        let outcome = engine
            .spawn(
                issue_ref,
                SpawnOptions {
                    kind: p.kind,
                    force: false,
                    additional_context: p.additional_context.clone(),
                },
                actor,
            )
            .await?;
        let message = match &outcome.decision {
            Decision::Allow => format!(
                "dispatched {} agent on {}",
                p.kind.spawn_type(),
                outcome.identifier
            ),
            Decision::Defer { until, reason } => format!(
                "{} waits: {}; next try at {}",
                outcome.identifier,
                reason.explain(),
                until.format("%H:%M UTC")
            ),
            Decision::Deny { reason } => {
                format!(
                    "not dispatched on {}: {}",
                    outcome.identifier,
                    reason.explain()
                )
            }
        };
        Ok(ProposalOutcome {
            identifier: outcome.identifier,
            run_id: outcome.run_id,
            decision: Some(outcome.decision),
            message,
        })
    }
}

/// A claimed turn, ready to run.
pub struct Turn {
    orch: Orchestrator,
    session: Session,
    turn_id: Uuid,
    message: String,
    user: String,
}

/// Why the model loop stopped early.
enum Interrupt {
    Cancelled,
    Failed(Error),
}

/// Sends events; a receiver that went away is a cancel.
struct Sink {
    tx: mpsc::Sender<TurnEvent>,
    cancel: CancellationToken,
}

impl Sink {
    async fn send(&self, e: TurnEvent) {
        if self.tx.send(e).await.is_err() {
            self.cancel.cancel();
        }
    }
    fn cancelled(&self) -> bool {
        self.cancel.is_cancelled() || self.tx.is_closed()
    }
    /// Resolves when the turn is cancelled or its receiver (the client) went away.
    async fn gone(&self) {
        tokio::select! {
            _ = self.cancel.cancelled() => {}
            _ = self.tx.closed() => {}
        }
    }
}

/// The affirmations that confirm the session's pending proposals without a model round.
fn is_affirmation(text: &str) -> bool {
    let t: String = text
        .trim()
        .trim_end_matches(['.', '!'])
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    matches!(
        t.as_str(),
        "y" | "yes"
            | "yes please"
            | "yep"
            | "yeah"
            | "ok"
            | "okay"
            | "sure"
            | "confirm"
            | "confirmed"
            | "go"
            | "go ahead"
            | "do it"
            | "ship it"
            | "lgtm"
    )
}

impl Turn {
    pub fn session_id(&self) -> SessionId {
        self.session.id
    }

    /// Runs the turn to its end, sending events to `events`. A cancel (the token, or the
    /// receiver going away) stops the model at once; the history is saved valid either way,
    /// and [`TurnEvent::Done`] is the last event.
    pub async fn run(self, events: mpsc::Sender<TurnEvent>, cancel: CancellationToken) {
        let sink = Sink { tx: events, cancel };
        let id = self.session.id;
        sink.send(TurnEvent::SessionId(id)).await;
        let mut history = self.session.messages.clone();
        let mut usage = Usage::default();
        let ctx = ToolContext {
            workspace_id: self.session.workspace_id,
            session_id: id,
            user: self.user.clone(),
            now: self.orch.inner.engine.now(),
        };
        let pending = self.pending_proposals().await;
        if let Some(cmd) = commands::parse(&self.message) {
            let reply = self.command(&sink, &ctx, cmd).await;
            push_exchange(&mut history, &self.message, &reply);
        } else if is_affirmation(&self.message) && !pending.is_empty() {
            let reply = self
                .decide_all(&sink, &pending, ProposalDecision::Confirm)
                .await;
            push_exchange(&mut history, &self.message, &reply);
        } else {
            history.push(LlmMessage {
                role: Role::User,
                content: vec![ContentBlock::Text {
                    text: self.message.clone(),
                }],
            });
            self.model_rounds(&sink, &ctx, &mut history, &mut usage)
                .await;
        }
        close_history(&mut history);
        let store = self.orch.inner.engine.store();
        let now = self.orch.inner.engine.now();
        match store.end_turn(id, self.turn_id, history, &usage, now).await {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(session = %id, error = %e, "orchestrator turn not saved");
                sink.send(TurnEvent::Error {
                    code: error_code(&e),
                    message: format!("this turn was not saved: {}", e.message),
                })
                .await;
            }
        }
        sink.send(TurnEvent::Done(id)).await;
    }

    async fn pending_proposals(&self) -> Vec<Proposal> {
        let now = self.orch.inner.engine.now();
        match self
            .orch
            .inner
            .engine
            .store()
            .list_proposals(self.session.id)
            .await
        {
            Ok(ps) => ps
                .into_iter()
                .filter(|p| p.status_at(now) == ProposalStatus::Pending)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Confirms or cancels `proposals`, reporting each; the reply text for the history.
    async fn decide_all(
        &self,
        sink: &Sink,
        proposals: &[Proposal],
        decision: ProposalDecision,
    ) -> String {
        if proposals.is_empty() {
            let text = "There is no pending proposal.".to_owned();
            sink.send(TurnEvent::TextDelta(text.clone())).await;
            return text;
        }
        let mut lines = Vec::new();
        for p in proposals {
            let line = match self.orch.decide(p.id, decision, &self.user).await {
                Ok(done) => {
                    let line = match (&done.status, &done.outcome) {
                        (ProposalStatus::Cancelled, _) => {
                            format!("Cancelled {}.", done.describe())
                        }
                        (_, Some(o)) => {
                            format!("{}: {}.", capitalised(&done.describe()), o.message)
                        }
                        _ => format!("Confirmed {}.", done.describe()),
                    };
                    sink.send(TurnEvent::Proposal(Box::new(done))).await;
                    line
                }
                Err(e) => format!("{}: {}", capitalised(&p.describe()), e.message),
            };
            lines.push(line);
        }
        let text = lines.join("\n");
        sink.send(TurnEvent::TextDelta(text.clone())).await;
        text
    }

    async fn command(&self, sink: &Sink, ctx: &ToolContext, cmd: Command) -> String {
        let is_confirm = matches!(cmd, Command::Confirm(_));
        match cmd {
            Command::Help => {
                let text = commands::help_text(&self.orch.tools());
                sink.send(TurnEvent::TextDelta(text.clone())).await;
                text
            }
            Command::Unknown(name) => {
                let text = format!("Unknown command /{name}. Type /help for the list.");
                sink.send(TurnEvent::TextDelta(text.clone())).await;
                text
            }
            Command::Usage(usage) => {
                let text = format!("Usage: {usage}");
                sink.send(TurnEvent::TextDelta(text.clone())).await;
                text
            }
            Command::DedupExecute(columns) => {
                let text = match self
                    .orch
                    .inner
                    .engine
                    .deduplicate(
                        crate::engine::DedupRequest {
                            columns,
                            dry_run: false,
                            ..crate::engine::DedupRequest::default()
                        },
                        &Actor::user(&self.user),
                    )
                    .await
                {
                    Ok(r) => {
                        let mut t = format!(
                            "Cancelled {} duplicate(s) in {} cluster(s){}.",
                            r.closed.len(),
                            r.clusters.len(),
                            if r.closed.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", r.closed.join(", "))
                            }
                        );
                        for e in &r.errors {
                            t.push_str(&format!("\n- {e}"));
                        }
                        t
                    }
                    Err(e) => format!("**error**: {}", e.message),
                };
                sink.send(TurnEvent::TextDelta(text.clone())).await;
                text
            }
            Command::Confirm(which) | Command::Cancel(which) => {
                let decision = if is_confirm {
                    ProposalDecision::Confirm
                } else {
                    ProposalDecision::Cancel
                };
                let pending = self.pending_proposals().await;
                let chosen: Vec<Proposal> = match which {
                    None => pending,
                    Some(prefix) => pending
                        .into_iter()
                        .filter(|p| p.id.to_string().starts_with(&prefix))
                        .collect(),
                };
                self.decide_all(sink, &chosen, decision).await
            }
            Command::Tool {
                name,
                input,
                confirm,
            } => {
                let tool_use_id = format!("cmd_{}", Uuid::now_v7().simple());
                sink.send(TurnEvent::ToolStart {
                    id: tool_use_id.clone(),
                    name: name.to_owned(),
                })
                .await;
                let (result, is_error) = if self.orch.provider_of(name).is_none() {
                    (json!({ "error": commands::missing_tool_hint(name) }), true)
                } else {
                    self.orch.call_tool(ctx, name, input.clone()).await
                };
                sink.send(TurnEvent::ToolResult {
                    tool_use_id,
                    name: name.to_owned(),
                    input,
                    result: result.to_string(),
                    is_error,
                })
                .await;
                // A command the person typed that proposes a dispatch is its own confirmation.
                if confirm
                    && !is_error
                    && let Some(p) = proposal_in(&result)
                    && let Ok(p) = self.orch.inner.engine.store().get_proposal(p).await
                {
                    return self.decide_all(sink, &[p], ProposalDecision::Confirm).await;
                }
                let text = commands::render(name, &result, is_error);
                sink.send(TurnEvent::TextDelta(text.clone())).await;
                text
            }
        }
    }

    async fn model_rounds(
        &self,
        sink: &Sink,
        ctx: &ToolContext,
        history: &mut Vec<LlmMessage>,
        total: &mut Usage,
    ) {
        let inner = &self.orch.inner;
        let Some(llm) = inner.llm.clone() else {
            let text = "No model is configured (set ANTHROPIC_API_KEY); slash commands still \
                        work — type /help."
                .to_owned();
            sink.send(TurnEvent::TextDelta(text.clone())).await;
            history.push(assistant_text(text));
            return;
        };
        let tools = self.orch.tools();
        let system = system_prompt(
            &inner.config.app_name,
            &inner.engine.workspace().issue_prefix,
        );
        for round in 0..inner.config.max_rounds {
            if round > 0 {
                // Renew the lease: a long turn keeps its session.
                let now = inner.engine.now();
                if let Err(e) = inner
                    .engine
                    .store()
                    .begin_turn(
                        self.session.id,
                        self.turn_id,
                        now,
                        now + inner.config.turn_lease,
                    )
                    .await
                {
                    self.fail(sink, history, e).await;
                    return;
                }
            }
            let request = LlmRequest {
                model: inner.config.model.clone(),
                system: Some(system.clone()),
                messages: super::session::window(history, inner.config.history_chars).to_vec(),
                tools: tools.clone(),
                max_tokens: inner.config.max_tokens,
                temperature: None,
            };
            let (answer, interrupt) = self.stream_round(sink, llm.as_ref(), request).await;
            total.input_tokens += answer.usage.input_tokens;
            total.output_tokens += answer.usage.output_tokens;
            total.cache_creation_input_tokens += answer.usage.cache_creation_input_tokens;
            total.cache_read_input_tokens += answer.usage.cache_read_input_tokens;
            let calls: Vec<(String, String, Value)> = answer
                .content
                .iter()
                .filter_map(|b| match b {
                    ContentBlock::ToolUse { id, name, input } => {
                        Some((id.clone(), name.clone(), input.clone()))
                    }
                    _ => None,
                })
                .collect();
            if let Some(i) = interrupt {
                // Keep what was said; a tool call that was cut off is dropped.
                let text: Vec<ContentBlock> = answer
                    .content
                    .into_iter()
                    .filter(|b| matches!(b, ContentBlock::Text { .. }))
                    .collect();
                if !text.is_empty() {
                    history.push(LlmMessage {
                        role: Role::Assistant,
                        content: text,
                    });
                }
                match i {
                    Interrupt::Cancelled => {
                        history_note(history, "[cancelled by the person]");
                    }
                    Interrupt::Failed(e) => self.fail(sink, history, e).await,
                }
                return;
            }
            if !answer.content.is_empty() {
                history.push(LlmMessage {
                    role: Role::Assistant,
                    content: answer.content,
                });
            }
            if answer.stop_reason.as_deref() != Some("tool_use") || calls.is_empty() {
                if answer.stop_reason.as_deref() == Some("max_tokens") {
                    let note = format!(
                        "\n\n[the answer reached ORCHESTRATOR_MAX_TOKENS ({}) and was cut]",
                        inner.config.max_tokens
                    );
                    sink.send(TurnEvent::TextDelta(note.clone())).await;
                    history_note(history, note.trim());
                }
                return;
            }
            let mut results = Vec::new();
            for (id, name, input) in calls {
                let (result, is_error) = if sink.cancelled() {
                    (json!({ "error": "cancelled by the person" }), true)
                } else {
                    self.orch.call_tool(ctx, &name, input.clone()).await
                };
                if let Some(pid) = proposal_in(&result)
                    && let Ok(p) = inner.engine.store().get_proposal(pid).await
                {
                    sink.send(TurnEvent::Proposal(Box::new(p))).await;
                }
                let text = result.to_string();
                sink.send(TurnEvent::ToolResult {
                    tool_use_id: id.clone(),
                    name,
                    input,
                    result: text.clone(),
                    is_error,
                })
                .await;
                results.push(ContentBlock::ToolResult {
                    tool_use_id: id,
                    content: text,
                    is_error,
                });
            }
            history.push(LlmMessage {
                role: Role::User,
                content: results,
            });
            if sink.cancelled() {
                history_note(history, "[cancelled by the person]");
                return;
            }
        }
        let text = format!(
            "I stopped after {} model calls (ORCHESTRATOR_MAX_TOOL_ROUNDS) without finishing. \
             Say \"continue\" to go on.",
            inner.config.max_rounds
        );
        sink.send(TurnEvent::TextDelta(text.clone())).await;
        history_note(history, &text);
    }

    /// One model call, relaying text and tool starts as they arrive.
    async fn stream_round(
        &self,
        sink: &Sink,
        llm: &dyn Llm,
        request: LlmRequest,
    ) -> (crate::ports::LlmResponse, Option<Interrupt>) {
        let mut asm = DeltaAssembler::new();
        let started = tokio::select! {
            biased;
            _ = sink.gone() => None,
            r = llm.stream(request) => Some(r),
        };
        let mut stream = match started {
            None => return (asm.finish(), Some(Interrupt::Cancelled)),
            Some(Err(e)) => return (asm.finish(), Some(Interrupt::Failed(e))),
            Some(Ok(s)) => s,
        };
        let model = self.orch.inner.config.model.clone().unwrap_or_default();
        let mut model_seen = model;
        let interrupt = loop {
            let next = tokio::select! {
                biased;
                _ = sink.gone() => break Some(Interrupt::Cancelled),
                n = stream.next() => n,
            };
            let delta = match next {
                None => {
                    if asm.is_complete() {
                        break None;
                    }
                    break Some(Interrupt::Failed(Error::upstream(
                        "llm",
                        0,
                        "the model's stream ended before the answer was complete",
                    )));
                }
                Some(Err(e)) => break Some(Interrupt::Failed(e)),
                Some(Ok(d)) => d,
            };
            match &delta {
                LlmDelta::Start { model, .. } if !model.is_empty() => {
                    model_seen = model.clone();
                }
                LlmDelta::Text { text, .. } if !text.is_empty() => {
                    sink.send(TurnEvent::TextDelta(text.clone())).await;
                }
                LlmDelta::ToolUseStart { id, name, .. } => {
                    sink.send(TurnEvent::ToolStart {
                        id: id.clone(),
                        name: name.clone(),
                    })
                    .await;
                }
                _ => {}
            }
            if let Err(e) = asm.push(&delta) {
                break Some(Interrupt::Failed(e));
            }
            if matches!(delta, LlmDelta::Stop { .. }) {
                break None;
            }
        };
        sink.send(TurnEvent::Usage(TurnUsage {
            model: model_seen,
            usage: asm.usage().clone(),
        }))
        .await;
        (asm.finish(), interrupt)
    }

    async fn fail(&self, sink: &Sink, history: &mut Vec<LlmMessage>, e: Error) {
        let message = e.message.clone();
        sink.send(TurnEvent::Error {
            code: error_code(&e),
            message: message.clone(),
        })
        .await;
        history_note(
            history,
            &format!("[the turn ended with an error: {message}]"),
        );
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn error_code(e: &Error) -> String {
    match &e.kind {
        ErrorKind::Upstream { status: 529, .. } => "overloaded".into(),
        ErrorKind::Upstream { status: 429, .. } | ErrorKind::RateLimited => "rate_limited".into(),
        ErrorKind::Upstream { .. } => "upstream".into(),
        ErrorKind::Conflict => "conflict".into(),
        ErrorKind::Unavailable => "unavailable".into(),
        _ => e.kind.code().to_owned(),
    }
}

/// The proposal a dispatch tool's result names (`proposal_id`).
fn proposal_in(result: &Value) -> Option<ProposalId> {
    result
        .get("proposal_id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

fn assistant_text(text: impl Into<String>) -> LlmMessage {
    LlmMessage {
        role: Role::Assistant,
        content: vec![ContentBlock::Text { text: text.into() }],
    }
}

/// A message answered without the model: the person's text and the reply.
fn push_exchange(history: &mut Vec<LlmMessage>, said: &str, reply: &str) {
    history.push(LlmMessage {
        role: Role::User,
        content: vec![ContentBlock::Text { text: said.into() }],
    });
    history.push(assistant_text(if reply.is_empty() {
        "(done)"
    } else {
        reply
    }));
}

/// Adds `note` as the assistant's last words (merged into a trailing assistant text message).
fn history_note(history: &mut Vec<LlmMessage>, note: &str) {
    match history.last_mut() {
        Some(m) if m.role == Role::Assistant && !has_tool_use(m) => {
            m.content.push(ContentBlock::Text { text: note.into() })
        }
        _ => {
            close_history(history);
            if history.last().is_some_and(|m| m.role == Role::Assistant) {
                if let Some(m) = history.last_mut() {
                    m.content.push(ContentBlock::Text { text: note.into() });
                }
            } else {
                history.push(assistant_text(note));
            }
        }
    }
}

fn has_tool_use(m: &LlmMessage) -> bool {
    m.content
        .iter()
        .any(|b| matches!(b, ContentBlock::ToolUse { .. }))
}

/// Makes a cut-off conversation valid: unanswered tool calls get "not run" results, and a
/// conversation that ends with the person gets an answer that says nothing was said.
pub fn close_history(history: &mut Vec<LlmMessage>) {
    if let Some(last) = history.last()
        && last.role == Role::Assistant
        && has_tool_use(last)
    {
        let results = last
            .content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::ToolUse { id, .. } => Some(ContentBlock::ToolResult {
                    tool_use_id: id.clone(),
                    content: json!({ "error": "not run: the turn ended first" }).to_string(),
                    is_error: true,
                }),
                _ => None,
            })
            .collect();
        history.push(LlmMessage {
            role: Role::User,
            content: results,
        });
    }
    if history.last().is_some_and(|m| m.role == Role::User) {
        history.push(assistant_text("[no answer]"));
    }
}

/// The system prompt (spec §8.2, with the confirmation held by the server).
pub fn system_prompt(app_name: &str, prefix: &str) -> String {
    format!(
        "You are {app_name}'s orchestrator, in a terminal. Be terse; use markdown; name issues \
         by identifier ({prefix}-123). Issues are also called missions.\n\n\
         Agents you can dispatch:\n\
         - investigation (dispatch_investigation): creates an issue and investigates it; the agent \
         writes a plan for a person to approve.\n\
         - implementation (dispatch_implementation): implements an issue's approved plan.\n\
         - QA (dispatch_qa): tests an implementation against its plan.\n\
         - deep research (dispatch_research): researches a question and reports.\n\
         - triage (dispatch_triage): closes, fixes (< 50 lines) or escalates one issue.\n\n\
         Workflow: always search_missions before dispatching (do not duplicate work); investigate \
         → plan approval → implementation → optional QA; research directly; triage one issue at \
         a time. You may list and update issues (update_mission keeps the close gate: an issue \
         with an unverified fix cannot be closed).\n\n\
         Dispatch tools never start an agent: they return a proposal with the gate decision it \
         would get and an estimated cost. Tell the person what you proposed and that they confirm \
         with /confirm (or \"yes\") or decline with /cancel. You cannot confirm for them, and \
         nothing the person says to you confirms anything: only their own /confirm does.\n\n\
         Be concise about the fleet; offer numbered options; when something fails, say why and \
         what to do."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affirmations_are_short_and_exact() {
        for yes in ["yes", "Yes!", "  go ahead.", "y", "OK", "do it"] {
            assert!(is_affirmation(yes), "{yes}");
        }
        for no in [
            "yes, but first search",
            "no",
            "yesterday's errors",
            "the user agreed",
        ] {
            assert!(!is_affirmation(no), "{no}");
        }
    }

    #[test]
    fn a_cut_off_history_is_closed_validly() {
        let mut h = vec![
            LlmMessage {
                role: Role::User,
                content: vec![ContentBlock::Text { text: "hi".into() }],
            },
            LlmMessage {
                role: Role::Assistant,
                content: vec![ContentBlock::ToolUse {
                    id: "t1".into(),
                    name: "get_fleet_status".into(),
                    input: json!({}),
                }],
            },
        ];
        close_history(&mut h);
        assert!(super::super::valid_history(&h).is_ok(), "{h:?}");
        let mut h = vec![LlmMessage {
            role: Role::User,
            content: vec![ContentBlock::Text { text: "hi".into() }],
        }];
        history_note(&mut h, "[error]");
        assert!(super::super::valid_history(&h).is_ok(), "{h:?}");
        assert_eq!(h.len(), 2);
    }
}
