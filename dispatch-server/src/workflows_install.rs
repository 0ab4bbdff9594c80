//! `dispatch workflows install`: copies the agent workflow templates (embedded in the binary) into
//! a repository's `.github/workflows/`, and their helper scripts into `.github/dispatch/`.
//!
//! Nothing is overwritten unless asked: a file that exists with other content is a conflict, and
//! with conflicts nothing at all is written. Files that already match are reported as unchanged,
//! so running the installer again is harmless.

use dispatch_core::run::WorkflowKind;
use std::fmt;
use std::path::{Path, PathBuf};

/// The workflow file of each kind (`WorkflowKind::workflow_file` names it).
fn template(kind: WorkflowKind) -> &'static str {
    match kind {
        WorkflowKind::ErrorFix => include_str!("../../workflows/auto-investigate.yml"),
        WorkflowKind::PrdInvestigate => include_str!("../../workflows/prd-investigate.yml"),
        WorkflowKind::PrdImplement => include_str!("../../workflows/prd-implement.yml"),
        WorkflowKind::Qa => include_str!("../../workflows/qa-test.yml"),
        WorkflowKind::DeepResearch => include_str!("../../workflows/deep-research.yml"),
        WorkflowKind::AutoTriage => include_str!("../../workflows/auto-triage.yml"),
    }
}

/// Where the workflows find their helpers.
const TOOLS_DIR: &str = ".github/dispatch";

/// The helpers every workflow uses: (file name, content, executable).
const TOOLS: [(&str, &str, bool); 4] = [
    (
        "agent-filter.py",
        include_str!("../../workflows/scripts/agent-filter.py"),
        true,
    ),
    (
        "dispatch-agent.py",
        include_str!("../../workflows/scripts/dispatch-agent.py"),
        true,
    ),
    (
        "dispatch-callback.sh",
        include_str!("../../workflows/scripts/dispatch-callback.sh"),
        true,
    ),
    (
        "README.md",
        include_str!("../../workflows/README.md"),
        false,
    ),
];

/// What the installer did with one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    Created,
    /// It existed with other content and `force` replaced it.
    Replaced,
    /// It already had this content.
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledFile {
    /// Relative to the repository.
    pub path: PathBuf,
    pub state: FileState,
}

#[derive(Debug, Clone)]
pub struct InstallReport {
    pub files: Vec<InstalledFile>,
    /// The secrets and variables to set, and what else to do (printed by the CLI).
    pub next_steps: String,
}

impl fmt::Display for InstallReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            let what = match file.state {
                FileState::Created => "created  ",
                FileState::Replaced => "replaced ",
                FileState::Unchanged => "unchanged",
            };
            writeln!(f, "{what} {}", file.path.display())?;
        }
        writeln!(f)?;
        f.write_str(&self.next_steps)
    }
}

/// Spawn types (and workflow types) → kinds, in the canonical order, without repeats. Entries may
/// also be comma-separated lists; nothing (or `all`) means every kind.
fn parse_kinds(kinds: &[String]) -> Result<Vec<WorkflowKind>, String> {
    let names: Vec<&str> = kinds
        .iter()
        .flat_map(|k| k.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|k| !k.is_empty())
        .collect();
    if names.is_empty() || names.iter().any(|n| n.eq_ignore_ascii_case("all")) {
        return Ok(WorkflowKind::ALL.to_vec());
    }
    let mut wanted = Vec::new();
    for n in names {
        let kind = WorkflowKind::from_spawn_type(n)
            .map_err(|_| format!("unknown kind {n:?}: use error_fix, investigate, implement, qa, research, triage or all"))?;
        wanted.push(kind);
    }
    Ok(WorkflowKind::ALL
        .iter()
        .copied()
        .filter(|k| wanted.contains(k))
        .collect())
}

fn next_steps(kinds: &[WorkflowKind]) -> String {
    let files: Vec<&str> = kinds.iter().map(|k| k.workflow_file()).collect();
    let mut s = String::new();
    s.push_str(&format!(
        "Next steps\n\
         \n\
         1. Commit and push these files to the default branch and to the branch Dispatch starts the\n   \
            workflows on (the server's GITHUB_REF, default main). Installed: {}.\n\
         \n\
         2. Set the repository secrets (Settings > Secrets and variables > Actions, or `gh secret set`):\n\
         \n   \
            gh secret set ANTHROPIC_API_KEY   # the agent's Anthropic API key\n   \
            gh secret set DISPATCH_API_URL    # the Dispatch server's base URL, e.g. https://dispatch.example.com\n   \
            gh secret set DISPATCH_API_KEY    # a Dispatch API key, for the agent's callbacks\n\
         \n   \
            Optional: DISPATCH_GH_TOKEN, a token with contents and pull-requests write access that pushes\n   \
            the agent's branches and opens its pull requests (those of the default GITHUB_TOKEN start no\n   \
            other workflows, so CI would not run on them).\n\
         \n\
         3. Optional repository variables (`gh variable set NAME --body VALUE`):\n\
         \n   \
            MAX_AGENT_COST_PER_RUN   budget of one agent session in USD (default 25)\n   \
            DISPATCH_MODEL           Claude model (default claude-opus-4-6; QA and research: claude-sonnet-4-5-20250929)\n   \
            DISPATCH_BASE_BRANCH     base branch of the agent's pull requests (default: the repository's default branch)\n   \
            DISPATCH_APP_URL         the Dispatch web UI, for links in pull requests\n   \
            DISPATCH_RUNS_ON         runner label (default ubuntu-latest)\n   \
            DISPATCH_NODE_VERSION, DISPATCH_CLAUDE_CODE_VERSION, DISPATCH_ALLOW_CALLBACK_URL: see {TOOLS_DIR}/README.md\n\
         \n\
         4. Optional hooks in the repository: .dispatch/setup.sh installs the project's toolchain before the\n   \
            agent starts; .dispatch/check.sh runs its checks (implement runs it after the agent and lets a\n   \
            second session fix failures; QA runs it before testing).\n\
         \n\
         5. On the Dispatch server: GITHUB_TOKEN (classic: repo and workflow scopes; fine-grained: Actions\n   \
            read and write), GITHUB_REPO=owner/name and GITHUB_REF (the branch the workflows run on).\n",
        files.join(", ")
    ));
    s
}

/// Installs the workflows of `kinds` (spawn types, `all`, or none for all) and the helper scripts
/// into the git repository at `repo`. With `force`, files that differ are replaced; without it,
/// any difference is an error and nothing is written.
pub fn install(repo: &Path, kinds: &[String], force: bool) -> Result<InstallReport, String> {
    if !repo.is_dir() {
        return Err(format!("{} is not a directory", repo.display()));
    }
    if !repo.join(".git").exists() {
        return Err(format!(
            "{} is not a git repository (no .git); pass the repository's top directory",
            repo.display()
        ));
    }
    let kinds = parse_kinds(kinds)?;
    let mut plan: Vec<(PathBuf, &'static str, bool)> = kinds
        .iter()
        .map(|k| {
            (
                Path::new(".github/workflows").join(k.workflow_file()),
                template(*k),
                false,
            )
        })
        .collect();
    plan.extend(
        TOOLS
            .iter()
            .map(|(name, text, exec)| (Path::new(TOOLS_DIR).join(name), *text, *exec)),
    );

    // Look first, write after: a conflict leaves the repository as it was.
    let mut states = Vec::with_capacity(plan.len());
    let mut conflicts = Vec::new();
    for (rel, text, _) in &plan {
        let path = repo.join(rel);
        let state = match std::fs::read(&path) {
            Ok(bytes) if bytes == text.as_bytes() => FileState::Unchanged,
            Ok(_) => {
                if !force {
                    conflicts.push(rel.display().to_string());
                }
                FileState::Replaced
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileState::Created,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        states.push(state);
    }
    if !conflicts.is_empty() {
        return Err(format!(
            "these files exist with other content (local changes, or another version of Dispatch): {}. \
             Nothing was written; run again with --force to replace them",
            conflicts.join(", ")
        ));
    }

    let mut files = Vec::with_capacity(plan.len());
    for ((rel, text, exec), state) in plan.into_iter().zip(states) {
        if state != FileState::Unchanged {
            let path = repo.join(&rel);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            std::fs::write(&path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        if exec {
            make_executable(&repo.join(&rel))?;
        }
        files.push(InstalledFile { path: rel, state });
    }
    Ok(InstallReport {
        files,
        next_steps: next_steps(&kinds),
    })
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut perms = meta.permissions();
    if perms.mode() & 0o111 != 0o111 {
        perms.set_mode(perms.mode() | 0o755);
        std::fs::set_permissions(path, perms)
            .map_err(|e| format!("cannot make {} executable: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory with an empty `.git`, removed when dropped.
    struct Repo(PathBuf);

    impl Repo {
        fn new() -> Repo {
            let dir = std::env::temp_dir().join(format!(
                "dispatch-install-{}",
                uuid::Uuid::now_v7().simple()
            ));
            std::fs::create_dir_all(dir.join(".git")).expect("temp repo");
            Repo(dir)
        }
    }

    impl Drop for Repo {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn paths(r: &InstallReport) -> Vec<String> {
        r.files
            .iter()
            .map(|f| f.path.display().to_string())
            .collect()
    }

    #[test]
    fn installs_every_kind_and_the_tools() {
        let repo = Repo::new();
        let r = install(&repo.0, &[], false).expect("install");
        assert_eq!(r.files.len(), 6 + TOOLS.len());
        assert!(r.files.iter().all(|f| f.state == FileState::Created));
        for k in WorkflowKind::ALL {
            let p = repo.0.join(".github/workflows").join(k.workflow_file());
            let text = std::fs::read_to_string(&p).expect("workflow written");
            assert!(text.contains("dispatch_run_id"), "{}", p.display());
        }
        for (name, text, _) in TOOLS {
            assert_eq!(
                std::fs::read_to_string(repo.0.join(TOOLS_DIR).join(name)).expect("tool"),
                text
            );
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(repo.0.join(".github/dispatch/dispatch-callback.sh"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o111, 0o111, "scripts are executable");
        }
        let shown = r.to_string();
        for secret in [
            "ANTHROPIC_API_KEY",
            "DISPATCH_API_URL",
            "DISPATCH_API_KEY",
            "MAX_AGENT_COST_PER_RUN",
            "DISPATCH_MODEL",
            "DISPATCH_BASE_BRANCH",
        ] {
            assert!(shown.contains(secret), "{secret} missing from:\n{shown}");
        }
        assert!(
            shown.contains("created   .github/workflows/auto-investigate.yml"),
            "{shown}"
        );
    }

    #[test]
    fn a_second_run_changes_nothing() {
        let repo = Repo::new();
        install(&repo.0, &strings(&["all"]), false).expect("first");
        let r = install(&repo.0, &strings(&["all"]), false).expect("second");
        assert!(
            r.files.iter().all(|f| f.state == FileState::Unchanged),
            "{r}"
        );
        assert!(
            r.to_string()
                .contains("unchanged .github/dispatch/agent-filter.py")
        );
    }

    #[test]
    fn a_different_file_is_a_conflict_unless_forced() {
        let repo = Repo::new();
        let wf = repo.0.join(".github/workflows");
        std::fs::create_dir_all(&wf).expect("dir");
        std::fs::write(wf.join("qa-test.yml"), "name: mine\n").expect("write");
        let err = install(&repo.0, &strings(&["qa", "research"]), false).expect_err("conflict");
        assert!(
            err.contains(".github/workflows/qa-test.yml") && err.contains("--force"),
            "{err}"
        );
        assert!(
            !wf.join("deep-research.yml").exists(),
            "nothing is written when a file conflicts"
        );
        assert!(!repo.0.join(TOOLS_DIR).exists());

        let r = install(&repo.0, &strings(&["qa", "research"]), true).expect("forced");
        let state = |name: &str| {
            r.files
                .iter()
                .find(|f| f.path.ends_with(name))
                .map(|f| f.state)
        };
        assert_eq!(state("qa-test.yml"), Some(FileState::Replaced));
        assert_eq!(state("deep-research.yml"), Some(FileState::Created));
        assert_eq!(
            std::fs::read_to_string(wf.join("qa-test.yml")).expect("read"),
            template(WorkflowKind::Qa)
        );
    }

    #[test]
    fn kinds_are_spawn_types_in_any_order_and_repeat() {
        let repo = Repo::new();
        let r = install(
            &repo.0,
            &strings(&["triage,error_fix", "triage", "prd_implement"]),
            false,
        )
        .expect("install");
        let workflows: Vec<String> = paths(&r)
            .into_iter()
            .filter(|p| p.starts_with(".github/workflows"))
            .collect();
        assert_eq!(
            workflows,
            [
                ".github/workflows/auto-investigate.yml",
                ".github/workflows/prd-implement.yml",
                ".github/workflows/auto-triage.yml"
            ]
        );
        assert!(r.next_steps.contains("auto-triage.yml"));
        assert!(!repo.0.join(".github/workflows/qa-test.yml").exists());

        let err = install(&repo.0, &strings(&["deploy"]), false).expect_err("unknown kind");
        assert!(
            err.contains("\"deploy\"") && err.contains("research"),
            "{err}"
        );
    }

    #[test]
    fn the_target_must_be_a_git_repository() {
        let repo = Repo::new();
        let plain = repo.0.join("plain");
        std::fs::create_dir_all(&plain).expect("dir");
        assert!(
            install(&plain, &[], false)
                .expect_err("no .git")
                .contains("not a git repository")
        );
        assert!(
            install(&repo.0.join("missing"), &[], false)
                .expect_err("missing")
                .contains("not a directory")
        );
        // A worktree or submodule has a `.git` file.
        std::fs::write(plain.join(".git"), "gitdir: ../.git/worktrees/plain\n").expect("write");
        install(&plain, &strings(&["qa"]), false).expect("a .git file counts");
    }

    #[test]
    fn every_kind_has_its_template() {
        for k in WorkflowKind::ALL {
            let t = template(*k);
            let stem = k.workflow_file().trim_end_matches(".yml");
            assert!(
                t.contains(&format!("group: {stem}-${{{{ inputs.issue_identifier }}}}")),
                "{k}"
            );
            assert!(t.contains(&format!("WORKFLOW_TYPE: {k}")), "{k}");
        }
    }
}
