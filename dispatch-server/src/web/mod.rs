//! The web UI: server-rendered pages (askama templates, checked at compile time) with small
//! JavaScript modules over the REST + SSE API. Assets are embedded in the binary and served under
//! a content-hashed path with immutable caching; every page carries a strict Content-Security-Policy
//! (no inline script or style); cookie-authenticated API writes need the `x-dispatch-csrf` header
//! that only our own scripts send (`auth::Authenticated`).
//!
//! Pages hold no rules: they read through the same engine use-cases as the API and render.

mod assets;
mod customers;
pub mod markdown;
pub mod og;
mod pages;
mod portal;
mod terminal;

use crate::state::AppState;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(terminal::page))
        .route("/board", get(pages::board))
        .route("/issue/{identifier}", get(pages::issue))
        .route("/fleet", get(pages::fleet))
        .route("/customers", get(customers::list))
        .route("/customers/{id}", get(customers::detail))
        .route("/login", get(pages::login_form).post(pages::login_submit))
        .route("/portal/{slug}", get(portal::board))
        .route("/portal/{slug}/brand.css", get(portal::brand_css))
        .route("/portal/{slug}/issue/{identifier}", get(portal::issue))
        .layer(middleware::from_fn(security_headers))
        .route("/assets/{version}/{name}", get(assets::serve))
}

/// The policy of every page: our own scripts, styles and connections only; images also from
/// https (customer logos); no framing, no plugins, forms post only to us.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-cache"));
    res
}
