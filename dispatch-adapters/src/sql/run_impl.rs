//! [`RunStore`](dispatch_core::ports::RunStore) for SQLite and PostgreSQL: spawn reservations
//! under the spawn lock, runs, deferred spawns, terminal output and activities.

macro_rules! impl_sql_run_store {
    ($S:ident, for_update = $FU:literal, skip_locked = $SKIP:literal) => {
        mod sql_run_impl {
            #[allow(unused_imports)]
            use super::*;
            use super::sql_store_shared::*;
            use dispatch_core::Timestamp;
            use dispatch_core::clock::utc_day_start;
            use dispatch_core::error::{Error, Result};
            use dispatch_core::ids::{DeferredSpawnId, IssueId, RunId};
            use dispatch_core::issue::{Actor, Issue};
            use dispatch_core::ports::{
                DeferredSpawn, RunStore, RunUpdate, SpawnRequest, SpawnReservation, SpawnStats,
            };
            use dispatch_core::run::{
                Activity, ActivityType, ChunkAppend, NewActivity, ReservationInputs, Run, RunPatch,
                RunUpdatePlan, TerminalChunk, plan_chunk_append, plan_reservation, replayed_chunk,
            };
            use crate::sql::{db, decode_err, to_i64, to_u64};
            use async_trait::async_trait;
            use chrono::Duration;
            use sqlx::types::Json;
            use std::collections::BTreeMap;

            impl $S {
                /// The one insert of terminal output (appends and the import).
                pub(super) fn insert_chunk_query<'q>(c: &'q TerminalChunk) -> DbQuery<'q> {
                    sqlx::query("INSERT INTO dispatch_terminal_chunk (run_id, seq, content, at) VALUES ($1, $2, $3, $4)")
                        .bind(c.run_id.0)
                        .bind(to_i64(c.seq))
                        .bind(&c.content)
                        .bind(Self::ts(c.at))
                }

                /// The one insert of activities (callbacks and the import): no row when `key`,
                /// the sender's idempotency key, is stored for the issue already.
                pub(super) fn insert_activity_query<'q>(a: &'q Activity, key: Option<&'q str>) -> DbQuery<'q> {
                    sqlx::query("INSERT INTO dispatch_activity (id, issue_id, run_id, kind, content, metadata, created_at, idempotency_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING")
                        .bind(a.id.0)
                        .bind(a.issue_id.0)
                        .bind(a.run_id.map(|r| r.0))
                        .bind(a.kind.as_str())
                        .bind(&a.content)
                        .bind(Json(&a.metadata))
                        .bind(Self::ts(a.created_at))
                        .bind(key)
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

                pub(super) async fn insert_run_tx(tx: &mut Tx, r: &Run) -> Result<()> {
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
                    .bind(Self::ts(r.alive_at()))
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
                    .bind(Self::ts(r.alive_at()))
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

                pub(super) async fn recompute_totals_tx(tx: &mut Tx, issue_id: IssueId) -> Result<()> {
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

                async fn activity_by_key_tx(tx: &mut Tx, issue: IssueId, key: &str) -> Result<Option<Activity>> {
                    let row = sqlx::query("SELECT * FROM dispatch_activity WHERE issue_id = $1 AND idempotency_key = $2")
                        .bind(issue.0)
                        .bind(key)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(db("read activity"))?;
                    row.as_ref().map(Self::row_activity).transpose()
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
                    let reservation = SpawnReservation { decision: plan.decision, run: plan.insert_run, issue };
                    let deliveries = req.outbox.render(&reservation)?;
                    Self::enqueue_deliveries_tx(&mut tx, deliveries, now).await?;
                    Self::commit(tx).await?;
                    Ok(reservation)
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
                    let update = RunUpdate { run, issue, status_changed, ended, cost_before_usd: before.cost_usd };
                    let deliveries = patch.outbox.render(&update)?;
                    Self::enqueue_deliveries_tx(&mut tx, deliveries, now).await?;
                    Self::commit(tx).await?;
                    Ok(update)
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
                    Self::insert_chunk_query(&c)
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
                    let inserted = Self::insert_activity_query(&a, key.as_deref())
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
        }
    };
}
