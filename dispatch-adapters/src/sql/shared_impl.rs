//! What several SQL store aggregates share, written once for SQLite and PostgreSQL: the
//! transaction and row types, row decoding, and the reads and writes of the rows more than one
//! aggregate touches (workspace and columns, issues and their history and comments, customers).
//! Everything here is `pub(super)`: the aggregates' modules are its siblings.

macro_rules! impl_sql_store_shared {
    ($S:ident, $DB:ty, for_update = $FU:literal) => {
        mod sql_store_shared {
            #[allow(unused_imports)]
            use super::*;
            use dispatch_core::Timestamp;
            use dispatch_core::customer::Customer;
            use dispatch_core::error::{Error, Result};
            use dispatch_core::ids::{ColumnId, CommentId, CustomerId, IssueId, LinkId, WorkspaceId};
            use dispatch_core::issue::{
                Actor, Column, ColumnCategory, Comment, HistoryAction, HistoryEntry, Issue,
                NewComment, NewHistory, Workspace,
            };
            use dispatch_core::ports::{ErrorLink, IssueUpdate};
            use dispatch_core::run::BudgetBucket;
            use crate::sql::{db, decode_err, to_u64};
            use serde_json::json;
            use sqlx::types::Json;

            pub(super) type Tx = sqlx::Transaction<'static, $DB>;
            pub(super) type DbRow = <$DB as sqlx::Database>::Row;
            /// A statement with its arguments bound, ready to run on a transaction or the pool.
            pub(super) type DbQuery<'q> = sqlx::query::Query<'q, $DB, <$DB as sqlx::Database>::Arguments>;

            pub(super) fn bucket_str(b: BudgetBucket) -> &'static str {
                match b {
                    BudgetBucket::Error => "error",
                    BudgetBucket::Prd => "prd",
                }
            }

            /// The history row's `action` column: the action's serialised name.
            pub(super) fn history_action(e: &HistoryEntry) -> String {
                serde_json::to_value(e.action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            }

            pub(super) fn issue_not_found(r: impl std::fmt::Display) -> Error {
                Error::not_found(format!("issue {r} not found"))
            }

            impl $S {
                pub(super) fn row_column(row: &DbRow) -> Result<Column> {
                    let category: String = col!(row, "dispatch_column", "category", String)?;
                    Ok(Column {
                        id: ColumnId(col!(row, "dispatch_column", "id", uuid::Uuid)?),
                        workspace_id: WorkspaceId(col!(row, "dispatch_column", "workspace_id", uuid::Uuid)?),
                        name: col!(row, "dispatch_column", "name", String)?,
                        color: col!(row, "dispatch_column", "color", String)?,
                        position: col!(row, "dispatch_column", "position", i32)?,
                        category: match category.as_str() {
                            "closed" => ColumnCategory::Closed,
                            "open" => ColumnCategory::Open,
                            other => return Err(decode_err("dispatch_column", "category", format!("unknown category {other:?}"))),
                        },
                    })
                }

                pub(super) fn row_workspace(row: &DbRow) -> Result<Workspace> {
                    Ok(Workspace {
                        id: WorkspaceId(col!(row, "dispatch_workspace", "id", uuid::Uuid)?),
                        name: col!(row, "dispatch_workspace", "name", String)?,
                        issue_prefix: col!(row, "dispatch_workspace", "issue_prefix", String)?,
                        next_issue_number: col!(row, "dispatch_workspace", "next_issue_number", i64)?,
                        created_at: Self::get_ts(row, "dispatch_workspace", "created_at")?,
                    })
                }

                pub(super) fn row_link(row: &DbRow) -> Result<ErrorLink> {
                    Ok(ErrorLink {
                        id: LinkId(col!(row, "dispatch_error_link", "id", uuid::Uuid)?),
                        issue_id: IssueId(col!(row, "dispatch_error_link", "issue_id", uuid::Uuid)?),
                        source: col!(row, "dispatch_error_link", "source", String)?,
                        external_key: col!(row, "dispatch_error_link", "external_key", String)?,
                        fingerprint: col!(row, "dispatch_error_link", "fingerprint", String)?,
                        url: col!(row, "dispatch_error_link", "url", Option<String>)?,
                        metadata: col!(row, "dispatch_error_link", "metadata", Json<serde_json::Value>)?.0,
                        event_count: to_u64("dispatch_error_link", "event_count", col!(row, "dispatch_error_link", "event_count", i64)?)?,
                        first_seen_at: Self::get_ts(row, "dispatch_error_link", "first_seen_at")?,
                        last_seen_at: Self::get_ts(row, "dispatch_error_link", "last_seen_at")?,
                        cooldown_until: Self::get_ts_opt(row, "dispatch_error_link", "cooldown_until")?,
                    })
                }

                pub(super) async fn columns_tx(tx: &mut Tx, ws: WorkspaceId) -> Result<Vec<Column>> {
                    let rows = sqlx::query("SELECT * FROM dispatch_column WHERE workspace_id = $1 ORDER BY position, name")
                        .bind(ws.0)
                        .fetch_all(&mut **tx)
                        .await
                        .map_err(db("list columns"))?;
                    rows.iter().map(Self::row_column).collect()
                }

                pub(super) async fn workspace_tx(tx: &mut Tx, ws: WorkspaceId) -> Result<Workspace> {
                    let row = sqlx::query(concat!("SELECT * FROM dispatch_workspace WHERE id = $1", $FU))
                        .bind(ws.0)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(db("read workspace"))?
                        .ok_or_else(|| Error::not_found(format!("workspace {ws} not found")))?;
                    Self::row_workspace(&row)
                }

                pub(super) async fn issue_tx(tx: &mut Tx, id: IssueId) -> Result<Issue> {
                    let row = sqlx::query(concat!("SELECT doc FROM dispatch_issue WHERE id = $1", $FU))
                        .bind(id.0)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(db("read issue"))?
                        .ok_or_else(|| issue_not_found(id))?;
                    doc_col!(row, "dispatch_issue", Issue)
                }

                pub(super) async fn save_issue_tx(tx: &mut Tx, i: &Issue) -> Result<()> {
                    sqlx::query(
                        "UPDATE dispatch_issue SET title = $2, description = $3, column_id = $4, customer_id = $5, spawn_active = $6, version = $7, updated_at = $8, doc = $9 WHERE id = $1",
                    )
                    .bind(i.id.0)
                    .bind(&i.title)
                    .bind(&i.description)
                    .bind(i.column_id.0)
                    .bind(i.customer_id.map(|c| c.0))
                    .bind(i.spawn_status.is_some_and(|s| s.is_active()))
                    .bind(i.version)
                    .bind(Self::ts(i.updated_at))
                    .bind(Json(i))
                    .execute(&mut **tx)
                    .await
                    .map_err(db("update issue"))?;
                    Ok(())
                }

                pub(super) async fn history_tx(tx: &mut Tx, issue: IssueId, entries: Vec<NewHistory>, at: Timestamp) -> Result<()> {
                    for e in entries {
                        let entry = e.into_entry(issue, at);
                        sqlx::query("INSERT INTO dispatch_history (id, issue_id, action, created_at, doc) VALUES ($1, $2, $3, $4, $5)")
                            .bind(entry.id.0)
                            .bind(issue.0)
                            .bind(history_action(&entry))
                            .bind(Self::ts(at))
                            .bind(Json(&entry))
                            .execute(&mut **tx)
                            .await
                            .map_err(db("insert history"))?;
                    }
                    Ok(())
                }

                /// The one write path for issues: version check, patch, version bump, history, and the
                /// outbox rows the update plans (stored in the same transaction).
                pub(super) async fn write_issue_tx(tx: &mut Tx, id: IssueId, u: IssueUpdate) -> Result<Issue> {
                    let mut issue = Self::issue_tx(tx, id).await?;
                    if let Some(v) = u.expected_version {
                        if v != issue.version {
                            return Err(Error::conflict(format!(
                                "issue {} changed meanwhile (version {} != {v})",
                                issue.identifier, issue.version
                            )));
                        }
                    }
                    u.patch.apply_to(&mut issue);
                    issue.version += 1;
                    issue.updated_at = u.now;
                    let deliveries = u.outbox.render(&issue)?;
                    Self::save_issue_tx(tx, &issue).await?;
                    Self::history_tx(tx, id, u.history, u.now).await?;
                    Self::enqueue_deliveries_tx(tx, deliveries, u.now).await?;
                    Ok(issue)
                }

                /// A comment on the locked `issue`, its search text and its history entry.
                pub(super) async fn comment_tx(tx: &mut Tx, issue: &mut Issue, comment: NewComment, actor: &Actor, now: Timestamp) -> Result<Comment> {
                    let id = issue.id;
                    let c = Comment { id: CommentId::new(), issue_id: id, author: comment.author, body: comment.body, created_at: now };
                    sqlx::query("INSERT INTO dispatch_comment (id, issue_id, author, body, created_at) VALUES ($1, $2, $3, $4, $5)")
                        .bind(c.id.0)
                        .bind(id.0)
                        .bind(&c.author)
                        .bind(&c.body)
                        .bind(Self::ts(now))
                        .execute(&mut **tx)
                        .await
                        .map_err(db("insert comment"))?;
                    sqlx::query("UPDATE dispatch_issue SET comments_text = comments_text || ' ' || $2 WHERE id = $1")
                        .bind(id.0)
                        .bind(&c.body)
                        .execute(&mut **tx)
                        .await
                        .map_err(db("index comment"))?;
                    issue.updated_at = now;
                    Self::save_issue_tx(tx, issue).await?;
                    let h = NewHistory::new(HistoryAction::CommentAdded, actor).values(None, Some(json!({"comment_id": c.id})));
                    Self::history_tx(tx, id, vec![h], now).await?;
                    Ok(c)
                }

                pub(super) async fn customer_tx(tx: &mut Tx, id: CustomerId) -> Result<Customer> {
                    let row = sqlx::query(concat!("SELECT doc FROM dispatch_customer WHERE id = $1", $FU))
                        .bind(id.0)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(db("read customer"))?
                        .ok_or_else(|| Error::not_found(format!("customer {id} not found")))?;
                    doc_col!(row, "dispatch_customer", Customer)
                }

                pub(super) async fn commit(tx: Tx) -> Result<()> {
                    tx.commit().await.map_err(db("commit"))
                }

                pub(super) async fn require_issue(&self, id: IssueId) -> Result<()> {
                    let found = sqlx::query("SELECT 1 AS one FROM dispatch_issue WHERE id = $1")
                        .bind(id.0)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(db("read issue"))?;
                    found.map(|_| ()).ok_or_else(|| issue_not_found(id))
                }
            }
        }
    };
}
