//! Importing work from elsewhere: a Linear CSV export ([`linear`]) or the original Dispatch's
//! database ([`original`]). The rules are pure: a source is parsed into an [`ImportPlan`] (what
//! the source holds, row problems included); the store, inside one transaction, loads what the
//! workspace already has ([`ImportTarget`], with the keys already taken here: [`Taken`]) and
//! calls [`resolve`], which decides, row by row, what is created, what was imported before (the
//! import map: source + kind + external id → our id), what is left out and why (a key this
//! instance already has, a row the source cannot give us), and which numbers the new issues get.
//! A dry run is the same call with nothing written, so its counts are exactly what a real run
//! would do.

pub mod linear;
pub mod original;

use crate::Timestamp;
use crate::agent::{Agent, name_key, validate_webhook_url};
use crate::customer::{Customer, CustomerUser, NewCustomerUser};
use crate::error::{Error, Result};
use crate::ids::{
    ActivityId, AgentId, CommentId, CustomerId, CustomerUserId, FixAttemptId, IssueId, LabelId,
    LinkId, PrLinkId, RunId, SessionId, WorkspaceId,
};
use crate::issue::{
    Actor, AgentStatus, Column, Comment, HistoryAction, HistoryEntry, Issue, Label, NewHistory,
    NewIssue, NewLabel, PlanFields, Priority, SpawnStatus, Workspace, default_labels,
    format_identifier,
};
use crate::orchestrator::{Session, valid_history};
use crate::ports::{ContentBlock, ErrorLink, LlmMessage, Role};
use crate::pr::PrLink;
use crate::run::{Activity, ActivityType, Outcome, Run, RunStatus, TerminalChunk};
use crate::verify::FixAttempt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

/// Kind of an imported row in the import map.
pub const KIND_ISSUE: &str = "issue";
pub const KIND_CUSTOMER: &str = "customer";
pub const KIND_COMMENT: &str = "comment";
pub const KIND_HISTORY: &str = "history";
pub const KIND_LINK: &str = "link";
pub const KIND_WATCHER: &str = "watcher";
pub const KIND_FIX: &str = "fix_attempt";
pub const KIND_AGENT: &str = "agent";
pub const KIND_CUSTOMER_USER: &str = "customer_user";
pub const KIND_RUN: &str = "run";
pub const KIND_ACTIVITY: &str = "activity";
pub const KIND_PR_LINK: &str = "pr_link";
pub const KIND_SESSION: &str = "session";

/// The summary of a run the source left active: it is imported ended, never as a run holding a
/// slot or waiting for a dispatcher.
pub const STALE_AT_IMPORT: &str = "stale at import: the source still had it running";

/// One issue as the source has it, already mapped to our vocabulary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportIssue {
    /// The source's id of the issue (Linear: `ENG-123`), its key in the import map.
    pub external_id: String,
    /// The line of the source file the row starts on (CSV sources).
    pub line: Option<u64>,
    pub title: String,
    pub description: Option<String>,
    /// The source's status, as written there.
    pub source_status: String,
    /// Our column it goes to (a default column name; see [`linear::column_for_status`]).
    pub column: String,
    pub source_priority: String,
    pub priority: Priority,
    pub assignee: Option<String>,
    /// Label names as the source has them (folded case-insensitively onto ours).
    pub labels: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Keep this number (the original Dispatch's own identifiers) when the workspace has the
    /// same prefix and the number is free; otherwise the issue gets the next number.
    pub number: Option<i64>,
    /// The source's id of the issue's customer (a customer of this plan).
    pub customer: Option<String>,
    /// The source's id of the customer's person who reported it (a customer user of this plan).
    #[serde(default)]
    pub reporter: Option<String>,
    /// The issue's plan (PRD workflow) and its review, as the source left them.
    #[serde(default)]
    pub plan: PlanFields,
    /// Why the agent stopped, and whether the issue waits for a person (`blocked`,
    /// `awaiting_review`; any other agent status is the source's run, imported ended: idle).
    #[serde(default)]
    pub blocked_reason: Option<String>,
    #[serde(default)]
    pub agent_status: AgentStatus,
    /// Write a `created` history entry saying where it came from (sources without history).
    pub record_created: bool,
}

/// A customer (the original Dispatch), its portal token kept so that portal links keep working.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportCustomer {
    pub external_id: String,
    pub name: String,
    pub slug: String,
    pub slack_channel_id: Option<String>,
    pub portal_token: String,
    pub brand_color: Option<String>,
    pub logo_url: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A comment of an imported issue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportComment {
    pub external_id: String,
    pub issue: String,
    pub author: Option<String>,
    pub body: String,
    pub created_at: Timestamp,
}

/// A history entry of an imported issue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportHistory {
    pub external_id: String,
    pub issue: String,
    pub entry: NewHistory,
    pub created_at: Timestamp,
}

/// An error link (fingerprint or external id) of an imported issue, with its counts and cooldown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportLink {
    pub external_id: String,
    pub issue: String,
    pub source: String,
    pub external_key: String,
    pub fingerprint: String,
    pub url: Option<String>,
    pub metadata: serde_json::Value,
    pub event_count: u64,
    pub first_seen_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub cooldown_until: Option<Timestamp>,
}

/// A fix attempt (merged PR under verification) of an imported issue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportFix {
    pub external_id: String,
    pub issue: String,
    /// The attempt as it is (its id and issue are replaced by ours).
    pub attempt: FixAttempt,
}

/// A registered agent (the original's `dispatch_agent`), its webhook secret kept so that the
/// receiver's signature checks keep working.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportAgent {
    pub external_id: String,
    pub name: String,
    pub description: Option<String>,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub active: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A customer's person (a reporter; the original's `dispatch_customer_user`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportCustomerUser {
    pub external_id: String,
    /// The source's id of the customer (a customer of this plan).
    pub customer: String,
    pub slack_user_id: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub email: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An agent run of an imported issue (the original's `dispatch_agent_runs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportRun {
    pub external_id: String,
    pub issue: String,
    /// The run as the source has it (its id and issue are replaced by ours; a run the source
    /// left active is ended by [`resolve`]).
    pub run: Run,
    /// The agent's output as the source kept it (one text): the run's terminal output here.
    #[serde(default)]
    pub transcript: Option<String>,
}

/// An activity (agent activity log entry) of an imported issue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportActivity {
    pub external_id: String,
    pub issue: String,
    /// The source's id of the run it belongs to (a run of this plan).
    pub run: Option<String>,
    pub kind: ActivityType,
    pub content: String,
    pub metadata: serde_json::Value,
    pub created_at: Timestamp,
}

/// A pull request linked to an imported issue (the original's `dispatch_issue_pr`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportPrLink {
    pub external_id: String,
    pub issue: String,
    /// The source's id of the run that opened it (a run of this plan).
    pub run: Option<String>,
    /// The link as it is (its id, issue and run are replaced by ours).
    pub link: PrLink,
}

/// An orchestrator (terminal chat) session: its conversation, the text of it (tool calls of the
/// source's own tools left out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportSession {
    pub external_id: String,
    pub messages: Vec<LlmMessage>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A customer watching an imported issue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportWatcher {
    pub issue: String,
    pub customer: String,
    pub added_at: Timestamp,
}

/// A row the source could not give us, with where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowProblem {
    /// The line of the source file (1 = the header of a CSV file); `None` for the whole file.
    pub line: Option<u64>,
    /// The source's id of the row, when it has one.
    pub external_id: Option<String>,
    /// The kind of row (`issue`, `customer`, `run`, ...; the import map's kinds).
    #[serde(default)]
    pub kind: Option<String>,
    pub message: String,
    /// `true` when the row was left out; `false` for a warning (the row is imported).
    pub skipped: bool,
}

/// What a source holds, mapped to our vocabulary; independent of the workspace it goes to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportPlan {
    /// `linear`.
    pub source: String,
    /// Data rows read (good and bad).
    pub rows: usize,
    pub issues: Vec<ImportIssue>,
    pub customers: Vec<ImportCustomer>,
    pub comments: Vec<ImportComment>,
    pub history: Vec<ImportHistory>,
    pub links: Vec<ImportLink>,
    pub watchers: Vec<ImportWatcher>,
    pub fixes: Vec<ImportFix>,
    #[serde(default)]
    pub agents: Vec<ImportAgent>,
    #[serde(default)]
    pub customer_users: Vec<ImportCustomerUser>,
    #[serde(default)]
    pub runs: Vec<ImportRun>,
    #[serde(default)]
    pub activities: Vec<ImportActivity>,
    #[serde(default)]
    pub pr_links: Vec<ImportPrLink>,
    #[serde(default)]
    pub sessions: Vec<ImportSession>,
    /// The source's own counter: the workspace's ends at least here.
    pub next_issue_number: Option<i64>,
    pub problems: Vec<RowProblem>,
}

/// What the workspace already has, loaded (and locked) by the store for [`resolve`].
#[derive(Debug, Clone)]
pub struct ImportTarget {
    pub workspace: Workspace,
    pub columns: Vec<Column>,
    pub labels: Vec<Label>,
    /// The import map of this source: (kind, external id) → our id.
    pub imported: HashMap<(String, String), Uuid>,
    /// Issue numbers the workspace has used.
    pub used_numbers: HashSet<i64>,
    /// Keys rows here already have (made here, or by another source's import).
    pub taken: Taken,
}

/// The unique keys this instance already has that imported rows could collide with, loaded by
/// the store for [`resolve`]: a row of the plan whose key is taken (and that is not in the import
/// map) is left out and reported; every other row is imported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Taken {
    /// Customer slugs of the workspace.
    pub customer_slugs: HashSet<String>,
    /// Portal tokens and Slack channels of every customer (unique across workspaces).
    pub portal_tokens: HashSet<String>,
    pub slack_channels: HashSet<String>,
    /// Agent names of the workspace, by [`name_key`].
    pub agent_names: HashSet<String>,
    /// (customer, Slack user id) of the people of the workspace's customers.
    pub customer_users: HashSet<(CustomerId, String)>,
    /// (source, external key) of the error links that exist, of those [`ImportPlan::link_keys`]
    /// names (unique across workspaces).
    pub links: HashSet<(String, String)>,
    /// (issue, PR number) of the PR links and the fix attempts of the workspace's issues.
    pub pr_links: HashSet<(IssueId, i64)>,
    pub fixes: HashSet<(IssueId, i64)>,
}

impl ImportPlan {
    /// The (source, external key) of every error link of the plan: the keys a store looks up for
    /// [`Taken::links`].
    pub fn link_keys(&self) -> impl Iterator<Item = (&str, &str)> {
        self.links
            .iter()
            .map(|l| (l.source.as_str(), l.external_key.as_str()))
    }
}

/// A row of the import map: a source's row and what it became here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportMapping {
    pub workspace_id: WorkspaceId,
    pub source: String,
    pub kind: String,
    pub external_id: String,
    pub target_id: Uuid,
}

/// What the store writes, decided by [`resolve`]; rows in dependency order.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportWrite {
    pub labels: Vec<Label>,
    pub customers: Vec<Customer>,
    pub issues: Vec<Issue>,
    pub comments: Vec<Comment>,
    pub history: Vec<HistoryEntry>,
    pub links: Vec<ErrorLink>,
    pub watchers: Vec<(IssueId, CustomerId, Timestamp)>,
    pub fixes: Vec<FixAttempt>,
    pub agents: Vec<Agent>,
    pub customer_users: Vec<CustomerUser>,
    /// Ended runs only (their issues' totals are recomputed from the runs by the store).
    pub runs: Vec<Run>,
    /// The imported runs' transcripts, each the first chunk of its run's terminal output.
    pub terminal: Vec<TerminalChunk>,
    pub activities: Vec<Activity>,
    pub pr_links: Vec<PrLink>,
    pub sessions: Vec<Session>,
    pub mappings: Vec<ImportMapping>,
    /// The workspace's counter after the import (never lowered).
    pub next_issue_number: i64,
    pub report: ImportReport,
}

/// How one source row was (or would be) mapped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowMapping {
    pub line: Option<u64>,
    pub external_id: String,
    /// Our identifier: the new one, or the one an earlier import gave it.
    pub identifier: Option<String>,
    pub source_status: String,
    pub column: String,
    pub source_priority: String,
    pub priority: Priority,
    /// `created`, or `already_imported`.
    pub action: String,
}

/// What an import did, or (dry run) would do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    pub source: String,
    pub dry_run: bool,
    /// Data rows read.
    pub rows: usize,
    pub issues_created: usize,
    /// Rows an earlier import already brought in (nothing written for them).
    pub issues_skipped: usize,
    /// Rows created per kind (`issue`, `customer`, `customer_user`, `agent`, `comment`,
    /// `history`, `link`, `watcher`, `run`, `activity`, `pr_link`, `fix_attempt`).
    pub created: BTreeMap<String, usize>,
    /// Rows an earlier import already brought in, per kind (nothing written for them).
    pub skipped: BTreeMap<String, usize>,
    /// Rows left out, per kind: a key this instance already has (a customer's slug, portal
    /// token or Slack channel, an agent's name, an error link's fingerprint, a PR already
    /// linked, ...), a row whose issue or customer is not imported, a row the source cannot
    /// give us. Each has an entry in `problems` with the reason.
    #[serde(default)]
    pub not_imported: BTreeMap<String, usize>,
    pub labels_created: Vec<String>,
    /// Assignee names the imported issues carry.
    pub assignees: Vec<String>,
    /// Issues per column of ours.
    pub by_column: BTreeMap<String, usize>,
    pub mapping: Vec<RowMapping>,
    pub problems: Vec<RowProblem>,
}

/// The actor of imported history.
pub fn import_actor(source: &str) -> Actor {
    Actor::system(format!("{source} import"))
}

/// The key labels are unique by in a workspace (the stores' `name_key`): trimmed, lower case.
fn label_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Decides what an import writes into `target`, row by row: rows not in the import map yet are
/// created and recorded there; rows already in it are counted as imported before (so a second
/// import creates nothing); rows whose unique key this instance already has ([`Taken`]: made here
/// or by another import) are left out with the reason, as are rows whose issue or customer is not
/// imported — everything else goes in. Issues keep their source number when asked and free
/// under the same prefix, otherwise they get the next numbers of the workspace (in source order),
/// and the counter ends above every number used, so identifiers the workspace issues later never
/// collide. Missing labels are created (colours cycling through the default palette). Runs are
/// imported ended: one the source left active becomes `failed` ([`STALE_AT_IMPORT`]), so it
/// holds no slot and nothing dispatches it. Rows of issues imported earlier attach to those.
/// Pure: the same plan on the same target gives the same decision (ids aside).
pub fn resolve(plan: &ImportPlan, target: &ImportTarget, now: Timestamp) -> Result<ImportWrite> {
    let ws = &target.workspace;
    let actor = import_actor(&plan.source);
    let palette: Vec<String> = default_labels().into_iter().map(|l| l.color).collect();
    let mut labels: HashMap<String, LabelId> = target
        .labels
        .iter()
        .map(|l| (label_key(&l.name), l.id))
        .collect();
    let mut taken = target.taken.clone();
    let mut w = ImportWrite {
        labels: Vec::new(),
        customers: Vec::new(),
        issues: Vec::new(),
        comments: Vec::new(),
        history: Vec::new(),
        links: Vec::new(),
        watchers: Vec::new(),
        fixes: Vec::new(),
        agents: Vec::new(),
        customer_users: Vec::new(),
        runs: Vec::new(),
        terminal: Vec::new(),
        activities: Vec::new(),
        pr_links: Vec::new(),
        sessions: Vec::new(),
        mappings: Vec::new(),
        next_issue_number: ws.next_issue_number,
        report: ImportReport {
            source: plan.source.clone(),
            rows: plan.rows,
            problems: plan.problems.clone(),
            ..ImportReport::default()
        },
    };
    for p in plan.problems.iter().filter(|p| p.skipped) {
        let kind = p.kind.clone().unwrap_or_else(|| "row".into());
        *w.report.not_imported.entry(kind).or_default() += 1;
    }
    let mut ids: HashMap<(&str, String), Uuid> = HashMap::new();
    let map = |w: &mut ImportWrite, kind: &'static str, ext: &str, id: Uuid| {
        *w.report.created.entry(kind.to_string()).or_default() += 1;
        w.mappings.push(ImportMapping {
            workspace_id: ws.id,
            source: plan.source.clone(),
            kind: kind.into(),
            external_id: ext.to_string(),
            target_id: id,
        });
    };
    let known = |kind: &str, ext: &str| {
        target
            .imported
            .get(&(kind.to_string(), ext.to_string()))
            .copied()
    };
    let skip = |w: &mut ImportWrite, kind: &str| {
        *w.report.skipped.entry(kind.to_string()).or_default() += 1;
    };
    // A row left out, with the reason.
    let leave = |w: &mut ImportWrite, kind: &str, ext: &str, message: String| {
        *w.report.not_imported.entry(kind.to_string()).or_default() += 1;
        w.report.problems.push(RowProblem {
            line: None,
            external_id: Some(ext.to_string()),
            kind: Some(kind.to_string()),
            message,
            skipped: true,
        });
    };
    // A row imported with something dropped, with the reason.
    let warn = |w: &mut ImportWrite, kind: &str, ext: &str, message: String| {
        w.report.problems.push(RowProblem {
            line: None,
            external_id: Some(ext.to_string()),
            kind: Some(kind.to_string()),
            message,
            skipped: false,
        });
    };

    for a in &plan.agents {
        if let Some(id) = known(KIND_AGENT, &a.external_id) {
            ids.insert((KIND_AGENT, a.external_id.clone()), id);
            skip(&mut w, KIND_AGENT);
            continue;
        }
        let name = a.name.trim();
        let check = crate::agent::NewAgent {
            name: name.to_string(),
            ..Default::default()
        };
        if let Err(e) = check.validate() {
            leave(&mut w, KIND_AGENT, &a.external_id, e.message);
            continue;
        }
        if !taken.agent_names.insert(name_key(name)) {
            leave(
                &mut w,
                KIND_AGENT,
                &a.external_id,
                format!("an agent named {name:?} exists here"),
            );
            continue;
        }
        let url = a
            .webhook_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty());
        let secret = a
            .webhook_secret
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let webhook = match (url, secret) {
            (Some(u), Some(s)) => match validate_webhook_url("webhook_url", u) {
                Ok(()) => Some((u.to_string(), s.to_string())),
                Err(e) => {
                    warn(
                        &mut w,
                        KIND_AGENT,
                        &a.external_id,
                        format!("{name}: {}; imported without its webhook", e.message),
                    );
                    None
                }
            },
            (Some(_), None) => {
                warn(
                    &mut w,
                    KIND_AGENT,
                    &a.external_id,
                    format!("{name}: a webhook URL without a secret; imported without it"),
                );
                None
            }
            _ => None,
        };
        let agent = Agent {
            id: AgentId::new(),
            workspace_id: ws.id,
            name: name.to_string(),
            description: a
                .description
                .as_deref()
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(str::to_string),
            active: a.active,
            webhook_secret: webhook.as_ref().map(|(_, s)| s.clone()),
            webhook_url: webhook.map(|(u, _)| u),
            created_at: a.created_at,
            updated_at: a.updated_at.max(a.created_at),
        };
        ids.insert((KIND_AGENT, a.external_id.clone()), agent.id.0);
        map(&mut w, KIND_AGENT, &a.external_id, agent.id.0);
        w.agents.push(agent);
    }

    for c in &plan.customers {
        if let Some(id) = known(KIND_CUSTOMER, &c.external_id) {
            ids.insert((KIND_CUSTOMER, c.external_id.clone()), id);
            skip(&mut w, KIND_CUSTOMER);
            continue;
        }
        let clash = if taken.customer_slugs.contains(&c.slug) {
            Some(format!("a customer with slug {:?} exists here", c.slug))
        } else if taken.portal_tokens.contains(&c.portal_token) {
            Some(format!(
                "a customer here has the portal token of {:?}",
                c.slug
            ))
        } else {
            c.slack_channel_id
                .as_ref()
                .filter(|ch| taken.slack_channels.contains(*ch))
                .map(|ch| format!("a customer here has the Slack channel {ch}"))
        };
        if let Some(reason) = clash {
            leave(&mut w, KIND_CUSTOMER, &c.external_id, reason);
            continue;
        }
        if c.portal_token.len() != 64 {
            warn(
                &mut w,
                KIND_CUSTOMER,
                &c.external_id,
                format!(
                    "the portal token of {:?} is not 64 characters: its portal links will not open here; regenerate it",
                    c.slug
                ),
            );
        }
        taken.customer_slugs.insert(c.slug.clone());
        taken.portal_tokens.insert(c.portal_token.clone());
        if let Some(ch) = &c.slack_channel_id {
            taken.slack_channels.insert(ch.clone());
        }
        let customer = Customer {
            id: CustomerId::new(),
            workspace_id: ws.id,
            name: c.name.clone(),
            slug: c.slug.clone(),
            slack_channel_id: c.slack_channel_id.clone(),
            portal_token: c.portal_token.clone(),
            brand_color: c.brand_color.clone(),
            logo_url: c.logo_url.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        };
        ids.insert((KIND_CUSTOMER, c.external_id.clone()), customer.id.0);
        map(&mut w, KIND_CUSTOMER, &c.external_id, customer.id.0);
        w.customers.push(customer);
    }

    for u in &plan.customer_users {
        if let Some(id) = known(KIND_CUSTOMER_USER, &u.external_id) {
            ids.insert((KIND_CUSTOMER_USER, u.external_id.clone()), id);
            skip(&mut w, KIND_CUSTOMER_USER);
            continue;
        }
        let Some(customer) = ids
            .get(&(KIND_CUSTOMER, u.customer.clone()))
            .map(|id| CustomerId(*id))
        else {
            leave(
                &mut w,
                KIND_CUSTOMER_USER,
                &u.external_id,
                format!("its customer {} is not imported", u.customer),
            );
            continue;
        };
        let new = NewCustomerUser {
            slack_user_id: u.slack_user_id.trim().to_string(),
            display_name: u.display_name.clone(),
            avatar_url: u.avatar_url.clone(),
            email: u.email.clone(),
        };
        if let Err(e) = new.validate() {
            leave(&mut w, KIND_CUSTOMER_USER, &u.external_id, e.message);
            continue;
        }
        if !taken
            .customer_users
            .insert((customer, new.slack_user_id.clone()))
        {
            leave(
                &mut w,
                KIND_CUSTOMER_USER,
                &u.external_id,
                format!(
                    "the customer already has a person with Slack user {}",
                    new.slack_user_id
                ),
            );
            continue;
        }
        let mut user = new.merge_into(None, customer, u.created_at);
        user.updated_at = u.updated_at.max(u.created_at);
        ids.insert((KIND_CUSTOMER_USER, u.external_id.clone()), user.id.0);
        map(&mut w, KIND_CUSTOMER_USER, &u.external_id, user.id.0);
        w.customer_users.push(user);
    }
    let users_customer: HashMap<CustomerUserId, CustomerId> = w
        .customer_users
        .iter()
        .map(|u| (u.id, u.customer_id))
        .collect();

    let mut used = target.used_numbers.clone();
    let mut next = ws.next_issue_number.max(1);
    let mut seen: HashSet<&str> = HashSet::new();
    // Kept numbers first, so that a fresh number never takes one a later row keeps.
    for row in &plan.issues {
        if let Some(n) = row.number
            && known(KIND_ISSUE, &row.external_id).is_none()
        {
            used.insert(n);
        }
    }
    for row in &plan.issues {
        if !seen.insert(row.external_id.as_str()) {
            *w.report
                .not_imported
                .entry(KIND_ISSUE.to_string())
                .or_default() += 1;
            w.report.problems.push(RowProblem {
                line: row.line,
                external_id: Some(row.external_id.clone()),
                kind: Some(KIND_ISSUE.into()),
                message: format!(
                    "{} appears twice in the source; the first row counts",
                    row.external_id
                ),
                skipped: true,
            });
            continue;
        }
        let column = target
            .columns
            .iter()
            .find(|c| c.is_named(&row.column))
            .or_else(|| target.columns.first())
            .ok_or_else(|| Error::conflict("the workspace has no columns"))?;
        let mut mapped = RowMapping {
            line: row.line,
            external_id: row.external_id.clone(),
            identifier: None,
            source_status: row.source_status.clone(),
            column: column.name.clone(),
            source_priority: row.source_priority.clone(),
            priority: row.priority,
            action: "created".into(),
        };
        if let Some(id) = known(KIND_ISSUE, &row.external_id) {
            ids.insert((KIND_ISSUE, row.external_id.clone()), id);
            w.report.issues_skipped += 1;
            skip(&mut w, KIND_ISSUE);
            mapped.action = "already_imported".into();
            w.report.mapping.push(mapped);
            continue;
        }
        let mut label_ids = Vec::new();
        for name in &row.labels {
            let k = label_key(name);
            if k.is_empty() {
                continue;
            }
            let id = match labels.get(&k) {
                Some(id) => *id,
                None => {
                    let color = palette[w.labels.len() % palette.len()].clone();
                    let new = NewLabel::new(name.trim(), color);
                    new.validate()?;
                    let l = Label {
                        id: LabelId::new(),
                        workspace_id: ws.id,
                        name: new.name,
                        color: new.color,
                    };
                    labels.insert(k, l.id);
                    w.report.labels_created.push(l.name.clone());
                    let id = l.id;
                    w.labels.push(l);
                    id
                }
            };
            if !label_ids.contains(&id) {
                label_ids.push(id);
            }
        }
        let customer_id = row
            .customer
            .as_ref()
            .and_then(|c| ids.get(&(KIND_CUSTOMER, c.clone())))
            .map(|id| CustomerId(*id));
        if let Some(c) = &row.customer
            && customer_id.is_none()
        {
            warn(
                &mut w,
                KIND_ISSUE,
                &row.external_id,
                format!("its customer {c} is not imported: imported without a customer"),
            );
        }
        // The reporter is a person of the issue's customer (imported now or before).
        let reporter_id = row.reporter.as_ref().and_then(|r| {
            let id = CustomerUserId(*ids.get(&(KIND_CUSTOMER_USER, r.clone()))?);
            match users_customer.get(&id) {
                Some(c) if Some(*c) != customer_id => None,
                _ => customer_id.map(|_| id),
            }
        });
        if let Some(r) = &row.reporter
            && reporter_id.is_none()
        {
            warn(
                &mut w,
                KIND_ISSUE,
                &row.external_id,
                format!("its reporter {r} is not imported: imported without a reporter"),
            );
        }
        let new = NewIssue {
            title: row.title.clone(),
            description: row.description.clone(),
            column_id: Some(column.id),
            priority: row.priority,
            assignee: row.assignee.clone(),
            labels: label_ids,
            customer_id,
            reporter_id,
            // The source's watchers come over as they were, not made here.
            customer_watches: false,
        };
        if let Err(e) = new.validate() {
            *w.report
                .not_imported
                .entry(KIND_ISSUE.to_string())
                .or_default() += 1;
            w.report.problems.push(RowProblem {
                line: row.line,
                external_id: Some(row.external_id.clone()),
                kind: Some(KIND_ISSUE.into()),
                message: e.message.clone(),
                skipped: true,
            });
            continue;
        }
        let number = match row.number {
            Some(n) if n > 0 && !target.used_numbers.contains(&n) => n,
            _ => {
                while used.contains(&next) {
                    next += 1;
                }
                used.insert(next);
                next
            }
        };
        w.next_issue_number = w.next_issue_number.max(number + 1);
        let identifier = format_identifier(&ws.issue_prefix, number);
        if row.number.is_some_and(|n| n != number) {
            w.report.problems.push(RowProblem {
                line: row.line,
                external_id: Some(row.external_id.clone()),
                kind: Some(KIND_ISSUE.into()),
                message: format!(
                    "{} is taken here: imported as {identifier}",
                    row.external_id
                ),
                skipped: false,
            });
        }
        let mut issue =
            new.into_issue(ws.id, number, identifier.clone(), column.id, row.created_at);
        issue.updated_at = row.updated_at.max(row.created_at);
        issue.plan = row.plan.clone();
        issue.blocked_reason = row.blocked_reason.clone();
        // Only the statuses that wait for a person: an agent of the source is not working here.
        issue.agent_status = match row.agent_status {
            AgentStatus::Blocked | AgentStatus::AwaitingReview => row.agent_status,
            _ => AgentStatus::Idle,
        };
        if row.record_created {
            w.history.push(
                NewHistory::new(HistoryAction::Created, &actor)
                    .values(
                        None,
                        Some(serde_json::json!({
                            "source": plan.source,
                            "external_id": row.external_id,
                            "identifier": identifier,
                            "imported_at": now,
                        })),
                    )
                    .into_entry(issue.id, row.created_at),
            );
        }
        mapped.identifier = Some(identifier);
        if let Some(a) = &row.assignee
            && !w.report.assignees.contains(a)
        {
            w.report.assignees.push(a.clone());
        }
        *w.report.by_column.entry(column.name.clone()).or_default() += 1;
        w.report.issues_created += 1;
        w.report.mapping.push(mapped);
        ids.insert((KIND_ISSUE, row.external_id.clone()), issue.id.0);
        map(&mut w, KIND_ISSUE, &row.external_id, issue.id.0);
        w.issues.push(issue);
    }
    if let Some(n) = plan.next_issue_number {
        w.next_issue_number = w.next_issue_number.max(n);
    }

    // Rows of issues: attached to the issue of this import or of an earlier one.
    let issue_of = |ids: &HashMap<(&str, String), Uuid>, ext: &str| {
        ids.get(&(KIND_ISSUE, ext.to_string()))
            .map(|id| IssueId(*id))
    };
    let orphan = |w: &mut ImportWrite, kind: &str, ext: &str, issue: &str| {
        leave(
            w,
            kind,
            ext,
            format!("{kind} {ext} belongs to issue {issue}, which is not imported"),
        );
    };
    // A row of an issue: `None` when it was imported before (counted as skipped) or its issue is
    // not imported (left out, with the reason); else the issue's id here.
    let issue_row = |w: &mut ImportWrite,
                     ids: &HashMap<(&str, String), Uuid>,
                     kind: &'static str,
                     ext: &str,
                     issue: &str| {
        if known(kind, ext).is_some() {
            skip(w, kind);
            return None;
        }
        let id = issue_of(ids, issue);
        if id.is_none() {
            orphan(w, kind, ext, issue);
        }
        id
    };
    for c in &plan.comments {
        let Some(issue_id) = issue_row(&mut w, &ids, KIND_COMMENT, &c.external_id, &c.issue) else {
            continue;
        };
        let comment = Comment {
            id: CommentId::new(),
            issue_id,
            author: c.author.clone(),
            body: c.body.clone(),
            created_at: c.created_at,
        };
        map(&mut w, KIND_COMMENT, &c.external_id, comment.id.0);
        w.comments.push(comment);
    }
    for h in &plan.history {
        let Some(issue_id) = issue_row(&mut w, &ids, KIND_HISTORY, &h.external_id, &h.issue) else {
            continue;
        };
        let entry = h.entry.clone().into_entry(issue_id, h.created_at);
        map(&mut w, KIND_HISTORY, &h.external_id, entry.id.0);
        w.history.push(entry);
    }
    for l in &plan.links {
        let Some(issue_id) = issue_row(&mut w, &ids, KIND_LINK, &l.external_id, &l.issue) else {
            continue;
        };
        if !taken
            .links
            .insert((l.source.clone(), l.external_key.clone()))
        {
            leave(
                &mut w,
                KIND_LINK,
                &l.external_id,
                format!(
                    "the error link {}/{} exists here (another issue has it)",
                    l.source, l.external_key
                ),
            );
            continue;
        }
        let link = ErrorLink {
            id: LinkId::new(),
            issue_id,
            source: l.source.clone(),
            external_key: l.external_key.clone(),
            fingerprint: l.fingerprint.clone(),
            url: l.url.clone(),
            metadata: l.metadata.clone(),
            event_count: l.event_count,
            first_seen_at: l.first_seen_at,
            last_seen_at: l.last_seen_at,
            cooldown_until: l.cooldown_until,
        };
        map(&mut w, KIND_LINK, &l.external_id, link.id.0);
        w.links.push(link);
    }
    for x in &plan.watchers {
        let ext = format!("{}|{}", x.issue, x.customer);
        let Some(issue_id) = issue_row(&mut w, &ids, KIND_WATCHER, &ext, &x.issue) else {
            continue;
        };
        let Some(customer) = ids.get(&(KIND_CUSTOMER, x.customer.clone())) else {
            leave(
                &mut w,
                KIND_WATCHER,
                &ext,
                format!("its customer {} is not imported", x.customer),
            );
            continue;
        };
        map(&mut w, KIND_WATCHER, &ext, issue_id.0);
        w.watchers
            .push((issue_id, CustomerId(*customer), x.added_at));
    }
    for r in &plan.runs {
        if let Some(id) = known(KIND_RUN, &r.external_id) {
            ids.insert((KIND_RUN, r.external_id.clone()), id);
            skip(&mut w, KIND_RUN);
            continue;
        }
        let Some(issue_id) = issue_of(&ids, &r.issue) else {
            orphan(&mut w, KIND_RUN, &r.external_id, &r.issue);
            continue;
        };
        let mut run = ended_run(&r.run, now);
        if run.status != r.run.status {
            warn(
                &mut w,
                KIND_RUN,
                &r.external_id,
                format!(
                    "the source still had it {}: imported as failed ({STALE_AT_IMPORT})",
                    r.run.status
                ),
            );
        }
        run.id = RunId::new();
        run.issue_id = issue_id;
        if let Some(t) = r.transcript.as_ref().filter(|t| !t.trim().is_empty()) {
            w.terminal.push(TerminalChunk {
                run_id: run.id,
                seq: 1,
                content: t.clone(),
                at: run.completed_at.unwrap_or(run.created_at),
            });
        }
        ids.insert((KIND_RUN, r.external_id.clone()), run.id.0);
        map(&mut w, KIND_RUN, &r.external_id, run.id.0);
        w.runs.push(run);
    }
    // The newest imported run of each new issue is the issue's last run.
    for issue in &mut w.issues {
        if let Some(last) = w
            .runs
            .iter()
            .filter(|r| r.issue_id == issue.id)
            .max_by_key(|r| (r.created_at, r.id))
        {
            issue.spawn_status = Some(match last.status {
                RunStatus::Completed => SpawnStatus::Completed,
                RunStatus::Cancelled => SpawnStatus::Cancelled,
                _ => SpawnStatus::Failed,
            });
            issue.spawn_kind = Some(last.kind);
            issue.spawn_started_at = last.started_at.or(Some(last.created_at));
            issue.spawn_completed_at = last.completed_at;
            issue.spawn_attempt_count = w
                .runs
                .iter()
                .filter(|r| r.issue_id == issue.id)
                .count()
                .try_into()
                .unwrap_or(u32::MAX);
            issue.model = last.model.clone();
            issue.run_outcome = last.outcome;
            issue.outcome_summary = last.outcome_summary.clone();
        }
    }
    let run_of = |ids: &HashMap<(&str, String), Uuid>, ext: &Option<String>| {
        ext.as_ref()
            .and_then(|x| ids.get(&(KIND_RUN, x.clone())))
            .map(|id| RunId(*id))
    };
    for a in &plan.activities {
        let Some(issue_id) = issue_row(&mut w, &ids, KIND_ACTIVITY, &a.external_id, &a.issue)
        else {
            continue;
        };
        let activity = Activity {
            id: ActivityId::new(),
            issue_id,
            run_id: run_of(&ids, &a.run),
            kind: a.kind.clone(),
            content: a.content.clone(),
            metadata: a.metadata.clone(),
            created_at: a.created_at,
        };
        map(&mut w, KIND_ACTIVITY, &a.external_id, activity.id.0);
        w.activities.push(activity);
    }
    for p in &plan.pr_links {
        let Some(issue_id) = issue_row(&mut w, &ids, KIND_PR_LINK, &p.external_id, &p.issue) else {
            continue;
        };
        if p.link.pr_number <= 0 {
            leave(
                &mut w,
                KIND_PR_LINK,
                &p.external_id,
                format!(
                    "PR number {} is not a pull request number",
                    p.link.pr_number
                ),
            );
            continue;
        }
        if !taken.pr_links.insert((issue_id, p.link.pr_number)) {
            leave(
                &mut w,
                KIND_PR_LINK,
                &p.external_id,
                format!(
                    "PR #{} is linked to issue {} here already",
                    p.link.pr_number, p.issue
                ),
            );
            continue;
        }
        let link = PrLink {
            id: PrLinkId::new(),
            issue_id,
            run_id: run_of(&ids, &p.run),
            ..p.link.clone()
        };
        map(&mut w, KIND_PR_LINK, &p.external_id, link.id.0);
        w.pr_links.push(link);
    }
    for x in &plan.sessions {
        if known(KIND_SESSION, &x.external_id).is_some() {
            skip(&mut w, KIND_SESSION);
            continue;
        }
        if x.messages.is_empty() {
            leave(
                &mut w,
                KIND_SESSION,
                &x.external_id,
                "the conversation has no text to keep".into(),
            );
            continue;
        }
        if let Err(e) = valid_history(&x.messages) {
            leave(
                &mut w,
                KIND_SESSION,
                &x.external_id,
                format!("not a conversation the model can continue: {}", e.message),
            );
            continue;
        }
        let mut session = Session::new(ws.id, x.created_at);
        session.id = SessionId::new();
        session.title = session_title(&x.messages);
        session.messages = x.messages.clone();
        session.updated_at = x.updated_at.max(x.created_at);
        map(&mut w, KIND_SESSION, &x.external_id, session.id.0);
        w.sessions.push(session);
    }
    for f in &plan.fixes {
        let Some(issue_id) = issue_row(&mut w, &ids, KIND_FIX, &f.external_id, &f.issue) else {
            continue;
        };
        // One attempt per (issue, PR), as the stores keep them.
        if !taken.fixes.insert((issue_id, f.attempt.pr_number)) {
            leave(
                &mut w,
                KIND_FIX,
                &f.external_id,
                format!(
                    "issue {} already has a fix attempt for PR #{}",
                    f.issue, f.attempt.pr_number
                ),
            );
            continue;
        }
        let attempt = FixAttempt {
            id: FixAttemptId::new(),
            issue_id,
            ..f.attempt.clone()
        };
        map(&mut w, KIND_FIX, &f.external_id, attempt.id.0);
        w.fixes.push(attempt);
    }
    Ok(w)
}

/// A session's title: its first words from the person (as a turn names a new session).
fn session_title(messages: &[LlmMessage]) -> String {
    messages
        .iter()
        .filter(|m| m.role == Role::User)
        .flat_map(|m| &m.content)
        .find_map(|b| match b {
            ContentBlock::Text { text } => Some(text),
            _ => None,
        })
        .map(|t| t.chars().take(80).collect::<String>().trim().to_string())
        .unwrap_or_default()
}

/// An imported run as it is stored: ended (a run the source left queued or running is `failed`
/// at `now`, [`STALE_AT_IMPORT`]), with no dispatcher bookkeeping — no lease, no claim, no cancel
/// request, no cooldown to set — and no runner of this instance, so no sweeper or dispatcher
/// takes it up and no callback can move it.
pub fn ended_run(run: &Run, now: Timestamp) -> Run {
    let mut r = run.clone();
    let began = r.started_at.unwrap_or(r.created_at);
    if !r.status.is_terminal() {
        r.status = RunStatus::Failed;
        r.outcome = Some(r.outcome.unwrap_or(Outcome::Failed));
        r.outcome_summary = Some(match r.outcome_summary.take() {
            Some(s) if !s.trim().is_empty() => format!("{s} ({STALE_AT_IMPORT})"),
            _ => STALE_AT_IMPORT.to_string(),
        });
        r.completed_at = Some(r.completed_at.unwrap_or(now).max(began));
    }
    // An ended run the source kept no end time for ended, as far as we know, when it began.
    r.completed_at = Some(r.completed_at.unwrap_or(began));
    r.not_before = r.created_at;
    r.lease_until = None;
    r.cancel_requested_at = None;
    r.cooldown_seconds = None;
    r.claim = 0;
    r.updated_at = r.completed_at.unwrap_or(now).max(r.created_at);
    r
}

/// Imports a Linear CSV export into the workspace (or, `dry_run`, reports what that would do).
/// The use-case behind `dispatch import linear` and `POST /api/import`.
pub async fn import_linear(
    store: &dyn crate::ports::Store,
    ws: WorkspaceId,
    csv: &[u8],
    dry_run: bool,
    now: Timestamp,
) -> Result<ImportReport> {
    let plan = linear::parse(csv, now)?;
    store.apply_import(ws, &plan, dry_run, now).await
}

#[cfg(test)]
mod tests;
