//! Claude through the Anthropic Messages API (feature `claude`): [`ClaudeLlm`] implements the
//! core's [`Llm`] port.
//!
//! One `POST {base}/v1/messages` per call — whole answers for [`Llm::complete`], server-sent
//! events (`stream: true`, decoded by [`crate::claude_sse`]) for [`Llm::stream`] — with `x-api-key` and
//! `anthropic-version: 2023-06-01`. Content blocks `text`, `tool_use` and `tool_result` map 1:1
//! to the core's [`ContentBlock`]; other blocks an answer may carry (`thinking`, server tools)
//! are skipped. Overloaded (529), rate-limited (429) and 5xx answers and transport failures are
//! retried with exponential backoff, waiting what `retry-after` asks when it names a time (up to
//! [`ClaudeRetry::max_retry_after`]); `x-should-retry` is honoured. Every failure reaches the
//! core as `Upstream { service: "anthropic", status }` (0 when no HTTP answer came) carrying the
//! API's own error message.
//!
//! Configuration ([`ClaudeConfig::from_lookup`]): `ANTHROPIC_API_KEY` (required to enable),
//! `ANTHROPIC_BASE_URL` (default `https://api.anthropic.com`; a local fake in tests) and
//! `ORCHESTRATOR_MODEL`, the original's name for the model it asked (default
//! [`DEFAULT_MODEL`]). The key is a `SecretString`, sent as a sensitive header and never
//! logged or printed by `Debug`.
//!
//! TLS: the same reqwest (`rustls-no-provider`) + rustls `ring` stack as the `github` feature.

use crate::claude_sse::DeltaDecoder;
use crate::http::{self, Attempt, HttpClient, HttpConfig, Idempotency, Reply};
use async_trait::async_trait;
use dispatch_core::ports::{
    ContentBlock, Llm, LlmDelta, LlmMessage, LlmRequest, LlmResponse, LlmStream, Role, Usage,
};
use dispatch_core::{Error, Result};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// The service name in `Upstream` errors.
pub use crate::claude_sse::SERVICE;
/// The public API.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The model when neither the request nor `ORCHESTRATOR_MODEL` names one (the original's code
/// default for its orchestrator).
pub const DEFAULT_MODEL: &str = "claude-opus-4-6";
/// The API version this adapter speaks.
pub const API_VERSION: &str = "2023-06-01";

/// How one call is retried: the shared HTTP retry settings (`max_retry_after` is the longest
/// `retry-after` this adapter sits out; a longer one ends the call with the error).
pub type ClaudeRetry = crate::http::RetryConfig;

/// Four tries, 0.5 s doubling up to 16 s (jittered), `retry-after` up to a minute.
fn default_retry() -> ClaudeRetry {
    ClaudeRetry {
        max_attempts: 4,
        base_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(16),
        max_retry_after: Duration::from_secs(60),
    }
}

/// Configuration of [`ClaudeLlm`]. `Debug` never shows the key.
#[derive(Debug, Clone)]
pub struct ClaudeConfig {
    pub api_key: SecretString,
    /// Without a trailing slash and without `/v1`.
    pub base_url: String,
    /// Used when a request names no model.
    pub model: String,
    /// Limit of one HTTP request (a non-streaming answer of many tokens takes a while).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: ClaudeRetry,
    pub user_agent: String,
}

impl ClaudeConfig {
    pub fn new(api_key: impl Into<String>) -> Self {
        ClaudeConfig {
            api_key: SecretString::from(api_key.into()),
            base_url: DEFAULT_BASE_URL.to_string(),
            model: DEFAULT_MODEL.to_string(),
            request_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            retry: default_retry(),
            user_agent: concat!("dispatch/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }

    /// Reads `ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL` and `ORCHESTRATOR_MODEL` through `get`.
    /// `Ok(None)` when the key is unset or empty; an error naming the variable when a value is
    /// wrong.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let var = |k: &str| crate::http::settings::setting(get, k);
        let Some(key) = crate::http::settings::secret(get, "ANTHROPIC_API_KEY")? else {
            return Ok(None);
        };
        let mut cfg = ClaudeConfig::new(key);
        if let Some(url) = var("ANTHROPIC_BASE_URL") {
            cfg.base_url = check_base_url("ANTHROPIC_BASE_URL", &url)?;
        }
        if let Some(model) = var("ORCHESTRATOR_MODEL") {
            if model.len() > 200 || model.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::invalid(
                    "ORCHESTRATOR_MODEL",
                    format!("ORCHESTRATOR_MODEL must be a model name such as {DEFAULT_MODEL}"),
                ));
            }
            cfg.model = model;
        }
        Ok(Some(cfg))
    }

    pub fn from_env() -> Result<Option<Self>> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }
}

fn check_base_url(var: &str, s: &str) -> Result<String> {
    let t = crate::http::settings::base_url(var, s, DEFAULT_BASE_URL)?;
    // The SDKs take the base without the version; accept one given with it.
    Ok(t.strip_suffix("/v1").unwrap_or(&t).to_string())
}

/// The adapter's own failures; converted into the core's [`Error`] at the port boundary.
#[derive(Debug, thiserror::Error)]
enum ClaudeError {
    /// The API answered with an error body (or a non-2xx status without one).
    #[error("{kind}: {message}")]
    Api {
        status: u16,
        kind: String,
        message: String,
        request_id: Option<String>,
    },
    /// A 2xx answer that is not a message.
    #[error("unreadable answer: {0}")]
    Decode(String),
    /// A request this adapter cannot send.
    #[error("{0}")]
    Request(String),
}

impl ClaudeError {
    fn status(&self) -> u16 {
        match self {
            ClaudeError::Api { status, .. } => *status,
            ClaudeError::Decode(_) => 200,
            ClaudeError::Request(_) => 0,
        }
    }
}

impl From<ClaudeError> for Error {
    fn from(e: ClaudeError) -> Self {
        let status = e.status();
        match e {
            ClaudeError::Api {
                ref request_id,
                ref message,
                ref kind,
                ..
            } => {
                let mut m = format!("{kind}: {message}");
                if let Some(id) = request_id {
                    m.push_str(&format!(" (request id {id})"));
                }
                Error::upstream(SERVICE, status, m)
            }
            ClaudeError::Request(m) => Error::invalid("llm_request", m),
            other => Error::upstream(SERVICE, status, other.to_string()),
        }
    }
}

/// Claude over the Messages API.
pub struct ClaudeLlm {
    http: HttpClient,
    url: Url,
    model: String,
    retry: ClaudeRetry,
    /// A stream that sends nothing (not even a ping) for this long is given up.
    stream_idle: Duration,
}

/// A streamed answer may take this long in all (the idle limit ends a stalled one sooner).
const STREAM_TOTAL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

impl std::fmt::Debug for ClaudeLlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaudeLlm")
            .field("url", &self.url.as_str())
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl ClaudeLlm {
    pub fn new(cfg: ClaudeConfig) -> Result<Self> {
        let base = check_base_url("ANTHROPIC_BASE_URL", &cfg.base_url)?;
        let url = Url::parse(&format!("{base}/v1/messages")).map_err(|_| {
            Error::invalid(
                "ANTHROPIC_BASE_URL",
                "ANTHROPIC_BASE_URL cannot take a path",
            )
        })?;
        let mut key = HeaderValue::from_str(cfg.api_key.expose_secret()).map_err(|_| {
            Error::invalid(
                "ANTHROPIC_API_KEY",
                "ANTHROPIC_API_KEY contains characters that cannot be sent in a header",
            )
        })?;
        key.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", key);
        headers.insert("anthropic-version", HeaderValue::from_static(API_VERSION));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let mut hc = HttpConfig::new(SERVICE, cfg.request_timeout);
        hc.connect_timeout = cfg.connect_timeout;
        hc.headers = headers;
        hc.user_agent = cfg.user_agent.clone();
        Ok(ClaudeLlm {
            http: HttpClient::new(hc)?,
            url,
            model: cfg.model,
            retry: cfg.retry,
            stream_idle: cfg.request_timeout,
        })
    }

    /// The model used when a request names none.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// A whole answer, retried (a completion has no side effect to repeat).
    async fn send(&self, body: &[u8]) -> Result<Value> {
        let reply = http::retry(&self.retry, WHAT, Idempotency::Idempotent, |_| async {
            let req = self
                .http
                .request(reqwest::Method::POST, self.url.clone())
                .body(body.to_vec());
            match self.http.fetch(WHAT, req).await {
                Ok(r) if r.status.is_success() => Attempt::Answer(r),
                Ok(r) => failure(r),
                Err(t) => t.into(),
            }
        })
        .await?;
        serde_json::from_slice::<Value>(&reply.body)
            .map_err(|e| Error::from(ClaudeError::Decode(format!("not JSON ({e})"))))
    }

    /// Sends a streaming request until the API accepts it (retrying like `send`), and returns
    /// the response whose body is the event stream.
    async fn open_stream(&self, body: &[u8]) -> Result<reqwest::Response> {
        http::retry(&self.retry, WHAT, Idempotency::Idempotent, |_| async {
            let req = self
                .http
                .request(reqwest::Method::POST, self.url.clone())
                .timeout(STREAM_TOTAL_TIMEOUT)
                .body(body.to_vec());
            match self.http.open(WHAT, req).await {
                Ok(resp) if resp.status().is_success() => Attempt::Answer(resp),
                Ok(resp) => match self.http.read(WHAT, resp).await {
                    Ok(r) => failure(r),
                    Err(t) => t.into(),
                },
                Err(t) => t.into(),
            }
        })
        .await
    }
}

const WHAT: &str = "Anthropic API request";

/// An error answer: retried when `x-should-retry` says so, else when it is 408, 409, 429 or
/// 5xx, after `retry-after` / `retry-after-ms` when given. The body is the error's source.
fn failure<T>(reply: Reply) -> Attempt<T> {
    let should = reply
        .header("x-should-retry")
        .map(|v| v.trim().eq_ignore_ascii_case("true"));
    let retryable = should.unwrap_or(matches!(reply.status.as_u16(), 408 | 409 | 429 | 500..=599));
    let error = Error::from(api_error(reply.status, &reply.headers, &reply.body))
        .with_source(reply.error_body());
    if retryable {
        Attempt::Retry {
            wait: reply.retry_after(std::time::SystemTime::now()),
            error,
            maybe_applied: false,
        }
    } else {
        Attempt::Fail(error)
    }
}

/// `{"type":"error","error":{"type":..,"message":..}}`, else the start of the body.
fn api_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ClaudeError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let err = parsed.as_ref().and_then(|v| v.get("error"));
    let kind = err
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| match status.as_u16() {
            429 => "rate_limit_error".into(),
            529 => "overloaded_error".into(),
            _ => format!("http_{}", status.as_u16()),
        });
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(|m| truncate(m.trim(), 500))
        .unwrap_or_else(|| {
            let t = String::from_utf8_lossy(body);
            let t = t.trim();
            if t.is_empty() {
                format!("HTTP {}", status.as_u16())
            } else {
                truncate(t, 300)
            }
        });
    let request_id = parsed
        .as_ref()
        .and_then(|v| v.get("request_id"))
        .and_then(Value::as_str)
        .or_else(|| headers.get("request-id").and_then(|v| v.to_str().ok()))
        .map(|s| truncate(s, 100));
    ClaudeError::Api {
        status: status.as_u16(),
        kind,
        message,
        request_id,
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

// ---------------------------------------------------------------- wire format

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: Vec<WireBlock<'a>>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock<'a> {
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: &'a str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

#[derive(Serialize)]
struct WireTool<'a> {
    name: &'a str,
    description: &'a str,
    input_schema: &'a Value,
}

fn wire_block(b: &ContentBlock) -> WireBlock<'_> {
    match b {
        ContentBlock::Text { text } => WireBlock::Text { text },
        ContentBlock::ToolUse { id, name, input } => WireBlock::ToolUse { id, name, input },
        ContentBlock::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => WireBlock::ToolResult {
            tool_use_id,
            content,
            is_error: *is_error,
        },
    }
}

fn wire_message(m: &LlmMessage) -> WireMessage<'_> {
    WireMessage {
        role: match m.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        },
        content: m.content.iter().map(wire_block).collect(),
    }
}

/// The request body for `request`, with `default_model` when it names none.
fn request_body(
    request: &LlmRequest,
    default_model: &str,
    stream: bool,
) -> std::result::Result<Vec<u8>, ClaudeError> {
    if request.messages.is_empty() {
        return Err(ClaudeError::Request(
            "a Messages API request needs at least one message".into(),
        ));
    }
    if let Some(t) = request.temperature
        && !(t.is_finite() && (0.0..=1.0).contains(&t))
    {
        return Err(ClaudeError::Request(
            "temperature must be from 0 to 1".into(),
        ));
    }
    let model = request
        .model
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .unwrap_or(default_model);
    let wire = WireRequest {
        model,
        max_tokens: request.max_tokens.max(1),
        messages: request.messages.iter().map(wire_message).collect(),
        system: request.system.as_deref().filter(|s| !s.trim().is_empty()),
        tools: request
            .tools
            .iter()
            .map(|t| WireTool {
                name: &t.name,
                description: &t.description,
                input_schema: &t.input_schema,
            })
            .collect(),
        temperature: request.temperature,
        stream,
    };
    serde_json::to_vec(&wire).map_err(|e| ClaudeError::Request(format!("cannot encode: {e}")))
}

/// The core's response from a Messages API `message` object. Unknown block types are skipped;
/// a known block missing its fields is an error.
fn parse_response(v: &Value, default_model: &str) -> std::result::Result<LlmResponse, ClaudeError> {
    if v.get("type").and_then(Value::as_str) == Some("error") {
        return Err(api_error(
            StatusCode::OK,
            &HeaderMap::new(),
            v.to_string().as_bytes(),
        ));
    }
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| ClaudeError::Decode("no content array".into()))?;
    let str_field = |b: &Value, k: &str| -> std::result::Result<String, ClaudeError> {
        b.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ClaudeError::Decode(format!("a content block lacks {k:?}")))
    };
    let mut content = Vec::with_capacity(blocks.len());
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => content.push(ContentBlock::Text {
                text: str_field(b, "text")?,
            }),
            Some("tool_use") => content.push(ContentBlock::ToolUse {
                id: str_field(b, "id")?,
                name: str_field(b, "name")?,
                input: b
                    .get("input")
                    .cloned()
                    .unwrap_or(Value::Object(Default::default())),
            }),
            other => {
                tracing::debug!(block = other.unwrap_or("?"), "skipping a content block");
            }
        }
    }
    let usage = v.get("usage");
    let tokens = |k: &str| {
        usage
            .and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok(LlmResponse {
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(default_model)
            .to_string(),
        content,
        stop_reason: v
            .get("stop_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
        usage: Usage {
            // As the API counts them: input tokens exclude the prompt cache's.
            input_tokens: tokens("input_tokens"),
            output_tokens: tokens("output_tokens"),
            cache_creation_input_tokens: tokens("cache_creation_input_tokens"),
            cache_read_input_tokens: tokens("cache_read_input_tokens"),
        },
    })
}

#[async_trait]
impl Llm for ClaudeLlm {
    async fn complete(&self, request: LlmRequest) -> Result<LlmResponse> {
        let body = request_body(&request, &self.model, false)?;
        let v = self.send(&body).await?;
        Ok(parse_response(&v, &self.model)?)
    }

    /// `stream: true`. Failures before the first byte (429 with `retry-after`, 529, 5xx,
    /// connection) are retried like [`Llm::complete`]'s; once text has been relayed nothing is
    /// retried: an `error` event or a cut-off stream ends the stream with an error.
    async fn stream(&self, request: LlmRequest) -> Result<LlmStream> {
        let body = request_body(&request, &self.model, true)?;
        let resp = self.open_stream(&body).await?;
        let idle = self.stream_idle;
        let state = StreamState {
            resp: Some(resp),
            deltas: DeltaDecoder::new(),
            idle,
        };
        Ok(Box::pin(futures::stream::unfold(state, next_delta)))
    }
}

struct StreamState {
    resp: Option<reqwest::Response>,
    /// Bytes to deltas (no I/O; see [`crate::claude_sse`]).
    deltas: DeltaDecoder,
    idle: Duration,
}

async fn next_delta(mut st: StreamState) -> Option<(Result<LlmDelta>, StreamState)> {
    loop {
        if let Some(d) = st.deltas.pop() {
            return Some((d, st));
        }
        if st.deltas.is_done() {
            return None;
        }
        let resp = st.resp.as_mut()?;
        match tokio::time::timeout(st.idle, resp.chunk()).await {
            Err(_) => {
                st.deltas.close();
                st.resp = None;
                let secs = st.idle.as_secs();
                return Some((
                    Err(Error::upstream(
                        SERVICE,
                        0,
                        format!("the Anthropic stream sent nothing for {secs} s"),
                    )),
                    st,
                ));
            }
            Ok(Err(e)) => {
                st.deltas.close();
                st.resp = None;
                return Some((
                    Err(
                        Error::upstream(SERVICE, 0, "the Anthropic stream was cut off")
                            .with_source(e),
                    ),
                    st,
                ));
            }
            Ok(Ok(Some(bytes))) => st.deltas.push_bytes(&bytes),
            Ok(Ok(None)) => {
                st.resp = None;
                st.deltas.finish();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_lookup_names_the_variable() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(ClaudeConfig::from_lookup(&env(&[])).unwrap().is_none());
        let c = ClaudeConfig::from_lookup(&env(&[
            ("ANTHROPIC_API_KEY", "sk-ant-secret"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/v1/"),
            ("ORCHESTRATOR_MODEL", "claude-haiku-4-5"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.base_url, "http://127.0.0.1:9");
        assert_eq!(c.model, "claude-haiku-4-5");
        assert!(!format!("{c:?}").contains("sk-ant-secret"));
        let e = ClaudeConfig::from_lookup(&env(&[
            ("ANTHROPIC_API_KEY", "k"),
            ("ANTHROPIC_BASE_URL", "ftp://x"),
        ]))
        .unwrap_err();
        assert_eq!(e.field(), Some("ANTHROPIC_BASE_URL"));
        let e = ClaudeConfig::from_lookup(&env(&[
            ("ANTHROPIC_API_KEY", "k"),
            ("ORCHESTRATOR_MODEL", "two words"),
        ]))
        .unwrap_err();
        assert_eq!(e.field(), Some("ORCHESTRATOR_MODEL"));
        let e = ClaudeConfig::from_lookup(&env(&[("ANTHROPIC_API_KEY", "a b")])).unwrap_err();
        assert_eq!(e.field(), Some("ANTHROPIC_API_KEY"));
    }

    #[test]
    fn unknown_blocks_are_skipped_and_broken_ones_rejected() {
        let v = serde_json::json!({
            "type": "message", "model": "m",
            "content": [{"type": "thinking", "thinking": "hm"}, {"type": "text", "text": "hi"}],
            "usage": {"input_tokens": 3, "cache_read_input_tokens": 2, "output_tokens": 1}
        });
        let r = parse_response(&v, "d").unwrap();
        assert_eq!(r.content, vec![ContentBlock::Text { text: "hi".into() }]);
        assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (3, 1));
        assert_eq!(r.usage.cache_read_input_tokens, 2);
        let bad = serde_json::json!({"content": [{"type": "tool_use", "name": "x"}]});
        assert!(parse_response(&bad, "d").is_err());
        assert!(parse_response(&serde_json::json!({"nope": 1}), "d").is_err());
    }
}
