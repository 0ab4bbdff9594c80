//! `POST /api/issues/deduplicate` against the real binary: dry run, execution, bad input, auth.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Server, get, post};

async fn create(s: &Server, title: &str, description: &str) -> String {
    let (st, v) = post(
        s,
        "/api/issues",
        json!({ "title": title, "description": description }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["identifier"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn duplicates_are_proposed_then_cancelled_with_comments() {
    let s = Server::builder().start();
    let a = create(
        &s,
        "Checkout: Stripe card declined for saved cards",
        "Paying with a saved card fails at checkout: Stripe card_declined for customer cus_1",
    )
    .await;
    let b = create(
        &s,
        "Stripe card declined at checkout for saved cards",
        "Checkout with a saved card fails, Stripe card_declined for customer cus_2 paying",
    )
    .await;
    let other = create(
        &s,
        "Nightly search index rebuild times out",
        "The search index job runs past 30 minutes and is killed",
    )
    .await;

    let (st, dry) = post(&s, "/api/issues/deduplicate", json!({ "threshold": 0.5 })).await;
    assert_eq!(st, StatusCode::OK, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["issues_scanned"], 3);
    assert_eq!(dry["clusters_found"], 1);
    assert_eq!(dry["total_to_close"], 1);
    let action = &dry["proposed_actions"][0];
    assert_eq!(action["canonical"]["identifier"], a.as_str());
    assert_eq!(action["duplicates_to_close"][0]["identifier"], b.as_str());
    assert!(
        action["duplicates_to_close"][0]["reason"]
            .as_str()
            .unwrap()
            .contains(&a)
    );

    let (st, done) = post(
        &s,
        "/api/issues/deduplicate",
        json!({ "threshold": 0.5, "dry_run": false }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert_eq!(done["issuesClosed"], 1);
    assert_eq!(done["commentsAdded"], 2);
    let (_, dup) = get(&s, &format!("/api/issues/{b}")).await;
    assert_eq!(dup["status"]["name"], "Canceled", "{dup}");
    let (_, kept) = get(&s, &format!("/api/issues/{other}")).await;
    assert_eq!(kept["status"]["name"], "Backlog", "{kept}");
    let (_, comments) = get(&s, &format!("/api/comments?issueId={b}")).await;
    assert!(
        comments.to_string().contains("Closed as duplicate of"),
        "{comments}"
    );
}

#[tokio::test]
async fn an_empty_body_is_a_dry_run_and_bad_fields_are_named() {
    let s = Server::builder().start();
    let r = support::http()
        .post(s.url("/api/issues/deduplicate"))
        .bearer_auth(&s.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["clusters_found"], 0);

    for (body, field) in [
        (json!({ "threshold": "high" }), "threshold"),
        (json!({ "threshold": 2 }), "threshold"),
        (json!({ "max_clusters": 0 }), "max_clusters"),
        (json!({ "statuses": "Backlog" }), "statuses"),
        (json!({ "dryrun": false }), "dryrun"),
    ] {
        let (st, e) = post(&s, "/api/issues/deduplicate", body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {e}");
        assert_eq!(e["field"], field, "{body}: {e}");
    }
    let (st, e) = post(
        &s,
        "/api/issues/deduplicate",
        json!({ "statuses": ["Nowhere"] }),
    )
    .await;
    assert!(
        st == StatusCode::BAD_REQUEST || st == StatusCode::NOT_FOUND,
        "{st} {e}"
    );

    let r = support::http()
        .post(s.url("/api/issues/deduplicate"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
