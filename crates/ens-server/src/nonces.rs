//! SignatureNonce claims, group-committed (see [`crate::batch`]): replay protection costs
//! one store write per batch of requests, not one per request.

use std::collections::HashSet;
use std::sync::Arc;

use ens_store::{NonceClaim, RequestStore};
use time::OffsetDateTime;

use crate::batch::{BatchError, BatchWrite, GroupCommit};

/// The queue in front of the store's nonce records; cheap to share.
pub struct NonceLedger {
    queue: GroupCommit<(NonceClaim, OffsetDateTime), bool>,
}

impl NonceLedger {
    /// A ledger writing to `store`.
    #[must_use]
    pub fn new(store: Arc<dyn RequestStore>) -> Self {
        Self {
            queue: GroupCommit::new(move |batch| claim_batch(Arc::clone(&store), batch)),
        }
    }

    /// Records `claim`, made by a request received at `now`, and says whether it won
    /// (`false`: the nonce was used already).
    ///
    /// # Errors
    /// When the batch carrying the claim could not be written.
    pub async fn claim(&self, claim: NonceClaim, now: OffsetDateTime) -> Result<bool, BatchError> {
        self.queue.submit((claim, now)).await
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
    use ens_domain::AccessKeyId;
    use ens_store::Store;
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
        let ledger = Arc::new(NonceLedger::new(store));
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
}
