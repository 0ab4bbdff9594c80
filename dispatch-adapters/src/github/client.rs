//! The HTTP side of the GitHub runner: headers, one attempt classified into answer / retry /
//! failure, retries for idempotent calls, and GitHub's rate-limit headers.

use super::config::{GithubConfig, RetryPolicy};
use crate::http::{self, HttpClient, HttpConfig};
use dispatch_core::{Error, ErrorKind, Result};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, Url};
use secrecy::ExposeSecret;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) use crate::http::{Attempt, Reply, after_attempts};

pub(crate) const SERVICE: &str = "github";
const API_VERSION: &str = "2022-11-28";
const MEDIA_TYPE: &str = "application/vnd.github+json";

/// What GitHub's answers carry beyond HTTP: the `message` (+ `errors`) of an error body and the
/// rate-limit headers.
pub(crate) trait GithubReply {
    /// GitHub's `message` field, or the start of the body.
    fn message(&self) -> String;
    /// A primary or secondary rate limit (403 with the rate-limit signs, or 429).
    fn is_rate_limited(&self) -> bool;
    /// How long GitHub asks us to wait: `retry-after` (seconds or an HTTP-date), else until
    /// `x-ratelimit-reset` when the quota is spent. `None` when the answer names no time.
    fn rate_limit_wait(&self, now: SystemTime) -> Option<Duration>;
    fn rate_limit_reset(&self) -> Option<SystemTime>;
}

impl GithubReply for Reply {
    fn message(&self) -> String {
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&self.body).ok();
        if let Some(m) = parsed
            .as_ref()
            .and_then(|v| v.get("message"))
            .and_then(|m| m.as_str())
        {
            let mut m = m.trim().to_string();
            // Validation errors carry details in `errors` (strings or objects).
            if let Some(errs) = parsed
                .as_ref()
                .and_then(|v| v.get("errors"))
                .and_then(|e| e.as_array())
            {
                let details: Vec<String> = errs
                    .iter()
                    .map(|e| match e.as_str() {
                        Some(s) => s.to_string(),
                        None => e
                            .get("message")
                            .and_then(|m| m.as_str())
                            .map(str::to_string)
                            .unwrap_or_else(|| e.to_string()),
                    })
                    .collect();
                if !details.is_empty() {
                    m = format!("{m} ({})", details.join("; "));
                }
            }
            return http::truncate(&m, 500);
        }
        self.excerpt(300)
            .unwrap_or_else(|| format!("HTTP {}", self.status.as_u16()))
    }

    fn is_rate_limited(&self) -> bool {
        match self.status.as_u16() {
            429 => true,
            403 => {
                self.header("x-ratelimit-remaining") == Some("0")
                    || self.headers.contains_key(RETRY_AFTER)
                    || self.message().to_ascii_lowercase().contains("rate limit")
            }
            _ => false,
        }
    }

    fn rate_limit_wait(&self, now: SystemTime) -> Option<Duration> {
        if let Some(w) = self
            .header("retry-after")
            .and_then(|v| http::parse_retry_after(v, now))
        {
            return Some(w);
        }
        if self.header("x-ratelimit-remaining") == Some("0") {
            return self
                .rate_limit_reset()
                .map(|reset| reset.duration_since(now).unwrap_or(Duration::ZERO));
        }
        None
    }

    fn rate_limit_reset(&self) -> Option<SystemTime> {
        self.header("x-ratelimit-reset")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .and_then(|secs| UNIX_EPOCH.checked_add(Duration::from_secs(secs)))
    }
}

pub(crate) struct GithubClient {
    http: HttpClient,
    base: Url,
    retry: RetryPolicy,
    /// Set when GitHub said the quota is spent: no request goes out before this time.
    blocked_until: Mutex<Option<SystemTime>>,
}

impl std::fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl GithubClient {
    pub fn new(cfg: &GithubConfig) -> Result<Self> {
        let base = http::parse_base("GITHUB_API_URL", &cfg.api_url)?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", cfg.token.expose_secret()))
            .map_err(|_| {
                Error::invalid(
                    "GITHUB_TOKEN",
                    "GITHUB_TOKEN contains characters that cannot be sent in a header",
                )
            })?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        headers.insert(ACCEPT, HeaderValue::from_static(MEDIA_TYPE));
        headers.insert(
            "x-github-api-version",
            HeaderValue::from_static(API_VERSION),
        );
        let mut hc = HttpConfig::new(SERVICE, cfg.request_timeout);
        hc.headers = headers;
        hc.user_agent = cfg.user_agent.clone();
        Ok(GithubClient {
            http: HttpClient::new(hc)?,
            base,
            retry: cfg.retry.clone(),
            blocked_until: Mutex::new(None),
        })
    }

    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// `base/seg/seg...?query`, each segment percent-encoded.
    pub fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Url> {
        let mut url = http::join(&self.base, segments, "GITHUB_API_URL")?;
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// One request, classified. `what` names the call in error messages.
    pub async fn attempt(
        &self,
        what: &str,
        method: Method,
        url: &Url,
        body: Option<&serde_json::Value>,
    ) -> Attempt {
        if let Err(e) = self.wait_for_quota(what).await {
            return Attempt::Fail(e);
        }
        let mut req = self.http.request(method, url.clone());
        if let Some(b) = body {
            req = req.json(b);
        }
        let reply = match self.http.fetch(what, req).await {
            Ok(r) => r,
            Err(t) => return t.into(),
        };
        self.note_quota(&reply);
        self.classify(what, reply)
    }

    fn classify(&self, what: &str, reply: Reply) -> Attempt {
        let now = SystemTime::now();
        if reply.is_rate_limited() {
            let wait = reply.rate_limit_wait(now);
            let error = rate_limit_error(what, &reply, wait);
            // No time named (a secondary limit): GitHub asks for at least a minute, which is
            // the dispatcher's backoff to sit out, not ours.
            return match wait {
                Some(w) if w <= self.retry.max_retry_after => Attempt::Retry {
                    wait: Some(w),
                    error,
                    maybe_applied: false,
                },
                _ => Attempt::Fail(error),
            };
        }
        if reply.status.is_server_error() {
            let error = reply.error(format!("{what} failed: {}", reply.message()));
            return Attempt::Retry {
                wait: None,
                error,
                maybe_applied: true,
            };
        }
        Attempt::Answer(reply)
    }

    /// Sits out a known quota reset (up to the cap), or refuses at once.
    async fn wait_for_quota(&self, what: &str) -> Result<()> {
        let until = *self.blocked_until.lock().unwrap_or_else(|e| e.into_inner());
        let Some(until) = until else { return Ok(()) };
        let now = SystemTime::now();
        let Ok(wait) = until.duration_since(now) else {
            return Ok(());
        };
        if wait > self.retry.max_retry_after {
            return Err(Error::new(
                ErrorKind::RateLimited,
                format!(
                    "{what} not sent: the GitHub API quota of this token is spent until {} \
                     (in {} s); Dispatch retries after that",
                    rfc3339(until),
                    wait.as_secs()
                ),
            ));
        }
        tracing::info!(
            wait_ms = wait.as_millis() as u64,
            "waiting for the GitHub rate limit to reset"
        );
        tokio::time::sleep(wait).await;
        Ok(())
    }

    fn note_quota(&self, reply: &Reply) {
        let spent = reply.header("x-ratelimit-remaining") == Some("0");
        let mut guard = self.blocked_until.lock().unwrap_or_else(|e| e.into_inner());
        *guard = if spent {
            reply.rate_limit_reset()
        } else {
            None
        };
    }

    /// An idempotent call (GET, cancel): retries 5xx, timeouts, connection errors and short rate
    /// limits with backoff; returns the final answer, whatever its status, for the caller to map.
    pub async fn call(
        &self,
        what: &str,
        method: Method,
        url: &Url,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply> {
        http::retry(&self.retry, what, http::Idempotency::Idempotent, |_| {
            self.attempt(what, method.clone(), url, body)
        })
        .await
    }
}

fn rate_limit_error(what: &str, reply: &Reply, wait: Option<Duration>) -> Error {
    let mut msg = format!(
        "GitHub rate limit hit on {what} ({}: {})",
        reply.status.as_u16(),
        reply.message()
    );
    if let Some(reset) = reply.rate_limit_reset() {
        msg.push_str(&format!("; the quota resets at {}", rfc3339(reset)));
    }
    if let Some(w) = wait {
        msg.push_str(&format!("; GitHub asks to wait {} s", w.as_secs()));
    }
    msg.push_str(
        "; Dispatch retries later. Frequent limits: use a dedicated token or a GitHub App",
    );
    Error::new(ErrorKind::RateLimited, msg).with_source(reply.error_body())
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
