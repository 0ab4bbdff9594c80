//! The agents registry (`dispatch_agent`, spec §2 and §4.5): named agents of a workspace, each
//! optionally with an outbound webhook that hears `ISSUE_ASSIGNED` when an issue is assigned to
//! it. The webhook secret signs those deliveries and is never shown again after it is made.

use crate::Timestamp;
use crate::error::{Error, Result};
use crate::ids::{AgentId, WorkspaceId};
use crate::issue::Issue;
use crate::outbox::NewDelivery;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A registered agent.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub id: AgentId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub description: Option<String>,
    pub active: bool,
    pub webhook_url: Option<String>,
    /// 32 random bytes, hex. Signs outbound deliveries; never rendered by the API.
    pub webhook_secret: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("active", &self.active)
            .field("webhook_url", &self.webhook_url)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

impl Agent {
    /// The webhook to call, when the agent is active and has one.
    pub fn webhook(&self) -> Option<(&str, &str)> {
        match (&self.webhook_url, &self.webhook_secret) {
            (Some(u), Some(s)) if self.active => Some((u, s)),
            _ => None,
        }
    }
}

/// An agent to register.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NewAgent {
    pub name: String,
    pub description: Option<String>,
    pub webhook_url: Option<String>,
}

const MAX_NAME: usize = 100;
const MAX_URL: usize = 2048;

/// The case-insensitive key names are unique by.
pub fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

impl NewAgent {
    pub fn validate(&self) -> Result<()> {
        let n = self.name.trim();
        if n.is_empty() {
            return Err(Error::invalid("name", "an agent needs a name"));
        }
        if n.chars().count() > MAX_NAME || n.chars().any(char::is_control) {
            return Err(Error::invalid(
                "name",
                format!("a name is at most {MAX_NAME} printable characters"),
            ));
        }
        if let Some(u) = &self.webhook_url {
            validate_webhook_url("webhookUrl", u)?;
        }
        Ok(())
    }

    /// The agent to store (active; a webhook URL gets a fresh secret).
    pub fn into_agent(self, ws: WorkspaceId, now: Timestamp) -> Agent {
        let url = self
            .webhook_url
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty());
        Agent {
            id: AgentId::new(),
            workspace_id: ws,
            name: self.name.trim().to_string(),
            description: self
                .description
                .map(|d| d.trim().to_string())
                .filter(|d| !d.is_empty()),
            active: true,
            webhook_secret: url.as_ref().map(|_| new_webhook_secret()),
            webhook_url: url,
            created_at: now,
            updated_at: now,
        }
    }
}

/// An absolute `http` or `https` URL with a host and no credentials or whitespace.
pub fn validate_webhook_url(field: &str, url: &str) -> Result<()> {
    let u = url.trim();
    let bad = |why: &str| Err(Error::invalid(field, format!("{field} {why}")));
    if u.is_empty() {
        return bad("must not be empty");
    }
    if u.len() > MAX_URL {
        return bad("is too long");
    }
    let rest = if let Some(r) = u.strip_prefix("https://") {
        r
    } else if let Some(r) = u.strip_prefix("http://") {
        r
    } else {
        return bad("must be an http:// or https:// URL");
    };
    if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain whitespace");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return bad("must not carry credentials");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, rest)) => (h, rest.strip_prefix(':').unwrap_or(rest)),
            None => return bad("must name a host"),
        }
    } else {
        authority.rsplit_once(':').unwrap_or((authority, ""))
    };
    if host.is_empty() {
        return bad("must name a host");
    }
    if !port.is_empty() && port.parse::<u16>().is_err() {
        return bad("has an invalid port");
    }
    Ok(())
}

/// 32 random bytes, hex (64 characters).
pub fn new_webhook_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The `ISSUE_ASSIGNED` delivery for an agent with a webhook (spec §4.5), signed with the
/// agent's secret; `None` when the agent is inactive or has no webhook. One per assignment
/// (`version` is the issue's version after it).
pub fn issue_assigned(
    agent: &Agent,
    issue: &Issue,
    status: &str,
    now: Timestamp,
) -> Option<NewDelivery> {
    let (url, secret) = agent.webhook()?;
    Some(NewDelivery {
        kind: crate::outbox::KIND_WEBHOOK.into(),
        target: url.to_string(),
        event: "ISSUE_ASSIGNED".into(),
        payload: json!({
            "event": "ISSUE_ASSIGNED",
            "timestamp": now,
            "issue": crate::outbox::events::issue_json(issue, status),
        }),
        idempotency_key: format!(
            "agent:{}:{}:v{}:assigned",
            agent.id, issue.id, issue.version
        ),
        after_key: None,
        secret: Some(secret.to_string()),
        issue_id: Some(issue.id),
        due_at: now,
    })
}

/// Events kept per agent at most; pushing more drops the oldest (the original kept 100 in memory,
/// for everybody at once).
pub const AGENT_EVENT_CAP: usize = 1000;
const MAX_EVENT_TYPE: usize = 100;
const MAX_EVENT_BYTES: usize = 64 * 1024;

/// An event for an agent to read with `poll_events` (`POST /api/mcp/webhook`). Stored, so any
/// replica answers the poll, and handed out once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentEvent {
    /// Increasing per store: the order events were queued in.
    pub seq: i64,
    #[serde(flatten)]
    pub event: NewAgentEvent,
    pub received_at: Timestamp,
}

/// An event as it is queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAgentEvent {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue: Option<serde_json::Value>,
    /// When the sender says it happened (`received_at` when it does not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

impl NewAgentEvent {
    pub fn validate(&self) -> Result<()> {
        let t = self.event_type.trim();
        if t.is_empty() {
            return Err(Error::invalid("type", "an event needs a type"));
        }
        if t.chars().count() > MAX_EVENT_TYPE || t.chars().any(char::is_control) {
            return Err(Error::invalid(
                "type",
                format!("a type is at most {MAX_EVENT_TYPE} printable characters"),
            ));
        }
        let size = serde_json::to_vec(self)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_EVENT_BYTES {
            return Err(Error::invalid(
                "issue",
                format!("an event is at most {MAX_EVENT_BYTES} bytes of JSON"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls() {
        for ok in [
            "https://example.com/hook",
            "http://127.0.0.1:8080/x?y=1",
            "https://[::1]:9000/",
            "http://agents.internal",
        ] {
            assert!(validate_webhook_url("webhookUrl", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ftp://example.com",
            "example.com/hook",
            "https://",
            "https://user:pw@example.com/",
            "https://exa mple.com/",
            "http://host:99999/",
            "javascript:alert(1)",
        ] {
            let e = validate_webhook_url("webhookUrl", bad).expect_err(bad);
            assert_eq!(e.field(), Some("webhookUrl"), "{bad}");
        }
    }

    #[test]
    fn secrets_are_32_bytes_hex() {
        let s = new_webhook_secret();
        assert_eq!(s.len(), 64);
        assert!(s.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(s, new_webhook_secret());
    }
}
