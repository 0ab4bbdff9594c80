//! SQLite-specific guarantees beyond the conformance suite.
#![cfg(feature = "sqlite")]

use dispatch_adapters::sqlite::SqliteStore;
use dispatch_core::issue::{Actor, NewIssue};
use dispatch_core::ports::{IssueStore, WorkspaceStore};
use dispatch_core::testkit::ManualClock;
use dispatch_core::{Clock, ErrorKind};

fn temp_db() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("dispatch-test-{}.db", uuid::Uuid::now_v7()))
}

#[tokio::test]
async fn a_row_that_fails_to_decode_is_an_internal_error_naming_table_and_column() {
    let path = temp_db();
    let s = SqliteStore::open(&path.to_string_lossy()).await.unwrap();
    let clock = ManualClock::at_default();
    let ws = s
        .ensure_workspace("Dispatch", "DISPATCH", clock.now())
        .await
        .unwrap();
    let i = s
        .create_issue(
            ws.id,
            NewIssue::titled("x"),
            &Actor::user("a"),
            clock.now(),
            &Default::default(),
        )
        .await
        .unwrap();
    s.close().await;
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE dispatch_issue SET doc = 'not json' WHERE id = $1")
        .bind(i.id.0)
        .execute(&raw)
        .await
        .unwrap();
    raw.close().await;
    let s = SqliteStore::open(&path.to_string_lossy()).await.unwrap();
    let e = s.get_issue(ws.id, &i.id.into()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Internal);
    assert!(e.message.contains("dispatch_issue.doc"), "{}", e.message);
    s.close().await;
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn reopening_a_file_keeps_data_and_does_not_remigrate() {
    let path = temp_db();
    let clock = ManualClock::at_default();
    let s = SqliteStore::open(&path.to_string_lossy()).await.unwrap();
    let ws = s
        .ensure_workspace("Dispatch", "DISPATCH", clock.now())
        .await
        .unwrap();
    s.create_issue(
        ws.id,
        NewIssue::titled("kept"),
        &Actor::user("a"),
        clock.now(),
        &Default::default(),
    )
    .await
    .unwrap();
    s.close().await;
    let s = SqliteStore::open(&path.to_string_lossy()).await.unwrap();
    let ws2 = s
        .ensure_workspace("Dispatch", "DISPATCH", clock.now())
        .await
        .unwrap();
    assert_eq!(ws.id, ws2.id);
    let i = s.get_issue(ws.id, &"DISPATCH-1".into()).await.unwrap();
    assert_eq!(i.title, "kept");
    let next = s
        .create_issue(
            ws.id,
            NewIssue::titled("next"),
            &Actor::user("a"),
            clock.now(),
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(next.identifier, "DISPATCH-2");
    s.close().await;
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn an_unopenable_path_is_a_clear_unavailable_error() {
    let e = SqliteStore::open("/nonexistent-dispatch-dir/sub/x.db")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(
        e.message.contains("/nonexistent-dispatch-dir/sub/x.db"),
        "{}",
        e.message
    );
}
