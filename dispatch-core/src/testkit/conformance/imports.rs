//! ImportStore: a Linear export imported into a workspace that already has issues; dry run,
//! idempotency, label folding, identifiers after the counter, the import map.

use super::support::*;
use crate::import::{KIND_ISSUE, linear};
use crate::issue::{HistoryAction, IssueFilter, NewIssue};

pub(super) fn cases() -> Vec<Case> {
    cases!("imports":
        linear_dry_run_writes_nothing_then_imports_once,
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
