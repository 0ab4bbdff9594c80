use crate::Timestamp;
use crate::ids::{HistoryId, IssueId};
use serde::{Deserialize, Serialize};

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    User,
    System,
    Agent,
    /// A webhook delivery (GitHub, Grafana, Sentry).
    Webhook,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub name: String,
}

impl Actor {
    pub fn user(name: impl Into<String>) -> Self {
        Actor {
            kind: ActorKind::User,
            name: name.into(),
        }
    }
    pub fn system(name: impl Into<String>) -> Self {
        Actor {
            kind: ActorKind::System,
            name: name.into(),
        }
    }
    pub fn agent(name: impl Into<String>) -> Self {
        Actor {
            kind: ActorKind::Agent,
            name: name.into(),
        }
    }
    pub fn webhook(name: impl Into<String>) -> Self {
        Actor {
            kind: ActorKind::Webhook,
            name: name.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryAction {
    Created,
    StatusChanged,
    PrLinked,
    PrUnlinked,
    PrStatusChanged,
    Edited,
    PriorityChanged,
    AssigneeChanged,
    LabelAdded,
    LabelRemoved,
    AgentStarted,
    AgentCompleted,
    CommentAdded,
    PlanChanged,
    FixAttemptChanged,
    WatcherAdded,
    WatcherRemoved,
    Reconciled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub id: HistoryId,
    pub issue_id: IssueId,
    pub action: HistoryAction,
    pub old_value: Option<serde_json::Value>,
    pub new_value: Option<serde_json::Value>,
    pub actor: Actor,
    pub created_at: Timestamp,
}

/// A history entry to write in the same transaction as the change it describes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewHistory {
    pub action: HistoryAction,
    pub old_value: Option<serde_json::Value>,
    pub new_value: Option<serde_json::Value>,
    pub actor: Actor,
}

impl NewHistory {
    pub fn new(action: HistoryAction, actor: &Actor) -> Self {
        NewHistory {
            action,
            old_value: None,
            new_value: None,
            actor: actor.clone(),
        }
    }
    pub fn values(
        mut self,
        old: Option<serde_json::Value>,
        new: Option<serde_json::Value>,
    ) -> Self {
        // `Some(null)` and `None` mean the same ("no value") and must survive a JSON round trip.
        self.old_value = old.filter(|v| !v.is_null());
        self.new_value = new.filter(|v| !v.is_null());
        self
    }
    pub fn into_entry(self, issue_id: IssueId, at: Timestamp) -> HistoryEntry {
        HistoryEntry {
            id: HistoryId::new(),
            issue_id,
            action: self.action,
            old_value: self.old_value,
            new_value: self.new_value,
            actor: self.actor,
            created_at: at,
        }
    }
}
