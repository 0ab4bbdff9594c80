//! The plan → review → implement loop (spec §7.5) as pure transitions over [`PlanFields`].

use crate::Timestamp;
use crate::error::{Error, Result};
use crate::issue::PlanFields;

text_enum!(
    PlanStatus {
        Investigating = "investigating",
        /// A triage assessment posted for a person to read (can be approved like a plan).
        Posted = "posted",
        AwaitingReview = "awaiting_review",
        Approved = "approved",
        Rejected = "rejected",
        NeedsRevision = "needs_revision",
    }
);

/// An agent submits a plan: it becomes the plan under review, whatever came before (a
/// re-investigation after a rejection or even after an approval replaces the old plan).
pub fn submit(current: &PlanFields, content: &str) -> Result<PlanFields> {
    let content = content.trim();
    if content.is_empty() {
        return Err(Error::invalid("content", "a plan needs content"));
    }
    Ok(PlanFields {
        status: Some(PlanStatus::AwaitingReview),
        content: Some(content.to_string()),
        // Feedback stays until approval so the reviewer sees what was asked for.
        feedback: current.feedback.clone(),
        approved_at: None,
        approved_by: None,
    })
}

/// A triage agent posts an assessment (`posted`), which a person may approve like a plan.
pub fn post_assessment(current: &PlanFields, content: &str) -> Result<PlanFields> {
    let content = content.trim();
    if content.is_empty() {
        return Err(Error::invalid(
            "plan_content",
            "an assessment needs content",
        ));
    }
    Ok(PlanFields {
        status: Some(PlanStatus::Posted),
        content: Some(content.to_string()),
        feedback: current.feedback.clone(),
        approved_at: None,
        approved_by: None,
    })
}

fn reviewable(current: &PlanFields) -> Result<()> {
    match current.status {
        Some(PlanStatus::AwaitingReview | PlanStatus::Posted) if current.content.is_some() => {
            Ok(())
        }
        other => Err(Error::conflict(format!(
            "plan is {} and cannot be reviewed; only a plan awaiting review can be approved or rejected",
            other.map(|s| s.as_str()).unwrap_or("absent")
        ))),
    }
}

/// A person approves the plan under review.
pub fn approve(current: &PlanFields, by: &str, now: Timestamp) -> Result<PlanFields> {
    reviewable(current)?;
    let by = by.trim();
    Ok(PlanFields {
        status: Some(PlanStatus::Approved),
        content: current.content.clone(),
        feedback: None,
        approved_at: Some(now),
        approved_by: Some(if by.is_empty() {
            "human".to_string()
        } else {
            by.to_string()
        }),
    })
}

/// A person rejects the plan under review; feedback is required and is carried into the next
/// investigation.
pub fn reject(current: &PlanFields, feedback: &str) -> Result<PlanFields> {
    reviewable(current)?;
    let feedback = feedback.trim();
    if feedback.is_empty() {
        return Err(Error::invalid(
            "feedback",
            "rejecting a plan requires feedback",
        ));
    }
    Ok(PlanFields {
        status: Some(PlanStatus::NeedsRevision),
        content: current.content.clone(),
        feedback: Some(feedback.to_string()),
        approved_at: None,
        approved_by: None,
    })
}

/// An investigation starts: the plan is being (re)worked.
pub fn start_investigation(current: &PlanFields) -> PlanFields {
    PlanFields {
        status: Some(PlanStatus::Investigating),
        ..current.clone()
    }
}

/// Implement and QA refuse to start without an approved plan; returns the plan text to hand over.
pub fn require_approved(current: &PlanFields) -> Result<&str> {
    match (&current.status, &current.content) {
        (Some(PlanStatus::Approved), Some(c)) => Ok(c),
        (status, _) => Err(Error::new(
            crate::error::ErrorKind::Conflict,
            format!(
                "implementation needs an approved plan (plan is {})",
                status.map(|s| s.as_str()).unwrap_or("absent")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> Timestamp {
        chrono::Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn full_loop_submit_reject_resubmit_approve() {
        let empty = PlanFields::default();
        assert!(require_approved(&empty).is_err());
        let p = submit(&empty, "  plan v1 ").unwrap();
        assert_eq!(p.status, Some(PlanStatus::AwaitingReview));
        assert_eq!(p.content.as_deref(), Some("plan v1"));
        assert!(require_approved(&p).is_err());

        let r = reject(&p, "split the migration").unwrap();
        assert_eq!(r.status, Some(PlanStatus::NeedsRevision));
        assert_eq!(r.feedback.as_deref(), Some("split the migration"));
        // Cannot review twice.
        assert_eq!(
            approve(&r, "ann", now()).unwrap_err().kind,
            crate::ErrorKind::Conflict
        );

        let p2 = submit(&start_investigation(&r), "plan v2").unwrap();
        assert_eq!(p2.feedback.as_deref(), Some("split the migration"));
        let a = approve(&p2, "", now()).unwrap();
        assert_eq!(a.status, Some(PlanStatus::Approved));
        assert_eq!(a.approved_by.as_deref(), Some("human"));
        assert_eq!(a.feedback, None);
        assert_eq!(require_approved(&a).unwrap(), "plan v2");
    }

    #[test]
    fn reject_needs_feedback_and_submit_needs_content() {
        let p = submit(&PlanFields::default(), "x").unwrap();
        assert_eq!(reject(&p, "  ").unwrap_err().field(), Some("feedback"));
        assert_eq!(submit(&p, "").unwrap_err().field(), Some("content"));
    }

    #[test]
    fn posted_triage_assessment_can_be_approved() {
        let posted = PlanFields {
            status: Some(PlanStatus::Posted),
            content: Some("assessment".into()),
            ..PlanFields::default()
        };
        assert!(approve(&posted, "lead", now()).is_ok());
        assert!(approve(&PlanFields::default(), "lead", now()).is_err());
    }
}
