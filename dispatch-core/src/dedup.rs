//! Duplicate detection over open issues: pure functions, no I/O.
//!
//! The original compared every pair of issues (a self-join, O(n²), embeddings only). Here each
//! issue is compared with a bounded number of candidates: an inverted index over content words
//! (stopwords out, light stemming, as PR matching uses) proposes the issues that share the most
//! *distinctive* words with it (words in more than `max_posting` issues propose nobody), and only
//! those are scored: TF-IDF cosine over title (weighted twice) and description, or the cosine of
//! stored embeddings when both issues have one. Pairs at or above the threshold are joined into
//! clusters (union-find); the oldest issue of a cluster is its canonical one. An LLM, when
//! configured, may then review each cluster (`review_prompt` / `parse_review`).

use crate::ids::IssueId;
use crate::pr_match::content_words;
use crate::search::cosine;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// One open issue, as duplicate detection sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DedupItem {
    pub id: IssueId,
    pub identifier: String,
    /// The identifier's number: lower is older.
    pub number: i64,
    pub title: String,
    pub description: String,
    /// The stored embedding, when an embedder is configured and the issue has one.
    pub embedding: Option<Vec<f32>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DedupPolicy {
    /// Similarity (0..=1) from which two issues are duplicates by wording.
    pub threshold: f64,
    /// Cosine similarity of embeddings from which two issues that both have one are duplicates.
    pub embedding_threshold: f64,
    /// Issues scored per issue (the candidates sharing the most distinctive words).
    pub candidates_per_issue: usize,
    /// A word found in more issues than this proposes no candidates (it still weighs in scores).
    pub max_posting: usize,
    pub max_clusters: usize,
}

/// The default threshold by wording: TF-IDF cosine runs high for distinct issues of one service
/// and object ("billing: invoice timeout" / "billing: invoice crash" score up to ~0.88), so
/// lexical duplicates must share more than that.
pub const LEXICAL_THRESHOLD: f64 = 0.9;
/// The default threshold by embedding (the original's).
pub const EMBEDDING_THRESHOLD: f64 = 0.85;

impl Default for DedupPolicy {
    fn default() -> Self {
        DedupPolicy {
            threshold: LEXICAL_THRESHOLD,
            embedding_threshold: EMBEDDING_THRESHOLD,
            candidates_per_issue: 12,
            max_posting: 200,
            max_clusters: 50,
        }
    }
}

/// A member of a cluster other than its canonical issue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Duplicate {
    pub id: IssueId,
    pub identifier: String,
    pub title: String,
    /// Similarity to the canonical issue (the strongest link into the cluster when the two were
    /// not compared directly).
    pub similarity: f64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub canonical_id: IssueId,
    pub canonical: String,
    pub canonical_title: String,
    pub duplicates: Vec<Duplicate>,
    /// Identifiers the reviewer said are related but not duplicates (kept open).
    pub keep_separate: Vec<String>,
    /// Mean similarity of the pairs that joined the cluster.
    pub average_similarity: f64,
}

/// Terms of an issue with their weights before IDF: title words twice, description words once.
fn term_counts(item: &DedupItem) -> BTreeMap<String, f64> {
    // Ordered, so that term numbering (and every tie broken by it) is the same on every run.
    let mut tf: BTreeMap<String, f64> = BTreeMap::new();
    for w in content_words(&item.title, 40) {
        *tf.entry(w).or_default() += 2.0;
    }
    for w in content_words(&item.description, 200) {
        *tf.entry(w).or_default() += 1.0;
    }
    tf
}

struct Indexed {
    /// Sparse unit vectors: (term index, weight), sorted by term index.
    vectors: Vec<Vec<(usize, f64)>>,
    /// Term index → issues containing it (only distinctive terms).
    postings: Vec<Vec<usize>>,
    idf: Vec<f64>,
    terms: Vec<String>,
}

fn index(items: &[&DedupItem], max_posting: usize) -> Indexed {
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut terms: Vec<String> = Vec::new();
    let counts: Vec<Vec<(usize, f64)>> = items
        .iter()
        .map(|item| {
            let mut v: Vec<(usize, f64)> = term_counts(item)
                .into_iter()
                .map(|(t, c)| {
                    let next = terms.len();
                    let i = *ids.entry(t.clone()).or_insert_with(|| {
                        terms.push(t);
                        next
                    });
                    (i, c)
                })
                .collect();
            v.sort_by_key(|(i, _)| *i);
            v
        })
        .collect();
    let mut df = vec![0usize; terms.len()];
    for v in &counts {
        for (t, _) in v {
            df[*t] += 1;
        }
    }
    let n = items.len().max(1) as f64;
    // BM25's IDF: a word in (nearly) every issue — the boilerplate of generated descriptions —
    // weighs next to nothing, so templates do not make unrelated issues look alike; in a tiny
    // set it still weighs a little, so that two issues alone can be compared.
    let idf: Vec<f64> = df
        .iter()
        .map(|&d| (1.0 + (n - d as f64 + 0.5) / (d as f64 + 0.5)).ln())
        .collect();
    let mut postings: Vec<Vec<usize>> = vec![Vec::new(); terms.len()];
    let vectors = counts
        .into_iter()
        .enumerate()
        .map(|(doc, v)| {
            let mut w: Vec<(usize, f64)> = v.into_iter().map(|(t, c)| (t, c * idf[t])).collect();
            let norm = w.iter().map(|(_, x)| x * x).sum::<f64>().sqrt();
            if norm > 0.0 {
                for (_, x) in &mut w {
                    *x /= norm;
                }
            }
            for (t, _) in &w {
                if df[*t] > 1 && df[*t] <= max_posting {
                    postings[*t].push(doc);
                }
            }
            w
        })
        .collect();
    Indexed {
        vectors,
        postings,
        idf,
        terms,
    }
}

fn sparse_cosine(a: &[(usize, f64)], b: &[(usize, f64)]) -> f64 {
    let (mut i, mut j, mut dot) = (0, 0, 0.0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                dot += a[i].1 * b[j].1;
                i += 1;
                j += 1;
            }
        }
    }
    dot
}

/// The shared terms of two vectors, most distinctive first, at most `max`.
fn shared_terms(ix: &Indexed, a: &[(usize, f64)], b: &[(usize, f64)], max: usize) -> Vec<String> {
    let mut shared: Vec<usize> = a
        .iter()
        .filter(|(t, _)| b.binary_search_by_key(t, |(u, _)| *u).is_ok())
        .map(|(t, _)| *t)
        .collect();
    shared.sort_by(|x, y| {
        ix.idf[*y]
            .total_cmp(&ix.idf[*x])
            .then_with(|| ix.terms[*x].cmp(&ix.terms[*y]))
    });
    shared
        .into_iter()
        .take(max)
        .map(|t| ix.terms[t].clone())
        .collect()
}

/// Random-hyperplane locality-sensitive hashing of embeddings: [`BANDS`] bands of
/// [`BAND_BITS`] sign bits each (the sign of the vector's projection on a fixed pseudo-random
/// ±1 hyperplane). Two vectors at cosine `c` agree on a bit with probability `1 - acos(c)/π`,
/// so at 0.85 they share at least one band with probability ≈ 0.95 (0.99+ at 0.9), while
/// unrelated vectors (cosine ≈ 0) share one with probability ≈ 0.12. Only issues sharing a
/// band are compared: candidates stay bounded, never all pairs.
const BANDS: usize = 8;
const BAND_BITS: usize = 6;

struct Bands {
    /// Per issue: its (band, bits) keys.
    keys: Vec<Vec<(usize, u32)>>,
    /// Key → issues, only keys held by at most `max_posting` issues.
    buckets: HashMap<(usize, u32), Vec<usize>>,
}

/// The hyperplane's sign for (bit, dimension): a fixed hash, the same on every run.
fn plane_sign(bit: usize, dim: usize) -> f32 {
    let mut h = (bit as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (dim as u64);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    if h & 1 == 0 { 1.0 } else { -1.0 }
}

/// `None` when fewer than two issues have an embedding.
fn embedding_bands(items: &[&DedupItem], max_posting: usize) -> Option<Bands> {
    if items.iter().filter(|i| i.embedding.is_some()).count() < 2 {
        return None;
    }
    let keys: Vec<Vec<(usize, u32)>> = items
        .iter()
        .map(|item| match &item.embedding {
            None => Vec::new(),
            Some(v) => (0..BANDS)
                .map(|band| {
                    let mut bits = 0u32;
                    for j in 0..BAND_BITS {
                        let bit = band * BAND_BITS + j;
                        let p: f32 = v
                            .iter()
                            .enumerate()
                            .map(|(d, x)| x * plane_sign(bit, d))
                            .sum();
                        if p >= 0.0 {
                            bits |= 1 << j;
                        }
                    }
                    (band, bits)
                })
                .collect(),
        })
        .collect();
    let mut buckets: HashMap<(usize, u32), Vec<usize>> = HashMap::new();
    for (doc, ks) in keys.iter().enumerate() {
        for k in ks {
            buckets.entry(*k).or_default().push(doc);
        }
    }
    buckets.retain(|_, docs| docs.len() <= max_posting);
    Some(Bands { keys, buckets })
}

struct UnionFind(Vec<usize>);

impl UnionFind {
    fn find(&mut self, x: usize) -> usize {
        let mut root = x;
        while self.0[root] != root {
            root = self.0[root];
        }
        let mut x = x;
        while self.0[x] != root {
            let next = self.0[x];
            self.0[x] = root;
            x = next;
        }
        root
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            // The older issue's root wins, so a cluster's root is its canonical issue's.
            let (keep, other) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.0[other] = keep;
        }
    }
}

/// Clusters of duplicates among `items`, largest and most similar first, at most
/// `policy.max_clusters`. Each issue is scored against at most `candidates_per_issue` others.
pub fn find_clusters(items: &[DedupItem], policy: &DedupPolicy) -> Vec<Cluster> {
    // Oldest first, so that index order is age order.
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (items[i].number, i));
    let items: Vec<&DedupItem> = order.iter().map(|&i| &items[i]).collect();
    let ix = index(&items, policy.max_posting.max(2));
    let bands = embedding_bands(&items, policy.max_posting.max(2));

    // (a, b, similarity) with a < b.
    let mut edges: Vec<(usize, usize, f64)> = Vec::new();
    let mut votes: HashMap<usize, f64> = HashMap::new();
    for a in 0..items.len() {
        votes.clear();
        for (t, _) in &ix.vectors[a] {
            for &b in &ix.postings[*t] {
                if b > a {
                    *votes.entry(b).or_default() += ix.idf[*t];
                }
            }
        }
        let mut candidates: Vec<(usize, f64)> = votes.iter().map(|(b, v)| (*b, *v)).collect();
        candidates.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        candidates.truncate(policy.candidates_per_issue);
        // Issues whose embeddings fall in the same buckets, most bands shared first: they may
        // share no word at all.
        if let Some(bands) = &bands {
            let mut shared: HashMap<usize, usize> = HashMap::new();
            for key in &bands.keys[a] {
                for &b in bands.buckets.get(key).map(Vec::as_slice).unwrap_or(&[]) {
                    if b > a {
                        *shared.entry(b).or_default() += 1;
                    }
                }
            }
            let mut by_embedding: Vec<(usize, usize)> = shared.into_iter().collect();
            by_embedding.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
            for (b, _) in by_embedding.into_iter().take(policy.candidates_per_issue) {
                if !candidates.iter().any(|(c, _)| *c == b) {
                    candidates.push((b, 0.0));
                }
            }
        }
        for (b, _) in candidates {
            let (sim, threshold) = match (&items[a].embedding, &items[b].embedding) {
                (Some(x), Some(y)) => (cosine(x, y), policy.embedding_threshold),
                _ => (
                    sparse_cosine(&ix.vectors[a], &ix.vectors[b]),
                    policy.threshold,
                ),
            };
            if sim >= threshold {
                edges.push((a, b, sim));
            }
        }
    }

    let mut uf = UnionFind((0..items.len()).collect());
    for (a, b, _) in &edges {
        uf.union(*a, *b);
    }
    // root → (members, sum of edge similarities, edge count)
    let mut groups: HashMap<usize, (Vec<usize>, f64, usize)> = HashMap::new();
    for (a, _, s) in &edges {
        let g = groups.entry(uf.find(*a)).or_default();
        g.1 += s;
        g.2 += 1;
    }
    for m in 0..items.len() {
        let root = uf.find(m);
        if let Some(g) = groups.get_mut(&root) {
            g.0.push(m);
        }
    }
    let mut clusters: Vec<Cluster> = groups
        .into_iter()
        .map(|(root, (members, sum, count))| {
            let canon = items[root];
            let duplicates = members
                .iter()
                .filter(|&&m| m != root)
                .map(|&m| {
                    let direct = edges
                        .iter()
                        .find(|(a, b, _)| (*a == root && *b == m) || (*a == m && *b == root))
                        .map(|e| e.2);
                    let similarity = direct.unwrap_or_else(|| {
                        edges
                            .iter()
                            .filter(|(a, b, _)| *a == m || *b == m)
                            .map(|e| e.2)
                            .fold(0.0, f64::max)
                    });
                    let words = shared_terms(&ix, &ix.vectors[root], &ix.vectors[m], 5);
                    let how = if items[root].embedding.is_some() && items[m].embedding.is_some() {
                        "by embedding"
                    } else {
                        "by wording"
                    };
                    let reason = if words.is_empty() {
                        format!(
                            "{:.0}% similar to {} {how}",
                            similarity * 100.0,
                            canon.identifier
                        )
                    } else {
                        format!(
                            "{:.0}% similar to {} {how} (shared: {})",
                            similarity * 100.0,
                            canon.identifier,
                            words.join(", ")
                        )
                    };
                    Duplicate {
                        id: items[m].id,
                        identifier: items[m].identifier.clone(),
                        title: items[m].title.clone(),
                        similarity,
                        reason,
                    }
                })
                .collect();
            Cluster {
                canonical_id: canon.id,
                canonical: canon.identifier.clone(),
                canonical_title: canon.title.clone(),
                duplicates,
                keep_separate: Vec::new(),
                average_similarity: sum / count.max(1) as f64,
            }
        })
        .collect();
    clusters.sort_by(|a, b| {
        b.duplicates
            .len()
            .cmp(&a.duplicates.len())
            .then(b.average_similarity.total_cmp(&a.average_similarity))
            .then(a.canonical.cmp(&b.canonical))
    });
    clusters.truncate(policy.max_clusters);
    clusters
}

/// The question to an LLM reviewing one cluster: members numbered from 1 (title and the first
/// 300 characters of the description); the answer is strict JSON.
pub fn review_prompt(
    cluster: &Cluster,
    descriptions: &HashMap<IssueId, String>,
) -> (String, String) {
    let system = "You review clusters of issues that a similarity search believes are duplicates. \
        Decide which issue should stay (the canonical one: usually the clearest or oldest), which are \
        true duplicates of it, and which are related but distinct work that must stay open. Answer \
        with JSON only: {\"canonical\": <number>, \"duplicates\": [{\"number\": <number>, \"reason\": \
        \"<one sentence>\"}], \"keep_separate\": [<number>]}."
        .to_string();
    let mut text = String::from("Issues in this cluster:\n");
    let members = std::iter::once((
        cluster.canonical_id,
        &cluster.canonical,
        &cluster.canonical_title,
    ))
    .chain(
        cluster
            .duplicates
            .iter()
            .map(|d| (d.id, &d.identifier, &d.title)),
    );
    for (n, (id, identifier, title)) in members.enumerate() {
        let desc: String = descriptions
            .get(&id)
            .map(|d| d.chars().take(300).collect())
            .unwrap_or_default();
        text.push_str(&format!("\n{}. {identifier}: {title}\n{desc}\n", n + 1));
    }
    (system, text)
}

#[derive(Debug, Deserialize)]
struct ReviewAnswer {
    canonical: usize,
    #[serde(default)]
    duplicates: Vec<ReviewedDuplicate>,
}

#[derive(Debug, Deserialize)]
struct ReviewedDuplicate {
    number: usize,
    #[serde(default)]
    reason: Option<String>,
}

/// Applies an LLM's review to a cluster: the canonical issue it chose, only the duplicates it
/// confirmed (with its reasons), every other member kept separate (so the model's
/// `keep_separate` list needs no reading: what it does not confirm stays open). Numbers outside the cluster are dropped;
/// an answer that is not the JSON asked for leaves the cluster as found (`None`).
pub fn parse_review(cluster: &Cluster, answer: &str) -> Option<Cluster> {
    let start = answer.find('{')?;
    let end = answer.rfind('}')?;
    let parsed: ReviewAnswer = serde_json::from_str(answer.get(start..=end)?).ok()?;
    let members: Vec<(IssueId, String, String, f64)> = std::iter::once((
        cluster.canonical_id,
        cluster.canonical.clone(),
        cluster.canonical_title.clone(),
        1.0,
    ))
    .chain(
        cluster
            .duplicates
            .iter()
            .map(|d| (d.id, d.identifier.clone(), d.title.clone(), d.similarity)),
    )
    .collect();
    let member = |n: usize| n.checked_sub(1).and_then(|i| members.get(i));
    let (canon_id, canon_ident, canon_title, _) = member(parsed.canonical)?.clone();
    let mut duplicates = Vec::new();
    for d in &parsed.duplicates {
        let Some((id, identifier, title, similarity)) = member(d.number) else {
            continue;
        };
        if *id == canon_id || duplicates.iter().any(|x: &Duplicate| x.id == *id) {
            continue;
        }
        duplicates.push(Duplicate {
            id: *id,
            identifier: identifier.clone(),
            title: title.clone(),
            similarity: *similarity,
            reason: d
                .reason
                .clone()
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| format!("confirmed duplicate of {canon_ident}")),
        });
    }
    let keep_separate = members
        .iter()
        .filter(|(id, ..)| *id != canon_id && !duplicates.iter().any(|d| d.id == *id))
        .map(|(_, ident, ..)| ident.clone())
        .collect::<Vec<_>>();
    Some(Cluster {
        canonical_id: canon_id,
        canonical: canon_ident,
        canonical_title: canon_title,
        duplicates,
        keep_separate,
        average_similarity: cluster.average_similarity,
    })
}

#[cfg(test)]
mod tests;
