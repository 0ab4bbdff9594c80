//! `/api/agents`: the agents registry and their outbound webhooks (spec §3.1, §4.5).
//!
//! An agent's webhook hears `ISSUE_ASSIGNED` when an issue is assigned to it, signed with
//! `X-Webhook-Signature: sha256=<hex HMAC-SHA256(body, secret)>`. The secret is made by the
//! server (32 random bytes, hex) and shown exactly once: in the response that made it
//! (`POST /api/agents` with a `webhookUrl`, `POST /api/agents/webhook`), as `webhookSecret`, so
//! the receiver can be configured. No other response ever contains it; setting the URL again
//! makes a new secret.

use crate::auth::Authenticated;
use crate::dto::AgentDto;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::extract::ApiQuery;
use crate::openapi::{ApiRouter, doc, get, post};
use crate::routes::schema;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use dispatch_core::agent::NewAgent;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .route(
            "/api/agents",
            get(
                list,
                doc("Registered agents (?includeInactive=true for all); never their webhook secret"),
            )
            .post(
                create,
                doc("Register an agent; with webhookUrl the new webhookSecret is in this response only")
                    .status(201),
            ),
        )
        .route(
            "/api/agents/webhook",
            post(
                set_webhook,
                doc("Set an agent's webhook URL with a new secret (returned once as webhookSecret)"),
            )
            .get(
                get_webhook,
                doc("Whether an agent (?agentName=) has a webhook, and its URL"),
            )
            .delete(
                clear_webhook,
                doc("Remove an agent's webhook URL and secret"),
            ),
        )
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    #[serde(default, alias = "include_inactive")]
    #[schemars(with = "Option<schema::Flag>")]
    include_inactive: Option<String>,
}

async fn list(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<AgentDto>>> {
    let include = match q.include_inactive.as_deref().map(str::trim) {
        None | Some("") | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "includeInactive",
                "includeInactive must be true or false",
            ));
        }
    };
    let agents = s.dispatch.agents(include).await?;
    Ok(Json(agents.iter().map(AgentDto::from).collect()))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct CreateAgent {
    #[schemars(with = "schema::Name")]
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, alias = "webhook_url")]
    #[schemars(with = "Option<schema::OrBlank<schema::WebhookUrl>>")]
    webhook_url: Option<String>,
}

async fn create(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiJson(b): ApiJson<CreateAgent>,
) -> ApiResult<(StatusCode, Json<AgentDto>)> {
    if let Some(u) = b.webhook_url.as_deref().filter(|u| !u.trim().is_empty()) {
        check_receiver(&s, u)?;
    }
    let agent = s
        .dispatch
        .create_agent(NewAgent {
            name: b.name,
            description: b.description,
            webhook_url: b.webhook_url.filter(|u| !u.trim().is_empty()),
        })
        .await?;
    let mut v = AgentDto::from(&agent);
    v.webhook_secret = agent.webhook_secret.clone();
    Ok((StatusCode::CREATED, Json(v)))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct SetWebhook {
    #[serde(alias = "agent_name")]
    #[schemars(with = "schema::Name")]
    agent_name: String,
    #[serde(alias = "webhook_url")]
    #[schemars(with = "schema::WebhookUrl")]
    webhook_url: String,
}

/// A webhook URL naming a loopback, private or link-local address is refused up front unless
/// `AGENT_WEBHOOK_ALLOW_PRIVATE` is set (names are checked again when resolved, at delivery).
pub(crate) fn check_receiver(s: &AppState, url: &str) -> ApiResult<()> {
    if s.config.agent_webhook_allow_private {
        return Ok(());
    }
    if let Some(why) = dispatch_adapters::webhook::refuse_private_literal(url) {
        return Err(ApiError::bad_request(
            "webhookUrl",
            format!(
                "webhookUrl points inside ({why}); set AGENT_WEBHOOK_ALLOW_PRIVATE=true to allow receivers on an internal network"
            ),
        ));
    }
    Ok(())
}

fn agent_name(field: &str, name: &str) -> ApiResult<String> {
    let n = name.trim();
    if n.is_empty() {
        return Err(ApiError::bad_request(field, format!("{field} is required")));
    }
    Ok(n.to_string())
}

/// Sets the URL and makes a new secret, returned once as `webhookSecret`.
async fn set_webhook(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiJson(b): ApiJson<SetWebhook>,
) -> ApiResult<Json<Value>> {
    let name = agent_name("agentName", &b.agent_name)?;
    check_receiver(&s, &b.webhook_url)?;
    let agent = s.dispatch.set_agent_webhook(&name, &b.webhook_url).await?;
    Ok(Json(json!({
        "success": true,
        "agentName": agent.name,
        "webhookUrl": agent.webhook_url,
        "webhookSecret": agent.webhook_secret,
        "message": format!(
            "Webhook configured for {}. Keep webhookSecret: it is shown only now and verifies X-Webhook-Signature.",
            agent.name
        ),
    })))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct WebhookQuery {
    #[serde(alias = "agent_name")]
    #[schemars(with = "schema::Name")]
    agent_name: String,
}

async fn get_webhook(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiQuery(q): ApiQuery<WebhookQuery>,
) -> ApiResult<Json<Value>> {
    let name = agent_name("agentName", &q.agent_name)?;
    let agent = s.dispatch.agent(&name).await?;
    Ok(Json(json!({
        "agentName": agent.name,
        "hasWebhook": agent.webhook_url.is_some(),
        "webhookUrl": agent.webhook_url,
    })))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct ClearWebhook {
    #[serde(alias = "agent_name")]
    #[schemars(with = "schema::Name")]
    agent_name: String,
}

async fn clear_webhook(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiJson(b): ApiJson<ClearWebhook>,
) -> ApiResult<Json<Value>> {
    let name = agent_name("agentName", &b.agent_name)?;
    let agent = s.dispatch.clear_agent_webhook(&name).await?;
    Ok(Json(json!({
        "success": true,
        "agentName": agent.name,
        "message": format!("Webhook removed for {}", agent.name),
    })))
}
