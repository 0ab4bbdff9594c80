//! Notifications and outbound webhooks through the outbox ([`crate::outbox`]): a use-case
//! enqueues deliveries (rendered by the pure functions of `outbox::slack` and
//! `outbox::events`), and the delivery worker sends them through the registered transports.

use super::Dispatch;
use crate::Timestamp;
use crate::agent::{self, Agent};
use crate::error::Result;
use crate::ids::DeliveryId;
use crate::ids::{CustomerId, CustomerUserId, IssueId};
use crate::issue::{Column, Comment, Issue, IssuePatch, NewIssue};
use crate::outbox::events::{self, Subscription, WebhookEvent};
use crate::outbox::slack::{self, CustomerChannel, SlackRouting};
use crate::outbox::{self, Delivery, DeliveryFilter, NewDelivery, OutboxPlan, RetryPolicy};
use crate::ports::{Notification, RunUpdate, SpawnReservation};
use crate::run::RunPatch;
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
    /// The outbox rows of a patch of `current`, rendered inside the update's transaction from
    /// the issue it leaves ([`super::issues::patch_notifications`], and the `ISSUE_ASSIGNED`
    /// webhook of an agent the patch assigns). What rendering reads is read now; when that
    /// fails the update goes ahead without its notifications.
    pub(super) async fn patch_outbox(
        &self,
        current: &Issue,
        patch: &IssuePatch,
        moved: Option<&Move>,
    ) -> OutboxPlan {
        let agent = self.assigned_agent(current, patch).await;
        let want = Needs {
            watchers: moved.is_some(),
            cols: agent.is_some(),
            ..Needs::default()
        };
        let ctx = match self.render_context(current.into(), want).await {
            Ok(ctx) => ctx,
            Err(e) => {
                tracing::warn!(error = %e, "cannot prepare a notification");
                return OutboxPlan::default();
            }
        };
        if ctx.slack.is_none() && ctx.subscriptions.is_empty() && agent.is_none() {
            return OutboxPlan::default();
        }
        let current = current.clone();
        let moved = moved.cloned();
        OutboxPlan::new(move |updated| {
            let mut out: Vec<NewDelivery> =
                super::issues::patch_notifications(&current, updated, moved.as_ref())
                    .iter()
                    .flat_map(|n| render(n, &ctx))
                    .collect();
            if let Some(a) = &agent
                && super::issues::newly_assigned(&current, updated)
            {
                let status = status_name(&ctx.cols, updated);
                out.extend(agent::issue_assigned(a, updated, &status, ctx.now));
            }
            storable(out)
        })
    }

    /// The registered agent a patch assigns the issue to, when this engine sends agents'
    /// webhooks (it was built with a webhook transport: a server always is; an embedding
    /// application without one stores none that nobody would send). A failed lookup is
    /// logged: the assignment goes ahead without the webhook.
    async fn assigned_agent(&self, current: &Issue, patch: &IssuePatch) -> Option<Agent> {
        let Some(Some(name)) = &patch.assignee else {
            return None;
        };
        if current.assignee.as_ref() == Some(name)
            || !self.inner.transports.contains_key(outbox::KIND_WEBHOOK)
        {
            return None;
        }
        match self
            .inner
            .store
            .get_agent_by_name(self.inner.workspace.id, name)
            .await
        {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(issue = %current.identifier, agent = %name, error = %e, "cannot look up the assigned agent");
                None
            }
        }
    }

    /// The outbox rows of the notification `n` makes of the issue a change leaves, rendered
    /// inside the change's transaction; what rendering reads is read now, about `issue` (when
    /// that fails the change goes ahead without its notification).
    pub(super) async fn issue_outbox(
        &self,
        issue: &Issue,
        n: impl Fn(&Issue) -> Notification + Send + Sync + 'static,
    ) -> OutboxPlan {
        let ctx = match self.render_context(issue.into(), needs(&n(issue))).await {
            Ok(ctx) => ctx,
            Err(e) => {
                tracing::warn!(error = %e, "cannot prepare a notification");
                return OutboxPlan::default();
            }
        };
        if ctx.slack.is_none() && ctx.subscriptions.is_empty() {
            return OutboxPlan::default();
        }
        OutboxPlan::new(move |issue| storable(render(&n(issue), &ctx)))
    }

    /// The outbox rows of creating an issue, rendered in the creation's transaction from the
    /// issue it makes: `IssueCreated`, or `NewError` with the alert's `event_count` for an error
    /// issue. `thread` (a channel and a Slack `ts`) first records a thread that exists already
    /// as the issue's thread in that channel: the recorded row takes the key of the "issue
    /// created" post, which is therefore not posted again. What rendering reads is read now;
    /// when that fails the issue is created without its notifications.
    pub(super) async fn creation_outbox(
        &self,
        new: &NewIssue,
        event_count: Option<u64>,
        thread: Option<(String, String)>,
    ) -> OutboxPlan {
        let want = match event_count {
            Some(_) => Needs::default(),
            None => Needs {
                issue_channel: true,
                reporter: true,
                ..Needs::default()
            },
        };
        let Some(ctx) = self.plan_context(new.into(), want).await else {
            return OutboxPlan::default();
        };
        let thread = thread.filter(|_| ctx.slack.is_some());
        OutboxPlan::new(move |issue: &Issue| {
            let mut out = Vec::new();
            if let Some((channel, ts)) = &thread {
                match slack::recorded_thread(issue, channel, ts, ctx.now) {
                    Ok(d) => out.push(d),
                    Err(e) => {
                        tracing::warn!(issue = %issue.identifier, error = %e, "not a Slack thread")
                    }
                }
            }
            let n = match event_count {
                Some(event_count) => Notification::NewError {
                    issue: issue.clone(),
                    event_count,
                },
                None => Notification::IssueCreated {
                    issue: issue.clone(),
                },
            };
            out.extend(render(&n, &ctx));
            storable(out)
        })
    }

    /// The outbox rows of a comment on `issue`, rendered in the comment's transaction.
    pub(super) async fn comment_outbox(&self, issue: &Issue) -> OutboxPlan<Comment> {
        let want = Needs {
            issue_channel: true,
            ..Needs::default()
        };
        let Some(ctx) = self.plan_context(issue.into(), want).await else {
            return OutboxPlan::default();
        };
        let issue = issue.clone();
        OutboxPlan::new(move |comment: &Comment| {
            let n = Notification::CommentAdded {
                issue: issue.clone(),
                comment: comment.clone(),
            };
            storable(render(&n, &ctx))
        })
    }

    /// The outbox rows of a spawn reservation ("agent started" when it queued a run), rendered
    /// in the reservation's transaction.
    pub(super) async fn spawn_outbox(&self, issue: &Issue) -> OutboxPlan<SpawnReservation> {
        let Some(ctx) = self.plan_context(issue.into(), Needs::default()).await else {
            return OutboxPlan::default();
        };
        OutboxPlan::new(move |r: &SpawnReservation| {
            let rows = spawn_notifications(r)
                .iter()
                .flat_map(|n| render(n, &ctx))
                .collect();
            storable(rows)
        })
    }

    /// The outbox rows of a run update of `before`'s run ([`run_notifications`]: the budget
    /// warning, "agent finished"), rendered in the update's transaction. A linked pull
    /// request's URL is read only for a patch that may end the run.
    pub(super) async fn run_outbox(
        &self,
        before: &Issue,
        patch: &RunPatch,
    ) -> OutboxPlan<RunUpdate> {
        let want = Needs {
            pr_url: patch.status.is_some_and(|s| s.is_terminal()),
            ..Needs::default()
        };
        let Some(ctx) = self.plan_context(before.into(), want).await else {
            return OutboxPlan::default();
        };
        let cap = self.slack_budget_cap();
        OutboxPlan::new(move |u: &RunUpdate| {
            let rows = run_notifications(u, cap)
                .iter()
                .flat_map(|n| render(n, &ctx))
                .collect();
            storable(rows)
        })
    }

    /// The render context of a plan, or `None` when nothing would be rendered (neither Slack
    /// nor webhooks are on) or what rendering reads cannot be read (logged: the change goes
    /// ahead without its notifications).
    async fn plan_context(&self, about: About, want: Needs) -> Option<RenderContext> {
        if self.inner.outbox.slack.is_none() && self.inner.outbox.subscriptions.is_empty() {
            return None;
        }
        match self.render_context(about, want).await {
            Ok(ctx) => Some(ctx),
            Err(e) => {
                tracing::warn!(error = %e, "cannot prepare a notification");
                None
            }
        }
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
    async fn watcher_channels(&self, issue: IssueId) -> Result<Vec<CustomerChannel>> {
        let mut out: Vec<CustomerChannel> = Vec::new();
        for id in self.inner.store.list_watchers(issue).await? {
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

    async fn issue_channel(&self, customer: Option<CustomerId>) -> Result<Option<CustomerChannel>> {
        let Some(id) = customer else {
            return Ok(None);
        };
        let c = self.inner.store.get_customer(id).await?;
        Ok(self.customer_channel(&c))
    }

    /// Reads what rendering notifications about `issue` needs (nothing when neither Slack nor
    /// webhooks are on; Slack's channels only when Slack is on).
    async fn render_context(&self, about: About, needs: Needs) -> Result<RenderContext> {
        let mut ctx = RenderContext {
            slack: self.inner.outbox.slack.clone(),
            subscriptions: self.inner.outbox.subscriptions.clone(),
            cols: Vec::new(),
            issue_channel: None,
            watcher_channels: Vec::new(),
            reporter: None,
            pr_url: None,
            now: self.now(),
        };
        if ctx.slack.is_none() && ctx.subscriptions.is_empty() && !needs.cols {
            return Ok(ctx);
        }
        ctx.cols = self.columns_for_display().await?;
        if ctx.slack.is_none() {
            return Ok(ctx);
        }
        if needs.issue_channel {
            ctx.issue_channel = self.issue_channel(about.customer).await?;
        }
        if needs.reporter
            && ctx.issue_channel.is_some()
            && let Some(r) = about.reporter
        {
            ctx.reporter = self
                .inner
                .store
                .get_customer_user(r)
                .await
                .ok()
                .and_then(|u| u.display_name);
        }
        if needs.watchers
            && let Some(id) = about.issue
        {
            ctx.watcher_channels = self.watcher_channels(id).await?;
        }
        if needs.pr_url
            && let Some(id) = about.issue
        {
            let prs = self.inner.store.list_pr_links(id).await?;
            ctx.pr_url = prs.iter().find_map(|p| p.url.clone());
        }
        Ok(ctx)
    }

    /// The per-run budget Slack warns at 90 % of, when Slack is on.
    pub(super) fn slack_budget_cap(&self) -> Option<f64> {
        self.inner
            .outbox
            .slack
            .as_ref()
            .map(|s| s.max_cost_per_run_usd)
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

/// A patch's move to another column: the names it is announced with.
#[derive(Debug, Clone)]
pub(crate) struct Move {
    pub from: String,
    pub to: Column,
}

/// What rendering a notification reads besides the notification, read before the rendering so
/// that the rendering is pure (and can run inside a change's transaction).
struct RenderContext {
    slack: Option<SlackRouting>,
    subscriptions: Vec<Subscription>,
    cols: Vec<Column>,
    /// The channel of the issue's customer.
    issue_channel: Option<CustomerChannel>,
    /// The channels of the customers watching the issue.
    watcher_channels: Vec<CustomerChannel>,
    /// The reporter's display name.
    reporter: Option<String>,
    /// A linked pull request's URL.
    pr_url: Option<String>,
    now: Timestamp,
}

/// What the reads of [`RenderContext`] are about: an issue, or one about to be created.
#[derive(Clone, Copy)]
struct About {
    issue: Option<IssueId>,
    customer: Option<CustomerId>,
    reporter: Option<CustomerUserId>,
}

impl From<&Issue> for About {
    fn from(i: &Issue) -> Self {
        About {
            issue: Some(i.id),
            customer: i.customer_id,
            reporter: i.reporter_id,
        }
    }
}

impl From<&NewIssue> for About {
    fn from(i: &NewIssue) -> Self {
        About {
            issue: None,
            customer: i.customer_id,
            reporter: i.reporter_id,
        }
    }
}

/// Which of the optional reads of [`RenderContext`] a rendering needs.
#[derive(Debug, Clone, Copy, Default)]
struct Needs {
    /// The columns even when neither Slack nor webhooks are on.
    cols: bool,
    issue_channel: bool,
    watchers: bool,
    reporter: bool,
    pr_url: bool,
}

fn needs(n: &Notification) -> Needs {
    match n {
        Notification::IssueCreated { .. } => Needs {
            issue_channel: true,
            reporter: true,
            ..Needs::default()
        },
        Notification::CommentAdded { .. } => Needs {
            issue_channel: true,
            ..Needs::default()
        },
        Notification::StatusChanged { .. } => Needs {
            watchers: true,
            ..Needs::default()
        },
        Notification::AgentCompleted { .. } => Needs {
            pr_url: true,
            ..Needs::default()
        },
        _ => Needs::default(),
    }
}

/// The rendered rows that can be stored; one that cannot is logged and dropped, so that a
/// notification never fails the change it reports (a plan's row that does not validate would
/// roll the change back).
fn storable(rows: Vec<NewDelivery>) -> Vec<NewDelivery> {
    rows.into_iter()
        .filter(|d| match d.validate() {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(kind = %d.kind, event = %d.event, error = %e, "a notification that cannot be stored is dropped");
                false
            }
        })
        .collect()
}

/// The issue a notification is about.
fn subject(n: &Notification) -> &Issue {
    match n {
        Notification::NewError { issue, .. }
        | Notification::IssueCreated { issue }
        | Notification::IssueUpdated { issue, .. }
        | Notification::IssueDeleted { issue }
        | Notification::IssueAssigned { issue }
        | Notification::AgentStarted { issue, .. }
        | Notification::AgentCompleted { issue, .. }
        | Notification::BudgetWarning { issue, .. }
        | Notification::StatusChanged { issue, .. }
        | Notification::CommentAdded { issue, .. }
        | Notification::FixFailed { issue, .. }
        | Notification::FixVerified { issue, .. } => issue,
    }
}

fn status_name(cols: &[Column], issue: &Issue) -> String {
    cols.iter()
        .find(|c| c.id == issue.column_id)
        .map(|c| c.name.clone())
        .unwrap_or_default()
}

/// The event webhook a notification sends, when it sends one.
struct Webhook<'a> {
    event: WebhookEvent,
    status: String,
    comment: Option<&'a Comment>,
    metadata: Option<Value>,
    /// Unique per change, so a retried use-case does not send twice.
    key: String,
}

fn webhook_of<'a>(n: &'a Notification, cols: &[Column]) -> Option<Webhook<'a>> {
    let hook = |event, issue: &Issue, key: String| Webhook {
        event,
        status: status_name(cols, issue),
        comment: None,
        metadata: None,
        key,
    };
    let version = |issue: &Issue| format!("{}:v{}", issue.id, issue.version);
    Some(match n {
        Notification::NewError { issue, .. } | Notification::IssueCreated { issue } => {
            hook(WebhookEvent::IssueCreated, issue, issue.id.to_string())
        }
        Notification::StatusChanged { issue, from, to } => Webhook {
            status: to.clone(),
            metadata: Some(json!({ "from": from, "to": to })),
            ..hook(WebhookEvent::StatusChanged, issue, version(issue))
        },
        Notification::IssueUpdated { issue, changes } => Webhook {
            metadata: Some(json!({ "changes": changes })),
            ..hook(WebhookEvent::IssueUpdated, issue, version(issue))
        },
        Notification::IssueDeleted { issue } => {
            hook(WebhookEvent::IssueDeleted, issue, issue.id.to_string())
        }
        Notification::IssueAssigned { issue } => {
            hook(WebhookEvent::IssueAssigned, issue, version(issue))
        }
        Notification::CommentAdded { issue, comment } => Webhook {
            comment: Some(comment),
            ..hook(WebhookEvent::CommentCreated, issue, comment.id.to_string())
        },
        Notification::AgentStarted { .. }
        | Notification::AgentCompleted { .. }
        | Notification::BudgetWarning { .. }
        | Notification::FixFailed { .. }
        | Notification::FixVerified { .. } => return None,
    })
}

/// A notification's deliveries: its Slack messages, then its event webhooks (pure).
fn render(n: &Notification, ctx: &RenderContext) -> Vec<NewDelivery> {
    let now = ctx.now;
    let mut out = Vec::new();
    if let Some(r) = &ctx.slack {
        match n {
            Notification::NewError { issue, event_count } => {
                out.extend(slack::new_error(r, issue, *event_count, now));
            }
            Notification::IssueCreated { issue } => {
                if let Some(ch) = &ctx.issue_channel {
                    let status = status_name(&ctx.cols, issue);
                    let reporter = ctx.reporter.as_deref();
                    out.push(slack::issue_created(ch, issue, &status, reporter, now));
                }
            }
            Notification::AgentStarted { issue, run } => {
                out.extend(slack::agent_started(r, issue, run, now));
            }
            Notification::AgentCompleted { issue, run } => {
                let pr = ctx.pr_url.as_deref();
                out.extend(slack::agent_finished(r, issue, run, pr, now));
            }
            Notification::BudgetWarning { issue, run } => {
                out.extend(slack::budget_warning(r, issue, run, now));
            }
            Notification::StatusChanged { issue, from, to } => {
                let change = format!("v{}", issue.version);
                for ch in &ctx.watcher_channels {
                    out.push(slack::status_changed(ch, issue, from, to, &change, now));
                }
            }
            Notification::CommentAdded { issue, comment } => {
                if let Some(ch) = &ctx.issue_channel {
                    out.push(slack::comment_added(ch, issue, comment, now));
                }
            }
            Notification::IssueUpdated { .. }
            | Notification::IssueDeleted { .. }
            | Notification::IssueAssigned { .. }
            | Notification::FixFailed { .. }
            | Notification::FixVerified { .. } => {}
        }
    }
    let subs = &ctx.subscriptions;
    if let Some(w) = webhook_of(n, &ctx.cols)
        && subs.iter().any(|s| s.events.contains(&w.event))
    {
        let issue = subject(n);
        let body = events::body(w.event, issue, &w.status, w.comment, w.metadata, now);
        out.extend(events::fan_out(subs, w.event, &body, &w.key, issue, now));
    }
    out
}

/// What a spawn reservation tells: "agent started" when it queued a run.
pub(super) fn spawn_notifications(r: &SpawnReservation) -> Vec<Notification> {
    r.run
        .iter()
        .map(|run| Notification::AgentStarted {
            issue: r.issue.clone(),
            run: run.clone(),
        })
        .collect()
}

/// What a run update tells: a running agent's cost crossing 90 % of the per-run cap (`cap`,
/// when Slack is on), and the run's end.
pub(super) fn run_notifications(u: &RunUpdate, cap: Option<f64>) -> Vec<Notification> {
    let mut out = Vec::new();
    if !u.ended
        && let Some(cap) = cap
        && slack::budget_crossed(u.cost_before_usd, u.run.cost_usd, cap)
    {
        out.push(Notification::BudgetWarning {
            issue: u.issue.clone(),
            run: u.run.clone(),
        });
    }
    if u.ended {
        out.push(Notification::AgentCompleted {
            issue: u.issue.clone(),
            run: u.run.clone(),
        });
    }
    out
}
