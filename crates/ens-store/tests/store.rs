//! One storage suite, written against the `Store` trait so every backend runs the same cases.

#![allow(
    clippy::unwrap_used,
    reason = "test fixtures: a failed setup step should fail the test loudly"
)]

mod support;

use ens_domain::{AccessKeyId, AccountId, DiskDeviceMapping, Image, ImageId, ImageOwnerAlias, NodeId};
use ens_domain::{
    AccessKeyStatus, BuildFailure, ImageError, ImageStatus, Instance, Principal, RamUserName, Snapshot,
};
use ens_store::{
    AdminStore, AuditEntry, AuditFilter, NewImage, NonceClaim, RequestStore, SelfImageQuery, Store,
    StoreError,
};
use support::{query, total, PgDatabase};
use time::macros::datetime;
use time::OffsetDateTime;

const NOW: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);

fn account(id: &str) -> AccountId {
    AccountId::parse("AccountId", id).unwrap()
}

fn node(id: &str) -> NodeId {
    NodeId::parse("EnsRegionId", id).unwrap()
}

fn image(id: &str, owner: Option<&AccountId>, nodes: &[&str]) -> Image {
    Image {
        id: ImageId::parse(id).unwrap(),
        name: format!("name_{id}"),
        owner: owner.cloned(),
        architecture: "x86_64".into(),
        platform: "centos".into(),
        os_type: "linux".into(),
        size_gib: 20,
        creation_time: NOW,
        snapshot_id: Some(format!("sp-{id}")),
        nodes: nodes.iter().map(|n| node(n)).collect(),
        disk_device_mappings: vec![DiskDeviceMapping {
            disk_type: "system".into(),
            size_gib: 20,
            format: "qcow2".into(),
            image_id: id.into(),
        }],
        status: ImageStatus::Available,
        instance_id: None,
        compute_type: "ens_vm".into(),
        os_version: "7.9".into(),
        description: String::new(),
    }
}

/// Creates a custom image of `owner` named `name`; returns its generated ID.
async fn create(store: &Store, owner: &AccountId, name: &str, nodes: &[&str]) -> ImageId {
    let mut custom = image("m-placeholder", Some(owner), nodes);
    custom.name = name.into();
    custom.snapshot_id = Some(format!("sp-{name}"));
    let made = store
        .create_image(NewImage {
            image: custom,
            build_due_at: None,
            build_failure: None,
            release_instance: None,
        })
        .await
        .unwrap();
    made.id
}

fn names(page: &ens_domain::Page<ens_domain::ImageView>) -> Vec<String> {
    page.items.iter().map(|v| v.image.name.clone()).collect()
}

fn ids(page: &ens_domain::Page<ens_domain::ImageView>) -> Vec<String> {
    page.items
        .iter()
        .map(|v| v.image.id.as_str().to_owned())
        .collect()
}

/// Two accounts, a catalog of 7 public images over two nodes, custom images for each.
async fn seeded(store: &Store) -> (AccountId, AccountId) {
    let alice = account("1000000000000001");
    let bob = account("1000000000000002");
    for (who, key) in [(&alice, "AKALICE"), (&bob, "AKBOB")] {
        store
            .create_account_with_key(who, &AccessKeyId::parse(key).unwrap(), "secret", NOW)
            .await
            .unwrap();
    }
    let nodes = [node("cn-dalian-unicom"), node("cn-hangzhou-telecom")];
    let catalog: Vec<Image> = (0..7)
        .map(|i| {
            let on: &[&str] = if i % 2 == 0 {
                &["cn-dalian-unicom", "cn-hangzhou-telecom"]
            } else {
                &["cn-hangzhou-telecom"]
            };
            image(&format!("sys_{i}"), None, on)
        })
        .collect();
    store.replace_catalog(&nodes, &catalog).await.unwrap();
    create(store, &alice, "alice1", &["cn-dalian-unicom"]).await;
    create(store, &bob, "bob1", &["cn-hangzhou-telecom"]).await;
    create(store, &alice, "alice2", &["cn-hangzhou-telecom"]).await;
    (alice, bob)
}

async fn walking_pages_returns_every_visible_image_once(store: &Store) {
    let (alice, _) = seeded(store).await;
    for size in [1, 2, 3, 4, 9, 50] {
        let mut seen = Vec::new();
        for number in 1..=20 {
            let page = store.describe_images(&query(&alice, number, size)).await.unwrap();
            assert_eq!(page.total_count, 9, "size {size}");
            seen.extend(names(&page));
        }
        let expected: Vec<String> = (0..7)
            .map(|i| format!("name_sys_{i}"))
            .chain(["alice1".into(), "alice2".into()])
            .collect();
        assert_eq!(seen, expected, "size {size}");
    }
}

/// Every page of a listing, one image per page: each page is found by its position alone.
async fn walk_one_by_one(store: &Store, viewer: &AccountId, node: Option<&str>) -> Vec<String> {
    let mut walked = Vec::new();
    for number in 1..=20 {
        let mut single = query(viewer, number, 1);
        single.node = node.map(self::node);
        walked.extend(names(&store.describe_images(&single).await.unwrap()));
    }
    walked
}

/// The seeded catalog's public images by name, then `own`: a whole listing walk of an
/// account of [`seeded`].
fn public_then(own: &[&str]) -> Vec<String> {
    (0..7)
        .map(|i| format!("name_sys_{i}"))
        .chain(own.iter().map(|name| (*name).to_owned()))
        .collect()
}

async fn positions_stay_dense_when_older_images_are_shared_and_images_leave(store: &Store) {
    let (alice, bob) = seeded(store).await;
    // bob1 is older than alice2: shared with alice, it goes between her two images.
    let bob1 = find(store, &bob, "bob1").await;
    store
        .modify_image_shares(&bob, &bob1, std::slice::from_ref(&alice), &[], NOW)
        .await
        .unwrap();
    assert_eq!(
        walk_one_by_one(store, &alice, None).await,
        public_then(&["alice1", "bob1", "alice2"])
    );
    let on_hangzhou = walk_one_by_one(store, &alice, Some("cn-hangzhou-telecom")).await;
    assert_eq!(on_hangzhou.len(), 7 + 2);
    assert_eq!(on_hangzhou[7..], ["bob1", "alice2"]);
    // Leaving the listing closes the gap: by deletion, and by the end of a share.
    let alice1 = find(store, &alice, "alice1").await;
    store.delete_image(&alice, &alice1).await.unwrap();
    assert_eq!(
        walk_one_by_one(store, &alice, None).await,
        public_then(&["bob1", "alice2"])
    );
    store
        .modify_image_shares(&bob, &bob1, &[], std::slice::from_ref(&alice), NOW)
        .await
        .unwrap();
    assert_eq!(
        walk_one_by_one(store, &alice, None).await,
        public_then(&["alice2"])
    );
    let page = store.describe_images(&query(&alice, 1, 50)).await.unwrap();
    assert_eq!(page.total_count, 8);
}

async fn node_filter_uses_the_node_listing(store: &Store) {
    let (alice, _) = seeded(store).await;
    let mut q = query(&alice, 1, 50);
    q.node = Some(node("cn-dalian-unicom"));
    let page = store.describe_images(&q).await.unwrap();
    assert_eq!(
        names(&page),
        ["name_sys_0", "name_sys_2", "name_sys_4", "name_sys_6", "alice1"]
    );
    assert_eq!(page.total_count, 5);
    assert!(page.items.iter().all(|v| v.region.as_str() == "cn-dalian-unicom"));
    // One image per page: every page of a node's listing is found by position.
    let mut walked = Vec::new();
    for number in 1..=6 {
        let mut single = query(&alice, number, 1);
        single.node = Some(node("cn-dalian-unicom"));
        walked.extend(names(&store.describe_images(&single).await.unwrap()));
    }
    assert_eq!(
        walked,
        ["name_sys_0", "name_sys_2", "name_sys_4", "name_sys_6", "alice1"]
    );
}

async fn owner_alias_and_visibility_follow_the_viewer(store: &Store) {
    let (alice, bob) = seeded(store).await;
    let page = store.describe_images(&query(&bob, 1, 50)).await.unwrap();
    assert_eq!(page.total_count, 8);
    assert!(!names(&page).iter().any(|name| name.starts_with("alice")));
    let alice2 = find(store, &alice, "alice2").await;
    let share = [bob.clone()];
    store
        .modify_image_shares(&alice, &alice2, &share, &[], NOW)
        .await
        .unwrap();
    // Sharing twice changes nothing.
    store
        .modify_image_shares(&alice, &alice2, &share, &[], NOW)
        .await
        .unwrap();
    let page = store.describe_images(&query(&bob, 1, 50)).await.unwrap();
    assert_eq!(page.total_count, 9);
    let aliases: Vec<(String, ImageOwnerAlias)> = page
        .items
        .iter()
        .filter(|v| v.image.owner.is_some())
        .map(|v| (v.image.name.clone(), v.alias))
        .collect();
    assert_eq!(
        aliases,
        [
            ("bob1".to_owned(), ImageOwnerAlias::SelfOwned),
            ("alice2".to_owned(), ImageOwnerAlias::Others)
        ]
    );
    let page = store.describe_images(&query(&alice, 1, 50)).await.unwrap();
    assert!(page.items.iter().all(|v| v.alias != ImageOwnerAlias::Others));
    // Revoking removes it from Bob's view at once.
    store
        .modify_image_shares(&alice, &alice2, &[], &share, NOW)
        .await
        .unwrap();
    let page = store.describe_images(&query(&bob, 1, 50)).await.unwrap();
    assert_eq!(page.total_count, 8);
    assert!(!names(&page).contains(&"alice2".to_owned()));
}

/// The ID of the custom image `name` that `viewer` sees.
async fn find(store: &Store, viewer: &AccountId, name: &str) -> ImageId {
    let page = store.describe_self_images(&self_query(viewer)).await.unwrap();
    page.items
        .iter()
        .find(|v| v.image.name == name)
        .map(|v| v.image.id.clone())
        .unwrap()
}

fn self_query(viewer: &AccountId) -> SelfImageQuery {
    SelfImageQuery {
        viewer: viewer.clone(),
        image_id_contains: None,
        image_name_contains: None,
        snapshot_id: None,
        page: query(viewer, 1, 50).page,
    }
}

async fn exact_filters_combine_and_respect_visibility(store: &Store) {
    let (alice, bob) = seeded(store).await;
    let mut q = query(&bob, 1, 10);
    q.image_id = Some(find(store, &alice, "alice1").await);
    let page = store.describe_images(&q).await.unwrap();
    assert_eq!((page.total_count, page.items.len()), (0, 0));

    let mut q = query(&alice, 1, 10);
    q.image_name = Some("name_sys_3".into());
    let page = store.describe_images(&q).await.unwrap();
    assert_eq!(ids(&page), ["sys_3"]);
    q.node = Some(node("cn-dalian-unicom"));
    let page = store.describe_images(&q).await.unwrap();
    assert_eq!(page.total_count, 0);

    let mut q = query(&alice, 1, 10);
    q.snapshot_id = Some("sp-alice2".into());
    let page = store.describe_images(&q).await.unwrap();
    assert_eq!(names(&page), ["alice2"]);
    let view = &page.items[0];
    assert_eq!(view.region.as_str(), "cn-hangzhou-telecom");
    assert_eq!(view.image.disk_device_mappings.len(), 1);
}

async fn generated_ids_follow_the_cloud_format_and_unknown_nodes_are_refused(store: &Store) {
    let (alice, _) = seeded(store).await;
    let id = find(store, &alice, "alice1").await;
    let suffix = id.as_str().strip_prefix("m-").unwrap();
    assert_eq!(suffix.len(), 25);
    assert!(suffix
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    let nowhere = store
        .create_image(NewImage {
            image: image("m-x", Some(&alice), &["xx-nowhere"]),
            build_due_at: None,
            build_failure: None,
            release_instance: None,
        })
        .await;
    assert!(matches!(nowhere, Err(StoreError::NotFound(_))), "{nowhere:?}");
    // The refused insert left nothing behind.
    let page = store.describe_images(&query(&alice, 1, 50)).await.unwrap();
    assert_eq!(page.total_count, 9);
}

async fn replacing_the_catalog_keeps_custom_images(store: &Store) {
    let (alice, _) = seeded(store).await;
    assert!(store.has_catalog().await.unwrap());
    // Asked first, so that the node set is held when the catalog replaces it.
    assert!(!store.node_exists(&node("cn-new-node")).await.unwrap());
    store
        .replace_catalog(
            &[node("cn-new-node")],
            &[image("sys_new", None, &["cn-new-node"])],
        )
        .await
        .unwrap();
    let page = store.describe_images(&query(&alice, 1, 50)).await.unwrap();
    assert_eq!(names(&page), ["name_sys_new", "alice1", "alice2"]);
    assert_eq!(page.total_count, 3);
    assert!(store.node_exists(&node("cn-new-node")).await.unwrap());
    let nodes: Vec<String> = store
        .nodes()
        .await
        .unwrap()
        .iter()
        .map(|n| n.as_str().to_owned())
        .collect();
    assert_eq!(nodes, ["cn-dalian-unicom", "cn-hangzhou-telecom", "cn-new-node"]);
    assert!(store.node_exists(&node("cn-dalian-unicom")).await.unwrap());
}

/// Claims one nonce alone.
async fn claim(
    store: &Store,
    key: &AccessKeyId,
    nonce: &str,
    now: OffsetDateTime,
    expires_at: OffsetDateTime,
) -> bool {
    let claims = [NonceClaim {
        key: key.clone(),
        nonce: nonce.to_owned(),
        expires_at,
    }];
    let won = store.claim_nonces(&claims, now).await.unwrap();
    assert_eq!(won.len(), 1);
    won[0]
}

async fn a_batch_of_nonce_claims_reports_each_claim(store: &Store) {
    let key = AccessKeyId::parse("AKBATCH").unwrap();
    let later = NOW + time::Duration::minutes(30);
    assert!(claim(store, &key, "used", NOW, later).await);
    let claims: Vec<NonceClaim> = ["fresh-1", "used", "fresh-2"]
        .iter()
        .map(|nonce| NonceClaim {
            key: key.clone(),
            nonce: (*nonce).to_owned(),
            expires_at: later,
        })
        .collect();
    assert_eq!(
        store.claim_nonces(&claims, NOW).await.unwrap(),
        [true, false, true]
    );
    assert_eq!(
        store.claim_nonces(&claims, NOW).await.unwrap(),
        [false, false, false]
    );
    // More claims than one statement carries.
    let many: Vec<NonceClaim> = (0..1300)
        .map(|index| NonceClaim {
            key: key.clone(),
            nonce: format!("bulk-{index}"),
            expires_at: later,
        })
        .collect();
    let won = store.claim_nonces(&many, NOW).await.unwrap();
    assert_eq!(won.len(), 1300);
    assert!(won.iter().all(|claimed| *claimed));
    assert!(!claim(store, &key, "bulk-1299", NOW, later).await);
}

/// Every unexpired nonce on record comes back to a server loading its index, however many
/// (they are read range by range), and expired ones do not.
async fn recorded_nonces_come_back_whole_range_by_range(store: &Store) {
    let key = AccessKeyId::parse("AKLOAD").unwrap();
    let later = NOW + time::Duration::minutes(30);
    let claims: Vec<NonceClaim> = (0..120_001)
        .map(|n| NonceClaim {
            key: key.clone(),
            nonce: format!("n{n}"),
            expires_at: if n % 1000 == 0 { NOW } else { later },
        })
        .collect();
    for chunk in claims.chunks(5_000) {
        store
            .claim_nonces(chunk, NOW - time::Duration::seconds(1))
            .await
            .unwrap();
    }
    let recorded = store.recorded_nonces(NOW).await.unwrap();
    let digests: std::collections::HashSet<i64> = recorded.iter().map(|(digest, _)| *digest).collect();
    assert_eq!(
        recorded.len(),
        120_001 - 121,
        "the 121 claims expiring at NOW are left out"
    );
    assert_eq!(digests.len(), recorded.len(), "no nonce twice");
    assert!(recorded
        .iter()
        .all(|(_, expires_at)| *expires_at == later.unix_timestamp()));
    assert!(digests.contains(&ens_store::nonce_digest("AKLOAD", "n1")));
    assert!(!digests.contains(&ens_store::nonce_digest("AKLOAD", "n1000")));
}

/// Claims the server decided itself and only recorded count like any other: a server
/// loading its index gets them back, the record deciding a claim refuses their replay once
/// they are folded in, and pruning keeps those still in their window.
async fn recorded_claims_are_refused_by_the_record_and_come_back_with_the_index(store: &Store) {
    let key = AccessKeyId::parse("AKLOG").unwrap();
    let nonce = |nonce: &str, expires_at: OffsetDateTime| NonceClaim {
        key: key.clone(),
        nonce: nonce.to_owned(),
        expires_at,
    };
    let digest = |nonce: &str| ens_store::nonce_digest("AKLOG", nonce);
    let (later, much_later) = (NOW + time::Duration::minutes(30), NOW + time::Duration::hours(2));
    store
        .record_nonces(&[
            nonce("logged", later),
            nonce("gone", NOW),
            nonce("kept", much_later),
        ])
        .await
        .unwrap();
    let recorded: std::collections::HashMap<i64, i64> =
        store.recorded_nonces(NOW).await.unwrap().into_iter().collect();
    assert_eq!(recorded.get(&digest("logged")), Some(&later.unix_timestamp()));
    assert!(!recorded.contains_key(&digest("gone")), "expired at NOW");
    assert!(store.nonce_in_use(&nonce("logged", later), NOW).await.unwrap());
    assert!(!store.nonce_in_use(&nonce("gone", later), NOW).await.unwrap());
    store.fold_nonce_log().await.unwrap();
    assert_eq!(
        store
            .claim_nonces(&[nonce("logged", later), nonce("fresh", later)], NOW)
            .await
            .unwrap(),
        [false, true]
    );
    let recorded: std::collections::HashMap<i64, i64> =
        store.recorded_nonces(NOW).await.unwrap().into_iter().collect();
    assert_eq!(recorded.get(&digest("logged")), Some(&later.unix_timestamp()));
    assert!(recorded.contains_key(&digest("fresh")) && recorded.contains_key(&digest("kept")));
    store
        .record_nonces(&[nonce("brief", later), nonce("late", much_later)])
        .await
        .unwrap();
    let after = later + time::Duration::seconds(1);
    assert_eq!(
        store.prune_nonces(after).await.unwrap(),
        4,
        "logged, fresh, gone and brief had expired"
    );
    let recorded: Vec<i64> = store
        .recorded_nonces(after)
        .await
        .unwrap()
        .into_iter()
        .map(|(digest, _)| digest)
        .collect();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert!(recorded.contains(&digest("kept")) && recorded.contains(&digest("late")));
    // A nonce recorded again once its claim expired is kept with its new expiry.
    store.record_nonces(&[nonce("again", NOW)]).await.unwrap();
    store.record_nonces(&[nonce("again", much_later)]).await.unwrap();
    let recorded: std::collections::HashMap<i64, i64> =
        store.recorded_nonces(after).await.unwrap().into_iter().collect();
    assert_eq!(recorded.get(&digest("again")), Some(&much_later.unix_timestamp()));
}

async fn a_nonce_is_claimed_once_per_window(store: &Store) {
    let key = AccessKeyId::parse("AKALICE").unwrap();
    let later = NOW + time::Duration::minutes(30);
    assert!(claim(store, &key, "n1", NOW, later).await);
    assert!(!claim(store, &key, "n1", NOW, later).await);
    let other = AccessKeyId::parse("AKBOB").unwrap();
    assert!(claim(store, &other, "n1", NOW, later).await);
    // After the window the nonce may be used again, and pruning forgets it.
    let after = later + time::Duration::seconds(1);
    assert!(claim(store, &key, "n1", after, after + time::Duration::minutes(30)).await);
    assert_eq!(store.prune_nonces(after).await.unwrap(), 1);
}

async fn access_keys_are_found_with_their_account(store: &Store) {
    let (alice, _) = seeded(store).await;
    let key = store
        .access_key(&AccessKeyId::parse("AKALICE").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(key.principal.account, alice);
    assert_eq!(key.principal.user, None);
    assert_eq!(key.secret, "secret");
    assert!(!format!("{key:?}").contains("secret\""));
    assert!(store
        .access_key(&AccessKeyId::parse("AKNONE").unwrap())
        .await
        .unwrap()
        .is_none());
    assert!(store.has_accounts().await.unwrap());
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_sqlite_store_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Store::open_sqlite(&path).await.unwrap();
    seeded(&store).await;
    for name in ["store.db", "store.db-wal", "store.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{name} is {mode:o}");
    }
}

async fn describe_images_names_one_node_and_other_reads_every_node(store: &Store) {
    let (alice, _) = seeded(store).await;
    let multi = create(
        store,
        &alice,
        "multi",
        &["cn-hangzhou-telecom", "cn-dalian-unicom"],
    )
    .await;
    let both = [node("cn-hangzhou-telecom"), node("cn-dalian-unicom")];
    let listed = store.describe_images(&query(&alice, 1, 50)).await.unwrap();
    let sys_0 = listed
        .items
        .iter()
        .find(|view| view.image.id.as_str() == "sys_0")
        .unwrap();
    assert_eq!(sys_0.image.nodes, [node("cn-dalian-unicom")]);
    let item = listed.items.iter().find(|view| view.image.id == multi).unwrap();
    assert_eq!(
        (item.image.nodes.as_slice(), &item.region),
        (&both[..1], &both[0])
    );
    let seen = store.visible_image(&alice, &multi).await.unwrap().unwrap();
    assert_eq!(seen.image.nodes, both);
    let own = store
        .describe_self_images(&SelfImageQuery {
            viewer: alice.clone(),
            image_id_contains: Some(multi.as_str().to_uppercase()),
            image_name_contains: None,
            snapshot_id: None,
            page: query(&alice, 1, 10).page,
        })
        .await
        .unwrap();
    assert_eq!(own.items.len(), 1);
    assert_eq!(own.items[0].image.nodes, both);
    let public = store.public_images(Some("LINUX")).await.unwrap();
    assert_eq!(public.len(), 7);
    assert_eq!(
        public[0].nodes,
        [node("cn-dalian-unicom"), node("cn-hangzhou-telecom")]
    );
}

async fn builds_advance_in_due_order_then_image_order(store: &Store) {
    let (alice, _) = seeded(store).await;
    let step = std::time::Duration::from_secs(5);
    let mut made = Vec::new();
    // 500 images due later, then 2 due earlier: one call moves at most 500, earliest due
    // first and, among equal due times, in image order.
    for (index, due) in (0..502).map(|index| (index, if index < 500 { 2 } else { 1 })) {
        let mut building = image("m-x", Some(&alice), &["cn-dalian-unicom"]);
        building.status = ImageStatus::Creating;
        building.name = format!("queued{index}");
        let new = NewImage {
            image: building,
            build_due_at: Some(NOW + time::Duration::seconds(due)),
            build_failure: None,
            release_instance: None,
        };
        made.push(store.create_image(new).await.unwrap().id);
    }
    let moved = store
        .advance_image_builds(NOW + time::Duration::seconds(2), step)
        .await
        .unwrap();
    assert_eq!(moved, 500);
    for (index, id) in made.iter().enumerate() {
        let status = store
            .visible_image(&alice, id)
            .await
            .unwrap()
            .unwrap()
            .image
            .status;
        let expected = if (498..500).contains(&index) {
            ImageStatus::Creating
        } else {
            ImageStatus::Packing
        };
        assert_eq!(status, expected, "image {index}");
    }
}

macro_rules! store_suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let store = super::Store::temporary().await.unwrap();
                    super::$case(&store).await;
                }
            )*
        }
        mod sqlite_file {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::Store::open_sqlite(&dir.path().join("store.db")).await.unwrap();
                    super::$case(&store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[ignore = "needs PostgreSQL: scripts/test.sh runs it when ENS_IMAGES_TEST_DATABASE_URL is set"]
                #[tokio::test]
                async fn $case() {
                    let database = super::PgDatabase::create().await;
                    super::$case(&database.store).await;
                    database.drop().await;
                }
            )*
        }
    };
}

async fn builds_advance_once_per_step_and_list_only_when_available(store: &Store) {
    let (alice, _) = seeded(store).await;
    let mut building = image("m-x", Some(&alice), &["cn-dalian-unicom"]);
    building.status = ImageStatus::Creating;
    building.name = "building".into();
    let step = std::time::Duration::from_secs(5);
    let made = store
        .create_image(NewImage {
            image: building,
            build_due_at: Some(NOW + step),
            build_failure: None,
            release_instance: None,
        })
        .await
        .unwrap();
    let status = || async {
        store
            .visible_image(&alice, &made.id)
            .await
            .unwrap()
            .unwrap()
            .image
            .status
    };
    assert_eq!(status().await, ImageStatus::Creating);
    // Not listed by DescribeImages until Available.
    assert_eq!(total(store, &alice).await, 9);
    assert_eq!(store.advance_image_builds(NOW, step).await.unwrap(), 0);
    let mut at = NOW + step;
    for expected in [
        ImageStatus::Packing,
        ImageStatus::Uploading,
        ImageStatus::Available,
    ] {
        assert_eq!(store.advance_image_builds(at, step).await.unwrap(), 1);
        // A second call at the same time moves nothing: each transition happens once.
        assert_eq!(store.advance_image_builds(at, step).await.unwrap(), 0);
        assert_eq!(status().await, expected);
        at += step;
    }
    assert_eq!(total(store, &alice).await, 10);
    assert_eq!(store.advance_image_builds(at + step * 10, step).await.unwrap(), 0);
}

async fn a_failing_source_ends_in_a_failure_status(store: &Store) {
    let (alice, _) = seeded(store).await;
    let mut building = image("m-x", Some(&alice), &["cn-dalian-unicom"]);
    building.status = ImageStatus::Creating;
    let made = store
        .create_image(NewImage {
            image: building,
            build_due_at: Some(NOW),
            build_failure: Some(BuildFailure::Upload),
            release_instance: None,
        })
        .await
        .unwrap();
    let step = std::time::Duration::ZERO;
    for _ in 0..5 {
        store.advance_image_builds(NOW, step).await.unwrap();
    }
    let view = store.visible_image(&alice, &made.id).await.unwrap().unwrap();
    assert_eq!(view.image.status, ImageStatus::UploadFailed);
    // A failed image can be deleted.
    store.delete_image(&alice, &made.id).await.unwrap();
    assert!(store.visible_image(&alice, &made.id).await.unwrap().is_none());
}

async fn delete_and_rename_follow_the_ownership_rules(store: &Store) {
    let (alice, bob) = seeded(store).await;
    let alice1 = find(store, &alice, "alice1").await;
    let denied = store.rename_image(&bob, &alice1, "stolen").await;
    assert!(
        matches!(denied, Err(StoreError::Image(ImageError::NotFound))),
        "{denied:?}"
    );
    store
        .modify_image_shares(&alice, &alice1, std::slice::from_ref(&bob), &[], NOW)
        .await
        .unwrap();
    let denied = store.delete_image(&bob, &alice1).await;
    assert!(
        matches!(denied, Err(StoreError::Image(ImageError::NotOwner))),
        "{denied:?}"
    );
    let public = ImageId::parse("sys_1").unwrap();
    let denied = store.delete_image(&alice, &public).await;
    assert!(
        matches!(denied, Err(StoreError::Image(ImageError::PublicImage))),
        "{denied:?}"
    );
    let shared = store.delete_image(&alice, &alice1).await;
    assert!(
        matches!(shared, Err(StoreError::Image(ImageError::StillShared(1)))),
        "{shared:?}"
    );
    store.rename_image(&alice, &alice1, "renamed").await.unwrap();
    let view = store.visible_image(&bob, &alice1).await.unwrap().unwrap();
    assert_eq!(
        (view.image.name.as_str(), view.alias),
        ("renamed", ImageOwnerAlias::Others)
    );
    store
        .modify_image_shares(&alice, &alice1, &[], std::slice::from_ref(&bob), NOW)
        .await
        .unwrap();
    store.delete_image(&alice, &alice1).await.unwrap();
    assert!(store.visible_image(&alice, &alice1).await.unwrap().is_none());
    assert_eq!(total(store, &alice).await, 8);
}

async fn an_image_run_by_an_instance_cannot_be_deleted(store: &Store) {
    let (alice, _) = seeded(store).await;
    let alice2 = find(store, &alice, "alice2").await;
    let runner = Instance {
        id: "i-runner".into(),
        owner: alice.clone(),
        node: node("cn-hangzhou-telecom"),
        image_id: Some(alice2.clone()),
        platform: "centos".into(),
        os_type: "linux".into(),
        os_version: "7.9".into(),
        architecture: "x86_64".into(),
        compute_type: "ens_vm".into(),
        system_disk_gib: 40,
        data_disks_gib: vec![100, 200],
        build_failure: None,
    };
    store.add_instance(&runner).await.unwrap();
    // A second instance of the same image, whose ID sorts first: the refusal still names
    // the instance registered first, on every engine.
    let second = Instance {
        id: "i-another".into(),
        ..runner.clone()
    };
    store.add_instance(&second).await.unwrap();
    let in_use = store.delete_image(&alice, &alice2).await;
    assert!(
        matches!(&in_use, Err(StoreError::Image(ImageError::InUse(id))) if id == "i-runner"),
        "{in_use:?}"
    );
    let instance = store.instance("i-runner").await.unwrap().unwrap();
    assert_eq!(instance.data_disks_gib, [100, 200]);
    store
        .add_snapshot(&Snapshot {
            id: "sp-1".into(),
            owner: alice.clone(),
            node: node("cn-hangzhou-telecom"),
            instance_id: Some("i-runner".into()),
            platform: "centos".into(),
            os_type: "linux".into(),
            os_version: "7.9".into(),
            architecture: "x86_64".into(),
            size_gib: 40,
            build_failure: Some(BuildFailure::Pack),
        })
        .await
        .unwrap();
    let (instances, snapshots) = store.sources().await.unwrap();
    assert_eq!((instances.len(), snapshots.len()), (2, 1));
    assert_eq!(snapshots[0].build_failure, Some(BuildFailure::Pack));
}

async fn shares_are_listed_filtered_and_bounded(store: &Store) {
    let (alice, bob) = seeded(store).await;
    let alice1 = find(store, &alice, "alice1").await;
    let carol = account("1000000000000003");
    store.create_account(&carol, NOW).await.unwrap();
    store
        .modify_image_shares(&alice, &alice1, &[bob.clone(), carol.clone()], &[], NOW)
        .await
        .unwrap();
    let page = store
        .image_shares(&alice, &alice1, None, query(&alice, 1, 10).page)
        .await
        .unwrap();
    assert_eq!(page.total_count, 2);
    let page = store
        .image_shares(&alice, &alice1, Some(&carol), query(&alice, 1, 10).page)
        .await
        .unwrap();
    assert_eq!(
        page.items.iter().map(|s| s.account.as_str()).collect::<Vec<_>>(),
        [carol.as_str()]
    );
    let to_self = store
        .modify_image_shares(&alice, &alice1, std::slice::from_ref(&alice), &[], NOW)
        .await;
    assert!(
        matches!(to_self, Err(StoreError::Image(ImageError::ShareWithOwner))),
        "{to_self:?}"
    );
    let unknown = account("999");
    let missing = store
        .modify_image_shares(&alice, &alice1, &[unknown], &[], NOW)
        .await;
    assert!(
        matches!(missing, Err(StoreError::Image(ImageError::UnknownAccount(_)))),
        "{missing:?}"
    );
    let not_owner = store
        .image_shares(&bob, &alice1, None, query(&bob, 1, 10).page)
        .await;
    assert!(
        matches!(not_owner, Err(StoreError::Image(ImageError::NotOwner))),
        "{not_owner:?}"
    );
    // Self images: Bob sees his own and the shared one, with fuzzy filters.
    let mut q = self_query(&bob);
    let page = store.describe_self_images(&q).await.unwrap();
    assert_eq!(names(&page), ["alice1", "bob1"]);
    q.image_name_contains = Some("ICE".into());
    assert_eq!(names(&store.describe_self_images(&q).await.unwrap()), ["alice1"]);
    let windows = store.public_images(Some("WINDOWS")).await.unwrap();
    assert!(windows.is_empty());
    assert_eq!(store.public_images(Some("Linux")).await.unwrap().len(), 7);
}

async fn accounts_and_keys_are_listed_without_secrets(store: &Store) {
    let (alice, _) = seeded(store).await;
    let key = AccessKeyId::parse("AKALICE2").unwrap();
    let owner = Principal {
        account: alice.clone(),
        user: None,
    };
    store.create_access_key(&owner, &key, "s2", NOW).await.unwrap();
    let again = store.create_access_key(&owner, &key, "s3", NOW).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let nobody = store
        .create_access_key(
            &Principal {
                account: account("42"),
                user: None,
            },
            &AccessKeyId::parse("AK42").unwrap(),
            "s",
            NOW,
        )
        .await;
    assert!(matches!(nobody, Err(StoreError::NotFound(_))), "{nobody:?}");
    assert_eq!(store.accounts().await.unwrap().len(), 2);
    let keys = store.access_keys(Some(&alice)).await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        ["AKALICE", "AKALICE2"]
    );
    assert_eq!(store.access_keys(None).await.unwrap().len(), 3);
}

async fn ram_users_keys_and_policies_live_and_die_together(store: &Store) {
    let (alice, _) = seeded(store).await;
    let reader = RamUserName::parse("user", "reader").unwrap();
    let user = store.create_ram_user(&alice, &reader, NOW).await.unwrap();
    assert_eq!(user.user_id.len(), 16);
    let twice = store.create_ram_user(&alice, &reader, NOW).await;
    assert!(matches!(twice, Err(StoreError::Conflict(_))), "{twice:?}");
    let principal = Principal {
        account: alice.clone(),
        user: Some(reader.clone()),
    };
    let key = AccessKeyId::parse("AKREADER").unwrap();
    store
        .create_access_key(&principal, &key, "sealed", NOW)
        .await
        .unwrap();
    assert_eq!(
        store.access_key(&key).await.unwrap().unwrap().principal,
        principal
    );
    let ghost = Principal {
        account: alice.clone(),
        user: Some(RamUserName::parse("user", "ghost").unwrap()),
    };
    let missing = store
        .create_access_key(&ghost, &AccessKeyId::parse("AKGHOST").unwrap(), "s", NOW)
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))), "{missing:?}");

    store
        .set_access_key_status(&key, AccessKeyStatus::Inactive)
        .await
        .unwrap();
    assert_eq!(
        store.access_key(&key).await.unwrap().unwrap().status,
        AccessKeyStatus::Inactive
    );
    store
        .set_access_key_status(&key, AccessKeyStatus::Active)
        .await
        .unwrap();

    let document =
        r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"ens:Describe*","Resource":"*"}]}"#;
    store
        .create_policy(&alice, "read-only", document, NOW)
        .await
        .unwrap();
    store.attach_policy(&alice, &reader, "read-only").await.unwrap();
    store.attach_policy(&alice, &reader, "read-only").await.unwrap();
    assert_eq!(
        *store.user_policy_documents(&alice, &reader).await.unwrap(),
        [document]
    );
    let busy = store.delete_policy(&alice, "read-only").await;
    assert!(matches!(busy, Err(StoreError::Conflict(_))), "{busy:?}");
    let policies = store.policies(Some(&alice)).await.unwrap();
    assert_eq!(policies[0].attached_to, std::slice::from_ref(&reader));
    store.detach_policy(&alice, &reader, "read-only").await.unwrap();
    assert!(store
        .user_policy_documents(&alice, &reader)
        .await
        .unwrap()
        .is_empty());
    store.attach_policy(&alice, &reader, "read-only").await.unwrap();

    // Deleting the user takes its keys and attachments with it.
    store.delete_ram_user(&alice, &reader).await.unwrap();
    assert!(store.access_key(&key).await.unwrap().is_none());
    assert!(store.ram_users(Some(&alice)).await.unwrap().is_empty());
    store.delete_policy(&alice, "read-only").await.unwrap();
    let gone = store.delete_access_key(&key).await;
    assert!(matches!(gone, Err(StoreError::NotFound(_))), "{gone:?}");
}

async fn audit_records_are_filtered_newest_first(store: &Store) {
    let (alice, bob) = seeded(store).await;
    let entries: Vec<AuditEntry> = [
        (&alice, "CreateImage", "Success"),
        (&bob, "DeleteImage", "NoPermission"),
        (&alice, "DeleteImage", "Success"),
    ]
    .into_iter()
    .enumerate()
    .map(|(index, (who, action, outcome))| AuditEntry {
        at: NOW + time::Duration::seconds(i64::try_from(index).unwrap()),
        request_id: format!("R{index}"),
        account: Some(who.clone()),
        user: None,
        access_key_id: Some("AK".into()),
        action: action.into(),
        resource: "*".into(),
        source_ip: "127.0.0.1".into(),
        outcome: outcome.into(),
        repeats: u32::try_from(index).unwrap() + 1,
    })
    .collect();
    // One call carries all of them, as the server's group commit sends them.
    store.record_audits(&entries).await.unwrap();
    let all = store
        .audit_entries(&AuditFilter {
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|e| e.request_id.as_str()).collect::<Vec<_>>(),
        ["R2", "R1", "R0"]
    );
    assert_eq!(all.iter().map(|e| e.repeats).collect::<Vec<_>>(), [3, 2, 1]);
    let denied = store
        .audit_entries(&AuditFilter {
            outcome: Some("NoPermission".into()),
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].account, Some(bob));
    let alices_deletes = store
        .audit_entries(&AuditFilter {
            account: Some(alice),
            action: Some("DeleteImage".into()),
            since: Some(NOW),
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        alices_deletes
            .iter()
            .map(|e| e.request_id.as_str())
            .collect::<Vec<_>>(),
        ["R2"]
    );
}

/// An account's reset takes its images out of every listing they were in (its own, and the
/// accounts it shared them with, renumbered densely), keeps the account and its key, and
/// leaves other accounts' images alone; a whole reset keeps only the catalog and one account.
async fn resets_leave_every_listing_dense_and_counted(store: &Store) {
    let (alice, bob) = seeded(store).await;
    let alice1 = find(store, &alice, "alice1").await;
    store
        .modify_image_shares(&alice, &alice1, std::slice::from_ref(&bob), &[], NOW)
        .await
        .unwrap();
    assert_eq!(
        walk_one_by_one(store, &bob, None).await,
        public_then(&["alice1", "bob1"])
    );

    let summary = store.reset_account(&alice).await.unwrap();
    assert_eq!(summary.images, 2);
    assert_eq!(walk_one_by_one(store, &alice, None).await, public_then(&[]));
    assert_eq!(walk_one_by_one(store, &bob, None).await, public_then(&["bob1"]));
    let page = store.describe_images(&query(&bob, 1, 50)).await.unwrap();
    assert_eq!(page.total_count, 8);
    let key = AccessKeyId::parse("AKALICE").unwrap();
    assert!(
        store.access_key(&key).await.unwrap().is_some(),
        "the owner key stays"
    );
    create(store, &alice, "alice3", &["cn-dalian-unicom"]).await;
    assert_eq!(
        walk_one_by_one(store, &alice, None).await,
        public_then(&["alice3"])
    );

    let unknown = store.reset_account(&account("1000000000000009")).await;
    assert!(matches!(unknown, Err(StoreError::NotFound(_))), "{unknown:?}");

    let summary = store.reset_all(&bob).await.unwrap();
    assert_eq!((summary.images, summary.accounts), (2, 1));
    assert!(store.access_key(&key).await.unwrap().is_none());
    assert_eq!(walk_one_by_one(store, &bob, None).await, public_then(&[]));
    let page = store.describe_images(&query(&bob, 1, 50)).await.unwrap();
    assert_eq!(page.total_count, 7);
}

/// Retention removes what is older than the cut, in several transactions when there is more
/// than one transaction's worth, and nothing newer.
async fn audit_records_older_than_the_retention_are_pruned(store: &Store) {
    let entry = |index: usize, at: time::OffsetDateTime| AuditEntry {
        at,
        request_id: format!("R{index}"),
        account: None,
        user: None,
        access_key_id: None,
        action: "DescribeImages".into(),
        resource: "*".into(),
        source_ip: "192.0.2.1".into(),
        outcome: "InvalidAccessKeyId.NotFound".into(),
        repeats: 1,
    };
    let old: Vec<AuditEntry> = (0..12_000)
        .map(|index| {
            entry(
                index,
                NOW - time::Duration::days(100) + time::Duration::milliseconds(index as i64),
            )
        })
        .collect();
    store.record_audits(&old).await.unwrap();
    store.record_audits(&[entry(99_999, NOW)]).await.unwrap();
    let removed = store.prune_audit(NOW - time::Duration::days(90)).await.unwrap();
    assert_eq!(removed, 12_000);
    let left = store
        .audit_entries(&AuditFilter {
            limit: 100,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        left.iter().map(|e| e.request_id.as_str()).collect::<Vec<_>>(),
        ["R99999"]
    );
}

/// Every read the read model answers, answered again from the tables (as when the model
/// cannot answer: the PostgreSQL listener down, the SQLite changes file unreadable): the
/// same pages, totals, nodes and disks, in the same order.
async fn reads_from_the_tables_answer_as_the_model_does(store: &Store) {
    let (alice, bob) = seeded(store).await;
    let mut two_disks = image(
        "m-placeholder",
        Some(&alice),
        &["cn-hangzhou-telecom", "cn-dalian-unicom"],
    );
    two_disks.name = "Alice_Two_Disks".into();
    two_disks.disk_device_mappings.push(DiskDeviceMapping {
        disk_type: "data".into(),
        size_gib: 40,
        format: "raw".into(),
        image_id: "data-disk".into(),
    });
    let two_disks = store
        .create_image(NewImage {
            image: two_disks,
            build_due_at: None,
            build_failure: None,
            release_instance: None,
        })
        .await
        .unwrap()
        .id;
    let carol = account("1000000000000003");
    store
        .create_account_with_key(&carol, &AccessKeyId::parse("AKCAROL").unwrap(), "secret", NOW)
        .await
        .unwrap();
    store
        .modify_image_shares(&alice, &two_disks, std::slice::from_ref(&bob), &[], NOW)
        .await
        .unwrap();
    store
        .modify_image_shares(
            &alice,
            &two_disks,
            std::slice::from_ref(&carol),
            &[],
            NOW + time::Duration::seconds(1),
        )
        .await
        .unwrap();
    let mut named_bob1 = query(&bob, 1, 10);
    named_bob1.image_name = Some("bob1".into());
    let bob1 = ImageId::parse(&ids(&store.describe_images(&named_bob1).await.unwrap())[0]).unwrap();
    let mut share_queries = Vec::new();
    for (caller, image) in [
        (&alice, &two_disks),
        (&bob, &two_disks),
        (&carol, &two_disks),
        (&alice, &bob1),
        (&bob, &bob1),
    ] {
        for (with, number, size) in [
            (None, 1, 1),
            (None, 2, 1),
            (None, 1, 50),
            (Some(&carol), 1, 10),
            (Some(&alice), 1, 10),
        ] {
            share_queries.push((caller, image.clone(), with, support::page(number, size)));
        }
    }
    for missing in ["sys_1", "m-none"] {
        share_queries.push((
            &alice,
            ImageId::parse(missing).unwrap(),
            None,
            support::page(1, 10),
        ));
    }
    let mut queries = Vec::new();
    for viewer in [&alice, &bob] {
        for (number, size) in [(1, 1), (1, 3), (2, 3), (3, 3), (4, 3), (1, 50), (5, 2), (9, 10)] {
            for on in [None, Some("cn-dalian-unicom"), Some("cn-hangzhou-telecom")] {
                let mut paged = query(viewer, number, size);
                paged.node = on.map(node);
                queries.push(paged);
            }
        }
        let mut by_id = query(viewer, 1, 10);
        by_id.image_id = Some(two_disks.clone());
        let mut by_public_id = query(viewer, 1, 10);
        by_public_id.image_id = Some(ImageId::parse("sys_2").unwrap());
        by_public_id.node = Some(node("cn-dalian-unicom"));
        let mut by_name = query(viewer, 1, 10);
        by_name.image_name = Some("alice1".into());
        let mut by_snapshot = query(viewer, 1, 10);
        by_snapshot.snapshot_id = Some("sp-sys_3".into());
        let mut second_page = query(viewer, 2, 1);
        second_page.node = Some(node("cn-hangzhou-telecom"));
        second_page.snapshot_id = Some("sp-Alice_Two_Disks".into());
        queries.extend([by_id, by_public_id, by_name, by_snapshot, second_page]);
    }
    let mut self_queries = Vec::new();
    for viewer in [&alice, &bob] {
        for (id, name, snapshot) in [
            (None, None, None),
            (Some("M-"), None, None),
            (None, Some("DISKS"), None),
            (None, Some("1"), None),
            (None, None, Some("sp-bob1")),
        ] {
            for (number, size) in [(1, 1), (2, 1), (1, 50)] {
                self_queries.push(SelfImageQuery {
                    viewer: viewer.clone(),
                    image_id_contains: id.map(str::to_owned),
                    image_name_contains: name.map(str::to_owned),
                    snapshot_id: snapshot.map(str::to_owned),
                    page: support::page(number, size),
                });
            }
        }
    }
    let os_types = [None, Some("LINUX"), Some("windows")];
    let mut answers = Vec::new();
    for tables in [false, true] {
        if tables {
            store.read_tables_only();
        }
        let mut answer = Vec::new();
        for query in &queries {
            answer.push(format!("{:?}", store.describe_images(query).await.unwrap()));
        }
        for query in &self_queries {
            answer.push(format!("{:?}", store.describe_self_images(query).await.unwrap()));
        }
        for os_type in os_types {
            answer.push(format!("{:?}", store.public_images(os_type).await.unwrap()));
        }
        for (caller, image, with, page) in &share_queries {
            let shares = store.image_shares(caller, image, *with, *page).await;
            answer.push(format!("{shares:?}"));
        }
        answers.push(answer);
    }
    let (model, tables) = (&answers[0], &answers[1]);
    assert_eq!(model.len(), tables.len());
    for (index, (held, read)) in model.iter().zip(tables).enumerate() {
        assert_eq!(held, read, "read {index}");
    }
    // The reads above found something: the two disks and both nodes of the shared image.
    let shared = store
        .describe_self_images(&SelfImageQuery {
            viewer: bob.clone(),
            image_id_contains: Some(two_disks.as_str().to_owned()),
            image_name_contains: None,
            snapshot_id: None,
            page: support::page(1, 10),
        })
        .await
        .unwrap();
    assert_eq!(
        shared.items.len(),
        1,
        "the shared image is one of bob's: {shared:?}"
    );
    let view = &shared.items[0];
    assert_eq!(view.image.nodes.len(), 2);
    assert_eq!(view.image.disk_device_mappings.len(), 2);
    assert_eq!(view.image.disk_device_mappings[1].size_gib, 40);
    let shares = store
        .image_shares(&alice, &two_disks, None, support::page(1, 10))
        .await
        .unwrap();
    let accounts: Vec<&AccountId> = shares.items.iter().map(|share| &share.account).collect();
    assert_eq!(accounts, [&bob, &carol]);
    for (caller, image, error) in [
        (&bob, &two_disks, ImageError::NotOwner),
        (&alice, &bob1, ImageError::NotFound),
        (&alice, &ImageId::parse("sys_1").unwrap(), ImageError::PublicImage),
    ] {
        let refused = store
            .image_shares(caller, image, None, support::page(1, 10))
            .await;
        assert!(
            matches!(refused, Err(StoreError::Image(ref found)) if *found == error),
            "{refused:?}"
        );
    }
}

store_suite!(
    reads_from_the_tables_answer_as_the_model_does,
    resets_leave_every_listing_dense_and_counted,
    audit_records_older_than_the_retention_are_pruned,
    describe_images_names_one_node_and_other_reads_every_node,
    builds_advance_in_due_order_then_image_order,
    ram_users_keys_and_policies_live_and_die_together,
    audit_records_are_filtered_newest_first,
    builds_advance_once_per_step_and_list_only_when_available,
    a_failing_source_ends_in_a_failure_status,
    delete_and_rename_follow_the_ownership_rules,
    an_image_run_by_an_instance_cannot_be_deleted,
    shares_are_listed_filtered_and_bounded,
    accounts_and_keys_are_listed_without_secrets,
    walking_pages_returns_every_visible_image_once,
    positions_stay_dense_when_older_images_are_shared_and_images_leave,
    node_filter_uses_the_node_listing,
    owner_alias_and_visibility_follow_the_viewer,
    exact_filters_combine_and_respect_visibility,
    generated_ids_follow_the_cloud_format_and_unknown_nodes_are_refused,
    replacing_the_catalog_keeps_custom_images,
    a_nonce_is_claimed_once_per_window,
    recorded_nonces_come_back_whole_range_by_range,
    recorded_claims_are_refused_by_the_record_and_come_back_with_the_index,
    a_batch_of_nonce_claims_reports_each_claim,
    access_keys_are_found_with_their_account,
);

/// A backup opens as a store that describes the same images, and never replaces a file.
#[tokio::test]
async fn a_sqlite_backup_is_the_whole_store_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("store.db")).await.unwrap();
    let (alice, bob) = seeded(&store).await;
    let to = dir.path().join("backup.db");
    store.backup(&to).await.unwrap();
    create(&store, &alice, "after-the-backup", &["cn-dalian-unicom"]).await;

    let copy = Store::open_sqlite(&to).await.unwrap();
    assert_eq!(copy.accounts().await.unwrap(), store.accounts().await.unwrap());
    assert_eq!(
        names(&copy.describe_images(&query(&bob, 1, 50)).await.unwrap()),
        names(&store.describe_images(&query(&bob, 1, 50)).await.unwrap())
    );
    let alices = names(&copy.describe_images(&query(&alice, 1, 50)).await.unwrap());
    assert!(alices.contains(&"alice2".to_owned()), "{alices:?}");
    assert!(!alices.contains(&"after-the-backup".to_owned()), "{alices:?}");

    let again = store.backup(&to).await;
    assert!(
        matches!(&again, Err(StoreError::Invalid(why)) if why.contains("exists")),
        "{again:?}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The record of used nonces is reported lost when the nonce file of a store that served
/// before is missing or damaged (a damaged one is set aside) or was marked incomplete, and
/// stays reported until the mark is lifted (the server does so once the window has passed).
#[tokio::test]
async fn a_missing_damaged_or_incomplete_nonce_file_is_reported_as_lost_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let nonce_file = dir.path().join("store.nonces.db");
    let path = &path;
    let reopen = |lift: bool| async move {
        let store = Store::open_sqlite(path).await.unwrap();
        let lost = store.nonce_history_lost();
        if lift {
            store.mark_nonce_record(true).unwrap();
        }
        store.close().await;
        lost
    };
    assert!(!reopen(false).await, "a new store has no history to lose");
    assert!(!reopen(false).await, "an intact nonce file");
    std::fs::remove_file(&nonce_file).unwrap();
    assert!(reopen(false).await, "a missing nonce file");
    assert!(reopen(true).await, "a restart within the window: still lost");
    assert!(!reopen(false).await, "the mark lifted: the new file is whole");

    let store = Store::open_sqlite(path).await.unwrap();
    store.mark_nonce_record(false).unwrap();
    store.close().await;
    drop(store);
    assert!(
        reopen(true).await,
        "claims were accepted that never reached the file"
    );
    assert!(!reopen(false).await);

    std::fs::write(&nonce_file, vec![0x5a_u8; 4096]).unwrap();
    assert!(reopen(false).await, "a damaged nonce file");
    let set_aside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("store.nonces.db.damaged-"))
        .collect();
    assert_eq!(set_aside.len(), 1, "{set_aside:?}");
}

#[ignore = "needs PostgreSQL: scripts/test.sh runs it when ENS_IMAGES_TEST_DATABASE_URL is set"]
#[tokio::test]
async fn a_postgresql_store_is_backed_up_by_pg_dump() {
    let database = PgDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("backup.db");
    let refused = database.store.backup(&to).await;
    assert!(
        matches!(&refused, Err(StoreError::Invalid(why)) if why.contains("pg_dump")),
        "{refused:?}"
    );
    assert!(!to.exists());
    database.drop().await;
}

/// Replica safety: two `Store`s on one database stand for two server processes.
/// These cases exist only for PostgreSQL (SQLite serves one process).
mod postgres_replicas {
    use std::sync::Arc;

    use ens_domain::{AccessKeyId, AccessKeyStatus, ImageError, ImageStatus};
    use ens_store::{AdminStore, NewImage, RequestStore, Store, StoreError};

    use super::claim;
    use tokio::sync::Barrier;

    use super::{create, image, names, query, seeded, PgDatabase, NOW};

    /// The store of task `index`: even tasks use one replica, odd tasks the other.
    fn pick(index: usize, one: &Store, other: &Store) -> Store {
        if index % 2 == 0 {
            one.clone()
        } else {
            other.clone()
        }
    }

    /// Runs `job(index, store)` in `tasks` tasks released together, even ones through `one`
    /// and odd ones through `other`, and returns what they returned, in task order.
    async fn race<T, Fut>(
        tasks: usize,
        one: &Store,
        other: &Store,
        job: impl Fn(usize, Store) -> Fut,
    ) -> Vec<T>
    where
        T: Send + 'static,
        Fut: std::future::Future<Output = T> + Send + 'static,
    {
        let start = Arc::new(Barrier::new(tasks));
        let mut handles = Vec::new();
        for index in 0..tasks {
            let (work, start) = (job(index, pick(index, one, other)), start.clone());
            handles.push(tokio::spawn(async move {
                start.wait().await;
                work.await
            }));
        }
        let mut results = Vec::new();
        for handle in handles {
            results.push(handle.await.unwrap());
        }
        results
    }

    async fn a_nonce_claimed_through_one_replica_is_refused_through_the_other(one: &Store, other: &Store) {
        let key = AccessKeyId::parse("AKALICE").unwrap();
        let later = NOW + time::Duration::minutes(30);
        assert!(claim(one, &key, "n1", NOW, later).await);
        assert!(!claim(other, &key, "n1", NOW, later).await);
        assert!(!claim(one, &key, "n1", NOW, later).await);
        // Claims of one nonce racing through both replicas: exactly one wins.
        for round in 0..20 {
            let nonce = format!("race-{round}");
            let claims = race(8, one, other, |_, store| {
                let (key, nonce) = (key.clone(), nonce.clone());
                async move { claim(&store, &key, &nonce, NOW, later).await }
            })
            .await;
            assert_eq!(claims.iter().filter(|won| **won).count(), 1, "round {round}");
        }
    }

    /// A request on a replica may check a signature with the key as the replica holds it
    /// (`access_key_to_confirm`) while its nonce claim carries the read model's marker; the
    /// key read after the claim must then show what was committed before the claim, here a
    /// key disabled through the other replica.
    async fn a_key_read_before_the_claim_is_confirmed_after_it(one: &Store, other: &Store) {
        seeded(one).await;
        let key = AccessKeyId::parse("AKALICE").unwrap();
        let later = NOW + time::Duration::minutes(30);
        // The replica holds the key once its listener listens and a read loaded it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while other.access_key_to_confirm(&key).is_none() {
            assert!(std::time::Instant::now() < deadline, "the key was never held");
            assert!(other.access_key(&key).await.unwrap().is_some());
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        for (round, status) in [AccessKeyStatus::Inactive, AccessKeyStatus::Active]
            .into_iter()
            .enumerate()
        {
            ens_store::as_one_request(async {
                let held = other.access_key_to_confirm(&key).unwrap();
                assert_ne!(held.status, status, "round {round}");
                one.set_access_key_status(&key, status).await.unwrap();
                assert!(claim(other, &key, &format!("confirm-{round}"), NOW, later).await);
                let current = other.access_key(&key).await.unwrap().unwrap();
                assert_eq!(current.status, status, "round {round}");
            })
            .await;
        }
    }

    /// Every batch of nonce claims carries a marker of the read model, so that the reads of
    /// a busy replica need no marker of their own (no read is made here, so no marker has
    /// any other source).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: scripts/test.sh runs it when ENS_IMAGES_TEST_DATABASE_URL is set"]
    async fn nonce_claims_carry_the_read_models_markers() {
        let database = PgDatabase::create().await;
        let pool = sqlx::PgPool::connect_with(database.options.clone())
            .await
            .unwrap();
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await.unwrap();
        listener.listen("ens_images_changes").await.unwrap();
        let key = AccessKeyId::parse("AKALICE").unwrap();
        let later = NOW + time::Duration::minutes(30);
        let marker = |payload: &str| {
            let (origin, number) = payload.split_once("\n#").unwrap();
            (origin.to_owned(), number.parse::<u64>().unwrap())
        };
        // The store's own listener starts in the background; until it listens, claims carry
        // no marker.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut round = 0;
        let (origin, first) = loop {
            assert!(claim(&database.store, &key, &format!("n{round}"), NOW, later).await);
            round += 1;
            let received = tokio::time::timeout(std::time::Duration::from_millis(100), listener.recv()).await;
            match received {
                Ok(notification) => break marker(notification.unwrap().payload()),
                Err(_) => assert!(std::time::Instant::now() < deadline, "no claim carried a marker"),
            }
        };
        for next in 1..=3 {
            assert!(claim(&database.store, &key, &format!("next-{next}"), NOW, later).await);
            let notification = listener.recv().await.unwrap();
            assert_eq!(marker(notification.payload()), (origin.clone(), first + next));
        }
        drop(listener);
        pool.close().await;
        database.drop().await;
    }

    async fn concurrent_build_advances_move_each_image_once_per_step(one: &Store, other: &Store) {
        let (alice, _) = seeded(one).await;
        let step = std::time::Duration::from_secs(5);
        let mut made = Vec::new();
        for index in 0..24 {
            let mut building = image("m-x", Some(&alice), &["cn-dalian-unicom"]);
            building.status = ImageStatus::Creating;
            building.name = format!("building{index}");
            let new = NewImage {
                image: building,
                build_due_at: Some(NOW + step),
                build_failure: None,
                release_instance: None,
            };
            made.push(one.create_image(new).await.unwrap().id);
        }
        let mut at = NOW + step;
        for expected in [
            ImageStatus::Packing,
            ImageStatus::Uploading,
            ImageStatus::Available,
        ] {
            let moves = race(12, one, other, |_, store| async move {
                store.advance_image_builds(at, step).await.unwrap()
            })
            .await;
            assert_eq!(moves.iter().sum::<u64>(), 24, "moves into {expected:?}");
            for id in &made {
                let view = other.visible_image(&alice, id).await.unwrap().unwrap();
                assert_eq!(view.image.status, expected);
            }
            at += step;
        }
        // Each image joined the listings exactly once: counts and rows agree.
        let page = other.describe_images(&query(&alice, 1, 50)).await.unwrap();
        assert_eq!(page.total_count, 9 + 24);
        assert_eq!(page.items.len(), 9 + 24);
        let mut q = query(&alice, 1, 50);
        q.node = Some(super::node("cn-dalian-unicom"));
        let page = one.describe_images(&q).await.unwrap();
        assert_eq!((page.total_count, page.items.len()), (5 + 24, 5 + 24));
    }

    async fn a_delete_racing_a_share_never_leaves_a_share_on_a_deleted_image(one: &Store, other: &Store) {
        let (alice, bob) = seeded(one).await;
        let mut shared = Vec::new();
        for round in 0..30 {
            let id = create(one, &alice, &format!("race{round}"), &["cn-dalian-unicom"]).await;
            let outcome = race(2, one, other, |index, store| {
                let (alice, bob, id) = (alice.clone(), bob.clone(), id.clone());
                async move {
                    if index == 0 {
                        store.delete_image(&alice, &id).await
                    } else {
                        store.modify_image_shares(&alice, &id, &[bob], &[], NOW).await
                    }
                }
            })
            .await;
            let outcome = (&outcome[0], &outcome[1]);
            let one_won = matches!(
                outcome,
                // The share went first: the delete saw it and refused.
                (Err(StoreError::Image(ImageError::StillShared(1))), Ok(()))
                // The delete went first: the share found no image.
                    | (Ok(()), Err(StoreError::Image(ImageError::NotFound)))
            );
            assert!(one_won, "round {round}: both or neither succeeded: {outcome:?}");
            if outcome.1.is_ok() {
                shared.push(id);
            }
        }
        // Bob sees exactly the images shared with him that still exist, and his listing
        // count agrees with his listing rows.
        let page = one.describe_images(&query(&bob, 1, 50)).await.unwrap();
        assert_eq!(page.total_count, 8 + shared.len() as u64);
        assert_eq!(page.items.len(), 8 + shared.len());
        for id in &shared {
            assert!(other.visible_image(&bob, id).await.unwrap().is_some());
        }
        let alices = other.describe_images(&query(&alice, 1, 50)).await.unwrap();
        assert_eq!(alices.total_count, 9 + shared.len() as u64);
        assert_eq!(names(&alices).len(), 9 + shared.len());
    }

    async fn replicas_starting_together_make_one_owner_and_load_one_catalog(one: &Store, other: &Store) {
        let catalog: Vec<ens_domain::Image> = (0..5)
            .map(|i| image(&format!("sys_{i}"), None, &["cn-dalian-unicom"]))
            .collect();
        let nodes = [super::node("cn-dalian-unicom")];
        let outcomes = race(8, one, other, |index, store| {
            let (catalog, nodes) = (catalog.clone(), nodes.clone());
            async move {
                let owner = super::account(&format!("100000000000001{index}"));
                let key = AccessKeyId::parse(&format!("AKOWNER{index}")).unwrap();
                let created = store.bootstrap_owner(&owner, &key, "sealed", NOW).await.unwrap();
                let loaded = store.install_catalog(&nodes, &catalog, false).await.unwrap();
                (created, loaded)
            }
        })
        .await;
        let owners = outcomes.iter().filter(|(created, _)| *created).count();
        let loads = outcomes.iter().filter(|(_, loaded)| *loaded).count();
        assert_eq!((owners, loads), (1, 1));
        assert_eq!(other.accounts().await.unwrap().len(), 1);
        assert_eq!(other.access_keys(None).await.unwrap().len(), 1);
        assert_eq!(other.public_images(None).await.unwrap().len(), 5);
        // An operator's catalog replaces the loaded one.
        assert!(one.install_catalog(&nodes, &catalog[..2], true).await.unwrap());
        assert_eq!(other.public_images(None).await.unwrap().len(), 2);
    }

    async fn heartbeats_count_the_replicas_alive_in_the_window(one: &Store, other: &Store) {
        let window = std::time::Duration::from_secs(15);
        assert_eq!(one.heartbeat("a", NOW, window).await.unwrap(), 1);
        assert_eq!(other.heartbeat("b", NOW, window).await.unwrap(), 2);
        let later = NOW + time::Duration::seconds(10);
        assert_eq!(one.heartbeat("a", later, window).await.unwrap(), 2);
        // "b" fell silent: once a whole window has passed, only "a" is counted.
        let much_later = NOW + time::Duration::seconds(20);
        assert_eq!(one.heartbeat("a", much_later, window).await.unwrap(), 1);
        assert!(one.pool_stats().is_some());
    }

    /// Reads the read model answers (unfiltered DescribeImages, DescribeSelfImages, access
    /// keys) see a write through the other replica at once: no wait between the two.
    async fn reads_from_memory_see_the_other_replicas_writes_at_once(one: &Store, other: &Store) {
        let (alice, _) = seeded(one).await;
        let id = create(one, &alice, "held-0", &["cn-dalian-unicom"]).await;
        let listed = |page: &ens_domain::Page<ens_domain::ImageView>| {
            page.items
                .iter()
                .find(|view| view.image.id == id)
                .map(|view| view.image.name.clone())
        };
        assert_eq!(
            listed(&other.describe_images(&query(&alice, 1, 50)).await.unwrap()),
            Some("held-0".into())
        );
        for round in 1..=30 {
            let (writer, reader) = if round % 2 == 0 {
                (one, other)
            } else {
                (other, one)
            };
            let name = format!("held-{round}");
            writer.rename_image(&alice, &id, &name).await.unwrap();
            let page = reader.describe_images(&query(&alice, 1, 50)).await.unwrap();
            assert_eq!(listed(&page), Some(name.clone()), "round {round}");
        }
        // Shares: the owner's record of them, and the other account's DescribeSelfImages.
        let bob = super::account("1000000000000002");
        let shares = |store: &Store| {
            let (store, alice, id) = (store.clone(), alice.clone(), id.clone());
            async move {
                let page = query(&alice, 1, 10).page;
                store
                    .image_shares(&alice, &id, None, page)
                    .await
                    .unwrap()
                    .total_count
            }
        };
        assert_eq!(shares(other).await, 0);
        one.modify_image_shares(&alice, &id, std::slice::from_ref(&bob), &[], NOW)
            .await
            .unwrap();
        assert_eq!(shares(other).await, 1, "a share is seen at once");
        other
            .modify_image_shares(&alice, &id, &[], std::slice::from_ref(&bob), NOW)
            .await
            .unwrap();
        assert_eq!(shares(one).await, 0, "so is its removal");
        let key = AccessKeyId::parse("AKALICE").unwrap();
        assert!(other.access_key(&key).await.unwrap().is_some());
        one.delete_access_key(&key).await.unwrap();
        assert!(
            other.access_key(&key).await.unwrap().is_none(),
            "a deleted key is gone at once"
        );
        one.delete_image(&alice, &id).await.unwrap();
        let page = other.describe_images(&query(&alice, 1, 50)).await.unwrap();
        assert_eq!(listed(&page), None);
    }

    /// Each case on two stores over one fresh database: two server replicas.
    macro_rules! replica_suite {
        ($($case:ident),* $(,)?) => {
            mod on_two_replicas {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    #[ignore = "needs PostgreSQL: scripts/test.sh runs it when ENS_IMAGES_TEST_DATABASE_URL is set"]
                    async fn $case() {
                        let database = super::PgDatabase::create().await;
                        let other = database.replica().await;
                        super::$case(&database.store, &other).await;
                        other.close().await;
                        database.drop().await;
                    }
                )*
            }
        };
    }

    replica_suite!(
        a_nonce_claimed_through_one_replica_is_refused_through_the_other,
        a_key_read_before_the_claim_is_confirmed_after_it,
        concurrent_build_advances_move_each_image_once_per_step,
        a_delete_racing_a_share_never_leaves_a_share_on_a_deleted_image,
        replicas_starting_together_make_one_owner_and_load_one_catalog,
        reads_from_memory_see_the_other_replicas_writes_at_once,
        heartbeats_count_the_replicas_alive_in_the_window
    );
}

/// The lifecycle clock's store calls: steps that move builds in a scope now, whatever their
/// due time, the restart of every build when the clock runs again, and the outcome chosen
/// per image.
mod build_clock {
    use super::*;

    const STEP: std::time::Duration = std::time::Duration::from_secs(5);

    /// A custom image of `owner` in the build queue, its first step due at `due`.
    async fn building(
        store: &Store,
        owner: &AccountId,
        name: &str,
        due: OffsetDateTime,
        failure: Option<BuildFailure>,
    ) -> ImageId {
        let mut image = image("m-x", Some(owner), &["cn-dalian-unicom"]);
        image.status = ImageStatus::Creating;
        image.name = name.into();
        let new = NewImage {
            image,
            build_due_at: Some(due),
            build_failure: failure,
            release_instance: None,
        };
        store.create_image(new).await.unwrap().id
    }

    async fn status(store: &Store, owner: &AccountId, id: &ImageId) -> ImageStatus {
        store
            .visible_image(owner, id)
            .await
            .unwrap()
            .unwrap()
            .image
            .status
    }

    async fn steps_move_the_builds_in_scope_now_whatever_their_due_time(store: &Store) {
        let (alice, bob) = seeded(store).await;
        let later = NOW + time::Duration::hours(1);
        let a1 = building(store, &alice, "a1", later, None).await;
        let a2 = building(store, &alice, "a2", later, None).await;
        let b1 = building(store, &bob, "b1", later, None).await;

        // One account's builds, one step: the other account's build stays where it was.
        let moved = store
            .step_image_builds(Some(&alice), None, 1, NOW, STEP)
            .await
            .unwrap();
        assert_eq!(
            moved,
            [
                (a1.clone(), ImageStatus::Packing),
                (a2.clone(), ImageStatus::Packing)
            ]
        );
        assert_eq!(status(store, &bob, &b1).await, ImageStatus::Creating);

        // One image, more steps than it has left: it stops at Available and is listed.
        let moved = store
            .step_image_builds(None, Some(&a1), 5, NOW, STEP)
            .await
            .unwrap();
        assert_eq!(moved, [(a1.clone(), ImageStatus::Available)]);
        assert_eq!(total(store, &alice).await, 10);
        // Nothing left to move is an empty answer; an unknown image is NotFound; an image
        // of another account than the one named is out of scope.
        let none = store.step_image_builds(None, Some(&a1), 1, NOW, STEP).await;
        assert!(none.unwrap().is_empty());
        let unknown = ImageId::parse("m-nosuchimage").unwrap();
        let missing = store.step_image_builds(None, Some(&unknown), 1, NOW, STEP).await;
        assert!(matches!(missing, Err(StoreError::NotFound(_))), "{missing:?}");
        let elsewhere = store.step_image_builds(Some(&bob), Some(&a2), 1, NOW, STEP).await;
        assert!(elsewhere.unwrap().is_empty());

        // A stepped build's next step ends one step after the step: the advancer goes on
        // from there, and bob's build keeps its own due time.
        assert_eq!(
            store
                .advance_image_builds(NOW + STEP - time::Duration::seconds(1), STEP)
                .await
                .unwrap(),
            0
        );
        assert_eq!(store.advance_image_builds(NOW + STEP, STEP).await.unwrap(), 1);
        assert_eq!(status(store, &alice, &a2).await, ImageStatus::Uploading);
        assert_eq!(status(store, &bob, &b1).await, ImageStatus::Creating);

        // Restarting every build (the clock runs again) gives each a fresh step from then;
        // bob's, due later than the fresh step would end, keeps its time.
        let resumed = NOW + time::Duration::minutes(2);
        assert_eq!(store.restart_image_builds(resumed, STEP).await.unwrap(), 1);
        assert_eq!(store.advance_image_builds(resumed, STEP).await.unwrap(), 0);
        let moved = store.advance_image_builds(resumed + STEP, STEP).await.unwrap();
        assert_eq!(moved, 1);
        assert_eq!(status(store, &alice, &a2).await, ImageStatus::Available);

        // Every account: whatever is left moves.
        let moved = store.step_image_builds(None, None, 100, NOW, STEP).await.unwrap();
        assert_eq!(moved, [(b1.clone(), ImageStatus::Available)]);
        assert_eq!(total(store, &alice).await, 11);
        assert_eq!(total(store, &bob).await, 9);
    }

    async fn the_outcome_chosen_per_image_overrides_its_source(store: &Store) {
        let (alice, _) = seeded(store).await;
        let fails_upload = building(store, &alice, "x", NOW, Some(BuildFailure::Upload)).await;
        let fails_pack = building(store, &alice, "y", NOW, Some(BuildFailure::Pack)).await;
        let succeeds = building(store, &alice, "z", NOW, None).await;

        // Pack instead of upload; success instead of pack.
        let chosen = store
            .set_image_build_failure(&fails_upload, Some(BuildFailure::Pack))
            .await
            .unwrap();
        assert_eq!(chosen, ImageStatus::Creating);
        store.set_image_build_failure(&fails_pack, None).await.unwrap();
        let moved = store
            .step_image_builds(None, Some(&fails_upload), 3, NOW, STEP)
            .await
            .unwrap();
        assert_eq!(moved, [(fails_upload.clone(), ImageStatus::PackFailed)]);
        let moved = store
            .step_image_builds(None, Some(&fails_pack), 3, NOW, STEP)
            .await
            .unwrap();
        assert_eq!(moved, [(fails_pack.clone(), ImageStatus::Available)]);

        // Past packing, an image can still fail to upload, but no longer to pack.
        store
            .step_image_builds(None, Some(&succeeds), 2, NOW, STEP)
            .await
            .unwrap();
        let too_late = store
            .set_image_build_failure(&succeeds, Some(BuildFailure::Pack))
            .await;
        assert!(matches!(too_late, Err(StoreError::Invalid(_))), "{too_late:?}");
        let chosen = store
            .set_image_build_failure(&succeeds, Some(BuildFailure::Upload))
            .await
            .unwrap();
        assert_eq!(chosen, ImageStatus::Uploading);
        assert_eq!(store.advance_image_builds(NOW + STEP, STEP).await.unwrap(), 1);
        assert_eq!(status(store, &alice, &succeeds).await, ImageStatus::UploadFailed);

        // Only a build still going has an outcome to choose.
        for done in [&fails_upload, &fails_pack, &succeeds] {
            let refused = store.set_image_build_failure(done, None).await;
            assert!(matches!(refused, Err(StoreError::Invalid(_))), "{refused:?}");
        }
        let public = ImageId::parse("sys_0").unwrap();
        let refused = store.set_image_build_failure(&public, None).await;
        assert!(matches!(refused, Err(StoreError::Invalid(_))), "{refused:?}");
        let unknown = ImageId::parse("m-nosuchimage").unwrap();
        let missing = store.set_image_build_failure(&unknown, None).await;
        assert!(matches!(missing, Err(StoreError::NotFound(_))), "{missing:?}");
    }

    store_suite!(
        steps_move_the_builds_in_scope_now_whatever_their_due_time,
        the_outcome_chosen_per_image_overrides_its_source,
    );
}

/// The state as one value: exported, imported back whole or one account at a time, with every
/// listing renumbered and counted as if the images had been made one by one.
mod state {
    use super::*;
    use ens_store::{ImportScope, StoreState};

    /// Every custom image ID of the state, per account, in order.
    fn image_ids(state: &StoreState) -> Vec<(String, Vec<String>)> {
        state
            .accounts
            .iter()
            .map(|account| {
                let ids = account
                    .images
                    .iter()
                    .map(|image| image.new.image.id.as_str().to_owned());
                (account.id.as_str().to_owned(), ids.collect())
            })
            .collect()
    }

    async fn a_whole_state_imports_back_with_its_listings(store: &Store) {
        let (alice, bob) = seeded(store).await;
        let alice1 = find(store, &alice, "alice1").await;
        store
            .modify_image_shares(&alice, &alice1, std::slice::from_ref(&bob), &[], NOW)
            .await
            .unwrap();
        let dev = RamUserName::parse("UserName", "dev").unwrap();
        store.create_ram_user(&alice, &dev, NOW).await.unwrap();
        let principal = Principal {
            account: alice.clone(),
            user: Some(dev.clone()),
        };
        let dev_key = AccessKeyId::parse("AKDEV").unwrap();
        store
            .create_access_key(&principal, &dev_key, "sealed-dev", NOW)
            .await
            .unwrap();
        let exported = store.export_state(None).await.unwrap();
        assert_eq!(exported.image_count(), 3);
        let alices = &exported.accounts[0];
        assert_eq!(alices.keys.len(), 2);
        assert_eq!(alices.users.len(), 1);
        assert_eq!(alices.images[0].shares.len(), 1);

        store.reset_all(&alice).await.unwrap();
        assert_eq!(walk_one_by_one(store, &alice, None).await, public_then(&[]));
        let written = store
            .import_state(&exported, ImportScope::Whole { keep: &alice })
            .await
            .unwrap();
        assert_eq!(written, 3);
        let again = store.export_state(None).await.unwrap();
        assert_eq!(image_ids(&again), image_ids(&exported));
        assert_eq!(
            walk_one_by_one(store, &alice, None).await,
            public_then(&["alice1", "alice2"])
        );
        assert_eq!(
            walk_one_by_one(store, &bob, None).await,
            public_then(&["alice1", "bob1"])
        );
        let on_dalian = walk_one_by_one(store, &bob, Some("cn-dalian-unicom")).await;
        assert_eq!(on_dalian[4..], ["alice1"]);
        assert_eq!(total(store, &bob).await, 9);
        let found = store.access_key(&dev_key).await.unwrap().unwrap();
        assert_eq!(found.principal, principal);
        assert_eq!(found.secret, "sealed-dev");
        // An image made after the import goes after the imported ones.
        create(store, &alice, "alice3", &["cn-dalian-unicom"]).await;
        assert_eq!(
            walk_one_by_one(store, &alice, None).await,
            public_then(&["alice1", "alice2", "alice3"])
        );
    }

    async fn an_account_state_restores_that_account_alone(store: &Store) {
        let (alice, bob) = seeded(store).await;
        let alice1 = find(store, &alice, "alice1").await;
        store
            .modify_image_shares(&alice, &alice1, std::slice::from_ref(&bob), &[], NOW)
            .await
            .unwrap();
        let saved = store.export_state(Some(&alice)).await.unwrap();
        assert_eq!(image_ids(&saved).len(), 1, "only alice");

        store
            .modify_image_shares(&alice, &alice1, &[], std::slice::from_ref(&bob), NOW)
            .await
            .unwrap();
        store.delete_image(&alice, &alice1).await.unwrap();
        create(store, &alice, "alice3", &["cn-dalian-unicom"]).await;
        create(store, &bob, "bob2", &["cn-dalian-unicom"]).await;

        store
            .import_state(&saved, ImportScope::Account(&alice))
            .await
            .unwrap();
        assert_eq!(
            walk_one_by_one(store, &alice, None).await,
            public_then(&["alice1", "alice2"])
        );
        // Bob keeps what he made since, and sees alice1 shared again in its old place.
        assert_eq!(
            walk_one_by_one(store, &bob, None).await,
            public_then(&["alice1", "bob1", "bob2"])
        );
        assert_eq!(total(store, &bob).await, 10);

        let wrong = store.import_state(&saved, ImportScope::Account(&bob)).await;
        assert!(matches!(wrong, Err(StoreError::Invalid(_))), "{wrong:?}");
    }

    async fn a_refused_import_changes_nothing(store: &Store) {
        let (alice, _) = seeded(store).await;
        let before = store.export_state(None).await.unwrap();
        let mut elsewhere = before.clone();
        elsewhere.accounts[0].images[0].new.image.nodes = vec![node("cn-nowhere-1")];
        let refused = store
            .import_state(&elsewhere, ImportScope::Whole { keep: &alice })
            .await;
        assert!(matches!(refused, Err(StoreError::NotFound(_))), "{refused:?}");
        let mut twice = before.clone();
        let copy = twice.accounts[0].images[0].clone();
        twice.accounts[0].images.push(copy);
        let refused = store
            .import_state(&twice, ImportScope::Whole { keep: &alice })
            .await;
        assert!(matches!(refused, Err(StoreError::Invalid(_))), "{refused:?}");
        assert_eq!(
            image_ids(&store.export_state(None).await.unwrap()),
            image_ids(&before)
        );
        assert_eq!(
            walk_one_by_one(store, &alice, None).await,
            public_then(&["alice1", "alice2"])
        );
    }

    fn audit(request_id: &str) -> AuditEntry {
        AuditEntry {
            at: NOW,
            request_id: request_id.into(),
            account: None,
            user: None,
            access_key_id: None,
            action: "DeleteImage".into(),
            resource: "*".into(),
            source_ip: "127.0.0.1".into(),
            outcome: "Success".into(),
            repeats: 1,
        }
    }

    async fn a_whole_snapshot_restores_everything_but_the_audit_log(store: &Store) {
        let (alice, bob) = seeded(store).await;
        store.record_audits(&[audit("before")]).await.unwrap();
        let snapshot = store.snapshot(None, u64::MAX).await.unwrap();
        assert_eq!((snapshot.images, snapshot.accounts), (3, 2));

        let alice1 = find(store, &alice, "alice1").await;
        store.delete_image(&alice, &alice1).await.unwrap();
        create(store, &bob, "bob2", &["cn-dalian-unicom"]).await;
        store
            .create_account(&account("1000000000000003"), NOW)
            .await
            .unwrap();
        store.record_audits(&[audit("after")]).await.unwrap();

        store
            .restore_snapshot(&snapshot, ImportScope::Whole { keep: &alice })
            .await
            .unwrap();
        assert_eq!(
            walk_one_by_one(store, &alice, None).await,
            public_then(&["alice1", "alice2"])
        );
        assert_eq!(walk_one_by_one(store, &bob, None).await, public_then(&["bob1"]));
        assert_eq!(store.accounts().await.unwrap().len(), 2);
        let filter = AuditFilter {
            limit: 10,
            ..AuditFilter::default()
        };
        let kept: Vec<String> = store
            .audit_entries(&filter)
            .await
            .unwrap()
            .into_iter()
            .map(|entry| entry.request_id)
            .collect();
        assert_eq!(kept, ["after", "before"], "the audit log is never rolled back");
        // The store goes on as usual: a new image lists after the restored ones, and the
        // snapshot can be restored again.
        create(store, &alice, "alice3", &["cn-dalian-unicom"]).await;
        assert_eq!(
            walk_one_by_one(store, &alice, None).await,
            public_then(&["alice1", "alice2", "alice3"])
        );
        store
            .restore_snapshot(&snapshot, ImportScope::Whole { keep: &alice })
            .await
            .unwrap();
        assert_eq!(
            walk_one_by_one(store, &alice, None).await,
            public_then(&["alice1", "alice2"])
        );
    }

    async fn a_reset_to_the_first_start_copy_leaves_what_a_reset_keeps(store: &Store) {
        let alice = account("1000000000000001");
        store
            .create_account_with_key(&alice, &AccessKeyId::parse("AKALICE").unwrap(), "secret", NOW)
            .await
            .unwrap();
        store
            .replace_catalog(
                &[node("cn-dalian-unicom")],
                &[image("sys_0", None, &["cn-dalian-unicom"])],
            )
            .await
            .unwrap();
        let Some(point) = store.reset_point(&alice).await.unwrap() else {
            // Engines without page copies reset by deleting.
            assert!(!store.snapshot(None, u64::MAX).await.unwrap().is_page_copy());
            return;
        };
        let bob = account("1000000000000002");
        store.create_account(&bob, NOW).await.unwrap();
        create(store, &alice, "alice1", &["cn-dalian-unicom"]).await;
        create(store, &bob, "bob1", &["cn-dalian-unicom"]).await;

        let summary = store.reset_to(&point).await.unwrap().unwrap();
        assert_eq!((summary.images, summary.accounts), (2, 1));
        assert_eq!(store.accounts().await.unwrap().len(), 1);
        let page = store.describe_images(&query(&alice, 1, 50)).await.unwrap();
        assert_eq!(names(&page), ["name_sys_0"]);

        // Once what a reset keeps has changed, the copy is not used: the caller deletes.
        let later = AccessKeyId::parse("AKALICE2").unwrap();
        let owner = Principal {
            account: alice.clone(),
            user: None,
        };
        store
            .create_access_key(&owner, &later, "secret", NOW)
            .await
            .unwrap();
        create(store, &alice, "alice2", &["cn-dalian-unicom"]).await;
        assert!(store.reset_to(&point).await.unwrap().is_none());
        assert_eq!(total(store, &alice).await, 2, "nothing changed");
        store.reset_all(&alice).await.unwrap();
        assert!(store.access_key(&later).await.unwrap().is_some());
    }

    /// A restore that makes sequence numbers be handed out again must not show, through
    /// DescribeImages, a public image that no longer exists (the listings held in memory are
    /// dropped by a restore).
    async fn public_images_read_from_memory_follow_catalog_loads_and_restores(store: &Store) {
        let (alice, _) = seeded(store).await;
        let snapshot = store.snapshot(None, u64::MAX).await.unwrap();
        let catalog = |prefix: &str| -> Vec<Image> {
            (0..3)
                .map(|i| image(&format!("{prefix}_{i}"), None, &["cn-dalian-unicom"]))
                .collect()
        };
        let nodes = [node("cn-dalian-unicom")];
        store.replace_catalog(&nodes, &catalog("first")).await.unwrap();
        let page = store.describe_images(&query(&alice, 1, 3)).await.unwrap();
        assert_eq!(names(&page), ["name_first_0", "name_first_1", "name_first_2"]);
        // Read again: the same answer, now from memory.
        let page = store.describe_images(&query(&alice, 1, 3)).await.unwrap();
        assert_eq!(names(&page), ["name_first_0", "name_first_1", "name_first_2"]);

        store
            .restore_snapshot(&snapshot, ImportScope::Whole { keep: &alice })
            .await
            .unwrap();
        store.replace_catalog(&nodes, &catalog("second")).await.unwrap();
        let page = store.describe_images(&query(&alice, 1, 3)).await.unwrap();
        assert_eq!(names(&page), ["name_second_0", "name_second_1", "name_second_2"]);
        assert_eq!(
            walk_one_by_one(store, &alice, None).await[3..],
            ["alice1", "alice2"]
        );
    }

    async fn a_snapshot_over_its_memory_budget_is_refused(store: &Store) {
        let (alice, _) = seeded(store).await;
        let whole = store.snapshot(None, 1024).await;
        assert!(
            matches!(&whole, Err(StoreError::Invalid(why)) if why.contains("MiB")),
            "{whole:?}"
        );
        let one = store.snapshot(Some(&alice), 1024).await;
        assert!(
            matches!(&one, Err(StoreError::Invalid(why)) if why.contains("MiB")),
            "{one:?}"
        );
        let kept = store.snapshot(None, u64::MAX).await.unwrap();
        assert!(kept.bytes > 1024, "{}", kept.bytes);
    }

    /// A rename, or a restore that writes a custom image back under its old number, shows at
    /// once in the owner's DescribeImages page, read twice in a row so that the second read
    /// comes from memory.
    async fn custom_images_read_from_memory_follow_renames_and_restores(store: &Store) {
        let (alice, _) = seeded(store).await;
        let alice1 = find(store, &alice, "alice1").await;
        let own_page = |store: &Store, alice: &AccountId| {
            let (store, alice) = (store.clone(), alice.clone());
            async move { names(&store.describe_images(&query(&alice, 2, 7)).await.unwrap()) }
        };
        assert_eq!(own_page(store, &alice).await, ["alice1", "alice2"]);
        assert_eq!(own_page(store, &alice).await, ["alice1", "alice2"]);
        store.rename_image(&alice, &alice1, "renamed").await.unwrap();
        assert_eq!(own_page(store, &alice).await, ["renamed", "alice2"]);

        let saved = store.snapshot(Some(&alice), u64::MAX).await.unwrap();
        store
            .rename_image(&alice, &alice1, "renamed-again")
            .await
            .unwrap();
        assert_eq!(own_page(store, &alice).await, ["renamed-again", "alice2"]);
        store
            .restore_snapshot(&saved, ImportScope::Account(&alice))
            .await
            .unwrap();
        assert_eq!(own_page(store, &alice).await, ["renamed", "alice2"]);
        store.delete_image(&alice, &alice1).await.unwrap();
        assert_eq!(own_page(store, &alice).await, ["alice2"]);
    }

    store_suite!(
        custom_images_read_from_memory_follow_renames_and_restores,
        a_snapshot_over_its_memory_budget_is_refused,
        public_images_read_from_memory_follow_catalog_loads_and_restores,
        a_reset_to_the_first_start_copy_leaves_what_a_reset_keeps,
        a_whole_snapshot_restores_everything_but_the_audit_log,
        a_whole_state_imports_back_with_its_listings,
        an_account_state_restores_that_account_alone,
        a_refused_import_changes_nothing,
    );
}

/// Imports and exports as the transfer workers drive them: claimed for a lease, ended only
/// by the holder, and an image `Available` (or an export `Exported`) only once a whole copy
/// is recorded.
mod transfers {
    use super::*;
    use ens_domain::{ExportStatus, ImageView, ObjectName};
    use ens_store::{ImageFile, TransferEnd, TransferKind};
    use std::time::Duration;

    const LEASE: Duration = Duration::from_secs(10);

    fn object(bucket: &str, key: &str) -> ObjectName {
        ObjectName {
            region: "cn-beijing".into(),
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    /// An image being imported for `owner` from `images-in/<name>.qcow2`.
    async fn importing(store: &Store, owner: &AccountId, name: &str) -> ImageId {
        let mut template = image("m-x", Some(owner), &[]);
        template.name = name.into();
        template.status = ImageStatus::Creating;
        template.size_gib = 0;
        template.snapshot_id = None;
        template.disk_device_mappings.clear();
        let new = NewImage {
            image: template,
            build_due_at: None,
            build_failure: None,
            release_instance: None,
        };
        let sources = [object("images-in", &format!("{name}.qcow2"))];
        store.start_import(&new, &sources, "R-import", NOW).await.unwrap()
    }

    fn file(id: &ImageId, disk: u32, size_gib: u64) -> ImageFile {
        ImageFile {
            disk,
            key: format!("images/{id}/disk-{disk}.qcow2"),
            bytes: 196_616,
            sha256: "ab".repeat(32),
            size_gib,
        }
    }

    /// Claims the next transfer for `worker`. On PostgreSQL a refused write's transaction is
    /// rolled back after its connection returns to the pool, and until then its row locks
    /// make the claim skip the row, so the claim is tried again for a moment.
    async fn claim(store: &Store, worker: &str) -> ens_store::TransferJob {
        for _ in 0..50 {
            if let Some(job) = store.claim_transfer(worker, NOW, LEASE).await.unwrap() {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        store.claim_transfer(worker, NOW, LEASE).await.unwrap().unwrap()
    }

    async fn status(store: &Store, owner: &AccountId, id: &ImageId) -> ImageView {
        store.visible_image(owner, id).await.unwrap().unwrap()
    }

    /// An Available image of `owner`, imported through a worker.
    async fn imported(store: &Store, owner: &AccountId, name: &str) -> ImageId {
        let id = importing(store, owner, name).await;
        let job = store.claim_transfer("w1", NOW, LEASE).await.unwrap().unwrap();
        assert_eq!(job.image_id, id);
        let end = store
            .finish_import(&job, "w1", &[file(&id, 0, 40)], NOW)
            .await
            .unwrap();
        assert_eq!(end, TransferEnd::Recorded);
        id
    }

    async fn an_import_is_listed_only_once_its_worker_records_the_files(store: &Store) {
        let (alice, _) = seeded(store).await;
        let listed_before = total(store, &alice).await;
        let id = importing(store, &alice, "imported").await;
        let view = status(store, &alice, &id).await;
        assert_eq!(view.image.status, ImageStatus::Creating);
        assert!(
            !view.image.nodes.is_empty(),
            "an imported image is on every known node"
        );
        assert_eq!(total(store, &alice).await, listed_before);

        let job = store.claim_transfer("w1", NOW, LEASE).await.unwrap().unwrap();
        assert_eq!(
            (job.kind, job.attempts, &job.account),
            (TransferKind::Import, 1, &alice)
        );
        assert_eq!(job.objects, [object("images-in", "imported.qcow2")]);
        // Held: nobody else gets it, and there is nothing else to claim.
        assert!(store.claim_transfer("w2", NOW, LEASE).await.unwrap().is_none());

        let files = [file(&id, 0, 40), file(&id, 1, 100)];
        let end = store.finish_import(&job, "w1", &files, NOW).await.unwrap();
        assert_eq!(end, TransferEnd::Recorded);
        let view = status(store, &alice, &id).await;
        assert_eq!(view.image.status, ImageStatus::Available);
        assert_eq!(view.image.size_gib, 40);
        let disks: Vec<(&str, u64)> = view
            .image
            .disk_device_mappings
            .iter()
            .map(|disk| (disk.disk_type.as_str(), disk.size_gib))
            .collect();
        assert_eq!(disks, [("system", 40), ("data", 100)]);
        assert_eq!(total(store, &alice).await, listed_before + 1);
        assert_eq!(store.image_files(&id).await.unwrap(), files);
        assert!(store.claim_transfer("w2", NOW, LEASE).await.unwrap().is_none());
        // An importing image cannot be deleted; an imported one can.
        assert!(store.image_files_referenced(id.as_str()).await.unwrap());
    }

    async fn a_lapsed_lease_passes_the_transfer_on_and_the_old_holder_records_nothing(store: &Store) {
        let (alice, _) = seeded(store).await;
        let id = importing(store, &alice, "retried").await;
        let first = store.claim_transfer("w1", NOW, LEASE).await.unwrap().unwrap();
        let later = NOW + time::Duration::seconds(11);
        let second = store.claim_transfer("w2", later, LEASE).await.unwrap().unwrap();
        assert_eq!((second.image_id.clone(), second.attempts), (id.clone(), 2));

        assert!(!store.renew_transfer(&first, "w1", later, LEASE).await.unwrap());
        let lost = store
            .finish_import(&first, "w1", &[file(&id, 0, 1)], later)
            .await
            .unwrap();
        assert_eq!(lost, TransferEnd::Lost);
        assert_eq!(
            store.fail_transfer(&first, "w1", "late", later).await.unwrap(),
            TransferEnd::Lost
        );
        assert_eq!(
            status(store, &alice, &id).await.image.status,
            ImageStatus::Creating
        );

        assert!(store.renew_transfer(&second, "w2", later, LEASE).await.unwrap());
        let end = store
            .finish_import(&second, "w2", &[file(&id, 0, 2)], later)
            .await
            .unwrap();
        assert_eq!(end, TransferEnd::Recorded);
        assert_eq!(status(store, &alice, &id).await.image.size_gib, 2);
    }

    async fn a_failed_import_leaves_the_image_upload_failed_with_its_reason(store: &Store) {
        let (alice, _) = seeded(store).await;
        let listed_before = total(store, &alice).await;
        let id = importing(store, &alice, "broken").await;
        let job = store.claim_transfer("w1", NOW, LEASE).await.unwrap().unwrap();
        let end = store
            .fail_transfer(&job, "w1", "the file is not a qcow2 image", NOW)
            .await
            .unwrap();
        assert_eq!(end, TransferEnd::Recorded);
        let view = status(store, &alice, &id).await;
        assert_eq!(view.image.status, ImageStatus::UploadFailed);
        assert!(
            view.image.description.contains("the file is not a qcow2 image"),
            "{}",
            view.image.description
        );
        assert_eq!(total(store, &alice).await, listed_before);
        assert!(store.claim_transfer("w2", NOW, LEASE).await.unwrap().is_none());
        // A failed image can be deleted, and then has nothing left to remove.
        store.delete_image(&alice, &id).await.unwrap();
        assert!(store.file_removals_due(10).await.unwrap().is_empty());
    }

    async fn exports_move_from_unexported_to_exported_or_export_error(store: &Store) {
        let (alice, bob) = seeded(store).await;
        let id = imported(store, &alice, "to-export").await;
        assert_eq!(
            store.export_status(&alice, &id).await.unwrap(),
            ExportStatus::Unexported
        );

        let target = object("exports", &format!("out/{id}.qcow2"));
        let url = format!("file:///buckets/exports/out/{id}.qcow2");
        store
            .start_export(&alice, &id, &target, &url, "R-export", NOW)
            .await
            .unwrap();
        assert_eq!(
            store.export_status(&alice, &id).await.unwrap(),
            ExportStatus::Exporting
        );
        let again = store
            .start_export(&alice, &id, &target, &url, "R-export", NOW)
            .await;
        assert!(
            matches!(again, Err(StoreError::Image(ImageError::ExportRunning))),
            "{again:?}"
        );

        let job = claim(store, "w1").await;
        assert_eq!(
            (job.kind, &job.objects[..]),
            (TransferKind::Export, &[target.clone()][..])
        );
        assert_eq!(
            store.finish_export(&job, "w1", NOW).await.unwrap(),
            TransferEnd::Recorded
        );
        assert_eq!(
            store.export_status(&alice, &id).await.unwrap(),
            ExportStatus::Exported
        );

        let page = store
            .export_infos(&alice, None, None, support::page(1, 10))
            .await
            .unwrap();
        let row = page.items.iter().find(|info| info.image_id == id).unwrap();
        assert_eq!(
            (row.status, row.url.as_deref()),
            (ExportStatus::Exported, Some(url.as_str()))
        );
        assert_eq!(row.alias, ImageOwnerAlias::SelfOwned);
        let only = store
            .export_infos(&alice, Some(&id), None, support::page(1, 10))
            .await
            .unwrap();
        assert_eq!(only.total_count, 1);
        let by_name = store
            .export_infos(&alice, None, Some("no-such-name"), support::page(1, 10))
            .await
            .unwrap();
        assert_eq!((by_name.total_count, by_name.items.len()), (0, 0));
        // Pages of one walk the whole list in order, each with the whole count; the page
        // past the end is empty and still counts.
        let all = store
            .export_infos(&alice, None, None, support::page(1, 50))
            .await
            .unwrap();
        assert!(all.total_count >= 3, "{all:?}");
        assert_eq!(all.items.len() as u64, all.total_count);
        let mut walked = Vec::new();
        for number in 1..=all.total_count + 1 {
            let one = store
                .export_infos(
                    &alice,
                    None,
                    None,
                    support::page(u32::try_from(number).unwrap(), 1),
                )
                .await
                .unwrap();
            assert_eq!(one.total_count, all.total_count);
            walked.extend(one.items);
        }
        assert_eq!(walked, all.items);

        // A second export replaces the first; this one fails.
        store
            .start_export(&alice, &id, &target, &url, "R-export", NOW)
            .await
            .unwrap();
        let job = claim(store, "w1").await;
        store
            .fail_transfer(&job, "w1", "bucket unreachable", NOW)
            .await
            .unwrap();
        assert_eq!(
            store.export_status(&alice, &id).await.unwrap(),
            ExportStatus::ExportError
        );
        // The image itself is untouched by a failed export.
        assert_eq!(
            status(store, &alice, &id).await.image.status,
            ImageStatus::Available
        );

        // Only the owner exports, and only its own custom images.
        store
            .modify_image_shares(&alice, &id, std::slice::from_ref(&bob), &[], NOW)
            .await
            .unwrap();
        let shared_in = store
            .start_export(&bob, &id, &target, &url, "R-export", NOW)
            .await;
        assert!(
            matches!(shared_in, Err(StoreError::Image(ImageError::NotOwner))),
            "{shared_in:?}"
        );
        let status_of_shared = store.export_status(&bob, &id).await;
        assert!(matches!(
            status_of_shared,
            Err(StoreError::Image(ImageError::NotOwner))
        ));
        let public = store
            .describe_images(&query(&alice, 1, 1))
            .await
            .unwrap()
            .items
            .remove(0)
            .image
            .id
            .clone();
        let refused = store
            .start_export(&alice, &public, &target, &url, "R-export", NOW)
            .await;
        assert!(
            matches!(refused, Err(StoreError::Image(ImageError::PublicImage))),
            "{refused:?}"
        );
        let creating = importing(store, &alice, "not-yet").await;
        let refused = store
            .start_export(&alice, &creating, &target, &url, "R-export", NOW)
            .await;
        assert!(
            matches!(
                refused,
                Err(StoreError::Image(ImageError::WrongStatus(ImageStatus::Creating)))
            ),
            "{refused:?}"
        );
    }

    async fn a_deleted_images_files_go_once_no_transfer_reads_them(store: &Store) {
        let (alice, _) = seeded(store).await;
        let id = imported(store, &alice, "short-lived").await;
        let target = object("exports", &format!("{id}.qcow2"));
        store
            .start_export(&alice, &id, &target, "url", "R-export", NOW)
            .await
            .unwrap();
        store.delete_image(&alice, &id).await.unwrap();
        // The running export still reads the file.
        assert!(store.file_removals_due(10).await.unwrap().is_empty());
        assert!(store.image_files_referenced(id.as_str()).await.unwrap());

        let job = store.claim_transfer("w1", NOW, LEASE).await.unwrap().unwrap();
        store.finish_export(&job, "w1", NOW).await.unwrap();
        assert_eq!(store.file_removals_due(10).await.unwrap(), [id.to_string()]);
        store.files_removed(id.as_str()).await.unwrap();
        assert!(store.file_removals_due(10).await.unwrap().is_empty());
        assert!(store.image_files(&id).await.unwrap().is_empty());
        assert!(!store.image_files_referenced(id.as_str()).await.unwrap());
    }

    async fn an_importing_image_cannot_be_deleted_and_a_reset_ends_its_import(store: &Store) {
        let (alice, _) = seeded(store).await;
        let id = importing(store, &alice, "in-flight").await;
        let job = claim(store, "w1").await;
        let refused = store.delete_image(&alice, &id).await;
        assert!(
            matches!(
                refused,
                Err(StoreError::Image(ImageError::WrongStatus(ImageStatus::Creating)))
            ),
            "{refused:?}"
        );
        store.reset_account(&alice).await.unwrap();
        let end = store
            .finish_import(&job, "w1", &[file(&id, 0, 1)], NOW)
            .await
            .unwrap();
        assert_eq!(end, TransferEnd::Lost);
        assert!(!store.image_files_referenced(id.as_str()).await.unwrap());
        assert!(store.claim_transfer("w2", NOW, LEASE).await.unwrap().is_none());
    }

    store_suite!(
        an_import_is_listed_only_once_its_worker_records_the_files,
        a_lapsed_lease_passes_the_transfer_on_and_the_old_holder_records_nothing,
        a_failed_import_leaves_the_image_upload_failed_with_its_reason,
        exports_move_from_unexported_to_exported_or_export_error,
        a_deleted_images_files_go_once_no_transfer_reads_them,
        an_importing_image_cannot_be_deleted_and_a_reset_ends_its_import,
    );
}
