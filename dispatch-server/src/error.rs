//! The one place where core error kinds become HTTP statuses and JSON error bodies
//! `{ "error": message, "code": CODE, "field"?: name }`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dispatch_core::{Error, ErrorKind};
use serde::Serialize;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
    /// Extra fields merged into the body (e.g. `reason` of a gate denial).
    pub extra: Option<serde_json::Value>,
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

pub fn status_of(kind: &ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::InvalidInput { .. } => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::GateDenied { .. } | ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Upstream { .. } => StatusCode::BAD_GATEWAY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Every kind, for the document (`documented_statuses`). The `match` makes a new kind a compile
/// error here until it is listed.
const ALL_KINDS: [fn() -> ErrorKind; 10] = [
    || ErrorKind::NotFound,
    || ErrorKind::Conflict,
    || ErrorKind::InvalidInput {
        field: String::new(),
    },
    || ErrorKind::Unauthorized,
    || ErrorKind::Forbidden,
    || ErrorKind::GateDenied {
        reason: String::new(),
    },
    || ErrorKind::RateLimited,
    || ErrorKind::Upstream {
        service: String::new(),
        status: 0,
    },
    || ErrorKind::Unavailable,
    || ErrorKind::Internal,
];

fn _every_kind_is_listed(k: &ErrorKind) -> usize {
    match k {
        ErrorKind::NotFound => 0,
        ErrorKind::Conflict => 1,
        ErrorKind::InvalidInput { .. } => 2,
        ErrorKind::Unauthorized => 3,
        ErrorKind::Forbidden => 4,
        ErrorKind::GateDenied { .. } => 5,
        ErrorKind::RateLimited => 6,
        ErrorKind::Upstream { .. } => 7,
        ErrorKind::Unavailable => 8,
        ErrorKind::Internal => 9,
    }
}

/// The statuses an engine call can fail with, from [`status_of`] over every kind, for the OpenAPI
/// document of every operation that returns an [`ApiResult`]. `Unauthorized` is left to the
/// operations that authenticate (their extractor documents 401).
pub fn documented_statuses() -> Vec<StatusCode> {
    let mut v: Vec<StatusCode> = ALL_KINDS
        .iter()
        .map(|k| k())
        .filter(|k| *k != ErrorKind::Unauthorized)
        .map(|k| status_of(&k))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The JSON body of every error response (the OpenAPI document's schema of errors comes from it).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ErrorBody {
    /// What went wrong, in words.
    pub error: String,
    /// The machine-readable kind (`NOT_FOUND`, `INVALID_INPUT`, `GATE_DENIED`, ...).
    pub code: String,
    /// The input field that was wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Kind-specific fields (`reason` of a gate denial, `service`/`upstreamStatus` of an upstream error).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            field: None,
            extra: None,
        }
    }
    pub fn bad_request(field: &str, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.into()),
            ..Self::new(StatusCode::BAD_REQUEST, "INVALID_INPUT", message)
        }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }
    pub fn with_extra(mut self, extra: serde_json::Value) -> Self {
        self.extra = Some(extra);
        self
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = status_of(&e.kind);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            // Internal details go to the log, not to the client.
            tracing::error!(error = %e, source = ?e.source.as_ref().map(|s| s.to_string()), "internal error");
            return ApiError::new(status, "INTERNAL", "internal error");
        }
        let extra = match &e.kind {
            ErrorKind::GateDenied { reason } => Some(json!({ "reason": reason })),
            ErrorKind::Upstream { service, status } => {
                Some(json!({ "service": service, "upstreamStatus": status }))
            }
            _ => None,
        };
        ApiError {
            status,
            code: e.kind.code().to_string(),
            field: e.field().map(str::to_string),
            message: e.message,
            extra,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let extra = match self.extra {
            Some(serde_json::Value::Object(extra)) => extra,
            _ => serde_json::Map::new(),
        };
        let body = ErrorBody {
            error: self.message,
            code: self.code,
            field: self.field,
            extra,
        };
        let mut r = (self.status, axum::Json(body)).into_response();
        // Overload and unavailability are passing: say when to come back.
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        r
    }
}
