//! The one storage interface of ens-images, and its backends.
//!
//! The server and the admin command speak to storage only through [`Store`], whose methods
//! are domain operations (find an AccessKey, claim a nonce, list the images a caller sees),
//! never SQL. Each backend owns its migrations. This crate depends on the domain and on SQL
//! drivers, and knows nothing of HTTP or the wire format.
//!
//! Two backends behave identically (one storage suite runs on both):
//! - [`SqliteStore`], the embedded default: one file, one server process;
//! - [`PostgresStore`], for several server replicas sharing one database: each write locks
//!   the rows its rule checks read, so the rules hold across processes too.

mod common;
mod error;
pub mod generate;
mod postgres;
mod sqlite;

use std::fmt;

use async_trait::async_trait;
use ens_domain::{
    AccessKeyId, AccessKeyStatus, AccountId, Image, ImageId, ImageQuery, ImageView, Instance, NodeId, Page,
    PageRequest, Principal, RamUserName, Snapshot,
};
use time::OffsetDateTime;

pub use error::{StoreError, StoreResult};
pub use generate::{GenerateSpec, GeneratedAccount, GeneratedCatalog};
pub use postgres::{redact_database_url, redact_secrets, PostgresStore};
pub use sqlite::SqliteStore;

/// An AccessKey as verification needs it.
#[derive(Clone)]
pub struct StoredAccessKey {
    /// The key's public ID.
    pub id: AccessKeyId,
    /// Who it acts for: an account's owner or one of its RAM users.
    pub principal: Principal,
    /// The shared secret as stored (sealed by the server's master key); signatures are HMACs,
    /// so the verifier needs the secret itself, not a hash.
    pub secret: String,
    /// Whether it may sign.
    pub status: AccessKeyStatus,
}

impl fmt::Debug for StoredAccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredAccessKey")
            .field("id", &self.id)
            .field("principal", &self.principal)
            .field("secret", &"<redacted>")
            .field("status", &self.status)
            .finish()
    }
}

/// One request's use of a SignatureNonce, to be remembered until the request could no
/// longer pass the clock check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NonceClaim {
    /// The key that signed: nonces are unique per key.
    pub key: AccessKeyId,
    /// The caller's SignatureNonce.
    pub nonce: String,
    /// When the record may be forgotten.
    pub expires_at: OffsetDateTime,
}

/// An AccessKey as the admin command lists it: never with its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeySummary {
    /// The key's public ID.
    pub id: AccessKeyId,
    /// Who it acts for.
    pub principal: Principal,
    /// Whether it may sign.
    pub status: AccessKeyStatus,
    /// When it was made.
    pub created_at: OffsetDateTime,
}

/// An account as the admin command lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    /// The account ID.
    pub id: AccountId,
    /// When it was made.
    pub created_at: OffsetDateTime,
}

/// A RAM user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RamUser {
    /// The account it belongs to.
    pub account: AccountId,
    /// Its name, unique in the account.
    pub name: RamUserName,
    /// Its numeric ID, unique across accounts.
    pub user_id: String,
    /// When it was made.
    pub created_at: OffsetDateTime,
}

/// A stored policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    /// The account it belongs to.
    pub account: AccountId,
    /// Its name, unique in the account.
    pub name: String,
    /// The JSON document as the operator wrote it (validated before storing).
    pub document: String,
    /// The users it is attached to.
    pub attached_to: Vec<RamUserName>,
    /// When it was made.
    pub created_at: OffsetDateTime,
}

/// One audit record: a write, or a refused call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// When the call was answered.
    pub at: OffsetDateTime,
    /// The call's RequestId.
    pub request_id: String,
    /// The caller's account, when authenticated.
    pub account: Option<AccountId>,
    /// The RAM user, when the caller is one.
    pub user: Option<RamUserName>,
    /// The AccessKey ID the caller presented.
    pub access_key_id: Option<String>,
    /// The action.
    pub action: String,
    /// The resource ARN (or `*`).
    pub resource: String,
    /// The caller's IP address.
    pub source_ip: String,
    /// `Success`, or the error code returned.
    pub outcome: String,
}

/// Which audit records to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this account's calls.
    pub account: Option<AccountId>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this outcome (`Success` or an error code).
    pub outcome: Option<String>,
    /// Only records at or after this time.
    pub since: Option<OffsetDateTime>,
    /// At most this many, newest first.
    pub limit: u32,
}

/// A new custom image, before the store gives it an ID.
#[derive(Debug, Clone)]
pub struct NewImage {
    /// Everything but the ID (which the store generates: `m-` plus 25 lower-case
    /// alphanumerics, never reused). Disks with an empty `image_id` get the new ID.
    pub image: Image,
    /// When the first build step ends; `None` when the image is created `Available`.
    pub build_due_at: Option<OffsetDateTime>,
    /// Where the build is set to fail, copied from the source.
    pub build_failure: Option<ens_domain::BuildFailure>,
    /// Instance to release once the image is uploaded.
    pub release_instance: Option<String>,
}

/// A `DescribeSelfImages` query: the caller's own and shared-in custom images.
#[derive(Debug, Clone)]
pub struct SelfImageQuery {
    /// The caller.
    pub viewer: AccountId,
    /// Substring of the image ID.
    pub image_id_contains: Option<String>,
    /// Substring of the image name.
    pub image_name_contains: Option<String>,
    /// Exact snapshot ID.
    pub snapshot_id: Option<String>,
    /// Which page.
    pub page: PageRequest,
}

/// One account an image is shared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageShare {
    /// The account.
    pub account: AccountId,
    /// When the share was made.
    pub created_at: OffsetDateTime,
}

/// Connection pool usage, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Open connections.
    pub size: u32,
    /// Idle connections among them.
    pub idle: usize,
}

/// Everything the service persists, in domain terms.
///
/// Every write is one transaction: acknowledged means committed.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Connection pool usage now, when the backend pools connections.
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }

    /// Records that server `replica` is alive at `now` and returns how many replicas were
    /// alive in the last `window` (itself included). Per-replica limits, such as the
    /// request rate, are divided by this count. The default suits backends that only one
    /// process can serve at a time (the embedded SQLite store): always one.
    async fn heartbeat(
        &self,
        replica: &str,
        now: OffsetDateTime,
        window: std::time::Duration,
    ) -> StoreResult<u32> {
        let _ = (replica, now, window);
        Ok(1)
    }

    /// Looks up a key by ID, whatever its status.
    async fn access_key(&self, id: &AccessKeyId) -> StoreResult<Option<StoredAccessKey>>;

    /// Records each claimed nonce as used with its key until its `expires_at`, all in one
    /// round trip: the server gathers the claims of concurrent requests into one call, so
    /// replay protection costs one write per batch, not one per request. Returns, in order,
    /// whether each claim won; `false` means the nonce was already recorded and has not
    /// expired at `now` (a replay). The claims must be distinct.
    async fn claim_nonces(&self, claims: &[NonceClaim], now: OffsetDateTime) -> StoreResult<Vec<bool>>;

    /// Forgets nonces whose replay window has passed; returns how many.
    async fn prune_nonces(&self, now: OffsetDateTime) -> StoreResult<u64>;

    /// Whether any account exists (an empty store gets its owner account at first start).
    async fn has_accounts(&self) -> StoreResult<bool>;

    /// Creates an account and one active AccessKey for it, atomically.
    async fn create_account_with_key(
        &self,
        account: &AccountId,
        key: &AccessKeyId,
        secret: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()>;

    /// Creates the owner account and its key if the store has no account yet; returns whether
    /// it did. Replicas starting together create one owner between them. The default suits
    /// backends served by one process at a time.
    async fn bootstrap_owner(
        &self,
        account: &AccountId,
        key: &AccessKeyId,
        secret: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        if self.has_accounts().await? {
            return Ok(false);
        }
        self.create_account_with_key(account, key, secret, now).await?;
        Ok(true)
    }

    /// Loads a public catalog: always when `replace_existing`, else only into a store that has
    /// none yet; returns whether it loaded. Replicas starting together load it once. The
    /// default suits backends served by one process at a time.
    async fn install_catalog(
        &self,
        nodes: &[NodeId],
        images: &[Image],
        replace_existing: bool,
    ) -> StoreResult<bool> {
        if !replace_existing && self.has_catalog().await? {
            return Ok(false);
        }
        self.replace_catalog(nodes, images).await?;
        Ok(true)
    }

    /// Whether a public catalog has been loaded.
    async fn has_catalog(&self) -> StoreResult<bool>;

    /// Replaces every public image with `images` and adds `nodes` to the node list, atomically.
    async fn replace_catalog(&self, nodes: &[NodeId], images: &[Image]) -> StoreResult<()>;

    /// Every known ENS node, sorted by ID.
    async fn nodes(&self) -> StoreResult<Vec<NodeId>>;

    /// Whether `node` is a known ENS node.
    async fn node_exists(&self, node: &NodeId) -> StoreResult<bool>;

    /// Creates an account (without keys).
    async fn create_account(&self, account: &AccountId, now: OffsetDateTime) -> StoreResult<()>;

    /// Adds an active AccessKey for an account's owner or one of its RAM users.
    ///
    /// # Errors
    /// `NotFound` for an unknown account or user, `Conflict` for a taken key ID.
    async fn create_access_key(
        &self,
        principal: &Principal,
        key: &AccessKeyId,
        secret: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()>;

    /// Enables or disables a key; takes effect on the next request.
    ///
    /// # Errors
    /// `NotFound` for an unknown key.
    async fn set_access_key_status(&self, key: &AccessKeyId, status: AccessKeyStatus) -> StoreResult<()>;

    /// Deletes a key.
    ///
    /// # Errors
    /// `NotFound` for an unknown key.
    async fn delete_access_key(&self, key: &AccessKeyId) -> StoreResult<()>;

    /// Replaces a key's stored secret (used to seal secrets stored before sealing existed).
    async fn replace_access_key_secret(&self, key: &AccessKeyId, secret: &str) -> StoreResult<()>;

    /// Every key with its stored secret, for resealing.
    async fn access_key_secrets(&self) -> StoreResult<Vec<(AccessKeyId, String)>>;

    /// Every account, oldest first.
    async fn accounts(&self) -> StoreResult<Vec<AccountSummary>>;

    /// Every AccessKey (of one account, when given), without secrets.
    async fn access_keys(&self, account: Option<&AccountId>) -> StoreResult<Vec<AccessKeySummary>>;

    /// Creates a RAM user in an account.
    ///
    /// # Errors
    /// `NotFound` for an unknown account, `Conflict` for a taken name.
    async fn create_ram_user(
        &self,
        account: &AccountId,
        name: &RamUserName,
        now: OffsetDateTime,
    ) -> StoreResult<RamUser>;

    /// Deletes a RAM user with its AccessKeys and policy attachments.
    ///
    /// # Errors
    /// `NotFound` for an unknown user.
    async fn delete_ram_user(&self, account: &AccountId, name: &RamUserName) -> StoreResult<()>;

    /// Every RAM user (of one account, when given).
    async fn ram_users(&self, account: Option<&AccountId>) -> StoreResult<Vec<RamUser>>;

    /// Stores a validated policy document under a name.
    ///
    /// # Errors
    /// `NotFound` for an unknown account, `Conflict` for a taken name.
    async fn create_policy(
        &self,
        account: &AccountId,
        name: &str,
        document: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()>;

    /// Deletes a policy.
    ///
    /// # Errors
    /// `NotFound` for an unknown policy, `Conflict` while it is attached.
    async fn delete_policy(&self, account: &AccountId, name: &str) -> StoreResult<()>;

    /// Every policy (of one account, when given), with its attachments.
    async fn policies(&self, account: Option<&AccountId>) -> StoreResult<Vec<StoredPolicy>>;

    /// Attaches a policy to a user; attaching twice is a no-op.
    ///
    /// # Errors
    /// `NotFound` for an unknown user or policy.
    async fn attach_policy(&self, account: &AccountId, user: &RamUserName, policy: &str) -> StoreResult<()>;

    /// Detaches a policy from a user.
    ///
    /// # Errors
    /// `NotFound` when it was not attached.
    async fn detach_policy(&self, account: &AccountId, user: &RamUserName, policy: &str) -> StoreResult<()>;

    /// The documents of every policy attached to a user, read fresh on each call.
    async fn user_policy_documents(
        &self,
        account: &AccountId,
        user: &RamUserName,
    ) -> StoreResult<Vec<String>>;

    /// Appends audit entries, all in one write: the server gathers the entries of
    /// concurrent requests into one call.
    async fn record_audits(&self, entries: &[AuditEntry]) -> StoreResult<()>;

    /// Audit records matching the filter, newest first.
    async fn audit_entries(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>>;

    /// Registers an instance.
    ///
    /// # Errors
    /// `NotFound` for an unknown owner or node, `Conflict` for a taken ID.
    async fn add_instance(&self, instance: &Instance) -> StoreResult<()>;

    /// Registers a snapshot.
    ///
    /// # Errors
    /// `NotFound` for an unknown owner or node, `Conflict` for a taken ID.
    async fn add_snapshot(&self, snapshot: &Snapshot) -> StoreResult<()>;

    /// A registered instance.
    async fn instance(&self, id: &str) -> StoreResult<Option<Instance>>;

    /// A registered snapshot.
    async fn snapshot(&self, id: &str) -> StoreResult<Option<Snapshot>>;

    /// Every registered instance and snapshot.
    async fn sources(&self) -> StoreResult<(Vec<Instance>, Vec<Snapshot>)>;

    /// Stores a new custom image under a fresh ID and returns it.
    async fn create_image(&self, new: NewImage) -> StoreResult<Image>;

    /// Moves every image whose build step ended by `now` to its next status; the next step
    /// ends `step` later. Each transition happens once, whoever calls this. Returns how many
    /// images moved.
    async fn advance_image_builds(&self, now: OffsetDateTime, step: std::time::Duration) -> StoreResult<u64>;

    /// An image `viewer` can see (public, own or shared-in), in any status.
    async fn visible_image(&self, viewer: &AccountId, id: &ImageId) -> StoreResult<Option<ImageView>>;

    /// Renames an image of `owner`.
    ///
    /// # Errors
    /// `StoreError::Image` when a rule of `ens_domain::rules` refuses it.
    async fn rename_image(&self, owner: &AccountId, id: &ImageId, name: &str) -> StoreResult<()>;

    /// Deletes an image of `owner`, atomically with the rule checks.
    ///
    /// # Errors
    /// `StoreError::Image` when a rule of `ens_domain::rules` refuses it.
    async fn delete_image(&self, owner: &AccountId, id: &ImageId) -> StoreResult<()>;

    /// Adds and removes share targets of an image of `owner`, atomically.
    ///
    /// # Errors
    /// `StoreError::Image` when a rule of `ens_domain::rules` refuses it.
    async fn modify_image_shares(
        &self,
        owner: &AccountId,
        id: &ImageId,
        add: &[AccountId],
        remove: &[AccountId],
        now: OffsetDateTime,
    ) -> StoreResult<()>;

    /// One page of the accounts an image of `owner` is shared with, oldest share first.
    ///
    /// # Errors
    /// `StoreError::Image` when the caller does not own the image.
    async fn image_shares(
        &self,
        owner: &AccountId,
        id: &ImageId,
        account: Option<&AccountId>,
        page: PageRequest,
    ) -> StoreResult<Page<ImageShare>>;

    /// One page of the caller's own and shared-in custom images, in any status.
    async fn describe_self_images(&self, query: &SelfImageQuery) -> StoreResult<Page<ImageView>>;

    /// Every public image, with an OS type filter (case-insensitive).
    async fn public_images(&self, os_type: Option<&str>) -> StoreResult<Vec<Image>>;

    /// One page of the images `query.viewer` may see, matching the query.
    ///
    /// Only `Available` images are listed. Order: public images first, then the viewer's own
    /// and shared-in images, each group in the order the images entered the store.
    async fn describe_images(&self, query: &ImageQuery) -> StoreResult<Page<ImageView>>;

    /// Fills the store with a large synthetic catalog (accounts, their instances, custom
    /// images, shares and listings; see [`generate`]) in one transaction, for benchmarks
    /// that need a realistic store of a million images in a minute rather than hours of
    /// CreateImage calls. It writes set-based SQL, so it lives beside the backends.
    ///
    /// # Errors
    /// `Invalid` for a shape that cannot be generated or a store without nodes, `Conflict`
    /// when the seed's accounts exist already.
    async fn generate_catalog(&self, spec: &GenerateSpec) -> StoreResult<GeneratedCatalog>;
}
