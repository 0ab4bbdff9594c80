//! CustomerStore: customers, slugs, portal tokens, deletion and health inputs.

use super::support::*;
use crate::customer::{CustomerPatch, HealthIssue, NewCustomerUser, new_portal_token};
use crate::ids::{CustomerId, WorkspaceId};
use crate::issue::{ColumnCategory, IssueFilter, NewColumn, NewComment, NewIssue, Priority};

pub(super) fn cases() -> Vec<Case> {
    cases!("customers":
        create_and_get_by_id_slug_and_token,
        update_customer_and_slug_conflicts,
        set_portal_token_replaces_the_old_token,
        delete_customer_clears_issues_and_watches,
        health_inputs_cover_the_customers_issues,
        customer_users_are_one_per_slack_user_and_learn,
    )
}

async fn create_and_get_by_id_slug_and_token(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let other = s
        .ensure_workspace("Beta", "BETA", t0())
        .await
        .expect("second workspace");

    let zeta = customer(ws.id, "Zeta Corp", "zeta", t0());
    assert_eq!(
        s.create_customer(&zeta).await.expect("create"),
        zeta,
        "stored as given"
    );
    let acme = s
        .create_customer(&customer(ws.id, "Acme", "acme", mins(1)))
        .await
        .expect("create");
    let beta = s
        .create_customer(&customer(ws.id, "Beta", "beta", mins(2)))
        .await
        .expect("create");
    let theirs = s
        .create_customer(&customer(other.id, "Acme elsewhere", "acme", mins(3)))
        .await
        .expect("the same slug in another workspace");

    assert_eq!(s.get_customer(zeta.id).await.expect("get"), zeta);
    assert_eq!(
        s.get_customer_by_slug(ws.id, "acme")
            .await
            .expect("by slug"),
        acme
    );
    assert_eq!(
        s.get_customer_by_slug(other.id, "acme")
            .await
            .expect("by slug"),
        theirs,
        "slugs are per workspace"
    );
    assert_eq!(
        s.get_customer_by_token(&beta.portal_token)
            .await
            .expect("by token"),
        Some(beta.clone())
    );
    assert_eq!(
        s.get_customer_by_token(&new_portal_token())
            .await
            .expect("by token"),
        None
    );
    assert_eq!(s.get_customer_by_token("").await.expect("by token"), None);

    let names: Vec<String> = s
        .list_customers(ws.id)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(
        names,
        ["Acme", "Beta", "Zeta Corp"],
        "name order, own workspace only"
    );

    let mut dup = customer(ws.id, "Another Acme", "acme", mins(4));
    conflict(
        s.create_customer(&dup).await,
        "a slug taken in the workspace",
    );
    dup.slug = "acme-2".into();
    s.create_customer(&dup).await.expect("a free slug");
    assert_eq!(s.list_customers(ws.id).await.expect("list").len(), 4);

    not_found(
        s.get_customer(CustomerId::new()).await,
        "an unknown customer",
    );
    not_found(
        s.get_customer_by_slug(ws.id, "nobody").await,
        "an unknown slug",
    );
    not_found(
        s.get_customer_by_slug(WorkspaceId::new(), "acme").await,
        "a slug in an unknown workspace",
    );
    not_found(
        s.create_customer(&customer(WorkspaceId::new(), "Lost", "lost", t0()))
            .await,
        "a customer of an unknown workspace",
    );
}

async fn update_customer_and_slug_conflicts(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let acme = add_customer(s, ws.id, "Acme", "acme").await;
    let beta = add_customer(s, ws.id, "Beta", "beta").await;

    let patch = CustomerPatch {
        name: Some("Acme Inc".into()),
        brand_color: Some(Some("#abcdef".into())),
        logo_url: Some(None),
        slack_channel_id: Some(Some("C0123".into())),
        ..Default::default()
    };
    let u = s
        .update_customer(acme.id, &patch, mins(5))
        .await
        .expect("update");
    assert_eq!(
        (
            u.name.as_str(),
            u.brand_color.as_deref(),
            u.logo_url.as_deref(),
            u.slack_channel_id.as_deref()
        ),
        ("Acme Inc", Some("#abcdef"), None, Some("C0123"))
    );
    assert_eq!(
        (
            u.slug.as_str(),
            u.portal_token.as_str(),
            u.created_at,
            u.updated_at
        ),
        ("acme", acme.portal_token.as_str(), acme.created_at, mins(5))
    );
    assert_eq!(s.get_customer(acme.id).await.expect("get"), u);

    conflict(
        s.update_customer(
            acme.id,
            &CustomerPatch {
                slug: Some("beta".into()),
                ..Default::default()
            },
            mins(6),
        )
        .await,
        "a slug taken by another customer",
    );
    assert_eq!(
        s.get_customer(acme.id).await.expect("get"),
        u,
        "a conflicting update writes nothing"
    );
    assert_eq!(s.get_customer(beta.id).await.expect("get"), beta);

    let same = s
        .update_customer(
            acme.id,
            &CustomerPatch {
                slug: Some("acme".into()),
                ..Default::default()
            },
            mins(7),
        )
        .await
        .expect("own slug");
    assert_eq!(same.slug, "acme", "keeping one's own slug is no conflict");
    let moved = s
        .update_customer(
            acme.id,
            &CustomerPatch {
                slug: Some("acme-inc".into()),
                ..Default::default()
            },
            mins(8),
        )
        .await
        .expect("new slug");
    assert_eq!(
        s.get_customer_by_slug(ws.id, "acme-inc")
            .await
            .expect("by new slug")
            .id,
        acme.id
    );
    not_found(s.get_customer_by_slug(ws.id, "acme").await, "the old slug");
    assert_eq!(moved.updated_at, mins(8));

    invalid(
        s.update_customer(
            acme.id,
            &CustomerPatch {
                brand_color: Some(Some("red".into())),
                ..Default::default()
            },
            mins(9),
        )
        .await,
        "brandColor",
        "a bad colour",
    );
    invalid(
        s.update_customer(
            acme.id,
            &CustomerPatch {
                slug: Some("Not A Slug".into()),
                ..Default::default()
            },
            mins(9),
        )
        .await,
        "slug",
        "a bad slug",
    );
    invalid(
        s.update_customer(
            acme.id,
            &CustomerPatch {
                name: Some(" ".into()),
                ..Default::default()
            },
            mins(9),
        )
        .await,
        "name",
        "an empty name",
    );
    assert_eq!(
        s.get_customer(acme.id).await.expect("get"),
        moved,
        "rejected updates write nothing"
    );
    not_found(
        s.update_customer(CustomerId::new(), &CustomerPatch::default(), mins(9))
            .await,
        "update of an unknown customer",
    );
    let names: Vec<String> = s
        .list_customers(ws.id)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["Acme Inc", "Beta"]);
}

async fn set_portal_token_replaces_the_old_token(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let acme = add_customer(s, ws.id, "Acme", "acme").await;
    let beta = add_customer(s, ws.id, "Beta", "beta").await;
    let old = acme.portal_token.clone();
    let new = new_portal_token();

    let u = s
        .set_portal_token(acme.id, &new, mins(5))
        .await
        .expect("set_portal_token");
    assert_eq!(
        (
            u.portal_token.as_str(),
            u.updated_at,
            u.name.as_str(),
            u.slug.as_str()
        ),
        (new.as_str(), mins(5), "Acme", "acme")
    );
    assert_eq!(
        s.get_customer_by_token(&old).await.expect("by old token"),
        None,
        "the old token no longer opens the portal"
    );
    assert_eq!(
        s.get_customer_by_token(&new).await.expect("by new token"),
        Some(u.clone())
    );
    assert_eq!(
        s.get_customer_by_token(&beta.portal_token)
            .await
            .expect("by token"),
        Some(beta),
        "other customers keep theirs"
    );
    assert_eq!(s.get_customer(acme.id).await.expect("get"), u);
    not_found(
        s.set_portal_token(CustomerId::new(), &new_portal_token(), mins(6))
            .await,
        "an unknown customer",
    );
}

async fn delete_customer_clears_issues_and_watches(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let gone_c = add_customer(s, ws.id, "Acme", "acme").await;
    let stays = add_customer(s, ws.id, "Beta", "beta").await;
    let mut owned = NewIssue::titled("owned");
    owned.customer_id = Some(gone_c.id);
    let owned = create(s, ws.id, owned, t0()).await;
    let mut theirs = NewIssue::titled("theirs");
    theirs.customer_id = Some(stays.id);
    let theirs = create(s, ws.id, theirs, t0()).await;
    let watched = issue(s, ws.id, "watched").await;
    for i in [&owned, &theirs, &watched] {
        s.add_watcher(i.id, gone_c.id, mins(1))
            .await
            .expect("watch");
    }
    s.add_watcher(watched.id, stays.id, mins(1))
        .await
        .expect("watch");

    s.delete_customer(gone_c.id).await.expect("delete_customer");
    not_found(s.get_customer(gone_c.id).await, "the deleted customer");
    not_found(
        s.get_customer_by_slug(ws.id, "acme").await,
        "the deleted customer's slug",
    );
    assert_eq!(
        s.get_customer_by_token(&gone_c.portal_token)
            .await
            .expect("by token"),
        None
    );
    let owned_now = get(s, &owned).await;
    assert_eq!(
        owned_now.customer_id, None,
        "its issues stay, without a customer"
    );
    assert_eq!(
        (owned_now.title.as_str(), owned_now.identifier.as_str()),
        ("owned", "ACME-1")
    );
    assert_eq!(
        get(s, &theirs).await.customer_id,
        Some(stays.id),
        "other customers' issues keep theirs"
    );
    assert_eq!(
        s.list_watchers(watched.id).await.expect("watchers"),
        vec![stays.id],
        "its watches are gone"
    );
    assert_eq!(s.list_watchers(owned.id).await.expect("watchers"), vec![]);
    let f = IssueFilter {
        watched_by: Some(gone_c.id),
        ..Default::default()
    };
    assert_eq!(s.list_issues(ws.id, &f).await.expect("list"), vec![]);
    let f = IssueFilter {
        customer_id: Some(gone_c.id),
        ..Default::default()
    };
    assert_eq!(s.list_issues(ws.id, &f).await.expect("list"), vec![]);
    assert_eq!(
        s.list_issues(ws.id, &IssueFilter::default())
            .await
            .expect("list")
            .len(),
        3
    );
    assert_eq!(s.list_customers(ws.id).await.expect("list"), vec![stays]);
    not_found(s.delete_customer(gone_c.id).await, "deleting twice");
    // A new customer may take the slug.
    s.create_customer(&customer(ws.id, "Acme again", "acme", mins(2)))
        .await
        .expect("the slug is free again");
}

async fn health_inputs_cover_the_customers_issues(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let c = add_customer(s, ws.id, "Acme", "acme").await;
    let other = add_customer(s, ws.id, "Beta", "beta").await;
    let wont_fix = s
        .add_column(
            ws.id,
            NewColumn {
                name: "Won't Fix".into(),
                color: "#999999".into(),
                position: None,
                category: ColumnCategory::Closed,
            },
        )
        .await
        .expect("add_column");
    let done = column_id(s, ws.id, "Done").await;
    let canceled = column_id(s, ws.id, "Canceled").await;

    let mk = |title: &str, priority: Priority, customer: Option<CustomerId>, minute: i64| {
        let mut n = NewIssue::titled(title);
        n.priority = priority;
        n.customer_id = customer;
        async move { create(s, ws.id, n, mins(minute)).await }
    };
    let open = mk("open", Priority::P1, Some(c.id), 0).await;
    let fixed = mk("done", Priority::P2, Some(c.id), 1).await;
    let dropped = mk("canceled", Priority::P3, Some(c.id), 2).await;
    let wont = mk("won't fix", Priority::P4, Some(c.id), 3).await;
    let elsewhere = mk("other customer", Priority::P1, Some(other.id), 4).await;
    let _nobody = mk("no customer", Priority::P1, None, 5).await;
    move_to(s, fixed.id, done, mins(10)).await;
    move_to(s, dropped.id, canceled, mins(10)).await;
    move_to(s, wont.id, wont_fix.id, mins(10)).await;
    for (i, at) in [
        (&open, 20),
        (&open, 40),
        (&open, 30),
        (&fixed, 50),
        (&elsewhere, 60),
    ] {
        s.add_comment(
            i.id,
            NewComment {
                author: Some("support".into()),
                body: "on it".into(),
            },
            &actor(),
            mins(at),
            &Default::default(),
        )
        .await
        .expect("comment");
    }

    let inputs = s.health_inputs(c.id).await.expect("health_inputs");
    assert_eq!(inputs.issues.len(), 4, "the customer's issues only");
    let by = |p: Priority| -> HealthIssue {
        inputs
            .issues
            .iter()
            .find(|h| h.priority == p)
            .unwrap_or_else(|| panic!("no {p} issue"))
            .clone()
    };
    let p1 = by(Priority::P1);
    assert_eq!(
        (p1.closed, p1.created_at, p1.comment_count),
        (false, mins(0), 3)
    );
    assert_eq!(
        (p1.first_comment_at, p1.last_comment_at),
        (Some(mins(20)), Some(mins(40))),
        "first and last by time"
    );
    let p2 = by(Priority::P2);
    assert_eq!(
        (
            p2.closed,
            p2.created_at,
            p2.comment_count,
            p2.first_comment_at,
            p2.last_comment_at
        ),
        (true, mins(1), 1, Some(mins(50)), Some(mins(50)))
    );
    let p3 = by(Priority::P3);
    assert_eq!(
        (
            p3.closed,
            p3.comment_count,
            p3.first_comment_at,
            p3.last_comment_at
        ),
        (true, 0, None, None),
        "Canceled is closed"
    );
    let p4 = by(Priority::P4);
    assert!(p4.closed, "closed by column category, not by name");
    assert!(inputs.issues.iter().all(|h| h.updated_at >= h.created_at));

    let theirs = s.health_inputs(other.id).await.expect("health_inputs");
    assert_eq!(theirs.issues.len(), 1);
    assert_eq!(
        (theirs.issues[0].comment_count, theirs.issues[0].closed),
        (1, false)
    );
    let fresh = add_customer(s, ws.id, "Fresh", "fresh").await;
    assert_eq!(
        s.health_inputs(fresh.id)
            .await
            .expect("health_inputs")
            .issues,
        vec![]
    );
    not_found(
        s.health_inputs(CustomerId::new()).await,
        "an unknown customer",
    );
}

async fn customer_users_are_one_per_slack_user_and_learn(store: Arc<dyn Store>) {
    let s = &*store;
    let ws = workspace(s).await;
    let acme = add_customer(s, ws.id, "Acme", "acme").await;
    let globex = add_customer(s, ws.id, "Globex", "globex").await;
    let ann = NewCustomerUser {
        slack_user_id: "U123".into(),
        display_name: Some("Ann".into()),
        avatar_url: Some("https://avatars.example/ann.png".into()),
        email: None,
    };
    let first = s
        .upsert_customer_user(acme.id, &ann, mins(1))
        .await
        .expect("create");
    assert_eq!(
        (
            first.customer_id,
            first.slack_user_id.as_str(),
            first.display_name.as_deref(),
            first.email.as_deref(),
            first.created_at
        ),
        (acme.id, "U123", Some("Ann"), None, mins(1))
    );
    // The same person again: the same row, with what this report tells.
    let again = s
        .upsert_customer_user(
            acme.id,
            &NewCustomerUser {
                slack_user_id: "U123".into(),
                display_name: Some("Ann Example".into()),
                avatar_url: Some("  ".into()),
                email: Some("ann@acme.example".into()),
            },
            mins(2),
        )
        .await
        .expect("update");
    assert_eq!(again.id, first.id, "one per customer and Slack user");
    assert_eq!(
        (
            again.display_name.as_deref(),
            again.avatar_url.as_deref(),
            again.email.as_deref(),
            again.created_at,
            again.updated_at
        ),
        (
            Some("Ann Example"),
            Some("https://avatars.example/ann.png"),
            Some("ann@acme.example"),
            mins(1),
            mins(2)
        ),
        "what is not told stays"
    );
    assert_eq!(s.get_customer_user(first.id).await.expect("get"), again);
    // Another customer's channel: another person.
    let other = s
        .upsert_customer_user(globex.id, &ann, mins(3))
        .await
        .expect("create");
    assert_ne!(other.id, first.id);
    not_found(
        s.upsert_customer_user(CustomerId::new(), &ann, mins(3))
            .await,
        "an unknown customer",
    );
    invalid(
        s.upsert_customer_user(
            acme.id,
            &NewCustomerUser {
                slack_user_id: "U 1".into(),
                ..NewCustomerUser::default()
            },
            mins(3),
        )
        .await,
        "slackUserId",
        "a malformed Slack user id",
    );
    not_found(
        s.get_customer_user(crate::ids::CustomerUserId::new()).await,
        "an unknown person",
    );

    // Concurrent first reports of one person make one row.
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let mut handles = Vec::new();
    for n in 0..8 {
        let store = store.clone();
        let barrier = barrier.clone();
        let cust = acme.id;
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            store
                .upsert_customer_user(
                    cust,
                    &NewCustomerUser {
                        slack_user_id: "U999".into(),
                        display_name: Some(format!("Bob {n}")),
                        ..NewCustomerUser::default()
                    },
                    mins(4),
                )
                .await
                .expect("concurrent upsert")
                .id
        }));
    }
    let ids = join_all(handles).await;
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one person: {ids:?}");

    // Deleting the customer detaches its issues from it and from its people.
    let mut n = NewIssue::titled("reported");
    n.customer_id = Some(acme.id);
    n.reporter_id = Some(first.id);
    let issue = create(s, ws.id, n, mins(5)).await;
    assert_eq!(issue.reporter_id, Some(first.id));
    s.delete_customer(acme.id).await.expect("delete");
    let after = get(s, &issue).await;
    assert_eq!((after.customer_id, after.reporter_id), (None, None));
    not_found(
        s.get_customer_user(first.id).await,
        "a deleted customer's person",
    );
}
