//! OrchestratorStore: sessions survive a reload with their history, one turn holds a session,
//! proposals are decided once (also when confirmed concurrently), recent costs per kind.

use super::support::*;
use crate::gate::Decision;
use crate::ids::{ProposalId, SessionId};
use crate::issue::Priority;
use crate::orchestrator::{
    Proposal, ProposalDecision, ProposalOutcome, ProposalStatus, ProposalTarget, Session,
};
use crate::ports::{ContentBlock, LlmMessage, Role, Usage};
use crate::run::{RunPatch, RunStatus, WorkflowKind};
use serde_json::json;
use uuid::Uuid;

pub(super) fn cases() -> Vec<Case> {
    cases!("orchestrator":
        sessions_keep_their_history_and_usage,
        one_turn_holds_a_session_until_it_ends_or_its_lease_expires,
        an_invalid_history_is_refused_and_nothing_changes,
        proposals_are_decided_once_and_keep_their_outcome,
        concurrent_confirmations_make_one_decision,
        recent_costs_are_of_finished_runs_of_the_kind_newest_first,
    )
}

fn text(role: Role, t: &str) -> LlmMessage {
    LlmMessage {
        role,
        content: vec![ContentBlock::Text { text: t.into() }],
    }
}

fn proposal(session: &Session, at: Timestamp) -> Proposal {
    Proposal {
        id: ProposalId::new(),
        session_id: session.id,
        workspace_id: session.workspace_id,
        kind: WorkflowKind::PrdInvestigate,
        target: ProposalTarget::NewIssue {
            title: "Checkout times out — ünïcode ✓".into(),
            description: "p99 above 30 s since Tuesday".into(),
            priority: Priority::P2,
        },
        additional_context: None,
        gate: Decision::Allow,
        estimated_cost_usd: Some(1.25),
        status: ProposalStatus::Pending,
        created_at: at,
        expires_at: at + Duration::minutes(15),
        decided_at: None,
        outcome: None,
    }
}

async fn sessions_keep_their_history_and_usage(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    not_found(s.get_session(SessionId::new()).await, "an unknown session");
    let first = s
        .create_session(&Session::new(ws.id, t0()))
        .await
        .expect("create");
    let second = s
        .create_session(&Session::new(ws.id, mins(1)))
        .await
        .expect("create");
    let turn = Uuid::now_v7();
    s.begin_turn(first.id, turn, mins(2), mins(12))
        .await
        .expect("begin");
    let history = vec![
        text(Role::User, "What is running? 🚀"),
        LlmMessage {
            role: Role::Assistant,
            content: vec![
                ContentBlock::Text {
                    text: "Let me look.".into(),
                },
                ContentBlock::ToolUse {
                    id: "toolu_1".into(),
                    name: "get_fleet_status".into(),
                    input: json!({"verbose": true}),
                },
            ],
        },
        LlmMessage {
            role: Role::User,
            content: vec![ContentBlock::ToolResult {
                tool_use_id: "toolu_1".into(),
                content: "{\"running\":0}".into(),
                is_error: false,
            }],
        },
        text(Role::Assistant, "Nothing is running."),
    ];
    let usage = Usage {
        input_tokens: 100,
        output_tokens: 20,
        cache_creation_input_tokens: 5,
        cache_read_input_tokens: 7,
    };
    s.end_turn(first.id, turn, history.clone(), &usage, mins(3))
        .await
        .expect("end");
    let back = s.get_session(first.id).await.expect("get");
    assert_eq!(back.messages, history, "the history comes back as saved");
    assert_eq!(back.usage, usage);
    assert_eq!(back.title, "What is running? 🚀");
    assert_eq!(back.turn_id, None);
    let list = s.list_sessions(ws.id, 10).await.expect("list");
    assert_eq!(
        list.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![first.id, second.id],
        "most recently used first"
    );
    assert_eq!(s.list_sessions(ws.id, 1).await.expect("list").len(), 1);
}

async fn one_turn_holds_a_session_until_it_ends_or_its_lease_expires(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let session = s
        .create_session(&Session::new(ws.id, t0()))
        .await
        .expect("create");
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    s.begin_turn(session.id, a, t0(), mins(10))
        .await
        .expect("first turn");
    conflict(
        s.begin_turn(session.id, b, mins(5), mins(15)).await,
        "a second turn while the first holds the session",
    );
    // The lease expires: b takes over, a's end is refused and does not overwrite b's history.
    s.begin_turn(session.id, b, mins(10), mins(20))
        .await
        .expect("take over");
    conflict(
        s.end_turn(
            session.id,
            a,
            vec![text(Role::User, "a"), text(Role::Assistant, "A")],
            &Usage::default(),
            mins(11),
        )
        .await,
        "the end of a turn that lost the session",
    );
    s.end_turn(
        session.id,
        b,
        vec![text(Role::User, "b"), text(Role::Assistant, "B")],
        &Usage::default(),
        mins(11),
    )
    .await
    .expect("end b");
    let back = s.get_session(session.id).await.expect("get");
    assert_eq!(back.messages[0], text(Role::User, "b"));
    s.begin_turn(session.id, a, mins(12), mins(22))
        .await
        .expect("a free session takes a new turn");
}

async fn an_invalid_history_is_refused_and_nothing_changes(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let session = s
        .create_session(&Session::new(ws.id, t0()))
        .await
        .expect("create");
    let turn = Uuid::now_v7();
    s.begin_turn(session.id, turn, t0(), mins(10))
        .await
        .expect("begin");
    let dangling = vec![
        text(Role::User, "hi"),
        LlmMessage {
            role: Role::Assistant,
            content: vec![ContentBlock::ToolUse {
                id: "t".into(),
                name: "x".into(),
                input: json!({}),
            }],
        },
    ];
    let e = s
        .end_turn(session.id, turn, dangling, &Usage::default(), mins(1))
        .await
        .expect_err("an unanswered tool call is not a valid history");
    assert_eq!(e.kind, ErrorKind::Internal);
    let back = s.get_session(session.id).await.expect("get");
    assert!(back.messages.is_empty());
    assert_eq!(back.turn_id, Some(turn), "the turn still holds the session");
}

async fn proposals_are_decided_once_and_keep_their_outcome(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let session = s
        .create_session(&Session::new(ws.id, t0()))
        .await
        .expect("create");
    not_found(
        s.create_proposal(&proposal(&Session::new(ws.id, t0()), t0()))
            .await,
        "a proposal in an unknown session",
    );
    let p1 = s
        .create_proposal(&proposal(&session, t0()))
        .await
        .expect("create");
    let p2 = s
        .create_proposal(&proposal(&session, mins(1)))
        .await
        .expect("create");
    assert_eq!(s.get_proposal(p1.id).await.expect("get"), p1);
    let listed = s.list_proposals(session.id).await.expect("list");
    assert_eq!(
        listed.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![p1.id, p2.id]
    );
    let confirmed = s
        .decide_proposal(p1.id, ProposalDecision::Confirm, mins(2))
        .await
        .expect("confirm");
    assert_eq!(confirmed.status, ProposalStatus::Confirmed);
    conflict(
        s.decide_proposal(p1.id, ProposalDecision::Cancel, mins(3))
            .await,
        "deciding a confirmed proposal again",
    );
    let outcome = ProposalOutcome {
        identifier: "ACME-1".into(),
        run_id: None,
        decision: Some(Decision::Allow),
        message: "dispatched".into(),
    };
    let with = s
        .set_proposal_outcome(p1.id, &outcome)
        .await
        .expect("outcome");
    assert_eq!(with.outcome, Some(outcome.clone()));
    assert_eq!(
        s.get_proposal(p1.id).await.expect("get").outcome,
        Some(outcome)
    );
    // p2 expires at t0+16m.
    conflict(
        s.decide_proposal(p2.id, ProposalDecision::Confirm, mins(16))
            .await,
        "confirming an expired proposal",
    );
    assert_eq!(
        s.get_proposal(p2.id).await.expect("get").status,
        ProposalStatus::Pending,
        "a refused decision changes nothing"
    );
    not_found(
        s.decide_proposal(ProposalId::new(), ProposalDecision::Confirm, t0())
            .await,
        "an unknown proposal",
    );
}

async fn concurrent_confirmations_make_one_decision(store: Arc<dyn Store>) {
    let ws = workspace(&*store).await;
    let session = store
        .create_session(&Session::new(ws.id, t0()))
        .await
        .expect("create");
    let p = store
        .create_proposal(&proposal(&session, t0()))
        .await
        .expect("create");
    let n = 8;
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let store = store.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let d = if i % 2 == 0 {
                ProposalDecision::Confirm
            } else {
                ProposalDecision::Cancel
            };
            store.decide_proposal(p.id, d, mins(1)).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.kind, ErrorKind::Conflict, "{e}"),
        }
    }
    assert_eq!(ok, 1, "exactly one decision wins");
}

async fn recent_costs_are_of_finished_runs_of_the_kind_newest_first(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let mut expected = Vec::new();
    for (n, cost) in [(0, 1.5), (1, 2.5), (2, 0.0), (3, 4.0)] {
        let i = issue(s, ws.id, &format!("investigate {n}")).await;
        let run = running(s, i.id, WorkflowKind::PrdInvestigate, mins(n)).await;
        patch_run(
            s,
            run.id,
            RunPatch {
                status: Some(RunStatus::Completed),
                cost_usd: Some(cost),
                ..Default::default()
            },
            mins(n + 30),
        )
        .await;
        if cost > 0.0 {
            expected.insert(0, cost);
        }
    }
    // Another kind, and a run still going with a cost so far: not counted.
    let other = issue(s, ws.id, "research").await;
    let r = running(s, other.id, WorkflowKind::DeepResearch, mins(5)).await;
    patch_run(
        s,
        r.id,
        RunPatch {
            status: Some(RunStatus::Completed),
            cost_usd: Some(9.0),
            ..Default::default()
        },
        mins(40),
    )
    .await;
    let live = issue(s, ws.id, "live").await;
    let r = running(s, live.id, WorkflowKind::PrdInvestigate, mins(6)).await;
    patch_run(
        s,
        r.id,
        RunPatch {
            cost_usd: Some(7.0),
            ..Default::default()
        },
        mins(7),
    )
    .await;
    let costs = s
        .recent_run_costs(WorkflowKind::PrdInvestigate, 10)
        .await
        .expect("costs");
    assert_eq!(costs, expected);
    let two = s
        .recent_run_costs(WorkflowKind::PrdInvestigate, 2)
        .await
        .expect("costs");
    assert_eq!(two, vec![4.0, 2.5]);
}
