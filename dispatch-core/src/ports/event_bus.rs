use crate::error::Result;
use crate::ids::{ActivityId, ColumnId, IssueId, RunId};
use crate::run::RunStatus;
use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

/// A live event. Small on purpose (kind and ids): subscribers read the rows they need, so the
/// same events can travel through PostgreSQL NOTIFY between processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    IssueCreated {
        issue_id: IssueId,
    },
    IssueUpdated {
        issue_id: IssueId,
    },
    IssueMoved {
        issue_id: IssueId,
        from: ColumnId,
        to: ColumnId,
    },
    IssueDeleted {
        issue_id: IssueId,
        identifier: String,
    },
    Activity {
        issue_id: IssueId,
        activity_id: ActivityId,
    },
    TerminalChunk {
        issue_id: IssueId,
        run_id: RunId,
        seq: u64,
    },
    RunChanged {
        issue_id: IssueId,
        run_id: RunId,
        status: RunStatus,
    },
}

impl Event {
    pub fn issue_id(&self) -> IssueId {
        match self {
            Event::IssueCreated { issue_id }
            | Event::IssueUpdated { issue_id }
            | Event::IssueMoved { issue_id, .. }
            | Event::IssueDeleted { issue_id, .. }
            | Event::Activity { issue_id, .. }
            | Event::TerminalChunk { issue_id, .. }
            | Event::RunChanged { issue_id, .. } => *issue_id,
        }
    }
    /// Board events are the ones a board view cares about.
    pub fn is_board_event(&self) -> bool {
        matches!(
            self,
            Event::IssueCreated { .. }
                | Event::IssueUpdated { .. }
                | Event::IssueMoved { .. }
                | Event::IssueDeleted { .. }
        )
    }
}

pub type EventStream = BoxStream<'static, Event>;

#[async_trait]
pub trait EventBus: Send + Sync {
    /// Delivers to every current subscriber, in every process sharing the bus.
    async fn publish(&self, event: Event) -> Result<()>;
    /// Events published from now on. A subscriber that falls far behind loses the oldest events
    /// (and re-reads from the store by sequence number); it never blocks publishers.
    fn subscribe(&self) -> EventStream;
}
