use super::llm::ToolSpec;
use crate::Timestamp;
use crate::error::Result;
use crate::ids::{SessionId, WorkspaceId};
use async_trait::async_trait;
use serde_json::Value;

/// Who is asking, for a tool call made in an orchestrator turn.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolContext {
    pub workspace_id: WorkspaceId,
    pub session_id: SessionId,
    /// The person's name as the session knows it (history records it as the actor).
    pub user: String,
    pub now: Timestamp,
}

/// A set of tools the orchestrator's model may call (mission tools, Loki, read-only SQL, …).
///
/// `call` answers the tool's result as JSON. An `Err` is reported to the model as
/// `{"error": message}` with `is_error: true` and the turn goes on; a provider should make its
/// messages say what to do next (for example "Loki not reachable at … (timed out after 3 s)").
/// Calls must be bounded in time: a provider that reaches a service times out by itself.
#[async_trait]
pub trait ToolProvider: Send + Sync {
    /// A short name for logs and `/help` ("missions", "loki", "sql").
    fn name(&self) -> &str;
    /// The tools, with descriptions and JSON schemas a model can use unaided.
    fn tools(&self) -> Vec<ToolSpec>;
    /// Runs tool `name` (one of [`ToolProvider::tools`]) with the model's `input`.
    async fn call(&self, ctx: &ToolContext, name: &str, input: Value) -> Result<Value>;
}
