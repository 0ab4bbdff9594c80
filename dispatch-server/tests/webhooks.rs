//! Black-box tests of the inbound webhooks (Grafana/Loki, Sentry, GitHub) against the real
//! `dispatch` binary on SQLite, with the shared wire-format fixtures. Signatures are checked over
//! the exact fixture bytes; where a test edits a payload it signs the new bytes itself.

mod support;

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::Duration;
use support::{Server, get};

const GRAFANA_FIRING: &[u8] = include_bytes!("fixtures/grafana/alert-firing.json");
const GRAFANA_DOCS: &[u8] = include_bytes!("fixtures/grafana/docs-example.json");
const GRAFANA_HEADERS: &str = include_str!("fixtures/grafana/headers.json");
const SENTRY_CREATED: &[u8] = include_bytes!("fixtures/sentry/issue-created.json");
const SENTRY_DOCS: &[u8] = include_bytes!("fixtures/sentry/issue-created.docs-verbatim.json");
const SENTRY_HEADERS: &str = include_str!("fixtures/sentry/headers.json");
/// Built: one event as Sentry's API returns it (`GET …/issues/{id}/events/?full=true`).
const SENTRY_EVENTS: &str = include_str!("fixtures/sentry/issue-events-full.built.json");
const GH_PING: &[u8] = include_bytes!("fixtures/github/ping.json");
const GH_MERGED: &[u8] = include_bytes!("fixtures/github/pull_request.closed.merged.json");
const GH_OPENED: &[u8] = include_bytes!("fixtures/github/pull_request.opened.json");
const GH_RUN: &[u8] = include_bytes!("fixtures/github/workflow_run.completed.json");
const GH_HEADERS: &str = include_str!("fixtures/github/headers.json");

const GRAFANA_HMAC: &str = "dispatch-dev-grafana-hmac";
const SENTRY_SECRET: &str = "dispatch-dev-sentry-client-secret";
const GH_SECRET: &str = "It's a Secret to Everybody";

fn client() -> reqwest::Client {
    support::http()
}

fn hmac_hex(key: &str, parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// The headers a fixture was delivered with (`headers.json` → `files` → file name).
fn fixture_headers(headers_json: &str, file: &str) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(headers_json).unwrap();
    v["files"][file]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap()
}

/// Replaces (or adds) a header.
fn with_header(
    mut headers: Vec<(String, String)>,
    name: &str,
    value: &str,
) -> Vec<(String, String)> {
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    headers.push((name.to_string(), value.to_string()));
    headers
}

fn without_header(mut headers: Vec<(String, String)>, name: &str) -> Vec<(String, String)> {
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    headers
}

async fn post_raw(
    s: &Server,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (StatusCode, Value) {
    let mut req = client().post(s.url(path)).body(body.to_vec());
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let r = req.send().await.unwrap();
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

async fn create_issue(s: &Server, title: &str) -> String {
    let r = client()
        .post(s.url("/api/issues"))
        .bearer_auth(&s.api_key)
        .json(&json!({ "title": title }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "create issue");
    let v: Value = r.json().await.unwrap();
    v["identifier"].as_str().unwrap().to_string()
}

fn bearer(token: &str) -> Vec<(String, String)> {
    vec![
        ("Content-Type".into(), "application/json".into()),
        ("Authorization".into(), format!("Bearer {token}")),
    ]
}

fn label_names(issue: &Value) -> Vec<String> {
    issue["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["label"]["name"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------- Grafana / Loki

#[tokio::test]
async fn grafana_creates_one_issue_per_fingerprint_and_a_redelivery_dedupes() {
    let s = Server::builder().env("DISPATCH_WORKERS", "false").start();
    let (st, first) = post_raw(&s, "/api/loki/webhook", &bearer(&s.api_key), GRAFANA_FIRING).await;
    assert_eq!(st, StatusCode::OK, "{first}");
    assert_eq!(first["success"], true);
    assert_eq!(
        first["processed"], 2,
        "two firing alerts, the resolved one skipped: {first}"
    );
    assert_eq!(first["skipped"].as_array().unwrap().len(), 1);
    let results = first["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r["action"] == "created"), "{first}");
    assert_ne!(results[0]["fingerprint"], results[1]["fingerprint"]);
    assert_ne!(results[0]["issueIdentifier"], results[1]["issueIdentifier"]);
    assert!(
        results.iter().all(|r| r["spawnStatus"].is_string()),
        "{first}"
    );
    assert_eq!(results[0]["eventCount"], 14);
    assert_eq!(results[1]["eventCount"], 7);

    let (st, second) = post_raw(&s, "/api/loki/webhook", &bearer(&s.api_key), GRAFANA_FIRING).await;
    assert_eq!(st, StatusCode::OK, "{second}");
    let again = second["results"].as_array().unwrap();
    assert!(
        again.iter().all(|r| r["action"] == "deduplicated"),
        "{second}"
    );
    for (a, b) in results.iter().zip(again) {
        assert_eq!(a["issueIdentifier"], b["issueIdentifier"]);
        assert_eq!(a["fingerprint"], b["fingerprint"]);
    }
    assert_eq!(again[0]["eventCount"], 28, "counts add up");
    assert_eq!(again[1]["eventCount"], 14);

    let (st, issues) = get(&s, "/api/issues").await;
    assert_eq!(st, StatusCode::OK);
    let issues = issues.as_array().unwrap();
    assert_eq!(issues.len(), 2, "one issue per fingerprint");
    for i in issues {
        assert!(label_names(i).contains(&"Loki".to_string()), "{i}");
        assert!(
            i["title"].as_str().unwrap().starts_with("[checkout-api/"),
            "{i}"
        );
    }
    let ident = results[0]["issueIdentifier"].as_str().unwrap();
    let (_, issue) = get(&s, &format!("/api/issues/{ident}")).await;
    let link = &issue["external_links"][0];
    assert_eq!(link["source"], "loki");
    assert_eq!(link["event_count"], 28);
    assert_eq!(link["fingerprint"], results[0]["fingerprint"]);

    // Only resolved alerts: nothing to do.
    let resolved = json!({"status": "resolved", "alerts": [{"status": "resolved", "labels": {"source": "x"}}]});
    let (st, body) = post_raw(
        &s,
        "/api/loki/webhook",
        &bearer(&s.api_key),
        resolved.to_string().as_bytes(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["message"], "No firing alerts to process");

    // The metrics saw it.
    let r = client()
        .get(s.url("/metrics"))
        .bearer_auth(&s.api_key)
        .send()
        .await
        .unwrap();
    if r.status() == StatusCode::OK {
        let text = r.text().await.unwrap();
        assert!(
            text.contains(r#"dispatch_ingest_events_total{source="loki",outcome="created"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"dispatch_ingest_events_total{source="loki",outcome="deduplicated"} 2"#
            ),
            "{text}"
        );
    }
}

#[tokio::test]
async fn grafana_alerts_get_user_impact_from_loki_when_a_gateway_is_set() {
    use wiremock::matchers::{method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let loki = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/labels"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "status": "success", "data": ["app", "level"] })),
        )
        .mount(&loki)
        .await;
    let ns = chrono::Utc::now().timestamp_nanos_opt().unwrap() - 30_000_000_000;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .and(query_param(
            "query",
            r#"{service_name="checkout-api"} | json | level=~"(?i)(error|fatal|critical)" | feature="payments""#,
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": "success",
            "data": {
                "resultType": "streams",
                "result": [{
                    "stream": { "service_name": "checkout-api", "level": "error", "userId": "user_17", "orgId": "org_acme" },
                    "values": [[ns.to_string(), "{\"level\":\"error\",\"msg\":\"card declined\"}"]]
                }],
                "stats": {}
            }
        })))
        .mount(&loki)
        .await;
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/query_range"))
        .respond_with(ResponseTemplate::new(500).set_body_string("too many outstanding requests"))
        .mount(&loki)
        .await;
    let s = Server::builder()
        .env("DISPATCH_WORKERS", "false")
        .env("LOKI_GATEWAY_URL", &loki.uri())
        .env("LOKI_APP_LABEL", "service_name")
        .start();
    let (st, body) = post_raw(&s, "/api/loki/webhook", &bearer(&s.api_key), GRAFANA_FIRING).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let results = body["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r["action"] == "created"), "{body}");
    let ident = results[0]["issueIdentifier"].as_str().unwrap();
    let (_, issue) = get(&s, &format!("/api/issues/{ident}")).await;
    let d = issue["description"].as_str().unwrap();
    assert!(d.contains("## Error"), "{d}");
    assert!(d.contains("## User Impact"), "{d}");
    assert!(
        d.contains("- **Affected users:** 1 (sample: `user_17`)"),
        "{d}"
    );
    // The other alert's query failed: its issue is created, without the section.
    let ident = results[1]["issueIdentifier"].as_str().unwrap();
    let (_, issue) = get(&s, &format!("/api/issues/{ident}")).await;
    let d = issue["description"].as_str().unwrap();
    assert!(d.contains("## Error") && !d.contains("User Impact"), "{d}");

    // Repeats of known fingerprints do not ask Loki again.
    let queries = |reqs: &[wiremock::Request]| {
        reqs.iter()
            .filter(|r| r.url.path() == "/loki/api/v1/query_range")
            .count()
    };
    let before = queries(&loki.received_requests().await.unwrap());
    assert!(before > 0);
    let (st, body) = post_raw(&s, "/api/loki/webhook", &bearer(&s.api_key), GRAFANA_FIRING).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["action"] == "deduplicated"),
        "{body}"
    );
    assert_eq!(queries(&loki.received_requests().await.unwrap()), before);
}

#[tokio::test]
async fn grafana_requires_the_bearer_secret_or_api_key() {
    let s = Server::builder()
        .env("DISPATCH_WORKERS", "false")
        .env("LOKI_WEBHOOK_SECRET", "loki-secret-0123")
        .start();
    let path = "/api/loki/webhook";
    let json_only = vec![("Content-Type".to_string(), "application/json".to_string())];
    let (st, body) = post_raw(&s, path, &json_only, GRAFANA_FIRING).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "UNAUTHORIZED");
    // The original let this header through on its own.
    let (st, _) = post_raw(
        &s,
        path,
        &with_header(json_only.clone(), "X-Grafana-Alertmanager", "1"),
        GRAFANA_FIRING,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = post_raw(&s, path, &bearer("wrong-secret"), GRAFANA_FIRING).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = post_raw(&s, path, &bearer(""), GRAFANA_FIRING).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = post_raw(
        &s,
        path,
        &with_header(
            json_only.clone(),
            "Authorization",
            "Basic bG9raS1zZWNyZXQtMDEyMw==",
        ),
        GRAFANA_FIRING,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = post_raw(&s, path, &bearer("loki-secret-012"), GRAFANA_FIRING).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "a prefix of the secret");
    let (_, issues) = get(&s, "/api/issues").await;
    assert_eq!(
        issues.as_array().unwrap().len(),
        0,
        "nothing was created by refused requests"
    );

    let (st, body) = post_raw(&s, path, &bearer("loki-secret-0123"), GRAFANA_FIRING).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, body) = post_raw(&s, path, &bearer(&s.api_key), GRAFANA_DOCS).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["processed"], 2);

    // Malformed payloads name the field.
    let (st, body) = post_raw(&s, path, &bearer(&s.api_key), b"{\"alerts\": [").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "body");
    let bad = json!({"alerts": [{"status": "firing"}, {"status": "firing", "labels": ["source"]}]});
    let (st, body) = post_raw(&s, path, &bearer(&s.api_key), bad.to_string().as_bytes()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "alerts[1].labels");
    let (st, body) = post_raw(&s, path, &bearer(&s.api_key), b"{\"status\": \"firing\"}").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "alerts");
}

#[tokio::test]
async fn grafana_hmac_signature_and_timestamp_are_checked_when_configured() {
    let s = Server::builder()
        .env("DISPATCH_WORKERS", "false")
        .env("GRAFANA_WEBHOOK_HMAC_SECRET", GRAFANA_HMAC)
        .start();
    let path = "/api/loki/webhook";
    let fixture = fixture_headers(GRAFANA_HEADERS, "alert-firing.json");
    let ts = header(&fixture, "X-Grafana-Alerting-Timestamp");
    let sig = header(&fixture, "X-Grafana-Alerting-Signature");
    // The fixture's signature is what we compute over its exact bytes.
    assert_eq!(
        hmac_hex(GRAFANA_HMAC, &[ts.as_bytes(), b":", GRAFANA_FIRING]),
        sig
    );
    let base = with_header(bearer(&s.api_key), "User-Agent", "Grafana");

    // Genuine signature, but the delivery is from 2024: stale.
    let stale = with_header(
        with_header(base.clone(), "X-Grafana-Alerting-Signature", sig),
        "X-Grafana-Alerting-Timestamp",
        ts,
    );
    let (st, body) = post_raw(&s, path, &stale, GRAFANA_FIRING).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");

    let now = chrono::Utc::now().timestamp().to_string();
    let good_sig = hmac_hex(GRAFANA_HMAC, &[now.as_bytes(), b":", GRAFANA_FIRING]);
    let signed = |sig: &str, ts: &str| {
        with_header(
            with_header(base.clone(), "X-Grafana-Alerting-Signature", sig),
            "X-Grafana-Alerting-Timestamp",
            ts,
        )
    };

    let (st, _) = post_raw(
        &s,
        path,
        &without_header(signed(&good_sig, &now), "X-Grafana-Alerting-Signature"),
        GRAFANA_FIRING,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "signature missing");
    let mut bad = good_sig.clone().into_bytes();
    bad[0] = if bad[0] == b'0' { b'1' } else { b'0' };
    let (st, _) = post_raw(
        &s,
        path,
        &signed(std::str::from_utf8(&bad).unwrap(), &now),
        GRAFANA_FIRING,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "bad signature");
    let (st, _) = post_raw(&s, path, &signed(&good_sig[..40], &now), GRAFANA_FIRING).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "short signature");
    let (st, _) = post_raw(&s, path, &signed(&good_sig, "soon"), GRAFANA_FIRING).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "timestamp not a number");
    let old = (chrono::Utc::now().timestamp() - 301).to_string();
    let old_sig = hmac_hex(GRAFANA_HMAC, &[old.as_bytes(), b":", GRAFANA_FIRING]);
    let (st, _) = post_raw(&s, path, &signed(&old_sig, &old), GRAFANA_FIRING).await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "correctly signed but 5 minutes old"
    );
    let (st, _) = post_raw(&s, path, &bearer(&s.api_key), GRAFANA_FIRING).await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "bearer alone is not enough with HMAC configured"
    );
    let (st, _) = post_raw(
        &s,
        path,
        &without_header(signed(&good_sig, &now), "Authorization"),
        GRAFANA_FIRING,
    )
    .await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "HMAC alone is not enough: the bearer is required"
    );

    let (st, body) = post_raw(&s, path, &signed(&good_sig, &now), GRAFANA_FIRING).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["processed"], 2);

    // No timestamp header configured on the contact point: the body alone is signed.
    let body_sig = hmac_hex(GRAFANA_HMAC, &[GRAFANA_DOCS]);
    let (st, body) = post_raw(
        &s,
        path,
        &with_header(base.clone(), "X-Grafana-Alerting-Signature", &body_sig),
        GRAFANA_DOCS,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
}

// ---------------------------------------------------------------- Sentry

/// Runs SQL on the test server's SQLite file from another connection (WAL: the server's own
/// connections see it at their next transaction).
async fn sqlite3(s: &Server, sql: &str) {
    use sqlx::Connection as _;
    let url = format!("sqlite://{}", s.dir.join("dispatch.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("open the server's database");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .expect("run the SQL");
    conn.close().await.expect("close");
}

#[tokio::test]
async fn sentry_delivery_whose_ingest_failed_is_processed_when_redelivered() {
    let s = Server::builder()
        .sqlite_only()
        .env("SENTRY_CLIENT_SECRET", SENTRY_SECRET)
        .env("DISPATCH_WORKERS", "false")
        .start();
    let path = "/api/sentry/webhook";
    let headers = fixture_headers(SENTRY_HEADERS, "issue-created.json");

    // The store refuses new issues: the ingest fails after the Request-ID was recorded.
    sqlite3(
        &s,
        "CREATE TRIGGER test_refuse_issues BEFORE INSERT ON dispatch_issue \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    )
    .await;
    let (st, body) = post_raw(&s, path, &headers, SENTRY_CREATED).await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let (_, issues) = get(&s, "/api/issues").await;
    assert_eq!(issues.as_array().unwrap().len(), 0, "{issues}");

    // Sentry redelivers with the same Request-ID once the store works again: processed.
    sqlite3(&s, "DROP TRIGGER test_refuse_issues;").await;
    let (st, body) = post_raw(&s, path, &headers, SENTRY_CREATED).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body.get("duplicate").is_none(), "not a duplicate: {body}");
    assert_eq!(body["sentry"]["id"], "1170820242");
    let (_, issues) = get(&s, "/api/issues").await;
    assert_eq!(issues.as_array().unwrap().len(), 1, "{issues}");

    // Now it succeeded, so a further copy is a duplicate.
    let (st, body) = post_raw(&s, path, &headers, SENTRY_CREATED).await;
    assert_eq!(
        (st, body["duplicate"].clone()),
        (StatusCode::OK, json!(true)),
        "{body}"
    );
}

#[tokio::test]
async fn sentry_signed_issue_creates_an_issue_that_does_not_spawn_and_redelivery_is_ignored() {
    let s = Server::builder()
        .env("SENTRY_CLIENT_SECRET", SENTRY_SECRET)
        .start();
    let path = "/api/sentry/webhook";
    let headers = fixture_headers(SENTRY_HEADERS, "issue-created.json");
    assert_eq!(
        hmac_hex(SENTRY_SECRET, &[SENTRY_CREATED]),
        header(&headers, "Sentry-Hook-Signature")
    );

    let (st, body) = post_raw(&s, path, &headers, SENTRY_CREATED).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["sentry"]["id"], "1170820242");
    assert_eq!(body["sentry"]["shortId"], "FRONT-END-9");
    assert!(body.get("deduplicated").is_none(), "{body}");
    let ident = body["issue"]["identifier"].as_str().unwrap().to_string();

    let (st, issue) = get(&s, &format!("/api/issues/{ident}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        issue["title"],
        "[front-end] ReferenceError: blooopy is not defined"
    );
    assert_eq!(issue["priority"], "P3");
    assert!(
        label_names(&issue).contains(&"Sentry".to_string()),
        "{issue}"
    );
    assert!(issue["description"].as_str().unwrap().contains("## Impact"));
    assert_eq!(issue["external_links"][0]["source"], "sentry");
    assert_eq!(issue["external_links"][0]["external_id"], "1170820242");
    assert_eq!(issue["external_links"][0]["event_count"], 1);

    // Same Request-ID: no second effect.
    let (st, body) = post_raw(&s, path, &headers, SENTRY_CREATED).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["duplicate"], true);
    assert_eq!(body["message"], "Duplicate delivery");
    let (_, issue) = get(&s, &format!("/api/issues/{ident}")).await;
    assert_eq!(
        issue["external_links"][0]["event_count"], 1,
        "the redelivery changed nothing"
    );

    // A new delivery of the same Sentry issue is deduplicated onto it.
    let (st, body) = post_raw(
        &s,
        path,
        &with_header(
            headers.clone(),
            "Request-ID",
            "0123456789abcdef0123456789abcdef",
        ),
        SENTRY_CREATED,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["deduplicated"], true);
    assert_eq!(body["issue"]["identifier"], ident.as_str());
    assert_eq!(body["eventCount"], 2);

    // Sentry never auto-spawns: give the dispatcher a moment, then look.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, issue) = get(&s, &format!("/api/issues/{ident}")).await;
    assert!(issue["spawn_status"].is_null(), "{issue}");
    assert!(issue["spawn_run_id"].is_null(), "{issue}");
    let (_, issues) = get(&s, "/api/issues").await;
    assert_eq!(issues.as_array().unwrap().len(), 1);

    // Skipped and ignored payloads (correctly signed).
    let docs = fixture_headers(SENTRY_HEADERS, "issue-created.docs-verbatim.json");
    let (st, body) = post_raw(&s, path, &docs, SENTRY_DOCS).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(
        body["message"].as_str().unwrap().starts_with("Skipped"),
        "created + escalating is not processed: {body}"
    );
    let (st, body) = post_raw(
        &s,
        path,
        &with_header(docs, "Sentry-Hook-Resource", "installation"),
        SENTRY_DOCS,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["message"], "Ignored non-issue resource");
}

#[tokio::test]
async fn sentry_bad_or_wrong_length_signatures_are_401_and_unset_secret_is_503() {
    let s = Server::builder()
        .env("DISPATCH_WORKERS", "false")
        .env("SENTRY_CLIENT_SECRET", SENTRY_SECRET)
        .start();
    let path = "/api/sentry/webhook";
    let headers = fixture_headers(SENTRY_HEADERS, "issue-created.json");
    let sig = header(&headers, "Sentry-Hook-Signature").to_string();
    let mut flipped = sig.clone().into_bytes();
    flipped[10] = if flipped[10] == b'a' { b'b' } else { b'a' };
    for (what, value) in [
        ("flipped", String::from_utf8(flipped).unwrap()),
        ("short", sig[..63].to_string()),
        ("long", format!("{sig}0")),
        ("tiny", "abcd".to_string()),
        ("prefixed", format!("sha256={sig}")),
        ("not hex", "z".repeat(64)),
        (
            "other secret",
            hmac_hex("another-client-secret", &[SENTRY_CREATED]),
        ),
    ] {
        let (st, body) = post_raw(
            &s,
            path,
            &with_header(headers.clone(), "Sentry-Hook-Signature", &value),
            SENTRY_CREATED,
        )
        .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{what}: {body}");
    }
    let (st, _) = post_raw(
        &s,
        path,
        &without_header(headers.clone(), "Sentry-Hook-Signature"),
        SENTRY_CREATED,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "missing");
    // Signed bytes matter: the same JSON re-serialised does not verify.
    let reserialised =
        serde_json::to_vec(&serde_json::from_slice::<Value>(SENTRY_CREATED).unwrap()).unwrap();
    let (st, _) = post_raw(&s, path, &headers, &reserialised).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (_, issues) = get(&s, "/api/issues").await;
    assert_eq!(issues.as_array().unwrap().len(), 0);

    // A signed but malformed body names the field.
    let bad = br#"{"action": "created", "data": {"issue": {"substatus": "new", "id": "1", "project": "web"}}}"#;
    let bad_headers = with_header(
        headers.clone(),
        "Sentry-Hook-Signature",
        &hmac_hex(SENTRY_SECRET, &[bad]),
    );
    let (st, body) = post_raw(&s, path, &bad_headers, bad).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "data.issue.project");

    let off = Server::builder().env("DISPATCH_WORKERS", "false").start();
    let (st, body) = post_raw(&off, path, &headers, SENTRY_CREATED).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Sentry integration disabled"),
        "{body}"
    );
}

/// A server with the Sentry webhook and its API enrichment against `api` (a local fake).
fn sentry_with_api(api: &str) -> support::ServerBuilder {
    Server::builder()
        .env("DISPATCH_WORKERS", "false")
        .env("SENTRY_CLIENT_SECRET", SENTRY_SECRET)
        .env("SENTRY_API_TOKEN", "sntrys_test_token")
        .env("SENTRY_ORGANIZATION_SLUG", "example-org")
        .env("SENTRY_API_URL", api)
}

#[tokio::test]
async fn sentry_issues_are_enriched_through_the_sentry_api_when_a_token_is_set() {
    use wiremock::matchers::{header as has_header, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(
            "/api/0/organizations/example-org/issues/1170820242/events/",
        ))
        .and(query_param("full", "true"))
        .and(has_header("authorization", "Bearer sntrys_test_token"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(SENTRY_EVENTS, "application/json"))
        .expect(1)
        .mount(&api)
        .await;
    let s = sentry_with_api(&api.uri()).start();
    let headers = fixture_headers(SENTRY_HEADERS, "issue-created.json");
    let (st, body) = post_raw(&s, "/api/sentry/webhook", &headers, SENTRY_CREATED).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let ident = body["issue"]["identifier"].as_str().unwrap();
    let (_, issue) = get(&s, &format!("/api/issues/{ident}")).await;
    let d = issue["description"].as_str().unwrap();
    assert!(d.contains("## Stack Trace"), "{d}");
    assert!(d.contains("at runner (/runner:3:3)"), "{d}");
    assert!(d.contains("- **release:** `front-end@2.4.1`"), "{d}");
    assert_eq!(
        issue["external_links"][0]["metadata"]["stackTrace"]
            .as_str()
            .map(|t| t.starts_with("ReferenceError")),
        Some(true),
        "{issue}"
    );
}

#[tokio::test]
async fn sentry_issues_get_suspect_commits_when_github_is_configured() {
    use wiremock::matchers::{method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(
            "/api/0/organizations/example-org/issues/1170820242/events/",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_raw(SENTRY_EVENTS, "application/json"))
        .mount(&api)
        .await;
    let gh = MockServer::start().await;
    let sha = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
    let commit = json!({
        "sha": sha,
        "html_url": format!("https://github.com/acme/web/commit/{sha}"),
        "commit": {
            "author": { "name": "Mona Octocat", "email": "mona@example.com", "date": "2019-08-19T18:01:00Z" },
            "message": "Runner: call blooopy"
        },
        "author": { "login": "octocat", "id": 1 },
        "parents": []
    });
    let mut detail = commit.clone();
    detail["files"] = json!([{ "filename": "runner", "status": "modified", "additions": 1, "deletions": 0, "changes": 1 }]);
    Mock::given(method("GET"))
        .and(path("/repos/acme/web/commits"))
        .and(query_param("sha", "release"))
        .and(query_param("until", "2019-08-19T20:58:37Z"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([commit])))
        .mount(&gh)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/web/commits/{sha}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(detail))
        .mount(&gh)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/web/deployments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&gh)
        .await;
    let s = sentry_with_api(&api.uri())
        .env("GITHUB_TOKEN", "ghp_test_token")
        .env("GITHUB_REPO", "acme/web")
        .env("GITHUB_REF", "release")
        .env("GITHUB_API_URL", &gh.uri())
        .start();
    let headers = fixture_headers(SENTRY_HEADERS, "issue-created.json");
    let (st, body) = post_raw(&s, "/api/sentry/webhook", &headers, SENTRY_CREATED).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let ident = body["issue"]["identifier"].as_str().unwrap();
    let (_, issue) = get(&s, &format!("/api/issues/{ident}")).await;
    let d = issue["description"].as_str().unwrap();
    assert!(d.contains("## Suspected Cause"), "{d}");
    assert!(
        d.contains("Runner: call blooopy by octocat (2019-08-19T18:01:00Z): `runner`"),
        "{d}"
    );
}

// ---------------------------------------------------------------- GitHub

fn gh_headers(file: &str) -> Vec<(String, String)> {
    fixture_headers(GH_HEADERS, file)
}

/// A fixture payload edited by `f`, re-signed, with a fresh delivery id.
fn gh_edit(raw: &[u8], file: &str, f: impl FnOnce(&mut Value)) -> (Vec<(String, String)>, Vec<u8>) {
    let mut v: Value = serde_json::from_slice(raw).unwrap();
    f(&mut v);
    let body = serde_json::to_vec_pretty(&v).unwrap();
    let sig = format!("sha256={}", hmac_hex(GH_SECRET, &[&body]));
    let headers = with_header(gh_headers(file), "X-Hub-Signature-256", &sig);
    let headers = with_header(
        headers,
        "X-GitHub-Delivery",
        &uuid::Uuid::now_v7().to_string(),
    );
    (headers, body)
}

#[tokio::test]
async fn github_ping_signatures_and_a_merged_pr_creates_a_fix_attempt_once() {
    let s = Server::builder()
        .env("DISPATCH_WORKERS", "false")
        .env("GITHUB_WEBHOOK_SECRET", GH_SECRET)
        .start();
    let path = "/api/github/webhook";

    // GitHub's documented test vector, so our HMAC is theirs.
    assert_eq!(
        hmac_hex(GH_SECRET, &[b"Hello, World!"]),
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
    let (st, body) = post_raw(&s, path, &gh_headers("ping.json"), GH_PING).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(
        body["message"].as_str().unwrap().starts_with("Pong"),
        "{body}"
    );
    assert_eq!(body["zen"], "Anything added dilutes everything else.");

    let bad = with_header(
        gh_headers("ping.json"),
        "X-Hub-Signature-256",
        &format!("sha256={}", "0".repeat(64)),
    );
    let (st, _) = post_raw(&s, path, &bad, GH_PING).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let sha1_only = without_header(gh_headers("ping.json"), "X-Hub-Signature-256");
    let (st, _) = post_raw(&s, path, &sha1_only, GH_PING).await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "the legacy sha1 signature is not accepted"
    );
    let bare = header(&gh_headers("ping.json"), "X-Hub-Signature-256")
        .trim_start_matches("sha256=")
        .to_string();
    let (st, _) = post_raw(
        &s,
        path,
        &with_header(gh_headers("ping.json"), "X-Hub-Signature-256", &bare),
        GH_PING,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "without the sha256= prefix");
    let (st, _) = post_raw(
        &s,
        path,
        &gh_headers("pull_request.closed.merged.json"),
        GH_PING,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "another payload's signature");

    // The verbatim merged PR names no issue of ours: processed, no attempts.
    let (st, body) = post_raw(
        &s,
        path,
        &gh_headers("pull_request.closed.merged.json"),
        GH_MERGED,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["fixAttempts"], json!([]));

    let ident = create_issue(&s, "Checkout crashes on empty cart").await;
    let (headers, body) = gh_edit(GH_MERGED, "pull_request.closed.merged.json", |v| {
        v["pull_request"]["title"] = json!(format!("Fix {ident}: guard empty carts"));
        // Merged now, so the 48 h window is still open when we look.
        v["pull_request"]["merged_at"] = json!(chrono::Utc::now().to_rfc3339());
    });
    let (st, res) = post_raw(&s, path, &headers, &body).await;
    assert_eq!(st, StatusCode::OK, "{res}");
    assert_eq!(res["fixAttempts"].as_array().unwrap().len(), 1, "{res}");
    assert_eq!(res["fixAttempts"][0]["identifier"], ident.as_str());
    assert_eq!(res["fixAttempts"][0]["created"], true);

    let (st, fix) = get(&s, &format!("/api/issues/{ident}/fix-status")).await;
    assert_eq!(st, StatusCode::OK, "{fix}");
    let attempts = fix["fixAttempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{fix}");
    assert_eq!(attempts[0]["prNumber"], 117);
    assert_eq!(
        attempts[0]["prUrl"],
        "https://github.com/robvanderleek/create-issue-branch/pull/117"
    );
    assert_eq!(
        attempts[0]["mergedSha"],
        "5a47c3f3c22f54f37a3297f2f1c98d860fba4489"
    );
    assert_eq!(attempts[0]["verificationStatus"], "monitoring");

    // Redelivery (same X-GitHub-Delivery): no second effect.
    let (st, again) = post_raw(&s, path, &headers, &body).await;
    assert_eq!(st, StatusCode::OK, "{again}");
    assert_eq!(
        again,
        json!({"success": true, "message": "Duplicate delivery", "duplicate": true})
    );
    let (_, fix) = get(&s, &format!("/api/issues/{ident}/fix-status")).await;
    assert_eq!(fix["fixAttempts"].as_array().unwrap().len(), 1);

    // Unknown events are acknowledged and ignored.
    let issues_body = br#"{"action": "opened"}"#;
    let h = with_header(gh_headers("ping.json"), "X-GitHub-Event", "issues");
    let h = with_header(
        h,
        "X-Hub-Signature-256",
        &format!("sha256={}", hmac_hex(GH_SECRET, &[issues_body])),
    );
    let (st, body) = post_raw(&s, path, &h, issues_body).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["message"], "Event ignored");
}

#[tokio::test]
async fn github_opened_pr_moves_named_issues_to_in_review() {
    let s = Server::builder()
        .env("DISPATCH_WORKERS", "false")
        .env("GITHUB_WEBHOOK_SECRET", GH_SECRET)
        .start();
    let a = create_issue(&s, "First").await;
    let b = create_issue(&s, "Second").await;
    let (headers, body) = gh_edit(GH_OPENED, "pull_request.opened.json", |v| {
        v["pull_request"]["body"] = json!(format!("Closes {a}. Unrelated: SHA-256, UTF-8."));
        v["pull_request"]["head"]["ref"] = json!(format!("fix/{}-second", b.to_lowercase()));
    });
    let (st, res) = post_raw(&s, "/api/github/webhook", &headers, &body).await;
    assert_eq!(st, StatusCode::OK, "{res}");
    let mut moved: Vec<String> = res["movedToReview"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    moved.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(moved, want, "{res}");
    for id in [&a, &b] {
        let (_, issue) = get(&s, &format!("/api/issues/{id}")).await;
        assert_eq!(issue["status"]["name"], "In Review", "{issue}");
    }
}

#[tokio::test]
async fn github_production_deploy_starts_monitoring_and_malformed_json_is_400() {
    let s = Server::builder()
        .env("DISPATCH_WORKERS", "false")
        .env("GITHUB_WEBHOOK_SECRET", GH_SECRET)
        .env("VERIFY_WAIT_FOR_DEPLOY", "true")
        .start();
    let path = "/api/github/webhook";
    let ident = create_issue(&s, "Refunds time out").await;
    let (headers, body) = gh_edit(GH_MERGED, "pull_request.closed.merged.json", |v| {
        v["pull_request"]["body"] = json!(format!("Resolves {ident}"));
        v["pull_request"]["base"]["ref"] = json!("release");
    });
    let (st, res) = post_raw(&s, path, &headers, &body).await;
    assert_eq!(st, StatusCode::OK, "{res}");
    assert_eq!(res["fixAttempts"][0]["status"], "awaiting_deploy", "{res}");

    // The verbatim run: workflow name "" → not a deploy.
    let (st, res) = post_raw(&s, path, &gh_headers("workflow_run.completed.json"), GH_RUN).await;
    assert_eq!(st, StatusCode::OK, "{res}");
    assert!(
        res["message"].as_str().unwrap().contains("ignored"),
        "{res}"
    );
    let (_, fix) = get(&s, &format!("/api/issues/{ident}/fix-status")).await;
    assert_eq!(
        fix["fixAttempts"][0]["verificationStatus"],
        "awaiting_deploy"
    );

    let (headers, body) = gh_edit(GH_RUN, "workflow_run.completed.json", |v| {
        v["workflow_run"]["name"] = json!("Deploy to Production");
        v["workflow_run"]["head_branch"] = json!("main");
        v["workflow_run"]["updated_at"] = json!(chrono::Utc::now().to_rfc3339());
    });
    let (st, res) = post_raw(&s, path, &headers, &body).await;
    assert_eq!(st, StatusCode::OK, "{res}");
    assert_eq!(res["monitoringStarted"], 1, "{res}");
    let (_, fix) = get(&s, &format!("/api/issues/{ident}/fix-status")).await;
    assert_eq!(
        fix["fixAttempts"][0]["verificationStatus"], "monitoring",
        "{fix}"
    );
    assert_eq!(
        fix["fixAttempts"][0]["deployedSha"],
        "3484a3fb816e0859fd6e1cea078d76385ff50625"
    );
    let (st, res) = post_raw(&s, path, &headers, &body).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(res["duplicate"], true, "{res}");

    // Signed but malformed: 400 naming the field.
    let sign = |event: &str, body: &[u8]| {
        let h = with_header(
            gh_headers("pull_request.opened.json"),
            "X-GitHub-Event",
            event,
        );
        with_header(
            h,
            "X-Hub-Signature-256",
            &format!("sha256={}", hmac_hex(GH_SECRET, &[body])),
        )
    };
    let bad = br#"{"action": "closed", "pull_request": {"number": "one hundred"}}"#;
    let (st, res) = post_raw(&s, path, &sign("pull_request", bad), bad).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{res}");
    assert_eq!(res["field"], "pull_request.number");
    let bad = br#"{"action": "closed""#;
    let (st, res) = post_raw(&s, path, &sign("pull_request", bad), bad).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{res}");
    assert!(res["field"].is_string(), "{res}");
    let bad = br#"{"action": "completed", "workflow_run": {"updated_at": "yesterday"}}"#;
    let (st, res) = post_raw(&s, path, &sign("workflow_run", bad), bad).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{res}");
    assert_eq!(res["field"], "workflow_run.updated_at");
    // A 400 did not use up the delivery id: the corrected delivery still goes through.
    let (headers, body) = gh_edit(GH_OPENED, "pull_request.opened.json", |_| {});
    let bad = br#"{"action": 1}"#;
    let (st, _) = post_raw(
        &s,
        path,
        &with_header(
            headers.clone(),
            "X-Hub-Signature-256",
            &format!("sha256={}", hmac_hex(GH_SECRET, &[bad])),
        ),
        bad,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, res) = post_raw(&s, path, &headers, &body).await;
    assert_eq!(st, StatusCode::OK, "{res}");
    assert!(res.get("duplicate").is_none(), "{res}");
}

#[tokio::test]
async fn github_unset_secret_is_503_and_health_checks_leak_nothing() {
    let s = Server::builder()
        .env("DISPATCH_WORKERS", "false")
        .env("LOKI_WEBHOOK_SECRET", "loki-secret-0123")
        .start();
    let (st, body) = post_raw(&s, "/api/github/webhook", &gh_headers("ping.json"), GH_PING).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("GITHUB_WEBHOOK_SECRET"),
        "{body}"
    );
    for path in [
        "/api/loki/webhook",
        "/api/sentry/webhook",
        "/api/github/webhook",
    ] {
        let r = client().get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["status"], "ok", "{path}");
        assert!(
            v["events"].as_array().is_some_and(|e| !e.is_empty()),
            "{path}: {v}"
        );
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 2, "{path}: only status and events: {v}");
        let text = v.to_string();
        for leak in ["SECRET", "loki-secret", "TOKEN", "REPO", "configured"] {
            assert!(!text.contains(leak), "{path} leaks {leak}: {text}");
        }
    }
}

/// Sentry stops waiting after about a second; enrichment can take longer. The delivery must still
/// be processed to the end (issue created), and a redelivery be a duplicate, not a second issue.
#[tokio::test]
async fn a_sender_that_stops_waiting_does_not_cancel_the_delivery() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(
            "/api/0/organizations/example-org/issues/1170820242/events/",
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(SENTRY_EVENTS, "application/json")
                .set_delay(std::time::Duration::from_millis(1500)),
        )
        .mount(&api)
        .await;
    let s = sentry_with_api(&api.uri()).start();
    let headers = fixture_headers(SENTRY_HEADERS, "issue-created.json");
    let _ = support::http(); // installs the rustls crypto provider
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let mut req = impatient
        .post(s.url("/api/sentry/webhook"))
        .body(SENTRY_CREATED.to_vec());
    for (k, v) in &headers {
        req = req.header(k.as_str(), v.as_str());
    }
    assert!(
        req.send().await.is_err(),
        "the sender gave up before the answer"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let issues = loop {
        let (_, issues) = get(&s, "/api/issues").await;
        if issues.as_array().is_some_and(|a| !a.is_empty()) || std::time::Instant::now() > deadline
        {
            break issues;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let list = issues.as_array().unwrap();
    assert_eq!(list.len(), 1, "processed to the end: {issues}");
    let d = list[0]["description"].as_str().unwrap_or_default();
    assert!(d.contains("## Stack Trace"), "with its enrichment: {d}");
    // The redelivery (same Request-ID) is a duplicate: no second issue.
    let (st, body) = post_raw(&s, "/api/sentry/webhook", &headers, SENTRY_CREATED).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (_, issues) = get(&s, "/api/issues").await;
    assert_eq!(issues.as_array().unwrap().len(), 1, "{issues}");
}
