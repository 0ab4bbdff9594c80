//! Stateless `tools/call` requests answered without rmcp's per-request service.
//!
//! For every stateless POST, rmcp's streamable-HTTP transport builds a one-shot service and runs
//! it in spawned tasks that hand the response back through a channel (four `tokio::spawn`s of
//! large futures and the wake-ups between them; ~0.3 M instructions of a 2.5 M search). Tool calls
//! are what agents send in a loop, so the plainest of them are answered here, by the same
//! [`DispatchMcp::call`](super::DispatchMcp) the rmcp handler uses, and serialised as the same
//! rmcp message types.
//!
//! This path only *accepts* requests that rmcp would answer the same way, and hands everything
//! else to rmcp untouched: the protocol's rules stay rmcp's. A request is answered here when
//! - it is a POST with a `Content-Length` within the body limit;
//! - `Host` is one of the allowed hosts as listed (exactly, or with a port when the entry has
//!   none), and there is no `Origin` header (browsers go through rmcp's origin checks);
//! - `Accept` lists `application/json` and `text/event-stream` without parameters,
//!   `Content-Type` is JSON;
//! - `MCP-Protocol-Version` is 2025-03-26, 2025-06-18 or 2025-11-25 (versions before the
//!   standard request headers and per-request negotiation), and no other `Mcp-*` header
//!   (session, method, name, parameters) is present;
//! - the body is one JSON-RPC request `tools/call` whose `params` hold `name` and `arguments`
//!   only (no `_meta`, no task).
//!
//! The result gets what rmcp's handler does to a result for a peer on those versions
//! (`strip_result_type_for_legacy_peer`, `strip_non_object_output_for_legacy_peer`).
//! `tests/mcp.rs` sends the same calls both ways and compares the answers.

use super::{DispatchMcp, tools};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rmcp::model::{
    JsonObject, JsonRpcVersion2_0, ProtocolVersion, RequestId, ServerJsonRpcMessage, ServerResult,
};
use serde::Deserialize;

/// `MCP-Protocol-Version` values answered here.
const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V_2025_03_26,
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
];

/// Which requests this path may answer (built once, from the transport's own host list).
#[derive(Debug, Clone)]
pub(super) struct Direct {
    /// Allowed `Host` values, lower-cased, as listed.
    hosts: Vec<String>,
    /// Entries without a port: any port is allowed with them.
    hosts_any_port: Vec<String>,
    max_body_bytes: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolCall {
    #[serde(rename = "jsonrpc")]
    _jsonrpc: JsonRpcVersion2_0,
    id: RequestId,
    method: String,
    params: ToolCallParams,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolCallParams {
    name: String,
    #[serde(default)]
    arguments: Option<JsonObject>,
}

impl Direct {
    pub(super) fn new(allowed_hosts: &[String], max_body_bytes: usize) -> Self {
        let hosts: Vec<String> = allowed_hosts.iter().map(|h| h.to_lowercase()).collect();
        let hosts_any_port = hosts
            .iter()
            .filter(|h| !h.contains(':') || h.ends_with(']'))
            .cloned()
            .collect();
        Direct {
            hosts,
            hosts_any_port,
            max_body_bytes,
        }
    }

    fn host_ok(&self, host: &str) -> bool {
        // What rmcp cannot parse as an authority, rmcp judges.
        if axum::http::uri::Authority::try_from(host).is_err() {
            return false;
        }
        let host = host.to_lowercase();
        if self.hosts.contains(&host) {
            return true;
        }
        match host.rsplit_once(':') {
            Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                port.parse::<u16>().is_ok() && self.hosts_any_port.iter().any(|h| h == name)
            }
            _ => false,
        }
    }

    /// Whether the headers allow answering here (the body is looked at after).
    fn headers_ok(&self, method: &Method, headers: &HeaderMap) -> bool {
        if method != Method::POST || headers.contains_key(header::ORIGIN) {
            return false;
        }
        let length_ok = one(headers, header::CONTENT_LENGTH)
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n <= self.max_body_bytes);
        let host_ok = one(headers, header::HOST).is_some_and(|h| self.host_ok(h));
        let json_body = one(headers, header::CONTENT_TYPE).is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case("application/json"))
        });
        // Media ranges with parameters (`q=0` refuses a type) or quotes are rmcp's to read.
        let accepts = one(headers, header::ACCEPT).is_some_and(|v| {
            let plain = !v.contains([';', '"']);
            let essences = || v.split(',').map(str::trim);
            plain
                && essences().any(|e| e.eq_ignore_ascii_case("application/json"))
                && essences().any(|e| e.eq_ignore_ascii_case("text/event-stream"))
        });
        let version_ok = one(headers, "mcp-protocol-version")
            .is_some_and(|v| VERSIONS.iter().any(|k| k.as_str() == v));
        let other_mcp_headers = headers.keys().any(|k| {
            let k = k.as_str();
            k.starts_with("mcp-") && k != "mcp-protocol-version"
        }) || headers.contains_key("last-event-id");
        length_ok && host_ok && json_body && accepts && version_ok && !other_mcp_headers
    }

    /// Answers `req` here when it is a plain stateless tool call, else hands it to `rmcp`.
    pub(super) async fn answer<F, Fut>(&self, state: &AppState, req: Request, rmcp: F) -> Response
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Response>,
    {
        if !self.headers_ok(req.method(), req.headers()) {
            return rmcp(req).await;
        }
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, self.max_body_bytes).await {
            Ok(b) => b,
            Err(e) => {
                // The declared length was within the limit: the body broke off. As rmcp answers.
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Failed to read request body: {e}"),
                )
                    .into_response();
            }
        };
        let call = match serde_json::from_slice::<ToolCall>(&bytes) {
            Ok(c) if c.method == "tools/call" => c,
            _ => return rmcp(Request::from_parts(parts, Body::from(bytes))).await,
        };
        // rmcp runs a call in a task of its own, so a client that goes away does not stop it
        // half-way; a call that changes something gets one here too. A read-only call is
        // awaited where it is (dropping it loses nothing).
        let ToolCallParams { name, arguments } = call.params;
        let result = if tools::is_read_only(&name) {
            DispatchMcp::run(state, &name, arguments).await
        } else {
            let state = state.clone();
            match tokio::spawn(async move { DispatchMcp::run(&state, &name, arguments).await })
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    return (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("the tool call failed: {e}"),
                    )
                        .into_response();
                }
            }
        };
        let body = match result {
            Ok(json) if json.is_object() => success(&call.id, &json),
            r => {
                let mut result = ServerResult::CallToolResult(tools::call_result(r));
                result.strip_result_type_for_legacy_peer();
                result.strip_non_object_output_for_legacy_peer();
                serde_json::to_vec(&ServerJsonRpcMessage::response(result, call.id))
            }
        };
        match body {
            Ok(body) => {
                let mut res = Response::new(Body::from(body));
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                res
            }
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot serialise the tool result: {e}"),
            )
                .into_response(),
        }
    }
}

/// The response to a call whose result is an object, written as rmcp writes it (its
/// `CallToolResult` with the JSON text as text content and as structured content, which no
/// protocol version strips) without parsing the text into a `Value` and serialising it again.
fn success(id: &RequestId, json: &tools::Json) -> serde_json::Result<Vec<u8>> {
    let text = json.text();
    let mut out = Vec::with_capacity(2 * text.len() + 128);
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    serde_json::to_writer(&mut out, id)?;
    out.extend_from_slice(br#","result":{"content":[{"type":"text","text":"#);
    serde_json::to_writer(&mut out, text)?;
    out.extend_from_slice(br#"}],"structuredContent":"#);
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(br#","isError":false}}"#);
    Ok(out)
}

/// The header's value when it occurs once and is text.
fn one(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("host", "127.0.0.1:41000"),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2025-11-25"),
            ("content-length", "120"),
            ("authorization", "Bearer k"),
        ] {
            h.insert(
                axum::http::HeaderName::from_static(k),
                HeaderValue::from_static(v),
            );
        }
        h
    }

    fn direct() -> Direct {
        let hosts = [
            "localhost",
            "127.0.0.1",
            "::1",
            "[::1]",
            "dispatch.example.com:8443",
        ]
        .map(String::from);
        Direct::new(&hosts, 1024)
    }

    #[test]
    fn only_plain_stateless_posts_are_answered_directly() {
        let d = direct();
        assert!(d.headers_ok(&Method::POST, &plain()));
        assert!(!d.headers_ok(&Method::GET, &plain()));
        let changed = |k: &'static str, v: Option<&'static str>| {
            let mut h = plain();
            match v {
                Some(v) => {
                    h.insert(k, HeaderValue::from_static(v));
                }
                None => {
                    h.remove(k);
                }
            }
            d.headers_ok(&Method::POST, &h)
        };
        // Hosts: as listed, with any port where the entry has none.
        assert!(changed("host", Some("LOCALHOST")));
        assert!(changed("host", Some("[::1]:8080")));
        assert!(changed("host", Some("dispatch.example.com:8443")));
        assert!(!changed("host", Some("dispatch.example.com")));
        assert!(!changed("host", Some("dispatch.example.com:443")));
        assert!(!changed("host", Some("attacker.example")));
        assert!(!changed("host", Some("127.0.0.1:")));
        assert!(
            !changed("host", Some("::1")),
            "not an authority: rmcp's to judge"
        );
        assert!(!changed("host", None));
        // Everything rmcp decides on its own goes to rmcp.
        assert!(!changed("origin", Some("http://localhost:3000")));
        assert!(!changed("mcp-session-id", Some("abc")));
        assert!(!changed("mcp-method", Some("tools/call")));
        assert!(!changed("last-event-id", Some("1")));
        assert!(!changed("mcp-protocol-version", Some("2026-07-28")));
        assert!(!changed("mcp-protocol-version", Some("2024-11-05")));
        assert!(!changed("mcp-protocol-version", None));
        assert!(changed("mcp-protocol-version", Some("2025-03-26")));
        assert!(!changed("accept", Some("application/json")));
        assert!(changed(
            "accept",
            Some("text/event-stream, APPLICATION/JSON")
        ));
        assert!(!changed(
            "accept",
            Some("application/json, text/event-stream;q=0")
        ));
        assert!(!changed("content-type", Some("text/plain")));
        assert!(changed(
            "content-type",
            Some("application/json; charset=utf-8")
        ));
        // The body must be within the limit, with its length declared.
        assert!(!changed("content-length", None));
        assert!(!changed("content-length", Some("1025")));
        assert!(changed("content-length", Some("1024")));
    }

    /// Sends the same request through the direct path (with rmcp behind it) and through rmcp
    /// alone: (status, content type, body) of both, and whether the direct path handed it on.
    async fn both_ways(
        state: &AppState,
        headers: &[(&'static str, &'static str)],
        body: &str,
    ) -> (
        (StatusCode, String, Vec<u8>),
        (StatusCode, String, Vec<u8>),
        bool,
    ) {
        let (direct, service) = super::super::transport(state);
        let request = || {
            let mut r = Request::new(Body::from(body.to_string()));
            *r.method_mut() = Method::POST;
            *r.uri_mut() = "/api/mcp".parse().unwrap();
            let h = r.headers_mut();
            for (k, v) in [
                ("host", "localhost:3000"),
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
                ("mcp-protocol-version", "2025-11-25"),
            ] {
                h.insert(k, HeaderValue::from_static(v));
            }
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            for (k, v) in headers {
                h.insert(*k, HeaderValue::from_static(v));
            }
            r
        };
        async fn parts(r: Response) -> (StatusCode, String, Vec<u8>) {
            let ct = r
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let st = r.status();
            let b = axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap();
            (st, ct, b.to_vec())
        }
        let handed_on = std::sync::atomic::AtomicBool::new(false);
        let a = direct
            .answer(state, request(), |r| {
                handed_on.store(true, std::sync::atomic::Ordering::SeqCst);
                let service = service.clone();
                async move { service.handle(r).await.into_response() }
            })
            .await;
        let b = service.handle(request()).await.into_response();
        (
            parts(a).await,
            parts(b).await,
            handed_on.load(std::sync::atomic::Ordering::SeqCst),
        )
    }

    fn call(name: &str, arguments: serde_json::Value) -> String {
        serde_json::json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}})
        .to_string()
    }

    /// The direct path's answers are rmcp's, byte for byte, for every request it takes; what
    /// it does not take reaches rmcp unchanged.
    #[tokio::test]
    async fn the_direct_path_answers_as_rmcp_does_and_hands_on_the_rest() {
        use serde_json::json;
        let store = std::sync::Arc::new(dispatch_core::memory::MemoryStore::new());
        let (state, _dispatch) = crate::test_support::state(store).await;
        let made = DispatchMcp::call(
            &state,
            "create_issue",
            json!({"title": "Checkout double charges"})
                .as_object()
                .cloned(),
        )
        .await;
        assert_eq!(made.is_error, Some(false), "{made:?}");
        // A description past the 200 characters a row shows, with quotes, escapes and
        // characters of more than one byte.
        let long = format!("Checkout \"quoted\" \\ naïve ✓\n{}", "é".repeat(300));
        let made = DispatchMcp::call(
            &state,
            "create_issue",
            json!({"title": "Checkout times out", "description": long, "assignee": "claude"})
                .as_object()
                .cloned(),
        )
        .await;
        assert_eq!(made.is_error, Some(false), "{made:?}");

        let search = call("search_issues", json!({"query": "checkout"}));
        let taken: Vec<(&[(&'static str, &'static str)], String)> = vec![
            (&[], search.clone()),
            (&[], call("get_issue", json!({"identifier": "DISPATCH-1"}))),
            (&[], call("get_my_issues", json!({"agentName": "claude"}))),
            (&[], call("search_issues", json!({"query": "times", "status": "backlog"}))),
            (&[], call("get_issue", json!({"identifier": "NOPE-9"}))),
            (&[], call("search_issues", json!({"query": 7}))),
            (&[], call("no_such_tool", json!({}))),
            (&[], r#"{"jsonrpc":"2.0","id":"s","method":"tools/call","params":{"name":"list_issues"}}"#.into()),
            (&[("mcp-protocol-version", "2025-03-26")], search.clone()),
            (&[("mcp-protocol-version", "2025-06-18")], search.clone()),
            (&[("host", "127.0.0.1:9")], search.clone()),
        ];
        for (headers, body) in &taken {
            let (direct, rmcp, handed_on) = both_ways(&state, headers, body).await;
            assert!(!handed_on, "answered directly: {headers:?} {body}");
            assert_eq!(direct.0, StatusCode::OK, "{body}");
            assert_eq!(
                (direct.0, &direct.1, String::from_utf8_lossy(&direct.2)),
                (rmcp.0, &rmcp.1, String::from_utf8_lossy(&rmcp.2)),
                "{headers:?} {body}"
            );
        }

        let handed: Vec<(&[(&'static str, &'static str)], String)> = vec![
            (&[("origin", "http://localhost:3000")], search.clone()),
            (&[("host", "::1")], search.clone()),
            (&[("host", "attacker.example")], search.clone()),
            (&[("accept", "application/json, text/event-stream;q=0")], search.clone()),
            (&[("mcp-protocol-version", "2026-07-28")], search.clone()),
            (&[("mcp-session-id", "x")], search.clone()),
            (&[("mcp-method", "tools/call")], search.clone()),
            (&[], r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_issues","_meta":{"progressToken":1}}}"#.into()),
            (&[], r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.into()),
            (&[], format!("[{search}]")),
            (&[], "{not json".into()),
        ];
        for (headers, body) in &handed {
            let (direct, rmcp, handed_on) = both_ways(&state, headers, body).await;
            assert!(handed_on, "handed to rmcp: {headers:?} {body}");
            assert_eq!(
                (direct.0, &direct.1),
                (rmcp.0, &rmcp.1),
                "{headers:?} {body}"
            );
        }
    }

    #[test]
    fn only_a_bare_tools_call_is_parsed_as_one() {
        let parse = |b: &str| serde_json::from_str::<ToolCall>(b).ok();
        let c = parse(r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"get_issue","arguments":{"identifier":"X-1"}}}"#)
            .expect("a plain call");
        assert_eq!(
            (c.method.as_str(), c.params.name.as_str()),
            ("tools/call", "get_issue")
        );
        assert!(
            parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#)
                .is_some()
        );
        for other in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","task":{}}}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}]"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"},"extra":1}"#,
        ] {
            assert!(parse(other).is_none(), "{other}");
        }
    }
}
