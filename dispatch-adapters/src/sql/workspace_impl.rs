//! [`WorkspaceStore`](dispatch_core::ports::WorkspaceStore) for SQLite and PostgreSQL:
//! workspaces, their columns and labels.

macro_rules! impl_sql_workspace_store {
    ($S:ident) => {
        mod sql_workspace_impl {
            #[allow(unused_imports)]
            use super::*;
            use super::sql_store_shared::*;
            use dispatch_core::Timestamp;
            use dispatch_core::error::{Error, Result};
            use dispatch_core::ids::{ColumnId, LabelId, WorkspaceId};
            use dispatch_core::issue::{
                Column, ColumnCategory, Label, NewColumn, NewLabel, Workspace, default_columns,
                default_labels,
            };
            use dispatch_core::ports::WorkspaceStore;
            use crate::sql::db;
            use async_trait::async_trait;

            fn category_str(c: ColumnCategory) -> &'static str {
                match c {
                    ColumnCategory::Open => "open",
                    ColumnCategory::Closed => "closed",
                }
            }

            impl $S {
                pub(super) fn row_label(row: &DbRow) -> Result<Label> {
                    Ok(Label {
                        id: LabelId(col!(row, "dispatch_label", "id", uuid::Uuid)?),
                        workspace_id: WorkspaceId(col!(row, "dispatch_label", "workspace_id", uuid::Uuid)?),
                        name: col!(row, "dispatch_label", "name", String)?,
                        color: col!(row, "dispatch_label", "color", String)?,
                    })
                }
            }

            #[async_trait]
            impl WorkspaceStore for $S {
                async fn ensure_workspace(&self, name: &str, prefix: &str, now: Timestamp) -> Result<Workspace> {
                    if let Some(row) = sqlx::query("SELECT * FROM dispatch_workspace WHERE issue_prefix = $1")
                        .bind(prefix)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(db("read workspace"))?
                    {
                        return Self::row_workspace(&row);
                    }
                    let mut tx = self.write_tx().await?;
                    Self::lock_key(&mut tx, &format!("workspace:{prefix}")).await?;
                    if let Some(row) = sqlx::query("SELECT * FROM dispatch_workspace WHERE issue_prefix = $1")
                        .bind(prefix)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db("read workspace"))?
                    {
                        return Self::row_workspace(&row);
                    }
                    let ws = Workspace {
                        id: WorkspaceId::new(),
                        name: name.to_string(),
                        issue_prefix: prefix.to_string(),
                        next_issue_number: 1,
                        created_at: now,
                    };
                    sqlx::query("INSERT INTO dispatch_workspace (id, name, issue_prefix, next_issue_number, created_at) VALUES ($1, $2, $3, 1, $4)")
                        .bind(ws.id.0)
                        .bind(&ws.name)
                        .bind(&ws.issue_prefix)
                        .bind(Self::ts(now))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("insert workspace"))?;
                    for (i, c) in default_columns().into_iter().enumerate() {
                        sqlx::query("INSERT INTO dispatch_column (id, workspace_id, name, color, position, category) VALUES ($1, $2, $3, $4, $5, $6)")
                            .bind(ColumnId::new().0)
                            .bind(ws.id.0)
                            .bind(&c.name)
                            .bind(&c.color)
                            .bind(c.position.unwrap_or(i as i32))
                            .bind(category_str(c.category))
                            .execute(&mut *tx)
                            .await
                            .map_err(db("insert column"))?;
                    }
                    for l in default_labels() {
                        sqlx::query("INSERT INTO dispatch_label (id, workspace_id, name, name_key, color) VALUES ($1, $2, $3, $4, $5)")
                            .bind(LabelId::new().0)
                            .bind(ws.id.0)
                            .bind(&l.name)
                            .bind(l.name.to_lowercase())
                            .bind(&l.color)
                            .execute(&mut *tx)
                            .await
                            .map_err(db("insert label"))?;
                    }
                    match tx.commit().await {
                        Ok(()) => Ok(ws),
                        // Another process created it first (SQLite has no advisory lock).
                        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                            let row = sqlx::query("SELECT * FROM dispatch_workspace WHERE issue_prefix = $1")
                                .bind(prefix)
                                .fetch_one(self.reader())
                                .await
                                .map_err(db("read workspace"))?;
                            Self::row_workspace(&row)
                        }
                        Err(e) => Err(db("commit workspace")(e)),
                    }
                }

                async fn get_workspace(&self, id: WorkspaceId) -> Result<Workspace> {
                    let row = sqlx::query("SELECT * FROM dispatch_workspace WHERE id = $1")
                        .bind(id.0)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(db("read workspace"))?
                        .ok_or_else(|| Error::not_found(format!("workspace {id} not found")))?;
                    Self::row_workspace(&row)
                }

                async fn list_columns(&self, ws: WorkspaceId) -> Result<Vec<Column>> {
                    let rows = sqlx::query("SELECT * FROM dispatch_column WHERE workspace_id = $1 ORDER BY position, name")
                        .bind(ws.0)
                        .fetch_all(self.reader())
                        .await
                        .map_err(db("list columns"))?;
                    rows.iter().map(Self::row_column).collect()
                }

                async fn add_column(&self, ws: WorkspaceId, column: NewColumn) -> Result<Column> {
                    column.validate()?;
                    let mut tx = self.write_tx().await?;
                    Self::workspace_tx(&mut tx, ws).await?;
                    let existing = Self::columns_tx(&mut tx, ws).await?;
                    if existing.iter().any(|c| c.is_named(&column.name)) {
                        return Err(Error::conflict(format!("a column named {:?} exists", column.name)));
                    }
                    let end = existing.len() as i32;
                    let position = column.position.unwrap_or(end).clamp(0, end);
                    sqlx::query("UPDATE dispatch_column SET position = position + 1 WHERE workspace_id = $1 AND position >= $2")
                        .bind(ws.0)
                        .bind(position)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("shift columns"))?;
                    let col = Column {
                        id: ColumnId::new(),
                        workspace_id: ws,
                        name: column.name.trim().to_string(),
                        color: column.color,
                        position,
                        category: column.category,
                    };
                    sqlx::query("INSERT INTO dispatch_column (id, workspace_id, name, color, position, category) VALUES ($1, $2, $3, $4, $5, $6)")
                        .bind(col.id.0)
                        .bind(ws.0)
                        .bind(&col.name)
                        .bind(&col.color)
                        .bind(col.position)
                        .bind(category_str(col.category))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("insert column"))?;
                    Self::commit(tx).await?;
                    Ok(col)
                }

                async fn reorder_columns(&self, ws: WorkspaceId, order: &[ColumnId]) -> Result<Vec<Column>> {
                    let mut tx = self.write_tx().await?;
                    Self::workspace_tx(&mut tx, ws).await?;
                    let existing: std::collections::BTreeSet<ColumnId> =
                        Self::columns_tx(&mut tx, ws).await?.iter().map(|c| c.id).collect();
                    let given: std::collections::BTreeSet<ColumnId> = order.iter().copied().collect();
                    if given.len() != order.len() || given != existing {
                        return Err(Error::invalid("statusIds", "the order must name every column of the workspace exactly once"));
                    }
                    for (i, id) in order.iter().enumerate() {
                        sqlx::query("UPDATE dispatch_column SET position = $2 WHERE id = $1")
                            .bind(id.0)
                            .bind(i as i32)
                            .execute(&mut *tx)
                            .await
                            .map_err(db("reorder columns"))?;
                    }
                    let cols = Self::columns_tx(&mut tx, ws).await?;
                    Self::commit(tx).await?;
                    Ok(cols)
                }

                async fn list_labels(&self, ws: WorkspaceId) -> Result<Vec<Label>> {
                    let rows = sqlx::query("SELECT * FROM dispatch_label WHERE workspace_id = $1 ORDER BY name_key")
                        .bind(ws.0)
                        .fetch_all(self.reader())
                        .await
                        .map_err(db("list labels"))?;
                    rows.iter().map(Self::row_label).collect()
                }

                async fn create_label(&self, ws: WorkspaceId, label: NewLabel) -> Result<Label> {
                    label.validate()?;
                    let l = Label { id: LabelId::new(), workspace_id: ws, name: label.name.trim().to_string(), color: label.color };
                    let mut tx = self.write_tx().await?;
                    Self::workspace_tx(&mut tx, ws).await?;
                    sqlx::query("INSERT INTO dispatch_label (id, workspace_id, name, name_key, color) VALUES ($1, $2, $3, $4, $5)")
                        .bind(l.id.0)
                        .bind(ws.0)
                        .bind(&l.name)
                        .bind(l.name.to_lowercase())
                        .bind(&l.color)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| match &e {
                            sqlx::Error::Database(d) if d.is_unique_violation() => {
                                Error::conflict(format!("a label named {:?} exists", l.name))
                            }
                            _ => db("insert label")(e),
                        })?;
                    Self::commit(tx).await?;
                    Ok(l)
                }

                async fn ensure_label(&self, ws: WorkspaceId, label: NewLabel) -> Result<Label> {
                    label.validate()?;
                    let key = label.name.trim().to_lowercase();
                    let find = "SELECT * FROM dispatch_label WHERE workspace_id = $1 AND name_key = $2";
                    if let Some(row) = sqlx::query(find).bind(ws.0).bind(&key).fetch_optional(self.reader()).await.map_err(db("read label"))? {
                        return Self::row_label(&row);
                    }
                    let mut tx = self.write_tx().await?;
                    Self::workspace_tx(&mut tx, ws).await?;
                    sqlx::query("INSERT INTO dispatch_label (id, workspace_id, name, name_key, color) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (workspace_id, name_key) DO NOTHING")
                        .bind(LabelId::new().0)
                        .bind(ws.0)
                        .bind(label.name.trim())
                        .bind(&key)
                        .bind(&label.color)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("insert label"))?;
                    let row = sqlx::query(find).bind(ws.0).bind(&key).fetch_one(&mut *tx).await.map_err(db("read label"))?;
                    let l = Self::row_label(&row)?;
                    Self::commit(tx).await?;
                    Ok(l)
                }
            }
        }
    };
}
