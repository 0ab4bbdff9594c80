//! `LocalRunner` running real processes: bash scripts in `tests/fixtures/local/` that print
//! Claude Code-style stream-json, in worktrees of a throw-away git repository.

#![cfg(feature = "local")]

mod gitrepo;

use async_trait::async_trait;
use chrono::Utc;
use dispatch_adapters::local::{CommandTemplate, LocalConfig, LocalRunner};
use dispatch_core::engine::{SpawnOptions, job_inputs};
use dispatch_core::ids::RunId;
use dispatch_core::issue::{Actor, Issue, NewIssue};
use dispatch_core::memory::MemoryStore;
use dispatch_core::ports::{
    IssueStore, RemoteRunStatus, RunJob, RunReporter, RunResult, Runner, WorkspaceStore,
};
use dispatch_core::run::{ActivityType, NewActivity, NewRun, Outcome, RunStatus, WorkflowKind};
use dispatch_core::{Dispatch, ErrorKind, Result};
use gitrepo::{TempDir, git, git_repo};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Helpers

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/local")
        .join(name)
}

/// A runner whose agent is `bash <script> {prompt} {prompt_file}`, with short grace periods.
fn config(tmp: &TempDir, repo: &Path, script: &str, env: &[(&str, &str)]) -> LocalConfig {
    let mut c = LocalConfig::new(repo);
    let template = format!(
        "bash '{}' {{prompt}} {{prompt_file}}",
        fixture(script).display()
    );
    c.agent_command = CommandTemplate::parse(&template).expect("template");
    c.worktree_dir = tmp.path().join("worktrees");
    c.kill_grace = Duration::from_millis(300);
    c.drain_grace = Duration::from_millis(500);
    c.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    c
}

/// Issue titles come from error messages: this one would do damage if a shell ever saw it.
fn nasty_title(tmp: &TempDir) -> String {
    format!(
        "TypeError in $(touch {0}/pwned) `touch {0}/pwned2`; 'quoted' \"dq\" && rm -rf /nonexistent | cat",
        tmp.path().display()
    )
}

async fn job(title: &str, kind: WorkflowKind) -> RunJob {
    let store = MemoryStore::new();
    let now = Utc::now();
    let ws = store
        .ensure_workspace("Acme", "ACME", now)
        .await
        .expect("workspace");
    let mut new = NewIssue::titled(title);
    new.description = Some("**Source:** `checkout`\nIt crashes. ünïcödé ✓".into());
    let issue: Issue = store
        .create_issue(ws.id, new, &Actor::user("test"), now, &Default::default())
        .await
        .expect("issue");
    let run = NewRun {
        issue_id: issue.id,
        kind,
        additional_context: Some("Started after the 2.3 deploy".into()),
        force: false,
        requested_by: "test".into(),
    }
    .into_run(now);
    let inputs = job_inputs(&run, &issue, None);
    RunJob { run, issue, inputs }
}

#[derive(Debug, Clone)]
enum Ev {
    Started(Option<String>),
    Terminal(String),
    Activity(NewActivity),
    Finish(RunResult),
}

/// Records every report with the time it arrived.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<(Instant, Ev)>>,
}

impl Recorder {
    fn push(&self, e: Ev) {
        self.events.lock().expect("lock").push((Instant::now(), e));
    }
    fn events(&self) -> Vec<(Instant, Ev)> {
        self.events.lock().expect("lock").clone()
    }
    fn chunks(&self) -> Vec<(Instant, String)> {
        self.events()
            .into_iter()
            .filter_map(|(t, e)| match e {
                Ev::Terminal(c) => Some((t, c)),
                _ => None,
            })
            .collect()
    }
    fn transcript(&self) -> String {
        self.chunks().into_iter().map(|(_, c)| c).collect()
    }
    fn activities(&self) -> Vec<NewActivity> {
        self.events()
            .into_iter()
            .filter_map(|(_, e)| match e {
                Ev::Activity(a) => Some(a),
                _ => None,
            })
            .collect()
    }
    fn finished(&self) -> Option<(Instant, RunResult)> {
        self.events().into_iter().find_map(|(t, e)| match e {
            Ev::Finish(r) => Some((t, r)),
            _ => None,
        })
    }
    async fn wait_for<T>(&self, what: &str, limit: Duration, f: impl Fn(&Self) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what}; transcript so far:\n{}",
                self.transcript()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    async fn wait_finish(&self, limit: Duration) -> (Instant, RunResult) {
        self.wait_for("the run to finish", limit, Recorder::finished)
            .await
    }
}

#[async_trait]
impl RunReporter for Recorder {
    async fn started(
        &self,
        _: RunId,
        external_id: Option<String>,
        _: Option<String>,
    ) -> Result<()> {
        self.push(Ev::Started(external_id));
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
        self.push(Ev::Finish(result));
        Ok(())
    }
}

/// Whether a process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
    }
}

async fn wait_gone(pids: &[i32], limit: Duration) {
    let start = Instant::now();
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            start.elapsed() < limit,
            "processes still alive: {:?}",
            pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The agent's and its child's pids, once the forever script wrote them.
async fn read_pids(file: &Path) -> Vec<i32> {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(file) {
            let pids: Vec<i32> = s
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            if pids.len() == 2 {
                return pids;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the agent never wrote its pids"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_output_live_and_records_cost_turns_and_model() {
    let tmp = TempDir::new("stream");
    let repo = git_repo(&tmp);
    let runner = LocalRunner::new(config(&tmp, &repo, "agent-stream.sh", &[]));
    runner.preflight().expect("preflight");
    let title = nasty_title(&tmp);
    let job = job(&title, WorkflowKind::ErrorFix).await;
    let run = job.run.clone();
    let rec = Arc::new(Recorder::default());

    let t0 = Instant::now();
    let receipt = runner
        .dispatch(job.clone(), rec.clone())
        .await
        .expect("dispatch");
    let dispatch_took = t0.elapsed();
    assert!(
        dispatch_took < Duration::from_secs(5),
        "dispatch must return promptly, took {dispatch_took:?}"
    );
    let external = receipt.external_id.clone().unwrap_or_default();
    assert!(external.starts_with("local-"), "{external}");
    // Idempotent by run id: the same receipt, no second agent.
    let again = runner
        .dispatch(job.clone(), rec.clone())
        .await
        .expect("second dispatch");
    assert_eq!(again, receipt);

    // Output arrives while the agent is still running (it sleeps 1.5 s before finishing).
    let (seen_at, _) = rec
        .wait_for("the tool call line", Duration::from_secs(10), |r| {
            r.chunks()
                .into_iter()
                .find(|(_, c)| c.contains("[TOOL] Bash(command=ls -la, description=List files)"))
        })
        .await;
    assert!(rec.finished().is_none(), "output must not wait for the end");
    assert_eq!(
        runner.status(&run).await.expect("status"),
        Some(RemoteRunStatus::Running)
    );

    let (finished_at, result) = rec.wait_finish(Duration::from_secs(20)).await;
    assert!(
        finished_at.duration_since(seen_at) >= Duration::from_millis(1000),
        "the first lines came {:?} before the end; they should come ~1.5 s before",
        finished_at.duration_since(seen_at)
    );
    eprintln!(
        "dispatch {dispatch_took:?}, first tool line after {:?}, finished after {:?}",
        seen_at.duration_since(t0),
        finished_at.duration_since(t0)
    );

    // The result: from run-result.json and the stream's result event.
    assert_eq!(result.status, Some(RunStatus::Completed));
    assert_eq!(result.outcome, Some(Outcome::Completed));
    assert_eq!(result.summary.as_deref(), Some("Fixed the null check."));
    assert_eq!(result.cost_usd, Some(0.4213));
    assert_eq!(result.num_turns, Some(4));
    assert_eq!(result.model.as_deref(), Some("claude-test-1"));
    assert_eq!(result.tokens_used, Some(100));
    assert_eq!(result.files_changed, Some(vec!["fixed.txt".to_string()]));
    let report = result.report.clone().unwrap_or_default();
    assert!(report.contains("## Root Cause"), "{report}");

    // Chunks in order, batched (fewer chunks than lines), each a run of whole lines.
    let transcript = rec.transcript();
    eprintln!("--- transcript ---\n{transcript}--- end ---");
    assert_in_order(
        &transcript,
        &[
            "[DISPATCH] error_fix run for ACME-1 started",
            "[INIT] model=claude-test-1 tools=3\n",
            "Looking into the error.\n",
            "[TOOL] Bash(command=ls -la, description=List files)\n",
            "[RESULT] README.md\n",
            "not json: a plain line\n",
            "Done.\n",
            "[COMPLETED] Cost: $0.42, Turns: 4\n",
            "[DISPATCH] Committed the changes the agent left uncommitted\n",
            "[DISPATCH] Run ended: completed (outcome completed)",
        ],
    );
    assert!(!transcript.contains("rate_limit"), "noise is skipped");
    let chunks = rec.chunks();
    assert!(
        chunks.len() < transcript.lines().count(),
        "{} chunks for {} lines: lines arriving together must share a chunk",
        chunks.len(),
        transcript.lines().count()
    );
    assert!(chunks.iter().all(|(_, c)| c.ends_with('\n')));

    // Reports: started once, the investigation report as the kind's activity.
    let events = rec.events();
    let started: Vec<_> = events
        .iter()
        .filter_map(|(_, e)| match e {
            Ev::Started(x) => Some(x.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(started, vec![Some(external.clone())]);
    let activities = rec.activities();
    assert_eq!(activities.len(), 1, "{activities:?}");
    assert_eq!(activities[0].kind, ActivityType::InvestigationComplete);
    assert!(activities[0].content.contains("## Root Cause"));
    assert_eq!(activities[0].metadata["cost_usd"], 0.4213);
    assert_eq!(activities[0].metadata["num_turns"], 4);

    // The prompt reached the agent intact as one argument and as a file; no shell saw it.
    let workdir = runner.workdir(run.id).expect("workdir");
    let arg = std::fs::read_to_string(workdir.join(".scratch/prompt-arg.txt")).expect("arg");
    let file =
        std::fs::read_to_string(workdir.join(".scratch/prompt-file-copy.txt")).expect("file");
    assert_eq!(arg, file);
    assert_eq!(Some(arg.clone()), result.prompt_text);
    assert!(arg.contains(&title), "the title is in the prompt verbatim");
    assert!(arg.contains(".scratch/run-result.json"));
    assert!(!tmp.path().join("pwned").exists() && !tmp.path().join("pwned2").exists());
    let env = std::fs::read_to_string(workdir.join(".scratch/env.txt")).expect("env");
    let env: Vec<&str> = env.lines().collect();
    assert_eq!(
        env,
        vec![
            run.id.to_string().as_str(),
            job.issue.id.to_string().as_str(),
            "ACME-1",
            "error_fix",
            title.as_str(),
            "ACME-1"
        ]
    );

    // The worktree is on its own branch; the agent's uncommitted edit was committed there,
    // without the git-ignored .scratch/.
    let branch = git(&workdir, &["rev-parse", "--abbrev-ref", "HEAD"]);
    assert!(branch.starts_with("dispatch/acme-1-"), "{branch}");
    assert_eq!(
        git(&workdir, &["log", "-1", "--format=%an"]),
        "Dispatch Agent"
    );
    let subject = git(&workdir, &["log", "-1", "--format=%s"]);
    assert!(
        subject.starts_with("fix: TypeError in") && subject.ends_with("[ACME-1]"),
        "{subject}"
    );
    assert_eq!(
        git(&workdir, &["show", "--name-only", "--format=", "HEAD"]),
        "fixed.txt"
    );
    assert!(
        !repo.join("fixed.txt").exists(),
        "the main checkout is untouched"
    );

    // A finished run cannot be cancelled; a repeated dispatch still starts nothing.
    assert!(!runner.cancel(&run).await.expect("cancel"));
    assert_eq!(
        runner.status(&run).await.expect("status"),
        Some(RemoteRunStatus::Succeeded)
    );
    assert_eq!(
        runner.dispatch(job, rec.clone()).await.expect("redispatch"),
        receipt
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rec.events()
            .iter()
            .filter(|(_, e)| matches!(e, Ev::Started(_)))
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_whole_process_tree() {
    let tmp = TempDir::new("timeout");
    let repo = git_repo(&tmp);
    let pid_file = tmp.path().join("pids");
    let pid_env = pid_file.display().to_string();
    let mut c = config(
        &tmp,
        &repo,
        "agent-forever.sh",
        &[("AGENT_PID_FILE", &pid_env)],
    );
    c.timeout = Some(Duration::from_millis(1500));
    let runner = LocalRunner::new(c);
    let job = job("Hangs forever", WorkflowKind::ErrorFix).await;
    let rec = Arc::new(Recorder::default());

    let t0 = Instant::now();
    runner.dispatch(job, rec.clone()).await.expect("dispatch");
    let pids = read_pids(&pid_file).await;
    assert!(pids.iter().all(|p| alive(*p)), "agent and child run");

    let (at, result) = rec.wait_finish(Duration::from_secs(15)).await;
    let took = at.duration_since(t0);
    eprintln!("timed out run finished after {took:?}");
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    // Both ignore SIGTERM: the runner must have escalated to SIGKILL after the 300 ms grace.
    wait_gone(&pids, Duration::from_secs(3)).await;
    assert_eq!(result.status, Some(RunStatus::TimedOut));
    assert_eq!(result.outcome, Some(Outcome::Failed));
    let summary = result.summary.unwrap_or_default();
    assert!(
        summary.starts_with("Agent timed out after 1.5 s"),
        "{summary}"
    );
    assert!(summary.contains("Working forever."), "the tail: {summary}");
    assert!(
        rec.transcript()
            .contains("[DISPATCH] Time limit of 1.5 s reached")
    );
    let failed = rec.activities();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].kind, ActivityType::InvestigationFailed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_the_whole_process_tree() {
    let tmp = TempDir::new("cancel");
    let repo = git_repo(&tmp);
    let pid_file = tmp.path().join("pids");
    let pid_env = pid_file.display().to_string();
    let runner = LocalRunner::new(config(
        &tmp,
        &repo,
        "agent-forever.sh",
        &[("AGENT_PID_FILE", &pid_env)],
    ));
    let job = job("Needs cancelling", WorkflowKind::PrdInvestigate).await;
    let run = job.run.clone();
    let rec = Arc::new(Recorder::default());
    runner.dispatch(job, rec.clone()).await.expect("dispatch");
    let pids = read_pids(&pid_file).await;
    rec.wait_for("the agent's text", Duration::from_secs(10), |r| {
        r.transcript().contains("Working forever.").then_some(())
    })
    .await;
    assert_eq!(runner.active_runs(), vec![run.id]);

    let t = Instant::now();
    assert!(runner.cancel(&run).await.expect("cancel"));
    let took = t.elapsed();
    eprintln!("cancel took {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // cancel returns once the run has reported its end.
    let (_, result) = rec.finished().expect("finished before cancel returned");
    assert_eq!(result.status, Some(RunStatus::Cancelled));
    assert_eq!(result.outcome, Some(Outcome::Failed));
    wait_gone(&pids, Duration::from_secs(3)).await;
    assert!(runner.active_runs().is_empty());
    assert!(!runner.cancel(&run).await.expect("second cancel"));
    assert_eq!(
        runner.status(&run).await.expect("status"),
        Some(RemoteRunStatus::Cancelled)
    );
    assert!(
        rec.activities().is_empty(),
        "the engine records the cancel itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_agent_fails_with_the_tail_of_its_output() {
    let tmp = TempDir::new("crash");
    let repo = git_repo(&tmp);
    let runner = LocalRunner::new(config(&tmp, &repo, "agent-crash.sh", &[]));
    let job = job("Crashes", WorkflowKind::ErrorFix).await;
    let rec = Arc::new(Recorder::default());
    runner.dispatch(job, rec.clone()).await.expect("dispatch");
    let (_, result) = rec.wait_finish(Duration::from_secs(15)).await;
    assert_eq!(result.status, Some(RunStatus::Failed));
    assert_eq!(result.outcome, Some(Outcome::Failed));
    let summary = result.summary.unwrap_or_default();
    for needle in [
        "Agent exited without declaring an outcome: the process exited with code 3.",
        "Last output:",
        "About to do something risky.",
        "[stderr] Traceback (most recent call last):",
        "[stderr] RuntimeError: the agent fell over",
    ] {
        assert!(summary.contains(needle), "{needle:?} not in {summary}");
    }
    assert_eq!(result.model.as_deref(), Some("claude-test-1"));
    assert_eq!(result.cost_usd, None, "no result event, no cost");
    let a = rec.activities();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].kind, ActivityType::InvestigationFailed);
    let tail = a[0].metadata["error_tail"].as_str().unwrap_or_default();
    // stdout and stderr are separate pipes: their relative order is not defined.
    assert!(
        tail.contains("[stderr] RuntimeError: the agent fell over")
            && tail.contains("About to do something risky."),
        "{tail}"
    );
    assert!(
        rec.transcript().contains("[stderr] RuntimeError"),
        "stderr is shown live too"
    );
}

async fn run_stream_variant(variant: &str) -> RunResult {
    let tmp = TempDir::new(variant);
    let repo = git_repo(&tmp);
    let runner = LocalRunner::new(config(
        &tmp,
        &repo,
        "agent-stream.sh",
        &[("AGENT_RESULT", variant), ("AGENT_FINAL_SLEEP", "0")],
    ));
    let job = job("Some error", WorkflowKind::ErrorFix).await;
    let rec = Arc::new(Recorder::default());
    runner.dispatch(job, rec.clone()).await.expect("dispatch");
    rec.wait_finish(Duration::from_secs(15)).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_invalid_result_files_fail_the_run() {
    let missing = run_stream_variant("missing").await;
    assert_eq!(missing.status, Some(RunStatus::Failed));
    assert_eq!(missing.outcome, Some(Outcome::Failed));
    let s = missing.summary.unwrap_or_default();
    assert!(
        s.starts_with("Agent exited without declaring an outcome."),
        "{s}"
    );
    assert_eq!(missing.cost_usd, Some(0.4213), "cost is recorded anyway");
    assert_eq!(missing.num_turns, Some(4));

    let invalid = run_stream_variant("invalid").await;
    assert_eq!(invalid.status, Some(RunStatus::Failed));
    assert_eq!(invalid.outcome, Some(Outcome::Failed));
    let s = invalid.summary.unwrap_or_default();
    assert!(s.starts_with("Invalid outcome \"great_success\""), "{s}");

    let budget = run_stream_variant("budget").await;
    assert_eq!(budget.status, Some(RunStatus::Failed));
    let s = budget.summary.unwrap_or_default();
    assert!(
        s.contains("exited with code 1")
            && s.contains("Stopped: budget limit reached (error_max_budget_usd)"),
        "{s}"
    );
    assert_eq!(budget.cost_usd, Some(25.01));
    assert_eq!(budget.num_turns, Some(9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_agent_executable_fails_at_once() {
    let tmp = TempDir::new("missing");
    let repo = git_repo(&tmp);
    let mut c = config(&tmp, &repo, "agent-stream.sh", &[]);
    c.agent_command =
        CommandTemplate::parse("no-such-agent-xyz-123 -p {prompt}").expect("template");
    let runner = LocalRunner::new(c);
    let e = runner.preflight().expect_err("preflight");
    assert_eq!(e.field(), Some("DISPATCH_AGENT_COMMAND"));
    assert!(
        e.message
            .contains("`no-such-agent-xyz-123` was not found on PATH"),
        "{e}"
    );

    let rec = Arc::new(Recorder::default());
    let t = Instant::now();
    let e = runner
        .dispatch(job("x", WorkflowKind::ErrorFix).await, rec.clone())
        .await
        .expect_err("dispatch must fail");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(matches!(e.kind, ErrorKind::InvalidInput { .. }));
    assert!(
        !e.kind.is_retryable(),
        "the dispatcher must fail the run at once"
    );
    assert!(rec.events().is_empty());
    assert!(!tmp.path().join("worktrees").exists(), "nothing was set up");

    // The default agent: the message says how to install it.
    let mut c = LocalConfig::new(&repo);
    c.env = vec![("PATH".into(), "/nonexistent".into())];
    let e = LocalRunner::new(c).preflight().expect_err("no claude");
    assert!(
        e.message.contains("`claude` was not found on PATH")
            && e.message
                .contains("npm install -g @anthropic-ai/claude-code"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_is_not_a_git_repository_is_refused() {
    let tmp = TempDir::new("nogit");
    let plain = tmp.path().join("plain");
    std::fs::create_dir_all(&plain).expect("dir");
    let runner = LocalRunner::new(config(&tmp, &plain, "agent-stream.sh", &[]));
    let e = runner.preflight().expect_err("preflight");
    assert_eq!(e.field(), Some("DISPATCH_LOCAL_REPO"), "{e}");
    assert!(e.message.contains("is not a git repository"), "{e}");
    let e = runner
        .dispatch(
            job("x", WorkflowKind::ErrorFix).await,
            Arc::new(Recorder::default()),
        )
        .await
        .expect_err("dispatch");
    assert!(!e.kind.is_retryable());

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    git(&empty, &["init", "-q"]);
    let e = LocalRunner::new(config(&tmp, &empty, "agent-stream.sh", &[]))
        .preflight()
        .expect_err("no commits");
    assert!(e.message.contains("has no commits yet"), "{e}");
    let mut c = config(&tmp, &git_repo(&tmp), "agent-stream.sh", &[]);
    c.base_ref = Some("no-such-branch".into());
    let e = LocalRunner::new(c).preflight().expect_err("bad base");
    assert_eq!(e.field(), Some("DISPATCH_LOCAL_BASE_REF"), "{e}");
}

/// The engine's dispatcher and callbacks with the local runner: a real run end to end, and a
/// missing agent failing the run on the first dispatch attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_runs_local_agents() {
    let tmp = TempDir::new("engine");
    let repo = git_repo(&tmp);
    let runner = Arc::new(LocalRunner::new(config(
        &tmp,
        &repo,
        "agent-stream.sh",
        &[("AGENT_FINAL_SLEEP", "0.2")],
    )));
    let store = Arc::new(MemoryStore::new());
    let d = Dispatch::builder(store, runner.clone())
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
        assert!(start.elapsed() < Duration::from_secs(20), "run never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.outcome, Some(Outcome::Completed));
    assert_eq!(run.cost_usd, 0.4213);
    assert_eq!(run.num_turns, 4);
    assert_eq!(run.model.as_deref(), Some("claude-test-1"));
    assert_eq!(run.runner.as_deref(), Some("local"));
    assert!(run.external_id.is_some_and(|x| x.starts_with("local-")));
    let transcript = d.transcript(run_id).await.expect("transcript");
    assert!(
        transcript.contains("[COMPLETED] Cost: $0.42, Turns: 4"),
        "{transcript}"
    );

    // A missing agent: the first dispatch attempt fails the run, with the reason.
    let mut c = config(&tmp, &repo, "agent-stream.sh", &[]);
    c.agent_command = CommandTemplate::parse("no-such-agent-xyz-123 {prompt}").expect("template");
    let d = Dispatch::builder(Arc::new(MemoryStore::new()), Arc::new(LocalRunner::new(c)))
        .build()
        .await
        .expect("engine");
    let issue = d
        .create_issue(NewIssue::titled("Checkout fails"), &actor)
        .await
        .expect("issue");
    let mut opts = SpawnOptions::new(WorkflowKind::ErrorFix);
    opts.force = true;
    d.spawn(issue.id, opts, &actor).await.expect("spawn");
    assert_eq!(d.dispatcher_step().await.expect("dispatch"), 0);
    let run = d.runs(issue.id).await.expect("runs").remove(0);
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.dispatch_attempts, 1);
    let summary = run.outcome_summary.unwrap_or_default();
    assert!(
        summary.contains("`no-such-agent-xyz-123` was not found on PATH"),
        "{summary}"
    );
}

/// After a server restart, the new process finds a running run it does not watch, started by a
/// process of this host that is gone: its agent is killed and the run is reported lost at once
/// (the sweeper then fails it) instead of holding a slot until the stale timeout. A run whose
/// server is alive, or that this runner watches, is not touched.
#[tokio::test]
async fn a_run_whose_server_is_gone_is_orphaned_and_its_agent_killed() {
    let tmp = TempDir::new("orphan");
    let repo = git_repo(&tmp);
    let pid_file = tmp.path().join("pids");
    let pid_env = pid_file.display().to_string();
    let first = LocalRunner::new(config(
        &tmp,
        &repo,
        "agent-forever.sh",
        &[("AGENT_PID_FILE", &pid_env)],
    ));
    let job = job("Outlives its server", WorkflowKind::PrdInvestigate).await;
    let mut run = job.run.clone();
    let rec = Arc::new(Recorder::default());
    let receipt = first.dispatch(job, rec.clone()).await.expect("dispatch");
    let pids = read_pids(&pid_file).await;
    let id = receipt.external_id.expect("external id");
    run.runner = Some("local".into());
    run.status = RunStatus::Running;
    run.external_id = Some(id.clone());

    // The process that started it is alive (it is this test), and `first` watches it.
    let restarted = LocalRunner::new(config(&tmp, &repo, "agent-forever.sh", &[]));
    assert!(
        !first.orphaned(&run).await.unwrap(),
        "watched by this runner"
    );
    assert!(
        !restarted.orphaned(&run).await.unwrap(),
        "its server is alive"
    );
    assert!(pids.iter().all(|p| alive(*p)));

    // The same run as started by a server process that has exited.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let (head, owner) = id.split_once('@').unwrap();
    let host = owner.split(':').next().unwrap();
    let mut orphan = run.clone();
    orphan.external_id = Some(format!("{head}@{host}:{dead_pid}:12345"));
    let mut other_host = run.clone();
    other_host.external_id = Some(format!("{head}@another-host:{dead_pid}:12345"));
    let mut old_format = run.clone();
    old_format.external_id = Some(head.to_string());
    assert!(
        !restarted.orphaned(&other_host).await.unwrap(),
        "another host's run"
    );
    assert!(
        !restarted.orphaned(&old_format).await.unwrap(),
        "cannot tell"
    );
    assert!(pids.iter().all(|p| alive(*p)));

    assert!(restarted.orphaned(&orphan).await.unwrap());
    wait_gone(&pids, Duration::from_secs(5)).await;
}

/// Issue 10 #1: a server died after its runner started a run's agent and before the run recorded
/// it; the restarted server (another process) dispatches the run again. The runner must not start
/// a second agent while the first lives: it answers with the first one (noted in the worktree),
/// and the run then records an agent whose server is gone, which `orphaned` stops. Found by the
/// SIGKILL-burst black-box test on PostgreSQL (one run had two agents).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_agent_outlived_its_server_gets_no_second_agent() {
    let tmp = TempDir::new("adopt");
    let repo = git_repo(&tmp);
    let pid_file = tmp.path().join("pids");
    let pid_env = pid_file.display().to_string();
    let conf = config(
        &tmp,
        &repo,
        "agent-forever.sh",
        &[("AGENT_PID_FILE", &pid_env)],
    );
    let first = LocalRunner::new(conf.clone());
    let job = job("Outlives its server", WorkflowKind::PrdInvestigate).await;
    let receipt = first
        .dispatch(job.clone(), Arc::new(Recorder::default()))
        .await
        .expect("dispatch");
    let pids = read_pids(&pid_file).await;
    // The note in the worktree names this process; make it name a server process of this host
    // that is gone (what a restarted server finds).
    let workdir = PathBuf::from(
        receipt
            .external_url
            .as_deref()
            .and_then(|u| u.strip_prefix("file://"))
            .expect("file URL"),
    );
    let marker = workdir.join(".scratch/agent");
    let noted = std::fs::read_to_string(&marker).expect("the agent is noted in its worktree");
    assert_eq!(Some(noted.trim()), receipt.external_id.as_deref());
    let (head, owner) = noted.trim().split_once('@').expect("owner");
    let host = owner.rsplitn(3, ':').nth(2).expect("host");
    let dead = format!("{head}@{host}:999999:1");
    std::fs::write(&marker, &dead).expect("rewrite");
    std::fs::remove_file(&pid_file).expect("clear the pid file");

    let second = LocalRunner::new(conf);
    let again = second
        .dispatch(job.clone(), Arc::new(Recorder::default()))
        .await
        .expect("second dispatch");
    assert_eq!(
        again.external_id.as_deref(),
        Some(dead.as_str()),
        "answered with the agent that runs"
    );
    assert!(
        !pid_file.exists(),
        "no second agent was started while the first runs"
    );
    assert!(pids.iter().all(|p| alive(*p)));

    // The run records that agent; its server is gone: orphaned, its group stopped.
    let mut run = job.run.clone();
    run.external_id = again.external_id.clone();
    assert!(second.orphaned(&run).await.expect("orphaned"));
    wait_gone(&pids, Duration::from_secs(5)).await;
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_is_noted_in_its_worktree_before_it_runs() {
    let tmp = TempDir::new("note-first");
    let repo = git_repo(&tmp);
    let seen_file = tmp.path().join("seen-note");
    let seen_env = seen_file.display().to_string();
    let conf = config(
        &tmp,
        &repo,
        "agent-note.sh",
        &[("AGENT_NOTE_FILE", &seen_env)],
    );
    let runner = LocalRunner::new(conf);
    let job = job("Noted before it runs", WorkflowKind::PrdInvestigate).await;
    let receipt = runner
        .dispatch(job.clone(), Arc::new(Recorder::default()))
        .await
        .expect("dispatch");
    let start = Instant::now();
    let seen = loop {
        if let Ok(s) = std::fs::read_to_string(&seen_file) {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the agent never ran"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // What the agent found at its first instruction is the whole note naming it: written by
    // the agent's own process between fork and exec, not by the runner afterwards.
    assert_eq!(Some(seen.trim()), receipt.external_id.as_deref());
    let workdir = PathBuf::from(
        receipt
            .external_url
            .as_deref()
            .and_then(|u| u.strip_prefix("file://"))
            .expect("file URL"),
    );
    assert!(
        !workdir.join(".scratch/agent.tmp").exists(),
        "the note is renamed into place"
    );
    let pgid: i32 = seen
        .trim()
        .split_once('@')
        .and_then(|(head, _)| head.rsplit_once('-'))
        .and_then(|(_, p)| p.parse().ok())
        .expect("the note names the process group");
    assert!(alive(pgid), "the note names the running agent");
    assert!(runner.cancel(&job.run).await.expect("cancel"));
    wait_gone(&[pgid], Duration::from_secs(5)).await;
}
