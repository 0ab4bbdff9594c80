//! Pull requests linked to issues (`dispatch_issue_pr`, spec §2 and §6.1): one link per (issue,
//! PR number), upserted as GitHub reports the PR opened, edited, closed or merged.

use crate::Timestamp;
use crate::error::{Error, Result};
use crate::ids::{IssueId, PrLinkId, RunId};
use crate::issue::{Actor, HistoryAction, NewHistory};
use serde::{Deserialize, Serialize};
use serde_json::json;

text_enum!(
    /// The state of a linked pull request.
    PrStatus {
        Open = "open",
        Closed = "closed",
        Merged = "merged",
    }
);

/// A pull request linked to an issue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrLink {
    pub id: PrLinkId,
    pub issue_id: IssueId,
    pub pr_number: i64,
    pub status: PrStatus,
    pub title: Option<String>,
    pub url: Option<String>,
    pub head_branch: Option<String>,
    pub base_branch: Option<String>,
    pub author: Option<String>,
    /// 0..=1: 1.0 when the PR names the issue's identifier.
    pub match_confidence: Option<f64>,
    pub merged_at: Option<Timestamp>,
    /// The run that opened the PR, when known.
    pub run_id: Option<RunId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a webhook knows about a PR; upserted on (issue, PR number). `None` fields keep what the
/// link already has (`status: None` keeps the status, so an `edited` PR that was merged stays
/// merged; a new link starts `open`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PrLinkUpsert {
    pub issue_id: IssueId,
    pub pr_number: i64,
    pub status: Option<PrStatus>,
    pub title: Option<String>,
    pub url: Option<String>,
    pub head_branch: Option<String>,
    pub base_branch: Option<String>,
    pub author: Option<String>,
    pub match_confidence: Option<f64>,
    pub merged_at: Option<Timestamp>,
    pub run_id: Option<RunId>,
}

/// Longest title / URL / branch kept (the original's VARCHAR(500)).
const MAX_TEXT: usize = 500;

fn clip(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .map(|t| t.chars().take(MAX_TEXT).collect())
}

impl PrLinkUpsert {
    pub fn validate(&self) -> Result<()> {
        if self.pr_number <= 0 {
            return Err(Error::invalid(
                "pr_number",
                "a pull request number is a positive integer",
            ));
        }
        if let Some(c) = self.match_confidence
            && !(c.is_finite() && (0.0..=1.0).contains(&c))
        {
            return Err(Error::invalid(
                "match_confidence",
                "match confidence is a number from 0 to 1",
            ));
        }
        Ok(())
    }

    /// The link after this upsert: `existing` updated, or a new link.
    pub fn apply(&self, existing: Option<&PrLink>, now: Timestamp) -> PrLink {
        let mut l = existing.cloned().unwrap_or_else(|| PrLink {
            id: PrLinkId::new(),
            issue_id: self.issue_id,
            pr_number: self.pr_number,
            status: PrStatus::Open,
            title: None,
            url: None,
            head_branch: None,
            base_branch: None,
            author: None,
            match_confidence: None,
            merged_at: None,
            run_id: None,
            created_at: now,
            updated_at: now,
        });
        macro_rules! keep_or_set {
            ($f:ident) => {
                if let Some(v) = clip(&self.$f) {
                    l.$f = Some(v);
                }
            };
        }
        keep_or_set!(title);
        keep_or_set!(url);
        keep_or_set!(head_branch);
        keep_or_set!(base_branch);
        keep_or_set!(author);
        if let Some(s) = self.status {
            // Merged is final: a late "closed" or "edited" cannot undo it.
            if l.status != PrStatus::Merged {
                l.status = s;
            }
        }
        if let Some(c) = self.match_confidence {
            l.match_confidence = Some(c);
        }
        if self.merged_at.is_some() {
            l.merged_at = self.merged_at;
        }
        if self.run_id.is_some() {
            l.run_id = self.run_id;
        }
        l.updated_at = now;
        l
    }
}

/// The history an upsert writes with it: `pr_linked` for a new link, `pr_status_changed` when the
/// status moved; nothing for a plain refresh (title edits).
pub fn pr_link_history(old: Option<&PrLink>, new: &PrLink, actor: &Actor) -> Vec<NewHistory> {
    match old {
        None => vec![NewHistory::new(HistoryAction::PrLinked, actor).values(
            None,
            Some(json!({
                "pr_number": new.pr_number,
                "pr_title": new.title,
                "pr_url": new.url,
                "pr_status": new.status,
            })),
        )],
        Some(o) if o.status != new.status => {
            vec![
                NewHistory::new(HistoryAction::PrStatusChanged, actor).values(
                    Some(json!({ "pr_number": o.pr_number, "pr_status": o.status })),
                    Some(json!({ "pr_number": new.pr_number, "pr_status": new.status })),
                ),
            ]
        }
        Some(_) => Vec::new(),
    }
}

/// The history of a removed link (`pr_unlinked`).
pub fn pr_unlink_history(old: &PrLink, actor: &Actor) -> NewHistory {
    NewHistory::new(HistoryAction::PrUnlinked, actor).values(
        Some(json!({
            "pr_number": old.pr_number,
            "pr_title": old.title,
            "pr_url": old.url,
        })),
        None,
    )
}

/// Newest first: by creation time, then id (UUID v7, so also time-ordered).
pub fn sort_newest_first(links: &mut [PrLink]) {
    links.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn t(m: i64) -> Timestamp {
        Utc.with_ymd_and_hms(2026, 1, 15, 9, 0, 0).single().unwrap() + chrono::Duration::minutes(m)
    }

    #[test]
    fn upsert_keeps_what_it_does_not_know_and_merged_is_final() {
        let issue = IssueId::new();
        let up = PrLinkUpsert {
            issue_id: issue,
            pr_number: 7,
            title: Some("  Fix it ".into()),
            url: Some("https://github.invalid/pr/7".into()),
            ..Default::default()
        };
        let a = up.apply(None, t(0));
        assert_eq!(
            (a.status, a.title.as_deref(), a.created_at),
            (PrStatus::Open, Some("Fix it"), t(0))
        );
        let merged = PrLinkUpsert {
            status: Some(PrStatus::Merged),
            merged_at: Some(t(5)),
            title: None,
            ..up.clone()
        }
        .apply(Some(&a), t(5));
        assert_eq!(
            (merged.id, merged.status, merged.title.as_deref()),
            (a.id, PrStatus::Merged, Some("Fix it"))
        );
        let closed = PrLinkUpsert {
            status: Some(PrStatus::Closed),
            ..up.clone()
        }
        .apply(Some(&merged), t(6));
        assert_eq!(closed.status, PrStatus::Merged);
        let h = pr_link_history(Some(&a), &merged, &Actor::webhook("GitHub"));
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].action, HistoryAction::PrStatusChanged);
        assert!(pr_link_history(Some(&merged), &closed, &Actor::webhook("GitHub")).is_empty());
        assert!(
            PrLinkUpsert {
                pr_number: 0,
                ..up.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            PrLinkUpsert {
                match_confidence: Some(1.5),
                ..up
            }
            .validate()
            .is_err()
        );
    }
}
