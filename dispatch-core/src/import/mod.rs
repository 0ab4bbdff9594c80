//! Importing work from elsewhere: a Linear CSV export ([`linear`]). The rules are pure: a source
//! is parsed into an [`ImportPlan`] (what the source holds, row problems included); the store,
//! inside one transaction, loads what the workspace already has ([`ImportTarget`]) and calls
//! [`resolve`], which decides what is created, what was imported before (the import map:
//! source + kind + external id → our id) and which numbers the new issues get. A dry run is the
//! same call with nothing written, so its counts are exactly what a real run would do.

pub mod linear;

use crate::Timestamp;
use crate::error::{Error, Result};
use crate::ids::{LabelId, WorkspaceId};
use crate::issue::{
    Actor, Column, HistoryAction, Issue, Label, NewHistory, NewIssue, NewLabel, Priority,
    Workspace, default_labels, format_identifier,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

/// Kind of an imported row in the import map.
pub const KIND_ISSUE: &str = "issue";

/// One issue as the source has it, already mapped to our vocabulary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportIssue {
    /// The source's id of the issue (Linear: `ENG-123`), its key in the import map.
    pub external_id: String,
    /// The line of the source file the row starts on (CSV sources).
    pub line: Option<u64>,
    pub title: String,
    pub description: Option<String>,
    /// The source's status, as written there.
    pub source_status: String,
    /// Our column it goes to (a default column name; see [`linear::column_for_status`]).
    pub column: String,
    pub source_priority: String,
    pub priority: Priority,
    pub assignee: Option<String>,
    /// Label names as the source has them (folded case-insensitively onto ours).
    pub labels: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A row the source could not give us, with where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowProblem {
    /// The line of the source file (1 = the header of a CSV file); `None` for the whole file.
    pub line: Option<u64>,
    /// The source's id of the row, when it has one.
    pub external_id: Option<String>,
    pub message: String,
    /// `true` when the row was left out; `false` for a warning (the row is imported).
    pub skipped: bool,
}

/// What a source holds, mapped to our vocabulary; independent of the workspace it goes to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportPlan {
    /// `linear`.
    pub source: String,
    /// Data rows read (good and bad).
    pub rows: usize,
    pub issues: Vec<ImportIssue>,
    pub problems: Vec<RowProblem>,
}

/// What the workspace already has, loaded (and locked) by the store for [`resolve`].
#[derive(Debug, Clone)]
pub struct ImportTarget {
    pub workspace: Workspace,
    pub columns: Vec<Column>,
    pub labels: Vec<Label>,
    /// The import map of this source: (kind, external id) → our id.
    pub imported: HashMap<(String, String), Uuid>,
}

/// A row of the import map: a source's row and what it became here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportMapping {
    pub workspace_id: WorkspaceId,
    pub source: String,
    pub kind: String,
    pub external_id: String,
    pub target_id: Uuid,
}

/// One new issue with the history written for it (at its `created_at`).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedIssueRow {
    pub issue: Issue,
    pub history: Vec<NewHistory>,
}

/// What the store writes, decided by [`resolve`].
#[derive(Debug, Clone, PartialEq)]
pub struct ImportWrite {
    pub labels: Vec<Label>,
    pub issues: Vec<ImportedIssueRow>,
    pub mappings: Vec<ImportMapping>,
    /// The workspace's counter after the import (never lowered).
    pub next_issue_number: i64,
    pub report: ImportReport,
}

/// How one source row was (or would be) mapped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowMapping {
    pub line: Option<u64>,
    pub external_id: String,
    /// Our identifier: the new one, or the one an earlier import gave it.
    pub identifier: Option<String>,
    pub source_status: String,
    pub column: String,
    pub source_priority: String,
    pub priority: Priority,
    /// `created`, or `already_imported`.
    pub action: String,
}

/// What an import did, or (dry run) would do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    pub source: String,
    pub dry_run: bool,
    /// Data rows read.
    pub rows: usize,
    pub issues_created: usize,
    /// Rows an earlier import already brought in (nothing written for them).
    pub issues_skipped: usize,
    pub labels_created: Vec<String>,
    /// Assignee names the imported issues carry.
    pub assignees: Vec<String>,
    /// Issues per column of ours.
    pub by_column: BTreeMap<String, usize>,
    pub mapping: Vec<RowMapping>,
    pub problems: Vec<RowProblem>,
}

/// The actor of imported history.
pub fn import_actor(source: &str) -> Actor {
    Actor::system(format!("{source} import"))
}

/// The key labels are unique by in a workspace (the stores' `name_key`): trimmed, lower case.
fn label_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Decides what an import writes into `target`: issues not in the import map yet get the next
/// numbers of the workspace (in source order, so identifiers the workspace issues later never
/// collide), missing labels are created (colours cycling through the default palette), and every
/// new row is recorded in the import map. Pure: the same plan on the same target gives the same
/// decision (ids aside).
pub fn resolve(plan: &ImportPlan, target: &ImportTarget, now: Timestamp) -> Result<ImportWrite> {
    let ws = &target.workspace;
    let actor = import_actor(&plan.source);
    let palette: Vec<String> = default_labels().into_iter().map(|l| l.color).collect();
    let mut labels: HashMap<String, LabelId> = target
        .labels
        .iter()
        .map(|l| (label_key(&l.name), l.id))
        .collect();
    let mut new_labels: Vec<Label> = Vec::new();
    let mut report = ImportReport {
        source: plan.source.clone(),
        rows: plan.rows,
        problems: plan.problems.clone(),
        ..ImportReport::default()
    };
    let mut next = ws.next_issue_number.max(1);
    let mut issues = Vec::new();
    let mut mappings = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for row in &plan.issues {
        let key = (KIND_ISSUE.to_string(), row.external_id.clone());
        if !seen.insert(row.external_id.as_str()) {
            report.problems.push(RowProblem {
                line: row.line,
                external_id: Some(row.external_id.clone()),
                message: format!(
                    "{} appears twice in the file; the first row counts",
                    row.external_id
                ),
                skipped: true,
            });
            continue;
        }
        let column = target
            .columns
            .iter()
            .find(|c| c.is_named(&row.column))
            .or_else(|| target.columns.first())
            .ok_or_else(|| Error::conflict("the workspace has no columns"))?;
        let mut mapped = RowMapping {
            line: row.line,
            external_id: row.external_id.clone(),
            identifier: None,
            source_status: row.source_status.clone(),
            column: column.name.clone(),
            source_priority: row.source_priority.clone(),
            priority: row.priority,
            action: "created".into(),
        };
        if target.imported.contains_key(&key) {
            report.issues_skipped += 1;
            mapped.action = "already_imported".into();
            report.mapping.push(mapped);
            continue;
        }
        let mut label_ids = Vec::new();
        for name in &row.labels {
            let k = label_key(name);
            if k.is_empty() {
                continue;
            }
            let id = match labels.get(&k) {
                Some(id) => *id,
                None => {
                    let color = palette[new_labels.len() % palette.len()].clone();
                    let new = NewLabel::new(name.trim(), color);
                    new.validate()?;
                    let l = Label {
                        id: LabelId::new(),
                        workspace_id: ws.id,
                        name: new.name,
                        color: new.color,
                    };
                    labels.insert(k, l.id);
                    report.labels_created.push(l.name.clone());
                    let id = l.id;
                    new_labels.push(l);
                    id
                }
            };
            if !label_ids.contains(&id) {
                label_ids.push(id);
            }
        }
        let new = NewIssue {
            title: row.title.clone(),
            description: row.description.clone(),
            column_id: Some(column.id),
            priority: row.priority,
            assignee: row.assignee.clone(),
            labels: label_ids,
            customer_id: None,
            reporter_id: None,
        };
        if let Err(e) = new.validate() {
            report.problems.push(RowProblem {
                line: row.line,
                external_id: Some(row.external_id.clone()),
                message: e.message.clone(),
                skipped: true,
            });
            continue;
        }
        let number = next;
        next += 1;
        let identifier = format_identifier(&ws.issue_prefix, number);
        let mut issue =
            new.into_issue(ws.id, number, identifier.clone(), column.id, row.created_at);
        issue.updated_at = row.updated_at.max(row.created_at);
        let history = vec![NewHistory::new(HistoryAction::Created, &actor).values(
            None,
            Some(serde_json::json!({
                "source": plan.source,
                "external_id": row.external_id,
                "identifier": identifier,
                "imported_at": now,
            })),
        )];
        mapped.identifier = Some(identifier);
        if let Some(a) = &row.assignee
            && !report.assignees.contains(a)
        {
            report.assignees.push(a.clone());
        }
        *report.by_column.entry(column.name.clone()).or_default() += 1;
        report.issues_created += 1;
        report.mapping.push(mapped);
        mappings.push(ImportMapping {
            workspace_id: ws.id,
            source: plan.source.clone(),
            kind: KIND_ISSUE.into(),
            external_id: row.external_id.clone(),
            target_id: issue.id.0,
        });
        issues.push(ImportedIssueRow { issue, history });
    }
    Ok(ImportWrite {
        labels: new_labels,
        issues,
        mappings,
        next_issue_number: next.max(ws.next_issue_number),
        report,
    })
}

/// Imports a Linear CSV export into the workspace (or, `dry_run`, reports what that would do).
/// The use-case behind `dispatch import linear` and `POST /api/import`.
pub async fn import_linear(
    store: &dyn crate::ports::Store,
    ws: WorkspaceId,
    csv: &[u8],
    dry_run: bool,
    now: Timestamp,
) -> Result<ImportReport> {
    let plan = linear::parse(csv, now)?;
    store.apply_import(ws, &plan, dry_run, now).await
}

#[cfg(test)]
mod tests;
