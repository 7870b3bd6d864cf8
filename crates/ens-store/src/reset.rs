//! Resets for tests: the store put back as it started, whole or one account at a time, while
//! the server keeps serving (the control API's `reset`). Every rule of the listings holds
//! afterwards: the accounts that had images shared in from a reset account see their
//! listings renumbered and counted exactly, as after a `DeleteImage`.

use ens_domain::AccountId;

use crate::access::require_account;
use crate::engine::Access;
use crate::images::CountChanges;
use crate::state::StateSnapshot;
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
pub(crate) const RESET_ALL: [&str; 15] = [
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
    // Image files are forgotten with their images; the transfer workers' sweep removes
    // the bytes nothing refers to any more.
    "DELETE FROM image_transfer_objects",
    "DELETE FROM image_transfers",
    "DELETE FROM image_files WHERE image_id NOT IN (SELECT id FROM images)",
    "DELETE FROM image_file_removals",
];

/// What an account's reset deletes once its shared-out images left their targets'
/// listings, in an order the foreign keys accept; `$1` is the account.
const RESET_ACCOUNT: [&str; 13] = [
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
    "DELETE FROM image_transfer_objects WHERE image_id IN (SELECT image_id FROM image_transfers WHERE account_id = $1)",
    "DELETE FROM image_transfers WHERE account_id = $1",
    "DELETE FROM image_files WHERE image_id NOT IN (SELECT id FROM images)",
];

/// Runs `statements` in order, each with `$1` bound to `account` when it uses it, and returns
/// how many rows each removed.
pub(crate) async fn run_all(
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

/// A store as a first start left it, kept to reset to in one page copy (see
/// [`Store::reset_point`]), with what a reset would keep as it was then.
#[derive(Debug)]
pub struct ResetPoint {
    snapshot: StateSnapshot,
    keep: AccountId,
    kept: Vec<String>,
}

impl Store {
    /// What a whole reset keeping `keep` leaves as it is: the public catalog, the nodes, and
    /// the account's owner AccessKeys with their status and sealed secret.
    async fn kept_by_reset(&self, keep: &AccountId) -> StoreResult<Vec<String>> {
        let mut tx = self.session(Access::Read).await?;
        let mut kept = Vec::new();
        if let Some(mut row) = tx
            .row(
                "SELECT COUNT(*), COALESCE(MAX(seq), 0), (SELECT COUNT(*) FROM nodes), \
                 (SELECT COUNT(*) FROM accounts WHERE id = $1) FROM images WHERE owner_id IS NULL",
                &[keep.as_str().into()],
            )
            .await?
        {
            for column in 0..4 {
                kept.push(row.int(column)?.to_string());
            }
        }
        for mut row in tx
            .rows(
                "SELECT id, status, secret FROM access_keys WHERE account_id = $1 AND user_name IS NULL ORDER BY id",
                &[keep.as_str().into()],
            )
            .await?
        {
            kept.push(format!("{} {} {}", row.text(0)?, row.text(1)?, row.text(2)?));
        }
        tx.commit().await?;
        Ok(kept)
    }

    /// Keeps the store as it is now (a first start, before any request) to reset to in one
    /// page copy: milliseconds whatever a test suite piled up since. `None` where the engine
    /// makes no page copies (PostgreSQL), whose resets delete.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn reset_point(&self, keep: &AccountId) -> StoreResult<Option<ResetPoint>> {
        let snapshot = self.snapshot(None, u64::MAX).await?;
        if !snapshot.is_page_copy() {
            return Ok(None);
        }
        Ok(Some(ResetPoint {
            kept: self.kept_by_reset(keep).await?,
            snapshot,
            keep: keep.clone(),
        }))
    }

    /// Resets to `point` when everything a reset keeps is as it was then (the catalog was
    /// not replaced, the owner's keys were not added to, disabled or changed), which gives
    /// exactly what [`Store::reset_all`] would. Returns `None`, having changed nothing, when
    /// it is not: then the caller resets with [`Store::reset_all`]. Audit records stay.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn reset_to(&self, point: &ResetPoint) -> StoreResult<Option<ResetSummary>> {
        if self.kept_by_reset(&point.keep).await? != point.kept {
            return Ok(None);
        }
        let (images, accounts) = self.held_counts().await?;
        self.restore_snapshot(&point.snapshot, crate::ImportScope::Whole { keep: &point.keep })
            .await?;
        Ok(Some(ResetSummary {
            images: images.saturating_sub(point.snapshot.images),
            accounts: accounts.saturating_sub(point.snapshot.accounts),
        }))
    }

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
            let images = clear_account(self, &mut *tx, account, true).await?;
            Ok((tx, ResetSummary { images, accounts: 0 }))
        })
        .await
    }
}

/// Empties `account` inside the transaction `tx` (see [`Store::reset_account`]) and returns
/// how many custom images it held. With `renumber`, the listings of the accounts it shared
/// with are renumbered here, one image at a time; without, its images only leave them, and
/// the caller renumbers those listings whole (an import, which relists them anyway: one
/// pass instead of one per shared image).
pub(crate) async fn clear_account(
    store: &Store,
    tx: &mut dyn crate::engine::Session,
    account: &AccountId,
    renumber: bool,
) -> StoreResult<u64> {
    let params = [account.as_str().into()];
    if !renumber {
        tx.execute(
            "DELETE FROM image_listing WHERE image_seq IN (SELECT seq FROM images WHERE owner_id = $1)",
            &params,
        )
        .await?;
        let removed = run_all(tx, &RESET_ACCOUNT, account).await?;
        return Ok(removed.get(IMAGES_AT).copied().unwrap_or(0));
    }
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
        store.remove_from_listings(tx, &mut counts, &target, seq).await?;
    }
    counts.apply(tx).await?;
    let removed = run_all(tx, &RESET_ACCOUNT, account).await?;
    Ok(removed.get(IMAGES_AT).copied().unwrap_or(0))
}
