use super::*;
use crate::ids::ColumnId;
use crate::issue::{ColumnCategory, default_columns};
use chrono::TimeZone;

pub(crate) const SAMPLE: &str = include_str!("fixtures/linear_export.csv");

fn now() -> Timestamp {
    chrono::Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap()
}

fn target() -> ImportTarget {
    let ws = Workspace {
        id: WorkspaceId::new(),
        name: "W".into(),
        issue_prefix: "DISPATCH".into(),
        next_issue_number: 5,
        created_at: now(),
    };
    let columns = default_columns()
        .into_iter()
        .map(|c| Column {
            id: ColumnId::new(),
            workspace_id: ws.id,
            name: c.name,
            color: c.color,
            position: c.position.unwrap_or(0),
            category: c.category,
        })
        .collect();
    let labels = default_labels()
        .into_iter()
        .map(|l| Label {
            id: LabelId::new(),
            workspace_id: ws.id,
            name: l.name,
            color: l.color,
        })
        .collect();
    ImportTarget {
        workspace: ws,
        columns,
        labels,
        imported: HashMap::new(),
        used_numbers: HashSet::new(),
        taken: Taken::default(),
    }
}

#[test]
fn linear_sample_maps_statuses_priorities_labels_and_dates() {
    let plan = linear::parse(SAMPLE.as_bytes(), now()).unwrap();
    assert_eq!(plan.rows, 7);
    assert!(plan.problems.is_empty(), "{:?}", plan.problems);
    let by = |id: &str| plan.issues.iter().find(|i| i.external_id == id).unwrap();
    let i = by("ENG-101");
    assert_eq!(i.column, "In Progress");
    assert_eq!(i.priority, Priority::P1);
    assert_eq!(i.assignee.as_deref(), Some("maria"));
    assert_eq!(i.labels, vec!["Bug", "Payments"]);
    assert_eq!(i.line, Some(2));
    // The quoted description keeps its newlines and quotes.
    let d = i.description.as_deref().unwrap();
    assert!(
        d.contains("\"Payment failed\"") && d.contains("Steps:\n1."),
        "{d}"
    );
    assert!(d.ends_with("Imported from Linear ENG-101."));
    assert_eq!(
        i.created_at,
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 3, 9, 12, 44)
            .unwrap()
            + chrono::Duration::milliseconds(120)
    );
    // A quoted row spans 5 lines: the next row starts on line 7.
    assert_eq!(by("ENG-102").line, Some(7));
    assert_eq!(by("ENG-102").column, "Backlog");
    assert_eq!(by("ENG-102").priority, Priority::P3);
    assert_eq!(by("ENG-103").column, "In Review");
    assert_eq!(by("ENG-103").priority, Priority::P2);
    assert_eq!(by("ENG-104").column, "Done");
    assert_eq!(by("ENG-104").priority, Priority::P4);
    assert_eq!(by("ENG-105").column, "Canceled");
    assert_eq!(by("ENG-105").priority, Priority::P3, "No priority is P3");
    assert_eq!(by("ENG-106").column, "Canceled", "Duplicate is canceled");
    assert_eq!(by("ENG-107").assignee.as_deref(), Some("Priya Natarajan"));
}

#[test]
fn bad_rows_are_reported_with_their_line_and_the_rest_is_imported() {
    let csv = format!(
        "{SAMPLE}ENG-108,Engineering,Too few fields\nENG-109,Engineering,,no title,Todo,,High,,,,,,,,,,,,,,,,,,,,,,,\nnot-an-id,Engineering,T,,Todo,,High,,,,,,,,,,,,,,,,,,,,,,,\nENG-110,Engineering,\"Odd status\",,Blocked,,Whenever,,,,,,,,,,yesterday,,,,,,,,,,,,,\n"
    );
    let plan = linear::parse(csv.as_bytes(), now()).unwrap();
    assert_eq!(plan.rows, 11);
    assert_eq!(plan.issues.len(), 8);
    let skipped: Vec<_> = plan.problems.iter().filter(|p| p.skipped).collect();
    assert_eq!(skipped.len(), 3, "{:?}", plan.problems);
    assert_eq!(skipped[0].line, Some(13));
    assert!(
        skipped[0].message.contains("3 fields"),
        "{}",
        skipped[0].message
    );
    assert_eq!(skipped[1].line, Some(14));
    assert_eq!(skipped[1].external_id.as_deref(), Some("ENG-109"));
    assert_eq!(skipped[2].line, Some(15));
    let warnings: Vec<_> = plan.problems.iter().filter(|p| !p.skipped).collect();
    assert_eq!(
        warnings.len(),
        3,
        "status, priority and date of ENG-110: {warnings:?}"
    );
    assert!(warnings.iter().all(|w| w.line == Some(16)));
    let odd = plan
        .issues
        .iter()
        .find(|i| i.external_id == "ENG-110")
        .unwrap();
    assert_eq!(
        (odd.column.as_str(), odd.priority, odd.created_at),
        ("Backlog", Priority::P3, now())
    );
}

#[test]
fn a_file_without_id_and_title_is_refused() {
    let e = linear::parse(b"Name,Status\nx,Todo\n", now()).unwrap_err();
    assert!(matches!(e.kind, crate::ErrorKind::InvalidInput { .. }));
}

#[test]
fn resolve_numbers_after_the_counter_folds_labels_and_skips_imported_rows() {
    let plan = linear::parse(SAMPLE.as_bytes(), now()).unwrap();
    let mut t = target();
    let w = resolve(&plan, &t, now()).unwrap();
    assert_eq!(w.issues.len(), 7);
    assert_eq!(w.issues[0].identifier, "DISPATCH-5");
    assert_eq!(w.issues[6].identifier, "DISPATCH-11");
    assert_eq!(w.next_issue_number, 12);
    // "Bug" and "bug" fold onto the default label "bug" ("Feature" onto "feature"); new ones are
    // created once.
    assert_eq!(
        w.report.labels_created,
        vec!["Payments", "Uploads", "Chore", "UI", "Performance", "API"]
    );
    let bug = t.labels.iter().find(|l| l.name == "bug").unwrap().id;
    assert!(w.issues[0].labels.contains(&bug));
    assert!(w.issues[2].labels.contains(&bug));
    assert!(
        w.labels
            .iter()
            .all(|l| crate::issue::is_valid_hex_color(&l.color))
    );
    let done = t.columns.iter().find(|c| c.name == "Done").unwrap();
    assert_eq!(done.category, ColumnCategory::Closed);
    assert_eq!(w.issues[3].column_id, done.id);
    assert_eq!(w.report.by_column.get("Canceled"), Some(&2));
    assert_eq!(w.report.assignees, vec!["maria", "sam", "Priya Natarajan"]);
    assert_eq!(w.mappings.len(), 7);
    assert_eq!(w.mappings[0].external_id, "ENG-101");
    // Imported again: nothing new, the counter stays.
    for m in &w.mappings {
        t.imported
            .insert((m.kind.clone(), m.external_id.clone()), m.target_id);
    }
    t.workspace.next_issue_number = w.next_issue_number;
    let again = resolve(&plan, &t, now()).unwrap();
    assert!(again.issues.is_empty() && again.mappings.is_empty());
    assert_eq!(again.report.issues_skipped, 7);
    assert_eq!(again.next_issue_number, 12);
    assert!(
        again
            .report
            .mapping
            .iter()
            .all(|m| m.action == "already_imported")
    );
}

#[test]
fn a_repeated_id_in_one_file_is_imported_once() {
    let row = SAMPLE.lines().nth(7).unwrap();
    let csv = format!("{SAMPLE}{row}\n");
    let plan = linear::parse(csv.as_bytes(), now()).unwrap();
    let w = resolve(&plan, &target(), now()).unwrap();
    assert_eq!(w.issues.len(), 7);
    assert_eq!(w.report.problems.len(), 1);
    assert!(w.report.problems[0].message.contains("twice"));
}

#[test]
fn resolve_leaves_out_rows_whose_keys_are_taken_and_ends_active_runs() {
    use crate::run::{NewRun, Outcome, RunStatus, WorkflowKind};
    let customer = |ext: &str, slug: &str, token: &str| ImportCustomer {
        external_id: ext.into(),
        name: slug.into(),
        slug: slug.into(),
        slack_channel_id: Some(format!("C-{slug}")),
        portal_token: token.into(),
        brand_color: None,
        logo_url: None,
        created_at: now(),
        updated_at: now(),
    };
    let issue = ImportIssue {
        external_id: "is1".into(),
        line: None,
        title: "t".into(),
        description: None,
        source_status: "Backlog".into(),
        column: "Backlog".into(),
        source_priority: "P3".into(),
        priority: Priority::P3,
        assignee: None,
        labels: vec![],
        created_at: now(),
        updated_at: now(),
        number: Some(1),
        customer: Some("c1".into()),
        reporter: None,
        plan: PlanFields::default(),
        blocked_reason: None,
        agent_status: AgentStatus::Investigating,
        record_created: false,
    };
    let mut running = NewRun {
        issue_id: IssueId(Uuid::nil()),
        kind: WorkflowKind::ErrorFix,
        additional_context: None,
        force: false,
        requested_by: "x".into(),
    }
    .into_run(now() - chrono::Duration::hours(1));
    running.status = RunStatus::Running;
    running.lease_until = Some(now());
    let plan = ImportPlan {
        source: "original".into(),
        issues: vec![issue],
        customers: vec![
            customer("c1", "acme", "t1"),
            customer("c2", "globex", "t-taken"),
            customer("c3", "initech", "t3"),
            // The same slug twice in the source: the first counts.
            customer("c4", "initech", "t4"),
        ],
        runs: vec![ImportRun {
            external_id: "r1".into(),
            issue: "is1".into(),
            run: running,
            transcript: None,
        }],
        ..ImportPlan::default()
    };
    let mut t = target();
    t.taken.customer_slugs.insert("acme".into());
    t.taken.portal_tokens.insert("t-taken".into());
    let w = resolve(&plan, &t, now()).unwrap();
    let slugs: Vec<_> = w.customers.iter().map(|c| c.slug.as_str()).collect();
    assert_eq!(slugs, ["initech"]);
    assert_eq!(w.report.not_imported.get(KIND_CUSTOMER), Some(&3));
    let left: Vec<_> = w
        .report
        .problems
        .iter()
        .filter(|p| p.skipped)
        .map(|p| p.external_id.clone().unwrap())
        .collect();
    assert_eq!(left, ["c1", "c2", "c4"]);
    // The issue goes in without its customer, with a warning.
    assert_eq!(w.issues.len(), 1);
    assert_eq!(w.issues[0].customer_id, None);
    assert!(
        w.report
            .problems
            .iter()
            .any(|p| !p.skipped && p.external_id.as_deref() == Some("is1"))
    );
    // The active run is ended: failed, stale at import, no lease.
    let r = &w.runs[0];
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.outcome, Some(Outcome::Failed));
    assert_eq!(r.outcome_summary.as_deref(), Some(STALE_AT_IMPORT));
    assert_eq!((r.completed_at, r.lease_until), (Some(now()), None));
    assert_eq!(r.issue_id, w.issues[0].id);
    assert_eq!(w.issues[0].spawn_status, Some(SpawnStatus::Failed));
    assert_eq!(
        w.issues[0].agent_status,
        AgentStatus::Idle,
        "no agent works here"
    );
}
