//! Cancel while a run is being dispatched (a slow runner: GitHub retries, a worktree being
//! prepared): the run keeps its concurrency slot, and whatever the runner started is stopped as
//! soon as the dispatch returns. Deterministic: the fake runner holds the dispatch until released.

use dispatch_core::config::EngineConfig;
use dispatch_core::engine::{CancelOutcome, SpawnOptions};
use dispatch_core::gate::SpawnPolicy;
use dispatch_core::issue::{Actor, NewIssue};
use dispatch_core::memory::MemoryStore;
use dispatch_core::run::{RunStatus, WorkflowKind};
use dispatch_core::testkit::{FakeRunner, ManualClock};
use dispatch_core::{Dispatch, ErrorKind};
use std::sync::Arc;

async fn engine(runner: Arc<FakeRunner>) -> Dispatch {
    engine_at(runner, Arc::new(ManualClock::at_default())).await
}

async fn engine_at(runner: Arc<FakeRunner>, clock: Arc<ManualClock>) -> Dispatch {
    let mut policy = SpawnPolicy::permissive();
    policy.max_concurrent_prd = 1;
    policy.max_concurrent_global = 1;
    Dispatch::builder(Arc::new(MemoryStore::new()), runner)
        .clock(clock)
        .config(EngineConfig {
            policy,
            ..EngineConfig::default()
        })
        .build()
        .await
        .unwrap()
}

fn ann() -> Actor {
    Actor::user("ann")
}

#[tokio::test]
async fn cancel_during_a_slow_dispatch_stops_the_agent_and_keeps_the_slot() {
    let runner = FakeRunner::new();
    let d = engine(runner.clone()).await;
    let a = d.create_issue(NewIssue::titled("a"), &ann()).await.unwrap();
    let b = d.create_issue(NewIssue::titled("b"), &ann()).await.unwrap();
    let run = d
        .spawn(a.id, SpawnOptions::new(WorkflowKind::AutoTriage), &ann())
        .await
        .unwrap()
        .run_id
        .unwrap();
    runner.hold_dispatches();
    let step = tokio::spawn({
        let d = d.clone();
        async move { d.dispatcher_step().await }
    });
    runner.wait_for_calls(1).await;

    // The runner is still starting the agent.
    assert_eq!(
        d.cancel(a.id, &ann()).await.unwrap(),
        CancelOutcome::Requested
    );
    let runs = d.runs(a.id).await.unwrap();
    assert_eq!(
        runs[0].status,
        RunStatus::Dispatching,
        "the run keeps its slot"
    );
    let other = d
        .spawn(b.id, SpawnOptions::new(WorkflowKind::AutoTriage), &ann())
        .await
        .unwrap();
    assert!(
        !other.spawned(),
        "the slot is still taken: {:?}",
        other.decision
    );

    // The dispatch returns: what it started is stopped at once, and the run ends cancelled.
    runner.release(1);
    assert_eq!(
        step.await.unwrap().unwrap(),
        0,
        "nothing counts as dispatched"
    );
    assert_eq!(
        runner.cancelled(),
        vec![run],
        "the started agent was stopped"
    );
    let runs = d.runs(a.id).await.unwrap();
    assert_eq!(runs[0].status, RunStatus::Cancelled);
    assert!(runs[0].cancel_requested_at.is_some());
    assert_eq!(
        runs[0].external_id.as_deref(),
        Some(format!("fake-{run}").as_str()),
        "the runner's id was kept, so it could be stopped"
    );
    // The slot is free now.
    let again = d
        .spawn(b.id, SpawnOptions::new(WorkflowKind::AutoTriage), &ann())
        .await
        .unwrap();
    assert!(again.spawned(), "{:?}", again.decision);
}

#[tokio::test]
async fn a_dispatch_that_fails_after_a_cancel_is_not_retried() {
    let runner = FakeRunner::new();
    let d = engine(runner.clone()).await;
    let a = d.create_issue(NewIssue::titled("a"), &ann()).await.unwrap();
    d.spawn(a.id, SpawnOptions::new(WorkflowKind::AutoTriage), &ann())
        .await
        .unwrap();
    runner.hold_dispatches();
    runner.fail_next(1, ErrorKind::Unavailable);
    let step = tokio::spawn({
        let d = d.clone();
        async move { d.dispatcher_step().await }
    });
    runner.wait_for_calls(1).await;
    assert_eq!(
        d.cancel(a.id, &ann()).await.unwrap(),
        CancelOutcome::Requested
    );
    runner.release(1);
    step.await.unwrap().unwrap();
    let runs = d.runs(a.id).await.unwrap();
    assert_eq!(
        runs[0].status,
        RunStatus::Cancelled,
        "not queued for a retry"
    );
    assert_eq!(runner.calls().len(), 1);
}

#[tokio::test]
async fn queued_and_running_runs_end_at_once() {
    let runner = FakeRunner::new();
    let d = engine(runner.clone()).await;
    let a = d.create_issue(NewIssue::titled("a"), &ann()).await.unwrap();
    d.spawn(a.id, SpawnOptions::new(WorkflowKind::AutoTriage), &ann())
        .await
        .unwrap();
    assert_eq!(
        d.cancel(a.id, &ann()).await.unwrap(),
        CancelOutcome::Cancelled {
            runner_confirmed: true
        }
    );
    assert!(runner.cancelled().is_empty(), "a queued run had no agent");
    assert_eq!(d.runs(a.id).await.unwrap()[0].status, RunStatus::Cancelled);
    // Nothing to dispatch afterwards.
    assert_eq!(d.dispatcher_step().await.unwrap(), 0);
    assert!(runner.calls().is_empty());

    let run = d
        .spawn(a.id, SpawnOptions::new(WorkflowKind::AutoTriage), &ann())
        .await
        .unwrap()
        .run_id
        .unwrap();
    assert_eq!(d.dispatcher_step().await.unwrap(), 1);
    assert_eq!(
        d.cancel(a.id, &ann()).await.unwrap(),
        CancelOutcome::Cancelled {
            runner_confirmed: true
        }
    );
    assert_eq!(runner.cancelled(), vec![run]);
    let e = d.cancel(a.id, &ann()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
}

#[tokio::test]
async fn a_run_whose_agent_was_lost_with_its_server_ends_at_the_next_sweep() {
    let runner = FakeRunner::new();
    let clock = Arc::new(ManualClock::at_default());
    let d = engine_at(runner.clone(), clock.clone()).await;
    let a = d.create_issue(NewIssue::titled("a"), &ann()).await.unwrap();
    let run = d
        .spawn(a.id, SpawnOptions::new(WorkflowKind::AutoTriage), &ann())
        .await
        .unwrap()
        .run_id
        .unwrap();
    assert_eq!(d.dispatcher_step().await.unwrap(), 1);
    assert_eq!(
        d.sweeper_step().await.unwrap().orphaned,
        0,
        "alive: untouched"
    );
    assert_eq!(d.runs(a.id).await.unwrap()[0].status, RunStatus::Running);

    runner.orphan(run);
    // One second later, not the 45 minutes of the stale timeout.
    clock.advance(chrono::Duration::seconds(1));
    let report = d.sweeper_step().await.unwrap();
    assert_eq!(report.orphaned, 1);
    let r = &d.runs(a.id).await.unwrap()[0];
    assert_eq!(r.status, RunStatus::Failed);
    assert!(r.outcome_summary.as_deref().unwrap().contains("Agent lost"));
    // The slot is free again.
    let b = d.create_issue(NewIssue::titled("b"), &ann()).await.unwrap();
    assert!(
        d.spawn(b.id, SpawnOptions::new(WorkflowKind::AutoTriage), &ann())
            .await
            .unwrap()
            .spawned()
    );
}
