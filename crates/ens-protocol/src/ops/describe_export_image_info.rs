//! `DescribeExportImageInfo`: the caller's custom images with their export state and URL.

use std::collections::BTreeMap;

use ens_domain::{ImageExportInfo, ImageId, Page, PageRequest};

use super::{int, optional, page_request};
use crate::error::ApiError;
use crate::render::{Body, Value};

/// Documented default page size.
pub const DEFAULT_PAGE_SIZE: u32 = 10;
/// Documented maximum page size.
pub const MAX_PAGE_SIZE: u32 = 50;

/// Longest `ImageName` filter: the longest name an image may have.
pub const MAX_IMAGE_NAME_CHARS: usize = 128;

/// A validated `DescribeExportImageInfo` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeExportImageInfoRequest {
    /// `ImageId`: only this image.
    pub image_id: Option<ImageId>,
    /// `ImageName`: a filter on the name, at most 128 characters (the store decides how it
    /// matches).
    pub image_name: Option<String>,
    /// `PageNumber` and `PageSize`.
    pub page: PageRequest,
}

impl DescribeExportImageInfoRequest {
    /// Reads and validates the business parameters.
    ///
    /// # Errors
    /// `InvalidParameter.<Name>` for the first invalid parameter.
    pub fn from_params(params: &BTreeMap<String, String>) -> Result<Self, ApiError> {
        let image_id = optional(params, "ImageId").map(ImageId::parse).transpose()?;
        let image_name = match optional(params, "ImageName") {
            Some(name) if name.chars().count() > MAX_IMAGE_NAME_CHARS => {
                return Err(ApiError::invalid_parameter(
                    "ImageName",
                    "must be at most 128 characters",
                ))
            }
            other => other.map(str::to_owned),
        };
        Ok(Self {
            image_id,
            image_name,
            page: page_request(params, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?,
        })
    }
}

fn export_info(info: &ImageExportInfo) -> Value<'_> {
    Value::Object(vec![
        ("ImageId", Value::str(info.image_id.as_str())),
        ("ImageName", Value::str(&info.image_name)),
        ("ImageOwnerAlias", Value::str(info.alias.as_str())),
        ("Architecture", Value::str(&info.architecture)),
        ("Platform", Value::str(&info.platform)),
        ("CreationTime", Value::Time(info.creation_time)),
        ("ImageExportStatus", Value::str(info.status.as_str())),
        (
            "ExportedImageURL",
            Value::str(info.url.as_deref().unwrap_or_default()),
        ),
    ])
}

/// `RequestId`, the page echo and `TotalCount` as integers, and `Images.Image[]`, every field
/// a string (`ExportedImageURL` empty for a never-exported image); no `Code`, as the SDK
/// model declares.
#[must_use]
pub fn response<'a>(request_id: &'a str, page: &'a Page<ImageExportInfo>) -> Body<'a> {
    Body {
        action: "DescribeExportImageInfo",
        fields: vec![
            ("RequestId", Value::str(request_id)),
            ("PageNumber", Value::Int(i64::from(page.request.number.get()))),
            ("PageSize", Value::Int(i64::from(page.request.size.get()))),
            ("TotalCount", int(page.total_count)),
            (
                "Images",
                Value::List {
                    item: "Image",
                    items: page.items.iter().map(export_info).collect(),
                },
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{render_success, Format};
    use ens_domain::{ExportStatus, ImageOwnerAlias};
    use time::macros::datetime;

    fn parse(pairs: &[(&str, &str)]) -> Result<DescribeExportImageInfoRequest, ApiError> {
        DescribeExportImageInfoRequest::from_params(
            &pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
        )
    }

    #[test]
    fn everything_is_optional_and_pages_default_to_ten() {
        let request = parse(&[]).unwrap();
        assert_eq!((request.image_id, request.image_name), (None, None));
        assert_eq!((request.page.number.get(), request.page.size.get()), (1, 10));
        let request = parse(&[
            ("ImageId", "m-5t4xwkfkbs0uxv0kymdb6uip7"),
            ("ImageName", "web"),
            ("PageNumber", "3"),
            ("PageSize", "50"),
        ])
        .unwrap();
        assert_eq!(
            request.image_id.as_ref().map(ImageId::as_str),
            Some("m-5t4xwkfkbs0uxv0kymdb6uip7")
        );
        assert_eq!(request.image_name.as_deref(), Some("web"));
        assert_eq!((request.page.number.get(), request.page.size.get()), (3, 50));
    }

    #[test]
    fn each_bad_value_is_refused_with_its_own_code() {
        let long_name = "n".repeat(MAX_IMAGE_NAME_CHARS + 1);
        for (name, value) in [
            ("PageSize", "51"),
            ("PageSize", "0"),
            ("PageNumber", "0"),
            ("PageNumber", "x"),
            ("ImageId", "m/1"),
            ("ImageName", long_name.as_str()),
        ] {
            assert_eq!(
                parse(&[(name, value)]).unwrap_err().code.wire_code(),
                format!("InvalidParameter.{name}"),
                "{name}={value}"
            );
        }
        let longest = "名".repeat(MAX_IMAGE_NAME_CHARS);
        assert!(parse(&[("ImageName", &longest)]).is_ok());
    }

    fn info(id: &str, status: ExportStatus, url: Option<&str>) -> ImageExportInfo {
        ImageExportInfo {
            image_id: ImageId::parse(id).unwrap(),
            image_name: "web-1".into(),
            alias: ImageOwnerAlias::SelfOwned,
            architecture: "x86_64".into(),
            platform: "centos".into(),
            creation_time: datetime!(2017-12-08 12:10:03 UTC),
            status,
            url: url.map(str::to_owned),
        }
    }

    fn page() -> Page<ImageExportInfo> {
        let url = "https://exports-1.oss-cn-beijing.aliyuncs.com/m-aaaa.qcow2";
        Page {
            items: vec![
                info("m-aaaa", ExportStatus::Exported, Some(url)),
                info("m-bbbb", ExportStatus::Unexported, None),
            ],
            total_count: 12,
            request: parse(&[("PageNumber", "2"), ("PageSize", "2")]).unwrap().page,
        }
    }

    #[test]
    fn response_uses_the_sdk_json_types() {
        let json: serde_json::Value =
            serde_json::from_str(&render_success(response("R-1", &page()), Format::Json)).unwrap();
        assert_eq!(json["RequestId"], "R-1");
        assert!(json.get("Code").is_none());
        assert_eq!(
            (&json["PageNumber"], &json["PageSize"], &json["TotalCount"]),
            (
                &serde_json::json!(2),
                &serde_json::json!(2),
                &serde_json::json!(12)
            )
        );
        let images = json["Images"]["Image"].as_array().unwrap();
        assert_eq!(images.len(), 2);
        assert_eq!(
            images[0],
            serde_json::json!({
                "ImageId": "m-aaaa",
                "ImageName": "web-1",
                "ImageOwnerAlias": "self",
                "Architecture": "x86_64",
                "Platform": "centos",
                "CreationTime": "2017-12-08T12:10:03Z",
                "ImageExportStatus": "Exported",
                "ExportedImageURL": "https://exports-1.oss-cn-beijing.aliyuncs.com/m-aaaa.qcow2",
            })
        );
        assert_eq!(images[1]["ExportedImageURL"], "");
        assert_eq!(images[1]["ImageExportStatus"], "Unexported");
    }

    #[test]
    fn xml_repeats_one_image_element_per_image() {
        let xml = render_success(response("R-1", &page()), Format::Xml);
        assert!(xml.contains("<DescribeExportImageInfoResponse>"), "{xml}");
        assert!(xml.contains("<TotalCount>12</TotalCount>"), "{xml}");
        assert_eq!(xml.matches("<Image>").count(), 2, "{xml}");
        assert!(xml.contains("<Images><Image><ImageId>m-aaaa</ImageId>"), "{xml}");
    }

    #[test]
    fn an_empty_page_still_has_an_images_list() {
        let empty = Page {
            items: Vec::new(),
            total_count: 12,
            request: parse(&[("PageNumber", "99")]).unwrap().page,
        };
        let json: serde_json::Value =
            serde_json::from_str(&render_success(response("R-1", &empty), Format::Json)).unwrap();
        assert_eq!(json["Images"], serde_json::json!({"Image": []}));
        assert_eq!(json["TotalCount"], 12);
    }
}
