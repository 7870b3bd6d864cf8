//! First-start work on a store: the public image catalog and the owner account.
//!
//! Written once here, below the binary, because two callers need it: `ens-images serve`
//! (which adds where the owner's key comes from and where a generated one is written) and
//! in-process test servers (`ens-testing`), which must start exactly as `serve --ephemeral`
//! does. Nothing here prints or reads the environment: that is the caller's business.

use ens_domain::{AccessKeyId, AccountId, InvalidField};
use ens_store::{AdminStore, RequestStore, Store, StoreError};
use zeroize::Zeroizing;

use crate::catalog;
use crate::secrets::MasterKey;

/// Why first-start work failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The catalog document was refused; the source names the entry and the field.
    #[error("invalid catalog ({origin})")]
    InvalidCatalog {
        /// Where the catalog came from: `--catalog`, or the built-in one.
        origin: &'static str,
        /// What is wrong with it.
        #[source]
        source: anyhow::Error,
    },
    /// A generated or given identifier does not have the cloud's shape.
    #[error(transparent)]
    InvalidField(#[from] InvalidField),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a catalog given to [`load_catalog`] came from, as errors and the log name it.
const OPERATOR_CATALOG: &str = "--catalog";
/// The name of the built-in catalog in errors and the log.
const BUILT_IN_CATALOG: &str = "built-in catalog";

/// Loads the operator's catalog (`operator_catalog`, a catalog document; it replaces the
/// public images), or the built-in one into a store that has none yet. Returns whether a
/// catalog was loaded by this call (not when the store had one, or another replica loaded it
/// first).
///
/// # Errors
/// [`SetupError::InvalidCatalog`] for a document the loader refuses; a store failure.
pub async fn load_catalog(store: &Store, operator_catalog: Option<&str>) -> Result<bool, SetupError> {
    let (text, origin) = match operator_catalog {
        Some(text) => (text, OPERATOR_CATALOG),
        None if store.has_catalog().await? => return Ok(false),
        None => (catalog::BUILT_IN, BUILT_IN_CATALOG),
    };
    let replace_existing = operator_catalog.is_some();
    let parse =
        |text, origin| catalog::parse(text).map_err(|source| SetupError::InvalidCatalog { origin, source });
    let catalog = parse(text, origin)?;
    let mut nodes = store.nodes().await?;
    let mut new_nodes = catalog.nodes.clone();
    if nodes.is_empty() && replace_existing {
        // A new store always knows the built-in ENS nodes, whichever catalog it starts with.
        new_nodes.extend(parse(catalog::BUILT_IN, BUILT_IN_CATALOG)?.nodes);
    }
    nodes.extend(new_nodes.iter().cloned());
    nodes.sort();
    nodes.dedup();
    let images = catalog.images_on(&nodes);
    if !store
        .install_catalog(&new_nodes, &images, replace_existing)
        .await?
    {
        // Another replica loaded the built-in catalog first.
        return Ok(false);
    }
    tracing::info!(
        images = images.len(),
        nodes = nodes.len(),
        origin,
        "public catalog loaded"
    );
    Ok(true)
}

/// The owner account a store gets at first start: a random account ID and its first
/// AccessKey. Built before it is stored so that the caller can put the secret somewhere safe
/// first (the binary writes its credentials file before the store has the key).
///
/// `Debug` never shows the secret; [`NewOwner::expose_secret`] is its one reader.
pub struct NewOwner {
    account_id: AccountId,
    access_key_id: AccessKeyId,
    secret: Zeroizing<String>,
}

impl std::fmt::Debug for NewOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewOwner")
            .field("account_id", &self.account_id)
            .field("access_key_id", &self.access_key_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl NewOwner {
    /// A random account ID with a generated AccessKey pair in the cloud's style.
    ///
    /// # Errors
    /// Never in practice: generated IDs always have the right shape.
    pub fn generate() -> Result<Self, SetupError> {
        let (access_key_id, secret) = crate::control::new_key_pair()?;
        Self::with_key(access_key_id, secret)
    }

    /// A random account ID with the operator's AccessKey (e.g. from the environment).
    ///
    /// # Errors
    /// Never in practice: generated account IDs always have the right shape.
    pub fn with_key(access_key_id: AccessKeyId, secret: String) -> Result<Self, SetupError> {
        Ok(Self {
            account_id: crate::control::new_account_id()?,
            access_key_id,
            secret: Zeroizing::new(secret),
        })
    }

    /// The account's ID.
    #[must_use]
    pub fn account_id(&self) -> &AccountId {
        &self.account_id
    }

    /// The owner AccessKey's ID.
    #[must_use]
    pub fn access_key_id(&self) -> &AccessKeyId {
        &self.access_key_id
    }

    /// The owner AccessKey's secret: the one reader, so every use is easy to find.
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }

    /// Creates the account and its key, the secret sealed with `master_key`, if the store
    /// has no account yet. Returns whether it did: `false` when the store already had an
    /// owner (e.g. another replica starting at the same time made it), in which case this
    /// key was never stored.
    ///
    /// # Errors
    /// A store failure.
    pub async fn create_in(
        &self,
        store: &dyn AdminStore,
        master_key: &MasterKey,
    ) -> Result<bool, SetupError> {
        let created = store
            .bootstrap_owner(
                &self.account_id,
                &self.access_key_id,
                &master_key.seal(&self.secret),
                time::OffsetDateTime::now_utc(),
            )
            .await?;
        Ok(created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_owner_never_shows_its_secret_in_debug() {
        let owner = NewOwner::generate().unwrap();
        let printed = format!("{owner:?}");
        assert!(!printed.contains(owner.expose_secret()), "{printed}");
        assert!(printed.contains(owner.access_key_id().as_str()), "{printed}");
        assert_eq!(owner.expose_secret().len(), 30);
    }

    #[tokio::test]
    async fn the_built_in_catalog_loads_once_and_the_owner_is_made_once() {
        let store = Store::temporary().await.unwrap();
        assert!(load_catalog(&store, None).await.unwrap());
        assert!(
            !load_catalog(&store, None).await.unwrap(),
            "a second start keeps the catalog"
        );
        assert!(store
            .nodes()
            .await
            .unwrap()
            .iter()
            .any(|node| node.as_str() == "cn-dalian-unicom"));

        let key = MasterKey::parse(&MasterKey::generate()).unwrap();
        let first = NewOwner::generate().unwrap();
        assert!(first.create_in(&store, &key).await.unwrap());
        let second = NewOwner::generate().unwrap();
        assert!(
            !second.create_in(&store, &key).await.unwrap(),
            "the store already has its owner"
        );
        let accounts = store.accounts().await.unwrap();
        assert_eq!(accounts.len(), 1);
        assert_eq!(&accounts[0].id, first.account_id());
    }

    #[tokio::test]
    async fn a_refused_catalog_names_its_origin_and_the_cause() {
        let store = Store::temporary().await.unwrap();
        let error = load_catalog(&store, Some(r#"{"Images": [{"ImageId": "img_1"}]}"#))
            .await
            .unwrap_err();
        let chain = format!("{:#}", anyhow::Error::from(error));
        assert!(chain.starts_with("invalid catalog (--catalog): "), "{chain}");
        assert!(chain.contains("Images[0] (img_1)"), "{chain}");
    }
}
