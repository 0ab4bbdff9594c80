//! Issue 10 #4 on PostgreSQL: the group commit updates each known key on its own connection, so
//! each key commits or fails on its own — and each caller must get its own key's answer. Before,
//! one failing key answered every caller of the batch with its error although the other keys'
//! counts had committed: their senders retried and the events counted twice.
//!
//! Deterministic: a trigger makes the update of one key fail; a row lock held by the test keeps
//! the group-commit worker busy on a first batch while the two calls under test are queued, so
//! they are answered from one batch.
#![cfg(feature = "postgres")]

mod support;

use dispatch_adapters::postgres::PostgresStore;
use dispatch_core::issue::{Actor, NewIssue};
use dispatch_core::ports::{ErrorLinkStore, IngestDraft, WorkspaceStore};
use std::time::Duration;

fn draft(key: &str) -> IngestDraft {
    IngestDraft {
        source: "loki".into(),
        external_key: key.into(),
        fingerprint: key.into(),
        url: None,
        metadata: serde_json::json!({}),
        event_count: 1,
        seen_at: chrono::Utc::now(),
        new_issue: NewIssue::titled(format!("error {key}")),
        actor: Actor::webhook("Loki Webhook"),
        outbox: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_key_fails_only_its_own_callers() {
    let admin = support::admin_pool().await;
    let (schema, opts) = support::fresh_schema(&admin).await;
    let pool = support::pool(&opts, 8).await;
    let store = PostgresStore::from_pool(pool.clone()).await.unwrap();
    let ws = store
        .ensure_workspace("Acme", "ACME", chrono::Utc::now())
        .await
        .unwrap();
    for key in ["slow", "ok", "poison"] {
        assert!(store.ingest_error(ws.id, draft(key)).await.unwrap().created);
    }
    sqlx::query(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'poisoned key'; END $$",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_poison BEFORE UPDATE ON dispatch_error_link FOR EACH ROW \
         WHEN (NEW.external_key = 'poison') EXECUTE FUNCTION refuse_poison()",
    )
    .execute(&pool)
    .await
    .unwrap();

    // The worker's first batch (key "slow") waits for this lock.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM dispatch_error_link WHERE external_key = 'slow' FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let slow = tokio::spawn({
        let store = store.clone();
        async move { store.ingest_error(ws.id, draft("slow")).await }
    });
    // Until the worker is blocked on the lock (an observed state, bounded).
    let mut waited = 0;
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' \
             AND query LIKE 'UPDATE dispatch_error_link%'",
        )
        .fetch_one(&admin)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        waited += 1;
        assert!(waited < 400, "the worker never reached the locked row");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Queued behind it: both calls are answered by the next batch. The first poll queues.
    let mut ok = Box::pin(store.ingest_error(ws.id, draft("ok")));
    let mut poison = Box::pin(store.ingest_error(ws.id, draft("poison")));
    assert!(futures::poll!(&mut ok).is_pending());
    assert!(futures::poll!(&mut poison).is_pending());
    holder.commit().await.unwrap();

    assert_eq!(slow.await.unwrap().unwrap().link.event_count, 2);
    let e = poison.await.expect_err("the poisoned key's update failed");
    assert!(
        !e.message.is_empty(),
        "the failing key's caller gets its error"
    );
    let ok = ok
        .await
        .expect("a key that committed is answered as stored, not with its neighbour's error");
    assert_eq!(ok.link.event_count, 2);
    let stored = store.get_link("loki", "ok").await.unwrap().unwrap();
    assert_eq!(stored.event_count, 2, "counted once");
    let poisoned = store.get_link("loki", "poison").await.unwrap().unwrap();
    assert_eq!(poisoned.event_count, 1, "the failed key changed nothing");
    support::drop_schema(&admin, &schema).await;
}
