//! Writes a loaded catalog back as a catalog file, so the catalog target can check that loading
//! what it wrote gives the same images: whatever the loader accepts, it keeps.

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;

use crate::catalog::Catalog;

/// The catalog file of `catalog`, or `None` if a creation time cannot be written in RFC 3339.
#[must_use]
pub fn write(catalog: &Catalog) -> Option<String> {
    let images = catalog
        .images
        .iter()
        .map(|image| {
            let mut entry = Map::new();
            entry.insert("ImageId".into(), json!(image.id.as_str()));
            entry.insert("ImageName".into(), json!(image.name));
            entry.insert("Architecture".into(), json!(image.architecture));
            entry.insert("Platform".into(), json!(image.platform));
            entry.insert("OSType".into(), json!(image.os_type));
            entry.insert("OSVersion".into(), json!(image.os_version));
            entry.insert("ComputeType".into(), json!(image.compute_type));
            entry.insert("Description".into(), json!(image.description));
            entry.insert("ImageOwnerAlias".into(), json!("system"));
            entry.insert("ImageSize".into(), json!(image.size_gib));
            entry.insert(
                "CreationTime".into(),
                json!(image.creation_time.format(&Rfc3339).ok()?),
            );
            if let Some(snapshot) = &image.snapshot_id {
                entry.insert("SnapshotId".into(), json!(snapshot));
            }
            let disks: Vec<Value> = image
                .disk_device_mappings
                .iter()
                .map(|disk| {
                    json!({"Type": disk.disk_type, "Size": disk.size_gib.to_string(), "Format": disk.format,
                           "imageId": disk.image_id})
                })
                .collect();
            entry.insert("DiskDeviceMappings".into(), json!({ "DiskDeviceMapping": disks }));
            if !image.nodes.is_empty() {
                let nodes: Vec<&str> = image.nodes.iter().map(|node| node.as_str()).collect();
                entry.insert("EnsRegionIds".into(), json!(nodes));
            }
            Some(Value::Object(entry))
        })
        .collect::<Option<Vec<_>>>()?;
    let nodes: Vec<&str> = catalog.nodes.iter().map(|node| node.as_str()).collect();
    Some(json!({ "EnsRegionIds": nodes, "Images": images }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{parse, BUILT_IN};

    #[test]
    fn the_built_in_catalog_survives_a_round_trip() {
        let catalog = parse(BUILT_IN).expect("built-in catalog");
        let again = parse(&write(&catalog).expect("writable")).expect("written catalog");
        assert_eq!(again.nodes, catalog.nodes);
        assert_eq!(again.images, catalog.images);
    }
}
