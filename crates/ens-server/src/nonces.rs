//! SignatureNonce claims, group-committed (see [`crate::batch`]): replay protection costs
//! one store write per batch of requests, not one per request.
//!
//! When the embedded store cannot write its nonce record (a full disk), claims go on in
//! memory instead, checked against the record as it stands, so that reads keep working: the
//! record is marked incomplete (which needs no disk space) and the claims are written as
//! soon as it accepts writes again. A start that finds the mark refuses requests signed
//! before it until the clock window has passed. Where replicas share the store (PostgreSQL),
//! only the store can tell a replay, and a failed claim fails the request.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ens_domain::AccessKeyId;
use ens_store::{NonceClaim, RequestStore, StoreError};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::batch::{BatchError, BatchWrite, GroupCommit};

/// Most claims held in memory while the record cannot be written (about 100 bytes each);
/// beyond them requests are refused as the store failure they meet.
pub const MAX_UNRECORDED_CLAIMS: usize = 200_000;

/// The queue in front of the store's nonce records; cheap to share.
pub struct NonceLedger {
    queue: GroupCommit<(NonceClaim, OffsetDateTime), bool>,
    store: Arc<dyn RequestStore>,
    /// Whether this process alone claims in the store, so claims may go on in memory.
    local: bool,
    /// Claims accepted while the record could not be written, by key and nonce, with when
    /// each may be forgotten.
    unrecorded: Mutex<HashMap<(AccessKeyId, String), OffsetDateTime>>,
    /// Whether `unrecorded` may hold claims: the common path looks at this alone.
    holds_unrecorded: AtomicBool,
    /// Whether the store's record is marked incomplete.
    marked_incomplete: AtomicBool,
    /// Until when the mark must stay although every claim is recorded: a start that lost
    /// the record refuses pre-start signatures for a window, and so must a restart within it.
    keep_mark_until: Option<OffsetDateTime>,
}

impl NonceLedger {
    /// A ledger writing to `store`; `keep_mark_until` is when the window opened by a record
    /// lost at start has passed.
    #[must_use]
    pub fn new(store: Arc<dyn RequestStore>, keep_mark_until: Option<OffsetDateTime>) -> Self {
        let writer = Arc::clone(&store);
        Self {
            queue: GroupCommit::new(move |batch| claim_batch(Arc::clone(&writer), batch)),
            local: store.nonces_are_local(),
            marked_incomplete: AtomicBool::new(keep_mark_until.is_some()),
            store,
            unrecorded: Mutex::new(HashMap::new()),
            holds_unrecorded: AtomicBool::new(false),
            keep_mark_until,
        }
    }

    /// Records `claim`, made by a request received at `now`, and says whether it won
    /// (`false`: the nonce was used already).
    ///
    /// # Errors
    /// When the claim could be neither written nor, for a store of this process alone,
    /// decided from the record and held in memory.
    pub async fn claim(&self, claim: NonceClaim, now: OffsetDateTime) -> Result<bool, BatchError> {
        if self.held_in_memory(&claim, now).await {
            return Ok(false);
        }
        // Only a store of this process alone needs the claim again after the queue has it.
        let kept = self.local.then(|| claim.clone());
        match (self.queue.submit((claim, now)).await, kept) {
            // A claim held in memory meanwhile is the earlier one (see `claim_in_memory`).
            (Ok(true), Some(claim)) => Ok(!self.held_in_memory(&claim, now).await),
            (Ok(won), _) => Ok(won),
            (Err(BatchError::Store(cause)), Some(claim)) => self.claim_in_memory(claim, now, &cause).await,
            (Err(error), _) => Err(error),
        }
    }

    /// Whether an unexpired claim of the same nonce is held in memory.
    async fn held_in_memory(&self, claim: &NonceClaim, now: OffsetDateTime) -> bool {
        if !self.holds_unrecorded.load(Ordering::Acquire) {
            return false;
        }
        let unrecorded = self.unrecorded.lock().await;
        unrecorded
            .get(&(claim.key.clone(), claim.nonce.clone()))
            .is_some_and(|expires_at| *expires_at > now)
    }

    /// Decides `claim` from the record as it stands and the claims held in memory, and holds
    /// it if it wins. Checking the record under the lock, after inserting nothing, means a
    /// concurrent claim of the same nonce that did reach the record is seen here, or sees
    /// this one in memory afterwards.
    async fn claim_in_memory(
        &self,
        claim: NonceClaim,
        now: OffsetDateTime,
        cause: &Arc<StoreError>,
    ) -> Result<bool, BatchError> {
        let mut unrecorded = self.unrecorded.lock().await;
        let id = (claim.key, claim.nonce);
        if unrecorded.get(&id).is_some_and(|expires_at| *expires_at > now) {
            return Ok(false);
        }
        let probe = NonceClaim {
            key: id.0.clone(),
            nonce: id.1.clone(),
            expires_at: claim.expires_at,
        };
        if self.store.nonce_in_use(&probe, now).await? {
            return Ok(false);
        }
        if unrecorded.len() >= MAX_UNRECORDED_CLAIMS {
            unrecorded.retain(|_, expires_at| *expires_at > now);
            if unrecorded.len() >= MAX_UNRECORDED_CLAIMS {
                return Err(BatchError::Store(Arc::clone(cause)));
            }
        }
        if unrecorded.is_empty() {
            tracing::error!(
                error = %cause,
                "the nonce record cannot be written: replay protection goes on in memory (up to \
                 {MAX_UNRECORDED_CLAIMS} requests) and the claims are written once it can be; \
                 free disk space"
            );
            self.mark_incomplete();
        }
        unrecorded.insert(id, claim.expires_at);
        self.holds_unrecorded.store(true, Ordering::Release);
        Ok(true)
    }

    fn mark_incomplete(&self) {
        match self.store.mark_nonce_record(false) {
            Ok(()) => self.marked_incomplete.store(true, Ordering::Release),
            Err(error) => tracing::error!(
                %error,
                "cannot mark the nonce record incomplete: if the server stops before the claims held in memory \
                 are written, requests answered meanwhile could be replayed after its restart"
            ),
        }
    }

    /// Writes the claims held in memory, when the record accepts writes again, and lifts
    /// the incomplete mark once nothing is missing from the record. Run periodically and at
    /// shutdown; returns how many claims are still held.
    pub async fn settle(&self, now: OffsetDateTime) -> usize {
        if self.holds_unrecorded.load(Ordering::Acquire) {
            let mut unrecorded = self.unrecorded.lock().await;
            unrecorded.retain(|_, expires_at| *expires_at > now);
            let claims: Vec<NonceClaim> = unrecorded
                .iter()
                .map(|((key, nonce), expires_at)| NonceClaim {
                    key: key.clone(),
                    nonce: nonce.clone(),
                    expires_at: *expires_at,
                })
                .collect();
            if !claims.is_empty() {
                if let Err(error) = self.store.claim_nonces(&claims, now).await {
                    tracing::debug!(%error, held = claims.len(), "the nonce record still cannot be written");
                    return claims.len();
                }
                tracing::warn!(
                    written = claims.len(),
                    "the nonce record accepts writes again: the claims held in memory are on record"
                );
            }
            unrecorded.clear();
            self.holds_unrecorded.store(false, Ordering::Release);
        }
        let window_open = self.keep_mark_until.is_some_and(|until| now < until);
        if self.marked_incomplete.load(Ordering::Acquire) && !window_open {
            match self.store.mark_nonce_record(true) {
                Ok(()) => self.marked_incomplete.store(false, Ordering::Release),
                Err(error) => tracing::warn!(%error, "cannot lift the nonce record's incomplete mark"),
            }
        }
        0
    }
}

fn claim_batch(store: Arc<dyn RequestStore>, batch: Vec<(NonceClaim, OffsetDateTime)>) -> BatchWrite<bool> {
    Box::pin(async move {
        // A nonce twice in one batch: the first claim stands for both and the second is a
        // replay, exactly as if they had been written one after the other.
        let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(batch.len());
        let mut distinct = Vec::with_capacity(batch.len());
        let mut slot = Vec::with_capacity(batch.len());
        for (claim, _) in &batch {
            if seen.insert((claim.key.as_str(), claim.nonce.as_str())) {
                slot.push(Some(distinct.len()));
                distinct.push(claim.clone());
            } else {
                slot.push(None);
            }
        }
        // A stored nonce must have expired before the earliest request of the batch.
        let now = batch
            .iter()
            .map(|(_, now)| *now)
            .min()
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let outcome = store.claim_nonces(&distinct, now).await.map_err(BatchError::from);
        slot.into_iter()
            .map(|slot| match (&outcome, slot) {
                (_, None) => Ok(false),
                (Ok(won), Some(index)) => Ok(won.get(index).copied().unwrap_or(false)),
                (Err(error), Some(_)) => Err(error.clone()),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ens_store::{Store, StoreResult};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);

    fn claim(nonce: &str) -> NonceClaim {
        NonceClaim {
            key: AccessKeyId::parse("AKTEST").unwrap(),
            nonce: nonce.to_owned(),
            expires_at: NOW + time::Duration::minutes(30),
        }
    }

    #[tokio::test]
    async fn a_nonce_wins_once_even_when_claimed_concurrently() {
        let store: Arc<dyn RequestStore> = Arc::new(Store::temporary().await.unwrap());
        let ledger = Arc::new(NonceLedger::new(store, None));
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..200 {
            let ledger = Arc::clone(&ledger);
            // 100 distinct nonces, each claimed twice at the same time.
            tasks.spawn(async move {
                (
                    index % 100,
                    ledger.claim(claim(&format!("n{}", index % 100)), NOW).await,
                )
            });
        }
        let mut wins = [0_u32; 100];
        while let Some(joined) = tasks.join_next().await {
            let (nonce, outcome) = joined.unwrap();
            wins[nonce] += u32::from(outcome.unwrap());
        }
        assert!(wins.iter().all(|count| *count == 1), "{wins:?}");
        assert!(!ledger.claim(claim("n7"), NOW).await.unwrap());
        assert!(ledger.claim(claim("n100"), NOW).await.unwrap());
    }

    /// A store whose nonce writes fail on demand, as on a full disk.
    struct FullDisk {
        store: Store,
        full: AtomicBool,
        local: bool,
    }

    #[async_trait::async_trait]
    impl RequestStore for FullDisk {
        fn store(&self) -> &Store {
            &self.store
        }

        fn nonces_are_local(&self) -> bool {
            self.local
        }

        async fn claim_nonces(&self, claims: &[NonceClaim], now: OffsetDateTime) -> StoreResult<Vec<bool>> {
            if self.full.load(Ordering::SeqCst) {
                let cause = std::io::Error::other("database or disk is full");
                return Err(StoreError::Full(Box::new(cause)));
            }
            RequestStore::claim_nonces(&self.store, claims, now).await
        }
    }

    async fn full_disk(local: bool) -> Arc<FullDisk> {
        Arc::new(FullDisk {
            store: Store::temporary().await.unwrap(),
            full: AtomicBool::new(false),
            local,
        })
    }

    #[tokio::test]
    async fn on_a_full_disk_claims_go_on_in_memory_and_reach_the_record_afterwards() {
        let disk = full_disk(true).await;
        let ledger = NonceLedger::new(Arc::clone(&disk) as Arc<dyn RequestStore>, None);
        assert!(ledger.claim(claim("before"), NOW).await.unwrap());

        disk.full.store(true, Ordering::SeqCst);
        // Used before the disk filled: the record as it stands refuses it.
        assert!(!ledger.claim(claim("before"), NOW).await.unwrap());
        // New nonces win once, from memory.
        assert!(ledger.claim(claim("during"), NOW).await.unwrap());
        assert!(!ledger.claim(claim("during"), NOW).await.unwrap());
        assert!(ledger.marked_incomplete.load(Ordering::SeqCst));
        assert_eq!(
            ledger.settle(NOW).await,
            1,
            "still full: the claim stays in memory"
        );

        disk.full.store(false, Ordering::SeqCst);
        // Space is back but the claim is not yet written: memory still refuses the replay.
        assert!(!ledger.claim(claim("during"), NOW).await.unwrap());
        assert_eq!(ledger.settle(NOW).await, 0);
        assert!(!ledger.holds_unrecorded.load(Ordering::SeqCst));
        assert!(!ledger.marked_incomplete.load(Ordering::SeqCst));
        // Now the record itself refuses it.
        assert!(!disk.nonce_in_use(&claim("after"), NOW).await.unwrap());
        assert!(disk.nonce_in_use(&claim("during"), NOW).await.unwrap());
        assert!(!ledger.claim(claim("during"), NOW).await.unwrap());
        assert!(ledger.claim(claim("after"), NOW).await.unwrap());
    }

    #[tokio::test]
    async fn a_shared_store_that_cannot_record_a_claim_fails_the_request() {
        let disk = full_disk(false).await;
        let ledger = NonceLedger::new(Arc::clone(&disk) as Arc<dyn RequestStore>, None);
        disk.full.store(true, Ordering::SeqCst);
        assert!(matches!(
            ledger.claim(claim("n"), NOW).await,
            Err(BatchError::Store(error)) if matches!(*error, StoreError::Full(_))
        ));
    }

    #[tokio::test]
    async fn a_record_lost_at_start_stays_marked_for_the_window() {
        let disk = full_disk(true).await;
        let until = NOW + time::Duration::minutes(30);
        let ledger = NonceLedger::new(Arc::clone(&disk) as Arc<dyn RequestStore>, Some(until));
        ledger.settle(NOW).await;
        assert!(ledger.marked_incomplete.load(Ordering::SeqCst));
        ledger.settle(until).await;
        assert!(!ledger.marked_incomplete.load(Ordering::SeqCst));
    }
}
