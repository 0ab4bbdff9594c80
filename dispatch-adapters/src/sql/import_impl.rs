//! The import store (`dispatch_import_map`), written once for SQLite and PostgreSQL. One
//! transaction: the workspace row is locked (the identifier counter), columns, labels, the
//! source's import map and the keys already taken here (customer slugs, portal tokens and Slack
//! channels, agent names, customer users, the plan's error-link keys, PR links and fix attempts)
//! are read, the core's [`dispatch_core::import::resolve`] decides row by row, and what it
//! decided is written: labels, agents, customers and their people, issues, comments, history,
//! links, watchers, runs (ended; the issues' totals recomputed from them) and their terminal
//! output, activities, PR links, orchestrator sessions, fix attempts, import-map rows and the
//! counter. A dry run rolls the transaction back after deciding.

macro_rules! impl_sql_import_store {
    ($S:ident, $DB:ty) => {
        mod sql_import_impl {
            #[allow(unused_imports)]
            use super::*;
            use crate::sql::{db, to_i64};
            use super::sql_store_shared::Tx;
            use sqlx::types::Json;
            use async_trait::async_trait;
            use dispatch_core::Timestamp;
            use dispatch_core::error::Result;
            use dispatch_core::ids::WorkspaceId;
            use dispatch_core::import::{ImportPlan, ImportReport, ImportTarget, Taken, resolve};
            use dispatch_core::ports::ImportStore;

            impl $S {
                /// The keys already taken here that the plan's rows could collide with
                /// ([`Taken`]), read inside the import's transaction.
                async fn taken_tx(tx: &mut Tx, ws: WorkspaceId, plan: &ImportPlan) -> Result<Taken> {
                    let mut t = Taken::default();
                    for r in sqlx::query("SELECT workspace_id, slug, portal_token, slack_channel_id FROM dispatch_customer")
                        .fetch_all(&mut **tx)
                        .await
                        .map_err(db("read customers"))?
                    {
                        if col!(r, "dispatch_customer", "workspace_id", uuid::Uuid)? == ws.0 {
                            t.customer_slugs.insert(col!(r, "dispatch_customer", "slug", String)?);
                        }
                        t.portal_tokens.insert(col!(r, "dispatch_customer", "portal_token", String)?);
                        if let Some(ch) = col!(r, "dispatch_customer", "slack_channel_id", Option<String>)? {
                            t.slack_channels.insert(ch);
                        }
                    }
                    for r in sqlx::query("SELECT name_key FROM dispatch_agent WHERE workspace_id = $1")
                        .bind(ws.0)
                        .fetch_all(&mut **tx)
                        .await
                        .map_err(db("read agents"))?
                    {
                        t.agent_names.insert(col!(r, "dispatch_agent", "name_key", String)?);
                    }
                    for r in sqlx::query("SELECT u.customer_id, u.slack_user_id FROM dispatch_customer_user u JOIN dispatch_customer c ON c.id = u.customer_id WHERE c.workspace_id = $1")
                        .bind(ws.0)
                        .fetch_all(&mut **tx)
                        .await
                        .map_err(db("read customer users"))?
                    {
                        t.customer_users.insert((
                            dispatch_core::ids::CustomerId(col!(r, "dispatch_customer_user", "customer_id", uuid::Uuid)?),
                            col!(r, "dispatch_customer_user", "slack_user_id", String)?,
                        ));
                    }
                    for (source, key) in plan.link_keys() {
                        let found = sqlx::query("SELECT 1 AS one FROM dispatch_error_link WHERE source = $1 AND external_key = $2")
                            .bind(source)
                            .bind(key)
                            .fetch_optional(&mut **tx)
                            .await
                            .map_err(db("read error links"))?;
                        if found.is_some() {
                            t.links.insert((source.to_string(), key.to_string()));
                        }
                    }
                    for (table, set) in [("dispatch_issue_pr", &mut t.pr_links), ("dispatch_fix_attempt", &mut t.fixes)] {
                        let sql = format!("SELECT x.issue_id, x.pr_number FROM {table} x JOIN dispatch_issue i ON i.id = x.issue_id WHERE i.workspace_id = $1");
                        for r in sqlx::query(sqlx::AssertSqlSafe(sql))
                            .bind(ws.0)
                            .fetch_all(&mut **tx)
                            .await
                            .map_err(db("read PR links"))?
                        {
                            set.insert((
                                dispatch_core::ids::IssueId(col!(r, "dispatch_issue_pr", "issue_id", uuid::Uuid)?),
                                col!(r, "dispatch_issue_pr", "pr_number", i64)?,
                            ));
                        }
                    }
                    Ok(t)
                }
            }

            #[async_trait]
            impl ImportStore for $S {
                async fn apply_import(&self, ws: WorkspaceId, plan: &ImportPlan, dry_run: bool, now: Timestamp) -> Result<ImportReport> {
                    let mut tx = self.write_tx().await?;
                    let workspace = Self::workspace_tx(&mut tx, ws).await?;
                    let columns = Self::columns_tx(&mut tx, ws).await?;
                    let labels = sqlx::query("SELECT * FROM dispatch_label WHERE workspace_id = $1 ORDER BY name")
                        .bind(ws.0)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db("list labels"))?
                        .iter()
                        .map(Self::row_label)
                        .collect::<Result<Vec<_>>>()?;
                    let rows = sqlx::query("SELECT kind, external_id, target_id FROM dispatch_import_map WHERE workspace_id = $1 AND source = $2")
                        .bind(ws.0)
                        .bind(&plan.source)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db("read import map"))?;
                    let mut imported = std::collections::HashMap::new();
                    for r in &rows {
                        imported.insert(
                            (
                                col!(r, "dispatch_import_map", "kind", String)?,
                                col!(r, "dispatch_import_map", "external_id", String)?,
                            ),
                            col!(r, "dispatch_import_map", "target_id", uuid::Uuid)?,
                        );
                    }
                    let used_numbers = sqlx::query("SELECT number FROM dispatch_issue WHERE workspace_id = $1")
                        .bind(ws.0)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db("read issue numbers"))?
                        .iter()
                        .map(|r| col!(r, "dispatch_issue", "number", i64))
                        .collect::<Result<_>>()?;
                    let taken = Self::taken_tx(&mut tx, ws, plan).await?;
                    let target = ImportTarget { workspace, columns, labels, imported, used_numbers, taken };
                    let mut write = resolve(plan, &target, now)?;
                    write.report.dry_run = dry_run;
                    if dry_run {
                        // Dropping the transaction rolls it back: nothing was written anyway.
                        return Ok(write.report);
                    }
                    for l in &write.labels {
                        sqlx::query("INSERT INTO dispatch_label (id, workspace_id, name, name_key, color) VALUES ($1, $2, $3, $4, $5)")
                            .bind(l.id.0)
                            .bind(ws.0)
                            .bind(&l.name)
                            .bind(l.name.to_lowercase())
                            .bind(&l.color)
                            .execute(&mut *tx)
                            .await
                            .map_err(db("insert label"))?;
                    }
                    for a in &write.agents {
                        let r = Self::insert_agent_query(a).execute(&mut *tx).await.map_err(db("insert agent"))?;
                        if r.rows_affected() == 0 {
                            return Err(dispatch_core::Error::conflict(format!("an agent named {:?} was created meanwhile; import again", a.name)));
                        }
                    }
                    for c in &write.customers {
                        Self::save_customer_tx(&mut tx, c, true).await?;
                    }
                    for u in &write.customer_users {
                        let r = Self::insert_customer_user_query(u).execute(&mut *tx).await.map_err(db("insert customer user"))?;
                        if r.rows_affected() == 0 {
                            return Err(dispatch_core::Error::conflict(format!("the customer's person {} was created meanwhile; import again", u.slack_user_id)));
                        }
                    }
                    for i in &write.issues {
                        Self::insert_issue_tx(&mut tx, i).await?;
                    }
                    for c in &write.comments {
                        sqlx::query("INSERT INTO dispatch_comment (id, issue_id, author, body, created_at) VALUES ($1, $2, $3, $4, $5)")
                            .bind(c.id.0)
                            .bind(c.issue_id.0)
                            .bind(&c.author)
                            .bind(&c.body)
                            .bind(Self::ts(c.created_at))
                            .execute(&mut *tx)
                            .await
                            .map_err(db("insert comment"))?;
                        sqlx::query("UPDATE dispatch_issue SET comments_text = comments_text || ' ' || $2 WHERE id = $1")
                            .bind(c.issue_id.0)
                            .bind(&c.body)
                            .execute(&mut *tx)
                            .await
                            .map_err(db("index comment"))?;
                    }
                    for h in &write.history {
                        sqlx::query("INSERT INTO dispatch_history (id, issue_id, action, created_at, doc) VALUES ($1, $2, $3, $4, $5)")
                            .bind(h.id.0)
                            .bind(h.issue_id.0)
                            .bind(super::sql_store_shared::history_action(h))
                            .bind(Self::ts(h.created_at))
                            .bind(Json(h))
                            .execute(&mut *tx)
                            .await
                            .map_err(db("insert history"))?;
                    }
                    for l in &write.links {
                        sqlx::query("INSERT INTO dispatch_error_link (id, issue_id, source, external_key, fingerprint, url, metadata, event_count, first_seen_at, last_seen_at, cooldown_until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
                            .bind(l.id.0)
                            .bind(l.issue_id.0)
                            .bind(&l.source)
                            .bind(&l.external_key)
                            .bind(&l.fingerprint)
                            .bind(&l.url)
                            .bind(Json(&l.metadata))
                            .bind(to_i64(l.event_count))
                            .bind(Self::ts(l.first_seen_at))
                            .bind(Self::ts(l.last_seen_at))
                            .bind(Self::ts_opt(l.cooldown_until))
                            .execute(&mut *tx)
                            .await
                            .map_err(db("insert error link"))?;
                    }
                    for (issue, customer, at) in &write.watchers {
                        Self::insert_watcher_tx(&mut tx, *issue, *customer, *at).await?;
                    }
                    let mut ran = std::collections::BTreeSet::new();
                    for r in &write.runs {
                        Self::insert_run_tx(&mut tx, r).await?;
                        ran.insert(r.issue_id);
                    }
                    for issue in ran {
                        Self::recompute_totals_tx(&mut tx, issue).await?;
                    }
                    for c in &write.terminal {
                        Self::insert_chunk_query(c)
                            .execute(&mut *tx)
                            .await
                            .map_err(db("insert terminal output"))?;
                    }
                    for a in &write.activities {
                        Self::insert_activity_query(a, None)
                            .execute(&mut *tx)
                            .await
                            .map_err(db("insert activity"))?;
                    }
                    for l in &write.pr_links {
                        Self::insert_pr_link_query(l)
                            .execute(&mut *tx)
                            .await
                            .map_err(db("insert PR link"))?;
                    }
                    for x in &write.sessions {
                        Self::insert_session_query(x)
                            .execute(&mut *tx)
                            .await
                            .map_err(db("insert session"))?;
                    }
                    for a in &write.fixes {
                        if !Self::insert_fix_attempt_tx(&mut tx, a).await? {
                            return Err(dispatch_core::Error::conflict(format!(
                                "issue {} already has a fix attempt for PR #{}",
                                a.issue_id, a.pr_number
                            )));
                        }
                    }
                    for m in &write.mappings {
                        sqlx::query("INSERT INTO dispatch_import_map (workspace_id, source, kind, external_id, target_id, imported_at) VALUES ($1, $2, $3, $4, $5, $6)")
                            .bind(m.workspace_id.0)
                            .bind(&m.source)
                            .bind(&m.kind)
                            .bind(&m.external_id)
                            .bind(m.target_id)
                            .bind(Self::ts(now))
                            .execute(&mut *tx)
                            .await
                            .map_err(db("insert import map"))?;
                    }
                    sqlx::query("UPDATE dispatch_workspace SET next_issue_number = $2 WHERE id = $1")
                        .bind(ws.0)
                        .bind(write.next_issue_number)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("update identifier counter"))?;
                    Self::commit(tx).await?;
                    Ok(write.report)
                }

                async fn imported_id(&self, ws: WorkspaceId, source: &str, kind: &str, external_id: &str) -> Result<Option<uuid::Uuid>> {
                    let row = sqlx::query("SELECT target_id FROM dispatch_import_map WHERE workspace_id = $1 AND source = $2 AND kind = $3 AND external_id = $4")
                        .bind(ws.0)
                        .bind(source)
                        .bind(kind)
                        .bind(external_id)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(db("read import map"))?;
                    row.map(|r| col!(r, "dispatch_import_map", "target_id", uuid::Uuid)).transpose()
                }
            }
        }
    };
}
