//! The one error type of the core. Adapters keep private error enums and convert into this;
//! the server maps [`ErrorKind`] to HTTP status in one place, the Python binding to exception classes.

use std::fmt;

/// What a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    /// The state changed under the caller (optimistic concurrency) or the transition is not allowed now.
    Conflict,
    /// A named input field was wrong.
    InvalidInput {
        field: String,
    },
    Unauthorized,
    Forbidden,
    /// A spawn gate said no; `reason` is the machine-readable code (`kill_switch`, `cooldown`, ...).
    GateDenied {
        reason: String,
    },
    RateLimited,
    /// An upstream service answered with an error (status 0 when there was no HTTP answer).
    Upstream {
        service: String,
        status: u16,
    },
    Unavailable,
    Internal,
}

impl ErrorKind {
    /// Stable upper-case code for wire formats (`NOT_FOUND`, `GATE_DENIED`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            ErrorKind::NotFound => "NOT_FOUND",
            ErrorKind::Conflict => "CONFLICT",
            ErrorKind::InvalidInput { .. } => "INVALID_INPUT",
            ErrorKind::Unauthorized => "UNAUTHORIZED",
            ErrorKind::Forbidden => "FORBIDDEN",
            ErrorKind::GateDenied { .. } => "GATE_DENIED",
            ErrorKind::RateLimited => "RATE_LIMITED",
            ErrorKind::Upstream { .. } => "UPSTREAM",
            ErrorKind::Unavailable => "UNAVAILABLE",
            ErrorKind::Internal => "INTERNAL",
        }
    }

    /// Whether retrying the same call later can succeed (used by the dispatcher's backoff).
    pub fn is_retryable(&self) -> bool {
        match self {
            ErrorKind::RateLimited | ErrorKind::Unavailable | ErrorKind::Conflict => true,
            ErrorKind::Upstream { status, .. } => *status == 0 || *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::InvalidInput {
                field: field.into(),
            },
            message,
        )
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }
    pub fn gate_denied(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::GateDenied {
                reason: reason.into(),
            },
            message,
        )
    }
    pub fn upstream(service: impl Into<String>, status: u16, message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::Upstream {
                service: service.into(),
                status,
            },
            message,
        )
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// The field an `InvalidInput` error names, if any.
    pub fn field(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::InvalidInput { field } => Some(field),
            _ => None,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(s) = &self.source {
            d.field("source", &s.to_string());
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::InvalidInput { field } => write!(f, "invalid {field}: {}", self.message),
            ErrorKind::Upstream { service, status } => {
                write!(f, "{service} answered {status}: {}", self.message)
            }
            _ => write!(f, "{}", self.message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Clone for Error {
    /// The source chain is flattened into the message on clone (errors cross task boundaries).
    fn clone(&self) -> Self {
        let message = match &self.source {
            Some(s) => format!("{}: {s}", self.message),
            None => self.message.clone(),
        };
        Error {
            kind: self.kind.clone(),
            message,
            source: None,
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::new(
            ErrorKind::InvalidInput {
                field: "body".into(),
            },
            e.to_string(),
        )
    }
}
