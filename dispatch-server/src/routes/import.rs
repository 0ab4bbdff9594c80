//! `POST /api/import`: a Linear CSV export into the workspace (the original took it as a
//! multipart upload; here the CSV text travels in a JSON body), one call to
//! `Dispatch::import_linear`. Bodies are limited by `MAX_BODY_BYTES` (1 MiB): larger exports go
//! through `dispatch import linear FILE`.

use crate::auth::Authenticated;
use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::openapi::{ApiRouter, doc, post};
use crate::routes::schema;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use dispatch_core::import::ImportReport;
use dispatch_core::issue::Priority;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

/// The import report: what was (or, `dry_run`, would be) imported. Per kind of row (`issue`,
/// `customer`, `comment`, ...): `created`, `skipped` (imported before; nothing written) and
/// `not_imported` (left out; each such row has an entry in `problems` with the reason).
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "ImportReport")]
struct ReportDto {
    /// `linear` or `original`.
    source: String,
    dry_run: bool,
    /// Data rows read.
    rows: usize,
    issues_created: usize,
    /// Issues an earlier import already brought in.
    issues_skipped: usize,
    /// Rows created per kind of row.
    created: BTreeMap<String, usize>,
    /// Rows an earlier import already brought in, per kind.
    skipped: BTreeMap<String, usize>,
    /// Rows left out per kind (a key that exists here already, an issue or customer not
    /// imported, a row that cannot be read); the reasons are in `problems`.
    not_imported: BTreeMap<String, usize>,
    labels_created: Vec<String>,
    assignees: Vec<String>,
    /// Issues per column.
    by_column: BTreeMap<String, usize>,
    mapping: Vec<RowMappingDto>,
    problems: Vec<RowProblemDto>,
}

/// How one source row was (or would be) mapped.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "ImportRowMapping")]
struct RowMappingDto {
    line: Option<u64>,
    external_id: String,
    /// Our identifier: the new one, or the one an earlier import gave it.
    identifier: Option<String>,
    source_status: String,
    column: String,
    source_priority: String,
    #[schemars(with = "schema::PriorityValue")]
    priority: Priority,
    /// `created` or `already_imported`.
    action: String,
}

/// A row the import left out (`skipped`: true) or imported with a warning.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "ImportRowProblem")]
struct RowProblemDto {
    /// The line of the source file (CSV sources).
    line: Option<u64>,
    /// The source's id of the row.
    external_id: Option<String>,
    /// The kind of row (`issue`, `customer`, `run`, ...).
    kind: Option<String>,
    message: String,
    /// `true` when the row was left out; `false` for a warning (the row is imported).
    skipped: bool,
}

impl From<ImportReport> for ReportDto {
    fn from(r: ImportReport) -> Self {
        ReportDto {
            source: r.source,
            dry_run: r.dry_run,
            rows: r.rows,
            issues_created: r.issues_created,
            issues_skipped: r.issues_skipped,
            created: r.created,
            skipped: r.skipped,
            not_imported: r.not_imported,
            labels_created: r.labels_created,
            assignees: r.assignees,
            by_column: r.by_column,
            mapping: r
                .mapping
                .into_iter()
                .map(|m| RowMappingDto {
                    line: m.line,
                    external_id: m.external_id,
                    identifier: m.identifier,
                    source_status: m.source_status,
                    column: m.column,
                    source_priority: m.source_priority,
                    priority: m.priority,
                    action: m.action,
                })
                .collect(),
            problems: r
                .problems
                .into_iter()
                .map(|p| RowProblemDto {
                    line: p.line,
                    external_id: p.external_id,
                    kind: p.kind,
                    message: p.message,
                    skipped: p.skipped,
                })
                .collect(),
        }
    }
}

async fn import(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiJson(b): ApiJson<Body>,
) -> ApiResult<Json<ReportDto>> {
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
    Ok(Json(report.into()))
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
            plan_status: None,
            plan_content: None,
            plan_feedback: None,
            plan_approved_at: None,
            plan_approved_by: None,
            blocked_reason: None,
            agent_status: None,
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
