//! The agents registry and the outbound `ISSUE_ASSIGNED` webhook (spec §4.5).

use super::Dispatch;
use crate::agent::{self, Agent, NewAgent, new_webhook_secret, validate_webhook_url};
use crate::error::{Error, Result};
use crate::issue::Issue;

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

    /// The issue was just assigned: tells the assignee's webhook, if it is a registered active
    /// agent with one. Never fails the caller: the delivery is handed to the sender, which works
    /// off the request path; a lookup failure is logged.
    pub(crate) async fn announce_assignment(&self, issue: &Issue) {
        let (Some(sender), Some(name)) = (&self.inner.webhooks, &issue.assignee) else {
            return;
        };
        let agent = match self
            .inner
            .store
            .get_agent_by_name(self.inner.workspace.id, name)
            .await
        {
            Ok(Some(a)) => a,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(issue = %issue.identifier, agent = %name, error = %e, "cannot look up the assigned agent");
                return;
            }
        };
        let status = match self.columns().await {
            Ok(cols) => cols
                .into_iter()
                .find(|c| c.id == issue.column_id)
                .map(|c| c.name)
                .unwrap_or_default(),
            Err(e) => {
                tracing::warn!(issue = %issue.identifier, error = %e, "cannot read the columns");
                String::new()
            }
        };
        if let Some(hook) = agent::issue_assigned(&agent, issue, &status, self.now()) {
            sender.send(hook);
        }
    }
}
