use crate::error::Result;
use crate::ports::{Event, EventBus, EventStream};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::broadcast;

/// In-process fan-out on a bounded broadcast channel. A slow subscriber skips what it missed
/// (viewers re-read terminal chunks from the store by sequence number) and never blocks others.
#[derive(Debug, Clone)]
pub struct MemoryEventBus {
    tx: broadcast::Sender<Event>,
}

impl MemoryEventBus {
    pub fn new() -> Self {
        Self::with_capacity(4096)
    }
    pub fn with_capacity(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        MemoryEventBus { tx }
    }
}

impl Default for MemoryEventBus {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl EventBus for MemoryEventBus {
    async fn publish(&self, event: Event) -> Result<()> {
        // No subscriber is not an error: nobody is watching.
        let _ = self.tx.send(event);
        Ok(())
    }

    fn subscribe(&self) -> EventStream {
        let rx = self.tx.subscribe();
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
