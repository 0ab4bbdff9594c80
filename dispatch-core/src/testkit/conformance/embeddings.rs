//! EmbeddingStore: issues owe an embedding from their creation and from every change of title or
//! description, until a claim of the current generation is settled; failures back off.

use super::support::*;
use crate::ids::IssueId;
use crate::issue::{IssuePatch, Priority};

pub(super) fn cases() -> Vec<Case> {
    cases!("embeddings":
        created_issues_owe_an_embedding_until_settled,
        an_edit_during_a_claim_keeps_the_issue_owed,
        only_title_and_description_changes_owe_one,
        a_failure_defers_the_claim_and_counts_an_attempt,
        vectors_of_another_model_or_size_are_owed_again,
        a_deleted_issue_owes_nothing,
    )
}

fn ids(owed: &[crate::embedding::OwedEmbedding]) -> Vec<IssueId> {
    let mut v: Vec<IssueId> = owed.iter().map(|o| o.issue.id).collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<IssueId>) -> Vec<IssueId> {
    v.sort();
    v
}

async fn created_issues_owe_an_embedding_until_settled(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let a = issue(s, ws.id, "Login fails").await;
    let b = issue(s, ws.id, "Export drops rows").await;
    let c = s
        .ingest_error(ws.id, draft("loki", "fp-1", 1, t0()))
        .await
        .expect("ingest")
        .issue;
    assert_eq!(s.owed_embedding_count().await.expect("count"), 3);
    let claimed = s
        .claim_owed_embeddings(t0(), Duration::minutes(5), 2)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2, "the limit bounds a claim");
    assert!(claimed.iter().all(|o| o.attempts == 0));
    let rest = s
        .claim_owed_embeddings(t0(), Duration::minutes(5), 10)
        .await
        .expect("claim");
    assert_eq!(rest.len(), 1, "leased ones are skipped");
    let mut all = ids(&claimed);
    all.extend(ids(&rest));
    assert_eq!(sorted(all), sorted(vec![a.id, b.id, c.id]));
    let first = &claimed[0];
    assert!(
        s.settle_embedding(first.issue.id, first.generation, "m1", &[1.0, 0.0])
            .await
            .expect("settle")
    );
    assert_eq!(s.owed_embedding_count().await.expect("count"), 2);
    let stored = s
        .embeddings_of(&[a.id, b.id, c.id], "m1")
        .await
        .expect("embeddings_of");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[&first.issue.id], vec![1.0, 0.0]);
    assert!(
        s.embeddings_of(&[first.issue.id], "m2")
            .await
            .expect("embeddings_of")
            .is_empty()
    );
    // After the lease, the unsettled ones are due again; the settled one is not.
    let again = s
        .claim_owed_embeddings(mins(6), Duration::minutes(5), 10)
        .await
        .expect("claim");
    assert_eq!(again.len(), 2);
    assert!(!ids(&again).contains(&first.issue.id));
    assert_eq!(
        s.settle_embedding(first.issue.id, first.generation, "m1", &[f32::NAN])
            .await
            .unwrap_err()
            .field(),
        Some("embedding")
    );
}

async fn an_edit_during_a_claim_keeps_the_issue_owed(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let a = issue(s, ws.id, "Login fails").await;
    let claimed = s
        .claim_owed_embeddings(t0(), Duration::minutes(5), 10)
        .await
        .expect("claim");
    let old = claimed[0].generation;
    update(
        s,
        a.id,
        IssuePatch {
            title: Some("Login fails for SSO users".into()),
            ..IssuePatch::default()
        },
        mins(1),
    )
    .await;
    assert!(
        !s.settle_embedding(a.id, old, "m1", &[1.0, 0.0])
            .await
            .expect("settle"),
        "edited since the claim: still owed"
    );
    assert_eq!(
        s.embeddings_of(&[a.id], "m1").await.expect("read").len(),
        1,
        "the vector is stored meanwhile"
    );
    // Due at once, not after the lease.
    let again = s
        .claim_owed_embeddings(mins(1), Duration::minutes(5), 10)
        .await
        .expect("claim");
    assert_eq!(ids(&again), vec![a.id]);
    assert!(again[0].generation > old);
    assert_eq!(again[0].issue.title, "Login fails for SSO users");
    assert!(
        s.settle_embedding(a.id, again[0].generation, "m1", &[0.0, 1.0])
            .await
            .expect("settle")
    );
    assert_eq!(s.owed_embedding_count().await.expect("count"), 0);
    assert_eq!(
        s.embeddings_of(&[a.id], "m1").await.expect("read")[&a.id],
        vec![0.0, 1.0]
    );
}

async fn only_title_and_description_changes_owe_one(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let a = issue(s, ws.id, "Login fails").await;
    let c = s
        .claim_owed_embeddings(t0(), Duration::minutes(5), 10)
        .await
        .expect("claim");
    assert!(
        s.settle_embedding(a.id, c[0].generation, "m1", &[1.0])
            .await
            .expect("settle")
    );
    update(
        s,
        a.id,
        IssuePatch {
            priority: Some(Priority::P1),
            title: Some("Login fails".into()),
            ..IssuePatch::default()
        },
        mins(1),
    )
    .await;
    assert_eq!(
        s.owed_embedding_count().await.expect("count"),
        0,
        "same title, other fields: nothing owed"
    );
    update(
        s,
        a.id,
        IssuePatch {
            description: Some(Some("Since the SSO change".into())),
            ..IssuePatch::default()
        },
        mins(2),
    )
    .await;
    assert_eq!(s.owed_embedding_count().await.expect("count"), 1);
}

async fn a_failure_defers_the_claim_and_counts_an_attempt(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let a = issue(s, ws.id, "Login fails").await;
    let c = s
        .claim_owed_embeddings(t0(), Duration::minutes(5), 10)
        .await
        .expect("claim");
    s.defer_embedding(a.id, c[0].generation, mins(10))
        .await
        .expect("defer");
    assert!(
        s.claim_owed_embeddings(mins(9), Duration::minutes(5), 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let again = s
        .claim_owed_embeddings(mins(10), Duration::minutes(5), 10)
        .await
        .expect("claim");
    assert_eq!(ids(&again), vec![a.id]);
    assert_eq!(again[0].attempts, 1);
    // A stale generation's failure changes nothing.
    update(
        s,
        a.id,
        IssuePatch {
            title: Some("Login fails again".into()),
            ..IssuePatch::default()
        },
        mins(11),
    )
    .await;
    s.defer_embedding(a.id, again[0].generation, mins(100))
        .await
        .expect("defer");
    let now = s
        .claim_owed_embeddings(mins(11), Duration::minutes(5), 10)
        .await
        .expect("claim");
    assert_eq!(ids(&now), vec![a.id]);
    assert_eq!(now[0].attempts, 0, "an edit starts over");
}

async fn vectors_of_another_model_or_size_are_owed_again(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let a = issue(s, ws.id, "Login fails").await;
    let b = issue(s, ws.id, "Export drops rows").await;
    for o in s
        .claim_owed_embeddings(t0(), Duration::minutes(5), 10)
        .await
        .expect("claim")
    {
        assert!(
            s.settle_embedding(o.issue.id, o.generation, "m1", &[1.0, 0.0, 0.0])
                .await
                .expect("settle")
        );
    }
    assert_eq!(s.owe_embeddings_not_of("m1", 3).await.expect("owe"), 0);
    assert_eq!(s.owe_embeddings_not_of("m1", 4).await.expect("owe"), 2);
    assert_eq!(
        s.owe_embeddings_not_of("m2", 3).await.expect("owe"),
        0,
        "owed already"
    );
    let c = s
        .claim_owed_embeddings(mins(1), Duration::minutes(5), 10)
        .await
        .expect("claim");
    assert_eq!(ids(&c), sorted(vec![a.id, b.id]));
}

async fn a_deleted_issue_owes_nothing(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let a = issue(s, ws.id, "Login fails").await;
    let c = s
        .claim_owed_embeddings(t0(), Duration::minutes(5), 10)
        .await
        .expect("claim");
    s.delete_issue(a.id, mins(1), &Default::default())
        .await
        .expect("delete");
    assert_eq!(s.owed_embedding_count().await.expect("count"), 0);
    assert_eq!(
        s.settle_embedding(a.id, c[0].generation, "m1", &[1.0])
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
}
