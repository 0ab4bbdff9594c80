//! The Store conformance suite against a real PostgreSQL (a fresh schema per case).
//! Run one case: `CONFORMANCE_FILTER=runs:: cargo test -p dispatch-adapters --features postgres --test store_conformance_postgres`.
#![cfg(feature = "postgres")]

mod support;

use dispatch_adapters::postgres::PostgresStore;
use dispatch_core::ports::{IssueStore, SearchStore, Store, WorkspaceStore};
use dispatch_core::testkit::conformance::{StoreFactory, cases, run_suite_filtered};
use std::sync::{Arc, Mutex};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_passes_the_store_conformance_suite() {
    suite(false).await;
}

/// Where the `vector` extension is installed the suite above compares embeddings with `<=>`
/// inside PostgreSQL; the embedding cases once more over the Rust path a server without the
/// extension takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_without_pgvector_passes_the_embedding_cases() {
    suite(true).await;
}

/// `scripts/test` builds and installs pgvector and says so with `DISPATCH_TEST_PGVECTOR=1`: then
/// the store must use it (a store that silently fell back would leave `<=>` untested).
#[tokio::test]
async fn the_store_uses_pgvector_where_the_extension_is_installed() {
    if std::env::var("DISPATCH_TEST_PGVECTOR").as_deref() != Ok("1") {
        eprintln!("DISPATCH_TEST_PGVECTOR is not 1: the vector extension was not installed here");
        return;
    }
    let admin = support::admin_pool().await;
    let (schema, opts) = support::fresh_schema(&admin).await;
    // Only the store's own schema on the search path: the extension (in public) is found by
    // its qualified names.
    let opts = opts.options([("search_path", schema.as_str())]);
    let store = PostgresStore::from_pool(support::pool(&opts, 2).await)
        .await
        .unwrap();
    assert!(
        store.uses_pgvector(),
        "the vector extension is installed and the pgvector feature is on"
    );
    assert!(!store.clone().without_pgvector().uses_pgvector());
    let ws = store
        .ensure_workspace("Acme", "ACME", chrono::Utc::now())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (title, v) in [
        ("north", [0.0f32, 1.0]),
        ("east", [1.0, 0.0]),
        ("north-east", [0.7, 0.7]),
    ] {
        let i = store
            .create_issue(
                ws.id,
                dispatch_core::issue::NewIssue::titled(title),
                &dispatch_core::issue::Actor::user("t"),
                chrono::Utc::now(),
                &Default::default(),
            )
            .await
            .unwrap();
        store.set_embedding(i.id, "m", &v).await.unwrap();
        ids.push(i.identifier);
    }
    let hits = store
        .nearest_issues(ws.id, "m", &[0.9, 0.2], None, 2)
        .await
        .unwrap();
    let got: Vec<&str> = hits.iter().map(|h| h.issue.identifier.as_str()).collect();
    assert_eq!(
        got,
        [ids[1].as_str(), ids[2].as_str()],
        "ordered by <=> in PostgreSQL"
    );
    let rust = store.clone().without_pgvector();
    let same = rust
        .nearest_issues(ws.id, "m", &[0.9, 0.2], None, 2)
        .await
        .unwrap();
    for (a, b) in hits.iter().zip(&same) {
        assert_eq!(a.issue.id, b.issue.id);
        assert!(
            (a.score - b.score).abs() < 1e-6,
            "{} vs {}",
            a.score,
            b.score
        );
    }
    store.close().await;
    support::drop_schema(&admin, &schema).await;
}

async fn suite(without_pgvector: bool) {
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
            let store = if without_pgvector {
                store.without_pgvector()
            } else {
                store
            };
            Arc::new(store) as Arc<dyn Store>
        })
    });
    let filter = if without_pgvector {
        Some("embedding".to_string())
    } else {
        std::env::var("CONFORMANCE_FILTER")
            .ok()
            .filter(|f| !f.is_empty())
    };
    let passed = run_suite_filtered(&*factory, filter.as_deref()).await;
    if without_pgvector {
        assert!(passed > 0, "the embedding cases ran");
    } else if filter.is_none() {
        assert_eq!(passed, cases().len(), "every case ran and passed");
    }
    let names = schemas.lock().unwrap().clone();
    for s in names {
        support::drop_schema(&admin, &s).await;
    }
}
