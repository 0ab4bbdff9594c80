//! The SQL store logic, written once and instantiated for SQLite and PostgreSQL.
//!
//! Every write is one transaction from `write_tx()` (SQLite: `BEGIN IMMEDIATE` on the single
//! writer connection; PostgreSQL: a pooled transaction with row locks `FOR UPDATE` and advisory
//! locks where a decision spans rows). Rows are read, changed in Rust with the core's pure
//! functions — the same ones the in-memory store uses — and written back, columns and JSON
//! document together.
//!
//! A store type using this macro provides: `reader()`, `write_tx()`, `ts()`, `ts_opt()`,
//! `get_ts()`, `get_ts_opt()`, `lock_key()`, `lock_keys()` and `lock_spawns()`; the macro arguments give the
//! row-locking clauses (empty for SQLite, whose writer lock already serialises writes).

macro_rules! impl_sql_store {
    ($S:ident, $DB:ty, for_update = $FU:literal, skip_locked = $SKIP:literal) => {
        mod sql_store_impl {
        #[allow(unused_imports)]
        use super::*;
        use dispatch_core::Timestamp;
        use dispatch_core::clock::utc_day_start;
        use dispatch_core::customer::{Customer, CustomerPatch, CustomerUser, HealthInputs, HealthIssue, NewCustomerUser};
        use dispatch_core::error::{Error, Result};
        use dispatch_core::ids::{
            ColumnId, CommentId, CustomerId, DeferredSpawnId, IssueId, IssueRef, LabelId, LinkId,
            RunId, WorkspaceId,
        };
        use dispatch_core::issue::{
            Actor, Column, ColumnCategory, Comment, HistoryAction, HistoryEntry, Issue,
            IssueFilter, Label, NewColumn, NewComment, NewHistory, NewIssue, NewLabel,
            Workspace, default_columns, default_labels, format_identifier,
        };
        use dispatch_core::ports::{
            CustomerStore, DeferredSpawn, DeliveryStore, ErrorLink, ErrorLinkStore, FixStore,
            IngestDraft, IngestOutcome, IssueStore, IssueUpdate, RunStore, RunUpdate,
            SpawnRequest, SpawnReservation, SpawnStats, WorkspaceStore,
        };
        use dispatch_core::run::{
            Activity, ActivityType, BudgetBucket, NewActivity, Run, RunPatch,
            TerminalChunk, RunUpdatePlan, ReservationInputs, plan_reservation, ChunkAppend, plan_chunk_append, replayed_chunk,
        };
        use dispatch_core::verify::{FixAttempt, VerificationStatus};
        use dispatch_core::agent::{Agent, AgentEvent, NewAgentEvent, name_key};
        use dispatch_core::ids::PrLinkId;
        use dispatch_core::ports::{AgentStore, PrLinkStore, PrLinkUpsertOutcome};
        use dispatch_core::pr::{PrLink, PrLinkUpsert, pr_link_history, pr_unlink_history};
        use crate::sql::{db, decode_err, to_i64, to_u64};
        use crate::sql::group_commit::{self, IngestQueue, Pending, share_error};
        use async_trait::async_trait;
        use chrono::Duration;
        use serde_json::json;
        use sqlx::types::Json;
        use std::collections::BTreeMap;

        type Tx = sqlx::Transaction<'static, $DB>;
        type DbRow = <$DB as sqlx::Database>::Row;

        fn bucket_str(b: BudgetBucket) -> &'static str {
            match b {
                BudgetBucket::Error => "error",
                BudgetBucket::Prd => "prd",
            }
        }

        fn category_str(c: ColumnCategory) -> &'static str {
            match c {
                ColumnCategory::Open => "open",
                ColumnCategory::Closed => "closed",
            }
        }

        /// The history row's `action` column: the action's serialised name.
        pub(super) fn history_action(e: &HistoryEntry) -> String {
            serde_json::to_value(e.action)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        }

        /// Answers the callers of one known key, whose counts one statement added together:
        /// each sees the count after its own event, as if the calls had run one by one.
        fn answer_in_order(group: Vec<Pending<(WorkspaceId, IngestDraft), IngestOutcome>>, known: IngestOutcome) {
            let total = known.link.event_count;
            let mut after = group.iter().fold(0u64, |n, p| n.saturating_add(p.item.1.event_count));
            for p in group {
                after = after.saturating_sub(p.item.1.event_count);
                let mut o = known.clone();
                o.link.event_count = total.saturating_sub(after);
                p.answer(Ok(o));
            }
        }

        fn issue_not_found(r: impl std::fmt::Display) -> Error {
            Error::not_found(format!("issue {r} not found"))
        }

        impl $S {
            fn row_column(row: &DbRow) -> Result<Column> {
                let category: String = col!(row, "dispatch_column", "category", String)?;
                Ok(Column {
                    id: ColumnId(col!(row, "dispatch_column", "id", uuid::Uuid)?),
                    workspace_id: WorkspaceId(col!(row, "dispatch_column", "workspace_id", uuid::Uuid)?),
                    name: col!(row, "dispatch_column", "name", String)?,
                    color: col!(row, "dispatch_column", "color", String)?,
                    position: col!(row, "dispatch_column", "position", i32)?,
                    category: match category.as_str() {
                        "closed" => ColumnCategory::Closed,
                        "open" => ColumnCategory::Open,
                        other => return Err(decode_err("dispatch_column", "category", format!("unknown category {other:?}"))),
                    },
                })
            }

            pub(super) fn row_label(row: &DbRow) -> Result<Label> {
                Ok(Label {
                    id: LabelId(col!(row, "dispatch_label", "id", uuid::Uuid)?),
                    workspace_id: WorkspaceId(col!(row, "dispatch_label", "workspace_id", uuid::Uuid)?),
                    name: col!(row, "dispatch_label", "name", String)?,
                    color: col!(row, "dispatch_label", "color", String)?,
                })
            }

            fn row_workspace(row: &DbRow) -> Result<Workspace> {
                Ok(Workspace {
                    id: WorkspaceId(col!(row, "dispatch_workspace", "id", uuid::Uuid)?),
                    name: col!(row, "dispatch_workspace", "name", String)?,
                    issue_prefix: col!(row, "dispatch_workspace", "issue_prefix", String)?,
                    next_issue_number: col!(row, "dispatch_workspace", "next_issue_number", i64)?,
                    created_at: Self::get_ts(row, "dispatch_workspace", "created_at")?,
                })
            }

            fn row_link(row: &DbRow) -> Result<ErrorLink> {
                Ok(ErrorLink {
                    id: LinkId(col!(row, "dispatch_error_link", "id", uuid::Uuid)?),
                    issue_id: IssueId(col!(row, "dispatch_error_link", "issue_id", uuid::Uuid)?),
                    source: col!(row, "dispatch_error_link", "source", String)?,
                    external_key: col!(row, "dispatch_error_link", "external_key", String)?,
                    fingerprint: col!(row, "dispatch_error_link", "fingerprint", String)?,
                    url: col!(row, "dispatch_error_link", "url", Option<String>)?,
                    metadata: col!(row, "dispatch_error_link", "metadata", Json<serde_json::Value>)?.0,
                    event_count: to_u64("dispatch_error_link", "event_count", col!(row, "dispatch_error_link", "event_count", i64)?)?,
                    first_seen_at: Self::get_ts(row, "dispatch_error_link", "first_seen_at")?,
                    last_seen_at: Self::get_ts(row, "dispatch_error_link", "last_seen_at")?,
                    cooldown_until: Self::get_ts_opt(row, "dispatch_error_link", "cooldown_until")?,
                })
            }

            fn row_comment(row: &DbRow) -> Result<Comment> {
                Ok(Comment {
                    id: CommentId(col!(row, "dispatch_comment", "id", uuid::Uuid)?),
                    issue_id: IssueId(col!(row, "dispatch_comment", "issue_id", uuid::Uuid)?),
                    author: col!(row, "dispatch_comment", "author", Option<String>)?,
                    body: col!(row, "dispatch_comment", "body", String)?,
                    created_at: Self::get_ts(row, "dispatch_comment", "created_at")?,
                })
            }

            fn row_activity(row: &DbRow) -> Result<Activity> {
                let kind: String = col!(row, "dispatch_activity", "kind", String)?;
                Ok(Activity {
                    id: dispatch_core::ids::ActivityId(col!(row, "dispatch_activity", "id", uuid::Uuid)?),
                    issue_id: IssueId(col!(row, "dispatch_activity", "issue_id", uuid::Uuid)?),
                    run_id: col!(row, "dispatch_activity", "run_id", Option<uuid::Uuid>)?.map(RunId),
                    kind: ActivityType::parse(&kind).map_err(|e| decode_err("dispatch_activity", "kind", e))?,
                    content: col!(row, "dispatch_activity", "content", String)?,
                    metadata: col!(row, "dispatch_activity", "metadata", Json<serde_json::Value>)?.0,
                    created_at: Self::get_ts(row, "dispatch_activity", "created_at")?,
                })
            }

            pub(super) async fn columns_tx(tx: &mut Tx, ws: WorkspaceId) -> Result<Vec<Column>> {
                let rows = sqlx::query("SELECT * FROM dispatch_column WHERE workspace_id = $1 ORDER BY position, name")
                    .bind(ws.0)
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(db("list columns"))?;
                rows.iter().map(Self::row_column).collect()
            }

            pub(super) async fn workspace_tx(tx: &mut Tx, ws: WorkspaceId) -> Result<Workspace> {
                let row = sqlx::query(concat!("SELECT * FROM dispatch_workspace WHERE id = $1", $FU))
                    .bind(ws.0)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db("read workspace"))?
                    .ok_or_else(|| Error::not_found(format!("workspace {ws} not found")))?;
                Self::row_workspace(&row)
            }

            async fn issue_tx(tx: &mut Tx, id: IssueId) -> Result<Issue> {
                let row = sqlx::query(concat!("SELECT doc FROM dispatch_issue WHERE id = $1", $FU))
                    .bind(id.0)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db("read issue"))?
                    .ok_or_else(|| issue_not_found(id))?;
                doc_col!(row, "dispatch_issue", Issue)
            }

            pub(super) async fn insert_issue_tx(tx: &mut Tx, i: &Issue) -> Result<()> {
                sqlx::query(
                    "INSERT INTO dispatch_issue (id, workspace_id, number, identifier, title, description, column_id, customer_id, spawn_active, version, created_at, updated_at, doc) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(i.id.0)
                .bind(i.workspace_id.0)
                .bind(i.number)
                .bind(&i.identifier)
                .bind(&i.title)
                .bind(&i.description)
                .bind(i.column_id.0)
                .bind(i.customer_id.map(|c| c.0))
                .bind(i.spawn_status.is_some_and(|s| s.is_active()))
                .bind(i.version)
                .bind(Self::ts(i.created_at))
                .bind(Self::ts(i.updated_at))
                .bind(Json(i))
                .execute(&mut **tx)
                .await
                .map_err(db("insert issue"))?;
                Ok(())
            }

            async fn save_issue_tx(tx: &mut Tx, i: &Issue) -> Result<()> {
                sqlx::query(
                    "UPDATE dispatch_issue SET title = $2, description = $3, column_id = $4, customer_id = $5, spawn_active = $6, version = $7, updated_at = $8, doc = $9 WHERE id = $1",
                )
                .bind(i.id.0)
                .bind(&i.title)
                .bind(&i.description)
                .bind(i.column_id.0)
                .bind(i.customer_id.map(|c| c.0))
                .bind(i.spawn_status.is_some_and(|s| s.is_active()))
                .bind(i.version)
                .bind(Self::ts(i.updated_at))
                .bind(Json(i))
                .execute(&mut **tx)
                .await
                .map_err(db("update issue"))?;
                Ok(())
            }

            pub(super) async fn history_tx(tx: &mut Tx, issue: IssueId, entries: Vec<NewHistory>, at: Timestamp) -> Result<()> {
                for e in entries {
                    let entry = e.into_entry(issue, at);
                    sqlx::query("INSERT INTO dispatch_history (id, issue_id, action, created_at, doc) VALUES ($1, $2, $3, $4, $5)")
                        .bind(entry.id.0)
                        .bind(issue.0)
                        .bind(history_action(&entry))
                        .bind(Self::ts(at))
                        .bind(Json(&entry))
                        .execute(&mut **tx)
                        .await
                        .map_err(db("insert history"))?;
                }
                Ok(())
            }

            /// The one write path for issues: version check, patch, version bump, history.
            async fn write_issue_tx(tx: &mut Tx, id: IssueId, u: IssueUpdate) -> Result<Issue> {
                let mut issue = Self::issue_tx(tx, id).await?;
                if let Some(v) = u.expected_version {
                    if v != issue.version {
                        return Err(Error::conflict(format!(
                            "issue {} changed meanwhile (version {} != {v})",
                            issue.identifier, issue.version
                        )));
                    }
                }
                u.patch.apply_to(&mut issue);
                issue.version += 1;
                issue.updated_at = u.now;
                Self::save_issue_tx(tx, &issue).await?;
                Self::history_tx(tx, id, u.history, u.now).await?;
                Ok(issue)
            }

            async fn new_issue_tx(tx: &mut Tx, ws: WorkspaceId, new: NewIssue, now: Timestamp) -> Result<Issue> {
                new.validate()?;
                let columns = Self::columns_tx(tx, ws).await?;
                let column_id = match new.column_id {
                    Some(c) => {
                        if !columns.iter().any(|x| x.id == c) {
                            return Err(Error::invalid("statusId", format!("column {c} is not in this workspace")));
                        }
                        c
                    }
                    None => columns
                        .iter()
                        .find(|c| c.category == ColumnCategory::Open)
                        .map(|c| c.id)
                        .ok_or_else(|| Error::conflict("the workspace has no open column"))?,
                };
                // The workspace row is the identifier counter: updating it locks it until commit,
                // which makes identifiers unique and gapless.
                let row = sqlx::query(
                    "UPDATE dispatch_workspace SET next_issue_number = next_issue_number + 1 WHERE id = $1 RETURNING next_issue_number, issue_prefix",
                )
                .bind(ws.0)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db("allocate identifier"))?
                .ok_or_else(|| Error::not_found(format!("workspace {ws} not found")))?;
                let number = col!(row, "dispatch_workspace", "next_issue_number", i64)? - 1;
                let prefix: String = col!(row, "dispatch_workspace", "issue_prefix", String)?;
                let issue = new.into_issue(ws, number, format_identifier(&prefix, number), column_id, now);
                Self::insert_issue_tx(tx, &issue).await?;
                Ok(issue)
            }

            /// Runs of the issue that are queued, dispatching or running.
            async fn active_runs_tx(tx: &mut Tx, issue: IssueId) -> Result<i64> {
                let row = sqlx::query(
                    "SELECT COUNT(*) AS n FROM dispatch_run WHERE issue_id = $1 AND status IN ('queued', 'dispatching', 'running')",
                )
                .bind(issue.0)
                .fetch_one(&mut **tx)
                .await
                .map_err(db("count issue runs"))?;
                col!(row, "dispatch_run", "n", i64)
            }

            async fn run_tx(tx: &mut Tx, id: RunId) -> Result<Run> {
                let row = sqlx::query(concat!("SELECT doc FROM dispatch_run WHERE id = $1", $FU))
                    .bind(id.0)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db("read run"))?
                    .ok_or_else(|| Error::not_found(format!("run {id} not found")))?;
                doc_col!(row, "dispatch_run", Run)
            }

            async fn insert_run_tx(tx: &mut Tx, r: &Run) -> Result<()> {
                sqlx::query(
                    "INSERT INTO dispatch_run (id, issue_id, kind, bucket, status, not_before, lease_until, external_id, cost_usd, num_turns, outcome, alive_at, created_at, doc) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                )
                .bind(r.id.0)
                .bind(r.issue_id.0)
                .bind(r.kind.as_str())
                .bind(bucket_str(r.kind.bucket()))
                .bind(r.status.as_str())
                .bind(Self::ts(r.not_before))
                .bind(Self::ts_opt(r.lease_until))
                .bind(&r.external_id)
                .bind(r.cost_usd)
                .bind(i64::from(r.num_turns))
                .bind(r.outcome.map(|o| o.as_str()))
                .bind(Self::ts(r.last_callback_at.or(r.started_at).unwrap_or(r.created_at)))
                .bind(Self::ts(r.created_at))
                .bind(Json(r))
                .execute(&mut **tx)
                .await
                .map_err(db("insert run"))?;
                Ok(())
            }

            async fn save_run_tx(tx: &mut Tx, r: &Run) -> Result<()> {
                sqlx::query(
                    "UPDATE dispatch_run SET status = $2, not_before = $3, lease_until = $4, external_id = $5, cost_usd = $6, num_turns = $7, outcome = $8, alive_at = $9, doc = $10 WHERE id = $1",
                )
                .bind(r.id.0)
                .bind(r.status.as_str())
                .bind(Self::ts(r.not_before))
                .bind(Self::ts_opt(r.lease_until))
                .bind(&r.external_id)
                .bind(r.cost_usd)
                .bind(i64::from(r.num_turns))
                .bind(r.outcome.map(|o| o.as_str()))
                .bind(Self::ts(r.last_callback_at.or(r.started_at).unwrap_or(r.created_at)))
                .bind(Json(r))
                .execute(&mut **tx)
                .await
                .map_err(db("update run"))?;
                Ok(())
            }

            /// (active error, active prd, spawned today error, spawned today prd, cost today).
            async fn counters_tx(tx: &mut Tx, now: Timestamp) -> Result<(u32, u32, u32, u32, f64)> {
                let (mut ae, mut ap, mut se, mut sp, mut cost) = (0u32, 0u32, 0u32, 0u32, 0f64);
                let rows = sqlx::query(
                    "SELECT bucket, COUNT(*) AS n FROM dispatch_run WHERE status IN ('queued', 'dispatching', 'running') GROUP BY bucket",
                )
                .fetch_all(&mut **tx)
                .await
                .map_err(db("count active runs"))?;
                for r in &rows {
                    let b: String = col!(r, "dispatch_run", "bucket", String)?;
                    let n = col!(r, "dispatch_run", "n", i64)?.max(0) as u32;
                    if b == "error" { ae = n } else { ap += n }
                }
                let rows = sqlx::query(
                    "SELECT bucket, COUNT(*) AS n, CAST(COALESCE(SUM(cost_usd), 0.0) AS DOUBLE PRECISION) AS cost FROM dispatch_run WHERE created_at >= $1 AND created_at < $2 GROUP BY bucket",
                )
                .bind(Self::ts(utc_day_start(now)))
                .bind(Self::ts(dispatch_core::clock::utc_next_day_start(now)))
                .fetch_all(&mut **tx)
                .await
                .map_err(db("count today's runs"))?;
                for r in &rows {
                    let b: String = col!(r, "dispatch_run", "bucket", String)?;
                    let n = col!(r, "dispatch_run", "n", i64)?.max(0) as u32;
                    if b == "error" { se += n } else { sp += n }
                    cost += col!(r, "dispatch_run", "cost", f64)?;
                }
                // Runs of deleted issues still count (run::plan_issue_deletion).
                let rows = sqlx::query("SELECT bucket, runs, cost_usd FROM dispatch_usage_carryover WHERE day = $1")
                    .bind(Self::ts(utc_day_start(now)))
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(db("read carried usage"))?;
                for r in &rows {
                    let b: String = col!(r, "dispatch_usage_carryover", "bucket", String)?;
                    let n = col!(r, "dispatch_usage_carryover", "runs", i64)?.max(0) as u32;
                    if b == "error" { se += n } else { sp += n }
                    cost += col!(r, "dispatch_usage_carryover", "cost_usd", f64)?;
                }
                Ok((ae, ap, se, sp, cost))
            }

            async fn recompute_totals_tx(tx: &mut Tx, issue_id: IssueId) -> Result<()> {
                let row = sqlx::query(
                    "SELECT CAST(COALESCE(SUM(cost_usd), 0.0) AS DOUBLE PRECISION) AS cost, CAST(COALESCE(SUM(num_turns), 0) AS BIGINT) AS turns FROM dispatch_run WHERE issue_id = $1",
                )
                .bind(issue_id.0)
                .fetch_one(&mut **tx)
                .await
                .map_err(db("sum run costs"))?;
                let cost: f64 = col!(row, "dispatch_run", "cost", f64)?;
                let turns: i64 = col!(row, "dispatch_run", "turns", i64)?;
                let mut issue = Self::issue_tx(tx, issue_id).await?;
                issue.cost_usd = cost;
                issue.num_turns = u32::try_from(turns.max(0)).unwrap_or(u32::MAX);
                Self::save_issue_tx(tx, &issue).await
            }

            async fn save_deferred_tx(tx: &mut Tx, d: &DeferredSpawn) -> Result<()> {
                sqlx::query(
                    "INSERT INTO dispatch_deferred_spawn (id, issue_id, kind, due_at, lease_until, doc) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (id) DO UPDATE SET due_at = excluded.due_at, lease_until = excluded.lease_until, doc = excluded.doc",
                )
                .bind(d.id.0)
                .bind(d.issue_id.0)
                .bind(d.kind.as_str())
                .bind(Self::ts(d.due_at))
                .bind(Self::ts_opt(d.lease_until))
                .bind(Json(d))
                .execute(&mut **tx)
                .await
                .map_err(db("save deferred spawn"))?;
                Ok(())
            }

            async fn delete_deferred_tx(tx: &mut Tx, id: DeferredSpawnId) -> Result<()> {
                sqlx::query("DELETE FROM dispatch_deferred_spawn WHERE id = $1")
                    .bind(id.0)
                    .execute(&mut **tx)
                    .await
                    .map_err(db("delete deferred spawn"))?;
                Ok(())
            }

            /// A comment on the locked `issue`, its search text and its history entry.
            async fn comment_tx(tx: &mut Tx, issue: &mut Issue, comment: NewComment, actor: &Actor, now: Timestamp) -> Result<Comment> {
                let id = issue.id;
                let c = Comment { id: CommentId::new(), issue_id: id, author: comment.author, body: comment.body, created_at: now };
                sqlx::query("INSERT INTO dispatch_comment (id, issue_id, author, body, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(c.id.0)
                    .bind(id.0)
                    .bind(&c.author)
                    .bind(&c.body)
                    .bind(Self::ts(now))
                    .execute(&mut **tx)
                    .await
                    .map_err(db("insert comment"))?;
                sqlx::query("UPDATE dispatch_issue SET comments_text = comments_text || ' ' || $2 WHERE id = $1")
                    .bind(id.0)
                    .bind(&c.body)
                    .execute(&mut **tx)
                    .await
                    .map_err(db("index comment"))?;
                issue.updated_at = now;
                Self::save_issue_tx(tx, issue).await?;
                let h = NewHistory::new(HistoryAction::CommentAdded, actor).values(None, Some(json!({"comment_id": c.id})));
                Self::history_tx(tx, id, vec![h], now).await?;
                Ok(c)
            }

            async fn save_fix_tx(tx: &mut Tx, a: &FixAttempt) -> Result<()> {
                sqlx::query("UPDATE dispatch_fix_attempt SET status = $2, deadline = $3, doc = $4 WHERE id = $1")
                    .bind(a.id.0)
                    .bind(a.status.as_str())
                    .bind(Self::ts_opt(a.deadline))
                    .bind(Json(a))
                    .execute(&mut **tx)
                    .await
                    .map_err(db("update fix attempt"))?;
                Ok(())
            }

            async fn fix_tx(tx: &mut Tx, id: dispatch_core::ids::FixAttemptId) -> Result<Option<FixAttempt>> {
                let row = sqlx::query(concat!("SELECT doc FROM dispatch_fix_attempt WHERE id = $1", $FU))
                    .bind(id.0)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db("read fix attempt"))?;
                row.map(|r| doc_col!(r, "dispatch_fix_attempt", FixAttempt)).transpose()
            }

            async fn customer_tx(tx: &mut Tx, id: CustomerId) -> Result<Customer> {
                let row = sqlx::query(concat!("SELECT doc FROM dispatch_customer WHERE id = $1", $FU))
                    .bind(id.0)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db("read customer"))?
                    .ok_or_else(|| Error::not_found(format!("customer {id} not found")))?;
                doc_col!(row, "dispatch_customer", Customer)
            }

            pub(super) async fn save_customer_tx(tx: &mut Tx, c: &Customer, insert: bool) -> Result<()> {
                let sql = if insert {
                    "INSERT INTO dispatch_customer (id, workspace_id, name, slug, portal_token, slack_channel_id, created_at, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                } else {
                    "UPDATE dispatch_customer SET workspace_id = $2, name = $3, slug = $4, portal_token = $5, slack_channel_id = $6, created_at = $7, doc = $8 WHERE id = $1"
                };
                sqlx::query(sql)
                    .bind(c.id.0)
                    .bind(c.workspace_id.0)
                    .bind(&c.name)
                    .bind(&c.slug)
                    .bind(&c.portal_token)
                    .bind(&c.slack_channel_id)
                    .bind(Self::ts(c.created_at))
                    .bind(Json(c))
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| match &e {
                        sqlx::Error::Database(d) if d.is_unique_violation() => {
                            Error::conflict(format!("a customer with slug {:?}, that Slack channel or that token exists", c.slug))
                        }
                        _ => db("save customer")(e),
                    })?;
                Ok(())
            }

            pub(super) async fn commit(tx: Tx) -> Result<()> {
                tx.commit().await.map_err(db("commit"))
            }
        }

        #[async_trait]
        impl WorkspaceStore for $S {
            async fn ensure_workspace(&self, name: &str, prefix: &str, now: Timestamp) -> Result<Workspace> {
                if let Some(row) = sqlx::query("SELECT * FROM dispatch_workspace WHERE issue_prefix = $1")
                    .bind(prefix)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(db("read workspace"))?
                {
                    return Self::row_workspace(&row);
                }
                let mut tx = self.write_tx().await?;
                Self::lock_key(&mut tx, &format!("workspace:{prefix}")).await?;
                if let Some(row) = sqlx::query("SELECT * FROM dispatch_workspace WHERE issue_prefix = $1")
                    .bind(prefix)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db("read workspace"))?
                {
                    return Self::row_workspace(&row);
                }
                let ws = Workspace {
                    id: WorkspaceId::new(),
                    name: name.to_string(),
                    issue_prefix: prefix.to_string(),
                    next_issue_number: 1,
                    created_at: now,
                };
                sqlx::query("INSERT INTO dispatch_workspace (id, name, issue_prefix, next_issue_number, created_at) VALUES ($1, $2, $3, 1, $4)")
                    .bind(ws.id.0)
                    .bind(&ws.name)
                    .bind(&ws.issue_prefix)
                    .bind(Self::ts(now))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("insert workspace"))?;
                for (i, c) in default_columns().into_iter().enumerate() {
                    sqlx::query("INSERT INTO dispatch_column (id, workspace_id, name, color, position, category) VALUES ($1, $2, $3, $4, $5, $6)")
                        .bind(ColumnId::new().0)
                        .bind(ws.id.0)
                        .bind(&c.name)
                        .bind(&c.color)
                        .bind(c.position.unwrap_or(i as i32))
                        .bind(category_str(c.category))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("insert column"))?;
                }
                for l in default_labels() {
                    sqlx::query("INSERT INTO dispatch_label (id, workspace_id, name, name_key, color) VALUES ($1, $2, $3, $4, $5)")
                        .bind(LabelId::new().0)
                        .bind(ws.id.0)
                        .bind(&l.name)
                        .bind(l.name.to_lowercase())
                        .bind(&l.color)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("insert label"))?;
                }
                match tx.commit().await {
                    Ok(()) => Ok(ws),
                    // Another process created it first (SQLite has no advisory lock).
                    Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                        let row = sqlx::query("SELECT * FROM dispatch_workspace WHERE issue_prefix = $1")
                            .bind(prefix)
                            .fetch_one(self.reader())
                            .await
                            .map_err(db("read workspace"))?;
                        Self::row_workspace(&row)
                    }
                    Err(e) => Err(db("commit workspace")(e)),
                }
            }

            async fn get_workspace(&self, id: WorkspaceId) -> Result<Workspace> {
                let row = sqlx::query("SELECT * FROM dispatch_workspace WHERE id = $1")
                    .bind(id.0)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(db("read workspace"))?
                    .ok_or_else(|| Error::not_found(format!("workspace {id} not found")))?;
                Self::row_workspace(&row)
            }

            async fn list_columns(&self, ws: WorkspaceId) -> Result<Vec<Column>> {
                let rows = sqlx::query("SELECT * FROM dispatch_column WHERE workspace_id = $1 ORDER BY position, name")
                    .bind(ws.0)
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("list columns"))?;
                rows.iter().map(Self::row_column).collect()
            }

            async fn add_column(&self, ws: WorkspaceId, column: NewColumn) -> Result<Column> {
                column.validate()?;
                let mut tx = self.write_tx().await?;
                Self::workspace_tx(&mut tx, ws).await?;
                let existing = Self::columns_tx(&mut tx, ws).await?;
                if existing.iter().any(|c| c.is_named(&column.name)) {
                    return Err(Error::conflict(format!("a column named {:?} exists", column.name)));
                }
                let end = existing.len() as i32;
                let position = column.position.unwrap_or(end).clamp(0, end);
                sqlx::query("UPDATE dispatch_column SET position = position + 1 WHERE workspace_id = $1 AND position >= $2")
                    .bind(ws.0)
                    .bind(position)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("shift columns"))?;
                let col = Column {
                    id: ColumnId::new(),
                    workspace_id: ws,
                    name: column.name.trim().to_string(),
                    color: column.color,
                    position,
                    category: column.category,
                };
                sqlx::query("INSERT INTO dispatch_column (id, workspace_id, name, color, position, category) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(col.id.0)
                    .bind(ws.0)
                    .bind(&col.name)
                    .bind(&col.color)
                    .bind(col.position)
                    .bind(category_str(col.category))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("insert column"))?;
                Self::commit(tx).await?;
                Ok(col)
            }

            async fn reorder_columns(&self, ws: WorkspaceId, order: &[ColumnId]) -> Result<Vec<Column>> {
                let mut tx = self.write_tx().await?;
                Self::workspace_tx(&mut tx, ws).await?;
                let existing: std::collections::BTreeSet<ColumnId> =
                    Self::columns_tx(&mut tx, ws).await?.iter().map(|c| c.id).collect();
                let given: std::collections::BTreeSet<ColumnId> = order.iter().copied().collect();
                if given.len() != order.len() || given != existing {
                    return Err(Error::invalid("statusIds", "the order must name every column of the workspace exactly once"));
                }
                for (i, id) in order.iter().enumerate() {
                    sqlx::query("UPDATE dispatch_column SET position = $2 WHERE id = $1")
                        .bind(id.0)
                        .bind(i as i32)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("reorder columns"))?;
                }
                let cols = Self::columns_tx(&mut tx, ws).await?;
                Self::commit(tx).await?;
                Ok(cols)
            }

            async fn list_labels(&self, ws: WorkspaceId) -> Result<Vec<Label>> {
                let rows = sqlx::query("SELECT * FROM dispatch_label WHERE workspace_id = $1 ORDER BY name_key")
                    .bind(ws.0)
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("list labels"))?;
                rows.iter().map(Self::row_label).collect()
            }

            async fn create_label(&self, ws: WorkspaceId, label: NewLabel) -> Result<Label> {
                label.validate()?;
                let l = Label { id: LabelId::new(), workspace_id: ws, name: label.name.trim().to_string(), color: label.color };
                let mut tx = self.write_tx().await?;
                Self::workspace_tx(&mut tx, ws).await?;
                sqlx::query("INSERT INTO dispatch_label (id, workspace_id, name, name_key, color) VALUES ($1, $2, $3, $4, $5)")
                    .bind(l.id.0)
                    .bind(ws.0)
                    .bind(&l.name)
                    .bind(l.name.to_lowercase())
                    .bind(&l.color)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| match &e {
                        sqlx::Error::Database(d) if d.is_unique_violation() => {
                            Error::conflict(format!("a label named {:?} exists", l.name))
                        }
                        _ => db("insert label")(e),
                    })?;
                Self::commit(tx).await?;
                Ok(l)
            }

            async fn ensure_label(&self, ws: WorkspaceId, label: NewLabel) -> Result<Label> {
                label.validate()?;
                let key = label.name.trim().to_lowercase();
                let find = "SELECT * FROM dispatch_label WHERE workspace_id = $1 AND name_key = $2";
                if let Some(row) = sqlx::query(find).bind(ws.0).bind(&key).fetch_optional(self.reader()).await.map_err(db("read label"))? {
                    return Self::row_label(&row);
                }
                let mut tx = self.write_tx().await?;
                Self::workspace_tx(&mut tx, ws).await?;
                sqlx::query("INSERT INTO dispatch_label (id, workspace_id, name, name_key, color) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (workspace_id, name_key) DO NOTHING")
                    .bind(LabelId::new().0)
                    .bind(ws.0)
                    .bind(label.name.trim())
                    .bind(&key)
                    .bind(&label.color)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("insert label"))?;
                let row = sqlx::query(find).bind(ws.0).bind(&key).fetch_one(&mut *tx).await.map_err(db("read label"))?;
                let l = Self::row_label(&row)?;
                Self::commit(tx).await?;
                Ok(l)
            }
        }

        #[async_trait]
        impl IssueStore for $S {
            async fn create_issue(&self, ws: WorkspaceId, issue: NewIssue, actor: &Actor, now: Timestamp) -> Result<Issue> {
                issue.validate()?;
                let mut tx = self.write_tx().await?;
                let issue = Self::new_issue_tx(&mut tx, ws, issue, now).await?;
                let h = NewHistory::new(HistoryAction::Created, actor)
                    .values(None, Some(json!({"identifier": issue.identifier, "title": issue.title})));
                Self::history_tx(&mut tx, issue.id, vec![h], now).await?;
                Self::commit(tx).await?;
                Ok(issue)
            }

            async fn get_issue(&self, ws: WorkspaceId, issue: &IssueRef) -> Result<Issue> {
                let row = match issue {
                    IssueRef::Id(id) => sqlx::query("SELECT doc FROM dispatch_issue WHERE id = $1 AND workspace_id = $2")
                        .bind(id.0)
                        .bind(ws.0)
                        .fetch_optional(self.reader())
                        .await,
                    IssueRef::Identifier(ident) => sqlx::query("SELECT doc FROM dispatch_issue WHERE identifier = $1 AND workspace_id = $2")
                        .bind(ident)
                        .bind(ws.0)
                        .fetch_optional(self.reader())
                        .await,
                }
                .map_err(db("read issue"))?
                .ok_or_else(|| issue_not_found(issue))?;
                doc_col!(row, "dispatch_issue", Issue)
            }

            async fn list_issues(&self, ws: WorkspaceId, f: &IssueFilter) -> Result<Vec<Issue>> {
                // A filter that is set is written as a plain comparison (not `$n IS NULL OR …`),
                // so the planner walks the (workspace, column, number) index in order: one
                // column's newest page of a 10,000-issue board reads its page, not every row.
                const COLUMN: [&str; 2] = ["$2 IS NULL", "column_id = $2"];
                const BEFORE: [&str; 2] = ["$6 IS NULL", "number < $6"];
                let sql = format!(
                    "SELECT doc FROM dispatch_issue i WHERE workspace_id = $1 \
                     AND {} \
                     AND ($3 IS NULL OR customer_id = $3) \
                     AND ($4 IS NULL OR EXISTS (SELECT 1 FROM dispatch_watcher w WHERE w.issue_id = i.id AND w.customer_id = $4)) \
                     AND ($5 IS NULL OR spawn_active = $5) \
                     AND {} \
                     AND ($8 IS NULL OR lower(doc->>'assignee') = lower($8)) \
                     AND ($9 IS NULL OR CAST(doc->'labels' AS TEXT) LIKE '%\"' || $9 || '\"%') \
                     ORDER BY number DESC LIMIT $7",
                    COLUMN[usize::from(f.column_id.is_some())],
                    BEFORE[usize::from(f.before_number.is_some())],
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(ws.0)
                .bind(f.column_id.map(|c| c.0))
                .bind(f.customer_id.map(|c| c.0))
                .bind(f.watched_by.map(|c| c.0))
                .bind(f.spawn_active)
                .bind(f.before_number)
                .bind(f.limit.map(|l| to_i64(l as u64)).unwrap_or(i64::MAX))
                .bind(f.assignee.as_deref())
                // In SQL, before the limit: a page holds `limit` labelled issues when there are.
                .bind(f.label_id.map(|l| l.to_string()))
                .fetch_all(self.reader())
                .await
                .map_err(db("list issues"))?;
                rows.into_iter()
                    .map(|r| doc_col!(r, "dispatch_issue", Issue))
                    .collect()
            }

            async fn update_issue(&self, id: IssueId, update: IssueUpdate) -> Result<Issue> {
                let mut tx = self.write_tx().await?;
                let issue = Self::write_issue_tx(&mut tx, id, update).await?;
                Self::commit(tx).await?;
                Ok(issue)
            }

            async fn delete_issue(&self, id: IssueId, now: Timestamp) -> Result<Issue> {
                let mut tx = self.write_tx().await?;
                // Locks the issue first, as a spawn reservation does.
                let issue = Self::issue_tx(&mut tx, id).await?;
                let rows = sqlx::query("SELECT doc FROM dispatch_run WHERE issue_id = $1")
                    .bind(id.0)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db("read runs"))?;
                let runs = rows.iter().map(|r| doc_col!(r, "dispatch_run", Run)).collect::<Result<Vec<_>>>()?;
                for u in dispatch_core::run::plan_issue_deletion(&runs, now)? {
                    sqlx::query("INSERT INTO dispatch_usage_carryover (day, bucket, runs, cost_usd) VALUES ($1, $2, $3, $4) ON CONFLICT (day, bucket) DO UPDATE SET runs = dispatch_usage_carryover.runs + excluded.runs, cost_usd = dispatch_usage_carryover.cost_usd + excluded.cost_usd")
                        .bind(Self::ts(u.day))
                        .bind(bucket_str(u.bucket))
                        .bind(i64::from(u.runs))
                        .bind(u.cost_usd)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("carry usage over"))?;
                }
                // Children go by ON DELETE CASCADE.
                sqlx::query("DELETE FROM dispatch_issue WHERE id = $1").bind(id.0).execute(&mut *tx).await.map_err(db("delete issue"))?;
                Self::commit(tx).await?;
                Ok(issue)
            }

            async fn add_comment(&self, id: IssueId, comment: NewComment, actor: &Actor, now: Timestamp) -> Result<Comment> {
                comment.validate()?;
                let mut tx = self.write_tx().await?;
                let mut issue = Self::issue_tx(&mut tx, id).await?;
                let c = Self::comment_tx(&mut tx, &mut issue, comment, actor, now).await?;
                Self::commit(tx).await?;
                Ok(c)
            }


            async fn list_comments(&self, id: IssueId) -> Result<Vec<Comment>> {
                self.require_issue(id).await?;
                let rows = sqlx::query("SELECT * FROM dispatch_comment WHERE issue_id = $1 ORDER BY created_at, id")
                    .bind(id.0)
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("list comments"))?;
                rows.iter().map(Self::row_comment).collect()
            }

            async fn list_history(&self, id: IssueId, limit: usize) -> Result<Vec<HistoryEntry>> {
                self.require_issue(id).await?;
                let rows = sqlx::query("SELECT doc FROM dispatch_history WHERE issue_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2")
                    .bind(id.0)
                    .bind(to_i64(limit as u64))
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("list history"))?;
                rows.into_iter().map(|r| doc_col!(r, "dispatch_history", HistoryEntry)).collect()
            }

            async fn add_watcher(&self, id: IssueId, customer: CustomerId, now: Timestamp) -> Result<bool> {
                let mut tx = self.write_tx().await?;
                Self::issue_tx(&mut tx, id).await?;
                Self::customer_tx(&mut tx, customer).await?;
                let r = sqlx::query("INSERT INTO dispatch_watcher (issue_id, customer_id, added_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(id.0)
                    .bind(customer.0)
                    .bind(Self::ts(now))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("add watcher"))?;
                Self::commit(tx).await?;
                Ok(r.rows_affected() == 1)
            }

            async fn remove_watcher(&self, id: IssueId, customer: CustomerId) -> Result<bool> {
                let mut tx = self.write_tx().await?;
                Self::issue_tx(&mut tx, id).await?;
                let r = sqlx::query("DELETE FROM dispatch_watcher WHERE issue_id = $1 AND customer_id = $2")
                    .bind(id.0)
                    .bind(customer.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("remove watcher"))?;
                Self::commit(tx).await?;
                Ok(r.rows_affected() == 1)
            }

            async fn list_watchers(&self, id: IssueId) -> Result<Vec<CustomerId>> {
                self.require_issue(id).await?;
                let rows = sqlx::query("SELECT customer_id FROM dispatch_watcher WHERE issue_id = $1 ORDER BY customer_id")
                    .bind(id.0)
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("list watchers"))?;
                rows.iter().map(|r| Ok(CustomerId(col!(r, "dispatch_watcher", "customer_id", uuid::Uuid)?))).collect()
            }
        }

        impl $S {
            async fn require_issue(&self, id: IssueId) -> Result<()> {
                let found = sqlx::query("SELECT 1 AS one FROM dispatch_issue WHERE id = $1")
                    .bind(id.0)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(db("read issue"))?;
                found.map(|_| ()).ok_or_else(|| issue_not_found(id))
            }

            /// Adds `count` events to a known key and reads the issue and its newest fix attempt,
            /// in one statement (autocommitted: it is its own transaction). The UPDATE's row lock
            /// makes it atomic against every other ingest of the key. `None`: the key is unseen.
            async fn add_to_known(&self, source: &str, key: &str, count: u64, seen_at: Timestamp) -> Result<Option<IngestOutcome>> {
                let row = Self::add_to_known_query(source, key, count, seen_at)
                    .fetch_optional(self.autocommit())
                    .await
                    .map_err(db("update error link"))?;
                row.as_ref().map(Self::known_outcome).transpose()
            }

            async fn add_to_known_tx(tx: &mut Tx, source: &str, key: &str, count: u64, seen_at: Timestamp) -> Result<Option<IngestOutcome>> {
                let row = Self::add_to_known_query(source, key, count, seen_at)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db("update error link"))?;
                row.as_ref().map(Self::known_outcome).transpose()
            }

            fn add_to_known_query<'q>(source: &'q str, key: &'q str, count: u64, seen_at: Timestamp)
                -> sqlx::query::Query<'q, $DB, <$DB as sqlx::Database>::Arguments>
            {
                // The count saturates at i64::MAX, as `to_i64` does; last_seen_at only moves forward.
                sqlx::query(
                    "UPDATE dispatch_error_link SET \
                     event_count = CASE WHEN event_count >= 9223372036854775807 - $3 THEN 9223372036854775807 ELSE event_count + $3 END, \
                     last_seen_at = CASE WHEN last_seen_at < $4 THEN $4 ELSE last_seen_at END \
                     WHERE source = $1 AND external_key = $2 \
                     RETURNING *, (SELECT i.doc FROM dispatch_issue i WHERE i.id = dispatch_error_link.issue_id) AS doc, \
                     (SELECT f.doc FROM dispatch_fix_attempt f WHERE f.issue_id = dispatch_error_link.issue_id \
                      ORDER BY f.created_at DESC, f.id DESC LIMIT 1) AS fix_doc",
                )
                .bind(source)
                .bind(key)
                .bind(to_i64(count))
                .bind(Self::ts(seen_at))
            }

            /// [`Self::add_to_known`] for several distinct keys in one statement (an UPDATE
            /// joined to the list of keys), keyed by (source, key); unseen keys are absent. The
            /// statement is SQLite's (`RETURNING *` names only the updated table there); it runs
            /// for stores with `KNOWN_KEYS_IN_ONE_STATEMENT` only.
            async fn add_to_known_many(&self, adds: &[(&str, &str, u64, Timestamp)]) -> Result<std::collections::HashMap<(String, String), IngestOutcome>> {
                if let [(source, key, count, seen)] = adds {
                    let one = self.add_to_known(source, key, *count, *seen).await?;
                    return Ok(one.into_iter().map(|o| ((o.link.source.clone(), o.link.external_key.clone()), o)).collect());
                }
                let mut q = sqlx::QueryBuilder::<$DB>::new("WITH v (source, external_key, n, seen) AS (");
                q.push_values(adds, |mut b, (source, key, count, seen)| {
                    b.push_bind(*source).push_bind(*key).push_bind(to_i64(*count)).push_bind(Self::ts(*seen));
                });
                q.push(
                    ") UPDATE dispatch_error_link SET \
                     event_count = CASE WHEN dispatch_error_link.event_count >= 9223372036854775807 - v.n THEN 9223372036854775807 ELSE dispatch_error_link.event_count + v.n END, \
                     last_seen_at = CASE WHEN dispatch_error_link.last_seen_at < v.seen THEN v.seen ELSE dispatch_error_link.last_seen_at END \
                     FROM v WHERE dispatch_error_link.source = v.source AND dispatch_error_link.external_key = v.external_key \
                     RETURNING *, (SELECT i.doc FROM dispatch_issue i WHERE i.id = dispatch_error_link.issue_id) AS doc, \
                     (SELECT f.doc FROM dispatch_fix_attempt f WHERE f.issue_id = dispatch_error_link.issue_id \
                      ORDER BY f.created_at DESC, f.id DESC LIMIT 1) AS fix_doc",
                );
                let rows = q.build().fetch_all(self.autocommit()).await.map_err(db("update error links"))?;
                rows.iter()
                    .map(|r| {
                        let o = Self::known_outcome(r)?;
                        Ok(((o.link.source.clone(), o.link.external_key.clone()), o))
                    })
                    .collect()
            }

            fn known_outcome(row: &DbRow) -> Result<IngestOutcome> {
                let link = Self::row_link(row)?;
                let issue = doc_col!(row, "dispatch_issue", Issue)?;
                let latest_fix = sqlx::Row::try_get::<Option<Json<FixAttempt>>, _>(row, "fix_doc")
                    .map_err(|e| decode_err("dispatch_fix_attempt", "doc", e))?
                    .map(|j| j.0);
                Ok(IngestOutcome { issue, link, created: false, latest_fix })
            }

            /// The group-commit worker: answers queued ingests batch by batch until the queue is
            /// empty. A guard hands the queue back if this task dies (panic, runtime shutdown),
            /// so the next call starts a new worker instead of waiting forever.
            async fn drain_ingest_queue(&self) {
                struct Restart<'a>(&'a IngestQueue, bool);
                impl Drop for Restart<'_> {
                    fn drop(&mut self) {
                        if self.1 {
                            self.0.worker_died();
                        }
                    }
                }
                let mut guard = Restart(self.ingest_queue(), true);
                loop {
                    let batch = self.ingest_queue().next_batch();
                    if batch.is_empty() {
                        guard.1 = false;
                        return;
                    }
                    let (calls, started) = (batch.len(), std::time::Instant::now());
                    self.ingest_batch(batch).await;
                    tracing::trace!(calls, micros = started.elapsed().as_micros() as u64, "ingest batch");
                }
            }

            /// One batch: each known key once (its callers' counts summed), then every unseen
            /// key in one creation transaction. When that transaction fails, each of its calls
            /// runs again on its own, so one bad row cannot fail its neighbours.
            async fn ingest_batch(&self, batch: Vec<Pending<(WorkspaceId, IngestDraft), IngestOutcome>>) {
                let mut unseen = Vec::new();
                {
                    let mut by_key: Vec<Vec<Pending<(WorkspaceId, IngestDraft), IngestOutcome>>> = Vec::new();
                    let mut index: std::collections::HashMap<(String, String), usize> = std::collections::HashMap::new();
                    for p in batch {
                        let k = (p.item.1.source.clone(), p.item.1.external_key.clone());
                        match index.get(&k) {
                            Some(&i) => by_key[i].push(p),
                            None => {
                                index.insert(k, by_key.len());
                                by_key.push(vec![p]);
                            }
                        }
                    }
                    let adds: Vec<(&str, &str, u64, Timestamp)> = by_key
                        .iter()
                        .map(|group| {
                            let d = &group[0].item.1;
                            let total = group.iter().fold(0u64, |n, p| n.saturating_add(p.item.1.event_count));
                            let seen = group.iter().map(|p| p.item.1.seen_at).max().unwrap_or(d.seen_at);
                            (d.source.as_str(), d.external_key.as_str(), total, seen)
                        })
                        .collect();
                    if Self::KNOWN_KEYS_IN_ONE_STATEMENT {
                        // One writer (SQLite): every key in one statement, which commits or
                        // fails as a whole, so one answer for all is the truth.
                        match self.add_to_known_many(&adds).await {
                            Ok(mut found) => {
                                for group in by_key {
                                    let d = &group[0].item.1;
                                    match found.remove(&(d.source.clone(), d.external_key.clone())) {
                                        Some(known) => answer_in_order(group, known),
                                        None => unseen.extend(group),
                                    }
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "grouped ingest of known keys failed");
                                for p in by_key.into_iter().flatten() {
                                    p.answer(Err(share_error(&e)));
                                }
                            }
                        }
                    } else {
                        // Concurrent writers (PostgreSQL): each key on its own pooled
                        // connection, in parallel, committing on its own; one key's deliveries
                        // are still one UPDATE. Each key's callers get that key's answer: a key
                        // that failed does not fail the others, whose counts are stored.
                        let results = futures::future::join_all(adds.iter().map(|(source, key, count, seen)| self.add_to_known(source, key, *count, *seen))).await;
                        for (group, result) in by_key.into_iter().zip(results) {
                            match result {
                                Ok(Some(known)) => answer_in_order(group, known),
                                Ok(None) => unseen.extend(group),
                                Err(e) => {
                                    tracing::warn!(error = %e, key = %group[0].item.1.external_key, "ingest of a known key failed");
                                    for p in group {
                                        p.answer(Err(share_error(&e)));
                                    }
                                }
                            }
                        }
                    }
                }
                if unseen.is_empty() {
                    return;
                }
                let items: Vec<&(WorkspaceId, IngestDraft)> = unseen.iter().map(|p| &p.item).collect();
                match self.create_batch(&items).await {
                    Ok(outcomes) => {
                        for (p, o) in unseen.into_iter().zip(outcomes) {
                            p.answer(Ok(o));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, calls = unseen.len(), "grouped issue creation failed; retrying each call on its own");
                        for p in unseen {
                            let (ws, d) = p.item.clone();
                            let r = self.ingest_one(ws, d).await;
                            p.answer(r);
                        }
                    }
                }
            }

            /// One call in its own transactions: the known-key statement, else a creation
            /// transaction that looks again under the key's lock.
            async fn ingest_one(&self, ws: WorkspaceId, d: IngestDraft) -> Result<IngestOutcome> {
                if let Some(known) = self.add_to_known(&d.source, &d.external_key, d.event_count, d.seen_at).await? {
                    return Ok(known);
                }
                let mut tx = self.write_tx().await?;
                let mut out = Self::create_in_tx(&mut tx, &[&(ws, d)]).await?;
                Self::commit(tx).await?;
                out.pop().ok_or_else(|| Error::internal("creation returned no outcome"))
            }

            async fn create_batch(&self, items: &[&(WorkspaceId, IngestDraft)]) -> Result<Vec<IngestOutcome>> {
                let mut tx = self.write_tx().await?;
                let out = Self::create_in_tx(&mut tx, items).await?;
                Self::commit(tx).await?;
                Ok(out)
            }

            /// Creates the issues and links of unseen keys inside `tx`, one outcome per item in
            /// order. Each key is looked at again under its lock (PostgreSQL: an advisory lock;
            /// SQLite: the writer lock already): a concurrent call may have created it since. A
            /// key repeated within the items is created once, the later calls add to it.
            /// Identifiers are allocated for the whole batch by one counter update, and the rows
            /// go in with one multi-row INSERT per table.
            async fn create_in_tx(tx: &mut Tx, items: &[&(WorkspaceId, IngestDraft)]) -> Result<Vec<IngestOutcome>> {
                enum Plan { Known(usize), Create(usize), SameAs(usize) }
                // The distinct keys, first call first; a repeated key is created once and its
                // later calls add to it.
                let mut first_of: std::collections::HashMap<(&str, &str), usize> = std::collections::HashMap::new();
                let mut distinct: Vec<usize> = Vec::new();
                for (i, (_, d)) in items.iter().enumerate() {
                    first_of.entry((d.source.as_str(), d.external_key.as_str())).or_insert_with(|| {
                        distinct.push(i);
                        i
                    });
                }
                // Under the keys' locks (PostgreSQL: advisory locks, taken in one global order so
                // that two processes' batches cannot deadlock; SQLite: the writer lock already),
                // look again with one statement: a concurrent call may have created some since.
                let mut lock_keys: Vec<String> = distinct
                    .iter()
                    .map(|&i| format!("ingest:{}:{}", items[i].1.source, items[i].1.external_key))
                    .collect();
                lock_keys.sort_unstable();
                Self::lock_keys(tx, &lock_keys).await?;
                let mut q = sqlx::QueryBuilder::<$DB>::new(
                    "SELECT source, external_key FROM dispatch_error_link WHERE (source, external_key) IN (",
                );
                q.push_values(&distinct, |mut b, &i| {
                    b.push_bind(items[i].1.source.as_str()).push_bind(items[i].1.external_key.as_str());
                });
                q.push(")");
                let existing: std::collections::HashSet<(String, String)> = q
                    .build()
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(db("read error links"))?
                    .iter()
                    .map(|r| Ok((col!(r, "dispatch_error_link", "source", String)?, col!(r, "dispatch_error_link", "external_key", String)?)))
                    .collect::<Result<_>>()?;
                // Keys that exist after all: their outcome with every call's count added, and
                // what is left to hand out to their calls in order.
                let mut known: std::collections::HashMap<usize, (IngestOutcome, u64)> = std::collections::HashMap::new();
                let mut new_keys: Vec<usize> = Vec::new();
                for &i in &distinct {
                    let d = &items[i].1;
                    if existing.contains(&(d.source.clone(), d.external_key.clone())) {
                        let calls = || items.iter().filter(|(_, x)| x.source == d.source && x.external_key == d.external_key);
                        let total = calls().fold(0u64, |n, (_, x)| n.saturating_add(x.event_count));
                        let seen = calls().map(|(_, x)| x.seen_at).max().unwrap_or(d.seen_at);
                        let o = Self::add_to_known_tx(tx, &d.source, &d.external_key, total, seen)
                            .await?
                            .ok_or_else(|| Error::internal("an error link vanished under its lock"))?;
                        known.insert(i, (o, total));
                    } else {
                        new_keys.push(i);
                    }
                }
                let mut plans = Vec::with_capacity(items.len());
                for (i, (_, d)) in items.iter().enumerate() {
                    let first = first_of.get(&(d.source.as_str(), d.external_key.as_str())).copied().unwrap_or(i);
                    plans.push(if known.contains_key(&first) {
                        Plan::Known(first)
                    } else if first != i {
                        Plan::SameAs(first)
                    } else {
                        Plan::Create(i)
                    });
                }
                // Identifiers: one counter update per workspace for all its new issues, which
                // also names the column new issues start in.
                let mut issues: std::collections::HashMap<usize, Issue> = std::collections::HashMap::new();
                let mut workspaces: Vec<WorkspaceId> = new_keys.iter().map(|&i| items[i].0).collect();
                workspaces.sort_by_key(|w| w.0);
                workspaces.dedup();
                for ws in workspaces {
                    let mine: Vec<usize> = new_keys.iter().copied().filter(|&i| items[i].0 == ws).collect();
                    let n = i64::try_from(mine.len()).unwrap_or(i64::MAX);
                    let row = sqlx::query(
                        "UPDATE dispatch_workspace SET next_issue_number = next_issue_number + $2 WHERE id = $1 \
                         RETURNING next_issue_number, issue_prefix, \
                         (SELECT c.id FROM dispatch_column c WHERE c.workspace_id = dispatch_workspace.id AND c.category = 'open' \
                          ORDER BY c.position, c.name LIMIT 1) AS open_column",
                    )
                    .bind(ws.0)
                    .bind(n)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db("allocate identifiers"))?
                    .ok_or_else(|| Error::not_found(format!("workspace {ws} not found")))?;
                    let first = col!(row, "dispatch_workspace", "next_issue_number", i64)? - n;
                    let prefix: String = col!(row, "dispatch_workspace", "issue_prefix", String)?;
                    let open = col!(row, "dispatch_column", "open_column", Option<uuid::Uuid>)?
                        .map(ColumnId)
                        .ok_or_else(|| Error::conflict("the workspace has no open column"))?;
                    // Only a caller that names a column needs the column list.
                    let columns = if mine.iter().any(|&i| items[i].1.new_issue.column_id.is_some()) {
                        Self::columns_tx(tx, ws).await?
                    } else {
                        Vec::new()
                    };
                    for (offset, &i) in (0i64..).zip(&mine) {
                        let d = &items[i].1;
                        let column_id = match d.new_issue.column_id {
                            Some(c) if columns.iter().any(|x| x.id == c) => c,
                            Some(c) => return Err(Error::invalid("statusId", format!("column {c} is not in this workspace"))),
                            None => open,
                        };
                        let number = first + offset;
                        let issue = d.new_issue.clone().into_issue(ws, number, format_identifier(&prefix, number), column_id, d.seen_at);
                        issues.insert(i, issue);
                    }
                }
                // Links with every count of the batch for their key; each caller sees the count
                // after its own event, as if the calls had run one after the other.
                let mut links: std::collections::HashMap<usize, ErrorLink> = std::collections::HashMap::new();
                let mut outcomes: Vec<Option<IngestOutcome>> = Vec::with_capacity(items.len());
                for (i, plan) in plans.into_iter().enumerate() {
                    let d = &items[i].1;
                    let out = match plan {
                        Plan::Known(first) => {
                            let (o, left) = known.get_mut(&first).ok_or_else(|| Error::internal("link missing from its batch"))?;
                            *left = left.saturating_sub(d.event_count);
                            let mut o = o.clone();
                            o.link.event_count = o.link.event_count.saturating_sub(*left);
                            Some(o)
                        }
                        Plan::Create(i) => {
                            let issue = issues.get(&i).cloned().ok_or_else(|| Error::internal("issue missing from its batch"))?;
                            let link = ErrorLink {
                                id: LinkId::new(),
                                issue_id: issue.id,
                                source: d.source.clone(),
                                external_key: d.external_key.clone(),
                                fingerprint: d.fingerprint.clone(),
                                url: d.url.clone(),
                                metadata: d.metadata.clone(),
                                event_count: d.event_count,
                                first_seen_at: d.seen_at,
                                last_seen_at: d.seen_at,
                                cooldown_until: None,
                            };
                            links.insert(i, link.clone());
                            Some(IngestOutcome { issue, link, created: true, latest_fix: None })
                        }
                        Plan::SameAs(first) => {
                            let link = links.get_mut(&first).ok_or_else(|| Error::internal("link missing from its batch"))?;
                            link.event_count = link.event_count.saturating_add(d.event_count);
                            link.last_seen_at = link.last_seen_at.max(d.seen_at);
                            let issue = issues.get(&first).cloned().ok_or_else(|| Error::internal("issue missing from its batch"))?;
                            Some(IngestOutcome { issue, link: link.clone(), created: false, latest_fix: None })
                        }
                    };
                    outcomes.push(out);
                }
                if !new_keys.is_empty() {
                    let created: Vec<(&Issue, &ErrorLink, &IngestDraft)> = new_keys
                        .iter()
                        .filter_map(|i| Some((issues.get(i)?, links.get(i)?, &items[*i].1)))
                        .collect();
                    let mut q = sqlx::QueryBuilder::<$DB>::new(
                        "INSERT INTO dispatch_issue (id, workspace_id, number, identifier, title, description, column_id, customer_id, spawn_active, version, created_at, updated_at, doc) ",
                    );
                    q.push_values(&created, |mut b, (i, _, _)| {
                        b.push_bind(i.id.0)
                            .push_bind(i.workspace_id.0)
                            .push_bind(i.number)
                            .push_bind(i.identifier.as_str())
                            .push_bind(i.title.as_str())
                            .push_bind(i.description.as_deref())
                            .push_bind(i.column_id.0)
                            .push_bind(i.customer_id.map(|c| c.0))
                            .push_bind(i.spawn_status.is_some_and(|s| s.is_active()))
                            .push_bind(i.version)
                            .push_bind(Self::ts(i.created_at))
                            .push_bind(Self::ts(i.updated_at))
                            .push_bind(Json(*i));
                    });
                    q.build().execute(&mut **tx).await.map_err(db("insert issues"))?;

                    let history: Vec<(IssueId, HistoryEntry)> = created
                        .iter()
                        .map(|(i, _, d)| {
                            let h = NewHistory::new(HistoryAction::Created, &d.actor)
                                .values(None, Some(json!({"identifier": i.identifier, "title": i.title, "source": d.source})));
                            (i.id, h.into_entry(i.id, d.seen_at))
                        })
                        .collect();
                    let mut q = sqlx::QueryBuilder::<$DB>::new("INSERT INTO dispatch_history (id, issue_id, action, created_at, doc) ");
                    q.push_values(&history, |mut b, (issue, e)| {
                        b.push_bind(e.id.0)
                            .push_bind(issue.0)
                            .push_bind(history_action(e))
                            .push_bind(Self::ts(e.created_at))
                            .push_bind(Json(e));
                    });
                    q.build().execute(&mut **tx).await.map_err(db("insert history"))?;

                    // The links' final counts: the batch's later calls for a key add to it.
                    let final_links: Vec<&ErrorLink> = new_keys.iter().filter_map(|i| links.get(i)).collect();
                    let mut q = sqlx::QueryBuilder::<$DB>::new(
                        "INSERT INTO dispatch_error_link (id, issue_id, source, external_key, fingerprint, url, metadata, event_count, first_seen_at, last_seen_at) ",
                    );
                    q.push_values(&final_links, |mut b, l| {
                        b.push_bind(l.id.0)
                            .push_bind(l.issue_id.0)
                            .push_bind(l.source.as_str())
                            .push_bind(l.external_key.as_str())
                            .push_bind(l.fingerprint.as_str())
                            .push_bind(l.url.as_deref())
                            .push_bind(Json(&l.metadata))
                            .push_bind(to_i64(l.event_count))
                            .push_bind(Self::ts(l.first_seen_at))
                            .push_bind(Self::ts(l.last_seen_at));
                    });
                    q.build().execute(&mut **tx).await.map_err(db("insert error links"))?;
                }
                outcomes
                    .into_iter()
                    .map(|o| o.ok_or_else(|| Error::internal("batch item without an outcome")))
                    .collect()
            }

        }

        #[async_trait]
        impl ErrorLinkStore for $S {
            async fn ingest_error(&self, ws: WorkspaceId, d: IngestDraft) -> Result<IngestOutcome> {
                if d.event_count == 0 {
                    return Err(Error::invalid("event_count", "event count must be at least 1"));
                }
                // Checked before queueing, so that one caller's bad input never fails a batch.
                d.new_issue.validate()?;
                let (answer, start_worker) = self.ingest_queue().submit((ws, d))?;
                if start_worker {
                    let store = self.clone();
                    tokio::spawn(async move { store.drain_ingest_queue().await });
                }
                group_commit::wait(answer).await
            }

            async fn get_link(&self, source: &str, external_key: &str) -> Result<Option<ErrorLink>> {
                let row = sqlx::query("SELECT * FROM dispatch_error_link WHERE source = $1 AND external_key = $2")
                    .bind(source)
                    .bind(external_key)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(db("read error link"))?;
                row.as_ref().map(Self::row_link).transpose()
            }

            async fn links_for_issue(&self, issue: IssueId) -> Result<Vec<ErrorLink>> {
                let rows = sqlx::query("SELECT * FROM dispatch_error_link WHERE issue_id = $1 ORDER BY first_seen_at, id")
                    .bind(issue.0)
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("list error links"))?;
                rows.iter().map(Self::row_link).collect()
            }

            async fn set_cooldown(&self, issue: IssueId, until: Timestamp) -> Result<()> {
                let mut tx = self.write_tx().await?;
                sqlx::query("UPDATE dispatch_error_link SET cooldown_until = $2 WHERE issue_id = $1")
                    .bind(issue.0)
                    .bind(Self::ts(until))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("set cooldown"))?;
                Self::commit(tx).await
            }

            async fn owe_follow_up(&self, link: LinkId, owed_at: Timestamp) -> Result<()> {
                let mut tx = self.write_tx().await?;
                sqlx::query(
                    "INSERT INTO dispatch_ingest_follow_up (link_id, owed_at) VALUES ($1, $2) \
                     ON CONFLICT (link_id) DO UPDATE SET owed_at = CASE WHEN dispatch_ingest_follow_up.owed_at < excluded.owed_at THEN excluded.owed_at ELSE dispatch_ingest_follow_up.owed_at END",
                )
                .bind(link.0)
                .bind(Self::ts(owed_at))
                .execute(&mut *tx)
                .await
                .map_err(|e| match e {
                    sqlx::Error::Database(d) if d.is_foreign_key_violation() => Error::not_found(format!("error link {link} not found")),
                    e => db("owe follow-up")(e),
                })?;
                Self::commit(tx).await
            }

            async fn owed_follow_ups(&self, upto: Timestamp, limit: usize) -> Result<Vec<(ErrorLink, Timestamp)>> {
                let rows = sqlx::query(
                    "SELECT l.*, f.owed_at AS owed_at FROM dispatch_ingest_follow_up f JOIN dispatch_error_link l ON l.id = f.link_id \
                     WHERE f.owed_at <= $1 ORDER BY f.owed_at, f.link_id LIMIT $2",
                )
                .bind(Self::ts(upto))
                .bind(to_i64(limit as u64))
                .fetch_all(self.reader())
                .await
                .map_err(db("owed follow-ups"))?;
                rows.iter()
                    .map(|r| Ok((Self::row_link(r)?, Self::get_ts(r, "dispatch_ingest_follow_up", "owed_at")?)))
                    .collect()
            }

            async fn settle_follow_up(&self, link: LinkId, upto: Timestamp) -> Result<()> {
                let mut tx = self.write_tx().await?;
                sqlx::query("DELETE FROM dispatch_ingest_follow_up WHERE link_id = $1 AND owed_at <= $2")
                    .bind(link.0)
                    .bind(Self::ts(upto))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("settle follow-up"))?;
                Self::commit(tx).await
            }
        }

        #[async_trait]
        impl RunStore for $S {
            async fn reserve_spawn(&self, req: &SpawnRequest, now: Timestamp) -> Result<SpawnReservation> {
                let mut tx = self.write_tx().await?;
                // Every reservation reads global counters: reservations run one at a time.
                Self::lock_spawns(&mut tx).await?;
                let issue = Self::issue_tx(&mut tx, req.issue_id).await?;
                let has_active = Self::active_runs_tx(&mut tx, issue.id).await? > 0;
                let latest_link = if req.from_alert && !has_active {
                    let row = sqlx::query("SELECT * FROM dispatch_error_link WHERE issue_id = $1 ORDER BY last_seen_at DESC LIMIT 1")
                        .bind(issue.id.0)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db("read error link"))?;
                    row.as_ref().map(Self::row_link).transpose()?
                } else {
                    None
                };
                let rows = sqlx::query(concat!("SELECT doc FROM dispatch_deferred_spawn WHERE issue_id = $1 OR id = $2", $FU))
                    .bind(issue.id.0)
                    .bind(req.deferred_id.map(|d| d.0))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db("read deferred spawns"))?;
                let deferred = rows
                    .into_iter()
                    .map(|r| doc_col!(r, "dispatch_deferred_spawn", DeferredSpawn))
                    .collect::<Result<Vec<_>>>()?;
                let counters = Self::counters_tx(&mut tx, now).await?.into();
                let columns = Self::columns_tx(&mut tx, issue.workspace_id).await?;
                let plan = plan_reservation(ReservationInputs {
                    request: req,
                    issue: &issue,
                    issue_has_active_run: has_active,
                    latest_link: latest_link.as_ref(),
                    counters,
                    deferred: &deferred,
                    columns: &columns,
                    now,
                });
                for id in &plan.delete_deferred {
                    Self::delete_deferred_tx(&mut tx, *id).await?;
                }
                if let Some(d) = &plan.save_deferred {
                    Self::save_deferred_tx(&mut tx, d).await?;
                }
                if let Some(run) = &plan.insert_run {
                    Self::insert_run_tx(&mut tx, run).await?;
                }
                let issue = match plan.issue_update {
                    Some((id, update)) => Self::write_issue_tx(&mut tx, id, update).await?,
                    None => issue,
                };
                Self::commit(tx).await?;
                Ok(SpawnReservation { decision: plan.decision, run: plan.insert_run, issue })
            }

            async fn get_run(&self, id: RunId) -> Result<Run> {
                let row = sqlx::query("SELECT doc FROM dispatch_run WHERE id = $1")
                    .bind(id.0)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(db("read run"))?
                    .ok_or_else(|| Error::not_found(format!("run {id} not found")))?;
                doc_col!(row, "dispatch_run", Run)
            }

            async fn list_runs(&self, issue: IssueId) -> Result<Vec<Run>> {
                let rows = sqlx::query("SELECT doc FROM dispatch_run WHERE issue_id = $1 ORDER BY created_at DESC, id DESC")
                    .bind(issue.0)
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("list runs"))?;
                rows.into_iter().map(|r| doc_col!(r, "dispatch_run", Run)).collect()
            }

            async fn find_run_by_external_id(&self, external_id: &str) -> Result<Option<Run>> {
                let row = sqlx::query("SELECT doc FROM dispatch_run WHERE external_id = $1 ORDER BY created_at DESC LIMIT 1")
                    .bind(external_id)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(db("find run"))?;
                row.map(|r| doc_col!(r, "dispatch_run", Run)).transpose()
            }

            async fn update_run(&self, id: RunId, patch: &RunPatch, actor: &Actor, now: Timestamp) -> Result<RunUpdate> {
                patch.validate()?;
                let mut tx = self.write_tx().await?;
                let before = Self::run_tx(&mut tx, id).await?;
                let plan = RunUpdatePlan::new(&before, patch, now)?;
                Self::save_run_tx(&mut tx, &plan.run).await?;
                if plan.totals_changed {
                    Self::recompute_totals_tx(&mut tx, plan.run.issue_id).await?;
                }
                let mut issue = Self::issue_tx(&mut tx, plan.run.issue_id).await?;
                let columns = if plan.ended { Self::columns_tx(&mut tx, issue.workspace_id).await? } else { Vec::new() };
                let fx = plan.effects(&issue, &columns, actor, now);
                if let Some(update) = fx.issue_update {
                    issue = Self::write_issue_tx(&mut tx, issue.id, update).await?;
                }
                if let Some(until) = fx.cooldown_until {
                    sqlx::query("UPDATE dispatch_error_link SET cooldown_until = $2 WHERE issue_id = $1")
                        .bind(issue.id.0)
                        .bind(Self::ts(until))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("set cooldown"))?;
                }
                let RunUpdatePlan { run, status_changed, ended, .. } = plan;
                Self::commit(tx).await?;
                Ok(RunUpdate { run, issue, status_changed, ended })
            }

            async fn claim_due_runs(&self, now: Timestamp, lease: Duration, limit: usize) -> Result<Vec<Run>> {
                let mut tx = self.write_tx().await?;
                let rows = sqlx::query(concat!(
                    "SELECT doc FROM dispatch_run WHERE (status = 'queued' AND not_before <= $1) \
                     OR (status = 'dispatching' AND (lease_until IS NULL OR lease_until <= $1)) \
                     ORDER BY not_before, created_at LIMIT $2",
                    $SKIP
                ))
                .bind(Self::ts(now))
                .bind(to_i64(limit as u64))
                .fetch_all(&mut *tx)
                .await
                .map_err(db("claim due runs"))?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    let mut run: Run = doc_col!(r, "dispatch_run", Run)?;
                    run.claim_for_dispatch(now, lease);
                    Self::save_run_tx(&mut tx, &run).await?;
                    out.push(run);
                }
                Self::commit(tx).await?;
                Ok(out)
            }

            async fn stale_runs(&self, cutoff: Timestamp, limit: usize) -> Result<Vec<Run>> {
                let rows = sqlx::query("SELECT doc FROM dispatch_run WHERE status = 'running' AND alive_at < $1 ORDER BY created_at LIMIT $2")
                    .bind(Self::ts(cutoff))
                    .bind(to_i64(limit as u64))
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("find stale runs"))?;
                rows.into_iter().map(|r| doc_col!(r, "dispatch_run", Run)).collect()
            }

            async fn append_terminal(&self, run: RunId, content: &str, seq: Option<u64>, at: Timestamp) -> Result<TerminalChunk> {
                let mut tx = self.write_tx().await?;
                // Locking the run row orders concurrent appends to one run.
                Self::run_tx(&mut tx, run).await?;
                let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS last FROM dispatch_terminal_chunk WHERE run_id = $1")
                    .bind(run.0)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db("read terminal"))?;
                let last = to_u64("dispatch_terminal_chunk", "seq", col!(row, "dispatch_terminal_chunk", "last", i64)?)?;
                let seq = match plan_chunk_append(last, seq)? {
                    ChunkAppend::Replay(n) => {
                        let row = sqlx::query("SELECT * FROM dispatch_terminal_chunk WHERE run_id = $1 AND seq = $2")
                            .bind(run.0)
                            .bind(to_i64(n))
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(db("read terminal"))?;
                        let stored = match row {
                            Some(row) => Some(TerminalChunk {
                                run_id: run,
                                seq: n,
                                content: col!(row, "dispatch_terminal_chunk", "content", String)?,
                                at: Self::get_ts(&row, "dispatch_terminal_chunk", "at")?,
                            }),
                            None => None,
                        };
                        Self::commit(tx).await?;
                        return replayed_chunk(stored, n, content);
                    }
                    ChunkAppend::Insert(n) => n,
                };
                let c = TerminalChunk { run_id: run, seq, content: content.to_string(), at };
                sqlx::query("INSERT INTO dispatch_terminal_chunk (run_id, seq, content, at) VALUES ($1, $2, $3, $4)")
                    .bind(run.0)
                    .bind(to_i64(c.seq))
                    .bind(&c.content)
                    .bind(Self::ts(at))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("append terminal"))?;
                Self::commit(tx).await?;
                Ok(c)
            }

            async fn read_terminal(&self, run: RunId, after: u64, limit: usize) -> Result<Vec<TerminalChunk>> {
                let exists = sqlx::query("SELECT 1 AS one FROM dispatch_run WHERE id = $1")
                    .bind(run.0)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(db("read run"))?;
                if exists.is_none() {
                    return Err(Error::not_found(format!("run {run} not found")));
                }
                // Rows are decoded as they arrive and the read stops once the page is full
                // (`PageBudget`), so a page never holds `limit` large chunks in memory.
                let mut rows = sqlx::query("SELECT * FROM dispatch_terminal_chunk WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")
                    .bind(run.0)
                    .bind(to_i64(after))
                    .bind(to_i64(limit as u64))
                    .fetch(self.reader());
                let mut budget = dispatch_core::run::PageBudget::default();
                let mut out = Vec::new();
                while let Some(row) = futures::TryStreamExt::try_next(&mut rows).await.map_err(db("read terminal"))? {
                    let content = col!(row, "dispatch_terminal_chunk", "content", String)?;
                    if !budget.admit(content.len()) {
                        break;
                    }
                    out.push(TerminalChunk {
                        run_id: run,
                        seq: to_u64("dispatch_terminal_chunk", "seq", col!(row, "dispatch_terminal_chunk", "seq", i64)?)?,
                        content,
                        at: Self::get_ts(&row, "dispatch_terminal_chunk", "at")?,
                    });
                }
                Ok(out)
            }

            async fn add_activity(&self, issue: IssueId, activity: NewActivity, at: Timestamp) -> Result<Activity> {
                let mut tx = self.write_tx().await?;
                let row = sqlx::query("SELECT 1 AS one FROM dispatch_issue WHERE id = $1")
                    .bind(issue.0)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db("read issue"))?;
                if row.is_none() {
                    return Err(issue_not_found(issue));
                }
                if let Some(r) = activity.run_id {
                    let row = sqlx::query("SELECT issue_id FROM dispatch_run WHERE id = $1")
                        .bind(r.0)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db("read run"))?;
                    let owner = row.map(|row| col!(row, "dispatch_run", "issue_id", uuid::Uuid)).transpose()?;
                    if owner != Some(issue.0) {
                        return Err(Error::invalid("run_id", format!("run {r} is not a run of this issue")));
                    }
                }
                let key = activity.validated_key()?.map(str::to_string);
                if let Some(k) = &key
                    && let Some(stored) = Self::activity_by_key_tx(&mut tx, issue, k).await?
                {
                    Self::commit(tx).await?;
                    return activity.replayed(stored);
                }
                let replay = activity.clone();
                let a = activity.into_activity(issue, at);
                let inserted = sqlx::query("INSERT INTO dispatch_activity (id, issue_id, run_id, kind, content, metadata, created_at, idempotency_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING")
                    .bind(a.id.0)
                    .bind(issue.0)
                    .bind(a.run_id.map(|r| r.0))
                    .bind(a.kind.as_str())
                    .bind(&a.content)
                    .bind(Json(&a.metadata))
                    .bind(Self::ts(at))
                    .bind(key.as_deref())
                    .execute(&mut *tx)
                    .await
                    .map_err(db("insert activity"))?
                    .rows_affected();
                if inserted == 0
                    && let Some(k) = key
                {
                    // A concurrent retry with the same key was stored first.
                    let stored = Self::activity_by_key_tx(&mut tx, issue, &k).await?.ok_or_else(|| Error::conflict("the activity kept changing; try again"))?;
                    Self::commit(tx).await?;
                    return replay.replayed(stored);
                }
                Self::commit(tx).await?;
                Ok(a)
            }

            async fn list_activities(&self, issue: IssueId, before: Option<Timestamp>, limit: usize) -> Result<Vec<Activity>> {
                self.require_issue(issue).await?;
                let rows = sqlx::query(
                    "SELECT * FROM dispatch_activity WHERE issue_id = $1 AND ($2 IS NULL OR created_at < $2) ORDER BY created_at DESC, id DESC LIMIT $3",
                )
                .bind(issue.0)
                .bind(Self::ts_opt(before))
                .bind(to_i64(limit as u64))
                .fetch_all(self.reader())
                .await
                .map_err(db("list activities"))?;
                rows.iter().map(Self::row_activity).collect()
            }

            async fn claim_due_deferred(&self, now: Timestamp, lease: Duration, limit: usize) -> Result<Vec<DeferredSpawn>> {
                let mut tx = self.write_tx().await?;
                let rows = sqlx::query(concat!(
                    "SELECT doc FROM dispatch_deferred_spawn WHERE due_at <= $1 AND (lease_until IS NULL OR lease_until <= $1) ORDER BY due_at LIMIT $2",
                    $SKIP
                ))
                .bind(Self::ts(now))
                .bind(to_i64(limit as u64))
                .fetch_all(&mut *tx)
                .await
                .map_err(db("claim deferred spawns"))?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    let mut d: DeferredSpawn = doc_col!(r, "dispatch_deferred_spawn", DeferredSpawn)?;
                    d.lease_until = Some(now + lease);
                    d.attempts = d.attempts.saturating_add(1);
                    Self::save_deferred_tx(&mut tx, &d).await?;
                    out.push(d);
                }
                Self::commit(tx).await?;
                Ok(out)
            }

            async fn list_deferred(&self, issue: IssueId) -> Result<Vec<DeferredSpawn>> {
                let rows = sqlx::query("SELECT doc FROM dispatch_deferred_spawn WHERE issue_id = $1 ORDER BY due_at")
                    .bind(issue.0)
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("list deferred spawns"))?;
                rows.into_iter().map(|r| doc_col!(r, "dispatch_deferred_spawn", DeferredSpawn)).collect()
            }

            async fn spawn_stats(&self, now: Timestamp) -> Result<SpawnStats> {
                let mut tx = self.reader().begin().await.map_err(db("begin"))?;
                let (ae, ap, se, sp, cost) = Self::counters_tx(&mut tx, now).await?;
                let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM dispatch_run WHERE status IN ('queued', 'dispatching', 'running') GROUP BY status")
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db("count runs"))?;
                let (mut queued, mut running) = (0u32, 0u32);
                for r in &rows {
                    let s: String = col!(r, "dispatch_run", "status", String)?;
                    let n = col!(r, "dispatch_run", "n", i64)?.max(0) as u32;
                    if s == "running" { running += n } else { queued += n }
                }
                let row = sqlx::query("SELECT COUNT(*) AS n FROM dispatch_deferred_spawn")
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db("count deferred"))?;
                let deferred = col!(row, "dispatch_deferred_spawn", "n", i64)?.max(0) as u32;
                let rows = sqlx::query("SELECT outcome, COUNT(*) AS n FROM dispatch_run WHERE created_at >= $1 AND created_at < $2 AND outcome IS NOT NULL GROUP BY outcome ORDER BY outcome")
                    .bind(Self::ts(utc_day_start(now)))
                    .bind(Self::ts(dispatch_core::clock::utc_next_day_start(now)))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db("count outcomes"))?;
                let mut outcomes = BTreeMap::new();
                for r in &rows {
                    outcomes.insert(col!(r, "dispatch_run", "outcome", String)?, col!(r, "dispatch_run", "n", i64)?.max(0) as u32);
                }
                tx.rollback().await.map_err(db("end read"))?;
                Ok(SpawnStats {
                    active_error: ae,
                    active_prd: ap,
                    spawned_today_error: se,
                    spawned_today_prd: sp,
                    cost_today_usd: cost,
                    queued,
                    running,
                    deferred,
                    outcomes_today: outcomes.into_iter().collect(),
                })
            }

            async fn record_external_run(&self, run: &Run, actor: &Actor, now: Timestamp) -> Result<(Run, Issue, bool)> {
                let mut tx = self.write_tx().await?;
                // Like a reservation: it changes the counters the gates read.
                Self::lock_spawns(&mut tx).await?;
                let issue = Self::issue_tx(&mut tx, run.issue_id).await?;
                if let Some(x) = &run.external_id {
                    let row = sqlx::query("SELECT doc FROM dispatch_run WHERE issue_id = $1 AND external_id = $2 ORDER BY created_at LIMIT 1")
                        .bind(issue.id.0)
                        .bind(x)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db("find run"))?;
                    if let Some(r) = row {
                        let existing: Run = doc_col!(r, "dispatch_run", Run)?;
                        Self::commit(tx).await?;
                        return Ok((existing, issue, false));
                    }
                }
                if Self::active_runs_tx(&mut tx, issue.id).await? > 0 {
                    return Err(Error::conflict(format!("{} already has an active run", issue.identifier)));
                }
                Self::insert_run_tx(&mut tx, run).await?;
                let columns = Self::columns_tx(&mut tx, issue.workspace_id).await?;
                let fx = dispatch_core::run::external_run_effects(&issue, run, &columns, actor, now);
                let issue = Self::write_issue_tx(
                    &mut tx,
                    issue.id,
                    fx.into_update(now),
                )
                .await?;
                Self::commit(tx).await?;
                Ok((run.clone(), issue, true))
            }

            async fn prune(&self, before: Timestamp) -> Result<u64> {
                let mut tx = self.write_tx().await?;
                let a = sqlx::query("DELETE FROM dispatch_activity WHERE created_at < $1")
                    .bind(Self::ts(before))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("prune activities"))?
                    .rows_affected();
                // The newest chunk of each run stays, so numbering continues after a prune.
                let c = sqlx::query(
                    "DELETE FROM dispatch_terminal_chunk WHERE at < $1 AND seq < (SELECT MAX(c2.seq) FROM dispatch_terminal_chunk c2 WHERE c2.run_id = dispatch_terminal_chunk.run_id)",
                )
                .bind(Self::ts(before))
                .execute(&mut *tx)
                .await
                .map_err(db("prune terminal"))?
                .rows_affected();
                Self::commit(tx).await?;
                Ok(a + c)
            }
        }

        #[async_trait]
        impl FixStore for $S {
            async fn create_fix_attempt(&self, a: &FixAttempt) -> Result<(FixAttempt, bool)> {
                let mut tx = self.write_tx().await?;
                Self::issue_tx(&mut tx, a.issue_id).await?;
                let r = sqlx::query(
                    "INSERT INTO dispatch_fix_attempt (id, issue_id, pr_number, status, deadline, created_at, doc) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (issue_id, pr_number) DO NOTHING",
                )
                .bind(a.id.0)
                .bind(a.issue_id.0)
                .bind(a.pr_number)
                .bind(a.status.as_str())
                .bind(Self::ts_opt(a.deadline))
                .bind(Self::ts(a.created_at))
                .bind(Json(a))
                .execute(&mut *tx)
                .await
                .map_err(db("insert fix attempt"))?;
                if r.rows_affected() == 1 {
                    Self::commit(tx).await?;
                    return Ok((a.clone(), true));
                }
                let row = sqlx::query("SELECT doc FROM dispatch_fix_attempt WHERE issue_id = $1 AND pr_number = $2")
                    .bind(a.issue_id.0)
                    .bind(a.pr_number)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db("read fix attempt"))?;
                let existing: FixAttempt = doc_col!(row, "dispatch_fix_attempt", FixAttempt)?;
                Self::commit(tx).await?;
                Ok((existing, false))
            }

            async fn list_fix_attempts(&self, issue: IssueId) -> Result<Vec<FixAttempt>> {
                let rows = sqlx::query("SELECT doc FROM dispatch_fix_attempt WHERE issue_id = $1 ORDER BY created_at DESC, id DESC")
                    .bind(issue.0)
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("list fix attempts"))?;
                rows.into_iter().map(|r| doc_col!(r, "dispatch_fix_attempt", FixAttempt)).collect()
            }

            async fn update_fix_attempt(&self, a: &FixAttempt, expected: VerificationStatus) -> Result<bool> {
                let mut tx = self.write_tx().await?;
                let current = Self::fix_tx(&mut tx, a.id)
                    .await?
                    .ok_or_else(|| Error::not_found(format!("fix attempt {} not found", a.id)))?;
                if current.status != expected {
                    return Ok(false);
                }
                Self::save_fix_tx(&mut tx, a).await?;
                Self::commit(tx).await?;
                Ok(true)
            }


            async fn settle_fix_attempt(&self, a: &FixAttempt, expected: VerificationStatus, update: IssueUpdate, comment: NewComment, actor: &Actor) -> Result<Option<(Issue, Comment)>> {
                comment.validate()?;
                let now = update.now;
                let mut tx = self.write_tx().await?;
                // The issue's lock first, as every write of an issue and its children takes it.
                Self::issue_tx(&mut tx, a.issue_id).await?;
                let current = Self::fix_tx(&mut tx, a.id)
                    .await?
                    .ok_or_else(|| Error::not_found(format!("fix attempt {} not found", a.id)))?;
                if current.status != expected {
                    return Ok(None);
                }
                let mut issue = Self::write_issue_tx(&mut tx, a.issue_id, update).await?;
                let c = Self::comment_tx(&mut tx, &mut issue, comment, actor, now).await?;
                Self::save_fix_tx(&mut tx, a).await?;
                Self::commit(tx).await?;
                Ok(Some((issue, c)))
            }

            async fn fix_attempts_in_status(&self, status: VerificationStatus, limit: usize) -> Result<Vec<FixAttempt>> {
                let rows = sqlx::query("SELECT doc FROM dispatch_fix_attempt WHERE status = $1 ORDER BY created_at LIMIT $2")
                    .bind(status.as_str())
                    .bind(to_i64(limit as u64))
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("list fix attempts"))?;
                rows.into_iter().map(|r| doc_col!(r, "dispatch_fix_attempt", FixAttempt)).collect()
            }

            async fn due_verifications(&self, now: Timestamp, limit: usize) -> Result<Vec<FixAttempt>> {
                let rows = sqlx::query("SELECT doc FROM dispatch_fix_attempt WHERE status = 'monitoring' AND deadline <= $1 ORDER BY deadline LIMIT $2")
                    .bind(Self::ts(now))
                    .bind(to_i64(limit as u64))
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("due verifications"))?;
                rows.into_iter().map(|r| doc_col!(r, "dispatch_fix_attempt", FixAttempt)).collect()
            }
        }

        #[async_trait]
        impl CustomerStore for $S {
            async fn create_customer(&self, c: &Customer) -> Result<Customer> {
                let mut tx = self.write_tx().await?;
                Self::workspace_tx(&mut tx, c.workspace_id).await?;
                Self::save_customer_tx(&mut tx, c, true).await?;
                Self::commit(tx).await?;
                Ok(c.clone())
            }

            async fn get_customer(&self, id: CustomerId) -> Result<Customer> {
                let row = sqlx::query("SELECT doc FROM dispatch_customer WHERE id = $1")
                    .bind(id.0)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(db("read customer"))?
                    .ok_or_else(|| Error::not_found(format!("customer {id} not found")))?;
                doc_col!(row, "dispatch_customer", Customer)
            }

            async fn get_customer_by_slug(&self, ws: WorkspaceId, slug: &str) -> Result<Customer> {
                let row = sqlx::query("SELECT doc FROM dispatch_customer WHERE workspace_id = $1 AND slug = $2")
                    .bind(ws.0)
                    .bind(slug)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(db("read customer"))?
                    .ok_or_else(|| Error::not_found(format!("customer {slug:?} not found")))?;
                doc_col!(row, "dispatch_customer", Customer)
            }

            async fn get_customer_by_token(&self, token: &str) -> Result<Option<Customer>> {
                // An indexed lookup; the token is compared again in constant time so that a
                // near-miss costs the same as a miss.
                let row = sqlx::query("SELECT doc FROM dispatch_customer WHERE portal_token = $1")
                    .bind(token)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(db("read customer"))?;
                let c = row.map(|r| doc_col!(r, "dispatch_customer", Customer)).transpose()?;
                Ok(c.filter(|c| dispatch_core::customer::constant_time_eq(c.portal_token.as_bytes(), token.as_bytes())))
            }

            async fn list_customers(&self, ws: WorkspaceId) -> Result<Vec<Customer>> {
                let rows = sqlx::query("SELECT doc FROM dispatch_customer WHERE workspace_id = $1 ORDER BY LOWER(name), id")
                    .bind(ws.0)
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("list customers"))?;
                rows.into_iter().map(|r| doc_col!(r, "dispatch_customer", Customer)).collect()
            }

            async fn update_customer(&self, id: CustomerId, patch: &CustomerPatch, now: Timestamp) -> Result<Customer> {
                patch.validate()?;
                let mut tx = self.write_tx().await?;
                let mut c = Self::customer_tx(&mut tx, id).await?;
                patch.apply_to(&mut c);
                c.updated_at = now;
                Self::save_customer_tx(&mut tx, &c, false).await?;
                Self::commit(tx).await?;
                Ok(c)
            }

            async fn set_portal_token(&self, id: CustomerId, token: &str, now: Timestamp) -> Result<Customer> {
                let mut tx = self.write_tx().await?;
                let mut c = Self::customer_tx(&mut tx, id).await?;
                c.portal_token = token.to_string();
                c.updated_at = now;
                Self::save_customer_tx(&mut tx, &c, false).await?;
                Self::commit(tx).await?;
                Ok(c)
            }

            async fn delete_customer(&self, id: CustomerId) -> Result<()> {
                let mut tx = self.write_tx().await?;
                Self::customer_tx(&mut tx, id).await?;
                let rows = sqlx::query(concat!("SELECT doc FROM dispatch_issue WHERE customer_id = $1", $FU))
                    .bind(id.0)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db("read customer issues"))?;
                for r in rows {
                    let mut issue: Issue = doc_col!(r, "dispatch_issue", Issue)?;
                    issue.detach_customer();
                    Self::save_issue_tx(&mut tx, &issue).await?;
                }
                sqlx::query("DELETE FROM dispatch_customer WHERE id = $1").bind(id.0).execute(&mut *tx).await.map_err(db("delete customer"))?;
                Self::commit(tx).await
            }

            async fn upsert_customer_user(&self, customer: CustomerId, user: &NewCustomerUser, now: Timestamp) -> Result<CustomerUser> {
                user.validate()?;
                let mut tx = self.write_tx().await?;
                Self::customer_tx(&mut tx, customer).await?;
                let key = user.slack_user_id.trim();
                // Twice at most: a concurrent first report of the same person may insert the row
                // between our read and our insert; then the row is theirs, read it and merge.
                for _ in 0..2 {
                    let row = sqlx::query(concat!("SELECT doc FROM dispatch_customer_user WHERE customer_id = $1 AND slack_user_id = $2", $FU))
                        .bind(customer.0)
                        .bind(key)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db("read customer user"))?;
                    let existing = row.map(|r| doc_col!(r, "dispatch_customer_user", CustomerUser)).transpose()?;
                    let known = existing.is_some();
                    let u = user.merge_into(existing, customer, now);
                    let written = if known {
                        sqlx::query("UPDATE dispatch_customer_user SET doc = $2 WHERE id = $1")
                            .bind(u.id.0)
                            .bind(Json(&u))
                            .execute(&mut *tx)
                            .await
                            .map_err(db("update customer user"))?
                            .rows_affected()
                    } else {
                        sqlx::query("INSERT INTO dispatch_customer_user (id, customer_id, slack_user_id, doc) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
                            .bind(u.id.0)
                            .bind(customer.0)
                            .bind(&u.slack_user_id)
                            .bind(Json(&u))
                            .execute(&mut *tx)
                            .await
                            .map_err(db("insert customer user"))?
                            .rows_affected()
                    };
                    if written == 1 {
                        Self::commit(tx).await?;
                        return Ok(u);
                    }
                }
                Err(Error::conflict("the customer user kept changing; try again"))
            }

            async fn get_customer_user(&self, id: dispatch_core::ids::CustomerUserId) -> Result<CustomerUser> {
                let row = sqlx::query("SELECT doc FROM dispatch_customer_user WHERE id = $1")
                    .bind(id.0)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(db("read customer user"))?
                    .ok_or_else(|| Error::not_found(format!("customer user {id} not found")))?;
                doc_col!(row, "dispatch_customer_user", CustomerUser)
            }

            async fn health_inputs(&self, id: CustomerId) -> Result<HealthInputs> {
                self.get_customer(id).await?;
                let rows = sqlx::query(
                    "SELECT i.doc AS doc, c.category AS category, \
                     (SELECT COUNT(*) FROM dispatch_comment m WHERE m.issue_id = i.id) AS comments, \
                     (SELECT MIN(m.created_at) FROM dispatch_comment m WHERE m.issue_id = i.id) AS first_comment, \
                     (SELECT MAX(m.created_at) FROM dispatch_comment m WHERE m.issue_id = i.id) AS last_comment \
                     FROM dispatch_issue i LEFT JOIN dispatch_column c ON c.id = i.column_id WHERE i.customer_id = $1",
                )
                .bind(id.0)
                .fetch_all(self.reader())
                .await
                .map_err(db("customer health"))?;
                let mut issues = Vec::with_capacity(rows.len());
                for r in rows {
                    let issue: Issue = doc_col!(r, "dispatch_issue", Issue)?;
                    let category: Option<String> = col!(r, "dispatch_column", "category", Option<String>)?;
                    issues.push(HealthIssue {
                        closed: category.as_deref() == Some("closed"),
                        priority: issue.priority,
                        created_at: issue.created_at,
                        updated_at: issue.updated_at,
                        comment_count: col!(r, "dispatch_comment", "comments", i64)?.max(0) as u32,
                        first_comment_at: Self::get_ts_opt(&r, "dispatch_comment", "first_comment")?,
                        last_comment_at: Self::get_ts_opt(&r, "dispatch_comment", "last_comment")?,
                    });
                }
                Ok(HealthInputs { issues })
            }
        }

        #[async_trait]
        impl dispatch_core::ports::SettingStore for $S {
            async fn get_setting(&self, key: &str) -> Result<Option<serde_json::Value>> {
                let row = sqlx::query("SELECT doc FROM dispatch_setting WHERE key = $1")
                    .bind(key)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(db("read setting"))?;
                row.map(|r| doc_col!(r, "dispatch_setting", serde_json::Value)).transpose()
            }

            async fn set_setting(&self, key: &str, value: &serde_json::Value, now: Timestamp) -> Result<()> {
                sqlx::query("INSERT INTO dispatch_setting (key, doc, updated_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at")
                    .bind(key)
                    .bind(Json(value))
                    .bind(Self::ts(now))
                    .execute(self.autocommit())
                    .await
                    .map_err(db("write setting"))?;
                Ok(())
            }
        }

        #[async_trait]
        impl DeliveryStore for $S {
            async fn record_delivery(&self, source: &str, delivery_id: &str, now: Timestamp) -> Result<bool> {
                if delivery_id.trim().is_empty() {
                    return Err(Error::invalid("delivery_id", "delivery id must not be empty"));
                }
                let mut tx = self.write_tx().await?;
                let r = sqlx::query("INSERT INTO dispatch_delivery (source, delivery_id, received_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(source)
                    .bind(delivery_id)
                    .bind(Self::ts(now))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("record delivery"))?;
                Self::commit(tx).await?;
                Ok(r.rows_affected() == 1)
            }

            async fn forget_delivery(&self, source: &str, delivery_id: &str) -> Result<bool> {
                let r = sqlx::query("DELETE FROM dispatch_delivery WHERE source = $1 AND delivery_id = $2")
                    .bind(source)
                    .bind(delivery_id)
                    .execute(self.autocommit())
                    .await
                    .map_err(db("forget delivery"))?;
                Ok(r.rows_affected() > 0)
            }

            async fn prune_deliveries(&self, before: Timestamp) -> Result<u64> {
                let r = sqlx::query("DELETE FROM dispatch_delivery WHERE received_at < $1")
                    .bind(Self::ts(before))
                    .execute(self.autocommit())
                    .await
                    .map_err(db("prune deliveries"))?;
                Ok(r.rows_affected())
            }
        }

        impl $S {
            async fn pr_link_tx(tx: &mut Tx, issue: IssueId, pr_number: i64) -> Result<Option<PrLink>> {
                let row = sqlx::query("SELECT doc FROM dispatch_issue_pr WHERE issue_id = $1 AND pr_number = $2")
                    .bind(issue.0)
                    .bind(pr_number)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db("read PR link"))?;
                row.map(|r| doc_col!(r, "dispatch_issue_pr", PrLink)).transpose()
            }

            async fn activity_by_key_tx(tx: &mut Tx, issue: IssueId, key: &str) -> Result<Option<Activity>> {
                let row = sqlx::query("SELECT * FROM dispatch_activity WHERE issue_id = $1 AND idempotency_key = $2")
                    .bind(issue.0)
                    .bind(key)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db("read activity"))?;
                row.as_ref().map(Self::row_activity).transpose()
            }

            async fn agent_tx(tx: &mut Tx, ws: WorkspaceId, name: &str) -> Result<Option<Agent>> {
                let row = sqlx::query(concat!("SELECT doc FROM dispatch_agent WHERE workspace_id = $1 AND name_key = $2", $FU))
                    .bind(ws.0)
                    .bind(name_key(name))
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db("read agent"))?;
                row.map(|r| doc_col!(r, "dispatch_agent", Agent)).transpose()
            }
        }

        #[async_trait]
        impl PrLinkStore for $S {
            async fn upsert_pr_link(&self, up: &PrLinkUpsert, actor: &Actor, now: Timestamp) -> Result<PrLinkUpsertOutcome> {
                up.validate()?;
                let mut tx = self.write_tx().await?;
                // The issue row lock serialises upserts of one issue's links (PostgreSQL); SQLite's
                // single writer already does.
                Self::issue_tx(&mut tx, up.issue_id).await?;
                let existing = Self::pr_link_tx(&mut tx, up.issue_id, up.pr_number).await?;
                let link = up.apply(existing.as_ref(), now);
                if existing.is_some() {
                    sqlx::query("UPDATE dispatch_issue_pr SET status = $2, doc = $3 WHERE id = $1")
                        .bind(link.id.0)
                        .bind(link.status.as_str())
                        .bind(Json(&link))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("update PR link"))?;
                } else {
                    sqlx::query("INSERT INTO dispatch_issue_pr (id, issue_id, pr_number, status, created_at, doc) VALUES ($1, $2, $3, $4, $5, $6)")
                        .bind(link.id.0)
                        .bind(link.issue_id.0)
                        .bind(link.pr_number)
                        .bind(link.status.as_str())
                        .bind(Self::ts(link.created_at))
                        .bind(Json(&link))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("insert PR link"))?;
                }
                let history = pr_link_history(existing.as_ref(), &link, actor);
                Self::history_tx(&mut tx, up.issue_id, history, now).await?;
                Self::commit(tx).await?;
                Ok(PrLinkUpsertOutcome {
                    created: existing.is_none(),
                    status_changed: existing.as_ref().is_some_and(|e| e.status != link.status),
                    link,
                })
            }

            async fn list_pr_links(&self, issue: IssueId) -> Result<Vec<PrLink>> {
                let rows = sqlx::query("SELECT doc FROM dispatch_issue_pr WHERE issue_id = $1 ORDER BY created_at DESC, id DESC")
                    .bind(issue.0)
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("list PR links"))?;
                rows.into_iter().map(|r| doc_col!(r, "dispatch_issue_pr", PrLink)).collect()
            }

            async fn pr_links_by_number(&self, pr_number: i64) -> Result<Vec<PrLink>> {
                let rows = sqlx::query("SELECT doc FROM dispatch_issue_pr WHERE pr_number = $1 ORDER BY created_at, id")
                    .bind(pr_number)
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("list PR links"))?;
                rows.into_iter().map(|r| doc_col!(r, "dispatch_issue_pr", PrLink)).collect()
            }

            async fn delete_pr_link(&self, issue: IssueId, id: PrLinkId, actor: &Actor, now: Timestamp) -> Result<bool> {
                let mut tx = self.write_tx().await?;
                let row = sqlx::query(concat!("SELECT doc FROM dispatch_issue_pr WHERE id = $1 AND issue_id = $2", $FU))
                    .bind(id.0)
                    .bind(issue.0)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db("read PR link"))?;
                let Some(row) = row else {
                    Self::commit(tx).await?;
                    return Ok(false);
                };
                let link: PrLink = doc_col!(row, "dispatch_issue_pr", PrLink)?;
                sqlx::query("DELETE FROM dispatch_issue_pr WHERE id = $1")
                    .bind(id.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("delete PR link"))?;
                Self::history_tx(&mut tx, issue, vec![pr_unlink_history(&link, actor)], now).await?;
                Self::commit(tx).await?;
                Ok(true)
            }
        }

        #[async_trait]
        impl AgentStore for $S {
            async fn create_agent(&self, a: &Agent) -> Result<Agent> {
                let mut tx = self.write_tx().await?;
                Self::workspace_tx(&mut tx, a.workspace_id).await?;
                let r = sqlx::query("INSERT INTO dispatch_agent (id, workspace_id, name_key, doc) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
                    .bind(a.id.0)
                    .bind(a.workspace_id.0)
                    .bind(name_key(&a.name))
                    .bind(Json(a))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("insert agent"))?;
                if r.rows_affected() == 0 {
                    return Err(Error::conflict(format!("an agent named {:?} exists", a.name)));
                }
                Self::commit(tx).await?;
                Ok(a.clone())
            }

            async fn get_agent_by_name(&self, ws: WorkspaceId, name: &str) -> Result<Option<Agent>> {
                let row = sqlx::query("SELECT doc FROM dispatch_agent WHERE workspace_id = $1 AND name_key = $2")
                    .bind(ws.0)
                    .bind(name_key(name))
                    .fetch_optional(self.reader())
                    .await
                    .map_err(db("read agent"))?;
                row.map(|r| doc_col!(r, "dispatch_agent", Agent)).transpose()
            }

            async fn list_agents(&self, ws: WorkspaceId, include_inactive: bool) -> Result<Vec<Agent>> {
                let rows = sqlx::query("SELECT doc FROM dispatch_agent WHERE workspace_id = $1 ORDER BY name_key, id")
                    .bind(ws.0)
                    .fetch_all(self.reader())
                    .await
                    .map_err(db("list agents"))?;
                let all: Vec<Agent> = rows.into_iter().map(|r| doc_col!(r, "dispatch_agent", Agent)).collect::<Result<_>>()?;
                Ok(all.into_iter().filter(|a| include_inactive || a.active).collect())
            }

            async fn set_agent_webhook(&self, ws: WorkspaceId, name: &str, webhook: Option<(String, String)>, now: Timestamp) -> Result<Agent> {
                let mut tx = self.write_tx().await?;
                let mut a = Self::agent_tx(&mut tx, ws, name)
                    .await?
                    .ok_or_else(|| Error::not_found(format!("agent {name:?} not found")))?;
                let (url, secret) = webhook.unzip();
                a.webhook_url = url;
                a.webhook_secret = secret;
                a.updated_at = now;
                sqlx::query("UPDATE dispatch_agent SET doc = $2 WHERE id = $1")
                    .bind(a.id.0)
                    .bind(Json(&a))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("update agent"))?;
                Self::commit(tx).await?;
                Ok(a)
            }

            async fn push_agent_event(&self, ws: WorkspaceId, name: &str, event: &NewAgentEvent, cap: usize, now: Timestamp) -> Result<i64> {
                let mut tx = self.write_tx().await?;
                let a = Self::agent_tx(&mut tx, ws, name)
                    .await?
                    .ok_or_else(|| Error::not_found(format!("agent {name:?} not found")))?;
                let seq: i64 = sqlx::query_scalar("INSERT INTO dispatch_agent_event (agent_id, doc, received_at) VALUES ($1, $2, $3) RETURNING seq")
                    .bind(a.id.0)
                    .bind(Json(event))
                    .bind(Self::ts(now))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db("queue agent event"))?;
                sqlx::query("DELETE FROM dispatch_agent_event WHERE agent_id = $1 AND seq <= (SELECT seq FROM dispatch_agent_event WHERE agent_id = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2)")
                    .bind(a.id.0)
                    .bind(to_i64(cap as u64))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("drop old agent events"))?;
                Self::commit(tx).await?;
                Ok(seq)
            }

            async fn take_agent_events(&self, ws: WorkspaceId, name: &str, limit: usize) -> Result<Vec<AgentEvent>> {
                // One statement: concurrent takers each get a disjoint set (a row another taker
                // deleted first is not returned twice).
                let rows = sqlx::query("DELETE FROM dispatch_agent_event WHERE seq IN (\
                     SELECT e.seq FROM dispatch_agent_event e JOIN dispatch_agent a ON a.id = e.agent_id \
                     WHERE a.workspace_id = $1 AND a.name_key = $2 ORDER BY e.seq LIMIT $3) \
                     RETURNING seq, doc, received_at")
                    .bind(ws.0)
                    .bind(name_key(name))
                    .bind(to_i64(limit as u64))
                    .fetch_all(self.autocommit())
                    .await
                    .map_err(db("take agent events"))?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    out.push(AgentEvent {
                        seq: r.try_get("seq").map_err(|e| decode_err("dispatch_agent_event", "seq", e))?,
                        event: doc_col!(r, "dispatch_agent_event", NewAgentEvent)?,
                        received_at: Self::get_ts(&r, "dispatch_agent_event", "received_at")?,
                    });
                }
                out.sort_by_key(|e| e.seq);
                Ok(out)
            }
        }
    }
    };
}
