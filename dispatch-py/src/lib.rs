//! `dispatch._dispatch`: the compiled half of the Python package `dispatch`.
//!
//! Every operation is a thin call into ONE use-case of [`dispatch_core::Dispatch`] (see
//! [`ops`]); values cross the boundary as JSON text (the core types' own serde form) and the
//! Python half turns them into dataclasses. The sync call releases the GIL while the engine
//! works; the async call spawns the work on the shared tokio runtime and settles an asyncio
//! future through `loop.call_soon_threadsafe`.

mod adapters;
mod errors;
mod ops;
mod runner;

use dispatch_adapters::loki::GrafanaAlertSource;
use dispatch_adapters::open::{StoreUrl, open_store};
use dispatch_adapters::sentry::SentryAlertSource;
use dispatch_core::config::EngineConfig;
use dispatch_core::memory::MemoryStore;
use dispatch_core::ports::{AlertSource, Runner, Store};
use dispatch_core::{Dispatch, Error};
use pyo3::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio_util::sync::CancellationToken;

/// The one tokio runtime shared by every engine in the process.
fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("dispatch-py")
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| errors::to_py(Error::internal(format!("tokio runtime: {e}"))))
}

/// The dispatcher and sweeper loops started by `run_in_background`.
struct Loops {
    cancel: CancellationToken,
    /// Cancelled when the loops have ended (also if they panicked: a drop guard).
    finished: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

/// The engine handle behind `dispatch.Dispatch` and `dispatch.AsyncDispatch`.
#[pyclass(frozen, module = "dispatch._dispatch")]
struct Engine {
    ctx: ops::Ctx,
    loops: Mutex<Option<Loops>>,
    closed: std::sync::atomic::AtomicBool,
}

impl Engine {
    fn ctx(&self) -> PyResult<ops::Ctx> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(errors::to_py(Error::unavailable("this Dispatch is closed")));
        }
        Ok(self.ctx.clone())
    }

    fn lock_loops(&self) -> std::sync::MutexGuard<'_, Option<Loops>> {
        self.loops.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl Engine {
    /// `database_url=None` keeps everything in memory (lost at exit); a path or `sqlite:` URL
    /// opens a SQLite file, a `postgres://` URL PostgreSQL. `config` holds engine settings by
    /// their environment variable names (`DAILY_SPAWN_BUDGET_ERROR`, ...). `runner` and
    /// `sources` are bridges to Python objects (see `dispatch._bridge`).
    #[new]
    #[pyo3(signature = (database_url=None, config=HashMap::new(), runner=None, sources=HashMap::new()))]
    fn new(
        py: Python<'_>,
        database_url: Option<String>,
        config: HashMap<String, String>,
        runner: Option<(String, Py<PyAny>)>,
        sources: HashMap<String, Py<PyAny>>,
    ) -> PyResult<Self> {
        let rt = runtime()?;
        let engine_config =
            EngineConfig::from_lookup(&|k| config.get(k).cloned()).map_err(errors::to_py)?;
        let runner: Arc<dyn Runner> = match runner {
            None => Arc::new(runner::NoRunner),
            Some((name, bridge)) => Arc::new(adapters::PyRunner {
                name,
                bridge: Arc::new(bridge),
            }),
        };
        let mut alert_sources: HashMap<String, Arc<dyn AlertSource>> = HashMap::new();
        let grafana: Arc<dyn AlertSource> = Arc::new(GrafanaAlertSource::new());
        alert_sources.insert("grafana".into(), grafana.clone());
        alert_sources.insert("loki".into(), grafana);
        alert_sources.insert("sentry".into(), Arc::new(SentryAlertSource::new()));
        for (name, bridge) in sources {
            alert_sources.insert(
                name.clone(),
                Arc::new(adapters::PyAlertSource {
                    name,
                    bridge: Arc::new(bridge),
                }),
            );
        }
        let engine = py
            .allow_threads(|| {
                rt.block_on(async {
                    let (store, opened) = match database_url {
                        None => (Arc::new(MemoryStore::new()) as Arc<dyn Store>, None),
                        Some(u) => {
                            let url = StoreUrl::from_lookup(&|k| {
                                (k == "DATABASE_URL").then(|| u.clone())
                            })?;
                            let opened = open_store(&url).await?;
                            (opened.store, Some((opened.bus, opened.clock)))
                        }
                    };
                    let mut b = Dispatch::builder(store, runner).config(engine_config);
                    if let Some((bus, clock)) = opened {
                        b = b.bus(bus).clock(clock);
                    }
                    b.build().await
                })
            })
            .map_err(errors::to_py)?;
        Ok(Engine {
            ctx: ops::Ctx {
                engine,
                sources: Arc::new(alert_sources),
            },
            loops: Mutex::new(None),
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Runs operation `op` with JSON arguments; returns JSON. Blocks this thread (not the GIL).
    fn call(&self, py: Python<'_>, op: String, args: String) -> PyResult<String> {
        let rt = runtime()?;
        let ctx = self.ctx()?;
        py.allow_threads(|| rt.block_on(ops::exec(ctx, op, args)))
            .map_err(errors::to_py)
    }

    /// Starts operation `op` on the shared runtime and returns at once; `done(ok, value)` is
    /// called from a runtime thread (with the GIL) when it ends: `(True, json)` or
    /// `(False, exception)`.
    fn call_async(&self, op: String, args: String, done: Py<PyAny>) -> PyResult<()> {
        let rt = runtime()?;
        let ctx = self.ctx()?;
        rt.spawn(async move {
            let result = ops::exec(ctx, op, args).await;
            // The callback needs the GIL: take it on the blocking pool, not on a worker.
            let _ = tokio::task::spawn_blocking(move || {
                Python::with_gil(|py| {
                    let r = match result {
                        Ok(json) => done.call1(py, (true, json)),
                        Err(e) => {
                            let exc = errors::to_py(e).into_value(py);
                            done.call1(py, (false, exc))
                        }
                    };
                    if let Err(e) = r {
                        e.print(py);
                    }
                })
            })
            .await;
        });
        Ok(())
    }

    /// Benchmark aid (`benches/python_ingest.py`): ingests the JSON event `n` times from Rust,
    /// on this engine and store, and returns the nanoseconds it took — the baseline that the
    /// Python-side per-call cost is compared with.
    fn bench_ingest(&self, py: Python<'_>, event: String, n: u32) -> PyResult<u64> {
        let rt = runtime()?;
        let ctx = self.ctx()?;
        let event: dispatch_core::event::ErrorEvent = serde_json::from_str(&event)
            .map_err(|e| errors::to_py(Error::invalid("event", e.to_string())))?;
        py.allow_threads(|| {
            rt.block_on(async {
                let start = std::time::Instant::now();
                for _ in 0..n {
                    ctx.engine.ingest(event.clone()).await?;
                }
                Ok(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX))
            })
        })
        .map_err(errors::to_py)
    }

    /// Starts the dispatcher and sweeper loops on the shared runtime (once).
    fn start(&self) -> PyResult<bool> {
        let rt = runtime()?;
        let ctx = self.ctx()?;
        let mut loops = self.lock_loops();
        if loops.is_some() {
            return Ok(false);
        }
        let cancel = CancellationToken::new();
        let finished = CancellationToken::new();
        let (c, f) = (cancel.clone(), finished.clone());
        let handle = rt.spawn(async move {
            let _done = f.drop_guard();
            ctx.engine.run(c).await
        });
        *loops = Some(Loops {
            cancel,
            finished,
            handle,
        });
        Ok(true)
    }

    /// Whether the loops are running.
    fn running(&self) -> bool {
        self.lock_loops()
            .as_ref()
            .is_some_and(|l| !l.finished.is_cancelled())
    }

    /// Waits up to `timeout` seconds (forever with `None`) for the loops to end; true when they
    /// did (or never ran). Lets `Dispatch.run()` stay interruptible by Ctrl-C.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let rt = runtime()?;
        let Some(finished) = self.lock_loops().as_ref().map(|l| l.finished.clone()) else {
            return Ok(true);
        };
        Ok(py.allow_threads(|| {
            rt.block_on(async {
                match timeout {
                    None => {
                        finished.cancelled().await;
                        true
                    }
                    Some(t) => {
                        let d = std::time::Duration::from_secs_f64(t.max(0.0));
                        tokio::time::timeout(d, finished.cancelled()).await.is_ok()
                    }
                }
            })
        }))
    }

    /// Stops the loops and waits until they have ended.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let rt = runtime()?;
        let loops = self.lock_loops().take();
        if let Some(l) = loops {
            l.cancel.cancel();
            py.allow_threads(|| {
                let _ = rt.block_on(l.handle);
            });
        }
        Ok(())
    }

    /// Stops the loops; later calls raise `Unavailable`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.stop(py)?;
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }
}

#[pymodule]
fn _dispatch(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    errors::register(m)?;
    Ok(())
}
