//! The synthetic catalog generator, checked through the store's own reads and against the
//! listing invariant, on SQLite and (with ENS_IMAGES_TEST_DATABASE_URL) on PostgreSQL.

#![allow(
    clippy::unwrap_used,
    reason = "test fixtures: a failed setup step should fail the test loudly"
)]

mod support;

use ens_domain::{
    AccessKeyId, AccountId, DiskDeviceMapping, Image, ImageId, ImageOwnerAlias, ImageStatus, NodeId,
};
use ens_store::generate::generate_catalog;
use ens_store::{AdminStore, GenerateSpec, RequestStore, SelfImageQuery, Store, StoreError};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, PgConnection, SqliteConnection};
use support::{page, query, total, PgDatabase};
use time::macros::datetime;
use time::OffsetDateTime;

const NOW: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);
/// Public images and nodes, as the built-in catalog has.
const PUBLIC_IMAGES: u64 = 13;
const NODES: usize = 18;

fn spec() -> GenerateSpec {
    GenerateSpec {
        images: 500,
        accounts: 20,
        heavy_images: 100,
        shares: 30,
        seed: 7,
        now: NOW,
    }
}

fn node(index: usize) -> NodeId {
    NodeId::parse("EnsRegionId", &format!("cn-test-{index:02}")).unwrap()
}

/// A store as first start leaves it: 18 nodes, 13 public images (some on every node, some
/// on a few) and the owner account.
async fn first_started(store: &Store) {
    let nodes: Vec<NodeId> = (0..NODES).map(node).collect();
    let public: Vec<Image> = (0..PUBLIC_IMAGES)
        .map(|index| {
            let on = if index < 11 {
                nodes.clone()
            } else {
                nodes[..3].to_vec()
            };
            Image {
                id: ImageId::parse(&format!("public_{index}")).unwrap(),
                name: format!("public_{index}"),
                owner: None,
                architecture: "x86_64".into(),
                platform: "centos".into(),
                os_type: "linux".into(),
                size_gib: 20,
                creation_time: NOW,
                snapshot_id: None,
                nodes: on,
                disk_device_mappings: vec![DiskDeviceMapping {
                    disk_type: "system".into(),
                    size_gib: 20,
                    format: "qcow2".into(),
                    image_id: format!("public_{index}"),
                }],
                status: ImageStatus::Available,
                instance_id: None,
                compute_type: "ens_vm".into(),
                os_version: "7.9".into(),
                description: String::new(),
            }
        })
        .collect();
    store.replace_catalog(&nodes, &public).await.unwrap();
    let owner = AccountId::parse("AccountId", "1234567890123456").unwrap();
    store
        .create_account_with_key(&owner, &AccessKeyId::parse("AKOWNER").unwrap(), "secret", NOW)
        .await
        .unwrap();
}

/// Every image `viewer` lists (on `node`, or on all nodes), walking pages of 50.
async fn listing(store: &Store, viewer: &AccountId, node: Option<&NodeId>) -> Vec<String> {
    let mut ids = Vec::new();
    for number in 1.. {
        let mut q = query(viewer, number, 50);
        q.node = node.cloned();
        let found = store.describe_images(&q).await.unwrap();
        if found.items.is_empty() {
            break;
        }
        ids.extend(found.items.iter().map(|view| view.image.id.as_str().to_owned()));
    }
    ids
}

/// The owner of image `index` of [`spec`], by the documented layout: the heavy account owns
/// the first 100, then each ordinary account 20 in turn.
fn owner_of(index: u64) -> AccountId {
    let spec = spec();
    if index < spec.heavy_images {
        spec.heavy_account().unwrap()
    } else {
        spec.ordinary_account((index - spec.heavy_images) / 20).unwrap()
    }
}

/// The images [`spec`] shares: one every `images / shares`, rounded down.
fn shared_indexes() -> Vec<u64> {
    let spec = spec();
    (0..spec.shares).map(|s| s * spec.images / spec.shares).collect()
}

/// SQL access beside the store, to check the listing tables themselves.
enum Raw {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl Raw {
    async fn count(&mut self, sql: &str) -> i64 {
        match self {
            Self::Sqlite(conn) => sqlx::query_scalar(sql).fetch_one(conn).await.unwrap(),
            Self::Postgres(conn) => sqlx::query_scalar(sql).fetch_one(conn).await.unwrap(),
        }
    }

    /// Fails unless every listing row has its dense position in image order within its
    /// (scope, node) and every count is the exact number of rows.
    async fn assert_listings_consistent(&mut self) {
        let misplaced = self
            .count(
                "SELECT count(*) FROM (SELECT position, \
                 row_number() OVER (PARTITION BY scope, node_id ORDER BY image_seq) - 1 AS expected \
                 FROM image_listing) AS numbered WHERE position IS DISTINCT FROM expected",
            )
            .await;
        assert_eq!(misplaced, 0, "listing rows without their dense position");
        let miscounted = self
            .count(
                "SELECT count(*) FROM listing_counts c WHERE c.count <> \
                 (SELECT count(*) FROM image_listing l WHERE l.scope = c.scope AND l.node_id = c.node_id)",
            )
            .await;
        assert_eq!(miscounted, 0, "listing counts that are not the row count");
        let uncounted = self
            .count(
                "SELECT count(*) FROM (SELECT DISTINCT scope, node_id FROM image_listing) AS listed \
                 WHERE NOT EXISTS (SELECT 1 FROM listing_counts c \
                 WHERE c.scope = listed.scope AND c.node_id = listed.node_id)",
            )
            .await;
        assert_eq!(uncounted, 0, "listings without a count");
    }
}

async fn counts_pages_and_positions_match_the_layout(store: &Store, raw: &mut Raw) {
    first_started(store).await;
    let spec = spec();
    let made = generate_catalog(store, &spec).await.unwrap();
    let heavy = spec.heavy_account().unwrap();
    assert_eq!(made.heavy.account, heavy);
    assert_eq!(made.heavy.image_id, Some(spec.image_id(0).unwrap()));
    assert_eq!(
        made.heavy.image_name.as_deref(),
        Some(format!("app-{heavy}-000000").as_str())
    );
    let first = made.ordinary.clone().unwrap();
    assert_eq!(first.account, spec.ordinary_account(0).unwrap());
    assert_eq!(first.image_id, Some(spec.image_id(100).unwrap()));

    // The heavy account receives no share: 13 public and its 100.
    let top = store.describe_images(&query(&heavy, 1, 10)).await.unwrap();
    assert_eq!(top.total_count, PUBLIC_IMAGES + 100);
    // A deep page: past the public images, ranks 47 to 56 in image order.
    let deep = store.describe_images(&query(&heavy, 7, 10)).await.unwrap();
    let expected: Vec<String> = (47..57)
        .map(|rank| spec.image_id(rank).unwrap().as_str().to_owned())
        .collect();
    let got: Vec<String> = deep
        .items
        .iter()
        .map(|view| view.image.id.as_str().to_owned())
        .collect();
    assert_eq!(got, expected);
    assert!(deep
        .items
        .iter()
        .all(|view| view.alias == ImageOwnerAlias::SelfOwned));
    assert_eq!(deep.items[0].image.name, format!("app-{heavy}-000047"));
    assert_eq!(deep.items[0].image.disk_device_mappings.len(), 1);
    assert!((1..=3).contains(&deep.items[0].image.nodes.len()));

    // Each ordinary account lists 13 public, its own 20 and what it was shared, and each
    // received share is a custom image it does not own.
    let mut received = 0;
    for index in 0..spec.accounts {
        let account = spec.ordinary_account(index).unwrap();
        let mine = store
            .describe_self_images(&SelfImageQuery {
                viewer: account.clone(),
                image_id_contains: None,
                image_name_contains: None,
                snapshot_id: None,
                page: page(1, 50),
            })
            .await
            .unwrap();
        let shared_in = mine.total_count - 20;
        received += shared_in;
        let listed = store.describe_images(&query(&account, 1, 10)).await.unwrap();
        assert_eq!(
            listed.total_count,
            PUBLIC_IMAGES + 20 + shared_in,
            "account {account}"
        );
    }
    assert_eq!(received, spec.shares);

    // Every node listing of the heavy account holds exactly its images on that node, in order.
    let mut on_nodes = 0;
    for index in 0..NODES {
        let here = node(index);
        let listed: Vec<String> = listing(store, &heavy, Some(&here))
            .await
            .into_iter()
            .filter(|id| id.starts_with("m-"))
            .collect();
        let mut expected = Vec::new();
        for rank in 0..100 {
            let id = spec.image_id(rank).unwrap();
            let image = store.visible_image(&heavy, &id).await.unwrap().unwrap();
            if image.image.nodes.contains(&here) {
                expected.push(id.as_str().to_owned());
            }
        }
        on_nodes += expected.len();
        assert_eq!(listed, expected, "node {here}");
    }
    assert!((100..=300).contains(&on_nodes));
    raw.assert_listings_consistent().await;
    assert_eq!(raw.count("SELECT count(*) FROM image_shares").await, 30);
    if let Raw::Postgres(_) = raw {
        // Analyzed before the generator returns: the planner knows every new row.
        for table in ["images", "image_nodes", "image_listing"] {
            let planned = raw
                .count(&format!(
                    "SELECT reltuples::bigint FROM pg_class WHERE relname = '{table}'"
                ))
                .await;
            let rows = raw.count(&format!("SELECT count(*) FROM {table}")).await;
            assert_eq!(planned, rows, "planner statistics of {table}");
        }
    }
}

async fn shares_reach_their_recipients_only(store: &Store) {
    first_started(store).await;
    let spec = spec();
    generate_catalog(store, &spec).await.unwrap();
    let heavy = spec.heavy_account().unwrap();
    for index in shared_indexes() {
        let id = spec.image_id(index).unwrap();
        let owner = owner_of(index);
        let shares = store.image_shares(&owner, &id, None, page(1, 50)).await.unwrap();
        assert_eq!(shares.total_count, 1, "image {index}");
        let recipient = shares.items[0].account.clone();
        assert_ne!(recipient, owner);
        assert_ne!(recipient, heavy, "only ordinary accounts receive shares");
        let image = store.visible_image(&recipient, &id).await.unwrap().unwrap();
        assert_eq!(image.alias, ImageOwnerAlias::Others);
        let everywhere = listing(store, &recipient, None).await;
        assert!(everywhere.contains(&id.as_str().to_owned()), "image {index}");
        let on_first_node = listing(store, &recipient, image.image.nodes.first()).await;
        assert!(on_first_node.contains(&id.as_str().to_owned()), "image {index}");
    }
    // An image shared with nobody: found by ID for its owner, for nobody else.
    let lonely = 251;
    assert!(!shared_indexes().contains(&lonely));
    let id = spec.image_id(lonely).unwrap();
    let owner = owner_of(lonely);
    let mut by_id = query(&owner, 1, 10);
    by_id.image_id = Some(id.clone());
    let found = store.describe_images(&by_id).await.unwrap();
    assert_eq!(found.total_count, 1);
    assert_eq!(found.items[0].image.id, id);
    assert_eq!(found.items[0].image.owner.as_ref(), Some(&owner));
    for stranger in [heavy, spec.ordinary_account(0).unwrap()] {
        assert_ne!(stranger, owner);
        by_id.viewer = stranger;
        assert_eq!(store.describe_images(&by_id).await.unwrap().total_count, 0);
    }
}

async fn instances_run_their_accounts_first_os(store: &Store) {
    first_started(store).await;
    let spec = spec();
    let made = generate_catalog(store, &spec).await.unwrap();
    let nodes = store.nodes().await.unwrap();
    for sample in [made.heavy, made.ordinary.unwrap()] {
        let instance = store.instance(&sample.instance_id).await.unwrap().unwrap();
        assert_eq!(instance.owner, sample.account);
        assert!(nodes.contains(&instance.node));
        let image = store
            .visible_image(&sample.account, sample.image_id.as_ref().unwrap())
            .await
            .unwrap()
            .unwrap()
            .image;
        assert_eq!(sample.image_name.as_ref(), Some(&image.name));
        assert_eq!(sample.image_node.as_ref(), image.nodes.first());
        assert_eq!(
            (
                &instance.platform,
                &instance.os_type,
                &instance.os_version,
                &instance.architecture
            ),
            (
                &image.platform,
                &image.os_type,
                &image.os_version,
                &image.architecture
            )
        );
    }
    let (instances, _) = store.sources().await.unwrap();
    assert_eq!(instances.len() as u64, spec.accounts + 1);
}

async fn the_same_seed_twice_conflicts_and_another_adds_a_catalog(store: &Store, raw: &mut Raw) {
    first_started(store).await;
    let spec = spec();
    generate_catalog(store, &spec).await.unwrap();
    let again = generate_catalog(store, &spec).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let second = GenerateSpec {
        seed: 8,
        ..spec.clone()
    };
    let made = generate_catalog(store, &second).await.unwrap();
    assert_ne!(made.heavy.account, spec.heavy_account().unwrap());
    assert_eq!(
        store
            .describe_images(&query(&made.heavy.account, 1, 10))
            .await
            .unwrap()
            .total_count,
        PUBLIC_IMAGES + 100
    );
    assert_eq!(
        raw.count("SELECT count(*) FROM images WHERE owner_id IS NOT NULL")
            .await,
        1000
    );
    raw.assert_listings_consistent().await;
}

async fn bad_shapes_and_a_store_without_nodes_are_refused(store: &Store) {
    let refused = |result: Result<ens_store::GeneratedCatalog, StoreError>| {
        assert!(matches!(result, Err(StoreError::Invalid(_))), "{result:?}");
    };
    refused(generate_catalog(store, &spec()).await);
    first_started(store).await;
    let spec = spec();
    let shapes = [
        GenerateSpec {
            heavy_images: 501,
            ..spec.clone()
        },
        GenerateSpec {
            accounts: 1,
            heavy_images: 0,
            ..spec.clone()
        },
        GenerateSpec {
            accounts: 0,
            ..spec.clone()
        },
        GenerateSpec {
            shares: 501,
            ..spec.clone()
        },
    ];
    for shape in &shapes {
        refused(generate_catalog(store, shape).await);
    }
    // Nothing was written by the refused calls.
    let heavy = spec.heavy_account().unwrap();
    assert!(store
        .instance(&format!("i-gen{:06}{:014}", spec.seed, 0))
        .await
        .unwrap()
        .is_none());
    assert_eq!(total(store, &heavy).await, PUBLIC_IMAGES);
    // Only the heavy account, all images its own, no shares: fine.
    let alone = GenerateSpec {
        images: 40,
        accounts: 0,
        heavy_images: 40,
        shares: 0,
        ..spec
    };
    let made = generate_catalog(store, &alone).await.unwrap();
    assert!(made.ordinary.is_none());
    assert_eq!(total(store, &heavy).await, PUBLIC_IMAGES + 40);
}

macro_rules! generator_suite {
    ($($case:ident($($raw:ident)?)),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let path = dir.path().join("store.db");
                    let store = super::Store::open_sqlite(&path).await.unwrap();
                    $(
                        let options = super::SqliteConnectOptions::new().filename(&path);
                        let mut $raw = super::Raw::Sqlite(
                            <super::SqliteConnection as super::Connection>::connect_with(&options).await.unwrap(),
                        );
                    )?
                    super::$case(&store $(, &mut $raw)?).await;
                }
            )*
        }
        mod postgres {
            $(
                #[ignore = "needs PostgreSQL: scripts/test.sh runs it when ENS_IMAGES_TEST_DATABASE_URL is set"]
                #[tokio::test]
                async fn $case() {
                    let database = super::PgDatabase::create().await;
                    $(
                        let mut $raw = super::Raw::Postgres(
                            <super::PgConnection as super::Connection>::connect_with(&database.options)
                                .await
                                .unwrap(),
                        );
                    )?
                    super::$case(&database.store $(, &mut $raw)?).await;
                    $(drop($raw);)?
                    database.drop().await;
                }
            )*
        }
    };
}

generator_suite!(
    counts_pages_and_positions_match_the_layout(raw),
    shares_reach_their_recipients_only(),
    instances_run_their_accounts_first_os(),
    the_same_seed_twice_conflicts_and_another_adds_a_catalog(raw),
    bad_shapes_and_a_store_without_nodes_are_refused(),
);

#[test]
fn generated_ids_have_the_documented_shapes() {
    let spec = spec();
    assert_eq!(spec.heavy_account().unwrap().as_str(), "880000070000000000");
    assert_eq!(spec.ordinary_account(19).unwrap().as_str(), "880000070000000020");
    assert!(spec.ordinary_account(20).is_err());
    let id = spec.image_id(499).unwrap();
    assert_eq!(id.as_str(), "m-gen0000070000000000000499");
    let suffix = id.as_str().strip_prefix("m-").unwrap();
    assert_eq!(suffix.len(), 25);
    assert!(suffix
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    assert!(spec.image_id(500).is_err());
}

/// Both engines, given the same generated catalog, answer every page of DescribeImages (over
/// all nodes and per node, unfiltered and by exact filters) and of DescribeSelfImages equal
/// in every field: they run one store logic, so nothing may differ but the engine.
#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test.sh runs it when ENS_IMAGES_TEST_DATABASE_URL is set"]
async fn both_engines_describe_the_same_catalog_identically() {
    let sqlite = Store::temporary().await.unwrap();
    let database = PgDatabase::create().await;
    let spec = spec();
    for store in [&sqlite, &database.store] {
        first_started(store).await;
        generate_catalog(store, &spec).await.unwrap();
    }
    let mut viewers = vec![spec.heavy_account().unwrap()];
    viewers.extend((0..6).map(|index| spec.ordinary_account(index).unwrap()));
    let nodes = sqlite.nodes().await.unwrap();
    assert_eq!(nodes, database.store.nodes().await.unwrap());
    let mut compared = 0;
    for viewer in &viewers {
        let mut queries = Vec::new();
        for node in std::iter::once(None).chain(nodes.iter().take(3).map(Some)) {
            for number in 1..=6 {
                let mut listing = query(viewer, number, 50);
                listing.node = node.cloned();
                queries.push(listing);
            }
        }
        let first = sqlite.describe_images(&query(viewer, 1, 50)).await.unwrap();
        for view in first.items.iter().step_by(7) {
            let mut by_id = query(viewer, 1, 10);
            by_id.image_id = Some(view.image.id.clone());
            let mut by_name = query(viewer, 1, 10);
            by_name.image_name = Some(view.image.name.clone());
            by_name.node = Some(view.region.clone());
            queries.extend([by_id, by_name]);
        }
        for listing in &queries {
            let expected = sqlite.describe_images(listing).await.unwrap();
            let found = database.store.describe_images(listing).await.unwrap();
            assert_eq!(expected, found, "DescribeImages {listing:?}");
            compared += expected.items.len();
        }
        for (number, name) in [(1, None), (2, None), (1, Some("-00000"))] {
            let own = SelfImageQuery {
                viewer: viewer.clone(),
                image_id_contains: None,
                image_name_contains: name.map(str::to_owned),
                snapshot_id: None,
                page: page(number, 50),
            };
            let expected = sqlite.describe_self_images(&own).await.unwrap();
            assert_eq!(
                expected,
                database.store.describe_self_images(&own).await.unwrap(),
                "{own:?}"
            );
            compared += expected.items.len();
        }
    }
    assert!(compared > 1000, "only {compared} items compared");
    database.drop().await;
}
