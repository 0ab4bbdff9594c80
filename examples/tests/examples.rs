//! The examples' building blocks do what the examples say: a Datadog payload becomes issues
//! through the engine, the custom runner completes a run through the engine's reporter, and
//! error logs become deduplicated issues without blocking the code that logs.

use dispatch_core::Dispatch;
use dispatch_core::config::EngineConfig;
use dispatch_core::engine::SpawnOptions;
use dispatch_core::gate::SpawnPolicy;
use dispatch_core::issue::{Actor, IssueFilter, NewIssue};
use dispatch_core::memory::MemoryStore;
use dispatch_core::ports::{AlertRequest, AlertSource};
use dispatch_core::run::{RunStatus, WorkflowKind};
use dispatch_examples::{DatadogSource, DispatchLayer, ScriptRunner, ingest_forever};
use std::sync::Arc;
use tracing_subscriber::layer::SubscriberExt;

async fn engine() -> Dispatch {
    Dispatch::builder(
        Arc::new(MemoryStore::new()),
        Arc::new(ScriptRunner::default()),
    )
    .config(EngineConfig {
        policy: SpawnPolicy::permissive(),
        ..EngineConfig::default()
    })
    .build()
    .await
    .unwrap()
}

#[tokio::test]
async fn datadog_payloads_become_deduplicated_issues() {
    let d = engine().await;
    let body = br#"[
        {"id": "m-1", "title": "Card declined", "body": "Card declined for cus_123", "tags": ["service:billing", "feature:charge"], "event_count": 4},
        {"id": "m-1", "title": "Card declined", "body": "Card declined for cus_456", "tags": ["service:billing", "feature:charge"]},
        {"title": "Recovered", "alert_type": "success", "tags": []}
    ]"#;
    let batch = DatadogSource
        .parse(AlertRequest { headers: &[], body })
        .await
        .unwrap();
    assert_eq!(batch.events.len(), 2);
    assert_eq!(batch.skipped, vec!["Recovered: recovered".to_string()]);
    assert_eq!(
        (
            batch.events[0].source.as_str(),
            batch.events[0].feature.as_str(),
            batch.events[0].event_count
        ),
        ("billing", "charge", 4)
    );
    let mut created = Vec::new();
    for e in batch.events {
        created.push(d.ingest(e).await.unwrap().created);
    }
    assert_eq!(
        created,
        vec![true, false],
        "the customer id is normalised away: one issue"
    );
    let issues = d.list_issues(&IssueFilter::default()).await.unwrap();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].title, "Card declined");

    for bad in [
        &b"nope"[..],
        br#"{"body": "no title"}"#,
        br#"[{"title": 3}]"#,
    ] {
        let e = DatadogSource
            .parse(AlertRequest {
                headers: &[],
                body: bad,
            })
            .await
            .unwrap_err();
        assert!(
            e.field().is_some(),
            "a malformed payload names what is wrong: {e}"
        );
    }
}

#[tokio::test]
async fn the_custom_runner_completes_a_run_through_the_engine() {
    let d = engine().await;
    let me = Actor::user("you");
    let issue = d
        .create_issue(NewIssue::titled("Export drops a row"), &me)
        .await
        .unwrap();
    d.spawn(issue.id, SpawnOptions::new(WorkflowKind::AutoTriage), &me)
        .await
        .unwrap();
    assert_eq!(d.dispatcher_step().await.unwrap(), 1);
    let run = loop {
        let runs = d.runs(issue.id).await.unwrap();
        if runs[0].status.is_terminal() {
            break runs[0].clone();
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.external_id, Some(format!("script-{}", run.id)));
    let transcript = d.transcript(run.id).await.unwrap();
    assert!(
        transcript.contains("[TOOL] Grep(pattern=charge)"),
        "{transcript}"
    );
    assert!(transcript.contains("Found the cause"), "{transcript}");
}

#[tokio::test]
async fn error_logs_become_issues() {
    let d = engine().await;
    let (layer, events) = DispatchLayer::new("my-service", 16);
    let subscriber = tracing_subscriber::registry().with(layer);
    let ingest = tokio::spawn(ingest_forever(d.clone(), events));
    tracing::subscriber::with_default(subscriber, || {
        for customer in ["cus_1", "cus_2"] {
            tracing::error!(
                source = "billing",
                feature = "charge",
                "Card declined for {customer}"
            );
        }
        tracing::warn!("not an error: ignored");
        tracing::error!("no source field: the default source");
    });
    ingest.await.unwrap();
    let issues = d.list_issues(&IssueFilter::default()).await.unwrap();
    assert_eq!(issues.len(), 2, "{issues:?}");
    let links: Vec<String> = {
        let mut v = Vec::new();
        for i in &issues {
            for l in d.store().links_for_issue(i.id).await.unwrap() {
                v.push(format!("{}:{}", l.source, l.event_count));
            }
        }
        v.sort();
        v
    };
    assert_eq!(
        links,
        vec!["app-log:1".to_string(), "app-log:2".to_string()]
    );
}
