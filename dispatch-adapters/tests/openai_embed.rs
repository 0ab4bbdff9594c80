//! `OpenAiEmbedder` against a local fake of OpenAI's embeddings API (wiremock) that answers in
//! the API's wire format: `{"object":"list","data":[{"index","embedding"}],..}` with vectors of
//! the toy model in `dispatch_core::testkit::fake_openai_embed`, and `{"error":{..}}` bodies for
//! 401 and 429.

#![cfg(feature = "openai-embed")]

use dispatch_adapters::http::RetryConfig;
use dispatch_adapters::openai_embed::{OpenAiEmbedConfig, OpenAiEmbedder};
use dispatch_core::ErrorKind;
use dispatch_core::ports::Embedder;
use dispatch_core::search::cosine;
use dispatch_core::testkit::fake_openai_embed;
use serde_json::Value;
use std::time::{Duration, Instant};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const KEY: &str = "sk-test-embeddings-key";

/// The fake model's answer to whatever was asked.
struct Embeddings;

impl Respond for Embeddings {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).expect("JSON body");
        match fake_openai_embed::response(&body, 1536) {
            Some(r) => ResponseTemplate::new(200).set_body_json(r),
            None => ResponseTemplate::new(400).set_body_json(fake_openai_embed::error(
                "'input' is invalid",
                "invalid_request_error",
                None,
            )),
        }
    }
}

fn embedder(server: &MockServer, dims: usize, batch: usize) -> OpenAiEmbedder {
    let mut cfg = OpenAiEmbedConfig::new(KEY);
    cfg.base_url = format!("{}/v1", server.uri());
    cfg.dimensions = dims;
    cfg.batch_size = batch;
    cfg.request_timeout = Duration::from_secs(5);
    cfg.retry = RetryConfig {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(5),
    };
    OpenAiEmbedder::new(cfg).expect("client")
}

fn texts(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn batches_and_puts_vectors_back_in_order() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(Embeddings)
        .expect(3)
        .mount(&server)
        .await;
    let e = embedder(&server, 64, 2);
    let input = texts(&[
        "Login fails for users",
        "signin broken for customers",
        "Export to CSV drops the header row",
        "checkout is slow",
        "billing sluggish",
    ]);
    let v = e.embed(&input).await.expect("embed");
    assert_eq!(v.len(), 5);
    for (i, t) in input.iter().enumerate() {
        assert_eq!(v[i], fake_openai_embed::embedding(t, 64), "input {i}");
    }
    assert!(cosine(&v[0], &v[1]) > 0.9);
    assert!(cosine(&v[0], &v[2]) < 0.3);
    let requests = server.received_requests().await.expect("recorded");
    let first: Value = serde_json::from_slice(&requests[0].body).expect("json");
    assert_eq!(first["model"], "text-embedding-3-small");
    assert_eq!(first["dimensions"], 64);
    assert_eq!(first["input"].as_array().map(Vec::len), Some(2));
    assert_eq!((e.model(), e.dimensions()), ("text-embedding-3-small", 64));
}

#[tokio::test]
async fn rate_limit_waits_what_retry_after_asks_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(fake_openai_embed::error(
                    "Rate limit reached for text-embedding-3-small",
                    "requests",
                    Some("rate_limit_exceeded"),
                )),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(Embeddings)
        .expect(1)
        .mount(&server)
        .await;
    let e = embedder(&server, 8, 64);
    let started = Instant::now();
    let v = e.embed(&texts(&["payment declined"])).await.expect("embed");
    // The backoff alone is 10 ms: the second try waited for Retry-After.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(v[0], fake_openai_embed::embedding("payment declined", 8));
}

#[tokio::test]
async fn a_retry_after_beyond_the_limit_and_server_errors_end_in_an_upstream_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "3600")
                .set_body_json(fake_openai_embed::error(
                    "quota",
                    "insufficient_quota",
                    None,
                )),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = embedder(&server, 8, 64)
        .embed(&texts(&["x y"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err.kind, ErrorKind::Upstream { service, status: 429 } if service == "openai"),
        "{err}"
    );

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream overloaded"))
        .expect(3)
        .mount(&server)
        .await;
    let err = embedder(&server, 8, 64)
        .embed(&texts(&["x y"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
}

#[tokio::test]
async fn a_bad_key_is_not_retried_and_says_so() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(fake_openai_embed::error(
                "Incorrect API key provided: sk-test-****-key.",
                "invalid_request_error",
                Some("invalid_api_key"),
            )),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = embedder(&server, 8, 64)
        .embed(&texts(&["x y"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err.kind, ErrorKind::Upstream { status: 401, .. }),
        "{err}"
    );
    let m = err.to_string();
    assert!(
        m.contains("OPENAI_API_KEY") && m.contains("Incorrect API key"),
        "{m}"
    );
    assert!(!m.contains(KEY));
}

#[tokio::test]
async fn wrong_dimensions_and_empty_input_are_refused() {
    let server = MockServer::start().await;
    // Answers 1536 numbers whatever is asked: a model that ignores `dimensions`.
    Mock::given(method("POST"))
        .respond_with(|req: &Request| {
            let mut body: Value = serde_json::from_slice(&req.body).expect("json");
            body.as_object_mut().expect("object").remove("dimensions");
            ResponseTemplate::new(200)
                .set_body_json(fake_openai_embed::response(&body, 1536).expect("answer"))
        })
        .mount(&server)
        .await;
    let e = embedder(&server, 8, 64);
    let err = e.embed(&texts(&["x y"])).await.unwrap_err();
    assert!(err.to_string().contains("dimensions"), "{err}");
    let err = e.embed(&texts(&["ok", " "])).await.unwrap_err();
    assert_eq!(err.field(), Some("input"));
}
