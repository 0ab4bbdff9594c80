//! [`HttpWebhookSender`]: outbound webhooks (agents' `ISSUE_ASSIGNED`, spec §4.5) over HTTP,
//! off the request path.
//!
//! `send` only queues (a bounded queue; when it is full the delivery is dropped and logged). A
//! worker posts each delivery with `X-Webhook-Event`, `X-Webhook-Timestamp` and
//! `X-Webhook-Signature: sha256=<hex HMAC-SHA256(exact body bytes, secret)>`, with a per-request
//! timeout, and retries connection errors, timeouts, 429 and 5xx with exponential backoff a few
//! times; other 4xx answers are final. What cannot be delivered is logged, never raised.

use dispatch_core::ports::{OutboundWebhook, WebhookSender};
use dispatch_core::{Error, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

/// Limits of the sender.
#[derive(Debug, Clone)]
pub struct WebhookSenderConfig {
    /// Per attempt (connect + response).
    pub timeout: Duration,
    /// Tries per delivery (1 = no retry).
    pub attempts: u32,
    /// Wait before the first retry, doubled per retry.
    pub backoff: Duration,
    /// Deliveries waiting to be sent; beyond this new ones are dropped (and logged).
    pub queue: usize,
    /// Deliveries in flight at once.
    pub concurrency: usize,
}

impl Default for WebhookSenderConfig {
    fn default() -> Self {
        WebhookSenderConfig {
            timeout: Duration::from_secs(10),
            attempts: 3,
            backoff: Duration::from_secs(2),
            queue: 1024,
            concurrency: 8,
        }
    }
}

/// `sha256=` + hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(body: &[u8], secret: &str) -> String {
    // HMAC takes keys of any length, so this cannot fail; an empty MAC would simply not verify.
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => "sha256=".to_string(),
    }
}

/// Sends outbound webhooks from a background worker.
#[derive(Clone)]
pub struct HttpWebhookSender {
    tx: mpsc::Sender<OutboundWebhook>,
}

impl HttpWebhookSender {
    /// Starts the worker on the current tokio runtime. It ends when every sender is dropped.
    pub fn start(config: WebhookSenderConfig) -> Result<Self> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Dispatch-Webhook/1")
            .build()
            .map_err(|e| {
                Error::internal("could not build the webhook HTTP client").with_source(e)
            })?;
        let (tx, mut rx) = mpsc::channel::<OutboundWebhook>(config.queue.max(1));
        let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let config = Arc::new(config);
        tokio::spawn(async move {
            while let Some(hook) = rx.recv().await {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let (http, config) = (http.clone(), config.clone());
                tokio::spawn(async move {
                    deliver(&http, &config, hook).await;
                    drop(permit);
                });
            }
        });
        Ok(HttpWebhookSender { tx })
    }
}

impl WebhookSender for HttpWebhookSender {
    fn send(&self, hook: OutboundWebhook) {
        if let Err(e) = self.tx.try_send(hook) {
            let (why, hook) = match e {
                mpsc::error::TrySendError::Full(h) => ("queue full", h),
                mpsc::error::TrySendError::Closed(h) => ("sender stopped", h),
            };
            tracing::warn!(url = %redact(&hook.url), event = %hook.event, why, "outbound webhook dropped");
        }
    }
}

/// The URL without its query (which may carry a token) for logs.
fn redact(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

async fn deliver(http: &reqwest::Client, config: &WebhookSenderConfig, hook: OutboundWebhook) {
    let body = match serde_json::to_vec(&hook.body) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(event = %hook.event, error = %e, "cannot serialise the outbound webhook");
            return;
        }
    };
    let sig = signature(&body, &hook.secret);
    let ts = hook.timestamp.to_rfc3339();
    let attempts = config.attempts.max(1);
    let mut last = String::new();
    for attempt in 1..=attempts {
        let r = http
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("x-webhook-event", &hook.event)
            .header("x-webhook-timestamp", &ts)
            .header("x-webhook-signature", &sig)
            .body(body.clone())
            .send()
            .await;
        let retry = match r {
            Ok(resp) if resp.status().is_success() => {
                tracing::debug!(url = %redact(&hook.url), event = %hook.event, attempt, "outbound webhook delivered");
                return;
            }
            Ok(resp) => {
                let st = resp.status();
                last = format!("HTTP {st}");
                st.is_server_error() || st.as_u16() == 429 || st.as_u16() == 408
            }
            Err(e) => {
                last = e.to_string();
                true
            }
        };
        if !retry || attempt == attempts {
            break;
        }
        let wait = config.backoff.saturating_mul(1u32 << (attempt - 1).min(16));
        tokio::time::sleep(wait).await;
    }
    tracing::warn!(url = %redact(&hook.url), event = %hook.event, attempts, error = %last, "outbound webhook not delivered");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_github_style_hmac() {
        // GitHub's documented HMAC-SHA256 test vector.
        assert_eq!(
            signature(b"Hello, World!", "It's a Secret to Everybody"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
