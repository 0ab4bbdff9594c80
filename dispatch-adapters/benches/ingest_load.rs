//! Ingest load: `ErrorLinkStore::ingest_error` through `SqliteStore` and `PostgresStore` at
//! several concurrencies, side by side with each database's own ceiling measured in the same run
//! on the same machine.
//!
//! Scenarios, per store and concurrency (N tasks calling in a loop for a fixed duration):
//! - `known`: every call ingests the SAME key (the dedupe path: add to the count);
//! - `new`: every call ingests a fresh key (issue creation with a new identifier).
//!
//! Ceilings (measured interleaved with the store, see `--rounds`):
//! - SQLite: a bare `INSERT … ON CONFLICT(k) DO UPDATE SET n = n + 1` loop through sqlx on a
//!   separate file with the store's pragmas (WAL, synchronous=NORMAL) and one writer connection;
//! - PostgreSQL: `pgbench -n -M prepared -c N -j min(N,2) -T secs -f script.sql` with a one-row
//!   upsert script against a scratch table (its `tps = …` line), plus the same upsert looped
//!   through sqlx for reference (the client-side cost).
//!
//! `--stall-check` adds 256 tasks creating new fingerprints for a few seconds per store: the
//! maximum single-call latency, and whether every task completed at least one call.
//!
//! Run: `cargo bench -p dispatch-adapters --all-features --bench ingest_load -j2 -- [options]`
//!
//! Options (or the environment variable in brackets):
//! - `--secs S` [`INGEST_BENCH_SECS`]: measured seconds per scenario (default 5);
//! - `--warmup S` [`INGEST_BENCH_WARMUP`]: unmeasured seconds before each (default 1);
//! - `--rounds R` [`INGEST_BENCH_ROUNDS`]: the measured time is cut into R slices, store and
//!   ceiling alternating, so that other load on the machine weighs on both alike (default 5);
//! - `--concurrency 1,8,16` [`INGEST_BENCH_CONCURRENCY`];
//! - `--stores sqlite,postgres` [`INGEST_BENCH_STORES`];
//! - `--paths known,new` [`INGEST_BENCH_PATHS`];
//! - `--stall-check` [`INGEST_BENCH_STALL_CHECK=1`], `--stall-tasks 256`, `--stall-secs 5`;
//! - `--breakdown` [`INGEST_BENCH_BREAKDOWN=1`]: where SQLite's known-key time goes: the store's
//!   known-key statement through a separate single-writer pool on the store's file, alone, with
//!   its RETURNING decoded, and inside `BEGIN IMMEDIATE … COMMIT`, next to `ingest_error` itself;
//! - `--pg-url URL` [`INGEST_BENCH_PG_URL`]: the bench database, dropped and created afresh,
//!   dropped again at the end (default `postgres://postgres@127.0.0.1:5432/dispatch_bench`;
//!   never the test database);
//! - `--pool N` [`INGEST_BENCH_PG_POOL`]: the PostgresStore pool size (default 16, as `open`).
//!
//! SQLite files go to a fresh directory under the system temp dir, removed at the end.

use dispatch_adapters::postgres::PostgresStore;
use dispatch_adapters::sqlite::SqliteStore;
use dispatch_core::event::{
    ErrorEvent, fingerprint, fingerprint_message, issue_description, issue_title, priority_for,
};
use dispatch_core::ids::WorkspaceId;
use dispatch_core::issue::{Actor, NewIssue, NewLabel, names};
use dispatch_core::ports::{IngestDraft, Store};
use futures::future::BoxFuture;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/dispatch_bench";
const KNOWN_KEY_CEILING: &str = "0f3a9c2e4b6d8f1a3c5e7b9d2f4a6c8e1b3d5f7a9c2e4b6d8f1a3c5e7b9d2f4a";

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type AnyResult<T> = std::result::Result<T, BoxError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "SqliteStore",
            Kind::Postgres => "PostgresStore",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IngestPath {
    Known,
    New,
}

impl IngestPath {
    fn name(self) -> &'static str {
        match self {
            IngestPath::Known => "known",
            IngestPath::New => "new",
        }
    }
}

#[derive(Debug, Clone)]
struct Args {
    secs: f64,
    warmup: f64,
    rounds: usize,
    concurrency: Vec<usize>,
    stores: Vec<Kind>,
    paths: Vec<IngestPath>,
    stall_check: bool,
    breakdown: bool,
    stall_tasks: usize,
    stall_secs: f64,
    pg_url: String,
    pg_pool: u32,
}

fn parse_args() -> AnyResult<Args> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let mut a = Args {
        secs: env("INGEST_BENCH_SECS")
            .map(|v| v.parse())
            .transpose()?
            .unwrap_or(5.0),
        warmup: env("INGEST_BENCH_WARMUP")
            .map(|v| v.parse())
            .transpose()?
            .unwrap_or(1.0),
        rounds: env("INGEST_BENCH_ROUNDS")
            .map(|v| v.parse())
            .transpose()?
            .unwrap_or(5),
        concurrency: parse_list(
            &env("INGEST_BENCH_CONCURRENCY").unwrap_or_else(|| "1,8,16".into()),
        )?,
        stores: parse_stores(
            &env("INGEST_BENCH_STORES").unwrap_or_else(|| "sqlite,postgres".into()),
        )?,
        paths: parse_paths(&env("INGEST_BENCH_PATHS").unwrap_or_else(|| "known,new".into()))?,
        stall_check: env("INGEST_BENCH_STALL_CHECK").is_some_and(|v| v == "1" || v == "true"),
        breakdown: env("INGEST_BENCH_BREAKDOWN").is_some_and(|v| v == "1" || v == "true"),
        stall_tasks: 256,
        stall_secs: 5.0,
        pg_url: env("INGEST_BENCH_PG_URL").unwrap_or_else(|| DEFAULT_PG_URL.into()),
        pg_pool: env("INGEST_BENCH_PG_POOL")
            .map(|v| v.parse())
            .transpose()?
            .unwrap_or(16),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            // cargo bench passes `--bench` to harness = false targets.
            "--bench" => {}
            "--secs" => a.secs = value("--secs")?.parse()?,
            "--warmup" => a.warmup = value("--warmup")?.parse()?,
            "--rounds" => a.rounds = value("--rounds")?.parse()?,
            "--concurrency" => a.concurrency = parse_list(&value("--concurrency")?)?,
            "--stores" => a.stores = parse_stores(&value("--stores")?)?,
            "--paths" => a.paths = parse_paths(&value("--paths")?)?,
            "--stall-check" => a.stall_check = true,
            "--breakdown" => a.breakdown = true,
            "--stall-tasks" => a.stall_tasks = value("--stall-tasks")?.parse()?,
            "--stall-secs" => a.stall_secs = value("--stall-secs")?.parse()?,
            "--pg-url" => a.pg_url = value("--pg-url")?,
            "--pool" => a.pg_pool = value("--pool")?.parse()?,
            "-h" | "--help" => {
                eprintln!(
                    "see the header of dispatch-adapters/benches/ingest_load.rs for the options"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if a.secs <= 0.0 || a.warmup < 0.0 || a.stall_secs <= 0.0 {
        return Err("durations must be positive".into());
    }
    Ok(a)
}

fn parse_list(s: &str) -> AnyResult<Vec<usize>> {
    let v: Vec<usize> = s
        .split(',')
        .map(|x| x.trim().parse::<usize>())
        .collect::<Result<_, _>>()?;
    if v.is_empty() || v.contains(&0) {
        return Err("concurrency must be a list of positive numbers".into());
    }
    Ok(v)
}

fn parse_stores(s: &str) -> AnyResult<Vec<Kind>> {
    s.split(',')
        .map(|x| match x.trim() {
            "sqlite" => Ok(Kind::Sqlite),
            "postgres" | "pg" => Ok(Kind::Postgres),
            o => Err(format!("unknown store {o:?}").into()),
        })
        .collect()
}

fn parse_paths(s: &str) -> AnyResult<Vec<IngestPath>> {
    s.split(',')
        .map(|x| match x.trim() {
            "known" => Ok(IngestPath::Known),
            "new" => Ok(IngestPath::New),
            o => Err(format!("unknown path {o:?}").into()),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The load loop

/// What one timed run measured.
#[derive(Debug, Default, Clone)]
struct Stats {
    /// Calls completed inside the measured window.
    ops: u64,
    errors: u64,
    first_error: Option<String>,
    window: Duration,
    /// Latencies (ns) of the calls started inside the window, sorted.
    lat: Vec<u64>,
    /// Calls each task completed inside the window.
    per_task: Vec<u64>,
    /// Successful calls overall (warm-up and overrun included), for the sanity checks.
    total_ok: u64,
}

impl Stats {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.window.as_secs_f64()
    }

    fn pct_ms(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat.len() as f64 * p).ceil() as usize).clamp(1, self.lat.len()) - 1;
        self.lat[i] as f64 / 1e6
    }

    fn max_ms(&self) -> f64 {
        self.lat.last().map_or(f64::NAN, |&x| x as f64 / 1e6)
    }

    /// Adds another slice of the same scenario (latencies are sorted again by the caller).
    fn merge(&mut self, o: Stats) {
        self.ops += o.ops;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.window += o.window;
        self.lat.extend(o.lat);
        if self.per_task.len() < o.per_task.len() {
            self.per_task.resize(o.per_task.len(), 0);
        }
        for (a, b) in self.per_task.iter_mut().zip(o.per_task) {
            *a += b;
        }
        self.total_ok += o.total_ok;
    }
}

/// Call numbers, unique over the whole run (fresh keys stay fresh across rounds).
static SEQ: AtomicU64 = AtomicU64::new(0);

type Op = Arc<dyn Fn(usize, u64) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// `tasks` tasks call `op` in a loop: `warmup` unmeasured, then `measure` measured. Every call
/// started before the end is awaited (its latency counts; it counts as an op only when it
/// completed inside the window).
async fn run_load(tasks: usize, warmup: Duration, measure: Duration, op: Op) -> Stats {
    let start = Instant::now();
    let measure_start = start + warmup;
    let end = measure_start + measure;
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let op = op.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            let (mut ops, mut errors, mut ok) = (0u64, 0u64, 0u64);
            let mut first_error = None;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let r = op(t, SEQ.fetch_add(1, Ordering::Relaxed)).await;
                let t1 = Instant::now();
                if r.is_ok() && t1 >= measure_start && t1 <= end {
                    ops += 1;
                }
                match r {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        if t0 >= measure_start {
                            errors += 1;
                        }
                        first_error.get_or_insert(e);
                    }
                }
                if t0 >= measure_start {
                    lat.push(u64::try_from((t1 - t0).as_nanos()).unwrap_or(u64::MAX));
                }
            }
            (lat, ops, errors, ok, first_error)
        }));
    }
    let mut s = Stats {
        window: measure,
        ..Stats::default()
    };
    for h in handles {
        let (lat, ops, errors, ok, first_error) = h.await.expect("load task panicked");
        s.lat.extend(lat);
        s.ops += ops;
        s.errors += errors;
        s.total_ok += ok;
        s.per_task.push(ops);
        if s.first_error.is_none() {
            s.first_error = first_error;
        }
    }
    s.lat.sort_unstable();
    s
}

// ---------------------------------------------------------------------------------------------
// The ingest draft, built as `Dispatch::ingest` builds it

struct DraftTemplate {
    draft: IngestDraft,
    normalized: String,
    nonce: String,
}

fn sample_event() -> ErrorEvent {
    let mut e = ErrorEvent::new(
        "loki",
        "checkout-api",
        "payments",
        "TypeError: Cannot read properties of undefined (reading 'amount') while capturing order 83412 for customer 5d1e9a2c-77b1-4f0e-9a55-2c1f0b7d9e41",
    );
    e.level = "error".into();
    e.error_message = Some("Cannot read properties of undefined (reading 'amount')".into());
    e.stack_trace = Some(
        "TypeError: Cannot read properties of undefined (reading 'amount')\n    at capturePayment (/app/src/payments/capture.ts:118:31)\n    at processOrder (/app/src/orders/process.ts:57:11)\n    at async Router.handle (/app/node_modules/express/lib/router/index.js:284:7)"
            .into(),
    );
    e.sample_lines = vec![
        "2024-05-04T10:12:03.114Z error capture failed order=83412 attempt=1".into(),
        "2024-05-04T10:12:03.571Z error capture failed order=83413 attempt=1".into(),
    ];
    e.labels = BTreeMap::from([
        ("app".to_string(), "checkout-api".to_string()),
        ("namespace".to_string(), "prod".to_string()),
        (
            "pod".to_string(),
            "checkout-api-7d9f8c6b5-x2k4q".to_string(),
        ),
        ("env".to_string(), "production".to_string()),
        ("level".to_string(), "error".to_string()),
    ]);
    e.values = BTreeMap::from([("A".to_string(), "17".to_string())]);
    e.link = Some("https://grafana.invalid/explore?orgId=1&left=%5B%22now-1h%22%5D".into());
    e
}

async fn draft_template(store: &dyn Store, ws: WorkspaceId) -> AnyResult<DraftTemplate> {
    let event = sample_event();
    let (normalized, fp) = fingerprint_message(&event.source, &event.feature, &event.message);
    let label = store
        .ensure_label(ws, NewLabel::new(names::LABEL_LOKI, names::COLOR_LOKI))
        .await?;
    let new_issue = NewIssue {
        title: issue_title(&event),
        description: Some(issue_description(&event, &normalized, &fp)),
        column_id: None,
        priority: priority_for(&event),
        assignee: None,
        labels: vec![label.id],
        customer_id: None,
        reporter_id: None,
        customer_watches: false,
    };
    let metadata = json!({
        "source": event.source,
        "feature": event.feature,
        "message": event.message,
        "normalizedMsg": normalized,
        "level": event.level,
        "labels": event.labels,
        "errorMessage": event.error_message,
        "stackTrace": event.stack_trace,
    });
    let draft = IngestDraft {
        source: event.origin.clone(),
        external_key: fp.0.clone(),
        fingerprint: fp.0.clone(),
        url: event.link.clone(),
        metadata,
        event_count: 1,
        seen_at: chrono::Utc::now(),
        new_issue,
        actor: Actor::webhook("Loki Webhook"),
        outbox: Default::default(),
    };
    Ok(DraftTemplate {
        draft,
        normalized,
        nonce: uuid::Uuid::now_v7().simple().to_string(),
    })
}

impl DraftTemplate {
    fn known(&self) -> IngestDraft {
        let mut d = self.draft.clone();
        d.seen_at = chrono::Utc::now();
        d
    }

    /// A fresh fingerprint per call (as a distinct message would give), same issue text.
    fn new_key(&self, n: u64) -> IngestDraft {
        let mut d = self.draft.clone();
        let fp = fingerprint(
            "checkout-api",
            "payments",
            &format!("{} #{}-{n}", self.normalized, self.nonce),
        );
        d.external_key = fp.0.clone();
        d.fingerprint = fp.0;
        d.seen_at = chrono::Utc::now();
        d
    }
}

// ---------------------------------------------------------------------------------------------
// Stores under test and their ceilings

struct Env {
    args: Args,
    tmp: PathBuf,
    pg_admin: Option<PgPool>,
    pg_bench: Option<PgPool>,
    pg_opts: Option<PgConnectOptions>,
    pgbench: Option<PathBuf>,
    scenario: AtomicU64,
}

impl Env {
    fn next_id(&self) -> u64 {
        self.scenario.fetch_add(1, Ordering::Relaxed)
    }

    fn bench_pool(&self) -> AnyResult<&PgPool> {
        Ok(self.pg_bench.as_ref().ok_or("no PostgreSQL")?)
    }

    fn pg_opts(&self) -> AnyResult<PgConnectOptions> {
        Ok(self.pg_opts.clone().ok_or("no PostgreSQL")?)
    }
}

enum Cleanup {
    Sqlite(SqliteStore, PathBuf),
    Postgres(PostgresStore, String),
}

/// A store opened afresh for one scenario (its own SQLite file or PostgreSQL schema), with the
/// operation the load loop calls.
struct IngestTarget {
    store: Arc<dyn Store>,
    cleanup: Cleanup,
    ws: WorkspaceId,
    tpl: Arc<DraftTemplate>,
    path: IngestPath,
    op: Op,
    /// Successful ingests so far (warm-up included), for the checks.
    ok: Arc<AtomicU64>,
}

async fn open_ingest(
    env: &Env,
    kind: Kind,
    path: IngestPath,
    label: &str,
) -> AnyResult<IngestTarget> {
    let n = env.next_id();
    let (store, cleanup): (Arc<dyn Store>, Cleanup) = match kind {
        Kind::Sqlite => {
            let file = env.tmp.join(format!("store-{n}-{label}.db"));
            let store = SqliteStore::open(file.to_str().ok_or("temp path is not UTF-8")?).await?;
            (Arc::new(store.clone()), Cleanup::Sqlite(store, file))
        }
        Kind::Postgres => {
            let schema = format!("s{n}_{label}");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(env.bench_pool()?)
                .await?;
            let opts = env
                .pg_opts()?
                .options([("search_path", format!("{schema},public"))]);
            // As `PostgresStore::open` does, with the pool size of `--pool`.
            let pool = PgPoolOptions::new()
                .max_connections(env.args.pg_pool)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts)
                .await?;
            let store = PostgresStore::from_pool(pool).await?;
            (Arc::new(store.clone()), Cleanup::Postgres(store, schema))
        }
    };
    let ws = store
        .ensure_workspace("Bench", "BENCH", chrono::Utc::now())
        .await?
        .id;
    let tpl = Arc::new(draft_template(&*store, ws).await?);
    if path == IngestPath::Known {
        let first = store.ingest_error(ws, tpl.known()).await?;
        if !first.created {
            return Err("the first ingest of the known key did not create its issue".into());
        }
    }
    let ok = Arc::new(AtomicU64::new(0));
    let op: Op = {
        let (store, tpl, ok) = (store.clone(), tpl.clone(), ok.clone());
        Arc::new(move |_task, n| {
            let (store, ok) = (store.clone(), ok.clone());
            let draft = match path {
                IngestPath::Known => tpl.known(),
                IngestPath::New => tpl.new_key(n),
            };
            Box::pin(async move {
                let out = store
                    .ingest_error(ws, draft)
                    .await
                    .map_err(|e| e.to_string())?;
                if out.created != (path == IngestPath::New) {
                    return Err(format!("unexpected created = {}", out.created));
                }
                ok.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
        })
    };
    Ok(IngestTarget {
        store,
        cleanup,
        ws,
        tpl,
        path,
        op,
        ok,
    })
}

impl IngestTarget {
    /// Every successful call is in the database: the known link counts them all (plus the
    /// creating call); the new path allocated exactly one identifier each.
    async fn check(&self) -> AnyResult<String> {
        let ok = self.ok.load(Ordering::Relaxed);
        Ok(match self.path {
            IngestPath::Known => {
                let d = &self.tpl.draft;
                let link = self
                    .store
                    .get_link(&d.source, &d.external_key)
                    .await?
                    .ok_or("the known link is missing")?;
                if link.event_count == ok + 1 {
                    format!("count ok ({})", ok + 1)
                } else {
                    format!(
                        "COUNT MISMATCH: link {} != calls {}",
                        link.event_count,
                        ok + 1
                    )
                }
            }
            IngestPath::New => {
                let next = self.store.get_workspace(self.ws).await?.next_issue_number;
                if next == ok as i64 + 1 {
                    format!("identifiers ok ({ok} issues)")
                } else {
                    format!("IDENTIFIER MISMATCH: next {next} != {}", ok + 1)
                }
            }
        })
    }

    async fn close(self, env: &Env) {
        drop(self.op);
        drop(self.store);
        match self.cleanup {
            Cleanup::Sqlite(store, file) => {
                store.close().await;
                remove_sqlite(&file);
            }
            Cleanup::Postgres(store, schema) => {
                store.close().await;
                if let Ok(bench) = env.bench_pool() {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {schema} CASCADE"
                    )))
                    .execute(bench)
                    .await;
                }
            }
        }
    }
}

fn remove_sqlite(file: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}

/// The ceiling's key for call `n`: one fixed key, or a fresh one per call.
fn ceiling_key(path: IngestPath, nonce: &str, n: u64) -> String {
    match path {
        IngestPath::Known => KNOWN_KEY_CEILING.to_string(),
        IngestPath::New => fingerprint("ceiling", nonce, &n.to_string()).0,
    }
}

/// SQLite's ceiling: a bare upsert through sqlx on a separate file with the store's pragmas (see
/// `SqliteStore::connect`) and, like the store, one writer connection.
async fn open_sqlite_ceiling(
    env: &Env,
    path: IngestPath,
) -> AnyResult<(sqlx::SqlitePool, PathBuf, Op)> {
    let file = env.tmp.join(format!("ceiling-{}.db", env.next_id()));
    let opts = SqliteConnectOptions::new()
        .filename(&file)
        .create_if_missing(true)
        .foreign_keys(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(60))
        .connect_with(opts)
        .await?;
    sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL)")
        .execute(&pool)
        .await?;
    let nonce = uuid::Uuid::now_v7().simple().to_string();
    let op: Op = {
        let pool = pool.clone();
        Arc::new(move |_task, n| {
            let pool = pool.clone();
            let key = ceiling_key(path, &nonce, n);
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO t (k, n) VALUES ($1, 1) ON CONFLICT (k) DO UPDATE SET n = n + 1",
                )
                .bind(key)
                .execute(&pool)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
            })
        })
    };
    Ok((pool, file, op))
}

const PG_CEILING_KNOWN: &str = "INSERT INTO bench_ceiling (k, n) VALUES ('0f3a9c2e4b6d8f1a3c5e7b9d2f4a6c8e1b3d5f7a9c2e4b6d8f1a3c5e7b9d2f4a', 1) \
     ON CONFLICT (k) DO UPDATE SET n = bench_ceiling.n + 1;\n";
const PG_CEILING_NEW: &str = "INSERT INTO bench_ceiling (k, n) VALUES (md5(gen_random_uuid()::text) || md5(gen_random_uuid()::text), 1) \
     ON CONFLICT (k) DO UPDATE SET n = bench_ceiling.n + 1;\n";

async fn reset_pg_ceiling_table(bench: &PgPool) -> AnyResult<()> {
    sqlx::raw_sql("DROP TABLE IF EXISTS bench_ceiling; CREATE TABLE bench_ceiling (k TEXT PRIMARY KEY, n BIGINT NOT NULL)")
        .execute(bench)
        .await?;
    Ok(())
}

/// pgbench results, summed over rounds.
#[derive(Debug, Clone, Default)]
struct Pgbench {
    tps: Vec<f64>,
    latency_ms: Vec<f64>,
    failed: Option<String>,
}

impl Pgbench {
    fn tps(&self) -> f64 {
        mean(&self.tps)
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// One pgbench run: `-n -M prepared -c N -j min(N,2) -T secs -f script`.
async fn pgbench_once(
    env: &Env,
    path: IngestPath,
    tasks: usize,
    secs: u64,
    into: &mut Pgbench,
) -> AnyResult<()> {
    let exe = env
        .pgbench
        .clone()
        .ok_or("pgbench not found (set PGBENCH)")?;
    let script = env.tmp.join(format!("ceiling-{}.sql", path.name()));
    if !script.exists() {
        std::fs::write(
            &script,
            match path {
                IngestPath::Known => PG_CEILING_KNOWN,
                IngestPath::New => PG_CEILING_NEW,
            },
        )?;
    }
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "-n",
        "-M",
        "prepared",
        "-c",
        &tasks.to_string(),
        "-j",
        &tasks.min(2).to_string(),
        "-T",
        &secs.to_string(),
        "-f",
    ])
    .arg(&script)
    .arg(&env.args.pg_url);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| {
        stdout.lines().find_map(|l| {
            l.trim()
                .strip_prefix(prefix)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        })
    };
    match field("tps = ") {
        Some(tps) if out.status.success() => {
            into.tps.push(tps);
            into.latency_ms.extend(field("latency average = "));
        }
        _ => {
            into.failed.get_or_insert(format!(
                "pgbench failed ({}): {}{}",
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(())
}

/// The PostgreSQL upsert looped through sqlx (autocommit, one statement per call, a pool of N):
/// what the database allows this client to do.
async fn open_pg_sqlx_ceiling(
    env: &Env,
    path: IngestPath,
    tasks: usize,
) -> AnyResult<(PgPool, Op)> {
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(tasks).unwrap_or(u32::MAX))
        .connect_with(env.pg_opts()?)
        .await?;
    let nonce = uuid::Uuid::now_v7().simple().to_string();
    let op: Op = {
        let pool = pool.clone();
        Arc::new(move |_task, n| {
            let pool = pool.clone();
            let key = ceiling_key(path, &nonce, n);
            Box::pin(async move {
                sqlx::query("INSERT INTO bench_ceiling (k, n) VALUES ($1, 1) ON CONFLICT (k) DO UPDATE SET n = bench_ceiling.n + 1")
                    .bind(key)
                    .execute(&pool)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        })
    };
    Ok((pool, op))
}

// ---------------------------------------------------------------------------------------------
// Scenarios

struct Row {
    kind: Kind,
    path: IngestPath,
    tasks: usize,
    store: Stats,
    check: String,
    /// SQLite: the bare upsert; PostgreSQL: the same upsert through sqlx (pgbench is `pgbench`).
    sqlx_ceiling: Stats,
    pgbench: Option<Pgbench>,
}

impl Row {
    fn ceiling(&self) -> f64 {
        match &self.pgbench {
            Some(p) => p.tps(),
            None => self.sqlx_ceiling.ops_per_sec(),
        }
    }

    fn ceiling_label(&self) -> &'static str {
        if self.pgbench.is_some() {
            "pgbench"
        } else {
            "sqlx upsert"
        }
    }
}

enum CeilingTarget {
    Sqlite {
        pool: sqlx::SqlitePool,
        file: PathBuf,
        op: Op,
    },
    Postgres {
        pool: PgPool,
        op: Op,
    },
}

impl CeilingTarget {
    fn op(&self) -> Op {
        match self {
            CeilingTarget::Sqlite { op, .. } | CeilingTarget::Postgres { op, .. } => op.clone(),
        }
    }

    async fn close(self) {
        match self {
            CeilingTarget::Sqlite { pool, file, .. } => {
                pool.close().await;
                remove_sqlite(&file);
            }
            CeilingTarget::Postgres { pool, .. } => pool.close().await,
        }
    }
}

/// One store × path × concurrency against its ceiling: both warmed up, then `rounds` slices of
/// `secs / rounds` each, store and ceiling alternating (the order flips every round), so that
/// whatever else the machine is doing weighs on both alike.
async fn scenario(env: &Env, kind: Kind, path: IngestPath, tasks: usize) -> AnyResult<Row> {
    let a = &env.args;
    let warmup = Duration::from_secs_f64(a.warmup);
    let rounds = a.rounds.max(1);
    let slice = Duration::from_secs_f64(a.secs / rounds as f64);
    let pgbench_secs = slice.as_secs_f64().round().max(1.0) as u64;
    let target = open_ingest(env, kind, path, &format!("{}_{tasks}", path.name())).await?;
    let ceiling = match kind {
        Kind::Sqlite => {
            let (pool, file, op) = open_sqlite_ceiling(env, path).await?;
            CeilingTarget::Sqlite { pool, file, op }
        }
        Kind::Postgres => {
            reset_pg_ceiling_table(env.bench_pool()?).await?;
            let (pool, op) = open_pg_sqlx_ceiling(env, path, tasks).await?;
            CeilingTarget::Postgres { pool, op }
        }
    };
    if !warmup.is_zero() {
        run_load(tasks, warmup, Duration::ZERO, target.op.clone()).await;
        run_load(tasks, warmup, Duration::ZERO, ceiling.op()).await;
    }
    let mut store = Stats::default();
    let mut sqlx_ceiling = Stats::default();
    let mut pgbench = (kind == Kind::Postgres).then(Pgbench::default);
    for round in 0..rounds {
        let store_first = round % 2 == 0;
        if store_first {
            store.merge(run_load(tasks, Duration::ZERO, slice, target.op.clone()).await);
        }
        sqlx_ceiling.merge(run_load(tasks, Duration::ZERO, slice, ceiling.op()).await);
        if let Some(p) = &mut pgbench {
            pgbench_once(env, path, tasks, pgbench_secs, p).await?;
        }
        if !store_first {
            store.merge(run_load(tasks, Duration::ZERO, slice, target.op.clone()).await);
        }
    }
    store.lat.sort_unstable();
    sqlx_ceiling.lat.sort_unstable();
    let check = target.check().await?;
    target.close(env).await;
    ceiling.close().await;
    Ok(Row {
        kind,
        path,
        tasks,
        store,
        check,
        sqlx_ceiling,
        pgbench,
    })
}

struct StallResult {
    kind: Kind,
    stats: Stats,
    starved: usize,
    min_calls: u64,
    median_calls: u64,
    max_calls: u64,
    check: String,
}

/// `--stall-tasks` tasks creating new fingerprints from a cold start for `--stall-secs`.
async fn stall_check(env: &Env, kind: Kind) -> AnyResult<StallResult> {
    let a = &env.args;
    let target = open_ingest(env, kind, IngestPath::New, "stall").await?;
    let stats = run_load(
        a.stall_tasks,
        Duration::ZERO,
        Duration::from_secs_f64(a.stall_secs),
        target.op.clone(),
    )
    .await;
    let check = target.check().await?;
    target.close(env).await;
    let mut calls = stats.per_task.clone();
    calls.sort_unstable();
    Ok(StallResult {
        kind,
        starved: calls.iter().filter(|&&c| c == 0).count(),
        min_calls: calls.first().copied().unwrap_or(0),
        median_calls: calls.get(calls.len() / 2).copied().unwrap_or(0),
        max_calls: calls.last().copied().unwrap_or(0),
        check,
        stats,
    })
}

/// The store's known-key statement (`ingest_error` in `src/sql/store_impl.rs`), for the
/// breakdown: without and with its RETURNING.
macro_rules! known_update {
    () => {
        "UPDATE dispatch_error_link SET \
         event_count = CASE WHEN event_count >= 9223372036854775807 - $3 THEN 9223372036854775807 ELSE event_count + $3 END, \
         last_seen_at = CASE WHEN last_seen_at < $4 THEN $4 ELSE last_seen_at END \
         WHERE source = $1 AND external_key = $2"
    };
}
const KNOWN_UPDATE: &str = known_update!();
const KNOWN_UPDATE_RETURNING: &str = concat!(
    known_update!(),
    " RETURNING *, (SELECT i.doc FROM dispatch_issue i WHERE i.id = dispatch_error_link.issue_id) AS doc"
);

/// What a known-key ingest into SQLite costs, step by step, at `tasks` concurrency: the store's
/// statement alone, with its RETURNING and decoding (autocommit: one call to the writer's worker
/// thread), the same wrapped in `BEGIN IMMEDIATE … COMMIT` (three calls), and `ingest_error`
/// itself (through the `Store` trait). Measured in alternating rounds like the scenarios.
async fn sqlite_breakdown(env: &Env, tasks: usize) -> AnyResult<Vec<(&'static str, Stats)>> {
    let a = &env.args;
    let target = open_ingest(
        env,
        Kind::Sqlite,
        IngestPath::Known,
        &format!("breakdown_{tasks}"),
    )
    .await?;
    let Cleanup::Sqlite(_, file) = &target.cleanup else {
        return Err("not a SQLite target".into());
    };
    let opts = SqliteConnectOptions::new()
        .filename(file)
        .foreign_keys(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(60))
        .connect_with(opts)
        .await?;
    let (source, key) = (
        target.tpl.draft.source.clone(),
        target.tpl.draft.external_key.clone(),
    );
    let mk = |mode: u8| -> Op {
        let (pool, source, key) = (pool.clone(), source.clone(), key.clone());
        Arc::new(move |_task, _n| {
            let (pool, source, key) = (pool.clone(), source.clone(), key.clone());
            let now = chrono::Utc::now().timestamp_micros();
            Box::pin(async move {
                let q = |sql: &'static str| {
                    sqlx::query(sql)
                        .bind(source.clone())
                        .bind(key.clone())
                        .bind(1i64)
                        .bind(now)
                };
                let decode = |row: sqlx::sqlite::SqliteRow| -> Result<(), String> {
                    use sqlx::Row as _;
                    let issue: sqlx::types::Json<dispatch_core::issue::Issue> =
                        row.try_get("doc").map_err(|e| e.to_string())?;
                    let meta: sqlx::types::Json<serde_json::Value> =
                        row.try_get("metadata").map_err(|e| e.to_string())?;
                    let count: i64 = row.try_get("event_count").map_err(|e| e.to_string())?;
                    std::hint::black_box((issue, meta, count));
                    Ok(())
                };
                match mode {
                    0 => q(KNOWN_UPDATE)
                        .execute(&pool)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    1 => decode(
                        q(KNOWN_UPDATE_RETURNING)
                            .fetch_one(&pool)
                            .await
                            .map_err(|e| e.to_string())?,
                    ),
                    _ => {
                        let mut tx = pool
                            .begin_with("BEGIN IMMEDIATE")
                            .await
                            .map_err(|e| e.to_string())?;
                        let row = q(KNOWN_UPDATE_RETURNING)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(|e| e.to_string())?;
                        decode(row)?;
                        tx.commit().await.map_err(|e| e.to_string())
                    }
                }
            })
        })
    };
    let variants: Vec<(&'static str, Op)> = vec![
        ("UPDATE alone (autocommit)", mk(0)),
        (
            "UPDATE … RETURNING link and issue doc, decoded (autocommit)",
            mk(1),
        ),
        (
            "the same inside BEGIN IMMEDIATE … COMMIT (three writer round trips)",
            mk(2),
        ),
        ("SqliteStore::ingest_error", target.op.clone()),
    ];
    let warmup = Duration::from_secs_f64(a.warmup);
    let rounds = a.rounds.max(1);
    let slice = Duration::from_secs_f64(a.secs / rounds as f64);
    for (_, op) in &variants {
        run_load(tasks, warmup, Duration::ZERO, op.clone()).await;
    }
    let mut stats: Vec<Stats> = variants.iter().map(|_| Stats::default()).collect();
    for round in 0..rounds {
        for i in 0..variants.len() {
            // Reverse the order every other round.
            let i = if round % 2 == 0 {
                i
            } else {
                variants.len() - 1 - i
            };
            stats[i].merge(run_load(tasks, Duration::ZERO, slice, variants[i].1.clone()).await);
        }
    }
    pool.close().await;
    target.close(env).await;
    Ok(variants
        .into_iter()
        .zip(stats)
        .map(|((name, _), mut s)| {
            s.lat.sort_unstable();
            (name, s)
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Set-up and report

fn find_pgbench() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PGBENCH") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("pgbench"))
        .find(|p| p.is_file());
    on_path.or_else(|| {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin/pgbench"))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        found.pop()
    })
}

/// Drops and creates the bench database (never the test database), with pg_trgm in `public`.
async fn setup_postgres(url: &str) -> AnyResult<(PgPool, PgPool, PgConnectOptions)> {
    let opts = PgConnectOptions::from_str(url)?;
    let db = opts
        .get_database()
        .ok_or("the bench URL must name a database")?
        .to_string();
    if db == "dispatch_test"
        || db == "postgres"
        || !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(format!(
            "refusing to use database {db:?} for benchmarks (it is dropped and recreated)"
        )
        .into());
    }
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(opts.clone().database("postgres"))
        .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
    )))
    .execute(&admin)
    .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&admin)
        .await?;
    let bench = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(opts.clone())
        .await?;
    // In `public`, so that every scenario's schema sees it: the store then builds its trigram
    // index, as on a production server that has the extension.
    let _ = sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        .execute(&bench)
        .await;
    Ok((admin, bench, opts))
}

async fn teardown_postgres(env: &Env) {
    if let Some(b) = &env.pg_bench {
        b.close().await;
    }
    if let (Some(admin), Some(opts)) = (&env.pg_admin, &env.pg_opts) {
        if let Some(db) = opts.get_database() {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
            )))
            .execute(admin)
            .await;
        }
        admin.close().await;
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or_else(
            || "unknown RAM".into(),
            |kb| format!("{:.1} GiB RAM", kb / 1024.0 / 1024.0),
        );
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpus} CPUs ({cpu}), {mem}")
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn ms(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else {
        format!("{x:.2}")
    }
}

fn ops(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else {
        format!("{x:.0}")
    }
}

fn main() -> AnyResult<()> {
    let args = parse_args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> AnyResult<()> {
    let tmp = std::env::temp_dir().join(format!("dispatch-ingest-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let with_pg = args.stores.contains(&Kind::Postgres);
    let (pg_admin, pg_bench, pg_opts) = if with_pg {
        let (a, b, o) = setup_postgres(&args.pg_url).await?;
        (Some(a), Some(b), Some(o))
    } else {
        (None, None, None)
    };
    let env = Env {
        pgbench: if with_pg { find_pgbench() } else { None },
        args,
        tmp,
        pg_admin,
        pg_bench,
        pg_opts,
        scenario: AtomicU64::new(0),
    };
    let result = bench(&env).await;
    teardown_postgres(&env).await;
    let _ = std::fs::remove_dir_all(&env.tmp);
    println!("{}", result?);
    Ok(())
}

async fn bench(env: &Env) -> AnyResult<String> {
    let a = &env.args;
    let load_before = loadavg();
    let started = Instant::now();
    let mut rows = Vec::new();
    for &kind in &a.stores {
        for &path in &a.paths {
            for &tasks in &a.concurrency {
                eprintln!("{} {} x{tasks}…", kind.name(), path.name());
                let r = scenario(env, kind, path, tasks).await?;
                eprintln!(
                    "  store {:.0} ops/s (p50 {} ms, p99 {} ms, {} errors, {}); ceiling {:.0} ({}); sqlx upsert {:.0}",
                    r.store.ops_per_sec(),
                    ms(r.store.pct_ms(0.5)),
                    ms(r.store.pct_ms(0.99)),
                    r.store.errors,
                    r.check,
                    r.ceiling(),
                    r.ceiling_label(),
                    r.sqlx_ceiling.ops_per_sec()
                );
                if let Some(f) = r.pgbench.as_ref().and_then(|p| p.failed.as_ref()) {
                    eprintln!("  {f}");
                }
                rows.push(r);
            }
        }
    }
    let mut stalls = Vec::new();
    if a.stall_check {
        for &kind in &a.stores {
            eprintln!(
                "{} stall check: {} tasks creating for {} s…",
                kind.name(),
                a.stall_tasks,
                a.stall_secs
            );
            let s = stall_check(env, kind).await?;
            eprintln!(
                "  max {} ms, {} tasks without a call",
                ms(s.stats.max_ms()),
                s.starved
            );
            stalls.push(s);
        }
    }
    let mut breakdowns = Vec::new();
    if a.breakdown && a.stores.contains(&Kind::Sqlite) {
        for &tasks in &a.concurrency {
            eprintln!("SQLite known-key breakdown x{tasks}…");
            breakdowns.push((tasks, sqlite_breakdown(env, tasks).await?));
        }
    }
    let mut out = report(env, &rows, &stalls, &load_before, started.elapsed());
    if !breakdowns.is_empty() {
        let _ = writeln!(
            out,
            "\nSQLite known-key breakdown (the store's statement through a separate single-writer pool on the store's file):\n"
        );
        let _ = writeln!(out, "| tasks | what | ops/s | p50 ms | p99 ms |");
        let _ = writeln!(out, "|---:|---|---:|---:|---:|");
        for (tasks, b) in &breakdowns {
            for (name, s) in b {
                let _ = writeln!(
                    out,
                    "| {tasks} | {name} | {} | {} | {} |",
                    ops(s.ops_per_sec()),
                    ms(s.pct_ms(0.5)),
                    ms(s.pct_ms(0.99))
                );
            }
        }
    }
    Ok(out)
}

fn report(
    env: &Env,
    rows: &[Row],
    stalls: &[StallResult],
    load_before: &str,
    took: Duration,
) -> String {
    let a = &env.args;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Machine: {}; load average before: {load_before}, after: {}",
        machine(),
        loadavg()
    );
    let _ = writeln!(
        out,
        "Per scenario: {} s warm-up, then {} s measured for the store and {} s for its ceiling, in {} alternating rounds; \
         PostgresStore pool {} connections; whole run {:.0} s.\n",
        a.warmup,
        a.secs,
        a.secs,
        a.rounds,
        a.pg_pool,
        took.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| store | path | tasks | ops/s | p50 ms | p99 ms | max ms | errors | ceiling ops/s | ratio |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let s = &r.store;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {:.0} % |",
            r.kind.name(),
            r.path.name(),
            r.tasks,
            ops(s.ops_per_sec()),
            ms(s.pct_ms(0.5)),
            ms(s.pct_ms(0.99)),
            ms(s.max_ms()),
            s.errors,
            ops(r.ceiling()),
            r.ceiling_label(),
            100.0 * s.ops_per_sec() / r.ceiling()
        );
    }
    let _ = writeln!(out, "\nChecks (every successful call is in the database):");
    for r in rows {
        let e = r
            .store
            .first_error
            .as_deref()
            .map(|e| format!("; first error: {e}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "- {} {} x{}: {}{e}",
            r.kind.name(),
            r.path.name(),
            r.tasks,
            r.check
        );
    }
    let _ = writeln!(
        out,
        "\nCeilings in detail (SQLite: the bare upsert; PostgreSQL: pgbench `-M prepared`, and the same upsert through sqlx, autocommit):\n"
    );
    let _ = writeln!(
        out,
        "| database | path | tasks | pgbench tps | pgbench avg latency ms | sqlx upsert ops/s | sqlx p50 ms | sqlx p99 ms |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let (db, tps, lat) = match &r.pgbench {
            Some(p) => ("PostgreSQL", ops(p.tps()), ms(mean(&p.latency_ms))),
            None => ("SQLite", "–".to_string(), "–".to_string()),
        };
        let _ = writeln!(
            out,
            "| {db} | {} | {} | {tps} | {lat} | {} | {} | {} |",
            r.path.name(),
            r.tasks,
            ops(r.sqlx_ceiling.ops_per_sec()),
            ms(r.sqlx_ceiling.pct_ms(0.5)),
            ms(r.sqlx_ceiling.pct_ms(0.99))
        );
    }
    if !stalls.is_empty() {
        let _ = writeln!(
            out,
            "\nStall check: {} tasks creating new fingerprints for {} s from a cold start:\n",
            a.stall_tasks, a.stall_secs
        );
        let _ = writeln!(
            out,
            "| store | ops/s | p50 ms | p99 ms | max ms | calls per task min / median / max | tasks with 0 calls | errors | result |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---|---:|---:|---|");
        for s in stalls {
            let verdict = if s.starved == 0 && s.stats.errors == 0 {
                "every task progressed"
            } else {
                "STALL"
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} / {} / {} | {} | {} | {verdict}; {} |",
                s.kind.name(),
                ops(s.stats.ops_per_sec()),
                ms(s.stats.pct_ms(0.5)),
                ms(s.stats.pct_ms(0.99)),
                ms(s.stats.max_ms()),
                s.min_calls,
                s.median_calls,
                s.max_calls,
                s.starved,
                s.stats.errors,
                s.check
            );
        }
    }
    out
}
