//! The narrow interface every database engine implements, and nothing more: open a session,
//! run a statement with bound values, read rows back, commit. Every business rule lives
//! above it, in [`crate::Store`], written once.
//!
//! Statements number their parameters `$1`, `$2`, ... in any order and may repeat one;
//! both engines bind them by number. Where the two SQL dialects differ (row locks, list
//! parameters, case-folding matches), the store asks [`Dialect`] for the fragment.

use async_trait::async_trait;

use crate::{StoreError, StoreResult};

/// A value bound to a statement parameter. Nulls carry their type: PostgreSQL needs it.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    /// A 64-bit integer or NULL.
    Int(Option<i64>),
    /// A text or NULL.
    Text(Option<&'a str>),
    /// A list of integers, for `seq IN (...)` through [`Dialect::in_list`].
    Ints(&'a [i64]),
}

/// `Param::from` for each bindable Rust type.
macro_rules! param_from {
    ($($type:ty => $variant:ident($wrap:expr)),* $(,)?) => {
        $(impl<'a> From<$type> for Param<'a> {
            fn from(value: $type) -> Self {
                Self::$variant($wrap(value))
            }
        })*
    };
}

param_from!(&'a str => Text(Some), Option<&'a str> => Text(std::convert::identity), i64 => Int(Some),
    Option<i64> => Int(std::convert::identity));

/// One column of a result row, as the engine returned it (booleans arrive as 0 or 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A text.
    Text(String),
}

/// One result row, read by column position.
#[derive(Debug, Default)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn at(&mut self, index: usize) -> StoreResult<&mut Value> {
        self.0
            .get_mut(index)
            .ok_or_else(|| StoreError::Corrupt(format!("result has no column {index}")))
    }

    /// A nullable integer column.
    ///
    /// # Errors
    /// `Corrupt` when the column is missing or a text.
    pub fn maybe_int(&mut self, index: usize) -> StoreResult<Option<i64>> {
        match self.at(index)? {
            Value::Null => Ok(None),
            Value::Int(value) => Ok(Some(*value)),
            Value::Text(_) => Err(StoreError::Corrupt(format!(
                "column {index} is a text, not an integer"
            ))),
        }
    }

    /// Takes a nullable text column out of the row.
    ///
    /// # Errors
    /// `Corrupt` when the column is missing or an integer.
    pub fn maybe_text(&mut self, index: usize) -> StoreResult<Option<String>> {
        match std::mem::replace(self.at(index)?, Value::Null) {
            Value::Null => Ok(None),
            Value::Text(value) => Ok(Some(value)),
            Value::Int(_) => Err(StoreError::Corrupt(format!(
                "column {index} is an integer, not a text"
            ))),
        }
    }

    /// An integer column (NULL refused).
    ///
    /// # Errors
    /// `Corrupt` when the column is missing, NULL or not an integer.
    pub fn int(&mut self, index: usize) -> StoreResult<i64> {
        self.maybe_int(index)?.ok_or_else(|| null(index))
    }

    /// Takes a text column out of the row (NULL refused).
    ///
    /// # Errors
    /// `Corrupt` when the column is missing, NULL or not a text.
    pub fn text(&mut self, index: usize) -> StoreResult<String> {
        self.maybe_text(index)?.ok_or_else(|| null(index))
    }
}

fn null(index: usize) -> StoreError {
    StoreError::Corrupt(format!("column {index} is NULL"))
}

/// What a session is opened for; each engine maps it onto its own isolation and locking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// One statement: no transaction to open, it sees one snapshot by itself.
    ReadOne,
    /// Several statements that must see one snapshot (a page and its TotalCount).
    Read,
    /// A write transaction: SQLite holds the one write lock from its first statement;
    /// PostgreSQL runs READ COMMITTED and the store locks the rows its rules read.
    Write,
    /// Claims of SignatureNonces: a store of their own where the engine keeps one (SQLite's
    /// nonce file), each statement committed by itself.
    Nonces,
}

/// The SQL dialect of an engine: the few fragments the two write differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3.35 or newer (RETURNING, UPDATE FROM, window functions).
    Sqlite,
    /// PostgreSQL 12 or newer.
    Postgres,
}

/// A row lock taken by a read inside a write transaction (PostgreSQL; SQLite's single
/// writer needs none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Others may read and share-lock the rows, but not change or delete them.
    Share,
    /// Exclusive: the rows are about to be changed or deleted.
    Update,
    /// Exclusive, skipping rows another transaction holds (work queues).
    UpdateSkipLocked,
}

impl Dialect {
    /// The sign before a parameter's number in statements built with many parameters: `$`
    /// everywhere, but `?` for SQLite, which binds `?n` by position (see `sqlite::prepare`).
    #[must_use]
    pub fn placeholder(self) -> char {
        match self {
            Self::Sqlite => '?',
            Self::Postgres => '$',
        }
    }

    /// The clause that ends a `SELECT` taking `lock`.
    #[must_use]
    pub fn lock(self, lock: Lock) -> &'static str {
        match (self, lock) {
            (Self::Sqlite, _) => "",
            (Self::Postgres, Lock::Share) => " FOR SHARE",
            (Self::Postgres, Lock::Update) => " FOR UPDATE",
            (Self::Postgres, Lock::UpdateSkipLocked) => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// `column IN` the integer list bound at `$n` (a [`Param::Ints`]): one statement shape
    /// whatever the list's length, so it stays prepared.
    #[must_use]
    pub fn in_list(self, column: &str, n: usize) -> String {
        match self {
            Self::Sqlite => format!("{column} IN (SELECT value FROM json_each(${n}))"),
            Self::Postgres => format!("{column} = ANY(${n})"),
        }
    }

    /// Whether `column` contains the text at `$n`, ASCII case folded, `%` and `_` literal.
    /// Both fold ASCII only, whatever the database's locale ("C" collation on PostgreSQL).
    #[must_use]
    pub fn contains_folded(self, column: &str, n: usize) -> String {
        match self {
            Self::Sqlite => format!("instr(lower({column}), lower(${n})) > 0"),
            Self::Postgres => format!("strpos(lower({column}), lower(${n}::text COLLATE \"C\")) > 0"),
        }
    }

    /// `lower(text at $n)` folded as [`Self::contains_folded`] does.
    #[must_use]
    pub fn lower_param(self, n: usize) -> String {
        match self {
            Self::Sqlite => format!("lower(${n})"),
            Self::Postgres => format!("lower(${n}::text COLLATE \"C\")"),
        }
    }

    /// A JSON array, as text, of `item` over the rows of `rows` (a table and its condition)
    /// in `order`; `[]` when there are none. How one row carries an image's nodes or disks,
    /// so that a page and its images come back from one statement.
    #[must_use]
    pub fn json_array_of(self, item: &str, rows: &str, order: &str) -> String {
        match self {
            Self::Sqlite => format!("(SELECT json_group_array({item} ORDER BY {order}) FROM {rows})"),
            Self::Postgres => {
                format!("(SELECT COALESCE(json_agg({item} ORDER BY {order}), '[]')::text FROM {rows})")
            }
        }
    }

    /// A JSON array of `values`, an item for [`Self::json_array_of`].
    #[must_use]
    pub fn json_tuple(self, values: &str) -> String {
        match self {
            Self::Sqlite => format!("json_array({values})"),
            Self::Postgres => format!("json_build_array({values})"),
        }
    }

    /// The statement taking transaction-scoped exclusive lock `$1` (an `i64` key), so that
    /// replicas starting together do a one-time job once; `None` where the write
    /// transaction is already exclusive (SQLite).
    #[must_use]
    pub fn exclusive_lock(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => None,
            Self::Postgres => Some("SELECT pg_advisory_xact_lock($1)"),
        }
    }
}

/// A database engine: connections, its dialect and its locking; no business rule.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// The SQL dialect statements must be written in.
    fn dialect(&self) -> Dialect;

    /// Opens a session for `access`.
    async fn begin(&self, access: Access) -> StoreResult<Box<dyn Session>>;

    /// Connection pool usage now, when the engine pools connections.
    fn pool_stats(&self) -> Option<crate::PoolStats>;

    /// Whether the record of used SignatureNonces was lost when the store opened (a missing
    /// or damaged file replaced by an empty one): nonces used before then could be replayed.
    fn nonce_history_lost(&self) -> bool {
        false
    }

    /// Whether this process alone claims nonces in this store (the embedded file), so that
    /// while the record cannot be written the server may hold claims in memory instead of
    /// refusing every request. Where replicas share the store, only the store can decide.
    fn nonces_are_local(&self) -> bool {
        false
    }

    /// Marks the record of used nonces incomplete (`false`: this process accepted claims it
    /// could not write) or whole again, so that the next start knows whether to close the
    /// replay window. Marking it incomplete must work on a full disk.
    ///
    /// # Errors
    /// When the mark cannot be made.
    fn mark_nonce_record(&self, _complete: bool) -> StoreResult<()> {
        Ok(())
    }

    /// The database file, for an engine keeping one on this machine (SQLite): the read
    /// model's changes file lives beside it.
    fn database_file(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// Closes every connection (before dropping a test database, or at shutdown), leaving the
    /// database self-contained: nothing that only a journal beside it holds.
    async fn close(&self);

    /// Writes a consistent copy of the whole store, as of one moment while it keeps serving,
    /// to the new file `to`.
    async fn backup(&self, to: &std::path::Path) -> StoreResult<()>;

    /// A copy of the whole database in memory, for [`Engine::restore_pages`], where the engine
    /// can copy and put back its pages faster than the store can rewrite its rows (SQLite);
    /// `None` where it cannot.
    ///
    /// # Errors
    /// `Invalid` when the database is larger than `max_bytes` (nothing is copied then);
    /// otherwise when the copy fails.
    async fn copy_pages(&self, _max_bytes: u64) -> StoreResult<Option<PageCopy>> {
        Ok(None)
    }

    /// Puts the database back as `copy` holds it, in one step that readers see whole, except
    /// the audit log, which keeps the records added since the copy: a roll-back of the state
    /// must not erase who did what.
    ///
    /// # Errors
    /// `Invalid` for a copy this engine did not make; otherwise when the restore fails.
    async fn restore_pages(&self, _copy: &PageCopy) -> StoreResult<()> {
        Err(StoreError::Invalid("this engine keeps no page copies".into()))
    }
}

/// A whole-database copy an engine made with [`Engine::copy_pages`]; only that engine reads it.
pub struct PageCopy {
    pub(crate) pages: Box<dyn std::any::Any + Send + Sync>,
    /// The memory it holds.
    pub bytes: u64,
}

impl std::fmt::Debug for PageCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageCopy")
    }
}

/// An open session: a transaction, or a connection for one statement. Dropped without
/// [`Session::commit`], whatever it wrote is rolled back.
#[async_trait]
pub trait Session: Send {
    /// Runs a statement and returns its rows.
    async fn rows(&mut self, sql: &str, params: &[Param<'_>]) -> StoreResult<Vec<Row>>;

    /// Runs a statement and returns how many rows it changed.
    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> StoreResult<u64>;

    /// Commits the transaction (a no-op for a session of one statement).
    async fn commit(self: Box<Self>) -> StoreResult<()>;

    /// Vouches for what this write transaction changes of the read model
    /// (`crate::read_model`): the listings of `scope`, or, with `None`, nothing more than
    /// named so far. A write session that vouched for nothing and writes a table the model
    /// reads from drops the whole model when it commits, so vouching is an optimisation
    /// for the writes that know their scope, never a duty.
    fn touch(&mut self, _scope: Option<&str>) {}
}

impl dyn Session + '_ {
    /// The first row, if any.
    pub(crate) async fn row(&mut self, sql: &str, params: &[Param<'_>]) -> StoreResult<Option<Row>> {
        Ok(self.rows(sql, params).await?.into_iter().next())
    }

    /// Whether the statement returns any row.
    pub(crate) async fn exists(&mut self, sql: &str, params: &[Param<'_>]) -> StoreResult<bool> {
        Ok(!self.rows(sql, params).await?.is_empty())
    }

    /// The integer in the first column of the first row (a count), 0 without rows.
    pub(crate) async fn count(&mut self, sql: &str, params: &[Param<'_>]) -> StoreResult<u64> {
        let value = match self.row(sql, params).await? {
            Some(mut row) => row.maybe_int(0)?.unwrap_or(0),
            None => 0,
        };
        crate::rows::to_u64(value, "count")
    }

    /// The first column of every row, read with `read` (`Row::int`, `Row::text`).
    async fn firsts<T>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        read: fn(&mut Row, usize) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let rows = self.rows(sql, params).await?;
        rows.into_iter().map(|mut row| read(&mut row, 0)).collect()
    }

    /// The first column of every row, as integers.
    pub(crate) async fn ints(&mut self, sql: &str, params: &[Param<'_>]) -> StoreResult<Vec<i64>> {
        self.firsts(sql, params, Row::int).await
    }

    /// The first column of every row, as texts.
    pub(crate) async fn texts(&mut self, sql: &str, params: &[Param<'_>]) -> StoreResult<Vec<String>> {
        self.firsts(sql, params, Row::text).await
    }
}
