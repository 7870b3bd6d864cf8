//! `DescribeSelfImages`: the caller's own and shared-in custom images, with their status.

use std::collections::BTreeMap;

use ens_domain::image::validate_resource_id;
use ens_domain::{ImageView, Page, PageRequest};

use super::describe_images::disk_device_mappings;
use super::{optional, page_request};
use crate::error::ApiError;
use crate::render::{Body, Value};

/// Documented default page size.
pub const DEFAULT_PAGE_SIZE: u32 = 10;
/// Documented maximum page size.
pub const MAX_PAGE_SIZE: u32 = 50;

/// A validated `DescribeSelfImages` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeSelfImagesRequest {
    /// `ImageId`: fuzzy (substring) match.
    pub image_id: Option<String>,
    /// `ImageName`: fuzzy (substring) match.
    pub image_name: Option<String>,
    /// `SnapshotId`: exact match.
    pub snapshot_id: Option<String>,
    /// `PageNumber` and `PageSize`.
    pub page: PageRequest,
}

fn fuzzy(params: &BTreeMap<String, String>, name: &'static str) -> Result<Option<String>, ApiError> {
    match optional(params, name) {
        Some(value) if value.chars().count() > 128 => Err(ApiError::invalid_parameter(
            name,
            "must be at most 128 characters",
        )),
        other => Ok(other.map(str::to_owned)),
    }
}

impl DescribeSelfImagesRequest {
    /// Reads and validates the business parameters.
    ///
    /// # Errors
    /// `InvalidParameter.<Name>` for the first invalid parameter.
    pub fn from_params(params: &BTreeMap<String, String>) -> Result<Self, ApiError> {
        let snapshot_id = optional(params, "SnapshotId")
            .map(|id| validate_resource_id("SnapshotId", id).map(|()| id.to_owned()))
            .transpose()?;
        Ok(Self {
            image_id: fuzzy(params, "ImageId")?,
            image_name: fuzzy(params, "ImageName")?,
            snapshot_id,
            page: page_request(params, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?,
        })
    }
}

fn self_image(view: &ImageView) -> Value<'_> {
    let image = &view.image;
    let mut fields = vec![
        ("ImageId", Value::str(image.id.as_str())),
        ("ImageName", Value::str(&image.name)),
        ("ImageOwnerAlias", Value::str(view.alias.as_str())),
        ("Status", Value::str(image.status.as_str())),
        ("Architecture", Value::str(&image.architecture)),
        ("Platform", Value::str(&image.platform)),
        ("OsVersion", Value::str(&image.os_version)),
        ("ComputeType", Value::str(&image.compute_type)),
        ("ImageSize", Value::Digits(image.size_gib)),
        ("ImageStorageSize", Value::Digits(image.storage_size_gib())),
    ];
    if let Some(instance) = &image.instance_id {
        fields.push(("InstanceId", Value::str(instance)));
    }
    if let Some(snapshot) = &image.snapshot_id {
        fields.push(("SnapshotId", Value::str(snapshot)));
    }
    fields.push(("RegionId", Value::str(view.region.as_str())));
    fields.push(("CreationTime", Value::Time(image.creation_time)));
    fields.push((
        "DiskDeviceMappings",
        disk_device_mappings(&image.disk_device_mappings),
    ));
    Value::Object(fields)
}

/// `RequestId`, `Code` 0, page counters **as strings** (as the SDK model declares), images.
#[must_use]
pub fn response<'a>(request_id: &'a str, page: &'a Page<ImageView>) -> Body<'a> {
    Body {
        action: "DescribeSelfImages",
        fields: vec![
            ("RequestId", Value::str(request_id)),
            ("Code", Value::Int(0)),
            ("PageNumber", Value::Digits(u64::from(page.request.number.get()))),
            ("PageSize", Value::Digits(u64::from(page.request.size.get()))),
            ("TotalCount", Value::Digits(page.total_count)),
            (
                "Images",
                Value::List {
                    item: "Image",
                    items: page.items.iter().map(self_image).collect(),
                },
            ),
        ],
    }
}
