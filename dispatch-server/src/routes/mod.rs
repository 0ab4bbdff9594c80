//! The HTTP routes, one file per group. Handlers parse and check input, call one engine
//! use-case and render; rules live in the core.

pub mod agent;
pub mod agents;
pub mod board;
pub mod customers;
pub mod dedup;
pub mod deliveries;
pub mod import;
pub mod issues;
pub mod ops;
pub mod orchestrator;
pub mod session;
pub mod streams;
pub mod webhooks;

use crate::error::{ApiError, ApiResult};
use crate::openapi::ApiRouter;
use crate::state::AppState;
use axum::Router;
use axum::http::HeaderMap;
use dispatch_core::ids::IssueRef;
use dispatch_core::issue::{Column, HistoryAction, HistoryEntry, Label};
use schemars::JsonSchema;
use serde::Deserialize;

/// The API's routes as an axum router.
pub fn api() -> Router<AppState> {
    api_router().into_router()
}

/// The API's routes with their OpenAPI description (`crate::openapi`).
pub fn api_router() -> ApiRouter {
    ApiRouter::new()
        .merge(session::router())
        .merge(issues::router())
        .merge(agent::router())
        .merge(agents::router())
        .merge(board::router())
        .merge(customers::router())
        .merge(dedup::router())
        .merge(deliveries::router())
        .merge(import::router())
        .merge(webhooks::router())
        .merge(streams::router())
        .merge(ops::router())
        .merge(orchestrator::router())
}

/// `limit` of list endpoints (default 50, at most 500).
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Page {
    /// Page size (default 50; values above 500 count as 500).
    pub limit: Option<usize>,
}

/// Text as scripts send it: a string, or a number (`"spawn_run_id": 123`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Text {
    S(String),
    N(serde_json::Number),
}

impl JsonSchema for Text {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Text".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": ["string", "number"] })
    }
}

impl Text {
    pub fn into_string(self) -> String {
        match self {
            Text::S(s) => s,
            Text::N(n) => n.to_string(),
        }
    }
}

/// A number, or a string holding one (NUMERIC columns of the original came back as strings;
/// scripts echo them).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Num {
    N(f64),
    S(String),
}

impl Num {
    pub fn value(&self, key: &str) -> ApiResult<f64> {
        match self {
            Num::N(n) => Ok(*n),
            Num::S(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| ApiError::bad_request(key, format!("{key} must be a number"))),
        }
    }
}

/// An issue in a path: its UUID or its identifier (`DSP-12`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct IssueKey(#[schemars(length(min = 1, max = 64), regex(pattern = r"\S"))] pub String);

/// Schema-only stand-ins for fields a handler takes as text and parses itself.
pub mod schema {
    use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
    use std::borrow::Cow;

    /// A UUID in a string.
    pub struct Uuid;

    impl JsonSchema for Uuid {
        fn schema_name() -> Cow<'static, str> {
            "Uuid".into()
        }
        fn inline_schema() -> bool {
            true
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "type": "string", "format": "uuid" })
        }
    }

    /// A colour `#RRGGBB`.
    pub struct Color;

    impl JsonSchema for Color {
        fn schema_name() -> Cow<'static, str> {
            "Color".into()
        }
        fn inline_schema() -> bool {
            true
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "type": "string", "pattern": "^#[0-9A-Fa-f]{6}$" })
        }
    }

    /// A name: 1 to 100 printable characters, not all spaces.
    pub struct Name;

    impl JsonSchema for Name {
        fn schema_name() -> Cow<'static, str> {
            "Name".into()
        }
        fn inline_schema() -> bool {
            true
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "type": "string",
                "maxLength": 100,
                "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
            })
        }
    }

    /// A webhook receiver: an absolute http(s) URL with a host name.
    pub struct WebhookUrl;

    impl JsonSchema for WebhookUrl {
        fn schema_name() -> Cow<'static, str> {
            "WebhookUrl".into()
        }
        fn inline_schema() -> bool {
            true
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "type": "string",
                "format": "uri",
                "maxLength": 2048,
                "pattern": "^https?://[a-z][a-z0-9-]{0,30}(\\.[a-z][a-z0-9-]{0,30})+(/[A-Za-z0-9._~/-]*)?$"
            })
        }
    }

    /// `true` or `false` as text (`1`/`0` too; empty is false; spaces around are ignored).
    pub struct Flag;

    impl JsonSchema for Flag {
        fn schema_name() -> Cow<'static, str> {
            "Flag".into()
        }
        fn inline_schema() -> bool {
            true
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "type": "string", "pattern": "^\\s*(true|false|1|0)?\\s*$" })
        }
    }

    /// The spawn types the API takes (`WorkflowKind::from_spawn_type`).
    pub struct SpawnType;

    impl JsonSchema for SpawnType {
        fn schema_name() -> Cow<'static, str> {
            "SpawnType".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "type": "string", "enum": [
                "error_fix", "error", "fix", "investigate", "prd_investigate", "implement",
                "prd_implement", "qa", "research", "deep_research", "triage", "auto_triage"
            ] })
        }
    }

    /// A customer in a path: its UUID or its slug.
    pub struct CustomerKey;

    impl JsonSchema for CustomerKey {
        fn schema_name() -> Cow<'static, str> {
            "CustomerKey".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "anyOf": [
                { "type": "string", "format": "uuid" },
                { "type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$" }
            ] })
        }
    }

    /// A slug: lowercase letters, digits and dashes, at most 64, no dash at either end.
    pub struct Slug;

    impl JsonSchema for Slug {
        fn schema_name() -> Cow<'static, str> {
            "Slug".into()
        }
        fn inline_schema() -> bool {
            true
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$" })
        }
    }

    /// `T`, or `""` for "not set" (forms send empty fields).
    pub struct OrBlank<T>(std::marker::PhantomData<T>);

    impl<T: JsonSchema> JsonSchema for OrBlank<T> {
        fn schema_name() -> Cow<'static, str> {
            format!("{}OrBlank", T::schema_name()).into()
        }
        fn inline_schema() -> bool {
            true
        }
        fn json_schema(g: &mut SchemaGenerator) -> Schema {
            let inner = g.subschema_for::<T>();
            json_schema!({ "anyOf": [inner, { "type": "string", "maxLength": 0 }] })
        }
    }

    /// An http(s) URL (`http://` or `https://` and at most 2000 characters).
    pub struct Url;

    impl JsonSchema for Url {
        fn schema_name() -> Cow<'static, str> {
            "HttpUrl".into()
        }
        fn inline_schema() -> bool {
            true
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "type": "string", "maxLength": 2000, "pattern": "^https?://" })
        }
    }

    /// A core enum's words (`text_enum!`: `ALL` and `as_str`).
    pub trait Words {
        fn words() -> Vec<&'static str>;
    }

    macro_rules! words {
        ($($t:ty),* $(,)?) => {
            $(impl Words for $t {
                fn words() -> Vec<&'static str> {
                    <$t>::ALL.iter().map(|v| v.as_str()).collect()
                }
            })*
        };
    }
    words!(
        dispatch_core::issue::AgentStatus,
        dispatch_core::issue::SpawnStatus,
        dispatch_core::run::Outcome,
        dispatch_core::run::WorkflowKind,
        dispatch_core::run::RunStatus,
        dispatch_core::run::BlockerCategory,
        dispatch_core::plan::PlanStatus,
    );

    /// A priority as the API returns it.
    pub struct PriorityValue;

    impl JsonSchema for PriorityValue {
        fn schema_name() -> Cow<'static, str> {
            "Priority".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "type": "string", "enum": ["P1", "P2", "P3", "P4"] })
        }
    }

    /// One of a core enum's words, as text.
    pub struct OneOf<T>(std::marker::PhantomData<T>);

    impl<T: Words> JsonSchema for OneOf<T> {
        fn schema_name() -> Cow<'static, str> {
            std::any::type_name::<T>()
                .rsplit("::")
                .next()
                .unwrap_or("Word")
                .to_string()
                .into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "type": "string", "enum": T::words() })
        }
    }

    /// A number, or a string holding one (numeric columns of the original came back as strings,
    /// and scripts echo them): what `f64::from_str` reads after trimming.
    pub struct Number;

    impl JsonSchema for Number {
        fn schema_name() -> Cow<'static, str> {
            "NumberOrNumericString".into()
        }
        fn inline_schema() -> bool {
            true
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "type": ["number", "string"],
                "pattern": "^[ \\t\\n\\r]*[+-]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][+-]?[0-9]{1,2})?[ \\t\\n\\r]*$"
            })
        }
    }

    /// A cost in USD: a non-negative number, or a string holding one.
    pub struct Cost;

    impl JsonSchema for Cost {
        fn schema_name() -> Cow<'static, str> {
            "CostOrNumericString".into()
        }
        fn inline_schema() -> bool {
            true
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "type": ["number", "string"],
                "minimum": 0,
                "pattern": "^[ \\t\\n\\r]*\\+?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][+-]?[0-9]{1,2})?[ \\t\\n\\r]*$"
            })
        }
    }
}

impl Page {
    pub fn limit(&self, other: Option<usize>) -> usize {
        self.limit.or(other).unwrap_or(50).clamp(1, 500)
    }
}

pub fn link_next_page(
    headers: &mut HeaderMap,
    path: &str,
    limit: usize,
    cursor: impl std::fmt::Display,
) {
    if let Ok(v) = format!("<{path}?limit={limit}&cursor={cursor}>; rel=\"next\"").parse() {
        headers.insert(axum::http::header::LINK, v);
    }
}

/// An issue path parameter: UUID or identifier.
pub fn issue_ref(s: &str) -> ApiResult<IssueRef> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > 64 {
        return Err(ApiError::bad_request("id", "not an issue id or identifier"));
    }
    Ok(IssueRef::parse(s))
}

/// Typed ids from request fields, with errors naming the field.
pub mod params {
    use crate::error::{ApiError, ApiResult};
    use dispatch_core::ids::{ColumnId, CustomerId, LabelId};

    fn uuid<T: From<uuid::Uuid>>(field: &str, s: &str) -> ApiResult<T> {
        uuid::Uuid::parse_str(s.trim())
            .map(T::from)
            .map_err(|_| ApiError::bad_request(field, format!("{field} must be a UUID")))
    }
    pub fn column_id(field: &str, s: &str) -> ApiResult<ColumnId> {
        uuid(field, s)
    }
    pub fn label_id(field: &str, s: &str) -> ApiResult<LabelId> {
        uuid(field, s)
    }
    pub fn customer_id(field: &str, s: &str) -> ApiResult<CustomerId> {
        uuid(field, s)
    }
}

/// A readable sentence for a history entry ("User moved it from Backlog to Investigating").
pub fn history_sentence(h: &HistoryEntry, cols: &[Column], labels: &[Label]) -> String {
    let who = &h.actor.name;
    let col = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .and_then(|v| v.get("column_id"))
            .and_then(|x| x.as_str())
            .and_then(|id| cols.iter().find(|c| c.id.to_string() == id))
            .map(|c| c.name.clone())
            .unwrap_or_else(|| "?".into())
    };
    let text = |v: &Option<serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => "nobody".into(),
        Some(other) => other.to_string(),
    };
    let label = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .and_then(|v| v.get("label_id"))
            .and_then(|x| x.as_str())
            .and_then(|id| labels.iter().find(|l| l.id.to_string() == id))
            .map(|l| l.name.clone())
            .unwrap_or_else(|| "a label".into())
    };
    match h.action {
        HistoryAction::Created => format!("{who} created the issue"),
        HistoryAction::StatusChanged => format!(
            "{who} moved it from {} to {}",
            col(&h.old_value),
            col(&h.new_value)
        ),
        HistoryAction::PriorityChanged => format!(
            "{who} changed priority from {} to {}",
            text(&h.old_value),
            text(&h.new_value)
        ),
        HistoryAction::AssigneeChanged => format!("{who} assigned it to {}", text(&h.new_value)),
        HistoryAction::Edited => format!("{who} edited the issue"),
        HistoryAction::LabelAdded => format!("{who} added {}", label(&h.new_value)),
        HistoryAction::LabelRemoved => format!("{who} removed {}", label(&h.old_value)),
        HistoryAction::AgentStarted => format!("{who} started an agent"),
        HistoryAction::AgentCompleted => format!("{who}: the agent finished"),
        HistoryAction::CommentAdded => format!("{who} commented"),
        HistoryAction::PlanChanged => format!("{who} changed the plan to {}", text(&h.new_value)),
        HistoryAction::PrLinked => format!("{who} linked a pull request"),
        HistoryAction::PrUnlinked => format!("{who} unlinked a pull request"),
        HistoryAction::PrStatusChanged => format!("{who} updated a pull request"),
        HistoryAction::FixAttemptChanged => format!("{who} updated fix verification"),
        HistoryAction::WatcherAdded => format!("{who} added a watcher"),
        HistoryAction::WatcherRemoved => format!("{who} removed a watcher"),
        HistoryAction::Reconciled => format!("{who} reconciled the issue"),
    }
}
