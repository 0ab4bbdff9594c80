//! The orchestrator: a person types what they want done; a model, through tools, searches the
//! board, scopes the work and proposes dispatches; the person confirms; the engine spawns.
//!
//! - [`session`]: the conversation and its one running turn (a lease).
//! - [`proposal`]: dispatches held until the person confirms them.
//! - [`turn`]: the loop over a streaming [`crate::ports::Llm`], relaying text as it arrives.
//! - [`missions`]: the built-in tools over the engine; other tool sets plug in as
//!   [`crate::ports::ToolProvider`]s (Loki, read-only SQL).
//! - [`commands`]: slash commands answered without a model round.

pub mod commands;
pub mod missions;
pub mod proposal;
pub mod session;
pub mod turn;

pub use proposal::{
    Proposal, ProposalDecision, ProposalOutcome, ProposalStatus, ProposalTarget, decide,
    estimate_cost,
};
pub use session::{Session, begin_turn, end_turn, valid_history, window};
pub use turn::{Orchestrator, OrchestratorConfig, Turn, TurnEvent, TurnRequest};
