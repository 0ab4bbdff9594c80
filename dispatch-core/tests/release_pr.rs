//! Release PRs (spec §6.2): staging merged into the deploy branch. Named issues are included;
//! the LLM picks among the open In Review / In Progress issues (≥ 85); nothing is closed, each
//! included issue gets a fix attempt.

use dispatch_core::engine::ColumnRef;
use dispatch_core::issue::{Actor, NewIssue, names};
use dispatch_core::memory::MemoryStore;
use dispatch_core::pr::PrStatus;
use dispatch_core::pr_match::MatchMethod;
use dispatch_core::testkit::{FakeLlm, FakeRunner, ManualClock};
use dispatch_core::verify::{MergedPr, VerificationStatus};
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

fn release_actor() -> Actor {
    Actor::webhook("GitHub Webhook (Release)")
}

async fn issue_in(d: &Dispatch, title: &str, column: &str) -> String {
    let ann = Actor::user("ann");
    let i = d.create_issue(NewIssue::titled(title), &ann).await.unwrap();
    if column != names::BACKLOG {
        d.move_issue(i.id, ColumnRef::Name(column.into()), &ann)
            .await
            .unwrap();
    }
    i.identifier
}

fn release(d: &Dispatch, number: i64, body: &str) -> MergedPr {
    MergedPr {
        number,
        url: Some(format!("https://github.invalid/o/r/pull/{number}")),
        title: Some("Release 2026-11-25".into()),
        body: Some(body.into()),
        head_branch: Some("staging".into()),
        base_branch: Some("main".into()),
        merged_at: d.clock().now(),
        merge_sha: Some("feedbeef".into()),
    }
}

async fn column_of(d: &Dispatch, ident: &str) -> String {
    let i = d.get_issue(ident).await.unwrap();
    d.columns()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == i.column_id)
        .unwrap()
        .name
}

#[tokio::test]
async fn release_detection_follows_the_configured_branches() {
    let d = engine(None).await;
    assert!(d.is_release_pr(Some("main"), Some("staging")));
    assert!(!d.is_release_pr(Some("staging"), Some("fix/a")));
    assert!(!d.is_release_pr(Some("main"), Some("fix/a")));
}

#[tokio::test]
async fn named_and_llm_confirmed_issues_get_fix_attempts_and_stay_open() {
    let llm = FakeLlm::new(r#"{"included": []}"#);
    let d = engine(Some(llm.clone())).await;
    let named = issue_in(&d, "Checkout total rounds wrong", names::BACKLOG).await;
    let review = issue_in(&d, "Refund webhook times out", names::IN_REVIEW).await;
    let progress = issue_in(&d, "Dark mode toggle flickers", names::IN_PROGRESS).await;
    let unsure = issue_in(&d, "Search is slow", names::IN_REVIEW).await;
    let backlog = issue_in(&d, "Export CSV misses a column", names::BACKLOG).await;
    let done = issue_in(&d, "Old bug", names::DONE).await;
    llm.reply(format!(
        "```json\n{{\"included\": [{{\"identifier\": \"{review}\", \"confidence\": 92}}, \
         {{\"identifier\": \"{progress}\", \"confidence\": 85}}, \
         {{\"identifier\": \"{unsure}\", \"confidence\": 60}}, \
         {{\"identifier\": \"{backlog}\", \"confidence\": 99}}]}}\n```"
    ));
    let pr = release(&d, 100, "Ships the refund timeout and the dark mode fix.");
    let commits = vec![
        format!("fix(checkout): rounding [{named}]"),
        format!("chore: revert {done}"),
    ];
    let rep = d
        .merge_release_pr(&pr, &commits, Some("octocat".into()), &release_actor())
        .await
        .unwrap();

    // The model saw only the open In Review / In Progress issues not named already.
    let reqs = llm.requests();
    assert_eq!(reqs.len(), 1);
    let prompt = format!("{:?}", reqs[0].messages);
    assert!(prompt.contains(&review) && prompt.contains(&progress) && prompt.contains(&unsure));
    assert!(!prompt.contains(&format!("- {backlog}")) && !prompt.contains(&format!("- {named}:")));

    let mut got: Vec<(String, MatchMethod)> = rep
        .matches
        .iter()
        .map(|m| (m.identifier.clone(), m.method))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = vec![
        (named.clone(), MatchMethod::Identifier),
        (review.clone(), MatchMethod::Llm),
        (progress.clone(), MatchMethod::Llm),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want);
    assert_eq!(rep.fix_attempts.len(), 3);
    for a in &rep.fix_attempts {
        assert!(a.created);
        assert_eq!(a.attempt.status, VerificationStatus::Monitoring);
        assert_eq!(a.attempt.pr_number, 100);
    }
    assert!(rep.links.iter().all(|l| l.link.status == PrStatus::Merged));
    let review_link = rep.links.iter().find(|l| l.identifier == review).unwrap();
    assert_eq!(review_link.link.match_confidence, Some(0.92));

    // Nothing closes on merge: the sweeper does once verified.
    assert_eq!(column_of(&d, &review).await, names::IN_REVIEW);
    assert_eq!(column_of(&d, &named).await, names::BACKLOG);
    // Not included: under the threshold, outside the candidate columns, closed.
    for other in [&unsure, &backlog, &done] {
        assert!(
            d.pr_links(other.as_str()).await.unwrap().is_empty(),
            "{other}"
        );
    }
    // The history names the release actor.
    let h = d.history(review.as_str(), 20).await.unwrap();
    assert!(
        h.iter().any(|e| e.actor.name == "GitHub Webhook (Release)"),
        "{h:?}"
    );

    // A redelivery adds nothing.
    llm.reply(format!(
        "{{\"included\": [{{\"identifier\": \"{review}\", \"confidence\": 92}}]}}"
    ));
    let again = d
        .merge_release_pr(&pr, &commits, None, &release_actor())
        .await
        .unwrap();
    assert!(again.fix_attempts.iter().all(|a| !a.created));
}

#[tokio::test]
async fn without_a_usable_llm_only_named_issues_are_included() {
    // No LLM: named only, nothing asked.
    let d = engine(None).await;
    let named = issue_in(&d, "Checkout total rounds wrong", names::IN_REVIEW).await;
    let other = issue_in(&d, "Refund webhook times out", names::IN_REVIEW).await;
    let rep = d
        .merge_release_pr(
            &release(&d, 7, &format!("Includes {named}")),
            &[],
            None,
            &release_actor(),
        )
        .await
        .unwrap();
    assert_eq!(rep.fix_attempts.len(), 1);
    assert_eq!(rep.fix_attempts[0].identifier, named);
    assert!(d.pr_links(other.as_str()).await.unwrap().is_empty());

    // An LLM error or gibberish: named only again, and the merge does not fail.
    let llm = FakeLlm::new("I think all of them?");
    let d = engine(Some(llm.clone())).await;
    let named = issue_in(&d, "Checkout total rounds wrong", names::IN_REVIEW).await;
    issue_in(&d, "Refund webhook times out", names::IN_PROGRESS).await;
    llm.fail(Error::upstream("anthropic", 529, "overloaded"));
    let rep = d
        .merge_release_pr(&release(&d, 8, &named), &[], None, &release_actor())
        .await
        .unwrap();
    assert_eq!(rep.fix_attempts.len(), 1);
    let rep = d
        .merge_release_pr(
            &release(&d, 9, "no names here"),
            &[],
            None,
            &release_actor(),
        )
        .await
        .unwrap();
    assert!(rep.fix_attempts.is_empty());
    assert_eq!(llm.requests().len(), 2);
}
