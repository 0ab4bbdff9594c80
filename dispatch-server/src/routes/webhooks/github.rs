//! `POST /api/github/webhook`: pull requests and deploys (spec §4.3, §6.1–6.3).
//!
//! `GITHUB_WEBHOOK_SECRET` must be set (else 503). `X-Hub-Signature-256` is `sha256=` + hex
//! HMAC-SHA256 of the raw body. `X-GitHub-Delivery` is de-duplicated, so a redelivery answers
//! `{"message": "Duplicate delivery", "duplicate": true}` and changes nothing.
//!
//! - `ping` → pong.
//! - `pull_request` opened/reopened/edited: the engine matches the PR ([`Dispatch::match_pr`]:
//!   issues of this workspace named in the title, body or head branch — `DISPATCH-42`,
//!   `fix/dispatch-42-…` — with confidence 1.0; else, for a PR not linked yet, open issues with
//!   similar words, confirmed by the LLM when `ANTHROPIC_API_KEY` is set) and links them
//!   (`dispatch_issue_pr` with `match_confidence`, history `pr_linked`; an edit re-matches and
//!   refreshes the title, keeping statuses); on opened/reopened linked issues in Backlog,
//!   Investigating, Needs Review or In Progress move to In Review and get an activity with the
//!   PR link. Closed without merge: the PR's existing links become `closed`. Closed and merged
//!   (into any base): matched the same way, the links become `merged` and each matched issue
//!   (each linked one, for a PR linked before that names none) gets a fix attempt (the verification starts at merge, or at the next deploy with
//!   `VERIFY_WAIT_FOR_DEPLOY`).
//!   A **release** (base `GITHUB_REF`, head `GITHUB_RELEASE_HEAD_BRANCH`, default `staging`):
//!   the issues named in the title, body or commits of the payload, and — with an LLM — the open
//!   In Review / In Progress issues the model says the release includes (confidence ≥ 85), get
//!   the PR linked and a fix attempt (history actor "GitHub Webhook (Release)"); nothing closes
//!   on merge ([`Dispatch::merge_release_pr`]).
//!
//! [`Dispatch::merge_release_pr`]: dispatch_core::Dispatch::merge_release_pr
//! [`Dispatch::match_pr`]: dispatch_core::Dispatch::match_pr
//!
//! A delivery whose effect fails (an error answer) is forgotten again, so GitHub's redelivery
//! acts; only a delivery that succeeded (or is still being handled) counts as a duplicate.
//! - `workflow_run` completed with success, whose workflow name contains `deploy` or
//!   `production` and whose head branch is `GITHUB_REF` (default `main`) or `master`: a deploy
//!   signal, which starts monitoring of fixes awaiting deploy.
//! - anything else: 200 "Event ignored".

use super::{
    RawBody, delivery_id, duplicate_delivery, first_delivery, hmac_matches, settle_delivery,
};
use crate::error::{ApiError, ApiResult};
use crate::extract::parse_json;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use dispatch_core::engine::{ColumnRef, PrLinkReport, PrMatch, PullRequestInfo};
use dispatch_core::issue::{Actor, names};
use dispatch_core::pr::PrStatus;
use dispatch_core::run::{ActivityType, NewActivity};
use dispatch_core::verify::MergedPr;
use dispatch_core::{Error, ErrorKind, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};

const ACTOR: &str = "GitHub Webhook";
const RELEASE_ACTOR: &str = "GitHub Webhook (Release)";

/// Columns from which an opened PR moves its issues to In Review.
const BEFORE_REVIEW: [&str; 4] = [
    names::BACKLOG,
    names::INVESTIGATING,
    names::NEEDS_REVIEW,
    names::IN_PROGRESS,
];

pub async fn health() -> Json<Value> {
    Json(json!({
        "status": "ok",
        "events": ["ping", "pull_request", "workflow_run"],
    }))
}

#[derive(Debug, Deserialize)]
struct Ping {
    #[serde(default)]
    zen: Option<String>,
    #[serde(default)]
    hook_id: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct PullRequestEvent {
    action: String,
    pull_request: PullRequest,
    /// Not in GitHub's `pull_request` payload; read when a relay adds the PR's commits.
    #[serde(default)]
    commits: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct PullRequest {
    number: i64,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
    #[serde(default)]
    merged: Option<bool>,
    #[serde(default)]
    merged_at: Option<Timestamp>,
    #[serde(default)]
    merge_commit_sha: Option<String>,
    #[serde(default)]
    head: Option<Branch>,
    #[serde(default)]
    base: Option<Branch>,
    #[serde(default)]
    user: Option<User>,
    /// A count in GitHub's payload; a list of commits when a relay adds them.
    #[serde(default)]
    commits: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct User {
    #[serde(default)]
    login: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Branch {
    #[serde(rename = "ref", default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WorkflowRunEvent {
    action: String,
    workflow_run: WorkflowRun,
}

#[derive(Debug, Deserialize)]
struct WorkflowRun {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    head_branch: Option<String>,
    #[serde(default)]
    head_sha: Option<String>,
    #[serde(default)]
    conclusion: Option<String>,
    #[serde(default)]
    updated_at: Option<Timestamp>,
}

pub async fn receive(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let Some(secret) = &s.config.github_webhook_secret else {
        return Err(Error::unavailable(
            "GitHub webhook disabled: set GITHUB_WEBHOOK_SECRET to the webhook's secret",
        )
        .into());
    };
    let signature = super::header(&headers, "x-hub-signature-256")
        .and_then(|v| v.trim().strip_prefix("sha256="))
        .unwrap_or("");
    if signature.is_empty() || !hmac_matches(secret.expose().as_bytes(), &[&body], signature) {
        return Err(ApiError::unauthorized("invalid X-Hub-Signature-256"));
    }
    let Some(event) = super::header(&headers, "x-github-event").map(str::trim) else {
        return Err(ApiError::bad_request(
            "X-GitHub-Event",
            "the X-GitHub-Event header is required",
        ));
    };
    let delivery = delivery_id(&headers, "x-github-delivery");
    match event {
        "ping" => {
            let p: Ping = parse_json(&body)?;
            Ok(Json(json!({
                "success": true,
                "message": "Pong! Webhook configured successfully",
                "zen": p.zen,
                "hookId": p.hook_id,
            }))
            .into_response())
        }
        "pull_request" => {
            let e: PullRequestEvent = parse_json(&body)?;
            if !first_delivery(&s, "github", delivery).await? {
                return Ok(duplicate_delivery("github", delivery));
            }
            let r = pull_request(&s, e).await;
            let failed = r.as_ref().err().map(|e| e.status);
            settle_delivery(&s, "github", delivery, failed).await;
            r
        }
        "workflow_run" => {
            let e: WorkflowRunEvent = parse_json(&body)?;
            if !first_delivery(&s, "github", delivery).await? {
                return Ok(duplicate_delivery("github", delivery));
            }
            let r = workflow_run(&s, e).await;
            let failed = r.as_ref().err().map(|e| e.status);
            settle_delivery(&s, "github", delivery, failed).await;
            r
        }
        other => Ok(Json(json!({
            "success": true,
            "message": "Event ignored",
            "event": other,
        }))
        .into_response()),
    }
}

fn links_json(reports: &[PrLinkReport]) -> Vec<Value> {
    reports
        .iter()
        .map(|r| {
            json!({
                "issueId": r.issue_id,
                "identifier": r.identifier,
                "prLinkId": r.link.id,
                "prStatus": r.link.status,
                "created": r.created,
            })
        })
        .collect()
}

fn matches_json(matches: &[PrMatch]) -> Vec<Value> {
    matches
        .iter()
        .map(|m| {
            json!({
                "issueId": m.issue_id,
                "identifier": m.identifier,
                "confidence": m.confidence,
                "method": m.method,
            })
        })
        .collect()
}

async fn pull_request(s: &AppState, e: PullRequestEvent) -> ApiResult<Response> {
    let pr = e.pull_request;
    let actor = Actor::webhook(ACTOR);
    let head = pr.head.and_then(|b| b.name);
    let base = pr.base.and_then(|b| b.name);
    let author = pr.user.and_then(|u| u.login);
    let info = PullRequestInfo {
        number: pr.number,
        title: pr.title.clone(),
        body: pr.body.clone(),
        url: pr.html_url.clone(),
        head_branch: head.clone(),
        base_branch: base.clone(),
        author: author.clone(),
        merged_at: None,
    };
    match e.action.as_str() {
        "closed" if pr.merged == Some(true) => {
            let merged = MergedPr {
                number: pr.number,
                url: pr.html_url,
                title: pr.title,
                body: pr.body,
                head_branch: head,
                base_branch: base,
                merged_at: pr.merged_at.unwrap_or_else(|| s.dispatch.clock().now()),
                merge_sha: pr.merge_commit_sha,
            };
            let release = s
                .dispatch
                .is_release_pr(merged.base_branch.as_deref(), merged.head_branch.as_deref());
            let report = if release {
                let commits = commit_messages(e.commits.as_ref())
                    .into_iter()
                    .chain(commit_messages(pr.commits.as_ref()))
                    .collect::<Vec<_>>();
                s.dispatch
                    .merge_release_pr(&merged, &commits, author, &Actor::webhook(RELEASE_ACTOR))
                    .await?
            } else {
                s.dispatch.merge_pr(&merged, author, &actor).await?
            };
            let attempts: Vec<Value> = report
                .fix_attempts
                .iter()
                .map(|r| {
                    json!({
                        "issueId": r.issue_id,
                        "identifier": r.identifier,
                        "fixAttemptId": r.attempt.id,
                        "status": r.attempt.status,
                        "created": r.created,
                    })
                })
                .collect();
            Ok(Json(json!({
                "success": true,
                "message": "Processed",
                "action": "merged",
                "release": release,
                "prNumber": merged.number,
                "matches": matches_json(&report.matches),
                "fixAttempts": attempts,
                "links": links_json(&report.links),
            }))
            .into_response())
        }
        "closed" => {
            // Only links that exist change; a closed PR links nothing new.
            let links = s
                .dispatch
                .sync_pr_links(&info, Some(PrStatus::Closed), &[], &actor)
                .await?;
            Ok(Json(json!({
                "success": true,
                "message": "Pull request closed without merge",
                "prNumber": pr.number,
                "links": links_json(&links),
            }))
            .into_response())
        }
        action @ ("opened" | "reopened" | "edited") => {
            // Opened/reopened: the PR is open. Edited: matched again (a newly named issue is
            // linked), titles refresh, statuses stay.
            let status = (action != "edited").then_some(PrStatus::Open);
            let (matches, links) = s.dispatch.link_pr(&info, status, &actor).await?;
            let move_to_review = action != "edited";
            let columns = if move_to_review && !links.is_empty() {
                s.dispatch.columns().await?
            } else {
                Vec::new()
            };
            let mut moved = Vec::new();
            for l in links.iter().filter(|_| move_to_review) {
                let issue = match s.dispatch.get_issue(l.issue_id).await {
                    Ok(i) => i,
                    Err(err) if err.kind == ErrorKind::NotFound => continue,
                    Err(err) => return Err(err.into()),
                };
                let mut a = NewActivity::new(
                    ActivityType::Observation,
                    format!(
                        "Pull request #{} {action}: {}",
                        pr.number,
                        pr.title.as_deref().unwrap_or("")
                    ),
                );
                a.metadata = json!({
                    "pr_number": pr.number,
                    "pr_url": pr.html_url,
                    "head": head,
                    "base": base,
                    "match_confidence": l.link.match_confidence,
                });
                if let Err(err) = s.dispatch.record_activity(issue.id, a).await {
                    tracing::warn!(issue = %issue.identifier, error = %err, "cannot record the PR activity");
                }
                let in_column = columns.iter().find(|c| c.id == issue.column_id);
                if !in_column.is_some_and(|c| BEFORE_REVIEW.iter().any(|n| c.is_named(n))) {
                    continue;
                }
                match s
                    .dispatch
                    .move_issue(issue.id, ColumnRef::Name(names::IN_REVIEW.into()), &actor)
                    .await
                {
                    Ok(_) => moved.push(issue.identifier.clone()),
                    // A workspace without an In Review column, or a concurrent change: the PR
                    // is still matched; the webhook must not fail for it.
                    Err(err) => {
                        tracing::warn!(issue = %issue.identifier, error = %err, "cannot move the issue to In Review")
                    }
                }
            }
            let matched: Vec<&str> = links.iter().map(|l| l.identifier.as_str()).collect();
            Ok(Json(json!({
                "success": true,
                "message": "Processed",
                "action": action,
                "prNumber": pr.number,
                "matched": matched,
                "matches": matches_json(&matches),
                "movedToReview": moved,
                "links": links_json(&links),
            }))
            .into_response())
        }
        other => Ok(Json(json!({
            "success": true,
            "message": "Action ignored",
            "action": other,
        }))
        .into_response()),
    }
}

/// Commit messages of a `commits` list in the payload (strings, `{message}` or
/// `{commit: {message}}` objects); anything else (GitHub's count) is none.
fn commit_messages(v: Option<&Value>) -> Vec<String> {
    let Some(Value::Array(list)) = v else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|c| match c {
            Value::String(m) => Some(m.clone()),
            Value::Object(_) => c
                .get("message")
                .or_else(|| c.get("commit").and_then(|x| x.get("message")))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        })
        .take(250)
        .collect()
}

/// Whether a completed workflow run is a successful production deploy.
fn is_production_deploy(run: &WorkflowRun, action: &str, branch: &str) -> bool {
    let name = run.name.as_deref().unwrap_or("").to_lowercase();
    let head = run.head_branch.as_deref().unwrap_or("");
    action == "completed"
        && run.conclusion.as_deref() == Some("success")
        && (name.contains("deploy") || name.contains("production"))
        && (head == branch || head == "master")
}

async fn workflow_run(s: &AppState, e: WorkflowRunEvent) -> ApiResult<Response> {
    let run = e.workflow_run;
    if !is_production_deploy(&run, &e.action, &s.dispatch.config().release.deploy_branch) {
        return Ok(Json(json!({
            "success": true,
            "message": "Workflow run ignored: not a successful production deploy",
            "workflow": run.name,
            "headBranch": run.head_branch,
        }))
        .into_response());
    }
    let at = run.updated_at.unwrap_or_else(|| s.dispatch.clock().now());
    let started = s
        .dispatch
        .deploy_signal(run.head_sha.as_deref(), at)
        .await?;
    tracing::info!(
        sha = run.head_sha.as_deref().unwrap_or(""),
        monitoring = started,
        "production deploy"
    );
    Ok(Json(json!({
        "success": true,
        "message": "Deployment recorded",
        "deployedSha": run.head_sha,
        "deployedAt": at,
        "monitoringStarted": started,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, branch: &str, conclusion: &str) -> WorkflowRun {
        WorkflowRun {
            name: Some(name.into()),
            head_branch: Some(branch.into()),
            head_sha: Some("abc".into()),
            conclusion: Some(conclusion.into()),
            updated_at: None,
        }
    }

    #[test]
    fn production_deploys() {
        assert!(is_production_deploy(
            &run("Deploy", "main", "success"),
            "completed",
            "main"
        ));
        assert!(is_production_deploy(
            &run("CI / Production release", "master", "success"),
            "completed",
            "main"
        ));
        assert!(is_production_deploy(
            &run("deploy-prod", "release", "success"),
            "completed",
            "release"
        ));
        assert!(!is_production_deploy(
            &run("Deploy", "main", "failure"),
            "completed",
            "main"
        ));
        assert!(!is_production_deploy(
            &run("Deploy", "main", "success"),
            "requested",
            "main"
        ));
        assert!(!is_production_deploy(
            &run("Tests", "main", "success"),
            "completed",
            "main"
        ));
        assert!(!is_production_deploy(
            &run("Deploy", "feature/x", "success"),
            "completed",
            "main"
        ));
        assert!(!is_production_deploy(
            &run("Deploy", "staging", "success"),
            "completed",
            "main"
        ));
    }
}
