//! The real agent end to end: the Claude Code CLI (`@anthropic-ai/claude-code`, installed by
//! `scripts/test`, found through `DISPATCH_TEST_CLAUDE_BIN`) run by the `LocalRunner` against a
//! local fake of the Anthropic Messages API (wiremock on 127.0.0.1, streaming SSE).
//!
//! The fake scripts a two-turn conversation: the first call answers with a `Bash` tool call that
//! writes `.scratch/run-result.json` and `proof.txt` in the worktree and prints the proof; the
//! second call (which carries the `tool_result`) answers with a final text. The reply is chosen
//! by the number of assistant messages in the request, so a retry gets the same answer.
//!
//! Facts about running the CLI offline: `../shared/notes/claude-code-offline.md`.

#![cfg(feature = "local")]

mod gitrepo;

use async_trait::async_trait;
use chrono::Utc;
use dispatch_adapters::local::{DEFAULT_AGENT_COMMAND, LocalConfig, LocalRunner, find_executable};
use dispatch_core::engine::{SpawnOptions, job_inputs};
use dispatch_core::ids::RunId;
use dispatch_core::issue::{Actor, NewIssue};
use dispatch_core::memory::MemoryStore;
use dispatch_core::ports::{IssueStore, RunJob, RunReporter, RunResult, Runner, WorkspaceStore};
use dispatch_core::run::{ActivityType, NewActivity, NewRun, Outcome, RunStatus, WorkflowKind};
use dispatch_core::testkit::fake_anthropic::{assistant_messages, sse};
use dispatch_core::{Dispatch, Result};
use gitrepo::{TempDir, git, git_repo};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Any model name works; a known one gives Claude Code prices to compute the cost from.
const MODEL: &str = "claude-sonnet-4-5-20250929";
const PROOF: &str = "dispatch-e2e-ok";
const TOOL_USE_ID: &str = "toolu_01DispatchE2eProof";
const FINAL_TEXT: &str = "The proof is written and the outcome declared.";
/// What the whole CLI run may take (it takes about a second against the fake).
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// The tool call: declares the outcome (the runner reads that file), writes the proof, prints it.
fn tool_command() -> String {
    let result = json!({
        "outcome": "completed",
        "summary": "e2e",
        "changes_made": true,
        "files_changed": ["proof.txt"],
    });
    format!(
        "printf '%s\\n' '{result}' > .scratch/run-result.json && echo {PROOF} > proof.txt && cat proof.txt"
    )
}

// ---------------------------------------------------------------------------------------------
// The fake Messages API

/// Scripted replies, chosen by how many assistant messages the request already holds.
struct Script;

impl Respond for Script {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = match serde_json::from_slice(&req.body) {
            Ok(b) => b,
            Err(e) => return ResponseTemplate::new(400).set_body_string(format!("bad json: {e}")),
        };
        let model = body["model"].as_str().unwrap_or(MODEL);
        let turns = assistant_messages(&body);
        let stream = if turns == 0 {
            sse(
                model,
                1,
                &[
                    json!({"type": "text", "text": "I'll write the proof file."}),
                    json!({
                        "type": "tool_use",
                        "id": TOOL_USE_ID,
                        "name": "Bash",
                        "input": {"command": tool_command(), "description": "Write the proof"}
                    }),
                ],
                "tool_use",
            )
        } else {
            sse(
                model,
                2,
                &[json!({"type": "text", "text": FINAL_TEXT})],
                "end_turn",
            )
        };
        ResponseTemplate::new(200)
            .insert_header("cache-control", "no-cache")
            .set_body_raw(stream, "text/event-stream")
    }
}

/// The fake API: `HEAD /` answers 200, `POST /v1/messages` plays [`Script`].
async fn fake_api() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("HEAD"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(Script)
        .mount(&server)
        .await;
    server
}

/// The message requests the fake received, as JSON bodies.
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

/// A short list of what the fake saw, for failure messages.
async fn traffic(server: &MockServer) -> String {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let turns = serde_json::from_slice::<Value>(&r.body)
                .map(|b| assistant_messages(&b))
                .unwrap_or(0);
            format!("{} {} ({turns} assistant messages)", r.method, r.url)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------------
// The CLI, the repository and the runner

/// The CLI to run. Missing is a failure, not a skip: `scripts/test` installs it.
fn claude_bin() -> PathBuf {
    let Some(bin) = std::env::var_os("DISPATCH_TEST_CLAUDE_BIN").filter(|b| !b.is_empty()) else {
        panic!(
            "DISPATCH_TEST_CLAUDE_BIN is not set. This test runs the real Claude Code CLI: run \
             `scripts/test` (it installs @anthropic-ai/claude-code into \
             ~/.cache/dispatch-claude-code and sets the variable), or set \
             DISPATCH_TEST_CLAUDE_BIN to a `claude` executable."
        )
    };
    let bin = PathBuf::from(bin);
    find_executable(&bin.to_string_lossy(), None).unwrap_or_else(|| {
        panic!(
            "DISPATCH_TEST_CLAUDE_BIN={} is not an executable file. Run `scripts/test` to install \
             Claude Code, or point the variable at a `claude` executable.",
            bin.display()
        )
    })
}

/// The runner as an operator would configure it (through the `DISPATCH_*` variables): the
/// default command with the real CLI as the program, Bash allowed, at most 5 turns, and an
/// environment that keeps the CLI on the fake API with a throw-away home.
fn runner_config(tmp: &TempDir, repo: &Path, api: &MockServer) -> LocalConfig {
    let bin = claude_bin();
    let rest = DEFAULT_AGENT_COMMAND
        .strip_prefix("claude ")
        .expect("the default command starts with claude");
    let command = format!(
        "'{}' {rest} --allowedTools Bash,Edit,Write --max-turns 5 --model {{model}}",
        bin.display()
    );
    let vars: HashMap<&str, String> = HashMap::from([
        ("DISPATCH_AGENT_COMMAND", command),
        ("DISPATCH_AGENT_MODEL", MODEL.to_string()),
        ("DISPATCH_LOCAL_REPO", repo.display().to_string()),
        (
            "DISPATCH_WORKTREE_DIR",
            tmp.path().join("worktrees").display().to_string(),
        ),
        ("MAX_AGENT_COST_PER_RUN", "5".to_string()),
    ]);
    let mut c = LocalConfig::from_lookup(&|k| vars.get(k).cloned()).expect("config");
    c.timeout = Some(RUN_LIMIT);
    c.kill_grace = Duration::from_millis(500);
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    c.env = [
        ("ANTHROPIC_BASE_URL", api.uri()),
        ("ANTHROPIC_API_KEY", "test-key".to_string()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_string()),
        ("DISABLE_TELEMETRY", "1".to_string()),
        ("DISABLE_AUTOUPDATER", "1".to_string()),
        ("CLAUDE_CODE_MAX_RETRIES", "0".to_string()),
        // A proxy from the developer's shell must not see the loopback calls.
        ("NO_PROXY", "127.0.0.1,localhost".to_string()),
        ("no_proxy", "127.0.0.1,localhost".to_string()),
        ("HOME", home.display().to_string()),
        (
            "CLAUDE_CONFIG_DIR",
            home.join(".claude").display().to_string(),
        ),
        // Its scratch space (else /tmp/claude-<uid>/…, left behind after every run).
        (
            "CLAUDE_CODE_TMPDIR",
            tmp.path().join("claude-tmp").display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    c
}

// ---------------------------------------------------------------------------------------------
// A recording reporter

#[derive(Debug, Clone)]
enum Ev {
    Started,
    Terminal(String),
    Activity(NewActivity),
    Finish(Box<RunResult>),
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Ev>>,
}

impl Recorder {
    fn push(&self, e: Ev) {
        self.events.lock().expect("lock").push(e);
    }
    fn events(&self) -> Vec<Ev> {
        self.events.lock().expect("lock").clone()
    }
    fn chunks(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Ev::Terminal(c) => Some(c),
                _ => None,
            })
            .collect()
    }
    fn transcript(&self) -> String {
        self.chunks().concat()
    }
    fn finished(&self) -> Option<RunResult> {
        self.events().into_iter().find_map(|e| match e {
            Ev::Finish(r) => Some(*r),
            _ => None,
        })
    }
}

#[async_trait]
impl RunReporter for Recorder {
    async fn started(&self, _: RunId, _: Option<String>, _: Option<String>) -> Result<()> {
        self.push(Ev::Started);
        Ok(())
    }
    async fn terminal(&self, _: RunId, content: &str) -> Result<()> {
        self.push(Ev::Terminal(content.to_string()));
        Ok(())
    }
    async fn activity(&self, _: RunId, activity: NewActivity) -> Result<()> {
        self.push(Ev::Activity(activity));
        Ok(())
    }
    async fn finish(&self, _: RunId, result: RunResult) -> Result<()> {
        self.push(Ev::Finish(Box::new(result)));
        Ok(())
    }
}

async fn error_fix_job() -> RunJob {
    let store = MemoryStore::new();
    let now = Utc::now();
    let ws = store
        .ensure_workspace("Acme", "ACME", now)
        .await
        .expect("workspace");
    let mut new = NewIssue::titled("TypeError: cannot read properties of undefined");
    new.description = Some("**Source:** `checkout`\nIt crashes.".into());
    let issue = store
        .create_issue(ws.id, new, &Actor::user("test"), now, &Default::default())
        .await
        .expect("issue");
    let run = NewRun {
        issue_id: issue.id,
        kind: WorkflowKind::ErrorFix,
        additional_context: None,
        force: false,
        requested_by: "test".into(),
    }
    .into_run(now);
    let inputs = job_inputs(&run, &issue, None);
    RunJob { run, issue, inputs }
}

fn assert_in_order(text: &str, needles: &[&str]) {
    let mut from = 0;
    for n in needles {
        match text[from..].find(n) {
            Some(i) => from += i + n.len(),
            None => panic!("{n:?} missing or out of order in:\n{text}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

/// The runner with a recording reporter: the tool really runs in the worktree, its output
/// streams as chunks in order, and the result carries turns, cost and model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_runs_a_tool_in_the_worktree_and_reports_the_run() {
    let tmp = TempDir::new("runner");
    let repo = git_repo(&tmp);
    let api = fake_api().await;
    let runner = LocalRunner::new(runner_config(&tmp, &repo, &api));
    runner.preflight().expect("preflight");
    let job = error_fix_job().await;
    let run = job.run.clone();
    let rec = Arc::new(Recorder::default());

    let t0 = Instant::now();
    runner.dispatch(job, rec.clone()).await.expect("dispatch");
    let result = loop {
        if let Some(r) = rec.finished() {
            break r;
        }
        if t0.elapsed() > RUN_LIMIT + Duration::from_secs(5) {
            panic!(
                "the run did not finish in {RUN_LIMIT:?}.\nAPI traffic:\n{}\nTranscript:\n{}",
                traffic(&api).await,
                rec.transcript()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = t0.elapsed();
    let transcript = rec.transcript();
    let calls = traffic(&api).await;
    eprintln!(
        "claude run took {took:?}\n--- API traffic ---\n{calls}\n--- transcript ---\n{transcript}--- end ---"
    );
    let context = format!("API traffic:\n{calls}\nTranscript:\n{transcript}");

    // The tool really ran in the worktree.
    let workdir = runner.workdir(run.id).expect("workdir");
    let proof = std::fs::read_to_string(workdir.join("proof.txt"))
        .unwrap_or_else(|e| panic!("proof.txt is not in the worktree ({e}).\n{context}"));
    assert_eq!(proof, format!("{PROOF}\n"));
    assert!(
        !repo.join("proof.txt").exists(),
        "the agent worked in the worktree, not the main checkout"
    );

    // Its output streamed through the reporter, rendered by the stream filter, in order.
    assert_in_order(
        &transcript,
        &[
            "[DISPATCH] error_fix run for ACME-1 started",
            &format!("[INIT] model={MODEL} "),
            "I'll write the proof file.\n",
            "[TOOL] Bash(command=printf ",
            &format!("[RESULT] {PROOF}\n"),
            &format!("{FINAL_TEXT}\n"),
            "[COMPLETED] Cost: $",
            "Turns: 2\n",
            "[DISPATCH] Committed the changes the agent left uncommitted\n",
            "[DISPATCH] Run ended: completed (outcome completed)",
        ],
    );
    assert!(
        !transcript.contains("[ERROR]") && !transcript.contains("[stderr]"),
        "{context}"
    );
    assert!(rec.chunks().iter().all(|c| c.ends_with('\n')));

    // The conversation: two calls, the second carrying the tool's output back.
    let requests = message_requests(&api).await;
    assert_eq!(requests.len(), 2, "{context}");
    assert_eq!(requests[0]["model"], MODEL);
    assert_eq!(requests[0]["stream"], true);
    let tool_result = requests[1]["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "user")
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .find(|b| b["type"] == "tool_result" && b["tool_use_id"] == TOOL_USE_ID)
        .unwrap_or_else(|| panic!("no tool_result in the second request.\n{context}"));
    assert!(
        tool_result.to_string().contains(PROOF),
        "the tool's output went back to the model: {tool_result}"
    );
    assert_ne!(tool_result["is_error"], true, "{tool_result}");

    // The result: the declared outcome, turns, cost and model from the CLI's `result` line.
    assert_eq!(result.status, Some(RunStatus::Completed), "{context}");
    assert_eq!(result.outcome, Some(Outcome::Completed));
    assert_eq!(result.summary.as_deref(), Some("e2e"));
    assert_eq!(result.files_changed, Some(vec!["proof.txt".to_string()]));
    assert!(result.num_turns.is_some_and(|t| t >= 2), "{result:?}");
    assert!(result.cost_usd.is_some_and(|c| c > 0.0), "{result:?}");
    assert_eq!(result.model.as_deref(), Some(MODEL));
    assert!(result.tokens_used.is_some_and(|t| t > 0), "{result:?}");

    // The proof was committed on the run's branch.
    let branch = git(&workdir, &["rev-parse", "--abbrev-ref", "HEAD"]);
    assert!(branch.starts_with("dispatch/acme-1-"), "{branch}");
    assert_eq!(git(&workdir, &["show", "HEAD:proof.txt"]), PROOF);
    let done: Vec<_> = rec
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Ev::Activity(a) => Some(a.kind),
            _ => None,
        })
        .collect();
    assert_eq!(done, vec![ActivityType::InvestigationComplete]);
    assert!(matches!(rec.events().first(), Some(Ev::Started)));
}

/// Through the engine: the dispatcher starts the real CLI and the run record ends up with the
/// status, turns, cost and model, and the transcript with the tool's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_records_a_real_claude_code_run() {
    let tmp = TempDir::new("engine");
    let repo = git_repo(&tmp);
    let api = fake_api().await;
    let runner = Arc::new(LocalRunner::new(runner_config(&tmp, &repo, &api)));
    let d = Dispatch::builder(Arc::new(MemoryStore::new()), runner.clone())
        .build()
        .await
        .expect("engine");
    let actor = Actor::user("ann");
    let issue = d
        .create_issue(NewIssue::titled("Checkout fails"), &actor)
        .await
        .expect("issue");
    let mut opts = SpawnOptions::new(WorkflowKind::ErrorFix);
    opts.force = true;
    let run_id = d
        .spawn(issue.id, opts, &actor)
        .await
        .expect("spawn")
        .into_result()
        .expect("allowed");
    assert_eq!(d.dispatcher_step().await.expect("dispatch"), 1);
    let start = Instant::now();
    let run = loop {
        let run = d
            .runs(issue.id)
            .await
            .expect("runs")
            .into_iter()
            .find(|r| r.id == run_id)
            .expect("run");
        if run.status.is_terminal() {
            break run;
        }
        if start.elapsed() > RUN_LIMIT + Duration::from_secs(5) {
            panic!(
                "the run never ended.\nAPI traffic:\n{}\nTranscript:\n{}",
                traffic(&api).await,
                d.transcript(run_id).await.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let transcript = d.transcript(run_id).await.expect("transcript");
    let context = format!(
        "API traffic:\n{}\nTranscript:\n{transcript}",
        traffic(&api).await
    );
    assert_eq!(run.status, RunStatus::Completed, "{context}");
    assert_eq!(run.outcome, Some(Outcome::Completed));
    assert!(run.num_turns >= 2, "turns {}", run.num_turns);
    assert!(run.cost_usd > 0.0, "cost {}", run.cost_usd);
    assert_eq!(run.model.as_deref(), Some(MODEL));
    assert_eq!(run.runner.as_deref(), Some("local"));
    assert_in_order(
        &transcript,
        &[
            "[TOOL] Bash(command=",
            &format!("[RESULT] {PROOF}\n"),
            "[COMPLETED] Cost: $",
        ],
    );
    let workdir = runner.workdir(run_id).expect("workdir");
    assert_eq!(
        std::fs::read_to_string(workdir.join("proof.txt")).expect("proof.txt"),
        format!("{PROOF}\n")
    );
}
