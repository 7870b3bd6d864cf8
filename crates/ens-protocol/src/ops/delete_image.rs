//! `DeleteImage`: removes one of the caller's custom images.

use std::collections::BTreeMap;

use ens_domain::ImageId;

use super::required_image_id;
use crate::error::ApiError;

/// A validated `DeleteImage` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteImageRequest {
    /// `ImageId`: the image to delete.
    pub image_id: ImageId,
}

impl DeleteImageRequest {
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
