//! Group commit: many requests' small writes carried by one store write.
//!
//! Every signed request records its nonce, and every write or refusal its audit entry,
//! durably before it is answered. One store write each makes the store's write lock the
//! bottleneck of the whole service. Instead, requests queue their items and one task writes
//! whatever has queued in a single store call: while one batch is being written the next one
//! gathers, so under load a write carries many items, and alone an item is written at once
//! (no timer, no added latency).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use ens_store::StoreError;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Most items written in one batch.
const MAX_BATCH: usize = 512;
/// Batches being written at once.
const WRITERS: usize = 4;
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

/// Writes queued items in batches, a few batches at a time: when the store stalls (a
/// database restarting), an item waits for its own batch only, not for every batch queued
/// before it.
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
        });
    }
}
