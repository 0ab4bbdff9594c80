//! The run's git worktree: created on a new branch before the agent starts; afterwards, left-over
//! changes are committed and the changed files listed. Every git call is argv-only (no shell).

use super::config::LocalConfig;
use super::prompts::{self, PROMPT_FILE, PromptContext, RESULT_FILE};
use dispatch_core::ports::RunJob;
use dispatch_core::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Everything the agent process needs about its worktree.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub workdir: PathBuf,
    pub branch: String,
    pub base_sha: String,
    pub prompt: String,
    pub prompt_file: PathBuf,
}

/// Runs `git -C dir args…`; stdout (trimmed) or a message with git's stderr.
pub(crate) async fn git(dir: &Path, args: &[&str]) -> std::result::Result<String, String> {
    let out = tokio::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .await
        .map_err(|e| format!("could not run git: {e}"))?;
    git_output(args, out)
}

/// [`git`] for synchronous callers (start-up checks).
pub(crate) fn git_sync(dir: &Path, args: &[&str]) -> std::result::Result<String, String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| format!("could not run git: {e}"))?;
    git_output(args, out)
}

fn git_output(args: &[&str], out: std::process::Output) -> std::result::Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim();
        Err(format!(
            "`git {}` failed: {}",
            args.first().copied().unwrap_or(""),
            if err.is_empty() {
                "no error output"
            } else {
                err
            }
        ))
    }
}

/// The repository is a git work tree and the base ref names a commit; returns the base sha.
pub(crate) fn check_repo_sync(config: &LocalConfig) -> Result<String> {
    check_repo_result(
        config,
        git_sync(&config.repo, &["rev-parse", "--is-inside-work-tree"]),
        || {
            git_sync(
                &config.repo,
                &["rev-parse", "--verify", "--quiet", &base_spec(config)],
            )
        },
    )
}

async fn check_repo(config: &LocalConfig) -> Result<String> {
    let inside = git(&config.repo, &["rev-parse", "--is-inside-work-tree"]).await;
    let base = git(
        &config.repo,
        &["rev-parse", "--verify", "--quiet", &base_spec(config)],
    )
    .await;
    check_repo_result(config, inside, || base)
}

fn base_spec(config: &LocalConfig) -> String {
    format!(
        "{}^{{commit}}",
        config.base_ref.as_deref().unwrap_or("HEAD")
    )
}

fn check_repo_result(
    config: &LocalConfig,
    inside: std::result::Result<String, String>,
    base: impl FnOnce() -> std::result::Result<String, String>,
) -> Result<String> {
    if !config.repo.is_dir() {
        return Err(Error::invalid(
            "DISPATCH_LOCAL_REPO",
            format!("{} is not a directory", config.repo.display()),
        ));
    }
    match inside {
        Ok(s) if s == "true" => {}
        Ok(_) | Err(_) => {
            return Err(Error::invalid(
                "DISPATCH_LOCAL_REPO",
                format!(
                    "{} is not a git repository (set DISPATCH_LOCAL_REPO to a checkout of the project agents should work on)",
                    config.repo.display()
                ),
            ));
        }
    }
    match (base(), &config.base_ref) {
        (Ok(sha), _) if !sha.is_empty() => Ok(sha),
        (_, Some(r)) => Err(Error::invalid(
            "DISPATCH_LOCAL_BASE_REF",
            format!("{r:?} is not a commit in {}", config.repo.display()),
        )),
        (_, None) => Err(Error::invalid(
            "DISPATCH_LOCAL_REPO",
            format!("{} has no commits yet", config.repo.display()),
        )),
    }
}

/// `DISPATCH-42` → `dispatch-42`; anything but ASCII letters and digits becomes `-`.
pub(crate) fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out: String = out.trim_matches('-').chars().take(40).collect();
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() { "issue".into() } else { out }
}

/// The last 8 hex digits of the run id (the random part of a UUID v7; the first ones are time).
pub(crate) fn short_id(job: &RunJob) -> String {
    let hex: String = job
        .run
        .id
        .to_string()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect();
    hex[hex.len().saturating_sub(8)..].to_string()
}

/// Where the run's worktree is (whether or not it exists yet): one per run, named after the
/// issue and the run's id, under `DISPATCH_WORKTREE_DIR/<repository>/`.
pub(crate) fn workdir_path(config: &LocalConfig, job: &RunJob) -> std::path::PathBuf {
    let name = format!("{}-{}", slug(&job.issue.identifier), short_id(job));
    let repo_name = config
        .repo
        .file_name()
        .map(|n| slug(&n.to_string_lossy()))
        .unwrap_or_else(|| "repo".into());
    config.worktree_dir.join(repo_name).join(name)
}

/// Where the runner notes, in the worktree, the agent it started (its receipt's external id,
/// which names the process group and the server process): a dispatch of the same run by
/// another server process finds it there.
pub(crate) const AGENT_MARKER: &str = ".scratch/agent";

/// Creates (or, for a retried dispatch, reuses) the run's worktree on `dispatch/<ident>-<short id>`
/// and writes `.scratch/` (ignored by git through its own `.gitignore`) and the prompt file.
pub(crate) async fn prepare(config: &LocalConfig, job: &RunJob) -> Result<Prepared> {
    let base_sha = check_repo(config).await?;
    let name = format!("{}-{}", slug(&job.issue.identifier), short_id(job));
    let branch = format!("dispatch/{name}");
    let workdir = workdir_path(config, job);
    let parent = workdir
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| config.worktree_dir.clone());
    tokio::fs::create_dir_all(&parent).await.map_err(|e| {
        Error::invalid(
            "DISPATCH_WORKTREE_DIR",
            format!("cannot create {}: {e}", parent.display()),
        )
    })?;
    let path = workdir.to_string_lossy().to_string();
    if !workdir.join(".git").exists() {
        if workdir.exists() {
            // Our own leftover (the name carries this run's id) from an attempt that died early.
            let _ = tokio::fs::remove_dir_all(&workdir).await;
            let _ = git(&config.repo, &["worktree", "prune"]).await;
        }
        let added = git(
            &config.repo,
            &["worktree", "add", "-b", &branch, &path, &base_sha],
        )
        .await;
        if let Err(first) = added {
            let branch_ref = format!("refs/heads/{branch}");
            let exists = git(
                &config.repo,
                &["rev-parse", "--verify", "--quiet", &branch_ref],
            )
            .await
            .is_ok();
            if !exists {
                return Err(Error::unavailable(format!(
                    "could not create the worktree {path}: {first}"
                )));
            }
            git(&config.repo, &["worktree", "add", &path, &branch])
                .await
                .map_err(|e| {
                    Error::unavailable(format!("could not create the worktree {path}: {e}"))
                })?;
        }
    }
    let scratch = workdir.join(".scratch");
    let io =
        |e: std::io::Error| Error::unavailable(format!("cannot write {}: {e}", scratch.display()));
    tokio::fs::create_dir_all(&scratch).await.map_err(io)?;
    tokio::fs::write(scratch.join(".gitignore"), "*\n")
        .await
        .map_err(io)?;
    match tokio::fs::remove_file(workdir.join(RESULT_FILE)).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let timeout_minutes = config.timeout_for(job.run.kind).as_secs().div_ceil(60);
    let prompt = prompts::build_prompt(
        job,
        &PromptContext {
            branch: &branch,
            max_budget_usd: config.max_cost_usd,
            timeout_minutes,
        },
    )
    .replace('\0', "");
    let prompt = cap_prompt(prompt);
    let prompt_file = workdir.join(PROMPT_FILE);
    tokio::fs::write(&prompt_file, &prompt).await.map_err(io)?;
    Ok(Prepared {
        workdir,
        branch,
        base_sha,
        prompt,
        prompt_file,
    })
}

/// Linux limits one argument or environment string to 128 KiB; the inputs are capped far below
/// that by the engine, this only guards the limit.
const MAX_PROMPT: usize = 100 * 1024;

fn cap_prompt(mut prompt: String) -> String {
    if prompt.len() > MAX_PROMPT {
        let mut end = MAX_PROMPT;
        while !prompt.is_char_boundary(end) {
            end -= 1;
        }
        prompt.truncate(end);
        prompt.push_str("\n\n[prompt cut to fit the command line]\n");
    }
    prompt
}

/// Removes a worktree whose agent never started (best effort).
pub(crate) async fn discard(config: &LocalConfig, prep: &Prepared) {
    let path = prep.workdir.to_string_lossy().to_string();
    let _ = git(&config.repo, &["worktree", "remove", "--force", &path]).await;
    let _ = git(&config.repo, &["branch", "-D", &prep.branch]).await;
}

/// Commits whatever the agent left uncommitted (`.scratch/` is ignored). `Ok(true)` when a commit
/// was made. The commit is authored by "Dispatch Agent".
pub(crate) async fn commit_leftovers(
    workdir: &Path,
    message: &str,
) -> std::result::Result<bool, String> {
    let status = git(workdir, &["status", "--porcelain"]).await?;
    if status.is_empty() {
        return Ok(false);
    }
    git(workdir, &["add", "-A"]).await?;
    git(
        workdir,
        &[
            "-c",
            "user.name=Dispatch Agent",
            "-c",
            "user.email=dispatch-agent@localhost",
            "-c",
            "commit.gpgsign=false",
            "commit",
            "--no-verify",
            "-q",
            "-m",
            message,
        ],
    )
    .await?;
    Ok(true)
}

/// Files changed on the branch since `base`, and how many commits it has on top of it.
pub(crate) async fn branch_changes(workdir: &Path, base: &str) -> (Vec<String>, usize) {
    let range = format!("{base}..HEAD");
    let files = git(workdir, &["diff", "--name-only", &range])
        .await
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default();
    let commits = git(workdir, &["rev-list", "--count", &range])
        .await
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (files, commits)
}

#[cfg(test)]
mod tests {
    use super::slug;

    #[test]
    fn slugs_are_branch_safe() {
        assert_eq!(slug("DISPATCH-42"), "dispatch-42");
        assert_eq!(slug("ÅÄ weird / ..name.."), "weird-name");
        assert_eq!(slug("///"), "issue");
        assert_eq!(slug(&"a-".repeat(50)).len(), 39);
    }
}
