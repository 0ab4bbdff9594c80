//! `GET /api/openapi.json`: the API described as OpenAPI 3.1, built from one route catalogue.
//! (Written out rather than derived from handler annotations: it keeps compile times down and
//! the document in one readable place; `tests/openapi.rs` checks it against the live server.)

use serde_json::{Map, Value, json};

/// (method, path, summary, auth, request schema, success status)
type Route = (
    &'static str,
    &'static str,
    &'static str,
    Auth,
    Option<&'static str>,
    u16,
);

#[derive(Clone, Copy)]
enum Auth {
    None,
    Any,
    Signature,
    Portal,
}

const ROUTES: &[Route] = &[
    (
        "get",
        "/api/health",
        "Liveness and the active runner",
        Auth::None,
        None,
        200,
    ),
    (
        "post",
        "/api/auth",
        "Log in with DISPATCH_PASSWORD; sets a signed session cookie",
        Auth::None,
        Some("Login"),
        200,
    ),
    (
        "get",
        "/api/auth",
        "Whether the session cookie is valid",
        Auth::None,
        None,
        200,
    ),
    ("delete", "/api/auth", "Log out", Auth::None, None, 200),
    (
        "get",
        "/api/issues",
        "Issues, newest first; paginated with limit/cursor (next page in the Link header)",
        Auth::Any,
        None,
        200,
    ),
    (
        "post",
        "/api/issues",
        "Create an issue",
        Auth::Any,
        Some("CreateIssue"),
        201,
    ),
    (
        "get",
        "/api/issues/{id}",
        "An issue by UUID or identifier, with its error links",
        Auth::Any,
        None,
        200,
    ),
    (
        "patch",
        "/api/issues/{id}",
        "Change an issue (people and agent callbacks); closing passes the fix-verification gate",
        Auth::Any,
        Some("PatchIssue"),
        200,
    ),
    (
        "delete",
        "/api/issues/{id}",
        "Delete an issue",
        Auth::Any,
        None,
        200,
    ),
    (
        "get",
        "/api/issues/{id}/history",
        "History, newest first, with readable sentences",
        Auth::Any,
        None,
        200,
    ),
    (
        "get",
        "/api/spawns/kill-switch",
        "The kill switch as every process sees it: {enabled, forcedByEnvironment, stored}",
        Auth::Any,
        None,
        200,
    ),
    (
        "put",
        "/api/spawns/kill-switch",
        "Stop (enabled: true) or resume spawning on every process of the store; queued runs and deferred spawns wait while it is on. 409 when SPAWN_KILL_SWITCH=true keeps it on",
        Auth::Any,
        Some("KillSwitch"),
        200,
    ),
    (
        "post",
        "/api/issues/deduplicate",
        "Find duplicate open issues (dry run by default); with dry_run=false cancel them with cross-reference comments (the close gate applies)",
        Auth::Any,
        Some("Deduplicate"),
        200,
    ),
    (
        "get",
        "/api/issues/{id}/similar",
        "Similar issues",
        Auth::Any,
        None,
        200,
    ),
    (
        "get",
        "/api/issues/{id}/fix-status",
        "Fix attempts, verification status and whether the issue may close",
        Auth::Any,
        None,
        200,
    ),
    (
        "get",
        "/api/issues/{id}/investigation-context",
        "Previous runs of the issue for the next agent",
        Auth::Any,
        None,
        200,
    ),
    (
        "get",
        "/api/issues/{id}/activity",
        "Activities, newest page in time order",
        Auth::Any,
        None,
        200,
    ),
    (
        "post",
        "/api/issues/{id}/activity",
        "Record an activity (agent report)",
        Auth::Any,
        Some("PostActivity"),
        201,
    ),
    (
        "get",
        "/api/issues/{id}/activity/stream",
        "Server-sent events: activities, terminal output, run status; Last-Event-ID replay",
        Auth::Any,
        None,
        200,
    ),
    (
        "post",
        "/api/issues/{id}/terminal",
        "Append terminal output to a run (idempotent with seq)",
        Auth::Any,
        Some("PostTerminal"),
        200,
    ),
    (
        "get",
        "/api/issues/{id}/terminal",
        "Terminal chunks of a run after a sequence number",
        Auth::Any,
        None,
        200,
    ),
    (
        "get",
        "/api/issues/{id}/runs",
        "Runs, newest first",
        Auth::Any,
        None,
        200,
    ),
    (
        "post",
        "/api/issues/{id}/runs",
        "Record a run a workflow started by itself (it becomes the current run; 409 if another is active; a retry with the same github_run_id answers 200)",
        Auth::Any,
        Some("CreateRun"),
        201,
    ),
    (
        "get",
        "/api/issues/{id}/pr",
        "Linked pull requests, newest first",
        Auth::Any,
        None,
        200,
    ),
    (
        "delete",
        "/api/issues/{id}/pr",
        "Unlink a pull request (history pr_unlinked); 404 if the issue has no such link",
        Auth::Any,
        Some("UnlinkPr"),
        200,
    ),
    (
        "get",
        "/api/agents",
        "Registered agents (?includeInactive=true for all); never their webhook secret",
        Auth::Any,
        None,
        200,
    ),
    (
        "post",
        "/api/agents",
        "Register an agent; with webhookUrl the new webhookSecret is in this response only",
        Auth::Any,
        Some("CreateAgent"),
        201,
    ),
    (
        "post",
        "/api/agents/webhook",
        "Set an agent's webhook URL with a new secret (returned once as webhookSecret)",
        Auth::Any,
        Some("AgentWebhook"),
        200,
    ),
    (
        "get",
        "/api/agents/webhook",
        "Whether an agent (?agentName=) has a webhook, and its URL",
        Auth::Any,
        None,
        200,
    ),
    (
        "delete",
        "/api/agents/webhook",
        "Remove an agent's webhook URL and secret",
        Auth::Any,
        Some("AgentName"),
        200,
    ),
    (
        "post",
        "/api/orchestrator",
        "One turn of the orchestrator chat: text/event-stream of {type, data} events (session_id, text_delta, tool_start, tool_result, proposal, usage, error, done); 409 while the session answers another message",
        Auth::Any,
        Some("OrchestratorTurn"),
        200,
    ),
    (
        "get",
        "/api/orchestrator",
        "A session's history and proposals (sessionId), or the recent sessions",
        Auth::Any,
        None,
        200,
    ),
    (
        "post",
        "/api/orchestrator/proposals/{id}/confirm",
        "Confirm a dispatch the orchestrator proposed: it goes through the spawn gates; 409 when already decided or expired",
        Auth::Any,
        None,
        200,
    ),
    (
        "post",
        "/api/orchestrator/proposals/{id}/cancel",
        "Decline a proposed dispatch",
        Auth::Any,
        None,
        200,
    ),
    (
        "post",
        "/api/mcp/webhook",
        "Queue an event for an agent (kept in the database; the MCP tool poll_events takes it)",
        Auth::Any,
        Some("AgentEvent"),
        202,
    ),
    (
        "get",
        "/api/mcp/webhook",
        "Health of the MCP event webhook",
        Auth::Any,
        None,
        200,
    ),
    (
        "post",
        "/api/mcp",
        "The MCP server (JSON-RPC over streamable HTTP; API key only)",
        Auth::Any,
        None,
        200,
    ),
    (
        "get",
        "/api/issues/{id}/runs/current",
        "The current run with its transcript",
        Auth::Any,
        None,
        200,
    ),
    (
        "patch",
        "/api/issues/{id}/runs/current",
        "Update the current run (or ?github_run_id=/run_id=)",
        Auth::Any,
        Some("RunUpdate"),
        200,
    ),
    (
        "get",
        "/api/issues/{id}/runs/{run_id}",
        "A run by our id or the runner's id",
        Auth::Any,
        None,
        200,
    ),
    (
        "patch",
        "/api/issues/{id}/runs/{run_id}",
        "Update a run",
        Auth::Any,
        Some("RunUpdate"),
        200,
    ),
    (
        "get",
        "/api/issues/{id}/plan",
        "The plan and its review state",
        Auth::Any,
        None,
        200,
    ),
    (
        "post",
        "/api/issues/{id}/plan",
        "Submit, approve (optionally auto-spawn implementation) or reject a plan",
        Auth::Any,
        Some("PlanAction"),
        200,
    ),
    (
        "post",
        "/api/issues/{id}/spawn",
        "Ask for an agent through the gates: 200 queued, 202 deferred, 429 refused",
        Auth::Any,
        Some("Spawn"),
        200,
    ),
    (
        "post",
        "/api/issues/{id}/spawn/cancel",
        "Cancel the issue's active run",
        Auth::Any,
        None,
        200,
    ),
    (
        "get",
        "/api/issues/{id}/watchers",
        "The customers watching an issue",
        Auth::Any,
        None,
        200,
    ),
    (
        "post",
        "/api/issues/{id}/watchers",
        "Add a customer as a watcher (201 when new, 200 when already watching)",
        Auth::Any,
        Some("Watcher"),
        201,
    ),
    (
        "delete",
        "/api/issues/{id}/watchers",
        "Remove a watcher",
        Auth::Any,
        Some("Watcher"),
        200,
    ),
    (
        "get",
        "/api/board/stream",
        "Server-sent board events",
        Auth::Any,
        None,
        200,
    ),
    (
        "get",
        "/api/statuses",
        "Board columns by position",
        Auth::Any,
        None,
        200,
    ),
    (
        "post",
        "/api/statuses",
        "Add a column",
        Auth::Any,
        Some("CreateStatus"),
        201,
    ),
    (
        "put",
        "/api/statuses",
        "Reorder the columns",
        Auth::Any,
        Some("ReorderStatuses"),
        200,
    ),
    (
        "get",
        "/api/labels",
        "Labels by name (?name= looks one up)",
        Auth::Any,
        None,
        200,
    ),
    (
        "post",
        "/api/labels",
        "Create a label",
        Auth::Any,
        Some("CreateLabel"),
        201,
    ),
    (
        "get",
        "/api/comments",
        "Comments of an issue (?issueId=), oldest first",
        Auth::Any,
        None,
        200,
    ),
    (
        "post",
        "/api/comments",
        "Comment on an issue",
        Auth::Any,
        Some("CreateComment"),
        201,
    ),
    (
        "get",
        "/api/search",
        "Ranked lexical search (?q=)",
        Auth::Any,
        None,
        200,
    ),
    (
        "get",
        "/api/spawns/active",
        "Issues with an active agent",
        Auth::Any,
        None,
        200,
    ),
    (
        "get",
        "/api/spawns/stats",
        "Fleet: active runs, budgets, daily cost, outcomes",
        Auth::Any,
        None,
        200,
    ),
    (
        "post",
        "/api/spawns/cleanup",
        "Time out stale runs now",
        Auth::Any,
        None,
        200,
    ),
    (
        "get",
        "/api/customers",
        "Customers by name",
        Auth::Any,
        None,
        200,
    ),
    (
        "post",
        "/api/customers",
        "Create a customer (with a portal token)",
        Auth::Any,
        Some("CreateCustomer"),
        201,
    ),
    (
        "get",
        "/api/customers/{id}",
        "A customer",
        Auth::Any,
        None,
        200,
    ),
    (
        "patch",
        "/api/customers/{id}",
        "Change a customer",
        Auth::Any,
        Some("PatchCustomer"),
        200,
    ),
    (
        "delete",
        "/api/customers/{id}",
        "Delete a customer",
        Auth::Any,
        None,
        200,
    ),
    (
        "post",
        "/api/customers/{id}",
        "?action=regenerate-token: a new portal token",
        Auth::Any,
        None,
        200,
    ),
    (
        "get",
        "/api/customers/{id}/stats",
        "Health metrics and score, issues, activity",
        Auth::Any,
        None,
        200,
    ),
    (
        "get",
        "/api/portal/{slug}",
        "Customer portal board (token)",
        Auth::Portal,
        None,
        200,
    ),
    (
        "get",
        "/api/portal/{slug}/issue/{identifier}",
        "Customer portal issue (token, watched issues only)",
        Auth::Portal,
        None,
        200,
    ),
    (
        "post",
        "/api/loki/webhook",
        "Grafana unified-alerting webhook (bearer; optional HMAC)",
        Auth::Signature,
        Some("GrafanaWebhook"),
        200,
    ),
    (
        "get",
        "/api/loki/webhook",
        "Webhook health",
        Auth::None,
        None,
        200,
    ),
    (
        "post",
        "/api/sentry/webhook",
        "Sentry issue webhook (Sentry-Hook-Signature)",
        Auth::Signature,
        Some("SentryWebhook"),
        200,
    ),
    (
        "get",
        "/api/sentry/webhook",
        "Webhook health",
        Auth::None,
        None,
        200,
    ),
    (
        "post",
        "/api/github/webhook",
        "GitHub webhook (X-Hub-Signature-256): pull requests, deploys",
        Auth::Signature,
        Some("GitHubWebhook"),
        200,
    ),
    (
        "get",
        "/api/github/webhook",
        "Webhook health",
        Auth::None,
        None,
        200,
    ),
    (
        "get",
        "/api/openapi.json",
        "This document",
        Auth::None,
        None,
        200,
    ),
    (
        "get",
        "/metrics",
        "Prometheus metrics (API key unless METRICS_PUBLIC=true)",
        Auth::Any,
        None,
        200,
    ),
];

/// The paths of the catalogue (for the test that checks it against the server).
#[cfg(test)]
pub fn catalogue() -> Vec<(&'static str, &'static str)> {
    ROUTES.iter().map(|r| (r.0, r.1)).collect()
}

pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for (method, path, summary, auth, body, ok) in ROUTES {
        let mut op = json!({
            "summary": summary,
            "responses": {
                ok.to_string(): { "description": "success" },
                "400": { "description": "invalid input", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                "401": { "description": "not authenticated", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
            }
        });
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        if !params.is_empty() {
            op["parameters"] = json!(params);
        }
        match auth {
            Auth::None => op["security"] = json!([]),
            Auth::Any => op["security"] = json!([{ "apiKey": [] }, { "session": [] }]),
            Auth::Signature => op["security"] = json!([{ "webhookSignature": [] }]),
            Auth::Portal => op["security"] = json!([{ "portalToken": [] }]),
        }
        if let Some(schema) = body {
            op["requestBody"] = json!({
                "required": true,
                "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
            });
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    let mut schemas = Map::new();
    schemas.insert(
        "Error".into(),
        json!({ "type": "object", "required": ["error", "code"], "properties": {
            "error": { "type": "string" }, "code": { "type": "string" }, "field": { "type": "string" }
        }}),
    );
    for (_, _, _, _, body, _) in ROUTES {
        if let Some(b) = body {
            schemas
                .entry(b.to_string())
                .or_insert_with(|| json!({ "type": "object" }));
        }
    }
    schemas.insert("CreateIssue".into(), json!({ "type": "object", "required": ["title"], "properties": {
        "title": { "type": "string" }, "description": { "type": "string" }, "statusId": { "type": "string", "format": "uuid" },
        "statusName": { "type": "string" }, "priority": { "enum": ["P1", "P2", "P3", "P4"] }, "assigneeName": { "type": "string" },
        "labelIds": { "type": "array", "items": { "type": "string", "format": "uuid" } }, "customerId": { "type": "string", "format": "uuid" }
    }}));
    schemas.insert("KillSwitch".into(), json!({ "type": "object", "required": ["enabled"], "additionalProperties": false, "properties": {
        "enabled": { "type": "boolean" }
    }}));
    schemas.insert("Deduplicate".into(), json!({ "type": "object", "additionalProperties": false, "properties": {
        "statuses": { "type": "array", "items": { "type": "string" }, "description": "column names or ids (default Backlog, Investigating)" },
        "threshold": { "type": "number", "exclusiveMinimum": 0, "maximum": 1, "description": "similarity from which issues are duplicates (default 0.9 by wording)" },
        "dry_run": { "type": "boolean", "default": true },
        "max_clusters": { "type": "integer", "minimum": 1, "maximum": 500, "default": 50 },
        "review": { "type": "boolean", "default": true, "description": "let the configured LLM review each cluster" }
    }}));
    schemas.insert("Spawn".into(), json!({ "type": "object", "properties": {
        "type": { "enum": ["investigate", "implement", "qa", "research", "triage", "error_fix"] },
        "force": { "type": "boolean", "description": "skips thresholds and budgets, never the kill switch" },
        "additional_context": { "type": "string", "maxLength": 2000 }
    }}));
    schemas.insert("PlanAction".into(), json!({ "type": "object", "required": ["action"], "properties": {
        "action": { "enum": ["submit", "approve", "reject"] }, "content": { "type": "string" }, "feedback": { "type": "string" },
        "approvedBy": { "type": "string" }, "auto_spawn": { "type": "boolean" }
    }}));
    schemas.insert("PostTerminal".into(), json!({ "type": "object", "required": ["content"], "properties": {
        "content": { "type": "string" }, "seq": { "type": "integer", "minimum": 1 }, "run_id": { "type": "string" }
    }}));
    schemas.insert("PostActivity".into(), json!({ "type": "object", "required": ["type", "content"], "properties": {
        "type": { "type": "string" }, "content": { "type": "string" }, "metadata": { "type": "object" }
    }}));
    schemas.insert("CreateRun".into(), json!({ "type": "object", "required": ["workflow_type"], "properties": {
        "workflow_type": { "enum": ["error_fix", "prd_investigate", "prd_implement", "qa", "deep_research", "auto_triage", "investigate", "implement", "research", "triage"] },
        "github_run_id": { "type": ["string", "integer"] }, "github_run_url": { "type": "string", "format": "uri" },
        "prompt_text": { "type": "string" }
    }}));
    schemas.insert(
        "UnlinkPr".into(),
        json!({ "type": "object", "required": ["prId"], "properties": {
            "prId": { "type": "string", "format": "uuid" }
        }}),
    );
    schemas.insert(
        "CreateAgent".into(),
        json!({ "type": "object", "required": ["name"], "properties": {
            "name": { "type": "string", "maxLength": 100 }, "description": { "type": "string" },
            "webhookUrl": { "type": "string", "format": "uri" }
        }}),
    );
    schemas.insert("AgentWebhook".into(), json!({ "type": "object", "required": ["agentName", "webhookUrl"], "properties": {
        "agentName": { "type": "string" }, "webhookUrl": { "type": "string", "format": "uri", "description": "http(s) URL; receives ISSUE_ASSIGNED signed with X-Webhook-Signature: sha256=<hex HMAC-SHA256(body, webhookSecret)>" }
    }}));
    schemas.insert(
        "AgentName".into(),
        json!({ "type": "object", "required": ["agentName"], "properties": {
            "agentName": { "type": "string" }
        }}),
    );
    schemas.insert(
        "AgentEvent".into(),
        json!({ "type": "object", "required": ["type"], "additionalProperties": false, "properties": {
            "type": { "type": "string", "minLength": 1, "maxLength": 100 },
            "agentName": { "type": "string", "description": "the agent; default: the issue's assignee" },
            "issue": { "type": "object" },
            "timestamp": { "type": "string", "format": "date-time" },
            "metadata": {}
        }}),
    );
    schemas.insert(
        "OrchestratorTurn".into(),
        json!({ "type": "object", "required": ["message"], "additionalProperties": false, "properties": {
            "message": { "type": "string", "minLength": 1, "maxLength": 20000, "description": "what the person typed; /help lists the slash commands" },
            "sessionId": { "type": "string", "format": "uuid", "description": "continue this session (default: a new one)" }
        }}),
    );
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Dispatch", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Production errors and plain-language requests in; agents, plans and verified fixes out." },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": { "type": "http", "scheme": "bearer", "description": "DISPATCH_API_KEY" },
                "session": { "type": "apiKey", "in": "cookie", "name": "dispatch_session" },
                "webhookSignature": { "type": "apiKey", "in": "header", "name": "X-Hub-Signature-256",
                                      "description": "GitHub X-Hub-Signature-256, Sentry-Hook-Signature, or a bearer secret for Grafana" },
                "portalToken": { "type": "apiKey", "in": "query", "name": "token" }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_once_with_path_parameters() {
        let d = document();
        let mut seen = std::collections::HashSet::new();
        for (m, p) in catalogue() {
            assert!(seen.insert((m, p)), "{m} {p} twice");
            let op = &d["paths"][p][m];
            assert!(op.is_object(), "{m} {p}");
            let braces = p.matches('{').count();
            assert_eq!(
                op["parameters"].as_array().map(|a| a.len()).unwrap_or(0),
                braces,
                "{m} {p}"
            );
            if let Some(r) =
                op["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str()
            {
                let name = r.trim_start_matches("#/components/schemas/");
                assert!(d["components"]["schemas"][name].is_object(), "{name}");
            }
        }
    }
}
