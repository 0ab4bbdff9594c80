//! The gates over HTTP against the real binary: the kill switch (`GET/PUT
//! /api/spawns/kill-switch`: stored, so two servers on one PostgreSQL agree; spawns are refused
//! while it is on; the environment keeps it on) and budgets that deleting an issue does not
//! refund.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Server, call, get, post};

async fn put(s: &Server, enabled: Value) -> (StatusCode, Value) {
    call(
        s,
        reqwest::Method::PUT,
        "/api/spawns/kill-switch",
        Some(json!({ "enabled": enabled })),
    )
    .await
}

#[tokio::test]
async fn spawns_are_refused_while_it_is_on_and_allowed_after() {
    let s = Server::builder().env("DISPATCH_WORKERS", "false").start();
    let (_, i) = post(&s, "/api/issues", json!({ "title": "export" })).await;
    let id = i["identifier"].as_str().unwrap().to_string();
    let (st, k) = get(&s, "/api/spawns/kill-switch").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        k,
        json!({ "enabled": false, "forcedByEnvironment": false, "stored": null })
    );

    let (st, k) = put(&s, json!(true)).await;
    assert_eq!(st, StatusCode::OK, "{k}");
    assert_eq!(k["enabled"], true);
    let (_, stats) = get(&s, "/api/spawns/stats").await;
    assert_eq!(stats["killSwitch"], true);
    let (st, body) = post(
        &s,
        &format!("/api/issues/{id}/spawn"),
        json!({ "type": "investigate" }),
    )
    .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body.to_string().contains("kill_switch"), "{body}");

    let (st, _) = put(&s, json!(false)).await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = post(
        &s,
        &format!("/api/issues/{id}/spawn"),
        json!({ "type": "investigate" }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");

    let (st, e) = put(&s, json!("yes")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(e["field"], "enabled");
    let r = support::http()
        .put(s.url("/api/spawns/kill-switch"))
        .json(&json!({ "enabled": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_environment_keeps_it_on() {
    let s = Server::builder().env("SPAWN_KILL_SWITCH", "true").start();
    let (_, k) = get(&s, "/api/spawns/kill-switch").await;
    assert_eq!(k["enabled"], true);
    assert_eq!(k["forcedByEnvironment"], true);
    let (st, e) = put(&s, json!(false)).await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    assert!(e["error"].as_str().unwrap().contains("SPAWN_KILL_SWITCH"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgresql_share_it() {
    let db = support::PgDatabase::create();
    let url = db.url().to_string();
    let a = Server::builder().env("PG_DATABASE_URL", &url).start();
    let b = Server::builder().env("PG_DATABASE_URL", &url).start();
    let (st, _) = put(&a, json!(true)).await;
    assert_eq!(st, StatusCode::OK);
    let (_, k) = get(&b, "/api/spawns/kill-switch").await;
    assert_eq!(
        k["enabled"], true,
        "the other process sees it at its next read"
    );
    let (_, i) = post(&b, "/api/issues", json!({ "title": "x" })).await;
    let id = i["identifier"].as_str().unwrap().to_string();
    let (st, _) = post(
        &b,
        &format!("/api/issues/{id}/spawn"),
        json!({ "type": "triage" }),
    )
    .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    let (st, _) = put(&b, json!(false)).await;
    assert_eq!(st, StatusCode::OK);
    let (_, k) = get(&a, "/api/spawns/kill-switch").await;
    assert_eq!(k["enabled"], false);
}

#[tokio::test]
async fn deleting_an_issue_never_lowers_the_day_s_budget_or_cost() {
    let s = Server::builder().env("DISPATCH_WORKERS", "false").start();
    let (_, i) = post(&s, "/api/issues", json!({ "title": "export" })).await;
    let id = i["identifier"].as_str().unwrap().to_string();
    let (st, sp) = post(
        &s,
        &format!("/api/issues/{id}/spawn"),
        json!({ "type": "investigate" }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{sp}");
    let (_, before) = get(&s, "/api/spawns/stats").await;
    assert_eq!(before["active"], 1);

    // While the run is active the issue cannot be deleted: its agent would run on unaccounted.
    let (st, e) = call(
        &s,
        reqwest::Method::DELETE,
        &format!("/api/issues/{id}"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    assert!(e["error"].as_str().unwrap().contains("cancel"), "{e}");
    let (_, during) = get(&s, "/api/spawns/stats").await;
    assert_eq!(during, before);

    // The agent reports its cost and ends; then the issue may go, and today's numbers stay.
    for body in [
        json!({ "spawn_status": "running" }),
        json!({ "spawn_status": "completed", "cost_usd": "2.25", "run_outcome": "investigation_complete" }),
    ] {
        let (st, r) = support::patch(&s, &format!("/api/issues/{id}"), body).await;
        assert_eq!(st, StatusCode::OK, "{r}");
    }
    let (_, ended) = get(&s, "/api/spawns/stats").await;
    let (st, _) = call(
        &s,
        reqwest::Method::DELETE,
        &format!("/api/issues/{id}"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (_, after) = get(&s, "/api/spawns/stats").await;
    assert_eq!(after["active"], 0);
    assert_eq!(after["budget"], ended["budget"], "no spawn refunded");
    assert_eq!(after["dailyCost"], ended["dailyCost"], "no cost refunded");
    assert_eq!(after["budget"]["prd"]["used"], 1);
}

#[tokio::test]
async fn dispatch_status_shows_the_fleet_of_a_running_server() {
    let s = Server::builder().env("DISPATCH_WORKERS", "false").start();
    let (_, i) = post(&s, "/api/issues", json!({ "title": "x" })).await;
    let id = i["identifier"].as_str().unwrap().to_string();
    let (st, _) = post(
        &s,
        &format!("/api/issues/{id}/spawn"),
        json!({ "type": "triage" }),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = put(&s, json!(true)).await;
    assert_eq!(st, StatusCode::OK);
    let run = |key: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dispatch"))
            .arg("status")
            .arg("--url")
            .arg(&s.base)
            .env("DISPATCH_API_KEY", key)
            .env("DISPATCH_PASSWORD", &s.password)
            .env("DATABASE_URL", s.dir.join("status-probe.db"))
            .output()
            .unwrap()
    };
    let out = run(&s.api_key);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("kill switch   ON"), "{text}");
    assert!(text.contains("queued 1"), "{text}");
    assert!(text.contains("requests 1/"), "{text}");
    assert!(text.contains("loop lag      dispatcher"), "{text}");
    let refused = run("dsp_wrong_key_0123456789abcdef0123456789abcdef0123456789abcdef");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refused the API key"));
}
