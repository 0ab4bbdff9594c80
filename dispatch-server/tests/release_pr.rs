//! Black-box test of a release PR (spec §6.2): `staging` merged into the deploy branch, posted
//! as GitHub's `pull_request` closed+merged delivery. Named issues and those the model (a local
//! fake of the Anthropic Messages API) says the release includes get a fix attempt; nothing
//! closes on merge; the history names "GitHub Webhook (Release)".

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Server, call, hmac_hex};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const GH_SECRET: &str = "gaps-github-secret";
const LLM_KEY: &str = "sk-ant-test-0123456789";

async fn create_issue(s: &Server, title: &str, column: Option<&str>) -> String {
    let (st, v) = call(
        s,
        Method::POST,
        "/api/issues",
        Some(json!({ "title": title })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let ident = v["identifier"].as_str().unwrap().to_string();
    if let Some(name) = column {
        let (_, cols) = call(s, Method::GET, "/api/statuses", None).await;
        let id = cols
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["id"]
            .clone();
        let (st, v) = call(
            s,
            Method::PATCH,
            &format!("/api/issues/{ident}"),
            Some(json!({ "statusId": id })),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    ident
}

async fn status_of(s: &Server, ident: &str) -> String {
    let (_, v) = call(s, Method::GET, &format!("/api/issues/{ident}"), None).await;
    v["status"]["name"].as_str().unwrap_or_default().to_string()
}

async fn attempts_of(s: &Server, ident: &str) -> Vec<Value> {
    let (st, v) = call(
        s,
        Method::GET,
        &format!("/api/issues/{ident}/fix-status"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["fixAttempts"].as_array().cloned().unwrap_or_default()
}

fn message(text: &str) -> Value {
    json!({
        "id": "msg_01Release",
        "type": "message",
        "role": "assistant",
        "model": "claude-test-model",
        "content": [{ "type": "text", "text": text }],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": { "input_tokens": 410, "output_tokens": 40 }
    })
}

/// GitHub's `pull_request` delivery for PR `number` merged from `head` into `base` (the real
/// payload carries `commits` as a count).
async fn merged(
    s: &Server,
    number: i64,
    head: &str,
    base: &str,
    body: &str,
) -> (StatusCode, Value) {
    let payload = json!({
        "action": "closed",
        "number": number,
        "pull_request": {
            "number": number,
            "state": "closed",
            "title": "Release: staging → production",
            "body": body,
            "html_url": format!("https://github.com/acme/app/pull/{number}"),
            "merged": true,
            "merged_at": chrono::Utc::now().to_rfc3339(),
            "merge_commit_sha": "9f2c1b7d4e5a6b8c0d1e2f3a4b5c6d7e8f9a0b1c",
            "commits": 7,
            "head": { "ref": head, "sha": "1111111111111111111111111111111111111111" },
            "base": { "ref": base, "sha": "2222222222222222222222222222222222222222" },
            "user": { "login": "release-bot" },
        },
        "repository": { "full_name": "acme/app" },
        "sender": { "login": "release-bot" },
    });
    let body = serde_json::to_vec(&payload).unwrap();
    let r = support::http()
        .post(s.url("/api/github/webhook"))
        .header("content-type", "application/json")
        .header("X-GitHub-Event", "pull_request")
        .header("X-GitHub-Delivery", uuid::Uuid::now_v7().to_string())
        .header(
            "X-Hub-Signature-256",
            format!("sha256={}", hmac_hex(GH_SECRET, &body)),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

/// A fresh PostgreSQL database for one test.
fn pg_database() -> String {
    let base = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/dispatch_test".into());
    let root = base.rsplit_once('/').map(|(a, _)| a.to_string()).unwrap();
    let db = format!("dispatch_gaps_{}", uuid::Uuid::now_v7().simple());
    let out = std::process::Command::new("psql")
        .arg(format!("{root}/postgres"))
        .arg("-qc")
        .arg(format!("CREATE DATABASE {db}"))
        .output()
        .expect("psql is needed for the PostgreSQL variant; run scripts/test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{root}/{db}")
}

#[tokio::test]
async fn release_pr_sqlite() {
    a_release_pr_records_fix_attempts_for_the_included_issues(None).await;
}

#[tokio::test]
async fn release_pr_postgres() {
    a_release_pr_records_fix_attempts_for_the_included_issues(Some(pg_database())).await;
}

async fn a_release_pr_records_fix_attempts_for_the_included_issues(pg: Option<String>) {
    let api = MockServer::start().await;
    let mut b = Server::builder();
    if let Some(url) = &pg {
        b = b.env("PG_DATABASE_URL", url);
    }
    let s = b
        .env("DISPATCH_WORKERS", "false")
        .env("GITHUB_WEBHOOK_SECRET", GH_SECRET)
        .env("GITHUB_RELEASE_HEAD_BRANCH", "release-candidate")
        .env("ANTHROPIC_API_KEY", LLM_KEY)
        .env("ANTHROPIC_BASE_URL", &api.uri())
        .env("ORCHESTRATOR_MODEL", "claude-test-model")
        .start();
    let named = create_issue(&s, "Checkout total rounds wrong", None).await;
    let review = create_issue(&s, "Refund webhook times out", Some("In Review")).await;
    let progress = create_issue(&s, "Dark mode toggle flickers", Some("In Progress")).await;
    let unsure = create_issue(&s, "Search is slow", Some("In Review")).await;
    let backlog = create_issue(&s, "Export CSV misses a column", None).await;

    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(body_string_contains("Release pull request #300"))
        .respond_with(ResponseTemplate::new(200).set_body_json(message(&format!(
            "{{\"included\": [{{\"identifier\": \"{review}\", \"confidence\": 95}}, \
             {{\"identifier\": \"{progress}\", \"confidence\": 88}}, \
             {{\"identifier\": \"{unsure}\", \"confidence\": 40}}]}}"
        ))))
        .mount(&api)
        .await;

    // Not a release (head is not the configured staging branch): the usual merge path, with
    // no release question to the model.
    let (st, v) = merged(&s, 299, "fix/checkout", "main", "nothing named").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["release"], false, "{v}");
    let asked_release = |reqs: &[wiremock::Request]| {
        reqs.iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains("Release pull request"))
    };
    assert!(!asked_release(&api.received_requests().await.unwrap()));

    let (st, v) = merged(
        &s,
        300,
        "release-candidate",
        "main",
        &format!("Release notes:\n- {named}: rounding\n- refunds, dark mode"),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["release"], true, "{v}");
    let mut got: Vec<String> = v["fixAttempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["identifier"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want = vec![named.clone(), review.clone(), progress.clone()];
    want.sort();
    assert_eq!(got, want, "{v}");

    // The model saw the open In Review / In Progress issues, not the backlog one.
    let reqs = api.received_requests().await.unwrap();
    let release_req = reqs
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
        .find(|b| b.to_string().contains("Release pull request #300"))
        .expect("the model was asked about the release");
    let prompt = release_req["messages"][0]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(
        prompt.contains(&review) && prompt.contains(&unsure),
        "{prompt}"
    );
    assert!(!prompt.contains(&backlog), "{prompt}");

    for ident in [&named, &review, &progress] {
        let a = attempts_of(&s, ident).await;
        assert_eq!(a.len(), 1, "{ident}: {a:?}");
        assert_eq!(a[0]["prNumber"], 300, "{a:?}");
        assert_eq!(a[0]["verificationStatus"], "monitoring", "{a:?}");
    }
    for ident in [&unsure, &backlog] {
        assert!(attempts_of(&s, ident).await.is_empty(), "{ident}");
    }
    // Nothing closed on merge.
    assert_eq!(status_of(&s, &review).await, "In Review");
    assert_eq!(status_of(&s, &progress).await, "In Progress");
    let (_, h) = call(
        &s,
        Method::GET,
        &format!("/api/issues/{review}/history"),
        None,
    )
    .await;
    assert!(h.to_string().contains("GitHub Webhook (Release)"), "{h}");
}
