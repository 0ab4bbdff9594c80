//! [`IssueStore`](dispatch_core::ports::IssueStore) for SQLite and PostgreSQL: issues, their
//! comments, history and watchers.

macro_rules! impl_sql_issue_store {
    ($S:ident) => {
        mod sql_issue_impl {
            #[allow(unused_imports)]
            use super::*;
            use super::sql_store_shared::*;
            use dispatch_core::Timestamp;
            use dispatch_core::outbox::OutboxPlan;
            use dispatch_core::error::{Error, Result};
            use dispatch_core::ids::{CommentId, CustomerId, IssueId, IssueRef, WorkspaceId};
            use dispatch_core::issue::{
                Actor, ColumnCategory, Comment, HistoryAction, HistoryEntry, Issue, IssueFilter,
                NewComment, NewHistory, NewIssue, format_identifier,
            };
            use dispatch_core::ports::{IssueStore, IssueUpdate};
            use dispatch_core::run::Run;
            use crate::sql::{db, to_i64};
            use async_trait::async_trait;
            use serde_json::json;
            use sqlx::types::Json;

            impl $S {
                fn row_comment(row: &DbRow) -> Result<Comment> {
                    Ok(Comment {
                        id: CommentId(col!(row, "dispatch_comment", "id", uuid::Uuid)?),
                        issue_id: IssueId(col!(row, "dispatch_comment", "issue_id", uuid::Uuid)?),
                        author: col!(row, "dispatch_comment", "author", Option<String>)?,
                        body: col!(row, "dispatch_comment", "body", String)?,
                        created_at: Self::get_ts(row, "dispatch_comment", "created_at")?,
                    })
                }

                pub(super) async fn insert_issue_tx(tx: &mut Tx, i: &Issue) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO dispatch_issue (id, workspace_id, number, identifier, title, description, column_id, customer_id, spawn_active, version, created_at, updated_at, doc) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                    )
                    .bind(i.id.0)
                    .bind(i.workspace_id.0)
                    .bind(i.number)
                    .bind(&i.identifier)
                    .bind(&i.title)
                    .bind(&i.description)
                    .bind(i.column_id.0)
                    .bind(i.customer_id.map(|c| c.0))
                    .bind(i.spawn_status.is_some_and(|s| s.is_active()))
                    .bind(i.version)
                    .bind(Self::ts(i.created_at))
                    .bind(Self::ts(i.updated_at))
                    .bind(Json(i))
                    .execute(&mut **tx)
                    .await
                    .map_err(db("insert issue"))?;
                    Ok(())
                }

                /// The one insert of watchers: `false` when the customer watched the issue already.
                pub(super) async fn insert_watcher_tx(tx: &mut Tx, issue: IssueId, customer: CustomerId, now: Timestamp) -> Result<bool> {
                    let r = sqlx::query("INSERT INTO dispatch_watcher (issue_id, customer_id, added_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                        .bind(issue.0)
                        .bind(customer.0)
                        .bind(Self::ts(now))
                        .execute(&mut **tx)
                        .await
                        .map_err(db("add watcher"))?;
                    Ok(r.rows_affected() == 1)
                }

                async fn new_issue_tx(tx: &mut Tx, ws: WorkspaceId, new: NewIssue, now: Timestamp) -> Result<Issue> {
                    new.validate()?;
                    let columns = Self::columns_tx(tx, ws).await?;
                    let column_id = match new.column_id {
                        Some(c) => {
                            if !columns.iter().any(|x| x.id == c) {
                                return Err(Error::invalid("statusId", format!("column {c} is not in this workspace")));
                            }
                            c
                        }
                        None => columns
                            .iter()
                            .find(|c| c.category == ColumnCategory::Open)
                            .map(|c| c.id)
                            .ok_or_else(|| Error::conflict("the workspace has no open column"))?,
                    };
                    // The workspace row is the identifier counter: updating it locks it until commit,
                    // which makes identifiers unique and gapless.
                    let row = sqlx::query(
                        "UPDATE dispatch_workspace SET next_issue_number = next_issue_number + 1 WHERE id = $1 RETURNING next_issue_number, issue_prefix",
                    )
                    .bind(ws.0)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db("allocate identifier"))?
                    .ok_or_else(|| Error::not_found(format!("workspace {ws} not found")))?;
                    let number = col!(row, "dispatch_workspace", "next_issue_number", i64)? - 1;
                    let prefix: String = col!(row, "dispatch_workspace", "issue_prefix", String)?;
                    let watcher = new.initial_watcher();
                    let issue = new.into_issue(ws, number, format_identifier(&prefix, number), column_id, now);
                    Self::insert_issue_tx(tx, &issue).await?;
                    if let Some(c) = watcher {
                        Self::customer_tx(tx, c).await?;
                        Self::insert_watcher_tx(tx, issue.id, c, now).await?;
                    }
                    Ok(issue)
                }
            }

            #[async_trait]
            impl IssueStore for $S {
                async fn create_issue(&self, ws: WorkspaceId, issue: NewIssue, actor: &Actor, now: Timestamp, outbox: &OutboxPlan) -> Result<Issue> {
                    issue.validate()?;
                    let mut tx = self.write_tx().await?;
                    let issue = Self::new_issue_tx(&mut tx, ws, issue, now).await?;
                    let deliveries = outbox.render(&issue)?;
                    let h = NewHistory::new(HistoryAction::Created, actor)
                        .values(None, Some(json!({"identifier": issue.identifier, "title": issue.title})));
                    Self::history_tx(&mut tx, issue.id, vec![h], now).await?;
                    Self::enqueue_deliveries_tx(&mut tx, deliveries, now).await?;
                    Self::commit(tx).await?;
                    Ok(issue)
                }

                async fn get_issue(&self, ws: WorkspaceId, issue: &IssueRef) -> Result<Issue> {
                    let row = match issue {
                        IssueRef::Id(id) => sqlx::query("SELECT doc FROM dispatch_issue WHERE id = $1 AND workspace_id = $2")
                            .bind(id.0)
                            .bind(ws.0)
                            .fetch_optional(self.reader())
                            .await,
                        IssueRef::Identifier(ident) => sqlx::query("SELECT doc FROM dispatch_issue WHERE identifier = $1 AND workspace_id = $2")
                            .bind(ident)
                            .bind(ws.0)
                            .fetch_optional(self.reader())
                            .await,
                    }
                    .map_err(db("read issue"))?
                    .ok_or_else(|| issue_not_found(issue))?;
                    doc_col!(row, "dispatch_issue", Issue)
                }

                async fn list_issues(&self, ws: WorkspaceId, f: &IssueFilter) -> Result<Vec<Issue>> {
                    // A filter that is set is written as a plain comparison (not `$n IS NULL OR …`),
                    // so the planner walks the (workspace, column, number) index in order: one
                    // column's newest page of a 10,000-issue board reads its page, not every row.
                    const COLUMN: [&str; 2] = ["$2 IS NULL", "column_id = $2"];
                    const BEFORE: [&str; 2] = ["$6 IS NULL", "number < $6"];
                    let sql = format!(
                        "SELECT doc FROM dispatch_issue i WHERE workspace_id = $1 \
                         AND {} \
                         AND ($3 IS NULL OR customer_id = $3) \
                         AND ($4 IS NULL OR EXISTS (SELECT 1 FROM dispatch_watcher w WHERE w.issue_id = i.id AND w.customer_id = $4)) \
                         AND ($5 IS NULL OR spawn_active = $5) \
                         AND {} \
                         AND ($8 IS NULL OR lower(doc->>'assignee') = lower($8)) \
                         AND ($9 IS NULL OR CAST(doc->'labels' AS TEXT) LIKE '%\"' || $9 || '\"%') \
                         ORDER BY number DESC LIMIT $7",
                        COLUMN[usize::from(f.column_id.is_some())],
                        BEFORE[usize::from(f.before_number.is_some())],
                    );
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(ws.0)
                    .bind(f.column_id.map(|c| c.0))
                    .bind(f.customer_id.map(|c| c.0))
                    .bind(f.watched_by.map(|c| c.0))
                    .bind(f.spawn_active)
                    .bind(f.before_number)
                    .bind(f.limit.map(|l| to_i64(l as u64)).unwrap_or(i64::MAX))
                    .bind(f.assignee.as_deref())
                    // In SQL, before the limit: a page holds `limit` labelled issues when there are.
                    .bind(f.label_id.map(|l| l.to_string()))
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("list issues"))?;
                    rows.into_iter()
                        .map(|r| doc_col!(r, "dispatch_issue", Issue))
                        .collect()
                }

                async fn update_issue(&self, id: IssueId, update: IssueUpdate) -> Result<Issue> {
                    let mut tx = self.write_tx().await?;
                    let issue = Self::write_issue_tx(&mut tx, id, update).await?;
                    Self::commit(tx).await?;
                    Ok(issue)
                }

                async fn delete_issue(&self, id: IssueId, now: Timestamp, outbox: &OutboxPlan) -> Result<Issue> {
                    let mut tx = self.write_tx().await?;
                    // Locks the issue first, as a spawn reservation does.
                    let issue = Self::issue_tx(&mut tx, id).await?;
                    let rows = sqlx::query("SELECT doc FROM dispatch_run WHERE issue_id = $1")
                        .bind(id.0)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db("read runs"))?;
                    let runs = rows.iter().map(|r| doc_col!(r, "dispatch_run", Run)).collect::<Result<Vec<_>>>()?;
                    let carried = dispatch_core::run::plan_issue_deletion(&runs, now)?;
                    let deliveries = outbox.render(&issue)?;
                    for u in carried {
                        sqlx::query("INSERT INTO dispatch_usage_carryover (day, bucket, runs, cost_usd) VALUES ($1, $2, $3, $4) ON CONFLICT (day, bucket) DO UPDATE SET runs = dispatch_usage_carryover.runs + excluded.runs, cost_usd = dispatch_usage_carryover.cost_usd + excluded.cost_usd")
                            .bind(Self::ts(u.day))
                            .bind(bucket_str(u.bucket))
                            .bind(i64::from(u.runs))
                            .bind(u.cost_usd)
                            .execute(&mut *tx)
                            .await
                            .map_err(db("carry usage over"))?;
                    }
                    // Children go by ON DELETE CASCADE.
                    sqlx::query("DELETE FROM dispatch_issue WHERE id = $1").bind(id.0).execute(&mut *tx).await.map_err(db("delete issue"))?;
                    Self::enqueue_deliveries_tx(&mut tx, deliveries, now).await?;
                    Self::commit(tx).await?;
                    Ok(issue)
                }

                async fn add_comment(&self, id: IssueId, comment: NewComment, actor: &Actor, now: Timestamp, outbox: &OutboxPlan<Comment>) -> Result<Comment> {
                    comment.validate()?;
                    let mut tx = self.write_tx().await?;
                    let mut issue = Self::issue_tx(&mut tx, id).await?;
                    let c = Self::comment_tx(&mut tx, &mut issue, comment, actor, now).await?;
                    let deliveries = outbox.render(&c)?;
                    Self::enqueue_deliveries_tx(&mut tx, deliveries, now).await?;
                    Self::commit(tx).await?;
                    Ok(c)
                }


                async fn list_comments(&self, id: IssueId) -> Result<Vec<Comment>> {
                    self.require_issue(id).await?;
                    let rows = sqlx::query("SELECT * FROM dispatch_comment WHERE issue_id = $1 ORDER BY created_at, id")
                        .bind(id.0)
                        .fetch_all(self.reader())
                        .await
                        .map_err(db("list comments"))?;
                    rows.iter().map(Self::row_comment).collect()
                }

                async fn list_history(&self, id: IssueId, limit: usize) -> Result<Vec<HistoryEntry>> {
                    self.require_issue(id).await?;
                    let rows = sqlx::query("SELECT doc FROM dispatch_history WHERE issue_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2")
                        .bind(id.0)
                        .bind(to_i64(limit as u64))
                        .fetch_all(self.reader())
                        .await
                        .map_err(db("list history"))?;
                    rows.into_iter().map(|r| doc_col!(r, "dispatch_history", HistoryEntry)).collect()
                }

                async fn add_watcher(&self, id: IssueId, customer: CustomerId, now: Timestamp) -> Result<bool> {
                    let mut tx = self.write_tx().await?;
                    Self::issue_tx(&mut tx, id).await?;
                    Self::customer_tx(&mut tx, customer).await?;
                    let added = Self::insert_watcher_tx(&mut tx, id, customer, now).await?;
                    Self::commit(tx).await?;
                    Ok(added)
                }

                async fn remove_watcher(&self, id: IssueId, customer: CustomerId) -> Result<bool> {
                    let mut tx = self.write_tx().await?;
                    Self::issue_tx(&mut tx, id).await?;
                    let r = sqlx::query("DELETE FROM dispatch_watcher WHERE issue_id = $1 AND customer_id = $2")
                        .bind(id.0)
                        .bind(customer.0)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("remove watcher"))?;
                    Self::commit(tx).await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn list_watchers(&self, id: IssueId) -> Result<Vec<CustomerId>> {
                    self.require_issue(id).await?;
                    let rows = sqlx::query("SELECT customer_id FROM dispatch_watcher WHERE issue_id = $1 ORDER BY customer_id")
                        .bind(id.0)
                        .fetch_all(self.reader())
                        .await
                        .map_err(db("list watchers"))?;
                    rows.iter().map(|r| Ok(CustomerId(col!(r, "dispatch_watcher", "customer_id", uuid::Uuid)?))).collect()
                }
            }
        }
    };
}
