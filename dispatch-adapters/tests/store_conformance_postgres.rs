//! The Store conformance suite against a real PostgreSQL (a fresh schema per case).
//! Run one case: `CONFORMANCE_FILTER=runs:: cargo test -p dispatch-adapters --features postgres --test store_conformance_postgres`.
#![cfg(feature = "postgres")]

mod support;

use dispatch_adapters::postgres::PostgresStore;
use dispatch_core::ports::Store;
use dispatch_core::testkit::conformance::{StoreFactory, cases, run_suite_filtered};
use std::sync::{Arc, Mutex};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_passes_the_store_conformance_suite() {
    let admin = support::admin_pool().await;
    let schemas = Arc::new(Mutex::new(Vec::<String>::new()));
    let created = schemas.clone();
    let admin2 = admin.clone();
    let factory: Box<StoreFactory> = Box::new(move || {
        let admin = admin2.clone();
        let created = created.clone();
        Box::pin(async move {
            let (schema, opts) = support::fresh_schema(&admin).await;
            created.lock().unwrap().push(schema);
            let store = PostgresStore::from_pool(support::pool(&opts, 16).await)
                .await
                .unwrap();
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
    let names = schemas.lock().unwrap().clone();
    for s in names {
        support::drop_schema(&admin, &s).await;
    }
}
