//! The customer portal: `/portal/{slug}?token=…` (the watched issues by column) and
//! `/portal/{slug}/issue/{identifier}?token=…`, read-only, branded with the customer's colour and
//! logo. The token checks and the "watched issues only" rule are the API's (`routes::customers`).

use super::markdown;
use super::pages::{Layout, PageResult, html, url_encode};
use crate::routes::customers::{portal_auth, portal_private as private, portal_watched_issue};
use crate::state::AppState;
use askama::Template;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use dispatch_core::customer::Customer;
use dispatch_core::issue::IssueFilter;
use dispatch_core::issue::is_valid_hex_color;
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Debug, Deserialize)]
pub struct PortalQuery {
    token: Option<String>,
    show_closed: Option<String>,
}

pub struct PortalCard {
    pub identifier: String,
    pub title: String,
    pub priority: String,
    pub agent_status: Option<String>,
    pub updated: String,
}

pub struct PortalColumn {
    pub name: String,
    pub cards: Vec<PortalCard>,
}

#[derive(Template)]
#[template(path = "portal.html")]
struct PortalBoard {
    layout: Layout,
    customer: String,
    slug: String,
    token: String,
    logo: Option<String>,
    columns: Vec<PortalColumn>,
    show_closed: bool,
}

#[derive(Template)]
#[template(path = "portal_issue.html")]
struct PortalIssue {
    layout: Layout,
    customer: String,
    slug: String,
    token: String,
    logo: Option<String>,
    identifier: String,
    title: String,
    status: String,
    agent_status: Option<String>,
    description_html: String,
    /// Who reported it (the customer's person, from chat intake).
    reporter: Option<String>,
    comments: Vec<(String, String, String)>,
}

fn logo(c: &Customer) -> Option<String> {
    c.logo_url.clone().filter(|u| u.starts_with("https://"))
}

pub async fn board(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(slug): Path<String>,
    Query(q): Query<PortalQuery>,
) -> PageResult {
    let c = portal_auth(&s, addr, &slug, q.token.as_deref()).await?;
    let show_closed = q
        .show_closed
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let cols = s.dispatch.columns().await?;
    let mut issues = s
        .dispatch
        .list_issues(&IssueFilter {
            watched_by: Some(c.id),
            ..IssueFilter::default()
        })
        .await?;
    issues.sort_by_key(|i| std::cmp::Reverse(i.updated_at));
    let columns = cols
        .iter()
        .filter(|col| show_closed || !col.is_closed())
        .map(|col| PortalColumn {
            name: col.name.clone(),
            cards: issues
                .iter()
                .filter(|i| i.column_id == col.id)
                .map(|i| PortalCard {
                    identifier: i.identifier.clone(),
                    title: i.title.clone(),
                    priority: format!("{:?}", i.priority),
                    agent_status: super::pages::agent_label(i.agent_status),
                    updated: i.updated_at.format("%Y-%m-%d").to_string(),
                })
                .collect(),
        })
        .collect();
    let mut layout = Layout::new(&s, "portal");
    layout.og_image = format!(
        "{}/api/og?title={}&description={}&color={}",
        s.config.app_url,
        url_encode(&c.name),
        url_encode(&format!("Issues {} follows with us", c.name)),
        url_encode(c.brand_color_or_default())
    );
    layout.og_description = format!("The issues {} follows, and where they stand.", c.name);
    let page = PortalBoard {
        layout,
        customer: c.name.clone(),
        slug: c.slug.clone(),
        token: c.portal_token.clone(),
        logo: logo(&c),
        columns,
        show_closed,
    };
    Ok(private(html(&page)?))
}

pub async fn issue(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path((slug, identifier)): Path<(String, String)>,
    Query(q): Query<PortalQuery>,
) -> PageResult {
    let c = portal_auth(&s, addr, &slug, q.token.as_deref()).await?;
    let (issue, _) = portal_watched_issue(&s, &c, &identifier).await?;
    let cols = s.dispatch.columns().await?;
    let comments = s
        .dispatch
        .comments(issue.id)
        .await?
        .iter()
        .map(|cm| {
            (
                cm.author.clone().unwrap_or_else(|| "team".into()),
                cm.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                markdown::render(&cm.body),
            )
        })
        .collect();
    let status_name = cols
        .iter()
        .find(|col| col.id == issue.column_id)
        .map(|col| col.name.clone())
        .unwrap_or_default();
    let mut layout = Layout::new(&s, "portal");
    // The preview needs the same link the page was opened with (the image is not public).
    layout.og_image = format!(
        "{}/api/og/issue/{}?slug={}&token={}",
        s.config.app_url,
        url_encode(&issue.identifier),
        url_encode(&c.slug),
        url_encode(&c.portal_token)
    );
    layout.og_description = match issue.description.as_deref().map(str::trim) {
        Some(d) if !d.is_empty() => super::og::truncate(d, 160),
        _ => format!(
            "{} priority issue - {status_name}",
            super::og::priority_pill(issue.priority)
                .0
                .trim_start_matches(['!', '-', '.', ' '])
        ),
    };
    let page = PortalIssue {
        layout,
        customer: c.name.clone(),
        slug: c.slug.clone(),
        token: c.portal_token.clone(),
        logo: logo(&c),
        identifier: issue.identifier.clone(),
        title: issue.title.clone(),
        status: status_name,
        agent_status: super::pages::agent_label(issue.agent_status),
        description_html: markdown::render(issue.description.as_deref().unwrap_or("")),
        reporter: crate::routes::customers::reporter_names(&s, std::slice::from_ref(&issue))
            .await?
            .into_values()
            .next(),
        comments,
    };
    Ok(private(html(&page)?))
}

/// The customer's colour as a stylesheet (the CSP allows no inline style).
pub async fn brand_css(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(slug): Path<String>,
    Query(q): Query<PortalQuery>,
) -> PageResult {
    let c = portal_auth(&s, addr, &slug, q.token.as_deref()).await?;
    let color = c.brand_color_or_default();
    let color = if is_valid_hex_color(color) {
        color
    } else {
        "#7ee787"
    };
    Ok(private(
        (
            [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
            format!(":root {{ --brand: {color}; }}\n"),
        )
            .into_response(),
    ))
}
