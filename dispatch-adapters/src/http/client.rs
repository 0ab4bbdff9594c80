//! [`HttpClient`]: one reqwest client per outside service with its timeouts, one try sent and
//! read ([`HttpClient::fetch`]) and classified ([`HttpClient::attempt`]), and retried calls
//! ([`HttpClient::call`]). Answers are read whole up to a bound; error answers keep the start of
//! their body as the core [`Error`]'s source ([`ErrorBody`]), never in its message.

use super::retry::{Attempt, Idempotency, RetryConfig, retry, retry_after};
use dispatch_core::{Error, Result};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How much of an error answer's body is kept in its [`ErrorBody`].
pub const ERROR_BODY_LIMIT: usize = 2048;

/// How a service's client is built.
#[derive(Clone)]
pub struct HttpConfig {
    /// The service's name in errors and logs (`github`, `slack`, `loki`, ...).
    pub service: &'static str,
    /// Per try, connect to last byte (`None`: no total limit, for streams; set one per request).
    pub timeout: Option<Duration>,
    pub connect_timeout: Duration,
    pub user_agent: String,
    /// Sent with every request (authorisation, API version, tenant).
    pub headers: HeaderMap,
    /// Redirects are followed (up to 10) unless this is false.
    pub follow_redirects: bool,
    /// A resolver of host names (the webhook sender's public-addresses-only one).
    pub resolver: Option<Arc<dyn reqwest::dns::Resolve>>,
    /// The largest answer read; a longer one is a failure.
    pub max_body: usize,
}

impl HttpConfig {
    /// `timeout` per try (connect at most 10 s of it), redirects followed, answers up to 32 MiB.
    pub fn new(service: &'static str, timeout: Duration) -> Self {
        HttpConfig {
            service,
            timeout: Some(timeout),
            connect_timeout: timeout.min(Duration::from_secs(10)),
            user_agent: "dispatch".into(),
            headers: HeaderMap::new(),
            follow_redirects: true,
            resolver: None,
            max_body: 32 << 20,
        }
    }
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("service", &self.service)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

/// An HTTP answer, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    service: &'static str,
}

impl Reply {
    /// An answer built by hand (tests, adapters that read a stream's error answer).
    pub fn new(
        service: &'static str,
        status: StatusCode,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Self {
        Reply {
            status,
            headers,
            body,
            service,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The trimmed start of the body (`max` characters), `None` when empty.
    pub fn excerpt(&self, max: usize) -> Option<String> {
        let text = self.text();
        let t = text.trim();
        (!t.is_empty()).then(|| truncate(t, max))
    }

    /// The wait the server asks for (`Retry-After`, `retry-after-ms`).
    pub fn retry_after(&self, now: SystemTime) -> Option<Duration> {
        retry_after(&self.headers, now)
    }

    /// The body parsed as JSON; a body that is not is an upstream error naming `what`.
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::upstream(
                self.service,
                self.status.as_u16(),
                format!("{what}: the answer is not the expected JSON ({e})"),
            )
            .with_source(self.error_body())
        })
    }

    /// The start of the body and the status, to attach as an error's source.
    pub fn error_body(&self) -> ErrorBody {
        ErrorBody {
            status: self.status.as_u16(),
            body: self.excerpt(ERROR_BODY_LIMIT).unwrap_or_default(),
        }
    }

    /// An upstream error with `message` (which should say what failed and what to do, not paste
    /// the body) and the body as its source.
    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::upstream(self.service, self.status.as_u16(), message).with_source(self.error_body())
    }
}

/// The status and the start of the body of an error answer: the source of the core error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    pub status: u16,
    /// At most [`ERROR_BODY_LIMIT`] characters, trimmed.
    pub body: String,
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.body.is_empty() {
            write!(f, "HTTP {} with an empty body", self.status)
        } else {
            write!(f, "HTTP {}: {}", self.status, self.body)
        }
    }
}

impl std::error::Error for ErrorBody {}

/// A try that got no (whole) answer.
#[derive(Debug)]
pub struct Transport {
    /// Upstream error (status 0) naming the call, the reason and the origin; the reqwest error
    /// is its source.
    pub error: Error,
    pub timeout: bool,
    /// The connection never opened: nothing was sent.
    pub connect: bool,
}

impl Transport {
    /// The request may have been applied unless the connection never opened.
    pub fn maybe_applied(&self) -> bool {
        !self.connect
    }
}

impl<T> From<Transport> for Attempt<T> {
    fn from(t: Transport) -> Self {
        Attempt::Retry {
            wait: None,
            maybe_applied: t.maybe_applied(),
            error: t.error,
        }
    }
}

/// The client of one outside service.
#[derive(Clone)]
pub struct HttpClient {
    http: reqwest::Client,
    service: &'static str,
    max_body: usize,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    pub fn new(cfg: HttpConfig) -> Result<Self> {
        crate::tls::ensure_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .default_headers(cfg.headers)
            .connect_timeout(cfg.connect_timeout);
        if let Some(t) = cfg.timeout {
            builder = builder.timeout(t);
        }
        if !cfg.user_agent.is_empty() {
            let ua = HeaderValue::from_str(&cfg.user_agent)
                .unwrap_or_else(|_| HeaderValue::from_static("dispatch"));
            builder = builder.user_agent(ua);
        }
        if !cfg.follow_redirects {
            builder = builder.redirect(reqwest::redirect::Policy::none());
        }
        if let Some(r) = cfg.resolver {
            builder = builder.dns_resolver(r);
        }
        let http = builder.build().map_err(|e| {
            Error::internal(format!("could not build the {} HTTP client", cfg.service))
                .with_source(e)
        })?;
        Ok(HttpClient {
            http,
            service: cfg.service,
            max_body: cfg.max_body,
        })
    }

    pub fn service(&self) -> &'static str {
        self.service
    }

    /// A request to fill in (headers, body, a per-request timeout) and pass to
    /// [`fetch`](Self::fetch) / [`attempt`](Self::attempt).
    pub fn request(&self, method: Method, url: impl reqwest::IntoUrl) -> RequestBuilder {
        self.http.request(method, url)
    }

    /// Sends one request and reads the answer whole (up to the configured bound), whatever its
    /// status. `what` names the call in errors ("listing the runs of workflow x.yml").
    pub async fn fetch(
        &self,
        what: &str,
        req: RequestBuilder,
    ) -> std::result::Result<Reply, Transport> {
        let resp = self.open(what, req).await?;
        self.read(what, resp).await
    }

    /// Sends one request and returns the response unread (a stream), whatever its status.
    pub async fn open(
        &self,
        what: &str,
        req: RequestBuilder,
    ) -> std::result::Result<reqwest::Response, Transport> {
        req.send().await.map_err(|e| self.transport(what, e))
    }

    /// Reads a response whole (up to the bound).
    pub async fn read(
        &self,
        what: &str,
        mut resp: reqwest::Response,
    ) -> std::result::Result<Reply, Transport> {
        let status = resp.status();
        let headers = std::mem::take(resp.headers_mut());
        let origin = resp.url().origin().ascii_serialization();
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if body.len() + c.len() > self.max_body {
                        return Err(Transport {
                            error: Error::upstream(
                                self.service,
                                status.as_u16(),
                                format!(
                                    "{what}: the answer of {origin} is larger than {} bytes",
                                    self.max_body
                                ),
                            ),
                            timeout: false,
                            connect: false,
                        });
                    }
                    body.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => return Err(self.transport(what, e)),
            }
        }
        Ok(Reply::new(self.service, status, headers, body))
    }

    /// One try, classified the common way: 408, 429 and 5xx are worth another try (after the
    /// server's `Retry-After` when it names one; 5xx may have been applied), connection
    /// failures and timeouts too; every other answer is the caller's to map.
    pub async fn attempt(&self, what: &str, req: RequestBuilder) -> Attempt {
        match self.fetch(what, req).await {
            Ok(reply) => classify(what, reply),
            Err(t) => t.into(),
        }
    }

    /// A retried call: tries [`attempt`](Self::attempt) under `retry`; `req` builds each try's
    /// request. Returns the final answer, whatever its status, for the caller to map.
    pub async fn call(
        &self,
        what: &str,
        retry_cfg: &RetryConfig,
        idempotency: Idempotency,
        req: impl Fn() -> RequestBuilder,
    ) -> Result<Reply> {
        retry(retry_cfg, what, idempotency, |_| self.attempt(what, req())).await
    }

    /// The error of a try without an answer: what, why, and only the origin of the URL (its path
    /// and query may carry tokens); the reqwest error is the source.
    pub fn transport(&self, what: &str, e: reqwest::Error) -> Transport {
        let why = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else {
            "failed in transit"
        };
        let origin = e
            .url()
            .map(|u| format!(" ({})", u.origin().ascii_serialization()))
            .unwrap_or_default();
        Transport {
            timeout: e.is_timeout(),
            connect: e.is_connect(),
            error: Error::upstream(self.service, 0, format!("{what} {why}{origin}")).with_source(e),
        }
    }
}

/// The common classification of an answer (see [`HttpClient::attempt`]).
pub fn classify(what: &str, reply: Reply) -> Attempt {
    let status = reply.status.as_u16();
    if reply.status.is_server_error() || matches!(status, 408 | 429) {
        let wait = reply.retry_after(SystemTime::now());
        let error = reply.error(format!("{what} failed: HTTP {status}"));
        return Attempt::Retry {
            wait,
            error,
            maybe_applied: reply.status.is_server_error(),
        };
    }
    Attempt::Answer(reply)
}

/// `base/seg/seg...`, each segment percent-encoded; `var` names the setting in the error.
pub fn join(base: &Url, segments: &[&str], var: &str) -> Result<Url> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|_| Error::invalid(var, format!("{var} cannot take a path")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// An http(s) URL with a host, its trailing slash dropped; the error names `var`.
pub fn parse_base(var: &str, url: &str) -> Result<Url> {
    Url::parse(url.trim().trim_end_matches('/'))
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| Error::invalid(var, format!("{var} must be an http(s) URL, not {url:?}")))
}

/// At most `max` characters, with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}
