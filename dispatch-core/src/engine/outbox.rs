//! Notifications and outbound webhooks through the outbox ([`crate::outbox`]): a use-case
//! enqueues deliveries (rendered by the pure functions of `outbox::slack` and
//! `outbox::events`), and the delivery worker sends them through the registered transports.

use super::Dispatch;
use crate::error::Result;
use crate::ids::DeliveryId;
use crate::issue::{Comment, Issue};
use crate::outbox::events::{self, Subscription, WebhookEvent};
use crate::outbox::slack::{self, CustomerChannel, SlackRouting};
use crate::outbox::{self, Delivery, DeliveryFilter, NewDelivery, RetryPolicy};
use crate::ports::Notification;
use serde_json::{Value, json};

/// What the engine sends through the outbox.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboxConfig {
    /// Slack notifications; `None` when `SLACK_BOT_TOKEN` is unset or `NOTIFICATIONS_ENABLED`
    /// is `false`.
    pub slack: Option<SlackRouting>,
    /// Receivers of event webhooks.
    pub subscriptions: Vec<Subscription>,
    pub policy: RetryPolicy,
    /// Settled deliveries are deleted by the sweeper once their last try is this old; `None`
    /// keeps them forever.
    pub retention: Option<chrono::Duration>,
}

/// How many deliveries one worker step claims.
const BATCH: usize = 32;

/// A try starts only while its claim has at least this long to run (a transport's timeout).
const LEASE_MARGIN: chrono::Duration = chrono::Duration::seconds(15);

impl Dispatch {
    /// Stores deliveries; a failure is logged, never raised (the change that caused them is
    /// already committed; the notification is lost, the request is not).
    async fn enqueue_all(&self, deliveries: Vec<NewDelivery>) {
        if deliveries.is_empty() {
            return;
        }
        let now = self.now();
        for d in deliveries {
            if let Err(e) = self.inner.store.enqueue_delivery(&d, now).await {
                tracing::warn!(kind = %d.kind, event = %d.event, error = %e, "cannot store a notification");
            }
        }
        self.inner.wake_outbox.notify_one();
    }

    /// Renders a notification into deliveries and stores them.
    pub(super) async fn enqueue_notification(&self, n: &Notification) {
        let out = match self.render_notification(n).await {
            Ok(out) => out,
            Err(e) => {
                tracing::warn!(error = %e, "cannot prepare a notification");
                return;
            }
        };
        self.enqueue_all(out).await;
    }

    fn status_name(cols: &[crate::issue::Column], issue: &Issue) -> String {
        cols.iter()
            .find(|c| c.id == issue.column_id)
            .map(|c| c.name.clone())
            .unwrap_or_default()
    }

    fn webhook_events(
        &self,
        event: WebhookEvent,
        issue: &Issue,
        status: &str,
        comment: Option<&Comment>,
        metadata: Option<Value>,
        key: &str,
    ) -> Vec<NewDelivery> {
        let subs = &self.inner.outbox.subscriptions;
        if !subs.iter().any(|s| s.events.contains(&event)) {
            return Vec::new();
        }
        let now = self.now();
        let body = events::body(event, issue, status, comment, metadata, now);
        events::fan_out(subs, event, &body, key, issue, now)
    }

    /// The customer's channel with its portal link, when it has a channel.
    fn customer_channel(&self, c: &crate::customer::Customer) -> Option<CustomerChannel> {
        let slack = self.inner.outbox.slack.as_ref()?;
        let channel = c
            .slack_channel_id
            .clone()
            .filter(|s| !s.trim().is_empty())?;
        Some(CustomerChannel {
            channel,
            portal_url: format!(
                "{}/portal/{}?token={}",
                slack.app_url.trim_end_matches('/'),
                c.slug,
                c.portal_token
            ),
        })
    }

    /// The channels of the customers watching the issue (each once).
    async fn watcher_channels(&self, issue: &Issue) -> Result<Vec<CustomerChannel>> {
        let mut out: Vec<CustomerChannel> = Vec::new();
        for id in self.inner.store.list_watchers(issue.id).await? {
            // A customer deleted meanwhile has nobody to tell.
            let c = match self.inner.store.get_customer(id).await {
                Ok(c) => c,
                Err(e) if e.kind == crate::error::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if let Some(ch) = self.customer_channel(&c)
                && !out.iter().any(|o| o.channel == ch.channel)
            {
                out.push(ch);
            }
        }
        Ok(out)
    }

    async fn issue_channel(&self, issue: &Issue) -> Result<Option<CustomerChannel>> {
        let Some(id) = issue.customer_id else {
            return Ok(None);
        };
        let c = self.inner.store.get_customer(id).await?;
        Ok(self.customer_channel(&c))
    }

    async fn render_notification(&self, n: &Notification) -> Result<Vec<NewDelivery>> {
        let now = self.now();
        let slack = self.inner.outbox.slack.clone();
        let wants_webhooks = !self.inner.outbox.subscriptions.is_empty();
        if slack.is_none() && !wants_webhooks {
            return Ok(Vec::new());
        }
        let cols = self.columns_for_display().await?;
        let mut out = Vec::new();
        match n {
            Notification::NewError { issue, event_count } => {
                if let Some(r) = &slack {
                    out.extend(slack::new_error(r, issue, *event_count, now));
                }
                let status = Self::status_name(&cols, issue);
                out.extend(self.webhook_events(
                    WebhookEvent::IssueCreated,
                    issue,
                    &status,
                    None,
                    None,
                    &issue.id.to_string(),
                ));
            }
            Notification::IssueCreated { issue } => {
                let status = Self::status_name(&cols, issue);
                if slack.is_some()
                    && let Some(ch) = self.issue_channel(issue).await?
                {
                    let reporter = match issue.reporter_id {
                        Some(r) => self
                            .inner
                            .store
                            .get_customer_user(r)
                            .await
                            .ok()
                            .and_then(|u| u.display_name),
                        None => None,
                    };
                    out.push(slack::issue_created(
                        &ch,
                        issue,
                        &status,
                        reporter.as_deref(),
                        now,
                    ));
                }
                out.extend(self.webhook_events(
                    WebhookEvent::IssueCreated,
                    issue,
                    &status,
                    None,
                    None,
                    &issue.id.to_string(),
                ));
            }
            Notification::AgentStarted { issue, run } => {
                if let Some(r) = &slack {
                    out.extend(slack::agent_started(r, issue, run, now));
                }
            }
            Notification::AgentCompleted { issue, run } => {
                if let Some(r) = &slack {
                    let prs = self.inner.store.list_pr_links(issue.id).await?;
                    let pr = prs.iter().find_map(|p| p.url.clone());
                    out.extend(slack::agent_finished(r, issue, run, pr.as_deref(), now));
                }
            }
            Notification::BudgetWarning { issue, run } => {
                if let Some(r) = &slack {
                    out.extend(slack::budget_warning(r, issue, run, now));
                }
            }
            Notification::StatusChanged { issue, from, to } => {
                let change = format!("v{}", issue.version);
                if slack.is_some() {
                    for ch in self.watcher_channels(issue).await? {
                        out.push(slack::status_changed(&ch, issue, from, to, &change, now));
                    }
                }
                out.extend(self.webhook_events(
                    WebhookEvent::StatusChanged,
                    issue,
                    to,
                    None,
                    Some(json!({ "from": from, "to": to })),
                    &format!("{}:{change}", issue.id),
                ));
            }
            Notification::IssueUpdated { issue, changes } => {
                let status = Self::status_name(&cols, issue);
                out.extend(self.webhook_events(
                    WebhookEvent::IssueUpdated,
                    issue,
                    &status,
                    None,
                    Some(json!({ "changes": changes })),
                    &format!("{}:v{}", issue.id, issue.version),
                ));
            }
            Notification::IssueDeleted { issue } => {
                let status = Self::status_name(&cols, issue);
                out.extend(self.webhook_events(
                    WebhookEvent::IssueDeleted,
                    issue,
                    &status,
                    None,
                    None,
                    &issue.id.to_string(),
                ));
            }
            Notification::IssueAssigned { issue } => {
                let status = Self::status_name(&cols, issue);
                out.extend(self.webhook_events(
                    WebhookEvent::IssueAssigned,
                    issue,
                    &status,
                    None,
                    None,
                    &format!("{}:v{}", issue.id, issue.version),
                ));
            }
            Notification::CommentAdded { issue, comment } => {
                if slack.is_some()
                    && let Some(ch) = self.issue_channel(issue).await?
                {
                    out.push(slack::comment_added(&ch, issue, comment, now));
                }
                let status = Self::status_name(&cols, issue);
                out.extend(self.webhook_events(
                    WebhookEvent::CommentCreated,
                    issue,
                    &status,
                    Some(comment),
                    None,
                    &comment.id.to_string(),
                ));
            }
            Notification::FixFailed { .. } | Notification::FixVerified { .. } => {}
        }
        Ok(out)
    }

    /// The per-run budget Slack warns at 90 % of, when Slack is on.
    pub(super) fn slack_budget_cap(&self) -> Option<f64> {
        self.inner
            .outbox
            .slack
            .as_ref()
            .map(|s| s.max_cost_per_run_usd)
    }

    /// Records an existing Slack thread as the issue's thread in `channel` (when Slack is on).
    pub(super) async fn record_slack_thread(&self, issue: &Issue, channel: &str, ts: &str) {
        if self.inner.outbox.slack.is_none() {
            return;
        }
        match slack::recorded_thread(issue, channel, ts, self.now()) {
            Ok(d) => self.enqueue_all(vec![d]).await,
            Err(e) => tracing::warn!(issue = %issue.identifier, error = %e, "not a Slack thread"),
        }
    }

    /// Stores the agent's `ISSUE_ASSIGNED` delivery (its own webhook and secret) — when this
    /// engine was built with a webhook transport (a server always is; an embedding application
    /// without one sends no agent webhooks, and stores none that nobody would send).
    pub(super) async fn enqueue_agent_webhook(&self, d: NewDelivery) {
        if self.inner.transports.contains_key(outbox::KIND_WEBHOOK) {
            self.enqueue_all(vec![d]).await;
        }
    }

    /// One pass of the delivery worker: claims due deliveries of the kinds this process has a
    /// transport for, tries each once and records the outcome. Returns how many were claimed.
    pub async fn deliver_step(&self) -> Result<usize> {
        let kinds: Vec<String> = self.inner.transports.keys().cloned().collect();
        if kinds.is_empty() {
            return Ok(0);
        }
        let claimed = self
            .inner
            .store
            .claim_deliveries(&kinds, self.now(), self.inner.outbox.policy.lease, BATCH)
            .await?;
        let n = claimed.len();
        // One target (a Slack channel, a URL) gets its messages one after the other, in the
        // order they were due; different targets are served at once.
        let mut by_target: Vec<(String, Vec<Delivery>)> = Vec::new();
        for d in claimed {
            match by_target.iter_mut().find(|(t, _)| *t == d.target) {
                Some((_, list)) => list.push(d),
                None => by_target.push((d.target.clone(), vec![d])),
            }
        }
        futures::future::join_all(by_target.into_iter().map(|(_, list)| async move {
            for d in list {
                if let Err(e) = self.deliver_one(d).await {
                    tracing::warn!(error = %e, "delivery bookkeeping failed");
                }
            }
        }))
        .await;
        Ok(n)
    }

    async fn deliver_one(&self, mut d: Delivery) -> Result<()> {
        let Some(token) = d.lease_token else {
            return Ok(());
        };
        let Some(transport) = self.inner.transports.get(&d.kind).cloned() else {
            return Ok(());
        };
        // One target's deliveries go one after another; one whose claim is about to run out
        // before its turn came is left for the next claim rather than sent twice.
        let margin = LEASE_MARGIN.min(self.inner.outbox.policy.lease / 2);
        if d.lease_until.is_some_and(|l| self.now() + margin > l) {
            return Ok(());
        }
        let parent = match &d.after_key {
            Some(k) => self.inner.store.delivery_by_key(k).await?,
            None => None,
        };
        let attempt = transport.deliver(&d, parent.as_ref()).await;
        let jitter: f64 = rand::random();
        outbox::settle(
            &mut d,
            attempt,
            &self.inner.outbox.policy,
            self.now(),
            jitter,
        );
        match d.state {
            outbox::DeliveryState::Failed => {
                tracing::warn!(kind = %d.kind, event = %d.event, attempts = d.attempts, error = ?d.last_error, "delivery failed for good");
            }
            outbox::DeliveryState::Pending => {
                tracing::info!(kind = %d.kind, event = %d.event, attempts = d.attempts, due_at = %d.due_at, error = ?d.last_error, "delivery will be retried");
            }
            _ => {}
        }
        if !self.inner.store.settle_delivery(&d, token).await? {
            tracing::info!(delivery = %d.id, "delivery was claimed again meanwhile; its outcome is not recorded twice");
        }
        Ok(())
    }

    /// The outbox's deliveries (newest first), for the API.
    pub async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>> {
        self.inner.store.list_deliveries(filter).await
    }

    pub async fn delivery(&self, id: DeliveryId) -> Result<Delivery> {
        self.inner.store.get_delivery(id).await
    }
}
