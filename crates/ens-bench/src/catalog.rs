//! A generated public catalog of K images, in the `--catalog` format of ens-images.
//!
//! Deterministic, so the expected answers of every scenario are known in advance and checked
//! before measuring (a benchmark of wrong answers is worthless).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};

/// The nodes images are spread over; each image is on 2 or 3 of them.
pub const NODES: [&str; 3] = ["cn-dalian-unicom", "cn-hangzhou-telecom", "cn-beijing-cmcc"];

/// The node the filtered scenarios ask for.
pub const FILTER_NODE: &str = NODES[2];

const PLATFORMS: [&str; 3] = ["centos", "ubuntu", "debian"];

fn nodes_of(index: u64) -> Vec<&'static str> {
    match index % 4 {
        0 => vec![NODES[0], NODES[1]],
        1 => vec![NODES[1], NODES[2]],
        2 => vec![NODES[2], NODES[0]],
        _ => vec![NODES[0], NODES[1], NODES[2]],
    }
}

/// The ID of image `index`.
pub fn image_id(index: u64) -> String {
    format!("bench_img_{index:07}_x64_20G_alibase")
}

/// The (unique) name of image `index`.
pub fn image_name(index: u64) -> String {
    format!("bench-img-{index:07}_x64_20G")
}

/// How many of the first `count` images are on [`FILTER_NODE`].
pub fn images_on_filter_node(count: u64) -> u64 {
    (0..4)
        .filter(|residue| nodes_of(*residue).contains(&FILTER_NODE))
        .map(|residue| count / 4 + u64::from(count % 4 > residue))
        .sum()
}

/// Image `index` as a catalog entry.
pub fn catalog_entry(index: u64) -> Value {
    let id = image_id(index);
    let minute = index % 60;
    let hour = (index / 60) % 24;
    let day = 1 + (index / 1440) % 28;
    json!({
        "ImageId": id,
        "ImageName": image_name(index),
        "Architecture": "x86_64",
        "Platform": PLATFORMS[(index % 3) as usize],
        "OSType": "linux",
        "ImageSize": "20",
        "CreationTime": format!("2024-05-{day:02}T{hour:02}:{minute:02}:00Z"),
        "SnapshotId": format!("sp-bench{index:07}"),
        "DiskDeviceMappings": {"DiskDeviceMapping": [
            {"Type": "system", "Size": "20", "Format": "qcow2", "imageId": id}
        ]},
        "EnsRegionIds": nodes_of(index),
    })
}

/// Image `index` as a DescribeImages item, for the bare server's canned page.
pub fn describe_item(index: u64) -> Value {
    let id = image_id(index);
    json!({
        "ImageId": id,
        "ImageName": image_name(index),
        "ImageOwnerAlias": "system",
        "Architecture": "x86_64",
        "Platform": PLATFORMS[(index % 3) as usize],
        "ImageSize": "20",
        "CreationTime": "2024-05-01T00:00:00Z",
        "SnapshotId": format!("sp-bench{index:07}"),
        "RegionId": nodes_of(index)[0],
        "DiskDeviceMappings": {"DiskDeviceMapping": [
            {"Type": "system", "Size": "20", "Format": "qcow2", "imageId": id}
        ]},
    })
}

/// Writes a catalog of `count` images to `path`, streaming so a million images stay cheap.
pub fn write(path: &Path, count: u64) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    write!(out, "{{\"EnsRegionIds\":{},\"Images\":[", json!(NODES))?;
    for index in 0..count {
        if index > 0 {
            out.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut out, &catalog_entry(index))?;
    }
    out.write_all(b"]}\n")?;
    out.flush()?;
    Ok(())
}
