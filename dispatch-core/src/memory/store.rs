use crate::Timestamp;
use crate::agent::{Agent, AgentEvent, NewAgentEvent, name_key};
use crate::clock::{utc_day_start, utc_next_day_start};
use crate::customer::{
    Customer, CustomerPatch, CustomerUser, HealthInputs, HealthIssue, NewCustomerUser,
};
use crate::error::{Error, Result};
use crate::ids::{
    ColumnId, CustomerId, DeferredSpawnId, FixAttemptId, IssueId, IssueRef, LinkId, PrLinkId,
    RunId, WorkspaceId,
};
use crate::issue::{
    Actor, Column, ColumnCategory, Comment, HistoryAction, HistoryEntry, Issue, IssueFilter, Label,
    NewColumn, NewComment, NewHistory, NewIssue, NewLabel, Workspace, default_columns,
    default_labels, format_identifier,
};
use crate::ports::{
    AgentStore, CustomerStore, DeferredSpawn, DeliveryStore, ErrorLink, ErrorLinkStore, FixStore,
    IngestDraft, IngestOutcome, IssueStore, IssueUpdate, PrLinkStore, PrLinkUpsertOutcome,
    RunStore, RunUpdate, SearchStore, SpawnRequest, SpawnReservation, SpawnStats, WorkspaceStore,
};
use crate::pr::{PrLink, PrLinkUpsert, pr_link_history, pr_unlink_history, sort_newest_first};
use crate::run::{
    Activity, BudgetBucket, ChunkAppend, NewActivity, ReservationInputs, Run, RunPatch, RunStatus,
    RunUpdatePlan, TerminalChunk, external_run_effects, plan_chunk_append, plan_reservation,
    replayed_chunk,
};
use crate::search::{SearchHit, lexical_score, terms};
use crate::verify::{FixAttempt, VerificationStatus};
use async_trait::async_trait;
use chrono::Duration;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

/// Every store call takes one lock for its whole duration, which makes each call one atomic
/// decision, exactly what the database stores do with transactions.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    workspaces: Vec<Workspace>,
    columns: Vec<Column>,
    labels: Vec<Label>,
    issues: BTreeMap<IssueId, Issue>,
    by_identifier: HashMap<String, IssueId>,
    comments: Vec<Comment>,
    history: HashMap<IssueId, Vec<HistoryEntry>>,
    watchers: BTreeSet<(IssueId, CustomerId)>,
    links: Vec<ErrorLink>,
    link_index: HashMap<(String, String), usize>,
    /// Links owing an ingest follow-up, and since when.
    follow_ups: HashMap<LinkId, Timestamp>,
    runs: BTreeMap<RunId, Run>,
    chunks: HashMap<RunId, Vec<TerminalChunk>>,
    activities: HashMap<IssueId, Vec<Activity>>,
    /// Idempotency keys of activities, per issue.
    activity_keys: HashMap<(IssueId, String), crate::ids::ActivityId>,
    deferred: BTreeMap<DeferredSpawnId, DeferredSpawn>,
    fixes: BTreeMap<FixAttemptId, FixAttempt>,
    customers: BTreeMap<CustomerId, Customer>,
    customer_users: BTreeMap<crate::ids::CustomerUserId, CustomerUser>,
    deliveries: HashMap<(String, String), Timestamp>,
    pr_links: BTreeMap<PrLinkId, PrLink>,
    agents: Vec<Agent>,
    /// Queued events by agent id, oldest first; `agent_event_seq` numbers them.
    agent_events: HashMap<crate::ids::AgentId, std::collections::VecDeque<AgentEvent>>,
    agent_event_seq: i64,
    embeddings: HashMap<IssueId, (String, Vec<f32>)>,
    /// Owed embeddings (what SQL keeps in `dispatch_embedding_queue`).
    embedding_owed: HashMap<IssueId, Owed>,
    settings: HashMap<String, serde_json::Value>,
    /// Usage of deleted runs per (UTC day, bucket): (runs, cost).
    carried: HashMap<(Timestamp, BudgetBucket), (u32, f64)>,
    sessions: BTreeMap<crate::ids::SessionId, crate::orchestrator::Session>,
    proposals: BTreeMap<crate::ids::ProposalId, crate::orchestrator::Proposal>,
    outbox: BTreeMap<crate::ids::DeliveryId, crate::outbox::Delivery>,
    outbox_keys: HashMap<String, crate::ids::DeliveryId>,
    /// The import map: (workspace, source, kind, external id) → our id.
    imports: HashMap<(WorkspaceId, String, String, String), uuid::Uuid>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another holder cannot leave half-applied state here: every mutation below
        // is computed first and then written, so the data behind a poisoned lock is consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn issue_not_found(r: impl std::fmt::Display) -> Error {
    Error::not_found(format!("issue {r} not found"))
}

impl State {
    fn workspace_mut(&mut self, id: WorkspaceId) -> Result<&mut Workspace> {
        self.workspaces
            .iter_mut()
            .find(|w| w.id == id)
            .ok_or_else(|| Error::not_found(format!("workspace {id} not found")))
    }

    fn columns_of(&self, ws: WorkspaceId) -> Vec<Column> {
        let mut c: Vec<Column> = self
            .columns
            .iter()
            .filter(|c| c.workspace_id == ws)
            .cloned()
            .collect();
        c.sort_by_key(|c| c.position);
        c
    }

    fn issue(&self, id: IssueId) -> Result<&Issue> {
        self.issues.get(&id).ok_or_else(|| issue_not_found(id))
    }

    /// An issue as it is now with the length of its history, for [`Self::restore_issue`].
    fn keep_issue(&self, id: IssueId) -> Option<(Issue, usize)> {
        let issue = self.issues.get(&id)?.clone();
        Some((issue, self.history.get(&id).map_or(0, Vec::len)))
    }

    /// Puts back an issue kept by [`Self::keep_issue`], dropping history written since.
    fn restore_issue(&mut self, kept: Option<(Issue, usize)>) {
        if let Some((issue, history_len)) = kept {
            if let Some(h) = self.history.get_mut(&issue.id) {
                h.truncate(history_len);
            }
            self.issues.insert(issue.id, issue);
        }
    }

    fn push_history(&mut self, issue_id: IssueId, entries: Vec<NewHistory>, at: Timestamp) {
        let h = self.history.entry(issue_id).or_default();
        for e in entries {
            h.push(e.into_entry(issue_id, at));
        }
    }

    /// Applies a patch with its history and bumps the version (the one write path for issues).
    fn write_issue(&mut self, id: IssueId, update: IssueUpdate) -> Result<Issue> {
        let issue = self
            .issues
            .get_mut(&id)
            .ok_or_else(|| issue_not_found(id))?;
        if let Some(v) = update.expected_version
            && v != issue.version
        {
            return Err(Error::conflict(format!(
                "issue {} changed meanwhile (version {} != {v})",
                issue.identifier, issue.version
            )));
        }
        // Changed on a copy first: the outbox rows render from it and may refuse, and a
        // refusal changes nothing.
        let mut out = issue.clone();
        update.patch.apply_to(&mut out);
        out.version += 1;
        out.updated_at = update.now;
        let deliveries = update.outbox.render(&out)?;
        let text_changed = issue.title != out.title || issue.description != out.description;
        *issue = out.clone();
        if text_changed {
            self.owe_embedding(id);
        }
        self.push_history(id, update.history, update.now);
        for d in &deliveries {
            self.enqueue_delivery(d, update.now);
        }
        Ok(out)
    }

    /// What the SQL triggers do: the issue owes an embedding, due now, with a new generation.
    fn owe_embedding(&mut self, id: IssueId) {
        let o = self.embedding_owed.entry(id).or_insert(Owed {
            generation: 0,
            attempts: 0,
            not_before: None,
        });
        o.generation += 1;
        o.attempts = 0;
        o.not_before = None;
    }

    /// Stores a validated delivery unless its key is stored (then returns that row, `false`).
    fn enqueue_delivery(
        &mut self,
        d: &crate::outbox::NewDelivery,
        now: Timestamp,
    ) -> (crate::outbox::Delivery, bool) {
        if let Some(existing) = self
            .outbox_keys
            .get(&d.idempotency_key)
            .and_then(|id| self.outbox.get(id))
        {
            return (existing.clone(), false);
        }
        let row = d.clone().into_delivery(now);
        self.outbox_keys.insert(row.idempotency_key.clone(), row.id);
        self.outbox.insert(row.id, row.clone());
        (row, true)
    }

    /// A comment on an existing issue, with its history entry and the `outbox` rows rendered
    /// from it (nothing at all when a row is refused).
    fn insert_comment(
        &mut self,
        id: IssueId,
        comment: NewComment,
        actor: &Actor,
        now: Timestamp,
        outbox: &crate::outbox::OutboxPlan<Comment>,
    ) -> Result<Comment> {
        let c = Comment {
            id: crate::ids::CommentId::new(),
            issue_id: id,
            author: comment.author,
            body: comment.body,
            created_at: now,
        };
        let rows = outbox.render(&c)?;
        for d in &rows {
            self.enqueue_delivery(d, now);
        }
        self.comments.push(c.clone());
        let h = NewHistory::new(HistoryAction::CommentAdded, actor)
            .values(None, Some(json!({"comment_id": c.id})));
        self.push_history(id, vec![h], now);
        if let Some(i) = self.issues.get_mut(&id) {
            i.updated_at = now;
        }
        Ok(c)
    }

    fn recompute_totals(&mut self, issue_id: IssueId) {
        let (cost, turns) = self
            .runs
            .values()
            .filter(|r| r.issue_id == issue_id)
            .fold((0.0, 0u32), |(c, t), r| {
                (c + r.cost_usd, t.saturating_add(r.num_turns))
            });
        if let Some(i) = self.issues.get_mut(&issue_id) {
            i.cost_usd = cost;
            i.num_turns = turns;
        }
    }

    fn counters(&self, now: Timestamp) -> (u32, u32, u32, u32, f64) {
        let (day, next_day) = (utc_day_start(now), utc_next_day_start(now));
        let (mut ae, mut ap, mut se, mut sp, mut cost) = (0, 0, 0, 0, 0.0);
        for r in self.runs.values() {
            let error = r.kind.bucket() == BudgetBucket::Error;
            if r.status.is_active() {
                if error { ae += 1 } else { ap += 1 }
            }
            if r.created_at >= day && r.created_at < next_day {
                if error {
                    se += 1
                } else {
                    sp += 1
                }
                cost += r.cost_usd;
            }
        }
        for ((d, bucket), (runs, c)) in &self.carried {
            if *d == day {
                match bucket {
                    BudgetBucket::Error => se += runs,
                    BudgetBucket::Prd => sp += runs,
                }
                cost += c;
            }
        }
        (ae, ap, se, sp, cost)
    }
}

fn sort_labels(labels: &mut [Label]) {
    labels.sort_by_key(|a| a.name.to_lowercase());
}

#[async_trait]
impl WorkspaceStore for MemoryStore {
    async fn ensure_workspace(
        &self,
        name: &str,
        prefix: &str,
        now: Timestamp,
    ) -> Result<Workspace> {
        let mut s = self.lock();
        if let Some(w) = s.workspaces.iter().find(|w| w.issue_prefix == prefix) {
            return Ok(w.clone());
        }
        let ws = Workspace {
            id: WorkspaceId::new(),
            name: name.to_string(),
            issue_prefix: prefix.to_string(),
            next_issue_number: 1,
            created_at: now,
        };
        for (i, c) in default_columns().into_iter().enumerate() {
            s.columns.push(Column {
                id: ColumnId::new(),
                workspace_id: ws.id,
                name: c.name,
                color: c.color,
                position: c.position.unwrap_or(i as i32),
                category: c.category,
            });
        }
        for l in default_labels() {
            s.labels.push(Label {
                id: crate::ids::LabelId::new(),
                workspace_id: ws.id,
                name: l.name,
                color: l.color,
            });
        }
        s.workspaces.push(ws.clone());
        Ok(ws)
    }

    async fn get_workspace(&self, id: WorkspaceId) -> Result<Workspace> {
        let mut s = self.lock();
        Ok(s.workspace_mut(id)?.clone())
    }

    async fn list_columns(&self, ws: WorkspaceId) -> Result<Vec<Column>> {
        Ok(self.lock().columns_of(ws))
    }

    async fn add_column(&self, ws: WorkspaceId, column: NewColumn) -> Result<Column> {
        column.validate()?;
        let mut s = self.lock();
        s.workspace_mut(ws)?;
        let existing = s.columns_of(ws);
        if existing.iter().any(|c| c.is_named(&column.name)) {
            return Err(Error::conflict(format!(
                "a column named {:?} exists",
                column.name
            )));
        }
        let end = existing.len() as i32;
        let position = column.position.unwrap_or(end).clamp(0, end);
        for c in s
            .columns
            .iter_mut()
            .filter(|c| c.workspace_id == ws && c.position >= position)
        {
            c.position += 1;
        }
        let col = Column {
            id: ColumnId::new(),
            workspace_id: ws,
            name: column.name.trim().to_string(),
            color: column.color,
            position,
            category: column.category,
        };
        s.columns.push(col.clone());
        Ok(col)
    }

    async fn reorder_columns(&self, ws: WorkspaceId, order: &[ColumnId]) -> Result<Vec<Column>> {
        let mut s = self.lock();
        let existing: BTreeSet<ColumnId> = s.columns_of(ws).iter().map(|c| c.id).collect();
        let given: BTreeSet<ColumnId> = order.iter().copied().collect();
        if given.len() != order.len() || given != existing {
            return Err(Error::invalid(
                "statusIds",
                "the order must name every column of the workspace exactly once",
            ));
        }
        for (i, id) in order.iter().enumerate() {
            if let Some(c) = s.columns.iter_mut().find(|c| c.id == *id) {
                c.position = i as i32;
            }
        }
        Ok(s.columns_of(ws))
    }

    async fn list_labels(&self, ws: WorkspaceId) -> Result<Vec<Label>> {
        let s = self.lock();
        let mut l: Vec<Label> = s
            .labels
            .iter()
            .filter(|l| l.workspace_id == ws)
            .cloned()
            .collect();
        sort_labels(&mut l);
        Ok(l)
    }

    async fn create_label(&self, ws: WorkspaceId, label: NewLabel) -> Result<Label> {
        label.validate()?;
        let mut s = self.lock();
        s.workspace_mut(ws)?;
        if s.labels
            .iter()
            .any(|l| l.workspace_id == ws && l.name.eq_ignore_ascii_case(label.name.trim()))
        {
            return Err(Error::conflict(format!(
                "a label named {:?} exists",
                label.name
            )));
        }
        let l = Label {
            id: crate::ids::LabelId::new(),
            workspace_id: ws,
            name: label.name.trim().to_string(),
            color: label.color,
        };
        s.labels.push(l.clone());
        Ok(l)
    }

    async fn ensure_label(&self, ws: WorkspaceId, label: NewLabel) -> Result<Label> {
        label.validate()?;
        let mut s = self.lock();
        s.workspace_mut(ws)?;
        if let Some(l) = s
            .labels
            .iter()
            .find(|l| l.workspace_id == ws && l.name.eq_ignore_ascii_case(label.name.trim()))
        {
            return Ok(l.clone());
        }
        let l = Label {
            id: crate::ids::LabelId::new(),
            workspace_id: ws,
            name: label.name.trim().to_string(),
            color: label.color,
        };
        s.labels.push(l.clone());
        Ok(l)
    }
}

/// Inserts a new issue and stores the `outbox` rows rendered from it (nothing at all when
/// a row is refused).
fn new_issue_row(
    s: &mut State,
    ws: WorkspaceId,
    new: NewIssue,
    now: Timestamp,
    outbox: &crate::outbox::OutboxPlan,
) -> Result<Issue> {
    new.validate()?;
    let columns = s.columns_of(ws);
    let column_id = match new.column_id {
        Some(c) => {
            if !columns.iter().any(|x| x.id == c) {
                return Err(Error::invalid(
                    "statusId",
                    format!("column {c} is not in this workspace"),
                ));
            }
            c
        }
        None => columns
            .iter()
            .find(|c| c.category == ColumnCategory::Open)
            .map(|c| c.id)
            .ok_or_else(|| Error::conflict("the workspace has no open column"))?,
    };
    let watcher = new.initial_watcher();
    if let Some(c) = watcher
        && !s.customers.contains_key(&c)
    {
        return Err(Error::not_found(format!("customer {c} not found")));
    }
    let w = s.workspace_mut(ws)?;
    let number = w.next_issue_number;
    let identifier = format_identifier(&w.issue_prefix, number);
    let issue = new.into_issue(ws, number, identifier.clone(), column_id, now);
    let rows = outbox.render(&issue)?;
    s.workspace_mut(ws)?.next_issue_number += 1;
    s.by_identifier.insert(identifier, issue.id);
    s.issues.insert(issue.id, issue.clone());
    s.owe_embedding(issue.id);
    if let Some(c) = watcher {
        s.watchers.insert((issue.id, c));
    }
    for d in &rows {
        s.enqueue_delivery(d, now);
    }
    Ok(issue)
}

#[async_trait]
impl IssueStore for MemoryStore {
    async fn create_issue(
        &self,
        ws: WorkspaceId,
        issue: NewIssue,
        actor: &Actor,
        now: Timestamp,
        outbox: &crate::outbox::OutboxPlan,
    ) -> Result<Issue> {
        let mut s = self.lock();
        let issue = new_issue_row(&mut s, ws, issue, now, outbox)?;
        let h = NewHistory::new(HistoryAction::Created, actor).values(
            None,
            Some(json!({"identifier": issue.identifier, "title": issue.title})),
        );
        s.push_history(issue.id, vec![h], now);
        Ok(issue)
    }

    async fn get_issue(&self, ws: WorkspaceId, issue: &IssueRef) -> Result<Issue> {
        let s = self.lock();
        let id = match issue {
            IssueRef::Id(id) => *id,
            IssueRef::Identifier(ident) => *s
                .by_identifier
                .get(ident)
                .ok_or_else(|| issue_not_found(ident))?,
        };
        match s.issues.get(&id) {
            Some(i) if i.workspace_id == ws => Ok(i.clone()),
            _ => Err(issue_not_found(issue)),
        }
    }

    async fn list_issues(&self, ws: WorkspaceId, f: &IssueFilter) -> Result<Vec<Issue>> {
        let s = self.lock();
        let mut out: Vec<Issue> = s
            .issues
            .values()
            .filter(|i| i.workspace_id == ws)
            .filter(|i| f.column_id.is_none_or(|c| i.column_id == c))
            .filter(|i| f.customer_id.is_none_or(|c| i.customer_id == Some(c)))
            .filter(|i| f.watched_by.is_none_or(|c| s.watchers.contains(&(i.id, c))))
            .filter(|i| {
                f.spawn_active
                    .is_none_or(|a| i.spawn_status.is_some_and(|x| x.is_active()) == a)
            })
            .filter(|i| f.label_id.is_none_or(|l| i.labels.contains(&l)))
            .filter(|i| {
                f.assignee.as_deref().is_none_or(|a| {
                    i.assignee
                        .as_deref()
                        .is_some_and(|x| x.to_lowercase() == a.to_lowercase())
                })
            })
            .filter(|i| f.before_number.is_none_or(|n| i.number < n))
            .cloned()
            .collect();
        out.sort_by_key(|i| std::cmp::Reverse(i.number));
        if let Some(l) = f.limit {
            out.truncate(l);
        }
        Ok(out)
    }

    async fn update_issue(&self, id: IssueId, update: IssueUpdate) -> Result<Issue> {
        self.lock().write_issue(id, update)
    }

    async fn delete_issue(
        &self,
        id: IssueId,
        now: Timestamp,
        outbox: &crate::outbox::OutboxPlan,
    ) -> Result<Issue> {
        let mut s = self.lock();
        s.issue(id)?;
        let runs: Vec<Run> = s
            .runs
            .values()
            .filter(|r| r.issue_id == id)
            .cloned()
            .collect();
        let carried = crate::run::plan_issue_deletion(&runs, now)?;
        let deliveries = outbox.render(s.issue(id)?)?;
        for u in carried {
            let e = s.carried.entry((u.day, u.bucket)).or_insert((0, 0.0));
            e.0 += u.runs;
            e.1 += u.cost_usd;
        }
        let issue = s.issues.remove(&id).ok_or_else(|| issue_not_found(id))?;
        s.by_identifier.remove(&issue.identifier);
        s.comments.retain(|c| c.issue_id != id);
        s.history.remove(&id);
        s.watchers.retain(|(i, _)| *i != id);
        let run_ids: Vec<RunId> = s
            .runs
            .values()
            .filter(|r| r.issue_id == id)
            .map(|r| r.id)
            .collect();
        for r in run_ids {
            s.runs.remove(&r);
            s.chunks.remove(&r);
        }
        s.activities.remove(&id);
        s.deferred.retain(|_, d| d.issue_id != id);
        s.fixes.retain(|_, f| f.issue_id != id);
        s.pr_links.retain(|_, l| l.issue_id != id);
        let gone: Vec<LinkId> = s
            .links
            .iter()
            .filter(|l| l.issue_id == id)
            .map(|l| l.id)
            .collect();
        for l in gone {
            s.follow_ups.remove(&l);
        }
        s.links.retain(|l| l.issue_id != id);
        s.embeddings.remove(&id);
        s.embedding_owed.remove(&id);
        let index: HashMap<(String, String), usize> = s
            .links
            .iter()
            .enumerate()
            .map(|(i, l)| ((l.source.clone(), l.external_key.clone()), i))
            .collect();
        s.link_index = index;
        for d in &deliveries {
            s.enqueue_delivery(d, now);
        }
        Ok(issue)
    }

    async fn add_comment(
        &self,
        id: IssueId,
        comment: NewComment,
        actor: &Actor,
        now: Timestamp,
        outbox: &crate::outbox::OutboxPlan<Comment>,
    ) -> Result<Comment> {
        comment.validate()?;
        let mut s = self.lock();
        s.issue(id)?;
        s.insert_comment(id, comment, actor, now, outbox)
    }

    async fn list_comments(&self, id: IssueId) -> Result<Vec<Comment>> {
        let s = self.lock();
        s.issue(id)?;
        Ok(s.comments
            .iter()
            .filter(|c| c.issue_id == id)
            .cloned()
            .collect())
    }

    async fn list_history(&self, id: IssueId, limit: usize) -> Result<Vec<HistoryEntry>> {
        let s = self.lock();
        s.issue(id)?;
        Ok(s.history
            .get(&id)
            .map(|h| h.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    async fn add_watcher(
        &self,
        id: IssueId,
        customer: CustomerId,
        _now: Timestamp,
    ) -> Result<bool> {
        let mut s = self.lock();
        s.issue(id)?;
        if !s.customers.contains_key(&customer) {
            return Err(Error::not_found(format!("customer {customer} not found")));
        }
        Ok(s.watchers.insert((id, customer)))
    }

    async fn remove_watcher(&self, id: IssueId, customer: CustomerId) -> Result<bool> {
        let mut s = self.lock();
        s.issue(id)?;
        Ok(s.watchers.remove(&(id, customer)))
    }

    async fn list_watchers(&self, id: IssueId) -> Result<Vec<CustomerId>> {
        let s = self.lock();
        s.issue(id)?;
        Ok(s.watchers
            .iter()
            .filter(|(i, _)| *i == id)
            .map(|(_, c)| *c)
            .collect())
    }
}

#[async_trait]
impl ErrorLinkStore for MemoryStore {
    async fn ingest_error(&self, ws: WorkspaceId, d: IngestDraft) -> Result<IngestOutcome> {
        if d.event_count == 0 {
            return Err(Error::invalid(
                "event_count",
                "event count must be at least 1",
            ));
        }
        let mut s = self.lock();
        let key = (d.source.clone(), d.external_key.clone());
        if let Some(&idx) = s.link_index.get(&key) {
            let link = &mut s.links[idx];
            link.event_count = link.event_count.saturating_add(d.event_count);
            link.last_seen_at = link.last_seen_at.max(d.seen_at);
            let link = link.clone();
            let issue = s.issue(link.issue_id)?.clone();
            let latest_fix = s
                .fixes
                .values()
                .filter(|f| f.issue_id == issue.id)
                .max_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)))
                .cloned();
            return Ok(IngestOutcome {
                issue,
                link,
                created: false,
                latest_fix,
            });
        }
        let issue = new_issue_row(&mut s, ws, d.new_issue, d.seen_at, &d.outbox)?;
        let h = NewHistory::new(HistoryAction::Created, &d.actor).values(
            None,
            Some(json!({"identifier": issue.identifier, "title": issue.title, "source": d.source})),
        );
        s.push_history(issue.id, vec![h], d.seen_at);
        let link = ErrorLink {
            id: LinkId::new(),
            issue_id: issue.id,
            source: d.source,
            external_key: d.external_key,
            fingerprint: d.fingerprint,
            url: d.url,
            metadata: d.metadata,
            event_count: d.event_count,
            first_seen_at: d.seen_at,
            last_seen_at: d.seen_at,
            cooldown_until: None,
        };
        s.links.push(link.clone());
        let idx = s.links.len() - 1;
        s.link_index.insert(key, idx);
        Ok(IngestOutcome {
            issue,
            link,
            created: true,
            latest_fix: None,
        })
    }

    async fn get_link(&self, source: &str, external_key: &str) -> Result<Option<ErrorLink>> {
        let s = self.lock();
        Ok(s.link_index
            .get(&(source.to_string(), external_key.to_string()))
            .map(|&i| s.links[i].clone()))
    }

    async fn links_for_issue(&self, issue: IssueId) -> Result<Vec<ErrorLink>> {
        let s = self.lock();
        Ok(s.links
            .iter()
            .filter(|l| l.issue_id == issue)
            .cloned()
            .collect())
    }

    async fn set_cooldown(&self, issue: IssueId, until: Timestamp) -> Result<()> {
        let mut s = self.lock();
        for l in s.links.iter_mut().filter(|l| l.issue_id == issue) {
            l.cooldown_until = Some(until);
        }
        Ok(())
    }

    async fn owe_follow_up(&self, link: LinkId, owed_at: Timestamp) -> Result<()> {
        let mut s = self.lock();
        if !s.links.iter().any(|l| l.id == link) {
            return Err(Error::not_found(format!("error link {link} not found")));
        }
        let at = s.follow_ups.entry(link).or_insert(owed_at);
        *at = (*at).max(owed_at);
        Ok(())
    }

    async fn owed_follow_ups(
        &self,
        upto: Timestamp,
        limit: usize,
    ) -> Result<Vec<(ErrorLink, Timestamp)>> {
        let s = self.lock();
        let mut v: Vec<(ErrorLink, Timestamp)> = s
            .follow_ups
            .iter()
            .filter(|(_, at)| **at <= upto)
            .filter_map(|(id, at)| {
                s.links
                    .iter()
                    .find(|l| l.id == *id)
                    .map(|l| (l.clone(), *at))
            })
            .collect();
        v.sort_by_key(|(l, at)| (*at, l.id));
        v.truncate(limit);
        Ok(v)
    }

    async fn settle_follow_up(&self, link: LinkId, upto: Timestamp) -> Result<()> {
        let mut s = self.lock();
        if s.follow_ups.get(&link).is_some_and(|at| *at <= upto) {
            s.follow_ups.remove(&link);
        }
        Ok(())
    }
}

#[async_trait]
impl RunStore for MemoryStore {
    async fn reserve_spawn(&self, req: &SpawnRequest, now: Timestamp) -> Result<SpawnReservation> {
        let mut s = self.lock();
        let issue = s.issue(req.issue_id)?.clone();
        let has_active = s
            .runs
            .values()
            .any(|r| r.issue_id == issue.id && r.status.is_active());
        let latest_link = s
            .links
            .iter()
            .filter(|l| l.issue_id == issue.id)
            .max_by_key(|l| l.last_seen_at)
            .cloned();
        let deferred: Vec<DeferredSpawn> = s
            .deferred
            .values()
            .filter(|d| d.issue_id == issue.id || Some(d.id) == req.deferred_id)
            .cloned()
            .collect();
        let columns = s.columns_of(issue.workspace_id);
        let plan = plan_reservation(ReservationInputs {
            request: req,
            issue: &issue,
            issue_has_active_run: has_active,
            latest_link: latest_link.as_ref(),
            counters: s.counters(now).into(),
            deferred: &deferred,
            columns: &columns,
            now,
        });
        // What the reservation may change, kept so that a refused outbox row undoes it all
        // (what a rolled-back transaction does in the SQL stores).
        let kept = s.keep_issue(issue.id);
        for id in &plan.delete_deferred {
            s.deferred.remove(id);
        }
        let saved = plan.save_deferred.as_ref().map(|d| d.id);
        if let Some(d) = plan.save_deferred {
            s.deferred.insert(d.id, d);
        }
        if let Some(run) = &plan.insert_run {
            s.runs.insert(run.id, run.clone());
        }
        let issue = match plan.issue_update {
            Some((id, update)) => s.write_issue(id, update)?,
            None => issue,
        };
        let reservation = SpawnReservation {
            decision: plan.decision,
            run: plan.insert_run,
            issue,
        };
        match req.outbox.render(&reservation) {
            Ok(rows) => {
                for d in &rows {
                    s.enqueue_delivery(d, now);
                }
                Ok(reservation)
            }
            Err(e) => {
                s.restore_issue(kept);
                if let Some(run) = &reservation.run {
                    s.runs.remove(&run.id);
                }
                if let Some(id) = saved {
                    s.deferred.remove(&id);
                }
                for d in deferred {
                    s.deferred.insert(d.id, d);
                }
                Err(e)
            }
        }
    }

    async fn get_run(&self, id: RunId) -> Result<Run> {
        self.lock()
            .runs
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("run {id} not found")))
    }

    async fn list_runs(&self, issue: IssueId) -> Result<Vec<Run>> {
        let s = self.lock();
        let mut r: Vec<Run> = s
            .runs
            .values()
            .filter(|r| r.issue_id == issue)
            .cloned()
            .collect();
        r.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(r)
    }

    async fn find_run_by_external_id(&self, external_id: &str) -> Result<Option<Run>> {
        let s = self.lock();
        Ok(s.runs
            .values()
            .filter(|r| r.external_id.as_deref() == Some(external_id))
            .max_by_key(|r| r.created_at)
            .cloned())
    }

    async fn update_run(
        &self,
        id: RunId,
        patch: &RunPatch,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<RunUpdate> {
        patch.validate()?;
        let mut s = self.lock();
        let before = s
            .runs
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("run {id} not found")))?;
        let plan = RunUpdatePlan::new(&before, patch, now)?;
        // What the update may change, kept so that a refused outbox row undoes it all (what
        // a rolled-back transaction does in the SQL stores).
        let kept = s.keep_issue(plan.run.issue_id);
        let cooldowns: Vec<(usize, Option<Timestamp>)> = s
            .links
            .iter()
            .enumerate()
            .filter(|(_, l)| l.issue_id == plan.run.issue_id)
            .map(|(i, l)| (i, l.cooldown_until))
            .collect();
        s.runs.insert(id, plan.run.clone());
        if plan.totals_changed {
            s.recompute_totals(plan.run.issue_id);
        }
        let mut issue = s.issue(plan.run.issue_id)?.clone();
        let columns = if plan.ended {
            s.columns_of(issue.workspace_id)
        } else {
            Vec::new()
        };
        let fx = plan.effects(&issue, &columns, actor, now);
        if let Some(update) = fx.issue_update {
            issue = s.write_issue(issue.id, update)?;
        }
        if let Some(until) = fx.cooldown_until {
            for l in s.links.iter_mut().filter(|l| l.issue_id == issue.id) {
                l.cooldown_until = Some(until);
            }
        }
        let RunUpdatePlan {
            run,
            status_changed,
            ended,
            ..
        } = plan;
        let update = RunUpdate {
            run,
            issue,
            status_changed,
            ended,
            cost_before_usd: before.cost_usd,
        };
        match patch.outbox.render(&update) {
            Ok(rows) => {
                for d in &rows {
                    s.enqueue_delivery(d, now);
                }
                Ok(update)
            }
            Err(e) => {
                s.runs.insert(id, before);
                for (i, c) in cooldowns {
                    s.links[i].cooldown_until = c;
                }
                s.restore_issue(kept);
                Err(e)
            }
        }
    }

    async fn claim_due_runs(
        &self,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Run>> {
        let mut s = self.lock();
        let mut due: Vec<&mut Run> = s
            .runs
            .values_mut()
            .filter(|r| match r.status {
                RunStatus::Queued => r.not_before <= now,
                RunStatus::Dispatching => r.lease_until.is_none_or(|l| l <= now),
                _ => false,
            })
            .collect();
        due.sort_by_key(|r| (r.not_before, r.created_at));
        let mut out = Vec::new();
        for r in due.into_iter().take(limit) {
            r.claim_for_dispatch(now, lease);
            out.push(r.clone());
        }
        Ok(out)
    }

    async fn stale_runs(&self, cutoff: Timestamp, limit: usize) -> Result<Vec<Run>> {
        let s = self.lock();
        let mut out: Vec<Run> = s
            .runs
            .values()
            .filter(|r| r.status == RunStatus::Running)
            .filter(|r| r.alive_at() < cutoff)
            .cloned()
            .collect();
        out.sort_by_key(|r| r.created_at);
        out.truncate(limit);
        Ok(out)
    }

    async fn append_terminal(
        &self,
        run: RunId,
        content: &str,
        seq: Option<u64>,
        at: Timestamp,
    ) -> Result<TerminalChunk> {
        let mut s = self.lock();
        if !s.runs.contains_key(&run) {
            return Err(Error::not_found(format!("run {run} not found")));
        }
        let chunks = s.chunks.entry(run).or_default();
        let last = chunks.last().map_or(0, |c| c.seq);
        let seq = match plan_chunk_append(last, seq)? {
            ChunkAppend::Replay(n) => {
                return replayed_chunk(chunks.iter().find(|c| c.seq == n).cloned(), n, content);
            }
            ChunkAppend::Insert(n) => n,
        };
        let c = TerminalChunk {
            run_id: run,
            seq,
            content: content.to_string(),
            at,
        };
        chunks.push(c.clone());
        Ok(c)
    }

    async fn read_terminal(
        &self,
        run: RunId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<TerminalChunk>> {
        let s = self.lock();
        if !s.runs.contains_key(&run) {
            return Err(Error::not_found(format!("run {run} not found")));
        }
        let mut budget = crate::run::PageBudget::default();
        Ok(s.chunks
            .get(&run)
            .map(|c| {
                c.iter()
                    .filter(|c| c.seq > after)
                    .take(limit)
                    .take_while(|c| budget.admit(c.content.len()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn add_activity(
        &self,
        issue: IssueId,
        activity: NewActivity,
        at: Timestamp,
    ) -> Result<Activity> {
        let mut s = self.lock();
        s.issue(issue)?;
        if let Some(r) = activity.run_id {
            match s.runs.get(&r) {
                Some(run) if run.issue_id == issue => {}
                _ => {
                    return Err(Error::invalid(
                        "run_id",
                        format!("run {r} is not a run of this issue"),
                    ));
                }
            }
        }
        let key = activity.validated_key()?.map(str::to_string);
        if let Some(k) = &key
            && let Some(id) = s.activity_keys.get(&(issue, k.clone())).copied()
            && let Some(stored) = s
                .activities
                .get(&issue)
                .and_then(|v| v.iter().find(|a| a.id == id))
                .cloned()
        {
            return activity.replayed(stored);
        }
        let a = activity.into_activity(issue, at);
        if let Some(k) = key {
            s.activity_keys.insert((issue, k), a.id);
        }
        s.activities.entry(issue).or_default().push(a.clone());
        Ok(a)
    }

    async fn list_activities(
        &self,
        issue: IssueId,
        before: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<Activity>> {
        let s = self.lock();
        s.issue(issue)?;
        // Newest by `created_at` (callbacks may arrive out of time order); ties newest-inserted first.
        let mut out: Vec<Activity> = s
            .activities
            .get(&issue)
            .map(|a| {
                a.iter()
                    .rev()
                    .filter(|a| before.is_none_or(|b| a.created_at < b))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by_key(|a| std::cmp::Reverse(a.created_at));
        out.truncate(limit);
        Ok(out)
    }

    async fn claim_due_deferred(
        &self,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<DeferredSpawn>> {
        let mut s = self.lock();
        let mut due: Vec<&mut DeferredSpawn> = s
            .deferred
            .values_mut()
            .filter(|d| d.due_at <= now && d.lease_until.is_none_or(|l| l <= now))
            .collect();
        due.sort_by_key(|d| d.due_at);
        let mut out = Vec::new();
        for d in due.into_iter().take(limit) {
            d.lease_until = Some(now + lease);
            d.attempts = d.attempts.saturating_add(1);
            out.push(d.clone());
        }
        Ok(out)
    }

    async fn list_deferred(&self, issue: IssueId) -> Result<Vec<DeferredSpawn>> {
        let s = self.lock();
        Ok(s.deferred
            .values()
            .filter(|d| d.issue_id == issue)
            .cloned()
            .collect())
    }

    async fn spawn_stats(&self, now: Timestamp) -> Result<SpawnStats> {
        let s = self.lock();
        let (ae, ap, se, sp, cost) = s.counters(now);
        let (day, next_day) = (utc_day_start(now), utc_next_day_start(now));
        let mut outcomes: BTreeMap<String, u32> = BTreeMap::new();
        for r in s
            .runs
            .values()
            .filter(|r| r.created_at >= day && r.created_at < next_day)
        {
            if let Some(o) = r.outcome {
                *outcomes.entry(o.as_str().to_string()).or_default() += 1;
            }
        }
        Ok(SpawnStats {
            active_error: ae,
            active_prd: ap,
            spawned_today_error: se,
            spawned_today_prd: sp,
            cost_today_usd: cost,
            queued: s
                .runs
                .values()
                .filter(|r| matches!(r.status, RunStatus::Queued | RunStatus::Dispatching))
                .count() as u32,
            running: s
                .runs
                .values()
                .filter(|r| r.status == RunStatus::Running)
                .count() as u32,
            deferred: s.deferred.len() as u32,
            outcomes_today: outcomes.into_iter().collect(),
        })
    }

    async fn record_external_run(
        &self,
        run: &Run,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(Run, Issue, bool)> {
        let mut s = self.lock();
        let issue = s.issue(run.issue_id)?.clone();
        if let Some(x) = &run.external_id
            && let Some(r) = s
                .runs
                .values()
                .find(|r| r.issue_id == issue.id && r.external_id.as_deref() == Some(x))
        {
            return Ok((r.clone(), issue, false));
        }
        if s.runs
            .values()
            .any(|r| r.issue_id == issue.id && r.status.is_active())
        {
            return Err(Error::conflict(format!(
                "{} already has an active run",
                issue.identifier
            )));
        }
        let columns = s.columns_of(issue.workspace_id);
        let fx = external_run_effects(&issue, run, &columns, actor, now);
        s.runs.insert(run.id, run.clone());
        let issue = s.write_issue(issue.id, fx.into_update(now))?;
        Ok((run.clone(), issue, true))
    }

    async fn prune(&self, before: Timestamp) -> Result<u64> {
        let mut s = self.lock();
        let mut n = 0u64;
        for a in s.activities.values_mut() {
            let len = a.len();
            a.retain(|x| x.created_at >= before);
            n += (len - a.len()) as u64;
        }
        // Chunks keep their numbering: a pruned prefix is simply no longer readable.
        for c in s.chunks.values_mut() {
            let len = c.len();
            let last = c.last().map(|x| x.seq);
            c.retain(|x| x.at >= before || Some(x.seq) == last);
            n += (len - c.len()) as u64;
        }
        Ok(n)
    }
}

#[async_trait]
impl FixStore for MemoryStore {
    async fn create_fix_attempt(&self, attempt: &FixAttempt) -> Result<(FixAttempt, bool)> {
        let mut s = self.lock();
        s.issue(attempt.issue_id)?;
        if let Some(existing) = s
            .fixes
            .values()
            .find(|f| f.issue_id == attempt.issue_id && f.pr_number == attempt.pr_number)
        {
            return Ok((existing.clone(), false));
        }
        s.fixes.insert(attempt.id, attempt.clone());
        Ok((attempt.clone(), true))
    }

    async fn list_fix_attempts(&self, issue: IssueId) -> Result<Vec<FixAttempt>> {
        let s = self.lock();
        let mut v: Vec<FixAttempt> = s
            .fixes
            .values()
            .filter(|f| f.issue_id == issue)
            .cloned()
            .collect();
        v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(v)
    }

    async fn update_fix_attempt(
        &self,
        attempt: &FixAttempt,
        expected: VerificationStatus,
    ) -> Result<bool> {
        let mut s = self.lock();
        match s.fixes.get_mut(&attempt.id) {
            None => Err(Error::not_found(format!(
                "fix attempt {} not found",
                attempt.id
            ))),
            Some(f) if f.status != expected => Ok(false),
            Some(f) => {
                *f = attempt.clone();
                Ok(true)
            }
        }
    }

    async fn settle_fix_attempt(
        &self,
        attempt: &FixAttempt,
        expected: VerificationStatus,
        update: IssueUpdate,
        comment: NewComment,
        actor: &Actor,
    ) -> Result<Option<(Issue, Comment)>> {
        comment.validate()?;
        let mut s = self.lock();
        match s.fixes.get(&attempt.id) {
            None => {
                return Err(Error::not_found(format!(
                    "fix attempt {} not found",
                    attempt.id
                )));
            }
            Some(f) if f.status != expected => return Ok(None),
            Some(_) => {}
        }
        // The issue first: its version check is the only step that can refuse, and it refuses
        // before anything changed.
        let now = update.now;
        s.write_issue(attempt.issue_id, update)?;
        let c = s.insert_comment(
            attempt.issue_id,
            comment,
            actor,
            now,
            &crate::outbox::OutboxPlan::default(),
        )?;
        s.fixes.insert(attempt.id, attempt.clone());
        let issue = s.issue(attempt.issue_id)?.clone();
        Ok(Some((issue, c)))
    }

    async fn fix_attempts_in_status(
        &self,
        status: VerificationStatus,
        limit: usize,
    ) -> Result<Vec<FixAttempt>> {
        let s = self.lock();
        let mut v: Vec<FixAttempt> = s
            .fixes
            .values()
            .filter(|f| f.status == status)
            .cloned()
            .collect();
        v.sort_by_key(|f| f.created_at);
        v.truncate(limit);
        Ok(v)
    }

    async fn due_verifications(&self, now: Timestamp, limit: usize) -> Result<Vec<FixAttempt>> {
        let s = self.lock();
        let mut v: Vec<FixAttempt> = s
            .fixes
            .values()
            .filter(|f| {
                f.status == VerificationStatus::Monitoring && f.deadline.is_some_and(|d| d <= now)
            })
            .cloned()
            .collect();
        v.sort_by_key(|f| f.deadline);
        v.truncate(limit);
        Ok(v)
    }
}

#[async_trait]
impl CustomerStore for MemoryStore {
    async fn create_customer(&self, c: &Customer) -> Result<Customer> {
        let mut s = self.lock();
        s.workspace_mut(c.workspace_id)?;
        if s.customers
            .values()
            .any(|x| x.workspace_id == c.workspace_id && x.slug == c.slug)
        {
            return Err(Error::conflict(format!(
                "a customer with slug {:?} exists",
                c.slug
            )));
        }
        if let Some(ch) = &c.slack_channel_id
            && s.customers
                .values()
                .any(|x| x.slack_channel_id.as_ref() == Some(ch))
        {
            return Err(Error::conflict(format!(
                "Slack channel {ch} belongs to another customer"
            )));
        }
        s.customers.insert(c.id, c.clone());
        Ok(c.clone())
    }

    async fn get_customer(&self, id: CustomerId) -> Result<Customer> {
        self.lock()
            .customers
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("customer {id} not found")))
    }

    async fn get_customer_by_slug(&self, ws: WorkspaceId, slug: &str) -> Result<Customer> {
        self.lock()
            .customers
            .values()
            .find(|c| c.workspace_id == ws && c.slug == slug)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("customer {slug:?} not found")))
    }

    async fn get_customer_by_token(&self, token: &str) -> Result<Option<Customer>> {
        let s = self.lock();
        Ok(s.customers
            .values()
            .find(|c| {
                crate::customer::constant_time_eq(c.portal_token.as_bytes(), token.as_bytes())
            })
            .cloned())
    }

    async fn list_customers(&self, ws: WorkspaceId) -> Result<Vec<Customer>> {
        let s = self.lock();
        let mut v: Vec<Customer> = s
            .customers
            .values()
            .filter(|c| c.workspace_id == ws)
            .cloned()
            .collect();
        v.sort_by_key(|a| a.name.to_lowercase());
        Ok(v)
    }

    async fn update_customer(
        &self,
        id: CustomerId,
        patch: &CustomerPatch,
        now: Timestamp,
    ) -> Result<Customer> {
        patch.validate()?;
        let mut s = self.lock();
        let current = s
            .customers
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("customer {id} not found")))?;
        let mut next = current.clone();
        patch.apply_to(&mut next);
        if next.slug != current.slug
            && s.customers
                .values()
                .any(|x| x.id != id && x.workspace_id == next.workspace_id && x.slug == next.slug)
        {
            return Err(Error::conflict(format!(
                "a customer with slug {:?} exists",
                next.slug
            )));
        }
        next.updated_at = now;
        s.customers.insert(id, next.clone());
        Ok(next)
    }

    async fn set_portal_token(
        &self,
        id: CustomerId,
        token: &str,
        now: Timestamp,
    ) -> Result<Customer> {
        let mut s = self.lock();
        let c = s
            .customers
            .get_mut(&id)
            .ok_or_else(|| Error::not_found(format!("customer {id} not found")))?;
        c.portal_token = token.to_string();
        c.updated_at = now;
        Ok(c.clone())
    }

    async fn delete_customer(&self, id: CustomerId) -> Result<()> {
        let mut s = self.lock();
        if s.customers.remove(&id).is_none() {
            return Err(Error::not_found(format!("customer {id} not found")));
        }
        s.watchers.retain(|(_, c)| *c != id);
        s.customer_users.retain(|_, u| u.customer_id != id);
        for i in s.issues.values_mut().filter(|i| i.customer_id == Some(id)) {
            i.detach_customer();
        }
        Ok(())
    }

    async fn upsert_customer_user(
        &self,
        customer: CustomerId,
        user: &NewCustomerUser,
        now: Timestamp,
    ) -> Result<CustomerUser> {
        user.validate()?;
        let mut s = self.lock();
        if !s.customers.contains_key(&customer) {
            return Err(Error::not_found(format!("customer {customer} not found")));
        }
        let key = user.slack_user_id.trim();
        let existing = s
            .customer_users
            .values()
            .find(|u| u.customer_id == customer && u.slack_user_id == key)
            .cloned();
        let u = user.merge_into(existing, customer, now);
        s.customer_users.insert(u.id, u.clone());
        Ok(u)
    }

    async fn get_customer_user(&self, id: crate::ids::CustomerUserId) -> Result<CustomerUser> {
        self.lock()
            .customer_users
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("customer user {id} not found")))
    }

    async fn health_inputs(&self, id: CustomerId) -> Result<HealthInputs> {
        let s = self.lock();
        if !s.customers.contains_key(&id) {
            return Err(Error::not_found(format!("customer {id} not found")));
        }
        let closed: HashSet<ColumnId> = s
            .columns
            .iter()
            .filter(|c| c.is_closed())
            .map(|c| c.id)
            .collect();
        let issues = s
            .issues
            .values()
            .filter(|i| i.customer_id == Some(id))
            .map(|i| {
                let comments: Vec<&Comment> =
                    s.comments.iter().filter(|c| c.issue_id == i.id).collect();
                HealthIssue {
                    closed: closed.contains(&i.column_id),
                    priority: i.priority,
                    created_at: i.created_at,
                    updated_at: i.updated_at,
                    comment_count: comments.len() as u32,
                    first_comment_at: comments.iter().map(|c| c.created_at).min(),
                    last_comment_at: comments.iter().map(|c| c.created_at).max(),
                }
            })
            .collect();
        Ok(HealthInputs { issues })
    }
}

impl State {
    fn comment_text(&self, issue: IssueId) -> String {
        self.comments
            .iter()
            .filter(|c| c.issue_id == issue)
            .map(|c| c.body.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn rank(
        &self,
        ws: WorkspaceId,
        query: &[String],
        exclude: Option<IssueId>,
        with_comments: bool,
        limit: usize,
    ) -> Vec<SearchHit> {
        let mut hits: Vec<SearchHit> = self
            .issues
            .values()
            .filter(|i| i.workspace_id == ws && Some(i.id) != exclude)
            .filter_map(|i| {
                let comments = if with_comments {
                    self.comment_text(i.id)
                } else {
                    String::new()
                };
                let score = lexical_score(
                    query,
                    &i.title,
                    i.description.as_deref().unwrap_or(""),
                    &comments,
                );
                (score > 0.0).then(|| SearchHit {
                    issue: i.clone(),
                    score,
                })
            })
            .collect();
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(b.issue.number.cmp(&a.issue.number))
        });
        hits.truncate(limit);
        hits
    }
}

#[async_trait]
impl SearchStore for MemoryStore {
    async fn search_issues(
        &self,
        ws: WorkspaceId,
        query: &str,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        let q = terms(query);
        if q.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.lock().rank(ws, &q, None, true, limit))
    }

    async fn similar_issues(&self, issue: IssueId, limit: usize) -> Result<Vec<SearchHit>> {
        let s = self.lock();
        let i = s.issue(issue)?;
        let q = terms(&format!(
            "{} {}",
            i.title,
            i.description.as_deref().unwrap_or("")
        ));
        Ok(s.rank(i.workspace_id, &q, Some(issue), false, limit))
    }

    async fn set_embedding(&self, issue: IssueId, model: &str, vector: &[f32]) -> Result<()> {
        if vector.is_empty() || vector.iter().any(|x| !x.is_finite()) {
            return Err(Error::invalid(
                "embedding",
                "an embedding must be a non-empty vector of finite numbers",
            ));
        }
        let mut s = self.lock();
        s.issue(issue)?;
        s.embeddings
            .insert(issue, (model.to_string(), vector.to_vec()));
        Ok(())
    }

    async fn nearest_issues(
        &self,
        ws: WorkspaceId,
        model: &str,
        vector: &[f32],
        exclude: Option<IssueId>,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        let s = self.lock();
        let mut candidates: Vec<(&Issue, &Vec<f32>)> = s
            .embeddings
            .iter()
            .filter(|(id, (m, _))| m == model && Some(**id) != exclude)
            .filter_map(|(id, (_, v))| {
                let issue = s.issues.get(id).filter(|i| i.workspace_id == ws)?;
                Some((issue, v))
            })
            .collect();
        // The newest `NEAREST_SCAN_LIMIT`, as the SQL stores scan.
        candidates.sort_by_key(|(i, _)| std::cmp::Reverse(i.number));
        candidates.truncate(crate::embedding::NEAREST_SCAN_LIMIT);
        let mut top = crate::search::TopK::new(limit);
        for (issue, v) in candidates {
            let Some(score) = crate::search::neighbour_score(vector, v) else {
                continue;
            };
            if top.wants(score) {
                top.push(SearchHit {
                    issue: issue.clone(),
                    score,
                });
            }
        }
        Ok(top.into_hits())
    }
}

/// An owed embedding (see `crate::embedding`).
#[derive(Debug, Clone)]
struct Owed {
    generation: i64,
    attempts: u32,
    /// Due from then (`None`: due now).
    not_before: Option<Timestamp>,
}

#[async_trait]
impl crate::ports::EmbeddingStore for MemoryStore {
    async fn claim_owed_embeddings(
        &self,
        now: Timestamp,
        lease: chrono::Duration,
        limit: usize,
    ) -> Result<Vec<crate::embedding::OwedEmbedding>> {
        let mut s = self.lock();
        let mut due: Vec<(Option<Timestamp>, IssueId)> = s
            .embedding_owed
            .iter()
            .filter(|(_, o)| o.not_before.is_none_or(|t| t <= now))
            .map(|(id, o)| (o.not_before, *id))
            .collect();
        due.sort();
        due.truncate(limit);
        let mut out = Vec::with_capacity(due.len());
        for (_, id) in due {
            let Some(issue) = s.issues.get(&id).cloned() else {
                continue;
            };
            let Some(o) = s.embedding_owed.get_mut(&id) else {
                continue;
            };
            o.not_before = Some(now + lease);
            out.push(crate::embedding::OwedEmbedding {
                issue,
                generation: o.generation,
                attempts: o.attempts,
            });
        }
        Ok(out)
    }

    async fn settle_embedding(
        &self,
        issue: IssueId,
        generation: i64,
        model: &str,
        vector: &[f32],
    ) -> Result<bool> {
        crate::embedding::check_vector(vector)?;
        let mut s = self.lock();
        s.issue(issue)?;
        s.embeddings
            .insert(issue, (model.to_string(), vector.to_vec()));
        match s.embedding_owed.get_mut(&issue) {
            Some(o) if o.generation == generation => {
                s.embedding_owed.remove(&issue);
                Ok(true)
            }
            Some(o) => {
                o.not_before = None;
                Ok(false)
            }
            None => Ok(true),
        }
    }

    async fn defer_embedding(
        &self,
        issue: IssueId,
        generation: i64,
        retry_at: Timestamp,
    ) -> Result<()> {
        let mut s = self.lock();
        if let Some(o) = s.embedding_owed.get_mut(&issue)
            && o.generation == generation
        {
            o.attempts = o.attempts.saturating_add(1);
            o.not_before = Some(retry_at);
        }
        Ok(())
    }

    async fn owe_embeddings_not_of(&self, model: &str, dimensions: usize) -> Result<u64> {
        let mut s = self.lock();
        let stale: Vec<IssueId> = s
            .issues
            .keys()
            .filter(|id| !s.embedding_owed.contains_key(id))
            .filter(|id| {
                s.embeddings.get(id).is_none_or(|(m, v)| {
                    !crate::embedding::is_current(m, v.len(), model, dimensions)
                })
            })
            .copied()
            .collect();
        for id in &stale {
            s.owe_embedding(*id);
        }
        Ok(stale.len() as u64)
    }

    async fn embeddings_of(
        &self,
        issues: &[IssueId],
        model: &str,
    ) -> Result<HashMap<IssueId, Vec<f32>>> {
        let s = self.lock();
        Ok(issues
            .iter()
            .filter_map(|id| {
                s.embeddings
                    .get(id)
                    .filter(|(m, _)| m == model)
                    .map(|(_, v)| (*id, v.clone()))
            })
            .collect())
    }

    async fn owed_embedding_count(&self) -> Result<u64> {
        Ok(self.lock().embedding_owed.len() as u64)
    }
}

#[async_trait]
impl DeliveryStore for MemoryStore {
    async fn record_delivery(
        &self,
        source: &str,
        delivery_id: &str,
        now: Timestamp,
    ) -> Result<bool> {
        if delivery_id.trim().is_empty() {
            return Err(Error::invalid(
                "delivery_id",
                "delivery id must not be empty",
            ));
        }
        let mut s = self.lock();
        let key = (source.to_string(), delivery_id.to_string());
        if s.deliveries.contains_key(&key) {
            return Ok(false);
        }
        s.deliveries.insert(key, now);
        Ok(true)
    }

    async fn forget_delivery(&self, source: &str, delivery_id: &str) -> Result<bool> {
        Ok(self
            .lock()
            .deliveries
            .remove(&(source.to_string(), delivery_id.to_string()))
            .is_some())
    }

    async fn prune_deliveries(&self, before: Timestamp) -> Result<u64> {
        let mut s = self.lock();
        let n = s.deliveries.len();
        s.deliveries.retain(|_, at| *at >= before);
        Ok((n - s.deliveries.len()) as u64)
    }
}

#[async_trait]
impl PrLinkStore for MemoryStore {
    async fn upsert_pr_link(
        &self,
        upsert: &PrLinkUpsert,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<PrLinkUpsertOutcome> {
        upsert.validate()?;
        let mut s = self.lock();
        s.issue(upsert.issue_id)?;
        let existing = s
            .pr_links
            .values()
            .find(|l| l.issue_id == upsert.issue_id && l.pr_number == upsert.pr_number)
            .cloned();
        let link = upsert.apply(existing.as_ref(), now);
        let history = pr_link_history(existing.as_ref(), &link, actor);
        s.pr_links.insert(link.id, link.clone());
        s.push_history(upsert.issue_id, history, now);
        Ok(PrLinkUpsertOutcome {
            created: existing.is_none(),
            status_changed: existing.as_ref().is_some_and(|e| e.status != link.status),
            link,
        })
    }

    async fn list_pr_links(&self, issue: IssueId) -> Result<Vec<PrLink>> {
        let s = self.lock();
        let mut out: Vec<PrLink> = s
            .pr_links
            .values()
            .filter(|l| l.issue_id == issue)
            .cloned()
            .collect();
        sort_newest_first(&mut out);
        Ok(out)
    }

    async fn pr_links_by_number(&self, pr_number: i64) -> Result<Vec<PrLink>> {
        let s = self.lock();
        let mut out: Vec<PrLink> = s
            .pr_links
            .values()
            .filter(|l| l.pr_number == pr_number)
            .cloned()
            .collect();
        sort_newest_first(&mut out);
        out.reverse();
        Ok(out)
    }

    async fn delete_pr_link(
        &self,
        issue: IssueId,
        id: PrLinkId,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<bool> {
        let mut s = self.lock();
        match s.pr_links.get(&id) {
            Some(l) if l.issue_id == issue => {
                let h = pr_unlink_history(l, actor);
                s.pr_links.remove(&id);
                s.push_history(issue, vec![h], now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[async_trait]
impl crate::ports::SettingStore for MemoryStore {
    async fn get_setting(&self, key: &str) -> Result<Option<serde_json::Value>> {
        Ok(self.lock().settings.get(key).cloned())
    }

    async fn set_setting(
        &self,
        key: &str,
        value: &serde_json::Value,
        _now: Timestamp,
    ) -> Result<()> {
        self.lock().settings.insert(key.to_string(), value.clone());
        Ok(())
    }
}

#[async_trait]
impl AgentStore for MemoryStore {
    async fn create_agent(&self, agent: &Agent) -> Result<Agent> {
        let mut s = self.lock();
        s.workspace_mut(agent.workspace_id)?;
        let key = name_key(&agent.name);
        if s.agents
            .iter()
            .any(|a| a.workspace_id == agent.workspace_id && name_key(&a.name) == key)
        {
            return Err(Error::conflict(format!(
                "an agent named {:?} exists",
                agent.name
            )));
        }
        s.agents.push(agent.clone());
        Ok(agent.clone())
    }

    async fn get_agent_by_name(&self, ws: WorkspaceId, name: &str) -> Result<Option<Agent>> {
        let key = name_key(name);
        Ok(self
            .lock()
            .agents
            .iter()
            .find(|a| a.workspace_id == ws && name_key(&a.name) == key)
            .cloned())
    }

    async fn list_agents(&self, ws: WorkspaceId, include_inactive: bool) -> Result<Vec<Agent>> {
        let s = self.lock();
        let mut out: Vec<Agent> = s
            .agents
            .iter()
            .filter(|a| a.workspace_id == ws && (include_inactive || a.active))
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            name_key(&a.name)
                .cmp(&name_key(&b.name))
                .then(a.id.cmp(&b.id))
        });
        Ok(out)
    }

    async fn set_agent_webhook(
        &self,
        ws: WorkspaceId,
        name: &str,
        webhook: Option<(String, String)>,
        now: Timestamp,
    ) -> Result<Agent> {
        let key = name_key(name);
        let mut s = self.lock();
        let a = s
            .agents
            .iter_mut()
            .find(|a| a.workspace_id == ws && name_key(&a.name) == key)
            .ok_or_else(|| Error::not_found(format!("agent {name:?} not found")))?;
        let (url, secret) = webhook.unzip();
        a.webhook_url = url;
        a.webhook_secret = secret;
        a.updated_at = now;
        Ok(a.clone())
    }

    async fn push_agent_event(
        &self,
        ws: WorkspaceId,
        name: &str,
        event: &NewAgentEvent,
        cap: usize,
        now: Timestamp,
    ) -> Result<i64> {
        let key = name_key(name);
        let mut s = self.lock();
        let id = s
            .agents
            .iter()
            .find(|a| a.workspace_id == ws && name_key(&a.name) == key)
            .map(|a| a.id)
            .ok_or_else(|| Error::not_found(format!("agent {name:?} not found")))?;
        s.agent_event_seq += 1;
        let seq = s.agent_event_seq;
        let q = s.agent_events.entry(id).or_default();
        q.push_back(AgentEvent {
            seq,
            event: event.clone(),
            received_at: now,
        });
        while q.len() > cap {
            q.pop_front();
        }
        Ok(seq)
    }

    async fn take_agent_events(
        &self,
        ws: WorkspaceId,
        name: &str,
        limit: usize,
    ) -> Result<Vec<AgentEvent>> {
        let key = name_key(name);
        let mut s = self.lock();
        let Some(id) = s
            .agents
            .iter()
            .find(|a| a.workspace_id == ws && name_key(&a.name) == key)
            .map(|a| a.id)
        else {
            return Ok(Vec::new());
        };
        let Some(q) = s.agent_events.get_mut(&id) else {
            return Ok(Vec::new());
        };
        let n = limit.min(q.len());
        Ok(q.drain(..n).collect())
    }
}

impl MemoryStore {
    /// Applies a core rule to the session under the store's one lock, and keeps the result.
    fn apply_session(
        &self,
        id: crate::ids::SessionId,
        rule: impl FnOnce(&crate::orchestrator::Session) -> Result<crate::orchestrator::Session>,
    ) -> Result<crate::orchestrator::Session> {
        let mut s = self.lock();
        let cur = s
            .sessions
            .get(&id)
            .ok_or_else(|| Error::not_found(format!("no session {id}")))?;
        let next = rule(cur)?;
        s.sessions.insert(id, next.clone());
        Ok(next)
    }

    /// Applies a core rule to the proposal under the store's one lock, and keeps the result.
    fn apply_proposal(
        &self,
        id: crate::ids::ProposalId,
        rule: impl FnOnce(&crate::orchestrator::Proposal) -> Result<crate::orchestrator::Proposal>,
    ) -> Result<crate::orchestrator::Proposal> {
        let mut s = self.lock();
        let cur = s
            .proposals
            .get(&id)
            .ok_or_else(|| Error::not_found(format!("no proposal {id}")))?;
        let next = rule(cur)?;
        s.proposals.insert(id, next.clone());
        Ok(next)
    }
}

#[async_trait]
impl crate::ports::OrchestratorStore for MemoryStore {
    async fn create_session(
        &self,
        session: &crate::orchestrator::Session,
    ) -> Result<crate::orchestrator::Session> {
        let mut s = self.lock();
        s.workspace_mut(session.workspace_id)?;
        if s.sessions.contains_key(&session.id) {
            return Err(Error::conflict(format!("session {} exists", session.id)));
        }
        s.sessions.insert(session.id, session.clone());
        Ok(session.clone())
    }

    async fn get_session(&self, id: crate::ids::SessionId) -> Result<crate::orchestrator::Session> {
        self.lock()
            .sessions
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("no session {id}")))
    }

    async fn list_sessions(
        &self,
        ws: WorkspaceId,
        limit: usize,
    ) -> Result<Vec<crate::orchestrator::Session>> {
        let s = self.lock();
        let mut out: Vec<_> = s
            .sessions
            .values()
            .filter(|x| x.workspace_id == ws)
            .cloned()
            .collect();
        out.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
        out.truncate(limit);
        Ok(out)
    }

    async fn begin_turn(
        &self,
        id: crate::ids::SessionId,
        turn: uuid::Uuid,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<crate::orchestrator::Session> {
        self.apply_session(id, |cur| {
            crate::orchestrator::begin_turn(cur, turn, now, until)
        })
    }

    async fn end_turn(
        &self,
        id: crate::ids::SessionId,
        turn: uuid::Uuid,
        messages: Vec<crate::ports::LlmMessage>,
        usage: &crate::ports::Usage,
        now: Timestamp,
    ) -> Result<crate::orchestrator::Session> {
        self.apply_session(id, |cur| {
            crate::orchestrator::end_turn(cur, turn, messages, usage, now)
        })
    }

    async fn create_proposal(
        &self,
        proposal: &crate::orchestrator::Proposal,
    ) -> Result<crate::orchestrator::Proposal> {
        let mut s = self.lock();
        if !s.sessions.contains_key(&proposal.session_id) {
            return Err(Error::not_found(format!(
                "no session {}",
                proposal.session_id
            )));
        }
        s.proposals.insert(proposal.id, proposal.clone());
        Ok(proposal.clone())
    }

    async fn get_proposal(
        &self,
        id: crate::ids::ProposalId,
    ) -> Result<crate::orchestrator::Proposal> {
        self.lock()
            .proposals
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("no proposal {id}")))
    }

    async fn list_proposals(
        &self,
        session: crate::ids::SessionId,
    ) -> Result<Vec<crate::orchestrator::Proposal>> {
        // Ids are time-ordered (v7): map order is creation order.
        Ok(self
            .lock()
            .proposals
            .values()
            .filter(|p| p.session_id == session)
            .cloned()
            .collect())
    }

    async fn decide_proposal(
        &self,
        id: crate::ids::ProposalId,
        decision: crate::orchestrator::ProposalDecision,
        now: Timestamp,
    ) -> Result<crate::orchestrator::Proposal> {
        self.apply_proposal(id, |cur| crate::orchestrator::decide(cur, decision, now))
    }

    async fn set_proposal_outcome(
        &self,
        id: crate::ids::ProposalId,
        outcome: &crate::orchestrator::ProposalOutcome,
    ) -> Result<crate::orchestrator::Proposal> {
        self.apply_proposal(id, |cur| {
            let mut next = cur.clone();
            next.outcome = Some(outcome.clone());
            Ok(next)
        })
    }

    async fn recent_run_costs(
        &self,
        kind: crate::run::WorkflowKind,
        limit: usize,
    ) -> Result<Vec<f64>> {
        let s = self.lock();
        let mut done: Vec<&Run> = s
            .runs
            .values()
            .filter(|r| r.kind == kind && r.status.is_terminal() && r.cost_usd > 0.0)
            .collect();
        done.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(done.into_iter().take(limit).map(|r| r.cost_usd).collect())
    }
}

#[async_trait]
impl crate::ports::OutboxStore for MemoryStore {
    async fn enqueue_delivery(
        &self,
        d: &crate::outbox::NewDelivery,
        now: Timestamp,
    ) -> Result<(crate::outbox::Delivery, bool)> {
        d.validate()?;
        Ok(self.lock().enqueue_delivery(d, now))
    }

    async fn claim_deliveries(
        &self,
        kinds: &[String],
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<crate::outbox::Delivery>> {
        use crate::outbox::DeliveryState;
        let mut s = self.lock();
        let waiting = |s: &State, d: &crate::outbox::Delivery| {
            d.after_key.as_ref().is_some_and(|k| {
                s.outbox_keys
                    .get(k)
                    .and_then(|id| s.outbox.get(id))
                    .is_some_and(|p| p.state == DeliveryState::Pending)
            })
        };
        let mut due: Vec<(Timestamp, crate::ids::DeliveryId)> = s
            .outbox
            .values()
            .filter(|d| kinds.contains(&d.kind) && d.claimable(now) && !waiting(&s, d))
            .map(|d| (d.due_at, d.id))
            .collect();
        due.sort();
        due.truncate(limit);
        let mut out = Vec::with_capacity(due.len());
        for (_, id) in due {
            if let Some(d) = s.outbox.get_mut(&id) {
                d.claim(now, lease);
                out.push(d.clone());
            }
        }
        Ok(out)
    }

    async fn settle_delivery(
        &self,
        d: &crate::outbox::Delivery,
        token: uuid::Uuid,
    ) -> Result<bool> {
        let mut s = self.lock();
        match s.outbox.get_mut(&d.id) {
            Some(row)
                if row.state == crate::outbox::DeliveryState::Pending
                    && row.lease_token == Some(token) =>
            {
                *row = d.clone();
                Ok(true)
            }
            Some(_) => Ok(false),
            None => Err(Error::not_found(format!("no delivery {}", d.id))),
        }
    }

    async fn get_delivery(&self, id: crate::ids::DeliveryId) -> Result<crate::outbox::Delivery> {
        self.lock()
            .outbox
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("no delivery {id}")))
    }

    async fn delivery_by_key(&self, key: &str) -> Result<Option<crate::outbox::Delivery>> {
        let s = self.lock();
        Ok(s.outbox_keys
            .get(key)
            .and_then(|id| s.outbox.get(id))
            .cloned())
    }

    async fn prune_outbox(&self, before: Timestamp, limit: usize) -> Result<usize> {
        use crate::outbox::DeliveryState;
        let mut s = self.lock();
        let waited_on: std::collections::HashSet<&str> = s
            .outbox
            .values()
            .filter(|d| d.state == DeliveryState::Pending)
            .filter_map(|d| d.after_key.as_deref())
            .collect();
        let mut gone: Vec<(crate::ids::DeliveryId, String)> = s
            .outbox
            .values()
            .filter(|d| {
                crate::outbox::prunable(d, before, waited_on.contains(d.idempotency_key.as_str()))
            })
            .map(|d| (d.id, d.idempotency_key.clone()))
            .collect();
        gone.sort();
        gone.truncate(limit);
        for (id, key) in &gone {
            s.outbox.remove(id);
            s.outbox_keys.remove(key);
        }
        Ok(gone.len())
    }

    async fn list_deliveries(
        &self,
        filter: &crate::outbox::DeliveryFilter,
    ) -> Result<Vec<crate::outbox::Delivery>> {
        let s = self.lock();
        let mut rows: Vec<crate::outbox::Delivery> = s
            .outbox
            .values()
            .filter(|d| filter.matches(d))
            .cloned()
            .collect();
        rows.sort_by_key(|d| std::cmp::Reverse((d.created_at, d.id)));
        rows.truncate(filter.limit());
        Ok(rows)
    }
}

#[async_trait]
impl crate::ports::ImportStore for MemoryStore {
    async fn apply_import(
        &self,
        ws: WorkspaceId,
        plan: &crate::import::ImportPlan,
        dry_run: bool,
        now: Timestamp,
    ) -> Result<crate::import::ImportReport> {
        let mut s = self.lock();
        let workspace = s.workspace_mut(ws)?.clone();
        let issues_here: HashSet<IssueId> = s
            .issues
            .values()
            .filter(|i| i.workspace_id == ws)
            .map(|i| i.id)
            .collect();
        let customers_here: HashSet<CustomerId> = s
            .customers
            .values()
            .filter(|c| c.workspace_id == ws)
            .map(|c| c.id)
            .collect();
        let taken = crate::import::Taken {
            customer_slugs: s
                .customers
                .values()
                .filter(|c| c.workspace_id == ws)
                .map(|c| c.slug.clone())
                .collect(),
            portal_tokens: s
                .customers
                .values()
                .map(|c| c.portal_token.clone())
                .collect(),
            slack_channels: s
                .customers
                .values()
                .filter_map(|c| c.slack_channel_id.clone())
                .collect(),
            agent_names: s
                .agents
                .iter()
                .filter(|a| a.workspace_id == ws)
                .map(|a| crate::agent::name_key(&a.name))
                .collect(),
            customer_users: s
                .customer_users
                .values()
                .filter(|u| customers_here.contains(&u.customer_id))
                .map(|u| (u.customer_id, u.slack_user_id.clone()))
                .collect(),
            links: plan
                .link_keys()
                .filter(|(src, key)| {
                    s.link_index
                        .contains_key(&(src.to_string(), key.to_string()))
                })
                .map(|(src, key)| (src.to_string(), key.to_string()))
                .collect(),
            pr_links: s
                .pr_links
                .values()
                .filter(|l| issues_here.contains(&l.issue_id))
                .map(|l| (l.issue_id, l.pr_number))
                .collect(),
            fixes: s
                .fixes
                .values()
                .filter(|f| issues_here.contains(&f.issue_id))
                .map(|f| (f.issue_id, f.pr_number))
                .collect(),
        };
        let target = crate::import::ImportTarget {
            columns: s.columns_of(ws),
            labels: s
                .labels
                .iter()
                .filter(|l| l.workspace_id == ws)
                .cloned()
                .collect(),
            imported: s
                .imports
                .iter()
                .filter(|((w, source, _, _), _)| *w == ws && *source == plan.source)
                .map(|((_, _, kind, ext), id)| ((kind.clone(), ext.clone()), *id))
                .collect(),
            used_numbers: s
                .issues
                .values()
                .filter(|i| i.workspace_id == ws)
                .map(|i| i.number)
                .collect(),
            taken,
            workspace,
        };
        let mut write = crate::import::resolve(plan, &target, now)?;
        write.report.dry_run = dry_run;
        if dry_run {
            return Ok(write.report);
        }
        s.agents.extend(write.agents);
        s.labels.extend(write.labels);
        for c in write.customers {
            s.customers.insert(c.id, c);
        }
        for issue in write.issues {
            s.by_identifier.insert(issue.identifier.clone(), issue.id);
            s.issues.insert(issue.id, issue);
        }
        s.comments.extend(write.comments);
        for h in write.history {
            let list = s.history.entry(h.issue_id).or_default();
            list.push(h);
            list.sort_by_key(|e| e.created_at);
        }
        for l in write.links {
            let at = s.links.len();
            s.link_index
                .insert((l.source.clone(), l.external_key.clone()), at);
            s.links.push(l);
        }
        for (issue, customer, _) in write.watchers {
            s.watchers.insert((issue, customer));
        }
        for f in write.fixes {
            s.fixes.insert(f.id, f);
        }
        for u in write.customer_users {
            s.customer_users.insert(u.id, u);
        }
        let mut ran: BTreeSet<IssueId> = BTreeSet::new();
        for r in write.runs {
            ran.insert(r.issue_id);
            s.runs.insert(r.id, r);
        }
        for issue in ran {
            s.recompute_totals(issue);
        }
        for c in write.terminal {
            s.chunks.entry(c.run_id).or_default().push(c);
        }
        for a in write.activities {
            s.activities.entry(a.issue_id).or_default().push(a);
        }
        for l in write.pr_links {
            s.pr_links.insert(l.id, l);
        }
        for x in write.sessions {
            s.sessions.insert(x.id, x);
        }
        for m in write.mappings {
            s.imports.insert(
                (m.workspace_id, m.source, m.kind, m.external_id),
                m.target_id,
            );
        }
        s.workspace_mut(ws)?.next_issue_number = write.next_issue_number;
        Ok(write.report)
    }

    async fn imported_id(
        &self,
        ws: WorkspaceId,
        source: &str,
        kind: &str,
        external_id: &str,
    ) -> Result<Option<uuid::Uuid>> {
        let s = self.lock();
        Ok(s.imports
            .get(&(
                ws,
                source.to_string(),
                kind.to_string(),
                external_id.to_string(),
            ))
            .copied())
    }
}
