//! [`FixStore`](dispatch_core::ports::FixStore) for SQLite and PostgreSQL: fix attempts and their
//! verification.

macro_rules! impl_sql_fix_store {
    ($S:ident, for_update = $FU:literal) => {
        mod sql_fix_impl {
            #[allow(unused_imports)]
            use super::*;
            use super::sql_store_shared::*;
            use dispatch_core::Timestamp;
            use dispatch_core::error::{Error, Result};
            use dispatch_core::ids::IssueId;
            use dispatch_core::issue::{Actor, Comment, Issue, NewComment};
            use dispatch_core::ports::{FixStore, IssueUpdate};
            use dispatch_core::verify::{FixAttempt, VerificationStatus};
            use crate::sql::{db, to_i64};
            use async_trait::async_trait;
            use sqlx::types::Json;

            impl $S {
                async fn save_fix_tx(tx: &mut Tx, a: &FixAttempt) -> Result<()> {
                    sqlx::query("UPDATE dispatch_fix_attempt SET status = $2, deadline = $3, doc = $4 WHERE id = $1")
                        .bind(a.id.0)
                        .bind(a.status.as_str())
                        .bind(Self::ts_opt(a.deadline))
                        .bind(Json(a))
                        .execute(&mut **tx)
                        .await
                        .map_err(db("update fix attempt"))?;
                    Ok(())
                }

                /// Inserts an attempt unless its issue already has one for that PR; `true` when
                /// inserted.
                pub(super) async fn insert_fix_attempt_tx(tx: &mut Tx, a: &FixAttempt) -> Result<bool> {
                    let r = sqlx::query(
                        "INSERT INTO dispatch_fix_attempt (id, issue_id, pr_number, status, deadline, created_at, doc) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (issue_id, pr_number) DO NOTHING",
                    )
                    .bind(a.id.0)
                    .bind(a.issue_id.0)
                    .bind(a.pr_number)
                    .bind(a.status.as_str())
                    .bind(Self::ts_opt(a.deadline))
                    .bind(Self::ts(a.created_at))
                    .bind(Json(a))
                    .execute(&mut **tx)
                    .await
                    .map_err(db("insert fix attempt"))?;
                    Ok(r.rows_affected() == 1)
                }

                async fn fix_tx(tx: &mut Tx, id: dispatch_core::ids::FixAttemptId) -> Result<Option<FixAttempt>> {
                    let row = sqlx::query(concat!("SELECT doc FROM dispatch_fix_attempt WHERE id = $1", $FU))
                        .bind(id.0)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(db("read fix attempt"))?;
                    row.map(|r| doc_col!(r, "dispatch_fix_attempt", FixAttempt)).transpose()
                }
            }

            #[async_trait]
            impl FixStore for $S {
                async fn create_fix_attempt(&self, a: &FixAttempt) -> Result<(FixAttempt, bool)> {
                    let mut tx = self.write_tx().await?;
                    Self::issue_tx(&mut tx, a.issue_id).await?;
                    if Self::insert_fix_attempt_tx(&mut tx, a).await? {
                        Self::commit(tx).await?;
                        return Ok((a.clone(), true));
                    }
                    let row = sqlx::query("SELECT doc FROM dispatch_fix_attempt WHERE issue_id = $1 AND pr_number = $2")
                        .bind(a.issue_id.0)
                        .bind(a.pr_number)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db("read fix attempt"))?;
                    let existing: FixAttempt = doc_col!(row, "dispatch_fix_attempt", FixAttempt)?;
                    Self::commit(tx).await?;
                    Ok((existing, false))
                }

                async fn list_fix_attempts(&self, issue: IssueId) -> Result<Vec<FixAttempt>> {
                    let rows = sqlx::query("SELECT doc FROM dispatch_fix_attempt WHERE issue_id = $1 ORDER BY created_at DESC, id DESC")
                        .bind(issue.0)
                        .fetch_all(self.reader())
                        .await
                        .map_err(db("list fix attempts"))?;
                    rows.into_iter().map(|r| doc_col!(r, "dispatch_fix_attempt", FixAttempt)).collect()
                }

                async fn update_fix_attempt(&self, a: &FixAttempt, expected: VerificationStatus) -> Result<bool> {
                    let mut tx = self.write_tx().await?;
                    let current = Self::fix_tx(&mut tx, a.id)
                        .await?
                        .ok_or_else(|| Error::not_found(format!("fix attempt {} not found", a.id)))?;
                    if current.status != expected {
                        return Ok(false);
                    }
                    Self::save_fix_tx(&mut tx, a).await?;
                    Self::commit(tx).await?;
                    Ok(true)
                }


                async fn settle_fix_attempt(&self, a: &FixAttempt, expected: VerificationStatus, update: IssueUpdate, comment: NewComment, actor: &Actor) -> Result<Option<(Issue, Comment)>> {
                    comment.validate()?;
                    let now = update.now;
                    let mut tx = self.write_tx().await?;
                    // The issue's lock first, as every write of an issue and its children takes it.
                    Self::issue_tx(&mut tx, a.issue_id).await?;
                    let current = Self::fix_tx(&mut tx, a.id)
                        .await?
                        .ok_or_else(|| Error::not_found(format!("fix attempt {} not found", a.id)))?;
                    if current.status != expected {
                        return Ok(None);
                    }
                    let mut issue = Self::write_issue_tx(&mut tx, a.issue_id, update).await?;
                    let c = Self::comment_tx(&mut tx, &mut issue, comment, actor, now).await?;
                    Self::save_fix_tx(&mut tx, a).await?;
                    Self::commit(tx).await?;
                    Ok(Some((issue, c)))
                }

                async fn fix_attempts_in_status(&self, status: VerificationStatus, limit: usize) -> Result<Vec<FixAttempt>> {
                    let rows = sqlx::query("SELECT doc FROM dispatch_fix_attempt WHERE status = $1 ORDER BY created_at LIMIT $2")
                        .bind(status.as_str())
                        .bind(to_i64(limit as u64))
                        .fetch_all(self.reader())
                        .await
                        .map_err(db("list fix attempts"))?;
                    rows.into_iter().map(|r| doc_col!(r, "dispatch_fix_attempt", FixAttempt)).collect()
                }

                async fn due_verifications(&self, now: Timestamp, limit: usize) -> Result<Vec<FixAttempt>> {
                    let rows = sqlx::query("SELECT doc FROM dispatch_fix_attempt WHERE status = 'monitoring' AND deadline <= $1 ORDER BY deadline LIMIT $2")
                        .bind(Self::ts(now))
                        .bind(to_i64(limit as u64))
                        .fetch_all(self.reader())
                        .await
                        .map_err(db("due verifications"))?;
                    rows.into_iter().map(|r| doc_col!(r, "dispatch_fix_attempt", FixAttempt)).collect()
                }
            }
        }
    };
}
