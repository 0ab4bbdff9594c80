//! Agent callbacks (terminal output, activities, run progress and results, blockers). Every one
//! names its run and *sets* values, so a retried callback changes nothing the second time.

use super::Dispatch;
use crate::error::{Error, Result};
use crate::ids::{IssueRef, RunId};
use crate::issue::{Actor, AgentStatus, IssuePatch};
use crate::ports::{Event, RunReporter, RunResult};
use crate::run::{
    Activity, ActivityType, Blocker, NewActivity, Run, RunPatch, RunStatus, TerminalChunk,
};
use async_trait::async_trait;
use chrono::Duration;
use serde::{Deserialize, Serialize};

/// Which run a callback is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunSelector {
    /// The issue's current run (the newest one).
    Current,
    Id(RunId),
    /// The runner's id (e.g. the GitHub run id), or our run id as text.
    External(String),
}

/// Terminal chunks and heartbeats refresh the run's liveness at most this often (saves a write
/// per chunk or heartbeat).
const LIVENESS_EVERY: i64 = 30;

/// A terminal chunk up to this size travels in its live event (viewers need not read it back).
const EVENT_CHUNK_MAX_BYTES: usize = 4096;

impl Dispatch {
    /// Finds the run a callback is about, checking it belongs to the issue.
    pub async fn resolve_run(&self, issue: impl Into<IssueRef>, sel: &RunSelector) -> Result<Run> {
        let issue = self.get_issue(issue).await?;
        let run = match sel {
            RunSelector::Id(id) => Some(self.inner.store.get_run(*id).await?),
            RunSelector::External(x) => match x.parse::<RunId>() {
                Ok(id) => match self.inner.store.get_run(id).await {
                    Ok(r) => Some(r),
                    Err(_) => self.inner.store.find_run_by_external_id(x).await?,
                },
                Err(_) => self.inner.store.find_run_by_external_id(x).await?,
            },
            RunSelector::Current => match issue.current_run_id {
                Some(id) => Some(self.inner.store.get_run(id).await?),
                None => self
                    .inner
                    .store
                    .list_runs(issue.id)
                    .await?
                    .into_iter()
                    .next(),
            },
        };
        match run {
            Some(r) if r.issue_id == issue.id => Ok(r),
            Some(_) => Err(Error::invalid(
                "run",
                format!("that run is not a run of {}", issue.identifier),
            )),
            None => Err(Error::not_found(format!(
                "{} has no such run",
                issue.identifier
            ))),
        }
    }

    /// The run an issue-level report is about (`PATCH /api/issues/{id}` with `spawn_status`, an
    /// outcome or a cost). With the runner's id of the run (`github_run_id`): the issue's run with
    /// that id — an old workflow's late report lands on its own, finished run, never on a newer
    /// one; when no run has that id yet, the current run, unless it already has another runner
    /// id (`Conflict`: the report is about a run the issue no longer has). Without one: the
    /// current run.
    pub async fn resolve_reported_run(
        &self,
        issue: impl Into<IssueRef>,
        external: Option<&str>,
    ) -> Result<Run> {
        let issue = self.get_issue(issue).await?;
        let Some(x) = external.map(str::trim).filter(|x| !x.is_empty()) else {
            return self.resolve_run(issue.id, &RunSelector::Current).await;
        };
        match self
            .resolve_run(issue.id, &RunSelector::External(x.to_string()))
            .await
        {
            Ok(r) => return Ok(r),
            Err(e) if e.kind == crate::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let current = self.resolve_run(issue.id, &RunSelector::Current).await?;
        match current.external_id.as_deref() {
            None => Ok(current),
            Some(other) => Err(Error::conflict(format!(
                "{} has no run {x:?}; its current run is {other:?}",
                issue.identifier
            ))),
        }
    }

    /// An agent's heartbeat for the run a report names (see [`Self::resolve_reported_run`]).
    /// From its first heartbeat on, the run is judged by the heartbeat timeout
    /// ([`crate::run::liveness`]). Cheap: the run is written at most every `LIVENESS_EVERY`
    /// seconds; a terminal run is answered as it is and not changed. Returns the run (its status
    /// tells the agent whether it was cancelled).
    pub async fn heartbeat(
        &self,
        issue: impl Into<IssueRef>,
        external: Option<&str>,
    ) -> Result<Run> {
        let run = self.resolve_reported_run(issue, external).await?;
        let now = self.now();
        let fresh = run
            .heartbeat_at
            .is_some_and(|t| now - t < Duration::seconds(LIVENESS_EVERY));
        if fresh || run.status.is_terminal() {
            return Ok(run);
        }
        let patch = RunPatch {
            heartbeat_at: Some(now),
            ..RunPatch::default()
        };
        let update = self
            .inner
            .store
            .update_run(run.id, &patch, &Actor::system("Heartbeat"), now)
            .await?;
        Ok(update.run)
    }

    /// Applies a patch to a run and runs the consequences (events, cooldown, notifications).
    pub async fn update_run(&self, run_id: RunId, patch: RunPatch, actor: &Actor) -> Result<Run> {
        let run = self.inner.store.get_run(run_id).await?;
        let before = self.get_issue(run.issue_id).await?;
        let mut patch = patch;
        patch.last_callback_at = Some(self.now());
        let update = self
            .write_run(run_id, patch, &before, actor, self.now())
            .await?;
        self.after_run_update(&update, &before).await?;
        Ok(update.run)
    }

    /// The run started (the workflow's first callback or the runner's own report).
    pub async fn run_started(
        &self,
        run_id: RunId,
        external_id: Option<String>,
        external_url: Option<String>,
        actor: &Actor,
    ) -> Result<Run> {
        let patch = RunPatch {
            status: Some(RunStatus::Running),
            external_id,
            external_url,
            lease_until: Some(None),
            ..RunPatch::default()
        };
        self.update_run(run_id, patch, actor).await
    }

    /// The agent's result. A result without a status completes the run unless its outcome is
    /// `failed`.
    pub async fn finish_run(&self, run_id: RunId, result: RunResult, actor: &Actor) -> Result<Run> {
        let status = result.status.unwrap_or(match result.outcome {
            Some(crate::run::Outcome::Failed) => RunStatus::Failed,
            _ => RunStatus::Completed,
        });
        let patch = RunPatch {
            status: Some(status),
            outcome: result.outcome,
            outcome_summary: result.summary,
            cost_usd: result.cost_usd,
            num_turns: result.num_turns,
            model: result.model,
            tokens_used: result.tokens_used,
            pr_number: result.pr_number,
            files_changed: result.files_changed,
            follow_ups: result.follow_ups,
            report_content: result.report,
            prompt_text: result.prompt_text,
            lease_until: Some(None),
            ..RunPatch::default()
        };
        self.update_run(run_id, patch, actor).await
    }

    /// Appends terminal output to a run. `seq` makes a retried post idempotent.
    pub async fn append_terminal(
        &self,
        issue: impl Into<IssueRef>,
        sel: &RunSelector,
        content: &str,
        seq: Option<u64>,
    ) -> Result<TerminalChunk> {
        let run = self.resolve_run(issue, sel).await?;
        self.append_to_run(&run, content, seq).await
    }

    async fn append_to_run(
        &self,
        run: &Run,
        content: &str,
        seq: Option<u64>,
    ) -> Result<TerminalChunk> {
        if content.len() > 1024 * 1024 {
            return Err(Error::invalid(
                "content",
                "a terminal chunk is limited to 1 MiB",
            ));
        }
        let now = self.now();
        let chunk = self
            .inner
            .store
            .append_terminal(run.id, content, seq, now)
            .await?;
        let fresh = run
            .last_callback_at
            .is_some_and(|t| now - t < Duration::seconds(LIVENESS_EVERY));
        if !fresh && !run.status.is_terminal() {
            let patch = RunPatch {
                last_callback_at: Some(now),
                ..RunPatch::default()
            };
            self.inner
                .store
                .update_run(run.id, &patch, &Actor::system("Terminal"), now)
                .await?;
        }
        self.publish(Event::TerminalChunk {
            issue_id: run.issue_id,
            run_id: run.id,
            seq: chunk.seq,
            content: (chunk.content.len() <= EVENT_CHUNK_MAX_BYTES).then(|| {
                crate::ports::ChunkText {
                    text: chunk.content.clone(),
                    at: chunk.at,
                }
            }),
        })
        .await;
        Ok(chunk)
    }

    /// Terminal output of a run after sequence number `after` (replay for reconnecting viewers).
    pub async fn read_terminal(
        &self,
        run: RunId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<TerminalChunk>> {
        self.inner.store.read_terminal(run, after, limit).await
    }

    /// The full transcript: every stored chunk, concatenated in order.
    pub async fn transcript(&self, run: RunId) -> Result<String> {
        let mut out = String::new();
        let mut after = 0;
        loop {
            let page = self.inner.store.read_terminal(run, after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for c in &page {
                out.push_str(&c.content);
            }
        }
        Ok(out)
    }

    /// Records an activity on an issue (agent reports, tool calls, notes).
    pub async fn record_activity(
        &self,
        issue: impl Into<IssueRef>,
        activity: NewActivity,
    ) -> Result<Activity> {
        if activity.content.len() > 600 * 1024 {
            return Err(Error::invalid(
                "content",
                "activity content is limited to 600 KiB",
            ));
        }
        let issue = self.get_issue(issue).await?;
        let a = self
            .inner
            .store
            .add_activity(issue.id, activity, self.now())
            .await?;
        if let Some(run_id) = a.run_id {
            let patch = RunPatch {
                last_callback_at: Some(self.now()),
                ..RunPatch::default()
            };
            self.inner
                .store
                .update_run(run_id, &patch, &Actor::system("Activity"), self.now())
                .await?;
        }
        self.publish(Event::Activity {
            issue_id: issue.id,
            activity_id: a.id,
        })
        .await;
        Ok(a)
    }

    /// Newest first.
    pub async fn activities(
        &self,
        issue: impl Into<IssueRef>,
        before: Option<crate::Timestamp>,
        limit: usize,
    ) -> Result<Vec<Activity>> {
        let issue = self.get_issue(issue).await?;
        self.inner
            .store
            .list_activities(issue.id, before, limit)
            .await
    }

    pub async fn runs(&self, issue: impl Into<IssueRef>) -> Result<Vec<Run>> {
        let issue = self.get_issue(issue).await?;
        self.inner.store.list_runs(issue.id).await
    }

    /// The agent is blocked: the issue shows it and the reason (`[category] reason`).
    pub async fn report_blocker(
        &self,
        issue: impl Into<IssueRef>,
        blocker: Blocker,
        actor: &Actor,
    ) -> Result<()> {
        blocker.validate()?;
        let issue = self.get_issue(issue).await?;
        let text = blocker.display();
        self.patch_with_retry(issue.id, actor, |_| {
            Ok(IssuePatch {
                agent_status: Some(AgentStatus::Blocked),
                blocked_reason: Some(Some(text.clone())),
                ..IssuePatch::default()
            })
        })
        .await?;
        let mut a = NewActivity::new(ActivityType::BlockerReported, format!("Blocked: {text}"));
        a.run_id = issue.current_run_id;
        a.metadata = serde_json::json!({"category": blocker.category, "reason": blocker.reason});
        self.record_activity(issue.id, a).await?;
        Ok(())
    }
}

/// What an agent says it is doing (the MCP tool `update_agent_status`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AgentStatusReport {
    pub status: AgentStatus,
    pub phase: Option<String>,
    pub summary: Option<String>,
    pub pr_url: Option<String>,
    pub error: Option<String>,
}

impl AgentStatusReport {
    /// One readable line for the timeline.
    pub fn display(&self) -> String {
        let mut s = format!("Agent status: {}", self.status);
        for (k, v) in [
            ("phase", &self.phase),
            ("summary", &self.summary),
            ("PR", &self.pr_url),
            ("error", &self.error),
        ] {
            if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                s.push_str(&format!("; {k}: {v}"));
            }
        }
        s
    }
}

impl Dispatch {
    /// Sets the issue's agent status and records the report on its timeline. `blocked` keeps
    /// the error (or summary) as the blocked reason; any other status clears a blocked reason.
    pub async fn report_agent_status(
        &self,
        issue: impl Into<IssueRef>,
        report: AgentStatusReport,
        actor: &Actor,
    ) -> Result<crate::issue::Issue> {
        let issue = self.get_issue(issue).await?;
        let blocked_reason = match report.status {
            AgentStatus::Blocked => Some(
                report
                    .error
                    .clone()
                    .or_else(|| report.summary.clone())
                    .filter(|r| !r.trim().is_empty())
                    .unwrap_or_else(|| "blocked".to_string()),
            ),
            _ => None,
        };
        let updated = self
            .patch_with_retry(issue.id, actor, |current| {
                Ok(IssuePatch {
                    agent_status: Some(report.status),
                    blocked_reason: (blocked_reason.is_some() || current.blocked_reason.is_some())
                        .then(|| blocked_reason.clone()),
                    ..IssuePatch::default()
                })
            })
            .await?;
        let kind = if report.error.is_some() {
            ActivityType::Error
        } else {
            ActivityType::Observation
        };
        let mut a = NewActivity::new(kind, report.display());
        a.run_id = issue.current_run_id;
        a.metadata = serde_json::to_value(&report).unwrap_or_default();
        self.record_activity(issue.id, a).await?;
        Ok(updated)
    }
}

/// In-process runners report through the same paths as HTTP callbacks.
#[async_trait]
impl RunReporter for Dispatch {
    async fn started(
        &self,
        run: RunId,
        external_id: Option<String>,
        url: Option<String>,
    ) -> Result<()> {
        let actor = Actor::agent(self.inner.runner.name().to_string());
        self.run_started(run, external_id, url, &actor)
            .await
            .map(|_| ())
    }

    async fn terminal(&self, run: RunId, content: &str) -> Result<()> {
        let r = self.inner.store.get_run(run).await?;
        self.append_to_run(&r, content, None).await.map(|_| ())
    }

    async fn activity(&self, run: RunId, activity: NewActivity) -> Result<()> {
        let r = self.inner.store.get_run(run).await?;
        self.record_activity(r.issue_id, activity.run(run))
            .await
            .map(|_| ())
    }

    async fn finish(&self, run: RunId, result: RunResult) -> Result<()> {
        let actor = Actor::agent(self.inner.runner.name().to_string());
        self.finish_run(run, result, &actor).await.map(|_| ())
    }
}
