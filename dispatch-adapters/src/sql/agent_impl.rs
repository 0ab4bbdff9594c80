//! [`AgentStore`](dispatch_core::ports::AgentStore) for SQLite and PostgreSQL: registered agents,
//! their webhooks and event queues.

macro_rules! impl_sql_agent_store {
    ($S:ident, for_update = $FU:literal) => {
        mod sql_agent_impl {
            #[allow(unused_imports)]
            use super::*;
            use super::sql_store_shared::*;
            use dispatch_core::Timestamp;
            use dispatch_core::error::{Error, Result};
            use dispatch_core::ids::WorkspaceId;
            use dispatch_core::ports::AgentStore;
            use dispatch_core::agent::{Agent, AgentEvent, NewAgentEvent, name_key};
            use crate::sql::{db, decode_err, to_i64};
            use async_trait::async_trait;
            use sqlx::types::Json;

            impl $S {
                /// Inserts an agent unless its name (case-folded) is taken in its workspace (no row
                /// then); the one insert of agents, also the import's.
                pub(super) fn insert_agent_query<'q>(a: &'q Agent) -> DbQuery<'q> {
                    sqlx::query("INSERT INTO dispatch_agent (id, workspace_id, name_key, doc) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
                        .bind(a.id.0)
                        .bind(a.workspace_id.0)
                        .bind(name_key(&a.name))
                        .bind(Json(a))
                }

                async fn agent_tx(tx: &mut Tx, ws: WorkspaceId, name: &str) -> Result<Option<Agent>> {
                    let row = sqlx::query(concat!("SELECT doc FROM dispatch_agent WHERE workspace_id = $1 AND name_key = $2", $FU))
                        .bind(ws.0)
                        .bind(name_key(name))
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(db("read agent"))?;
                    row.map(|r| doc_col!(r, "dispatch_agent", Agent)).transpose()
                }
            }

            #[async_trait]
            impl AgentStore for $S {
                async fn create_agent(&self, a: &Agent) -> Result<Agent> {
                    let mut tx = self.write_tx().await?;
                    Self::workspace_tx(&mut tx, a.workspace_id).await?;
                    let r = Self::insert_agent_query(a)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("insert agent"))?;
                    if r.rows_affected() == 0 {
                        return Err(Error::conflict(format!("an agent named {:?} exists", a.name)));
                    }
                    Self::commit(tx).await?;
                    Ok(a.clone())
                }

                async fn get_agent_by_name(&self, ws: WorkspaceId, name: &str) -> Result<Option<Agent>> {
                    let row = sqlx::query("SELECT doc FROM dispatch_agent WHERE workspace_id = $1 AND name_key = $2")
                        .bind(ws.0)
                        .bind(name_key(name))
                        .fetch_optional(self.reader())
                        .await
                        .map_err(db("read agent"))?;
                    row.map(|r| doc_col!(r, "dispatch_agent", Agent)).transpose()
                }

                async fn list_agents(&self, ws: WorkspaceId, include_inactive: bool) -> Result<Vec<Agent>> {
                    let rows = sqlx::query("SELECT doc FROM dispatch_agent WHERE workspace_id = $1 ORDER BY name_key, id")
                        .bind(ws.0)
                        .fetch_all(self.reader())
                        .await
                        .map_err(db("list agents"))?;
                    let all: Vec<Agent> = rows.into_iter().map(|r| doc_col!(r, "dispatch_agent", Agent)).collect::<Result<_>>()?;
                    Ok(all.into_iter().filter(|a| include_inactive || a.active).collect())
                }

                async fn set_agent_webhook(&self, ws: WorkspaceId, name: &str, webhook: Option<(String, String)>, now: Timestamp) -> Result<Agent> {
                    let mut tx = self.write_tx().await?;
                    let mut a = Self::agent_tx(&mut tx, ws, name)
                        .await?
                        .ok_or_else(|| Error::not_found(format!("agent {name:?} not found")))?;
                    let (url, secret) = webhook.unzip();
                    a.webhook_url = url;
                    a.webhook_secret = secret;
                    a.updated_at = now;
                    sqlx::query("UPDATE dispatch_agent SET doc = $2 WHERE id = $1")
                        .bind(a.id.0)
                        .bind(Json(&a))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("update agent"))?;
                    Self::commit(tx).await?;
                    Ok(a)
                }

                async fn push_agent_event(&self, ws: WorkspaceId, name: &str, event: &NewAgentEvent, cap: usize, now: Timestamp) -> Result<i64> {
                    let mut tx = self.write_tx().await?;
                    let a = Self::agent_tx(&mut tx, ws, name)
                        .await?
                        .ok_or_else(|| Error::not_found(format!("agent {name:?} not found")))?;
                    let seq: i64 = sqlx::query_scalar("INSERT INTO dispatch_agent_event (agent_id, doc, received_at) VALUES ($1, $2, $3) RETURNING seq")
                        .bind(a.id.0)
                        .bind(Json(event))
                        .bind(Self::ts(now))
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db("queue agent event"))?;
                    sqlx::query("DELETE FROM dispatch_agent_event WHERE agent_id = $1 AND seq <= (SELECT seq FROM dispatch_agent_event WHERE agent_id = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2)")
                        .bind(a.id.0)
                        .bind(to_i64(cap as u64))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("drop old agent events"))?;
                    Self::commit(tx).await?;
                    Ok(seq)
                }

                async fn take_agent_events(&self, ws: WorkspaceId, name: &str, limit: usize) -> Result<Vec<AgentEvent>> {
                    // One statement: concurrent takers each get a disjoint set (a row another taker
                    // deleted first is not returned twice).
                    let rows = sqlx::query("DELETE FROM dispatch_agent_event WHERE seq IN (\
                         SELECT e.seq FROM dispatch_agent_event e JOIN dispatch_agent a ON a.id = e.agent_id \
                         WHERE a.workspace_id = $1 AND a.name_key = $2 ORDER BY e.seq LIMIT $3) \
                         RETURNING seq, doc, received_at")
                        .bind(ws.0)
                        .bind(name_key(name))
                        .bind(to_i64(limit as u64))
                        .fetch_all(self.autocommit())
                        .await
                        .map_err(db("take agent events"))?;
                    let mut out = Vec::with_capacity(rows.len());
                    for r in rows {
                        out.push(AgentEvent {
                            seq: r.try_get("seq").map_err(|e| decode_err("dispatch_agent_event", "seq", e))?,
                            event: doc_col!(r, "dispatch_agent_event", NewAgentEvent)?,
                            received_at: Self::get_ts(&r, "dispatch_agent_event", "received_at")?,
                        });
                    }
                    out.sort_by_key(|e| e.seq);
                    Ok(out)
                }
            }
        }
    };
}
