//! SignatureNonce claims.
//!
//! Where the server's store is its own (the embedded SQLite store), claims are decided in
//! memory: an index of every unexpired nonce on record, loaded once from the record as the
//! server starts (or at the first claim, if that comes first) and kept by every claim. A
//! request waits for no store write; the claims it wins are written to the record in the
//! background by one writer, at once when it is idle, and under load all those that arrived
//! during its previous write together, so that a restart refuses replays too. What that
//! costs, exactly: a claim reaches the record one write (about a millisecond) after it was
//! answered, so a `kill -9` or a crash in between loses the claims of that moment, and those
//! requests could be replayed after the restart within their clock window. A clean stop
//! writes every claim first. The index holds at most [`MAX_INDEXED_CLAIMS`]; past it claims
//! are decided by the record, as below.
//!
//! Where replicas share the store (PostgreSQL), only the store can tell a replay: each
//! claim is decided by the database, one batched write for the claims of many requests,
//! and the request waits for it.
//!
//! When the embedded store cannot write its nonce record (a full disk), claims go on in
//! memory instead, checked against the record as it stands, so that reads keep working: the
//! record is marked incomplete (which needs no disk space) and the claims are written as
//! soon as it accepts writes again. A start that finds the mark refuses requests signed
//! before it until the clock window has passed. Where replicas share the store, a failed
//! claim fails the request.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use ens_domain::AccessKeyId;
use ens_store::{nonce_digest, NonceClaim, RequestStore, StoreError};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::batch::{BatchError, BatchWrite, GroupCommit};

/// Most claims held in memory while the record cannot be written (about 100 bytes each);
/// beyond them requests are refused as the store failure they meet.
pub const MAX_UNRECORDED_CLAIMS: usize = 200_000;

/// Most claims the in-memory index holds (about 24 bytes each, 100 MiB in all); past it
/// claims are decided by the record, one batched write each, until expired ones are pruned.
pub const MAX_INDEXED_CLAIMS: usize = 4_000_000;

/// Independent locks the index is split over, so that concurrent claims rarely wait.
const INDEX_SHARDS: usize = 16;

/// How often expired claims leave the index.
const PRUNE_INDEX_EVERY: Duration = Duration::from_secs(60);

/// How long a clean stop waits for the claims still being written.
const FLUSH_PATIENCE: Duration = Duration::from_secs(10);

/// Every unexpired claim on record or being written, by digest ([`nonce_digest`]), with its
/// expiry in Unix seconds.
struct NonceIndex {
    /// Loaded from the record at the first claim; `false` when the record held too many to
    /// index, and claims are decided by the record for this process's life.
    loaded: tokio::sync::OnceCell<bool>,
    shards: [std::sync::Mutex<HashMap<i64, i64>>; INDEX_SHARDS],
    len: AtomicUsize,
    /// Claims won here whose write has not ended yet.
    unwritten: AtomicUsize,
    /// When expired claims were last pruned (Unix seconds).
    pruned_at: std::sync::Mutex<i64>,
    /// Claims won here and not yet handed to the record, and whether a writer task is
    /// running (it takes them all, batch after batch).
    waiting: std::sync::Mutex<(Vec<NonceClaim>, bool)>,
}

/// What the index says of a claim.
enum Decision {
    Won,
    Replay,
    /// The index is full and does not hold it: the record decides.
    Full,
}

impl NonceIndex {
    fn new() -> Self {
        Self {
            loaded: tokio::sync::OnceCell::new(),
            shards: std::array::from_fn(|_| std::sync::Mutex::default()),
            len: AtomicUsize::new(0),
            unwritten: AtomicUsize::new(0),
            pruned_at: std::sync::Mutex::new(0),
            waiting: std::sync::Mutex::new((Vec::new(), false)),
        }
    }

    fn shard(&self, digest: i64) -> std::sync::MutexGuard<'_, HashMap<i64, i64>> {
        // The remainder is below INDEX_SHARDS, so the index is in bounds.
        let index = usize::try_from(digest.unsigned_abs() % INDEX_SHARDS as u64).unwrap_or(0);
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims `digest` until `expires_at` at `now`.
    fn decide(&self, digest: i64, expires_at: i64, now: i64) -> Decision {
        let mut shard = self.shard(digest);
        match shard.get_mut(&digest) {
            Some(held) if *held > now => Decision::Replay,
            Some(held) => {
                *held = expires_at;
                Decision::Won
            }
            None if self.len.load(Ordering::Relaxed) >= MAX_INDEXED_CLAIMS => Decision::Full,
            None => {
                shard.insert(digest, expires_at);
                self.len.fetch_add(1, Ordering::Relaxed);
                Decision::Won
            }
        }
    }

    /// Forgets claims expired at `now`, at most once per [`PRUNE_INDEX_EVERY`].
    fn prune(&self, now: i64) {
        {
            let mut pruned_at = self.pruned_at.lock().unwrap_or_else(PoisonError::into_inner);
            let every = i64::try_from(PRUNE_INDEX_EVERY.as_secs()).unwrap_or(i64::MAX);
            if now < pruned_at.saturating_add(every) {
                return;
            }
            *pruned_at = now;
        }
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let before = shard.len();
            shard.retain(|_, expires_at| *expires_at > now);
            self.len.fetch_sub(before - shard.len(), Ordering::Relaxed);
        }
    }
}

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
    /// Claims decided in memory: for a store of this process alone.
    index: Option<NonceIndex>,
    /// Why the record last refused a claim won in memory: the answer once
    /// [`MAX_UNRECORDED_CLAIMS`] are held.
    last_refusal: std::sync::Mutex<Option<Arc<StoreError>>>,
}

impl NonceLedger {
    /// A ledger writing to `store`; `keep_mark_until` is when the window opened by a record
    /// lost at start has passed.
    #[must_use]
    pub fn new(store: Arc<dyn RequestStore>, keep_mark_until: Option<OffsetDateTime>) -> Self {
        let writer = Arc::clone(&store);
        let local = store.nonces_are_local();
        Self {
            queue: GroupCommit::new(move |batch| claim_batch(Arc::clone(&writer), batch)),
            local,
            marked_incomplete: AtomicBool::new(keep_mark_until.is_some()),
            store,
            unrecorded: Mutex::new(HashMap::new()),
            holds_unrecorded: AtomicBool::new(false),
            keep_mark_until,
            index: local.then(NonceIndex::new),
            last_refusal: std::sync::Mutex::new(None),
        }
    }

    /// Records `claim`, made by a request received at `now`, and says whether it won
    /// (`false`: the nonce was used already).
    ///
    /// # Errors
    /// When the claim could be neither written nor, for a store of this process alone,
    /// decided from the record and held in memory.
    pub async fn claim(self: &Arc<Self>, claim: NonceClaim, now: OffsetDateTime) -> Result<bool, BatchError> {
        if let Some(index) = self.usable_index(now).await? {
            if let Some(cause) = self.unrecorded_at_cap(now).await {
                return Err(BatchError::Store(cause));
            }
            let digest = nonce_digest(claim.key.as_str(), &claim.nonce);
            match index.decide(digest, claim.expires_at.unix_timestamp(), now.unix_timestamp()) {
                Decision::Replay => return Ok(false),
                Decision::Won => {
                    self.write_later(index, claim);
                    return Ok(true);
                }
                Decision::Full => {}
            }
        }
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

    /// Loads the index from the record now, where there is one, rather than at the first claim.
    ///
    /// # Errors
    /// When the record cannot be read (the first claim tries again).
    pub async fn preload(&self, now: OffsetDateTime) -> Result<(), BatchError> {
        self.usable_index(now).await.map(drop)
    }

    /// The index, once loaded, when this store has one and it holds the whole record.
    async fn usable_index(&self, now: OffsetDateTime) -> Result<Option<&NonceIndex>, BatchError> {
        let Some(index) = &self.index else {
            return Ok(None);
        };
        let whole = index
            .loaded
            .get_or_try_init(|| async {
                let recorded = self.store.recorded_nonces(now).await?;
                if recorded.len() > MAX_INDEXED_CLAIMS / 2 {
                    tracing::warn!(
                        recorded = recorded.len(),
                        "too many unexpired nonces on record to decide claims in memory: the record decides each"
                    );
                    // The record decides against its keyed table, which must hold the log.
                    self.store.fold_nonce_log().await?;
                    return Ok::<_, StoreError>(false);
                }
                for (digest, expires_at) in recorded {
                    index.decide(digest, expires_at, now.unix_timestamp());
                }
                Ok(true)
            })
            .await?;
        Ok(whole.then_some(index))
    }

    /// Writes a claim the index won to the record in the background; a claim the record
    /// cannot take is held in memory like any claim made while it cannot be written.
    fn write_later(self: &Arc<Self>, index: &NonceIndex, claim: NonceClaim) {
        index.unwritten.fetch_add(1, Ordering::AcqRel);
        let start_writer = {
            let mut waiting = index.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            waiting.0.push(claim);
            !std::mem::replace(&mut waiting.1, true)
        };
        if start_writer {
            // Idle, a claim is written at once; under load the claims arriving while one
            // batch is written make the next one.
            let ledger = Arc::clone(self);
            tokio::spawn(async move { ledger.write_waiting().await });
        }
    }

    /// Writes the waiting claims, one store call per batch, until none is left.
    async fn write_waiting(&self) {
        let Some(index) = &self.index else { return };
        loop {
            // Requests already woken claim their nonces before this batch is taken, so that
            // under load a write carries many claims: each commit has a fixed cost.
            tokio::task::yield_now().await;
            let claims = {
                let mut waiting = index.waiting.lock().unwrap_or_else(PoisonError::into_inner);
                if waiting.0.is_empty() {
                    waiting.1 = false;
                    return;
                }
                std::mem::take(&mut waiting.0)
            };
            // The index decided them all: the record only keeps them.
            if let Err(error) = self.store.record_nonces(&claims).await {
                let cause = Arc::new(error);
                for claim in &claims {
                    self.hold_unrecorded(claim.clone(), &cause).await;
                }
            }
            index.unwritten.fetch_sub(claims.len(), Ordering::AcqRel);
        }
    }

    /// Why claims are refused, when the record cannot be written and [`MAX_UNRECORDED_CLAIMS`]
    /// unexpired claims wait for it already.
    async fn unrecorded_at_cap(&self, now: OffsetDateTime) -> Option<Arc<StoreError>> {
        if !self.holds_unrecorded.load(Ordering::Acquire) {
            return None;
        }
        let mut unrecorded = self.unrecorded.lock().await;
        if unrecorded.len() < MAX_UNRECORDED_CLAIMS {
            return None;
        }
        unrecorded.retain(|_, expires_at| *expires_at > now);
        if unrecorded.len() < MAX_UNRECORDED_CLAIMS {
            return None;
        }
        self.last_refusal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Holds `claim`, already won, until the record takes it (see [`Self::settle`]).
    async fn hold_unrecorded(&self, claim: NonceClaim, cause: &Arc<StoreError>) {
        *self.last_refusal.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(cause));
        let mut unrecorded = self.unrecorded.lock().await;
        if unrecorded.is_empty() {
            tracing::error!(
                error = %cause,
                "the nonce record cannot be written: claims are kept in memory and written once it can be; free disk space"
            );
            self.mark_incomplete();
        }
        unrecorded.insert((claim.key, claim.nonce), claim.expires_at);
        self.holds_unrecorded.store(true, Ordering::Release);
    }

    /// Waits until every claim decided in memory has been written or is held for
    /// [`Self::settle`]: a clean stop calls it first, so that a restart refuses their replays.
    pub async fn flush(&self) {
        let Some(index) = &self.index else { return };
        let deadline = tokio::time::Instant::now() + FLUSH_PATIENCE;
        while index.unwritten.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
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
        if let Some(index) = &self.index {
            index.prune(now.unix_timestamp());
        }
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
            self.refuse_when_full()?;
            RequestStore::claim_nonces(&self.store, claims, now).await
        }

        async fn record_nonces(&self, claims: &[NonceClaim]) -> StoreResult<()> {
            self.refuse_when_full()?;
            RequestStore::record_nonces(&self.store, claims).await
        }
    }

    impl FullDisk {
        fn refuse_when_full(&self) -> StoreResult<()> {
            if self.full.load(Ordering::SeqCst) {
                let cause = std::io::Error::other("database or disk is full");
                return Err(StoreError::Full(Box::new(cause)));
            }
            Ok(())
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
        let ledger = Arc::new(NonceLedger::new(Arc::clone(&disk) as Arc<dyn RequestStore>, None));
        assert!(ledger.claim(claim("before"), NOW).await.unwrap());
        ledger.flush().await;

        disk.full.store(true, Ordering::SeqCst);
        // Used before the disk filled: refused.
        assert!(!ledger.claim(claim("before"), NOW).await.unwrap());
        // New nonces win once, from memory.
        assert!(ledger.claim(claim("during"), NOW).await.unwrap());
        assert!(!ledger.claim(claim("during"), NOW).await.unwrap());
        ledger.flush().await;
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
        let ledger = Arc::new(NonceLedger::new(Arc::clone(&disk) as Arc<dyn RequestStore>, None));
        disk.full.store(true, Ordering::SeqCst);
        assert!(matches!(
            ledger.claim(claim("n"), NOW).await,
            Err(BatchError::Store(error)) if matches!(*error, StoreError::Full(_))
        ));
    }

    #[tokio::test]
    async fn claims_decided_in_memory_reach_the_record_and_a_restart_refuses_their_replays() {
        let store: Arc<dyn RequestStore> = Arc::new(Store::temporary().await.unwrap());
        let ledger = Arc::new(NonceLedger::new(Arc::clone(&store), None));
        assert!(
            ledger.index.is_some(),
            "the embedded store decides claims in memory"
        );
        for nonce in ["a", "b", "c"] {
            assert!(ledger.claim(claim(nonce), NOW).await.unwrap());
        }
        assert!(!ledger.claim(claim("b"), NOW).await.unwrap());
        ledger.flush().await;
        for nonce in ["a", "b", "c"] {
            assert!(
                store.nonce_in_use(&claim(nonce), NOW).await.unwrap(),
                "{nonce} on record"
            );
        }

        // A new ledger on the same store, as after a restart, loads the record.
        let restarted = Arc::new(NonceLedger::new(Arc::clone(&store), None));
        assert!(!restarted.claim(claim("a"), NOW).await.unwrap());
        assert!(restarted.claim(claim("d"), NOW).await.unwrap());
        // Past its expiry a nonce may be used again.
        let later = NOW + time::Duration::minutes(31);
        assert!(restarted.claim(claim("a"), later).await.unwrap());
    }

    #[test]
    fn the_index_forgets_expired_claims_when_pruned() {
        let index = NonceIndex::new();
        assert!(matches!(index.decide(1, 100, 0), Decision::Won));
        assert!(matches!(index.decide(2, 200, 0), Decision::Won));
        assert!(matches!(index.decide(1, 100, 50), Decision::Replay));
        index.prune(150);
        assert_eq!(index.len.load(Ordering::Relaxed), 1);
        assert!(matches!(index.decide(1, 300, 150), Decision::Won));
        assert!(matches!(index.decide(2, 300, 150), Decision::Replay));
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
