//! The Model Context Protocol server at `/api/mcp` (spec §10), on the official Rust SDK's
//! streamable-HTTP transport.
//!
//! - **Stateless**: every POST is answered by a fresh handler over the shared engine, with JSON
//!   responses and no session kept in memory, so any replica answers any request (protocol
//!   versions before 2026-07-28 included: the server simply hands out no session id).
//!   Plain tool calls, what agents send in a loop, are answered without rmcp's per-request
//!   service (`direct.rs`); everything else goes through rmcp.
//! - **Fail closed**: `Authorization: Bearer DISPATCH_API_KEY` on every request (there is always a
//!   key: one is generated when unset), 401 with `WWW-Authenticate: Bearer` otherwise.
//! - **DNS rebinding**: `Host` must be the public URL's host or a loopback name
//!   (`MCP_ALLOWED_HOSTS` adds more); a browser `Origin` must be the public URL's or loopback.
//! - Tools ([`tools`]) and resources ([`resources`]) go through the engine: the same gates, the
//!   close gate, history with the agent as actor. A refusal, an unknown identifier or a bad
//!   argument is a tool result with `isError: true` and a message, never a protocol error.
//! - `POST /api/mcp/webhook` queues an event for an agent, kept in the store; `poll_events`
//!   takes them.

mod direct;
pub mod resources;
pub mod tools;

use crate::auth::{Authenticated, api_key_ok};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Json, Router};
use dispatch_core::agent::NewAgentEvent;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, JsonObject,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

pub const PATH: &str = "/api/mcp";

const INSTRUCTIONS: &str = "Dispatch tracks production errors and feature requests as issues \
(identifiers like DISPATCH-12) and sends coding agents to investigate, plan, implement, test and \
research them. Find work with search_issues, list_issues or get_my_issues; read one with get_issue \
or the resource dispatch://issue/{identifier}. An agent working an issue reports with \
post_activity and update_agent_status, proposes a plan with post_plan and waits until \
get_approved_plan returns it, and stops with report_blocker when it cannot go on. \
dispatch_investigation, dispatch_implementation, dispatch_qa, dispatch_research and \
dispatch_triage ask for an agent run; they pass the same gates as every spawn (kill switch, \
budgets, concurrency, cooldowns) and a refusal says why. get_fleet_status shows what runs.";

/// The MCP handler: one per request, over the shared application state.
#[derive(Clone)]
pub struct DispatchMcp {
    state: AppState,
}

impl DispatchMcp {
    pub fn new(state: AppState) -> Self {
        DispatchMcp { state }
    }

    /// A tool call, timed into the metrics (rmcp's handler and the direct path both call this).
    async fn run(
        state: &AppState,
        name: &str,
        arguments: Option<JsonObject>,
    ) -> Result<tools::Json, tools::ToolError> {
        let started = std::time::Instant::now();
        let result = tools::run(state, name, arguments).await;
        state
            .metrics
            .mcp_tool_call(name, result.is_err(), started.elapsed().as_secs_f64());
        result
    }

    /// [`Self::run`] as MCP's result.
    async fn call(state: &AppState, name: &str, arguments: Option<JsonObject>) -> CallToolResult {
        tools::call_result(Self::run(state, name, arguments).await)
    }
}

impl ServerHandler for DispatchMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("dispatch", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult {
            tools: tools::list(),
            ..Default::default()
        })
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        Ok(Self::call(&self.state, &request.name, request.arguments)
            .await
            .into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        resources::list(&self.state).await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(resources::templates())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        resources::read(&self.state, &request.uri)
            .await
            .map(Into::into)
    }
}

/// `Host` values the transport accepts: the public URL's host (with and without its port), the
/// loopback names, and `MCP_ALLOWED_HOSTS`.
fn allowed_hosts(state: &AppState) -> Vec<String> {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1", "[::1]"]
        .into_iter()
        .map(str::to_string)
        .collect();
    if let Some(authority) = authority_of(&state.config.app_url) {
        hosts.push(authority.to_string());
        if let Some((host, _port)) = authority.rsplit_once(':')
            && !host.ends_with(']')
            && !host.is_empty()
        {
            hosts.push(host.to_string());
        }
    }
    hosts.extend(state.config.mcp_allowed_hosts.iter().cloned());
    hosts
}

/// Browser origins allowed: the public URL's and loopback on any port.
fn allowed_origins(state: &AppState) -> Vec<String> {
    let mut origins = vec![
        "http://localhost:*".to_string(),
        "http://127.0.0.1:*".to_string(),
        "http://[::1]:*".to_string(),
    ];
    let url = state.config.app_url.trim_end_matches('/');
    if let (Some(scheme), Some(authority)) = (url.split_once("://").map(|x| x.0), authority_of(url))
    {
        let with_port = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_string()
        } else if scheme == "https" {
            format!("{authority}:443")
        } else {
            format!("{authority}:80")
        };
        origins.push(format!("{scheme}://{with_port}"));
    }
    origins
}

fn authority_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let a = rest.split(['/', '?', '#']).next()?;
    (!a.is_empty()).then_some(a)
}

/// `/api/mcp` (the transport, behind the API key) and `/api/mcp/webhook`.
/// rmcp's streamable-HTTP service and the direct path in front of it, configured alike.
type Rmcp = StreamableHttpService<DispatchMcp, LocalSessionManager>;

fn transport(state: &AppState) -> (Arc<direct::Direct>, Rmcp) {
    let handler_state = state.clone();
    let hosts = allowed_hosts(state);
    let direct = Arc::new(direct::Direct::new(&hosts, state.config.max_body_bytes));
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_allowed_hosts(hosts)
        .with_allowed_origins(allowed_origins(state))
        .with_max_request_body_bytes(state.config.max_body_bytes);
    let service = StreamableHttpService::new(
        move || Ok(DispatchMcp::new(handler_state.clone())),
        LocalSessionManager::default().into(),
        config,
    );
    (direct, service)
}

pub fn router(state: &AppState) -> Router<AppState> {
    let (direct, service) = transport(state);
    // Plain stateless tool calls are answered directly (see `direct`); the rest by rmcp.
    let endpoint = move |State(s): State<AppState>, req: Request| {
        let direct = direct.clone();
        let service = service.clone();
        async move {
            direct
                .answer(&s, req, |req| async move {
                    service.handle(req).await.into_response()
                })
                .await
        }
    };
    let transport =
        Router::new()
            .route(PATH, any(endpoint))
            .route_layer(middleware::from_fn_with_state(
                state.clone(),
                require_api_key,
            ));
    Router::new()
        .route("/api/mcp/webhook", post(queue_event).get(webhook_health))
        .merge(transport)
}

/// The transport answers only the API key (a session cookie is not enough: MCP clients are
/// programs, and a browser page must not reach the tools with a user's cookie).
async fn require_api_key(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if api_key_ok(&s, req.headers()) {
        return next.run(req).await;
    }
    let mut res =
        ApiError::unauthorized("the MCP server needs Authorization: Bearer <DISPATCH_API_KEY>")
            .into_response();
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"dispatch\""),
    );
    res
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct QueueEvent {
    /// The agent the event is for; when absent, the issue's assignee.
    #[serde(default, alias = "agent_name", alias = "agent")]
    agent_name: Option<String>,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    issue: Option<Value>,
    #[serde(default)]
    timestamp: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    metadata: Option<Value>,
}

/// `POST /api/mcp/webhook`: queues an event for an agent (stored; `poll_events` takes it).
async fn queue_event(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiJson(b): ApiJson<QueueEvent>,
) -> ApiResult<Response> {
    let agent = match b.agent_name.as_deref().map(str::trim) {
        Some(a) if !a.is_empty() => a.to_string(),
        _ => b
            .issue
            .as_ref()
            .and_then(|i| i.get("assignee"))
            .and_then(|a| a.as_str().or_else(|| a.get("name").and_then(Value::as_str)))
            .map(str::to_string)
            .filter(|a| !a.trim().is_empty())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "agentName",
                    "agentName is required (or an issue with an assignee)",
                )
            })?,
    };
    let seq = s
        .dispatch
        .queue_agent_event(
            &agent,
            NewAgentEvent {
                event_type: b.event_type,
                issue: b.issue,
                timestamp: b.timestamp,
                metadata: b.metadata,
            },
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "success": true, "message": "Event queued", "agentName": agent, "seq": seq })),
    )
        .into_response())
}

async fn webhook_health(_a: Authenticated) -> Json<Value> {
    Json(json!({ "status": "ok", "endpoint": "/api/mcp/webhook", "method": "POST" }))
}
