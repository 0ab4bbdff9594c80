//! Typed identifiers. Primary keys are UUID v7 (time-ordered, so indexes stay append-mostly);
//! issues also have a human identifier `PREFIX-n`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn new() -> Self { Self(Uuid::now_v7()) }
            pub fn as_uuid(&self) -> Uuid { self.0 }
        }
        impl Default for $name {
            fn default() -> Self { Self::new() }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { self.0.fmt(f) }
        }
        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> { Uuid::parse_str(s).map(Self) }
        }
        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self { Self(u) }
        }
    )*};
}

id_type!(
    WorkspaceId,
    /// A board column (the original calls them statuses).
    ColumnId,
    LabelId,
    IssueId,
    CommentId,
    HistoryId,
    RunId,
    ActivityId,
    /// An error-source link (fingerprint or external issue) attached to an issue.
    LinkId,
    FixAttemptId,
    CustomerId,
    /// A person of a customer who reports issues (`dispatch_customer_user`).
    CustomerUserId,
    DeferredSpawnId,
    /// A pull request linked to an issue (`dispatch_issue_pr`).
    PrLinkId,
    /// A registered agent (`dispatch_agent`).
    AgentId,
    /// An orchestrator chat session.
    SessionId,
    /// A dispatch the orchestrator proposed, waiting for the person to confirm it.
    ProposalId,
    /// A notification or outbound webhook in the outbox (`dispatch_outbox`).
    DeliveryId,
);

/// Every API that takes an issue accepts either its UUID or its human identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IssueRef {
    Id(IssueId),
    Identifier(String),
}

impl IssueRef {
    /// Parses a UUID if it is one, otherwise treats the text as an identifier (upper-cased, as
    /// identifiers are case-insensitive for people typing them).
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        match Uuid::parse_str(s) {
            Ok(u) => IssueRef::Id(IssueId(u)),
            Err(_) => IssueRef::Identifier(s.to_ascii_uppercase()),
        }
    }
}

impl From<IssueId> for IssueRef {
    fn from(id: IssueId) -> Self {
        IssueRef::Id(id)
    }
}

impl From<&str> for IssueRef {
    fn from(s: &str) -> Self {
        IssueRef::parse(s)
    }
}

impl fmt::Display for IssueRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IssueRef::Id(id) => id.fmt(f),
            IssueRef::Identifier(s) => f.write_str(s),
        }
    }
}
