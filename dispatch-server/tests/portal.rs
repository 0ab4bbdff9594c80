//! Black-box tests of customers (admin API, health, watchers) and the token-only customer portal.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Server, call, get, post};

fn client() -> reqwest::Client {
    support::http()
}

/// A portal request: no session, no API key, only what the URL carries.
async fn portal(s: &Server, path: &str) -> (StatusCode, Value) {
    let r = client().get(s.url(path)).send().await.unwrap();
    let st = r.status();
    if st == StatusCode::OK {
        assert_eq!(
            r.headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
    }
    (st, r.json().await.unwrap_or(Value::Null))
}

async fn customer(s: &Server, name: &str) -> Value {
    let (st, v) = post(s, "/api/customers", json!({ "name": name })).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["customer"].clone()
}

async fn issue(s: &Server, body: Value) -> Value {
    let (st, v) = post(s, "/api/issues", body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v
}

async fn watch(s: &Server, issue: &Value, customer: &Value) {
    let ident = issue["identifier"].as_str().unwrap();
    let (st, v) = post(
        s,
        &format!("/api/issues/{ident}/watchers"),
        json!({ "customerId": customer["id"] }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn customers_crud_slugs_and_tokens() {
    let s = Server::builder().start();
    let (st, created) = post(
        &s,
        "/api/customers",
        json!({ "name": "Acme, Inc.", "brandColor": "#112233", "slackChannelId": "C123" }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let c = &created["customer"];
    assert_eq!(c["slug"], "acme-inc", "derived from the name");
    assert_eq!(c["brandColor"], "#112233");
    assert_eq!(c["slackChannelId"], "C123");
    let token = c["portalToken"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 64);
    let id = c["id"].as_str().unwrap().to_string();

    let (st, e) = post(
        &s,
        "/api/customers",
        json!({ "name": "Other", "slug": "acme-inc" }),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    let (st, e) = post(
        &s,
        "/api/customers",
        json!({ "name": "Other", "slug": "Not A Slug" }),
    )
    .await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("slug"))
    );
    let (st, e) = post(
        &s,
        "/api/customers",
        json!({ "name": "Other", "brandColor": "red" }),
    )
    .await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("brandColor"))
    );
    let (st, e) = post(&s, "/api/customers", json!({ "slug": "x" })).await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("name"))
    );
    let beta = customer(&s, "Beta").await;

    let i = issue(&s, json!({ "title": "Acme's problem", "customerId": id })).await;
    assert_eq!(i["customer_id"], id.as_str());
    let (st, list) = get(&s, "/api/customers").await;
    assert_eq!(st, StatusCode::OK);
    let list = list["customers"].as_array().unwrap().clone();
    let names: Vec<&str> = list.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Acme, Inc.", "Beta"], "name order");
    assert_eq!(list[0]["issueCount"], 1);
    assert_eq!(list[1]["issueCount"], 0);

    let (st, one) = get(&s, &format!("/api/customers/{id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(one["customer"]["portalToken"], token.as_str());
    let (st, by_slug) = get(&s, "/api/customers/acme-inc").await;
    assert_eq!(
        (st, &by_slug["customer"]["id"]),
        (StatusCode::OK, &json!(id))
    );

    let (st, patched) = call(&s, reqwest::Method::PATCH, &format!("/api/customers/{id}"), Some(json!({ "name": "Acme", "brandColor": "#abcdef", "logoUrl": "https://acme.example/logo.png", "slackChannelId": null }))).await;
    assert_eq!(st, StatusCode::OK, "{patched}");
    assert_eq!(patched["customer"]["name"], "Acme");
    assert_eq!(patched["customer"]["brandColor"], "#abcdef");
    assert_eq!(
        patched["customer"]["logoUrl"],
        "https://acme.example/logo.png"
    );
    assert_eq!(patched["customer"]["slackChannelId"], Value::Null);
    let (st, e) = call(
        &s,
        reqwest::Method::PATCH,
        &format!("/api/customers/{id}"),
        Some(json!({ "slug": beta["slug"] })),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    let (st, e) = call(
        &s,
        reqwest::Method::PATCH,
        &format!("/api/customers/{id}"),
        Some(json!({ "brandColor": "#12" })),
    )
    .await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("brandColor"))
    );

    // Token regeneration: the old link stops working.
    let (st, _) = portal(&s, &format!("/api/portal/acme-inc?token={token}")).await;
    assert_eq!(st, StatusCode::OK);
    let (st, e) = post(
        &s,
        &format!("/api/customers/{id}?action=explode"),
        json!({}),
    )
    .await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("action"))
    );
    let (st, regen) = post(
        &s,
        &format!("/api/customers/{id}?action=regenerate-token"),
        json!({}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let fresh = regen["token"].as_str().unwrap().to_string();
    assert_ne!(fresh, token);
    assert_eq!(
        portal(&s, &format!("/api/portal/acme-inc?token={token}"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        portal(&s, &format!("/api/portal/acme-inc?token={fresh}"))
            .await
            .0,
        StatusCode::OK
    );

    let (st, _) = call(
        &s,
        reqwest::Method::DELETE,
        &format!("/api/customers/{id}"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        get(&s, &format!("/api/customers/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, still) = get(
        &s,
        &format!("/api/issues/{}", i["identifier"].as_str().unwrap()),
    )
    .await;
    assert_eq!(
        still["customer_id"],
        Value::Null,
        "the issue stays, without a customer"
    );
    assert_eq!(
        portal(&s, &format!("/api/portal/acme-inc?token={fresh}"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    let r = client().get(s.url("/api/customers")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn portal_shows_only_the_customers_watched_issues() {
    let s = Server::builder().start();
    let a = customer(&s, "Alpha").await;
    let b = customer(&s, "Bravo").await;
    let (ta, tb) = (
        a["portalToken"].as_str().unwrap().to_string(),
        b["portalToken"].as_str().unwrap().to_string(),
    );

    let mine = issue(&s, json!({ "title": "Alpha sees this", "priority": "P2" })).await;
    let theirs = issue(&s, json!({ "title": "Only Bravo sees this" })).await;
    let nobody = issue(&s, json!({ "title": "Internal only" })).await;
    let done = issue(
        &s,
        json!({ "title": "Alpha's finished one", "statusName": "Canceled" }),
    )
    .await;
    watch(&s, &mine, &a).await;
    watch(&s, &done, &a).await;
    watch(&s, &theirs, &b).await;
    post(
        &s,
        "/api/comments",
        json!({ "issueId": mine["id"], "body": "We are on it", "authorName": "Support" }),
    )
    .await;

    // The board: only Alpha's watched issues, closed columns hidden by default.
    let (st, board) = portal(&s, &format!("/api/portal/alpha?token={ta}")).await;
    assert_eq!(st, StatusCode::OK, "{board}");
    assert_eq!(board["customer"]["name"], "Alpha");
    assert_eq!(board["customer"]["slug"], "alpha");
    assert_eq!(
        board["customer"]["brandColor"], "#6366f1",
        "the portal's fallback colour"
    );
    assert!(board["customer"].get("portalToken").is_none());
    assert_eq!(board["showingClosed"], false);
    let shown = |b: &Value| -> Vec<String> {
        b["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| {
                c["issues"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["title"].as_str().unwrap().to_string())
            })
            .collect()
    };
    assert_eq!(shown(&board), ["Alpha sees this"]);
    assert!(
        board["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["isClosed"] == false)
    );
    let card = board["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| !c["issues"].as_array().unwrap().is_empty())
        .unwrap()["issues"][0]
        .clone();
    for k in [
        "id",
        "identifier",
        "title",
        "description",
        "priority",
        "status",
        "createdAt",
        "updatedAt",
    ] {
        assert!(card.get(k).is_some(), "{k} in {card}");
    }

    let (_, with_closed) =
        portal(&s, &format!("/api/portal/alpha?token={ta}&showClosed=true")).await;
    assert_eq!(with_closed["showingClosed"], true);
    let mut titles = shown(&with_closed);
    titles.sort();
    assert_eq!(titles, ["Alpha sees this", "Alpha's finished one"]);

    // Wrong, missing, other customer's token, or a slug that is not the token's: 401.
    for bad in [
        format!("/api/portal/alpha?token={}", "0".repeat(64)),
        "/api/portal/alpha".to_string(),
        "/api/portal/alpha?token=".to_string(),
        format!("/api/portal/alpha?token={tb}"),
        format!("/api/portal/bravo?token={ta}"),
        format!("/api/portal/nobody?token={ta}"),
    ] {
        assert_eq!(portal(&s, &bad).await.0, StatusCode::UNAUTHORIZED, "{bad}");
    }
    // The API key is not a portal token.
    let r = client()
        .get(s.url("/api/portal/alpha"))
        .bearer_auth(&s.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // One issue: watched → details with comments; not watched or unknown → 403.
    let ident = mine["identifier"].as_str().unwrap();
    let (st, detail) = portal(&s, &format!("/api/portal/alpha/issue/{ident}?token={ta}")).await;
    assert_eq!(st, StatusCode::OK, "{detail}");
    let d = &detail["issue"];
    assert_eq!(d["title"], "Alpha sees this");
    assert_eq!(d["priority"], "P2");
    assert_eq!(d["status"]["name"], "Backlog");
    assert_eq!(d["watcherCount"], 1);
    assert_eq!(d["comments"][0]["body"], "We are on it");
    assert_eq!(d["comments"][0]["author"]["name"], "Support");
    assert!(d["agentStatus"].is_string());
    assert_eq!(detail["customer"]["name"], "Alpha");
    for other in [
        theirs["identifier"].as_str().unwrap(),
        nobody["identifier"].as_str().unwrap(),
        "DISPATCH-9999",
    ] {
        let (st, _) = portal(&s, &format!("/api/portal/alpha/issue/{other}?token={ta}")).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{other}");
    }
    let (st, _) = portal(&s, &format!("/api/portal/alpha/issue/{ident}?token={tb}")).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = portal(&s, &format!("/api/portal/bravo/issue/{ident}?token={tb}")).await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "Bravo does not watch Alpha's issue"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_portal_tokens_are_rate_limited() {
    let s = Server::builder().start();
    let c = customer(&s, "Gamma").await;
    let token = c["portalToken"].as_str().unwrap().to_string();
    let mut limited = false;
    for n in 0..40 {
        let (st, _) = portal(&s, &format!("/api/portal/gamma?token={n:064}")).await;
        if st == StatusCode::TOO_MANY_REQUESTS {
            limited = true;
            break;
        }
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    assert!(limited, "guessing is cut off");
    // While limited, even the right token waits (nothing can be learned by guessing on).
    assert_eq!(
        portal(&s, &format!("/api/portal/gamma?token={token}"))
            .await
            .0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn watchers_are_managed_per_issue() {
    let s = Server::builder().start();
    let c = customer(&s, "Delta").await;
    let i = issue(&s, json!({ "title": "Watched" })).await;
    let ident = i["identifier"].as_str().unwrap();
    let path = format!("/api/issues/{ident}/watchers");
    let (st, v) = post(&s, &path, json!({ "customerId": c["id"] })).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["added"], true);
    assert_eq!(v["watchers"][0]["slug"], "delta");
    let (st, v) = post(&s, &path, json!({ "customerId": c["id"] })).await;
    assert_eq!(
        (st, &v["added"]),
        (StatusCode::OK, &json!(false)),
        "idempotent"
    );
    let (_, listed) = get(&s, &path).await;
    assert_eq!(listed["watchers"].as_array().unwrap().len(), 1);

    let (st, e) = post(&s, &path, json!({})).await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("customerId"))
    );
    let (st, _) = post(&s, &path, json!({ "customerId": uuid::Uuid::now_v7() })).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = post(
        &s,
        "/api/issues/NOPE-1/watchers",
        json!({ "customerId": c["id"] }),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let (st, v) = call(
        &s,
        reqwest::Method::DELETE,
        &path,
        Some(json!({ "customerId": c["id"] })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["removed"], true);
    assert_eq!(v["watchers"], json!([]));
    let (st, v) = call(
        &s,
        reqwest::Method::DELETE,
        &format!("{path}?customerId={}", c["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!((st, &v["removed"]), (StatusCode::OK, &json!(false)));
}

#[tokio::test(flavor = "multi_thread")]
async fn customer_stats_metrics_issues_and_activity() {
    let s = Server::builder().start();
    let c = customer(&s, "Echo").await;
    let id = c["id"].as_str().unwrap();
    let p1 = issue(
        &s,
        json!({ "title": "Outage", "priority": "P1", "customerId": id }),
    )
    .await;
    let p3 = issue(
        &s,
        json!({ "title": "Typo", "priority": "P3", "customerId": id }),
    )
    .await;
    issue(&s, json!({ "title": "Someone else's", "priority": "P1" })).await;
    let long = "x".repeat(150);
    post(
        &s,
        "/api/comments",
        json!({ "issueId": p3["id"], "body": long, "authorName": "Support" }),
    )
    .await;

    let (st, v) = get(&s, &format!("/api/customers/{id}/stats")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let m = &v["metrics"];
    assert_eq!(m["totalIssues"], 2);
    assert_eq!(m["openIssues"], 2);
    assert_eq!(m["highPriorityOpen"], 1);
    assert_eq!(m["unrespondedIssues"], 1);
    assert_eq!(m["healthScore"], 95, "{m}");
    assert_eq!(m["healthColor"], "#22c55e");

    let issues = v["issues"].as_array().unwrap();
    let titles: Vec<&str> = issues
        .iter()
        .map(|i| i["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Outage", "Typo"], "priority order");
    assert_eq!(issues[0]["commentCount"], 0);
    assert_eq!(issues[0]["hasTeamResponse"], false);
    assert_eq!(issues[1]["commentCount"], 1);
    assert_eq!(issues[1]["hasTeamResponse"], true);
    assert_eq!(issues[0]["daysSinceUpdate"], 0);

    let activity = v["activity"].as_array().unwrap();
    assert_eq!(activity[0]["type"], "comment", "newest first: {activity:?}");
    let preview = activity[0]["description"].as_str().unwrap();
    assert_eq!(preview.len(), 103);
    assert!(preview.ends_with("..."));
    assert_eq!(activity[0]["actorName"], "Support");
    assert_eq!(
        activity
            .iter()
            .filter(|a| a["type"] == "issue_created")
            .count(),
        2
    );

    let (_, crit) = get(
        &s,
        &format!("/api/customers/{id}/stats?include=issues&filter=critical"),
    )
    .await;
    assert!(crit.get("metrics").is_none() && crit.get("activity").is_none());
    assert_eq!(crit["issues"].as_array().unwrap().len(), 1);
    assert_eq!(crit["issues"][0]["identifier"], p1["identifier"]);
    let (_, unresp) = get(
        &s,
        &format!("/api/customers/{id}/stats?include=issues&filter=unresponded"),
    )
    .await;
    assert_eq!(
        unresp["issues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["title"].clone())
            .collect::<Vec<_>>(),
        [json!("Outage")]
    );
    let (_, stale) = get(
        &s,
        &format!("/api/customers/{id}/stats?include=issues&filter=stale"),
    )
    .await;
    assert_eq!(stale["issues"], json!([]));
    let (_, limited) = get(
        &s,
        &format!("/api/customers/{id}/stats?include=activity&limit=1"),
    )
    .await;
    assert_eq!(limited["activity"].as_array().unwrap().len(), 1);

    let (st, e) = get(&s, &format!("/api/customers/{id}/stats?filter=bogus")).await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("filter"))
    );
    let (st, _) = get(
        &s,
        &format!("/api/customers/{}/stats", uuid::Uuid::now_v7()),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}
