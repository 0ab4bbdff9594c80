//! Customers, their portal token and health.

use super::Dispatch;
use crate::customer::{
    Customer, CustomerPatch, HealthBand, HealthMetrics, NewCustomer, health_band, health_metrics,
    health_score, new_portal_token,
};
use crate::error::Result;
use crate::ids::CustomerId;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerHealth {
    pub metrics: HealthMetrics,
    pub score: u32,
    pub band: HealthBand,
    pub color: String,
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
        let metrics = health_metrics(&inputs, self.now());
        let score = health_score(&metrics);
        let band = health_band(score);
        Ok(CustomerHealth {
            metrics,
            score,
            band,
            color: band.color().to_string(),
        })
    }
}
