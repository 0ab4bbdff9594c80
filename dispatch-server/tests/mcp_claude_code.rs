//! The real Claude Code CLI as an MCP client of `dispatch serve`: a scripted fake of the
//! Anthropic Messages API (wiremock on 127.0.0.1) makes the model call
//! `mcp__dispatch__create_issue`, then `mcp__dispatch__search_issues`; the CLI connects to
//! `/api/mcp` over streamable HTTP with the API key. With a wrong key the server shows as failed.
//!
//! The CLI is installed by `scripts/test` (`DISPATCH_TEST_CLAUDE_BIN`); facts about running it
//! offline: `../shared/notes/claude-code-offline.md`.

mod support;

use dispatch_core::testkit::fake_anthropic::{assistant_messages, sse};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::Server;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const MODEL: &str = "claude-sonnet-4-5-20250929";
const TITLE: &str = "SSO users get a 500 on the login page";
/// The whole CLI run (about a second against the fake).
const RUN_LIMIT: Duration = Duration::from_secs(90);

fn claude_bin() -> PathBuf {
    let bin = std::env::var_os("DISPATCH_TEST_CLAUDE_BIN")
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "DISPATCH_TEST_CLAUDE_BIN is not set. This test runs the real Claude Code CLI: \
                 run `scripts/test` (it installs @anthropic-ai/claude-code and sets it), or set it \
                 to a `claude` executable."
            )
        });
    PathBuf::from(bin)
}

/// Turn 1: create the issue; turn 2: search for it; turn 3: done. Chosen by the number of
/// assistant messages, so a retried request gets the same answer.
struct Script {
    /// Only the final text (for the wrong-key run, where the tools are missing).
    text_only: bool,
}

impl Respond for Script {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = match serde_json::from_slice(&req.body) {
            Ok(b) => b,
            Err(e) => return ResponseTemplate::new(400).set_body_string(format!("bad json: {e}")),
        };
        let model = body["model"].as_str().unwrap_or(MODEL);
        let stream = match (self.text_only, assistant_messages(&body)) {
            (false, 0) => sse(
                model,
                1,
                &[
                    json!({"type": "text", "text": "I'll file it."}),
                    json!({
                        "type": "tool_use",
                        "id": "toolu_01DispatchMcpCreate",
                        "name": "mcp__dispatch__create_issue",
                        "input": {"title": TITLE, "description": "Okta users only; password users are fine.", "priority": "P2"}
                    }),
                ],
                "tool_use",
            ),
            (false, 1) => sse(
                model,
                2,
                &[json!({
                    "type": "tool_use",
                    "id": "toolu_01DispatchMcpSearch",
                    "name": "mcp__dispatch__search_issues",
                    "input": {"query": "SSO login"}
                })],
                "tool_use",
            ),
            _ => sse(
                model,
                3,
                &[json!({"type": "text", "text": "Filed and found."})],
                "end_turn",
            ),
        };
        ResponseTemplate::new(200)
            .insert_header("cache-control", "no-cache")
            .set_body_raw(stream, "text/event-stream")
    }
}

async fn fake_api(text_only: bool) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("HEAD"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(Script { text_only })
        .mount(&server)
        .await;
    server
}

async fn message_requests(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .filter_map(|r| serde_json::from_slice(&r.body).ok())
        .collect()
}

/// Runs `claude -p` with the MCP server configured; the stream-json lines it printed.
async fn run_claude(dir: &Path, s: &Server, key: &str, api: &MockServer) -> Vec<Value> {
    let config = dir.join("mcp.json");
    std::fs::write(
        &config,
        json!({"mcpServers": {"dispatch": {
            "type": "http",
            "url": s.url("/api/mcp"),
            "headers": {"Authorization": format!("Bearer {key}")}
        }}})
        .to_string(),
    )
    .expect("mcp config");
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("home");
    let mut cmd = tokio::process::Command::new(claude_bin());
    cmd.args([
        "-p",
        "File the SSO login bug in Dispatch, then check it is there.",
    ])
    .args(["--output-format", "stream-json", "--verbose"])
    .arg("--mcp-config")
    .arg(&config)
    .args(["--strict-mcp-config", "--allowedTools", "mcp__dispatch"])
    .args([
        "--max-turns",
        "5",
        "--model",
        MODEL,
        "--no-session-persistence",
    ])
    .current_dir(dir)
    .env_clear()
    .env("PATH", std::env::var("PATH").unwrap_or_default())
    .env("HOME", &home)
    .env("CLAUDE_CONFIG_DIR", home.join(".claude"))
    .env("CLAUDE_CODE_TMPDIR", dir.join("claude-tmp"))
    .env("ANTHROPIC_BASE_URL", api.uri())
    .env("ANTHROPIC_API_KEY", "test-key")
    .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
    .env("DISABLE_TELEMETRY", "1")
    .env("DISABLE_AUTOUPDATER", "1")
    .env("CLAUDE_CODE_MAX_RETRIES", "0")
    // Wait for the MCP server before the first model request.
    .env("MCP_CONNECTION_NONBLOCKING", "0")
    .env("NO_PROXY", "127.0.0.1,localhost")
    .env("no_proxy", "127.0.0.1,localhost")
    .kill_on_drop(true);
    let out = tokio::time::timeout(RUN_LIMIT, cmd.output())
        .await
        .expect("claude finished in time")
        .expect("claude ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        lines.iter().any(|l| l["type"] == "result"),
        "no result line; exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    lines
}

fn mcp_status(lines: &[Value]) -> Value {
    let init = lines
        .iter()
        .find(|l| l["type"] == "system" && l["subtype"] == "init")
        .expect("an init line");
    init["mcp_servers"]
        .as_array()
        .and_then(|a| a.iter().find(|m| m["name"] == "dispatch"))
        .cloned()
        .unwrap_or_else(|| panic!("dispatch is not among the MCP servers: {init}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_creates_and_finds_an_issue_over_mcp() {
    let s = Server::builder().env("DISPATCH_WORKERS", "false").start();
    let api = fake_api(false).await;
    let dir = s.dir.join("claude");
    std::fs::create_dir_all(&dir).unwrap();
    let lines = run_claude(&dir, &s, &s.api_key, &api).await;

    assert_eq!(
        mcp_status(&lines)["status"],
        "connected",
        "init: {:?}",
        lines.first()
    );
    let init = lines.iter().find(|l| l["subtype"] == "init").unwrap();
    let tools: Vec<&str> = init["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for t in [
        "mcp__dispatch__create_issue",
        "mcp__dispatch__search_issues",
        "mcp__dispatch__dispatch_investigation",
    ] {
        assert!(tools.contains(&t), "{t} offered to the model: {tools:?}");
    }
    let result = lines.iter().find(|l| l["type"] == "result").unwrap();
    assert_eq!(result["subtype"], "success", "{result}");
    assert_eq!(
        result["permission_denials"],
        json!([]),
        "the MCP tools were allowed"
    );

    // The issue exists, made by the agent.
    let (st, issues) = support::get(&s, "/api/issues").await;
    assert_eq!(st, 200);
    let issue = issues
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["title"] == TITLE)
        .unwrap_or_else(|| panic!("no issue {TITLE:?}: {issues}"));
    assert_eq!(issue["priority"], "P2");
    let ident = issue["identifier"].as_str().unwrap();

    // The model saw both tool results: the search found the issue it had just made.
    let requests = message_requests(&api).await;
    let last = requests
        .iter()
        .find(|r| assistant_messages(r) == 2)
        .expect("a request after the search");
    let results: Vec<String> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .filter(|b| b["type"] == "tool_result")
        .map(|b| b["content"].to_string())
        .collect();
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(
        results[0].contains(ident),
        "create_issue answered the identifier: {}",
        results[0]
    );
    assert!(
        results[1].contains(ident) && results[1].contains("similarity"),
        "search_issues found it: {}",
        results[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_shows_the_server_failed() {
    let s = Server::builder().env("DISPATCH_WORKERS", "false").start();
    let api = fake_api(true).await;
    let dir = s.dir.join("claude");
    std::fs::create_dir_all(&dir).unwrap();
    let lines = run_claude(&dir, &s, "not-the-key-0123456789", &api).await;
    assert_eq!(mcp_status(&lines)["status"], "failed");
    let init = lines.iter().find(|l| l["subtype"] == "init").unwrap();
    assert!(
        !init["tools"].to_string().contains("mcp__dispatch__"),
        "no Dispatch tools without the key: {init}"
    );
    let (_, issues) = support::get(&s, "/api/issues").await;
    assert_eq!(issues, json!([]));
}
