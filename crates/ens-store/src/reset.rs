//! Resets for tests: the store put back as it started, whole or one account at a time, while
//! the server keeps serving (the control API's `reset`). Every rule of the listings holds
//! afterwards: the accounts that had images shared in from a reset account see their
//! listings renumbered and counted exactly, as after a `DeleteImage`.

use ens_domain::AccountId;

use crate::access::require_account;
use crate::images::CountChanges;
use crate::{Store, StoreResult};

/// What a reset removed, so a caller can tell a reset that found nothing from one that did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResetSummary {
    /// Custom images removed (their disks, nodes, shares and listing rows with them).
    pub images: u64,
    /// Accounts removed (only a whole reset removes accounts).
    pub accounts: u64,
}

/// What a whole reset deletes, in an order the foreign keys accept (listing and share rows
/// before the images, whose own rows then cascade); `$1` is the account kept.
const RESET_ALL: [&str; 11] = [
    "DELETE FROM image_listing WHERE scope <> 'system'",
    "DELETE FROM listing_counts WHERE scope <> 'system'",
    "DELETE FROM image_shares",
    "DELETE FROM images WHERE owner_id IS NOT NULL",
    "DELETE FROM instances",
    "DELETE FROM snapshots",
    "DELETE FROM policy_attachments",
    "DELETE FROM policies",
    "DELETE FROM access_keys WHERE account_id <> $1 OR user_name IS NOT NULL",
    "DELETE FROM ram_users",
    "DELETE FROM accounts WHERE id <> $1",
];

/// What an account's reset deletes once its shared-out images left their targets'
/// listings, in an order the foreign keys accept; `$1` is the account.
const RESET_ACCOUNT: [&str; 10] = [
    "DELETE FROM image_listing WHERE scope = $1",
    "DELETE FROM listing_counts WHERE scope = $1",
    "DELETE FROM image_shares WHERE account_id = $1",
    "DELETE FROM images WHERE owner_id = $1",
    "DELETE FROM instances WHERE owner_id = $1",
    "DELETE FROM snapshots WHERE owner_id = $1",
    "DELETE FROM policy_attachments WHERE account_id = $1",
    "DELETE FROM policies WHERE account_id = $1",
    "DELETE FROM access_keys WHERE account_id = $1 AND user_name IS NOT NULL",
    "DELETE FROM ram_users WHERE account_id = $1",
];

/// Runs `statements` in order, each with `$1` bound to `account` when it uses it, and returns
/// how many rows each removed.
async fn run_all(
    tx: &mut dyn crate::engine::Session,
    statements: &[&str],
    account: &AccountId,
) -> StoreResult<Vec<u64>> {
    let mut removed = Vec::with_capacity(statements.len());
    for sql in statements {
        let params: &[crate::engine::Param<'_>] = if sql.contains("$1") {
            &[crate::engine::Param::Text(Some(account.as_str()))]
        } else {
            &[]
        };
        removed.push(tx.execute(sql, params).await?);
    }
    Ok(removed)
}

/// Which statement of the lists above removes the images, and which the accounts.
const IMAGES_AT: usize = 3;
const ACCOUNTS_AT: usize = 10;

impl Store {
    /// Puts the store back as a first start left it: the public catalog and the account
    /// `keep` with its owner AccessKeys stay; every other account, every custom image, share,
    /// instance, snapshot, RAM user (with its keys) and policy goes. One transaction.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn reset_all(&self, keep: &AccountId) -> StoreResult<ResetSummary> {
        self.write(|mut tx| async move {
            let removed = run_all(&mut *tx, &RESET_ALL, keep).await?;
            let summary = ResetSummary {
                images: removed.get(IMAGES_AT).copied().unwrap_or(0),
                accounts: removed.get(ACCOUNTS_AT).copied().unwrap_or(0),
            };
            Ok((tx, summary))
        })
        .await
    }

    /// Empties one account: its custom images (unlisted from the accounts they were shared
    /// with), the shares it received, its instances, snapshots, RAM users (with their keys)
    /// and policies. The account and its owner AccessKeys stay, so a test holding them goes
    /// on. Other accounts are untouched but for losing what this one shared with them.
    ///
    /// # Errors
    /// `NotFound` for an unknown account; otherwise when the store fails.
    pub async fn reset_account(&self, account: &AccountId) -> StoreResult<ResetSummary> {
        self.write(|mut tx| async move {
            require_account(&mut *tx, account).await?;
            let params = [account.as_str().into()];
            let mut counts = CountChanges::default();
            // Each image this account shared leaves its targets' listings as a revoked share does.
            let shared_out = tx
                .rows(
                    "SELECT s.account_id, s.image_seq FROM image_shares s JOIN images i ON i.seq = s.image_seq \
                     WHERE i.owner_id = $1 ORDER BY s.account_id, s.image_seq",
                    &params,
                )
                .await?;
            for mut row in shared_out {
                let (target, seq) = (row.text(0)?, row.int(1)?);
                self.remove_from_listings(&mut *tx, &mut counts, &target, seq)
                    .await?;
            }
            counts.apply(&mut *tx).await?;
            let removed = run_all(&mut *tx, &RESET_ACCOUNT, account).await?;
            let images = removed.get(IMAGES_AT).copied().unwrap_or(0);
            Ok((tx, ResetSummary { images, accounts: 0 }))
        })
        .await
    }
}
