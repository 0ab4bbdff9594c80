//! `GrafanaAlertSource` against the Grafana fixtures, and property tests: no input panics it.
#![cfg(feature = "loki")]

use dispatch_adapters::loki::{GrafanaAlertSource, parse_payload};
use dispatch_core::ports::{AlertRequest, AlertSource};
use proptest::prelude::*;
use serde_json::{Value, json};

const ALERT_FIRING: &[u8] = include_bytes!("fixtures/grafana/alert-firing.json");
const DOCS_EXAMPLE: &[u8] = include_bytes!("fixtures/grafana/docs-example.json");

#[tokio::test]
async fn alert_firing_fixture_gives_two_events_and_skips_the_resolved_one() {
    let source = GrafanaAlertSource::new();
    assert_eq!(source.name(), "loki");
    let batch = source
        .parse(AlertRequest {
            headers: &[],
            body: ALERT_FIRING,
        })
        .await
        .expect("parses");
    assert_eq!(batch.events.len(), 2);
    assert_eq!(batch.skipped.len(), 1);
    assert!(
        batch.skipped[0].contains("alerts[2]"),
        "{:?}",
        batch.skipped
    );
    assert!(batch.skipped[0].contains("resolved"), "{:?}", batch.skipped);

    let e = &batch.events[0];
    assert_eq!(e.origin, "loki");
    assert_eq!(e.source, "checkout-api");
    assert_eq!(e.feature, "payments");
    assert_eq!(
        e.message,
        "PaymentDeclined: card_declined for order 88213 (provider=stripe)"
    );
    assert_eq!(e.level, "error");
    assert_eq!(e.event_count, 14, "first positive value of `values`");
    let starts = chrono::DateTime::parse_from_rfc3339("2024-05-14T09:41:00Z")
        .expect("time")
        .with_timezone(&chrono::Utc);
    assert_eq!(e.first_seen, Some(starts));
    assert_eq!(e.last_seen, Some(starts));
    assert_eq!(
        e.link.as_deref(),
        Some("https://grafana.example.com/alerting/grafana/ddlq2rkq0zb40c/view?orgId=1")
    );
    assert_eq!(
        e.labels.get("grafana_folder").map(String::as_str),
        Some("payments")
    );
    assert_eq!(e.labels.len(), 5);
    assert_eq!(e.values.get("A").map(String::as_str), Some("14"));
    assert_eq!(e.values.len(), 3);
    assert_eq!(
        e.external_id, None,
        "Loki errors are identified by fingerprint"
    );
    assert!(e.validate().is_ok());

    let e = &batch.events[1];
    assert_eq!(e.feature, "refunds");
    assert_eq!(e.event_count, 7);
    assert_eq!(
        e.message,
        "TimeoutError: refund service did not answer within 3000ms"
    );
}

#[test]
fn docs_example_falls_back_to_alertname_and_description() {
    let batch = parse_payload(DOCS_EXAMPLE).expect("parses");
    assert_eq!(batch.events.len(), 2);
    assert!(batch.skipped.is_empty());
    let e = &batch.events[0];
    assert_eq!(e.source, "High memory usage", "labels.alertname");
    assert_eq!(e.feature, "unknown");
    assert_eq!(
        e.message, "The system has high memory usage",
        "description before summary"
    );
    assert_eq!(e.event_count, 44, "44.239… rounded");
    assert_eq!(
        e.first_seen.map(|t| t.to_rfc3339()),
        Some("2021-10-12T07:51:03.157076+00:00".to_string())
    );
    assert_eq!(
        e.values.get("B").map(String::as_str),
        Some("44.23943737541908")
    );
}

#[test]
fn fingerprints_differ_per_feature_and_are_stable() {
    let batch = parse_payload(ALERT_FIRING).expect("parses");
    let fps: Vec<String> = batch
        .events
        .iter()
        .map(|e| {
            dispatch_core::event::fingerprint_message(&e.source, &e.feature, &e.message)
                .1
                .0
        })
        .collect();
    assert_ne!(fps[0], fps[1]);
    let again = parse_payload(ALERT_FIRING).expect("parses");
    let fp0 = dispatch_core::event::fingerprint_message(
        &again.events[0].source,
        &again.events[0].feature,
        &again.events[0].message,
    )
    .1
    .0;
    assert_eq!(fps[0], fp0);
}

#[test]
fn no_firing_alerts_is_an_empty_batch() {
    let body = json!({"status": "resolved", "alerts": [
        {"status": "resolved", "labels": {"source": "a"}},
        {"status": "pending", "labels": {"source": "b"}}
    ]});
    let batch = parse_payload(body.to_string().as_bytes()).expect("parses");
    assert!(batch.events.is_empty());
    assert_eq!(batch.skipped.len(), 2);
    let batch = parse_payload(br#"{"alerts": []}"#).expect("parses");
    assert!(batch.events.is_empty() && batch.skipped.is_empty());
}

#[test]
fn malformed_fixture_variants_name_the_field() {
    let mut v: Value = serde_json::from_slice(ALERT_FIRING).expect("json");
    v["alerts"][2]["labels"] = json!("source=x");
    let e = parse_payload(v.to_string().as_bytes()).expect_err("rejected");
    assert_eq!(e.field(), Some("alerts[2].labels"));
    assert!(matches!(
        e.kind,
        dispatch_core::ErrorKind::InvalidInput { .. }
    ));

    let mut v: Value = serde_json::from_slice(ALERT_FIRING).expect("json");
    v["alerts"] = json!(null);
    let e = parse_payload(v.to_string().as_bytes()).expect_err("rejected");
    assert_eq!(e.field(), Some("alerts"));

    let e = parse_payload(&ALERT_FIRING[..ALERT_FIRING.len() / 2]).expect_err("truncated");
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
            Just("firing"),
            Just("resolved"),
            Just(""),
            Just("0001-01-01T00:00:00Z"),
            Just("2024-05-14T09:41:00Z"),
            Just("1e400"),
            Just("-3"),
            Just("12 events"),
            Just("a\n\n b \n"),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    let keys = prop_oneof![
        Just("alerts".to_string()),
        Just("status".to_string()),
        Just("labels".to_string()),
        Just("annotations".to_string()),
        Just("values".to_string()),
        Just("startsAt".to_string()),
        Just("generatorURL".to_string()),
        Just("source".to_string()),
        Just("feature".to_string()),
        Just("msg".to_string()),
        Just("count".to_string()),
        Just("event_count".to_string()),
        Just("log_lines".to_string()),
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

/// Grafana-shaped payloads whose fields hold arbitrary values.
fn arb_payload() -> impl Strategy<Value = Value> {
    let alert = (
        prop_oneof![Just(json!("firing")), Just(json!("resolved")), arb_json()],
        arb_json(),
        arb_json(),
        arb_json(),
        arb_json(),
    )
        .prop_map(|(status, labels, annotations, values, starts)| {
            json!({"status": status, "labels": labels, "annotations": annotations,
                   "values": values, "startsAt": starts})
        });
    prop::collection::vec(alert, 0..4).prop_map(|alerts| json!({"alerts": alerts}))
}

fn check(body: &[u8]) {
    match parse_payload(body) {
        Ok(batch) => {
            for e in &batch.events {
                assert!(e.event_count >= 1);
                assert!(e.sample_lines.len() <= 10);
                assert!(e.validate().is_ok(), "{e:?}");
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
        check(json!({"alerts": [v]}).to_string().as_bytes());
    }

    #[test]
    fn grafana_shaped_payloads_never_panic(v in arb_payload()) {
        check(v.to_string().as_bytes());
    }

    #[test]
    fn mutated_fixture_bytes_never_panic(i in 0..ALERT_FIRING.len(), b in any::<u8>()) {
        let mut body = ALERT_FIRING.to_vec();
        body[i] = b;
        check(&body);
    }
}
