//! `POST /api/sentry/webhook`: Sentry integration-platform issue webhooks (spec §4.2).
//!
//! `SENTRY_CLIENT_SECRET` must be set (else 503). `Sentry-Hook-Signature` is the bare hex
//! HMAC-SHA256 of the raw body under the client secret; any mismatch, including a signature of
//! the wrong length, is a 401. A `Request-ID` seen before answers "Duplicate delivery" with no
//! second effect; when the ingest fails the id is forgotten again, so a redelivery is processed. New and regressed/escalating issues are ingested under their Sentry issue id;
//! Sentry issues never start an agent by themselves. With `SENTRY_API_TOKEN` and
//! `SENTRY_ORGANIZATION_SLUG` set, the issue's latest event (stack trace, request, tags, release)
//! is added to the description; the Sentry API's failure never fails the webhook. With GitHub
//! configured as well (`GITHUB_TOKEN` and `GITHUB_REPO`, as for the runner), a "Suspected Cause"
//! section lists the commits of `GITHUB_REF` in the 48 h before the issue's first event that
//! changed stack-trace files, and the deployments of that window (within
//! `GITHUB_CORRELATION_TIMEOUT_MS`; a failure leaves the section out).

use super::{
    RawBody, alert_headers, delivery_id, duplicate_delivery, first_delivery, hmac_matches,
    settle_delivery,
};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use dispatch_adapters::sentry::SentryAlertSource;
use dispatch_adapters::sentry::api::SentryApiConfig;
use dispatch_core::Error;
use dispatch_core::ports::{AlertRequest, AlertSource};
use serde_json::{Value, json};

/// The parser, with Sentry API enrichment when `SENTRY_API_TOKEN` (and
/// `SENTRY_ORGANIZATION_SLUG`) are set, and GitHub suspect commits when GitHub is configured too.
/// Built at start; a bad setting stops start-up with an error naming the variable.
pub fn build_source(
    get: &dyn Fn(&str) -> Option<String>,
) -> dispatch_core::Result<SentryAlertSource> {
    match SentryApiConfig::from_lookup(get)? {
        Some(c) => {
            tracing::info!("Sentry issues are enriched through the Sentry API");
            with_suspects(SentryAlertSource::with_api(&c)?, get)
        }
        None => Ok(SentryAlertSource::new()),
    }
}

/// Adds the GitHub suspect-commit correlation when GitHub is configured.
#[cfg(feature = "github")]
fn with_suspects(
    source: SentryAlertSource,
    get: &dyn Fn(&str) -> Option<String>,
) -> dispatch_core::Result<SentryAlertSource> {
    use dispatch_adapters::github::{GithubConfig, GithubSuspectFinder};
    let Some(cfg) = GithubConfig::from_lookup(get)? else {
        return Ok(source);
    };
    let finder = GithubSuspectFinder::new(&cfg, GithubSuspectFinder::policy_from_lookup(get)?)?;
    tracing::info!("Sentry issues get suspect commits from GitHub");
    Ok(source.with_suspects(std::sync::Arc::new(finder)))
}

#[cfg(not(feature = "github"))]
fn with_suspects(
    source: SentryAlertSource,
    _get: &dyn Fn(&str) -> Option<String>,
) -> dispatch_core::Result<SentryAlertSource> {
    Ok(source)
}

pub async fn health() -> Json<Value> {
    Json(json!({
        "status": "ok",
        "events": ["issue.created", "issue.unresolved"],
    }))
}

pub async fn receive(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let Some(secret) = &s.config.sentry_client_secret else {
        return Err(Error::unavailable(
            "Sentry integration disabled: set SENTRY_CLIENT_SECRET to the integration's client secret",
        )
        .into());
    };
    let signature = super::header(&headers, "sentry-hook-signature").unwrap_or("");
    if signature.is_empty() || !hmac_matches(secret.expose().as_bytes(), &[&body], signature) {
        return Err(ApiError::unauthorized("invalid Sentry-Hook-Signature"));
    }
    let hs = alert_headers(&headers);
    let batch = s
        .sentry
        .parse(AlertRequest {
            headers: &hs,
            body: &body,
        })
        .await?;
    let Some(event) = batch.events.into_iter().next() else {
        let message = batch.skipped.join("; ");
        return Ok(Json(json!({ "success": true, "message": message })).into_response());
    };
    let request_id = delivery_id(&headers, "request-id");
    if !first_delivery(&s, "sentry", request_id).await? {
        return Ok(duplicate_delivery("sentry", request_id));
    }
    let sentry_id = event.external_id.clone();
    let short_id = event.labels.get("shortId").cloned();
    let report = match s.dispatch.ingest(event).await {
        Ok(r) => r,
        Err(e) => {
            s.metrics.ingest("sentry", "error");
            let e = ApiError::from(e);
            // Forget the Request-ID so Sentry's redelivery is processed, not a duplicate.
            settle_delivery(&s, "sentry", request_id, Some(e.status)).await;
            return Err(e);
        }
    };
    s.metrics.ingest(
        "sentry",
        if report.created {
            "created"
        } else {
            "deduplicated"
        },
    );
    if let Some(spawn) = &report.spawn {
        // Only when AUTO_SPAWN_ORIGINS was configured to include sentry.
        s.metrics
            .gate(spawn.decision.reason().map_or("allow", |r| r.code()));
    }
    let mut out = json!({
        "success": true,
        "issue": { "id": report.issue.id, "identifier": report.issue.identifier },
        "sentry": { "id": sentry_id, "shortId": short_id },
        "eventCount": report.event_count,
        "fixFailed": report.fix_failed,
        "reopened": report.reopened,
        "followUpOwed": report.follow_up_owed,
    });
    if report.created {
        out["message"] = json!(format!("Created {}", report.issue.identifier));
    } else {
        out["deduplicated"] = json!(true);
        out["message"] = json!(format!(
            "Sentry issue already tracked as {}",
            report.issue.identifier
        ));
    }
    Ok(Json(out).into_response())
}
