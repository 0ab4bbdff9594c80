//! The `Store`, split into parts by aggregate. Every implementation (memory, SQLite, PostgreSQL)
//! passes the same conformance suite (`testkit::conformance`).
//!
//! Rules every implementation keeps (DESIGN §3):
//! - `ingest_error` and `reserve_spawn` are each ONE atomic decision: no two concurrent calls can
//!   create two issues for one key, or together exceed a limit of the policy.
//! - Issue identifiers are allocated atomically, unique and gapless per workspace.
//! - `claim_due_runs` hands each due run to exactly one caller until its lease expires.
//! - Status moves are guarded (`RunStatus::can_move_to`, expected fix-attempt status), so a
//!   repeated or late call changes nothing and reports so.
//! - Pure core functions (`gate::decide`, `run::spawn_effects`, `run::run_end_effects`,
//!   `IssuePatch::apply_to`) are called inside the transaction, so all stores decide alike.

use crate::Timestamp;
use crate::agent::{Agent, AgentEvent, NewAgentEvent};
use crate::customer::{Customer, CustomerPatch, CustomerUser, HealthInputs, NewCustomerUser};
use crate::embedding::OwedEmbedding;
use crate::error::Result;
use crate::gate::{Decision, SpawnPolicy};
use crate::ids::{
    ColumnId, CustomerId, CustomerUserId, DeferredSpawnId, IssueId, IssueRef, LinkId, PrLinkId,
    ProposalId, RunId, SessionId, WorkspaceId,
};
use crate::import::{ImportPlan, ImportReport};
use crate::issue::{
    Actor, Column, Comment, HistoryEntry, Issue, IssueFilter, IssuePatch, Label, NewColumn,
    NewComment, NewHistory, NewIssue, NewLabel, Workspace,
};
use crate::orchestrator::{Proposal, ProposalDecision, ProposalOutcome, Session};
use crate::ports::{LlmMessage, Usage};
use crate::pr::{PrLink, PrLinkUpsert};
use crate::run::{Activity, NewActivity, Run, RunPatch, TerminalChunk, WorkflowKind};
use crate::search::SearchHit;
use crate::verify::{FixAttempt, VerificationStatus};
use async_trait::async_trait;
use chrono::Duration;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

#[async_trait]
pub trait WorkspaceStore: Send + Sync {
    /// Gets the workspace with this prefix, creating it with the default columns and labels on
    /// first use. Safe to call concurrently: exactly one workspace results.
    async fn ensure_workspace(&self, name: &str, prefix: &str, now: Timestamp)
    -> Result<Workspace>;
    async fn get_workspace(&self, id: WorkspaceId) -> Result<Workspace>;
    /// Columns ordered by position.
    async fn list_columns(&self, ws: WorkspaceId) -> Result<Vec<Column>>;
    /// `position: None` appends; an explicit position shifts later columns down.
    async fn add_column(&self, ws: WorkspaceId, column: NewColumn) -> Result<Column>;
    /// Positions become the index in `order`, which must name every column exactly once.
    async fn reorder_columns(&self, ws: WorkspaceId, order: &[ColumnId]) -> Result<Vec<Column>>;
    /// Labels ordered by name.
    async fn list_labels(&self, ws: WorkspaceId) -> Result<Vec<Label>>;
    /// `Conflict` when a label of that name (case-insensitive) exists.
    async fn create_label(&self, ws: WorkspaceId, label: NewLabel) -> Result<Label>;
    /// Gets the label of that name (case-insensitive) or creates it.
    async fn ensure_label(&self, ws: WorkspaceId, label: NewLabel) -> Result<Label>;
}

/// An update of one issue with the history that describes it, applied atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct IssueUpdate {
    pub patch: IssuePatch,
    pub history: Vec<NewHistory>,
    /// When set and the issue's version differs: `Conflict`, nothing written.
    pub expected_version: Option<i64>,
    pub now: Timestamp,
    /// The notifications of the change, stored in its transaction (none by default).
    pub outbox: crate::outbox::OutboxPlan,
}

#[async_trait]
pub trait IssueStore: Send + Sync {
    /// Allocates the next identifier of the workspace, inserts the issue (first open column when
    /// none is given) and a `created` history entry.
    /// The `outbox` rows, rendered from the created issue, are stored in the same transaction.
    async fn create_issue(
        &self,
        ws: WorkspaceId,
        issue: NewIssue,
        actor: &Actor,
        now: Timestamp,
        outbox: &crate::outbox::OutboxPlan,
    ) -> Result<Issue>;
    async fn get_issue(&self, ws: WorkspaceId, issue: &IssueRef) -> Result<Issue>;
    /// Newest first (by number).
    async fn list_issues(&self, ws: WorkspaceId, filter: &IssueFilter) -> Result<Vec<Issue>>;
    /// Applies the patch, bumps `version`, sets `updated_at`, appends the history.
    async fn update_issue(&self, id: IssueId, update: IssueUpdate) -> Result<Issue>;
    /// Deletes the issue and everything that belongs to it; returns what was deleted.
    /// `Conflict` (nothing deleted) while the issue has an active run; today's runs leave their
    /// spawn counts and cost behind for the daily limits (`run::plan_issue_deletion`). The
    /// `outbox` rows, rendered from the issue as it was, are stored in the same transaction.
    async fn delete_issue(
        &self,
        id: IssueId,
        now: Timestamp,
        outbox: &crate::outbox::OutboxPlan,
    ) -> Result<Issue>;
    /// The `outbox` rows, rendered from the new comment, are stored in the same transaction.
    async fn add_comment(
        &self,
        id: IssueId,
        comment: NewComment,
        actor: &Actor,
        now: Timestamp,
        outbox: &crate::outbox::OutboxPlan<Comment>,
    ) -> Result<Comment>;
    /// Oldest first.
    async fn list_comments(&self, id: IssueId) -> Result<Vec<Comment>>;
    /// Newest first, at most `limit`.
    async fn list_history(&self, id: IssueId, limit: usize) -> Result<Vec<HistoryEntry>>;
    /// `true` when the customer was not watching yet.
    async fn add_watcher(&self, id: IssueId, customer: CustomerId, now: Timestamp) -> Result<bool>;
    async fn remove_watcher(&self, id: IssueId, customer: CustomerId) -> Result<bool>;
    async fn list_watchers(&self, id: IssueId) -> Result<Vec<CustomerId>>;
}

/// The link between an issue and an error source's key (fingerprint or external id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorLink {
    pub id: LinkId,
    pub issue_id: IssueId,
    /// `loki`, `sentry`, ...
    pub source: String,
    /// The fingerprint, or the source's own id.
    pub external_key: String,
    pub fingerprint: String,
    pub url: Option<String>,
    pub metadata: serde_json::Value,
    pub event_count: u64,
    pub first_seen_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub cooldown_until: Option<Timestamp>,
}

/// Everything ingest needs, computed before the store call (normalisation, issue text).
#[derive(Debug, Clone, PartialEq)]
pub struct IngestDraft {
    pub source: String,
    pub external_key: String,
    pub fingerprint: String,
    pub url: Option<String>,
    pub metadata: serde_json::Value,
    pub event_count: u64,
    pub seen_at: Timestamp,
    /// The issue to create if the key is unseen.
    pub new_issue: NewIssue,
    pub actor: Actor,
    /// The notifications of the issue, stored with it when this draft creates it.
    pub outbox: crate::outbox::OutboxPlan,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IngestOutcome {
    pub issue: Issue,
    pub link: ErrorLink,
    /// `true` when this call created the issue.
    pub created: bool,
    /// For a known key, the issue's newest fix attempt (what `list_fix_attempts` returns
    /// first), read by the same statement so that the recurrence check costs no second read.
    /// `None` for a new issue.
    pub latest_fix: Option<FixAttempt>,
}

#[async_trait]
pub trait ErrorLinkStore: Send + Sync {
    /// One atomic decision: for an unseen (source, key) create the issue and its link; for a
    /// known one add `event_count` and move `last_seen_at` forward. Concurrent calls for one key
    /// create exactly one issue and sum every count.
    async fn ingest_error(&self, ws: WorkspaceId, draft: IngestDraft) -> Result<IngestOutcome>;
    async fn get_link(&self, source: &str, external_key: &str) -> Result<Option<ErrorLink>>;
    /// Oldest first.
    async fn links_for_issue(&self, issue: IssueId) -> Result<Vec<ErrorLink>>;
    /// Sets the cooldown on every error link of the issue.
    async fn set_cooldown(&self, issue: IssueId, until: Timestamp) -> Result<()>;
    /// The link owes the follow-up of an ingest that committed (recurrence check, regression,
    /// spawn) but could not finish it; `owed_at` moves forward only.
    async fn owe_follow_up(&self, link: LinkId, owed_at: Timestamp) -> Result<()>;
    /// Links owing a follow-up since `upto` or earlier, with since when, oldest debt first.
    async fn owed_follow_ups(
        &self,
        upto: Timestamp,
        limit: usize,
    ) -> Result<Vec<(ErrorLink, Timestamp)>>;
    /// Clears the link's debt unless a newer one (owed after `upto`) came meanwhile.
    async fn settle_follow_up(&self, link: LinkId, upto: Timestamp) -> Result<()>;
}

/// A request to start an agent on an issue.
#[derive(Debug, Clone, PartialEq)]
pub struct SpawnRequest {
    pub issue_id: IssueId,
    pub kind: WorkflowKind,
    pub force: bool,
    /// Triggered by an error alert: the store reads the issue's error link for cooldown, event
    /// count and first sighting.
    pub from_alert: bool,
    pub additional_context: Option<String>,
    pub actor: Actor,
    pub policy: SpawnPolicy,
    /// Set when the sweeper retries a deferred spawn: the store settles that record.
    pub deferred_id: Option<DeferredSpawnId>,
    /// The notifications of the reservation ("agent started"), stored in its transaction.
    pub outbox: crate::outbox::OutboxPlan<SpawnReservation>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpawnReservation {
    pub decision: Decision,
    /// The queued run, when allowed.
    pub run: Option<Run>,
    /// The issue after the spawn was recorded (or as it was, when not allowed).
    pub issue: Issue,
}

/// A spawn the gates deferred, persisted so that no restart forgets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeferredSpawn {
    pub id: DeferredSpawnId,
    pub issue_id: IssueId,
    pub kind: WorkflowKind,
    pub from_alert: bool,
    pub force: bool,
    pub additional_context: Option<String>,
    pub actor: Actor,
    pub due_at: Timestamp,
    pub reason: String,
    pub attempts: u32,
    pub lease_until: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// A run update and what it did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunUpdate {
    pub run: Run,
    pub issue: Issue,
    /// The status changed by this call.
    pub status_changed: bool,
    /// This call moved the run into a terminal status (exactly one call ever sees `true`).
    pub ended: bool,
    /// The run's cost before this call (what a budget line is judged against).
    pub cost_before_usd: f64,
}

/// Fleet counters (today is the UTC day of `now`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpawnStats {
    pub active_error: u32,
    pub active_prd: u32,
    pub spawned_today_error: u32,
    pub spawned_today_prd: u32,
    pub cost_today_usd: f64,
    pub queued: u32,
    pub running: u32,
    pub deferred: u32,
    pub outcomes_today: Vec<(String, u32)>,
}

#[async_trait]
pub trait RunStore: Send + Sync {
    /// One atomic decision: refuse if the issue has an active run; read the counters; run
    /// `gate::decide`; when allowed insert the queued run and record the spawn on the issue
    /// (`run::spawn_effects`); when deferred upsert the deferred spawn (one per issue and kind);
    /// settle `deferred_id` otherwise.
    async fn reserve_spawn(&self, req: &SpawnRequest, now: Timestamp) -> Result<SpawnReservation>;
    async fn get_run(&self, id: RunId) -> Result<Run>;
    /// Newest first.
    async fn list_runs(&self, issue: IssueId) -> Result<Vec<Run>>;
    async fn find_run_by_external_id(&self, external_id: &str) -> Result<Option<Run>>;
    /// Applies the patch (guarded status moves). When the run becomes terminal, the issue's
    /// spawn state follows (`run::run_end_effects`) in the same transaction; the issue's cost and
    /// turn totals are recomputed from its runs whenever they change.
    async fn update_run(
        &self,
        id: RunId,
        patch: &RunPatch,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<RunUpdate>;
    /// Hands out due work: queued runs whose `not_before` has come, and dispatching runs whose
    /// lease expired (a process died mid-dispatch). Each becomes `dispatching` with a lease
    /// until `now + lease`; concurrent callers never get the same run.
    async fn claim_due_runs(
        &self,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Run>>;
    /// Running runs with no sign of life since `cutoff` (by [`Run::alive_at`]), oldest first.
    async fn stale_runs(&self, cutoff: Timestamp, limit: usize) -> Result<Vec<Run>>;
    /// Appends a chunk; `seq: Some(n)` makes a retried post idempotent (an existing `n` is
    /// returned unchanged). Sequence numbers start at 1 and are gapless per run.
    async fn append_terminal(
        &self,
        run: RunId,
        content: &str,
        seq: Option<u64>,
        at: Timestamp,
    ) -> Result<TerminalChunk>;
    /// Chunks with `seq > after`, in order, at most `limit`, and within
    /// [`crate::run::PAGE_MAX_BYTES`] of content past the first ([`crate::run::PageBudget`]).
    async fn read_terminal(
        &self,
        run: RunId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<TerminalChunk>>;
    async fn add_activity(
        &self,
        issue: IssueId,
        activity: NewActivity,
        at: Timestamp,
    ) -> Result<Activity>;
    /// Newest first, at most `limit`, older than `before` when given (paging).
    async fn list_activities(
        &self,
        issue: IssueId,
        before: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<Activity>>;
    /// Deferred spawns due at `now`, leased to the caller until `now + lease`.
    async fn claim_due_deferred(
        &self,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<DeferredSpawn>>;
    async fn list_deferred(&self, issue: IssueId) -> Result<Vec<DeferredSpawn>>;
    async fn spawn_stats(&self, now: Timestamp) -> Result<SpawnStats>;
    /// Records a run started outside Dispatch (`POST /api/issues/{id}/runs`): `run` arrives
    /// `running`. One atomic decision: a run of this issue with the same `external_id` is
    /// returned as it is (`false`, a retried post); `Conflict` when the issue has another active
    /// run; otherwise the run is inserted and becomes the issue's current run
    /// (`run::spawn_effects`, with the spawn status `running`). Gates are not consulted: the run
    /// already exists, it only counts from now on.
    async fn record_external_run(
        &self,
        run: &Run,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(Run, Issue, bool)>;
    /// Deletes activities and terminal chunks older than `before`; returns how many rows went.
    async fn prune(&self, before: Timestamp) -> Result<u64>;
}

#[async_trait]
pub trait FixStore: Send + Sync {
    /// Inserts the attempt; one per (issue, PR number): a repeat returns the existing one.
    async fn create_fix_attempt(&self, attempt: &FixAttempt) -> Result<(FixAttempt, bool)>;
    /// Newest first.
    async fn list_fix_attempts(&self, issue: IssueId) -> Result<Vec<FixAttempt>>;
    /// Replaces the attempt if its stored status is still `expected`; `false` otherwise.
    async fn update_fix_attempt(
        &self,
        attempt: &FixAttempt,
        expected: VerificationStatus,
    ) -> Result<bool>;
    /// An attempt's outcome and its effect on the issue, in one transaction (a crash can leave
    /// neither half alone): when the attempt's stored status is still `expected`, `update` is
    /// applied to its issue (version check included), `comment` added to it and the attempt
    /// replaced. `None`, nothing written, when the status moved on (another process settled
    /// it); `Conflict`, nothing written, when the issue changed since it was read.
    async fn settle_fix_attempt(
        &self,
        attempt: &FixAttempt,
        expected: VerificationStatus,
        update: IssueUpdate,
        comment: NewComment,
        actor: &Actor,
    ) -> Result<Option<(Issue, Comment)>>;
    /// Attempts in `status`, oldest first.
    async fn fix_attempts_in_status(
        &self,
        status: VerificationStatus,
        limit: usize,
    ) -> Result<Vec<FixAttempt>>;
    /// Monitoring attempts whose deadline has come.
    async fn due_verifications(&self, now: Timestamp, limit: usize) -> Result<Vec<FixAttempt>>;
}

#[async_trait]
pub trait CustomerStore: Send + Sync {
    /// `Conflict` when the slug is taken in the workspace.
    async fn create_customer(&self, customer: &Customer) -> Result<Customer>;
    async fn get_customer(&self, id: CustomerId) -> Result<Customer>;
    async fn get_customer_by_slug(&self, ws: WorkspaceId, slug: &str) -> Result<Customer>;
    async fn get_customer_by_token(&self, token: &str) -> Result<Option<Customer>>;
    /// Name order.
    async fn list_customers(&self, ws: WorkspaceId) -> Result<Vec<Customer>>;
    async fn update_customer(
        &self,
        id: CustomerId,
        patch: &CustomerPatch,
        now: Timestamp,
    ) -> Result<Customer>;
    async fn set_portal_token(
        &self,
        id: CustomerId,
        token: &str,
        now: Timestamp,
    ) -> Result<Customer>;
    /// Removes the customer and its watches; its issues keep existing without a customer.
    async fn delete_customer(&self, id: CustomerId) -> Result<()>;
    /// The customer's issues (by `customer_id`) in the shape the health metrics need.
    async fn health_inputs(&self, id: CustomerId) -> Result<HealthInputs>;
    /// Gets or creates the customer's person with that Slack user id and records what this
    /// report tells of them ([`NewCustomerUser::merge_into`]). `NotFound` for an unknown customer.
    async fn upsert_customer_user(
        &self,
        customer: CustomerId,
        user: &NewCustomerUser,
        now: Timestamp,
    ) -> Result<CustomerUser>;
    async fn get_customer_user(&self, id: CustomerUserId) -> Result<CustomerUser>;
}

/// Search over issues. Lexical search is always there; embeddings are optional.
#[async_trait]
pub trait SearchStore: Send + Sync {
    /// Lexical search over title, description and comments, best first. Matches nothing for a
    /// query without words.
    async fn search_issues(
        &self,
        ws: WorkspaceId,
        query: &str,
        limit: usize,
    ) -> Result<Vec<SearchHit>>;
    /// Issues whose text is like this one's, best first, without the issue itself.
    async fn similar_issues(&self, issue: IssueId, limit: usize) -> Result<Vec<SearchHit>>;
    /// Stores (replaces) the issue's embedding for `model`.
    async fn set_embedding(&self, issue: IssueId, model: &str, vector: &[f32]) -> Result<()>;
    /// Issues whose embedding (same model) is nearest by cosine similarity, best first.
    async fn nearest_issues(
        &self,
        ws: WorkspaceId,
        model: &str,
        vector: &[f32],
        exclude: Option<IssueId>,
        limit: usize,
    ) -> Result<Vec<SearchHit>>;
}

/// Owed embeddings (see [`crate::embedding`]): every issue created, and every change of its
/// title or description, owes one, marked by the store in the same transaction as the write.
#[async_trait]
pub trait EmbeddingStore: Send + Sync {
    /// Claims up to `limit` owed embeddings due at `now` (any workspace), the longest due first,
    /// and leases them until `now + lease`: a concurrent claim (another process) skips them.
    async fn claim_owed_embeddings(
        &self,
        now: Timestamp,
        lease: chrono::Duration,
        limit: usize,
    ) -> Result<Vec<OwedEmbedding>>;
    /// Stores the issue's vector for `model` and settles the claim of `generation`: `true` when
    /// the issue owes nothing more; `false` when it was edited since the claim (the vector is
    /// stored, the issue stays owed and due). `NotFound` for a deleted issue; nothing is owed
    /// for it any more.
    async fn settle_embedding(
        &self,
        issue: IssueId,
        generation: i64,
        model: &str,
        vector: &[f32],
    ) -> Result<bool>;
    /// A failed attempt at the claim of `generation`: owed again from `retry_at`, one more
    /// attempt counted. Nothing happens when the issue was edited since (it is due already) or
    /// is gone.
    async fn defer_embedding(
        &self,
        issue: IssueId,
        generation: i64,
        retry_at: Timestamp,
    ) -> Result<()>;
    /// Marks every issue without a vector of `model` with `dimensions` numbers as owed (after
    /// the model or size changed, or for issues from before embeddings were configured);
    /// returns how many new marks. Issues owed already keep their mark.
    async fn owe_embeddings_not_of(&self, model: &str, dimensions: usize) -> Result<u64>;
    /// Stored vectors of `model` of these issues (those that have one).
    async fn embeddings_of(
        &self,
        issues: &[IssueId],
        model: &str,
    ) -> Result<HashMap<IssueId, Vec<f32>>>;
    /// How many issues owe an embedding (due or not).
    async fn owed_embedding_count(&self) -> Result<u64>;
}

/// What an upsert of a PR link did.
#[derive(Debug, Clone, PartialEq)]
pub struct PrLinkUpsertOutcome {
    pub link: PrLink,
    /// This call created the link.
    pub created: bool,
    /// This call changed the link's status.
    pub status_changed: bool,
}

#[async_trait]
pub trait PrLinkStore: Send + Sync {
    /// One atomic decision per (issue, PR number): inserts the link or updates it
    /// ([`PrLinkUpsert::apply`]), writing [`crate::pr::pr_link_history`] in the same transaction.
    /// Concurrent upserts of one pair leave exactly one row and one `pr_linked` entry.
    async fn upsert_pr_link(
        &self,
        upsert: &PrLinkUpsert,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<PrLinkUpsertOutcome>;
    /// The issue's links, newest first.
    async fn list_pr_links(&self, issue: IssueId) -> Result<Vec<PrLink>>;
    /// Every link of a PR number (any issue), oldest first.
    async fn pr_links_by_number(&self, pr_number: i64) -> Result<Vec<PrLink>>;
    /// Removes the issue's link `id` with a `pr_unlinked` history entry; `false` when the issue
    /// has no such link (nothing written).
    async fn delete_pr_link(
        &self,
        issue: IssueId,
        id: PrLinkId,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<bool>;
}

#[async_trait]
pub trait AgentStore: Send + Sync {
    /// `Conflict` when the workspace has an agent of that name (names compare case-insensitively).
    async fn create_agent(&self, agent: &Agent) -> Result<Agent>;
    /// By name, case-insensitive.
    async fn get_agent_by_name(&self, ws: WorkspaceId, name: &str) -> Result<Option<Agent>>;
    /// Name order; inactive agents only with `include_inactive`.
    async fn list_agents(&self, ws: WorkspaceId, include_inactive: bool) -> Result<Vec<Agent>>;
    /// Sets the webhook `(url, secret)`, or clears both with `None`; `NotFound` for an unknown
    /// name.
    async fn set_agent_webhook(
        &self,
        ws: WorkspaceId,
        name: &str,
        webhook: Option<(String, String)>,
        now: Timestamp,
    ) -> Result<Agent>;
    /// Queues an event for the named agent (`NotFound` for an unknown name) and drops the
    /// agent's oldest events beyond `cap`; returns the event's sequence number.
    async fn push_agent_event(
        &self,
        ws: WorkspaceId,
        name: &str,
        event: &NewAgentEvent,
        cap: usize,
        now: Timestamp,
    ) -> Result<i64>;
    /// Takes (removes and returns) the agent's oldest `limit` events, oldest first. Each event
    /// is handed out once, also to concurrent callers. An unknown name has no events.
    async fn take_agent_events(
        &self,
        ws: WorkspaceId,
        name: &str,
        limit: usize,
    ) -> Result<Vec<AgentEvent>>;
}

#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Records a webhook delivery id; `true` the first time, `false` for a redelivery.
    async fn record_delivery(
        &self,
        source: &str,
        delivery_id: &str,
        now: Timestamp,
    ) -> Result<bool>;
    /// Forgets a recorded delivery id, so that a redelivery acts again (its first effect
    /// failed); `true` when it was recorded.
    async fn forget_delivery(&self, source: &str, delivery_id: &str) -> Result<bool>;
    /// Forgets delivery ids received before `before` (senders redeliver within days, not
    /// months); how many.
    async fn prune_deliveries(&self, before: Timestamp) -> Result<u64>;
}

/// Operational settings shared by every process on the store (the kill switch), so that a
/// change made through one replica holds on all of them at their next read.
#[async_trait]
pub trait SettingStore: Send + Sync {
    /// The value stored under `key`, `None` when it was never set.
    async fn get_setting(&self, key: &str) -> Result<Option<serde_json::Value>>;
    /// Stores `value` under `key` (replacing any earlier value).
    async fn set_setting(&self, key: &str, value: &serde_json::Value, now: Timestamp)
    -> Result<()>;
}

/// Orchestrator chat sessions and the dispatch proposals made in them.
#[async_trait]
pub trait OrchestratorStore: Send + Sync {
    async fn create_session(&self, session: &Session) -> Result<Session>;
    async fn get_session(&self, id: SessionId) -> Result<Session>;
    /// The workspace's sessions, most recently used first.
    async fn list_sessions(&self, ws: WorkspaceId, limit: usize) -> Result<Vec<Session>>;
    /// Applies [`crate::orchestrator::begin_turn`] to the locked session and saves it.
    async fn begin_turn(
        &self,
        id: SessionId,
        turn: Uuid,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Session>;
    /// Applies [`crate::orchestrator::end_turn`] to the locked session and saves it.
    async fn end_turn(
        &self,
        id: SessionId,
        turn: Uuid,
        messages: Vec<LlmMessage>,
        usage: &Usage,
        now: Timestamp,
    ) -> Result<Session>;
    async fn create_proposal(&self, proposal: &Proposal) -> Result<Proposal>;
    async fn get_proposal(&self, id: ProposalId) -> Result<Proposal>;
    /// A session's proposals, oldest first.
    async fn list_proposals(&self, session: SessionId) -> Result<Vec<Proposal>>;
    /// Applies [`crate::orchestrator::decide`] to the locked proposal and saves it: of two
    /// concurrent confirmations exactly one succeeds.
    async fn decide_proposal(
        &self,
        id: ProposalId,
        decision: ProposalDecision,
        now: Timestamp,
    ) -> Result<Proposal>;
    async fn set_proposal_outcome(
        &self,
        id: ProposalId,
        outcome: &ProposalOutcome,
    ) -> Result<Proposal>;
    /// Costs of the most recent finished runs of `kind` (newest first, at most `limit`).
    async fn recent_run_costs(&self, kind: WorkflowKind, limit: usize) -> Result<Vec<f64>>;
}

/// Imports from other trackers ([`crate::import`]), remembered in the import map (source, kind,
/// external id → our id) so that importing the same rows again creates nothing.
#[async_trait]
pub trait ImportStore: Send + Sync {
    /// One transaction: loads the workspace (locked: identifiers stay gapless and unique), its
    /// columns, labels and the plan's source's import map, decides with [`crate::import::resolve`]
    /// and, unless `dry_run`, writes the new labels, the issues with their history, the import
    /// map rows and the workspace's counter. A dry run writes nothing and reports exactly what a
    /// real run would do.
    async fn apply_import(
        &self,
        ws: WorkspaceId,
        plan: &ImportPlan,
        dry_run: bool,
        now: Timestamp,
    ) -> Result<ImportReport>;
    /// Our id of an imported row (`None` when that row was never imported).
    async fn imported_id(
        &self,
        ws: WorkspaceId,
        source: &str,
        kind: &str,
        external_id: &str,
    ) -> Result<Option<Uuid>>;
}

/// The whole store.
pub trait Store:
    WorkspaceStore
    + IssueStore
    + ErrorLinkStore
    + RunStore
    + FixStore
    + CustomerStore
    + SearchStore
    + DeliveryStore
    + PrLinkStore
    + AgentStore
    + SettingStore
    + OrchestratorStore
    + ImportStore
    + super::OutboxStore
    + EmbeddingStore
{
}

impl<T> Store for T where
    T: WorkspaceStore
        + IssueStore
        + ErrorLinkStore
        + RunStore
        + FixStore
        + CustomerStore
        + SearchStore
        + DeliveryStore
        + PrLinkStore
        + AgentStore
        + SettingStore
        + OrchestratorStore
        + ImportStore
        + super::OutboxStore
        + EmbeddingStore
{
}
