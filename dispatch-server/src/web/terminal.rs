//! `/`: the orchestrator terminal. The page is a shell; `terminal.js` restores the session
//! (`GET /api/orchestrator?sessionId=`), streams turns from `POST /api/orchestrator` and confirms
//! or cancels proposals through their endpoints.

use super::pages::{Layout, PageResult, html, require_session};
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};

#[derive(Template)]
#[template(path = "terminal.html")]
struct TerminalPage {
    layout: Layout,
    terminal_js: String,
    terminal_css: String,
    model_label: String,
    has_model: bool,
    tool_sets: String,
}

pub async fn page(State(s): State<AppState>, headers: HeaderMap, uri: Uri) -> PageResult {
    if let Some(r) = require_session(&s, &headers, &uri) {
        return Ok(r);
    }
    let layout = Layout::new(&s, "terminal");
    html(&TerminalPage {
        terminal_js: layout.asset("terminal.js"),
        terminal_css: layout.asset("terminal.css"),
        model_label: s.config.brand.model_label.clone(),
        has_model: s.orchestrator.has_model(),
        tool_sets: s.orchestrator.tool_sets().join(", "),
        layout,
    })
}
