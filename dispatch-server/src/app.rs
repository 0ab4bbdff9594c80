//! The axum application: routes, request ids, access logs, metrics and body limits.

use crate::state::AppState;
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use std::time::Instant;

pub const REQUEST_ID: &str = "x-request-id";

pub fn build(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    crate::routes::api()
        .merge(crate::mcp::router(&state))
        .merge(crate::web::router())
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::from_fn_with_state(state.clone(), real_client))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Behind a trusted reverse proxy, the client is the one its `X-Forwarded-For` names: every
/// handler's `ConnectInfo` (login and portal limits) and the access log see that address.
async fn real_client(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    if !s.config.trusted_proxies.is_empty()
        && let Some(ConnectInfo(peer)) = req
            .extensions()
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .copied()
    {
        let ip = crate::auth::client_ip(peer.ip(), req.headers(), &s.config.trusted_proxies);
        req.extensions_mut()
            .insert(ConnectInfo(std::net::SocketAddr::new(ip, peer.port())));
    }
    next.run(req).await
}

/// Request id (kept from the client when it looks sane), one JSON log line per request, and
/// metrics by route template (never by raw path, so ids do not explode the label set).
async fn observe(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(REQUEST_ID, v);
    }
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let mut res = next.run(req).await;
    let status = res.status().as_u16();
    let secs = started.elapsed().as_secs_f64();
    s.metrics.request(&method, &route, status, secs);
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    if route != "/api/health" && route != "/metrics" {
        tracing::info!(request_id = %id, method = %method, route = %route, status, latency_ms = (secs * 1000.0), "request");
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use tower::ServiceExt;

    /// A whole app on the in-memory store, with its own state.
    async fn app() -> Router {
        let store = Arc::new(dispatch_core::memory::MemoryStore::new());
        build(crate::test_support::state(store).await.0)
    }

    async fn portal(app: &Router) -> StatusCode {
        let mut req = Request::builder()
            .uri(format!("/api/portal/acme?token={}", "0".repeat(64)))
            .body(Body::empty())
            .expect("request");
        let peer: SocketAddr = "203.0.113.7:40000".parse().expect("addr");
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req).await.expect("answer").status()
    }

    #[tokio::test]
    async fn two_apps_do_not_share_the_portal_limiter() {
        let a = app().await;
        let b = app().await;
        for _ in 0..30 {
            assert_eq!(portal(&a).await, StatusCode::UNAUTHORIZED);
        }
        assert_eq!(
            portal(&a).await,
            StatusCode::TOO_MANY_REQUESTS,
            "the 31st bad link within 5 minutes is refused"
        );
        // The same client on another app (another state) starts from zero.
        assert_eq!(portal(&b).await, StatusCode::UNAUTHORIZED);
    }
}
