//! Inbound webhooks: Grafana/Loki alerts, Sentry issues, GitHub pull requests and deploys.
//!
//! Every handler reads the raw body first and authenticates it (bearer secret and optional
//! Grafana HMAC, Sentry and GitHub HMAC-SHA256 over the exact bytes, all compared in constant
//! time) before anything is parsed. Deliveries that carry an id (Sentry `Request-ID`, GitHub
//! `X-GitHub-Delivery`) are de-duplicated in the store, so a redelivery has no second effect.
//! The `GET` routes answer a health check that names the supported events and nothing about the
//! configuration.

mod github;
mod grafana;
pub mod sentry;

use crate::error::{ApiError, ApiResult};
use crate::openapi::{ApiRouter, doc, get};
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .route(
            "/api/loki/webhook",
            get(grafana::health, doc("Webhook health").tag("webhooks")).post(
                grafana::receive,
                doc("Grafana unified-alerting webhook (bearer secret; optional HMAC); 401 without them")
                    .signature("grafanaSecret")
                    .payload::<grafana::Payload>()
                    .tag("webhooks"),
            ),
        )
        .route(
            "/api/sentry/webhook",
            get(sentry::health, doc("Webhook health").tag("webhooks")).post(
                sentry::receive,
                doc("Sentry issue webhook (Sentry-Hook-Signature); 401 without a valid signature")
                    .signature("sentrySignature")
                    .tag("webhooks"),
            ),
        )
        .route(
            "/api/github/webhook",
            get(github::health, doc("Webhook health").tag("webhooks")).post(
                github::receive,
                doc("GitHub webhook (X-Hub-Signature-256): pull requests, deploys; 401 without a valid signature")
                    .signature("githubSignature")
                    .tag("webhooks"),
            ),
        )
        .map(|r| {
            r.layer(axum::middleware::from_fn_with_state(
                DetachLimit::new(MAX_DETACHED),
                detached,
            ))
        })
}

/// At most this many webhook handlings (and, separately, agent callback handlings) run at once
/// per process. Each runs on its own task to the end ([`detached`]), so without a bound an alert
/// storm would pile up tasks and memory; beyond it a delivery is answered 503 with Retry-After
/// at once, before anything is read or recorded, and the sender retries.
pub const MAX_DETACHED: usize = 512;

/// The in-flight bound of one group of detached routes.
#[derive(Clone, Debug)]
pub struct DetachLimit(std::sync::Arc<tokio::sync::Semaphore>);

impl DetachLimit {
    pub fn new(max: usize) -> Self {
        DetachLimit(std::sync::Arc::new(tokio::sync::Semaphore::new(max)))
    }
}

/// Runs a webhook's (or an agent callback's) handling on its own task. A sender that stops waiting (Sentry gives up after
/// about a second; any client may disconnect) would otherwise drop the handler mid-way — after
/// the delivery id was recorded and before the ingest, say — and the event would be lost, or a
/// redelivery refused as a duplicate. Detached, the handling always runs to the end; the
/// response goes to whoever still waits for it.
pub async fn detached(
    axum::extract::State(limit): axum::extract::State<DetachLimit>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Ok(permit) = limit.0.try_acquire_owned() else {
        return ApiError::from(dispatch_core::Error::unavailable(
            "too many deliveries are being handled; retry shortly",
        ))
        .into_response();
    };
    // The permit goes with the task: it is held until the handling ends, even when the
    // sender stopped waiting.
    let task = async move {
        let response = next.run(req).await;
        drop(permit);
        response
    };
    match tokio::spawn(task).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "webhook handler panicked");
            ApiError::from(dispatch_core::Error::internal("webhook handling failed"))
                .into_response()
        }
    }
}

/// The request body as the sender signed it. Bodies over the app's limit are a 413.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(e.status(), "PAYLOAD_TOO_LARGE", "request body too large")
                } else {
                    ApiError::bad_request("body", format!("cannot read the request body: {e}"))
                }
            })
    }
}

/// A header as text (`None` when absent or not visible ASCII). Names are case-insensitive; a
/// configured name that is not a valid header name simply matches nothing.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Headers for an [`dispatch_core::ports::AlertRequest`]: names lower-cased, text values only.
fn alert_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// Whether `signature_hex` is the HMAC-SHA256 of the concatenated `parts` under `key`. Checked
/// in constant time; text that is not hex of the right length is simply wrong.
fn hmac_matches(key: &[u8], parts: &[&[u8]], signature_hex: &str) -> bool {
    let Ok(expected) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    // HMAC takes keys of any length; the error case cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return false;
    };
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(&expected).is_ok()
}

/// A delivery id header, when it looks like one (GitHub GUIDs, Sentry's 32 hex digits).
fn delivery_id<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    header(headers, name).map(str::trim).filter(|id| {
        !id.is_empty()
            && id.len() <= 128
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    })
}

/// Records a delivery id; `true` the first time. Recorded once the request is authentic and
/// well-formed, before its effect, so two concurrent copies cannot both act; see
/// [`settle_delivery`] for what a failed effect does.
async fn first_delivery(s: &AppState, source: &str, id: Option<&str>) -> ApiResult<bool> {
    match id {
        None => Ok(true),
        Some(id) => Ok(s
            .dispatch
            .store()
            .record_delivery(source, id, chrono::Utc::now())
            .await?),
    }
}

/// After the effect of a recorded delivery: when it failed, the id is forgotten again so that
/// the sender's redelivery acts instead of being taken for a duplicate. A copy that arrives
/// while the first is still working is still answered as a duplicate.
async fn settle_delivery(s: &AppState, source: &str, id: Option<&str>, failed: Option<StatusCode>) {
    if let (Some(status), Some(id)) = (failed, id) {
        tracing::info!(source, delivery = id, %status, "webhook effect failed; the delivery may be redelivered");
        if let Err(err) = s.dispatch.store().forget_delivery(source, id).await {
            tracing::warn!(source, delivery = id, error = %err, "cannot forget the failed delivery; a redelivery will be taken for a duplicate");
        }
    }
}

/// The answer to a redelivered webhook.
fn duplicate_delivery(source: &str, id: Option<&str>) -> Response {
    tracing::info!(
        source,
        delivery = id.unwrap_or(""),
        "duplicate webhook delivery ignored"
    );
    Json(json!({ "success": true, "message": "Duplicate delivery", "duplicate": true }))
        .into_response()
}

/// A client-facing message for a failed use-case: internal details stay in the log.
fn public_message(e: &dispatch_core::Error) -> String {
    if crate::error::status_of(&e.kind) == StatusCode::INTERNAL_SERVER_ERROR {
        "internal error".into()
    } else {
        e.message.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_checks_bytes_hex_and_length() {
        // GitHub's documented test vector.
        let sig = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let key = b"It's a Secret to Everybody";
        assert!(hmac_matches(key, &[b"Hello, World!"], sig));
        assert!(hmac_matches(key, &[b"Hello, ", b"World!"], sig));
        assert!(hmac_matches(key, &[b"Hello, World!"], &sig.to_uppercase()));
        assert!(!hmac_matches(key, &[b"Hello, World?"], sig));
        assert!(!hmac_matches(b"other", &[b"Hello, World!"], sig));
        assert!(!hmac_matches(key, &[b"Hello, World!"], &sig[..62]));
        assert!(!hmac_matches(key, &[b"Hello, World!"], &format!("{sig}00")));
        assert!(!hmac_matches(key, &[b"Hello, World!"], ""));
        assert!(!hmac_matches(key, &[b"Hello, World!"], "zz"));
    }

    #[test]
    fn delivery_ids_are_bounded() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-github-delivery",
            "72d3162e-cc78-11e3-81ab-4c9367dc0958".parse().expect("hv"),
        );
        assert!(delivery_id(&h, "X-GitHub-Delivery").is_some());
        h.insert("x-github-delivery", "a b".parse().expect("hv"));
        assert!(delivery_id(&h, "x-github-delivery").is_none());
        h.insert("x-github-delivery", "x".repeat(129).parse().expect("hv"));
        assert!(delivery_id(&h, "x-github-delivery").is_none());
        assert!(delivery_id(&h, "request-id").is_none());
        assert!(delivery_id(&h, "not a header name").is_none());
    }
}

#[cfg(test)]
mod detach_tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::post;
    use std::sync::Arc;
    use tower::ServiceExt;

    /// Beyond the bound a delivery is refused at once with 503 + Retry-After; the place is
    /// given back when a handling ends.
    #[tokio::test]
    async fn deliveries_beyond_the_bound_are_refused_with_retry_after() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel::<()>();
        let app = axum::Router::new()
            .route(
                "/hook",
                post({
                    let gate = gate.clone();
                    move || async move {
                        let _ = entered_tx.send(());
                        let _permit = gate.acquire().await;
                        "handled"
                    }
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                DetachLimit::new(1),
                detached,
            ));
        let req = || Request::post("/hook").body(Body::empty()).unwrap();
        let first = tokio::spawn(app.clone().oneshot(req()));
        entered.recv().await.unwrap();

        let refused = app.clone().oneshot(req()).await.unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(refused.headers().contains_key("retry-after"));

        gate.add_permits(1);
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        gate.add_permits(1);
        let again = app.clone().oneshot(req()).await.unwrap();
        assert_eq!(again.status(), StatusCode::OK, "the place was given back");
    }
}
