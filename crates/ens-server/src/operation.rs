//! The operation a call asks for, read once, right after the protocol parse.
//!
//! [`Operation::parse`] turns the call's business parameters into the action's typed request
//! (`ens_protocol::ops`), and says what the call asks in the terms the rest of the pipeline
//! needs: the RAM action and resource the authorizer checks, and whether it changes state,
//! which the audit records. After it, nothing in the server reads raw parameters.
//!
//! It lives in the server, not in `ens-protocol`: the resource is a RAM ARN, named by
//! `ens-policy`, and the wire crate must depend on nothing but the domain (clients use the
//! per-operation request types directly and never need the RAM view of a call).

use ens_domain::AccountId;
use ens_policy::{image_arn, ALL_RESOURCES};
use ens_protocol::ops::create_image::CreateImageRequest;
use ens_protocol::ops::delete_image::DeleteImageRequest;
use ens_protocol::ops::describe_export_image_info::DescribeExportImageInfoRequest;
use ens_protocol::ops::describe_export_image_status::DescribeExportImageStatusRequest;
use ens_protocol::ops::describe_image_infos::DescribeImageInfosRequest;
use ens_protocol::ops::describe_image_share_permission::DescribeImageSharePermissionRequest;
use ens_protocol::ops::describe_images::DescribeImagesRequest;
use ens_protocol::ops::describe_self_images::DescribeSelfImagesRequest;
use ens_protocol::ops::export_image::ExportImageRequest;
use ens_protocol::ops::import_image::ImportImageRequest;
use ens_protocol::ops::modify_image_attribute::ModifyImageAttributeRequest;
use ens_protocol::ops::modify_image_share_permission::ModifyImageSharePermissionRequest;
use ens_protocol::{Action, ApiError, Call};

/// One call's operation: one variant per implemented action, carrying its validated request,
/// or [`Operation::Invalid`] when the parameters did not validate.
///
/// An invalid call is still an operation, not an early error: the cloud answers an
/// authentication or authorization failure before a parameter error, so the validation error
/// waits in `Invalid` until dispatch, and until then the call is authorized and audited by
/// what it names (its action and, for the image actions, the `ImageId` as sent), exactly
/// like a valid one.
#[derive(Debug, Clone)]
pub enum Operation {
    /// `DescribeImages`.
    DescribeImages(DescribeImagesRequest),
    /// `CreateImage`.
    CreateImage(CreateImageRequest),
    /// `DeleteImage`.
    DeleteImage(DeleteImageRequest),
    /// `ModifyImageAttribute`.
    ModifyImageAttribute(ModifyImageAttributeRequest),
    /// `DescribeImageInfos`.
    DescribeImageInfos(DescribeImageInfosRequest),
    /// `DescribeSelfImages`.
    DescribeSelfImages(DescribeSelfImagesRequest),
    /// `DescribeImageSharePermission`.
    DescribeImageSharePermission(DescribeImageSharePermissionRequest),
    /// `ModifyImageSharePermission`.
    ModifyImageSharePermission(ModifyImageSharePermissionRequest),
    /// `ImportImage`.
    ImportImage(ImportImageRequest),
    /// `ExportImage`.
    ExportImage(ExportImageRequest),
    /// `DescribeExportImageStatus`.
    DescribeExportImageStatus(DescribeExportImageStatusRequest),
    /// `DescribeExportImageInfo`.
    DescribeExportImageInfo(DescribeExportImageInfoRequest),
    /// Parameters that did not validate; answered with their error once the caller is
    /// authenticated and authorized.
    Invalid(InvalidParameters),
}

/// A call whose business parameters did not validate: what authorization and the audit
/// need of it, and the error to answer.
#[derive(Debug, Clone)]
pub struct InvalidParameters {
    /// The action the call named.
    action: Action,
    /// For the actions whose RAM resource is an image, the non-empty `ImageId` as sent (it
    /// may itself be what is invalid).
    named_image: Option<String>,
    /// The first invalid parameter, as the wire reports it.
    error: ApiError,
}

impl InvalidParameters {
    /// The error to answer.
    #[must_use]
    pub fn error(&self) -> &ApiError {
        &self.error
    }
}

/// Longest `ImageId` an invalid call is authorized and audited by. Image IDs are at most 128
/// characters, so a longer one names no image; it is judged as naming none (`*`), so that
/// matching policy patterns against it, and the audit record, stay small whatever is sent.
const MAX_NAMED_IMAGE_BYTES: usize = 256;

/// Whether a policy names `action`'s resource as one image (`acs:ens::{account}:image/{ImageId}`)
/// rather than all resources (`*`), as each action's API page documents it. The export
/// actions take an `ImageId` too, but their pages name all resources.
fn names_image(action: Action) -> bool {
    match action {
        Action::DeleteImage | Action::ModifyImageSharePermission => true,
        Action::DescribeImages
        | Action::CreateImage
        | Action::ModifyImageAttribute
        | Action::DescribeImageInfos
        | Action::DescribeSelfImages
        | Action::DescribeImageSharePermission
        | Action::ImportImage
        | Action::ExportImage
        | Action::DescribeExportImageStatus
        | Action::DescribeExportImageInfo => false,
    }
}

/// Whether `action` changes state (and so is always audited). `ExportImage` counts although
/// its RAM access level is `get`: it starts a copy and writes to a bucket.
fn changes_state(action: Action) -> bool {
    match action {
        Action::CreateImage
        | Action::DeleteImage
        | Action::ModifyImageAttribute
        | Action::ModifyImageSharePermission
        | Action::ImportImage
        | Action::ExportImage => true,
        Action::DescribeImages
        | Action::DescribeImageInfos
        | Action::DescribeSelfImages
        | Action::DescribeImageSharePermission
        | Action::DescribeExportImageStatus
        | Action::DescribeExportImageInfo => false,
    }
}

impl Operation {
    /// Reads `call`'s business parameters into the action's typed request. Never fails: an
    /// invalid call becomes [`Operation::Invalid`], answered later (see the type's doc).
    #[must_use]
    pub fn parse(call: &Call) -> Self {
        let params = &call.params;
        let parsed = match call.action {
            Action::DescribeImages => DescribeImagesRequest::from_params(params).map(Self::DescribeImages),
            Action::CreateImage => CreateImageRequest::from_params(params).map(Self::CreateImage),
            Action::DeleteImage => DeleteImageRequest::from_params(params).map(Self::DeleteImage),
            Action::ModifyImageAttribute => {
                ModifyImageAttributeRequest::from_params(params).map(Self::ModifyImageAttribute)
            }
            Action::DescribeImageInfos => {
                DescribeImageInfosRequest::from_params(params).map(Self::DescribeImageInfos)
            }
            Action::DescribeSelfImages => {
                DescribeSelfImagesRequest::from_params(params).map(Self::DescribeSelfImages)
            }
            Action::DescribeImageSharePermission => DescribeImageSharePermissionRequest::from_params(params)
                .map(Self::DescribeImageSharePermission),
            Action::ModifyImageSharePermission => {
                ModifyImageSharePermissionRequest::from_params(params).map(Self::ModifyImageSharePermission)
            }
            Action::ImportImage => ImportImageRequest::from_params(params).map(Self::ImportImage),
            Action::ExportImage => ExportImageRequest::from_params(params).map(Self::ExportImage),
            Action::DescribeExportImageStatus => {
                DescribeExportImageStatusRequest::from_params(params).map(Self::DescribeExportImageStatus)
            }
            Action::DescribeExportImageInfo => {
                DescribeExportImageInfoRequest::from_params(params).map(Self::DescribeExportImageInfo)
            }
        };
        parsed.unwrap_or_else(|error| {
            let named_image = names_image(call.action)
                .then(|| params.get("ImageId"))
                .flatten()
                .filter(|image| !image.is_empty() && image.len() <= MAX_NAMED_IMAGE_BYTES)
                .cloned();
            Self::Invalid(InvalidParameters {
                action: call.action,
                named_image,
                error,
            })
        })
    }

    /// The action the call named.
    #[must_use]
    pub fn action(&self) -> Action {
        match self {
            Self::DescribeImages(_) => Action::DescribeImages,
            Self::CreateImage(_) => Action::CreateImage,
            Self::DeleteImage(_) => Action::DeleteImage,
            Self::ModifyImageAttribute(_) => Action::ModifyImageAttribute,
            Self::DescribeImageInfos(_) => Action::DescribeImageInfos,
            Self::DescribeSelfImages(_) => Action::DescribeSelfImages,
            Self::DescribeImageSharePermission(_) => Action::DescribeImageSharePermission,
            Self::ModifyImageSharePermission(_) => Action::ModifyImageSharePermission,
            Self::ImportImage(_) => Action::ImportImage,
            Self::ExportImage(_) => Action::ExportImage,
            Self::DescribeExportImageStatus(_) => Action::DescribeExportImageStatus,
            Self::DescribeExportImageInfo(_) => Action::DescribeExportImageInfo,
            Self::Invalid(invalid) => invalid.action,
        }
    }

    /// The RAM action policies name to allow or deny the call, e.g. `ens:DescribeImages`.
    #[must_use]
    pub fn ram_action(&self) -> &'static str {
        self.action().ram_action()
    }

    /// The resource the authorizer checks, for a caller of `account`: the image's ARN for
    /// the actions whose API page names the image resource, `*` for the others (and for an
    /// image action that named no image).
    #[must_use]
    pub fn resource(&self, account: &AccountId) -> String {
        match self.named_image() {
            Some(image) => image_arn(None, account.as_str(), image),
            None => ALL_RESOURCES.to_owned(),
        }
    }

    /// Whether the call changes state (and so is audited even when it succeeds).
    #[must_use]
    pub fn writes(&self) -> bool {
        changes_state(self.action())
    }

    /// The image named as the RAM resource, if the action names one (see [`names_image`]).
    fn named_image(&self) -> Option<&str> {
        match self {
            Self::DeleteImage(request) => Some(request.image_id.as_str()),
            Self::ModifyImageSharePermission(request) => Some(request.image_id.as_str()),
            Self::Invalid(invalid) => invalid.named_image.as_deref(),
            Self::DescribeImages(_)
            | Self::CreateImage(_)
            | Self::ModifyImageAttribute(_)
            | Self::DescribeImageInfos(_)
            | Self::DescribeSelfImages(_)
            | Self::DescribeImageSharePermission(_)
            | Self::ImportImage(_)
            | Self::ExportImage(_)
            | Self::DescribeExportImageStatus(_)
            | Self::DescribeExportImageInfo(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ens_protocol::request::SignatureCheck;
    use ens_protocol::{Credentials, Format};
    use time::macros::datetime;

    use super::*;

    const IMAGE: &str = "m-5t4xwkfkbs0uxv0kymdb6uip7";

    fn account() -> AccountId {
        AccountId::parse("AccountId", "1000000000000001").unwrap()
    }

    fn call(action: Action, params: &[(&str, &str)]) -> Call {
        Call {
            action,
            format: Format::Json,
            params: params
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            credentials: Credentials {
                access_key_id: "testid".into(),
                nonce: "n".into(),
                timestamp: datetime!(2025-01-02 03:04:05 UTC),
                check: SignatureCheck::V1 {
                    string_to_sign: String::new(),
                    provided: String::new(),
                },
                has_security_token: false,
            },
        }
    }

    /// Parameters every action accepts.
    fn valid_params(action: Action) -> Vec<(&'static str, &'static str)> {
        match action {
            Action::DescribeImages
            | Action::DescribeImageInfos
            | Action::DescribeSelfImages
            | Action::DescribeExportImageInfo => Vec::new(),
            Action::CreateImage => vec![("ImageName", "web-1"), ("InstanceId", "i-web1")],
            Action::DeleteImage
            | Action::DescribeImageSharePermission
            | Action::DescribeExportImageStatus => vec![("ImageId", IMAGE)],
            Action::ModifyImageAttribute => vec![("ImageId", IMAGE), ("ImageName", "web-2")],
            Action::ModifyImageSharePermission => {
                vec![("ImageId", IMAGE), ("AddAccounts", "1000000000000002")]
            }
            Action::ImportImage => vec![
                ("ImageName", "imported-1"),
                ("Architecture", "x86_64"),
                ("OSType", "linux"),
                ("ImageFormat", "qcow2"),
                ("ComputeType", "ens_vm"),
                ("OSSBucket", "images-in"),
                ("OSSObject", "centos.qcow2"),
            ],
            Action::ExportImage => vec![
                ("ImageId", IMAGE),
                ("OSSBucket", "exports-1"),
                ("OSSRegionId", "cn-beijing"),
            ],
        }
    }

    #[test]
    fn every_action_parses_into_its_own_variant() {
        for action in Action::ALL {
            let operation = Operation::parse(&call(action, &valid_params(action)));
            assert!(
                !matches!(operation, Operation::Invalid(_)),
                "{action:?}: {operation:?}"
            );
            assert_eq!(operation.action(), action);
            assert_eq!(operation.ram_action(), action.ram_action());
        }
    }

    #[test]
    fn writes_are_the_six_changing_actions() {
        let writes: Vec<Action> = Action::ALL
            .into_iter()
            .filter(|action| Operation::parse(&call(*action, &valid_params(*action))).writes())
            .collect();
        assert_eq!(
            writes,
            [
                Action::CreateImage,
                Action::DeleteImage,
                Action::ModifyImageAttribute,
                Action::ModifyImageSharePermission,
                Action::ImportImage,
                Action::ExportImage,
            ]
        );
        // An invalid write is still a write: it is audited like one.
        assert!(Operation::parse(&call(Action::DeleteImage, &[])).writes());
        assert!(Operation::parse(&call(Action::ImportImage, &[])).writes());
        assert!(!Operation::parse(&call(Action::DescribeExportImageStatus, &[])).writes());
        assert!(!Operation::parse(&call(Action::DescribeImages, &[("PageSize", "51")])).writes());
    }

    #[test]
    fn only_delete_and_share_name_the_image_as_their_resource() {
        let arn = format!("acs:ens::1000000000000001:image/{IMAGE}");
        for action in Action::ALL {
            let resource = Operation::parse(&call(action, &valid_params(action))).resource(&account());
            let expected = if names_image(action) { arn.as_str() } else { "*" };
            assert_eq!(resource, expected, "{action:?}");
        }
        assert!(names_image(Action::DeleteImage) && names_image(Action::ModifyImageSharePermission));
    }

    #[test]
    fn an_invalid_call_keeps_its_action_resource_and_error() {
        // The image is valid, the account list is not: authorization still judges the image.
        let operation = Operation::parse(&call(
            Action::ModifyImageSharePermission,
            &[("ImageId", IMAGE), ("AddAccounts", "12,x")],
        ));
        let Operation::Invalid(invalid) = &operation else {
            panic!("expected Invalid, got {operation:?}");
        };
        assert_eq!(invalid.error().code.wire_code(), "InvalidParameter.AddAccounts");
        assert_eq!(operation.action(), Action::ModifyImageSharePermission);
        assert_eq!(
            operation.resource(&account()),
            format!("acs:ens::1000000000000001:image/{IMAGE}")
        );
    }

    #[test]
    fn an_invalid_image_id_is_still_the_resource_as_sent() {
        let operation = Operation::parse(&call(Action::DeleteImage, &[("ImageId", "m 1")]));
        assert!(matches!(&operation, Operation::Invalid(invalid)
            if invalid.error().code.wire_code() == "InvalidParameter.ImageId"));
        assert_eq!(
            operation.resource(&account()),
            "acs:ens::1000000000000001:image/m 1"
        );
        // No image at all (absent or empty): all resources.
        for params in [&[][..], &[("ImageId", "")][..]] {
            let operation = Operation::parse(&call(Action::DeleteImage, params));
            assert!(matches!(&operation, Operation::Invalid(invalid)
                if invalid.error().code.wire_code() == "MissingParameter"));
            assert_eq!(operation.resource(&account()), "*");
        }
        // An ID too long to be one names no image.
        let long = "m".repeat(MAX_NAMED_IMAGE_BYTES + 1);
        let operation = Operation::parse(&call(Action::DeleteImage, &[("ImageId", long.as_str())]));
        assert!(matches!(operation, Operation::Invalid(_)));
        assert_eq!(operation.resource(&account()), "*");
        // Actions that do not name the image never use it, even when it is invalid.
        let operation = Operation::parse(&call(Action::ModifyImageAttribute, &[("ImageId", IMAGE)]));
        assert!(matches!(operation, Operation::Invalid(_)));
        assert_eq!(operation.resource(&account()), "*");
        for action in [Action::ExportImage, Action::DescribeExportImageStatus] {
            let operation = Operation::parse(&call(action, &[("ImageId", "m 1")]));
            assert!(matches!(operation, Operation::Invalid(_)), "{action:?}");
            assert_eq!(operation.resource(&account()), "*", "{action:?}");
        }
    }
}
