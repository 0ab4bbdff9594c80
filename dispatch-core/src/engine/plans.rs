//! Plan review (spec §7.5): agents submit, people approve (optionally starting implementation
//! through the gates) or reject with feedback that the next investigation receives.

use super::Dispatch;
use super::spawn::{SpawnOptions, SpawnOutcome};
use crate::error::Result;
use crate::ids::IssueRef;
use crate::issue::{Actor, AgentStatus, ColumnCategory, Issue, IssuePatch, names};
use crate::plan;
use crate::run::{ActivityType, NewActivity, WorkflowKind};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanReview {
    pub issue: Issue,
    /// Set when approval asked for implementation to start.
    pub spawn: Option<SpawnOutcome>,
}

impl Dispatch {
    /// An agent submits a plan: it awaits review, and an issue in Investigating moves to Needs
    /// Review.
    pub async fn submit_plan(
        &self,
        issue: impl Into<IssueRef>,
        content: &str,
        actor: &Actor,
    ) -> Result<Issue> {
        let issue = self.get_issue(issue).await?;
        let cols = self.columns().await?;
        let investigating = cols
            .iter()
            .find(|c| c.is_named(names::INVESTIGATING))
            .map(|c| c.id);
        let review = self
            .column_named(names::NEEDS_REVIEW, ColumnCategory::Open)
            .await?;
        let updated = self
            .patch_with_retry(issue.id, actor, |cur| {
                let next = plan::submit(&cur.plan, content)?;
                let mut p = IssuePatch {
                    plan: Some(next),
                    agent_status: Some(AgentStatus::AwaitingReview),
                    ..IssuePatch::default()
                };
                if Some(cur.column_id) == investigating {
                    p.column_id = Some(review.id);
                }
                Ok(p)
            })
            .await?;
        let mut a = NewActivity::new(ActivityType::Complete, "Plan submitted for review");
        a.run_id = updated.current_run_id;
        self.record_activity(updated.id, a).await?;
        Ok(updated)
    }

    /// A triage agent posts its assessment for a person to read; it can be approved like a plan.
    pub async fn post_assessment(
        &self,
        issue: impl Into<IssueRef>,
        content: &str,
        actor: &Actor,
    ) -> Result<Issue> {
        let issue = self.get_issue(issue).await?;
        let review = self
            .column_named(names::NEEDS_REVIEW, ColumnCategory::Open)
            .await?;
        let updated = self
            .patch_with_retry(issue.id, actor, |cur| {
                let next = plan::post_assessment(&cur.plan, content)?;
                Ok(IssuePatch {
                    plan: Some(next),
                    column_id: (cur.column_id != review.id).then_some(review.id),
                    ..IssuePatch::default()
                })
            })
            .await?;
        let mut a = NewActivity::new(ActivityType::Complete, "Triage assessment posted");
        a.run_id = updated.current_run_id;
        self.record_activity(updated.id, a).await?;
        Ok(updated)
    }

    /// A person approves the plan; with `auto_spawn` the implementation starts through the gates.
    pub async fn approve_plan(
        &self,
        issue: impl Into<IssueRef>,
        approved_by: &str,
        auto_spawn: bool,
        actor: &Actor,
    ) -> Result<PlanReview> {
        let issue = self.get_issue(issue).await?;
        let now = self.now();
        let updated = self
            .patch_with_retry(issue.id, actor, |cur| {
                let next = plan::approve(&cur.plan, approved_by, now)?;
                let agent_status = if cur.agent_status == AgentStatus::AwaitingReview {
                    Some(AgentStatus::Idle)
                } else {
                    None
                };
                Ok(IssuePatch {
                    plan: Some(next),
                    agent_status,
                    ..IssuePatch::default()
                })
            })
            .await?;
        let by = updated
            .plan
            .approved_by
            .clone()
            .unwrap_or_else(|| "human".into());
        self.record_activity(
            updated.id,
            NewActivity::new(ActivityType::Observation, format!("Plan approved by {by}")),
        )
        .await?;
        let spawn = if auto_spawn {
            let outcome = self
                .spawn(
                    updated.id,
                    SpawnOptions::new(WorkflowKind::PrdImplement),
                    actor,
                )
                .await?;
            if outcome.spawned() {
                self.record_activity(
                    updated.id,
                    NewActivity::new(
                        ActivityType::Action,
                        "Auto-spawned implementation after plan approval",
                    ),
                )
                .await?;
            }
            Some(outcome)
        } else {
            None
        };
        let issue = self.get_issue(updated.id).await?;
        Ok(PlanReview { issue, spawn })
    }

    /// A person rejects the plan with feedback; the next investigation gets the feedback.
    pub async fn reject_plan(
        &self,
        issue: impl Into<IssueRef>,
        feedback: &str,
        actor: &Actor,
    ) -> Result<Issue> {
        let issue = self.get_issue(issue).await?;
        let updated = self
            .patch_with_retry(issue.id, actor, |cur| {
                let next = plan::reject(&cur.plan, feedback)?;
                Ok(IssuePatch {
                    plan: Some(next),
                    agent_status: Some(AgentStatus::Idle),
                    ..IssuePatch::default()
                })
            })
            .await?;
        self.record_activity(
            updated.id,
            NewActivity::new(
                ActivityType::Observation,
                format!("Plan rejected: {}", feedback.trim()),
            ),
        )
        .await?;
        Ok(updated)
    }
}
