//! Time is a port so that every decision that depends on "now" is testable with a manual clock.

use crate::Timestamp;

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The wall clock (UTC).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }
}

/// Midnight UTC that starts the day containing `t`: the boundary of daily spawn budgets and cost.
pub fn utc_day_start(t: Timestamp) -> Timestamp {
    let date = t.date_naive();
    date.and_hms_opt(0, 0, 0).map(|d| d.and_utc()).unwrap_or(t)
}

/// Midnight UTC that ends the day containing `t`.
pub fn utc_next_day_start(t: Timestamp) -> Timestamp {
    utc_day_start(t) + chrono::Duration::days(1)
}
