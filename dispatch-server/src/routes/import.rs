//! `POST /api/import`: a Linear CSV export into the workspace (the original took it as a
//! multipart upload; here the CSV text travels in a JSON body), one call to
//! `Dispatch::import_linear`. Bodies are limited by `MAX_BODY_BYTES` (1 MiB): larger exports go
//! through `dispatch import linear FILE`.

use crate::auth::Authenticated;
use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::openapi::{ApiRouter, doc, post};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

pub fn router() -> ApiRouter {
    ApiRouter::new().route(
        "/api/import",
        post(
            import,
            doc("Import a Linear CSV export (issues, statuses, priorities, labels, assignees, dates; Linear ids kept in the import map and the description). Importing the same rows again creates nothing; each row is decided on its own: the report counts, per kind of row, what was created, imported before (skipped) and left out (not_imported, each with its reason in problems); dry_run reports the same and writes nothing")
                .tag("import"),
        ),
    )
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Import")]
struct Body {
    /// `linear` (the only source over HTTP; the original Dispatch is imported with
    /// `dispatch import original`).
    source: Option<String>,
    /// The CSV export, as text (header line first).
    csv: String,
    /// Report what would be imported without writing (default false).
    dry_run: Option<bool>,
}

/// The import report: `source`, `dry_run`, `rows`, `issues_created`, `issues_skipped` (imported
/// before), `created`, `skipped` (imported before) and `not_imported` (left out, the reasons in
/// `problems`) per kind of row, `labels_created`, `assignees`, `by_column`, `mapping` (per row:
/// line, external_id, identifier, source_status → column, source_priority → priority, action)
/// and `problems` (per row: line, external_id, kind, message, skipped).
async fn import(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiJson(b): ApiJson<Body>,
) -> ApiResult<Json<Value>> {
    if let Some(src) = b.source.as_deref()
        && !src.eq_ignore_ascii_case("linear")
    {
        return Err(dispatch_core::Error::invalid(
            "source",
            format!("unknown source {src:?}: only linear is imported over HTTP"),
        )
        .into());
    }
    let report = s
        .dispatch
        .import_linear(b.csv.as_bytes(), b.dry_run.unwrap_or(false))
        .await?;
    Ok(Json(serde_json::to_value(&report).map_err(|e| {
        dispatch_core::Error::internal(format!("cannot render the import report: {e}"))
    })?))
}

#[cfg(test)]
mod tests {
    use crate::test_support::{app, call};
    use axum::http::StatusCode;
    use dispatch_core::issue::IssueFilter;
    use dispatch_core::memory::MemoryStore;
    use serde_json::json;
    use std::sync::Arc;

    const SAMPLE: &str =
        include_str!("../../../dispatch-core/src/import/fixtures/linear_export.csv");

    #[tokio::test]
    async fn linear_export_over_http_dry_run_real_and_again() {
        let (app, dispatch) = app(Arc::new(MemoryStore::new())).await;
        let (st, _) = call(
            &app,
            "POST",
            "/api/import",
            Some(json!({ "csv": SAMPLE })),
            false,
        )
        .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);

        let (st, dry) = call(
            &app,
            "POST",
            "/api/import",
            Some(json!({ "source": "linear", "csv": SAMPLE, "dry_run": true })),
            true,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{dry}");
        assert_eq!(dry["dry_run"], true);
        assert_eq!(dry["issues_created"], 7);
        assert_eq!(dry["mapping"][0]["external_id"], "ENG-101");
        assert_eq!(dry["mapping"][0]["identifier"], "DISPATCH-1");
        assert_eq!(dry["mapping"][0]["column"], "In Progress");
        assert_eq!(dry["mapping"][0]["priority"], "P1");
        assert!(
            dispatch
                .list_issues(&IssueFilter::default())
                .await
                .unwrap()
                .is_empty()
        );

        let (st, real) = call(
            &app,
            "POST",
            "/api/import",
            Some(json!({ "csv": SAMPLE })),
            true,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{real}");
        assert_eq!(real["issues_created"], 7);
        let (st, issue) = call(&app, "GET", "/api/issues/DISPATCH-4", None, true).await;
        assert_eq!(st, StatusCode::OK, "{issue}");
        assert_eq!(issue["title"], "Upgrade the PostgreSQL driver");

        let (_, again) = call(
            &app,
            "POST",
            "/api/import",
            Some(json!({ "csv": SAMPLE })),
            true,
        )
        .await;
        assert_eq!(
            (
                again["issues_created"].clone(),
                again["issues_skipped"].clone()
            ),
            (json!(0), json!(7))
        );
        assert_eq!(
            dispatch
                .list_issues(&IssueFilter::default())
                .await
                .unwrap()
                .len(),
            7
        );

        // A malformed row is reported with its line; the file's other rows go in.
        let bad = format!("{SAMPLE}ENG-120,Engineering,\"Broken row\n");
        let (st, r) = call(
            &app,
            "POST",
            "/api/import",
            Some(json!({ "csv": bad, "dry_run": true })),
            true,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{r}");
        assert_eq!(r["problems"][0]["line"], 13, "{r}");
        assert_eq!(r["problems"][0]["skipped"], true);
        assert_eq!(r["issues_skipped"], 7);

        let (st, e) = call(
            &app,
            "POST",
            "/api/import",
            Some(json!({ "csv": "Name,Status\nx,Todo\n" })),
            true,
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
        let (st, _) = call(
            &app,
            "POST",
            "/api/import",
            Some(json!({ "csv": SAMPLE, "source": "jira" })),
            true,
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
    }

    /// An original Dispatch portal link (`/portal/{slug}?token=…`) keeps working after the move:
    /// the imported customer has the original's token and watches its issues.
    #[tokio::test]
    async fn an_original_portal_link_works_after_the_move() {
        use dispatch_core::import::original::{OriginalData, OriginalIssue, plan};
        use dispatch_core::import::{ImportCustomer, ImportWatcher};
        let (app, dispatch) = app(Arc::new(MemoryStore::new())).await;
        let token = "9e1f0c6f6b1e2d4a7c9b8e3f2a1d0c9b8a7f6e5d4c3b2a1908f7e6d5c4b3a291";
        let t = |s: &str| s.parse::<dispatch_core::Timestamp>().unwrap();
        let issue = |id: &str, ident: &str, status: &str| OriginalIssue {
            id: id.into(),
            identifier: ident.into(),
            title: format!("{ident} title"),
            description: Some("from the original".into()),
            status_id: status.into(),
            priority: "P2".into(),
            assignee_id: None,
            customer_id: Some("cu1".into()),
            reporter_id: None,
            created_at: t("2026-01-05T10:00:00Z"),
            updated_at: t("2026-01-06T10:00:00Z"),
        };
        let data = OriginalData {
            workspaces: vec![("DISPATCH".into(), 8)],
            statuses: vec![
                ("st-ip".into(), "In Progress".into()),
                ("st-done".into(), "Done".into()),
            ],
            customers: vec![ImportCustomer {
                external_id: "cu1".into(),
                name: "Acme Corp".into(),
                slug: "acme".into(),
                slack_channel_id: None,
                portal_token: token.into(),
                brand_color: Some("#f9db00".into()),
                logo_url: None,
                created_at: t("2026-01-03T09:00:00Z"),
                updated_at: t("2026-01-03T09:00:00Z"),
            }],
            issues: vec![
                issue("is4", "DISPATCH-4", "st-ip"),
                issue("is7", "DISPATCH-7", "st-done"),
            ],
            watchers: vec![ImportWatcher {
                issue: "is4".into(),
                customer: "cu1".into(),
                added_at: t("2026-01-05T10:01:00Z"),
            }],
            ..OriginalData::default()
        };
        let p = plan(&data, &dispatch.workspace().issue_prefix);
        dispatch
            .store()
            .apply_import(dispatch.workspace().id, &p, false, dispatch.now())
            .await
            .expect("import");

        let (st, board) = call(
            &app,
            "GET",
            &format!("/api/portal/acme?token={token}"),
            None,
            false,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{board}");
        assert_eq!(board["customer"]["name"], "Acme Corp");
        let cards: Vec<&str> = board["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["issues"].as_array().unwrap())
            .map(|i| i["identifier"].as_str().unwrap())
            .collect();
        assert_eq!(cards, ["DISPATCH-4"], "{board}");
        let (st, one) = call(
            &app,
            "GET",
            &format!("/api/portal/acme/issue/DISPATCH-4?token={token}"),
            None,
            false,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{one}");
        assert_eq!(one["issue"]["title"], "DISPATCH-4 title");
        let (st, _) = call(
            &app,
            "GET",
            &format!("/api/portal/acme/issue/DISPATCH-7?token={token}"),
            None,
            false,
        )
        .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "not watched");
        let (st, _) = call(&app, "GET", "/api/portal/acme?token=0000000000000000000000000000000000000000000000000000000000000000", None, false).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        // The counter is the original's: the next issue is DISPATCH-8.
        let (st, created) = call(
            &app,
            "POST",
            "/api/issues",
            Some(json!({ "title": "after the move" })),
            true,
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{created}");
        assert_eq!(created["identifier"], "DISPATCH-8");
    }
}
