//! The public image catalog loader of the server (`ens_server::catalog::parse`).
//!
//! Input: a catalog file (UTF-8 text). Beyond not panicking, a catalog it accepts must hold:
//! unique image IDs; a sorted, duplicate-free node list that names every image's nodes; sizes
//! within 1 to 65536 GiB and at least one disk per image; public, available images only. And
//! writing the loaded catalog back as a file and loading that gives the same nodes and images.
#![no_main]

use std::collections::HashSet;

use ens_domain::ImageStatus;
use ens_images_fuzz::catalog::{parse, Catalog};
use ens_images_fuzz::catalog_json;
use libfuzzer_sys::fuzz_target;

fn check_accepted(catalog: &Catalog) {
    assert!(
        catalog.nodes.windows(2).all(|pair| pair[0] < pair[1]),
        "nodes sorted and unique"
    );
    let mut ids = HashSet::new();
    for image in &catalog.images {
        assert!(ids.insert(&image.id), "{} twice", image.id);
        assert!(
            image.nodes.iter().all(|node| catalog.nodes.contains(node)),
            "{} names an unlisted node",
            image.id
        );
        assert!((1..=65_536).contains(&image.size_gib));
        assert!(!image.disk_device_mappings.is_empty());
        assert!(image
            .disk_device_mappings
            .iter()
            .all(|disk| (1..=65_536).contains(&disk.size_gib)));
        assert!(image.os_type == "linux" || image.os_type == "windows");
        assert!(image.owner.is_none() && image.status == ImageStatus::Available);
    }
    let written = catalog_json::write(catalog);
    assert!(written.is_some(), "a creation time cannot be written back");
    let again = written.as_deref().map(parse);
    assert!(
        matches!(again, Some(Ok(_))),
        "the written catalog is refused: {again:?} {written:?}"
    );
    let Some(Ok(again)) = again else {
        return;
    };
    assert_eq!(again.nodes, catalog.nodes);
    assert_eq!(again.images, catalog.images);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text) {
        Ok(catalog) => check_accepted(&catalog),
        Err(error) => assert!(!format!("{error:#}").is_empty()),
    }
});
