//! `dispatch import …` against the real binary and the configured store (SQLite by default, a
//! fresh PostgreSQL database with DISPATCH_TEST_STORE=postgres), then a server on that store.

mod support;

use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use support::{PgDatabase, Server, get};

const SAMPLE: &str = include_str!("../../dispatch-core/src/import/fixtures/linear_export.csv");

/// Runs `dispatch <args>` in `dir` with the store of the test; returns the JSON report.
fn dispatch(dir: &Path, pg: Option<&PgDatabase>, args: &[&str]) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dispatch"));
    cmd.args(args).current_dir(dir).env_clear();
    for k in ["PATH", "HOME"] {
        if let Ok(v) = std::env::var(k) {
            cmd.env(k, v);
        }
    }
    cmd.env("DISPATCH_API_KEY", "test-api-key-0123456789")
        .env("DISPATCH_PASSWORD", "test-password")
        .env("RUST_LOG", "warn");
    if let Some(pg) = pg {
        cmd.env("PG_DATABASE_URL", pg.url());
    }
    let out = cmd.output().expect("run dispatch");
    assert!(
        out.status.success(),
        "dispatch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn temp_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "dispatch-import-test-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[tokio::test]
async fn linear_csv_through_the_cli_dry_run_then_once_then_nothing_new() {
    let dir = temp_dir();
    let pg = support::postgres_requested().then(PgDatabase::create);
    if let Some(pg) = &pg {
        // The server started below finds the same database.
        std::fs::write(dir.join("pg_database_url"), pg.url()).unwrap();
    }
    let csv = dir.join("linear.csv");
    std::fs::write(&csv, SAMPLE).unwrap();
    let csv = csv.to_str().unwrap();

    let dry = dispatch(&dir, pg.as_ref(), &["import", "linear", csv, "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["rows"], 7);
    assert_eq!(dry["issues_created"], 7);
    assert_eq!(dry["by_column"]["Canceled"], 2);
    let real = dispatch(&dir, pg.as_ref(), &["import", "linear", csv]);
    assert_eq!(real["dry_run"], false);
    assert_eq!(
        real["issues_created"], 7,
        "the dry run wrote nothing: {real}"
    );
    assert_eq!(real["mapping"], dry["mapping"]);
    let again = dispatch(&dir, pg.as_ref(), &["import", "linear", csv]);
    assert_eq!(again["issues_created"], 0);
    assert_eq!(again["issues_skipped"], 7);

    let s = Server::builder().dir(dir.clone()).start();
    let (st, issue) = get(&s, "/api/issues/DISPATCH-1").await;
    assert_eq!(st, 200, "{issue}");
    assert_eq!(
        issue["title"],
        "Checkout fails for EU cards with 3-D Secure"
    );
    assert_eq!(issue["priority"], "P1");
    let (_, all) = get(&s, "/api/issues").await;
    assert_eq!(all.as_array().map(Vec::len), Some(7), "{all}");
    drop(s);
}

/// Runs `dispatch <args>` like [`dispatch`]; returns the JSON report and the summary on stderr.
fn dispatch_with_summary(dir: &Path, pg: Option<&PgDatabase>, args: &[&str]) -> (Value, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dispatch"));
    cmd.args(args).current_dir(dir).env_clear();
    for k in ["PATH", "HOME"] {
        if let Ok(v) = std::env::var(k) {
            cmd.env(k, v);
        }
    }
    cmd.env("DISPATCH_API_KEY", "test-api-key-0123456789")
        .env("DISPATCH_PASSWORD", "test-password")
        .env("RUST_LOG", "warn");
    if let Some(pg) = pg {
        cmd.env("PG_DATABASE_URL", pg.url());
    }
    let out = cmd.output().expect("run dispatch");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "dispatch {args:?}: {stderr}");
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (report, stderr)
}

/// The original's migration files, in order (pgvector's column type as TEXT when the server has
/// no pgvector: the import never reads embeddings).
fn original_schema(has_vector: bool) -> String {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/original-migrations");
    let dir = if dir.exists() {
        dir
    } else {
        std::path::PathBuf::from("/work/shared/reference/original-migrations")
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    let sql: String = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap() + "\n")
        .collect();
    if has_vector {
        sql
    } else {
        sql.replace("CREATE EXTENSION IF NOT EXISTS vector;", "")
            .replace("vector(1536)", "TEXT")
    }
}

fn psql(url: &str, sql: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qAtX"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const ORIGINAL_TOKEN: &str = "3c9b8e3f2a1d0c9b8a7f6e5d4c3b2a1908f7e6d5c4b3a291805f0c6f6b1e2d4a";

/// `dispatch import original --from …` against a database made with the original's own
/// migrations: the dry run's counts per kind are the real run's, the run the original left
/// running is imported failed and holds no slot, a row whose key exists here is left out with
/// its reason, a second run creates nothing, and an original portal link works on the server.
#[tokio::test]
async fn original_database_through_the_cli_then_its_portal_link_on_the_server() {
    let dir = temp_dir();
    let pg = support::postgres_requested().then(PgDatabase::create);
    if let Some(pg) = &pg {
        std::fs::write(dir.join("pg_database_url"), pg.url()).unwrap();
    }
    let original = PgDatabase::create();
    let has_vector = psql(
        original.url(),
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector';",
    ) != "0";
    psql(original.url(), &original_schema(has_vector));
    psql(
        original.url(),
        &format!(
            r#"
INSERT INTO dispatch_workspace (id, name, issue_prefix, next_issue_number) VALUES ('ws1', 'W', 'DISPATCH', 4);
INSERT INTO dispatch_status (id, workspace_id, name, color, position) VALUES ('st-ip', 'ws1', 'In Progress', '#3B82F6', 3);
INSERT INTO dispatch_agent (id, workspace_id, name, webhook_url, webhook_secret) VALUES ('ag1', 'ws1', 'claude', 'https://agents.example/hook', 'original-secret');
INSERT INTO dispatch_customer (id, workspace_id, name, slug, portal_token) VALUES ('cu1', 'ws1', 'Acme Corp', 'acme', '{ORIGINAL_TOKEN}');
INSERT INTO dispatch_issue (id, identifier, issue_number, workspace_id, title, status_id, priority, customer_id) VALUES
 ('is1', 'DISPATCH-1', 1, 'ws1', 'Export times out', 'st-ip', 'P2', 'cu1'),
 ('is3', 'DISPATCH-3', 3, 'ws1', 'Login loops', 'st-ip', 'P1', NULL);
INSERT INTO dispatch_issue_watcher (issue_id, customer_id) VALUES ('is1', 'cu1');
INSERT INTO dispatch_agent_runs (id, issue_id, workflow_type, status, cost_usd, num_turns, started_at, created_at) VALUES
 ('run1', 'is1', 'prd_investigate', 'completed', 0.75, 9, '2026-01-07T08:00:00Z', '2026-01-07T08:00:00Z'),
 ('run2', 'is3', 'error_fix', 'running', 0, 0, '2026-01-08T08:00:00Z', '2026-01-08T08:00:00Z');
INSERT INTO dispatch_issue_pr (issue_id, pr_number, pr_url, pr_title, pr_status, run_id) VALUES ('is1', 12, 'https://github.com/acme/app/pull/12', 'Stream exports', 'open', 'run1');
"#
        ),
    );
    // Made here before the move: an agent named like the original's.
    let s = Server::builder().dir(dir.clone()).start();
    let (st, made) = support::post(&s, "/api/agents", json!({ "name": "Claude" })).await;
    assert_eq!(st, 201, "{made}");
    drop(s);

    let from = original.url();
    let (dry, summary) = dispatch_with_summary(
        &dir,
        pg.as_ref(),
        &["import", "original", "--from", from, "--dry-run"],
    );
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        dry["created"],
        json!({"customer": 1, "issue": 2, "pr_link": 1, "run": 2, "watcher": 1})
    );
    assert_eq!(dry["not_imported"], json!({"agent": 1}));
    let left_out: Vec<&Value> = dry["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["skipped"] == true)
        .collect();
    assert_eq!(left_out.len(), 1, "{dry}");
    assert_eq!(
        (&left_out[0]["kind"], &left_out[0]["external_id"]),
        (&json!("agent"), &json!("ag1"))
    );
    assert!(
        summary.contains("run: 2 to create, 0 already imported, 0 not imported"),
        "{summary}"
    );
    assert!(
        summary.contains("not imported: agent ag1: an agent named \"claude\" exists here"),
        "{summary}"
    );

    let (real, summary) =
        dispatch_with_summary(&dir, pg.as_ref(), &["import", "original", "--from", from]);
    assert_eq!(real["dry_run"], false);
    assert_eq!(real["created"], dry["created"], "the dry run wrote nothing");
    assert_eq!(real["not_imported"], dry["not_imported"]);
    assert!(summary.contains("run: 2 created"), "{summary}");
    let (again, _) =
        dispatch_with_summary(&dir, pg.as_ref(), &["import", "original", "--from", from]);
    assert_eq!(again["created"], json!({}));
    assert_eq!(again["skipped"], dry["created"]);

    let s = Server::builder().dir(dir.clone()).start();
    // The original portal link.
    let r = support::http()
        .get(s.url(&format!("/api/portal/acme?token={ORIGINAL_TOKEN}")))
        .send()
        .await
        .expect("portal");
    assert_eq!(r.status(), 200);
    let board: Value = r.json().await.expect("portal JSON");
    assert_eq!(board["customer"]["name"], "Acme Corp");
    // The runs: ended, the stale one failed; nothing active in the fleet.
    let (st, runs) = get(&s, "/api/issues/DISPATCH-3/runs").await;
    assert_eq!(st, 200, "{runs}");
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
    assert_eq!(runs[0]["status"], "failed", "{runs}");
    let (_, runs) = get(&s, "/api/issues/DISPATCH-1/runs").await;
    assert_eq!(runs[0]["status"], "completed", "{runs}");
    let (st, stats) = get(&s, "/api/spawns/stats").await;
    assert_eq!(st, 200, "{stats}");
    assert_eq!(
        (
            &stats["active"],
            &stats["running"],
            &stats["queued"],
            &stats["staleCount"]
        ),
        (&json!(0), &json!(0), &json!(0), &json!(0)),
        "{stats}"
    );
    assert_eq!(stats["budget"]["error_fix"]["used"], 0, "January's runs");
    let (_, issue) = get(&s, "/api/issues/DISPATCH-3").await;
    assert_eq!(issue["spawn_status"], "failed", "{issue}");
    let (_, issue) = get(&s, "/api/issues/DISPATCH-1").await;
    assert_eq!(issue["title"], "Export times out");
    drop(s);
    drop(original);
}
