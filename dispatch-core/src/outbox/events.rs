//! Outbound event webhooks (spec §2.4 "Outbound webhook events", §4.5): what happened to an
//! issue, POSTed as signed JSON to each subscribed URL through the outbox.
//!
//! Every event has the shape of the original's `ISSUE_ASSIGNED` delivery —
//! `{event, timestamp, issue{id, identifier, title, description, priority, status, assignee},
//! metadata?}` — so a receiver written for one understands them all; `COMMENT_CREATED` adds
//! `comment`, `STATUS_CHANGED` has `metadata{from, to}`, `ISSUE_UPDATED` `metadata{changes}`.

use super::{KIND_WEBHOOK, NewDelivery};
use crate::Timestamp;
use crate::error::{Error, Result};
use crate::issue::{Comment, Issue};
use serde_json::{Value, json};

text_enum!(
    /// The events a subscription can ask for.
    WebhookEvent {
        IssueCreated = "ISSUE_CREATED",
        IssueUpdated = "ISSUE_UPDATED",
        IssueDeleted = "ISSUE_DELETED",
        IssueAssigned = "ISSUE_ASSIGNED",
        CommentCreated = "COMMENT_CREATED",
        StatusChanged = "STATUS_CHANGED",
    }
);

/// One receiver of event webhooks (`EVENT_WEBHOOK_URLS`, `EVENT_WEBHOOK_SECRET`,
/// `EVENT_WEBHOOK_EVENTS`).
#[derive(Clone, PartialEq)]
pub struct Subscription {
    pub url: String,
    pub secret: String,
    pub events: Vec<WebhookEvent>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("url", &self.url)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// Parses a comma-separated event list (`*` or empty: all of them).
pub fn parse_events(var: &str, list: &str) -> Result<Vec<WebhookEvent>> {
    let names: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() || names == ["*"] {
        return Ok(WebhookEvent::ALL.to_vec());
    }
    let mut out = Vec::new();
    for n in names {
        let e: WebhookEvent = n.to_ascii_uppercase().parse().map_err(|_| {
            Error::invalid(
                var,
                format!(
                    "{var}: unknown event {n:?}; expected {}",
                    WebhookEvent::ALL
                        .iter()
                        .map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

/// The issue as every event carries it.
pub fn issue_json(issue: &Issue, status: &str) -> Value {
    json!({
        "id": issue.id,
        "identifier": issue.identifier,
        "title": issue.title,
        "description": issue.description,
        "priority": issue.priority,
        "status": status,
        "assignee": issue.assignee,
    })
}

/// The JSON body of an event.
pub fn body(
    event: WebhookEvent,
    issue: &Issue,
    status: &str,
    comment: Option<&Comment>,
    metadata: Option<Value>,
    now: Timestamp,
) -> Value {
    let mut b = json!({
        "event": event.as_str(),
        "timestamp": now,
        "issue": issue_json(issue, status),
    });
    if let Some(c) = comment {
        b["comment"] = json!({
            "id": c.id,
            "author": c.author,
            "body": c.body,
            "createdAt": c.created_at,
        });
    }
    if let Some(m) = metadata {
        b["metadata"] = m;
    }
    b
}

/// One delivery of an event to one URL. `key` names the occurrence (the same occurrence
/// enqueued twice is delivered once); the body carries `deliveryId`-free content so that the
/// signature covers exactly what is sent.
pub fn delivery(
    url: &str,
    secret: &str,
    event: WebhookEvent,
    body: Value,
    key: &str,
    issue: &Issue,
    now: Timestamp,
) -> NewDelivery {
    NewDelivery {
        kind: KIND_WEBHOOK.into(),
        target: url.to_string(),
        event: event.as_str().into(),
        payload: body,
        idempotency_key: format!("webhook:{url}:{}:{key}", event.as_str()),
        after_key: None,
        secret: Some(secret.to_string()),
        issue_id: Some(issue.id),
        due_at: now,
    }
}

/// The deliveries of one occurrence of `event` to every subscription that wants it.
pub fn fan_out(
    subs: &[Subscription],
    event: WebhookEvent,
    body: &Value,
    key: &str,
    issue: &Issue,
    now: Timestamp,
) -> Vec<NewDelivery> {
    subs.iter()
        .filter(|s| s.events.contains(&event))
        .map(|s| delivery(&s.url, &s.secret, event, body.clone(), key, issue, now))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ColumnId, WorkspaceId};
    use crate::issue::NewIssue;
    use chrono::TimeZone;

    #[test]
    fn event_lists_parse_with_errors_naming_the_variable() {
        assert_eq!(parse_events("V", "").expect("all").len(), 6);
        assert_eq!(parse_events("V", "*").expect("all").len(), 6);
        assert_eq!(
            parse_events("V", "issue_created, STATUS_CHANGED,ISSUE_CREATED").expect("two"),
            vec![WebhookEvent::IssueCreated, WebhookEvent::StatusChanged]
        );
        let e = parse_events("EVENT_WEBHOOK_EVENTS", "ISSUE_MOVED").expect_err("unknown");
        assert!(e.message.contains("EVENT_WEBHOOK_EVENTS"), "{e}");
    }

    #[test]
    fn fan_out_reaches_only_subscribers_of_the_event() {
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 1, 15, 9, 0, 0)
            .single()
            .expect("t");
        let issue = NewIssue::titled("t").into_issue(
            WorkspaceId::new(),
            1,
            "ACME-1".into(),
            ColumnId::new(),
            now,
        );
        let subs = vec![
            Subscription {
                url: "https://a.example.com/h".into(),
                secret: "sa".into(),
                events: vec![WebhookEvent::IssueCreated],
            },
            Subscription {
                url: "https://b.example.com/h".into(),
                secret: "sb".into(),
                events: WebhookEvent::ALL.to_vec(),
            },
        ];
        let b = body(
            WebhookEvent::StatusChanged,
            &issue,
            "Done",
            None,
            Some(json!({"from": "Backlog", "to": "Done"})),
            now,
        );
        let out = fan_out(&subs, WebhookEvent::StatusChanged, &b, "h1", &issue, now);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].target, "https://b.example.com/h");
        assert_eq!(out[0].secret.as_deref(), Some("sb"));
        assert_eq!(out[0].payload["event"], "STATUS_CHANGED");
        assert_eq!(out[0].payload["issue"]["status"], "Done");
        assert_eq!(out[0].payload["metadata"]["to"], "Done");
        let created = fan_out(&subs, WebhookEvent::IssueCreated, &b, "c", &issue, now);
        assert_eq!(created.len(), 2);
        assert_ne!(created[0].idempotency_key, created[1].idempotency_key);
    }
}
