//! The one place where core error kinds become HTTP statuses and JSON error bodies
//! `{ "error": message, "code": CODE, "field"?: name }`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dispatch_core::{Error, ErrorKind};
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
        let mut body = json!({ "error": self.message, "code": self.code });
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        if let Some(serde_json::Value::Object(extra)) = self.extra {
            for (k, v) in extra {
                body[k] = v;
            }
        }
        (self.status, axum::Json(body)).into_response()
    }
}
