//! `GithubConfig`: where the workflows live, the token, and how patient the runner is.
//!
//! Read from the original's environment variables (spec §7.2): `GITHUB_TOKEN`, `GITHUB_REPO`
//! (`owner/repo`) or `GITHUB_REPO_OWNER` + `GITHUB_REPO_NAME`, `GITHUB_REF` (default `main`),
//! `GITHUB_WORKFLOW_ID` (overrides the error-fix workflow file), `DISPATCH_CALLBACK_URL`, and
//! `GITHUB_API_URL` (GitHub Enterprise Server, or a local fake in tests).

use dispatch_core::run::WorkflowKind;
use dispatch_core::{Error, Result};
use reqwest::Url;
use secrecy::SecretString;
use std::collections::HashMap;
use std::time::Duration;

/// The public GitHub API.
pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// The branch whose workflow files run when `GITHUB_REF` is unset.
pub const DEFAULT_REF: &str = "main";

/// How the runner retries one GitHub call (5xx, timeouts, connection errors, short rate limits):
/// the shared HTTP retry settings. `max_retry_after` is the longest `retry-after` /
/// `x-ratelimit-reset` wait the runner sits out itself; a longer wait becomes a `RateLimited`
/// error, and the dispatcher's own backoff takes over.
pub type RetryPolicy = crate::http::RetryConfig;

/// How the runner finds the GitHub run it started: the workflow's `run-name` carries our
/// `dispatch_run_id`, so the run shows up in the workflow's run list under that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryPolicy {
    /// Looks at the run list after a dispatch that did not return the run id (GitHub creates
    /// the run a moment after accepting the dispatch).
    pub attempts: u32,
    /// Wait before each look.
    pub delay: Duration,
    /// Runs created up to this long before our run was created are still considered (clock skew).
    pub created_slack: Duration,
    /// Runs per page (GitHub's maximum is 100) and how many pages to read at most.
    pub per_page: u32,
    pub max_pages: u32,
}

impl Default for DiscoveryPolicy {
    fn default() -> Self {
        DiscoveryPolicy {
            attempts: 5,
            delay: Duration::from_secs(2),
            created_slack: Duration::from_secs(600),
            per_page: 100,
            max_pages: 3,
        }
    }
}

/// Configuration of [`super::GithubActionsRunner`].
///
/// `Debug` never shows the token (`SecretString` prints `[REDACTED]`).
#[derive(Debug, Clone)]
pub struct GithubConfig {
    /// API base URL without a trailing slash (`https://api.github.com`, or
    /// `https://ghe.example.com/api/v3` for GitHub Enterprise Server).
    pub api_url: String,
    /// Classic token with `repo` + `workflow` scopes, or a fine-grained token / App token with
    /// Actions: read and write on the repository.
    pub token: SecretString,
    pub owner: String,
    pub repo: String,
    /// The branch (or tag) whose workflow file runs: the body `ref` of a dispatch.
    pub git_ref: String,
    /// Workflow file (or numeric workflow id) per kind, replacing [`WorkflowKind::workflow_file`].
    pub workflow_overrides: HashMap<WorkflowKind, String>,
    /// Sent as the `callback_url` input when set (the original's dev-tunnel override of
    /// `DISPATCH_API_URL` inside the workflow).
    pub callback_url: Option<String>,
    pub user_agent: String,
    /// Limit of one HTTP request, connection included.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    pub discovery: DiscoveryPolicy,
}

impl GithubConfig {
    /// A configuration with the defaults (public GitHub, ref `main`, no overrides).
    pub fn new(
        token: impl Into<String>,
        owner: impl Into<String>,
        repo: impl Into<String>,
    ) -> Self {
        GithubConfig {
            api_url: DEFAULT_API_URL.to_string(),
            token: SecretString::from(token.into()),
            owner: owner.into(),
            repo: repo.into(),
            git_ref: DEFAULT_REF.to_string(),
            workflow_overrides: HashMap::new(),
            callback_url: None,
            user_agent: concat!("dispatch/", env!("CARGO_PKG_VERSION")).to_string(),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            discovery: DiscoveryPolicy::default(),
        }
    }

    /// Reads the environment through `get`. `Ok(None)` when `GITHUB_TOKEN` is unset or empty
    /// (the GitHub runner is not configured); an error naming the variable when a value is wrong.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let var = |k: &str| crate::http::settings::setting(get, k);
        let Some(token) = crate::http::settings::secret(get, "GITHUB_TOKEN")? else {
            return Ok(None);
        };

        let (repo_owner, repo_name) = match var("GITHUB_REPO") {
            Some(full) => {
                let (o, r) = split_repo(&full)?;
                (Some(o), Some(r))
            }
            None => (None, None),
        };
        let owner = match var("GITHUB_REPO_OWNER") {
            Some(o) => {
                check_name("GITHUB_REPO_OWNER", &o)?;
                o
            }
            None => repo_owner.ok_or_else(|| {
                Error::invalid(
                    "GITHUB_REPO",
                    "GITHUB_TOKEN is set but the repository is not: set GITHUB_REPO=owner/repo \
                     (or GITHUB_REPO_OWNER and GITHUB_REPO_NAME)",
                )
            })?,
        };
        let repo = match var("GITHUB_REPO_NAME") {
            Some(r) => {
                check_name("GITHUB_REPO_NAME", &r)?;
                r
            }
            None => repo_name.ok_or_else(|| {
                Error::invalid(
                    "GITHUB_REPO_NAME",
                    "GITHUB_REPO_OWNER is set but the repository name is not: set \
                     GITHUB_REPO_NAME (or GITHUB_REPO=owner/repo)",
                )
            })?,
        };

        let mut cfg = GithubConfig::new(token, owner, repo);
        if let Some(url) = var("GITHUB_API_URL") {
            cfg.api_url = check_url("GITHUB_API_URL", &url)?;
        }
        if let Some(r) = var("GITHUB_REF") {
            cfg.git_ref = r.strip_prefix("refs/heads/").unwrap_or(&r).to_string();
        }
        if let Some(w) = var("GITHUB_WORKFLOW_ID") {
            cfg.workflow_overrides.insert(WorkflowKind::ErrorFix, w);
        }
        if let Some(c) = var("DISPATCH_CALLBACK_URL") {
            check_url("DISPATCH_CALLBACK_URL", &c)?;
            cfg.callback_url = Some(c);
        }
        Ok(Some(cfg))
    }

    pub fn from_env() -> Result<Option<Self>> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }

    /// The workflow file (or id) that runs `kind`.
    pub fn workflow_file(&self, kind: WorkflowKind) -> &str {
        self.workflow_overrides
            .get(&kind)
            .map(String::as_str)
            .unwrap_or_else(|| kind.workflow_file())
    }

    /// `owner/repo`, for messages.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }
}

fn split_repo(full: &str) -> Result<(String, String)> {
    let bad = || {
        Error::invalid(
            "GITHUB_REPO",
            format!(
                "GITHUB_REPO must be \"owner/repo\" (for example octo-org/octo-repo), not {full:?}"
            ),
        )
    };
    let mut parts = full.split('/');
    let (Some(owner), Some(repo), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let repo = repo.strip_suffix(".git").unwrap_or(repo);
    if !valid_name(owner) || !valid_name(repo) {
        return Err(bad());
    }
    Ok((owner.to_string(), repo.to_string()))
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn check_name(var: &str, s: &str) -> Result<()> {
    if valid_name(s) {
        Ok(())
    } else {
        Err(Error::invalid(
            var,
            format!("{var} may hold only letters, digits, '-', '_' and '.', not {s:?}"),
        ))
    }
}

fn check_url(var: &str, s: &str) -> Result<String> {
    match Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Ok(s.trim_end_matches('/').to_string())
        }
        _ => Err(Error::invalid(
            var,
            format!("{var} must be an http(s) URL, not {s:?}"),
        )),
    }
}
