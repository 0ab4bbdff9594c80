//! Group commit for error ingest: concurrent calls are queued and one worker answers them in
//! batches, so a burst of N deliveries costs one transaction (and, for a key that keeps
//! firing, one `UPDATE`) instead of N. Each caller is answered only after its batch committed.
//!
//! The worker is a task that exists only while there is work: the first call that finds the
//! queue idle starts it, and it ends when it finds the queue empty. It owns a clone of the
//! store for that time only, so there is no background task to shut down and no cycle that
//! keeps a dropped store alive. A caller that goes away after queueing does not cancel its
//! item: the batch runs on its own task, like a statement the database already received.

use dispatch_core::ids::WorkspaceId;
use dispatch_core::ports::{IngestDraft, IngestOutcome};
use dispatch_core::{Error, Result};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Most items one batch takes; bounds the transaction and the statements' parameter count.
pub(crate) const MAX_BATCH: usize = 64;

/// Calls queued beyond this are refused with `Unavailable` (503: the sender retries) instead of
/// growing memory without bound under an alert storm.
pub(crate) const MAX_PENDING: usize = 20_000;

/// The SQL stores' queue of error ingests.
pub(crate) type IngestQueue = GroupCommit<(WorkspaceId, IngestDraft), IngestOutcome>;

/// One queued call: its input and where its answer goes.
pub(crate) struct Pending<T, R> {
    pub item: T,
    answer: oneshot::Sender<Result<R>>,
}

impl<T, R> Pending<T, R> {
    pub fn answer(self, result: Result<R>) {
        // The caller may have gone away; its item was still processed.
        let _ = self.answer.send(result);
    }
}

struct Queue<T, R> {
    pending: Vec<Pending<T, R>>,
    worker_running: bool,
}

/// The queue shared by every clone of a store.
pub(crate) struct GroupCommit<T, R> {
    queue: Arc<Mutex<Queue<T, R>>>,
}

impl<T, R> Clone for GroupCommit<T, R> {
    fn clone(&self) -> Self {
        GroupCommit {
            queue: Arc::clone(&self.queue),
        }
    }
}

impl<T, R> std::fmt::Debug for GroupCommit<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl<T, R> Default for GroupCommit<T, R> {
    fn default() -> Self {
        GroupCommit {
            queue: Arc::new(Mutex::new(Queue {
                pending: Vec::new(),
                worker_running: false,
            })),
        }
    }
}

impl<T, R> GroupCommit<T, R> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<T, R>> {
        // Only plain pushes and drains happen under the lock: a poisoned queue is still sound.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item`. Returns the receiver of its answer and whether the caller must start
    /// the worker (nobody else is draining the queue); `Unavailable` when [`MAX_PENDING`]
    /// calls are already waiting.
    pub fn submit(&self, item: T) -> Result<(oneshot::Receiver<Result<R>>, bool)> {
        let (answer, rx) = oneshot::channel();
        let mut q = self.lock();
        if q.pending.len() >= MAX_PENDING {
            return Err(Error::unavailable(format!(
                "{MAX_PENDING} error events are waiting to be stored; retry shortly"
            )));
        }
        q.pending.push(Pending { item, answer });
        let start = !q.worker_running;
        q.worker_running = true;
        Ok((rx, start))
    }

    /// The next batch, oldest first, at most [`MAX_BATCH`] items. Empty means the queue is
    /// drained and the worker must stop: the next `submit` starts a new one.
    pub fn next_batch(&self) -> Vec<Pending<T, R>> {
        let mut q = self.lock();
        if q.pending.is_empty() {
            q.worker_running = false;
            return Vec::new();
        }
        let n = q.pending.len().min(MAX_BATCH);
        q.pending.drain(..n).collect()
    }
}

impl<T, R> GroupCommit<T, R> {
    /// The worker died without draining the queue (a panic, or its runtime shut down): every
    /// queued call is answered with an error rather than left waiting, and the next call
    /// starts a new worker.
    pub fn worker_died(&self) {
        let orphans = {
            let mut q = self.lock();
            q.worker_running = false;
            std::mem::take(&mut q.pending)
        };
        for p in orphans {
            p.answer(Err(Error::unavailable(
                "the store's ingest worker stopped before answering",
            )));
        }
    }
}

/// The answer of a queued call, or an error when the worker died before answering (its
/// runtime shut down, say).
pub(crate) async fn wait<R>(rx: oneshot::Receiver<Result<R>>) -> Result<R> {
    rx.await.unwrap_or_else(|_| {
        Err(Error::unavailable(
            "the store's ingest worker stopped before answering",
        ))
    })
}

/// A copy of `e` for each caller of a failed batch step (`Error` carries a non-clonable
/// source, which the log line of the first copy keeps).
pub(crate) fn share_error(e: &Error) -> Error {
    Error::new(e.kind.clone(), e.message.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_submit_starts_the_worker_and_an_empty_batch_stops_it() {
        let g: GroupCommit<u32, u32> = GroupCommit::default();
        let (_a, start_a) = g.submit(1).unwrap();
        let (_b, start_b) = g.submit(2).unwrap();
        assert!(start_a, "the queue was idle");
        assert!(!start_b, "a worker is already draining");
        let batch = g.next_batch();
        assert_eq!(batch.iter().map(|p| p.item).collect::<Vec<_>>(), [1, 2]);
        assert!(g.next_batch().is_empty(), "drained: the worker stops");
        let (_c, start_c) = g.submit(3).unwrap();
        assert!(start_c, "after a stop the next call starts a worker again");
    }

    #[test]
    fn batches_are_bounded_and_oldest_first() {
        let g: GroupCommit<usize, ()> = GroupCommit::default();
        let _rx: Vec<_> = (0..MAX_BATCH + 5).map(|i| g.submit(i).unwrap().0).collect();
        let first = g.next_batch();
        assert_eq!(first.len(), MAX_BATCH);
        assert_eq!(first[0].item, 0);
        let second = g.next_batch();
        assert_eq!(
            second.iter().map(|p| p.item).collect::<Vec<_>>(),
            (MAX_BATCH..MAX_BATCH + 5).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_dead_worker_answers_its_queue_with_errors_and_a_new_one_starts() {
        let g: GroupCommit<u32, u32> = GroupCommit::default();
        let (rx, start) = g.submit(1).unwrap();
        assert!(start);
        g.worker_died();
        let e = wait(rx).await.expect_err("orphaned");
        assert_eq!(e.kind, dispatch_core::ErrorKind::Unavailable);
        assert!(g.submit(2).unwrap().1, "the next call starts a new worker");
    }

    #[tokio::test]
    async fn a_dropped_answer_is_an_unavailable_error() {
        let g: GroupCommit<u32, u32> = GroupCommit::default();
        let (rx, _) = g.submit(1).unwrap();
        drop(g.next_batch());
        let e = wait(rx).await.expect_err("no answer");
        assert_eq!(e.kind, dispatch_core::ErrorKind::Unavailable);
    }

    #[test]
    fn a_full_queue_refuses_more_and_takes_again_once_drained() {
        let g: GroupCommit<usize, ()> = GroupCommit::default();
        let _rx: Vec<_> = (0..MAX_PENDING).map(|i| g.submit(i).unwrap().0).collect();
        let e = g.submit(MAX_PENDING).unwrap_err();
        assert_eq!(e.kind, dispatch_core::ErrorKind::Unavailable);
        assert!(e.message.contains("retry"), "{}", e.message);
        assert_eq!(g.next_batch().len(), MAX_BATCH);
        assert!(g.submit(MAX_PENDING).is_ok(), "room again after a batch");
    }
}
