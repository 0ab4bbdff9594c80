//! Pull requests linked to issues (spec §4.3, §6.1): links follow the PR's life (opened,
//! edited, closed, merged); people can remove a wrong link.

use super::Dispatch;
use crate::Timestamp;
use crate::error::{ErrorKind, Result};
use crate::ids::{IssueId, IssueRef, PrLinkId};
use crate::issue::Actor;
use crate::ports::Event;
use crate::pr::{PrLink, PrLinkUpsert, PrStatus};
use serde::{Deserialize, Serialize};

/// What a webhook tells about a pull request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PullRequestInfo {
    pub number: i64,
    pub title: Option<String>,
    pub url: Option<String>,
    pub head_branch: Option<String>,
    pub base_branch: Option<String>,
    pub author: Option<String>,
    pub merged_at: Option<Timestamp>,
}

/// One link written by [`Dispatch::sync_pr_links`].
#[derive(Debug, Clone, PartialEq)]
pub struct PrLinkReport {
    pub issue_id: IssueId,
    pub identifier: String,
    pub link: PrLink,
    pub created: bool,
    pub status_changed: bool,
}

/// Confidence of a link made because the PR names the issue's identifier.
pub const NAMED_MATCH_CONFIDENCE: f64 = 1.0;

impl Dispatch {
    /// The issue's linked PRs, newest first.
    pub async fn pr_links(&self, issue: impl Into<IssueRef>) -> Result<Vec<PrLink>> {
        let issue = self.get_issue(issue).await?;
        self.inner.store.list_pr_links(issue.id).await
    }

    /// Removes a link of the issue (history `pr_unlinked`); `false` when it has no such link.
    pub async fn unlink_pr(
        &self,
        issue: impl Into<IssueRef>,
        id: PrLinkId,
        actor: &Actor,
    ) -> Result<bool> {
        let issue = self.get_issue(issue).await?;
        let removed = self
            .inner
            .store
            .delete_pr_link(issue.id, id, actor, self.now())
            .await?;
        if removed {
            self.publish(Event::IssueUpdated { issue_id: issue.id })
                .await;
        }
        Ok(removed)
    }

    /// Upserts the PR's link on every issue in `named` (unknown ones are skipped) and on every
    /// issue of this workspace already linked to that PR number. `status: None` keeps a link's
    /// status (a new link starts open); merged is final.
    pub async fn sync_pr_links(
        &self,
        pr: &PullRequestInfo,
        status: Option<PrStatus>,
        named: &[IssueRef],
        actor: &Actor,
    ) -> Result<Vec<PrLinkReport>> {
        crate::verify::validate_pr_number(pr.number)?;
        let mut targets: Vec<(IssueId, String, Option<f64>)> = Vec::new();
        for r in named {
            match self.get_issue(r.clone()).await {
                Ok(i) => {
                    if !targets.iter().any(|(id, _, _)| *id == i.id) {
                        targets.push((i.id, i.identifier, Some(NAMED_MATCH_CONFIDENCE)));
                    }
                }
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        for l in self.inner.store.pr_links_by_number(pr.number).await? {
            if targets.iter().any(|(id, _, _)| *id == l.issue_id) {
                continue;
            }
            match self.get_issue(l.issue_id).await {
                Ok(i) => targets.push((i.id, i.identifier, None)),
                // Another workspace's issue, or deleted meanwhile.
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let mut out = Vec::new();
        for (issue_id, identifier, confidence) in targets {
            let up = PrLinkUpsert {
                issue_id,
                pr_number: pr.number,
                status,
                title: pr.title.clone(),
                url: pr.url.clone(),
                head_branch: pr.head_branch.clone(),
                base_branch: pr.base_branch.clone(),
                author: pr.author.clone(),
                match_confidence: confidence,
                merged_at: pr.merged_at,
                run_id: None,
            };
            let o = self
                .inner
                .store
                .upsert_pr_link(&up, actor, self.now())
                .await?;
            if o.created || o.status_changed {
                self.publish(Event::IssueUpdated { issue_id }).await;
            }
            out.push(PrLinkReport {
                issue_id,
                identifier,
                link: o.link,
                created: o.created,
                status_changed: o.status_changed,
            });
        }
        Ok(out)
    }
}
