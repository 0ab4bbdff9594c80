//! Black-box tests of the core HTTP surface against the real `dispatch` binary (SQLite default).

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Server, get, patch, post};

fn client() -> reqwest::Client {
    support::http()
}

#[tokio::test]
async fn starts_with_no_configuration_and_keeps_generated_secrets() {
    let dir =
        std::env::temp_dir().join(format!("dispatch-noconf-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    // Only PORT/HOST: the harness's defaults for the key and password are removed.
    let mut s = Server::builder()
        .sqlite_only()
        .dir(dir.clone())
        .env("DISPATCH_API_KEY", "")
        .env("DISPATCH_PASSWORD", "")
        .start();
    let (st, body) = {
        let r = client().get(s.url("/api/health")).send().await.unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    let secrets: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("dispatch.secrets.json")).unwrap())
            .unwrap();
    let key = secrets["DISPATCH_API_KEY"].as_str().unwrap().to_string();
    assert!(key.starts_with("dsp_") && key.len() == 68);
    assert!(
        dir.join("dispatch.db").exists(),
        "the embedded SQLite default"
    );
    let r = client()
        .get(s.url("/api/issues"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    s.kill();
    // Restart: the same key still works.
    let s2 = Server::builder()
        .sqlite_only()
        .dir(dir.clone())
        .env("DISPATCH_API_KEY", "")
        .env("DISPATCH_PASSWORD", "")
        .start();
    let r = client()
        .get(s2.url("/api/issues"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_bad_variable_stops_start_up_with_its_name() {
    for (var, value) in [
        ("MAX_CONCURRENT_SPAWNS_ERROR", "lots"),
        ("LOKI_GATEWAY_URL", "loki.internal:3100"),
        ("SSE_KEEPALIVE_SECONDS", "0"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dispatch"))
            .arg("serve")
            .env_clear()
            .env(var, value)
            .env("PORT", "0")
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} must stop start-up");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{err}");
    }
}

#[tokio::test]
async fn sessions_are_signed_and_forgeries_rejected() {
    let s = Server::builder().start();
    let c = client();
    assert_eq!(
        c.get(s.url("/api/issues")).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        c.get(s.url("/api/issues"))
            .header("cookie", "dispatch_session=x")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let bad = c
        .post(s.url("/api/auth"))
        .json(&json!({"password": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let missing = c
        .post(s.url("/api/auth"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let ok = c
        .post(s.url("/api/auth"))
        .json(&json!({"password": s.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let set_cookie = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    let token = set_cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("dispatch_session=")
        .to_string();
    let cookie = format!("dispatch_session={token}");
    assert_eq!(
        c.get(s.url("/api/issues"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // Tamper with the expiry: the signature no longer matches.
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[1] = (parts[1].parse::<i64>().unwrap() + 1_000_000).to_string();
    let forged = format!("dispatch_session={}", parts.join("."));
    assert_eq!(
        c.get(s.url("/api/issues"))
            .header("cookie", &forged)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let status: Value = c
        .get(s.url("/api/auth"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["authenticated"], true);
    // Login attempts are rate-limited per client.
    let mut limited = false;
    for _ in 0..12 {
        if c.post(s.url("/api/auth"))
            .json(&json!({"password": "wrong"}))
            .send()
            .await
            .unwrap()
            .status()
            == StatusCode::TOO_MANY_REQUESTS
        {
            limited = true;
            break;
        }
    }
    assert!(limited);
}

#[tokio::test]
async fn issue_crud_errors_name_fields_and_lists_page() {
    let s = Server::builder().start();
    let (st, e) = post(&s, "/api/issues", json!({"description": "no title"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(e["field"], "title");
    assert_eq!(e["code"], "INVALID_INPUT");
    let r = client()
        .post(s.url("/api/issues"))
        .bearer_auth(&s.api_key)
        .header("content-type", "application/json")
        .body("{\"title\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (st, e) = post(&s, "/api/issues", json!({"title": "x", "priority": "P9"})).await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("priority"))
    );
    let big = "x".repeat(2 * 1024 * 1024);
    let r = client()
        .post(s.url("/api/issues"))
        .bearer_auth(&s.api_key)
        .json(&json!({"title": "big", "description": big}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    for n in 1..=5 {
        let (st, i) = post(
            &s,
            "/api/issues",
            json!({"title": format!("issue {n}"), "priority": "P2", "statusName": "Backlog"}),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED);
        assert_eq!(i["identifier"], format!("DISPATCH-{n}"));
        assert_eq!(i["status"]["name"], "Backlog");
    }
    let r = client()
        .get(s.url("/api/issues?limit=2"))
        .bearer_auth(&s.api_key)
        .send()
        .await
        .unwrap();
    let link = r
        .headers()
        .get("link")
        .map(|v| v.to_str().unwrap().to_string());
    let page: Vec<Value> = r.json().await.unwrap();
    assert_eq!(
        page.iter()
            .map(|i| i["identifier"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["DISPATCH-5", "DISPATCH-4"]
    );
    let link = link.expect("a Link header announces the next page");
    assert!(
        link.contains("cursor=4") && link.contains("rel=\"next\""),
        "{link}"
    );
    let (_, next) = get(&s, "/api/issues?limit=2&cursor=4").await;
    assert_eq!(next[0]["identifier"], "DISPATCH-3");
    assert!(page.iter().all(|i| i.get("embedding").is_none()));

    let (st, i) = get(&s, "/api/issues/dispatch-2").await;
    assert_eq!((st, i["title"].as_str()), (StatusCode::OK, Some("issue 2")));
    let (st, i) = patch(
        &s,
        "/api/issues/DISPATCH-2",
        json!({"title": "renamed", "status": "In Progress", "priority": "P1"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{i}");
    assert_eq!(
        (
            i["title"].as_str(),
            i["status"]["name"].as_str(),
            i["priority"].as_str()
        ),
        (Some("renamed"), Some("In Progress"), Some("P1"))
    );
    let (_, h) = get(&s, "/api/issues/DISPATCH-2/history").await;
    assert!(
        h.as_array().unwrap().iter().any(|e| e["formatted"]
            .as_str()
            .unwrap()
            .contains("moved it from Backlog to In Progress")),
        "{h}"
    );
    let (st, _) = get(&s, "/api/issues/DISPATCH-99").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let r = client()
        .delete(s.url("/api/issues/DISPATCH-2"))
        .bearer_auth(&s.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        get(&s, "/api/issues/DISPATCH-2").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn agent_callbacks_drive_a_run_and_plan_review() {
    let s = Server::builder().env("DISPATCH_WORKERS", "false").start();
    let (_, i) = post(&s, "/api/issues", json!({"title": "Add CSV export"})).await;
    let id = i["identifier"].as_str().unwrap().to_string();
    let (st, sp) = post(
        &s,
        &format!("/api/issues/{id}/spawn"),
        json!({"type": "investigate", "additional_context": "see ticket"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{sp}");
    let run_id = sp["dispatchId"].as_str().unwrap().to_string();
    // The workflow's first callbacks: running with its GitHub run id, then output.
    let (st, _) = patch(
        &s,
        &format!("/api/issues/{id}"),
        json!({"spawn_status": "running", "spawn_run_id": 987654}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, r) = patch(
        &s,
        &format!("/api/issues/{id}/runs/current?github_run_id=987654"),
        json!({"github_run_url": "https://github.com/o/r/actions/runs/987654"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["id"], run_id);
    assert_eq!(r["status"], "running");
    assert!(r["heartbeat_at"].is_null(), "{r}");
    // The workflow's heartbeat: kept on the run, answered with the run (a cancelled agent
    // learns it here); another run's id is a conflict, an unknown issue a 404.
    let (st, hb) = post(
        &s,
        &format!("/api/issues/{id}/runs/current/heartbeat?github_run_id=987654"),
        json!(null),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{hb}");
    assert_eq!(hb["id"], run_id);
    assert_eq!(hb["status"], "running");
    assert!(hb["heartbeat_at"].is_string(), "{hb}");
    let (st, e) = post(
        &s,
        &format!("/api/issues/{id}/runs/current/heartbeat?github_run_id=111"),
        json!(null),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    let (st, _) = post(
        &s,
        "/api/issues/NOPE-999/runs/current/heartbeat",
        json!(null),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    for (n, line) in ["Reading the code", "[TOOL] Grep(pattern=csv)"]
        .iter()
        .enumerate()
    {
        let (st, t) = post(
            &s,
            &format!("/api/issues/{id}/terminal"),
            json!({"content": line, "seq": n + 1}),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{t}");
    }
    // A retried chunk is not stored twice.
    post(
        &s,
        &format!("/api/issues/{id}/terminal"),
        json!({"content": "Reading the code", "seq": 1}),
    )
    .await;
    let (_, full) = get(&s, &format!("/api/issues/{id}/runs/current")).await;
    assert_eq!(
        full["transcript"],
        "Reading the code\n[TOOL] Grep(pattern=csv)\n"
    );
    // A callback's answer carries the run, not the transcript (GET has it).
    let (st, r) = patch(
        &s,
        &format!("/api/issues/{id}/runs/current?github_run_id=987654"),
        json!({"model": "claude-sonnet-4-6"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert!(r.get("transcript").is_none(), "{r}");
    let (st, _) = post(&s, &format!("/api/issues/{id}/activity"), json!({"type": "investigation_complete", "content": "plan ready", "metadata": {"run_id": "987654"}})).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, p) = post(
        &s,
        &format!("/api/issues/{id}/plan"),
        json!({"action": "submit", "content": "1. add endpoint\n2. test"}),
    )
    .await;
    assert_eq!(
        (st, p["plan_status"].as_str()),
        (StatusCode::OK, Some("awaiting_review"))
    );
    // The final callback, twice (retried): cost is set, not added.
    for _ in 0..2 {
        let (st, _) = patch(&s, &format!("/api/issues/{id}"), json!({"spawn_status": "completed", "cost_usd": "1.50", "num_turns": 9, "run_outcome": "investigation_complete", "outcome_summary": "plan posted"})).await;
        assert_eq!(st, StatusCode::OK);
    }
    let (_, i) = get(&s, &format!("/api/issues/{id}")).await;
    assert_eq!(i["cost_usd"], 1.5);
    assert_eq!(i["num_turns"], 9);
    assert_eq!(i["spawn_status"], "completed");
    assert_eq!(
        i["agent_status"], "awaiting_review",
        "plan submission stays visible"
    );
    let (_, acts) = get(&s, &format!("/api/issues/{id}/activity")).await;
    let acts = acts.as_array().unwrap();
    let report = acts
        .iter()
        .find(|a| a["type"] == "investigation_complete")
        .unwrap();
    assert_eq!(
        report["run_id"], run_id,
        "metadata.run_id (the GitHub id) linked the run"
    );
    // A sender's retry with the same idempotency key (header or field) is stored once; the
    // key reused for other content is 409.
    let path = format!("/api/issues/{id}/activity");
    let before = acts.len();
    let keyed = |body: serde_json::Value| {
        support::http()
            .post(s.url(&path))
            .bearer_auth(&s.api_key)
            .header("idempotency-key", "wf-42-step-3")
            .json(&body)
            .send()
    };
    let first = keyed(json!({"type": "action", "content": "ran tests"}))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: serde_json::Value = first.json().await.unwrap();
    let again = keyed(json!({"type": "action", "content": "ran tests"}))
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(
        again["id"], first["id"],
        "the retry answers the stored activity"
    );
    let (st, _) = post(
        &s,
        &path,
        json!({"type": "action", "content": "ran tests", "idempotencyKey": "wf-42-step-3"}),
    )
    .await;
    assert_eq!(
        st,
        StatusCode::CREATED,
        "the key in the body is the same key"
    );
    let clash = keyed(json!({"type": "action", "content": "deployed"}))
        .await
        .unwrap();
    assert_eq!(clash.status(), StatusCode::CONFLICT);
    let (_, acts) = get(&s, &path).await;
    assert_eq!(acts.as_array().unwrap().len(), before + 1, "stored once");
    // Implementation needs an approved plan; reject needs feedback.
    let (st, e) = post(
        &s,
        &format!("/api/issues/{id}/plan"),
        json!({"action": "reject"}),
    )
    .await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("feedback"))
    );
    let (st, _) = post(
        &s,
        &format!("/api/issues/{id}/spawn"),
        json!({"type": "implement"}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, p) = post(
        &s,
        &format!("/api/issues/{id}/plan"),
        json!({"action": "approve", "approvedBy": "lead", "auto_spawn": true}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p["plan_status"], "approved");
    assert_eq!(p["spawn"]["spawned"], true);
    let (st, c) = post(&s, &format!("/api/issues/{id}/spawn/cancel"), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{c}");
    let (st, _) = post(&s, &format!("/api/issues/{id}/spawn/cancel"), json!({})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "nothing left to cancel");
}

#[tokio::test]
async fn kill_switch_refuses_spawns_with_429() {
    let s = Server::builder().env("SPAWN_KILL_SWITCH", "true").start();
    let (_, i) = post(&s, "/api/issues", json!({"title": "x"})).await;
    let (st, b) = post(
        &s,
        &format!("/api/issues/{}/spawn", i["id"].as_str().unwrap()),
        json!({"type": "triage", "force": true}),
    )
    .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(b["code"], "kill_switch");
}

#[tokio::test]
async fn a_run_reserved_before_a_crash_is_dispatched_exactly_once_after_restart() {
    let dir =
        std::env::temp_dir().join(format!("dispatch-crash-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    // An API-only process reserves the spawn (a queued run) and dies before any runner call.
    let mut a = Server::builder()
        .dir(dir.clone())
        .env("DISPATCH_WORKERS", "false")
        .start();
    let (_, i) = post(&a, "/api/issues", json!({"title": "crash me"})).await;
    let id = i["identifier"].as_str().unwrap().to_string();
    let (st, sp) = post(
        &a,
        &format!("/api/issues/{id}/spawn"),
        json!({"type": "research"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let run_id = sp["dispatchId"].as_str().unwrap().to_string();
    a.kill();
    // After a restart with workers, the dispatcher finds the queued run and dispatches it once.
    let b = Server::builder().dir(dir.clone()).start();
    let mut run = Value::Null;
    for _ in 0..100 {
        run = get(&b, &format!("/api/issues/{id}/runs/{run_id}")).await.1;
        if run["status"] != "queued" && run["status"] != "dispatching" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // No agent can run in the test's directory (not a git repository, no `claude`), so the single
    // dispatch fails at once with that reason; it was neither lost nor repeated.
    assert_eq!(run["dispatch_attempts"], 1, "{run}");
    assert_eq!(run["status"], "failed");
    assert!(
        !run["last_error"].as_str().unwrap_or("").is_empty(),
        "{run}"
    );
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let mut s = Server::builder().start();
    assert_eq!(
        client()
            .get(s.url("/api/health"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let status = s.terminate().expect("exits within 10 s of SIGTERM");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn openapi_documents_routes_the_server_serves() {
    let s = Server::builder().start();
    let (st, doc) = get(&s, "/api/openapi.json").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 30, "{}", paths.len());
    // Every documented GET path without parameters is served (not a bare 404/405 of the router).
    for (p, ops) in paths {
        if p.contains('{') || ops.get("get").is_none() {
            continue;
        }
        let r = client()
            .get(s.url(p))
            .bearer_auth(&s.api_key)
            .send()
            .await
            .unwrap();
        let st = r.status();
        if p.ends_with("/stream") {
            // A live stream: the status is all there is to check without waiting forever.
            assert_eq!(st, StatusCode::OK, "{p}");
            continue;
        }
        let body = r.text().await.unwrap();
        assert!(
            st != StatusCode::METHOD_NOT_ALLOWED
                && !(st == StatusCode::NOT_FOUND && body.is_empty()),
            "{p}: {st}"
        );
    }
    let m = client().get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(m.status(), StatusCode::UNAUTHORIZED);
    let m = client()
        .get(s.url("/metrics"))
        .bearer_auth(&s.api_key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("dispatch_http_requests_total{method=\"GET\",route=\"/api/openapi.json\",status=\"200\"}"), "{m}");
}

/// Logins until one is refused with 429; how many were let through.
async fn failed_logins_until_limited(s: &Server, forwarded_for: &str) -> usize {
    let c = client();
    for n in 0..20 {
        let st = c
            .post(s.url("/api/auth"))
            .header("x-forwarded-for", forwarded_for)
            .json(&json!({"password": "wrong"}))
            .send()
            .await
            .unwrap()
            .status();
        if st == StatusCode::TOO_MANY_REQUESTS {
            return n;
        }
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    panic!("never limited");
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_login_limit() {
    // The test client is the proxy (loopback): X-Forwarded-For names the clients.
    let s = Server::builder()
        .env("TRUSTED_PROXIES", "127.0.0.1, ::1")
        .start();
    assert_eq!(failed_logins_until_limited(&s, "198.51.100.1").await, 10);
    // Another client behind the same proxy is not locked out by the first.
    let r = client()
        .post(s.url("/api/auth"))
        .header("x-forwarded-for", "6.6.6.6, 198.51.100.2")
        .json(&json!({"password": s.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Without TRUSTED_PROXIES the header is not believed: every request is the peer's.
    let s = Server::builder().start();
    assert_eq!(failed_logins_until_limited(&s, "198.51.100.1").await, 10);
    let st = client()
        .post(s.url("/api/auth"))
        .header("x-forwarded-for", "198.51.100.2")
        .json(&json!({"password": s.password}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
}
