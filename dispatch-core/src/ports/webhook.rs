use crate::Timestamp;

/// One outbound webhook delivery (spec §4.5): the JSON `body` is POSTed to `url` with
/// `X-Webhook-Event: event`, `X-Webhook-Timestamp` and
/// `X-Webhook-Signature: sha256=<hex HMAC-SHA256(exact body bytes, secret)>`.
#[derive(Clone, PartialEq)]
pub struct OutboundWebhook {
    pub url: String,
    pub secret: String,
    pub event: String,
    pub timestamp: Timestamp,
    pub body: serde_json::Value,
}

impl std::fmt::Debug for OutboundWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundWebhook")
            .field("url", &self.url)
            .field("event", &self.event)
            .field("timestamp", &self.timestamp)
            .finish_non_exhaustive()
    }
}

/// Sends outbound webhooks off the request path. `send` must return at once and never fail the
/// caller: an implementation queues the delivery (bounded), retries a few times with backoff
/// and logs what it finally could not deliver.
pub trait WebhookSender: Send + Sync {
    fn send(&self, hook: OutboundWebhook);
}
