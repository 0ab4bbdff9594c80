//! Issues reported from a chat channel (the MCP `create_issue` with Slack fields, spec §10):
//! the channel's customer is found or made, the issue is theirs and they watch it.

use super::Dispatch;
use crate::customer::{Customer, CustomerUser, NewCustomer, NewCustomerUser};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::CustomerUserId;
use crate::issue::{Actor, Issue, NewIssue};

const MAX_CHANNEL_ID: usize = 64;

/// The chat channel an issue came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelIntake {
    pub channel_id: String,
    pub channel_name: Option<String>,
    /// The Slack thread the report was made in (`slackThreadTs`): the issue's notifications in
    /// that channel are replies there.
    pub thread_ts: Option<String>,
}

impl ChannelIntake {
    fn validate(&self) -> Result<&str> {
        let id = self.channel_id.trim();
        if id.is_empty()
            || id.len() > MAX_CHANNEL_ID
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::invalid(
                "slackChannelId",
                format!("a channel id is 1 to {MAX_CHANNEL_ID} letters, digits, '-' or '_'"),
            ));
        }
        Ok(id)
    }

    /// `slack-<channel id lowercased>`, as the original names channel customers.
    pub fn customer_slug(&self) -> String {
        let id: String = self
            .channel_id
            .trim()
            .chars()
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9') => c,
                _ => '-',
            })
            .collect();
        format!("slack-{}", id.trim_matches('-'))
    }
}

impl Dispatch {
    /// The customer of a chat channel: the one whose `slack_channel_id` it is, else the one with
    /// the channel's slug, else a new one named after the channel ("Customer <id>" without a
    /// name). Safe against a concurrent first report from the same channel.
    pub async fn customer_for_channel(&self, intake: &ChannelIntake) -> Result<Customer> {
        let id = intake.validate()?;
        if let Some(c) = self
            .customers()
            .await?
            .into_iter()
            .find(|c| c.slack_channel_id.as_deref() == Some(id))
        {
            return Ok(c);
        }
        let slug = intake.customer_slug();
        let by_slug = || async {
            self.inner
                .store
                .get_customer_by_slug(self.inner.workspace.id, &slug)
                .await
        };
        match by_slug().await {
            Ok(c) => return Ok(c),
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let name = intake
            .channel_name
            .as_deref()
            .map(|n| n.trim().trim_start_matches('#').trim())
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| format!("Customer {id}"));
        match self
            .create_customer(NewCustomer {
                name,
                slug: Some(slug.clone()),
                slack_channel_id: Some(id.to_string()),
                ..NewCustomer::default()
            })
            .await
        {
            Err(e) if e.kind == ErrorKind::Conflict => by_slug().await,
            other => other,
        }
    }

    /// Creates an issue reported from a chat channel: the channel's customer owns it and
    /// watches it (so it shows on their portal); the reporter, when told, is the customer's
    /// person (found by Slack user id, or made) and learns the name, avatar and email given.
    pub async fn create_issue_from_channel(
        &self,
        mut new: NewIssue,
        intake: &ChannelIntake,
        reporter: Option<&NewCustomerUser>,
        actor: &Actor,
    ) -> Result<ChannelIssue> {
        if let Some(r) = reporter {
            r.validate()?;
        }
        let customer = self.customer_for_channel(intake).await?;
        let reporter = match reporter {
            Some(r) => Some(
                self.inner
                    .store
                    .upsert_customer_user(customer.id, r, self.now())
                    .await?,
            ),
            None => None,
        };
        new.customer_id = Some(customer.id);
        new.reporter_id = reporter.as_ref().map(|r| r.id);
        // The report's thread is the issue's thread in this channel: recorded, in the
        // creation's transaction, under the key of the "issue created" post, which therefore
        // is not posted again.
        let thread = intake
            .thread_ts
            .as_deref()
            .map(|ts| (intake.channel_id.trim().to_string(), ts.to_string()));
        // The channel's customer watches it from the creation on (same transaction).
        new.customer_watches = true;
        let issue = self.create_issue_notifying(new, thread, actor).await?;
        Ok(ChannelIssue {
            issue,
            customer,
            reporter,
        })
    }

    /// A customer's person (an issue's reporter).
    pub async fn customer_user(&self, id: CustomerUserId) -> Result<CustomerUser> {
        self.inner.store.get_customer_user(id).await
    }
}

/// An issue made from a chat report, with its customer and reporter.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelIssue {
    pub issue: Issue,
    pub customer: Customer,
    pub reporter: Option<CustomerUser>,
}
