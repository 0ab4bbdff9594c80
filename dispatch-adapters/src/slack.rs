//! [`SlackTransport`]: the outbox's `slack` transport — Slack's Web API `chat.postMessage`.
//!
//! One try POSTs `{channel, text, unfurl_links: false, unfurl_media: false, thread_ts?}` as JSON
//! with `Authorization: Bearer <SLACK_BOT_TOKEN>` to `<SLACK_API_BASE_URL>/chat.postMessage`.
//! Slack answers HTTP 200 with `{"ok": true, "ts": …}` (the `ts` is kept as the delivery's
//! response: later replies thread on it) or `{"ok": false, "error": "channel_not_found"}`.
//! HTTP 429 (with `Retry-After` seconds), 5xx, `ratelimited` and Slack's transient errors are
//! retried by the outbox; a bad token, an unknown or archived channel and the like are final.
//! Which `thread_ts` a message gets is the core's rule ([`dispatch_core::outbox::slack::thread_ts`]).

use crate::http::{HttpClient, HttpConfig};
use async_trait::async_trait;
use dispatch_core::outbox::{Attempt, Delivery, slack};
use dispatch_core::ports::DeliveryTransport;
use dispatch_core::{Error, Result};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use std::time::{Duration, SystemTime};

/// Where and how to reach Slack.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// `SLACK_BOT_TOKEN` (`xoxb-…`).
    pub token: SecretString,
    /// `SLACK_API_BASE_URL` (https://slack.com/api): the Web API root (a local fake in tests).
    pub base_url: String,
    /// Per try (connect + answer).
    pub timeout: Duration,
}

impl SlackConfig {
    pub const DEFAULT_BASE_URL: &'static str = "https://slack.com/api";

    pub fn new(token: impl Into<String>) -> Self {
        SlackConfig {
            token: SecretString::from(token.into()),
            base_url: Self::DEFAULT_BASE_URL.into(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Slack errors worth another try (the rest are final: fixing them needs a person).
fn transient(error: &str) -> bool {
    matches!(
        error,
        "ratelimited"
            | "rate_limited"
            | "internal_error"
            | "fatal_error"
            | "service_unavailable"
            | "request_timeout"
            | "team_added_to_org"
    )
}

/// Posts the outbox's Slack messages.
#[derive(Clone)]
pub struct SlackTransport {
    http: HttpClient,
    url: String,
    token: SecretString,
}

impl SlackTransport {
    pub fn new(config: SlackConfig) -> Result<Self> {
        crate::tls::ensure_crypto_provider();
        let base = config.base_url.trim().trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(Error::invalid(
                "SLACK_API_BASE_URL",
                "SLACK_API_BASE_URL must be an http(s) URL",
            ));
        }
        let mut hc = HttpConfig::new("slack", config.timeout);
        hc.user_agent = "Dispatch-Slack/1".into();
        Ok(SlackTransport {
            http: HttpClient::new(hc)?,
            url: format!("{base}/chat.postMessage"),
            token: config.token,
        })
    }
}

#[async_trait]
impl DeliveryTransport for SlackTransport {
    async fn deliver(&self, d: &Delivery, parent: Option<&Delivery>) -> Attempt {
        if let Some(ts) = slack::recorded_ts(&d.payload) {
            return Attempt::Delivered {
                code: None,
                response: Some(ts.to_string()),
            };
        }
        let thread_ts = match slack::thread_ts(&d.payload, parent) {
            Ok(t) => t,
            Err(reason) => return Attempt::Skipped { reason },
        };
        let text = d.payload.get("text").and_then(|t| t.as_str()).unwrap_or("");
        let mut body = json!({
            "channel": d.target,
            "text": text,
            "unfurl_links": false,
            "unfurl_media": false,
        });
        if let Some(ts) = thread_ts {
            body["thread_ts"] = json!(ts);
        }
        let req = self
            .http
            .request(reqwest::Method::POST, &self.url)
            .bearer_auth(self.token.expose_secret())
            .header("content-type", "application/json; charset=utf-8")
            .json(&body);
        let resp = match self.http.fetch("chat.postMessage", req).await {
            Ok(r) => r,
            Err(t) => {
                return Attempt::Retry {
                    code: None,
                    error: format!("Slack unreachable: {}", t.error),
                    retry_after: None,
                };
            }
        };
        let status = resp.status;
        let code = Some(status.as_u16());
        let retry_after = resp
            .retry_after(SystemTime::now())
            .and_then(|d| chrono::Duration::from_std(d).ok());
        if status.as_u16() == 429 || status.is_server_error() {
            return Attempt::Retry {
                code,
                error: format!("Slack answered HTTP {status}"),
                retry_after,
            };
        }
        if !status.is_success() {
            return Attempt::Failed {
                code,
                error: format!("Slack answered HTTP {status}"),
            };
        }
        let answer: serde_json::Value = match serde_json::from_slice(&resp.body) {
            Ok(v) => v,
            Err(e) => {
                return Attempt::Retry {
                    code,
                    error: format!("Slack's answer is not JSON: {e}"),
                    retry_after: None,
                };
            }
        };
        if answer.get("ok").and_then(|v| v.as_bool()) == Some(true) {
            return Attempt::Delivered {
                code,
                response: answer
                    .get("ts")
                    .and_then(|t| t.as_str())
                    .map(str::to_string),
            };
        }
        let error = answer
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or("unknown_error")
            .to_string();
        if transient(&error) {
            Attempt::Retry {
                code,
                error: format!("chat.postMessage: {error}"),
                retry_after,
            }
        } else {
            Attempt::Failed {
                code,
                error: format!("chat.postMessage: {error}"),
            }
        }
    }
}
