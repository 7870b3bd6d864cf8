//! The embedded default backend: one SQLite database file in WAL mode.
//!
//! Durability: WAL with `synchronous = NORMAL` keeps every committed transaction through a
//! crash or kill of the process; a power loss may roll back the last transactions. Writes
//! take the write lock up front (`BEGIN IMMEDIATE`), so the rule checks inside a write
//! transaction see the state the write commits on. One process serves a store file at a
//! time (the admin command may work beside it); several servers must share PostgreSQL.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ens_domain::rules::{ensure_deletable, ensure_owner, ensure_shareable};
use ens_domain::{
    AccessKeyId, AccessKeyStatus, AccountId, BuildFailure, Image, ImageError, ImageId, ImageQuery,
    ImageStatus, ImageView, Instance, NodeId, Page, PageRequest, Principal, RamUserName, Snapshot,
};
use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};
use time::OffsetDateTime;

mod reads;

use reads::Reader;

use crate::common::{
    account_from, audit_time, corrupt, failure_from, format_time, image_from_row, instance_from_row, millis,
    new_custom_image_id, node_from, parse_time, principal_from, snapshot_from_row, to_i64, to_u64, ALL_NODES,
    IMAGE_COLUMNS, SYSTEM_SCOPE,
};
use crate::{
    AccessKeySummary, AccountSummary, AuditEntry, AuditFilter, ImageShare, NewImage, NonceClaim, RamUser,
    SelfImageQuery, Store, StoreError, StoreResult, StoredAccessKey, StoredPolicy,
};

/// The nonce file's schema. It lives outside the migrations: the file holds nothing else,
/// and losing it only forgets which nonces were used (see [`nonce_file`]). A nonce is kept as
/// the 64-bit [`nonce_digest`] of its key and value: random keys of 16 bytes instead of ~60
/// keep the tree small, and expiries grow with time, so their index is appended to.
const NONCE_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS used_nonces (
    digest      INTEGER PRIMARY KEY,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS used_nonces_by_expiry ON used_nonces (expires_at);";

/// A nonce's row key: the first 8 bytes of SHA-256 over the key ID and the nonce. Two
/// different nonces share a digest with odds of about n / 2^64 (n nonces remembered), and
/// then the later one is refused as a replay and the client retries with a fresh nonce.
fn nonce_digest(key: &str, nonce: &str) -> i64 {
    let mut hasher = Sha256::new();
    hasher.update(key.as_bytes());
    hasher.update([0]);
    hasher.update(nonce.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0_u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    i64::from_be_bytes(first)
}

/// Where the store at `path` keeps used SignatureNonces: `NAME.nonces.db` beside it. Every
/// signed request records one, and in the main file each of those commits would make every
/// reader drop its page cache; in a file of their own they leave the catalog's readers, and
/// the writers of images, alone.
fn nonce_file(path: &Path) -> PathBuf {
    let mut name = path.file_stem().map(OsString::from).unwrap_or_default();
    name.push(".nonces.db");
    path.with_file_name(name)
}

/// Opens a WAL-mode pool on `path`, creating the file readable by its owner only.
async fn connect(
    path: &Path,
    connections: u32,
    tune: impl FnOnce(SqliteConnectOptions) -> SqliteConnectOptions,
) -> StoreResult<SqlitePool> {
    create_private(path)?;
    let options = tune(
        SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10)),
    );
    Ok(SqlitePoolOptions::new()
        .max_connections(connections)
        .connect_with(options)
        .await?)
}

/// Moves the nonces a store made before they had their own file (migration 0006 then drops
/// the old table), so an upgrade does not reopen their replay window.
async fn adopt_old_nonces(pool: &SqlitePool, nonces: &SqlitePool) -> StoreResult<()> {
    let old_table: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'signature_nonces'")
            .fetch_optional(pool)
            .await?;
    if old_table.is_none() {
        return Ok(());
    }
    let old: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT access_key_id, nonce, expires_at FROM signature_nonces")
            .fetch_all(pool)
            .await?;
    let mut transaction = nonces.begin().await?;
    for chunk in old.chunks(NONCE_CLAIMS_PER_STATEMENT) {
        let mut insert = sqlx::QueryBuilder::new("INSERT OR IGNORE INTO used_nonces (digest, expires_at) ");
        insert.push_values(chunk, |mut row, (key, nonce, expires_at)| {
            row.push_bind(nonce_digest(key, nonce)).push_bind(*expires_at);
        });
        insert.build().execute(&mut *transaction).await?;
    }
    transaction.commit().await?;
    Ok(())
}

/// Audit entries per INSERT: nine bound values each.
const AUDIT_ENTRIES_PER_STATEMENT: usize = 100;
/// Nonce claims per INSERT: two bound values each, far below SQLite's variable limit.
const NONCE_CLAIMS_PER_STATEMENT: usize = 256;

/// A [`Store`] on one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    /// Writes, and the admin work that is not on a request's path.
    pool: SqlitePool,
    /// The used SignatureNonces, in a file of their own (see [`nonce_file`]).
    nonces: SqlitePool,
    /// Reads on a request's path, run inline.
    reader: Arc<Reader>,
    /// Holds a [`SqliteStore::temporary`] database's directory until the last clone drops.
    _scratch: Option<Arc<tempfile::TempDir>>,
}

impl SqliteStore {
    /// Opens (creating if needed) `path` and applies pending migrations.
    ///
    /// # Errors
    /// When the file cannot be opened or a migration fails.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        Self::open_with(path, None).await
    }

    /// A private database in a temporary directory, removed with the store: for tests.
    ///
    /// # Errors
    /// When the directory or the database cannot be created.
    pub async fn temporary() -> StoreResult<Self> {
        let scratch = tempfile::Builder::new()
            .prefix("ens-store-")
            .tempdir()
            .map_err(|error| StoreError::Unavailable(sqlx::Error::Io(error)))?;
        let path = scratch.path().join("store.db");
        Self::open_with(&path, Some(Arc::new(scratch))).await
    }

    async fn open_with(path: &Path, scratch: Option<Arc<tempfile::TempDir>>) -> StoreResult<Self> {
        let pool = connect(path, 8, |options| {
            // Each image write touches a dozen indexes of a catalog that may hold millions of
            // rows: a larger cache keeps their upper levels in memory, and a larger WAL makes
            // the checkpoints that copy it back (and stall the writer) rarer.
            options
                .pragma("cache_size", "-16384")
                .pragma("wal_autocheckpoint", "8192")
        })
        .await?;
        let nonces = connect(&nonce_file(path), 1, |options| {
            // Every signed request adds a random key to this B-tree, so each batch dirties
            // about one page per nonce: small pages make each of those writes small, the
            // tree stays in memory, and the WAL grows before it is copied back. Commits survive a crash of the process; a power loss may forget
            // the last nonces, which only reopens their replay window, so no fsync is paid.
            options
                .page_size(1024)
                .synchronous(SqliteSynchronous::Off)
                .pragma("cache_size", "-65536")
                .pragma("wal_autocheckpoint", "16384")
        })
        .await?;
        sqlx::raw_sql(NONCE_SCHEMA).execute(&nonces).await?;
        adopt_old_nonces(&pool, &nonces).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self {
            pool,
            nonces,
            reader: Arc::new(Reader::new(path)),
            _scratch: scratch,
        })
    }

    /// A write transaction holding the write lock from its first statement.
    async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// Adds `image_seq` to the listings of `scope` (all nodes and each of `nodes`) and bumps
/// their counts, keeping every listing numbered densely in image order (migration 0005).
/// New images come last, so adding one costs a seek; an older image shared later moves the
/// rows after it down by one.
async fn add_to_listings(
    conn: &mut SqliteConnection,
    scope: &str,
    image_seq: i64,
    nodes: &[String],
) -> StoreResult<()> {
    for node in std::iter::once(ALL_NODES).chain(nodes.iter().map(String::as_str)) {
        // One look at the listing: is the image in it already, where does the first later
        // image sit (an older image shared late goes before it), and where does it end.
        let (listed, later, end): (bool, Option<i64>, i64) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM image_listing WHERE scope = ?1 AND node_id = ?2 AND image_seq = ?3), \
             (SELECT position FROM image_listing WHERE scope = ?1 AND node_id = ?2 AND image_seq > ?3 \
              ORDER BY image_seq LIMIT 1), \
             (SELECT COALESCE(MAX(position) + 1, 0) FROM image_listing WHERE scope = ?1 AND node_id = ?2)",
        )
        .bind(scope)
        .bind(node)
        .bind(image_seq)
        .fetch_one(&mut *conn)
        .await?;
        if listed {
            continue;
        }
        if later.is_some() {
            sqlx::query(
                "UPDATE image_listing SET position = position + 1 WHERE scope = ? AND node_id = ? AND image_seq > ?",
            )
            .bind(scope)
            .bind(node)
            .bind(image_seq)
            .execute(&mut *conn)
            .await?;
        }
        let position = later.unwrap_or(end);
        sqlx::query("INSERT INTO image_listing (scope, node_id, image_seq, position) VALUES (?, ?, ?, ?)")
            .bind(scope)
            .bind(node)
            .bind(image_seq)
            .bind(position)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "INSERT INTO listing_counts (scope, node_id, count) VALUES (?, ?, 1) \
             ON CONFLICT (scope, node_id) DO UPDATE SET count = count + 1",
        )
        .bind(scope)
        .bind(node)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Removes `image_seq` from every listing of `scope`, lowers their counts and closes the gap
/// it leaves in their numbering.
async fn remove_from_listings(conn: &mut SqliteConnection, scope: &str, image_seq: i64) -> StoreResult<()> {
    let removed: Vec<(String, i64)> = sqlx::query_as(
        "DELETE FROM image_listing WHERE scope = ? AND image_seq = ? RETURNING node_id, position",
    )
    .bind(scope)
    .bind(image_seq)
    .fetch_all(&mut *conn)
    .await?;
    for (node, position) in removed {
        sqlx::query("UPDATE image_listing SET position = position - 1 WHERE scope = ? AND node_id = ? AND position > ?")
            .bind(scope)
            .bind(&node)
            .bind(position)
            .execute(&mut *conn)
            .await?;
        sqlx::query("UPDATE listing_counts SET count = count - 1 WHERE scope = ? AND node_id = ?")
            .bind(scope)
            .bind(node)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn image_nodes(conn: &mut SqliteConnection, seq: i64) -> StoreResult<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT node_id FROM image_nodes WHERE image_seq = ? ORDER BY position")
            .bind(seq)
            .fetch_all(&mut *conn)
            .await?,
    )
}

/// Writes one image with its nodes and disks, and lists it if it is `Available`.
async fn insert_image_in(conn: &mut SqliteConnection, new: &NewImage) -> StoreResult<i64> {
    let image = &new.image;
    if image.nodes.is_empty() {
        return Err(StoreError::Invalid(format!(
            "image {} is available on no node",
            image.id
        )));
    }
    let inserted = sqlx::query(
        "INSERT INTO images (id, name, owner_id, architecture, platform, os_type, size_gib, creation_time, \
         snapshot_id, status, instance_id, compute_type, os_version, description, build_due_at, build_failure, \
         release_instance) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
    )
    .bind(image.id.as_str())
    .bind(&image.name)
    .bind(image.owner.as_ref().map(AccountId::as_str))
    .bind(&image.architecture)
    .bind(&image.platform)
    .bind(&image.os_type)
    .bind(to_i64(image.size_gib, "image size")?)
    .bind(format_time(image.creation_time)?)
    .bind(image.snapshot_id.as_deref())
    .bind(image.status.as_str())
    .bind(image.instance_id.as_deref())
    .bind(&image.compute_type)
    .bind(&image.os_version)
    .bind(&image.description)
    .bind(new.build_due_at.map(millis).transpose()?)
    .bind(new.build_failure.map(BuildFailure::as_str))
    .bind(new.release_instance.as_deref())
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("image {}", image.id)));
    }
    let seq = inserted.last_insert_rowid();
    let mut nodes = Vec::with_capacity(image.nodes.len());
    for (position, node) in image.nodes.iter().enumerate() {
        let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM nodes WHERE id = ?")
            .bind(node.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        if known.is_none() {
            return Err(StoreError::NotFound(format!("node {node}")));
        }
        sqlx::query("INSERT INTO image_nodes (image_seq, position, node_id) VALUES (?, ?, ?)")
            .bind(seq)
            .bind(to_i64(position as u64, "node position")?)
            .bind(node.as_str())
            .execute(&mut *conn)
            .await?;
        nodes.push(node.as_str().to_owned());
    }
    for (position, disk) in image.disk_device_mappings.iter().enumerate() {
        sqlx::query(
            "INSERT INTO image_disks (image_seq, position, disk_type, size_gib, format, file_id) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(seq)
        .bind(to_i64(position as u64, "disk position")?)
        .bind(&disk.disk_type)
        .bind(to_i64(disk.size_gib, "disk size")?)
        .bind(&disk.format)
        .bind(&disk.image_id)
        .execute(&mut *conn)
        .await?;
    }
    if image.status == ImageStatus::Available {
        let scope = image.owner.as_ref().map_or(SYSTEM_SCOPE, AccountId::as_str);
        add_to_listings(conn, scope, seq, &nodes).await?;
    }
    Ok(seq)
}

/// The image row with this ID (no nodes or disks), whoever owns it.
async fn image_by_id(conn: &mut SqliteConnection, id: &ImageId) -> StoreResult<Option<(i64, Image)>> {
    let sql = format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?");
    let row = sqlx::query(&sql)
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(image_from_row).transpose()
}

async fn is_shared_with(conn: &mut SqliteConnection, seq: i64, account: &AccountId) -> StoreResult<bool> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM image_shares WHERE image_seq = ? AND account_id = ?")
            .bind(seq)
            .bind(account.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    Ok(found.is_some())
}

/// The image of `owner` with this ID, after the ownership rule.
async fn owned_image(
    conn: &mut SqliteConnection,
    owner: &AccountId,
    id: &ImageId,
) -> StoreResult<(i64, Image)> {
    let Some((seq, image)) = image_by_id(conn, id).await? else {
        return Err(ImageError::NotFound.into());
    };
    let shared = is_shared_with(conn, seq, owner).await?;
    ensure_owner(&image, owner, shared)?;
    Ok((seq, image))
}

/// Creates the database file readable by its owner only, before SQLite does; SQLite gives its
/// `-wal` and `-shm` files the same permissions. The store holds sealed secrets and the audit
/// log: nobody else on the machine needs to read it.
fn create_private(path: &Path) -> StoreResult<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(StoreError::Unavailable(sqlx::Error::Io(error))),
    }
}

/// Fails with `NotFound` naming `what` unless the row exists.
async fn require_row(conn: &mut SqliteConnection, sql: &str, key: &str, what: &str) -> StoreResult<()> {
    let found: Option<i64> = sqlx::query_scalar(sql)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
    if found.is_none() {
        return Err(StoreError::NotFound(format!("{what} {key}")));
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn pool_stats(&self) -> Option<crate::PoolStats> {
        Some(crate::PoolStats {
            size: self.pool.size(),
            idle: self.pool.num_idle(),
        })
    }

    async fn access_key(&self, id: &AccessKeyId) -> StoreResult<Option<StoredAccessKey>> {
        self.reader.access_key(id)
    }

    async fn claim_nonces(&self, claims: &[NonceClaim], now: OffsetDateTime) -> StoreResult<Vec<bool>> {
        let mut won = Vec::with_capacity(claims.len());
        for chunk in claims.chunks(NONCE_CLAIMS_PER_STATEMENT) {
            let digests: Vec<i64> = chunk
                .iter()
                .map(|claim| nonce_digest(claim.key.as_str(), &claim.nonce))
                .collect();
            // One statement per chunk: an expired row for the same nonce is taken over, a
            // live one means replay, and RETURNING names the claims that won.
            let mut insert = sqlx::QueryBuilder::new("INSERT INTO used_nonces (digest, expires_at) ");
            insert.push_values(chunk.iter().zip(&digests), |mut row, (claim, digest)| {
                row.push_bind(*digest)
                    .push_bind(claim.expires_at.unix_timestamp());
            });
            insert
                .push(
                    " ON CONFLICT (digest) DO UPDATE SET expires_at = excluded.expires_at \
                     WHERE used_nonces.expires_at <= ",
                )
                .push_bind(now.unix_timestamp())
                .push(" RETURNING digest");
            let claimed: HashSet<i64> = insert
                .build_query_scalar::<i64>()
                .fetch_all(&self.nonces)
                .await?
                .into_iter()
                .collect();
            won.extend(digests.iter().map(|digest| claimed.contains(digest)));
        }
        Ok(won)
    }

    async fn prune_nonces(&self, now: OffsetDateTime) -> StoreResult<u64> {
        Ok(sqlx::query("DELETE FROM used_nonces WHERE expires_at <= ?")
            .bind(now.unix_timestamp())
            .execute(&self.nonces)
            .await?
            .rows_affected())
    }

    async fn has_accounts(&self) -> StoreResult<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM accounts LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    async fn create_account_with_key(
        &self,
        account: &AccountId,
        key: &AccessKeyId,
        secret: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        insert_account(&mut tx, account, now).await?;
        let owner = Principal {
            account: account.clone(),
            user: None,
        };
        insert_key(&mut tx, &owner, key, secret, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn bootstrap_owner(
        &self,
        account: &AccountId,
        key: &AccessKeyId,
        secret: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let existing: Option<i64> = sqlx::query_scalar("SELECT 1 FROM accounts LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        if existing.is_some() {
            return Ok(false);
        }
        insert_account(&mut tx, account, now).await?;
        let owner = Principal {
            account: account.clone(),
            user: None,
        };
        insert_key(&mut tx, &owner, key, secret, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_account(&self, account: &AccountId, now: OffsetDateTime) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        insert_account(&mut tx, account, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_access_key(
        &self,
        principal: &Principal,
        key: &AccessKeyId,
        secret: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        require_row(
            &mut tx,
            "SELECT 1 FROM accounts WHERE id = ?",
            principal.account.as_str(),
            "account",
        )
        .await?;
        if let Some(user) = &principal.user {
            require_user(&mut tx, &principal.account, user).await?;
        }
        insert_key(&mut tx, principal, key, secret, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_access_key_status(&self, key: &AccessKeyId, status: AccessKeyStatus) -> StoreResult<()> {
        let changed = sqlx::query("UPDATE access_keys SET status = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(key.as_str())
            .execute(&self.pool)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound(format!("AccessKey {key}")));
        }
        Ok(())
    }

    async fn delete_access_key(&self, key: &AccessKeyId) -> StoreResult<()> {
        let deleted = sqlx::query("DELETE FROM access_keys WHERE id = ?")
            .bind(key.as_str())
            .execute(&self.pool)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound(format!("AccessKey {key}")));
        }
        Ok(())
    }

    async fn replace_access_key_secret(&self, key: &AccessKeyId, secret: &str) -> StoreResult<()> {
        sqlx::query("UPDATE access_keys SET secret = ? WHERE id = ?")
            .bind(secret)
            .bind(key.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn access_key_secrets(&self) -> StoreResult<Vec<(AccessKeyId, String)>> {
        let rows = sqlx::query("SELECT id, secret FROM access_keys ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                Ok((AccessKeyId::parse(&id).map_err(corrupt)?, row.try_get("secret")?))
            })
            .collect()
    }

    async fn create_ram_user(
        &self,
        account: &AccountId,
        name: &RamUserName,
        now: OffsetDateTime,
    ) -> StoreResult<RamUser> {
        let mut tx = self.begin_write().await?;
        require_row(
            &mut tx,
            "SELECT 1 FROM accounts WHERE id = ?",
            account.as_str(),
            "account",
        )
        .await?;
        let user_id: String = {
            let mut rng = rand::thread_rng();
            std::iter::once(char::from(b'2' + rng.gen_range(0..8u8)))
                .chain((0..15).map(|_| char::from(b'0' + rng.gen_range(0..10u8))))
                .collect()
        };
        let inserted = sqlx::query(
            "INSERT INTO ram_users (account_id, name, user_id, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(account.as_str())
        .bind(name.as_str())
        .bind(&user_id)
        .bind(format_time(now)?)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("RAM user {name}")));
        }
        tx.commit().await?;
        Ok(RamUser {
            account: account.clone(),
            name: name.clone(),
            user_id,
            created_at: now,
        })
    }

    async fn delete_ram_user(&self, account: &AccountId, name: &RamUserName) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        require_user(&mut tx, account, name).await?;
        sqlx::query("DELETE FROM access_keys WHERE account_id = ? AND user_name = ?")
            .bind(account.as_str())
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM ram_users WHERE account_id = ? AND name = ?")
            .bind(account.as_str())
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ram_users(&self, account: Option<&AccountId>) -> StoreResult<Vec<RamUser>> {
        let filter = account.map(AccountId::as_str);
        let rows = sqlx::query(
            "SELECT account_id, name, user_id, created_at FROM ram_users WHERE ? IS NULL OR account_id = ? \
             ORDER BY account_id, name",
        )
        .bind(filter)
        .bind(filter)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let account: String = row.try_get("account_id")?;
                let name: String = row.try_get("name")?;
                let created: String = row.try_get("created_at")?;
                Ok(RamUser {
                    account: account_from(&account)?,
                    name: RamUserName::parse("name", &name).map_err(corrupt)?,
                    user_id: row.try_get("user_id")?,
                    created_at: parse_time(&created)?,
                })
            })
            .collect()
    }

    async fn create_policy(
        &self,
        account: &AccountId,
        name: &str,
        document: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        require_row(
            &mut tx,
            "SELECT 1 FROM accounts WHERE id = ?",
            account.as_str(),
            "account",
        )
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO policies (account_id, name, document, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(account.as_str())
        .bind(name)
        .bind(document)
        .bind(format_time(now)?)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("policy {name}")));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_policy(&self, account: &AccountId, name: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let attached: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM policy_attachments WHERE account_id = ? AND policy_name = ?",
        )
        .bind(account.as_str())
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        if attached > 0 {
            return Err(StoreError::Conflict(format!(
                "policy {name} is attached to {attached} user(s); detach it first"
            )));
        }
        let deleted = sqlx::query("DELETE FROM policies WHERE account_id = ? AND name = ?")
            .bind(account.as_str())
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound(format!("policy {name}")));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn policies(&self, account: Option<&AccountId>) -> StoreResult<Vec<StoredPolicy>> {
        let filter = account.map(AccountId::as_str);
        let rows = sqlx::query(
            "SELECT account_id, name, document, created_at FROM policies WHERE ? IS NULL OR account_id = ? \
             ORDER BY account_id, name",
        )
        .bind(filter)
        .bind(filter)
        .fetch_all(&self.pool)
        .await?;
        let attachments = sqlx::query(
            "SELECT account_id, user_name, policy_name FROM policy_attachments ORDER BY user_name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let account: String = row.try_get("account_id")?;
                let name: String = row.try_get("name")?;
                let created: String = row.try_get("created_at")?;
                let mut attached_to = Vec::new();
                for attachment in &attachments {
                    let on: String = attachment.try_get("account_id")?;
                    let policy: String = attachment.try_get("policy_name")?;
                    if on == account && policy == name {
                        let user: String = attachment.try_get("user_name")?;
                        attached_to.push(RamUserName::parse("user_name", &user).map_err(corrupt)?);
                    }
                }
                Ok(StoredPolicy {
                    account: account_from(&account)?,
                    name,
                    document: row.try_get("document")?,
                    attached_to,
                    created_at: parse_time(&created)?,
                })
            })
            .collect()
    }

    async fn attach_policy(&self, account: &AccountId, user: &RamUserName, policy: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        require_user(&mut tx, account, user).await?;
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM policies WHERE account_id = ? AND name = ?")
                .bind(account.as_str())
                .bind(policy)
                .fetch_optional(&mut *tx)
                .await?;
        if found.is_none() {
            return Err(StoreError::NotFound(format!("policy {policy}")));
        }
        sqlx::query(
            "INSERT INTO policy_attachments (account_id, user_name, policy_name) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(account.as_str())
        .bind(user.as_str())
        .bind(policy)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn detach_policy(&self, account: &AccountId, user: &RamUserName, policy: &str) -> StoreResult<()> {
        let deleted = sqlx::query(
            "DELETE FROM policy_attachments WHERE account_id = ? AND user_name = ? AND policy_name = ?",
        )
        .bind(account.as_str())
        .bind(user.as_str())
        .bind(policy)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound(format!(
                "attachment of policy {policy} to {user}"
            )));
        }
        Ok(())
    }

    async fn user_policy_documents(
        &self,
        account: &AccountId,
        user: &RamUserName,
    ) -> StoreResult<Vec<String>> {
        self.reader.user_policy_documents(account, user)
    }

    async fn record_audits(&self, entries: &[AuditEntry]) -> StoreResult<()> {
        for chunk in entries.chunks(AUDIT_ENTRIES_PER_STATEMENT) {
            let mut rows = Vec::with_capacity(chunk.len());
            for entry in chunk {
                rows.push((audit_time(entry.at)?, entry));
            }
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO audit_log (at, request_id, account_id, user_name, access_key_id, action, resource, \
                 source_ip, outcome) ",
            );
            insert.push_values(&rows, |mut row, (at, entry)| {
                row.push_bind(at)
                    .push_bind(&entry.request_id)
                    .push_bind(entry.account.as_ref().map(AccountId::as_str))
                    .push_bind(entry.user.as_ref().map(RamUserName::as_str))
                    .push_bind(entry.access_key_id.as_deref())
                    .push_bind(&entry.action)
                    .push_bind(&entry.resource)
                    .push_bind(&entry.source_ip)
                    .push_bind(&entry.outcome);
            });
            insert.build().execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn audit_entries(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>> {
        let account = filter.account.as_ref().map(AccountId::as_str);
        let since = filter.since.map(audit_time).transpose()?;
        let rows = sqlx::query(
            "SELECT at, request_id, account_id, user_name, access_key_id, action, resource, source_ip, outcome \
             FROM audit_log WHERE (? IS NULL OR account_id = ?) AND (? IS NULL OR action = ?) \
             AND (? IS NULL OR outcome = ?) AND (? IS NULL OR at >= ?) ORDER BY seq DESC LIMIT ?",
        )
        .bind(account)
        .bind(account)
        .bind(filter.action.as_deref())
        .bind(filter.action.as_deref())
        .bind(filter.outcome.as_deref())
        .bind(filter.outcome.as_deref())
        .bind(since.as_deref())
        .bind(since.as_deref())
        .bind(i64::from(filter.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let at: String = row.try_get("at")?;
                let account: Option<String> = row.try_get("account_id")?;
                let user: Option<String> = row.try_get("user_name")?;
                Ok(AuditEntry {
                    at: parse_time(&at)?,
                    request_id: row.try_get("request_id")?,
                    account: account.as_deref().map(account_from).transpose()?,
                    user: user
                        .as_deref()
                        .map(|name| RamUserName::parse("user_name", name).map_err(corrupt))
                        .transpose()?,
                    access_key_id: row.try_get("access_key_id")?,
                    action: row.try_get("action")?,
                    resource: row.try_get("resource")?,
                    source_ip: row.try_get("source_ip")?,
                    outcome: row.try_get("outcome")?,
                })
            })
            .collect()
    }

    async fn accounts(&self) -> StoreResult<Vec<AccountSummary>> {
        let rows = sqlx::query("SELECT id, created_at FROM accounts ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let created: String = row.try_get("created_at")?;
                Ok(AccountSummary {
                    id: account_from(&id)?,
                    created_at: parse_time(&created)?,
                })
            })
            .collect()
    }

    async fn access_keys(&self, account: Option<&AccountId>) -> StoreResult<Vec<AccessKeySummary>> {
        let rows = sqlx::query(
            "SELECT id, account_id, user_name, status, created_at FROM access_keys \
             WHERE ? IS NULL OR account_id = ? ORDER BY created_at, id",
        )
        .bind(account.map(AccountId::as_str))
        .bind(account.map(AccountId::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let status: String = row.try_get("status")?;
                let created: String = row.try_get("created_at")?;
                Ok(AccessKeySummary {
                    id: AccessKeyId::parse(&id).map_err(corrupt)?,
                    principal: principal_from(row)?,
                    status: AccessKeyStatus::from_stored(&status),
                    created_at: parse_time(&created)?,
                })
            })
            .collect()
    }

    async fn has_catalog(&self) -> StoreResult<bool> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT value FROM store_metadata WHERE name = 'catalog_loaded'")
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    async fn replace_catalog(&self, nodes: &[NodeId], images: &[Image]) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM images WHERE owner_id IS NULL")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM listing_counts WHERE scope = ?")
            .bind(SYSTEM_SCOPE)
            .execute(&mut *tx)
            .await?;
        for node in nodes {
            sqlx::query("INSERT INTO nodes (id) VALUES (?) ON CONFLICT DO NOTHING")
                .bind(node.as_str())
                .execute(&mut *tx)
                .await?;
        }
        for image in images {
            let public = NewImage {
                image: Image {
                    owner: None,
                    ..image.clone()
                },
                build_due_at: None,
                build_failure: None,
                release_instance: None,
            };
            insert_image_in(&mut tx, &public).await?;
        }
        sqlx::query(
            "INSERT INTO store_metadata (name, value) VALUES ('catalog_loaded', ?) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(images.len().to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn nodes(&self) -> StoreResult<Vec<NodeId>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM nodes ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        ids.iter().map(|id| node_from(id)).collect()
    }

    async fn node_exists(&self, node: &NodeId) -> StoreResult<bool> {
        self.reader.node_exists(node)
    }

    async fn add_instance(&self, instance: &Instance) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        require_row(
            &mut tx,
            "SELECT 1 FROM accounts WHERE id = ?",
            instance.owner.as_str(),
            "account",
        )
        .await?;
        require_row(
            &mut tx,
            "SELECT 1 FROM nodes WHERE id = ?",
            instance.node.as_str(),
            "node",
        )
        .await?;
        let disks = instance
            .data_disks_gib
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let inserted = sqlx::query(
            "INSERT INTO instances (id, owner_id, node_id, image_id, platform, os_type, os_version, architecture, \
             compute_type, system_disk_gib, data_disks_gib, build_failure) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&instance.id)
        .bind(instance.owner.as_str())
        .bind(instance.node.as_str())
        .bind(instance.image_id.as_ref().map(ImageId::as_str))
        .bind(&instance.platform)
        .bind(&instance.os_type)
        .bind(&instance.os_version)
        .bind(&instance.architecture)
        .bind(&instance.compute_type)
        .bind(to_i64(instance.system_disk_gib, "disk size")?)
        .bind(disks)
        .bind(instance.build_failure.map(BuildFailure::as_str))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("instance {}", instance.id)));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn add_snapshot(&self, snapshot: &Snapshot) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        require_row(
            &mut tx,
            "SELECT 1 FROM accounts WHERE id = ?",
            snapshot.owner.as_str(),
            "account",
        )
        .await?;
        require_row(
            &mut tx,
            "SELECT 1 FROM nodes WHERE id = ?",
            snapshot.node.as_str(),
            "node",
        )
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO snapshots (id, owner_id, node_id, instance_id, platform, os_type, os_version, \
             architecture, size_gib, build_failure) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&snapshot.id)
        .bind(snapshot.owner.as_str())
        .bind(snapshot.node.as_str())
        .bind(snapshot.instance_id.as_deref())
        .bind(&snapshot.platform)
        .bind(&snapshot.os_type)
        .bind(&snapshot.os_version)
        .bind(&snapshot.architecture)
        .bind(to_i64(snapshot.size_gib, "snapshot size")?)
        .bind(snapshot.build_failure.map(BuildFailure::as_str))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("snapshot {}", snapshot.id)));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn instance(&self, id: &str) -> StoreResult<Option<Instance>> {
        self.reader.instance(id)
    }

    async fn snapshot(&self, id: &str) -> StoreResult<Option<Snapshot>> {
        self.reader.snapshot(id)
    }

    async fn sources(&self) -> StoreResult<(Vec<Instance>, Vec<Snapshot>)> {
        let instances = sqlx::query("SELECT * FROM instances ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(instance_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let snapshots = sqlx::query("SELECT * FROM snapshots ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(snapshot_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((instances, snapshots))
    }

    async fn create_image(&self, mut new: NewImage) -> StoreResult<Image> {
        // A collision among 36^25 IDs is next to impossible; a few retries make it harmless.
        let disks = new.image.disk_device_mappings.clone();
        for _ in 0..5 {
            new.image.id = ImageId::parse(&new_custom_image_id()).map_err(corrupt)?;
            for (disk, template) in new.image.disk_device_mappings.iter_mut().zip(&disks) {
                if template.image_id.is_empty() {
                    disk.image_id = new.image.id.as_str().to_owned();
                }
            }
            let mut tx = self.begin_write().await?;
            match insert_image_in(&mut tx, &new).await {
                Ok(_) => {
                    // Born Available: the upload is already over, so release the build instance now.
                    if let (ImageStatus::Available, Some(instance)) =
                        (new.image.status, &new.release_instance)
                    {
                        sqlx::query("DELETE FROM instances WHERE id = ?")
                            .bind(instance)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    return Ok(new.image);
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(error),
            }
        }
        Err(StoreError::Conflict("fresh image ID".into()))
    }

    async fn advance_image_builds(&self, now: OffsetDateTime, step: Duration) -> StoreResult<u64> {
        let now_ms = millis(now)?;
        let next_due = millis(now + step)?;
        let mut tx = self.begin_write().await?;
        let due = sqlx::query(
            "SELECT seq, owner_id, status, build_failure, release_instance FROM images \
             WHERE build_due_at IS NOT NULL AND build_due_at <= ? ORDER BY build_due_at LIMIT 500",
        )
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await?;
        let mut moved = 0;
        for row in &due {
            let seq: i64 = row.try_get("seq")?;
            let status: String = row.try_get("status")?;
            let status =
                ImageStatus::parse(&status).ok_or_else(|| corrupt(format!("image status {status:?}")))?;
            let failure = failure_from(row.try_get("build_failure")?)?;
            let Some(next) = status.after_build_step(failure) else {
                sqlx::query("UPDATE images SET build_due_at = NULL WHERE seq = ?")
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                continue;
            };
            let due_at = next.is_building().then_some(next_due);
            sqlx::query("UPDATE images SET status = ?, build_due_at = ? WHERE seq = ? AND status = ?")
                .bind(next.as_str())
                .bind(due_at)
                .bind(seq)
                .bind(status.as_str())
                .execute(&mut *tx)
                .await?;
            if next == ImageStatus::Available {
                let owner: Option<String> = row.try_get("owner_id")?;
                let nodes = image_nodes(&mut tx, seq).await?;
                add_to_listings(&mut tx, owner.as_deref().unwrap_or(SYSTEM_SCOPE), seq, &nodes).await?;
                let release: Option<String> = row.try_get("release_instance")?;
                if let Some(instance) = release {
                    sqlx::query("DELETE FROM instances WHERE id = ?")
                        .bind(instance)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            moved += 1;
        }
        tx.commit().await?;
        Ok(moved)
    }

    async fn visible_image(&self, viewer: &AccountId, id: &ImageId) -> StoreResult<Option<ImageView>> {
        self.reader.visible_image(viewer, id)
    }

    async fn rename_image(&self, owner: &AccountId, id: &ImageId, name: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let (seq, _) = owned_image(&mut tx, owner, id).await?;
        sqlx::query("UPDATE images SET name = ? WHERE seq = ?")
            .bind(name)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_image(&self, owner: &AccountId, id: &ImageId) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let (seq, image) = owned_image(&mut tx, owner, id).await?;
        let shares: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM image_shares WHERE image_seq = ?")
            .bind(seq)
            .fetch_one(&mut *tx)
            .await?;
        let used_by: Option<String> =
            sqlx::query_scalar("SELECT id FROM instances WHERE image_id = ? LIMIT 1")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        ensure_deletable(&image, to_u64(shares, "share count")?, used_by.as_deref())?;
        remove_from_listings(&mut tx, owner.as_str(), seq).await?;
        sqlx::query("DELETE FROM images WHERE seq = ?")
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn modify_image_shares(
        &self,
        owner: &AccountId,
        id: &ImageId,
        add: &[AccountId],
        remove: &[AccountId],
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let (seq, image) = owned_image(&mut tx, owner, id).await?;
        for account in add {
            let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM accounts WHERE id = ?")
                .bind(account.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if known.is_none() {
                return Err(ImageError::UnknownAccount(account.clone()).into());
            }
        }
        for account in remove {
            let removed = sqlx::query("DELETE FROM image_shares WHERE image_seq = ? AND account_id = ?")
                .bind(seq)
                .bind(account.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if removed > 0 {
                remove_from_listings(&mut tx, account.as_str(), seq).await?;
            }
        }
        if !add.is_empty() {
            let current: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM image_shares WHERE image_seq = ?")
                .bind(seq)
                .fetch_one(&mut *tx)
                .await?;
            let mut after = to_u64(current, "share count")?;
            for account in add {
                if !is_shared_with(&mut tx, seq, account).await? {
                    after += 1;
                }
            }
            ensure_shareable(&image, add, after)?;
            let nodes = image_nodes(&mut tx, seq).await?;
            let created = format_time(now)?;
            for account in add {
                let inserted = sqlx::query(
                    "INSERT INTO image_shares (image_seq, account_id, created_at) VALUES (?, ?, ?) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(seq)
                .bind(account.as_str())
                .bind(&created)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted > 0 {
                    add_to_listings(&mut tx, account.as_str(), seq, &nodes).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn image_shares(
        &self,
        owner: &AccountId,
        id: &ImageId,
        account: Option<&AccountId>,
        page: PageRequest,
    ) -> StoreResult<Page<ImageShare>> {
        let mut conn = self.pool.acquire().await?;
        let (seq, _) = owned_image(&mut conn, owner, id).await?;
        let filter = account.map(AccountId::as_str);
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM image_shares WHERE image_seq = ? AND (? IS NULL OR account_id = ?)",
        )
        .bind(seq)
        .bind(filter)
        .bind(filter)
        .fetch_one(&mut *conn)
        .await?;
        let rows = sqlx::query(
            "SELECT account_id, created_at FROM image_shares WHERE image_seq = ? AND (? IS NULL OR account_id = ?) \
             ORDER BY created_at, account_id LIMIT ? OFFSET ?",
        )
        .bind(seq)
        .bind(filter)
        .bind(filter)
        .bind(to_i64(page.limit(), "limit")?)
        .bind(to_i64(page.offset(), "offset")?)
        .fetch_all(&mut *conn)
        .await?;
        let items = rows
            .iter()
            .map(|row| {
                let account: String = row.try_get("account_id")?;
                let created: String = row.try_get("created_at")?;
                Ok(ImageShare {
                    account: account_from(&account)?,
                    created_at: parse_time(&created)?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page {
            items,
            total_count: to_u64(total, "count")?,
            request: page,
        })
    }

    async fn describe_self_images(&self, query: &SelfImageQuery) -> StoreResult<Page<ImageView>> {
        self.reader.describe_self_images(query)
    }

    async fn public_images(&self, os_type: Option<&str>) -> StoreResult<Vec<Image>> {
        self.reader.public_images(os_type)
    }

    async fn describe_images(&self, query: &ImageQuery) -> StoreResult<Page<ImageView>> {
        self.reader.describe_images(query)
    }

    async fn generate_catalog(&self, spec: &crate::GenerateSpec) -> StoreResult<crate::GeneratedCatalog> {
        crate::generate::sqlite(&self.pool, spec).await
    }
}

async fn insert_account(
    conn: &mut SqliteConnection,
    account: &AccountId,
    now: OffsetDateTime,
) -> StoreResult<()> {
    let created = sqlx::query("INSERT INTO accounts (id, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING")
        .bind(account.as_str())
        .bind(format_time(now)?)
        .execute(&mut *conn)
        .await?;
    if created.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("account {account}")));
    }
    Ok(())
}

async fn require_user(
    conn: &mut SqliteConnection,
    account: &AccountId,
    user: &RamUserName,
) -> StoreResult<()> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM ram_users WHERE account_id = ? AND name = ?")
        .bind(account.as_str())
        .bind(user.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    if found.is_none() {
        return Err(StoreError::NotFound(format!(
            "RAM user {user} in account {account}"
        )));
    }
    Ok(())
}

async fn insert_key(
    conn: &mut SqliteConnection,
    principal: &Principal,
    key: &AccessKeyId,
    secret: &str,
    now: OffsetDateTime,
) -> StoreResult<()> {
    let created = sqlx::query(
        "INSERT INTO access_keys (id, account_id, user_name, secret, status, created_at) VALUES (?, ?, ?, ?, ?, ?) \
         ON CONFLICT DO NOTHING",
    )
    .bind(key.as_str())
    .bind(principal.account.as_str())
    .bind(principal.user.as_ref().map(RamUserName::as_str))
    .bind(secret)
    .bind(AccessKeyStatus::Active.as_str())
    .bind(format_time(now)?)
    .execute(&mut *conn)
    .await?;
    if created.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("AccessKey {key}")));
    }
    Ok(())
}
