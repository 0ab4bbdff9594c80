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
