//! The [`Dispatch`] facade: every use-case, over `Arc<dyn …>` ports.
//!
//! Each use-case is a short sequence of store calls, each of which is atomic by itself (see
//! [`crate::ports::Store`]); between them the engine only publishes events and notifies. The
//! dispatcher and sweeper steps are safe to run in any number of processes at once: they claim
//! work with leases and every state move is guarded in the store.

mod agents;
mod callbacks;
mod customers;
mod dedup;
mod dispatcher;
mod fleet;
mod imports;
mod ingest;
mod intake;
mod issues;
mod job;
mod kill_switch;
mod outbox;
mod plans;
mod prs;
mod run_loop;
mod runs;
mod search;
mod spawn;
mod sweeper;
mod verification;

pub use agents::AGENT_POLL_MAX;
pub use callbacks::{AgentStatusReport, RunSelector};
pub use customers::{
    CUSTOMER_LIST_MAX, CustomerHealth, CustomerIssue, CustomerStats, CustomerStatsRequest,
    CustomerSummary,
};
pub use dedup::{DedupReport, DedupRequest};
pub use fleet::FleetStatus;
pub use ingest::IngestReport;
pub use intake::{ChannelIntake, ChannelIssue};
pub use issues::{ColumnRef, IssueChanges, IssueQuery};
pub use job::job_inputs;
pub use kill_switch::{KILL_SWITCH_SETTING, KillSwitch};
pub use outbox::OutboxConfig;
pub use plans::PlanReview;
pub use prs::{NAMED_MATCH_CONFIDENCE, PrLinkReport, PrMatch, PullRequestInfo};
pub use runs::ExternalRun;
pub use search::EmbedReport;
pub use spawn::{CancelOutcome, SpawnOptions, SpawnOutcome};
pub use sweeper::SweepReport;
pub use verification::{FixAttemptReport, FixStatus, PrMergeReport};

use crate::clock::{Clock, SystemClock};
use crate::config::EngineConfig;
use crate::error::Result;
use crate::issue::Workspace;
use crate::memory::MemoryEventBus;
use crate::ports::{
    DeliveryTransport, Embedder, Event, EventBus, Llm, Notification, Notifier, Runner, Store,
};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// The Dispatch engine. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Dispatch {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    runner: Arc<dyn Runner>,
    bus: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    notifier: Option<Arc<dyn Notifier>>,
    outbox: OutboxConfig,
    transports: HashMap<String, Arc<dyn DeliveryTransport>>,
    llm: Option<Arc<dyn Llm>>,
    embedder: Option<Arc<dyn Embedder>>,
    config: EngineConfig,
    workspace: Workspace,
    /// Wakes the delivery worker when a notification is stored.
    wake_outbox: Notify,
    /// Wakes the dispatcher loop when a run is queued, so nothing waits for the next tick.
    wake_dispatcher: Notify,
    /// Wakes the embedding worker when an issue owes an embedding.
    wake_embedder: Notify,
    /// Label ids of alert origins, and whether a column is closed: both immutable once known.
    label_cache: std::sync::Mutex<std::collections::HashMap<String, crate::ids::LabelId>>,
    column_categories: std::sync::Mutex<std::collections::HashMap<crate::ids::ColumnId, bool>>,
    /// The board's columns for rendering ([`Dispatch::columns_for_display`]), with when read.
    columns_shown: std::sync::Mutex<Option<(std::time::Instant, Vec<crate::issue::Column>)>>,
}

/// Builds a [`Dispatch`]: a store and a runner are required; the event bus defaults to an
/// in-process one, the clock to the system clock.
pub struct DispatchBuilder {
    store: Arc<dyn Store>,
    runner: Arc<dyn Runner>,
    bus: Option<Arc<dyn EventBus>>,
    clock: Option<Arc<dyn Clock>>,
    notifier: Option<Arc<dyn Notifier>>,
    outbox: OutboxConfig,
    transports: HashMap<String, Arc<dyn DeliveryTransport>>,
    llm: Option<Arc<dyn Llm>>,
    embedder: Option<Arc<dyn Embedder>>,
    config: EngineConfig,
}

impl DispatchBuilder {
    pub fn bus(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.bus = Some(bus);
        self
    }
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }
    /// What goes through the outbox: Slack routing, event-webhook subscriptions, retries.
    pub fn outbox(mut self, config: OutboxConfig) -> Self {
        self.outbox = config;
        self
    }
    /// The transport that sends deliveries of `kind` (`outbox::KIND_SLACK`,
    /// `outbox::KIND_WEBHOOK`). A process without one stores deliveries of that kind for a
    /// process that has one.
    pub fn transport(mut self, kind: &str, transport: Arc<dyn DeliveryTransport>) -> Self {
        self.transports.insert(kind.to_string(), transport);
        self
    }
    pub fn llm(mut self, llm: Arc<dyn Llm>) -> Self {
        self.llm = Some(llm);
        self
    }
    pub fn embedder(mut self, embedder: Arc<dyn Embedder>) -> Self {
        self.embedder = Some(embedder);
        self
    }
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Gets or creates the workspace (default columns and labels on first start).
    pub async fn build(self) -> Result<Dispatch> {
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let workspace = self
            .store
            .ensure_workspace(
                &self.config.workspace_name,
                &self.config.issue_prefix,
                clock.now(),
            )
            .await?;
        Ok(Dispatch {
            inner: Arc::new(Inner {
                store: self.store,
                runner: self.runner,
                bus: self.bus.unwrap_or_else(|| Arc::new(MemoryEventBus::new())),
                clock,
                notifier: self.notifier,
                outbox: self.outbox,
                transports: self.transports,
                wake_outbox: Notify::new(),
                llm: self.llm,
                embedder: self.embedder,
                config: self.config,
                workspace,
                wake_dispatcher: Notify::new(),
                wake_embedder: Notify::new(),
                label_cache: Default::default(),
                column_categories: Default::default(),
                columns_shown: Default::default(),
            }),
        })
    }
}

impl Dispatch {
    pub fn builder(store: Arc<dyn Store>, runner: Arc<dyn Runner>) -> DispatchBuilder {
        DispatchBuilder {
            store,
            runner,
            bus: None,
            clock: None,
            notifier: None,
            outbox: OutboxConfig::default(),
            transports: HashMap::new(),
            llm: None,
            embedder: None,
            config: EngineConfig::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }
    pub fn runner(&self) -> &Arc<dyn Runner> {
        &self.inner.runner
    }
    pub fn bus(&self) -> &Arc<dyn EventBus> {
        &self.inner.bus
    }
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }
    pub fn llm(&self) -> Option<&Arc<dyn Llm>> {
        self.inner.llm.as_ref()
    }
    pub fn embedder(&self) -> Option<&Arc<dyn Embedder>> {
        self.inner.embedder.as_ref()
    }
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }
    pub fn workspace(&self) -> &Workspace {
        &self.inner.workspace
    }
    pub fn now(&self) -> crate::Timestamp {
        self.inner.clock.now()
    }

    /// Publishes a live event; a bus failure is logged, never fails the use-case (the state is
    /// already committed and viewers resync from the store).
    async fn publish(&self, event: Event) {
        if let Err(e) = self.inner.bus.publish(event).await {
            tracing::warn!(error = %e, "event bus publish failed");
        }
    }

    /// A notification that has no outbox rows (a fix verified or failed: neither Slack nor the
    /// event webhooks carry one): tells the notifier port, if any. Notifications with rows are
    /// stored by their change's transaction (an `OutboxPlan`) and announced by
    /// [`Self::notify_stored`].
    async fn notify(&self, n: Notification) {
        self.tell_notifier(&n).await;
    }

    /// A notification whose outbox rows the change stored in its own transaction: wakes the
    /// delivery worker and tells the notifier port, if any.
    async fn notify_stored(&self, n: Notification) {
        self.inner.wake_outbox.notify_one();
        self.tell_notifier(&n).await;
    }

    async fn tell_notifier(&self, n: &Notification) {
        if let Some(notifier) = &self.inner.notifier
            && let Err(e) = notifier.notify(n).await
        {
            tracing::warn!(error = %e, "notification failed");
        }
    }
}
