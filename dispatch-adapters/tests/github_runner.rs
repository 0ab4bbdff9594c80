//! `GithubActionsRunner` against a local fake of the GitHub REST API (wiremock), answering with
//! GitHub's real payload shapes (`tests/fixtures/github/`, copied from the shared fixture set).

#![cfg(feature = "github")]

use async_trait::async_trait;
use chrono::Utc;
use dispatch_adapters::github::{
    DiscoveryPolicy, GithubActionsRunner, GithubConfig, RetryPolicy, remote_status,
};
use dispatch_core::engine::job_inputs;
use dispatch_core::ids::RunId;
use dispatch_core::issue::{Actor, Issue, NewIssue};
use dispatch_core::memory::MemoryStore;
use dispatch_core::ports::{
    DispatchReceipt, IssueStore, RemoteRunStatus, RunJob, RunReporter, RunResult, Runner,
    WorkspaceStore,
};
use dispatch_core::run::{NewActivity, NewRun, Run, WorkflowKind};
use dispatch_core::{Error, ErrorKind, Result};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "ghp_test0123456789abcdefTOKEN";
const OWNER: &str = "octo-org";
const REPO: &str = "octo-repo";
const RUNS_LIST: &str = include_str!("fixtures/github/actions-runs-list.json");
const DISPATCH_REQUEST: &str = include_str!("fixtures/github/workflow-dispatch.request.json");
const DISPATCH_RESPONSE: &str = include_str!("fixtures/github/workflow-dispatch.response-200.json");
/// The run id in the fixtures.
const GH_RUN: u64 = 289782451;
const DISPATCHES: &str =
    "/repos/octo-org/octo-repo/actions/workflows/auto-investigate.yml/dispatches";
const RUNS: &str = "/repos/octo-org/octo-repo/actions/workflows/auto-investigate.yml/runs";

struct NoReporter;

#[async_trait]
impl RunReporter for NoReporter {
    async fn started(&self, _: RunId, _: Option<String>, _: Option<String>) -> Result<()> {
        Ok(())
    }
    async fn terminal(&self, _: RunId, _: &str) -> Result<()> {
        Ok(())
    }
    async fn activity(&self, _: RunId, _: NewActivity) -> Result<()> {
        Ok(())
    }
    async fn finish(&self, _: RunId, _: RunResult) -> Result<()> {
        Ok(())
    }
}

fn reporter() -> Arc<dyn RunReporter> {
    Arc::new(NoReporter)
}

/// Fast policies so retries and discovery take milliseconds.
fn config(api_url: &str) -> GithubConfig {
    let mut c = GithubConfig::new(TOKEN, OWNER, REPO);
    c.api_url = api_url.to_string();
    c.request_timeout = Duration::from_secs(5);
    c.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_retry_after: Duration::from_secs(3),
    };
    c.discovery = DiscoveryPolicy {
        attempts: 3,
        delay: Duration::from_millis(5),
        ..DiscoveryPolicy::default()
    };
    c
}

fn runner(cfg: GithubConfig) -> GithubActionsRunner {
    GithubActionsRunner::new(cfg).expect("runner")
}

/// An issue made through the in-memory store, and an error-fix run of it with the engine's inputs.
async fn job() -> RunJob {
    let store = MemoryStore::new();
    let now = Utc::now();
    let ws = store
        .ensure_workspace("Acme", "ACME", now)
        .await
        .expect("workspace");
    let mut new = NewIssue::titled("TypeError: cannot read properties of undefined");
    new.description = Some("**Source:** `checkout`\n**Feature:** `payment`".into());
    let issue: Issue = store
        .create_issue(ws.id, new, &Actor::user("test"), now, &Default::default())
        .await
        .expect("issue");
    let run: Run = NewRun {
        issue_id: issue.id,
        kind: WorkflowKind::ErrorFix,
        additional_context: Some("Started after the 2.3 deploy".into()),
        force: false,
        requested_by: "test".into(),
    }
    .into_run(now);
    let inputs = job_inputs(&run, &issue, None);
    RunJob { run, issue, inputs }
}

fn inputs_json(job: &RunJob) -> Value {
    serde_json::to_value(&job.inputs).expect("inputs")
}

/// The dispatch body, built on the shape of the fixture request (`{ref, inputs, return_run_details}`).
fn dispatch_body(job: &RunJob, with_details: bool) -> Value {
    let mut body: Value = serde_json::from_str(DISPATCH_REQUEST).expect("fixture");
    body["ref"] = json!("main");
    body["inputs"] = inputs_json(job);
    if !with_details {
        body.as_object_mut()
            .expect("object")
            .remove("return_run_details");
    }
    body
}

/// A workflow run in GitHub's shape (the fixture's run), renamed and re-stated.
fn gh_run(id: u64, title: &str, status: &str, conclusion: Option<&str>) -> Value {
    let list: Value = serde_json::from_str(RUNS_LIST).expect("fixture");
    let mut r = list["workflow_runs"][0].clone();
    r["id"] = json!(id);
    r["name"] = json!("Auto Investigate");
    r["display_title"] = json!(title);
    r["event"] = json!("workflow_dispatch");
    r["status"] = json!(status);
    r["conclusion"] = json!(conclusion);
    r["html_url"] = json!(format!(
        "https://github.com/octo-org/octo-repo/actions/runs/{id}"
    ));
    r
}

/// The run our workflow starts for `job`: its `run-name` carries the dispatch_run_id.
fn our_run(job: &RunJob) -> Value {
    gh_run(
        GH_RUN,
        &format!("Auto Investigate {} [{}]", job.issue.identifier, job.run.id),
        "in_progress",
        None,
    )
}

/// Someone else's run of the same workflow, to show the match is by our id.
fn other_run() -> Value {
    gh_run(
        1111,
        &format!("Auto Investigate ACME-9 [{}]", RunId::new()),
        "completed",
        Some("success"),
    )
}

fn list_of(runs: Vec<Value>) -> Value {
    let mut list: Value = serde_json::from_str(RUNS_LIST).expect("fixture");
    list["total_count"] = json!(runs.len());
    list["workflow_runs"] = Value::Array(runs);
    list
}

fn created_since(job: &RunJob) -> String {
    let since = job.run.created_at - chrono::Duration::seconds(600);
    format!(">={}", since.format("%Y-%m-%dT%H:%M:%SZ"))
}

/// The run list answering `n` times (all further times when `None`).
async fn mount_runs(
    server: &MockServer,
    job: &RunJob,
    runs: Vec<Value>,
    times: Option<u64>,
    prio: u8,
) {
    let mut m = Mock::given(method("GET"))
        .and(path(RUNS))
        .and(query_param("event", "workflow_dispatch"))
        .and(query_param("created", created_since(job)))
        .and(query_param("per_page", "100"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(list_of(runs)))
        .with_priority(prio);
    if let Some(n) = times {
        m = m.up_to_n_times(n);
    }
    m.mount(server).await;
}

fn dispatched_200() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(
        DISPATCH_RESPONSE.as_bytes().to_vec(),
        "application/json; charset=utf-8",
    )
}

fn gh_error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "message": message,
        "documentation_url": "https://docs.github.com/rest/actions/workflows#create-a-workflow-dispatch-event",
        "status": status.to_string(),
    }))
}

fn expected_receipt() -> DispatchReceipt {
    DispatchReceipt {
        external_id: Some(GH_RUN.to_string()),
        external_url: Some(format!(
            "https://github.com/octo-org/octo-repo/actions/runs/{GH_RUN}"
        )),
    }
}

fn expect_err<T: std::fmt::Debug>(r: Result<T>, what: &str) -> Error {
    match r {
        Ok(v) => panic!("{what}: expected an error, got {v:?}"),
        Err(e) => e,
    }
}

fn assert_mentions(e: &Error, parts: &[&str]) {
    let text = e.to_string();
    for p in parts {
        assert!(text.contains(p), "error {text:?} should mention {p:?}");
    }
    assert!(
        !text.contains(TOKEN),
        "error must not show the token: {text}"
    );
}

// ---------------------------------------------------------------------------------------------
// dispatch

#[tokio::test]
async fn dispatch_sends_exact_body_and_headers_and_records_the_run_from_200() {
    let server = MockServer::start().await;
    let job = job().await;
    mount_runs(&server, &job, vec![other_run()], None, 5).await;
    Mock::given(method("POST"))
        .and(path(DISPATCHES))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("accept", "application/vnd.github+json"))
        .and(header("x-github-api-version", "2022-11-28"))
        .and(header("content-type", "application/json"))
        .and(header(
            "user-agent",
            concat!("dispatch/", env!("CARGO_PKG_VERSION")),
        ))
        .and(body_json(dispatch_body(&job, true)))
        .respond_with(dispatched_200())
        .expect(1)
        .mount(&server)
        .await;

    let receipt = runner(config(&server.uri()))
        .dispatch(job.clone(), reporter())
        .await
        .expect("dispatch");
    assert_eq!(receipt, expected_receipt());

    // The §7.2 inputs of an error-fix run, plus our run id; nothing else.
    let requests = server.received_requests().await.expect("recording");
    let post = requests
        .iter()
        .find(|r| r.method.as_str() == "POST")
        .expect("a dispatch");
    let body: Value = post.body_json().expect("json body");
    let mut keys: Vec<&str> = body["inputs"]
        .as_object()
        .expect("inputs")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "additional_context",
            "description",
            "dispatch_run_id",
            "error_fingerprint",
            "error_message",
            "feature",
            "issue_id",
            "issue_identifier",
            "source",
            "stack_trace",
            "title",
        ]
    );
    assert_eq!(
        body["inputs"]["dispatch_run_id"],
        json!(job.run.id.to_string())
    );
    assert_eq!(body["ref"], json!("main"));
}

#[tokio::test]
async fn dispatch_uses_ref_override_and_callback_url() {
    let server = MockServer::start().await;
    let job = job().await;
    let mut body = dispatch_body(&job, true);
    body["ref"] = json!("staging");
    body["inputs"]["callback_url"] = json!("https://tunnel.example.test");
    Mock::given(method("POST"))
        .and(path(
            "/repos/octo-org/octo-repo/actions/workflows/custom-fix.yml/dispatches",
        ))
        .and(body_json(body))
        .respond_with(dispatched_200())
        .expect(1)
        .mount(&server)
        .await;
    // The pre-check lists the overriding workflow's runs.
    Mock::given(method("GET"))
        .and(path(
            "/repos/octo-org/octo-repo/actions/workflows/custom-fix.yml/runs",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(list_of(vec![])))
        .expect(1)
        .mount(&server)
        .await;

    let vars: HashMap<&str, String> = HashMap::from([
        ("GITHUB_TOKEN", TOKEN.to_string()),
        ("GITHUB_REPO", "octo-org/octo-repo".to_string()),
        ("GITHUB_REF", "staging".to_string()),
        ("GITHUB_WORKFLOW_ID", "custom-fix.yml".to_string()),
        (
            "DISPATCH_CALLBACK_URL",
            "https://tunnel.example.test".to_string(),
        ),
        ("GITHUB_API_URL", server.uri()),
    ]);
    let mut cfg = GithubConfig::from_lookup(&|k| vars.get(k).cloned())
        .expect("config")
        .expect("configured");
    cfg.retry = config(&server.uri()).retry;
    let receipt = runner(cfg)
        .dispatch(job, reporter())
        .await
        .expect("dispatch");
    assert_eq!(receipt, expected_receipt());
}

#[tokio::test]
async fn dispatch_answered_204_finds_the_run_by_dispatch_run_id() {
    let server = MockServer::start().await;
    let job = job().await;
    // Before the dispatch: only someone else's run. Afterwards: ours shows up on the 2nd look.
    mount_runs(&server, &job, vec![other_run()], Some(2), 1).await;
    mount_runs(&server, &job, vec![other_run(), our_run(&job)], None, 5).await;
    Mock::given(method("POST"))
        .and(path(DISPATCHES))
        .and(body_json(dispatch_body(&job, true)))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;

    let receipt = runner(config(&server.uri()))
        .dispatch(job, reporter())
        .await
        .expect("dispatch");
    assert_eq!(receipt, expected_receipt());
}

#[tokio::test]
async fn enterprise_server_rejecting_return_run_details_is_retried_without_it() {
    let server = MockServer::start().await;
    let job = job().await;
    let ghes_runs = "/api/v3/repos/octo-org/octo-repo/actions/workflows/auto-investigate.yml/runs";
    let ghes_dispatches =
        "/api/v3/repos/octo-org/octo-repo/actions/workflows/auto-investigate.yml/dispatches";
    Mock::given(method("GET"))
        .and(path(ghes_runs))
        .respond_with(ResponseTemplate::new(200).set_body_json(list_of(vec![])))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(ghes_runs))
        .respond_with(ResponseTemplate::new(200).set_body_json(list_of(vec![our_run(&job)])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(ghes_dispatches))
        .and(body_json(dispatch_body(&job, true)))
        .respond_with(gh_error(
            422,
            "Invalid request.\n\n\"return_run_details\" is not a permitted key.",
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(ghes_dispatches))
        .and(body_json(dispatch_body(&job, false)))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;

    let r = runner(config(&format!("{}/api/v3/", server.uri())));
    let receipt = r.dispatch(job.clone(), reporter()).await.expect("dispatch");
    assert_eq!(receipt, expected_receipt());

    // The runner remembers: the next dispatch goes without the parameter at once.
    let mut job2 = job.clone();
    job2.run = NewRun {
        issue_id: job.issue.id,
        kind: WorkflowKind::ErrorFix,
        additional_context: None,
        force: false,
        requested_by: "test".into(),
    }
    .into_run(job.run.created_at);
    job2.inputs
        .insert("dispatch_run_id".into(), job2.run.id.to_string());
    // Same inputs as job 1 except the run id: accept that body too.
    Mock::given(method("POST"))
        .and(path(ghes_dispatches))
        .and(body_json(dispatch_body(&job2, false)))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let receipt2 = r.dispatch(job2, reporter()).await.expect("second dispatch");
    // Its run never shows up in the fake's list: the dispatch still counts as done.
    assert_eq!(receipt2, DispatchReceipt::default());
}

#[tokio::test]
async fn dispatch_retries_502_then_succeeds() {
    let server = MockServer::start().await;
    let job = job().await;
    mount_runs(&server, &job, vec![other_run()], None, 5).await;
    Mock::given(method("POST"))
        .and(path(DISPATCHES))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>Bad Gateway</html>"))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(DISPATCHES))
        .and(body_json(dispatch_body(&job, true)))
        .respond_with(dispatched_200())
        .expect(1)
        .mount(&server)
        .await;

    let receipt = runner(config(&server.uri()))
        .dispatch(job, reporter())
        .await
        .expect("dispatch");
    assert_eq!(receipt, expected_receipt());
}

#[tokio::test]
async fn dispatch_does_not_repeat_a_502_that_had_started_the_run() {
    let server = MockServer::start().await;
    let job = job().await;
    // GitHub started the workflow but the answer was lost behind a 502.
    mount_runs(&server, &job, vec![], Some(1), 1).await;
    mount_runs(&server, &job, vec![our_run(&job)], None, 5).await;
    Mock::given(method("POST"))
        .and(path(DISPATCHES))
        .and(body_json(dispatch_body(&job, true)))
        .respond_with(ResponseTemplate::new(502))
        .expect(1)
        .mount(&server)
        .await;

    let receipt = runner(config(&server.uri()))
        .dispatch(job, reporter())
        .await
        .expect("dispatch");
    assert_eq!(receipt, expected_receipt());
}

#[tokio::test]
async fn dispatch_does_not_repeat_a_timed_out_request_that_had_started_the_run() {
    let server = MockServer::start().await;
    let job = job().await;
    mount_runs(&server, &job, vec![], Some(1), 1).await;
    mount_runs(&server, &job, vec![our_run(&job)], None, 5).await;
    Mock::given(method("POST"))
        .and(path(DISPATCHES))
        .respond_with(dispatched_200().set_delay(Duration::from_millis(1500)))
        .expect(1)
        .mount(&server)
        .await;

    let mut cfg = config(&server.uri());
    cfg.request_timeout = Duration::from_millis(300);
    let receipt = runner(cfg)
        .dispatch(job, reporter())
        .await
        .expect("dispatch");
    assert_eq!(receipt, expected_receipt());
}

#[tokio::test]
async fn dispatch_is_idempotent_by_dispatch_run_id_across_calls() {
    let server = MockServer::start().await;
    let job = job().await;
    mount_runs(&server, &job, vec![other_run()], Some(1), 1).await;
    mount_runs(&server, &job, vec![other_run(), our_run(&job)], None, 5).await;
    Mock::given(method("POST"))
        .and(path(DISPATCHES))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;

    let r = runner(config(&server.uri()));
    let first = r.dispatch(job.clone(), reporter()).await.expect("first");
    // The dispatcher retries the same run (say its bookkeeping failed): no second agent.
    let second = r.dispatch(job, reporter()).await.expect("second");
    assert_eq!(first, expected_receipt());
    assert_eq!(second, expected_receipt());
}

#[tokio::test]
async fn dispatch_5xx_every_time_is_a_retryable_upstream_error() {
    let server = MockServer::start().await;
    let job = job().await;
    mount_runs(&server, &job, vec![], None, 5).await;
    Mock::given(method("POST"))
        .and(path(DISPATCHES))
        .respond_with(gh_error(503, "Service Unavailable"))
        .expect(3)
        .mount(&server)
        .await;

    let e = expect_err(
        runner(config(&server.uri()))
            .dispatch(job, reporter())
            .await,
        "dispatch",
    );
    assert_eq!(
        e.kind,
        ErrorKind::Upstream {
            service: "github".into(),
            status: 503
        }
    );
    assert!(e.kind.is_retryable());
    assert_mentions(
        &e,
        &["auto-investigate.yml", "Service Unavailable", "3 attempts"],
    );
}

// ---------------------------------------------------------------------------------------------
// errors that say what to fix

#[tokio::test]
async fn error_401_says_the_token_was_rejected() {
    let server = MockServer::start().await;
    let job = job().await;
    Mock::given(method("GET"))
        .and(path(RUNS))
        .respond_with(gh_error(401, "Bad credentials"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(dispatched_200())
        .expect(0)
        .mount(&server)
        .await;

    let e = expect_err(
        runner(config(&server.uri()))
            .dispatch(job, reporter())
            .await,
        "dispatch",
    );
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert!(!e.kind.is_retryable());
    assert_mentions(&e, &["GITHUB_TOKEN", "Bad credentials", "`workflow`"]);
}

#[tokio::test]
async fn error_403_says_the_workflow_permission_is_missing() {
    let server = MockServer::start().await;
    let job = job().await;
    mount_runs(&server, &job, vec![], None, 5).await;
    Mock::given(method("POST"))
        .and(path(DISPATCHES))
        .respond_with(gh_error(
            403,
            "Resource not accessible by personal access token",
        ))
        .expect(1)
        .mount(&server)
        .await;

    let e = expect_err(
        runner(config(&server.uri()))
            .dispatch(job, reporter())
            .await,
        "dispatch",
    );
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert_mentions(
        &e,
        &[
            "`workflow` scope",
            "Actions: read and write",
            "octo-org/octo-repo",
            "Resource not accessible by personal access token",
        ],
    );
}

#[tokio::test]
async fn error_404_says_the_workflow_file_is_missing() {
    let server = MockServer::start().await;
    let job = job().await;
    Mock::given(method("GET"))
        .and(path(RUNS))
        .respond_with(gh_error(404, "Not Found"))
        .expect(1)
        .mount(&server)
        .await;

    let e = expect_err(
        runner(config(&server.uri()))
            .dispatch(job, reporter())
            .await,
        "dispatch",
    );
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_mentions(
        &e,
        &[
            "workflow file auto-investigate.yml not found in octo-org/octo-repo at ref main",
            "cannot see the repository",
            "GITHUB_WORKFLOW_ID",
        ],
    );
}

#[tokio::test]
async fn error_422_quotes_github_and_asks_to_declare_every_input() {
    let server = MockServer::start().await;
    let job = job().await;
    mount_runs(&server, &job, vec![], None, 5).await;
    // Rejected with and without return_run_details: a job input the workflow lacks (not one of
    // Dispatch's own, which are left out instead) is the problem.
    Mock::given(method("POST"))
        .and(path(DISPATCHES))
        .and(body_json(dispatch_body(&job, true)))
        .respond_with(gh_error(
            422,
            "Unexpected inputs provided: [\"issue_identifier\"]",
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(DISPATCHES))
        .and(body_json(dispatch_body(&job, false)))
        .respond_with(gh_error(
            422,
            "Unexpected inputs provided: [\"issue_identifier\"]",
        ))
        .expect(1)
        .mount(&server)
        .await;

    let e = expect_err(
        runner(config(&server.uri()))
            .dispatch(job, reporter())
            .await,
        "dispatch",
    );
    assert_eq!(e.field(), Some("inputs"));
    assert!(!e.kind.is_retryable());
    assert_mentions(
        &e,
        &[
            r#"GitHub said "Unexpected inputs provided: ["issue_identifier"]""#,
            "must be declared under `on.workflow_dispatch.inputs` in auto-investigate.yml",
            "dispatch_run_id",
        ],
    );
}

/// A workflow as installed from the original: it declares the job's inputs but not Dispatch's
/// own. Like GitHub, a dispatch with an undeclared input is refused with 422 "Unexpected inputs
/// provided: [...]" (the undeclared names, as a JSON list); otherwise the run is created (204,
/// the answer without run details).
struct OldWorkflow {
    declared: Vec<String>,
}

impl wiremock::Respond for OldWorkflow {
    fn respond(&self, req: &wiremock::Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).expect("dispatch body");
        let unexpected: Vec<String> = body["inputs"]
            .as_object()
            .expect("inputs")
            .keys()
            .filter(|k| !self.declared.contains(k))
            .cloned()
            .collect();
        if unexpected.is_empty() {
            ResponseTemplate::new(204)
        } else {
            gh_error(
                422,
                &format!(
                    "Unexpected inputs provided: {}",
                    serde_json::to_string(&unexpected).expect("names")
                ),
            )
        }
    }
}

/// A run of the old workflow (its name does not carry our id), created `secs` from now.
fn old_run(id: u64, secs: i64) -> Value {
    let mut r = gh_run(id, "Auto Investigate", "queued", None);
    r["created_at"] = json!(
        (Utc::now() + chrono::Duration::seconds(secs))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    );
    r
}

#[tokio::test]
async fn old_workflow_without_our_inputs_is_dispatched_without_them_and_its_run_found_by_time() {
    let server = MockServer::start().await;
    let first = job().await;
    let second = job().await;
    let declared: Vec<String> = first
        .inputs
        .keys()
        .filter(|k| *k != "dispatch_run_id")
        .cloned()
        .collect();
    // The lookups by dispatch_run_id (before each dispatch) find nothing.
    mount_runs(&server, &first, vec![], None, 1).await;
    mount_runs(&server, &second, vec![], None, 1).await;
    // The lookup by time: an older run (before our request) and two new ones.
    Mock::given(method("GET"))
        .and(path(RUNS))
        .and(query_param("event", "workflow_dispatch"))
        .respond_with(ResponseTemplate::new(200).set_body_json(list_of(vec![
            old_run(501, 30),
            old_run(502, 40),
            old_run(400, -3600),
        ])))
        .with_priority(10)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(DISPATCHES))
        .respond_with(OldWorkflow { declared })
        .mount(&server)
        .await;
    let mut cfg = config(&server.uri());
    cfg.callback_url = Some("https://tunnel.example.test".into());
    let runner = runner(cfg);

    let receipt = runner.dispatch(first, reporter()).await.expect("dispatch");
    assert_eq!(
        receipt.external_id.as_deref(),
        Some("502"),
        "the newest run after our request"
    );
    // The second dispatch goes straight to the old form and takes the run not taken yet.
    let receipt = runner.dispatch(second, reporter()).await.expect("dispatch");
    assert_eq!(receipt.external_id.as_deref(), Some("501"));

    let posts: Vec<Value> = server
        .received_requests()
        .await
        .expect("recorded")
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| serde_json::from_slice(&r.body).expect("json"))
        .collect();
    assert_eq!(
        posts.len(),
        3,
        "one refused dispatch, then one per run: {posts:?}"
    );
    assert!(posts[0]["inputs"].get("dispatch_run_id").is_some());
    assert!(posts[0]["inputs"].get("callback_url").is_some());
    for p in &posts[1..] {
        assert!(p["inputs"].get("dispatch_run_id").is_none(), "{p}");
        assert!(p["inputs"].get("callback_url").is_none(), "{p}");
        assert!(p["inputs"].get("issue_identifier").is_some(), "{p}");
    }
}

#[tokio::test]
async fn spent_rate_limit_is_rate_limited_with_the_reset_time_and_stops_calls() {
    let server = MockServer::start().await;
    let job = job().await;
    mount_runs(&server, &job, vec![], None, 5).await;
    let reset = Utc::now().timestamp() + 3600;
    Mock::given(method("POST"))
        .and(path(DISPATCHES))
        .respond_with(
            gh_error(403, "API rate limit exceeded for user ID 1.")
                .insert_header("x-ratelimit-limit", "5000")
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-used", "5000")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str()),
        )
        .expect(1)
        .mount(&server)
        .await;

    let r = runner(config(&server.uri()));
    let e = expect_err(r.dispatch(job.clone(), reporter()).await, "dispatch");
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert!(e.kind.is_retryable());
    let reset_at = chrono::DateTime::from_timestamp(reset, 0)
        .expect("time")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_mentions(&e, &["rate limit", &reset_at]);

    // Until the reset nothing is sent: the next call fails at once without a request.
    let before = server.received_requests().await.expect("recording").len();
    let e2 = expect_err(r.dispatch(job, reporter()).await, "dispatch again");
    assert_eq!(e2.kind, ErrorKind::RateLimited);
    assert_mentions(&e2, &[&reset_at]);
    assert_eq!(
        server.received_requests().await.expect("recording").len(),
        before
    );
}

#[tokio::test]
async fn retry_after_of_a_secondary_rate_limit_is_waited_out() {
    let server = MockServer::start().await;
    let job = job().await;
    mount_runs(&server, &job, vec![], None, 5).await;
    Mock::given(method("POST"))
        .and(path(DISPATCHES))
        .respond_with(
            gh_error(429, "You have exceeded a secondary rate limit.")
                .insert_header("retry-after", "1"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(DISPATCHES))
        .respond_with(dispatched_200())
        .expect(1)
        .mount(&server)
        .await;

    let started = Instant::now();
    let receipt = runner(config(&server.uri()))
        .dispatch(job, reporter())
        .await
        .expect("dispatch");
    assert_eq!(receipt, expected_receipt());
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn retry_after_longer_than_the_cap_is_rate_limited_at_once() {
    let server = MockServer::start().await;
    let job = job().await;
    mount_runs(&server, &job, vec![], None, 5).await;
    Mock::given(method("POST"))
        .and(path(DISPATCHES))
        .respond_with(
            gh_error(403, "You have exceeded a secondary rate limit.")
                .insert_header("retry-after", "120"),
        )
        .expect(1)
        .mount(&server)
        .await;

    let e = expect_err(
        runner(config(&server.uri()))
            .dispatch(job, reporter())
            .await,
        "dispatch",
    );
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_mentions(&e, &["secondary rate limit", "wait 120 s"]);
}

#[tokio::test]
async fn listing_runs_retries_5xx_and_connection_errors_are_retryable() {
    let server = MockServer::start().await;
    let job = job().await;
    Mock::given(method("GET"))
        .and(path(RUNS))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .with_priority(1)
        .expect(2)
        .mount(&server)
        .await;
    mount_runs(&server, &job, vec![our_run(&job)], None, 5).await;
    let receipt = runner(config(&server.uri()))
        .dispatch(job.clone(), reporter())
        .await
        .expect("dispatch");
    assert_eq!(receipt, expected_receipt());

    // Nothing listens on this port any more.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let e = expect_err(
        runner(config(&format!("http://{dead}")))
            .dispatch(job, reporter())
            .await,
        "dispatch",
    );
    assert_eq!(
        e.kind,
        ErrorKind::Upstream {
            service: "github".into(),
            status: 0
        }
    );
    assert!(e.kind.is_retryable());
    assert_mentions(&e, &["could not connect", "3 attempts"]);
}

// ---------------------------------------------------------------------------------------------
// cancel and status

fn with_github_run(mut run: Run) -> Run {
    run.external_id = Some(GH_RUN.to_string());
    run.external_url = Some(format!(
        "https://github.com/octo-org/octo-repo/actions/runs/{GH_RUN}"
    ));
    run
}

#[tokio::test]
async fn cancel_posts_to_the_run_and_202_is_confirmed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/repos/octo-org/octo-repo/actions/runs/{GH_RUN}/cancel"
        )))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("x-github-api-version", "2022-11-28"))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({})))
        .expect(1)
        .mount(&server)
        .await;
    let run = with_github_run(job().await.run);
    assert!(
        runner(config(&server.uri()))
            .cancel(&run)
            .await
            .expect("cancel")
    );
}

#[tokio::test]
async fn cancel_409_means_the_run_already_finished() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/repos/octo-org/octo-repo/actions/runs/{GH_RUN}/cancel"
        )))
        .respond_with(gh_error(
            409,
            "Cannot cancel a workflow run that is completed.",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let run = with_github_run(job().await.run);
    assert!(
        !runner(config(&server.uri()))
            .cancel(&run)
            .await
            .expect("cancel")
    );
}

#[tokio::test]
async fn cancel_without_a_run_id_finds_the_run_first() {
    let server = MockServer::start().await;
    let job = job().await;
    mount_runs(&server, &job, vec![other_run(), our_run(&job)], None, 5).await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/repos/octo-org/octo-repo/actions/runs/{GH_RUN}/cancel"
        )))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({})))
        .expect(1)
        .mount(&server)
        .await;
    assert!(
        runner(config(&server.uri()))
            .cancel(&job.run)
            .await
            .expect("cancel")
    );
}

#[tokio::test]
async fn cancel_of_a_run_github_never_started_is_not_confirmed() {
    let server = MockServer::start().await;
    let job = job().await;
    mount_runs(&server, &job, vec![other_run()], None, 5).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .expect(0)
        .mount(&server)
        .await;
    assert!(
        !runner(config(&server.uri()))
            .cancel(&job.run)
            .await
            .expect("cancel")
    );
}

#[tokio::test]
async fn status_reads_the_run_and_maps_status_and_conclusion() {
    let server = MockServer::start().await;
    let r = runner(config(&server.uri()));
    let run = with_github_run(job().await.run);
    let cases = [
        ("queued", None, RemoteRunStatus::Pending),
        ("in_progress", None, RemoteRunStatus::Running),
        ("completed", Some("success"), RemoteRunStatus::Succeeded),
        ("completed", Some("failure"), RemoteRunStatus::Failed),
        ("completed", Some("timed_out"), RemoteRunStatus::Failed),
        ("completed", Some("cancelled"), RemoteRunStatus::Cancelled),
    ];
    for (status, conclusion, expected) in cases {
        server.reset().await;
        Mock::given(method("GET"))
            .and(path(format!(
                "/repos/octo-org/octo-repo/actions/runs/{GH_RUN}"
            )))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(gh_run(GH_RUN, "x", status, conclusion)),
            )
            .expect(1)
            .mount(&server)
            .await;
        assert_eq!(
            r.status(&run).await.expect("status"),
            Some(expected),
            "{status}/{conclusion:?}"
        );
        server.verify().await;
    }

    // The fixture's own run, as GitHub sends it.
    server.reset().await;
    let list: Value = serde_json::from_str(RUNS_LIST).expect("fixture");
    Mock::given(method("GET"))
        .and(path(format!(
            "/repos/octo-org/octo-repo/actions/runs/{GH_RUN}"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(list["workflow_runs"][0].clone()))
        .mount(&server)
        .await;
    assert_eq!(
        r.status(&run).await.expect("status"),
        Some(RemoteRunStatus::Succeeded)
    );

    // A run that is gone says so.
    server.reset().await;
    Mock::given(method("GET"))
        .respond_with(gh_error(404, "Not Found"))
        .mount(&server)
        .await;
    let e = expect_err(r.status(&run).await, "status");
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_mentions(
        &e,
        &["GitHub run 289782451 not found in octo-org/octo-repo"],
    );
}

#[tokio::test]
async fn status_without_a_run_id_comes_from_the_run_list() {
    let server = MockServer::start().await;
    let job = job().await;
    mount_runs(&server, &job, vec![other_run(), our_run(&job)], None, 5).await;
    let r = runner(config(&server.uri()));
    assert_eq!(
        r.status(&job.run).await.expect("status"),
        Some(RemoteRunStatus::Running)
    );

    server.reset().await;
    mount_runs(&server, &job, vec![other_run()], None, 5).await;
    assert_eq!(r.status(&job.run).await.expect("status"), None);
}

#[test]
fn remote_status_mapping() {
    assert_eq!(
        remote_status(Some("waiting"), None),
        Some(RemoteRunStatus::Pending)
    );
    assert_eq!(
        remote_status(Some("requested"), None),
        Some(RemoteRunStatus::Pending)
    );
    assert_eq!(
        remote_status(Some("completed"), Some("neutral")),
        Some(RemoteRunStatus::Succeeded)
    );
    assert_eq!(
        remote_status(Some("completed"), Some("skipped")),
        Some(RemoteRunStatus::Cancelled)
    );
    assert_eq!(
        remote_status(Some("completed"), Some("startup_failure")),
        Some(RemoteRunStatus::Failed)
    );
    assert_eq!(
        remote_status(Some("completed"), None),
        Some(RemoteRunStatus::Failed)
    );
    assert_eq!(remote_status(Some("something_new"), None), None);
    assert_eq!(remote_status(None, None), None);
}

// ---------------------------------------------------------------------------------------------
// configuration

fn lookup(vars: &[(&str, &str)]) -> Result<Option<GithubConfig>> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    GithubConfig::from_lookup(&|k| map.get(k).cloned())
}

#[test]
fn config_is_absent_without_a_token() {
    assert!(lookup(&[]).expect("ok").is_none());
    assert!(
        lookup(&[("GITHUB_TOKEN", "  "), ("GITHUB_REPO", "a/b")])
            .expect("ok")
            .is_none()
    );
}

#[test]
fn config_reads_the_original_variables() {
    let c = lookup(&[
        ("GITHUB_TOKEN", TOKEN),
        ("GITHUB_REPO", "octo-org/octo-repo"),
    ])
    .expect("ok")
    .expect("some");
    assert_eq!((c.owner.as_str(), c.repo.as_str()), (OWNER, REPO));
    assert_eq!(c.git_ref, "main");
    assert_eq!(c.api_url, "https://api.github.com");
    assert_eq!(
        c.workflow_file(WorkflowKind::ErrorFix),
        "auto-investigate.yml"
    );
    assert_eq!(c.workflow_file(WorkflowKind::Qa), "qa-test.yml");
    assert_eq!(c.callback_url, None);

    let c = lookup(&[
        ("GITHUB_TOKEN", TOKEN),
        ("GITHUB_REPO", "ignored/ignored"),
        ("GITHUB_REPO_OWNER", "acme"),
        ("GITHUB_REPO_NAME", "shop.web"),
        ("GITHUB_REF", "refs/heads/develop"),
        ("GITHUB_WORKFLOW_ID", "fix.yml"),
        ("GITHUB_API_URL", "https://ghe.acme.test/api/v3/"),
        ("DISPATCH_CALLBACK_URL", "https://abc.ngrok.test"),
    ])
    .expect("ok")
    .expect("some");
    assert_eq!((c.owner.as_str(), c.repo.as_str()), ("acme", "shop.web"));
    assert_eq!(c.git_ref, "develop");
    assert_eq!(c.api_url, "https://ghe.acme.test/api/v3");
    assert_eq!(c.workflow_file(WorkflowKind::ErrorFix), "fix.yml");
    assert_eq!(
        c.workflow_file(WorkflowKind::PrdImplement),
        "prd-implement.yml"
    );
    assert_eq!(c.callback_url.as_deref(), Some("https://abc.ngrok.test"));
}

#[test]
fn config_errors_name_the_variable() {
    for (vars, var) in [
        (vec![("GITHUB_TOKEN", TOKEN)], "GITHUB_REPO"),
        (
            vec![("GITHUB_TOKEN", TOKEN), ("GITHUB_REPO", "octo-repo")],
            "GITHUB_REPO",
        ),
        (
            vec![("GITHUB_TOKEN", TOKEN), ("GITHUB_REPO", "a/b/c")],
            "GITHUB_REPO",
        ),
        (
            vec![("GITHUB_TOKEN", TOKEN), ("GITHUB_REPO", "/b")],
            "GITHUB_REPO",
        ),
        (
            vec![("GITHUB_TOKEN", TOKEN), ("GITHUB_REPO_OWNER", "a")],
            "GITHUB_REPO_NAME",
        ),
        (
            vec![
                ("GITHUB_TOKEN", TOKEN),
                ("GITHUB_REPO_OWNER", "a b"),
                ("GITHUB_REPO_NAME", "c"),
            ],
            "GITHUB_REPO_OWNER",
        ),
        (
            vec![
                ("GITHUB_TOKEN", TOKEN),
                ("GITHUB_REPO", "a/b"),
                ("GITHUB_API_URL", "api.github.com"),
            ],
            "GITHUB_API_URL",
        ),
        (
            vec![
                ("GITHUB_TOKEN", TOKEN),
                ("GITHUB_REPO", "a/b"),
                ("DISPATCH_CALLBACK_URL", "ftp://x"),
            ],
            "DISPATCH_CALLBACK_URL",
        ),
        (
            vec![("GITHUB_TOKEN", "ghp_a b"), ("GITHUB_REPO", "a/b")],
            "GITHUB_TOKEN",
        ),
    ] {
        let e = expect_err(lookup(&vars), var);
        assert_eq!(e.field(), Some(var), "{vars:?}: {e}");
        assert!(e.message.contains(var), "{e}");
        assert!(!e.message.contains(TOKEN), "{e}");
    }
}

#[test]
fn the_token_is_never_printed() {
    let cfg = config("http://127.0.0.1:9");
    let r = runner(cfg.clone());
    for text in [format!("{cfg:?}"), format!("{r:?}")] {
        assert!(!text.contains(TOKEN), "{text}");
        assert!(!text.contains("ghp_"), "{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// fault injection: a GitHub that hangs

/// A GitHub that accepts connections and never answers (a hung proxy or load balancer): it
/// reads what it is sent and holds the connection open. Counts the requests it was sent.
struct HangingGithub {
    url: String,
    requests: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HangingGithub {
    async fn start() -> HangingGithub {
        use std::sync::atomic::Ordering;
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut head = Vec::new();
                    // Count each request head; never write a byte back.
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        head.extend_from_slice(&buf[..n]);
                        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.fetch_add(1, Ordering::SeqCst);
                            head.drain(..end + 4);
                        }
                    }
                });
            }
        });
        HangingGithub {
            url,
            requests,
            task,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for HangingGithub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_hanging_github_times_out_each_call_and_the_dispatch_fails_retryably() {
    let gh = HangingGithub::start().await;
    let mut cfg = config(&gh.url);
    cfg.request_timeout = Duration::from_millis(200);
    let started = Instant::now();
    let e = expect_err(
        runner(cfg).dispatch(job().await, reporter()).await,
        "dispatch",
    );
    let took = started.elapsed();
    assert_eq!(
        e.kind,
        ErrorKind::Upstream {
            service: "github".into(),
            status: 0
        },
        "{e}"
    );
    assert!(e.kind.is_retryable(), "the dispatcher tries again later");
    assert_mentions(&e, &["timed out"]);
    // Every request was sent and given up on; none waited for ever: a bounded number of
    // attempts, each cut at the timeout.
    let n = gh.requests();
    assert!(n >= 1, "the fake saw the request");
    assert!(n <= 12, "{n} requests: the attempts are bounded");
    assert!(
        took < Duration::from_millis(200) * (n as u32 + 2) + Duration::from_secs(2),
        "{n} requests took {took:?}"
    );
}

#[tokio::test]
async fn a_hanging_github_makes_status_and_cancel_time_out_instead_of_waiting() {
    let gh = HangingGithub::start().await;
    let mut cfg = config(&gh.url);
    cfg.request_timeout = Duration::from_millis(200);
    let r = runner(cfg);
    let run = with_github_run(job().await.run);
    let started = Instant::now();
    let e = expect_err(r.status(&run).await, "status");
    assert_eq!(
        e.kind,
        ErrorKind::Upstream {
            service: "github".into(),
            status: 0
        },
        "{e}"
    );
    assert_mentions(&e, &["timed out"]);
    let e = expect_err(r.cancel(&run).await, "cancel");
    assert!(e.kind.is_retryable(), "{e}");
    assert_mentions(&e, &["timed out"]);
    assert!(gh.requests() >= 2);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn github_recovering_from_5xx_mid_poll_reports_the_run() {
    // 503 on the run's status twice (a GitHub incident), then the answer: the runner's
    // retries ride it out within one call.
    let server = MockServer::start().await;
    let run = with_github_run(job().await.run);
    let run_path = format!("/repos/octo-org/octo-repo/actions/runs/{GH_RUN}");
    Mock::given(method("GET"))
        .and(path(run_path.clone()))
        .respond_with(gh_error(503, "Service Unavailable"))
        .up_to_n_times(2)
        .with_priority(1)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(run_path))
        .respond_with(ResponseTemplate::new(200).set_body_json(gh_run(
            GH_RUN,
            "x",
            "completed",
            Some("success"),
        )))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        runner(config(&server.uri()))
            .status(&run)
            .await
            .expect("status"),
        Some(RemoteRunStatus::Succeeded)
    );
}
