//! Two engines (two pools, as two server processes would have) on one PostgreSQL database.
#![cfg(feature = "postgres")]

mod support;

use dispatch_adapters::postgres::{PostgresEventBus, PostgresStore};
use dispatch_core::config::EngineConfig;
use dispatch_core::engine::SpawnOptions;
use dispatch_core::gate::{Decision, SpawnPolicy};
use dispatch_core::issue::{Actor, NewIssue};
use dispatch_core::ports::{
    Event, EventBus, IssueStore, RunStore, SpawnRequest, Store, WorkspaceStore,
};
use dispatch_core::run::{RunStatus, WorkflowKind};
use dispatch_core::testkit::{FakeRunner, ManualClock};
use dispatch_core::{Clock, Dispatch, ErrorKind};
use futures::StreamExt;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

struct Db {
    admin: sqlx::PgPool,
    schema: String,
    opts: sqlx::postgres::PgConnectOptions,
}

async fn db() -> Db {
    let admin = support::admin_pool().await;
    let (schema, opts) = support::fresh_schema(&admin).await;
    Db {
        admin,
        schema,
        opts,
    }
}

async fn store(d: &Db) -> Arc<PostgresStore> {
    Arc::new(
        PostgresStore::from_pool(support::pool(&d.opts, 8).await)
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_engines_dispatch_each_queued_run_exactly_once() {
    let d = db().await;
    let (s1, s2) = (store(&d).await, store(&d).await);
    let clock = Arc::new(ManualClock::at_default());
    let runner = FakeRunner::new();
    let config = EngineConfig {
        policy: SpawnPolicy::permissive(),
        ..EngineConfig::default()
    };
    let e1 = Dispatch::builder(s1.clone(), runner.clone())
        .clock(clock.clone())
        .config(config.clone())
        .build()
        .await
        .unwrap();
    let e2 = Dispatch::builder(s2.clone(), runner.clone())
        .clock(clock.clone())
        .config(config)
        .build()
        .await
        .unwrap();
    assert_eq!(
        e1.workspace().id,
        e2.workspace().id,
        "both processes share one workspace"
    );

    let mut runs = Vec::new();
    for i in 0..30 {
        let e = if i % 2 == 0 { &e1 } else { &e2 };
        let issue = e
            .create_issue(NewIssue::titled(format!("task {i}")), &Actor::user("ann"))
            .await
            .unwrap();
        runs.push(
            e.spawn(
                issue.id,
                SpawnOptions::new(WorkflowKind::DeepResearch),
                &Actor::user("ann"),
            )
            .await
            .unwrap()
            .run_id
            .unwrap(),
        );
    }
    let mut tasks = Vec::new();
    for e in [e1.clone(), e2.clone(), e1.clone(), e2.clone()] {
        tasks.push(tokio::spawn(async move {
            for _ in 0..6 {
                e.dispatcher_step().await.unwrap();
                e.sweeper_step().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let calls = runner.calls();
    let unique: HashSet<_> = calls.iter().copied().collect();
    assert_eq!(calls.len(), runs.len(), "no run was dispatched twice");
    assert_eq!(unique, runs.iter().copied().collect::<HashSet<_>>());
    for r in &runs {
        assert_eq!(s1.get_run(*r).await.unwrap().status, RunStatus::Running);
    }
    support::drop_schema(&d.admin, &d.schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrency_limit_holds_across_two_processes() {
    let d = db().await;
    let (s1, s2) = (store(&d).await, store(&d).await);
    let clock = ManualClock::at_default();
    let ws = s1
        .ensure_workspace("Dispatch", "DISPATCH", clock.now())
        .await
        .unwrap();
    let mut issues = Vec::new();
    for i in 0..100 {
        issues.push(
            s1.create_issue(
                ws.id,
                NewIssue::titled(format!("i{i}")),
                &Actor::user("a"),
                clock.now(),
                &Default::default(),
            )
            .await
            .unwrap()
            .id,
        );
    }
    let mut policy = SpawnPolicy::permissive();
    policy.max_concurrent_error = 7;
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let now = clock.now();
    let tasks: Vec<_> = issues
        .into_iter()
        .enumerate()
        .map(|(n, id)| {
            let s: Arc<dyn Store> = if n % 2 == 0 { s1.clone() } else { s2.clone() };
            let b = barrier.clone();
            let policy = policy.clone();
            tokio::spawn(async move {
                b.wait().await;
                let req = SpawnRequest {
                    issue_id: id,
                    kind: WorkflowKind::ErrorFix,
                    force: false,
                    from_alert: false,
                    additional_context: None,
                    actor: Actor::system("t"),
                    policy,
                    deferred_id: None,
                    outbox: Default::default(),
                };
                s.reserve_spawn(&req, now).await.unwrap().decision
            })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        if t.await.unwrap() == Decision::Allow {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 7);
    assert_eq!(s2.spawn_stats(now).await.unwrap().active_error, 7);
    support::drop_schema(&d.admin, &d.schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_published_by_one_process_reaches_a_subscriber_of_the_other() {
    let d = db().await;
    let url_opts = d.opts.clone();
    let b1 = PostgresEventBus::from_pool(support::pool(&url_opts, 2).await)
        .await
        .unwrap();
    let b2 = PostgresEventBus::from_pool(support::pool(&url_opts, 2).await)
        .await
        .unwrap();
    let mut sub = b2.subscribe();
    let e = Event::IssueDeleted {
        issue_id: dispatch_core::ids::IssueId::new(),
        identifier: "DISPATCH-9".into(),
    };
    b1.publish(e.clone()).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("event within 10 s");
    assert_eq!(got, Some(e));

    // Through engines: an issue created via engine 1 is seen by a board viewer on engine 2.
    let (s1, s2) = (store(&d).await, store(&d).await);
    let runner = FakeRunner::new();
    let e1 = Dispatch::builder(s1, runner.clone())
        .bus(Arc::new(b1))
        .build()
        .await
        .unwrap();
    let e2 = Dispatch::builder(s2, runner)
        .bus(Arc::new(b2))
        .build()
        .await
        .unwrap();
    let mut viewer = e2.bus().subscribe();
    let issue = e1
        .create_issue(NewIssue::titled("seen elsewhere"), &Actor::user("ann"))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), viewer.next())
        .await
        .expect("event within 10 s");
    assert_eq!(got, Some(Event::IssueCreated { issue_id: issue.id }));
    assert_eq!(
        e2.get_issue(issue.id).await.unwrap().title,
        "seen elsewhere"
    );
    support::drop_schema(&d.admin, &d.schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_fails_to_decode_is_an_internal_error_naming_table_and_column() {
    let d = db().await;
    let s = store(&d).await;
    let clock = ManualClock::at_default();
    let ws = s
        .ensure_workspace("Dispatch", "DISPATCH", clock.now())
        .await
        .unwrap();
    let i = s
        .create_issue(
            ws.id,
            NewIssue::titled("x"),
            &Actor::user("a"),
            clock.now(),
            &Default::default(),
        )
        .await
        .unwrap();
    let pool = support::pool(&d.opts, 1).await;
    sqlx::query("UPDATE dispatch_issue SET doc = '{\"title\": 42}'::jsonb WHERE id = $1")
        .bind(i.id.0)
        .execute(&pool)
        .await
        .unwrap();
    let e = s.get_issue(ws.id, &i.id.into()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Internal);
    assert!(e.message.contains("dispatch_issue.doc"), "{}", e.message);
    support::drop_schema(&d.admin, &d.schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_safe_to_run_concurrently() {
    let d = db().await;
    let pools = [
        support::pool(&d.opts, 2).await,
        support::pool(&d.opts, 2).await,
        support::pool(&d.opts, 2).await,
    ];
    let opened = futures::future::join_all(pools.into_iter().map(PostgresStore::from_pool)).await;
    assert!(
        opened.iter().all(|r| r.is_ok()),
        "{:?}",
        opened
            .iter()
            .filter_map(|r| r.as_ref().err())
            .collect::<Vec<_>>()
    );
    let pool = support::pool(&d.opts, 1).await;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dispatch_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    let known = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .expect("migrations folder")
        .count();
    assert_eq!(
        usize::try_from(n).expect("count"),
        known,
        "each migration applied once"
    );
    support::drop_schema(&d.admin, &d.schema).await;
}
