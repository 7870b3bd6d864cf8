//! Every error the service puts on the wire, with its code, HTTP status and message, in one
//! place. Handlers build an [`ApiError`]; the renderer turns it into the body both SDKs parse.

use std::borrow::Cow;

use ens_domain::InvalidField;

/// The wire error codes this service emits. Adding a variant forces a status and a message
/// (the matches below have no catch-all arm).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    /// A required common parameter is absent: `Missing{Name}` (e.g. `MissingTimestamp`).
    MissingCommonParameter(&'static str),
    /// A required business parameter is absent; the message names it.
    MissingParameter,
    /// A request-level problem not tied to one parameter (e.g. a name given twice).
    InvalidParameter,
    /// `InvalidParameter.{Name}`: the named parameter has a bad value.
    InvalidParameterNamed(Cow<'static, str>),
    /// `Format` is neither JSON nor XML.
    InvalidFormat,
    /// Malformed `Authorization`, or a required header left out of `SignedHeaders`.
    IncompleteSignature,
    /// `SignatureMethod` / ACS3 algorithm not supported.
    InvalidSignatureMethod,
    /// `SignatureVersion` is not `1.0`.
    InvalidSignatureVersion,
    /// The HMAC (or the V3 payload hash) does not match.
    SignatureDoesNotMatch,
    /// No such AccessKey.
    InvalidAccessKeyIdNotFound,
    /// The AccessKey exists but is disabled.
    InvalidAccessKeyIdInactive,
    /// STS credentials were sent; this service issues none.
    InvalidSecurityTokenMalformed,
    /// `Timestamp` / `x-acs-date` cannot be parsed.
    InvalidTimeStampFormat,
    /// The request time is more than 15 minutes away from the server's clock.
    InvalidTimeStampExpired,
    /// The nonce was already used inside the replay window.
    SignatureNonceUsed,
    /// The path is not `/`.
    InvalidApiNotFound,
    /// The `Action` is unknown.
    InvalidActionNotFound,
    /// `Version` is not `2017-11-10`.
    InvalidVersion,
    /// A method other than GET or POST.
    UnsupportedHttpMethod,
    /// The caller's policies do not allow the action on the resource.
    NoPermission,
    /// `Error.DeleteImage`: the image to delete does not exist or is still shared.
    DeleteImageFailed,
    /// `Forbidden.DelerrorteImage` (the cloud's spelling): an instance runs the image.
    ImageInUse,
    /// `IncorrectStatus.Image`: the image's status does not allow the operation.
    IncorrectImageStatus,
    /// `InvalidImageType.NotSupported`: the operation does not apply to this kind of image.
    ImageTypeNotSupported,
    /// Too many requests for this AccessKey.
    ThrottlingUser,
    /// A bug or an unexpected failure; details go to the log only.
    InternalError,
    /// The store is unreachable or overloaded; retrying later may work.
    ServiceUnavailable,
    /// A cloud error chosen by a test through the control API's fault injection: any code,
    /// with the HTTP status it asked for, so clients can rehearse errors the service never
    /// makes by itself.
    Injected {
        /// The `Code` field, e.g. `InternalError` or `OperationDenied.NoStock`.
        code: String,
        /// The HTTP status to answer with.
        status: u16,
    },
}

impl ErrorCode {
    /// The `Code` field of the error body.
    #[must_use]
    pub fn wire_code(&self) -> Cow<'static, str> {
        match self {
            Self::MissingCommonParameter(name) => Cow::Owned(format!("Missing{name}")),
            Self::MissingParameter => Cow::Borrowed("MissingParameter"),
            Self::InvalidParameter => Cow::Borrowed("InvalidParameter"),
            Self::InvalidParameterNamed(name) => Cow::Owned(format!("InvalidParameter.{name}")),
            Self::InvalidFormat => Cow::Borrowed("InvalidParameter.Format"),
            Self::IncompleteSignature => Cow::Borrowed("IncompleteSignature"),
            Self::InvalidSignatureMethod => Cow::Borrowed("InvalidSignatureMethod"),
            Self::InvalidSignatureVersion => Cow::Borrowed("InvalidSignatureVersion"),
            Self::SignatureDoesNotMatch => Cow::Borrowed("SignatureDoesNotMatch"),
            Self::InvalidAccessKeyIdNotFound => Cow::Borrowed("InvalidAccessKeyId.NotFound"),
            Self::InvalidAccessKeyIdInactive => Cow::Borrowed("InvalidAccessKeyId.Inactive"),
            Self::InvalidSecurityTokenMalformed => Cow::Borrowed("InvalidSecurityToken.Malformed"),
            Self::InvalidTimeStampFormat => Cow::Borrowed("InvalidTimeStamp.Format"),
            Self::InvalidTimeStampExpired => Cow::Borrowed("InvalidTimeStamp.Expired"),
            Self::SignatureNonceUsed => Cow::Borrowed("SignatureNonceUsed"),
            Self::InvalidApiNotFound => Cow::Borrowed("InvalidApi.NotFound"),
            Self::InvalidActionNotFound => Cow::Borrowed("InvalidAction.NotFound"),
            Self::InvalidVersion => Cow::Borrowed("InvalidVersion"),
            Self::UnsupportedHttpMethod => Cow::Borrowed("UnsupportedHTTPMethod"),
            Self::NoPermission => Cow::Borrowed("NoPermission"),
            Self::DeleteImageFailed => Cow::Borrowed("Error.DeleteImage"),
            Self::ImageInUse => Cow::Borrowed("Forbidden.DelerrorteImage"),
            Self::IncorrectImageStatus => Cow::Borrowed("IncorrectStatus.Image"),
            Self::ImageTypeNotSupported => Cow::Borrowed("InvalidImageType.NotSupported"),
            Self::ThrottlingUser => Cow::Borrowed("Throttling.User"),
            Self::InternalError => Cow::Borrowed("InternalError"),
            Self::ServiceUnavailable => Cow::Borrowed("ServiceUnavailable"),
            Self::Injected { code, .. } => Cow::Owned(code.clone()),
        }
    }

    /// The HTTP status the cloud answers with (protocol.md section 9; ENS documents 400 for
    /// its business errors, NoPermission included).
    #[must_use]
    pub fn http_status(&self) -> u16 {
        match self {
            Self::InvalidAccessKeyIdNotFound | Self::InvalidApiNotFound | Self::InvalidActionNotFound => 404,
            Self::InternalError => 500,
            Self::ServiceUnavailable => 503,
            Self::Injected { status, .. } => *status,
            Self::MissingCommonParameter(_)
            | Self::MissingParameter
            | Self::InvalidParameter
            | Self::InvalidParameterNamed(_)
            | Self::InvalidFormat
            | Self::IncompleteSignature
            | Self::InvalidSignatureMethod
            | Self::InvalidSignatureVersion
            | Self::SignatureDoesNotMatch
            | Self::InvalidAccessKeyIdInactive
            | Self::InvalidSecurityTokenMalformed
            | Self::InvalidTimeStampFormat
            | Self::InvalidTimeStampExpired
            | Self::SignatureNonceUsed
            | Self::InvalidVersion
            | Self::UnsupportedHttpMethod
            | Self::NoPermission
            | Self::DeleteImageFailed
            | Self::ImageInUse
            | Self::IncorrectImageStatus
            | Self::ImageTypeNotSupported
            | Self::ThrottlingUser => 400,
        }
    }

    /// The message the cloud documents for the code.
    #[must_use]
    pub fn default_message(&self) -> Cow<'static, str> {
        match self {
            Self::MissingCommonParameter(name) => Cow::Owned(format!("{name} is mandatory for this action.")),
            Self::MissingParameter => Cow::Borrowed(
                "The input parameter that is mandatory for processing this request is not supplied.",
            ),
            Self::InvalidParameter => Cow::Borrowed("The specified parameter is not valid."),
            Self::InvalidParameterNamed(name) => Cow::Owned(format!(
                "The specified field {name} invalid. Please check it again."
            )),
            Self::InvalidFormat => Cow::Borrowed("Specified parameter format is not valid."),
            Self::IncompleteSignature => {
                Cow::Borrowed("The request signature does not conform to Aliyun standards.")
            }
            Self::InvalidSignatureMethod => Cow::Borrowed("Specified signature method is not supported."),
            Self::InvalidSignatureVersion => Cow::Borrowed("Specified signature version is not valid."),
            Self::SignatureDoesNotMatch => {
                Cow::Borrowed("Specified signature does not match our calculation.")
            }
            Self::InvalidAccessKeyIdNotFound => Cow::Borrowed("Specified access key is not found."),
            Self::InvalidAccessKeyIdInactive => Cow::Borrowed("Specified access key is disabled."),
            Self::InvalidSecurityTokenMalformed => Cow::Borrowed(
                "Specified SecurityToken is malformed: this service issues no STS tokens; \
                 sign with a long-term AccessKey instead.",
            ),
            Self::InvalidTimeStampFormat => {
                Cow::Borrowed("Specified time stamp or date value is not well formatted.")
            }
            Self::InvalidTimeStampExpired => Cow::Borrowed("Specified time stamp or date value is expired."),
            Self::SignatureNonceUsed => Cow::Borrowed("Specified signature nonce was used already."),
            Self::InvalidApiNotFound | Self::InvalidActionNotFound => {
                Cow::Borrowed("Specified api is not found, please check your url and method.")
            }
            Self::InvalidVersion => Cow::Borrowed("Specified parameter Version is not valid."),
            Self::UnsupportedHttpMethod => Cow::Borrowed("This http method is not supported."),
            Self::NoPermission => Cow::Borrowed("Permission denied."),
            Self::DeleteImageFailed => Cow::Borrowed("The image is not exist."),
            Self::ImageInUse => Cow::Borrowed("The image cannot be deleted when used by instance."),
            Self::IncorrectImageStatus => {
                Cow::Borrowed("The current status of the image does not support this operation.")
            }
            Self::ImageTypeNotSupported => Cow::Borrowed("The specified image type is not supported."),
            Self::ThrottlingUser => Cow::Borrowed("Request was denied due to user flow control."),
            Self::InternalError => Cow::Borrowed(
                "The request processing has failed due to some unknown error, exception or failure.",
            ),
            Self::ServiceUnavailable => {
                Cow::Borrowed("The request has failed due to a temporary failure of the server.")
            }
            Self::Injected { .. } => Cow::Borrowed("An error injected by a fault rule."),
        }
    }
}

/// An error ready for the wire: a code and the message to send with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.wire_code())]
pub struct ApiError {
    /// What went wrong, as the SDKs see it.
    pub code: ErrorCode,
    /// The `Message` field.
    pub message: String,
}

impl ApiError {
    /// The error with its documented message.
    #[must_use]
    pub fn new(code: ErrorCode) -> Self {
        let message = code.default_message().into_owned();
        Self { code, message }
    }

    /// The error with a message of the caller's, for details the default does not carry.
    #[must_use]
    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// `Missing{name}` for an absent common parameter.
    #[must_use]
    pub fn missing_common(name: &'static str) -> Self {
        Self::new(ErrorCode::MissingCommonParameter(name))
    }

    /// `MissingParameter` naming the absent business parameter.
    #[must_use]
    pub fn missing_parameter(name: &str) -> Self {
        Self::with_message(
            ErrorCode::MissingParameter,
            format!(
                "The input parameter that is mandatory for processing this request is not supplied: {name}."
            ),
        )
    }

    /// `InvalidParameter.{name}` with the documented message and the reason appended.
    #[must_use]
    pub fn invalid_parameter(name: impl Into<Cow<'static, str>>, reason: &str) -> Self {
        let code = ErrorCode::InvalidParameterNamed(name.into());
        let message = format!("{} Reason: {reason}.", code.default_message());
        Self { code, message }
    }

    /// V1 `SignatureDoesNotMatch`. The core SDK splits the message on `:` and compares the
    /// second part with its own string-to-sign, so the message must end with ours after a colon.
    #[must_use]
    pub fn v1_signature_mismatch(string_to_sign: &str) -> Self {
        Self::with_message(
            ErrorCode::SignatureDoesNotMatch,
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
            ),
        )
    }
}

impl From<InvalidField> for ApiError {
    fn from(error: InvalidField) -> Self {
        Self::invalid_parameter(error.field, &error.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_invalid_parameter_uses_the_documented_code_and_message() {
        let error = ApiError::invalid_parameter("PageSize", "must be at most 50");
        assert_eq!(error.code.wire_code(), "InvalidParameter.PageSize");
        assert_eq!(error.code.http_status(), 400);
        assert!(error
            .message
            .starts_with("The specified field PageSize invalid. Please check it again."));
        assert!(error.message.contains("must be at most 50"));
    }

    #[test]
    fn v1_signature_mismatch_message_carries_the_string_to_sign_after_the_first_colon() {
        let error = ApiError::v1_signature_mismatch("GET&%2F&A%3Db");
        let after_colon = error.message.split(':').nth(1);
        assert_eq!(after_colon, Some("GET&%2F&A%3Db"));
    }

    #[test]
    fn missing_common_parameters_follow_the_gateway_pattern() {
        let error = ApiError::missing_common("Timestamp");
        assert_eq!(error.code.wire_code(), "MissingTimestamp");
        assert_eq!(error.message, "Timestamp is mandatory for this action.");
    }

    #[test]
    fn unknown_keys_and_actions_are_404() {
        assert_eq!(ErrorCode::InvalidAccessKeyIdNotFound.http_status(), 404);
        assert_eq!(ErrorCode::InvalidActionNotFound.http_status(), 404);
        assert_eq!(ErrorCode::ServiceUnavailable.http_status(), 503);
    }
}
