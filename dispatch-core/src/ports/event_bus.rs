use crate::error::Result;
use crate::ids::{ActivityId, ColumnId, IssueId, RunId};
use crate::run::RunStatus;
use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

/// A live event. Small on purpose (kind and ids): subscribers read the rows they need, so the
/// same events can travel through PostgreSQL NOTIFY between processes. The one exception is a
/// terminal chunk's text, carried when it is small ([`Event::TerminalChunk::content`]) so that a
/// thousand viewers of a run do not each read the chunk back from the store.
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
        /// The chunk's text and time, when the event carries them (a bus may drop them; then
        /// subscribers read the chunk from the store).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<ChunkText>,
    },
    RunChanged {
        issue_id: IssueId,
        run_id: RunId,
        status: RunStatus,
    },
}

/// A terminal chunk's text as carried by [`Event::TerminalChunk`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkText {
    pub text: String,
    pub at: crate::Timestamp,
}

impl Event {
    /// The same event without the payload a bus may not be able to carry (a large chunk's text).
    pub fn without_payload(self) -> Event {
        match self {
            Event::TerminalChunk {
                issue_id,
                run_id,
                seq,
                ..
            } => Event::TerminalChunk {
                issue_id,
                run_id,
                seq,
                content: None,
            },
            other => other,
        }
    }

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
