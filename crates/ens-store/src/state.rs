//! The store's state as one value: everything an account holds (keys, RAM users, policies,
//! instances, snapshots, custom images with their shares), read in one consistent moment and
//! written back in one transaction. It is what the control API exports as a readable
//! document, seeds a server from, and keeps as a named snapshot for tests to roll back to.
//!
//! The public catalog is not part of it: it is configuration (`--catalog`), the same before
//! and after. Neither are the audit log and the used nonces, which a roll-back must not undo.
//! Listings are not stored in the state either: an import renumbers the listings it touched
//! from the images, exactly as one image at a time would have left them.

use std::collections::{BTreeSet, HashMap};

use ens_domain::{
    AccessKeyId, AccessKeyStatus, AccountId, DiskDeviceMapping, Image, ImageId, ImageStatus, Instance,
    NodeId, RamUserName, Snapshot,
};
use time::OffsetDateTime;

use crate::access::require_account;
use crate::admin::{insert_instance, insert_snapshot};
use crate::engine::{Access, Dialect, PageCopy, Param, Session};
use crate::images::{image_insert_columns, image_row, CountChanges, EncodedImage};
use crate::reset::{clear_account, run_all, RESET_ALL};
use crate::rows::{
    account_from, corrupt, failure_from, format_time, image_from_row, instance_from_row, node_from,
    parse_time, snapshot_from_row, to_i64, to_u64, user_from, IMAGE_COLUMNS, INSTANCE_COLUMNS,
    SNAPSHOT_COLUMNS,
};
use crate::{ImageShare, NewImage, RamUser, Store, StoreError, StoreResult, StoredPolicy};

/// An AccessKey with its secret as stored (sealed by the server's master key).
#[derive(Clone)]
pub struct StateKey {
    /// The key's public ID.
    pub id: AccessKeyId,
    /// The RAM user it signs for; `None` for the account's owner.
    pub user: Option<RamUserName>,
    /// The secret, sealed: the server opens it for an export and seals it on import.
    pub sealed_secret: String,
    /// Whether it may sign.
    pub status: AccessKeyStatus,
    /// When it was made.
    pub created_at: OffsetDateTime,
}

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateKey")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A custom image with its build state and the accounts it is shared with.
#[derive(Debug, Clone)]
pub struct StateImage {
    /// The image (its ID, status, nodes and disks) and where its build stands.
    pub new: NewImage,
    /// The accounts it is shared with, oldest share first.
    pub shares: Vec<ImageShare>,
    /// Where the image stood among every image of the store it was read from (listings are
    /// in this order). A snapshot restored into that same store puts each image back in its
    /// place, between images other accounts made since; `None` (a document from elsewhere)
    /// places the image after every existing one.
    pub place: Option<i64>,
}

/// Everything one account holds.
#[derive(Debug, Clone)]
pub struct AccountState {
    /// The account.
    pub id: AccountId,
    /// When it was made.
    pub created_at: OffsetDateTime,
    /// Its AccessKeys, the owner's and its RAM users'.
    pub keys: Vec<StateKey>,
    /// Its RAM users.
    pub users: Vec<RamUser>,
    /// Its policies, each with the users it is attached to.
    pub policies: Vec<StoredPolicy>,
    /// Its instances, in registration order (which the in-use refusal names first).
    pub instances: Vec<Instance>,
    /// Its snapshots.
    pub snapshots: Vec<Snapshot>,
    /// Its custom images, oldest first (the order of its listings).
    pub images: Vec<StateImage>,
    /// Images of other accounts shared with this one; only an account's own state carries
    /// them (in a whole state they are the owners' shares already).
    pub shared_in: Vec<(ImageId, ImageShare)>,
}

/// The state of the whole store or of one account.
#[derive(Debug, Clone, Default)]
pub struct StoreState {
    /// The accounts, oldest first.
    pub accounts: Vec<AccountState>,
}

impl StoreState {
    /// How many custom images the state holds.
    #[must_use]
    pub fn image_count(&self) -> usize {
        self.accounts.iter().map(|account| account.images.len()).sum()
    }
}

/// What an import replaced: the whole store, or one account.
#[derive(Debug, Clone, Copy)]
pub enum ImportScope<'a> {
    /// Everything goes but the public catalog and the account `keep` with its owner
    /// AccessKeys (the server's owner, as a reset keeps it); then the state is written.
    Whole {
        /// The owner account, which a test holding its key must keep.
        keep: &'a AccountId,
    },
    /// Only this account is emptied and written again; the state must hold only it.
    Account(&'a AccountId),
}

/// The state kept for a roll-back: the engine's page copy of the whole database where it
/// makes one (SQLite, milliseconds for thousands of images), else the rows of the state.
#[derive(Debug)]
pub struct StateSnapshot {
    kept: Kept,
    /// Custom images it holds.
    pub images: u64,
    /// Accounts it holds.
    pub accounts: u64,
    /// The memory it holds (for rows, an estimate).
    pub bytes: u64,
}

/// What the rows of one custom image, account or source take in a snapshot, roughly: enough
/// to bound the memory snapshots hold, not to account for it byte by byte.
const ROW_BYTES_ESTIMATE: u64 = 1024;

impl StateSnapshot {
    /// Whether it is the engine's page copy, which restores in milliseconds.
    #[must_use]
    pub fn is_page_copy(&self) -> bool {
        matches!(self.kept, Kept::Pages(_))
    }
}

#[derive(Debug)]
enum Kept {
    Pages(PageCopy),
    Rows(StoreState),
}

/// Rows per multi-row `INSERT` of images and their parts: far under both engines' limits on
/// bound parameters (17 per image row).
const INSERT_CHUNK: usize = 200;

/// Columns of the custom images an export reads: [`IMAGE_COLUMNS`] and the build fields.
const EXPORT_IMAGE_COLUMNS: &str = "build_due_at, build_failure, release_instance";

/// Lists every `Available` image of scope `$1` (owned or shared in), numbered per node in
/// image order as the listings are: the rows [`crate::images`] would have added one by one.
const LIST_SCOPE: &str = "INSERT INTO image_listing (scope, node_id, image_seq, position) \
     SELECT $1, node_id, image_seq, row_number() OVER (PARTITION BY node_id ORDER BY image_seq) - 1 FROM ( \
       SELECT '' AS node_id, i.seq AS image_seq FROM images i \
        WHERE i.status = 'Available' AND (i.owner_id = $1 OR EXISTS \
              (SELECT 1 FROM image_shares s WHERE s.image_seq = i.seq AND s.account_id = $1)) \
       UNION ALL \
       SELECT n.node_id, i.seq FROM images i JOIN image_nodes n ON n.image_seq = i.seq \
        WHERE i.status = 'Available' AND (i.owner_id = $1 OR EXISTS \
              (SELECT 1 FROM image_shares s WHERE s.image_seq = i.seq AND s.account_id = $1)) \
     ) AS listed";

impl Store {
    /// Keeps the state of the whole store (`None`) or of one account for
    /// [`Store::restore_snapshot`]. A whole snapshot is the engine's page copy where it makes
    /// one: then it holds the public catalog too, and restoring it puts back everything but
    /// the audit records made since and the used nonces (which live apart).
    ///
    /// # Errors
    /// `Invalid` when it would take more than `max_bytes` of memory, `NotFound` for an unknown
    /// account; otherwise when the store fails.
    pub async fn snapshot(&self, account: Option<&AccountId>, max_bytes: u64) -> StoreResult<StateSnapshot> {
        if account.is_none() {
            if let Some(pages) = self.engine.copy_pages(max_bytes).await? {
                let (images, accounts) = self.held_counts().await?;
                return Ok(StateSnapshot {
                    bytes: pages.bytes,
                    kept: Kept::Pages(pages),
                    images,
                    accounts,
                });
            }
        }
        let state = self.export_state(account).await?;
        let rows: usize = state
            .accounts
            .iter()
            .map(|held| 1 + held.images.len() + held.keys.len() + held.instances.len() + held.snapshots.len())
            .sum();
        let bytes = u64::try_from(rows)
            .unwrap_or(u64::MAX)
            .saturating_mul(ROW_BYTES_ESTIMATE);
        if bytes > max_bytes {
            return Err(StoreError::Invalid(format!(
                "the snapshot would take about {} MiB of memory; {} MiB are left for snapshots",
                bytes >> 20,
                max_bytes >> 20
            )));
        }
        Ok(StateSnapshot {
            images: u64::try_from(state.image_count()).unwrap_or(u64::MAX),
            accounts: u64::try_from(state.accounts.len()).unwrap_or(u64::MAX),
            bytes,
            kept: Kept::Rows(state),
        })
    }

    /// Puts back what `snapshot` kept: the whole store (keeping the owner account `keep` when
    /// the snapshot is rows), or its one account.
    ///
    /// # Errors
    /// When the store fails; a refused restore changes nothing.
    pub async fn restore_snapshot(
        &self,
        snapshot: &StateSnapshot,
        scope: ImportScope<'_>,
    ) -> StoreResult<()> {
        match &snapshot.kept {
            Kept::Pages(pages) => {
                let restored = self.engine.restore_pages(pages).await;
                self.read_model.everything_changed();
                restored
            }
            Kept::Rows(state) => self.import_state(state, scope).await.map(drop),
        }
    }

    /// How many custom images and accounts the store holds, as of one moment.
    pub(crate) async fn held_counts(&self) -> StoreResult<(u64, u64)> {
        let mut tx = self.session(Access::Read).await?;
        let images = tx
            .count("SELECT COUNT(*) FROM images WHERE owner_id IS NOT NULL", &[])
            .await?;
        let accounts = tx.count("SELECT COUNT(*) FROM accounts", &[]).await?;
        tx.commit().await?;
        Ok((images, accounts))
    }

    /// The state of the whole store (`None`) or of one account, as of one moment.
    ///
    /// # Errors
    /// `NotFound` for an unknown account; otherwise when the store fails.
    pub async fn export_state(&self, account: Option<&AccountId>) -> StoreResult<StoreState> {
        let mut tx = self.session(Access::Read).await?;
        let scope = [account.map(AccountId::as_str).into()];
        let mut accounts = Vec::new();
        let mut at = HashMap::new();
        for mut row in tx
            .rows(
                "SELECT id, created_at FROM accounts WHERE $1 IS NULL OR id = $1 ORDER BY created_at, id",
                &scope,
            )
            .await?
        {
            let id = account_from(&row.text(0)?)?;
            at.insert(id.as_str().to_owned(), accounts.len());
            accounts.push(AccountState {
                id,
                created_at: parse_time(&row.text(1)?)?,
                keys: Vec::new(),
                users: Vec::new(),
                policies: Vec::new(),
                instances: Vec::new(),
                snapshots: Vec::new(),
                images: Vec::new(),
                shared_in: Vec::new(),
            });
        }
        if let (Some(account), true) = (account, accounts.is_empty()) {
            return Err(StoreError::NotFound(format!("account {account}")));
        }
        // Each part is read in one statement and handed to its account.
        for mut row in tx
            .rows(
                "SELECT id, account_id, user_name, secret, status, created_at FROM access_keys \
                 WHERE $1 IS NULL OR account_id = $1 ORDER BY created_at, id",
                &scope,
            )
            .await?
        {
            let key = StateKey {
                id: AccessKeyId::parse(&row.text(0)?).map_err(corrupt)?,
                user: row.maybe_text(2)?.as_deref().map(user_from).transpose()?,
                sealed_secret: row.text(3)?,
                status: AccessKeyStatus::from_stored(&row.text(4)?),
                created_at: parse_time(&row.text(5)?)?,
            };
            account_at(&mut accounts, &at, &row.text(1)?)?.keys.push(key);
        }
        for mut row in tx
            .rows(
                "SELECT account_id, name, user_id, created_at FROM ram_users \
                 WHERE $1 IS NULL OR account_id = $1 ORDER BY created_at, name",
                &scope,
            )
            .await?
        {
            let owner = account_from(&row.text(0)?)?;
            let user = RamUser {
                name: user_from(&row.text(1)?)?,
                user_id: row.text(2)?,
                created_at: parse_time(&row.text(3)?)?,
                account: owner.clone(),
            };
            account_at(&mut accounts, &at, owner.as_str())?.users.push(user);
        }
        let mut attached: HashMap<(String, String), Vec<RamUserName>> = HashMap::new();
        for mut row in tx
            .rows(
                "SELECT account_id, policy_name, user_name FROM policy_attachments \
                 WHERE $1 IS NULL OR account_id = $1 ORDER BY user_name",
                &scope,
            )
            .await?
        {
            let policy = (row.text(0)?, row.text(1)?);
            attached
                .entry(policy)
                .or_default()
                .push(user_from(&row.text(2)?)?);
        }
        for mut row in tx
            .rows(
                "SELECT account_id, name, document, created_at FROM policies \
                 WHERE $1 IS NULL OR account_id = $1 ORDER BY created_at, name",
                &scope,
            )
            .await?
        {
            let (owner, name) = (row.text(0)?, row.text(1)?);
            let policy = StoredPolicy {
                account: account_from(&owner)?,
                attached_to: attached
                    .remove(&(owner.clone(), name.clone()))
                    .unwrap_or_default(),
                document: row.text(2)?,
                created_at: parse_time(&row.text(3)?)?,
                name,
            };
            account_at(&mut accounts, &at, &owner)?.policies.push(policy);
        }
        for row in tx
            .rows(
                &format!(
                    "SELECT {INSTANCE_COLUMNS} FROM instances WHERE $1 IS NULL OR owner_id = $1 ORDER BY seq"
                ),
                &scope,
            )
            .await?
        {
            let instance = instance_from_row(row)?;
            account_at(&mut accounts, &at, instance.owner.as_str())?
                .instances
                .push(instance);
        }
        for row in tx
            .rows(
                &format!(
                    "SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE $1 IS NULL OR owner_id = $1 ORDER BY id"
                ),
                &scope,
            )
            .await?
        {
            let snapshot = snapshot_from_row(row)?;
            account_at(&mut accounts, &at, snapshot.owner.as_str())?
                .snapshots
                .push(snapshot);
        }
        let images = read_images(&mut *tx, &scope).await?;
        for (owner, image) in images {
            account_at(&mut accounts, &at, &owner)?.images.push(image);
        }
        if let Some(account) = account {
            let rows = tx
                .rows(
                    "SELECT i.id, s.created_at FROM image_shares s JOIN images i ON i.seq = s.image_seq \
                     WHERE s.account_id = $1 ORDER BY s.image_seq",
                    &scope,
                )
                .await?;
            let shared_in = rows
                .into_iter()
                .map(|mut row| {
                    let share = ImageShare {
                        account: account.clone(),
                        created_at: parse_time(&row.text(1)?)?,
                    };
                    Ok((ImageId::parse(&row.text(0)?).map_err(corrupt)?, share))
                })
                .collect::<StoreResult<Vec<_>>>()?;
            account_at(&mut accounts, &at, account.as_str())?.shared_in = shared_in;
        }
        tx.commit().await?;
        Ok(StoreState { accounts })
    }

    /// Replaces the whole store or one account with `state`, in one transaction: on any
    /// refusal nothing changed. Returns how many custom images were written.
    ///
    /// # Errors
    /// `Invalid` when the state does not fit the scope or its own rules (a key or user of an
    /// account it does not hold, an image twice), `NotFound` for an unknown node or share
    /// target, `Conflict` for a key or image ID another account holds; otherwise when the
    /// store fails.
    pub async fn import_state(&self, state: &StoreState, scope: ImportScope<'_>) -> StoreResult<u64> {
        check_scope(state, scope)?;
        self.write(|mut tx| async move {
            let relisted = match scope {
                ImportScope::Whole { keep } => {
                    run_all(&mut *tx, &RESET_ALL, keep).await?;
                    None
                }
                ImportScope::Account(account) => {
                    require_account(&mut *tx, account).await?;
                    Some(self.clear_account_for_import(&mut *tx, account).await?)
                }
            };
            require_nodes(&mut *tx, nodes_named(state)).await?;
            let mut written = 0;
            for account in &state.accounts {
                write_account(&mut *tx, account).await?;
            }
            for account in &state.accounts {
                written += insert_images(&mut *tx, self.dialect, &account.images).await?;
            }
            for account in &state.accounts {
                insert_received_shares(&mut *tx, account).await?;
            }
            let scopes = match relisted {
                None => tx.texts("SELECT id FROM accounts ORDER BY id", &[]).await?,
                Some(mut scopes) => {
                    scopes.extend(state.accounts.iter().flat_map(|account| {
                        account.images.iter().flat_map(|image| {
                            image.shares.iter().map(|share| share.account.as_str().to_owned())
                        })
                    }));
                    scopes.into_iter().collect::<BTreeSet<_>>().into_iter().collect()
                }
            };
            relist(&mut *tx, &scopes).await?;
            Ok((tx, written))
        })
        .await
    }

    /// Adds one custom image in whatever status it has (a scene set up for a test), listed
    /// for its owner and the accounts it is shared with when it is `Available`.
    ///
    /// # Errors
    /// `NotFound` for an unknown owner, node or share target, `Conflict` for a taken ID;
    /// otherwise when the store fails.
    pub async fn add_state_image(&self, image: &StateImage) -> StoreResult<()> {
        let owner = image
            .new
            .image
            .owner
            .as_ref()
            .ok_or_else(|| StoreError::Invalid("a custom image has an owner".into()))?;
        self.write(|mut tx| async move {
            require_account(&mut *tx, owner).await?;
            require_nodes(
                &mut *tx,
                image.new.image.nodes.iter().map(NodeId::as_str).collect(),
            )
            .await?;
            insert_images(&mut *tx, self.dialect, std::slice::from_ref(image)).await?;
            if image.new.image.status == ImageStatus::Available {
                let seq = tx
                    .ints(
                        "SELECT seq FROM images WHERE id = $1",
                        &[image.new.image.id.as_str().into()],
                    )
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(|| corrupt(format!("image {} was not written", image.new.image.id)))?;
                let nodes: Vec<String> = image
                    .new
                    .image
                    .nodes
                    .iter()
                    .map(|node| node.as_str().to_owned())
                    .collect();
                let mut counts = CountChanges::default();
                let scopes = std::iter::once(owner).chain(image.shares.iter().map(|share| &share.account));
                for scope in scopes {
                    self.add_to_listings(&mut *tx, &mut counts, scope.as_str(), seq, &nodes)
                        .await?;
                }
                counts.apply(&mut *tx).await?;
            }
            Ok((tx, ()))
        })
        .await
    }

    /// Empties `account` as its reset does, inside an import's transaction, and returns the
    /// accounts whose listings must be numbered again: it and those it had shared with.
    async fn clear_account_for_import(
        &self,
        tx: &mut dyn Session,
        account: &AccountId,
    ) -> StoreResult<Vec<String>> {
        let mut scopes = tx
            .texts(
                "SELECT DISTINCT s.account_id FROM image_shares s JOIN images i ON i.seq = s.image_seq \
                 WHERE i.owner_id = $1",
                &[account.as_str().into()],
            )
            .await?;
        clear_account(self, tx, account, false).await?;
        scopes.push(account.as_str().to_owned());
        Ok(scopes)
    }
}

/// Refuses a state that does not fit `scope` or repeats an account or image.
fn check_scope(state: &StoreState, scope: ImportScope<'_>) -> StoreResult<()> {
    if let ImportScope::Account(account) = scope {
        if state.accounts.len() != 1 || state.accounts.iter().any(|held| &held.id != account) {
            return Err(StoreError::Invalid(format!(
                "an import into account {account} must hold that account alone"
            )));
        }
    }
    let mut accounts = BTreeSet::new();
    let mut images = BTreeSet::new();
    for account in &state.accounts {
        if !accounts.insert(account.id.as_str()) {
            return Err(StoreError::Invalid(format!(
                "account {} appears twice",
                account.id
            )));
        }
        for image in &account.images {
            let image = &image.new.image;
            if image.owner.as_ref() != Some(&account.id) {
                return Err(StoreError::Invalid(format!(
                    "image {} is listed under account {} but owned by another",
                    image.id, account.id
                )));
            }
            if !images.insert(image.id.as_str()) {
                return Err(StoreError::Invalid(format!("image {} appears twice", image.id)));
            }
        }
    }
    Ok(())
}

/// Every node the state names.
fn nodes_named(state: &StoreState) -> BTreeSet<&str> {
    let mut named: BTreeSet<&str> = BTreeSet::new();
    for account in &state.accounts {
        named.extend(account.instances.iter().map(|instance| instance.node.as_str()));
        named.extend(account.snapshots.iter().map(|snapshot| snapshot.node.as_str()));
        for image in &account.images {
            named.extend(image.new.image.nodes.iter().map(NodeId::as_str));
        }
    }
    named
}

/// Fails with `NotFound` unless every node in `named` is a known node.
async fn require_nodes(tx: &mut dyn Session, named: BTreeSet<&str>) -> StoreResult<()> {
    let known: BTreeSet<String> = tx.texts("SELECT id FROM nodes", &[]).await?.into_iter().collect();
    match named.into_iter().find(|node| !known.contains(*node)) {
        Some(node) => Err(StoreError::NotFound(format!("node {node}"))),
        None => Ok(()),
    }
}

/// Writes an account (kept if it is there already), its keys, users, policies, instances
/// and snapshots.
async fn write_account(tx: &mut dyn Session, account: &AccountState) -> StoreResult<()> {
    let id = account.id.as_str();
    tx.execute(
        "INSERT INTO accounts (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
        &[id.into(), format_time(account.created_at)?.as_str().into()],
    )
    .await?;
    for user in &account.users {
        if user.account != account.id {
            return Err(StoreError::Invalid(format!(
                "RAM user {} is listed under account {id} but belongs to another",
                user.name
            )));
        }
        let inserted = tx
            .execute(
                "INSERT INTO ram_users (account_id, name, user_id, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
                &[
                    id.into(),
                    user.name.as_str().into(),
                    user.user_id.as_str().into(),
                    format_time(user.created_at)?.as_str().into(),
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "RAM user {} (or its UserId {})",
                user.name, user.user_id
            )));
        }
    }
    for key in &account.keys {
        if key
            .user
            .as_ref()
            .is_some_and(|user| !account.users.iter().any(|known| &known.name == user))
        {
            return Err(StoreError::Invalid(format!(
                "AccessKey {} signs for a RAM user account {id} does not hold",
                key.id
            )));
        }
        // The owner's keys stay through a whole import: one named again keeps its ID and
        // takes the state's secret and status; a key of another principal is a conflict.
        let written = tx
            .execute(
                "INSERT INTO access_keys (id, account_id, user_name, secret, status, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE \
                 SET secret = excluded.secret, status = excluded.status \
                 WHERE access_keys.account_id = excluded.account_id \
                   AND access_keys.user_name IS NOT DISTINCT FROM excluded.user_name",
                &[
                    key.id.as_str().into(),
                    id.into(),
                    key.user.as_ref().map(RamUserName::as_str).into(),
                    key.sealed_secret.as_str().into(),
                    key.status.as_str().into(),
                    format_time(key.created_at)?.as_str().into(),
                ],
            )
            .await?;
        if written == 0 {
            return Err(StoreError::Conflict(format!(
                "AccessKey {} (held by another account or user)",
                key.id
            )));
        }
    }
    for policy in &account.policies {
        tx.execute(
            "INSERT INTO policies (account_id, name, document, created_at) VALUES ($1, $2, $3, $4)",
            &[
                id.into(),
                policy.name.as_str().into(),
                policy.document.as_str().into(),
                format_time(policy.created_at)?.as_str().into(),
            ],
        )
        .await?;
        for user in &policy.attached_to {
            if !account.users.iter().any(|known| &known.name == user) {
                return Err(StoreError::Invalid(format!(
                    "policy {} is attached to RAM user {user}, whom account {id} does not hold",
                    policy.name
                )));
            }
            tx.execute(
                "INSERT INTO policy_attachments (account_id, user_name, policy_name) VALUES ($1, $2, $3)",
                &[id.into(), user.as_str().into(), policy.name.as_str().into()],
            )
            .await?;
        }
    }
    for instance in &account.instances {
        insert_instance(tx, instance).await?;
    }
    for snapshot in &account.snapshots {
        insert_snapshot(tx, snapshot).await?;
    }
    Ok(())
}

/// The custom images in `scope` (`$1`: one owner, or NULL for all) with their nodes, disks
/// and shares, each with its owner's ID, oldest first.
async fn read_images(tx: &mut dyn Session, scope: &[Param<'_>]) -> StoreResult<Vec<(String, StateImage)>> {
    const OWNED: &str = "i.owner_id IS NOT NULL AND ($1 IS NULL OR i.owner_id = $1)";
    let mut images = Vec::new();
    let mut by_seq = HashMap::new();
    let columns = IMAGE_COLUMNS
        .split(", ")
        .chain(EXPORT_IMAGE_COLUMNS.split(", "))
        .map(|column| format!("i.{column}"))
        .collect::<Vec<_>>()
        .join(", ");
    for mut row in tx
        .rows(
            &format!("SELECT {columns} FROM images i WHERE {OWNED} ORDER BY i.seq"),
            scope,
        )
        .await?
    {
        let (due, failure, release) = (row.maybe_int(15)?, row.maybe_text(16)?, row.maybe_text(17)?);
        let (seq, image) = image_from_row(row)?;
        let owner = image
            .owner
            .as_ref()
            .map(|owner| owner.as_str().to_owned())
            .unwrap_or_default();
        by_seq.insert(seq, images.len());
        images.push((
            owner,
            StateImage {
                new: NewImage {
                    image,
                    build_due_at: due.map(from_millis).transpose()?,
                    build_failure: failure_from(failure)?,
                    release_instance: release,
                },
                shares: Vec::new(),
                place: Some(seq),
            },
        ));
    }
    for mut row in tx
        .rows(
            &format!(
                "SELECT n.image_seq, n.node_id FROM image_nodes n JOIN images i ON i.seq = n.image_seq \
                 WHERE {OWNED} ORDER BY n.image_seq, n.position"
            ),
            scope,
        )
        .await?
    {
        let node = node_from(&row.text(1)?)?;
        image_at(&mut images, &by_seq, row.int(0)?)?
            .new
            .image
            .nodes
            .push(node);
    }
    for mut row in tx
        .rows(
            &format!(
                "SELECT d.image_seq, d.disk_type, d.size_gib, d.format, d.file_id FROM image_disks d \
                 JOIN images i ON i.seq = d.image_seq WHERE {OWNED} ORDER BY d.image_seq, d.position"
            ),
            scope,
        )
        .await?
    {
        let disk = DiskDeviceMapping {
            disk_type: row.text(1)?,
            size_gib: to_u64(row.int(2)?, "disk size")?,
            format: row.text(3)?,
            image_id: row.text(4)?,
        };
        image_at(&mut images, &by_seq, row.int(0)?)?
            .new
            .image
            .disk_device_mappings
            .push(disk);
    }
    for mut row in tx
        .rows(
            &format!(
                "SELECT s.image_seq, s.account_id, s.created_at FROM image_shares s \
                 JOIN images i ON i.seq = s.image_seq WHERE {OWNED} ORDER BY s.image_seq, s.created_at, s.account_id"
            ),
            scope,
        )
        .await?
    {
        let share = ImageShare {
            account: account_from(&row.text(1)?)?,
            created_at: parse_time(&row.text(2)?)?,
        };
        image_at(&mut images, &by_seq, row.int(0)?)?.shares.push(share);
    }
    Ok(images)
}

/// The account `owner` of a state being read.
fn account_at<'a>(
    accounts: &'a mut [AccountState],
    at: &HashMap<String, usize>,
    owner: &str,
) -> StoreResult<&'a mut AccountState> {
    at.get(owner)
        .and_then(|index| accounts.get_mut(*index))
        .ok_or_else(|| corrupt(format!("a row names account {owner:?}, which does not exist")))
}

/// The image with sequence number `seq` of the images being read.
fn image_at<'a>(
    images: &'a mut [(String, StateImage)],
    by_seq: &HashMap<i64, usize>,
    seq: i64,
) -> StoreResult<&'a mut StateImage> {
    by_seq
        .get(&seq)
        .and_then(|index| images.get_mut(*index))
        .map(|(_, image)| image)
        .ok_or_else(|| corrupt(format!("a row names image {seq}, which is not being read")))
}

fn from_millis(value: i64) -> StoreResult<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(value) * 1_000_000).map_err(corrupt)
}

/// `INSERT INTO table (columns) VALUES (...), (...)` for `rows` rows of `width` parameters,
/// numbered with the dialect's [`Dialect::placeholder`].
fn multi_row_insert(dialect: Dialect, head: &str, rows: usize, width: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * width * 5);
    sql.push_str(head);
    for row in 0..rows {
        sql.push_str(if row == 0 { " VALUES (" } else { ", (" });
        for column in 0..width {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push(dialect.placeholder());
            sql.push_str(&(row * width + column + 1).to_string());
        }
        sql.push(')');
    }
    sql.push_str(tail);
    sql
}

/// Writes `images` with their nodes, disks and shares, many rows per statement (a restore of
/// thousands of images must take milliseconds). Listing rows are left to [`relist`].
async fn insert_images(tx: &mut dyn Session, dialect: Dialect, images: &[StateImage]) -> StoreResult<u64> {
    let mut written = 0;
    for chunk in images.chunks(INSERT_CHUNK) {
        let mut encoded = Vec::with_capacity(chunk.len());
        for state in chunk {
            if state.new.image.nodes.is_empty() {
                return Err(StoreError::Invalid(format!(
                    "image {} is on no node",
                    state.new.image.id
                )));
            }
            encoded.push(EncodedImage::of(&state.new)?);
        }
        // Images of a snapshot of this store go back to their places, which nothing else can
        // hold: they were freed when the images were cleared, and both engines hand out each
        // sequence number once.
        let placed = chunk.iter().all(|state| state.place.is_some());
        let width = if placed { 18 } else { 17 };
        let mut params: Vec<Param<'_>> = Vec::with_capacity(chunk.len() * width);
        for (state, encoded) in chunk.iter().zip(&encoded) {
            params.extend(image_row(&state.new, encoded));
            if placed {
                params.push(state.place.into());
            }
        }
        let sql = multi_row_insert(
            dialect,
            if placed {
                concat!("INSERT INTO images (", image_insert_columns!(), ", seq)")
            } else {
                concat!("INSERT INTO images (", image_insert_columns!(), ")")
            },
            chunk.len(),
            width,
            " ON CONFLICT DO NOTHING RETURNING seq, id",
        );
        let mut seqs = HashMap::with_capacity(chunk.len());
        for mut row in tx.rows(&sql, &params).await? {
            seqs.insert(row.text(1)?, row.int(0)?);
        }
        if let Some(taken) = chunk
            .iter()
            .find(|state| !seqs.contains_key(state.new.image.id.as_str()))
        {
            return Err(StoreError::Conflict(format!("image {}", taken.new.image.id)));
        }
        written += u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        insert_parts(tx, dialect, chunk, &seqs).await?;
    }
    Ok(written)
}

/// Writes the nodes, disks and shares of `chunk`, whose images got the sequence numbers
/// `seqs` (by image ID).
async fn insert_parts(
    tx: &mut dyn Session,
    dialect: Dialect,
    chunk: &[StateImage],
    seqs: &HashMap<String, i64>,
) -> StoreResult<()> {
    let seq_of = |image: &Image| {
        seqs.get(image.id.as_str())
            .copied()
            .ok_or_else(|| corrupt(format!("image {} got no sequence number", image.id)))
    };
    // (seq, position, node)
    let mut nodes: Vec<(i64, i64, &str)> = Vec::new();
    // (seq, position, type, size, format, file)
    let mut disks: Vec<(i64, i64, &str, i64, &str, &str)> = Vec::new();
    // (seq, account, created)
    let mut shares: Vec<(i64, &str, String)> = Vec::new();
    for state in chunk {
        let image = &state.new.image;
        let seq = seq_of(image)?;
        for (position, node) in image.nodes.iter().enumerate() {
            nodes.push((seq, to_i64(position as u64, "node position")?, node.as_str()));
        }
        for (position, disk) in image.disk_device_mappings.iter().enumerate() {
            disks.push((
                seq,
                to_i64(position as u64, "disk position")?,
                disk.disk_type.as_str(),
                to_i64(disk.size_gib, "disk size")?,
                disk.format.as_str(),
                disk.image_id.as_str(),
            ));
        }
        for share in &state.shares {
            shares.push((seq, share.account.as_str(), format_time(share.created_at)?));
        }
    }
    for part in nodes.chunks(INSERT_CHUNK) {
        let params: Vec<Param<'_>> = part
            .iter()
            .flat_map(|(seq, position, node)| -> [Param<'_>; 3] {
                [(*seq).into(), (*position).into(), (*node).into()]
            })
            .collect();
        let sql = multi_row_insert(
            dialect,
            "INSERT INTO image_nodes (image_seq, position, node_id)",
            part.len(),
            3,
            "",
        );
        tx.execute(&sql, &params).await?;
    }
    for part in disks.chunks(INSERT_CHUNK) {
        let params: Vec<Param<'_>> = part
            .iter()
            .flat_map(|(seq, position, kind, size, format, file)| -> [Param<'_>; 6] {
                [
                    (*seq).into(),
                    (*position).into(),
                    (*kind).into(),
                    (*size).into(),
                    (*format).into(),
                    (*file).into(),
                ]
            })
            .collect();
        let sql = multi_row_insert(
            dialect,
            "INSERT INTO image_disks (image_seq, position, disk_type, size_gib, format, file_id)",
            part.len(),
            6,
            "",
        );
        tx.execute(&sql, &params).await?;
    }
    for (seq, account, created) in &shares {
        let target = AccountId::parse("AccountId", account).map_err(corrupt)?;
        require_account(tx, &target)
            .await
            .map_err(|_| StoreError::NotFound(format!("account {account} (an image is shared with it)")))?;
        tx.execute(
            "INSERT INTO image_shares (image_seq, account_id, created_at) VALUES ($1, $2, $3)",
            &[(*seq).into(), (*account).into(), created.as_str().into()],
        )
        .await?;
    }
    Ok(())
}

/// Shares of other accounts' images with this account, for those images that still exist.
async fn insert_received_shares(tx: &mut dyn Session, account: &AccountState) -> StoreResult<()> {
    for (image, share) in &account.shared_in {
        tx.execute(
            "INSERT INTO image_shares (image_seq, account_id, created_at) \
             SELECT seq, $2, $3 FROM images WHERE id = $1 AND owner_id IS NOT NULL AND owner_id <> $2 \
             ON CONFLICT DO NOTHING",
            &[
                image.as_str().into(),
                account.id.as_str().into(),
                format_time(share.created_at)?.as_str().into(),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Numbers the listings of `scopes` again from their images, with exact counts.
async fn relist(tx: &mut dyn Session, scopes: &[String]) -> StoreResult<()> {
    for scope in scopes {
        let params = [scope.as_str().into()];
        tx.execute("DELETE FROM image_listing WHERE scope = $1", &params)
            .await?;
        tx.execute("DELETE FROM listing_counts WHERE scope = $1", &params)
            .await?;
        tx.execute(LIST_SCOPE, &params).await?;
        tx.execute(
            "INSERT INTO listing_counts (scope, node_id, count) \
             SELECT scope, node_id, COUNT(*) FROM image_listing WHERE scope = $1 GROUP BY scope, node_id",
            &params,
        )
        .await?;
    }
    Ok(())
}
