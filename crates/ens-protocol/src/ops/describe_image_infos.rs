//! `DescribeImageInfos`: the public image catalogue, optionally for one OS type.

use std::collections::BTreeMap;

use ens_domain::Image;

use super::describe_images::disk_device_mappings;
use super::optional;
use crate::error::ApiError;
use crate::render::{Body, Value};

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

fn image_info(image: &Image) -> Value<'_> {
    Value::Object(vec![
        ("ImageId", Value::str(image.id.as_str())),
        ("Description", Value::str(&image.description)),
        ("ImageVersion", Value::str(&image.os_version)),
        ("ImageSize", Value::Digits(image.size_gib)),
        ("OSName", Value::str(&image.platform)),
        ("OSType", Value::str(&image.os_type)),
        ("ComputeType", Value::str(&image.compute_type)),
        ("ImageOwnerAlias", Value::str("system")),
        (
            "RegionId",
            Value::str(
                image
                    .nodes
                    .first()
                    .map(ens_domain::NodeId::as_str)
                    .unwrap_or_default(),
            ),
        ),
        (
            "DiskDeviceMappings",
            disk_device_mappings(&image.disk_device_mappings),
        ),
    ])
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
                Value::List {
                    item: "Image",
                    items: images.iter().map(image_info).collect(),
                },
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
