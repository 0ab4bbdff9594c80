//! PR ↔ issue matching in the engine (in-memory store, scripted LLM): identifiers first, then
//! lexical similarity, confirmed by the LLM when one is configured.

use dispatch_core::engine::{ColumnRef, PullRequestInfo};
use dispatch_core::issue::{Actor, NewIssue, names};
use dispatch_core::memory::MemoryStore;
use dispatch_core::pr::PrStatus;
use dispatch_core::pr_match::{LLM_CONFIRMED_CONFIDENCE, MatchMethod};
use dispatch_core::testkit::{FakeLlm, FakeRunner, ManualClock};
use dispatch_core::verify::MergedPr;
use dispatch_core::{Dispatch, Error};
use std::sync::Arc;

async fn engine(llm: Option<Arc<FakeLlm>>) -> Dispatch {
    let mut b = Dispatch::builder(Arc::new(MemoryStore::new()), FakeRunner::new())
        .clock(Arc::new(ManualClock::at_default()));
    if let Some(l) = llm {
        b = b.llm(l);
    }
    b.build().await.unwrap()
}

fn actor() -> Actor {
    Actor::webhook("GitHub Webhook")
}

async fn issue(d: &Dispatch, title: &str, description: Option<&str>) -> String {
    let mut n = NewIssue::titled(title);
    n.description = description.map(str::to_string);
    d.create_issue(n, &Actor::user("ann"))
        .await
        .unwrap()
        .identifier
}

/// Issues of a small workspace: one clearly about the refund timeout, one sharing a word, one
/// unrelated.
async fn seed(d: &Dispatch) -> (String, String, String) {
    let refund = issue(
        d,
        "Stripe refund webhook times out",
        Some("Refunds over 30 s hang the webhook worker."),
    )
    .await;
    let emails = issue(d, "Refund emails are sent twice", None).await;
    let login = issue(d, "Login page shows a blank screen", Some("Safari only")).await;
    (refund, emails, login)
}

fn refund_pr(number: i64) -> PullRequestInfo {
    PullRequestInfo {
        number,
        title: Some("Increase timeout for Stripe refund webhook".into()),
        body: Some(
            "The refund webhook handler called Stripe without a timeout budget; retries now back off."
                .into(),
        ),
        url: Some(format!("https://github.invalid/o/r/pull/{number}")),
        head_branch: Some("fix/stripe-refund-timeout".into()),
        base_branch: Some("main".into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn identifiers_win_and_the_llm_is_not_asked() {
    let llm = FakeLlm::new(r#"{"fixes": []}"#);
    let d = engine(Some(llm.clone())).await;
    let (refund, _, login) = seed(&d).await;
    let mut pr = refund_pr(5);
    pr.body = Some(format!("Also closes {}.", login.to_lowercase()));
    let (matches, links) = d
        .link_pr(&pr, Some(PrStatus::Open), &actor())
        .await
        .unwrap();
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0].identifier, login);
    assert_eq!(matches[0].method, MatchMethod::Identifier);
    assert_eq!(links[0].link.match_confidence, Some(1.0));
    assert!(llm.requests().is_empty());
    assert!(d.pr_links(refund.as_str()).await.unwrap().is_empty());
}

#[tokio::test]
async fn without_llm_the_clear_top_candidate_is_linked() {
    let d = engine(None).await;
    let (refund, emails, login) = seed(&d).await;
    let (matches, links) = d
        .link_pr(&refund_pr(6), Some(PrStatus::Open), &actor())
        .await
        .unwrap();
    assert_eq!(matches.len(), 1, "{matches:?}");
    assert_eq!(matches[0].identifier, refund);
    assert_eq!(matches[0].method, MatchMethod::Similarity);
    let c = links[0].link.match_confidence.unwrap();
    assert!((0.5..1.0).contains(&c), "{c}");
    assert!(d.pr_links(emails.as_str()).await.unwrap().is_empty());
    assert!(d.pr_links(login.as_str()).await.unwrap().is_empty());
}

#[tokio::test]
async fn without_llm_closed_ambiguous_or_unrelated_issues_are_not_linked() {
    let d = engine(None).await;
    let (refund, _, _) = seed(&d).await;
    // Closed issues are not candidates.
    d.move_issue(
        refund.as_str(),
        ColumnRef::Name(names::DONE.into()),
        &Actor::user("ann"),
    )
    .await
    .unwrap();
    let (m, links) = d.link_pr(&refund_pr(7), None, &actor()).await.unwrap();
    assert!(m.is_empty() && links.is_empty(), "{m:?}");

    // Two issues equally like the PR: a guess, so nothing.
    issue(&d, "Stripe refund webhook times out for EU", None).await;
    issue(&d, "Stripe refund webhook times out for US", None).await;
    let (m, _) = d.link_pr(&refund_pr(8), None, &actor()).await.unwrap();
    assert!(m.is_empty(), "{m:?}");

    // Nothing alike.
    let pr = PullRequestInfo {
        number: 9,
        title: Some("Bump serde".into()),
        head_branch: Some("deps/serde".into()),
        ..Default::default()
    };
    assert!(d.match_pr(&pr).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_llm_decides_among_the_candidates() {
    let llm = FakeLlm::new(r#"{"fixes": []}"#);
    let d = engine(Some(llm.clone())).await;
    let (refund, emails, login) = seed(&d).await;

    // The model picks the second-best candidate: its answer decides.
    llm.reply(format!("```json\n{{\"fixes\": [\"{emails}\"]}}\n```"));
    let (m, links) = d
        .link_pr(&refund_pr(10), Some(PrStatus::Open), &actor())
        .await
        .unwrap();
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].identifier, emails);
    assert_eq!(m[0].method, MatchMethod::Llm);
    assert_eq!(
        links[0].link.match_confidence,
        Some(LLM_CONFIRMED_CONFIDENCE)
    );
    let reqs = llm.requests();
    assert_eq!(reqs.len(), 1);
    let prompt = format!("{:?}", reqs[0].messages);
    assert!(
        prompt.contains(&refund) && prompt.contains(&emails),
        "{prompt}"
    );
    assert!(
        !prompt.contains(&login),
        "unrelated issues are no candidates: {prompt}"
    );

    // An identifier that is not a candidate, garbage, and an error: no match, no failure.
    llm.reply(format!(r#"{{"fixes": ["{login}"]}}"#));
    assert!(d.match_pr(&refund_pr(11)).await.unwrap().is_empty());
    llm.reply("I believe it fixes the refund issue.");
    assert!(d.match_pr(&refund_pr(12)).await.unwrap().is_empty());
    llm.fail(Error::upstream(
        "anthropic",
        529,
        "overloaded_error: Overloaded",
    ));
    assert!(d.match_pr(&refund_pr(13)).await.unwrap().is_empty());
    // The model says none: none, even for the clear top candidate.
    assert!(d.match_pr(&refund_pr(14)).await.unwrap().is_empty());
    assert_eq!(llm.requests().len(), 5);
}

#[tokio::test]
async fn a_linked_pr_is_not_matched_again_and_its_merge_records_the_fix() {
    let llm = FakeLlm::new(r#"{"fixes": []}"#);
    let d = engine(Some(llm.clone())).await;
    let (refund, _, _) = seed(&d).await;
    llm.reply(format!(r#"{{"fixes": ["{refund}"]}}"#));
    let (m, _) = d
        .link_pr(&refund_pr(20), Some(PrStatus::Open), &actor())
        .await
        .unwrap();
    assert_eq!(m.len(), 1);

    // Edited: already linked, so the model is not asked again; the link is refreshed.
    let mut edited = refund_pr(20);
    edited.title = Some("Increase timeout for Stripe refund webhook (v2)".into());
    let (m, links) = d.link_pr(&edited, None, &actor()).await.unwrap();
    assert!(m.is_empty());
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].identifier, refund);
    assert_eq!(llm.requests().len(), 1);

    // Merged: the linked issue gets the fix attempt, still without asking the model.
    let pr = edited.clone();
    let merged = MergedPr {
        number: pr.number,
        url: pr.url.clone(),
        title: pr.title.clone(),
        body: pr.body.clone(),
        head_branch: pr.head_branch.clone(),
        base_branch: pr.base_branch.clone(),
        merged_at: d.clock().now(),
        merge_sha: Some("abc123".into()),
    };
    let rep = d.merge_pr(&merged, None, &actor()).await.unwrap();
    assert_eq!(llm.requests().len(), 1);
    assert_eq!(rep.fix_attempts.len(), 1);
    assert_eq!(rep.fix_attempts[0].identifier, refund);
    assert_eq!(rep.links[0].link.status, PrStatus::Merged);
    assert_eq!(
        rep.links[0].link.match_confidence,
        Some(LLM_CONFIRMED_CONFIDENCE)
    );
}

#[tokio::test]
async fn a_merged_pr_without_identifier_is_matched_for_its_fix_attempt() {
    let d = engine(None).await;
    let (refund, emails, _) = seed(&d).await;
    let pr = refund_pr(30);
    let merged = MergedPr {
        number: pr.number,
        url: pr.url.clone(),
        title: pr.title.clone(),
        body: pr.body.clone(),
        head_branch: pr.head_branch.clone(),
        base_branch: pr.base_branch.clone(),
        merged_at: d.clock().now(),
        merge_sha: Some("def456".into()),
    };
    let attempts = d.pr_merged(&merged, &actor()).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].identifier, refund);
    assert_eq!(
        d.fix_status(emails.as_str()).await.unwrap().attempts.len(),
        0
    );
    // Redelivery: nothing new.
    let again = d.pr_merged(&merged, &actor()).await.unwrap();
    assert!(!again[0].created);
}
