use crate::auth::LoginLimiter;
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use dispatch_core::Dispatch;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub dispatch: Dispatch,
    pub config: Arc<ServerConfig>,
    pub login_limiter: Arc<LoginLimiter>,
    /// Failed portal token checks per client address (30 per 5 minutes; a valid token clears
    /// the count). Per app, bounded like the login limiter.
    pub portal_limiter: Arc<LoginLimiter>,
    /// Rendered Open Graph cards (bounded) and the drawing slots.
    pub og: Arc<crate::web::og::OgCache>,
    pub metrics: Arc<Metrics>,
    /// The Loki gateway new Grafana alerts get a "User Impact" section from, when configured.
    pub loki_gateway: Option<Arc<dispatch_adapters::loki_gateway::LokiGateway>>,
    /// The Sentry payload parser, with API enrichment and suspect commits when configured.
    pub sentry: Arc<dispatch_adapters::sentry::SentryAlertSource>,
    /// The chat orchestrator (the terminal, `POST /api/orchestrator`, `dispatch chat`).
    pub orchestrator: dispatch_core::orchestrator::Orchestrator,
    /// Cancelled when the server shuts down; long-lived responses (SSE) end when it fires.
    pub shutdown: CancellationToken,
}
