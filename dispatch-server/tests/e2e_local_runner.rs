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
