use crate::Timestamp;
use crate::error::{Error, Result};
use crate::ids::{ColumnId, CustomerId, CustomerUserId, IssueId, LabelId, RunId, WorkspaceId};
use crate::plan::PlanStatus;
use crate::run::{Outcome, WorkflowKind};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// P1 (critical) … P4 (low); P3 is the default.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub enum Priority {
    P1,
    P2,
    #[default]
    P3,
    P4,
}

impl Priority {
    /// One step more urgent (P4→P3 … P1 stays P1), used when a fix fails.
    pub fn escalate(self) -> Self {
        match self {
            Priority::P4 => Priority::P3,
            Priority::P3 => Priority::P2,
            Priority::P2 | Priority::P1 => Priority::P1,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::P1 => "P1",
            Priority::P2 => "P2",
            Priority::P3 => "P3",
            Priority::P4 => "P4",
        }
    }
    pub fn rank(self) -> u8 {
        self as u8 + 1
    }
    pub fn is_high(self) -> bool {
        matches!(self, Priority::P1 | Priority::P2)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = Error;
    /// Accepts `P1`..`P4` and the words the original maps to them.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "p1" | "1" | "critical" | "urgent" => Ok(Priority::P1),
            "p2" | "2" | "high" => Ok(Priority::P2),
            "p3" | "3" | "medium" | "normal" => Ok(Priority::P3),
            "p4" | "4" | "low" => Ok(Priority::P4),
            _ => Err(Error::invalid(
                "priority",
                format!("unknown priority {s:?} (P1-P4)"),
            )),
        }
    }
}

text_enum!(
    /// What the agent on an issue is doing (spec §2.4).
    AgentStatus {
        Idle = "idle",
        Investigating = "investigating",
        Implementing = "implementing",
        Testing = "testing",
        Researching = "researching",
        Triaging = "triaging",
        Blocked = "blocked",
        AwaitingReview = "awaiting_review",
    }
);

#[allow(clippy::derivable_impls)] // the variants come from a macro that cannot mark one #[default]
impl Default for AgentStatus {
    fn default() -> Self {
        AgentStatus::Idle
    }
}

text_enum!(
    /// The spawn state of an issue, mirroring its current run.
    SpawnStatus {
        Queued = "queued",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
    }
);

impl SpawnStatus {
    pub fn is_active(self) -> bool {
        matches!(self, SpawnStatus::Queued | SpawnStatus::Running)
    }
}

/// The plan of a PRD issue (spec §7.5). `status` is `None` until an investigation starts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PlanFields {
    pub status: Option<PlanStatus>,
    pub content: Option<String>,
    pub feedback: Option<String>,
    pub approved_at: Option<Timestamp>,
    pub approved_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    pub id: IssueId,
    pub workspace_id: WorkspaceId,
    pub identifier: String,
    pub number: i64,
    pub title: String,
    pub description: Option<String>,
    pub column_id: ColumnId,
    pub priority: Priority,
    /// Agent or person the issue is assigned to, by name.
    pub assignee: Option<String>,
    pub labels: Vec<LabelId>,
    pub customer_id: Option<CustomerId>,
    /// The customer's person who reported it (chat intake).
    #[serde(default)]
    pub reporter_id: Option<CustomerUserId>,

    pub agent_status: AgentStatus,
    pub spawn_status: Option<SpawnStatus>,
    pub spawn_kind: Option<WorkflowKind>,
    pub current_run_id: Option<RunId>,
    pub spawn_attempt_count: u32,
    pub spawn_started_at: Option<Timestamp>,
    pub spawn_completed_at: Option<Timestamp>,

    pub plan: PlanFields,
    pub blocked_reason: Option<String>,

    /// Totals over all runs of this issue; recomputed from the runs, never incremented, so a
    /// retried callback cannot double count.
    pub cost_usd: f64,
    pub num_turns: u32,
    pub model: Option<String>,
    pub run_outcome: Option<Outcome>,
    pub outcome_summary: Option<String>,

    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Optimistic-concurrency version, bumped by every update.
    pub version: i64,
}

/// What a caller supplies to create an issue; the store allocates the identifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewIssue {
    pub title: String,
    pub description: Option<String>,
    /// `None` puts the issue in the first open column (Backlog).
    pub column_id: Option<ColumnId>,
    pub priority: Priority,
    pub assignee: Option<String>,
    pub labels: Vec<LabelId>,
    pub customer_id: Option<CustomerId>,
    /// The customer's person who reported it (a person of `customer_id`).
    pub reporter_id: Option<CustomerUserId>,
    /// `customer_id` watches the issue from its creation (written in the creation's
    /// transaction: an issue reported from a customer's chat channel is never left unwatched by
    /// a crash right after it was made).
    #[serde(default)]
    pub customer_watches: bool,
}

impl Issue {
    /// Its customer was deleted: the issue stays, without a customer or reporter.
    pub fn detach_customer(&mut self) {
        self.customer_id = None;
        self.reporter_id = None;
    }
}

impl NewIssue {
    pub fn titled(title: impl Into<String>) -> Self {
        NewIssue {
            title: title.into(),
            description: None,
            column_id: None,
            priority: Priority::P3,
            assignee: None,
            labels: Vec::new(),
            customer_id: None,
            reporter_id: None,
            customer_watches: false,
        }
    }

    /// The watcher the new issue starts with: its customer, when it watches.
    pub fn initial_watcher(&self) -> Option<CustomerId> {
        self.customer_id.filter(|_| self.customer_watches)
    }

    /// The new issue row, once the store has allocated its number and chosen its column. Every
    /// store builds issues with this, so they start out identical.
    pub fn into_issue(
        self,
        workspace_id: WorkspaceId,
        number: i64,
        identifier: String,
        column_id: ColumnId,
        now: crate::Timestamp,
    ) -> Issue {
        Issue {
            id: IssueId::new(),
            workspace_id,
            identifier,
            number,
            title: self.title.trim().to_string(),
            description: self.description,
            column_id,
            priority: self.priority,
            assignee: self.assignee,
            labels: self.labels,
            customer_id: self.customer_id,
            reporter_id: self.reporter_id,
            agent_status: AgentStatus::default(),
            spawn_status: None,
            spawn_kind: None,
            current_run_id: None,
            spawn_attempt_count: 0,
            spawn_started_at: None,
            spawn_completed_at: None,
            plan: PlanFields::default(),
            blocked_reason: None,
            cost_usd: 0.0,
            num_turns: 0,
            model: None,
            run_outcome: None,
            outcome_summary: None,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.title.trim().is_empty() {
            return Err(Error::invalid("title", "title is required"));
        }
        if self.title.chars().count() > 500 {
            return Err(Error::invalid(
                "title",
                "title is longer than 500 characters",
            ));
        }
        Ok(())
    }
}

/// List filter; all fields optional and combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IssueFilter {
    pub column_id: Option<ColumnId>,
    pub customer_id: Option<CustomerId>,
    /// Issues this customer watches.
    pub watched_by: Option<CustomerId>,
    pub spawn_active: Option<bool>,
    pub label_id: Option<LabelId>,
    /// Issues assigned to this name (compared case-insensitively).
    pub assignee: Option<String>,
    /// Only issues with `number < before_number` (cursor paging, newest first).
    pub before_number: Option<i64>,
    pub limit: Option<usize>,
}
