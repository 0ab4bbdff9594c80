//! RunStore: the atomic spawn reservation with its gates, the run lifecycle and what it does to
//! the issue, dispatch claims, staleness, terminal output, activities, deferred spawns, stats and
//! pruning.

use super::support::*;
use crate::gate::{Decision, GateReason, LimitScope, SpawnPolicy};
use crate::ids::{IssueId, RunId};
use crate::issue::{AgentStatus, HistoryAction, Issue, IssuePatch, SpawnStatus};
use crate::run::{ActivityType, NewActivity, Outcome, RunPatch, RunStatus, WorkflowKind};
use std::collections::BTreeSet;

pub(super) fn cases() -> Vec<Case> {
    cases!("runs":
        reserve_spawn_allows_and_records_the_spawn_on_the_issue,
        reserve_spawn_refuses_a_second_active_run,
        reserve_spawn_reads_the_error_link_for_alerts,
        reserve_spawn_defers_once_per_issue_and_kind_and_settles,
        an_allowed_spawn_settles_the_issues_deferred_spawns,
        an_error_fix_sets_its_cooldown_in_the_transaction_that_ends_it,
        kill_switch_denies_even_forced_spawns,
        daily_budget_counts_per_utc_day,
        daily_cost_comes_from_run_costs,
        get_run_and_list_runs_newest_first,
        find_run_by_external_id,
        update_run_guards_status_moves_and_ends_once,
        run_end_moves_the_issue,
        issue_totals_are_sums_over_runs,
        claim_due_runs_respects_not_before_lease_and_limit,
        claims_count_up_and_fence_later_writes,
        stale_runs_by_last_callback_else_started,
        terminal_chunks_are_numbered_idempotent_and_gapless,
        activities_newest_first_with_before_paging,
        activity_keys_make_retries_idempotent,
        claim_due_deferred_leases,
        spawn_stats_counts,
        prune_removes_old_activities_and_chunks,
    )
}

fn ids(runs: &[crate::run::Run]) -> BTreeSet<RunId> {
    runs.iter().map(|r| r.id).collect()
}

async fn reserve_spawn_allows_and_records_the_spawn_on_the_issue(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let backlog = column_id(s, ws.id, "Backlog").await;
    let investigating = column_id(s, ws.id, "Investigating").await;
    let in_progress = column_id(s, ws.id, "In Progress").await;

    let expectations = [
        (
            WorkflowKind::ErrorFix,
            investigating,
            AgentStatus::Investigating,
        ),
        (
            WorkflowKind::PrdInvestigate,
            investigating,
            AgentStatus::Investigating,
        ),
        (
            WorkflowKind::AutoTriage,
            investigating,
            AgentStatus::Triaging,
        ),
        (
            WorkflowKind::PrdImplement,
            in_progress,
            AgentStatus::Implementing,
        ),
        (WorkflowKind::Qa, backlog, AgentStatus::Testing),
        (
            WorkflowKind::DeepResearch,
            backlog,
            AgentStatus::Researching,
        ),
    ];
    for (kind, column, agent) in expectations {
        let i = issue(s, ws.id, kind.as_str()).await;
        let mut req = spawn(i.id, kind, permissive());
        req.additional_context = Some("look at billing".into());
        let r = reserve(s, &req, mins(1)).await;
        assert_eq!(r.decision, Decision::Allow, "{kind}");
        let run = r.run.expect("an allowed spawn returns the queued run");
        assert_eq!(
            (run.issue_id, run.kind, run.status),
            (i.id, kind, RunStatus::Queued)
        );
        assert_eq!(
            (run.created_at, run.not_before, run.updated_at),
            (mins(1), mins(1), mins(1))
        );
        assert_eq!(
            (
                run.force,
                run.requested_by.as_str(),
                run.additional_context.as_deref()
            ),
            (false, "conformance", Some("look at billing"))
        );
        assert_eq!(
            (
                run.dispatch_attempts,
                run.lease_until,
                run.external_id.clone(),
                run.completed_at
            ),
            (0, None, None, None)
        );
        assert_eq!(
            s.get_run(run.id).await.expect("get_run"),
            run,
            "the returned run is the stored one"
        );

        let after = &r.issue;
        assert_eq!(after.spawn_status, Some(SpawnStatus::Queued), "{kind}");
        assert_eq!(after.spawn_kind, Some(kind));
        assert_eq!(after.current_run_id, Some(run.id));
        assert_eq!(after.agent_status, agent, "{kind}");
        assert_eq!(after.spawn_attempt_count, 1);
        assert_eq!(
            (after.spawn_started_at, after.spawn_completed_at),
            (Some(mins(1)), None)
        );
        assert_eq!(
            after.column_id, column,
            "{kind} moves the issue from Backlog accordingly"
        );
        assert_eq!(after.version, i.version + 1);
        assert_eq!(
            get(s, &i).await,
            *after,
            "the returned issue is the stored one"
        );
        let actions: Vec<HistoryAction> = s
            .list_history(i.id, 10)
            .await
            .expect("history")
            .iter()
            .map(|h| h.action)
            .collect();
        assert!(
            actions.contains(&HistoryAction::AgentStarted),
            "{kind}: {actions:?}"
        );
        assert_eq!(
            actions.contains(&HistoryAction::StatusChanged),
            column != backlog,
            "{kind}: {actions:?}"
        );
    }

    // Only Backlog moves: an error fix on an issue in progress stays there.
    let busy = issue(s, ws.id, "busy").await;
    move_to(s, busy.id, in_progress, mins(2)).await;
    let run = allow(s, busy.id, WorkflowKind::ErrorFix, mins(3)).await;
    assert_eq!(get(s, &busy).await.column_id, in_progress);

    // A second spawn after the first ended counts the attempt.
    set_status(s, run.id, RunStatus::Running, mins(4)).await;
    set_status(s, run.id, RunStatus::Completed, mins(5)).await;
    let second = allow(s, busy.id, WorkflowKind::ErrorFix, mins(6)).await;
    let now = get(s, &busy).await;
    assert_eq!(
        (
            now.spawn_attempt_count,
            now.current_run_id,
            now.spawn_status
        ),
        (2, Some(second.id), Some(SpawnStatus::Queued))
    );
    assert_eq!(
        (now.spawn_started_at, now.spawn_completed_at),
        (Some(mins(6)), None)
    );

    not_found(
        s.reserve_spawn(
            &spawn(IssueId::new(), WorkflowKind::ErrorFix, permissive()),
            mins(7),
        )
        .await,
        "a spawn on an unknown issue",
    );
}

async fn reserve_spawn_refuses_a_second_active_run(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "busy").await;
    let run = allow(s, i.id, WorkflowKind::ErrorFix, mins(1)).await;
    let before = get(s, &i).await;

    for (status, at) in [
        (None, 2),
        (Some(RunStatus::Dispatching), 3),
        (Some(RunStatus::Running), 4),
    ] {
        if let Some(st) = status {
            set_status(s, run.id, st, mins(at)).await;
        }
        let before = get(s, &i).await;
        for (kind, force) in [
            (WorkflowKind::ErrorFix, false),
            (WorkflowKind::PrdInvestigate, false),
            (WorkflowKind::ErrorFix, true),
        ] {
            let mut req = spawn(i.id, kind, permissive());
            req.force = force;
            let r = reserve(s, &req, mins(at)).await;
            assert_eq!(
                r.decision,
                Decision::Deny {
                    reason: GateReason::AlreadyRunning
                },
                "while {status:?}, {kind}, force={force}"
            );
            assert_eq!(r.run, None);
            assert_eq!(
                r.issue, before,
                "a denied spawn returns the issue as it was"
            );
        }
        assert_eq!(get(s, &i).await, before, "a denied spawn writes nothing");
    }
    assert_eq!(s.list_runs(i.id).await.expect("list_runs").len(), 1);
    assert_eq!(
        s.list_deferred(i.id).await.expect("list_deferred"),
        vec![],
        "already_running is not deferred"
    );
    assert_eq!(before.spawn_attempt_count, 1);

    set_status(s, run.id, RunStatus::Failed, mins(10)).await;
    let next = allow(s, i.id, WorkflowKind::ErrorFix, mins(11)).await;
    assert_ne!(next.id, run.id, "a terminal run frees the issue");
}

async fn reserve_spawn_reads_the_error_link_for_alerts(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let ing = s
        .ingest_error(ws.id, draft("loki", "fp-alert", 2, t0()))
        .await
        .expect("ingest");
    let i = ing.issue.id;
    let mut policy = SpawnPolicy::permissive();
    policy.min_event_count = 3;
    let mut req = spawn(i, WorkflowKind::ErrorFix, policy.clone());
    req.from_alert = true;

    let r = reserve(s, &req, mins(1)).await;
    assert_eq!(
        r.decision,
        Decision::Deny {
            reason: GateReason::BelowEventThreshold {
                need: 3,
                have: 2,
                source: "loki".into()
            }
        },
        "the store passes the link's event count and source to the gates"
    );
    assert_eq!(s.list_runs(i).await.expect("list_runs"), vec![]);

    let manual = spawn(i, WorkflowKind::ErrorFix, policy.clone());
    s.ingest_error(ws.id, draft("loki", "fp-alert", 1, mins(2)))
        .await
        .expect("ingest");
    let r = reserve(s, &req, mins(3)).await;
    assert_eq!(r.decision, Decision::Allow, "3 events reach the threshold");
    let run = r.run.expect("run");
    set_status(s, run.id, RunStatus::Running, mins(3)).await;
    set_status(s, run.id, RunStatus::Completed, mins(4)).await;

    s.set_cooldown(i, mins(60)).await.expect("set_cooldown");
    let r = reserve(s, &req, mins(5)).await;
    assert_eq!(
        r.decision,
        Decision::Deny {
            reason: GateReason::Cooldown { until: mins(60) }
        },
        "the link's cooldown applies to alerts"
    );
    let r = reserve(s, &manual, mins(6)).await;
    assert_eq!(
        r.decision,
        Decision::Allow,
        "a manual spawn ignores the error cooldown"
    );
    let run = r.run.expect("run");
    set_status(s, run.id, RunStatus::Running, mins(6)).await;
    set_status(s, run.id, RunStatus::Completed, mins(7)).await;
    let r = reserve(s, &req, mins(61)).await;
    assert_eq!(
        r.decision,
        Decision::Allow,
        "after the cooldown an alert spawns again"
    );
    assert_eq!(r.issue.spawn_attempt_count, 3);
}

/// A deferred spawn left behind after another spawn of its issue was allowed would fire later
/// and queue a second run: the allowed spawn settles every deferred spawn of the issue.
async fn an_allowed_spawn_settles_the_issues_deferred_spawns(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let ing = s
        .ingest_error(ws.id, draft("loki", "fp-settle", 5, t0()))
        .await
        .expect("ingest");
    let i = ing.issue.clone();
    let other = issue(s, ws.id, "unrelated").await;
    let mut delay = SpawnPolicy::permissive();
    delay.spawn_delay = Duration::minutes(30);
    let mut alert = spawn(i.id, WorkflowKind::ErrorFix, delay.clone());
    alert.from_alert = true;
    let r = reserve(s, &alert, mins(1)).await;
    assert_eq!(code(&r.decision), "spawn_delay");
    let mut busy = SpawnPolicy::permissive();
    busy.max_concurrent_prd = 0;
    let r = reserve(
        s,
        &spawn(i.id, WorkflowKind::AutoTriage, busy.clone()),
        mins(1),
    )
    .await;
    assert_eq!(code(&r.decision), "concurrency_limit");
    let r = reserve(s, &spawn(other.id, WorkflowKind::AutoTriage, busy), mins(1)).await;
    assert_eq!(code(&r.decision), "concurrency_limit");
    assert_eq!(s.list_deferred(i.id).await.expect("list").len(), 2);

    // A person sends an agent now: it is allowed, and nothing of the issue is left to fire.
    let run = allow(s, i.id, WorkflowKind::PrdInvestigate, mins(2)).await;
    assert!(
        s.list_deferred(i.id).await.expect("list").is_empty(),
        "the issue's deferred spawns are settled by the allowed one"
    );
    assert_eq!(
        s.list_deferred(other.id).await.expect("list").len(),
        1,
        "another issue's deferred spawn stays"
    );
    // Even after that run ends, nothing is due for the issue.
    set_status(s, run.id, RunStatus::Running, mins(3)).await;
    set_status(s, run.id, RunStatus::Completed, mins(4)).await;
    let due = s
        .claim_due_deferred(mins(120), Duration::minutes(5), 10)
        .await
        .expect("claim_due_deferred");
    assert!(
        due.iter().all(|d| d.issue_id != i.id),
        "no deferred spawn of the issue fires later: {due:?}"
    );
}

/// The cooldown was written after the run end committed (and after two event publishes): an
/// alert in between, or a crash, spawned again at once. Now `update_run` sets it.
async fn an_error_fix_sets_its_cooldown_in_the_transaction_that_ends_it(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let ing = s
        .ingest_error(ws.id, draft("loki", "fp-cool", 5, t0()))
        .await
        .expect("ingest");
    let i = ing.issue.clone();
    let mut policy = SpawnPolicy::permissive();
    policy.cooldown = Duration::hours(2);
    let mut req = spawn(i.id, WorkflowKind::ErrorFix, policy.clone());
    req.from_alert = true;
    let r = reserve(s, &req, mins(1)).await;
    assert_eq!(r.decision, Decision::Allow);
    let run = r.run.expect("run");
    assert_eq!(
        run.cooldown_seconds,
        Some(7200),
        "the run carries its cooldown"
    );
    set_status(s, run.id, RunStatus::Running, mins(2)).await;
    let before_end = s.links_for_issue(i.id).await.expect("links");
    assert_eq!(
        before_end[0].cooldown_until, None,
        "no cooldown while it runs"
    );
    let u = set_status(s, run.id, RunStatus::Failed, mins(10)).await;
    assert!(u.ended);
    let links = s.links_for_issue(i.id).await.expect("links");
    assert_eq!(
        links[0].cooldown_until,
        Some(mins(10) + Duration::hours(2)),
        "set by the update that ended the run"
    );
    // The next alert is refused by the cooldown, with no other write in between.
    let r = reserve(s, &req, mins(11)).await;
    assert_eq!(code(&r.decision), "cooldown");
    // A late second end does not push the cooldown further.
    set_status(s, run.id, RunStatus::TimedOut, mins(30)).await;
    assert_eq!(
        s.links_for_issue(i.id).await.expect("links")[0].cooldown_until,
        Some(mins(10) + Duration::hours(2))
    );

    // Other kinds leave the error alone.
    let ing2 = s
        .ingest_error(ws.id, draft("loki", "fp-cool-2", 5, t0()))
        .await
        .expect("ingest");
    let triage = allow(s, ing2.issue.id, WorkflowKind::AutoTriage, mins(12)).await;
    assert_eq!(triage.cooldown_seconds, None);
    set_status(s, triage.id, RunStatus::Running, mins(13)).await;
    set_status(s, triage.id, RunStatus::Completed, mins(14)).await;
    assert_eq!(
        s.links_for_issue(ing2.issue.id).await.expect("links")[0].cooldown_until,
        None
    );
}

/// Every claim for dispatch has a new number; a write fenced to an older claim is a conflict
/// and changes nothing (a dispatcher whose lease ran out cannot overwrite the newer claim).
async fn claims_count_up_and_fence_later_writes(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "claimed").await;
    let run = allow(s, i.id, WorkflowKind::AutoTriage, mins(0)).await;
    assert_eq!(run.claim, 0);
    let first = s
        .claim_due_runs(mins(1), Duration::minutes(5), 10)
        .await
        .expect("claim");
    assert_eq!((first[0].claim, first[0].lease_until), (1, Some(mins(6))));
    assert!(
        s.claim_due_runs(mins(3), Duration::minutes(5), 10)
            .await
            .expect("claim")
            .is_empty(),
        "held while the lease lasts"
    );
    let second = s
        .claim_due_runs(mins(7), Duration::minutes(5), 10)
        .await
        .expect("claim");
    assert_eq!(second[0].claim, 2, "an expired lease is claimed anew");
    let fenced = RunPatch {
        status: Some(RunStatus::Running),
        external_id: Some("old-claim".into()),
        expect_claim: Some(1),
        ..Default::default()
    };
    conflict(
        s.update_run(run.id, &fenced, &actor(), mins(8)).await,
        "a write holding the older claim",
    );
    let r = s.get_run(run.id).await.expect("get_run");
    assert_eq!(
        (r.status, r.external_id, r.claim),
        (RunStatus::Dispatching, None, 2)
    );
    let u = patch_run(
        s,
        run.id,
        RunPatch {
            expect_claim: Some(2),
            ..fenced
        },
        mins(8),
    )
    .await;
    assert_eq!(
        (u.run.status, u.run.external_id.as_deref()),
        (RunStatus::Running, Some("old-claim"))
    );
}

/// A callback retried by its sender (a timeout on its side after we stored it) carries the same
/// idempotency key: it is answered with the stored activity, not stored twice.
async fn activity_keys_make_retries_idempotent(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let a = issue(s, ws.id, "a").await;
    let b = issue(s, ws.id, "b").await;
    let mut post = NewActivity::new(ActivityType::Action, "ran the migration");
    post.key = Some("step-7".into());
    let first = s
        .add_activity(a.id, post.clone(), mins(1))
        .await
        .expect("first");
    let retry = s
        .add_activity(a.id, post.clone(), mins(2))
        .await
        .expect("retry");
    assert_eq!(
        retry, first,
        "the retry is answered with the stored activity"
    );
    assert_eq!(
        s.list_activities(a.id, None, 10).await.expect("list").len(),
        1,
        "stored once"
    );
    let mut other = NewActivity::new(ActivityType::Action, "something else");
    other.key = Some("step-7".into());
    conflict(
        s.add_activity(a.id, other, mins(3)).await,
        "a key reused for another activity",
    );
    // Keys are per issue; no key is no deduplication.
    s.add_activity(b.id, post, mins(4))
        .await
        .expect("other issue");
    let plain = NewActivity::new(ActivityType::Action, "ran the migration");
    s.add_activity(a.id, plain.clone(), mins(5))
        .await
        .expect("no key");
    s.add_activity(a.id, plain, mins(6)).await.expect("no key");
    assert_eq!(
        s.list_activities(a.id, None, 10).await.expect("list").len(),
        3
    );
    let mut bad = NewActivity::new(ActivityType::Action, "x");
    bad.key = Some("k".repeat(201));
    invalid(
        s.add_activity(a.id, bad, mins(7)).await,
        "idempotencyKey",
        "an overlong key",
    );
}

async fn reserve_spawn_defers_once_per_issue_and_kind_and_settles(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let ing = s
        .ingest_error(ws.id, draft("loki", "fp-delay", 5, t0()))
        .await
        .expect("ingest");
    let i = ing.issue.clone();
    let mut delay = SpawnPolicy::permissive();
    delay.spawn_delay = Duration::minutes(5);
    let mut req = spawn(i.id, WorkflowKind::ErrorFix, delay.clone());
    req.from_alert = true;

    let r = reserve(s, &req, mins(1)).await;
    assert!(
        matches!(r.decision, Decision::Defer { until, reason: GateReason::SpawnDelay { .. } } if until == mins(5)),
        "{:?}",
        r.decision
    );
    assert_eq!(
        (r.run.clone(), r.issue.clone()),
        (None, i.clone()),
        "a deferral leaves the issue as it was"
    );
    let deferred = s.list_deferred(i.id).await.expect("list_deferred");
    assert_eq!(deferred.len(), 1, "a deferral is persisted");
    let d = deferred[0].clone();
    assert_eq!(
        (d.issue_id, d.kind, d.from_alert, d.force),
        (i.id, WorkflowKind::ErrorFix, true, false)
    );
    assert_eq!(
        (d.due_at, d.created_at, d.lease_until),
        (mins(5), mins(1), None)
    );
    assert_eq!(&d.actor, &actor());
    assert!(d.reason.starts_with("spawn_delay"), "reason {:?}", d.reason);

    let r = reserve(s, &req, mins(2)).await;
    assert_eq!(code(&r.decision), "spawn_delay");
    let again = s.list_deferred(i.id).await.expect("list_deferred");
    assert_eq!(
        again.len(),
        1,
        "re-deferring the same issue and kind keeps one record"
    );
    assert_eq!((again[0].id, again[0].due_at), (d.id, mins(5)));

    let mut busy = delay.clone();
    busy.max_concurrent_error = 0;
    let mut req_busy = req.clone();
    req_busy.policy = busy;
    let r = reserve(s, &req_busy, mins(6)).await;
    assert_eq!(
        r.decision,
        Decision::Defer {
            until: mins(7),
            reason: GateReason::ConcurrencyLimit {
                scope: LimitScope::Error,
                limit: 0
            }
        }
    );
    let again = s.list_deferred(i.id).await.expect("list_deferred");
    assert_eq!(again.len(), 1, "still one record");
    assert_eq!(again[0].id, d.id, "the same record, updated");
    assert_eq!(again[0].due_at, mins(7), "re-deferring moves the due time");
    assert!(
        again[0].reason.starts_with("concurrency_limit"),
        "and the reason: {:?}",
        again[0].reason
    );

    let mut no_prd = SpawnPolicy::permissive();
    no_prd.max_concurrent_prd = 0;
    let r = reserve(
        s,
        &spawn(i.id, WorkflowKind::PrdInvestigate, no_prd),
        mins(6),
    )
    .await;
    assert_eq!(code(&r.decision), "concurrency_limit");
    let both = s.list_deferred(i.id).await.expect("list_deferred");
    assert_eq!(both.len(), 2, "another kind is another record");
    let prd = both
        .iter()
        .find(|x| x.kind == WorkflowKind::PrdInvestigate)
        .expect("prd record")
        .clone();
    assert_eq!((prd.from_alert, prd.due_at), (false, mins(7)));
    assert_eq!(get(s, &i).await, i, "deferrals never touch the issue");
    assert_eq!(s.list_runs(i.id).await.expect("list_runs"), vec![]);

    // The sweeper retries with the record's id: allowed, it is settled.
    let mut retry = req.clone();
    retry.deferred_id = Some(d.id);
    let r = reserve(s, &retry, mins(8)).await;
    assert_eq!(r.decision, Decision::Allow);
    assert!(r.run.is_some());
    let left = s.list_deferred(i.id).await.expect("list_deferred");
    assert_eq!(
        left.iter().map(|x| x.id).collect::<Vec<_>>(),
        Vec::<crate::ids::DeferredSpawnId>::new(),
        "an allowed retry settles its record and the issue's other deferred spawns ({:?})",
        prd.id
    );

    // A denied retry settles it too.
    let other = issue(s, ws.id, "other").await;
    let mut no_prd = SpawnPolicy::permissive();
    no_prd.max_concurrent_prd = 0;
    reserve(
        s,
        &spawn(other.id, WorkflowKind::DeepResearch, no_prd),
        mins(8),
    )
    .await;
    let od = s.list_deferred(other.id).await.expect("list_deferred");
    assert_eq!(od.len(), 1);
    let mut kill = SpawnPolicy::permissive();
    kill.kill_switch = true;
    let mut retry = spawn(other.id, WorkflowKind::DeepResearch, kill);
    retry.deferred_id = Some(od[0].id);
    let r = reserve(s, &retry, mins(9)).await;
    assert_eq!(code(&r.decision), "kill_switch");
    assert_eq!(
        s.list_deferred(other.id).await.expect("list_deferred"),
        vec![],
        "a denied retry settles its record"
    );
    assert_eq!(
        s.list_deferred(i.id).await.expect("list_deferred").len(),
        0,
        "the first issue's records stay settled"
    );
}

async fn kill_switch_denies_even_forced_spawns(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "stopped").await;
    let mut kill = SpawnPolicy::permissive();
    kill.kill_switch = true;
    for (force, from_alert) in [(false, false), (true, false), (true, true)] {
        let mut req = spawn(i.id, WorkflowKind::ErrorFix, kill.clone());
        req.force = force;
        req.from_alert = from_alert;
        let r = reserve(s, &req, mins(1)).await;
        assert_eq!(
            r.decision,
            Decision::Deny {
                reason: GateReason::KillSwitch
            },
            "force={force}"
        );
        assert_eq!(r.run, None);
    }
    assert_eq!(get(s, &i).await, i, "nothing recorded on the issue");
    assert_eq!(s.list_runs(i.id).await.expect("list_runs"), vec![]);
    assert_eq!(s.list_deferred(i.id).await.expect("list_deferred"), vec![]);
    let stats = s.spawn_stats(mins(2)).await.expect("spawn_stats");
    assert_eq!(
        (stats.spawned_today_error, stats.active_error, stats.queued),
        (0, 0, 0)
    );

    let mut forced = spawn(i.id, WorkflowKind::ErrorFix, {
        let mut p = SpawnPolicy::permissive();
        p.max_concurrent_error = 0;
        p.daily_budget_error = 0;
        p
    });
    forced.force = true;
    let r = reserve(s, &forced, mins(3)).await;
    assert_eq!(
        r.decision,
        Decision::Allow,
        "force skips every gate but the kill switch"
    );
    assert!(r.run.expect("run").force);
}

async fn daily_budget_counts_per_utc_day(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let mut policy = SpawnPolicy::permissive();
    policy.daily_budget_error = 2;
    let mut issues = Vec::new();
    for n in 0..6 {
        issues.push(issue(s, ws.id, &format!("issue {n}")).await.id);
    }
    let reserve_at = |i: IssueId, kind: WorkflowKind, at| {
        let req = spawn(i, kind, policy.clone());
        async move { reserve(s, &req, at).await }
    };
    let (d1, d2) = ((2026, 1, 15), (2026, 1, 16));
    let at = |d: (i32, u32, u32), h, m| utc(d.0, d.1, d.2, h, m);

    assert_eq!(
        code(
            &reserve_at(issues[0], WorkflowKind::ErrorFix, at(d1, 23, 50))
                .await
                .decision
        ),
        "allow"
    );
    assert_eq!(
        code(
            &reserve_at(issues[1], WorkflowKind::ErrorFix, at(d1, 23, 51))
                .await
                .decision
        ),
        "allow"
    );
    let r = reserve_at(issues[2], WorkflowKind::ErrorFix, at(d1, 23, 52)).await;
    assert_eq!(
        r.decision,
        Decision::Deny {
            reason: GateReason::DailyBudget {
                scope: LimitScope::Error,
                limit: 2
            }
        }
    );
    assert_eq!(
        code(
            &reserve_at(issues[3], WorkflowKind::PrdInvestigate, at(d1, 23, 53))
                .await
                .decision
        ),
        "allow",
        "the prd bucket has its own budget"
    );

    // Past midnight UTC the budget is fresh, though the earlier runs are still active.
    assert_eq!(
        code(
            &reserve_at(issues[2], WorkflowKind::ErrorFix, at(d2, 0, 5))
                .await
                .decision
        ),
        "allow"
    );
    assert_eq!(
        code(
            &reserve_at(issues[4], WorkflowKind::ErrorFix, at(d2, 0, 6))
                .await
                .decision
        ),
        "allow"
    );
    assert_eq!(
        code(
            &reserve_at(issues[5], WorkflowKind::ErrorFix, at(d2, 0, 7))
                .await
                .decision
        ),
        "daily_budget"
    );

    let late = s.spawn_stats(at(d1, 23, 59)).await.expect("spawn_stats");
    assert_eq!(
        (late.spawned_today_error, late.spawned_today_prd),
        (2, 1),
        "the 15th counts only its own runs"
    );
    let next = s.spawn_stats(at(d2, 0, 10)).await.expect("spawn_stats");
    assert_eq!(
        (next.spawned_today_error, next.spawned_today_prd),
        (2, 0),
        "the 16th counts only its own runs"
    );
    assert_eq!(
        next.active_error, 4,
        "concurrency counts active runs of any day"
    );
}

async fn daily_cost_comes_from_run_costs(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let mut policy = SpawnPolicy::permissive();
    policy.daily_cost_limit_usd = 10.0;
    let a = issue(s, ws.id, "expensive").await;
    let b = issue(s, ws.id, "next").await;

    let run = running(s, a.id, WorkflowKind::ErrorFix, mins(1)).await;
    patch_run(
        s,
        run.id,
        RunPatch {
            cost_usd: Some(4.0),
            ..Default::default()
        },
        mins(2),
    )
    .await;
    let r = reserve(
        s,
        &spawn(b.id, WorkflowKind::PrdInvestigate, policy.clone()),
        mins(3),
    )
    .await;
    assert_eq!(r.decision, Decision::Allow, "4 of 10 spent");
    let b_run = r.run.expect("run");
    set_status(s, b_run.id, RunStatus::Cancelled, mins(3)).await;

    // A corrected cost replaces the earlier one (set, never added).
    patch_run(
        s,
        run.id,
        RunPatch {
            status: Some(RunStatus::Completed),
            cost_usd: Some(12.5),
            ..Default::default()
        },
        mins(4),
    )
    .await;
    let stats = s.spawn_stats(mins(5)).await.expect("spawn_stats");
    approx(
        stats.cost_today_usd,
        12.5,
        "cost_today_usd is the sum of today's run costs",
    );
    let r = reserve(
        s,
        &spawn(b.id, WorkflowKind::PrdInvestigate, policy.clone()),
        mins(5),
    )
    .await;
    assert_eq!(
        r.decision,
        Decision::Deny {
            reason: GateReason::DailyCost {
                limit_usd: 10.0,
                spent_usd: 12.5
            }
        }
    );
    assert_eq!(r.run, None);

    let tomorrow = utc(2026, 1, 16, 9, 0);
    approx(
        s.spawn_stats(tomorrow)
            .await
            .expect("spawn_stats")
            .cost_today_usd,
        0.0,
        "a new UTC day starts at zero",
    );
    let r = reserve(
        s,
        &spawn(b.id, WorkflowKind::PrdInvestigate, policy),
        tomorrow,
    )
    .await;
    assert_eq!(r.decision, Decision::Allow);
}

async fn get_run_and_list_runs_newest_first(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "many runs").await;
    let other = issue(s, ws.id, "other").await;
    let mut made = Vec::new();
    for n in 0..3 {
        let run = running(s, i.id, WorkflowKind::PrdInvestigate, mins(10 * n)).await;
        let ended = set_status(s, run.id, RunStatus::Completed, mins(10 * n + 5))
            .await
            .run;
        made.push(ended);
    }
    let theirs = allow(s, other.id, WorkflowKind::Qa, mins(1)).await;

    let listed = s.list_runs(i.id).await.expect("list_runs");
    made.reverse();
    assert_eq!(listed, made, "newest first, this issue's only");
    for r in &made {
        assert_eq!(&s.get_run(r.id).await.expect("get_run"), r);
    }
    assert_eq!(
        s.list_runs(other.id).await.expect("list_runs"),
        vec![theirs]
    );
    let none = issue(s, ws.id, "no runs").await;
    assert_eq!(s.list_runs(none.id).await.expect("list_runs"), vec![]);
    not_found(s.get_run(RunId::new()).await, "an unknown run");
}

async fn find_run_by_external_id(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let a = issue(s, ws.id, "a").await;
    let b = issue(s, ws.id, "b").await;
    let ra = allow(s, a.id, WorkflowKind::ErrorFix, mins(1)).await;
    let rb = allow(s, b.id, WorkflowKind::ErrorFix, mins(2)).await;
    assert_eq!(
        s.find_run_by_external_id("gh-1001").await.expect("find"),
        None
    );

    let patch = |ext: &str| RunPatch {
        runner: Some("github".into()),
        external_id: Some(ext.into()),
        external_url: Some(format!("https://github.invalid/runs/{ext}")),
        ..Default::default()
    };
    let ua = patch_run(s, ra.id, patch("gh-1001"), mins(3)).await.run;
    let ub = patch_run(s, rb.id, patch("gh-1002"), mins(3)).await.run;
    assert_eq!(
        s.find_run_by_external_id("gh-1001").await.expect("find"),
        Some(ua.clone())
    );
    assert_eq!(
        s.find_run_by_external_id("gh-1002").await.expect("find"),
        Some(ub)
    );
    assert_eq!(
        (ua.runner.as_deref(), ua.external_url.as_deref()),
        (Some("github"), Some("https://github.invalid/runs/gh-1001"))
    );
    assert_eq!(
        s.find_run_by_external_id("gh-100").await.expect("find"),
        None,
        "exact match only"
    );
    assert_eq!(s.find_run_by_external_id("").await.expect("find"), None);
}

async fn update_run_guards_status_moves_and_ends_once(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "guarded").await;
    let run = allow(s, i.id, WorkflowKind::ErrorFix, mins(1)).await;

    let u = set_status(s, run.id, RunStatus::Running, mins(2)).await;
    assert!(u.status_changed && !u.ended);
    assert_eq!(
        (u.run.status, u.run.started_at, u.run.updated_at),
        (RunStatus::Running, Some(mins(2)), mins(2))
    );
    assert_eq!(
        u.issue.spawn_status,
        Some(SpawnStatus::Running),
        "the issue mirrors its current run"
    );
    assert_eq!(get(s, &i).await, u.issue);

    let u = patch_run(
        s,
        run.id,
        RunPatch {
            status: Some(RunStatus::Running),
            last_callback_at: Some(mins(3)),
            ..Default::default()
        },
        mins(3),
    )
    .await;
    assert!(
        !u.status_changed && !u.ended,
        "the same status again changes nothing"
    );
    assert_eq!(
        (u.run.last_callback_at, u.run.started_at),
        (Some(mins(3)), Some(mins(2)))
    );

    let u = patch_run(
        s,
        run.id,
        RunPatch {
            status: Some(RunStatus::Completed),
            outcome: Some(Outcome::Completed),
            ..Default::default()
        },
        mins(4),
    )
    .await;
    assert!(
        u.status_changed && u.ended,
        "the move into a terminal status ends the run"
    );
    assert_eq!(
        (u.run.status, u.run.completed_at),
        (RunStatus::Completed, Some(mins(4)))
    );
    assert_eq!(u.issue.spawn_status, Some(SpawnStatus::Completed));

    let u = set_status(s, run.id, RunStatus::Completed, mins(5)).await;
    assert!(
        !u.status_changed && !u.ended,
        "ending twice: ended only once"
    );
    assert_eq!(
        u.run.completed_at,
        Some(mins(4)),
        "completed_at stays the first end"
    );

    let late = RunPatch {
        status: Some(RunStatus::Running),
        report_content: Some("late report".into()),
        ..Default::default()
    };
    let u = patch_run(s, run.id, late, mins(6)).await;
    assert!(!u.status_changed && !u.ended);
    assert_eq!(
        u.run.status,
        RunStatus::Completed,
        "terminal is final: a late Running is ignored"
    );
    assert_eq!(
        u.run.report_content.as_deref(),
        Some("late report"),
        "the patch's other fields still apply"
    );
    for st in [
        RunStatus::Failed,
        RunStatus::Queued,
        RunStatus::TimedOut,
        RunStatus::Cancelled,
    ] {
        let u = set_status(s, run.id, st, mins(7)).await;
        assert!(!u.status_changed && !u.ended, "completed -> {st}");
        assert_eq!(u.run.status, RunStatus::Completed);
    }
    // A late timeout, cancel or finish cannot rewrite how the run ended; late cost, turns,
    // tokens, model and report still arrive.
    let late_end = RunPatch {
        status: Some(RunStatus::TimedOut),
        outcome: Some(Outcome::Failed),
        outcome_summary: Some("timed out: no callback".into()),
        pr_number: Some(99),
        files_changed: Some(vec!["late.rs".into()]),
        completed_at: Some(mins(50)),
        last_error: Some(Some("stale".into())),
        cost_usd: Some(1.25),
        num_turns: Some(12),
        tokens_used: Some(34_000),
        model: Some("claude-late".into()),
        external_id: Some("gh-late".into()),
        ..Default::default()
    };
    let u = patch_run(s, run.id, late_end, mins(8)).await;
    assert!(!u.status_changed && !u.ended);
    assert_eq!(
        (
            u.run.status,
            u.run.outcome,
            u.run.outcome_summary.as_deref(),
            u.run.pr_number,
            u.run.files_changed.len(),
            u.run.completed_at,
            u.run.last_error.as_deref(),
        ),
        (
            RunStatus::Completed,
            Some(Outcome::Completed),
            None,
            None,
            0,
            Some(mins(4)),
            None
        ),
        "a finished run keeps its end"
    );
    assert_eq!(
        (
            u.run.cost_usd,
            u.run.num_turns,
            u.run.tokens_used,
            u.run.model.as_deref(),
            u.run.external_id.as_deref()
        ),
        (1.25, 12, Some(34_000), Some("claude-late"), Some("gh-late")),
        "late cost, turns, tokens, model and the runner's handle still arrive"
    );
    approx(u.issue.cost_usd, 1.25, "the issue's cost follows its runs");
    let u = patch_run(
        s,
        run.id,
        RunPatch {
            external_id: Some("gh-other".into()),
            ..Default::default()
        },
        mins(9),
    )
    .await;
    assert_eq!(
        u.run.external_id.as_deref(),
        Some("gh-late"),
        "a known runner handle is not replaced late"
    );
    let now = get(s, &i).await;
    assert_eq!(now.spawn_status, Some(SpawnStatus::Completed));
    let completions = s
        .list_history(i.id, 100)
        .await
        .expect("history")
        .iter()
        .filter(|h| h.action == HistoryAction::AgentCompleted)
        .count();
    assert_eq!(completions, 1, "the end is recorded once");

    // Queued cannot jump to completed.
    let j = issue(s, ws.id, "queued").await;
    let queued = allow(s, j.id, WorkflowKind::Qa, mins(8)).await;
    let u = set_status(s, queued.id, RunStatus::Completed, mins(9)).await;
    assert!(!u.status_changed && !u.ended);
    assert_eq!(u.run.status, RunStatus::Queued);
    assert_eq!(
        s.get_run(queued.id).await.expect("get_run").status,
        RunStatus::Queued
    );

    not_found(
        s.update_run(RunId::new(), &RunPatch::default(), &actor(), mins(9))
            .await,
        "update of an unknown run",
    );
    invalid(
        s.update_run(
            queued.id,
            &RunPatch {
                cost_usd: Some(-1.0),
                ..Default::default()
            },
            &actor(),
            mins(9),
        )
        .await,
        "cost_usd",
        "a negative cost",
    );
}

/// Runs `kind` on a fresh Backlog issue, applies `during` to the issue while it runs, then ends the
/// run with `end` (from running). Returns the issue as `update_run` returned it and the run.
async fn end_run(
    s: &dyn Store,
    title: &str,
    kind: WorkflowKind,
    during: Option<IssuePatch>,
    end: RunPatch,
) -> (Issue, crate::run::Run) {
    let ws = workspace(s).await;
    let i = issue(s, ws.id, title).await;
    let run = running(s, i.id, kind, mins(1)).await;
    if let Some(p) = during {
        update(s, i.id, p, mins(2)).await;
    }
    let u = patch_run(s, run.id, end, mins(3)).await;
    assert!(u.ended, "{title}: the run ends");
    assert_eq!(
        get(s, &i).await,
        u.issue,
        "{title}: update_run returns the stored issue"
    );
    (u.issue, u.run)
}

async fn run_end_moves_the_issue(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let col = |name: &'static str| column_id(s, ws.id, name);
    let end = |status: RunStatus| RunPatch {
        status: Some(status),
        ..Default::default()
    };

    let (i, run) = end_run(
        s,
        "investigated",
        WorkflowKind::ErrorFix,
        None,
        RunPatch {
            status: Some(RunStatus::Completed),
            outcome: Some(Outcome::InvestigationComplete),
            outcome_summary: Some("null check missing".into()),
            model: Some("claude-sonnet".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        i.column_id,
        col("Needs Review").await,
        "Investigating -> Needs Review on completion without a PR"
    );
    assert_eq!(
        (i.spawn_status, i.agent_status),
        (Some(SpawnStatus::Completed), AgentStatus::Idle)
    );
    assert_eq!(
        (
            i.run_outcome,
            i.outcome_summary.as_deref(),
            i.model.as_deref()
        ),
        (
            Some(Outcome::InvestigationComplete),
            Some("null check missing"),
            Some("claude-sonnet")
        )
    );
    assert_eq!(
        (i.spawn_completed_at, run.completed_at),
        (Some(mins(3)), Some(mins(3)))
    );
    let actions: Vec<HistoryAction> = s
        .list_history(i.id, 20)
        .await
        .expect("history")
        .iter()
        .map(|h| h.action)
        .collect();
    assert!(
        actions.contains(&HistoryAction::AgentCompleted),
        "{actions:?}"
    );

    let (i, _) = end_run(
        s,
        "with pr",
        WorkflowKind::ErrorFix,
        None,
        RunPatch {
            status: Some(RunStatus::Completed),
            pr_number: Some(42),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        i.column_id,
        col("In Review").await,
        "Investigating -> In Review with a PR"
    );
    assert_eq!(i.spawn_status, Some(SpawnStatus::Completed));

    let (i, _) = end_run(
        s,
        "failed",
        WorkflowKind::ErrorFix,
        None,
        end(RunStatus::Failed),
    )
    .await;
    assert_eq!(
        (i.column_id, i.spawn_status, i.agent_status),
        (
            col("Backlog").await,
            Some(SpawnStatus::Failed),
            AgentStatus::Idle
        ),
        "failed: back to Backlog"
    );

    let (i, _) = end_run(
        s,
        "timed out",
        WorkflowKind::PrdInvestigate,
        None,
        end(RunStatus::TimedOut),
    )
    .await;
    assert_eq!(
        (i.column_id, i.spawn_status),
        (col("Backlog").await, Some(SpawnStatus::Failed)),
        "timed out: back to Backlog"
    );

    let (i, _) = end_run(
        s,
        "cancelled",
        WorkflowKind::AutoTriage,
        None,
        end(RunStatus::Cancelled),
    )
    .await;
    assert_eq!(
        (i.column_id, i.spawn_status),
        (col("Backlog").await, Some(SpawnStatus::Cancelled))
    );

    let (i, _) = end_run(
        s,
        "implemented",
        WorkflowKind::PrdImplement,
        None,
        end(RunStatus::Completed),
    )
    .await;
    assert_eq!(
        (i.column_id, i.agent_status),
        (col("In Review").await, AgentStatus::Idle),
        "In Progress -> In Review"
    );

    let review = IssuePatch {
        agent_status: Some(AgentStatus::AwaitingReview),
        ..Default::default()
    };
    let (i, _) = end_run(
        s,
        "plan submitted",
        WorkflowKind::PrdInvestigate,
        Some(review),
        end(RunStatus::Completed),
    )
    .await;
    assert_eq!(
        (i.agent_status, i.column_id),
        (AgentStatus::AwaitingReview, col("Needs Review").await),
        "awaiting_review survives the end"
    );

    let blocked = IssuePatch {
        agent_status: Some(AgentStatus::Blocked),
        blocked_reason: Some(Some("[missing_env] no DSN".into())),
        ..Default::default()
    };
    let (i, _) = end_run(
        s,
        "blocked",
        WorkflowKind::ErrorFix,
        Some(blocked),
        end(RunStatus::Failed),
    )
    .await;
    assert_eq!(
        (i.agent_status, i.spawn_status),
        (AgentStatus::Blocked, Some(SpawnStatus::Failed)),
        "blocked survives the end"
    );
    assert_eq!(i.blocked_reason.as_deref(), Some("[missing_env] no DSN"));

    let (i, _) = end_run(s, "qa", WorkflowKind::Qa, None, end(RunStatus::Completed)).await;
    assert_eq!(
        (i.column_id, i.spawn_status, i.agent_status),
        (
            col("Backlog").await,
            Some(SpawnStatus::Completed),
            AgentStatus::Idle
        ),
        "qa moves nothing"
    );
}

async fn issue_totals_are_sums_over_runs(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "costly").await;
    let other = issue(s, ws.id, "other").await;

    let r1 = running(s, i.id, WorkflowKind::ErrorFix, mins(1)).await;
    let cost = RunPatch {
        cost_usd: Some(1.5),
        num_turns: Some(10),
        ..Default::default()
    };
    let u = patch_run(s, r1.id, cost.clone(), mins(2)).await;
    approx(u.issue.cost_usd, 1.5, "issue cost after the first report");
    assert_eq!(u.issue.num_turns, 10);
    let u = patch_run(s, r1.id, cost.clone(), mins(3)).await;
    approx(
        u.issue.cost_usd,
        1.5,
        "the same cost reported twice is not double counted",
    );
    assert_eq!(u.issue.num_turns, 10);
    let u = patch_run(
        s,
        r1.id,
        RunPatch {
            status: Some(RunStatus::Completed),
            ..cost
        },
        mins(4),
    )
    .await;
    approx(u.issue.cost_usd, 1.5, "ending with the same cost");

    let r2 = running(s, i.id, WorkflowKind::PrdInvestigate, mins(5)).await;
    let u = patch_run(
        s,
        r2.id,
        RunPatch {
            cost_usd: Some(2.25),
            num_turns: Some(5),
            ..Default::default()
        },
        mins(6),
    )
    .await;
    approx(u.issue.cost_usd, 3.75, "the sum over both runs");
    assert_eq!(u.issue.num_turns, 15);
    let u = patch_run(
        s,
        r2.id,
        RunPatch {
            cost_usd: Some(2.0),
            ..Default::default()
        },
        mins(7),
    )
    .await;
    approx(
        u.issue.cost_usd,
        3.5,
        "a corrected cost replaces, never adds",
    );
    assert_eq!(u.issue.num_turns, 15);

    let ro = running(s, other.id, WorkflowKind::ErrorFix, mins(8)).await;
    patch_run(
        s,
        ro.id,
        RunPatch {
            cost_usd: Some(100.0),
            num_turns: Some(1),
            ..Default::default()
        },
        mins(9),
    )
    .await;
    let now = get(s, &i).await;
    approx(now.cost_usd, 3.5, "other issues' runs do not count");
    assert_eq!(now.num_turns, 15);
    approx(
        get(s, &other).await.cost_usd,
        100.0,
        "the other issue's own total",
    );
}

async fn claim_due_runs_respects_not_before_lease_and_limit(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let mut runs = Vec::new();
    for n in 0..3 {
        let i = issue(s, ws.id, &format!("issue {n}")).await;
        runs.push(allow(s, i.id, WorkflowKind::ErrorFix, t0()).await.id);
    }
    let (r1, r2, r3) = (runs[0], runs[1], runs[2]);
    patch_run(
        s,
        r2,
        RunPatch {
            not_before: Some(mins(10)),
            ..Default::default()
        },
        t0(),
    )
    .await;
    let lease = Duration::minutes(5);

    assert_eq!(
        s.claim_due_runs(t0() - Duration::minutes(1), lease, 10)
            .await
            .expect("claim"),
        vec![],
        "nothing before not_before"
    );
    let got = s.claim_due_runs(mins(1), lease, 10).await.expect("claim");
    assert_eq!(
        ids(&got),
        BTreeSet::from([r1, r3]),
        "due queued runs, not the one waiting for not_before"
    );
    for r in &got {
        assert_eq!(
            (r.status, r.lease_until),
            (RunStatus::Dispatching, Some(mins(6)))
        );
        assert_eq!(
            &s.get_run(r.id).await.expect("get_run"),
            r,
            "the claim is stored"
        );
    }
    assert_eq!(
        s.claim_due_runs(mins(2), lease, 10).await.expect("claim"),
        vec![],
        "leased runs are not handed out again"
    );

    let one = s.claim_due_runs(mins(7), lease, 1).await.expect("claim");
    assert_eq!(one.len(), 1, "limit");
    let rest = s.claim_due_runs(mins(7), lease, 10).await.expect("claim");
    assert_eq!(rest.len(), 1);
    assert_eq!(
        ids(&one)
            .union(&ids(&rest))
            .copied()
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([r1, r3]),
        "an expired lease hands the run out again"
    );
    assert_eq!(rest[0].lease_until, Some(mins(12)));

    let got = s.claim_due_runs(mins(11), lease, 10).await.expect("claim");
    assert_eq!(
        ids(&got),
        BTreeSet::from([r2]),
        "r2 once its not_before came; r1 and r3 still leased"
    );

    set_status(s, r2, RunStatus::Running, mins(11)).await;
    let got = s.claim_due_runs(mins(30), lease, 10).await.expect("claim");
    assert_eq!(
        ids(&got),
        BTreeSet::from([r1, r3]),
        "a running run is never claimed"
    );
    set_status(s, r1, RunStatus::Failed, mins(31)).await;
    let got = s.claim_due_runs(mins(60), lease, 10).await.expect("claim");
    assert_eq!(
        ids(&got),
        BTreeSet::from([r3]),
        "a terminal run is never claimed"
    );
    assert_eq!(
        s.claim_due_runs(mins(60), lease, 0).await.expect("claim"),
        vec![],
        "limit 0"
    );
}

async fn stale_runs_by_last_callback_else_started(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let mut issues = Vec::new();
    for n in 0..5 {
        issues.push(issue(s, ws.id, &format!("issue {n}")).await.id);
    }
    let silent = running(s, issues[0], WorkflowKind::ErrorFix, t0()).await.id;
    // A heartbeat is a sign of life too (`Run::alive_at`), kept with the run.
    let beating = running(s, issues[4], WorkflowKind::ErrorFix, t0()).await.id;
    patch_run(
        s,
        beating,
        RunPatch {
            heartbeat_at: Some(mins(25)),
            ..Default::default()
        },
        mins(25),
    )
    .await;
    assert_eq!(
        s.get_run(beating).await.expect("get").heartbeat_at,
        Some(mins(25))
    );
    let chatty = running(s, issues[1], WorkflowKind::ErrorFix, t0()).await.id;
    patch_run(
        s,
        chatty,
        RunPatch {
            last_callback_at: Some(mins(30)),
            ..Default::default()
        },
        mins(30),
    )
    .await;
    let _queued = allow(s, issues[2], WorkflowKind::ErrorFix, t0()).await;
    let done = running(s, issues[3], WorkflowKind::ErrorFix, t0()).await.id;
    set_status(s, done, RunStatus::Completed, mins(1)).await;

    let stale = s.stale_runs(mins(20), 10).await.expect("stale_runs");
    assert_eq!(
        ids(&stale),
        BTreeSet::from([silent]),
        "started at t0 with no callback; the chatty one called back at +30"
    );
    let stale = s.stale_runs(mins(40), 10).await.expect("stale_runs");
    assert_eq!(
        ids(&stale),
        BTreeSet::from([silent, chatty, beating]),
        "only running runs are stale"
    );
    assert_eq!(
        s.stale_runs(mins(40), 1).await.expect("stale_runs").len(),
        1,
        "limit"
    );
    assert_eq!(
        s.stale_runs(t0(), 10).await.expect("stale_runs"),
        vec![],
        "nothing is older than its own start"
    );
}

async fn terminal_chunks_are_numbered_idempotent_and_gapless(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let a = issue(s, ws.id, "a").await;
    let b = issue(s, ws.id, "b").await;
    let run = running(s, a.id, WorkflowKind::ErrorFix, t0()).await.id;
    let other = running(s, b.id, WorkflowKind::ErrorFix, t0()).await.id;
    assert_eq!(
        s.read_terminal(run, 0, 100).await.expect("read_terminal"),
        vec![]
    );

    for (n, text) in ["a", "b", "c"].into_iter().enumerate() {
        let c = s
            .append_terminal(run, text, None, mins(n as i64))
            .await
            .expect("append");
        assert_eq!(
            (c.run_id, c.seq, c.content.as_str(), c.at),
            (run, n as u64 + 1, text, mins(n as i64)),
            "numbered from 1"
        );
    }
    let d = s
        .append_terminal(run, "d", Some(4), mins(4))
        .await
        .expect("append with the next seq");
    assert_eq!(d.seq, 4);
    let retried = s
        .append_terminal(run, "b", Some(2), mins(9))
        .await
        .expect("retried post");
    assert_eq!(
        (retried.seq, retried.content.as_str(), retried.at),
        (2, "b", mins(1)),
        "a retried seq returns the stored chunk unchanged"
    );
    conflict(
        s.append_terminal(run, "b (other output)", Some(2), mins(9))
            .await,
        "a stored seq reused for other output (not dropped silently)",
    );
    assert_eq!(
        s.read_terminal(run, 1, 1).await.expect("read")[0].content,
        "b",
        "the stored chunk is unchanged"
    );
    invalid(
        s.append_terminal(run, "f", Some(6), mins(5)).await,
        "seq",
        "a seq leaving a gap",
    );
    let e = s
        .append_terminal(run, "e", None, mins(5))
        .await
        .expect("append");
    assert_eq!(e.seq, 5, "a rejected gap burns no number");

    let all = s.read_terminal(run, 0, 100).await.expect("read_terminal");
    assert_eq!(
        all.iter()
            .map(|c| (c.seq, c.content.as_str()))
            .collect::<Vec<_>>(),
        [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")]
    );
    assert_eq!(all[3], d);
    let tail: Vec<u64> = s
        .read_terminal(run, 2, 100)
        .await
        .expect("read")
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(tail, [3, 4, 5], "seq > after");
    let page: Vec<u64> = s
        .read_terminal(run, 2, 1)
        .await
        .expect("read")
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(page, [3], "limit");
    assert_eq!(s.read_terminal(run, 5, 10).await.expect("read"), vec![]);

    let first = s
        .append_terminal(other, "x", Some(1), t0())
        .await
        .expect("explicit first seq");
    assert_eq!(first.seq, 1, "numbering is per run");
    assert_eq!(
        s.append_terminal(other, "x", Some(1), mins(1))
            .await
            .expect("retry")
            .at,
        t0(),
        "a retry answers the stored chunk"
    );
    invalid(
        s.append_terminal(other, "z", Some(3), t0()).await,
        "seq",
        "a gap on the other run",
    );
    assert_eq!(s.read_terminal(other, 0, 10).await.expect("read").len(), 1);

    not_found(
        s.append_terminal(RunId::new(), "x", None, t0()).await,
        "append to an unknown run",
    );
    not_found(
        s.read_terminal(RunId::new(), 0, 10).await,
        "read an unknown run",
    );

    // Pages are bounded in bytes too (issue 10 #11): five 1 MiB chunks come as four, then one.
    let big = "x".repeat(1024 * 1024);
    let mut last = 0;
    for i in 0..5 {
        last = s
            .append_terminal(other, &big, None, mins(10 + i))
            .await
            .expect("append a large chunk")
            .seq;
    }
    let seqs = |v: Vec<crate::run::TerminalChunk>| v.iter().map(|c| c.seq).collect::<Vec<_>>();
    let page = seqs(s.read_terminal(other, 1, 100).await.expect("page"));
    assert_eq!(
        page,
        [2, 3, 4, 5],
        "at most PAGE_MAX_BYTES past the first chunk"
    );
    assert_eq!(
        seqs(s.read_terminal(other, 5, 100).await.expect("next page")),
        [last]
    );
    assert_eq!(
        seqs(s.read_terminal(other, 0, 100).await.expect("small first")).len(),
        4,
        "a small first chunk, then as many large ones as fit"
    );
}

async fn activities_newest_first_with_before_paging(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let a = issue(s, ws.id, "a").await;
    let b = issue(s, ws.id, "b").await;
    let ra = allow(s, a.id, WorkflowKind::ErrorFix, t0()).await.id;
    let rb = allow(s, b.id, WorkflowKind::ErrorFix, t0()).await.id;

    // Posted out of time order, as concurrent callbacks may be.
    for (content, at, run) in [
        ("c", 3, None),
        ("a", 1, None),
        ("b", 2, Some(ra)),
        ("e", 5, Some(ra)),
        ("d", 4, None),
    ] {
        let mut new = NewActivity::new(ActivityType::Thought, content);
        new.run_id = run;
        new.metadata = serde_json::json!({"n": at});
        let act = s
            .add_activity(a.id, new, mins(at))
            .await
            .expect("add_activity");
        assert_eq!(
            (
                act.issue_id,
                act.run_id,
                act.content.as_str(),
                act.created_at
            ),
            (a.id, run, content, mins(at))
        );
        assert_eq!(
            (act.kind.clone(), act.metadata.clone()),
            (ActivityType::Thought, serde_json::json!({"n": at}))
        );
    }
    let custom = s
        .add_activity(
            b.id,
            NewActivity::new(ActivityType::Other("custom_step".into()), "x").run(rb),
            mins(1),
        )
        .await
        .expect("custom type");

    let contents =
        |v: Vec<crate::run::Activity>| v.into_iter().map(|a| a.content).collect::<Vec<_>>();
    assert_eq!(
        contents(s.list_activities(a.id, None, 10).await.expect("list")),
        ["e", "d", "c", "b", "a"],
        "newest first"
    );
    assert_eq!(
        contents(s.list_activities(a.id, None, 2).await.expect("list")),
        ["e", "d"],
        "limit"
    );
    assert_eq!(
        contents(
            s.list_activities(a.id, Some(mins(4)), 2)
                .await
                .expect("list")
        ),
        ["c", "b"],
        "older than `before`"
    );
    assert_eq!(
        contents(
            s.list_activities(a.id, Some(mins(2)), 10)
                .await
                .expect("list")
        ),
        ["a"]
    );
    assert_eq!(
        contents(
            s.list_activities(a.id, Some(mins(1)), 10)
                .await
                .expect("list")
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        s.list_activities(b.id, None, 10).await.expect("list"),
        vec![custom],
        "only this issue's"
    );

    invalid(
        s.add_activity(
            a.id,
            NewActivity::new(ActivityType::Action, "x").run(rb),
            mins(6),
        )
        .await,
        "run_id",
        "a run of another issue",
    );
    invalid(
        s.add_activity(
            a.id,
            NewActivity::new(ActivityType::Action, "x").run(RunId::new()),
            mins(6),
        )
        .await,
        "run_id",
        "an unknown run",
    );
    not_found(
        s.add_activity(
            IssueId::new(),
            NewActivity::new(ActivityType::Action, "x"),
            mins(6),
        )
        .await,
        "an unknown issue",
    );
    assert_eq!(
        s.list_activities(a.id, None, 100)
            .await
            .expect("list")
            .len(),
        5,
        "rejected activities write nothing"
    );
}

async fn claim_due_deferred_leases(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let mut busy = SpawnPolicy::permissive();
    busy.max_concurrent_error = 0;
    let mut issues = Vec::new();
    for (n, at) in [0, 0, 5].into_iter().enumerate() {
        let i = issue(s, ws.id, &format!("deferred {n}")).await.id;
        let r = reserve(s, &spawn(i, WorkflowKind::ErrorFix, busy.clone()), mins(at)).await;
        assert_eq!(
            r.decision,
            Decision::Defer {
                until: mins(at + 1),
                reason: GateReason::ConcurrencyLimit {
                    scope: LimitScope::Error,
                    limit: 0
                }
            }
        );
        issues.push(i);
    }
    let lease = Duration::minutes(5);
    assert_eq!(
        s.claim_due_deferred(t0(), lease, 10).await.expect("claim"),
        vec![],
        "not due yet"
    );

    let one = s
        .claim_due_deferred(mins(1), lease, 1)
        .await
        .expect("claim");
    assert_eq!(one.len(), 1, "limit");
    assert_eq!(
        one[0].lease_until,
        Some(mins(6)),
        "leased until now + lease"
    );
    let two = s
        .claim_due_deferred(mins(1), lease, 10)
        .await
        .expect("claim");
    assert_eq!(two.len(), 1, "the leased one is not handed out again");
    let got: BTreeSet<IssueId> = one.iter().chain(&two).map(|d| d.issue_id).collect();
    assert_eq!(got, BTreeSet::from([issues[0], issues[1]]));
    assert_eq!(
        s.claim_due_deferred(mins(2), lease, 10)
            .await
            .expect("claim"),
        vec![],
        "all due ones are leased"
    );
    let stored = s
        .list_deferred(one[0].issue_id)
        .await
        .expect("list_deferred");
    assert_eq!(stored[0].lease_until, Some(mins(6)), "the lease is stored");

    let all = s
        .claim_due_deferred(mins(7), lease, 10)
        .await
        .expect("claim");
    let got: BTreeSet<IssueId> = all.iter().map(|d| d.issue_id).collect();
    assert_eq!(
        got,
        BTreeSet::from([issues[0], issues[1], issues[2]]),
        "expired leases and the newly due one"
    );
    assert!(all.iter().all(|d| d.lease_until == Some(mins(12))));

    // Settling removes it from the claimable set.
    let d0 = all.iter().find(|d| d.issue_id == issues[0]).expect("d0");
    let mut retry = spawn(issues[0], WorkflowKind::ErrorFix, permissive());
    retry.deferred_id = Some(d0.id);
    assert_eq!(reserve(s, &retry, mins(8)).await.decision, Decision::Allow);
    let later: BTreeSet<IssueId> = s
        .claim_due_deferred(mins(20), lease, 10)
        .await
        .expect("claim")
        .iter()
        .map(|d| d.issue_id)
        .collect();
    assert_eq!(later, BTreeSet::from([issues[1], issues[2]]));
}

async fn spawn_stats_counts(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let yesterday = t0() - Duration::days(1);
    let mut i = Vec::new();
    for n in 0..7 {
        i.push(issue(s, ws.id, &format!("issue {n}")).await.id);
    }
    let empty = s.spawn_stats(t0()).await.expect("spawn_stats");
    assert_eq!(empty, crate::ports::SpawnStats::default());

    let old = running(s, i[0], WorkflowKind::ErrorFix, yesterday).await.id;
    patch_run(
        s,
        old,
        RunPatch {
            status: Some(RunStatus::Completed),
            outcome: Some(Outcome::Completed),
            cost_usd: Some(5.0),
            ..Default::default()
        },
        yesterday,
    )
    .await;
    let prd = allow(s, i[2], WorkflowKind::PrdInvestigate, t0()).await.id;
    let claimed = s
        .claim_due_runs(t0(), Duration::minutes(5), 10)
        .await
        .expect("claim");
    assert_eq!(ids(&claimed), BTreeSet::from([prd]));
    let _queued = allow(s, i[1], WorkflowKind::ErrorFix, mins(1)).await;
    let _running = running(s, i[3], WorkflowKind::ErrorFix, mins(2)).await;
    let done = running(s, i[4], WorkflowKind::ErrorFix, mins(3)).await.id;
    patch_run(
        s,
        done,
        RunPatch {
            status: Some(RunStatus::Completed),
            outcome: Some(Outcome::Completed),
            cost_usd: Some(1.25),
            ..Default::default()
        },
        mins(4),
    )
    .await;
    let failed = running(s, i[5], WorkflowKind::Qa, mins(4)).await.id;
    patch_run(
        s,
        failed,
        RunPatch {
            status: Some(RunStatus::Failed),
            outcome: Some(Outcome::Failed),
            cost_usd: Some(0.5),
            ..Default::default()
        },
        mins(5),
    )
    .await;
    let mut one_prd = SpawnPolicy::permissive();
    one_prd.max_concurrent_prd = 1;
    assert_eq!(
        code(
            &reserve(
                s,
                &spawn(i[6], WorkflowKind::DeepResearch, one_prd),
                mins(6)
            )
            .await
            .decision
        ),
        "concurrency_limit"
    );

    let stats = s.spawn_stats(mins(60)).await.expect("spawn_stats");
    assert_eq!(
        (stats.active_error, stats.active_prd),
        (2, 1),
        "queued + running error runs; the dispatching prd run"
    );
    assert_eq!(
        (stats.spawned_today_error, stats.spawned_today_prd),
        (3, 2),
        "today's runs of any status, not yesterday's"
    );
    approx(stats.cost_today_usd, 1.75, "today's cost");
    assert_eq!(
        (stats.queued, stats.running, stats.deferred),
        (2, 1, 1),
        "queued counts dispatching runs (not yet running)"
    );
    let mut outcomes = stats.outcomes_today.clone();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [("completed".to_string(), 1), ("failed".to_string(), 1)]
    );

    let before = s
        .spawn_stats(yesterday + Duration::hours(1))
        .await
        .expect("spawn_stats");
    assert_eq!(
        (before.spawned_today_error, before.spawned_today_prd),
        (1, 0),
        "yesterday counts only yesterday's runs"
    );
    approx(before.cost_today_usd, 5.0, "yesterday's cost");
    assert_eq!(before.outcomes_today, [("completed".to_string(), 1)]);
}

async fn prune_removes_old_activities_and_chunks(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let a = issue(s, ws.id, "a").await;
    let b = issue(s, ws.id, "b").await;
    let run = running(s, a.id, WorkflowKind::ErrorFix, t0()).await.id;
    for (n, at) in [0, 10, 20].into_iter().enumerate() {
        s.add_activity(
            a.id,
            NewActivity::new(ActivityType::Thought, format!("act {n}")),
            mins(at),
        )
        .await
        .expect("activity");
        s.append_terminal(run, &format!("chunk {n}"), None, mins(at))
            .await
            .expect("chunk");
    }

    assert_eq!(
        s.prune(mins(15)).await.expect("prune"),
        4,
        "two activities and two chunks are older than the cutoff"
    );
    let acts = s.list_activities(a.id, None, 10).await.expect("list");
    assert_eq!(
        acts.iter().map(|x| x.content.as_str()).collect::<Vec<_>>(),
        ["act 2"]
    );
    let chunks = s.read_terminal(run, 0, 10).await.expect("read");
    assert_eq!(
        chunks.iter().map(|c| c.seq).collect::<Vec<_>>(),
        [3],
        "the kept chunk keeps its number"
    );
    assert_eq!(
        s.append_terminal(run, "after", None, mins(30))
            .await
            .expect("append")
            .seq,
        4,
        "numbering continues after a prune"
    );
    assert_eq!(
        s.prune(mins(15)).await.expect("prune"),
        0,
        "nothing left to prune"
    );

    // A run whose every chunk is old still never reuses a number.
    let run_b = running(s, b.id, WorkflowKind::ErrorFix, t0()).await.id;
    s.append_terminal(run_b, "1", None, t0())
        .await
        .expect("chunk");
    s.append_terminal(run_b, "2", None, t0())
        .await
        .expect("chunk");
    s.prune(mins(15)).await.expect("prune");
    assert!(
        s.read_terminal(run_b, 0, 10)
            .await
            .expect("read")
            .iter()
            .all(|c| c.seq <= 2)
    );
    assert_eq!(
        s.append_terminal(run_b, "3", None, mins(30))
            .await
            .expect("append")
            .seq,
        3,
        "numbering continues after pruning everything"
    );
    assert_eq!(
        s.list_runs(a.id).await.expect("runs").len(),
        1,
        "prune deletes no runs"
    );
    assert_eq!(get(s, &a).await.id, a.id, "nor issues");
}
