//! The engine inside your own axum service: Datadog monitor webhooks arrive at
//! `POST /webhooks/datadog`, become issues (deduplicated by fingerprint, with the same gates as
//! the reference server), and the dispatcher sends [`ScriptRunner`] agents to them.
//!
//!     DATABASE_URL=./example.db cargo run -p dispatch-examples --bin axum_datadog
//!     curl -X POST localhost:4000/webhooks/datadog -H 'content-type: application/json' \
//!       -d '{"title":"Card declined","body":"Card declined for cus_123","tags":["service:billing","feature:charge"]}'
//!     curl localhost:4000/issues

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use dispatch_adapters::open::{StoreUrl, open_store};
use dispatch_core::Dispatch;
use dispatch_core::issue::IssueFilter;
use dispatch_core::ports::{AlertRequest, AlertSource};
use dispatch_examples::{DatadogSource, ScriptRunner};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Clone)]
struct App {
    dispatch: Dispatch,
    source: Arc<DatadogSource>,
}

async fn datadog(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let headers: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let batch = match app
        .source
        .parse(AlertRequest {
            headers: &headers,
            body: &body,
        })
        .await
    {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": e.message, "field": e.field() })),
            );
        }
    };
    let mut results = Vec::new();
    for event in batch.events {
        match app.dispatch.ingest(event).await {
            Ok(r) => results.push(json!({
                "issue": r.issue.identifier,
                "created": r.created,
                "spawned": r.spawn.as_ref().is_some_and(|s| s.spawned()),
            })),
            Err(e) => results.push(json!({ "error": e.message })),
        }
    }
    (
        StatusCode::OK,
        Json(json!({ "results": results, "skipped": batch.skipped })),
    )
}

async fn issues(State(app): State<App>) -> Result<Json<Value>, StatusCode> {
    let list = app
        .dispatch
        .list_issues(&IssueFilter {
            limit: Some(50),
            ..IssueFilter::default()
        })
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(Json(json!(
        list.iter()
            .map(
                |i| json!({ "identifier": i.identifier, "title": i.title, "spawn": i.spawn_status })
            )
            .collect::<Vec<_>>()
    )))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // DATABASE_URL / PG_DATABASE_URL as the server reads them (default: ./dispatch.db).
    let opened = open_store(&StoreUrl::from_env()?).await?;
    let dispatch = Dispatch::builder(opened.store, Arc::new(ScriptRunner::default()))
        .bus(opened.bus)
        .clock(opened.clock)
        .config(dispatch_core::config::EngineConfig::from_env()?)
        .build()
        .await?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let loops = tokio::spawn({
        let d = dispatch.clone();
        let cancel = cancel.clone();
        async move { d.run(cancel).await }
    });
    let app = Router::new()
        .route("/webhooks/datadog", post(datadog))
        .route("/issues", get(issues))
        .with_state(App {
            dispatch,
            source: Arc::new(DatadogSource),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:4000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.unwrap_or(()) })
        .await?;
    cancel.cancel();
    loops.await?;
    Ok(())
}
