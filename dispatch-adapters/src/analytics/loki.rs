//! Loki tools for the orchestrator (feature `loki-tools`): `loki_errors`, `loki_search`,
//! `loki_stats`, `loki_compare` and `loki_trace` over Loki's HTTP API
//! (`GET /loki/api/v1/query_range`), for logs whose lines are JSON objects.
//!
//! Every query is LogQL built here: the configured stream selector, an optional regex line
//! filter, `| json`, and label filters on the parsed fields. Every value that comes from the
//! model (label filter values, the search pattern) is written as a quoted, escaped LogQL string
//! literal, so no argument can change the query's structure.
//!
//! Before each call Loki is probed (`GET /ready`, 3 s): when it is down or hangs the tool
//! answers "Loki not reachable at <url>: …" within those 3 s instead of holding the turn.

use super::{clip, env_u64, env_var, input_object, opt_limit, opt_str, req_str};
use crate::loki_client::{LokiClient, cause, loki_message};
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use dispatch_core::ports::{ToolContext, ToolProvider, ToolSpec};
use dispatch_core::{Error, Result};
use reqwest::Url;
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// The default selector of error lines.
pub const DEFAULT_ERROR_SELECTOR: &str = r#"{level="error"}"#;
/// The default selector of all lines (search, trace) when the error selector has no filters.
pub const DEFAULT_SELECTOR: &str = r#"{level=~".+"}"#;
/// Entries read at most by `loki_stats` and by each window of `loki_compare` (Loki's default
/// `max_entries_limit_per_query`).
pub const STATS_ENTRIES: u32 = 5_000;
/// Lines read at most by `loki_trace`.
pub const TRACE_LINES: u32 = 2_000;
/// The longest `since` / `period`.
pub const MAX_WINDOW_DAYS: i64 = 30;
/// Groups listed at most by `loki_stats` and `loki_compare`.
const MAX_GROUPS: usize = 50;

pub use crate::loki_client::{LokiAuth, quote};

/// Where Loki is and how to query it. `Debug` never shows secrets.
#[derive(Debug, Clone)]
pub struct LokiToolsConfig {
    /// `LOKI_URL`, e.g. `http://loki.monitoring.svc:3100` (no credentials in it).
    pub url: String,
    pub auth: LokiAuth,
    /// `LOKI_TENANT_ID`: sent as `X-Scope-OrgID` (multi-tenant Loki).
    pub tenant: Option<String>,
    /// `LOKI_ERROR_SELECTOR`: the stream selector of error lines, optionally followed by label
    /// filters on the parsed JSON fields (`{app="web"} | level="error"`). Default
    /// `{level="error"}`.
    pub error_selector: String,
    /// `LOKI_SELECTOR`: the stream selector of all lines (search, trace). Default: the error
    /// selector's stream selector when it has filters, else `{level=~".+"}`.
    pub selector: String,
    /// `LOKI_TIMEOUT_SECONDS` (10): one query's limit.
    pub timeout: Duration,
    /// The reachability probe's limit (3 s).
    pub probe_timeout: Duration,
}

impl LokiToolsConfig {
    pub fn new(url: impl Into<String>) -> Self {
        LokiToolsConfig {
            url: url.into(),
            auth: LokiAuth::None,
            tenant: None,
            error_selector: DEFAULT_ERROR_SELECTOR.into(),
            selector: DEFAULT_SELECTOR.into(),
            timeout: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(3),
        }
    }

    /// `None` when `LOKI_URL` is unset. Reads `LOKI_USERNAME`/`LOKI_PASSWORD` or `LOKI_TOKEN`,
    /// `LOKI_TENANT_ID`, `LOKI_ERROR_SELECTOR`, `LOKI_SELECTOR` and `LOKI_TIMEOUT_SECONDS`;
    /// an error names the variable that is wrong.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let Some(url) = env_var(get, "LOKI_URL") else {
            return Ok(None);
        };
        parse_base(&url)?;
        let mut cfg = LokiToolsConfig::new(url);
        let user = env_var(get, "LOKI_USERNAME");
        let password = get("LOKI_PASSWORD").filter(|p| !p.is_empty());
        let token = env_var(get, "LOKI_TOKEN");
        cfg.auth = match (user, password, token) {
            (None, None, None) => LokiAuth::None,
            (None, None, Some(t)) => LokiAuth::Bearer(SecretString::from(t)),
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "LOKI_TOKEN",
                    "set either LOKI_TOKEN (bearer) or LOKI_USERNAME/LOKI_PASSWORD (basic), not both",
                ));
            }
            (Some(username), password, None) => LokiAuth::Basic {
                username,
                password: SecretString::from(password.unwrap_or_default()),
            },
            (None, Some(_), None) => {
                return Err(Error::invalid(
                    "LOKI_USERNAME",
                    "LOKI_PASSWORD is set but LOKI_USERNAME is not",
                ));
            }
        };
        cfg.tenant = env_var(get, "LOKI_TENANT_ID");
        if let Some(s) = env_var(get, "LOKI_ERROR_SELECTOR") {
            split_selector(&s).map_err(|why| {
                Error::invalid(
                    "LOKI_ERROR_SELECTOR",
                    format!(
                        "LOKI_ERROR_SELECTOR must be a LogQL stream selector such as \
                         {{level=\"error\"}}, optionally followed by label filters \
                         ({{app=\"web\"}} | level=\"error\"): {why}"
                    ),
                )
            })?;
            cfg.error_selector = s;
        }
        let (stream, tail) = split_selector(&cfg.error_selector)
            .map_err(|why| Error::invalid("LOKI_ERROR_SELECTOR", why))?;
        if !tail.is_empty() {
            cfg.selector = stream.to_string();
        }
        if let Some(s) = env_var(get, "LOKI_SELECTOR") {
            match split_selector(&s) {
                Ok((_, "")) => cfg.selector = s,
                _ => {
                    return Err(Error::invalid(
                        "LOKI_SELECTOR",
                        "LOKI_SELECTOR must be a LogQL stream selector such as {app=\"web\"}",
                    ));
                }
            }
        }
        cfg.timeout = Duration::from_secs(env_u64(get, "LOKI_TIMEOUT_SECONDS", 10, 1, 300)?);
        Ok(Some(cfg))
    }
}

/// The base URL, without credentials (they belong in `LOKI_USERNAME`/`LOKI_PASSWORD`).
fn parse_base(url: &str) -> Result<Url> {
    let bad = || {
        Error::invalid(
            "LOKI_URL",
            "LOKI_URL must be an http(s) URL such as http://loki:3100",
        )
    };
    let u = Url::parse(url.trim_end_matches('/')).map_err(|_| bad())?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return Err(bad());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(Error::invalid(
            "LOKI_URL",
            "LOKI_URL must not contain credentials: set LOKI_USERNAME/LOKI_PASSWORD or LOKI_TOKEN",
        ));
    }
    Ok(u)
}

/// Splits `{…} | filters` into the stream selector and the (possibly empty) filter tail,
/// checking that the braces close outside string literals and that the tail is a pipeline.
fn split_selector(s: &str) -> std::result::Result<(&str, &str), String> {
    let s = s.trim();
    if !s.starts_with('{') {
        return Err("it does not start with {".into());
    }
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q == '"' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '`' => quote = Some(c),
            '}' => {
                let (stream, tail) = s.split_at(i + 1);
                let tail = tail.trim();
                if stream.len() <= 2 {
                    return Err("the selector has no matcher".into());
                }
                if !tail.is_empty() && !tail.starts_with('|') {
                    return Err("what follows the selector is not a | pipeline".into());
                }
                return Ok((stream, tail));
            }
            _ => {}
        }
    }
    Err("the selector's { is not closed".into())
}

/// A label filter on a parsed field.
#[derive(Debug, Clone)]
enum Filter {
    /// `name="value"`.
    Eq(&'static str, String),
    /// `name=~"(?i)<escaped value>"`: equal, ignoring case.
    EqIgnoreCase(&'static str, String),
}

/// `<selector> [|~ "pattern"] | json [tail] [| filter …]`.
fn logql(selector: &str, pattern: Option<&str>, filters: &[Filter]) -> String {
    let (stream, tail) = split_selector(selector).unwrap_or((selector, ""));
    let mut q = stream.to_string();
    if let Some(p) = pattern {
        let _ = write!(q, " |~ {}", quote(p));
    }
    q.push_str(" | json");
    if !tail.is_empty() {
        q.push(' ');
        q.push_str(tail);
    }
    for f in filters {
        match f {
            Filter::Eq(name, v) => {
                let _ = write!(q, " | {name}={}", quote(v));
            }
            Filter::EqIgnoreCase(name, v) => {
                let _ = write!(
                    q,
                    " | {name}=~{}",
                    quote(&format!("(?i){}", regex::escape(v)))
                );
            }
        }
    }
    q
}

/// Parses `30m`, `1h`, `7d` (minutes, hours, days; at least a minute, at most 30 days).
pub fn parse_window(arg: &str, value: &str) -> Result<chrono::Duration> {
    let bad = || {
        Error::invalid(
            arg,
            format!(
                "{arg} must be a number and a unit m, h or d (30m, 1h, 7d), from 1m to \
                 {MAX_WINDOW_DAYS}d; got {:?}",
                clip(value, 40)
            ),
        )
    };
    let v = value.trim();
    if v.len() < 2 || !v.is_ascii() {
        return Err(bad());
    }
    let (n, unit) = v.split_at(v.len() - 1);
    if !n.bytes().all(|b| b.is_ascii_digit()) || n.len() > 6 {
        return Err(bad());
    }
    let n: i64 = n.parse().map_err(|_| bad())?;
    let d = match unit {
        "m" => chrono::Duration::minutes(n),
        "h" => chrono::Duration::hours(n),
        "d" => chrono::Duration::days(n),
        _ => return Err(bad()),
    };
    if n == 0 || d > chrono::Duration::days(MAX_WINDOW_DAYS) {
        return Err(bad());
    }
    Ok(d)
}

/// One log line as read from Loki.
#[derive(Debug, Clone)]
struct Entry {
    ts_ns: i64,
    labels: Map<String, Value>,
    line: String,
    /// The line's fields when it is a JSON object.
    fields: Option<Map<String, Value>>,
}

const LEVEL_KEYS: &[&str] = &["level", "lvl", "severity", "detected_level"];
const MESSAGE_KEYS: &[&str] = &["msg", "message", "error", "err", "errorMessage"];
const SOURCE_KEYS: &[&str] = &["source", "service", "service_name", "app"];
const FEATURE_KEYS: &[&str] = &["feature"];
const REQUEST_KEYS: &[&str] = &["requestId", "request_id", "reqId"];
const VERSION_KEYS: &[&str] = &["version", "appVersion", "app_version", "release"];

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        // `error: {message: …}`.
        Value::Object(o) => o.get("message").and_then(text),
        _ => None,
    }
}

impl Entry {
    /// A field of the JSON line, else a stream label.
    fn get(&self, keys: &[&str]) -> Option<String> {
        let from = |m: &Map<String, Value>| keys.iter().find_map(|k| m.get(*k).and_then(text));
        self.fields
            .as_ref()
            .and_then(from)
            .or_else(|| from(&self.labels))
    }

    fn message(&self) -> String {
        self.get(MESSAGE_KEYS)
            .unwrap_or_else(|| self.line.trim().to_string())
    }

    fn time(&self) -> String {
        DateTime::from_timestamp_nanos(self.ts_ns).to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("time".into(), json!(self.time()));
        for (name, keys) in [
            ("level", LEVEL_KEYS),
            ("source", SOURCE_KEYS),
            ("feature", FEATURE_KEYS),
            ("requestId", REQUEST_KEYS),
        ] {
            if let Some(v) = self.get(keys) {
                o.insert(name.into(), json!(clip(&v, 200)));
            }
        }
        o.insert("message".into(), json!(clip(&self.message(), 1_000)));
        match &self.fields {
            Some(f) => {
                let shown: Vec<&str> = [LEVEL_KEYS, MESSAGE_KEYS, SOURCE_KEYS, FEATURE_KEYS]
                    .concat()
                    .into_iter()
                    .chain(REQUEST_KEYS.iter().copied())
                    .collect();
                let rest: Map<String, Value> = f
                    .iter()
                    .filter(|(k, _)| !shown.contains(&k.as_str()))
                    .take(30)
                    .map(|(k, v)| (k.clone(), clip_value(v)))
                    .collect();
                if !rest.is_empty() {
                    o.insert("fields".into(), Value::Object(rest));
                }
            }
            None => {
                o.insert("line".into(), json!(clip(&self.line, 1_000)));
            }
        }
        if !self.labels.is_empty() {
            o.insert("labels".into(), Value::Object(self.labels.clone()));
        }
        Value::Object(o)
    }

    /// The group key of `loki_stats` / `loki_compare`.
    fn group(&self, by: GroupBy) -> String {
        let v = match by {
            GroupBy::Source => self.get(SOURCE_KEYS),
            GroupBy::Feature => self.get(FEATURE_KEYS),
            GroupBy::Message => Some(self.message()),
            GroupBy::Version => self.get(VERSION_KEYS),
        };
        v.map(|v| clip(&v, 200))
            .unwrap_or_else(|| "(none)".to_string())
    }
}

/// Long strings in a log's extra fields are cut (the model's context is precious).
fn clip_value(v: &Value) -> Value {
    match v {
        Value::String(s) => json!(clip(s, 300)),
        other => {
            let s = other.to_string();
            if s.len() > 600 {
                json!(clip(&s, 300))
            } else {
                other.clone()
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupBy {
    Source,
    Feature,
    Message,
    Version,
}

impl GroupBy {
    fn parse(v: Option<String>, default: GroupBy) -> Result<GroupBy> {
        match v.as_deref() {
            None => Ok(default),
            Some("source") => Ok(GroupBy::Source),
            Some("feature") => Ok(GroupBy::Feature),
            Some("message") => Ok(GroupBy::Message),
            Some("version") => Ok(GroupBy::Version),
            Some(other) => Err(Error::invalid(
                "groupBy",
                format!(
                    "groupBy must be source, feature, message or version, not {:?}",
                    clip(other, 40)
                ),
            )),
        }
    }
    fn name(self) -> &'static str {
        match self {
            GroupBy::Source => "source",
            GroupBy::Feature => "feature",
            GroupBy::Message => "message",
            GroupBy::Version => "version",
        }
    }
}

/// Reads a `query_range` answer into entries, newest first.
fn entries(answer: &Value) -> Result<Vec<Entry>> {
    let bad = |what: &str| Error::upstream("loki", 200, format!("unexpected Loki answer: {what}"));
    if answer.get("status").and_then(Value::as_str) != Some("success") {
        return Err(bad("status is not success"));
    }
    let data = answer.get("data").ok_or_else(|| bad("no data"))?;
    match data.get("resultType").and_then(Value::as_str) {
        Some("streams") => {}
        other => {
            return Err(bad(&format!(
                "resultType {} instead of streams",
                other.unwrap_or("missing")
            )));
        }
    }
    let streams = data
        .get("result")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no result"))?;
    let mut out = Vec::new();
    for s in streams {
        let labels = s
            .get("stream")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for v in s
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(ts_ns) = v
                .get(0)
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<i64>().ok())
            else {
                continue;
            };
            let line = v.get(1).and_then(Value::as_str).unwrap_or("").to_string();
            let fields = match serde_json::from_str::<Value>(&line) {
                Ok(Value::Object(o)) => Some(o),
                _ => None,
            };
            out.push(Entry {
                ts_ns,
                labels: labels.clone(),
                line,
                fields,
            });
        }
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.ts_ns));
    Ok(out)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Counts per group, largest first (ties by key), at most [`MAX_GROUPS`].
fn count_groups(entries: &[Entry], by: GroupBy) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for e in entries {
        *counts.entry(e.group(by)).or_insert(0u64) += 1;
    }
    counts
}

/// The Loki tool set: a [`ToolProvider`] named `loki`.
pub struct LokiTools {
    client: LokiClient,
    cfg: LokiToolsConfig,
}

impl std::fmt::Debug for LokiTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LokiTools")
            .field("base", &self.client.base().as_str())
            .finish_non_exhaustive()
    }
}

impl LokiTools {
    pub fn new(cfg: LokiToolsConfig) -> Result<Self> {
        let base = parse_base(&cfg.url)?;
        for (var, s) in [
            ("LOKI_ERROR_SELECTOR", &cfg.error_selector),
            ("LOKI_SELECTOR", &cfg.selector),
        ] {
            split_selector(s).map_err(|why| Error::invalid(var, format!("{var}: {why}")))?;
        }
        let client = LokiClient::new(
            base,
            cfg.tenant.as_deref(),
            cfg.auth.clone(),
            cfg.probe_timeout,
        )?;
        Ok(LokiTools { client, cfg })
    }

    pub fn config(&self) -> &LokiToolsConfig {
        &self.cfg
    }

    fn unreachable(&self, why: String) -> Error {
        Error::unavailable(format!(
            "Loki not reachable at {}: {why}. Check LOKI_URL and that Loki is up; \
             answer without log data or try again later.",
            self.client.base().as_str().trim_end_matches('/')
        ))
    }

    /// `GET /ready` within the probe timeout: any HTTP answer means Loki is there.
    async fn probe(&self) -> Result<()> {
        match self
            .client
            .get(
                "the Loki probe",
                self.client.url(&["ready"]),
                self.cfg.probe_timeout,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(t) if t.timeout => Err(self.unreachable(format!(
                "no answer within {} s",
                self.cfg.probe_timeout.as_secs_f32()
            ))),
            Err(t) => Err(self.unreachable(cause(&t))),
        }
    }

    /// One `query_range` (direction backward), its entries newest first.
    async fn query_range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Entry>> {
        let url = self
            .client
            .query_range_url(query, start, end, limit)
            .ok_or_else(|| Error::invalid("since", "the time window is out of range"))?;
        let reply = match self
            .client
            .get("the Loki query", url, self.cfg.timeout)
            .await
        {
            Ok(r) => r,
            Err(t) if t.timeout && !t.connect => {
                return Err(Error::unavailable(format!(
                    "Loki at {} did not answer the query within {} s; try a shorter window \
                     or a smaller limit",
                    self.client.base().as_str().trim_end_matches('/'),
                    self.cfg.timeout.as_secs()
                ))
                .with_source(t.error));
            }
            Err(t) => {
                let why = cause(&t);
                return Err(self.unreachable(why).with_source(t.error));
            }
        };
        let status = reply.status;
        if !status.is_success() {
            return Err(reply.error(format!(
                "Loki refused the query ({}): {}",
                status.as_u16(),
                loki_message(&reply, 500)
            )));
        }
        let answer: Value = serde_json::from_slice(&reply.body).map_err(|e| {
            Error::upstream(
                "loki",
                status.as_u16(),
                format!("Loki's answer is not JSON: {e}"),
            )
        })?;
        let mut out = entries(&answer)?;
        out.truncate(limit as usize);
        Ok(out)
    }

    async fn errors(&self, now: DateTime<Utc>, args: &Map<String, Value>) -> Result<Value> {
        let since_s = opt_str(args, "since")?.unwrap_or_else(|| "1h".into());
        let since = parse_window("since", &since_s)?;
        let limit = opt_limit(args, "limit", 50, 1_000)?;
        let mut filters = Vec::new();
        for (arg, label) in [
            ("source", "source"),
            ("feature", "feature"),
            ("requestId", "requestId"),
        ] {
            if let Some(v) = opt_str(args, arg)? {
                filters.push(Filter::Eq(label, v));
            }
        }
        let query = logql(&self.cfg.error_selector, None, &filters);
        let found = self.query_range(&query, now - since, now, limit).await?;
        Ok(json!({
            "query": query,
            "since": since_s,
            "count": found.len(),
            "truncated": found.len() >= limit as usize,
            "entries": found.iter().map(Entry::to_json).collect::<Vec<_>>(),
        }))
    }

    async fn search(&self, now: DateTime<Utc>, args: &Map<String, Value>) -> Result<Value> {
        let pattern = req_str(args, "pattern")?;
        check_pattern(&pattern)?;
        let since_s = opt_str(args, "since")?.unwrap_or_else(|| "1h".into());
        let since = parse_window("since", &since_s)?;
        let limit = opt_limit(args, "limit", 50, 1_000)?;
        let mut filters = Vec::new();
        if let Some(level) = opt_str(args, "level")? {
            filters.push(Filter::EqIgnoreCase("level", level));
        }
        if let Some(r) = opt_str(args, "requestId")? {
            filters.push(Filter::Eq("requestId", r));
        }
        let query = logql(&self.cfg.selector, Some(&pattern), &filters);
        let found = self.query_range(&query, now - since, now, limit).await?;
        Ok(json!({
            "query": query,
            "since": since_s,
            "count": found.len(),
            "truncated": found.len() >= limit as usize,
            "entries": found.iter().map(Entry::to_json).collect::<Vec<_>>(),
        }))
    }

    async fn stats(&self, now: DateTime<Utc>, args: &Map<String, Value>) -> Result<Value> {
        let since_s = opt_str(args, "since")?.unwrap_or_else(|| "24h".into());
        let since = parse_window("since", &since_s)?;
        let by = GroupBy::parse(opt_str(args, "groupBy")?, GroupBy::Source)?;
        let query = logql(&self.cfg.error_selector, None, &[]);
        let found = self
            .query_range(&query, now - since, now, STATS_ENTRIES)
            .await?;
        let counts = count_groups(&found, by);
        let total = found.len() as u64;
        let mut groups: Vec<(String, u64)> = counts.into_iter().collect();
        groups.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let group_count = groups.len();
        groups.truncate(MAX_GROUPS);
        Ok(json!({
            "query": query,
            "since": since_s,
            "groupBy": by.name(),
            "entries": total,
            "truncated": total >= u64::from(STATS_ENTRIES),
            "groupCount": group_count,
            "groups": groups.iter().map(|(k, n)| json!({
                "key": k,
                "count": n,
                "percent": pct(*n as f64, total as f64),
            })).collect::<Vec<_>>(),
        }))
    }

    async fn compare(&self, now: DateTime<Utc>, args: &Map<String, Value>) -> Result<Value> {
        let period_s = opt_str(args, "period")?.unwrap_or_else(|| "1h".into());
        let period = parse_window("period", &period_s)?;
        let source = opt_str(args, "source")?;
        let default_by = if source.is_some() {
            GroupBy::Feature
        } else {
            GroupBy::Source
        };
        let by = GroupBy::parse(opt_str(args, "groupBy")?, default_by)?;
        let filters: Vec<Filter> = source
            .iter()
            .map(|s| Filter::Eq("source", s.clone()))
            .collect();
        let query = logql(&self.cfg.error_selector, None, &filters);
        let mid = now - period;
        let (current, previous) = futures::future::try_join(
            self.query_range(&query, mid, now, STATS_ENTRIES),
            self.query_range(&query, mid - period, mid, STATS_ENTRIES),
        )
        .await?;
        let cur = count_groups(&current, by);
        let prev = count_groups(&previous, by);
        let mut keys: Vec<&String> = cur.keys().chain(prev.keys()).collect();
        keys.sort();
        keys.dedup();
        let mut rows: Vec<(String, u64, u64)> = keys
            .into_iter()
            .map(|k| {
                (
                    k.clone(),
                    cur.get(k).copied().unwrap_or(0),
                    prev.get(k).copied().unwrap_or(0),
                )
            })
            .collect();
        rows.sort_by(|a, b| {
            let d = |r: &(String, u64, u64)| (r.1 as i64 - r.2 as i64).abs();
            d(b).cmp(&d(a))
                .then_with(|| b.1.cmp(&a.1))
                .then_with(|| a.0.cmp(&b.0))
        });
        let group_count = rows.len();
        rows.truncate(MAX_GROUPS);
        let (ct, pt) = (current.len() as u64, previous.len() as u64);
        Ok(json!({
            "query": query,
            "period": period_s,
            "groupBy": by.name(),
            "current": { "from": rfc3339(mid), "to": rfc3339(now), "total": ct,
                         "truncated": ct >= u64::from(STATS_ENTRIES) },
            "previous": { "from": rfc3339(mid - period), "to": rfc3339(mid), "total": pt,
                          "truncated": pt >= u64::from(STATS_ENTRIES) },
            "delta": ct as i64 - pt as i64,
            "changePercent": change(ct, pt),
            "groupCount": group_count,
            "groups": rows.iter().map(|(k, c, p)| json!({
                "key": k,
                "current": c,
                "previous": p,
                "delta": *c as i64 - *p as i64,
                "changePercent": change(*c, *p),
            })).collect::<Vec<_>>(),
        }))
    }

    async fn trace(&self, now: DateTime<Utc>, args: &Map<String, Value>) -> Result<Value> {
        let request_id = req_str(args, "requestId")?;
        let since_s = opt_str(args, "since")?.unwrap_or_else(|| "1h".into());
        let since = parse_window("since", &since_s)?;
        let query = logql(
            &self.cfg.selector,
            None,
            &[Filter::Eq("requestId", request_id.clone())],
        );
        let mut found = self
            .query_range(&query, now - since, now, TRACE_LINES)
            .await?;
        let truncated = found.len() >= TRACE_LINES as usize;
        found.reverse();
        let mut levels: BTreeMap<String, u64> = BTreeMap::new();
        let mut sources: Vec<String> = Vec::new();
        let mut features: Vec<String> = Vec::new();
        let mut first_error: Option<Value> = None;
        let mut errors = 0u64;
        for e in &found {
            let level = e
                .get(LEVEL_KEYS)
                .map(|l| l.to_lowercase())
                .unwrap_or_else(|| "(none)".into());
            if matches!(level.as_str(), "error" | "fatal" | "critical" | "err") {
                errors += 1;
                if first_error.is_none() {
                    first_error =
                        Some(json!({"time": e.time(), "message": clip(&e.message(), 500)}));
                }
            }
            *levels.entry(level).or_insert(0) += 1;
            for (list, keys) in [(&mut sources, SOURCE_KEYS), (&mut features, FEATURE_KEYS)] {
                if let Some(v) = e.get(keys)
                    && !list.contains(&v)
                    && list.len() < 20
                {
                    list.push(v);
                }
            }
        }
        let summary = match (found.first(), found.last()) {
            (Some(a), Some(b)) => json!({
                "lines": found.len(),
                "first": a.time(),
                "last": b.time(),
                "durationMs": (b.ts_ns - a.ts_ns) / 1_000_000,
                "levels": levels,
                "errors": errors,
                "firstError": first_error,
                "sources": sources,
                "features": features,
            }),
            _ => json!({ "lines": 0 }),
        };
        Ok(json!({
            "query": query,
            "requestId": request_id,
            "since": since_s,
            "truncated": truncated,
            "summary": summary,
            "lines": found.iter().map(Entry::to_json).collect::<Vec<_>>(),
        }))
    }
}

fn pct(part: f64, whole: f64) -> Value {
    if whole == 0.0 {
        Value::Null
    } else {
        json!(((part / whole) * 1000.0).round() / 10.0)
    }
}

/// The change from `prev` to `cur` in percent (one decimal); `null` when `prev` is 0.
fn change(cur: u64, prev: u64) -> Value {
    if prev == 0 {
        Value::Null
    } else {
        json!((((cur as f64 - prev as f64) / prev as f64) * 1000.0).round() / 10.0)
    }
}

fn schema(properties: Value, required: &[&str]) -> Value {
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

const TOOL_NAMES: [&str; 5] = [
    "loki_errors",
    "loki_search",
    "loki_stats",
    "loki_compare",
    "loki_trace",
];

const SINCE: &str =
    "How far back to look: a number and a unit m, h or d (30m, 1h, 7d); at most 30d.";

#[async_trait]
impl ToolProvider for LokiTools {
    fn name(&self) -> &str {
        "loki"
    }

    fn tools(&self) -> Vec<ToolSpec> {
        let group_by = json!({
            "type": "string",
            "enum": ["source", "feature", "message", "version"],
            "description": "Field to group log lines by.",
        });
        vec![
            ToolSpec {
                name: "loki_errors".into(),
                description: "Recent production error logs from Loki, newest first: time, level, \
                    source (service), feature, requestId, message and the other JSON fields. Use it \
                    to see what is failing now; filter by source, feature or requestId."
                    .into(),
                input_schema: schema(
                    json!({
                        "source": {"type": "string", "description": "Only errors of this source (service), exact match."},
                        "feature": {"type": "string", "description": "Only errors of this feature, exact match."},
                        "requestId": {"type": "string", "description": "Only errors of this request id."},
                        "since": {"type": "string", "description": SINCE, "default": "1h"},
                        "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50, "description": "Lines at most."},
                    }),
                    &[],
                ),
            },
            ToolSpec {
                name: "loki_search".into(),
                description: "Searches all production logs (any level) for lines matching a \
                    regular expression (RE2 syntax, case-sensitive; prefix (?i) to ignore case), \
                    newest first."
                    .into(),
                input_schema: schema(
                    json!({
                        "pattern": {"type": "string", "description": "Regular expression matched against the raw log line, e.g. timeout|ECONNRESET or (?i)stripe."},
                        "level": {"type": "string", "description": "Only lines of this level (error, warn, info, debug), ignoring case."},
                        "requestId": {"type": "string", "description": "Only lines of this request id."},
                        "since": {"type": "string", "description": SINCE, "default": "1h"},
                        "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50, "description": "Lines at most."},
                    }),
                    &["pattern"],
                ),
            },
            ToolSpec {
                name: "loki_stats".into(),
                description: "Error counts over a window, grouped by source, feature, message or \
                    version, largest first (up to 5000 error lines are counted; truncated says \
                    when there were more). Use it for an overview of what fails most."
                    .into(),
                input_schema: schema(
                    json!({
                        "since": {"type": "string", "description": SINCE, "default": "24h"},
                        "groupBy": group_by.clone(),
                    }),
                    &[],
                ),
            },
            ToolSpec {
                name: "loki_compare".into(),
                description: "Compares error counts of the last period with the period before it \
                    (same length), per group: current, previous, delta and percent change \
                    (null when the previous count was 0). Use it to tell whether errors are rising \
                    after a deploy. groupBy defaults to source, or to feature when a source is given."
                    .into(),
                input_schema: schema(
                    json!({
                        "period": {"type": "string", "description": "Window length: a number and a unit m, h or d (30m, 1h, 7d); at most 30d.", "default": "1h"},
                        "source": {"type": "string", "description": "Only errors of this source (service)."},
                        "groupBy": group_by,
                    }),
                    &[],
                ),
            },
            ToolSpec {
                name: "loki_trace".into(),
                description: "Every log line of one request (any level, any service), oldest first, \
                    with a summary: duration, counts per level, services and the first error."
                    .into(),
                input_schema: schema(
                    json!({
                        "requestId": {"type": "string", "description": "The request id (the requestId field of the logs)."},
                        "since": {"type": "string", "description": SINCE, "default": "1h"},
                    }),
                    &["requestId"],
                ),
            },
        ]
    }

    async fn call(&self, ctx: &ToolContext, name: &str, input: Value) -> Result<Value> {
        let args = input_object(&input)?;
        // Arguments are checked before Loki is reached: a bad argument is the model's to fix.
        if !TOOL_NAMES.contains(&name) {
            return Err(Error::not_found(format!("the loki tools have no {name:?}")));
        }
        validate(name, &args)?;
        self.probe().await?;
        let now = ctx.now;
        match name {
            "loki_errors" => self.errors(now, &args).await,
            "loki_search" => self.search(now, &args).await,
            "loki_stats" => self.stats(now, &args).await,
            "loki_compare" => self.compare(now, &args).await,
            _ => self.trace(now, &args).await,
        }
    }
}

/// The search pattern must compile (Loki's RE2 and Rust's `regex` share their syntax, bar a
/// few rarely used features) and stay short.
fn check_pattern(pattern: &str) -> Result<()> {
    if pattern.chars().count() > 1_000 {
        return Err(Error::invalid(
            "pattern",
            "pattern is longer than 1000 characters",
        ));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            Error::invalid(
                "pattern",
                format!("pattern is not a valid regular expression (RE2 syntax): {e}"),
            )
        })?;
    Ok(())
}

/// Checks a call's arguments without reaching Loki.
fn validate(name: &str, args: &Map<String, Value>) -> Result<()> {
    let window = |arg: &str| -> Result<()> {
        if let Some(v) = opt_str(args, arg)? {
            parse_window(arg, &v)?;
        }
        Ok(())
    };
    match name {
        "loki_errors" => {
            window("since")?;
            opt_limit(args, "limit", 50, 1_000)?;
        }
        "loki_search" => {
            check_pattern(&req_str(args, "pattern")?)?;
            window("since")?;
            opt_limit(args, "limit", 50, 1_000)?;
        }
        "loki_stats" => {
            window("since")?;
            GroupBy::parse(opt_str(args, "groupBy")?, GroupBy::Source)?;
        }
        "loki_compare" => {
            window("period")?;
            GroupBy::parse(opt_str(args, "groupBy")?, GroupBy::Source)?;
        }
        _ => {
            req_str(args, "requestId")?;
            window("since")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_so_they_cannot_change_the_query() {
        let q = logql(
            DEFAULT_ERROR_SELECTOR,
            None,
            &[Filter::Eq("source", r#"x"} |= "" or {app=~".+"#.into())],
        );
        assert_eq!(
            q,
            r#"{level="error"} | json | source="x\"} |= \"\" or {app=~\".+""#
        );
        assert_eq!(quote("a\\b\nc\u{1}"), r#""a\\b\nc\u0001""#);
    }

    #[test]
    fn selectors_split_outside_string_literals() {
        assert_eq!(
            split_selector(r#"{app="a}b"} | level="error""#).unwrap(),
            (r#"{app="a}b"}"#, r#"| level="error""#)
        );
        assert_eq!(
            split_selector(r#"{app="x\"}"}"#).unwrap(),
            (r#"{app="x\"}"}"#, "")
        );
        assert!(split_selector("app=x").is_err());
        assert!(split_selector("{}").is_err());
        assert!(split_selector(r#"{app="x"} or 1"#).is_err());
        assert!(split_selector(r#"{app="x"#).is_err());
        assert_eq!(
            logql(r#"{app="web"} | level="error""#, Some("a\"b"), &[]),
            r#"{app="web"} |~ "a\"b" | json | level="error""#
        );
    }

    #[test]
    fn windows_are_strict_and_bounded() {
        assert_eq!(
            parse_window("since", "30m").unwrap(),
            chrono::Duration::minutes(30)
        );
        assert_eq!(
            parse_window("since", "7d").unwrap(),
            chrono::Duration::days(7)
        );
        assert_eq!(
            parse_window("since", "720h").unwrap(),
            chrono::Duration::days(30)
        );
        for bad in [
            "", "1", "h", "0h", "31d", "1w", "-1h", "1.5h", "1 h", "1hh", "١h",
        ] {
            let e = parse_window("since", bad).unwrap_err();
            assert_eq!(e.field(), Some("since"), "{bad:?}");
        }
        assert_eq!(
            parse_window("period", "x").unwrap_err().field(),
            Some("period")
        );
    }
}
