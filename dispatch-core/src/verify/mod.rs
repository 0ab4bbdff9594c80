//! Fix verification (spec §6, DESIGN §4): a merged PR that references an issue becomes a fix
//! attempt; it waits for a deploy signal when one is configured, else monitoring starts at merge;
//! a recurrence of the error during monitoring fails it; reaching the deadline verifies it.
//! All transitions here are pure; the engine persists them and the sweeper drives deadlines.

use crate::Timestamp;
use crate::error::{Error, Result};
use crate::ids::{FixAttemptId, IssueId};
use chrono::Duration;
use serde::{Deserialize, Serialize};

text_enum!(
    VerificationStatus {
        AwaitingDeploy = "awaiting_deploy",
        Monitoring = "monitoring",
        Verified = "verified",
        Failed = "failed",
    }
);

impl VerificationStatus {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            VerificationStatus::Verified | VerificationStatus::Failed
        )
    }
    /// Display colour of the original UI.
    pub fn color(self) -> &'static str {
        match self {
            VerificationStatus::AwaitingDeploy => "#F59E0B",
            VerificationStatus::Monitoring => "#3B82F6",
            VerificationStatus::Verified => "#22C55E",
            VerificationStatus::Failed => "#EF4444",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixAttempt {
    pub id: FixAttemptId,
    pub issue_id: IssueId,
    pub pr_number: i64,
    pub pr_url: Option<String>,
    pub pr_title: Option<String>,
    pub merged_at: Timestamp,
    pub merged_sha: Option<String>,
    pub deployed_sha: Option<String>,
    pub deployed_at: Option<Timestamp>,
    pub status: VerificationStatus,
    pub deadline: Option<Timestamp>,
    pub checked_at: Option<Timestamp>,
    pub failure_reason: Option<String>,
    pub events_after_deploy: Option<u64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What the verifier needs to know about the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// `VERIFICATION_WINDOW_HOURS` (48).
    pub window: Duration,
    /// Whether a deploy signal (e.g. a GitHub `workflow_run`) is configured; if not, monitoring
    /// starts at merge.
    pub wait_for_deploy: bool,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        VerifyPolicy {
            window: Duration::hours(48),
            wait_for_deploy: false,
        }
    }
}

/// The facts of a merged pull request that references an issue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedPr {
    pub number: i64,
    pub url: Option<String>,
    pub title: Option<String>,
    pub body: Option<String>,
    pub head_branch: Option<String>,
    pub base_branch: Option<String>,
    pub merged_at: Timestamp,
    pub merge_sha: Option<String>,
}

/// A time reported by the outside world (a payload's `merged_at`, a deploy's time), as the
/// engine uses it: never later than `now`. A clock ahead of ours, or a signed payload with a
/// year-262142 timestamp, must neither start a window in the future nor overflow a deadline.
pub fn reported_time(reported: Timestamp, now: Timestamp) -> Timestamp {
    reported.min(now)
}

/// A new attempt for a merged PR. Recurrences count from the merge (the fix exists from then
/// on), and the window runs from when Dispatch learnt of it: a merge event delivered days late
/// still gets its whole window of watching instead of being verified at the next sweep, and
/// what happened since the merge is judged by [`recurrence_since`].
pub fn on_merge(
    issue_id: IssueId,
    pr: &MergedPr,
    policy: &VerifyPolicy,
    now: Timestamp,
) -> FixAttempt {
    let merged_at = reported_time(pr.merged_at, now);
    let (status, deployed_at, deadline) = if policy.wait_for_deploy {
        (VerificationStatus::AwaitingDeploy, None, None)
    } else {
        (
            VerificationStatus::Monitoring,
            Some(merged_at),
            Some(now + policy.window),
        )
    };
    FixAttempt {
        id: FixAttemptId::new(),
        issue_id,
        pr_number: pr.number,
        pr_url: pr.url.clone(),
        pr_title: pr.title.clone(),
        merged_at,
        merged_sha: pr.merge_sha.clone(),
        deployed_sha: if policy.wait_for_deploy {
            None
        } else {
            pr.merge_sha.clone()
        },
        deployed_at,
        status,
        deadline,
        checked_at: None,
        failure_reason: None,
        events_after_deploy: None,
        created_at: now,
        updated_at: now,
    }
}

/// A deploy signal received at `now`: an attempt awaiting deploy starts monitoring, with
/// recurrences counted from `deployed_at` and the window running from `now` (a late signal
/// still gets its whole window). Other states are unchanged (`None`).
pub fn on_deploy(
    attempt: &FixAttempt,
    sha: Option<&str>,
    deployed_at: Timestamp,
    policy: &VerifyPolicy,
    now: Timestamp,
) -> Option<FixAttempt> {
    if attempt.status != VerificationStatus::AwaitingDeploy || deployed_at < attempt.merged_at {
        return None;
    }
    let mut a = attempt.clone();
    a.status = VerificationStatus::Monitoring;
    a.deployed_sha = sha
        .map(str::to_string)
        .or_else(|| attempt.merged_sha.clone());
    a.deployed_at = Some(deployed_at);
    a.deadline = Some(now.max(deployed_at) + policy.window);
    a.updated_at = now.max(deployed_at);
    Some(a)
}

/// The newest sighting of the error, among the issue's links, that falls inside a monitoring
/// attempt's window (after its start — a sighting at the very instant of the merge is the
/// error the fix is for — and before its deadline): the recurrence the attempt
/// must fail on, as `(last seen, the link's event count)`. This is what the stored links say
/// whatever became of the ingest that recorded the event (a crash between its commit and its
/// recurrence check), so the sweeper asks it before verifying, and a late merge asks it for
/// what happened between the merge and its delivery.
pub fn recurrence_since(
    attempt: &FixAttempt,
    links: &[crate::ports::ErrorLink],
) -> Option<(Timestamp, u64)> {
    if attempt.status != VerificationStatus::Monitoring {
        return None;
    }
    let start = attempt.deployed_at?;
    links
        .iter()
        .filter(|l| l.last_seen_at > start && attempt.deadline.is_none_or(|d| l.last_seen_at < d))
        .max_by_key(|l| l.last_seen_at)
        .map(|l| (l.last_seen_at, l.event_count))
}

/// The error came back at `seen_at`. Fails an attempt that is monitoring; a recurrence before the
/// fix is deployed is expected and changes nothing.
pub fn on_recurrence(
    attempt: &FixAttempt,
    seen_at: Timestamp,
    events: u64,
    reason: String,
) -> Option<FixAttempt> {
    if attempt.status != VerificationStatus::Monitoring {
        return None;
    }
    let start = attempt.deployed_at?;
    // Judged by the event's time: before the deploy it is the old error; at or after the
    // deadline the fix held for its whole window (a verified fix, then a regression).
    if seen_at < start || attempt.deadline.is_some_and(|d| seen_at >= d) {
        return None;
    }
    let mut a = attempt.clone();
    a.status = VerificationStatus::Failed;
    a.failure_reason = Some(reason);
    a.events_after_deploy = Some(events);
    a.checked_at = Some(seen_at);
    a.updated_at = seen_at;
    Some(a)
}

/// The deadline passed without a recurrence: verified.
pub fn on_deadline(attempt: &FixAttempt, now: Timestamp) -> Option<FixAttempt> {
    match (attempt.status, attempt.deadline) {
        (VerificationStatus::Monitoring, Some(d)) if now >= d => {
            let mut a = attempt.clone();
            a.status = VerificationStatus::Verified;
            a.checked_at = Some(now);
            a.updated_at = now;
            Some(a)
        }
        _ => None,
    }
}

/// Why an issue may not be closed yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseBlock {
    /// Always `FIX_VERIFICATION_REQUIRED` (the original's code).
    pub code: &'static str,
    pub reason: String,
}

/// The close gate (spec §6.7): an issue that came from an error source (Loki, Sentry) may close
/// only once its latest fix attempt is verified. It applies to every path that closes an issue.
pub fn close_gate(
    has_error_link: bool,
    latest: Option<&FixAttempt>,
    now: Timestamp,
) -> std::result::Result<(), CloseBlock> {
    if !has_error_link {
        return Ok(());
    }
    let block = |reason: String| {
        Err(CloseBlock {
            code: "FIX_VERIFICATION_REQUIRED",
            reason,
        })
    };
    match latest {
        None => block(
            "This issue came from a production error. Link a PR that fixes this issue before closing; it closes itself once the fix is verified."
                .into(),
        ),
        Some(a) => match a.status {
            VerificationStatus::Verified => Ok(()),
            VerificationStatus::Failed => block(format!(
                "The latest fix (PR #{}) failed verification: {}",
                a.pr_number,
                a.failure_reason.as_deref().unwrap_or("the error came back")
            )),
            VerificationStatus::AwaitingDeploy => block(format!(
                "The fix (PR #{}) is merged but not deployed yet; verification starts at deploy",
                a.pr_number
            )),
            VerificationStatus::Monitoring => {
                let hours = a
                    .deadline
                    .map(|d| ((d - now).num_seconds().max(0) as f64 / 3600.0).ceil() as i64)
                    .unwrap_or(0);
                block(format!(
                    "The fix (PR #{}) is being monitored for recurrence; ~{hours} hours remaining",
                    a.pr_number
                ))
            }
        },
    }
}

/// A one-line description for people (`Deployed abc1234, monitoring for ~12h`).
pub fn describe(a: &FixAttempt, now: Timestamp) -> String {
    match a.status {
        VerificationStatus::AwaitingDeploy => {
            format!("PR #{} merged, awaiting deploy", a.pr_number)
        }
        VerificationStatus::Monitoring => {
            let sha: String = a
                .deployed_sha
                .as_deref()
                .unwrap_or("")
                .chars()
                .take(7)
                .collect();
            let hours = a
                .deadline
                .map(|d| ((d - now).num_seconds().max(0) as f64 / 3600.0).ceil() as i64)
                .unwrap_or(0);
            if sha.is_empty() {
                format!("Deployed, monitoring for ~{hours}h")
            } else {
                format!("Deployed {sha}, monitoring for ~{hours}h")
            }
        }
        VerificationStatus::Verified => "Fix verified: no recurrence during monitoring".into(),
        VerificationStatus::Failed => {
            format!(
                "Fix failed: {}",
                a.failure_reason.as_deref().unwrap_or("recurrence")
            )
        }
    }
}

/// Validates a PR number from outside.
pub fn validate_pr_number(n: i64) -> Result<()> {
    if n <= 0 {
        return Err(Error::invalid("pr_number", "PR number must be positive"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
