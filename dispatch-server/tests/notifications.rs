//! Slack notifications and event webhooks through the real server: configured from the
//! environment (`SLACK_BOT_TOKEN`, `SLACK_API_BASE_URL`, `INTERNAL_SLACK_CHANNEL_ID`,
//! `EVENT_WEBHOOK_*`), delivered by its worker to local fakes, shown by `GET /api/deliveries`.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{Server, call, hmac_hex};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SECRET: &str = "whsec-0123456789abcdef";

struct SlackOk(AtomicUsize);

impl Respond for SlackOk {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        ResponseTemplate::new(200).set_body_json(json!({
            "ok": true, "channel": body["channel"], "ts": format!("1700000000.{n:06}")
        }))
    }
}

/// Polls the API (an observable state, not a sleep as synchronisation) until `done` holds.
async fn deliveries_until(s: &Server, query: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, v) = call(s, Method::GET, &format!("/api/deliveries{query}"), None).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let rows = v.as_array().cloned().unwrap_or_default();
        if done(&rows) || Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn slack_and_event_webhooks_from_the_configured_server() {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(SlackOk(AtomicUsize::new(0)))
        .mount(&slack)
        .await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let s = Server::builder()
        .env("SLACK_BOT_TOKEN", "xoxb-black-box")
        .env("SLACK_API_BASE_URL", &format!("{}/api", slack.uri()))
        .env("INTERNAL_SLACK_CHANNEL_ID", "C0TEAM")
        .env("DISPATCH_APP_URL", "https://dispatch.example.com")
        .env("EVENT_WEBHOOK_URLS", &format!("{}/hooks", receiver.uri()))
        .env("EVENT_WEBHOOK_SECRET", SECRET)
        .env("EVENT_WEBHOOK_EVENTS", "ISSUE_CREATED,COMMENT_CREATED")
        .env("AGENT_WEBHOOK_ALLOW_PRIVATE", "true")
        .start();
    assert!(
        s.banner
            .iter()
            .any(|l| l.contains("notifications: Slack at") && l.contains("C0TEAM")),
        "{:?}",
        s.banner
    );

    let (st, v) = call(
        &s,
        Method::POST,
        "/api/customers",
        Some(json!({"name": "Acme", "slackChannelId": "C0ACME"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let customer = v["customer"].clone();
    let (st, issue) = call(
        &s,
        Method::POST,
        "/api/issues",
        Some(json!({"title": "Export is broken", "customerId": customer["id"]})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{issue}");
    let ident = issue["identifier"]
        .as_str()
        .expect("identifier")
        .to_string();
    let (st, v) = call(
        &s,
        Method::POST,
        "/api/comments",
        Some(json!({"issueId": ident, "body": "On it", "authorName": "Ann"})),
    )
    .await;
    assert!(st.is_success(), "{st} {v}");

    let rows = deliveries_until(&s, &format!("?issue={ident}"), |rows| {
        rows.len() == 4 && rows.iter().all(|r| r["state"] == "delivered")
    })
    .await;
    assert_eq!(rows.len(), 4, "{rows:#?}");
    let by_event = |e: &str| {
        rows.iter()
            .find(|r| r["event"] == e)
            .unwrap_or_else(|| panic!("no {e} in {rows:#?}"))
            .clone()
    };
    let created = by_event("slack.issue_created");
    assert_eq!(created["kind"], "slack");
    assert_eq!(created["target"], "C0ACME");
    assert_eq!(
        created["response"], "1700000000.000001",
        "the post's ts is kept"
    );
    assert_eq!(created["responseCode"], 200);
    let comment = by_event("slack.comment_added");
    assert_eq!(comment["attempts"], 1);
    let hook = by_event("ISSUE_CREATED");
    assert_eq!(hook["kind"], "webhook");
    assert_eq!(hook["responseCode"], 204);
    assert!(hook.get("secret").is_none(), "{hook}");
    assert!(!hook.to_string().contains(SECRET));
    by_event("COMMENT_CREATED");

    // Slack got the post and the threaded comment.
    let posts: Vec<Value> = slack
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| {
            assert_eq!(
                r.headers.get("authorization").expect("auth"),
                "Bearer xoxb-black-box"
            );
            serde_json::from_slice(&r.body).expect("json")
        })
        .collect();
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert!(posts[0].get("thread_ts").is_none());
    assert_eq!(posts[1]["thread_ts"], "1700000000.000001");
    // The receiver verifies every signature.
    let got = receiver.received_requests().await.unwrap_or_default();
    assert_eq!(got.len(), 2);
    for r in &got {
        let sig = r.headers.get("x-webhook-signature").expect("signed");
        assert_eq!(
            sig.to_str().expect("ascii"),
            format!("sha256={}", hmac_hex(SECRET, &r.body))
        );
    }

    // One delivery by id; filters; errors.
    let id = hook["id"].as_str().expect("id");
    let (st, one) = call(&s, Method::GET, &format!("/api/deliveries/{id}"), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(one["event"], "ISSUE_CREATED");
    assert_eq!(one["payload"]["issue"]["identifier"], ident.as_str());
    let (st, _) = call(
        &s,
        Method::GET,
        &format!("/api/deliveries/{}", uuid::Uuid::now_v7()),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = call(&s, Method::GET, "/api/deliveries/not-a-uuid", None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = call(&s, Method::GET, "/api/deliveries?state=lost", None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = call(&s, Method::GET, "/api/deliveries?issue=%20", None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = call(&s, Method::GET, "/api/deliveries?issue=NOPE-404", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let hooks = deliveries_until(&s, "?kind=webhook&limit=1", |_| true).await;
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0]["kind"], "webhook");
    let r = support::http()
        .get(s.url("/api/deliveries"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
