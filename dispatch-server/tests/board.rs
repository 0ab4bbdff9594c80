//! Black-box tests of the board's supporting endpoints: statuses, labels, comments, search, the
//! fleet panel, and session forgeries.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Server, get, post, put};

fn client() -> reqwest::Client {
    support::http()
}

async fn send(
    s: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut req = client()
        .request(method, s.url(path))
        .bearer_auth(&s.api_key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let st = r.status();
    let h = r.headers().clone();
    (st, r.json().await.unwrap_or(Value::Null), h)
}

#[tokio::test(flavor = "multi_thread")]
async fn statuses_list_create_and_reorder() {
    let s = Server::builder().start();
    let (st, cols) = get(&s, "/api/statuses").await;
    assert_eq!(st, StatusCode::OK);
    let cols = cols.as_array().unwrap().clone();
    assert!(cols.len() >= 5, "default columns: {cols:?}");
    let positions: Vec<i64> = cols
        .iter()
        .map(|c| c["position"].as_i64().unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "by position: {positions:?}"
    );
    assert!(
        cols.iter()
            .any(|c| c["name"] == "Done" && c["isClosed"] == true)
    );

    let (st, created) = post(
        &s,
        "/api/statuses",
        json!({ "name": "Blocked", "color": "#ff0000" }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "Blocked");
    assert_eq!(created["isClosed"], false);
    assert!(
        created["position"].as_i64().unwrap() > *positions.last().unwrap(),
        "appended"
    );

    let (st, e) = post(
        &s,
        "/api/statuses",
        json!({ "name": "Bad", "color": "red" }),
    )
    .await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("color"))
    );
    let (st, e) = post(&s, "/api/statuses", json!({ "color": "#000000" })).await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("name"))
    );
    let (st, closed) = post(
        &s,
        "/api/statuses",
        json!({ "name": "Won't do", "color": "#333333", "isClosed": true }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(closed["isClosed"], true);

    let (_, all) = get(&s, "/api/statuses").await;
    let mut ids: Vec<Value> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    ids.reverse();
    let (st, reordered) = put(&s, "/api/statuses", json!({ "statusIds": ids })).await;
    assert_eq!(st, StatusCode::OK, "{reordered}");
    let got: Vec<Value> = reordered
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(got, ids);
    let (_, again) = get(&s, "/api/statuses").await;
    assert_eq!(again.as_array().unwrap()[0]["id"], ids[0], "persisted");

    let (st, e) = put(&s, "/api/statuses", json!({ "statusIds": ["nope"] })).await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("statusIds[0]"))
    );
    let (st, _) = put(&s, "/api/statuses", json!({ "statusIds": [ids[0]] })).await;
    assert!(st.is_client_error(), "a partial order is refused: {st}");
}

#[tokio::test(flavor = "multi_thread")]
async fn labels_create_lookup_conflict_and_pages() {
    let s = Server::builder().start();
    let (st, l) = post(
        &s,
        "/api/labels",
        json!({ "name": "Frontend", "color": "#3b82f6" }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{l}");
    assert_eq!(l["name"], "Frontend");
    assert_eq!(l["color"], "#3b82f6");
    assert!(l["id"].is_string());

    let (st, e) = post(
        &s,
        "/api/labels",
        json!({ "name": "frontend", "color": "#000000" }),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    let (st, e) = post(
        &s,
        "/api/labels",
        json!({ "name": "Backend", "color": "blue" }),
    )
    .await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("color"))
    );
    let (st, e) = post(&s, "/api/labels", json!({ "name": "Backend" })).await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("color"))
    );

    let (st, hit) = get(&s, "/api/labels?name=Frontend").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(hit, json!([l]));
    let (_, miss) = get(&s, "/api/labels?name=Nothing").await;
    assert_eq!(miss, json!([]));

    let (_, all) = get(&s, "/api/labels").await;
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"Frontend"));
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| n.to_lowercase());
    assert_eq!(names, sorted, "name order");

    // Paging: a bare array plus a Link header.
    let (st, page, headers) = send(&s, reqwest::Method::GET, "/api/labels?limit=1", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(page.as_array().unwrap().len(), 1);
    let link = headers
        .get("link")
        .expect("Link header")
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        link.contains("cursor=1") && link.contains("rel=\"next\""),
        "{link}"
    );
    let (_, second) = get(&s, "/api/labels?limit=1&cursor=1").await;
    assert_eq!(second.as_array().unwrap()[0], all.as_array().unwrap()[1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn comments_list_oldest_first_with_author() {
    let s = Server::builder().start();
    let (_, issue) = post(&s, "/api/issues", json!({ "title": "Commented issue" })).await;
    let ident = issue["identifier"].as_str().unwrap();
    let (st, c1) = post(
        &s,
        "/api/comments",
        json!({ "issueId": ident, "body": "first", "authorName": "Ada" }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{c1}");
    assert_eq!(c1["author_name"], "Ada");
    assert_eq!(c1["issue_id"], issue["id"]);
    let (st, c2) = post(
        &s,
        "/api/comments",
        json!({ "issueId": issue["id"], "body": "second" }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{c2}");
    assert!(c2["author_name"].is_string());

    let (st, list) = get(&s, &format!("/api/comments?issueId={ident}")).await;
    assert_eq!(st, StatusCode::OK);
    let bodies: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["first", "second"]);

    let (st, e) = get(&s, "/api/comments").await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("issueId"))
    );
    let (st, e) = post(
        &s,
        "/api/comments",
        json!({ "issueId": ident, "body": "  " }),
    )
    .await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("body"))
    );
    let (st, e) = post(&s, "/api/comments", json!({ "body": "x" })).await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("issueId"))
    );
    let (st, _) = post(
        &s,
        "/api/comments",
        json!({ "issueId": "NOPE-404", "body": "x" }),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn search_finds_issues_by_words() {
    let s = Server::builder().start();
    post(
        &s,
        "/api/issues",
        json!({ "title": "Checkout payment fails with timeout", "priority": "P1" }),
    )
    .await;
    post(
        &s,
        "/api/issues",
        json!({ "title": "Dark mode colours", "description": "contrast is low" }),
    )
    .await;
    let (st, e) = get(&s, "/api/search").await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("q"))
    );
    let (st, hits) = get(&s, "/api/search?q=payment%20timeout&limit=10").await;
    assert_eq!(st, StatusCode::OK, "{hits}");
    let hits = hits.as_array().unwrap();
    assert!(!hits.is_empty());
    let top = &hits[0];
    assert_eq!(top["title"], "Checkout payment fails with timeout");
    assert_eq!(top["priority"], "P1");
    assert_eq!(top["status"]["name"], "Backlog");
    assert!(top["status"]["color"].is_string());
    assert!(top["score"].as_f64().unwrap() > 0.0);
    assert!(top["identifier"].is_string() && top["id"].is_string());
    let (_, none) = get(&s, "/api/search?q=zebra").await;
    assert_eq!(none, json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn fleet_stats_active_and_cleanup() {
    let s = Server::builder()
        .env("DAILY_SPAWN_BUDGET_ERROR", "7")
        .env("DAILY_SPAWN_BUDGET_PRD", "3")
        .start();
    let (_, issue) = post(&s, "/api/issues", json!({ "title": "Fleet" })).await;
    let ident = issue["identifier"].as_str().unwrap();
    let (st, spawn) = post(
        &s,
        &format!("/api/issues/{ident}/spawn"),
        json!({ "type": "research" }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{spawn}");

    let (st, stats) = get(&s, "/api/spawns/stats").await;
    assert_eq!(st, StatusCode::OK, "{stats}");
    assert_eq!(stats["budget"]["error_fix"]["max"], 7);
    assert_eq!(stats["budget"]["prd"]["max"], 3);
    assert_eq!(stats["budget"]["prd"]["used"], 1, "{stats}");
    assert!(stats["active"].is_u64());
    assert!(stats["dailyCost"].is_number() && stats["dailyCostLimit"].is_number());
    assert!(stats["staleCount"].is_u64());
    assert!(stats["outcomes"].is_object());
    for k in ["queued", "running", "deferred"] {
        assert!(stats[k].is_u64(), "{k}: {stats}");
    }

    let (st, active) = get(&s, "/api/spawns/active").await;
    assert_eq!(st, StatusCode::OK);
    for row in active.as_array().unwrap() {
        for k in [
            "id",
            "identifier",
            "title",
            "spawn_type",
            "spawn_status",
            "spawn_started_at",
            "spawn_run_id",
            "agent_status",
            "cost_usd",
        ] {
            assert!(row.get(k).is_some(), "{k} in {row}");
        }
    }

    let (st, cleaned) = post(&s, "/api/spawns/cleanup", json!({})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(cleaned["cleaned"], 0);

    let r = client()
        .get(s.url("/api/spawns/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_and_tampered_session_cookies_are_rejected() {
    let s = Server::builder().start();
    let c = client();
    let r = c
        .get(s.url("/api/issues"))
        .header("cookie", "dispatch_session=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let login = c
        .post(s.url("/api/auth"))
        .json(&json!({ "password": s.password }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let set = login
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let pair = set.split(';').next().unwrap().to_string();
    let token = pair.strip_prefix("dispatch_session=").unwrap().to_string();
    let r = c
        .get(s.url("/api/issues"))
        .header("cookie", pair.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the real cookie works");

    // Flip the last signature character; then push the expiry forward keeping the signature.
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[1] = (parts[1].parse::<i64>().unwrap() + 86_400 * 365).to_string();
    let extended = parts.join(".");
    for bad in [
        tampered,
        extended,
        format!("{token}x"),
        token[..token.len() - 1].to_string(),
    ] {
        let r = c
            .get(s.url("/api/issues"))
            .header("cookie", format!("dispatch_session={bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
    }
}
