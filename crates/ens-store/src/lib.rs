//! The one storage logic of ens-images, over narrow database engines.
//!
//! The server and the admin command speak to storage through [`RequestStore`] (what a
//! request and the server's background tasks need) and [`AdminStore`] (what operators
//! do), whose methods are domain operations (find an AccessKey, claim a nonce, list the
//! images a caller sees), never SQL. [`Store`] implements both once, above an
//! [`engine::Engine`] that only connects, speaks its SQL dialect and locks:
//! - SQLite, the embedded default ([`Store::open_sqlite`]): one file, one server process;
//! - PostgreSQL ([`Store::connect_postgres`]), for several server replicas sharing one
//!   database: each write locks the rows its rule checks read, so the rules hold across
//!   processes too.
//!
//! The benchmark generator ([`generate`]) writes through the same engines but is no part
//! of either interface. This crate depends on the domain and on SQL drivers, and knows
//! nothing of HTTP or the wire format. Each engine owns its migrations.

mod access;
mod admin;
pub mod engine;
mod error;
pub mod generate;
mod images;
mod postgres;
mod read_model;
mod redact;
mod request;
mod reset;
mod rows;
mod sqlite;
mod state;
mod transfers;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ens_domain::{AccessKeyId, AccessKeyStatus, AccountId, Image, PageRequest, Principal, RamUserName};
use rand::Rng;
use time::OffsetDateTime;

pub use access::nonce_digest;
pub use admin::AdminStore;
use engine::{Access, Dialect, Engine, Session};
pub use error::{Cause, StoreError, StoreResult};
pub use generate::{GenerateSpec, GeneratedAccount, GeneratedCatalog};
pub use postgres::PostgresEngine;
pub use read_model::as_one_request;
pub use redact::{redact_database_url, redact_secrets};
pub use request::RequestStore;
pub use reset::{ResetPoint, ResetSummary};
pub use rows::new_user_id;
pub use sqlite::SqliteEngine;
pub use state::{AccountState, ImportScope, StateImage, StateKey, StateSnapshot, StoreState};
pub use transfers::{ImageFile, TransferEnd, TransferJob, TransferKind, TransferRecord};

/// An AccessKey as verification needs it.
#[derive(Clone, PartialEq, Eq)]
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
    /// How many calls this row stands for: refusals before authentication are counted per
    /// source, outcome and period rather than stored one by one; every other row is one call.
    pub repeats: u32,
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

/// The store: every storage rule, written once over an engine. Clones share the engine.
#[derive(Clone)]
pub struct Store {
    engine: Arc<dyn Engine>,
    dialect: Dialect,
    read_model: Arc<read_model::ReadModel>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The engine's options may hold a password; never print them.
        f.debug_struct("Store")
            .field("dialect", &self.dialect)
            .finish_non_exhaustive()
    }
}

/// How many times a transaction that lost a serialization race or a deadlock is run again.
const CONFLICT_RETRIES: u32 = 5;

impl Store {
    /// The store over `engine`.
    #[must_use]
    pub fn new(engine: impl Engine) -> Self {
        let dialect = engine.dialect();
        let read_model = match engine.database_file() {
            Some(file) => read_model::ReadModel::for_sqlite(&file),
            None => read_model::ReadModel::for_postgres(),
        };
        Self {
            engine: Arc::new(engine),
            dialect,
            read_model: Arc::new(read_model),
        }
    }

    /// Closes every pooled connection and waits until they are closed (before dropping a
    /// test database, or at shutdown).
    pub async fn close(&self) {
        self.read_model.stop().await;
        self.engine.close().await;
    }

    /// Sends every read to the tables from now on, as when the PostgreSQL listener is down or
    /// the SQLite changes file cannot be read: how tests reach the statements that answer
    /// then, on every engine, and compare them with the read model's answers.
    pub fn read_tables_only(&self) {
        self.read_model.bypass();
    }

    /// A session for `access`; a write session tells the read model what it changed.
    async fn session(&self, access: Access) -> StoreResult<Box<dyn Session>> {
        let session = self.engine.begin(access).await?;
        Ok(if access == Access::Write {
            Box::new(read_model::Tracked::new(session, Arc::clone(&self.read_model)))
        } else {
            session
        })
    }

    /// Runs `work` in a write transaction and commits what it returns with the session; a
    /// transaction that lost a race is run again whole, a few times, after a short pause.
    async fn write<T, F, Fut>(&self, mut work: F) -> StoreResult<T>
    where
        F: FnMut(Box<dyn Session>) -> Fut,
        Fut: Future<Output = StoreResult<(Box<dyn Session>, T)>>,
    {
        let mut attempt = 0;
        loop {
            let result = match work(self.session(Access::Write).await?).await {
                Ok((session, value)) => session.commit().await.map(|()| value),
                Err(error) => Err(error),
            };
            match result {
                Err(error @ StoreError::Contended(_)) if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    let pause = Duration::from_millis((5 << attempt) + rand::thread_rng().gen_range(0..10));
                    tracing::debug!(%error, attempt, "transaction conflict; running it again");
                    tokio::time::sleep(pause).await;
                }
                result => return result,
            }
        }
    }
}
