//! GitHub's webhook payloads as the server reads them (feature `github-webhook`): `ping`,
//! `pull_request` and `workflow_run` (only the fields Dispatch uses; everything else is
//! ignored), parsed with [`crate::json_body::parse`], and the pure decisions taken on them. The
//! handler (`POST /api/github/webhook` in the server) checks the signature
//! ([`crate::signature::github_valid`]) first; kept here, free of HTTP, so that `fuzz/` can feed
//! them any bytes.

use dispatch_core::Timestamp;
use serde::Deserialize;
use serde_json::Value;

/// `ping`: sent when the webhook is created.
#[derive(Debug, Deserialize)]
pub struct Ping {
    #[serde(default)]
    pub zen: Option<String>,
    #[serde(default)]
    pub hook_id: Option<i64>,
}

/// `pull_request`.
#[derive(Debug, Deserialize)]
pub struct PullRequestEvent {
    pub action: String,
    pub pull_request: PullRequest,
    /// Not in GitHub's `pull_request` payload; read when a relay adds the PR's commits.
    #[serde(default)]
    pub commits: Option<Value>,
}

/// The pull request of a `pull_request` event.
#[derive(Debug, Deserialize)]
pub struct PullRequest {
    pub number: i64,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub merged: Option<bool>,
    #[serde(default)]
    pub merged_at: Option<Timestamp>,
    #[serde(default)]
    pub merge_commit_sha: Option<String>,
    #[serde(default)]
    pub head: Option<Branch>,
    #[serde(default)]
    pub base: Option<Branch>,
    #[serde(default)]
    pub user: Option<User>,
    /// A count in GitHub's payload; a list of commits when a relay adds them.
    #[serde(default)]
    pub commits: Option<Value>,
}

/// A PR's author.
#[derive(Debug, Deserialize)]
pub struct User {
    #[serde(default)]
    pub login: Option<String>,
}

/// A PR's head or base.
#[derive(Debug, Deserialize)]
pub struct Branch {
    #[serde(rename = "ref", default)]
    pub name: Option<String>,
}

/// `workflow_run`.
#[derive(Debug, Deserialize)]
pub struct WorkflowRunEvent {
    pub action: String,
    pub workflow_run: WorkflowRun,
}

/// The run of a `workflow_run` event.
#[derive(Debug, Deserialize)]
pub struct WorkflowRun {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub head_branch: Option<String>,
    #[serde(default)]
    pub head_sha: Option<String>,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
}

/// Commit messages of a `commits` list in the payload (strings, `{message}` or
/// `{commit: {message}}` objects); anything else (GitHub's count) is none.
pub fn commit_messages(v: Option<&Value>) -> Vec<String> {
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
pub fn is_production_deploy(run: &WorkflowRun, action: &str, branch: &str) -> bool {
    let name = run.name.as_deref().unwrap_or("").to_lowercase();
    let head = run.head_branch.as_deref().unwrap_or("");
    action == "completed"
        && run.conclusion.as_deref() == Some("success")
        && (name.contains("deploy") || name.contains("production"))
        && (head == branch || head == "master")
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
