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
    AgentStarted {
        issue: Issue,
        run: Run,
    },
    AgentCompleted {
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
