//! The orchestrator's store (sessions, proposals), written once for SQLite and PostgreSQL.
//! Each decision loads the locked row, applies the core's pure rule (`begin_turn`, `end_turn`,
//! `decide`) and writes it back in one transaction — the same rules the memory store applies.

macro_rules! impl_sql_orchestrator_store {
    ($S:ident, $DB:ty, for_update = $FU:literal) => {
        mod sql_orchestrator_impl {
            #[allow(unused_imports)]
            use super::*;
            use crate::sql::{db, to_i64};
            use async_trait::async_trait;
            use dispatch_core::Timestamp;
            use dispatch_core::error::{Error, Result};
            use dispatch_core::ids::{ProposalId, SessionId, WorkspaceId};
            use dispatch_core::orchestrator::{
                self as orch, Proposal, ProposalDecision, ProposalOutcome, Session,
            };
            use dispatch_core::ports::{LlmMessage, OrchestratorStore, Usage};
            use dispatch_core::run::WorkflowKind;
            use sqlx::types::Json;

            type Tx = sqlx::Transaction<'static, $DB>;

            fn no_session(id: SessionId) -> Error {
                Error::not_found(format!("no session {id}"))
            }

            fn no_proposal(id: ProposalId) -> Error {
                Error::not_found(format!("no proposal {id}"))
            }

            impl $S {
                /// The one insert of orchestrator sessions (new sessions and the import).
                pub(super) fn insert_session_query<'q>(x: &'q Session) -> sqlx::query::Query<'q, $DB, <$DB as sqlx::Database>::Arguments> {
                    sqlx::query("INSERT INTO dispatch_orchestrator_session (id, workspace_id, updated_at, doc) VALUES ($1, $2, $3, $4)")
                        .bind(x.id.0)
                        .bind(x.workspace_id.0)
                        .bind(Self::ts(x.updated_at))
                        .bind(Json(x))
                }

                async fn locked_session(tx: &mut Tx, id: SessionId) -> Result<Session> {
                    let row = sqlx::query(concat!(
                        "SELECT doc FROM dispatch_orchestrator_session WHERE id = $1",
                        $FU
                    ))
                    .bind(id.0)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db("lock session"))?
                    .ok_or_else(|| no_session(id))?;
                    doc_col!(row, "dispatch_orchestrator_session", Session)
                }

                async fn save_session(tx: &mut Tx, s: &Session) -> Result<()> {
                    sqlx::query(
                        "UPDATE dispatch_orchestrator_session SET doc = $2, updated_at = $3 WHERE id = $1",
                    )
                    .bind(s.id.0)
                    .bind(Json(s))
                    .bind(Self::ts(s.updated_at))
                    .execute(&mut **tx)
                    .await
                    .map_err(db("save session"))?;
                    Ok(())
                }

                async fn locked_proposal(tx: &mut Tx, id: ProposalId) -> Result<Proposal> {
                    let row = sqlx::query(concat!(
                        "SELECT doc FROM dispatch_orchestrator_proposal WHERE id = $1",
                        $FU
                    ))
                    .bind(id.0)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db("lock proposal"))?
                    .ok_or_else(|| no_proposal(id))?;
                    doc_col!(row, "dispatch_orchestrator_proposal", Proposal)
                }

                async fn save_proposal(tx: &mut Tx, p: &Proposal) -> Result<()> {
                    sqlx::query(
                        "UPDATE dispatch_orchestrator_proposal SET doc = $2, status = $3 WHERE id = $1",
                    )
                    .bind(p.id.0)
                    .bind(Json(p))
                    .bind(p.status.as_str())
                    .execute(&mut **tx)
                    .await
                    .map_err(db("save proposal"))?;
                    Ok(())
                }
            }

            #[async_trait]
            impl OrchestratorStore for $S {
                async fn create_session(&self, session: &Session) -> Result<Session> {
                    Self::insert_session_query(session)
                    .execute(self.autocommit())
                    .await
                    .map_err(db("create session"))?;
                    Ok(session.clone())
                }

                async fn get_session(&self, id: SessionId) -> Result<Session> {
                    let row = sqlx::query("SELECT doc FROM dispatch_orchestrator_session WHERE id = $1")
                        .bind(id.0)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(db("read session"))?
                        .ok_or_else(|| no_session(id))?;
                    doc_col!(row, "dispatch_orchestrator_session", Session)
                }

                async fn list_sessions(&self, ws: WorkspaceId, limit: usize) -> Result<Vec<Session>> {
                    let rows = sqlx::query(
                        "SELECT doc FROM dispatch_orchestrator_session WHERE workspace_id = $1 ORDER BY updated_at DESC, id DESC LIMIT $2",
                    )
                    .bind(ws.0)
                    .bind(to_i64(limit as u64))
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("list sessions"))?;
                    rows.iter()
                        .map(|r| doc_col!(r, "dispatch_orchestrator_session", Session))
                        .collect()
                }

                async fn begin_turn(
                    &self,
                    id: SessionId,
                    turn: uuid::Uuid,
                    now: Timestamp,
                    until: Timestamp,
                ) -> Result<Session> {
                    let mut tx = self.write_tx().await?;
                    let cur = Self::locked_session(&mut tx, id).await?;
                    let next = orch::begin_turn(&cur, turn, now, until)?;
                    Self::save_session(&mut tx, &next).await?;
                    tx.commit().await.map_err(db("commit"))?;
                    Ok(next)
                }

                async fn end_turn(
                    &self,
                    id: SessionId,
                    turn: uuid::Uuid,
                    messages: Vec<LlmMessage>,
                    usage: &Usage,
                    now: Timestamp,
                ) -> Result<Session> {
                    let mut tx = self.write_tx().await?;
                    let cur = Self::locked_session(&mut tx, id).await?;
                    let next = orch::end_turn(&cur, turn, messages, usage, now)?;
                    Self::save_session(&mut tx, &next).await?;
                    tx.commit().await.map_err(db("commit"))?;
                    Ok(next)
                }

                async fn create_proposal(&self, p: &Proposal) -> Result<Proposal> {
                    sqlx::query(
                        "INSERT INTO dispatch_orchestrator_proposal (id, session_id, status, created_at, doc) VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(p.id.0)
                    .bind(p.session_id.0)
                    .bind(p.status.as_str())
                    .bind(Self::ts(p.created_at))
                    .bind(Json(p))
                    .execute(self.autocommit())
                    .await
                    .map_err(db("create proposal"))?;
                    Ok(p.clone())
                }

                async fn get_proposal(&self, id: ProposalId) -> Result<Proposal> {
                    let row = sqlx::query("SELECT doc FROM dispatch_orchestrator_proposal WHERE id = $1")
                        .bind(id.0)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(db("read proposal"))?
                        .ok_or_else(|| no_proposal(id))?;
                    doc_col!(row, "dispatch_orchestrator_proposal", Proposal)
                }

                async fn list_proposals(&self, session: SessionId) -> Result<Vec<Proposal>> {
                    let rows = sqlx::query(
                        "SELECT doc FROM dispatch_orchestrator_proposal WHERE session_id = $1 ORDER BY id",
                    )
                    .bind(session.0)
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("list proposals"))?;
                    rows.iter()
                        .map(|r| doc_col!(r, "dispatch_orchestrator_proposal", Proposal))
                        .collect()
                }

                async fn decide_proposal(
                    &self,
                    id: ProposalId,
                    decision: ProposalDecision,
                    now: Timestamp,
                ) -> Result<Proposal> {
                    let mut tx = self.write_tx().await?;
                    let cur = Self::locked_proposal(&mut tx, id).await?;
                    let next = orch::decide(&cur, decision, now)?;
                    Self::save_proposal(&mut tx, &next).await?;
                    tx.commit().await.map_err(db("commit"))?;
                    Ok(next)
                }

                async fn set_proposal_outcome(
                    &self,
                    id: ProposalId,
                    outcome: &ProposalOutcome,
                ) -> Result<Proposal> {
                    let mut tx = self.write_tx().await?;
                    let mut p = Self::locked_proposal(&mut tx, id).await?;
                    p.outcome = Some(outcome.clone());
                    Self::save_proposal(&mut tx, &p).await?;
                    tx.commit().await.map_err(db("commit"))?;
                    Ok(p)
                }

                async fn recent_run_costs(&self, kind: WorkflowKind, limit: usize) -> Result<Vec<f64>> {
                    let rows = sqlx::query(
                        "SELECT cost_usd FROM dispatch_run WHERE kind = $1 AND cost_usd > 0 \
                         AND status IN ('completed', 'failed', 'cancelled', 'timed_out') \
                         ORDER BY created_at DESC, id DESC LIMIT $2",
                    )
                    .bind(kind.as_str())
                    .bind(to_i64(limit as u64))
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("recent run costs"))?;
                    rows.iter()
                        .map(|r| {
                            r.try_get::<f64, _>("cost_usd").map_err(|e| {
                                crate::sql::decode_err("dispatch_run", "cost_usd", e)
                            })
                        })
                        .collect()
                }
            }
        }
    };
}
