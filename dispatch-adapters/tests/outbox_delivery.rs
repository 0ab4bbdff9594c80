//! Notifications through the outbox, end to end on a real SQLite file: the engine stores
//! deliveries, its delivery worker (`deliver_step`, driven here by hand with a manual clock)
//! sends them through the real Slack and webhook transports to local HTTP fakes.
//!
//! - Slack's Web API fake answers `chat.postMessage` like Slack (`{"ok": true, "ts": …}`, 429 with
//!   `Retry-After`, `{"ok": false, "error": …}`); message shapes and threading of spec §13
//!   item 4 are checked on the requests it received.
//! - A webhook receiver checks each delivery's HMAC signature.
//! - A second store and engine on the same file deliver what the first one left.
#![cfg(all(feature = "sqlite", feature = "slack", feature = "webhook"))]

use chrono::Duration;
use dispatch_adapters::slack::{SlackConfig, SlackTransport};
use dispatch_adapters::sqlite::SqliteStore;
use dispatch_adapters::webhook::{WebhookTransport, WebhookTransportConfig, signature};
use dispatch_core::config::EngineConfig;
use dispatch_core::customer::NewCustomer;
use dispatch_core::engine::{ColumnRef, IssueChanges, OutboxConfig};
use dispatch_core::event::ErrorEvent;
use dispatch_core::gate::SpawnPolicy;
use dispatch_core::issue::{Actor, NewComment, NewIssue};
use dispatch_core::outbox::events::{Subscription, WebhookEvent};
use dispatch_core::outbox::slack::SlackRouting;
use dispatch_core::outbox::{DeliveryFilter, DeliveryState, KIND_SLACK, KIND_WEBHOOK, RetryPolicy};
use dispatch_core::ports::{OutboxStore, RunResult, Store};
use dispatch_core::run::{Outcome, RunStatus};
use dispatch_core::testkit::{FakeRunner, ManualClock};
use dispatch_core::{Clock, Dispatch};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "xoxb-test-token";
const INTERNAL: &str = "C0INTERNAL";

fn db_path() -> PathBuf {
    std::env::temp_dir().join(format!("dispatch-outbox-{}.db", uuid::Uuid::now_v7()))
}

/// Answers like Slack: `{"ok": true, "channel", "ts"}` with increasing `ts`.
struct SlackOk(AtomicUsize);

impl Respond for SlackOk {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        ResponseTemplate::new(200).set_body_json(json!({
            "ok": true,
            "channel": body["channel"],
            "ts": format!("1700000000.{n:06}"),
            "message": {"text": body["text"]},
        }))
    }
}

async fn fake_slack() -> MockServer {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(SlackOk(AtomicUsize::new(0)))
        .mount(&mock)
        .await;
    mock
}

fn slack(mock: &MockServer) -> Arc<SlackTransport> {
    let mut c = SlackConfig::new(TOKEN);
    c.base_url = format!("{}/api", mock.uri());
    Arc::new(SlackTransport::new(c).expect("slack transport"))
}

fn routing() -> SlackRouting {
    SlackRouting {
        internal_channel: Some(INTERNAL.into()),
        app_url: "https://dispatch.example.com".into(),
        max_cost_per_run_usd: 25.0,
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        base: Duration::seconds(10),
        max_delay: Duration::minutes(10),
        max_retry_after: Duration::hours(1),
        max_attempts: 5,
        lease: Duration::seconds(60),
    }
}

struct Engine {
    d: Dispatch,
    store: Arc<SqliteStore>,
}

async fn engine(
    file: &Path,
    clock: Arc<ManualClock>,
    outbox: OutboxConfig,
    transports: Vec<(&str, Arc<dyn dispatch_core::ports::DeliveryTransport>)>,
) -> Engine {
    let store = Arc::new(
        SqliteStore::open(file.to_str().expect("path"))
            .await
            .expect("open"),
    );
    let mut b = Dispatch::builder(store.clone() as Arc<dyn Store>, FakeRunner::new())
        .clock(clock)
        .config(EngineConfig {
            policy: SpawnPolicy::permissive(),
            ..EngineConfig::default()
        })
        .outbox(outbox);
    for (kind, t) in transports {
        b = b.transport(kind, t);
    }
    Engine {
        d: b.build().await.expect("engine"),
        store,
    }
}

async fn posts(mock: &MockServer) -> Vec<(Value, Request)> {
    mock.received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == "/api/chat.postMessage")
        .map(|r| (serde_json::from_slice(&r.body).expect("json body"), r))
        .collect()
}

fn loki(msg: &str, n: u64) -> ErrorEvent {
    ErrorEvent::new("loki", "copilot", "server-tools", msg).with_count(n)
}

/// New error → top-level post (429 first, retried after its Retry-After by the manual clock),
/// agent started and finished → replies in its thread, with cost and the budget warning.
#[tokio::test]
async fn internal_flow_is_threaded_and_429_waits_for_retry_after() {
    let mock = MockServer::start().await;
    // Slack is rate limiting the first call.
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "30")
                .set_body_json(json!({"ok": false, "error": "ratelimited"})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(SlackOk(AtomicUsize::new(0)))
        .with_priority(2)
        .mount(&mock)
        .await;
    let file = db_path();
    let clock = Arc::new(ManualClock::at_default());
    let t0 = clock.now();
    let e = engine(
        &file,
        clock.clone(),
        OutboxConfig {
            retention: None,
            slack: Some(routing()),
            subscriptions: Vec::new(),
            policy: policy(),
        },
        vec![(KIND_SLACK, slack(&mock))],
    )
    .await;
    let d = &e.d;

    let r = d
        .ingest(loki("Tool call failed", 15))
        .await
        .expect("ingest");
    assert!(r.created);
    let run_id = r.spawn.expect("auto spawn").run_id.expect("allowed");
    let ident = r.issue.identifier.clone();
    assert_eq!(d.dispatcher_step().await.expect("dispatch"), 1);

    // First pass: only the new-error post is tried (the reply waits for its thread); 429.
    assert_eq!(d.deliver_step().await.expect("step"), 1);
    assert_eq!(posts(&mock).await.len(), 1);
    let root = e
        .store
        .list_deliveries(&DeliveryFilter {
            event: Some("slack.new_error".into()),
            ..Default::default()
        })
        .await
        .expect("list")
        .remove(0);
    assert_eq!(root.state, DeliveryState::Pending);
    assert_eq!(root.response_code, Some(429));
    assert_eq!(root.due_at, t0 + Duration::seconds(30), "Retry-After: 30");

    // Not before the 30 s Slack asked for.
    clock.advance(Duration::seconds(29));
    assert_eq!(d.deliver_step().await.expect("step"), 0);
    assert_eq!(posts(&mock).await.len(), 1);
    clock.advance(Duration::seconds(1));
    assert_eq!(d.deliver_step().await.expect("step"), 1, "the root alone");
    // Now the thread exists: the reply goes.
    assert_eq!(d.deliver_step().await.expect("step"), 1, "the reply");

    // The running agent reports its cost: at 90 % of the $25 cap, one warning in the thread.
    for cost in [10.0, 22.5, 24.0] {
        d.update_run(
            run_id,
            dispatch_core::run::RunPatch {
                cost_usd: Some(cost),
                ..Default::default()
            },
            &Actor::agent("GitHub Actions"),
        )
        .await
        .expect("cost update");
        while d.deliver_step().await.expect("step") > 0 {}
    }
    assert_eq!(
        posts(&mock).await.len(),
        4,
        "one budget warning, not one per update"
    );

    // The run ends with a cost near the per-run cap.
    d.finish_run(
        run_id,
        RunResult {
            status: Some(RunStatus::Completed),
            outcome: Some(Outcome::Completed),
            summary: Some("Fixed the retry loop".into()),
            cost_usd: Some(23.0),
            ..RunResult::default()
        },
        &Actor::agent("GitHub Actions"),
    )
    .await
    .expect("finish");
    assert_eq!(d.deliver_step().await.expect("step"), 1);

    let p = posts(&mock).await;
    assert_eq!(
        p.len(),
        5,
        "429, new error, started, budget warning, finished"
    );
    for (body, req) in &p {
        assert_eq!(
            req.headers.get("authorization").expect("auth"),
            &format!("Bearer {TOKEN}")
        );
        assert!(
            req.headers
                .get("content-type")
                .expect("ct")
                .to_str()
                .expect("ascii")
                .starts_with("application/json"),
        );
        assert_eq!(body["channel"], INTERNAL);
        assert_eq!(body["unfurl_links"], false);
    }
    let (new_error, _) = &p[1];
    let text = new_error["text"].as_str().expect("text");
    assert!(
        text.starts_with(&format!(
            ":large_blue_circle: *{ident}*: [copilot/server-tools] Tool call failed"
        )),
        "{text}"
    );
    assert!(text.contains("P3 | 15 events"), "{text}");
    assert!(
        text.contains(&format!(
            "<https://dispatch.example.com/issue/{ident}|View in Dispatch>"
        )),
        "{text}"
    );
    assert!(new_error.get("thread_ts").is_none(), "top-level");
    // The first answered post got ts …001: the replies are threaded on it.
    let (started, _) = &p[2];
    assert_eq!(started["thread_ts"], "1700000000.000001");
    assert_eq!(started["text"], ":robot_face: Agent started (error_fix)");
    let (warning, _) = &p[3];
    assert_eq!(warning["thread_ts"], "1700000000.000001");
    assert_eq!(
        warning["text"],
        ":warning: Agent has spent $22.50 of its $25.00 budget for this run (error_fix)"
    );
    let (finished, _) = &p[4];
    assert_eq!(finished["thread_ts"], "1700000000.000001");
    let t = finished["text"].as_str().expect("text");
    assert!(
        t.starts_with(":white_check_mark: Investigation complete"),
        "{t}"
    );
    assert!(t.contains("> Fixed the retry loop"), "{t}");
    assert!(t.contains("Cost: $23.00 :warning: hit budget limit"), "{t}");

    // The thread's ts is stored with the delivery, visible through the list.
    let root = e.store.get_delivery(root.id).await.expect("get");
    assert_eq!(root.state, DeliveryState::Delivered);
    assert_eq!(root.response.as_deref(), Some("1700000000.000001"));
    assert_eq!(root.attempts, 2);
    let _ = std::fs::remove_file(&file);
}

/// Customer channels: "issue created" top-level in the issue's customer channel, the status
/// moves of a watching customer and comments threaded on it; Slack's `ok:false` errors are
/// final or retried by kind; with notifications off nothing is stored.
#[tokio::test]
async fn customer_messages_are_threaded_on_the_issue_post() {
    let mock = fake_slack().await;
    let file = db_path();
    let clock = Arc::new(ManualClock::at_default());
    let e = engine(
        &file,
        clock.clone(),
        OutboxConfig {
            retention: None,
            slack: Some(SlackRouting {
                internal_channel: None,
                ..routing()
            }),
            subscriptions: Vec::new(),
            policy: policy(),
        },
        vec![(KIND_SLACK, slack(&mock))],
    )
    .await;
    let d = &e.d;
    let acme = d
        .create_customer(NewCustomer {
            name: "Acme".into(),
            slug: None,
            slack_channel_id: Some("C0ACME".into()),
            brand_color: None,
            logo_url: None,
        })
        .await
        .expect("customer");
    let mut new = NewIssue::titled("Export button does nothing");
    new.description = Some("Clicking <export> shows a spinner forever".into());
    new.customer_id = Some(acme.id);
    let issue = d
        .create_issue(new, &Actor::user("ann"))
        .await
        .expect("issue");
    d.add_watcher(issue.id, acme.id).await.expect("watch");
    d.move_issue(
        issue.id,
        ColumnRef::Name("In Progress".into()),
        &Actor::user("ann"),
    )
    .await
    .expect("move");
    d.add_comment(
        issue.id,
        NewComment {
            body: "We found it; a fix is on the way.".into(),
            author: Some("Ann".into()),
        },
        &Actor::user("ann"),
    )
    .await
    .expect("comment");
    // No internal channel: the new error and its agent replies are not stored at all.
    d.ingest(loki("Worker crashed", 1)).await.expect("ingest");

    while d.deliver_step().await.expect("step") > 0 {}
    let p = posts(&mock).await;
    assert_eq!(p.len(), 3, "{p:?}");
    let (created, _) = &p[0];
    assert_eq!(created["channel"], "C0ACME");
    assert!(created.get("thread_ts").is_none());
    let t = created["text"].as_str().expect("text");
    assert!(
        t.starts_with(&format!(
            ":large_blue_circle: *{}*: Export button does nothing",
            issue.identifier
        )),
        "{t}"
    );
    assert!(
        t.contains("> Clicking &lt;export&gt; shows a spinner forever"),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "<https://dispatch.example.com/portal/{}?token={}|View in Portal>",
            acme.slug, acme.portal_token
        )),
        "{t}"
    );
    let (moved, _) = &p[1];
    assert_eq!(moved["thread_ts"], "1700000000.000001");
    assert!(
        moved["text"].as_str().expect("text").starts_with(&format!(
            "🛠 *{}* moved from _Backlog_ to *In Progress*",
            issue.identifier
        )),
        "{moved}"
    );
    let (comment, _) = &p[2];
    assert_eq!(comment["thread_ts"], "1700000000.000001");
    assert!(
        comment["text"]
            .as_str()
            .expect("text")
            .contains("> We found it; a fix is on the way."),
        "{comment}"
    );
    let all = e
        .store
        .list_deliveries(&DeliveryFilter::default())
        .await
        .expect("list");
    assert!(
        all.iter().all(|d| d.state == DeliveryState::Delivered),
        "{all:?}"
    );
    assert!(all.iter().all(|d| d.target != INTERNAL));

    // Slack refuses a channel the bot is not in: final, recorded, not retried.
    let refusing = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": false, "error": "not_in_channel"})),
        )
        .mount(&refusing)
        .await;
    let file2 = db_path();
    let e2 = engine(
        &file2,
        clock.clone(),
        OutboxConfig {
            retention: None,
            slack: Some(routing()),
            subscriptions: Vec::new(),
            policy: policy(),
        },
        vec![(KIND_SLACK, slack(&refusing))],
    )
    .await;
    e2.d.ingest(loki("Queue stuck", 1)).await.expect("ingest");
    while e2.d.deliver_step().await.expect("step") > 0 {}
    let rows = e2
        .store
        .list_deliveries(&DeliveryFilter::default())
        .await
        .expect("list");
    let root = rows
        .iter()
        .find(|r| r.event == "slack.new_error")
        .expect("root");
    assert_eq!(root.state, DeliveryState::Failed);
    assert_eq!(root.attempts, 1);
    assert_eq!(
        root.last_error.as_deref(),
        Some("chat.postMessage: not_in_channel")
    );
    // Its replies have no thread: dropped, as the original skips without a thread ts.
    let started = rows
        .iter()
        .find(|r| r.event == "slack.agent_started")
        .expect("reply");
    assert_eq!(started.state, DeliveryState::Skipped);
    assert_eq!(
        refusing.received_requests().await.unwrap_or_default().len(),
        1
    );

    // Notifications off (NOTIFICATIONS_ENABLED=false → no Slack routing): nothing stored.
    let file3 = db_path();
    let off = engine(
        &file3,
        clock.clone(),
        OutboxConfig {
            retention: None,
            slack: None,
            subscriptions: Vec::new(),
            policy: policy(),
        },
        vec![(KIND_SLACK, slack(&mock))],
    )
    .await;
    off.d.ingest(loki("Silent", 1)).await.expect("ingest");
    assert!(
        off.store
            .list_deliveries(&DeliveryFilter::default())
            .await
            .expect("list")
            .is_empty()
    );
    for f in [file, file2, file3] {
        let _ = std::fs::remove_file(f);
    }
}

/// A process stores notifications and dies before sending them (one of them claimed
/// mid-send); a new store and engine on the same SQLite file deliver them.
#[tokio::test]
async fn the_outbox_survives_a_restart() {
    let mock = fake_slack().await;
    let file = db_path();
    let clock = Arc::new(ManualClock::at_default());
    let outbox = OutboxConfig {
        retention: None,
        slack: Some(routing()),
        subscriptions: Vec::new(),
        policy: policy(),
    };
    {
        // An API-only process: it stores, it does not deliver.
        let first = engine(&file, clock.clone(), outbox.clone(), Vec::new()).await;
        first.d.ingest(loki("Disk full", 3)).await.expect("ingest");
        assert_eq!(first.d.deliver_step().await.expect("step"), 0);
        // A worker claimed the root and died before answering.
        let claimed = first
            .store
            .claim_deliveries(
                &[KIND_SLACK.to_string()],
                clock.now(),
                Duration::seconds(60),
                1,
            )
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].event, "slack.new_error");
    }
    assert!(posts(&mock).await.is_empty());

    let second = engine(
        &file,
        clock.clone(),
        outbox,
        vec![(KIND_SLACK, slack(&mock))],
    )
    .await;
    // The dead worker's lease holds for its 60 s.
    assert_eq!(second.d.deliver_step().await.expect("step"), 0);
    clock.advance(Duration::seconds(60));
    while second.d.deliver_step().await.expect("step") > 0 {}
    let p = posts(&mock).await;
    assert_eq!(p.len(), 2, "the new error and the agent-started reply");
    assert!(p[0].0["text"].as_str().expect("text").contains("Disk full"));
    assert_eq!(p[1].0["thread_ts"], "1700000000.000001");
    let rows = second
        .store
        .list_deliveries(&DeliveryFilter::default())
        .await
        .expect("list");
    assert!(
        rows.iter().all(|r| r.state == DeliveryState::Delivered),
        "{rows:?}"
    );
    let root = rows
        .iter()
        .find(|r| r.event == "slack.new_error")
        .expect("root");
    assert_eq!(root.attempts, 2, "the lost try counts");
    let _ = std::fs::remove_file(&file);
}

/// Answers 500 to the first delivery it sees, 200 after.
struct FlakyReceiver(AtomicUsize);

impl Respond for FlakyReceiver {
    fn respond(&self, _req: &Request) -> ResponseTemplate {
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            ResponseTemplate::new(500).set_body_string("busy")
        } else {
            ResponseTemplate::new(200).set_body_string("thanks")
        }
    }
}

/// Event webhooks: every event signed with the subscription's secret, the receiver verifies it;
/// a 500 is retried; each delivery is recorded with its status code.
#[tokio::test]
async fn event_webhooks_are_signed_and_recorded() {
    const SECRET: &str = "whsec-0123456789abcdef";
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/dispatch"))
        .respond_with(FlakyReceiver(AtomicUsize::new(0)))
        .mount(&receiver)
        .await;
    let file = db_path();
    let clock = Arc::new(ManualClock::at_default());
    let transport = Arc::new(
        WebhookTransport::new(WebhookTransportConfig {
            allow_private: true,
            ..Default::default()
        })
        .expect("transport"),
    );
    let e = engine(
        &file,
        clock.clone(),
        OutboxConfig {
            retention: None,
            slack: None,
            subscriptions: vec![Subscription {
                url: format!("{}/hooks/dispatch", receiver.uri()),
                secret: SECRET.into(),
                events: WebhookEvent::ALL.to_vec(),
            }],
            policy: policy(),
        },
        vec![(KIND_WEBHOOK, transport)],
    )
    .await;
    let d = &e.d;
    let ann = Actor::user("ann");
    let issue = d
        .create_issue(NewIssue::titled("Checkout times out"), &ann)
        .await
        .expect("issue");
    d.update_issue(
        issue.id,
        IssueChanges {
            title: Some("Checkout times out under load".into()),
            assignee: Some(Some("bob".into())),
            ..Default::default()
        },
        &ann,
    )
    .await
    .expect("update");
    d.move_issue(issue.id, ColumnRef::Name("In Progress".into()), &ann)
        .await
        .expect("move");
    d.add_comment(
        issue.id,
        NewComment {
            body: "Looking".into(),
            author: Some("Bob".into()),
        },
        &ann,
    )
    .await
    .expect("comment");
    d.delete_issue(issue.id).await.expect("delete");

    while d.deliver_step().await.expect("step") > 0 {}
    // The first try answered 500: it is due again after its backoff (5..10 s).
    clock.advance(Duration::seconds(10));
    while d.deliver_step().await.expect("step") > 0 {}

    let got = receiver.received_requests().await.unwrap_or_default();
    let mut events: Vec<String> = Vec::new();
    for r in &got {
        let sig = r
            .headers
            .get("x-webhook-signature")
            .expect("signed")
            .to_str()
            .expect("ascii");
        assert_eq!(sig, signature(&r.body, SECRET), "the receiver's check");
        assert_ne!(sig, signature(&r.body, "another-secret-0000"));
        let body: Value = serde_json::from_slice(&r.body).expect("json");
        let event = r
            .headers
            .get("x-webhook-event")
            .expect("event")
            .to_str()
            .expect("ascii")
            .to_string();
        assert_eq!(body["event"], event.as_str());
        assert_eq!(body["issue"]["id"], json!(issue.id));
        assert!(r.headers.get("x-webhook-delivery").is_some());
        assert!(r.headers.get("x-webhook-timestamp").is_some());
        events.push(event);
    }
    let mut distinct = events.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct,
        [
            "COMMENT_CREATED",
            "ISSUE_ASSIGNED",
            "ISSUE_CREATED",
            "ISSUE_DELETED",
            "ISSUE_UPDATED",
            "STATUS_CHANGED"
        ]
    );
    assert_eq!(
        got.len(),
        7,
        "six events, one of them tried twice: {events:?}"
    );
    let rows = e
        .store
        .list_deliveries(&DeliveryFilter {
            kind: Some(KIND_WEBHOOK.into()),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(rows.len(), 6);
    for r in &rows {
        assert_eq!(r.state, DeliveryState::Delivered, "{r:?}");
        assert_eq!(r.response_code, Some(200));
        assert_eq!(r.response.as_deref(), Some("thanks"));
    }
    assert_eq!(rows.iter().filter(|r| r.attempts == 2).count(), 1);
    let updated = rows
        .iter()
        .find(|r| r.event == "ISSUE_UPDATED")
        .expect("updated");
    assert_eq!(
        updated.payload["metadata"]["changes"],
        json!(["title", "assignee"])
    );
    let moved = rows
        .iter()
        .find(|r| r.event == "STATUS_CHANGED")
        .expect("moved");
    assert_eq!(moved.payload["metadata"]["to"], "In Progress");
    assert_eq!(moved.payload["issue"]["status"], "In Progress");
    let _ = std::fs::remove_file(&file);
}

/// An issue reported in a Slack thread (MCP `create_issue` with `slackThreadTs`): no second
/// "issue created" post; its updates in that channel are replies in the report's thread.
#[tokio::test]
async fn a_report_made_in_a_thread_is_answered_there() {
    use dispatch_core::engine::ChannelIntake;
    let mock = fake_slack().await;
    let file = db_path();
    let clock = Arc::new(ManualClock::at_default());
    let e = engine(
        &file,
        clock.clone(),
        OutboxConfig {
            retention: None,
            slack: Some(routing()),
            subscriptions: Vec::new(),
            policy: policy(),
        },
        vec![(KIND_SLACK, slack(&mock))],
    )
    .await;
    let d = &e.d;
    let made = d
        .create_issue_from_channel(
            NewIssue::titled("Login loops back to the form"),
            &ChannelIntake {
                channel_id: "C0BETA".into(),
                channel_name: Some("beta-support".into()),
                thread_ts: Some("1699999999.000100".into()),
            },
            None,
            &Actor::agent("slack-bot"),
        )
        .await
        .expect("intake");
    d.move_issue(
        made.issue.id,
        ColumnRef::Name("In Review".into()),
        &Actor::user("ann"),
    )
    .await
    .expect("move");
    while d.deliver_step().await.expect("step") > 0 {}
    let p = posts(&mock).await;
    assert_eq!(p.len(), 1, "only the status move is posted: {p:?}");
    assert_eq!(p[0].0["channel"], "C0BETA");
    assert_eq!(p[0].0["thread_ts"], "1699999999.000100");
    assert!(
        p[0].0["text"].as_str().expect("text").starts_with("👀 "),
        "{}",
        p[0].0
    );
    let _ = std::fs::remove_file(&file);
}

/// A measurement, not a check (`--ignored --nocapture`): what storing a notification adds to
/// creating an issue on SQLite, and how fast the worker drains 2,000 signed webhooks to a local
/// receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_outbox_cost_and_drain_rate() {
    const N: usize = 2000;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let transport = Arc::new(
        WebhookTransport::new(WebhookTransportConfig {
            allow_private: true,
            ..Default::default()
        })
        .expect("transport"),
    );
    let mut create_ms = Vec::new();
    for with_hook in [false, true] {
        let file = db_path();
        let clock = Arc::new(ManualClock::at_default());
        let subs = if with_hook {
            vec![Subscription {
                url: format!("{}/hooks", receiver.uri()),
                secret: "0123456789abcdef".into(),
                events: vec![WebhookEvent::IssueCreated],
            }]
        } else {
            Vec::new()
        };
        let e = engine(
            &file,
            clock,
            OutboxConfig {
                retention: None,
                slack: None,
                subscriptions: subs,
                policy: policy(),
            },
            vec![(KIND_WEBHOOK, transport.clone())],
        )
        .await;
        let started = std::time::Instant::now();
        for i in 0..N {
            e.d.create_issue(NewIssue::titled(format!("Issue {i}")), &Actor::user("m"))
                .await
                .expect("issue");
        }
        let took = started.elapsed();
        create_ms.push(took.as_secs_f64() * 1000.0 / N as f64);
        if with_hook {
            let started = std::time::Instant::now();
            let mut sent = 0;
            loop {
                let n = e.d.deliver_step().await.expect("step");
                if n == 0 {
                    break;
                }
                sent += n;
            }
            let took = started.elapsed();
            assert_eq!(sent, N);
            eprintln!(
                "drained {N} signed webhooks to a local receiver in {:.2} s ({:.0}/s)",
                took.as_secs_f64(),
                N as f64 / took.as_secs_f64()
            );
        }
        let _ = std::fs::remove_file(&file);
    }
    eprintln!(
        "create_issue on SQLite: {:.3} ms without a subscription, {:.3} ms with one (mean of {N})",
        create_ms[0], create_ms[1]
    );
}
