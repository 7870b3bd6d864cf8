//! `DescribeSelfImages`: the caller's own and shared-in custom images, with their status.

use std::collections::BTreeMap;

use ens_domain::image::validate_resource_id;
use ens_domain::{ImageView, Page, PageRequest};

use super::describe_images::{write_disk_device_mappings, IMAGE_BYTES};
use super::{optional, page_request};
use crate::error::ApiError;
use crate::render::{Body, Fields, Value};

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

fn write_self_image(view: &ImageView, fields: &mut Fields<'_>) {
    let image = &view.image;
    fields.str("ImageId", image.id.as_str());
    fields.str("ImageName", &image.name);
    fields.str("ImageOwnerAlias", view.alias.as_str());
    fields.str("Status", image.status.as_str());
    fields.str("Architecture", &image.architecture);
    fields.str("Platform", &image.platform);
    fields.str("OsVersion", &image.os_version);
    fields.str("ComputeType", &image.compute_type);
    fields.digits("ImageSize", image.size_gib);
    fields.digits("ImageStorageSize", image.storage_size_gib());
    if let Some(instance) = &image.instance_id {
        fields.str("InstanceId", instance);
    }
    if let Some(snapshot) = &image.snapshot_id {
        fields.str("SnapshotId", snapshot);
    }
    fields.str("RegionId", view.region.as_str());
    fields.time("CreationTime", image.creation_time);
    write_disk_device_mappings(fields, &image.disk_device_mappings);
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
                Value::records("Image", &page.items, write_self_image, IMAGE_BYTES),
            ),
        ],
    }
}
