//! `dispatch`: the Dispatch reference server and its command line.

mod app;
mod auth;
mod chat_cmd;
mod config;
mod dto;
mod error;
mod extract;
mod health_cmd;
mod logo_cmd;
mod mcp;
mod metrics;
mod openapi;
mod routes;
mod runner;
mod secrets;
mod state;
mod status_cmd;
#[cfg(test)]
mod test_support;
mod web;
mod workflows_install;

use clap::{Parser, Subcommand};
use config::ServerConfig;
use dispatch_core::Dispatch;
use state::AppState;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "dispatch",
    version,
    about = "Dispatch: production errors and requests in, verified fixes out."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum WorkflowsCommand {
    /// Copy the workflows into a repository's .github/workflows and print the secrets to set.
    Install {
        /// The target repository (a git checkout).
        #[arg(long)]
        repo: std::path::PathBuf,
        /// Kinds to install (error_fix, investigate, implement, qa, research, triage, all);
        /// repeat or separate with commas. Default: all.
        #[arg(long, value_delimiter = ',')]
        kinds: Vec<String>,
        /// Overwrite files that differ from the templates.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Import a Linear CSV export (Linear: Settings → Import/Export → Export CSV). Importing the
    /// same file again creates nothing.
    Linear {
        /// The CSV file.
        file: std::path::PathBuf,
        /// Report what would be imported (mapping, counts, row problems); write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Move over from the original Dispatch: workspace counter, labels, issues with their
    /// identifiers, comments, history, error links, customers with their portal tokens and their
    /// people, watchers, agents with their webhooks, agent runs (imported ended), activities, PR
    /// links and fix attempts. A row whose key exists here already is left out and reported;
    /// everything else goes in. Importing again brings only what is new.
    Original {
        /// The original's database, postgres://user@host/db (read only).
        #[arg(long = "from")]
        from: String,
        /// Report counts per kind of row (created, imported before, left out and why); write
        /// nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (HTTP API, webhooks, dispatcher and sweeper).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Import issues from another tracker into the configured store (DATABASE_URL).
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Agent workflow templates for GitHub Actions.
    Workflows {
        #[command(subcommand)]
        command: WorkflowsCommand,
    },
    /// Copy the SQLite database into a new file while the server keeps running (SQLite's online
    /// backup API). For PostgreSQL use pg_dump (see the README).
    Backup {
        /// The new backup file (must not exist).
        file: std::path::PathBuf,
    },
    /// Replace the SQLite database with a backup, after checking it is whole and not from a
    /// newer Dispatch. A running server sees the restored data.
    Restore {
        /// The backup file.
        file: std::path::PathBuf,
    },
    /// Braille art for the web UI's header from a PNG (dark pixels are dots; transparency is
    /// background), printed as NEXT_PUBLIC_BRAND_BRAILLE, or kept in an env file.
    GenerateLogo {
        /// The PNG image.
        image: std::path::PathBuf,
        /// Braille characters across.
        #[arg(long, default_value_t = 20)]
        width: usize,
        /// Gray values below this (0-255) are dots.
        #[arg(long, default_value_t = 128)]
        threshold: u8,
        /// Light pixels are dots instead.
        #[arg(long)]
        invert: bool,
        /// Only show the art.
        #[arg(long)]
        preview: bool,
        /// Keep it as NEXT_PUBLIC_BRAND_BRAILLE in this file (e.g. the server's .env).
        #[arg(long)]
        env_file: Option<std::path::PathBuf>,
    },
    /// The fleet as a running server sees it: kill switch, runs, budgets, cost, loop lag.
    Status {
        /// The server's base URL. Default: http://127.0.0.1:$PORT.
        #[arg(long)]
        url: Option<String>,
    },
    /// Talk to the orchestrator of a running server: say what you want done, confirm the
    /// dispatches it proposes. The session is remembered per server.
    Chat {
        /// The server's base URL. Default: http://127.0.0.1:$PORT.
        #[arg(long)]
        url: Option<String>,
        /// Start a new session instead of resuming the remembered one.
        #[arg(long)]
        new: bool,
    },
    /// Ask a running server's /api/health; exit 0 when it answers 200 (container health checks).
    Health {
        /// The health URL. Default: http://127.0.0.1:$PORT/api/health.
        #[arg(long)]
        url: Option<String>,
    },
    /// Render Claude Code stream-json (stdin) as readable terminal lines (stdout), as the local
    /// runner and the live terminal show them.
    AgentFilter {
        /// Also write `{cost_usd, num_turns, model, ...}` of the final result to this file.
        #[arg(long)]
        summary_json: Option<std::path::PathBuf>,
    },
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let text = std::env::var("LOG_FORMAT")
        .map(|v| v.eq_ignore_ascii_case("text"))
        .unwrap_or(false);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if text {
        builder.init();
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    }
}

/// mimalloc instead of glibc's malloc. glibc was held to one arena (`M_ARENA_MAX` 1, for ~6 MB
/// less peak memory under 256 concurrent webhooks), and at 16 concurrent MCP searches the two
/// runtime threads then spent ~12 % of the CPU waking each other on its lock (perf); with
/// glibc's default arenas a search still takes the arena lock of whichever thread allocated a
/// block it frees. mimalloc frees such blocks without a lock: 8,700–8,800 searches/s against
/// 6,500–8,100 (glibc, default arenas) and 4,500 (one arena), for 3 MB more resident memory
/// than glibc's default (docs/performance.md). SQLite allocates from it too (set first thing in
/// `main`).
#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

/// [`mimalloc::MiMalloc`], with mimalloc's options set before its first allocation (the Rust
/// runtime allocates before `main`).
struct Allocator;

impl Allocator {
    #[inline]
    fn configure() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // mimalloc commits its arenas up front by default on Linux, and with transparent
            // huge pages they fill in 2 MiB at a time: the idle server's resident memory was
            // 46 MB against glibc's 23 MB (26 MB with this off; 31 against 27 MB after searches
            // at 16 clients, at the same speed). And it returns freed memory to the OS 1 s
            // after the fact by default; at once, the peak under 256 concurrent webhooks is
            // 54 MB instead of 62 MB (glibc: 44 MB with one arena, 51 MB with its default
            // arenas), searches as fast. The options are `mi_option_e` 4 (`arena_eager_commit`)
            // and 15 (`purge_delay`); the bindings have no constants for them.
            // SAFETY: sets process-wide options before any arena exists; allocates nothing.
            // Defaults: `MIMALLOC_ARENA_EAGER_COMMIT` / `MIMALLOC_PURGE_DELAY` still override them.
            unsafe {
                libmimalloc_sys::mi_option_set_default(4, 0);
                libmimalloc_sys::mi_option_set_default(15, 0);
            }
        });
    }
}

// SAFETY: every call goes to mimalloc's allocator, as `MiMalloc` makes it.
unsafe impl std::alloc::GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        Self::configure();
        // SAFETY: the caller's contract, passed on.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        Self::configure();
        // SAFETY: the caller's contract, passed on.
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from this allocator (the caller's contract).
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

fn main() -> ExitCode {
    // SAFETY: no other thread exists yet.
    #[cfg(feature = "sqlite")]
    if !unsafe { dispatch_adapters::sqlite::use_mimalloc_for_sqlite() } {
        eprintln!("warning: SQLite was initialised before main; it keeps its own allocator");
    }
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Serve => serve().await,
            Command::Migrate => migrate().await,
            Command::Import { command } => import(command).await,
            Command::AgentFilter { summary_json } => agent_filter(summary_json),
            Command::Health { url } => health(url).await,
            Command::Status { url } => status(url).await,
            Command::Chat { url, new } => chat(url, new).await,
            Command::GenerateLogo {
                image,
                width,
                threshold,
                invert,
                preview,
                env_file,
            } => logo_cmd::generate(
                &image,
                dispatch_core::brand::BrailleOptions {
                    width,
                    threshold,
                    invert,
                },
                preview,
                env_file.as_deref(),
            )
            .map(|out| print!("{out}")),
            Command::Backup { file } => backup(&file).await,
            Command::Restore { file } => restore(&file).await,
            Command::Workflows {
                command: WorkflowsCommand::Install { repo, kinds, force },
            } => workflows_install::install(&repo, &kinds, force)
                .map(|report| print!("{report}"))
                .map_err(|e| dispatch_core::Error::invalid("repo", e)),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dispatch: {e}");
            // The cause (a TLS handshake failure, a refused connection, …) line by line.
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::from(2)
        }
    }
}

fn load_config() -> dispatch_core::Result<ServerConfig> {
    let get = config::env_lookup();
    ServerConfig::from_lookup(&get)
}

async fn status(url: Option<String>) -> dispatch_core::Result<()> {
    // The key as the server has it: DISPATCH_API_KEY, or the secrets file beside its database.
    let cfg = load_config()?;
    let base = url
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", cfg.port))
        .trim_end_matches('/')
        .to_string();
    print!("{}", status_cmd::status(&base, cfg.api_key.expose()).await?);
    Ok(())
}

async fn chat(url: Option<String>, new_session: bool) -> dispatch_core::Result<()> {
    // The key as the server has it: DISPATCH_API_KEY, or the secrets file beside its database.
    let cfg = load_config()?;
    let get = config::env_lookup();
    let base = url
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", cfg.port))
        .trim_end_matches('/')
        .to_string();
    chat_cmd::run(chat_cmd::ChatOptions {
        base,
        api_key: cfg.api_key.expose().to_string(),
        new_session,
        state_file: chat_cmd::ChatOptions::state_file_from(&get),
        color: chat_cmd::ChatOptions::color_from(&get),
    })
    .await
}

/// The SQLite path of the configured store, or an error saying what to use for PostgreSQL.
fn sqlite_path() -> dispatch_core::Result<String> {
    match load_config()?.store {
        dispatch_adapters::open::StoreUrl::Sqlite(path) => Ok(path),
        dispatch_adapters::open::StoreUrl::Postgres(_) => Err(dispatch_core::Error::invalid(
            "DATABASE_URL",
            "backup and restore are for the SQLite store; for PostgreSQL use pg_dump --format=custom and pg_restore (README, Deploy)",
        )),
    }
}

#[cfg(feature = "sqlite")]
async fn backup(file: &std::path::Path) -> dispatch_core::Result<()> {
    let db = sqlite_path()?;
    let r = dispatch_adapters::sqlite_backup::backup(&db, file).await?;
    println!(
        "backed up {db} to {}: {} issues, {} runs, schema {}, {} bytes",
        file.display(),
        r.issues,
        r.runs,
        r.schema_version,
        r.bytes
    );
    Ok(())
}

#[cfg(feature = "sqlite")]
async fn restore(file: &std::path::Path) -> dispatch_core::Result<()> {
    let db = sqlite_path()?;
    let known = dispatch_adapters::sqlite::SqliteStore::known_schema_version();
    let r = dispatch_adapters::sqlite_backup::restore(file, &db, known).await?;
    println!(
        "restored {} into {db}: {} issues, {} runs, schema {}",
        file.display(),
        r.issues,
        r.runs,
        r.schema_version
    );
    Ok(())
}

#[cfg(not(feature = "sqlite"))]
async fn backup(_file: &std::path::Path) -> dispatch_core::Result<()> {
    sqlite_path().and(Err(dispatch_core::Error::invalid(
        "DATABASE_URL",
        "this build has no SQLite support",
    )))
}

#[cfg(not(feature = "sqlite"))]
async fn restore(file: &std::path::Path) -> dispatch_core::Result<()> {
    backup(file).await
}

async fn health(url: Option<String>) -> dispatch_core::Result<()> {
    let url = match url {
        Some(u) => u,
        None => format!("http://127.0.0.1:{}/api/health", load_config()?.port),
    };
    match health_cmd::check(&url, std::time::Duration::from_secs(4)).await? {
        200 => {
            println!("healthy: {url}");
            Ok(())
        }
        code => Err(dispatch_core::Error::unavailable(format!(
            "{url} answered {code}"
        ))),
    }
}

fn agent_filter(summary_json: Option<std::path::PathBuf>) -> dispatch_core::Result<()> {
    use std::io::{BufRead, Write};
    let mut filter = dispatch_core::agent_output::StreamFilter::new();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let io_err = |e: std::io::Error| dispatch_core::Error::internal(format!("agent-filter: {e}"));
    // Lines are read as bytes so that invalid UTF-8 in tool output cannot stop the filter.
    let mut buf = Vec::new();
    let mut input = stdin.lock();
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf).map_err(io_err)? == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf);
        for l in filter.push_line(line.trim_end_matches(['\n', '\r'])) {
            out.write_all(l.as_bytes()).map_err(io_err)?;
        }
        out.flush().map_err(io_err)?;
    }
    if let Some(path) = summary_json {
        let s = filter.summary();
        let v = serde_json::json!({
            "cost_usd": s.as_ref().and_then(|s| s.cost_usd),
            "num_turns": s.as_ref().and_then(|s| s.num_turns),
            "model": s.as_ref().and_then(|s| s.model.clone()),
            "is_error": s.as_ref().map(|s| s.is_error),
            "subtype": s.as_ref().and_then(|s| s.subtype.clone()),
        });
        std::fs::write(&path, v.to_string()).map_err(|e| {
            dispatch_core::Error::invalid(
                "summary-json",
                format!("cannot write {}: {e}", path.display()),
            )
        })?;
    }
    Ok(())
}

async fn migrate() -> dispatch_core::Result<()> {
    init_logging();
    let cfg = load_config()?;
    dispatch_adapters::open::open_store(&cfg.store).await?;
    println!("migrations applied to {}", cfg.store.redacted());
    Ok(())
}

/// `dispatch import …`: opens the configured store (migrating it), gets the configured workspace
/// and runs the import use-case; prints the report as JSON.
async fn import(command: ImportCommand) -> dispatch_core::Result<()> {
    let cfg = load_config()?;
    let opened = dispatch_adapters::open::open_store(&cfg.store).await?;
    let ws = opened
        .store
        .ensure_workspace(
            &cfg.engine.workspace_name,
            &cfg.engine.issue_prefix,
            opened.clock.now(),
        )
        .await?;
    let report = match command {
        ImportCommand::Linear { file, dry_run } => {
            let csv = std::fs::read(&file).map_err(|e| {
                dispatch_core::Error::invalid(
                    "FILE",
                    format!("cannot read {}: {e}", file.display()),
                )
            })?;
            dispatch_core::import::import_linear(
                &*opened.store,
                ws.id,
                &csv,
                dry_run,
                opened.clock.now(),
            )
            .await?
        }
        ImportCommand::Original { from, dry_run } => {
            let data = read_original(&from).await?;
            let plan = dispatch_core::import::original::plan(&data, &ws.issue_prefix);
            opened
                .store
                .apply_import(ws.id, &plan, dry_run, opened.clock.now())
                .await?
        }
    };
    let json = serde_json::to_string_pretty(&report)
        .map_err(|e| dispatch_core::Error::internal(e.to_string()))?;
    println!("{json}");
    eprintln!(
        "{}{}: {} rows, {} issues {}, {} already imported, {} labels {}, {} problems",
        report.source,
        if report.dry_run { " (dry run)" } else { "" },
        report.rows,
        report.issues_created,
        if report.dry_run {
            "to create"
        } else {
            "created"
        },
        report.issues_skipped,
        report.labels_created.len(),
        if report.dry_run {
            "to create"
        } else {
            "created"
        },
        report.problems.len(),
    );
    // Per kind of row: created (or to create), imported before, left out (reasons in `problems`).
    let mut kinds: std::collections::BTreeSet<&String> = report.created.keys().collect();
    kinds.extend(report.skipped.keys());
    kinds.extend(report.not_imported.keys());
    let n =
        |m: &std::collections::BTreeMap<String, usize>, k: &String| m.get(k).copied().unwrap_or(0);
    for k in kinds {
        eprintln!(
            "  {k}: {} {}, {} already imported, {} not imported",
            n(&report.created, k),
            if report.dry_run {
                "to create"
            } else {
                "created"
            },
            n(&report.skipped, k),
            n(&report.not_imported, k),
        );
    }
    for p in report.problems.iter().filter(|p| p.skipped) {
        eprintln!(
            "  not imported: {} {}: {}",
            p.kind.as_deref().unwrap_or("row"),
            p.external_id.as_deref().unwrap_or("-"),
            p.message
        );
    }
    Ok(())
}

#[cfg(feature = "postgres")]
async fn read_original(
    url: &str,
) -> dispatch_core::Result<dispatch_core::import::original::OriginalData> {
    dispatch_adapters::original::read_original(url).await
}

#[cfg(not(feature = "postgres"))]
async fn read_original(
    _url: &str,
) -> dispatch_core::Result<dispatch_core::import::original::OriginalData> {
    Err(dispatch_core::Error::invalid(
        "--from",
        "this build has no PostgreSQL support",
    ))
}

async fn serve() -> dispatch_core::Result<()> {
    let started = std::time::Instant::now();
    init_logging();
    let cfg = load_config()?;
    // Listen before anything slow: while the database is opened and migrated, /api/health
    // answers 503 (not ready: no traffic) and /api/health/live 200 (alive: no restart).
    let addr: SocketAddr = format!("{}:{}", cfg.host, cfg.port).parse().map_err(|e| {
        dispatch_core::Error::invalid(
            "HOST",
            format!("{}:{} is not an address: {e}", cfg.host, cfg.port),
        )
    })?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        dispatch_core::Error::invalid("PORT", format!("cannot listen on {addr}: {e}"))
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| dispatch_core::Error::internal(e.to_string()))?;
    let cancel = CancellationToken::new();
    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("shutting down: finishing in-flight requests");
            cancel.cancel();
        }
    });
    let ready: Arc<std::sync::OnceLock<axum::Router>> = Arc::new(std::sync::OnceLock::new());
    let front = axum::Router::new().fallback({
        let ready = ready.clone();
        move |req: axum::extract::Request| front(ready.clone(), req)
    });
    let server = tokio::spawn(
        axum::serve(
            listener,
            front.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown({
            let cancel = cancel.clone();
            async move { cancel.cancelled().await }
        })
        .into_future(),
    );
    let opened = tokio::select! {
        o = dispatch_adapters::open::open_store(&cfg.store) => o?,
        _ = cancel.cancelled() => {
            let _ = server.await;
            return Ok(());
        }
    };
    let get = config::env_lookup();
    let (runner, runner_line) = runner::select(&get)?;
    let webhooks = dispatch_adapters::webhook::WebhookTransport::new(
        dispatch_adapters::webhook::WebhookTransportConfig {
            allow_private: cfg.agent_webhook_allow_private,
            ..Default::default()
        },
    )?;
    let mut builder = Dispatch::builder(opened.store, runner)
        .bus(opened.bus)
        .clock(opened.clock)
        .outbox(cfg.outbox())
        .transport(dispatch_core::outbox::KIND_WEBHOOK, Arc::new(webhooks))
        .config(cfg.engine.clone());
    let slack_line = match &cfg.slack {
        Some(c) => {
            builder = builder.transport(
                dispatch_core::outbox::KIND_SLACK,
                Arc::new(dispatch_adapters::slack::SlackTransport::new(c.clone())?),
            );
            if cfg.notifications_enabled {
                format!(
                    "Slack at {} (internal channel: {})",
                    c.base_url,
                    cfg.internal_slack_channel.as_deref().unwrap_or("none")
                )
            } else {
                "Slack off (NOTIFICATIONS_ENABLED=false)".to_string()
            }
        }
        None => "none (set SLACK_BOT_TOKEN for Slack notifications)".to_string(),
    };
    let mut llm: Option<Arc<dyn dispatch_core::ports::Llm>> = None;
    let llm_line = match &cfg.llm {
        Some(c) => {
            let line = format!(
                "Claude ({}) at {}: the orchestrator, and confirming PR ↔ issue matches",
                c.model, c.base_url
            );
            let claude: Arc<dyn dispatch_core::ports::Llm> =
                Arc::new(dispatch_adapters::claude::ClaudeLlm::new(c.clone())?);
            builder = builder.llm(claude.clone());
            llm = Some(claude);
            line
        }
        None => "none (set ANTHROPIC_API_KEY for the orchestrator and PR ↔ issue matching)".into(),
    };
    let embed_line = match &cfg.embeddings {
        Some(c) => {
            let line = format!(
                "{} ({} dimensions) at {}: hybrid search, similar issues, PR matching, duplicates",
                c.model, c.dimensions, c.base_url
            );
            builder = builder.embedder(Arc::new(
                dispatch_adapters::openai_embed::OpenAiEmbedder::new(c.clone())?,
            ));
            line
        }
        None => "none (set OPENAI_API_KEY for semantic search; lexical meanwhile)".into(),
    };
    let dispatch = builder.build().await?;
    let orchestrator = dispatch_core::orchestrator::Orchestrator::new(
        dispatch.clone(),
        llm,
        tool_providers(&cfg)?,
        cfg.orchestrator.clone(),
    )?;
    let state = AppState {
        dispatch: dispatch.clone(),
        config: Arc::new(cfg.clone()),
        login_limiter: Arc::new(auth::LoginLimiter::new(
            10,
            std::time::Duration::from_secs(300),
        )),
        portal_limiter: Arc::new(auth::LoginLimiter::new(
            30,
            std::time::Duration::from_secs(300),
        )),
        og: Arc::new(web::og::OgCache::default()),
        metrics: Arc::new(metrics::Metrics::default()),
        loki_gateway: cfg
            .loki_gateway
            .clone()
            .map(dispatch_adapters::loki_gateway::LokiGateway::new)
            .transpose()?
            .map(Arc::new),
        sentry: Arc::new(routes::webhooks::sentry::build_source(&get)?),
        orchestrator,
        shutdown: cancel.clone(),
    };
    let state_tools = (
        state.orchestrator.tool_sets(),
        state.orchestrator.tools().len(),
        state.orchestrator.has_model(),
    );
    let _ = ready.set(app::build(state));

    let url = if cfg.host == "0.0.0.0" {
        format!("http://localhost:{}", local.port())
    } else {
        format!("http://{local}")
    };
    println!(
        "Dispatch is listening on {url} ({} store)",
        cfg.store.redacted()
    );
    println!("  runner: {runner_line}");
    println!("  LLM: {llm_line}");
    println!("  Embeddings: {embed_line}");
    println!("  notifications: {slack_line}");
    if !cfg.event_webhooks.is_empty() {
        println!("  event webhooks: {} receiver(s)", cfg.event_webhooks.len());
    }
    println!(
        "  orchestrator: {} tools ({}){}",
        state_tools.1,
        state_tools.0.join(", "),
        if state_tools.2 {
            ""
        } else {
            "; slash commands only without ANTHROPIC_API_KEY"
        }
    );
    if !cfg.workers {
        println!("  dispatcher and sweeper: off in this process (DISPATCH_WORKERS=false)");
    }
    if cfg.generated.is_empty() {
        println!(
            "  API key and login password: from the environment or {}",
            cfg.secrets_path.display()
        );
    } else {
        println!(
            "  generated and stored in {} for the next start:",
            cfg.secrets_path.display()
        );
        println!("    DISPATCH_API_KEY={}", cfg.api_key.expose());
        println!("    DISPATCH_PASSWORD={}", cfg.password.expose());
    }
    println!("  ready in {} ms", started.elapsed().as_millis());
    tracing::info!(address = %local, runner = dispatch.runner().name(), llm = dispatch.llm().is_some(), "listening");

    let engine = dispatch.clone();
    let loops = tokio::spawn({
        let cancel = cancel.clone();
        let workers = cfg.workers;
        async move {
            if workers {
                engine.run(cancel).await
            } else {
                tracing::info!(
                    "DISPATCH_WORKERS=false: no dispatcher or sweeper in this process (it still sends its notifications)"
                );
                engine.run_deliveries(cancel).await
            }
        }
    });
    server
        .await
        .map_err(|e| dispatch_core::Error::internal(format!("server task: {e}")))?
        .map_err(|e| dispatch_core::Error::internal(format!("server error: {e}")))?;
    cancel.cancel();
    let _ = loops.await;
    Ok(())
}

/// Every request goes through here: to the application once it is built, else the start-up
/// answers — alive, not ready.
async fn front(
    ready: Arc<std::sync::OnceLock<axum::Router>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use tower::ServiceExt;
    if let Some(app) = ready.get() {
        return match app.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
    }
    let body = |status: &str| serde_json::json!({ "status": status, "service": "dispatch" });
    match req.uri().path() {
        "/api/health/live" => axum::Json(body("starting")).into_response(),
        _ => {
            let mut v = body("starting");
            v["error"] = "the server is starting (opening and migrating the database)".into();
            v["code"] = "STARTING".into();
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                [(axum::http::header::RETRY_AFTER, "1")],
                axum::Json(v),
            )
                .into_response()
        }
    }
}

/// The orchestrator's tool sets beyond the mission tools (Loki, read-only SQL), as configured.
fn tool_providers(
    cfg: &ServerConfig,
) -> dispatch_core::Result<Vec<Arc<dyn dispatch_core::ports::ToolProvider>>> {
    use dispatch_adapters::analytics;
    let mut out: Vec<Arc<dyn dispatch_core::ports::ToolProvider>> = Vec::new();
    if let Some(c) = &cfg.loki_tools {
        out.push(Arc::new(analytics::loki::LokiTools::new(c.clone())?));
    }
    #[cfg(feature = "postgres")]
    if let Some(c) = &cfg.sql_tools {
        out.push(Arc::new(analytics::sql::SqlTools::new(c.clone())?));
    }
    Ok(out)
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
