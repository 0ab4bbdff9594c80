//! PostgreSQL lock order (issue 10 #10): inserting a row that references an issue or a run (an
//! activity, a terminal chunk, a comment) takes a KEY SHARE lock on the referenced rows, in its
//! own order; a run update locks the run, then the issue. If the store's row locks were
//! `FOR UPDATE` (which conflicts with KEY SHARE), an activity insert holding the issue and a run
//! update holding the run would each wait for the other: a deadlock, a 503, a retried callback.
//! The store locks with `FOR NO KEY UPDATE`, which excludes other writers of the row but not the
//! inserts that merely reference it. Deterministic: the test holds the KEY SHARE locks itself in
//! an open transaction and the run update must complete while it is open.
#![cfg(feature = "postgres")]

mod support;

use dispatch_adapters::postgres::PostgresStore;
use dispatch_core::gate::SpawnPolicy;
use dispatch_core::issue::{Actor, NewIssue};
use dispatch_core::ports::{IssueStore, RunStore, SpawnRequest, WorkspaceStore};
use dispatch_core::run::{RunPatch, RunStatus, WorkflowKind};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_update_does_not_wait_for_inserts_that_reference_its_rows() {
    let admin = support::admin_pool().await;
    let (schema, opts) = support::fresh_schema(&admin).await;
    let pool = support::pool(&opts, 8).await;
    let store = PostgresStore::from_pool(pool.clone()).await.unwrap();
    let now = chrono::Utc::now();
    let ws = store.ensure_workspace("Acme", "ACME", now).await.unwrap();
    let issue = store
        .create_issue(
            ws.id,
            NewIssue::titled("locks"),
            &Actor::system("t"),
            now,
            &Default::default(),
        )
        .await
        .unwrap();
    let r = store
        .reserve_spawn(
            &SpawnRequest {
                issue_id: issue.id,
                kind: WorkflowKind::AutoTriage,
                force: false,
                from_alert: false,
                additional_context: None,
                actor: Actor::system("t"),
                policy: SpawnPolicy::permissive(),
                deferred_id: None,
                outbox: Default::default(),
            },
            now,
        )
        .await
        .unwrap();
    let run = r.run.unwrap();

    // Another transaction holds what an activity insert holds: KEY SHARE on the issue and the run.
    let mut other = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM dispatch_issue WHERE id = $1 FOR KEY SHARE")
        .bind(issue.id.0)
        .execute(&mut *other)
        .await
        .unwrap();
    sqlx::query("SELECT 1 FROM dispatch_run WHERE id = $1 FOR KEY SHARE")
        .bind(run.id.0)
        .execute(&mut *other)
        .await
        .unwrap();

    // The run update (run, then issue) goes through while that transaction is open.
    let patch = RunPatch {
        status: Some(RunStatus::Cancelled),
        ..RunPatch::default()
    };
    let update = tokio::time::timeout(
        Duration::from_secs(20),
        store.update_run(run.id, &patch, &Actor::system("t"), now),
    )
    .await
    .expect("the run update waited for a transaction that only references its rows")
    .unwrap();
    assert!(update.ended);
    other.rollback().await.unwrap();
    support::drop_schema(&admin, &schema).await;
}
