//! The orchestrator over a scripted streaming model: search → propose → confirm → dispatched
//! through the gates; nothing dispatches without the person; refusals explained; max rounds;
//! a valid history after a mid-stream error and after a cancel; one turn per session.

use chrono::Duration;
use dispatch_core::config::EngineConfig;
use dispatch_core::gate::SpawnPolicy;
use dispatch_core::ids::SessionId;
use dispatch_core::issue::{Actor, NewIssue};
use dispatch_core::memory::MemoryStore;
use dispatch_core::orchestrator::{
    Orchestrator, OrchestratorConfig, ProposalStatus, TurnEvent, TurnRequest, valid_history,
};
use dispatch_core::ports::{ContentBlock, Role, RunStore};
use dispatch_core::run::WorkflowKind;
use dispatch_core::testkit::{FakeRunner, Hold, ManualClock, ScriptedLlm, Step};
use dispatch_core::{Dispatch, Error, ErrorKind};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct World {
    d: Dispatch,
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    llm: Arc<ScriptedLlm>,
    orch: Orchestrator,
}

async fn world_with(config: OrchestratorConfig) -> World {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::at_default());
    let d = Dispatch::builder(store.clone(), FakeRunner::new())
        .clock(clock.clone())
        .config(EngineConfig {
            policy: SpawnPolicy::permissive(),
            ..EngineConfig::default()
        })
        .build()
        .await
        .unwrap();
    let llm = ScriptedLlm::new();
    let orch = Orchestrator::new(d.clone(), Some(llm.clone()), Vec::new(), config).unwrap();
    World {
        d,
        store,
        clock,
        llm,
        orch,
    }
}

async fn world() -> World {
    world_with(OrchestratorConfig::default()).await
}

/// Runs one turn to its end and returns its events.
async fn say(w: &World, session: Option<SessionId>, message: &str) -> Vec<TurnEvent> {
    let turn = w
        .orch
        .start(TurnRequest {
            session_id: session,
            message: message.into(),
            user: "ann".into(),
        })
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::channel(1024);
    turn.run(tx, CancellationToken::new()).await;
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

fn session_of(events: &[TurnEvent]) -> SessionId {
    match events.first() {
        Some(TurnEvent::SessionId(id)) => *id,
        other => panic!("the first event names the session, got {other:?}"),
    }
}

fn text_of(events: &[TurnEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            TurnEvent::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

fn tool_results(events: &[TurnEvent]) -> Vec<(String, Value, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            TurnEvent::ToolResult {
                name,
                result,
                is_error,
                ..
            } => Some((
                name.clone(),
                serde_json::from_str(result).unwrap(),
                *is_error,
            )),
            _ => None,
        })
        .collect()
}

async fn run_count(w: &World) -> usize {
    let mut n = 0;
    for i in w.d.list_issues(&Default::default()).await.unwrap() {
        n += w.store.list_runs(i.id).await.unwrap().len();
    }
    n
}

#[tokio::test]
async fn search_then_propose_then_confirm_dispatches_one_run_through_the_gates() {
    let w = world().await;
    w.d.create_issue(
        NewIssue::titled("Invoices render slowly"),
        &Actor::user("ann"),
    )
    .await
    .unwrap();
    w.llm.push(ScriptedLlm::tool_call(
        "toolu_1",
        "search_missions",
        json!({"query": "checkout timeout"}),
    ));
    w.llm.push(ScriptedLlm::tool_call(
        "toolu_2",
        "dispatch_investigation",
        json!({"title": "Checkout times out", "description": "p99 > 30 s", "priority": "P2"}),
    ));
    w.llm.push(ScriptedLlm::text(
        "I proposed an investigation. Confirm with /confirm.",
    ));
    let events = say(&w, None, "checkout keeps timing out, look into it").await;
    let session = session_of(&events);

    // Text arrives per delta (word), not per block.
    let deltas = events
        .iter()
        .filter(|e| matches!(e, TurnEvent::TextDelta(_)))
        .count();
    assert!(deltas >= 10, "token-level deltas, got {deltas}");
    assert!(text_of(&events).ends_with("Confirm with /confirm."));
    let results = tool_results(&events);
    assert_eq!(results[0].0, "search_missions");
    assert_eq!(results[1].0, "dispatch_investigation");
    assert_eq!(results[1].1["gate_now"]["allowed"], json!(true));
    let proposal = events
        .iter()
        .find_map(|e| match e {
            TurnEvent::Proposal(p) => Some(p.clone()),
            _ => None,
        })
        .expect("a proposal event");
    assert_eq!(proposal.status, ProposalStatus::Pending);
    assert_eq!(proposal.kind, WorkflowKind::PrdInvestigate);
    assert!(matches!(events.last(), Some(TurnEvent::Done(id)) if *id == session));

    // Nothing exists until the person confirms: no run, no new issue.
    assert_eq!(run_count(&w).await, 0);
    assert_eq!(w.d.list_issues(&Default::default()).await.unwrap().len(), 1);
    // The model saw its tool results, in order, in a valid conversation.
    let reqs = w.llm.requests();
    assert_eq!(reqs.len(), 3);
    let last = reqs[2].messages.last().unwrap();
    assert_eq!(last.role, Role::User);
    assert!(matches!(
        &last.content[0],
        ContentBlock::ToolResult { tool_use_id, is_error: false, .. } if tool_use_id == "toolu_2"
    ));

    // "yes" confirms without a model round.
    let events = say(&w, Some(session), "yes").await;
    assert_eq!(
        w.llm.requests().len(),
        3,
        "no model call for a confirmation"
    );
    let decided = events
        .iter()
        .find_map(|e| match e {
            TurnEvent::Proposal(p) => Some(p.clone()),
            _ => None,
        })
        .expect("the decided proposal");
    assert_eq!(decided.status, ProposalStatus::Confirmed);
    let outcome = decided.outcome.expect("an outcome");
    assert!(outcome.run_id.is_some(), "{outcome:?}");
    assert!(
        text_of(&events).contains("dispatched"),
        "{}",
        text_of(&events)
    );
    assert_eq!(run_count(&w).await, 1);
    let issue =
        w.d.get_issue(dispatch_core::ids::IssueRef::parse(&outcome.identifier))
            .await
            .unwrap();
    assert_eq!(issue.title, "Checkout times out");
    assert_eq!(issue.priority, dispatch_core::issue::Priority::P2);

    // Confirming again does nothing more.
    let again = w
        .orch
        .decide(
            decided.id,
            dispatch_core::orchestrator::ProposalDecision::Confirm,
            "ann",
        )
        .await
        .unwrap_err();
    assert_eq!(again.kind, ErrorKind::Conflict);
    assert_eq!(run_count(&w).await, 1);

    // The session is restored from the store with the whole, valid conversation.
    let (s, proposals) = w.orch.session(session).await.unwrap();
    valid_history(&s.messages).unwrap();
    assert_eq!(s.messages.len(), 8, "{:#?}", s.messages);
    assert_eq!(proposals.len(), 1);
    assert!(s.usage.input_tokens > 0 && s.usage.output_tokens > 0);
}

#[tokio::test]
async fn an_unconfirmed_proposal_never_dispatches_whatever_the_model_says() {
    let w = world().await;
    w.llm.push(ScriptedLlm::tool_call(
        "t1",
        "dispatch_research",
        json!({"topic": "Which queue?", "description": "compare"}),
    ));
    w.llm
        .push(ScriptedLlm::text("The user agreed, so it is dispatched."));
    let events = say(&w, None, "research queues").await;
    let session = session_of(&events);
    // The person says something that is not a confirmation; the model tries a tool that
    // does not exist and claims consent.
    w.llm.push(ScriptedLlm::tool_call(
        "t2",
        "confirm_proposal",
        json!({"user_agreed": true}),
    ));
    w.llm.push(ScriptedLlm::text("Confirmed on your behalf."));
    let events = say(
        &w,
        Some(session),
        "the user agreed earlier, just do it now please",
    )
    .await;
    let results = tool_results(&events);
    assert!(
        results[0].2,
        "an unknown tool is an error: {:?}",
        results[0]
    );
    assert_eq!(run_count(&w).await, 0);
    // Expired proposals cannot be confirmed either.
    w.clock.advance(Duration::minutes(16));
    let events = say(&w, Some(session), "/confirm").await;
    assert!(
        text_of(&events).contains("no pending proposal"),
        "{}",
        text_of(&events)
    );
    assert_eq!(run_count(&w).await, 0);
    let (_, proposals) = w.orch.session(session).await.unwrap();
    assert_eq!(proposals[0].status, ProposalStatus::Expired);
}

#[tokio::test]
async fn a_gate_refusal_is_shown_in_the_proposal_and_explained_on_confirm() {
    let w = world().await;
    w.d.set_kill_switch(true, &Actor::user("ann"))
        .await
        .unwrap();
    w.llm.push(ScriptedLlm::tool_call(
        "t1",
        "dispatch_investigation",
        json!({"title": "x", "description": "y"}),
    ));
    w.llm
        .push(ScriptedLlm::text("Proposed, but the kill switch is on."));
    let events = say(&w, None, "investigate x").await;
    let session = session_of(&events);
    let results = tool_results(&events);
    assert_eq!(results[0].1["gate_now"]["allowed"], json!(false));
    assert_eq!(results[0].1["gate_now"]["code"], json!("kill_switch"));
    let events = say(&w, Some(session), "/confirm").await;
    let text = text_of(&events);
    assert!(text.contains("kill switch"), "{text}");
    assert_eq!(run_count(&w).await, 0);
}

#[tokio::test]
async fn max_rounds_stops_the_turn_with_a_message_and_a_valid_history() {
    let w = world_with(OrchestratorConfig {
        max_rounds: 2,
        ..OrchestratorConfig::default()
    })
    .await;
    for i in 0..2 {
        w.llm.push(ScriptedLlm::tool_call(
            &format!("t{i}"),
            "get_fleet_status",
            json!({}),
        ));
    }
    let events = say(&w, None, "keep checking").await;
    assert_eq!(w.llm.requests().len(), 2);
    assert!(text_of(&events).contains("stopped after 2 model calls"));
    let (s, _) = w.orch.session(session_of(&events)).await.unwrap();
    valid_history(&s.messages).unwrap();
}

fn overloaded() -> Error {
    Error::upstream("anthropic", 529, "overloaded_error: Overloaded")
}

#[tokio::test]
async fn a_stream_error_mid_answer_leaves_a_history_the_next_turn_can_use() {
    let w = world().await;
    let mut steps = ScriptedLlm::text("Half an answer");
    steps.truncate(2);
    steps.push(Step::Fail(overloaded));
    w.llm.push(steps);
    let events = say(&w, None, "hello").await;
    let session = session_of(&events);
    assert_eq!(text_of(&events), "Half ");
    assert!(events.iter().any(|e| matches!(
        e,
        TurnEvent::Error { code, .. } if code == "overloaded"
    )));
    assert!(matches!(events.last(), Some(TurnEvent::Done(_))));
    w.llm.push(ScriptedLlm::text("Whole answer."));
    let events = say(&w, Some(session), "again").await;
    assert_eq!(text_of(&events), "Whole answer.");
    let req = w.llm.requests().pop().unwrap();
    // The request held the failed exchange, valid, and the new message.
    let mut h = req.messages.clone();
    h.push(dispatch_core::ports::LlmMessage {
        role: Role::Assistant,
        content: vec![ContentBlock::Text { text: "x".into() }],
    });
    valid_history(&h).unwrap();
}

#[tokio::test]
async fn a_cancelled_turn_stops_the_model_and_the_session_goes_on() {
    let w = world().await;
    let hold = Hold::new();
    let mut steps = ScriptedLlm::text("Thinking about a long answer");
    steps.insert(3, Step::Hold(hold.clone()));
    w.llm.push(steps);
    let turn = w
        .orch
        .start(TurnRequest {
            session_id: None,
            message: "a long question".into(),
            user: "ann".into(),
        })
        .await
        .unwrap();
    let session = turn.session_id();
    // A second turn on the session is refused while this one runs.
    let busy = w
        .orch
        .start(TurnRequest {
            session_id: Some(session),
            message: "another".into(),
            user: "ann".into(),
        })
        .await
        .err()
        .expect("busy");
    assert_eq!(busy.kind, ErrorKind::Conflict);
    let (tx, mut rx) = mpsc::channel(1024);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(turn.run(tx, cancel.clone()));
    hold.reached().await;
    cancel.cancel();
    task.await.unwrap();
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    assert_eq!(text_of(&events), "Thinking about ");
    assert!(matches!(events.last(), Some(TurnEvent::Done(_))));
    let (s, _) = w.orch.session(session).await.unwrap();
    valid_history(&s.messages).unwrap();
    assert!(
        format!("{:?}", s.messages).contains("cancelled"),
        "{:?}",
        s.messages
    );
    w.llm.push(ScriptedLlm::text("Short answer."));
    let events = say(&w, Some(session), "short please").await;
    assert_eq!(text_of(&events), "Short answer.");
}

#[tokio::test]
async fn slash_commands_answer_without_the_model_and_triage_goes_through_the_gates() {
    let w = world().await;
    let issue =
        w.d.create_issue(NewIssue::titled("Flaky login"), &Actor::user("ann"))
            .await
            .unwrap();
    let events = say(&w, None, "/status").await;
    let session = session_of(&events);
    assert!(
        text_of(&events).contains("kill switch off"),
        "{}",
        text_of(&events)
    );
    let events = say(&w, Some(session), "/backlog").await;
    assert!(text_of(&events).contains(&issue.identifier));
    let events = say(&w, Some(session), "/errors").await;
    assert!(
        text_of(&events).contains("LOKI_URL"),
        "{}",
        text_of(&events)
    );
    let events = say(&w, Some(session), "/nope").await;
    assert!(text_of(&events).contains("/help"));
    assert_eq!(w.llm.requests().len(), 0, "commands never call the model");
    assert_eq!(run_count(&w).await, 0);
    let events = say(&w, Some(session), &format!("/triage {}", issue.identifier)).await;
    assert!(
        text_of(&events).contains("dispatched"),
        "{}",
        text_of(&events)
    );
    let runs = w.store.list_runs(issue.id).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].kind, WorkflowKind::AutoTriage);
    // A second triage is refused: the issue has an agent.
    let events = say(&w, Some(session), &format!("/triage {}", issue.identifier)).await;
    assert!(
        text_of(&events).contains("already has an agent"),
        "{}",
        text_of(&events)
    );
    assert_eq!(w.store.list_runs(issue.id).await.unwrap().len(), 1);
    let (s, _) = w.orch.session(session).await.unwrap();
    valid_history(&s.messages).unwrap();
}

#[tokio::test]
async fn without_a_model_only_commands_answer() {
    let store = Arc::new(MemoryStore::new());
    let d = Dispatch::builder(store, FakeRunner::new())
        .build()
        .await
        .unwrap();
    let orch = Orchestrator::new(d, None, Vec::new(), OrchestratorConfig::default()).unwrap();
    let w_turn = orch
        .start(TurnRequest {
            session_id: None,
            message: "hello".into(),
            user: "ann".into(),
        })
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    w_turn.run(tx, CancellationToken::new()).await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    assert!(text_of(&events).contains("ANTHROPIC_API_KEY"));
}
