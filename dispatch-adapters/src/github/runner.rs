//! `GithubActionsRunner`: starts the agent workflows with `workflow_dispatch`, finds the run it
//! started by our `dispatch_run_id` (the workflows' `run-name` carries it), polls and cancels it.

use super::client::{Attempt, GithubClient, GithubReply, Reply, SERVICE, after_attempts};
use super::config::GithubConfig;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dispatch_core::ports::{DispatchReceipt, RemoteRunStatus, RunJob, RunReporter, Runner};
use dispatch_core::run::Run;
use dispatch_core::{Error, ErrorKind, Result};
use reqwest::Method;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The input that names our run; the workflows put it into their `run-name`.
pub const RUN_ID_INPUT: &str = "dispatch_run_id";
/// The input that overrides `DISPATCH_API_URL` inside the workflow.
pub const CALLBACK_URL_INPUT: &str = "callback_url";
/// The inputs Dispatch adds to a job's own; workflows installed from the original lack them.
const OWN_INPUTS: [&str; 2] = [RUN_ID_INPUT, CALLBACK_URL_INPUT];
/// GitHub runs found by time that are remembered as taken (per runner).
const CLAIMED_MAX: usize = 1024;

/// The inputs named in GitHub's 422 "Unexpected inputs provided: [\"a\", \"b\"]".
fn unexpected_inputs(message: &str) -> Option<Vec<String>> {
    let (_, rest) = message.split_once("Unexpected inputs provided")?;
    let rest = rest.trim_start_matches(':').trim();
    let list = &rest[..rest.find(']').map_or(rest.len(), |i| i + 1)];
    let names: Vec<String> = serde_json::from_str(list).unwrap_or_else(|_| {
        list.trim_matches(['[', ']'])
            .split(',')
            .map(|n| n.trim().trim_matches('"').to_string())
            .filter(|n| !n.is_empty())
            .collect()
    });
    (!names.is_empty()).then_some(names)
}

/// What a GitHub call was, for error messages.
#[derive(Debug, Clone, Copy)]
enum Op<'a> {
    Dispatch { file: &'a str },
    ListRuns { file: &'a str },
    Cancel { id: u64 },
    Status { id: u64 },
}

impl Op<'_> {
    fn what(&self) -> String {
        match self {
            Op::Dispatch { file } => format!("the dispatch of workflow {file}"),
            Op::ListRuns { file } => format!("listing the runs of workflow {file}"),
            Op::Cancel { id } => format!("cancelling GitHub run {id}"),
            Op::Status { id } => format!("reading GitHub run {id}"),
        }
    }
}

/// The parts of GitHub's `workflow-run` object the runner reads.
#[derive(Debug, Clone, Deserialize)]
struct WorkflowRun {
    id: u64,
    #[serde(default)]
    name: Option<String>,
    /// The run's `run-name` when the workflow sets one.
    #[serde(default)]
    display_title: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    conclusion: Option<String>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
}

impl WorkflowRun {
    fn is_for(&self, run_id: &str) -> bool {
        [&self.display_title, &self.name]
            .into_iter()
            .flatten()
            .any(|t| t.contains(run_id))
    }
    fn receipt(&self) -> DispatchReceipt {
        DispatchReceipt {
            external_id: Some(self.id.to_string()),
            external_url: self.html_url.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct RunList {
    #[serde(default)]
    workflow_runs: Vec<WorkflowRun>,
}

/// `200` answer of a dispatch with `return_run_details: true`.
#[derive(Debug, Deserialize)]
struct DispatchDetails {
    workflow_run_id: u64,
    #[serde(default)]
    html_url: Option<String>,
}

/// Maps GitHub's `status` / `conclusion` of a workflow run.
pub fn remote_status(status: Option<&str>, conclusion: Option<&str>) -> Option<RemoteRunStatus> {
    match status? {
        "queued" | "waiting" | "requested" | "pending" => Some(RemoteRunStatus::Pending),
        "in_progress" => Some(RemoteRunStatus::Running),
        "completed" => Some(match conclusion {
            Some("success") | Some("neutral") => RemoteRunStatus::Succeeded,
            Some("cancelled") | Some("skipped") => RemoteRunStatus::Cancelled,
            // failure, timed_out, startup_failure, action_required, stale, or none at all.
            _ => RemoteRunStatus::Failed,
        }),
        _ => None,
    }
}

/// Runs the agent workflows on GitHub Actions (spec §7.1, §7.2).
///
/// - `dispatch`: `POST /repos/{owner}/{repo}/actions/workflows/{file}/dispatches` with
///   `{ref, inputs, return_run_details: true}`. Idempotent by `dispatch_run_id`: a run whose
///   name carries it is looked up first, and again after an answer that may hide a success
///   (5xx, timeout), so a retry never starts a second agent.
/// - The run id comes from the `200` answer; servers that answer `204` (older GitHub Enterprise,
///   which also reject `return_run_details` and are retried without it) get a bounded look at the
///   run list instead.
/// - `cancel` and `status` work by run id, finding the run first when it is not known yet.
#[derive(Debug)]
pub struct GithubActionsRunner {
    cfg: GithubConfig,
    client: GithubClient,
    /// Set once the server rejected `return_run_details` and accepted the dispatch without it.
    no_run_details: AtomicBool,
    /// Per workflow file, the inputs of Dispatch's own that it does not declare (a workflow
    /// installed from the original): later dispatches leave them out at once.
    undeclared: Mutex<HashMap<String, BTreeSet<String>>>,
    /// GitHub runs given to a dispatch by time window (newest last, bounded), so that two
    /// dispatches of an old workflow do not take the same run.
    claimed: Mutex<VecDeque<u64>>,
}

impl GithubActionsRunner {
    pub fn new(cfg: GithubConfig) -> Result<Self> {
        let client = GithubClient::new(&cfg)?;
        Ok(GithubActionsRunner {
            cfg,
            client,
            no_run_details: AtomicBool::new(false),
            undeclared: Mutex::new(HashMap::new()),
            claimed: Mutex::new(VecDeque::new()),
        })
    }

    /// `None` when `GITHUB_TOKEN` is not set.
    pub fn from_env() -> Result<Option<Self>> {
        GithubConfig::from_env()?.map(Self::new).transpose()
    }

    pub fn config(&self) -> &GithubConfig {
        &self.cfg
    }

    fn repo_segments<'a>(&'a self, rest: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["repos", self.cfg.owner.as_str(), self.cfg.repo.as_str()];
        v.extend_from_slice(rest);
        v
    }

    /// The workflow inputs: the job's (spec §7.2, capped by the engine), our run id, and the
    /// callback URL when configured.
    fn inputs(&self, job: &RunJob) -> BTreeMap<String, String> {
        let mut inputs = job.inputs.clone();
        inputs
            .entry(RUN_ID_INPUT.to_string())
            .or_insert_with(|| job.run.id.to_string());
        if let Some(url) = &self.cfg.callback_url {
            inputs
                .entry(CALLBACK_URL_INPUT.to_string())
                .or_insert_with(|| url.clone());
        }
        inputs
    }

    /// Turns an unexpected answer into an error that says what to fix.
    fn error_for(&self, op: Op<'_>, reply: &Reply) -> Error {
        let gh = reply.message();
        let repo = self.cfg.full_name();
        let git_ref = &self.cfg.git_ref;
        let what = op.what();
        match reply.status.as_u16() {
            401 => Error::new(
                ErrorKind::Unauthorized,
                format!(
                    "GitHub rejected GITHUB_TOKEN on {what} (401: {gh}): the token is missing, \
                     expired or revoked. Create a token with the `repo` and `workflow` scopes \
                     (fine-grained: Actions read and write on {repo}) and set GITHUB_TOKEN"
                ),
            ),
            403 => Error::forbidden(format!(
                "GitHub refused {what} on {repo} (403: {gh}): the token lacks the `workflow` \
                 scope (classic token) or the Actions: read and write permission (fine-grained \
                 token or GitHub App) on {repo}, or it is not authorised for the organisation's SSO"
            )),
            404 => match op {
                Op::Dispatch { file } | Op::ListRuns { file } => Error::not_found(format!(
                    "workflow file {file} not found in {repo} at ref {git_ref} (or the token \
                     cannot see the repository): add it with `dispatch workflows install` and \
                     push it to {git_ref} and the default branch, or fix GITHUB_REPO, GITHUB_REF \
                     or GITHUB_WORKFLOW_ID. GitHub said: {gh}"
                )),
                Op::Cancel { id } | Op::Status { id } => Error::not_found(format!(
                    "GitHub run {id} not found in {repo} (deleted, or the token cannot see the \
                     repository). GitHub said: {gh}"
                )),
            },
            422 => match op {
                Op::Dispatch { file } => Error::invalid(
                    "inputs",
                    format!(
                        "GitHub rejected the dispatch of {file} at ref {git_ref}; GitHub said \"{gh}\". \
                         Every input Dispatch sends must be declared under \
                         `on.workflow_dispatch.inputs` in {file}, including {RUN_ID_INPUT} (and \
                         {CALLBACK_URL_INPUT} when DISPATCH_CALLBACK_URL is set); the ref must \
                         exist and the workflow must have a `workflow_dispatch` trigger. \
                         Reinstall the workflows with `dispatch workflows install`"
                    ),
                ),
                _ => Error::upstream(SERVICE, 422, format!("{what} failed: {gh}")),
            },
            status => Error::upstream(SERVICE, status, format!("{what} failed: {gh}")),
        }
    }

    /// Looks once through the workflow's recent `workflow_dispatch` runs for the one whose name
    /// carries `run`'s id.
    async fn find_run(&self, file: &str, run: &Run) -> Result<Option<WorkflowRun>> {
        let policy = &self.cfg.discovery;
        let slack = chrono::Duration::from_std(policy.created_slack)
            .unwrap_or_else(|_| chrono::Duration::minutes(10));
        let since = (run.created_at - slack)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let run_id = run.id.to_string();
        for page in 1..=policy.max_pages.max(1) {
            let (runs, more) = self.dispatch_runs_page(file, &since, page).await?;
            if let Some(found) = runs.into_iter().find(|r| r.is_for(&run_id)) {
                return Ok(Some(found));
            }
            if !more {
                break;
            }
        }
        Ok(None)
    }

    /// One page of the workflow's `workflow_dispatch` runs created at or after `since` (GitHub's
    /// filter, whole seconds), newest first; `true` when a further page may hold more.
    async fn dispatch_runs_page(
        &self,
        file: &str,
        since: &str,
        page: u32,
    ) -> Result<(Vec<WorkflowRun>, bool)> {
        let per_page = self.cfg.discovery.per_page.clamp(1, 100);
        let op = Op::ListRuns { file };
        let url = self.client.url(
            &self.repo_segments(&["actions", "workflows", file, "runs"]),
            &[
                ("event", "workflow_dispatch".to_string()),
                ("created", format!(">={since}")),
                ("per_page", per_page.to_string()),
                ("page", page.to_string()),
            ],
        )?;
        let reply = self
            .client
            .call(&op.what(), Method::GET, &url, None)
            .await?;
        if !reply.status.is_success() {
            return Err(self.error_for(op, &reply));
        }
        let list: RunList = reply.json(&op.what())?;
        let more = list.workflow_runs.len() >= per_page as usize;
        Ok((list.workflow_runs, more))
    }

    /// For a workflow whose runs do not carry our id: the newest `workflow_dispatch` run of
    /// `file` created at or after `since` (our dispatch request) that no other dispatch of this
    /// runner took; it is then taken.
    async fn find_run_since(
        &self,
        file: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<WorkflowRun>> {
        let policy = &self.cfg.discovery;
        // GitHub's filter has whole seconds: from the start of our request's second.
        let floor = since.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let floor_t = DateTime::parse_from_rfc3339(&floor)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(since);
        let mut candidates = Vec::new();
        for page in 1..=policy.max_pages.max(1) {
            let (runs, more) = self.dispatch_runs_page(file, &floor, page).await?;
            candidates.extend(runs.into_iter().filter(|r| {
                r.event.as_deref().is_none_or(|e| e == "workflow_dispatch")
                    && r.created_at.is_some_and(|t| t >= floor_t)
            }));
            if !more {
                break;
            }
        }
        let mut claimed = self.claimed.lock().unwrap_or_else(|e| e.into_inner());
        let found = candidates
            .into_iter()
            .filter(|r| !claimed.contains(&r.id))
            .max_by_key(|r| (r.created_at, r.id));
        if let Some(f) = &found {
            claimed.push_back(f.id);
            if claimed.len() > CLAIMED_MAX {
                claimed.pop_front();
            }
        }
        Ok(found)
    }

    /// Waits for the run a dispatch started to show up in the run list (bounded): by our id
    /// in its name, or, for a workflow that does not take our id (`legacy_since` = when we
    /// sent the dispatch), by time.
    async fn discover(
        &self,
        file: &str,
        run: &Run,
        legacy_since: Option<DateTime<Utc>>,
    ) -> Result<Option<WorkflowRun>> {
        for _ in 0..self.cfg.discovery.attempts.max(1) {
            tokio::time::sleep(self.cfg.discovery.delay).await;
            let found = match legacy_since {
                Some(since) => self.find_run_since(file, since).await?,
                None => self.find_run(file, run).await?,
            };
            if let Some(found) = found {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Remembers that `file` does not declare `names` (our own inputs), and tells the operator.
    fn note_undeclared(&self, file: &str, names: &[String]) {
        tracing::warn!(
            workflow = file,
            inputs = %names.join(", "),
            "the workflow does not declare Dispatch's inputs (installed from the original?): \
             dispatching without them and finding the run by time. Run `dispatch workflows \
             install` and push the workflows so that runs are matched by their dispatch_run_id"
        );
        let mut map = self.undeclared.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(file.to_string())
            .or_default()
            .extend(names.iter().cloned());
    }

    fn claim(&self, id: u64) {
        let mut claimed = self.claimed.lock().unwrap_or_else(|e| e.into_inner());
        claimed.push_back(id);
        if claimed.len() > CLAIMED_MAX {
            claimed.pop_front();
        }
    }

    fn undeclared_of(&self, file: &str) -> BTreeSet<String> {
        let map = self.undeclared.lock().unwrap_or_else(|e| e.into_inner());
        map.get(file).cloned().unwrap_or_default()
    }

    /// The GitHub run id of `run`: recorded at dispatch, else found by name.
    async fn github_run_id(&self, run: &Run) -> Result<Option<WorkflowRun>> {
        if let Some(id) = run
            .external_id
            .as_deref()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            return Ok(Some(WorkflowRun {
                id,
                name: None,
                display_title: None,
                html_url: run.external_url.clone(),
                status: None,
                conclusion: None,
                event: None,
                created_at: None,
            }));
        }
        self.find_run(self.cfg.workflow_file(run.kind), run).await
    }

    /// Receipt of a dispatch that GitHub accepted without naming the run.
    async fn receipt_by_discovery(
        &self,
        file: &str,
        run: &Run,
        legacy_since: Option<DateTime<Utc>>,
    ) -> Result<DispatchReceipt> {
        match self.discover(file, run, legacy_since).await {
            Ok(Some(found)) => {
                tracing::info!(run = %run.id, github_run = found.id, "GitHub run found");
                Ok(found.receipt())
            }
            // The dispatch went through: report success; cancel/status find the run by name later.
            Ok(None) => {
                tracing::warn!(run = %run.id, workflow = file, "dispatched, but the GitHub run did not show up in the run list yet");
                Ok(DispatchReceipt::default())
            }
            Err(e) => {
                tracing::warn!(run = %run.id, error = %e, "dispatched, but listing the runs failed");
                Ok(DispatchReceipt::default())
            }
        }
    }
}

#[async_trait]
impl Runner for GithubActionsRunner {
    fn name(&self) -> &str {
        "github"
    }

    async fn dispatch(
        &self,
        job: RunJob,
        _reporter: Arc<dyn RunReporter>,
    ) -> Result<DispatchReceipt> {
        let run = &job.run;
        let file = self.cfg.workflow_file(run.kind);
        let op = Op::Dispatch { file };

        // A run already started for this dispatch_run_id (an earlier try went through).
        if let Some(found) = self.find_run(file, run).await? {
            tracing::info!(run = %run.id, github_run = found.id, "already dispatched; not dispatching again");
            return Ok(found.receipt());
        }

        let mut inputs = self.inputs(&job);
        let undeclared = self.undeclared_of(file);
        inputs.retain(|k, _| !undeclared.contains(k));
        // When the workflow does not take our run id, its run is found by time: from now on.
        let requested_at = Utc::now();
        let mut legacy = !undeclared.is_empty();
        let url = self.client.url(
            &self.repo_segments(&["actions", "workflows", file, "dispatches"]),
            &[],
        )?;
        let max = self.client.retry().max_attempts.max(1);
        let mut with_details = !self.no_run_details.load(Ordering::Relaxed);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut body = serde_json::json!({ "ref": self.cfg.git_ref, "inputs": inputs });
            if with_details {
                body["return_run_details"] = serde_json::Value::Bool(true);
            }
            match self
                .client
                .attempt(&op.what(), Method::POST, &url, Some(&body))
                .await
            {
                Attempt::Answer(reply) if reply.status.is_success() => {
                    if !with_details {
                        self.no_run_details.store(true, Ordering::Relaxed);
                    }
                    tracing::info!(run = %run.id, workflow = file, status = reply.status.as_u16(), "workflow dispatched");
                    if reply.status.as_u16() == 200
                        && let Ok(d) = serde_json::from_slice::<DispatchDetails>(&reply.body)
                    {
                        if legacy {
                            self.claim(d.workflow_run_id);
                        }
                        return Ok(DispatchReceipt {
                            external_id: Some(d.workflow_run_id.to_string()),
                            external_url: d.html_url,
                        });
                    }
                    return self
                        .receipt_by_discovery(file, run, legacy.then_some(requested_at))
                        .await;
                }
                // A workflow installed from the original does not declare our own inputs, and
                // GitHub refuses undeclared inputs: send the dispatch without them (nothing was
                // dispatched, so this is no repeat) and find the run by time.
                Attempt::Answer(reply)
                    if reply.status.as_u16() == 422
                        && let Some(names) = unexpected_inputs(&reply.message())
                        && names.iter().all(|n| {
                            OWN_INPUTS.contains(&n.as_str()) && inputs.contains_key(n)
                        }) =>
                {
                    self.note_undeclared(file, &names);
                    inputs.retain(|k, _| !names.contains(k));
                    legacy = true;
                    attempt -= 1;
                }
                // Older GitHub Enterprise Server rejects `return_run_details`: try without it
                // (nothing was dispatched, so this is no repeat).
                Attempt::Answer(reply)
                    if with_details && matches!(reply.status.as_u16(), 400 | 422) =>
                {
                    tracing::info!(status = reply.status.as_u16(), message = %reply.message(), "dispatch rejected with return_run_details; retrying without it");
                    with_details = false;
                    attempt -= 1;
                }
                Attempt::Answer(reply) => return Err(self.error_for(op, &reply)),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry {
                    wait,
                    error,
                    maybe_applied,
                } => {
                    if attempt >= max {
                        if maybe_applied
                            && let Ok(Some(found)) = self
                                .discover(file, run, legacy.then_some(requested_at))
                                .await
                        {
                            return Ok(found.receipt());
                        }
                        return Err(after_attempts(error, attempt));
                    }
                    let wait = wait.unwrap_or_else(|| self.client.retry().backoff(attempt));
                    tracing::warn!(run = %run.id, attempt, wait_ms = wait.as_millis() as u64, error = %error, "dispatch failed; retrying");
                    tokio::time::sleep(wait).await;
                    // The failed request may still have started the workflow: look before repeating.
                    if maybe_applied
                        && let Some(found) = self
                            .discover(file, run, legacy.then_some(requested_at))
                            .await?
                    {
                        tracing::info!(run = %run.id, github_run = found.id, "the failed dispatch had gone through; not dispatching again");
                        return Ok(found.receipt());
                    }
                }
            }
        }
    }

    async fn cancel(&self, run: &Run) -> Result<bool> {
        let Some(found) = self.github_run_id(run).await? else {
            tracing::warn!(run = %run.id, "no GitHub run found to cancel");
            return Ok(false);
        };
        let op = Op::Cancel { id: found.id };
        let id = found.id.to_string();
        let url = self.client.url(
            &self.repo_segments(&["actions", "runs", &id, "cancel"]),
            &[],
        )?;
        let reply = self
            .client
            .call(&op.what(), Method::POST, &url, None)
            .await?;
        match reply.status.as_u16() {
            s if (200..300).contains(&s) => Ok(true),
            // The run has already finished (or is finishing).
            409 => Ok(false),
            _ => Err(self.error_for(op, &reply)),
        }
    }

    async fn status(&self, run: &Run) -> Result<Option<RemoteRunStatus>> {
        let Some(found) = self.github_run_id(run).await? else {
            return Ok(None);
        };
        if found.status.is_some() {
            return Ok(remote_status(
                found.status.as_deref(),
                found.conclusion.as_deref(),
            ));
        }
        let op = Op::Status { id: found.id };
        let id = found.id.to_string();
        let url = self
            .client
            .url(&self.repo_segments(&["actions", "runs", &id]), &[])?;
        let reply = self
            .client
            .call(&op.what(), Method::GET, &url, None)
            .await?;
        if !reply.status.is_success() {
            return Err(self.error_for(op, &reply));
        }
        let wr: WorkflowRun = serde_json::from_slice(&reply.body).map_err(|e| {
            Error::upstream(
                SERVICE,
                502,
                format!("{} returned a body that is not a workflow run", op.what()),
            )
            .with_source(e)
        })?;
        Ok(remote_status(
            wr.status.as_deref(),
            wr.conclusion.as_deref(),
        ))
    }
}
