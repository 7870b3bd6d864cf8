//! The public image catalog file: `{"EnsRegionIds": [...], "Images": [...]}`.
//!
//! Each image entry has the fields of a DescribeImages `Image` object plus `EnsRegionIds`, the
//! nodes where it is available (absent: every node). Unknown fields are refused, so a typo
//! cannot silently drop data; every error names the entry and the field.
//!
//! The file is self-contained (the fuzz harness compiles it on its own, see `fuzz/src/lib.rs`):
//! it uses only the domain crate and its own serde, so keep it free of the server's modules.

use std::collections::{BTreeSet, HashSet};

use anyhow::{anyhow, bail, Context};
use ens_domain::image::{validate_image_name, validate_resource_id};
use ens_domain::validation::{validate_compute_type, validate_short_name, validate_text};
use ens_domain::{DiskDeviceMapping, Image, ImageId, ImageStatus, InvalidField, NodeId};
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The catalog compiled into the server, used when the operator gives none.
pub const BUILT_IN: &str = include_str!("../catalog/default.json");

/// A loaded catalog: the nodes it names and its images.
#[derive(Debug)]
pub struct Catalog {
    /// Every node the file names, top-level and per image.
    pub nodes: Vec<NodeId>,
    /// The images; an empty `nodes` list means "every node", resolved by [`Catalog::images_on`].
    pub images: Vec<Image>,
}

impl Catalog {
    /// The images with "every node" resolved against `all_nodes`.
    #[must_use]
    pub fn images_on(self, all_nodes: &[NodeId]) -> Vec<Image> {
        self.images
            .into_iter()
            .map(|mut image| {
                if image.nodes.is_empty() {
                    image.nodes = all_nodes.to_vec();
                }
                image
            })
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct CatalogFile {
    #[serde(default)]
    ens_region_ids: Vec<String>,
    images: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Text(String),
    Integer(u64),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Disks {
    Wrapped {
        #[serde(rename = "DiskDeviceMapping")]
        disk_device_mapping: Vec<Disk>,
    },
    Plain(Vec<Disk>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Disk {
    #[serde(rename = "Type")]
    disk_type: String,
    #[serde(rename = "Size")]
    size: Number,
    #[serde(rename = "Format")]
    format: String,
    #[serde(rename = "imageId")]
    image_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct Entry {
    image_id: String,
    image_name: String,
    architecture: String,
    platform: String,
    image_size: Number,
    creation_time: String,
    #[serde(default)]
    snapshot_id: Option<String>,
    #[serde(default, rename = "OSType")]
    os_type: Option<String>,
    #[serde(default, rename = "OSVersion")]
    os_version: Option<String>,
    #[serde(default)]
    compute_type: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    image_owner_alias: Option<String>,
    #[serde(default)]
    disk_device_mappings: Option<Disks>,
    #[serde(default)]
    ens_region_ids: Option<Vec<String>>,
}

fn gib(field: &str, value: &Number) -> anyhow::Result<u64> {
    let size = match value {
        Number::Integer(size) => *size,
        Number::Text(text) => text
            .parse::<u64>()
            .map_err(|_| anyhow!("{field} must be a whole number of GiB, got {text:?}"))?,
    };
    if size == 0 || size > 65_536 {
        bail!("{field} must be from 1 to 65536 GiB, got {size}");
    }
    Ok(size)
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> anyhow::Result<String> {
    if allowed.contains(&value) {
        Ok(value.to_owned())
    } else {
        bail!("{field} must be one of {allowed:?}, got {value:?}")
    }
}

fn convert(entry: Entry) -> anyhow::Result<Image> {
    let id = ImageId::parse(&entry.image_id).map_err(|e| anyhow!("ImageId: {}", e.reason))?;
    validate_image_name("ImageName", &entry.image_name).map_err(|e| anyhow!("ImageName: {}", e.reason))?;
    if let Some(alias) = &entry.image_owner_alias {
        if alias != "system" {
            bail!("ImageOwnerAlias: catalog images are public, so it can only be \"system\"");
        }
    }
    let rule = |e: InvalidField| anyhow!("{}: {}", e.field, e.reason);
    validate_short_name("Architecture", &entry.architecture).map_err(rule)?;
    validate_short_name("Platform", &entry.platform).map_err(rule)?;
    for (field, value) in [
        ("OSVersion", &entry.os_version),
        ("Description", &entry.description),
    ] {
        if let Some(value) = value {
            validate_text(field, value).map_err(rule)?;
        }
    }
    let size_gib = gib("ImageSize", &entry.image_size)?;
    let creation_time = OffsetDateTime::parse(&entry.creation_time, &Rfc3339).map_err(|_| {
        anyhow!(
            "CreationTime must look like 2017-12-08T12:10:03Z, got {:?}",
            entry.creation_time
        )
    })?;
    if let Some(snapshot) = &entry.snapshot_id {
        validate_resource_id("SnapshotId", snapshot).map_err(|e| anyhow!("SnapshotId: {}", e.reason))?;
    }
    let os_type = match &entry.os_type {
        Some(value) => one_of("OSType", value, &["linux", "windows"])?,
        None if entry.platform.eq_ignore_ascii_case("windows") => "windows".to_owned(),
        None => "linux".to_owned(),
    };
    let disks = match entry.disk_device_mappings {
        None => vec![DiskDeviceMapping {
            disk_type: "system".into(),
            size_gib,
            format: "qcow2".into(),
            image_id: entry.image_id.clone(),
        }],
        Some(
            Disks::Wrapped {
                disk_device_mapping: disks,
            }
            | Disks::Plain(disks),
        ) => disks
            .into_iter()
            .enumerate()
            .map(|(index, disk)| {
                let field = format!("DiskDeviceMappings[{index}]");
                validate_resource_id("imageId", &disk.image_id)
                    .map_err(|e| anyhow!("{field}.imageId: {}", e.reason))?;
                Ok(DiskDeviceMapping {
                    disk_type: one_of(&format!("{field}.Type"), &disk.disk_type, &["system", "data"])?,
                    size_gib: gib(&format!("{field}.Size"), &disk.size)?,
                    format: one_of(&format!("{field}.Format"), &disk.format, &["raw", "qcow2"])?,
                    image_id: disk.image_id,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
    };
    if disks.is_empty() {
        bail!("DiskDeviceMappings must list at least one disk (omit it for one system disk of ImageSize)");
    }
    let nodes = match entry.ens_region_ids {
        None => Vec::new(),
        Some(ids) if ids.is_empty() => {
            bail!("EnsRegionIds must name at least one node (omit it for every node)")
        }
        Some(ids) => {
            let mut seen = HashSet::new();
            ids.iter()
                .map(|id| {
                    if !seen.insert(id.as_str()) {
                        bail!("EnsRegionIds names {id:?} twice");
                    }
                    NodeId::parse("EnsRegionIds", id)
                        .map_err(|e| anyhow!("EnsRegionIds: {id:?}: {}", e.reason))
                })
                .collect::<anyhow::Result<Vec<_>>>()?
        }
    };
    Ok(Image {
        id,
        name: entry.image_name,
        owner: None,
        architecture: entry.architecture,
        platform: entry.platform,
        os_type,
        size_gib,
        creation_time,
        snapshot_id: entry.snapshot_id,
        nodes,
        disk_device_mappings: disks,
        status: ImageStatus::Available,
        instance_id: None,
        compute_type: match entry.compute_type {
            Some(value) => {
                validate_compute_type("ComputeType", &value).map_err(rule)?;
                value
            }
            None => "ens_vm".to_owned(),
        },
        os_version: entry.os_version.unwrap_or_default(),
        description: entry.description.unwrap_or_default(),
    })
}

/// Parses and validates a catalog document.
///
/// # Errors
/// A message naming the entry (index and ImageId) and the field at fault.
pub fn parse(text: &str) -> anyhow::Result<Catalog> {
    let document = &mut serde_json::Deserializer::from_str(text);
    let file: CatalogFile = serde_path_to_error::deserialize(document)
        .map_err(|error| anyhow!("at {}: {}", error.path(), error.inner()))?;
    let mut nodes = BTreeSet::new();
    for id in &file.ens_region_ids {
        let node =
            NodeId::parse("EnsRegionIds", id).map_err(|e| anyhow!("EnsRegionIds: {id:?}: {}", e.reason))?;
        nodes.insert(node);
    }
    let mut images = Vec::with_capacity(file.images.len());
    let mut ids = HashSet::with_capacity(file.images.len());
    for (index, value) in file.images.into_iter().enumerate() {
        let label = match value.get("ImageId").and_then(serde_json::Value::as_str) {
            Some(id) => format!("Images[{index}] ({id})"),
            None => format!("Images[{index}]"),
        };
        let entry: Entry = serde_path_to_error::deserialize(value).map_err(|error| {
            let path = error.path().to_string();
            if path == "." {
                anyhow!("{label}: {}", error.inner())
            } else {
                anyhow!("{label}: field {path}: {}", error.inner())
            }
        })?;
        let image = convert(entry).with_context(|| label.clone())?;
        if !ids.insert(image.id.clone()) {
            bail!("{label}: ImageId {} appears twice in the catalog", image.id);
        }
        nodes.extend(image.nodes.iter().cloned());
        images.push(image);
    }
    Ok(Catalog {
        nodes: nodes.into_iter().collect(),
        images,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_catalog_is_valid_and_realistic() {
        let catalog = parse(BUILT_IN).unwrap();
        assert!(catalog.images.len() >= 8);
        assert!(catalog.nodes.iter().any(|n| n.as_str() == "cn-dalian-unicom"));
        assert!(catalog
            .images
            .iter()
            .any(|i| i.platform == "windows" && i.os_type == "windows"));
    }

    #[test]
    fn absent_node_lists_mean_every_node() {
        let catalog = parse(
            r#"{"EnsRegionIds": ["cn-a-1"], "Images": [
                {"ImageId": "img_1", "ImageName": "img_1", "Architecture": "x86_64", "Platform": "centos",
                 "ImageSize": 20, "CreationTime": "2020-01-01T00:00:00Z"},
                {"ImageId": "img_2", "ImageName": "img_2", "Architecture": "x86_64", "Platform": "centos",
                 "ImageSize": "20", "CreationTime": "2020-01-01T00:00:00Z", "EnsRegionIds": ["cn-b-1"]}]}"#,
        )
        .unwrap();
        let all = catalog.nodes.clone();
        assert_eq!(all.len(), 2);
        let images = catalog.images_on(&all);
        assert_eq!(images[0].nodes, all);
        assert_eq!(images[1].nodes.len(), 1);
        assert_eq!(images[0].disk_device_mappings[0].size_gib, 20);
    }

    fn error_of(entry: &str) -> String {
        let text = format!(r#"{{"Images": [{entry}]}}"#);
        format!("{:#}", parse(&text).unwrap_err())
    }

    #[test]
    fn errors_name_the_entry_and_the_field() {
        let base = r#""ImageId": "img_1", "Architecture": "x86_64", "Platform": "centos", "ImageSize": 20"#;
        let missing = error_of(&format!(r#"{{{base}, "CreationTime": "2020-01-01T00:00:00Z"}}"#));
        assert!(
            missing.contains("Images[0] (img_1)") && missing.contains("ImageName"),
            "{missing}"
        );
        let bad_time = error_of(&format!(
            r#"{{{base}, "ImageName": "ok_name", "CreationTime": "yesterday"}}"#
        ));
        assert!(bad_time.contains("CreationTime"), "{bad_time}");
        let unknown = error_of(&format!(
            r#"{{{base}, "ImageName": "ok_name", "CreationTime": "2020-01-01T00:00:00Z", "Colour": "red"}}"#
        ));
        assert!(unknown.contains("Colour"), "{unknown}");
        let bad_type = error_of(&format!(
            r#"{{{base}, "ImageName": 5, "CreationTime": "2020-01-01T00:00:00Z"}}"#
        ));
        assert!(bad_type.contains("ImageName"), "{bad_type}");
        let bad_name = error_of(&format!(
            r#"{{{base}, "ImageName": "1bad", "CreationTime": "2020-01-01T00:00:00Z"}}"#
        ));
        assert!(bad_name.contains("ImageName"), "{bad_name}");
        let control = error_of(&format!(
            r#"{{{base}, "ImageName": "ok_name", "CreationTime": "2020-01-01T00:00:00Z", "Description": "a\u0007b"}}"#
        ));
        assert!(
            control.contains("Description") && control.contains("U+0007"),
            "{control}"
        );
        let compute = error_of(&format!(
            r#"{{{base}, "ImageName": "ok_name", "CreationTime": "2020-01-01T00:00:00Z", "ComputeType": "gpu"}}"#
        ));
        assert!(compute.contains("ComputeType"), "{compute}");
    }

    #[test]
    fn an_empty_disk_list_is_refused() {
        let base = r#""ImageId": "img_1", "ImageName": "n_1", "Architecture": "x86_64", "Platform": "centos",
                      "ImageSize": 20, "CreationTime": "2020-01-01T00:00:00Z""#;
        for disks in [r#"[]"#, r#"{"DiskDeviceMapping": []}"#] {
            let message = error_of(&format!(r#"{{{base}, "DiskDeviceMappings": {disks}}}"#));
            assert!(message.contains("at least one disk"), "{message}");
        }
    }

    #[test]
    fn duplicate_image_ids_are_refused() {
        let entry = r#"{"ImageId": "img_1", "ImageName": "n_1", "Architecture": "x86_64", "Platform": "centos",
                        "ImageSize": 20, "CreationTime": "2020-01-01T00:00:00Z"}"#;
        let message = error_of(&format!("{entry}, {entry}"));
        assert!(
            message.contains("Images[1] (img_1)") && message.contains("twice"),
            "{message}"
        );
    }
}
