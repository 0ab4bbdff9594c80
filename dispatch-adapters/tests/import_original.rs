//! `dispatch import original`: a scratch PostgreSQL database with the original Dispatch's schema
//! (its migration files applied in order) and a realistic data set, read and imported into the
//! SQLite and the PostgreSQL store: counts, spot checks, an alert with an original fingerprint
//! deduplicating onto the imported issue, a second run importing nothing, a dry run writing
//! nothing.
#![cfg(all(feature = "postgres", feature = "sqlite"))]

mod support;

use dispatch_adapters::original::read_original;
use dispatch_adapters::postgres::PostgresStore;
use dispatch_adapters::sqlite::SqliteStore;
use dispatch_core::event::{ErrorEvent, fingerprint_message};
use dispatch_core::ids::IssueRef;
use dispatch_core::import::original::plan;
use dispatch_core::issue::{ActorKind, HistoryAction, IssueFilter};
use dispatch_core::ports::Store;
use dispatch_core::testkit::FakeRunner;
use dispatch_core::{Dispatch, Timestamp};
use sqlx::PgPool;
use std::sync::Arc;

const TOKEN: &str = "5f0c6f6b1e2d4a7c9b8e3f2a1d0c9b8a7f6e5d4c3b2a1908f7e6d5c4b3a29180";

fn migrations() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/reference/original-migrations");
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
    files
        .into_iter()
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

/// Creates the original's database: its migrations in order (without pgvector when the server
/// has none: the embedding columns become TEXT, which the import never reads), then the data.
async fn original_db(admin: &PgPool) -> (String, String) {
    let name = format!("dispatch_import_orig_{}", uuid::Uuid::now_v7().simple());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin)
        .await
        .unwrap();
    let base = support::database_url();
    let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
    let pool = PgPool::connect(&url).await.unwrap();
    let has_vector: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    for (file, sql) in migrations() {
        let sql = if has_vector {
            sql
        } else {
            sql.replace("CREATE EXTENSION IF NOT EXISTS vector;", "")
                .replace("vector(1536)", "TEXT")
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let (_, fp) = fingerprint_message("billing", "invoices", "Payment failed for invoice 123456");
    let data = format!(
        r#"
INSERT INTO dispatch_workspace (id, name, issue_prefix, next_issue_number, created_at) VALUES ('ws1', 'My Workspace', 'DISPATCH', 6, '2026-01-02T10:00:00Z');
INSERT INTO dispatch_status (id, workspace_id, name, color, position, is_closed) VALUES
 ('st-backlog', 'ws1', 'Backlog', '#6B7280', 0, false), ('st-inv', 'ws1', 'Investigating', '#F59E0B', 1, false),
 ('st-nr', 'ws1', 'Needs Review', '#EAB308', 2, false), ('st-ip', 'ws1', 'In Progress', '#3B82F6', 3, false),
 ('st-ir', 'ws1', 'In Review', '#10B981', 4, false), ('st-done', 'ws1', 'Done', '#22C55E', 5, true),
 ('st-can', 'ws1', 'Canceled', '#EF4444', 6, true);
INSERT INTO dispatch_label (id, workspace_id, name, color) VALUES ('lb-bug', 'ws1', 'bug', '#EF4444'), ('lb-loki', 'ws1', 'Loki', '#E6522C'), ('lb-billing', 'ws1', 'Billing', '#0EA5E9');
INSERT INTO dispatch_agent (id, workspace_id, name) VALUES ('ag1', 'ws1', 'claude'), ('ag2', 'ws1', 'GitHub Actions');
INSERT INTO dispatch_customer (id, workspace_id, name, slug, slack_channel_id, portal_token, brand_color, logo_url, created_at, updated_at)
 VALUES ('cu1', 'ws1', 'Acme Corp', 'acme', 'C0ACME', '{TOKEN}', '#f9db00', 'https://acme.example/logo.png', '2026-01-03T09:00:00Z', '2026-01-03T09:00:00Z');
INSERT INTO dispatch_issue (id, identifier, issue_number, workspace_id, title, description, status_id, priority, assignee_id, customer_id, created_at, updated_at) VALUES
 ('is1', 'DISPATCH-1', 1, 'ws1', 'Onboarding email has a broken link', 'The CTA points to /welcom', 'st-backlog', 'P3', NULL, NULL, '2026-01-05T10:00:00Z', '2026-01-05T10:00:00Z'),
 ('is2', 'DISPATCH-2', 2, 'ws1', '[billing/invoices] Payment failed for invoice *', 'Loki error', 'st-ip', 'P1', 'ag1', NULL, '2026-01-06T08:00:00Z', '2026-01-07T08:00:00Z'),
 ('is3', 'DISPATCH-3', 3, 'ws1', 'Export to CSV times out for Acme', 'Acme reports exports over 10k rows fail', 'st-done', 'P2', 'ag1', 'cu1', '2026-01-08T12:00:00Z', '2026-01-12T12:00:00Z'),
 ('is5', 'DISPATCH-5', 5, 'ws1', 'SSO login loops for Acme admins', NULL, 'st-ir', 'P4', NULL, 'cu1', '2026-01-10T12:00:00Z', '2026-01-11T12:00:00Z');
INSERT INTO dispatch_issue_label (issue_id, label_id) VALUES ('is2', 'lb-loki'), ('is2', 'lb-billing'), ('is3', 'lb-bug');
INSERT INTO dispatch_issue_watcher (issue_id, customer_id, added_at) VALUES ('is3', 'cu1', '2026-01-08T12:01:00Z'), ('is5', 'cu1', '2026-01-10T12:01:00Z');
INSERT INTO dispatch_comment (id, issue_id, author_id, body, created_at, updated_at) VALUES
 ('cm1', 'is3', 'ag1', 'Root cause: the export query has no LIMIT; streaming it now.', '2026-01-09T09:00:00Z', '2026-01-09T09:00:00Z'),
 ('cm2', 'is3', NULL, 'Confirmed fixed on our side, thanks!', '2026-01-12T11:00:00Z', '2026-01-12T11:00:00Z'),
 ('cm3', 'is5', 'ag2', 'PR #88 opened', '2026-01-11T10:00:00Z', '2026-01-11T10:00:00Z');
INSERT INTO dispatch_issue_history (issue_id, action, old_value, new_value, actor_type, actor_name, created_at) VALUES
 ('is2', 'created', NULL, '{{"title": "[billing/invoices] Payment failed"}}', 'system', 'Loki Webhook', '2026-01-06T08:00:00Z'),
 ('is2', 'status_changed', '{{"status": "Backlog"}}', '{{"status": "In Progress"}}', 'agent', 'GitHub Actions', '2026-01-06T08:05:00Z'),
 ('is3', 'pr_linked', NULL, '{{"pr_number": 77}}', 'github_webhook', 'GitHub', '2026-01-11T09:00:00Z'),
 ('is3', 'status_changed', '{{"status": "In Review"}}', '{{"status": "Done"}}', 'user', 'User', '2026-01-12T12:00:00Z');
INSERT INTO dispatch_external_issue (id, issue_id, source, external_id, external_url, metadata, cooldown_until, event_count, last_seen_at, created_at) VALUES
 ('ex1', 'is2', 'loki', '{fp}', 'https://grafana.example/alert/1', '{{"source": "billing", "feature": "invoices"}}', '2026-01-06T20:00:00Z', 17, '2026-01-07T07:00:00Z', '2026-01-06T08:00:00Z'),
 ('ex2', 'is3', 'sentry', '4501234', 'https://sentry.io/issues/4501234', '{{"shortId": "WEB-1A"}}', NULL, 3, '2026-01-08T13:00:00Z', '2026-01-08T12:00:00Z');
INSERT INTO dispatch_agent_runs (id, issue_id, github_run_id, workflow_type, status, outcome, cost_usd, num_turns, started_at, completed_at, created_at) VALUES
 ('run1', 'is3', '9001', 'prd_investigate', 'completed', 'investigation_complete', 1.25, 30, '2026-01-08T13:00:00Z', '2026-01-08T13:20:00Z', '2026-01-08T13:00:00Z'),
 ('run2', 'is2', '9002', 'error_fix', 'running', NULL, 0, 0, '2026-01-07T08:00:00Z', NULL, '2026-01-07T08:00:00Z');
INSERT INTO dispatch_fix_attempt (id, issue_id, pr_number, pr_url, pr_title, merged_at, merged_sha, deployed_at, verification_status, verification_deadline) VALUES
 ('fx1', 'is3', 77, 'https://github.com/acme/app/pull/77', 'Stream CSV exports', '2026-01-11T09:00:00Z', 'abc123', '2026-01-11T10:00:00Z', 'monitoring', '2026-01-13T10:00:00Z');
"#
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(data))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    (name, url)
}

fn now() -> Timestamp {
    "2026-02-01T09:00:00Z".parse().unwrap()
}

async fn check(store: Arc<dyn Store>, url: &str, what: &str) {
    let s = &*store;
    let ws = s
        .ensure_workspace("Dispatch", "DISPATCH", now())
        .await
        .unwrap();
    let data = read_original(url).await.expect("read the original");
    assert_eq!(
        (
            data.issues.len(),
            data.comments.len(),
            data.history.len(),
            data.links.len()
        ),
        (4, 3, 4, 2)
    );
    let p = plan(&data, "DISPATCH");
    assert!(p.problems.is_empty(), "{:?}", p.problems);

    let dry = s
        .apply_import(ws.id, &p, true, now())
        .await
        .expect("dry run");
    assert!(dry.dry_run);
    let counts = |r: &dispatch_core::import::ImportReport| {
        [
            "customer",
            "issue",
            "comment",
            "history",
            "link",
            "watcher",
            "fix_attempt",
        ]
        .map(|k| r.created.get(k).copied().unwrap_or(0))
    };
    assert_eq!(
        counts(&dry),
        [1, 4, 3, 4, 2, 2, 1],
        "{what}: {:?}",
        dry.created
    );
    assert!(
        s.list_issues(ws.id, &IssueFilter::default())
            .await
            .unwrap()
            .is_empty(),
        "{what}: the dry run wrote nothing"
    );
    assert!(s.get_customer_by_token(TOKEN).await.unwrap().is_none());

    let real = s
        .apply_import(ws.id, &p, false, now())
        .await
        .expect("import");
    assert_eq!(counts(&real), [1, 4, 3, 4, 2, 2, 1], "{what}");
    let issues = s.list_issues(ws.id, &IssueFilter::default()).await.unwrap();
    let mut idents: Vec<_> = issues.iter().map(|i| i.identifier.clone()).collect();
    idents.sort();
    assert_eq!(
        idents,
        ["DISPATCH-1", "DISPATCH-2", "DISPATCH-3", "DISPATCH-5"],
        "{what}: identifiers kept"
    );
    let i2 = s
        .get_issue(ws.id, &IssueRef::from("DISPATCH-2"))
        .await
        .unwrap();
    assert_eq!(i2.priority, dispatch_core::issue::Priority::P1);
    assert_eq!(i2.assignee.as_deref(), Some("claude"));
    let cols = s.list_columns(ws.id).await.unwrap();
    let col = |id| cols.iter().find(|c| c.id == id).unwrap().name.clone();
    assert_eq!(col(i2.column_id), "In Progress");
    assert_eq!(i2.labels.len(), 2);
    assert_eq!(
        i2.created_at,
        "2026-01-06T08:00:00Z".parse::<Timestamp>().unwrap()
    );
    let h = s.list_history(i2.id, 10).await.unwrap();
    assert_eq!(h.len(), 2, "{what}");
    assert_eq!(h[0].action, HistoryAction::StatusChanged);
    assert_eq!(h[0].actor.kind, ActorKind::Agent);
    assert_eq!(h[0].new_value.as_ref().unwrap()["status"], "In Progress");
    let i3 = s
        .get_issue(ws.id, &IssueRef::from("DISPATCH-3"))
        .await
        .unwrap();
    assert_eq!(col(i3.column_id), "Done");
    let comments = s.list_comments(i3.id).await.unwrap();
    assert_eq!(comments.len(), 2);
    assert_eq!(comments[0].author.as_deref(), Some("claude"));
    assert!(comments[0].body.starts_with("Root cause"));
    // The customer keeps its portal token and watches its issues.
    let acme = s
        .get_customer_by_token(TOKEN)
        .await
        .unwrap()
        .expect("the original token finds the customer");
    assert_eq!(
        (acme.slug.as_str(), acme.brand_color.as_deref()),
        ("acme", Some("#f9db00"))
    );
    assert_eq!(i3.customer_id, Some(acme.id));
    assert_eq!(s.list_watchers(i3.id).await.unwrap(), vec![acme.id]);
    // Links keep their key, count and cooldown.
    let (_, fp) = fingerprint_message("billing", "invoices", "Payment failed for invoice 123456");
    let link = s
        .get_link("loki", fp.as_str())
        .await
        .unwrap()
        .expect("the loki link");
    assert_eq!((link.issue_id, link.event_count), (i2.id, 17));
    assert_eq!(
        link.cooldown_until,
        Some("2026-01-06T20:00:00Z".parse().unwrap())
    );
    assert!(s.get_link("sentry", "4501234").await.unwrap().is_some());
    assert_eq!(
        s.get_workspace(ws.id).await.unwrap().next_issue_number,
        6,
        "{what}: the counter is the original's"
    );

    // Again: nothing new.
    let again = s
        .apply_import(ws.id, &p, false, now())
        .await
        .expect("import again");
    assert!(again.created.is_empty(), "{what}: {:?}", again.created);
    assert_eq!(again.skipped.get("issue"), Some(&4));
    assert_eq!(s.list_comments(i3.id).await.unwrap().len(), 2);

    // An alert with the original's fingerprint lands on the imported issue; new issues number on.
    let engine = Dispatch::builder(store.clone(), Arc::new(FakeRunner::default()))
        .build()
        .await
        .unwrap();
    let mut ev = ErrorEvent::new(
        "loki",
        "billing",
        "invoices",
        "Payment failed for invoice 987654",
    );
    ev.event_count = 2;
    let r = engine.ingest(ev).await.expect("ingest");
    assert!(!r.created, "{what}: deduplicated");
    assert_eq!(r.issue.identifier, "DISPATCH-2");
    assert_eq!(r.event_count, 19);
    let fresh = engine
        .create_issue(
            dispatch_core::issue::NewIssue::titled("after the move"),
            &dispatch_core::issue::Actor::user("t"),
        )
        .await
        .unwrap();
    assert_eq!(fresh.identifier, "DISPATCH-6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_database_moves_into_sqlite_and_postgres_once() {
    let admin = support::admin_pool().await;
    let (name, url) = original_db(&admin).await;

    let dir =
        std::env::temp_dir().join(format!("dispatch-import-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = SqliteStore::open(dir.join("d.db").to_str().unwrap())
        .await
        .unwrap();
    check(Arc::new(sqlite), &url, "sqlite").await;

    let (schema, opts) = support::fresh_schema(&admin).await;
    let pg = PostgresStore::from_pool(support::pool(&opts, 4).await)
        .await
        .unwrap();
    check(Arc::new(pg), &url, "postgres").await;

    support::drop_schema(&admin, &schema).await;
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await;
}
