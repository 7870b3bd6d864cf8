//! Storage errors, in terms the caller can act on.

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
    /// Opening or migrating the database failed.
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        let transient = matches!(
            &error,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_)
        ) || matches!(&error, sqlx::Error::Database(db) if db.message().contains("database is locked"));
        if transient {
            Self::Unavailable(error)
        } else {
            Self::Database(error)
        }
    }
}

/// Result of a storage operation.
pub type StoreResult<T> = Result<T, StoreError>;
