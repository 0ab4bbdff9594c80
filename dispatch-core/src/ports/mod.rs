//! The traits the engine needs from the outside world. All object-safe, used as `Arc<dyn …>`.

mod alert_source;
mod embedder;
mod event_bus;
mod llm;
mod notifier;
mod outbox;
mod runner;
mod store;
mod tools;

pub use alert_source::{AlertBatch, AlertRequest, AlertSource};
pub use embedder::Embedder;
pub use event_bus::{ChunkText, Event, EventBus, EventStream};
pub use llm::{
    ContentBlock, DeltaAssembler, Llm, LlmDelta, LlmMessage, LlmRequest, LlmResponse, LlmStream,
    Role, ToolSpec, Usage,
};
pub use notifier::{Notification, Notifier};
pub use outbox::{DeliveryTransport, OutboxStore};
pub use runner::{DispatchReceipt, RemoteRunStatus, RunJob, RunReporter, RunResult, Runner};
pub use store::{
    AgentStore, CustomerStore, DeferredSpawn, DeliveryStore, EmbeddingStore, ErrorLink,
    ErrorLinkStore, FixStore, ImportStore, IngestDraft, IngestOutcome, IssueStore, IssueUpdate,
    OrchestratorStore, PrLinkStore, PrLinkUpsertOutcome, RunStore, RunUpdate, SearchStore,
    SettingStore, SpawnRequest, SpawnReservation, SpawnStats, Store, WorkspaceStore,
};
pub use tools::{ToolContext, ToolProvider};
