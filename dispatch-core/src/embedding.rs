//! Issue embeddings, computed off the request path (spec §2.5, §12.4, §12.5): pure decisions.
//!
//! Every issue created, and every change of its title or description, leaves the issue *owed*
//! an embedding: the store marks it in the same transaction as the write (SQL: triggers on
//! `dispatch_issue` into `dispatch_embedding_queue`, migration 0014; memory: the same in the
//! write path). The embedding worker ([`crate::engine::Dispatch::embed_step`]) claims owed
//! issues in bounded batches with a lease, asks the `Embedder` once per batch and settles each
//! claim; a failure defers the batch with backoff ([`retry_at`]). A claim carries the owed
//! row's *generation*: an issue edited while its vector was being computed stays owed. Marks
//! are rows, so a restart forgets nothing; a failing embeddings API never touches an issue write.

use crate::issue::Issue;
use crate::search::SearchHit;
use crate::{Timestamp, ids::IssueId};
use chrono::Duration;
use std::collections::HashMap;

/// A vector a store accepts: non-empty, finite numbers only.
pub fn check_vector(v: &[f32]) -> crate::Result<()> {
    if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
        return Err(crate::Error::invalid(
            "embedding",
            "an embedding must be a non-empty vector of finite numbers",
        ));
    }
    Ok(())
}

/// The text embedded for an issue is at most this many characters of title + description
/// (about 2,000 tokens: far below the 8,191 of OpenAI's embedding models).
pub const TEXT_MAX_CHARS: usize = 8000;
/// Owed issues claimed (and sent in one request) per worker step.
pub const BATCH: usize = 32;
/// A claim is the worker's for this long; after it another worker may take the issue.
pub fn lease() -> Duration {
    Duration::minutes(5)
}
/// Nearest-neighbour queries computed in Rust (SQLite, PostgreSQL without pgvector, memory)
/// score at most this many of the workspace's newest issues' vectors, streaming them (memory
/// stays at `limit` hits; 10,000 × 1,536 floats is 61 MB read per query). Measured on SQLite,
/// debug build, shared 2-core machine: 20,000 × 1,536 took 4.4–4.9 s, so about half that at
/// this limit in debug and far less in release (not measured). Older issues are not proposed by
/// embedding (lexical search still finds them); pgvector has no such limit.
pub const NEAREST_SCAN_LIMIT: usize = 10_000;
/// Semantic hits below this cosine similarity are not search results (every issue has *some*
/// nearest neighbour).
pub const SEARCH_MIN_SIMILARITY: f64 = 0.3;
/// The semantic half of a request (embedding the query and the nearest-neighbour scan) gets at
/// most this long; then the answer is lexical.
pub const SEMANTIC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// An owed embedding as claimed by the worker.
#[derive(Debug, Clone, PartialEq)]
pub struct OwedEmbedding {
    pub issue: Issue,
    /// Bumped by every write that owes a new embedding; settling an older one keeps it owed.
    pub generation: i64,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// The text embedded for an issue: its title, then its description, bounded.
pub fn issue_text(issue: &Issue) -> String {
    let t = match &issue.description {
        Some(d) if !d.trim().is_empty() => format!("{}\n\n{d}", issue.title),
        _ => issue.title.clone(),
    };
    t.chars().take(TEXT_MAX_CHARS).collect()
}

/// When an owed embedding is tried again after its `attempts`-th failure: one minute, doubling,
/// at most six hours (a dead endpoint costs one request per batch per six hours).
pub fn retry_at(attempts: u32, now: Timestamp) -> Timestamp {
    let minutes = 1i64 << attempts.saturating_sub(1).min(9);
    now + Duration::minutes(minutes.min(360))
}

/// Whether a stored vector can be compared with the embedder's: same model, same size.
pub fn is_current(stored_model: &str, stored_dims: usize, model: &str, dims: usize) -> bool {
    stored_model == model && stored_dims == dims
}

/// Hybrid search: lexical and semantic hits merged by reciprocal rank fusion (k = 60), best
/// first, at most `limit`. Semantic hits under [`SEARCH_MIN_SIMILARITY`] are dropped. An
/// issue's score is the sum of `1 / (60 + rank)` over the lists it is in (rank from 1), scaled
/// so that first in both lists is 1.0 (first in one list only is 0.5).
pub fn fuse(lexical: Vec<SearchHit>, semantic: Vec<SearchHit>, limit: usize) -> Vec<SearchHit> {
    const K: f64 = 60.0;
    let mut by_id: HashMap<IssueId, SearchHit> = HashMap::new();
    let mut order: Vec<IssueId> = Vec::new();
    let semantic: Vec<SearchHit> = semantic
        .into_iter()
        .filter(|h| h.score >= SEARCH_MIN_SIMILARITY)
        .collect();
    for hits in [lexical, semantic] {
        for (rank, h) in hits.into_iter().enumerate() {
            // Scaled by the best possible sum, 2 / (K + 1).
            let add = (K + 1.0) / (2.0 * (K + rank as f64 + 1.0));
            match by_id.get_mut(&h.issue.id) {
                Some(e) => e.score += add,
                None => {
                    order.push(h.issue.id);
                    by_id.insert(
                        h.issue.id,
                        SearchHit {
                            issue: h.issue,
                            score: add,
                        },
                    );
                }
            }
        }
    }
    let mut out: Vec<SearchHit> = order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .collect();
    // Stable: equal scores keep lexical order first.
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out.truncate(limit);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::NewIssue;

    fn issue(title: &str) -> Issue {
        let now = chrono::Utc::now();
        NewIssue::titled(title).into_issue(
            crate::ids::WorkspaceId::new(),
            1,
            "D-1".into(),
            crate::ids::ColumnId::new(),
            now,
        )
    }

    fn hit(i: &Issue, score: f64) -> SearchHit {
        SearchHit {
            issue: i.clone(),
            score,
        }
    }

    #[test]
    fn text_is_title_and_description_bounded() {
        let mut i = issue("Login fails");
        assert_eq!(issue_text(&i), "Login fails");
        i.description = Some("x".repeat(10_000));
        let t = issue_text(&i);
        assert!(t.starts_with("Login fails\n\nxx"));
        assert_eq!(t.chars().count(), TEXT_MAX_CHARS);
    }

    #[test]
    fn retries_back_off_to_six_hours() {
        let now = chrono::Utc::now();
        assert_eq!(retry_at(1, now) - now, Duration::minutes(1));
        assert_eq!(retry_at(3, now) - now, Duration::minutes(4));
        assert_eq!(retry_at(40, now) - now, Duration::minutes(360));
    }

    #[test]
    fn fusion_rewards_agreement_and_keeps_semantic_only_hits() {
        let (a, b, c, d) = (issue("a"), issue("b"), issue("c"), issue("d"));
        let out = fuse(
            vec![hit(&a, 9.0), hit(&b, 5.0)],
            vec![hit(&b, 0.9), hit(&c, 0.8), hit(&d, 0.1)],
            10,
        );
        let ids: Vec<IssueId> = out.iter().map(|h| h.issue.id).collect();
        // b is in both lists; c only semantically; d is too far to count.
        assert_eq!(ids, vec![b.id, a.id, c.id]);
        assert!((out[1].score - 0.5).abs() < 1e-9, "first in one list: 0.5");
        assert!(out[0].score < 1.0 && out[0].score > 0.9);
        assert_eq!(fuse(vec![hit(&a, 1.0)], vec![], 10).len(), 1);
        assert_eq!(fuse(vec![hit(&a, 1.0), hit(&b, 1.0)], vec![], 1).len(), 1);
    }
}
