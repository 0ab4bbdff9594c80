//! The one Loki HTTP client, shared by the orchestrator's Loki tools
//! ([`crate::analytics::loki::LokiTools`]) and the alert enrichment
//! ([`crate::loki_gateway::LokiGateway`]): base URL, `X-Scope-OrgID`, basic or bearer
//! authorisation, one `GET` with its own timeout, `query_range` URLs, LogQL string literals and
//! Loki's error messages. Each caller keeps its own error wording (a tool's answer to the model,
//! a logged warning) and its own timeouts.

use crate::http::{self, HttpClient, HttpConfig, Reply, Transport};
use chrono::{DateTime, Utc};
use dispatch_core::{Error, Result};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::fmt::Write as _;
use std::time::Duration;

/// How requests to Loki authenticate. `Debug` never shows secrets.
#[derive(Debug, Clone, Default)]
pub enum LokiAuth {
    #[default]
    None,
    /// `LOKI_USERNAME` / `LOKI_PASSWORD` (HTTP basic).
    Basic {
        username: String,
        password: SecretString,
    },
    /// `LOKI_TOKEN` / `LOKI_GATEWAY_TOKEN` (bearer).
    Bearer(SecretString),
}

/// A Loki endpoint.
pub(crate) struct LokiClient {
    http: HttpClient,
    base: Url,
    auth: LokiAuth,
}

impl std::fmt::Debug for LokiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LokiClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl LokiClient {
    /// `base` checked by the caller; `tenant` goes out as `X-Scope-OrgID`; every request gets
    /// its own total timeout, `connect_timeout` bounds the connection.
    pub fn new(
        base: Url,
        tenant: Option<&str>,
        auth: LokiAuth,
        connect_timeout: Duration,
    ) -> Result<Self> {
        let mut headers = HeaderMap::new();
        if let Some(t) = tenant {
            let v = HeaderValue::from_str(t).map_err(|_| {
                Error::invalid(
                    "LOKI_TENANT_ID",
                    "LOKI_TENANT_ID cannot be sent in a header",
                )
            })?;
            headers.insert("x-scope-orgid", v);
        }
        let mut hc = HttpConfig::new("loki", connect_timeout);
        hc.timeout = None;
        hc.connect_timeout = connect_timeout;
        hc.headers = headers;
        Ok(LokiClient {
            http: HttpClient::new(hc)?,
            base,
            auth,
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `base/tail…`, each segment percent-encoded.
    pub fn url(&self, tail: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty().extend(tail);
        }
        url
    }

    /// `query_range` of `query` over `[start, end]`, newest first, at most `limit` lines; `None`
    /// when the window is out of the nanosecond range.
    pub fn query_range_url(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        limit: u32,
    ) -> Option<Url> {
        let mut url = self.url(&["loki", "api", "v1", "query_range"]);
        url.query_pairs_mut()
            .append_pair("query", query)
            .append_pair("start", &start.timestamp_nanos_opt()?.to_string())
            .append_pair("end", &end.timestamp_nanos_opt()?.to_string())
            .append_pair("limit", &limit.to_string())
            .append_pair("direction", "backward");
        Some(url)
    }

    /// One authorised `GET` within `timeout`, read whole, whatever its status.
    pub async fn get(
        &self,
        what: &str,
        url: Url,
        timeout: Duration,
    ) -> std::result::Result<Reply, Transport> {
        let req = self.http.request(Method::GET, url).timeout(timeout);
        let req = match &self.auth {
            LokiAuth::None => req,
            LokiAuth::Basic { username, password } => {
                req.basic_auth(username, Some(password.expose_secret()))
            }
            LokiAuth::Bearer(t) => req.bearer_auth(t.expose_secret()),
        };
        self.http.fetch(what, req).await
    }
}

/// Loki's own message in an error answer (plain text or `{"error"|"message": …}`), at most
/// `max` characters.
pub(crate) fn loki_message(reply: &Reply, max: usize) -> String {
    let from_json = serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .and_then(|v| {
            ["error", "message"]
                .iter()
                .find_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_string))
        });
    match from_json {
        Some(m) => http::truncate(m.trim(), max),
        None => reply.excerpt(max).unwrap_or_default(),
    }
}

/// The innermost cause of a failed try ("Connection refused (os error 111)").
pub(crate) fn cause(t: &Transport) -> String {
    let mut msg = t.error.message.clone();
    let mut src: Option<&(dyn std::error::Error + 'static)> = t
        .error
        .source
        .as_deref()
        .map(|e| e as &(dyn std::error::Error + 'static));
    while let Some(s) = src {
        msg = s.to_string();
        src = s.source();
    }
    msg
}

/// A LogQL string literal: double-quoted, with backslash, double quote and control characters
/// escaped, so the value can never end the literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
