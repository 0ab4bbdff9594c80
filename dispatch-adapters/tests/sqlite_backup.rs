//! Online backup and restore of the SQLite store (SQLite's backup API).
#![cfg(feature = "sqlite")]

use dispatch_adapters::sqlite::SqliteStore;
use dispatch_adapters::sqlite_backup::{backup, restore};
use dispatch_core::issue::{Actor, IssueFilter, NewIssue};
use dispatch_core::ports::{IssueStore, WorkspaceStore};
use dispatch_core::testkit::ManualClock;
use dispatch_core::{Clock, ErrorKind};
use std::path::PathBuf;

struct TempDir(PathBuf);
impl TempDir {
    fn new() -> Self {
        let p = std::env::temp_dir().join(format!("dispatch-backup-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn titles(s: &SqliteStore) -> Vec<String> {
    let ws = s
        .ensure_workspace("Dispatch", "DISPATCH", ManualClock::at_default().now())
        .await
        .unwrap();
    let mut t: Vec<String> = s
        .list_issues(ws.id, &IssueFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.title)
        .collect();
    t.sort();
    t
}

async fn create(s: &SqliteStore, title: &str) {
    let clock = ManualClock::at_default();
    let ws = s
        .ensure_workspace("Dispatch", "DISPATCH", clock.now())
        .await
        .unwrap();
    s.create_issue(
        ws.id,
        NewIssue::titled(title),
        &Actor::user("a"),
        clock.now(),
        &Default::default(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_backup_of_a_live_store_restores_into_the_live_store() {
    let dir = TempDir::new();
    let db = dir.file("live.db").to_string_lossy().into_owned();
    let store = SqliteStore::open(&db).await.unwrap();
    for i in 0..40 {
        create(&store, &format!("before {i:02}")).await;
    }
    // Taken while the store is open, with committed WAL content not yet checkpointed.
    let copy = dir.file("copy.db");
    let report = backup(&db, &copy).await.unwrap();
    assert_eq!(report.issues, 40);
    assert_eq!(report.schema_version, SqliteStore::known_schema_version());
    assert!(report.bytes > 0);

    for i in 0..5 {
        create(&store, &format!("after {i}")).await;
    }
    assert_eq!(titles(&store).await.len(), 45);

    // Restored under the running store: its open connections see the backup's data, and it
    // keeps working (the next identifier follows the restored ones).
    let restored = restore(&copy, &db, SqliteStore::known_schema_version())
        .await
        .unwrap();
    assert_eq!(restored.issues, 40);
    let now = titles(&store).await;
    assert_eq!(now.len(), 40);
    assert!(now.iter().all(|t| t.starts_with("before")), "{now:?}");
    create(&store, "after restore").await;
    assert_eq!(titles(&store).await.len(), 41);
    store.close().await;

    // And a fresh process opening the file sees the same.
    let reopened = SqliteStore::open(&db).await.unwrap();
    assert_eq!(titles(&reopened).await.len(), 41);
    reopened.close().await;
}

#[tokio::test]
async fn a_backup_never_overwrites_a_file() {
    let dir = TempDir::new();
    let db = dir.file("live.db").to_string_lossy().into_owned();
    let store = SqliteStore::open(&db).await.unwrap();
    let copy = dir.file("copy.db");
    std::fs::write(&copy, b"precious").unwrap();
    let e = backup(&db, &copy).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert_eq!(std::fs::read(&copy).unwrap(), b"precious");
    store.close().await;
}

#[tokio::test]
async fn a_damaged_or_foreign_backup_is_refused_and_the_database_kept() {
    let dir = TempDir::new();
    let db = dir.file("live.db").to_string_lossy().into_owned();
    let store = SqliteStore::open(&db).await.unwrap();
    create(&store, "kept").await;

    let garbage = dir.file("garbage.db");
    std::fs::write(&garbage, vec![7u8; 8192]).unwrap();
    let e = restore(&garbage, &db, SqliteStore::known_schema_version())
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("backup"), "{e}");

    // A SQLite file that is not a Dispatch database.
    let foreign = dir.file("foreign.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", foreign.display()))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE t (x)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let e = restore(&foreign, &db, SqliteStore::known_schema_version())
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("backup"), "{e}");
    assert!(e.to_string().contains("no Dispatch schema"), "{e}");

    let missing = restore(&dir.file("nothing.db"), &db, 99).await.unwrap_err();
    assert_eq!(missing.kind, ErrorKind::NotFound);

    assert_eq!(titles(&store).await, vec!["kept".to_string()]);
    store.close().await;
}

#[tokio::test]
async fn a_backup_from_a_newer_schema_is_refused() {
    let dir = TempDir::new();
    let db = dir.file("live.db").to_string_lossy().into_owned();
    let store = SqliteStore::open(&db).await.unwrap();
    create(&store, "kept").await;
    let copy = dir.file("copy.db");
    backup(&db, &copy).await.unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", copy.display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO dispatch_migrations (version, name, applied_at) VALUES (999, 'future', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let e = restore(&copy, &db, SqliteStore::known_schema_version())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("schema version 999"), "{e}");
    assert_eq!(titles(&store).await.len(), 1);
    store.close().await;
}
