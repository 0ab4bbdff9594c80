//! The agent workflow templates in `workflows/`: their declared inputs against what the server
//! sends, the injection and budget rules, the stream filter script against the Rust filter, and
//! whole workflow runs against a real `dispatch serve` — each step's `run:` script executed by a
//! small stand-in for the Actions runner, with fake `claude`, `npm` and `gh` commands.
//!
//! The workflow files are read line by line (no YAML dependency): they are ours, written in one
//! regular style, and these checks keep them that way.

mod support;

use dispatch_core::agent_output;
use dispatch_core::engine::job_inputs;
use dispatch_core::issue::{Actor, NewIssue};
use dispatch_core::memory::MemoryStore;
use dispatch_core::ports::{IssueStore, WorkspaceStore};
use dispatch_core::run::{NewRun, WorkflowKind};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::Server;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn workflows_dir() -> PathBuf {
    repo_root().join("workflows")
}

fn scripts_dir() -> PathBuf {
    workflows_dir().join("scripts")
}

/// The six kinds: workflow file, `WORKFLOW_TYPE`, job timeout (spec §7.1), permissions.
const KINDS: [(WorkflowKind, &str, u32, bool); 6] = [
    (WorkflowKind::ErrorFix, "error_fix", 30, true),
    (WorkflowKind::PrdInvestigate, "prd_investigate", 30, false),
    (WorkflowKind::PrdImplement, "prd_implement", 60, true),
    (WorkflowKind::Qa, "qa", 30, false),
    (WorkflowKind::DeepResearch, "deep_research", 30, false),
    (WorkflowKind::AutoTriage, "auto_triage", 20, true),
];

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The tools the workflow scripts need (all present on GitHub's runners). Without them a test is
/// skipped on a developer's machine, and fails in CI (`CI=true`), where `.ci/run` installs them.
fn skip_without_tools() -> bool {
    let Some(t) = ["python3", "bash", "jq", "curl", "git"]
        .into_iter()
        .find(|c| !have(c))
    else {
        return false;
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{t} is not installed"
    );
    eprintln!("skipped: {t} is not installed");
    true
}

// ---------------------------------------------------------------------------------------------
// A line-based reader for our workflow files

#[derive(Debug, Default, Clone)]
struct Input {
    required: bool,
    default: Option<String>,
}

#[derive(Debug, Default, Clone)]
struct Step {
    name: String,
    id: Option<String>,
    cond: Option<String>,
    uses: Option<String>,
    run: Option<String>,
    env: Vec<(String, String)>,
    continue_on_error: bool,
    timeout: Option<u32>,
}

#[derive(Debug, Default)]
struct Workflow {
    file: String,
    text: String,
    run_name: String,
    inputs: BTreeMap<String, Input>,
    permissions: BTreeMap<String, String>,
    concurrency_group: Option<String>,
    cancel_in_progress: Option<String>,
    job_timeout: Option<u32>,
    job_env: Vec<(String, String)>,
    steps: Vec<Step>,
}

fn indent(l: &str) -> usize {
    l.len() - l.trim_start().len()
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    if v.len() >= 2
        && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
    {
        v[1..v.len() - 1].to_string()
    } else {
        v.to_string()
    }
}

/// `key: value` of a line.
fn kv(l: &str) -> Option<(String, String)> {
    let t = l.trim_start().trim_start_matches("- ");
    let (k, v) = t.split_once(':')?;
    if k.contains(' ') || k.is_empty() {
        return None;
    }
    Some((k.to_string(), v.trim().to_string()))
}

/// The block scalar that starts after line `i` (lines indented more than `parent`), dedented.
fn block(lines: &[&str], i: &mut usize, parent: usize) -> String {
    let mut body = Vec::new();
    while *i + 1 < lines.len() {
        let l = lines[*i + 1];
        if !l.trim().is_empty() && indent(l) <= parent {
            break;
        }
        body.push(l);
        *i += 1;
    }
    while body.last().is_some_and(|l| l.trim().is_empty()) {
        body.pop();
    }
    let cut = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| indent(l))
        .min()
        .unwrap_or(0);
    let mut s: String = body
        .iter()
        .map(|l| if l.len() >= cut { &l[cut..] } else { "" })
        .collect::<Vec<_>>()
        .join("\n");
    s.push('\n');
    s
}

fn parse_workflow(file: &str) -> Workflow {
    let path = workflows_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    let mut w = Workflow {
        file: file.to_string(),
        text: text.clone(),
        ..Workflow::default()
    };
    // Section paths by indentation: ["on", "workflow_dispatch", "inputs", "<name>"], ...
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.trim().is_empty() || l.trim_start().starts_with('#') {
            i += 1;
            continue;
        }
        let ind = indent(l);
        while path.last().is_some_and(|(d, _)| *d >= ind) {
            path.pop();
        }
        let keys: Vec<&str> = path.iter().map(|(_, k)| k.as_str()).collect();
        let is_item = l.trim_start().starts_with("- ");
        if is_item && keys == ["jobs", "agent", "steps"] {
            w.steps.push(Step::default());
        }
        let Some((k, v)) = kv(l) else {
            i += 1;
            continue;
        };
        let in_step = keys.len() >= 3 && keys[..3] == ["jobs", "agent", "steps"];
        match keys.as_slice() {
            [] if k == "run-name" => w.run_name = unquote(&v),
            ["on", "workflow_dispatch", "inputs"] => {
                w.inputs.insert(k.clone(), Input::default());
            }
            ["on", "workflow_dispatch", "inputs", name] => {
                let input = w.inputs.get_mut(*name).expect("input");
                match k.as_str() {
                    "required" => input.required = v == "true",
                    "default" => input.default = Some(unquote(&v)),
                    _ => {}
                }
            }
            ["permissions"] => {
                w.permissions.insert(k.clone(), v.clone());
            }
            ["concurrency"] if k == "group" => w.concurrency_group = Some(v.clone()),
            ["concurrency"] if k == "cancel-in-progress" => w.cancel_in_progress = Some(v.clone()),
            ["jobs", "agent"] if k == "timeout-minutes" => w.job_timeout = v.parse().ok(),
            ["jobs", "agent", "env"] => {
                w.job_env.push((k.clone(), unquote(&v)));
            }
            _ if in_step => {
                let step = w.steps.last_mut().expect("a step");
                let step_level = keys.len() == 3;
                if step_level {
                    match k.as_str() {
                        "name" => step.name = unquote(&v),
                        "id" => step.id = Some(v.clone()),
                        "if" => step.cond = Some(v.clone()),
                        "uses" => step.uses = Some(v.clone()),
                        "continue-on-error" => step.continue_on_error = v == "true",
                        "timeout-minutes" => step.timeout = v.parse().ok(),
                        "run" if v == "|" => step.run = Some(block(&lines, &mut i, ind)),
                        "run" => step.run = Some(format!("{v}\n")),
                        _ => {}
                    }
                } else if keys.len() == 4 && keys[3] == "env" {
                    let value = if v == "|" {
                        block(&lines, &mut i, ind)
                    } else {
                        unquote(&v)
                    };
                    step.env.push((k.clone(), value));
                }
            }
            _ => {}
        }
        // A list item's first key sits one level deeper than the dash.
        let depth = if is_item { ind + 2 } else { ind };
        if v.is_empty() || v == "|" {
            path.push((depth, k));
        }
        i += 1;
    }
    w
}

fn all_workflows() -> Vec<(WorkflowKind, &'static str, u32, bool, Workflow)> {
    KINDS
        .iter()
        .map(|(k, t, timeout, writes)| {
            (*k, *t, *timeout, *writes, parse_workflow(k.workflow_file()))
        })
        .collect()
}

/// Every input the server may send for a kind: the engine's inputs for a fully populated issue
/// and run, plus `callback_url` (the GitHub runner adds it when `DISPATCH_CALLBACK_URL` is set).
async fn server_inputs(kind: WorkflowKind) -> BTreeSet<String> {
    let store = MemoryStore::new();
    let now = chrono::Utc::now();
    let ws = store
        .ensure_workspace("Acme", "ACME", now)
        .await
        .expect("workspace");
    let mut new = NewIssue::titled("Checkout fails");
    new.description = Some("It fails".into());
    let mut issue = store
        .create_issue(ws.id, new, &Actor::user("test"), now, &Default::default())
        .await
        .expect("issue");
    issue.plan.content = Some("1. do it".into());
    issue.plan.feedback = Some("more tests".into());
    let run = NewRun {
        issue_id: issue.id,
        kind,
        additional_context: Some("see logs".into()),
        force: false,
        requested_by: "test".into(),
    }
    .into_run(now);
    let mut keys: BTreeSet<String> = job_inputs(&run, &issue, None).into_keys().collect();
    keys.insert("callback_url".into());
    keys
}

// ---------------------------------------------------------------------------------------------
// Static checks

#[tokio::test]
async fn every_kind_declares_what_the_server_sends_and_nothing_it_must_have_without_a_default() {
    for (kind, _, _, _, w) in all_workflows() {
        let sent = server_inputs(kind).await;
        for name in &sent {
            assert!(
                w.inputs.contains_key(name),
                "{}: the server sends `{name}`, which is not declared (GitHub answers 422)",
                w.file
            );
        }
        for (name, input) in &w.inputs {
            assert!(
                sent.contains(name) || (!input.required && input.default.is_some()),
                "{}: input `{name}` is neither sent by the server nor optional with a default",
                w.file
            );
        }
        let run_id = w
            .inputs
            .get("dispatch_run_id")
            .unwrap_or_else(|| panic!("{}: no dispatch_run_id input", w.file));
        assert!(
            !run_id.required,
            "{}: dispatch_run_id must stay optional (older servers do not send it)",
            w.file
        );
        for required in ["issue_id", "issue_identifier", "title", "description"] {
            assert!(
                w.inputs[required].required,
                "{}: {required} is required",
                w.file
            );
        }
    }
}

#[test]
fn run_name_concurrency_timeouts_and_permissions() {
    for (kind, wtype, timeout, writes, w) in all_workflows() {
        let f = &w.file;
        assert!(
            w.run_name.contains("${{ inputs.dispatch_run_id }}"),
            "{f}: run-name {:?}",
            w.run_name
        );
        assert_eq!(
            w.run_name, "dispatch ${{ inputs.issue_identifier }} [${{ inputs.dispatch_run_id }}]",
            "{f}"
        );
        let stem = kind.workflow_file().trim_end_matches(".yml");
        assert_eq!(
            w.concurrency_group.as_deref(),
            Some(format!("{stem}-${{{{ inputs.issue_identifier }}}}").as_str()),
            "{f}"
        );
        assert_eq!(w.cancel_in_progress.as_deref(), Some("false"), "{f}");
        assert_eq!(w.job_timeout, Some(timeout), "{f}: job timeout (spec §7.1)");
        assert!(
            w.job_env.contains(&("WORKFLOW_TYPE".into(), wtype.into())),
            "{f}: WORKFLOW_TYPE"
        );
        let expected: BTreeMap<String, String> = if writes {
            [("contents", "write"), ("pull-requests", "write")]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        } else {
            [("contents".to_string(), "read".to_string())].into()
        };
        assert_eq!(w.permissions, expected, "{f}: permissions");
        // Agent steps stop before the job does, so the result is still reported.
        for s in w.steps.iter().filter(|s| {
            s.run
                .as_deref()
                .is_some_and(|r| r.contains("claude --print"))
        }) {
            let t = s
                .timeout
                .unwrap_or_else(|| panic!("{f}: step {:?} has no timeout", s.name));
            assert!(
                t + 5 <= timeout,
                "{f}: step {:?} timeout {t} leaves no time to report",
                s.name
            );
        }
        assert!(
            w.steps
                .iter()
                .any(|s| s.name == "Report to Dispatch" && s.cond.as_deref() == Some("always()")),
            "{f}: final report"
        );
        let publishes = w.steps.iter().any(|s| {
            s.run
                .as_deref()
                .is_some_and(|r| r.contains("dispatch-agent.py\" publish"))
        });
        assert_eq!(
            publishes, writes,
            "{f}: only the writing kinds open pull requests"
        );
    }
}

#[test]
fn inputs_reach_scripts_only_through_env_and_every_agent_has_a_budget() {
    for (_, _, _, _, w) in all_workflows() {
        let f = &w.file;
        let mut agent_steps = 0;
        for s in &w.steps {
            if let Some(run) = &s.run {
                assert!(
                    !run.contains("${{"),
                    "{f}: step {:?} puts an expression into its script",
                    s.name
                );
                if run.contains("claude --print") {
                    agent_steps += 1;
                    assert!(
                        run.contains("--max-budget-usd \"${MAX_AGENT_COST_PER_RUN:-25}\""),
                        "{f}: step {:?} has no budget",
                        s.name
                    );
                    assert!(run.contains("--output-format stream-json"), "{f}");
                    assert!(run.contains("agent-filter.py"), "{f}");
                    assert!(
                        run.contains("-u DISPATCH_API_KEY"),
                        "{f}: the agent must not get the Dispatch key"
                    );
                    assert!(
                        run.contains("dispatch-callback.sh\" stream"),
                        "{f}: terminal streaming"
                    );
                }
            }
            for (k, v) in &s.env {
                if k == "ANTHROPIC_API_KEY" {
                    assert!(
                        s.run
                            .as_deref()
                            .is_some_and(|r| r.contains("claude --print")),
                        "{f}: the Anthropic key only goes to agent steps"
                    );
                }
                assert!(
                    !(v.contains("secrets.")
                        && k != "ANTHROPIC_API_KEY"
                        && k != "DISPATCH_API_KEY"
                        && k != "GH_TOKEN"),
                    "{f}: {k}"
                );
            }
            if let Some(u) = &s.uses {
                assert!(
                    u.starts_with("actions/checkout@") || u.starts_with("actions/setup-node@"),
                    "{f}: unexpected action {u}"
                );
            }
        }
        assert!(agent_steps >= 1, "{f}: no agent step");
        assert!(
            w.text.contains("persist-credentials: false"),
            "{f}: the checkout must not leave a token for the agent"
        );
        // Secrets other than the Dispatch URL are never job-wide.
        for (k, v) in &w.job_env {
            assert!(
                !v.contains("secrets.") || k == "DISPATCH_API_URL",
                "{f}: job env {k} holds a secret"
            );
        }
        for product in [
            "staging",
            "gcloud",
            "GKE",
            "cloud-sql",
            "Cloud SQL",
            "deno",
            "svelte",
            "Chipp",
            "WIF_",
        ] {
            assert!(
                !w.text.to_lowercase().contains(&product.to_lowercase()),
                "{f}: product-specific `{product}`"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The stream filter script

fn python_filter(input: &[u8]) -> String {
    let mut child = Command::new("python3")
        .arg(scripts_dir().join("agent-filter.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input).expect("write");
    }
    let out = child.wait_with_output().expect("filter");
    assert!(out.status.success(), "agent-filter.py failed");
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn filter_script_renders_the_fixture() {
    if skip_without_tools() {
        return;
    }
    let fixture = std::fs::read(scripts_dir().join("testdata/stream-json.jsonl")).expect("fixture");
    let out = python_filter(&fixture);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.contains(&"[TOOL] Grep(pattern=PaymentDeclined, path=src, output_mode=content)"),
        "{out}"
    );
    assert!(lines.contains(&"[RESULT] src/payments/charge.rs:88:        return Err(PaymentError::PaymentDeclined(code));"), "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[TOOL] Bash(command=cargo test -p payments")),
        "{out}"
    );
    assert_eq!(
        lines.last().copied(),
        Some("[COMPLETED] Cost: $0.06, Turns: 3"),
        "{out}"
    );
    // --summary writes the result event's numbers.
    let dir = temp_dir("filter");
    let summary = dir.join("summary.json");
    let st = Command::new("python3")
        .arg(scripts_dir().join("agent-filter.py"))
        .arg("--summary")
        .arg(&summary)
        .arg(scripts_dir().join("testdata/stream-json.jsonl"))
        .stdout(Stdio::null())
        .status()
        .expect("python3");
    assert!(st.success());
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary")).expect("json");
    assert_eq!(s["cost_usd"], 0.0598312);
    assert_eq!(s["num_turns"], 3);
    assert_eq!(s["model"], "claude-sonnet-4-6");
    assert_eq!(s["subtype"], "success");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The script prints exactly what `dispatch_core::agent_output` prints, on the fixtures and on
/// the edge cases of the Rust filter's tests.
#[test]
fn filter_script_matches_the_rust_filter() {
    if skip_without_tools() {
        return;
    }
    let mut input = String::new();
    for f in ["stream-json.jsonl", "sample-turns.claude-code-action.jsonl"] {
        input.push_str(
            &std::fs::read_to_string(scripts_dir().join("testdata").join(f)).expect("fixture"),
        );
    }
    let long = "é".repeat(250);
    let x100 = "x".repeat(100);
    let extra = [
        format!(r#"{{"type":"user","message":{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"t","content":[{{"type":"text","text":"{long}"}},{{"type":"image","source":{{}}}}]}}]}}}}"#),
        r#"{"type":"user","message":{"content":[{"type":"tool_result","content":[{"type":"text","text":"ok"},{"type":"image"}]}]}}"#.into(),
        r#"{"type":"user","message":{"content":[{"type":"tool_result","content":""}]}}"#.into(),
        r#"{"type":"user","message":{"content":[{"type":"tool_result","content":{"a":1},"is_error":true}]}}"#.into(),
        format!(r#"{{"type":"assistant","message":{{"content":[{{"type":"tool_use","name":"Bash","input":{{"command":"{x100}","timeout":120000,"nested":{{"b":1.5,"a":[true,null,1e21,0.00001]}},"fourth":"hidden"}}}}]}}}}"#),
        r#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"TodoRead"}]}}"#.into(),
        r#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"X","input":"raw\r\ninput"},{"type":"server_tool_use","name":"web_search","input":[1,2]}]}}"#.into(),
        r#"{"type":"assistant","message":{"model":"<synthetic>","content":"plain\nstring content\n"}}"#.into(),
        r#"{"type":"assistant","message":{"content":[{"type":"thinking","thinking":"hidden"},{"type":"text","text":"   "}]}}"#.into(),
        r#"{"type":"system","subtype":"init","model":"m","tools":[],"mcp_servers":[{"name":"a","status":"failed"},{"name":"b","status":"connected"},{"name":"c"}]}"#.into(),
        r#"{"type":"system","subtype":"api_retry","attempt":2,"max_retries":10,"retry_delay_ms":1234.5,"error_status":529,"error":"overloaded"}"#.into(),
        r#"{"type":"system","subtype":"status"}"#.into(),
        r#"{"type":"rate_limit_event"}"#.into(),
        r#"{"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":7,"total_cost_usd":0.4213,"result":"x"}"#.into(),
        r#"{"type":"result","subtype":"error_max_budget_usd","is_error":true,"num_turns":7,"total_cost_usd":25.005}"#.into(),
        r#"{"type":"result","subtype":"success","is_error":true,"num_turns":1,"total_cost_usd":0,"result":"API Error: Unable to connect to API"}"#.into(),
        r#"{"type":"result","subtype":"success","total_cost_usd":0.125,"permission_denials":[{"tool_name":"Bash"},{"tool_name":"Write"},{"tool_name":"Edit"},{"tool_name":"Read"}]}"#.into(),
        r#"{"type":"result","subtype":"error_something_new","is_error":true}"#.into(),
        r#"{"type":"result","modelUsage":{"a":{"costUSD":1},"b":{"costUSD":3},"c":{"costUSD":3}},"total_cost_usd":4}"#.into(),
        "not json at all".into(),
        "[1,2,3]".into(),
        "\"a string\"".into(),
        "{\"type\":\"assistant\",\"message\":{\"content\":\"trailing cr\"}}\r".into(),
        "   ".into(),
        "{broken".into(),
        r#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Dup","input":{"a":1,"a":2,"b":"x"}}]}}"#.into(),
        "NaN".into(),
    ];
    for l in &extra {
        input.push_str(l);
        input.push('\n');
    }
    let (expected, _) = agent_output::render(&input);
    let got = python_filter(input.as_bytes());
    let (e, g): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), got.lines().collect());
    for (n, (a, b)) in e.iter().zip(g.iter()).enumerate() {
        assert_eq!(a, b, "line {n} differs");
    }
    assert_eq!(expected, got);
}

// ---------------------------------------------------------------------------------------------
// A stand-in for the Actions runner

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "dispatch-wf-{tag}-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("bash")
        .arg("-eo")
        .arg("pipefail")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn write_exec(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    sh(Path::new("/"), &format!("chmod +x '{}'", path.display()));
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Success,
    Failure,
    Skipped,
}

struct Runner {
    repo: PathBuf,
    temp: PathBuf,
    bin: PathBuf,
    /// `${{ expression }}` → value (anything else is empty).
    exprs: HashMap<String, String>,
    env: BTreeMap<String, String>,
    outputs: HashMap<String, HashMap<String, String>>,
    outcomes: HashMap<String, Outcome>,
    failed: bool,
    log: String,
}

impl Runner {
    fn eval_value(&self, v: &str) -> String {
        let mut out = String::new();
        let mut rest = v;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find("}}")
                .map(|e| start + e)
                .expect("closing }}");
            let expr = rest[start + 3..end].trim();
            let value = if let Some(x) = expr.strip_prefix("steps.") {
                let parts: Vec<&str> = x.split('.').collect();
                match parts.as_slice() {
                    [id, "outputs", k] => self
                        .outputs
                        .get(*id)
                        .and_then(|o| o.get(*k))
                        .cloned()
                        .unwrap_or_default(),
                    _ => String::new(),
                }
            } else if expr == "job.status" {
                if self.failed {
                    "failure".into()
                } else {
                    "success".into()
                }
            } else {
                self.exprs.get(expr).cloned().unwrap_or_default()
            };
            out.push_str(&value);
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out
    }

    /// The `if:` forms our workflows use.
    fn eval_if(&self, cond: Option<&str>) -> bool {
        let Some(cond) = cond else {
            return !self.failed;
        };
        let mut status_fn = false;
        let mut ok = true;
        for term in cond.split("&&").map(str::trim) {
            let v = match term {
                "always()" => {
                    status_fn = true;
                    true
                }
                "success()" => {
                    status_fn = true;
                    !self.failed
                }
                "failure()" => {
                    status_fn = true;
                    self.failed
                }
                _ => {
                    let (lhs, rhs, eq) = if let Some((a, b)) = term.split_once("!=") {
                        (a.trim(), b.trim(), false)
                    } else if let Some((a, b)) = term.split_once("==") {
                        (a.trim(), b.trim(), true)
                    } else {
                        panic!("unsupported condition {term:?}");
                    };
                    let parts: Vec<&str> = lhs.trim_start_matches("steps.").split('.').collect();
                    let value = match parts.as_slice() {
                        [id, "outcome"] => match self.outcomes.get(*id) {
                            Some(Outcome::Success) => "success",
                            Some(Outcome::Failure) => "failure",
                            Some(Outcome::Skipped) | None => "skipped",
                        }
                        .to_string(),
                        [id, "outputs", k] => self
                            .outputs
                            .get(*id)
                            .and_then(|o| o.get(*k))
                            .cloned()
                            .unwrap_or_default(),
                        _ => panic!("unsupported operand {lhs:?}"),
                    };
                    (value == rhs.trim_matches('\'')) == eq
                }
            };
            ok &= v;
        }
        ok && (status_fn || !self.failed)
    }

    fn run(&mut self, w: &Workflow, job_env: &BTreeMap<String, String>) {
        for step in &w.steps {
            let id = step.id.clone().unwrap_or_default();
            if !self.eval_if(step.cond.as_deref()) {
                self.outcomes.insert(id, Outcome::Skipped);
                self.log.push_str(&format!("-- skipped: {}\n", step.name));
                continue;
            }
            let Some(script) = &step.run else {
                // `uses:` steps: the test prepared the checkout; Node.js is already there.
                self.outcomes.insert(id, Outcome::Success);
                continue;
            };
            let n = self.outcomes.len();
            let gh_env = self.temp.join(format!("env-{n}"));
            let gh_out = self.temp.join(format!("out-{n}"));
            std::fs::write(&gh_env, "").expect("env file");
            std::fs::write(&gh_out, "").expect("output file");
            let script_path = self.temp.join(format!("step-{n}.sh"));
            std::fs::write(&script_path, script).expect("script");
            let mut cmd = Command::new("bash");
            cmd.arg("--noprofile")
                .arg("--norc")
                .arg("-eo")
                .arg("pipefail")
                .arg(&script_path)
                .current_dir(&self.repo)
                .env_clear();
            let path = format!(
                "{}:{}",
                self.bin.display(),
                std::env::var("PATH").unwrap_or_default()
            );
            cmd.env("PATH", path).env("HOME", self.temp.join("home"));
            for (k, v) in job_env.iter().chain(self.env.iter()) {
                cmd.env(k, v);
            }
            for (k, v) in &step.env {
                cmd.env(k, self.eval_value(v));
            }
            cmd.env("GITHUB_ENV", &gh_env).env("GITHUB_OUTPUT", &gh_out);
            let started = std::time::Instant::now();
            let out = cmd.output().expect("bash");
            self.log.push_str(&format!(
                "-- {} (exit {:?}, {:.1} s)\n{}{}",
                step.name,
                out.status.code(),
                started.elapsed().as_secs_f64(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
            for line in std::fs::read_to_string(&gh_env).unwrap_or_default().lines() {
                if let Some((k, v)) = line.split_once('=') {
                    self.env.insert(k.into(), v.into());
                }
            }
            let outs: HashMap<String, String> = std::fs::read_to_string(&gh_out)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    l.split_once('=')
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                })
                .collect();
            let outcome = if out.status.success() {
                Outcome::Success
            } else {
                Outcome::Failure
            };
            if outcome == Outcome::Failure && !step.continue_on_error {
                self.failed = true;
            }
            if !id.is_empty() {
                self.outputs.insert(id.clone(), outs);
            }
            self.outcomes
                .insert(if id.is_empty() { format!("#{n}") } else { id }, outcome);
        }
    }
}

const FAKE_NPM: &str = "#!/usr/bin/env bash\necho \"npm $*\"\n";

/// `gh`: records its arguments; `pr list` finds nothing; `pr create` answers PR #7.
const FAKE_GH: &str = r#"#!/usr/bin/env bash
printf '%s\0' "$@" > "$FAKE_LOG/gh-$(date +%s%N).args"
case "$1 $2" in
  "pr list") echo "[]" ;;
  "pr create") echo "https://github.com/acme/shop/pull/7" ;;
esac
"#;

/// `claude`: records its arguments and environment, runs the scenario's `$FAKE_LOG/session-<n>.sh`
/// (in the checkout), then prints the stream-json fixture (a line every `$FAKE_SLOW` seconds
/// when set).
const FAKE_CLAUDE: &str = r#"#!/usr/bin/env bash
if [ "${1:-}" = "--version" ]; then echo "2.1.195 (Claude Code)"; exit 0; fi
n=$(( $(ls "$FAKE_LOG"/claude-*.args 2>/dev/null | wc -l) + 1 ))
printf '%s\0' "$@" > "$FAKE_LOG/claude-$n.args"
env > "$FAKE_LOG/claude-$n.env"
if [ -f "$FAKE_LOG/session-$n.sh" ]; then bash "$FAKE_LOG/session-$n.sh"; fi
if [ -n "${FAKE_SLOW:-}" ]; then
  while IFS= read -r line; do printf '%s\n' "$line"; sleep "$FAKE_SLOW"; done < "$FAKE_FIXTURE"
else
  cat "$FAKE_FIXTURE"
fi
echo "some stderr noise" >&2
"#;

impl Drop for Scenario {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.runner.temp);
    }
}

struct Scenario {
    server: Server,
    runner: Runner,
    fake_log: PathBuf,
    origin: PathBuf,
    identifier: String,
    run_id: String,
}

/// HTTP through curl (the workflows need it anyway), so this test does not depend on the
/// HTTP client features of the dev-dependencies.
fn http(s: &Server, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "20",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
    ])
    .arg("-H")
    .arg(format!("Authorization: Bearer {}", s.api_key))
    .args(["-H", "Content-Type: application/json"]);
    if let Some(b) = body {
        cmd.arg("--data-binary").arg(b.to_string());
    }
    let out = cmd.arg(s.url(path)).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn post(s: &Server, path: &str, body: Value) -> (u16, Value) {
    http(s, "POST", path, Some(&body))
}

fn get(s: &Server, path: &str) -> Value {
    let (st, v) = http(s, "GET", path, None);
    assert!((200..300).contains(&st), "GET {path}: {st} {v}");
    v
}

/// A server with one issue and a queued run of `spawn_type`, a target repository with the
/// installed tools (committed, as `dispatch workflows install` leaves them), a bare `origin`, and
/// the fake commands. `sessions[i]` is the shell run inside the checkout by agent session i+1.
fn scenario(
    spawn_type: &str,
    title: &str,
    sessions: &[&str],
    repo_files: &[(&str, &str)],
) -> Scenario {
    let server = Server::builder().env("DISPATCH_WORKERS", "false").start();
    let (st, issue) = post(
        &server,
        "/api/issues",
        json!({"title": title, "description": "Users see a 500 on **checkout**."}),
    );
    assert_eq!(st, 201, "{issue}");
    let identifier = issue["identifier"]
        .as_str()
        .expect("identifier")
        .to_string();
    if spawn_type == "implement" || spawn_type == "qa" {
        for body in [
            json!({"action": "submit", "content": "1. Add the endpoint\n2. Test it"}),
            json!({"action": "approve", "approvedBy": "lead"}),
        ] {
            let (st, p) = post(&server, &format!("/api/issues/{identifier}/plan"), body);
            assert_eq!(st, 200, "{p}");
        }
    }
    let (st, sp) = post(
        &server,
        &format!("/api/issues/{identifier}/spawn"),
        json!({"type": spawn_type, "additional_context": "Started after the 2.3 deploy"}),
    );
    assert_eq!(st, 200, "{sp}");
    let run_id = sp["dispatchId"].as_str().expect("dispatchId").to_string();

    let temp = temp_dir(spawn_type);
    let (repo, origin, bin, fake_log) = (
        temp.join("repo"),
        temp.join("origin.git"),
        temp.join("bin"),
        temp.join("fake"),
    );
    for d in [
        &repo,
        &bin,
        &fake_log,
        &temp.join("home"),
        &temp.join("runner"),
    ] {
        std::fs::create_dir_all(d).expect("dir");
    }
    sh(&temp, &format!("git init -q --bare '{}'", origin.display()));
    let tools = repo.join(".github/dispatch");
    std::fs::create_dir_all(&tools).expect("tools dir");
    for f in [
        "agent-filter.py",
        "dispatch-agent.py",
        "dispatch-callback.sh",
    ] {
        std::fs::copy(scripts_dir().join(f), tools.join(f)).expect("copy tool");
    }
    std::fs::write(repo.join("README.md"), "# shop\n").expect("readme");
    for (p, text) in repo_files {
        let path = repo.join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(path, text).expect("file");
    }
    sh(
        &repo,
        &format!(
            "git init -q -b main && git add -A && git -c user.name=t -c user.email=t@example.com commit -q -m init && git remote add origin '{}' && git push -q origin main && git fetch -q origin",
            origin.display()
        ),
    );
    let sha = sh(&repo, "git rev-parse HEAD");
    write_exec(&bin.join("claude"), FAKE_CLAUDE);
    write_exec(&bin.join("npm"), FAKE_NPM);
    write_exec(&bin.join("gh"), FAKE_GH);
    for (n, s) in sessions.iter().enumerate() {
        std::fs::write(fake_log.join(format!("session-{}.sh", n + 1)), s).expect("session");
    }

    let inputs: HashMap<&str, String> = [
        ("dispatch_run_id", run_id.clone()),
        ("issue_id", identifier.clone()),
        ("issue_identifier", identifier.clone()),
        ("title", title.to_string()),
        (
            "description",
            "Users see a 500 on **checkout**.".to_string(),
        ),
        (
            "additional_context",
            "Started after the 2.3 deploy".to_string(),
        ),
        (
            "plan_content",
            "1. Add the endpoint\n2. Test it".to_string(),
        ),
        ("source", "checkout".to_string()),
        ("feature", "payment".to_string()),
        ("error_message", "TypeError: x is undefined".to_string()),
    ]
    .into();
    let mut exprs: HashMap<String, String> = inputs
        .iter()
        .map(|(k, v)| (format!("inputs.{k}"), v.clone()))
        .collect();
    exprs.insert(
        "inputs.base_branch || vars.DISPATCH_BASE_BRANCH || github.event.repository.default_branch"
            .into(),
        "main".into(),
    );
    exprs.insert(
        "vars.DISPATCH_MODEL || 'claude-opus-4-6'".into(),
        "claude-opus-4-6".into(),
    );
    exprs.insert(
        "vars.DISPATCH_MODEL || 'claude-sonnet-4-5-20250929'".into(),
        "claude-sonnet-4-5-20250929".into(),
    );
    exprs.insert("(vars.DISPATCH_ALLOW_CALLBACK_URL == 'true' && inputs.callback_url) || secrets.DISPATCH_API_URL".into(), server.base.clone());
    exprs.insert("secrets.DISPATCH_API_KEY".into(), server.api_key.clone());
    exprs.insert("secrets.ANTHROPIC_API_KEY".into(), "sk-ant-test".into());
    exprs.insert(
        "secrets.DISPATCH_GH_TOKEN || github.token".into(),
        "ghs_test".into(),
    );
    exprs.insert(
        "vars.DISPATCH_APP_URL".into(),
        "https://dispatch.example.com".into(),
    );
    let env: BTreeMap<String, String> = [
        ("GITHUB_SERVER_URL", "https://github.com".to_string()),
        ("GITHUB_REPOSITORY", "acme/shop".to_string()),
        ("GITHUB_RUN_ID", "4242".to_string()),
        ("GITHUB_SHA", sha),
        ("RUNNER_TEMP", temp.join("runner").display().to_string()),
        ("FAKE_LOG", fake_log.display().to_string()),
        (
            "FAKE_FIXTURE",
            scripts_dir()
                .join("testdata/stream-json.jsonl")
                .display()
                .to_string(),
        ),
        ("DISPATCH_STREAM_INTERVAL", "1".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let runner = Runner {
        repo,
        temp,
        bin,
        exprs,
        env,
        outputs: HashMap::new(),
        outcomes: HashMap::new(),
        failed: false,
        log: String::new(),
    };
    Scenario {
        server,
        runner,
        fake_log,
        origin,
        identifier,
        run_id,
    }
}

fn run_workflow(sc: &mut Scenario, kind: WorkflowKind) {
    let w = parse_workflow(kind.workflow_file());
    let job_env: BTreeMap<String, String> = w
        .job_env
        .iter()
        .map(|(k, v)| (k.clone(), sc.runner.eval_value(v)))
        .collect();
    sc.runner.run(&w, &job_env);
    assert!(!sc.runner.failed, "the job failed:\n{}", sc.runner.log);
}

fn claude_calls(sc: &Scenario) -> Vec<(Vec<String>, String)> {
    (1..)
        .map_while(|n| {
            let args =
                std::fs::read_to_string(sc.fake_log.join(format!("claude-{n}.args"))).ok()?;
            let env = std::fs::read_to_string(sc.fake_log.join(format!("claude-{n}.env")))
                .unwrap_or_default();
            Some((
                args.split('\0')
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect(),
                env,
            ))
        })
        .collect()
}

fn check_agent_invocation(sc: &Scenario, model: &str) {
    let calls = claude_calls(sc);
    assert!(!calls.is_empty(), "claude was not run:\n{}", sc.runner.log);
    for (args, env) in &calls {
        let budget = args
            .iter()
            .position(|a| a == "--max-budget-usd")
            .expect("--max-budget-usd");
        assert_eq!(args[budget + 1], "25");
        let m = args.iter().position(|a| a == "--model").expect("--model");
        assert_eq!(args[m + 1], model);
        assert!(args.contains(&"stream-json".to_string()));
        assert!(env.contains("ANTHROPIC_API_KEY=sk-ant-test"));
        for hidden in [
            "DISPATCH_API_KEY=",
            "DISPATCH_API_URL=",
            "GITHUB_ENV=",
            "GITHUB_OUTPUT=",
        ] {
            assert!(
                !env.lines().any(|l| l.starts_with(hidden)),
                "the agent saw {hidden}"
            );
        }
        let prompt = args.last().expect("prompt");
        assert!(prompt.contains("<issue-data>"), "{prompt}");
    }
}

fn activities(sc: &Scenario) -> Vec<Value> {
    get(
        &sc.server,
        &format!("/api/issues/{}/activity?limit=200", sc.identifier),
    )
    .as_array()
    .cloned()
    .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Whole runs

#[test]
fn prd_investigate_runs_end_to_end_and_submits_its_plan() {
    if skip_without_tools() {
        return;
    }
    let session = r#"
cat > .scratch/plan.md <<'EOF'
## Summary
Add a CSV export endpoint.
EOF
cat > .scratch/run-result.json <<'EOF'
{"outcome": "investigation_complete", "summary": "Plan written.", "changes_made": false, "files_changed": [], "pr_needed": false}
EOF
"#;
    let mut sc = scenario("investigate", "Add CSV export", &[session], &[]);
    run_workflow(&mut sc, WorkflowKind::PrdInvestigate);
    check_agent_invocation(&sc, "claude-opus-4-6");

    let run = get(
        &sc.server,
        &format!("/api/issues/{}/runs/{}", sc.identifier, sc.run_id),
    );
    assert_eq!(run["status"], "completed", "{run}\n{}", sc.runner.log);
    assert_eq!(run["outcome"], "investigation_complete");
    assert!(
        run["heartbeat_at"].is_string(),
        "the workflow heartbeats while its agent works: {run}\n{}",
        sc.runner.log
    );
    assert!(
        (run["cost_usd"].as_f64().unwrap_or_default() - 0.0598312).abs() < 1e-5,
        "{run}"
    );
    assert_eq!(run["num_turns"], 3);
    assert_eq!(run["model"], "claude-sonnet-4-6");
    assert_eq!(
        run["external_id"]
            .as_str()
            .or(run["github_run_id"].as_str()),
        Some("4242"),
        "{run}"
    );
    let transcript = run["transcript"].as_str().unwrap_or_default();
    for want in [
        "RUN CONTEXT",
        "Add CSV export",
        "[TOOL] Grep(pattern=PaymentDeclined",
        "some stderr noise",
        "[COMPLETED] Cost: $0.06, Turns: 3",
        "[DISPATCH] Run completed",
    ] {
        assert!(
            transcript.contains(want),
            "transcript lacks {want:?}:\n{transcript}\n{}",
            sc.runner.log
        );
    }
    assert_eq!(
        transcript.matches("[COMPLETED]").count(),
        1,
        "each line is posted once:\n{transcript}"
    );

    let issue = get(&sc.server, &format!("/api/issues/{}", sc.identifier));
    assert_eq!(issue["plan_status"], "awaiting_review", "{issue}");
    assert!(
        issue["plan_content"]
            .as_str()
            .unwrap_or_default()
            .contains("CSV export endpoint")
    );
    assert_eq!(issue["agent_status"], "awaiting_review");
    assert_eq!(issue["spawn_status"], "completed");

    let acts = activities(&sc);
    let report = acts
        .iter()
        .find(|a| a["type"] == "investigation_complete")
        .expect("report activity");
    assert_eq!(report["run_id"], sc.run_id.as_str(), "{report}");
    assert!(
        report["content"]
            .as_str()
            .unwrap_or_default()
            .contains("CSV export endpoint")
    );
    let full = acts
        .iter()
        .find(|a| a["type"] == "agent_full_log")
        .expect("full log");
    assert!(
        full["content"]
            .as_str()
            .unwrap_or_default()
            .contains("[COMPLETED]")
    );
}

#[test]
fn prd_implement_fixes_failing_checks_and_opens_a_pull_request() {
    if skip_without_tools() {
        return;
    }
    let first = r###"
echo "export" > export.txt
git add export.txt
git commit -q -m "feat: CSV export [$ISSUE_IDENTIFIER]"
echo "## Original Intent" > .scratch/implementation-summary.md
echo '{"outcome": "completed", "summary": "Export added.", "changes_made": true, "files_changed": ["export.txt"], "pr_needed": true}' > .scratch/run-result.json
"###;
    // The fix session leaves its change uncommitted: the workflow commits it.
    let second = "echo fixed > fixed.txt\n";
    let check = "#!/usr/bin/env bash\nif [ -f fixed.txt ]; then echo 'all good'; else echo 'lint: export.txt is bad'; exit 1; fi\n";
    let mut sc = scenario(
        "implement",
        "CSV export; \"quotes\" $(rm -rf /) `x`",
        &[first, second],
        &[(".dispatch/check.sh", check)],
    );
    run_workflow(&mut sc, WorkflowKind::PrdImplement);
    check_agent_invocation(&sc, "claude-opus-4-6");
    let calls = claude_calls(&sc);
    assert_eq!(
        calls.len(),
        2,
        "a second session fixes the checks:\n{}",
        sc.runner.log
    );
    assert!(
        calls[1]
            .0
            .last()
            .is_some_and(|p| p.contains("lint: export.txt is bad")),
        "the fix prompt carries the check output"
    );

    // The branch went to origin with both commits, and the PR targets the base branch.
    let branch = format!("feat/{}", sc.identifier);
    let log = sh(&sc.origin, &format!("git log --format=%s main..{branch}"));
    let ident = &sc.identifier;
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            // What the fix session left uncommitted, committed by the workflow.
            format!("feat: CSV export; \"quotes\" $(rm -rf /) `x` [{ident}]"),
            format!("feat: CSV export [{ident}]"),
        ],
        "{log}"
    );
    let gh_calls: Vec<String> = std::fs::read_dir(&sc.fake_log)
        .expect("fake log")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("gh-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    let create = gh_calls
        .iter()
        .find(|c| c.starts_with("pr\0create\0"))
        .unwrap_or_else(|| panic!("no gh pr create: {gh_calls:?}\n{}", sc.runner.log));
    let args: Vec<&str> = create.split('\0').collect();
    let at = |flag: &str| {
        args.iter()
            .position(|a| *a == flag)
            .map(|i| args[i + 1])
            .unwrap_or_default()
    };
    assert_eq!(at("--base"), "main");
    assert_eq!(at("--head"), branch);
    assert_eq!(
        at("--title"),
        format!(
            "feat: CSV export; \"quotes\" $(rm -rf /) `x` [{}]",
            sc.identifier
        )
    );
    assert!(
        !args.contains(&"--draft"),
        "checks pass after the fix: {args:?}"
    );

    let run = get(
        &sc.server,
        &format!("/api/issues/{}/runs/{}", sc.identifier, sc.run_id),
    );
    assert_eq!(run["status"], "completed", "{run}\n{}", sc.runner.log);
    assert_eq!(run["outcome"], "completed");
    assert_eq!(run["pr_number"], 7);
    assert_eq!(run["num_turns"], 6, "both sessions count");
    assert!(
        (run["cost_usd"].as_f64().unwrap_or_default() - 0.1196624).abs() < 1e-5,
        "{run}"
    );
    assert_eq!(run["files_changed"], json!(["export.txt"]));
    let transcript = run["transcript"].as_str().unwrap_or_default();
    assert!(
        transcript.contains("[DISPATCH] The checks failed (exit code 1)"),
        "{transcript}"
    );
    assert!(
        transcript.contains("[DISPATCH] Opened pull request https://github.com/acme/shop/pull/7"),
        "{transcript}"
    );
    let acts = activities(&sc);
    assert!(
        acts.iter()
            .any(|a| a["type"] == "implementation_complete" && a["metadata"]["pr_number"] == 7),
        "{acts:?}"
    );
}

#[test]
fn prd_implement_with_a_blocker_reports_it_and_opens_no_pull_request() {
    if skip_without_tools() {
        return;
    }
    let session = r#"
printf 'Category: missing_env\nSTRIPE_KEY is not set anywhere.\nAsk ops for a test key.\n' > .scratch/blocker.md
"#;
    let mut sc = scenario("implement", "Charge cards", &[session], &[]);
    run_workflow(&mut sc, WorkflowKind::PrdImplement);
    assert_eq!(claude_calls(&sc).len(), 1);
    assert!(
        !sc.runner.log.contains("-- Open the pull request"),
        "publish is skipped:\n{}",
        sc.runner.log
    );
    let issue = get(&sc.server, &format!("/api/issues/{}", sc.identifier));
    assert_eq!(
        issue["agent_status"], "blocked",
        "{issue}\n{}",
        sc.runner.log
    );
    assert_eq!(
        issue["blocked_reason"],
        "[missing_env] STRIPE_KEY is not set anywhere. Ask ops for a test key."
    );
    let run = get(
        &sc.server,
        &format!("/api/issues/{}/runs/{}", sc.identifier, sc.run_id),
    );
    assert_eq!(run["status"], "completed");
    assert_eq!(run["outcome"], "blocked");
    assert!(
        activities(&sc)
            .iter()
            .any(|a| a["type"] == "blocker_reported")
    );
}

#[test]
fn triage_without_a_result_asks_for_a_plan_and_error_fix_without_one_fails() {
    if skip_without_tools() {
        return;
    }
    let mut sc = scenario("triage", "Slow search", &[], &[]);
    run_workflow(&mut sc, WorkflowKind::AutoTriage);
    let run = get(
        &sc.server,
        &format!("/api/issues/{}/runs/{}", sc.identifier, sc.run_id),
    );
    assert_eq!(
        run["outcome"], "investigation_complete",
        "{run}\n{}",
        sc.runner.log
    );
    let issue = get(&sc.server, &format!("/api/issues/{}", sc.identifier));
    assert_eq!(issue["plan_status"], "posted", "{issue}");
    assert_eq!(
        issue["status"]["name"]
            .as_str()
            .or(issue["status"].as_str()),
        Some("Needs Review"),
        "{issue}"
    );

    let mut sc = scenario("error_fix", "TypeError in checkout", &[], &[]);
    run_workflow(&mut sc, WorkflowKind::ErrorFix);
    let run = get(
        &sc.server,
        &format!("/api/issues/{}/runs/{}", sc.identifier, sc.run_id),
    );
    assert_eq!(run["status"], "failed", "{run}\n{}", sc.runner.log);
    assert_eq!(run["outcome"], "failed");
    assert!(
        run["outcome_summary"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Agent exited without declaring an outcome"),
        "{run}"
    );
    let acts = activities(&sc);
    let failed = acts
        .iter()
        .find(|a| a["type"] == "investigation_failed")
        .expect("failure activity");
    assert!(
        failed["metadata"]["error_tail"]
            .as_str()
            .unwrap_or_default()
            .contains("[COMPLETED]"),
        "{failed}"
    );
}

#[test]
fn qa_tests_the_implementation_branch_and_streams_while_the_agent_runs() {
    if skip_without_tools() {
        return;
    }
    let session = r#"
git rev-parse --abbrev-ref HEAD > "$FAKE_LOG/branch"
printf '## Summary\nPASS\n' > .scratch/qa-report.md
echo '{"outcome": "completed", "summary": "All flows pass.", "changes_made": false, "files_changed": [], "pr_needed": false}' > .scratch/run-result.json
"#;
    let check = "#!/usr/bin/env bash\necho '12 tests passed'\n";
    let mut sc = scenario(
        "qa",
        "Test CSV export",
        &[session],
        &[(".dispatch/check.sh", check)],
    );
    // The implement run's branch exists on origin: QA tests it.
    let branch = format!("feat/{}", sc.identifier);
    sh(
        &sc.runner.repo,
        &format!(
            "git checkout -q -b '{branch}' && echo impl > impl.txt && git add impl.txt \
             && git -c user.name=t -c user.email=t@example.com commit -q -m impl \
             && git push -q origin '{branch}' && git checkout -q main && git branch -q -D '{branch}' \
             && git fetch -q origin"
        ),
    );
    sc.runner.env.insert("FAKE_SLOW".into(), "0.4".into());
    run_workflow(&mut sc, WorkflowKind::Qa);
    check_agent_invocation(&sc, "claude-sonnet-4-5-20250929");
    let tested = std::fs::read_to_string(sc.fake_log.join("branch")).unwrap_or_default();
    assert_eq!(tested.trim(), branch, "{}", sc.runner.log);
    let calls = claude_calls(&sc);
    let prompt = calls[0].0.last().cloned().unwrap_or_default();
    assert!(
        prompt.contains("## The project's checks (.dispatch/check.sh) passed"),
        "{prompt}"
    );
    assert!(prompt.contains("12 tests passed"), "{prompt}");

    // Output arrived in several numbered chunks while the agent ran, not in one at the end.
    let t = get(
        &sc.server,
        &format!(
            "/api/issues/{}/terminal?run_id={}",
            sc.identifier, sc.run_id
        ),
    );
    let seqs: Vec<u64> = t["chunks"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["seq"].as_u64()).collect())
        .unwrap_or_default();
    assert!(seqs.len() >= 4, "{t}\n{}", sc.runner.log);
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{t}");

    let run = get(
        &sc.server,
        &format!("/api/issues/{}/runs/{}", sc.identifier, sc.run_id),
    );
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["outcome"], "completed");
    assert_eq!(run["report_content"], "## Summary\nPASS");
    let acts = activities(&sc);
    assert!(
        acts.iter()
            .any(|a| a["type"] == "qa_complete" && a["content"] == "## Summary\nPASS"),
        "{acts:?}"
    );
}
