//! [`LocalConfig`] from environment variables, the agent command template, and executable lookup.

use dispatch_core::run::WorkflowKind;
use dispatch_core::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The agent command when `DISPATCH_AGENT_COMMAND` is unset: Claude Code in print mode with
/// stream-json output and the per-run budget. `--permission-mode acceptEdits` lets it write files
/// inside its worktree (its reports and `.scratch/run-result.json`); without a permission flag
/// `claude -p` refuses every write. Shell commands stay refused unless the operator's template
/// allows them (e.g. `--allowedTools Bash,Edit,Write`).
pub const DEFAULT_AGENT_COMMAND: &str = "claude -p {prompt} --output-format stream-json --verbose --max-budget-usd {max_budget_usd} --permission-mode acceptEdits";

/// Placeholders a command template may use. Each expands inside a single argument; the text is
/// never seen by a shell.
pub const PLACEHOLDERS: &[&str] = &[
    "prompt",
    "prompt_file",
    "max_budget_usd",
    "model",
    "run_id",
    "issue_id",
    "issue_identifier",
    "workdir",
    "branch",
    "workflow_type",
];

/// The wall-clock limit of each kind in the original workflows (spec §7.1).
pub fn default_timeout(kind: WorkflowKind) -> Duration {
    let minutes = match kind {
        WorkflowKind::ErrorFix => 30,
        WorkflowKind::PrdInvestigate => 30,
        WorkflowKind::PrdImplement => 60,
        WorkflowKind::Qa => 30,
        WorkflowKind::DeepResearch => 30,
        WorkflowKind::AutoTriage => 20,
    };
    Duration::from_secs(minutes * 60)
}

/// How the local runner runs agents. Built from the environment with [`LocalConfig::from_lookup`];
/// the fields after `model` are tuning knobs with sensible defaults (tests shorten them).
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// `DISPATCH_AGENT_COMMAND`, split into words.
    pub agent_command: CommandTemplate,
    /// `DISPATCH_LOCAL_REPO`: the checkout agents work on (default: the working directory).
    pub repo: PathBuf,
    /// `DISPATCH_WORKTREE_DIR`: where run worktrees go (default `<temp>/dispatch-worktrees`).
    pub worktree_dir: PathBuf,
    /// `DISPATCH_LOCAL_BASE_REF`: what a run's branch starts from (default `HEAD`).
    pub base_ref: Option<String>,
    /// `DISPATCH_AGENT_TIMEOUT_MINUTES`: one limit for every kind instead of [`default_timeout`].
    pub timeout: Option<Duration>,
    /// `MAX_AGENT_COST_PER_RUN` (default 25), the `{max_budget_usd}` placeholder.
    pub max_cost_usd: f64,
    /// `DISPATCH_AGENT_MODEL`, the `{model}` placeholder (the default command adds `--model`).
    pub model: Option<String>,
    /// Between SIGTERM and SIGKILL to the agent's process group.
    pub kill_grace: Duration,
    /// Output lines arriving within this window are posted as one terminal chunk.
    pub batch_window: Duration,
    /// Lines kept for the failure summary.
    pub tail_lines: usize,
    /// After the agent exits, how long its output pipes may stay open (held by a leftover
    /// background process) before the rest of its process group is killed.
    pub drain_grace: Duration,
    /// Extra environment for the agent (after the inherited one and the `DISPATCH_*` variables).
    pub env: Vec<(String, String)>,
}

impl LocalConfig {
    /// A config for `repo` with every default.
    pub fn new(repo: impl Into<PathBuf>) -> Self {
        LocalConfig {
            agent_command: CommandTemplate::default_command(None),
            repo: repo.into(),
            worktree_dir: std::env::temp_dir().join("dispatch-worktrees"),
            base_ref: None,
            timeout: None,
            max_cost_usd: 25.0,
            model: None,
            kill_grace: Duration::from_secs(5),
            batch_window: Duration::from_millis(200),
            tail_lines: 40,
            drain_grace: Duration::from_secs(2),
            env: Vec::new(),
        }
    }

    /// Reads `DISPATCH_AGENT_COMMAND`, `DISPATCH_LOCAL_REPO`, `DISPATCH_WORKTREE_DIR`,
    /// `DISPATCH_LOCAL_BASE_REF`, `DISPATCH_AGENT_TIMEOUT_MINUTES`, `MAX_AGENT_COST_PER_RUN` and
    /// `DISPATCH_AGENT_MODEL` through `lookup` (blank counts as unset). Errors name the variable.
    /// Whether the repository and the agent exist is checked by [`super::LocalRunner::preflight`].
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let cwd = std::env::current_dir().map_err(|e| {
            Error::invalid(
                "DISPATCH_LOCAL_REPO",
                format!("not set, and the working directory cannot be read: {e}"),
            )
        });
        let absolute = |var: &str, p: String| -> Result<PathBuf> {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                Ok(p)
            } else {
                Ok(std::env::current_dir()
                    .map_err(|e| {
                        Error::invalid(var, format!("{} is relative and {e}", p.display()))
                    })?
                    .join(p))
            }
        };
        let repo = match get("DISPATCH_LOCAL_REPO") {
            Some(p) => absolute("DISPATCH_LOCAL_REPO", p)?,
            None => cwd?,
        };
        let mut c = LocalConfig::new(repo);
        if let Some(p) = get("DISPATCH_WORKTREE_DIR") {
            c.worktree_dir = absolute("DISPATCH_WORKTREE_DIR", p)?;
        }
        c.base_ref = get("DISPATCH_LOCAL_BASE_REF");
        if let Some(r) = &c.base_ref
            && (r.starts_with('-') || r.chars().any(char::is_whitespace))
        {
            return Err(Error::invalid(
                "DISPATCH_LOCAL_BASE_REF",
                format!("{r:?} is not a git ref"),
            ));
        }
        if let Some(t) = get("DISPATCH_AGENT_TIMEOUT_MINUTES") {
            let m: f64 = t
                .parse()
                .ok()
                .filter(|m: &f64| m.is_finite() && *m > 0.0 && *m <= 7.0 * 24.0 * 60.0)
                .ok_or_else(|| {
                    Error::invalid(
                        "DISPATCH_AGENT_TIMEOUT_MINUTES",
                        format!("{t:?} is not a positive number of minutes (at most a week)"),
                    )
                })?;
            c.timeout = Some(Duration::from_secs_f64(m * 60.0));
        }
        if let Some(v) = get("MAX_AGENT_COST_PER_RUN") {
            c.max_cost_usd = v
                .parse()
                .ok()
                .filter(|m: &f64| m.is_finite() && *m > 0.0)
                .ok_or_else(|| {
                    Error::invalid(
                        "MAX_AGENT_COST_PER_RUN",
                        format!("{v:?} is not a positive amount of US dollars"),
                    )
                })?;
        }
        c.model = get("DISPATCH_AGENT_MODEL");
        c.agent_command = match get("DISPATCH_AGENT_COMMAND") {
            Some(t) => CommandTemplate::parse(&t)
                .map_err(|m| Error::invalid("DISPATCH_AGENT_COMMAND", m))?,
            None => CommandTemplate::default_command(c.model.as_deref()),
        };
        Ok(c)
    }

    /// [`LocalConfig::from_lookup`] over the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }

    /// The wall-clock limit for a run of `kind`.
    pub fn timeout_for(&self, kind: WorkflowKind) -> Duration {
        self.timeout.unwrap_or_else(|| default_timeout(kind))
    }

    /// `PATH` as the agent will see it (an override in [`LocalConfig::env`] wins).
    pub(crate) fn search_path(&self) -> Option<String> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var("PATH").ok())
    }
}

/// An agent command line split shell-words style (whitespace separates words; single quotes,
/// double quotes and backslashes work as in a POSIX shell; nothing else of a shell does: no
/// variables, globs, pipes or redirections). Placeholders `{name}` are substituted inside each
/// word after splitting, so an expanded value is always exactly one argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTemplate {
    words: Vec<String>,
}

impl CommandTemplate {
    /// [`DEFAULT_AGENT_COMMAND`], with `--model {model}` when a model is configured.
    pub fn default_command(model: Option<&str>) -> Self {
        let mut words = split_words(DEFAULT_AGENT_COMMAND).unwrap_or_default();
        if model.is_some() {
            words.push("--model".into());
            words.push("{model}".into());
        }
        CommandTemplate { words }
    }

    /// Splits a template; the error says what is wrong (unterminated quote, empty, placeholder
    /// in the program name, unknown placeholder).
    pub fn parse(template: &str) -> std::result::Result<Self, String> {
        let words = split_words(template)?;
        let Some(program) = words.first() else {
            return Err("the agent command is empty".into());
        };
        if program.contains('{') {
            return Err(format!(
                "the program name {program:?} must be a plain command, not a placeholder"
            ));
        }
        for w in &words {
            for name in placeholders_in(w) {
                if !PLACEHOLDERS.contains(&name) {
                    return Err(format!(
                        "unknown placeholder {{{name}}}; known: {}",
                        PLACEHOLDERS
                            .iter()
                            .map(|p| format!("{{{p}}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
        Ok(CommandTemplate { words })
    }

    /// The program (first word).
    pub fn program(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// Whether any word uses `{name}`.
    pub fn uses(&self, name: &str) -> bool {
        self.words
            .iter()
            .any(|w| placeholders_in(w).any(|p| p == name))
    }

    /// The argument vector after the program, placeholders replaced by `value(name)` (a name it
    /// does not know is left as written).
    pub fn expand_args(&self, value: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
        self.words
            .iter()
            .skip(1)
            .map(|w| expand_word(w, value))
            .collect()
    }
}

/// `{name}` occurrences (name = lower-case letters and `_`) in a word.
fn placeholders_in(word: &str) -> impl Iterator<Item = &str> {
    word.match_indices('{').filter_map(move |(i, _)| {
        let rest = &word[i + 1..];
        let end = rest.find('}')?;
        let name = &rest[..end];
        (!name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .then_some(name)
    })
}

fn expand_word(word: &str, value: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let name_end = after.find('}');
        let replaced = name_end.and_then(|e| {
            let name = &after[..e];
            let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            if ok {
                value(name).map(|v| (v, e))
            } else {
                None
            }
        });
        match replaced {
            Some((v, e)) => {
                out.push_str(&v);
                rest = &after[e + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// POSIX-shell-like word splitting without expansions.
fn split_words(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => cur.push(c),
                    None => return Err("the command ends with a lone backslash".into()),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Finds `program` the way `execvp` would: a name with a `/` is a path (relative to the server's
/// working directory), anything else is searched in `path`. Returns an absolute path to an
/// executable file.
pub fn find_executable(program: &str, path: Option<&str>) -> Option<PathBuf> {
    if program.is_empty() {
        return None;
    }
    if program.contains('/') {
        let p = Path::new(program);
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().ok()?.join(p)
        };
        return is_executable(&p).then_some(p);
    }
    std::env::split_paths(path?)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                std::env::current_dir().map(|c| c.join(&p)).unwrap_or(p)
            }
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn splits_like_a_shell_without_expanding_anything() {
        assert_eq!(
            split_words(r#"a 'b c' "d \"e\" $HOME" f\ g  {prompt}"#),
            Ok(vec![
                "a".to_string(),
                "b c".into(),
                "d \"e\" $HOME".into(),
                "f g".into(),
                "{prompt}".into()
            ])
        );
        assert_eq!(split_words("''"), Ok(vec![String::new()]));
        assert!(split_words("a 'b").is_err());
        assert!(split_words("a \"b").is_err());
        assert!(split_words("a \\").is_err());
    }

    #[test]
    fn placeholders_expand_inside_one_argument() {
        let t = CommandTemplate::parse("agent --msg={prompt} {prompt_file} '{x y}' {json:1}")
            .unwrap_or_else(|e| panic!("{e}"));
        let args = t.expand_args(&|name| match name {
            "prompt" => Some("$(rm -rf /); `id` 'q' \"d\"\nline2".into()),
            "prompt_file" => Some("/tmp/p.md".into()),
            _ => None,
        });
        assert_eq!(
            args,
            vec![
                "--msg=$(rm -rf /); `id` 'q' \"d\"\nline2".to_string(),
                "/tmp/p.md".into(),
                "{x y}".into(),
                "{json:1}".into()
            ]
        );
        assert!(t.uses("prompt_file"));
        assert!(!t.uses("model"));
    }

    #[test]
    fn templates_are_checked() {
        assert!(CommandTemplate::parse("").is_err());
        assert!(CommandTemplate::parse("{prompt} x").is_err());
        let e = CommandTemplate::parse("claude -p {promt}")
            .err()
            .unwrap_or_default();
        assert!(e.contains("unknown placeholder {promt}"), "{e}");
    }

    #[test]
    fn defaults() {
        let c = LocalConfig::from_lookup(&lookup(&[("DISPATCH_LOCAL_REPO", "/srv/app")]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.repo, PathBuf::from("/srv/app"));
        assert_eq!(c.agent_command.program(), "claude");
        assert_eq!(
            c.agent_command.words()[1..],
            [
                "-p",
                "{prompt}",
                "--output-format",
                "stream-json",
                "--verbose",
                "--max-budget-usd",
                "{max_budget_usd}",
                "--permission-mode",
                "acceptEdits"
            ]
        );
        assert_eq!(c.max_cost_usd, 25.0);
        assert_eq!(
            c.timeout_for(WorkflowKind::PrdImplement),
            Duration::from_secs(3600)
        );
        assert_eq!(
            c.timeout_for(WorkflowKind::AutoTriage),
            Duration::from_secs(1200)
        );
        assert_eq!(
            c.timeout_for(WorkflowKind::ErrorFix),
            Duration::from_secs(1800)
        );
        assert!(c.worktree_dir.starts_with(std::env::temp_dir()));
        assert_eq!(c.base_ref, None);
        assert_eq!(c.model, None);
    }

    #[test]
    fn variables_override_defaults() {
        let c = LocalConfig::from_lookup(&lookup(&[
            ("DISPATCH_LOCAL_REPO", "/srv/app"),
            ("DISPATCH_WORKTREE_DIR", "/var/wt"),
            ("DISPATCH_LOCAL_BASE_REF", "origin/main"),
            ("DISPATCH_AGENT_TIMEOUT_MINUTES", "0.5"),
            ("MAX_AGENT_COST_PER_RUN", "3.5"),
            ("DISPATCH_AGENT_MODEL", "claude-opus-4-6"),
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.worktree_dir, PathBuf::from("/var/wt"));
        assert_eq!(c.base_ref.as_deref(), Some("origin/main"));
        assert_eq!(
            c.timeout_for(WorkflowKind::PrdImplement),
            Duration::from_secs(30)
        );
        assert_eq!(c.max_cost_usd, 3.5);
        assert_eq!(
            c.agent_command.words().last().map(String::as_str),
            Some("{model}")
        );
        let c = LocalConfig::from_lookup(&lookup(&[
            ("DISPATCH_LOCAL_REPO", "/srv/app"),
            (
                "DISPATCH_AGENT_COMMAND",
                "my-agent --prompt-file {prompt_file}",
            ),
            ("DISPATCH_AGENT_MODEL", "m"),
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.agent_command.words(),
            ["my-agent", "--prompt-file", "{prompt_file}"]
        );
    }

    #[test]
    fn errors_name_the_variable() {
        for (var, value) in [
            ("DISPATCH_AGENT_TIMEOUT_MINUTES", "soon"),
            ("DISPATCH_AGENT_TIMEOUT_MINUTES", "-5"),
            ("MAX_AGENT_COST_PER_RUN", "0"),
            ("MAX_AGENT_COST_PER_RUN", "lots"),
            ("DISPATCH_AGENT_COMMAND", "claude 'unterminated"),
            ("DISPATCH_LOCAL_BASE_REF", "--upload-pack=x"),
        ] {
            let e =
                LocalConfig::from_lookup(&lookup(&[("DISPATCH_LOCAL_REPO", "/r"), (var, value)]))
                    .err()
                    .unwrap_or_else(|| panic!("{var}={value} accepted"));
            assert_eq!(e.field(), Some(var), "{e}");
        }
    }

    #[test]
    fn finds_executables_on_the_path() {
        assert!(find_executable("sh", Some("/usr/bin:/bin")).is_some());
        assert!(find_executable("surely-not-a-command-xyz", Some("/usr/bin:/bin")).is_none());
        assert!(find_executable("/bin/sh", None).is_some());
        assert!(find_executable("sh", None).is_none());
    }
}
