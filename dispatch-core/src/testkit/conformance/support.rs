//! Builders and assertions shared by the cases. Everything goes through the `Store` traits.

pub(super) use super::Case;
pub(super) use crate::Timestamp;
pub(super) use crate::error::{Error, ErrorKind, Result};
pub(super) use crate::ports::{
    IngestDraft, IssueUpdate, RunUpdate, SpawnRequest, SpawnReservation, Store,
};
pub(super) use chrono::{Duration, TimeZone, Utc};
pub(super) use std::sync::Arc;

use crate::customer::{Customer, new_portal_token};
use crate::gate::{Decision, SpawnPolicy};
use crate::ids::{ColumnId, CustomerId, FixAttemptId, IssueId, RunId, WorkspaceId};
use crate::issue::{Actor, Issue, IssuePatch, NewIssue, Workspace};
use crate::run::{Run, RunPatch, RunStatus, WorkflowKind};
use crate::verify::{FixAttempt, VerificationStatus};
use serde_json::json;
use std::fmt::Debug;

pub(super) const PREFIX: &str = "ACME";

/// 2026-01-15 09:00:00 UTC, the fixed "now" of every case.
pub(super) fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 1, 15, 9, 0, 0)
        .single()
        .expect("valid timestamp")
}

/// `t0 + n minutes`.
pub(super) fn mins(n: i64) -> Timestamp {
    t0() + Duration::minutes(n)
}

pub(super) fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Timestamp {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("valid timestamp")
}

pub(super) fn actor() -> Actor {
    Actor::user("conformance")
}

/// The workspace `ACME` (created at t0).
pub(super) async fn workspace(s: &dyn Store) -> Workspace {
    s.ensure_workspace("Acme", PREFIX, t0())
        .await
        .expect("ensure_workspace")
}

pub(super) async fn column_id(s: &dyn Store, ws: WorkspaceId, name: &str) -> ColumnId {
    s.list_columns(ws)
        .await
        .expect("list_columns")
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no column named {name:?}"))
        .id
}

pub(super) async fn create(s: &dyn Store, ws: WorkspaceId, new: NewIssue, at: Timestamp) -> Issue {
    s.create_issue(ws, new, &actor(), at, &Default::default())
        .await
        .expect("create_issue")
}

/// A plain issue in the default column, created at t0.
pub(super) async fn issue(s: &dyn Store, ws: WorkspaceId, title: &str) -> Issue {
    create(s, ws, NewIssue::titled(title), t0()).await
}

pub(super) async fn update(s: &dyn Store, id: IssueId, patch: IssuePatch, now: Timestamp) -> Issue {
    s.update_issue(
        id,
        IssueUpdate {
            outbox: Default::default(),
            patch,
            history: Vec::new(),
            expected_version: None,
            now,
        },
    )
    .await
    .expect("update_issue")
}

pub(super) async fn move_to(s: &dyn Store, id: IssueId, column: ColumnId, now: Timestamp) -> Issue {
    update(
        s,
        id,
        IssuePatch {
            column_id: Some(column),
            ..Default::default()
        },
        now,
    )
    .await
}

pub(super) async fn get(s: &dyn Store, issue: &Issue) -> Issue {
    s.get_issue(issue.workspace_id, &issue.id.into())
        .await
        .expect("get_issue")
}

/// An error event from `source` with `key` as its fingerprint.
pub(super) fn draft(source: &str, key: &str, count: u64, seen_at: Timestamp) -> IngestDraft {
    IngestDraft {
        source: source.to_string(),
        external_key: key.to_string(),
        fingerprint: key.to_string(),
        url: Some(format!("https://logs.invalid/{source}/{key}")),
        metadata: json!({"service": "billing", "level": "error"}),
        event_count: count,
        seen_at,
        new_issue: NewIssue::titled(format!("TypeError in billing ({key})")),
        actor: Actor::webhook("Loki Webhook"),
        outbox: Default::default(),
    }
}

/// A manual (not alert-triggered) spawn request.
pub(super) fn spawn(issue: IssueId, kind: WorkflowKind, policy: SpawnPolicy) -> SpawnRequest {
    SpawnRequest {
        issue_id: issue,
        kind,
        force: false,
        from_alert: false,
        additional_context: None,
        actor: actor(),
        policy,
        deferred_id: None,
        outbox: Default::default(),
    }
}

pub(super) fn permissive() -> SpawnPolicy {
    SpawnPolicy::permissive()
}

pub(super) async fn reserve(s: &dyn Store, req: &SpawnRequest, now: Timestamp) -> SpawnReservation {
    s.reserve_spawn(req, now).await.expect("reserve_spawn")
}

/// Reserves a spawn under the permissive policy and returns the queued run.
pub(super) async fn allow(
    s: &dyn Store,
    issue: IssueId,
    kind: WorkflowKind,
    now: Timestamp,
) -> Run {
    let r = reserve(s, &spawn(issue, kind, permissive()), now).await;
    assert_eq!(
        r.decision,
        Decision::Allow,
        "a permissive spawn must be allowed"
    );
    r.run.expect("an allowed spawn returns its run")
}

/// The decision's reason code, `allow` for Allow.
pub(super) fn code(d: &Decision) -> &'static str {
    d.reason().map_or("allow", |r| r.code())
}

pub(super) async fn patch_run(
    s: &dyn Store,
    run: RunId,
    patch: RunPatch,
    now: Timestamp,
) -> RunUpdate {
    s.update_run(run, &patch, &Actor::agent("agent"), now)
        .await
        .expect("update_run")
}

pub(super) async fn set_status(
    s: &dyn Store,
    run: RunId,
    status: RunStatus,
    now: Timestamp,
) -> RunUpdate {
    patch_run(
        s,
        run,
        RunPatch {
            status: Some(status),
            ..Default::default()
        },
        now,
    )
    .await
}

/// Reserves (permissive) and moves the run to `running`.
pub(super) async fn running(
    s: &dyn Store,
    issue: IssueId,
    kind: WorkflowKind,
    now: Timestamp,
) -> Run {
    let run = allow(s, issue, kind, now).await;
    let u = set_status(s, run.id, RunStatus::Running, now).await;
    assert_eq!(u.run.status, RunStatus::Running);
    u.run
}

pub(super) fn customer(ws: WorkspaceId, name: &str, slug: &str, at: Timestamp) -> Customer {
    Customer {
        id: CustomerId::new(),
        workspace_id: ws,
        name: name.to_string(),
        slug: slug.to_string(),
        slack_channel_id: None,
        portal_token: new_portal_token(),
        brand_color: Some("#112233".to_string()),
        logo_url: Some("https://cdn.invalid/logo.png".to_string()),
        created_at: at,
        updated_at: at,
    }
}

pub(super) async fn add_customer(
    s: &dyn Store,
    ws: WorkspaceId,
    name: &str,
    slug: &str,
) -> Customer {
    s.create_customer(&customer(ws, name, slug, t0()))
        .await
        .expect("create_customer")
}

pub(super) fn attempt(
    issue: IssueId,
    pr: i64,
    status: VerificationStatus,
    created_at: Timestamp,
    deadline: Option<Timestamp>,
) -> FixAttempt {
    FixAttempt {
        id: FixAttemptId::new(),
        issue_id: issue,
        pr_number: pr,
        pr_url: Some(format!("https://github.invalid/acme/app/pull/{pr}")),
        pr_title: Some(format!("fix: ACME-{pr}")),
        merged_at: created_at,
        merged_sha: Some("abc1234def".to_string()),
        deployed_sha: None,
        deployed_at: deadline.map(|d| d - Duration::hours(48)),
        status,
        deadline,
        checked_at: None,
        failure_reason: None,
        events_after_deploy: None,
        created_at,
        updated_at: created_at,
    }
}

/// Asserts that `r` failed with `kind`; returns the error.
#[track_caller]
pub(super) fn expect_err<T: Debug>(r: Result<T>, kind: ErrorKind, what: &str) -> Error {
    match r {
        Ok(v) => panic!("{what}: expected {kind:?}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.kind, kind, "{what}: wrong error kind ({e})");
            e
        }
    }
}

#[track_caller]
pub(super) fn not_found<T: Debug>(r: Result<T>, what: &str) {
    expect_err(r, ErrorKind::NotFound, what);
}

#[track_caller]
pub(super) fn conflict<T: Debug>(r: Result<T>, what: &str) {
    expect_err(r, ErrorKind::Conflict, what);
}

#[track_caller]
pub(super) fn invalid<T: Debug>(r: Result<T>, field: &str, what: &str) {
    let e = match r {
        Ok(v) => panic!("{what}: expected InvalidInput{{field: {field}}}, got Ok({v:?})"),
        Err(e) => e,
    };
    assert_eq!(
        e.field(),
        Some(field),
        "{what}: expected InvalidInput on {field:?}, got {:?} ({e})",
        e.kind
    );
}

/// A listing of something that no longer exists: `NotFound` or empty are both fine.
#[track_caller]
pub(super) fn gone<T: Debug>(r: Result<Vec<T>>, what: &str) {
    match r {
        Ok(v) => assert!(v.is_empty(), "{what}: expected nothing, got {v:?}"),
        Err(e) => assert_eq!(
            e.kind,
            ErrorKind::NotFound,
            "{what}: wrong error kind ({e})"
        ),
    }
}

#[track_caller]
pub(super) fn approx(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() < 1e-9,
        "{what}: expected {expected}, got {actual}"
    );
}

/// Awaits every task, re-raising the first panic as this task's panic.
pub(super) async fn join_all<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("task ended without a result: {e}"),
        }
    }
    out
}

pub(super) fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}
