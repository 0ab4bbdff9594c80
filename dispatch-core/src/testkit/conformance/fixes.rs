//! FixStore: fix attempts, one per (issue, PR), with compare-and-set updates.

use super::support::*;
use crate::ids::{FixAttemptId, IssueId};
use crate::verify::VerificationStatus::{AwaitingDeploy, Failed, Monitoring, Verified};
use std::collections::BTreeSet;

pub(super) fn cases() -> Vec<Case> {
    cases!("fixes":
        fix_attempts_are_one_per_issue_and_pr_newest_first,
        update_fix_attempt_is_compare_and_set_on_status,
        fix_attempts_in_status_and_due_verifications,
        ingest_of_a_known_key_returns_the_newest_fix_attempt,
        settle_fix_attempt_writes_attempt_issue_and_comment_together_or_nothing,
    )
}

fn pr_numbers(v: &[crate::verify::FixAttempt]) -> Vec<i64> {
    v.iter().map(|a| a.pr_number).collect()
}

async fn fix_attempts_are_one_per_issue_and_pr_newest_first(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let a = issue(s, ws.id, "a").await.id;
    let b = issue(s, ws.id, "b").await.id;

    let first = attempt(a, 10, AwaitingDeploy, mins(1), None);
    let (stored, created) = s.create_fix_attempt(&first).await.expect("create");
    assert!(created);
    assert_eq!(stored, first, "the attempt is stored as given");

    let mut repeat = attempt(a, 10, Monitoring, mins(2), Some(mins(100)));
    repeat.pr_title = Some("another title".into());
    let (existing, created) = s.create_fix_attempt(&repeat).await.expect("repeat");
    assert!(!created, "one attempt per (issue, PR)");
    assert_eq!(
        existing, first,
        "a repeat returns the existing attempt unchanged"
    );

    let (_, created) = s
        .create_fix_attempt(&attempt(b, 10, AwaitingDeploy, mins(3), None))
        .await
        .expect("same PR, other issue");
    assert!(created, "the same PR on another issue is another attempt");
    let second = attempt(a, 11, Monitoring, mins(4), Some(mins(200)));
    assert!(s.create_fix_attempt(&second).await.expect("second PR").1);

    let listed = s.list_fix_attempts(a).await.expect("list");
    assert_eq!(
        listed,
        vec![second.clone(), first.clone()],
        "newest first, this issue's only"
    );
    assert_eq!(
        pr_numbers(&s.list_fix_attempts(b).await.expect("list")),
        [10]
    );
    let none = issue(s, ws.id, "none").await.id;
    assert_eq!(s.list_fix_attempts(none).await.expect("list"), vec![]);
    not_found(
        s.create_fix_attempt(&attempt(IssueId::new(), 1, AwaitingDeploy, mins(5), None))
            .await,
        "an attempt on an unknown issue",
    );
}

async fn update_fix_attempt_is_compare_and_set_on_status(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let a = issue(s, ws.id, "a").await.id;
    let waiting = attempt(a, 7, AwaitingDeploy, mins(1), None);
    s.create_fix_attempt(&waiting).await.expect("create");

    let mut deployed = waiting.clone();
    deployed.status = Monitoring;
    deployed.deployed_sha = Some("feedbeef".into());
    deployed.deployed_at = Some(mins(10));
    deployed.deadline = Some(mins(10) + Duration::hours(48));
    deployed.updated_at = mins(10);
    assert!(
        s.update_fix_attempt(&deployed, AwaitingDeploy)
            .await
            .expect("cas"),
        "the stored status matched"
    );
    assert_eq!(
        s.list_fix_attempts(a).await.expect("list"),
        vec![deployed.clone()],
        "the whole attempt is replaced"
    );

    let mut racing = waiting.clone();
    racing.status = Failed;
    racing.failure_reason = Some("stale writer".into());
    assert!(
        !s.update_fix_attempt(&racing, AwaitingDeploy)
            .await
            .expect("cas"),
        "the status moved on: false"
    );
    assert_eq!(
        s.list_fix_attempts(a).await.expect("list"),
        vec![deployed.clone()],
        "a failed compare writes nothing"
    );

    let mut verified = deployed.clone();
    verified.status = Verified;
    verified.checked_at = Some(mins(3000));
    assert!(
        s.update_fix_attempt(&verified, Monitoring)
            .await
            .expect("cas")
    );
    assert!(
        !s.update_fix_attempt(&verified, Monitoring)
            .await
            .expect("cas"),
        "a repeated transition reports false"
    );
    assert_eq!(s.list_fix_attempts(a).await.expect("list"), vec![verified]);

    let unknown = attempt(a, 99, AwaitingDeploy, mins(1), None);
    not_found(
        s.update_fix_attempt(&unknown, AwaitingDeploy).await,
        "update of an attempt never created",
    );
    let mut ghost = unknown.clone();
    ghost.id = FixAttemptId::new();
    not_found(
        s.update_fix_attempt(&ghost, Monitoring).await,
        "update of an unknown id",
    );
}

async fn fix_attempts_in_status_and_due_verifications(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let a = issue(s, ws.id, "a").await.id;
    let b = issue(s, ws.id, "b").await.id;
    let m1 = attempt(a, 1, Monitoring, mins(0), Some(mins(60)));
    let m2 = attempt(b, 2, Monitoring, mins(1), Some(mins(180)));
    let m3 = attempt(a, 3, Monitoring, mins(2), Some(mins(120)));
    let w = attempt(b, 4, AwaitingDeploy, mins(3), None);
    let v = attempt(a, 5, Verified, mins(4), Some(mins(0)));
    let f = attempt(b, 6, Failed, mins(5), Some(mins(0)));
    // Inserted out of creation order.
    for x in [&m3, &w, &m1, &v, &m2, &f] {
        assert!(s.create_fix_attempt(x).await.expect("create").1);
    }

    let monitoring = s
        .fix_attempts_in_status(Monitoring, 10)
        .await
        .expect("in_status");
    assert_eq!(
        pr_numbers(&monitoring),
        [1, 2, 3],
        "oldest first, across issues"
    );
    assert_eq!(
        pr_numbers(
            &s.fix_attempts_in_status(Monitoring, 2)
                .await
                .expect("in_status")
        ),
        [1, 2],
        "limit"
    );
    assert_eq!(
        s.fix_attempts_in_status(AwaitingDeploy, 10)
            .await
            .expect("in_status"),
        vec![w.clone()]
    );
    assert_eq!(
        pr_numbers(
            &s.fix_attempts_in_status(Verified, 10)
                .await
                .expect("in_status")
        ),
        [5]
    );
    assert_eq!(
        pr_numbers(
            &s.fix_attempts_in_status(Failed, 10)
                .await
                .expect("in_status")
        ),
        [6]
    );

    let due = |now, limit| async move {
        s.due_verifications(now, limit)
            .await
            .expect("due_verifications")
            .iter()
            .map(|a| a.pr_number)
            .collect::<BTreeSet<i64>>()
    };
    assert_eq!(
        due(mins(30), 10).await,
        BTreeSet::new(),
        "no deadline has come"
    );
    assert_eq!(
        due(mins(60), 10).await,
        BTreeSet::from([1]),
        "a deadline equal to now has come"
    );
    assert_eq!(due(mins(150), 10).await, BTreeSet::from([1, 3]));
    let one = due(mins(150), 1).await;
    assert!(
        one.len() == 1 && one.is_subset(&BTreeSet::from([1, 3])),
        "limit: {one:?}"
    );
    assert_eq!(
        due(mins(10_000), 10).await,
        BTreeSet::from([1, 2, 3]),
        "only monitoring attempts, never verified or failed ones"
    );

    let mut verified = m1.clone();
    verified.status = Verified;
    assert!(
        s.update_fix_attempt(&verified, Monitoring)
            .await
            .expect("cas")
    );
    assert_eq!(
        due(mins(10_000), 10).await,
        BTreeSet::from([2, 3]),
        "a verified attempt is no longer due"
    );
    assert_eq!(
        pr_numbers(
            &s.fix_attempts_in_status(Verified, 10)
                .await
                .expect("in_status")
        ),
        [1, 5]
    );
}

async fn ingest_of_a_known_key_returns_the_newest_fix_attempt(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let created = s
        .ingest_error(ws.id, draft("loki", "fp-fix", 1, mins(1)))
        .await
        .expect("create");
    assert!(created.created);
    assert_eq!(created.latest_fix, None, "a new issue has no fix attempt");
    let id = created.issue.id;

    let again = s
        .ingest_error(ws.id, draft("loki", "fp-fix", 1, mins(2)))
        .await
        .expect("dedupe without attempts");
    assert!(!again.created);
    assert_eq!(again.latest_fix, None);

    let older = attempt(id, 7, Verified, mins(3), None);
    let newer = attempt(id, 8, Monitoring, mins(4), Some(mins(500)));
    s.create_fix_attempt(&older).await.expect("older");
    s.create_fix_attempt(&newer).await.expect("newer");
    let other = s
        .ingest_error(ws.id, draft("loki", "fp-other", 1, mins(5)))
        .await
        .expect("other issue");
    s.create_fix_attempt(&attempt(other.issue.id, 9, Monitoring, mins(6), None))
        .await
        .expect("attempt on the other issue");

    let seen = s
        .ingest_error(ws.id, draft("loki", "fp-fix", 2, mins(7)))
        .await
        .expect("dedupe with attempts");
    assert!(!seen.created);
    assert_eq!(seen.link.event_count, 4);
    assert_eq!(
        seen.latest_fix,
        Some(newer),
        "the newest attempt of this issue, as list_fix_attempts orders them"
    );
}

/// Issue 10 #5: an attempt's outcome and its effect on the issue commit together, so a crash
/// can never leave a verified attempt with an open issue (or a failed one with a closed issue).
async fn settle_fix_attempt_writes_attempt_issue_and_comment_together_or_nothing(
    store: Arc<dyn Store>,
) {
    use crate::issue::{IssuePatch, NewComment, Priority};
    let s = &*store;
    let ws = workspace(s).await;
    let done = column_id(s, ws.id, "Done").await;
    let i = issue(s, ws.id, "a").await;
    let monitoring = attempt(i.id, 7, Monitoring, mins(1), Some(mins(60)));
    s.create_fix_attempt(&monitoring).await.expect("create");
    let mut verified = monitoring.clone();
    verified.status = Verified;
    verified.checked_at = Some(mins(60));
    let comment = || NewComment {
        author: Some("Dispatch".into()),
        body: "## Fix Verified".into(),
    };
    let close = |version: i64| IssueUpdate {
        outbox: Default::default(),
        patch: IssuePatch {
            column_id: Some(done),
            ..IssuePatch::default()
        },
        history: Vec::new(),
        expected_version: Some(version),
        now: mins(60),
    };

    // The issue changed since it was read: nothing at all is written.
    let stale = s
        .settle_fix_attempt(
            &verified,
            Monitoring,
            close(i.version + 5),
            comment(),
            &actor(),
        )
        .await
        .expect_err("stale version");
    assert_eq!(stale.kind, ErrorKind::Conflict);
    assert_eq!(
        s.list_fix_attempts(i.id).await.expect("list")[0].status,
        Monitoring,
        "the attempt is not settled without its issue effect"
    );
    assert!(s.list_comments(i.id).await.expect("comments").is_empty());
    let unchanged = s
        .get_issue(ws.id, &crate::ids::IssueRef::Id(i.id))
        .await
        .expect("issue");
    assert_eq!(
        (unchanged.column_id, unchanged.version),
        (i.column_id, i.version)
    );

    // The attempt's status is not the expected one: nothing written, `None`.
    assert_eq!(
        s.settle_fix_attempt(
            &verified,
            AwaitingDeploy,
            close(i.version),
            comment(),
            &actor()
        )
        .await
        .expect("wrong status"),
        None
    );
    assert!(s.list_comments(i.id).await.expect("comments").is_empty());

    // Settled: all three at once.
    let (after, c) = s
        .settle_fix_attempt(&verified, Monitoring, close(i.version), comment(), &actor())
        .await
        .expect("settle")
        .expect("settled");
    assert_eq!(after.column_id, done);
    assert_eq!(after.version, i.version + 1);
    assert_eq!(c.body, "## Fix Verified");
    assert_eq!(s.list_comments(i.id).await.expect("comments"), vec![c]);
    assert_eq!(s.list_fix_attempts(i.id).await.expect("list")[0], verified);

    // Once only: a second settle (another process, a retried sweep) writes nothing.
    let mut failed = monitoring.clone();
    failed.status = Failed;
    let again = s
        .settle_fix_attempt(
            &failed,
            Monitoring,
            IssueUpdate {
                outbox: Default::default(),
                patch: IssuePatch {
                    priority: Some(Priority::P1),
                    ..IssuePatch::default()
                },
                history: Vec::new(),
                expected_version: None,
                now: mins(61),
            },
            comment(),
            &actor(),
        )
        .await
        .expect("second settle");
    assert_eq!(again, None);
    assert_eq!(s.list_comments(i.id).await.expect("comments").len(), 1);
    assert_eq!(
        s.list_fix_attempts(i.id).await.expect("list")[0].status,
        Verified
    );
}
