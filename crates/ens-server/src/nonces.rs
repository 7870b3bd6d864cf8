//! Group commit of SignatureNonce claims.
//!
//! Every signed request must record its nonce durably before it is answered, or a replay
//! after a restart (or through another replica) would pass. One write per request makes the
//! store's write lock the bottleneck of every read. Instead, requests queue their claims and
//! one task writes whatever has queued in a single statement: while one batch is being
//! written the next one gathers, so under load a write carries many claims, and alone a
//! claim is written at once (no timer, no added latency).

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use ens_store::{NonceClaim, Store};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

/// Most claims written in one batch.
const MAX_BATCH: usize = 512;
/// Claims that may wait for the writer before senders wait too.
const QUEUE_DEPTH: usize = 8192;

/// Why a claim has no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClaimError {
    /// The batch's write failed; `unavailable` when the store was unreachable or busy.
    #[error("recording the nonce failed: {message}")]
    Store {
        /// The store's error, for the log.
        message: String,
        /// Whether retrying later may succeed.
        unavailable: bool,
    },
    /// The writer task is gone (the server is stopping).
    #[error("the nonce writer has stopped")]
    Stopped,
}

struct Pending {
    claim: NonceClaim,
    now: OffsetDateTime,
    reply: oneshot::Sender<Result<bool, ClaimError>>,
}

/// The queue in front of the store's nonce table; cheap to share.
pub struct NonceLedger {
    store: Arc<dyn Store>,
    queue: OnceLock<mpsc::Sender<Pending>>,
}

impl NonceLedger {
    /// A ledger writing to `store`; its writer task starts with the first claim, so the
    /// ledger can be built outside a runtime.
    #[must_use]
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            queue: OnceLock::new(),
        }
    }

    /// Records `claim` and says whether it won (`false`: the nonce was used already).
    ///
    /// # Errors
    /// When the batch carrying the claim could not be written.
    pub async fn claim(&self, claim: NonceClaim, now: OffsetDateTime) -> Result<bool, ClaimError> {
        let queue = self.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
            tokio::spawn(write_batches(Arc::clone(&self.store), receiver));
            sender
        });
        let (reply, answer) = oneshot::channel();
        queue
            .send(Pending { claim, now, reply })
            .await
            .map_err(|_| ClaimError::Stopped)?;
        answer.await.map_err(|_| ClaimError::Stopped)?
    }
}

/// Writes queued claims, one batch at a time, until every sender is gone.
async fn write_batches(store: Arc<dyn Store>, mut receiver: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        write_batch(store.as_ref(), std::mem::take(&mut batch)).await;
    }
}

async fn write_batch(store: &dyn Store, batch: Vec<Pending>) {
    // A nonce twice in one batch: the first claim stands for both and the second is a
    // replay, exactly as if they had been written one after the other.
    let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(batch.len());
    let mut distinct = Vec::with_capacity(batch.len());
    let mut slot = Vec::with_capacity(batch.len());
    for pending in &batch {
        if seen.insert((pending.claim.key.as_str(), pending.claim.nonce.as_str())) {
            slot.push(Some(distinct.len()));
            distinct.push(pending.claim.clone());
        } else {
            slot.push(None);
        }
    }
    // A stored nonce must have expired before the earliest request of the batch.
    let now = batch
        .iter()
        .map(|pending| pending.now)
        .min()
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let outcome = store.claim_nonces(&distinct, now).await;
    for (pending, slot) in batch.into_iter().zip(slot) {
        let answer = match (&outcome, slot) {
            (_, None) => Ok(false),
            (Ok(won), Some(index)) => Ok(won.get(index).copied().unwrap_or(false)),
            (Err(error), Some(_)) => Err(ClaimError::Store {
                message: error.to_string(),
                unavailable: error.is_unavailable(),
            }),
        };
        // A caller that went away no longer needs its answer.
        let _ = pending.reply.send(answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ens_domain::AccessKeyId;
    use ens_store::SqliteStore;
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
        let store: Arc<dyn Store> = Arc::new(SqliteStore::temporary().await.unwrap());
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
