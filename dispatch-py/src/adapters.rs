//! Python objects as engine ports: an alert source (`parse(headers, body)`) and a runner
//! (`dispatch(run)` / `cancel(run)`, sync or async).
//!
//! The Rust side hands the Python side JSON through a bridge object written in Python
//! (`dispatch._bridge`), which builds the dataclasses, calls the user's object (running a
//! coroutine to completion if it returns one) and answers JSON. The call runs on tokio's blocking
//! pool with the GIL, never on an async worker. A Python exception becomes an engine error
//! carrying its traceback text (see [`crate::errors::from_py`]); it never unwinds into the engine.

use crate::errors;
use async_trait::async_trait;
use dispatch_core::event::ErrorEvent;
use dispatch_core::ports::{
    AlertBatch, AlertRequest, AlertSource, DispatchReceipt, RunJob, RunReporter, Runner,
};
use dispatch_core::run::Run;
use dispatch_core::{Error, Result};
use pyo3::prelude::*;
use serde_json::json;
use std::sync::Arc;

/// Calls `bridge.<method>(arg)` on the blocking pool; the answer is JSON text.
async fn call_bridge(
    bridge: Arc<Py<PyAny>>,
    service: String,
    method: &'static str,
    arg: String,
) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        Python::with_gil(|py| -> Result<String> {
            let out = bridge
                .bind(py)
                .call_method1(method, (arg,))
                .map_err(|e| errors::from_py(py, e, &service))?;
            out.extract::<String>().map_err(|e| {
                Error::internal(format!(
                    "{service}.{method} bridge answered a non-string: {e}"
                ))
            })
        })
    })
    .await
    .map_err(|e| Error::internal(format!("Python adapter call did not complete: {e}")))?
}

/// A Python alert source registered under a name.
pub struct PyAlertSource {
    pub name: String,
    pub bridge: Arc<Py<PyAny>>,
}

#[async_trait]
impl AlertSource for PyAlertSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn parse(&self, request: AlertRequest<'_>) -> Result<AlertBatch> {
        let arg = json!({
            "headers": request.headers,
            "body": String::from_utf8_lossy(request.body),
        })
        .to_string();
        let out = call_bridge(
            self.bridge.clone(),
            format!("alert source {}", self.name),
            "parse",
            arg,
        )
        .await?;
        let events: Vec<ErrorEvent> = serde_json::from_str(&out).map_err(|e| {
            Error::invalid(
                "events",
                format!("alert source {} returned bad events: {e}", self.name),
            )
        })?;
        Ok(AlertBatch {
            events,
            skipped: Vec::new(),
        })
    }
}

/// A Python runner.
pub struct PyRunner {
    pub name: String,
    pub bridge: Arc<Py<PyAny>>,
}

#[async_trait]
impl Runner for PyRunner {
    fn name(&self) -> &str {
        &self.name
    }

    async fn dispatch(
        &self,
        job: RunJob,
        _reporter: Arc<dyn RunReporter>,
    ) -> Result<DispatchReceipt> {
        let arg = json!({ "run": job.run, "issue": job.issue, "inputs": job.inputs }).to_string();
        let out = call_bridge(
            self.bridge.clone(),
            format!("runner {}", self.name),
            "dispatch",
            arg,
        )
        .await?;
        serde_json::from_str(&out).map_err(|e| {
            Error::internal(format!("runner {} returned a bad receipt: {e}", self.name))
        })
    }

    async fn cancel(&self, run: &Run) -> Result<bool> {
        let arg = json!({ "run": run }).to_string();
        let out = call_bridge(
            self.bridge.clone(),
            format!("runner {}", self.name),
            "cancel",
            arg,
        )
        .await?;
        serde_json::from_str(&out).map_err(|e| {
            Error::internal(format!(
                "runner {} returned a bad cancel answer: {e}",
                self.name
            ))
        })
    }
}
