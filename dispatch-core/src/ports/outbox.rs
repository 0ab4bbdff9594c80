use crate::Timestamp;
use crate::error::Result;
use crate::ids::DeliveryId;
use crate::outbox::{Attempt, Delivery, DeliveryFilter, NewDelivery};
use async_trait::async_trait;
use chrono::Duration;
use uuid::Uuid;

/// The stored outbox (see [`crate::outbox`]).
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Stores a pending delivery. Idempotent by key: when a delivery with that key exists it is
    /// returned unchanged with `false`.
    async fn enqueue_delivery(&self, d: &NewDelivery, now: Timestamp) -> Result<(Delivery, bool)>;
    /// Hands out up to `limit` deliveries of the given kinds that are pending, due at `now`,
    /// not leased (or whose lease expired), and whose `after_key` names no delivery that is
    /// still pending; oldest due first. Each is claimed ([`Delivery::claim`]: one more attempt,
    /// a lease until `now + lease`, a new token); concurrent callers never get the same one.
    async fn claim_deliveries(
        &self,
        kinds: &[String],
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Delivery>>;
    /// Writes a settled try ([`crate::outbox::settle`] applied to the claimed row) if the
    /// stored row is still pending under the claim `token`; `false` (nothing written) when the
    /// claim was lost.
    async fn settle_delivery(&self, d: &Delivery, token: Uuid) -> Result<bool>;
    async fn get_delivery(&self, id: DeliveryId) -> Result<Delivery>;
    async fn delivery_by_key(&self, key: &str) -> Result<Option<Delivery>>;
    /// Newest first (by creation), at most `filter.limit()`.
    async fn list_deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>>;
    /// Deletes at most `limit` deliveries that [`crate::outbox::prunable`] before `before`
    /// (settled, last try due before it, no pending delivery waiting on it); returns how many.
    async fn prune_outbox(&self, before: Timestamp, limit: usize) -> Result<usize>;
}

/// Sends one kind of delivery (Slack, webhooks). Called by the delivery worker, off any
/// request path; it reports what happened instead of failing.
#[async_trait]
pub trait DeliveryTransport: Send + Sync {
    /// Tries once. `parent` is the settled delivery named by `after_key`, when there is one
    /// (for Slack: the thread's first post, whose response is its `ts`).
    async fn deliver(&self, delivery: &Delivery, parent: Option<&Delivery>) -> Attempt;
}
