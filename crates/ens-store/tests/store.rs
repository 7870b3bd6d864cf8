//! One storage suite, written against the `Store` trait so every backend runs the same cases.

use ens_domain::{
    AccessKeyId, AccountId, DiskDeviceMapping, Image, ImageId, ImageOwnerAlias, ImageQuery, NodeId,
    PageNumber, PageRequest, PageSize,
};
use ens_store::{SqliteStore, Store, StoreError};
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
    }
}

fn query(viewer: &AccountId, number: u32, size: u32) -> ImageQuery {
    ImageQuery {
        viewer: viewer.clone(),
        node: None,
        image_id: None,
        image_name: None,
        snapshot_id: None,
        page: PageRequest {
            number: PageNumber::parse(Some(&number.to_string())).unwrap(),
            size: PageSize::parse(Some(&size.to_string()), 10, 50).unwrap(),
        },
    }
}

fn ids(page: &ens_domain::Page<ens_domain::ImageView>) -> Vec<String> {
    page.items
        .iter()
        .map(|v| v.image.id.as_str().to_owned())
        .collect()
}

/// Two accounts, a catalog of 7 public images over two nodes, custom images for each.
async fn seeded(store: &dyn Store) -> (AccountId, AccountId) {
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
    store
        .insert_image(&image("m-alice1", Some(&alice), &["cn-dalian-unicom"]))
        .await
        .unwrap();
    store
        .insert_image(&image("m-bob1", Some(&bob), &["cn-hangzhou-telecom"]))
        .await
        .unwrap();
    store
        .insert_image(&image("m-alice2", Some(&alice), &["cn-hangzhou-telecom"]))
        .await
        .unwrap();
    (alice, bob)
}

async fn walking_pages_returns_every_visible_image_once(store: &dyn Store) {
    let (alice, _) = seeded(store).await;
    for size in [1, 2, 3, 4, 9, 50] {
        let mut seen = Vec::new();
        for number in 1..=20 {
            let page = store.describe_images(&query(&alice, number, size)).await.unwrap();
            assert_eq!(page.total_count, 9, "size {size}");
            seen.extend(ids(&page));
        }
        let expected: Vec<String> = (0..7)
            .map(|i| format!("sys_{i}"))
            .chain(["m-alice1".into(), "m-alice2".into()])
            .collect();
        assert_eq!(seen, expected, "size {size}");
    }
}

async fn node_filter_uses_the_node_listing(store: &dyn Store) {
    let (alice, _) = seeded(store).await;
    let mut q = query(&alice, 1, 50);
    q.node = Some(node("cn-dalian-unicom"));
    let page = store.describe_images(&q).await.unwrap();
    assert_eq!(ids(&page), ["sys_0", "sys_2", "sys_4", "sys_6", "m-alice1"]);
    assert_eq!(page.total_count, 5);
    assert!(page.items.iter().all(|v| v.region.as_str() == "cn-dalian-unicom"));
}

async fn owner_alias_and_visibility_follow_the_viewer(store: &dyn Store) {
    let (alice, bob) = seeded(store).await;
    let page = store.describe_images(&query(&bob, 1, 50)).await.unwrap();
    assert_eq!(page.total_count, 8);
    assert!(!ids(&page).iter().any(|id| id.starts_with("m-alice")));
    store
        .share_image(&ImageId::parse("m-alice2").unwrap(), &bob, NOW)
        .await
        .unwrap();
    // Sharing twice changes nothing.
    store
        .share_image(&ImageId::parse("m-alice2").unwrap(), &bob, NOW)
        .await
        .unwrap();
    let page = store.describe_images(&query(&bob, 1, 50)).await.unwrap();
    assert_eq!(page.total_count, 9);
    let aliases: Vec<(String, ImageOwnerAlias)> = page
        .items
        .iter()
        .filter(|v| v.image.owner.is_some())
        .map(|v| (v.image.id.as_str().to_owned(), v.alias))
        .collect();
    assert_eq!(
        aliases,
        [
            ("m-bob1".to_owned(), ImageOwnerAlias::SelfOwned),
            ("m-alice2".to_owned(), ImageOwnerAlias::Others)
        ]
    );
    let page = store.describe_images(&query(&alice, 1, 50)).await.unwrap();
    assert!(page.items.iter().all(|v| v.alias != ImageOwnerAlias::Others));
}

async fn exact_filters_combine_and_respect_visibility(store: &dyn Store) {
    let (alice, bob) = seeded(store).await;
    let mut q = query(&bob, 1, 10);
    q.image_id = Some(ImageId::parse("m-alice1").unwrap());
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
    q.snapshot_id = Some("sp-m-alice2".into());
    let page = store.describe_images(&q).await.unwrap();
    assert_eq!(ids(&page), ["m-alice2"]);
    let view = &page.items[0];
    assert_eq!(view.region.as_str(), "cn-hangzhou-telecom");
    assert_eq!(view.image.disk_device_mappings.len(), 1);
}

async fn duplicate_ids_and_unknown_nodes_are_refused(store: &dyn Store) {
    let (alice, _) = seeded(store).await;
    let again = store
        .insert_image(&image("m-alice1", Some(&alice), &["cn-dalian-unicom"]))
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let nowhere = store
        .insert_image(&image("m-alice9", Some(&alice), &["xx-nowhere"]))
        .await;
    assert!(matches!(nowhere, Err(StoreError::NotFound(_))), "{nowhere:?}");
    // The refused insert left nothing behind.
    let page = store.describe_images(&query(&alice, 1, 50)).await.unwrap();
    assert_eq!(page.total_count, 9);
}

async fn replacing_the_catalog_keeps_custom_images(store: &dyn Store) {
    let (alice, _) = seeded(store).await;
    assert!(store.has_catalog().await.unwrap());
    store
        .replace_catalog(
            &[node("cn-new-node")],
            &[image("sys_new", None, &["cn-new-node"])],
        )
        .await
        .unwrap();
    let page = store.describe_images(&query(&alice, 1, 50)).await.unwrap();
    assert_eq!(ids(&page), ["sys_new", "m-alice1", "m-alice2"]);
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

async fn a_nonce_is_claimed_once_per_window(store: &dyn Store) {
    let key = AccessKeyId::parse("AKALICE").unwrap();
    let later = NOW + time::Duration::minutes(30);
    assert!(store.claim_nonce(&key, "n1", NOW, later).await.unwrap());
    assert!(!store.claim_nonce(&key, "n1", NOW, later).await.unwrap());
    let other = AccessKeyId::parse("AKBOB").unwrap();
    assert!(store.claim_nonce(&other, "n1", NOW, later).await.unwrap());
    // After the window the nonce may be used again, and pruning forgets it.
    let after = later + time::Duration::seconds(1);
    assert!(store
        .claim_nonce(&key, "n1", after, after + time::Duration::minutes(30))
        .await
        .unwrap());
    assert_eq!(store.prune_nonces(after).await.unwrap(), 1);
}

async fn access_keys_are_found_with_their_account(store: &dyn Store) {
    let (alice, _) = seeded(store).await;
    let key = store
        .access_key(&AccessKeyId::parse("AKALICE").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(key.account, alice);
    assert_eq!(key.secret, "secret");
    assert!(!format!("{key:?}").contains("secret\""));
    assert!(store
        .access_key(&AccessKeyId::parse("AKNONE").unwrap())
        .await
        .unwrap()
        .is_none());
    assert!(store.has_accounts().await.unwrap());
}

macro_rules! store_suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let store = ens_store::SqliteStore::in_memory().await.unwrap();
                    super::$case(&store).await;
                }
            )*
        }
        mod sqlite_file {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::SqliteStore::open(&dir.path().join("store.db")).await.unwrap();
                    super::$case(&store).await;
                }
            )*
        }
    };
}

store_suite!(
    walking_pages_returns_every_visible_image_once,
    node_filter_uses_the_node_listing,
    owner_alias_and_visibility_follow_the_viewer,
    exact_filters_combine_and_respect_visibility,
    duplicate_ids_and_unknown_nodes_are_refused,
    replacing_the_catalog_keeps_custom_images,
    a_nonce_is_claimed_once_per_window,
    access_keys_are_found_with_their_account,
);
