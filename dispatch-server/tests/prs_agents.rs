//! Black-box tests of PR links, the agents registry with its signed outbound webhook,
//! `POST /api/issues/{id}/runs` and GitHub delivery de-duplication after the effect. The
//! scenarios run on SQLite, and on PostgreSQL (a fresh database) as well.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{Server, call, hmac_hex};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const GH_SECRET: &str = "gaps-github-secret";

async fn unauthenticated(s: &Server, m: Method, p: &str) -> StatusCode {
    support::http()
        .request(m, s.url(p))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .status()
}

async fn create_issue(s: &Server, title: &str) -> String {
    let (st, v) = call(
        s,
        Method::POST,
        "/api/issues",
        Some(json!({ "title": title })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["identifier"].as_str().unwrap().to_string()
}

#[track_caller]
fn bad_field(st: StatusCode, v: &Value, field: &str) {
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["field"], field, "{v}");
}

/// Posts a signed GitHub `pull_request` event; returns status and body.
async fn gh_pr(s: &Server, delivery: &str, action: &str, pr: Value) -> (StatusCode, Value) {
    let body = serde_json::to_vec(
        &json!({ "action": action, "number": pr["number"], "pull_request": pr }),
    )
    .unwrap();
    let r = support::http()
        .post(s.url("/api/github/webhook"))
        .header("content-type", "application/json")
        .header("X-GitHub-Event", "pull_request")
        .header("X-GitHub-Delivery", delivery)
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

fn pr(number: i64, title: &str, head: &str) -> Value {
    json!({
        "number": number,
        "title": title,
        "body": "",
        "html_url": format!("https://github.com/acme/app/pull/{number}"),
        "merged": false,
        "head": { "ref": head },
        "base": { "ref": "main" },
        "user": { "login": "octocat" },
    })
}

fn delivery() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn server(pg: Option<&str>) -> Server {
    let mut b = Server::builder()
        // The test's webhook receivers listen on loopback.
        .env("AGENT_WEBHOOK_ALLOW_PRIVATE", "true")
        .env("DISPATCH_WORKERS", "false")
        .env("GITHUB_WEBHOOK_SECRET", GH_SECRET);
    if let Some(url) = pg {
        b = b.env("PG_DATABASE_URL", url);
    }
    b.start()
}

// ------------------------------------------------------------------ PR links

async fn pr_links_follow_the_pull_request(s: &Server) {
    let a = create_issue(s, "Checkout crashes").await;
    let b = create_issue(s, "Cart is slow").await;
    let p = format!("/api/issues/{a}/pr");

    // Opened, naming A in the branch: linked, open, history pr_linked.
    let (st, v) = gh_pr(
        s,
        &delivery(),
        "opened",
        pr(
            11,
            "Guard empty carts",
            &format!("fix/{}", a.to_lowercase()),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["links"].as_array().unwrap().len(), 1, "{v}");
    let (st, links) = call(s, Method::GET, &p, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(links.as_array().unwrap().len(), 1, "{links}");
    let l = &links[0];
    assert_eq!(
        (l["pr_number"].as_i64(), l["pr_status"].as_str()),
        (Some(11), Some("open")),
        "{l}"
    );
    assert_eq!(l["author"], "octocat");
    assert_eq!(l["base_branch"], "main");
    assert_eq!(l["pr_url"], "https://github.com/acme/app/pull/11");
    let (_, h) = call(s, Method::GET, &format!("/api/issues/{a}/history"), None).await;
    assert!(
        h.as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "pr_linked"),
        "{h}"
    );

    // Edited: new title also names B; A's link keeps its status, B gets linked.
    let (st, v) = gh_pr(
        s,
        &delivery(),
        "edited",
        pr(
            11,
            &format!("Guard empty carts ({b})"),
            &format!("fix/{}", a.to_lowercase()),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, links) = call(s, Method::GET, &p, None).await;
    assert_eq!(links[0]["pr_title"], format!("Guard empty carts ({b})"));
    assert_eq!(links[0]["pr_status"], "open");
    let (_, lb) = call(s, Method::GET, &format!("/api/issues/{b}/pr"), None).await;
    assert_eq!(lb.as_array().unwrap().len(), 1, "{lb}");

    // Closed without merge: both links closed; reopened: open again.
    let (st, v) = gh_pr(s, &delivery(), "closed", pr(11, "x", "y")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, links) = call(s, Method::GET, &p, None).await;
    assert_eq!(links[0]["pr_status"], "closed");
    let (_, lb) = call(s, Method::GET, &format!("/api/issues/{b}/pr"), None).await;
    assert_eq!(lb[0]["pr_status"], "closed");
    gh_pr(
        s,
        &delivery(),
        "reopened",
        pr(11, &format!("Guard empty carts {a}"), "fix/x"),
    )
    .await;
    let (_, links) = call(s, Method::GET, &p, None).await;
    assert_eq!(links[0]["pr_status"], "open");

    // Merged: status merged and, as before, a fix attempt.
    let mut m = pr(11, &format!("Guard empty carts {a}"), "fix/x");
    m["merged"] = json!(true);
    m["merged_at"] = json!(chrono::Utc::now().to_rfc3339());
    m["merge_commit_sha"] = json!("5a47c3f3c22f54f37a3297f2f1c98d860fba4489");
    let (st, v) = gh_pr(s, &delivery(), "closed", m).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["fixAttempts"].as_array().unwrap().len(), 1, "{v}");
    let (_, links) = call(s, Method::GET, &p, None).await;
    assert_eq!(links[0]["pr_status"], "merged", "{links}");
    assert!(links[0]["merged_at"].is_string());
    let (_, lb) = call(s, Method::GET, &format!("/api/issues/{b}/pr"), None).await;
    assert_eq!(
        lb[0]["pr_status"], "merged",
        "already linked issues follow the merge"
    );

    // A second PR: newest first; the issue detail shows both.
    gh_pr(
        s,
        &delivery(),
        "opened",
        pr(12, &format!("Follow-up for {a}"), "fix/y"),
    )
    .await;
    let (_, links) = call(s, Method::GET, &p, None).await;
    let numbers: Vec<i64> = links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["pr_number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, vec![12, 11]);
    let (_, issue) = call(s, Method::GET, &format!("/api/issues/{a}"), None).await;
    assert_eq!(issue["linked_prs"].as_array().unwrap().len(), 2, "{issue}");

    // Manual unlink.
    let id12 = links[0]["id"].as_str().unwrap().to_string();
    let (st, v) = call(s, Method::DELETE, &p, Some(json!({ "prId": id12 }))).await;
    assert_eq!(
        (st, v.clone()),
        (StatusCode::OK, json!({ "success": true })),
        "{v}"
    );
    let (st, v) = call(s, Method::DELETE, &p, Some(json!({ "prId": id12 }))).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "already unlinked: {v}");
    let id_b = lb[0]["id"].as_str().unwrap().to_string();
    let (st, _) = call(s, Method::DELETE, &p, Some(json!({ "prId": id_b }))).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "another issue's link");
    let (_, h) = call(s, Method::GET, &format!("/api/issues/{a}/history"), None).await;
    let un = h
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "pr_unlinked")
        .expect("pr_unlinked");
    assert_eq!(
        (un["actor_type"].as_str(), un["actor_name"].as_str()),
        (Some("user"), Some("Manual unlink")),
        "{un}"
    );
    let (_, links) = call(s, Method::GET, &p, None).await;
    assert_eq!(links.as_array().unwrap().len(), 1);

    // Wrong input, unknown ids, no auth.
    let (st, v) = call(s, Method::DELETE, &p, Some(json!({ "prId": "nope" }))).await;
    bad_field(st, &v, "prId");
    let (st, v) = call(s, Method::DELETE, &p, Some(json!({}))).await;
    bad_field(st, &v, "prId");
    let (st, _) = call(s, Method::GET, "/api/issues/NOPE-999/pr", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = call(
        s,
        Method::DELETE,
        "/api/issues/NOPE-999/pr",
        Some(json!({ "prId": id_b })),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(
        unauthenticated(s, Method::GET, &p).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        unauthenticated(s, Method::DELETE, &p).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn pr_links_sqlite() {
    pr_links_follow_the_pull_request(&server(None)).await;
}

#[tokio::test]
async fn pr_links_postgres() {
    let db = support::PgDatabase::create();
    pr_links_follow_the_pull_request(&server(Some(db.url()))).await;
}

// ------------------------------------------------------------------ delivery de-duplication

async fn failed_effect_does_not_consume_the_delivery(s: &Server) {
    // PR number 0 passes parsing and the signature but its effect fails (400).
    let d = delivery();
    let (st, v) = gh_pr(s, &d, "opened", pr(0, "bad", "x")).await;
    bad_field(st, &v, "pr_number");
    let (st, v) = gh_pr(s, &d, "opened", pr(0, "bad", "x")).await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "the redelivery acts again, not a duplicate: {v}"
    );

    // A good delivery: the same id fixed up now succeeds, then is a duplicate.
    let a = create_issue(s, "Flaky login").await;
    let good = pr(21, &format!("Fix {a}"), "fix/login");
    let (st, v) = gh_pr(s, &d, "opened", good.clone()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["links"].as_array().unwrap().len(), 1, "{v}");
    let (st, v) = gh_pr(s, &d, "opened", good.clone()).await;
    assert_eq!(
        (st, v["duplicate"].clone()),
        (StatusCode::OK, json!(true)),
        "{v}"
    );

    // Concurrent copies of one new delivery: exactly one acts.
    let d2 = delivery();
    let merged = {
        let mut m = pr(22, &format!("Fix {a} again"), "fix/login2");
        m["merged"] = json!(true);
        m["merged_at"] = json!(chrono::Utc::now().to_rfc3339());
        m["merge_commit_sha"] = json!("abc");
        m
    };
    let copies =
        futures::future::join_all((0..6).map(|_| gh_pr(s, &d2, "closed", merged.clone()))).await;
    let acted: Vec<&Value> = copies
        .iter()
        .filter(|(st, v)| *st == StatusCode::OK && v["duplicate"] != json!(true))
        .map(|(_, v)| v)
        .collect();
    assert!(
        copies.iter().all(|(st, _)| *st == StatusCode::OK),
        "{copies:?}"
    );
    assert_eq!(acted.len(), 1, "{copies:?}");
    let (_, fix) = call(s, Method::GET, &format!("/api/issues/{a}/fix-status"), None).await;
    assert_eq!(fix["fixAttempts"].as_array().unwrap().len(), 1, "{fix}");
}

#[tokio::test]
async fn delivery_dedupe_after_effect_sqlite() {
    failed_effect_does_not_consume_the_delivery(&server(None)).await;
}

#[tokio::test]
async fn delivery_dedupe_after_effect_postgres() {
    let db = support::PgDatabase::create();
    failed_effect_does_not_consume_the_delivery(&server(Some(db.url()))).await;
}

// ------------------------------------------------------------------ agents

async fn wait_for_requests(
    mock: &MockServer,
    n: usize,
    within: Duration,
) -> Vec<wiremock::Request> {
    let deadline = Instant::now() + within;
    loop {
        let got = mock.received_requests().await.unwrap_or_default();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn agents_registry_and_signed_assignment_webhook(s: &Server) {
    // Wrong input, no auth.
    let (st, v) = call(
        s,
        Method::POST,
        "/api/agents",
        Some(json!({ "description": "x" })),
    )
    .await;
    bad_field(st, &v, "name");
    let (st, v) = call(
        s,
        Method::POST,
        "/api/agents",
        Some(json!({ "name": "  " })),
    )
    .await;
    bad_field(st, &v, "name");
    let (st, v) = call(
        s,
        Method::POST,
        "/api/agents",
        Some(json!({ "name": "x", "webhookUrl": "ftp://nope" })),
    )
    .await;
    bad_field(st, &v, "webhookUrl");
    assert_eq!(
        unauthenticated(s, Method::GET, "/api/agents").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        unauthenticated(s, Method::POST, "/api/agents").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        unauthenticated(s, Method::POST, "/api/agents/webhook").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        unauthenticated(s, Method::DELETE, "/api/agents/webhook").await,
        StatusCode::UNAUTHORIZED
    );

    let (st, v) = call(
        s,
        Method::POST,
        "/api/agents",
        Some(json!({ "name": "claude-bot", "description": "does things" })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(
        (
            v["name"].as_str(),
            v["isActive"].as_bool(),
            v["hasWebhook"].as_bool()
        ),
        (Some("claude-bot"), Some(true), Some(false))
    );
    assert!(v.get("webhookSecret").is_none(), "{v}");
    let (st, _) = call(
        s,
        Method::POST,
        "/api/agents",
        Some(json!({ "name": "Claude-Bot" })),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT);

    let (st, v) = call(
        s,
        Method::POST,
        "/api/agents/webhook",
        Some(json!({ "agentName": "nobody", "webhookUrl": "https://x.invalid/h" })),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, v) = call(
        s,
        Method::POST,
        "/api/agents/webhook",
        Some(json!({ "agentName": "claude-bot", "webhookUrl": "not a url" })),
    )
    .await;
    bad_field(st, &v, "webhookUrl");
    let (st, v) = call(
        s,
        Method::POST,
        "/api/agents/webhook",
        Some(json!({ "webhookUrl": "https://x.invalid/h" })),
    )
    .await;
    bad_field(st, &v, "agentName");
    let (st, v) = call(s, Method::GET, "/api/agents/webhook", None).await;
    bad_field(st, &v, "agentName");
    let (st, _) = call(s, Method::GET, "/api/agents/webhook?agentName=nobody", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = call(
        s,
        Method::DELETE,
        "/api/agents/webhook",
        Some(json!({ "agentName": "nobody" })),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = call(s, Method::GET, "/api/agents?includeInactive=maybe", None).await;
    bad_field(st, &v, "includeInactive");

    // The receiver.
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&mock)
        .await;
    let url = format!("{}/hook", mock.uri());
    let (st, v) = call(
        s,
        Method::POST,
        "/api/agents/webhook",
        Some(json!({ "agentName": "claude-bot", "webhookUrl": url })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (v["success"].as_bool(), v["webhookUrl"].as_str()),
        (Some(true), Some(url.as_str()))
    );
    let secret = v["webhookSecret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 64);
    // The secret is never shown again.
    let (_, list) = call(s, Method::GET, "/api/agents", None).await;
    assert!(!list.to_string().contains(&secret), "{list}");
    assert_eq!(list[0]["hasWebhook"], true);
    let (st, w) = call(
        s,
        Method::GET,
        "/api/agents/webhook?agentName=CLAUDE-BOT",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        w,
        json!({ "agentName": "claude-bot", "hasWebhook": true, "webhookUrl": url })
    );

    // Assigning an issue to the agent: one signed delivery, off the request path.
    let ident = create_issue(s, "Investigate the nightly job").await;
    let started = Instant::now();
    let (st, v) = call(
        s,
        Method::PATCH,
        &format!("/api/issues/{ident}"),
        Some(json!({ "assigneeName": "claude-bot", "priority": "P2" })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let got = wait_for_requests(&mock, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "one delivery");
    let r = &got[0];
    let sig = r
        .headers
        .get("x-webhook-signature")
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(
        sig,
        format!("sha256={}", hmac_hex(&secret, &r.body)),
        "signed with the secret"
    );
    assert_eq!(r.headers.get("x-webhook-event").unwrap(), "ISSUE_ASSIGNED");
    assert!(r.headers.get("x-webhook-timestamp").is_some());
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["event"], "ISSUE_ASSIGNED");
    assert_eq!(body["issue"]["identifier"], ident.as_str());
    assert_eq!(body["issue"]["assignee"], "claude-bot");
    assert_eq!(body["issue"]["priority"], "P2");
    assert_eq!(body["issue"]["status"], "Backlog");
    assert!(body["timestamp"].is_string());

    // Same assignee again, or a person: no delivery. Unassign then reassign: a second one.
    call(
        s,
        Method::PATCH,
        &format!("/api/issues/{ident}"),
        Some(json!({ "assigneeName": "claude-bot" })),
    )
    .await;
    call(
        s,
        Method::PATCH,
        &format!("/api/issues/{ident}"),
        Some(json!({ "assigneeName": "alice" })),
    )
    .await;
    call(
        s,
        Method::PATCH,
        &format!("/api/issues/{ident}"),
        Some(json!({ "assigneeName": "claude-bot" })),
    )
    .await;
    let got = wait_for_requests(&mock, 2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        mock.received_requests().await.unwrap().len(),
        2,
        "{}",
        got.len()
    );

    // A failing receiver is retried, and never fails the PATCH.
    let failing = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&failing)
        .await;
    let (st, _) = call(
        s,
        Method::POST,
        "/api/agents",
        Some(json!({ "name": "flaky", "webhookUrl": format!("{}/x", failing.uri()) })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let started = Instant::now();
    let (st, _) = call(
        s,
        Method::PATCH,
        &format!("/api/issues/{ident}"),
        Some(json!({ "assigneeName": "flaky" })),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(5));
    let tries = wait_for_requests(&failing, 2, Duration::from_secs(15)).await;
    assert!(tries.len() >= 2, "retried: {} tries", tries.len());
    // An unreachable receiver: the PATCH still succeeds.
    call(
        s,
        Method::POST,
        "/api/agents",
        Some(json!({ "name": "gone", "webhookUrl": "http://127.0.0.1:9/x" })),
    )
    .await;
    let (st, _) = call(
        s,
        Method::PATCH,
        &format!("/api/issues/{ident}"),
        Some(json!({ "assigneeName": "gone" })),
    )
    .await;
    assert_eq!(st, StatusCode::OK);

    // Clearing the webhook stops deliveries.
    let (st, v) = call(
        s,
        Method::DELETE,
        "/api/agents/webhook",
        Some(json!({ "agentName": "claude-bot" })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["success"], true);
    let (_, w) = call(
        s,
        Method::GET,
        "/api/agents/webhook?agentName=claude-bot",
        None,
    )
    .await;
    assert_eq!(w["hasWebhook"], false);
    call(
        s,
        Method::PATCH,
        &format!("/api/issues/{ident}"),
        Some(json!({ "assigneeName": "claude-bot" })),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mock.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn agents_sqlite() {
    agents_registry_and_signed_assignment_webhook(&server(None)).await;
}

#[tokio::test]
async fn agents_postgres() {
    let db = support::PgDatabase::create();
    agents_registry_and_signed_assignment_webhook(&server(Some(db.url()))).await;
}

// ------------------------------------------------------------------ POST /runs

async fn external_runs(s: &Server) {
    let ident = create_issue(s, "Run it by hand").await;
    let p = format!("/api/issues/{ident}/runs");
    let (st, v) = call(s, Method::POST, &p, Some(json!({}))).await;
    bad_field(st, &v, "workflow_type");
    let (st, v) = call(
        s,
        Method::POST,
        &p,
        Some(json!({ "workflow_type": "dance" })),
    )
    .await;
    bad_field(st, &v, "workflow_type");
    let (st, v) = call(s, Method::POST, &p, Some(json!({ "workflow_type": 3 }))).await;
    bad_field(st, &v, "workflow_type");
    let (st, v) = call(
        s,
        Method::POST,
        &p,
        Some(json!({ "workflow_type": "qa", "github_run_url": "nope" })),
    )
    .await;
    bad_field(st, &v, "github_run_url");
    let (st, v) = call(
        s,
        Method::POST,
        &p,
        Some(json!({ "workflow_type": "qa", "github_run_id": [1] })),
    )
    .await;
    bad_field(st, &v, "github_run_id");
    let (st, _) = call(
        s,
        Method::POST,
        "/api/issues/NOPE-9/runs",
        Some(json!({ "workflow_type": "qa" })),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(
        unauthenticated(s, Method::POST, &p).await,
        StatusCode::UNAUTHORIZED
    );

    let body = json!({
        "workflow_type": "deep_research",
        "github_run_id": 987654321,
        "github_run_url": "https://github.com/acme/app/actions/runs/987654321",
        "prompt_text": "Research the options",
    });
    let (st, run) = call(s, Method::POST, &p, Some(body.clone())).await;
    assert_eq!(st, StatusCode::CREATED, "{run}");
    assert_eq!(run["workflow_type"], "deep_research", "{run}");
    assert_eq!(run["status"], "running", "{run}");
    assert_eq!(run["github_run_id"], "987654321", "{run}");
    assert_eq!(run["prompt_text"], "Research the options", "{run}");
    // A retried post: the same run.
    let (st, again) = call(s, Method::POST, &p, Some(body)).await;
    assert_eq!(st, StatusCode::OK, "{again}");
    assert_eq!(again["id"], run["id"]);
    // It is the current run; another while it is active: 409.
    let (_, cur) = call(s, Method::GET, &format!("{p}/current"), None).await;
    assert_eq!(cur["id"], run["id"], "{cur}");
    let (st, _) = call(s, Method::POST, &p, Some(json!({ "workflow_type": "qa" }))).await;
    assert_eq!(st, StatusCode::CONFLICT);
    // The workflow finishes it through the usual callback; then a new one may start.
    let (st, _) = call(
        s,
        Method::PATCH,
        &format!("{p}/current?github_run_id=987654321"),
        Some(json!({ "status": "completed", "outcome": "completed" })),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = call(
        s,
        Method::POST,
        &p,
        Some(json!({ "workflow_type": "qa", "github_run_id": 555 })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (_, list) = call(s, Method::GET, &p, None).await;
    assert_eq!(list.as_array().unwrap().len(), 2);

    // The old workflow's late report names its own run: it lands there (a finished run keeps
    // its end), never on the newer current run (issue 10 #6).
    let issue_path = format!("/api/issues/{ident}");
    let (st, v) = call(
        s,
        Method::PATCH,
        &issue_path,
        Some(json!({ "spawn_status": "failed", "github_run_id": "987654321", "run_outcome": "failed", "cost_usd": 0.75 })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, cur) = call(s, Method::GET, &format!("{p}/current"), None).await;
    assert_eq!(
        (cur["id"].clone(), cur["status"].clone()),
        (v["spawn_run_id"].clone(), json!("running")),
        "the newer run is untouched: {cur}"
    );
    let (_, old) = call(
        s,
        Method::GET,
        &format!("{p}/{}", run["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(
        (
            old["status"].clone(),
            old["outcome"].clone(),
            old["cost_usd"].clone()
        ),
        (json!("completed"), json!("completed"), json!(0.75)),
        "the old run keeps its end and takes the late cost: {old}"
    );
    // A report naming a run the issue never had is refused, not applied to the current run.
    let (st, v) = call(
        s,
        Method::PATCH,
        &issue_path,
        Some(json!({ "spawn_status": "completed", "github_run_id": "123" })),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let (_, cur) = call(s, Method::GET, &format!("{p}/current"), None).await;
    assert_eq!(cur["status"], "running");
}

#[tokio::test]
async fn external_runs_sqlite() {
    external_runs(&server(None)).await;
}

#[tokio::test]
async fn external_runs_postgres() {
    let db = support::PgDatabase::create();
    external_runs(&server(Some(db.url()))).await;
}

// ------------------------------------------------------------------ receivers inside the network

#[tokio::test]
async fn webhook_urls_pointing_inside_are_refused_unless_allowed() {
    let s = Server::builder().env("DISPATCH_WORKERS", "false").start();
    let (st, v) = call(
        &s,
        Method::POST,
        "/api/agents",
        Some(json!({"name": "metadata", "webhookUrl": "http://169.254.169.254/latest/meta-data"})),
    )
    .await;
    bad_field(st, &v, "webhookUrl");
    let (st, _) = call(
        &s,
        Method::POST,
        "/api/agents",
        Some(json!({"name": "builder"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:8080/hook",
        "http://[::1]/hook",
        "http://10.0.0.7/hook",
    ] {
        let (st, v) = call(
            &s,
            Method::POST,
            "/api/agents/webhook",
            Some(json!({"agentName": "builder", "webhookUrl": url})),
        )
        .await;
        bad_field(st, &v, "webhookUrl");
    }
    let (st, v) = call(
        &s,
        Method::POST,
        "/api/agents/webhook",
        Some(json!({"agentName": "builder", "webhookUrl": "https://hooks.example.com/dispatch"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // With the flag, an internal receiver is accepted.
    let open = Server::builder()
        .env("DISPATCH_WORKERS", "false")
        .env("AGENT_WEBHOOK_ALLOW_PRIVATE", "true")
        .start();
    let (st, v) = call(
        &open,
        Method::POST,
        "/api/agents",
        Some(json!({"name": "internal", "webhookUrl": "http://10.0.0.7/hook"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}
