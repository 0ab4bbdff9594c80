//! Sentry's integration-platform issue webhook as an [`AlertSource`] named `sentry`.
//!
//! The request must carry `Sentry-Hook-Resource: issue` (anything else is skipped with
//! "Ignored non-issue resource"). The body is `{action, data:{issue:{...}}, installation, actor}`;
//! it becomes an event only for a new issue (`created` + substatus `new`) or one that came back
//! (`unresolved` + substatus `regressed` or `escalating`), as the original does (spec §4.2).
//!
//! The event carries Sentry's numeric issue id as `external_id` (so a redelivered or reopened
//! Sentry issue lands on the same Dispatch issue), its own title `[{project.slug}] {title}`,
//! priority (high → P1, medium → P2, low → P4, otherwise P3) and a markdown description built
//! from the payload (Error, Culprit, Project, Impact, Links). With the `sentry-api` feature and a
//! token, the issue's latest event adds a stack trace, the failing request, the user (id or name
//! only), environment tags and the release; with a [`SuspectFinder`] as well (the GitHub
//! adapter's, when `GITHUB_TOKEN` and the repository are set), a "Suspected Cause" section lists
//! the commits of the 48 h before the issue's first event that changed files of the stack
//! trace, and the deployments of that window. Sentry
//! issues never start an agent by themselves: that is the engine's `AUTO_SPAWN_ORIGINS`
//! (default `loki` only).
//!
//! Sentry signs the body with the integration's client secret; the server checks the signature
//! before this parser sees the request.

use async_trait::async_trait;
use dispatch_core::event::ErrorEvent;
use dispatch_core::issue::Priority;
use dispatch_core::ports::{AlertBatch, AlertRequest, AlertSource};
use dispatch_core::{Error, Result, Timestamp};
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// The link source name of Sentry issues.
pub const ORIGIN: &str = "sentry";

/// The header that names what the webhook is about (`issue`, `event_alert`, `installation`, ...).
pub const RESOURCE_HEADER: &str = "sentry-hook-resource";

/// Why a non-issue webhook produced no event (the original's response message).
pub const IGNORED_RESOURCE: &str = "Ignored non-issue resource";

/// Counts above this are clamped so a bogus `count` cannot overflow stored counters.
const MAX_EVENT_COUNT: u64 = 1_000_000_000_000;

/// Sentry issue webhooks → error events.
///
/// With the `sentry-api` feature and [`SentryAlertSource::with_api`], each new or regressed
/// issue is enriched from the Sentry API (its latest event: stack trace, request, user, tags,
/// release) before it becomes an event. A failing or slow Sentry API never fails the webhook:
/// the event is then built from the payload alone.
#[derive(Debug, Clone, Default)]
pub struct SentryAlertSource {
    #[cfg(feature = "sentry-api")]
    api: Option<std::sync::Arc<api::SentryApi>>,
    #[cfg(feature = "sentry-api")]
    suspects: Option<std::sync::Arc<dyn SuspectFinder>>,
}

/// Finds what may have caused a new Sentry issue: e.g. the commits before its first event that
/// changed files of its stack trace (the GitHub adapter's `GithubSuspectFinder`).
#[async_trait]
pub trait SuspectFinder: Send + Sync + std::fmt::Debug {
    /// The markdown body of a "Suspected Cause" section, or `None` when nothing was found.
    /// Never fails: a failure is logged and answers `None`, so the webhook goes on without it.
    async fn suspected_cause(
        &self,
        first_seen: Timestamp,
        stack_files: &[String],
    ) -> Option<String>;
}

impl SentryAlertSource {
    /// Builds events from the webhook payload alone.
    pub fn new() -> Self {
        SentryAlertSource::default()
    }

    /// Whether issues are enriched through the Sentry API.
    pub fn enriches(&self) -> bool {
        #[cfg(feature = "sentry-api")]
        {
            self.api.is_some()
        }
        #[cfg(not(feature = "sentry-api"))]
        {
            false
        }
    }

    async fn enrichment(&self, _issue_id: &str, _first_seen: Option<Timestamp>) -> Enrichment {
        #[cfg(feature = "sentry-api")]
        if let Some(api) = &self.api {
            let mut e = api.enrichment(_issue_id).await;
            if let (Some(finder), Some(at)) = (&self.suspects, _first_seen) {
                e.suspected_cause = finder.suspected_cause(at, &e.files).await;
            }
            return e;
        }
        Enrichment::default()
    }
}

#[async_trait]
impl AlertSource for SentryAlertSource {
    fn name(&self) -> &str {
        ORIGIN
    }

    async fn parse(&self, request: AlertRequest<'_>) -> Result<AlertBatch> {
        let root = match decode(request.header(RESOURCE_HEADER), request.body)? {
            Decoded::Ignored(batch) => return Ok(batch),
            Decoded::Json(v) => v,
        };
        match classify(&root)? {
            Classified::Skip(batch) => Ok(batch),
            Classified::Process { issue, trigger } => {
                // The payload is checked whole before any API call.
                let mut event = issue_event(issue, trigger, &Enrichment::default())?;
                if self.enriches() {
                    let id = event.external_id.clone().unwrap_or_default();
                    let extra = self.enrichment(&id, event.first_seen).await;
                    if !extra.is_empty() {
                        event = issue_event(issue, trigger, &extra)?;
                    }
                }
                Ok(AlertBatch {
                    events: vec![event],
                    skipped: Vec::new(),
                })
            }
        }
    }
}

/// What kind of Sentry issue event this is, for the description's banner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    New,
    Regressed,
    Escalating,
}

enum Decoded {
    Ignored(AlertBatch),
    Json(Value),
}

fn decode(resource: Option<&str>, body: &[u8]) -> Result<Decoded> {
    let resource = resource.map(str::trim).unwrap_or("");
    if !resource.eq_ignore_ascii_case("issue") {
        return Ok(Decoded::Ignored(AlertBatch {
            events: Vec::new(),
            skipped: vec![IGNORED_RESOURCE.to_string()],
        }));
    }
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::invalid("body", "a JSON body is required"));
    }
    serde_json::from_slice(body)
        .map(Decoded::Json)
        .map_err(|e| Error::invalid("body", format!("malformed JSON: {e}")))
}

/// Parses a Sentry webhook: the `Sentry-Hook-Resource` header value and the exact body bytes.
/// No Sentry API calls.
pub fn parse_payload(resource: Option<&str>, body: &[u8]) -> Result<AlertBatch> {
    match decode(resource, body)? {
        Decoded::Ignored(batch) => Ok(batch),
        Decoded::Json(v) => parse_value(&v),
    }
}

/// Parses an already decoded Sentry issue webhook body. No Sentry API calls.
pub fn parse_value(root: &Value) -> Result<AlertBatch> {
    match classify(root)? {
        Classified::Skip(batch) => Ok(batch),
        Classified::Process { issue, trigger } => Ok(AlertBatch {
            events: vec![issue_event(issue, trigger, &Enrichment::default())?],
            skipped: Vec::new(),
        }),
    }
}

enum Classified<'a> {
    Skip(AlertBatch),
    Process {
        issue: &'a Map<String, Value>,
        trigger: Trigger,
    },
}

/// The envelope: which issue, and whether it is one the original processes.
fn classify(root: &Value) -> Result<Classified<'_>> {
    let Some(root) = root.as_object() else {
        return Err(Error::invalid(
            "body",
            "the Sentry payload must be a JSON object",
        ));
    };
    let action = match root.get("action") {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Null) | None => {
            return Err(Error::invalid("action", "the Sentry payload has no action"));
        }
        Some(_) => return Err(Error::invalid("action", "action must be a string")),
    };
    let data = object(root, "", "data")?;
    let issue = object(data, "data", "issue")?;
    let substatus = opt_str(issue, "data.issue", "substatus")?.unwrap_or("");
    let trigger = match (action, substatus) {
        ("created", "new") => Trigger::New,
        ("unresolved", "regressed") => Trigger::Regressed,
        ("unresolved", "escalating") => Trigger::Escalating,
        _ => {
            let substatus = if substatus.is_empty() {
                "none"
            } else {
                substatus
            };
            return Ok(Classified::Skip(AlertBatch {
                events: Vec::new(),
                skipped: vec![format!(
                    "Skipped: action {action:?} with substatus {substatus:?} is neither a new nor a regressed issue"
                )],
            }));
        }
    };
    Ok(Classified::Process { issue, trigger })
}

/// Sentry's numeric issue id (sent as a string; a number is accepted too).
fn issue_id(issue: &Map<String, Value>) -> Result<String> {
    let id = str_or_number(issue, "data.issue", "id")?
        .ok_or_else(|| Error::invalid("data.issue.id", "data.issue.id is missing"))?;
    if id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::invalid(
            "data.issue.id",
            "data.issue.id is not a Sentry issue id",
        ));
    }
    Ok(id)
}

fn field_name(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn object<'a>(
    m: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<&'a Map<String, Value>> {
    let f = field_name(parent, key);
    match m.get(key) {
        Some(Value::Object(o)) => Ok(o),
        Some(Value::Null) | None => Err(Error::invalid(&f, format!("{f} is missing"))),
        Some(_) => Err(Error::invalid(&f, format!("{f} must be an object"))),
    }
}

fn opt_object<'a>(
    m: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>> {
    match m.get(key) {
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(Value::Null) | None => Ok(None),
        Some(_) => {
            let f = field_name(parent, key);
            Err(Error::invalid(&f, format!("{f} must be an object")))
        }
    }
}

/// A string field; missing, null or empty is `None`.
fn opt_str<'a>(m: &'a Map<String, Value>, parent: &str, key: &str) -> Result<Option<&'a str>> {
    match m.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.as_str())),
        Some(Value::String(_)) | Some(Value::Null) | None => Ok(None),
        Some(_) => {
            let f = field_name(parent, key);
            Err(Error::invalid(&f, format!("{f} must be a string")))
        }
    }
}

/// A field Sentry sends as a string or a number (`id`, `count`, `userCount`).
fn str_or_number(m: &Map<String, Value>, parent: &str, key: &str) -> Result<Option<String>> {
    match m.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::String(_)) | Some(Value::Null) | None => Ok(None),
        Some(_) => {
            let f = field_name(parent, key);
            Err(Error::invalid(
                &f,
                format!("{f} must be a string or a number"),
            ))
        }
    }
}

fn parse_count(s: &str) -> Option<u64> {
    if let Ok(n) = s.parse::<u64>() {
        return Some(n.min(MAX_EVENT_COUNT));
    }
    let f = s
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && *f >= 0.0)?;
    Some((f.round() as u64).min(MAX_EVENT_COUNT))
}

fn parse_time(s: &str) -> Option<Timestamp> {
    let t = chrono::DateTime::parse_from_rfc3339(s.trim()).ok()?;
    let t = t.with_timezone(&chrono::Utc);
    (t.timestamp() >= 0).then_some(t)
}

/// Sentry's priority → ours: high → P1, medium → P2, low → P4, anything else P3.
pub fn priority_of(sentry_priority: Option<&str>) -> Priority {
    match sentry_priority
        .map(|p| p.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("high") => Priority::P1,
        Some("medium") => Priority::P2,
        Some("low") => Priority::P4,
        _ => Priority::P3,
    }
}

fn issue_event(
    issue: &Map<String, Value>,
    trigger: Trigger,
    extra: &Enrichment,
) -> Result<ErrorEvent> {
    let p = "data.issue";
    let id = issue_id(issue)?;
    let metadata = opt_object(issue, p, "metadata")?;
    let mp = "data.issue.metadata";
    let meta_type = match metadata {
        Some(m) => opt_str(m, mp, "type")?,
        None => None,
    };
    let meta_value = match metadata {
        Some(m) => opt_str(m, mp, "value")?,
        None => None,
    };
    let meta_function = match metadata {
        Some(m) => opt_str(m, mp, "function")?,
        None => None,
    };
    let meta_filename = match metadata {
        Some(m) => opt_str(m, mp, "filename")?,
        None => None,
    };
    let title = opt_str(issue, p, "title")?
        .map(str::to_string)
        .or_else(|| match (meta_type, meta_value) {
            (Some(t), Some(v)) => Some(format!("{t}: {v}")),
            (Some(t), None) => Some(t.to_string()),
            (None, Some(v)) => Some(v.to_string()),
            (None, None) => None,
        })
        .unwrap_or_else(|| format!("Sentry issue {id}"));
    let project = opt_object(issue, p, "project")?;
    let pp = "data.issue.project";
    let slug = match project {
        Some(m) => opt_str(m, pp, "slug")?.or(opt_str(m, pp, "name")?),
        None => None,
    }
    .unwrap_or("unknown")
    .to_string();
    let project_name = match project {
        Some(m) => opt_str(m, pp, "name")?,
        None => None,
    };
    let culprit = opt_str(issue, p, "culprit")?;
    let feature = culprit.or(meta_function).unwrap_or("unknown").to_string();
    let level = opt_str(issue, p, "level")?.unwrap_or("error").to_string();
    let short_id = opt_str(issue, p, "shortId")?;
    let status = opt_str(issue, p, "status")?;
    let substatus = opt_str(issue, p, "substatus")?;
    let platform = opt_str(issue, p, "platform")?;
    let priority = opt_str(issue, p, "priority")?;
    let permalink = opt_str(issue, p, "permalink")?.or(opt_str(issue, p, "web_url")?);
    let project_url = opt_str(issue, p, "project_url")?;
    let count_text = str_or_number(issue, p, "count")?;
    let count = count_text.as_deref().and_then(parse_count);
    let user_count = str_or_number(issue, p, "userCount")?;
    let first_seen_text = opt_str(issue, p, "firstSeen")?;
    let last_seen_text = opt_str(issue, p, "lastSeen")?;
    let is_unhandled = matches!(issue.get("isUnhandled"), Some(Value::Bool(true)));

    let mut e = ErrorEvent::new(ORIGIN, slug.clone(), feature, title.clone());
    e.level = level.clone();
    e.external_id = Some(id.clone());
    e.title = Some(format!("[{slug}] {title}"));
    e.priority = Some(priority_of(priority));
    e.link = permalink.map(str::to_string);
    e.error_message = meta_value.map(str::to_string);
    e.event_count = count.unwrap_or(1).max(1);
    e.first_seen = first_seen_text.and_then(parse_time);
    e.last_seen = last_seen_text.and_then(parse_time).or(e.first_seen);
    e.stack_trace = extra.stack_trace.clone();
    let labels = [
        ("shortId", short_id),
        ("project", Some(slug.as_str())),
        ("substatus", substatus),
        ("priority", priority),
        ("level", Some(level.as_str())),
        ("platform", platform),
        ("release", extra.release.as_deref()),
    ];
    for (k, v) in labels {
        if let Some(v) = v {
            e.labels.insert(k.to_string(), v.to_string());
        }
    }

    let mut d = String::new();
    match trigger {
        Trigger::New => {}
        Trigger::Regressed => d.push_str(
            "> **Regressed:** this Sentry issue was resolved and is happening again.\n\n",
        ),
        Trigger::Escalating => d.push_str(
            "> **Escalating:** this Sentry issue is happening much more often than before.\n\n",
        ),
    }
    let _ = writeln!(d, "## Error");
    match (meta_type, meta_value) {
        (Some(t), Some(v)) => {
            let _ = writeln!(d, "**{t}:** {v}");
        }
        _ => {
            let _ = writeln!(d, "{title}");
        }
    }
    if let Some(s) = short_id {
        let _ = writeln!(d, "- **Sentry ID:** {s}");
    }
    let _ = writeln!(d, "- **Level:** {level}");
    if let Some(s) = status {
        let _ = writeln!(
            d,
            "- **Status:** {s}{}",
            substatus.map(|x| format!(" ({x})")).unwrap_or_default()
        );
    }
    if is_unhandled {
        let _ = writeln!(d, "- **Unhandled:** yes");
    }
    if let Some(f) = meta_filename {
        let _ = writeln!(d, "- **File:** `{f}`");
    }
    d.push('\n');
    if let Some(st) = &extra.stack_trace {
        let _ = writeln!(d, "## Stack Trace\n```\n{st}\n```\n");
    }
    if let Some(sc) = &extra.suspected_cause {
        let _ = writeln!(d, "## Suspected Cause\n{}\n", sc.trim_end());
    }
    if let Some(c) = culprit.or(meta_function) {
        let _ = writeln!(d, "## Culprit\n`{c}`\n");
    }
    if let Some(r) = &extra.request {
        let _ = writeln!(d, "## HTTP Request\n`{r}`\n");
    }
    if let Some(u) = &extra.user {
        let _ = writeln!(d, "## Affected User\n{u}\n");
    }
    let _ = writeln!(d, "## Project");
    match project_name {
        Some(n) if n != slug => {
            let _ = writeln!(d, "- **Project:** {n} (`{slug}`)");
        }
        _ => {
            let _ = writeln!(d, "- **Project:** `{slug}`");
        }
    }
    if let Some(pl) = platform {
        let _ = writeln!(d, "- **Platform:** {pl}");
    }
    d.push('\n');
    let _ = writeln!(d, "## Impact");
    let _ = writeln!(
        d,
        "- **Events:** {}",
        count_text.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(
        d,
        "- **Users affected:** {}",
        user_count.as_deref().unwrap_or("unknown")
    );
    let fmt_t = |raw: Option<&str>, t: Option<Timestamp>| match (t, raw) {
        (Some(t), _) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        (None, Some(r)) => r.to_string(),
        (None, None) => "unknown".into(),
    };
    let _ = writeln!(
        d,
        "- **First seen:** {}",
        fmt_t(first_seen_text, e.first_seen)
    );
    let _ = writeln!(d, "- **Last seen:** {}", fmt_t(last_seen_text, e.last_seen));
    d.push('\n');
    if extra.release.is_some() || !extra.tags.is_empty() {
        let _ = writeln!(d, "## Environment");
        if let Some(r) = &extra.release {
            let _ = writeln!(d, "- **release:** `{r}`");
        }
        for (k, v) in &extra.tags {
            let _ = writeln!(d, "- **{k}:** {v}");
        }
        d.push('\n');
    }
    let _ = writeln!(d, "## Links");
    match permalink {
        Some(u) => {
            let _ = writeln!(d, "- [View in Sentry]({u})");
        }
        None => {
            let _ = writeln!(d, "- Sentry issue id {id}");
        }
    }
    if let Some(u) = project_url {
        let _ = writeln!(d, "- [Project issues]({u})");
    }
    e.description = Some(d);
    Ok(e)
}

/// Tags of the latest event shown in the description (the original's fixed list).
const ENVIRONMENT_TAGS: &[&str] = &[
    "environment",
    "server_name",
    "runtime",
    "runtime.name",
    "browser",
    "browser.name",
    "os",
    "os.name",
    "device",
    "transaction",
    "url",
    "handled",
    "mechanism",
];

/// Stack frames shown, most recent call first.
const MAX_FRAMES: usize = 15;

/// What the Sentry API adds to an issue: from its latest event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enrichment {
    /// The top exception's frames, most recent call first, with source context.
    pub stack_trace: Option<String>,
    /// `METHOD url` of the request that failed.
    pub request: Option<String>,
    /// Who hit it: the user id or username only (no e-mail or IP address).
    pub user: Option<String>,
    pub release: Option<String>,
    /// Environment tags, in the order of [`ENVIRONMENT_TAGS`].
    pub tags: Vec<(String, String)>,
    /// Files of the stack trace's application frames (not library ones), most recent first,
    /// each once: what suspect commits are matched against.
    pub files: Vec<String>,
    /// The "Suspected Cause" section's markdown, from a [`SuspectFinder`].
    pub suspected_cause: Option<String>,
}

impl Enrichment {
    pub fn is_empty(&self) -> bool {
        self == &Enrichment::default()
    }

    /// Reads a Sentry event as the API returns it (`GET …/issues/{id}/events/?full=true`):
    /// `entries` (`exception`, `request`), `tags`, `release`, `user`. Unknown shapes give an
    /// empty enrichment, never an error.
    pub fn from_event(event: &Value) -> Self {
        let entries = event
            .get("entries")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let entry = |kind: &str| {
            entries
                .iter()
                .find(|e| e.get("type").and_then(Value::as_str) == Some(kind))
                .and_then(|e| e.get("data"))
        };
        let stack_trace = entry("exception").and_then(format_exception);
        let files = entry("exception").map(stack_files).unwrap_or_default();
        let request = entry("request").and_then(|r| {
            let url = r.get("url").and_then(Value::as_str)?;
            let method = r.get("method").and_then(Value::as_str).unwrap_or("GET");
            Some(format!("{method} {}", one_line(url, 500)))
        });
        let user = event.get("user").and_then(|u| {
            let id = u.get("id").and_then(scalar_text);
            let name = u.get("username").and_then(scalar_text);
            match (id, name) {
                (Some(i), Some(n)) => Some(format!("- **User:** {n} (id `{i}`)")),
                (Some(i), None) => Some(format!("- **User id:** `{i}`")),
                (None, Some(n)) => Some(format!("- **User:** {n}")),
                (None, None) => None,
            }
        });
        let tags: Vec<(String, String)> = event
            .get("tags")
            .and_then(Value::as_array)
            .map(|tags| {
                let pairs: Vec<(&str, String)> = tags
                    .iter()
                    .filter_map(|t| {
                        Some((
                            t.get("key")?.as_str()?,
                            one_line(&scalar_text(t.get("value")?)?, 200),
                        ))
                    })
                    .collect();
                ENVIRONMENT_TAGS
                    .iter()
                    .filter_map(|k| {
                        pairs
                            .iter()
                            .find(|(pk, _)| pk == k)
                            .map(|(pk, v)| (pk.to_string(), v.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let release = match event.get("release") {
            Some(Value::String(s)) if !s.is_empty() => Some(one_line(s, 200)),
            Some(Value::Object(o)) => o
                .get("version")
                .and_then(Value::as_str)
                .map(|s| one_line(s, 200)),
            _ => None,
        }
        .or_else(|| tags_value(event, "release"));
        Enrichment {
            stack_trace,
            request,
            user,
            release,
            tags,
            files,
            suspected_cause: None,
        }
    }
}

/// At most this many stack-trace files are kept for suspect matching.
const MAX_STACK_FILES: usize = 30;

/// The application files of the exception shown ([`format_exception`]'s), most recent first.
fn stack_files(data: &Value) -> Vec<String> {
    let Some(values) = data.get("values").and_then(Value::as_array) else {
        return Vec::new();
    };
    let Some(frames) = values.iter().rev().find_map(|v| {
        v.pointer("/stacktrace/frames")
            .and_then(Value::as_array)
            .filter(|f| !f.is_empty())
    }) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for f in frames.iter().rev() {
        if f.get("inApp").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let Some(file) = f
            .get("filename")
            .or_else(|| f.get("absPath"))
            .and_then(Value::as_str)
            .map(|s| one_line(s, 300))
            .filter(|s| !s.trim().is_empty() && !s.contains("node_modules/"))
        else {
            continue;
        };
        if !out.contains(&file) {
            out.push(file);
        }
        if out.len() >= MAX_STACK_FILES {
            break;
        }
    }
    out
}

fn tags_value(event: &Value, key: &str) -> Option<String> {
    event
        .get("tags")?
        .as_array()?
        .iter()
        .find(|t| t.get("key").and_then(Value::as_str) == Some(key))
        .and_then(|t| t.get("value"))
        .and_then(scalar_text)
        .map(|v| one_line(&v, 200))
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Text on one line, at most `max` characters (markdown-safe enough for a list item).
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max.saturating_sub(3)).collect();
        format!("{cut}...")
    } else {
        flat
    }
}

/// The last (outermost) exception with frames: `Type: value`, then its frames most recent
/// first, each with its source context and a `>` on the failing line; library frames marked.
fn format_exception(data: &Value) -> Option<String> {
    let values = data.get("values")?.as_array()?;
    let exc = values.iter().rev().find(|v| {
        v.pointer("/stacktrace/frames")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
    })?;
    let frames = exc.pointer("/stacktrace/frames")?.as_array()?;
    let mut out = String::new();
    let ty = exc.get("type").and_then(Value::as_str).unwrap_or("Error");
    match exc.get("value").and_then(Value::as_str) {
        Some(v) => {
            let _ = writeln!(out, "{}: {}", one_line(ty, 200), one_line(v, 500));
        }
        None => {
            let _ = writeln!(out, "{}", one_line(ty, 200));
        }
    }
    for f in frames.iter().rev().take(MAX_FRAMES) {
        let file = f
            .get("filename")
            .or_else(|| f.get("absPath"))
            .or_else(|| f.get("module"))
            .and_then(Value::as_str)
            .unwrap_or("?");
        let function = f.get("function").and_then(Value::as_str).unwrap_or("?");
        let line = f.get("lineNo").and_then(Value::as_i64);
        let col = f.get("colNo").and_then(Value::as_i64);
        let at = match (line, col) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}", one_line(file, 300)),
            (Some(l), None) => format!("{}:{l}", one_line(file, 300)),
            _ => one_line(file, 300),
        };
        let library = if f.get("inApp").and_then(Value::as_bool) == Some(false) {
            " (library)"
        } else {
            ""
        };
        let _ = writeln!(out, "  at {} ({at}){library}", one_line(function, 200));
        if let Some(ctx) = f.get("context").and_then(Value::as_array) {
            for pair in ctx.iter().take(11) {
                let (Some(n), Some(code)) = (
                    pair.get(0).and_then(Value::as_i64),
                    pair.get(1).and_then(Value::as_str),
                ) else {
                    continue;
                };
                let marker = if Some(n) == line { ">" } else { " " };
                let _ = writeln!(out, "    {marker} {n:>5} | {}", one_line(code, 300));
            }
        }
    }
    if frames.len() > MAX_FRAMES {
        let _ = writeln!(out, "  ... {} more frames", frames.len() - MAX_FRAMES);
    }
    Some(out.trim_end().to_string())
}

/// The Sentry API client (`SENTRY_API_TOKEN`, `SENTRY_ORGANIZATION_SLUG`, `SENTRY_API_URL`).
#[cfg(feature = "sentry-api")]
pub mod api {
    use super::{Enrichment, SentryAlertSource};
    use crate::http::{HttpClient, HttpConfig};
    use dispatch_core::{Error, Result};
    use reqwest::Url;
    use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
    use secrecy::{ExposeSecret, SecretString};
    use serde_json::Value;
    use std::sync::Arc;
    use std::time::Duration;

    /// The public Sentry.
    pub const DEFAULT_API_URL: &str = "https://sentry.io";
    /// Sentry gives a webhook about a second to answer; the enrichment must not take long.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(2500);
    /// Latest events larger than this are not read.
    const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

    /// Where and how to reach the Sentry API. `Debug` never shows the token.
    #[derive(Debug, Clone)]
    pub struct SentryApiConfig {
        pub token: SecretString,
        pub organization: String,
        /// `https://sentry.io`, a self-hosted Sentry, or a local fake in tests.
        pub api_url: String,
        pub timeout: Duration,
    }

    impl SentryApiConfig {
        pub fn new(token: impl Into<String>, organization: impl Into<String>) -> Self {
            SentryApiConfig {
                token: SecretString::from(token.into()),
                organization: organization.into(),
                api_url: DEFAULT_API_URL.into(),
                timeout: DEFAULT_TIMEOUT,
            }
        }

        /// `None` when `SENTRY_API_TOKEN` is unset. With a token, `SENTRY_ORGANIZATION_SLUG`
        /// is required; `SENTRY_API_URL` and `SENTRY_API_TIMEOUT_MS` are optional.
        pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>> {
            let var = |k: &str| {
                get(k)
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
            };
            let Some(token) = var("SENTRY_API_TOKEN") else {
                return Ok(None);
            };
            let org = var("SENTRY_ORGANIZATION_SLUG").ok_or_else(|| {
                Error::invalid(
                    "SENTRY_ORGANIZATION_SLUG",
                    "SENTRY_API_TOKEN is set but SENTRY_ORGANIZATION_SLUG is not",
                )
            })?;
            if !org
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(Error::invalid(
                    "SENTRY_ORGANIZATION_SLUG",
                    "SENTRY_ORGANIZATION_SLUG must be an organization slug",
                ));
            }
            let mut cfg = SentryApiConfig::new(token, org);
            if let Some(url) = var("SENTRY_API_URL") {
                cfg.api_url = url;
            }
            if let Some(ms) = var("SENTRY_API_TIMEOUT_MS") {
                let ms = ms.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    Error::invalid(
                        "SENTRY_API_TIMEOUT_MS",
                        "SENTRY_API_TIMEOUT_MS must be a positive number of milliseconds",
                    )
                })?;
                cfg.timeout = Duration::from_millis(ms);
            }
            Ok(Some(cfg))
        }
    }

    pub(super) struct SentryApi {
        http: HttpClient,
        base: Url,
        organization: String,
    }

    impl std::fmt::Debug for SentryApi {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SentryApi")
                .field("base", &self.base.as_str())
                .field("organization", &self.organization)
                .finish_non_exhaustive()
        }
    }

    impl SentryApi {
        fn new(cfg: &SentryApiConfig) -> Result<Self> {
            let base = crate::http::parse_base("SENTRY_API_URL", &cfg.api_url)?;
            let mut auth = HeaderValue::from_str(&format!("Bearer {}", cfg.token.expose_secret()))
                .map_err(|_| {
                    Error::invalid(
                        "SENTRY_API_TOKEN",
                        "SENTRY_API_TOKEN contains characters that cannot be sent in a header",
                    )
                })?;
            auth.set_sensitive(true);
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, auth);
            headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
            let mut hc = HttpConfig::new("sentry", cfg.timeout);
            hc.connect_timeout = cfg.timeout;
            hc.headers = headers;
            // A larger latest event is not read (the enrichment is left out).
            hc.max_body = MAX_EVENT_BYTES;
            Ok(SentryApi {
                http: HttpClient::new(hc)?,
                base,
                organization: cfg.organization.clone(),
            })
        }

        /// `GET /api/0/organizations/{org}/issues/{id}/events/?full=true&limit=1`: the
        /// issue's latest event, in full.
        async fn latest_event(&self, issue_id: &str) -> Result<Option<Value>> {
            let mut url = self.base.clone();
            url.path_segments_mut()
                .map_err(|_| Error::invalid("SENTRY_API_URL", "SENTRY_API_URL cannot be a base"))?
                .pop_if_empty()
                .extend([
                    "api",
                    "0",
                    "organizations",
                    self.organization.as_str(),
                    "issues",
                    issue_id,
                    "events",
                    "",
                ]);
            url.query_pairs_mut()
                .append_pair("full", "true")
                .append_pair("limit", "1");
            let what = "reading the latest Sentry event";
            let reply = self
                .http
                .fetch(what, self.http.request(reqwest::Method::GET, url))
                .await
                .map_err(|t| t.error)?;
            if !reply.status.is_success() {
                return Err(reply.error(format!("Sentry API answered {}", reply.status)));
            }
            let v: Value = reply.json(what)?;
            Ok(match v {
                Value::Array(mut a) if !a.is_empty() => Some(a.swap_remove(0)),
                Value::Object(_) => Some(v),
                _ => None,
            })
        }

        /// Best effort: any failure is logged and gives an empty enrichment.
        pub(super) async fn enrichment(&self, issue_id: &str) -> Enrichment {
            match self.latest_event(issue_id).await {
                Ok(Some(event)) => Enrichment::from_event(&event),
                Ok(None) => Enrichment::default(),
                Err(e) => {
                    tracing::warn!(issue = issue_id, error = %e, "Sentry enrichment skipped");
                    Enrichment::default()
                }
            }
        }
    }

    impl SentryAlertSource {
        /// Enriches new and regressed issues from the Sentry API.
        pub fn with_api(cfg: &SentryApiConfig) -> Result<Self> {
            Ok(SentryAlertSource {
                api: Some(Arc::new(SentryApi::new(cfg)?)),
                suspects: None,
            })
        }

        /// Adds a "Suspected Cause" section, found by `finder`, when the Sentry API enrichment
        /// runs (a source without the API ignores it: the stack trace comes from the API).
        pub fn with_suspects(mut self, finder: Arc<dyn super::SuspectFinder>) -> Self {
            self.suspects = Some(finder);
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(action: &str, substatus: Value) -> Value {
        json!({"action": action, "data": {"issue": {
            "id": "42", "title": "TypeError: x is undefined", "culprit": "app/cart.js in add",
            "level": "error", "substatus": substatus, "count": "12", "userCount": 3,
            "project": {"slug": "web", "name": "Web"}, "priority": "medium",
            "permalink": "https://sentry.example/issues/42/"
        }}})
    }

    #[test]
    fn only_new_and_regressed_or_escalating_issues_become_events() {
        for (action, sub, expect) in [
            ("created", "new", true),
            ("unresolved", "regressed", true),
            ("unresolved", "escalating", true),
            ("created", "escalating", false),
            ("unresolved", "ongoing", false),
            ("resolved", "new", false),
            ("assigned", "new", false),
            ("archived", "archived_forever", false),
        ] {
            let b = parse_value(&payload(action, json!(sub))).expect("parses");
            assert_eq!(b.events.len() == 1, expect, "{action}/{sub}: {b:?}");
            assert_eq!(b.skipped.len() == 1, !expect);
        }
        let b = parse_value(&payload("created", Value::Null)).expect("parses");
        assert!(b.events.is_empty());
    }

    #[test]
    fn event_fields() {
        let b = parse_value(&payload("unresolved", json!("regressed"))).expect("parses");
        let e = &b.events[0];
        assert_eq!(e.origin, "sentry");
        assert_eq!(e.external_id.as_deref(), Some("42"));
        assert_eq!(e.title.as_deref(), Some("[web] TypeError: x is undefined"));
        assert_eq!(e.priority, Some(Priority::P2));
        assert_eq!(e.source, "web");
        assert_eq!(e.feature, "app/cart.js in add");
        assert_eq!(e.event_count, 12);
        assert_eq!(e.link.as_deref(), Some("https://sentry.example/issues/42/"));
        let d = e.description.as_deref().expect("description");
        assert!(d.starts_with("> **Regressed:**"), "{d}");
        assert!(d.contains("- **Users affected:** 3"), "{d}");
    }

    #[test]
    fn priorities() {
        assert_eq!(priority_of(Some("high")), Priority::P1);
        assert_eq!(priority_of(Some("Medium")), Priority::P2);
        assert_eq!(priority_of(Some("low")), Priority::P4);
        assert_eq!(priority_of(Some("urgent")), Priority::P3);
        assert_eq!(priority_of(None), Priority::P3);
    }

    #[test]
    fn other_resources_are_ignored_without_parsing() {
        let b = parse_payload(Some("installation"), b"not json").expect("ignored");
        assert_eq!(b.skipped, vec![IGNORED_RESOURCE.to_string()]);
        let b = parse_payload(None, b"{}").expect("ignored");
        assert!(b.events.is_empty());
    }

    #[test]
    fn malformed_payloads_name_the_field() {
        let field = |v: Value| {
            parse_value(&v)
                .expect_err("rejected")
                .field()
                .map(str::to_string)
        };
        assert_eq!(field(json!(1)).as_deref(), Some("body"));
        assert_eq!(field(json!({})).as_deref(), Some("action"));
        assert_eq!(field(json!({"action": "created"})).as_deref(), Some("data"));
        assert_eq!(
            field(json!({"action": "created", "data": {"issue": []}})).as_deref(),
            Some("data.issue")
        );
        assert_eq!(
            field(json!({"action": "created", "data": {"issue": {"substatus": 1}}})).as_deref(),
            Some("data.issue.substatus")
        );
        assert_eq!(
            field(json!({"action": "created", "data": {"issue": {"substatus": "new"}}})).as_deref(),
            Some("data.issue.id")
        );
        assert_eq!(
            field(json!({"action": "created", "data": {"issue": {"substatus": "new", "id": "1", "project": "x"}}})).as_deref(),
            Some("data.issue.project")
        );
        assert_eq!(
            field(json!({"action": "created", "data": {"issue": {"substatus": "new", "id": "1/../2"}}})).as_deref(),
            Some("data.issue.id")
        );
    }
}
