//! Duplicate detection over open issues (`POST /api/issues/deduplicate`, the orchestrator's
//! `deduplicate_missions`): the clustering is `crate::dedup`; this use-case loads the issues,
//! asks the LLM to review each cluster when one is configured, and on execution cancels the
//! confirmed duplicates through the same path as any move (the close gate applies: an error
//! issue without a verified fix is reported, not closed) with cross-reference comments.

use super::Dispatch;
use super::issues::ColumnRef;
use crate::dedup::{Cluster, DedupItem, DedupPolicy, find_clusters, parse_review, review_prompt};
use crate::error::{Error, Result};
use crate::ids::IssueId;
use crate::issue::{Actor, IssueFilter, NewComment, names};
use crate::ports::LlmRequest;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What to look at and whether to act.
#[derive(Debug, Clone, PartialEq)]
pub struct DedupRequest {
    /// Column names (or ids) whose issues are compared. Default: Backlog and Investigating.
    pub columns: Vec<String>,
    /// Similarity from which issues are duplicates (default `dedup::LEXICAL_THRESHOLD` by
    /// wording, `dedup::EMBEDDING_THRESHOLD` between two issues with embeddings; a value
    /// given applies to both).
    pub threshold: Option<f64>,
    /// Only report (the default); `false` cancels the duplicates.
    pub dry_run: bool,
    pub max_clusters: usize,
    /// Ask the configured LLM to review each cluster (ignored without an LLM).
    pub review: bool,
}

impl Default for DedupRequest {
    fn default() -> Self {
        DedupRequest {
            columns: vec![names::BACKLOG.into(), names::INVESTIGATING.into()],
            threshold: None,
            dry_run: true,
            max_clusters: 50,
            review: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DedupReport {
    pub dry_run: bool,
    pub issues_scanned: usize,
    /// Of them, compared by their stored embedding (an embedder is configured and the issue's
    /// vector is computed).
    pub issues_with_embeddings: usize,
    pub threshold: f64,
    /// Clusters found (after review: the reviewer's canonical and confirmed duplicates).
    pub clusters: Vec<Cluster>,
    /// Clusters an LLM reviewed.
    pub clusters_reviewed: usize,
    /// Identifiers cancelled as duplicates (execution only).
    pub closed: Vec<String>,
    pub comments_added: usize,
    /// What could not be done, one sentence each (a close gate, a review that failed, …).
    pub errors: Vec<String>,
}

impl DedupReport {
    /// How many issues the clusters would close (dry run) or did close.
    pub fn total_to_close(&self) -> usize {
        self.clusters.iter().map(|c| c.duplicates.len()).sum()
    }
}

impl Dispatch {
    pub async fn deduplicate(&self, req: DedupRequest, actor: &Actor) -> Result<DedupReport> {
        let threshold = req.threshold.unwrap_or(crate::dedup::LEXICAL_THRESHOLD);
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(Error::invalid(
                "threshold",
                "threshold must be greater than 0 and at most 1",
            ));
        }
        if req.max_clusters == 0 || req.max_clusters > 500 {
            return Err(Error::invalid(
                "max_clusters",
                "max_clusters must be from 1 to 500",
            ));
        }
        let mut items = Vec::new();
        let mut descriptions: HashMap<IssueId, String> = HashMap::new();
        for name in &req.columns {
            let column = self.resolve_column(&column_ref(name)).await?;
            let mut before = None;
            loop {
                let page = self
                    .list_issues(&IssueFilter {
                        column_id: Some(column.id),
                        before_number: before,
                        limit: Some(500),
                        ..IssueFilter::default()
                    })
                    .await?;
                let Some(last) = page.last() else { break };
                before = Some(last.number);
                let full = page.len() == 500;
                for issue in page {
                    let description = issue.description.clone().unwrap_or_default();
                    descriptions.insert(issue.id, description.clone());
                    items.push(DedupItem {
                        id: issue.id,
                        identifier: issue.identifier.clone(),
                        number: issue.number,
                        title: issue.title.clone(),
                        description,
                        embedding: None,
                    });
                }
                if !full {
                    break;
                }
            }
        }
        if let Some(e) = &self.inner.embedder {
            let ids: Vec<IssueId> = items.iter().map(|i| i.id).collect();
            let mut vectors = self.inner.store.embeddings_of(&ids, e.model()).await?;
            for item in &mut items {
                item.embedding = vectors
                    .remove(&item.id)
                    .filter(|v| v.len() == e.dimensions());
            }
        }
        let issues_with_embeddings = items.iter().filter(|i| i.embedding.is_some()).count();
        let mut clusters = find_clusters(
            &items,
            &DedupPolicy {
                threshold,
                embedding_threshold: req.threshold.unwrap_or(crate::dedup::EMBEDDING_THRESHOLD),
                max_clusters: req.max_clusters,
                ..DedupPolicy::default()
            },
        );
        let mut report = DedupReport {
            dry_run: req.dry_run,
            issues_scanned: items.len(),
            issues_with_embeddings,
            threshold,
            clusters: Vec::new(),
            clusters_reviewed: 0,
            closed: Vec::new(),
            comments_added: 0,
            errors: Vec::new(),
        };
        if req.review
            && let Some(llm) = &self.inner.llm
        {
            for c in &mut clusters {
                let (system, text) = review_prompt(c, &descriptions);
                match llm
                    .complete(LlmRequest::single_turn(system, text, 1024))
                    .await
                {
                    Ok(answer) => match parse_review(c, &answer.text()) {
                        Some(reviewed) => {
                            *c = reviewed;
                            report.clusters_reviewed += 1;
                        }
                        None => report.errors.push(format!(
                            "the review of {}'s cluster was not usable; kept as found",
                            c.canonical
                        )),
                    },
                    Err(e) => report.errors.push(format!(
                        "the review of {}'s cluster failed ({e}); kept as found",
                        c.canonical
                    )),
                }
            }
        }
        clusters.retain(|c| !c.duplicates.is_empty());
        if !req.dry_run {
            let cancelled = ColumnRef::Name(names::CANCELED.to_string());
            for c in &clusters {
                let mut closed_here = Vec::new();
                for d in &c.duplicates {
                    match self.move_issue(d.id, cancelled.clone(), actor).await {
                        Ok(_) => {
                            let body = format!(
                                "Closed as duplicate of **{}** — {}",
                                c.canonical, d.reason
                            );
                            self.comment_as(d.id, body, actor, &mut report).await;
                            closed_here.push(d.identifier.clone());
                        }
                        Err(e) => report
                            .errors
                            .push(format!("{} was not closed: {}", d.identifier, e)),
                    }
                }
                if !closed_here.is_empty() {
                    let body = format!(
                        "Dedup: {} duplicate(s) closed — {}",
                        closed_here.len(),
                        closed_here.join(", ")
                    );
                    self.comment_as(c.canonical_id, body, actor, &mut report)
                        .await;
                    report.closed.extend(closed_here);
                }
            }
        }
        report.clusters = clusters;
        Ok(report)
    }

    async fn comment_as(&self, issue: IssueId, body: String, actor: &Actor, r: &mut DedupReport) {
        let comment = NewComment {
            author: Some(actor.name.clone()),
            body,
        };
        match self.add_comment(issue, comment, actor).await {
            Ok(_) => r.comments_added += 1,
            Err(e) => r.errors.push(format!("a dedup comment was not added: {e}")),
        }
    }
}

fn column_ref(s: &str) -> ColumnRef {
    match uuid::Uuid::parse_str(s.trim()) {
        Ok(u) => ColumnRef::Id(u.into()),
        Err(_) => ColumnRef::Name(s.trim().to_string()),
    }
}
