//! The SQLite read path: every query a request reads with, run inline on the caller's thread.
//!
//! An SQLite read through an indexed path takes microseconds; handing it to a driver's worker
//! thread and back costs more than the query (two wake-ups per statement, and a request runs
//! several statements). So reads use their own connections, taken from a small idle list and
//! used synchronously; a request's statements share one read transaction, which also
//! gives them one consistent snapshot. WAL mode lets these readers run beside the writer
//! without waiting for it. Writes stay on the async pool, where waiting for the write lock
//! must not block a runtime thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use ens_domain::{
    AccessKeyId, AccessKeyStatus, AccountId, DiskDeviceMapping, Image, ImageId, ImageQuery, ImageView,
    Instance, NodeId, Page, PageRequest, RamUserName, Snapshot,
};
use rusqlite::{params_from_iter, Connection, OpenFlags, OptionalExtension, ToSql};

use crate::common::{
    image_from_row, instance_from_row, node_from, principal_from, snapshot_from_row, to_i64, to_u64, views,
    Columns, ALL_NODES, IMAGE_COLUMNS, SYSTEM_SCOPE,
};
use crate::{SelfImageQuery, StoreResult, StoredAccessKey};

/// Idle connections kept for reuse; more are opened when more threads read at once.
const MAX_IDLE: usize = 16;
/// How much of the database file each read connection maps.
const READ_MMAP_BYTES: i64 = 1 << 30;
/// Prepared statements kept per connection (the read path has about twenty shapes).
const STATEMENT_CACHE: usize = 64;

/// Read connections to one database file.
pub(super) struct Reader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Reader {
    /// A reader of `path`, whose schema the writer has already migrated.
    pub(super) fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn open(&self) -> StoreResult<Connection> {
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(Duration::from_secs(10))?;
        connection.pragma_update(None, "query_only", true)?;
        // Pages are read straight from the mapped file instead of copied in by a system call
        // each; the mapping is shared with the page cache, not private memory.
        connection.pragma_update(None, "mmap_size", READ_MMAP_BYTES)?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(connection)
    }

    /// Runs a read of one statement (its own snapshot, no transaction to open) on an idle
    /// connection, or a new one, then gives the connection back.
    fn read_one<T>(&self, read: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let connection = match idle {
            Some(connection) => connection,
            None => self.open()?,
        };
        let result = read(&connection);
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE {
                idle.push(connection);
            }
        }
        result
    }

    /// Runs a read of several statements in one read transaction, so they see one snapshot.
    fn read_snapshot<T>(&self, read: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        self.read_one(|connection| {
            let transaction = connection.unchecked_transaction()?;
            let value = read(&transaction)?;
            transaction.commit()?;
            Ok(value)
        })
    }

    pub(super) fn access_key(&self, id: &AccessKeyId) -> StoreResult<Option<StoredAccessKey>> {
        self.read_one(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT account_id, user_name, secret, status FROM access_keys WHERE id = ?",
            )?;
            let key = statement
                .query_row([id.as_str()], |row| {
                    Ok((
                        principal_from(row),
                        row.get::<_, String>("secret")?,
                        row.get::<_, String>("status")?,
                    ))
                })
                .optional()?;
            key.map(|(principal, secret, status)| {
                Ok(StoredAccessKey {
                    id: id.clone(),
                    principal: principal?,
                    secret,
                    status: AccessKeyStatus::from_stored(&status),
                })
            })
            .transpose()
        })
    }

    pub(super) fn node_exists(&self, node: &NodeId) -> StoreResult<bool> {
        self.read_one(|connection| {
            Ok(connection
                .prepare_cached("SELECT 1 FROM nodes WHERE id = ?")?
                .exists([node.as_str()])?)
        })
    }

    pub(super) fn instance(&self, id: &str) -> StoreResult<Option<Instance>> {
        self.read_one(|connection| {
            let mut statement = connection.prepare_cached("SELECT * FROM instances WHERE id = ?")?;
            let mut rows = statement.query([id])?;
            rows.next()?.map(instance_from_row).transpose()
        })
    }

    pub(super) fn snapshot(&self, id: &str) -> StoreResult<Option<Snapshot>> {
        self.read_one(|connection| {
            let mut statement = connection.prepare_cached("SELECT * FROM snapshots WHERE id = ?")?;
            let mut rows = statement.query([id])?;
            rows.next()?.map(snapshot_from_row).transpose()
        })
    }

    pub(super) fn user_policy_documents(
        &self,
        account: &AccountId,
        user: &RamUserName,
    ) -> StoreResult<Vec<String>> {
        self.read_one(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT p.document FROM policy_attachments a JOIN policies p \
                 ON p.account_id = a.account_id AND p.name = a.policy_name \
                 WHERE a.account_id = ? AND a.user_name = ? ORDER BY p.name",
            )?;
            let documents = statement
                .query_map([account.as_str(), user.as_str()], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(documents)
        })
    }

    pub(super) fn visible_image(&self, viewer: &AccountId, id: &ImageId) -> StoreResult<Option<ImageView>> {
        self.read_snapshot(|connection| {
            let sql = format!(
                "SELECT {IMAGE_COLUMNS} FROM images i WHERE id = ?1 AND (owner_id IS NULL OR owner_id = ?2 \
                 OR EXISTS (SELECT 1 FROM image_shares s WHERE s.image_seq = i.seq AND s.account_id = ?2))"
            );
            let seq: Option<i64> = connection
                .prepare_cached(&sql)?
                .query_row([id.as_str(), viewer.as_str()], |row| row.get("seq"))
                .optional()?;
            let Some(seq) = seq else { return Ok(None) };
            Ok(views(load_images(connection, &[seq], Nodes::All)?, viewer, None).pop())
        })
    }

    pub(super) fn describe_self_images(&self, query: &SelfImageQuery) -> StoreResult<Page<ImageView>> {
        let viewer = query.viewer.as_str();
        let mut conditions = vec![
            "i.seq IN (SELECT seq FROM images WHERE owner_id = ? \
             UNION ALL SELECT image_seq FROM image_shares WHERE account_id = ?)",
        ];
        let mut values = vec![viewer, viewer];
        if let Some(id) = &query.image_id_contains {
            conditions.push("instr(lower(i.id), lower(?)) > 0");
            values.push(id);
        }
        if let Some(name) = &query.image_name_contains {
            conditions.push("instr(lower(i.name), lower(?)) > 0");
            values.push(name);
        }
        if let Some(snapshot) = &query.snapshot_id {
            conditions.push("i.snapshot_id = ?");
            values.push(snapshot);
        }
        let from = format!("FROM images i WHERE {}", conditions.join(" AND "));
        self.read_snapshot(|connection| {
            let (seqs, total_count) = paged_seqs(connection, &from, "i.seq", &values, query.page)?;
            Ok(Page {
                items: views(load_images(connection, &seqs, Nodes::All)?, &query.viewer, None),
                total_count,
                request: query.page,
            })
        })
    }

    pub(super) fn public_images(&self, os_type: Option<&str>) -> StoreResult<Vec<Image>> {
        self.read_snapshot(|connection| {
            let seqs: Vec<i64> = connection
                .prepare_cached(
                    "SELECT seq FROM images WHERE owner_id IS NULL AND (?1 IS NULL OR lower(os_type) = lower(?1)) \
                     ORDER BY seq",
                )?
                .query_map([os_type], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            load_images(connection, &seqs, Nodes::All)
        })
    }

    pub(super) fn describe_images(&self, query: &ImageQuery) -> StoreResult<Page<ImageView>> {
        self.read_snapshot(|connection| {
            let filtered =
                query.image_id.is_some() || query.image_name.is_some() || query.snapshot_id.is_some();
            let (seqs, total_count) = if filtered {
                page_from_filters(connection, query)?
            } else {
                let node = query.node.as_ref().map_or(ALL_NODES, NodeId::as_str);
                page_from_listings(connection, query, node)?
            };
            Ok(Page {
                items: views(
                    load_images(connection, &seqs, Nodes::First)?,
                    &query.viewer,
                    query.node.as_ref(),
                ),
                total_count,
                request: query.page,
            })
        })
    }
}

/// A row of `SELECT {IMAGE_COLUMNS}`, read by position: looking a column up by name asks
/// SQLite for every column's name, which showed in the read path's profile.
struct ImageRow<'a>(&'a rusqlite::Row<'a>);

impl ImageRow<'_> {
    fn index(name: &str) -> rusqlite::Result<usize> {
        static NAMES: LazyLock<Vec<&'static str>> = LazyLock::new(|| IMAGE_COLUMNS.split(", ").collect());
        NAMES
            .iter()
            .position(|column| *column == name)
            .ok_or_else(|| rusqlite::Error::InvalidColumnName(name.to_owned()))
    }
}

impl Columns for ImageRow<'_> {
    fn text(&self, name: &str) -> StoreResult<String> {
        Ok(self.0.get(Self::index(name)?)?)
    }
    fn maybe_text(&self, name: &str) -> StoreResult<Option<String>> {
        Ok(self.0.get(Self::index(name)?)?)
    }
    fn int(&self, name: &str) -> StoreResult<i64> {
        Ok(self.0.get(Self::index(name)?)?)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn text(&self, name: &str) -> StoreResult<String> {
        Ok(self.get(name)?)
    }
    fn maybe_text(&self, name: &str) -> StoreResult<Option<String>> {
        Ok(self.get(name)?)
    }
    fn int(&self, name: &str) -> StoreResult<i64> {
        Ok(self.get(name)?)
    }
}

fn listing_count(connection: &Connection, scope: &str, node: &str) -> StoreResult<u64> {
    let count: Option<i64> = connection
        .prepare_cached("SELECT count FROM listing_counts WHERE scope = ? AND node_id = ?")?
        .query_row([scope, node], |row| row.get(0))
        .optional()?;
    to_u64(count.unwrap_or(0), "listing count")
}

/// Every listing is numbered densely in image order, so any page is one index seek.
fn listing_page(
    connection: &Connection,
    scope: &str,
    node: &str,
    offset: u64,
    limit: u64,
) -> StoreResult<Vec<i64>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut statement = connection.prepare_cached(
        "SELECT image_seq FROM image_listing WHERE scope = ?1 AND node_id = ?2 AND position >= ?3 \
         ORDER BY position LIMIT ?4",
    )?;
    let seqs = statement
        .query_map(
            rusqlite::params![scope, node, to_i64(offset, "offset")?, to_i64(limit, "limit")?],
            |row| row.get(0),
        )?
        .collect::<Result<_, _>>()?;
    Ok(seqs)
}

/// Listing path: no filter but (maybe) the node; public images first, then the viewer's own
/// and shared-in ones. Two counter lookups and at most two seeks, whatever the catalog size.
fn page_from_listings(
    connection: &Connection,
    query: &ImageQuery,
    node: &str,
) -> StoreResult<(Vec<i64>, u64)> {
    let viewer = query.viewer.as_str();
    let system_total = listing_count(connection, SYSTEM_SCOPE, node)?;
    let own_total = listing_count(connection, viewer, node)?;
    let (offset, limit) = (query.page.offset(), query.page.limit());
    let mut seqs = Vec::new();
    if offset < system_total {
        seqs = listing_page(connection, SYSTEM_SCOPE, node, offset, limit)?;
        let remaining = limit.saturating_sub(seqs.len() as u64);
        seqs.extend(listing_page(connection, viewer, node, 0, remaining)?);
    } else if offset - system_total < own_total {
        seqs = listing_page(connection, viewer, node, offset - system_total, limit)?;
    }
    Ok((seqs, system_total + own_total))
}

/// Filter path: an exact ID, name or snapshot narrows the candidates through an index, so the
/// cost grows with the matches, not with the catalog.
fn page_from_filters(connection: &Connection, query: &ImageQuery) -> StoreResult<(Vec<i64>, u64)> {
    let viewer = query.viewer.as_str();
    let mut conditions = vec![
        "i.status = 'Available'",
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
        conditions.push("EXISTS (SELECT 1 FROM image_nodes n WHERE n.image_seq = i.seq AND n.node_id = ?)");
        values.push(node.as_str());
    }
    let from = format!("FROM images i WHERE {}", conditions.join(" AND "));
    paged_seqs(
        connection,
        &from,
        "(i.owner_id IS NOT NULL), i.seq",
        &values,
        query.page,
    )
}

/// Runs `SELECT COUNT(*) {from}` and `SELECT i.seq {from} ORDER BY {order}` for one page.
fn paged_seqs(
    connection: &Connection,
    from: &str,
    order: &str,
    values: &[&str],
    page: PageRequest,
) -> StoreResult<(Vec<i64>, u64)> {
    let total: i64 = connection
        .prepare_cached(&format!("SELECT COUNT(*) {from}"))?
        .query_row(params_from_iter(values), |row| row.get(0))?;
    let (limit, offset) = (to_i64(page.limit(), "limit")?, to_i64(page.offset(), "offset")?);
    let mut bound: Vec<&dyn ToSql> = values.iter().map(|value| value as &dyn ToSql).collect();
    bound.extend([&limit as &dyn ToSql, &offset]);
    let seqs = connection
        .prepare_cached(&format!("SELECT i.seq {from} ORDER BY {order} LIMIT ? OFFSET ?"))?
        .query_map(bound.as_slice(), |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    Ok((seqs, to_u64(total, "count")?))
}

/// Which of an image's nodes to load.
#[derive(Clone, Copy)]
enum Nodes {
    /// Every node, in order.
    All,
    /// Only the first: a DescribeImages item names one node (`RegionId`), and the public
    /// images can each be on dozens.
    First,
}

/// Loads images (disks included) for `seqs`, in that order. The sequence numbers travel as
/// one JSON array, so each statement has one shape whatever the page size and stays prepared.
fn load_images(connection: &Connection, seqs: &[i64], nodes: Nodes) -> StoreResult<Vec<Image>> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let wanted = format!(
        "[{}]",
        seqs.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
    );
    let mut images: HashMap<i64, Image> = HashMap::with_capacity(seqs.len());
    let sql = format!("SELECT {IMAGE_COLUMNS} FROM images WHERE seq IN (SELECT value FROM json_each(?))");
    let mut statement = connection.prepare_cached(&sql)?;
    let mut rows = statement.query([&wanted])?;
    while let Some(row) = rows.next()? {
        let (seq, image) = image_from_row(&ImageRow(row))?;
        images.insert(seq, image);
    }
    let mut statement = connection.prepare_cached(match nodes {
        Nodes::All => {
            "SELECT image_seq, node_id FROM image_nodes WHERE image_seq IN (SELECT value FROM json_each(?)) \
             ORDER BY image_seq, position"
        }
        Nodes::First => {
            "SELECT image_seq, node_id FROM image_nodes WHERE image_seq IN (SELECT value FROM json_each(?)) \
             AND position = 0"
        }
    })?;
    let mut rows = statement.query([&wanted])?;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let node: String = row.get(1)?;
        if let Some(image) = images.get_mut(&seq) {
            image.nodes.push(node_from(&node)?);
        }
    }
    let mut statement = connection.prepare_cached(
        "SELECT image_seq, disk_type, size_gib, format, file_id FROM image_disks \
         WHERE image_seq IN (SELECT value FROM json_each(?)) ORDER BY image_seq, position",
    )?;
    let mut rows = statement.query([&wanted])?;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        if let Some(image) = images.get_mut(&seq) {
            image.disk_device_mappings.push(DiskDeviceMapping {
                disk_type: row.get(1)?,
                size_gib: to_u64(row.get(2)?, "disk size")?,
                format: row.get(3)?,
                image_id: row.get(4)?,
            });
        }
    }
    Ok(seqs.iter().filter_map(|seq| images.remove(seq)).collect())
}
