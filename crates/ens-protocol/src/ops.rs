//! Request parsing and response building for each operation.
//!
//! Each operation module owns both directions for its call: reading validated domain values
//! out of the business parameters (`from_params`), writing them back (`to_params`, for
//! clients), and turning the domain result into the response tree, so the server and any
//! client cannot disagree about names or JSON types.

pub mod create_image;
pub mod delete_image;
pub mod describe_export_image_info;
pub mod describe_export_image_status;
pub mod describe_image_infos;
pub mod describe_image_share_permission;
pub mod describe_images;
pub mod describe_self_images;
pub mod export_image;
pub mod import_image;
pub mod modify_image_attribute;
pub mod modify_image_share_permission;

use std::collections::BTreeMap;

use ens_domain::ImageId;

use crate::error::ApiError;
use crate::render::Value;

/// A business parameter, treating an empty value as absent (as the SDKs never send one).
pub(crate) fn optional<'a>(params: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|value| !value.is_empty())
}

/// `PageNumber` and `PageSize` of a paged call, with the call's default and maximum size.
pub(crate) fn page_request(
    params: &BTreeMap<String, String>,
    default_size: u32,
    max_size: u32,
) -> Result<ens_domain::PageRequest, ApiError> {
    Ok(ens_domain::PageRequest {
        number: ens_domain::PageNumber::parse(optional(params, "PageNumber"))?,
        size: ens_domain::PageSize::parse(optional(params, "PageSize"), default_size, max_size)?,
    })
}

/// A required business parameter: absent or empty is `MissingParameter` naming it.
pub(crate) fn required<'a>(params: &'a BTreeMap<String, String>, name: &str) -> Result<&'a str, ApiError> {
    optional(params, name).ok_or_else(|| ApiError::missing_parameter(name))
}

/// The required `ImageId` parameter, validated.
pub(crate) fn required_image_id(params: &BTreeMap<String, String>) -> Result<ImageId, ApiError> {
    Ok(ImageId::parse(required(params, "ImageId")?)?)
}

/// An optional short name (`OSVersion`, `RoleName`): 1 to 64 ASCII letters, digits, `.`, `_`
/// or `-`, so it can be stored and echoed without escaping surprises.
pub(crate) fn optional_token(
    params: &BTreeMap<String, String>,
    name: &'static str,
) -> Result<Option<String>, ApiError> {
    match optional(params, name) {
        None => Ok(None),
        Some(value)
            if value.len() <= 64
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) =>
        {
            Ok(Some(value.to_owned()))
        }
        Some(_) => Err(ApiError::invalid_parameter(
            name,
            "must be 1 to 64 letters, digits, '.', '_' or '-'",
        )),
    }
}

/// A boolean parameter: `true`/`false` in any case (Python sends `True`); absent is `false`.
pub(crate) fn flag(params: &BTreeMap<String, String>, name: &'static str) -> Result<bool, ApiError> {
    match optional(params, name) {
        None => Ok(false),
        Some(value) if value.eq_ignore_ascii_case("true") => Ok(true),
        Some(value) if value.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(ApiError::invalid_parameter(name, "must be true or false")),
    }
}

/// The body of an operation that returns only `RequestId` and `Code` 0.
#[must_use]
pub fn acknowledgement<'a>(action: &'a str, request_id: &'a str) -> crate::render::Body<'a> {
    crate::render::Body {
        action,
        fields: vec![("RequestId", Value::str(request_id)), ("Code", Value::Int(0))],
    }
}

/// A count as a JSON integer, saturating (counts never come near the limit).
pub(crate) fn int(value: u64) -> Value<'static> {
    Value::Int(i64::try_from(value).unwrap_or(i64::MAX))
}
