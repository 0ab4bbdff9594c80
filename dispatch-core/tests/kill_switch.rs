//! The stored kill switch: one process turns it on and every process on the store stops — new
//! spawns are refused, queued runs stay queued, deferred spawns wait — and all of it resumes
//! when it is turned off. Two engines on one store stand for two server processes.

use chrono::Duration;
use dispatch_core::config::EngineConfig;
use dispatch_core::engine::SpawnOptions;
use dispatch_core::event::ErrorEvent;
use dispatch_core::gate::SpawnPolicy;
use dispatch_core::issue::{Actor, NewIssue};
use dispatch_core::memory::MemoryStore;
use dispatch_core::run::WorkflowKind;
use dispatch_core::testkit::{FakeRunner, ManualClock};
use dispatch_core::{Clock, Dispatch, ErrorKind};
use std::sync::Arc;

struct Process {
    d: Dispatch,
    runner: Arc<FakeRunner>,
}

async fn process(store: Arc<MemoryStore>, clock: Arc<ManualClock>, policy: SpawnPolicy) -> Process {
    let runner = FakeRunner::new();
    let d = Dispatch::builder(store, runner.clone())
        .clock(clock)
        .config(EngineConfig {
            policy,
            ..EngineConfig::default()
        })
        .build()
        .await
        .unwrap();
    Process { d, runner }
}

fn ann() -> Actor {
    Actor::user("ann")
}

#[tokio::test]
async fn turned_on_in_one_process_it_stops_spawns_in_another() {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::at_default());
    let a = process(store.clone(), clock.clone(), SpawnPolicy::permissive()).await;
    let b = process(store.clone(), clock.clone(), SpawnPolicy::permissive()).await;
    let issue =
        a.d.create_issue(NewIssue::titled("x"), &ann())
            .await
            .unwrap();

    assert!(!b.d.kill_switch().await.unwrap().enabled);
    let k = a.d.set_kill_switch(true, &ann()).await.unwrap();
    assert!(k.enabled && k.stored == Some(true) && !k.forced_by_environment);
    let out =
        b.d.spawn(
            issue.id,
            SpawnOptions::new(WorkflowKind::AutoTriage),
            &ann(),
        )
        .await
        .unwrap();
    assert_eq!(out.decision.reason().unwrap().code(), "kill_switch");
    assert!(out.run_id.is_none());

    b.d.set_kill_switch(false, &ann()).await.unwrap();
    let out =
        a.d.spawn(
            issue.id,
            SpawnOptions::new(WorkflowKind::AutoTriage),
            &ann(),
        )
        .await
        .unwrap();
    assert!(out.spawned(), "{:?}", out.decision);
}

#[tokio::test]
async fn queued_runs_stay_queued_while_it_is_on_and_go_out_after() {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::at_default());
    let a = process(store.clone(), clock.clone(), SpawnPolicy::permissive()).await;
    let b = process(store.clone(), clock.clone(), SpawnPolicy::permissive()).await;
    let issue =
        a.d.create_issue(NewIssue::titled("x"), &ann())
            .await
            .unwrap();
    let run =
        a.d.spawn(
            issue.id,
            SpawnOptions::new(WorkflowKind::AutoTriage),
            &ann(),
        )
        .await
        .unwrap()
        .run_id
        .unwrap();
    // Turned on after the run was queued, by the other process.
    b.d.set_kill_switch(true, &ann()).await.unwrap();
    clock.advance(Duration::minutes(10));
    assert_eq!(a.d.dispatcher_step().await.unwrap(), 0);
    assert_eq!(b.d.dispatcher_step().await.unwrap(), 0);
    assert!(a.runner.calls().is_empty() && b.runner.calls().is_empty());

    a.d.set_kill_switch(false, &ann()).await.unwrap();
    let sent = a.d.dispatcher_step().await.unwrap() + b.d.dispatcher_step().await.unwrap();
    assert_eq!(sent, 1);
    let calls: Vec<_> = a
        .runner
        .calls()
        .into_iter()
        .chain(b.runner.calls())
        .collect();
    assert_eq!(calls, vec![run], "dispatched exactly once");
}

#[tokio::test]
async fn deferred_spawns_wait_instead_of_being_refused() {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::at_default());
    // An error alert spawns after the delay: it is deferred first.
    let mut policy = SpawnPolicy::permissive();
    policy.spawn_delay = Duration::minutes(5);
    policy.min_event_count = 1;
    let p = process(store.clone(), clock.clone(), policy).await;
    let report =
        p.d.ingest(ErrorEvent::new(
            "loki",
            "billing",
            "charge",
            "card declined",
        ))
        .await
        .unwrap();
    assert_eq!(
        p.d.store().spawn_stats(clock.now()).await.unwrap().deferred,
        1
    );

    p.d.set_kill_switch(true, &ann()).await.unwrap();
    clock.advance(Duration::minutes(10));
    let swept = p.d.sweeper_step().await.unwrap();
    assert_eq!(
        swept.deferred_checked, 0,
        "deferred spawns are not touched while it is on"
    );
    assert_eq!(
        p.d.store().spawn_stats(clock.now()).await.unwrap().deferred,
        1
    );

    p.d.set_kill_switch(false, &ann()).await.unwrap();
    let swept = p.d.sweeper_step().await.unwrap();
    assert_eq!(swept.deferred_spawned, 1, "{swept:?}");
    let runs = p.d.runs(report.issue.id).await.unwrap();
    assert_eq!(runs.len(), 1);
}

#[tokio::test]
async fn the_environment_keeps_it_on() {
    let mut policy = SpawnPolicy::permissive();
    policy.kill_switch = true;
    let p = process(
        Arc::new(MemoryStore::new()),
        Arc::new(ManualClock::at_default()),
        policy,
    )
    .await;
    let k = p.d.kill_switch().await.unwrap();
    assert!(k.enabled && k.forced_by_environment && k.stored.is_none());
    let e = p.d.set_kill_switch(false, &ann()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert!(e.message.contains("SPAWN_KILL_SWITCH"));
    assert!(p.d.kill_switch().await.unwrap().enabled);
    // Turning it on again is fine (and stored).
    assert_eq!(
        p.d.set_kill_switch(true, &ann()).await.unwrap().stored,
        Some(true)
    );
}
