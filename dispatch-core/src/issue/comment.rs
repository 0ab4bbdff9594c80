use crate::Timestamp;
use crate::error::{Error, Result};
use crate::ids::{CommentId, IssueId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comment {
    pub id: CommentId,
    pub issue_id: IssueId,
    /// Display name of the author (a person, an agent, or "Dispatch" for system comments).
    pub author: Option<String>,
    pub body: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewComment {
    pub author: Option<String>,
    pub body: String,
}

impl NewComment {
    pub fn validate(&self) -> Result<()> {
        if self.body.trim().is_empty() {
            return Err(Error::invalid("body", "comment body must not be empty"));
        }
        Ok(())
    }
}
