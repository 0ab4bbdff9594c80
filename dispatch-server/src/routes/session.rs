//! `GET /api/health` and the session: `POST/GET/DELETE /api/auth`.

use crate::auth::{SESSION_COOKIE, new_session, session_ok};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::openapi::{ApiRouter, doc, get};
use crate::state::AppState;
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dispatch_core::customer::constant_time_eq;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .route(
            "/api/health",
            get(
                health,
                doc("Readiness and the active runner: 503 while the server starts (migrations)")
                    .fails(&[503]),
            ),
        )
        .route(
            "/api/health/live",
            get(
                live,
                doc("Liveness: 200 whenever the process answers, also while it starts"),
            ),
        )
        .route(
            "/api/auth",
            get(status, doc("Whether the session cookie is valid"))
                .post(
                    login,
                    doc("Log in with DISPATCH_PASSWORD; sets a signed session cookie")
                        .fails(&[401]),
                )
                .delete(logout, doc("Log out")),
        )
}

/// The process answers (while it starts, the start-up front answers this path itself).
async fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "service": "dispatch" }))
}

async fn health(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "service": "dispatch",
        "timestamp": chrono::Utc::now(),
        "runner": s.dispatch.runner().name(),
        "url": s.config.app_url,
    }))
}

#[derive(Deserialize, JsonSchema)]
struct Login {
    #[schemars(length(min = 1))]
    password: String,
}

fn cookie(s: &AppState, value: &str, max_age: i64) -> Option<HeaderValue> {
    let secure = if s.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
        .parse()
        .ok()
}

async fn login(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    ApiJson(b): ApiJson<Login>,
) -> ApiResult<Response> {
    let cookie = start_session(&s, addr, Some(&b.password))?;
    let mut headers = HeaderMap::new();
    headers.insert(header::SET_COOKIE, cookie);
    Ok((headers, Json(json!({ "success": true }))).into_response())
}

/// Checks a login (rate-limited per client, constant-time compare) and returns the session
/// cookie to set: the JSON login and the web login form both come here.
pub(crate) fn start_session(
    s: &AppState,
    addr: SocketAddr,
    password: Option<&str>,
) -> ApiResult<HeaderValue> {
    if let Err(wait) = s.login_limiter.check(addr.ip()) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!(
                "too many login attempts; try again in {} s",
                wait.as_secs().max(1)
            ),
        ));
    }
    let pw = password
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::bad_request("password", "password is required"))?;
    if !constant_time_eq(pw.as_bytes(), s.config.password.expose().as_bytes()) {
        tracing::warn!(client = %addr.ip(), "failed login");
        return Err(ApiError::unauthorized("invalid password"));
    }
    s.login_limiter.reset(addr.ip());
    let ttl = chrono::Duration::hours(s.config.session_ttl_hours);
    let token = new_session(s.config.session_secret.expose(), ttl, chrono::Utc::now());
    cookie(s, &token, ttl.num_seconds())
        .ok_or_else(|| ApiError::from(dispatch_core::Error::internal("session cookie")))
}

async fn status(State(s): State<AppState>, headers: HeaderMap) -> Json<serde_json::Value> {
    Json(json!({ "authenticated": session_ok(&s, &headers) }))
}

async fn logout(State(s): State<AppState>) -> Response {
    let mut headers = HeaderMap::new();
    if let Some(c) = cookie(&s, "", 0) {
        headers.insert(header::SET_COOKIE, c);
    }
    (headers, Json(json!({ "success": true }))).into_response()
}
