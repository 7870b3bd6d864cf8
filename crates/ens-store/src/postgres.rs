//! The shared backend: one PostgreSQL database behind any number of server replicas.
//!
//! Behaviour matches [`crate::SqliteStore`] method for method (the storage suite runs on
//! both); what differs is how writes stay correct when several processes write at once.
//! SQLite serializes every write transaction; here transactions run at READ COMMITTED and
//! each one locks the rows its rule checks read before it writes:
//!
//! - image changes (rename, delete, share) lock the image row `FOR UPDATE` first, so a delete
//!   and a share of the same image run one after the other and the second sees the first;
//! - registering an instance locks the image it runs `FOR SHARE`, so a delete sees it;
//! - RAM users and policies are locked `FOR UPDATE` by their deletion and `FOR SHARE` by
//!   whatever attaches to them;
//! - build steps are claimed with `FOR UPDATE SKIP LOCKED` and a compare-and-set on the
//!   status, so each transition happens once whichever replica runs it;
//! - nonces are claimed by one `INSERT ... ON CONFLICT DO UPDATE ... WHERE expired`, which
//!   the database arbitrates;
//! - catalog loading and owner bootstrap take transaction-scoped advisory locks, so
//!   replicas starting together load one catalog and create one owner;
//! - each replica records a heartbeat, so per-replica limits can be divided by the number
//!   of live replicas;
//! - listing counters are changed last in each transaction, in one global order, so
//!   transactions touching the same counters never deadlock.
//!
//! Serialization failures and deadlocks that remain possible are retried here a few times
//! before they surface as [`StoreError::Unavailable`]. Multi-statement reads run in one
//! `REPEATABLE READ, READ ONLY` transaction, so a page and its TotalCount agree.
//!
//! Text is stored as in SQLite (timestamps as RFC 3339 text, nonce expiry and build due
//! times as integers) in columns with the "C" collation, so ordering and case folding are
//! SQLite's byte-wise ones whatever the database locale.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::ops::Range;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use ens_domain::rules::{ensure_deletable, ensure_owner, ensure_shareable};
use ens_domain::{
    AccessKeyId, AccessKeyStatus, AccountId, BuildFailure, DiskDeviceMapping, Image, ImageError, ImageId,
    ImageQuery, ImageStatus, ImageView, Instance, NodeId, Page, PageRequest, Principal, RamUserName,
    Snapshot,
};
use rand::Rng;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Row, Transaction};
use time::OffsetDateTime;

use crate::common::{
    account_from, audit_time, corrupt, failure_from, format_time, image_from_row, instance_from_row, millis,
    new_custom_image_id, node_from, parse_time, principal_from, snapshot_from_row, to_i64, to_u64, user_from,
    views, ALL_NODES, IMAGE_COLUMNS, SYSTEM_SCOPE,
};
use crate::{
    AccessKeySummary, AccountSummary, AuditEntry, AuditFilter, ImageShare, NewImage, NonceClaim, RamUser,
    SelfImageQuery, Store, StoreError, StoreResult, StoredAccessKey, StoredPolicy,
};

/// Numbers the public listing densely per node (0, 1, ...) in listing order; run after a
/// catalog load, in its transaction (counts are applied at commit, so rows cannot be
/// numbered as they are appended, as SQLite does).
const NUMBER_PUBLIC_LISTING: &str = "UPDATE image_listing SET position = numbered.position \
     FROM (SELECT node_id, image_seq, row_number() OVER (PARTITION BY node_id ORDER BY image_seq) - 1 AS position \
           FROM image_listing WHERE scope = 'system') AS numbered \
     WHERE image_listing.scope = 'system' AND image_listing.node_id = numbered.node_id \
       AND image_listing.image_seq = numbered.image_seq";

/// How long a request waits for a pooled connection before the store reports itself
/// unavailable: long enough for a burst, short enough that an unreachable database gives a
/// quick ServiceUnavailable instead of a hung request.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Audit entries per INSERT: nine bound values each.
const AUDIT_ENTRIES_PER_STATEMENT: usize = 100;
/// Nonce claims per INSERT (sent as three arrays).
const NONCE_CLAIMS_PER_STATEMENT: usize = 512;
/// How many times a transaction that lost a serialization race or a deadlock is run again.
const CONFLICT_RETRIES: u32 = 5;
/// Longest pause between two attempts of [`PostgresStore::connect_with_retry`].
const MAX_CONNECT_DELAY: Duration = Duration::from_secs(5);
/// Advisory lock key serializing catalog replacement ("ENSCATLG" in ASCII).
const CATALOG_LOCK: i64 = 0x454E_5343_4154_4C47;
/// Advisory lock key serializing owner bootstrap ("ENSOWNER" in ASCII).
const BOOTSTRAP_LOCK: i64 = 0x454E_534F_574E_4552;
/// How multi-statement reads begin: one snapshot, no writes.
const BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// A [`Store`] on a PostgreSQL database that several server processes may share.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pool's options hold the password; never print them.
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`)
    /// with a pool of at most `max_connections`, and applies pending migrations.
    ///
    /// Fails fast: an unreachable database gives [`StoreError::Unavailable`] after a few
    /// seconds. Migrations run under PostgreSQL's advisory lock, so replicas starting
    /// together migrate once. See [`Self::connect_with_retry`] to wait for a database that
    /// is still starting.
    ///
    /// # Errors
    /// `Invalid` for a malformed URL or a zero pool size, `Unavailable` when the database
    /// cannot be reached, `Database` when it refuses the login, `Migration` when the schema
    /// cannot be brought up to date.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url).map_err(|error| {
            StoreError::Invalid(format!(
                "database URL {}: {}",
                redact_database_url(url),
                redact_secrets(&error.to_string(), url)
            ))
        })?;
        Self::connect_with(options, max_connections).await
    }

    /// Like [`Self::connect`], with connection options built in code (tests and embedders
    /// that derive one database's options from another's).
    ///
    /// # Errors
    /// As [`Self::connect`].
    pub async fn connect_with(options: PgConnectOptions, max_connections: u32) -> StoreResult<Self> {
        if max_connections == 0 {
            return Err(StoreError::Invalid(
                "the database pool needs at least one connection".into(),
            ));
        }
        // One direct connection first: when the database is unreachable it says why
        // ("connection refused", "password authentication failed", ...), where the pool
        // would only report that it timed out.
        let probe = tokio::time::timeout(ACQUIRE_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolTimedOut))??;
        probe.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// [`Self::connect`], retried with growing pauses while the database is unreachable
    /// (it may be starting beside the server), for at most `patience` in all.
    ///
    /// Before each pause `on_wait` gets the reason and the attempt number (from 1), so the
    /// caller can log that it is waiting. Errors other than `Unavailable` (a bad URL, a
    /// refused login, a failed migration) are returned at once: waiting would not fix them.
    ///
    /// # Errors
    /// The last error once `patience` is spent, or the first error that is not `Unavailable`.
    pub async fn connect_with_retry(
        url: &str,
        max_connections: u32,
        patience: Duration,
        on_wait: impl Fn(&StoreError, u32),
    ) -> StoreResult<Self> {
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(500);
        let mut attempt = 0;
        loop {
            match Self::connect(url, max_connections).await {
                Err(error @ StoreError::Unavailable(_)) => {
                    attempt += 1;
                    if started.elapsed() + delay > patience {
                        return Err(error);
                    }
                    on_wait(&error, attempt);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_CONNECT_DELAY);
                }
                result => return result,
            }
        }
    }

    /// Closes every pooled connection and waits until they are closed (before dropping the
    /// database in tests, or at shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A READ COMMITTED transaction; writers lock the rows their checks read.
    async fn begin_write(&self) -> StoreResult<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// A read-only transaction over one snapshot.
    async fn begin_read(&self) -> StoreResult<Transaction<'static, Postgres>> {
        Ok(self.pool.begin_with(BEGIN_READ).await?)
    }
}

/// `url` with its password (in the user info or a `password=` parameter) replaced by `***`,
/// so the database can be named in logs and error messages.
#[must_use]
pub fn redact_database_url(url: &str) -> String {
    let mut spans = secret_spans(url);
    spans.sort_by_key(|span| span.start);
    let mut redacted = String::with_capacity(url.len());
    let mut from = 0;
    for span in spans {
        redacted.push_str(url.get(from..span.start).unwrap_or_default());
        redacted.push_str("***");
        from = span.end;
    }
    redacted.push_str(url.get(from..).unwrap_or_default());
    redacted
}

/// `text` (typically an error message) with every occurrence of the password of `url`,
/// as written or percent-decoded, replaced by `***`.
#[must_use]
pub fn redact_secrets(text: &str, url: &str) -> String {
    let mut redacted = text.to_owned();
    for span in secret_spans(url) {
        let raw = url.get(span).unwrap_or_default();
        for secret in [percent_decode(raw), raw.to_owned()] {
            if !secret.is_empty() {
                redacted = redacted.replace(&secret, "***");
            }
        }
    }
    redacted
}

/// Byte ranges of `url` that hold a password.
fn secret_spans(url: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let Some(scheme_end) = url.find("://") else {
        return spans;
    };
    let authority_start = scheme_end + 3;
    let rest = url.get(authority_start..).unwrap_or_default();
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..authority_len).unwrap_or_default();
    if let Some(at) = authority.rfind('@') {
        if let Some(colon) = authority.get(..at).and_then(|info| info.find(':')) {
            spans.push(authority_start + colon + 1..authority_start + at);
        }
    }
    if let Some(question) = rest.find('?') {
        let query_start = authority_start + question + 1;
        let query = url.get(query_start..).unwrap_or_default();
        let query = query.split('#').next().unwrap_or_default();
        let mut offset = query_start;
        for pair in query.split('&') {
            if let Some(value) = pair.strip_prefix("password=") {
                let start = offset + "password=".len();
                spans.push(start..start + value.len());
            }
            offset += pair.len() + 1;
        }
    }
    spans.retain(|span| !span.is_empty());
    spans
}

/// Decodes `%XX` escapes (invalid escapes are kept as written).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Runs `operation` again (a few times, with short random pauses) while it fails with a
/// serialization failure or a deadlock; each run must be a whole transaction.
async fn retrying<T, F, Fut>(mut operation: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<T>>,
{
    let mut attempt = 0;
    loop {
        match operation().await {
            Err(error) if error.is_retryable_conflict() && attempt < CONFLICT_RETRIES => {
                attempt += 1;
                let pause = Duration::from_millis((5 << attempt) + rand::thread_rng().gen_range(0..10));
                tracing::debug!(%error, attempt, "transaction conflict; running it again");
                tokio::time::sleep(pause).await;
            }
            result => return result,
        }
    }
}

/// Which lock a read inside a write transaction takes on the rows it returns.
#[derive(Clone, Copy)]
enum Lock {
    /// None: the rows are only read.
    None,
    /// Others may read and share-lock the rows, but not change or delete them.
    Share,
    /// Exclusive: the rows are about to be changed or deleted.
    Update,
}

impl Lock {
    fn clause(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Share => " FOR SHARE",
            Self::Update => " FOR UPDATE",
        }
    }
}

/// Changes to `listing_counts` gathered during a write transaction and applied at its end.
///
/// Applying them last, sorted by (scope, node), means every transaction locks counter rows
/// in the same order and holds them only until commit, so concurrent writers never deadlock
/// on counters and hot ones (the public listing) are locked as briefly as possible.
#[derive(Default)]
struct CountChanges(BTreeMap<(String, String), i64>);

impl CountChanges {
    fn change(&mut self, scope: &str, node: &str, delta: i64) {
        *self.0.entry((scope.to_owned(), node.to_owned())).or_default() += delta;
    }

    async fn apply(self, conn: &mut PgConnection) -> StoreResult<()> {
        for ((scope, node), delta) in self.0 {
            if delta > 0 {
                sqlx::query(
                    "INSERT INTO listing_counts (scope, node_id, count) VALUES ($1, $2, $3) \
                     ON CONFLICT (scope, node_id) DO UPDATE SET count = listing_counts.count + EXCLUDED.count",
                )
                .bind(&scope)
                .bind(&node)
                .bind(delta)
                .execute(&mut *conn)
                .await?;
            } else if delta < 0 {
                sqlx::query("UPDATE listing_counts SET count = count + $3 WHERE scope = $1 AND node_id = $2")
                    .bind(&scope)
                    .bind(&node)
                    .bind(delta)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }
}

/// Adds `image_seq` to the listings of `scope` (all nodes and each of `nodes`), counting
/// the rows added. An account's listings stay numbered densely in image order (migration
/// 0005): each one is locked through its counter row, in a fixed order, while its position is
/// taken; the public listing is numbered whole after a catalog load instead.
async fn add_to_listings(
    conn: &mut PgConnection,
    counts: &mut CountChanges,
    scope: &str,
    image_seq: i64,
    nodes: &[String],
) -> StoreResult<()> {
    let mut sorted: Vec<&str> = nodes.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    for node in std::iter::once(ALL_NODES).chain(sorted) {
        let position = if scope == SYSTEM_SCOPE {
            None
        } else {
            lock_listing(conn, scope, node).await?;
            let listed: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM image_listing WHERE scope = $1 AND node_id = $2 AND image_seq = $3)",
            )
            .bind(scope)
            .bind(node)
            .bind(image_seq)
            .fetch_one(&mut *conn)
            .await?;
            if listed {
                continue;
            }
            let next: Option<i64> = sqlx::query_scalar(
                "SELECT position FROM image_listing WHERE scope = $1 AND node_id = $2 AND image_seq > $3 \
                 ORDER BY image_seq LIMIT 1",
            )
            .bind(scope)
            .bind(node)
            .bind(image_seq)
            .fetch_optional(&mut *conn)
            .await?;
            Some(match next {
                Some(position) => {
                    sqlx::query(
                        "UPDATE image_listing SET position = position + 1 \
                         WHERE scope = $1 AND node_id = $2 AND image_seq > $3",
                    )
                    .bind(scope)
                    .bind(node)
                    .bind(image_seq)
                    .execute(&mut *conn)
                    .await?;
                    position
                }
                None => {
                    sqlx::query_scalar(
                        "SELECT COALESCE(MAX(position) + 1, 0) FROM image_listing WHERE scope = $1 AND node_id = $2",
                    )
                    .bind(scope)
                    .bind(node)
                    .fetch_one(&mut *conn)
                    .await?
                }
            })
        };
        let inserted = sqlx::query(
            "INSERT INTO image_listing (scope, node_id, image_seq, position) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(scope)
        .bind(node)
        .bind(image_seq)
        .bind(position)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        counts.change(scope, node, to_i64(inserted, "row count")?);
    }
    Ok(())
}

/// Holds an account listing's counter row (creating it at zero) until the transaction ends,
/// so that concurrent writers number that listing one after the other.
async fn lock_listing(conn: &mut PgConnection, scope: &str, node: &str) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO listing_counts (scope, node_id, count) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
    )
    .bind(scope)
    .bind(node)
    .execute(&mut *conn)
    .await?;
    sqlx::query("SELECT 1 FROM listing_counts WHERE scope = $1 AND node_id = $2 FOR UPDATE")
        .bind(scope)
        .bind(node)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Removes `image_seq` from every listing of `scope`, counting the rows removed and closing
/// the gaps they leave in the numbering.
async fn remove_from_listings(
    conn: &mut PgConnection,
    counts: &mut CountChanges,
    scope: &str,
    image_seq: i64,
) -> StoreResult<()> {
    let mut nodes: Vec<String> =
        sqlx::query_scalar("SELECT node_id FROM image_listing WHERE scope = $1 AND image_seq = $2")
            .bind(scope)
            .bind(image_seq)
            .fetch_all(&mut *conn)
            .await?;
    nodes.sort_unstable();
    for node in nodes {
        lock_listing(conn, scope, &node).await?;
        let removed: Option<Option<i64>> = sqlx::query_scalar(
            "DELETE FROM image_listing WHERE scope = $1 AND node_id = $2 AND image_seq = $3 RETURNING position",
        )
        .bind(scope)
        .bind(&node)
        .bind(image_seq)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(position) = removed else { continue };
        if let Some(position) = position {
            sqlx::query(
                "UPDATE image_listing SET position = position - 1 WHERE scope = $1 AND node_id = $2 AND position > $3",
            )
            .bind(scope)
            .bind(&node)
            .bind(position)
            .execute(&mut *conn)
            .await?;
        }
        counts.change(scope, &node, -1);
    }
    Ok(())
}

/// Whether each of `claims` won, given the `(key, nonce)` pairs the INSERT returned.
pub(crate) fn claim_outcomes(claims: &[NonceClaim], claimed: &[(String, String)]) -> Vec<bool> {
    let won: std::collections::HashSet<(&str, &str)> = claimed
        .iter()
        .map(|(key, nonce)| (key.as_str(), nonce.as_str()))
        .collect();
    claims
        .iter()
        .map(|claim| won.contains(&(claim.key.as_str(), claim.nonce.as_str())))
        .collect()
}

async fn image_nodes(conn: &mut PgConnection, seq: i64) -> StoreResult<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT node_id FROM image_nodes WHERE image_seq = $1 ORDER BY position")
            .bind(seq)
            .fetch_all(&mut *conn)
            .await?,
    )
}

async fn node_known(conn: &mut PgConnection, node: &str) -> StoreResult<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM nodes WHERE id = $1)")
            .bind(node)
            .fetch_one(&mut *conn)
            .await?,
    )
}

async fn account_known(conn: &mut PgConnection, account: &str) -> StoreResult<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1)")
            .bind(account)
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// Writes one image with its nodes and disks, and lists it if it is `Available`.
async fn insert_image_in(
    conn: &mut PgConnection,
    counts: &mut CountChanges,
    new: &NewImage,
) -> StoreResult<i64> {
    let image = &new.image;
    if image.nodes.is_empty() {
        return Err(StoreError::Invalid(format!(
            "image {} is available on no node",
            image.id
        )));
    }
    let seq: Option<i64> = sqlx::query_scalar(
        "INSERT INTO images (id, name, owner_id, architecture, platform, os_type, size_gib, creation_time, \
         snapshot_id, status, instance_id, compute_type, os_version, description, build_due_at, build_failure, \
         release_instance) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         ON CONFLICT (id) DO NOTHING RETURNING seq",
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
    .fetch_optional(&mut *conn)
    .await?;
    let Some(seq) = seq else {
        return Err(StoreError::Conflict(format!("image {}", image.id)));
    };
    let mut nodes = Vec::with_capacity(image.nodes.len());
    for (position, node) in image.nodes.iter().enumerate() {
        if !node_known(conn, node.as_str()).await? {
            return Err(StoreError::NotFound(format!("node {node}")));
        }
        sqlx::query("INSERT INTO image_nodes (image_seq, position, node_id) VALUES ($1, $2, $3)")
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
             VALUES ($1, $2, $3, $4, $5, $6)",
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
        add_to_listings(conn, counts, scope, seq, &nodes).await?;
    }
    Ok(seq)
}

/// The image row with this ID (no nodes or disks), whoever owns it, locked as asked.
async fn image_by_id(conn: &mut PgConnection, id: &ImageId, lock: Lock) -> StoreResult<Option<(i64, Image)>> {
    let sql = format!(
        "SELECT {IMAGE_COLUMNS} FROM images WHERE id = $1{}",
        lock.clause()
    );
    let row = sqlx::query(&sql)
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(image_from_row).transpose()
}

async fn is_shared_with(conn: &mut PgConnection, seq: i64, account: &AccountId) -> StoreResult<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM image_shares WHERE image_seq = $1 AND account_id = $2)",
    )
    .bind(seq)
    .bind(account.as_str())
    .fetch_one(&mut *conn)
    .await?)
}

/// The image of `owner` with this ID, after the ownership rule. With `Lock::Update` the
/// image row stays locked until the transaction ends, so every rule checked afterwards
/// (shares, instances, status) holds when the transaction commits.
async fn owned_image(
    conn: &mut PgConnection,
    owner: &AccountId,
    id: &ImageId,
    lock: Lock,
) -> StoreResult<(i64, Image)> {
    let Some((seq, image)) = image_by_id(conn, id, lock).await? else {
        return Err(ImageError::NotFound.into());
    };
    let shared = is_shared_with(conn, seq, owner).await?;
    ensure_owner(&image, owner, shared)?;
    Ok((seq, image))
}

/// Loads full images (nodes and disks included) for `seqs`, in that order.
async fn load_images(conn: &mut PgConnection, seqs: &[i64]) -> StoreResult<Vec<Image>> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let mut images: HashMap<i64, Image> = HashMap::with_capacity(seqs.len());
    let sql = format!("SELECT {IMAGE_COLUMNS} FROM images WHERE seq = ANY($1)");
    for row in sqlx::query(&sql).bind(seqs).fetch_all(&mut *conn).await? {
        let (seq, image) = image_from_row(&row)?;
        images.insert(seq, image);
    }
    let rows = sqlx::query(
        "SELECT image_seq, node_id FROM image_nodes WHERE image_seq = ANY($1) ORDER BY image_seq, position",
    )
    .bind(seqs)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let seq: i64 = row.try_get("image_seq")?;
        let node: String = row.try_get("node_id")?;
        if let Some(image) = images.get_mut(&seq) {
            image.nodes.push(node_from(&node)?);
        }
    }
    let rows = sqlx::query(
        "SELECT image_seq, disk_type, size_gib, format, file_id FROM image_disks \
         WHERE image_seq = ANY($1) ORDER BY image_seq, position",
    )
    .bind(seqs)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
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

/// Fails with `NotFound` naming `what` unless the account exists.
async fn require_account(conn: &mut PgConnection, account: &str) -> StoreResult<()> {
    if !account_known(conn, account).await? {
        return Err(StoreError::NotFound(format!("account {account}")));
    }
    Ok(())
}

/// Fails with `NotFound` unless the RAM user exists; locks its row as asked, so a
/// concurrent deletion of the user cannot slip between this check and the write after it.
async fn require_user(
    conn: &mut PgConnection,
    account: &AccountId,
    user: &RamUserName,
    lock: Lock,
) -> StoreResult<()> {
    let sql = format!(
        "SELECT user_id FROM ram_users WHERE account_id = $1 AND name = $2{}",
        lock.clause()
    );
    let found: Option<String> = sqlx::query_scalar(&sql)
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

/// Whether the policy exists, locking its row as asked.
async fn policy_exists(
    conn: &mut PgConnection,
    account: &AccountId,
    name: &str,
    lock: Lock,
) -> StoreResult<bool> {
    let sql = format!(
        "SELECT name FROM policies WHERE account_id = $1 AND name = $2{}",
        lock.clause()
    );
    let found: Option<String> = sqlx::query_scalar(&sql)
        .bind(account.as_str())
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(found.is_some())
}

async fn insert_account(
    conn: &mut PgConnection,
    account: &AccountId,
    now: OffsetDateTime,
) -> StoreResult<()> {
    let created = sqlx::query("INSERT INTO accounts (id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(account.as_str())
        .bind(format_time(now)?)
        .execute(&mut *conn)
        .await?;
    if created.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("account {account}")));
    }
    Ok(())
}

async fn insert_key(
    conn: &mut PgConnection,
    principal: &Principal,
    key: &AccessKeyId,
    secret: &str,
    now: OffsetDateTime,
) -> StoreResult<()> {
    let created = sqlx::query(
        "INSERT INTO access_keys (id, account_id, user_name, secret, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
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

async fn listing_count(conn: &mut PgConnection, scope: &str, node: &str) -> StoreResult<u64> {
    let count: Option<i64> =
        sqlx::query_scalar("SELECT count FROM listing_counts WHERE scope = $1 AND node_id = $2")
            .bind(scope)
            .bind(node)
            .fetch_optional(&mut *conn)
            .await?;
    to_u64(count.unwrap_or(0), "listing count")
}

async fn listing_page(
    conn: &mut PgConnection,
    scope: &str,
    node: &str,
    offset: u64,
    limit: u64,
) -> StoreResult<Vec<i64>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    // Every listing is numbered densely, so any page is one index seek.
    let sql = "SELECT image_seq FROM image_listing WHERE scope = $1 AND node_id = $2 AND position >= $4 \
               ORDER BY position LIMIT $3";
    Ok(sqlx::query_scalar(sql)
        .bind(scope)
        .bind(node)
        .bind(to_i64(limit, "limit")?)
        .bind(to_i64(offset, "offset")?)
        .fetch_all(&mut *conn)
        .await?)
}

/// Listing path: no filter but (maybe) the node; cost is independent of catalog size.
async fn page_from_listings(
    conn: &mut PgConnection,
    query: &ImageQuery,
    node: &str,
) -> StoreResult<(Vec<i64>, u64)> {
    let viewer = query.viewer.as_str();
    let system_total = listing_count(conn, SYSTEM_SCOPE, node).await?;
    let own_total = listing_count(conn, viewer, node).await?;
    let (offset, limit) = (query.page.offset(), query.page.limit());
    let mut seqs = Vec::new();
    if offset < system_total {
        seqs = listing_page(conn, SYSTEM_SCOPE, node, offset, limit).await?;
        let remaining = limit.saturating_sub(seqs.len() as u64);
        seqs.extend(listing_page(conn, viewer, node, 0, remaining).await?);
    } else if offset - system_total < own_total {
        seqs = listing_page(conn, viewer, node, offset - system_total, limit).await?;
    }
    Ok((seqs, system_total + own_total))
}

/// SQL conditions with their text parameters, numbered `$1`, `$2`, ... as they are added.
struct Conditions<'a> {
    clauses: Vec<String>,
    values: Vec<&'a str>,
}

impl<'a> Conditions<'a> {
    /// Starts with `first`, whose SQL may use `$1` (any number of times) for `value`.
    fn new(first: &str, value: &'a str) -> Self {
        Self {
            clauses: vec![first.to_owned()],
            values: vec![value],
        }
    }

    /// Adds a clause without parameters.
    fn push(&mut self, clause: &str) {
        self.clauses.push(clause.to_owned());
    }

    /// Adds the clause `make(placeholder)` whose placeholder stands for `value`.
    fn push_with(&mut self, value: &'a str, make: impl FnOnce(&str) -> String) {
        self.values.push(value);
        let placeholder = format!("${}", self.values.len());
        self.clauses.push(make(&placeholder));
    }
}

/// Filter path: an exact ID, name or snapshot narrows the candidates through an index,
/// so the cost grows with the matches, not with the catalog.
async fn page_from_filters(conn: &mut PgConnection, query: &ImageQuery) -> StoreResult<(Vec<i64>, u64)> {
    let mut conditions = Conditions::new(
        "(i.owner_id IS NULL OR i.owner_id = $1 OR EXISTS (SELECT 1 FROM image_shares s \
         WHERE s.image_seq = i.seq AND s.account_id = $1))",
        query.viewer.as_str(),
    );
    conditions.push("i.status = 'Available'");
    if let Some(id) = &query.image_id {
        conditions.push_with(id.as_str(), |p| format!("i.id = {p}"));
    }
    if let Some(name) = &query.image_name {
        conditions.push_with(name, |p| format!("i.name = {p}"));
    }
    if let Some(snapshot) = &query.snapshot_id {
        conditions.push_with(snapshot, |p| format!("i.snapshot_id = {p}"));
    }
    if let Some(node) = &query.node {
        conditions.push_with(node.as_str(), |p| {
            format!("EXISTS (SELECT 1 FROM image_nodes n WHERE n.image_seq = i.seq AND n.node_id = {p})")
        });
    }
    paged_seqs(conn, &conditions, "(i.owner_id IS NOT NULL), i.seq", query.page).await
}

/// Runs `SELECT COUNT(*)` and one page of `SELECT i.seq ... ORDER BY {order}` over
/// `images i` filtered by `conditions`.
async fn paged_seqs(
    conn: &mut PgConnection,
    conditions: &Conditions<'_>,
    order: &str,
    page: PageRequest,
) -> StoreResult<(Vec<i64>, u64)> {
    let from = format!("FROM images i WHERE {}", conditions.clauses.join(" AND "));
    let count_sql = format!("SELECT COUNT(*) {from}");
    let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
    for value in &conditions.values {
        count = count.bind(*value);
    }
    let total = count.fetch_one(&mut *conn).await?;
    let next = conditions.values.len() + 1;
    let page_sql = format!(
        "SELECT i.seq {from} ORDER BY {order} LIMIT ${next} OFFSET ${}",
        next + 1
    );
    let mut rows = sqlx::query_scalar::<_, i64>(&page_sql);
    for value in &conditions.values {
        rows = rows.bind(*value);
    }
    let seqs = rows
        .bind(to_i64(page.limit(), "limit")?)
        .bind(to_i64(page.offset(), "offset")?)
        .fetch_all(&mut *conn)
        .await?;
    Ok((seqs, to_u64(total, "count")?))
}

impl PostgresStore {
    async fn create_image_once(&self, new: &NewImage) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let mut counts = CountChanges::default();
        insert_image_in(&mut tx, &mut counts, new).await?;
        // Born Available: the upload is already over, so release the build instance now.
        if let (ImageStatus::Available, Some(instance)) = (new.image.status, &new.release_instance) {
            sqlx::query("DELETE FROM instances WHERE id = $1")
                .bind(instance)
                .execute(&mut *tx)
                .await?;
        }
        counts.apply(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn advance_image_builds_once(&self, now: OffsetDateTime, step: Duration) -> StoreResult<u64> {
        let now_ms = millis(now)?;
        let next_due = millis(now + step)?;
        let mut tx = self.begin_write().await?;
        let mut counts = CountChanges::default();
        // Rows another replica is advancing right now are skipped, not waited for: that
        // replica moves them, and they are no longer due once it commits.
        let due = sqlx::query(
            "SELECT seq, owner_id, status, build_failure, release_instance FROM images \
             WHERE build_due_at IS NOT NULL AND build_due_at <= $1 ORDER BY build_due_at, seq LIMIT 500 \
             FOR UPDATE SKIP LOCKED",
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
                sqlx::query("UPDATE images SET build_due_at = NULL WHERE seq = $1")
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                continue;
            };
            let due_at = next.is_building().then_some(next_due);
            let changed = sqlx::query(
                "UPDATE images SET status = $1, build_due_at = $2 WHERE seq = $3 AND status = $4",
            )
            .bind(next.as_str())
            .bind(due_at)
            .bind(seq)
            .bind(status.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 0 {
                // Another writer changed the status since it was read: not ours to move.
                continue;
            }
            if next == ImageStatus::Available {
                let owner: Option<String> = row.try_get("owner_id")?;
                let nodes = image_nodes(&mut tx, seq).await?;
                add_to_listings(
                    &mut tx,
                    &mut counts,
                    owner.as_deref().unwrap_or(SYSTEM_SCOPE),
                    seq,
                    &nodes,
                )
                .await?;
                let release: Option<String> = row.try_get("release_instance")?;
                if let Some(instance) = release {
                    sqlx::query("DELETE FROM instances WHERE id = $1")
                        .bind(instance)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            moved += 1;
        }
        counts.apply(&mut tx).await?;
        tx.commit().await?;
        Ok(moved)
    }

    async fn modify_image_shares_once(
        &self,
        owner: &AccountId,
        id: &ImageId,
        add: &[AccountId],
        remove: &[AccountId],
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let mut counts = CountChanges::default();
        let (seq, image) = owned_image(&mut tx, owner, id, Lock::Update).await?;
        for account in add {
            if !account_known(&mut tx, account.as_str()).await? {
                return Err(ImageError::UnknownAccount(account.clone()).into());
            }
        }
        for account in remove {
            let removed = sqlx::query("DELETE FROM image_shares WHERE image_seq = $1 AND account_id = $2")
                .bind(seq)
                .bind(account.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if removed > 0 {
                remove_from_listings(&mut tx, &mut counts, account.as_str(), seq).await?;
            }
        }
        if !add.is_empty() {
            let current: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM image_shares WHERE image_seq = $1")
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
                    "INSERT INTO image_shares (image_seq, account_id, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(seq)
                .bind(account.as_str())
                .bind(&created)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted > 0 {
                    add_to_listings(&mut tx, &mut counts, account.as_str(), seq, &nodes).await?;
                }
            }
        }
        counts.apply(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn install_catalog_once(
        &self,
        nodes: &[NodeId],
        images: &[Image],
        replace_existing: bool,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        // Replicas starting together may all try to load the catalog: one at a time, and
        // each later one sees (every statement below takes a fresh snapshot) what the
        // earlier ones committed.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CATALOG_LOCK)
            .execute(&mut *tx)
            .await?;
        if !replace_existing {
            let loaded: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM store_metadata WHERE name = 'catalog_loaded')",
            )
            .fetch_one(&mut *tx)
            .await?;
            if loaded {
                return Ok(false);
            }
        }
        let mut counts = CountChanges::default();
        sqlx::query("DELETE FROM images WHERE owner_id IS NULL")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM listing_counts WHERE scope = $1")
            .bind(SYSTEM_SCOPE)
            .execute(&mut *tx)
            .await?;
        for node in nodes {
            sqlx::query("INSERT INTO nodes (id) VALUES ($1) ON CONFLICT DO NOTHING")
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
            insert_image_in(&mut tx, &mut counts, &public).await?;
        }
        sqlx::query(NUMBER_PUBLIC_LISTING).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO store_metadata (name, value) VALUES ('catalog_loaded', $1) \
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(images.len().to_string())
        .execute(&mut *tx)
        .await?;
        counts.apply(&mut tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_ram_user_once(
        &self,
        account: &AccountId,
        name: &RamUserName,
        now: OffsetDateTime,
    ) -> StoreResult<RamUser> {
        let mut tx = self.begin_write().await?;
        require_account(&mut tx, account.as_str()).await?;
        let user_id: String = {
            let mut rng = rand::thread_rng();
            std::iter::once(char::from(b'2' + rng.gen_range(0..8u8)))
                .chain((0..15).map(|_| char::from(b'0' + rng.gen_range(0..10u8))))
                .collect()
        };
        let inserted = sqlx::query(
            "INSERT INTO ram_users (account_id, name, user_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
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

    async fn add_instance_once(&self, instance: &Instance) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        require_account(&mut tx, instance.owner.as_str()).await?;
        if !node_known(&mut tx, instance.node.as_str()).await? {
            return Err(StoreError::NotFound(format!("node {}", instance.node)));
        }
        if let Some(image) = &instance.image_id {
            // Held until commit: a concurrent delete of the image waits and then sees this
            // instance (or, if it went first, this instance names a deleted image, as it
            // would have on SQLite).
            image_by_id(&mut tx, image, Lock::Share).await?;
        }
        let disks = instance
            .data_disks_gib
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let inserted = sqlx::query(
            "INSERT INTO instances (id, owner_id, node_id, image_id, platform, os_type, os_version, architecture, \
             compute_type, system_disk_gib, data_disks_gib, build_failure) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
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

    async fn add_snapshot_once(&self, snapshot: &Snapshot) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        require_account(&mut tx, snapshot.owner.as_str()).await?;
        if !node_known(&mut tx, snapshot.node.as_str()).await? {
            return Err(StoreError::NotFound(format!("node {}", snapshot.node)));
        }
        let inserted = sqlx::query(
            "INSERT INTO snapshots (id, owner_id, node_id, instance_id, platform, os_type, os_version, \
             architecture, size_gib, build_failure) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT DO NOTHING",
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
}

#[async_trait]
impl Store for PostgresStore {
    fn pool_stats(&self) -> Option<crate::PoolStats> {
        Some(crate::PoolStats {
            size: self.pool.size(),
            idle: self.pool.num_idle(),
        })
    }

    async fn heartbeat(&self, replica: &str, now: OffsetDateTime, window: Duration) -> StoreResult<u32> {
        let now_ms = millis(now)?;
        let since = millis(now - window)?;
        retrying(move || async move {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO replica_heartbeats (replica, last_seen) VALUES ($1, $2) \
                 ON CONFLICT (replica) DO UPDATE \
                 SET last_seen = GREATEST(replica_heartbeats.last_seen, EXCLUDED.last_seen)",
            )
            .bind(replica)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            // Replicas silent for a whole window are gone (a restarted server announces
            // itself under a new name); forgetting them keeps the table small.
            sqlx::query("DELETE FROM replica_heartbeats WHERE last_seen < $1")
                .bind(since)
                .execute(&mut *tx)
                .await?;
            let live: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM replica_heartbeats WHERE last_seen >= $1")
                    .bind(since)
                    .fetch_one(&mut *tx)
                    .await?;
            tx.commit().await?;
            u32::try_from(live.max(1)).map_err(|_| corrupt(format!("replica count {live}")))
        })
        .await
    }

    async fn bootstrap_owner(
        &self,
        account: &AccountId,
        key: &AccessKeyId,
        secret: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        retrying(move || async move {
            let mut tx = self.begin_write().await?;
            // Replicas starting together bootstrap one at a time; each later one sees the
            // owner the first one committed.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(BOOTSTRAP_LOCK)
                .execute(&mut *tx)
                .await?;
            let existing: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM accounts)")
                .fetch_one(&mut *tx)
                .await?;
            if existing {
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
        })
        .await
    }

    async fn access_key(&self, id: &AccessKeyId) -> StoreResult<Option<StoredAccessKey>> {
        let row = sqlx::query("SELECT account_id, user_name, secret, status FROM access_keys WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let status: String = row.try_get("status")?;
        Ok(Some(StoredAccessKey {
            id: id.clone(),
            principal: principal_from(&row)?,
            secret: row.try_get("secret")?,
            status: AccessKeyStatus::from_stored(&status),
        }))
    }

    async fn claim_nonces(&self, claims: &[NonceClaim], now: OffsetDateTime) -> StoreResult<Vec<bool>> {
        let mut won = Vec::with_capacity(claims.len());
        for chunk in claims.chunks(NONCE_CLAIMS_PER_STATEMENT) {
            let keys: Vec<&str> = chunk.iter().map(|claim| claim.key.as_str()).collect();
            let nonces: Vec<&str> = chunk.iter().map(|claim| claim.nonce.as_str()).collect();
            let expiries: Vec<i64> = chunk
                .iter()
                .map(|claim| claim.expires_at.unix_timestamp())
                .collect();
            // One statement per chunk: a concurrent claim of the same nonce on another
            // replica waits for this one and then finds a live row. An expired row is taken
            // over; a live one means replay. RETURNING names the claims that won.
            let claimed = retrying(|| {
                let (keys, nonces, expiries) = (&keys, &nonces, &expiries);
                async move {
                    Ok(sqlx::query_as::<_, (String, String)>(
                        "INSERT INTO signature_nonces (access_key_id, nonce, expires_at) \
                         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[]) \
                         ON CONFLICT (access_key_id, nonce) DO UPDATE SET expires_at = EXCLUDED.expires_at \
                         WHERE signature_nonces.expires_at <= $4 RETURNING access_key_id, nonce",
                    )
                    .bind(keys)
                    .bind(nonces)
                    .bind(expiries)
                    .bind(now.unix_timestamp())
                    .fetch_all(&self.pool)
                    .await?)
                }
            })
            .await?;
            won.extend(claim_outcomes(chunk, &claimed));
        }
        Ok(won)
    }

    async fn prune_nonces(&self, now: OffsetDateTime) -> StoreResult<u64> {
        retrying(move || async move {
            Ok(sqlx::query("DELETE FROM signature_nonces WHERE expires_at <= $1")
                .bind(now.unix_timestamp())
                .execute(&self.pool)
                .await?
                .rows_affected())
        })
        .await
    }

    async fn has_accounts(&self) -> StoreResult<bool> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM accounts)")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn create_account_with_key(
        &self,
        account: &AccountId,
        key: &AccessKeyId,
        secret: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        retrying(move || async move {
            let mut tx = self.begin_write().await?;
            insert_account(&mut tx, account, now).await?;
            let owner = Principal {
                account: account.clone(),
                user: None,
            };
            insert_key(&mut tx, &owner, key, secret, now).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn create_account(&self, account: &AccountId, now: OffsetDateTime) -> StoreResult<()> {
        retrying(move || async move {
            let mut tx = self.begin_write().await?;
            insert_account(&mut tx, account, now).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn create_access_key(
        &self,
        principal: &Principal,
        key: &AccessKeyId,
        secret: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        retrying(move || async move {
            let mut tx = self.begin_write().await?;
            require_account(&mut tx, principal.account.as_str()).await?;
            if let Some(user) = &principal.user {
                require_user(&mut tx, &principal.account, user, Lock::Share).await?;
            }
            insert_key(&mut tx, principal, key, secret, now).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn set_access_key_status(&self, key: &AccessKeyId, status: AccessKeyStatus) -> StoreResult<()> {
        let changed = sqlx::query("UPDATE access_keys SET status = $1 WHERE id = $2")
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
        let deleted = sqlx::query("DELETE FROM access_keys WHERE id = $1")
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
        sqlx::query("UPDATE access_keys SET secret = $1 WHERE id = $2")
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
             WHERE $1::text IS NULL OR account_id = $1 ORDER BY created_at, id",
        )
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

    async fn create_ram_user(
        &self,
        account: &AccountId,
        name: &RamUserName,
        now: OffsetDateTime,
    ) -> StoreResult<RamUser> {
        retrying(move || self.create_ram_user_once(account, name, now)).await
    }

    async fn delete_ram_user(&self, account: &AccountId, name: &RamUserName) -> StoreResult<()> {
        retrying(move || async move {
            let mut tx = self.begin_write().await?;
            require_user(&mut tx, account, name, Lock::Update).await?;
            sqlx::query("DELETE FROM access_keys WHERE account_id = $1 AND user_name = $2")
                .bind(account.as_str())
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM ram_users WHERE account_id = $1 AND name = $2")
                .bind(account.as_str())
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn ram_users(&self, account: Option<&AccountId>) -> StoreResult<Vec<RamUser>> {
        let rows = sqlx::query(
            "SELECT account_id, name, user_id, created_at FROM ram_users WHERE $1::text IS NULL OR account_id = $1 \
             ORDER BY account_id, name",
        )
        .bind(account.map(AccountId::as_str))
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
        retrying(move || async move {
            let mut tx = self.begin_write().await?;
            require_account(&mut tx, account.as_str()).await?;
            let inserted = sqlx::query(
                "INSERT INTO policies (account_id, name, document, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
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
        })
        .await
    }

    async fn delete_policy(&self, account: &AccountId, name: &str) -> StoreResult<()> {
        retrying(move || async move {
            let mut tx = self.begin_write().await?;
            // Locked first: an attachment made concurrently either commits before this
            // count (and is seen) or waits and then finds the policy gone.
            policy_exists(&mut tx, account, name, Lock::Update).await?;
            let attached: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM policy_attachments WHERE account_id = $1 AND policy_name = $2",
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
            let deleted = sqlx::query("DELETE FROM policies WHERE account_id = $1 AND name = $2")
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
        })
        .await
    }

    async fn policies(&self, account: Option<&AccountId>) -> StoreResult<Vec<StoredPolicy>> {
        let mut tx = self.begin_read().await?;
        let rows = sqlx::query(
            "SELECT account_id, name, document, created_at FROM policies WHERE $1::text IS NULL OR account_id = $1 \
             ORDER BY account_id, name",
        )
        .bind(account.map(AccountId::as_str))
        .fetch_all(&mut *tx)
        .await?;
        let attachments = sqlx::query(
            "SELECT account_id, user_name, policy_name FROM policy_attachments ORDER BY user_name",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
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
                        attached_to.push(user_from(&user)?);
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
        retrying(move || async move {
            let mut tx = self.begin_write().await?;
            require_user(&mut tx, account, user, Lock::Share).await?;
            if !policy_exists(&mut tx, account, policy, Lock::Share).await? {
                return Err(StoreError::NotFound(format!("policy {policy}")));
            }
            sqlx::query(
                "INSERT INTO policy_attachments (account_id, user_name, policy_name) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(account.as_str())
            .bind(user.as_str())
            .bind(policy)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn detach_policy(&self, account: &AccountId, user: &RamUserName, policy: &str) -> StoreResult<()> {
        let deleted = sqlx::query(
            "DELETE FROM policy_attachments WHERE account_id = $1 AND user_name = $2 AND policy_name = $3",
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
        Ok(sqlx::query_scalar(
            "SELECT p.document FROM policy_attachments a JOIN policies p \
             ON p.account_id = a.account_id AND p.name = a.policy_name \
             WHERE a.account_id = $1 AND a.user_name = $2 ORDER BY p.name",
        )
        .bind(account.as_str())
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await?)
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
        let since = filter.since.map(audit_time).transpose()?;
        let rows = sqlx::query(
            "SELECT at, request_id, account_id, user_name, access_key_id, action, resource, source_ip, outcome \
             FROM audit_log WHERE ($1::text IS NULL OR account_id = $1) AND ($2::text IS NULL OR action = $2) \
             AND ($3::text IS NULL OR outcome = $3) AND ($4::text IS NULL OR at >= $4) ORDER BY seq DESC LIMIT $5",
        )
        .bind(filter.account.as_ref().map(AccountId::as_str))
        .bind(filter.action.as_deref())
        .bind(filter.outcome.as_deref())
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
                    user: user.as_deref().map(user_from).transpose()?,
                    access_key_id: row.try_get("access_key_id")?,
                    action: row.try_get("action")?,
                    resource: row.try_get("resource")?,
                    source_ip: row.try_get("source_ip")?,
                    outcome: row.try_get("outcome")?,
                })
            })
            .collect()
    }

    async fn has_catalog(&self) -> StoreResult<bool> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM store_metadata WHERE name = 'catalog_loaded')")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn replace_catalog(&self, nodes: &[NodeId], images: &[Image]) -> StoreResult<()> {
        retrying(move || self.install_catalog_once(nodes, images, true)).await?;
        Ok(())
    }

    async fn install_catalog(
        &self,
        nodes: &[NodeId],
        images: &[Image],
        replace_existing: bool,
    ) -> StoreResult<bool> {
        retrying(move || self.install_catalog_once(nodes, images, replace_existing)).await
    }

    async fn nodes(&self) -> StoreResult<Vec<NodeId>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM nodes ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        ids.iter().map(|id| node_from(id)).collect()
    }

    async fn node_exists(&self, node: &NodeId) -> StoreResult<bool> {
        let mut conn = self.pool.acquire().await?;
        node_known(&mut conn, node.as_str()).await
    }

    async fn add_instance(&self, instance: &Instance) -> StoreResult<()> {
        retrying(move || self.add_instance_once(instance)).await
    }

    async fn add_snapshot(&self, snapshot: &Snapshot) -> StoreResult<()> {
        retrying(move || self.add_snapshot_once(snapshot)).await
    }

    async fn instance(&self, id: &str) -> StoreResult<Option<Instance>> {
        let row = sqlx::query("SELECT * FROM instances WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(instance_from_row).transpose()
    }

    async fn snapshot(&self, id: &str) -> StoreResult<Option<Snapshot>> {
        let row = sqlx::query("SELECT * FROM snapshots WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(snapshot_from_row).transpose()
    }

    async fn sources(&self) -> StoreResult<(Vec<Instance>, Vec<Snapshot>)> {
        let mut tx = self.begin_read().await?;
        let instances = sqlx::query("SELECT * FROM instances ORDER BY id")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(instance_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let snapshots = sqlx::query("SELECT * FROM snapshots ORDER BY id")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(snapshot_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        tx.commit().await?;
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
            let candidate = &new;
            match retrying(move || self.create_image_once(candidate)).await {
                Ok(()) => return Ok(new.image),
                Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(error),
            }
        }
        Err(StoreError::Conflict("fresh image ID".into()))
    }

    async fn advance_image_builds(&self, now: OffsetDateTime, step: Duration) -> StoreResult<u64> {
        retrying(move || self.advance_image_builds_once(now, step)).await
    }

    async fn visible_image(&self, viewer: &AccountId, id: &ImageId) -> StoreResult<Option<ImageView>> {
        let mut tx = self.begin_read().await?;
        let Some((seq, image)) = image_by_id(&mut tx, id, Lock::None).await? else {
            return Ok(None);
        };
        let visible = match &image.owner {
            None => true,
            Some(owner) if owner == viewer => true,
            Some(_) => is_shared_with(&mut tx, seq, viewer).await?,
        };
        if !visible {
            return Ok(None);
        }
        let images = load_images(&mut tx, &[seq]).await?;
        tx.commit().await?;
        Ok(views(images, viewer, None).pop())
    }

    async fn rename_image(&self, owner: &AccountId, id: &ImageId, name: &str) -> StoreResult<()> {
        retrying(move || async move {
            let mut tx = self.begin_write().await?;
            let (seq, _) = owned_image(&mut tx, owner, id, Lock::Update).await?;
            sqlx::query("UPDATE images SET name = $1 WHERE seq = $2")
                .bind(name)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn delete_image(&self, owner: &AccountId, id: &ImageId) -> StoreResult<()> {
        retrying(move || async move {
            let mut tx = self.begin_write().await?;
            let mut counts = CountChanges::default();
            // The lock makes concurrent shares, renames and instance registrations of this
            // image wait; each statement below then sees what they committed.
            let (seq, image) = owned_image(&mut tx, owner, id, Lock::Update).await?;
            let shares: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM image_shares WHERE image_seq = $1")
                .bind(seq)
                .fetch_one(&mut *tx)
                .await?;
            let used_by: Option<String> =
                sqlx::query_scalar("SELECT id FROM instances WHERE image_id = $1 ORDER BY seq LIMIT 1")
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            ensure_deletable(&image, to_u64(shares, "share count")?, used_by.as_deref())?;
            remove_from_listings(&mut tx, &mut counts, owner.as_str(), seq).await?;
            sqlx::query("DELETE FROM images WHERE seq = $1")
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            counts.apply(&mut tx).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn modify_image_shares(
        &self,
        owner: &AccountId,
        id: &ImageId,
        add: &[AccountId],
        remove: &[AccountId],
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        retrying(move || self.modify_image_shares_once(owner, id, add, remove, now)).await
    }

    async fn image_shares(
        &self,
        owner: &AccountId,
        id: &ImageId,
        account: Option<&AccountId>,
        page: PageRequest,
    ) -> StoreResult<Page<ImageShare>> {
        let mut tx = self.begin_read().await?;
        let (seq, _) = owned_image(&mut tx, owner, id, Lock::None).await?;
        let filter = account.map(AccountId::as_str);
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM image_shares WHERE image_seq = $1 AND ($2::text IS NULL OR account_id = $2)",
        )
        .bind(seq)
        .bind(filter)
        .fetch_one(&mut *tx)
        .await?;
        let rows = sqlx::query(
            "SELECT account_id, created_at FROM image_shares \
             WHERE image_seq = $1 AND ($2::text IS NULL OR account_id = $2) \
             ORDER BY created_at, account_id LIMIT $3 OFFSET $4",
        )
        .bind(seq)
        .bind(filter)
        .bind(to_i64(page.limit(), "limit")?)
        .bind(to_i64(page.offset(), "offset")?)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
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
        let mut conditions = Conditions::new(
            "i.seq IN (SELECT seq FROM images WHERE owner_id = $1 \
             UNION ALL SELECT image_seq FROM image_shares WHERE account_id = $1)",
            query.viewer.as_str(),
        );
        // strpos, not LIKE: `%` and `_` in the filter are literal. The "C" collation folds
        // ASCII only, as SQLite's lower() does.
        if let Some(id) = &query.image_id_contains {
            conditions.push_with(id, |p| {
                format!("strpos(lower(i.id), lower({p}::text COLLATE \"C\")) > 0")
            });
        }
        if let Some(name) = &query.image_name_contains {
            conditions.push_with(name, |p| {
                format!("strpos(lower(i.name), lower({p}::text COLLATE \"C\")) > 0")
            });
        }
        if let Some(snapshot) = &query.snapshot_id {
            conditions.push_with(snapshot, |p| format!("i.snapshot_id = {p}"));
        }
        let mut tx = self.begin_read().await?;
        let (seqs, total_count) = paged_seqs(&mut tx, &conditions, "i.seq", query.page).await?;
        let images = load_images(&mut tx, &seqs).await?;
        tx.commit().await?;
        Ok(Page {
            items: views(images, &query.viewer, None),
            total_count,
            request: query.page,
        })
    }

    async fn public_images(&self, os_type: Option<&str>) -> StoreResult<Vec<Image>> {
        let mut tx = self.begin_read().await?;
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM images WHERE owner_id IS NULL \
             AND ($1::text IS NULL OR lower(os_type) = lower($1::text COLLATE \"C\")) ORDER BY seq",
        )
        .bind(os_type)
        .fetch_all(&mut *tx)
        .await?;
        let images = load_images(&mut tx, &seqs).await?;
        tx.commit().await?;
        Ok(images)
    }

    async fn describe_images(&self, query: &ImageQuery) -> StoreResult<Page<ImageView>> {
        let mut tx = self.begin_read().await?;
        let filtered = query.image_id.is_some() || query.image_name.is_some() || query.snapshot_id.is_some();
        let (seqs, total_count) = if filtered {
            page_from_filters(&mut tx, query).await?
        } else {
            let node = query.node.as_ref().map_or(ALL_NODES, NodeId::as_str);
            page_from_listings(&mut tx, query, node).await?
        };
        let images = load_images(&mut tx, &seqs).await?;
        tx.commit().await?;
        Ok(Page {
            items: views(images, &query.viewer, query.node.as_ref()),
            total_count,
            request: query.page,
        })
    }

    async fn generate_catalog(&self, spec: &crate::GenerateSpec) -> StoreResult<crate::GeneratedCatalog> {
        crate::generate::postgres(&self.pool, spec).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use sqlx::{Connection, PgConnection};

    use super::{redact_database_url, redact_secrets, retrying};
    use crate::StoreError;

    /// An error with this SQLSTATE, raised by a real server.
    async fn raised(connection: &mut PgConnection, sqlstate: &str) -> StoreError {
        let sql = format!("DO $$ BEGIN RAISE EXCEPTION 'test' USING ERRCODE = '{sqlstate}'; END $$");
        sqlx::query(&sql)
            .execute(&mut *connection)
            .await
            .unwrap_err()
            .into()
    }

    #[tokio::test]
    async fn sqlstates_are_classified_and_conflicts_are_retried() {
        let url = std::env::var("ENS_IMAGES_TEST_DATABASE_URL").unwrap_or_default();
        let connected =
            tokio::time::timeout(std::time::Duration::from_secs(5), PgConnection::connect(&url)).await;
        let Ok(Ok(mut connection)) = connected else {
            println!("skipped: PostgreSQL not reachable (set ENS_IMAGES_TEST_DATABASE_URL)");
            return;
        };
        for transient in [
            "08006", "08001", "57P01", "57P02", "57P03", "53300", "40001", "40P01",
        ] {
            let error = raised(&mut connection, transient).await;
            assert!(
                matches!(error, StoreError::Unavailable(_)),
                "{transient}: {error:?}"
            );
        }
        for permanent in ["23505", "42P01", "53100"] {
            let error = raised(&mut connection, permanent).await;
            assert!(matches!(error, StoreError::Database(_)), "{permanent}: {error:?}");
            assert!(!error.is_retryable_conflict());
        }
        assert!(raised(&mut connection, "40001").await.is_retryable_conflict());
        assert!(raised(&mut connection, "40P01").await.is_retryable_conflict());
        assert!(!raised(&mut connection, "57P01").await.is_retryable_conflict());

        // Two conflicts, then success: the caller sees the success.
        let attempts = AtomicU32::new(0);
        let connection = tokio::sync::Mutex::new(connection);
        let result = retrying(|| async {
            let mut connection = connection.lock().await;
            if attempts.fetch_add(1, Ordering::SeqCst) < 2 {
                return Err(raised(&mut connection, "40P01").await);
            }
            Ok("done")
        })
        .await;
        assert_eq!(result.unwrap(), "done");
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        // A conflict that persists surfaces after a bounded number of attempts.
        attempts.store(0, Ordering::SeqCst);
        let result: Result<(), _> = retrying(|| async {
            attempts.fetch_add(1, Ordering::SeqCst);
            Err(raised(&mut *connection.lock().await, "40001").await)
        })
        .await;
        assert!(matches!(result, Err(StoreError::Unavailable(_))));
        assert_eq!(attempts.load(Ordering::SeqCst), super::CONFLICT_RETRIES + 1);
    }

    #[test]
    fn passwords_never_reach_messages() {
        let url = "postgres://ens:s%40cret@db.internal:5432/ens?sslmode=require&password=other";
        assert_eq!(
            redact_database_url(url),
            "postgres://ens:***@db.internal:5432/ens?sslmode=require&password=***"
        );
        assert_eq!(
            redact_secrets("login as ens with s@cret or s%40cret or other failed", url),
            "login as ens with *** or *** or *** failed"
        );
        assert_eq!(
            redact_database_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact_database_url("not a url"), "not a url");
    }
}
