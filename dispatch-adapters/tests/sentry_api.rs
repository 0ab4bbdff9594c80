//! Sentry API enrichment (`sentry-api` feature) against a local fake of the Sentry API.
//!
//! `fixtures/sentry/issue-events-full.built.json` is built: one event in the shape of Sentry's
//! event serializer (`entries` with `exception` frames as `Frame.get_api_context` writes them:
//! `filename, absPath, function, context, lineNo, colNo, inApp`, a `request` entry, `tags` as
//! `{key, value}`, `release` as an object, `user`).
#![cfg(feature = "sentry-api")]

use dispatch_adapters::sentry::api::SentryApiConfig;
use dispatch_adapters::sentry::{Enrichment, SentryAlertSource};
use dispatch_core::ports::{AlertRequest, AlertSource};
use serde_json::Value;
use std::time::Duration;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ISSUE_CREATED: &[u8] = include_bytes!("fixtures/sentry/issue-created.json");
const EVENTS: &str = include_str!("fixtures/sentry/issue-events-full.built.json");
const EVENTS_PATH: &str = "/api/0/organizations/example-org/issues/1170820242/events/";

fn headers() -> Vec<(String, String)> {
    vec![("sentry-hook-resource".into(), "issue".into())]
}

fn source(server: &MockServer, timeout: Duration) -> SentryAlertSource {
    let mut cfg = SentryApiConfig::new("sntrys_test_token", "example-org");
    cfg.api_url = server.uri();
    cfg.timeout = timeout;
    SentryAlertSource::with_api(&cfg).expect("client")
}

async fn parse(source: &SentryAlertSource) -> dispatch_core::event::ErrorEvent {
    let h = headers();
    let mut batch = source
        .parse(AlertRequest {
            headers: &h,
            body: ISSUE_CREATED,
        })
        .await
        .expect("parses");
    assert_eq!(batch.events.len(), 1);
    batch.events.remove(0)
}

#[tokio::test]
async fn the_latest_event_adds_stack_trace_request_user_tags_and_release() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EVENTS_PATH))
        .and(query_param("full", "true"))
        .and(query_param("limit", "1"))
        .and(header("authorization", "Bearer sntrys_test_token"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(EVENTS, "application/json"))
        .expect(1)
        .mount(&server)
        .await;
    let src = source(&server, Duration::from_secs(5));
    assert!(src.enriches());
    let e = parse(&src).await;
    let st = e.stack_trace.as_deref().expect("stack trace");
    let lines: Vec<&str> = st.lines().collect();
    assert_eq!(lines[0], "ReferenceError: blooopy is not defined");
    assert_eq!(
        lines[1], "  at runner (/runner:3:3)",
        "most recent call first:\n{st}"
    );
    assert!(lines.contains(&"    >     3 |   blooopy();"), "{st}");
    assert!(lines.contains(&"          2 | function runner() {"), "{st}");
    assert!(
        st.contains("at invokeGuardedCallback (node_modules/react-dom/cjs/react-dom.development.js:362:31) (library)"),
        "{st}"
    );
    let d = e.description.as_deref().expect("description");
    assert!(d.contains("## Stack Trace\n```\nReferenceError"), "{d}");
    assert!(
        d.contains("## HTTP Request\n`POST https://app.example.com/runner`"),
        "{d}"
    );
    assert!(d.contains("- **User:** someone (id `4711`)"), "{d}");
    assert!(
        !d.contains("someone@example.com") && !d.contains("203.0.113.9"),
        "no e-mail or IP: {d}"
    );
    assert!(d.contains("- **release:** `front-end@2.4.1`"), "{d}");
    assert!(d.contains("- **environment:** production"), "{d}");
    assert!(!d.contains("- **user:**"), "only the fixed tag list: {d}");
    assert_eq!(
        e.labels.get("release").map(String::as_str),
        Some("front-end@2.4.1")
    );
    // Everything from the payload is still there.
    assert_eq!(e.external_id.as_deref(), Some("1170820242"));
    assert!(d.contains("## Impact") && d.contains("## Links"), "{d}");
}

#[tokio::test]
async fn a_failing_or_slow_sentry_api_leaves_the_payload_event() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EVENTS_PATH))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .mount(&server)
        .await;
    let plain = dispatch_adapters::sentry::parse_payload(Some("issue"), ISSUE_CREATED)
        .expect("parses")
        .events
        .remove(0);
    assert_eq!(parse(&source(&server, Duration::from_secs(5))).await, plain);

    let slow = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EVENTS_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(EVENTS, "application/json")
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&slow)
        .await;
    let started = std::time::Instant::now();
    assert_eq!(
        parse(&source(&slow, Duration::from_millis(300))).await,
        plain
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the timeout holds"
    );

    let odd = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EVENTS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_raw("[]", "application/json"))
        .mount(&odd)
        .await;
    assert_eq!(parse(&source(&odd, Duration::from_secs(5))).await, plain);
}

#[tokio::test]
async fn skipped_and_malformed_payloads_make_no_api_call() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(EVENTS, "application/json"))
        .expect(0)
        .mount(&server)
        .await;
    let src = source(&server, Duration::from_secs(5));
    let h = headers();
    let mut v: Value = serde_json::from_slice(ISSUE_CREATED).expect("json");
    v["action"] = "resolved".into();
    let b = src
        .parse(AlertRequest {
            headers: &h,
            body: v.to_string().as_bytes(),
        })
        .await
        .expect("skipped");
    assert!(b.events.is_empty());
    v["action"] = "created".into();
    v["data"]["issue"]["project"] = "front-end".into();
    let e = src
        .parse(AlertRequest {
            headers: &h,
            body: v.to_string().as_bytes(),
        })
        .await
        .expect_err("malformed");
    assert_eq!(e.field(), Some("data.issue.project"));
}

#[test]
fn config_from_the_environment() {
    let none = SentryApiConfig::from_lookup(&|_| None).expect("ok");
    assert!(none.is_none(), "no token: no enrichment");
    let e = SentryApiConfig::from_lookup(&|k| (k == "SENTRY_API_TOKEN").then(|| "t".to_string()))
        .expect_err("org missing");
    assert_eq!(e.field(), Some("SENTRY_ORGANIZATION_SLUG"));
    let cfg = SentryApiConfig::from_lookup(&|k| match k {
        "SENTRY_API_TOKEN" => Some("t".into()),
        "SENTRY_ORGANIZATION_SLUG" => Some("acme".into()),
        "SENTRY_API_TIMEOUT_MS" => Some("900".into()),
        _ => None,
    })
    .expect("ok")
    .expect("some");
    assert_eq!(cfg.organization, "acme");
    assert_eq!(cfg.api_url, "https://sentry.io");
    assert_eq!(cfg.timeout, Duration::from_millis(900));
    assert!(
        !format!("{cfg:?}").contains("\"t\""),
        "the token is not printed"
    );
    let mut bad = SentryApiConfig::new("t", "acme");
    bad.api_url = "ftp://x".into();
    assert_eq!(
        SentryAlertSource::with_api(&bad)
            .expect_err("bad url")
            .field(),
        Some("SENTRY_API_URL")
    );
}

#[test]
fn enrichment_of_an_unknown_shape_is_empty() {
    assert!(Enrichment::from_event(&Value::Null).is_empty());
    assert!(Enrichment::from_event(&serde_json::json!({"entries": "x", "tags": {}})).is_empty());
    assert!(Enrichment::from_event(&serde_json::json!({"entries": [{"type": "exception", "data": {"values": [{"type": "E"}]}}]})).is_empty());
}
