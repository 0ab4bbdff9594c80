//! OutboxStore: notifications and outbound webhooks waiting to be delivered.

use super::support::*;
use crate::issue::{Issue, IssuePatch, NewComment};
use crate::outbox::{
    Attempt, DeliveryFilter, DeliveryState, KIND_SLACK, KIND_WEBHOOK, NewDelivery, OutboxPlan,
    RetryPolicy, settle,
};

pub(super) fn cases() -> Vec<Case> {
    cases!("outbox":
        enqueue_is_idempotent_by_key,
        claim_respects_due_time_kind_lease_and_limit,
        settle_is_fenced_by_the_claim_token,
        a_reply_waits_for_its_thread_to_settle,
        retries_come_back_when_due_and_give_up,
        deliveries_are_listed_newest_first_with_filters,
        concurrent_claims_hand_out_each_delivery_once,
        settled_deliveries_are_pruned_after_the_retention_in_batches,
        an_update_and_its_outbox_rows_commit_or_roll_back_together,
        a_failing_outbox_row_rolls_back_a_fix_settlement,
        a_deletion_and_its_outbox_rows_commit_or_roll_back_together,
    )
}

fn new(kind: &str, key: &str, due: Timestamp) -> NewDelivery {
    NewDelivery {
        kind: kind.into(),
        target: if kind == KIND_SLACK {
            "C0123".into()
        } else {
            "https://hooks.example.com/in".into()
        },
        event: "ISSUE_CREATED".into(),
        payload: serde_json::json!({"text": key, "n": [1, 2, 3]}),
        idempotency_key: key.into(),
        after_key: None,
        secret: Some("s3cret".into()),
        issue_id: None,
        due_at: due,
    }
}

fn kinds(k: &[&str]) -> Vec<String> {
    k.iter().map(|s| s.to_string()).collect()
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        base: Duration::seconds(10),
        max_delay: Duration::seconds(600),
        max_retry_after: Duration::seconds(3600),
        max_attempts: 3,
        lease: Duration::seconds(60),
    }
}

async fn enqueue_is_idempotent_by_key(store: Arc<dyn Store>) {
    let s = &*store;
    let (a, fresh) = s
        .enqueue_delivery(&new(KIND_SLACK, "k1", t0()), t0())
        .await
        .expect("enqueue");
    assert!(fresh);
    assert_eq!(a.state, DeliveryState::Pending);
    assert_eq!(a.attempts, 0);
    assert_eq!(a.created_at, t0());
    assert_eq!(a.payload["n"], serde_json::json!([1, 2, 3]));
    assert_eq!(a.secret.as_deref(), Some("s3cret"));
    let mut other = new(KIND_WEBHOOK, "k1", mins(5));
    other.target = "https://elsewhere.example.com".into();
    let (b, fresh) = s.enqueue_delivery(&other, mins(1)).await.expect("again");
    assert!(!fresh, "the same key is the same delivery");
    assert_eq!(b, a, "returned unchanged");
    assert_eq!(s.get_delivery(a.id).await.expect("get"), a);
    assert_eq!(
        s.delivery_by_key("k1").await.expect("by key"),
        Some(a.clone())
    );
    assert_eq!(s.delivery_by_key("nope").await.expect("by key"), None);
    invalid(
        s.enqueue_delivery(&new(KIND_SLACK, " ", t0()), t0()).await,
        "idempotency_key",
        "a blank key",
    );
    let e = s
        .get_delivery(crate::ids::DeliveryId::new())
        .await
        .expect_err("unknown");
    assert_eq!(e.kind, ErrorKind::NotFound);
}

async fn claim_respects_due_time_kind_lease_and_limit(store: Arc<dyn Store>) {
    let s = &*store;
    for (k, due) in [("a", 0), ("b", 2), ("c", 1), ("later", 30)] {
        s.enqueue_delivery(&new(KIND_SLACK, k, mins(due)), t0())
            .await
            .expect("enqueue");
    }
    s.enqueue_delivery(&new(KIND_WEBHOOK, "w", t0()), t0())
        .await
        .expect("enqueue");
    let lease = Duration::seconds(60);
    let got = s
        .claim_deliveries(&kinds(&[KIND_SLACK]), mins(5), lease, 2)
        .await
        .expect("claim");
    let keys: Vec<&str> = got.iter().map(|d| d.idempotency_key.as_str()).collect();
    assert_eq!(
        keys,
        ["a", "c"],
        "oldest due first, at most the limit, only that kind"
    );
    for d in &got {
        assert_eq!(d.attempts, 1);
        assert_eq!(d.lease_until, Some(mins(5) + lease));
        assert!(d.lease_token.is_some());
    }
    let stored = s.get_delivery(got[0].id).await.expect("get");
    assert_eq!(
        stored.lease_token, got[0].lease_token,
        "the claim is stored"
    );
    let next = s
        .claim_deliveries(&kinds(&[KIND_SLACK]), mins(5), lease, 10)
        .await
        .expect("claim");
    let keys: Vec<&str> = next.iter().map(|d| d.idempotency_key.as_str()).collect();
    assert_eq!(keys, ["b"], "leased ones and not-yet-due ones stay");
    // A lease that ran out (its worker died) is claimed again, with a new token.
    let again = s
        .claim_deliveries(&kinds(&[KIND_SLACK]), mins(5) + lease, lease, 10)
        .await
        .expect("claim");
    let keys: Vec<&str> = again.iter().map(|d| d.idempotency_key.as_str()).collect();
    assert_eq!(keys, ["a", "c", "b"]);
    assert_eq!(again[0].attempts, 2);
    assert_ne!(again[0].lease_token, got[0].lease_token);
    let w = s
        .claim_deliveries(&kinds(&[KIND_WEBHOOK, KIND_SLACK]), mins(5), lease, 10)
        .await
        .expect("claim");
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].idempotency_key, "w");
    assert!(
        s.claim_deliveries(&[], mins(60), lease, 10)
            .await
            .expect("claim")
            .is_empty(),
        "no kinds, nothing"
    );
}

async fn settle_is_fenced_by_the_claim_token(store: Arc<dyn Store>) {
    let s = &*store;
    let lease = Duration::seconds(60);
    s.enqueue_delivery(&new(KIND_SLACK, "k", t0()), t0())
        .await
        .expect("enqueue");
    let first = s
        .claim_deliveries(&kinds(&[KIND_SLACK]), t0(), lease, 1)
        .await
        .expect("claim")
        .remove(0);
    // The first worker stalls past its lease; a second one claims and delivers.
    let second = s
        .claim_deliveries(&kinds(&[KIND_SLACK]), t0() + lease, lease, 1)
        .await
        .expect("claim")
        .remove(0);
    let mut done = second.clone();
    settle(
        &mut done,
        Attempt::Delivered {
            code: Some(200),
            response: Some("1700000000.000200".into()),
        },
        &policy(),
        t0() + lease,
        0.0,
    );
    let token2 = second.lease_token.expect("token");
    assert!(s.settle_delivery(&done, token2).await.expect("settle"));
    // The stalled worker's late outcome is not written.
    let mut late = first.clone();
    settle(
        &mut late,
        Attempt::Failed {
            code: Some(500),
            error: "late".into(),
        },
        &policy(),
        t0() + lease * 2,
        0.0,
    );
    let token1 = first.lease_token.expect("token");
    assert!(!s.settle_delivery(&late, token1).await.expect("settle"));
    assert!(
        !s.settle_delivery(&done, token2).await.expect("settle"),
        "a settled delivery is settled once"
    );
    let stored = s.get_delivery(first.id).await.expect("get");
    assert_eq!(stored.state, DeliveryState::Delivered);
    assert_eq!(stored.response.as_deref(), Some("1700000000.000200"));
    assert_eq!(stored.response_code, Some(200));
    assert_eq!(stored.attempts, 2);
    assert_eq!(stored.settled_at, Some(t0() + lease));
    assert!(
        s.claim_deliveries(&kinds(&[KIND_SLACK]), mins(600), lease, 10)
            .await
            .expect("claim")
            .is_empty(),
        "a delivered row is never claimed again"
    );
}

async fn a_reply_waits_for_its_thread_to_settle(store: Arc<dyn Store>) {
    let s = &*store;
    let lease = Duration::seconds(60);
    // The reply is due first, but its thread's first post is still pending.
    let mut reply = new(KIND_SLACK, "reply", t0());
    reply.after_key = Some("root".into());
    s.enqueue_delivery(&reply, t0()).await.expect("enqueue");
    s.enqueue_delivery(&new(KIND_SLACK, "root", mins(1)), t0())
        .await
        .expect("enqueue");
    // A reply whose thread names no delivery at all is not held up.
    let mut orphan = new(KIND_SLACK, "orphan", t0());
    orphan.after_key = Some("never-enqueued".into());
    s.enqueue_delivery(&orphan, t0()).await.expect("enqueue");

    let got = s
        .claim_deliveries(&kinds(&[KIND_SLACK]), mins(2), lease, 10)
        .await
        .expect("claim");
    let keys: Vec<&str> = got.iter().map(|d| d.idempotency_key.as_str()).collect();
    assert_eq!(
        keys,
        ["orphan", "root"],
        "the reply waits while its root is pending"
    );
    let root = got
        .iter()
        .find(|d| d.idempotency_key == "root")
        .expect("root")
        .clone();
    // Still claimed (not settled): the reply keeps waiting.
    assert!(
        s.claim_deliveries(&kinds(&[KIND_SLACK]), mins(2), lease, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let mut done = root.clone();
    settle(
        &mut done,
        Attempt::Delivered {
            code: Some(200),
            response: Some("111.222".into()),
        },
        &policy(),
        mins(2),
        0.0,
    );
    assert!(
        s.settle_delivery(&done, root.lease_token.expect("token"))
            .await
            .expect("settle")
    );
    let got = s
        .claim_deliveries(&kinds(&[KIND_SLACK]), mins(2), lease, 10)
        .await
        .expect("claim");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].idempotency_key, "reply");
    let parent = s
        .delivery_by_key(got[0].after_key.as_deref().expect("after"))
        .await
        .expect("parent")
        .expect("exists");
    assert_eq!(parent.response.as_deref(), Some("111.222"));
}

async fn retries_come_back_when_due_and_give_up(store: Arc<dyn Store>) {
    let s = &*store;
    let lease = Duration::seconds(60);
    s.enqueue_delivery(&new(KIND_WEBHOOK, "w", t0()), t0())
        .await
        .expect("enqueue");
    let mut now = t0();
    for attempt in 1..=3u32 {
        let mut got = s
            .claim_deliveries(&kinds(&[KIND_WEBHOOK]), now, lease, 10)
            .await
            .expect("claim");
        assert_eq!(got.len(), 1, "attempt {attempt} is claimable at {now}");
        let mut d = got.remove(0);
        assert_eq!(d.attempts, attempt);
        let token = d.lease_token.expect("token");
        settle(
            &mut d,
            Attempt::Retry {
                code: Some(429),
                error: "HTTP 429".into(),
                retry_after: Some(Duration::seconds(120)),
            },
            &policy(),
            now,
            0.0,
        );
        assert!(s.settle_delivery(&d, token).await.expect("settle"));
        let stored = s.get_delivery(d.id).await.expect("get");
        if attempt < 3 {
            assert_eq!(stored.state, DeliveryState::Pending);
            assert_eq!(
                stored.due_at,
                now + Duration::seconds(120),
                "Retry-After honoured"
            );
            assert_eq!(stored.lease_until, None);
            assert!(
                s.claim_deliveries(
                    &kinds(&[KIND_WEBHOOK]),
                    now + Duration::seconds(119),
                    lease,
                    10
                )
                .await
                .expect("claim")
                .is_empty(),
                "not before it is due"
            );
            now += Duration::seconds(120);
        } else {
            assert_eq!(stored.state, DeliveryState::Failed);
            assert_eq!(
                stored.last_error.as_deref(),
                Some("gave up after 3 attempts: HTTP 429")
            );
            assert_eq!(stored.response_code, Some(429));
        }
    }
    assert!(
        s.claim_deliveries(&kinds(&[KIND_WEBHOOK]), mins(600), lease, 10)
            .await
            .expect("claim")
            .is_empty()
    );
}

async fn deliveries_are_listed_newest_first_with_filters(store: Arc<dyn Store>) {
    let s = &*store;
    let issue = crate::ids::IssueId::new();
    for (i, kind) in [KIND_SLACK, KIND_WEBHOOK, KIND_WEBHOOK].iter().enumerate() {
        let mut d = new(kind, &format!("k{i}"), t0());
        if i == 2 {
            d.issue_id = Some(issue);
            d.event = "STATUS_CHANGED".into();
        }
        s.enqueue_delivery(&d, mins(i as i64))
            .await
            .expect("enqueue");
    }
    let all = s
        .list_deliveries(&DeliveryFilter::default())
        .await
        .expect("list");
    let keys: Vec<&str> = all.iter().map(|d| d.idempotency_key.as_str()).collect();
    assert_eq!(keys, ["k2", "k1", "k0"]);
    let hooks = s
        .list_deliveries(&DeliveryFilter {
            kind: Some(KIND_WEBHOOK.into()),
            limit: 1,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].idempotency_key, "k2");
    let of_issue = s
        .list_deliveries(&DeliveryFilter {
            issue_id: Some(issue),
            event: Some("STATUS_CHANGED".into()),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(of_issue.len(), 1);
    let delivered = s
        .list_deliveries(&DeliveryFilter {
            state: Some(DeliveryState::Delivered),
            ..Default::default()
        })
        .await
        .expect("list");
    assert!(delivered.is_empty());
}

async fn concurrent_claims_hand_out_each_delivery_once(store: Arc<dyn Store>) {
    let s = &*store;
    for i in 0..40 {
        s.enqueue_delivery(&new(KIND_WEBHOOK, &format!("c{i}"), t0()), t0())
            .await
            .expect("enqueue");
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(4));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut mine = Vec::new();
            for _ in 0..6 {
                let got = loop {
                    match store
                        .claim_deliveries(
                            &kinds(&[KIND_WEBHOOK]),
                            mins(1),
                            Duration::seconds(60),
                            4,
                        )
                        .await
                    {
                        Ok(g) => break g,
                        Err(e) if e.kind == ErrorKind::Unavailable => continue,
                        Err(e) => panic!("claim: {e}"),
                    }
                };
                mine.extend(got.into_iter().map(|d| d.idempotency_key));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "a delivery was handed out twice");
    assert_eq!(n, 40, "every delivery was handed out");
}

/// Claims what is due at `at` and settles the named deliveries with their attempts (the others
/// stay claimed and pending).
async fn settle_keys(s: &dyn Store, at: Timestamp, settled: Vec<(&str, Attempt)>) {
    let got = s
        .claim_deliveries(
            &kinds(&[KIND_SLACK, KIND_WEBHOOK]),
            at,
            Duration::seconds(60),
            100,
        )
        .await
        .expect("claim");
    for (key, attempt) in settled {
        let d = got
            .iter()
            .find(|d| d.idempotency_key == key)
            .unwrap_or_else(|| panic!("{key} claimable at {at}"));
        let mut done = d.clone();
        settle(&mut done, attempt, &policy(), at, 0.0);
        assert!(
            s.settle_delivery(&done, d.lease_token.expect("token"))
                .await
                .expect("settle")
        );
    }
}

async fn settled_deliveries_are_pruned_after_the_retention_in_batches(store: Arc<dyn Store>) {
    let s = &*store;
    let delivered = || Attempt::Delivered {
        code: Some(200),
        response: Some("ok".into()),
    };
    // Three delivered and one dead long ago, one delivered recently, one still pending, and a
    // root whose reply is still pending (the reply waits on it for its thread).
    for (key, due) in [("d1", t0()), ("d2", t0()), ("d3", t0()), ("dead", t0())] {
        s.enqueue_delivery(&new(KIND_WEBHOOK, key, due), t0())
            .await
            .expect("enqueue");
    }
    s.enqueue_delivery(&new(KIND_SLACK, "root", t0()), t0())
        .await
        .expect("enqueue");
    settle_keys(
        s,
        mins(1),
        vec![
            ("d1", delivered()),
            ("d2", delivered()),
            ("d3", delivered()),
            ("root", delivered()),
            (
                "dead",
                Attempt::Failed {
                    code: Some(410),
                    error: "gone".into(),
                },
            ),
        ],
    )
    .await;
    let mut reply = new(KIND_SLACK, "reply", mins(10_000));
    reply.after_key = Some("root".into());
    s.enqueue_delivery(&reply, mins(2)).await.expect("enqueue");
    s.enqueue_delivery(&new(KIND_WEBHOOK, "pending", mins(2)), mins(2))
        .await
        .expect("enqueue");
    s.enqueue_delivery(&new(KIND_WEBHOOK, "recent", mins(3)), mins(3))
        .await
        .expect("enqueue");
    settle_keys(s, mins(3), vec![("recent", delivered())]).await;

    // Nothing is older than the cut-off yet.
    assert_eq!(s.prune_outbox(t0(), 100).await.expect("prune"), 0);
    // Bounded batches: two, then the other two; the root and the pending ones stay.
    let before = mins(2);
    assert_eq!(s.prune_outbox(before, 2).await.expect("prune"), 2);
    assert_eq!(s.prune_outbox(before, 2).await.expect("prune"), 2);
    assert_eq!(s.prune_outbox(before, 2).await.expect("prune"), 0);
    let left: Vec<String> = sorted(
        s.list_deliveries(&DeliveryFilter::default())
            .await
            .expect("list")
            .into_iter()
            .map(|d| d.idempotency_key)
            .collect(),
    );
    assert_eq!(left, ["pending", "recent", "reply", "root"]);
    for key in ["d1", "d2", "d3", "dead"] {
        assert_eq!(s.delivery_by_key(key).await.expect("by key"), None, "{key}");
    }
    // A pruned key is free again (it was delivered long ago).
    let (_, fresh) = s
        .enqueue_delivery(&new(KIND_WEBHOOK, "d1", mins(5)), mins(5))
        .await
        .expect("enqueue");
    assert!(fresh);
    // Once the reply has settled, its root goes too.
    settle_keys(s, mins(10_000), vec![("reply", delivered())]).await;
    assert_eq!(
        s.prune_outbox(mins(10_000), 100).await.expect("prune"),
        2,
        "the root and the recent one; the reply's last try is not older than the cut-off"
    );
    assert!(s.delivery_by_key("root").await.expect("by key").is_none());
    assert!(s.delivery_by_key("reply").await.expect("by key").is_some());
}

/// A plan rendering one webhook per update, keyed by the version the update leaves (as the
/// engine's `issue:vN` keys are), and, when `broken`, a second row that does not validate.
fn plan(broken: bool) -> OutboxPlan {
    OutboxPlan::new(move |issue: &Issue| {
        let mut d = new(
            KIND_WEBHOOK,
            &format!("{}:v{}", issue.id, issue.version),
            t0(),
        );
        d.issue_id = Some(issue.id);
        d.payload = serde_json::json!({ "title": issue.title });
        let mut rows = vec![d];
        if broken {
            rows.push(new(KIND_WEBHOOK, "", t0()));
        }
        rows
    })
}

fn titled(
    title: &str,
    expected_version: Option<i64>,
    outbox: OutboxPlan,
    now: Timestamp,
) -> IssueUpdate {
    IssueUpdate {
        patch: IssuePatch {
            title: Some(title.into()),
            ..IssuePatch::default()
        },
        history: Vec::new(),
        expected_version,
        now,
        outbox,
    }
}

async fn an_update_and_its_outbox_rows_commit_or_roll_back_together(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "before").await;

    // Committed: the issue and its row, rendered from the issue as the update left it.
    let updated = s
        .update_issue(i.id, titled("after", Some(i.version), plan(false), mins(1)))
        .await
        .expect("update with an outbox plan");
    assert_eq!(updated.version, i.version + 1);
    let key = format!("{}:v{}", i.id, updated.version);
    let row = s
        .delivery_by_key(&key)
        .await
        .expect("delivery_by_key")
        .expect("the update's outbox row is stored with it");
    assert_eq!(row.state, DeliveryState::Pending);
    assert_eq!(row.issue_id, Some(i.id));
    assert_eq!(
        row.payload["title"], "after",
        "rendered from the updated issue"
    );
    assert_eq!(row.created_at, mins(1), "stored at the update's time");

    // Refused (stale version): neither the change nor a row.
    conflict(
        s.update_issue(i.id, titled("lost", Some(i.version), plan(false), mins(2)))
            .await,
        "stale expected_version",
    );
    assert_eq!(get(s, &i).await, updated, "a refused update writes nothing");
    let lost = format!("{}:v{}", i.id, i.version + 1);
    assert_eq!(
        s.delivery_by_key(&lost)
            .await
            .expect("by key")
            .map(|d| d.id),
        Some(row.id),
        "only the committed update's row has that key"
    );
    let all = s
        .list_deliveries(&DeliveryFilter::default())
        .await
        .expect("list");
    assert_eq!(all.len(), 1, "{all:?}");

    // A row that cannot be stored fails the change: the update rolls back with it, and the
    // valid row rendered beside it is not stored either.
    invalid(
        s.update_issue(i.id, titled("half", None, plan(true), mins(3)))
            .await,
        "idempotency_key",
        "an outbox row that does not validate",
    );
    assert_eq!(get(s, &i).await, updated, "the update rolled back");
    let next = format!("{}:v{}", i.id, updated.version + 1);
    assert_eq!(s.delivery_by_key(&next).await.expect("by key"), None);

    // A key already stored is kept as it is; the update commits.
    let again = s
        .update_issue(i.id, titled("again", None, plan(false), mins(4)))
        .await
        .expect("update");
    let mut pre = new(
        KIND_WEBHOOK,
        &format!("{}:v{}", i.id, again.version + 1),
        t0(),
    );
    pre.payload = serde_json::json!({ "title": "enqueued earlier" });
    s.enqueue_delivery(&pre, mins(5)).await.expect("enqueue");
    let last = s
        .update_issue(i.id, titled("last", None, plan(false), mins(6)))
        .await
        .expect("an update whose row's key is stored");
    assert_eq!(last.title, "last");
    let kept = s
        .delivery_by_key(&pre.idempotency_key)
        .await
        .expect("by key")
        .expect("kept");
    assert_eq!(kept.payload["title"], "enqueued earlier");
    assert_eq!(
        s.list_deliveries(&DeliveryFilter::default())
            .await
            .expect("list")
            .len(),
        3
    );
}

async fn a_failing_outbox_row_rolls_back_a_fix_settlement(store: Arc<dyn Store>) {
    use crate::verify::VerificationStatus::{Monitoring, Verified};
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "a").await;
    let monitoring = attempt(i.id, 7, Monitoring, mins(1), Some(mins(60)));
    s.create_fix_attempt(&monitoring).await.expect("create");
    let mut verified = monitoring.clone();
    verified.status = Verified;
    let comment = || NewComment {
        author: Some("Dispatch".into()),
        body: "## Fix Verified".into(),
    };
    invalid(
        s.settle_fix_attempt(
            &verified,
            Monitoring,
            titled("closed", Some(i.version), plan(true), mins(60)),
            comment(),
            &actor(),
        )
        .await,
        "idempotency_key",
        "a settlement whose outbox row does not validate",
    );
    assert_eq!(get(s, &i).await, i, "the issue is unchanged");
    assert_eq!(s.list_comments(i.id).await.expect("comments"), vec![]);
    assert_eq!(
        s.list_fix_attempts(i.id).await.expect("list")[0],
        monitoring
    );

    let (closed, _) = s
        .settle_fix_attempt(
            &verified,
            Monitoring,
            titled("closed", Some(i.version), plan(false), mins(60)),
            comment(),
            &actor(),
        )
        .await
        .expect("settle")
        .expect("settled");
    let key = format!("{}:v{}", i.id, closed.version);
    assert!(
        s.delivery_by_key(&key).await.expect("by key").is_some(),
        "the settlement's row is stored with it"
    );
    assert_eq!(s.list_fix_attempts(i.id).await.expect("list")[0], verified);
}

async fn a_deletion_and_its_outbox_rows_commit_or_roll_back_together(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "doomed").await;
    let key = format!("{}:v{}", i.id, i.version);

    // A row that cannot be stored fails the deletion: the issue stays, no row.
    invalid(
        s.delete_issue(i.id, mins(1), &plan(true)).await,
        "idempotency_key",
        "a deletion whose outbox row does not validate",
    );
    assert_eq!(get(s, &i).await, i, "the deletion rolled back");
    assert_eq!(s.delivery_by_key(&key).await.expect("by key"), None);

    // Committed: the issue is gone, its row (rendered from the issue as it was) stored.
    let deleted = s
        .delete_issue(i.id, mins(2), &plan(false))
        .await
        .expect("delete with an outbox plan");
    assert_eq!(deleted.id, i.id);
    not_found(s.get_issue(ws.id, &i.id.into()).await, "the deleted issue");
    let row = s
        .delivery_by_key(&key)
        .await
        .expect("by key")
        .expect("the deletion's row is stored with it");
    assert_eq!(row.payload["title"], "doomed");
    assert_eq!(row.issue_id, Some(i.id), "the row outlives its issue");

    // Nothing to delete: no row either.
    not_found(
        s.delete_issue(i.id, mins(3), &plan(false)).await,
        "deleting twice",
    );
    assert_eq!(
        s.list_deliveries(&DeliveryFilter::default())
            .await
            .expect("list")
            .len(),
        1
    );
}
