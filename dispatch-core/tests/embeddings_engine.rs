//! Embeddings in the engine (in-memory store, the toy embedder of
//! `testkit::fake_openai_embed`): computed by the worker off the request path, a failing
//! embedder never failing an issue write; hybrid search, similar issues, PR matching and dedup
//! using the stored vectors.

use dispatch_core::engine::{DedupRequest, IssueChanges, PullRequestInfo};
use dispatch_core::issue::{Actor, NewIssue};
use dispatch_core::memory::MemoryStore;
use dispatch_core::pr_match::MatchMethod;
use dispatch_core::testkit::fake_openai_embed::ToyEmbedder;
use dispatch_core::testkit::{FakeRunner, ManualClock};
use dispatch_core::{Dispatch, ErrorKind};
use std::sync::Arc;
use std::sync::atomic::Ordering;

async fn engine(embedder: Option<Arc<ToyEmbedder>>) -> (Dispatch, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at_default());
    let mut b =
        Dispatch::builder(Arc::new(MemoryStore::new()), FakeRunner::new()).clock(clock.clone());
    if let Some(e) = embedder {
        b = b.embedder(e);
    }
    (b.build().await.unwrap(), clock)
}

fn user() -> Actor {
    Actor::user("ann")
}

async fn issue(d: &Dispatch, title: &str, description: Option<&str>) -> String {
    let mut n = NewIssue::titled(title);
    n.description = description.map(str::to_string);
    d.create_issue(n, &user()).await.unwrap().identifier
}

fn idents(hits: &[dispatch_core::search::SearchHit]) -> Vec<String> {
    hits.iter().map(|h| h.issue.identifier.clone()).collect()
}

#[tokio::test]
async fn issue_writes_never_call_the_embedder_and_the_worker_catches_up() {
    let toy = Arc::new(ToyEmbedder::new(256));
    toy.failing.store(true, Ordering::SeqCst);
    let (d, clock) = engine(Some(toy.clone())).await;
    // The API is down: issue writes still succeed, and nothing was embedded on their path.
    let login = issue(&d, "Login fails for users", Some("since the SSO change")).await;
    let _csv = issue(&d, "Export to CSV drops the header row", None).await;
    assert_eq!(toy.texts.load(Ordering::SeqCst), 0);
    assert_eq!(d.store().owed_embedding_count().await.unwrap(), 2);
    let r = d.embed_step().await.unwrap();
    assert_eq!((r.claimed, r.embedded, r.deferred), (2, 0, 2));
    // Deferred: nothing due until the backoff passed.
    toy.failing.store(false, Ordering::SeqCst);
    assert_eq!(d.embed_step().await.unwrap().claimed, 0);
    clock.advance(chrono::Duration::minutes(2));
    let r = d.embed_step().await.unwrap();
    assert_eq!((r.claimed, r.embedded), (2, 2));
    assert_eq!(d.store().owed_embedding_count().await.unwrap(), 0);

    // An edit of the text owes a new vector; a move does not.
    d.update_issue(
        login.as_str(),
        IssueChanges {
            priority: Some(dispatch_core::issue::Priority::P1),
            ..Default::default()
        },
        &user(),
    )
    .await
    .unwrap();
    assert_eq!(d.store().owed_embedding_count().await.unwrap(), 0);
    d.update_issue(
        login.as_str(),
        IssueChanges {
            title: Some("Login fails for SSO users".into()),
            ..Default::default()
        },
        &user(),
    )
    .await
    .unwrap();
    assert_eq!(d.store().owed_embedding_count().await.unwrap(), 1);
    assert_eq!(d.embed_step().await.unwrap().embedded, 1);
}

#[tokio::test]
async fn hybrid_search_finds_what_keywords_miss_and_similar_issues_use_stored_vectors() {
    let toy = Arc::new(ToyEmbedder::new(256));
    let (d, _) = engine(Some(toy.clone())).await;
    let login = issue(&d, "Login fails for users", Some("since the SSO change")).await;
    let csv = issue(&d, "Export to CSV drops the header row", None).await;
    let signin = issue(&d, "signin broken for customers", None).await;
    while d.embed_step().await.unwrap().claimed > 0 {}

    let keywords = d.search_keywords("signin broken", 10).await.unwrap();
    assert_eq!(idents(&keywords), vec![signin.clone()]);
    let hybrid = d.search("signin broken", 10).await.unwrap();
    let found = idents(&hybrid);
    assert_eq!(found[0], signin, "in both lists: first");
    assert!(found.contains(&login), "by meaning: {found:?}");
    assert!(!found.contains(&csv), "unrelated: {found:?}");

    let before = toy.texts.load(Ordering::SeqCst);
    let similar = d.similar_issues(login.as_str(), 5).await.unwrap();
    assert_eq!(idents(&similar)[0], signin);
    assert_eq!(
        toy.texts.load(Ordering::SeqCst),
        before,
        "similar issues embed nothing"
    );

    // The embedder failing: search answers lexically.
    toy.failing.store(true, Ordering::SeqCst);
    let hits = d.search("signin broken", 10).await.unwrap();
    assert_eq!(idents(&hits), vec![signin]);
    assert_eq!(
        d.search(" ", 10).await.unwrap_err().kind,
        ErrorKind::InvalidInput { field: "q".into() }
    );
}

#[tokio::test]
async fn a_pr_is_matched_by_meaning_when_words_miss() {
    let toy = Arc::new(ToyEmbedder::new(256));
    let (d, _) = engine(Some(toy)).await;
    let login = issue(&d, "Login fails for users", Some("after the SSO migration")).await;
    let _csv = issue(&d, "Export to CSV drops the header row", None).await;
    while d.embed_step().await.unwrap().claimed > 0 {}
    let pr = PullRequestInfo {
        number: 7,
        title: Some("Fix signin broken for customers".into()),
        body: Some("Authentication failure after SSO migration".into()),
        head_branch: Some("fix/signin".into()),
        base_branch: Some("main".into()),
        ..Default::default()
    };
    let m = d.match_pr(&pr).await.unwrap();
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].identifier, login);
    assert_eq!(m[0].method, MatchMethod::Similarity);

    // Without embeddings the same PR matches nothing by words alone.
    let (plain, _) = engine(None).await;
    issue(
        &plain,
        "Login fails for users",
        Some("after the SSO migration"),
    )
    .await;
    issue(&plain, "Export to CSV drops the header row", None).await;
    assert!(plain.match_pr(&pr).await.unwrap().is_empty());
}

#[tokio::test]
async fn dedup_compares_stored_embeddings() {
    let toy = Arc::new(ToyEmbedder::new(256));
    let (d, _) = engine(Some(toy)).await;
    let login = issue(&d, "Login fails for users", None).await;
    let signin = issue(&d, "signin broken for customers", None).await;
    issue(&d, "Export to CSV drops the header row", None).await;
    while d.embed_step().await.unwrap().claimed > 0 {}
    let r = d
        .deduplicate(DedupRequest::default(), &Actor::system("test"))
        .await
        .unwrap();
    assert_eq!(r.issues_with_embeddings, 3);
    assert_eq!(r.clusters.len(), 1, "{r:?}");
    assert_eq!(r.clusters[0].canonical, login);
    assert_eq!(r.clusters[0].duplicates[0].identifier, signin);
    assert!(r.clusters[0].duplicates[0].reason.contains("by embedding"));
}
