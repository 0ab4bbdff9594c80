use chrono::Duration;
use serde::{Deserialize, Serialize};

/// The limits the gates enforce. Built from the environment by [`crate::config`] with the
/// original's variable names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpawnPolicy {
    /// `SPAWN_KILL_SWITCH=true`: nothing spawns, not even forced spawns.
    pub kill_switch: bool,
    /// `SPAWN_COOLDOWN_HOURS` (24): after an error run ends, the same fingerprint waits this long.
    pub cooldown: Duration,
    /// `MIN_EVENT_COUNT_TO_SPAWN` (5): occurrences needed before an error spawns.
    pub min_event_count: u64,
    /// `SPAWN_DELAY_MINUTES` (5): wait after first sighting (transient errors go away).
    pub spawn_delay: Duration,
    /// `IMMEDIATE_SPAWN_SOURCES` (ci-deploy, migration, infrastructure): threshold 1, no delay.
    pub immediate_sources: Vec<String>,
    /// `MAX_CONCURRENT_SPAWNS_ERROR` / `_PRD` / `MAX_CONCURRENT_SPAWNS` (global).
    pub max_concurrent_error: u32,
    pub max_concurrent_prd: u32,
    pub max_concurrent_global: u32,
    /// `DAILY_SPAWN_BUDGET_ERROR` / `_PRD` / `DAILY_SPAWN_BUDGET` (global).
    pub daily_budget_error: u32,
    pub daily_budget_prd: u32,
    pub daily_budget_global: u32,
    /// `DAILY_COST_LIMIT_USD` (200; 0 turns it off): sum of today's run costs.
    pub daily_cost_limit_usd: f64,
    /// How soon a spawn deferred for concurrency is tried again.
    pub concurrency_retry: Duration,
}

impl Default for SpawnPolicy {
    fn default() -> Self {
        SpawnPolicy {
            kill_switch: false,
            cooldown: Duration::hours(24),
            min_event_count: 5,
            spawn_delay: Duration::minutes(5),
            immediate_sources: vec![
                "ci-deploy".into(),
                "migration".into(),
                "infrastructure".into(),
            ],
            max_concurrent_error: 100,
            max_concurrent_prd: 100,
            max_concurrent_global: 110,
            daily_budget_error: 1000,
            daily_budget_prd: 1000,
            daily_budget_global: 2000,
            daily_cost_limit_usd: 200.0,
            concurrency_retry: Duration::minutes(1),
        }
    }
}

impl SpawnPolicy {
    /// A policy with no thresholds, delays or limits (tests and examples).
    pub fn permissive() -> Self {
        SpawnPolicy {
            kill_switch: false,
            cooldown: Duration::zero(),
            min_event_count: 1,
            spawn_delay: Duration::zero(),
            immediate_sources: Vec::new(),
            max_concurrent_error: u32::MAX,
            max_concurrent_prd: u32::MAX,
            max_concurrent_global: u32::MAX,
            daily_budget_error: u32::MAX,
            daily_budget_prd: u32::MAX,
            daily_budget_global: u32::MAX,
            daily_cost_limit_usd: 0.0,
            concurrency_retry: Duration::minutes(1),
        }
    }

    pub fn is_immediate(&self, source: &str) -> bool {
        self.immediate_sources
            .iter()
            .any(|s| s.eq_ignore_ascii_case(source.trim()))
    }

    /// (events needed, delay) for an error from `source`.
    pub fn thresholds_for(&self, source: &str) -> (u64, Duration) {
        if self.is_immediate(source) {
            (1, Duration::zero())
        } else {
            (self.min_event_count.max(1), self.spawn_delay)
        }
    }
}

/// Whether the kill switch is on: the environment (`SPAWN_KILL_SWITCH=true`) is a floor that no
/// stored value lifts; otherwise the value last stored through the API or UI, off when never set.
pub fn effective_kill_switch(environment: bool, stored: Option<bool>) -> bool {
    environment || stored.unwrap_or(false)
}
