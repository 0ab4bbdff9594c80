//! Spawn gates (spec §5.4–5.7 with DESIGN §4's fixes) as one pure function:
//! `decide(policy, snapshot, now) -> Decision`.
//!
//! Order: kill switch → cooldown → minimum events → spawn delay → concurrency (kind, then global)
//! → daily spawn budget (kind, then global) → daily cost. `force` skips everything but the kill
//! switch. Cooldown, minimum events and delay apply to spawns triggered by an error alert only.
//! Days are UTC days.

mod decide;
mod policy;

pub use decide::{Decision, GateReason, GateSnapshot, LimitScope, Trigger, decide};
pub use policy::{SpawnPolicy, effective_kill_switch};

#[cfg(test)]
mod tests;
