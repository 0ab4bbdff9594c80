//! Optional Loki enrichment of Grafana alerts (spec §4.1, feature `loki-gateway`): when
//! `LOKI_GATEWAY_URL` is set (there is no default: off unless configured) and the gateway
//! answers `GET /loki/api/v1/labels` within 3 s, the last hour of error logs of each alert's
//! source/feature is read (`GET /loki/api/v1/query_range`, limit 500, 10 s) and a "User Impact"
//! section is appended to the new issue's description: error lines and their rate, affected
//! users and organisations (from stream labels or JSON log lines) with sample ids. Any failure
//! leaves the section out; the webhook never fails for it.
//!
//! The stream selector is `LOKI_APP_LABEL`: `name=value` (e.g. `app=chipp-deno`, the original's
//! hard-coded stream) — then lines are also filtered by the alert's `source` — or a bare label
//! name (default `app`), whose value is then the alert's `source`. Lines are parsed with
//! `| json` and kept when `level` is error, fatal or critical and, when the alert has one, the
//! `feature` matches.

use crate::loki_client::{LokiAuth, LokiClient, loki_message, quote};
use dispatch_core::event::ErrorEvent;
use dispatch_core::{Error, Result};
use reqwest::Url;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

/// Where and how to reach Loki. `Debug` never shows the token.
#[derive(Debug, Clone)]
pub struct LokiGatewayConfig {
    /// `LOKI_GATEWAY_URL`, e.g. `http://loki-gateway.monitoring.svc.cluster.local`.
    pub url: String,
    /// Stream label name, and its fixed value when the whole app shares one stream.
    pub app_label: String,
    pub app_value: Option<String>,
    /// `LOKI_TENANT_ID`: sent as `X-Scope-OrgID` (multi-tenant Loki).
    pub tenant: Option<String>,
    /// `LOKI_GATEWAY_TOKEN`: sent as a bearer token.
    pub token: Option<SecretString>,
    /// The reachability check's limit (3 s).
    pub check_timeout: Duration,
    /// The query's limit (10 s).
    pub query_timeout: Duration,
    /// How far back the query looks (1 h).
    pub lookback: chrono::Duration,
    /// Lines read at most (500).
    pub limit: u32,
    /// Firing alerts of one webhook that are enriched at most (5).
    pub max_alerts: usize,
}

impl LokiGatewayConfig {
    pub fn new(url: impl Into<String>) -> Self {
        LokiGatewayConfig {
            url: url.into(),
            app_label: "app".into(),
            app_value: None,
            tenant: None,
            token: None,
            check_timeout: Duration::from_secs(3),
            query_timeout: Duration::from_secs(10),
            lookback: chrono::Duration::hours(1),
            limit: 500,
            max_alerts: 5,
        }
    }

    /// `None` when `LOKI_GATEWAY_URL` is unset. Reads `LOKI_APP_LABEL`, `LOKI_TENANT_ID` and
    /// `LOKI_GATEWAY_TOKEN`.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let var = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let Some(url) = var("LOKI_GATEWAY_URL") else {
            return Ok(None);
        };
        match Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                return Err(Error::invalid(
                    "LOKI_GATEWAY_URL",
                    format!("LOKI_GATEWAY_URL must be an http(s) URL, not {url:?}"),
                ));
            }
        }
        let mut cfg = LokiGatewayConfig::new(url);
        if let Some(l) = var("LOKI_APP_LABEL") {
            let (name, value) = match l.split_once('=') {
                Some((n, v)) => (
                    n.trim().to_string(),
                    Some(v.trim().trim_matches('"').to_string()),
                ),
                None => (l.clone(), None),
            };
            let valid_name = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid_name || value.as_deref().is_some_and(str::is_empty) {
                return Err(Error::invalid(
                    "LOKI_APP_LABEL",
                    "LOKI_APP_LABEL must be a label name (app) or name=value (app=my-service)",
                ));
            }
            cfg.app_label = name;
            cfg.app_value = value;
        }
        cfg.tenant = var("LOKI_TENANT_ID");
        cfg.token = var("LOKI_GATEWAY_TOKEN").map(SecretString::from);
        Ok(Some(cfg))
    }
}

/// The LogQL query for an alert's error logs.
pub fn logql(cfg: &LokiGatewayConfig, source: &str, feature: &str) -> String {
    let mut q = match &cfg.app_value {
        Some(v) => format!("{{{}={}}} | json", cfg.app_label, quote(v)),
        None => format!("{{{}={}}} | json", cfg.app_label, quote(source)),
    };
    q.push_str(r#" | level=~"(?i)(error|fatal|critical)""#);
    if cfg.app_value.is_some() && source != "unknown" {
        let _ = write!(q, " | source={}", quote(source));
    }
    if feature != "unknown" && !feature.is_empty() {
        let _ = write!(q, " | feature={}", quote(feature));
    }
    q
}

const USER_KEYS: &[&str] = &["userId", "user_id", "userID", "user", "uid", "user.id"];
const ORG_KEYS: &[&str] = &[
    "orgId",
    "org_id",
    "orgID",
    "organizationId",
    "organization_id",
    "org",
    "tenantId",
    "tenant_id",
];

/// What the last hour of error logs says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserImpact {
    pub lines: usize,
    /// The query hit its limit: there are more.
    pub truncated: bool,
    pub users: BTreeSet<String>,
    pub orgs: BTreeSet<String>,
    /// Nanosecond timestamps of the oldest and newest line read.
    pub oldest_ns: Option<i128>,
    pub newest_ns: Option<i128>,
}

fn id_text(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let ok = !s.is_empty()
        && s.len() <= 100
        && !matches!(s.as_str(), "null" | "undefined" | "anonymous" | "-")
        && !s.chars().any(char::is_control);
    ok.then_some(s)
}

fn pick(obj: &serde_json::Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| obj.get(*k).and_then(id_text))
        .or_else(|| {
            // Nested `user: {id}` / `org: {id}`.
            ["user", "org", "organization"]
                .iter()
                .filter(|n| keys.contains(n) || keys.iter().any(|k| k.starts_with(*n)))
                .find_map(|n| obj.get(*n)?.as_object()?.get("id").and_then(id_text))
        })
}

/// Reads a `query_range` answer (`{status, data: {resultType: "streams", result: [{stream,
/// values: [[ns, line], …]}]}}`). Unknown shapes are an empty impact, never an error.
pub fn user_impact(answer: &Value, limit: u32) -> UserImpact {
    let mut out = UserImpact::default();
    let Some(streams) = answer.pointer("/data/result").and_then(Value::as_array) else {
        return out;
    };
    for s in streams {
        let labels = s.get("stream").and_then(Value::as_object);
        let Some(values) = s.get("values").and_then(Value::as_array) else {
            continue;
        };
        for v in values {
            let Some(ts) = v
                .get(0)
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<i128>().ok())
            else {
                continue;
            };
            out.lines += 1;
            out.oldest_ns = Some(out.oldest_ns.map_or(ts, |o| o.min(ts)));
            out.newest_ns = Some(out.newest_ns.map_or(ts, |n| n.max(ts)));
            let line: Option<serde_json::Map<String, Value>> = v
                .get(1)
                .and_then(Value::as_str)
                .and_then(|l| serde_json::from_str::<Value>(l).ok())
                .and_then(|j| match j {
                    Value::Object(o) => Some(o),
                    _ => None,
                });
            let user = labels
                .and_then(|l| pick(l, USER_KEYS))
                .or_else(|| line.as_ref().and_then(|l| pick(l, USER_KEYS)));
            let org = labels
                .and_then(|l| pick(l, ORG_KEYS))
                .or_else(|| line.as_ref().and_then(|l| pick(l, ORG_KEYS)));
            if let Some(u) = user
                && out.users.len() < 10_000
            {
                out.users.insert(u);
            }
            if let Some(o) = org
                && out.orgs.len() < 10_000
            {
                out.orgs.insert(o);
            }
        }
    }
    out.truncated = limit > 0 && out.lines >= limit as usize;
    out
}

const SAMPLE_IDS: usize = 5;

impl UserImpact {
    /// The section's markdown body; `None` when no line was found.
    pub fn markdown(&self, query: &str, lookback_minutes: i64) -> Option<String> {
        if self.lines == 0 {
            return None;
        }
        let mut d = String::new();
        let _ = writeln!(
            d,
            "From Loki, the last {} of error logs (`{}`):",
            if lookback_minutes % 60 == 0 {
                format!("{} h", lookback_minutes / 60)
            } else {
                format!("{lookback_minutes} min")
            },
            query.replace('`', "'")
        );
        let rate = self.lines as f64 / lookback_minutes.max(1) as f64;
        let _ = writeln!(
            d,
            "- **Error lines:** {}{} (≈{rate:.1}/min)",
            self.lines,
            if self.truncated {
                "+ (the query's limit)"
            } else {
                ""
            }
        );
        let fmt = |ns: i128| {
            chrono::DateTime::from_timestamp_nanos(ns.clamp(0, i64::MAX as i128) as i64)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        };
        if let (Some(o), Some(n)) = (self.oldest_ns, self.newest_ns) {
            let _ = writeln!(d, "- **Seen from:** {} to {}", fmt(o), fmt(n));
        }
        let sample = |set: &BTreeSet<String>| {
            set.iter()
                .take(SAMPLE_IDS)
                .map(|s| format!("`{}`", s.replace('`', "'")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.users.is_empty() {
            let _ = writeln!(
                d,
                "- **Affected users:** {} (sample: {})",
                self.users.len(),
                sample(&self.users)
            );
        }
        if !self.orgs.is_empty() {
            let _ = writeln!(
                d,
                "- **Affected organizations:** {} (sample: {})",
                self.orgs.len(),
                sample(&self.orgs)
            );
        }
        if self.users.is_empty() && self.orgs.is_empty() {
            let _ = writeln!(d, "- No user or organization ids in these lines.");
        }
        Some(d.trim_end().to_string())
    }
}

/// The Loki HTTP API client.
pub struct LokiGateway {
    client: LokiClient,
    cfg: LokiGatewayConfig,
}

impl std::fmt::Debug for LokiGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LokiGateway")
            .field("base", &self.client.base().as_str())
            .finish_non_exhaustive()
    }
}

impl LokiGateway {
    pub fn new(cfg: LokiGatewayConfig) -> Result<Self> {
        let base = crate::http::parse_base("LOKI_GATEWAY_URL", &cfg.url)?;
        let auth = match &cfg.token {
            Some(t) => {
                // Checked here so that a token that cannot be a header is a start-up error.
                HeaderValue::from_str(&format!("Bearer {}", t.expose_secret())).map_err(|_| {
                    Error::invalid(
                        "LOKI_GATEWAY_TOKEN",
                        "LOKI_GATEWAY_TOKEN contains characters that cannot be sent in a header",
                    )
                })?;
                LokiAuth::Bearer(t.clone())
            }
            None => LokiAuth::None,
        };
        let client = LokiClient::new(base, cfg.tenant.as_deref(), auth, cfg.check_timeout)?;
        Ok(LokiGateway { client, cfg })
    }

    pub fn config(&self) -> &LokiGatewayConfig {
        &self.cfg
    }

    /// One `GET` of a JSON answer: any failure is an upstream error (logged by the callers).
    async fn get_json(&self, what: &str, url: Url, timeout: Duration) -> Result<Value> {
        let reply = self
            .client
            .get(what, url, timeout)
            .await
            .map_err(|t| t.error)?;
        if !reply.status.is_success() {
            return Err(reply.error(format!(
                "{what} failed ({}): {}",
                reply.status.as_u16(),
                loki_message(&reply, 200)
            )));
        }
        reply.json(what)
    }

    /// `GET /loki/api/v1/labels` within the check timeout: whether Loki is there.
    pub async fn reachable(&self) -> bool {
        let url = self.client.url(&["loki", "api", "v1", "labels"]);
        match self
            .get_json("the Loki labels check", url, self.cfg.check_timeout)
            .await
        {
            Ok(v) if v.get("status").and_then(Value::as_str) == Some("success") => true,
            Ok(_) => {
                tracing::warn!("Loki labels answer is not a success; enrichment skipped");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "Loki gateway not reachable; enrichment skipped");
                false
            }
        }
    }

    /// The "User Impact" markdown of one alert, or `None` (nothing found, or a failure, logged).
    pub async fn impact_section(&self, source: &str, feature: &str) -> Option<String> {
        let query = logql(&self.cfg, source, feature);
        let end = chrono::Utc::now();
        let start = end - self.cfg.lookback;
        let url = self
            .client
            .query_range_url(&query, start, end, self.cfg.limit)?;
        match self
            .get_json("the Loki query", url, self.cfg.query_timeout)
            .await
        {
            Ok(v) => {
                user_impact(&v, self.cfg.limit).markdown(&query, self.cfg.lookback.num_minutes())
            }
            Err(e) => {
                tracing::warn!(source, feature, error = %e, "Loki query failed; no User Impact section");
                None
            }
        }
    }

    /// Appends a "User Impact" section to the first firing events (at most `max_alerts`,
    /// queried concurrently) when Loki answers; the description is the one the engine would
    /// write ([`dispatch_core::event::issue_description`]) plus the section.
    pub async fn enrich(&self, events: &mut [ErrorEvent]) {
        if events.is_empty() || !self.reachable().await {
            return;
        }
        let n = events.len().min(self.cfg.max_alerts);
        let sections = futures::future::join_all(
            events[..n]
                .iter()
                .map(|e| self.impact_section(&e.source, &e.feature)),
        )
        .await;
        for (e, section) in events.iter_mut().zip(sections) {
            let Some(section) = section else { continue };
            let (normalized, fp) =
                dispatch_core::event::fingerprint_message(&e.source, &e.feature, &e.message);
            let base = dispatch_core::event::issue_description(e, &normalized, &fp);
            e.description = Some(format!(
                "{}\n\n## User Impact\n{section}\n",
                base.trim_end()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn queries_quote_and_follow_the_app_label() {
        let mut cfg = LokiGatewayConfig::new("http://loki");
        assert_eq!(
            logql(&cfg, "billing", "charge"),
            r#"{app="billing"} | json | level=~"(?i)(error|fatal|critical)" | feature="charge""#
        );
        cfg.app_value = Some("chipp-deno".into());
        assert_eq!(
            logql(&cfg, "bil\"ling", "unknown"),
            r#"{app="chipp-deno"} | json | level=~"(?i)(error|fatal|critical)" | source="bil\"ling""#
        );
    }

    #[test]
    fn users_and_orgs_come_from_labels_or_json_lines() {
        let answer = json!({"status": "success", "data": {"resultType": "streams", "result": [
            {"stream": {"app": "x", "userId": "u1", "orgId": "o1"},
             "values": [["1700000000000000000", "{}"], ["1700000060000000000", "{}"]]},
            {"stream": {"app": "x"},
             "values": [["1700000030000000000", "{\"user\": {\"id\": 42}, \"org_id\": \"o2\"}"],
                        ["bad", "x"], ["1700000040000000000", "not json"]]},
        ]}});
        let i = user_impact(&answer, 500);
        assert_eq!(i.lines, 4);
        assert!(!i.truncated);
        assert_eq!(
            i.users.iter().cloned().collect::<Vec<_>>(),
            vec!["42", "u1"]
        );
        assert_eq!(i.orgs.iter().cloned().collect::<Vec<_>>(), vec!["o1", "o2"]);
        let md = i.markdown("{app=\"x\"}", 60).unwrap();
        assert!(md.contains("- **Error lines:** 4 (≈0.1/min)"), "{md}");
        assert!(
            md.contains("- **Affected users:** 2 (sample: `42`, `u1`)"),
            "{md}"
        );
        assert_eq!(
            user_impact(&json!({"data": 3}), 500).markdown("q", 60),
            None
        );
    }

    #[test]
    fn config_from_the_environment() {
        assert!(LokiGatewayConfig::from_lookup(&|_| None).unwrap().is_none());
        let c = LokiGatewayConfig::from_lookup(&|k| match k {
            "LOKI_GATEWAY_URL" => Some("http://loki:3100".into()),
            "LOKI_APP_LABEL" => Some("service_name=web".into()),
            _ => None,
        })
        .unwrap()
        .unwrap();
        assert_eq!(
            (c.app_label.as_str(), c.app_value.as_deref()),
            ("service_name", Some("web"))
        );
        let bad = LokiGatewayConfig::from_lookup(&|k| match k {
            "LOKI_GATEWAY_URL" => Some("http://loki:3100".into()),
            "LOKI_APP_LABEL" => Some("a b=c".into()),
            _ => None,
        });
        assert_eq!(bad.unwrap_err().field(), Some("LOKI_APP_LABEL"));
        let bad = LokiGatewayConfig::from_lookup(&|k| {
            (k == "LOKI_GATEWAY_URL").then(|| "loki:3100".to_string())
        });
        assert_eq!(bad.unwrap_err().field(), Some("LOKI_GATEWAY_URL"));
    }
}
