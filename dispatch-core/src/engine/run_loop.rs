//! Drives the dispatcher and the sweeper until cancelled.

use super::Dispatch;
use tokio_util::sync::CancellationToken;

impl Dispatch {
    /// Runs the dispatcher (woken at once when a run is queued, else every
    /// `dispatcher_interval`), the sweeper (every `sweeper_interval`), the delivery worker
    /// (woken when a notification is stored, else every `dispatcher_interval`) and, with an
    /// embedder, the embedding worker (woken when an issue owes an embedding) until `cancel`
    /// fires.
    /// Errors are logged and retried on the next tick; nothing here panics on data.
    pub async fn run(&self, cancel: CancellationToken) {
        let dispatcher = {
            let this = self.clone();
            let cancel = cancel.clone();
            async move {
                loop {
                    match this.dispatcher_step().await {
                        // A full batch may mean more is due right now.
                        Ok(n) if n >= 16 => continue,
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "dispatcher step failed"),
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = this.inner.wake_dispatcher.notified() => {}
                        _ = tokio::time::sleep(this.inner.config.dispatcher_interval) => {}
                    }
                }
            }
        };
        let sweeper = {
            let this = self.clone();
            let cancel = cancel.clone();
            async move {
                loop {
                    if let Err(e) = this.sweeper_step().await {
                        tracing::warn!(error = %e, "sweeper step failed");
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(this.inner.config.sweeper_interval) => {}
                    }
                }
            }
        };
        let deliverer = self.run_deliveries(cancel.clone());
        let embedder = self.run_embeddings(cancel.clone());
        tokio::join!(dispatcher, sweeper, deliverer, embedder);
    }

    /// Runs only the delivery worker of the outbox (woken when a notification is stored, else
    /// every `dispatcher_interval`) until `cancel` fires: what an API-only process runs, so that
    /// its notifications go out at once. Any number of processes may run it (claims are leased).
    pub async fn run_deliveries(&self, cancel: CancellationToken) {
        loop {
            match self.deliver_step().await {
                // A full batch may mean more is due right now.
                Ok(n) if n >= 32 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "delivery step failed"),
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.inner.wake_outbox.notified() => {}
                _ = tokio::time::sleep(self.inner.config.dispatcher_interval) => {}
            }
        }
    }
}
