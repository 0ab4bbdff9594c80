//! WorkspaceStore: workspaces, columns, labels.

use super::support::*;
use crate::ids::{ColumnId, WorkspaceId};
use crate::issue::{
    ColumnCategory, NewColumn, NewIssue, NewLabel, default_columns, default_labels,
};

pub(super) fn cases() -> Vec<Case> {
    cases!("workspace":
        ensure_workspace_is_idempotent_with_default_columns_and_labels,
        add_column_appends_or_inserts_and_shifts,
        reorder_columns_sets_positions_and_rejects_incomplete_orders,
        labels_are_unique_case_insensitively_and_ensure_gets_or_creates,
    )
}

const DEFAULT_COLUMNS: [&str; 7] = [
    "Backlog",
    "Investigating",
    "Needs Review",
    "In Progress",
    "In Review",
    "Done",
    "Canceled",
];

fn new_column(name: &str, position: Option<i32>, category: ColumnCategory) -> NewColumn {
    NewColumn {
        name: name.to_string(),
        color: "#123456".to_string(),
        position,
        category,
    }
}

#[track_caller]
fn assert_positions_increase(cols: &[crate::issue::Column]) {
    for w in cols.windows(2) {
        assert!(
            w[0].position < w[1].position,
            "columns must come ordered by strictly increasing position: {cols:?}"
        );
    }
}

async fn ensure_workspace_is_idempotent_with_default_columns_and_labels(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = s
        .ensure_workspace("Acme", "ACME", t0())
        .await
        .expect("ensure_workspace");
    assert_eq!(ws.name, "Acme");
    assert_eq!(ws.issue_prefix, "ACME");
    assert_eq!(ws.next_issue_number, 1);
    assert_eq!(ws.created_at, t0());
    assert_eq!(s.get_workspace(ws.id).await.expect("get_workspace"), ws);

    let again = s
        .ensure_workspace("Another name", "ACME", mins(60))
        .await
        .expect("ensure again");
    assert_eq!(
        again, ws,
        "a second ensure_workspace gets the existing workspace unchanged"
    );

    let cols = s.list_columns(ws.id).await.expect("list_columns");
    let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names, DEFAULT_COLUMNS,
        "7 default columns in board order, created once"
    );
    assert_positions_increase(&cols);
    for (c, d) in cols.iter().zip(default_columns()) {
        assert_eq!(c.workspace_id, ws.id);
        assert_eq!(c.color, d.color, "column {}", c.name);
        assert_eq!(c.category, d.category, "column {}", c.name);
    }
    let closed: Vec<&str> = cols
        .iter()
        .filter(|c| c.is_closed())
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(closed, ["Done", "Canceled"]);
    let ids: std::collections::BTreeSet<ColumnId> = cols.iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), 7, "column ids are distinct");

    let labels = s.list_labels(ws.id).await.expect("list_labels");
    let label_names: Vec<&str> = labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        label_names,
        [
            "agent",
            "bug",
            "documentation",
            "enhancement",
            "feature",
            "implement",
            "investigate"
        ],
        "7 default labels, ordered by name, created once"
    );
    for l in &labels {
        assert_eq!(l.workspace_id, ws.id);
        let d = default_labels()
            .into_iter()
            .find(|d| d.name == l.name)
            .expect("a default label");
        assert_eq!(l.color, d.color, "label {}", l.name);
    }

    let other = s
        .ensure_workspace("Beta", "BETA", t0())
        .await
        .expect("second workspace");
    assert_ne!(other.id, ws.id);
    assert_eq!(other.issue_prefix, "BETA");
    let other_cols = s.list_columns(other.id).await.expect("list_columns");
    assert_eq!(other_cols.len(), 7);
    assert!(
        other_cols
            .iter()
            .all(|c| !ids.contains(&c.id) && c.workspace_id == other.id)
    );
    assert_eq!(s.list_labels(other.id).await.expect("list_labels").len(), 7);
    assert_eq!(
        s.list_columns(ws.id).await.expect("list_columns").len(),
        7,
        "workspaces do not share columns"
    );

    not_found(
        s.get_workspace(WorkspaceId::new()).await,
        "get_workspace of an unknown id",
    );
}

async fn add_column_appends_or_inserts_and_shifts(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let before = s.list_columns(ws.id).await.expect("list_columns");

    let qa = s
        .add_column(ws.id, new_column("QA", None, ColumnCategory::Open))
        .await
        .expect("append");
    assert_eq!(
        (
            qa.name.as_str(),
            qa.color.as_str(),
            qa.category,
            qa.workspace_id
        ),
        ("QA", "#123456", ColumnCategory::Open, ws.id)
    );
    let cols = s.list_columns(ws.id).await.expect("list_columns");
    assert_eq!(cols.len(), 8);
    assert_eq!(
        cols.last(),
        Some(&qa),
        "position None appends after the last column"
    );
    assert_positions_increase(&cols);

    let triage = s
        .add_column(ws.id, new_column("Triage", Some(1), ColumnCategory::Open))
        .await
        .expect("insert");
    let cols = s.list_columns(ws.id).await.expect("list_columns");
    let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Backlog",
            "Triage",
            "Investigating",
            "Needs Review",
            "In Progress",
            "In Review",
            "Done",
            "Canceled",
            "QA"
        ],
        "an explicit position inserts there and shifts later columns down"
    );
    assert_eq!(cols[1], triage, "the returned column is the stored one");
    assert_positions_increase(&cols);
    for b in &before {
        let now = cols
            .iter()
            .find(|c| c.id == b.id)
            .expect("existing columns keep their ids");
        assert_eq!(
            (&now.name, &now.color, now.category),
            (&b.name, &b.color, b.category)
        );
    }

    let wont = s
        .add_column(
            ws.id,
            new_column("Won't Fix", Some(0), ColumnCategory::Closed),
        )
        .await
        .expect("insert first");
    let cols = s.list_columns(ws.id).await.expect("list_columns");
    assert_eq!(cols[0], wont);
    assert_eq!(cols.len(), 10);
    assert_positions_increase(&cols);

    conflict(
        s.add_column(ws.id, new_column("qa", None, ColumnCategory::Open))
            .await,
        "a column name taken case-insensitively",
    );
    invalid(
        s.add_column(ws.id, new_column("  ", None, ColumnCategory::Open))
            .await,
        "name",
        "an empty column name",
    );
    let mut bad = new_column("Blocked", None, ColumnCategory::Open);
    bad.color = "blue".into();
    invalid(
        s.add_column(ws.id, bad).await,
        "color",
        "a colour that is not #RRGGBB",
    );
    assert_eq!(
        s.list_columns(ws.id).await.expect("list_columns"),
        cols,
        "rejected columns write nothing"
    );
    not_found(
        s.add_column(
            WorkspaceId::new(),
            new_column("X", None, ColumnCategory::Open),
        )
        .await,
        "add_column to an unknown workspace",
    );
}

async fn reorder_columns_sets_positions_and_rejects_incomplete_orders(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let other = s
        .ensure_workspace("Beta", "BETA", t0())
        .await
        .expect("second workspace");
    let cols = s.list_columns(ws.id).await.expect("list_columns");
    let mut order: Vec<ColumnId> = cols.iter().map(|c| c.id).collect();
    order.reverse();

    let out = s.reorder_columns(ws.id, &order).await.expect("reorder");
    assert_eq!(
        out.iter().map(|c| c.id).collect::<Vec<_>>(),
        order,
        "positions follow the order given"
    );
    assert_positions_increase(&out);
    let listed = s.list_columns(ws.id).await.expect("list_columns");
    assert_eq!(listed, out, "reorder returns the columns as stored");
    let names: Vec<&str> = listed.iter().map(|c| c.name.as_str()).collect();
    let mut reversed = DEFAULT_COLUMNS;
    reversed.reverse();
    assert_eq!(names, reversed);

    invalid(
        s.reorder_columns(ws.id, &order[1..]).await,
        "statusIds",
        "an order missing a column",
    );
    let mut dup = order.clone();
    dup[1] = dup[0];
    invalid(
        s.reorder_columns(ws.id, &dup).await,
        "statusIds",
        "an order naming a column twice",
    );
    let mut foreign = order.clone();
    foreign[0] = s.list_columns(other.id).await.expect("list_columns")[0].id;
    invalid(
        s.reorder_columns(ws.id, &foreign).await,
        "statusIds",
        "an order naming another workspace's column",
    );
    let mut extra = order.clone();
    extra.push(ColumnId::new());
    invalid(
        s.reorder_columns(ws.id, &extra).await,
        "statusIds",
        "an order naming an unknown column",
    );
    assert_eq!(
        s.list_columns(ws.id).await.expect("list_columns"),
        listed,
        "a rejected order changes nothing"
    );

    // New issues go to the first OPEN column by position: now Canceled, Done, In Review, ...
    let i = create(s, ws.id, NewIssue::titled("after reorder"), t0()).await;
    assert_eq!(
        i.column_id,
        column_id(s, ws.id, "In Review").await,
        "first open column by position"
    );
}

async fn labels_are_unique_case_insensitively_and_ensure_gets_or_creates(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let other = s
        .ensure_workspace("Beta", "BETA", t0())
        .await
        .expect("second workspace");

    let l = s
        .create_label(ws.id, NewLabel::new("urgent-ops", "#ff0000"))
        .await
        .expect("create_label");
    assert_eq!(
        (l.name.as_str(), l.color.as_str(), l.workspace_id),
        ("urgent-ops", "#ff0000", ws.id)
    );
    let labels = s.list_labels(ws.id).await.expect("list_labels");
    let names: Vec<&str> = labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "agent",
            "bug",
            "documentation",
            "enhancement",
            "feature",
            "implement",
            "investigate",
            "urgent-ops"
        ],
        "labels ordered by name"
    );
    assert!(labels.contains(&l));

    conflict(
        s.create_label(ws.id, NewLabel::new("URGENT-OPS", "#00ff00"))
            .await,
        "a label name taken case-insensitively",
    );
    conflict(
        s.create_label(ws.id, NewLabel::new("Bug", "#00ff00")).await,
        "a default label name in other case",
    );

    let got = s
        .ensure_label(ws.id, NewLabel::new("Urgent-Ops", "#00ff00"))
        .await
        .expect("ensure existing");
    assert_eq!(
        got, l,
        "ensure_label gets the existing label (case-insensitive), unchanged"
    );
    let zebra = s
        .ensure_label(ws.id, NewLabel::new("zebra", "#000000"))
        .await
        .expect("ensure new");
    assert_eq!(
        (
            zebra.name.as_str(),
            zebra.color.as_str(),
            zebra.workspace_id
        ),
        ("zebra", "#000000", ws.id)
    );
    let zebra_again = s
        .ensure_label(ws.id, NewLabel::new("ZEBRA", "#111111"))
        .await
        .expect("ensure again");
    assert_eq!(zebra_again, zebra);
    assert_eq!(s.list_labels(ws.id).await.expect("list_labels").len(), 9);

    invalid(
        s.create_label(ws.id, NewLabel::new(" ", "#000000")).await,
        "name",
        "an empty label name",
    );
    invalid(
        s.create_label(ws.id, NewLabel::new("x", "blue")).await,
        "color",
        "a bad label colour",
    );
    invalid(
        s.ensure_label(ws.id, NewLabel::new("y", "#12345")).await,
        "color",
        "ensure_label with a bad colour",
    );
    assert_eq!(
        s.list_labels(ws.id).await.expect("list_labels").len(),
        9,
        "rejected labels write nothing"
    );

    let theirs = s
        .create_label(other.id, NewLabel::new("urgent-ops", "#ff0000"))
        .await
        .expect("same name in another workspace");
    assert_ne!(theirs.id, l.id);
    assert_eq!(s.list_labels(other.id).await.expect("list_labels").len(), 8);
    assert_eq!(s.list_labels(ws.id).await.expect("list_labels").len(), 9);
    not_found(
        s.create_label(WorkspaceId::new(), NewLabel::new("x", "#000000"))
            .await,
        "create_label in an unknown workspace",
    );
}
