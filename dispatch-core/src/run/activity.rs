use crate::Timestamp;
use crate::error::{Error, Result};
use crate::ids::{ActivityId, IssueId, RunId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Activity types of spec §2.4. Unknown types posted by custom workflows are kept as `Other`
/// (the original did not validate them either) so no agent report is lost.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ActivityType {
    Thought,
    Action,
    Observation,
    ToolCall,
    FileRead,
    FileWrite,
    Search,
    Complete,
    Error,
    AgentHeartbeat,
    AgentFullLog,
    ContextGathered,
    InvestigationComplete,
    InvestigationFailed,
    ImplementationComplete,
    ImplementationFailed,
    BlockerReported,
    QaComplete,
    QaFailed,
    ResearchComplete,
    ResearchFailed,
    TriageComplete,
    Other(String),
}

type Ctor = fn() -> ActivityType;

const KNOWN: &[(&str, Ctor)] = &[
    ("thought", || ActivityType::Thought),
    ("action", || ActivityType::Action),
    ("observation", || ActivityType::Observation),
    ("tool_call", || ActivityType::ToolCall),
    ("file_read", || ActivityType::FileRead),
    ("file_write", || ActivityType::FileWrite),
    ("search", || ActivityType::Search),
    ("complete", || ActivityType::Complete),
    ("error", || ActivityType::Error),
    ("agent_heartbeat", || ActivityType::AgentHeartbeat),
    ("agent_full_log", || ActivityType::AgentFullLog),
    ("context_gathered", || ActivityType::ContextGathered),
    ("investigation_complete", || {
        ActivityType::InvestigationComplete
    }),
    ("investigation_failed", || ActivityType::InvestigationFailed),
    ("implementation_complete", || {
        ActivityType::ImplementationComplete
    }),
    ("implementation_failed", || {
        ActivityType::ImplementationFailed
    }),
    ("blocker_reported", || ActivityType::BlockerReported),
    ("qa_complete", || ActivityType::QaComplete),
    ("qa_failed", || ActivityType::QaFailed),
    ("research_complete", || ActivityType::ResearchComplete),
    ("research_failed", || ActivityType::ResearchFailed),
    ("triage_complete", || ActivityType::TriageComplete),
];

impl ActivityType {
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Error::invalid("type", "activity type must not be empty"));
        }
        if s.len() > 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(Error::invalid(
                "type",
                "activity type must be a short snake_case word",
            ));
        }
        Ok(KNOWN
            .iter()
            .find(|(k, _)| *k == s)
            .map(|(_, f)| f())
            .unwrap_or_else(|| ActivityType::Other(s.to_string())))
    }

    pub fn as_str(&self) -> &str {
        if let ActivityType::Other(s) = self {
            return s;
        }
        KNOWN
            .iter()
            .find(|(_, f)| f() == *self)
            .map(|(k, _)| *k)
            .unwrap_or("other")
    }

    /// The report types a run's result is posted as (timeline "activity_report").
    pub fn is_report(&self) -> bool {
        matches!(
            self,
            ActivityType::InvestigationComplete
                | ActivityType::InvestigationFailed
                | ActivityType::ImplementationComplete
                | ActivityType::ImplementationFailed
                | ActivityType::QaComplete
                | ActivityType::QaFailed
                | ActivityType::ResearchComplete
                | ActivityType::ResearchFailed
                | ActivityType::TriageComplete
        )
    }
}

impl fmt::Display for ActivityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ActivityType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ActivityType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ActivityType::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    pub id: ActivityId,
    pub issue_id: IssueId,
    pub run_id: Option<RunId>,
    #[serde(rename = "type")]
    pub kind: ActivityType,
    pub content: String,
    pub metadata: serde_json::Value,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewActivity {
    pub run_id: Option<RunId>,
    #[serde(rename = "type")]
    pub kind: ActivityType,
    pub content: String,
    pub metadata: serde_json::Value,
    /// The sender's idempotency key: a retried post with the same key is answered with the
    /// activity already stored instead of being stored twice.
    #[serde(default)]
    pub key: Option<String>,
}

impl NewActivity {
    pub fn new(kind: ActivityType, content: impl Into<String>) -> Self {
        NewActivity {
            run_id: None,
            kind,
            content: content.into(),
            metadata: serde_json::Value::Null,
            key: None,
        }
    }

    /// The idempotency key, when it is a usable one.
    pub fn validated_key(&self) -> Result<Option<&str>> {
        match self.key.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(k) if k.len() <= 200 && !k.chars().any(char::is_control) => Ok(Some(k)),
            Some(_) => Err(Error::invalid(
                "idempotencyKey",
                "an idempotency key is at most 200 printable characters",
            )),
        }
    }

    /// A retried post (same key): the stored activity when it says the same; a conflict when
    /// the key was used for another activity.
    pub fn replayed(&self, stored: Activity) -> Result<Activity> {
        if stored.kind == self.kind && stored.content == self.content {
            Ok(stored)
        } else {
            Err(Error::conflict(format!(
                "idempotency key {:?} was used for another activity ({})",
                self.key.as_deref().unwrap_or_default(),
                stored.kind
            )))
        }
    }
    pub fn run(mut self, run_id: RunId) -> Self {
        self.run_id = Some(run_id);
        self
    }
    pub fn into_activity(self, issue_id: IssueId, at: Timestamp) -> Activity {
        Activity {
            id: ActivityId::new(),
            issue_id,
            run_id: self.run_id,
            kind: self.kind,
            content: self.content,
            metadata: self.metadata,
            created_at: at,
        }
    }
}
