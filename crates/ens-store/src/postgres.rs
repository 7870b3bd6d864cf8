//! The shared engine: one PostgreSQL database behind any number of server replicas.
//!
//! Write transactions run at READ COMMITTED; the store's rules lock the rows they read
//! (`FOR UPDATE`, `FOR SHARE`, `SKIP LOCKED` for work queues, advisory locks for one-time
//! jobs), through [`crate::engine::Dialect`]. Reads of several statements run in one
//! `REPEATABLE READ, READ ONLY` transaction, so a page and its TotalCount agree.
//! Serialization failures and deadlocks are reported as [`StoreError::Contended`], which the
//! store runs again. Text columns use the "C" collation, so ordering and case folding are
//! SQLite's byte-wise ones whatever the database locale.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgPoolOptions, PgRow};
use sqlx::{Column, Connection, PgConnection, PgPool, Postgres, Row as _, Transaction, TypeInfo};

use crate::engine::{Access, Dialect, Engine, Param, Row, Session, Value};
use crate::redact::{redact_database_url, redact_secrets};
use crate::{PoolStats, Store, StoreError, StoreResult};

/// How long a request waits for a pooled connection before the store reports itself
/// unavailable: long enough for a burst, short enough that an unreachable database gives a
/// quick ServiceUnavailable instead of a hung request.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest pause between two attempts of [`Store::connect_postgres_with_retry`].
const MAX_CONNECT_DELAY: Duration = Duration::from_secs(5);
/// How multi-statement reads begin: one snapshot, no writes.
const BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// SQLSTATEs after which the same request can succeed later without any change: the server
/// is shutting down, crashed, starting up or out of connection slots.
const TRANSIENT_SQLSTATES: &[&str] = &["57P01", "57P02", "57P03", "53300"];
/// SQLSTATEs of a transaction that lost a race: serialization failure, deadlock.
const CONTENDED_SQLSTATES: &[&str] = &["40001", "40P01"];

/// Sorts a driver failure into what the caller can do about it.
pub(crate) fn classify(error: sqlx::Error) -> StoreError {
    let sqlstate = match &error {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<PgDatabaseError>()
            .map(PgDatabaseError::code),
        _ => None,
    };
    if sqlstate.is_some_and(|code| CONTENDED_SQLSTATES.contains(&code)) {
        return StoreError::Contended(Box::new(error));
    }
    // disk_full: the server could not extend a file; the same write can succeed later.
    if sqlstate == Some("53100") {
        return StoreError::Full(Box::new(error));
    }
    let transient = matches!(
        error,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
    ) || sqlstate
        .is_some_and(|code| code.starts_with("08") || TRANSIENT_SQLSTATES.contains(&code));
    if transient {
        StoreError::Unavailable(Box::new(error))
    } else {
        StoreError::Database(Box::new(error))
    }
}

/// The PostgreSQL engine behind a [`Store`].
pub struct PostgresEngine {
    pool: PgPool,
}

impl Store {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`)
    /// with a pool of at most `max_connections`, and applies pending migrations.
    ///
    /// Fails fast: an unreachable database gives [`StoreError::Unavailable`] after a few
    /// seconds. Migrations run under PostgreSQL's advisory lock, so replicas starting
    /// together migrate once.
    ///
    /// # Errors
    /// `Invalid` for a malformed URL or a zero pool size, `Unavailable` when the database
    /// cannot be reached, `Database` when it refuses the login, `Migration` when the schema
    /// cannot be brought up to date.
    pub async fn connect_postgres(url: &str, max_connections: u32) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url).map_err(|error| {
            StoreError::Invalid(format!(
                "database URL {}: {}",
                redact_database_url(url),
                redact_secrets(&error.to_string(), url)
            ))
        })?;
        Self::connect_postgres_with(options, max_connections).await
    }

    /// Like [`Self::connect_postgres`], with connection options built in code.
    ///
    /// # Errors
    /// As [`Self::connect_postgres`].
    pub async fn connect_postgres_with(options: PgConnectOptions, max_connections: u32) -> StoreResult<Self> {
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
            .map_err(|_| classify(sqlx::Error::PoolTimedOut))?
            .map_err(classify)?;
        probe.close().await.map_err(classify)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|error| match error {
                sqlx::migrate::MigrateError::Execute(inner) => match classify(inner) {
                    unavailable @ StoreError::Unavailable(_) => unavailable,
                    other => StoreError::Migration(Box::new(other)),
                },
                other => StoreError::Migration(Box::new(other)),
            })?;
        let store = Self::new(PostgresEngine { pool: pool.clone() });
        store.read_model.listen(pool);
        Ok(store)
    }

    /// [`Self::connect_postgres`], retried with growing pauses while the database is
    /// unreachable (it may be starting beside the server), for at most `patience` in all.
    ///
    /// Before each pause `on_wait` gets the reason and the attempt number (from 1), so the
    /// caller can log that it is waiting. Errors other than `Unavailable` are returned at
    /// once: waiting would not fix them.
    ///
    /// # Errors
    /// The last error once `patience` is spent, or the first error that is not `Unavailable`.
    pub async fn connect_postgres_with_retry(
        url: &str,
        max_connections: u32,
        patience: Duration,
        on_wait: impl Fn(&StoreError, u32),
    ) -> StoreResult<Self> {
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(500);
        let mut attempt = 0;
        loop {
            match Self::connect_postgres(url, max_connections).await {
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
}

#[async_trait]
impl Engine for PostgresEngine {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn begin(&self, access: Access) -> StoreResult<Box<dyn Session>> {
        let connection = match access {
            Access::ReadOne | Access::Nonces => Held::One(self.pool.acquire().await.map_err(classify)?),
            Access::Read => Held::Transaction(self.pool.begin_with(BEGIN_READ).await.map_err(classify)?),
            Access::Write => Held::Transaction(self.pool.begin().await.map_err(classify)?),
        };
        Ok(Box::new(connection))
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        Some(PoolStats {
            size: self.pool.size(),
            idle: self.pool.num_idle(),
        })
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn backup(&self, _to: &std::path::Path) -> StoreResult<()> {
        Err(StoreError::Invalid(
            "a PostgreSQL store is backed up by PostgreSQL's own tools (pg_dump -Fc), not by ens-images"
                .into(),
        ))
    }
}

/// A pooled connection for one statement, or a transaction (rolled back if dropped).
enum Held {
    One(PoolConnection<Postgres>),
    Transaction(Transaction<'static, Postgres>),
}

impl Held {
    fn connection(&mut self) -> &mut PgConnection {
        match self {
            Self::One(connection) => connection,
            Self::Transaction(transaction) => transaction,
        }
    }
}

fn query<'q>(
    sql: &'q str,
    params: &'q [Param<'q>],
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    let mut query = sqlx::query(sql);
    for param in params {
        query = match *param {
            Param::Int(value) => query.bind(value),
            Param::Text(value) => query.bind(value),
            Param::Ints(values) => query.bind(values),
        };
    }
    query
}

/// Reads a row by the type of each column: integers and booleans as integers, the rest
/// (every text column) as text.
fn row_from(row: &PgRow) -> StoreResult<Row> {
    let mut values = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let value = match column.type_info().name() {
            "INT8" => row.try_get::<Option<i64>, _>(index).map(|v| v.map(Value::Int)),
            "INT4" => row
                .try_get::<Option<i32>, _>(index)
                .map(|v| v.map(|v| Value::Int(v.into()))),
            "INT2" => row
                .try_get::<Option<i16>, _>(index)
                .map(|v| v.map(|v| Value::Int(v.into()))),
            "BOOL" => row
                .try_get::<Option<bool>, _>(index)
                .map(|v| v.map(|v| Value::Int(v.into()))),
            "VOID" => Ok(None),
            _ => row
                .try_get::<Option<String>, _>(index)
                .map(|v| v.map(Value::Text)),
        };
        values.push(value.map_err(classify)?.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

#[async_trait]
impl Session for Held {
    async fn rows(&mut self, sql: &str, params: &[Param<'_>]) -> StoreResult<Vec<Row>> {
        let rows = query(sql, params)
            .fetch_all(self.connection())
            .await
            .map_err(classify)?;
        rows.iter().map(row_from).collect()
    }

    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> StoreResult<u64> {
        Ok(query(sql, params)
            .execute(self.connection())
            .await
            .map_err(classify)?
            .rows_affected())
    }

    async fn commit(self: Box<Self>) -> StoreResult<()> {
        match *self {
            Self::One(_) => Ok(()),
            Self::Transaction(transaction) => transaction.commit().await.map_err(classify),
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, PgConnection};

    use super::classify;
    use crate::StoreError;

    /// An error with this SQLSTATE, raised by a real server.
    async fn raised(connection: &mut PgConnection, sqlstate: &str) -> StoreError {
        let sql = format!("DO $$ BEGIN RAISE EXCEPTION 'test' USING ERRCODE = '{sqlstate}'; END $$");
        classify(sqlx::query(&sql).execute(&mut *connection).await.unwrap_err())
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: scripts/test.sh runs it when ENS_IMAGES_TEST_DATABASE_URL is set"]
    async fn sqlstates_are_classified() {
        let url = std::env::var("ENS_IMAGES_TEST_DATABASE_URL").unwrap();
        let mut connection = PgConnection::connect(&url).await.unwrap();
        for transient in ["08006", "08001", "57P01", "57P02", "57P03", "53300"] {
            let error = raised(&mut connection, transient).await;
            assert!(
                matches!(error, StoreError::Unavailable(_)),
                "{transient}: {error:?}"
            );
        }
        for contended in ["40001", "40P01"] {
            let error = raised(&mut connection, contended).await;
            assert!(
                matches!(error, StoreError::Contended(_)),
                "{contended}: {error:?}"
            );
            assert!(error.is_unavailable());
        }
        // A full disk: nothing was written, and the same write succeeds once space is freed.
        let full = raised(&mut connection, "53100").await;
        assert!(matches!(full, StoreError::Full(_)), "53100: {full:?}");
        assert!(full.is_unavailable());
        for permanent in ["23505", "42P01"] {
            let error = raised(&mut connection, permanent).await;
            assert!(matches!(error, StoreError::Database(_)), "{permanent}: {error:?}");
        }
    }
}
