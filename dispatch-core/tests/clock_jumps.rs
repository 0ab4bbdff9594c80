//! Clock jumps (issue 15, fault injection): the wall clock stepping forward or backward (NTP
//! correction, a VM resumed, a misconfigured host) through the engine. Leases, cooldowns and
//! the UTC day windows of the spawn budget must stay safe: a backward jump never hands a
//! claimed run to a second dispatcher, never ends a cooldown early and never opens a fresh
//! daily budget; a forward jump expires leases and cooldowns exactly once and opens the next
//! day. Deterministic: one manual clock, fake runners held until released.

use chrono::{Duration, TimeZone, Utc};
use dispatch_core::clock::Clock;
use dispatch_core::config::EngineConfig;
use dispatch_core::engine::SpawnOptions;
use dispatch_core::event::ErrorEvent;
use dispatch_core::gate::{Decision, SpawnPolicy};
use dispatch_core::issue::{Actor, NewIssue};
use dispatch_core::memory::MemoryStore;
use dispatch_core::ports::{RunResult, Store};
use dispatch_core::run::{RunStatus, WorkflowKind};
use dispatch_core::testkit::{FakeRunner, ManualClock};
use dispatch_core::{Dispatch, Timestamp};
use std::sync::Arc;

async fn engine(
    store: Arc<dyn Store>,
    runner: Arc<FakeRunner>,
    clock: Arc<ManualClock>,
    policy: SpawnPolicy,
) -> Dispatch {
    Dispatch::builder(store, runner)
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

fn code(d: &Decision) -> &'static str {
    match d {
        Decision::Allow => "allow",
        Decision::Defer { reason, .. } | Decision::Deny { reason } => reason.code(),
    }
}

#[tokio::test]
async fn a_backward_jump_keeps_a_lease_and_a_forward_jump_expires_it_exactly_once() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::at_default());
    let slow = FakeRunner::named("slow");
    let other = FakeRunner::named("other");
    let p1 = engine(
        store.clone(),
        slow.clone(),
        clock.clone(),
        SpawnPolicy::permissive(),
    )
    .await;
    let p2 = engine(
        store.clone(),
        other.clone(),
        clock.clone(),
        SpawnPolicy::permissive(),
    )
    .await;
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
    let t0 = clock.now();

    // Process 1 claims the run; its runner stalls.
    slow.hold_dispatches();
    let step = tokio::spawn({
        let p1 = p1.clone();
        async move { p1.dispatcher_step().await }
    });
    slow.wait_for_calls(1).await;

    // The clock steps back two hours, then forward to just before the lease ends: the lease
    // holds either way, nobody else claims.
    clock.set(t0 - Duration::hours(2));
    assert_eq!(
        p2.dispatcher_step().await.unwrap(),
        0,
        "after a backward jump"
    );
    clock.set(t0 + p1.config().lease - Duration::seconds(1));
    assert_eq!(p2.dispatcher_step().await.unwrap(), 0, "inside the lease");
    assert_eq!(store.get_run(run).await.unwrap().claim, 1);

    // A forward jump of a day: the lease has run out; the run is taken over once.
    clock.set(t0 + Duration::days(1));
    assert_eq!(p2.dispatcher_step().await.unwrap(), 1);
    assert_eq!(
        p2.dispatcher_step().await.unwrap(),
        0,
        "taken over exactly once"
    );
    // And back again: the new claim is not given away either.
    clock.set(t0);
    assert_eq!(p1.dispatcher_step().await.unwrap(), 0);
    slow.release(1);
    assert_eq!(
        step.await.unwrap().unwrap(),
        0,
        "the stalled dispatch is fenced off"
    );
    let r = store.get_run(run).await.unwrap();
    assert_eq!((r.status, r.claim), (RunStatus::Running, 2));
    assert_eq!(other.calls(), vec![run]);
}

#[tokio::test]
async fn a_cooldown_survives_a_backward_jump_and_ends_after_a_forward_one() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::at_default());
    let runner = FakeRunner::new();
    let policy = SpawnPolicy {
        cooldown: Duration::hours(24),
        ..SpawnPolicy::permissive()
    };
    let d = engine(store.clone(), runner.clone(), clock.clone(), policy).await;
    let event = || ErrorEvent::new("loki", "billing", "charge", "Card declined for cus_1");

    // First alert: an error_fix agent; it finishes, the fingerprint cools down for 24 h.
    let r = d.ingest(event()).await.unwrap();
    let run = r.spawn.as_ref().and_then(|s| s.run_id).expect("an agent");
    d.dispatcher_step().await.unwrap();
    d.finish_run(run, RunResult::default(), &Actor::agent("fake"))
        .await
        .unwrap();
    let t0 = clock.now();

    // The clock steps back three hours: still cooling down (the deadline did not move).
    clock.set(t0 - Duration::hours(3));
    let r = d.ingest(event()).await.unwrap();
    assert_eq!(code(&r.spawn.unwrap().decision), "cooldown");

    // Forward to one minute before the end: still cooling down.
    clock.set(t0 + Duration::hours(24) - Duration::minutes(1));
    let r = d.ingest(event()).await.unwrap();
    assert_eq!(code(&r.spawn.unwrap().decision), "cooldown");

    // A jump past the end: the next alert gets an agent again, once.
    clock.set(t0 + Duration::days(3));
    let r = d.ingest(event()).await.unwrap();
    let spawn = r.spawn.unwrap();
    assert_eq!(code(&spawn.decision), "allow");
    assert!(spawn.run_id.is_some());
    let r = d.ingest(event()).await.unwrap();
    assert!(
        r.spawn.is_none_or(|s| code(&s.decision) != "allow"),
        "one active agent per fingerprint"
    );
    assert_eq!(runner.calls().len(), 1, "one dispatch so far");
}

fn at(y: i32, m: u32, day: u32, h: u32, min: u32, s: u32) -> Timestamp {
    Utc.with_ymd_and_hms(y, m, day, h, min, s).single().unwrap()
}

#[tokio::test]
async fn the_daily_budget_follows_the_utc_day_through_jumps_both_ways() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(at(2026, 1, 15, 23, 59, 0)));
    let runner = FakeRunner::new();
    let policy = SpawnPolicy {
        daily_budget_prd: 1,
        ..SpawnPolicy::permissive()
    };
    let d = engine(store.clone(), runner.clone(), clock.clone(), policy).await;
    let mut issues = Vec::new();
    for i in 0..4 {
        issues.push(
            d.create_issue(NewIssue::titled(format!("task {i}")), &ann())
                .await
                .unwrap()
                .id,
        );
    }
    let spawn = |i: usize| {
        let d = d.clone();
        let id = issues[i];
        async move {
            d.spawn(id, SpawnOptions::new(WorkflowKind::DeepResearch), &ann())
                .await
                .unwrap()
                .decision
        }
    };

    // 23:59 on the 15th: the day's one agent, then the budget is spent.
    assert_eq!(code(&spawn(0).await), "allow");
    assert_eq!(code(&spawn(1).await), "daily_budget");

    // Forward across midnight: a new day, a new budget.
    clock.set(at(2026, 1, 16, 0, 0, 30));
    assert_eq!(code(&spawn(1).await), "allow");
    assert_eq!(code(&spawn(2).await), "daily_budget");

    // Back to 23:59:30 on the 15th: that day's budget is still spent (the jump does not open
    // a fresh one), and the 16th's agent does not make it go negative either.
    clock.set(at(2026, 1, 15, 23, 59, 30));
    assert_eq!(code(&spawn(2).await), "daily_budget");
    let stats = store.spawn_stats(clock.now()).await.unwrap();
    assert!(stats.spawned_today_prd >= 1, "{stats:?}");

    // Forward two days: a new day again.
    clock.set(at(2026, 1, 18, 9, 0, 0));
    assert_eq!(code(&spawn(2).await), "allow");
    assert_eq!(code(&spawn(3).await), "daily_budget");
}
