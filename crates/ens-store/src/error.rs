//! Storage errors, in terms the caller can act on. No engine's error type appears here:
//! each engine sorts its own failures into these kinds and keeps the cause as a source.

/// The underlying cause of an engine failure, kept for logs.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

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
    Unavailable(Cause),
    /// The disk holding the database is full: nothing was written, and the same write can
    /// succeed once space is freed.
    #[error("the disk holding the store is full: {0}")]
    Full(Cause),
    /// The transaction lost a race (serialization failure, deadlock): running it again at
    /// once is the remedy, and the store does so a few times before reporting this.
    #[error("transaction conflict: {0}")]
    Contended(Cause),
    /// The database refused an operation: a bug or a broken database.
    #[error("database error: {0}")]
    Database(Cause),
    /// Opening or migrating the database failed.
    #[error("migration failed: {0}")]
    Migration(Cause),
}

impl StoreError {
    /// Whether the database is unreachable, busy or out of space rather than the request
    /// wrong: the server answers ServiceUnavailable and the same call can succeed later.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Contended(_) | Self::Full(_))
    }
}

/// Result of a storage operation.
pub type StoreResult<T> = Result<T, StoreError>;
