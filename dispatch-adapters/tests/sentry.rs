//! `SentryAlertSource` against the Sentry fixtures, and property tests: no input panics it.
#![cfg(feature = "sentry")]

use dispatch_adapters::sentry::{IGNORED_RESOURCE, SentryAlertSource, parse_payload};
use dispatch_core::issue::Priority;
use dispatch_core::ports::{AlertRequest, AlertSource};
use proptest::prelude::*;
use serde_json::{Value, json};

const ISSUE_CREATED: &[u8] = include_bytes!("fixtures/sentry/issue-created.json");
const DOCS_VERBATIM: &[u8] = include_bytes!("fixtures/sentry/issue-created.docs-verbatim.json");

fn issue_headers() -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "application/json".into()),
        ("sentry-hook-resource".into(), "issue".into()),
        (
            "request-id".into(),
            "fbfccc18bc935de5a5e54a65f7f55917".into(),
        ),
    ]
}

#[tokio::test]
async fn issue_created_fixture_becomes_one_event() {
    let source = SentryAlertSource::new();
    assert_eq!(source.name(), "sentry");
    let headers = issue_headers();
    let batch = source
        .parse(AlertRequest {
            headers: &headers,
            body: ISSUE_CREATED,
        })
        .await
        .expect("parses");
    assert_eq!(batch.events.len(), 1, "{batch:?}");
    assert!(batch.skipped.is_empty());
    let e = &batch.events[0];
    assert_eq!(e.origin, "sentry");
    assert_eq!(e.external_id.as_deref(), Some("1170820242"));
    assert_eq!(
        e.title.as_deref(),
        Some("[front-end] ReferenceError: blooopy is not defined")
    );
    assert_eq!(e.message, "ReferenceError: blooopy is not defined");
    assert_eq!(e.source, "front-end");
    assert_eq!(e.feature, "?(runner)", "culprit");
    assert_eq!(e.level, "error");
    assert_eq!(e.priority, Some(Priority::P3), "no priority in the payload");
    assert_eq!(e.event_count, 1);
    assert_eq!(
        e.link.as_deref(),
        Some("https://sentry.io/organizations/example-org/issues/1170820242/"),
        "permalink is null, so web_url"
    );
    assert_eq!(e.error_message.as_deref(), Some("blooopy is not defined"));
    assert_eq!(
        e.labels.get("shortId").map(String::as_str),
        Some("FRONT-END-9")
    );
    let first = chrono::DateTime::parse_from_rfc3339("2019-08-19T20:58:37.391Z")
        .expect("time")
        .with_timezone(&chrono::Utc);
    assert_eq!(e.first_seen, Some(first));
    assert_eq!(e.last_seen, Some(first));
    let d = e.description.as_deref().expect("description");
    for section in [
        "## Error",
        "## Culprit",
        "## Project",
        "## Impact",
        "## Links",
    ] {
        assert!(d.contains(section), "{section} missing in:\n{d}");
    }
    assert!(
        d.contains("**ReferenceError:** blooopy is not defined"),
        "{d}"
    );
    assert!(d.contains("FRONT-END-9"), "{d}");
    assert!(d.contains("- **Events:** 1"), "{d}");
    assert!(d.contains("- **Users affected:** 1"), "{d}");
    assert!(
        d.contains("(https://sentry.io/organizations/example-org/issues/1170820242/)"),
        "{d}"
    );
    assert!(e.validate().is_ok());
}

#[tokio::test]
async fn docs_verbatim_payload_is_escalating_on_created_so_it_is_skipped() {
    let headers = issue_headers();
    let batch = SentryAlertSource::new()
        .parse(AlertRequest {
            headers: &headers,
            body: DOCS_VERBATIM,
        })
        .await
        .expect("parses");
    assert!(batch.events.is_empty());
    assert_eq!(batch.skipped.len(), 1);
    assert!(
        batch.skipped[0].starts_with("Skipped"),
        "{:?}",
        batch.skipped
    );
}

#[tokio::test]
async fn non_issue_resources_are_ignored() {
    let headers = vec![(
        "sentry-hook-resource".to_string(),
        "event_alert".to_string(),
    )];
    let batch = SentryAlertSource::new()
        .parse(AlertRequest {
            headers: &headers,
            body: ISSUE_CREATED,
        })
        .await
        .expect("parses");
    assert!(batch.events.is_empty());
    assert_eq!(batch.skipped, vec![IGNORED_RESOURCE.to_string()]);
    let batch = SentryAlertSource::new()
        .parse(AlertRequest {
            headers: &[],
            body: ISSUE_CREATED,
        })
        .await
        .expect("parses");
    assert_eq!(batch.skipped, vec![IGNORED_RESOURCE.to_string()]);
}

#[test]
fn regressed_and_escalating_variants_of_the_fixture() {
    for (sub, banner) in [("regressed", "Regressed"), ("escalating", "Escalating")] {
        let mut v: Value = serde_json::from_slice(ISSUE_CREATED).expect("json");
        v["action"] = json!("unresolved");
        v["data"]["issue"]["substatus"] = json!(sub);
        v["data"]["issue"]["priority"] = json!("high");
        v["data"]["issue"]["count"] = json!("250");
        v["data"]["issue"]["permalink"] = json!("https://sentry.io/x/issues/1170820242/");
        let batch = parse_payload(Some("issue"), v.to_string().as_bytes()).expect("parses");
        let e = &batch.events[0];
        assert_eq!(e.priority, Some(Priority::P1));
        assert_eq!(e.event_count, 250);
        assert_eq!(
            e.link.as_deref(),
            Some("https://sentry.io/x/issues/1170820242/")
        );
        assert!(e.description.as_deref().is_some_and(|d| d.contains(banner)));
    }
}

#[test]
fn feature_falls_back_to_metadata_function_then_unknown() {
    let mut v: Value = serde_json::from_slice(ISSUE_CREATED).expect("json");
    v["data"]["issue"]["culprit"] = json!("");
    v["data"]["issue"]["metadata"]["function"] = json!("handleRunner");
    let e = parse_payload(Some("issue"), v.to_string().as_bytes())
        .expect("parses")
        .events
        .remove(0);
    assert_eq!(e.feature, "handleRunner");
    v["data"]["issue"]["metadata"] = Value::Null;
    v["data"]["issue"]["culprit"] = Value::Null;
    let e = parse_payload(Some("issue"), v.to_string().as_bytes())
        .expect("parses")
        .events
        .remove(0);
    assert_eq!(e.feature, "unknown");
}

#[test]
fn malformed_fixture_variants_name_the_field() {
    let mut v: Value = serde_json::from_slice(ISSUE_CREATED).expect("json");
    v["data"]["issue"]["project"] = json!(["front-end"]);
    let e = parse_payload(Some("issue"), v.to_string().as_bytes()).expect_err("rejected");
    assert_eq!(e.field(), Some("data.issue.project"));
    let mut v: Value = serde_json::from_slice(ISSUE_CREATED).expect("json");
    v["data"]["issue"]["count"] = json!({"n": 1});
    let e = parse_payload(Some("issue"), v.to_string().as_bytes()).expect_err("rejected");
    assert_eq!(e.field(), Some("data.issue.count"));
    let e = parse_payload(Some("issue"), b"{").expect_err("rejected");
    assert_eq!(e.field(), Some("body"));
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        ".{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("created"),
            Just("unresolved"),
            Just("new"),
            Just("regressed"),
            Just("escalating"),
            Just("high"),
            Just("99999999999999999999999"),
            Just("1e309"),
            Just("2019-08-19T20:58:37.391000Z"),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    let keys = prop_oneof![
        Just("action".to_string()),
        Just("data".to_string()),
        Just("issue".to_string()),
        Just("id".to_string()),
        Just("substatus".to_string()),
        Just("project".to_string()),
        Just("slug".to_string()),
        Just("metadata".to_string()),
        Just("count".to_string()),
        Just("title".to_string()),
        "[a-zA-Z_]{0,8}",
    ];
    leaf.prop_recursive(5, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check(body: &[u8]) {
    match parse_payload(Some("issue"), body) {
        Ok(batch) => {
            assert!(batch.events.len() <= 1);
            for e in &batch.events {
                assert!(e.validate().is_ok(), "{e:?}");
                assert!(e.title.as_deref().is_some_and(|t| t.starts_with('[')));
            }
        }
        Err(e) => {
            assert!(
                matches!(e.kind, dispatch_core::ErrorKind::InvalidInput { .. }),
                "{e:?}"
            );
            assert!(e.field().is_some_and(|f| !f.is_empty()));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&body);
    }

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        check(v.to_string().as_bytes());
    }

    #[test]
    fn sentry_shaped_payloads_never_panic(
        action in prop_oneof![Just(json!("created")), Just(json!("unresolved")), arb_json()],
        sub in prop_oneof![Just(json!("new")), Just(json!("regressed")), arb_json()],
        id in arb_json(), project in arb_json(), metadata in arb_json(), count in arb_json(),
    ) {
        let v = json!({"action": action, "data": {"issue": {
            "id": id, "substatus": sub, "project": project, "metadata": metadata, "count": count,
            "title": "T"
        }}});
        check(v.to_string().as_bytes());
    }

    #[test]
    fn enrichment_never_panics(v in arb_json(), frames in prop::collection::vec(arb_json(), 0..20)) {
        let _ = dispatch_adapters::sentry::Enrichment::from_event(&v);
        let event = json!({
            "entries": [{"type": "exception", "data": {"values": [{"type": v, "stacktrace": {"frames": frames}}]}},
                        {"type": "request", "data": v}],
            "tags": [{"key": "environment", "value": v}], "user": v, "release": v,
        });
        let e = dispatch_adapters::sentry::Enrichment::from_event(&event);
        prop_assert!(e.stack_trace.as_deref().is_none_or(|s| s.lines().filter(|l| l.starts_with("  at ")).count() <= 15));
    }

    #[test]
    fn mutated_fixture_bytes_never_panic(i in 0..ISSUE_CREATED.len(), b in any::<u8>()) {
        let mut body = ISSUE_CREATED.to_vec();
        body[i] = b;
        check(&body);
    }
}
