//! The OpenAPI document against the server that serves it (the real binary). The document is
//! generated from the routes as they are mounted (`src/openapi.rs`; its unit tests compare the
//! mounted operations with the document in-process); here, from outside:
//! - every route registered in the server's source (`.route("/api/…"` / `"/metrics"`) is in the
//!   document, and every documented path is one of them;
//! - every documented operation is served (no router 404/405), and what it answers to a minimal
//!   request is one of its documented statuses, with the documented media type; every error is
//!   the documented JSON error body;
//! - request bodies name their required fields as the handlers require them (`PUT /api/statuses
//!   {}` is a 400 naming `statusIds`, which the document lists as required).
//!
//! The schema-driven run (schemathesis, every phase, authenticated and not) is in
//! `tests/schemathesis/` and `scripts/test`.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use support::Server;

/// Route paths registered in the server's source (`.route("…"`), for the API and operations.
fn routes_in_source() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                // `.route(` then, maybe after a line break, the path literal.
                for chunk in text.split(".route(").skip(1) {
                    let lit = chunk.trim_start();
                    let Some(rest) = lit.strip_prefix('"') else {
                        continue;
                    };
                    let path = rest.split('"').next().unwrap();
                    if path.starts_with("/api/") || path == "/metrics" {
                        out.insert(path.to_string());
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    // The MCP transport is mounted with `route_service(PATH, …)`.
    out.insert("/api/mcp".to_string());
    out
}

async fn document(s: &Server) -> Value {
    let r = support::http()
        .get(s.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

#[tokio::test]
async fn every_route_in_the_source_is_documented_and_nothing_else() {
    let s = Server::builder().start();
    let doc = document(&s).await;
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let mounted = routes_in_source();
    assert!(mounted.len() >= 40, "{mounted:?}");
    let missing: Vec<_> = mounted.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&mounted).collect();
    assert!(
        missing.is_empty(),
        "mounted but not documented: {missing:?}"
    );
    assert!(extra.is_empty(), "documented but not mounted: {extra:?}");
}

#[tokio::test]
async fn every_operation_is_served_and_answers_what_it_documents() {
    let s = Server::builder()
        .env("GITHUB_WEBHOOK_SECRET", "openapi-test-github")
        .env("SENTRY_CLIENT_SECRET", "openapi-test-sentry")
        .env("LOKI_WEBHOOK_SECRET", "openapi-test-loki")
        .start();
    let doc = document(&s).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if path.ends_with("/stream") {
                continue; // never ends; tests/streams.rs covers the streams
            }
            let url = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "x-1" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut req = support::http()
                .request(m.clone(), s.url(&url))
                .bearer_auth(&s.api_key);
            if op.get("requestBody").is_some() {
                req = req.json(&json!({}));
            }
            let r = req.send().await.unwrap();
            let st = r.status();
            let media = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let body = r.text().await.unwrap();
            let what = format!("{method} {path} → {st} {body}");
            assert!(
                st != StatusCode::METHOD_NOT_ALLOWED
                    && !(st == StatusCode::NOT_FOUND && body.is_empty()),
                "not served: {what}"
            );
            if path == "/api/mcp" {
                // The MCP SDK's transport answers its protocol errors in plain text; the MCP
                // suites (tests/mcp.rs, tests/mcp_clients) test it with real clients.
                checked += 1;
                continue;
            }
            let documented = &op["responses"][st.as_str()];
            assert!(documented.is_object(), "undocumented status: {what}");
            let kinds: Vec<&String> = documented["content"].as_object().unwrap().keys().collect();
            assert!(
                kinds.iter().any(|k| media.starts_with(k.as_str())),
                "media type {media} not in {kinds:?}: {what}"
            );
            if st.is_client_error() || st.is_server_error() {
                let v: Value = serde_json::from_str(&body).expect("JSON error body");
                assert!(v["error"].is_string() && v["code"].is_string(), "{what}");
            }
            // The same operation without credentials: its documented 401, or it is public.
            let anon = support::http()
                .request(m, s.url(&url))
                .send()
                .await
                .unwrap()
                .status();
            if op["security"] != json!([]) {
                assert!(
                    anon == StatusCode::UNAUTHORIZED && op["responses"]["401"].is_object(),
                    "{method} {path} without credentials: {anon}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 60, "{checked}");
}

#[tokio::test]
async fn required_fields_are_the_handlers_required_fields() {
    let s = Server::builder().start();
    let doc = document(&s).await;
    let schema = |path: &str, method: &str| -> Value {
        let mut v =
            doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
                .clone();
        if let Some(r) = v["$ref"].as_str() {
            let name = r.rsplit('/').next().unwrap();
            v = doc["components"]["schemas"][name].clone();
        }
        v
    };
    // Each: the operation, a body without its required fields, the field the handler names.
    for (path, method, field) in [
        ("/api/statuses", "put", "statusIds"),
        ("/api/statuses", "post", "name"),
        ("/api/labels", "post", "name"),
        ("/api/issues", "post", "title"),
        ("/api/comments", "post", "issueId"),
        ("/api/agents", "post", "name"),
        ("/api/agents/webhook", "post", "agentName"),
        ("/api/customers", "post", "name"),
        ("/api/spawns/kill-switch", "put", "enabled"),
        ("/api/auth", "post", "password"),
    ] {
        let required = schema(path, method)["required"].clone();
        assert!(
            required
                .as_array()
                .is_some_and(|r| r.contains(&json!(field))),
            "{method} {path}: {field} is not required in {required}"
        );
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (st, e) = support::call(&s, m, path, Some(json!({}))).await;
        assert_eq!(
            (st, e["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{method} {path} {{}}: {e}"
        );
    }
    // Optional fields are optional: an empty PATCH is a valid (no-op) change.
    let (_, issue) = support::post(&s, "/api/issues", json!({"title": "contract"})).await;
    let id = issue["identifier"].as_str().unwrap();
    let (st, _) = support::patch(&s, &format!("/api/issues/{id}"), json!({})).await;
    assert_eq!(st, StatusCode::OK);
    assert!(schema("/api/issues/{id}", "patch")["required"].is_null());
}
