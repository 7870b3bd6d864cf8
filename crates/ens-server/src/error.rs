//! The single place where failures of any layer become wire errors.

use ens_protocol::{ApiError, ErrorCode};
use ens_store::StoreError;

/// A failed request, before it is rendered.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Already a wire error (validation, authentication, ...).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ServerError {
    /// The wire error to send. Internal causes are logged with the RequestId and never sent.
    #[must_use]
    pub fn into_api_error(self, request_id: &str) -> ApiError {
        match self {
            Self::Api(error) => error,
            Self::Store(error @ StoreError::Unavailable(_)) => {
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
