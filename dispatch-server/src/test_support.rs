//! In-process router tests: the API's routes over a given store, called with `tower::oneshot`.

use crate::config::ServerConfig;
use crate::state::AppState;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use dispatch_core::Dispatch;
use dispatch_core::ports::Store;
use dispatch_core::testkit::FakeRunner;
use std::collections::HashMap;
use std::sync::Arc;
use tower::ServiceExt;

pub const API_KEY: &str = "test-api-key-0123456789";

/// The API router over `store` (workspace `DISPATCH`), authenticated by [`API_KEY`].
pub async fn app(store: Arc<dyn Store>) -> (Router, Dispatch) {
    let (state, dispatch) = state(store).await;
    (crate::routes::api().with_state(state), dispatch)
}

/// A whole app's own state over `store` (limiters and caches of its own), with the engine.
pub async fn state(store: Arc<dyn Store>) -> (AppState, Dispatch) {
    let dir = std::env::temp_dir().join(format!("dispatch-router-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let vars: HashMap<String, String> = [
        ("DISPATCH_API_KEY", API_KEY.to_string()),
        ("DISPATCH_PASSWORD", "router-test-password".to_string()),
        ("DISPATCH_SESSION_SECRET", "s".repeat(40)),
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("unused.db").display()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let get = move |k: &str| vars.get(k).cloned();
    let cfg = ServerConfig::from_lookup(&get).expect("config");
    let dispatch = Dispatch::builder(store, Arc::new(FakeRunner::default()))
        .config(cfg.engine.clone())
        .build()
        .await
        .expect("engine");
    let orchestrator = dispatch_core::orchestrator::Orchestrator::new(
        dispatch.clone(),
        None,
        Vec::new(),
        cfg.orchestrator.clone(),
    )
    .expect("orchestrator");
    let state = AppState {
        dispatch: dispatch.clone(),
        config: Arc::new(cfg),
        login_limiter: Arc::new(crate::auth::LoginLimiter::new(
            10,
            std::time::Duration::from_secs(300),
        )),
        portal_limiter: Arc::new(crate::auth::LoginLimiter::new(
            30,
            std::time::Duration::from_secs(300),
        )),
        og: Arc::new(crate::web::og::OgCache::default()),
        metrics: Arc::new(crate::metrics::Metrics::default()),
        loki_gateway: None,
        sentry: Arc::new(crate::routes::webhooks::sentry::build_source(&get).expect("sentry")),
        orchestrator,
        shutdown: tokio_util::sync::CancellationToken::new(),
    };
    (state, dispatch)
}

/// Sends a request with the API key (when `auth`), returns the status and the JSON body (or
/// `Null`).
pub async fn call(
    app: &Router,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
    auth: bool,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::builder().method(method).uri(path);
    if auth {
        req = req.header("authorization", format!("Bearer {API_KEY}"));
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .expect("request");
    let mut req = req;
    // What the server's listener gives every request (the portal's rate limit reads it).
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            40000,
        ))));
    let res = app.clone().oneshot(req).await.expect("response");
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 16 << 20)
        .await
        .expect("body");
    let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, v)
}
