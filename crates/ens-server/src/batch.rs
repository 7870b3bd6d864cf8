//! Group commit: many requests' small writes carried by one store write.
//!
//! Every signed request records its nonce, and every write or refusal its audit entry,
//! durably before it is answered. One store write each makes the store's write lock the
//! bottleneck of the whole service. Instead, requests queue their items and one task writes
//! whatever has queued in a single store call: while one batch is being written the next one
//! gathers, so under load a write carries many items, and alone an item is written at once
//! (no timer, no added latency). A batch is written alone unless it stalls: only then does
//! the next one start beside it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ens_store::StoreError;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Most items written in one batch.
const MAX_BATCH: usize = 512;
/// Batches being written at once, at most.
const WRITERS: usize = 4;
/// How long a batch is written alone. Most writes take a few milliseconds; one that takes
/// longer (a database restarting) lets the next batch start beside it, so the items queued
/// behind it wait for their own batch only.
const STALLED_AFTER: Duration = Duration::from_millis(20);
/// Items that may wait for the writer before senders wait too.
const QUEUE_DEPTH: usize = 8192;

/// Why an item has no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError {
    /// The batch's write failed. Every item of the batch gets the same store error, shared
    /// rather than copied (a `StoreError` cannot be cloned), and left undecided: the server
    /// turns it into a wire error exactly as it does a direct store failure
    /// ([`crate::error::ServerError`]), so the two paths cannot disagree.
    #[error("the batched store write failed: {0}")]
    Store(Arc<StoreError>),
    /// The writer task is gone (the server is stopping).
    #[error("the batch writer has stopped")]
    Stopped,
}

impl From<StoreError> for BatchError {
    fn from(error: StoreError) -> Self {
        Self::Store(Arc::new(error))
    }
}

/// The future a batch write returns: one outcome per item, in order.
pub type BatchWrite<R> = Pin<Box<dyn Future<Output = Vec<Result<R, BatchError>>> + Send>>;

type WriteFn<T, R> = dyn Fn(Vec<T>) -> BatchWrite<R> + Send + Sync;

struct Pending<T, R> {
    item: T,
    reply: oneshot::Sender<Result<R, BatchError>>,
}

/// A queue of items in front of one batched store write; cheap to share.
pub struct GroupCommit<T, R> {
    write: Arc<WriteFn<T, R>>,
    queue: OnceLock<mpsc::Sender<Pending<T, R>>>,
}

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// A queue whose batches `write` stores. The writer task starts with the first item, so
    /// the queue can be built outside a runtime.
    pub fn new(write: impl Fn(Vec<T>) -> BatchWrite<R> + Send + Sync + 'static) -> Self {
        Self {
            write: Arc::new(write),
            queue: OnceLock::new(),
        }
    }

    /// Queues `item` and waits until the batch carrying it is written.
    ///
    /// # Errors
    /// When that batch could not be written.
    pub async fn submit(&self, item: T) -> Result<R, BatchError> {
        let queue = self.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
            tokio::spawn(write_batches(Arc::clone(&self.write), receiver));
            sender
        });
        let (reply, answer) = oneshot::channel();
        queue
            .send(Pending { item, reply })
            .await
            .map_err(|_| BatchError::Stopped)?;
        answer.await.map_err(|_| BatchError::Stopped)?
    }
}

/// Writes queued items in batches, one at a time while the store keeps up: the items that
/// arrive during a write all go in the next one, so each write carries as many as it can
/// (on PostgreSQL, four batches in flight made five times the commits and twice the
/// database's CPU per request). When a write stalls (a database restarting), the next batch
/// starts after [`STALLED_AFTER`], up to [`WRITERS`] at once, so an item waits for its own
/// batch only, not for every batch queued before it.
async fn write_batches<T: Send + 'static, R: Send + 'static>(
    write: Arc<WriteFn<T, R>>,
    mut receiver: mpsc::Receiver<Pending<T, R>>,
) {
    let writers = Arc::new(Semaphore::new(WRITERS));
    loop {
        let Ok(permit) = Arc::clone(&writers).acquire_owned().await else {
            return;
        };
        let mut batch = Vec::with_capacity(MAX_BATCH);
        if receiver.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let write = Arc::clone(&write);
        let (written, done) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let (items, replies): (Vec<T>, Vec<_>) = batch
                .into_iter()
                .map(|pending| (pending.item, pending.reply))
                .unzip();
            let mut outcomes = write(items).await.into_iter();
            for reply in replies {
                let outcome = outcomes.next().unwrap_or(Err(BatchError::Stopped));
                // A caller that went away no longer needs its answer.
                let _ = reply.send(outcome);
            }
            drop(permit);
            drop(written);
        });
        // Ends when the batch is written (the sender dropped) or has stalled.
        let _ = tokio::time::timeout(STALLED_AFTER, done).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// The items of each batch written, in order.
    type Written = Arc<Mutex<Vec<Vec<u32>>>>;

    /// A queue whose writes take `pause` each, recording each batch's items.
    fn recording(pause: Duration) -> (Arc<GroupCommit<u32, u32>>, Written) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&batches);
        let queue = GroupCommit::new(move |items: Vec<u32>| {
            let seen = Arc::clone(&seen);
            Box::pin(async move {
                seen.lock().unwrap().push(items.clone());
                // Item 0 stands for a write that hangs (a database restarting).
                let hangs = items.contains(&0);
                tokio::time::sleep(if hangs { Duration::from_secs(3600) } else { pause }).await;
                items.into_iter().map(|item| Ok(item * 10)).collect()
            }) as BatchWrite<u32>
        });
        (Arc::new(queue), batches)
    }

    fn submit(queue: &Arc<GroupCommit<u32, u32>>, item: u32) -> tokio::task::JoinHandle<u32> {
        let queue = Arc::clone(queue);
        tokio::spawn(async move { queue.submit(item).await.unwrap() })
    }

    #[tokio::test(start_paused = true)]
    async fn items_arriving_during_a_write_go_together_in_the_next() {
        let (queue, batches) = recording(Duration::from_millis(5));
        let first = submit(&queue, 1);
        // One item a millisecond while the first write takes five.
        let mut rest = Vec::new();
        for item in 2..=4 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            rest.push(submit(&queue, item));
        }
        assert_eq!(first.await.unwrap(), 10);
        for (item, handle) in (2..=4).zip(rest) {
            assert_eq!(handle.await.unwrap(), item * 10);
        }
        assert_eq!(*batches.lock().unwrap(), [vec![1], vec![2, 3, 4]]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_write_holds_up_only_its_own_items() {
        let (queue, batches) = recording(Duration::from_millis(5));
        let stalled = submit(&queue, 0);
        tokio::time::sleep(Duration::from_millis(1)).await;
        let later = submit(&queue, 7);
        let answered = tokio::time::timeout(Duration::from_secs(1), later).await;
        assert_eq!(answered.unwrap().unwrap(), 70);
        assert!(!stalled.is_finished());
        assert_eq!(*batches.lock().unwrap(), [vec![0], vec![7]]);
    }
}
