//! `/customers` (every customer with its health score and counts; create one) and
//! `/customers/{id}` (one customer's health cards, issue filters, activity feed, portal link and
//! branding). The health rules are core's (`dispatch_core::customer`); the writes (create,
//! regenerate the token, edit colour and logo) go through the REST API from `customers.js`.

use super::pages::{Layout, PageResult, ago, html, require_session, url_encode};
use crate::routes::customers::find_customer;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use dispatch_core::customer::{ActivityKind, Customer, CustomerIssueFilter, HealthBand};
use dispatch_core::engine::{CustomerHealth, CustomerStatsRequest};
use serde::Deserialize;

/// The health colour and name of a score, for the templates.
pub struct Score {
    pub value: u32,
    pub color: String,
    pub band: &'static str,
    pub class: &'static str,
}

impl Score {
    fn of(h: &CustomerHealth) -> Self {
        Score {
            value: h.score,
            color: h.color.clone(),
            band: h.band.label(),
            class: band_class(h.band),
        }
    }
}

fn band_class(b: HealthBand) -> &'static str {
    match b {
        HealthBand::Healthy => "healthy",
        HealthBand::Fair => "fair",
        HealthBand::AtRisk => "at-risk",
        HealthBand::Critical => "critical",
    }
}

fn portal_url(s: &AppState, c: &Customer) -> String {
    format!(
        "{}/portal/{}?token={}",
        s.config.app_url, c.slug, c.portal_token
    )
}

/// A logo the pages show: https only (the CSP allows https images).
fn logo(c: &Customer) -> Option<String> {
    c.logo_url.clone().filter(|u| u.starts_with("https://"))
}

pub struct CustomerRow {
    pub name: String,
    pub slug: String,
    pub color: String,
    pub portal: String,
    pub score: Score,
    pub total: u32,
    pub open: u32,
    pub stale: u32,
    pub critical_stale: u32,
    pub unresponded: u32,
}

#[derive(Template)]
#[template(path = "customers.html")]
struct CustomersPage {
    layout: Layout,
    customers_js: String,
    customers: Vec<CustomerRow>,
    /// How many customers are in each band, in band order.
    bands: Vec<(&'static str, &'static str, &'static str, usize)>,
    open: u32,
}

pub async fn list(State(s): State<AppState>, headers: HeaderMap, uri: Uri) -> PageResult {
    if let Some(r) = require_session(&s, &headers, &uri) {
        return Ok(r);
    }
    let all = s.dispatch.customers_health().await?;
    let bands = [
        HealthBand::Healthy,
        HealthBand::Fair,
        HealthBand::AtRisk,
        HealthBand::Critical,
    ]
    .into_iter()
    .map(|b| {
        (
            b.label(),
            band_class(b),
            b.color(),
            all.iter().filter(|c| c.health.band == b).count(),
        )
    })
    .collect();
    let layout = Layout::new(&s, "customers");
    html(&CustomersPage {
        customers_js: layout.asset("customers.js"),
        layout,
        bands,
        open: all.iter().map(|c| c.health.metrics.open_issues).sum(),
        customers: all
            .iter()
            .map(|x| {
                let c = &x.customer;
                let m = &x.health.metrics;
                CustomerRow {
                    name: c.name.clone(),
                    slug: c.slug.clone(),
                    color: c.brand_color_or_default().to_string(),
                    portal: portal_url(&s, c),
                    score: Score::of(&x.health),
                    total: m.total_issues,
                    open: m.open_issues,
                    stale: m.stale_issues,
                    critical_stale: m.critical_stale,
                    unresponded: m.unresponded_issues,
                }
            })
            .collect(),
    })
}

pub struct IssueRow {
    pub identifier: String,
    pub title: String,
    pub priority: String,
    pub status: String,
    pub status_color: String,
    pub closed: bool,
    pub days: i64,
    pub comments: usize,
    pub stale: bool,
}

pub struct FeedRow {
    pub when: String,
    pub comment: bool,
    pub identifier: String,
    pub title: String,
    pub text: String,
    pub actor: Option<String>,
}

pub struct Tab {
    pub name: &'static str,
    pub count: u32,
    pub on: bool,
}

#[derive(Template)]
#[template(path = "customer.html")]
struct CustomerPage {
    layout: Layout,
    customers_js: String,
    id: String,
    name: String,
    slug: String,
    slack_channel: String,
    color: String,
    brand_color: String,
    logo_url: String,
    logo: Option<String>,
    portal: String,
    score: Score,
    cards: Vec<(&'static str, String, &'static str)>,
    tabs: Vec<Tab>,
    filter: &'static str,
    issues: Vec<IssueRow>,
    feed: Vec<FeedRow>,
}

#[derive(Debug, Default, Deserialize)]
pub struct DetailQuery {
    filter: Option<String>,
}

/// Issues the page lists per filter, and activity lines.
const PAGE_ISSUES: usize = 50;
const PAGE_FEED: usize = 20;

pub async fn detail(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> PageResult {
    if let Some(r) = require_session(&s, &headers, &uri) {
        return Ok(r);
    }
    let filter = CustomerIssueFilter::parse(q.filter.as_deref().unwrap_or("all"))?;
    let c = find_customer(&s, &id).await?;
    let st = s
        .dispatch
        .customer_stats(
            c.id,
            &CustomerStatsRequest {
                metrics: true,
                issues: Some((filter, PAGE_ISSUES)),
                activity: Some(PAGE_FEED),
            },
        )
        .await?;
    let health = st
        .health
        .ok_or_else(|| dispatch_core::Error::internal("no metrics"))?;
    let m = &health.metrics;
    let hours = |h: Option<f64>| h.map_or("—".to_string(), |h| format!("{h:.1} h"));
    let cards = vec![
        ("open", m.open_issues.to_string(), ""),
        ("closed", m.closed_issues.to_string(), ""),
        (
            "critical stale",
            m.critical_stale.to_string(),
            if m.critical_stale > 0 { "bad" } else { "" },
        ),
        (
            "stale",
            m.stale_issues.to_string(),
            if m.stale_issues > 0 { "warn" } else { "" },
        ),
        (
            "unresponded",
            m.unresponded_issues.to_string(),
            if m.unresponded_issues > 0 { "warn" } else { "" },
        ),
        ("high priority open", m.high_priority_open.to_string(), ""),
        ("avg first response", hours(m.avg_response_time_hours), ""),
        (
            "last activity",
            m.last_activity_at.map_or("never".into(), ago),
            "",
        ),
    ];
    let tabs = CustomerIssueFilter::ALL
        .into_iter()
        .map(|f| Tab {
            name: f.as_str(),
            count: match f {
                CustomerIssueFilter::All => m.total_issues,
                CustomerIssueFilter::Critical => m.high_priority_open,
                CustomerIssueFilter::Stale => m.stale_issues,
                CustomerIssueFilter::Unresponded => m.unresponded_issues,
            },
            on: f == filter,
        })
        .collect();
    let issues = st
        .issues
        .unwrap_or_default()
        .into_iter()
        .map(|r| IssueRow {
            identifier: r.issue.identifier.clone(),
            title: r.issue.title.clone(),
            priority: format!("{:?}", r.issue.priority),
            status: r
                .status
                .as_ref()
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            status_color: r
                .status
                .as_ref()
                .map(|c| c.color.clone())
                .unwrap_or_default(),
            closed: r.status.as_ref().is_some_and(|c| c.is_closed()),
            days: r.age.days_since_update,
            comments: r.age.comment_count,
            stale: r.age.stale,
        })
        .collect();
    let feed = st
        .activity
        .unwrap_or_default()
        .into_iter()
        .map(|a| FeedRow {
            when: ago(a.timestamp),
            comment: a.kind == ActivityKind::Comment,
            identifier: a.issue_identifier,
            title: a.issue_title,
            text: a.description,
            actor: a.actor_name,
        })
        .collect();
    let mut layout = Layout::new(&s, "customers");
    layout.og_image = format!(
        "{}/api/og?title={}&description={}",
        s.config.app_url,
        url_encode(&c.name),
        url_encode(&format!("Customer health {}/100", health.score))
    );
    html(&CustomerPage {
        customers_js: layout.asset("customers.js"),
        layout,
        id: c.id.to_string(),
        name: c.name.clone(),
        slug: c.slug.clone(),
        slack_channel: c.slack_channel_id.clone().unwrap_or_default(),
        color: c.brand_color_or_default().to_string(),
        brand_color: c.brand_color.clone().unwrap_or_default(),
        logo_url: c.logo_url.clone().unwrap_or_default(),
        logo: logo(&c),
        portal: portal_url(&s, &c),
        score: Score::of(&health),
        cards,
        tabs,
        filter: filter.as_str(),
        issues,
        feed,
    })
}
