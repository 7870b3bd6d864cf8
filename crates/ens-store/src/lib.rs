//! The one storage interface of ens-images, and its backends.
//!
//! The server and the admin command speak to storage only through [`Store`], whose methods
//! are domain operations (find an AccessKey, claim a nonce, list the images a caller sees),
//! never SQL. Each backend owns its migrations. This crate depends on the domain and on SQL
//! drivers, and knows nothing of HTTP or the wire format.

mod error;
mod sqlite;

use std::fmt;

use async_trait::async_trait;
use ens_domain::{
    AccessKeyId, AccessKeyStatus, AccountId, Image, ImageId, ImageQuery, ImageView, NodeId, Page,
};
use time::OffsetDateTime;

pub use error::{StoreError, StoreResult};
pub use sqlite::SqliteStore;

/// An AccessKey as verification needs it.
#[derive(Clone)]
pub struct StoredAccessKey {
    /// The key's public ID.
    pub id: AccessKeyId,
    /// The account it acts for.
    pub account: AccountId,
    /// The shared secret; signatures are HMACs, so the verifier needs the secret itself.
    pub secret: String,
    /// Whether it may sign.
    pub status: AccessKeyStatus,
}

impl fmt::Debug for StoredAccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredAccessKey")
            .field("id", &self.id)
            .field("account", &self.account)
            .field("secret", &"<redacted>")
            .field("status", &self.status)
            .finish()
    }
}

/// Everything the service persists, in domain terms.
///
/// Every write is one transaction: acknowledged means committed.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Looks up a key by ID, whatever its status.
    async fn access_key(&self, id: &AccessKeyId) -> StoreResult<Option<StoredAccessKey>>;

    /// Records that `nonce` was used with `key`, to be remembered until `expires_at`.
    /// Returns `false` if it was already recorded and has not expired (a replay).
    async fn claim_nonce(
        &self,
        key: &AccessKeyId,
        nonce: &str,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> StoreResult<bool>;

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

    /// Whether a public catalog has been loaded.
    async fn has_catalog(&self) -> StoreResult<bool>;

    /// Replaces every public image with `images` and adds `nodes` to the node list, atomically.
    async fn replace_catalog(&self, nodes: &[NodeId], images: &[Image]) -> StoreResult<()>;

    /// Every known ENS node, sorted by ID.
    async fn nodes(&self) -> StoreResult<Vec<NodeId>>;

    /// Whether `node` is a known ENS node.
    async fn node_exists(&self, node: &NodeId) -> StoreResult<bool>;

    /// Adds a custom image (owner set) or a public one (owner `None`).
    ///
    /// # Errors
    /// `StoreError::Conflict` when the ID is taken, `StoreError::NotFound` for an unknown node.
    async fn insert_image(&self, image: &Image) -> StoreResult<()>;

    /// Shares a custom image with another account; sharing twice is a no-op.
    ///
    /// # Errors
    /// `StoreError::NotFound` when the image or the account does not exist.
    async fn share_image(&self, image: &ImageId, with: &AccountId, now: OffsetDateTime) -> StoreResult<()>;

    /// One page of the images `query.viewer` may see, matching the query.
    ///
    /// Order: public images first, then the viewer's own and shared-in images, each group in
    /// the order the images entered the store.
    async fn describe_images(&self, query: &ImageQuery) -> StoreResult<Page<ImageView>>;
}
