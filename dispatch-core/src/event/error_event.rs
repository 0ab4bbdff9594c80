use crate::Timestamp;
use crate::error::{Error, Result};
use crate::issue::Priority;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A production error, whatever reported it. An [`crate::ports::AlertSource`] turns a webhook
/// payload into these; ingest dedupes them by fingerprint (or by `external_id` when the source
/// has its own stable id, as Sentry does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEvent {
    /// Which integration reported it (`loki`, `sentry`, ...): the link's source.
    pub origin: String,
    /// The service or component that logged it (`source` label).
    pub source: String,
    /// The feature or code area (`feature` label).
    pub feature: String,
    /// The log message; normalised and fingerprinted.
    pub message: String,
    pub level: String,
    /// The exception's own message, when separate from the log message.
    pub error_message: Option<String>,
    pub stack_trace: Option<String>,
    pub sample_lines: Vec<String>,
    /// Occurrences this report stands for (≥ 1).
    pub event_count: u64,
    pub first_seen: Option<Timestamp>,
    pub last_seen: Option<Timestamp>,
    pub labels: BTreeMap<String, String>,
    /// Alert evaluation values (Grafana `values`).
    pub values: BTreeMap<String, String>,
    /// The source's own stable id; when set it, not the fingerprint, identifies the error.
    pub external_id: Option<String>,
    /// A link back to the source (Grafana generator URL, Sentry permalink).
    pub link: Option<String>,
    /// Overrides for sources that build their own issue text and priority (Sentry).
    pub title: Option<String>,
    pub description: Option<String>,
    pub priority: Option<Priority>,
}

impl ErrorEvent {
    /// An event with the given origin, source, feature and message and defaults elsewhere.
    pub fn new(
        origin: impl Into<String>,
        source: impl Into<String>,
        feature: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ErrorEvent {
            origin: origin.into(),
            source: source.into(),
            feature: feature.into(),
            message: message.into(),
            level: "error".into(),
            error_message: None,
            stack_trace: None,
            sample_lines: Vec::new(),
            event_count: 1,
            first_seen: None,
            last_seen: None,
            labels: BTreeMap::new(),
            values: BTreeMap::new(),
            external_id: None,
            link: None,
            title: None,
            description: None,
            priority: None,
        }
    }

    /// The key its error link is stored under, with `origin` as the link's source: the
    /// tracker's own id when it has one (Sentry), else the fingerprint of the message.
    pub fn dedupe_key(&self) -> String {
        match &self.external_id {
            Some(id) => id.clone(),
            None => {
                super::fingerprint_message(&self.source, &self.feature, &self.message)
                    .1
                    .0
            }
        }
    }

    /// [`Self::dedupe_key`] when the fingerprint is already computed.
    pub fn dedupe_key_with(&self, fingerprint: &super::Fingerprint) -> String {
        self.external_id
            .clone()
            .unwrap_or_else(|| fingerprint.0.clone())
    }

    pub fn with_count(mut self, n: u64) -> Self {
        self.event_count = n;
        self
    }

    /// Rejects events that cannot be stored meaningfully, naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.origin.trim().is_empty() {
            return Err(Error::invalid("origin", "error event needs an origin"));
        }
        if self.source.is_empty() {
            return Err(Error::invalid("source", "error event needs a source"));
        }
        if self.feature.is_empty() {
            return Err(Error::invalid("feature", "error event needs a feature"));
        }
        if self.event_count == 0 {
            return Err(Error::invalid(
                "event_count",
                "event count must be at least 1",
            ));
        }
        if let Some(id) = &self.external_id
            && id.trim().is_empty()
        {
            return Err(Error::invalid(
                "external_id",
                "external id must not be blank",
            ));
        }
        Ok(())
    }
}
