//! The single place where failures of any layer become wire errors.
//!
//! A store failure reaches a request in one of two ways: from the request's own store call
//! ([`ServerError::Store`]), or from a group-committed write it shared with other requests
//! ([`ServerError::Batch`], see [`crate::batch`]). Both go through the one mapping,
//! [`store_error`], so a database that is down answers `ServiceUnavailable` whichever path
//! noticed it first.

use ens_domain::ImageError;
use ens_protocol::{Action, ApiError, ErrorCode};
use ens_store::StoreError;

use crate::batch::BatchError;

/// A failed request, before it is rendered.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Already a wire error (validation, authentication, ...).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The store failed or a domain rule refused the change.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A group-committed write carrying this request's item (its nonce claim) failed.
    #[error(transparent)]
    Batch(#[from] BatchError),
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
            Self::Store(error) => store_error(action, &error, request_id),
            Self::Batch(BatchError::Store(error)) => store_error(action, &error, request_id),
            Self::Batch(error @ BatchError::Stopped) => {
                tracing::error!(request_id, %error, "store failure");
                ApiError::new(ErrorCode::InternalError)
            }
        }
    }
}

/// The one mapping from a store failure to the wire: a domain rule's refusal as the
/// operation's API page lists it, an unreachable or busy store as `ServiceUnavailable` (the
/// SDKs retry it), anything else as `InternalError`. Causes are logged with the RequestId,
/// never sent.
///
/// Only the variants whose meaning the server acts on are named; the database's own errors
/// are judged by [`StoreError::is_unavailable`], so their payloads stay the store's business.
fn store_error(action: Action, error: &StoreError, request_id: &str) -> ApiError {
    match error {
        StoreError::Image(error) => image_error(action, error),
        StoreError::Full(_) => {
            tracing::error!(
                request_id,
                %error,
                "the disk holding the store is full: writes are refused with ServiceUnavailable until space is freed"
            );
            ApiError::new(ErrorCode::ServiceUnavailable)
        }
        error if error.is_unavailable() => {
            tracing::warn!(request_id, %error, "store unavailable");
            ApiError::new(ErrorCode::ServiceUnavailable)
        }
        error => {
            tracing::error!(request_id, %error, "store failure");
            ApiError::new(ErrorCode::InternalError)
        }
    }
}

/// The export calls, whose API pages list the generic `InvalidParameter` for an image that is
/// not the caller's own custom image.
fn exports(action: Action) -> bool {
    matches!(action, Action::ExportImage | Action::DescribeExportImageStatus)
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
        ImageError::PublicImage | ImageError::NotOwner if exports(action) => ApiError::with_message(
            ErrorCode::InvalidParameter,
            format!("The errorMessage is only your own custom images can be exported: {detail}. Please check it again."),
        ),
        ImageError::PublicImage => ApiError::invalid_parameter("ImageId", &detail),
        ImageError::NotOwner => ApiError::with_message(
            ErrorCode::NoPermission,
            "Permission denied: the image was shared with you; only its owner can change it.",
        ),
        ImageError::WrongStatus(_) | ImageError::ExportRunning => ApiError::with_message(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Store failures the server meets, built afresh each time (`StoreError` is not `Clone`).
    fn failures() -> Vec<fn() -> StoreError> {
        vec![
            || StoreError::Image(ImageError::NotFound),
            || StoreError::Image(ImageError::PublicImage),
            || StoreError::Image(ImageError::InUse("i-1".into())),
            || StoreError::NotFound("image m-1".into()),
            || StoreError::Conflict("image m-1".into()),
            || StoreError::Invalid("negative size".into()),
        ]
    }

    #[test]
    fn a_batched_store_failure_answers_like_a_direct_one() {
        for action in Action::ALL {
            for failure in failures() {
                let direct = ServerError::Store(failure()).into_api_error(action, "R");
                let batched = ServerError::from(BatchError::from(failure())).into_api_error(action, "R");
                assert_eq!(direct, batched, "{action:?}: {}", failure());
            }
        }
    }

    #[test]
    fn store_failures_that_are_not_domain_refusals_are_internal() {
        for failure in [
            StoreError::NotFound("image m-1".into()),
            StoreError::Conflict("image m-1".into()),
            StoreError::Invalid("negative size".into()),
        ] {
            let error = ServerError::Store(failure).into_api_error(Action::CreateImage, "R");
            assert_eq!(error, ApiError::new(ErrorCode::InternalError));
        }
        let stopped = ServerError::Batch(BatchError::Stopped).into_api_error(Action::DescribeImages, "R");
        assert_eq!(stopped, ApiError::new(ErrorCode::InternalError));
    }

    #[test]
    fn domain_refusals_follow_each_operations_page() {
        let code = |action, error| {
            ServerError::Store(StoreError::Image(error))
                .into_api_error(action, "R")
                .code
                .wire_code()
                .into_owned()
        };
        assert_eq!(
            code(Action::DeleteImage, ImageError::NotFound),
            "Error.DeleteImage"
        );
        assert_eq!(
            code(Action::ModifyImageAttribute, ImageError::NotFound),
            "InvalidParameter.ImageId"
        );
        assert_eq!(
            code(Action::ModifyImageSharePermission, ImageError::PublicImage),
            "InvalidImageType.NotSupported"
        );
        assert_eq!(
            code(Action::DeleteImage, ImageError::InUse("i-1".into())),
            "Forbidden.DelerrorteImage"
        );
        for action in [Action::ExportImage, Action::DescribeExportImageStatus] {
            assert_eq!(code(action, ImageError::PublicImage), "InvalidParameter");
            assert_eq!(code(action, ImageError::NotOwner), "InvalidParameter");
            assert_eq!(code(action, ImageError::NotFound), "InvalidParameter.ImageId");
        }
        assert_eq!(
            code(Action::ExportImage, ImageError::ExportRunning),
            "IncorrectStatus.Image"
        );
    }
}
