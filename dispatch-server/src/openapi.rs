//! `GET /api/openapi.json`: the API as OpenAPI 3.1, generated from the handlers themselves.
//!
//! Every route of `routes::api()` is mounted through [`ApiRouter`], which puts the handler on the
//! axum router and, in the same call, keeps how to describe it. The description comes from the
//! handler's signature: each extractor ([`DocInput`]) and the return type ([`DocOutput`]) add
//! what they know — `Authenticated` the security schemes and 401; `ApiJson<T>` a required JSON
//! body with `T`'s schema (schemars, from the same serde derive that parses it: required fields,
//! renames, `deny_unknown_fields`) and 400/413; `ApiQuery<T>` one parameter per field of `T`;
//! `ApiPath<T>` the path parameters' types; `ApiResult<_>` the statuses of the one error mapping
//! (`error::status_of`). So a route cannot be mounted undocumented, and a body, parameter or error
//! cannot change without the document changing with it. What a type cannot say — a summary, a
//! success status other than 200, a signature scheme, a media type other than JSON — is given
//! next to the route ([`Doc`]).

use crate::auth::Authenticated;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, MaybeJson};
use crate::routes::webhooks::RawBody;
use crate::state::AppState;
use axum::Router;
use axum::handler::Handler;
use axum::routing::{MethodFilter, MethodRouter, on};
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::OnceLock;

/// What the handler's types say about one operation.
#[derive(Default)]
pub struct OpDoc {
    /// Schemas of the path parameters, in the order of the path's `{…}` segments.
    path: Vec<Value>,
    /// Query parameters (complete parameter objects).
    query: Vec<Value>,
    /// The request body object.
    body: Option<Value>,
    /// `Some` when the operation needs the API key or a session.
    authenticated: bool,
    /// The success response's JSON schema (`None`: not JSON or not known from the type).
    ok_schema: Option<Value>,
    /// Error statuses.
    errors: BTreeSet<u16>,
    /// The success response may carry a `Link` header to the next page.
    link: bool,
}

/// An extractor's share of the description.
pub trait DocInput {
    fn describe(_op: &mut OpDoc, _g: &mut SchemaGenerator) {}
}

/// A return type's share of the description.
pub trait DocOutput {
    fn describe(_op: &mut OpDoc, _g: &mut SchemaGenerator) {}
}

/// A handler, described by its argument and return types.
pub trait DocHandler<M> {
    fn describe(op: &mut OpDoc, g: &mut SchemaGenerator);
}

macro_rules! doc_handler {
    ($($t:ident),*) => {
        impl<F, Fut, $($t,)*> DocHandler<($($t,)*)> for F
        where
            F: FnOnce($($t),*) -> Fut,
            Fut: Future,
            Fut::Output: DocOutput,
            $($t: DocInput,)*
        {
            fn describe(_op: &mut OpDoc, _g: &mut SchemaGenerator) {
                $(<$t as DocInput>::describe(_op, _g);)*
                <Fut::Output as DocOutput>::describe(_op, _g);
            }
        }
    };
}
doc_handler!();
doc_handler!(A);
doc_handler!(A, B);
doc_handler!(A, B, C);
doc_handler!(A, B, C, D);
doc_handler!(A, B, C, D, E);
doc_handler!(A, B, C, D, E, G);
doc_handler!(A, B, C, D, E, G, H);

// Extractors that add nothing to the contract.
impl<S> DocInput for axum::extract::State<S> {}
impl<T> DocInput for axum::extract::ConnectInfo<T> {}
impl DocInput for axum::http::HeaderMap {}

impl DocInput for Authenticated {
    fn describe(op: &mut OpDoc, _g: &mut SchemaGenerator) {
        op.authenticated = true;
        op.errors.insert(401);
        // A cookie-authenticated write without the CSRF header.
        op.errors.insert(403);
    }
}

fn schema_value(s: Schema) -> Value {
    s.to_value()
}

impl<T: JsonSchema> DocInput for ApiJson<T> {
    fn describe(op: &mut OpDoc, g: &mut SchemaGenerator) {
        op.body = Some(json!({
            "required": true,
            "content": { "application/json": { "schema": schema_value(g.subschema_for::<T>()) } }
        }));
        op.errors.extend([400, 413]);
    }
}

impl<T: JsonSchema> DocInput for MaybeJson<T> {
    fn describe(op: &mut OpDoc, g: &mut SchemaGenerator) {
        op.body = Some(json!({
            "required": false,
            "content": { "application/json": { "schema": schema_value(g.subschema_for::<T>()) } }
        }));
        op.errors.extend([400, 413]);
    }
}

impl DocInput for RawBody {
    fn describe(op: &mut OpDoc, _g: &mut SchemaGenerator) {
        // The sender's payload, checked against its signature before it is parsed.
        op.body = Some(json!({
            "required": true,
            "content": { "application/json": { "schema": { "type": "object" } } }
        }));
        op.errors.extend([400, 413]);
    }
}

/// A parameter schema: `null` is not a value a query string or path can carry.
fn without_null(mut v: Value) -> Value {
    if let Some(Value::Array(types)) = v.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let t = types[0].clone();
            v["type"] = t;
        }
    }
    if let Some(Value::Array(any)) = v.get_mut("anyOf") {
        any.retain(|s| s.get("type") != Some(&json!("null")));
        if any.len() == 1 {
            let only = any[0].clone();
            if let Value::Object(o) = &mut v {
                o.remove("anyOf");
                if let Value::Object(extra) = only {
                    o.extend(extra);
                }
            }
        }
    }
    if let Some(Value::Array(e)) = v.get_mut("enum") {
        e.retain(|x| !x.is_null());
    }
    v
}

impl<T: JsonSchema> DocInput for ApiQuery<T> {
    fn describe(op: &mut OpDoc, g: &mut SchemaGenerator) {
        let s = T::json_schema(g).to_value();
        let required: BTreeSet<&str> = s["required"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(props) = s["properties"].as_object() {
            for (name, schema) in props {
                if op.query.iter().any(|p| p["name"] == *name) {
                    continue;
                }
                let mut schema = without_null(schema.clone());
                let description = schema.as_object_mut().and_then(|o| o.remove("description"));
                let mut p = json!({
                    "name": name,
                    "in": "query",
                    "required": required.contains(name.as_str()),
                    "schema": schema,
                });
                if let Some(d) = description {
                    p["description"] = d;
                }
                op.query.push(p);
            }
        }
        op.errors.insert(400);
    }
}

impl<T: JsonSchema> DocInput for ApiPath<T> {
    fn describe(op: &mut OpDoc, g: &mut SchemaGenerator) {
        let s = T::json_schema(g).to_value();
        // A tuple is an array schema with one `prefixItems` entry per segment.
        op.path = match s.get("prefixItems").and_then(Value::as_array) {
            Some(items) => items.iter().cloned().map(without_null).collect(),
            None => vec![without_null(s)],
        };
        op.errors.insert(400);
    }
}

impl<T: JsonSchema> DocOutput for axum::Json<T> {
    fn describe(op: &mut OpDoc, g: &mut SchemaGenerator) {
        op.ok_schema = Some(schema_value(g.subschema_for::<T>()));
    }
}

/// A response built by hand (headers, a status): JSON unless the route says otherwise.
impl DocOutput for axum::response::Response {
    fn describe(op: &mut OpDoc, _g: &mut SchemaGenerator) {
        op.ok_schema = Some(json!({}));
    }
}

/// A status chosen at run time (`201`, `202`): the route's [`Doc`] names the statuses.
impl<T: DocOutput> DocOutput for (axum::http::StatusCode, T) {
    fn describe(op: &mut OpDoc, g: &mut SchemaGenerator) {
        T::describe(op, g);
    }
}

/// Headers with a body: the API's lists answer so, with a `Link` to the next page.
impl<T: DocOutput> DocOutput for (axum::http::HeaderMap, T) {
    fn describe(op: &mut OpDoc, g: &mut SchemaGenerator) {
        T::describe(op, g);
        op.link = true;
    }
}

impl<T: DocOutput> DocOutput for ApiResult<T> {
    fn describe(op: &mut OpDoc, g: &mut SchemaGenerator) {
        T::describe(op, g);
        op.errors.extend(
            crate::error::documented_statuses()
                .iter()
                .map(|s| s.as_u16()),
        );
    }
}

/// How a route is authenticated beyond what its extractors say.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Guard {
    None,
    /// A webhook signature or bearer secret, checked in the handler over the raw body.
    Signature(&'static str),
    /// The customer portal's token (`?token=`).
    Portal,
    /// `Authorization: Bearer <DISPATCH_API_KEY>` checked in the handler.
    ApiKey,
}

/// What a route's types cannot say: a summary, the success status, media type, a guard.
#[derive(Clone, Debug)]
pub struct Doc {
    summary: &'static str,
    status: u16,
    also: &'static [u16],
    fails: &'static [u16],
    media: &'static str,
    guard: Guard,
    tag: Option<&'static str>,
    payload: Option<fn(&mut SchemaGenerator) -> Schema>,
}

fn subschema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// A route's summary; the rest defaults to `200 application/json`.
pub fn doc(summary: &'static str) -> Doc {
    Doc {
        summary,
        status: 200,
        also: &[],
        fails: &[],
        media: "application/json",
        guard: Guard::None,
        tag: None,
        payload: None,
    }
}

impl Doc {
    /// The success status (201 for a creation).
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
    /// Other success statuses the handler answers (same body shape).
    pub fn also(mut self, statuses: &'static [u16]) -> Self {
        self.also = statuses;
        self
    }
    /// Error statuses the handler answers itself (a wrong password's 401).
    pub fn fails(mut self, statuses: &'static [u16]) -> Self {
        self.fails = statuses;
        self
    }
    /// The success media type (`text/event-stream`, `text/plain`).
    pub fn media(mut self, media: &'static str) -> Self {
        self.media = media;
        self
    }
    /// Authenticated by a signature header over the body (a webhook); 401 without it.
    pub fn signature(mut self, scheme: &'static str) -> Self {
        self.guard = Guard::Signature(scheme);
        self
    }
    /// Authenticated by the portal token; 401 without it.
    pub fn portal(mut self) -> Self {
        self.guard = Guard::Portal;
        self
    }
    /// Authenticated by the API key checked in the handler.
    pub fn api_key(mut self) -> Self {
        self.guard = Guard::ApiKey;
        self
    }
    /// The schema of a webhook's payload (read as raw bytes, so that the signature can be
    /// checked over them, and parsed by its adapter after that).
    pub fn payload<T: JsonSchema>(mut self) -> Self {
        self.payload = Some(subschema::<T>);
        self
    }
    /// The operation's tag (default: its path's group).
    pub fn tag(mut self, tag: &'static str) -> Self {
        self.tag = Some(tag);
        self
    }
}

type Describe = fn(&mut OpDoc, &mut SchemaGenerator);

struct Op {
    method: &'static str,
    path: String,
    doc: Doc,
    describe: Describe,
}

/// Methods of one path, each with its description.
pub struct ApiMethods {
    router: MethodRouter<AppState>,
    ops: Vec<(&'static str, Doc, Describe)>,
}

macro_rules! method {
    ($name:ident, $filter:ident) => {
        pub fn $name<H, T, M>(handler: H, d: Doc) -> ApiMethods
        where
            H: Handler<T, AppState> + DocHandler<M>,
            T: 'static,
        {
            ApiMethods {
                router: on(MethodFilter::$filter, handler),
                ops: vec![(stringify!($name), d, <H as DocHandler<M>>::describe)],
            }
        }
    };
}
method!(get, GET);
method!(post, POST);

macro_rules! chained {
    ($name:ident, $filter:ident) => {
        pub fn $name<H, T, M>(mut self, handler: H, d: Doc) -> Self
        where
            H: Handler<T, AppState> + DocHandler<M>,
            T: 'static,
        {
            self.router = self.router.on(MethodFilter::$filter, handler);
            self.ops
                .push((stringify!($name), d, <H as DocHandler<M>>::describe));
            self
        }
    };
}

impl ApiMethods {
    chained!(get, GET);
    chained!(post, POST);
    chained!(put, PUT);
    chained!(patch, PATCH);
    chained!(delete, DELETE);
}

/// An axum router that keeps the description of every route it mounts.
#[derive(Default)]
pub struct ApiRouter {
    router: Router<AppState>,
    ops: Vec<Op>,
}

impl ApiRouter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn route(mut self, path: &str, m: ApiMethods) -> Self {
        self.router = self.router.route(path, m.router);
        for (method, doc, describe) in m.ops {
            self.ops.push(Op {
                method,
                path: path.to_string(),
                doc,
                describe,
            });
        }
        self
    }

    pub fn merge(mut self, other: ApiRouter) -> Self {
        self.router = self.router.merge(other.router);
        self.ops.extend(other.ops);
        self
    }

    /// Wraps the routes mounted so far (a layer); the description is unchanged.
    pub fn map(mut self, f: impl FnOnce(Router<AppState>) -> Router<AppState>) -> Self {
        self.router = f(self.router);
        self
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
    }

    /// `(method, path)` of every mounted route.
    #[cfg(test)]
    pub fn operations(&self) -> Vec<(&'static str, String)> {
        self.ops
            .iter()
            .map(|o| (o.method, o.path.clone()))
            .collect()
    }

    /// The OpenAPI document of the mounted routes plus the routes mounted outside this router
    /// (the MCP transport and its event webhook, described in [`external`]).
    pub fn document(&self) -> Value {
        let mut g = SchemaSettings::draft2020_12()
            .with(|s| s.definitions_path = "/components/schemas".into())
            .for_deserialize()
            .into_generator();
        let error_ref = schema_value(g.subschema_for::<ErrorBody>());
        let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        for o in &self.ops {
            let mut d = OpDoc::default();
            (o.describe)(&mut d, &mut g);
            let op = render(o, d, &error_ref, &mut g);
            paths
                .entry(o.path.clone())
                .or_default()
                .insert(o.method.to_string(), op);
        }
        for (method, path, op) in external(&error_ref) {
            paths
                .entry(path.to_string())
                .or_default()
                .insert(method.to_string(), op);
        }
        let schemas = g.take_definitions(true);
        let mut doc = json!({
            "openapi": "3.1.0",
            "info": {
                "title": "Dispatch",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "Production errors and plain-language requests in; agents, plans and verified fixes out.",
            },
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "apiKey": { "type": "http", "scheme": "bearer", "description": "DISPATCH_API_KEY" },
                    "session": { "type": "apiKey", "in": "cookie", "name": crate::auth::SESSION_COOKIE,
                                 "description": "after POST /api/auth; writes also need the x-dispatch-csrf header" },
                    "githubSignature": { "type": "apiKey", "in": "header", "name": "X-Hub-Signature-256",
                                         "description": "HMAC-SHA256 of the body with GITHUB_WEBHOOK_SECRET" },
                    "sentrySignature": { "type": "apiKey", "in": "header", "name": "Sentry-Hook-Signature",
                                         "description": "HMAC-SHA256 of the body with SENTRY_CLIENT_SECRET" },
                    "grafanaSecret": { "type": "http", "scheme": "bearer",
                                       "description": "LOKI_WEBHOOK_SECRET (and the Grafana HMAC when configured)" },
                    "portalToken": { "type": "apiKey", "in": "query", "name": "token",
                                     "description": "the customer's portal token" },
                }
            }
        });
        tighten(&mut doc);
        doc
    }
}

/// Says in every schema what the Rust types already enforce: an integer's `format` becomes its
/// range (`u32` → 0..=4294967295), so a client (or a generated test) knows that a larger number
/// is refused. And `"default": null`, which serde's `#[serde(default)]` adds to optional
/// fields, is dropped: `null` is not always a value the field takes.
fn tighten(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.get("default") == Some(&Value::Null) {
                m.remove("default");
            }
            let range: Option<(Value, Value)> = match m.get("format").and_then(Value::as_str) {
                Some("int8") => Some((json!(i8::MIN), json!(i8::MAX))),
                Some("int16") => Some((json!(i16::MIN), json!(i16::MAX))),
                Some("int32") => Some((json!(i32::MIN), json!(i32::MAX))),
                Some("int64" | "int") => Some((json!(i64::MIN), json!(i64::MAX))),
                Some("uint8") => Some((json!(0), json!(u8::MAX))),
                Some("uint16") => Some((json!(0), json!(u16::MAX))),
                Some("uint32") => Some((json!(0), json!(u32::MAX))),
                Some("uint64" | "uint") => Some((json!(0), json!(u64::MAX))),
                _ => None,
            };
            if let Some((lo, hi)) = range {
                m.entry("minimum").or_insert(lo);
                m.entry("maximum").or_insert(hi);
            }
            m.values_mut().for_each(tighten);
        }
        Value::Array(a) => a.iter_mut().for_each(tighten),
        _ => {}
    }
}

fn reason(status: u16) -> &'static str {
    axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error")
}

fn error_response(status: u16, error_ref: &Value) -> Value {
    json!({
        "description": reason(status),
        "content": { "application/json": { "schema": error_ref } }
    })
}

fn tag_of(path: &str) -> String {
    let rest = path.trim_start_matches("/api/").trim_start_matches('/');
    rest.split(['/', '.']).next().unwrap_or("api").to_string()
}

fn render(o: &Op, mut d: OpDoc, error_ref: &Value, g: &mut SchemaGenerator) -> Value {
    if let (Some(payload), Some(body)) = (o.doc.payload, d.body.as_mut()) {
        body["content"]["application/json"]["schema"] = payload(g).to_value();
    }
    let mut op = json!({
        "operationId": format!("{}{}", o.method, o.path.replace(['/', '{', '}', '-', '.'], "_")),
        "summary": o.doc.summary,
        "tags": [o.doc.tag.map(str::to_string).unwrap_or_else(|| tag_of(&o.path))],
    });
    // Path parameters: the names from the template, the types from the handler's `ApiPath<T>`.
    let names: Vec<&str> = o
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect();
    let mut params: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let schema = d
                .path
                .get(i)
                .cloned()
                .unwrap_or_else(|| json!({ "type": "string" }));
            json!({ "name": name, "in": "path", "required": true, "schema": schema })
        })
        .collect();
    match o.doc.guard {
        Guard::Portal => {
            d.errors.insert(401);
            // The token is the credential: a parameter the handler requires.
            for p in &mut d.query {
                if p["name"] == "token" {
                    p["required"] = json!(true);
                }
            }
        }
        Guard::Signature(_) | Guard::ApiKey => {
            d.errors.insert(401);
        }
        Guard::None => {}
    }
    d.errors.extend(o.doc.fails);
    params.append(&mut d.query);
    if !params.is_empty() {
        op["parameters"] = json!(params);
    }
    if let Some(b) = d.body {
        op["requestBody"] = b;
    }
    op["security"] = match o.doc.guard {
        Guard::Signature(scheme) => json!([{ scheme: [] }]),
        Guard::Portal => json!([{ "portalToken": [] }]),
        Guard::ApiKey => json!([{ "apiKey": [] }]),
        Guard::None if d.authenticated => json!([{ "apiKey": [] }, { "session": [] }]),
        Guard::None => json!([]),
    };
    let mut responses = Map::new();
    let content = match (&d.ok_schema, o.doc.media) {
        (Some(s), "application/json") => json!({ "application/json": { "schema": s } }),
        (_, "application/json") => json!({ "application/json": { "schema": {} } }),
        // One server-sent event, as a client reads it off the stream.
        (_, "text/event-stream") => json!({ "text/event-stream": { "schema": {
            "type": "object",
            "description": "one server-sent event; `data` is a JSON document",
            "properties": {
                "event": { "type": "string" },
                "data": { "type": "string" },
                "id": { "type": "string" },
                "retry": { "type": "integer" }
            }
        } } }),
        (_, media) => json!({ media: { "schema": { "type": "string" } } }),
    };
    for st in std::iter::once(&o.doc.status).chain(o.doc.also) {
        let mut r = json!({ "description": reason(*st), "content": content });
        if d.link {
            r["headers"] = json!({ "Link": {
                "description": "the next page, when there is one: `<path?limit=N&cursor=C>; rel=\"next\"`",
                "schema": { "type": "string" }
            } });
        }
        responses.insert(st.to_string(), r);
    }
    for st in d.errors {
        responses.insert(st.to_string(), error_response(st, error_ref));
    }
    op["responses"] = Value::Object(responses);
    op
}

/// Routes mounted outside [`ApiRouter`] (the MCP module), described here.
fn external(error_ref: &Value) -> Vec<(&'static str, &'static str, Value)> {
    let errors = |extra: &[u16]| -> Map<String, Value> {
        let mut set: BTreeSet<u16> = crate::error::documented_statuses()
            .iter()
            .map(|s| s.as_u16())
            .collect();
        set.extend(extra);
        set.into_iter()
            .map(|s| (s.to_string(), error_response(s, error_ref)))
            .collect()
    };
    let with_ok = |status: u16, mut m: Map<String, Value>| {
        m.insert(
            status.to_string(),
            json!({ "description": reason(status), "content": { "application/json": { "schema": {} } } }),
        );
        Value::Object(m)
    };
    vec![
        (
            "post",
            "/api/mcp/webhook",
            json!({
                "operationId": "post_api_mcp_webhook",
                "summary": "Queue an event for an agent (kept in the database; the MCP tool poll_events takes it)",
                "tags": ["mcp"],
                "security": [{ "apiKey": [] }, { "session": [] }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["type", "agentName"], "additionalProperties": false, "properties": {
                        "type": { "type": "string", "minLength": 1, "maxLength": 100, "pattern": "\\S" },
                        "agentName": { "type": "string", "maxLength": 100, "pattern": "\\S",
                                       "description": "the agent (may be left out when `issue.assignee` names it)" },
                        "issue": { "description": "the issue the event is about (its `assignee` names the agent when `agentName` is left out)" },
                        "timestamp": { "type": ["string", "null"], "format": "date-time" },
                        "metadata": {}
                    }
                } } } },
                "responses": with_ok(202, errors(&[401, 403, 413])),
            }),
        ),
        (
            "get",
            "/api/mcp/webhook",
            json!({
                "operationId": "get_api_mcp_webhook",
                "summary": "Health of the MCP event webhook",
                "tags": ["mcp"],
                "security": [{ "apiKey": [] }, { "session": [] }],
                "responses": with_ok(200, errors(&[401])),
            }),
        ),
        (
            "post",
            "/api/mcp",
            json!({
                "operationId": "post_api_mcp",
                "summary": "The MCP server (JSON-RPC over streamable HTTP; API key only)",
                "tags": ["mcp"],
                "security": [{ "apiKey": [] }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object" } } } },
                "responses": with_ok(200, errors(&[401, 406, 413, 415])),
            }),
        ),
    ]
}

/// The API's routes with their description (built once).
fn api() -> &'static ApiRouter {
    static API: OnceLock<ApiRouter> = OnceLock::new();
    API.get_or_init(crate::routes::api_router)
}

pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| api().document())
}

/// `(method, path)` of every route [`ApiRouter`] mounts (the tests compare it with the document).
#[cfg(test)]
pub fn operations() -> Vec<(&'static str, String)> {
    api().operations()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_statuses_come_from_the_error_mapping() {
        let d = document();
        let op = &d["paths"]["/api/issues/{id}"]["get"];
        for st in [400, 401, 403, 404, 409, 429, 502, 503] {
            assert!(op["responses"][st.to_string()].is_object(), "{st}");
        }
        assert_eq!(
            op["responses"]["404"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
        // Public operations have no 401; readiness is 200 or 503 while the server starts, and
        // liveness cannot fail.
        assert!(d["paths"]["/api/health"]["get"]["responses"]["401"].is_null());
        let statuses = |p: &str| -> Vec<String> {
            d["paths"][p]["get"]["responses"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        assert_eq!(statuses("/api/health"), ["200", "503"]);
        assert_eq!(statuses("/api/health/live"), ["200"]);
    }

    #[test]
    fn bodies_and_parameters_come_from_the_handlers_types() {
        let d = document();
        let schemas = &d["components"]["schemas"];
        // `PUT /api/statuses {}` is refused (missing statusIds): the document says so.
        assert_eq!(schemas["Reorder"]["required"], json!(["statusIds"]));
        assert_eq!(schemas["KillSwitchBody"]["additionalProperties"], false);
        assert_eq!(schemas["CreateIssue"]["required"], json!(["title"]));
        // Query parameters, with their types and integer ranges.
        let params = d["paths"]["/api/issues"]["get"]["parameters"]
            .as_array()
            .unwrap();
        let limit = params.iter().find(|p| p["name"] == "limit").unwrap();
        assert_eq!(limit["in"], "query");
        assert_eq!(limit["schema"]["type"], "integer");
        assert_eq!(limit["schema"]["minimum"], 0);
        assert!(limit["schema"]["maximum"].is_u64());
        let status = params.iter().find(|p| p["name"] == "statusId").unwrap();
        assert_eq!(status["schema"]["format"], "uuid");
        // Path parameters: an issue key, a customer key.
        let id = &d["paths"]["/api/issues/{id}"]["get"]["parameters"][0];
        assert_eq!(
            (id["name"].as_str(), id["in"].as_str()),
            (Some("id"), Some("path"))
        );
        assert_eq!(id["schema"]["maxLength"], 64, "{id}");
        // Webhooks: the signature scheme and its 401.
        let gh = &d["paths"]["/api/github/webhook"]["post"];
        assert_eq!(gh["security"], json!([{ "githubSignature": [] }]));
        assert!(gh["responses"]["401"].is_object());
        // A creation documents 201; the spawn its 202 (deferred).
        assert!(d["paths"]["/api/issues"]["post"]["responses"]["201"].is_object());
        assert!(d["paths"]["/api/issues/{id}/spawn"]["post"]["responses"]["202"].is_object());
    }

    #[test]
    fn every_route_is_documented_once_with_typed_path_parameters() {
        let d = document();
        let mut seen = std::collections::HashSet::new();
        for (m, p) in operations() {
            assert!(seen.insert((m, p.clone())), "{m} {p} twice");
            let op = &d["paths"][&p][m];
            assert!(op.is_object(), "{m} {p}");
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let in_path = params.iter().filter(|x| x["in"] == "path").count();
            assert_eq!(in_path, p.matches('{').count(), "{m} {p}");
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
            if op["security"] != json!([]) {
                assert!(op["responses"]["401"].is_object(), "{m} {p}: 401");
            }
        }
        // The document holds exactly the mounted operations and the MCP module's.
        let mut documented: std::collections::BTreeSet<(String, String)> = d["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(p, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(|m| (m.clone(), p.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (m, p) in operations() {
            assert!(documented.remove(&(m.to_string(), p.clone())), "{m} {p}");
        }
        let external: std::collections::BTreeSet<(String, String)> = external(&json!({}))
            .into_iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(documented, external);
        // Every `$ref` resolves.
        let text = d.to_string();
        for r in text.split("\"$ref\":\"").skip(1) {
            let name = r.split('"').next().unwrap();
            let name = name.trim_start_matches("#/components/schemas/");
            assert!(d["components"]["schemas"][name].is_object(), "{name}");
        }
    }
}
