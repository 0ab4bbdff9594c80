//! `dispatch._dispatch`: the compiled half of the Python package `dispatch`.
//!
//! Every method is a thin call into ONE use-case of [`dispatch_core::Dispatch`]; values cross
//! the boundary as JSON text (the core types' own serde form) and the Python half turns them
//! into dataclasses. The GIL is released while the engine works.

mod errors;
mod runner;

use dispatch_adapters::open::{StoreUrl, open_store};
use dispatch_core::event::ErrorEvent;
use dispatch_core::memory::MemoryStore;
use dispatch_core::{Dispatch, Error, Result};
use pyo3::prelude::*;
use std::sync::{Arc, OnceLock};

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

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::internal(format!("serialising a result: {e}")))
}

/// The engine handle behind `dispatch.Dispatch`.
#[pyclass(frozen, module = "dispatch._dispatch")]
struct Engine {
    engine: Dispatch,
}

impl Engine {
    fn block<T: Send>(
        &self,
        py: Python<'_>,
        f: impl std::future::Future<Output = Result<T>> + Send,
    ) -> PyResult<T> {
        let rt = runtime()?;
        py.allow_threads(|| rt.block_on(f)).map_err(errors::to_py)
    }
}

#[pymethods]
impl Engine {
    /// `database_url=None` keeps everything in memory (lost at exit); a path or `sqlite:` URL
    /// opens a SQLite file, a `postgres://` URL PostgreSQL.
    #[new]
    #[pyo3(signature = (database_url=None))]
    fn new(py: Python<'_>, database_url: Option<String>) -> PyResult<Self> {
        let rt = runtime()?;
        let engine = py
            .allow_threads(|| {
                rt.block_on(async {
                    let runner = Arc::new(runner::NoRunner);
                    let (store, bus) = match database_url {
                        None => (
                            Arc::new(MemoryStore::new()) as Arc<dyn dispatch_core::ports::Store>,
                            None,
                        ),
                        Some(u) => {
                            let url = StoreUrl::from_lookup(&|k| {
                                (k == "DATABASE_URL").then(|| u.clone())
                            })?;
                            let opened = open_store(&url).await?;
                            (opened.store, Some(opened.bus))
                        }
                    };
                    let mut b = Dispatch::builder(store, runner);
                    if let Some(bus) = bus {
                        b = b.bus(bus);
                    }
                    b.build().await
                })
            })
            .map_err(errors::to_py)?;
        Ok(Engine { engine })
    }

    /// Ingests one error event given as JSON; returns the ingest report as JSON.
    fn ingest_json(&self, py: Python<'_>, event: &str) -> PyResult<String> {
        let event: ErrorEvent = serde_json::from_str(event)
            .map_err(|e| errors::to_py(Error::invalid("event", e.to_string())))?;
        let engine = self.engine.clone();
        self.block(py, async move { json(&engine.ingest(event).await?) })
    }

    /// One issue (id or `DSP-n` key) as JSON.
    fn get_issue_json(&self, py: Python<'_>, issue: &str) -> PyResult<String> {
        let engine = self.engine.clone();
        let issue = issue.to_string();
        self.block(
            py,
            async move { json(&engine.get_issue(issue.as_str()).await?) },
        )
    }
}

#[pymodule]
fn _dispatch(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    errors::register(m)?;
    Ok(())
}
