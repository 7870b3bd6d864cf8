//! Storage errors, in terms the caller can act on.

use sqlx::migrate::MigrateError;
use sqlx::postgres::PgDatabaseError;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A referenced row (image, account, node) does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A unique value (image ID, key ID) is already taken.
    #[error("{0} already exists")]
    Conflict(String),
    /// A domain rule refused the change; nothing was written.
    #[error(transparent)]
    Image(#[from] ens_domain::ImageError),
    /// A value the store refuses to keep because it would break an invariant.
    #[error("invalid value: {0}")]
    Invalid(String),
    /// The store holds data this code cannot read (hand-edited or from a newer version).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The database cannot be reached or is busy; retrying later may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    /// The database refused an operation: a bug or a broken database.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// The embedded database failed a read.
    #[error("embedded database error: {0}")]
    Embedded(rusqlite::Error),
    /// Opening or migrating the database failed.
    #[error("migration failed: {0}")]
    Migration(MigrateError),
}

/// PostgreSQL SQLSTATEs after which the same request can succeed later without any change:
/// the server is shutting down, crashed, starting up or out of connection slots, or the
/// transaction lost a serialization race or a deadlock.
const TRANSIENT_SQLSTATES: &[&str] = &[
    "57P01", // admin_shutdown
    "57P02", // crash_shutdown
    "57P03", // cannot_connect_now
    "53300", // too_many_connections
    "40001", // serialization_failure
    "40P01", // deadlock_detected
];

/// SQLSTATEs of a transaction that lost a race against another one: running it again at
/// once is the documented remedy, so the store retries these itself before giving up.
const RETRYABLE_SQLSTATES: &[&str] = &["40001", "40P01"];

/// The SQLSTATE of a PostgreSQL error, if `error` is one.
fn pg_sqlstate(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<PgDatabaseError>()
            .map(PgDatabaseError::code),
        _ => None,
    }
}

/// Whether `error` says the database is unreachable or busy rather than that the request is
/// wrong: the server answers these with ServiceUnavailable and recovers on its own.
fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            // SQLite: another process holds the write lock past the busy timeout.
            db.message().contains("database is locked")
                || pg_sqlstate(error).is_some_and(|code| {
                    // Class 08: connection exceptions.
                    code.starts_with("08") || TRANSIENT_SQLSTATES.contains(&code)
                })
        }
        _ => false,
    }
}

impl StoreError {
    /// Whether the database is unreachable or busy rather than the request wrong: the
    /// server answers ServiceUnavailable and the same call can succeed later.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Embedded(rusqlite::Error::SqliteFailure(failure, _)) => matches!(
                failure.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            _ => false,
        }
    }

    /// Whether this is a serialization failure or a deadlock, which the store retries.
    pub(crate) fn is_retryable_conflict(&self) -> bool {
        let error = match self {
            Self::Unavailable(error) | Self::Database(error) => error,
            _ => return false,
        };
        pg_sqlstate(error).is_some_and(|code| RETRYABLE_SQLSTATES.contains(&code))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if is_transient(&error) {
            Self::Unavailable(error)
        } else {
            Self::Database(error)
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Embedded(error)
    }
}

impl From<MigrateError> for StoreError {
    /// A migration that failed because the database went away is `Unavailable` (starting
    /// again later will migrate); any other migration failure needs the operator.
    fn from(error: MigrateError) -> Self {
        match error {
            MigrateError::Execute(inner) if is_transient(&inner) => Self::Unavailable(inner),
            other => Self::Migration(other),
        }
    }
}

/// Result of a storage operation.
pub type StoreResult<T> = Result<T, StoreError>;
