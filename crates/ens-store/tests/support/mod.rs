//! Test support shared by the storage test crates: a fresh PostgreSQL database per test.
//! Each test crate compiles this module on its own and uses part of it.

#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "shared by several test crates, each using a part; fixtures fail loudly"
)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ens_store::PostgresStore;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use time::OffsetDateTime;

/// What a PostgreSQL case prints instead of running when it has no server to run on.
const PG_SKIPPED: &str = "skipped: PostgreSQL not reachable (set ENS_IMAGES_TEST_DATABASE_URL)";

/// A fresh, migrated PostgreSQL database for one test, created on the server that
/// `ENS_IMAGES_TEST_DATABASE_URL` names (through its maintenance database `postgres`) and
/// dropped by [`PgDatabase::drop`]. Its name starts with the named database's, so a CI run
/// can drop whatever a failed test left behind.
pub struct PgDatabase {
    /// The maintenance database, to create and drop test databases from.
    maintenance: PgConnectOptions,
    /// The test database.
    pub options: PgConnectOptions,
    name: String,
    pub store: PostgresStore,
}

impl PgDatabase {
    /// The fresh database, or `None` (after printing why) when there is no server to use.
    pub async fn create() -> Option<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let url = std::env::var("ENS_IMAGES_TEST_DATABASE_URL").unwrap_or_default();
        if url.is_empty() {
            println!("{PG_SKIPPED}");
            return None;
        }
        let base: PgConnectOptions = url.parse().unwrap();
        let maintenance = base.clone().database("postgres");
        let connected =
            tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&maintenance)).await;
        let mut admin = match connected {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => {
                println!(
                    "{PG_SKIPPED}: {}",
                    ens_store::redact_secrets(&error.to_string(), &url)
                );
                return None;
            }
            Err(_) => {
                println!("{PG_SKIPPED}: no answer within 5 s");
                return None;
            }
        };
        let prefix: String = base
            .get_database()
            .unwrap_or("ens")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(30)
            .collect::<String>()
            .to_ascii_lowercase();
        let name = format!(
            "{prefix}_{}_{}_{}",
            std::process::id(),
            OffsetDateTime::now_utc().unix_timestamp(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let options = base.database(&name);
        let store = PostgresStore::connect_with(options.clone(), 4).await.unwrap();
        Some(Self {
            maintenance,
            options,
            name,
            store,
        })
    }

    /// Another store on the same database: a second server replica.
    pub async fn replica(&self) -> PostgresStore {
        PostgresStore::connect_with(self.options.clone(), 4)
            .await
            .unwrap()
    }

    /// Closes the store and drops the database (a failure to drop is reported, not fatal).
    pub async fn drop(self) {
        self.store.close().await;
        let dropped = async {
            let mut admin = PgConnection::connect_with(&self.maintenance).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name))
                .execute(&mut admin)
                .await?;
            admin.close().await
        };
        if let Err(error) = dropped.await {
            println!("could not drop test database {}: {error}", self.name);
        }
    }
}
