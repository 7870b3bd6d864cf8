//! Which store the binary works on: the embedded SQLite file in the data directory, or a
//! PostgreSQL database that several replicas share (`--database-url`).

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail};
use ens_store::{redact_database_url, redact_secrets, Store};

use crate::setup;

/// How long `serve` waits for an unreachable PostgreSQL (it may be starting beside the
/// server) before giving up.
const DATABASE_PATIENCE: Duration = Duration::from_secs(60);

/// Where the store is, when it is not the embedded one.
#[derive(clap::Args, Clone)]
pub struct DatabaseArgs {
    /// PostgreSQL database to use instead of the embedded SQLite store, e.g.
    /// postgres://user:password@host:5432/ens. Replicas given the same database serve one
    /// shared store. --data-dir still holds root-credentials.json and master.key.
    #[arg(long, env = "ENS_IMAGES_DATABASE_URL", hide_env_values = true, global = true)]
    database_url: Option<String>,
    /// Most connections this process opens to PostgreSQL.
    #[arg(
        long,
        env = "ENS_IMAGES_DATABASE_MAX_CONNECTIONS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..),
        global = true
    )]
    database_max_connections: u32,
}

impl DatabaseArgs {
    /// The PostgreSQL URL, if one was given (an empty one counts as none).
    fn url(&self) -> Option<&str> {
        self.database_url.as_deref().filter(|url| !url.is_empty())
    }
}

/// Opens the store `serve` works on, waiting up to a minute for a PostgreSQL database that
/// is not reachable yet (and logging each wait).
pub async fn open_for_serve(args: &DatabaseArgs, data_dir: &Path) -> anyhow::Result<Store> {
    let Some(url) = args.url() else {
        return open_sqlite(&data_dir.join(setup::STORE_FILE)).await;
    };
    let target = redact_database_url(url);
    tracing::info!(database = %target, "opening the PostgreSQL store");
    Store::connect_postgres_with_retry(
        url,
        args.database_max_connections,
        DATABASE_PATIENCE,
        |error, attempt| {
            tracing::warn!(
                database = %target,
                attempt,
                "waiting for database: {}",
                redact_secrets(&error.to_string(), url)
            );
        },
    )
    .await
    .map_err(|error| {
        anyhow!(
            "cannot open the store (PostgreSQL at {target}): {}",
            redact_secrets(&error.to_string(), url)
        )
    })
}

/// Opens the fresh private store of `serve --ephemeral` (see `Store::ephemeral`).
pub async fn open_ephemeral(args: &DatabaseArgs) -> anyhow::Result<Store> {
    if args.url().is_some() {
        bail!("--ephemeral serves a private store of its own: leave out --database-url");
    }
    Store::ephemeral()
        .await
        .map_err(|error| anyhow!("cannot create the ephemeral store: {error}"))
}

/// Opens the store an admin command works on. Fails at once (after a few seconds) when
/// PostgreSQL is unreachable: an operator at a prompt wants the reason, not a wait.
pub async fn open_for_admin(args: &DatabaseArgs, data_dir: &Path) -> anyhow::Result<Store> {
    let Some(url) = args.url() else {
        let path = data_dir.join(setup::STORE_FILE);
        if !path.exists() {
            bail!(
                "no store at {}: start `ens-images serve --data-dir {}` once first",
                path.display(),
                data_dir.display()
            );
        }
        return open_sqlite(&path).await;
    };
    Store::connect_postgres(url, args.database_max_connections)
        .await
        .map_err(|error| {
            anyhow!(
                "cannot open the store (PostgreSQL at {}): {}",
                redact_database_url(url),
                redact_secrets(&error.to_string(), url)
            )
        })
}

/// Opens the embedded store; a failure names the file, the cause and where to look.
async fn open_sqlite(path: &Path) -> anyhow::Result<Store> {
    Store::open_sqlite(path).await.map_err(|error| {
        anyhow!(
            "cannot open the store {}: {error}. Check that its directory exists and is writable by this user, \
             and that the file is an ens-images store (a damaged one is restored from a backup: README, \
             \"Backup and restore\")",
            path.display()
        )
    })
}
