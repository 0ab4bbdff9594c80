//! Fix verification: merged PRs become fix attempts, deploys start monitoring, recurrences fail
//! them, deadlines verify them and close the issue.

use super::Dispatch;
use super::{PrLinkReport, PrMatch, PullRequestInfo};
use crate::Timestamp;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{IssueId, IssueRef};
use crate::issue::{
    Actor, Issue, IssueFilter, IssuePatch, NewComment, NewLabel, diff_history, find_identifiers,
    names,
};
use crate::ports::{ErrorLink, IssueUpdate, LlmRequest, Notification};
use crate::pr::PrStatus;
use crate::pr_match::{self, Candidate, MatchMethod};
use crate::run::{ActivityType, NewActivity};
use crate::verify::{self, FixAttempt, MergedPr, VerificationStatus};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixAttemptReport {
    pub issue_id: IssueId,
    pub identifier: String,
    pub attempt: FixAttempt,
    /// `false` when this PR was already recorded for the issue (redelivered webhook).
    pub created: bool,
}

/// What [`Dispatch::merge_pr`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct PrMergeReport {
    /// The issues matched now (empty when the PR was linked before and names no issue).
    pub matches: Vec<PrMatch>,
    /// Every link of the PR in this workspace, now merged.
    pub links: Vec<PrLinkReport>,
    /// One per matched issue (per linked issue when the PR was linked before and names none).
    pub fix_attempts: Vec<FixAttemptReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixStatus {
    pub issue_id: IssueId,
    pub identifier: String,
    pub has_error_link: bool,
    pub links: Vec<ErrorLink>,
    /// Newest first.
    pub attempts: Vec<FixAttempt>,
    pub latest: Option<FixAttempt>,
    pub latest_description: Option<String>,
    pub can_close: bool,
    pub close_block_reason: Option<String>,
}

impl Dispatch {
    /// A PR was merged: it is matched like an opened PR ([`Dispatch::match_pr`]: identifiers,
    /// else similarity confirmed by the LLM), its links (matched issues and those already linked
    /// to the PR number) become `merged`, and each matched issue gets a fix attempt — or, when
    /// nothing new matched because the PR names no issue and was linked before, each linked
    /// issue. Redelivery is harmless (one link and one attempt per issue and PR).
    pub async fn merge_pr(
        &self,
        pr: &MergedPr,
        author: Option<String>,
        actor: &Actor,
    ) -> Result<PrMergeReport> {
        verify::validate_pr_number(pr.number)?;
        let info = PullRequestInfo::merged(pr, author);
        let (matches, links) = self.link_pr(&info, Some(PrStatus::Merged), actor).await?;
        // The issues matched now; a PR that names none and was linked before (by similarity
        // when it opened, or by a person) fixes the issues it is linked to.
        let issues: Vec<IssueRef> = if matches.is_empty() {
            links.iter().map(|l| IssueRef::Id(l.issue_id)).collect()
        } else {
            matches.iter().map(|m| IssueRef::Id(m.issue_id)).collect()
        };
        let fix_attempts = self.record_fix(pr, &issues, actor).await?;
        Ok(PrMergeReport {
            matches,
            links,
            fix_attempts,
        })
    }

    /// Whether a merged PR with this base and head branch is a release (spec §6.2): the
    /// configured staging branch (`GITHUB_RELEASE_HEAD_BRANCH`) into the deploy branch
    /// (`GITHUB_REF`).
    pub fn is_release_pr(&self, base: Option<&str>, head: Option<&str>) -> bool {
        self.inner.config.release.is_release(base, head)
    }

    /// A release PR was merged (spec §6.2, without closing anything): the open issues in In
    /// Review or In Progress are the candidates. Issues of this workspace named in the title,
    /// body or the commit messages are included for sure (confidence 1.0); with an
    /// [`crate::ports::Llm`] configured, the model is asked which of the other candidates the
    /// release includes, and those it names with at least the policy's confidence (85) are
    /// included too (an error or an unparsable answer includes nothing more). Each included
    /// issue gets the PR linked as merged and a fix attempt, as for any merged PR: verification
    /// starts, and the sweeper closes the issue once verified. Redelivery is harmless.
    pub async fn merge_release_pr(
        &self,
        pr: &MergedPr,
        commits: &[String],
        author: Option<String>,
        actor: &Actor,
    ) -> Result<PrMergeReport> {
        verify::validate_pr_number(pr.number)?;
        let policy = &self.inner.config.release;
        let info = PullRequestInfo::merged(pr, author);
        let mut text: Vec<&str> = [pr.title.as_deref(), pr.body.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        text.extend(commits.iter().map(String::as_str));
        let mut included: Vec<PrMatch> = Vec::new();
        for ident in find_identifiers(&text.join("\n"), &self.inner.workspace.issue_prefix) {
            let issue = match self.get_issue(IssueRef::Identifier(ident)).await {
                Ok(i) => i,
                Err(e) if e.kind == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if self.is_closed(&issue).await? || included.iter().any(|m| m.issue_id == issue.id) {
                continue;
            }
            included.push(PrMatch {
                issue_id: issue.id,
                identifier: issue.identifier,
                confidence: super::NAMED_MATCH_CONFIDENCE,
                method: MatchMethod::Identifier,
            });
        }
        if let Some(llm) = &self.inner.llm {
            let mut candidates: Vec<(IssueId, Candidate)> = Vec::new();
            for c in self.columns().await? {
                if c.is_closed()
                    || !(c.is_named(names::IN_REVIEW) || c.is_named(names::IN_PROGRESS))
                {
                    continue;
                }
                let filter = IssueFilter {
                    column_id: Some(c.id),
                    ..IssueFilter::default()
                };
                for i in self.list_issues(&filter).await? {
                    if included.iter().any(|m| m.issue_id == i.id)
                        || candidates.iter().any(|(id, _)| *id == i.id)
                    {
                        continue;
                    }
                    candidates.push((
                        i.id,
                        Candidate {
                            identifier: i.identifier,
                            title: i.title,
                            description: i.description.unwrap_or_default(),
                            score: 0.0,
                        },
                    ));
                }
            }
            candidates.truncate(policy.max_candidates.max(1));
            if !candidates.is_empty() {
                let list: Vec<Candidate> = candidates.iter().map(|(_, c)| c.clone()).collect();
                let request = LlmRequest::single_turn(
                    pr_match::RELEASE_SYSTEM,
                    pr_match::release_prompt(
                        pr.number,
                        pr.title.as_deref(),
                        pr.body.as_deref(),
                        commits,
                        &list,
                    ),
                    policy.llm_max_tokens,
                );
                match llm.complete(request).await {
                    Ok(r) => {
                        let answer = r.text();
                        for (ident, conf) in
                            pr_match::parse_release(&answer, &list, policy.min_confidence)
                        {
                            if let Some((id, _)) =
                                candidates.iter().find(|(_, c)| c.identifier == ident)
                            {
                                included.push(PrMatch {
                                    issue_id: *id,
                                    identifier: ident,
                                    confidence: f64::from(conf) / 100.0,
                                    method: MatchMethod::Llm,
                                });
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(pr = pr.number, error = %e, "LLM question about the release failed; only named issues are included");
                    }
                }
            }
        }
        tracing::info!(
            pr = pr.number,
            included = included.len(),
            "release PR merged"
        );
        let links = self
            .sync_pr_links(&info, Some(PrStatus::Merged), &included, actor)
            .await?;
        let issues: Vec<IssueRef> = included.iter().map(|m| IssueRef::Id(m.issue_id)).collect();
        let fix_attempts = self.record_fix(pr, &issues, actor).await?;
        Ok(PrMergeReport {
            matches: included,
            links,
            fix_attempts,
        })
    }

    /// [`Self::merge_pr`], answering the fix attempts.
    pub async fn pr_merged(&self, pr: &MergedPr, actor: &Actor) -> Result<Vec<FixAttemptReport>> {
        Ok(self.merge_pr(pr, None, actor).await?.fix_attempts)
    }

    /// Records a merged PR as a fix attempt for the given issues (found by identifier, or by a
    /// matcher such as lexical similarity or an LLM). Unknown issues are skipped.
    pub async fn record_fix(
        &self,
        pr: &MergedPr,
        issues: &[IssueRef],
        actor: &Actor,
    ) -> Result<Vec<FixAttemptReport>> {
        verify::validate_pr_number(pr.number)?;
        let mut out = Vec::new();
        for r in issues {
            let issue = match self.get_issue(r.clone()).await {
                Ok(i) => i,
                Err(e) if e.kind == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if out
                .iter()
                .any(|x: &FixAttemptReport| x.issue_id == issue.id)
            {
                continue;
            }
            let attempt = verify::on_merge(issue.id, pr, &self.inner.config.verify, self.now());
            let (attempt, created) = self.inner.store.create_fix_attempt(&attempt).await?;
            if created {
                let what = match attempt.status {
                    VerificationStatus::AwaitingDeploy => "awaiting deploy".to_string(),
                    _ => format!(
                        "monitoring for recurrence until {}",
                        attempt
                            .deadline
                            .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
                            .unwrap_or_default()
                    ),
                };
                let mut a = NewActivity::new(
                    ActivityType::Observation,
                    format!(
                        "Fix PR #{} merged by {}; {what}",
                        attempt.pr_number, actor.name
                    ),
                );
                a.metadata = serde_json::json!({"pr_number": attempt.pr_number, "pr_url": attempt.pr_url, "fix_attempt_id": attempt.id});
                self.record_activity(issue.id, a).await?;
            }
            // A merge delivered late: the error may have come back between the merge and now.
            let attempt = if created {
                self.judge_stored_sightings(&issue, attempt).await?
            } else {
                attempt
            };
            out.push(FixAttemptReport {
                issue_id: issue.id,
                identifier: issue.identifier,
                attempt,
                created,
            });
        }
        Ok(out)
    }

    /// A deploy signal (e.g. a successful production workflow run): attempts awaiting deploy that
    /// were merged before `deployed_at` start monitoring. Returns how many started.
    pub async fn deploy_signal(&self, sha: Option<&str>, deployed_at: Timestamp) -> Result<usize> {
        let deployed_at = verify::reported_time(deployed_at, self.now());
        let waiting = self
            .inner
            .store
            .fix_attempts_in_status(VerificationStatus::AwaitingDeploy, 1000)
            .await?;
        let mut n = 0;
        for a in waiting {
            if let Some(next) =
                verify::on_deploy(&a, sha, deployed_at, &self.inner.config.verify, self.now())
                && self
                    .inner
                    .store
                    .update_fix_attempt(&next, VerificationStatus::AwaitingDeploy)
                    .await?
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The latest attempt as it stands at `now`: a monitoring attempt whose deadline passed
    /// counts as verified even before the sweeper persisted it.
    pub(crate) async fn settle_due_attempt(&self, issue: IssueId) -> Result<Option<FixAttempt>> {
        let latest = self
            .inner
            .store
            .list_fix_attempts(issue)
            .await?
            .into_iter()
            .next();
        Ok(latest.map(|a| verify::on_deadline(&a, self.now()).unwrap_or(a)))
    }

    /// The error came back: fails the issue's monitoring attempt. Returns whether it did.
    pub(crate) async fn check_recurrence(
        &self,
        latest: Option<&FixAttempt>,
        seen_at: Timestamp,
        events: u64,
        reason: String,
    ) -> Result<bool> {
        let Some(latest) = latest else {
            return Ok(false);
        };
        let Some(failed) = verify::on_recurrence(latest, seen_at, events, reason) else {
            return Ok(false);
        };
        self.fail_fix(&failed).await
    }

    /// What the issue's stored error links say about a monitoring attempt: a sighting inside
    /// its window fails it ([`verify::recurrence_since`]). Returns the attempt as it stands
    /// after. The links hold every event whose ingest committed, so this finds a recurrence
    /// whose ingest died before its own check, and one that happened before a late merge was
    /// delivered.
    async fn judge_stored_sightings(&self, issue: &Issue, a: FixAttempt) -> Result<FixAttempt> {
        let links = self.inner.store.links_for_issue(issue.id).await?;
        let Some((seen_at, events)) = verify::recurrence_since(&a, &links) else {
            return Ok(a);
        };
        let reason = format!(
            "the error was seen at {} after the fix",
            seen_at.format("%Y-%m-%d %H:%M UTC")
        );
        let Some(failed) = verify::on_recurrence(&a, seen_at, events, reason) else {
            return Ok(a);
        };
        self.fail_fix(&failed).await?;
        Ok(self
            .inner
            .store
            .list_fix_attempts(issue.id)
            .await?
            .into_iter()
            .find(|x| x.id == a.id)
            .unwrap_or(failed))
    }

    /// Settles a monitoring attempt as `next` together with its effect on the issue, in one
    /// store transaction ([`crate::ports::FixStore::settle_fix_attempt`]): `plan` gives the
    /// patch for the issue as it stands (a move into a closed column goes through the close
    /// gate; when the gate refuses, the issue stays where it is), `comment` the comment.
    /// Retried while the issue changes under it. `None` when another caller settled the attempt
    /// first or the issue is gone: nothing was written.
    async fn settle_attempt<F>(
        &self,
        next: &FixAttempt,
        comment: NewComment,
        actor: &Actor,
        mut plan: F,
    ) -> Result<Option<Issue>>
    where
        F: FnMut(&Issue) -> IssuePatch + Send,
    {
        for _ in 0..super::issues::UPDATE_RETRIES {
            let current = match self.get_issue(next.issue_id).await {
                Ok(i) => i,
                Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut patch = plan(&current);
            let moved_to = match self.checked_move(&current, &patch).await {
                Ok(m) => m,
                Err(e) if e.kind == ErrorKind::Forbidden => {
                    // A newer attempt that is not verified yet keeps the issue open.
                    tracing::info!(issue = %current.identifier, reason = %e, "fix settled, but the issue stays where it is");
                    patch.column_id = None;
                    None
                }
                Err(e) => return Err(e),
            };
            let moved = self.describe_move(&current, moved_to).await;
            let outbox = self.patch_outbox(&current, &patch, moved.as_ref()).await;
            let update = IssueUpdate {
                history: diff_history(&current, &patch, actor),
                patch,
                expected_version: Some(current.version),
                now: self.now(),
                outbox,
            };
            match self
                .inner
                .store
                .settle_fix_attempt(
                    next,
                    VerificationStatus::Monitoring,
                    update,
                    comment.clone(),
                    actor,
                )
                .await
            {
                Ok(Some((updated, _))) => {
                    self.announce_patch(&current, &updated, moved).await;
                    return Ok(Some(updated));
                }
                Ok(None) => return Ok(None),
                Err(e) if e.kind == ErrorKind::Conflict => continue,
                Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict("the issue kept changing; try again"))
    }

    /// Spec §6.6: comment, back to Backlog, priority up one, label "Fix Failed" — with the
    /// attempt's failure, in one transaction — then, when configured, a new error_fix run
    /// through the gates. Returns whether this call failed the attempt.
    async fn fail_fix(&self, attempt: &FixAttempt) -> Result<bool> {
        let actor = Actor::system("Fix Verification");
        let label = self
            .inner
            .store
            .ensure_label(
                self.inner.workspace.id,
                NewLabel::new(names::LABEL_FIX_FAILED, names::COLOR_FIX_FAILED),
            )
            .await?;
        let backlog = self.backlog().await?;
        let deployed = attempt
            .deployed_at
            .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_else(|| "unknown".into());
        let pr = match (&attempt.pr_url, &attempt.pr_title) {
            (Some(u), Some(t)) => format!("[#{} {t}]({u})", attempt.pr_number),
            (Some(u), None) => format!("[#{}]({u})", attempt.pr_number),
            _ => format!("#{}", attempt.pr_number),
        };
        let body = format!(
            "## Fix Verification Failed\n\n- **PR:** {pr}\n- **Deployed:** {deployed}\n- **Reason:** {}\n- **Events after deploy:** {}\n\nThe issue went back to Backlog with a higher priority.",
            attempt
                .failure_reason
                .as_deref()
                .unwrap_or("the error came back"),
            attempt.events_after_deploy.unwrap_or(0)
        );
        let comment = NewComment {
            author: Some("Dispatch".into()),
            body,
        };
        let Some(updated) = self
            .settle_attempt(attempt, comment, &actor, |cur| {
                let mut labels = cur.labels.clone();
                if !labels.contains(&label.id) {
                    labels.push(label.id);
                }
                IssuePatch {
                    column_id: (cur.column_id != backlog.id).then_some(backlog.id),
                    priority: Some(cur.priority.escalate()),
                    labels: Some(labels),
                    ..IssuePatch::default()
                }
            })
            .await?
        else {
            return Ok(false);
        };
        tracing::info!(issue = %updated.identifier, pr = attempt.pr_number, "fix failed verification");
        self.notify(Notification::FixFailed {
            issue: updated.clone(),
            attempt: attempt.clone(),
        })
        .await;
        if self.inner.config.respawn_on_fix_failure
            && !updated.spawn_status.is_some_and(|s| s.is_active())
        {
            self.spawn_for_alert(&updated, &actor).await?;
        }
        Ok(true)
    }

    /// Verifies monitoring attempts whose deadline passed and closes their issues.
    pub(crate) async fn verify_due_attempts(&self) -> Result<usize> {
        let due = self.inner.store.due_verifications(self.now(), 64).await?;
        let mut n = 0;
        for a in due {
            if self.verify_attempt(&a).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// A monitoring attempt whose deadline passed: failed when the stored links hold a
    /// sighting inside its window (an ingest that committed but died before its own check),
    /// else verified and its issue closed, in one transaction. Returns whether it verified.
    pub(crate) async fn verify_attempt(&self, a: &FixAttempt) -> Result<bool> {
        if verify::on_deadline(a, self.now()).is_none() {
            return Ok(false);
        }
        let issue = match self.get_issue(a.issue_id).await {
            Ok(i) => i,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let a = self.judge_stored_sightings(&issue, a.clone()).await?;
        let Some(verified) = verify::on_deadline(&a, self.now()) else {
            return Ok(false);
        };
        let actor = Actor::system("Fix Verification");
        let hours = self.inner.config.verify.window.num_hours();
        let comment = NewComment {
            author: Some("Dispatch".into()),
            body: format!(
                "## Fix Verified\n\nNo recurrence in the {hours} h after PR #{} was deployed. Closing.",
                a.pr_number
            ),
        };
        let done = self.done().await?;
        let closed: Vec<_> = self
            .columns()
            .await?
            .into_iter()
            .filter(|c| c.is_closed())
            .map(|c| c.id)
            .collect();
        let Some(issue) = self
            .settle_attempt(&verified, comment, &actor, |cur| IssuePatch {
                column_id: (!closed.contains(&cur.column_id)).then_some(done.id),
                ..IssuePatch::default()
            })
            .await?
        else {
            return Ok(false);
        };
        self.notify(Notification::FixVerified {
            issue,
            attempt: verified,
        })
        .await;
        Ok(true)
    }

    /// Fix attempts and close eligibility of an issue; settles a due verification first.
    pub async fn fix_status(&self, issue: impl Into<IssueRef>) -> Result<FixStatus> {
        let issue = self.get_issue(issue).await?;
        if let Some(latest) = self
            .inner
            .store
            .list_fix_attempts(issue.id)
            .await?
            .into_iter()
            .next()
        {
            self.verify_attempt(&latest).await?;
        }
        let issue = self.get_issue(issue.id).await?;
        let links = self.inner.store.links_for_issue(issue.id).await?;
        let attempts = self.inner.store.list_fix_attempts(issue.id).await?;
        let latest = attempts.first().cloned();
        let gate = verify::close_gate(!links.is_empty(), latest.as_ref(), self.now());
        Ok(FixStatus {
            issue_id: issue.id,
            identifier: issue.identifier,
            has_error_link: !links.is_empty(),
            links,
            latest_description: latest.as_ref().map(|a| verify::describe(a, self.now())),
            latest,
            attempts,
            can_close: gate.is_ok(),
            close_block_reason: gate.err().map(|b| b.reason),
        })
    }

    /// For callers that need an error when an issue may not close.
    pub async fn ensure_can_close(&self, issue: &Issue) -> Result<()> {
        match self.can_close(issue).await? {
            Ok(()) => Ok(()),
            Err(b) => Err(Error::forbidden(b.reason)),
        }
    }
}
