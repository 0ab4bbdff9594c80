//! AgentStore events: queued per agent, handed out once, oldest first, capped.

use super::support::*;
use crate::agent::{NewAgent, NewAgentEvent};
use serde_json::json;

pub(super) fn cases() -> Vec<Case> {
    cases!("agent_events":
        events_are_taken_once_oldest_first_per_agent,
        the_queue_keeps_the_newest_up_to_the_cap,
        concurrent_takers_share_the_events_without_repeats,
    )
}

async fn register(s: &dyn Store, ws: crate::ids::WorkspaceId, name: &str) {
    s.create_agent(
        &NewAgent {
            name: name.into(),
            ..NewAgent::default()
        }
        .into_agent(ws, t0()),
    )
    .await
    .expect("create agent");
}

fn event(n: usize) -> NewAgentEvent {
    NewAgentEvent {
        event_type: "ISSUE_UPDATED".into(),
        issue: Some(json!({"identifier": format!("ACME-{n}"), "title": "ünïcode ✓"})),
        timestamp: Some(mins(n as i64)),
        metadata: if n.is_multiple_of(2) {
            Some(json!({"n": n}))
        } else {
            None
        },
    }
}

async fn events_are_taken_once_oldest_first_per_agent(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    register(s, ws.id, "Claude").await;
    register(s, ws.id, "Codex").await;
    not_found(
        s.push_agent_event(ws.id, "nobody", &event(0), 10, t0())
            .await,
        "an unknown agent",
    );
    assert!(
        s.take_agent_events(ws.id, "nobody", 10)
            .await
            .expect("take")
            .is_empty(),
        "an unknown agent has no events"
    );
    let mut seqs = Vec::new();
    for n in 1..=3 {
        seqs.push(
            s.push_agent_event(ws.id, "claude", &event(n), 10, mins(n as i64))
                .await
                .expect("push"),
        );
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "increasing: {seqs:?}");
    s.push_agent_event(ws.id, "Codex", &event(9), 10, mins(9))
        .await
        .expect("push");

    let first = s.take_agent_events(ws.id, "CLAUDE", 2).await.expect("take");
    assert_eq!(
        first.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        vec![event(1), event(2)],
        "oldest first, payload kept exactly"
    );
    assert_eq!(first[0].seq, seqs[0]);
    assert_eq!(first[1].received_at, mins(2));
    let rest = s
        .take_agent_events(ws.id, "Claude", 10)
        .await
        .expect("take");
    assert_eq!(
        rest.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        vec![event(3)]
    );
    assert!(
        s.take_agent_events(ws.id, "Claude", 10)
            .await
            .expect("take")
            .is_empty(),
        "taken events are gone"
    );
    let codex = s.take_agent_events(ws.id, "codex", 10).await.expect("take");
    assert_eq!(codex.len(), 1, "another agent's queue is its own");
    assert_eq!(codex[0].event, event(9));
}

async fn the_queue_keeps_the_newest_up_to_the_cap(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    register(s, ws.id, "claude").await;
    for n in 0..7 {
        s.push_agent_event(ws.id, "claude", &event(n), 3, mins(n as i64))
            .await
            .expect("push");
    }
    let got = s
        .take_agent_events(ws.id, "claude", 100)
        .await
        .expect("take");
    assert_eq!(
        got.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        vec![event(4), event(5), event(6)],
        "the oldest beyond the cap are dropped"
    );
}

async fn concurrent_takers_share_the_events_without_repeats(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    register(s, ws.id, "claude").await;
    const N: usize = 60;
    for n in 0..N {
        s.push_agent_event(ws.id, "claude", &event(n), 1000, t0())
            .await
            .expect("push");
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(6));
    let mut handles = Vec::new();
    for _ in 0..6 {
        let store = store.clone();
        let barrier = barrier.clone();
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut mine = Vec::new();
            loop {
                let got = store
                    .take_agent_events(ws.id, "claude", 4)
                    .await
                    .expect("take");
                if got.is_empty() {
                    return mine;
                }
                assert!(got.windows(2).all(|w| w[0].seq < w[1].seq), "ordered batch");
                mine.extend(got.into_iter().map(|e| e.seq));
            }
        }));
    }
    let all: Vec<i64> = join_all(handles).await.into_iter().flatten().collect();
    assert_eq!(all.len(), N, "every event handed out exactly once");
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), N, "no event handed out twice");
}
