//! The MCP server at `/api/mcp`, through its real streamable-HTTP transport on the real binary:
//! initialize, the tool list, every tool, resources, tool errors (never protocol errors), the
//! API key, and DNS-rebinding protection.

mod support;

use serde_json::{Value, json};
use support::{Server, get, post};

const GRAFANA_FIRING: &[u8] = include_bytes!("fixtures/grafana/alert-firing.json");

const ALL_TOOLS: [&str; 25] = [
    "search_issues",
    "list_issues",
    "get_issue",
    "create_issue",
    "update_issue",
    "assign_to_me",
    "post_activity",
    "update_agent_status",
    "register_webhook",
    "poll_events",
    "get_my_issues",
    "add_comment",
    "add_watcher",
    "list_watchers",
    "get_portal_url",
    "post_plan",
    "report_blocker",
    "get_approved_plan",
    "dispatch_investigation",
    "dispatch_implementation",
    "dispatch_qa",
    "dispatch_research",
    "dispatch_triage",
    "get_fleet_status",
    "cancel_run",
];

fn server() -> Server {
    Server::builder()
        // Nothing is dispatched: queued runs stay queued, so the fleet can be read exactly.
        .env("DISPATCH_WORKERS", "false")
        .env("AGENT_WEBHOOK_ALLOW_PRIVATE", "true")
        .start()
}

/// One JSON-RPC request with the API key; the HTTP status and the JSON body.
async fn rpc_with(
    s: &Server,
    headers: &[(&str, &str)],
    method: &str,
    params: Value,
) -> (reqwest::StatusCode, Value, reqwest::header::HeaderMap) {
    let mut r = support::http()
        .post(s.url("/api/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    // reqwest adds to a header rather than replacing it: the caller's version or the default.
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("mcp-protocol-version"))
    {
        r = r.header("mcp-protocol-version", "2025-11-25");
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let res = r
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}))
        .send()
        .await
        .expect("request");
    let st = res.status();
    let h = res.headers().clone();
    (st, res.json().await.unwrap_or(Value::Null), h)
}

async fn rpc(s: &Server, method: &str, params: Value) -> Value {
    let auth = format!("Bearer {}", s.api_key);
    let (st, body, _) = rpc_with(s, &[("authorization", &auth)], method, params).await;
    assert_eq!(st, 200, "{method}: {body}");
    assert!(
        body.get("error").is_none(),
        "{method}: protocol error {body}"
    );
    body["result"].clone()
}

/// A tool call that must succeed: its structured result.
async fn ok(s: &Server, tool: &str, args: Value) -> Value {
    let r = rpc(s, "tools/call", json!({"name": tool, "arguments": args})).await;
    assert_eq!(r["isError"], false, "{tool} failed: {r}");
    let text = r["content"][0]["text"].as_str().expect("text content");
    let parsed: Value = serde_json::from_str(text).expect("the text is the JSON result");
    assert_eq!(
        parsed, r["structuredContent"],
        "text and structured content agree"
    );
    r["structuredContent"].clone()
}

/// A tool call that must fail as a tool error: (code, message, field).
async fn err(s: &Server, tool: &str, args: Value) -> (String, String, Option<String>) {
    let r = rpc(s, "tools/call", json!({"name": tool, "arguments": args})).await;
    assert_eq!(r["isError"], true, "{tool} should fail: {r}");
    let sc = &r["structuredContent"];
    (
        sc["code"].as_str().unwrap_or_default().to_string(),
        r["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        sc["field"].as_str().map(str::to_string),
    )
}

#[tokio::test]
async fn initialize_and_list_every_tool_with_a_schema() {
    let s = server();
    let auth = format!("Bearer {}", s.api_key);
    let (st, body, headers) = rpc_with(
        &s,
        &[("authorization", &auth)],
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let r = &body["result"];
    assert_eq!(r["serverInfo"]["name"], "dispatch");
    assert_eq!(r["protocolVersion"], "2025-11-25");
    assert!(r["capabilities"]["tools"].is_object(), "{r}");
    assert!(r["capabilities"]["resources"].is_object(), "{r}");
    assert!(
        r["instructions"]
            .as_str()
            .is_some_and(|i| i.contains("get_approved_plan"))
    );
    assert!(
        headers.get("mcp-session-id").is_none(),
        "stateless: no session to keep on one replica"
    );

    let tools = rpc(&s, "tools/list", json!({})).await;
    let tools = tools["tools"].as_array().expect("tools").clone();
    let mut names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    names.sort();
    let mut want = ALL_TOOLS.to_vec();
    want.sort();
    assert_eq!(names, want);
    for t in &tools {
        let name = t["name"].as_str().unwrap_or_default();
        assert!(
            t["description"].as_str().is_some_and(|d| d.len() > 30),
            "{name} has a description a model can use"
        );
        let schema = &t["inputSchema"];
        assert_eq!(schema["type"], "object", "{name}: {schema}");
        assert!(schema["properties"].is_object(), "{name}: {schema}");
    }
    let create = tools.iter().find(|t| t["name"] == "create_issue").unwrap();
    let props = &create["inputSchema"]["properties"];
    for field in ["title", "slackChannelId", "slackDisplayName", "priority"] {
        assert!(props.get(field).is_some(), "create_issue takes {field}");
    }
    assert_eq!(create["inputSchema"]["required"], json!(["title"]));
    let search = tools.iter().find(|t| t["name"] == "search_issues").unwrap();
    assert!(
        search["inputSchema"]["properties"]["query"]["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "argument descriptions come from the doc comments"
    );
    assert_eq!(search["annotations"]["readOnlyHint"], true);
}

#[tokio::test]
async fn the_api_key_is_required_and_foreign_hosts_and_origins_are_refused() {
    let s = server();
    let init = json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}});
    let (st, body, headers) = rpc_with(&s, &[], "initialize", init.clone()).await;
    assert_eq!(st, 401, "{body}");
    assert!(
        headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer")),
        "401 says how to authenticate"
    );
    let (st, _, _) = rpc_with(
        &s,
        &[("authorization", "Bearer wrong-key-0123456789")],
        "initialize",
        init.clone(),
    )
    .await;
    assert_eq!(st, 401, "a wrong key");

    // A logged-in browser's cookie is not enough.
    let login = support::http()
        .post(s.url("/api/auth"))
        .json(&json!({"password": s.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_string();
    let (st, _, _) = rpc_with(
        &s,
        &[("cookie", &cookie), ("x-dispatch-csrf", "1")],
        "initialize",
        init.clone(),
    )
    .await;
    assert_eq!(st, 401, "a session cookie does not open the MCP server");

    let auth = format!("Bearer {}", s.api_key);
    let (st, _, _) = rpc_with(
        &s,
        &[("authorization", &auth), ("host", "attacker.example")],
        "initialize",
        init.clone(),
    )
    .await;
    assert_eq!(st, 403, "a rebound DNS name is refused");
    let (st, _, _) = rpc_with(
        &s,
        &[
            ("authorization", &auth),
            ("origin", "https://attacker.example"),
        ],
        "initialize",
        init.clone(),
    )
    .await;
    assert_eq!(st, 403, "a foreign browser origin is refused");
    let own = s.base.clone();
    let (st, body, _) = rpc_with(
        &s,
        &[("authorization", &auth), ("origin", &own)],
        "initialize",
        init,
    )
    .await;
    assert_eq!(st, 200, "the server's own origin: {body}");
}

#[tokio::test]
async fn issue_tools_go_through_the_engine() {
    let s = server();
    // create_issue from Slack: the channel's customer owns and watches it.
    let created = ok(
        &s,
        "create_issue",
        json!({
            "title": "Checkout button does nothing on Safari",
            "description": "Clicking **Pay** does nothing; console shows a CSP error.",
            "priority": "P2",
            "slackChannelId": "C0ACME",
            "slackChannelName": "#acme-support",
            "slackUserId": "U123",
            "slackDisplayName": "Ann Example",
            "userEmail": "ann@acme.example",
            "slackThreadTs": "1733300000.000100"
        }),
    )
    .await;
    let ident = created["identifier"].as_str().unwrap().to_string();
    assert_eq!(created["priority"], "P2");
    assert_eq!(created["customerName"], "acme-support");
    let portal = created["portalUrl"].as_str().unwrap();
    assert!(portal.contains("/portal/slack-c0acme/issue/"), "{portal}");
    // The public URL of a test server names port 0; the path and token are what matter.
    let path = &portal[portal.find("/portal/").expect("a portal path")..];
    let page = support::http()
        .get(s.url(path))
        .send()
        .await
        .expect("portal page");
    assert_eq!(page.status(), 200, "the portal link works");
    let html = page.text().await.unwrap();
    assert!(html.contains("Checkout button"));
    assert!(
        html.contains("Reported by Ann Example"),
        "the portal names the reporter"
    );
    // The reporter is the customer's person, named on the portal.
    assert!(created["reporterId"].is_string(), "{created}");
    let token = portal.split("token=").nth(1).unwrap();
    let api = support::http()
        .get(s.url(&format!(
            "/api/portal/slack-c0acme/issue/{ident}?token={token}"
        )))
        .send()
        .await
        .unwrap();
    let body: Value = api.json().await.unwrap();
    assert_eq!(body["issue"]["reporterName"], "Ann Example", "{body}");
    let (code, _, field) = err(
        &s,
        "create_issue",
        json!({"title": "who?", "slackUserId": "U1"}),
    )
    .await;
    assert_eq!(
        (code.as_str(), field.as_deref()),
        ("INVALID_INPUT", Some("slackChannelId"))
    );
    let (_, _, field) = err(
        &s,
        "create_issue",
        json!({"title": "bad email", "slackChannelId": "C0ACME", "slackUserId": "U1", "userEmail": "nope"}),
    )
    .await;
    assert_eq!(field.as_deref(), Some("userEmail"));
    // The same channel again: the same customer.
    let second = ok(
        &s,
        "create_issue",
        json!({"title": "Refund email has the wrong name", "slackChannelId": "C0ACME"}),
    )
    .await;
    assert_eq!(second["customerId"], created["customerId"]);
    let plain = ok(
        &s,
        "create_issue",
        json!({"title": "Nightly export is slow"}),
    )
    .await;
    assert!(plain["customerId"].is_null());
    // The reporter is on the timeline.
    let (_, acts) = get(&s, &format!("/api/issues/{ident}/activity")).await;
    assert!(
        acts.as_array().unwrap().iter().any(|a| a["content"]
            .as_str()
            .unwrap_or("")
            .contains("Ann Example")
            && a["metadata"]["userEmail"] == "ann@acme.example"),
        "{acts}"
    );

    // get_issue (lower case works), search_issues, list_issues.
    let got = ok(&s, "get_issue", json!({"identifier": ident.to_lowercase()})).await;
    assert_eq!(got["identifier"], ident.as_str());
    assert!(got.get("embedding").is_none(), "never embeddings");
    assert_eq!(got["status"]["name"], "Backlog");
    let found = ok(&s, "search_issues", json!({"query": "safari checkout"})).await;
    assert_eq!(found["issues"][0]["identifier"], ident.as_str(), "{found}");
    assert!(found["issues"][0]["similarity"].is_number());
    let none = ok(
        &s,
        "search_issues",
        json!({"query": "safari checkout", "priority": "P4"}),
    )
    .await;
    assert_eq!(none["count"], 0, "filters apply");
    let listed = ok(&s, "list_issues", json!({"limit": 2})).await;
    assert_eq!(listed["count"], 2);
    assert_eq!(
        listed["issues"][0]["identifier"], plain["identifier"],
        "newest first"
    );
    let p2 = ok(&s, "list_issues", json!({"priority": "P2"})).await;
    assert_eq!(p2["count"], 1);

    // update_issue: status by (part of) its name, priority, assignee.
    let upd = ok(
        &s,
        "update_issue",
        json!({"identifier": ident, "status": "progress", "priority": "P1", "assignee": "claude-bot"}),
    )
    .await;
    assert_eq!(upd["status"]["name"], "In Progress");
    assert_eq!(upd["priority"], "P1");
    let (code, msg, field) = err(
        &s,
        "update_issue",
        json!({"identifier": ident, "status": "nonsense"}),
    )
    .await;
    assert_eq!(
        (code.as_str(), field.as_deref()),
        ("INVALID_INPUT", Some("status"))
    );
    assert!(msg.contains("Backlog"), "lists the statuses: {msg}");
    let (_, hist) = get(&s, &format!("/api/issues/{ident}/history")).await;
    assert!(
        hist.as_array()
            .unwrap()
            .iter()
            .any(|h| h["actor_type"] == "agent" || h["actor"]["kind"] == "agent"),
        "history records the agent: {hist}"
    );

    // assign_to_me registers the agent; get_my_issues lists open issues by priority.
    ok(
        &s,
        "assign_to_me",
        json!({"identifier": second["identifier"], "agentName": "Claude"}),
    )
    .await;
    ok(
        &s,
        "assign_to_me",
        json!({"identifier": plain["identifier"], "agentName": "claude"}),
    )
    .await;
    ok(
        &s,
        "update_issue",
        json!({"identifier": plain["identifier"], "priority": "P1"}),
    )
    .await;
    let (_, agents) = get(&s, "/api/agents").await;
    assert!(agents.to_string().contains("Claude"), "{agents}");
    let mine = ok(&s, "get_my_issues", json!({"agentName": "CLAUDE"})).await;
    let order: Vec<&str> = mine["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["identifier"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        vec![
            plain["identifier"].as_str().unwrap(),
            second["identifier"].as_str().unwrap()
        ],
        "P1 before P3"
    );
    ok(
        &s,
        "update_issue",
        json!({"identifier": plain["identifier"], "status": "Done"}),
    )
    .await;
    let mine = ok(&s, "get_my_issues", json!({"agentName": "claude"})).await;
    assert_eq!(mine["count"], 1, "closed issues are not yours to work");

    // post_activity, update_agent_status, add_comment.
    ok(
        &s,
        "post_activity",
        json!({"identifier": ident, "type": "file_read", "content": "Read checkout.js", "file": "web/checkout.js"}),
    )
    .await;
    let (_, acts) = get(&s, &format!("/api/issues/{ident}/activity")).await;
    assert!(acts.to_string().contains("Read checkout.js"), "{acts}");
    let (code, _, field) = err(
        &s,
        "post_activity",
        json!({"identifier": ident, "type": "daydream", "content": "x"}),
    )
    .await;
    assert_eq!(
        (code.as_str(), field.as_deref()),
        ("INVALID_INPUT", Some("type"))
    );
    let st = ok(
        &s,
        "update_agent_status",
        json!({"identifier": ident, "status": "blocked", "phase": "repro", "error": "no Safari on the CI image"}),
    )
    .await;
    assert_eq!(st["agentStatus"], "blocked");
    assert_eq!(st["blockedReason"], "no Safari on the CI image");
    let st = ok(
        &s,
        "update_agent_status",
        json!({"identifier": ident, "status": "investigating", "summary": "found it"}),
    )
    .await;
    assert!(st["blockedReason"].is_null(), "moving on clears the block");
    ok(
        &s,
        "add_comment",
        json!({"identifier": ident, "content": "Repro on 17.2", "authorName": "Claude"}),
    )
    .await;
    let got = ok(&s, "get_issue", json!({"identifier": ident})).await;
    assert!(got["comments"].to_string().contains("Repro on 17.2"));

    // Watchers and the portal.
    let w = ok(
        &s,
        "add_watcher",
        json!({"identifier": plain["identifier"], "slackChannelId": "C0GLOBEX", "slackChannelName": "globex"}),
    )
    .await;
    assert_eq!(w["added"], true);
    let ws = ok(
        &s,
        "list_watchers",
        json!({"identifier": plain["identifier"]}),
    )
    .await;
    assert_eq!(ws["watchers"][0]["name"], "globex");
    assert_eq!(ws["watchers"][0]["slackChannelId"], "C0GLOBEX");
    let url = ok(
        &s,
        "get_portal_url",
        json!({"identifier": ident, "slackChannelId": "C0ACME"}),
    )
    .await;
    assert_eq!(url["customerName"], "acme-support");
    assert!(url["portalUrl"].as_str().unwrap().contains("token="));

    // Bad arguments and unknown things are tool errors that say what is wrong.
    let (code, msg, _) = err(&s, "get_issue", json!({"identifier": "NOPE-999"})).await;
    assert_eq!(code, "NOT_FOUND");
    assert!(msg.contains("NOPE-999"), "{msg}");
    let (code, msg, field) = err(&s, "get_issue", json!({})).await;
    assert_eq!(code, "INVALID_INPUT");
    assert!(msg.contains("identifier"), "{msg}");
    assert_eq!(field.as_deref(), Some("arguments"));
    let (_, msg, field) = err(&s, "list_issues", json!({"limit": "lots"})).await;
    assert_eq!(field.as_deref(), Some("limit"), "{msg}");
    let (_, msg, _) = err(
        &s,
        "get_issue",
        json!({"identifier": ident, "verbose": true}),
    )
    .await;
    assert!(
        msg.contains("verbose"),
        "unknown arguments are named: {msg}"
    );
    let (code, _, field) = err(&s, "create_issue", json!({"title": "   "})).await;
    assert_eq!(
        (code.as_str(), field.as_deref()),
        ("INVALID_INPUT", Some("title"))
    );
    let (code, _, _) = err(&s, "no_such_tool", json!({})).await;
    assert_eq!(code, "UNKNOWN_TOOL");

    // Metrics count tool calls by outcome.
    let metrics = support::http()
        .get(s.url("/metrics"))
        .bearer_auth(&s.api_key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"dispatch_mcp_tool_calls_total{tool="get_issue",outcome="error"} 3"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"dispatch_mcp_tool_calls_total{tool="unknown",outcome="error"} 1"#));
}

#[tokio::test]
async fn plans_blockers_dispatch_fleet_and_cancel() {
    let s = server();
    let issue = ok(
        &s,
        "create_issue",
        json!({"title": "Add CSV export to the reports page"}),
    )
    .await;
    let ident = issue["identifier"].as_str().unwrap().to_string();

    // The kill switch refuses every dispatch, as a tool error naming the gate.
    let (st, _) = support::put(&s, "/api/spawns/kill-switch", json!({"enabled": true})).await;
    assert_eq!(st, 200);
    let (code, msg, _) = err(&s, "dispatch_investigation", json!({"identifier": ident})).await;
    assert_eq!(code, "GATE_DENIED");
    assert!(msg.to_lowercase().contains("kill switch"), "{msg}");
    let fleet = ok(&s, "get_fleet_status", json!({})).await;
    assert_eq!(fleet["killSwitch"], true);
    let (st, _) = support::put(&s, "/api/spawns/kill-switch", json!({"enabled": false})).await;
    assert_eq!(st, 200);

    // Implementation needs an approved plan.
    let (code, msg, _) = err(&s, "dispatch_implementation", json!({"identifier": ident})).await;
    assert!(msg.to_lowercase().contains("plan"), "{code}: {msg}");

    // post_plan → not yet approved → approved through the REST API → get_approved_plan.
    let posted = ok(
        &s,
        "post_plan",
        json!({"identifier": ident, "content": "1. Add an Export button\n2. Stream rows as CSV"}),
    )
    .await;
    assert_eq!(posted["planStatus"], "awaiting_review");
    let (code, msg, _) = err(&s, "get_approved_plan", json!({"identifier": ident})).await;
    assert_eq!(code, "PLAN_NOT_APPROVED");
    assert!(msg.contains("awaiting_review"), "{msg}");
    let (st, body) = post(
        &s,
        &format!("/api/issues/{ident}/plan"),
        json!({"action": "approve", "approvedBy": "Dana"}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let plan = ok(&s, "get_approved_plan", json!({"identifier": ident})).await;
    assert_eq!(plan["approvedBy"], "Dana");
    assert!(
        plan["planContent"]
            .as_str()
            .unwrap()
            .contains("Stream rows as CSV")
    );

    // Dispatching now queues a run; the fleet shows it; cancel_run ends it.
    let d = ok(&s, "dispatch_implementation", json!({"identifier": ident})).await;
    assert_eq!(d["type"], "implement");
    assert!(d["runId"].is_string(), "{d}");
    let (code, msg, _) = err(&s, "dispatch_research", json!({"identifier": ident})).await;
    assert_eq!(code, "GATE_DENIED");
    assert!(
        msg.contains("already_running"),
        "one agent per issue: {msg}"
    );
    let fleet = ok(&s, "get_fleet_status", json!({})).await;
    assert_eq!(fleet["queued"], 1, "{fleet}");
    assert_eq!(fleet["activeIssues"][0]["identifier"], ident.as_str());
    let c = ok(&s, "cancel_run", json!({"identifier": ident})).await;
    assert_eq!(c["spawnStatus"], "cancelled", "{c}");
    let fleet = ok(&s, "get_fleet_status", json!({})).await;
    assert_eq!(fleet["queued"], 0);

    // report_blocker.
    let b = ok(
        &s,
        "report_blocker",
        json!({"identifier": ident, "reason": "Which columns go in the CSV?", "category": "unclear_requirement"}),
    )
    .await;
    assert_eq!(
        b["blockedReason"],
        "[unclear_requirement] Which columns go in the CSV?"
    );
    let got = ok(&s, "get_issue", json!({"identifier": ident})).await;
    assert_eq!(got["agent_status"], "blocked");
    let (code, _, field) = err(
        &s,
        "report_blocker",
        json!({"identifier": ident, "reason": "x", "category": "bored"}),
    )
    .await;
    assert_eq!(
        (code.as_str(), field.as_deref()),
        ("INVALID_INPUT", Some("category"))
    );
}

#[tokio::test]
async fn the_close_gate_applies_to_update_issue() {
    let s = server();
    let r = support::http()
        .post(s.url("/api/loki/webhook"))
        .bearer_auth(&s.api_key)
        .header("content-type", "application/json")
        .body(GRAFANA_FIRING)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let body: Value = r.json().await.unwrap();
    let ident = body["results"][0]["issueIdentifier"]
        .as_str()
        .expect("an issue from the alert")
        .to_string();
    let (code, msg, field) = err(
        &s,
        "update_issue",
        json!({"identifier": ident, "status": "Done"}),
    )
    .await;
    assert_eq!(code, "FIX_VERIFICATION_REQUIRED", "{msg}");
    assert_eq!(field.as_deref(), Some("status"));
    let got = ok(&s, "get_issue", json!({"identifier": ident})).await;
    assert_ne!(got["status"]["name"], "Done", "nothing changed");
    let metrics = support::http()
        .get(s.url("/metrics"))
        .bearer_auth(&s.api_key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("dispatch_ingest_events_total{source=")
            && metrics.contains("dispatch_http_request_duration_seconds_bucket{route=")
            && metrics.contains(
                r#"dispatch_mcp_tool_call_duration_seconds_count{tool="update_issue"} 1"#
            ),
        "{metrics}"
    );
}

#[tokio::test]
async fn webhook_events_are_kept_per_agent_and_polled_once() {
    let s = server();
    let reg = ok(
        &s,
        "register_webhook",
        json!({"agentName": "Claude", "webhookUrl": "http://127.0.0.1:9/hook"}),
    )
    .await;
    assert_eq!(reg["webhookSecret"].as_str().map(str::len), Some(64));
    ok(
        &s,
        "register_webhook",
        json!({"agentName": "Codex", "webhookUrl": "http://127.0.0.1:9/codex"}),
    )
    .await;
    let (code, _, field) = err(
        &s,
        "register_webhook",
        json!({"agentName": "Claude", "webhookUrl": "ftp://x"}),
    )
    .await;
    assert_eq!(
        (code.as_str(), field.as_deref()),
        ("INVALID_INPUT", Some("webhookUrl"))
    );

    // The webhook needs the API key.
    let anon = support::http()
        .post(s.url("/api/mcp/webhook"))
        .json(&json!({"type": "ISSUE_UPDATED", "agentName": "Claude"}))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
    for n in 1..=3 {
        let (st, body) = post(
            &s,
            "/api/mcp/webhook",
            json!({"type": "ISSUE_UPDATED", "agentName": "claude", "issue": {"identifier": format!("DISPATCH-{n}")}, "metadata": {"n": n}}),
        )
        .await;
        assert_eq!(st, 202, "{body}");
    }
    // Addressed through the issue's assignee.
    let (st, _) = post(
        &s,
        "/api/mcp/webhook",
        json!({"type": "ISSUE_ASSIGNED", "issue": {"identifier": "DISPATCH-9", "assignee": {"name": "Codex"}}}),
    )
    .await;
    assert_eq!(st, 202);
    let (st, body) = post(&s, "/api/mcp/webhook", json!({"type": "X"})).await;
    assert_eq!(st, 400);
    assert_eq!(body["field"], "agentName");
    let (st, body) = post(
        &s,
        "/api/mcp/webhook",
        json!({"type": "X", "agentName": "nobody"}),
    )
    .await;
    assert_eq!(st, 404, "{body}");
    let (st, body) = post(
        &s,
        "/api/mcp/webhook",
        json!({"agentName": "claude", "type": "X", "surprise": 1}),
    )
    .await;
    assert_eq!(st, 400, "{body}");

    let first = ok(
        &s,
        "poll_events",
        json!({"agentName": "Claude", "limit": 2}),
    )
    .await;
    assert_eq!(first["count"], 2);
    assert_eq!(first["events"][0]["issue"]["identifier"], "DISPATCH-1");
    assert_eq!(first["events"][1]["metadata"]["n"], 2);
    let rest = ok(&s, "poll_events", json!({"agentName": "Claude"})).await;
    assert_eq!(rest["count"], 1);
    assert_eq!(rest["events"][0]["issue"]["identifier"], "DISPATCH-3");
    let again = ok(&s, "poll_events", json!({"agentName": "Claude"})).await;
    assert_eq!(again["count"], 0, "each event once");
    let codex = ok(&s, "poll_events", json!({"agentName": "codex"})).await;
    assert_eq!(codex["events"][0]["type"], "ISSUE_ASSIGNED");
}

#[tokio::test]
async fn resources_attach_issues_and_the_fleet() {
    let s = server();
    let issue = ok(
        &s,
        "create_issue",
        json!({"title": "Search results miss archived projects", "description": "Archived projects never show."}),
    )
    .await;
    let ident = issue["identifier"].as_str().unwrap().to_string();
    ok(
        &s,
        "post_plan",
        json!({"identifier": ident, "content": "Include archived rows behind a toggle"}),
    )
    .await;

    let list = rpc(&s, "resources/list", json!({})).await;
    let uris: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["uri"].as_str())
        .collect();
    assert!(uris.contains(&"dispatch://fleet"), "{list}");
    let issue_uri = format!("dispatch://issue/{ident}");
    assert!(uris.contains(&issue_uri.as_str()), "{list}");
    let templates = rpc(&s, "resources/templates/list", json!({})).await;
    assert_eq!(
        templates["resourceTemplates"][0]["uriTemplate"],
        "dispatch://issue/{identifier}"
    );

    let read = rpc(&s, "resources/read", json!({"uri": issue_uri})).await;
    let c = &read["contents"][0];
    assert_eq!(c["mimeType"], "text/markdown");
    let md = c["text"].as_str().unwrap();
    assert!(md.starts_with(&format!("# {ident}: Search results miss archived projects")));
    assert!(md.contains("Include archived rows behind a toggle"), "{md}");
    assert!(md.contains("## Agent runs") && md.contains("## Fix verification"));
    let fleet = rpc(&s, "resources/read", json!({"uri": "dispatch://fleet"})).await;
    assert!(
        fleet["contents"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Kill switch: off")
    );

    let auth = format!("Bearer {}", s.api_key);
    let (st, body, _) = rpc_with(
        &s,
        &[("authorization", &auth)],
        "resources/read",
        json!({"uri": "dispatch://issue/NOPE-1"}),
    )
    .await;
    assert_eq!(st, 200);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("NOPE-1")),
        "{body}"
    );
}

/// Plain stateless tool calls are answered without rmcp's per-request service; a browser's
/// `Origin` sends the same call through rmcp. Both must give the same answer, for results, tool
/// errors and each protocol version the direct path takes; and a foreign `Host` is refused
/// either way.
#[tokio::test]
async fn tool_calls_answer_the_same_directly_and_through_rmcp() {
    let s = server();
    let auth = format!("Bearer {}", s.api_key);
    let made = ok(
        &s,
        "create_issue",
        json!({"title": "Checkout double charges", "description": "Twice on retry"}),
    )
    .await;
    let ident = made["identifier"].as_str().expect("identifier").to_string();
    ok(
        &s,
        "create_issue",
        json!({"title": "Checkout button misaligned"}),
    )
    .await;
    let calls = [
        json!({"name": "search_issues", "arguments": {"query": "checkout", "limit": 5}}),
        json!({"name": "get_issue", "arguments": {"identifier": ident}}),
        json!({"name": "list_issues"}),
        json!({"name": "get_issue", "arguments": {"identifier": "NOPE-1"}}),
        json!({"name": "search_issues", "arguments": {"query": 7}}),
        json!({"name": "no_such_tool", "arguments": {}}),
    ];
    let own = s.base.clone();
    for version in ["2025-11-25", "2025-06-18", "2025-03-26"] {
        for params in &calls {
            let (st, direct, h) = rpc_with(
                &s,
                &[("authorization", &auth), ("mcp-protocol-version", version)],
                "tools/call",
                params.clone(),
            )
            .await;
            let (st2, via_rmcp, h2) = rpc_with(
                &s,
                &[
                    ("authorization", &auth),
                    ("mcp-protocol-version", version),
                    ("origin", &own),
                ],
                "tools/call",
                params.clone(),
            )
            .await;
            assert_eq!(st, 200, "{version} {params}: {direct}");
            assert_eq!((st, &direct), (st2, &via_rmcp), "{version} {params}");
            assert_eq!(
                h.get("content-type"),
                h2.get("content-type"),
                "{version} {params}"
            );
            assert_eq!(direct["id"], 7);
            assert!(direct["result"]["isError"].is_boolean(), "{direct}");
        }
    }
    let (st, _, _) = rpc_with(
        &s,
        &[("authorization", &auth), ("host", "attacker.example")],
        "tools/call",
        calls[0].clone(),
    )
    .await;
    assert_eq!(st, 403, "a rebound DNS name is refused for a tool call too");
}
