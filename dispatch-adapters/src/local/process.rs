//! Starting the agent process and watching it: live output, timeout, cancel, and the result.

use super::config::LocalConfig;
use super::prompts::{self, BLOCKER_FILE, RESULT_FILE};
use super::worktree::{self, Prepared};
use dispatch_core::agent_output::StreamFilter;
use dispatch_core::ports::{DispatchReceipt, RunJob, RunReporter, RunResult};
use dispatch_core::run::{ActivityType, NewActivity, Outcome, RunStatus, WorkflowKind};
use dispatch_core::{Error, Result};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

/// A raw output line longer than this is cut (the rest of the line is read and dropped).
const MAX_RAW_LINE: usize = 8 * 1024 * 1024;
/// A display line longer than this is cut before it goes to the terminal.
const MAX_DISPLAY_LINE: usize = 16 * 1024;
/// Pending output is posted at once when it grows past this (well below the 1 MiB chunk limit).
const MAX_CHUNK: usize = 256 * 1024;
/// Reports and summaries are cut to what the callbacks accept.
const MAX_REPORT: usize = 500 * 1024;
const MAX_SUMMARY: usize = 8 * 1024;
/// Tail lines in a failure activity's metadata (spec §7.3 step 11).
const ERROR_TAIL_LINES: usize = 20;

/// Why the runner stopped an agent itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Cancelled,
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    TimedOut,
    Cancelled,
    Shutdown,
}

/// Sends `sig` to the whole process group `pgid` (the agent and everything it started that did
/// not leave the group). Refuses ids ≤ 1: `kill(-1, …)` would signal every process we may signal.
pub(crate) fn signal_group(pgid: i32, sig: libc::c_int) {
    if pgid > 1 {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours; a negative pid
        // addresses a process group. The worst outcome is an error code (ESRCH), ignored here.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

/// Whether any process of group `pgid` still runs (ids ≤ 1 never count).
pub(crate) fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks that the group exists and may be signalled.
    pgid > 1 && unsafe { libc::kill(-pgid, 0) } == 0
}

/// A server process: host name, pid and its start time in clock ticks since boot (so that a
/// reused pid is not taken for the old process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub host: String,
    pub pid: u32,
    pub start: u64,
}

impl Owner {
    pub fn current() -> Self {
        let pid = std::process::id();
        Owner {
            host: host_name(),
            pid,
            start: process_start(pid).unwrap_or(0),
        }
    }

    /// Whether this process still runs (same pid, same start time).
    pub fn is_alive(&self) -> bool {
        process_start(self.pid).is_some_and(|s| s == self.start)
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.host, self.pid, self.start)
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && !h.contains([':', '@']))
        .unwrap_or_else(|| "localhost".into())
}

/// Field 22 of `/proc/<pid>/stat` (start time after boot); `None` for no such (or a zombie)
/// process.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    // rest starts at field 3 (state); field 22 is index 19.
    fields.get(19)?.parse().ok()
}

/// `local-<short>-<pgid>@<host>:<pid>:<start>` → (pgid, owner). Ids of the older format
/// (no owner) give `None`.
pub(crate) fn parse_external_id(id: &str) -> Option<(i32, Owner)> {
    let (head, owner) = id.strip_prefix("local-")?.split_once('@')?;
    let pgid: i32 = head.rsplit_once('-')?.1.parse().ok()?;
    let mut parts = owner.rsplitn(3, ':');
    let start = parts.next()?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    let host = parts.next()?.to_string();
    (pgid > 1).then_some((pgid, Owner { host, pid, start }))
}

/// The agent process, started in its own process group.
pub(crate) struct Spawned {
    pub child: Child,
    pub pgid: i32,
}

/// Starts the agent: the template's program with expanded arguments, in the worktree, with the
/// `DISPATCH_*` environment. No shell is involved.
///
/// The agent's note (`worktree::AGENT_MARKER`, `note.id(pgid)`) is written by the child itself
/// between fork and exec: if the agent runs, its note exists — a server killed right after the
/// fork leaves no agent that a restarted server cannot see (it would start a second one).
pub(crate) fn spawn(
    config: &LocalConfig,
    program: &Path,
    job: &RunJob,
    prep: &Prepared,
    note: &AgentNote,
) -> Result<Spawned> {
    let workdir = prep.workdir.to_string_lossy().to_string();
    let prompt_file = prep.prompt_file.to_string_lossy().to_string();
    let budget = format!("{}", config.max_cost_usd);
    let value = |name: &str| -> Option<String> {
        Some(match name {
            "prompt" => prep.prompt.clone(),
            "prompt_file" => prompt_file.clone(),
            "max_budget_usd" => budget.clone(),
            "model" => config.model.clone().unwrap_or_default(),
            "run_id" => job.run.id.to_string(),
            "issue_id" => job.issue.id.to_string(),
            "issue_identifier" => job.issue.identifier.clone(),
            "workdir" => workdir.clone(),
            "branch" => prep.branch.clone(),
            "workflow_type" => job.run.kind.to_string(),
            _ => return None,
        })
    };
    let args: Vec<String> = config
        .agent_command
        .expand_args(&value)
        .into_iter()
        .map(|a| a.replace('\0', ""))
        .collect();
    let spec = prompts::kind_spec(job.run.kind);
    let mut cmd = Command::new(program);
    cmd.args(&args)
        .current_dir(&prep.workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    let clean = |s: &str| s.replace('\0', "");
    cmd.env("DISPATCH_RUN_ID", job.run.id.to_string())
        .env("DISPATCH_ISSUE_ID", job.issue.id.to_string())
        .env("DISPATCH_ISSUE_IDENTIFIER", clean(&job.issue.identifier))
        .env("DISPATCH_WORKFLOW_TYPE", job.run.kind.as_str())
        .env("DISPATCH_WORKDIR", &workdir)
        .env("DISPATCH_BRANCH", &prep.branch)
        .env("DISPATCH_PROMPT", &prep.prompt)
        .env("DISPATCH_PROMPT_FILE", &prompt_file)
        .env("DISPATCH_RESULT_FILE", prep.workdir.join(RESULT_FILE))
        .env("DISPATCH_REPORT_FILE", prep.workdir.join(spec.report_file))
        .env("DISPATCH_MAX_BUDGET_USD", &budget);
    for (k, v) in &job.inputs {
        cmd.env(format!("DISPATCH_INPUT_{}", env_name(k)), clean(v));
    }
    for (k, v) in &config.env {
        cmd.env(k, v);
    }
    let marker = prep.workdir.join(worktree::AGENT_MARKER);
    let writer = MarkerWriter::new(&marker, note)?;
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // calls (getpid, open, write, close, rename) on memory prepared before the fork; it neither
    // allocates nor takes locks.
    unsafe {
        cmd.pre_exec(move || writer.write());
    }
    let child = cmd.spawn().map_err(|e| {
        let msg = format!("could not start the agent {}: {e}", program.display());
        match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                Error::invalid("DISPATCH_AGENT_COMMAND", msg)
            }
            _ => Error::unavailable(msg),
        }
    })?;
    let pgid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| Error::internal("the agent process has no id"))?;
    Ok(Spawned { child, pgid })
}

/// How an agent is named in its run (`external_id`) and in its worktree's note:
/// `local-{short}-{pgid}@{owner}` (parsed back by [`parse_external_id`]).
pub(crate) struct AgentNote {
    prefix: String,
    suffix: String,
}

impl AgentNote {
    pub fn new(short: &str, owner: &Owner) -> Self {
        AgentNote {
            prefix: format!("local-{short}-"),
            suffix: format!("@{owner}"),
        }
    }

    pub fn id(&self, pgid: i32) -> String {
        format!("{}{pgid}{}", self.prefix, self.suffix)
    }
}

/// Writes the agent's note from the child, before exec: to a temporary file renamed over the
/// note, so that a reader sees a whole note or none.
struct MarkerWriter {
    tmp: CString,
    path: CString,
    prefix: Vec<u8>,
    suffix: Vec<u8>,
}

impl MarkerWriter {
    fn new(path: &Path, note: &AgentNote) -> Result<Self> {
        let c = |p: &Path| {
            CString::new(p.as_os_str().as_bytes()).map_err(|_| {
                Error::invalid(
                    "DISPATCH_WORKTREE_DIR",
                    format!("the path {} contains a NUL byte", p.display()),
                )
            })
        };
        Ok(MarkerWriter {
            tmp: c(&path.with_extension("tmp"))?,
            path: c(path)?,
            prefix: note.prefix.as_bytes().to_vec(),
            suffix: note.suffix.as_bytes().to_vec(),
        })
    }

    /// In the child between fork and exec: async-signal-safe calls only, no allocation.
    fn write(&self) -> std::io::Result<()> {
        // The child leads its own process group (`process_group(0)`): its pid is the group's id.
        let pid = unsafe { libc::getpid() };
        let mut digits = [0u8; 12];
        let mut at = digits.len();
        let mut n = pid.unsigned_abs();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC;
        let fd = unsafe { libc::open(self.tmp.as_ptr(), flags, 0o644 as libc::c_uint) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        for part in [&self.prefix[..], &digits[at..], &self.suffix[..]] {
            let mut rest = part;
            while !rest.is_empty() {
                let w = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
                if w < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    unsafe { libc::close(fd) };
                    return Err(e);
                }
                rest = &rest[w as usize..];
            }
        }
        unsafe { libc::close(fd) };
        if unsafe { libc::rename(self.tmp.as_ptr(), self.path.as_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// `plan_content` → `PLAN_CONTENT`.
fn env_name(k: &str) -> String {
    k.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// What the supervisor needs.
pub(crate) struct Supervision {
    pub config: Arc<LocalConfig>,
    pub job: RunJob,
    pub prep: Prepared,
    pub spawned: Spawned,
    pub receipt: DispatchReceipt,
    pub reporter: Arc<dyn RunReporter>,
    pub stop: watch::Receiver<Option<Stop>>,
    pub program: String,
}

#[derive(Debug, Clone, Copy)]
enum Source {
    Out,
    Err,
}

/// Terminal output: batched into chunks (the first line of a batch waits at most `window`), with
/// the last lines kept for failure summaries.
struct Output {
    reporter: Arc<dyn RunReporter>,
    run: dispatch_core::ids::RunId,
    window: Duration,
    pending: String,
    flush_at: Option<Instant>,
    tail: VecDeque<String>,
    tail_max: usize,
}

impl Output {
    fn line(&mut self, line: &str, keep_in_tail: bool) {
        let line = cap_display(line);
        if keep_in_tail && self.tail_max > 0 {
            if self.tail.len() == self.tail_max {
                self.tail.pop_front();
            }
            self.tail
                .push_back(cut_chars(line.trim_end_matches('\n'), 500));
        }
        self.pending.push_str(&line);
        if self.flush_at.is_none() {
            self.flush_at = Some(Instant::now() + self.window);
        }
    }
    fn full(&self) -> bool {
        self.pending.len() >= MAX_CHUNK
    }
    async fn flush(&mut self) {
        self.flush_at = None;
        if self.pending.is_empty() {
            return;
        }
        let chunk = std::mem::take(&mut self.pending);
        if let Err(e) = self.reporter.terminal(self.run, &chunk).await {
            tracing::warn!(run = %self.run, error = %e, "could not store agent output");
        }
    }
    fn tail_text(&self, lines: usize) -> String {
        let skip = self.tail.len().saturating_sub(lines);
        self.tail
            .iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Watches the agent until it ends, then reports the result. Returns the run's final status.
pub(crate) async fn supervise(s: Supervision) -> RunStatus {
    let Supervision {
        config,
        job,
        prep,
        spawned,
        receipt,
        reporter,
        mut stop,
        program,
    } = s;
    let Spawned { mut child, pgid } = spawned;
    let run = job.run.id;
    let kind = job.run.kind;
    if let Err(e) = reporter
        .started(
            run,
            receipt.external_id.clone(),
            receipt.external_url.clone(),
        )
        .await
    {
        tracing::warn!(run = %run, error = %e, "could not record the run as started");
    }
    let timeout = config.timeout_for(kind);
    let mut out = Output {
        reporter: reporter.clone(),
        run,
        window: config.batch_window,
        pending: String::new(),
        flush_at: None,
        tail: VecDeque::new(),
        tail_max: config.tail_lines,
    };
    out.line(
        &format!(
            "[DISPATCH] {kind} run for {} started: {program} (pid {pgid}) in {} on branch {}; time limit {}\n",
            job.issue.identifier,
            prep.workdir.display(),
            prep.branch,
            human_duration(timeout),
        ),
        false,
    );

    let (tx, mut rx) = mpsc::channel::<(Source, String)>(256);
    let mut readers = Vec::new();
    if let Some(o) = child.stdout.take() {
        readers.push(tokio::spawn(read_lines(o, Source::Out, tx.clone())));
    }
    if let Some(e) = child.stderr.take() {
        readers.push(tokio::spawn(read_lines(e, Source::Err, tx.clone())));
    }
    drop(tx);

    let mut filter = StreamFilter::new();
    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let deadline = Instant::now() + timeout;
    let mut ended: Option<Ended> = None;
    let mut kill_at: Option<Instant> = None;
    let mut exit: Option<std::io::Result<ExitStatus>> = None;
    let mut drain_until: Option<Instant> = None;
    let mut open = true;
    let mut stop_alive = true;

    while open || exit.is_none() {
        tokio::select! {
            m = rx.recv(), if open => match m {
                Some((Source::Out, raw)) => {
                    for l in filter.push_line(&raw) {
                        out.line(&l, true);
                    }
                    if out.full() {
                        out.flush().await;
                    }
                }
                Some((Source::Err, raw)) => {
                    out.line(&format!("[stderr] {raw}\n"), true);
                    if out.full() {
                        out.flush().await;
                    }
                }
                None => open = false,
            },
            _ = sleep_until(out.flush_at.unwrap_or(far)), if out.flush_at.is_some() => {
                out.flush().await;
            }
            st = child.wait(), if exit.is_none() => {
                // The agent is gone; nothing it left behind in its group may outlive it (a dev
                // server, a stuck test). Their output already in the pipes is still read.
                signal_group(pgid, libc::SIGKILL);
                exit = Some(st);
                drain_until = Some(Instant::now() + config.drain_grace);
            }
            _ = sleep_until(deadline), if ended.is_none() && exit.is_none() => {
                ended = Some(Ended::TimedOut);
                out.line(&format!("[DISPATCH] Time limit of {} reached; stopping the agent\n", human_duration(timeout)), false);
                signal_group(pgid, libc::SIGTERM);
                kill_at = Some(Instant::now() + config.kill_grace);
            }
            r = stop.changed(), if stop_alive && ended.is_none() && exit.is_none() => {
                let why = match r {
                    Ok(()) => *stop.borrow_and_update(),
                    Err(_) => {
                        stop_alive = false;
                        None
                    }
                };
                if let Some(why) = why {
                    ended = Some(match why {
                        Stop::Cancelled => Ended::Cancelled,
                        Stop::Shutdown => Ended::Shutdown,
                    });
                    out.line("[DISPATCH] Stopping the agent\n", false);
                    signal_group(pgid, libc::SIGTERM);
                    kill_at = Some(Instant::now() + config.kill_grace);
                }
            }
            _ = sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() && exit.is_none() => {
                signal_group(pgid, libc::SIGKILL);
                kill_at = None;
            }
            _ = sleep_until(drain_until.unwrap_or(far)), if drain_until.is_some() && open => {
                // Something outside the group (it called setsid) still holds the pipes.
                tracing::warn!(run = %run, "agent output still open after exit; no longer reading it");
                open = false;
            }
        }
    }
    for r in readers {
        r.abort();
    }

    let summary = filter.summary();
    let mut result = RunResult {
        cost_usd: summary.as_ref().and_then(|s| s.cost_usd),
        num_turns: summary.as_ref().and_then(|s| s.num_turns),
        model: summary
            .as_ref()
            .and_then(|s| s.model.clone())
            .or_else(|| filter.model().map(str::to_string)),
        tokens_used: summary.as_ref().and_then(|s| s.tokens_used),
        prompt_text: Some(prep.prompt.clone()),
        ..RunResult::default()
    };
    let spec = prompts::kind_spec(kind);
    let report = read_capped(&prep.workdir.join(spec.report_file), MAX_REPORT).await;
    let blocker = read_capped(&prep.workdir.join(BLOCKER_FILE), 16 * 1024).await;
    let tail_block = |out: &Output| {
        let t = out.tail_text(usize::MAX);
        if t.is_empty() {
            String::new()
        } else {
            format!("\n\nLast output:\n{t}")
        }
    };
    let session_note = summary
        .as_ref()
        .and_then(|s| s.failure_reason())
        .map(|r| format!(" The agent session ended with: {r}."))
        .unwrap_or_default();

    let (status, outcome, text) = match ended {
        Some(Ended::TimedOut) => (
            RunStatus::TimedOut,
            Outcome::Failed,
            format!(
                "Agent timed out after {} and was stopped.{session_note}{}",
                human_duration(timeout),
                tail_block(&out)
            ),
        ),
        Some(Ended::Cancelled) => (
            RunStatus::Cancelled,
            Outcome::Failed,
            "Cancelled; the agent was stopped.".to_string(),
        ),
        Some(Ended::Shutdown) => (
            RunStatus::Failed,
            Outcome::Failed,
            format!(
                "Dispatch shut down while the agent was running; the agent was stopped.{}",
                tail_block(&out)
            ),
        ),
        None => {
            let exit_note = describe_exit(exit.as_ref());
            let declared = read_declared(&prep.workdir.join(RESULT_FILE), kind).await;
            // Keep the agent's work (even a crashed agent's) on its branch.
            commit_work(&job, &prep, &mut out).await;
            match declared {
                Some(Ok(d)) => {
                    if d.files_changed.is_some() {
                        result.files_changed = d.files_changed;
                    }
                    let status = if d.outcome == Outcome::Failed {
                        RunStatus::Failed
                    } else {
                        RunStatus::Completed
                    };
                    let mut text = d
                        .summary
                        .unwrap_or_else(|| format!("Agent declared the outcome {}", d.outcome));
                    if let Some(n) = &exit_note {
                        text.push_str(&format!("\n\n(The agent process then {n}.)"));
                    }
                    if let Some(t) = &d.triage_decision {
                        text = format!("Triage decision: {t}. {text}");
                    }
                    (status, d.outcome, text)
                }
                Some(Err(invalid)) => (
                    RunStatus::Failed,
                    Outcome::Failed,
                    format!("{invalid}{session_note}{}", tail_block(&out)),
                ),
                None => match (&exit_note, &blocker) {
                    (None, _) if kind == WorkflowKind::AutoTriage => (
                        RunStatus::Completed,
                        Outcome::InvestigationComplete,
                        "Triage decision: needs_plan (the agent declared no outcome; triage defaults to needs_plan)."
                            .to_string(),
                    ),
                    (None, Some(b)) => (
                        RunStatus::Completed,
                        Outcome::Blocked,
                        format!("Blocked: {}", first_lines(b, 5)),
                    ),
                    (None, None) => (
                        RunStatus::Failed,
                        Outcome::Failed,
                        format!(
                            "Agent exited without declaring an outcome.{session_note}{}",
                            tail_block(&out)
                        ),
                    ),
                    (Some(n), _) => (
                        RunStatus::Failed,
                        Outcome::Failed,
                        format!(
                            "Agent exited without declaring an outcome: the process {n}.{session_note}{}",
                            tail_block(&out)
                        ),
                    ),
                },
            }
        }
    };
    if result.files_changed.is_none() && ended.is_none() {
        let (files, _) = worktree::branch_changes(&prep.workdir, &prep.base_sha).await;
        result.files_changed = Some(files);
    }
    result.status = Some(status);
    result.outcome = Some(outcome);
    result.summary = Some(cut_chars_from_start(&text, MAX_SUMMARY));
    result.report = report.clone();

    out.line(
        &format!(
            "[DISPATCH] Run ended: {status} (outcome {outcome}). Branch {} in {}\n",
            prep.branch,
            prep.workdir.display()
        ),
        false,
    );
    out.flush().await;

    let metadata = json!({
        "run_id": run.to_string(),
        "workflow_type": kind.as_str(),
        "runner": "local",
        "branch": prep.branch,
        "worktree": prep.workdir.to_string_lossy(),
        "outcome": outcome.as_str(),
        "cost_usd": result.cost_usd,
        "num_turns": result.num_turns,
        "model": result.model,
        "files_changed": result.files_changed,
    });
    if let Some(b) = &blocker {
        let category = b
            .lines()
            .find_map(|l| l.trim().strip_prefix("Category:"))
            .map(|c| c.trim().to_string());
        let mut a = NewActivity::new(
            ActivityType::BlockerReported,
            format!("Blocked: {}", first_lines(b, 5)),
        )
        .run(run);
        a.metadata = json!({"run_id": run.to_string(), "category": category});
        post(&reporter, run, a).await;
    }
    match status {
        RunStatus::Completed => {
            let content = match (&report, kind) {
                (_, WorkflowKind::AutoTriage) => result.summary.clone().unwrap_or_default(),
                (Some(r), _) => r.clone(),
                (None, _) => result.summary.clone().unwrap_or_default(),
            };
            let mut a = NewActivity::new(spec.done_activity, content).run(run);
            a.metadata = metadata;
            post(&reporter, run, a).await;
        }
        RunStatus::Failed | RunStatus::TimedOut => {
            let mut a = NewActivity::new(
                spec.failed_activity,
                result.summary.clone().unwrap_or_default(),
            )
            .run(run);
            let mut m = metadata;
            if let Value::Object(o) = &mut m {
                o.insert(
                    "error_tail".into(),
                    Value::String(out.tail_text(ERROR_TAIL_LINES)),
                );
            }
            a.metadata = m;
            post(&reporter, run, a).await;
        }
        _ => {}
    }
    if let Err(e) = reporter.finish(run, result).await {
        tracing::warn!(run = %run, error = %e, "could not record the run's result");
    }
    status
}

async fn post(reporter: &Arc<dyn RunReporter>, run: dispatch_core::ids::RunId, a: NewActivity) {
    if let Err(e) = reporter.activity(run, a).await {
        tracing::warn!(run = %run, error = %e, "could not record an activity");
    }
}

async fn commit_work(job: &RunJob, prep: &Prepared, out: &mut Output) {
    let spec = prompts::kind_spec(job.run.kind);
    let title: String = job
        .inputs
        .get("title")
        .unwrap_or(&job.issue.title)
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(72)
        .collect();
    let message = format!(
        "{}: {} [{}]\n\nLeft uncommitted by the agent of Dispatch run {}.",
        spec.commit_type, title, job.issue.identifier, job.run.id
    );
    match worktree::commit_leftovers(&prep.workdir, &message).await {
        Ok(true) => out.line(
            "[DISPATCH] Committed the changes the agent left uncommitted\n",
            false,
        ),
        Ok(false) => {}
        Err(e) => out.line(
            &format!("[DISPATCH] Could not commit the agent's changes: {e}\n"),
            false,
        ),
    }
}

/// `None` for a clean exit (code 0), else e.g. `exited with code 3` / `was killed by signal 9`.
fn describe_exit(exit: Option<&std::io::Result<ExitStatus>>) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    match exit {
        Some(Ok(st)) if st.success() => None,
        Some(Ok(st)) => Some(match (st.code(), st.signal()) {
            (Some(c), _) => format!("exited with code {c}"),
            (None, Some(s)) => format!("was killed by signal {s}"),
            _ => "ended abnormally".to_string(),
        }),
        Some(Err(e)) => Some(format!("could not be waited for ({e})")),
        None => Some("ended in an unknown way".to_string()),
    }
}

/// The agent's run-result, checked.
#[derive(Debug)]
struct Declared {
    outcome: Outcome,
    summary: Option<String>,
    files_changed: Option<Vec<String>>,
    triage_decision: Option<String>,
}

/// `None` when the file does not exist; `Some(Err(message))` when it is unusable.
async fn read_declared(
    path: &Path,
    kind: WorkflowKind,
) -> Option<std::result::Result<Declared, String>> {
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(format!("Could not read {RESULT_FILE}: {e}"))),
    };
    Some(parse_declared(&bytes, kind))
}

fn parse_declared(bytes: &[u8], kind: WorkflowKind) -> std::result::Result<Declared, String> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("Invalid {RESULT_FILE}: {e}"))?;
    let Value::Object(o) = v else {
        return Err(format!("Invalid {RESULT_FILE}: not a JSON object"));
    };
    let text = |k: &str| {
        o.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let triage_decision = text("triage_decision");
    let outcome = match (o.get("outcome"), &triage_decision) {
        (Some(Value::String(s)), _) => s
            .parse::<Outcome>()
            .map_err(|_| format!("Invalid outcome {:?}", cut_chars(s, 100)))?,
        (None | Some(Value::Null), Some(t)) if kind == WorkflowKind::AutoTriage => {
            prompts::triage_outcome(t).ok_or_else(|| format!("Invalid triage_decision {t:?}"))?
        }
        (None | Some(Value::Null), _) => return Err("Invalid outcome: none declared".into()),
        (Some(other), _) => {
            return Err(format!(
                "Invalid outcome {}",
                cut_chars(&other.to_string(), 100)
            ));
        }
    };
    let files_changed = o.get("files_changed").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    });
    let mut summary = text("summary");
    if let (Some(a), Some(s)) = (text("assessment"), summary.as_mut()) {
        s.push_str(&format!("\n\nAssessment: {a}"));
    }
    Ok(Declared {
        outcome,
        summary,
        files_changed,
        triage_decision,
    })
}

async fn read_capped(path: &Path, max: usize) -> Option<String> {
    let bytes = tokio::fs::read(path).await.ok()?;
    let s = String::from_utf8_lossy(&bytes);
    if s.trim().is_empty() {
        return None;
    }
    if s.len() <= max {
        return Some(s.into_owned());
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Some(format!("{}\n\n[report cut at {max} bytes]", &s[..end]))
}

fn first_lines(s: &str, n: usize) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(n)
        .collect::<Vec<_>>()
        .join("\n")
}

fn cut_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Keeps the end of a long text (the tail of the output matters most).
fn cut_chars_from_start(s: &str, max_bytes: usize) -> String {
    if s.len() <= max_bytes {
        return s.to_string();
    }
    let head_len = s.find("\n\nLast output:\n").unwrap_or(0).min(max_bytes / 2);
    let mut head_end = head_len;
    while !s.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let mut start = s.len() - (max_bytes - head_end);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("{}\n…\n{}", &s[..head_end], &s[start..])
}

fn cap_display(line: &str) -> String {
    if line.len() <= MAX_DISPLAY_LINE {
        return line.to_string();
    }
    let mut end = MAX_DISPLAY_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… [{} more bytes]\n",
        &line[..end],
        line.len().saturating_sub(end)
    )
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) && d.subsec_nanos() == 0 {
        format!("{} min", s / 60)
    } else if s >= 1 && d.subsec_millis() == 0 {
        format!("{s} s")
    } else if s >= 1 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

async fn read_lines<R: AsyncRead + Unpin>(r: R, src: Source, tx: mpsc::Sender<(Source, String)>) {
    let mut r = BufReader::with_capacity(64 * 1024, r);
    loop {
        match next_line(&mut r, MAX_RAW_LINE).await {
            Ok(Some(bytes)) => {
                let s = String::from_utf8_lossy(&bytes);
                let s = s.trim_end_matches(['\n', '\r']).to_string();
                if tx.send((src, s)).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "agent output stream ended with an error");
                break;
            }
        }
    }
}

/// The next line (with its `\n`), at most `max` bytes of it; `None` at the end of the stream.
async fn next_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok((!line.is_empty()).then_some(line));
        }
        let (take, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = max.saturating_sub(line.len());
        line.extend_from_slice(&buf[..take.min(room)]);
        r.consume(take);
        if done {
            return Ok(Some(line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_result_files_are_validated() {
        let ok = parse_declared(
            br#"{"outcome":"completed","summary":"Fixed","changes_made":true,"files_changed":["a.rs",1],"pr_needed":false}"#,
            WorkflowKind::ErrorFix,
        );
        let d = ok.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.outcome, Outcome::Completed);
        assert_eq!(d.files_changed, Some(vec!["a.rs".to_string()]));
        assert_eq!(d.summary.as_deref(), Some("Fixed"));

        let bad = parse_declared(br#"{"outcome":"great_success"}"#, WorkflowKind::ErrorFix);
        assert!(bad.is_err_and(|e| e.starts_with("Invalid outcome")));
        let none = parse_declared(br#"{"summary":"x"}"#, WorkflowKind::ErrorFix);
        assert!(none.is_err_and(|e| e.starts_with("Invalid outcome")));
        assert!(parse_declared(b"not json", WorkflowKind::Qa).is_err());
        assert!(parse_declared(b"[1]", WorkflowKind::Qa).is_err());

        let triage = parse_declared(
            br#"{"triage_decision":"not_applicable","summary":"Noise","assessment":"A bot."}"#,
            WorkflowKind::AutoTriage,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(triage.outcome, Outcome::NoChangesNeeded);
        assert_eq!(
            triage.summary.as_deref(),
            Some("Noise\n\nAssessment: A bot.")
        );
    }

    #[test]
    fn long_texts_are_cut_on_character_boundaries() {
        let s = format!("Head.\n\nLast output:\n{}", "é".repeat(10_000));
        let c = cut_chars_from_start(&s, 1000);
        assert!(c.len() <= 1010);
        assert!(c.starts_with("Head."));
        assert!(c.ends_with('é'));
        let l = cap_display(&"ü".repeat(20_000));
        assert!(l.ends_with("more bytes]\n"));
        assert_eq!(cut_chars("äöü", 2), "äö…");
    }

    #[test]
    fn never_signals_every_process() {
        // kill(-1) or kill(0) would hit every process we may signal, or our own group.
        signal_group(0, libc::SIGTERM);
        signal_group(1, libc::SIGTERM);
        signal_group(-5, libc::SIGTERM);
    }

    #[tokio::test]
    async fn lines_are_capped_but_fully_consumed() {
        let data: &[u8] = b"short\nxxxxxxxxxxxxxxxxxxxx\nend";
        let mut r = BufReader::with_capacity(4, data);
        let mut lines = Vec::new();
        while let Ok(Some(l)) = next_line(&mut r, 8).await {
            lines.push(String::from_utf8_lossy(&l).to_string());
        }
        assert_eq!(lines, vec!["short\n", "xxxxxxxx", "end"]);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(Duration::from_secs(1800)), "30 min");
        assert_eq!(human_duration(Duration::from_secs(90)), "90 s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(human_duration(Duration::from_millis(300)), "300 ms");
    }

    #[test]
    fn input_names_become_env_names() {
        assert_eq!(env_name("plan_content"), "PLAN_CONTENT");
        assert_eq!(env_name("a-b.c"), "A_B_C");
    }
}

#[cfg(test)]
mod owner_tests {
    use super::*;

    #[test]
    fn external_ids_round_trip_and_old_ones_have_no_owner() {
        let me = Owner::current();
        assert!(me.is_alive(), "this process is alive");
        assert!(me.start > 0);
        let id = format!("local-ab12cd34-4242@{me}");
        assert_eq!(parse_external_id(&id), Some((4242, me.clone())));
        assert_eq!(parse_external_id("local-ab12cd34-4242"), None);
        assert_eq!(parse_external_id("gh-123"), None);
        assert_eq!(
            parse_external_id("local-x-1@h:1:1"),
            None,
            "pgid 1 is refused"
        );
        let reused = Owner {
            start: me.start + 1,
            ..me
        };
        assert!(
            !reused.is_alive(),
            "a pid with another start time is another process"
        );
    }
}
