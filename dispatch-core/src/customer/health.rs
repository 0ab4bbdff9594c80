//! Customer health (spec §11.3): metrics over the customer's issues and a 0–100 score.

use crate::Timestamp;
use crate::issue::Priority;
use chrono::Duration;
use serde::{Deserialize, Serialize};

/// One issue of the customer, as the metrics need it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthIssue {
    /// In a closed-category column.
    pub closed: bool,
    pub priority: Priority,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub comment_count: u32,
    pub first_comment_at: Option<Timestamp>,
    pub last_comment_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthInputs {
    pub issues: Vec<HealthIssue>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthMetrics {
    pub total_issues: u32,
    pub open_issues: u32,
    pub closed_issues: u32,
    /// Open and not updated for 3 days.
    pub stale_issues: u32,
    /// Open P1/P2 not updated for 2 days.
    pub critical_stale: u32,
    /// Open with no comment at all.
    pub unresponded_issues: u32,
    pub high_priority_open: u32,
    pub last_activity_at: Option<Timestamp>,
    pub last_issue_created_at: Option<Timestamp>,
    pub avg_response_time_hours: Option<f64>,
    pub days_since_activity: Option<i64>,
}

/// An open issue not updated for this many days is stale.
pub const STALE_AFTER_DAYS: i64 = 3;
/// An open P1/P2 issue not updated for this many days is critical-stale.
pub const CRITICAL_STALE_AFTER_DAYS: i64 = 2;

/// Not updated for [`STALE_AFTER_DAYS`] (the caller checks that the issue is open).
pub fn is_stale(updated_at: Timestamp, now: Timestamp) -> bool {
    updated_at < now - Duration::days(STALE_AFTER_DAYS)
}

/// Not updated for [`CRITICAL_STALE_AFTER_DAYS`] (the caller checks open and P1/P2).
pub fn is_critical_stale(updated_at: Timestamp, now: Timestamp) -> bool {
    updated_at < now - Duration::days(CRITICAL_STALE_AFTER_DAYS)
}

pub fn health_metrics(inputs: &HealthInputs, now: Timestamp) -> HealthMetrics {
    let mut m = HealthMetrics::default();
    let mut response_hours = Vec::new();
    for i in &inputs.issues {
        m.total_issues += 1;
        if i.closed {
            m.closed_issues += 1;
        } else {
            m.open_issues += 1;
            if is_stale(i.updated_at, now) {
                m.stale_issues += 1;
            }
            if i.priority.is_high() {
                m.high_priority_open += 1;
                if is_critical_stale(i.updated_at, now) {
                    m.critical_stale += 1;
                }
            }
            if i.comment_count == 0 {
                m.unresponded_issues += 1;
            }
        }
        let last = i
            .last_comment_at
            .map_or(i.updated_at, |c| c.max(i.updated_at));
        m.last_activity_at = Some(m.last_activity_at.map_or(last, |x| x.max(last)));
        m.last_issue_created_at = Some(
            m.last_issue_created_at
                .map_or(i.created_at, |x| x.max(i.created_at)),
        );
        if let (true, Some(first)) = (i.comment_count > 0, i.first_comment_at) {
            response_hours.push((first - i.created_at).num_milliseconds() as f64 / 3_600_000.0);
        }
    }
    if !response_hours.is_empty() {
        m.avg_response_time_hours =
            Some(response_hours.iter().sum::<f64>() / response_hours.len() as f64);
    }
    m.days_since_activity = m.last_activity_at.map(|t| (now - t).num_days());
    m
}

/// 100 − min(20·criticalStale, 60) − min(10·stale, 30) − min(5·highPriorityOpen, 20)
/// − (days idle beyond 7: min(2·(days − 7), 20)), never below 0.
pub fn health_score(m: &HealthMetrics) -> u32 {
    let mut score: i64 = 100;
    score -= (20 * m.critical_stale as i64).min(60);
    score -= (10 * m.stale_issues as i64).min(30);
    score -= (5 * m.high_priority_open as i64).min(20);
    if let Some(d) = m.days_since_activity
        && d > 7
    {
        score -= (2 * (d - 7)).min(20);
    }
    score.max(0) as u32
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthBand {
    Healthy,
    Fair,
    AtRisk,
    Critical,
}

impl HealthBand {
    pub fn color(self) -> &'static str {
        match self {
            HealthBand::Healthy => "#22c55e",
            HealthBand::Fair => "#f59e0b",
            HealthBand::AtRisk => "#f97316",
            HealthBand::Critical => "#ef4444",
        }
    }

    /// How the pages name the band.
    pub fn label(self) -> &'static str {
        match self {
            HealthBand::Healthy => "healthy",
            HealthBand::Fair => "fair",
            HealthBand::AtRisk => "at risk",
            HealthBand::Critical => "critical",
        }
    }
}

/// ≥80 healthy (green), ≥60 fair (amber), ≥40 at risk (orange), else critical (red).
pub fn health_band(score: u32) -> HealthBand {
    match score {
        80.. => HealthBand::Healthy,
        60..=79 => HealthBand::Fair,
        40..=59 => HealthBand::AtRisk,
        _ => HealthBand::Critical,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> Timestamp {
        chrono::Utc
            .with_ymd_and_hms(2026, 6, 1, 12, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn spec_cases_healthy_troubled_and_critical_stale() {
        assert_eq!(health_score(&HealthMetrics::default()), 100);
        let troubled = HealthMetrics {
            stale_issues: 5,
            critical_stale: 2,
            high_priority_open: 3,
            days_since_activity: Some(10),
            ..Default::default()
        };
        // 100 - 40 - 30 - 15 - 6
        assert_eq!(health_score(&troubled), 9);
        assert!(health_score(&troubled) < 50);
        let three_critical = HealthMetrics {
            critical_stale: 3,
            ..Default::default()
        };
        assert_eq!(health_score(&three_critical), 40);
    }

    #[test]
    fn caps_and_clamp() {
        let worst = HealthMetrics {
            stale_issues: 100,
            critical_stale: 100,
            high_priority_open: 100,
            days_since_activity: Some(1000),
            ..Default::default()
        };
        assert_eq!(health_score(&worst), 0);
        let idle = HealthMetrics {
            days_since_activity: Some(7),
            ..Default::default()
        };
        assert_eq!(health_score(&idle), 100);
        let idle8 = HealthMetrics {
            days_since_activity: Some(8),
            ..Default::default()
        };
        assert_eq!(health_score(&idle8), 98);
    }

    #[test]
    fn bands() {
        assert_eq!(health_band(100), HealthBand::Healthy);
        assert_eq!(health_band(80), HealthBand::Healthy);
        assert_eq!(health_band(79).color(), "#f59e0b");
        assert_eq!(health_band(60), HealthBand::Fair);
        assert_eq!(health_band(59), HealthBand::AtRisk);
        assert_eq!(health_band(40), HealthBand::AtRisk);
        assert_eq!(health_band(39).color(), "#ef4444");
        assert_eq!(health_band(0), HealthBand::Critical);
        assert_eq!(health_band(100).color(), "#22c55e");
        assert_eq!(health_band(60).color(), "#f59e0b");
        assert_eq!(health_band(40).color(), "#f97316");
        assert_eq!(health_band(59).label(), "at risk");
    }

    #[test]
    fn each_penalty_alone_and_its_cap() {
        let m = |cs: u32, st: u32, hp: u32, idle: Option<i64>| HealthMetrics {
            critical_stale: cs,
            stale_issues: st,
            high_priority_open: hp,
            days_since_activity: idle,
            ..Default::default()
        };
        assert_eq!(health_score(&m(1, 0, 0, None)), 80);
        assert_eq!(
            health_score(&m(4, 0, 0, None)),
            40,
            "critical-stale capped at 60"
        );
        assert_eq!(health_score(&m(0, 1, 0, None)), 90);
        assert_eq!(health_score(&m(0, 9, 0, None)), 70, "stale capped at 30");
        assert_eq!(health_score(&m(0, 0, 1, None)), 95);
        assert_eq!(
            health_score(&m(0, 0, 9, None)),
            80,
            "high priority capped at 20"
        );
        assert_eq!(health_score(&m(0, 0, 0, Some(17))), 80);
        assert_eq!(health_score(&m(0, 0, 0, Some(60))), 80, "idle capped at 20");
        assert_eq!(
            health_score(&m(0, 0, 0, None)),
            100,
            "no activity at all is no penalty"
        );
    }

    #[test]
    fn stale_thresholds_are_strict() {
        let n = now();
        assert!(!is_stale(n - Duration::days(3), n));
        assert!(is_stale(n - Duration::days(3) - Duration::seconds(1), n));
        assert!(!is_critical_stale(n - Duration::days(2), n));
        assert!(is_critical_stale(
            n - Duration::days(2) - Duration::seconds(1),
            n
        ));
    }

    #[test]
    fn metrics_from_issues() {
        let n = now();
        let h = |closed, p, age_days: i64, comments: u32, first_h: Option<i64>| HealthIssue {
            closed,
            priority: p,
            created_at: n - Duration::days(10),
            updated_at: n - Duration::days(age_days),
            comment_count: comments,
            first_comment_at: first_h.map(|x| n - Duration::days(10) + Duration::hours(x)),
            last_comment_at: first_h.map(|x| n - Duration::days(10) + Duration::hours(x)),
        };
        let inputs = HealthInputs {
            issues: vec![
                h(false, Priority::P1, 4, 0, None), // stale, critical stale, unresponded, high
                h(false, Priority::P3, 1, 1, Some(3)),
                h(true, Priority::P2, 20, 2, Some(6)),
            ],
        };
        let m = health_metrics(&inputs, n);
        assert_eq!((m.total_issues, m.open_issues, m.closed_issues), (3, 2, 1));
        assert_eq!(
            (
                m.stale_issues,
                m.critical_stale,
                m.unresponded_issues,
                m.high_priority_open
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(m.avg_response_time_hours, Some(4.5));
        assert_eq!(m.days_since_activity, Some(1));
        assert_eq!(health_score(&m), 100 - 20 - 10 - 5);
    }
}
