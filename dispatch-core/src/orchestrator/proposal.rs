//! Proposals: what the model asked to dispatch, held until the person confirms it.
//!
//! The model's dispatch tools never spawn. They store a [`Proposal`] — which workflow, on what,
//! the gate decision it would get now and an estimated cost — and the spawn happens only when
//! the person confirms it (`/confirm`, "yes", or the confirm endpoint). A proposal is decided
//! once: the store applies [`decide`] to the locked row, so two confirmations make one run.

use crate::Timestamp;
use crate::error::{Error, Result};
use crate::gate::Decision;
use crate::ids::{IssueId, ProposalId, RunId, SessionId, WorkspaceId};
use crate::issue::Priority;
use crate::run::WorkflowKind;
use serde::{Deserialize, Serialize};

text_enum!(
    /// pending → confirmed / cancelled; a pending proposal past its expiry reads as expired.
    ProposalStatus {
        Pending = "pending",
        Confirmed = "confirmed",
        Cancelled = "cancelled",
        Expired = "expired",
    }
);

/// What the agent would work on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProposalTarget {
    /// An issue that exists.
    Issue {
        issue_id: IssueId,
        identifier: String,
        title: String,
    },
    /// An issue created when the proposal is confirmed (investigation, research).
    NewIssue {
        title: String,
        description: String,
        priority: Priority,
    },
}

/// What confirming did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalOutcome {
    pub identifier: String,
    pub run_id: Option<RunId>,
    /// The gates' decision; `None` when confirming failed before the gates (the issue could
    /// not be created, the plan is no longer approved, …).
    pub decision: Option<Decision>,
    /// One sentence for the person: dispatched, deferred until …, or refused because ….
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub id: ProposalId,
    pub session_id: SessionId,
    pub workspace_id: WorkspaceId,
    pub kind: WorkflowKind,
    pub target: ProposalTarget,
    pub additional_context: Option<String>,
    /// The gate decision a spawn would get when the proposal was made.
    pub gate: Decision,
    /// The median cost of recent finished runs of this kind, when there are any.
    pub estimated_cost_usd: Option<f64>,
    pub status: ProposalStatus,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub decided_at: Option<Timestamp>,
    pub outcome: Option<ProposalOutcome>,
}

/// What the person decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalDecision {
    Confirm,
    Cancel,
}

impl Proposal {
    /// The status as of `now` (a pending proposal past its expiry is expired).
    pub fn status_at(&self, now: Timestamp) -> ProposalStatus {
        if self.status == ProposalStatus::Pending && now >= self.expires_at {
            ProposalStatus::Expired
        } else {
            self.status
        }
    }

    /// "investigation of a new issue “Checkout fails”", "implementation of ACME-12 “…”".
    pub fn describe(&self) -> String {
        let what = match self.kind {
            WorkflowKind::ErrorFix => "an error fix",
            WorkflowKind::PrdInvestigate => "an investigation",
            WorkflowKind::PrdImplement => "an implementation",
            WorkflowKind::Qa => "a QA pass",
            WorkflowKind::DeepResearch => "deep research",
            WorkflowKind::AutoTriage => "a triage",
        };
        match &self.target {
            ProposalTarget::Issue {
                identifier, title, ..
            } => format!("{what} of {identifier} “{title}”"),
            ProposalTarget::NewIssue { title, .. } => format!("{what} of a new issue “{title}”"),
        }
    }
}

/// Applies the person's decision. Only a pending, unexpired proposal can be decided; anything
/// else is a `Conflict` that says what became of it.
pub fn decide(p: &Proposal, decision: ProposalDecision, now: Timestamp) -> Result<Proposal> {
    match p.status_at(now) {
        ProposalStatus::Pending => {}
        ProposalStatus::Expired => {
            return Err(Error::conflict(format!(
                "proposal {} expired at {}; ask again to get a fresh one",
                p.id,
                p.expires_at.format("%H:%M UTC")
            )));
        }
        done => {
            return Err(Error::conflict(format!(
                "proposal {} is already {done}",
                p.id
            )));
        }
    }
    let mut next = p.clone();
    next.status = match decision {
        ProposalDecision::Confirm => ProposalStatus::Confirmed,
        ProposalDecision::Cancel => ProposalStatus::Cancelled,
    };
    next.decided_at = Some(now);
    Ok(next)
}

/// The estimate shown with a proposal: the median of the recent positive costs, if any.
pub fn estimate_cost(recent: &[f64]) -> Option<f64> {
    let mut costs: Vec<f64> = recent
        .iter()
        .copied()
        .filter(|c| c.is_finite() && *c > 0.0)
        .collect();
    if costs.is_empty() {
        return None;
    }
    costs.sort_by(f64::total_cmp);
    let mid = costs.len() / 2;
    Some(if costs.len().is_multiple_of(2) {
        (costs[mid - 1] + costs[mid]) / 2.0
    } else {
        costs[mid]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use chrono::{Duration, TimeZone, Utc};

    fn proposal(now: Timestamp) -> Proposal {
        Proposal {
            id: ProposalId::new(),
            session_id: SessionId::new(),
            workspace_id: WorkspaceId::new(),
            kind: WorkflowKind::PrdInvestigate,
            target: ProposalTarget::NewIssue {
                title: "Checkout fails".into(),
                description: "500 on submit".into(),
                priority: Priority::P2,
            },
            additional_context: None,
            gate: Decision::Allow,
            estimated_cost_usd: None,
            status: ProposalStatus::Pending,
            created_at: now,
            expires_at: now + Duration::minutes(15),
            decided_at: None,
            outcome: None,
        }
    }

    #[test]
    fn a_proposal_is_decided_once_and_not_after_it_expires() {
        let t0 = Utc.with_ymd_and_hms(2026, 12, 4, 9, 0, 0).unwrap();
        let p = proposal(t0);
        let confirmed = decide(&p, ProposalDecision::Confirm, t0).unwrap();
        assert_eq!(confirmed.status, ProposalStatus::Confirmed);
        assert_eq!(confirmed.decided_at, Some(t0));
        let again = decide(&confirmed, ProposalDecision::Confirm, t0).unwrap_err();
        assert_eq!(again.kind, ErrorKind::Conflict);
        assert!(
            again.message.contains("already confirmed"),
            "{}",
            again.message
        );
        let cancel = decide(&confirmed, ProposalDecision::Cancel, t0).unwrap_err();
        assert_eq!(cancel.kind, ErrorKind::Conflict);

        let late = t0 + Duration::minutes(15);
        assert_eq!(p.status_at(late), ProposalStatus::Expired);
        let e = decide(&p, ProposalDecision::Confirm, late).unwrap_err();
        assert!(e.message.contains("expired"), "{}", e.message);
        let cancelled = decide(&p, ProposalDecision::Cancel, t0 + Duration::minutes(1)).unwrap();
        assert_eq!(cancelled.status, ProposalStatus::Cancelled);
        assert_eq!(
            p.describe(),
            "an investigation of a new issue “Checkout fails”"
        );
    }

    #[test]
    fn the_estimate_is_the_median_of_positive_costs() {
        assert_eq!(estimate_cost(&[]), None);
        assert_eq!(estimate_cost(&[0.0, f64::NAN]), None);
        assert_eq!(estimate_cost(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(estimate_cost(&[4.0, 1.0, 2.0, 0.0, 3.0, 100.0]), Some(3.0));
    }
}
