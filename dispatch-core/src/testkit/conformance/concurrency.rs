//! The atomicity rules of DESIGN §3 under real parallelism: tasks on a multi-thread runtime,
//! released together by a barrier, race for the same decision.

use super::support::*;
use crate::gate::{Decision, SpawnPolicy};
use crate::ids::{IssueId, RunId};
use crate::issue::{HistoryAction, IssueFilter, SpawnStatus};
use crate::run::{RunPatch, RunStatus, WorkflowKind};
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::Barrier;

pub(super) fn cases() -> Vec<Case> {
    cases!("concurrency":
        concurrent_ensure_workspace_creates_one,
        concurrent_ingests_of_one_fingerprint_make_one_issue,
        concurrent_ingests_of_many_keys_answer_each_call_in_some_serial_order,
        concurrent_creates_allocate_unique_gapless_identifiers,
        concurrent_reserves_on_one_issue_allow_one_run,
        concurrent_reserves_never_exceed_max_concurrent,
        concurrent_reserves_never_exceed_the_daily_budget,
        concurrent_claimers_claim_each_run_once,
        concurrent_ends_of_one_run_end_it_once,
    )
}

/// Starts `n` tasks that all wait on one barrier, then run `f(i)`; returns their results in order.
async fn race<T, F, Fut>(store: &Arc<dyn Store>, n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Arc<dyn Store>, usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let b = barrier.clone();
        let fut = f(store.clone(), i);
        handles.push(tokio::spawn(async move {
            b.wait().await;
            fut.await
        }));
    }
    join_all(handles).await
}

async fn issues(s: &dyn Store, ws: crate::ids::WorkspaceId, n: usize) -> Vec<IssueId> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(issue(s, ws, &format!("issue {i}")).await.id);
    }
    out
}

async fn concurrent_ensure_workspace_creates_one(store: Arc<dyn Store>) {
    let got = race(&store, 16, |s, _| async move {
        s.ensure_workspace("Acme", PREFIX, t0())
            .await
            .expect("ensure_workspace")
    })
    .await;
    let ids: BTreeSet<_> = got.iter().map(|w| w.id).collect();
    assert_eq!(ids.len(), 1, "exactly one workspace results");
    let ws = got[0].id;
    assert_eq!(
        store.list_columns(ws).await.expect("columns").len(),
        7,
        "default columns created once"
    );
    assert_eq!(
        store.list_labels(ws).await.expect("labels").len(),
        7,
        "default labels created once"
    );
}

async fn concurrent_ingests_of_one_fingerprint_make_one_issue(store: Arc<dyn Store>) {
    const N: usize = 200;
    let ws = workspace(&*store).await.id;
    let count = |i: usize| (i % 3 + 1) as u64;
    let seen = |i: usize| t0() + Duration::seconds(i as i64);
    let outs = race(&store, N, |s, i| async move {
        s.ingest_error(ws, draft("loki", "fp-storm", count(i), seen(i)))
            .await
            .expect("ingest_error")
    })
    .await;

    let created: Vec<usize> = (0..N).filter(|&i| outs[i].created).collect();
    assert_eq!(created.len(), 1, "exactly one call creates the issue");
    let issue_ids: BTreeSet<IssueId> = outs.iter().map(|o| o.issue.id).collect();
    assert_eq!(issue_ids.len(), 1, "every call sees the same issue");
    let link_ids: BTreeSet<_> = outs.iter().map(|o| o.link.id).collect();
    assert_eq!(link_ids.len(), 1, "and the same link");

    let total: u64 = (0..N).map(count).sum();
    let link = store
        .get_link("loki", "fp-storm")
        .await
        .expect("get_link")
        .expect("the link");
    assert_eq!(link.event_count, total, "every count is summed");
    assert_eq!(
        link.last_seen_at,
        seen(N - 1),
        "last_seen_at is the latest sighting"
    );
    assert_eq!(
        link.first_seen_at,
        seen(created[0]),
        "first_seen_at is the creating call's"
    );
    let issue_id = *issue_ids.iter().next().expect("one");
    assert_eq!(
        store.links_for_issue(issue_id).await.expect("links").len(),
        1
    );
    let all = store
        .list_issues(ws, &IssueFilter::default())
        .await
        .expect("list_issues");
    assert_eq!(all.len(), 1, "one issue per fingerprint");
    assert_eq!(all[0].identifier, "ACME-1");
    assert_eq!(
        store.get_workspace(ws).await.expect("ws").next_issue_number,
        2,
        "no identifier burnt by the losers"
    );
}

/// A burst over several keys, two of them known before: every call's answer must be one that a
/// serial execution could give (stores may answer such bursts in batches).
async fn concurrent_ingests_of_many_keys_answer_each_call_in_some_serial_order(
    store: Arc<dyn Store>,
) {
    const N: usize = 180;
    const KEYS: usize = 9;
    let ws = workspace(&*store).await.id;
    for k in 0..2 {
        let o = store
            .ingest_error(ws, draft("loki", &format!("burst-{k}"), 5, t0()))
            .await
            .expect("known before the burst");
        assert!(o.created);
    }
    let outs = race(&store, N, |s, i| async move {
        let key = format!("burst-{}", i % KEYS);
        let o = s
            .ingest_error(
                ws,
                draft("loki", &key, 1, t0() + Duration::seconds(i as i64)),
            )
            .await
            .expect("ingest_error");
        (key, o)
    })
    .await;

    let mut by_key: BTreeMap<String, Vec<&crate::ports::IngestOutcome>> = BTreeMap::new();
    for (k, o) in &outs {
        by_key.entry(k.clone()).or_default().push(o);
    }
    assert_eq!(by_key.len(), KEYS);
    let mut identifiers = BTreeSet::new();
    for (k, calls) in &by_key {
        let known_before = k == "burst-0" || k == "burst-1";
        let base = if known_before { 5 } else { 0 };
        let mut counts: Vec<u64> = calls.iter().map(|o| o.link.event_count).collect();
        counts.sort_unstable();
        let expected: Vec<u64> = (base + 1..=base + calls.len() as u64).collect();
        assert_eq!(
            counts, expected,
            "{k}: each call sees the count after its own event, no two the same"
        );
        let created = calls.iter().filter(|o| o.created).count();
        assert_eq!(
            created,
            usize::from(!known_before),
            "{k}: created at most once"
        );
        let ids: BTreeSet<IssueId> = calls.iter().map(|o| o.issue.id).collect();
        assert_eq!(ids.len(), 1, "{k}: one issue for every call");
        identifiers.insert(calls[0].issue.identifier.clone());
        let link = store
            .get_link("loki", k)
            .await
            .expect("get_link")
            .expect("the link");
        assert_eq!(
            link.event_count,
            base + calls.len() as u64,
            "{k}: stored sum"
        );
    }
    let expected: BTreeSet<String> = (1..=KEYS).map(|n| format!("ACME-{n}")).collect();
    assert_eq!(identifiers, expected, "unique, gapless identifiers");
    assert_eq!(
        store.get_workspace(ws).await.expect("ws").next_issue_number,
        KEYS as i64 + 1
    );
}

async fn concurrent_creates_allocate_unique_gapless_identifiers(store: Arc<dyn Store>) {
    const N: usize = 100;
    let ws = workspace(&*store).await.id;
    let made = race(&store, N, |s, i| async move {
        s.create_issue(
            ws,
            crate::issue::NewIssue::titled(format!("issue {i}")),
            &actor(),
            t0(),
            &Default::default(),
        )
        .await
        .expect("create_issue")
    })
    .await;
    let numbers: BTreeSet<i64> = made.iter().map(|i| i.number).collect();
    assert_eq!(
        numbers,
        (1..=N as i64).collect::<BTreeSet<_>>(),
        "unique and gapless 1..={N}"
    );
    for i in &made {
        assert_eq!(i.identifier, format!("ACME-{}", i.number));
    }
    assert_eq!(
        store.get_workspace(ws).await.expect("ws").next_issue_number,
        N as i64 + 1
    );
    assert_eq!(
        store
            .list_issues(ws, &IssueFilter::default())
            .await
            .expect("list")
            .len(),
        N
    );
}

async fn concurrent_reserves_on_one_issue_allow_one_run(store: Arc<dyn Store>) {
    const N: usize = 30;
    let ws = workspace(&*store).await.id;
    let id = issue(&*store, ws, "contended").await.id;
    let outs = race(&store, N, |s, _| async move {
        s.reserve_spawn(
            &spawn(id, WorkflowKind::ErrorFix, SpawnPolicy::permissive()),
            mins(1),
        )
        .await
        .expect("reserve_spawn")
    })
    .await;
    let codes: BTreeMap<&str, usize> = outs.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(code(&r.decision)).or_default() += 1;
        m
    });
    assert_eq!(
        codes,
        BTreeMap::from([("allow", 1), ("already_running", N - 1)])
    );
    assert_eq!(
        store.list_runs(id).await.expect("list_runs").len(),
        1,
        "one run per issue"
    );
    let now = store.get_issue(ws, &id.into()).await.expect("get_issue");
    assert_eq!(
        (now.spawn_attempt_count, now.spawn_status),
        (1, Some(SpawnStatus::Queued))
    );
}

async fn concurrent_reserves_never_exceed_max_concurrent(store: Arc<dyn Store>) {
    const N: usize = 100;
    let ws = workspace(&*store).await.id;
    let ids = issues(&*store, ws, N).await;
    let mut policy = SpawnPolicy::permissive();
    policy.max_concurrent_error = 7;
    let outs = {
        let ids = ids.clone();
        race(&store, N, move |s, i| {
            let req = spawn(ids[i], WorkflowKind::ErrorFix, policy.clone());
            async move { s.reserve_spawn(&req, mins(1)).await.expect("reserve_spawn") }
        })
        .await
    };
    let allowed = outs
        .iter()
        .filter(|r| r.decision == Decision::Allow)
        .count();
    assert_eq!(
        allowed, 7,
        "exactly max_concurrent_error spawns are allowed"
    );
    assert!(
        outs.iter()
            .filter(|r| r.decision != Decision::Allow)
            .all(|r| matches!(r.decision, Decision::Defer { .. })
                && code(&r.decision) == "concurrency_limit"),
        "the others are deferred for concurrency"
    );
    assert!(
        outs.iter()
            .all(|r| r.run.is_some() == r.decision.is_allow())
    );
    let mut runs = 0;
    let mut deferred = 0;
    for id in &ids {
        runs += store.list_runs(*id).await.expect("list_runs").len();
        deferred += store.list_deferred(*id).await.expect("list_deferred").len();
    }
    assert_eq!(
        (runs, deferred),
        (7, N - 7),
        "7 runs and one deferred spawn per other issue"
    );
    let stats = store.spawn_stats(mins(2)).await.expect("spawn_stats");
    assert_eq!(
        (stats.active_error, stats.queued, stats.deferred),
        (7, 7, (N - 7) as u32)
    );
}

async fn concurrent_reserves_never_exceed_the_daily_budget(store: Arc<dyn Store>) {
    const N: usize = 100;
    let ws = workspace(&*store).await.id;
    let ids = issues(&*store, ws, N).await;
    let mut policy = SpawnPolicy::permissive();
    policy.daily_budget_error = 7;
    let outs = {
        let ids = ids.clone();
        race(&store, N, move |s, i| {
            let req = spawn(ids[i], WorkflowKind::ErrorFix, policy.clone());
            async move { s.reserve_spawn(&req, mins(1)).await.expect("reserve_spawn") }
        })
        .await
    };
    let codes: BTreeMap<&str, usize> = outs.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(code(&r.decision)).or_default() += 1;
        m
    });
    assert_eq!(
        codes,
        BTreeMap::from([("allow", 7), ("daily_budget", N - 7)])
    );
    assert!(
        outs.iter()
            .filter(|r| !r.decision.is_allow())
            .all(|r| matches!(r.decision, Decision::Deny { .. })),
        "budget denials are not deferred"
    );
    let stats = store.spawn_stats(mins(2)).await.expect("spawn_stats");
    assert_eq!(
        (
            stats.spawned_today_error,
            stats.active_error,
            stats.deferred
        ),
        (7, 7, 0)
    );
}

async fn concurrent_claimers_claim_each_run_once(store: Arc<dyn Store>) {
    const RUNS: usize = 50;
    const CLAIMERS: usize = 8;
    let ws = workspace(&*store).await.id;
    let mut expected = BTreeSet::new();
    for id in issues(&*store, ws, RUNS).await {
        expected.insert(allow(&*store, id, WorkflowKind::ErrorFix, t0()).await.id);
    }
    let per_claimer = race(&store, CLAIMERS, |s, _| async move {
        let mut mine: Vec<RunId> = Vec::new();
        loop {
            let got = s
                .claim_due_runs(mins(1), Duration::minutes(5), 3)
                .await
                .expect("claim_due_runs");
            if got.is_empty() {
                break;
            }
            assert!(got.len() <= 3, "limit");
            assert!(got.iter().all(|r| r.status == RunStatus::Dispatching));
            mine.extend(got.iter().map(|r| r.id));
        }
        mine
    })
    .await;
    let all: Vec<RunId> = per_claimer.into_iter().flatten().collect();
    let unique: BTreeSet<RunId> = all.iter().copied().collect();
    assert_eq!(all.len(), unique.len(), "no run was handed to two claimers");
    assert_eq!(unique, expected, "every due run was claimed");
    assert_eq!(
        store
            .claim_due_runs(mins(2), Duration::minutes(5), 100)
            .await
            .expect("claim"),
        vec![],
        "all are leased"
    );
}

async fn concurrent_ends_of_one_run_end_it_once(store: Arc<dyn Store>) {
    const N: usize = 20;
    let ws = workspace(&*store).await.id;
    let id = issue(&*store, ws, "finishing").await.id;
    let run = running(&*store, id, WorkflowKind::ErrorFix, t0()).await.id;
    let outs = race(&store, N, |s, _| async move {
        let patch = RunPatch {
            status: Some(RunStatus::Completed),
            cost_usd: Some(1.5),
            num_turns: Some(7),
            ..Default::default()
        };
        s.update_run(run, &patch, &actor(), mins(1))
            .await
            .expect("update_run")
    })
    .await;
    assert_eq!(
        outs.iter().filter(|u| u.ended).count(),
        1,
        "exactly one call ends the run"
    );
    assert_eq!(outs.iter().filter(|u| u.status_changed).count(), 1);
    assert!(outs.iter().all(|u| u.run.status == RunStatus::Completed));
    let now = store.get_issue(ws, &id.into()).await.expect("get_issue");
    assert_eq!(now.spawn_status, Some(SpawnStatus::Completed));
    approx(now.cost_usd, 1.5, "cost set twenty times counts once");
    assert_eq!(now.num_turns, 7);
    let ends = store
        .list_history(id, 100)
        .await
        .expect("history")
        .iter()
        .filter(|h| h.action == HistoryAction::AgentCompleted)
        .count();
    assert_eq!(ends, 1, "the end is recorded once");
}
