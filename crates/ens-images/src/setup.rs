//! First-start work on a store: the public catalog and the owner account.

use std::io::Write;
use std::path::Path;

use std::path::PathBuf;

use anyhow::{bail, Context};
use ens_domain::{AccessKeyId, AccountId};
use ens_server::secrets::MasterKey;
use ens_server::setup::NewOwner;
use ens_store::{AdminStore, Store};

/// Environment variables that choose the owner's AccessKey on first start.
const ROOT_KEY_ID_VAR: &str = "ENS_IMAGES_ROOT_ACCESS_KEY_ID";
const ROOT_KEY_SECRET_VAR: &str = "ENS_IMAGES_ROOT_ACCESS_KEY_SECRET";

/// File, in the data directory, that holds the embedded store.
pub const STORE_FILE: &str = "ens-images.db";

/// File, in the data directory, that receives a generated master key when the operator
/// supplies none.
pub const MASTER_KEY_FILE: &str = "master.key";

/// Where the master key that seals AccessKey secrets comes from.
#[derive(clap::Args, Clone)]
pub struct MasterKeyArgs {
    /// File holding the master key (64 hex digits or base64 of 32 bytes) that seals AccessKey
    /// secrets at rest. Default: ENS_IMAGES_MASTER_KEY, else DIR/master.key, generated on
    /// first start. Keep it out of the data directory's backups.
    #[arg(long, env = "ENS_IMAGES_MASTER_KEY_FILE", global = true)]
    pub master_key_file: Option<PathBuf>,
}

/// Loads the master key; a missing `DIR/master.key` is generated when `create` is set.
pub fn master_key(args: &MasterKeyArgs, data_dir: &Path, create: bool) -> anyhow::Result<MasterKey> {
    if let Some(path) = &args.master_key_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read master key file {}", path.display()))?;
        return MasterKey::parse(&text).with_context(|| format!("invalid master key in {}", path.display()));
    }
    if let Ok(text) = std::env::var("ENS_IMAGES_MASTER_KEY") {
        return MasterKey::parse(&text).context("invalid ENS_IMAGES_MASTER_KEY");
    }
    let path = data_dir.join(MASTER_KEY_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read master key file {}", path.display()))?;
        return MasterKey::parse(&text).with_context(|| format!("invalid master key in {}", path.display()));
    }
    if !create {
        bail!(
            "no master key: give --master-key-file or ENS_IMAGES_MASTER_KEY, or run `serve` once to create {}",
            path.display()
        );
    }
    let text = MasterKey::generate();
    write_private_file(&path, text.as_bytes())?;
    tracing::warn!(path = %path.display(), "generated a master key for AccessKey secrets; keep a copy outside the data directory");
    MasterKey::parse(&text).context("generated master key")
}

/// File, in the data directory, that receives a generated owner key.
pub const ROOT_CREDENTIALS_FILE: &str = "root-credentials.json";

/// Loads the operator's catalog (replacing the public images), or the built-in one into a
/// store that has none yet (`ens_server::setup`, shared with in-process test servers).
pub async fn load_catalog(store: &Store, operator_catalog: Option<&str>) -> anyhow::Result<()> {
    ens_server::setup::load_catalog(store, operator_catalog).await?;
    Ok(())
}

/// A random 16-digit account ID, as the cloud issues them.
pub fn random_account_id() -> anyhow::Result<AccountId> {
    Ok(ens_server::control::new_account_id()?)
}

/// Where a generated owner AccessKey goes: a private file in the data directory, or, for a
/// store that leaves nothing behind (`serve --ephemeral`), one line on stdout.
#[derive(Clone, Copy)]
pub enum OwnerCredentials<'a> {
    /// `DIR/root-credentials.json`, mode 0600.
    File(&'a Path),
    /// `ens-images owner credentials {JSON}` on stdout.
    Stdout,
}

/// Creates the owner account and its AccessKey in a store without accounts.
///
/// The key comes from the environment when both variables are set; otherwise a random pair
/// goes where `credentials` says (by default `root-credentials.json`, mode 0600, in the data
/// directory). The secret is never logged.
pub async fn ensure_owner_account(
    store: &Store,
    credentials: OwnerCredentials<'_>,
    master_key: &MasterKey,
) -> anyhow::Result<()> {
    let from_env = match (std::env::var(ROOT_KEY_ID_VAR), std::env::var(ROOT_KEY_SECRET_VAR)) {
        (Ok(id), Ok(secret)) if !id.is_empty() && !secret.is_empty() => Some((id, secret)),
        _ => None,
    };
    if store.has_accounts().await? {
        if from_env.is_some() {
            tracing::info!(
                "store already has its owner account; {ROOT_KEY_ID_VAR} is only read on first start"
            );
        }
        return Ok(());
    }
    if let Some((id, secret)) = from_env {
        let key = AccessKeyId::parse(&id)
            .with_context(|| format!("{ROOT_KEY_ID_VAR} is not a valid AccessKey ID"))?;
        let owner = NewOwner::with_key(key, secret)?;
        if owner.create_in(store, master_key).await? {
            let (account, key) = (owner.account_id(), owner.access_key_id());
            tracing::info!(%account, access_key_id = %key, "owner account created with the AccessKey from {ROOT_KEY_ID_VAR}");
            if matches!(credentials, OwnerCredentials::Stdout) {
                // The caller knows the secret; the account ID is news to it.
                let pair = serde_json::json!({"AccountId": account.as_str(), "AccessKeyId": key.as_str()});
                let _ = writeln!(std::io::stdout().lock(), "ens-images owner credentials {pair}");
            }
        }
        return Ok(());
    }
    let owner = NewOwner::generate()?;
    let (account, key) = (owner.account_id(), owner.access_key_id());
    let pair = serde_json::json!({
        "AccountId": account.as_str(),
        "AccessKeyId": key.as_str(),
        "AccessKeySecret": owner.expose_secret(),
    });
    let OwnerCredentials::File(data_dir) = credentials else {
        // A new private store has no other replica to race with.
        owner.create_in(store, master_key).await?;
        tracing::info!(%account, access_key_id = %key, "owner account created; its AccessKey is on stdout");
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ens-images owner credentials {pair}");
        return Ok(());
    };
    let path = data_dir.join(ROOT_CREDENTIALS_FILE);
    write_private_file(&path, &serde_json::to_vec_pretty(&pair)?)?;
    if !owner.create_in(store, master_key).await? {
        // Another replica created the owner first; this key was never stored.
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        return Ok(());
    }
    tracing::info!(%account, access_key_id = %key, path = %path.display(), "owner account created; its AccessKey secret is in the credentials file");
    eprintln!("ens-images: owner AccessKey written to {}", path.display());
    Ok(())
}

/// Writes `contents` to a new file readable by its owner only.
pub fn write_private_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

/// `serve --seed FILE`: replaces every account but the owner's with the state document in
/// `path`, all or nothing, before the service listens.
///
/// # Errors
/// When the file cannot be read, or the document is malformed or refused by the store.
pub async fn load_seed(store: &Store, master_key: &MasterKey, path: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read seed {}", path.display()))?;
    let owner = store
        .accounts()
        .await?
        .into_iter()
        .next()
        .context("the store has no owner account to keep")?;
    let images = ens_server::control::state::seed(store, master_key, &owner.id, &text)
        .await
        .with_context(|| format!("seed {} refused", path.display()))?;
    tracing::info!(images, seed = %path.display(), "state loaded from the seed");
    Ok(())
}

/// The private store as its first start left it, for the control API's fast reset.
///
/// # Errors
/// When the store fails or has no owner account.
pub async fn reset_point(store: &Store) -> anyhow::Result<Option<ens_store::ResetPoint>> {
    let owner = store
        .accounts()
        .await?
        .into_iter()
        .next()
        .context("the store has no owner account")?;
    Ok(store.reset_point(&owner.id).await?)
}
