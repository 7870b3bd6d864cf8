//! Audit entries, group-committed (see [`crate::batch`]): a burst of writes or refusals
//! costs one store write per batch, not one more per request.

use std::sync::Arc;

use ens_store::{AuditEntry, RequestStore};

use crate::batch::{BatchError, BatchWrite, GroupCommit};

/// The queue in front of the store's audit log; cheap to share.
pub struct AuditLog {
    queue: GroupCommit<AuditEntry, ()>,
}

impl AuditLog {
    /// An audit log writing to `store`.
    #[must_use]
    pub fn new(store: Arc<dyn RequestStore>) -> Self {
        Self {
            queue: GroupCommit::new(move |batch| record_batch(Arc::clone(&store), batch)),
        }
    }

    /// Records `entry` and waits until it is stored.
    ///
    /// # Errors
    /// When the batch carrying it could not be written.
    pub async fn record(&self, entry: AuditEntry) -> Result<(), BatchError> {
        self.queue.submit(entry).await
    }
}

fn record_batch(store: Arc<dyn RequestStore>, batch: Vec<AuditEntry>) -> BatchWrite<()> {
    Box::pin(async move {
        let outcome = store.record_audits(&batch).await.map_err(BatchError::from);
        vec![outcome; batch.len()]
    })
}
