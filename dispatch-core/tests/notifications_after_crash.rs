//! A process that dies right after a change committed still sends the change's notifications
//! (issue 10): the outbox rows are stored by the change's own transaction, not enqueued after it.
//!
//! The "crash" is deterministic: the event bus freezes the use-case at the first event it
//! publishes after its commit, the test then aborts the use-case's task there (as a SIGKILL
//! would stop the process), and looks at what the store holds.

use async_trait::async_trait;
use chrono::Duration;
use dispatch_core::Dispatch;
use dispatch_core::engine::{OutboxConfig, SpawnOptions};
use dispatch_core::event::ErrorEvent;
use dispatch_core::gate::SpawnPolicy;
use dispatch_core::issue::{Actor, Issue, NewComment, NewIssue};
use dispatch_core::memory::{MemoryEventBus, MemoryStore};
use dispatch_core::outbox::events::{Subscription, WebhookEvent};
use dispatch_core::outbox::slack::SlackRouting;
use dispatch_core::outbox::{DeliveryFilter, RetryPolicy};
use dispatch_core::ports::{
    Event, EventBus, EventStream, Notification, Notifier, OutboxStore, RunResult, RunStore,
};
use dispatch_core::run::{RunStatus, WorkflowKind};
use dispatch_core::testkit::{FakeRunner, ManualClock};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Armed, freezes the first caller for good (and tells the test it did).
#[derive(Default)]
struct Freezer {
    armed: AtomicBool,
    frozen: Notify,
    seen: Mutex<Vec<String>>,
}

impl Freezer {
    async fn pass(&self, what: String) {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.seen.lock().unwrap().push(what);
            self.frozen.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

/// The live-event bus: the first thing a use-case does after its commit is publish.
struct FreezingBus {
    inner: MemoryEventBus,
    freezer: Arc<Freezer>,
}

#[async_trait]
impl EventBus for FreezingBus {
    async fn publish(&self, event: Event) -> dispatch_core::Result<()> {
        self.freezer.pass(format!("event {event:?}")).await;
        self.inner.publish(event).await
    }

    fn subscribe(&self) -> EventStream {
        self.inner.subscribe()
    }
}

/// The notifier port: told after the commit, for changes that publish no event (a run's cost).
struct FreezingNotifier(Arc<Freezer>);

#[async_trait]
impl Notifier for FreezingNotifier {
    async fn notify(&self, n: &Notification) -> dispatch_core::Result<()> {
        self.0.pass(format!("notification {n:?}")).await;
        Ok(())
    }
}

struct World {
    d: Dispatch,
    store: Arc<MemoryStore>,
    freezer: Arc<Freezer>,
}

async fn world() -> World {
    let store = Arc::new(MemoryStore::new());
    let freezer = Arc::new(Freezer::default());
    let bus = Arc::new(FreezingBus {
        inner: MemoryEventBus::new(),
        freezer: freezer.clone(),
    });
    let d = Dispatch::builder(store.clone(), FakeRunner::new())
        .clock(Arc::new(ManualClock::at_default()))
        .bus(bus)
        .notifier(Arc::new(FreezingNotifier(freezer.clone())))
        .config(dispatch_core::config::EngineConfig {
            policy: SpawnPolicy::permissive(),
            ..Default::default()
        })
        .outbox(OutboxConfig {
            retention: None,
            slack: Some(SlackRouting {
                internal_channel: Some("C0INTERNAL".into()),
                app_url: "https://dispatch.example.com".into(),
                max_cost_per_run_usd: 10.0,
            }),
            subscriptions: vec![Subscription {
                url: "https://hooks.example.com/in".into(),
                secret: "0123456789abcdef".into(),
                events: WebhookEvent::ALL.to_vec(),
            }],
            policy: RetryPolicy {
                lease: Duration::seconds(60),
                ..RetryPolicy::default()
            },
        })
        .build()
        .await
        .expect("engine");
    World { d, store, freezer }
}

impl World {
    /// Runs `use_case` until it publishes its first event or tells the notifier port (both
    /// after its commit), then kills it there. Returns where it was frozen.
    async fn crash_after_commit<F>(&self, use_case: F) -> String
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.freezer.armed.store(true, Ordering::SeqCst);
        let frozen = self.freezer.frozen.notified();
        let mut task = tokio::spawn(use_case);
        tokio::select! {
            () = frozen => {}
            r = &mut task => panic!("the use-case ended without publishing an event: ok = {}", r.is_ok()),
        }
        task.abort();
        match task.await {
            Err(e) => assert!(e.is_cancelled(), "the use-case was stopped mid-way: {e}"),
            Ok(_) => panic!("the use-case finished although it was frozen"),
        }
        self.freezer.seen.lock().unwrap().pop().expect("frozen")
    }

    /// The stored deliveries as (event, idempotency key).
    async fn outbox(&self) -> Vec<(String, String)> {
        let mut rows: Vec<(String, String)> = self
            .store
            .list_deliveries(&DeliveryFilter::default())
            .await
            .expect("deliveries")
            .into_iter()
            .map(|d| (d.event, d.idempotency_key))
            .collect();
        rows.sort();
        rows
    }

    /// How many stored deliveries are of `event`.
    async fn count(&self, event: &str) -> usize {
        self.events().await.iter().filter(|e| *e == event).count()
    }

    async fn events(&self) -> Vec<String> {
        self.outbox().await.into_iter().map(|(e, _)| e).collect()
    }

    async fn only_issue(&self) -> Issue {
        let all = self.d.list_issues(&Default::default()).await.expect("list");
        assert_eq!(all.len(), 1, "{all:?}");
        all.into_iter().next().expect("one")
    }
}

fn user() -> Actor {
    Actor::user("ann")
}

#[tokio::test]
async fn an_issue_created_just_before_a_crash_is_still_announced() {
    let w = world().await;
    let d = w.d.clone();
    let at = w
        .crash_after_commit(async move {
            d.create_issue(NewIssue::titled("Checkout fails"), &user())
                .await
        })
        .await;
    assert!(at.starts_with("event IssueCreated"), "{at}");
    let issue = w.only_issue().await;
    let rows = w.outbox().await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "ISSUE_CREATED");
    assert!(
        rows[0].1.ends_with(&issue.id.to_string()),
        "the ISSUE_CREATED webhook was stored with the issue: {rows:?}"
    );
}

#[tokio::test]
async fn an_error_issue_created_just_before_a_crash_is_still_announced() {
    let w = world().await;
    let d = w.d.clone();
    let at = w
        .crash_after_commit(async move {
            d.ingest(
                ErrorEvent::new(
                    "loki",
                    "billing",
                    "charge-customer",
                    "TypeError: x is undefined",
                )
                .with_count(4),
            )
            .await
        })
        .await;
    assert!(at.starts_with("event IssueCreated"), "{at}");
    let issue = w.only_issue().await;
    assert_eq!(
        w.events().await,
        vec!["ISSUE_CREATED".to_string(), "slack.new_error".to_string()],
        "the internal channel's post and the webhook were stored with the issue"
    );
    let post = w
        .store
        .delivery_by_key(&dispatch_core::outbox::slack::internal_thread_key(issue.id))
        .await
        .expect("by key")
        .expect("the new-error post");
    let text = post.payload.to_string();
    assert!(text.contains("4 events"), "{text}");
}

#[tokio::test]
async fn a_comment_made_just_before_a_crash_is_still_announced() {
    let w = world().await;
    let issue =
        w.d.create_issue(NewIssue::titled("Export is slow"), &user())
            .await
            .expect("create");
    let before = w.outbox().await.len();
    let d = w.d.clone();
    let id = issue.id;
    let at = w
        .crash_after_commit(async move {
            d.add_comment(
                id,
                NewComment {
                    author: Some("ann".into()),
                    body: "Seen again at 10:02".into(),
                },
                &user(),
            )
            .await
        })
        .await;
    assert!(at.starts_with("event IssueUpdated"), "{at}");
    let comments = w.d.comments(id).await.expect("comments");
    assert_eq!(comments.len(), 1);
    let rows = w.outbox().await;
    assert_eq!(rows.len(), before + 1, "{rows:?}");
    assert!(
        rows.iter()
            .any(|(e, k)| e == "COMMENT_CREATED" && k.ends_with(&comments[0].id.to_string())),
        "{rows:?}"
    );
}

#[tokio::test]
async fn an_agent_started_and_finished_just_before_crashes_is_still_announced() {
    let w = world().await;
    let issue =
        w.d.create_issue(NewIssue::titled("Investigate login"), &user())
            .await
            .expect("create");
    let d = w.d.clone();
    let id = issue.id;
    let at = w
        .crash_after_commit(async move {
            d.spawn(id, SpawnOptions::new(WorkflowKind::PrdInvestigate), &user())
                .await
        })
        .await;
    assert!(at.starts_with("event Issue"), "{at}");
    let run = w.store.list_runs(id).await.expect("runs").remove(0);
    assert_eq!(run.status, RunStatus::Queued);
    let started = format!("slack:internal:{}:run:{}:started", id, run.id);
    assert!(
        w.outbox().await.iter().any(|(_, k)| *k == started),
        "the agent-started reply was stored with the reservation: {:?}",
        w.outbox().await
    );

    // The run starts, ends (the agent's result), and the process dies right after.
    let run_id = run.id;
    w.d.run_started(run_id, None, None, &Actor::agent("GitHub Actions"))
        .await
        .expect("started");
    let d = w.d.clone();
    let at = w
        .crash_after_commit(async move {
            d.finish_run(
                run_id,
                RunResult {
                    cost_usd: Some(3.0),
                    summary: Some("Root cause: stale session cache".into()),
                    ..RunResult::default()
                },
                &Actor::agent("GitHub Actions"),
            )
            .await
        })
        .await;
    assert!(at.starts_with("event RunChanged"), "{at}");
    assert!(
        w.store
            .get_run(run_id)
            .await
            .expect("run")
            .status
            .is_terminal()
    );
    let events = w.events().await;
    assert!(
        events.iter().any(|e| e == "slack.agent_finished"),
        "the agent-finished reply was stored with the run's end: {events:?}"
    );
}

#[tokio::test]
async fn a_budget_warning_is_stored_with_the_cost_that_crosses_the_line() {
    let w = world().await;
    let issue =
        w.d.create_issue(NewIssue::titled("Research caching"), &user())
            .await
            .expect("create");
    let spawned =
        w.d.spawn(
            issue.id,
            SpawnOptions::new(WorkflowKind::PrdInvestigate),
            &user(),
        )
        .await
        .expect("spawn");
    let run_id = spawned.run_id.expect("queued");
    w.d.run_started(run_id, None, None, &Actor::agent("GitHub Actions"))
        .await
        .expect("started");
    let patch = |cost: f64| dispatch_core::run::RunPatch {
        cost_usd: Some(cost),
        ..Default::default()
    };
    w.d.update_run(run_id, patch(5.0), &Actor::agent("GitHub Actions"))
        .await
        .expect("below the line");
    assert_eq!(w.count("slack.budget_warning").await, 0);
    let d = w.d.clone();
    let at = w
        .crash_after_commit(async move {
            d.update_run(run_id, patch(9.2), &Actor::agent("GitHub Actions"))
                .await
        })
        .await;
    assert!(at.starts_with("notification BudgetWarning"), "{at}");
    let warnings = w.count("slack.budget_warning").await;
    assert_eq!(warnings, 1, "90 % of the 10 USD cap crossed once");
    // Later costs above the line warn no more.
    w.d.update_run(run_id, patch(9.8), &Actor::agent("GitHub Actions"))
        .await
        .expect("above the line");
    let warnings = w.count("slack.budget_warning").await;
    assert_eq!(warnings, 1);
}
