use super::policy::SpawnPolicy;
use crate::Timestamp;
use crate::run::BudgetBucket;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a spawn was asked for. Thresholds, delay and cooldown only make sense for an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Trigger {
    /// An error alert for a fingerprint.
    Alert {
        source: String,
        event_count: u64,
        first_seen_at: Timestamp,
        cooldown_until: Option<Timestamp>,
    },
    /// A person, an API call, a plan approval or an orchestrator tool.
    Manual,
}

/// The counters the gates read, taken inside the same transaction that records the spawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateSnapshot {
    pub bucket: BudgetBucket,
    pub trigger: Trigger,
    pub force: bool,
    /// Active (queued, dispatching, running) runs per bucket.
    pub active_error: u32,
    pub active_prd: u32,
    /// Runs reserved today (UTC) per bucket.
    pub spawned_today_error: u32,
    pub spawned_today_prd: u32,
    /// Sum of today's run costs.
    pub cost_today_usd: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitScope {
    Error,
    Prd,
    Global,
}

impl LimitScope {
    fn as_str(self) -> &'static str {
        match self {
            LimitScope::Error => "error",
            LimitScope::Prd => "prd",
            LimitScope::Global => "global",
        }
    }
}

/// Why a gate did not allow a spawn. [`GateReason::code`] is the machine-readable form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum GateReason {
    KillSwitch,
    Cooldown {
        until: Timestamp,
    },
    BelowEventThreshold {
        need: u64,
        have: u64,
        source: String,
    },
    SpawnDelay {
        until: Timestamp,
        minutes: i64,
        source: String,
    },
    ConcurrencyLimit {
        scope: LimitScope,
        limit: u32,
    },
    DailyBudget {
        scope: LimitScope,
        limit: u32,
    },
    DailyCost {
        limit_usd: f64,
        spent_usd: f64,
    },
    /// The issue already has an active run (checked by the store before the gates).
    AlreadyRunning,
}

impl GateReason {
    pub fn code(&self) -> &'static str {
        match self {
            GateReason::KillSwitch => "kill_switch",
            GateReason::Cooldown { .. } => "cooldown",
            GateReason::BelowEventThreshold { .. } => "below_event_threshold",
            GateReason::SpawnDelay { .. } => "spawn_delay",
            GateReason::ConcurrencyLimit { .. } => "concurrency_limit",
            GateReason::DailyBudget { .. } => "daily_budget",
            GateReason::DailyCost { .. } => "daily_cost",
            GateReason::AlreadyRunning => "already_running",
        }
    }

    /// A sentence for a person: what stopped the spawn and what happens or what to do.
    pub fn explain(&self) -> String {
        match self {
            GateReason::KillSwitch => "the kill switch is on: no agent starts until a person \
                 turns it off (fleet page, or PUT /api/spawns/kill-switch)"
                .into(),
            GateReason::Cooldown { until } => format!(
                "this error is cooling down after a recent agent run, until {}",
                until.format("%H:%M UTC")
            ),
            GateReason::BelowEventThreshold { need, have, source } => format!(
                "{source} has seen {have} of the {need} events needed before an agent starts"
            ),
            GateReason::SpawnDelay {
                minutes, source, ..
            } => format!(
                "{source} errors wait {minutes} min after they are first seen; it is tried \
                 again then by itself"
            ),
            GateReason::ConcurrencyLimit { scope, limit } => format!(
                "the {} limit of {limit} agents at once is reached; it is tried again when one \
                 finishes",
                scope.as_str()
            ),
            GateReason::DailyBudget { scope, limit } => format!(
                "today's {} budget of {limit} agents is spent (it resets at midnight UTC)",
                scope.as_str()
            ),
            GateReason::DailyCost {
                limit_usd,
                spent_usd,
            } => format!(
                "today's agents cost ${spent_usd:.2}, the ${limit_usd:.2} daily limit (it resets \
                 at midnight UTC)"
            ),
            GateReason::AlreadyRunning => "the issue already has an agent".into(),
        }
    }
}

/// The human form keeps the original's strings (`below_event_threshold (need 5, source=x)`), which
/// scripts and dashboards already match on.
impl fmt::Display for GateReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GateReason::KillSwitch => f.write_str("kill_switch"),
            GateReason::Cooldown { .. } => f.write_str("cooldown"),
            GateReason::BelowEventThreshold { need, have, source } => {
                write!(
                    f,
                    "below_event_threshold (need {need}, have {have}, source={source})"
                )
            }
            GateReason::SpawnDelay {
                minutes, source, ..
            } => {
                write!(
                    f,
                    "spawn_delay (waiting {minutes}m after first seen, source={source})"
                )
            }
            GateReason::ConcurrencyLimit { scope, limit } => {
                write!(
                    f,
                    "concurrency_limit ({} limit {limit} reached)",
                    scope.as_str()
                )
            }
            GateReason::DailyBudget { scope, limit } => {
                write!(
                    f,
                    "daily_budget ({} budget {limit} spent today, UTC)",
                    scope.as_str()
                )
            }
            GateReason::DailyCost {
                limit_usd,
                spent_usd,
            } => {
                write!(
                    f,
                    "daily_cost (${spent_usd:.2} of ${limit_usd:.2} spent today, UTC)"
                )
            }
            GateReason::AlreadyRunning => f.write_str("already_running"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Allow,
    /// Try again at `until`; the sweeper does, so nothing waits for another alert.
    Defer {
        until: Timestamp,
        reason: GateReason,
    },
    Deny {
        reason: GateReason,
    },
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow)
    }
    pub fn reason(&self) -> Option<&GateReason> {
        match self {
            Decision::Allow => None,
            Decision::Defer { reason, .. } | Decision::Deny { reason } => Some(reason),
        }
    }
}

/// The gate decision. Pure: no I/O, no clock but `now`.
pub fn decide(policy: &SpawnPolicy, s: &GateSnapshot, now: Timestamp) -> Decision {
    if policy.kill_switch {
        return Decision::Deny {
            reason: GateReason::KillSwitch,
        };
    }
    if s.force {
        return Decision::Allow;
    }
    if let Trigger::Alert {
        source,
        event_count,
        first_seen_at,
        cooldown_until,
    } = &s.trigger
    {
        if let Some(until) = cooldown_until
            && *until > now
        {
            // A new alert after the cooldown re-evaluates; nothing is scheduled for a
            // fingerprint that may have gone quiet.
            return Decision::Deny {
                reason: GateReason::Cooldown { until: *until },
            };
        }
        let (need, delay) = policy.thresholds_for(source);
        if *event_count < need {
            return Decision::Deny {
                reason: GateReason::BelowEventThreshold {
                    need,
                    have: *event_count,
                    source: source.clone(),
                },
            };
        }
        let ready_at = *first_seen_at + delay;
        // No delay means no wait, even if `first_seen_at` is a little ahead of `now` (skew).
        if delay > chrono::Duration::zero() && ready_at > now {
            return Decision::Defer {
                until: ready_at,
                reason: GateReason::SpawnDelay {
                    until: ready_at,
                    minutes: delay.num_minutes(),
                    source: source.clone(),
                },
            };
        }
    }

    let (active, kind_limit, kind_scope) = match s.bucket {
        BudgetBucket::Error => (
            s.active_error,
            policy.max_concurrent_error,
            LimitScope::Error,
        ),
        BudgetBucket::Prd => (s.active_prd, policy.max_concurrent_prd, LimitScope::Prd),
    };
    let retry_at = now + policy.concurrency_retry;
    if active >= kind_limit {
        return Decision::Defer {
            until: retry_at,
            reason: GateReason::ConcurrencyLimit {
                scope: kind_scope,
                limit: kind_limit,
            },
        };
    }
    if s.active_error.saturating_add(s.active_prd) >= policy.max_concurrent_global {
        return Decision::Defer {
            until: retry_at,
            reason: GateReason::ConcurrencyLimit {
                scope: LimitScope::Global,
                limit: policy.max_concurrent_global,
            },
        };
    }

    let (spawned, budget) = match s.bucket {
        BudgetBucket::Error => (s.spawned_today_error, policy.daily_budget_error),
        BudgetBucket::Prd => (s.spawned_today_prd, policy.daily_budget_prd),
    };
    if spawned >= budget {
        return Decision::Deny {
            reason: GateReason::DailyBudget {
                scope: kind_scope,
                limit: budget,
            },
        };
    }
    if s.spawned_today_error.saturating_add(s.spawned_today_prd) >= policy.daily_budget_global {
        return Decision::Deny {
            reason: GateReason::DailyBudget {
                scope: LimitScope::Global,
                limit: policy.daily_budget_global,
            },
        };
    }
    if policy.daily_cost_limit_usd > 0.0 && s.cost_today_usd >= policy.daily_cost_limit_usd {
        return Decision::Deny {
            reason: GateReason::DailyCost {
                limit_usd: policy.daily_cost_limit_usd,
                spent_usd: s.cost_today_usd,
            },
        };
    }
    Decision::Allow
}
