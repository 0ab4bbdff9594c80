//! The Store conformance suite against a real SQLite file (a fresh file per case).
//! Run one case: `CONFORMANCE_FILTER=runs:: cargo test -p dispatch-adapters --test store_conformance_sqlite`.
#![cfg(feature = "sqlite")]

use dispatch_adapters::sqlite::SqliteStore;
use dispatch_core::ports::Store;
use dispatch_core::testkit::conformance::{StoreFactory, cases, run_suite_filtered};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_passes_the_store_conformance_suite() {
    let dir = std::env::temp_dir().join(format!("dispatch-conformance-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = dir.clone();
    let factory: Box<StoreFactory> = Box::new(move || {
        let path = base.join(format!("{}.db", uuid::Uuid::now_v7()));
        Box::pin(async move {
            let store = SqliteStore::open(&path.to_string_lossy()).await.unwrap();
            Arc::new(store) as Arc<dyn Store>
        })
    });
    let filter = std::env::var("CONFORMANCE_FILTER")
        .ok()
        .filter(|f| !f.is_empty());
    let passed = run_suite_filtered(&*factory, filter.as_deref()).await;
    if filter.is_none() {
        assert_eq!(passed, cases().len(), "every case ran and passed");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
