//! `DescribeImages`: the images a caller may use, page by page.

use std::collections::BTreeMap;

use ens_domain::image::{validate_image_name, validate_resource_id};
use ens_domain::{DiskDeviceMapping, ImageId, ImageView, NodeId, Page, PageRequest};

use super::{optional, page_request};
use crate::error::ApiError;
use crate::render::{Body, Fields, Value};

/// Documented default page size.
pub const DEFAULT_PAGE_SIZE: u32 = 10;
/// Documented maximum page size.
pub const MAX_PAGE_SIZE: u32 = 50;

/// A validated `DescribeImages` request. `Status` is documented as unused and is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeImagesRequest {
    /// `EnsRegionId`: only images available on this node.
    pub node: Option<NodeId>,
    /// `ImageId`: only this image.
    pub image_id: Option<ImageId>,
    /// `ImageName`: only images with exactly this name.
    pub image_name: Option<String>,
    /// `SnapshotId`: only images made from this snapshot.
    pub snapshot_id: Option<String>,
    /// `PageNumber` and `PageSize`.
    pub page: PageRequest,
}

impl DescribeImagesRequest {
    /// Reads and validates the business parameters.
    ///
    /// # Errors
    /// `InvalidParameter.<Name>` for the first invalid parameter.
    pub fn from_params(params: &BTreeMap<String, String>) -> Result<Self, ApiError> {
        let node = optional(params, "EnsRegionId")
            .map(|value| NodeId::parse("EnsRegionId", value))
            .transpose()?;
        let image_id = optional(params, "ImageId").map(ImageId::parse).transpose()?;
        let image_name = optional(params, "ImageName")
            .map(|name| validate_image_name("ImageName", name).map(|()| name.to_owned()))
            .transpose()?;
        let snapshot_id = optional(params, "SnapshotId")
            .map(|id| validate_resource_id("SnapshotId", id).map(|()| id.to_owned()))
            .transpose()?;
        let page = page_request(params, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        Ok(Self {
            node,
            image_id,
            image_name,
            snapshot_id,
            page,
        })
    }

    /// The business parameters a client sends for this request.
    #[must_use]
    pub fn to_params(&self) -> Vec<(String, String)> {
        let mut params = Vec::new();
        let mut push = |name: &str, value: Option<&str>| {
            if let Some(value) = value {
                params.push((name.to_owned(), value.to_owned()));
            }
        };
        push("EnsRegionId", self.node.as_ref().map(NodeId::as_str));
        push("ImageId", self.image_id.as_ref().map(ImageId::as_str));
        push("ImageName", self.image_name.as_deref());
        push("SnapshotId", self.snapshot_id.as_deref());
        params.push(("PageNumber".into(), self.page.number.get().to_string()));
        params.push(("PageSize".into(), self.page.size.get().to_string()));
        params
    }
}

/// `DiskDeviceMappings` as the SDK models declare it (all strings, lower-case `imageId`).
pub(crate) fn write_disk_device_mappings(fields: &mut Fields<'_>, disks: &[DiskDeviceMapping]) {
    fields.list(
        "DiskDeviceMappings",
        "DiskDeviceMapping",
        disks,
        |fields, disk| {
            fields.str("Type", &disk.disk_type);
            fields.digits("Size", disk.size_gib);
            fields.str("Format", &disk.format);
            fields.str("imageId", &disk.image_id);
        },
    );
}

/// About how many bytes one image of a page takes in either format, names and markup
/// included: enough for the usual one, so that a page's buffer is allocated once.
pub(crate) const IMAGE_BYTES: usize = 640;

fn write_image(view: &ImageView, fields: &mut Fields<'_>) {
    let image = &view.image;
    fields.str("ImageId", image.id.as_str());
    fields.str("ImageName", &image.name);
    fields.str("ImageOwnerAlias", view.alias.as_str());
    fields.str("Architecture", &image.architecture);
    fields.str("Platform", &image.platform);
    fields.digits("ImageSize", image.size_gib);
    fields.time("CreationTime", image.creation_time);
    if let Some(snapshot) = &image.snapshot_id {
        fields.str("SnapshotId", snapshot);
    }
    fields.str("RegionId", view.region.as_str());
    write_disk_device_mappings(fields, &image.disk_device_mappings);
}

/// The response body: `Code` 0, the page echo and `TotalCount` as integers, `Images.Image[]`.
#[must_use]
pub fn response<'a>(request_id: &'a str, page: &'a Page<ImageView>) -> Body<'a> {
    Body {
        action: "DescribeImages",
        fields: vec![
            ("RequestId", Value::str(request_id)),
            ("Code", Value::Int(0)),
            (
                "Images",
                Value::records("Image", &page.items, write_image, IMAGE_BYTES),
            ),
            ("PageNumber", Value::Int(i64::from(page.request.number.get()))),
            ("PageSize", Value::Int(i64::from(page.request.size.get()))),
            (
                "TotalCount",
                Value::Int(i64::try_from(page.total_count).unwrap_or(i64::MAX)),
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{render_success, Format};
    use ens_domain::{AccountId, Image, ImageOwnerAlias, PageNumber, PageSize};
    use proptest::prelude::*;
    use time::macros::datetime;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_page_one_of_ten() {
        let request = DescribeImagesRequest::from_params(&params(&[("Status", "whatever")])).unwrap();
        assert_eq!(request.page.number.get(), 1);
        assert_eq!(request.page.size.get(), 10);
        assert_eq!(request.node, None);
    }

    #[test]
    fn each_invalid_parameter_is_named_in_the_error_code() {
        for (name, value) in [
            ("PageSize", "51"),
            ("PageSize", "0"),
            ("PageNumber", "-1"),
            ("PageNumber", "x"),
            ("ImageId", "bad id"),
            ("ImageName", "1starts-with-digit"),
            ("SnapshotId", "sp/1"),
            ("EnsRegionId", "cn dalian"),
        ] {
            let error = DescribeImagesRequest::from_params(&params(&[(name, value)])).unwrap_err();
            assert_eq!(
                error.code.wire_code(),
                format!("InvalidParameter.{name}"),
                "{name}={value}"
            );
        }
    }

    #[test]
    fn empty_values_count_as_absent() {
        let request =
            DescribeImagesRequest::from_params(&params(&[("ImageId", ""), ("PageSize", "")])).unwrap();
        assert_eq!(request.image_id, None);
        assert_eq!(request.page.size.get(), 10);
    }

    #[test]
    fn response_uses_the_sdk_json_types() {
        let viewer = AccountId::parse("AccountId", "1000000000000001").unwrap();
        let image = Image {
            id: ImageId::parse("centos_7").unwrap(),
            name: "centos_7".into(),
            owner: None,
            architecture: "x86_64".into(),
            platform: "centos".into(),
            os_type: "linux".into(),
            size_gib: 40,
            creation_time: datetime!(2017-12-08 12:10:03 UTC),
            snapshot_id: None,
            nodes: vec![NodeId::parse("n", "cn-dalian-unicom").unwrap()],
            disk_device_mappings: vec![DiskDeviceMapping {
                disk_type: "system".into(),
                size_gib: 40,
                format: "qcow2".into(),
                image_id: "centos_7".into(),
            }],
            status: ens_domain::ImageStatus::Available,
            instance_id: None,
            compute_type: "ens_vm".into(),
            os_version: "7".into(),
            description: String::new(),
        };
        let page = Page {
            items: vec![ImageView {
                alias: ImageOwnerAlias::of(None, &viewer),
                region: image.nodes[0].clone(),
                image: image.into(),
            }],
            total_count: 1,
            request: DescribeImagesRequest::from_params(&BTreeMap::new()).unwrap().page,
        };
        let json: serde_json::Value =
            serde_json::from_str(&render_success(response("R", &page), Format::Json)).unwrap();
        assert_eq!(json["Code"], 0);
        assert_eq!(json["TotalCount"], 1);
        assert_eq!(json["PageSize"], 10);
        let item = &json["Images"]["Image"][0];
        assert_eq!(item["ImageSize"], "40");
        assert_eq!(item["CreationTime"], "2017-12-08T12:10:03Z");
        assert_eq!(item["ImageOwnerAlias"], "system");
        assert_eq!(item["RegionId"], "cn-dalian-unicom");
        assert!(item.get("SnapshotId").is_none());
        assert_eq!(
            item["DiskDeviceMappings"]["DiskDeviceMapping"][0]["imageId"],
            "centos_7"
        );
        assert_eq!(item["DiskDeviceMappings"]["DiskDeviceMapping"][0]["Size"], "40");
    }

    proptest! {
        #[test]
        fn valid_requests_round_trip_through_params(
            node in proptest::option::of("[a-z]{2}-[a-z]{3,8}-[a-z]{4,7}"),
            image in proptest::option::of("m-[a-z0-9]{25}"),
            name in proptest::option::of("[A-Za-z][A-Za-z0-9._:-]{1,40}"),
            number in 1u32..100_000,
            size in 1u32..=50,
        ) {
            let name = name.filter(|n| {
                let lower = n.to_ascii_lowercase();
                !lower.starts_with("acs:") && !lower.starts_with("aliyun")
            });
            let request = DescribeImagesRequest {
                node: node.map(|n| NodeId::parse("EnsRegionId", &n).unwrap()),
                image_id: image.map(|i| ImageId::parse(&i).unwrap()),
                image_name: name,
                snapshot_id: None,
                page: PageRequest {
                    number: PageNumber::parse(Some(&number.to_string())).unwrap(),
                    size: PageSize::parse(Some(&size.to_string()), 10, 50).unwrap(),
                },
            };
            let params: BTreeMap<String, String> = request.to_params().into_iter().collect();
            prop_assert_eq!(DescribeImagesRequest::from_params(&params).unwrap(), request);
        }

        #[test]
        fn arbitrary_parameters_never_panic(values in proptest::collection::vec(".*", 7)) {
            let names = ["EnsRegionId", "ImageId", "ImageName", "SnapshotId", "Status", "PageNumber", "PageSize"];
            let params: BTreeMap<String, String> =
                names.iter().map(|n| (*n).to_owned()).zip(values).collect();
            let _ = DescribeImagesRequest::from_params(&params);
        }
    }
}
