//! SearchStore: lexical search over title, description and comments; similar issues; optional
//! embeddings compared by cosine similarity.

use super::support::*;
use crate::issue::{NewComment, NewIssue};

pub(super) fn cases() -> Vec<Case> {
    cases!("search":
        search_ranks_title_over_description_and_finds_comments,
        search_is_scoped_to_the_workspace_and_ignores_wordless_queries,
        search_follows_edits_and_deletes,
        search_pages_are_the_head_of_the_full_ranking,
        similar_issues_excludes_the_issue_itself,
        embeddings_rank_by_cosine_and_replace,
    )
}

async fn create(
    s: &dyn Store,
    ws: crate::ids::WorkspaceId,
    title: &str,
    description: &str,
) -> crate::issue::Issue {
    let mut n = NewIssue::titled(title);
    n.description = (!description.is_empty()).then(|| description.to_string());
    s.create_issue(ws, n, &actor(), t0(), &Default::default())
        .await
        .expect("create_issue")
}

fn idents(hits: &[crate::search::SearchHit]) -> Vec<String> {
    hits.iter().map(|h| h.issue.identifier.clone()).collect()
}

async fn search_ranks_title_over_description_and_finds_comments(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let in_desc = create(s, ws.id, "Checkout is slow", "The refund button times out").await;
    let in_title = create(s, ws.id, "Refund fails for EU cards", "").await;
    let unrelated = create(s, ws.id, "Login page typo", "Wrong label").await;
    let in_comment = create(s, ws.id, "Billing export", "CSV columns").await;
    s.add_comment(
        in_comment.id,
        NewComment {
            author: None,
            body: "customer asked about a refund".into(),
        },
        &actor(),
        mins(1),
        &Default::default(),
    )
    .await
    .expect("add_comment");

    let hits = s.search_issues(ws.id, "refund", 10).await.expect("search");
    let found = idents(&hits);
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(
        found[0], in_title.identifier,
        "a title match ranks first: {found:?}"
    );
    assert!(found.contains(&in_desc.identifier) && found.contains(&in_comment.identifier));
    assert!(!found.contains(&unrelated.identifier));
    assert!(
        hits.windows(2).all(|w| w[0].score >= w[1].score),
        "best first"
    );
    assert!(hits.iter().all(|h| h.score > 0.0));
    // Case-insensitive, and the limit holds.
    assert_eq!(
        s.search_issues(ws.id, "REFUND", 1)
            .await
            .expect("search")
            .len(),
        1
    );
    // Several words: an issue matching more of them ranks higher.
    let both = s
        .search_issues(ws.id, "refund cards", 10)
        .await
        .expect("search");
    assert_eq!(both[0].issue.id, in_title.id);
}

async fn search_is_scoped_to_the_workspace_and_ignores_wordless_queries(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let other = s
        .ensure_workspace("Other", "OTHER", t0())
        .await
        .expect("ensure_workspace");
    create(s, ws.id, "Webhook signature mismatch", "").await;
    create(s, other.id, "Webhook signature mismatch elsewhere", "").await;
    let hits = s.search_issues(ws.id, "webhook", 10).await.expect("search");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].issue.workspace_id, ws.id);
    assert!(
        s.search_issues(ws.id, "  ", 10)
            .await
            .expect("search")
            .is_empty()
    );
    assert!(
        s.search_issues(ws.id, "!!! ?? -", 10)
            .await
            .expect("search")
            .is_empty()
    );
    // Operators of full-text syntaxes are plain text here, never an error.
    for q in [
        "\"unbalanced",
        "a AND OR NOT",
        "x:* | y & !z",
        "NEAR(a b)",
        "'; DROP TABLE x; --",
    ] {
        s.search_issues(ws.id, q, 10)
            .await
            .unwrap_or_else(|e| panic!("query {q:?} failed: {e}"));
    }
}

/// Many hits with tied scores, in two workspaces: a page of `limit` is exactly the head of the
/// full ranking (best first, ties newest first), and only the workspace's issues count.
async fn search_pages_are_the_head_of_the_full_ranking(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let other = s
        .ensure_workspace("Other", "OTHER", t0())
        .await
        .expect("ensure_workspace");
    let mut matching = Vec::new();
    for i in 0..24 {
        let (title, description) = match i % 4 {
            0 => (format!("checkout fails for tenant {i}"), String::new()),
            1 => (
                format!("invoice totals drift {i}"),
                format!("seen after checkout {i}"),
            ),
            2 => (format!("checkout checkout retry loop {i}"), String::new()),
            _ => (format!("login page typo {i}"), String::new()),
        };
        let issue = create(s, ws.id, &title, &description).await;
        if i % 4 != 3 {
            matching.push(issue.identifier);
        }
        create(s, other.id, &title, &description).await;
    }
    let full = s
        .search_issues(ws.id, "checkout", 100)
        .await
        .expect("search");
    let mut found = idents(&full);
    assert!(full.iter().all(|h| h.issue.workspace_id == ws.id));
    assert!(
        full.windows(2).all(|w| w[0].score > w[1].score
            || (w[0].score == w[1].score && w[0].issue.number > w[1].issue.number)),
        "best first, ties newest first: {:?}",
        full.iter()
            .map(|h| (h.issue.number, h.score))
            .collect::<Vec<_>>()
    );
    found.sort();
    matching.sort();
    assert_eq!(found, matching);
    for limit in [1, 5, 7, 17] {
        let page = s
            .search_issues(ws.id, "checkout", limit)
            .await
            .expect("search");
        assert_eq!(idents(&page), idents(&full[..limit]), "limit {limit}");
        let scores: Vec<f64> = page.iter().map(|h| h.score).collect();
        let head: Vec<f64> = full[..limit].iter().map(|h| h.score).collect();
        assert_eq!(scores, head, "limit {limit}");
    }
}

async fn search_follows_edits_and_deletes(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = create(s, ws.id, "Queue backlog grows", "").await;
    assert!(
        s.search_issues(ws.id, "deadlock", 10)
            .await
            .expect("search")
            .is_empty()
    );
    let patch = crate::issue::IssuePatch {
        title: Some("Worker deadlock".into()),
        ..Default::default()
    };
    s.update_issue(
        i.id,
        IssueUpdate {
            outbox: Default::default(),
            patch,
            history: vec![],
            expected_version: None,
            now: mins(1),
        },
    )
    .await
    .expect("update_issue");
    assert_eq!(
        idents(
            &s.search_issues(ws.id, "deadlock", 10)
                .await
                .expect("search")
        ),
        vec![i.identifier.clone()]
    );
    assert!(
        s.search_issues(ws.id, "backlog", 10)
            .await
            .expect("search")
            .is_empty(),
        "the old title is gone from the index"
    );
    s.delete_issue(i.id, mins(0), &Default::default())
        .await
        .expect("delete_issue");
    assert!(
        s.search_issues(ws.id, "deadlock", 10)
            .await
            .expect("search")
            .is_empty()
    );
}

async fn similar_issues_excludes_the_issue_itself(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let a = create(
        s,
        ws.id,
        "Stripe webhook signature invalid",
        "Signature verification fails for Stripe events",
    )
    .await;
    let b = create(s, ws.id, "Stripe webhook retries pile up", "").await;
    let c = create(s, ws.id, "Dark mode colours", "Contrast too low").await;
    let hits = s.similar_issues(a.id, 5).await.expect("similar_issues");
    let found = idents(&hits);
    assert!(!found.contains(&a.identifier), "never itself: {found:?}");
    assert_eq!(found.first(), Some(&b.identifier), "{found:?}");
    assert!(!found.contains(&c.identifier), "{found:?}");
    assert_eq!(
        s.similar_issues(crate::ids::IssueId::new(), 5)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
}

async fn embeddings_rank_by_cosine_and_replace(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let a = create(s, ws.id, "a", "").await;
    let b = create(s, ws.id, "b", "").await;
    let c = create(s, ws.id, "c", "").await;
    s.set_embedding(a.id, "m1", &[1.0, 0.0, 0.0])
        .await
        .expect("set_embedding");
    s.set_embedding(b.id, "m1", &[0.7, 0.7, 0.0])
        .await
        .expect("set_embedding");
    s.set_embedding(c.id, "m2", &[1.0, 0.0, 0.0])
        .await
        .expect("set_embedding");
    // Of the same model but another size (stored before the dimensions changed): no neighbour.
    let d = create(s, ws.id, "d", "").await;
    s.set_embedding(d.id, "m1", &[1.0, 0.1])
        .await
        .expect("set_embedding");
    let hits = s
        .nearest_issues(ws.id, "m1", &[1.0, 0.1, 0.0], None, 10)
        .await
        .expect("nearest");
    assert_eq!(
        idents(&hits),
        vec![a.identifier.clone(), b.identifier.clone()],
        "same model and size only, best first"
    );
    assert!(
        hits[0].score > 0.99 && hits[0].score <= 1.0 + 1e-9,
        "{}",
        hits[0].score
    );
    let excl = s
        .nearest_issues(ws.id, "m1", &[1.0, 0.0, 0.0], Some(a.id), 10)
        .await
        .expect("nearest");
    assert_eq!(idents(&excl), vec![b.identifier.clone()]);
    // Replacing moves the issue.
    s.set_embedding(a.id, "m1", &[0.0, 0.0, 1.0])
        .await
        .expect("set_embedding");
    let hits = s
        .nearest_issues(ws.id, "m1", &[1.0, 0.1, 0.0], None, 1)
        .await
        .expect("nearest");
    assert_eq!(idents(&hits), vec![b.identifier.clone()]);
    assert_eq!(
        s.set_embedding(a.id, "m1", &[]).await.unwrap_err().field(),
        Some("embedding")
    );
    assert_eq!(
        s.set_embedding(a.id, "m1", &[f32::NAN])
            .await
            .unwrap_err()
            .field(),
        Some("embedding")
    );
    assert_eq!(
        s.set_embedding(crate::ids::IssueId::new(), "m1", &[1.0])
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
}
