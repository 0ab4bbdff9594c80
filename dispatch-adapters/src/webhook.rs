//! [`WebhookTransport`]: outbound webhooks (agents' `ISSUE_ASSIGNED`, spec §4.5, and the event
//! webhooks `ISSUE_CREATED` … `STATUS_CHANGED`) over HTTP, as the outbox's `webhook` transport.
//!
//! The engine stores each delivery in the outbox; the delivery worker hands it here. One try
//! POSTs the exact JSON body with `X-Webhook-Event`, `X-Webhook-Timestamp`,
//! `X-Webhook-Delivery` (the delivery's id, stable across retries, for de-duplication) and
//! `X-Webhook-Signature: sha256=<hex HMAC-SHA256(exact body bytes, secret)>`, with a per-request
//! timeout. Connection errors, timeouts, 408, 429 and 5xx are retried by the outbox (429 and 503
//! after their `Retry-After`); other answers are final. Status code and the start of the answer
//! are recorded on the delivery.
//!
//! Webhook URLs are set by API users, so by default the sender refuses to connect to anything
//! that is not a public address (loopback, private, link-local such as cloud metadata services,
//! unique-local, CGNAT, multicast, ...), checked on the resolved addresses so that a public name
//! pointing inside is refused too. `allow_private` lifts that for receivers on an internal network.

use crate::http::{HttpClient, HttpConfig};
use async_trait::async_trait;
use dispatch_core::Result;
use dispatch_core::outbox::{Attempt, Delivery};
use dispatch_core::ports::DeliveryTransport;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Limits of the transport.
#[derive(Debug, Clone)]
pub struct WebhookTransportConfig {
    /// Per attempt (connect + response).
    pub timeout: Duration,
    /// Deliver to loopback, private and link-local addresses too (`AGENT_WEBHOOK_ALLOW_PRIVATE`).
    pub allow_private: bool,
}

impl Default for WebhookTransportConfig {
    fn default() -> Self {
        WebhookTransportConfig {
            timeout: Duration::from_secs(10),
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

/// Sends the outbox's `webhook` deliveries.
#[derive(Clone)]
pub struct WebhookTransport {
    http: HttpClient,
    allow_private: bool,
}

impl WebhookTransport {
    pub fn new(config: WebhookTransportConfig) -> Result<Self> {
        let mut hc = HttpConfig::new("webhook", config.timeout);
        hc.user_agent = "Dispatch-Webhook/1".into();
        hc.follow_redirects = false;
        if !config.allow_private {
            hc.resolver = Some(Arc::new(PublicOnly));
        }
        Ok(WebhookTransport {
            http: HttpClient::new(hc)?,
            allow_private: config.allow_private,
        })
    }
}

/// The URL without its query (which may carry a token) for logs.
fn redact(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// A failed try for the delivery record: what happened and its innermost cause (the resolver's
/// refusal of a private address, "connection refused").
fn transport_text(t: &crate::http::Transport) -> String {
    let mut cause = None;
    let mut src: Option<&(dyn std::error::Error + 'static)> = t
        .error
        .source
        .as_deref()
        .map(|e| e as &(dyn std::error::Error + 'static));
    while let Some(s) = src {
        cause = Some(s.to_string());
        src = s.source();
    }
    match cause {
        Some(c) => format!("{}: {c}", t.error.message),
        None => t.error.message.clone(),
    }
}

/// The start of an answer, for the delivery record.
fn excerpt(body: &str) -> Option<String> {
    let t = body.trim();
    if t.is_empty() {
        return None;
    }
    Some(t.chars().take(500).collect())
}

#[async_trait]
impl DeliveryTransport for WebhookTransport {
    async fn deliver(&self, d: &Delivery, _parent: Option<&Delivery>) -> Attempt {
        let body = match serde_json::to_vec(&d.payload) {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Failed {
                    code: None,
                    error: format!("cannot serialise the body: {e}"),
                };
            }
        };
        if let Some(why) = refuse_private_literal(&d.target).filter(|_| !self.allow_private) {
            return Attempt::Failed {
                code: None,
                error: format!("{why} (AGENT_WEBHOOK_ALLOW_PRIVATE=true allows it)"),
            };
        }
        let sig = signature(&body, d.secret.as_deref().unwrap_or_default());
        let ts = d
            .payload
            .get("timestamp")
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| d.created_at.to_rfc3339());
        let req = self
            .http
            .request(reqwest::Method::POST, &d.target)
            .header("content-type", "application/json")
            .header("x-webhook-event", &d.event)
            .header("x-webhook-timestamp", &ts)
            .header("x-webhook-delivery", d.id.to_string())
            .header("x-webhook-signature", &sig)
            .body(body);
        let resp = match self
            .http
            .fetch(&format!("the {} webhook", d.event), req)
            .await
        {
            Ok(r) => r,
            Err(t) => {
                let error = transport_text(&t);
                tracing::debug!(url = %redact(&d.target), event = %d.event, error = %error, "webhook not delivered");
                return Attempt::Retry {
                    code: None,
                    error,
                    retry_after: None,
                };
            }
        };
        let status = resp.status;
        let code = Some(status.as_u16());
        let retry_after = resp
            .retry_after(SystemTime::now())
            .and_then(|d| chrono::Duration::from_std(d).ok());
        let text = resp.text();
        if status.is_success() {
            return Attempt::Delivered {
                code,
                response: excerpt(&text),
            };
        }
        let error = match excerpt(&text) {
            Some(t) => format!("HTTP {status}: {t}"),
            None => format!("HTTP {status}"),
        };
        if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
            Attempt::Retry {
                code,
                error,
                retry_after,
            }
        } else {
            Attempt::Failed { code, error }
        }
    }
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
