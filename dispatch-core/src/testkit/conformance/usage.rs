//! Deleting an issue refunds no budget: an issue with an active run cannot be deleted, and the
//! runs it had today keep counting for the daily budgets and cost limit.

use super::support::*;
use crate::run::{RunPatch, RunStatus, WorkflowKind};

pub(super) fn cases() -> Vec<Case> {
    cases!(
        "usage": an_issue_with_an_active_run_cannot_be_deleted,
        deleting_an_issue_keeps_todays_spawns_and_cost,
        deleted_usage_counts_toward_the_daily_budget,
        a_cancel_request_is_kept_on_the_run
    )
}

async fn an_issue_with_an_active_run_cannot_be_deleted(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "busy").await;
    let run = running(s, i.id, WorkflowKind::Qa, mins(1)).await;
    let before = s.spawn_stats(mins(2)).await.expect("stats");
    conflict(
        s.delete_issue(i.id, mins(2), &Default::default()).await,
        "delete with a running run",
    );
    assert_eq!(get(s, &i).await.id, i.id, "the issue is still there");
    let after = s.spawn_stats(mins(2)).await.expect("stats");
    assert_eq!(
        after.active_prd, before.active_prd,
        "the slot is still held"
    );
    assert_eq!(after.spawned_today_prd, before.spawned_today_prd);
    // Once the run is over the issue can go.
    set_status(s, run.id, RunStatus::Completed, mins(3)).await;
    s.delete_issue(i.id, mins(4), &Default::default())
        .await
        .expect("delete after the run ended");
}

async fn deleting_an_issue_keeps_todays_spawns_and_cost(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "done today").await;
    let run = running(s, i.id, WorkflowKind::Qa, mins(1)).await;
    patch_run(
        s,
        run.id,
        RunPatch {
            status: Some(RunStatus::Completed),
            cost_usd: Some(3.5),
            ..Default::default()
        },
        mins(2),
    )
    .await;
    let e = issue(s, ws.id, "error today").await;
    let erun = running(s, e.id, WorkflowKind::ErrorFix, mins(1)).await;
    set_status(s, erun.id, RunStatus::Failed, mins(2)).await;
    let before = s.spawn_stats(mins(3)).await.expect("stats");
    s.delete_issue(i.id, mins(3), &Default::default())
        .await
        .expect("delete");
    s.delete_issue(e.id, mins(3), &Default::default())
        .await
        .expect("delete");
    let after = s.spawn_stats(mins(4)).await.expect("stats");
    assert_eq!(
        after.spawned_today_prd, before.spawned_today_prd,
        "no refund"
    );
    assert_eq!(
        after.spawned_today_error, before.spawned_today_error,
        "no refund"
    );
    approx(after.cost_today_usd, before.cost_today_usd, "today's cost");
    approx(after.cost_today_usd, 3.5, "today's cost");
    // Tomorrow is a new day.
    let tomorrow = s.spawn_stats(mins(60 * 24 + 10)).await.expect("stats");
    assert_eq!(tomorrow.spawned_today_prd, 0);
    approx(tomorrow.cost_today_usd, 0.0, "tomorrow's cost");
}

async fn deleted_usage_counts_toward_the_daily_budget(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let mut policy = permissive();
    policy.daily_budget_prd = 1;
    let i = issue(s, ws.id, "first").await;
    let run = running(s, i.id, WorkflowKind::Qa, mins(1)).await;
    set_status(s, run.id, RunStatus::Completed, mins(2)).await;
    s.delete_issue(i.id, mins(3), &Default::default())
        .await
        .expect("delete");
    let j = issue(s, ws.id, "second").await;
    let r = reserve(s, &spawn(j.id, WorkflowKind::Qa, policy), mins(4)).await;
    assert_eq!(
        code(&r.decision),
        "daily_budget",
        "the deleted run still used today's budget"
    );
}

/// `Dispatch::cancel` stores its request on the run before acting on the status it sees; the
/// dispatcher reads it back after its own writes. The first request is the one kept.
async fn a_cancel_request_is_kept_on_the_run(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "cancel me").await;
    let run = allow(s, i.id, WorkflowKind::Qa, mins(1)).await;
    assert_eq!(run.cancel_requested_at, None);
    let u = patch_run(
        s,
        run.id,
        RunPatch {
            cancel_requested_at: Some(mins(2)),
            ..Default::default()
        },
        mins(2),
    )
    .await;
    assert_eq!(u.run.cancel_requested_at, Some(mins(2)));
    assert_eq!(
        u.run.status,
        RunStatus::Queued,
        "a request alone moves nothing"
    );
    let u = patch_run(
        s,
        run.id,
        RunPatch {
            cancel_requested_at: Some(mins(3)),
            status: Some(RunStatus::Cancelled),
            ..Default::default()
        },
        mins(3),
    )
    .await;
    assert_eq!(
        u.run.cancel_requested_at,
        Some(mins(2)),
        "the first request is kept"
    );
    assert_eq!(u.run.status, RunStatus::Cancelled);
    let read = s.get_run(run.id).await.expect("get_run");
    assert_eq!(read.cancel_requested_at, Some(mins(2)), "and stored");
}
