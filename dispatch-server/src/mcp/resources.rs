//! MCP resources: `dispatch://issue/{identifier}` (an issue with its plan, runs, fix status and
//! latest comments, as markdown, for clients to attach as context) and `dispatch://fleet`.

use crate::state::AppState;
use dispatch_core::ErrorKind;
use dispatch_core::ids::IssueRef;
use dispatch_core::issue::IssueFilter;
use rmcp::ErrorData as McpError;
use rmcp::model::{
    ListResourceTemplatesResult, ListResourcesResult, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate,
};
use serde_json::json;
use std::fmt::Write as _;

pub const ISSUE_PREFIX: &str = "dispatch://issue/";
pub const ISSUE_TEMPLATE: &str = "dispatch://issue/{identifier}";
pub const FLEET: &str = "dispatch://fleet";
const MARKDOWN: &str = "text/markdown";
/// Issues listed as resources (newest first); any other is readable through the template.
const LISTED: usize = 50;

fn internal(e: dispatch_core::Error) -> McpError {
    tracing::error!(error = %e, "MCP resource");
    McpError::internal_error("internal error", None)
}

pub async fn list(s: &AppState) -> Result<ListResourcesResult, McpError> {
    let issues = s
        .dispatch
        .list_issues(&IssueFilter {
            limit: Some(LISTED),
            ..IssueFilter::default()
        })
        .await
        .map_err(internal)?;
    let mut resources = vec![
        Resource::new(FLEET, "fleet")
            .with_title("Agent fleet status")
            .with_description("Kill switch, runs, budgets, concurrency and today's cost")
            .with_mime_type(MARKDOWN),
    ];
    resources.extend(issues.iter().map(|i| {
        Resource::new(
            format!("{ISSUE_PREFIX}{}", i.identifier),
            i.identifier.clone(),
        )
        .with_title(format!("{}: {}", i.identifier, i.title))
        .with_mime_type(MARKDOWN)
    }));
    Ok(ListResourcesResult {
        resources,
        ..Default::default()
    })
}

pub fn templates() -> ListResourceTemplatesResult {
    ListResourceTemplatesResult {
        resource_templates: vec![
            ResourceTemplate::new(ISSUE_TEMPLATE, "issue")
                .with_title("A Dispatch issue")
                .with_description(
                    "An issue with its plan, agent runs, fix verification and latest comments",
                )
                .with_mime_type(MARKDOWN),
        ],
        ..Default::default()
    }
}

pub async fn read(s: &AppState, uri: &str) -> Result<ReadResourceResult, McpError> {
    let text = if uri == FLEET {
        fleet_markdown(s).await.map_err(internal)?
    } else if let Some(ident) = uri.strip_prefix(ISSUE_PREFIX) {
        let ident = ident.trim();
        if ident.is_empty() || ident.len() > 64 {
            return Err(not_found(uri));
        }
        match issue_markdown(s, IssueRef::parse(ident)).await {
            Ok(t) => t,
            Err(e) if e.kind == ErrorKind::NotFound => return Err(not_found(uri)),
            Err(e) => return Err(internal(e)),
        }
    } else {
        return Err(not_found(uri));
    };
    Ok(ReadResourceResult::new(vec![
        ResourceContents::text(text, uri).with_mime_type(MARKDOWN),
    ]))
}

fn not_found(uri: &str) -> McpError {
    McpError::resource_not_found(
        format!("no resource {uri}; issues are {ISSUE_TEMPLATE}, the fleet is {FLEET}"),
        Some(json!({ "uri": uri })),
    )
}

fn when(t: Option<dispatch_core::Timestamp>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "—".into())
}

pub async fn issue_markdown(s: &AppState, r: IssueRef) -> dispatch_core::Result<String> {
    let i = s.dispatch.get_issue(r).await?;
    let cols = s.dispatch.columns().await?;
    let status = cols
        .iter()
        .find(|c| c.id == i.column_id)
        .map(|c| c.name.as_str())
        .unwrap_or("?");
    let mut m = String::new();
    let _ = writeln!(m, "# {}: {}\n", i.identifier, i.title);
    let _ = writeln!(m, "- Status: {status}");
    let _ = writeln!(m, "- Priority: {}", i.priority);
    let _ = writeln!(
        m,
        "- Assignee: {}",
        i.assignee.as_deref().unwrap_or("nobody")
    );
    let _ = writeln!(m, "- Agent status: {}", i.agent_status);
    if let Some(b) = &i.blocked_reason {
        let _ = writeln!(m, "- Blocked: {b}");
    }
    if let (Some(st), Some(k)) = (i.spawn_status, i.spawn_kind) {
        let _ = writeln!(m, "- Agent run: {} ({st})", k.spawn_type());
    }
    let _ = writeln!(m, "- Cost so far: ${:.2}", i.cost_usd);
    let _ = writeln!(m, "- Created: {}", when(Some(i.created_at)));
    let _ = writeln!(m, "- Link: {}/issue/{}", s.config.app_url, i.identifier);
    let _ = writeln!(
        m,
        "\n## Description\n\n{}",
        i.description.as_deref().unwrap_or("(none)")
    );
    let _ = writeln!(m, "\n## Plan\n");
    match i.plan.status {
        None => {
            let _ = writeln!(m, "No plan yet.");
        }
        Some(st) => {
            let _ = writeln!(m, "Status: {st}");
            if let Some(by) = &i.plan.approved_by {
                let _ = writeln!(m, "Approved by {by} at {}", when(i.plan.approved_at));
            }
            if let Some(f) = &i.plan.feedback {
                let _ = writeln!(m, "Feedback: {f}");
            }
            if let Some(c) = &i.plan.content {
                let _ = writeln!(m, "\n{c}");
            }
        }
    }
    let runs = s.dispatch.runs(i.id).await?;
    let _ = writeln!(m, "\n## Agent runs\n");
    if runs.is_empty() {
        let _ = writeln!(m, "None.");
    }
    for r in runs.iter().take(10) {
        let _ = writeln!(
            m,
            "- {} {}: {}{}, started {}, ended {}, ${:.2}{}",
            r.kind.spawn_type(),
            r.id,
            r.status,
            r.outcome.map(|o| format!(" ({o})")).unwrap_or_default(),
            when(r.started_at),
            when(r.completed_at),
            r.cost_usd,
            r.outcome_summary
                .as_deref()
                .map(|x| format!(" — {x}"))
                .unwrap_or_default()
        );
    }
    let fix = s.dispatch.fix_status(i.id).await?;
    let _ = writeln!(m, "\n## Fix verification\n");
    if !fix.has_error_link {
        let _ = writeln!(m, "Not from a production error: nothing to verify.");
    } else {
        match &fix.latest {
            None => {
                let _ = writeln!(m, "No fix merged yet.");
            }
            Some(a) => {
                let _ = writeln!(
                    m,
                    "Latest fix: PR #{} — {}{}",
                    a.pr_number,
                    a.status,
                    fix.latest_description
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                );
            }
        }
        let _ = writeln!(
            m,
            "Can close: {}{}",
            if fix.can_close { "yes" } else { "no" },
            fix.close_block_reason
                .as_deref()
                .map(|r| format!(" — {r}"))
                .unwrap_or_default()
        );
    }
    let comments = s.dispatch.comments_of(&i).await?;
    if !comments.is_empty() {
        let _ = writeln!(m, "\n## Latest comments\n");
        for c in comments.iter().rev().take(10).rev() {
            let _ = writeln!(
                m,
                "**{}** ({}):\n{}\n",
                c.author.as_deref().unwrap_or("someone"),
                when(Some(c.created_at)),
                c.body
            );
        }
    }
    Ok(m)
}

async fn fleet_markdown(s: &AppState) -> dispatch_core::Result<String> {
    let f = s.dispatch.fleet_status().await?;
    let active = s.dispatch.active_issues(50).await?;
    let p = &f.policy;
    let st = &f.stats;
    let mut m = String::new();
    let _ = writeln!(m, "# Agent fleet\n");
    let _ = writeln!(
        m,
        "- Kill switch: {}",
        if f.kill_switch() {
            "ON (nothing spawns)"
        } else {
            "off"
        }
    );
    let _ = writeln!(
        m,
        "- Runs: {} queued, {} running, {} deferred, {} stale",
        st.queued, st.running, st.deferred, f.stale_runs
    );
    let _ = writeln!(
        m,
        "- Today: error fixes {}/{}, PRD runs {}/{}, cost ${:.2} of ${:.2}",
        st.spawned_today_error,
        p.daily_budget_error,
        st.spawned_today_prd,
        p.daily_budget_prd,
        st.cost_today_usd,
        p.daily_cost_limit_usd
    );
    let _ = writeln!(
        m,
        "- Concurrency: error {}/{}, PRD {}/{}, global max {}",
        st.active_error,
        p.max_concurrent_error,
        st.active_prd,
        p.max_concurrent_prd,
        p.max_concurrent_global
    );
    let _ = writeln!(m, "\n## Issues with an agent\n");
    if active.is_empty() {
        let _ = writeln!(m, "None.");
    }
    for i in &active {
        let _ = writeln!(
            m,
            "- {} {} — {} ({}), since {}",
            i.identifier,
            i.title,
            i.spawn_kind.map(|k| k.spawn_type()).unwrap_or("?"),
            i.spawn_status.map(|x| x.to_string()).unwrap_or_default(),
            when(i.spawn_started_at)
        );
    }
    Ok(m)
}
