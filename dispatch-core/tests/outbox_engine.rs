//! The engine's delivery worker over the in-memory store, a manual clock and a gated fake
//! transport: order per target, claims that run out before their turn, agents' webhooks.

use async_trait::async_trait;
use chrono::Duration;
use dispatch_core::agent::NewAgent;
use dispatch_core::engine::{IssueChanges, OutboxConfig};
use dispatch_core::issue::{Actor, NewIssue};
use dispatch_core::memory::MemoryStore;
use dispatch_core::outbox::events::{Subscription, WebhookEvent};
use dispatch_core::outbox::{
    Attempt, Delivery, DeliveryFilter, DeliveryState, KIND_WEBHOOK, RetryPolicy,
};
use dispatch_core::ports::{DeliveryTransport, OutboxStore};
use dispatch_core::testkit::{FakeRunner, ManualClock};
use dispatch_core::{Clock, Dispatch};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Records what it was asked to send; each send first takes a permit from `gate`.
struct Gated {
    gate: Arc<Semaphore>,
    sent: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl DeliveryTransport for Gated {
    async fn deliver(&self, d: &Delivery, _parent: Option<&Delivery>) -> Attempt {
        self.sent
            .lock()
            .unwrap()
            .push((d.target.clone(), d.event.clone()));
        let permit = self.gate.acquire().await.expect("gate open");
        permit.forget();
        Attempt::Delivered {
            code: Some(200),
            response: None,
        }
    }
}

fn sub(url: &str) -> Subscription {
    Subscription {
        url: url.into(),
        secret: "0123456789abcdef".into(),
        events: WebhookEvent::ALL.to_vec(),
    }
}

async fn engine(
    clock: Arc<ManualClock>,
    subs: Vec<Subscription>,
    transport: Option<Arc<Gated>>,
) -> (Dispatch, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let mut b = Dispatch::builder(store.clone(), FakeRunner::new())
        .clock(clock)
        .outbox(OutboxConfig {
            retention: None,
            slack: None,
            subscriptions: subs,
            policy: RetryPolicy {
                lease: Duration::seconds(60),
                ..RetryPolicy::default()
            },
        });
    if let Some(t) = transport {
        b = b.transport(KIND_WEBHOOK, t);
    }
    (b.build().await.expect("engine"), store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_targets_deliveries_go_in_order_and_a_late_turn_waits_for_the_next_claim() {
    let clock = Arc::new(ManualClock::at_default());
    let gate = Arc::new(Semaphore::new(0));
    let t = Arc::new(Gated {
        gate: gate.clone(),
        sent: Mutex::new(Vec::new()),
    });
    let (d, store) = engine(
        clock.clone(),
        vec![
            sub("https://a.example.com/h"),
            sub("https://b.example.com/h"),
        ],
        Some(t.clone()),
    )
    .await;
    let ann = Actor::user("ann");
    let issue = d
        .create_issue(NewIssue::titled("One"), &ann)
        .await
        .expect("issue");
    d.update_issue(
        issue.id,
        IssueChanges {
            title: Some("One, renamed".into()),
            ..Default::default()
        },
        &ann,
    )
    .await
    .expect("update");
    // Per target: ISSUE_CREATED, then ISSUE_UPDATED.
    let step = tokio::spawn({
        let d = d.clone();
        async move { d.deliver_step().await }
    });
    // Both targets' first deliveries are in flight, their second ones wait their turn.
    while t.sent.lock().unwrap().len() < 2 {
        tokio::task::yield_now().await;
    }
    {
        let sent = t.sent.lock().unwrap().clone();
        assert!(sent.iter().all(|(_, e)| e == "ISSUE_CREATED"), "{sent:?}");
    }
    // The first sends take 50 s: the second ones' claims (60 s) would run out mid-try.
    clock.advance(Duration::seconds(50));
    gate.add_permits(2);
    assert_eq!(step.await.expect("task").expect("step"), 4);
    assert_eq!(t.sent.lock().unwrap().len(), 2, "late turns were not sent");
    let pending = store
        .list_deliveries(&DeliveryFilter {
            state: Some(DeliveryState::Pending),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|p| p.event == "ISSUE_UPDATED"));
    // Still claimed until the lease runs out; then taken again and sent.
    assert_eq!(d.deliver_step().await.expect("step"), 0);
    clock.advance(Duration::seconds(10));
    gate.add_permits(2);
    assert_eq!(d.deliver_step().await.expect("step"), 2);
    let sent = t.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 4);
    for target in ["https://a.example.com/h", "https://b.example.com/h"] {
        let order: Vec<&str> = sent
            .iter()
            .filter(|(t, _)| t == target)
            .map(|(_, e)| e.as_str())
            .collect();
        assert_eq!(order, ["ISSUE_CREATED", "ISSUE_UPDATED"], "{target}");
    }
    let all = store
        .list_deliveries(&DeliveryFilter::default())
        .await
        .expect("list");
    assert!(all.iter().all(|r| r.state == DeliveryState::Delivered));
    let _ = clock.now();
}

#[tokio::test]
async fn agent_webhooks_are_stored_only_with_a_webhook_transport() {
    let clock = Arc::new(ManualClock::at_default());
    let ann = Actor::user("ann");
    for with_transport in [false, true] {
        let t = Arc::new(Gated {
            gate: Arc::new(Semaphore::new(10)),
            sent: Mutex::new(Vec::new()),
        });
        let (d, store) = engine(clock.clone(), Vec::new(), with_transport.then(|| t.clone())).await;
        d.create_agent(NewAgent {
            name: "builder".into(),
            webhook_url: Some("https://hooks.example.com/agent".into()),
            ..NewAgent::default()
        })
        .await
        .expect("agent");
        let issue = d
            .create_issue(NewIssue::titled("Assign me"), &ann)
            .await
            .expect("issue");
        d.update_issue(
            issue.id,
            IssueChanges {
                assignee: Some(Some("builder".into())),
                ..Default::default()
            },
            &ann,
        )
        .await
        .expect("assign");
        let rows = store
            .list_deliveries(&DeliveryFilter::default())
            .await
            .expect("list");
        if with_transport {
            assert_eq!(rows.len(), 1, "{rows:?}");
            assert_eq!(rows[0].event, "ISSUE_ASSIGNED");
            assert_eq!(rows[0].target, "https://hooks.example.com/agent");
            assert_eq!(rows[0].payload["issue"]["assignee"], "builder");
            assert_eq!(rows[0].secret.as_ref().map(String::len), Some(64));
            assert_eq!(d.deliver_step().await.expect("step"), 1);
            assert_eq!(t.sent.lock().unwrap().len(), 1);
        } else {
            assert!(rows.is_empty(), "nobody could send it: {rows:?}");
        }
    }
}

#[tokio::test]
async fn the_sweeper_deletes_settled_deliveries_after_the_retention() {
    let clock = Arc::new(ManualClock::at_default());
    let t = Arc::new(Gated {
        gate: Arc::new(Semaphore::new(100)),
        sent: Mutex::new(Vec::new()),
    });
    let store = Arc::new(MemoryStore::new());
    let d = Dispatch::builder(store.clone(), FakeRunner::new())
        .clock(clock.clone())
        .outbox(OutboxConfig {
            retention: Some(Duration::days(7)),
            slack: None,
            subscriptions: vec![sub("https://a.example.com/h")],
            policy: RetryPolicy::default(),
        })
        .transport(KIND_WEBHOOK, t.clone())
        .build()
        .await
        .expect("engine");
    d.create_issue(NewIssue::titled("One"), &Actor::user("ann"))
        .await
        .expect("issue");
    assert_eq!(d.deliver_step().await.expect("step"), 1);
    let all = DeliveryFilter::default();
    assert_eq!(d.deliveries(&all).await.expect("list").len(), 1);
    // Kept for the retention, then deleted by the sweeper.
    clock.advance(Duration::days(7) - Duration::seconds(1));
    assert_eq!(d.sweeper_step().await.expect("sweep").outbox_pruned, 0);
    assert_eq!(d.deliveries(&all).await.expect("list").len(), 1);
    clock.advance(Duration::seconds(2));
    assert_eq!(d.sweeper_step().await.expect("sweep").outbox_pruned, 1);
    assert!(d.deliveries(&all).await.expect("list").is_empty());
}
