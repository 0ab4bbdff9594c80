//! Reads an original Dispatch database (PostgreSQL, the schema of its migrations 001-007) into
//! [`OriginalData`], for `dispatch import original`: every table the import brings over (the
//! ones it leaves are listed in [`dispatch_core::import::original::NOT_IMPORTED`]). Read-only: one repeatable-read transaction,
//! so the rows are one consistent snapshot. What the rows become is decided in the core
//! ([`dispatch_core::import::original::plan`]).

use crate::sql::db;
use dispatch_core::Timestamp;
use dispatch_core::error::Result;
use dispatch_core::import::original::{
    OriginalActivity, OriginalAgent, OriginalComment, OriginalCustomerUser, OriginalData,
    OriginalFix, OriginalHistory, OriginalIssue, OriginalLink, OriginalPr, OriginalRun,
    OriginalSession, OriginalWebhook,
};
use dispatch_core::import::{ImportCustomer, ImportWatcher};
use sqlx::Row;
use sqlx::postgres::PgPoolOptions;
use sqlx::types::Json;

fn get<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
    row: &'r sqlx::postgres::PgRow,
    table: &'static str,
    col: &'static str,
) -> Result<T> {
    row.try_get(col)
        .map_err(|e| crate::sql::decode_err(table, col, e))
}

/// Reads every table the import brings over from the database at `url`.
pub async fn read_original(url: &str) -> Result<OriginalData> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .map_err(db("connect to the original database"))?;
    let mut tx = pool.begin().await.map_err(db("begin"))?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(db("set transaction"))?;
    let mut d = OriginalData::default();
    macro_rules! rows {
        ($sql:expr) => {
            sqlx::query($sql)
                .fetch_all(&mut *tx)
                .await
                .map_err(db("read the original database"))?
        };
    }
    for r in
        rows!("SELECT issue_prefix, next_issue_number FROM dispatch_workspace ORDER BY created_at")
    {
        d.workspaces.push((
            get(&r, "dispatch_workspace", "issue_prefix")?,
            i64::from(get::<i32>(&r, "dispatch_workspace", "next_issue_number")?),
        ));
    }
    for r in rows!("SELECT id, name FROM dispatch_status ORDER BY position") {
        d.statuses.push((
            get(&r, "dispatch_status", "id")?,
            get(&r, "dispatch_status", "name")?,
        ));
    }
    for r in rows!("SELECT id, name FROM dispatch_label ORDER BY name") {
        d.labels.push((
            get(&r, "dispatch_label", "id")?,
            get(&r, "dispatch_label", "name")?,
        ));
    }
    for r in rows!(
        "SELECT id, name, description, webhook_url, webhook_secret, is_active, created_at, updated_at FROM dispatch_agent ORDER BY created_at, id"
    ) {
        let t = "dispatch_agent";
        d.agents.push(OriginalAgent {
            id: get(&r, t, "id")?,
            name: get(&r, t, "name")?,
            description: get(&r, t, "description")?,
            webhook_url: get(&r, t, "webhook_url")?,
            webhook_secret: get(&r, t, "webhook_secret")?,
            is_active: get(&r, t, "is_active")?,
            created_at: get(&r, t, "created_at")?,
            updated_at: get(&r, t, "updated_at")?,
        });
    }
    for r in rows!(
        "SELECT id, name, slug, slack_channel_id, portal_token, brand_color, logo_url, created_at, updated_at FROM dispatch_customer ORDER BY created_at, id"
    ) {
        let t = "dispatch_customer";
        d.customers.push(ImportCustomer {
            external_id: get(&r, t, "id")?,
            name: get(&r, t, "name")?,
            slug: get(&r, t, "slug")?,
            slack_channel_id: get(&r, t, "slack_channel_id")?,
            portal_token: get(&r, t, "portal_token")?,
            brand_color: get(&r, t, "brand_color")?,
            logo_url: get(&r, t, "logo_url")?,
            created_at: get(&r, t, "created_at")?,
            updated_at: get(&r, t, "updated_at")?,
        });
    }
    for r in rows!(
        "SELECT id, customer_id, slack_user_id, slack_display_name, slack_avatar_url, email, created_at, updated_at FROM dispatch_customer_user ORDER BY created_at, id"
    ) {
        let t = "dispatch_customer_user";
        d.customer_users.push(OriginalCustomerUser {
            id: get(&r, t, "id")?,
            customer_id: get(&r, t, "customer_id")?,
            slack_user_id: get(&r, t, "slack_user_id")?,
            slack_display_name: get(&r, t, "slack_display_name")?,
            slack_avatar_url: get(&r, t, "slack_avatar_url")?,
            email: get(&r, t, "email")?,
            created_at: get(&r, t, "created_at")?,
            updated_at: get(&r, t, "updated_at")?,
        });
    }
    for r in rows!(
        "SELECT id, identifier, title, description, status_id, priority, assignee_id, customer_id, reporter_id, plan_status, plan_content, plan_feedback, plan_approved_at, plan_approved_by, blocked_reason, agent_status, created_at, updated_at FROM dispatch_issue ORDER BY issue_number, created_at"
    ) {
        let t = "dispatch_issue";
        d.issues.push(OriginalIssue {
            id: get(&r, t, "id")?,
            identifier: get(&r, t, "identifier")?,
            title: get(&r, t, "title")?,
            description: get(&r, t, "description")?,
            status_id: get(&r, t, "status_id")?,
            priority: get(&r, t, "priority")?,
            assignee_id: get(&r, t, "assignee_id")?,
            customer_id: get(&r, t, "customer_id")?,
            reporter_id: get(&r, t, "reporter_id")?,
            plan_status: get(&r, t, "plan_status")?,
            plan_content: get(&r, t, "plan_content")?,
            plan_feedback: get(&r, t, "plan_feedback")?,
            plan_approved_at: get(&r, t, "plan_approved_at")?,
            plan_approved_by: get(&r, t, "plan_approved_by")?,
            blocked_reason: get(&r, t, "blocked_reason")?,
            agent_status: get(&r, t, "agent_status")?,
            created_at: get(&r, t, "created_at")?,
            updated_at: get(&r, t, "updated_at")?,
        });
    }
    for r in
        rows!("SELECT issue_id, label_id FROM dispatch_issue_label ORDER BY issue_id, label_id")
    {
        d.issue_labels.push((
            get(&r, "dispatch_issue_label", "issue_id")?,
            get(&r, "dispatch_issue_label", "label_id")?,
        ));
    }
    for r in rows!(
        "SELECT issue_id, customer_id, added_at FROM dispatch_issue_watcher ORDER BY added_at"
    ) {
        let t = "dispatch_issue_watcher";
        d.watchers.push(ImportWatcher {
            issue: get(&r, t, "issue_id")?,
            customer: get(&r, t, "customer_id")?,
            added_at: get(&r, t, "added_at")?,
        });
    }
    for r in rows!(
        "SELECT id, issue_id, author_id, body, created_at FROM dispatch_comment ORDER BY created_at, id"
    ) {
        let t = "dispatch_comment";
        d.comments.push(OriginalComment {
            id: get(&r, t, "id")?,
            issue_id: get(&r, t, "issue_id")?,
            author_id: get(&r, t, "author_id")?,
            body: get(&r, t, "body")?,
            created_at: get(&r, t, "created_at")?,
        });
    }
    for r in rows!(
        "SELECT id::text AS id, issue_id, action::text AS action, old_value, new_value, actor_type::text AS actor_type, actor_name, COALESCE(created_at, now()) AS created_at FROM dispatch_issue_history ORDER BY created_at, id"
    ) {
        let t = "dispatch_issue_history";
        d.history.push(OriginalHistory {
            id: get(&r, t, "id")?,
            issue_id: get(&r, t, "issue_id")?,
            action: get(&r, t, "action")?,
            old_value: get::<Option<Json<serde_json::Value>>>(&r, t, "old_value")?.map(|j| j.0),
            new_value: get::<Option<Json<serde_json::Value>>>(&r, t, "new_value")?.map(|j| j.0),
            actor_type: get(&r, t, "actor_type")?,
            actor_name: get(&r, t, "actor_name")?,
            created_at: get::<Timestamp>(&r, t, "created_at")?,
        });
    }
    for r in rows!(
        "SELECT id, issue_id, source, external_id, external_url, metadata, cooldown_until, event_count, last_seen_at, created_at FROM dispatch_external_issue ORDER BY created_at, id"
    ) {
        let t = "dispatch_external_issue";
        d.links.push(OriginalLink {
            id: get(&r, t, "id")?,
            issue_id: get(&r, t, "issue_id")?,
            source: get(&r, t, "source")?,
            external_id: get(&r, t, "external_id")?,
            external_url: get(&r, t, "external_url")?,
            metadata: get::<Option<Json<serde_json::Value>>>(&r, t, "metadata")?.map(|j| j.0),
            cooldown_until: get(&r, t, "cooldown_until")?,
            event_count: get::<Option<i32>>(&r, t, "event_count")?.map(i64::from),
            last_seen_at: get(&r, t, "last_seen_at")?,
            created_at: get(&r, t, "created_at")?,
        });
    }
    for r in rows!(
        "SELECT id, issue_id, pr_number, pr_url, pr_title, merged_at, merged_sha, deployed_sha, deployed_at, verification_status, verification_deadline, verification_checked_at, failure_reason, sentry_events_post_deploy, created_at, updated_at FROM dispatch_fix_attempt ORDER BY created_at, id"
    ) {
        let t = "dispatch_fix_attempt";
        d.fixes.push(OriginalFix {
            id: get(&r, t, "id")?,
            issue_id: get(&r, t, "issue_id")?,
            pr_number: i64::from(get::<i32>(&r, t, "pr_number")?),
            pr_url: get(&r, t, "pr_url")?,
            pr_title: get(&r, t, "pr_title")?,
            merged_at: get(&r, t, "merged_at")?,
            merged_sha: get(&r, t, "merged_sha")?,
            deployed_sha: get(&r, t, "deployed_sha")?,
            deployed_at: get(&r, t, "deployed_at")?,
            verification_status: get(&r, t, "verification_status")?,
            verification_deadline: get(&r, t, "verification_deadline")?,
            verification_checked_at: get(&r, t, "verification_checked_at")?,
            failure_reason: get(&r, t, "failure_reason")?,
            sentry_events_post_deploy: get::<Option<i32>>(&r, t, "sentry_events_post_deploy")?
                .map(i64::from),
            created_at: get(&r, t, "created_at")?,
            updated_at: get(&r, t, "updated_at")?,
        });
    }
    for r in rows!(
        "SELECT id, issue_id, github_run_id, github_run_url, workflow_type, status, prompt_text, transcript, report_content, outcome, outcome_summary, CAST(cost_usd AS DOUBLE PRECISION) AS cost_usd, num_turns, model, tokens_used, pr_number, files_changed, follow_ups, started_at, completed_at, created_at FROM dispatch_agent_runs ORDER BY created_at, id"
    ) {
        let t = "dispatch_agent_runs";
        d.runs.push(OriginalRun {
            id: get(&r, t, "id")?,
            issue_id: get(&r, t, "issue_id")?,
            github_run_id: get(&r, t, "github_run_id")?,
            github_run_url: get(&r, t, "github_run_url")?,
            workflow_type: get(&r, t, "workflow_type")?,
            status: get(&r, t, "status")?,
            prompt_text: get(&r, t, "prompt_text")?,
            transcript: get(&r, t, "transcript")?,
            report_content: get(&r, t, "report_content")?,
            outcome: get(&r, t, "outcome")?,
            outcome_summary: get(&r, t, "outcome_summary")?,
            cost_usd: get(&r, t, "cost_usd")?,
            num_turns: get::<Option<i32>>(&r, t, "num_turns")?.map(i64::from),
            model: get(&r, t, "model")?,
            tokens_used: get::<Option<i32>>(&r, t, "tokens_used")?.map(i64::from),
            pr_number: get::<Option<i32>>(&r, t, "pr_number")?.map(i64::from),
            files_changed: get::<Option<Json<serde_json::Value>>>(&r, t, "files_changed")?
                .map(|j| j.0),
            follow_ups: get::<Option<Json<serde_json::Value>>>(&r, t, "follow_ups")?.map(|j| j.0),
            started_at: get(&r, t, "started_at")?,
            completed_at: get(&r, t, "completed_at")?,
            created_at: get(&r, t, "created_at")?,
        });
    }
    for r in rows!(
        "SELECT id, issue_id, run_id, type, content, metadata, created_at FROM dispatch_agent_activity ORDER BY created_at, id"
    ) {
        let t = "dispatch_agent_activity";
        d.activities.push(OriginalActivity {
            id: get(&r, t, "id")?,
            issue_id: get(&r, t, "issue_id")?,
            run_id: get(&r, t, "run_id")?,
            kind: get(&r, t, "type")?,
            content: get(&r, t, "content")?,
            metadata: get::<Option<Json<serde_json::Value>>>(&r, t, "metadata")?.map(|j| j.0),
            created_at: get(&r, t, "created_at")?,
        });
    }
    for r in rows!(
        "SELECT id::text AS id, issue_id, run_id, pr_number, pr_url, pr_title, pr_status::text AS pr_status, branch_name, author, base_branch, head_branch, match_confidence, merged_at, created_at, updated_at FROM dispatch_issue_pr ORDER BY created_at, id"
    ) {
        let t = "dispatch_issue_pr";
        d.prs.push(OriginalPr {
            id: get(&r, t, "id")?,
            issue_id: get(&r, t, "issue_id")?,
            run_id: get(&r, t, "run_id")?,
            pr_number: i64::from(get::<i32>(&r, t, "pr_number")?),
            pr_url: get(&r, t, "pr_url")?,
            pr_title: get(&r, t, "pr_title")?,
            pr_status: get(&r, t, "pr_status")?,
            branch_name: get(&r, t, "branch_name")?,
            author: get(&r, t, "author")?,
            base_branch: get(&r, t, "base_branch")?,
            head_branch: get(&r, t, "head_branch")?,
            match_confidence: get(&r, t, "match_confidence")?,
            merged_at: get(&r, t, "merged_at")?,
            created_at: get(&r, t, "created_at")?,
            updated_at: get(&r, t, "updated_at")?,
        });
    }
    for r in rows!("SELECT id, url, events, enabled FROM dispatch_webhook ORDER BY created_at, id")
    {
        let t = "dispatch_webhook";
        d.webhooks.push(OriginalWebhook {
            id: get(&r, t, "id")?,
            url: get(&r, t, "url")?,
            events: get(&r, t, "events")?,
            enabled: get(&r, t, "enabled")?,
        });
    }
    for r in rows!(
        "SELECT id, messages, created_at, updated_at FROM dispatch_orchestrator_session ORDER BY created_at, id"
    ) {
        let t = "dispatch_orchestrator_session";
        d.sessions.push(OriginalSession {
            id: get(&r, t, "id")?,
            messages: get::<Json<serde_json::Value>>(&r, t, "messages")?.0,
            created_at: get(&r, t, "created_at")?,
            updated_at: get(&r, t, "updated_at")?,
        });
    }
    tx.rollback().await.map_err(db("end"))?;
    pool.close().await;
    Ok(d)
}
