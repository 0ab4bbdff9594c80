//! The fleet at a glance: what runs, what is queued, budgets and concurrency against their
//! limits, today's cost and outcomes, stale runs and the kill switch — one reading for the
//! REST API, the fleet page, `dispatch status` and the MCP tool `get_fleet_status`.

use super::Dispatch;
use crate::error::Result;
use crate::gate::SpawnPolicy;
use crate::issue::{Issue, IssueFilter};
use crate::ports::SpawnStats;

/// Running runs past their liveness timeout ([`crate::run::liveness`]) counted at most this far.
const STALE_COUNT_CAP: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct FleetStatus {
    pub stats: SpawnStats,
    /// The policy in force (the kill switch as stored).
    pub policy: SpawnPolicy,
    pub stale_runs: usize,
}

impl FleetStatus {
    pub fn kill_switch(&self) -> bool {
        self.policy.kill_switch
    }
    pub fn active(&self) -> u32 {
        self.stats.active_error + self.stats.active_prd
    }
}

impl Dispatch {
    pub async fn fleet_status(&self) -> Result<FleetStatus> {
        let now = self.now();
        let stats = self.inner.store.spawn_stats(now).await?;
        let policy = self.inner.config.liveness();
        let stale_runs = self
            .inner
            .store
            .stale_runs(now - policy.shortest(), STALE_COUNT_CAP)
            .await?
            .iter()
            .filter(|r| crate::run::liveness(r, now, &policy) != crate::run::Liveness::Alive)
            .count();
        Ok(FleetStatus {
            stats,
            policy: self.current_policy().await?,
            stale_runs,
        })
    }

    /// Issues with a queued or running agent, longest running first.
    pub async fn active_issues(&self, limit: usize) -> Result<Vec<Issue>> {
        let mut issues = self
            .list_issues(&IssueFilter {
                spawn_active: Some(true),
                limit: Some(10_000),
                ..IssueFilter::default()
            })
            .await?;
        issues.sort_by_key(|i| (i.spawn_started_at.unwrap_or(i.updated_at), i.number));
        issues.truncate(limit);
        Ok(issues)
    }
}
