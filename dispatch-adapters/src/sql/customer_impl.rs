//! [`CustomerStore`](dispatch_core::ports::CustomerStore) for SQLite and PostgreSQL: customers,
//! their users, portal tokens and health inputs.

macro_rules! impl_sql_customer_store {
    ($S:ident, for_update = $FU:literal) => {
        mod sql_customer_impl {
            #[allow(unused_imports)]
            use super::*;
            use super::sql_store_shared::*;
            use dispatch_core::Timestamp;
            use dispatch_core::customer::{
                Customer, CustomerPatch, CustomerUser, HealthInputs, HealthIssue, NewCustomerUser,
            };
            use dispatch_core::error::{Error, Result};
            use dispatch_core::ids::{CustomerId, WorkspaceId};
            use dispatch_core::issue::Issue;
            use dispatch_core::ports::CustomerStore;
            use crate::sql::db;
            use async_trait::async_trait;
            use sqlx::types::Json;

            impl $S {
                /// Inserts a customer's person unless one with their Slack user id exists for the
                /// customer (no row then); the one insert of customer users, also the import's.
                pub(super) fn insert_customer_user_query<'q>(u: &'q CustomerUser) -> DbQuery<'q> {
                    sqlx::query("INSERT INTO dispatch_customer_user (id, customer_id, slack_user_id, doc) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
                        .bind(u.id.0)
                        .bind(u.customer_id.0)
                        .bind(&u.slack_user_id)
                        .bind(Json(u))
                }

                pub(super) async fn save_customer_tx(tx: &mut Tx, c: &Customer, insert: bool) -> Result<()> {
                    let sql = if insert {
                        "INSERT INTO dispatch_customer (id, workspace_id, name, slug, portal_token, slack_channel_id, created_at, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    } else {
                        "UPDATE dispatch_customer SET workspace_id = $2, name = $3, slug = $4, portal_token = $5, slack_channel_id = $6, created_at = $7, doc = $8 WHERE id = $1"
                    };
                    sqlx::query(sql)
                        .bind(c.id.0)
                        .bind(c.workspace_id.0)
                        .bind(&c.name)
                        .bind(&c.slug)
                        .bind(&c.portal_token)
                        .bind(&c.slack_channel_id)
                        .bind(Self::ts(c.created_at))
                        .bind(Json(c))
                        .execute(&mut **tx)
                        .await
                        .map_err(|e| match &e {
                            sqlx::Error::Database(d) if d.is_unique_violation() => {
                                Error::conflict(format!("a customer with slug {:?}, that Slack channel or that token exists", c.slug))
                            }
                            _ => db("save customer")(e),
                        })?;
                    Ok(())
                }
            }

            #[async_trait]
            impl CustomerStore for $S {
                async fn create_customer(&self, c: &Customer) -> Result<Customer> {
                    let mut tx = self.write_tx().await?;
                    Self::workspace_tx(&mut tx, c.workspace_id).await?;
                    Self::save_customer_tx(&mut tx, c, true).await?;
                    Self::commit(tx).await?;
                    Ok(c.clone())
                }

                async fn get_customer(&self, id: CustomerId) -> Result<Customer> {
                    let row = sqlx::query("SELECT doc FROM dispatch_customer WHERE id = $1")
                        .bind(id.0)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(db("read customer"))?
                        .ok_or_else(|| Error::not_found(format!("customer {id} not found")))?;
                    doc_col!(row, "dispatch_customer", Customer)
                }

                async fn get_customer_by_slug(&self, ws: WorkspaceId, slug: &str) -> Result<Customer> {
                    let row = sqlx::query("SELECT doc FROM dispatch_customer WHERE workspace_id = $1 AND slug = $2")
                        .bind(ws.0)
                        .bind(slug)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(db("read customer"))?
                        .ok_or_else(|| Error::not_found(format!("customer {slug:?} not found")))?;
                    doc_col!(row, "dispatch_customer", Customer)
                }

                async fn get_customer_by_token(&self, token: &str) -> Result<Option<Customer>> {
                    // An indexed lookup; the token is compared again in constant time so that a
                    // near-miss costs the same as a miss.
                    let row = sqlx::query("SELECT doc FROM dispatch_customer WHERE portal_token = $1")
                        .bind(token)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(db("read customer"))?;
                    let c = row.map(|r| doc_col!(r, "dispatch_customer", Customer)).transpose()?;
                    Ok(c.filter(|c| dispatch_core::customer::constant_time_eq(c.portal_token.as_bytes(), token.as_bytes())))
                }

                async fn list_customers(&self, ws: WorkspaceId) -> Result<Vec<Customer>> {
                    let rows = sqlx::query("SELECT doc FROM dispatch_customer WHERE workspace_id = $1 ORDER BY LOWER(name), id")
                        .bind(ws.0)
                        .fetch_all(self.reader())
                        .await
                        .map_err(db("list customers"))?;
                    rows.into_iter().map(|r| doc_col!(r, "dispatch_customer", Customer)).collect()
                }

                async fn update_customer(&self, id: CustomerId, patch: &CustomerPatch, now: Timestamp) -> Result<Customer> {
                    patch.validate()?;
                    let mut tx = self.write_tx().await?;
                    let mut c = Self::customer_tx(&mut tx, id).await?;
                    patch.apply_to(&mut c);
                    c.updated_at = now;
                    Self::save_customer_tx(&mut tx, &c, false).await?;
                    Self::commit(tx).await?;
                    Ok(c)
                }

                async fn set_portal_token(&self, id: CustomerId, token: &str, now: Timestamp) -> Result<Customer> {
                    let mut tx = self.write_tx().await?;
                    let mut c = Self::customer_tx(&mut tx, id).await?;
                    c.portal_token = token.to_string();
                    c.updated_at = now;
                    Self::save_customer_tx(&mut tx, &c, false).await?;
                    Self::commit(tx).await?;
                    Ok(c)
                }

                async fn delete_customer(&self, id: CustomerId) -> Result<()> {
                    let mut tx = self.write_tx().await?;
                    Self::customer_tx(&mut tx, id).await?;
                    let rows = sqlx::query(concat!("SELECT doc FROM dispatch_issue WHERE customer_id = $1", $FU))
                        .bind(id.0)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db("read customer issues"))?;
                    for r in rows {
                        let mut issue: Issue = doc_col!(r, "dispatch_issue", Issue)?;
                        issue.detach_customer();
                        Self::save_issue_tx(&mut tx, &issue).await?;
                    }
                    sqlx::query("DELETE FROM dispatch_customer WHERE id = $1").bind(id.0).execute(&mut *tx).await.map_err(db("delete customer"))?;
                    Self::commit(tx).await
                }

                async fn upsert_customer_user(&self, customer: CustomerId, user: &NewCustomerUser, now: Timestamp) -> Result<CustomerUser> {
                    user.validate()?;
                    let mut tx = self.write_tx().await?;
                    Self::customer_tx(&mut tx, customer).await?;
                    let key = user.slack_user_id.trim();
                    // Twice at most: a concurrent first report of the same person may insert the row
                    // between our read and our insert; then the row is theirs, read it and merge.
                    for _ in 0..2 {
                        let row = sqlx::query(concat!("SELECT doc FROM dispatch_customer_user WHERE customer_id = $1 AND slack_user_id = $2", $FU))
                            .bind(customer.0)
                            .bind(key)
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(db("read customer user"))?;
                        let existing = row.map(|r| doc_col!(r, "dispatch_customer_user", CustomerUser)).transpose()?;
                        let known = existing.is_some();
                        let u = user.merge_into(existing, customer, now);
                        let written = if known {
                            sqlx::query("UPDATE dispatch_customer_user SET doc = $2 WHERE id = $1")
                                .bind(u.id.0)
                                .bind(Json(&u))
                                .execute(&mut *tx)
                                .await
                                .map_err(db("update customer user"))?
                                .rows_affected()
                        } else {
                            Self::insert_customer_user_query(&u)
                                .execute(&mut *tx)
                                .await
                                .map_err(db("insert customer user"))?
                                .rows_affected()
                        };
                        if written == 1 {
                            Self::commit(tx).await?;
                            return Ok(u);
                        }
                    }
                    Err(Error::conflict("the customer user kept changing; try again"))
                }

                async fn get_customer_user(&self, id: dispatch_core::ids::CustomerUserId) -> Result<CustomerUser> {
                    let row = sqlx::query("SELECT doc FROM dispatch_customer_user WHERE id = $1")
                        .bind(id.0)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(db("read customer user"))?
                        .ok_or_else(|| Error::not_found(format!("customer user {id} not found")))?;
                    doc_col!(row, "dispatch_customer_user", CustomerUser)
                }

                async fn health_inputs(&self, id: CustomerId) -> Result<HealthInputs> {
                    self.get_customer(id).await?;
                    let rows = sqlx::query(
                        "SELECT i.doc AS doc, c.category AS category, \
                         (SELECT COUNT(*) FROM dispatch_comment m WHERE m.issue_id = i.id) AS comments, \
                         (SELECT MIN(m.created_at) FROM dispatch_comment m WHERE m.issue_id = i.id) AS first_comment, \
                         (SELECT MAX(m.created_at) FROM dispatch_comment m WHERE m.issue_id = i.id) AS last_comment \
                         FROM dispatch_issue i LEFT JOIN dispatch_column c ON c.id = i.column_id WHERE i.customer_id = $1",
                    )
                    .bind(id.0)
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("customer health"))?;
                    let mut issues = Vec::with_capacity(rows.len());
                    for r in rows {
                        let issue: Issue = doc_col!(r, "dispatch_issue", Issue)?;
                        let category: Option<String> = col!(r, "dispatch_column", "category", Option<String>)?;
                        issues.push(HealthIssue {
                            closed: category.as_deref() == Some("closed"),
                            priority: issue.priority,
                            created_at: issue.created_at,
                            updated_at: issue.updated_at,
                            comment_count: col!(r, "dispatch_comment", "comments", i64)?.max(0) as u32,
                            first_comment_at: Self::get_ts_opt(&r, "dispatch_comment", "first_comment")?,
                            last_comment_at: Self::get_ts_opt(&r, "dispatch_comment", "last_comment")?,
                        });
                    }
                    Ok(HealthInputs { issues })
                }
            }
        }
    };
}
