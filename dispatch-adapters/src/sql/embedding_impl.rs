//! Owed embeddings (`dispatch_embedding_queue`, migration 0014), written once for SQLite and
//! PostgreSQL. Marks are written by triggers on `dispatch_issue` in the transaction of the issue
//! write (insert; update of title or description), each bumping the row's generation; a claim
//! leases due rows (`FOR NO KEY UPDATE SKIP LOCKED` on PostgreSQL, so concurrent workers take
//! different rows; SQLite's single writer serialises claims); settling deletes the row only if
//! its generation is still the claimed one. Vectors are stored per dialect
//! (`Self::encode_embedding` / `Self::decode_embedding`: SQLite a BLOB of little-endian f32,
//! PostgreSQL `real[]`).

macro_rules! impl_sql_embedding_store {
    ($S:ident, $DB:ty, skip_locked = $SKIP:literal, dims = $DIMS:literal) => {
        mod sql_embedding_impl {
            #[allow(unused_imports)]
            use super::*;
            use crate::sql::{db, decode_err, to_i64};
            use async_trait::async_trait;
            use chrono::Duration;
            use dispatch_core::Timestamp;
            use dispatch_core::embedding::{OwedEmbedding, check_vector};
            use dispatch_core::error::{Error, Result};
            use dispatch_core::ids::IssueId;
            use dispatch_core::issue::Issue;
            use dispatch_core::ports::EmbeddingStore;
            use std::collections::HashMap;

            #[async_trait]
            impl EmbeddingStore for $S {
                async fn claim_owed_embeddings(
                    &self,
                    now: Timestamp,
                    lease: Duration,
                    limit: usize,
                ) -> Result<Vec<OwedEmbedding>> {
                    if limit == 0 {
                        return Ok(Vec::new());
                    }
                    let mut tx = self.write_tx().await?;
                    let rows = sqlx::query(concat!(
                        "SELECT q.issue_id AS issue_id, q.generation AS generation, q.attempts AS attempts, i.doc AS doc \
                         FROM dispatch_embedding_queue q JOIN dispatch_issue i ON i.id = q.issue_id \
                         WHERE q.not_before IS NULL OR q.not_before <= $1 \
                         ORDER BY q.not_before IS NOT NULL, q.not_before, q.issue_id LIMIT $2",
                        $SKIP
                    ))
                    .bind(Self::ts(now))
                    .bind(to_i64(limit as u64))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db("claim owed embeddings"))?;
                    let mut out = Vec::with_capacity(rows.len());
                    for r in rows {
                        let issue: Issue = doc_col!(r, "dispatch_issue", Issue)?;
                        let generation: i64 = r
                            .try_get("generation")
                            .map_err(|e| decode_err("dispatch_embedding_queue", "generation", e))?;
                        let attempts: i32 = r
                            .try_get("attempts")
                            .map_err(|e| decode_err("dispatch_embedding_queue", "attempts", e))?;
                        sqlx::query("UPDATE dispatch_embedding_queue SET not_before = $2 WHERE issue_id = $1")
                            .bind(issue.id.0)
                            .bind(Self::ts(now + lease))
                            .execute(&mut *tx)
                            .await
                            .map_err(db("lease owed embedding"))?;
                        out.push(OwedEmbedding {
                            issue,
                            generation,
                            attempts: u32::try_from(attempts).unwrap_or(0),
                        });
                    }
                    tx.commit().await.map_err(db("commit"))?;
                    Ok(out)
                }

                async fn settle_embedding(
                    &self,
                    issue: IssueId,
                    generation: i64,
                    model: &str,
                    vector: &[f32],
                ) -> Result<bool> {
                    check_vector(vector)?;
                    let mut tx = self.write_tx().await?;
                    let stored = sqlx::query(
                        "INSERT INTO dispatch_embedding (issue_id, workspace_id, model, vector) \
                         SELECT id, workspace_id, $2, $3 FROM dispatch_issue WHERE id = $1 \
                         ON CONFLICT (issue_id) DO UPDATE SET model = excluded.model, vector = excluded.vector",
                    )
                    .bind(issue.0)
                    .bind(model)
                    .bind(Self::encode_embedding(vector))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("store embedding"))?;
                    if stored.rows_affected() == 0 {
                        return Err(Error::not_found(format!("issue {issue} not found")));
                    }
                    let settled = sqlx::query(
                        "DELETE FROM dispatch_embedding_queue WHERE issue_id = $1 AND generation = $2",
                    )
                    .bind(issue.0)
                    .bind(generation)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("settle owed embedding"))?
                    .rows_affected()
                        == 1;
                    if !settled {
                        // Edited since the claim: due again at once.
                        sqlx::query("UPDATE dispatch_embedding_queue SET not_before = NULL WHERE issue_id = $1")
                            .bind(issue.0)
                            .execute(&mut *tx)
                            .await
                            .map_err(db("release owed embedding"))?;
                    }
                    let owed = sqlx::query("SELECT 1 FROM dispatch_embedding_queue WHERE issue_id = $1")
                        .bind(issue.0)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db("read owed embedding"))?
                        .is_some();
                    tx.commit().await.map_err(db("commit"))?;
                    Ok(!owed)
                }

                async fn defer_embedding(
                    &self,
                    issue: IssueId,
                    generation: i64,
                    retry_at: Timestamp,
                ) -> Result<()> {
                    sqlx::query(
                        "UPDATE dispatch_embedding_queue SET attempts = attempts + 1, not_before = $3 \
                         WHERE issue_id = $1 AND generation = $2",
                    )
                    .bind(issue.0)
                    .bind(generation)
                    .bind(Self::ts(retry_at))
                    .execute(self.autocommit())
                    .await
                    .map_err(db("defer owed embedding"))?;
                    Ok(())
                }

                async fn owe_embeddings_not_of(&self, model: &str, dimensions: usize) -> Result<u64> {
                    let r = sqlx::query(concat!(
                        "INSERT INTO dispatch_embedding_queue (issue_id) \
                         SELECT i.id FROM dispatch_issue i LEFT JOIN dispatch_embedding e ON e.issue_id = i.id \
                         WHERE (e.issue_id IS NULL OR e.model <> $1 OR ",
                        $DIMS,
                        " <> $2) \
                         AND NOT EXISTS (SELECT 1 FROM dispatch_embedding_queue q WHERE q.issue_id = i.id) \
                         ON CONFLICT (issue_id) DO NOTHING"
                    ))
                    .bind(model)
                    .bind(to_i64(dimensions as u64))
                    .execute(self.autocommit())
                    .await
                    .map_err(db("owe embeddings"))?;
                    Ok(r.rows_affected())
                }

                async fn embeddings_of(
                    &self,
                    issues: &[IssueId],
                    model: &str,
                ) -> Result<HashMap<IssueId, Vec<f32>>> {
                    let mut out = HashMap::with_capacity(issues.len());
                    // Bounded statements: 500 ids each.
                    for chunk in issues.chunks(500) {
                        let mut sql = String::from(
                            "SELECT issue_id, vector FROM dispatch_embedding WHERE model = $1 AND issue_id IN (",
                        );
                        for i in 0..chunk.len() {
                            if i > 0 {
                                sql.push_str(", ");
                            }
                            sql.push_str(&format!("${}", i + 2));
                        }
                        sql.push(')');
                        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(model);
                        for id in chunk {
                            q = q.bind(id.0);
                        }
                        let rows = q
                            .fetch_all(self.reader())
                            .await
                            .map_err(db("read embeddings"))?;
                        for r in rows {
                            let id: uuid::Uuid = r
                                .try_get("issue_id")
                                .map_err(|e| decode_err("dispatch_embedding", "issue_id", e))?;
                            out.insert(IssueId(id), Self::decode_embedding(&r)?);
                        }
                    }
                    Ok(out)
                }

                async fn owed_embedding_count(&self) -> Result<u64> {
                    let n: i64 = sqlx::query("SELECT count(*) AS n FROM dispatch_embedding_queue")
                        .fetch_one(self.reader())
                        .await
                        .map_err(db("count owed embeddings"))?
                        .try_get("n")
                        .map_err(|e| decode_err("dispatch_embedding_queue", "count", e))?;
                    crate::sql::to_u64("dispatch_embedding_queue", "count", n)
                }
            }
        }
    };
}
