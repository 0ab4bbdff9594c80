//! What deleting an issue does to the day's budgets: nothing. An issue with an active run cannot
//! be deleted (its agent would keep running outside every gate); the runs it had today leave
//! their spawn counts and cost behind as carried-over usage, which the daily budgets and the
//! cost limit count like runs. Both stores apply this plan inside the deletion's transaction.

use super::{BudgetBucket, Run};
use crate::Timestamp;
use crate::clock::utc_day_start;
use crate::error::{Error, Result};

/// Usage of deleted runs, per UTC day and bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct CarriedUsage {
    /// The UTC day's start.
    pub day: Timestamp,
    pub bucket: BudgetBucket,
    pub runs: u32,
    pub cost_usd: f64,
}

/// The usage to carry over when the issue with these runs is deleted at `now`, or `Conflict`
/// when one of them is active. Only today's runs matter to the daily limits.
pub fn plan_issue_deletion(runs: &[Run], now: Timestamp) -> Result<Vec<CarriedUsage>> {
    if let Some(r) = runs.iter().find(|r| r.status.is_active()) {
        return Err(Error::conflict(format!(
            "the issue has an active run ({}, {}); cancel it before deleting the issue",
            r.id,
            serde_json::to_value(r.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        )));
    }
    let today = utc_day_start(now);
    let mut out: Vec<CarriedUsage> = Vec::new();
    for r in runs.iter().filter(|r| utc_day_start(r.created_at) == today) {
        let bucket = r.kind.bucket();
        match out.iter_mut().find(|u| u.bucket == bucket) {
            Some(u) => {
                u.runs += 1;
                u.cost_usd += r.cost_usd;
            }
            None => out.push(CarriedUsage {
                day: today,
                bucket,
                runs: 1,
                cost_usd: r.cost_usd,
            }),
        }
    }
    Ok(out)
}
