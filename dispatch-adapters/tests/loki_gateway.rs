//! Loki gateway enrichment (`loki-gateway` feature) against a local fake of Loki's HTTP API
//! (wiremock) answering in Loki's documented shapes: `GET /loki/api/v1/labels` →
//! `{status, data: [names]}`, `GET /loki/api/v1/query_range` → `{status, data: {resultType:
//! "streams", result: [{stream, values: [[ns, line]]}], stats}}`.
#![cfg(feature = "loki-gateway")]

use dispatch_adapters::loki::GrafanaAlertSource;
use dispatch_adapters::loki_gateway::{LokiGateway, LokiGatewayConfig};
use dispatch_core::ports::{AlertRequest, AlertSource};
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ALERT_FIRING: &[u8] = include_bytes!("fixtures/grafana/alert-firing.json");

fn labels() -> Value {
    json!({ "status": "success", "data": ["__stream_shard__", "app", "feature", "level", "source"] })
}

fn streams(now_ns: i128) -> Value {
    let ts = |ago_s: i128| (now_ns - ago_s * 1_000_000_000).to_string();
    json!({
        "status": "success",
        "data": {
            "resultType": "streams",
            "result": [
                {
                    "stream": { "app": "chipp-deno", "source": "checkout-api", "feature": "payments",
                                "level": "error", "userId": "user_17", "orgId": "org_acme" },
                    "values": [
                        [ts(60), "{\"level\":\"error\",\"source\":\"checkout-api\",\"feature\":\"payments\",\"msg\":\"card declined\",\"userId\":\"user_17\",\"orgId\":\"org_acme\"}"],
                        [ts(120), "{\"level\":\"error\",\"source\":\"checkout-api\",\"feature\":\"payments\",\"msg\":\"card declined\",\"userId\":\"user_17\",\"orgId\":\"org_acme\"}"]
                    ]
                },
                {
                    "stream": { "app": "chipp-deno", "source": "checkout-api", "feature": "payments", "level": "error" },
                    "values": [
                        [ts(300), "{\"level\":\"error\",\"msg\":\"card declined\",\"user\":{\"id\":\"user_99\"},\"org_id\":\"org_beta\"}"],
                        [ts(900), "level=error msg=\"card declined\""]
                    ]
                }
            ],
            "stats": {
                "summary": { "bytesProcessedPerSecond": 48213, "linesProcessedPerSecond": 310,
                             "totalBytesProcessed": 9120, "totalLinesProcessed": 60, "execTime": 0.0189,
                             "queueTime": 0.0002, "subqueries": 0, "totalEntriesReturned": 4,
                             "splits": 1, "shards": 1 },
                "querier": { "store": { "totalChunksRef": 2, "totalChunksDownloaded": 2 } },
                "ingester": { "totalReached": 1, "totalChunksMatched": 1, "totalBatches": 1, "totalLinesSent": 4 }
            }
        }
    })
}

fn now_ns() -> i128 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap() as i128
}

fn source(loki: &MockServer, app: Option<&str>) -> GrafanaAlertSource {
    let mut cfg = LokiGatewayConfig::new(loki.uri());
    cfg.app_value = app.map(str::to_string);
    cfg.tenant = Some("tenant-1".into());
    cfg.check_timeout = Duration::from_millis(500);
    cfg.query_timeout = Duration::from_millis(800);
    GrafanaAlertSource::with_gateway(LokiGateway::new(cfg).expect("client"))
}

async fn parse(src: &GrafanaAlertSource) -> Vec<dispatch_core::event::ErrorEvent> {
    src.parse(AlertRequest {
        headers: &[],
        body: ALERT_FIRING,
    })
    .await
    .expect("parses")
    .events
}

#[tokio::test]
async fn error_logs_of_the_last_hour_become_a_user_impact_section() {
    let loki = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/labels"))
        .and(header("x-scope-orgid", "tenant-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(labels()))
        .expect(1)
        .mount(&loki)
        .await;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .and(query_param(
            "query",
            r#"{app="chipp-deno"} | json | level=~"(?i)(error|fatal|critical)" | source="checkout-api" | feature="payments""#,
        ))
        .and(query_param("limit", "500"))
        .and(query_param("direction", "backward"))
        .respond_with(ResponseTemplate::new(200).set_body_json(streams(now_ns())))
        .expect(1)
        .mount(&loki)
        .await;
    // The second alert (feature refunds): no lines.
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .and(query_param(
            "query",
            r#"{app="chipp-deno"} | json | level=~"(?i)(error|fatal|critical)" | source="checkout-api" | feature="refunds""#,
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": "success",
            "data": { "resultType": "streams", "result": [], "stats": {} }
        })))
        .expect(1)
        .mount(&loki)
        .await;

    let events = parse(&source(&loki, Some("chipp-deno"))).await;
    assert_eq!(events.len(), 2);
    let d = events[0].description.as_deref().expect("description");
    assert!(
        d.starts_with("## Error\n**Source:** `checkout-api`"),
        "the engine's description first: {d}"
    );
    let section = d.split("## User Impact\n").nth(1).expect("User Impact");
    assert!(section.contains("- **Error lines:** 4 ("), "{section}");
    assert!(
        section.contains("- **Affected users:** 2 (sample: `user_17`, `user_99`)"),
        "{section}"
    );
    assert!(
        section.contains("- **Affected organizations:** 2 (sample: `org_acme`, `org_beta`)"),
        "{section}"
    );
    assert!(section.contains("- **Seen from:** "), "{section}");
    // No lines for the second alert: no section, and the engine writes its description.
    assert_eq!(events[1].description, None);

    // The range is the last hour, in nanoseconds.
    let reqs = loki.received_requests().await.unwrap();
    let q = reqs
        .iter()
        .find(|r| r.url.path() == "/loki/api/v1/query_range")
        .unwrap();
    let get = |k: &str| {
        q.url
            .query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.parse::<i128>().unwrap())
            .unwrap()
    };
    let span = get("end") - get("start");
    assert_eq!(span, 3_600 * 1_000_000_000, "one hour");
    assert!((now_ns() - get("end")).abs() < 60 * 1_000_000_000);
}

#[tokio::test]
async fn the_default_selector_is_the_app_label_with_the_alerts_source() {
    let loki = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/labels"))
        .respond_with(ResponseTemplate::new(200).set_body_json(labels()))
        .mount(&loki)
        .await;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .and(query_param(
            "query",
            r#"{app="checkout-api"} | json | level=~"(?i)(error|fatal|critical)" | feature="payments""#,
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(streams(now_ns())))
        .expect(1)
        .mount(&loki)
        .await;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"status": "success", "data": {"resultType": "streams", "result": []}}),
        ))
        .mount(&loki)
        .await;
    let events = parse(&source(&loki, None)).await;
    assert!(
        events[0]
            .description
            .as_deref()
            .is_some_and(|d| d.contains("## User Impact"))
    );
}

#[tokio::test]
async fn a_down_slow_or_failing_loki_changes_nothing() {
    let plain = parse(&GrafanaAlertSource::new()).await;

    // Labels fail: no query at all.
    let down = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/labels"))
        .respond_with(ResponseTemplate::new(503).set_body_string("no org id"))
        .mount(&down)
        .await;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .respond_with(ResponseTemplate::new(200).set_body_json(streams(now_ns())))
        .expect(0)
        .mount(&down)
        .await;
    assert_eq!(parse(&source(&down, Some("chipp-deno"))).await, plain);

    // Labels too slow (over the check's limit).
    let slow = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/labels"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(labels())
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&slow)
        .await;
    let started = std::time::Instant::now();
    assert_eq!(parse(&source(&slow, Some("chipp-deno"))).await, plain);
    assert!(started.elapsed() < Duration::from_secs(2));

    // The query fails, is too slow, or answers something else.
    for reply in [
        ResponseTemplate::new(400).set_body_string("parse error at line 1, col 2: syntax error"),
        ResponseTemplate::new(200)
            .set_body_json(streams(now_ns()))
            .set_delay(Duration::from_secs(3)),
        ResponseTemplate::new(200).set_body_string("not json"),
        ResponseTemplate::new(200).set_body_json(json!({"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}, "values": [[1, "2"]]}]}})),
    ] {
        let bad = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/loki/api/v1/labels"))
            .respond_with(ResponseTemplate::new(200).set_body_json(labels()))
            .mount(&bad)
            .await;
        Mock::given(method("GET"))
            .and(path("/loki/api/v1/query_range"))
            .respond_with(reply)
            .mount(&bad)
            .await;
        assert_eq!(parse(&source(&bad, Some("chipp-deno"))).await, plain);
    }
}
