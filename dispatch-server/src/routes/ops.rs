//! Operations: `GET /metrics` (Prometheus text; API key unless `METRICS_PUBLIC=true`).

use crate::auth::api_key_ok;
use crate::error::{ApiError, ApiResult};
use crate::openapi::{ApiRouter, doc, get};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .route(
            "/metrics",
            get(
                metrics,
                doc("Prometheus metrics (API key unless METRICS_PUBLIC=true)")
                    .media("text/plain")
                    .api_key()
                    .tag("ops"),
            ),
        )
        .route(
            "/api/openapi.json",
            get(openapi, doc("This document").tag("ops")),
        )
        .route(
            "/api/og",
            get(
                crate::web::og::generic,
                doc("A share-preview image (1200×630 PNG) drawn from the query; public, cached a day, ETag")
                    .media("image/png")
                    .also(&[304]),
            ),
        )
        .route(
            "/api/og/issue/{identifier}",
            get(
                crate::web::og::issue,
                doc("An issue's share-preview image (1200×630 PNG) for a session, the API key, or a portal link's slug and token of a customer who watches it")
                    .media("image/png")
                    .also(&[304])
                    .fails(&[401, 403, 404, 429]),
            ),
        )
}

async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if !s.config.metrics_public && !api_key_ok(&s, &headers) {
        return Err(ApiError::unauthorized(
            "metrics need Authorization: Bearer <DISPATCH_API_KEY> (or METRICS_PUBLIC=true)",
        ));
    }
    let stats = s
        .dispatch
        .store()
        .spawn_stats(s.dispatch.clock().now())
        .await?;
    let body = s.metrics.render(&[
        ("queued", u64::from(stats.queued)),
        ("running", u64::from(stats.running)),
        ("deferred", u64::from(stats.deferred)),
    ]);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

async fn openapi() -> axum::Json<serde_json::Value> {
    axum::Json(crate::openapi::document().clone())
}
