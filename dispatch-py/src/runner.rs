//! The runner used when no runner is configured: every dispatch fails with `Unavailable`, so
//! spawns are refused with a clear message instead of queueing work nobody will run.

use async_trait::async_trait;
use dispatch_core::ports::{DispatchReceipt, RunJob, RunReporter, Runner};
use dispatch_core::run::Run;
use dispatch_core::{Error, Result};
use std::sync::Arc;

pub struct NoRunner;

#[async_trait]
impl Runner for NoRunner {
    fn name(&self) -> &str {
        "none"
    }

    async fn dispatch(
        &self,
        _job: RunJob,
        _reporter: Arc<dyn RunReporter>,
    ) -> Result<DispatchReceipt> {
        Err(Error::unavailable(
            "no runner configured: pass runner=... to dispatch.Dispatch",
        ))
    }

    async fn cancel(&self, _run: &Run) -> Result<bool> {
        Ok(false)
    }
}
