//! [`SqliteStore`]: the embedded default, one file, no server.
//!
//! Writes go through ONE writer connection in `BEGIN IMMEDIATE` transactions, so every store
//! call is one atomic decision and concurrent writers in this process queue fairly instead of
//! spinning on `SQLITE_BUSY`; reads use a pool of readers, concurrent with the writer thanks to
//! WAL. A second process on the same file is safe too (the busy timeout makes it wait for the
//! write lock), though PostgreSQL is the store for several server processes.

use crate::sql::group_commit::IngestQueue;
use crate::sql::{Migration, StoreError, db, decode_err, split_statements};
use crate::sqlite_inline::{Bind, Inline, InlineReader};
use dispatch_core::search::{SearchHit, terms};
use dispatch_core::{Error, Result, Timestamp};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite};
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration as StdDuration;

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "pr_links_agents",
        sql: include_str!("../migrations/sqlite/0002_pr_links_agents.sql"),
    },
    Migration {
        version: 3,
        name: "settings",
        sql: include_str!("../migrations/sqlite/0003_settings.sql"),
    },
    Migration {
        version: 4,
        name: "usage_carryover",
        sql: include_str!("../migrations/sqlite/0004_usage_carryover.sql"),
    },
    Migration {
        version: 5,
        name: "issue_column_order",
        sql: include_str!("../migrations/sqlite/0005_issue_column_order.sql"),
    },
    Migration {
        version: 6,
        name: "agent_events",
        sql: include_str!("../migrations/sqlite/0006_agent_events.sql"),
    },
    Migration {
        version: 7,
        name: "customer_users",
        sql: include_str!("../migrations/sqlite/0007_customer_users.sql"),
    },
    Migration {
        version: 8,
        name: "activity_keys",
        sql: include_str!("../migrations/sqlite/0008_activity_keys.sql"),
    },
    Migration {
        version: 9,
        name: "delivery_age",
        sql: include_str!("../migrations/sqlite/0009_delivery_age.sql"),
    },
    Migration {
        version: 10,
        name: "orchestrator",
        sql: include_str!("../migrations/sqlite/0010_orchestrator.sql"),
    },
    Migration {
        version: 11,
        name: "outbox",
        sql: include_str!("../migrations/sqlite/0011_outbox.sql"),
    },
    Migration {
        version: 12,
        name: "ingest_follow_up",
        sql: include_str!("../migrations/sqlite/0012_ingest_follow_up.sql"),
    },
    Migration {
        version: 14,
        name: "embedding_queue",
        sql: include_str!("../migrations/sqlite/0014_embedding_queue.sql"),
    },
    Migration {
        version: 15,
        name: "import_map",
        sql: include_str!("../migrations/sqlite/0015_import_map.sql"),
    },
    Migration {
        version: 16,
        name: "outbox_retention",
        sql: include_str!("../migrations/sqlite/0016_outbox_retention.sql"),
    },
];

/// A Dispatch store in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    /// Error ingests, answered in batches by one group-commit worker.
    ingest: IngestQueue,
    /// The search, answered on the caller's thread (file databases only).
    inline: Option<Arc<InlineReader>>,
    /// Dropped with the last clone of the store: the checkpointer then stops.
    _alive: Arc<()>,
}

/// Ranked full-text search ($1 FTS5 query, $2 workspace, $3 issue to leave out or NULL, $4 limit).
///
/// `CROSS JOIN` keeps the full-text hits as the outer loop, one row-id lookup per hit. Left to
/// itself the planner ran the MATCH once per issue of the workspace (100 ms at 1,000 issues), or
/// walked the workspace's issues through its (workspace, number) index probing an automatic index
/// of the hits: O(issues), not O(hits). The hits are ranked without their documents (`top` sorts
/// row ids, scores and numbers, not every matching issue's JSON); only the page's documents are
/// read. `LIMIT CAST($4 AS INTEGER)`, not `LIMIT $4`: SQLite reads a bare bound LIMIT while
/// planning, so binding it (every call) expired the cached statement and every search parsed and
/// planned the query again. 2.81M -> 1.53M instructions per "checkout" search at 1,000 issues
/// (callgrind, the bundled SQLite 3.51); most of the rest is `bm25()` over every hit.
/// Run inline (see [`crate::sqlite_inline`]) or, past the inline budget, on a reader thread.
const FTS_SEARCH_CSQL: &std::ffi::CStr = c"WITH top AS MATERIALIZED (\
         SELECT f.rowid AS r, dispatch_bm25(dispatch_issue_fts, d.sz, 3.0, 2.0, 1.0) AS score, \
         i.number AS number \
         FROM dispatch_issue_fts f CROSS JOIN dispatch_issue i ON i.rowid = f.rowid \
         LEFT JOIN dispatch_issue_fts_docsize d ON d.id = f.rowid \
         WHERE dispatch_issue_fts MATCH $1 AND i.workspace_id = $2 AND ($3 IS NULL OR i.id <> $3) \
         ORDER BY score, number DESC LIMIT CAST($4 AS INTEGER)) \
     SELECT i.doc AS doc, t.score AS rank FROM top t \
     CROSS JOIN dispatch_issue i ON i.rowid = t.r \
     ORDER BY t.score, t.number DESC";
const FTS_SEARCH_SQL: &str = match FTS_SEARCH_CSQL.to_str() {
    Ok(s) => s,
    Err(_) => panic!("the search SQL is UTF-8"),
};

/// Reader connections. Each is a thread and a page cache; reads are short point lookups and
/// searches, so a few serve a 2-core machine, and the OS page cache holds the file anyway.
const READERS: u32 = 4;
/// Page cache per reader (SQLite's default is 2 MiB per connection; the writer keeps that).
const READER_CACHE_KIB: u32 = 1024;
/// WAL size (frames of one page) from which the checkpointer makes the WAL file start over.
const WAL_RESTART_FRAMES: i64 = 16_384;

/// How often the WAL is checkpointed into the database file.
const CHECKPOINT_EVERY: StdDuration = StdDuration::from_millis(250);

/// Checkpoints the WAL until the store is dropped or closed. The writer never checkpoints on its
/// own (`wal_autocheckpoint=0`): a checkpoint fsyncs, and on the writer every queued write would
/// wait for it. Instead a PASSIVE checkpoint runs from a reader connection every tick; it never
/// waits for readers or the writer and copies what was written up to then. But under a steady
/// stream of writes no checkpoint from another connection ever ends exactly at the end of the
/// WAL, and only then may the next write start the file over: the WAL would grow without bound
/// (1.2 GB in 10 s of sustained issue creation). So once it passes WAL_RESTART_FRAMES (64 MiB
/// of 4 KiB pages), the checkpointer runs one more pass from the reader (to catch up with what
/// was written during the first) and a last PASSIVE pass on the writer connection itself: queued
/// between two writes like any write, it has only the last few frames to copy and sync, and the
/// write after it starts the WAL over. A RESTART checkpoint from the reader would bound the file
/// too, but it and the writer wait for each other in busy-handler sleeps (p99 of issue creation
/// 16–19 ms against 12–13 ms this way).
/// A pooled connection still inside a transaction is closed rather than reused. When a COMMIT
/// fails because the disk is full, SQLite rolls the transaction back by itself; the rollback
/// sqlx then sends fails ("no transaction is active") and sqlx keeps counting the connection
/// as inside a transaction, so every later `BEGIN IMMEDIATE` on the one writer connection was
/// refused ("attempted to call begin_with at non-zero transaction depth") until the process
/// restarted (found by dispatch-server/tests/faults.rs). A fresh connection is clean.
fn discard_if_in_transaction(
    conn: &mut sqlx::SqliteConnection,
    _: sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'_, std::result::Result<bool, sqlx::Error>> {
    use sqlx::Connection as _;
    let clean = !conn.is_in_transaction();
    if !clean {
        tracing::warn!("closing a SQLite connection left inside a failed transaction");
    }
    Box::pin(async move { Ok(clean) })
}

fn spawn_checkpointer(reader: SqlitePool, writer: SqlitePool, alive: Weak<()>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if alive.upgrade().is_none() || reader.is_closed() {
                return;
            }
            if let Err(e) = checkpoint(&reader, &writer).await {
                tracing::debug!(error = %e, "WAL checkpoint failed; retrying at the next tick");
            }
        }
    });
}

async fn checkpoint(
    reader: &SqlitePool,
    writer: &SqlitePool,
) -> std::result::Result<(), sqlx::Error> {
    let started = std::time::Instant::now();
    // (busy, frames in the WAL, frames checkpointed)
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(reader)
        .await?;
    let frames: i64 = row.try_get(1)?;
    if frames >= WAL_RESTART_FRAMES {
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(reader)
            .await?;
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(writer)
            .await?;
    }
    tracing::trace!(
        frames,
        micros = started.elapsed().as_micros() as u64,
        "WAL checkpoint"
    );
    Ok(())
}

/// Registers `dispatch_bm25` (the ranked search's scoring, [`crate::sqlite_rank`]) on a new
/// pooled connection.
fn register_rank(
    conn: &mut sqlx::SqliteConnection,
    _: sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'_, std::result::Result<(), sqlx::Error>> {
    Box::pin(async move {
        let mut handle = conn.lock_handle().await?;
        // SAFETY: the locked handle is an open connection no one else uses meanwhile.
        unsafe { crate::sqlite_rank::register(handle.as_raw_handle().as_ptr()) }.map_err(|rc| {
            sqlx::Error::Configuration(
                format!("SQLite refused the search ranking function (error code {rc})").into(),
            )
        })
    })
}

/// Turns SQLite's memory statistics off before the library's first use in this process. With
/// them on (the bundled build's default), every allocation SQLite makes takes one process-wide
/// mutex to count it, shared by every connection's thread; nothing here reads the statistics.
/// SQLite's configuration is global to the process and can only change before it initialises,
/// hence the `Once` (a later call, or one after another user of SQLite in this process started
/// it, would be refused with SQLITE_MISUSE, which changes nothing).
pub(crate) fn configure_sqlite_library() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `sqlite3_config` takes (op, int) for SQLITE_CONFIG_MEMSTATUS. It is not
        // thread-safe against other SQLite calls; the `Once` runs it once, before this process
        // opens its first connection.
        unsafe {
            libsqlite3_sys::sqlite3_config(
                libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS,
                0 as std::ffi::c_int,
            );
        }
    });
}

/// Makes SQLite allocate from mimalloc (the server's allocator) and initialises it, with its
/// memory statistics off ([`configure_sqlite_library`]). For a program's `main`, before any
/// other thread exists. In glibc, a block freed on another thread than the one that allocated
/// it takes that thread's arena lock, and inline connections move between runtime threads: two
/// threads searching at once spent ~6 % of the CPU waking each other on those locks (perf, MCP
/// search at 16 clients); mimalloc frees such blocks without a lock.
///
/// SQLite's allocator can only change before SQLite initialises; false (nothing changed) when
/// it already has. The library never does this by itself: a change racing another thread that
/// is initialising SQLite would free blocks of one allocator with the other.
///
/// # Safety
/// No other thread uses SQLite during the call (start-up, before any thread is spawned).
pub unsafe fn use_mimalloc_for_sqlite() -> bool {
    let methods = libsqlite3_sys::sqlite3_mem_methods {
        xMalloc: Some(mi::malloc),
        xFree: Some(mi::free),
        xRealloc: Some(mi::realloc),
        xSize: Some(mi::size),
        xRoundup: Some(mi::roundup),
        xInit: Some(mi::init),
        xShutdown: Some(mi::shutdown),
        pAppData: std::ptr::null_mut(),
    };
    configure_sqlite_library();
    // SAFETY: SQLITE_CONFIG_MALLOC takes a pointer to the methods and copies them; the caller
    // promises that no other thread uses SQLite meanwhile. Refused (SQLITE_MISUSE) once SQLite
    // is initialised, changing nothing.
    unsafe {
        if libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MALLOC, &raw const methods)
            != libsqlite3_sys::SQLITE_OK
        {
            return false;
        }
        libsqlite3_sys::sqlite3_initialize() == libsqlite3_sys::SQLITE_OK
    }
}

/// SQLite's allocation methods on mimalloc. SQLite asks for 8-byte alignment; mimalloc gives 16.
mod mi {
    use libmimalloc_sys as m;
    use std::ffi::{c_int, c_void};

    pub(super) unsafe extern "C" fn malloc(n: c_int) -> *mut c_void {
        // SAFETY: any size; SQLite never asks for a negative one (checked anyway).
        usize::try_from(n).map_or(std::ptr::null_mut(), |n| unsafe { m::mi_malloc(n) })
    }

    pub(super) unsafe extern "C" fn free(p: *mut c_void) {
        // SAFETY: `p` came from `malloc`/`realloc` here (or is NULL).
        unsafe { m::mi_free(p) }
    }

    pub(super) unsafe extern "C" fn realloc(p: *mut c_void, n: c_int) -> *mut c_void {
        // SAFETY: as for `free`; SQLite handles a NULL result (its memory is left as it was).
        usize::try_from(n).map_or(std::ptr::null_mut(), |n| unsafe { m::mi_realloc(p, n) })
    }

    pub(super) unsafe extern "C" fn size(p: *mut c_void) -> c_int {
        // SAFETY: `p` came from here; SQLite's allocations are far below 2 GiB.
        c_int::try_from(unsafe { m::mi_usable_size(p) }).unwrap_or(c_int::MAX)
    }

    pub(super) unsafe extern "C" fn roundup(n: c_int) -> c_int {
        let Ok(u) = usize::try_from(n) else { return n };
        // SAFETY: a pure function of the size.
        c_int::try_from(unsafe { m::mi_good_size(u) }).unwrap_or(n)
    }

    pub(super) unsafe extern "C" fn init(_: *mut c_void) -> c_int {
        libsqlite3_sys::SQLITE_OK
    }

    pub(super) unsafe extern "C" fn shutdown(_: *mut c_void) {}
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://path`, `sqlite::memory:` or a
    /// plain file path) and runs pending migrations.
    pub async fn open(url: &str) -> Result<Self> {
        let store = Self::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens without migrating.
    pub async fn connect(url: &str) -> Result<Self> {
        configure_sqlite_library();
        let url = if url.starts_with("sqlite:") {
            url.to_string()
        } else {
            format!("sqlite://{url}")
        };
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let opts = SqliteConnectOptions::from_str(&url)
            .map_err(|e| Error::invalid("DATABASE_URL", format!("not a SQLite URL: {e}")))?
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(if memory {
                SqliteJournalMode::Memory
            } else {
                SqliteJournalMode::Wal
            })
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(StdDuration::from_secs(30));
        let file = opts.get_filename().to_path_buf();
        // An in-memory database exists per connection: share one connection for everything.
        let readers = if memory { 1 } else { READERS };
        // Checkpoints copy the WAL into the database file and fsync it; on the writer they hold
        // every queued write behind them (the tail latency of ingest). So the writer never
        // checkpoints: the checkpointer task does, from a reader connection (see there).
        let writer_opts = if memory {
            opts.clone()
        } else {
            opts.clone().pragma("wal_autocheckpoint", "0")
        };
        // sqlx pings a pooled connection before handing it out (`test_before_acquire`, on by
        // default) and again when it comes back. A SQLite connection is a thread of this
        // process: the ping only asks that thread whether it still runs (a round trip through
        // its channel, two thread wake-ups), and a query on a connection whose thread has died
        // fails by itself. Both pools turn the first ping off; sqlx has no switch for the one on
        // release, which also drops such a connection. One hand-off less on every store call.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(StdDuration::from_secs(60))
            .test_before_acquire(false)
            .before_acquire(discard_if_in_transaction)
            .after_connect(register_rank)
            .connect_with(writer_opts)
            .await
            .map_err(|e| Error::unavailable(format!("cannot open SQLite database {url}: {e}")))?;
        let reader = if memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(readers)
                .acquire_timeout(StdDuration::from_secs(60))
                .test_before_acquire(false)
                .after_connect(register_rank)
                .connect_with(
                    opts.read_only(false)
                        .pragma("cache_size", format!("-{READER_CACHE_KIB}")),
                )
                .await
                .map_err(|e| {
                    Error::unavailable(format!("cannot open SQLite database {url}: {e}"))
                })?
        };
        let alive = Arc::new(());
        let inline = if memory {
            None
        } else {
            spawn_checkpointer(reader.clone(), writer.clone(), Arc::downgrade(&alive));
            Some(Arc::new(InlineReader::new(&file)?))
        };
        Ok(SqliteStore {
            reader,
            writer,
            ingest: IngestQueue::default(),
            inline,
            _alive: alive,
        })
    }

    /// The newest migration this build has (a backup from a newer schema is refused).
    pub fn known_schema_version() -> i64 {
        MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// Applies the migrations this build knows and the database has not seen, in order.
    pub async fn migrate(&self) -> Result<()> {
        let mut conn = self.writer.acquire().await.map_err(db("connect"))?;
        sqlx::query("CREATE TABLE IF NOT EXISTS dispatch_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)")
            .execute(&mut *conn)
            .await
            .map_err(db("create migrations table"))?;
        for m in MIGRATIONS {
            let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE")
                .await
                .map_err(db("begin migration"))?;
            let done = sqlx::query("SELECT 1 FROM dispatch_migrations WHERE version = $1")
                .bind(m.version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("read migrations"))?;
            if done.is_some() {
                continue;
            }
            for stmt in split_statements(m.sql) {
                sqlx::raw_sql(sqlx::AssertSqlSafe(stmt))
                    .execute(&mut *tx)
                    .await
                    .map_err(|source| {
                        Error::from(StoreError::Migration {
                            version: m.version,
                            name: m.name,
                            source,
                        })
                    })?;
            }
            sqlx::query(
                "INSERT INTO dispatch_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(m.version)
            .bind(m.name)
            .bind(Self::ts(chrono::Utc::now()))
            .execute(&mut *tx)
            .await
            .map_err(db("record migration"))?;
            tx.commit().await.map_err(db("commit migration"))?;
        }
        Ok(())
    }

    /// Closes the pools and the inline readers (the WAL is checkpointed when the last
    /// connection closes).
    pub async fn close(&self) {
        if let Some(inline) = &self.inline {
            inline.close();
        }
        self.reader.close().await;
        self.writer.close().await;
    }

    /// One writer: all known keys of an ingest batch in one statement.
    const KNOWN_KEYS_IN_ONE_STATEMENT: bool = true;

    fn ingest_queue(&self) -> &IngestQueue {
        &self.ingest
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// Single statements that write, outside an explicit transaction (the writer connection).
    fn autocommit(&self) -> &SqlitePool {
        &self.writer
    }

    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db("begin write"))
    }

    /// Timestamps are INTEGER microseconds: they compare correctly as numbers, unlike text.
    fn ts(t: Timestamp) -> i64 {
        t.timestamp_micros()
    }

    fn ts_opt(t: Option<Timestamp>) -> Option<i64> {
        t.map(Self::ts)
    }

    fn get_ts(
        row: &sqlx::sqlite::SqliteRow,
        table: &'static str,
        col: &'static str,
    ) -> Result<Timestamp> {
        let v: i64 = row.try_get(col).map_err(|e| decode_err(table, col, e))?;
        chrono::DateTime::from_timestamp_micros(v)
            .ok_or_else(|| decode_err(table, col, format!("timestamp {v} out of range")))
    }

    fn get_ts_opt(
        row: &sqlx::sqlite::SqliteRow,
        table: &'static str,
        col: &'static str,
    ) -> Result<Option<Timestamp>> {
        let v: Option<i64> = row.try_get(col).map_err(|e| decode_err(table, col, e))?;
        v.map(|v| {
            chrono::DateTime::from_timestamp_micros(v)
                .ok_or_else(|| decode_err(table, col, format!("timestamp {v} out of range")))
        })
        .transpose()
    }

    /// The writer lock already serialises every write transaction.
    async fn lock_keys(
        _tx: &mut sqlx::Transaction<'static, Sqlite>,
        _keys: &[String],
    ) -> Result<()> {
        Ok(())
    }

    async fn lock_key(_tx: &mut sqlx::Transaction<'static, Sqlite>, _key: &str) -> Result<()> {
        Ok(())
    }

    async fn lock_spawns(_tx: &mut sqlx::Transaction<'static, Sqlite>) -> Result<()> {
        Ok(())
    }

    /// An FTS5 query that ORs the quoted prefix terms (user text never reaches FTS syntax).
    fn fts_query(text: &str) -> Option<String> {
        let t = terms(text);
        if t.is_empty() {
            return None;
        }
        Some(
            t.iter()
                .map(|w| format!("\"{}\"*", w.replace('"', "")))
                .collect::<Vec<_>>()
                .join(" OR "),
        )
    }

    async fn fts_search(
        &self,
        ws: dispatch_core::ids::WorkspaceId,
        query: &str,
        exclude: Option<dispatch_core::ids::IssueId>,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        if let Some(inline) = &self.inline {
            let exclude = exclude.map(|e| e.0);
            let binds = [
                Bind::Text(query),
                Bind::Blob(ws.0.as_bytes()),
                exclude
                    .as_ref()
                    .map_or(Bind::Null, |e| Bind::Blob(e.as_bytes())),
                Bind::Int(limit as i64),
            ];
            let read = inline.ranked_docs::<dispatch_core::issue::Issue>(
                FTS_SEARCH_CSQL,
                &binds,
                "dispatch_issue",
            );
            if let Inline::Done(rows) = read {
                return Ok(rows
                    .into_iter()
                    .map(|r| SearchHit {
                        issue: r.doc,
                        score: -r.rank,
                    })
                    .collect());
            }
        }
        let rows = sqlx::query(FTS_SEARCH_SQL)
            .bind(query)
            .bind(ws.0)
            .bind(exclude.map(|e| e.0))
            .bind(limit as i64)
            .fetch_all(&self.reader)
            .await
            .map_err(db("search issues"))?;
        rows.into_iter()
            .map(|r| {
                let issue = crate::sql::doc_col!(r, "dispatch_issue", dispatch_core::issue::Issue)?;
                let rank: f64 = r
                    .try_get("rank")
                    .map_err(|e| decode_err("dispatch_issue_fts", "rank", e))?;
                Ok(SearchHit {
                    issue,
                    score: -rank,
                })
            })
            .collect()
    }
}

impl_sql_store!(SqliteStore, sqlx::Sqlite, for_update = "", skip_locked = "");
impl_sql_orchestrator_store!(SqliteStore, sqlx::Sqlite, for_update = "");
impl_sql_outbox_store!(SqliteStore, sqlx::Sqlite, skip_locked = "");
impl_sql_embedding_store!(
    SqliteStore,
    sqlx::Sqlite,
    skip_locked = "",
    dims = "length(e.vector) / 4"
);

impl SqliteStore {
    fn encode_embedding(v: &[f32]) -> Vec<u8> {
        encode_vector(v)
    }

    fn decode_embedding(row: &sqlx::sqlite::SqliteRow) -> Result<Vec<f32>> {
        let b: Vec<u8> = row
            .try_get("vector")
            .map_err(|e| decode_err("dispatch_embedding", "vector", e))?;
        decode_vector(&b)
    }
}

impl_sql_import_store!(SqliteStore, sqlx::Sqlite);

fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode_vector(b: &[u8]) -> Result<Vec<f32>> {
    if !b.len().is_multiple_of(4) {
        return Err(decode_err(
            "dispatch_embedding",
            "vector",
            "length is not a multiple of 4",
        ));
    }
    Ok(b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[async_trait::async_trait]
impl dispatch_core::ports::SearchStore for SqliteStore {
    async fn search_issues(
        &self,
        ws: dispatch_core::ids::WorkspaceId,
        query: &str,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        match Self::fts_query(query) {
            Some(q) => self.fts_search(ws, &q, None, limit).await,
            None => Ok(Vec::new()),
        }
    }

    async fn similar_issues(
        &self,
        issue: dispatch_core::ids::IssueId,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        let row = sqlx::query("SELECT doc FROM dispatch_issue WHERE id = $1")
            .bind(issue.0)
            .fetch_optional(&self.reader)
            .await
            .map_err(db("read issue"))?
            .ok_or_else(|| Error::not_found(format!("issue {issue} not found")))?;
        let i: dispatch_core::issue::Issue =
            crate::sql::doc_col!(row, "dispatch_issue", dispatch_core::issue::Issue)?;
        match Self::fts_query(&format!(
            "{} {}",
            i.title,
            i.description.as_deref().unwrap_or("")
        )) {
            Some(q) => {
                self.fts_search(i.workspace_id, &q, Some(issue), limit)
                    .await
            }
            None => Ok(Vec::new()),
        }
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
        let mut tx = self.write_tx().await?;
        let row = sqlx::query("SELECT workspace_id FROM dispatch_issue WHERE id = $1")
            .bind(issue.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("read issue"))?
            .ok_or_else(|| Error::not_found(format!("issue {issue} not found")))?;
        let ws: uuid::Uuid = row
            .try_get("workspace_id")
            .map_err(|e| decode_err("dispatch_issue", "workspace_id", e))?;
        sqlx::query(
            "INSERT INTO dispatch_embedding (issue_id, workspace_id, model, vector) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (issue_id) DO UPDATE SET model = excluded.model, vector = excluded.vector",
        )
        .bind(issue.0)
        .bind(ws)
        .bind(model)
        .bind(encode_vector(vector))
        .execute(&mut *tx)
        .await
        .map_err(db("store embedding"))?;
        tx.commit().await.map_err(db("commit"))
    }

    async fn nearest_issues(
        &self,
        ws: dispatch_core::ids::WorkspaceId,
        model: &str,
        vector: &[f32],
        exclude: Option<dispatch_core::ids::IssueId>,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        use futures::TryStreamExt;
        // The newest `NEAREST_SCAN_LIMIT` vectors, streamed: memory stays at `limit` hits.
        let mut rows = sqlx::query(
            "SELECT i.doc AS doc, e.vector AS vector FROM dispatch_embedding e JOIN dispatch_issue i ON i.id = e.issue_id \
             WHERE e.workspace_id = $1 AND e.model = $2 AND ($3 IS NULL OR e.issue_id <> $3) \
             ORDER BY i.number DESC LIMIT $4",
        )
        .bind(ws.0)
        .bind(model)
        .bind(exclude.map(|e| e.0))
        .bind(dispatch_core::embedding::NEAREST_SCAN_LIMIT as i64)
        .fetch(&self.reader);
        let mut top = dispatch_core::search::TopK::new(limit);
        while let Some(r) = rows.try_next().await.map_err(db("nearest issues"))? {
            let v: Vec<u8> = r
                .try_get("vector")
                .map_err(|e| decode_err("dispatch_embedding", "vector", e))?;
            let Some(score) = dispatch_core::search::neighbour_score(vector, &decode_vector(&v)?)
            else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use libsqlite3_sys as ffi;

    async fn store() -> (SqliteStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("dispatch-fts-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(&dir.join("t.db").to_string_lossy())
            .await
            .unwrap();
        (store, dir)
    }

    /// A store with `n` issues titled "checkout fails for tenant {i}" (every eighth also
    /// "invoice" in its description) in workspace ACME.
    async fn seeded(
        n: usize,
    ) -> (
        SqliteStore,
        std::path::PathBuf,
        dispatch_core::ids::WorkspaceId,
    ) {
        use dispatch_core::ports::{IssueStore as _, WorkspaceStore as _};
        let (store, dir) = store().await;
        let now = chrono::Utc::now();
        let ws = store.ensure_workspace("Acme", "ACME", now).await.unwrap();
        for i in 0..n {
            let mut new =
                dispatch_core::issue::NewIssue::titled(format!("checkout fails for tenant {i}"));
            if i % 8 == 0 {
                new.description = Some(format!("invoice {i} is wrong after checkout"));
            }
            store
                .create_issue(
                    ws.id,
                    new,
                    &dispatch_core::issue::Actor::user("test"),
                    now,
                    &Default::default(),
                )
                .await
                .unwrap();
        }
        (store, dir, ws.id)
    }

    fn ranked(hits: &[SearchHit]) -> Vec<(String, f64)> {
        hits.iter()
            .map(|h| (h.issue.identifier.clone(), h.score))
            .collect()
    }

    /// The search runs on the caller's thread while it stays within its budget of SQLite
    /// steps; past it, the read stops and the reader threads answer it, with the same ranking
    /// (the same statement on another connection).
    #[tokio::test]
    async fn a_search_past_the_inline_budget_is_answered_by_the_reader_threads_alike() {
        use dispatch_core::ports::SearchStore as _;
        let (store, dir, ws) = seeded(60).await;
        let inline = store.inline.clone().expect("a file database reads inline");
        let q = SqliteStore::fts_query("checkout").unwrap();
        let binds = [
            Bind::Text(&q),
            Bind::Blob(ws.0.as_bytes()),
            Bind::Null,
            Bind::Int(50),
        ];
        let within = inline.ranked_docs::<dispatch_core::issue::Issue>(
            FTS_SEARCH_CSQL,
            &binds,
            "dispatch_issue",
        );
        assert!(
            matches!(&within, Inline::Done(rows) if rows.len() == 50),
            "{within:?}"
        );
        let tight = Arc::new(
            InlineReader::new(&dir.join("t.db"))
                .unwrap()
                .with_step_budget(0),
        );
        let over = tight.ranked_docs::<dispatch_core::issue::Issue>(
            FTS_SEARCH_CSQL,
            &binds,
            "dispatch_issue",
        );
        assert!(matches!(over, Inline::Declined), "{over:?}");

        let inline_hits = store
            .search_issues(ws, "checkout invoice", 20)
            .await
            .unwrap();
        let fallback = SqliteStore {
            inline: Some(tight),
            ..store.clone()
        };
        let thread_hits = fallback
            .search_issues(ws, "checkout invoice", 20)
            .await
            .unwrap();
        let no_inline = SqliteStore {
            inline: None,
            ..store.clone()
        };
        let reader_hits = no_inline
            .search_issues(ws, "checkout invoice", 20)
            .await
            .unwrap();
        assert_eq!(inline_hits.len(), 20);
        assert_eq!(
            inline_hits[0].issue.title, "checkout fails for tenant 56",
            "both words, the newest first among equals"
        );
        assert_eq!(ranked(&inline_hits), ranked(&thread_hits));
        assert_eq!(ranked(&inline_hits), ranked(&reader_hits));
        // A read that fails inline (here: its file cannot be opened) is the pool's to answer.
        let broken = SqliteStore {
            inline: Some(Arc::new(
                InlineReader::new(&dir.join("missing").join("t.db")).unwrap(),
            )),
            ..store.clone()
        };
        let broken_hits = broken
            .search_issues(ws, "checkout invoice", 20)
            .await
            .unwrap();
        assert_eq!(ranked(&inline_hits), ranked(&broken_hits));

        // Closed: the inline reader declines and the closed pool answers.
        store.close().await;
        assert!(matches!(
            inline.ranked_docs::<dispatch_core::issue::Issue>(
                FTS_SEARCH_CSQL,
                &binds,
                "dispatch_issue"
            ),
            Inline::Declined
        ));
        assert!(store.search_issues(ws, "checkout", 5).await.is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An inline read ends its read transaction with the read: the next one sees what the
    /// writer committed meanwhile.
    #[tokio::test]
    async fn inline_searches_see_every_commit() {
        use dispatch_core::ports::{IssueStore as _, SearchStore as _};
        let (store, dir, ws) = seeded(3).await;
        assert_eq!(
            store.search_issues(ws, "refund", 10).await.unwrap().len(),
            0
        );
        let now = chrono::Utc::now();
        let made = store
            .create_issue(
                ws,
                dispatch_core::issue::NewIssue::titled("refund twice"),
                &dispatch_core::issue::Actor::user("test"),
                now,
                &Default::default(),
            )
            .await
            .unwrap();
        let hits = store.search_issues(ws, "refund", 10).await.unwrap();
        assert_eq!(ranked(&hits).len(), 1);
        assert_eq!(hits[0].issue.id, made.id);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The search walks the hits and looks each issue up by row id: never a walk of the
    /// workspace's issues probing an automatic index of the hits (O(issues), 1,000 issues made a
    /// search ~0.8M instructions dearer).
    #[tokio::test]
    async fn search_looks_up_each_hit_by_row_id() {
        let (store, dir) = store().await;
        let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {FTS_SEARCH_SQL}"
        )))
        .bind("\"checkout\"*")
        .bind(uuid::Uuid::now_v7())
        .bind(None::<uuid::Uuid>)
        .bind(10_i64)
        .fetch_all(&store.reader)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("detail"))
        .collect();
        let loops: Vec<&str> = plan
            .iter()
            .map(String::as_str)
            .filter(|d| d.starts_with("SCAN ") || d.starts_with("SEARCH "))
            .collect();
        assert!(
            loops.first().is_some_and(|d| d.contains("VIRTUAL TABLE")),
            "the full-text hits are the outer loop: {plan:?}"
        );
        assert!(
            loops
                .iter()
                .filter(|d| d.contains(" i "))
                .all(|d| d.starts_with("SEARCH i USING INTEGER PRIMARY KEY (rowid=?)")),
            "issues are looked up by row id: {plan:?}"
        );
        assert!(!plan.iter().any(|d| d.contains("AUTOMATIC")), "{plan:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Binding the search's parameters again (every call) keeps the compiled statement: a bound
    /// value SQLite reads while planning (a bare `LIMIT $4`) made it parse and plan the query on
    /// every call.
    #[tokio::test]
    async fn search_statement_is_not_prepared_again_when_bound_again() {
        let (store, dir) = store().await;
        let mut conn = store.reader.acquire().await.unwrap();
        let mut handle = conn.lock_handle().await.unwrap();
        let db = handle.as_raw_handle().as_ptr();
        let sql = std::ffi::CString::new(FTS_SEARCH_SQL).unwrap();
        let ws = [7_u8; 16];
        // SAFETY: `db` is an open connection locked out of sqlx's worker for this scope; the
        // statement is finalised before the scope ends; bound text and blob outlive every step
        // (SQLITE_STATIC: `sql`, `ws` and the literal live to the end of the block).
        let reprepared = unsafe {
            let mut stmt = std::ptr::null_mut();
            let rc = ffi::sqlite3_prepare_v3(
                db,
                sql.as_ptr(),
                -1,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                std::ptr::null_mut(),
            );
            assert_eq!(rc, ffi::SQLITE_OK);
            for limit in [10, 10, 50] {
                ffi::sqlite3_bind_text(stmt, 1, c"\"checkout\"*".as_ptr(), -1, None);
                ffi::sqlite3_bind_blob(stmt, 2, ws.as_ptr().cast(), 16, None);
                ffi::sqlite3_bind_null(stmt, 3);
                ffi::sqlite3_bind_int64(stmt, 4, limit);
                while ffi::sqlite3_step(stmt) == ffi::SQLITE_ROW {}
                assert_eq!(ffi::sqlite3_reset(stmt), ffi::SQLITE_OK);
            }
            let n = ffi::sqlite3_stmt_status(stmt, ffi::SQLITE_STMTSTATUS_REPREPARE, 0);
            ffi::sqlite3_finalize(stmt);
            n
        };
        assert_eq!(reprepared, 0, "the search statement was prepared again");
        drop(handle);
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
