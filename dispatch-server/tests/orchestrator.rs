//! The orchestrator against the real binary, with `ANTHROPIC_BASE_URL` pointing at a scripted
//! fake of the streaming Messages API: token-level `text_delta`s and a `proposal` come over
//! SSE, no run exists until the person confirms, one run after; a busy session is 409; a
//! closed connection cancels the turn and the session goes on; history survives a restart.

mod support;

use dispatch_core::testkit::fake_anthropic;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{Server, get, http, post};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const KEY: &str = "sk-ant-orchestrator-test";

fn stream(text: &str, tool: Option<(&str, &str, Value)>) -> String {
    fake_anthropic::stream_words("claude-fake-1", text, tool)
}

/// Answers the scripted streams in order (the last one again when the script runs out).
struct Script {
    replies: Vec<String>,
    n: Arc<AtomicUsize>,
}

impl Respond for Script {
    fn respond(&self, _req: &Request) -> ResponseTemplate {
        let i = self
            .n
            .fetch_add(1, Ordering::SeqCst)
            .min(self.replies.len() - 1);
        ResponseTemplate::new(200)
            .insert_header("content-type", "text/event-stream")
            .set_body_string(self.replies[i].clone())
    }
}

async fn fake(replies: Vec<String>) -> (MockServer, Arc<AtomicUsize>) {
    let server = MockServer::start().await;
    let n = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", KEY))
        .and(header("anthropic-version", "2023-06-01"))
        .respond_with(Script {
            replies,
            n: n.clone(),
        })
        .mount(&server)
        .await;
    (server, n)
}

fn server(fake: &MockServer) -> support::ServerBuilder {
    Server::builder()
        .env("ANTHROPIC_API_KEY", KEY)
        .env("ANTHROPIC_BASE_URL", &fake.uri())
        .env("ORCHESTRATOR_MODEL", "claude-fake-1")
        // Runs stay queued: what is checked is that they exist.
        .env("DISPATCH_WORKERS", "false")
}

/// One turn: the parsed SSE events.
async fn chat(s: &Server, session: Option<&str>, message: &str) -> Vec<Value> {
    let mut body = json!({ "message": message });
    if let Some(id) = session {
        body["sessionId"] = json!(id);
    }
    let r = http()
        .post(s.url("/api/orchestrator"))
        .bearer_auth(&s.api_key)
        .json(&body)
        .send()
        .await
        .expect("turn");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = r.text().await.expect("stream");
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("JSON event"))
        .collect()
}

fn of_type<'a>(events: &'a [Value], t: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == t).collect()
}

fn text(events: &[Value]) -> String {
    of_type(events, "text_delta")
        .iter()
        .map(|e| e["data"].as_str().unwrap())
        .collect()
}

async fn runs_queued(s: &Server) -> u64 {
    let (_, stats) = get(s, "/api/spawns/stats").await;
    stats["queued"]
        .as_u64()
        .unwrap_or_else(|| panic!("{stats}"))
}

#[tokio::test]
async fn a_chat_proposes_and_only_the_persons_confirmation_dispatches() {
    let (fake, calls) = fake(vec![
        stream(
            "Searching first.",
            Some((
                "toolu_01",
                "search_missions",
                json!({"query": "checkout timeout"}),
            )),
        ),
        stream(
            "Nothing similar exists.",
            Some((
                "toolu_02",
                "dispatch_investigation",
                json!({"title": "Checkout times out", "description": "p99 above 30 s since Tuesday", "priority": "P2"}),
            )),
        ),
        stream(
            "I proposed an investigation of Checkout times out. Type /confirm to start it.",
            None,
        ),
    ])
    .await;
    let mut s = server(&fake).start();
    let events = chat(&s, None, "checkout keeps timing out, look into it").await;
    assert_eq!(events[0]["type"], "session_id");
    let session = events[0]["data"].as_str().unwrap().to_string();
    assert_eq!(events.last().unwrap()["type"], "done");
    // Token-level deltas: one per word of the three answers.
    assert!(of_type(&events, "text_delta").len() >= 15, "{events:#?}");
    assert!(text(&events).ends_with("Type /confirm to start it."));
    let tools: Vec<&str> = of_type(&events, "tool_result")
        .iter()
        .map(|e| e["data"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["search_missions", "dispatch_investigation"]);
    let proposals = of_type(&events, "proposal");
    assert_eq!(proposals.len(), 1);
    let p = &proposals[0]["data"];
    assert_eq!(p["status"], "pending");
    assert_eq!(p["kind"], "prd_investigate");
    assert_eq!(p["gate"]["decision"], "allow");
    let usage = of_type(&events, "usage");
    assert_eq!(usage.len(), 3);
    assert_eq!(usage[0]["data"]["model"], "claude-fake-1");
    assert_eq!(usage[0]["data"]["cache_read_input_tokens"], 300);
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // The model's requests: streamed, with the tools and the tool results fed back.
    let reqs = fake.received_requests().await.unwrap();
    let last: Value = serde_json::from_slice(&reqs[2].body).unwrap();
    assert_eq!(last["stream"], true);
    assert_eq!(last["model"], "claude-fake-1");
    assert!(
        last["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "dispatch_investigation")
    );
    let msgs = last["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 5);
    assert_eq!(msgs[4]["content"][0]["type"], "tool_result");
    assert_eq!(msgs[4]["content"][0]["tool_use_id"], "toolu_02");

    // Nothing runs and no issue exists before the person confirms.
    assert_eq!(runs_queued(&s).await, 0);
    let (_, issues) = get(&s, "/api/issues").await;
    assert_eq!(issues.as_array().map(Vec::len), Some(0), "{issues}");

    // A restart keeps the session: history and the pending proposal come back.
    let dir = s.dir.clone();
    s.kill();
    let s = server(&fake).dir(dir).start();
    let (st, h) = get(&s, &format!("/api/orchestrator?sessionId={session}")).await;
    assert_eq!(st, StatusCode::OK, "{h}");
    assert_eq!(h["messages"].as_array().unwrap().len(), 6);
    assert_eq!(h["proposals"][0]["status"], "pending");
    assert_eq!(h["busy"], false);

    let events = chat(&s, Some(&session), "/confirm").await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "a confirmation is not a model call"
    );
    let decided = &of_type(&events, "proposal")[0]["data"];
    assert_eq!(decided["status"], "confirmed");
    assert!(decided["outcome"]["run_id"].is_string(), "{decided}");
    assert!(text(&events).contains("dispatched"), "{}", text(&events));
    assert_eq!(runs_queued(&s).await, 1);
    let (_, issues) = get(&s, "/api/issues").await;
    assert_eq!(issues[0]["title"], "Checkout times out");
    assert_eq!(issues[0]["priority"], "P2");

    // The confirm endpoint refuses a second decision.
    let id = decided["id"].as_str().unwrap();
    let (st, e) = post(
        &s,
        &format!("/api/orchestrator/proposals/{id}/confirm"),
        json!({}),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    assert_eq!(runs_queued(&s).await, 1);
}

#[tokio::test]
async fn a_busy_session_is_409_and_a_closed_connection_cancels_the_turn() {
    let server_fake = MockServer::start().await;
    // The first answer never comes within the test; later ones answer at once.
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(stream("late", None))
                .set_delay(Duration::from_secs(600)),
        )
        .up_to_n_times(1)
        .mount(&server_fake)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(stream("Back again.", None)),
        )
        .mount(&server_fake)
        .await;
    let s = server(&server_fake).start();
    let mut first = http()
        .post(s.url("/api/orchestrator"))
        .bearer_auth(&s.api_key)
        .json(&json!({"message": "a slow question"}))
        .send()
        .await
        .unwrap();
    let chunk = first.chunk().await.unwrap().expect("the session event");
    let line = String::from_utf8_lossy(&chunk);
    let ev: Value = serde_json::from_str(
        line.lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("a data line"),
    )
    .unwrap();
    assert_eq!(ev["type"], "session_id");
    let session = ev["data"].as_str().unwrap().to_string();

    let r = http()
        .post(s.url("/api/orchestrator"))
        .bearer_auth(&s.api_key)
        .json(&json!({"message": "another", "sessionId": session}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // Closing the connection cancels the turn: the session frees up with a valid history.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, h) = get(&s, &format!("/api/orchestrator?sessionId={session}")).await;
        if h["busy"] == false {
            let msgs = h["messages"].as_array().unwrap();
            assert_eq!(msgs.len(), 2, "{h}");
            assert!(msgs[1].to_string().contains("cancelled"), "{h}");
            break;
        }
        assert!(Instant::now() < deadline, "the turn was not cancelled: {h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = chat(&s, Some(&session), "try again").await;
    assert_eq!(text(&events), "Back again.");
}

#[tokio::test]
async fn bad_requests_are_refused_before_the_stream() {
    let (fake, calls) = fake(vec![stream("hi", None)]).await;
    let s = server(&fake).start();
    let (st, e) = post(&s, "/api/orchestrator", json!({"message": "  "})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(e["field"], "message");
    let (st, e) = post(
        &s,
        "/api/orchestrator",
        json!({"message": "hi", "sessionId": "nope"}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(e["field"], "sessionId");
    let (st, _) = post(
        &s,
        "/api/orchestrator",
        json!({"message": "hi", "sessionId": uuid::Uuid::now_v7().to_string()}),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let r = http()
        .post(s.url("/api/orchestrator"))
        .json(&json!({"message": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let (st, list) = get(&s, "/api/orchestrator").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["hasModel"], true);
    assert_eq!(list["sessions"], json!([]));
}
