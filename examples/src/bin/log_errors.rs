//! Errors from your own logs: a `tracing` layer turns `ERROR` events (with `source` and `feature`
//! fields) into error issues, deduplicated by fingerprint — no log pipeline in between.
//!
//!     cargo run -p dispatch-examples --bin log_errors

use dispatch_core::memory::MemoryStore;
use dispatch_core::{Dispatch, issue::IssueFilter};
use dispatch_examples::{DispatchLayer, ScriptRunner, ingest_forever};
use std::sync::Arc;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dispatch = Dispatch::builder(
        Arc::new(MemoryStore::new()),
        Arc::new(ScriptRunner::default()),
    )
    .build()
    .await?;
    let (layer, events) = DispatchLayer::new("my-service", 1024);
    let subscriber = tracing_subscriber::registry().with(layer);
    let ingest = tokio::spawn(ingest_forever(dispatch.clone(), events));
    tracing::subscriber::with_default(subscriber, || {
        for customer in ["cus_1", "cus_2", "cus_3"] {
            tracing::error!(
                source = "billing",
                feature = "charge",
                "Card declined for {customer}"
            );
        }
        tracing::error!(
            source = "export",
            feature = "csv",
            error = "EOF",
            "Export failed at row 1042"
        );
    });
    // The subscriber (and with it the sender) is gone: the ingest task drains and ends.
    ingest.await?;
    for i in dispatch.list_issues(&IssueFilter::default()).await? {
        println!("{} {}", i.identifier, i.title);
    }
    Ok(())
}
