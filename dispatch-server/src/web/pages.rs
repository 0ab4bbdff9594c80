//! The signed-in pages: board, issue, fleet, customers; login.

use super::assets;
use super::markdown;
use crate::auth::session_ok;
use crate::error::ApiError;
use crate::routes::history_sentence;
use crate::state::AppState;
use askama::Template;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use dispatch_core::Timestamp;
use dispatch_core::issue::{Column, Issue, IssueFilter, Label};
use serde::Deserialize;
use std::net::SocketAddr;

/// What every page's frame shows.
pub struct Layout {
    pub app_name: String,
    pub braille: String,
    pub description: String,
    pub nav: &'static str,
    pub css: String,
    pub app_js: String,
    pub github_repo: Option<String>,
    /// The share preview (`og:image`, absolute): the app's card unless a page sets its own.
    pub og_image: String,
    /// `og:description`: the app's description unless a page sets its own.
    pub og_description: String,
}

impl Layout {
    pub fn new(s: &AppState, nav: &'static str) -> Self {
        let b = &s.config.brand;
        Layout {
            app_name: b.app_name.clone(),
            braille: b.braille.clone(),
            description: b.description.clone(),
            nav,
            css: assets::url("app.css"),
            app_js: assets::url("app.js"),
            github_repo: b.github_repo.clone(),
            og_image: format!(
                "{}/api/og?title={}&description={}",
                s.config.app_url,
                url_encode(&b.app_name),
                url_encode(&b.description)
            ),
            og_description: b.description.clone(),
        }
    }
    pub fn asset(&self, name: &str) -> String {
        assets::url(name)
    }
}

/// A page or an error page with the error's status.
pub type PageResult = Result<Response, PageError>;

pub struct PageError(ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}
impl From<dispatch_core::Error> for PageError {
    fn from(e: dispatch_core::Error) -> Self {
        PageError(e.into())
    }
}
impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        PageError(dispatch_core::Error::internal(format!("template: {e}")).into())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            status: self.0.status.as_u16(),
            message: &self.0.message,
        };
        let body = page.render().unwrap_or_else(|_| self.0.message.clone());
        (self.0.status, Html(body)).into_response()
    }
}

pub fn html(t: &impl Template) -> PageResult {
    Ok(Html(t.render()?).into_response())
}

/// Pages need a session; without one the browser goes to the login form and comes back.
pub(super) fn require_session(s: &AppState, headers: &HeaderMap, uri: &Uri) -> Option<Response> {
    if session_ok(s, headers) {
        return None;
    }
    let next = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let q: String = url_encode(next);
    Some(Redirect::to(&format!("/login?next={q}")).into_response())
}

pub(super) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Only a local path is a redirect target after login (no `//host`, no scheme, no backslash).
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control()) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

/// The wire name of an enum value (`"running"`, `"awaiting_review"`).
pub fn wire_name(v: impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// An agent status worth showing (not idle).
pub fn agent_label(a: dispatch_core::issue::AgentStatus) -> Option<String> {
    Some(wire_name(a)).filter(|n| !n.is_empty() && n != "idle")
}

pub(super) fn ago(t: Timestamp) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

// ------------------------------------------------------------------------------------------------
// Login

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    next: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

pub async fn login_form(State(s): State<AppState>, Query(q): Query<LoginQuery>) -> PageResult {
    html(&LoginPage {
        layout: Layout::new(&s, ""),
        next: local_path(q.next.as_deref()),
        error: None,
    })
}

#[derive(Debug, Deserialize)]
pub struct LoginFormBody {
    password: Option<String>,
    next: Option<String>,
}

pub async fn login_submit(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Form(f): Form<LoginFormBody>,
) -> PageResult {
    let next = local_path(f.next.as_deref());
    match crate::routes::session::start_session(&s, addr, f.password.as_deref()) {
        Ok(cookie) => {
            let mut res = Redirect::to(&next).into_response();
            res.headers_mut().insert(header::SET_COOKIE, cookie);
            Ok(res)
        }
        Err(e) => {
            let page = LoginPage {
                layout: Layout::new(&s, ""),
                next,
                error: Some(e.message.clone()),
            };
            let status = if e.status == StatusCode::TOO_MANY_REQUESTS {
                e.status
            } else {
                StatusCode::UNAUTHORIZED
            };
            Ok((status, Html(page.render()?)).into_response())
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Board

pub struct Card {
    pub id: String,
    pub identifier: String,
    pub title: String,
    pub priority: String,
    pub labels: Vec<String>,
    pub agent_status: Option<String>,
    pub plan_status: Option<String>,
    pub blocked_reason: Option<String>,
    pub cost: Option<String>,
    pub active: bool,
}

impl Card {
    pub fn of(i: &Issue, labels: &[Label]) -> Self {
        let plan = serde_json::to_value(i.plan.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .filter(|p| p != "none");
        let spawn = serde_json::to_value(i.spawn_status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string));
        Card {
            id: i.id.to_string(),
            identifier: i.identifier.clone(),
            title: i.title.clone(),
            priority: format!("{:?}", i.priority),
            labels: i
                .labels
                .iter()
                .filter_map(|id| labels.iter().find(|l| l.id == *id))
                .map(|l| l.name.clone())
                .collect(),
            agent_status: agent_label(i.agent_status),
            plan_status: plan,
            blocked_reason: i.blocked_reason.clone(),
            cost: (i.cost_usd > 0.0).then(|| format!("${:.2}", i.cost_usd)),
            active: matches!(spawn.as_deref(), Some("running") | Some("pending")),
        }
    }
}

pub struct BoardColumn {
    pub id: String,
    pub name: String,
    pub color: String,
    pub closed: bool,
    pub cards: Vec<Card>,
    /// The cursor of the next page, when there is one.
    pub more: Option<i64>,
}

#[derive(Template)]
#[template(path = "board.html")]
struct BoardPage {
    layout: Layout,
    board_js: String,
    columns: Vec<BoardColumn>,
}

/// Cards per column on the first render; the rest come page by page.
const PAGE: usize = 50;

pub async fn board_columns(s: &AppState, cols: &[Column]) -> Result<Vec<BoardColumn>, PageError> {
    let labels = s.dispatch.labels().await?;
    let mut out = Vec::with_capacity(cols.len());
    for c in cols {
        let mut issues = s
            .dispatch
            .list_issues(&IssueFilter {
                column_id: Some(c.id),
                limit: Some(PAGE + 1),
                ..IssueFilter::default()
            })
            .await?;
        let more = (issues.len() > PAGE).then(|| issues[PAGE - 1].number);
        issues.truncate(PAGE);
        out.push(BoardColumn {
            id: c.id.to_string(),
            name: c.name.clone(),
            color: c.color.clone(),
            closed: c.is_closed(),
            cards: issues.iter().map(|i| Card::of(i, &labels)).collect(),
            more,
        });
    }
    Ok(out)
}

async fn board_page(s: &AppState, nav: &'static str) -> PageResult {
    let cols = s.dispatch.columns().await?;
    let layout = Layout::new(s, nav);
    html(&BoardPage {
        board_js: layout.asset("board.js"),
        layout,
        columns: board_columns(s, &cols).await?,
    })
}

pub async fn board(State(s): State<AppState>, headers: HeaderMap, uri: Uri) -> PageResult {
    if let Some(r) = require_session(&s, &headers, &uri) {
        return Ok(r);
    }
    board_page(&s, "board").await
}

// ------------------------------------------------------------------------------------------------
// Issue

pub struct TimelineEntry {
    pub at: Timestamp,
    pub when: String,
    pub kind: &'static str,
    pub who: String,
    /// Plain text (escaped by the template) unless `html` is set.
    pub text: String,
    pub html: Option<String>,
}

pub struct RunRow {
    pub kind: String,
    pub status: String,
    pub started: String,
    pub cost: String,
    pub url: Option<String>,
    pub summary: String,
}

#[derive(Template)]
#[template(path = "issue.html")]
struct IssuePage {
    layout: Layout,
    issue_js: String,
    id: String,
    identifier: String,
    title: String,
    status: String,
    priority: String,
    assignee: String,
    labels: Vec<String>,
    description_html: String,
    plan_status: String,
    plan_html: Option<String>,
    plan_feedback: Option<String>,
    plan_awaiting: bool,
    agent_active: bool,
    agent_status: String,
    blocked_reason: Option<String>,
    runs: Vec<RunRow>,
    prs: Vec<(String, String, String)>,
    can_close: bool,
    close_reason: Option<String>,
    fix: Option<String>,
    error_links: Vec<(String, u64, String)>,
    watchers: usize,
    timeline: Vec<TimelineEntry>,
    spawn_kinds: Vec<(&'static str, &'static str)>,
}

pub async fn issue(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(identifier): Path<String>,
) -> PageResult {
    if let Some(r) = require_session(&s, &headers, &uri) {
        return Ok(r);
    }
    let r = crate::routes::issue_ref(&identifier)?;
    let d = &s.dispatch;
    let issue = d.get_issue(r).await?;
    let cols = d.columns().await?;
    let labels = d.labels().await?;
    let card = Card::of(&issue, &labels);
    let comments = d.comments(issue.id).await?;
    let history = d.history(issue.id, 200).await?;
    let activities = d.activities(issue.id, None, 200).await?;
    let runs = d.runs(issue.id).await?;
    let fix = d.fix_status(issue.id).await?;
    let prs = d.pr_links(issue.id).await?;
    let watchers = d.watchers(issue.id).await?.len();

    // The merged timeline (spec §9.5): history, comments and agent activities, newest first.
    let mut timeline: Vec<TimelineEntry> = Vec::new();
    for h in &history {
        timeline.push(TimelineEntry {
            at: h.created_at,
            when: ago(h.created_at),
            kind: "history",
            who: h.actor.name.clone(),
            text: history_sentence(h, &cols, &labels),
            html: None,
        });
    }
    for c in &comments {
        timeline.push(TimelineEntry {
            at: c.created_at,
            when: ago(c.created_at),
            kind: "comment",
            who: c.author.clone().unwrap_or_else(|| "someone".into()),
            text: String::new(),
            html: Some(markdown::render(&c.body)),
        });
    }
    for a in &activities {
        timeline.push(TimelineEntry {
            at: a.created_at,
            when: ago(a.created_at),
            kind: "activity",
            who: "agent".into(),
            text: a.content.clone(),
            html: None,
        });
    }
    timeline.sort_by_key(|e| std::cmp::Reverse(e.at));

    let status = cols
        .iter()
        .find(|c| c.id == issue.column_id)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let layout = Layout::new(&s, "board");
    let page = IssuePage {
        issue_js: layout.asset("issue.js"),
        layout,
        id: issue.id.to_string(),
        identifier: issue.identifier.clone(),
        title: issue.title.clone(),
        status,
        priority: card.priority.clone(),
        assignee: issue
            .assignee
            .clone()
            .unwrap_or_else(|| "unassigned".into()),
        labels: card.labels.clone(),
        description_html: markdown::render(issue.description.as_deref().unwrap_or("")),
        plan_status: card.plan_status.clone().unwrap_or_else(|| "none".into()),
        plan_html: issue.plan.content.as_deref().map(markdown::render),
        plan_feedback: issue.plan.feedback.clone(),
        plan_awaiting: card.plan_status.as_deref() == Some("awaiting_review"),
        agent_active: card.active,
        agent_status: card.agent_status.clone().unwrap_or_else(|| "idle".into()),
        blocked_reason: issue.blocked_reason.clone(),
        runs: runs
            .iter()
            .map(|r| RunRow {
                kind: format!("{:?}", r.kind),
                status: serde_json::to_value(r.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                started: ago(r.created_at),
                cost: if r.cost_usd > 0.0 {
                    format!("${:.2}", r.cost_usd)
                } else {
                    String::new()
                },
                url: r.external_url.clone(),
                summary: r.outcome_summary.clone().unwrap_or_default(),
            })
            .collect(),
        prs: prs
            .iter()
            .map(|p| {
                (
                    format!("#{} {}", p.pr_number, p.title.clone().unwrap_or_default()),
                    p.url.clone().unwrap_or_default(),
                    format!("{:?}", p.status).to_lowercase(),
                )
            })
            .collect(),
        can_close: fix.can_close,
        close_reason: fix.close_block_reason.clone(),
        fix: fix.latest_description.clone(),
        error_links: fix
            .links
            .iter()
            .map(|l| {
                (
                    l.source.clone(),
                    l.event_count,
                    l.fingerprint.chars().take(12).collect(),
                )
            })
            .collect(),
        watchers,
        timeline,
        spawn_kinds: vec![
            ("investigate", "Investigate"),
            ("implement", "Implement"),
            ("qa", "QA"),
            ("research", "Research"),
            ("triage", "Triage"),
        ],
    };
    html(&page)
}

// ------------------------------------------------------------------------------------------------
// Fleet (customers: customers.rs)

#[derive(Template)]
#[template(path = "fleet.html")]
struct FleetPage {
    layout: Layout,
    fleet_js: String,
    forced: bool,
    bars: Vec<(String, u64, u64, u32)>,
    cost: String,
    cost_limit: String,
    cost_percent: u32,
    kill_switch: bool,
    queued: u32,
    running: u32,
    deferred: u32,
    outcomes: Vec<(String, u64)>,
    /// Issues with an agent: identifier, title, workflow, spawn status, started.
    agents: Vec<(String, String, String, String, String)>,
    stale: usize,
}

fn percent(used: f64, max: f64) -> u32 {
    if max <= 0.0 {
        0
    } else {
        ((used / max) * 100.0).clamp(0.0, 100.0).round() as u32
    }
}

pub async fn fleet(State(s): State<AppState>, headers: HeaderMap, uri: Uri) -> PageResult {
    if let Some(r) = require_session(&s, &headers, &uri) {
        return Ok(r);
    }
    let st = s
        .dispatch
        .store()
        .spawn_stats(s.dispatch.clock().now())
        .await?;
    let p = &s.dispatch.config().policy;
    let kill = s.dispatch.kill_switch().await?;
    let fleet = s.dispatch.fleet_status().await?;
    let agents = s
        .dispatch
        .active_issues(100)
        .await?
        .into_iter()
        .map(|i| {
            (
                i.identifier.clone(),
                i.title.clone(),
                i.spawn_kind
                    .map(|k| k.spawn_type().to_string())
                    .unwrap_or_default(),
                i.spawn_status
                    .map(|x| x.as_str().to_string())
                    .unwrap_or_default(),
                i.spawn_started_at
                    .map(|t| t.format("%H:%M UTC").to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    let bar = |name: &str, used: u32, max: u32| {
        (
            name.to_string(),
            u64::from(used),
            u64::from(max),
            percent(f64::from(used), f64::from(max)),
        )
    };
    let mut outcomes: Vec<(String, u64)> = st
        .outcomes_today
        .iter()
        .map(|(k, n)| (k.clone(), u64::from(*n)))
        .collect();
    outcomes.sort();
    let layout = Layout::new(&s, "fleet");
    html(&FleetPage {
        fleet_js: layout.asset("fleet.js"),
        forced: kill.forced_by_environment,
        layout,
        bars: vec![
            bar(
                "error fixes today",
                st.spawned_today_error,
                p.daily_budget_error,
            ),
            bar("requests today", st.spawned_today_prd, p.daily_budget_prd),
            bar(
                "error fixes running",
                st.active_error,
                p.max_concurrent_error,
            ),
            bar("requests running", st.active_prd, p.max_concurrent_prd),
        ],
        cost: format!("${:.2}", st.cost_today_usd),
        cost_limit: if p.daily_cost_limit_usd > 0.0 {
            format!("${:.2}", p.daily_cost_limit_usd)
        } else {
            "no limit".into()
        },
        cost_percent: percent(st.cost_today_usd, p.daily_cost_limit_usd),
        kill_switch: kill.enabled,
        queued: st.queued,
        running: st.running,
        deferred: st.deferred,
        outcomes,
        agents,
        stale: fleet.stale_runs,
    })
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn only_local_paths_are_redirect_targets() {
        assert_eq!(
            local_path(Some("/issue/DISPATCH-1?x=1")),
            "/issue/DISPATCH-1?x=1"
        );
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "javascript:alert(1)",
            "evil",
            "/a\nb",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(local_path(None), "/");
    }
}
