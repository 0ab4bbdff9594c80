//! `POST /api/loki/webhook`: Grafana unified-alerting notifications (spec §4.1, §5.3).
//!
//! Auth: `Authorization: Bearer <LOKI_WEBHOOK_SECRET or DISPATCH_API_KEY>` is always required
//! (the original let any request with an `X-Grafana-Alertmanager` header through). When
//! `GRAFANA_WEBHOOK_HMAC_SECRET` is set, the contact point's HMAC signature is required too:
//! hex(HMAC-SHA256(secret, [timestamp + ":"] + raw body)) in the signature header, and a
//! timestamp header, when sent, must be within five minutes of now.
//!
//! Each firing alert is ingested on its own (dedup by fingerprint, recurrence check, gates);
//! one alert's failure is reported as `action: "error"` and does not stop the others.
//!
//! With `LOKI_GATEWAY_URL` set (off otherwise), the first firing alerts (5) get a "User Impact"
//! section from the last hour of their error logs in Loki (`LOKI_APP_LABEL` selects the
//! stream); a Loki that is down, slow or failing leaves the section out and never fails the
//! webhook. Loki is asked only about alerts whose fingerprint has no issue yet: the section goes
//! into a new issue's description (a known fingerprint keeps its issue's description).

use super::{RawBody, hmac_matches, public_message};
use crate::auth::bearer;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dispatch_core::customer::constant_time_eq;
use dispatch_core::engine::IngestReport;
use dispatch_core::event::fingerprint_message;
use dispatch_core::gate::Decision;
use serde_json::{Value, json};

/// How far a signed timestamp may be from now, either way.
const MAX_SKEW_SECS: i64 = 5 * 60;

/// The Grafana unified-alerting payload as `dispatch_adapters::loki::parse_payload` reads it
/// (schema only: the body is read raw, checked against its signature, then parsed there).
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
pub struct Payload {
    alerts: Vec<Alert>,
}

#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
#[schemars(rename = "GrafanaAlert")]
struct Alert {
    /// `firing` alerts become events; the others are skipped.
    status: String,
    labels: Option<std::collections::BTreeMap<String, Scalar>>,
    annotations: Option<std::collections::BTreeMap<String, Scalar>>,
    #[serde(rename = "startsAt")]
    starts_at: Option<String>,
    #[serde(rename = "generatorURL")]
    generator_url: Option<String>,
    /// The alert's query values (numbers, or numbers as text).
    values: Option<std::collections::BTreeMap<String, Scalar>>,
}

/// Schema only: a label, annotation or value is any JSON scalar (kept as text; `null` is
/// left out).
struct Scalar;

impl schemars::JsonSchema for Scalar {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Scalar".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": ["string", "number", "boolean", "null"] })
    }
}

pub async fn health() -> Json<Value> {
    Json(json!({
        "status": "ok",
        "events": ["grafana unified alerting: firing alerts"],
    }))
}

/// Bearer secret, then (when configured) the Grafana HMAC and its timestamp.
fn authorize(s: &AppState, headers: &HeaderMap, body: &[u8], now: i64) -> ApiResult<()> {
    let token = bearer(headers).unwrap_or("");
    let by_key = constant_time_eq(token.as_bytes(), s.config.api_key.expose().as_bytes());
    let by_secret = s
        .config
        .loki_webhook_secret
        .as_ref()
        .is_some_and(|sec| constant_time_eq(token.as_bytes(), sec.expose().as_bytes()));
    if token.is_empty() || !(by_key || by_secret) {
        return Err(ApiError::unauthorized(
            "Authorization: Bearer <LOKI_WEBHOOK_SECRET or DISPATCH_API_KEY> required",
        ));
    }
    let Some(secret) = &s.config.grafana_hmac_secret else {
        return Ok(());
    };
    let Some(signature) = super::header(headers, &s.config.grafana_signature_header) else {
        return Err(ApiError::unauthorized(format!(
            "{} header required",
            s.config.grafana_signature_header
        )));
    };
    let timestamp = super::header(headers, &s.config.grafana_timestamp_header).map(str::trim);
    if let Some(ts) = timestamp {
        let fresh = ts
            .parse::<i64>()
            .ok()
            .is_some_and(|t| now.checked_sub(t).is_some_and(|d| d.abs() <= MAX_SKEW_SECS));
        if !fresh {
            return Err(ApiError::unauthorized(
                "signature timestamp missing, malformed or more than 5 minutes off",
            ));
        }
    }
    let ok = match timestamp {
        Some(ts) => hmac_matches(
            secret.expose().as_bytes(),
            &[ts.as_bytes(), b":", body],
            signature,
        ),
        None => hmac_matches(secret.expose().as_bytes(), &[body], signature),
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::unauthorized("invalid Grafana signature"))
    }
}

pub async fn receive(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    authorize(&s, &headers, &body, chrono::Utc::now().timestamp())?;
    let mut batch = dispatch_adapters::loki::parse_payload(&body)?;
    if let Some(gateway) = &s.loki_gateway {
        // The section only goes into a new issue's description: ask Loki about the alerts whose
        // fingerprint has no issue yet, not about every repeat of a known one.
        let mut unseen = Vec::new();
        for (i, e) in batch.events.iter().enumerate() {
            if !matches!(
                s.dispatch
                    .store()
                    .get_link(&e.origin, &e.dedupe_key())
                    .await,
                Ok(Some(_))
            ) {
                unseen.push(i);
            }
        }
        let mut picked: Vec<_> = unseen.iter().map(|&i| batch.events[i].clone()).collect();
        gateway.enrich(&mut picked).await;
        for (i, e) in unseen.into_iter().zip(picked) {
            batch.events[i] = e;
        }
    }
    if batch.events.is_empty() {
        return Ok(Json(json!({
            "success": true,
            "message": "No firing alerts to process",
            "processed": 0,
            "skipped": batch.skipped,
        }))
        .into_response());
    }
    let mut results = Vec::with_capacity(batch.events.len());
    let mut first_error: Option<dispatch_core::Error> = None;
    for event in batch.events {
        // Kept for the error report only: the success path gets the fingerprint from ingest.
        let (source, feature, message) = (
            event.source.clone(),
            event.feature.clone(),
            event.message.clone(),
        );
        match s.dispatch.ingest(event).await {
            Ok(report) => {
                let action = if report.created {
                    "created"
                } else {
                    "deduplicated"
                };
                s.metrics.ingest("loki", action);
                if let Some(spawn) = &report.spawn {
                    s.metrics
                        .gate(spawn.decision.reason().map_or("allow", |r| r.code()));
                }
                results.push(result_json(&report, action));
            }
            Err(e) => {
                let (_, fp) = fingerprint_message(&source, &feature, &message);
                s.metrics.ingest("loki", "error");
                tracing::warn!(source = %source, feature = %feature, fingerprint = fp.short(), error = %e, "alert ingest failed");
                results.push(json!({
                    "fingerprint": fp.0,
                    "action": "error",
                    "error": public_message(&e),
                }));
                first_error.get_or_insert(e);
            }
        }
    }
    let processed = results.len();
    let failed = results.iter().filter(|r| r["action"] == "error").count();
    let body = json!({
        "success": failed < processed,
        "processed": processed,
        "results": results,
        "skipped": batch.skipped,
    });
    // When nothing could be ingested (the store is down, say) the sender should retry: answer
    // with the error's status. A partial failure is a 200, or a retry would count twice.
    let status = match (&first_error, failed == processed) {
        (Some(e), true) => crate::error::status_of(&e.kind),
        _ => StatusCode::OK,
    };
    Ok((status, Json(body)).into_response())
}

fn result_json(r: &IngestReport, action: &str) -> Value {
    let (spawn_status, spawn_reason) = match &r.spawn {
        Some(o) if o.spawned() => ("spawned", None),
        Some(o) => match &o.decision {
            Decision::Defer { reason, .. } => ("deferred", Some(reason.to_string())),
            Decision::Deny { reason } => ("skipped", Some(reason.to_string())),
            Decision::Allow => ("skipped", None),
        },
        None if r.issue.spawn_status.is_some_and(|st| st.is_active()) => ("already_running", None),
        None if r.follow_up_owed => ("follow_up_owed", None),
        None => ("not_spawned", None),
    };
    json!({
        "fingerprint": r.fingerprint,
        "action": action,
        "issueId": r.issue.id,
        "issueIdentifier": r.issue.identifier,
        "eventCount": r.event_count,
        "fixFailed": r.fix_failed,
        "reopened": r.reopened,
        "followUpOwed": r.follow_up_owed,
        "spawnStatus": spawn_status,
        "spawnReason": spawn_reason,
        "runId": r.spawn.as_ref().and_then(|o| o.run_id),
    })
}
