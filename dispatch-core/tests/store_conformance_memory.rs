//! The Store conformance suite against the in-memory store. Run one case alone with
//! `CONFORMANCE_FILTER=runs::claim cargo test -p dispatch-core --test store_conformance_memory`.

use dispatch_core::memory::MemoryStore;
use dispatch_core::ports::Store;
use dispatch_core::testkit::conformance::{StoreFactory, cases, run_suite_filtered};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_passes_the_store_conformance_suite() {
    let factory: Box<StoreFactory> =
        Box::new(|| Box::pin(async { Arc::new(MemoryStore::new()) as Arc<dyn Store> }));
    let filter = std::env::var("CONFORMANCE_FILTER")
        .ok()
        .filter(|f| !f.is_empty());
    let passed = run_suite_filtered(&*factory, filter.as_deref()).await;
    if filter.is_none() {
        assert_eq!(passed, cases().len(), "every case ran and passed");
    }
}
