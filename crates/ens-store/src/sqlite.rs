//! The embedded default engine: one SQLite database file in WAL mode, and the used
//! SignatureNonces in a file of their own beside it.
//!
//! Durability: WAL with `synchronous = NORMAL` keeps every committed transaction through a
//! crash or kill of the process; a power loss may roll back the last transactions. One
//! process serves a store file at a time (the admin command may work beside it); several
//! servers must share PostgreSQL.
//!
//! Statements run inline on the caller's thread: an SQLite statement through an index takes
//! microseconds, less than handing it to a worker thread and back. Reads use their own
//! connections from a small idle list and run beside the writer (WAL). Writes queue for the
//! one write connection asynchronously, and hold SQLite's write lock from their first
//! statement (`BEGIN IMMEDIATE`), so the rules checked inside see the state they commit on.
//! Another process holding the write lock (an admin command) makes a writer wait on its
//! thread, for at most the busy timeout.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::backup::Backup;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::ConnectOptions;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::engine::{Access, Dialect, Engine, PageCopy, Param, Row, Session, Value};
use crate::{PoolStats, Store, StoreError, StoreResult};

/// Idle read connections kept for reuse; more are opened when more threads read at once.
const MAX_IDLE_READERS: usize = 16;
/// How much of the database file each read connection maps.
const READ_MMAP_BYTES: i64 = 1 << 30;
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;
/// How long a statement waits for a lock another process holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The nonce file's schema. It lives outside the migrations: the file holds nothing else,
/// and losing it only forgets which nonces were used. Keys are 64-bit digests (see
/// [`crate::access`]): random keys of 8 bytes keep the tree small.
///
/// `nonce_log` holds the claims the server decided in memory, appended in claim order: each
/// write adds to the end of one tree, where a write to `used_nonces` lands anywhere in two
/// (about five times the cost per claim). It is read whole only when the server loads its
/// index, and folded into `used_nonces` when a start leaves the record to decide claims.
const NONCE_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS used_nonces (
    digest      INTEGER PRIMARY KEY,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS used_nonces_by_expiry ON used_nonces (expires_at);
CREATE TABLE IF NOT EXISTS nonce_log (
    digest      INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);";

/// The SQLite engine behind a [`Store`].
pub struct SqliteEngine {
    path: PathBuf,
    nonce_path: PathBuf,
    /// The one write connection; writers queue for it.
    writer: Arc<AsyncMutex<Connection>>,
    /// The nonce file's connection.
    nonces: Arc<AsyncMutex<Connection>>,
    readers: Arc<Readers>,
    /// Whether the nonce file was missing or damaged at open and replaced by an empty one.
    nonce_history_lost: bool,
    /// Holds a temporary store's directory until the engine drops.
    _scratch: Option<tempfile::TempDir>,
}

/// Idle read connections, and how many are open.
struct Readers {
    idle: Mutex<Vec<Connection>>,
    open: AtomicU32,
}

/// Sorts an SQLite failure: a lock held past the busy timeout is worth retrying later.
fn classify(error: rusqlite::Error) -> StoreError {
    let code = match &error {
        rusqlite::Error::SqliteFailure(failure, _) => Some(failure.code),
        _ => None,
    };
    match code {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(Box::new(error))
        }
        Some(rusqlite::ErrorCode::DiskFull) => StoreError::Full(Box::new(error)),
        _ => StoreError::Database(Box::new(error)),
    }
}

/// Where the store at `path` keeps used SignatureNonces: `NAME.nonces.db` beside it. Every
/// signed request records one; in the main file each of those commits would make every
/// reader drop its page cache and queue behind image writes.
fn nonce_file(path: &Path) -> PathBuf {
    let mut name = path.file_stem().map(OsString::from).unwrap_or_default();
    name.push(".nonces.db");
    path.with_file_name(name)
}

/// The mark beside the nonce file saying its record is incomplete: while it exists, some
/// accepted nonces may be missing from the file (they were claimed while it could not be
/// written, or it was lost). Creating an empty file needs no data block, so the mark can be
/// made on a full disk.
fn unrecorded_mark(nonce_file: &Path) -> PathBuf {
    let mut name = nonce_file.as_os_str().to_owned();
    name.push(".unrecorded");
    PathBuf::from(name)
}

/// Creates or removes the [`unrecorded_mark`] of `nonce_file`.
fn set_unrecorded_mark(nonce_file: &Path, unrecorded: bool) -> StoreResult<()> {
    let mark = unrecorded_mark(nonce_file);
    let done = if unrecorded {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&mark)
            .map(drop)
    } else {
        std::fs::remove_file(&mark).or_else(|error| match error.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(error),
        })
    };
    done.map_err(|error| {
        StoreError::Unavailable(Box::new(std::io::Error::new(
            error.kind(),
            format!("{}: {error}", mark.display()),
        )))
    })
}

/// Creates the database file readable by its owner only, before SQLite does; SQLite gives its
/// `-wal` and `-shm` files the same permissions. The store holds sealed secrets and the audit
/// log: nobody else on the machine needs to read it.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => Err(error),
        _ => Ok(()),
    }
}

/// Opens a connection to `path` with `pragmas` applied in order.
fn connect(path: &Path, flags: OpenFlags, pragmas: &[(&str, i64)]) -> StoreResult<Connection> {
    let connection =
        Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(classify)?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    for (name, value) in pragmas {
        connection.pragma_update(None, name, value).map_err(classify)?;
    }
    Ok(connection)
}

/// A read-write connection in WAL mode with foreign keys on.
fn connect_writer(path: &Path, pragmas: &[(&str, i64)]) -> StoreResult<Connection> {
    create_private(path).map_err(|error| StoreError::Unavailable(Box::new(error)))?;
    let connection = connect(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        pragmas,
    )?;
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .map_err(classify)?;
    connection
        .pragma_update(None, "foreign_keys", true)
        .map_err(classify)?;
    Ok(connection)
}

/// Opens (creating if needed) the nonce file with its table.
///
/// Its page cache is kept small (1 MiB). Nonce digests are random, so inserts split pages
/// all over the tree, and when SQLite reorders the pages of a split it moves one through a
/// page number past the end of any real file for a moment. The cache then ends every
/// transaction by dropping the pages past the database's end, and it finds them by looking
/// at every page it holds: a commit costs the size of the cache. With the 64 MiB this
/// file had before, the commits took 6 % of a first-page load's CPU (profiled with perf);
/// pages out of the cache come back from the system's file cache.
fn open_nonce_file(path: &Path) -> StoreResult<Connection> {
    let nonces = connect_writer(
        path,
        &[
            ("page_size", 1024),
            ("cache_size", -1024),
            ("wal_autocheckpoint", 16_384),
        ],
    )?;
    nonces
        .pragma_update(None, "synchronous", "OFF")
        .map_err(classify)?;
    nonces.execute_batch(NONCE_SCHEMA).map_err(classify)?;
    Ok(nonces)
}

/// Whether SQLite found the file to be no database, or a damaged one.
fn is_damaged(error: &StoreError) -> bool {
    let StoreError::Database(cause) = error else {
        return false;
    };
    matches!(
        cause.downcast_ref::<rusqlite::Error>(),
        Some(rusqlite::Error::SqliteFailure(failure, _))
            if matches!(failure.code, rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

/// Renames a damaged nonce file (and its journal files) to `NAME.damaged-SECONDS` beside it,
/// says so loudly, and starts a new one. The used nonces it held are lost: the store reports
/// it ([`crate::engine::Engine::nonce_history_lost`]) so the server can close the replay
/// window that opens.
fn set_aside_and_reopen(path: &Path, cause: &StoreError) -> StoreResult<Connection> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    for suffix in ["", "-wal", "-shm"] {
        let mut from = path.as_os_str().to_owned();
        from.push(suffix);
        let mut to = path.as_os_str().to_owned();
        to.push(format!(".damaged-{stamp}{suffix}"));
        match std::fs::rename(&from, &to) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(StoreError::Unavailable(Box::new(std::io::Error::new(
                    error.kind(),
                    format!(
                        "the nonce file {} is damaged ({cause}) and cannot be set aside: {error}",
                        PathBuf::from(from).display()
                    ),
                ))));
            }
            _ => {}
        }
    }
    tracing::warn!(
        file = %path.display(),
        cause = %cause,
        "the nonce file is damaged: set aside as {}.damaged-{stamp}, starting a new one; \
         requests signed before this start are refused until the clock window has passed",
        path.display()
    );
    open_nonce_file(path)
}

/// Moves the nonces a store made before they had their own file (migration 0006 then drops
/// the old table), so an upgrade does not reopen their replay window. Returns whether there
/// was such a table.
fn adopt_old_nonces(main: &Connection, nonces: &Connection) -> StoreResult<bool> {
    let old: Vec<(String, String, i64)> = {
        let found = main
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'signature_nonces'")
            .and_then(|mut statement| statement.exists([]))
            .map_err(classify)?;
        if !found {
            return Ok(false);
        }
        let mut statement = main
            .prepare("SELECT access_key_id, nonce, expires_at FROM signature_nonces")
            .map_err(classify)?;
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .map_err(classify)?;
        rows.collect::<Result<_, _>>().map_err(classify)?
    };
    let run = || -> rusqlite::Result<()> {
        nonces.execute_batch("BEGIN")?;
        let mut insert =
            nonces.prepare("INSERT OR IGNORE INTO used_nonces (digest, expires_at) VALUES (?1, ?2)")?;
        for (key, nonce, expires_at) in &old {
            insert.execute(rusqlite::params![
                crate::access::nonce_digest(key, nonce),
                expires_at
            ])?;
        }
        nonces.execute_batch("COMMIT")
    };
    run().map_err(classify)?;
    Ok(true)
}

impl Store {
    /// Opens (creating if needed) the SQLite store at `path` and applies pending migrations.
    ///
    /// # Errors
    /// When the file cannot be opened or a migration fails.
    pub async fn open_sqlite(path: &Path) -> StoreResult<Self> {
        SqliteEngine::open(path, None).await.map(Self::new)
    }

    /// A private SQLite store in a temporary directory, removed with the store: for tests.
    ///
    /// # Errors
    /// When the directory or the database cannot be created.
    pub async fn temporary() -> StoreResult<Self> {
        Self::temporary_in(&std::env::temp_dir()).await
    }

    /// A private store for `serve --ephemeral`: like [`Store::temporary`], but in memory
    /// (`/dev/shm`) where the system has it, so nothing reaches a disk; removed when the
    /// store is dropped (a killed process leaves its directory, `ens-store-*`, behind).
    ///
    /// # Errors
    /// When the directory or the database cannot be created.
    pub async fn ephemeral() -> StoreResult<Self> {
        Self::temporary_in(&Self::ephemeral_parent()).await
    }

    /// Where [`Store::ephemeral`] puts its directory: `/dev/shm` where the system has it (in
    /// memory), else the temporary directory. Public so that a test harness that owns the
    /// parent directory (and removes it itself) puts its stores in the same place.
    #[must_use]
    pub fn ephemeral_parent() -> PathBuf {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        }
    }

    /// A private store in a new directory (`ens-store-*`) under `parent`, removed with the
    /// store: for a caller that wants to know where it lives, e.g. to remove it at once at
    /// shutdown rather than when the last handle to the store is dropped.
    ///
    /// # Errors
    /// When the directory or the database cannot be created.
    pub async fn temporary_in(parent: &Path) -> StoreResult<Self> {
        let scratch = tempfile::Builder::new()
            .prefix("ens-store-")
            .tempdir_in(parent)
            .map_err(|error| StoreError::Unavailable(Box::new(error)))?;
        let path = scratch.path().join("store.db");
        SqliteEngine::open(&path, Some(scratch)).await.map(Self::new)
    }
}

impl SqliteEngine {
    async fn open(path: &Path, scratch: Option<tempfile::TempDir>) -> StoreResult<Self> {
        // Each image write touches a dozen indexes of a catalog that may hold millions of
        // rows: a larger cache keeps their upper levels in memory, and a larger WAL makes the
        // checkpoints that copy it back (and stall the writer) rarer.
        let store_existed = path.exists();
        let writer = connect_writer(path, &[("cache_size", -16_384), ("wal_autocheckpoint", 8192)])?;
        writer
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(classify)?;
        // Nonce pages are small (each batch dirties about one page per nonce) and written
        // without fsync: a power loss may forget the last nonces, which only reopens their
        // replay window; a crash of the process loses nothing.
        let nonce_path = nonce_file(path);
        let nonces_existed = nonce_path.exists();
        let (nonces, damaged) = match open_nonce_file(&nonce_path) {
            Err(error) if is_damaged(&error) => (set_aside_and_reopen(&nonce_path, &error)?, true),
            opened => (opened?, false),
        };
        // A store that served before without its nonce file lost the record too, unless it
        // is from before nonces had their own file and still holds them.
        let adopted = adopt_old_nonces(&writer, &nonces)?;
        let missing = store_existed && !nonces_existed && !adopted;
        if missing {
            tracing::warn!(
                file = %nonce_path.display(),
                "the nonce file is missing: starting a new one; requests signed before this start are refused \
                 until the clock window has passed"
            );
        }
        let left_incomplete = unrecorded_mark(&nonce_path).exists();
        if left_incomplete {
            tracing::warn!(
                file = %nonce_path.display(),
                "the nonce file misses nonces accepted while it could not be written (the disk was full when the \
                 server stopped, or it restarted within the clock window after a loss): requests signed before this \
                 start are refused until the clock window has passed"
            );
        }
        let nonce_history_lost = damaged || missing || left_incomplete;
        // The mark stays until the server has refused pre-start signatures for a whole
        // window, so that a restart within it closes the window again.
        if nonce_history_lost {
            set_unrecorded_mark(&nonce_path, true)?;
        }
        let mut migrator = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .connect()
            .await
            .map_err(|error| StoreError::Unavailable(Box::new(error)))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut migrator)
            .await
            .map_err(|error| StoreError::Migration(Box::new(error)))?;
        drop(migrator);
        Ok(Self {
            path: path.to_owned(),
            nonce_path,
            writer: Arc::new(AsyncMutex::new(writer)),
            nonces: Arc::new(AsyncMutex::new(nonces)),
            readers: Arc::new(Readers {
                idle: Mutex::new(Vec::new()),
                open: AtomicU32::new(0),
            }),
            nonce_history_lost,
            _scratch: scratch,
        })
    }

    fn reader(&self) -> StoreResult<Connection> {
        if let Some(connection) = self.readers.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(connection);
        }
        // Pages are read straight from the mapped file instead of copied by a system call
        // each; the mapping is shared with the page cache, not private memory.
        let connection = connect(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE,
            &[("query_only", 1), ("mmap_size", READ_MMAP_BYTES)],
        )?;
        self.readers.open.fetch_add(1, Ordering::Relaxed);
        Ok(connection)
    }
}

#[async_trait]
impl Engine for SqliteEngine {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn begin(&self, access: Access) -> StoreResult<Box<dyn Session>> {
        let (connection, begin) = match access {
            Access::ReadOne => (Held::Reader(Some(self.reader()?), self.readers.clone()), None),
            Access::Read => (
                Held::Reader(Some(self.reader()?), self.readers.clone()),
                Some("BEGIN"),
            ),
            Access::Write => (
                Held::Locked(self.writer.clone().lock_owned().await),
                Some("BEGIN IMMEDIATE"),
            ),
            Access::Nonces => (Held::Locked(self.nonces.clone().lock_owned().await), None),
        };
        if let Some(begin) = begin {
            connection.get()?.execute_batch(begin).map_err(classify)?;
        }
        Ok(Box::new(SqliteSession {
            connection,
            open: begin.is_some(),
        }))
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        let idle = self.readers.idle.lock().map(|idle| idle.len()).unwrap_or(0);
        Some(PoolStats {
            size: self.readers.open.load(Ordering::Relaxed) + 2,
            idle,
        })
    }

    fn nonce_history_lost(&self) -> bool {
        self.nonce_history_lost
    }

    fn database_file(&self) -> Option<PathBuf> {
        Some(self.path.clone())
    }

    fn nonces_are_local(&self) -> bool {
        true
    }

    fn mark_nonce_record(&self, complete: bool) -> StoreResult<()> {
        set_unrecorded_mark(&self.nonce_path, !complete)
    }

    async fn close(&self) {
        // Copies every committed page from the write-ahead log into the database file and
        // empties the log: a stopped store is its `.db` file alone.
        for (file, connection) in [("store", &self.writer), ("nonce file", &self.nonces)] {
            let connection = connection.lock().await;
            match connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get::<_, i64>(0)) {
                Ok(0) => {}
                Ok(_) => tracing::warn!(
                    "the {file} was not fully checkpointed at close (another process is reading it); \
                     its -wal file still holds the latest writes: copy it along, or stop the other process first"
                ),
                Err(error) => tracing::warn!(%error, "checkpointing the {file} at close failed"),
            }
        }
    }

    async fn backup(&self, to: &Path) -> StoreResult<()> {
        let (from, to) = (self.path.clone(), to.to_owned());
        tokio::task::spawn_blocking(move || backup_file(&from, &to))
            .await
            .map_err(|error| StoreError::Unavailable(Box::new(error)))?
    }

    async fn copy_pages(&self, max_bytes: u64) -> StoreResult<Option<PageCopy>> {
        // Taken with the write lock held, so the copy is one moment and no write is half in it.
        let writer = self.writer.lock().await;
        let bytes: i64 = writer
            .query_row(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                [],
                |row| row.get(0),
            )
            .map_err(classify)?;
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        if bytes > max_bytes {
            return Err(StoreError::Invalid(format!(
                "the store holds {} MiB; a snapshot is kept in memory and may take {} MiB more now \
                 (use `ens-images admin backup` for a store this size)",
                bytes >> 20,
                max_bytes >> 20
            )));
        }
        let audit_seq: i64 = writer
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM audit_log", [], |row| {
                row.get(0)
            })
            .map_err(classify)?;
        let mut pages = Connection::open_in_memory().map_err(classify)?;
        copy_all(&writer, &mut pages)?;
        Ok(Some(PageCopy {
            pages: Box::new(SqlitePages {
                pages: Mutex::new(pages),
                audit_seq,
            }),
            bytes,
        }))
    }

    async fn restore_pages(&self, copy: &PageCopy) -> StoreResult<()> {
        let copy = copy
            .pages
            .downcast_ref::<SqlitePages>()
            .ok_or_else(|| StoreError::Invalid("a page copy of another engine".into()))?;
        let mut writer = self.writer.lock().await;
        // The audit records made since the copy wait in this connection's temporary database,
        // which the page copy does not touch, and go back in after it.
        writer
            .execute_batch("DROP TABLE IF EXISTS temp.audit_since_copy")
            .map_err(classify)?;
        writer
            .execute(
                "CREATE TEMP TABLE audit_since_copy AS SELECT * FROM main.audit_log WHERE seq > ?1",
                [copy.audit_seq],
            )
            .map_err(classify)?;
        let restored = {
            let pages = copy
                .pages
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            copy_all(&pages, &mut writer)
        };
        let carried = writer.execute_batch(
            "INSERT INTO main.audit_log SELECT * FROM temp.audit_since_copy; DROP TABLE temp.audit_since_copy;",
        );
        restored?;
        carried.map_err(classify)
    }
}

/// Copies every page of `from` over `to` in one step: `to` changes whole, at once.
fn copy_all(from: &Connection, to: &mut Connection) -> StoreResult<()> {
    let backup = Backup::new(from, to).map_err(classify)?;
    match backup.step(-1).map_err(classify)? {
        rusqlite::backup::StepResult::Done => Ok(()),
        other => Err(StoreError::Unavailable(
            format!("the page copy stopped before its end ({other:?}); retry").into(),
        )),
    }
}

/// SQLite's [`PageCopy`]: the database's pages in an in-memory database, and the last audit
/// record they hold.
struct SqlitePages {
    pages: Mutex<Connection>,
    audit_seq: i64,
}

/// `VACUUM INTO` a partial file beside `to` (one read transaction, so one consistent moment,
/// while writers go on), made durable, then published under its name without replacing
/// anything: `to` is either a whole backup or absent.
fn backup_file(from: &Path, to: &Path) -> StoreResult<()> {
    let unusable = |why: String| StoreError::Invalid(format!("backup to {}: {why}", to.display()));
    let io = |error: std::io::Error| unusable(error.to_string());
    if to.exists() {
        return Err(unusable("the file exists; give a new file name".into()));
    }
    let mut partial_name = to
        .file_name()
        .map(OsString::from)
        .ok_or_else(|| unusable("not a file name".into()))?;
    partial_name.push(".partial");
    let partial = to.with_file_name(partial_name);
    let target = partial
        .to_str()
        .ok_or_else(|| unusable("the path is not UTF-8".into()))?;
    let copy = || -> StoreResult<()> {
        // Left by an interrupted backup, or absent.
        std::fs::remove_file(&partial).or_else(|error| match error.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(io(error)),
        })?;
        // Private like the store itself (VACUUM INTO fills an empty file it finds).
        create_private(&partial).map_err(io)?;
        connect(from, OpenFlags::SQLITE_OPEN_READ_ONLY, &[])?
            .execute("VACUUM INTO ?1", [target])
            .map_err(classify)?;
        std::fs::File::open(&partial)
            .and_then(|file| file.sync_all())
            .map_err(io)?;
        // A hard link fails where `to` appeared meanwhile; a rename would replace it.
        std::fs::hard_link(&partial, to).map_err(io)?;
        if let Some(directory) = to.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::File::open(directory)
                .and_then(|directory| directory.sync_all())
                .map_err(io)?;
        }
        Ok(())
    };
    let copied = copy();
    // The partial file goes in every case: after success `to` holds the backup.
    let _ = std::fs::remove_file(&partial);
    copied
}

/// The connection a session runs on.
enum Held {
    /// A read connection, given back to the idle list when the session ends.
    Reader(Option<Connection>, Arc<Readers>),
    /// The write or nonce connection, held until the session ends.
    Locked(OwnedMutexGuard<Connection>),
}

impl Held {
    fn get(&self) -> StoreResult<&Connection> {
        match self {
            Self::Reader(Some(connection), _) => Ok(connection),
            Self::Reader(None, _) => Err(StoreError::Corrupt("read session used after it ended".into())),
            Self::Locked(guard) => Ok(guard),
        }
    }
}

struct SqliteSession {
    connection: Held,
    /// Whether a transaction is open (rolled back if the session drops uncommitted).
    open: bool,
}

impl Drop for SqliteSession {
    fn drop(&mut self) {
        if self.open {
            // SQLite itself rolls back a transaction that hit a full disk or an I/O error.
            if let Some(connection) = self.connection.get().ok().filter(|c| !c.is_autocommit()) {
                if let Err(error) = connection.execute_batch("ROLLBACK") {
                    tracing::warn!(%error, "rolling back an SQLite transaction failed");
                }
            }
        }
        if let Held::Reader(connection, readers) = &mut self.connection {
            if let (Some(connection), Ok(mut idle)) = (connection.take(), readers.idle.lock()) {
                if idle.len() < MAX_IDLE_READERS {
                    idle.push(connection);
                    return;
                }
            }
            readers.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Prepares `sql` (cached) and binds `params` by the number in each `$n`, or, in a statement
/// written with `?n` (see [`Dialect::placeholder`]), by position: SQLite gives `?n` the index
/// `n`, while finding a `$n` by its name costs a scan of every name, which a bulk insert
/// of thousands of parameters cannot pay per parameter.
fn prepare<'c>(
    connection: &'c Connection,
    sql: &str,
    params: &[Param<'_>],
) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    let mut statement = connection.prepare_cached(sql)?;
    let positional = statement
        .parameter_name(1)
        .is_some_and(|name| name.starts_with('?'));
    for index in 1..=statement.parameter_count() {
        let param = if positional {
            params.get(index - 1)
        } else {
            statement
                .parameter_name(index)
                .and_then(|name| name.strip_prefix('$'))
                .and_then(|number| number.parse::<usize>().ok())
                .and_then(|number| params.get(number.checked_sub(1)?))
        }
        .ok_or(rusqlite::Error::InvalidParameterCount(index, params.len()))?;
        match param {
            Param::Int(value) => statement.raw_bind_parameter(index, value)?,
            Param::Text(value) => statement.raw_bind_parameter(index, value)?,
            Param::Ints(values) => {
                let mut list = String::with_capacity(values.len() * 21 + 2);
                list.push('[');
                for (place, value) in values.iter().enumerate() {
                    if place > 0 {
                        list.push(',');
                    }
                    let _ = write!(list, "{value}");
                }
                list.push(']');
                statement.raw_bind_parameter(index, list)?;
            }
        }
    }
    Ok(statement)
}

fn value_of(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(number) => Value::Int(number),
        // The schema stores no floats; a stray one is truncated rather than refused.
        #[expect(clippy::cast_possible_truncation, reason = "no float columns in the schema")]
        ValueRef::Real(number) => Value::Int(number as i64),
        ValueRef::Text(text) | ValueRef::Blob(text) => {
            Value::Text(String::from_utf8_lossy(text).into_owned())
        }
    }
}

#[async_trait]
impl Session for SqliteSession {
    async fn rows(&mut self, sql: &str, params: &[Param<'_>]) -> StoreResult<Vec<Row>> {
        let run = || -> rusqlite::Result<Vec<Row>> {
            let mut statement = prepare(
                self.connection.get().map_err(|_| rusqlite::Error::InvalidQuery)?,
                sql,
                params,
            )?;
            let columns = statement.column_count();
            let mut rows = statement.raw_query();
            let mut found = Vec::new();
            while let Some(row) = rows.next()? {
                let values = (0..columns)
                    .map(|index| row.get_ref(index).map(value_of))
                    .collect::<rusqlite::Result<_>>()?;
                found.push(Row(values));
            }
            Ok(found)
        };
        run().map_err(classify)
    }

    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> StoreResult<u64> {
        let run = || -> rusqlite::Result<usize> {
            prepare(
                self.connection.get().map_err(|_| rusqlite::Error::InvalidQuery)?,
                sql,
                params,
            )?
            .raw_execute()
        };
        Ok(run().map_err(classify)? as u64)
    }

    async fn commit(mut self: Box<Self>) -> StoreResult<()> {
        if self.open {
            self.connection.get()?.execute_batch("COMMIT").map_err(classify)?;
            self.open = false;
        }
        Ok(())
    }
}
