//! Two `dispatch serve` processes on one PostgreSQL database, as two replicas behind one load
//! balancer would run.

mod support;

use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use support::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_stream_on_one_process_sees_issues_created_through_the_other() {
    let db = support::PgDatabase::create();
    let url = db.url().to_string();
    let a = Server::builder().env("PG_DATABASE_URL", &url).start();
    let b = Server::builder().env("PG_DATABASE_URL", &url).start();
    let c = support::http();

    let resp = c
        .get(b.url("/api/board/stream"))
        .bearer_auth(&b.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let created: Value = c
        .post(a.url("/api/issues"))
        .bearer_auth(&a.api_key)
        .json(&json!({"title": "made on A"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains("issue_created") && seen.contains(&id) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(
        found,
        "B's board stream did not show A's issue; got: {seen}"
    );
    // And B serves it from the shared database.
    let got: Value = c
        .get(b.url(&format!("/api/issues/{id}")))
        .bearer_auth(&b.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["title"], "made on A");
    drop(a);
    drop(b);
}

#[test]
fn agent_filter_renders_stream_json() {
    let input = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dispatch-core/tests/fixtures/claude-code/stream-json.jsonl"
    ))
    .unwrap();
    let dir =
        std::env::temp_dir().join(format!("dispatch-filter-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let summary = dir.join("summary.json");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dispatch"))
        .args(["agent-filter", "--summary-json"])
        .arg(&summary)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("not json at all\n{input}").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("not json at all\n"),
        "non-JSON lines are echoed: {text}"
    );
    assert!(text.contains("[TOOL] Grep("), "{text}");
    assert!(text.contains("[RESULT] "), "{text}");
    assert!(text.contains("[COMPLETED] Cost: $"), "{text}");
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert!(s["cost_usd"].as_f64().unwrap() > 0.0);
    assert!(s["num_turns"].as_u64().unwrap() >= 1);
}

/// A runner slower than the lease (a worktree whose checkout hook blocks until the test lets it
/// go), two processes on one PostgreSQL database: the process that claimed the run renews its
/// lease while the runner works, the other never takes the run over, and the run is dispatched
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_slower_than_the_lease_is_claimed_once_across_processes() {
    let db = support::PgDatabase::create();
    let url = db.url().to_string();
    let dir =
        std::env::temp_dir().join(format!("dispatch-lease-{}", uuid::Uuid::now_v7().simple()));
    let (repo, fifo) = support::repo_with_blocking_checkout(&dir);
    let agent = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dispatch-adapters/tests/fixtures/local/agent-forever.sh");
    let start = |name: &str| {
        Server::builder()
            .env("PG_DATABASE_URL", &url)
            .env("DISPATCH_LOCAL_REPO", &repo.to_string_lossy())
            .env("DISPATCH_WORKTREE_DIR", &dir.join(name).to_string_lossy())
            .env(
                "DISPATCH_AGENT_COMMAND",
                &format!("{} {{prompt}}", agent.display()),
            )
            .env(
                "AGENT_PID_FILE",
                &dir.join(format!("{name}.pid")).to_string_lossy(),
            )
            .env("DISPATCH_LEASE_SECONDS", "2")
            .start()
    };
    let a = start("a");
    let b = start("b");
    let (_, issue) = support::post(&a, "/api/issues", json!({ "title": "slow" })).await;
    let ident = issue["identifier"].as_str().unwrap().to_string();
    let (st, r) = support::post(
        &a,
        &format!("/api/issues/{ident}/spawn"),
        json!({ "type": "triage" }),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    let runs = format!("/api/issues/{ident}/runs");
    let run = |s: &Server| {
        let runs = runs.clone();
        let s_url = s.url(&runs);
        let key = s.api_key.clone();
        async move {
            let v: Value = support::http()
                .get(s_url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v[0].clone()
        }
    };
    // One of the two claims it; its runner blocks in the checkout hook.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let claimed = loop {
        let r = run(&a).await;
        if r["status"] == "dispatching" {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "never claimed: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(claimed["claim"], 1, "{claimed}");
    let first_lease: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(claimed["lease_until"].clone()).unwrap();
    // Both dispatchers poll every second. Wait until the lease has been renewed past three
    // original leases: the first lease has long run out, so without renewal the other process
    // would have claimed the run by now.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = run(&b).await;
        assert_eq!(r["claim"], 1, "the other process took the run over: {r}");
        assert_eq!(r["status"], "dispatching", "{r}");
        let lease: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(r["lease_until"].clone()).unwrap();
        if lease > first_lease + chrono::Duration::seconds(6) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease was not renewed: {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the runner go: the run starts once, under the first claim.
    std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let running = loop {
        let r = run(&a).await;
        if r["status"] == "running" {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "never started: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(running["claim"], 1, "{running}");
    let (_, all) = support::get(&a, &runs).await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    let pid_files = ["a", "b"]
        .iter()
        .filter(|n| dir.join(format!("{n}.pid")).exists())
        .count();
    assert!(pid_files <= 1, "at most one agent was started");
    let (st, _) = support::post(&a, &format!("/api/issues/{ident}/spawn/cancel"), json!({})).await;
    assert_eq!(st, 200);
}
