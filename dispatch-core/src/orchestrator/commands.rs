//! Slash commands: answered at once, without a model round, where they only read; a command
//! that dispatches (`/triage ID`) is the person's own confirmation and goes through the gates.

use crate::ports::ToolSpec;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Help,
    /// A command that does not exist (its name).
    Unknown(String),
    /// A command used wrongly: how to use it.
    Usage(String),
    /// `/confirm [proposal id prefix]`: every pending proposal of the session, or that one.
    Confirm(Option<String>),
    /// `/cancel [proposal id prefix]`.
    Cancel(Option<String>),
    /// `/dedup execute [status …]`: cancel duplicates (the person's decision).
    DedupExecute(Vec<String>),
    /// A tool call; `confirm` makes a proposal it returns confirmed at once.
    Tool {
        name: &'static str,
        input: Value,
        confirm: bool,
    },
}

fn tool(name: &'static str, input: Value) -> Command {
    Command::Tool {
        name,
        input,
        confirm: false,
    }
}

/// The command a message is, if it starts with `/`.
pub fn parse(message: &str) -> Option<Command> {
    let m = message.trim();
    let rest = m.strip_prefix('/')?;
    let (name, arg) = match rest.split_once(char::is_whitespace) {
        Some((n, a)) => (n, a.trim()),
        None => (rest, ""),
    };
    let arg_opt = (!arg.is_empty()).then(|| arg.to_owned());
    Some(match name.to_lowercase().as_str() {
        "help" | "?" => Command::Help,
        "status" | "fleet" => tool("get_fleet_status", json!({})),
        "backlog" => tool("list_missions", json!({ "status": "backlog" })),
        "triage" => match arg_opt {
            None => tool("list_missions", json!({ "status": "investigating" })),
            Some(id) => Command::Tool {
                name: "dispatch_triage",
                input: json!({ "mission_identifier": id }),
                confirm: true,
            },
        },
        "board" => match arg_opt {
            None => tool("list_missions", json!({})),
            Some(st) => tool("list_missions", json!({ "status": st })),
        },
        "mission" | "issue" => match arg_opt {
            None => Command::Usage("/mission ID — e.g. /mission ACME-12".into()),
            Some(id) => tool("get_mission", json!({ "mission_identifier": id })),
        },
        "search" => match arg_opt {
            None => Command::Usage("/search WORDS — e.g. /search checkout timeout".into()),
            Some(q) => tool("search_missions", json!({ "query": q, "limit": 10 })),
        },
        "errors" => match arg_opt {
            None => tool("loki_errors", json!({})),
            Some(src) => tool("loki_errors", json!({ "source": src })),
        },
        "stats" => tool("loki_stats", json!({ "since": "24h" })),
        "dedup" => {
            let mut words: Vec<String> = arg.split_whitespace().map(str::to_owned).collect();
            if words
                .first()
                .is_some_and(|w| w.eq_ignore_ascii_case("execute"))
            {
                words.remove(0);
                Command::DedupExecute(words)
            } else {
                tool("deduplicate_missions", json!({ "statuses": words }))
            }
        }
        "confirm" => Command::Confirm(arg_opt),
        "cancel" => Command::Cancel(arg_opt),
        other => Command::Unknown(other.to_owned()),
    })
}

/// `/help`: the commands, and which tool sets are available.
pub fn help_text(tools: &[ToolSpec]) -> String {
    let has = |n: &str| tools.iter().any(|t| t.name == n);
    let mut out = String::from(
        "Commands (answered at once, no model round):\n\
         - /status — the fleet: agents, budgets, cost, kill switch\n\
         - /backlog — issues in Backlog\n\
         - /triage — issues being investigated; /triage ID dispatches a triage agent\n\
         - /board [status] — issues, optionally of one status\n\
         - /mission ID — one issue in full\n\
         - /search WORDS — search issues\n\
         - /dedup [status …] — duplicate clusters (dry run); /dedup execute cancels duplicates\n\
         - /confirm [id] — confirm pending proposals; /cancel [id] — decline them\n",
    );
    if has("loki_errors") {
        out.push_str("- /errors [source] — recent errors from Loki; /stats — 24 h error stats\n");
    } else {
        out.push_str("- /errors, /stats — need LOKI_URL (not set)\n");
    }
    out.push_str("Anything else goes to the model, which proposes dispatches for you to confirm.");
    out
}

/// Why a command's tool is not there.
pub fn missing_tool_hint(name: &str) -> String {
    if name.starts_with("loki_") {
        "Loki is not configured: set LOKI_URL to use /errors and /stats".into()
    } else {
        format!("the tool {name} is not available")
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn mission_line(m: &Value) -> String {
    let mut line = format!(
        "- **{}** [{}] {} — {}",
        s(m, "identifier"),
        s(m, "priority"),
        s(m, "title"),
        s(m, "status")
    );
    if let Some(a) = m.get("agent_status").and_then(Value::as_str) {
        line.push_str(&format!(" · agent {a}"));
    }
    if let Some(sim) = m.get("similarity").and_then(Value::as_f64) {
        line.push_str(&format!(" · {sim:.3}"));
    }
    line
}

/// A tool result as the text a person reads.
pub fn render(name: &str, result: &Value, is_error: bool) -> String {
    if is_error {
        return format!("**error**: {}", s(result, "error"));
    }
    match name {
        "list_missions" | "search_missions" => {
            let missions = result
                .get("missions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if missions.is_empty() {
                return "No issues.".into();
            }
            let mut out: Vec<String> = missions.iter().map(mission_line).collect();
            if let Some(total) = result.get("total").and_then(Value::as_u64)
                && total > missions.len() as u64
            {
                out.push(format!("… {} of {total} shown", missions.len()));
            }
            out.join("\n")
        }
        "get_fleet_status" => {
            let c = &result["concurrency"];
            let b = &result["budget_today"];
            let mut out = vec![
                format!(
                    "**Fleet** — kill switch {}",
                    if result["kill_switch"].as_bool() == Some(true) {
                        "ON (no agent starts)"
                    } else {
                        "off"
                    }
                ),
                format!(
                    "running {} · queued {} · deferred {} · stale {}",
                    result["running"], result["queued"], result["deferred"], result["stale_runs"]
                ),
                format!(
                    "concurrency error {} · prd {} · global {}",
                    s(c, "error"),
                    s(c, "prd"),
                    s(c, "global")
                ),
                format!(
                    "budget today error {} · prd {} · cost ${} of ${}",
                    s(b, "error"),
                    s(b, "prd"),
                    result["cost_today_usd"],
                    result["cost_limit_usd"]
                ),
            ];
            for a in result["agents"].as_array().into_iter().flatten() {
                out.push(format!(
                    "- **{}** {} — {} {}",
                    s(a, "identifier"),
                    s(a, "title"),
                    s(a, "type"),
                    s(a, "spawn_status")
                ));
            }
            out.join("\n")
        }
        "get_mission" => {
            let mut out = format!(
                "**{}** {}\n{} · {} · agent {} · plan {} · ${}",
                s(result, "identifier"),
                s(result, "title"),
                s(result, "status"),
                s(result, "priority"),
                result["agent_status"].as_str().unwrap_or("none"),
                result["plan_status"].as_str().unwrap_or("none"),
                result["cost_usd"]
            );
            if let Some(d) = result["description"].as_str() {
                out.push_str(&format!("\n\n{d}"));
            }
            if let Some(p) = result["plan_content"].as_str() {
                out.push_str(&format!("\n\n**Plan**\n{p}"));
            }
            out
        }
        _ => format!(
            "```json\n{}\n```",
            serde_json::to_string_pretty(result).unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_their_arguments() {
        assert_eq!(parse("hello"), None);
        assert_eq!(parse("/help"), Some(Command::Help));
        assert_eq!(
            parse("/triage acme-3"),
            Some(Command::Tool {
                name: "dispatch_triage",
                input: json!({ "mission_identifier": "acme-3" }),
                confirm: true
            })
        );
        assert_eq!(
            parse("/search  checkout  fails "),
            Some(tool(
                "search_missions",
                json!({ "query": "checkout  fails", "limit": 10 })
            ))
        );
        assert!(matches!(parse("/mission"), Some(Command::Usage(_))));
        assert_eq!(
            parse("/dedup execute Backlog"),
            Some(Command::DedupExecute(vec!["Backlog".into()]))
        );
        assert_eq!(
            parse("/confirm 0193"),
            Some(Command::Confirm(Some("0193".into())))
        );
        assert_eq!(parse("/nope"), Some(Command::Unknown("nope".into())));
    }

    #[test]
    fn lists_render_as_lines() {
        let r = json!({"count": 1, "total": 3, "missions": [
            {"identifier": "ACME-1", "priority": "P2", "title": "Checkout", "status": "Backlog", "agent_status": null}
        ]});
        let text = render("list_missions", &r, false);
        assert_eq!(text, "- **ACME-1** [P2] Checkout — Backlog\n… 1 of 3 shown");
        assert_eq!(
            render("x", &json!({"error": "boom"}), true),
            "**error**: boom"
        );
    }
}
