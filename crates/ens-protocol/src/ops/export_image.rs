//! `ExportImage`: copies one of the caller's custom images to a bucket of object storage.
//!
//! The object written is `<OSSPrefix><ImageId>.qcow2` in `OSSBucket`; the bucket and prefix
//! are checked here with the domain's rules, since they become paths or keys in the
//! operator's storage.

use std::collections::BTreeMap;

use ens_domain::image::validate_resource_id;
use ens_domain::transfer::{validate_bucket_name, validate_export_prefix};
use ens_domain::ImageId;

use super::{optional, optional_token, required, required_image_id};
use crate::error::ApiError;
use crate::render::{Body, Value};

/// A validated `ExportImage` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportImageRequest {
    /// `ImageId`: the image to export.
    pub image_id: ImageId,
    /// `OSSBucket`: the bucket to write to.
    pub bucket: String,
    /// `OSSRegionId`: the bucket's region; with the bucket, selects a configured store.
    pub region: String,
    /// `OSSPrefix`: put before `<ImageId>.qcow2` in the object key.
    pub prefix: Option<String>,
    /// `RoleName`: the RAM role the cloud would write with. Accepted and recorded; this
    /// service has no RAM roles, so it grants nothing.
    pub role_name: Option<String>,
}

impl ExportImageRequest {
    /// Reads and validates the business parameters.
    ///
    /// # Errors
    /// `MissingParameter` for `ImageId`, `OSSBucket` or `OSSRegionId`,
    /// `InvalidParameter.<Name>` for bad values.
    pub fn from_params(params: &BTreeMap<String, String>) -> Result<Self, ApiError> {
        let image_id = required_image_id(params)?;
        let bucket = required(params, "OSSBucket")?;
        validate_bucket_name("OSSBucket", bucket)?;
        let region = required(params, "OSSRegionId")?;
        validate_resource_id("OSSRegionId", region)?;
        let prefix = optional(params, "OSSPrefix")
            .map(|prefix| validate_export_prefix("OSSPrefix", prefix).map(|()| prefix.to_owned()))
            .transpose()?;
        let role_name = optional_token(params, "RoleName")?;
        Ok(Self {
            image_id,
            bucket: bucket.to_owned(),
            region: region.to_owned(),
            prefix,
            role_name,
        })
    }
}

/// `RequestId` and `ExportedImageURL`, where the image will be once exported.
#[must_use]
pub fn response<'a>(request_id: &'a str, exported_image_url: &'a str) -> Body<'a> {
    Body {
        action: "ExportImage",
        fields: vec![
            ("RequestId", Value::str(request_id)),
            ("ExportedImageURL", Value::str(exported_image_url)),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{render_success, Format};

    const IMAGE: &str = "m-5t4xwkfkbs0uxv0kymdb6uip7";

    fn parse(pairs: &[(&str, &str)]) -> Result<ExportImageRequest, ApiError> {
        ExportImageRequest::from_params(&pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect())
    }

    fn code(pairs: &[(&str, &str)]) -> String {
        parse(pairs).unwrap_err().code.wire_code().into_owned()
    }

    const REQUIRED: [(&str, &str); 3] = [
        ("ImageId", IMAGE),
        ("OSSBucket", "exports-1"),
        ("OSSRegionId", "cn-beijing"),
    ];

    #[test]
    fn required_parameters_alone_are_enough() {
        let request = parse(&REQUIRED).unwrap();
        assert_eq!(request.image_id.as_str(), IMAGE);
        assert_eq!(request.bucket, "exports-1");
        assert_eq!(request.region, "cn-beijing");
        assert_eq!((request.prefix, request.role_name), (None, None));
        let full = parse(&[
            REQUIRED[0],
            REQUIRED[1],
            REQUIRED[2],
            ("OSSPrefix", "team-1/day_2/"),
            ("RoleName", "AliyunECSImageExportDefaultRole"),
        ])
        .unwrap();
        assert_eq!(full.prefix.as_deref(), Some("team-1/day_2/"));
        assert_eq!(full.role_name.as_deref(), Some("AliyunECSImageExportDefaultRole"));
    }

    #[test]
    fn each_missing_parameter_is_refused() {
        for absent in 0..REQUIRED.len() {
            let mut sent = REQUIRED.to_vec();
            let (name, _) = sent.remove(absent);
            let error = parse(&sent).unwrap_err();
            assert_eq!(error.code.wire_code(), "MissingParameter", "{name}");
            assert!(error.message.contains(name), "{}", error.message);
            sent.push((name, ""));
            assert_eq!(code(&sent), "MissingParameter", "{name} empty");
        }
    }

    #[test]
    fn each_bad_value_is_refused_with_its_own_code() {
        for (name, value) in [
            ("ImageId", "m 1"),
            ("OSSBucket", "Exports"),
            ("OSSBucket", "ab"),
            ("OSSRegionId", "cn beijing"),
            ("OSSPrefix", &"p".repeat(31)),
            ("OSSPrefix", "a.b"),
            ("RoleName", "role name"),
            ("RoleName", &"r".repeat(65)),
        ] {
            let mut sent: BTreeMap<String, String> =
                REQUIRED.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
            sent.insert(name.into(), value.into());
            assert_eq!(
                ExportImageRequest::from_params(&sent)
                    .unwrap_err()
                    .code
                    .wire_code(),
                format!("InvalidParameter.{name}"),
                "{name}={value}"
            );
        }
    }

    #[test]
    fn traversal_in_the_bucket_or_prefix_is_refused() {
        for bucket in ["../x", "/etc/passwd", "a/../../b", "a\\b", ".."] {
            assert_eq!(
                code(&[REQUIRED[0], ("OSSBucket", bucket), REQUIRED[2]]),
                "InvalidParameter.OSSBucket",
                "{bucket}"
            );
        }
        for prefix in ["../x", "/etc/passwd", "a/../../b", "a\\b", "..", "a//b"] {
            assert_eq!(
                code(&[REQUIRED[0], REQUIRED[1], REQUIRED[2], ("OSSPrefix", prefix)]),
                "InvalidParameter.OSSPrefix",
                "{prefix}"
            );
        }
    }

    #[test]
    fn response_carries_the_url_as_a_string() {
        let url = "https://exports-1.oss-cn-beijing.aliyuncs.com/m-5t4xwkfkbs0uxv0kymdb6uip7.qcow2";
        let body = || response("R-1", url);
        let json: serde_json::Value = serde_json::from_str(&render_success(body(), Format::Json)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"RequestId": "R-1", "ExportedImageURL": url})
        );
        let xml = render_success(body(), Format::Xml);
        assert!(xml.contains("<ExportImageResponse>"), "{xml}");
        assert!(
            xml.contains(&format!("<ExportedImageURL>{url}</ExportedImageURL>")),
            "{xml}"
        );
    }
}
