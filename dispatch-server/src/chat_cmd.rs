//! `dispatch chat`: the orchestrator in a terminal, against a running server.
//!
//! Answers stream as they arrive; tool calls show as one line each; a proposal is shown with its
//! gate decision and cost and the person is asked to confirm it. The session id is remembered
//! per server (`~/.local/state/dispatch/chat.json`), so the conversation goes on after a
//! restart (`--new` starts another). Ctrl-C cancels the turn being answered; Ctrl-C at the
//! prompt (or Ctrl-D, `/quit`) quits. `NO_COLOR`, or output that is not a terminal, gives plain
//! text.

use dispatch_core::{Error, ErrorKind, Result};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

pub struct ChatOptions {
    pub base: String,
    pub api_key: String,
    pub new_session: bool,
    /// Where remembered session ids are kept.
    pub state_file: Option<PathBuf>,
    pub color: bool,
}

impl ChatOptions {
    /// Colour unless `NO_COLOR` is set (to anything) or stdout is not a terminal.
    pub fn color_from(get: &dyn Fn(&str) -> Option<String>) -> bool {
        get("NO_COLOR").is_none() && std::io::stdout().is_terminal()
    }

    /// `$XDG_STATE_HOME/dispatch/chat.json`, else `~/.local/state/dispatch/chat.json`.
    pub fn state_file_from(get: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
        get("XDG_STATE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                get("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".local/state"))
            })
            .map(|d| d.join("dispatch/chat.json"))
    }
}

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
    fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
}

fn remembered(file: &Option<PathBuf>) -> BTreeMap<String, String> {
    file.as_ref()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn remember(file: &Option<PathBuf>, base: &str, session: &str) {
    let Some(f) = file else { return };
    let mut all = remembered(file);
    all.insert(base.to_owned(), session.to_owned());
    if let Some(dir) = f.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(t) = serde_json::to_string_pretty(&all) {
        let _ = std::fs::write(f, t);
    }
}

/// Lines typed by the person, read on a thread (stdin blocks); `None` at end of input.
fn stdin_lines() -> mpsc::UnboundedReceiver<Option<String>> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        loop {
            let mut line = String::new();
            match stdin.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(_) => {
                    if tx
                        .send(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    rx
}

#[derive(Default)]
struct TurnUsage {
    model: String,
    input: u64,
    output: u64,
    cached: u64,
}

struct Chat {
    usage: Option<TurnUsage>,
    opts: ChatOptions,
    http: reqwest::Client,
    style: Style,
    session: Option<String>,
    lines: mpsc::UnboundedReceiver<Option<String>>,
}

enum Input {
    Line(String),
    Quit,
}

fn out(s: &str) {
    let mut o = std::io::stdout();
    let _ = o.write_all(s.as_bytes());
    let _ = o.flush();
}

impl Chat {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.opts.base)
    }

    async fn prompt(&mut self, prompt: &str) -> Input {
        out(prompt);
        tokio::select! {
            l = self.lines.recv() => match l.flatten() {
                Some(l) => Input::Line(l),
                None => Input::Quit,
            },
            _ = tokio::signal::ctrl_c() => Input::Quit,
        }
    }

    fn unreachable(&self, e: reqwest::Error) -> Error {
        Error::unavailable(format!("cannot reach {}", self.opts.base)).with_source(e)
    }

    fn refused(status: reqwest::StatusCode, body: &Value) -> Error {
        let msg = body["error"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the server answered {status}"));
        match status.as_u16() {
            401 => Error::new(
                ErrorKind::Unauthorized,
                "the server refused the API key (DISPATCH_API_KEY, or the secrets file beside the database)",
            ),
            404 => Error::not_found(msg),
            409 => Error::conflict(msg),
            _ => Error::unavailable(msg),
        }
    }

    /// Resumes the remembered session if the server still has it.
    async fn resume(&mut self) -> Result<()> {
        let Some(id) = remembered(&self.opts.state_file)
            .get(&self.opts.base)
            .cloned()
        else {
            return Ok(());
        };
        let r = self
            .http
            .get(self.url(&format!("/api/orchestrator?sessionId={id}")))
            .bearer_auth(&self.opts.api_key)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status.as_u16() == 404 {
            return Ok(());
        }
        if !status.is_success() {
            return Err(Self::refused(status, &body));
        }
        let n = body["messages"].as_array().map_or(0, Vec::len);
        out(&self.style.dim(&format!(
            "resumed session {} — {} (messages: {n}; --new starts another)\n",
            &id[..8.min(id.len())],
            body["title"].as_str().unwrap_or("")
        )));
        // The last exchange, so the person sees where they were.
        if let Some(msgs) = body["messages"].as_array() {
            for m in msgs
                .iter()
                .rev()
                .take(2)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                let who = if m["role"] == "user" {
                    "you"
                } else {
                    "dispatch"
                };
                let text: String = m["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|b| b["text"].as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                if !text.is_empty() {
                    out(&self.style.dim(&format!("{who}: {}\n", cut(&text, 300))));
                }
            }
        }
        self.session = Some(id);
        Ok(())
    }

    /// One turn; the pending proposals it made. Ctrl-C at any point of it cancels it: the
    /// connection closes and the server cancels the turn.
    async fn turn(&mut self, message: &str) -> Result<Vec<Value>> {
        let cancelled = self.style.yellow("[cancelled]");
        tokio::select! {
            r = self.turn_inner(message) => r,
            _ = tokio::signal::ctrl_c() => {
                out(&format!("\n{cancelled}\n"));
                Ok(Vec::new())
            }
        }
    }

    async fn turn_inner(&mut self, message: &str) -> Result<Vec<Value>> {
        let mut body = json!({ "message": message });
        if let Some(id) = &self.session {
            body["sessionId"] = json!(id);
        }
        let mut resp = self
            .http
            .post(self.url("/api/orchestrator"))
            .bearer_auth(&self.opts.api_key)
            .json(&body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            return Err(Self::refused(status, &body));
        }
        let mut buf = String::new();
        let mut proposals = Vec::new();
        let mut at_line_start = true;
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    return Err(Error::unavailable("the answer was cut off").with_source(e));
                }
            };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                for data in event.lines().filter_map(|l| l.strip_prefix("data: ")) {
                    let Ok(e) = serde_json::from_str::<Value>(data) else {
                        continue;
                    };
                    self.show(&e, &mut at_line_start, &mut proposals);
                }
            }
        }
        if !at_line_start {
            out("\n");
        }
        if let Some(u) = self.usage.take() {
            out(&self.style.dim(&format!(
                "  [{} · in {}{} · out {} tokens]\n",
                u.model,
                u.input,
                if u.cached > 0 {
                    format!(" (+{} cache)", u.cached)
                } else {
                    String::new()
                },
                u.output
            )));
        }
        Ok(proposals)
    }

    fn show(&mut self, e: &Value, at_line_start: &mut bool, proposals: &mut Vec<Value>) {
        let data = &e["data"];
        let newline = |at: &mut bool| {
            if !*at {
                out("\n");
                *at = true;
            }
        };
        match e["type"].as_str().unwrap_or("") {
            "session_id" => {
                if let Some(id) = data.as_str() {
                    if self.session.as_deref() != Some(id) {
                        remember(&self.opts.state_file, &self.opts.base, id);
                    }
                    self.session = Some(id.to_owned());
                }
            }
            "text_delta" => {
                if let Some(t) = data.as_str() {
                    out(t);
                    *at_line_start = t.ends_with('\n');
                }
            }
            "tool_start" => {
                newline(at_line_start);
                out(&self.style.dim(&format!(
                    "  ⚙ {}…\n",
                    data["name"].as_str().unwrap_or("tool")
                )));
            }
            "tool_result" => {
                let name = data["name"].as_str().unwrap_or("tool");
                if data["is_error"] == true {
                    let msg = serde_json::from_str::<Value>(data["result"].as_str().unwrap_or(""))
                        .ok()
                        .and_then(|v| v["error"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    out(&self.style.red(&format!("  ✗ {name}: {}\n", cut(&msg, 200))));
                } else {
                    out(&self.style.dim(&format!("  ✓ {name}\n")));
                }
            }
            "proposal" => {
                if data["status"] == "pending" {
                    proposals.push(data.clone());
                } else {
                    newline(at_line_start);
                    self.show_decided(data);
                }
            }
            "usage" => {
                // Summed over the turn's model calls; printed once at its end.
                let u = self.usage.get_or_insert_with(TurnUsage::default);
                u.model = data["model"].as_str().unwrap_or("").to_owned();
                u.input += data["input_tokens"].as_u64().unwrap_or(0);
                u.output += data["output_tokens"].as_u64().unwrap_or(0);
                u.cached += data["cache_read_input_tokens"].as_u64().unwrap_or(0)
                    + data["cache_creation_input_tokens"].as_u64().unwrap_or(0);
            }
            "error" => {
                newline(at_line_start);
                out(&self.style.red(&format!(
                    "error: {}\n",
                    data["message"].as_str().unwrap_or("")
                )));
            }
            _ => {}
        }
    }

    fn show_decided(&self, p: &Value) {
        let msg = p["outcome"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("proposal {}", p["status"].as_str().unwrap_or("")));
        let ok = p["outcome"]["run_id"].is_string();
        let line = format!("  → {msg}\n");
        out(&if ok {
            self.style.green(&line)
        } else {
            self.style.yellow(&line)
        });
    }

    fn describe(&self, p: &Value) -> String {
        let kind = match p["kind"].as_str().unwrap_or("") {
            "prd_investigate" => "investigation",
            "prd_implement" => "implementation",
            "qa" => "QA pass",
            "deep_research" => "deep research",
            "auto_triage" => "triage",
            "error_fix" => "error fix",
            other => other,
        };
        let target = &p["target"];
        let what = match target["type"].as_str() {
            Some("issue") => format!(
                "{} “{}”",
                target["identifier"].as_str().unwrap_or(""),
                target["title"].as_str().unwrap_or("")
            ),
            _ => format!(
                "a new issue “{}” ({})",
                target["title"].as_str().unwrap_or(""),
                target["priority"].as_str().unwrap_or("P3")
            ),
        };
        let gate = &p["gate"];
        let gate = match gate["decision"].as_str() {
            Some("allow") => self.style.green("gates: allowed now"),
            Some(d) => self.style.yellow(&format!(
                "gates: {d} ({})",
                gate["reason"]["code"].as_str().unwrap_or("")
            )),
            None => String::new(),
        };
        let cost = p["estimated_cost_usd"]
            .as_f64()
            .map(|c| format!(" · est. ${c:.2}"))
            .unwrap_or_default();
        format!(
            "{} {kind} of {what}\n  {gate}{cost}",
            self.style.bold("Proposal:")
        )
    }

    async fn decide(&mut self, p: &Value, confirm: bool) -> Result<()> {
        let id = p["id"].as_str().unwrap_or_default();
        let action = if confirm { "confirm" } else { "cancel" };
        let r = self
            .http
            .post(self.url(&format!("/api/orchestrator/proposals/{id}/{action}")))
            .bearer_auth(&self.opts.api_key)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            out(&self.style.red(&format!(
                "  {}\n",
                body["error"].as_str().unwrap_or("refused")
            )));
            return Ok(());
        }
        self.show_decided(&body);
        Ok(())
    }

    async fn run(&mut self) -> Result<()> {
        if !self.opts.new_session {
            self.resume().await?;
        }
        out(&self.style.dim(
            "Type what you want done; /help lists commands. Ctrl-C cancels an answer; Ctrl-C at the prompt quits.\n",
        ));
        loop {
            let line = match self.prompt(&self.style.bold("› ")).await {
                Input::Quit => {
                    out("\n");
                    return Ok(());
                }
                Input::Line(l) => l,
            };
            let line = line.trim().to_owned();
            if line.is_empty() {
                continue;
            }
            if matches!(line.as_str(), "/quit" | "/exit") {
                return Ok(());
            }
            let proposals = match self.turn(&line).await {
                Ok(p) => p,
                Err(e)
                    if matches!(e.kind, ErrorKind::Conflict | ErrorKind::InvalidInput { .. }) =>
                {
                    out(&self.style.red(&format!("{}\n", e.message)));
                    continue;
                }
                Err(e) if e.kind == ErrorKind::NotFound => {
                    out(&self
                        .style
                        .yellow("the session is gone; starting a new one\n"));
                    self.session = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            for p in proposals {
                out(&format!("{}\n", self.describe(&p)));
                let answer = self.prompt("  confirm? [y/N] ").await;
                match answer {
                    Input::Quit => {
                        out("\n");
                        return Ok(());
                    }
                    Input::Line(a) => {
                        let yes = matches!(a.trim().to_lowercase().as_str(), "y" | "yes");
                        self.decide(&p, yes).await?;
                    }
                }
            }
        }
    }
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n).collect::<String>() + "…"
    }
}

/// Runs the chat until the person quits.
pub async fn run(opts: ChatOptions) -> Result<()> {
    dispatch_adapters::ensure_crypto_provider();
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| Error::internal("HTTP client").with_source(e))?;
    let style = Style { color: opts.color };
    let mut chat = Chat {
        usage: None,
        opts,
        http,
        style,
        session: None,
        lines: stdin_lines(),
    };
    chat.run().await
}
