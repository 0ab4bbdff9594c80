//! Importing work from elsewhere: a Linear CSV export ([`linear`]). The rules are pure: a source
//! is parsed into an [`ImportPlan`] (what the source holds, row problems included); the store,
//! inside one transaction, loads what the workspace already has ([`ImportTarget`]) and calls
//! [`resolve`], which decides what is created, what was imported before (the import map:
//! source + kind + external id → our id) and which numbers the new issues get. A dry run is the
//! same call with nothing written, so its counts are exactly what a real run would do.

pub mod linear;
pub mod original;

use crate::Timestamp;
use crate::customer::Customer;
use crate::error::{Error, Result};
use crate::ids::FixAttemptId;
use crate::ids::{CommentId, CustomerId, IssueId, LabelId, LinkId, WorkspaceId};
use crate::issue::{
    Actor, Column, Comment, HistoryAction, HistoryEntry, Issue, Label, NewHistory, NewIssue,
    NewLabel, Priority, Workspace, default_labels, format_identifier,
};
use crate::ports::ErrorLink;
use crate::verify::FixAttempt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

/// Kind of an imported row in the import map.
pub const KIND_ISSUE: &str = "issue";
pub const KIND_CUSTOMER: &str = "customer";
pub const KIND_COMMENT: &str = "comment";
pub const KIND_HISTORY: &str = "history";
pub const KIND_LINK: &str = "link";
pub const KIND_WATCHER: &str = "watcher";
pub const KIND_FIX: &str = "fix_attempt";

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
    /// Keep this number (the original Dispatch's own identifiers) when the workspace has the
    /// same prefix and the number is free; otherwise the issue gets the next number.
    pub number: Option<i64>,
    /// The source's id of the issue's customer (a customer of this plan).
    pub customer: Option<String>,
    /// Write a `created` history entry saying where it came from (sources without history).
    pub record_created: bool,
}

/// A customer (the original Dispatch), its portal token kept so that portal links keep working.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportCustomer {
    pub external_id: String,
    pub name: String,
    pub slug: String,
    pub slack_channel_id: Option<String>,
    pub portal_token: String,
    pub brand_color: Option<String>,
    pub logo_url: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A comment of an imported issue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportComment {
    pub external_id: String,
    pub issue: String,
    pub author: Option<String>,
    pub body: String,
    pub created_at: Timestamp,
}

/// A history entry of an imported issue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportHistory {
    pub external_id: String,
    pub issue: String,
    pub entry: NewHistory,
    pub created_at: Timestamp,
}

/// An error link (fingerprint or external id) of an imported issue, with its counts and cooldown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportLink {
    pub external_id: String,
    pub issue: String,
    pub source: String,
    pub external_key: String,
    pub fingerprint: String,
    pub url: Option<String>,
    pub metadata: serde_json::Value,
    pub event_count: u64,
    pub first_seen_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub cooldown_until: Option<Timestamp>,
}

/// A fix attempt (merged PR under verification) of an imported issue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportFix {
    pub external_id: String,
    pub issue: String,
    /// The attempt as it is (its id and issue are replaced by ours).
    pub attempt: FixAttempt,
}

/// A customer watching an imported issue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportWatcher {
    pub issue: String,
    pub customer: String,
    pub added_at: Timestamp,
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
    pub customers: Vec<ImportCustomer>,
    pub comments: Vec<ImportComment>,
    pub history: Vec<ImportHistory>,
    pub links: Vec<ImportLink>,
    pub watchers: Vec<ImportWatcher>,
    pub fixes: Vec<ImportFix>,
    /// The source's own counter: the workspace's ends at least here.
    pub next_issue_number: Option<i64>,
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
    /// Issue numbers the workspace has used.
    pub used_numbers: HashSet<i64>,
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

/// What the store writes, decided by [`resolve`]; rows in dependency order.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportWrite {
    pub labels: Vec<Label>,
    pub customers: Vec<Customer>,
    pub issues: Vec<Issue>,
    pub comments: Vec<Comment>,
    pub history: Vec<HistoryEntry>,
    pub links: Vec<ErrorLink>,
    pub watchers: Vec<(IssueId, CustomerId, Timestamp)>,
    pub fixes: Vec<FixAttempt>,
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
    /// Rows created per kind (`issue`, `customer`, `comment`, `history`, `link`, `watcher`).
    pub created: BTreeMap<String, usize>,
    /// Rows an earlier import already brought in, per kind.
    pub skipped: BTreeMap<String, usize>,
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

/// Decides what an import writes into `target`: rows not in the import map yet are created and
/// recorded there, rows already in it are skipped (so a second import creates nothing). Issues
/// keep their source number when asked and free under the same prefix, otherwise they get the
/// next numbers of the workspace (in source order), and the counter ends above every number used,
/// so identifiers the workspace issues later never collide. Missing labels are created (colours
/// cycling through the default palette). Comments, history, links and watchers of issues imported
/// earlier attach to those. Pure: the same plan on the same target gives the same decision (ids
/// aside).
pub fn resolve(plan: &ImportPlan, target: &ImportTarget, now: Timestamp) -> Result<ImportWrite> {
    let ws = &target.workspace;
    let actor = import_actor(&plan.source);
    let palette: Vec<String> = default_labels().into_iter().map(|l| l.color).collect();
    let mut labels: HashMap<String, LabelId> = target
        .labels
        .iter()
        .map(|l| (label_key(&l.name), l.id))
        .collect();
    let mut w = ImportWrite {
        labels: Vec::new(),
        customers: Vec::new(),
        issues: Vec::new(),
        comments: Vec::new(),
        history: Vec::new(),
        links: Vec::new(),
        watchers: Vec::new(),
        fixes: Vec::new(),
        mappings: Vec::new(),
        next_issue_number: ws.next_issue_number,
        report: ImportReport {
            source: plan.source.clone(),
            rows: plan.rows,
            problems: plan.problems.clone(),
            ..ImportReport::default()
        },
    };
    let mut ids: HashMap<(&str, String), Uuid> = HashMap::new();
    let map = |w: &mut ImportWrite, kind: &'static str, ext: &str, id: Uuid| {
        *w.report.created.entry(kind.to_string()).or_default() += 1;
        w.mappings.push(ImportMapping {
            workspace_id: ws.id,
            source: plan.source.clone(),
            kind: kind.into(),
            external_id: ext.to_string(),
            target_id: id,
        });
    };
    let known = |kind: &str, ext: &str| {
        target
            .imported
            .get(&(kind.to_string(), ext.to_string()))
            .copied()
    };
    let skip = |w: &mut ImportWrite, kind: &str| {
        *w.report.skipped.entry(kind.to_string()).or_default() += 1;
    };

    for c in &plan.customers {
        if let Some(id) = known(KIND_CUSTOMER, &c.external_id) {
            ids.insert((KIND_CUSTOMER, c.external_id.clone()), id);
            skip(&mut w, KIND_CUSTOMER);
            continue;
        }
        let customer = Customer {
            id: CustomerId::new(),
            workspace_id: ws.id,
            name: c.name.clone(),
            slug: c.slug.clone(),
            slack_channel_id: c.slack_channel_id.clone(),
            portal_token: c.portal_token.clone(),
            brand_color: c.brand_color.clone(),
            logo_url: c.logo_url.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        };
        ids.insert((KIND_CUSTOMER, c.external_id.clone()), customer.id.0);
        map(&mut w, KIND_CUSTOMER, &c.external_id, customer.id.0);
        w.customers.push(customer);
    }

    let mut used = target.used_numbers.clone();
    let mut next = ws.next_issue_number.max(1);
    let mut seen: HashSet<&str> = HashSet::new();
    // Kept numbers first, so that a fresh number never takes one a later row keeps.
    for row in &plan.issues {
        if let Some(n) = row.number
            && known(KIND_ISSUE, &row.external_id).is_none()
        {
            used.insert(n);
        }
    }
    for row in &plan.issues {
        if !seen.insert(row.external_id.as_str()) {
            w.report.problems.push(RowProblem {
                line: row.line,
                external_id: Some(row.external_id.clone()),
                message: format!(
                    "{} appears twice in the source; the first row counts",
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
        if let Some(id) = known(KIND_ISSUE, &row.external_id) {
            ids.insert((KIND_ISSUE, row.external_id.clone()), id);
            w.report.issues_skipped += 1;
            skip(&mut w, KIND_ISSUE);
            mapped.action = "already_imported".into();
            w.report.mapping.push(mapped);
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
                    let color = palette[w.labels.len() % palette.len()].clone();
                    let new = NewLabel::new(name.trim(), color);
                    new.validate()?;
                    let l = Label {
                        id: LabelId::new(),
                        workspace_id: ws.id,
                        name: new.name,
                        color: new.color,
                    };
                    labels.insert(k, l.id);
                    w.report.labels_created.push(l.name.clone());
                    let id = l.id;
                    w.labels.push(l);
                    id
                }
            };
            if !label_ids.contains(&id) {
                label_ids.push(id);
            }
        }
        let customer_id = row
            .customer
            .as_ref()
            .and_then(|c| ids.get(&(KIND_CUSTOMER, c.clone())))
            .map(|id| CustomerId(*id));
        let new = NewIssue {
            title: row.title.clone(),
            description: row.description.clone(),
            column_id: Some(column.id),
            priority: row.priority,
            assignee: row.assignee.clone(),
            labels: label_ids,
            customer_id,
            reporter_id: None,
        };
        if let Err(e) = new.validate() {
            w.report.problems.push(RowProblem {
                line: row.line,
                external_id: Some(row.external_id.clone()),
                message: e.message.clone(),
                skipped: true,
            });
            continue;
        }
        let number = match row.number {
            Some(n) if n > 0 && !target.used_numbers.contains(&n) => n,
            _ => {
                while used.contains(&next) {
                    next += 1;
                }
                used.insert(next);
                next
            }
        };
        w.next_issue_number = w.next_issue_number.max(number + 1);
        let identifier = format_identifier(&ws.issue_prefix, number);
        if row.number.is_some_and(|n| n != number) {
            w.report.problems.push(RowProblem {
                line: row.line,
                external_id: Some(row.external_id.clone()),
                message: format!(
                    "{} is taken here: imported as {identifier}",
                    row.external_id
                ),
                skipped: false,
            });
        }
        let mut issue =
            new.into_issue(ws.id, number, identifier.clone(), column.id, row.created_at);
        issue.updated_at = row.updated_at.max(row.created_at);
        if row.record_created {
            w.history.push(
                NewHistory::new(HistoryAction::Created, &actor)
                    .values(
                        None,
                        Some(serde_json::json!({
                            "source": plan.source,
                            "external_id": row.external_id,
                            "identifier": identifier,
                            "imported_at": now,
                        })),
                    )
                    .into_entry(issue.id, row.created_at),
            );
        }
        mapped.identifier = Some(identifier);
        if let Some(a) = &row.assignee
            && !w.report.assignees.contains(a)
        {
            w.report.assignees.push(a.clone());
        }
        *w.report.by_column.entry(column.name.clone()).or_default() += 1;
        w.report.issues_created += 1;
        w.report.mapping.push(mapped);
        ids.insert((KIND_ISSUE, row.external_id.clone()), issue.id.0);
        map(&mut w, KIND_ISSUE, &row.external_id, issue.id.0);
        w.issues.push(issue);
    }
    if let Some(n) = plan.next_issue_number {
        w.next_issue_number = w.next_issue_number.max(n);
    }

    // Rows of issues: attached to the issue of this import or of an earlier one.
    let issue_of = |ids: &HashMap<(&str, String), Uuid>, ext: &str| {
        ids.get(&(KIND_ISSUE, ext.to_string()))
            .map(|id| IssueId(*id))
    };
    let orphan = |w: &mut ImportWrite, kind: &str, ext: &str, issue: &str| {
        w.report.problems.push(RowProblem {
            line: None,
            external_id: Some(ext.to_string()),
            message: format!("{kind} {ext} belongs to issue {issue}, which is not imported"),
            skipped: true,
        });
    };
    for c in &plan.comments {
        if known(KIND_COMMENT, &c.external_id).is_some() {
            skip(&mut w, KIND_COMMENT);
            continue;
        }
        let Some(issue_id) = issue_of(&ids, &c.issue) else {
            orphan(&mut w, KIND_COMMENT, &c.external_id, &c.issue);
            continue;
        };
        let comment = Comment {
            id: CommentId::new(),
            issue_id,
            author: c.author.clone(),
            body: c.body.clone(),
            created_at: c.created_at,
        };
        map(&mut w, KIND_COMMENT, &c.external_id, comment.id.0);
        w.comments.push(comment);
    }
    for h in &plan.history {
        if known(KIND_HISTORY, &h.external_id).is_some() {
            skip(&mut w, KIND_HISTORY);
            continue;
        }
        let Some(issue_id) = issue_of(&ids, &h.issue) else {
            orphan(&mut w, KIND_HISTORY, &h.external_id, &h.issue);
            continue;
        };
        let entry = h.entry.clone().into_entry(issue_id, h.created_at);
        map(&mut w, KIND_HISTORY, &h.external_id, entry.id.0);
        w.history.push(entry);
    }
    for l in &plan.links {
        if known(KIND_LINK, &l.external_id).is_some() {
            skip(&mut w, KIND_LINK);
            continue;
        }
        let Some(issue_id) = issue_of(&ids, &l.issue) else {
            orphan(&mut w, KIND_LINK, &l.external_id, &l.issue);
            continue;
        };
        let link = ErrorLink {
            id: LinkId::new(),
            issue_id,
            source: l.source.clone(),
            external_key: l.external_key.clone(),
            fingerprint: l.fingerprint.clone(),
            url: l.url.clone(),
            metadata: l.metadata.clone(),
            event_count: l.event_count,
            first_seen_at: l.first_seen_at,
            last_seen_at: l.last_seen_at,
            cooldown_until: l.cooldown_until,
        };
        map(&mut w, KIND_LINK, &l.external_id, link.id.0);
        w.links.push(link);
    }
    for x in &plan.watchers {
        let ext = format!("{}|{}", x.issue, x.customer);
        if known(KIND_WATCHER, &ext).is_some() {
            skip(&mut w, KIND_WATCHER);
            continue;
        }
        let (Some(issue_id), Some(customer)) = (
            issue_of(&ids, &x.issue),
            ids.get(&(KIND_CUSTOMER, x.customer.clone())),
        ) else {
            orphan(&mut w, KIND_WATCHER, &ext, &x.issue);
            continue;
        };
        map(&mut w, KIND_WATCHER, &ext, issue_id.0);
        w.watchers
            .push((issue_id, CustomerId(*customer), x.added_at));
    }
    let mut prs: HashSet<(IssueId, i64)> = HashSet::new();
    for f in &plan.fixes {
        if known(KIND_FIX, &f.external_id).is_some() {
            skip(&mut w, KIND_FIX);
            continue;
        }
        let Some(issue_id) = issue_of(&ids, &f.issue) else {
            orphan(&mut w, KIND_FIX, &f.external_id, &f.issue);
            continue;
        };
        // One attempt per (issue, PR), as the stores keep them.
        if !prs.insert((issue_id, f.attempt.pr_number)) {
            w.report.problems.push(RowProblem {
                line: None,
                external_id: Some(f.external_id.clone()),
                message: format!(
                    "a second fix attempt for PR #{} of issue {}",
                    f.attempt.pr_number, f.issue
                ),
                skipped: true,
            });
            continue;
        }
        let attempt = FixAttempt {
            id: FixAttemptId::new(),
            issue_id,
            ..f.attempt.clone()
        };
        map(&mut w, KIND_FIX, &f.external_id, attempt.id.0);
        w.fixes.push(attempt);
    }
    Ok(w)
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
