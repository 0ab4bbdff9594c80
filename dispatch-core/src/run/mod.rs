//! Agent runs: the six workflow kinds, the run lifecycle, terminal output as numbered chunks,
//! activities, and what recording a spawn does to its issue.

mod activity;
mod reservation;
#[allow(clippy::module_inception)]
mod run;
mod spawn_effects;
mod terminal;
mod usage;

pub use activity::{Activity, ActivityType, NewActivity};
pub use reservation::{GateCounters, ReservationInputs, ReservationPlan, plan_reservation};
pub use run::{
    Blocker, BlockerCategory, BudgetBucket, Liveness, LivenessPolicy, NewRun, Outcome, Run,
    RunPatch, RunStatus, WorkflowKind, liveness,
};
pub use spawn_effects::{
    RunUpdateEffects, RunUpdatePlan, SpawnEffects, external_run_effects, run_end_effects,
    spawn_effects,
};
pub use terminal::{
    ChunkAppend, PAGE_MAX_BYTES, PageBudget, TerminalChunk, plan_chunk_append, replayed_chunk,
};
pub use usage::{CarriedUsage, plan_issue_deletion};
