//! [`PostgresStore`] and [`PostgresEventBus`]: Dispatch for several server processes on one
//! PostgreSQL database.
//!
//! Atomic decisions take locks inside one transaction: identifier allocation locks the workspace
//! row, ingest takes a transaction-scoped advisory lock on the error's key, spawn reservations
//! one on a fixed key (they read global counters), and work is claimed with
//! `FOR NO KEY UPDATE SKIP LOCKED`, so no two processes claim the same run or deferred spawn.

use crate::sql::group_commit::IngestQueue;
use crate::sql::{Migration, StoreError, db, decode_err};
use dispatch_core::ports::{Event, EventBus, EventStream};
use dispatch_core::search::{SearchHit, terms};
use dispatch_core::{Error, Result, Timestamp};
use futures::StreamExt;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row};
use std::sync::Arc;
use std::time::Duration as StdDuration;
use tokio::sync::broadcast;

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "pr_links_agents",
        sql: include_str!("../migrations/postgres/0002_pr_links_agents.sql"),
    },
    Migration {
        version: 3,
        name: "settings",
        sql: include_str!("../migrations/postgres/0003_settings.sql"),
    },
    Migration {
        version: 4,
        name: "usage_carryover",
        sql: include_str!("../migrations/postgres/0004_usage_carryover.sql"),
    },
    Migration {
        version: 5,
        name: "issue_column_order",
        sql: include_str!("../migrations/postgres/0005_issue_column_order.sql"),
    },
    Migration {
        version: 6,
        name: "agent_events",
        sql: include_str!("../migrations/postgres/0006_agent_events.sql"),
    },
    Migration {
        version: 7,
        name: "customer_users",
        sql: include_str!("../migrations/postgres/0007_customer_users.sql"),
    },
    Migration {
        version: 8,
        name: "activity_keys",
        sql: include_str!("../migrations/postgres/0008_activity_keys.sql"),
    },
    Migration {
        version: 9,
        name: "delivery_age",
        sql: include_str!("../migrations/postgres/0009_delivery_age.sql"),
    },
    Migration {
        version: 10,
        name: "orchestrator",
        sql: include_str!("../migrations/postgres/0010_orchestrator.sql"),
    },
    Migration {
        version: 11,
        name: "outbox",
        sql: include_str!("../migrations/postgres/0011_outbox.sql"),
    },
    Migration {
        version: 12,
        name: "ingest_follow_up",
        sql: include_str!("../migrations/postgres/0012_ingest_follow_up.sql"),
    },
    Migration {
        version: 14,
        name: "embedding_queue",
        sql: include_str!("../migrations/postgres/0014_embedding_queue.sql"),
    },
    Migration {
        version: 15,
        name: "import_map",
        sql: include_str!("../migrations/postgres/0015_import_map.sql"),
    },
    Migration {
        version: 16,
        name: "outbox_retention",
        sql: include_str!("../migrations/postgres/0016_outbox_retention.sql"),
    },
];

/// Advisory lock keys (any fixed 64-bit numbers unlikely to collide with an application's own).
const MIGRATION_LOCK: i64 = 0x4449_5350_0001; // "DISP" 1
const SPAWN_LOCK: i64 = 0x4449_5350_0002;

/// The largest NOTIFY payload sent (PostgreSQL refuses more than 8,000 bytes).
const NOTIFY_MAX_BYTES: usize = 7_500;

/// The NOTIFY channel of the event bus.
pub const EVENT_CHANNEL: &str = "dispatch_events";

/// A Dispatch store in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// `pg_trgm` is installed: similarity on titles joins the full-text rank.
    trigram: bool,
    /// The `nearest_issues` query with the `vector` extension's type and operator named by the
    /// schema the extension lives in (any schema, on the search path or not), when it is
    /// installed and the `pgvector` feature is on.
    pgvector: Option<Arc<str>>,
    /// Issue creations, answered in batches by one group-commit worker per process.
    ingest: IngestQueue,
}

impl PostgresStore {
    /// Connects, runs pending migrations and enables the optional extensions it can.
    pub async fn open(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(StdDuration::from_secs(30))
            .connect(url)
            .await
            .map_err(connect_error)?;
        Self::from_pool(pool).await
    }

    /// Uses an existing pool; migrates.
    pub async fn from_pool(pool: PgPool) -> Result<Self> {
        migrate(&pool).await?;
        let trigram = enable_extension(&pool, "pg_trgm").await
            && sqlx::raw_sql("CREATE INDEX IF NOT EXISTS dispatch_issue_title_trgm ON dispatch_issue USING GIN (title gin_trgm_ops)")
                .execute(&pool)
                .await
                .is_ok();
        let pgvector = if cfg!(feature = "pgvector") && enable_extension(&pool, "vector").await {
            vector_schema(&pool)
                .await
                .map(|schema| nearest_by_vector_sql(&schema).into())
        } else {
            None
        };
        tracing::info!(
            trigram,
            pgvector = pgvector.is_some(),
            "PostgreSQL store ready"
        );
        Ok(PostgresStore {
            pool,
            trigram,
            pgvector,
            ingest: IngestQueue::default(),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether embeddings are compared inside PostgreSQL with the `vector` extension.
    pub fn uses_pgvector(&self) -> bool {
        self.pgvector.is_some()
    }

    /// Compares embeddings in Rust over the newest vectors even where the `vector` extension
    /// is installed (what a server without the extension does; the tests run both paths).
    pub fn without_pgvector(mut self) -> Self {
        self.pgvector = None;
        self
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    /// Single statements that write, outside an explicit transaction.
    fn autocommit(&self) -> &PgPool {
        &self.pool
    }

    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(db("begin"))
    }

    /// Concurrent writers: the known keys of an ingest batch are updated in parallel, one
    /// statement per key on its own connection.
    const KNOWN_KEYS_IN_ONE_STATEMENT: bool = false;

    fn ingest_queue(&self) -> &IngestQueue {
        &self.ingest
    }

    fn ts(t: Timestamp) -> Timestamp {
        t
    }

    fn ts_opt(t: Option<Timestamp>) -> Option<Timestamp> {
        t
    }

    fn get_ts(row: &PgRow, table: &'static str, col: &'static str) -> Result<Timestamp> {
        row.try_get(col).map_err(|e| decode_err(table, col, e))
    }

    fn get_ts_opt(
        row: &PgRow,
        table: &'static str,
        col: &'static str,
    ) -> Result<Option<Timestamp>> {
        row.try_get(col).map_err(|e| decode_err(table, col, e))
    }

    /// [`Self::lock_key`] for several keys in one statement, in the order given (callers sort
    /// them, so two transactions locking overlapping sets cannot deadlock). The lock function is
    /// volatile, so PostgreSQL evaluates it after `ORDER BY`, row by row.
    async fn lock_keys(
        tx: &mut sqlx::Transaction<'static, Postgres>,
        keys: &[String],
    ) -> Result<()> {
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest($1::text[]) WITH ORDINALITY AS t(k, n) ORDER BY n",
        )
        .bind(keys)
        .execute(&mut **tx)
        .await
        .map_err(db("advisory locks"))?;
        Ok(())
    }

    async fn lock_key(tx: &mut sqlx::Transaction<'static, Postgres>, key: &str) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(key)
            .execute(&mut **tx)
            .await
            .map_err(db("advisory lock"))?;
        Ok(())
    }

    async fn lock_spawns(tx: &mut sqlx::Transaction<'static, Postgres>) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SPAWN_LOCK)
            .execute(&mut **tx)
            .await
            .map_err(db("spawn lock"))?;
        Ok(())
    }

    fn tsquery(text: &str) -> Option<String> {
        let t = terms(text);
        if t.is_empty() {
            return None;
        }
        Some(
            t.iter()
                .map(|w| format!("{w}:*"))
                .collect::<Vec<_>>()
                .join(" | "),
        )
    }

    async fn text_search(
        &self,
        ws: dispatch_core::ids::WorkspaceId,
        text: &str,
        exclude: Option<dispatch_core::ids::IssueId>,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        let Some(q) = Self::tsquery(text) else {
            return Ok(Vec::new());
        };
        // Only our own constant fragments are spliced in; user text is always bound.
        let sql = if self.trigram {
            "SELECT doc, ts_rank(search, q) + similarity(title, $5) AS score FROM dispatch_issue, to_tsquery('simple', $1) q \
             WHERE workspace_id = $2 AND ($3::uuid IS NULL OR id <> $3) AND (search @@ q OR title % $5) \
             ORDER BY score DESC, number DESC LIMIT $4"
        } else {
            "SELECT doc, ts_rank(search, q) AS score FROM dispatch_issue, to_tsquery('simple', $1) q \
             WHERE workspace_id = $2 AND ($3::uuid IS NULL OR id <> $3) AND search @@ q AND $5::text IS NOT NULL \
             ORDER BY score DESC, number DESC LIMIT $4"
        };
        let rows = sqlx::query(sql)
            .bind(&q)
            .bind(ws.0)
            .bind(exclude.map(|e| e.0))
            .bind(limit as i64)
            .bind(text.chars().take(500).collect::<String>())
            .fetch_all(&self.pool)
            .await
            .map_err(db("search issues"))?;
        rows.into_iter()
            .map(|r| {
                let issue = crate::sql::doc_col!(r, "dispatch_issue", dispatch_core::issue::Issue)?;
                let score: f32 = r
                    .try_get("score")
                    .map_err(|e| decode_err("dispatch_issue", "score", e))?;
                Ok(SearchHit {
                    issue,
                    score: f64::from(score),
                })
            })
            .collect()
    }
}

/// A failed connection: `Unavailable`, with sqlx's error (TLS handshake, refused, auth) as the
/// source and what went wrong named in the message.
fn connect_error(e: sqlx::Error) -> Error {
    const TLS: &str = "TLS failed (check sslmode and sslrootcert)";
    let what = match &e {
        sqlx::Error::Tls(_) => TLS,
        sqlx::Error::Configuration(_) => "the URL is not valid",
        // rustls reports a refused certificate as an I/O error of kind InvalidData that wraps it;
        // the OS reports refused or unreachable addresses with an errno.
        sqlx::Error::Io(io) if io.raw_os_error().is_none() && io.get_ref().is_some() => TLS,
        sqlx::Error::Io(_) => "the server is not reachable",
        _ => "the server refused the connection",
    };
    Error::unavailable(format!("cannot connect to PostgreSQL: {what}")).with_source(e)
}

/// The schema the `vector` extension was installed in.
async fn vector_schema(pool: &PgPool) -> Option<String> {
    sqlx::query_scalar(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'",
    )
    .fetch_optional(pool)
    .await
    .inspect_err(|e| tracing::info!(error = %e, "cannot find the vector extension's schema; falling back"))
    .ok()
    .flatten()
}

/// The nearest-neighbour query over `<=>`, with the extension's type and operator qualified by
/// `schema` (a quoted identifier: a store whose search path does not hold the extension's schema
/// still finds them).
fn nearest_by_vector_sql(schema: &str) -> String {
    let q = format!("\"{}\"", schema.replace('"', "\"\""));
    format!(
        "SELECT i.doc AS doc, 1 - (e.vector::{q}.vector OPERATOR({q}.<=>) $3::real[]::{q}.vector) AS score \
         FROM dispatch_embedding e JOIN dispatch_issue i ON i.id = e.issue_id \
         WHERE e.workspace_id = $1 AND e.model = $2 AND ($4::uuid IS NULL OR e.issue_id <> $4) \
         AND cardinality(e.vector) = cardinality($3::real[]) \
         ORDER BY e.vector::{q}.vector OPERATOR({q}.<=>) $3::real[]::{q}.vector LIMIT $5"
    )
}

async fn enable_extension(pool: &PgPool, name: &'static str) -> bool {
    let sql = match name {
        "pg_trgm" => "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        "vector" => "CREATE EXTENSION IF NOT EXISTS vector",
        _ => return false,
    };
    match sqlx::raw_sql(sql).execute(pool).await {
        Ok(_) => true,
        Err(e) => {
            tracing::info!(extension = name, error = %e, "PostgreSQL extension not available; falling back");
            false
        }
    }
}

/// Applies pending migrations; concurrent migrators (several processes starting at once) wait
/// for each other on an advisory lock.
async fn migrate(pool: &PgPool) -> Result<()> {
    let mut conn = pool.acquire().await.map_err(db("connect"))?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(db("migration lock"))?;
    let result = async {
        sqlx::raw_sql("CREATE TABLE IF NOT EXISTS dispatch_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            .execute(&mut *conn)
            .await
            .map_err(db("create migrations table"))?;
        for m in MIGRATIONS {
            let done = sqlx::query("SELECT 1 FROM dispatch_migrations WHERE version = $1")
                .bind(m.version)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db("read migrations"))?;
            if done.is_some() {
                continue;
            }
            let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(db("begin migration"))?;
            sqlx::raw_sql(m.sql)
                .execute(&mut *tx)
                .await
                .map_err(|source| Error::from(StoreError::Migration { version: m.version, name: m.name, source }))?;
            sqlx::query("INSERT INTO dispatch_migrations (version, name) VALUES ($1, $2)")
                .bind(m.version)
                .bind(m.name)
                .execute(&mut *tx)
                .await
                .map_err(db("record migration"))?;
            tx.commit().await.map_err(db("commit migration"))?;
        }
        Ok::<(), Error>(())
    }
    .await;
    let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    result?;
    unlock.map_err(db("migration unlock"))?;
    Ok(())
}

impl_sql_store!(
    PostgresStore,
    sqlx::Postgres,
    // NO KEY UPDATE: excludes other writers of the row, not the inserts that merely reference
    // it (their foreign keys take KEY SHARE) — so a run update (run, then issue) and an activity
    // insert (issue, then run) cannot deadlock (tests/postgres_lock_order.rs).
    for_update = " FOR NO KEY UPDATE",
    skip_locked = " FOR NO KEY UPDATE SKIP LOCKED"
);
impl_sql_orchestrator_store!(
    PostgresStore,
    sqlx::Postgres,
    for_update = " FOR NO KEY UPDATE"
);
impl_sql_outbox_store!(
    PostgresStore,
    sqlx::Postgres,
    skip_locked = " FOR NO KEY UPDATE SKIP LOCKED"
);
impl_sql_embedding_store!(
    PostgresStore,
    sqlx::Postgres,
    skip_locked = " FOR NO KEY UPDATE OF q SKIP LOCKED",
    dims = "cardinality(e.vector)"
);

impl PostgresStore {
    fn encode_embedding(v: &[f32]) -> Vec<f32> {
        v.to_vec()
    }

    fn decode_embedding(row: &PgRow) -> Result<Vec<f32>> {
        row.try_get("vector")
            .map_err(|e| decode_err("dispatch_embedding", "vector", e))
    }
}

impl_sql_import_store!(PostgresStore, sqlx::Postgres);

#[async_trait::async_trait]
impl dispatch_core::ports::SearchStore for PostgresStore {
    async fn search_issues(
        &self,
        ws: dispatch_core::ids::WorkspaceId,
        query: &str,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        self.text_search(ws, query, None, limit).await
    }

    async fn similar_issues(
        &self,
        issue: dispatch_core::ids::IssueId,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        let row = sqlx::query("SELECT doc FROM dispatch_issue WHERE id = $1")
            .bind(issue.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read issue"))?
            .ok_or_else(|| Error::not_found(format!("issue {issue} not found")))?;
        let i: dispatch_core::issue::Issue =
            crate::sql::doc_col!(row, "dispatch_issue", dispatch_core::issue::Issue)?;
        let text = format!("{} {}", i.title, i.description.as_deref().unwrap_or(""));
        self.text_search(i.workspace_id, &text, Some(issue), limit)
            .await
    }

    async fn set_embedding(
        &self,
        issue: dispatch_core::ids::IssueId,
        model: &str,
        vector: &[f32],
    ) -> Result<()> {
        if vector.is_empty() || vector.iter().any(|x| !x.is_finite()) {
            return Err(Error::invalid(
                "embedding",
                "an embedding must be a non-empty vector of finite numbers",
            ));
        }
        let r = sqlx::query(
            "INSERT INTO dispatch_embedding (issue_id, workspace_id, model, vector) \
             SELECT id, workspace_id, $2, $3 FROM dispatch_issue WHERE id = $1 \
             ON CONFLICT (issue_id) DO UPDATE SET model = excluded.model, vector = excluded.vector",
        )
        .bind(issue.0)
        .bind(model)
        .bind(vector)
        .execute(&self.pool)
        .await
        .map_err(db("store embedding"))?;
        if r.rows_affected() == 0 {
            return Err(Error::not_found(format!("issue {issue} not found")));
        }
        Ok(())
    }

    async fn nearest_issues(
        &self,
        ws: dispatch_core::ids::WorkspaceId,
        model: &str,
        vector: &[f32],
        exclude: Option<dispatch_core::ids::IssueId>,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        if let Some(sql) = &self.pgvector {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .bind(ws.0)
                .bind(model)
                .bind(vector)
                .bind(exclude.map(|e| e.0))
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await
                .map_err(db("nearest issues"))?;
            return rows
                .into_iter()
                .map(|r| {
                    let issue =
                        crate::sql::doc_col!(r, "dispatch_issue", dispatch_core::issue::Issue)?;
                    let score: f64 = r
                        .try_get("score")
                        .map_err(|e| decode_err("dispatch_embedding", "score", e))?;
                    Ok(SearchHit { issue, score })
                })
                .collect();
        }
        use futures::TryStreamExt;
        // Without pgvector: the newest `NEAREST_SCAN_LIMIT` vectors, streamed (memory stays at
        // `limit` hits).
        let mut rows = sqlx::query(
            "SELECT i.doc AS doc, e.vector AS vector FROM dispatch_embedding e JOIN dispatch_issue i ON i.id = e.issue_id \
             WHERE e.workspace_id = $1 AND e.model = $2 AND ($3::uuid IS NULL OR e.issue_id <> $3) \
             ORDER BY i.number DESC LIMIT $4",
        )
        .bind(ws.0)
        .bind(model)
        .bind(exclude.map(|e| e.0))
        .bind(dispatch_core::embedding::NEAREST_SCAN_LIMIT as i64)
        .fetch(&self.pool);
        let mut top = dispatch_core::search::TopK::new(limit);
        while let Some(r) = rows.try_next().await.map_err(db("nearest issues"))? {
            let v: Vec<f32> = r
                .try_get("vector")
                .map_err(|e| decode_err("dispatch_embedding", "vector", e))?;
            let Some(score) = dispatch_core::search::neighbour_score(vector, &v) else {
                continue;
            };
            if top.wants(score) {
                let issue = crate::sql::doc_col!(r, "dispatch_issue", dispatch_core::issue::Issue)?;
                top.push(SearchHit { issue, score });
            }
        }
        Ok(top.into_hits())
    }
}

/// Live events across processes: `publish` is a `NOTIFY` with the small JSON event; one
/// `LISTEN` connection per process fans notifications out to local subscribers. A subscriber
/// on one server process sees what another process published.
#[derive(Debug, Clone)]
pub struct PostgresEventBus {
    pool: PgPool,
    local: broadcast::Sender<Event>,
}

impl PostgresEventBus {
    /// Connects a listener and starts forwarding notifications; returns once LISTEN is active,
    /// so events published after this returns are seen.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(url)
            .await
            .map_err(connect_error)?;
        Self::from_pool(pool).await
    }

    pub async fn from_pool(pool: PgPool) -> Result<Self> {
        let mut listener = PgListener::connect_with(&pool)
            .await
            .map_err(db("listen connect"))?;
        listener.listen(EVENT_CHANNEL).await.map_err(db("listen"))?;
        let (local, _) = broadcast::channel(4096);
        let tx = local.clone();
        tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => match serde_json::from_str::<Event>(n.payload()) {
                        Ok(e) => {
                            let _ = tx.send(e);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "ignoring a malformed event notification")
                        }
                    },
                    // The connection dropped; PgListener reconnects and re-listens on the next
                    // call. Events in between are lost, and viewers resync from the store.
                    Ok(None) => tracing::warn!("event listener reconnecting"),
                    Err(e) => {
                        tracing::warn!(error = %e, "event listener error; retrying");
                        tokio::time::sleep(StdDuration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(PostgresEventBus { pool, local })
    }
}

#[async_trait::async_trait]
impl EventBus for PostgresEventBus {
    async fn publish(&self, event: Event) -> Result<()> {
        let mut payload = serde_json::to_string(&event)
            .map_err(|e| Error::internal(format!("encode event: {e}")))?;
        if payload.len() > NOTIFY_MAX_BYTES {
            // NOTIFY payloads are limited (8,000 bytes): subscribers read the rest from the store.
            payload = serde_json::to_string(&event.without_payload())
                .map_err(|e| Error::internal(format!("encode event: {e}")))?;
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(EVENT_CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await
            .map_err(db("notify"))?;
        Ok(())
    }

    fn subscribe(&self) -> EventStream {
        let rx = self.local.subscribe();
        futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(e) => return Some((e, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed()
    }
}

/// The database's clock, as every process on one PostgreSQL database should read time: leases,
/// stale cutoffs and the UTC day windows of budgets are compared across processes, so a server
/// whose own clock is off would claim runs early, time them out early or count a day twice.
///
/// Reading the database for every `now()` would cost a round trip per decision; instead the
/// offset between the database's `clock_timestamp()` and this process's clock (`base`) is
/// measured (from the middle of the round trip) at start and again every `every`, and `now()`
/// is `base.now()` plus that offset. When a re-measurement fails the last offset stays.
pub struct DatabaseClock {
    base: std::sync::Arc<dyn dispatch_core::Clock>,
    offset_micros: std::sync::Arc<std::sync::atomic::AtomicI64>,
    pool: PgPool,
}

impl DatabaseClock {
    /// Measures the offset once (an error when the database does not answer), then keeps it
    /// fresh from a task that ends when the clock is dropped.
    pub async fn start(
        pool: PgPool,
        base: std::sync::Arc<dyn dispatch_core::Clock>,
        every: StdDuration,
    ) -> Result<std::sync::Arc<Self>> {
        let clock = std::sync::Arc::new(DatabaseClock {
            base,
            offset_micros: std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0)),
            pool,
        });
        clock.resample().await?;
        let weak = std::sync::Arc::downgrade(&clock);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(clock) = weak.upgrade() else { return };
                if let Err(e) = clock.resample().await {
                    tracing::warn!(error = %e, "could not read the database's clock; keeping the last offset");
                }
            }
        });
        Ok(clock)
    }

    /// Measures the offset now.
    pub async fn resample(&self) -> Result<()> {
        let before = self.base.now();
        let db_now: Timestamp = sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(&self.pool)
            .await
            .map_err(db("read the database clock"))?;
        let after = self.base.now();
        let middle = before + (after - before) / 2;
        let offset = (db_now - middle).num_microseconds().unwrap_or(0);
        self.offset_micros
            .store(offset, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// How far the database's clock is ahead of this process's (negative: behind).
    pub fn offset(&self) -> chrono::Duration {
        chrono::Duration::microseconds(
            self.offset_micros
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}

impl dispatch_core::Clock for DatabaseClock {
    fn now(&self) -> Timestamp {
        let base = self.base.now();
        base.checked_add_signed(self.offset()).unwrap_or(base)
    }
}
