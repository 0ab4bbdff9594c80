//! PrLinkStore, AgentStore, external runs and forgotten deliveries (the parts added for PR
//! links, the agents registry, `POST /runs` and retryable webhook deliveries).

use super::support::*;
use crate::agent::{Agent, NewAgent};
use crate::ids::{IssueId, PrLinkId};
use crate::issue::{Actor, HistoryAction, SpawnStatus};
use crate::pr::{PrLinkUpsert, PrStatus};
use crate::run::{NewRun, Run, RunStatus, WorkflowKind};
use tokio::sync::Barrier;

pub(super) fn cases() -> Vec<Case> {
    cases!("links":
        pr_link_upsert_inserts_then_updates_one_row_with_history,
        pr_links_list_newest_first_and_by_number,
        pr_link_delete_is_scoped_to_the_issue_and_writes_history,
        pr_links_go_with_their_issue,
        concurrent_pr_link_upserts_make_one_row,
        agents_have_unique_names_and_webhooks,
        external_run_becomes_current_and_is_idempotent,
        forgotten_delivery_can_be_recorded_again,
        concurrent_record_and_forget_keep_one_owner,
    )
}

fn up(issue: IssueId, pr: i64) -> PrLinkUpsert {
    PrLinkUpsert {
        issue_id: issue,
        pr_number: pr,
        title: Some(format!("fix: ACME-{pr}")),
        url: Some(format!("https://github.invalid/acme/app/pull/{pr}")),
        head_branch: Some(format!("fix/acme-{pr}")),
        base_branch: Some("main".into()),
        author: Some("octocat".into()),
        match_confidence: Some(1.0),
        ..Default::default()
    }
}

async fn pr_history(s: &dyn Store, issue: IssueId) -> Vec<HistoryAction> {
    s.list_history(issue, 100)
        .await
        .expect("list_history")
        .into_iter()
        .map(|h| h.action)
        .filter(|a| {
            matches!(
                a,
                HistoryAction::PrLinked
                    | HistoryAction::PrUnlinked
                    | HistoryAction::PrStatusChanged
            )
        })
        .collect()
}

async fn pr_link_upsert_inserts_then_updates_one_row_with_history(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "checkout fails").await;
    let a = s
        .upsert_pr_link(&up(i.id, 7), &actor(), mins(1))
        .await
        .expect("upsert");
    assert!(a.created && !a.status_changed);
    assert_eq!(a.link.status, PrStatus::Open);
    assert_eq!(a.link.created_at, mins(1));
    assert_eq!(a.link.author.as_deref(), Some("octocat"));
    // An edit: new title, status kept.
    let b = s
        .upsert_pr_link(
            &PrLinkUpsert {
                title: Some("fix: ACME-7 properly".into()),
                match_confidence: None,
                ..up(i.id, 7)
            },
            &actor(),
            mins(2),
        )
        .await
        .expect("upsert");
    assert!(!b.created && !b.status_changed);
    assert_eq!(b.link.id, a.link.id);
    assert_eq!(b.link.title.as_deref(), Some("fix: ACME-7 properly"));
    assert_eq!(b.link.match_confidence, Some(1.0), "kept");
    assert_eq!((b.link.created_at, b.link.updated_at), (mins(1), mins(2)));
    let c = s
        .upsert_pr_link(
            &PrLinkUpsert {
                status: Some(PrStatus::Merged),
                merged_at: Some(mins(3)),
                ..up(i.id, 7)
            },
            &actor(),
            mins(3),
        )
        .await
        .expect("upsert");
    assert!(c.status_changed);
    assert_eq!(
        (c.link.status, c.link.merged_at),
        (PrStatus::Merged, Some(mins(3)))
    );
    let d = s
        .upsert_pr_link(
            &PrLinkUpsert {
                status: Some(PrStatus::Closed),
                ..up(i.id, 7)
            },
            &actor(),
            mins(4),
        )
        .await
        .expect("upsert");
    assert_eq!(d.link.status, PrStatus::Merged, "merged is final");
    assert!(!d.status_changed);
    let links = s.list_pr_links(i.id).await.expect("list");
    assert_eq!(links.len(), 1);
    assert_eq!(
        links[0], d.link,
        "the stored link is what the upsert returned"
    );
    assert_eq!(
        pr_history(s, i.id).await,
        vec![HistoryAction::PrStatusChanged, HistoryAction::PrLinked],
        "newest first: linked once, one status change"
    );
    invalid(
        s.upsert_pr_link(&up(i.id, 0), &actor(), mins(5)).await,
        "pr_number",
        "PR number 0",
    );
    not_found(
        s.upsert_pr_link(&up(IssueId::new(), 8), &actor(), mins(5))
            .await,
        "a link to an unknown issue",
    );
}

async fn pr_links_list_newest_first_and_by_number(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "one").await;
    let j = issue(s, ws.id, "two").await;
    for (n, at) in [(3, 1), (1, 2), (2, 3)] {
        s.upsert_pr_link(&up(i.id, n), &actor(), mins(at))
            .await
            .expect("upsert");
    }
    s.upsert_pr_link(&up(j.id, 3), &actor(), mins(4))
        .await
        .expect("upsert");
    let numbers: Vec<i64> = s
        .list_pr_links(i.id)
        .await
        .expect("list")
        .iter()
        .map(|l| l.pr_number)
        .collect();
    assert_eq!(numbers, vec![2, 1, 3], "newest first");
    let by: Vec<IssueId> = s
        .pr_links_by_number(3)
        .await
        .expect("by number")
        .iter()
        .map(|l| l.issue_id)
        .collect();
    assert_eq!(by, vec![i.id, j.id], "oldest first");
    assert!(
        s.pr_links_by_number(99)
            .await
            .expect("by number")
            .is_empty()
    );
    assert!(
        s.list_pr_links(IssueId::new())
            .await
            .map(|v| v.is_empty())
            .unwrap_or(true)
    );
}

async fn pr_link_delete_is_scoped_to_the_issue_and_writes_history(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "one").await;
    let j = issue(s, ws.id, "two").await;
    let l = s
        .upsert_pr_link(&up(i.id, 5), &actor(), mins(1))
        .await
        .expect("upsert")
        .link;
    assert!(
        !s.delete_pr_link(j.id, l.id, &actor(), mins(2))
            .await
            .expect("delete"),
        "another issue's link"
    );
    assert!(
        !s.delete_pr_link(i.id, PrLinkId::new(), &actor(), mins(2))
            .await
            .expect("delete"),
        "unknown link"
    );
    assert!(
        s.delete_pr_link(i.id, l.id, &Actor::user("Manual unlink"), mins(3))
            .await
            .expect("delete")
    );
    assert!(
        !s.delete_pr_link(i.id, l.id, &actor(), mins(4))
            .await
            .expect("delete"),
        "second delete"
    );
    assert!(s.list_pr_links(i.id).await.expect("list").is_empty());
    let h = s.list_history(i.id, 10).await.expect("history");
    assert_eq!(h[0].action, HistoryAction::PrUnlinked);
    assert_eq!(h[0].actor.name, "Manual unlink");
    assert_eq!(h[0].created_at, mins(3));
    assert_eq!(
        h[0].old_value
            .as_ref()
            .and_then(|v| v.get("pr_number"))
            .and_then(|v| v.as_i64()),
        Some(5)
    );
    assert_eq!(pr_history(s, j.id).await, vec![]);
    // Linking again after an unlink makes a new link.
    let again = s
        .upsert_pr_link(&up(i.id, 5), &actor(), mins(5))
        .await
        .expect("upsert");
    assert!(again.created);
    assert_ne!(again.link.id, l.id);
}

async fn pr_links_go_with_their_issue(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "doomed").await;
    s.upsert_pr_link(&up(i.id, 5), &actor(), mins(1))
        .await
        .expect("upsert");
    s.delete_issue(i.id, mins(0), &Default::default())
        .await
        .expect("delete issue");
    assert!(s.pr_links_by_number(5).await.expect("by number").is_empty());
    gone(s.list_pr_links(i.id).await, "links of a deleted issue");
}

async fn concurrent_pr_link_upserts_make_one_row(store: Arc<dyn Store>) {
    let ws = workspace(&*store).await;
    let i = issue(&*store, ws.id, "raced").await;
    let n = 12;
    let barrier = Arc::new(Barrier::new(n));
    let mut handles = Vec::new();
    for k in 0..n {
        let (s, b) = (store.clone(), barrier.clone());
        handles.push(tokio::spawn(async move {
            b.wait().await;
            s.upsert_pr_link(
                &PrLinkUpsert {
                    title: Some(format!("title {k}")),
                    ..up(i.id, 42)
                },
                &actor(),
                mins(1),
            )
            .await
            .expect("upsert")
        }));
    }
    let outs = join_all(handles).await;
    assert_eq!(outs.iter().filter(|o| o.created).count(), 1, "one creator");
    let links = store.list_pr_links(i.id).await.expect("list");
    assert_eq!(links.len(), 1);
    assert!(outs.iter().all(|o| o.link.id == links[0].id));
    assert_eq!(
        pr_history(&*store, i.id).await,
        vec![HistoryAction::PrLinked],
        "one pr_linked entry"
    );
}

fn agent(ws: crate::ids::WorkspaceId, name: &str, url: Option<&str>) -> Agent {
    NewAgent {
        name: name.into(),
        description: Some(format!("{name} the agent")),
        webhook_url: url.map(str::to_string),
    }
    .into_agent(ws, t0())
}

async fn agents_have_unique_names_and_webhooks(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let claude = s
        .create_agent(&agent(
            ws.id,
            "Claude",
            Some("https://hooks.invalid/claude"),
        ))
        .await
        .expect("create");
    assert_eq!(claude.webhook_secret.as_ref().map(String::len), Some(64));
    conflict(
        s.create_agent(&agent(ws.id, "claude", None)).await,
        "names are unique per workspace, case-insensitively",
    );
    let mut idle = agent(ws.id, "aider", None);
    idle.active = false;
    s.create_agent(&idle).await.expect("create");
    s.create_agent(&agent(ws.id, "Bob", None))
        .await
        .expect("create");
    let names = |v: Vec<Agent>| v.into_iter().map(|a| a.name).collect::<Vec<_>>();
    assert_eq!(
        names(s.list_agents(ws.id, false).await.expect("list")),
        vec!["Bob", "Claude"]
    );
    assert_eq!(
        names(s.list_agents(ws.id, true).await.expect("list")),
        vec!["aider", "Bob", "Claude"]
    );
    let got = s
        .get_agent_by_name(ws.id, "CLAUDE")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got, claude, "stored as created, secret included");
    assert!(
        s.get_agent_by_name(ws.id, "nobody")
            .await
            .expect("get")
            .is_none()
    );
    let set = s
        .set_agent_webhook(
            ws.id,
            "bob",
            Some(("https://hooks.invalid/bob".into(), "ab".repeat(32))),
            mins(1),
        )
        .await
        .expect("set");
    assert_eq!(
        set.webhook_url.as_deref(),
        Some("https://hooks.invalid/bob")
    );
    assert_eq!(set.updated_at, mins(1));
    let cleared = s
        .set_agent_webhook(ws.id, "Claude", None, mins(2))
        .await
        .expect("clear");
    assert_eq!((cleared.webhook_url, cleared.webhook_secret), (None, None));
    let bob = s
        .get_agent_by_name(ws.id, "Bob")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(bob.webhook_secret, Some("ab".repeat(32)));
    not_found(
        s.set_agent_webhook(ws.id, "nobody", None, mins(3)).await,
        "unknown agent",
    );
}

fn external(issue: IssueId, kind: WorkflowKind, ext: Option<&str>, at: Timestamp) -> Run {
    let mut r = NewRun {
        issue_id: issue,
        kind,
        additional_context: None,
        force: false,
        requested_by: "GitHub Actions".into(),
    }
    .into_run(at);
    r.status = RunStatus::Running;
    r.started_at = Some(at);
    r.external_id = ext.map(str::to_string);
    r.runner = Some("external".into());
    r
}

async fn external_run_becomes_current_and_is_idempotent(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "manual workflow").await;
    let run = external(i.id, WorkflowKind::DeepResearch, Some("gh-1"), mins(1));
    let (r, issue_after, created) = s
        .record_external_run(&run, &Actor::agent("GitHub Actions"), mins(1))
        .await
        .expect("record");
    assert!(created);
    assert_eq!((r.id, r.status), (run.id, RunStatus::Running));
    assert_eq!(issue_after.current_run_id, Some(run.id));
    assert_eq!(issue_after.spawn_status, Some(SpawnStatus::Running));
    assert_eq!(s.get_run(run.id).await.expect("get"), r);
    // A retried post: the same run, nothing new.
    let again = external(i.id, WorkflowKind::DeepResearch, Some("gh-1"), mins(2));
    let (r2, _, created2) = s
        .record_external_run(&again, &actor(), mins(2))
        .await
        .expect("record");
    assert!(!created2);
    assert_eq!(r2.id, run.id);
    // Another run while this one is active: Conflict.
    conflict(
        s.record_external_run(
            &external(i.id, WorkflowKind::Qa, Some("gh-2"), mins(3)),
            &actor(),
            mins(3),
        )
        .await,
        "a second active run",
    );
    assert_eq!(s.list_runs(i.id).await.expect("list").len(), 1);
    // It counts as active for the gates.
    let stats = s.spawn_stats(mins(3)).await.expect("stats");
    assert_eq!(stats.active_prd, 1);
    // Ended, a new external run may start.
    set_status(s, run.id, RunStatus::Completed, mins(4)).await;
    let (r3, _, created3) = s
        .record_external_run(
            &external(i.id, WorkflowKind::Qa, None, mins(5)),
            &actor(),
            mins(5),
        )
        .await
        .expect("record");
    assert!(created3);
    assert_eq!(s.list_runs(i.id).await.expect("list")[0].id, r3.id);
    not_found(
        s.record_external_run(
            &external(IssueId::new(), WorkflowKind::Qa, None, mins(6)),
            &actor(),
            mins(6),
        )
        .await,
        "unknown issue",
    );
}

async fn forgotten_delivery_can_be_recorded_again(store: Arc<dyn Store>) {
    let s = &*store;
    assert!(
        s.record_delivery("github", "d-1", mins(0))
            .await
            .expect("record")
    );
    assert!(
        s.record_delivery("sentry", "d-1", mins(0))
            .await
            .expect("record")
    );
    assert!(s.forget_delivery("github", "d-1").await.expect("forget"));
    assert!(
        !s.forget_delivery("github", "d-1").await.expect("forget"),
        "already forgotten"
    );
    assert!(!s.forget_delivery("github", "never").await.expect("forget"));
    assert!(
        !s.record_delivery("sentry", "d-1", mins(1))
            .await
            .expect("record"),
        "only that source's id was forgotten"
    );
    assert!(
        s.record_delivery("github", "d-1", mins(2))
            .await
            .expect("record"),
        "a forgotten id is new again"
    );
    assert!(
        !s.record_delivery("github", "d-1", mins(3))
            .await
            .expect("record")
    );
}

async fn concurrent_record_and_forget_keep_one_owner(store: Arc<dyn Store>) {
    // Each round: N copies of one delivery race; exactly one wins; it forgets (its effect
    // failed); the next round again has exactly one winner.
    for round in 0..3 {
        let n = 8;
        let barrier = Arc::new(Barrier::new(n));
        let mut handles = Vec::new();
        for _ in 0..n {
            let (s, b) = (store.clone(), barrier.clone());
            handles.push(tokio::spawn(async move {
                b.wait().await;
                s.record_delivery("github", "raced", mins(round))
                    .await
                    .expect("record")
            }));
        }
        let wins = join_all(handles).await.into_iter().filter(|w| *w).count();
        assert_eq!(wins, 1, "round {round}: one copy acts");
        assert!(
            store
                .forget_delivery("github", "raced")
                .await
                .expect("forget")
        );
    }
}
