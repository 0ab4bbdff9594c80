//! Engine scenarios on the in-memory store with a manual clock: the whole alert → agent →
//! verified-fix loop, and the concurrency guarantees.

use chrono::Duration;
use dispatch_core::config::EngineConfig;
use dispatch_core::engine::{ColumnRef, IssueChanges, SpawnOptions};
use dispatch_core::event::ErrorEvent;
use dispatch_core::gate::{Decision, SpawnPolicy};
use dispatch_core::issue::{
    Actor, AgentStatus, IssueFilter, NewIssue, Priority, SpawnStatus, names,
};
use dispatch_core::memory::{MemoryEventBus, MemoryStore};
use dispatch_core::plan::PlanStatus;
use dispatch_core::ports::{ErrorLinkStore, Event, EventBus, RunResult, RunStore};
use dispatch_core::run::{ActivityType, NewActivity, Outcome, RunStatus, WorkflowKind};
use dispatch_core::testkit::{FakeRunner, ManualClock};
use dispatch_core::verify::{MergedPr, VerificationStatus};
use dispatch_core::{Clock, Dispatch, ErrorKind};
use futures::StreamExt;
use std::sync::Arc;

struct World {
    d: Dispatch,
    clock: Arc<ManualClock>,
    runner: Arc<FakeRunner>,
    store: Arc<MemoryStore>,
    bus: Arc<MemoryEventBus>,
}

async fn world(config: EngineConfig) -> World {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::at_default());
    let runner = FakeRunner::new();
    let bus = Arc::new(MemoryEventBus::new());
    let d = Dispatch::builder(store.clone(), runner.clone())
        .clock(clock.clone())
        .bus(bus.clone())
        .config(config)
        .build()
        .await
        .unwrap();
    World {
        d,
        clock,
        runner,
        store,
        bus,
    }
}

fn config(policy: SpawnPolicy) -> EngineConfig {
    EngineConfig {
        policy,
        ..EngineConfig::default()
    }
}

fn loki(msg: &str, count: u64) -> ErrorEvent {
    ErrorEvent::new("loki", "billing", "charge-customer", msg).with_count(count)
}

fn user() -> Actor {
    Actor::user("ann")
}

fn agent() -> Actor {
    Actor::agent("GitHub Actions")
}

async fn column_name(d: &Dispatch, issue: &dispatch_core::issue::Issue) -> String {
    d.columns()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == issue.column_id)
        .unwrap()
        .name
}

/// alert → issue → deferred → sweeper → dispatched → terminal chunks and activity → plan →
/// reject → re-investigate → approve → implement → PR merged → monitoring. Returns the issue id
/// and the fingerprint message, ready for either ending.
async fn path_to_monitoring(w: &World) -> (dispatch_core::ids::IssueId, String) {
    let d = &w.d;
    let mut events = w.bus.subscribe();
    let msg = "Payment failed for customer cus_Nf8dJ2kLq9 at 2026-01-15T09:00:00Z";

    // Alert: 6 events (over the threshold of 5), first seen now → deferred by the 5 min delay.
    let r = d.ingest(loki(msg, 6)).await.unwrap();
    assert!(r.created);
    assert_eq!(r.issue.identifier, "DISPATCH-1");
    assert_eq!(r.issue.priority, Priority::P3);
    assert!(
        r.issue
            .title
            .starts_with("[billing/charge-customer] Payment failed")
    );
    assert_eq!(r.normalized, "Payment failed for customer cus_* at *");
    let spawn = r.spawn.unwrap();
    match &spawn.decision {
        Decision::Defer { until, reason } => {
            assert_eq!(reason.code(), "spawn_delay");
            assert_eq!(*until, w.clock.now() + Duration::minutes(5));
        }
        other => panic!("expected a deferred spawn, got {other:?}"),
    }
    assert!(w.runner.calls().is_empty());
    assert_eq!(
        events.next().await,
        Some(Event::IssueCreated {
            issue_id: r.issue.id
        })
    );

    // The same error again dedupes into the same issue; still deferred.
    let again = d
        .ingest(loki(
            "Payment failed for customer cus_Zz9 at 2026-01-15T09:01:00Z",
            2,
        ))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.issue.id, r.issue.id);
    assert_eq!(again.event_count, 8);
    assert_eq!(w.store.list_deferred(r.issue.id).await.unwrap().len(), 1);

    // Nothing happens before the delay is over.
    w.clock.advance(Duration::minutes(4));
    assert_eq!(d.sweeper_step().await.unwrap().deferred_spawned, 0);
    w.clock.advance(Duration::minutes(1));
    let sweep = d.sweeper_step().await.unwrap();
    assert_eq!(sweep.deferred_spawned, 1);
    let issue = d.get_issue("DISPATCH-1").await.unwrap();
    assert_eq!(issue.spawn_status, Some(SpawnStatus::Queued));
    assert_eq!(issue.agent_status, AgentStatus::Investigating);
    assert_eq!(column_name(d, &issue).await, names::INVESTIGATING);

    // Dispatcher hands it to the runner exactly once.
    assert_eq!(d.dispatcher_step().await.unwrap(), 1);
    assert_eq!(d.dispatcher_step().await.unwrap(), 0);
    let calls = w.runner.calls();
    assert_eq!(calls.len(), 1);
    let run_id = calls[0];
    let job = w.runner.job(run_id).unwrap();
    assert_eq!(job.run.kind, WorkflowKind::ErrorFix);
    assert_eq!(job.inputs["source"], "billing");
    assert_eq!(job.inputs["issue_identifier"], "DISPATCH-1");
    assert_eq!(job.inputs["dispatch_run_id"], run_id.to_string());
    assert_eq!(job.inputs["error_fingerprint"], r.fingerprint);
    let issue = d.get_issue("DISPATCH-1").await.unwrap();
    assert_eq!(issue.spawn_status, Some(SpawnStatus::Running));

    // The agent streams output and reports.
    let reporter = w.runner.reporter(run_id).unwrap();
    reporter
        .terminal(run_id, "Looking at billing/charge.rs\n")
        .await
        .unwrap();
    reporter
        .terminal(run_id, "[TOOL] Grep(pattern=charge)\n")
        .await
        .unwrap();
    reporter
        .activity(
            run_id,
            NewActivity::new(
                ActivityType::InvestigationComplete,
                "Root cause: missing retry",
            ),
        )
        .await
        .unwrap();
    let chunks = d.read_terminal(run_id, 0, 100).await.unwrap();
    assert_eq!(chunks.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(d.read_terminal(run_id, 1, 100).await.unwrap().len(), 1);
    assert_eq!(
        d.transcript(run_id).await.unwrap(),
        "Looking at billing/charge.rs\n[TOOL] Grep(pattern=charge)\n"
    );
    let acts = d.activities("DISPATCH-1", None, 10).await.unwrap();
    assert_eq!(acts[0].kind, ActivityType::InvestigationComplete);
    assert_eq!(acts[0].run_id, Some(run_id));

    reporter
        .finish(
            run_id,
            RunResult {
                outcome: Some(Outcome::InvestigationComplete),
                summary: Some("Needs a product decision".into()),
                cost_usd: Some(1.25),
                num_turns: Some(12),
                model: Some("claude-opus-4-6".into()),
                ..RunResult::default()
            },
        )
        .await
        .unwrap();
    // A retried result callback does not double count.
    reporter
        .finish(
            run_id,
            RunResult {
                cost_usd: Some(1.25),
                num_turns: Some(12),
                ..RunResult::default()
            },
        )
        .await
        .unwrap();
    let issue = d.get_issue("DISPATCH-1").await.unwrap();
    assert_eq!(issue.spawn_status, Some(SpawnStatus::Completed));
    assert_eq!(issue.agent_status, AgentStatus::Idle);
    assert_eq!(issue.cost_usd, 1.25);
    assert_eq!(issue.num_turns, 12);
    assert_eq!(issue.run_outcome, Some(Outcome::InvestigationComplete));
    assert_eq!(column_name(d, &issue).await, names::NEEDS_REVIEW);
    // The error run ended: the fingerprint is in cooldown now.
    let links = w.store.links_for_issue(issue.id).await.unwrap();
    assert_eq!(
        links[0].cooldown_until,
        Some(w.clock.now() + Duration::hours(24))
    );

    // Implementation refuses to start without an approved plan.
    let e = d
        .spawn(
            "DISPATCH-1",
            SpawnOptions::new(WorkflowKind::PrdImplement),
            &user(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);

    // A person asks for a plan.
    let inv = d
        .spawn(
            "DISPATCH-1",
            SpawnOptions::new(WorkflowKind::PrdInvestigate),
            &user(),
        )
        .await
        .unwrap();
    let inv_run = inv.run_id.unwrap();
    assert_eq!(d.dispatcher_step().await.unwrap(), 1);
    d.submit_plan("DISPATCH-1", "1. add retry\n2. add test", &agent())
        .await
        .unwrap();
    d.finish_run(
        inv_run,
        RunResult {
            outcome: Some(Outcome::InvestigationComplete),
            ..Default::default()
        },
        &agent(),
    )
    .await
    .unwrap();
    let issue = d.get_issue("DISPATCH-1").await.unwrap();
    assert_eq!(issue.plan.status, Some(PlanStatus::AwaitingReview));
    // Plan submission stays visible after the run ends (the original reset it to idle).
    assert_eq!(issue.agent_status, AgentStatus::AwaitingReview);

    // Reject with feedback; re-investigation receives the feedback.
    assert_eq!(
        d.reject_plan("DISPATCH-1", "  ", &user())
            .await
            .unwrap_err()
            .field(),
        Some("feedback")
    );
    let issue = d
        .reject_plan("DISPATCH-1", "Also cover refunds", &user())
        .await
        .unwrap();
    assert_eq!(issue.plan.status, Some(PlanStatus::NeedsRevision));
    let inv2 = d
        .spawn(
            "DISPATCH-1",
            SpawnOptions::new(WorkflowKind::PrdInvestigate),
            &user(),
        )
        .await
        .unwrap();
    let inv2_run = inv2.run_id.unwrap();
    d.dispatcher_step().await.unwrap();
    assert_eq!(
        w.runner.job(inv2_run).unwrap().inputs["plan_feedback"],
        "Also cover refunds"
    );
    d.submit_plan(
        "DISPATCH-1",
        "1. add retry\n2. cover refunds\n3. add tests",
        &agent(),
    )
    .await
    .unwrap();
    d.finish_run(
        inv2_run,
        RunResult {
            outcome: Some(Outcome::InvestigationComplete),
            ..Default::default()
        },
        &agent(),
    )
    .await
    .unwrap();

    // Approve with auto-spawn: implementation starts through the gates with the plan.
    let review = d
        .approve_plan("DISPATCH-1", "lead", true, &user())
        .await
        .unwrap();
    assert_eq!(review.issue.plan.status, Some(PlanStatus::Approved));
    assert_eq!(review.issue.plan.approved_by.as_deref(), Some("lead"));
    let imp = review.spawn.unwrap();
    assert!(imp.spawned(), "{imp:?}");
    let imp_run = imp.run_id.unwrap();
    d.dispatcher_step().await.unwrap();
    let job = w.runner.job(imp_run).unwrap();
    assert!(job.inputs["plan_content"].contains("cover refunds"));
    let issue = d.get_issue("DISPATCH-1").await.unwrap();
    assert_eq!(column_name(d, &issue).await, names::IN_PROGRESS);
    assert_eq!(issue.agent_status, AgentStatus::Implementing);

    d.finish_run(
        imp_run,
        RunResult {
            outcome: Some(Outcome::Completed),
            pr_number: Some(42),
            cost_usd: Some(3.0),
            ..Default::default()
        },
        &agent(),
    )
    .await
    .unwrap();
    let issue = d.get_issue("DISPATCH-1").await.unwrap();
    assert_eq!(column_name(d, &issue).await, names::IN_REVIEW);
    assert_eq!(issue.cost_usd, 4.25);

    // The issue came from an error: it cannot be closed without a verified fix.
    let e = d
        .move_issue("DISPATCH-1", ColumnRef::Name("Done".into()), &user())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(e.message.contains("Link a PR"), "{}", e.message);

    // PR merged → fix attempt → monitoring (no deploy signal configured).
    let pr = MergedPr {
        number: 42,
        url: Some("https://github.com/acme/app/pull/42".into()),
        title: Some("fix(billing): retry charges [DISPATCH-1]".into()),
        body: Some("Also touches UTF-8 handling (SHA-256 unaffected)".into()),
        head_branch: Some("auto-fix/dispatch-1".into()),
        base_branch: Some("main".into()),
        merged_at: w.clock.now(),
        merge_sha: Some("0123456789abcdef".into()),
    };
    let reports = d
        .pr_merged(&pr, &Actor::webhook("GitHub Webhook"))
        .await
        .unwrap();
    assert_eq!(reports.len(), 1, "only this workspace's identifier counts");
    assert!(reports[0].created);
    assert_eq!(reports[0].attempt.status, VerificationStatus::Monitoring);
    // Redelivery: no second attempt.
    let again = d
        .pr_merged(&pr, &Actor::webhook("GitHub Webhook"))
        .await
        .unwrap();
    assert!(!again[0].created);
    let status = d.fix_status("DISPATCH-1").await.unwrap();
    assert_eq!(status.attempts.len(), 1);
    assert!(!status.can_close);
    assert!(status.close_block_reason.unwrap().contains("~48 hours"));
    let e = d
        .move_issue("DISPATCH-1", ColumnRef::Name("Done".into()), &user())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    (issue.id, msg.to_string())
}

#[tokio::test]
async fn full_loop_recurrence_reopens_with_priority_up() {
    let w = world(config(SpawnPolicy::default())).await;
    let (issue_id, msg) = path_to_monitoring(&w).await;
    let before = w.d.get_issue(issue_id).await.unwrap();
    assert_eq!(before.priority, Priority::P3);

    // The same error comes back 10 hours into monitoring.
    w.clock.advance(Duration::hours(10));
    let r = w.d.ingest(loki(&msg, 3)).await.unwrap();
    assert!(!r.created);
    assert!(r.fix_failed);
    let issue = w.d.get_issue(issue_id).await.unwrap();
    assert_eq!(column_name(&w.d, &issue).await, names::BACKLOG);
    assert_eq!(issue.priority, Priority::P2);
    let labels = w.d.labels().await.unwrap();
    let fix_failed = labels
        .iter()
        .find(|l| l.name == names::LABEL_FIX_FAILED)
        .unwrap();
    assert!(issue.labels.contains(&fix_failed.id));
    let comments = w.d.comments(issue_id).await.unwrap();
    let last = comments.last().unwrap();
    assert!(last.body.contains("Fix Verification Failed"));
    assert!(last.body.contains("#42"));
    let status = w.d.fix_status(issue_id).await.unwrap();
    assert_eq!(status.latest.unwrap().status, VerificationStatus::Failed);
    // Still in cooldown from the error run: no new agent yet.
    assert_eq!(
        r.spawn.unwrap().decision.reason().unwrap().code(),
        "cooldown"
    );
    // The deadline passing later changes nothing: a failed attempt stays failed.
    w.clock.advance(Duration::hours(48));
    assert_eq!(w.d.sweeper_step().await.unwrap().verified, 0);
    let issue = w.d.get_issue(issue_id).await.unwrap();
    assert_eq!(column_name(&w.d, &issue).await, names::BACKLOG);
}

#[tokio::test]
async fn full_loop_verified_and_closed_at_deadline() {
    let w = world(config(SpawnPolicy::default())).await;
    let (issue_id, _) = path_to_monitoring(&w).await;
    w.clock.advance(Duration::hours(47));
    assert_eq!(w.d.sweeper_step().await.unwrap().verified, 0);
    w.clock.advance(Duration::hours(1));
    let sweep = w.d.sweeper_step().await.unwrap();
    assert_eq!(sweep.verified, 1);
    let issue = w.d.get_issue(issue_id).await.unwrap();
    assert_eq!(column_name(&w.d, &issue).await, names::DONE);
    let status = w.d.fix_status(issue_id).await.unwrap();
    assert_eq!(status.latest.unwrap().status, VerificationStatus::Verified);
    assert!(status.can_close);
    assert!(
        w.d.comments(issue_id)
            .await
            .unwrap()
            .last()
            .unwrap()
            .body
            .contains("Fix Verified")
    );
    // A second sweep does nothing more.
    assert_eq!(w.d.sweeper_step().await.unwrap().verified, 0);

    // The error returning after the issue closed reopens it as a regression.
    w.clock.advance(Duration::days(2));
    let r =
        w.d.ingest(loki(
            "Payment failed for customer cus_Q at 2026-01-20T10:00:00Z",
            1,
        ))
        .await
        .unwrap();
    assert!(r.reopened);
    // Back from Done to Backlog, and (cooldown long over) a new agent is on it at once.
    assert!(r.spawn.unwrap().spawned());
    let issue = w.d.get_issue(issue_id).await.unwrap();
    assert_eq!(column_name(&w.d, &issue).await, names::INVESTIGATING);
    assert!(
        w.d.comments(issue_id)
            .await
            .unwrap()
            .last()
            .unwrap()
            .body
            .contains("Regression")
    );
}

/// The error comes back after the verification window closed but before a sweep verified the
/// attempt (issue 10 #5): judged by the event's time, the fix held for its window — the attempt
/// is verified and the issue reopens as a regression, not "fix failed".
#[tokio::test]
async fn a_recurrence_after_the_deadline_but_before_the_sweep_is_a_regression() {
    let w = world(config(SpawnPolicy::default())).await;
    let (issue_id, msg) = path_to_monitoring(&w).await;
    w.clock.advance(Duration::hours(49));
    let r = w.d.ingest(loki(&msg, 1)).await.unwrap();
    assert!(!r.fix_failed, "the fix held for its whole window");
    assert!(
        r.reopened,
        "the error is back after a verified fix: a regression"
    );
    let status = w.d.fix_status(issue_id).await.unwrap();
    assert_eq!(status.latest.unwrap().status, VerificationStatus::Verified);
    let comments = w.d.comments(issue_id).await.unwrap();
    assert!(comments.iter().any(|c| c.body.contains("Fix Verified")));
    assert!(
        !comments
            .iter()
            .any(|c| c.body.contains("Fix Verification Failed"))
    );
    assert_eq!(
        w.d.sweeper_step().await.unwrap().verified,
        0,
        "nothing left to verify"
    );
}

#[tokio::test]
async fn deploy_signal_starts_monitoring_when_configured() {
    let mut c = config(SpawnPolicy::permissive());
    c.verify.wait_for_deploy = true;
    let w = world(c).await;
    let r = w.d.ingest(loki("boom", 1)).await.unwrap();
    let pr = MergedPr {
        number: 7,
        url: None,
        title: Some(format!("fix {}", r.issue.identifier)),
        body: None,
        head_branch: None,
        base_branch: None,
        merged_at: w.clock.now(),
        merge_sha: Some("abc".into()),
    };
    let rep = w.d.pr_merged(&pr, &Actor::webhook("GitHub")).await.unwrap();
    assert_eq!(rep[0].attempt.status, VerificationStatus::AwaitingDeploy);
    // A recurrence before the deploy is expected and fails nothing.
    w.d.finish_run(
        r.spawn.unwrap().run_id.unwrap(),
        RunResult::default(),
        &agent(),
    )
    .await
    .ok();
    let again = w.d.ingest(loki("boom", 1)).await.unwrap();
    assert!(!again.fix_failed);
    // Monitoring never ends while awaiting deploy.
    w.clock.advance(Duration::hours(100));
    assert_eq!(w.d.sweeper_step().await.unwrap().verified, 0);
    assert_eq!(
        w.d.deploy_signal(Some("feed"), w.clock.now())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        w.d.deploy_signal(Some("feed"), w.clock.now())
            .await
            .unwrap(),
        0
    );
    w.clock.advance(Duration::hours(48));
    assert_eq!(w.d.sweeper_step().await.unwrap().verified, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_ingests_of_one_fingerprint_make_one_issue() {
    let w = world(config(SpawnPolicy::default())).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let d = w.d.clone();
        let b = barrier.clone();
        tasks.push(tokio::spawn(async move {
            b.wait().await;
            // Volatile parts differ per delivery; the fingerprint does not.
            d.ingest(loki(
                &format!(
                    "Order {} failed for user 3f2a9c1e-7b4d-4e8a-9f00-{:012x}",
                    100000 + i,
                    i
                ),
                1 + i % 3,
            ))
            .await
            .unwrap()
        }));
    }
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        created += r.created as usize;
        ids.insert(r.issue.id);
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    let all = w.d.list_issues(&IssueFilter::default()).await.unwrap();
    assert_eq!(all.len(), 1);
    let links = w.store.links_for_issue(all[0].id).await.unwrap();
    let expected: u64 = (0..50u64).map(|i| 1 + i % 3).sum();
    assert_eq!(links[0].event_count, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_spawns_never_exceed_limits() {
    let mut policy = SpawnPolicy::permissive();
    policy.max_concurrent_prd = 5;
    policy.daily_budget_prd = 8;
    let w = world(config(policy)).await;
    let mut issues = Vec::new();
    for i in 0..50 {
        issues.push(
            w.d.create_issue(NewIssue::titled(format!("task {i}")), &user())
                .await
                .unwrap(),
        );
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = issues
        .iter()
        .map(|i| {
            let d = w.d.clone();
            let b = barrier.clone();
            let id = i.id;
            tokio::spawn(async move {
                b.wait().await;
                d.spawn(
                    id,
                    SpawnOptions::new(WorkflowKind::DeepResearch),
                    &Actor::user("bot"),
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut allowed = 0;
    let mut deferred = 0;
    for t in tasks {
        match t.await.unwrap().decision {
            Decision::Allow => allowed += 1,
            Decision::Defer { reason, .. } => {
                assert_eq!(reason.code(), "concurrency_limit");
                deferred += 1
            }
            Decision::Deny { reason } => panic!("unexpected deny {reason}"),
        }
    }
    assert_eq!((allowed, deferred), (5, 45));

    // Slots free up as runs end; the sweeper starts deferred spawns, never beyond 5 at once and
    // never beyond the daily budget of 8.
    let mut total_started = 5;
    for _ in 0..10 {
        w.d.dispatcher_step().await.unwrap();
        let stats = w.store.spawn_stats(w.clock.now()).await.unwrap();
        assert!(stats.active_prd <= 5, "{stats:?}");
        for run in w.runner.calls() {
            let r = w.store.get_run(run).await.unwrap();
            if r.status == RunStatus::Running {
                w.d.finish_run(run, RunResult::default(), &agent())
                    .await
                    .unwrap();
            }
        }
        w.clock.advance(Duration::minutes(2));
        total_started += w.d.sweeper_step().await.unwrap().deferred_spawned;
    }
    let stats = w.store.spawn_stats(w.clock.now()).await.unwrap();
    assert_eq!(stats.spawned_today_prd, 8);
    assert_eq!(total_started, 8);
}

#[tokio::test]
async fn dispatcher_retries_with_backoff_then_fails_and_frees_the_slot() {
    let mut policy = SpawnPolicy::permissive();
    policy.max_concurrent_prd = 1;
    let w = world(config(policy)).await;
    let a =
        w.d.create_issue(NewIssue::titled("a"), &user())
            .await
            .unwrap();
    let b =
        w.d.create_issue(NewIssue::titled("b"), &user())
            .await
            .unwrap();
    w.runner.fail_next(
        3,
        ErrorKind::Upstream {
            service: "github".into(),
            status: 502,
        },
    );
    let run =
        w.d.spawn(a.id, SpawnOptions::new(WorkflowKind::Qa), &user())
            .await;
    assert!(run.is_err(), "qa needs a plan");
    let run =
        w.d.spawn(a.id, SpawnOptions::new(WorkflowKind::DeepResearch), &user())
            .await
            .unwrap()
            .run_id
            .unwrap();
    assert_eq!(w.d.dispatcher_step().await.unwrap(), 0);
    let r = w.store.get_run(run).await.unwrap();
    assert_eq!((r.status, r.dispatch_attempts), (RunStatus::Queued, 1));
    assert_eq!(r.not_before, w.clock.now() + Duration::seconds(10));
    // Not due yet.
    assert_eq!(w.d.dispatcher_step().await.unwrap(), 0);
    assert_eq!(w.runner.calls().len(), 1);
    w.clock.advance(Duration::seconds(10));
    w.d.dispatcher_step().await.unwrap();
    let r = w.store.get_run(run).await.unwrap();
    assert_eq!(
        r.not_before,
        w.clock.now() + Duration::seconds(20),
        "backoff doubles"
    );
    // The slot is held meanwhile.
    let other =
        w.d.spawn(b.id, SpawnOptions::new(WorkflowKind::DeepResearch), &user())
            .await
            .unwrap();
    assert!(matches!(other.decision, Decision::Defer { .. }));
    w.clock.advance(Duration::seconds(20));
    w.d.dispatcher_step().await.unwrap();
    let r = w.store.get_run(run).await.unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert!(r.outcome_summary.unwrap().contains("after 3 attempt"));
    let a = w.d.get_issue(a.id).await.unwrap();
    assert_eq!(a.spawn_status, Some(SpawnStatus::Failed));
    // The freed slot lets the deferred spawn go.
    w.clock.advance(Duration::minutes(1));
    assert_eq!(w.d.sweeper_step().await.unwrap().deferred_spawned, 1);
}

#[tokio::test]
async fn non_retryable_dispatch_error_fails_at_once() {
    let w = world(config(SpawnPolicy::permissive())).await;
    let a =
        w.d.create_issue(NewIssue::titled("a"), &user())
            .await
            .unwrap();
    w.runner.fail_next(1, ErrorKind::Unauthorized);
    let run =
        w.d.spawn(a.id, SpawnOptions::new(WorkflowKind::AutoTriage), &user())
            .await
            .unwrap()
            .run_id
            .unwrap();
    w.d.dispatcher_step().await.unwrap();
    assert_eq!(
        w.store.get_run(run).await.unwrap().status,
        RunStatus::Failed
    );
}

#[tokio::test]
async fn a_run_claimed_by_a_dead_process_is_dispatched_exactly_once_after_its_lease() {
    let w = world(config(SpawnPolicy::permissive())).await;
    let a =
        w.d.create_issue(NewIssue::titled("a"), &user())
            .await
            .unwrap();
    let run =
        w.d.spawn(a.id, SpawnOptions::new(WorkflowKind::DeepResearch), &user())
            .await
            .unwrap()
            .run_id
            .unwrap();
    // Another process claims it and dies before calling the runner.
    let claimed = w
        .store
        .claim_due_runs(w.clock.now(), Duration::minutes(5), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(w.d.dispatcher_step().await.unwrap(), 0);
    w.clock.advance(Duration::minutes(5));
    assert_eq!(w.d.dispatcher_step().await.unwrap(), 1);
    assert_eq!(w.d.dispatcher_step().await.unwrap(), 0);
    assert_eq!(w.runner.calls(), vec![run]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_engines_on_one_store_dispatch_each_run_exactly_once() {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::at_default());
    let runner = FakeRunner::new();
    let cfg = config(SpawnPolicy::permissive());
    let mk = || {
        Dispatch::builder(store.clone(), runner.clone())
            .clock(clock.clone())
            .config(cfg.clone())
            .build()
    };
    let (e1, e2) = (mk().await.unwrap(), mk().await.unwrap());
    assert_eq!(e1.workspace().id, e2.workspace().id);
    for i in 0..40 {
        let e = if i % 2 == 0 { &e1 } else { &e2 };
        let issue = e
            .create_issue(NewIssue::titled(format!("t{i}")), &user())
            .await
            .unwrap();
        e.spawn(
            issue.id,
            SpawnOptions::new(WorkflowKind::DeepResearch),
            &user(),
        )
        .await
        .unwrap();
    }
    let mut tasks = Vec::new();
    for e in [e1.clone(), e2.clone(), e1.clone(), e2.clone()] {
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                e.dispatcher_step().await.unwrap();
                e.sweeper_step().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let calls = runner.calls();
    let unique: std::collections::HashSet<_> = calls.iter().collect();
    assert_eq!(calls.len(), 40);
    assert_eq!(unique.len(), 40);
}

#[tokio::test]
async fn stale_runs_time_out_and_return_to_backlog() {
    let w = world(config(SpawnPolicy::permissive())).await;
    let r = w.d.ingest(loki("db down", 1)).await.unwrap();
    let run = r.spawn.unwrap().run_id.unwrap();
    w.d.dispatcher_step().await.unwrap();
    let issue = w.d.get_issue(r.issue.id).await.unwrap();
    assert_eq!(column_name(&w.d, &issue).await, names::INVESTIGATING);
    // Output keeps it alive past 45 minutes from the start.
    w.clock.advance(Duration::minutes(40));
    w.d.append_terminal(
        r.issue.id,
        &dispatch_core::engine::RunSelector::Current,
        "still working\n",
        None,
    )
    .await
    .unwrap();
    w.clock.advance(Duration::minutes(40));
    assert_eq!(w.d.sweeper_step().await.unwrap().timed_out, 0);
    w.clock.advance(Duration::minutes(6));
    assert_eq!(w.d.sweeper_step().await.unwrap().timed_out, 1);
    let run = w.store.get_run(run).await.unwrap();
    assert_eq!(run.status, RunStatus::TimedOut);
    assert!(run.outcome_summary.unwrap().contains("45m"));
    let issue = w.d.get_issue(r.issue.id).await.unwrap();
    assert_eq!(issue.spawn_status, Some(SpawnStatus::Failed));
    assert_eq!(column_name(&w.d, &issue).await, names::BACKLOG);
    assert_eq!(w.runner.cancelled(), vec![run.id]);
    // A late callback cannot resurrect it.
    w.d.finish_run(
        run.id,
        RunResult {
            outcome: Some(Outcome::Completed),
            ..Default::default()
        },
        &agent(),
    )
    .await
    .unwrap();
    assert_eq!(
        w.store.get_run(run.id).await.unwrap().status,
        RunStatus::TimedOut
    );
}

#[tokio::test]
async fn a_heartbeating_run_ends_when_its_heartbeats_stop_not_at_the_stale_timeout() {
    let w = world(config(SpawnPolicy::permissive())).await;
    assert_eq!(w.d.config().heartbeat_timeout, Duration::seconds(300));
    let r = w.d.ingest(loki("db down", 1)).await.unwrap();
    let run = r.spawn.unwrap().run_id.unwrap();
    w.d.dispatcher_step().await.unwrap();
    assert_eq!(
        w.store.get_run(run).await.unwrap().status,
        RunStatus::Running
    );
    // Heartbeats a minute apart keep it alive well past both timeouts.
    for _ in 0..50 {
        w.clock.advance(Duration::minutes(1));
        let beat = w.d.heartbeat(r.issue.id, None).await.unwrap();
        assert_eq!(beat.id, run);
        assert_eq!(w.d.sweeper_step().await.unwrap().timed_out, 0);
    }
    // Heartbeats stop: alive at 300 s of silence, ended just after.
    w.clock.advance(Duration::seconds(300));
    assert_eq!(w.d.sweeper_step().await.unwrap().timed_out, 0);
    assert_eq!(w.d.fleet_status().await.unwrap().stale_runs, 0);
    w.clock.advance(Duration::seconds(1));
    assert_eq!(w.d.fleet_status().await.unwrap().stale_runs, 1);
    assert_eq!(w.d.sweeper_step().await.unwrap().timed_out, 1);
    let ended = w.store.get_run(run).await.unwrap();
    assert_eq!(ended.status, RunStatus::TimedOut);
    assert_eq!(
        ended.outcome_summary.as_deref(),
        Some("Agent lost: no heartbeat for 300s")
    );
    assert_eq!(w.runner.cancelled(), vec![run]);
    let issue = w.d.get_issue(r.issue.id).await.unwrap();
    assert_eq!(issue.spawn_status, Some(SpawnStatus::Failed));
    // A late heartbeat is answered with the ended run and changes nothing.
    let late = w.d.heartbeat(r.issue.id, None).await.unwrap();
    assert_eq!(late.status, RunStatus::TimedOut);
    assert_eq!(w.store.get_run(run).await.unwrap(), ended);
}

#[tokio::test]
async fn a_run_that_never_heartbeats_keeps_the_stale_timeout() {
    let w = world(config(SpawnPolicy::permissive())).await;
    let r = w.d.ingest(loki("db down", 1)).await.unwrap();
    let run = r.spawn.unwrap().run_id.unwrap();
    w.d.dispatcher_step().await.unwrap();
    // Silent far beyond the heartbeat timeout: a workflow without heartbeats (installed from
    // the original) is not cut short.
    w.clock.advance(Duration::minutes(45));
    assert_eq!(w.d.sweeper_step().await.unwrap().timed_out, 0);
    assert_eq!(
        w.store.get_run(run).await.unwrap().status,
        RunStatus::Running
    );
    w.clock.advance(Duration::seconds(1));
    assert_eq!(w.d.sweeper_step().await.unwrap().timed_out, 1);
    let ended = w.store.get_run(run).await.unwrap();
    assert_eq!(ended.status, RunStatus::TimedOut);
    assert!(ended.outcome_summary.unwrap().contains("45m"));
}

#[tokio::test]
async fn kill_switch_beats_force_and_cancel_ends_the_run() {
    let mut policy = SpawnPolicy::permissive();
    policy.kill_switch = true;
    let w = world(config(policy)).await;
    let a =
        w.d.create_issue(NewIssue::titled("a"), &user())
            .await
            .unwrap();
    let out =
        w.d.spawn(
            a.id,
            SpawnOptions {
                kind: WorkflowKind::AutoTriage,
                force: true,
                additional_context: None,
            },
            &user(),
        )
        .await
        .unwrap();
    assert_eq!(out.decision.reason().unwrap().code(), "kill_switch");
    let err = out.into_result().unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::GateDenied {
            reason: "kill_switch".into()
        }
    );

    let w = world(config(SpawnPolicy::permissive())).await;
    let a =
        w.d.create_issue(NewIssue::titled("a"), &user())
            .await
            .unwrap();
    let run =
        w.d.spawn(a.id, SpawnOptions::new(WorkflowKind::AutoTriage), &user())
            .await
            .unwrap()
            .run_id
            .unwrap();
    let dup =
        w.d.spawn(a.id, SpawnOptions::new(WorkflowKind::AutoTriage), &user())
            .await
            .unwrap();
    assert_eq!(dup.decision.reason().unwrap().code(), "already_running");
    w.d.dispatcher_step().await.unwrap();
    assert_eq!(
        w.d.cancel(a.id, &user()).await.unwrap(),
        dispatch_core::engine::CancelOutcome::Cancelled {
            runner_confirmed: true
        }
    );
    assert_eq!(
        w.store.get_run(run).await.unwrap().status,
        RunStatus::Cancelled
    );
    assert_eq!(
        w.d.get_issue(a.id).await.unwrap().spawn_status,
        Some(SpawnStatus::Cancelled)
    );
    assert_eq!(
        w.d.cancel(a.id, &user()).await.unwrap_err().kind,
        ErrorKind::Conflict
    );
}

#[tokio::test]
async fn issues_without_error_links_close_freely_and_history_records_changes() {
    let w = world(EngineConfig::default()).await;
    let i =
        w.d.create_issue(NewIssue::titled("feature"), &user())
            .await
            .unwrap();
    let i =
        w.d.update_issue(
            i.id,
            IssueChanges {
                priority: Some(Priority::P1),
                column: Some(ColumnRef::Name("done".into())),
                title: Some("Feature X".into()),
                ..Default::default()
            },
            &user(),
        )
        .await
        .unwrap();
    assert_eq!(column_name(&w.d, &i).await, names::DONE);
    let h = w.d.history(i.id, 10).await.unwrap();
    let actions: Vec<_> = h.iter().map(|e| e.action).collect();
    use dispatch_core::issue::HistoryAction::*;
    assert!(
        actions.contains(&StatusChanged)
            && actions.contains(&PriorityChanged)
            && actions.contains(&Edited)
    );
    assert!(actions.contains(&Created));
    assert!(
        h.iter()
            .all(|e| e.actor.name == "ann" || e.action == Created)
    );
    let e =
        w.d.update_issue(
            i.id,
            IssueChanges {
                column: Some(ColumnRef::Name("Nope".into())),
                ..Default::default()
            },
            &user(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("status"));
}

#[tokio::test]
async fn customers_portal_and_health() {
    let w = world(EngineConfig::default()).await;
    let c =
        w.d.create_customer(dispatch_core::customer::NewCustomer {
            name: "Acme Inc".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(c.slug, "acme-inc");
    assert_eq!(
        w.d.portal_customer("acme-inc", &c.portal_token)
            .await
            .unwrap()
            .id,
        c.id
    );
    assert_eq!(
        w.d.portal_customer("other", &c.portal_token)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::Unauthorized
    );
    let c2 = w.d.regenerate_portal_token(c.id).await.unwrap();
    assert_ne!(c2.portal_token, c.portal_token);
    assert!(
        w.d.portal_customer("acme-inc", &c.portal_token)
            .await
            .is_err()
    );

    let mut n = NewIssue::titled("login broken");
    n.customer_id = Some(c.id);
    n.priority = Priority::P1;
    let i = w.d.create_issue(n, &user()).await.unwrap();
    assert!(w.d.add_watcher(i.id, c.id).await.unwrap());
    let watched =
        w.d.list_issues(&IssueFilter {
            watched_by: Some(c.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(watched.len(), 1);
    w.clock.advance(Duration::days(4));
    let h = w.d.customer_health(c.id).await.unwrap();
    // 1 critical stale (-20), 1 stale (-10), 1 high priority open (-5).
    assert_eq!(h.score, 65);
    assert_eq!(h.metrics.unresponded_issues, 1);
    assert_eq!(h.color, "#f59e0b");
}

#[tokio::test]
async fn agent_callbacks_are_idempotent_and_scoped_to_the_issue() {
    let w = world(config(SpawnPolicy::permissive())).await;
    let a =
        w.d.create_issue(NewIssue::titled("a"), &user())
            .await
            .unwrap();
    let b =
        w.d.create_issue(NewIssue::titled("b"), &user())
            .await
            .unwrap();
    let run =
        w.d.spawn(a.id, SpawnOptions::new(WorkflowKind::DeepResearch), &user())
            .await
            .unwrap()
            .run_id
            .unwrap();
    w.d.dispatcher_step().await.unwrap();
    use dispatch_core::engine::RunSelector;
    let c1 =
        w.d.append_terminal(a.id, &RunSelector::Id(run), "one", Some(1))
            .await
            .unwrap();
    let again =
        w.d.append_terminal(a.id, &RunSelector::Id(run), "one", Some(1))
            .await
            .unwrap();
    assert_eq!(c1, again);
    assert_eq!(w.d.read_terminal(run, 0, 10).await.unwrap().len(), 1);
    // The runner's id finds the run too.
    let ext = format!("fake-{run}");
    assert_eq!(
        w.d.resolve_run(a.id, &RunSelector::External(ext))
            .await
            .unwrap()
            .id,
        run
    );
    // Another issue's run is refused.
    let e =
        w.d.append_terminal(b.id, &RunSelector::Id(run), "x", None)
            .await
            .unwrap_err();
    assert_eq!(e.field(), Some("run"));
    w.d.report_blocker(
        a.id,
        dispatch_core::run::Blocker {
            category: dispatch_core::run::BlockerCategory::MissingEnv,
            reason: "STRIPE_KEY unset".into(),
        },
        &agent(),
    )
    .await
    .unwrap();
    let a2 = w.d.get_issue(a.id).await.unwrap();
    assert_eq!(a2.agent_status, AgentStatus::Blocked);
    assert_eq!(
        a2.blocked_reason.as_deref(),
        Some("[missing_env] STRIPE_KEY unset")
    );
    w.d.finish_run(
        run,
        RunResult {
            outcome: Some(Outcome::Blocked),
            ..Default::default()
        },
        &agent(),
    )
    .await
    .unwrap();
    // Blocked stays visible after the run ends.
    assert_eq!(
        w.d.get_issue(a.id).await.unwrap().agent_status,
        AgentStatus::Blocked
    );
}

#[tokio::test]
async fn sentry_errors_do_not_auto_spawn_and_dedupe_by_their_own_id() {
    let w = world(config(SpawnPolicy::permissive())).await;
    let mut e = ErrorEvent::new("sentry", "backend", "api", "TypeError: x is undefined");
    e.external_id = Some("4509877862".into());
    e.title = Some("[backend] TypeError: x is undefined".into());
    e.priority = Some(Priority::P1);
    let r = w.d.ingest(e.clone()).await.unwrap();
    assert!(r.created && r.spawn.is_none());
    assert_eq!(r.issue.title, "[backend] TypeError: x is undefined");
    assert_eq!(r.issue.priority, Priority::P1);
    e.message = "TypeError: y is undefined".into();
    let r2 = w.d.ingest(e).await.unwrap();
    assert!(!r2.created);
    assert_eq!(r2.issue.id, r.issue.id);
    let labels = w.d.labels().await.unwrap();
    assert!(
        labels
            .iter()
            .any(|l| l.name == "Sentry" && r.issue.labels.contains(&l.id))
    );
}

#[tokio::test]
async fn invalid_events_name_the_field() {
    let w = world(EngineConfig::default()).await;
    let e =
        w.d.ingest(ErrorEvent::new("loki", "", "f", "m"))
            .await
            .unwrap_err();
    assert_eq!(e.field(), Some("source"));
    let e = w.d.ingest(loki("m", 0)).await.unwrap_err();
    assert_eq!(e.field(), Some("event_count"));
}

#[tokio::test]
async fn run_loop_dispatches_without_waiting_for_a_tick_and_stops_on_cancel() {
    let mut c = config(SpawnPolicy::permissive());
    c.dispatcher_interval = std::time::Duration::from_secs(3600);
    c.sweeper_interval = std::time::Duration::from_secs(3600);
    let w = world(c).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let d = w.d.clone();
    let c2 = cancel.clone();
    let handle = tokio::spawn(async move { d.run(c2).await });
    let a =
        w.d.create_issue(NewIssue::titled("a"), &user())
            .await
            .unwrap();
    w.d.spawn(a.id, SpawnOptions::new(WorkflowKind::DeepResearch), &user())
        .await
        .unwrap();
    for _ in 0..200 {
        if !w.runner.calls().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(w.runner.calls().len(), 1);
    cancel.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(5), handle)
        .await
        .unwrap()
        .unwrap();
}

/// Columns read for rendering are kept briefly (a store round trip per rendered issue is what a
/// busy API spends its time on), but a change made through this process shows at once.
#[tokio::test]
async fn columns_for_display_show_this_process_changes_at_once() {
    let w = world(config(SpawnPolicy::default())).await;
    let before = w.d.columns_for_display().await.unwrap();
    assert_eq!(before, w.d.columns().await.unwrap());
    let added =
        w.d.add_column(dispatch_core::issue::NewColumn {
            name: "Blocked on vendor".into(),
            color: "#888888".into(),
            position: None,
            category: dispatch_core::issue::ColumnCategory::Open,
        })
        .await
        .unwrap();
    let after = w.d.columns_for_display().await.unwrap();
    assert_eq!(after.len(), before.len() + 1);
    assert!(after.iter().any(|c| c.id == added.id));
    let order: Vec<_> = after.iter().rev().map(|c| c.id).collect();
    w.d.reorder_columns(&order).await.unwrap();
    assert_eq!(
        w.d.columns_for_display().await.unwrap(),
        w.d.columns().await.unwrap(),
        "a reorder shows at once too"
    );
}
