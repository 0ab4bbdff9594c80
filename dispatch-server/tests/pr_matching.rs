//! Black-box tests of PR ↔ issue matching through the GitHub webhook when the PR names no issue:
//! lexical similarity alone (SQLite and PostgreSQL), and with Claude configured against a local
//! fake of the Anthropic Messages API (wiremock), whose answer decides.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Server, call, hmac_hex};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const GH_SECRET: &str = "gaps-github-secret";
const LLM_KEY: &str = "sk-ant-test-0123456789";

async fn create_issue(s: &Server, title: &str, description: Option<&str>) -> String {
    let (st, v) = call(
        s,
        Method::POST,
        "/api/issues",
        Some(json!({ "title": title, "description": description })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["identifier"].as_str().unwrap().to_string()
}

async fn gh_pr(s: &Server, action: &str, pr: Value) -> (StatusCode, Value) {
    let body = serde_json::to_vec(
        &json!({ "action": action, "number": pr["number"], "pull_request": pr }),
    )
    .unwrap();
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

/// A PR about the Stripe refund timeout that names no issue.
fn refund_pr(number: i64) -> Value {
    json!({
        "number": number,
        "title": "Increase timeout for Stripe refund webhook",
        "body": "The refund webhook handler called Stripe without a timeout budget; retries now back off.",
        "html_url": format!("https://github.com/acme/app/pull/{number}"),
        "merged": false,
        "head": { "ref": "fix/stripe-refund-timeout" },
        "base": { "ref": "main" },
        "user": { "login": "octocat" },
    })
}

/// Three open issues: the one the PR fixes, one sharing a word, one unrelated.
async fn seed(s: &Server) -> (String, String, String) {
    let refund = create_issue(
        s,
        "Stripe refund webhook times out",
        Some("Refunds over 30 s hang the webhook worker."),
    )
    .await;
    let emails = create_issue(s, "Refund emails are sent twice", None).await;
    let login = create_issue(s, "Login page shows a blank screen", Some("Safari only")).await;
    (refund, emails, login)
}

async fn links_of(s: &Server, ident: &str) -> Vec<Value> {
    let (st, v) = call(s, Method::GET, &format!("/api/issues/{ident}/pr"), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v.as_array().cloned().unwrap_or_default()
}

fn server(pg: Option<&str>, llm: Option<&MockServer>) -> Server {
    let mut b = Server::builder()
        .env("DISPATCH_WORKERS", "false")
        .env("GITHUB_WEBHOOK_SECRET", GH_SECRET);
    if let Some(url) = pg {
        b = b.env("PG_DATABASE_URL", url);
    }
    if let Some(m) = llm {
        b = b
            .env("ANTHROPIC_API_KEY", LLM_KEY)
            .env("ANTHROPIC_BASE_URL", &m.uri())
            .env("ORCHESTRATOR_MODEL", "claude-test-model");
    }
    b.start()
}

// ------------------------------------------------------------------ similarity alone

async fn similar_pr_links_to_the_clearly_matching_issue(s: &Server) {
    assert!(
        s.banner.iter().any(|l| l.contains("LLM: none")),
        "{:?}",
        s.banner
    );
    let (refund, emails, login) = seed(s).await;

    let (st, v) = gh_pr(s, "opened", refund_pr(40)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["matched"], json!([refund]), "{v}");
    assert_eq!(v["matches"][0]["method"], "similarity", "{v}");
    assert_eq!(v["movedToReview"], json!([refund]), "{v}");
    let links = links_of(s, &refund).await;
    assert_eq!(links.len(), 1);
    let c = links[0]["match_confidence"].as_f64().unwrap();
    assert!((0.5..1.0).contains(&c), "{c}");
    assert!(links_of(s, &emails).await.is_empty());
    assert!(links_of(s, &login).await.is_empty());

    // Merged: the same issue gets the fix attempt.
    let mut m = refund_pr(40);
    m["merged"] = json!(true);
    m["merged_at"] = json!(chrono::Utc::now().to_rfc3339());
    m["merge_commit_sha"] = json!("5a47c3f3c22f54f37a3297f2f1c98d860fba4489");
    let (st, v) = gh_pr(s, "closed", m).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let attempts = v["fixAttempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{v}");
    assert_eq!(attempts[0]["identifier"], refund.as_str());
    assert_eq!(links_of(s, &refund).await[0]["pr_status"], "merged");

    // A PR like none of the issues links nothing.
    let mut other = refund_pr(41);
    other["title"] = json!("Bump serde to 1.0.228");
    other["body"] = json!("Dependency update.");
    other["head"] = json!({ "ref": "deps/serde" });
    let (st, v) = gh_pr(s, "opened", other).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["links"], json!([]), "{v}");
}

#[tokio::test]
async fn similarity_matching_sqlite() {
    similar_pr_links_to_the_clearly_matching_issue(&server(None, None)).await;
}

#[tokio::test]
async fn similarity_matching_postgres() {
    let db = support::PgDatabase::create();
    similar_pr_links_to_the_clearly_matching_issue(&server(Some(db.url()), None)).await;
}

// ------------------------------------------------------------------ with Claude

fn message(text: &str) -> Value {
    json!({
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "type": "message",
        "role": "assistant",
        "model": "claude-test-model",
        "content": [{ "type": "text", "text": text }],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": { "input_tokens": 310, "output_tokens": 12 }
    })
}

#[tokio::test]
async fn with_claude_configured_the_model_decides() {
    let api = MockServer::start().await;
    let s = server(None, Some(&api));
    assert!(
        s.banner
            .iter()
            .any(|l| l.contains("LLM: Claude (claude-test-model)")),
        "{:?}",
        s.banner
    );
    assert!(!s.banner.iter().any(|l| l.contains(LLM_KEY)));
    let (refund, emails, login) = seed(&s).await;

    // PR 50: the model names the second-best candidate, and that is what gets linked.
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", LLM_KEY))
        .and(header("anthropic-version", "2023-06-01"))
        .and(body_string_contains("Pull request #50"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(message(&format!("{{\"fixes\": [\"{emails}\"]}}"))),
        )
        .mount(&api)
        .await;
    // PR 51: the model says none.
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(body_string_contains("Pull request #51"))
        .respond_with(ResponseTemplate::new(200).set_body_json(message("{\"fixes\": []}")))
        .mount(&api)
        .await;
    // PR 52: the API is overloaded (and asks for no wait).
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(body_string_contains("Pull request #52"))
        .respond_with(
            ResponseTemplate::new(529)
                .insert_header("retry-after", "0")
                .set_body_json(json!({
                    "type": "error",
                    "error": { "type": "overloaded_error", "message": "Overloaded" }
                })),
        )
        .mount(&api)
        .await;

    let (st, v) = gh_pr(&s, "opened", refund_pr(50)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["matched"], json!([emails]), "{v}");
    assert_eq!(v["matches"][0]["method"], "llm", "{v}");
    let links = links_of(&s, &emails).await;
    assert_eq!(links.len(), 1);
    assert_eq!(links[0]["match_confidence"], 0.9);
    assert!(links_of(&s, &refund).await.is_empty());
    assert!(links_of(&s, &login).await.is_empty());

    let reqs = api.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 1);
    let sent: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(sent["model"], "claude-test-model");
    assert!(sent["system"].as_str().unwrap().contains("\"fixes\""));
    let prompt = sent["messages"][0]["content"][0]["text"].as_str().unwrap();
    assert!(
        prompt.contains(&refund) && prompt.contains(&emails),
        "{prompt}"
    );
    assert!(
        !prompt.contains(&login),
        "only candidates are shown: {prompt}"
    );

    // The model says none: nothing is linked, although the top candidate is clear.
    let (st, v) = gh_pr(&s, "opened", refund_pr(51)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["links"], json!([]), "{v}");

    // The API fails: no match, and the webhook still succeeds.
    let (st, v) = gh_pr(&s, "opened", refund_pr(52)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["links"], json!([]), "{v}");
    assert_eq!(links_of(&s, &refund).await.len(), 0);

    // Editing the linked PR 50 asks nothing new.
    let before = api.received_requests().await.unwrap().len();
    let (st, _) = gh_pr(&s, "edited", refund_pr(50)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(api.received_requests().await.unwrap().len(), before);
}
