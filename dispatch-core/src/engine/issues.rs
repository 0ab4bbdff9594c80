//! Issue use-cases: create, read, change, move (through the close gate), comments, watchers,
//! columns and labels.

use super::Dispatch;
use super::outbox::Move;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{ColumnId, CustomerId, IssueId, IssueRef, LabelId};
use crate::issue::{
    Actor, AgentStatus, Column, ColumnCategory, Comment, HistoryEntry, Issue, IssueFilter,
    IssuePatch, Label, NewColumn, NewComment, NewIssue, NewLabel, Priority, diff_history, names,
};
use crate::ports::{Event, IssueUpdate, Notification};
use crate::verify::{self, CloseBlock};
use serde::{Deserialize, Serialize};

/// A column by id or by (case-insensitive) name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ColumnRef {
    Id(ColumnId),
    Name(String),
    /// A status a person or a model typed: the column named so (any case), else the one column
    /// whose name contains it ([`crate::issue::match_column`]).
    Typed(String),
}

/// Issues as a person or a model asks for them: by a status they typed (every column whose name
/// contains it, any case), a priority and part of an assignee's name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IssueQuery {
    pub status: Option<String>,
    pub priority: Option<crate::issue::Priority>,
    pub assignee: Option<String>,
    /// At most this many (newest first).
    pub limit: usize,
}

/// What a person or an agent may change on an issue directly. Spawn and run state change only
/// through runs; plans through the plan use-cases.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IssueChanges {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub column: Option<ColumnRef>,
    pub priority: Option<Priority>,
    pub assignee: Option<Option<String>>,
    pub labels: Option<Vec<LabelId>>,
    pub customer_id: Option<Option<CustomerId>>,
    pub agent_status: Option<AgentStatus>,
    pub blocked_reason: Option<Option<String>>,
}

/// How long [`Dispatch::columns_for_display`] keeps the columns it read.
pub const COLUMNS_SHOWN_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// Optimistic updates retry this often before giving up with `Conflict`.
pub(super) const UPDATE_RETRIES: usize = 5;

impl Dispatch {
    pub async fn create_issue(&self, new: NewIssue, actor: &Actor) -> Result<Issue> {
        self.create_issue_notifying(new, None, actor).await
    }

    /// Creates the issue with its "issue created" notifications stored in the same transaction
    /// (after `thread`, an existing Slack thread recorded as the issue's thread in a channel),
    /// then publishes it; the embedding it owes is computed in the background.
    pub(crate) async fn create_issue_notifying(
        &self,
        new: NewIssue,
        thread: Option<(String, String)>,
        actor: &Actor,
    ) -> Result<Issue> {
        new.validate()?;
        self.check_labels(&new.labels).await?;
        if let Some(c) = new.customer_id {
            self.inner.store.get_customer(c).await?;
        }
        let outbox = self.creation_outbox(&new, None, thread).await;
        let issue = self
            .inner
            .store
            .create_issue(self.inner.workspace.id, new, actor, self.now(), &outbox)
            .await?;
        self.publish(Event::IssueCreated { issue_id: issue.id })
            .await;
        self.wake_embedder();
        self.notify_stored(Notification::IssueCreated {
            issue: issue.clone(),
        })
        .await;
        Ok(issue)
    }

    pub async fn get_issue(&self, issue: impl Into<IssueRef>) -> Result<Issue> {
        self.inner
            .store
            .get_issue(self.inner.workspace.id, &issue.into())
            .await
    }

    pub async fn list_issues(&self, filter: &IssueFilter) -> Result<Vec<Issue>> {
        self.inner
            .store
            .list_issues(self.inner.workspace.id, filter)
            .await
    }

    pub async fn columns(&self) -> Result<Vec<Column>> {
        self.inner.store.list_columns(self.inner.workspace.id).await
    }

    /// The columns for rendering an issue (its status name and colour), read at most every
    /// [`COLUMNS_SHOWN_FOR`] (each store read is a round trip to the database's thread; a busy
    /// API renders thousands of issues a second). Changes made through this process show at
    /// once, another replica's within that time. Decisions use [`Dispatch::columns`].
    pub async fn columns_for_display(&self) -> Result<Vec<Column>> {
        if let Some((at, cols)) = self
            .inner
            .columns_shown
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            && at.elapsed() < COLUMNS_SHOWN_FOR
        {
            return Ok(cols.clone());
        }
        let cols = self.columns().await?;
        *self
            .inner
            .columns_shown
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((std::time::Instant::now(), cols.clone()));
        Ok(cols)
    }

    fn forget_columns_shown(&self) {
        *self
            .inner
            .columns_shown
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub async fn labels(&self) -> Result<Vec<Label>> {
        self.inner.store.list_labels(self.inner.workspace.id).await
    }

    pub async fn add_column(&self, column: NewColumn) -> Result<Column> {
        let c = self
            .inner
            .store
            .add_column(self.inner.workspace.id, column)
            .await;
        self.forget_columns_shown();
        c
    }

    pub async fn reorder_columns(&self, order: &[ColumnId]) -> Result<Vec<Column>> {
        let c = self
            .inner
            .store
            .reorder_columns(self.inner.workspace.id, order)
            .await;
        self.forget_columns_shown();
        c
    }

    pub async fn create_label(&self, label: NewLabel) -> Result<Label> {
        self.inner
            .store
            .create_label(self.inner.workspace.id, label)
            .await
    }

    pub async fn resolve_column(&self, r: &ColumnRef) -> Result<Column> {
        let cols = self.columns().await?;
        let found = match r {
            ColumnRef::Id(id) => cols.into_iter().find(|c| c.id == *id),
            ColumnRef::Name(n) => cols.into_iter().find(|c| c.is_named(n)),
            ColumnRef::Typed(t) => return crate::issue::match_column(&cols, t).cloned(),
        };
        found.ok_or_else(|| {
            let what = match r {
                ColumnRef::Id(id) => id.to_string(),
                ColumnRef::Name(n) | ColumnRef::Typed(n) => format!("{n:?}"),
            };
            Error::invalid("status", format!("no column {what} in this workspace"))
        })
    }

    async fn check_labels(&self, labels: &[LabelId]) -> Result<()> {
        if labels.is_empty() {
            return Ok(());
        }
        let known = self.labels().await?;
        if let Some(bad) = labels.iter().find(|l| !known.iter().any(|k| k.id == **l)) {
            return Err(Error::invalid(
                "labelIds",
                format!("label {bad} does not exist"),
            ));
        }
        Ok(())
    }

    /// Whether the issue may move into a closed column now (spec §6.7): an issue that came from
    /// an error source needs a verified fix. Deadlines that passed are settled first, so the
    /// answer never depends on whether the sweeper already ran.
    pub async fn can_close(&self, issue: &Issue) -> Result<std::result::Result<(), CloseBlock>> {
        let links = self.inner.store.links_for_issue(issue.id).await?;
        let latest = self.settle_due_attempt(issue.id).await?;
        Ok(verify::close_gate(
            !links.is_empty(),
            latest.as_ref(),
            self.now(),
        ))
    }

    /// Issues matching a typed query, newest first: read a page at a time until `limit` pass
    /// (at most 50,000 read). A status no column contains is `InvalidInput` on `status`
    /// naming the columns.
    pub async fn query_issues(&self, q: &IssueQuery) -> Result<Vec<Issue>> {
        const PAGE: usize = 500;
        const PAGES: usize = 100;
        let lowered = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_lowercase)
        };
        let columns = match lowered(&q.status) {
            Some(st) => {
                let cols = self.columns_for_display().await?;
                let ids: Vec<ColumnId> = cols
                    .iter()
                    .filter(|c| c.name.to_lowercase().contains(&st))
                    .map(|c| c.id)
                    .collect();
                if ids.is_empty() {
                    crate::issue::match_column(&cols, &st)?;
                }
                Some(ids)
            }
            None => None,
        };
        let assignee = lowered(&q.assignee);
        let mut out = Vec::new();
        let mut before = None;
        for _ in 0..PAGES {
            let page = self
                .list_issues(&IssueFilter {
                    before_number: before,
                    limit: Some(PAGE),
                    ..IssueFilter::default()
                })
                .await?;
            let done = page.len() < PAGE;
            before = page.last().map(|i| i.number);
            out.extend(page.into_iter().filter(|i| {
                columns.as_ref().is_none_or(|cs| cs.contains(&i.column_id))
                    && q.priority.is_none_or(|p| i.priority == p)
                    && assignee.as_deref().is_none_or(|a| {
                        i.assignee
                            .as_deref()
                            .is_some_and(|x| x.to_lowercase().contains(a))
                    })
            }));
            if out.len() >= q.limit || done {
                break;
            }
        }
        out.truncate(q.limit);
        Ok(out)
    }

    /// Changes an issue. Moving it into a closed column goes through the close gate; a failed
    /// gate is `Forbidden` with the reason, and nothing changes.
    pub async fn update_issue(
        &self,
        issue: impl Into<IssueRef>,
        changes: IssueChanges,
        actor: &Actor,
    ) -> Result<Issue> {
        let r = issue.into();
        if let Some(t) = &changes.title
            && t.trim().is_empty()
        {
            return Err(Error::invalid("title", "title must not be empty"));
        }
        if let Some(l) = &changes.labels {
            self.check_labels(l).await?;
        }
        let target = match &changes.column {
            Some(c) => Some(self.resolve_column(c).await?),
            None => None,
        };
        for _ in 0..UPDATE_RETRIES {
            let current = self.get_issue(r.clone()).await?;
            let patch = IssuePatch {
                title: changes.title.as_ref().map(|t| t.trim().to_string()),
                // An empty description is no description.
                description: changes
                    .description
                    .clone()
                    .map(|d| d.filter(|s| !s.trim().is_empty())),
                column_id: target.as_ref().map(|c| c.id),
                priority: changes.priority,
                assignee: changes
                    .assignee
                    .clone()
                    .map(|a| a.filter(|s| !s.trim().is_empty())),
                labels: changes.labels.clone(),
                customer_id: changes.customer_id,
                agent_status: changes.agent_status,
                blocked_reason: changes.blocked_reason.clone(),
                ..IssuePatch::default()
            };
            match self.apply_patch(&current, patch, actor).await {
                Err(e) if e.kind == ErrorKind::Conflict => continue,
                Ok(updated) => {
                    if updated.title != current.title || updated.description != current.description
                    {
                        self.wake_embedder();
                    }
                    return Ok(updated);
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict("the issue kept changing; try again"))
    }

    /// Moves an issue to a column (through the close gate when the column is closed).
    pub async fn move_issue(
        &self,
        issue: impl Into<IssueRef>,
        column: ColumnRef,
        actor: &Actor,
    ) -> Result<Issue> {
        self.update_issue(
            issue,
            IssueChanges {
                column: Some(column),
                ..Default::default()
            },
            actor,
        )
        .await
    }

    /// The one write path for issue changes made by the engine: close gate, history, version
    /// check, events, notifications.
    pub(crate) async fn apply_patch(
        &self,
        current: &Issue,
        patch: IssuePatch,
        actor: &Actor,
    ) -> Result<Issue> {
        let moved_to = self.checked_move(current, &patch).await?;
        let history = diff_history(current, &patch, actor);
        if patch.is_empty() {
            return Ok(current.clone());
        }
        let moved = self.describe_move(current, moved_to).await;
        let outbox = self.patch_outbox(current, &patch, moved.as_ref()).await;
        let updated = self
            .inner
            .store
            .update_issue(
                current.id,
                IssueUpdate {
                    patch,
                    history,
                    expected_version: Some(current.version),
                    now: self.now(),
                    outbox,
                },
            )
            .await?;
        self.announce_patch(current, &updated, moved).await;
        Ok(updated)
    }

    /// The column `patch` moves `current` to, when it moves it, after the close gate allowed
    /// a move into a closed column (`Forbidden` with the gate's reason otherwise).
    pub(crate) async fn checked_move(
        &self,
        current: &Issue,
        patch: &IssuePatch,
    ) -> Result<Option<Column>> {
        let Some(col) = patch.column_id.filter(|c| *c != current.column_id) else {
            return Ok(None);
        };
        let cols = self.columns().await?;
        let target = cols
            .iter()
            .find(|c| c.id == col)
            .cloned()
            .ok_or_else(|| Error::invalid("status", format!("no column {col}")))?;
        if target.is_closed() {
            let was_closed = cols
                .iter()
                .any(|c| c.id == current.column_id && c.is_closed());
            if !was_closed && let Err(block) = self.can_close(current).await? {
                return Err(Error::forbidden(block.reason));
            }
        }
        Ok(Some(target))
    }

    /// The move a patch makes, named as it is announced (`None` when it does not move).
    pub(crate) async fn describe_move(
        &self,
        current: &Issue,
        moved_to: Option<Column>,
    ) -> Option<Move> {
        let to = moved_to?;
        let from = self
            .columns()
            .await
            .ok()
            .and_then(|c| {
                c.into_iter()
                    .find(|c| c.id == current.column_id)
                    .map(|c| c.name)
            })
            .unwrap_or_default();
        Some(Move { from, to })
    }

    /// Events of a committed change from `current` to `updated`, and its notifications to the
    /// notifier port (its outbox rows were stored with it: [`Self::patch_outbox`]).
    pub(crate) async fn announce_patch(
        &self,
        current: &Issue,
        updated: &Issue,
        moved: Option<Move>,
    ) {
        match &moved {
            Some(m) => {
                self.publish(Event::IssueMoved {
                    issue_id: updated.id,
                    from: current.column_id,
                    to: m.to.id,
                })
                .await;
            }
            None => {
                self.publish(Event::IssueUpdated {
                    issue_id: updated.id,
                })
                .await;
            }
        }
        for n in patch_notifications(current, updated, moved.as_ref()) {
            self.notify_stored(n).await;
        }
    }

    /// Re-reads and re-applies a patch computed from the current issue until it lands.
    pub(crate) async fn patch_with_retry<F>(
        &self,
        issue_id: IssueId,
        actor: &Actor,
        mut f: F,
    ) -> Result<Issue>
    where
        F: FnMut(&Issue) -> Result<IssuePatch> + Send,
    {
        for _ in 0..UPDATE_RETRIES {
            let current = self.get_issue(issue_id).await?;
            let patch = f(&current)?;
            match self.apply_patch(&current, patch, actor).await {
                Err(e) if e.kind == ErrorKind::Conflict => continue,
                other => return other,
            }
        }
        Err(Error::conflict("the issue kept changing; try again"))
    }

    pub async fn delete_issue(&self, issue: impl Into<IssueRef>) -> Result<Issue> {
        let issue = self.get_issue(issue).await?;
        let deleted_issue = |issue: &Issue| Notification::IssueDeleted {
            issue: issue.clone(),
        };
        let outbox = self.issue_outbox(&issue, deleted_issue).await;
        let deleted = self
            .inner
            .store
            .delete_issue(issue.id, self.now(), &outbox)
            .await?;
        self.publish(Event::IssueDeleted {
            issue_id: deleted.id,
            identifier: deleted.identifier.clone(),
        })
        .await;
        self.notify_stored(deleted_issue(&deleted)).await;
        Ok(deleted)
    }

    pub async fn add_comment(
        &self,
        issue: impl Into<IssueRef>,
        comment: NewComment,
        actor: &Actor,
    ) -> Result<Comment> {
        comment.validate()?;
        let issue = self.get_issue(issue).await?;
        let outbox = self.comment_outbox(&issue).await;
        let c = self
            .inner
            .store
            .add_comment(issue.id, comment, actor, self.now(), &outbox)
            .await?;
        self.publish(Event::IssueUpdated { issue_id: issue.id })
            .await;
        self.notify_stored(Notification::CommentAdded {
            issue,
            comment: c.clone(),
        })
        .await;
        Ok(c)
    }

    pub async fn comments(&self, issue: impl Into<IssueRef>) -> Result<Vec<Comment>> {
        let issue = self.get_issue(issue).await?;
        self.comments_of(&issue).await
    }

    /// The comments of an issue the caller has just read (no second read of the issue).
    pub async fn comments_of(&self, issue: &Issue) -> Result<Vec<Comment>> {
        self.inner.store.list_comments(issue.id).await
    }

    pub async fn history(
        &self,
        issue: impl Into<IssueRef>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>> {
        let issue = self.get_issue(issue).await?;
        self.inner.store.list_history(issue.id, limit).await
    }

    pub async fn add_watcher(
        &self,
        issue: impl Into<IssueRef>,
        customer: CustomerId,
    ) -> Result<bool> {
        let issue = self.get_issue(issue).await?;
        self.inner
            .store
            .add_watcher(issue.id, customer, self.now())
            .await
    }

    pub async fn remove_watcher(
        &self,
        issue: impl Into<IssueRef>,
        customer: CustomerId,
    ) -> Result<bool> {
        let issue = self.get_issue(issue).await?;
        self.inner.store.remove_watcher(issue.id, customer).await
    }

    pub async fn watchers(&self, issue: impl Into<IssueRef>) -> Result<Vec<CustomerId>> {
        let issue = self.get_issue(issue).await?;
        self.inner.store.list_watchers(issue.id).await
    }

    /// The column an engine-driven move targets, by its well-known name; falls back to the first
    /// column of the category (a workspace may have renamed its columns).
    pub(crate) async fn column_named(
        &self,
        name: &str,
        category: ColumnCategory,
    ) -> Result<Column> {
        let cols = self.columns().await?;
        cols.iter()
            .find(|c| c.is_named(name))
            .or_else(|| cols.iter().find(|c| c.category == category))
            .cloned()
            .ok_or_else(|| Error::conflict(format!("the workspace has no {name} column")))
    }

    pub(crate) async fn backlog(&self) -> Result<Column> {
        self.column_named(names::BACKLOG, ColumnCategory::Open)
            .await
    }

    pub(crate) async fn done(&self) -> Result<Column> {
        self.column_named(names::DONE, ColumnCategory::Closed).await
    }

    /// Whether the issue sits in a closed column. A column's category never changes, so the
    /// categories are cached and re-read only for a column not seen yet.
    pub(crate) async fn is_closed(&self, issue: &Issue) -> Result<bool> {
        if let Some(closed) = self
            .inner
            .column_categories
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&issue.column_id)
        {
            return Ok(*closed);
        }
        let cols = self.columns().await?;
        let mut cache = self
            .inner
            .column_categories
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for c in &cols {
            cache.insert(c.id, c.is_closed());
        }
        Ok(cache.get(&issue.column_id).copied().unwrap_or(false))
    }
}

/// The notifications of a change from `current` to `updated`: the move, when it moves, the
/// other changed fields, when any changed, and a new assignee.
pub(crate) fn patch_notifications(
    current: &Issue,
    updated: &Issue,
    moved: Option<&Move>,
) -> Vec<Notification> {
    let mut out = Vec::new();
    if let Some(m) = moved {
        out.push(Notification::StatusChanged {
            issue: updated.clone(),
            from: m.from.clone(),
            to: m.to.name.clone(),
        });
    }
    let changes = changed_fields(current, updated);
    if !changes.is_empty() {
        out.push(Notification::IssueUpdated {
            issue: updated.clone(),
            changes,
        });
    }
    if newly_assigned(current, updated) {
        out.push(Notification::IssueAssigned {
            issue: updated.clone(),
        });
    }
    out
}

/// The change gave the issue a new (non-empty) assignee.
pub(crate) fn newly_assigned(current: &Issue, updated: &Issue) -> bool {
    updated.assignee.is_some() && updated.assignee != current.assignee
}

/// The names of the fields a patch changes, besides the column (a move is `STATUS_CHANGED`).
fn changed_fields(current: &Issue, after: &Issue) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |name: &str, changed: bool| {
        if changed {
            out.push(name.to_string());
        }
    };
    check("title", after.title != current.title);
    check("description", after.description != current.description);
    check("priority", after.priority != current.priority);
    check("assignee", after.assignee != current.assignee);
    check("labels", after.labels != current.labels);
    check("customerId", after.customer_id != current.customer_id);
    check("agentStatus", after.agent_status != current.agent_status);
    check(
        "blockedReason",
        after.blocked_reason != current.blocked_reason,
    );
    check("plan", after.plan != current.plan);
    out
}
