//! Notifications stored by the change they report (issue 10): an issue's creation (by a person
//! or by an error alert), a comment, a spawn reservation and a run update each store the outbox
//! rows their plan renders in their own transaction — both or neither.

use super::support::*;
use crate::ids::IssueId;
use crate::issue::{Comment, Issue, NewComment, NewIssue};
use crate::outbox::{DeliveryFilter, KIND_WEBHOOK, NewDelivery, OutboxPlan};
use crate::ports::{RunUpdate, SpawnReservation};
use crate::run::{RunPatch, RunStatus, WorkflowKind};
use serde_json::{Value, json};

pub(super) fn cases() -> Vec<Case> {
    cases!("outbox_tx":
        a_creation_and_its_outbox_rows_commit_or_roll_back_together,
        a_comment_and_its_outbox_rows_commit_or_roll_back_together,
        an_ingest_stores_the_rows_of_the_issue_it_creates_and_only_then,
        concurrent_ingests_each_store_their_own_rows,
        a_reservation_and_its_outbox_rows_commit_or_roll_back_together,
        a_run_update_and_its_outbox_rows_commit_or_roll_back_together,
    )
}

/// One webhook row keyed `key`, carrying `payload`; with `broken`, a second row that does not
/// validate (an empty key), which must fail the whole change.
fn rows(key: String, payload: Value, broken: bool) -> Vec<NewDelivery> {
    let row = |key: String| NewDelivery {
        kind: KIND_WEBHOOK.into(),
        target: "https://hooks.example.com/in".into(),
        event: "TEST".into(),
        payload: payload.clone(),
        idempotency_key: key,
        after_key: None,
        secret: None,
        issue_id: None,
        due_at: t0(),
    };
    let mut out = vec![row(key)];
    if broken {
        out.push(row(String::new()));
    }
    out
}

fn created(broken: bool) -> OutboxPlan {
    OutboxPlan::new(move |i: &Issue| {
        rows(
            format!("created:{}", i.id),
            json!({"identifier": i.identifier, "title": i.title}),
            broken,
        )
    })
}

async fn all_keys(s: &dyn Store) -> Vec<String> {
    sorted(
        s.list_deliveries(&DeliveryFilter::default())
            .await
            .expect("list deliveries")
            .into_iter()
            .map(|d| d.idempotency_key)
            .collect(),
    )
}

async fn payload(s: &dyn Store, key: &str) -> Value {
    s.delivery_by_key(key)
        .await
        .expect("delivery_by_key")
        .unwrap_or_else(|| panic!("no row {key}"))
        .payload
}

async fn a_creation_and_its_outbox_rows_commit_or_roll_back_together(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;

    invalid(
        s.create_issue(
            ws.id,
            NewIssue::titled("lost"),
            &actor(),
            mins(1),
            &created(true),
        )
        .await,
        "idempotency_key",
        "a creation whose outbox row does not validate",
    );
    let none = s
        .list_issues(ws.id, &Default::default())
        .await
        .expect("list issues");
    assert_eq!(none, vec![], "the creation rolled back");
    assert_eq!(all_keys(s).await, Vec::<String>::new());

    let i = s
        .create_issue(
            ws.id,
            NewIssue::titled("kept"),
            &actor(),
            mins(2),
            &created(false),
        )
        .await
        .expect("create with an outbox plan");
    assert_eq!(
        i.number, 1,
        "the refused creation did not use up an identifier"
    );
    let key = format!("created:{}", i.id);
    assert_eq!(all_keys(s).await, vec![key.clone()]);
    let p = payload(s, &key).await;
    assert_eq!(
        p["identifier"],
        i.identifier.as_str(),
        "rendered from the created issue"
    );
    assert_eq!(p["title"], "kept");
    let row = s.delivery_by_key(&key).await.expect("by key").expect("row");
    assert_eq!(row.created_at, mins(2), "stored at the creation's time");
}

async fn a_comment_and_its_outbox_rows_commit_or_roll_back_together(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "commented").await;
    let plan = |broken: bool| {
        OutboxPlan::new(move |c: &Comment| {
            rows(
                format!("comment:{}", c.id),
                json!({"body": c.body, "issue": c.issue_id}),
                broken,
            )
        })
    };
    let body = |b: &str| NewComment {
        author: Some("ann".into()),
        body: b.into(),
    };

    invalid(
        s.add_comment(i.id, body("lost"), &actor(), mins(1), &plan(true))
            .await,
        "idempotency_key",
        "a comment whose outbox row does not validate",
    );
    assert_eq!(s.list_comments(i.id).await.expect("comments"), vec![]);
    assert_eq!(get(s, &i).await, i, "the issue is unchanged");
    assert_eq!(all_keys(s).await, Vec::<String>::new());

    let c = s
        .add_comment(i.id, body("kept"), &actor(), mins(2), &plan(false))
        .await
        .expect("comment with an outbox plan");
    let key = format!("comment:{}", c.id);
    assert_eq!(all_keys(s).await, vec![key.clone()]);
    let p = payload(s, &key).await;
    assert_eq!(p["body"], "kept", "rendered from the stored comment");
    assert_eq!(p["issue"], json!(i.id));
    assert_eq!(s.list_comments(i.id).await.expect("comments"), vec![c]);

    not_found(
        s.add_comment(
            IssueId::new(),
            body("nowhere"),
            &actor(),
            mins(3),
            &plan(false),
        )
        .await,
        "a comment on an unknown issue",
    );
    assert_eq!(all_keys(s).await.len(), 1);
}

async fn an_ingest_stores_the_rows_of_the_issue_it_creates_and_only_then(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let with = |key: &str, count: u64, at: Timestamp, broken: bool| {
        let mut d = draft("loki", key, count, at);
        d.outbox = created(broken);
        d
    };

    // The first sighting creates the issue and its row.
    let first = s
        .ingest_error(ws.id, with("fp-a", 3, mins(1), false))
        .await
        .expect("ingest");
    assert!(first.created);
    let key = format!("created:{}", first.issue.id);
    assert_eq!(all_keys(s).await, vec![key.clone()]);
    assert_eq!(
        payload(s, &key).await["identifier"],
        first.issue.identifier.as_str()
    );

    // A known key creates nothing: its plan is not rendered (a broken one included).
    let again = s
        .ingest_error(ws.id, with("fp-a", 2, mins(2), true))
        .await
        .expect("a known key with a plan that would not validate");
    assert!(!again.created);
    assert_eq!(again.link.event_count, 5);
    assert_eq!(all_keys(s).await, vec![key.clone()]);

    // A new key whose row is refused stores neither the issue, its link nor a row.
    invalid(
        s.ingest_error(ws.id, with("fp-b", 1, mins(3), true)).await,
        "idempotency_key",
        "an ingest whose outbox row does not validate",
    );
    assert_eq!(s.get_link("loki", "fp-b").await.expect("get_link"), None);
    let issues = s
        .list_issues(ws.id, &Default::default())
        .await
        .expect("list");
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(all_keys(s).await, vec![key]);
}

async fn concurrent_ingests_each_store_their_own_rows(store: Arc<dyn Store>) {
    let ws = workspace(&*store).await;
    // Eight new keys at once (batched together by the SQL stores' group commit), one of them
    // with a refused row: the other seven commit with their rows, that one stores nothing.
    let handles: Vec<_> = (0..8)
        .map(|n| {
            let s = store.clone();
            tokio::spawn(async move {
                let mut d = draft("loki", &format!("fp-{n}"), 1, mins(1));
                d.outbox = created(n == 5);
                s.ingest_error(ws.id, d).await
            })
        })
        .collect();
    let results = join_all(handles).await;
    let s = &*store;
    let mut expected = Vec::new();
    for (n, r) in results.into_iter().enumerate() {
        if n == 5 {
            invalid(r, "idempotency_key", "the one refused row");
            assert_eq!(s.get_link("loki", "fp-5").await.expect("get_link"), None);
        } else {
            let o = r.unwrap_or_else(|e| panic!("ingest {n}: {e}"));
            assert!(o.created);
            expected.push(format!("created:{}", o.issue.id));
        }
    }
    assert_eq!(all_keys(s).await, sorted(expected));
}

fn reserved(broken: bool) -> OutboxPlan<SpawnReservation> {
    OutboxPlan::new(move |r: &SpawnReservation| match &r.run {
        Some(run) => rows(
            format!("started:{}", run.id),
            json!({"run": run.id, "spawn_status": r.issue.spawn_status}),
            broken,
        ),
        None => Vec::new(),
    })
}

async fn a_reservation_and_its_outbox_rows_commit_or_roll_back_together(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "spawned").await;
    let req = |broken: bool| {
        let mut r = spawn(i.id, WorkflowKind::PrdInvestigate, permissive());
        r.outbox = reserved(broken);
        r
    };

    invalid(
        s.reserve_spawn(&req(true), mins(1)).await,
        "idempotency_key",
        "a reservation whose outbox row does not validate",
    );
    assert_eq!(s.list_runs(i.id).await.expect("runs"), vec![]);
    assert_eq!(get(s, &i).await, i, "the issue is unchanged");
    assert_eq!(all_keys(s).await, Vec::<String>::new());

    let r = s
        .reserve_spawn(&req(false), mins(2))
        .await
        .expect("reserve with an outbox plan");
    let run = r.run.clone().expect("allowed");
    let key = format!("started:{}", run.id);
    assert_eq!(all_keys(s).await, vec![key.clone()]);
    let p = payload(s, &key).await;
    assert_eq!(p["run"], json!(run.id));
    assert_eq!(
        p["spawn_status"],
        json!(r.issue.spawn_status),
        "rendered from the issue as the reservation left it"
    );

    // Refused (an active run): the plan sees no run and renders nothing.
    let refused = s
        .reserve_spawn(&req(false), mins(3))
        .await
        .expect("reserve");
    assert!(refused.run.is_none());
    assert_eq!(all_keys(s).await, vec![key]);
}

fn run_plan(broken: bool) -> OutboxPlan<RunUpdate> {
    OutboxPlan::new(move |u: &RunUpdate| {
        rows(
            format!("run:{}:{}", u.run.id, u.run.cost_usd),
            json!({
                "ended": u.ended,
                "cost_before": u.cost_before_usd,
                "cost": u.run.cost_usd,
                "issue_cost": u.issue.cost_usd,
            }),
            broken,
        )
    })
}

async fn a_run_update_and_its_outbox_rows_commit_or_roll_back_together(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "ran").await;
    let run = running(s, i.id, WorkflowKind::PrdInvestigate, mins(1)).await;
    let costing = |cost: f64, status: Option<RunStatus>, broken: bool| RunPatch {
        cost_usd: Some(cost),
        status,
        outbox: run_plan(broken),
        ..RunPatch::default()
    };

    let first = s
        .update_run(run.id, &costing(1.5, None, false), &actor(), mins(2))
        .await
        .expect("update with an outbox plan");
    assert_eq!(first.cost_before_usd, 0.0);
    let p = payload(s, &format!("run:{}:1.5", run.id)).await;
    assert_eq!(p["cost_before"], 0.0);
    assert_eq!(
        p["issue_cost"], 1.5,
        "rendered from the issue the update left"
    );
    assert_eq!(p["ended"], false);

    // Refused: the run, the issue's totals and the rows stay as they were.
    let issue_before = get(s, &i).await;
    invalid(
        s.update_run(
            run.id,
            &costing(9.0, Some(RunStatus::Completed), true),
            &actor(),
            mins(3),
        )
        .await,
        "idempotency_key",
        "a run update whose outbox row does not validate",
    );
    assert_eq!(s.get_run(run.id).await.expect("run"), first.run);
    assert_eq!(get(s, &i).await, issue_before, "the issue is unchanged");
    assert_eq!(all_keys(s).await.len(), 1);

    let ended = s
        .update_run(
            run.id,
            &costing(2.0, Some(RunStatus::Completed), false),
            &actor(),
            mins(4),
        )
        .await
        .expect("end with an outbox plan");
    assert!(ended.ended);
    assert_eq!(ended.cost_before_usd, 1.5);
    let p = payload(s, &format!("run:{}:2", run.id)).await;
    assert_eq!(p["ended"], true);
    assert_eq!(p["cost_before"], 1.5);
    assert_eq!(all_keys(s).await.len(), 2);
}
