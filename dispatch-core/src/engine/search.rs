//! Search: lexical always; embeddings when an `Embedder` is configured (spec §12.4). Issue
//! vectors are computed off the request path by the embedding worker ([`Dispatch::embed_step`],
//! see [`crate::embedding`]); a request embeds at most its query, bounded by
//! [`SEMANTIC_TIMEOUT`], and falls back to lexical when that fails.

use super::Dispatch;
use crate::embedding::{self, SEMANTIC_TIMEOUT, issue_text};
use crate::error::{Error, Result};
use crate::ids::IssueRef;
use crate::search::SearchHit;

/// What one embedding worker step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmbedReport {
    /// Owed embeddings claimed.
    pub claimed: usize,
    /// Stored and settled.
    pub embedded: usize,
    /// Deferred after a failed call.
    pub deferred: usize,
}

impl Dispatch {
    /// Ranked search over titles, descriptions and comments: lexical, merged with the nearest
    /// issues by embedding when an embedder is configured (reciprocal rank fusion,
    /// [`embedding::fuse`]). Lexical and semantic halves run concurrently; the semantic half
    /// gets [`SEMANTIC_TIMEOUT`], after which (or on failure) the answer is lexical.
    pub async fn search(&self, query: &str, limit: usize) -> Result<Vec<SearchHit>> {
        let limit = Self::check_search(query, limit)?;
        let Some(e) = &self.inner.embedder else {
            return self.search_lexical(query, limit).await;
        };
        let lexical = self.search_lexical(query, limit);
        let semantic = async {
            let v = match e.embed(&[query.to_string()]).await {
                Ok(mut v) if !v.is_empty() => v.swap_remove(0),
                Ok(_) => return Vec::new(),
                Err(err) => {
                    tracing::warn!(error = %err, "query embedding failed; lexical search only");
                    return Vec::new();
                }
            };
            self.inner
                .store
                .nearest_issues(self.inner.workspace.id, e.model(), &v, None, limit)
                .await
                .unwrap_or_else(|err| {
                    tracing::warn!(error = %err, "nearest issues failed; lexical search only");
                    Vec::new()
                })
        };
        let semantic = async {
            tokio::time::timeout(SEMANTIC_TIMEOUT, semantic)
                .await
                .unwrap_or_else(|_| {
                    tracing::warn!("semantic search timed out; lexical search only");
                    Vec::new()
                })
        };
        let (lexical, semantic) = tokio::join!(lexical, semantic);
        Ok(embedding::fuse(lexical?, semantic, limit))
    }

    /// Keyword search only: never calls the embedder (the MCP `search_issues` tool, whose
    /// callers are agents in a loop).
    pub async fn search_keywords(&self, query: &str, limit: usize) -> Result<Vec<SearchHit>> {
        let limit = Self::check_search(query, limit)?;
        self.search_lexical(query, limit).await
    }

    fn check_search(query: &str, limit: usize) -> Result<usize> {
        if query.trim().is_empty() {
            return Err(Error::invalid("q", "search needs a query"));
        }
        Ok(limit.clamp(1, 100))
    }

    async fn search_lexical(&self, query: &str, limit: usize) -> Result<Vec<SearchHit>> {
        self.inner
            .store
            .search_issues(self.inner.workspace.id, query, limit)
            .await
    }

    /// Issues like this one: by the issue's stored embedding when an embedder is configured and
    /// the issue has a vector of its model, else lexically. Never calls the embedder.
    pub async fn similar_issues(
        &self,
        issue: impl Into<IssueRef>,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        let issue = self.get_issue(issue).await?;
        let limit = limit.clamp(1, 50);
        if let Some(e) = &self.inner.embedder
            && let Some(v) = self
                .inner
                .store
                .embeddings_of(&[issue.id], e.model())
                .await?
                .remove(&issue.id)
        {
            let hits = self
                .inner
                .store
                .nearest_issues(
                    self.inner.workspace.id,
                    e.model(),
                    &v,
                    Some(issue.id),
                    limit,
                )
                .await?;
            if !hits.is_empty() {
                return Ok(hits);
            }
        }
        self.inner.store.similar_issues(issue.id, limit).await
    }

    /// Wakes the embedding worker: an issue owes an embedding (the store marked it).
    pub(crate) fn wake_embedder(&self) {
        if self.inner.embedder.is_some() {
            self.inner.wake_embedder.notify_one();
        }
    }

    /// One embedding worker step: claims up to [`embedding::BATCH`] owed embeddings, embeds
    /// their texts in one call and settles each; when the call fails, each claim is deferred
    /// ([`embedding::retry_at`]). Nothing without an embedder.
    pub async fn embed_step(&self) -> Result<EmbedReport> {
        let mut report = EmbedReport::default();
        let Some(e) = &self.inner.embedder else {
            return Ok(report);
        };
        let now = self.now();
        let owed = self
            .inner
            .store
            .claim_owed_embeddings(now, embedding::lease(), embedding::BATCH)
            .await?;
        report.claimed = owed.len();
        if owed.is_empty() {
            return Ok(report);
        }
        let texts: Vec<String> = owed.iter().map(|o| issue_text(&o.issue)).collect();
        match e.embed(&texts).await {
            Ok(vectors) if vectors.len() == owed.len() => {
                for (o, v) in owed.iter().zip(vectors) {
                    match self
                        .inner
                        .store
                        .settle_embedding(o.issue.id, o.generation, e.model(), &v)
                        .await
                    {
                        Ok(_) => report.embedded += 1,
                        // Deleted meanwhile: nothing is owed any more.
                        Err(err) if err.kind == crate::ErrorKind::NotFound => {}
                        Err(err) => {
                            tracing::warn!(issue = %o.issue.identifier, error = %err, "storing an embedding failed");
                            self.inner
                                .store
                                .defer_embedding(
                                    o.issue.id,
                                    o.generation,
                                    embedding::retry_at(o.attempts + 1, now),
                                )
                                .await?;
                            report.deferred += 1;
                        }
                    }
                }
            }
            outcome => {
                let why = match outcome {
                    Err(err) => err.to_string(),
                    Ok(v) => format!("{} vectors for {} texts", v.len(), owed.len()),
                };
                tracing::warn!(issues = owed.len(), error = %why, "embedding issues failed; deferred");
                for o in &owed {
                    self.inner
                        .store
                        .defer_embedding(
                            o.issue.id,
                            o.generation,
                            embedding::retry_at(o.attempts + 1, now),
                        )
                        .await?;
                    report.deferred += 1;
                }
            }
        }
        Ok(report)
    }

    /// Marks the issues without a vector of the embedder's model and size as owed (at start:
    /// issues from before embeddings were configured, or after the model changed).
    pub async fn owe_stale_embeddings(&self) -> Result<u64> {
        match &self.inner.embedder {
            Some(e) => {
                self.inner
                    .store
                    .owe_embeddings_not_of(e.model(), e.dimensions())
                    .await
            }
            None => Ok(0),
        }
    }

    /// Runs the embedding worker (woken when an issue owes an embedding, else every
    /// `dispatcher_interval`) until `cancel` fires. Returns at once without an embedder.
    pub async fn run_embeddings(&self, cancel: tokio_util::sync::CancellationToken) {
        if self.inner.embedder.is_none() {
            return;
        }
        match self.owe_stale_embeddings().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                issues = n,
                "issues owe an embedding of the configured model"
            ),
            Err(e) => tracing::warn!(error = %e, "marking stale embeddings failed"),
        }
        loop {
            match self.embed_step().await {
                // A full batch that went through may mean more is due right now.
                Ok(r) if r.claimed >= embedding::BATCH && r.deferred == 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "embedding step failed"),
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.inner.wake_embedder.notified() => {}
                _ = tokio::time::sleep(self.inner.config.dispatcher_interval) => {}
            }
        }
    }
}
