//! Ingest load: `ErrorLinkStore::ingest_error` through `SqliteStore` and `PostgresStore` at
//! several concurrencies, side by side with each database's own ceiling measured in the same run
//! on the same machine.
//!
//! Scenarios, per store and concurrency (N tasks calling in a loop for a fixed duration):
//! - `known`: every call ingests the SAME key (the dedupe path: add to the count);
//! - `new`: every call ingests a fresh key (issue creation with a new identifier).
//!
//! Ceilings:
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
//! - `--concurrency 1,8,16` [`INGEST_BENCH_CONCURRENCY`];
//! - `--stores sqlite,postgres` [`INGEST_BENCH_STORES`];
//! - `--paths known,new` [`INGEST_BENCH_PATHS`];
//! - `--stall-check` [`INGEST_BENCH_STALL_CHECK=1`], `--stall-tasks 256`, `--stall-secs 5`;
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
    concurrency: Vec<usize>,
    stores: Vec<Kind>,
    paths: Vec<IngestPath>,
    stall_check: bool,
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
        concurrency: parse_list(
            &env("INGEST_BENCH_CONCURRENCY").unwrap_or_else(|| "1,8,16".into()),
        )?,
        stores: parse_stores(
            &env("INGEST_BENCH_STORES").unwrap_or_else(|| "sqlite,postgres".into()),
        )?,
        paths: parse_paths(&env("INGEST_BENCH_PATHS").unwrap_or_else(|| "known,new".into()))?,
        stall_check: env("INGEST_BENCH_STALL_CHECK").is_some_and(|v| v == "1" || v == "true"),
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
            "--concurrency" => a.concurrency = parse_list(&value("--concurrency")?)?,
            "--stores" => a.stores = parse_stores(&value("--stores")?)?,
            "--paths" => a.paths = parse_paths(&value("--paths")?)?,
            "--stall-check" => a.stall_check = true,
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
}

type Op = Arc<dyn Fn(usize, u64) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// `tasks` tasks call `op` in a loop: `warmup` unmeasured, then `measure` measured. Every call
/// started before the end is awaited (its latency counts; it counts as an op only when it
/// completed inside the window).
async fn run_load(tasks: usize, warmup: Duration, measure: Duration, op: Op) -> Stats {
    let start = Instant::now();
    let measure_start = start + warmup;
    let end = measure_start + measure;
    let seq = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let op = op.clone();
        let seq = seq.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            let (mut ops, mut errors, mut ok) = (0u64, 0u64, 0u64);
            let mut first_error = None;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let r = op(t, seq.fetch_add(1, Ordering::Relaxed)).await;
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
// Stores under test

struct Env {
    args: Args,
    tmp: PathBuf,
    pg_admin: Option<PgPool>,
    pg_bench: Option<PgPool>,
    pg_opts: Option<PgConnectOptions>,
    pgbench: Option<PathBuf>,
    scenario: AtomicU64,
}

struct Opened {
    store: Arc<dyn Store>,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(SqliteStore, PathBuf),
    Postgres(PostgresStore, String),
}

impl Env {
    async fn open(&self, kind: Kind, label: &str) -> AnyResult<Opened> {
        let n = self.scenario.fetch_add(1, Ordering::Relaxed);
        match kind {
            Kind::Sqlite => {
                let path = self.tmp.join(format!("store-{n}-{label}.db"));
                let store =
                    SqliteStore::open(path.to_str().ok_or("temp path is not UTF-8")?).await?;
                Ok(Opened {
                    store: Arc::new(store.clone()),
                    cleanup: Cleanup::Sqlite(store, path),
                })
            }
            Kind::Postgres => {
                let bench = self.pg_bench.as_ref().ok_or("no PostgreSQL")?;
                let schema = format!(
                    "s{n}_{}",
                    label.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
                );
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(bench)
                    .await?;
                let opts = self
                    .pg_opts
                    .clone()
                    .ok_or("no PostgreSQL")?
                    .options([("search_path", format!("{schema},public"))]);
                let pool = PgPoolOptions::new()
                    .max_connections(self.args.pg_pool)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await?;
                let store = PostgresStore::from_pool(pool).await?;
                Ok(Opened {
                    store: Arc::new(store.clone()),
                    cleanup: Cleanup::Postgres(store, schema),
                })
            }
        }
    }

    async fn close(&self, o: Opened) {
        drop(o.store);
        match o.cleanup {
            Cleanup::Sqlite(store, path) => {
                store.close().await;
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::Postgres(store, schema) => {
                store.close().await;
                if let Some(bench) = &self.pg_bench {
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

struct IngestResult {
    stats: Stats,
    check: String,
}

async fn ingest_scenario(
    env: &Env,
    kind: Kind,
    path: IngestPath,
    tasks: usize,
    warmup: Duration,
    measure: Duration,
) -> AnyResult<IngestResult> {
    let opened = env.open(kind, &format!("{}_{tasks}", path.name())).await?;
    let store = opened.store.clone();
    let now = chrono::Utc::now();
    let ws = store.ensure_workspace("Bench", "BENCH", now).await?.id;
    let tpl = Arc::new(draft_template(&*store, ws).await?);
    if path == IngestPath::Known {
        let first = store.ingest_error(ws, tpl.known()).await?;
        assert!(
            first.created,
            "the first ingest of the known key creates its issue"
        );
    }
    let op: Op = {
        let store = store.clone();
        let tpl = tpl.clone();
        Arc::new(move |_task, n| {
            let store = store.clone();
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
                Ok(())
            })
        })
    };
    let stats = run_load(tasks, warmup, measure, op).await;
    // Sanity: every successful call is accounted for in the database.
    let check = match path {
        IngestPath::Known => {
            let link = store
                .get_link(&tpl.draft.source, &tpl.draft.external_key)
                .await?
                .ok_or("the known link is missing")?;
            let expected = stats.total_ok + 1;
            if link.event_count == expected {
                format!("count ok ({expected})")
            } else {
                format!(
                    "COUNT MISMATCH: link {} != calls {expected}",
                    link.event_count
                )
            }
        }
        IngestPath::New => {
            let next = store.get_workspace(ws).await?.next_issue_number;
            let expected = stats.total_ok as i64 + 1;
            if next == expected {
                format!("identifiers ok ({} issues)", stats.total_ok)
            } else {
                format!("IDENTIFIER MISMATCH: next {next} != {expected}")
            }
        }
    };
    env.close(opened).await;
    Ok(IngestResult { stats, check })
}

// ---------------------------------------------------------------------------------------------
// Ceilings

async fn sqlite_ceiling(
    env: &Env,
    path: IngestPath,
    tasks: usize,
    warmup: Duration,
    measure: Duration,
) -> AnyResult<Stats> {
    let n = env.scenario.fetch_add(1, Ordering::Relaxed);
    let file = env.tmp.join(format!("ceiling-{n}.db"));
    // The store's pragmas (see SqliteStore::connect) and its single writer connection.
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
            let key = match path {
                IngestPath::Known => KNOWN_KEY_CEILING.to_string(),
                IngestPath::New => fingerprint("ceiling", &nonce, &n.to_string()).0,
            };
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
    let stats = run_load(tasks, warmup, measure, op).await;
    pool.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    Ok(stats)
}

const PG_CEILING_KNOWN: &str = "INSERT INTO bench_ceiling (k, n) VALUES ('0f3a9c2e4b6d8f1a3c5e7b9d2f4a6c8e1b3d5f7a9c2e4b6d8f1a3c5e7b9d2f4a', 1) ON CONFLICT (k) DO UPDATE SET n = bench_ceiling.n + 1;";
const PG_CEILING_NEW: &str = "INSERT INTO bench_ceiling (k, n) VALUES (md5(gen_random_uuid()::text) || md5(gen_random_uuid()::text), 1) ON CONFLICT (k) DO UPDATE SET n = bench_ceiling.n + 1;";

async fn reset_pg_ceiling_table(bench: &PgPool) -> AnyResult<()> {
    sqlx::raw_sql("DROP TABLE IF EXISTS bench_ceiling; CREATE TABLE bench_ceiling (k TEXT PRIMARY KEY, n BIGINT NOT NULL)")
        .execute(bench)
        .await?;
    Ok(())
}

#[derive(Debug, Clone)]
struct Pgbench {
    tps: f64,
    latency_ms: Option<f64>,
    failed: Option<String>,
}

async fn pgbench_ceiling(
    env: &Env,
    path: IngestPath,
    tasks: usize,
    secs: f64,
) -> AnyResult<Pgbench> {
    let bench = env.pg_bench.as_ref().ok_or("no PostgreSQL")?;
    let exe = env.pgbench.as_ref().ok_or("pgbench not found")?;
    reset_pg_ceiling_table(bench).await?;
    let script = env.tmp.join(format!("ceiling-{}.sql", path.name()));
    std::fs::write(
        &script,
        match path {
            IngestPath::Known => PG_CEILING_KNOWN,
            IngestPath::New => PG_CEILING_NEW,
        },
    )?;
    let secs = secs.ceil().max(1.0) as u64;
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
    let tps = stdout.lines().find_map(|l| {
        l.trim()
            .strip_prefix("tps = ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    });
    let latency_ms = stdout.lines().find_map(|l| {
        l.trim()
            .strip_prefix("latency average = ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    });
    match tps {
        Some(tps) if out.status.success() => Ok(Pgbench {
            tps,
            latency_ms,
            failed: None,
        }),
        _ => Ok(Pgbench {
            tps: f64::NAN,
            latency_ms: None,
            failed: Some(format!(
                "pgbench failed ({}): {}{}",
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            )),
        }),
    }
}

/// The PostgreSQL upsert looped through sqlx (autocommit, one statement per call): what the
/// database allows this client to do.
async fn pg_sqlx_ceiling(
    env: &Env,
    path: IngestPath,
    tasks: usize,
    warmup: Duration,
    measure: Duration,
) -> AnyResult<Stats> {
    let bench = env.pg_bench.as_ref().ok_or("no PostgreSQL")?;
    reset_pg_ceiling_table(bench).await?;
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(tasks).unwrap_or(u32::MAX))
        .connect_with(env.pg_opts.clone().ok_or("no PostgreSQL")?)
        .await?;
    let nonce = uuid::Uuid::now_v7().simple().to_string();
    let op: Op = {
        let pool = pool.clone();
        Arc::new(move |_task, n| {
            let pool = pool.clone();
            let key = match path {
                IngestPath::Known => KNOWN_KEY_CEILING.to_string(),
                IngestPath::New => fingerprint("ceiling", &nonce, &n.to_string()).0,
            };
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
    let stats = run_load(tasks, warmup, measure, op).await;
    pool.close().await;
    Ok(stats)
}

// ---------------------------------------------------------------------------------------------
// Stall check

struct StallResult {
    stats: Stats,
    max_ms: f64,
    starved: usize,
    min_calls: u64,
    median_calls: u64,
    max_calls: u64,
    check: String,
}

async fn stall_check(env: &Env, kind: Kind) -> AnyResult<StallResult> {
    let tasks = env.args.stall_tasks;
    let r = ingest_scenario(
        env,
        kind,
        IngestPath::New,
        tasks,
        Duration::ZERO,
        Duration::from_secs_f64(env.args.stall_secs),
    )
    .await?;
    let mut calls = r.stats.per_task.clone();
    calls.sort_unstable();
    Ok(StallResult {
        max_ms: r.stats.max_ms(),
        starved: calls.iter().filter(|&&c| c == 0).count(),
        min_calls: calls.first().copied().unwrap_or(0),
        median_calls: calls.get(calls.len() / 2).copied().unwrap_or(0),
        max_calls: calls.last().copied().unwrap_or(0),
        check: r.check,
        stats: r.stats,
    })
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
    // In `public`, so every scenario schema sees it (the store then builds its trigram index, as
    // it does on a production database with the extension available).
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

struct Row {
    kind: Kind,
    path: IngestPath,
    tasks: usize,
    store: IngestResult,
    ceiling: f64,
    ceiling_label: &'static str,
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
    let report = result?;
    println!("{report}");
    Ok(())
}

async fn bench(env: &Env) -> AnyResult<String> {
    let a = &env.args;
    let warmup = Duration::from_secs_f64(a.warmup);
    let measure = Duration::from_secs_f64(a.secs);
    let load_before = loadavg();
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut pg_detail = Vec::new();
    for &kind in &a.stores {
        for &path in &a.paths {
            for &tasks in &a.concurrency {
                eprintln!("{} {} x{tasks}: store…", kind.name(), path.name());
                let store = ingest_scenario(env, kind, path, tasks, warmup, measure).await?;
                eprintln!(
                    "  {:.0} ops/s p50 {} ms p99 {} ms, {} errors, {}",
                    store.stats.ops_per_sec(),
                    ms(store.stats.pct_ms(0.5)),
                    ms(store.stats.pct_ms(0.99)),
                    store.stats.errors,
                    store.check
                );
                let (ceiling, ceiling_label) = match kind {
                    Kind::Sqlite => {
                        eprintln!("  ceiling: bare sqlx upsert…");
                        let c = sqlite_ceiling(env, path, tasks, warmup, measure).await?;
                        eprintln!("  {:.0} ops/s", c.ops_per_sec());
                        (c.ops_per_sec(), "sqlx upsert")
                    }
                    Kind::Postgres => {
                        eprintln!("  ceiling: pgbench…");
                        let p = pgbench_ceiling(env, path, tasks, a.secs).await?;
                        if let Some(f) = &p.failed {
                            eprintln!("  {f}");
                        }
                        eprintln!("  pgbench {:.0} tps; sqlx upsert…", p.tps);
                        let s = pg_sqlx_ceiling(env, path, tasks, warmup, measure).await?;
                        eprintln!("  {:.0} ops/s", s.ops_per_sec());
                        pg_detail.push((path, tasks, p.clone(), s));
                        (p.tps, "pgbench")
                    }
                };
                rows.push(Row {
                    kind,
                    path,
                    tasks,
                    store,
                    ceiling,
                    ceiling_label,
                });
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
            eprintln!("  max {} ms, {} starved", ms(s.max_ms), s.starved);
            stalls.push((kind, s));
        }
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "Machine: {}; load average before: {load_before}, after: {}",
        machine(),
        loadavg()
    );
    let _ = writeln!(
        out,
        "Per scenario: {} s measured after {} s warm-up; PostgresStore pool {} connections; total {:.0} s.\n",
        a.secs,
        a.warmup,
        a.pg_pool,
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| store | path | tasks | ops/s | p50 ms | p99 ms | max ms | errors | ceiling ops/s | ratio |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let s = &r.store.stats;
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
            ops(r.ceiling),
            r.ceiling_label,
            100.0 * s.ops_per_sec() / r.ceiling
        );
    }
    let _ = writeln!(out, "\nChecks (every successful call is in the database):");
    for r in &rows {
        let e = r
            .store
            .stats
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
            r.store.check
        );
    }
    if !pg_detail.is_empty() {
        let _ = writeln!(
            out,
            "\nPostgreSQL ceilings in detail (pgbench `-M prepared`; the same upsert through sqlx, autocommit):\n"
        );
        let _ = writeln!(
            out,
            "| path | tasks | pgbench tps | pgbench avg latency ms | sqlx upsert ops/s | sqlx p50 ms | sqlx p99 ms |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
        for (path, tasks, p, s) in &pg_detail {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                path.name(),
                tasks,
                ops(p.tps),
                p.latency_ms.map_or("–".into(), ms),
                ops(s.ops_per_sec()),
                ms(s.pct_ms(0.5)),
                ms(s.pct_ms(0.99))
            );
        }
    }
    if !stalls.is_empty() {
        let _ = writeln!(
            out,
            "\nStall check: {} tasks creating new fingerprints for {} s:\n",
            a.stall_tasks, a.stall_secs
        );
        let _ = writeln!(
            out,
            "| store | ops/s | p50 ms | p99 ms | max ms | calls per task min / median / max | tasks with 0 calls | errors | result |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---|---:|---:|---|");
        for (kind, s) in &stalls {
            let verdict = if s.starved == 0 && s.stats.errors == 0 {
                "every task progressed"
            } else {
                "STALL"
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} / {} / {} | {} | {} | {verdict}; {} |",
                kind.name(),
                ops(s.stats.ops_per_sec()),
                ms(s.stats.pct_ms(0.5)),
                ms(s.stats.pct_ms(0.99)),
                ms(s.max_ms),
                s.min_calls,
                s.median_calls,
                s.max_calls,
                s.starved,
                s.stats.errors,
                s.check
            );
        }
    }
    Ok(out)
}
