//! The agents registry and the outbound `ISSUE_ASSIGNED` webhook (spec §4.5).

use super::Dispatch;
use crate::agent::{
    AGENT_EVENT_CAP, Agent, AgentEvent, NewAgent, NewAgentEvent, new_webhook_secret,
    validate_webhook_url,
};
use crate::error::{Error, ErrorKind, Result};
use crate::issue::{ColumnCategory, Issue, IssueFilter};

impl Dispatch {
    /// `Conflict` when the name is taken. A webhook URL given here gets a fresh secret.
    pub async fn create_agent(&self, new: NewAgent) -> Result<Agent> {
        new.validate()?;
        let a = new.into_agent(self.inner.workspace.id, self.now());
        self.inner.store.create_agent(&a).await
    }

    /// Active agents by name; inactive ones too with `include_inactive`.
    pub async fn agents(&self, include_inactive: bool) -> Result<Vec<Agent>> {
        self.inner
            .store
            .list_agents(self.inner.workspace.id, include_inactive)
            .await
    }

    /// `NotFound` for an unknown name.
    pub async fn agent(&self, name: &str) -> Result<Agent> {
        self.inner
            .store
            .get_agent_by_name(self.inner.workspace.id, name)
            .await?
            .ok_or_else(|| Error::not_found(format!("agent {name:?} not found")))
    }

    /// Sets the agent's webhook URL with a new secret (the returned agent carries it).
    pub async fn set_agent_webhook(&self, name: &str, url: &str) -> Result<Agent> {
        validate_webhook_url("webhookUrl", url)?;
        self.inner
            .store
            .set_agent_webhook(
                self.inner.workspace.id,
                name,
                Some((url.trim().to_string(), new_webhook_secret())),
                self.now(),
            )
            .await
    }

    /// Clears the agent's webhook URL and secret.
    pub async fn clear_agent_webhook(&self, name: &str) -> Result<Agent> {
        self.inner
            .store
            .set_agent_webhook(self.inner.workspace.id, name, None, self.now())
            .await
    }
}

/// `poll_events` hands out at most this many events a call.
pub const AGENT_POLL_MAX: usize = 100;

impl Dispatch {
    /// The agent of that name, registered now when it is not yet (an agent that assigns itself
    /// or registers a webhook over MCP). Safe against a concurrent first registration.
    pub async fn ensure_agent(&self, name: &str) -> Result<Agent> {
        if let Some(a) = self
            .inner
            .store
            .get_agent_by_name(self.inner.workspace.id, name)
            .await?
        {
            return Ok(a);
        }
        match self
            .create_agent(NewAgent {
                name: name.to_string(),
                ..NewAgent::default()
            })
            .await
        {
            Err(e) if e.kind == ErrorKind::Conflict => self.agent(name).await,
            other => other,
        }
    }

    /// Queues an event for a registered agent (`NotFound` otherwise); the oldest beyond
    /// [`AGENT_EVENT_CAP`] are dropped. Returns the event's sequence number.
    pub async fn queue_agent_event(&self, agent: &str, event: NewAgentEvent) -> Result<i64> {
        event.validate()?;
        self.inner
            .store
            .push_agent_event(
                self.inner.workspace.id,
                agent,
                &event,
                AGENT_EVENT_CAP,
                self.now(),
            )
            .await
    }

    /// Takes the agent's oldest events (at most `limit`, 1 to [`AGENT_POLL_MAX`]); each event is
    /// handed out once, whichever replica answers.
    pub async fn poll_agent_events(&self, agent: &str, limit: usize) -> Result<Vec<AgentEvent>> {
        self.inner
            .store
            .take_agent_events(
                self.inner.workspace.id,
                agent,
                limit.clamp(1, AGENT_POLL_MAX),
            )
            .await
    }

    /// Open issues (not in a closed column) assigned to `agent`, most urgent first, then oldest.
    pub async fn agent_issues(&self, agent: &str, limit: usize) -> Result<Vec<Issue>> {
        let name = agent.trim();
        if name.is_empty() {
            return Err(Error::invalid("agentName", "an agent name is required"));
        }
        let closed: Vec<_> = self
            .columns()
            .await?
            .into_iter()
            .filter(|c| c.category == ColumnCategory::Closed)
            .map(|c| c.id)
            .collect();
        let mut issues = self
            .list_issues(&IssueFilter {
                assignee: Some(name.to_string()),
                limit: Some(10_000),
                ..IssueFilter::default()
            })
            .await?;
        issues.retain(|i| !closed.contains(&i.column_id));
        issues.sort_by_key(|i| (i.priority, i.created_at, i.number));
        issues.truncate(limit);
        Ok(issues)
    }
}
