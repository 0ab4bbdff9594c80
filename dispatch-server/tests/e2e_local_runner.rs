//! End to end, with no step but the alert: `dispatch serve` on SQLite with the local runner; a
//! Grafana alert posted over HTTP becomes an issue, passes the gates, is dispatched to a local
//! agent process (a stand-in script that speaks Claude Code's stream-json), its terminal output
//! streams over SSE, and its result lands on the issue.

mod support;

use futures::StreamExt;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use support::Server;

fn git(dir: &Path, args: &[&str]) {
    let st = std::process::Command::new("git")
        .args(["-c", "user.email=t@example.com", "-c", "user.name=t"])
        .args(args)
        .current_dir(dir)
        .status()
        .expect("git");
    assert!(st.success(), "git {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grafana_alert_leads_to_a_streamed_local_run_whose_result_lands_on_the_issue() {
    let repo = std::env::temp_dir().join(format!(
        "dispatch-e2e-repo-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README.md"), "demo\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    let agent = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dispatch-adapters/tests/fixtures/local/agent-stream.sh");
    let s = Server::builder()
        .env("DISPATCH_LOCAL_REPO", &repo.to_string_lossy())
        .env(
            "DISPATCH_AGENT_COMMAND",
            &format!("{} {{prompt}} {{prompt_file}}", agent.display()),
        )
        .env("IMMEDIATE_SPAWN_SOURCES", "ci-deploy")
        .env("AGENT_FINAL_SLEEP", "1.0")
        .start();
    let c = support::http();

    let alert = json!({
        "receiver": "dispatch", "status": "firing", "orgId": 1, "version": "1", "groupKey": "{}", "truncatedAlerts": 0,
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://grafana.local/",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "DeployErrors", "source": "ci-deploy", "feature": "migrate", "level": "error"},
            "annotations": {"msg": "Migration 0042 failed: column \"plan\" does not exist"},
            "startsAt": "2026-11-25T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://grafana.local/alerting/1/view", "fingerprint": "f1", "values": {"A": 1}
        }]
    });
    let r: Value = c
        .post(s.url("/api/loki/webhook"))
        .bearer_auth(&s.api_key)
        .json(&alert)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["results"][0]["action"], "created", "{r}");
    let ident = r["results"][0]["issueIdentifier"]
        .as_str()
        .unwrap()
        .to_string();

    // Watch the issue's live stream; chunks already posted are replayed from the start of the run.
    let resp = c
        .get(s.url(&format!("/api/issues/{ident}/activity/stream")))
        .bearer_auth(&s.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    let done = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains("terminal_output") && seen.contains("\"status\":\"completed\"") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(done, "stream: {seen}");
    assert!(
        seen.contains("[TOOL] Bash("),
        "the filter rendered the tool call: {seen}"
    );
    assert!(seen.contains("Looking into the error."));

    let issue: Value = c
        .get(s.url(&format!("/api/issues/{ident}")))
        .bearer_auth(&s.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(issue["spawn_status"], "completed", "{issue}");
    assert_eq!(issue["run_outcome"], "completed");
    assert!(issue["cost_usd"].as_f64().unwrap() > 0.0, "{issue}");
    assert!(issue["num_turns"].as_u64().unwrap() >= 1);
    let run: Value = c
        .get(s.url(&format!("/api/issues/{ident}/runs/current")))
        .bearer_auth(&s.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(run["workflow_type"], "error_fix");
    assert_eq!(run["runner"], "local");
    assert!(
        run["transcript"]
            .as_str()
            .unwrap()
            .contains("[COMPLETED] Cost: $"),
        "{run}"
    );
    assert_eq!(run["files_changed"], json!(["fixed.txt"]));
}

/// Whether a process is alive (a zombie waiting to be reaped is not).
fn alive(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// Polls `f` until it is true, failing after `secs` (waiting on another process's progress over
/// HTTP; the order of events is fixed by the FIFO, not by this timing).
async fn eventually(secs: u64, what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_a_slow_dispatch_leaves_no_agent_and_keeps_the_slot() {
    let dir = std::env::temp_dir().join(format!(
        "dispatch-e2e-cancel-{}",
        uuid::Uuid::now_v7().simple()
    ));
    // Preparing the worktree blocks in git's post-checkout hook until the test writes the FIFO:
    // the dispatch is in flight for exactly as long as the test wants.
    let (repo, fifo) = support::repo_with_blocking_checkout(&dir);
    let pid_file = dir.join("agent.pid");
    let agent = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dispatch-adapters/tests/fixtures/local/agent-forever.sh");
    let s = Server::builder()
        .env("DISPATCH_LOCAL_REPO", &repo.to_string_lossy())
        .env(
            "DISPATCH_AGENT_COMMAND",
            &format!("{} {{prompt}}", agent.display()),
        )
        .env("AGENT_PID_FILE", &pid_file.to_string_lossy())
        .env("MAX_CONCURRENT_SPAWNS", "1")
        .start();
    let (_, a) = support::post(&s, "/api/issues", json!({ "title": "slow one" })).await;
    let (_, b) = support::post(&s, "/api/issues", json!({ "title": "waits" })).await;
    let a = a["identifier"].as_str().unwrap().to_string();
    let b = b["identifier"].as_str().unwrap().to_string();
    let (st, r) = support::post(
        &s,
        &format!("/api/issues/{a}/spawn"),
        json!({ "type": "triage" }),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    eventually(20, "the run to be claimed", async || {
        let (_, runs) = support::get(&s, &format!("/api/issues/{a}/runs")).await;
        runs[0]["status"] == "dispatching"
    })
    .await;

    let (st, r) = support::post(&s, &format!("/api/issues/{a}/spawn/cancel"), json!({})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["cancelRequested"], true, "{r}");
    // The slot is still held: another spawn is deferred, not allowed.
    let (st, r) = support::post(
        &s,
        &format!("/api/issues/{b}/spawn"),
        json!({ "type": "triage" }),
    )
    .await;
    assert_eq!(st, 202, "{r}");

    // Let the worktree finish: the runner starts the agent, the dispatcher stops it at once.
    std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    eventually(30, "the run to end cancelled", async || {
        let (_, runs) = support::get(&s, &format!("/api/issues/{a}/runs")).await;
        runs[0]["status"] == "cancelled"
    })
    .await;
    let (_, runs) = support::get(&s, &format!("/api/issues/{a}/runs")).await;
    // Whoever ends the run first writes its end (a finished run is not rewritten): the
    // dispatcher's cancel, or the runner reporting the agent it just started was stopped.
    let summary = runs[0]["outcome_summary"].as_str().unwrap_or_default();
    assert!(
        summary == "Cancelled while its agent was being started"
            || summary == "Cancelled; the agent was stopped.",
        "the dispatcher stopped the agent the runner had just started: {}",
        runs[0]
    );
    // The agent may have been stopped before it wrote its pid file; if it wrote it, its
    // processes are gone.
    if let Ok(pids) = std::fs::read_to_string(&pid_file) {
        for pid in pids.split_whitespace() {
            eventually(15, "the agent's processes to be gone", async || !alive(pid)).await;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
