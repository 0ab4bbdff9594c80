//! Lexical search helpers shared by the stores, and cosine similarity for optional embeddings.

use crate::issue::Issue;
use serde::{Deserialize, Serialize};

/// An issue and how well it matched (higher is better; scales differ between stores).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub issue: Issue,
    pub score: f64,
}

/// Lower-cased words of letters and digits, at least 2 characters, at most 32 of them.
pub fn terms(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in text.split(|c: char| !c.is_alphanumeric()) {
        if w.chars().count() < 2 {
            continue;
        }
        let w = w.to_lowercase();
        if !out.contains(&w) {
            out.push(w);
        }
        if out.len() == 32 {
            break;
        }
    }
    out
}

/// A simple relevance score: each query term found in the title counts 3, in the description 2,
/// in a comment 1, with a bonus when every term matched. 0 means no match.
pub fn lexical_score(query: &[String], title: &str, description: &str, comments: &str) -> f64 {
    if query.is_empty() {
        return 0.0;
    }
    let (t, d, c) = (terms(title), terms(description), terms(comments));
    let has = |v: &[String], q: &String| {
        v.iter()
            .any(|w| w == q || (q.len() >= 4 && w.starts_with(q.as_str())))
    };
    let mut score = 0.0;
    let mut matched = 0;
    for q in query {
        let s = if has(&t, q) {
            3.0
        } else if has(&d, q) {
            2.0
        } else if has(&c, q) {
            1.0
        } else {
            0.0
        };
        if s > 0.0 {
            matched += 1;
        }
        score += s;
    }
    if matched == query.len() {
        score *= 1.5;
    }
    score / query.len() as f64
}

/// The `k` best hits of a stream, kept as they come (memory stays at `k` hits whatever the
/// number scored): how the stores answer nearest-embedding queries they compute in Rust.
#[derive(Debug)]
pub struct TopK {
    k: usize,
    /// Best first.
    hits: Vec<SearchHit>,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            hits: Vec::with_capacity(k.min(64) + 1),
        }
    }

    /// Whether a hit of this score would be kept (skip decoding its issue otherwise).
    pub fn wants(&self, score: f64) -> bool {
        self.k > 0
            && (self.hits.len() < self.k || self.hits.last().is_some_and(|l| score > l.score))
    }

    pub fn push(&mut self, hit: SearchHit) {
        if !self.wants(hit.score) {
            return;
        }
        let at = self.hits.partition_point(|h| h.score >= hit.score);
        self.hits.insert(at, hit);
        self.hits.truncate(self.k);
    }

    pub fn into_hits(self) -> Vec<SearchHit> {
        self.hits
    }
}

/// The score of a stored vector as a neighbour of `query`: their cosine, or `None` when the
/// two cannot be compared — a vector of another size (stored before a change of model or
/// dimensions, owed again, and no neighbour meanwhile), as the `vector` extension's query in
/// PostgreSQL leaves such rows out.
pub fn neighbour_score(query: &[f32], stored: &[f32]) -> Option<f64> {
    (query.len() == stored.len()).then(|| cosine(query, stored))
}

/// Cosine similarity; 0 for empty, mismatched or zero vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (*x as f64, *y as f64);
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot / (na.sqrt() * nb.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_lowercase_unique_words() {
        assert_eq!(
            terms("Card declined: card DECLINED x 42"),
            vec!["card", "declined", "42"]
        );
    }

    #[test]
    fn title_beats_description_beats_comment() {
        let q = terms("refund");
        let t = lexical_score(&q, "Refund fails", "", "");
        let d = lexical_score(&q, "Payment", "refund path", "");
        let c = lexical_score(&q, "Payment", "", "customer asked about refund");
        assert!(t > d && d > c && c > 0.0);
        assert_eq!(lexical_score(&q, "Payment", "charge", ""), 0.0);
    }

    #[test]
    fn top_k_keeps_the_best_as_they_come() {
        let issue = |t: &str| {
            crate::issue::NewIssue::titled(t).into_issue(
                crate::ids::WorkspaceId::new(),
                1,
                "D-1".into(),
                crate::ids::ColumnId::new(),
                chrono::Utc::now(),
            )
        };
        let mut top = TopK::new(2);
        for (t, s) in [("a", 0.1), ("b", 0.9), ("c", 0.5), ("d", 0.7), ("e", 0.2)] {
            top.push(SearchHit {
                issue: issue(t),
                score: s,
            });
        }
        assert!(!top.wants(0.6) && top.wants(0.8));
        let titles: Vec<String> = top.into_hits().into_iter().map(|h| h.issue.title).collect();
        assert_eq!(titles, vec!["b", "d"]);
        assert!(!TopK::new(0).wants(1.0));
    }

    #[test]
    fn cosine_basics() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-9);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-9);
        assert_eq!(cosine(&[1.0], &[1.0, 2.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 2.0]), 0.0);
    }
}
