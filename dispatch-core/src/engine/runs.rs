//! Runs started outside Dispatch (`POST /api/issues/{id}/runs`).

use super::Dispatch;
use crate::error::{Error, Result};
use crate::ids::IssueRef;
use crate::issue::Actor;
use crate::ports::Event;
use crate::run::{NewRun, Run, RunStatus, WorkflowKind};

/// What a workflow tells about a run it started by itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExternalRun {
    pub external_id: Option<String>,
    pub external_url: Option<String>,
    pub prompt_text: Option<String>,
}

impl Dispatch {
    /// Records a run that is already running elsewhere; it becomes the issue's current run.
    /// A retried post (same `external_id`) returns the first run (`false`). `Conflict` when the
    /// issue has another active run.
    pub async fn record_external_run(
        &self,
        issue: impl Into<IssueRef>,
        kind: WorkflowKind,
        ext: ExternalRun,
        actor: &Actor,
    ) -> Result<(Run, bool)> {
        let issue = self.get_issue(issue).await?;
        if let Some(u) = &ext.external_url {
            crate::agent::validate_webhook_url("github_run_url", u)
                .map_err(|e| Error::invalid("github_run_url", e.message))?;
        }
        let now = self.now();
        let mut run = NewRun {
            issue_id: issue.id,
            kind,
            additional_context: None,
            force: false,
            requested_by: actor.name.clone(),
        }
        .into_run(now);
        run.status = RunStatus::Running;
        run.started_at = Some(now);
        run.last_callback_at = Some(now);
        run.runner = Some("external".into());
        run.external_id = ext.external_id.filter(|x| !x.trim().is_empty());
        run.external_url = ext.external_url;
        run.prompt_text = ext.prompt_text;
        let (run, issue, created) = self
            .inner
            .store
            .record_external_run(&run, actor, now)
            .await?;
        if created {
            self.publish(Event::RunChanged {
                issue_id: issue.id,
                run_id: run.id,
                status: run.status,
            })
            .await;
            self.publish(Event::IssueUpdated { issue_id: issue.id })
                .await;
        }
        Ok((run, created))
    }
}
