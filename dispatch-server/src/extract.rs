//! Request body extraction with errors that name what was wrong (`400 {"field": "title"}`).

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// A JSON body. Malformed JSON, a wrong type or a missing field is a 400 whose `field` names the
/// path (`labelIds[2]`, `title`).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(e.status(), "PAYLOAD_TOO_LARGE", "request body too large")
            } else {
                ApiError::bad_request("body", format!("cannot read the request body: {e}"))
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// An optional JSON body: an empty body is `None`; anything else must parse as `T`.
pub struct MaybeJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for MaybeJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(e.status(), "PAYLOAD_TOO_LARGE", "request body too large")
            } else {
                ApiError::bad_request("body", format!("cannot read the request body: {e}"))
            }
        })?;
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(MaybeJson(None));
        }
        parse_json(&bytes).map(|v| MaybeJson(Some(v)))
    }
}

/// Query parameters; a wrong one is a JSON 400 naming it (axum's own rejection is plain text).
pub struct ApiQuery<T>(pub T);

impl<T> std::ops::Deref for ApiQuery<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner().to_string();
                let field = if path == "." || path.is_empty() {
                    inner
                        .split('`')
                        .nth(1)
                        .filter(|_| inner.starts_with("missing field"))
                        .unwrap_or("query")
                        .to_string()
                } else {
                    path
                };
                ApiError::bad_request(&field, format!("invalid query parameter {field}: {inner}"))
            })
    }
}

/// Path parameters; a wrong one is a JSON 400 (axum's own rejection is plain text).
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| ApiPath(v))
            .map_err(|e| ApiError::bad_request("path", format!("invalid path parameter: {e}")))
    }
}

/// A JSON object body ([`dispatch_adapters::json_body::parse`]); a refusal is a 400 naming the
/// field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    dispatch_adapters::json_body::parse(bytes)
        .map_err(|e| ApiError::bad_request(&e.field, e.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct B {
        title: String,
        #[serde(default)]
        labels: Vec<u32>,
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_json::<B>(br#"{"labels": []}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("title"));
        let e = parse_json::<B>(br#"{"title": "x", "labels": [1, "two"]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("labels[1]"));
        let b = parse_json::<B>(br#"{"title": "x", "labels": [1.0, 2e0]}"#).unwrap();
        assert_eq!(b.labels, vec![1, 2], "integral floats are integers");
        let e = parse_json::<B>(br#"{"title": "x", "labels": [1.5]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("labels[0]"));
        let e = parse_json::<B>(br#"{"title": "#).unwrap_err();
        assert!(e.message.contains("malformed JSON"), "{}", e.message);
        let e = parse_json::<B>(b"  ").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("body"));
    }
}
