//! Claude Code `stream-json` output → the readable lines a run's terminal shows (spec §7.3 step 7).
//!
//! Claude Code run as `claude -p … --output-format stream-json --verbose` prints one JSON object a
//! line. [`StreamFilter`] turns each line into zero or more display lines and remembers the final
//! `result` event (cost, turns, model) as an [`AgentSummary`]. It is pure (no I/O, no clock), so the
//! local runner and a `dispatch agent-filter` command render the same bytes.
//!
//! Output format, one display line per element of [`StreamFilter::push_line`]'s answer, each ending
//! with `\n`:
//!
//! | input | output |
//! |---|---|
//! | `system`/`init` | `[INIT] model=<model> tools=<n>` (plus ` mcp_failed=<names>` when an MCP server did not connect) |
//! | `system`/`api_retry` | `[RETRY] API error <status> (<error>); retry <attempt>/<max> in <ms> ms` |
//! | other `system` subtypes, `rate_limit_event`, `stream_event`, objects without `type`, unknown types | nothing |
//! | assistant `text` block | the text verbatim, split at newlines (blank text is skipped) |
//! | assistant `tool_use` / `server_tool_use` block | `[TOOL] Name(k=v, k=v, k=v)`: the first 3 arguments in the order of the JSON, each value cut to 80 characters (strings bare, other values as compact JSON) |
//! | assistant `thinking` blocks | nothing |
//! | user `tool_result` block | `[RESULT] <first 200 characters>` followed by `...` when cut; `[ERROR] …` when `is_error` is true. Content is a string or text blocks (joined with a newline; images show as `[image]`) |
//! | `result`, success | `[COMPLETED] Cost: $0.42, Turns: 7` (`Turns` left out when the event has no `num_turns`) |
//! | `result`, error (`error_max_turns`, `error_max_budget_usd`, `error_during_execution`, any `is_error: true`) | `[FAILED] <reason>. Cost: $0.42, Turns: 7` |
//! | `result` with `permission_denials` | also `[DENIED] <n> tool call(s) denied permission: <first 3 tool names>` |
//! | a line that is not JSON, or JSON that is not an object | the line as it is |
//! | a blank line | nothing |
//!
//! Inside `[TOOL]` and `[RESULT]` lines, line breaks are shown as the two characters `\n` so that each
//! stays one line. Truncation counts characters, never splits a multi-byte character, and nothing here
//! panics on any input.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Characters kept of each tool argument value.
pub const TOOL_ARG_CHARS: usize = 80;
/// Tool arguments shown per call.
pub const TOOL_ARGS_SHOWN: usize = 3;
/// Characters kept of a tool result.
pub const TOOL_RESULT_CHARS: usize = 200;

/// What the final `result` event said about the agent's session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentSummary {
    /// `total_cost_usd` (also present when the budget ran out).
    pub cost_usd: Option<f64>,
    pub num_turns: Option<u32>,
    /// The event's `model`; else the `modelUsage` entry that cost most; else the model the
    /// assistant messages (or the `init` line) named.
    pub model: Option<String>,
    pub is_error: bool,
    /// `success`, `error_max_turns`, `error_max_budget_usd`, `error_during_execution`, ...
    pub subtype: Option<String>,
    /// The `result` text (the agent's last message, or the error).
    pub result_text: Option<String>,
    /// How many tool calls were refused permission.
    pub permission_denials: usize,
    /// Input + output + cache tokens of `usage`, when the event has it.
    pub tokens_used: Option<u64>,
    /// `terminal_reason`, when present.
    pub terminal_reason: Option<String>,
}

impl AgentSummary {
    /// The session ended in an error (a limit, an API error, an execution error).
    pub fn failed(&self) -> bool {
        self.is_error
            || self
                .subtype
                .as_deref()
                .is_some_and(|s| s.starts_with("error"))
    }

    /// A short human reason for a failed session, e.g. `Stopped: budget limit reached
    /// (error_max_budget_usd)`; `None` when the session succeeded.
    pub fn failure_reason(&self) -> Option<String> {
        if !self.failed() {
            return None;
        }
        let reason = match self.subtype.as_deref() {
            Some("error_max_turns") => {
                "Stopped: maximum number of turns reached (error_max_turns)".to_string()
            }
            Some("error_max_budget_usd") => {
                "Stopped: budget limit reached (error_max_budget_usd)".to_string()
            }
            Some("error_during_execution") => {
                "Stopped: error during execution (error_during_execution)".to_string()
            }
            Some(s) if s.starts_with("error") => format!("Stopped: {}", one_line(s, 80).0),
            _ => match self.result_text.as_deref().map(str::trim) {
                Some(t) if !t.is_empty() => {
                    let (text, cut) = one_line(t, TOOL_RESULT_CHARS);
                    if cut { format!("{text}...") } else { text }
                }
                _ => "Agent reported an error".to_string(),
            },
        };
        Some(reason)
    }
}

/// Turns stream-json lines into display lines, remembering the session summary.
#[derive(Debug, Clone, Default)]
pub struct StreamFilter {
    summary: Option<AgentSummary>,
    model: Option<String>,
}

impl StreamFilter {
    pub fn new() -> Self {
        Self::default()
    }

    /// One line of the agent's stdout (with or without its line ending) → display lines, each
    /// ending with `\n`. Never panics.
    pub fn push_line(&mut self, line: &str) -> Vec<String> {
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            return Vec::new();
        }
        let value: J = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => return vec![format!("{line}\n")],
        };
        if !matches!(value, J::Obj(_)) {
            return vec![format!("{line}\n")];
        }
        let mut out = Vec::new();
        match value.get("type").and_then(J::as_str) {
            Some("system") => self.system(&value, &mut out),
            Some("assistant") => self.assistant(&value, &mut out),
            Some("user") => user(&value, &mut out),
            Some("result") => self.result(&value, &mut out),
            _ => {}
        }
        out
    }

    /// The final `result` event's numbers; `None` until one was seen (the latest one wins).
    pub fn summary(&self) -> Option<AgentSummary> {
        self.summary.clone()
    }

    /// The model the session named most recently (assistant messages, else the `init` line).
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    fn system(&mut self, v: &J, out: &mut Vec<String>) {
        match v.get("subtype").and_then(J::as_str) {
            Some("init") => {
                let model = v.get("model").and_then(J::as_str);
                if let Some(m) = model
                    && self.model.is_none()
                {
                    self.model = Some(m.to_string());
                }
                let mut s = String::from("[INIT]");
                if let Some(m) = model {
                    s.push_str(" model=");
                    s.push_str(&one_line(m, TOOL_ARG_CHARS).0);
                }
                let tools = v.get("tools").and_then(J::as_array).map_or(0, <[J]>::len);
                s.push_str(&format!(" tools={tools}"));
                let failed: Vec<String> = v
                    .get("mcp_servers")
                    .and_then(J::as_array)
                    .unwrap_or(&[])
                    .iter()
                    .filter(|m| m.get("status").and_then(J::as_str) != Some("connected"))
                    .filter_map(|m| m.get("name").and_then(J::as_str))
                    .map(|n| one_line(n, 40).0)
                    .collect();
                if !failed.is_empty() {
                    s.push_str(" mcp_failed=");
                    s.push_str(&failed.join(","));
                }
                s.push('\n');
                out.push(s);
            }
            Some("api_retry") => {
                let mut s = String::from("[RETRY] API error");
                if let Some(st) = v.get("error_status").and_then(J::as_u64) {
                    s.push_str(&format!(" {st}"));
                }
                if let Some(e) = v.get("error").and_then(J::as_str) {
                    s.push_str(&format!(" ({})", one_line(e, TOOL_ARG_CHARS).0));
                }
                if let Some(a) = v.get("attempt").and_then(J::as_u64) {
                    s.push_str(&format!("; retry {a}"));
                    if let Some(m) = v.get("max_retries").and_then(J::as_u64) {
                        s.push_str(&format!("/{m}"));
                    }
                }
                if let Some(d) = v.get("retry_delay_ms").and_then(J::as_f64) {
                    s.push_str(&format!(" in {} ms", d.max(0.0).round()));
                }
                s.push('\n');
                out.push(s);
            }
            _ => {}
        }
    }

    fn assistant(&mut self, v: &J, out: &mut Vec<String>) {
        let Some(msg) = v.get("message") else { return };
        if let Some(m) = msg.get("model").and_then(J::as_str)
            && m != "<synthetic>"
        {
            self.model = Some(m.to_string());
        }
        match msg.get("content") {
            Some(J::Str(text)) => push_text(text, out),
            Some(J::Arr(blocks)) => {
                for b in blocks {
                    match b.get("type").and_then(J::as_str) {
                        Some("text") => {
                            if let Some(t) = b.get("text").and_then(J::as_str) {
                                push_text(t, out);
                            }
                        }
                        Some("tool_use") | Some("server_tool_use") => out.push(tool_line(b)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    fn result(&mut self, v: &J, out: &mut Vec<String>) {
        let usage_tokens = v.get("usage").and_then(|u| {
            let J::Obj(_) = u else { return None };
            let total = [
                "input_tokens",
                "output_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
            ]
            .iter()
            .filter_map(|k| u.get(k).and_then(J::as_u64))
            .fold(0u64, u64::saturating_add);
            Some(total)
        });
        let denials = v
            .get("permission_denials")
            .and_then(J::as_array)
            .unwrap_or(&[]);
        let summary = AgentSummary {
            cost_usd: v
                .get("total_cost_usd")
                .and_then(J::as_f64)
                .filter(|c| c.is_finite() && *c >= 0.0),
            num_turns: v
                .get("num_turns")
                .and_then(J::as_u64)
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            model: v
                .get("model")
                .and_then(J::as_str)
                .map(str::to_string)
                .or_else(|| costliest_model(v.get("modelUsage")))
                .or_else(|| self.model.clone()),
            is_error: v.get("is_error").and_then(J::as_bool).unwrap_or(false),
            subtype: v.get("subtype").and_then(J::as_str).map(str::to_string),
            result_text: v.get("result").and_then(J::as_str).map(str::to_string),
            permission_denials: denials.len(),
            tokens_used: usage_tokens,
            terminal_reason: v
                .get("terminal_reason")
                .and_then(J::as_str)
                .map(str::to_string),
        };
        let mut numbers = match summary.cost_usd {
            Some(c) => format!("Cost: ${c:.2}"),
            None => "Cost: n/a".to_string(),
        };
        if let Some(t) = summary.num_turns {
            numbers.push_str(&format!(", Turns: {t}"));
        }
        match summary.failure_reason() {
            None => out.push(format!("[COMPLETED] {numbers}\n")),
            Some(reason) => out.push(format!("[FAILED] {reason}. {numbers}\n")),
        }
        if !denials.is_empty() {
            let names: Vec<String> = denials
                .iter()
                .filter_map(|d| d.get("tool_name").and_then(J::as_str))
                .take(TOOL_ARGS_SHOWN)
                .map(|n| one_line(n, 40).0)
                .collect();
            let mut s = format!("[DENIED] {} tool call(s) denied permission", denials.len());
            if !names.is_empty() {
                s.push_str(": ");
                s.push_str(&names.join(", "));
            }
            s.push('\n');
            out.push(s);
        }
        self.summary = Some(summary);
    }
}

/// Renders a whole stream at once (what `dispatch agent-filter` prints for a finished log).
pub fn render(input: &str) -> (String, Option<AgentSummary>) {
    let mut f = StreamFilter::new();
    let mut out = String::new();
    for line in input.lines() {
        for l in f.push_line(line) {
            out.push_str(&l);
        }
    }
    (out, f.summary())
}

fn user(v: &J, out: &mut Vec<String>) {
    let Some(J::Arr(blocks)) = v.get("message").and_then(|m| m.get("content")) else {
        return;
    };
    for b in blocks {
        if b.get("type").and_then(J::as_str) != Some("tool_result") {
            continue;
        }
        let text = match b.get("content") {
            Some(J::Str(s)) => s.clone(),
            Some(J::Arr(parts)) => parts
                .iter()
                .filter_map(|p| match p.get("type").and_then(J::as_str) {
                    Some("text") => p.get("text").and_then(J::as_str).map(str::to_string),
                    Some("image") => Some("[image]".to_string()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Some(J::Null) | None => String::new(),
            Some(other) => other.to_json(),
        };
        let tag = if b.get("is_error").and_then(J::as_bool).unwrap_or(false) {
            "[ERROR]"
        } else {
            "[RESULT]"
        };
        let text = text.trim();
        if text.is_empty() {
            out.push(format!("{tag} (no output)\n"));
            continue;
        }
        let (shown, cut) = one_line(text, TOOL_RESULT_CHARS);
        out.push(format!("{tag} {shown}{}\n", if cut { "..." } else { "" }));
    }
}

fn push_text(text: &str, out: &mut Vec<String>) {
    if text.trim().is_empty() {
        return;
    }
    for l in text.lines() {
        out.push(format!("{l}\n"));
    }
}

fn tool_line(block: &J) -> String {
    let name = block
        .get("name")
        .and_then(J::as_str)
        .map_or_else(|| "?".to_string(), |n| one_line(n, TOOL_ARG_CHARS).0);
    let args = match block.get("input") {
        Some(J::Obj(entries)) => entries
            .iter()
            .take(TOOL_ARGS_SHOWN)
            .map(|(k, v)| {
                let raw = match v {
                    J::Str(s) => s.clone(),
                    other => other.to_json(),
                };
                format!("{}={}", one_line(k, 40).0, one_line(&raw, TOOL_ARG_CHARS).0)
            })
            .collect::<Vec<_>>()
            .join(", "),
        Some(J::Null) | None => String::new(),
        Some(J::Str(s)) => one_line(s, TOOL_ARG_CHARS).0,
        Some(other) => one_line(&other.to_json(), TOOL_ARG_CHARS).0,
    };
    format!("[TOOL] {name}({args})\n")
}

fn costliest_model(usage: Option<&J>) -> Option<String> {
    let Some(J::Obj(entries)) = usage else {
        return None;
    };
    let mut best: Option<(&str, f64)> = None;
    for (name, u) in entries {
        let cost = u.get("costUSD").and_then(J::as_f64).unwrap_or(0.0);
        if best.is_none_or(|(_, c)| cost > c) {
            best = Some((name, cost));
        }
    }
    best.map(|(n, _)| n.to_string())
}

/// The first `max` characters of `s` on one line (`\n` shown as the two characters `\n`, `\r`
/// dropped), and whether anything was cut.
fn one_line(s: &str, max: usize) -> (String, bool) {
    let mut out = String::with_capacity(s.len().min(max * 4));
    let mut chars = s.chars();
    for c in chars.by_ref().take(max) {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    (out, chars.next().is_some())
}

/// A JSON value that keeps the key order of objects (serde_json's `Map` sorts keys unless its
/// `preserve_order` feature is on, and tool arguments must show in the agent's order).
#[derive(Debug, Clone, PartialEq)]
enum J {
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    /// The value of `key` (the last one if the key repeats, as JavaScript and Python read it).
    fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            J::Str(s) => Some(s),
            _ => None,
        }
    }
    fn as_bool(&self) -> Option<bool> {
        match self {
            J::Bool(b) => Some(*b),
            _ => None,
        }
    }
    fn as_f64(&self) -> Option<f64> {
        match self {
            J::Num(n) => n.as_f64(),
            _ => None,
        }
    }
    fn as_u64(&self) -> Option<u64> {
        match self {
            J::Num(n) => n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0)
                    .map(|f| f.min(u64::MAX as f64) as u64)
            }),
            _ => None,
        }
    }
    fn as_array(&self) -> Option<&[J]> {
        match self {
            J::Arr(a) => Some(a),
            _ => None,
        }
    }
    fn to_json(&self) -> String {
        let mut s = String::new();
        self.write_json(&mut s);
        s
    }
    fn write_json(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => out.push_str(&n.to_string()),
            J::Str(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
            J::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write_json(out);
                }
                out.push(']');
            }
            J::Obj(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).unwrap_or_default());
                    out.push(':');
                    v.write_json(out);
                }
                out.push('}');
            }
        }
    }
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JVisitor)
    }
}

struct JVisitor;

impl<'de> Visitor<'de> for JVisitor {
    type Value = J;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<J, E> {
        Ok(J::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<J, E> {
        Ok(J::Num(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<J, E> {
        Ok(J::Num(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<J, E> {
        Ok(serde_json::Number::from_f64(v).map_or(J::Null, J::Num))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<J, E> {
        Ok(J::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<J, E> {
        Ok(J::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<J, E> {
        Ok(J::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<J, E> {
        Ok(J::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<J, D::Error> {
        J::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<J, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(J::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<J, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, J>()? {
            entries.push((k, v));
        }
        Ok(J::Obj(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_cuts_on_characters_not_bytes() {
        let (s, cut) = one_line("ééééé", 3);
        assert_eq!(s, "ééé");
        assert!(cut);
        let (s, cut) = one_line("a\r\nb", 10);
        assert_eq!(s, "a\\nb");
        assert!(!cut);
    }

    #[test]
    fn ordered_json_keeps_key_order_and_reads_the_last_duplicate() {
        let v: J = serde_json::from_str(r#"{"z":1,"a":{"y":2,"b":3},"z":4}"#).unwrap_or(J::Null);
        assert_eq!(v.get("z").and_then(J::as_u64), Some(4));
        assert_eq!(
            v.get("a").map(J::to_json).as_deref(),
            Some(r#"{"y":2,"b":3}"#)
        );
    }
}
