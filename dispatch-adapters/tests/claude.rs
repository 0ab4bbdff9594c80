//! `ClaudeLlm` against a local fake of the Anthropic Messages API (wiremock) that answers with
//! the API's documented shapes: `message` objects with text / tool_use blocks and usage, and
//! `{"type":"error","error":{...}}` bodies for 400, 429 and 529.

#![cfg(feature = "claude")]

use dispatch_adapters::claude::{ClaudeConfig, ClaudeLlm, ClaudeRetry};
use dispatch_core::ErrorKind;
use dispatch_core::ports::{ContentBlock, Llm, LlmMessage, LlmRequest, Role, ToolSpec};
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk-ant-test-key-never-logged";

fn llm(server: &MockServer) -> ClaudeLlm {
    let mut cfg = ClaudeConfig::new(KEY);
    cfg.base_url = server.uri();
    cfg.model = "claude-test-model".into();
    cfg.request_timeout = Duration::from_secs(5);
    cfg.retry = ClaudeRetry {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(5),
    };
    ClaudeLlm::new(cfg).expect("client")
}

fn ask(text: &str) -> LlmRequest {
    LlmRequest {
        model: None,
        system: Some("You match pull requests to issues.".into()),
        messages: vec![LlmMessage {
            role: Role::User,
            content: vec![ContentBlock::Text { text: text.into() }],
        }],
        tools: vec![],
        max_tokens: 256,
        temperature: Some(0.0),
    }
}

fn message(content: Value, stop_reason: &str) -> Value {
    json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-test-model",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": {
            "input_tokens": 42,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 7
        }
    })
}

fn error_body(kind: &str, message: &str) -> Value {
    json!({
        "type": "error",
        "error": { "type": kind, "message": message },
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"
    })
}

async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("json body"))
        .collect()
}

#[tokio::test]
async fn text_answer_with_the_messages_api_headers_and_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", KEY))
        .and(header("anthropic-version", "2023-06-01"))
        .and(header("content-type", "application/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(message(
            json!([{ "type": "text", "text": "{\"fixes\": [\"DISPATCH-3\"]}" }]),
            "end_turn",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let llm = llm(&server);
    assert!(!format!("{llm:?}").contains(KEY), "Debug shows no key");

    let r = llm.complete(ask("Which issue?")).await.expect("answer");
    assert_eq!(
        r.content,
        vec![ContentBlock::Text {
            text: "{\"fixes\": [\"DISPATCH-3\"]}".into()
        }]
    );
    assert_eq!(r.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (42, 7));
    assert_eq!(r.model, "claude-test-model");

    let sent = &bodies(&server).await[0];
    assert_eq!(
        sent,
        &json!({
            "model": "claude-test-model",
            "max_tokens": 256,
            "system": "You match pull requests to issues.",
            "temperature": 0.0,
            "messages": [{ "role": "user", "content": [{ "type": "text", "text": "Which issue?" }] }]
        }),
        "no tools key without tools"
    );
}

#[tokio::test]
async fn tool_use_answer_and_tool_results_on_the_wire() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(message(
            json!([
                { "type": "text", "text": "Let me look that up." },
                {
                    "type": "tool_use",
                    "id": "toolu_01A09q90qw90lq917835lq9",
                    "name": "search_issues",
                    "input": { "query": "refund timeout" }
                }
            ]),
            "tool_use",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let mut req = ask("Find the refund issue");
    req.model = Some("claude-other".into());
    req.tools = vec![ToolSpec {
        name: "search_issues".into(),
        description: "Search issues".into(),
        input_schema: json!({
            "type": "object",
            "properties": { "query": { "type": "string" } },
            "required": ["query"]
        }),
    }];
    req.messages.push(LlmMessage {
        role: Role::Assistant,
        content: vec![ContentBlock::ToolUse {
            id: "toolu_prev".into(),
            name: "search_issues".into(),
            input: json!({ "query": "refund" }),
        }],
    });
    req.messages.push(LlmMessage {
        role: Role::User,
        content: vec![
            ContentBlock::ToolResult {
                tool_use_id: "toolu_prev".into(),
                content: "no results".into(),
                is_error: false,
            },
            ContentBlock::ToolResult {
                tool_use_id: "toolu_prev2".into(),
                content: "boom".into(),
                is_error: true,
            },
        ],
    });

    let r = llm(&server).complete(req).await.expect("answer");
    assert_eq!(r.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(
        r.content[1],
        ContentBlock::ToolUse {
            id: "toolu_01A09q90qw90lq917835lq9".into(),
            name: "search_issues".into(),
            input: json!({ "query": "refund timeout" }),
        }
    );

    let sent = &bodies(&server).await[0];
    assert_eq!(sent["model"], "claude-other");
    assert_eq!(sent["tools"][0]["name"], "search_issues");
    assert_eq!(sent["tools"][0]["input_schema"]["required"][0], "query");
    assert_eq!(
        sent["messages"][1],
        json!({ "role": "assistant", "content": [
            { "type": "tool_use", "id": "toolu_prev", "name": "search_issues", "input": { "query": "refund" } }
        ]})
    );
    assert_eq!(
        sent["messages"][2]["content"],
        json!([
            { "type": "tool_result", "tool_use_id": "toolu_prev", "content": "no results" },
            { "type": "tool_result", "tool_use_id": "toolu_prev2", "content": "boom", "is_error": true }
        ])
    );
}

#[tokio::test]
async fn rate_limited_then_success_honours_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(error_body(
                    "rate_limit_error",
                    "Number of request tokens has exceeded your per-minute rate limit",
                )),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(message(
            json!([{ "type": "text", "text": "ok" }]),
            "end_turn",
        )))
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    let r = llm(&server).complete(ask("hi")).await.expect("answer");
    assert_eq!(r.content, vec![ContentBlock::Text { text: "ok".into() }]);
    assert_eq!(bodies(&server).await.len(), 2);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited what retry-after asked: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn invalid_request_is_an_upstream_400_with_the_api_message_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(400).set_body_json(error_body(
            "invalid_request_error",
            "max_tokens: Field required",
        )))
        .mount(&server)
        .await;
    let e = llm(&server).complete(ask("hi")).await.unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::Upstream {
            service: "anthropic".into(),
            status: 400
        }
    );
    assert!(e.message.contains("invalid_request_error"), "{e}");
    assert!(e.message.contains("max_tokens: Field required"), "{e}");
    assert!(!e.to_string().contains(KEY));
    assert_eq!(bodies(&server).await.len(), 1, "a 400 is not retried");
}

#[tokio::test]
async fn overloaded_is_retried_then_an_upstream_529() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(
            ResponseTemplate::new(529).set_body_json(error_body("overloaded_error", "Overloaded")),
        )
        .mount(&server)
        .await;
    let e = llm(&server).complete(ask("hi")).await.unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::Upstream {
            service: "anthropic".into(),
            status: 529
        }
    );
    assert!(e.message.contains("Overloaded"), "{e}");
    assert!(e.kind.is_retryable());
    assert_eq!(bodies(&server).await.len(), 3, "max_attempts tries");
}

#[tokio::test]
async fn overloaded_once_then_success_and_unreachable_is_status_0() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(
            ResponseTemplate::new(529).set_body_json(error_body("overloaded_error", "Overloaded")),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(message(
            json!([{ "type": "text", "text": "fine" }]),
            "end_turn",
        )))
        .mount(&server)
        .await;
    let r = llm(&server).complete(ask("hi")).await.expect("answer");
    assert_eq!(
        r.content,
        vec![ContentBlock::Text {
            text: "fine".into()
        }]
    );

    // Nothing listens: a transport error, status 0, after the retries.
    let mut cfg = ClaudeConfig::new(KEY);
    cfg.base_url = "http://127.0.0.1:9".into();
    cfg.retry = ClaudeRetry {
        max_attempts: 2,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(5),
        max_retry_after: Duration::from_secs(1),
    };
    let e = ClaudeLlm::new(cfg)
        .unwrap()
        .complete(ask("hi"))
        .await
        .unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::Upstream {
            service: "anthropic".into(),
            status: 0
        }
    );
}

// ------------------------------------------------------------------------ streaming

use dispatch_core::ports::{DeltaAssembler, LlmDelta};
use futures::StreamExt;

fn fixture(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/anthropic")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn sse_response(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "text/event-stream")
        .set_body_string(body)
}

async fn collect(
    llm: &ClaudeLlm,
    req: LlmRequest,
) -> (Vec<LlmDelta>, Option<dispatch_core::Error>) {
    let mut stream = llm.stream(req).await.expect("stream opens");
    let mut out = Vec::new();
    while let Some(d) = stream.next().await {
        match d {
            Ok(d) => out.push(d),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

#[tokio::test]
async fn a_streamed_tool_call_is_assembled_from_the_real_event_stream() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", KEY))
        .and(header("anthropic-version", "2023-06-01"))
        .respond_with(sse_response(fixture("stream-tool-use.sse")))
        .expect(1)
        .mount(&server)
        .await;
    let llm = llm(&server);
    let mut req = ask("What is the weather in Paris?");
    req.tools = vec![ToolSpec {
        name: "get_weather".into(),
        description: "Weather".into(),
        input_schema: json!({"type": "object", "properties": {"location": {"type": "string"}}}),
    }];
    let (deltas, err) = collect(&llm, req).await;
    assert!(err.is_none(), "{err:?}");
    let body = &bodies(&server).await[0];
    assert_eq!(body["stream"], json!(true));
    assert_eq!(body["tools"][0]["name"], "get_weather");
    assert!(
        matches!(&deltas[0], LlmDelta::Start { model, usage } if model == "claude-sonnet-4-20250514" && usage.input_tokens == 377)
    );
    let mut asm = DeltaAssembler::new();
    for d in &deltas {
        asm.push(d).unwrap();
    }
    let answer = asm.finish();
    assert_eq!(answer.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(answer.usage.output_tokens, 65);
    assert_eq!(
        answer.content,
        vec![
            ContentBlock::Text {
                text: "I'll check the current weather in Paris for you.".into()
            },
            ContentBlock::ToolUse {
                id: "toolu_01NRLabsLyVHZPKxbKvkfSMn".into(),
                name: "get_weather".into(),
                input: json!({"location": "Paris"}),
            }
        ]
    );
    // The text came as the upstream's own deltas, not one block.
    let texts = deltas
        .iter()
        .filter(|d| matches!(d, LlmDelta::Text { .. }))
        .count();
    assert_eq!(texts, 2);
}

#[tokio::test]
async fn crlf_line_endings_and_split_utf8_decode_the_same() {
    let server = MockServer::start().await;
    let crlf = fixture("stream-text.sse")
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(sse_response(crlf))
        .mount(&server)
        .await;
    let (deltas, err) = collect(&llm(&server), ask("hi")).await;
    assert!(err.is_none(), "{err:?}");
    let mut asm = DeltaAssembler::new();
    for d in &deltas {
        asm.push(d).unwrap();
    }
    assert!(asm.is_complete());
    // The same text as the LF stream gives.
    let text = asm.finish().text();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(sse_response(fixture("stream-text.sse")))
        .mount(&server)
        .await;
    let (lf, _) = collect(&llm(&server), ask("hi")).await;
    let mut asm = DeltaAssembler::new();
    for d in &lf {
        asm.push(d).unwrap();
    }
    assert!(text.starts_with("Hello"), "{text}");
    assert_eq!(text, asm.finish().text());
}

#[tokio::test]
async fn an_error_event_mid_stream_ends_it_with_an_upstream_error() {
    let server = MockServer::start().await;
    let mut body = fixture("stream-text.sse");
    let cut = body
        .find("event: content_block_stop")
        .expect("a block stop");
    body.truncate(cut);
    body.push_str("event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n");
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(sse_response(body))
        .expect(1)
        .mount(&server)
        .await;
    let (deltas, err) = collect(&llm(&server), ask("hi")).await;
    let err = err.expect("the error event ends the stream");
    assert!(
        matches!(err.kind, ErrorKind::Upstream { status: 529, .. }),
        "{err:?}"
    );
    assert!(err.message.contains("Overloaded"));
    assert!(
        deltas.iter().any(|d| matches!(d, LlmDelta::Text { .. })),
        "text before the error was relayed"
    );
}

#[tokio::test]
async fn a_stream_cut_before_message_stop_is_an_error() {
    let server = MockServer::start().await;
    let mut body = fixture("stream-text.sse");
    let cut = body.find("event: message_stop").expect("message_stop");
    body.truncate(cut);
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(sse_response(body))
        .mount(&server)
        .await;
    let (_, err) = collect(&llm(&server), ask("hi")).await;
    let err = err.expect("a cut stream is an error");
    assert!(err.message.contains("before message_stop"), "{err}");
}

#[tokio::test]
async fn a_streaming_request_rate_limited_first_is_retried_and_a_400_is_reported() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "0")
                .set_body_json(error_body(
                    "rate_limit_error",
                    "Number of request tokens has exceeded your per-minute rate limit",
                )),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(
            ResponseTemplate::new(529).set_body_json(error_body("overloaded_error", "Overloaded")),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(sse_response(fixture("stream-text.sse")))
        .mount(&server)
        .await;
    let (deltas, err) = collect(&llm(&server), ask("hi")).await;
    assert!(err.is_none(), "{err:?}");
    assert!(matches!(deltas.last(), Some(LlmDelta::Stop { .. })));
    assert_eq!(server.received_requests().await.unwrap().len(), 3);

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(400).set_body_json(error_body(
            "invalid_request_error",
            "messages: roles must alternate",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let e = match llm(&server).stream(ask("hi")).await {
        Err(e) => e,
        Ok(_) => panic!("a 400 is not a stream"),
    };
    assert!(
        matches!(e.kind, ErrorKind::Upstream { status: 400, .. }),
        "{e:?}"
    );
    assert!(e.message.contains("roles must alternate"), "{e}");
}
