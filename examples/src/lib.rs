//! Building blocks of the examples (`src/bin/`), kept in a library so that `tests/` can check
//! them:
//! - [`DatadogSource`]: an [`AlertSource`] for a Datadog-style webhook — the pattern for any
//!   error tracker the server does not know (Honeybadger, Rollbar, your own).
//! - [`ScriptRunner`]: a [`Runner`] that "runs" an agent in-process and reports through the
//!   engine's [`RunReporter`] — the pattern for your own job system.
//! - [`DispatchLayer`]: a `tracing` layer that turns your application's error events into
//!   [`ErrorEvent`]s — "errors from my app's logs", with the `source`/`feature` convention of the
//!   original's README.

use async_trait::async_trait;
use dispatch_core::error::{Error, Result};
use dispatch_core::event::ErrorEvent;
use dispatch_core::ports::{
    AlertBatch, AlertRequest, AlertSource, DispatchReceipt, RunJob, RunReporter, RunResult, Runner,
};
use dispatch_core::run::{Outcome, Run, RunStatus};
use serde::Deserialize;
use std::sync::Arc;

// ------------------------------------------------------------------ a custom alert source

/// One Datadog monitor notification (the fields a webhook template usually sends).
#[derive(Debug, Deserialize)]
struct DatadogAlert {
    #[serde(default)]
    id: Option<String>,
    title: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    alert_type: Option<String>,
    /// `key:value` tags; `service:` and `feature:` name the error's source and feature.
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    event_count: Option<u64>,
    #[serde(default)]
    link: Option<String>,
}

/// Datadog monitor webhooks (`{title, body, alert_type, tags: ["service:x", "feature:y"], …}`, or
/// a list of them) as error events. Recoveries (`alert_type: "success"`) are skipped.
#[derive(Debug, Default, Clone)]
pub struct DatadogSource;

impl DatadogSource {
    fn tag<'a>(tags: &'a [String], key: &str) -> Option<&'a str> {
        tags.iter()
            .find_map(|t| t.strip_prefix(key).and_then(|v| v.strip_prefix(':')))
            .filter(|v| !v.is_empty())
    }
}

#[async_trait]
impl AlertSource for DatadogSource {
    fn name(&self) -> &str {
        "datadog"
    }

    async fn parse(&self, request: AlertRequest<'_>) -> Result<AlertBatch> {
        let value: serde_json::Value = serde_json::from_slice(request.body)
            .map_err(|e| Error::invalid("body", format!("not JSON: {e}")))?;
        let alerts: Vec<DatadogAlert> = match value {
            serde_json::Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    serde_json::from_value(v)
                        .map_err(|e| Error::invalid(format!("[{i}]"), e.to_string()))
                })
                .collect::<Result<_>>()?,
            v => {
                vec![serde_json::from_value(v).map_err(|e| Error::invalid("body", e.to_string()))?]
            }
        };
        let mut batch = AlertBatch::default();
        for a in alerts {
            if a.alert_type.as_deref() == Some("success") {
                batch.skipped.push(format!("{}: recovered", a.title));
                continue;
            }
            let source = Self::tag(&a.tags, "service").unwrap_or("unknown");
            let feature = Self::tag(&a.tags, "feature").unwrap_or("general");
            let message = a
                .body
                .as_deref()
                .map(str::trim)
                .filter(|b| !b.is_empty())
                .unwrap_or(&a.title);
            let mut e = ErrorEvent::new("datadog", source, feature, message);
            e.event_count = a.event_count.unwrap_or(1).max(1);
            e.link = a.link;
            e.title = Some(a.title.clone());
            if let Some(id) = a.id {
                e.labels.insert("datadog_monitor".into(), id);
            }
            batch.events.push(e);
        }
        Ok(batch)
    }
}

// ------------------------------------------------------------------ a custom runner

/// A runner for your own job system. This one "works" in-process: it reports a few lines of
/// output and finishes the run, as a queue consumer or a remote worker would through the
/// reporter. It is idempotent by run id, as every runner must be.
#[derive(Default)]
pub struct ScriptRunner {
    started: std::sync::Mutex<std::collections::HashSet<dispatch_core::ids::RunId>>,
}

#[async_trait]
impl Runner for ScriptRunner {
    fn name(&self) -> &str {
        "script"
    }

    async fn dispatch(
        &self,
        job: RunJob,
        reporter: Arc<dyn RunReporter>,
    ) -> Result<DispatchReceipt> {
        let id = job.run.id;
        let receipt = DispatchReceipt {
            external_id: Some(format!("script-{id}")),
            external_url: None,
        };
        if !self
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id)
        {
            return Ok(receipt);
        }
        // The work happens after `dispatch` returns, as with any real runner.
        tokio::spawn(async move {
            let title = job.issue.title.clone();
            let steps = [
                format!("Looking at {}: {title}", job.issue.identifier),
                "[TOOL] Grep(pattern=charge)".to_string(),
                "Found the cause; a fix is ready for review.".to_string(),
            ];
            for line in steps {
                if let Err(e) = reporter.terminal(id, &format!("{line}\n")).await {
                    tracing::warn!(run = %id, error = %e, "could not report output");
                }
            }
            let result = RunResult {
                status: Some(RunStatus::Completed),
                outcome: Some(Outcome::Completed),
                summary: Some(format!("Investigated {}", job.issue.identifier)),
                cost_usd: Some(0.0),
                ..RunResult::default()
            };
            if let Err(e) = reporter.finish(id, result).await {
                tracing::warn!(run = %id, error = %e, "could not report the end");
            }
        });
        Ok(receipt)
    }

    async fn cancel(&self, _run: &Run) -> Result<bool> {
        // Nothing long-running to stop in this example.
        Ok(true)
    }
}

// ------------------------------------------------------------------ errors from your logs

/// A `tracing` layer: every `ERROR` event becomes an [`ErrorEvent`] (`source` and `feature`
/// fields name where it came from, the message is fingerprinted), handed to a channel that a task
/// ingests from — logging never waits for the engine.
pub struct DispatchLayer {
    sender: tokio::sync::mpsc::Sender<ErrorEvent>,
    default_source: String,
}

impl DispatchLayer {
    /// The layer and the receiver to ingest from (see [`ingest_forever`]). `capacity` bounds
    /// the backlog: when it is full, events are dropped (and counted in the log), never blocking.
    pub fn new(
        default_source: &str,
        capacity: usize,
    ) -> (Self, tokio::sync::mpsc::Receiver<ErrorEvent>) {
        let (sender, receiver) = tokio::sync::mpsc::channel(capacity);
        (
            DispatchLayer {
                sender,
                default_source: default_source.to_string(),
            },
            receiver,
        )
    }
}

#[derive(Default)]
struct Fields {
    message: Option<String>,
    source: Option<String>,
    feature: Option<String>,
    error: Option<String>,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "message" => self.message = Some(value.to_string()),
            "source" => self.source = Some(value.to_string()),
            "feature" => self.feature = Some(value.to_string()),
            "error" => self.error = Some(value.to_string()),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for DispatchLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if *event.metadata().level() != tracing::Level::ERROR {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let Some(message) = f.message else { return };
        let mut e = ErrorEvent::new(
            "app-log",
            f.source.unwrap_or_else(|| self.default_source.clone()),
            f.feature
                .unwrap_or_else(|| event.metadata().target().to_string()),
            message,
        );
        e.error_message = f.error;
        // Never block the code that logged: a full backlog drops the event.
        let _ = self.sender.try_send(e);
    }
}

/// Ingests what the layer sends until the channel closes.
pub async fn ingest_forever(
    dispatch: dispatch_core::Dispatch,
    mut events: tokio::sync::mpsc::Receiver<ErrorEvent>,
) {
    while let Some(e) = events.recv().await {
        if let Err(err) = dispatch.ingest(e).await {
            // Not through `tracing::error!`: that would feed the layer its own failures.
            eprintln!("dispatch: could not ingest an error event: {err}");
        }
    }
}
