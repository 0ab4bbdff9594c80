//! Grafana unified alerting (webhook contact point) as an [`AlertSource`] named `loki`.
//!
//! The payload is `{receiver, status, alerts[], groupLabels, commonLabels, ...}`; each alert is
//! `{status, labels, annotations, startsAt, endsAt, generatorURL, fingerprint, values, ...}`.
//! Only alerts whose `status` is `firing` become [`ErrorEvent`]s; the others are listed in
//! [`AlertBatch::skipped`]. Field extraction follows the original (spec §4.1):
//!
//! - `source` = labels.source → annotations.source → labels.alertname → `unknown`
//! - `feature` = labels.feature → annotations.feature → `unknown`
//! - message = annotations.msg → description → summary → message → labels.msg →
//!   `Error from {source}/{feature}`
//! - `level` = labels.level → labels.severity → `error`
//! - error message = annotations.error_message → labels.error_message; stack trace =
//!   annotations.stack_trace → labels.error_stack
//! - sample lines = annotations.log_lines → sample_logs → logs: split on newlines, trimmed,
//!   non-empty, the first 10
//! - event count = the first value in `values` that is a number > 0 (rounded); else
//!   annotations.event_count or annotations.count; else 1
//! - first seen = last seen = `startsAt`; link = `generatorURL`; all labels and values kept.
//!
//! As in JavaScript's `||`, an empty string counts as missing. Parsing never panics: a payload
//! that is not the expected shape is `InvalidInput` naming the field (`alerts`, `alerts[2].labels`).

use async_trait::async_trait;
use dispatch_core::event::ErrorEvent;
use dispatch_core::ports::{AlertBatch, AlertRequest, AlertSource};
use dispatch_core::{Error, Result, Timestamp};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The link source name of Grafana/Loki alerts.
pub const ORIGIN: &str = "loki";

/// At most this many sample log lines are kept per alert.
const MAX_SAMPLE_LINES: usize = 10;

/// An event count above this is clamped: a misconfigured alert value (say a byte count) must not
/// overflow the stored counters.
const MAX_EVENT_COUNT: u64 = 1_000_000_000_000;

/// Grafana/Loki alert webhooks → error events.
///
/// With the `loki-gateway` feature and [`GrafanaAlertSource::with_gateway`], firing alerts get a
/// "User Impact" section from the last hour of their error logs in Loki
/// ([`crate::loki_gateway`]); a Loki that is down or slow never fails the webhook.
#[derive(Debug, Clone, Default)]
pub struct GrafanaAlertSource {
    #[cfg(feature = "loki-gateway")]
    gateway: Option<std::sync::Arc<crate::loki_gateway::LokiGateway>>,
}

impl GrafanaAlertSource {
    pub fn new() -> Self {
        GrafanaAlertSource::default()
    }

    /// Enriches firing alerts from a Loki gateway.
    #[cfg(feature = "loki-gateway")]
    pub fn with_gateway(gateway: crate::loki_gateway::LokiGateway) -> Self {
        GrafanaAlertSource {
            gateway: Some(std::sync::Arc::new(gateway)),
        }
    }

    /// Whether alerts are enriched from Loki.
    pub fn enriches(&self) -> bool {
        #[cfg(feature = "loki-gateway")]
        {
            self.gateway.is_some()
        }
        #[cfg(not(feature = "loki-gateway"))]
        {
            false
        }
    }
}

#[async_trait]
impl AlertSource for GrafanaAlertSource {
    fn name(&self) -> &str {
        ORIGIN
    }

    async fn parse(&self, request: AlertRequest<'_>) -> Result<AlertBatch> {
        #[allow(unused_mut)]
        let mut batch = parse_payload(request.body)?;
        #[cfg(feature = "loki-gateway")]
        if let Some(g) = &self.gateway {
            g.enrich(&mut batch.events).await;
        }
        Ok(batch)
    }
}

/// Parses a Grafana webhook body (the exact request bytes).
pub fn parse_payload(body: &[u8]) -> Result<AlertBatch> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::invalid("body", "a JSON body is required"));
    }
    let root: Value = serde_json::from_slice(body)
        .map_err(|e| Error::invalid("body", format!("malformed JSON: {e}")))?;
    parse_value(&root)
}

/// Parses an already decoded Grafana webhook payload.
pub fn parse_value(root: &Value) -> Result<AlertBatch> {
    let Some(root) = root.as_object() else {
        return Err(Error::invalid(
            "body",
            "the Grafana payload must be a JSON object",
        ));
    };
    let alerts = match root.get("alerts") {
        Some(Value::Array(a)) => a,
        Some(Value::Null) | None => {
            return Err(Error::invalid(
                "alerts",
                "the Grafana payload has no alerts array",
            ));
        }
        Some(_) => return Err(Error::invalid("alerts", "alerts must be an array")),
    };
    let mut batch = AlertBatch::default();
    for (i, alert) in alerts.iter().enumerate() {
        let path = format!("alerts[{i}]");
        let Some(alert) = alert.as_object() else {
            return Err(Error::invalid(&path, format!("{path} must be an object")));
        };
        let status = match alert.get("status") {
            Some(Value::String(s)) => s.as_str(),
            Some(Value::Null) | None => {
                return Err(Error::invalid(
                    format!("{path}.status"),
                    format!("{path} has no status"),
                ));
            }
            Some(_) => {
                return Err(Error::invalid(
                    format!("{path}.status"),
                    format!("{path}.status must be a string"),
                ));
            }
        };
        // Validate every alert's shape, firing or not, so a bad payload is rejected as a whole.
        let event = parse_alert(alert, &path)?;
        if status == "firing" {
            batch.events.push(event);
        } else {
            batch.skipped.push(format!(
                "{path} ({}/{}): status {status:?} is not firing",
                event.source, event.feature
            ));
        }
    }
    Ok(batch)
}

/// A string map (`labels`, `annotations`): missing or null is empty; scalar values are kept as
/// text; nested values are an error naming them.
fn string_map(
    alert: &Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<BTreeMap<String, String>> {
    let field = format!("{path}.{key}");
    let obj = match alert.get(key) {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(o)) => o,
        Some(_) => {
            return Err(Error::invalid(
                &field,
                format!("{field} must be an object of strings"),
            ));
        }
    };
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Null => continue,
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Array(_) | Value::Object(_) => {
                return Err(Error::invalid(
                    format!("{field}.{k}"),
                    format!("{field}.{k} must be a string"),
                ));
            }
        };
        out.insert(k.clone(), s);
    }
    Ok(out)
}

fn optional_string<'a>(
    alert: &'a Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<&'a str>> {
    match alert.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(Error::invalid(
            format!("{path}.{key}"),
            format!("{path}.{key} must be a string"),
        )),
    }
}

/// The first non-empty value among `keys` of `map` (JavaScript `a || b || c`).
fn first<'a>(map: &'a BTreeMap<String, String>, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .filter_map(|k| map.get(*k))
        .map(String::as_str)
        .find(|v| !v.is_empty())
}

fn parse_alert(alert: &Map<String, Value>, path: &str) -> Result<ErrorEvent> {
    let labels = string_map(alert, path, "labels")?;
    let annotations = string_map(alert, path, "annotations")?;
    let values = alert_values(alert, path)?;
    let starts_at = optional_string(alert, path, "startsAt")?;
    let generator_url = optional_string(alert, path, "generatorURL")?;

    let source = first(&labels, &["source"])
        .or_else(|| first(&annotations, &["source"]))
        .or_else(|| first(&labels, &["alertname"]))
        .unwrap_or("unknown")
        .to_string();
    let feature = first(&labels, &["feature"])
        .or_else(|| first(&annotations, &["feature"]))
        .unwrap_or("unknown")
        .to_string();
    let message = first(&annotations, &["msg", "description", "summary", "message"])
        .or_else(|| first(&labels, &["msg"]))
        .map(str::to_string)
        .unwrap_or_else(|| format!("Error from {source}/{feature}"));
    let level = first(&labels, &["level", "severity"])
        .unwrap_or("error")
        .to_string();
    let error_message = first(&annotations, &["error_message"])
        .or_else(|| first(&labels, &["error_message"]))
        .map(str::to_string);
    let stack_trace = first(&annotations, &["stack_trace"])
        .or_else(|| first(&labels, &["error_stack"]))
        .map(str::to_string);
    let sample_lines = first(&annotations, &["log_lines", "sample_logs", "logs"])
        .map(|text| {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .take(MAX_SAMPLE_LINES)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let event_count = values
        .iter()
        .find_map(|(_, v)| positive_count(v))
        .or_else(|| {
            first(&annotations, &["event_count"])
                .and_then(count_text)
                .or_else(|| first(&annotations, &["count"]).and_then(count_text))
        })
        .unwrap_or(1);
    let seen = starts_at.and_then(parse_time);

    let mut event = ErrorEvent::new(ORIGIN, source, feature, message);
    event.level = level;
    event.error_message = error_message;
    event.stack_trace = stack_trace;
    event.sample_lines = sample_lines;
    event.event_count = event_count;
    event.first_seen = seen;
    event.last_seen = seen;
    event.link = generator_url
        .filter(|u| !u.trim().is_empty())
        .map(str::to_string);
    event.labels = labels;
    event.values = values
        .into_iter()
        .map(|(k, v)| (k, value_text(&v)))
        .collect();
    Ok(event)
}

/// `values`: a map of numbers (Grafana's `map[string]float64`, or null). Go marshals map keys
/// sorted, so the key order here is the order on the wire.
fn alert_values(alert: &Map<String, Value>, path: &str) -> Result<Vec<(String, Value)>> {
    match alert.get("values") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(o)) => {
            for (k, v) in o {
                if matches!(v, Value::Array(_) | Value::Object(_)) {
                    return Err(Error::invalid(
                        format!("{path}.values.{k}"),
                        format!("{path}.values.{k} must be a number"),
                    ));
                }
            }
            Ok(o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        }
        Some(_) => Err(Error::invalid(
            format!("{path}.values"),
            format!("{path}.values must be an object of numbers"),
        )),
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A value that is a number > 0 (or a numeric string), rounded half away from zero and at
/// least 1.
fn positive_count(v: &Value) -> Option<u64> {
    let n = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (n.is_finite() && n > 0.0).then(|| clamp_count(n.round()))
}

/// `parseInt`-like: the leading digits of the text, when they make a number > 0.
fn count_text(s: &str) -> Option<u64> {
    let t = s.trim_start();
    let digits: String = t.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() {
        return None;
    }
    let n = digits.parse::<u64>().unwrap_or(u64::MAX);
    (n > 0).then(|| n.min(MAX_EVENT_COUNT))
}

fn clamp_count(n: f64) -> u64 {
    // `as` saturates; NaN is excluded by the callers.
    (n as u64).clamp(1, MAX_EVENT_COUNT)
}

/// RFC 3339; Go's zero time (`0001-01-01T00:00:00Z`) and anything before 1970 mean "unknown".
fn parse_time(s: &str) -> Option<Timestamp> {
    let t = chrono::DateTime::parse_from_rfc3339(s.trim()).ok()?;
    let t = t.with_timezone(&chrono::Utc);
    (t.timestamp() >= 0).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(alert: Value) -> ErrorEvent {
        let batch = parse_value(&json!({ "alerts": [alert] })).expect("parses");
        assert_eq!(batch.events.len(), 1, "{batch:?}");
        batch.events.into_iter().next().expect("one event")
    }

    #[test]
    fn fallbacks_follow_the_original_order() {
        let e = one(json!({"status": "firing", "labels": {"alertname": "A"}, "annotations": {}}));
        assert_eq!(e.source, "A");
        assert_eq!(e.feature, "unknown");
        assert_eq!(e.message, "Error from A/unknown");
        assert_eq!(e.level, "error");
        assert_eq!(e.event_count, 1);

        let e = one(json!({"status": "firing",
            "labels": {"source": "", "severity": "critical", "msg": "from label", "error_stack": "at x"},
            "annotations": {"source": "svc", "feature": "f", "summary": "sum", "message": "m",
                            "error_message": "boom", "count": "7 events"}}));
        assert_eq!(e.source, "svc", "an empty label falls through");
        assert_eq!(e.feature, "f");
        assert_eq!(e.message, "sum", "summary before message");
        assert_eq!(e.level, "critical");
        assert_eq!(e.error_message.as_deref(), Some("boom"));
        assert_eq!(e.stack_trace.as_deref(), Some("at x"));
        assert_eq!(e.event_count, 7);

        let e = one(json!({"status": "firing", "labels": {"msg": "label msg"}}));
        assert_eq!(e.message, "label msg");
    }

    #[test]
    fn event_count_from_values_then_annotations() {
        let e = one(
            json!({"status": "firing", "values": {"A": 0, "B": 2.5, "C": 9},
                           "annotations": {"event_count": "40"}}),
        );
        assert_eq!(e.event_count, 3, "first positive value, rounded");
        let e = one(json!({"status": "firing", "values": {"A": 0},
                           "annotations": {"event_count": "40", "count": "2"}}));
        assert_eq!(e.event_count, 40);
        let e = one(json!({"status": "firing", "values": {"A": 0.2}}));
        assert_eq!(
            e.event_count, 1,
            "a positive value never rounds to zero events"
        );
        let e = one(json!({"status": "firing", "values": {"A": 1e300}}));
        assert_eq!(e.event_count, MAX_EVENT_COUNT);
        let e = one(json!({"status": "firing", "values": null}));
        assert_eq!(e.event_count, 1);
    }

    #[test]
    fn sample_lines_are_trimmed_non_empty_and_at_most_ten() {
        let lines: Vec<String> = (0..15).map(|i| format!("  line {i}  ")).collect();
        let text = format!("\n\n{}", lines.join("\n\n"));
        let e = one(json!({"status": "firing", "annotations": {"sample_logs": text}}));
        assert_eq!(e.sample_lines.len(), 10);
        assert_eq!(e.sample_lines[0], "line 0");
        assert_eq!(e.sample_lines[9], "line 9");
    }

    #[test]
    fn zero_time_is_unknown() {
        let e = one(json!({"status": "firing", "startsAt": "0001-01-01T00:00:00Z"}));
        assert_eq!(e.first_seen, None);
        let e = one(json!({"status": "firing", "startsAt": "not a time"}));
        assert_eq!(e.first_seen, None);
    }

    #[test]
    fn malformed_payloads_name_the_field() {
        let field = |v: Value| {
            parse_value(&v)
                .expect_err("rejected")
                .field()
                .map(str::to_string)
        };
        assert_eq!(field(json!([])).as_deref(), Some("body"));
        assert_eq!(field(json!({})).as_deref(), Some("alerts"));
        assert_eq!(field(json!({"alerts": {}})).as_deref(), Some("alerts"));
        assert_eq!(field(json!({"alerts": [1]})).as_deref(), Some("alerts[0]"));
        assert_eq!(
            field(json!({"alerts": [{"status": "firing"}, {}]})).as_deref(),
            Some("alerts[1].status")
        );
        assert_eq!(
            field(json!({"alerts": [{"status": "firing"}, {"status": "x"}, {"status": "firing", "labels": []}]})).as_deref(),
            Some("alerts[2].labels")
        );
        assert_eq!(
            field(json!({"alerts": [{"status": "firing", "annotations": {"a": {}}}]})).as_deref(),
            Some("alerts[0].annotations.a")
        );
        assert_eq!(
            field(json!({"alerts": [{"status": "firing", "values": "x"}]})).as_deref(),
            Some("alerts[0].values")
        );
        assert_eq!(
            field(json!({"alerts": [{"status": "firing", "generatorURL": 3}]})).as_deref(),
            Some("alerts[0].generatorURL")
        );
        let e = parse_payload(b"{nope").expect_err("rejected");
        assert_eq!(e.field(), Some("body"));
        let e = parse_payload(b"   ").expect_err("rejected");
        assert_eq!(e.field(), Some("body"));
    }
}
