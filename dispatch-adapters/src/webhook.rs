//! [`HttpWebhookSender`]: outbound webhooks (agents' `ISSUE_ASSIGNED`, spec §4.5) over HTTP,
//! off the request path.
//!
//! `send` only queues (a bounded queue; when it is full the delivery is dropped and logged). A
//! worker posts each delivery with `X-Webhook-Event`, `X-Webhook-Timestamp` and
//! `X-Webhook-Signature: sha256=<hex HMAC-SHA256(exact body bytes, secret)>`, with a per-request
//! timeout, and retries connection errors, timeouts, 429 and 5xx with exponential backoff a few
//! times; other 4xx answers are final. What cannot be delivered is logged, never raised.
//!
//! Webhook URLs are set by API users, so by default the sender refuses to connect to anything
//! that is not a public address (loopback, private, link-local such as cloud metadata services,
//! unique-local, CGNAT, multicast, ...), checked on the resolved addresses so that a public name
//! pointing inside is refused too. `allow_private` lifts that for receivers on an internal network.

use dispatch_core::ports::{OutboundWebhook, WebhookSender};
use dispatch_core::{Error, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::{IpAddr, SocketAddr};
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
    /// Deliver to loopback, private and link-local addresses too (`AGENT_WEBHOOK_ALLOW_PRIVATE`).
    pub allow_private: bool,
}

impl Default for WebhookSenderConfig {
    fn default() -> Self {
        WebhookSenderConfig {
            timeout: Duration::from_secs(10),
            attempts: 3,
            backoff: Duration::from_secs(2),
            queue: 1024,
            concurrency: 8,
            allow_private: false,
        }
    }
}

/// Whether `ip` is an address on the public internet (not loopback, private, link-local,
/// unique-local, shared CGNAT space, documentation, benchmarking, multicast or unspecified).
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_ip(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// Resolves names like the system does, then keeps only public addresses.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> =
                all.into_iter().filter(|a| is_public_ip(a.ip())).collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves to no public address (set AGENT_WEBHOOK_ALLOW_PRIVATE=true for internal receivers)"
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// Why a URL is known to point inside without resolving anything: its host is a non-public IP
/// literal or a `localhost` name (other names are checked when resolved, at delivery).
pub fn refuse_private_literal(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url.trim()).ok()?;
    let host = parsed.host_str()?;
    if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") {
        return Some(format!("{host} is a loopback name"));
    }
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    (!is_public_ip(ip)).then(|| format!("{ip} is not a public address"))
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
        crate::tls::ensure_crypto_provider();
        let mut builder = reqwest::Client::builder();
        if !config.allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let http = builder
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
    if let Some(why) = refuse_private_literal(&hook.url).filter(|_| !config.allow_private) {
        tracing::warn!(url = %redact(&hook.url), event = %hook.event, why, "outbound webhook refused (AGENT_WEBHOOK_ALLOW_PRIVATE=true allows it)");
        return;
    }
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
    fn only_public_addresses_pass() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_public_ip(ip.parse().expect(ip)), "{ip}");
        }
        for ip in ["1.1.1.1", "140.82.112.3", "2606:4700:4700::1111"] {
            assert!(is_public_ip(ip.parse().expect(ip)), "{ip}");
        }
        assert!(refuse_private_literal("http://127.0.0.1:8080/hook").is_some());
        assert!(refuse_private_literal("http://[::1]/hook").is_some());
        assert!(refuse_private_literal("https://hooks.example.com/x").is_none());
        assert!(refuse_private_literal("https://1.1.1.1/x").is_none());
    }

    #[tokio::test]
    async fn names_that_resolve_inside_are_refused() {
        use reqwest::dns::Resolve as _;
        let name: reqwest::dns::Name = "localhost".parse().expect("name");
        let Err(e) = PublicOnly.resolve(name).await else {
            panic!("localhost must not resolve to a usable address");
        };
        assert!(e.to_string().contains("no public address"), "{e}");
    }

    #[test]
    fn signature_is_github_style_hmac() {
        // GitHub's documented HMAC-SHA256 test vector.
        assert_eq!(
            signature(b"Hello, World!", "It's a Secret to Everybody"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
