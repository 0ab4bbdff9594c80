//! Customers, their portal token and health.

use super::Dispatch;
use crate::customer::{
    ActivityItem, Customer, CustomerIssueFilter, CustomerPatch, HealthBand, HealthMetrics,
    IssueAge, NewCustomer, health_band, health_metrics, health_score, issue_age, issue_list_order,
    merge_activity, new_portal_token, summary_order,
};
use crate::error::Result;
use crate::ids::{CustomerId, IssueId};
use crate::issue::{Column, Comment, Issue, IssueFilter};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How many of the customer's most recently updated issues the activity feed reads comments of
/// (a comment updates its issue, so the newest comments are on these).
const FEED_ISSUES_MIN: usize = 40;
/// At most this many issues have their comments counted for one issue list.
const ISSUE_SCAN: usize = 500;
/// The longest issue list or feed one request gets.
pub const CUSTOMER_LIST_MAX: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerHealth {
    pub metrics: HealthMetrics,
    pub score: u32,
    pub band: HealthBand,
    pub color: String,
}

impl CustomerHealth {
    pub fn of(metrics: HealthMetrics) -> Self {
        let score = health_score(&metrics);
        let band = health_band(score);
        CustomerHealth {
            metrics,
            score,
            band,
            color: band.color().to_string(),
        }
    }
}

/// What a customer's page (or `GET /api/customers/{id}/stats`) asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomerStatsRequest {
    pub metrics: bool,
    /// The issue list: which filter, how many (at most [`CUSTOMER_LIST_MAX`]).
    pub issues: Option<(CustomerIssueFilter, usize)>,
    /// The activity feed: how many lines (at most [`CUSTOMER_LIST_MAX`]).
    pub activity: Option<usize>,
}

/// One row of a customer's issue list.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerIssue {
    pub issue: Issue,
    pub status: Option<Column>,
    pub age: IssueAge,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CustomerStats {
    pub health: Option<CustomerHealth>,
    pub issues: Option<Vec<CustomerIssue>>,
    pub activity: Option<Vec<ActivityItem>>,
}

/// A customer with its health, for the customers list.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerSummary {
    pub customer: Customer,
    pub health: CustomerHealth,
}

impl Dispatch {
    pub async fn create_customer(&self, new: NewCustomer) -> Result<Customer> {
        let slug = new.validate()?;
        let now = self.now();
        let c = Customer {
            id: CustomerId::new(),
            workspace_id: self.inner.workspace.id,
            name: new.name.trim().to_string(),
            slug,
            slack_channel_id: new.slack_channel_id.filter(|s| !s.trim().is_empty()),
            portal_token: new_portal_token(),
            brand_color: new.brand_color,
            logo_url: new.logo_url,
            created_at: now,
            updated_at: now,
        };
        self.inner.store.create_customer(&c).await
    }

    pub async fn customer(&self, id: CustomerId) -> Result<Customer> {
        self.inner.store.get_customer(id).await
    }

    pub async fn customers(&self) -> Result<Vec<Customer>> {
        self.inner
            .store
            .list_customers(self.inner.workspace.id)
            .await
    }

    pub async fn update_customer(&self, id: CustomerId, patch: CustomerPatch) -> Result<Customer> {
        self.inner
            .store
            .update_customer(id, &patch, self.now())
            .await
    }

    /// A new portal token; the old link stops working at once.
    pub async fn regenerate_portal_token(&self, id: CustomerId) -> Result<Customer> {
        self.inner
            .store
            .set_portal_token(id, &new_portal_token(), self.now())
            .await
    }

    pub async fn delete_customer(&self, id: CustomerId) -> Result<()> {
        self.inner.store.delete_customer(id).await
    }

    /// The customer a portal request is for: the token must match and belong to `slug`.
    /// A wrong token and a wrong slug look the same to the caller (`Unauthorized`).
    pub async fn portal_customer(&self, slug: &str, token: &str) -> Result<Customer> {
        let unauthorized =
            || crate::Error::new(crate::ErrorKind::Unauthorized, "invalid portal link");
        if token.len() != 64 {
            return Err(unauthorized());
        }
        match self.inner.store.get_customer_by_token(token).await? {
            Some(c) if c.slug == slug && c.workspace_id == self.inner.workspace.id => Ok(c),
            _ => Err(unauthorized()),
        }
    }

    pub async fn customer_health(&self, id: CustomerId) -> Result<CustomerHealth> {
        let inputs = self.inner.store.health_inputs(id).await?;
        Ok(CustomerHealth::of(health_metrics(&inputs, self.now())))
    }

    /// Every customer with its health, the troubled first (critical-stale, then stale issues,
    /// then by name).
    pub async fn customers_health(&self) -> Result<Vec<CustomerSummary>> {
        let now = self.now();
        let mut out = Vec::new();
        for customer in self.customers().await? {
            let inputs = self.inner.store.health_inputs(customer.id).await?;
            out.push(CustomerSummary {
                customer,
                health: CustomerHealth::of(health_metrics(&inputs, now)),
            });
        }
        out.sort_by(|a, b| {
            summary_order(
                (&a.customer.name, &a.health.metrics),
                (&b.customer.name, &b.health.metrics),
            )
        });
        Ok(out)
    }

    /// A customer's health, issue list and activity feed (spec §11.3), as asked. Issues are the
    /// customer's by `customer_id`, as in the original.
    pub async fn customer_stats(
        &self,
        id: CustomerId,
        req: &CustomerStatsRequest,
    ) -> Result<CustomerStats> {
        let mut out = CustomerStats::default();
        if req.metrics {
            out.health = Some(self.customer_health(id).await?);
        }
        if req.issues.is_none() && req.activity.is_none() {
            return Ok(out);
        }
        let issues = self
            .list_issues(&IssueFilter {
                customer_id: Some(id),
                ..IssueFilter::default()
            })
            .await?;
        let cols = self.columns().await?;
        let now = self.now();
        let mut comments: HashMap<IssueId, Vec<Comment>> = HashMap::new();
        if let Some((filter, limit)) = req.issues {
            let limit = limit.clamp(1, CUSTOMER_LIST_MAX);
            let status = |i: &Issue| cols.iter().find(|c| c.id == i.column_id);
            let closed = |i: &Issue| status(i).is_some_and(Column::is_closed);
            let mut candidates: Vec<&Issue> = issues
                .iter()
                .filter(|i| filter.may_show(closed(i), i.priority, i.updated_at, now))
                .collect();
            candidates.sort_by(|a, b| {
                issue_list_order((a.priority, a.updated_at), (b.priority, b.updated_at))
            });
            let mut rows = Vec::new();
            for i in candidates.into_iter().take(ISSUE_SCAN) {
                if rows.len() >= limit {
                    break;
                }
                let count = self.cached_comments(&mut comments, i).await?.len();
                if !filter.keeps(count) {
                    continue;
                }
                rows.push(CustomerIssue {
                    issue: i.clone(),
                    status: status(i).cloned(),
                    age: issue_age(closed(i), i.priority, i.updated_at, count, now),
                });
            }
            out.issues = Some(rows);
        }
        if let Some(limit) = req.activity {
            let limit = limit.clamp(1, CUSTOMER_LIST_MAX);
            let mut items = Vec::new();
            let mut by_update: Vec<&Issue> = issues.iter().collect();
            by_update.sort_by_key(|i| std::cmp::Reverse(i.updated_at));
            for i in by_update.into_iter().take(FEED_ISSUES_MIN.max(limit * 2)) {
                let key = (i.id.as_uuid(), i.identifier.as_str(), i.title.as_str());
                for c in self.cached_comments(&mut comments, i).await? {
                    items.push(ActivityItem::comment(
                        c.id.as_uuid(),
                        key,
                        &c.body,
                        c.author.as_deref(),
                        c.created_at,
                    ));
                }
            }
            for i in &issues {
                items.push(ActivityItem::issue_created(
                    (i.id.as_uuid(), &i.identifier, &i.title),
                    i.created_at,
                ));
            }
            out.activity = Some(merge_activity(items, limit));
        }
        Ok(out)
    }

    async fn cached_comments<'a>(
        &self,
        cache: &'a mut HashMap<IssueId, Vec<Comment>>,
        issue: &Issue,
    ) -> Result<&'a Vec<Comment>> {
        use std::collections::hash_map::Entry;
        match cache.entry(issue.id) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => Ok(e.insert(self.comments_of(issue).await?)),
        }
    }
}
