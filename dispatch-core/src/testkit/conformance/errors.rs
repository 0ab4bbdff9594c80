//! ErrorLinkStore: ingesting error events (create, then dedupe), links and cooldowns.

use super::support::*;
use crate::ids::IssueId;
use crate::issue::{HistoryAction, IssueFilter};

pub(super) fn cases() -> Vec<Case> {
    cases!("errors":
        ingest_creates_an_issue_then_dedupes,
        ingest_keys_are_per_source,
        links_for_issue_get_link_and_set_cooldown,
        owed_follow_ups_are_kept_until_settled_and_a_newer_debt_survives,
    )
}

async fn ingest_creates_an_issue_then_dedupes(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let backlog = column_id(s, ws.id, "Backlog").await;

    let first = s
        .ingest_error(ws.id, draft("loki", "fp-1", 2, mins(1)))
        .await
        .expect("first ingest");
    assert!(first.created, "an unseen key creates the issue");
    let i = &first.issue;
    assert_eq!(
        (i.identifier.as_str(), i.number, i.column_id),
        ("ACME-1", 1, backlog)
    );
    assert_eq!(i.title, "TypeError in billing (fp-1)");
    assert_eq!((i.created_at, i.workspace_id), (mins(1), ws.id));
    let l = &first.link;
    assert_eq!(l.issue_id, i.id);
    assert_eq!(
        (
            l.source.as_str(),
            l.external_key.as_str(),
            l.fingerprint.as_str()
        ),
        ("loki", "fp-1", "fp-1")
    );
    assert_eq!(l.url.as_deref(), Some("https://logs.invalid/loki/fp-1"));
    assert_eq!(
        l.metadata,
        serde_json::json!({"service": "billing", "level": "error"})
    );
    assert_eq!(
        (
            l.event_count,
            l.first_seen_at,
            l.last_seen_at,
            l.cooldown_until
        ),
        (2, mins(1), mins(1), None)
    );
    assert_eq!(get(s, i).await, *i);
    let history = s.list_history(i.id, 10).await.expect("list_history");
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].action, history[0].created_at),
        (HistoryAction::Created, mins(1))
    );
    assert_eq!(
        history[0].actor,
        crate::issue::Actor::webhook("Loki Webhook")
    );

    let second = s
        .ingest_error(ws.id, draft("loki", "fp-1", 3, mins(5)))
        .await
        .expect("second ingest");
    assert!(!second.created, "a known key does not create");
    assert_eq!(second.issue.id, i.id, "same issue");
    assert_eq!(second.link.id, l.id, "same link");
    assert_eq!(
        (
            second.link.event_count,
            second.link.first_seen_at,
            second.link.last_seen_at
        ),
        (5, mins(1), mins(5)),
        "counts add up, last_seen moves forward"
    );

    let late = s
        .ingest_error(ws.id, draft("loki", "fp-1", 1, mins(3)))
        .await
        .expect("late ingest");
    assert!(!late.created);
    assert_eq!(
        (late.link.event_count, late.link.last_seen_at),
        (6, mins(5)),
        "last_seen_at is the max, never moves back"
    );
    assert_eq!(
        s.get_link("loki", "fp-1").await.expect("get_link"),
        Some(late.link.clone())
    );

    let issues = s
        .list_issues(ws.id, &IssueFilter::default())
        .await
        .expect("list_issues");
    assert_eq!(issues.len(), 1, "one issue per key");
    assert_eq!(
        s.get_workspace(ws.id).await.expect("ws").next_issue_number,
        2,
        "dedupe allocates no identifier"
    );

    invalid(
        s.ingest_error(ws.id, draft("loki", "fp-1", 0, mins(6)))
            .await,
        "event_count",
        "an ingest of zero events",
    );
    invalid(
        s.ingest_error(ws.id, draft("loki", "fp-new", 0, mins(6)))
            .await,
        "event_count",
        "a new key with zero events",
    );
    let mut untitled = draft("loki", "fp-untitled", 1, mins(6));
    untitled.new_issue.title = " ".into();
    invalid(
        s.ingest_error(ws.id, untitled).await,
        "title",
        "a new key whose issue has no title",
    );
    assert_eq!(
        s.get_link("loki", "fp-untitled").await.expect("get_link"),
        None,
        "a rejected ingest writes no link"
    );
    assert_eq!(
        s.get_link("loki", "fp-1")
            .await
            .expect("get_link")
            .map(|l| l.event_count),
        Some(6)
    );
    let next = issue(s, ws.id, "next").await;
    assert_eq!(
        next.identifier, "ACME-2",
        "a rejected ingest allocates no identifier"
    );
}

async fn ingest_keys_are_per_source(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let loki = s
        .ingest_error(ws.id, draft("loki", "shared-key", 1, mins(1)))
        .await
        .expect("loki ingest");
    let sentry = s
        .ingest_error(ws.id, draft("sentry", "shared-key", 4, mins(2)))
        .await
        .expect("sentry ingest");
    assert!(
        loki.created && sentry.created,
        "the same key from another source is another error"
    );
    assert_ne!(loki.issue.id, sentry.issue.id);
    assert_ne!(loki.link.id, sentry.link.id);
    assert_eq!(sentry.issue.identifier, "ACME-2");

    let again = s
        .ingest_error(ws.id, draft("sentry", "shared-key", 1, mins(3)))
        .await
        .expect("sentry again");
    assert_eq!(
        (again.created, again.issue.id, again.link.event_count),
        (false, sentry.issue.id, 5)
    );
    assert_eq!(
        s.get_link("loki", "shared-key")
            .await
            .expect("get_link")
            .map(|l| l.event_count),
        Some(1),
        "the loki count is untouched"
    );
    assert_eq!(
        s.get_link("sentry", "shared-key")
            .await
            .expect("get_link")
            .map(|l| l.issue_id),
        Some(sentry.issue.id)
    );
    assert_eq!(
        s.get_link("loki", "other-key").await.expect("get_link"),
        None
    );
    assert_eq!(
        s.get_link("github", "shared-key").await.expect("get_link"),
        None
    );
    assert_eq!(
        s.list_issues(ws.id, &IssueFilter::default())
            .await
            .expect("list_issues")
            .len(),
        2
    );
}

async fn links_for_issue_get_link_and_set_cooldown(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let a = s
        .ingest_error(ws.id, draft("loki", "fp-a", 1, mins(1)))
        .await
        .expect("ingest a");
    let b = s
        .ingest_error(ws.id, draft("loki", "fp-b", 1, mins(2)))
        .await
        .expect("ingest b");
    let plain = issue(s, ws.id, "no errors").await;

    assert_eq!(
        s.links_for_issue(a.issue.id)
            .await
            .expect("links_for_issue"),
        vec![a.link.clone()]
    );
    assert_eq!(
        s.links_for_issue(b.issue.id)
            .await
            .expect("links_for_issue"),
        vec![b.link.clone()]
    );
    assert_eq!(
        s.links_for_issue(plain.id).await.expect("links_for_issue"),
        vec![]
    );
    assert_eq!(
        s.links_for_issue(IssueId::new())
            .await
            .map(|v| v.len())
            .unwrap_or(0),
        0
    );

    s.set_cooldown(a.issue.id, mins(60))
        .await
        .expect("set_cooldown");
    let la = s
        .links_for_issue(a.issue.id)
        .await
        .expect("links_for_issue");
    assert_eq!(la[0].cooldown_until, Some(mins(60)));
    assert_eq!(
        s.get_link("loki", "fp-a")
            .await
            .expect("get_link")
            .and_then(|l| l.cooldown_until),
        Some(mins(60))
    );
    assert_eq!(
        s.get_link("loki", "fp-b")
            .await
            .expect("get_link")
            .and_then(|l| l.cooldown_until),
        None,
        "other issues' links keep theirs"
    );
    s.set_cooldown(a.issue.id, mins(30))
        .await
        .expect("set_cooldown again");
    assert_eq!(
        s.get_link("loki", "fp-a")
            .await
            .expect("get_link")
            .and_then(|l| l.cooldown_until),
        Some(mins(30)),
        "set, not max"
    );
    s.set_cooldown(plain.id, mins(60))
        .await
        .expect("set_cooldown on an issue without links is a no-op");

    let after = s
        .ingest_error(ws.id, draft("loki", "fp-a", 2, mins(40)))
        .await
        .expect("ingest during cooldown");
    assert_eq!(
        (after.link.event_count, after.link.cooldown_until),
        (3, Some(mins(30))),
        "ingest keeps the cooldown"
    );
}

/// Issue 10 #4: an ingest that stored its event but could not finish what follows leaves the
/// link owing it; the debt is listed oldest first, moves forward only, is cleared up to what
/// was finished (a newer debt survives) and goes with the issue.
async fn owed_follow_ups_are_kept_until_settled_and_a_newer_debt_survives(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let a = s
        .ingest_error(ws.id, draft("loki", "fp-a", 1, mins(1)))
        .await
        .expect("a");
    let b = s
        .ingest_error(ws.id, draft("loki", "fp-b", 1, mins(1)))
        .await
        .expect("b");
    assert!(
        s.owed_follow_ups(mins(100), 10)
            .await
            .expect("none")
            .is_empty()
    );

    s.owe_follow_up(b.link.id, mins(3)).await.expect("owe b");
    s.owe_follow_up(a.link.id, mins(2)).await.expect("owe a");
    s.owe_follow_up(a.link.id, mins(1))
        .await
        .expect("an older debt does not move it back");
    let owed = s.owed_follow_ups(mins(10), 10).await.expect("owed");
    assert_eq!(
        owed.iter().map(|(l, at)| (l.id, *at)).collect::<Vec<_>>(),
        vec![(a.link.id, mins(2)), (b.link.id, mins(3))],
        "oldest debt first, each link once"
    );
    assert_eq!(owed[0].0, a.link, "the link as stored");
    assert_eq!(s.owed_follow_ups(mins(2), 10).await.expect("upto").len(), 1);
    assert_eq!(
        s.owed_follow_ups(mins(10), 1).await.expect("limit").len(),
        1
    );

    // A newer debt came while the sweeper finished the older one: it stays.
    s.owe_follow_up(a.link.id, mins(5)).await.expect("newer");
    s.settle_follow_up(a.link.id, mins(2))
        .await
        .expect("settle older");
    let owed = s.owed_follow_ups(mins(10), 10).await.expect("owed");
    assert_eq!(
        owed.iter().map(|(l, at)| (l.id, *at)).collect::<Vec<_>>(),
        vec![(b.link.id, mins(3)), (a.link.id, mins(5))]
    );
    s.settle_follow_up(a.link.id, mins(5))
        .await
        .expect("settle");
    assert_eq!(
        s.owed_follow_ups(mins(10), 10).await.expect("owed").len(),
        1
    );

    // The debt goes with its issue.
    s.delete_issue(b.issue.id, mins(6), &Default::default())
        .await
        .expect("delete");
    assert!(
        s.owed_follow_ups(mins(10), 10)
            .await
            .expect("owed")
            .is_empty()
    );
    let gone = s
        .owe_follow_up(b.link.id, mins(7))
        .await
        .expect_err("a deleted link owes nothing");
    assert_eq!(gone.kind, ErrorKind::NotFound);
}
