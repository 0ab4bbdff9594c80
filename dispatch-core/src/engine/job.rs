//! The inputs a workflow receives (spec §7.2), with the original's length caps.

use crate::issue::Issue;
use crate::ports::ErrorLink;
use crate::run::{Run, WorkflowKind};
use std::collections::BTreeMap;

fn cap(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        s.chars().take(max).collect()
    }
}

/// Builds the workflow inputs for a run. `link` is the issue's error link, if any.
pub fn job_inputs(run: &Run, issue: &Issue, link: Option<&ErrorLink>) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("dispatch_run_id".into(), run.id.to_string());
    m.insert("issue_id".into(), issue.id.to_string());
    m.insert("issue_identifier".into(), issue.identifier.clone());
    m.insert("title".into(), issue.title.clone());
    m.insert(
        "description".into(),
        cap(issue.description.as_deref().unwrap_or(""), 5000),
    );
    let meta = |k: &str| -> Option<String> {
        link.and_then(|l| l.metadata.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    match run.kind {
        WorkflowKind::ErrorFix => {
            m.insert(
                "source".into(),
                meta("source").unwrap_or_else(|| "unknown".into()),
            );
            m.insert(
                "feature".into(),
                meta("feature").unwrap_or_else(|| "unknown".into()),
            );
            m.insert(
                "error_fingerprint".into(),
                link.map(|l| l.fingerprint.clone()).unwrap_or_default(),
            );
            let msg = meta("errorMessage")
                .or_else(|| meta("message"))
                .unwrap_or_default();
            m.insert("error_message".into(), cap(&msg, 1000));
            m.insert(
                "stack_trace".into(),
                cap(&meta("stackTrace").unwrap_or_default(), 2000),
            );
        }
        WorkflowKind::PrdInvestigate => {
            if let Some(f) = &issue.plan.feedback {
                m.insert("plan_feedback".into(), cap(f, 5000));
            }
        }
        WorkflowKind::PrdImplement | WorkflowKind::Qa => {
            if let Some(p) = &issue.plan.content {
                m.insert("plan_content".into(), cap(p, 5000));
            }
        }
        WorkflowKind::DeepResearch | WorkflowKind::AutoTriage => {}
    }
    if let Some(c) = &run.additional_context {
        m.insert("additional_context".into(), cap(c, 2000));
    }
    m
}
