//! Suspect commits of a new Sentry issue (spec §4.2): the commits of the deploy branch in the
//! 48 h before the first event (at most 20 inspected, through
//! `GET /repos/{owner}/{repo}/commits?sha=&since=&until=` and `GET …/commits/{sha}` for their
//! files), at most 5 suspects whose changed files match files of the stack trace, and the
//! deployments created in that window (`GET …/deployments`). Rendered as the "Suspected Cause"
//! section of the issue description; any failure leaves the section out and never fails the
//! webhook.

use super::client::{Attempt, GithubClient, GithubReply, SERVICE};
use super::config::GithubConfig;
use crate::sentry::SuspectFinder;
use async_trait::async_trait;
use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use dispatch_core::{Error, Result, Timestamp};
use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;
use std::fmt::Write as _;
use std::time::Duration;

/// How the correlation searches.
#[derive(Debug, Clone)]
pub struct SuspectPolicy {
    /// How far before the first event commits and deployments are looked at (48 h).
    pub window: ChronoDuration,
    /// Commits inspected at most (20).
    pub max_commits: usize,
    /// Suspects listed at most (5).
    pub max_suspects: usize,
    /// Deployments listed at most.
    pub max_deployments: usize,
    /// The whole correlation must finish within this (`GITHUB_CORRELATION_TIMEOUT_MS`, 4 s).
    pub budget: Duration,
}

impl Default for SuspectPolicy {
    fn default() -> Self {
        SuspectPolicy {
            window: ChronoDuration::hours(48),
            max_commits: 20,
            max_suspects: 5,
            max_deployments: 10,
            budget: Duration::from_secs(4),
        }
    }
}

/// A commit whose changes touch files of the stack trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuspectCommit {
    pub sha: String,
    /// First line of the message.
    pub message: String,
    pub author: Option<String>,
    pub date: Option<String>,
    pub url: Option<String>,
    /// The changed files that match the stack trace.
    pub files: Vec<String>,
}

/// A deployment created in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentInfo {
    pub environment: Option<String>,
    pub git_ref: Option<String>,
    pub sha: Option<String>,
    pub created_at: Timestamp,
    pub creator: Option<String>,
}

/// What the correlation found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Correlation {
    /// Commits in the window (as listed, at most the policy's maximum).
    pub commits_inspected: usize,
    pub suspects: Vec<SuspectCommit>,
    pub deployments: Vec<DeploymentInfo>,
}

impl Correlation {
    /// The section's markdown, or `None` when there is nothing to say.
    pub fn markdown(&self, window_hours: i64) -> Option<String> {
        if self.suspects.is_empty() && self.deployments.is_empty() {
            return None;
        }
        let mut d = String::new();
        if !self.suspects.is_empty() {
            let _ = writeln!(
                d,
                "Commits in the {window_hours} h before the first event that changed files of the stack trace ({} of {} inspected):",
                self.suspects.len(),
                self.commits_inspected
            );
            for c in &self.suspects {
                let short: String = c.sha.chars().take(7).collect();
                let sha = match &c.url {
                    Some(u) => format!("[`{short}`]({u})"),
                    None => format!("`{short}`"),
                };
                let by = c
                    .author
                    .as_deref()
                    .map(|a| format!(" by {a}"))
                    .unwrap_or_default();
                let at = c
                    .date
                    .as_deref()
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default();
                let files = c
                    .files
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let _ = writeln!(d, "- {sha} {}{by}{at}: {files}", c.message);
            }
        } else {
            let _ = writeln!(
                d,
                "No commit of the {window_hours} h before the first event changed a file of the stack trace ({} inspected).",
                self.commits_inspected
            );
        }
        if !self.deployments.is_empty() {
            let _ = writeln!(d, "\nDeployments in that window:");
            for dep in &self.deployments {
                let env = dep.environment.as_deref().unwrap_or("unknown environment");
                let what = match (&dep.git_ref, &dep.sha) {
                    (Some(r), Some(s)) => {
                        format!("`{r}` @ `{}`", s.chars().take(7).collect::<String>())
                    }
                    (Some(r), None) => format!("`{r}`"),
                    (None, Some(s)) => format!("`{}`", s.chars().take(7).collect::<String>()),
                    (None, None) => "?".into(),
                };
                let by = dep
                    .creator
                    .as_deref()
                    .map(|a| format!(" by {a}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    d,
                    "- {env}: {what} at {}{by}",
                    dep.created_at.format("%Y-%m-%d %H:%M UTC")
                );
            }
        }
        Some(d.trim_end().to_string())
    }
}

/// Strips what error trackers put before a source path (`webpack:///`, `app:///`, a scheme and
/// host, `./`, `~/`, leading slashes) and lower-cases nothing: paths are case-sensitive.
fn normalize(path: &str) -> String {
    let mut p = path.trim();
    if let Some(i) = p.find("://") {
        p = &p[i + 3..];
        // `https://host/path`: drop the host; `webpack:///./src`: nothing to drop.
        if !p.starts_with('/')
            && let Some(j) = p.find('/')
        {
            p = &p[j..];
        }
    }
    let p = p.split(['?', '#']).next().unwrap_or("");
    let mut p = p.trim_start_matches('/');
    while let Some(rest) = p.strip_prefix("./").or_else(|| p.strip_prefix("~/")) {
        p = rest.trim_start_matches('/');
    }
    p.to_string()
}

/// File names too common to match on their own.
const GENERIC_NAMES: &[&str] = &[
    "index.js",
    "index.ts",
    "index.tsx",
    "index.jsx",
    "index.mjs",
    "mod.rs",
    "lib.rs",
    "main.rs",
    "main.py",
    "__init__.py",
    "main.go",
    "app.js",
    "app.ts",
    "utils.ts",
    "utils.js",
    "route.ts",
    "page.tsx",
];

/// Whether a changed file (a repository path) is a file of the stack trace: the same path, one
/// a suffix of the other at a `/` (the trace holds `/app/src/x.ts` for `src/x.ts`, or a bundle
/// path), or the same file name when that name is specific (not `index.ts`, `mod.rs`, …).
pub fn paths_match(stack_file: &str, changed_file: &str) -> bool {
    let a = normalize(stack_file);
    let b = normalize(changed_file);
    if a.is_empty() || b.is_empty() {
        return false;
    }
    if a == b {
        return true;
    }
    let (long, short) = if a.len() >= b.len() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    if short.contains('/') && long.ends_with(&format!("/{short}")) {
        return true;
    }
    let name = |p: &str| p.rsplit('/').next().unwrap_or("").to_string();
    let (na, nb) = (name(&a), name(&b));
    na == nb && na.contains('.') && !GENERIC_NAMES.contains(&na.as_str())
}

/// Commits of the deploy branch before a Sentry issue's first event, through the GitHub API.
#[derive(Debug)]
pub struct GithubSuspectFinder {
    client: GithubClient,
    owner: String,
    repo: String,
    branch: String,
    policy: SuspectPolicy,
}

impl GithubSuspectFinder {
    /// Uses the runner's configuration (`GITHUB_TOKEN`, `GITHUB_REPO`, `GITHUB_API_URL`,
    /// `GITHUB_REF` as the branch whose commits are looked at).
    pub fn new(cfg: &GithubConfig, policy: SuspectPolicy) -> Result<Self> {
        let mut c = cfg.clone();
        c.request_timeout = c.request_timeout.min(policy.budget);
        Ok(GithubSuspectFinder {
            client: GithubClient::new(&c)?,
            owner: cfg.owner.clone(),
            repo: cfg.repo.clone(),
            branch: cfg.git_ref.clone(),
            policy,
        })
    }

    /// [`SuspectPolicy::default`] with `GITHUB_CORRELATION_TIMEOUT_MS` read through `get`.
    pub fn policy_from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<SuspectPolicy> {
        let mut p = SuspectPolicy::default();
        if let Some(v) = get("GITHUB_CORRELATION_TIMEOUT_MS")
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
        {
            let ms = v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                Error::invalid(
                    "GITHUB_CORRELATION_TIMEOUT_MS",
                    "GITHUB_CORRELATION_TIMEOUT_MS must be a positive number of milliseconds",
                )
            })?;
            p.budget = Duration::from_millis(ms);
        }
        Ok(p)
    }

    /// One GET, once (no retries: the webhook is waiting), answered as JSON.
    async fn get_json(
        &self,
        what: &str,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Value> {
        let url = self.client.url(segments, query)?;
        match self.client.attempt(what, Method::GET, &url, None).await {
            Attempt::Answer(r) if r.status.is_success() => {
                serde_json::from_slice(&r.body).map_err(|e| {
                    Error::upstream(SERVICE, r.status.as_u16(), format!("{what}: not JSON: {e}"))
                })
            }
            Attempt::Answer(r) => Err(r.error(format!("{what} failed: {}", r.message()))),
            Attempt::Retry { error, .. } | Attempt::Fail(error) => Err(error),
        }
    }

    /// `GET …/commits/{sha}`, or `None` (logged) when it cannot be read.
    async fn commit_details(&self, sha: String) -> Option<Value> {
        let path = [
            "repos",
            self.owner.as_str(),
            self.repo.as_str(),
            "commits",
            sha.as_str(),
        ];
        match self.get_json("reading a commit", &path, &[]).await {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::debug!(sha = %sha, error = %e, "commit skipped");
                None
            }
        }
    }

    /// The correlation itself (errors of the commit list fail it; a commit whose details cannot
    /// be read is skipped; failing deployments are left out).
    pub async fn correlate(
        &self,
        first_seen: Timestamp,
        stack_files: &[String],
    ) -> Result<Correlation> {
        let since = first_seen - self.policy.window;
        let iso = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        let repo = ["repos", self.owner.as_str(), self.repo.as_str()];
        let mut commits_path = repo.to_vec();
        commits_path.push("commits");
        let list = self
            .get_json(
                "listing commits",
                &commits_path,
                &[
                    ("sha", self.branch.clone()),
                    ("since", iso(since)),
                    ("until", iso(first_seen)),
                    (
                        "per_page",
                        self.policy.max_commits.clamp(1, 100).to_string(),
                    ),
                ],
            )
            .await?;
        let shas: Vec<String> = list
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.get("sha").and_then(Value::as_str))
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric()))
                    .take(self.policy.max_commits)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut out = Correlation {
            commits_inspected: shas.len(),
            ..Correlation::default()
        };
        if !stack_files.is_empty() {
            let details: Vec<Option<Value>> = futures::stream::iter(shas.clone())
                .map(|sha| self.commit_details(sha))
                .buffered(5)
                .collect()
                .await;
            for c in details.into_iter().flatten() {
                if out.suspects.len() >= self.policy.max_suspects {
                    break;
                }
                if let Some(s) = suspect(&c, stack_files) {
                    out.suspects.push(s);
                }
            }
        }
        let mut dep_path = repo.to_vec();
        dep_path.push("deployments");
        match self
            .get_json(
                "listing deployments",
                &dep_path,
                &[("per_page", "50".into())],
            )
            .await
        {
            Ok(v) => {
                out.deployments = v
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(deployment)
                            .filter(|d| d.created_at >= since && d.created_at <= first_seen)
                            .take(self.policy.max_deployments)
                            .collect()
                    })
                    .unwrap_or_default();
            }
            Err(e) => tracing::debug!(error = %e, "deployments left out of the suspected cause"),
        }
        Ok(out)
    }
}

fn text(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn one_line(s: &str, max: usize) -> String {
    let first = s.lines().next().unwrap_or("").trim();
    let flat: String = first
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// A commit (`GET …/commits/{sha}`) as a suspect when one of its files matches the trace.
fn suspect(c: &Value, stack_files: &[String]) -> Option<SuspectCommit> {
    let sha = text(c, "/sha")?;
    let files: Vec<String> = c
        .get("files")?
        .as_array()?
        .iter()
        .filter_map(|f| f.get("filename").and_then(Value::as_str))
        .filter(|f| stack_files.iter().any(|s| paths_match(s, f)))
        .take(10)
        .map(|f| one_line(f, 300))
        .collect();
    if files.is_empty() {
        return None;
    }
    Some(SuspectCommit {
        sha,
        message: one_line(&text(c, "/commit/message").unwrap_or_default(), 120),
        author: text(c, "/author/login")
            .or_else(|| text(c, "/commit/author/name"))
            .map(|a| one_line(&a, 100)),
        date: text(c, "/commit/author/date").map(|d| one_line(&d, 40)),
        url: text(c, "/html_url").filter(|u| u.starts_with("https://") || u.starts_with("http://")),
        files,
    })
}

fn deployment(d: &Value) -> Option<DeploymentInfo> {
    let created_at = DateTime::parse_from_rfc3339(&text(d, "/created_at")?)
        .ok()?
        .with_timezone(&Utc);
    Some(DeploymentInfo {
        environment: text(d, "/environment").map(|s| one_line(&s, 100)),
        git_ref: text(d, "/ref").map(|s| one_line(&s, 100)),
        sha: text(d, "/sha").map(|s| one_line(&s, 64)),
        created_at,
        creator: text(d, "/creator/login").map(|s| one_line(&s, 100)),
    })
}

#[async_trait]
impl SuspectFinder for GithubSuspectFinder {
    async fn suspected_cause(
        &self,
        first_seen: Timestamp,
        stack_files: &[String],
    ) -> Option<String> {
        match tokio::time::timeout(self.policy.budget, self.correlate(first_seen, stack_files))
            .await
        {
            Ok(Ok(c)) => c.markdown(self.policy.window.num_hours()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "suspect-commit correlation skipped");
                None
            }
            Err(_) => {
                tracing::warn!(
                    budget_ms = self.policy.budget.as_millis() as u64,
                    "suspect-commit correlation timed out; skipped"
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_paths_match_repository_paths() {
        assert!(paths_match("/app/src/lib/billing.ts", "src/lib/billing.ts"));
        assert!(paths_match(
            "webpack:///./src/lib/billing.ts",
            "src/lib/billing.ts"
        ));
        assert!(paths_match(
            "app:///src/lib/billing.ts",
            "src/lib/billing.ts"
        ));
        assert!(paths_match(
            "https://cdn.example.com/static/js/src/lib/billing.ts?v=2",
            "src/lib/billing.ts"
        ));
        assert!(paths_match("src/lib/billing.ts", "src/lib/billing.ts"));
        // The same specific file name elsewhere (bundlers move directories).
        assert!(paths_match("/var/task/billing.ts", "src/lib/billing.ts"));
        // Generic names need more of the path.
        assert!(!paths_match("/app/src/routes/index.ts", "src/lib/index.ts"));
        assert!(paths_match("/app/src/lib/index.ts", "src/lib/index.ts"));
        assert!(!paths_match(
            "/app/src/lib/billing.ts",
            "src/lib/invoice.ts"
        ));
        assert!(!paths_match("", "src/lib/billing.ts"));
        assert!(!paths_match("/runner", "runner.ts"));
    }

    #[test]
    fn nothing_found_is_no_section() {
        assert_eq!(Correlation::default().markdown(48), None);
    }
}
