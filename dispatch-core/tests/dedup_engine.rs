//! `Dispatch::deduplicate` on the in-memory store: dry run changes nothing; execution cancels the
//! duplicates with cross-reference comments, keeps the close gate for error issues, and follows
//! an LLM's review when one is configured.

use dispatch_core::engine::DedupRequest;
use dispatch_core::event::ErrorEvent;
use dispatch_core::issue::{Actor, Issue, NewIssue, names};
use dispatch_core::memory::MemoryStore;
use dispatch_core::testkit::{FakeLlm, FakeRunner, ManualClock};
use dispatch_core::{Dispatch, Error};
use std::sync::Arc;

async fn dispatch(llm: Option<Arc<FakeLlm>>) -> Dispatch {
    let mut b = Dispatch::builder(Arc::new(MemoryStore::new()), FakeRunner::new())
        .clock(Arc::new(ManualClock::at_default()));
    if let Some(l) = llm {
        b = b.llm(l);
    }
    b.build().await.unwrap()
}

fn user() -> Actor {
    Actor::user("ann")
}

async fn issue(d: &Dispatch, title: &str, description: &str) -> Issue {
    let mut new = NewIssue::titled(title);
    new.description = Some(description.into());
    d.create_issue(new, &user()).await.unwrap()
}

async fn column_of(d: &Dispatch, i: &Issue) -> String {
    let i = d.get_issue(i.id).await.unwrap();
    d.columns()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == i.column_id)
        .unwrap()
        .name
}

/// Three reports of one checkout failure and an unrelated issue.
async fn seeded(d: &Dispatch) -> (Issue, Issue, Issue, Issue) {
    let a = issue(
        d,
        "Checkout: Stripe card declined for saved cards",
        "Paying with a saved card fails at checkout: Stripe answers card_declined for customer cus_1",
    )
    .await;
    let b = issue(
        d,
        "Stripe card declined at checkout for saved cards",
        "Checkout with a saved card fails, Stripe card_declined for customer cus_2 paying",
    )
    .await;
    let c = issue(
        d,
        "Saved cards: Stripe card declined at checkout",
        "Stripe card_declined when paying at checkout with a saved card, customer cus_3",
    )
    .await;
    let other = issue(
        d,
        "Nightly search index rebuild times out",
        "The search index job runs past 30 minutes and is killed",
    )
    .await;
    (a, b, c, other)
}

fn lenient() -> DedupRequest {
    DedupRequest {
        threshold: Some(0.5),
        ..DedupRequest::default()
    }
}

#[tokio::test]
async fn a_dry_run_proposes_the_oldest_as_canonical_and_changes_nothing() {
    let d = dispatch(None).await;
    let (a, b, c, other) = seeded(&d).await;
    let r = d.deduplicate(lenient(), &user()).await.unwrap();
    assert!(r.dry_run);
    assert_eq!(r.issues_scanned, 4);
    assert_eq!(r.clusters.len(), 1, "{r:#?}");
    assert_eq!(r.clusters[0].canonical, a.identifier);
    let mut dups: Vec<&str> = r.clusters[0]
        .duplicates
        .iter()
        .map(|x| x.identifier.as_str())
        .collect();
    dups.sort();
    assert_eq!(dups, vec![b.identifier.as_str(), c.identifier.as_str()]);
    assert_eq!(r.total_to_close(), 2);
    for i in [&a, &b, &c, &other] {
        assert_eq!(column_of(&d, i).await, names::BACKLOG);
        assert!(d.comments(i.id).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn execution_cancels_duplicates_with_comments_both_ways() {
    let d = dispatch(None).await;
    let (a, b, c, other) = seeded(&d).await;
    let r = d
        .deduplicate(
            DedupRequest {
                dry_run: false,
                ..lenient()
            },
            &user(),
        )
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.closed.len(), 2);
    assert_eq!(r.comments_added, 3);
    for dup in [&b, &c] {
        assert_eq!(column_of(&d, dup).await, names::CANCELED);
        let comments = d.comments(dup.id).await.unwrap();
        assert!(
            comments[0]
                .body
                .starts_with(&format!("Closed as duplicate of **{}**", a.identifier)),
            "{}",
            comments[0].body
        );
    }
    assert_eq!(column_of(&d, &a).await, names::BACKLOG);
    assert_eq!(column_of(&d, &other).await, names::BACKLOG);
    let canon = d.comments(a.id).await.unwrap();
    assert!(canon[0].body.starts_with("Dedup: 2 duplicate(s) closed"));
    // Nothing left to find in the open columns.
    let again = d.deduplicate(lenient(), &user()).await.unwrap();
    assert!(again.clusters.is_empty(), "{again:#?}");
}

#[tokio::test]
async fn an_error_issue_without_a_verified_fix_is_reported_not_closed() {
    let d = dispatch(None).await;
    let manual = issue(
        &d,
        "Card declined for customer at checkout charge",
        "Card declined for customer cus_123 at checkout charge-customer billing",
    )
    .await;
    let from_alert = d
        .ingest(ErrorEvent::new(
            "loki",
            "billing",
            "charge-customer",
            "Card declined for customer cus_123 at checkout",
        ))
        .await
        .unwrap()
        .issue;
    let r = d
        .deduplicate(
            DedupRequest {
                dry_run: false,
                threshold: Some(0.3),
                ..DedupRequest::default()
            },
            &user(),
        )
        .await
        .unwrap();
    assert_eq!(r.clusters.len(), 1, "{r:#?}");
    assert_eq!(r.clusters[0].canonical, manual.identifier);
    assert!(r.closed.is_empty());
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert!(r.errors[0].starts_with(&format!("{} was not closed", from_alert.identifier)));
    assert_ne!(column_of(&d, &from_alert).await, names::CANCELED);
}

#[tokio::test]
async fn the_llm_review_decides_what_is_closed() {
    let llm = FakeLlm::new("not json");
    let d = dispatch(Some(llm.clone())).await;
    let (a, b, c, _) = seeded(&d).await;
    // Members are numbered oldest first: a=1, b=2, c=3. The model keeps b, closes a, keeps c.
    llm.reply(r#"{"canonical": 2, "duplicates": [{"number": 1, "reason": "same saved-card decline"}], "keep_separate": [3]}"#);
    let r = d
        .deduplicate(
            DedupRequest {
                dry_run: false,
                ..lenient()
            },
            &user(),
        )
        .await
        .unwrap();
    assert_eq!(r.clusters_reviewed, 1);
    assert_eq!(r.clusters[0].canonical, b.identifier);
    assert_eq!(r.clusters[0].keep_separate, vec![c.identifier.clone()]);
    assert_eq!(r.closed, vec![a.identifier.clone()]);
    assert_eq!(column_of(&d, &a).await, names::CANCELED);
    assert_eq!(column_of(&d, &c).await, names::BACKLOG);
    let asked = llm.requests();
    assert_eq!(asked.len(), 1);
    assert!(format!("{:?}", asked[0].messages).contains(&a.identifier));
}

#[tokio::test]
async fn a_failed_review_keeps_the_cluster_as_found_and_says_so() {
    let llm = FakeLlm::new("not json");
    let d = dispatch(Some(llm.clone())).await;
    seeded(&d).await;
    llm.fail(Error::unavailable("overloaded"));
    let r = d.deduplicate(lenient(), &user()).await.unwrap();
    assert_eq!(r.clusters_reviewed, 0);
    assert_eq!(r.total_to_close(), 2);
    assert!(r.errors[0].contains("failed"), "{:?}", r.errors);
}

#[tokio::test]
async fn bad_arguments_name_their_field() {
    let d = dispatch(None).await;
    for (req, field) in [
        (
            DedupRequest {
                threshold: Some(1.5),
                ..DedupRequest::default()
            },
            "threshold",
        ),
        (
            DedupRequest {
                max_clusters: 0,
                ..DedupRequest::default()
            },
            "max_clusters",
        ),
    ] {
        let e = d.deduplicate(req, &user()).await.unwrap_err();
        assert_eq!(e.field(), Some(field));
    }
    let e = d
        .deduplicate(
            DedupRequest {
                columns: vec!["Nowhere".into()],
                ..DedupRequest::default()
            },
            &user(),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Nowhere"), "{e}");
}
