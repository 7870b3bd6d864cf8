//! `CreateImage`: a custom image from one of the caller's instances or snapshots.

use std::collections::BTreeMap;

use ens_domain::image::{validate_image_name, validate_resource_id};

use super::{flag, optional, required};
use crate::error::ApiError;
use crate::render::{Body, Value};

/// What the image is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// `InstanceId`: the instance's disks.
    Instance(String),
    /// `SnapshotId`: one disk snapshot.
    Snapshot(String),
}

/// A validated `CreateImage` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateImageRequest {
    /// `ImageName`, following the naming rules.
    pub image_name: String,
    /// `InstanceId` or `SnapshotId` (exactly one).
    pub source: ImageSource,
    /// `DeleteAfterImageUpload`: release the build instance once the image is uploaded.
    pub delete_after_upload: bool,
    /// `WithDataDisks`: include the instance's data disks.
    pub with_data_disks: bool,
    /// `TargetOSSRegionId`: region of the bucket that keeps the image files.
    pub target_oss_region: Option<String>,
}

impl CreateImageRequest {
    /// Reads and validates the business parameters.
    ///
    /// # Errors
    /// `MissingParameter` for `ImageName` or a missing source, `InvalidParameter.<Name>` for bad values.
    pub fn from_params(params: &BTreeMap<String, String>) -> Result<Self, ApiError> {
        let image_name = required(params, "ImageName")?;
        validate_image_name("ImageName", image_name)?;
        let source = match (optional(params, "InstanceId"), optional(params, "SnapshotId")) {
            (Some(instance), None) => {
                validate_resource_id("InstanceId", instance)?;
                ImageSource::Instance(instance.to_owned())
            }
            (None, Some(snapshot)) => {
                validate_resource_id("SnapshotId", snapshot)?;
                ImageSource::Snapshot(snapshot.to_owned())
            }
            (None, None) => return Err(ApiError::missing_parameter("InstanceId or SnapshotId")),
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid_parameter(
                    "SnapshotId",
                    "give InstanceId or SnapshotId, not both",
                ))
            }
        };
        let target_oss_region = optional(params, "TargetOSSRegionId")
            .map(|region| validate_resource_id("TargetOSSRegionId", region).map(|()| region.to_owned()))
            .transpose()?;
        Ok(Self {
            image_name: image_name.to_owned(),
            source,
            delete_after_upload: flag(params, "DeleteAfterImageUpload")?,
            with_data_disks: flag(params, "WithDataDisks")?,
            target_oss_region,
        })
    }
}

/// `RequestId`, `Code` 0 and the new `ImageId`.
#[must_use]
pub fn response<'a>(request_id: &'a str, image_id: &'a str) -> Body<'a> {
    Body {
        action: "CreateImage",
        fields: vec![
            ("RequestId", Value::str(request_id)),
            ("Code", Value::Int(0)),
            ("ImageId", Value::str(image_id)),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<CreateImageRequest, ApiError> {
        CreateImageRequest::from_params(&pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect())
    }

    #[test]
    fn python_booleans_and_a_source_are_accepted() {
        let request = parse(&[
            ("ImageName", "web-1"),
            ("InstanceId", "i-abc"),
            ("WithDataDisks", "True"),
            ("DeleteAfterImageUpload", "false"),
        ])
        .unwrap();
        assert_eq!(request.source, ImageSource::Instance("i-abc".into()));
        assert!(request.with_data_disks);
        assert!(!request.delete_after_upload);
    }

    #[test]
    fn missing_and_invalid_values_are_named() {
        let code = |pairs: &[(&str, &str)]| parse(pairs).unwrap_err().code.wire_code().into_owned();
        assert_eq!(code(&[("InstanceId", "i-1")]), "MissingParameter");
        assert_eq!(code(&[("ImageName", "web-1")]), "MissingParameter");
        assert_eq!(
            code(&[("ImageName", "1web"), ("InstanceId", "i-1")]),
            "InvalidParameter.ImageName"
        );
        assert_eq!(
            code(&[
                ("ImageName", "web-1"),
                ("InstanceId", "i-1"),
                ("WithDataDisks", "yes")
            ]),
            "InvalidParameter.WithDataDisks"
        );
        assert_eq!(
            code(&[
                ("ImageName", "web-1"),
                ("InstanceId", "i-1"),
                ("SnapshotId", "sp-1")
            ]),
            "InvalidParameter.SnapshotId"
        );
        assert_eq!(
            code(&[("ImageName", "web-1"), ("InstanceId", "i 1")]),
            "InvalidParameter.InstanceId"
        );
    }
}
