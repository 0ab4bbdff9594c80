//! Search: lexical always, embeddings when an `Embedder` is configured.

use super::Dispatch;
use crate::error::{Error, Result};
use crate::ids::IssueRef;
use crate::issue::Issue;
use crate::search::SearchHit;

const EMBED_MAX_CHARS: usize = 8000;

fn embed_text(issue: &Issue) -> String {
    let t = match &issue.description {
        Some(d) if !d.trim().is_empty() => format!("{}\n\n{d}", issue.title),
        _ => issue.title.clone(),
    };
    t.chars().take(EMBED_MAX_CHARS).collect()
}

impl Dispatch {
    /// Ranked lexical search over titles, descriptions and comments.
    pub async fn search(&self, query: &str, limit: usize) -> Result<Vec<SearchHit>> {
        if query.trim().is_empty() {
            return Err(Error::invalid("q", "search needs a query"));
        }
        self.inner
            .store
            .search_issues(self.inner.workspace.id, query, limit.clamp(1, 100))
            .await
    }

    /// Issues like this one: by embedding when an embedder is configured and has vectors, else
    /// lexically.
    pub async fn similar_issues(
        &self,
        issue: impl Into<IssueRef>,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        let issue = self.get_issue(issue).await?;
        let limit = limit.clamp(1, 50);
        if let Some(e) = &self.inner.embedder {
            match e.embed(&[embed_text(&issue)]).await {
                Ok(v) if !v.is_empty() => {
                    let hits = self
                        .inner
                        .store
                        .nearest_issues(
                            self.inner.workspace.id,
                            e.model(),
                            &v[0],
                            Some(issue.id),
                            limit,
                        )
                        .await?;
                    if !hits.is_empty() {
                        return Ok(hits);
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "embedding failed; using lexical similarity")
                }
            }
        }
        self.inner.store.similar_issues(issue.id, limit).await
    }

    /// Stores the issue's embedding when an embedder is configured. Best effort: a failure is
    /// logged and the issue stays searchable lexically.
    pub(crate) async fn embed_issue(&self, issue: &Issue) {
        let Some(e) = &self.inner.embedder else {
            return;
        };
        match e.embed(&[embed_text(issue)]).await {
            Ok(v) if !v.is_empty() => {
                if let Err(err) = self
                    .inner
                    .store
                    .set_embedding(issue.id, e.model(), &v[0])
                    .await
                {
                    tracing::warn!(issue = %issue.identifier, error = %err, "storing embedding failed");
                }
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(issue = %issue.identifier, error = %err, "embedding failed"),
        }
    }
}
