//! ImportStore: a Linear export imported into a workspace that already has issues; dry run,
//! idempotency, label folding, identifiers after the counter, the import map; the original
//! Dispatch's rows with per-row conflicts and runs imported ended.

use super::support::*;
use crate::import::{KIND_ISSUE, linear};
use crate::issue::{HistoryAction, IssueFilter, NewIssue};

pub(super) fn cases() -> Vec<Case> {
    cases!("imports":
        linear_dry_run_writes_nothing_then_imports_once,
        original_rows_import_per_row_conflicts_left_out_and_runs_ended,
    )
}

/// The sample Linear export (7 issues across every status and priority).
pub const LINEAR_SAMPLE: &str = include_str!("../../import/fixtures/linear_export.csv");

async fn linear_dry_run_writes_nothing_then_imports_once(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let before = issue(s, ws.id, "made here before the import").await;
    assert_eq!(before.identifier, "ACME-1");
    let labels_before = s.list_labels(ws.id).await.expect("labels");
    let plan = linear::parse(LINEAR_SAMPLE.as_bytes(), t0()).expect("parse");

    let dry = s
        .apply_import(ws.id, &plan, true, t0())
        .await
        .expect("dry run");
    assert!(dry.dry_run);
    assert_eq!(
        (dry.rows, dry.issues_created, dry.issues_skipped),
        (7, 7, 0)
    );
    assert_eq!(dry.mapping[0].identifier.as_deref(), Some("ACME-2"));
    assert_eq!(dry.labels_created.len(), 6, "{:?}", dry.labels_created);
    assert_eq!(
        s.list_issues(ws.id, &IssueFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.list_labels(ws.id).await.unwrap(), labels_before);
    assert_eq!(s.get_workspace(ws.id).await.unwrap().next_issue_number, 2);
    assert_eq!(
        s.imported_id(ws.id, "linear", KIND_ISSUE, "ENG-101")
            .await
            .unwrap(),
        None
    );

    let real = s
        .apply_import(ws.id, &plan, false, mins(1))
        .await
        .expect("import");
    assert!(!real.dry_run);
    assert_eq!(real.issues_created, 7);
    assert_eq!(
        real.mapping, dry.mapping,
        "the dry run said exactly what happened"
    );
    let issues = s.list_issues(ws.id, &IssueFilter::default()).await.unwrap();
    assert_eq!(issues.len(), 8);
    let id = s
        .imported_id(ws.id, "linear", KIND_ISSUE, "ENG-101")
        .await
        .unwrap()
        .expect("ENG-101 is in the import map");
    let eng101 = s.get_issue(ws.id, &"ACME-2".into()).await.expect("ACME-2");
    assert_eq!(eng101.id.0, id);
    assert_eq!(eng101.title, "Checkout fails for EU cards with 3-D Secure");
    assert_eq!(eng101.priority, crate::issue::Priority::P1);
    assert_eq!(eng101.assignee.as_deref(), Some("maria"));
    assert_eq!(
        eng101.created_at,
        utc(2026, 11, 3, 9, 12) + Duration::milliseconds(44_120)
    );
    assert_eq!(
        eng101.updated_at,
        utc(2026, 11, 5, 16, 40) + Duration::milliseconds(2_551)
    );
    assert_eq!(eng101.column_id, column_id(s, ws.id, "In Progress").await);
    // Labels fold case-insensitively onto existing ones and are created once.
    let labels = s.list_labels(ws.id).await.unwrap();
    assert_eq!(labels.len(), labels_before.len() + 6);
    let bug: Vec<_> = labels
        .iter()
        .filter(|l| l.name.eq_ignore_ascii_case("bug"))
        .collect();
    assert_eq!(bug.len(), 1);
    assert!(eng101.labels.contains(&bug[0].id));
    let payments = labels
        .iter()
        .find(|l| l.name == "Payments")
        .expect("Payments created");
    assert!(eng101.labels.contains(&payments.id));
    let done = s.get_issue(ws.id, &"ACME-5".into()).await.unwrap();
    assert_eq!(done.column_id, column_id(s, ws.id, "Done").await);
    // The history says where it came from, at the time Linear had.
    let h = s.list_history(eng101.id, 10).await.unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].action, HistoryAction::Created);
    assert_eq!(h[0].created_at, eng101.created_at);
    assert_eq!(h[0].new_value.as_ref().unwrap()["external_id"], "ENG-101");
    // The Linear identifier is searchable (ranking is the store's own: every imported issue
    // mentions "ENG", so only finding it is asserted).
    let hits = s.search_issues(ws.id, "ENG-107", 10).await.unwrap();
    assert!(
        hits.iter().any(|h| h.issue.identifier == "ACME-8"),
        "{hits:?}"
    );

    // Again: nothing new.
    let again = s
        .apply_import(ws.id, &plan, false, mins(2))
        .await
        .expect("import again");
    assert_eq!((again.issues_created, again.issues_skipped), (0, 7));
    assert!(again.labels_created.is_empty());
    assert_eq!(
        s.list_issues(ws.id, &IssueFilter::default())
            .await
            .unwrap()
            .len(),
        8
    );
    assert_eq!(s.list_labels(ws.id).await.unwrap().len(), labels.len());
    // The workspace's own numbering continues after the imported issues.
    let next = create(s, ws.id, NewIssue::titled("made after"), mins(3)).await;
    assert_eq!(next.identifier, "ACME-9");
}

/// The original Dispatch's rows into a workspace that already has some of their keys (a
/// customer's slug, an agent's name, an error fingerprint): those rows are left out with the
/// reason, everything else goes in — agents with their webhook, customer users as reporters,
/// runs ended (the one the original left running failed, holding no slot, never claimed by a
/// dispatcher), their activities and PR links tied to them, the issues' totals from the runs.
/// The dry run says exactly that and writes nothing; a second run creates nothing.
async fn original_rows_import_per_row_conflicts_left_out_and_runs_ended(store: Arc<dyn Store>) {
    use crate::agent::NewAgent;
    use crate::import::original::{
        OriginalActivity, OriginalAgent, OriginalCustomerUser, OriginalData, OriginalIssue,
        OriginalLink, OriginalPr, OriginalRun, OriginalSession, plan,
    };
    use crate::import::{ImportCustomer, ImportWatcher, STALE_AT_IMPORT};
    use crate::issue::SpawnStatus;
    use crate::pr::PrStatus;
    use crate::run::{Outcome, RunStatus};

    let s = &*store;
    let ws = workspace(s).await;
    // Made here before the import: the keys some original rows have.
    let acme = add_customer(s, ws.id, "Acme here", "acme").await;
    let claude = s
        .create_agent(
            &NewAgent {
                name: "Claude".into(),
                ..NewAgent::default()
            }
            .into_agent(ws.id, t0()),
        )
        .await
        .expect("create_agent");
    let taken = s
        .ingest_error(ws.id, draft("loki", "fp-taken", 1, t0()))
        .await
        .expect("ingest");
    assert_eq!(taken.issue.identifier, "ACME-1");

    let at = |m: i64| mins(m);
    let issue = |id: &str, ident: &str, status: &str, customer: &str, reporter: Option<&str>| {
        OriginalIssue {
            id: id.into(),
            identifier: ident.into(),
            title: format!("{ident} from the original"),
            description: None,
            status_id: status.into(),
            priority: "P2".into(),
            assignee_id: Some("ag1".into()),
            customer_id: Some(customer.into()),
            reporter_id: reporter.map(Into::into),
            plan_status: None,
            plan_content: None,
            plan_feedback: None,
            plan_approved_at: None,
            plan_approved_by: None,
            blocked_reason: None,
            agent_status: None,
            created_at: at(-600),
            updated_at: at(-500),
        }
    };
    let customer = |id: &str, slug: &str, token: &str| ImportCustomer {
        external_id: id.into(),
        name: format!("{slug} corp"),
        slug: slug.into(),
        slack_channel_id: None,
        portal_token: token.into(),
        brand_color: None,
        logo_url: None,
        created_at: at(-900),
        updated_at: at(-900),
    };
    let link = |id: &str, issue: &str, key: &str| OriginalLink {
        id: id.into(),
        issue_id: issue.into(),
        source: "loki".into(),
        external_id: key.into(),
        external_url: None,
        metadata: None,
        cooldown_until: None,
        event_count: Some(4),
        last_seen_at: Some(at(-100)),
        created_at: at(-600),
    };
    let run = |id: &str, issue: &str, status: &str| OriginalRun {
        id: id.into(),
        issue_id: issue.into(),
        github_run_id: Some(format!("gh-{id}")),
        github_run_url: None,
        workflow_type: "prd_investigate".into(),
        status: status.into(),
        prompt_text: None,
        transcript: None,
        report_content: None,
        outcome: None,
        outcome_summary: None,
        cost_usd: Some(0.25),
        num_turns: Some(3),
        model: None,
        tokens_used: None,
        pr_number: None,
        files_changed: None,
        follow_ups: None,
        started_at: Some(at(-30)),
        completed_at: None,
        created_at: at(-30),
    };
    let mut agent2 = OriginalAgent::named("ag2", "reviewer", at(-1000));
    agent2.webhook_url = Some("https://hooks.invalid/reviewer".into());
    agent2.webhook_secret = Some("original-secret-0123456789".into());
    let data = OriginalData {
        workspaces: vec![("ACME".into(), 10)],
        statuses: vec![
            ("st-ip".into(), "In Progress".into()),
            ("st-done".into(), "Done".into()),
        ],
        agents: vec![OriginalAgent::named("ag1", "claude", at(-1000)), agent2],
        customers: vec![
            customer(
                "cu1",
                "acme",
                "1111111111111111111111111111111111111111111111111111111111111111",
            ),
            customer(
                "cu2",
                "globex",
                "2222222222222222222222222222222222222222222222222222222222222222",
            ),
        ],
        customer_users: vec![
            OriginalCustomerUser {
                id: "u1".into(),
                customer_id: "cu2".into(),
                slack_user_id: "U0GLOBEX".into(),
                slack_display_name: "Hank".into(),
                slack_avatar_url: None,
                email: Some("hank@globex.invalid".into()),
                created_at: at(-800),
                updated_at: at(-800),
            },
            OriginalCustomerUser {
                id: "u2".into(),
                customer_id: "cu1".into(),
                slack_user_id: "U0ACME".into(),
                slack_display_name: "Wile".into(),
                slack_avatar_url: None,
                email: None,
                created_at: at(-800),
                updated_at: at(-800),
            },
        ],
        issues: vec![
            issue("is3", "ACME-3", "st-ip", "cu2", Some("u1")),
            issue("is4", "ACME-4", "st-done", "cu1", Some("u2")),
        ],
        watchers: vec![
            ImportWatcher {
                issue: "is3".into(),
                customer: "cu2".into(),
                added_at: at(-600),
            },
            ImportWatcher {
                issue: "is4".into(),
                customer: "cu1".into(),
                added_at: at(-600),
            },
        ],
        links: vec![link("ex1", "is3", "fp-taken"), link("ex2", "is4", "fp-new")],
        runs: vec![
            OriginalRun {
                outcome: Some("investigation_complete".into()),
                outcome_summary: Some("root cause found".into()),
                cost_usd: Some(1.5),
                num_turns: Some(12),
                model: Some("claude-sonnet".into()),
                pr_number: Some(41),
                files_changed: Some(serde_json::json!(["src/export.rs"])),
                transcript: Some("$ cargo test\nok".into()),
                started_at: Some(at(-120)),
                completed_at: Some(at(-110)),
                created_at: at(-120),
                ..run("r1", "is3", "completed")
            },
            run("r2", "is4", "running"),
        ],
        activities: vec![
            OriginalActivity {
                id: "a1".into(),
                issue_id: "is3".into(),
                run_id: Some("r1".into()),
                kind: "investigation_complete".into(),
                content: "Found it".into(),
                metadata: Some(serde_json::json!({"files": 1})),
                created_at: at(-111),
            },
            OriginalActivity {
                id: "a2".into(),
                issue_id: "is4".into(),
                run_id: None,
                kind: "custom_step".into(),
                content: "a custom workflow's note".into(),
                metadata: None,
                created_at: at(-20),
            },
        ],
        prs: vec![OriginalPr {
            id: "p1".into(),
            issue_id: "is3".into(),
            run_id: Some("r1".into()),
            pr_number: 41,
            pr_url: "https://github.com/acme/app/pull/41".into(),
            pr_title: "Stream exports".into(),
            pr_status: "merged".into(),
            branch_name: Some("fix/export".into()),
            author: Some("claude[bot]".into()),
            base_branch: Some("main".into()),
            head_branch: None,
            match_confidence: Some(1.0),
            merged_at: Some(at(-100)),
            created_at: Some(at(-110)),
            updated_at: Some(at(-100)),
        }],
        sessions: vec![OriginalSession {
            id: "os1".into(),
            messages: serde_json::json!([
                {"role": "user", "content": "What failed today?"},
                {"role": "assistant", "content": [{"type": "text", "text": "ACME-3."}]},
            ]),
            created_at: at(-60),
            updated_at: at(-59),
        }],
        ..OriginalData::default()
    };
    let p = plan(&data, PREFIX);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    let stats_before = s.spawn_stats(t0()).await.expect("stats");

    let dry = s
        .apply_import(ws.id, &p, true, t0())
        .await
        .expect("dry run");
    let counts = |m: &std::collections::BTreeMap<String, usize>| {
        m.iter().map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>()
    };
    let want = |pairs: &[(&str, usize)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        counts(&dry.created),
        want(&[
            ("activity", 2),
            ("agent", 1),
            ("customer", 1),
            ("customer_user", 1),
            ("issue", 2),
            ("link", 1),
            ("pr_link", 1),
            ("run", 2),
            ("session", 1),
            ("watcher", 1),
        ])
    );
    assert_eq!(
        counts(&dry.not_imported),
        want(&[
            ("agent", 1),
            ("customer", 1),
            ("customer_user", 1),
            ("link", 1),
            ("watcher", 1),
        ]),
        "{:?}",
        dry.problems
    );
    let reason = |ext: &str| {
        dry.problems
            .iter()
            .find(|p| p.skipped && p.external_id.as_deref() == Some(ext))
            .map(|p| p.message.clone())
            .unwrap_or_else(|| panic!("no reason for {ext}: {:?}", dry.problems))
    };
    assert!(reason("ag1").contains("agent named"), "{}", reason("ag1"));
    assert!(reason("cu1").contains("slug \"acme\""), "{}", reason("cu1"));
    assert!(reason("ex1").contains("loki/fp-taken"), "{}", reason("ex1"));
    assert!(reason("u2").contains("cu1"), "{}", reason("u2"));
    // Nothing written by the dry run.
    assert_eq!(s.list_agents(ws.id, true).await.unwrap().len(), 1);
    assert_eq!(
        s.list_issues(ws.id, &IssueFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.spawn_stats(t0()).await.unwrap(), stats_before);

    let real = s
        .apply_import(ws.id, &p, false, t0())
        .await
        .expect("import");
    assert_eq!(real.created, dry.created, "the dry run said what happened");
    assert_eq!(real.not_imported, dry.not_imported);

    // The rows made here are untouched.
    assert_eq!(
        s.get_customer_by_slug(ws.id, "acme").await.unwrap().id,
        acme.id
    );
    let agents = s.list_agents(ws.id, true).await.unwrap();
    assert_eq!(agents.len(), 2);
    assert!(agents.iter().any(|a| a.id == claude.id));
    let reviewer = s
        .get_agent_by_name(ws.id, "reviewer")
        .await
        .unwrap()
        .expect("reviewer imported");
    assert_eq!(
        reviewer.webhook(),
        Some((
            "https://hooks.invalid/reviewer",
            "original-secret-0123456789"
        ))
    );
    let link = s.get_link("loki", "fp-taken").await.unwrap().unwrap();
    assert_eq!(
        link.issue_id, taken.issue.id,
        "the fingerprint stays with ACME-1"
    );

    let i3 = s.get_issue(ws.id, &"ACME-3".into()).await.expect("ACME-3");
    let globex = s.get_customer_by_slug(ws.id, "globex").await.unwrap();
    assert_eq!(i3.customer_id, Some(globex.id));
    let hank = s
        .get_customer_user(i3.reporter_id.expect("reporter"))
        .await
        .unwrap();
    assert_eq!(
        (hank.slack_user_id.as_str(), hank.customer_id),
        ("U0GLOBEX", globex.id)
    );
    approx(i3.cost_usd, 1.5, "the issue's cost is its runs'");
    assert_eq!(i3.num_turns, 12);
    assert_eq!(i3.spawn_status, Some(SpawnStatus::Completed));
    assert_eq!(i3.run_outcome, Some(Outcome::InvestigationComplete));
    assert_eq!(i3.current_run_id, None);
    let runs3 = s.list_runs(i3.id).await.unwrap();
    assert_eq!(runs3.len(), 1);
    let r1 = &runs3[0];
    assert_eq!(
        (r1.status, r1.pr_number, r1.external_id.as_deref()),
        (RunStatus::Completed, Some(41), Some("gh-r1"))
    );
    assert_eq!(
        (r1.started_at, r1.completed_at),
        (Some(at(-120)), Some(at(-110)))
    );
    assert_eq!(r1.files_changed, vec!["src/export.rs"]);
    let out = s.read_terminal(r1.id, 0, 10).await.unwrap();
    assert_eq!(out.len(), 1, "the transcript is the run's terminal output");
    assert_eq!(
        (out[0].seq, out[0].content.as_str()),
        (1, "$ cargo test\nok")
    );
    let prs = s.list_pr_links(i3.id).await.unwrap();
    assert_eq!(prs.len(), 1);
    assert_eq!(
        (prs[0].pr_number, prs[0].status, prs[0].run_id),
        (41, PrStatus::Merged, Some(r1.id))
    );
    assert_eq!(prs[0].head_branch.as_deref(), Some("fix/export"));
    let acts = s.list_activities(i3.id, None, 10).await.unwrap();
    assert_eq!(acts.len(), 1);
    assert_eq!(
        (acts[0].content.as_str(), acts[0].run_id),
        ("Found it", Some(r1.id))
    );
    assert_eq!(s.list_watchers(i3.id).await.unwrap(), vec![globex.id]);

    let sessions = s.list_sessions(ws.id, 10).await.unwrap();
    assert_eq!(
        (
            sessions.len(),
            sessions[0].title.as_str(),
            sessions[0].messages.len()
        ),
        (1, "What failed today?", 2)
    );

    // ACME-4: its customer (and so its reporter and watcher) left out; its run, which the
    // original left running, ended.
    let i4 = s.get_issue(ws.id, &"ACME-4".into()).await.expect("ACME-4");
    assert_eq!((i4.customer_id, i4.reporter_id), (None, None));
    let runs4 = s.list_runs(i4.id).await.unwrap();
    assert_eq!(runs4.len(), 1);
    let r2 = &runs4[0];
    assert_eq!(r2.status, RunStatus::Failed);
    assert_eq!(r2.outcome, Some(Outcome::Failed));
    assert_eq!(r2.outcome_summary.as_deref(), Some(STALE_AT_IMPORT));
    assert_eq!(r2.completed_at, Some(t0()));
    assert_eq!(r2.lease_until, None);
    assert_eq!(i4.spawn_status, Some(SpawnStatus::Failed));
    assert!(!i4.spawn_status.unwrap().is_active());
    let acts = s.list_activities(i4.id, None, 10).await.unwrap();
    assert_eq!(acts[0].kind.as_str(), "custom_step");

    // No slot held, nothing for a dispatcher or the stale-run sweep; today's runs count in
    // today's budget and cost, as the original's spawns of the day did.
    let stats = s.spawn_stats(t0()).await.unwrap();
    assert_eq!(
        (
            stats.active_error,
            stats.active_prd,
            stats.queued,
            stats.running
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(stats.spawned_today_prd, stats_before.spawned_today_prd + 2);
    approx(
        stats.cost_today_usd,
        stats_before.cost_today_usd + 1.75,
        "today's cost",
    );
    assert!(
        s.claim_due_runs(mins(600), Duration::minutes(5), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.stale_runs(mins(6000), 10).await.unwrap().is_empty());
    assert_eq!(s.get_workspace(ws.id).await.unwrap().next_issue_number, 10);

    // Again: nothing new; the conflicting rows are still reported.
    let again = s
        .apply_import(ws.id, &p, false, mins(1))
        .await
        .expect("again");
    assert!(again.created.is_empty(), "{:?}", again.created);
    assert_eq!(again.skipped.get("run"), Some(&2));
    assert_eq!(again.skipped.get("pr_link"), Some(&1));
    assert_eq!(again.not_imported, dry.not_imported);
    assert_eq!(s.list_runs(i3.id).await.unwrap().len(), 1);
    assert_eq!(s.list_agents(ws.id, true).await.unwrap().len(), 2);
    approx(
        s.get_issue(ws.id, &"ACME-3".into()).await.unwrap().cost_usd,
        1.5,
        "not counted twice",
    );
}
