//! `dispatch import …` against the real binary and the configured store (SQLite by default, a
//! fresh PostgreSQL database with DISPATCH_TEST_STORE=postgres), then a server on that store.

mod support;

use serde_json::Value;
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
