//! Claims and fencing (issue 10 #1): a dispatcher's claim has a lease; while its runner works the
//! lease is renewed; a dispatcher whose lease ran out (a stalled process) and whose run another
//! process claimed cannot record its result over the newer claim, and stops the agent it started.
//! Deterministic: two engines on one store and one manual clock, fake runners held until released.

use dispatch_core::config::EngineConfig;
use dispatch_core::engine::SpawnOptions;
use dispatch_core::gate::SpawnPolicy;
use dispatch_core::issue::{Actor, NewIssue};
use dispatch_core::memory::MemoryStore;
use dispatch_core::ports::Store;
use dispatch_core::run::{RunPatch, RunStatus, WorkflowKind};
use dispatch_core::testkit::{FakeRunner, ManualClock};
use dispatch_core::{Dispatch, ErrorKind};
use std::sync::Arc;

async fn engine(
    store: Arc<dyn Store>,
    runner: Arc<FakeRunner>,
    clock: Arc<ManualClock>,
) -> Dispatch {
    Dispatch::builder(store, runner)
        .clock(clock)
        .config(EngineConfig {
            policy: SpawnPolicy::permissive(),
            ..EngineConfig::default()
        })
        .build()
        .await
        .unwrap()
}

fn ann() -> Actor {
    Actor::user("ann")
}

/// Two engines ("processes") on one store and one manual clock, each with its own named fake
/// runner, and one queued run.
struct Pair {
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    slow: Arc<FakeRunner>,
    other: Arc<FakeRunner>,
    p1: Dispatch,
    p2: Dispatch,
    run: dispatch_core::ids::RunId,
}

async fn two_processes(other_name: &str) -> Pair {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::at_default());
    let slow = FakeRunner::named("slow");
    let other = FakeRunner::named(other_name);
    let p1 = engine(store.clone(), slow.clone(), clock.clone()).await;
    let p2 = engine(store.clone(), other.clone(), clock.clone()).await;
    let issue = p1
        .create_issue(NewIssue::titled("a"), &ann())
        .await
        .unwrap();
    let run = p1
        .spawn(
            issue.id,
            SpawnOptions::new(WorkflowKind::AutoTriage),
            &ann(),
        )
        .await
        .unwrap()
        .run_id
        .unwrap();
    Pair {
        store,
        clock,
        slow,
        other,
        p1,
        p2,
        run,
    }
}

#[tokio::test]
async fn a_superseded_dispatch_records_nothing_and_stops_its_agent() {
    let Pair {
        store,
        clock,
        slow,
        other: fast,
        p1,
        p2,
        run,
    } = two_processes("fast").await;

    // Process 1 claims the run; its runner stalls.
    slow.hold_dispatches();
    let step = tokio::spawn({
        let p1 = p1.clone();
        async move { p1.dispatcher_step().await }
    });
    slow.wait_for_calls(1).await;
    let claimed = store.get_run(run).await.unwrap();
    assert_eq!((claimed.status, claimed.claim), (RunStatus::Dispatching, 1));

    // Its lease runs out (process 1 is stalled, so nothing renewed it): process 2 takes over.
    clock.advance(p1.config().lease + chrono::Duration::minutes(1));
    assert_eq!(p2.dispatcher_step().await.unwrap(), 1);
    let taken = store.get_run(run).await.unwrap();
    assert_eq!(taken.claim, 2);
    assert_eq!(taken.status, RunStatus::Running);
    assert_eq!(
        taken.external_id.as_deref(),
        Some(format!("fast-{run}").as_str())
    );

    // Process 1's runner returns: its result is fenced off and its agent stopped.
    slow.release(1);
    assert_eq!(
        step.await.unwrap().unwrap(),
        0,
        "process 1 dispatched nothing"
    );
    let after = store.get_run(run).await.unwrap();
    assert_eq!(
        (after.status, after.claim, after.external_id.as_deref()),
        (RunStatus::Running, 2, Some(format!("fast-{run}").as_str())),
        "the newer claim's agent is the run's"
    );
    assert_eq!(
        slow.cancelled_agents(),
        vec![Some(format!("slow-{run}"))],
        "the superseded dispatch's agent was stopped"
    );
    assert!(
        fast.cancelled_agents().is_empty(),
        "the run's agent keeps running"
    );
    assert_eq!(fast.calls(), vec![run]);
}

#[tokio::test]
async fn a_write_fenced_to_an_old_claim_changes_nothing() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::at_default());
    let runner = FakeRunner::new();
    let d = engine(store.clone(), runner.clone(), clock.clone()).await;
    let issue = d.create_issue(NewIssue::titled("a"), &ann()).await.unwrap();
    let run = d
        .spawn(
            issue.id,
            SpawnOptions::new(WorkflowKind::AutoTriage),
            &ann(),
        )
        .await
        .unwrap()
        .run_id
        .unwrap();
    let claimed = store
        .claim_due_runs(
            dispatch_core::clock::Clock::now(&*clock),
            d.config().lease,
            10,
        )
        .await
        .unwrap();
    assert_eq!(claimed[0].claim, 1);
    let stale = RunPatch {
        status: Some(RunStatus::Running),
        external_id: Some("late".into()),
        expect_claim: Some(0),
        ..RunPatch::default()
    };
    let e = store
        .update_run(
            run,
            &stale,
            &Actor::system("Dispatcher"),
            dispatch_core::clock::Clock::now(&*clock),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    let r = store.get_run(run).await.unwrap();
    assert_eq!((r.status, r.external_id), (RunStatus::Dispatching, None));
    let current = RunPatch {
        expect_claim: Some(1),
        ..stale
    };
    let u = store
        .update_run(
            run,
            &current,
            &Actor::system("Dispatcher"),
            dispatch_core::clock::Clock::now(&*clock),
        )
        .await
        .unwrap();
    assert_eq!(
        u.run.status,
        RunStatus::Running,
        "the holder of the claim writes"
    );
}

#[tokio::test(start_paused = true)]
async fn the_lease_is_renewed_while_the_runner_works() {
    let Pair {
        store,
        clock,
        slow,
        other,
        p1,
        p2,
        run,
    } = two_processes("other").await;
    let lease = p1.config().lease;
    slow.hold_dispatches();
    let step = tokio::spawn({
        let p1 = p1.clone();
        async move { p1.dispatcher_step().await }
    });
    slow.wait_for_calls(1).await;
    let first_lease = store.get_run(run).await.unwrap().lease_until.unwrap();

    // The runner is slow for most of a lease; the engine's clock moves on with it, and the
    // renewal timer (a third of the lease, tokio's paused clock) fires.
    clock.advance(lease * 2 / 3);
    tokio::time::sleep((lease / 3).to_std().unwrap() + std::time::Duration::from_secs(1)).await;
    let renewed = store.get_run(run).await.unwrap().lease_until.unwrap();
    assert!(
        renewed > first_lease,
        "renewed from the engine's now: {renewed} > {first_lease}"
    );
    // Past the first lease (now at 7/6 of it), the run is still held: another process claims
    // nothing.
    clock.advance(lease / 2);
    assert_eq!(p2.dispatcher_step().await.unwrap(), 0);
    assert!(other.calls().is_empty());

    slow.release(1);
    assert_eq!(step.await.unwrap().unwrap(), 1);
    let r = store.get_run(run).await.unwrap();
    assert_eq!(
        (r.status, r.claim, r.lease_until),
        (RunStatus::Running, 1, None)
    );
    assert!(slow.cancelled_agents().is_empty());
}
