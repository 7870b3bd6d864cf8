//! The embedded default backend: one SQLite database file in WAL mode.
//!
//! Durability: WAL with `synchronous = NORMAL` keeps every committed transaction through a
//! crash or kill of the process; a power loss may roll back the last transactions. One
//! process owns the file: several servers must share PostgreSQL, not SQLite.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use ens_domain::{
    AccessKeyId, AccessKeyStatus, AccountId, DiskDeviceMapping, Image, ImageId, ImageOwnerAlias, ImageQuery,
    ImageView, NodeId, Page,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::{Store, StoreError, StoreResult, StoredAccessKey};

/// Scope of the public images in `image_listing` and `listing_counts`.
const SYSTEM_SCOPE: &str = "system";
/// Node key of the listing over all nodes.
const ALL_NODES: &str = "";

/// A [`Store`] on one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) `path` and applies pending migrations.
    ///
    /// # Errors
    /// When the file cannot be opened or a migration fails.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Opens a private in-memory database, for tests.
    ///
    /// # Errors
    /// When SQLite cannot start or a migration fails.
    pub async fn in_memory() -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        // One connection: every connection to ":memory:" would be a separate database.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

fn format_time(value: OffsetDateTime) -> StoreResult<String> {
    value
        .format(&Rfc3339)
        .map_err(|error| StoreError::Corrupt(format!("unformattable time: {error}")))
}

fn parse_time(value: &str) -> StoreResult<OffsetDateTime> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map_err(|error| StoreError::Corrupt(format!("stored time {value:?}: {error}")))
}

fn to_i64(value: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} out of range")))
}

fn to_u64(value: i64, what: &str) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} out of range")))
}

/// Adds `image_seq` to the listings of `scope` (all nodes and each of `nodes`) and bumps
/// their counts, inside the caller's transaction.
async fn add_to_listings(
    tx: &mut Transaction<'_, Sqlite>,
    scope: &str,
    image_seq: i64,
    nodes: &[String],
) -> StoreResult<()> {
    for node in std::iter::once(ALL_NODES).chain(nodes.iter().map(String::as_str)) {
        let inserted = sqlx::query(
            "INSERT INTO image_listing (scope, node_id, image_seq) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(scope)
        .bind(node)
        .bind(image_seq)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        sqlx::query(
            "INSERT INTO listing_counts (scope, node_id, count) VALUES (?, ?, ?) \
             ON CONFLICT (scope, node_id) DO UPDATE SET count = count + excluded.count",
        )
        .bind(scope)
        .bind(node)
        .bind(to_i64(inserted, "row count")?)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Writes one image with its nodes, disks and listings; returns its sequence number.
async fn insert_image_in(tx: &mut Transaction<'_, Sqlite>, image: &Image) -> StoreResult<i64> {
    let inserted = sqlx::query(
        "INSERT INTO images (id, name, owner_id, architecture, platform, os_type, size_gib, \
         creation_time, snapshot_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
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
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("image {}", image.id)));
    }
    let seq = inserted.last_insert_rowid();
    let mut nodes = Vec::with_capacity(image.nodes.len());
    for (position, node) in image.nodes.iter().enumerate() {
        let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM nodes WHERE id = ?")
            .bind(node.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        if known.is_none() {
            return Err(StoreError::NotFound(format!("node {node}")));
        }
        sqlx::query("INSERT INTO image_nodes (image_seq, position, node_id) VALUES (?, ?, ?)")
            .bind(seq)
            .bind(to_i64(position as u64, "node position")?)
            .bind(node.as_str())
            .execute(&mut **tx)
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
        .execute(&mut **tx)
        .await?;
    }
    let scope = image.owner.as_ref().map_or(SYSTEM_SCOPE, AccountId::as_str);
    add_to_listings(tx, scope, seq, &nodes).await?;
    Ok(seq)
}

/// Columns of `images` read by [`image_from_row`].
const IMAGE_COLUMNS: &str = "seq, id, name, owner_id, architecture, platform, os_type, size_gib, \
                             creation_time, snapshot_id";

/// An image row without its nodes and disks, plus its sequence number.
fn image_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<(i64, Image)> {
    let id: String = row.try_get("id")?;
    let owner: Option<String> = row.try_get("owner_id")?;
    let owner = owner
        .map(|value| AccountId::parse("owner_id", &value))
        .transpose()
        .map_err(|error| StoreError::Corrupt(error.to_string()))?;
    let creation_time: String = row.try_get("creation_time")?;
    let image = Image {
        id: ImageId::parse(&id).map_err(|error| StoreError::Corrupt(error.to_string()))?,
        name: row.try_get("name")?,
        owner,
        architecture: row.try_get("architecture")?,
        platform: row.try_get("platform")?,
        os_type: row.try_get("os_type")?,
        size_gib: to_u64(row.try_get("size_gib")?, "image size")?,
        creation_time: parse_time(&creation_time)?,
        snapshot_id: row.try_get("snapshot_id")?,
        nodes: Vec::new(),
        disk_device_mappings: Vec::new(),
    };
    Ok((row.try_get("seq")?, image))
}

impl SqliteStore {
    async fn listing_count(&self, scope: &str, node: &str) -> StoreResult<u64> {
        let count: Option<i64> =
            sqlx::query_scalar("SELECT count FROM listing_counts WHERE scope = ? AND node_id = ?")
                .bind(scope)
                .bind(node)
                .fetch_optional(&self.pool)
                .await?;
        to_u64(count.unwrap_or(0), "listing count")
    }

    async fn listing_page(&self, scope: &str, node: &str, offset: u64, limit: u64) -> StoreResult<Vec<i64>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar(
            "SELECT image_seq FROM image_listing WHERE scope = ? AND node_id = ? \
             ORDER BY image_seq LIMIT ? OFFSET ?",
        )
        .bind(scope)
        .bind(node)
        .bind(to_i64(limit, "limit")?)
        .bind(to_i64(offset, "offset")?)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Loads full images (nodes and disks included) for `seqs`, in that order.
    async fn load_images(&self, seqs: &[i64]) -> StoreResult<Vec<Image>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = vec!["?"; seqs.len()].join(",");
        let mut images: HashMap<i64, Image> = HashMap::with_capacity(seqs.len());
        let sql = format!("SELECT {IMAGE_COLUMNS} FROM images WHERE seq IN ({placeholders})");
        let mut query = sqlx::query(&sql);
        for seq in seqs {
            query = query.bind(seq);
        }
        for row in query.fetch_all(&self.pool).await? {
            let (seq, image) = image_from_row(&row)?;
            images.insert(seq, image);
        }
        let sql = format!(
            "SELECT image_seq, node_id FROM image_nodes WHERE image_seq IN ({placeholders}) \
             ORDER BY image_seq, position"
        );
        let mut query = sqlx::query(&sql);
        for seq in seqs {
            query = query.bind(seq);
        }
        for row in query.fetch_all(&self.pool).await? {
            let seq: i64 = row.try_get("image_seq")?;
            let node: String = row.try_get("node_id")?;
            let node =
                NodeId::parse("node_id", &node).map_err(|error| StoreError::Corrupt(error.to_string()))?;
            if let Some(image) = images.get_mut(&seq) {
                image.nodes.push(node);
            }
        }
        let sql = format!(
            "SELECT image_seq, disk_type, size_gib, format, file_id FROM image_disks \
             WHERE image_seq IN ({placeholders}) ORDER BY image_seq, position"
        );
        let mut query = sqlx::query(&sql);
        for seq in seqs {
            query = query.bind(seq);
        }
        for row in query.fetch_all(&self.pool).await? {
            let seq: i64 = row.try_get("image_seq")?;
            if let Some(image) = images.get_mut(&seq) {
                image.disk_device_mappings.push(DiskDeviceMapping {
                    disk_type: row.try_get("disk_type")?,
                    size_gib: to_u64(row.try_get("size_gib")?, "disk size")?,
                    format: row.try_get("format")?,
                    image_id: row.try_get("file_id")?,
                });
            }
        }
        Ok(seqs.iter().filter_map(|seq| images.remove(seq)).collect())
    }

    /// Listing path: no filter but (maybe) the node; cost is independent of catalog size.
    async fn page_from_listings(&self, query: &ImageQuery, node: &str) -> StoreResult<(Vec<i64>, u64)> {
        let viewer = query.viewer.as_str();
        let system_total = self.listing_count(SYSTEM_SCOPE, node).await?;
        let own_total = self.listing_count(viewer, node).await?;
        let (offset, limit) = (query.page.offset(), query.page.limit());
        let mut seqs = Vec::new();
        if offset < system_total {
            seqs = self.listing_page(SYSTEM_SCOPE, node, offset, limit).await?;
            let remaining = limit.saturating_sub(seqs.len() as u64);
            seqs.extend(self.listing_page(viewer, node, 0, remaining).await?);
        } else if offset - system_total < own_total {
            seqs = self
                .listing_page(viewer, node, offset - system_total, limit)
                .await?;
        }
        Ok((seqs, system_total + own_total))
    }

    /// Filter path: an exact ID, name or snapshot narrows the candidates through an index,
    /// so the cost grows with the matches, not with the catalog.
    async fn page_from_filters(&self, query: &ImageQuery) -> StoreResult<(Vec<i64>, u64)> {
        let viewer = query.viewer.as_str();
        let mut conditions = vec![
            "(i.owner_id IS NULL OR i.owner_id = ? OR EXISTS (SELECT 1 FROM image_shares s \
             WHERE s.image_seq = i.seq AND s.account_id = ?))",
        ];
        let mut values = vec![viewer, viewer];
        if let Some(id) = &query.image_id {
            conditions.push("i.id = ?");
            values.push(id.as_str());
        }
        if let Some(name) = &query.image_name {
            conditions.push("i.name = ?");
            values.push(name);
        }
        if let Some(snapshot) = &query.snapshot_id {
            conditions.push("i.snapshot_id = ?");
            values.push(snapshot);
        }
        if let Some(node) = &query.node {
            conditions
                .push("EXISTS (SELECT 1 FROM image_nodes n WHERE n.image_seq = i.seq AND n.node_id = ?)");
            values.push(node.as_str());
        }
        let filter = conditions.join(" AND ");
        let count_sql = format!("SELECT COUNT(*) FROM images i WHERE {filter}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
        for value in &values {
            count = count.bind(*value);
        }
        let total = count.fetch_one(&self.pool).await?;
        let page_sql = format!(
            "SELECT i.seq FROM images i WHERE {filter} ORDER BY (i.owner_id IS NOT NULL), i.seq LIMIT ? OFFSET ?"
        );
        let mut page = sqlx::query_scalar::<_, i64>(&page_sql);
        for value in &values {
            page = page.bind(*value);
        }
        let seqs = page
            .bind(to_i64(query.page.limit(), "limit")?)
            .bind(to_i64(query.page.offset(), "offset")?)
            .fetch_all(&self.pool)
            .await?;
        Ok((seqs, to_u64(total, "count")?))
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn access_key(&self, id: &AccessKeyId) -> StoreResult<Option<StoredAccessKey>> {
        let row = sqlx::query("SELECT account_id, secret, status FROM access_keys WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let account: String = row.try_get("account_id")?;
        let status: String = row.try_get("status")?;
        Ok(Some(StoredAccessKey {
            id: id.clone(),
            account: AccountId::parse("account_id", &account)
                .map_err(|error| StoreError::Corrupt(error.to_string()))?,
            secret: row.try_get("secret")?,
            status: AccessKeyStatus::from_stored(&status),
        }))
    }

    async fn claim_nonce(
        &self,
        key: &AccessKeyId,
        nonce: &str,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> StoreResult<bool> {
        // An expired row for the same nonce is taken over; a live one means replay.
        let claimed = sqlx::query(
            "INSERT INTO signature_nonces (access_key_id, nonce, expires_at) VALUES (?, ?, ?) \
             ON CONFLICT (access_key_id, nonce) DO UPDATE SET expires_at = excluded.expires_at \
             WHERE signature_nonces.expires_at <= ?",
        )
        .bind(key.as_str())
        .bind(nonce)
        .bind(expires_at.unix_timestamp())
        .bind(now.unix_timestamp())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(claimed == 1)
    }

    async fn prune_nonces(&self, now: OffsetDateTime) -> StoreResult<u64> {
        Ok(sqlx::query("DELETE FROM signature_nonces WHERE expires_at <= ?")
            .bind(now.unix_timestamp())
            .execute(&self.pool)
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
        let now = format_time(now)?;
        let mut tx = self.pool.begin().await?;
        let created =
            sqlx::query("INSERT INTO accounts (id, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING")
                .bind(account.as_str())
                .bind(&now)
                .execute(&mut *tx)
                .await?;
        if created.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("account {account}")));
        }
        let created = sqlx::query(
            "INSERT INTO access_keys (id, account_id, secret, status, created_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(key.as_str())
        .bind(account.as_str())
        .bind(secret)
        .bind(AccessKeyStatus::Active.as_str())
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        if created.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("AccessKey {key}")));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn has_catalog(&self) -> StoreResult<bool> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT value FROM store_metadata WHERE name = 'catalog_loaded'")
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    async fn replace_catalog(&self, nodes: &[NodeId], images: &[Image]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
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
            insert_image_in(&mut tx, image).await?;
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
        ids.iter()
            .map(|id| NodeId::parse("node_id", id).map_err(|error| StoreError::Corrupt(error.to_string())))
            .collect()
    }

    async fn node_exists(&self, node: &NodeId) -> StoreResult<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM nodes WHERE id = ?")
            .bind(node.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    async fn insert_image(&self, image: &Image) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        insert_image_in(&mut tx, image).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn share_image(&self, image: &ImageId, with: &AccountId, now: OffsetDateTime) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM images WHERE id = ? AND owner_id IS NOT NULL")
                .bind(image.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(seq) = seq else {
            return Err(StoreError::NotFound(format!("custom image {image}")));
        };
        let account: Option<i64> = sqlx::query_scalar("SELECT 1 FROM accounts WHERE id = ?")
            .bind(with.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if account.is_none() {
            return Err(StoreError::NotFound(format!("account {with}")));
        }
        let shared = sqlx::query(
            "INSERT INTO image_shares (image_seq, account_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(seq)
        .bind(with.as_str())
        .bind(format_time(now)?)
        .execute(&mut *tx)
        .await?;
        if shared.rows_affected() == 1 {
            let nodes: Vec<String> =
                sqlx::query_scalar("SELECT node_id FROM image_nodes WHERE image_seq = ? ORDER BY position")
                    .bind(seq)
                    .fetch_all(&mut *tx)
                    .await?;
            add_to_listings(&mut tx, with.as_str(), seq, &nodes).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn describe_images(&self, query: &ImageQuery) -> StoreResult<Page<ImageView>> {
        let filtered = query.image_id.is_some() || query.image_name.is_some() || query.snapshot_id.is_some();
        let (seqs, total_count) = if filtered {
            self.page_from_filters(query).await?
        } else {
            let node = query.node.as_ref().map_or(ALL_NODES, NodeId::as_str);
            self.page_from_listings(query, node).await?
        };
        let items = self
            .load_images(&seqs)
            .await?
            .into_iter()
            .filter_map(|image| {
                let region = query.node.clone().or_else(|| image.nodes.first().cloned())?;
                Some(ImageView {
                    alias: ImageOwnerAlias::of(image.owner.as_ref(), &query.viewer),
                    region,
                    image,
                })
            })
            .collect();
        Ok(Page {
            items,
            total_count,
            request: query.page,
        })
    }
}
