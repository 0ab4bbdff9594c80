//! Embeddings against the real binary and a local fake of OpenAI's embeddings API (wiremock,
//! the API's wire format, the toy model of `dispatch_core::testkit::fake_openai_embed`): hybrid
//! search finds by meaning what keywords miss; vectors are computed in the background and an
//! owed one survives a restart; a failing endpoint never fails an issue write; dedup compares
//! embeddings. Waits poll the API for an observable state, with a deadline.

mod support;

use dispatch_core::testkit::fake_openai_embed;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{Server, get, patch, post};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const DIMS: &str = "256";

/// The embeddings API answering with the toy model's vectors.
async fn working_api() -> MockServer {
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(|req: &Request| {
            let body: Value = serde_json::from_slice(&req.body).expect("JSON body");
            match fake_openai_embed::response(&body, 1536) {
                Some(r) => ResponseTemplate::new(200).set_body_json(r),
                None => ResponseTemplate::new(400).set_body_json(fake_openai_embed::error(
                    "'input' is invalid",
                    "invalid_request_error",
                    None,
                )),
            }
        })
        .mount(&api)
        .await;
    api
}

fn with_api(b: support::ServerBuilder, api: &MockServer) -> support::ServerBuilder {
    b.env("OPENAI_API_KEY", "sk-test-embeddings")
        .env("OPENAI_BASE_URL", &format!("{}/v1", api.uri()))
        .env("OPENAI_EMBEDDING_DIMENSIONS", DIMS)
}

async fn create(s: &Server, title: &str, description: Option<&str>) -> String {
    let (st, v) = post(
        s,
        "/api/issues",
        json!({ "title": title, "description": description }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["identifier"].as_str().expect("identifier").to_string()
}

async fn search(s: &Server, q: &str) -> Vec<String> {
    let (st, v) = get(s, &format!("/api/search?q={}", q.replace(' ', "+"))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v.as_array()
        .expect("array")
        .iter()
        .map(|h| h["identifier"].as_str().expect("identifier").to_string())
        .collect()
}

/// Polls search (an observable state, not a sleep as synchronisation) until `ident` is found.
async fn search_until_found(s: &Server, q: &str, ident: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let hits = search(s, q).await;
        if hits.iter().any(|h| h == ident) || Instant::now() > deadline {
            return hits;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn search_finds_by_meaning_what_keywords_miss() {
    let api = working_api().await;
    let s = with_api(Server::builder(), &api).start();
    assert!(
        s.banner
            .iter()
            .any(|l| l.contains("Embeddings: text-embedding-3-small (256 dimensions)")),
        "{:?}",
        s.banner
    );
    let login = create(&s, "Login fails for users", Some("since the SSO change")).await;
    let csv = create(&s, "Export to CSV drops the header row", None).await;
    // No word of the query is in the login issue: only its embedding can find it.
    let hits = search_until_found(&s, "signin broken", &login).await;
    assert!(hits.contains(&login), "{hits:?}");
    assert!(!hits.contains(&csv), "{hits:?}");
    // Similar issues use the stored vectors.
    let signin = create(&s, "signin broken for customers", None).await;
    search_until_found(&s, "signin broken customers", &signin).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let similar = loop {
        let (st, v) = get(&s, &format!("/api/issues/{login}/similar")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let ids: Vec<String> = v
            .as_array()
            .expect("array")
            .iter()
            .map(|h| h["identifier"].as_str().unwrap_or_default().to_string())
            .collect();
        if ids.first() == Some(&signin) || Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(similar.first(), Some(&signin), "{similar:?}");
    // Requests carried the model, the size and the bearer key.
    let requests = api.received_requests().await.expect("recorded");
    let first: Value = serde_json::from_slice(&requests[0].body).expect("json");
    assert_eq!(first["model"], "text-embedding-3-small");
    assert_eq!(first["dimensions"], 256);
    assert_eq!(
        requests[0]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer sk-test-embeddings")
    );
}

#[tokio::test]
async fn an_owed_embedding_survives_a_restart() {
    let api = working_api().await;
    let mut a = with_api(Server::builder(), &api).start();
    let dir = a.dir.clone();
    let issue = create(&a, "Export to CSV drops the header row", None).await;
    search_until_found(&a, "csv export header", &issue).await;
    let requests_before = api.received_requests().await.expect("recorded").len();
    assert!(requests_before >= 1);
    assert!(a.terminate().is_some_and(|s| s.success()));

    // An API-only process (no workers) edits the text: the issue owes a new vector, which
    // nothing on the request path computes.
    let mut b = with_api(Server::builder().dir(dir.clone()), &api)
        .env("DISPATCH_WORKERS", "false")
        .start();
    let (st, v) = patch(
        &b,
        &format!("/api/issues/{issue}"),
        json!({ "title": "Login fails for users" }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let stale = search(&b, "signin broken").await;
    assert!(
        !stale.contains(&issue),
        "the old vector is still stored: {stale:?}"
    );
    assert!(b.terminate().is_some_and(|s| s.success()));

    // A worker process on the same store picks the persisted mark up.
    let c = with_api(Server::builder().dir(dir), &api).start();
    let hits = search_until_found(&c, "signin broken", &issue).await;
    assert!(hits.contains(&issue), "{hits:?}");
    let texts: Vec<Value> = api
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .flat_map(|b| b["input"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(
        texts.iter().any(|t| t == "Login fails for users"),
        "the new title was embedded: {texts:?}"
    );
}

#[tokio::test]
async fn a_failing_endpoint_never_fails_an_issue_write() {
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(fake_openai_embed::error(
                "Incorrect API key provided",
                "invalid_request_error",
                Some("invalid_api_key"),
            )),
        )
        .mount(&api)
        .await;
    let s = with_api(Server::builder(), &api).start();
    for n in 0..5 {
        let started = Instant::now();
        create(
            &s,
            &format!("Checkout timeout number {n}"),
            Some("payment page"),
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    // The worker tried (and was refused) in the background.
    let deadline = Instant::now() + Duration::from_secs(20);
    while api.received_requests().await.expect("recorded").is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!api.received_requests().await.expect("recorded").is_empty());
    // Search still answers, lexically.
    assert_eq!(search(&s, "checkout timeout").await.len(), 5);
}

#[tokio::test]
async fn dedup_compares_embeddings_when_configured() {
    let api = working_api().await;
    let s = with_api(Server::builder(), &api).start();
    let login = create(&s, "Login fails for users", None).await;
    let signin = create(&s, "signin broken for customers", None).await;
    create(&s, "Export to CSV drops the header row", None).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let report = loop {
        let (st, v) = post(&s, "/api/issues/deduplicate", json!({})).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        if v["issues_with_embeddings"] == 3 || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(report["issues_with_embeddings"], 3, "{report}");
    assert_eq!(report["clusters_found"], 1, "{report}");
    let action = &report["proposed_actions"][0];
    assert_eq!(action["canonical"]["identifier"], login.as_str());
    assert_eq!(
        action["duplicates_to_close"][0]["identifier"],
        signin.as_str()
    );
    assert!(
        action["duplicates_to_close"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("by embedding"),
        "{report}"
    );

    // Without embeddings the same issues share no word: nothing is proposed.
    let plain = Server::builder().start();
    create(&plain, "Login fails for users", None).await;
    create(&plain, "signin broken for customers", None).await;
    let (_, v) = post(&plain, "/api/issues/deduplicate", json!({})).await;
    assert_eq!(v["clusters_found"], 0, "{v}");
    assert_eq!(v["issues_with_embeddings"], 0);
}
