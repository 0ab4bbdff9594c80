//! The issue an unseen error becomes: title, markdown description and priority (spec §5.3, §5.5).

use super::error_event::ErrorEvent;
use super::fingerprint::Fingerprint;
use crate::issue::Priority;
use std::fmt::Write as _;

const TITLE_MAX: usize = 100;

/// `[source/feature] message`, the message cut to 97 characters plus `...` when longer than 100.
pub fn issue_title(e: &ErrorEvent) -> String {
    if let Some(t) = &e.title
        && !t.trim().is_empty()
    {
        return truncate(t.trim(), 500);
    }
    let msg = e.message.trim();
    let msg = if msg.chars().count() > TITLE_MAX {
        let cut: String = msg.chars().take(TITLE_MAX - 3).collect();
        format!("{cut}...")
    } else {
        msg.to_string()
    };
    format!("[{}/{}] {}", e.source, e.feature, msg)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max - 3).collect();
        format!("{cut}...")
    }
}

/// Fatal or critical → P1; otherwise by volume: ≥100 → P1, ≥20 → P2, ≥5 → P3, else P4.
/// A source's own priority (Sentry's) wins.
pub fn priority_for(e: &ErrorEvent) -> Priority {
    if let Some(p) = e.priority {
        return p;
    }
    let level = e.level.trim().to_ascii_lowercase();
    if level == "fatal" || level == "critical" {
        return Priority::P1;
    }
    match e.event_count {
        n if n >= 100 => Priority::P1,
        n if n >= 20 => Priority::P2,
        n if n >= 5 => Priority::P3,
        _ => Priority::P4,
    }
}

const ENV_LABELS: &[&str] = &[
    "app",
    "namespace",
    "pod",
    "container",
    "level",
    "env",
    "version",
];

/// The markdown description: Error, Fingerprint (when normalisation changed the message), Stack
/// Trace, Sample Log Lines, Impact, Alert Metrics, Environment, Links — the original's sections.
pub fn issue_description(e: &ErrorEvent, normalized: &str, fp: &Fingerprint) -> String {
    if let Some(d) = &e.description
        && !d.trim().is_empty()
    {
        return d.clone();
    }
    let mut s = String::new();
    let _ = writeln!(s, "## Error");
    let _ = writeln!(s, "**Source:** `{}`", e.source);
    let _ = writeln!(s, "**Feature:** `{}`", e.feature);
    let _ = writeln!(s, "**Message:** {}", e.message);
    let _ = writeln!(s, "**Level:** {}", e.level);
    if let Some(err) = &e.error_message {
        let _ = writeln!(s, "**Error:** {err}");
    }
    s.push('\n');
    if normalized != e.message {
        let _ = writeln!(s, "## Fingerprint");
        let _ = writeln!(s, "**Normalized:** {normalized}");
        let _ = writeln!(s, "**Hash:** `{}...`", fp.short());
        s.push('\n');
    }
    if let Some(st) = &e.stack_trace {
        let _ = writeln!(s, "## Stack Trace\n```\n{st}\n```\n");
    }
    if !e.sample_lines.is_empty() {
        let _ = writeln!(s, "## Sample Log Lines\n```");
        for l in &e.sample_lines {
            let _ = writeln!(s, "{l}");
        }
        let _ = writeln!(s, "```\n");
    }
    let _ = writeln!(s, "## Impact");
    let _ = writeln!(s, "- **Event count:** {}", e.event_count);
    let fmt_t = |t: Option<crate::Timestamp>| {
        t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    let _ = writeln!(s, "- **First seen:** {}", fmt_t(e.first_seen));
    let _ = writeln!(
        s,
        "- **Last seen:** {}",
        fmt_t(e.last_seen.or(e.first_seen))
    );
    s.push('\n');
    if !e.values.is_empty() {
        let _ = writeln!(s, "## Alert Metrics");
        for (k, v) in &e.values {
            let _ = writeln!(s, "- **{k}:** {v}");
        }
        s.push('\n');
    }
    let env: Vec<_> = e
        .labels
        .iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            ENV_LABELS.iter().any(|l| k.contains(l))
        })
        .collect();
    if !env.is_empty() {
        let _ = writeln!(s, "## Environment");
        for (k, v) in env {
            let _ = writeln!(s, "- **{k}:** {v}");
        }
        s.push('\n');
    }
    let _ = writeln!(s, "## Links");
    if let Some(l) = &e.link {
        let _ = writeln!(s, "- [View source]({l})");
    }
    let _ = write!(s, "- **Source:** {}", origin_display(&e.origin));
    s
}

fn origin_display(origin: &str) -> String {
    match origin {
        "loki" => "Loki / Grafana Alerting".into(),
        "sentry" => "Sentry".into(),
        other => other.to_string(),
    }
}
