//! Error ingest: normalise, fingerprint, dedupe or create, check for a failed fix, and ask the
//! gates for an agent.

use super::Dispatch;
use super::spawn::SpawnOutcome;
use crate::error::Result;
use crate::event::{ErrorEvent, fingerprint_message, issue_description, issue_title, priority_for};
use crate::gate::{self, Decision, GateSnapshot, Trigger};
use crate::issue::{Actor, Issue, IssuePatch, NewComment, NewIssue, NewLabel, names};
use crate::ports::{Event, IngestDraft, Notification};
use crate::run::BudgetBucket;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestReport {
    pub issue: Issue,
    /// `true` when this event created the issue; `false` when it was deduplicated.
    pub created: bool,
    pub fingerprint: String,
    pub normalized: String,
    /// The link's total event count after this event.
    pub event_count: u64,
    /// This event failed a fix that was being monitored.
    pub fix_failed: bool,
    /// This event reopened a closed issue (a regression).
    pub reopened: bool,
    /// What the gates said, when the origin auto-spawns.
    pub spawn: Option<SpawnOutcome>,
}

fn origin_label(origin: &str) -> NewLabel {
    match origin {
        "loki" => NewLabel::new(names::LABEL_LOKI, names::COLOR_LOKI),
        "sentry" => NewLabel::new(names::LABEL_SENTRY, names::COLOR_SENTRY),
        other => {
            let mut name: String = other.chars().take(40).collect();
            if let Some(f) = name.get(..1) {
                name = f.to_uppercase() + name.get(1..).unwrap_or("");
            }
            NewLabel::new(name, "#6B7280")
        }
    }
}

impl Dispatch {
    /// Ingests one error event.
    pub async fn ingest(&self, event: ErrorEvent) -> Result<IngestReport> {
        event.validate()?;
        let now = self.now();
        let (normalized, fp) = fingerprint_message(&event.source, &event.feature, &event.message);
        let key = event.dedupe_key_with(&fp);
        let origin_name = match event.origin.as_str() {
            "loki" => "Loki".to_string(),
            "sentry" => "Sentry".to_string(),
            o => o.to_string(),
        };
        let actor = Actor::webhook(format!("{origin_name} Webhook"));
        let label = self.origin_label_id(&event.origin).await?;
        let new_issue = NewIssue {
            title: issue_title(&event),
            description: Some(issue_description(&event, &normalized, &fp)),
            column_id: None,
            priority: priority_for(&event),
            assignee: None,
            labels: vec![label],
            customer_id: None,
            reporter_id: None,
        };
        let metadata = json!({
            "source": event.source,
            "feature": event.feature,
            "message": event.message,
            "normalizedMsg": normalized,
            "level": event.level,
            "labels": event.labels,
            "errorMessage": event.error_message,
            "stackTrace": event.stack_trace,
        });
        let seen_at = event.last_seen.unwrap_or(now).min(now);
        let draft = IngestDraft {
            source: event.origin.clone(),
            external_key: key,
            fingerprint: fp.0.clone(),
            url: event.link.clone(),
            metadata,
            event_count: event.event_count,
            seen_at: now,
            new_issue,
            actor: actor.clone(),
        };
        let outcome = self
            .inner
            .store
            .ingest_error(self.inner.workspace.id, draft)
            .await?;
        let mut issue = outcome.issue;
        let mut fix_failed = false;
        let mut reopened = false;
        if outcome.created {
            tracing::info!(issue = %issue.identifier, fingerprint = fp.short(), "new error issue");
            self.publish(Event::IssueCreated { issue_id: issue.id })
                .await;
            self.embed_issue(&issue).await;
            self.notify(Notification::NewError {
                issue: issue.clone(),
                event_count: outcome.link.event_count,
            })
            .await;
        } else {
            let reason = match &event.external_id {
                Some(id) => format!("{origin_name} issue {id} reoccurred after deployment"),
                None => format!(
                    "Error fingerprint {}... reoccurred after deployment",
                    fp.short()
                ),
            };
            // A fix whose window closed before this event happened held: it is verified first
            // (the sweeper may not have got to it), and the event is then a regression.
            if let Some(a) = &outcome.latest_fix
                && crate::verify::on_deadline(a, seen_at).is_some()
            {
                self.verify_attempt(a).await?;
                issue = self.get_issue(issue.id).await?;
            }
            fix_failed = self
                .check_recurrence(
                    &issue,
                    outcome.latest_fix.as_ref(),
                    seen_at,
                    event.event_count,
                    reason,
                )
                .await?;
            if fix_failed {
                issue = self.get_issue(issue.id).await?;
            }
            if !fix_failed && self.is_closed(&issue).await? {
                // The error is back although its issue was closed: a regression.
                reopened = self.reopen_regression(&issue, &actor).await?;
                issue = self.get_issue(issue.id).await?;
            }
        }
        let spawn = if self.auto_spawns(&event.origin)
            && !issue.spawn_status.is_some_and(|s| s.is_active())
        {
            // Kill switch, cooldown and the event threshold depend only on the link just read:
            // when they refuse, the answer is known without the reservation transaction (which
            // would read the counters and refuse the same way). This keeps repeated alerts for
            // a known error at one write each.
            let early = gate::decide(
                &self.inner.config.policy,
                &GateSnapshot {
                    bucket: BudgetBucket::Error,
                    trigger: Trigger::Alert {
                        source: event.source.clone(),
                        event_count: outcome.link.event_count,
                        first_seen_at: outcome.link.first_seen_at,
                        cooldown_until: outcome.link.cooldown_until,
                    },
                    force: false,
                    active_error: 0,
                    active_prd: 0,
                    spawned_today_error: 0,
                    spawned_today_prd: 0,
                    cost_today_usd: 0.0,
                },
                now,
            );
            if let Decision::Deny { .. } = early {
                Some(SpawnOutcome {
                    decision: early,
                    run_id: None,
                    identifier: issue.identifier.clone(),
                })
            } else {
                let s = self.spawn_for_alert(&issue, &actor).await?;
                issue = self.get_issue(issue.id).await?;
                Some(s)
            }
        } else {
            None
        };
        Ok(IngestReport {
            issue,
            created: outcome.created,
            fingerprint: fp.0,
            normalized,
            event_count: outcome.link.event_count,
            fix_failed,
            reopened,
            spawn,
        })
    }

    /// The label of an alert origin ("Loki", "Sentry", ...). Labels are never deleted, so the id
    /// is cached after the first lookup.
    async fn origin_label_id(&self, origin: &str) -> Result<crate::ids::LabelId> {
        if let Some(id) = self
            .inner
            .label_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(origin)
        {
            return Ok(*id);
        }
        let label = self
            .inner
            .store
            .ensure_label(self.inner.workspace.id, origin_label(origin))
            .await?;
        self.inner
            .label_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(origin.to_string(), label.id);
        Ok(label.id)
    }

    fn auto_spawns(&self, origin: &str) -> bool {
        self.inner
            .config
            .auto_spawn_origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
    }

    async fn reopen_regression(&self, issue: &Issue, actor: &Actor) -> Result<bool> {
        let backlog = self.backlog().await?;
        self.patch_with_retry(issue.id, actor, |_| {
            Ok(IssuePatch {
                column_id: Some(backlog.id),
                ..IssuePatch::default()
            })
        })
        .await?;
        self.add_comment(
            issue.id,
            NewComment {
                author: Some("Dispatch".into()),
                body: "## Regression\n\nThis error occurred again after the issue was closed; it is back in Backlog.".into(),
            },
            actor,
        )
        .await?;
        Ok(true)
    }
}
