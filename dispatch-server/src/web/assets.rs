//! Static assets embedded in the binary, served at `/assets/<version>/<name>` where the version
//! is a hash of all of them: a new build gets new URLs, so responses are cached forever.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/app.js"),
    ),
    (
        "board.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/board.js"),
    ),
    (
        "issue.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/issue.js"),
    ),
    (
        "customers.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/customers.js"),
    ),
    (
        "fleet.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/fleet.js"),
    ),
    (
        "terminal.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/terminal.js"),
    ),
    (
        "terminal.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/terminal.css"),
    ),
];

/// The first 12 hex digits of the hash of every asset (constant data, computed once).
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut h = Sha256::new();
    for (name, _, bytes) in FILES {
        h.update(name.as_bytes());
        h.update(bytes);
    }
    hex::encode(h.finalize())[..12].to_string()
});

/// `/assets/<version>/<name>`, for templates.
pub fn url(name: &str) -> String {
    format!("/assets/{}/{name}", *VERSION)
}

pub async fn serve(Path((version, name)): Path<(String, String)>) -> Response {
    let Some((_, content_type, bytes)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // An old version's URL still gets the current file, but is not cached for long.
    let cache = if version == *VERSION {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        *bytes,
    )
        .into_response()
}
