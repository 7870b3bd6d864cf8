//! `DescribeImageInfos`: the public image catalogue, optionally for one OS type.

use std::collections::BTreeMap;

use ens_domain::Image;

use super::describe_images::{write_disk_device_mappings, IMAGE_BYTES};
use super::optional;
use crate::error::ApiError;
use crate::render::{Body, Fields, Value};

/// A validated `DescribeImageInfos` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeImageInfosRequest {
    /// `OsType`: `linux` or `windows`, matched case-insensitively (the SDK warns that the
    /// cloud is picky about case; both spellings work here).
    pub os_type: Option<String>,
}

impl DescribeImageInfosRequest {
    /// Reads and validates the business parameters.
    ///
    /// # Errors
    /// `InvalidParameter.OsType` for an OS type other than linux or windows.
    pub fn from_params(params: &BTreeMap<String, String>) -> Result<Self, ApiError> {
        let os_type = match optional(params, "OsType") {
            None => None,
            Some(value) if value.eq_ignore_ascii_case("linux") || value.eq_ignore_ascii_case("windows") => {
                Some(value.to_ascii_lowercase())
            }
            Some(_) => return Err(ApiError::invalid_parameter("OsType", "must be linux or windows")),
        };
        Ok(Self { os_type })
    }
}

fn write_image_info(image: &Image, fields: &mut Fields<'_>) {
    fields.str("ImageId", image.id.as_str());
    fields.str("Description", &image.description);
    fields.str("ImageVersion", &image.os_version);
    fields.digits("ImageSize", image.size_gib);
    fields.str("OSName", &image.platform);
    fields.str("OSType", &image.os_type);
    fields.str("ComputeType", &image.compute_type);
    fields.str("ImageOwnerAlias", "system");
    fields.str(
        "RegionId",
        image
            .nodes
            .first()
            .map(ens_domain::NodeId::as_str)
            .unwrap_or_default(),
    );
    write_disk_device_mappings(fields, &image.disk_device_mappings);
}

/// `RequestId`, `Code` 0 and `Images.Image[]` (no pagination).
#[must_use]
pub fn response<'a>(request_id: &'a str, images: &'a [Image]) -> Body<'a> {
    Body {
        action: "DescribeImageInfos",
        fields: vec![
            ("RequestId", Value::str(request_id)),
            ("Code", Value::Int(0)),
            (
                "Images",
                Value::records("Image", images, write_image_info, IMAGE_BYTES),
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_type_is_case_insensitive_and_bounded() {
        let parse = |value: &str| {
            DescribeImageInfosRequest::from_params(
                &[("OsType".to_owned(), value.to_owned())].into_iter().collect(),
            )
        };
        assert_eq!(parse("Linux").unwrap().os_type.as_deref(), Some("linux"));
        assert_eq!(parse("WINDOWS").unwrap().os_type.as_deref(), Some("windows"));
        assert_eq!(
            parse("macos").unwrap_err().code.wire_code(),
            "InvalidParameter.OsType"
        );
    }
}
