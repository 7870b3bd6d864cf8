//! `DescribeExportImageStatus`: where the export of one of the caller's images stands.

use std::collections::BTreeMap;

use ens_domain::{ExportStatus, ImageId};

use super::required_image_id;
use crate::error::ApiError;
use crate::render::{Body, Value};

/// A validated `DescribeExportImageStatus` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeExportImageStatusRequest {
    /// `ImageId`: the image.
    pub image_id: ImageId,
}

impl DescribeExportImageStatusRequest {
    /// Reads and validates the business parameters.
    ///
    /// # Errors
    /// `MissingParameter` or `InvalidParameter.ImageId`.
    pub fn from_params(params: &BTreeMap<String, String>) -> Result<Self, ApiError> {
        Ok(Self {
            image_id: required_image_id(params)?,
        })
    }
}

/// `RequestId` and `ImageExportStatus` (`Unexported`, `Exporting`, `Exported` or
/// `ExportError`); the SDK model has no `Code` for this call.
#[must_use]
pub fn response<'a>(request_id: &'a str, status: ExportStatus) -> Body<'a> {
    Body {
        action: "DescribeExportImageStatus",
        fields: vec![
            ("RequestId", Value::str(request_id)),
            ("ImageExportStatus", Value::str(status.as_str())),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{render_success, Format};

    fn parse(pairs: &[(&str, &str)]) -> Result<DescribeExportImageStatusRequest, ApiError> {
        DescribeExportImageStatusRequest::from_params(
            &pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
        )
    }

    #[test]
    fn the_image_id_is_required_and_checked() {
        assert_eq!(
            parse(&[("ImageId", "m-5t4xwkfkbs0uxv0kymdb6uip7")])
                .unwrap()
                .image_id
                .as_str(),
            "m-5t4xwkfkbs0uxv0kymdb6uip7"
        );
        for missing in [&[][..], &[("ImageId", "")][..]] {
            assert_eq!(parse(missing).unwrap_err().code.wire_code(), "MissingParameter");
        }
        assert_eq!(
            parse(&[("ImageId", "../m-1")]).unwrap_err().code.wire_code(),
            "InvalidParameter.ImageId"
        );
    }

    #[test]
    fn response_names_the_status_as_the_sdk_does() {
        for status in ExportStatus::ALL {
            let body = response("R-1", status);
            let json: serde_json::Value = serde_json::from_str(&render_success(body, Format::Json)).unwrap();
            assert_eq!(
                json,
                serde_json::json!({"RequestId": "R-1", "ImageExportStatus": status.as_str()})
            );
        }
        let xml = render_success(response("R-1", ExportStatus::Exporting), Format::Xml);
        assert!(
            xml.contains("<ImageExportStatus>Exporting</ImageExportStatus>"),
            "{xml}"
        );
    }
}
