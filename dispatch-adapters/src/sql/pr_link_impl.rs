//! [`PrLinkStore`](dispatch_core::ports::PrLinkStore) for SQLite and PostgreSQL: the pull
//! requests linked to issues.

macro_rules! impl_sql_pr_link_store {
    ($S:ident, for_update = $FU:literal) => {
        mod sql_pr_link_impl {
            #[allow(unused_imports)]
            use super::*;
            use super::sql_store_shared::*;
            use dispatch_core::Timestamp;
            use dispatch_core::error::Result;
            use dispatch_core::ids::{IssueId, PrLinkId};
            use dispatch_core::issue::Actor;
            use dispatch_core::ports::{PrLinkStore, PrLinkUpsertOutcome};
            use dispatch_core::pr::{PrLink, PrLinkUpsert, pr_link_history, pr_unlink_history};
            use crate::sql::db;
            use async_trait::async_trait;
            use sqlx::types::Json;

            impl $S {
                /// The one insert of PR links (upserts and the import).
                pub(super) fn insert_pr_link_query<'q>(l: &'q PrLink) -> DbQuery<'q> {
                    sqlx::query("INSERT INTO dispatch_issue_pr (id, issue_id, pr_number, status, created_at, doc) VALUES ($1, $2, $3, $4, $5, $6)")
                        .bind(l.id.0)
                        .bind(l.issue_id.0)
                        .bind(l.pr_number)
                        .bind(l.status.as_str())
                        .bind(Self::ts(l.created_at))
                        .bind(Json(l))
                }

                async fn pr_link_tx(tx: &mut Tx, issue: IssueId, pr_number: i64) -> Result<Option<PrLink>> {
                    let row = sqlx::query("SELECT doc FROM dispatch_issue_pr WHERE issue_id = $1 AND pr_number = $2")
                        .bind(issue.0)
                        .bind(pr_number)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(db("read PR link"))?;
                    row.map(|r| doc_col!(r, "dispatch_issue_pr", PrLink)).transpose()
                }
            }

            #[async_trait]
            impl PrLinkStore for $S {
                async fn upsert_pr_link(&self, up: &PrLinkUpsert, actor: &Actor, now: Timestamp) -> Result<PrLinkUpsertOutcome> {
                    up.validate()?;
                    let mut tx = self.write_tx().await?;
                    // The issue row lock serialises upserts of one issue's links (PostgreSQL); SQLite's
                    // single writer already does.
                    Self::issue_tx(&mut tx, up.issue_id).await?;
                    let existing = Self::pr_link_tx(&mut tx, up.issue_id, up.pr_number).await?;
                    let link = up.apply(existing.as_ref(), now);
                    if existing.is_some() {
                        sqlx::query("UPDATE dispatch_issue_pr SET status = $2, doc = $3 WHERE id = $1")
                            .bind(link.id.0)
                            .bind(link.status.as_str())
                            .bind(Json(&link))
                            .execute(&mut *tx)
                            .await
                            .map_err(db("update PR link"))?;
                    } else {
                        Self::insert_pr_link_query(&link)
                            .execute(&mut *tx)
                            .await
                            .map_err(db("insert PR link"))?;
                    }
                    let history = pr_link_history(existing.as_ref(), &link, actor);
                    Self::history_tx(&mut tx, up.issue_id, history, now).await?;
                    Self::commit(tx).await?;
                    Ok(PrLinkUpsertOutcome {
                        created: existing.is_none(),
                        status_changed: existing.as_ref().is_some_and(|e| e.status != link.status),
                        link,
                    })
                }

                async fn list_pr_links(&self, issue: IssueId) -> Result<Vec<PrLink>> {
                    let rows = sqlx::query("SELECT doc FROM dispatch_issue_pr WHERE issue_id = $1 ORDER BY created_at DESC, id DESC")
                        .bind(issue.0)
                        .fetch_all(self.reader())
                        .await
                        .map_err(db("list PR links"))?;
                    rows.into_iter().map(|r| doc_col!(r, "dispatch_issue_pr", PrLink)).collect()
                }

                async fn pr_links_by_number(&self, pr_number: i64) -> Result<Vec<PrLink>> {
                    let rows = sqlx::query("SELECT doc FROM dispatch_issue_pr WHERE pr_number = $1 ORDER BY created_at, id")
                        .bind(pr_number)
                        .fetch_all(self.reader())
                        .await
                        .map_err(db("list PR links"))?;
                    rows.into_iter().map(|r| doc_col!(r, "dispatch_issue_pr", PrLink)).collect()
                }

                async fn delete_pr_link(&self, issue: IssueId, id: PrLinkId, actor: &Actor, now: Timestamp) -> Result<bool> {
                    let mut tx = self.write_tx().await?;
                    let row = sqlx::query(concat!("SELECT doc FROM dispatch_issue_pr WHERE id = $1 AND issue_id = $2", $FU))
                        .bind(id.0)
                        .bind(issue.0)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db("read PR link"))?;
                    let Some(row) = row else {
                        Self::commit(tx).await?;
                        return Ok(false);
                    };
                    let link: PrLink = doc_col!(row, "dispatch_issue_pr", PrLink)?;
                    sqlx::query("DELETE FROM dispatch_issue_pr WHERE id = $1")
                        .bind(id.0)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("delete PR link"))?;
                    Self::history_tx(&mut tx, issue, vec![pr_unlink_history(&link, actor)], now).await?;
                    Self::commit(tx).await?;
                    Ok(true)
                }
            }
        }
    };
}
