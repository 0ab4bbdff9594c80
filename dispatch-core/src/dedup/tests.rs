use super::*;
use crate::testkit::dedup_corpus::dedup_corpus;
use std::collections::HashSet;

fn item(n: i64, title: &str, description: &str) -> DedupItem {
    DedupItem {
        id: IssueId::new(),
        identifier: format!("DISPATCH-{n}"),
        number: n,
        title: title.into(),
        description: description.into(),
        embedding: None,
    }
}

#[test]
fn near_duplicates_cluster_under_the_oldest_and_distinct_issues_stay_out() {
    let items = vec![
        item(
            7,
            "Stripe card declined for customer on checkout",
            "Checkout fails: Stripe card_declined for customer cus_123 when paying the invoice",
        ),
        item(
            3,
            "Checkout: Stripe card declined for customer",
            "Stripe returns card_declined for customer cus_999 when paying an invoice at checkout",
        ),
        item(
            5,
            "Search index rebuild times out nightly",
            "The nightly search index rebuild job times out after 30 minutes",
        ),
        item(
            9,
            "Avatar upload shows a blank thumbnail",
            "Uploading an avatar on mobile shows a blank thumbnail",
        ),
    ];
    let clusters = find_clusters(
        &items,
        &DedupPolicy {
            threshold: 0.6,
            ..DedupPolicy::default()
        },
    );
    assert_eq!(clusters.len(), 1, "{clusters:#?}");
    let c = &clusters[0];
    assert_eq!(c.canonical, "DISPATCH-3", "the oldest issue is canonical");
    assert_eq!(c.duplicates.len(), 1);
    assert_eq!(c.duplicates[0].identifier, "DISPATCH-7");
    assert!(
        c.duplicates[0].reason.contains("DISPATCH-3"),
        "{}",
        c.duplicates[0].reason
    );
    assert!(
        c.duplicates[0].reason.contains("card"),
        "{}",
        c.duplicates[0].reason
    );
    assert!(c.average_similarity >= 0.6 && c.average_similarity <= 1.0);
}

#[test]
fn nothing_clusters_below_the_threshold() {
    let items = vec![
        item(1, "Stripe card declined on checkout", "card declined"),
        item(2, "Stripe webhook signature invalid", "webhook signature"),
    ];
    assert!(find_clusters(&items, &DedupPolicy::default()).is_empty());
}

#[test]
fn embeddings_decide_when_both_issues_have_one() {
    let mut a = item(
        1,
        "Export button does nothing",
        "clicking export has no effect",
    );
    let mut b = item(
        2,
        "CSV download broken",
        "the download of reports fails silently export",
    );
    let c = item(
        3,
        "Unrelated title about export",
        "nothing in common export",
    );
    a.embedding = Some(vec![1.0, 0.0, 0.1]);
    b.embedding = Some(vec![0.98, 0.02, 0.1]);
    let clusters = find_clusters(&[a, b, c], &DedupPolicy::default());
    assert_eq!(clusters.len(), 1, "{clusters:#?}");
    assert_eq!(clusters[0].canonical, "DISPATCH-1");
    assert_eq!(clusters[0].duplicates[0].identifier, "DISPATCH-2");
    assert!(clusters[0].duplicates[0].reason.contains("by embedding"));
}

#[test]
fn a_word_in_every_issue_proposes_no_candidates() {
    // "error" is in every issue; with max_posting below the corpus size it proposes nobody,
    // so no pair is even scored and nothing clusters.
    let items: Vec<DedupItem> = (1..=30)
        .map(|n| {
            item(
                n,
                &format!("error alpha{n}"),
                &format!("error beta{n} gamma{n}"),
            )
        })
        .collect();
    let policy = DedupPolicy {
        threshold: 0.0,
        max_posting: 10,
        ..DedupPolicy::default()
    };
    assert!(find_clusters(&items, &policy).is_empty());
}

#[test]
fn planted_duplicates_in_two_thousand_issues_are_found_and_nothing_else() {
    let corpus = dedup_corpus(1_800, 80, 42);
    assert!(corpus.items.len() >= 2_000, "{}", corpus.items.len());
    // Distinct issues here share up to service and object (0.88 at most by wording); the
    // planted reports share their specifics (0.95 and more).
    let clusters = find_clusters(
        &corpus.items,
        &DedupPolicy {
            threshold: LEXICAL_THRESHOLD,
            max_clusters: 1_000,
            ..DedupPolicy::default()
        },
    );
    let group_of: std::collections::HashMap<IssueId, usize> = corpus
        .groups
        .iter()
        .enumerate()
        .flat_map(|(g, ids)| ids.iter().map(move |id| (*id, g)))
        .collect();
    // Precision: every cluster is one planted group, nothing distinct pulled in.
    for c in &clusters {
        let g = group_of.get(&c.canonical_id).copied();
        assert!(g.is_some(), "a distinct issue became canonical: {c:#?}");
        for d in &c.duplicates {
            assert_eq!(group_of.get(&d.id).copied(), g, "mixed cluster: {c:#?}");
        }
    }
    // Recall: every planted group is one cluster, whole.
    let found: HashSet<Vec<IssueId>> = clusters
        .iter()
        .map(|c| {
            let mut ids: Vec<IssueId> = std::iter::once(c.canonical_id)
                .chain(c.duplicates.iter().map(|d| d.id))
                .collect();
            ids.sort();
            ids
        })
        .collect();
    let mut missing = 0;
    for g in &corpus.groups {
        let mut ids = g.clone();
        ids.sort();
        if !found.contains(&ids) {
            missing += 1;
        }
    }
    assert_eq!(
        missing,
        0,
        "{missing} of {} planted groups not found whole",
        corpus.groups.len()
    );
}

fn cluster_of_three() -> Cluster {
    let items = vec![
        item(
            1,
            "Login loop on Safari after reset",
            "safari login loop reset password",
        ),
        item(
            2,
            "Safari login loop after password reset",
            "login loop in safari after reset",
        ),
        item(
            3,
            "Login loop Safari after reset again",
            "safari loop login reset password again",
        ),
    ];
    let c = find_clusters(
        &items,
        &DedupPolicy {
            threshold: 0.3,
            ..DedupPolicy::default()
        },
    );
    assert_eq!(c.len(), 1, "{c:#?}");
    assert_eq!(c[0].duplicates.len(), 2);
    c.into_iter().next().unwrap()
}

#[test]
fn a_review_picks_the_canonical_confirms_some_and_keeps_the_rest() {
    let c = cluster_of_three();
    let answer = r#"Here you go: {"canonical": 2, "duplicates": [{"number": 1, "reason": "same Safari loop"}, {"number": 9}, {"number": 2}], "keep_separate": [3]}"#;
    let r = parse_review(&c, answer).expect("a valid review");
    assert_eq!(r.canonical, "DISPATCH-2");
    assert_eq!(
        r.duplicates.len(),
        1,
        "out-of-range and canonical numbers dropped"
    );
    assert_eq!(r.duplicates[0].identifier, "DISPATCH-1");
    assert_eq!(r.duplicates[0].reason, "same Safari loop");
    assert_eq!(r.keep_separate, vec!["DISPATCH-3".to_string()]);
}

#[test]
fn an_unusable_review_leaves_the_cluster_as_found() {
    let c = cluster_of_three();
    assert!(parse_review(&c, "I think they are duplicates").is_none());
    assert!(parse_review(&c, r#"{"canonical": 0}"#).is_none());
    assert!(parse_review(&c, r#"{"canonical": 4, "duplicates": []}"#).is_none());
    let (system, text) = review_prompt(&c, &HashMap::new());
    assert!(system.contains("JSON"));
    assert!(
        text.contains("1. DISPATCH-1") && text.contains("3. DISPATCH-3"),
        "{text}"
    );
}

#[test]
fn embeddings_propose_duplicates_that_share_no_word() {
    use crate::testkit::fake_openai_embed::embedding;
    let texts = [
        (1, "Login fails for users", ""),
        (2, "signin broken for customers", ""),
        (3, "Export to CSV drops the header row", ""),
        (4, "Webhook retries pile up", "queue grows"),
    ];
    let items: Vec<DedupItem> = texts
        .iter()
        .map(|(n, t, d)| {
            let mut i = item(*n, t, d);
            i.embedding = Some(embedding(&format!("{t} {d}"), 256));
            i
        })
        .collect();
    let without: Vec<DedupItem> = items
        .iter()
        .cloned()
        .map(|mut i| {
            i.embedding = None;
            i
        })
        .collect();
    let policy = DedupPolicy {
        embedding_threshold: 0.6,
        ..DedupPolicy::default()
    };
    assert!(
        find_clusters(&without, &policy).is_empty(),
        "no shared words"
    );
    let clusters = find_clusters(&items, &policy);
    assert_eq!(clusters.len(), 1, "{clusters:?}");
    assert_eq!(clusters[0].canonical, "DISPATCH-1");
    assert_eq!(clusters[0].duplicates[0].identifier, "DISPATCH-2");
    assert!(clusters[0].duplicates[0].reason.contains("by embedding"));
}

#[test]
fn embedding_candidates_stay_bounded_per_issue() {
    // 300 identical vectors: one bucket per band holds them all, over `max_posting`, so it
    // proposes nobody; no pair is compared, nothing clusters (by embedding or wording).
    let items: Vec<DedupItem> = (0..300)
        .map(|n| {
            let mut i = item(n, &format!("t{n}"), "");
            i.embedding = Some(vec![1.0, 0.0, 0.0]);
            i
        })
        .collect();
    assert!(find_clusters(&items, &DedupPolicy::default()).is_empty());
}
