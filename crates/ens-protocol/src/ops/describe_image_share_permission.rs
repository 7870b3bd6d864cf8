//! `DescribeImageSharePermission`: the accounts one of the caller's images is shared with.

use std::collections::BTreeMap;

use ens_domain::{AccountId, ImageId, Page, PageRequest};

use super::{int, optional, page_request, required_image_id};
use crate::error::ApiError;
use crate::render::{Body, Value};

/// Documented default page size.
pub const DEFAULT_PAGE_SIZE: u32 = 10;
/// Documented maximum page size.
pub const MAX_PAGE_SIZE: u32 = 100;

/// A validated `DescribeImageSharePermission` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeImageSharePermissionRequest {
    /// `ImageId`: the image.
    pub image_id: ImageId,
    /// `AliyunId`: only this account.
    pub aliyun_id: Option<AccountId>,
    /// `PageNumber` and `PageSize`.
    pub page: PageRequest,
}

impl DescribeImageSharePermissionRequest {
    /// Reads and validates the business parameters.
    ///
    /// # Errors
    /// `MissingParameter` or `InvalidParameter.<Name>`.
    pub fn from_params(params: &BTreeMap<String, String>) -> Result<Self, ApiError> {
        Ok(Self {
            image_id: required_image_id(params)?,
            aliyun_id: optional(params, "AliyunId")
                .map(|id| AccountId::parse("AliyunId", id))
                .transpose()?,
            page: page_request(params, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?,
        })
    }
}

/// `RequestId`, `ImageId`, integer page counters and `Accounts.Account[].AliyunUid`.
#[must_use]
pub fn response<'a>(request_id: &'a str, image_id: &'a ImageId, page: &'a Page<AccountId>) -> Body<'a> {
    Body {
        action: "DescribeImageSharePermission",
        fields: vec![
            ("RequestId", Value::str(request_id)),
            ("ImageId", Value::str(image_id.as_str())),
            ("PageNumber", Value::Int(i64::from(page.request.number.get()))),
            ("PageSize", Value::Int(i64::from(page.request.size.get()))),
            ("TotalCount", int(page.total_count)),
            (
                "Accounts",
                Value::List {
                    item: "Account",
                    items: page
                        .items
                        .iter()
                        .map(|account| Value::Object(vec![("AliyunUid", Value::str(account.as_str()))]))
                        .collect(),
                },
            ),
        ],
    }
}
