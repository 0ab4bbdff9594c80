use crate::error::Result;
use crate::issue::{Comment, Issue};
use crate::run::Run;
use crate::verify::FixAttempt;
use async_trait::async_trait;

/// Something people may want to hear about (Slack, email, outbound webhooks).
#[derive(Debug, Clone, PartialEq)]
pub enum Notification {
    NewError {
        issue: Issue,
        event_count: u64,
    },
    /// An issue created by a person, an agent or the API (not by an error alert: `NewError`).
    IssueCreated {
        issue: Issue,
    },
    /// Fields other than the column changed (`changes` names them).
    IssueUpdated {
        issue: Issue,
        changes: Vec<String>,
    },
    IssueDeleted {
        issue: Issue,
    },
    /// The issue got a new (non-empty) assignee.
    IssueAssigned {
        issue: Issue,
    },
    AgentStarted {
        issue: Issue,
        run: Run,
    },
    AgentCompleted {
        issue: Issue,
        run: Run,
    },
    /// A running agent's cost reached 90 % of the per-run budget.
    BudgetWarning {
        issue: Issue,
        run: Run,
    },
    StatusChanged {
        issue: Issue,
        from: String,
        to: String,
    },
    CommentAdded {
        issue: Issue,
        comment: Comment,
    },
    FixFailed {
        issue: Issue,
        attempt: FixAttempt,
    },
    FixVerified {
        issue: Issue,
        attempt: FixAttempt,
    },
}

#[async_trait]
pub trait Notifier: Send + Sync {
    /// Best effort: the engine logs a failure and carries on.
    async fn notify(&self, notification: &Notification) -> Result<()>;
}
