//! OpenAI's embeddings API as a test fake speaks it (`POST /v1/embeddings`), with a toy model
//! whose vectors come from the text alone: a hashed bag of "concepts". Each word of at least 2
//! letters is lower-cased, a few synonyms are folded into one concept (`login`/`signin`/`logon`,
//! `crash`/`panic`/`abort`, …), and the concept is hashed into one of `dims` buckets, the vector
//! then normalised. Texts sharing concepts are close by cosine, so a text is semantically close
//! to another that shares no word with it but only synonyms — what a keyword search misses.
//! Used with a local HTTP fake (wiremock) in adapter and server tests.

use serde_json::{Value, json};

/// Words folded into one concept (the first of each group).
const SYNONYMS: &[&[&str]] = &[
    &[
        "login",
        "signin",
        "logon",
        "authenticate",
        "authentication",
        "sign",
    ],
    &["crash", "panic", "abort", "segfault", "crashes", "crashed"],
    &[
        "fail", "fails", "failing", "failure", "broken", "error", "errors",
    ],
    &["slow", "sluggish", "latency", "laggy", "lag"],
    &["payment", "checkout", "billing", "charge", "invoice"],
    &[
        "user",
        "users",
        "customer",
        "customers",
        "account",
        "accounts",
    ],
];

fn concept(word: &str) -> &str {
    for group in SYNONYMS {
        if group.contains(&word) {
            return group[0];
        }
    }
    word
}

/// FNV-1a: stable across runs and platforms.
fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The toy model's unit vector of `text` (all zeros for a text without words).
pub fn embedding(text: &str, dims: usize) -> Vec<f32> {
    let dims = dims.max(1);
    let mut v = vec![0f32; dims];
    for w in text.split(|c: char| !c.is_alphanumeric()) {
        if w.chars().count() < 2 {
            continue;
        }
        let w = w.to_lowercase();
        let h = fnv(concept(&w));
        let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
        v[(h % dims as u64) as usize] += sign;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    }
    v
}

/// The API's answer to a request body `{model, input, dimensions?}` (`input` a string or an
/// array of strings), `default_dims` when the request names no dimensions. The data come back
/// in reverse order, each with its `index`, as a client must not rely on the order. `None`
/// for a body the API would refuse (no input, an empty string).
pub fn response(request: &Value, default_dims: usize) -> Option<Value> {
    let inputs: Vec<String> = match &request["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    if inputs.is_empty() || inputs.iter().any(|s| s.is_empty()) {
        return None;
    }
    let dims = request["dimensions"]
        .as_u64()
        .map_or(default_dims, |d| d as usize);
    let tokens: usize = inputs.iter().map(|s| s.split_whitespace().count()).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(index, text)| {
            json!({"object": "embedding", "index": index, "embedding": embedding(text, dims)})
        })
        .collect();
    Some(json!({
        "object": "list",
        "data": data,
        "model": request["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    }))
}

/// The API's error body.
pub fn error(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// The toy model in-process, as the core's `Embedder` port (engine tests without HTTP). While
/// `failing` is set every call fails like an unreachable API.
pub struct ToyEmbedder {
    pub dims: usize,
    pub failing: std::sync::atomic::AtomicBool,
    /// Calls made (texts embedded, in all).
    pub texts: std::sync::atomic::AtomicUsize,
}

impl ToyEmbedder {
    pub fn new(dims: usize) -> Self {
        ToyEmbedder {
            dims,
            failing: Default::default(),
            texts: Default::default(),
        }
    }
}

#[async_trait::async_trait]
impl crate::ports::Embedder for ToyEmbedder {
    fn model(&self) -> &str {
        "toy-embedding"
    }
    fn dimensions(&self) -> usize {
        self.dims
    }
    async fn embed(&self, texts: &[String]) -> crate::Result<Vec<Vec<f32>>> {
        use std::sync::atomic::Ordering;
        if self.failing.load(Ordering::SeqCst) {
            return Err(crate::Error::upstream(
                "openai",
                503,
                "embeddings API unavailable",
            ));
        }
        self.texts.fetch_add(texts.len(), Ordering::SeqCst);
        Ok(texts.iter().map(|t| embedding(t, self.dims)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::cosine;

    #[test]
    fn synonyms_are_close_and_unrelated_texts_are_not() {
        let a = embedding("Login fails for users", 256);
        let b = embedding("signin broken for customers", 256);
        let c = embedding("Export to CSV drops the header row", 256);
        assert!(cosine(&a, &b) > 0.95, "{}", cosine(&a, &b));
        assert!(cosine(&a, &c) < 0.3, "{}", cosine(&a, &c));
        assert_eq!(embedding("x", 8), vec![0.0; 8]);
    }

    #[test]
    fn response_has_one_indexed_vector_per_input() {
        let r = response(
            &json!({"model": "m", "input": ["a b", "c d"], "dimensions": 4}),
            8,
        )
        .expect("answer");
        assert_eq!(r["data"][0]["index"], 1);
        assert_eq!(r["data"][1]["embedding"].as_array().map(Vec::len), Some(4));
        assert!(response(&json!({"model": "m", "input": []}), 8).is_none());
    }
}
