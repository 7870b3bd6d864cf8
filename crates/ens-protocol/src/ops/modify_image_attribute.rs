//! `ModifyImageAttribute`: renames one of the caller's custom images.

use std::collections::BTreeMap;

use ens_domain::image::validate_image_name;
use ens_domain::ImageId;

use super::{required, required_image_id};
use crate::error::ApiError;

/// A validated `ModifyImageAttribute` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModifyImageAttributeRequest {
    /// `ImageId`: the image to rename.
    pub image_id: ImageId,
    /// `ImageName`: the new name, following the naming rules.
    pub image_name: String,
}

impl ModifyImageAttributeRequest {
    /// Reads and validates the business parameters.
    ///
    /// # Errors
    /// `MissingParameter` or `InvalidParameter.<Name>`.
    pub fn from_params(params: &BTreeMap<String, String>) -> Result<Self, ApiError> {
        let image_id = required_image_id(params)?;
        let image_name = required(params, "ImageName")?;
        validate_image_name("ImageName", image_name)?;
        Ok(Self {
            image_id,
            image_name: image_name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_parameters_are_required_and_the_name_is_checked() {
        let parse = |pairs: &[(&str, &str)]| {
            ModifyImageAttributeRequest::from_params(
                &pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            )
        };
        assert_eq!(
            parse(&[("ImageId", "m-1")]).unwrap_err().code.wire_code(),
            "MissingParameter"
        );
        assert_eq!(
            parse(&[("ImageName", "abc")]).unwrap_err().code.wire_code(),
            "MissingParameter"
        );
        assert_eq!(
            parse(&[("ImageId", "m-1"), ("ImageName", "aliyun_x")])
                .unwrap_err()
                .code
                .wire_code(),
            "InvalidParameter.ImageName"
        );
        assert_eq!(
            parse(&[("ImageId", "m-1"), ("ImageName", "web.v2")])
                .unwrap()
                .image_name,
            "web.v2"
        );
    }
}
