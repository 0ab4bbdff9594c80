use crate::error::Result;
use crate::event::ErrorEvent;
use async_trait::async_trait;

/// An incoming webhook request, already authenticated by the server.
#[derive(Debug, Clone, Copy)]
pub struct AlertRequest<'a> {
    /// Header names lower-cased.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl AlertRequest<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a payload held: the error events to ingest and why the rest was skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertBatch {
    pub events: Vec<ErrorEvent>,
    pub skipped: Vec<String>,
}

/// Turns an error tracker's webhook payload into [`ErrorEvent`]s (Grafana/Loki, Sentry, yours).
#[async_trait]
pub trait AlertSource: Send + Sync {
    /// The link source name (`loki`, `sentry`, ...).
    fn name(&self) -> &str;
    /// Parses the payload; malformed input is `InvalidInput` naming the field.
    async fn parse(&self, request: AlertRequest<'_>) -> Result<AlertBatch>;
}
