//! Test support shared by the storage test crates: a fresh PostgreSQL database per test.
//! Each test crate compiles this module on its own and uses part of it.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "shared by several test crates, each using a part; fixtures fail loudly"
)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ens_domain::{AccountId, ImageQuery, PageNumber, PageRequest, PageSize};
use ens_store::{RequestStore, Store};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use time::OffsetDateTime;

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
    pub store: Store,
}

impl PgDatabase {
    /// The fresh database. The PostgreSQL cases are ignored unless asked for, so asking for
    /// one without a reachable server is a failure, named with its cause.
    pub async fn create() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let url = std::env::var("ENS_IMAGES_TEST_DATABASE_URL")
            .expect("this PostgreSQL case needs ENS_IMAGES_TEST_DATABASE_URL=postgres://...");
        let base: PgConnectOptions = url.parse().unwrap();
        let maintenance = base.clone().database("postgres");
        let connected =
            tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&maintenance)).await;
        let mut admin = match connected {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => panic!(
                "PostgreSQL at {} refused: {}",
                ens_store::redact_database_url(&url),
                ens_store::redact_secrets(&error.to_string(), &url)
            ),
            Err(_) => panic!(
                "PostgreSQL at {} gave no answer within 5 s",
                ens_store::redact_database_url(&url)
            ),
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
        let store = Store::connect_postgres_with(options.clone(), 4).await.unwrap();
        Self {
            maintenance,
            options,
            name,
            store,
        }
    }

    /// Another store on the same database: a second server replica.
    pub async fn replica(&self) -> Store {
        Store::connect_postgres_with(self.options.clone(), 4)
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

/// Page `number` of `size` items.
pub fn page(number: u32, size: u32) -> PageRequest {
    PageRequest {
        number: PageNumber::parse(Some(&number.to_string())).unwrap(),
        size: PageSize::parse(Some(&size.to_string()), 10, 50).unwrap(),
    }
}

/// An unfiltered DescribeImages query of `viewer`.
pub fn query(viewer: &AccountId, number: u32, size: u32) -> ImageQuery {
    ImageQuery {
        viewer: viewer.clone(),
        node: None,
        image_id: None,
        image_name: None,
        snapshot_id: None,
        page: page(number, size),
    }
}

/// How many images `viewer` lists over all nodes.
pub async fn total(store: &Store, viewer: &AccountId) -> u64 {
    store
        .describe_images(&query(viewer, 1, 10))
        .await
        .unwrap()
        .total_count
}
