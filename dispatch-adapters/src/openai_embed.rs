//! Text embeddings through an OpenAI-compatible API (feature `openai-embed`): [`OpenAiEmbedder`]
//! implements the core's [`Embedder`] port.
//!
//! `POST {OPENAI_BASE_URL}/embeddings` with `{"model", "input": [..], "dimensions"?}` and
//! `Authorization: Bearer {OPENAI_API_KEY}`; the answer's `data[].embedding` are put back in
//! input order by their `index` (the API does not promise the order). Inputs go in batches of
//! at most [`OpenAiEmbedConfig::batch_size`] texts. Rate limits (429), 408/409 and 5xx answers
//! and transport failures are retried with exponential backoff, waiting what `Retry-After`
//! (seconds or an HTTP date) or `retry-after-ms` asks, up to the retry configuration's `max_retry_after`.
//! Every failure reaches the core as `Upstream { service: "openai", status }` (0 when no HTTP
//! answer came) with the API's own message; 401 says the key is wrong.
//!
//! `dimensions` is sent for the `text-embedding-3-*` models and whenever
//! `OPENAI_EMBEDDING_DIMENSIONS` is set explicitly (other models refuse it); every vector must
//! have exactly that many numbers, else the call fails (a store must not mix sizes).
//!
//! HTTP goes through the shared client ([`crate::http`]): its timeouts, bounded answers, retry
//! with capped exponential backoff and full jitter, and `Retry-After`.

use crate::http::{HttpClient, HttpConfig, Idempotency, RetryConfig, settings, truncate};
use async_trait::async_trait;
use dispatch_core::ports::Embedder;
use dispatch_core::{Error, Result};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The service name in `Upstream` errors.
pub const SERVICE: &str = "openai";
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_MODEL: &str = "text-embedding-3-small";
pub const DEFAULT_DIMENSIONS: usize = 1536;
/// The largest `OPENAI_EMBEDDING_DIMENSIONS` accepted (text-embedding-3-large has 3072;
/// pgvector's `vector` type holds up to 16,000).
pub const MAX_DIMENSIONS: usize = 16_000;
/// Texts per request by default (the API takes up to 2,048, and 300,000 tokens in all).
pub const DEFAULT_BATCH: usize = 64;

/// Configuration of [`OpenAiEmbedder`]. `Debug` never shows the key.
#[derive(Debug, Clone)]
pub struct OpenAiEmbedConfig {
    pub api_key: SecretString,
    /// Without a trailing slash, with the version (`https://api.openai.com/v1`).
    pub base_url: String,
    pub model: String,
    pub dimensions: usize,
    /// Send `dimensions` in requests.
    pub send_dimensions: bool,
    pub batch_size: usize,
    /// Per try.
    pub request_timeout: Duration,
    /// 429 (its `Retry-After` up to `max_retry_after`, 30 s by default: a longer wait ends the
    /// call and the worker defers the batch), 408, 5xx and transport failures.
    pub retry: RetryConfig,
    pub user_agent: String,
}

impl OpenAiEmbedConfig {
    pub fn new(api_key: impl Into<String>) -> Self {
        OpenAiEmbedConfig {
            api_key: SecretString::from(api_key.into()),
            base_url: DEFAULT_BASE_URL.to_string(),
            model: DEFAULT_MODEL.to_string(),
            dimensions: DEFAULT_DIMENSIONS,
            send_dimensions: true,
            batch_size: DEFAULT_BATCH,
            request_timeout: Duration::from_secs(60),
            retry: RetryConfig {
                max_attempts: 4,
                max_retry_after: Duration::from_secs(30),
                ..RetryConfig::default()
            },
            user_agent: concat!("dispatch/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }

    /// Reads `OPENAI_API_KEY`, `OPENAI_BASE_URL`, `OPENAI_EMBEDDING_MODEL` and
    /// `OPENAI_EMBEDDING_DIMENSIONS` through `get`. `Ok(None)` when the key is unset or empty
    /// (embeddings off); an error naming the variable when a value is wrong.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let var = |k: &str| settings::setting(get, k);
        let Some(key) = settings::secret(get, "OPENAI_API_KEY")? else {
            return Ok(None);
        };
        let mut cfg = OpenAiEmbedConfig::new(key);
        if let Some(url) = var("OPENAI_BASE_URL") {
            cfg.base_url = settings::base_url("OPENAI_BASE_URL", &url, DEFAULT_BASE_URL)?;
        }
        if let Some(model) = var("OPENAI_EMBEDDING_MODEL") {
            if model.len() > 200 || model.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::invalid(
                    "OPENAI_EMBEDDING_MODEL",
                    format!("OPENAI_EMBEDDING_MODEL must be a model name such as {DEFAULT_MODEL}"),
                ));
            }
            cfg.model = model;
        }
        let explicit = var("OPENAI_EMBEDDING_DIMENSIONS");
        if let Some(d) = &explicit {
            cfg.dimensions = match d.parse::<usize>() {
                Ok(n) if (1..=MAX_DIMENSIONS).contains(&n) => n,
                _ => {
                    return Err(Error::invalid(
                        "OPENAI_EMBEDDING_DIMENSIONS",
                        format!(
                            "OPENAI_EMBEDDING_DIMENSIONS must be a whole number from 1 to {MAX_DIMENSIONS}, not {d:?}"
                        ),
                    ));
                }
            };
        }
        cfg.send_dimensions = explicit.is_some() || cfg.model.starts_with("text-embedding-3");
        Ok(Some(cfg))
    }
}

// ---- wire format -------------------------------------------------------------------------

/// The request body.
#[derive(Debug, Serialize)]
pub struct EmbeddingsRequest<'a> {
    pub model: &'a str,
    pub input: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<usize>,
    pub encoding_format: &'static str,
}

#[derive(Debug, Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingData>,
}

#[derive(Debug, Deserialize)]
struct EmbeddingData {
    index: usize,
    embedding: Vec<f32>,
}

/// The answer's vectors in input order; `expected` inputs of `dims` numbers each.
pub fn parse_response(
    body: &[u8],
    expected: usize,
    dims: usize,
) -> std::result::Result<Vec<Vec<f32>>, String> {
    let r: EmbeddingsResponse =
        serde_json::from_slice(body).map_err(|e| format!("not an embeddings list ({e})"))?;
    let mut out: Vec<Option<Vec<f32>>> = vec![None; expected];
    for d in r.data {
        let slot = out
            .get_mut(d.index)
            .ok_or_else(|| format!("index {} out of range for {expected} inputs", d.index))?;
        if slot.is_some() {
            return Err(format!("index {} answered twice", d.index));
        }
        if d.embedding.len() != dims {
            return Err(format!(
                "a vector has {} dimensions, {dims} expected (OPENAI_EMBEDDING_DIMENSIONS must match the model)",
                d.embedding.len()
            ));
        }
        if d.embedding.iter().any(|x| !x.is_finite()) {
            return Err(format!("vector {} holds a non-finite number", d.index));
        }
        *slot = Some(d.embedding);
    }
    out.into_iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| format!("no vector for input {i}")))
        .collect()
}

/// The message of an error answer: `{"error": {"message", "type", "code"}}`, else the start of
/// the body; 401 says what to fix.
pub fn error_message(status: u16, body: &[u8]) -> String {
    let v: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let api = v
        .as_ref()
        .and_then(|v| v["error"]["message"].as_str())
        .map(|m| truncate(m.trim(), 300))
        .unwrap_or_else(|| {
            let t = String::from_utf8_lossy(body);
            let t = t.trim();
            if t.is_empty() {
                format!("HTTP {status}")
            } else {
                truncate(t, 200)
            }
        });
    match status {
        401 => format!("the embeddings API refused OPENAI_API_KEY (401: {api})"),
        403 => format!("OPENAI_API_KEY may not use this model or endpoint (403: {api})"),
        404 => format!("no such model or endpoint at OPENAI_BASE_URL (404: {api})"),
        429 => format!("rate limited by the embeddings API (429: {api})"),
        _ => format!("embeddings API answered {status}: {api}"),
    }
}

// ---- the embedder ------------------------------------------------------------------------

/// Embeddings over an OpenAI-compatible API.
pub struct OpenAiEmbedder {
    http: HttpClient,
    url: Url,
    model: String,
    dimensions: usize,
    send_dimensions: bool,
    batch_size: usize,
    retry: RetryConfig,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("url", &self.url.as_str())
            .field("model", &self.model)
            .field("dimensions", &self.dimensions)
            .finish_non_exhaustive()
    }
}

impl OpenAiEmbedder {
    pub fn new(cfg: OpenAiEmbedConfig) -> Result<Self> {
        if !(1..=MAX_DIMENSIONS).contains(&cfg.dimensions) {
            return Err(Error::invalid(
                "OPENAI_EMBEDDING_DIMENSIONS",
                format!("OPENAI_EMBEDDING_DIMENSIONS must be from 1 to {MAX_DIMENSIONS}"),
            ));
        }
        let base = settings::base_url("OPENAI_BASE_URL", &cfg.base_url, DEFAULT_BASE_URL)?;
        let url = Url::parse(&format!("{base}/embeddings")).map_err(|_| {
            Error::invalid(
                "OPENAI_BASE_URL",
                "OPENAI_BASE_URL cannot take the /embeddings path",
            )
        })?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", cfg.api_key.expose_secret()))
            .map_err(|_| {
                Error::invalid(
                    "OPENAI_API_KEY",
                    "OPENAI_API_KEY contains characters that cannot be sent in a header",
                )
            })?;
        auth.set_sensitive(true);
        let mut http = HttpConfig::new(SERVICE, cfg.request_timeout);
        http.headers.insert(AUTHORIZATION, auth);
        http.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        http.user_agent = cfg.user_agent;
        Ok(OpenAiEmbedder {
            http: HttpClient::new(http)?,
            url,
            model: cfg.model,
            dimensions: cfg.dimensions,
            send_dimensions: cfg.send_dimensions,
            batch_size: cfg.batch_size.clamp(1, 2048),
            retry: cfg.retry,
        })
    }

    /// One request (one batch), retried by the shared client (embedding is idempotent).
    async fn request(&self, batch: &[String]) -> Result<Vec<Vec<f32>>> {
        let body = serde_json::to_vec(&EmbeddingsRequest {
            model: &self.model,
            input: batch,
            dimensions: self.send_dimensions.then_some(self.dimensions),
            encoding_format: "float",
        })
        .map_err(|e| Error::internal("could not encode an embeddings request").with_source(e))?;
        let what = format!("embedding {} texts", batch.len());
        let reply = self
            .http
            .call(&what, &self.retry, Idempotency::Idempotent, || {
                self.http
                    .request(Method::POST, self.url.clone())
                    .body(body.clone())
            })
            .await?;
        let status = reply.status.as_u16();
        if !reply.status.is_success() {
            return Err(reply.error(error_message(status, &reply.body)));
        }
        parse_response(&reply.body, batch.len(), self.dimensions)
            .map_err(|m| reply.error(format!("embeddings answer: {m}")))
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(Error::invalid(
                "input",
                format!("text {i} is empty; the embeddings API refuses empty input"),
            ));
        }
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_size) {
            out.extend(self.request(batch).await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| v.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn config_defaults_and_errors_name_the_variable() {
        assert!(
            OpenAiEmbedConfig::from_lookup(&lookup(&[]))
                .unwrap()
                .is_none()
        );
        let c = OpenAiEmbedConfig::from_lookup(&lookup(&[("OPENAI_API_KEY", "sk-1")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                c.base_url.as_str(),
                c.model.as_str(),
                c.dimensions,
                c.send_dimensions
            ),
            (DEFAULT_BASE_URL, DEFAULT_MODEL, 1536, true)
        );
        let other = OpenAiEmbedConfig::from_lookup(&lookup(&[
            ("OPENAI_API_KEY", "sk-1"),
            ("OPENAI_EMBEDDING_MODEL", "nomic-embed-text"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1/"),
        ]))
        .unwrap()
        .unwrap();
        assert!(!other.send_dimensions);
        assert_eq!(other.base_url, "http://127.0.0.1:11434/v1");
        for (k, v) in [
            ("OPENAI_EMBEDDING_DIMENSIONS", "0"),
            ("OPENAI_EMBEDDING_DIMENSIONS", "many"),
            ("OPENAI_EMBEDDING_DIMENSIONS", "20000"),
            ("OPENAI_BASE_URL", "ftp://x"),
            ("OPENAI_EMBEDDING_MODEL", "a b"),
        ] {
            let e = OpenAiEmbedConfig::from_lookup(&lookup(&[("OPENAI_API_KEY", "k"), (k, v)]))
                .unwrap_err();
            assert_eq!(e.field(), Some(k), "{k}={v}");
            assert!(e.to_string().contains(k), "{e}");
        }
    }

    #[test]
    fn answers_are_put_back_in_input_order() {
        let body = br#"{"object":"list","data":[
            {"object":"embedding","index":1,"embedding":[0.0,1.0]},
            {"object":"embedding","index":0,"embedding":[1.0,0.0]}],"model":"m","usage":{}}"#;
        assert_eq!(
            parse_response(body, 2, 2).unwrap(),
            vec![vec![1.0, 0.0], vec![0.0, 1.0]]
        );
        assert!(
            parse_response(body, 2, 3)
                .unwrap_err()
                .contains("dimensions")
        );
        assert!(parse_response(body, 3, 2).unwrap_err().contains("input 2"));
        assert!(
            parse_response(body, 1, 2)
                .unwrap_err()
                .contains("out of range")
        );
    }

    #[test]
    fn error_messages_say_what_to_fix() {
        let m = error_message(
            401,
            br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#,
        );
        assert!(
            m.contains("OPENAI_API_KEY") && m.contains("Incorrect API key"),
            "{m}"
        );
        assert_eq!(
            error_message(502, b""),
            "embeddings API answered 502: HTTP 502"
        );
    }
}
