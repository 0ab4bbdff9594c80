//! `POST /api/issues/deduplicate`: duplicate detection over open issues (the original's request
//! and response fields), one call to `Dispatch::deduplicate`.

use crate::auth::Authenticated;
use crate::error::ApiResult;
use crate::extract::MaybeJson;
use crate::openapi::{ApiRouter, doc, post};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use dispatch_core::engine::{DedupReport, DedupRequest};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

pub fn router() -> ApiRouter {
    ApiRouter::new().route(
        "/api/issues/deduplicate",
        post(
            deduplicate,
            doc("Find duplicate open issues (dry run by default); with dry_run=false cancel them with cross-reference comments (the close gate applies)"),
        ),
    )
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Deduplicate")]
struct Body {
    /// Column names (or ids) to compare; default Backlog and Investigating.
    statuses: Option<Vec<String>>,
    /// Similarity above which issues are duplicates (0 < threshold ≤ 1).
    #[schemars(range(min = 0.001, max = 1.0))]
    threshold: Option<f64>,
    dry_run: Option<bool>,
    #[schemars(range(min = 1, max = 500))]
    max_clusters: Option<usize>,
    /// Let the configured LLM review each cluster (default true when one is configured).
    review: Option<bool>,
}

async fn deduplicate(
    State(s): State<AppState>,
    a: Authenticated,
    MaybeJson(b): MaybeJson<Body>,
) -> ApiResult<Json<Value>> {
    // No body: a dry run over the default columns.
    let b = b.unwrap_or_default();
    let d = DedupRequest::default();
    let req = DedupRequest {
        columns: b.statuses.filter(|s| !s.is_empty()).unwrap_or(d.columns),
        threshold: b.threshold,
        dry_run: b.dry_run.unwrap_or(true),
        max_clusters: b.max_clusters.unwrap_or(d.max_clusters),
        review: b.review.unwrap_or(true),
    };
    let report = s.dispatch.deduplicate(req, &a.actor()).await?;
    Ok(Json(render(&report)))
}

/// The original's fields (`proposed_actions`, `clusters_found`, `total_to_close`; on execution
/// `clustersReviewed`, `issuesClosed`, `commentsAdded`, `errors`), plus what was scanned.
fn render(r: &DedupReport) -> Value {
    let actions: Vec<Value> = r
        .clusters
        .iter()
        .map(|c| {
            json!({
                "canonical": { "id": c.canonical_id, "identifier": c.canonical, "title": c.canonical_title },
                "duplicates_to_close": c.duplicates.iter().map(|d| json!({
                    "id": d.id, "identifier": d.identifier, "title": d.title,
                    "similarity": (d.similarity * 1000.0).round() / 1000.0, "reason": d.reason,
                })).collect::<Vec<_>>(),
                "keep_separate": c.keep_separate,
                "average_similarity": (c.average_similarity * 1000.0).round() / 1000.0,
            })
        })
        .collect();
    let mut v = json!({
        "dry_run": r.dry_run,
        "issues_scanned": r.issues_scanned,
        "issues_with_embeddings": r.issues_with_embeddings,
        "threshold": r.threshold,
        "clusters_found": r.clusters.len(),
        "clusters_reviewed": r.clusters_reviewed,
        "proposed_actions": actions,
        "total_to_close": r.total_to_close(),
        "errors": r.errors,
    });
    if !r.dry_run {
        v["clustersReviewed"] = json!(r.clusters_reviewed);
        v["issuesClosed"] = json!(r.closed.len());
        v["closed"] = json!(r.closed);
        v["commentsAdded"] = json!(r.comments_added);
    }
    v
}
