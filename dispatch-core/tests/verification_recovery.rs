//! Issue 10 #4 and #5: what an ingest or a verification leaves behind when it stops halfway
//! (a crash, an error after its commit) is finished from stored state, and merges delivered
//! late are judged on what happened since the merge. Memory store, manual clock.

use chrono::Duration;
use dispatch_core::config::EngineConfig;
use dispatch_core::event::ErrorEvent;
use dispatch_core::gate::SpawnPolicy;
use dispatch_core::ids::IssueId;
use dispatch_core::issue::{Actor, NewIssue, names};
use dispatch_core::memory::MemoryStore;
use dispatch_core::ports::{ErrorLinkStore, IngestDraft, RunStore};
use dispatch_core::testkit::{FakeRunner, ManualClock};
use dispatch_core::verify::{MergedPr, VerificationStatus};
use dispatch_core::{Clock, Dispatch};
use std::sync::Arc;

struct World {
    d: Dispatch,
    clock: Arc<ManualClock>,
    store: Arc<MemoryStore>,
}

async fn world(policy: SpawnPolicy) -> World {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::at_default());
    let d = Dispatch::builder(store.clone(), FakeRunner::new())
        .clock(clock.clone())
        .config(EngineConfig {
            policy,
            ..EngineConfig::default()
        })
        .build()
        .await
        .unwrap();
    World { d, clock, store }
}

fn boom() -> ErrorEvent {
    ErrorEvent::new("loki", "billing", "charge-customer", "Payment failed: boom")
}

/// The store half of an ingest of the issue's error at the clock's time: what an ingest had
/// committed when its process died before its follow-up (recurrence check, gates).
async fn stored_sighting(w: &World, issue: IssueId) -> IngestDraft {
    let link = w.store.links_for_issue(issue).await.unwrap().remove(0);
    let draft = IngestDraft {
        source: link.source.clone(),
        external_key: link.external_key.clone(),
        fingerprint: link.fingerprint.clone(),
        url: None,
        metadata: link.metadata.clone(),
        event_count: 1,
        seen_at: w.clock.now(),
        new_issue: NewIssue::titled("unused for a known key"),
        actor: Actor::webhook("Loki Webhook"),
        outbox: Default::default(),
    };
    let ws = w.d.workspace().id;
    w.store.ingest_error(ws, draft.clone()).await.unwrap();
    draft
}

fn merged(identifier: &str, merged_at: dispatch_core::Timestamp) -> MergedPr {
    MergedPr {
        number: 42,
        url: Some("https://github.com/acme/app/pull/42".into()),
        title: Some(format!("fix(billing): boom [{identifier}]")),
        body: None,
        head_branch: None,
        base_branch: Some("main".into()),
        merged_at,
        merge_sha: Some("abc1234".into()),
    }
}

async fn column_name(d: &Dispatch, issue: IssueId) -> String {
    let issue = d.get_issue(issue).await.unwrap();
    d.columns()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == issue.column_id)
        .unwrap()
        .name
}

/// #5: the error came back during monitoring, but the ingest that stored it died before its
/// recurrence check. Before, the sweeper verified the fix at the deadline and closed the issue
/// although the error had come back; now it reads the stored sighting and fails the fix.
#[tokio::test]
async fn a_recurrence_whose_ingest_died_after_its_commit_fails_the_fix_at_the_sweep() {
    let w = world(SpawnPolicy::default()).await;
    let r = w.d.ingest(boom()).await.unwrap();
    let issue = r.issue.id;
    let rep =
        w.d.pr_merged(
            &merged(&r.issue.identifier, w.clock.now()),
            &Actor::webhook("GitHub"),
        )
        .await
        .unwrap();
    assert_eq!(rep[0].attempt.status, VerificationStatus::Monitoring);

    w.clock.advance(Duration::hours(10));
    stored_sighting(&w, issue).await;
    w.clock.advance(Duration::hours(39));

    let sweep = w.d.sweeper_step().await.unwrap();
    assert_eq!(sweep.verified, 0, "the fix did not hold");
    let status = w.d.fix_status(issue).await.unwrap();
    let latest = status.latest.unwrap();
    assert_eq!(latest.status, VerificationStatus::Failed);
    assert!(
        latest.failure_reason.unwrap().contains("after the fix"),
        "the reason names the stored sighting"
    );
    assert_eq!(column_name(&w.d, issue).await, names::BACKLOG);
    let comments = w.d.comments(issue).await.unwrap();
    assert!(
        comments
            .iter()
            .any(|c| c.body.contains("Fix Verification Failed"))
    );
    assert!(!comments.iter().any(|c| c.body.contains("Fix Verified")));
    // Settled once: another sweep changes nothing.
    let before = w.d.get_issue(issue).await.unwrap().version;
    w.d.sweeper_step().await.unwrap();
    assert_eq!(w.d.get_issue(issue).await.unwrap().version, before);
}

/// #5: a merge event delivered three days late. Before, its window had already run out and the
/// next sweep verified it without looking at what happened since the merge.
#[tokio::test]
async fn a_merge_delivered_late_fails_on_a_recurrence_since_the_merge() {
    let w = world(SpawnPolicy::default()).await;
    let start = w.clock.now();
    let r = w.d.ingest(boom()).await.unwrap();
    w.clock.advance(Duration::hours(30));
    w.d.ingest(boom()).await.unwrap();
    w.clock.advance(Duration::hours(42));

    let rep =
        w.d.pr_merged(
            &merged(&r.issue.identifier, start + Duration::hours(10)),
            &Actor::webhook("GitHub"),
        )
        .await
        .unwrap();
    assert_eq!(
        rep[0].attempt.status,
        VerificationStatus::Failed,
        "the error was seen 20 h after the merge"
    );
    assert_eq!(column_name(&w.d, r.issue.id).await, names::BACKLOG);
    assert_eq!(w.d.sweeper_step().await.unwrap().verified, 0);
}

/// #5: a late merge with no recurrence since gets its whole window from delivery.
#[tokio::test]
async fn a_merge_delivered_late_is_watched_for_its_whole_window() {
    let w = world(SpawnPolicy::default()).await;
    let start = w.clock.now();
    let r = w.d.ingest(boom()).await.unwrap();
    w.clock.advance(Duration::hours(72));
    let rep =
        w.d.pr_merged(
            &merged(&r.issue.identifier, start + Duration::hours(10)),
            &Actor::webhook("GitHub"),
        )
        .await
        .unwrap();
    let a = &rep[0].attempt;
    assert_eq!(a.status, VerificationStatus::Monitoring);
    assert_eq!(a.deadline, Some(w.clock.now() + Duration::hours(48)));

    w.clock.advance(Duration::hours(1));
    assert_eq!(
        w.d.sweeper_step().await.unwrap().verified,
        0,
        "not verified at the next sweep"
    );
    w.clock.advance(Duration::hours(47));
    assert_eq!(w.d.sweeper_step().await.unwrap().verified, 1);
    assert_eq!(column_name(&w.d, r.issue.id).await, names::DONE);
}

/// #4: an ingest stored its event but its follow-up failed (here: never ran), and it recorded
/// the debt on the link. The sweeper finishes it from the stored link — the gates spawn the
/// agent the alert asked for — and clears the debt, once.
#[tokio::test]
async fn an_owed_ingest_follow_up_is_finished_by_the_sweeper_once() {
    let w = world(SpawnPolicy::permissive()).await;
    let ws = w.d.workspace().id;
    let draft = IngestDraft {
        source: "loki".into(),
        external_key: "fp-owed".into(),
        fingerprint: "fp-owed".into(),
        url: None,
        metadata: serde_json::json!({"source": "billing", "feature": "charge-customer"}),
        event_count: 1,
        seen_at: w.clock.now(),
        new_issue: NewIssue::titled("Payment failed"),
        actor: Actor::webhook("Loki Webhook"),
        outbox: Default::default(),
    };
    let stored = w.store.ingest_error(ws, draft).await.unwrap();
    w.store
        .owe_follow_up(stored.link.id, w.clock.now())
        .await
        .unwrap();
    assert!(w.store.list_runs(stored.issue.id).await.unwrap().is_empty());

    let sweep = w.d.sweeper_step().await.unwrap();
    assert_eq!(sweep.follow_ups, 1);
    let runs = w.store.list_runs(stored.issue.id).await.unwrap();
    assert_eq!(runs.len(), 1, "the alert's agent was asked for");
    assert!(
        w.store
            .owed_follow_ups(w.clock.now(), 10)
            .await
            .unwrap()
            .is_empty(),
        "the debt is cleared"
    );
    w.clock.advance(Duration::minutes(1));
    assert_eq!(w.d.sweeper_step().await.unwrap().follow_ups, 0);
    assert_eq!(w.store.list_runs(stored.issue.id).await.unwrap().len(), 1);
}
