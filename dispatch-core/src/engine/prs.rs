//! Pull requests linked to issues (spec §4.3, §6.1): links follow the PR's life (opened,
//! edited, closed, merged); people can remove a wrong link.

use super::Dispatch;
use crate::Timestamp;
use crate::error::{ErrorKind, Result};
use crate::ids::{IssueId, IssueRef, PrLinkId};
use crate::issue::{Actor, find_identifiers};
use crate::ports::{Event, LlmRequest};
use crate::pr::{PrLink, PrLinkUpsert, PrStatus};
use crate::pr_match::{self, Candidate, LLM_CONFIRMED_CONFIDENCE, MatchMethod, PrWords};
use serde::{Deserialize, Serialize};

/// What a webhook tells about a pull request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PullRequestInfo {
    pub number: i64,
    pub title: Option<String>,
    /// Read for matching only; links do not keep it.
    pub body: Option<String>,
    pub url: Option<String>,
    pub head_branch: Option<String>,
    pub base_branch: Option<String>,
    pub author: Option<String>,
    pub merged_at: Option<Timestamp>,
}

impl PullRequestInfo {
    /// The link-side view of a merged PR.
    pub fn merged(pr: &crate::verify::MergedPr, author: Option<String>) -> Self {
        PullRequestInfo {
            number: pr.number,
            title: pr.title.clone(),
            body: pr.body.clone(),
            url: pr.url.clone(),
            head_branch: pr.head_branch.clone(),
            base_branch: pr.base_branch.clone(),
            author,
            merged_at: Some(pr.merged_at),
        }
    }
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

/// An issue a PR was matched to, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrMatch {
    pub issue_id: IssueId,
    pub identifier: String,
    /// 0..=1, recorded as the link's `match_confidence`.
    pub confidence: f64,
    pub method: MatchMethod,
}

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

    /// The issues a PR is matched to now (spec §6.1):
    ///
    /// 1. issues of this workspace whose identifiers the title, body or head branch name
    ///    (confidence 1.0); when it names any that exist, nothing else;
    /// 2. else, when the PR is already linked here, nothing new (its links were matched when it
    ///    opened, and a person may have removed a wrong one);
    /// 3. else open issues whose words match the PR's (the store's lexical search, scored by
    ///    [`pr_match::similarity`]) — with an embedder, also the issues nearest to the PR's
    ///    text, each scored by [`pr_match::with_embedding`] — over the candidate threshold: with an [`crate::ports::Llm`]
    ///    configured, those the model confirms (it can only pick among them; an error or an
    ///    unparsable answer is no match); without one, only the top candidate, when it is clearly
    ///    similar and clearly ahead of the runner-up.
    pub async fn match_pr(&self, pr: &PullRequestInfo) -> Result<Vec<PrMatch>> {
        let text = [
            pr.title.as_deref(),
            pr.body.as_deref(),
            pr.head_branch.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n");
        let mut out: Vec<PrMatch> = Vec::new();
        for ident in find_identifiers(&text, &self.inner.workspace.issue_prefix) {
            match self.get_issue(IssueRef::Identifier(ident)).await {
                Ok(i) => {
                    if !out.iter().any(|m| m.issue_id == i.id) {
                        out.push(PrMatch {
                            issue_id: i.id,
                            identifier: i.identifier,
                            confidence: NAMED_MATCH_CONFIDENCE,
                            method: MatchMethod::Identifier,
                        });
                    }
                }
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if !out.is_empty() {
            return Ok(out);
        }
        for l in self.inner.store.pr_links_by_number(pr.number).await? {
            match self.get_issue(l.issue_id).await {
                Ok(_) => return Ok(Vec::new()),
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.match_pr_by_similarity(pr).await
    }

    async fn match_pr_by_similarity(&self, pr: &PullRequestInfo) -> Result<Vec<PrMatch>> {
        let policy = &self.inner.config.pr_match;
        let words = PrWords::new(
            pr.title.as_deref(),
            pr.body.as_deref(),
            pr.head_branch.as_deref(),
        );
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let mut hits = self
            .inner
            .store
            .search_issues(
                self.inner.workspace.id,
                &words.query(),
                policy.search_limit.max(1),
            )
            .await?;
        let cosines = self.pr_embedding_candidates(pr, &mut hits).await?;
        let mut scored = Vec::new();
        let mut ids = Vec::new();
        for h in hits {
            if self.is_closed(&h.issue).await? {
                continue;
            }
            let description = h.issue.description.clone().unwrap_or_default();
            let score = pr_match::with_embedding(
                pr_match::similarity(&words, &h.issue.title, &description),
                cosines.get(&h.issue.id).copied(),
                policy,
            );
            ids.push((h.issue.identifier.clone(), h.issue.id));
            scored.push(Candidate {
                identifier: h.issue.identifier,
                title: h.issue.title,
                description,
                score,
            });
        }
        let ranked = pr_match::rank(scored, policy);
        if ranked.is_empty() {
            return Ok(Vec::new());
        }
        let id_of = |ident: &str| ids.iter().find(|(i, _)| i == ident).map(|(_, id)| *id);
        let Some(llm) = &self.inner.llm else {
            return Ok(pr_match::pick_without_llm(&ranked, policy)
                .and_then(|c| {
                    Some(PrMatch {
                        issue_id: id_of(&c.identifier)?,
                        identifier: c.identifier.clone(),
                        confidence: c.score.clamp(0.0, 1.0),
                        method: MatchMethod::Similarity,
                    })
                })
                .into_iter()
                .collect());
        };
        let request = LlmRequest::single_turn(
            pr_match::CONFIRM_SYSTEM,
            pr_match::confirm_prompt(
                pr.number,
                pr.title.as_deref(),
                pr.body.as_deref(),
                pr.head_branch.as_deref(),
                &ranked,
            ),
            policy.llm_max_tokens,
        );
        let answer = match llm.complete(request).await {
            Ok(r) => r.text(),
            Err(e) => {
                tracing::warn!(pr = pr.number, error = %e, "LLM confirmation of PR matches failed; no match");
                return Ok(Vec::new());
            }
        };
        let confirmed = pr_match::parse_confirmation(&answer, &ranked);
        tracing::info!(
            pr = pr.number,
            candidates = ranked.len(),
            confirmed = confirmed.len(),
            "PR matched by similarity and LLM"
        );
        Ok(confirmed
            .into_iter()
            .filter_map(|ident| {
                Some(PrMatch {
                    issue_id: id_of(&ident)?,
                    identifier: ident,
                    confidence: LLM_CONFIRMED_CONFIDENCE,
                    method: MatchMethod::Llm,
                })
            })
            .collect())
    }

    /// With an embedder: embeds the PR's title, body and branch (bounded by
    /// [`crate::embedding::SEMANTIC_TIMEOUT`]), adds the nearest issues to `hits` and
    /// returns the cosine similarity of every hit that has a vector. Empty without an embedder
    /// or when the embedding fails (matching stays lexical).
    async fn pr_embedding_candidates(
        &self,
        pr: &PullRequestInfo,
        hits: &mut Vec<crate::search::SearchHit>,
    ) -> Result<std::collections::HashMap<IssueId, f64>> {
        let mut cosines = std::collections::HashMap::new();
        let Some(e) = &self.inner.embedder else {
            return Ok(cosines);
        };
        let text: String = [
            pr.title.as_deref(),
            pr.body.as_deref(),
            pr.head_branch.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n")
        .chars()
        .take(crate::embedding::TEXT_MAX_CHARS)
        .collect();
        if text.trim().is_empty() {
            return Ok(cosines);
        }
        let v = match tokio::time::timeout(crate::embedding::SEMANTIC_TIMEOUT, e.embed(&[text]))
            .await
        {
            Ok(Ok(mut v)) if !v.is_empty() => v.swap_remove(0),
            Ok(Ok(_)) => return Ok(cosines),
            Ok(Err(err)) => {
                tracing::warn!(pr = pr.number, error = %err, "PR embedding failed; matching by words");
                return Ok(cosines);
            }
            Err(_) => {
                tracing::warn!(pr = pr.number, "PR embedding timed out; matching by words");
                return Ok(cosines);
            }
        };
        let limit = self.inner.config.pr_match.search_limit.max(1);
        let near = self
            .inner
            .store
            .nearest_issues(self.inner.workspace.id, e.model(), &v, None, limit)
            .await?;
        for h in near {
            cosines.insert(h.issue.id, h.score);
            if !hits.iter().any(|x| x.issue.id == h.issue.id) {
                hits.push(h);
            }
        }
        let unscored: Vec<IssueId> = hits
            .iter()
            .map(|h| h.issue.id)
            .filter(|id| !cosines.contains_key(id))
            .collect();
        for (id, w) in self.inner.store.embeddings_of(&unscored, e.model()).await? {
            cosines.insert(id, crate::search::cosine(&v, &w));
        }
        Ok(cosines)
    }

    /// Matches the PR ([`Self::match_pr`]) and upserts its links: on the matched issues (with
    /// their confidence) and on every issue of this workspace already linked to that PR number.
    pub async fn link_pr(
        &self,
        pr: &PullRequestInfo,
        status: Option<PrStatus>,
        actor: &Actor,
    ) -> Result<(Vec<PrMatch>, Vec<PrLinkReport>)> {
        crate::verify::validate_pr_number(pr.number)?;
        let matches = self.match_pr(pr).await?;
        let links = self.sync_pr_links(pr, status, &matches, actor).await?;
        Ok((matches, links))
    }

    /// Upserts the PR's link on every issue in `matches` and on every issue of this workspace
    /// already linked to that PR number. `status: None` keeps a link's status (a new link starts
    /// open); merged is final.
    pub async fn sync_pr_links(
        &self,
        pr: &PullRequestInfo,
        status: Option<PrStatus>,
        matches: &[PrMatch],
        actor: &Actor,
    ) -> Result<Vec<PrLinkReport>> {
        crate::verify::validate_pr_number(pr.number)?;
        let mut targets: Vec<(IssueId, String, Option<f64>)> = Vec::new();
        for m in matches {
            if !targets.iter().any(|(id, _, _)| *id == m.issue_id) {
                targets.push((m.issue_id, m.identifier.clone(), Some(m.confidence)));
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
