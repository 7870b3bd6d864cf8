//! The single place where failures of any layer become wire errors.

use ens_domain::ImageError;
use ens_protocol::{Action, ApiError, ErrorCode};
use ens_store::StoreError;

/// A failed request, before it is rendered.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Already a wire error (validation, authentication, ...).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The store failed or a domain rule refused the change.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored secret was sealed under a different master key.
    #[error("the secret of AccessKey {0} cannot be opened with this master key: is it the key this store was created with?")]
    WrongMasterKey(String),
}

impl From<ImageError> for ServerError {
    fn from(error: ImageError) -> Self {
        Self::Store(StoreError::Image(error))
    }
}

impl ServerError {
    /// The wire error to send for a failure of `action`. Internal causes are logged with the
    /// RequestId and never sent.
    #[must_use]
    pub fn into_api_error(self, action: Action, request_id: &str) -> ApiError {
        match self {
            Self::Api(error) => error,
            Self::Store(StoreError::Image(error)) => image_error(action, &error),
            Self::Store(error) if error.is_unavailable() => {
                tracing::warn!(request_id, %error, "store unavailable");
                ApiError::new(ErrorCode::ServiceUnavailable)
            }
            Self::Store(error) => {
                tracing::error!(request_id, %error, "store failure");
                ApiError::new(ErrorCode::InternalError)
            }
        }
    }
}

/// How each operation reports a refused image change, following the codes its API page lists.
fn image_error(action: Action, error: &ImageError) -> ApiError {
    let detail = error.to_string();
    match error {
        ImageError::NotFound if action == Action::DeleteImage => ApiError::new(ErrorCode::DeleteImageFailed),
        ImageError::NotFound => ApiError::invalid_parameter("ImageId", &detail),
        ImageError::PublicImage if action == Action::ModifyImageSharePermission => ApiError::with_message(
            ErrorCode::ImageTypeNotSupported,
            "The specified image type is not supported: public images cannot be shared.",
        ),
        ImageError::PublicImage => ApiError::invalid_parameter("ImageId", &detail),
        ImageError::NotOwner => ApiError::with_message(
            ErrorCode::NoPermission,
            "Permission denied: the image was shared with you; only its owner can change it.",
        ),
        ImageError::WrongStatus(_) => ApiError::with_message(
            ErrorCode::IncorrectImageStatus,
            format!("The current status of the image does not support this operation: {detail}."),
        ),
        ImageError::StillShared(_) => ApiError::with_message(
            ErrorCode::DeleteImageFailed,
            format!("The image cannot be deleted while {detail}; revoke the shares first."),
        ),
        ImageError::InUse(_) => ApiError::with_message(
            ErrorCode::ImageInUse,
            format!("The image cannot be deleted when used by instance: {detail}."),
        ),
        ImageError::ShareLimit | ImageError::ShareWithOwner | ImageError::UnknownAccount(_) => {
            ApiError::invalid_parameter("AddAccounts", &detail)
        }
    }
}
