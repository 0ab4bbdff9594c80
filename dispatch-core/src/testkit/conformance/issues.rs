//! IssueStore: issues, comments, history, watchers, and what deleting an issue takes with it.

use super::support::*;
use crate::gate::{Decision, SpawnPolicy};
use crate::ids::{CustomerId, IssueId, IssueRef, RunId};
use crate::issue::{
    Actor, AgentStatus, HistoryAction, IssueFilter, IssuePatch, NewComment, NewHistory, NewIssue,
    Priority,
};
use crate::run::{ActivityType, NewActivity, RunPatch, RunStatus, WorkflowKind};
use crate::verify::VerificationStatus;
use serde_json::json;

pub(super) fn cases() -> Vec<Case> {
    cases!("issues":
        create_issue_allocates_gapless_identifiers_in_the_first_open_column,
        a_customer_watches_its_issue_from_the_creation_on,
        get_issue_by_uuid_or_identifier,
        list_issues_filters_newest_first_and_pages,
        update_issue_patches_bumps_version_and_appends_history,
        update_issue_with_a_stale_version_conflicts_and_writes_nothing,
        delete_issue_cascades_and_frees_nothing_else,
        comments_are_oldest_first_with_history,
        history_is_newest_first_with_limit,
        watchers_add_remove_list_and_filter,
    )
}

fn numbers(issues: &[crate::issue::Issue]) -> Vec<i64> {
    issues.iter().map(|i| i.number).collect()
}

async fn create_issue_allocates_gapless_identifiers_in_the_first_open_column(
    store: Arc<dyn Store>,
) {
    let s = &*store;
    let ws = workspace(s).await;
    let backlog = column_id(s, ws.id, "Backlog").await;
    let in_progress = column_id(s, ws.id, "In Progress").await;

    let a = create(s, ws.id, NewIssue::titled("  First  "), mins(1)).await;
    assert_eq!(
        (a.identifier.as_str(), a.number, a.workspace_id),
        ("ACME-1", 1, ws.id)
    );
    assert_eq!(a.title, "First", "titles are stored trimmed");
    assert_eq!(
        a.column_id, backlog,
        "no column given: the first open column"
    );
    assert_eq!(a.priority, Priority::P3);
    assert_eq!((a.created_at, a.updated_at), (mins(1), mins(1)));
    assert_eq!(a.agent_status, AgentStatus::Idle);
    assert_eq!(
        (
            a.spawn_status,
            a.spawn_kind,
            a.current_run_id,
            a.spawn_attempt_count
        ),
        (None, None, None, 0)
    );
    assert_eq!((a.cost_usd, a.num_turns), (0.0, 0));
    assert_eq!(get(s, &a).await, a, "the returned issue is the stored one");

    let history = s.list_history(a.id, 10).await.expect("list_history");
    assert_eq!(
        history.len(),
        1,
        "creating writes exactly one history entry"
    );
    assert_eq!(history[0].action, HistoryAction::Created);
    assert_eq!(
        (
            history[0].issue_id,
            history[0].created_at,
            &history[0].actor
        ),
        (a.id, mins(1), &actor())
    );

    let mut full = NewIssue::titled("Second");
    full.description = Some("details".into());
    full.column_id = Some(in_progress);
    full.priority = Priority::P1;
    full.assignee = Some("claude".into());
    let bug = s.list_labels(ws.id).await.expect("list_labels")[1].id;
    full.labels = vec![bug];
    let b = create(s, ws.id, full, mins(2)).await;
    assert_eq!((b.identifier.as_str(), b.number), ("ACME-2", 2));
    assert_eq!(b.column_id, in_progress, "an explicit column is kept");
    assert_eq!(
        (b.priority, b.assignee.as_deref(), b.description.as_deref()),
        (Priority::P1, Some("claude"), Some("details"))
    );
    assert_eq!(b.labels, vec![bug]);

    // Rejected creates allocate no number.
    invalid(
        s.create_issue(
            ws.id,
            NewIssue::titled("   "),
            &actor(),
            mins(3),
            &Default::default(),
        )
        .await,
        "title",
        "an empty title",
    );
    invalid(
        s.create_issue(
            ws.id,
            NewIssue::titled("x".repeat(501)),
            &actor(),
            mins(3),
            &Default::default(),
        )
        .await,
        "title",
        "a title over 500 characters",
    );
    let other = s
        .ensure_workspace("Beta", "BETA", t0())
        .await
        .expect("second workspace");
    let mut foreign = NewIssue::titled("foreign column");
    foreign.column_id = Some(column_id(s, other.id, "Backlog").await);
    invalid(
        s.create_issue(ws.id, foreign, &actor(), mins(3), &Default::default())
            .await,
        "statusId",
        "a column of another workspace",
    );

    let c = create(s, ws.id, NewIssue::titled("Third"), mins(4)).await;
    assert_eq!(
        (c.identifier.as_str(), c.number),
        ("ACME-3", 3),
        "identifiers stay gapless after rejected creates"
    );
    assert_eq!(
        s.get_workspace(ws.id)
            .await
            .expect("get_workspace")
            .next_issue_number,
        4
    );

    let o = create(s, other.id, NewIssue::titled("Elsewhere"), mins(5)).await;
    assert_eq!(
        o.identifier, "BETA-1",
        "each workspace numbers its own issues"
    );
}

async fn get_issue_by_uuid_or_identifier(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let other = s
        .ensure_workspace("Beta", "BETA", t0())
        .await
        .expect("second workspace");
    let _one = issue(s, ws.id, "one").await;
    let two = issue(s, ws.id, "two").await;

    assert_eq!(
        s.get_issue(ws.id, &IssueRef::Id(two.id))
            .await
            .expect("by id"),
        two
    );
    assert_eq!(
        s.get_issue(ws.id, &IssueRef::Identifier("ACME-2".into()))
            .await
            .expect("by identifier"),
        two
    );
    assert_eq!(
        s.get_issue(ws.id, &IssueRef::parse("acme-2"))
            .await
            .expect("parsed identifier"),
        two
    );
    assert_eq!(
        s.get_issue(ws.id, &IssueRef::parse(&two.id.to_string()))
            .await
            .expect("parsed uuid"),
        two
    );

    not_found(
        s.get_issue(ws.id, &IssueRef::Identifier("ACME-3".into()))
            .await,
        "an unallocated identifier",
    );
    not_found(
        s.get_issue(ws.id, &IssueRef::Id(IssueId::new())).await,
        "an unknown uuid",
    );
    not_found(
        s.get_issue(other.id, &IssueRef::Id(two.id)).await,
        "an issue of another workspace by id",
    );
    not_found(
        s.get_issue(other.id, &IssueRef::Identifier("ACME-2".into()))
            .await,
        "an issue of another workspace by identifier",
    );
}

async fn list_issues_filters_newest_first_and_pages(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let other = s
        .ensure_workspace("Beta", "BETA", t0())
        .await
        .expect("second workspace");
    let bug = s
        .list_labels(ws.id)
        .await
        .expect("list_labels")
        .into_iter()
        .find(|l| l.name == "bug")
        .expect("bug")
        .id;
    let in_progress = column_id(s, ws.id, "In Progress").await;
    let c1 = add_customer(s, ws.id, "Acme Corp", "acme-corp").await;

    let mut n1 = NewIssue::titled("1 bug");
    n1.labels = vec![bug];
    let mut n2 = NewIssue::titled("2 customer");
    n2.customer_id = Some(c1.id);
    let mut n3 = NewIssue::titled("3 in progress");
    n3.column_id = Some(in_progress);
    n3.assignee = Some("Claude".into());
    let mut n4 = NewIssue::titled("4 bug and customer");
    n4.labels = vec![bug];
    n4.customer_id = Some(c1.id);
    n4.assignee = Some("claude".into());
    let mut n5 = NewIssue::titled("5 plain");
    n5.assignee = Some("Claudette".into());
    for (i, n) in [n1, n2, n3, n4, n5].into_iter().enumerate() {
        create(s, ws.id, n, mins(i as i64)).await;
    }
    create(s, other.id, NewIssue::titled("elsewhere"), t0()).await;

    let list = |f: IssueFilter| async move {
        numbers(&s.list_issues(ws.id, &f).await.expect("list_issues"))
    };
    assert_eq!(
        list(IssueFilter::default()).await,
        [5, 4, 3, 2, 1],
        "newest first, own workspace only"
    );
    let backlog = column_id(s, ws.id, "Backlog").await;
    assert_eq!(
        list(IssueFilter {
            column_id: Some(backlog),
            ..Default::default()
        })
        .await,
        [5, 4, 2, 1]
    );
    assert_eq!(
        list(IssueFilter {
            column_id: Some(in_progress),
            ..Default::default()
        })
        .await,
        [3]
    );
    assert_eq!(
        list(IssueFilter {
            customer_id: Some(c1.id),
            ..Default::default()
        })
        .await,
        [4, 2]
    );
    assert_eq!(
        list(IssueFilter {
            label_id: Some(bug),
            ..Default::default()
        })
        .await,
        [4, 1]
    );
    assert_eq!(
        list(IssueFilter {
            label_id: Some(bug),
            customer_id: Some(c1.id),
            ..Default::default()
        })
        .await,
        [4],
        "filters combine with AND"
    );
    assert_eq!(
        list(IssueFilter {
            label_id: Some(bug),
            limit: Some(1),
            ..Default::default()
        })
        .await,
        [4],
        "the label filter comes before the limit"
    );
    assert_eq!(
        list(IssueFilter {
            label_id: Some(bug),
            before_number: Some(4),
            limit: Some(1),
            ..Default::default()
        })
        .await,
        [1],
        "and pages: the next labelled issue, not an empty page"
    );
    assert_eq!(
        list(IssueFilter {
            assignee: Some("CLAUDE".into()),
            ..Default::default()
        })
        .await,
        [4, 3],
        "assignee: the whole name, any case"
    );
    assert_eq!(
        list(IssueFilter {
            assignee: Some("claude".into()),
            label_id: Some(bug),
            ..Default::default()
        })
        .await,
        [4]
    );
    assert_eq!(
        list(IssueFilter {
            limit: Some(2),
            ..Default::default()
        })
        .await,
        [5, 4]
    );
    assert_eq!(
        list(IssueFilter {
            before_number: Some(4),
            ..Default::default()
        })
        .await,
        [3, 2, 1]
    );
    assert_eq!(
        list(IssueFilter {
            before_number: Some(4),
            limit: Some(2),
            ..Default::default()
        })
        .await,
        [3, 2]
    );
    assert_eq!(
        list(IssueFilter {
            before_number: Some(2),
            limit: Some(2),
            ..Default::default()
        })
        .await,
        [1]
    );
    assert_eq!(
        list(IssueFilter {
            before_number: Some(1),
            ..Default::default()
        })
        .await,
        Vec::<i64>::new()
    );

    let three = s
        .get_issue(ws.id, &IssueRef::Identifier("ACME-3".into()))
        .await
        .expect("ACME-3");
    allow(s, three.id, WorkflowKind::Qa, mins(10)).await;
    assert_eq!(
        list(IssueFilter {
            spawn_active: Some(true),
            ..Default::default()
        })
        .await,
        [3]
    );
    assert_eq!(
        list(IssueFilter {
            spawn_active: Some(false),
            ..Default::default()
        })
        .await,
        [5, 4, 2, 1]
    );
    assert_eq!(
        numbers(
            &s.list_issues(other.id, &IssueFilter::default())
                .await
                .expect("list_issues")
        ),
        [1],
        "the other workspace sees only its own"
    );
}

async fn update_issue_patches_bumps_version_and_appends_history(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let c1 = add_customer(s, ws.id, "Acme Corp", "acme-corp").await;
    let bug = s.list_labels(ws.id).await.expect("list_labels")[1].id;
    let done = column_id(s, ws.id, "Done").await;
    let i = issue(s, ws.id, "original").await;
    let v0 = i.version;

    let h1 = NewHistory::new(HistoryAction::Edited, &actor()).values(
        Some(json!({"title": "original"})),
        Some(json!({"title": "renamed"})),
    );
    let patch = IssuePatch {
        title: Some("renamed".into()),
        description: Some(Some("a description".into())),
        assignee: Some(Some("bob".into())),
        priority: Some(Priority::P1),
        labels: Some(vec![bug]),
        customer_id: Some(Some(c1.id)),
        column_id: Some(done),
        ..Default::default()
    };
    let u1 = s
        .update_issue(
            i.id,
            IssueUpdate {
                outbox: Default::default(),
                patch,
                history: vec![h1.clone()],
                expected_version: Some(v0),
                now: mins(1),
            },
        )
        .await
        .expect("update with the right version");
    assert_eq!(u1.version, v0 + 1, "every update bumps the version");
    assert_eq!(u1.updated_at, mins(1));
    assert_eq!(u1.created_at, i.created_at);
    assert_eq!(
        (
            u1.title.as_str(),
            u1.description.as_deref(),
            u1.assignee.as_deref()
        ),
        ("renamed", Some("a description"), Some("bob"))
    );
    assert_eq!(
        (u1.priority, u1.labels.clone(), u1.customer_id, u1.column_id),
        (Priority::P1, vec![bug], Some(c1.id), done)
    );
    assert_eq!(
        (u1.identifier.as_str(), u1.number),
        (i.identifier.as_str(), i.number)
    );
    assert_eq!(get(s, &i).await, u1);

    // Some(None) clears; None leaves alone.
    let patch = IssuePatch {
        description: Some(None),
        customer_id: Some(None),
        labels: Some(vec![]),
        ..Default::default()
    };
    let u2 = s
        .update_issue(
            i.id,
            IssueUpdate {
                outbox: Default::default(),
                patch,
                history: vec![],
                expected_version: None,
                now: mins(2),
            },
        )
        .await
        .expect("clear");
    assert_eq!(u2.version, v0 + 2);
    assert_eq!(
        (u2.description.clone(), u2.customer_id, u2.labels.clone()),
        (None, None, vec![])
    );
    assert_eq!(
        (u2.assignee.as_deref(), u2.title.as_str(), u2.priority),
        (Some("bob"), "renamed", Priority::P1),
        "absent fields stay"
    );

    let u3 = s
        .update_issue(
            i.id,
            IssueUpdate {
                outbox: Default::default(),
                patch: IssuePatch {
                    assignee: Some(None),
                    ..Default::default()
                },
                history: vec![],
                expected_version: Some(v0 + 2),
                now: mins(3),
            },
        )
        .await
        .expect("clear assignee");
    assert_eq!((u3.assignee.clone(), u3.version), (None, v0 + 3));

    let history = s.list_history(i.id, 10).await.expect("list_history");
    assert_eq!(
        history.len(),
        2,
        "the given history entries are appended, nothing else"
    );
    assert_eq!(
        (history[0].action, history[0].created_at),
        (HistoryAction::Edited, mins(1))
    );
    assert_eq!(
        (
            &history[0].old_value,
            &history[0].new_value,
            &history[0].actor
        ),
        (&h1.old_value, &h1.new_value, &h1.actor)
    );
    assert_eq!(history[1].action, HistoryAction::Created);

    not_found(
        s.update_issue(
            IssueId::new(),
            IssueUpdate {
                outbox: Default::default(),
                patch: IssuePatch::default(),
                history: vec![],
                expected_version: None,
                now: mins(4),
            },
        )
        .await,
        "update of an unknown issue",
    );
}

async fn update_issue_with_a_stale_version_conflicts_and_writes_nothing(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "original").await;
    let moved = update(
        s,
        i.id,
        IssuePatch {
            priority: Some(Priority::P2),
            ..Default::default()
        },
        mins(1),
    )
    .await;
    assert_eq!(moved.version, i.version + 1);

    let stale = IssueUpdate {
        outbox: Default::default(),
        patch: IssuePatch {
            title: Some("lost update".into()),
            priority: Some(Priority::P4),
            ..Default::default()
        },
        history: vec![NewHistory::new(HistoryAction::Edited, &actor())],
        expected_version: Some(i.version),
        now: mins(2),
    };
    conflict(
        s.update_issue(i.id, stale).await,
        "expected_version older than the stored one",
    );
    assert_eq!(
        get(s, &i).await,
        moved,
        "a conflicting update writes nothing"
    );
    let history = s.list_history(i.id, 10).await.expect("list_history");
    assert_eq!(history.len(), 1, "nor any history: {history:?}");

    let future = IssueUpdate {
        outbox: Default::default(),
        patch: IssuePatch {
            title: Some("x".into()),
            ..Default::default()
        },
        history: vec![],
        expected_version: Some(moved.version + 5),
        now: mins(3),
    };
    conflict(
        s.update_issue(i.id, future).await,
        "expected_version newer than the stored one",
    );
    assert_eq!(get(s, &i).await, moved);
}

async fn delete_issue_cascades_and_frees_nothing_else(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let cust = add_customer(s, ws.id, "Acme Corp", "acme-corp").await;
    let columns = s.list_columns(ws.id).await.expect("list_columns");
    let labels = s.list_labels(ws.id).await.expect("list_labels");

    // Two issues with everything that can belong to an issue.
    let mut runs: Vec<RunId> = Vec::new();
    let mut issues = Vec::new();
    for (n, key) in ["fp-a", "fp-b"].into_iter().enumerate() {
        let i = s
            .ingest_error(ws.id, draft("loki", key, 3, t0()))
            .await
            .expect("ingest")
            .issue;
        s.add_comment(
            i.id,
            NewComment {
                author: Some("ann".into()),
                body: "seen".into(),
            },
            &actor(),
            mins(1),
            &Default::default(),
        )
        .await
        .expect("comment");
        s.add_comment(
            i.id,
            NewComment {
                author: None,
                body: "again".into(),
            },
            &actor(),
            mins(2),
            &Default::default(),
        )
        .await
        .expect("comment");
        assert!(s.add_watcher(i.id, cust.id, mins(2)).await.expect("watch"));
        let mut no_prd = SpawnPolicy::permissive();
        no_prd.max_concurrent_prd = 0;
        let d = reserve(
            s,
            &spawn(i.id, WorkflowKind::PrdInvestigate, no_prd),
            mins(3),
        )
        .await;
        assert_eq!(code(&d.decision), "concurrency_limit");
        let run = allow(s, i.id, WorkflowKind::ErrorFix, mins(4)).await;
        patch_run(
            s,
            run.id,
            RunPatch {
                external_id: Some(format!("ext-{n}")),
                ..Default::default()
            },
            mins(4),
        )
        .await;
        s.append_terminal(run.id, "line 1\n", None, mins(5))
            .await
            .expect("chunk");
        s.append_terminal(run.id, "line 2\n", None, mins(5))
            .await
            .expect("chunk");
        s.add_activity(
            i.id,
            NewActivity::new(ActivityType::Thought, "hmm").run(run.id),
            mins(6),
        )
        .await
        .expect("activity");
        s.add_activity(
            i.id,
            NewActivity::new(ActivityType::Action, "grep"),
            mins(7),
        )
        .await
        .expect("activity");
        s.create_fix_attempt(&attempt(
            i.id,
            5,
            VerificationStatus::Monitoring,
            mins(8),
            Some(mins(60)),
        ))
        .await
        .expect("fix");
        runs.push(run.id);
        issues.push(i);
    }
    let (a, b) = (issues[0].clone(), issues[1].clone());
    let b_before = get(s, &b).await;
    let b_history = s.list_history(b.id, 100).await.expect("history");

    // An issue with an active run cannot be deleted (usage.rs): its run is cancelled first.
    set_status(s, runs[0], RunStatus::Cancelled, mins(9)).await;
    let deleted = s
        .delete_issue(a.id, mins(10), &Default::default())
        .await
        .expect("delete_issue");
    assert_eq!(
        (deleted.id, deleted.identifier.as_str()),
        (a.id, "ACME-1"),
        "delete returns what was deleted"
    );

    not_found(
        s.get_issue(ws.id, &a.id.into()).await,
        "the deleted issue by id",
    );
    not_found(
        s.get_issue(ws.id, &IssueRef::Identifier("ACME-1".into()))
            .await,
        "the deleted issue by identifier",
    );
    gone(s.list_comments(a.id).await, "comments of the deleted issue");
    gone(
        s.list_history(a.id, 10).await,
        "history of the deleted issue",
    );
    gone(s.list_watchers(a.id).await, "watchers of the deleted issue");
    gone(s.list_runs(a.id).await, "runs of the deleted issue");
    not_found(s.get_run(runs[0]).await, "a run of the deleted issue");
    gone(
        s.read_terminal(runs[0], 0, 100).await,
        "terminal chunks of the deleted issue's run",
    );
    assert_eq!(
        s.find_run_by_external_id("ext-0")
            .await
            .expect("find_run_by_external_id"),
        None
    );
    gone(
        s.list_activities(a.id, None, 100).await,
        "activities of the deleted issue",
    );
    gone(
        s.links_for_issue(a.id).await,
        "error links of the deleted issue",
    );
    assert_eq!(s.get_link("loki", "fp-a").await.expect("get_link"), None);
    gone(
        s.list_fix_attempts(a.id).await,
        "fix attempts of the deleted issue",
    );
    gone(
        s.list_deferred(a.id).await,
        "deferred spawns of the deleted issue",
    );
    assert_eq!(
        s.fix_attempts_in_status(VerificationStatus::Monitoring, 100)
            .await
            .expect("in_status")
            .len(),
        1
    );
    let stats = s.spawn_stats(mins(10)).await.expect("spawn_stats");
    assert_eq!(
        (stats.active_error, stats.active_prd, stats.deferred),
        (1, 0, 0),
        "the deleted issue's run is gone (each issue's deferred spawn was settled by its allowed run)"
    );

    // The other issue keeps everything.
    assert_eq!(get(s, &b).await, b_before);
    assert_eq!(s.list_comments(b.id).await.expect("comments").len(), 2);
    assert_eq!(s.list_history(b.id, 100).await.expect("history"), b_history);
    assert_eq!(
        s.list_watchers(b.id).await.expect("watchers"),
        vec![cust.id]
    );
    assert_eq!(s.list_runs(b.id).await.expect("runs").len(), 1);
    assert_eq!(
        s.read_terminal(runs[1], 0, 100)
            .await
            .expect("chunks")
            .len(),
        2
    );
    assert_eq!(
        s.find_run_by_external_id("ext-1")
            .await
            .expect("find")
            .map(|r| r.id),
        Some(runs[1])
    );
    assert_eq!(
        s.list_activities(b.id, None, 100)
            .await
            .expect("activities")
            .len(),
        2
    );
    assert_eq!(s.links_for_issue(b.id).await.expect("links").len(), 1);
    assert_eq!(s.list_fix_attempts(b.id).await.expect("fixes").len(), 1);
    assert_eq!(
        s.list_deferred(b.id).await.expect("deferred").len(),
        0,
        "settled by its allowed run"
    );

    // Nothing outside the issue went, and its number is not handed out again.
    assert_eq!(s.get_customer(cust.id).await.expect("customer"), cust);
    assert_eq!(s.list_columns(ws.id).await.expect("columns"), columns);
    assert_eq!(s.list_labels(ws.id).await.expect("labels"), labels);
    let next = issue(s, ws.id, "after delete").await;
    assert_eq!(
        next.identifier, "ACME-3",
        "deleting does not free the identifier"
    );
    let again = s
        .ingest_error(ws.id, draft("loki", "fp-a", 1, mins(20)))
        .await
        .expect("ingest");
    assert!(
        again.created,
        "the deleted issue's fingerprint starts a new issue"
    );
    assert_eq!(
        (again.issue.identifier.as_str(), again.link.event_count),
        ("ACME-4", 1)
    );

    not_found(
        s.delete_issue(a.id, mins(0), &Default::default()).await,
        "deleting twice",
    );
}

async fn comments_are_oldest_first_with_history(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "commented").await;
    let other = issue(s, ws.id, "other").await;

    let mut made = Vec::new();
    for (n, body) in ["first", "second", "third"].into_iter().enumerate() {
        let c = s
            .add_comment(
                i.id,
                NewComment {
                    author: Some(format!("author {n}")),
                    body: body.into(),
                },
                &actor(),
                mins(n as i64 + 1),
                &Default::default(),
            )
            .await
            .expect("add_comment");
        assert_eq!(
            (c.issue_id, c.body.as_str(), c.created_at),
            (i.id, body, mins(n as i64 + 1))
        );
        assert_eq!(c.author, Some(format!("author {n}")));
        made.push(c);
    }
    s.add_comment(
        other.id,
        NewComment {
            author: None,
            body: "elsewhere".into(),
        },
        &actor(),
        mins(2),
        &Default::default(),
    )
    .await
    .expect("add_comment");

    assert_eq!(
        s.list_comments(i.id).await.expect("list_comments"),
        made,
        "oldest first, only this issue's"
    );
    let history = s.list_history(i.id, 10).await.expect("list_history");
    let actions: Vec<HistoryAction> = history.iter().map(|h| h.action).collect();
    assert_eq!(
        actions,
        [
            HistoryAction::CommentAdded,
            HistoryAction::CommentAdded,
            HistoryAction::CommentAdded,
            HistoryAction::Created
        ]
    );
    assert_eq!(history[0].created_at, mins(3));

    invalid(
        s.add_comment(
            i.id,
            NewComment {
                author: None,
                body: "  ".into(),
            },
            &actor(),
            mins(5),
            &Default::default(),
        )
        .await,
        "body",
        "an empty comment",
    );
    not_found(
        s.add_comment(
            IssueId::new(),
            NewComment {
                author: None,
                body: "x".into(),
            },
            &actor(),
            mins(5),
            &Default::default(),
        )
        .await,
        "a comment on an unknown issue",
    );
    assert_eq!(s.list_comments(i.id).await.expect("list_comments").len(), 3);
}

async fn history_is_newest_first_with_limit(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let i = issue(s, ws.id, "tracked").await;
    let steps = [
        (HistoryAction::PriorityChanged, json!("P3"), json!("P1")),
        (HistoryAction::AssigneeChanged, json!(null), json!("bob")),
        (HistoryAction::PlanChanged, json!(null), json!("drafted")),
    ];
    for (n, (action, old, new)) in steps.iter().enumerate() {
        let h = NewHistory::new(*action, &Actor::system("sweeper"))
            .values(Some(old.clone()), Some(new.clone()));
        s.update_issue(
            i.id,
            IssueUpdate {
                outbox: Default::default(),
                patch: IssuePatch::default(),
                history: vec![h],
                expected_version: None,
                now: mins(n as i64 + 1),
            },
        )
        .await
        .expect("update_issue");
    }

    let two = s.list_history(i.id, 2).await.expect("list_history");
    assert_eq!(
        two.iter().map(|h| h.action).collect::<Vec<_>>(),
        [HistoryAction::PlanChanged, HistoryAction::AssigneeChanged]
    );
    let all = s.list_history(i.id, 100).await.expect("list_history");
    assert_eq!(
        all.iter().map(|h| h.action).collect::<Vec<_>>(),
        [
            HistoryAction::PlanChanged,
            HistoryAction::AssigneeChanged,
            HistoryAction::PriorityChanged,
            HistoryAction::Created
        ]
    );
    assert_eq!(
        all.iter().map(|h| h.created_at).collect::<Vec<_>>(),
        [mins(3), mins(2), mins(1), t0()]
    );
    // A JSON null is "no value": it reads back as None from every store.
    assert_eq!(
        (&all[1].old_value, &all[1].new_value),
        (&None, &Some(json!("bob"))),
        "values round-trip"
    );
    assert_eq!(all[1].actor, Actor::system("sweeper"));
    assert!(all.iter().all(|h| h.issue_id == i.id));
    assert_eq!(
        s.list_history(i.id, 0).await.expect("list_history").len(),
        0
    );
    let ids: std::collections::BTreeSet<_> = all.iter().map(|h| h.id).collect();
    assert_eq!(ids.len(), 4, "history ids are distinct");
}

async fn watchers_add_remove_list_and_filter(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let c1 = add_customer(s, ws.id, "One", "one").await;
    let c2 = add_customer(s, ws.id, "Two", "two").await;
    let i1 = issue(s, ws.id, "first").await;
    let i2 = issue(s, ws.id, "second").await;
    let _i3 = issue(s, ws.id, "unwatched").await;

    assert!(
        s.add_watcher(i1.id, c1.id, mins(1))
            .await
            .expect("add_watcher"),
        "new watch: true"
    );
    assert!(
        !s.add_watcher(i1.id, c1.id, mins(2))
            .await
            .expect("add_watcher"),
        "repeat watch: false"
    );
    assert!(
        s.add_watcher(i1.id, c2.id, mins(2))
            .await
            .expect("add_watcher")
    );
    assert!(
        s.add_watcher(i2.id, c1.id, mins(2))
            .await
            .expect("add_watcher")
    );
    assert_eq!(
        sorted(s.list_watchers(i1.id).await.expect("list_watchers")),
        sorted(vec![c1.id, c2.id])
    );
    assert_eq!(
        s.list_watchers(i2.id).await.expect("list_watchers"),
        vec![c1.id]
    );

    let watched = |c| async move {
        numbers(
            &s.list_issues(
                ws.id,
                &IssueFilter {
                    watched_by: Some(c),
                    ..Default::default()
                },
            )
            .await
            .expect("list_issues"),
        )
    };
    assert_eq!(watched(c1.id).await, [2, 1]);
    assert_eq!(watched(c2.id).await, [1]);

    assert!(
        s.remove_watcher(i1.id, c1.id)
            .await
            .expect("remove_watcher"),
        "removing a watch: true"
    );
    assert!(
        !s.remove_watcher(i1.id, c1.id)
            .await
            .expect("remove_watcher"),
        "removing it again: false"
    );
    assert_eq!(
        s.list_watchers(i1.id).await.expect("list_watchers"),
        vec![c2.id]
    );
    assert_eq!(watched(c1.id).await, [2]);
    assert_eq!(watched(c2.id).await, [1]);

    not_found(
        s.add_watcher(i1.id, crate::ids::CustomerId::new(), mins(3))
            .await,
        "an unknown customer watching",
    );
    not_found(
        s.add_watcher(IssueId::new(), c1.id, mins(3)).await,
        "watching an unknown issue",
    );
    assert!(matches!(
        reserve(s, &spawn(i2.id, WorkflowKind::Qa, permissive()), mins(4))
            .await
            .decision,
        Decision::Allow
    ));
    assert_eq!(
        watched(c1.id).await,
        [2],
        "watching is independent of spawns"
    );
}

async fn a_customer_watches_its_issue_from_the_creation_on(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let acme = add_customer(s, ws.id, "Acme", "acme").await;
    let reported = |title: &str, customer: CustomerId, watches: bool| {
        let mut n = NewIssue::titled(title);
        n.customer_id = Some(customer);
        n.customer_watches = watches;
        n
    };

    let watched = create(s, ws.id, reported("from chat", acme.id, true), mins(1)).await;
    assert_eq!(
        s.list_watchers(watched.id).await.expect("watchers"),
        vec![acme.id]
    );
    let owned = create(s, ws.id, reported("owned only", acme.id, false), mins(2)).await;
    assert_eq!(s.list_watchers(owned.id).await.expect("watchers"), vec![]);

    // A customer that does not exist: nothing is created (no identifier used up either).
    not_found(
        s.create_issue(
            ws.id,
            reported("nobody", CustomerId::new(), true),
            &actor(),
            mins(3),
            &Default::default(),
        )
        .await,
        "a watching customer that does not exist",
    );
    let next = create(s, ws.id, NewIssue::titled("next"), mins(4)).await;
    assert_eq!(next.number, owned.number + 1);

    // An error issue made for a customer by the ingest watches the same way.
    let mut d = draft("loki", "fp-watched", 1, mins(5));
    d.new_issue.customer_id = Some(acme.id);
    d.new_issue.customer_watches = true;
    let o = s.ingest_error(ws.id, d).await.expect("ingest");
    assert!(o.created);
    assert_eq!(
        s.list_watchers(o.issue.id).await.expect("watchers"),
        vec![acme.id]
    );
}
