//! Audit entries, group-committed (see [`crate::batch`]): a burst of writes or refusals
//! costs one store write per batch, not one more per request.
//!
//! Refusals of callers nobody authenticated (an unknown key, a bad signature, a stale
//! timestamp) cost the sender nothing, so they are not all stored one by one: each period,
//! the first few are recorded as usual, and the rest are counted per source address, action
//! and outcome, each count written as one row with its number of repeats when the period
//! ends. The store's growth is then bounded per period, whatever the request rate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ens_store::{AuditEntry, RequestStore};

use crate::batch::{BatchError, BatchWrite, GroupCommit};

/// Most distinct (source, action, outcome) counts kept in one period; refusals beyond them
/// are counted under the source `*`, so a flood from many addresses adds a bounded number of
/// rows per period.
pub const MAX_REFUSAL_GROUPS: usize = 256;

/// This period's unauthenticated refusals: how many more may be recorded one by one, and the
/// counts of the rest, each with the first counted refusal's entry.
struct RefusalPeriod {
    individual_left: u32,
    counted: HashMap<GroupKey, AuditEntry>,
}

/// Which refusals one row counts.
type GroupKey = (String, String, String);

/// The queue in front of the store's audit log; cheap to share.
pub struct AuditLog {
    queue: GroupCommit<AuditEntry, ()>,
    store: Arc<dyn RequestStore>,
    /// Unauthenticated refusals recorded one by one per period.
    individual_per_period: u32,
    refusals: Mutex<RefusalPeriod>,
}

impl AuditLog {
    /// An audit log writing to `store`, recording up to `individual_per_period`
    /// unauthenticated refusals one by one each period.
    #[must_use]
    pub fn new(store: Arc<dyn RequestStore>, individual_per_period: u32) -> Self {
        let writer = Arc::clone(&store);
        Self {
            queue: GroupCommit::new(move |batch| record_batch(Arc::clone(&writer), batch)),
            store,
            individual_per_period,
            refusals: Mutex::new(RefusalPeriod {
                individual_left: individual_per_period,
                counted: HashMap::new(),
            }),
        }
    }

    /// Records `entry` and waits until it is stored.
    ///
    /// # Errors
    /// When the batch carrying it could not be written.
    pub async fn record(&self, entry: AuditEntry) -> Result<(), BatchError> {
        self.queue.submit(entry).await
    }

    /// Takes the refusal of a caller nobody authenticated: returns it when it is to be
    /// recorded one by one (this period's allowance is not used up), else counts it for the
    /// next [`AuditLog::flush_refusals`].
    pub fn admit_refusal(&self, entry: AuditEntry) -> Option<AuditEntry> {
        let mut period = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if period.individual_left > 0 {
            period.individual_left -= 1;
            return Some(entry);
        }
        let mut key = (
            entry.source_ip.clone(),
            entry.action.clone(),
            entry.outcome.clone(),
        );
        if !period.counted.contains_key(&key) && period.counted.len() >= MAX_REFUSAL_GROUPS {
            key.0 = "*".to_owned();
        }
        period
            .counted
            .entry(key)
            .and_modify(|counted| counted.repeats = counted.repeats.saturating_add(1))
            .or_insert(AuditEntry { repeats: 1, ..entry });
        None
    }

    /// Writes this period's refusal counts, one row each (the first counted refusal's time,
    /// RequestId and key, the group's source), and starts a new period. Returns how many
    /// refusals the rows stand for; on a store failure they are logged and lost.
    pub async fn flush_refusals(&self) -> u64 {
        let counted: Vec<AuditEntry> = {
            let mut period = self
                .refusals
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            period.individual_left = self.individual_per_period;
            period
                .counted
                .drain()
                .map(|(key, entry)| AuditEntry {
                    source_ip: key.0,
                    ..entry
                })
                .collect()
        };
        if counted.is_empty() {
            return 0;
        }
        let refusals = counted.iter().map(|entry| u64::from(entry.repeats)).sum();
        if let Err(error) = self.store.record_audits(&counted).await {
            tracing::error!(%error, refusals, "audit counts of refused requests lost");
        }
        refusals
    }
}

fn record_batch(store: Arc<dyn RequestStore>, batch: Vec<AuditEntry>) -> BatchWrite<()> {
    Box::pin(async move {
        let outcome = store.record_audits(&batch).await.map_err(BatchError::from);
        vec![outcome; batch.len()]
    })
}
