//! What the customer pages list (spec §11.3): which of a customer's issues each filter shows and
//! in which order, the recent-activity feed, and the order of the all-customers summary. Plain
//! functions over data; the engine loads the rows and the HTTP handlers only render.

use super::health::{HealthMetrics, is_critical_stale, is_stale};
use crate::Timestamp;
use crate::error::{Error, Result};
use crate::issue::Priority;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// The issue tabs of a customer's page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerIssueFilter {
    /// Every issue of the customer, open or closed.
    #[default]
    All,
    /// Open and not updated for 3 days.
    Stale,
    /// Open with no comment at all.
    Unresponded,
    /// Open P1/P2 (the original's "critical": high priority, stale or not).
    Critical,
}

impl CustomerIssueFilter {
    pub const ALL: [CustomerIssueFilter; 4] = [
        CustomerIssueFilter::All,
        CustomerIssueFilter::Critical,
        CustomerIssueFilter::Stale,
        CustomerIssueFilter::Unresponded,
    ];

    /// `all`, `stale`, `unresponded` or `critical` (any case); anything else is an
    /// `InvalidInput` naming the field `filter`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "all" => Ok(Self::All),
            "stale" => Ok(Self::Stale),
            "unresponded" => Ok(Self::Unresponded),
            "critical" => Ok(Self::Critical),
            other => Err(Error::invalid(
                "filter",
                format!("unknown filter {other:?}; expected all, stale, unresponded or critical"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Stale => "stale",
            Self::Unresponded => "unresponded",
            Self::Critical => "critical",
        }
    }

    /// Whether the issue may be shown before its comments are counted. Every filter but
    /// `unresponded` decides here; `unresponded` also needs [`Self::keeps`].
    pub fn may_show(
        self,
        closed: bool,
        priority: Priority,
        updated_at: Timestamp,
        now: Timestamp,
    ) -> bool {
        match self {
            Self::All => true,
            Self::Stale => !closed && is_stale(updated_at, now),
            Self::Unresponded => !closed,
            Self::Critical => !closed && priority.is_high(),
        }
    }

    /// Whether an issue that [`Self::may_show`] stays once its comments are counted.
    pub fn keeps(self, comment_count: usize) -> bool {
        self != Self::Unresponded || comment_count == 0
    }

    /// Whether [`Self::keeps`] depends on the comment count (so the caller must count before
    /// deciding).
    pub fn needs_comment_count(self) -> bool {
        self == Self::Unresponded
    }
}

/// The order of a customer's issue list: priority P1 first, then most recently updated.
pub fn issue_list_order(a: (Priority, Timestamp), b: (Priority, Timestamp)) -> Ordering {
    a.0.rank().cmp(&b.0.rank()).then(b.1.cmp(&a.1))
}

/// Whole days since `t` (0 for the future).
pub fn days_since(t: Timestamp, now: Timestamp) -> i64 {
    (now - t).num_days().max(0)
}

/// What a row of the customer's issue list says about the issue beyond its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssueAge {
    pub days_since_update: i64,
    pub comment_count: usize,
    /// Someone answered (any comment counts, as in the original).
    pub has_team_response: bool,
    pub stale: bool,
    pub critical_stale: bool,
}

pub fn issue_age(
    closed: bool,
    priority: Priority,
    updated_at: Timestamp,
    comment_count: usize,
    now: Timestamp,
) -> IssueAge {
    IssueAge {
        days_since_update: days_since(updated_at, now),
        comment_count,
        has_team_response: comment_count > 0,
        stale: !closed && is_stale(updated_at, now),
        critical_stale: !closed && priority.is_high() && is_critical_stale(updated_at, now),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityKind {
    Comment,
    IssueCreated,
}

/// One line of a customer's recent-activity feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivityItem {
    /// The comment's id, or the issue's for an issue creation.
    pub id: uuid::Uuid,
    #[serde(rename = "type")]
    pub kind: ActivityKind,
    pub issue_id: uuid::Uuid,
    pub issue_identifier: String,
    pub issue_title: String,
    /// The comment's first 100 characters (with "..." when cut), or "Issue created".
    pub description: String,
    pub actor_name: Option<String>,
    pub timestamp: Timestamp,
}

impl ActivityItem {
    pub fn comment(
        comment_id: uuid::Uuid,
        issue: (uuid::Uuid, &str, &str),
        body: &str,
        author: Option<&str>,
        at: Timestamp,
    ) -> Self {
        ActivityItem {
            id: comment_id,
            kind: ActivityKind::Comment,
            issue_id: issue.0,
            issue_identifier: issue.1.to_string(),
            issue_title: issue.2.to_string(),
            description: comment_preview(body),
            actor_name: author.map(str::to_string),
            timestamp: at,
        }
    }

    pub fn issue_created(issue: (uuid::Uuid, &str, &str), at: Timestamp) -> Self {
        ActivityItem {
            id: issue.0,
            kind: ActivityKind::IssueCreated,
            issue_id: issue.0,
            issue_identifier: issue.1.to_string(),
            issue_title: issue.2.to_string(),
            description: "Issue created".into(),
            actor_name: None,
            timestamp: at,
        }
    }
}

/// A comment's first 100 characters, with "..." when cut.
pub fn comment_preview(body: &str) -> String {
    let mut chars = body.chars();
    let head: String = chars.by_ref().take(100).collect();
    if chars.next().is_some() {
        format!("{head}...")
    } else {
        head
    }
}

/// The feed: newest first, at most `limit` (comments and issue creations merged).
pub fn merge_activity(mut items: Vec<ActivityItem>, limit: usize) -> Vec<ActivityItem> {
    items.sort_by(|a, b| b.timestamp.cmp(&a.timestamp).then(a.id.cmp(&b.id)));
    items.truncate(limit);
    items
}

/// The all-customers summary's order: most critical-stale issues first, then most stale, then
/// by name (case-insensitive).
pub fn summary_order(a: (&str, &HealthMetrics), b: (&str, &HealthMetrics)) -> Ordering {
    b.1.critical_stale
        .cmp(&a.1.critical_stale)
        .then(b.1.stale_issues.cmp(&a.1.stale_issues))
        .then_with(|| a.0.to_lowercase().cmp(&b.0.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn now() -> Timestamp {
        chrono::Utc
            .with_ymd_and_hms(2026, 6, 1, 12, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn filters_parse_and_name_the_field() {
        assert_eq!(
            CustomerIssueFilter::parse("Critical").ok(),
            Some(CustomerIssueFilter::Critical)
        );
        assert_eq!(
            CustomerIssueFilter::parse("").ok(),
            Some(CustomerIssueFilter::All)
        );
        for f in CustomerIssueFilter::ALL {
            assert_eq!(CustomerIssueFilter::parse(f.as_str()).ok(), Some(f));
        }
        let e = CustomerIssueFilter::parse("old").unwrap_err();
        assert_eq!(e.field(), Some("filter"));
    }

    #[test]
    fn filter_thresholds() {
        use CustomerIssueFilter::*;
        let n = now();
        let just_fresh = n - Duration::days(3) + Duration::minutes(1);
        let just_stale = n - Duration::days(3) - Duration::minutes(1);
        assert!(All.may_show(true, Priority::P4, n, n));
        assert!(!Stale.may_show(false, Priority::P3, just_fresh, n));
        assert!(Stale.may_show(false, Priority::P3, just_stale, n));
        assert!(
            !Stale.may_show(true, Priority::P3, just_stale, n),
            "closed is never stale"
        );
        assert!(Critical.may_show(false, Priority::P1, n, n));
        assert!(Critical.may_show(false, Priority::P2, n, n));
        assert!(!Critical.may_show(false, Priority::P3, just_stale, n));
        assert!(!Critical.may_show(true, Priority::P1, n, n));
        assert!(Unresponded.may_show(false, Priority::P4, n, n));
        assert!(!Unresponded.may_show(true, Priority::P4, n, n));
        assert!(Unresponded.keeps(0) && !Unresponded.keeps(1));
        assert!(Stale.keeps(5) && All.keeps(1) && Critical.keeps(2));
        assert!(Unresponded.needs_comment_count() && !Stale.needs_comment_count());
    }

    #[test]
    fn ages_flag_stale_and_critical_stale() {
        let n = now();
        let a = issue_age(false, Priority::P2, n - Duration::hours(49), 0, n);
        assert_eq!(
            (
                a.days_since_update,
                a.stale,
                a.critical_stale,
                a.has_team_response
            ),
            (2, false, true, false)
        );
        let b = issue_age(false, Priority::P3, n - Duration::days(4), 2, n);
        assert_eq!(
            (b.stale, b.critical_stale, b.has_team_response),
            (true, false, true)
        );
        let c = issue_age(true, Priority::P1, n - Duration::days(9), 0, n);
        assert!(!c.stale && !c.critical_stale);
        assert_eq!(days_since(n + Duration::days(1), n), 0);
    }

    #[test]
    fn list_order_priority_then_recent() {
        let n = now();
        let mut rows = vec![
            (Priority::P3, n),
            (Priority::P1, n - Duration::days(5)),
            (Priority::P1, n - Duration::days(1)),
            (Priority::P4, n),
        ];
        rows.sort_by(|a, b| issue_list_order(*a, *b));
        assert_eq!(
            rows,
            vec![
                (Priority::P1, n - Duration::days(1)),
                (Priority::P1, n - Duration::days(5)),
                (Priority::P3, n),
                (Priority::P4, n),
            ]
        );
    }

    #[test]
    fn feed_merges_newest_first_and_previews_comments() {
        let n = now();
        let issue = (uuid::Uuid::now_v7(), "ACME-1", "Login fails");
        let long = "é".repeat(150);
        let items = vec![
            ActivityItem::issue_created(issue, n - Duration::days(1)),
            ActivityItem::comment(uuid::Uuid::now_v7(), issue, &long, Some("Ana"), n),
            ActivityItem::comment(
                uuid::Uuid::now_v7(),
                issue,
                "short",
                None,
                n - Duration::days(2),
            ),
        ];
        let feed = merge_activity(items, 2);
        assert_eq!(feed.len(), 2);
        assert_eq!(feed[0].kind, ActivityKind::Comment);
        assert_eq!(feed[0].description.chars().count(), 103);
        assert!(feed[0].description.ends_with("..."));
        assert_eq!(feed[1].description, "Issue created");
        assert_eq!(comment_preview(&"x".repeat(100)), "x".repeat(100));
        let json = serde_json::to_value(&feed[0]).unwrap_or_default();
        assert_eq!(json["type"], "comment");
        assert_eq!(json["issueIdentifier"], "ACME-1");
        assert_eq!(json["actorName"], "Ana");
    }

    #[test]
    fn summary_puts_troubled_customers_first() {
        let calm = HealthMetrics::default();
        let stale = HealthMetrics {
            stale_issues: 2,
            ..Default::default()
        };
        let critical = HealthMetrics {
            critical_stale: 1,
            ..Default::default()
        };
        let mut rows = [
            ("beta", &calm),
            ("Alpha", &calm),
            ("zeta", &stale),
            ("omega", &critical),
        ];
        rows.sort_by(|a, b| summary_order(*a, *b));
        let names: Vec<&str> = rows.iter().map(|r| r.0).collect();
        assert_eq!(names, ["omega", "zeta", "Alpha", "beta"]);
    }
}
