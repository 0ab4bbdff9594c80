use crate::Timestamp;
use crate::clock::Clock;
use chrono::{Duration, TimeZone, Utc};
use std::sync::Mutex;

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            now: Mutex::new(start),
        }
    }
    /// 2026-01-15 09:00:00 UTC, a fixed start for tests.
    pub fn at_default() -> Self {
        Self::new(
            Utc.with_ymd_and_hms(2026, 1, 15, 9, 0, 0)
                .single()
                .unwrap_or_default(),
        )
    }
    pub fn set(&self, t: Timestamp) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }
    pub fn advance(&self, d: Duration) {
        let mut g = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *g += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}
