//! Error ingest: normalise, fingerprint, dedupe or create, check for a failed fix, and ask the
//! gates for an agent.

use super::Dispatch;
use super::spawn::SpawnOutcome;
use crate::Timestamp;
use crate::error::{ErrorKind, Result};
use crate::event::{ErrorEvent, fingerprint_message, issue_description, issue_title, priority_for};
use crate::gate::{self, Decision, GateSnapshot, Trigger};
use crate::issue::{Actor, Issue, IssuePatch, NewComment, NewIssue, NewLabel, names};
use crate::ports::{Event, IngestDraft, IngestOutcome, Notification};
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
    /// The event is stored, but a step after it (fix verification, regression, gates) failed:
    /// its link owes the follow-up and the sweeper finishes it. Not an error for the sender.
    #[serde(default)]
    pub follow_up_owed: bool,
}

/// One stored sighting of an error, as its follow-up needs it.
struct Sighting<'a> {
    /// The service the error came from (the gates' per-source rules).
    source: &'a str,
    /// The alert origin (`loki`, `sentry`, ...).
    origin: &'a str,
    /// How people call the origin ("Loki", "Sentry", ...).
    origin_name: &'a str,
    /// The origin's own id of the error (a Sentry issue id), if any.
    external_id: Option<&'a str>,
    fingerprint: &'a str,
    /// When it happened.
    seen_at: Timestamp,
    events: u64,
}

impl Sighting<'_> {
    /// Why a fix failed, when this sighting fails one (written only then).
    fn reason(&self) -> String {
        match self.external_id {
            Some(id) => format!(
                "{} issue {id} reoccurred after deployment",
                self.origin_name
            ),
            None => format!(
                "Error fingerprint {}... reoccurred after deployment",
                self.fingerprint.get(..12).unwrap_or(self.fingerprint)
            ),
        }
    }
}

/// What the follow-up of a sighting did.
struct FollowUp {
    /// The issue as it stands after, when the follow-up changed or read it again (else the
    /// ingest's own copy is current).
    issue: Option<Issue>,
    fix_failed: bool,
    reopened: bool,
    spawn: Option<SpawnOutcome>,
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
            customer_watches: false,
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
        // The "new error" notifications, stored by the ingest's transaction when it creates
        // the issue (the link is new: its count is this event's).
        let outbox = self
            .creation_outbox(&new_issue, Some(event.event_count), None)
            .await;
        let draft = IngestDraft {
            source: event.origin.clone(),
            external_key: key,
            fingerprint: fp.0.clone(),
            url: event.link.clone(),
            metadata,
            event_count: event.event_count,
            // When the error happened (never later than now): what the links' last sighting
            // says is judged against fix windows by event time, as the recurrence check is.
            seen_at,
            new_issue,
            actor: actor.clone(),
            outbox,
        };
        let outcome = self
            .inner
            .store
            .ingest_error(self.inner.workspace.id, draft)
            .await?;
        // From here on the event is stored: whatever fails below is owed by its link and
        // finished by the sweeper, never answered as a failed ingest (the sender would retry
        // and the event would count twice).
        if outcome.created {
            tracing::info!(issue = %outcome.issue.identifier, fingerprint = fp.short(), "new error issue");
            self.publish(Event::IssueCreated {
                issue_id: outcome.issue.id,
            })
            .await;
            self.wake_embedder();
            self.notify_stored(Notification::NewError {
                issue: outcome.issue.clone(),
                event_count: outcome.link.event_count,
            })
            .await;
        }
        let sighting = Sighting {
            source: &event.source,
            origin: &event.origin,
            origin_name: &origin_name,
            external_id: event.external_id.as_deref(),
            fingerprint: &fp.0,
            seen_at,
            events: event.event_count,
        };
        let followed = self.follow_up(&outcome, &sighting, &actor).await;
        let event_count = outcome.link.event_count;
        let (issue, fix_failed, reopened, spawn, follow_up_owed) = match followed {
            Ok(f) => (
                f.issue.unwrap_or(outcome.issue),
                f.fix_failed,
                f.reopened,
                f.spawn,
                false,
            ),
            Err(e) => {
                tracing::warn!(issue = %outcome.issue.identifier, error = %e, "stored an error event, but its follow-up failed; the sweeper finishes it");
                if let Err(e) = self.inner.store.owe_follow_up(outcome.link.id, now).await {
                    tracing::error!(issue = %outcome.issue.identifier, error = %e, "could not record the owed follow-up; the sweeper's verification still judges the stored sighting");
                }
                (outcome.issue, false, false, None, true)
            }
        };
        Ok(IngestReport {
            issue,
            created: outcome.created,
            fingerprint: fp.0,
            normalized,
            event_count,
            fix_failed,
            reopened,
            spawn,
            follow_up_owed,
        })
    }

    /// What follows a stored sighting of an error: for a known key, the fix verification
    /// (a due attempt verified first, a monitoring one failed by a recurrence) and a regression
    /// when its issue was closed; then, for an origin that auto-spawns, the gates. Run by the
    /// ingest, and again from the stored link by the sweeper when the ingest could not finish.
    async fn follow_up(
        &self,
        outcome: &IngestOutcome,
        s: &Sighting<'_>,
        actor: &Actor,
    ) -> Result<FollowUp> {
        let now = self.now();
        // The ingest's copy until something changes or is read again (no clone on the common
        // path of a known error).
        let mut fresh: Option<Issue> = None;
        let mut fix_failed = false;
        let mut reopened = false;
        if !outcome.created {
            // A fix whose window closed before this event happened held: it is verified first
            // (the sweeper may not have got to it), and the event is then a regression.
            if let Some(a) = &outcome.latest_fix
                && crate::verify::on_deadline(a, s.seen_at).is_some()
            {
                self.verify_attempt(a).await?;
            }
            if outcome.latest_fix.is_some() {
                fix_failed = self
                    .check_recurrence(outcome.latest_fix.as_ref(), s.seen_at, s.events, s.reason())
                    .await?;
                // Read again: a verification that won the race against this recurrence closed
                // the issue in the same transaction that verified its attempt, so the close is
                // visible now and the event below reopens it as a regression.
                fresh = Some(self.get_issue(outcome.issue.id).await?);
            }
            let issue = fresh.as_ref().unwrap_or(&outcome.issue);
            if !fix_failed && self.is_closed(issue).await? {
                // The error is back although its issue was closed: a regression.
                reopened = self.reopen_regression(issue, actor).await?;
                fresh = Some(self.get_issue(outcome.issue.id).await?);
            }
        }
        let issue = fresh.as_ref().unwrap_or(&outcome.issue);
        let spawn =
            if self.auto_spawns(s.origin) && !issue.spawn_status.is_some_and(|st| st.is_active()) {
                // Kill switch, cooldown and the event threshold depend only on the link just read:
                // when they refuse, the answer is known without the reservation transaction (which
                // would read the counters and refuse the same way). This keeps repeated alerts for
                // a known error at one write each.
                let early = gate::decide(
                    &self.inner.config.policy,
                    &GateSnapshot {
                        bucket: BudgetBucket::Error,
                        trigger: Trigger::Alert {
                            source: s.source.to_string(),
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
                    let out = self.spawn_for_alert(issue, actor).await?;
                    fresh = Some(self.get_issue(outcome.issue.id).await?);
                    Some(out)
                }
            } else {
                None
            };
        Ok(FollowUp {
            issue: fresh,
            fix_failed,
            reopened,
            spawn,
        })
    }

    /// Finishes the follow-ups that ingests stored but could not finish, owed since `upto` or
    /// earlier, from each link as stored now (its newest sighting and count). Returns how
    /// many were finished; one that fails again stays owed.
    pub(crate) async fn finish_owed_follow_ups(&self, upto: Timestamp) -> Result<usize> {
        let owed = self.inner.store.owed_follow_ups(upto, 64).await?;
        let mut n = 0;
        for (link, owed_at) in owed {
            let issue = match self.get_issue(link.issue_id).await {
                Ok(i) => i,
                Err(e) if e.kind == ErrorKind::NotFound => {
                    self.inner.store.settle_follow_up(link.id, owed_at).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let latest_fix = self
                .inner
                .store
                .list_fix_attempts(issue.id)
                .await?
                .into_iter()
                .next();
            let source = link
                .metadata
                .get("source")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            let origin = link.source.clone();
            let outcome = IngestOutcome {
                issue,
                created: false,
                latest_fix,
                link: link.clone(),
            };
            let sighting = Sighting {
                source: &source,
                origin: &origin,
                origin_name: &origin,
                external_id: None,
                fingerprint: &link.fingerprint,
                seen_at: link.last_seen_at,
                events: 1,
            };
            let actor = Actor::webhook(format!("{origin} Webhook"));
            match self.follow_up(&outcome, &sighting, &actor).await {
                Ok(_) => {
                    self.inner.store.settle_follow_up(link.id, owed_at).await?;
                    n += 1;
                }
                Err(e) => {
                    tracing::warn!(issue = %outcome.issue.identifier, error = %e, "owed ingest follow-up failed again; retried at the next sweep");
                }
            }
        }
        Ok(n)
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
