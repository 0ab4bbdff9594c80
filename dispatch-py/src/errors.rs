//! The ONE place where core [`ErrorKind`]s become Python exceptions.

use dispatch_core::{Error, ErrorKind};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    dispatch._dispatch,
    DispatchError,
    PyException,
    "Any error from the Dispatch engine."
);
create_exception!(
    dispatch._dispatch,
    NotFound,
    DispatchError,
    "The thing asked for does not exist."
);
create_exception!(
    dispatch._dispatch,
    Conflict,
    DispatchError,
    "The state changed under the caller, or the move is not allowed now."
);
create_exception!(
    dispatch._dispatch,
    InvalidInput,
    DispatchError,
    "A named input field was wrong (`.field`)."
);
create_exception!(
    dispatch._dispatch,
    Unauthorized,
    DispatchError,
    "Authentication failed."
);
create_exception!(dispatch._dispatch, Forbidden, DispatchError, "Not allowed.");
create_exception!(
    dispatch._dispatch,
    GateDenied,
    DispatchError,
    "A spawn gate said no (`.reason`)."
);
create_exception!(
    dispatch._dispatch,
    RateLimited,
    DispatchError,
    "Too many requests."
);
create_exception!(
    dispatch._dispatch,
    Upstream,
    DispatchError,
    "An upstream service failed (`.service`, `.status`)."
);
create_exception!(
    dispatch._dispatch,
    Unavailable,
    DispatchError,
    "A needed part is not available."
);
create_exception!(
    dispatch._dispatch,
    Internal,
    DispatchError,
    "An internal error."
);

/// Converts a core error into the matching Python exception, with `.code`, `.message` and the
/// kind's fields as attributes.
pub fn to_py(e: Error) -> PyErr {
    let msg = e.message.clone();
    let err = match &e.kind {
        ErrorKind::NotFound => NotFound::new_err(msg),
        ErrorKind::Conflict => Conflict::new_err(msg),
        ErrorKind::InvalidInput { .. } => InvalidInput::new_err(msg),
        ErrorKind::Unauthorized => Unauthorized::new_err(msg),
        ErrorKind::Forbidden => Forbidden::new_err(msg),
        ErrorKind::GateDenied { .. } => GateDenied::new_err(msg),
        ErrorKind::RateLimited => RateLimited::new_err(msg),
        ErrorKind::Upstream { .. } => Upstream::new_err(msg),
        ErrorKind::Unavailable => Unavailable::new_err(msg),
        ErrorKind::Internal => Internal::new_err(msg),
    };
    Python::with_gil(|py| {
        let value = err.value(py);
        let _ = value.setattr("code", e.kind.code());
        let _ = value.setattr("message", &e.message);
        match &e.kind {
            ErrorKind::InvalidInput { field } => {
                let _ = value.setattr("field", field);
            }
            ErrorKind::GateDenied { reason } => {
                let _ = value.setattr("reason", reason);
            }
            ErrorKind::Upstream { service, status } => {
                let _ = value.setattr("service", service);
                let _ = value.setattr("status", *status);
            }
            _ => {}
        }
    });
    err
}

/// A Python exception raised by a Python adapter, as an engine error. A `dispatch.DispatchError`
/// keeps its kind (so a runner may say `Unavailable` to be retried); anything else is an
/// `Upstream` error of `service` (status 0: retryable, like a failed connection) whose message
/// is the full traceback text.
pub fn from_py(py: Python<'_>, err: PyErr, service: &str) -> Error {
    let value = err.value(py);
    if err.is_instance_of::<DispatchError>(py) {
        let text = |k: &str| -> Option<String> {
            value
                .getattr(k)
                .ok()
                .and_then(|v| v.extract::<String>().ok())
        };
        let message = text("message").unwrap_or_else(|| value.to_string());
        let kind = if err.is_instance_of::<NotFound>(py) {
            ErrorKind::NotFound
        } else if err.is_instance_of::<Conflict>(py) {
            ErrorKind::Conflict
        } else if err.is_instance_of::<InvalidInput>(py) {
            ErrorKind::InvalidInput {
                field: text("field").unwrap_or_default(),
            }
        } else if err.is_instance_of::<Unauthorized>(py) {
            ErrorKind::Unauthorized
        } else if err.is_instance_of::<Forbidden>(py) {
            ErrorKind::Forbidden
        } else if err.is_instance_of::<GateDenied>(py) {
            ErrorKind::GateDenied {
                reason: text("reason").unwrap_or_default(),
            }
        } else if err.is_instance_of::<RateLimited>(py) {
            ErrorKind::RateLimited
        } else if err.is_instance_of::<Upstream>(py) {
            ErrorKind::Upstream {
                service: text("service").unwrap_or_else(|| service.to_string()),
                status: value
                    .getattr("status")
                    .ok()
                    .and_then(|v| v.extract::<u16>().ok())
                    .unwrap_or(0),
            }
        } else if err.is_instance_of::<Unavailable>(py) {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Internal
        };
        return Error::new(kind, message);
    }
    let trace = py
        .import("traceback")
        .and_then(|tb| {
            tb.call_method1(
                "format_exception",
                (err.get_type(py), value, err.traceback(py)),
            )
        })
        .and_then(|lines| lines.extract::<Vec<String>>().map(|l| l.concat()))
        .unwrap_or_else(|_| value.to_string());
    Error::upstream(service, 0, format!("{service} raised {}", trace.trim_end()))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("DispatchError", py.get_type::<DispatchError>())?;
    m.add("NotFound", py.get_type::<NotFound>())?;
    m.add("Conflict", py.get_type::<Conflict>())?;
    m.add("InvalidInput", py.get_type::<InvalidInput>())?;
    m.add("Unauthorized", py.get_type::<Unauthorized>())?;
    m.add("Forbidden", py.get_type::<Forbidden>())?;
    m.add("GateDenied", py.get_type::<GateDenied>())?;
    m.add("RateLimited", py.get_type::<RateLimited>())?;
    m.add("Upstream", py.get_type::<Upstream>())?;
    m.add("Unavailable", py.get_type::<Unavailable>())?;
    m.add("Internal", py.get_type::<Internal>())?;
    Ok(())
}
