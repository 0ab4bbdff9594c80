//! The Loki tools (`loki-tools` feature) against a local fake of Loki's HTTP API: a wiremock
//! server whose responder keeps log lines per stream and answers `GET /loki/api/v1/query_range`
//! in Loki's wire format (`{status, data: {resultType: "streams", result: [{stream, values:
//! [["<ns>", "<line>"]]}]}}`) with the lines inside `[start, end)`, newest first, at most
//! `limit`; `GET /ready` answers `ready`. Every request is recorded, so the tests assert the
//! exact LogQL each tool sent.
#![cfg(feature = "loki-tools")]

use chrono::{DateTime, TimeZone, Utc};
use dispatch_adapters::analytics::loki::{LokiAuth, LokiTools, LokiToolsConfig};
use dispatch_core::error::ErrorKind;
use dispatch_core::ids::{SessionId, WorkspaceId};
use dispatch_core::ports::{ToolContext, ToolProvider};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap()
}

fn ns(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap()
}

fn ctx() -> ToolContext {
    ToolContext {
        workspace_id: WorkspaceId::new(),
        session_id: SessionId::new(),
        user: "ada".into(),
        now: now(),
    }
}

/// One stored line: its stream's labels, its time (seconds before `now()`), the JSON line.
struct Line {
    labels: Value,
    ago_s: i64,
    line: String,
}

fn line(labels: Value, ago_s: i64, fields: Value) -> Line {
    Line {
        labels,
        ago_s,
        line: fields.to_string(),
    }
}

/// Loki's `query_range`: lines in `[start, end)`, newest first, at most `limit`, grouped by stream.
struct FakeLoki {
    lines: Vec<Line>,
}

impl Respond for FakeLoki {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let q: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
        let start: i64 = q["start"].parse().unwrap();
        let end: i64 = q["end"].parse().unwrap();
        let limit: usize = q["limit"].parse().unwrap();
        assert_eq!(q["direction"], "backward");
        let mut hits: Vec<(&Line, i64)> = self
            .lines
            .iter()
            .map(|l| (l, ns(now()) - l.ago_s * 1_000_000_000))
            .filter(|(_, t)| *t >= start && *t < end)
            .collect();
        hits.sort_by_key(|h| std::cmp::Reverse(h.1));
        hits.truncate(limit);
        let mut streams: Vec<(Value, Vec<Value>)> = Vec::new();
        for (l, t) in hits {
            let v = json!([t.to_string(), l.line]);
            match streams.iter_mut().find(|(s, _)| *s == l.labels) {
                Some((_, vals)) => vals.push(v),
                None => streams.push((l.labels.clone(), vec![v])),
            }
        }
        ResponseTemplate::new(200).set_body_json(json!({
            "status": "success",
            "data": {
                "resultType": "streams",
                "result": streams.into_iter().map(|(s, v)| json!({"stream": s, "values": v})).collect::<Vec<_>>(),
                "stats": {"summary": {"totalEntriesReturned": 0}}
            }
        }))
    }
}

async fn fake_loki(lines: Vec<Line>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/ready"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ready\n"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .respond_with(FakeLoki { lines })
        .mount(&server)
        .await;
    server
}

fn tools(server: &MockServer) -> LokiTools {
    LokiTools::new(LokiToolsConfig::new(server.uri())).expect("client")
}

/// The `query_range` requests the fake received: (query, start, end, limit).
async fn queries(server: &MockServer) -> Vec<(String, i64, i64, u32)> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/loki/api/v1/query_range")
        .map(|r| {
            let q: HashMap<String, String> = r.url.query_pairs().into_owned().collect();
            (
                q["query"].clone(),
                q["start"].parse().unwrap(),
                q["end"].parse().unwrap(),
                q["limit"].parse().unwrap(),
            )
        })
        .collect()
}

fn error_stream() -> Value {
    json!({"level": "error", "app": "web"})
}

#[tokio::test]
async fn loki_errors_sends_quoted_filters_and_answers_parsed_entries_newest_first() {
    let server = fake_loki(vec![
        line(
            error_stream(),
            600,
            json!({"level": "error", "source": "checkout", "feature": "pay", "msg": "card declined", "requestId": "r-1", "userId": "u7"}),
        ),
        line(
            error_stream(),
            60,
            json!({"level": "error", "source": "checkout", "feature": "pay", "error": {"message": "gateway 502"}}),
        ),
        // Outside the hour.
        line(
            error_stream(),
            7200,
            json!({"level": "error", "source": "checkout", "msg": "old"}),
        ),
    ])
    .await;
    let out = tools(&server)
        .call(
            &ctx(),
            "loki_errors",
            json!({"source": "checkout", "feature": "pay", "limit": 10}),
        )
        .await
        .expect("errors");
    let q = queries(&server).await;
    assert_eq!(q.len(), 1);
    assert_eq!(
        q[0].0,
        r#"{level="error"} | json | source="checkout" | feature="pay""#
    );
    assert_eq!(q[0].1, ns(now()) - 3_600 * 1_000_000_000, "since 1h");
    assert_eq!(q[0].2, ns(now()));
    assert_eq!(q[0].3, 10);
    assert_eq!(out["count"], 2);
    assert_eq!(out["truncated"], false);
    let e = out["entries"].as_array().unwrap();
    assert_eq!(e[0]["message"], "gateway 502", "nested error.message");
    assert_eq!(e[0]["time"], "2026-12-04T11:59:00.000Z");
    assert_eq!(e[1]["message"], "card declined");
    assert_eq!(e[1]["requestId"], "r-1");
    assert_eq!(e[1]["source"], "checkout");
    assert_eq!(e[1]["fields"]["userId"], "u7");
    assert_eq!(e[1]["labels"]["app"], "web");
}

#[tokio::test]
async fn an_injected_value_stays_inside_its_string_literal() {
    let server = fake_loki(vec![]).await;
    let evil = "x\"} |= \"\" or {app=~\".+";
    tools(&server)
        .call(
            &ctx(),
            "loki_errors",
            json!({"source": evil, "requestId": "a\\\"\nb"}),
        )
        .await
        .expect("errors");
    let q = queries(&server).await;
    assert_eq!(
        q[0].0,
        r#"{level="error"} | json | source="x\"} |= \"\" or {app=~\".+" | requestId="a\\\"\nb""#
    );
}

#[tokio::test]
async fn loki_search_escapes_the_pattern_and_refuses_a_bad_regex_before_asking_loki() {
    let server = fake_loki(vec![
        line(
            json!({"level": "warn"}),
            30,
            json!({"level": "WARN", "msg": "ECONN42 timeout"}),
        ),
        line(
            json!({"level": "info"}),
            40,
            json!({"level": "info", "msg": "ok"}),
        ),
    ])
    .await;
    let t = tools(&server);
    let out = t
        .call(
            &ctx(),
            "loki_search",
            json!({"pattern": r#"timeout|ECONN\d+"x"#, "level": "warn", "since": "30m"}),
        )
        .await
        .expect("search");
    let q = queries(&server).await;
    assert_eq!(
        q[0].0,
        r#"{level=~".+"} |~ "timeout|ECONN\\d+\"x" | json | level=~"(?i)warn""#
    );
    assert_eq!(q[0].1, ns(now()) - 1_800 * 1_000_000_000);
    // The fake does not evaluate LogQL: both lines of the window come back, parsed.
    assert_eq!(out["count"], 2);

    let err = t
        .call(&ctx(), "loki_search", json!({"pattern": "(unclosed"}))
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("pattern"));
    assert!(
        err.message.contains("not a valid regular expression"),
        "{err}"
    );
    let err = t.call(&ctx(), "loki_search", json!({})).await.unwrap_err();
    assert_eq!(err.field(), Some("pattern"));
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        2,
        "bad arguments reach nothing, not even /ready"
    );
}

#[tokio::test]
async fn bad_windows_and_group_names_are_refused_naming_the_argument() {
    let server = fake_loki(vec![]).await;
    let t = tools(&server);
    for (tool, args, field) in [
        ("loki_errors", json!({"since": "2 hours"}), "since"),
        ("loki_errors", json!({"since": "31d"}), "since"),
        ("loki_errors", json!({"limit": 0}), "limit"),
        ("loki_stats", json!({"since": "1w"}), "since"),
        ("loki_stats", json!({"groupBy": "user"}), "groupBy"),
        ("loki_compare", json!({"period": "0h"}), "period"),
        ("loki_trace", json!({}), "requestId"),
    ] {
        let err = t.call(&ctx(), tool, args.clone()).await.unwrap_err();
        assert_eq!(err.field(), Some(field), "{tool} {args}: {err}");
    }
    let err = t.call(&ctx(), "loki_nope", json!({})).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(
        server.received_requests().await.unwrap().is_empty(),
        "nothing was sent to Loki"
    );
}

#[tokio::test]
async fn loki_stats_counts_groups_largest_first() {
    let mut lines = Vec::new();
    for i in 0..5 {
        lines.push(line(
            error_stream(),
            100 + i,
            json!({"source": "api", "feature": "auth", "msg": "x"}),
        ));
    }
    for i in 0..3 {
        lines.push(line(
            error_stream(),
            200 + i,
            json!({"source": "api", "feature": "billing", "msg": "y"}),
        ));
    }
    lines.push(line(
        error_stream(),
        300,
        json!({"source": "worker", "msg": "z"}),
    ));
    // Older than 24 h: not counted.
    lines.push(line(
        error_stream(),
        90_000,
        json!({"source": "api", "feature": "billing"}),
    ));
    let server = fake_loki(lines).await;
    let out = tools(&server)
        .call(&ctx(), "loki_stats", json!({"groupBy": "feature"}))
        .await
        .expect("stats");
    let q = queries(&server).await;
    assert_eq!(q[0].0, r#"{level="error"} | json"#);
    assert_eq!(q[0].1, ns(now()) - 86_400 * 1_000_000_000, "since 24h");
    assert_eq!(q[0].3, 5_000);
    assert_eq!(out["entries"], 9);
    assert_eq!(out["truncated"], false);
    assert_eq!(
        out["groups"],
        json!([
            {"key": "auth", "count": 5, "percent": 55.6},
            {"key": "billing", "count": 3, "percent": 33.3},
            {"key": "(none)", "count": 1, "percent": 11.1},
        ])
    );
}

#[tokio::test]
async fn loki_compare_sets_the_current_window_against_the_one_before() {
    let mut lines = Vec::new();
    // Current hour: api 6, worker 1. Previous hour: api 2, worker 1, cron 3.
    for i in 0..6 {
        lines.push(line(error_stream(), 60 + i, json!({"source": "api"})));
    }
    lines.push(line(error_stream(), 120, json!({"source": "worker"})));
    for i in 0..2 {
        lines.push(line(error_stream(), 3_700 + i, json!({"source": "api"})));
    }
    lines.push(line(error_stream(), 3_800, json!({"source": "worker"})));
    for i in 0..3 {
        lines.push(line(error_stream(), 4_000 + i, json!({"source": "cron"})));
    }
    let server = fake_loki(lines).await;
    let out = tools(&server)
        .call(&ctx(), "loki_compare", json!({"period": "1h"}))
        .await
        .expect("compare");
    let mut q = queries(&server).await;
    q.sort_by_key(|r| std::cmp::Reverse(r.2));
    let hour = 3_600 * 1_000_000_000;
    assert_eq!(q.len(), 2);
    assert_eq!((q[0].1, q[0].2), (ns(now()) - hour, ns(now())));
    assert_eq!((q[1].1, q[1].2), (ns(now()) - 2 * hour, ns(now()) - hour));
    assert_eq!(out["current"]["total"], 7);
    assert_eq!(out["previous"]["total"], 6);
    assert_eq!(out["delta"], 1);
    assert_eq!(out["changePercent"], 16.7);
    assert_eq!(
        out["groups"],
        json!([
            {"key": "api", "current": 6, "previous": 2, "delta": 4, "changePercent": 200.0},
            {"key": "cron", "current": 0, "previous": 3, "delta": -3, "changePercent": -100.0},
            {"key": "worker", "current": 1, "previous": 1, "delta": 0, "changePercent": 0.0},
        ])
    );

    // With a source, the filter is quoted and groups default to features.
    let out = tools(&server)
        .call(
            &ctx(),
            "loki_compare",
            json!({"source": "api", "period": "30m"}),
        )
        .await
        .expect("compare");
    assert_eq!(out["groupBy"], "feature");
    let q = queries(&server).await;
    assert_eq!(q[2].0, r#"{level="error"} | json | source="api""#);
}

#[tokio::test]
async fn loki_trace_lists_a_requests_lines_in_order_with_a_summary() {
    let server = fake_loki(vec![
        line(
            json!({"level": "info", "app": "web"}),
            10,
            json!({"level": "info", "source": "web", "requestId": "req-9", "msg": "done"}),
        ),
        line(
            json!({"level": "error", "app": "api"}),
            11,
            json!({"level": "error", "source": "api", "requestId": "req-9", "msg": "db timeout"}),
        ),
        line(
            json!({"level": "info", "app": "web"}),
            13,
            json!({"level": "info", "source": "web", "requestId": "req-9", "msg": "start"}),
        ),
    ])
    .await;
    let out = tools(&server)
        .call(&ctx(), "loki_trace", json!({"requestId": "req-9"}))
        .await
        .expect("trace");
    let q = queries(&server).await;
    assert_eq!(q[0].0, r#"{level=~".+"} | json | requestId="req-9""#);
    let msgs: Vec<&str> = out["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(msgs, ["start", "db timeout", "done"]);
    let s = &out["summary"];
    assert_eq!(s["lines"], 3);
    assert_eq!(s["durationMs"], 3_000);
    assert_eq!(s["levels"], json!({"error": 1, "info": 2}));
    assert_eq!(s["errors"], 1);
    assert_eq!(s["firstError"]["message"], "db timeout");
    assert_eq!(s["sources"], json!(["web", "api"]));
}

#[tokio::test]
async fn a_loki_error_answer_is_reported_with_lokis_message() {
    let server = MockServer::start().await;
    Mock::given(path("/ready"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(path("/loki/api/v1/query_range"))
        .respond_with(ResponseTemplate::new(400).set_body_string(
            "parse error at line 1, col 17: syntax error: unexpected IDENTIFIER\n",
        ))
        .mount(&server)
        .await;
    let err = tools(&server)
        .call(&ctx(), "loki_errors", json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::Upstream {
            service: "loki".into(),
            status: 400
        }
    );
    assert!(
        err.message
            .contains("parse error at line 1, col 17: syntax error: unexpected IDENTIFIER"),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_error_with_a_json_body_carries_its_error_text() {
    let server = MockServer::start().await;
    Mock::given(path("/ready"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(path("/loki/api/v1/query_range"))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(
                json!({"status": "error", "error": "too many outstanding requests"}),
            ),
        )
        .mount(&server)
        .await;
    let err = tools(&server)
        .call(&ctx(), "loki_stats", json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Upstream { status: 500, .. }));
    assert!(
        err.message.contains("too many outstanding requests"),
        "{err}"
    );
}

#[tokio::test]
async fn a_loki_that_accepts_and_never_answers_is_reported_within_3_seconds() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts connections and holds them open without a byte of answer.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let t = LokiTools::new(LokiToolsConfig::new(format!("http://{addr}"))).unwrap();
    let started = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        t.call(&ctx(), "loki_errors", json!({})),
    )
    .await
    .expect("the call ends by itself")
    .unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(3_500), "took {took:?}");
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(
        err.message.starts_with(&format!(
            "Loki not reachable at http://{addr}: no answer within 3 s"
        )),
        "{err}"
    );
    holder.abort();
}

#[tokio::test]
async fn a_closed_port_is_reported_at_once() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let t = LokiTools::new(LokiToolsConfig::new(format!("http://{addr}/"))).unwrap();
    let started = Instant::now();
    let err = t
        .call(&ctx(), "loki_trace", json!({"requestId": "r"}))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(
        err.message
            .starts_with(&format!("Loki not reachable at http://{addr}: ")),
        "{err}"
    );
    assert!(err.message.to_lowercase().contains("refused"), "{err}");
}

#[tokio::test]
async fn a_query_that_outlasts_the_timeout_is_cut() {
    let server = MockServer::start().await;
    Mock::given(path("/ready"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(path("/loki/api/v1/query_range"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    let mut cfg = LokiToolsConfig::new(server.uri());
    cfg.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let err = LokiTools::new(cfg)
        .unwrap()
        .call(&ctx(), "loki_errors", json!({}))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        err.message.contains("did not answer the query within 1 s"),
        "{err}"
    );
}

#[tokio::test]
async fn credentials_are_sent_as_configured() {
    for (env, expected) in [
        (
            vec![("LOKI_USERNAME", "ada"), ("LOKI_PASSWORD", "s3cret")],
            "Basic YWRhOnMzY3JldA==",
        ),
        (vec![("LOKI_TOKEN", "tok-1")], "Bearer tok-1"),
    ] {
        let server = MockServer::start().await;
        Mock::given(header("authorization", expected))
            .and(path("/ready"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&server)
            .await;
        Mock::given(header("authorization", expected))
            .and(path("/loki/api/v1/query_range"))
            .respond_with(FakeLoki { lines: vec![] })
            .mount(&server)
            .await;
        let uri = server.uri();
        let get = |k: &str| {
            if k == "LOKI_URL" {
                return Some(uri.clone());
            }
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let cfg = LokiToolsConfig::from_lookup(&get).unwrap().unwrap();
        assert!(!format!("{cfg:?}").contains("s3cret"));
        assert!(!format!("{cfg:?}").contains("tok-1"));
        let out = LokiTools::new(cfg)
            .unwrap()
            .call(&ctx(), "loki_errors", json!({}))
            .await
            .expect("authorised");
        assert_eq!(out["count"], 0);
    }
}

#[test]
fn configuration_comes_from_the_environment_and_errors_name_the_variable() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    assert!(LokiToolsConfig::from_lookup(&env(&[])).unwrap().is_none());
    let cfg = LokiToolsConfig::from_lookup(&env(&[("LOKI_URL", "http://loki:3100")]))
        .unwrap()
        .unwrap();
    assert_eq!(cfg.error_selector, r#"{level="error"}"#);
    assert_eq!(cfg.selector, r#"{level=~".+"}"#);
    assert_eq!(cfg.timeout, Duration::from_secs(10));
    assert_eq!(cfg.probe_timeout, Duration::from_secs(3));
    assert!(matches!(cfg.auth, LokiAuth::None));

    let cfg = LokiToolsConfig::from_lookup(&env(&[
        ("LOKI_URL", "https://loki.example"),
        ("LOKI_ERROR_SELECTOR", r#"{app="web"} | level="error""#),
        ("LOKI_TIMEOUT_SECONDS", "20"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(cfg.selector, r#"{app="web"}"#, "follows the error selector");
    assert_eq!(cfg.timeout, Duration::from_secs(20));

    for (pairs, var) in [
        (&[("LOKI_URL", "loki:3100")][..], "LOKI_URL"),
        (&[("LOKI_URL", "http://u:p@loki")][..], "LOKI_URL"),
        (
            &[("LOKI_URL", "http://loki"), ("LOKI_TIMEOUT_SECONDS", "ten")][..],
            "LOKI_TIMEOUT_SECONDS",
        ),
        (
            &[("LOKI_URL", "http://loki"), ("LOKI_TIMEOUT_SECONDS", "0")][..],
            "LOKI_TIMEOUT_SECONDS",
        ),
        (
            &[
                ("LOKI_URL", "http://loki"),
                ("LOKI_ERROR_SELECTOR", "level=error"),
            ][..],
            "LOKI_ERROR_SELECTOR",
        ),
        (
            &[
                ("LOKI_URL", "http://loki"),
                ("LOKI_SELECTOR", r#"{a="b"} |= "x""#),
            ][..],
            "LOKI_SELECTOR",
        ),
        (
            &[("LOKI_URL", "http://loki"), ("LOKI_PASSWORD", "p")][..],
            "LOKI_USERNAME",
        ),
        (
            &[
                ("LOKI_URL", "http://loki"),
                ("LOKI_USERNAME", "u"),
                ("LOKI_TOKEN", "t"),
            ][..],
            "LOKI_TOKEN",
        ),
    ] {
        let pairs: &'static [(&'static str, &'static str)] = pairs;
        let err = LokiToolsConfig::from_lookup(&env(pairs)).unwrap_err();
        assert_eq!(err.field(), Some(var), "{pairs:?}: {err}");
        assert!(err.message.contains(var), "{err}");
    }
}

#[test]
fn the_tools_describe_themselves_with_object_schemas() {
    let t = LokiTools::new(LokiToolsConfig::new("http://loki:3100")).unwrap();
    assert_eq!(t.name(), "loki");
    let specs = t.tools();
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "loki_errors",
            "loki_search",
            "loki_stats",
            "loki_compare",
            "loki_trace"
        ]
    );
    for s in &specs {
        assert!(s.description.len() > 40, "{}", s.name);
        assert_eq!(s.input_schema["type"], "object");
        for r in s.input_schema["required"].as_array().unwrap() {
            assert!(
                s.input_schema["properties"]
                    .get(r.as_str().unwrap())
                    .is_some()
            );
        }
    }
    assert_eq!(specs[1].input_schema["required"], json!(["pattern"]));
    assert_eq!(specs[4].input_schema["required"], json!(["requestId"]));
}
