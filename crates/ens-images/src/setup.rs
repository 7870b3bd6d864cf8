//! First-start work on a store: the public catalog and the owner account.

use std::io::Write;
use std::path::Path;

use std::path::PathBuf;

use anyhow::{bail, Context};
use ens_domain::{AccessKeyId, AccountId};
use ens_server::secrets::MasterKey;
use ens_server::setup::NewOwner;
use ens_store::{AdminStore, RequestStore, Store};

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
        if let OwnerCredentials::File(data_dir) = credentials {
            settle_pending_credentials(store, data_dir).await?;
        }
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
    // Written under a name of its own before the key is stored, so that a crash in between
    // loses nothing, and so that processes starting together on one data directory do not
    // write over each other's: only the one whose owner is stored moves its file into place.
    let pending = pending_credentials(data_dir, key);
    write_private_file(&pending, &serde_json::to_vec_pretty(&pair)?)?;
    if !owner.create_in(store, master_key).await? {
        // Another process created the owner first; this key was never stored.
        return remove_if_present(&pending);
    }
    move_into_place(&pending, &path)?;
    tracing::info!(%account, access_key_id = %key, path = %path.display(), "owner account created; its AccessKey secret is in the credentials file");
    eprintln!("ens-images: owner AccessKey written to {}", path.display());
    Ok(())
}

/// Where a first start writes the owner's credentials before it stores the key.
fn pending_credentials(data_dir: &Path, key: &AccessKeyId) -> PathBuf {
    data_dir.join(format!("{ROOT_CREDENTIALS_FILE}.{key}.pending"))
}

/// Puts in place the credentials a first start wrote but had not moved into place when it
/// stopped (its key is stored), and removes those of starts that lost the race.
async fn settle_pending_credentials(store: &Store, data_dir: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return Ok(());
    };
    let prefix = format!("{ROOT_CREDENTIALS_FILE}.");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(key) = name
            .to_str()
            .and_then(|name| name.strip_prefix(&prefix))
            .and_then(|rest| rest.strip_suffix(".pending"))
            .and_then(|key| AccessKeyId::parse(key).ok())
        else {
            continue;
        };
        let pending = entry.path();
        let path = data_dir.join(ROOT_CREDENTIALS_FILE);
        if RequestStore::access_key(store, &key).await?.is_some() && !path.exists() {
            move_into_place(&pending, &path)?;
            eprintln!("ens-images: owner AccessKey written to {}", path.display());
        } else {
            remove_if_present(&pending)?;
        }
    }
    Ok(())
}

/// Renames `pending` to `path`; a process starting beside this one may have done it already
/// (see [`settle_pending_credentials`]).
fn move_into_place(pending: &Path, path: &Path) -> anyhow::Result<()> {
    match std::fs::rename(pending, path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && path.exists() => Ok(()),
        other => other.with_context(|| format!("cannot write {}", path.display())),
    }
}

/// Removes `file` unless a process starting beside this one removed it first.
fn remove_if_present(file: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(file) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other.with_context(|| format!("cannot remove {}", file.display())),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The names in `dir`, sorted.
    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// First starts on one data directory racing on several threads (all finding no
    /// account, each writing a key, one storing it), in fresh directories again and again:
    /// the credentials file holds the stored key, and nothing else with a secret is left. A
    /// start after a crash between storing the key and moving its file puts the file in place.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_first_starts_leave_the_stored_owners_credentials() {
        let master_key = std::sync::Arc::new(MasterKey::parse(&MasterKey::generate()).unwrap());
        let mut last = None;
        for round in 0..20 {
            let data = std::sync::Arc::new(tempfile::tempdir().unwrap());
            let store = Store::temporary().await.unwrap();
            let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(6));
            let starts: Vec<_> = (0..6)
                .map(|_| {
                    let (store, data, master_key, barrier) =
                        (store.clone(), data.clone(), master_key.clone(), barrier.clone());
                    tokio::spawn(async move {
                        barrier.wait().await;
                        ensure_owner_account(&store, OwnerCredentials::File(data.path()), &master_key).await
                    })
                })
                .collect();
            for start in starts {
                start.await.unwrap().unwrap();
            }
            let path = data.path().join(ROOT_CREDENTIALS_FILE);
            let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let key = AccessKeyId::parse(written["AccessKeyId"].as_str().unwrap()).unwrap();
            let stored = RequestStore::access_key(&store, &key).await.unwrap().unwrap();
            let secret = master_key.open(&stored.secret).unwrap();
            assert_eq!(
                secret.expose(),
                written["AccessKeySecret"].as_str().unwrap(),
                "round {round}"
            );
            assert_eq!(files(data.path()), [ROOT_CREDENTIALS_FILE], "round {round}");
            last = Some((data, store, key, written));
        }
        let (data, store, key, written) = last.unwrap();
        let start = || ensure_owner_account(&store, OwnerCredentials::File(data.path()), &master_key);
        let path = data.path().join(ROOT_CREDENTIALS_FILE);

        // Stored, but stopped before the move: the next start moves it into place.
        let pending = pending_credentials(data.path(), &key);
        std::fs::rename(&path, &pending).unwrap();
        let lost = pending_credentials(data.path(), &AccessKeyId::parse("LTAInever").unwrap());
        write_private_file(&lost, b"{}").unwrap();
        start().await.unwrap();
        assert_eq!(files(data.path()), [ROOT_CREDENTIALS_FILE]);
        let again: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(again, written);
    }
}
