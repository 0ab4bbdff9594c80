//! `dispatch import original`: a scratch PostgreSQL database with the original Dispatch's schema
//! (its migration files applied in order) and a realistic data set, read and imported into the
//! SQLite and the PostgreSQL store, which already hold a customer and an agent with the keys of
//! two original rows: every row counted (created, or left out with its reason), spot checks of
//! each kind (runs ended — the one the original left running failed, holding no slot — with
//! their activities and PR links; agents with their webhook; reporters), an alert with an
//! original fingerprint deduplicating onto the imported issue, a second run importing nothing, a
//! dry run writing nothing and saying what the real run did.
#![cfg(all(feature = "postgres", feature = "sqlite"))]

mod support;

use dispatch_adapters::original::read_original;
use dispatch_adapters::postgres::PostgresStore;
use dispatch_adapters::sqlite::SqliteStore;
use dispatch_core::agent::NewAgent;
use dispatch_core::customer::{Customer, new_portal_token};
use dispatch_core::event::{ErrorEvent, fingerprint_message};
use dispatch_core::ids::{CustomerId, IssueRef};
use dispatch_core::import::STALE_AT_IMPORT;
use dispatch_core::import::original::plan;
use dispatch_core::issue::{ActorKind, HistoryAction, IssueFilter, SpawnStatus};
use dispatch_core::plan::PlanStatus;
use dispatch_core::ports::Store;
use dispatch_core::ports::{ContentBlock, Role};
use dispatch_core::pr::PrStatus;
use dispatch_core::run::{Outcome, RunStatus, WorkflowKind};
use dispatch_core::testkit::FakeRunner;
use dispatch_core::{Dispatch, Timestamp};
use sqlx::PgPool;
use std::sync::Arc;

const TOKEN: &str = "5f0c6f6b1e2d4a7c9b8e3f2a1d0c9b8a7f6e5d4c3b2a1908f7e6d5c4b3a29180";
const GLOBEX_TOKEN: &str = "7a1d0c9b8a7f6e5d4c3b2a1908f7e6d5c4b3a291805f0c6f6b1e2d4a7c9b8e3f";
const AGENT_SECRET: &str = "whsec-original-claude-0123456789abcdef";

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
INSERT INTO dispatch_agent (id, workspace_id, name, description, webhook_url, webhook_secret, is_active, created_at, updated_at) VALUES
 ('ag1', 'ws1', 'claude', 'Claude Code in GitHub Actions', 'https://agents.example/claude/hook', '{AGENT_SECRET}', true, '2026-01-02T10:00:00Z', '2026-01-04T10:00:00Z'),
 ('ag2', 'ws1', 'GitHub Actions', NULL, NULL, NULL, false, '2026-01-02T10:00:00Z', NULL);
INSERT INTO dispatch_customer (id, workspace_id, name, slug, slack_channel_id, portal_token, brand_color, logo_url, created_at, updated_at) VALUES
 ('cu1', 'ws1', 'Acme Corp', 'acme', 'C0ACME', '{TOKEN}', '#f9db00', 'https://acme.example/logo.png', '2026-01-03T09:00:00Z', '2026-01-03T09:00:00Z'),
 ('cu2', 'ws1', 'Globex', 'globex', NULL, '{GLOBEX_TOKEN}', NULL, NULL, '2026-01-03T09:30:00Z', '2026-01-03T09:30:00Z');
INSERT INTO dispatch_customer_user (id, customer_id, slack_user_id, slack_display_name, slack_avatar_url, email, created_at, updated_at) VALUES
 ('cuu1', 'cu1', 'U0ACME1', 'Wile E.', 'https://avatars.example/wile.png', 'wile@acme.example', '2026-01-03T09:05:00Z', '2026-01-04T09:05:00Z'),
 ('cuu2', 'cu2', 'U0GLOBEX', 'Hank', NULL, NULL, '2026-01-03T09:35:00Z', '2026-01-03T09:35:00Z');
INSERT INTO dispatch_issue (id, identifier, issue_number, workspace_id, title, description, status_id, priority, assignee_id, customer_id, reporter_id, created_at, updated_at) VALUES
 ('is1', 'DISPATCH-1', 1, 'ws1', 'Onboarding email has a broken link', 'The CTA points to /welcom', 'st-backlog', 'P3', NULL, NULL, NULL, '2026-01-05T10:00:00Z', '2026-01-05T10:00:00Z'),
 ('is2', 'DISPATCH-2', 2, 'ws1', '[billing/invoices] Payment failed for invoice *', 'Loki error', 'st-ip', 'P1', 'ag1', NULL, NULL, '2026-01-06T08:00:00Z', '2026-01-07T08:00:00Z'),
 ('is3', 'DISPATCH-3', 3, 'ws1', 'Export to CSV times out for Acme', 'Acme reports exports over 10k rows fail', 'st-done', 'P2', 'ag1', 'cu1', 'cuu1', '2026-01-08T12:00:00Z', '2026-01-12T12:00:00Z'),
 ('is5', 'DISPATCH-5', 5, 'ws1', 'SSO login loops for Acme admins', NULL, 'st-ir', 'P4', NULL, 'cu1', NULL, '2026-01-10T12:00:00Z', '2026-01-11T12:00:00Z');
INSERT INTO dispatch_issue_label (issue_id, label_id) VALUES ('is2', 'lb-loki'), ('is2', 'lb-billing'), ('is3', 'lb-bug');
INSERT INTO dispatch_issue_watcher (issue_id, customer_id, added_at) VALUES ('is3', 'cu1', '2026-01-08T12:01:00Z'), ('is5', 'cu1', '2026-01-10T12:01:00Z'), ('is5', 'cu2', '2026-01-10T12:02:00Z');
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
INSERT INTO dispatch_agent_runs (id, issue_id, github_run_id, github_run_url, workflow_type, status, outcome, outcome_summary, report_content, cost_usd, num_turns, model, tokens_used, pr_number, started_at, completed_at, created_at) VALUES
 ('run1', 'is3', '9001', 'https://github.com/acme/app/actions/runs/9001', 'prd_investigate', 'completed', 'investigation_complete', 'The export query has no LIMIT', '## Root cause', 1.25, 30, 'claude-sonnet-4', 52000, NULL, '2026-01-08T13:00:00Z', '2026-01-08T13:20:00Z', '2026-01-08T13:00:00Z'),
 ('run2', 'is2', '9002', NULL, 'error_fix', 'running', NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, '2026-01-07T08:00:00Z', NULL, '2026-01-07T08:00:00Z'),
 ('run3', 'is5', '9003', NULL, 'prd_implement', 'failed', 'failed', 'Tests failed', NULL, 0.5, 8, 'claude-sonnet-4', NULL, 88, '2026-01-11T09:00:00Z', '2026-01-11T09:40:00Z', '2026-01-11T09:00:00Z');
UPDATE dispatch_agent_runs SET transcript = E'Reading src/export.ts\nFound the unbounded query', files_changed = '["src/export.ts", "src/stream.ts"]', follow_ups = '[{{"title": "Paginate the export API", "priority": "P3"}}]' WHERE id = 'run1';
INSERT INTO dispatch_agent_activity (id, issue_id, run_id, type, content, metadata, created_at) VALUES
 ('act1', 'is3', 'run1', 'investigation_complete', 'Root cause: unbounded query', '{{"files": 2}}', '2026-01-08T13:19:00Z'),
 ('act2', 'is2', 'run2', 'thought', 'Looking at the invoice worker', NULL, '2026-01-07T08:01:00Z'),
 ('act3', 'is5', NULL, 'agent_heartbeat', 'alive', NULL, '2026-01-11T09:10:00Z');
INSERT INTO dispatch_issue_pr (issue_id, pr_number, pr_url, pr_title, pr_status, branch_name, author, base_branch, head_branch, match_confidence, merged_at, run_id, created_at, updated_at) VALUES
 ('is3', 77, 'https://github.com/acme/app/pull/77', 'Stream CSV exports', 'merged', 'fix/export', 'claude[bot]', 'main', 'fix/export', 1.0, '2026-01-11T09:00:00Z', 'run1', '2026-01-10T09:00:00Z', '2026-01-11T09:00:00Z'),
 ('is5', 88, 'https://github.com/acme/app/pull/88', 'Fix SSO redirect loop', 'open', NULL, 'claude[bot]', 'main', 'fix/sso', 0.8, NULL, 'run3', '2026-01-11T09:30:00Z', '2026-01-11T09:30:00Z');
INSERT INTO dispatch_webhook (id, workspace_id, url, secret, events, enabled) VALUES
 ('wh1', 'ws1', 'https://hooks.example/dispatch', 'original-webhook-secret', ARRAY['ISSUE_CREATED', 'STATUS_CHANGED'], true),
 ('wh2', 'ws1', 'https://old.example/hook', 'old-secret', ARRAY[]::TEXT[], false);
INSERT INTO dispatch_spawn_budget (date, spawn_count, max_spawns, spawn_type) VALUES ('2026-01-11', 2, 10, 'prd');
INSERT INTO dispatch_orchestrator_session (id, workspace_id, messages, created_at, updated_at) VALUES
 ('os1', 'ws1', '[{{"role": "user", "content": "What is failing in billing?"}}, {{"role": "assistant", "content": [{{"type": "text", "text": "Let me look."}}, {{"type": "tool_use", "id": "t1", "name": "search_issues", "input": {{"q": "billing"}}}}]}}, {{"role": "user", "content": [{{"type": "tool_result", "tool_use_id": "t1", "content": "DISPATCH-2"}}]}}, {{"role": "assistant", "content": [{{"type": "text", "text": "DISPATCH-2: invoices fail."}}]}}]', '2026-01-09T10:00:00Z', '2026-01-09T10:05:00Z'),
 ('os2', 'ws1', '[{{"role": "user", "content": "hello?"}}]', '2026-01-09T11:00:00Z', '2026-01-09T11:00:00Z');
UPDATE dispatch_issue SET plan_status = 'awaiting_review', plan_content = '## Plan: fix the redirect', agent_status = 'awaiting_review' WHERE id = 'is5';
UPDATE dispatch_issue SET agent_status = 'investigating', spawn_status = 'running' WHERE id = 'is2';
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

/// Rows per kind: created on the first import (and said by the dry run), and left out because
/// this instance has their key (the customer `globex` and the agent `GitHub Actions` made here
/// before) or their customer was left out.
const CREATED: [(&str, usize); 13] = [
    ("activity", 3),
    ("agent", 1),
    ("comment", 3),
    ("customer", 1),
    ("customer_user", 1),
    ("fix_attempt", 1),
    ("history", 4),
    ("issue", 4),
    ("link", 2),
    ("pr_link", 2),
    ("run", 3),
    ("session", 1),
    ("watcher", 2),
];
const NOT_IMPORTED: [(&str, usize); 6] = [
    ("agent", 1),
    ("customer", 1),
    ("customer_user", 1),
    ("session", 1),
    ("watcher", 1),
    ("webhook", 1),
];

fn kinds(m: &std::collections::BTreeMap<String, usize>) -> Vec<(&str, usize)> {
    m.iter().map(|(k, v)| (k.as_str(), *v)).collect()
}

async fn check(store: Arc<dyn Store>, url: &str, what: &str) {
    let s = &*store;
    let ws = s
        .ensure_workspace("Dispatch", "DISPATCH", now())
        .await
        .unwrap();
    // Made here before the move: a customer and an agent with the keys of original rows.
    let globex_here = s
        .create_customer(&Customer {
            id: CustomerId::new(),
            workspace_id: ws.id,
            name: "Globex (made here)".into(),
            slug: "globex".into(),
            slack_channel_id: None,
            portal_token: new_portal_token(),
            brand_color: None,
            logo_url: None,
            created_at: now(),
            updated_at: now(),
        })
        .await
        .unwrap();
    let gha_here = s
        .create_agent(
            &NewAgent {
                name: "github actions".into(),
                ..NewAgent::default()
            }
            .into_agent(ws.id, now()),
        )
        .await
        .unwrap();

    let data = read_original(url).await.expect("read the original");
    // Every row of every table the import brings over is read.
    assert_eq!(
        [
            data.workspaces.len(),
            data.statuses.len(),
            data.labels.len(),
            data.agents.len(),
            data.customers.len(),
            data.customer_users.len(),
            data.issues.len(),
            data.issue_labels.len(),
            data.watchers.len(),
            data.comments.len(),
            data.history.len(),
            data.links.len(),
            data.fixes.len(),
            data.runs.len(),
            data.activities.len(),
            data.prs.len(),
            data.sessions.len(),
            data.webhooks.len(),
        ],
        [1, 7, 3, 2, 2, 2, 4, 3, 3, 3, 4, 2, 1, 3, 3, 2, 2, 2]
    );
    let p = plan(&data, "DISPATCH");
    // The one thing the plan cannot bring: the enabled event webhook, which is configuration here.
    assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
    assert_eq!(p.problems[0].kind.as_deref(), Some("webhook"));
    assert!(
        p.problems[0]
            .message
            .contains("add https://hooks.example/dispatch to EVENT_WEBHOOK_URLS (events: ISSUE_CREATED,STATUS_CHANGED)"),
        "{}",
        p.problems[0].message
    );
    assert!(!p.problems[0].message.contains("original-webhook-secret"));

    let stats_before = s.spawn_stats(now()).await.unwrap();
    let dry = s
        .apply_import(ws.id, &p, true, now())
        .await
        .expect("dry run");
    assert!(dry.dry_run);
    assert_eq!(kinds(&dry.created), CREATED, "{what}");
    assert_eq!(
        kinds(&dry.not_imported),
        NOT_IMPORTED,
        "{what}: {:?}",
        dry.problems
    );
    let reasons: Vec<(&str, &str, &str)> = dry
        .problems
        .iter()
        .filter(|p| p.skipped && p.kind.as_deref() != Some("webhook"))
        .map(|p| {
            (
                p.kind.as_deref().unwrap_or(""),
                p.external_id.as_deref().unwrap_or(""),
                p.message.as_str(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            (
                "agent",
                "ag2",
                "an agent named \"GitHub Actions\" exists here"
            ),
            (
                "customer",
                "cu2",
                "a customer with slug \"globex\" exists here"
            ),
            ("customer_user", "cuu2", "its customer cu2 is not imported"),
            ("watcher", "is5|cu2", "its customer cu2 is not imported"),
            ("session", "os2", "the conversation has no text to keep"),
        ],
        "{what}"
    );
    assert!(
        s.list_issues(ws.id, &IssueFilter::default())
            .await
            .unwrap()
            .is_empty(),
        "{what}: the dry run wrote nothing"
    );
    assert!(s.get_customer_by_token(TOKEN).await.unwrap().is_none());
    assert_eq!(s.list_agents(ws.id, true).await.unwrap().len(), 1);
    assert_eq!(s.spawn_stats(now()).await.unwrap(), stats_before);

    let real = s
        .apply_import(ws.id, &p, false, now())
        .await
        .expect("import");
    assert!(!real.dry_run);
    assert_eq!(kinds(&real.created), CREATED, "{what}");
    assert_eq!(real.created, dry.created, "{what}: the dry run said it");
    assert_eq!(real.not_imported, dry.not_imported, "{what}");
    assert_eq!(real.problems, dry.problems, "{what}");
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
    // The customer keeps its portal token and watches its issues; its person is the reporter.
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
    let wile = s
        .get_customer_user(i3.reporter_id.expect("the reporter"))
        .await
        .unwrap();
    assert_eq!(
        (
            wile.customer_id,
            wile.slack_user_id.as_str(),
            wile.display_name.as_deref(),
            wile.email.as_deref()
        ),
        (
            acme.id,
            "U0ACME1",
            Some("Wile E."),
            Some("wile@acme.example")
        )
    );
    // The customer made here keeps its slug; the original Globex's token opens nothing.
    assert_eq!(
        s.get_customer_by_slug(ws.id, "globex").await.unwrap().id,
        globex_here.id
    );
    assert!(
        s.get_customer_by_token(GLOBEX_TOKEN)
            .await
            .unwrap()
            .is_none()
    );
    let i5 = s
        .get_issue(ws.id, &IssueRef::from("DISPATCH-5"))
        .await
        .unwrap();
    assert_eq!(s.list_watchers(i5.id).await.unwrap(), vec![acme.id]);
    // The plan waiting for review stays waiting; the original's running agent is not here.
    assert_eq!(i5.plan.status, Some(PlanStatus::AwaitingReview));
    assert_eq!(
        i5.plan.content.as_deref(),
        Some("## Plan: fix the redirect")
    );
    assert_eq!(
        i5.agent_status,
        dispatch_core::issue::AgentStatus::AwaitingReview
    );
    // The orchestrator conversation, its text (the original's tool calls left out).
    let sessions = s.list_sessions(ws.id, 10).await.unwrap();
    assert_eq!(sessions.len(), 1, "{what}");
    assert_eq!(sessions[0].title, "What is failing in billing?");
    let texts: Vec<(Role, Vec<&str>)> = sessions[0]
        .messages
        .iter()
        .map(|m| {
            (
                m.role,
                m.content
                    .iter()
                    .filter_map(|b| match b {
                        ContentBlock::Text { text } => Some(text.as_str()),
                        _ => None,
                    })
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        texts,
        [
            (Role::User, vec!["What is failing in billing?"]),
            (
                Role::Assistant,
                vec!["Let me look.", "DISPATCH-2: invoices fail."]
            ),
        ]
    );
    // Agents: the original's claude with its webhook and secret; the agent made here stays.
    let claude = s
        .get_agent_by_name(ws.id, "claude")
        .await
        .unwrap()
        .expect("claude imported");
    assert_eq!(
        claude.webhook(),
        Some(("https://agents.example/claude/hook", AGENT_SECRET))
    );
    assert_eq!(
        claude.description.as_deref(),
        Some("Claude Code in GitHub Actions")
    );
    let agents = s.list_agents(ws.id, true).await.unwrap();
    assert_eq!(agents.len(), 2, "{what}");
    assert!(agents.iter().any(|a| a.id == gha_here.id));

    // Runs: ended, with outcome, cost, turns, PR and times; the issue's totals are its runs'.
    let runs3 = s.list_runs(i3.id).await.unwrap();
    assert_eq!(runs3.len(), 1);
    let run1 = &runs3[0];
    assert_eq!(run1.kind, WorkflowKind::PrdInvestigate);
    assert_eq!(run1.status, RunStatus::Completed);
    assert_eq!(run1.outcome, Some(Outcome::InvestigationComplete));
    assert_eq!(
        run1.outcome_summary.as_deref(),
        Some("The export query has no LIMIT")
    );
    assert_eq!((run1.cost_usd, run1.num_turns), (1.25, 30));
    assert_eq!(
        (run1.model.as_deref(), run1.tokens_used),
        (Some("claude-sonnet-4"), Some(52000))
    );
    assert_eq!(
        (run1.external_id.as_deref(), run1.external_url.as_deref()),
        (
            Some("9001"),
            Some("https://github.com/acme/app/actions/runs/9001")
        )
    );
    assert_eq!(run1.files_changed, ["src/export.ts", "src/stream.ts"]);
    assert_eq!(run1.follow_ups, ["Paginate the export API"]);
    let out = s.read_terminal(run1.id, 0, 10).await.unwrap();
    assert_eq!(
        out.iter()
            .map(|c| (c.seq, c.content.as_str()))
            .collect::<Vec<_>>(),
        [(1, "Reading src/export.ts\nFound the unbounded query")],
        "{what}: the transcript is the run's terminal output"
    );
    assert_eq!(
        (run1.started_at, run1.completed_at),
        (
            Some("2026-01-08T13:00:00Z".parse().unwrap()),
            Some("2026-01-08T13:20:00Z".parse().unwrap())
        )
    );
    assert_eq!((i3.cost_usd, i3.num_turns), (1.25, 30), "{what}");
    assert_eq!(i3.spawn_status, Some(SpawnStatus::Completed));
    assert_eq!(i3.run_outcome, Some(Outcome::InvestigationComplete));
    // The run the original left running: failed, stale at import, holding nothing.
    let runs2 = s.list_runs(i2.id).await.unwrap();
    assert_eq!(runs2.len(), 1);
    let run2 = &runs2[0];
    assert_eq!(
        (run2.status, run2.outcome),
        (RunStatus::Failed, Some(Outcome::Failed))
    );
    assert_eq!(run2.outcome_summary.as_deref(), Some(STALE_AT_IMPORT));
    assert_eq!(run2.completed_at, Some(now()));
    assert_eq!(i2.spawn_status, Some(SpawnStatus::Failed));
    assert_eq!(i2.agent_status, dispatch_core::issue::AgentStatus::Idle);
    let i5_runs = s.list_runs(i5.id).await.unwrap();
    assert_eq!(
        (i5_runs[0].kind, i5_runs[0].status, i5_runs[0].pr_number),
        (WorkflowKind::PrdImplement, RunStatus::Failed, Some(88))
    );
    let stats = s.spawn_stats(now()).await.unwrap();
    assert_eq!(
        (
            stats.active_error,
            stats.active_prd,
            stats.queued,
            stats.running
        ),
        (0, 0, 0, 0),
        "{what}: no imported run holds a slot"
    );
    assert_eq!(
        stats, stats_before,
        "{what}: January's runs are not today's"
    );
    assert!(
        s.claim_due_runs(now(), chrono::Duration::minutes(5), 10)
            .await
            .unwrap()
            .is_empty(),
        "{what}: nothing for the dispatcher"
    );
    assert!(
        s.stale_runs(now() + chrono::Duration::days(30), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Activities, tied to their runs.
    let acts = s.list_activities(i3.id, None, 10).await.unwrap();
    assert_eq!(acts.len(), 1);
    assert_eq!(
        (
            acts[0].kind.as_str(),
            acts[0].content.as_str(),
            acts[0].run_id
        ),
        (
            "investigation_complete",
            "Root cause: unbounded query",
            Some(run1.id)
        )
    );
    assert_eq!(acts[0].metadata["files"], 2);
    assert_eq!(
        s.list_activities(i2.id, None, 10).await.unwrap()[0].run_id,
        Some(run2.id)
    );
    assert_eq!(
        s.list_activities(i5.id, None, 10).await.unwrap()[0].run_id,
        None
    );
    // PR links, tied to their runs.
    let prs = s.list_pr_links(i3.id).await.unwrap();
    assert_eq!(prs.len(), 1);
    assert_eq!(
        (prs[0].pr_number, prs[0].status, prs[0].run_id),
        (77, PrStatus::Merged, Some(run1.id))
    );
    assert_eq!(
        (
            prs[0].title.as_deref(),
            prs[0].head_branch.as_deref(),
            prs[0].author.as_deref()
        ),
        (
            Some("Stream CSV exports"),
            Some("fix/export"),
            Some("claude[bot]")
        )
    );
    let by_number = s.pr_links_by_number(88).await.unwrap();
    assert_eq!(
        (by_number.len(), by_number[0].issue_id, by_number[0].status),
        (1, i5.id, PrStatus::Open)
    );
    assert_eq!(by_number[0].run_id, Some(i5_runs[0].id));
    assert_eq!(s.list_fix_attempts(i3.id).await.unwrap().len(), 1);
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

    // Again: nothing new; what was left out is reported again.
    let again = s
        .apply_import(ws.id, &p, false, now())
        .await
        .expect("import again");
    assert!(again.created.is_empty(), "{what}: {:?}", again.created);
    let mut before: Vec<_> = CREATED.to_vec();
    before.retain(|(_, n)| *n > 0);
    assert_eq!(kinds(&again.skipped), before, "{what}: all imported before");
    assert_eq!(again.not_imported, dry.not_imported);
    assert_eq!(s.list_comments(i3.id).await.unwrap().len(), 2);
    assert_eq!(s.list_runs(i3.id).await.unwrap().len(), 1);
    assert_eq!(s.list_pr_links(i3.id).await.unwrap().len(), 1);
    assert_eq!(s.list_activities(i3.id, None, 10).await.unwrap().len(), 1);
    assert_eq!(s.list_agents(ws.id, true).await.unwrap().len(), 2);
    let i3 = s
        .get_issue(ws.id, &IssueRef::from("DISPATCH-3"))
        .await
        .unwrap();
    assert_eq!(i3.cost_usd, 1.25, "{what}: not counted twice");
    // A dry run now says the same as the real run did: nothing to create.
    let dry_again = s.apply_import(ws.id, &p, true, now()).await.unwrap();
    assert_eq!(dry_again.skipped, again.skipped);
    assert!(dry_again.created.is_empty());

    // An alert with the original's fingerprint lands on the imported issue; new issues number on.
    let engine = Dispatch::builder(store.clone(), Arc::new(FakeRunner::default()))
        .build()
        .await
        .unwrap();
    // The imported runs count in the issue's history of runs and the fleet, and an agent's late
    // report naming the original's GitHub run lands on that ended run, changing nothing.
    let fleet = engine.fleet_status().await.unwrap();
    assert_eq!((fleet.active(), fleet.stale_runs), (0, 0), "{what}");
    let late = engine
        .resolve_reported_run("DISPATCH-2", Some("9002"))
        .await
        .expect("the late report's run");
    assert_eq!((late.id, late.status), (run2.id, RunStatus::Failed));
    let hb = engine
        .heartbeat("DISPATCH-2", Some("9002"))
        .await
        .expect("a late heartbeat");
    assert_eq!((hb.status, hb.heartbeat_at), (RunStatus::Failed, None));
    assert_eq!(
        s.list_runs(i2.id).await.unwrap(),
        runs2,
        "{what}: unchanged"
    );
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
