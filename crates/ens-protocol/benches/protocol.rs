//! Micro-benchmarks of the two pieces of protocol work every API call pays: checking the
//! signature (parse the request, rebuild what was signed, HMAC it) and rendering the answer.
//!
//! Run with `cargo bench -p ens-protocol`. The signed requests are the official SDKs'
//! captured ones from `tests/vectors`, so the benchmark measures the requests real clients
//! send, not a simplified stand-in.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark fixtures: a broken fixture should stop the run loudly"
)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ens_domain::{
    DiskDeviceMapping, Image, ImageId, ImageOwnerAlias, ImageStatus, ImageView, NodeId, Page, PageNumber,
    PageRequest, PageSize,
};
use ens_protocol::ops::describe_images;
use ens_protocol::render::render_success;
use ens_protocol::{borrowed_headers, parse_call, AccessKeySecret, Call, Format, RawRequest};
use serde_json::Value;

/// One captured wire request of the SDK vectors, with the header list the parser takes.
struct Wire {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Wire {
    /// The request as the server's handler sees it, its headers borrowed as it borrows them.
    fn parse(&self) -> Result<Call, ens_protocol::ParseFailure> {
        parse_call(&RawRequest {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &borrowed_headers(&self.headers),
            body: &self.body,
        })
    }
}

/// The first captured DescribeImages request of a vector file.
fn captured(file: &str) -> Wire {
    let path = format!("{}/tests/vectors/{file}", env!("CARGO_MANIFEST_DIR"));
    let document: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let wire = document["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|vector| vector.get("wire"))
        .expect("a vector with a captured request");
    let target = wire["path"].as_str().unwrap();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Wire {
        method: wire["method"].as_str().unwrap().to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers: wire["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                (
                    pair[0].as_str().unwrap().to_ascii_lowercase(),
                    pair[1].as_str().unwrap().to_owned(),
                )
            })
            .collect(),
        body: wire["body"].as_str().unwrap_or("").as_bytes().to_vec(),
    }
}

fn signature_verifier(c: &mut Criterion) {
    let secret = AccessKeySecret::new("testsecret".to_owned());
    for (name, file) in [
        ("v3 (ACS3-HMAC-SHA256)", "acs3.json"),
        ("v1 (HMAC-SHA1)", "rpc_v1.json"),
    ] {
        let wire = captured(file);
        // The fixture must verify, or the benchmark would time the failure path.
        wire.parse().unwrap().credentials.verify(&secret).unwrap();
        c.bench_function(&format!("parse and verify, {name}"), |b| {
            b.iter(|| {
                let call = black_box(&wire).parse().unwrap();
                call.credentials.verify(black_box(&secret)).unwrap();
            });
        });
    }
}

/// A full first page: ten images as the generated benchmark catalog holds them.
fn first_page() -> Page<ImageView> {
    let items = (0..10)
        .map(|index| {
            let id = format!("m-gen00000100000000000{index:05}");
            ImageView {
                image: std::sync::Arc::new(Image {
                    id: ImageId::parse(&id).unwrap(),
                    name: format!("app-880000010000000001-{index:06}"),
                    owner: None,
                    architecture: "x86_64".into(),
                    platform: "centos".into(),
                    os_type: "linux".into(),
                    size_gib: 20,
                    creation_time: time::macros::datetime!(2025-01-02 03:04:05 UTC),
                    snapshot_id: Some(format!("sp-gen{index:05}")),
                    nodes: vec![NodeId::parse("EnsRegionId", "cn-hangzhou-telecom").unwrap()],
                    disk_device_mappings: vec![DiskDeviceMapping {
                        disk_type: "system".into(),
                        size_gib: 20,
                        format: "qcow2".into(),
                        image_id: id.clone(),
                    }],
                    status: ImageStatus::Available,
                    instance_id: None,
                    compute_type: "ens_vm".into(),
                    os_version: "7.9".into(),
                    description: String::new(),
                }),
                alias: ImageOwnerAlias::System,
                region: NodeId::parse("EnsRegionId", "cn-hangzhou-telecom").unwrap(),
            }
        })
        .collect();
    Page {
        items,
        total_count: 100_013,
        request: PageRequest {
            number: PageNumber::parse(None).unwrap(),
            size: PageSize::parse(None, 10, 50).unwrap(),
        },
    }
}

fn response_renderer(c: &mut Criterion) {
    let page = first_page();
    for (name, format) in [("JSON", Format::Json), ("XML", Format::Xml)] {
        c.bench_function(&format!("render a DescribeImages page of 10, {name}"), |b| {
            b.iter(|| {
                let body =
                    describe_images::response(black_box("9E1B5C5B-2E6A-4C5E-8E8A-7D1C0F3A2B11"), &page);
                black_box(render_success(body, format))
            });
        });
    }
}

criterion_group!(benches, signature_verifier, response_renderer);
criterion_main!(benches);
