//! The rules that decide whether a caller may change an image. Backends call these inside
//! the transaction that makes the change, so a rule and its write cannot be separated by a
//! concurrent call.

use crate::account::AccountId;
use crate::image::{Image, ImageStatus};

/// Most accounts one image may be shared with.
pub const MAX_SHARES_PER_IMAGE: u64 = 100;

/// Why an image operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// No such image, or one the caller cannot see.
    #[error("the image does not exist")]
    NotFound,
    /// Public images belong to the platform.
    #[error("public images cannot be changed")]
    PublicImage,
    /// The caller sees the image through a share but does not own it.
    #[error("the image belongs to another account")]
    NotOwner,
    /// The image is not in a status that allows the operation.
    #[error("the image is {}", .0.as_str())]
    WrongStatus(ImageStatus),
    /// Shares must be revoked before the image is deleted.
    #[error("the image is shared with {0} account(s)")]
    StillShared(u64),
    /// A registered instance runs the image.
    #[error("the image is used by instance {0}")]
    InUse(String),
    /// The share list would grow past [`MAX_SHARES_PER_IMAGE`].
    #[error("an image can be shared with at most {MAX_SHARES_PER_IMAGE} accounts")]
    ShareLimit,
    /// A share target that is the owner itself.
    #[error("an image cannot be shared with its owner")]
    ShareWithOwner,
    /// A share target account that does not exist.
    #[error("account {0} does not exist")]
    UnknownAccount(AccountId),
    /// An export of the image is still being written.
    #[error("an export of the image is under way")]
    ExportRunning,
}

/// Only the owner may change a custom image; a share grants reading, not changing. Takes the
/// image's owner (`None`: a public image) alone, which is all the rule reads, so that a
/// store can check it without loading the image.
///
/// # Errors
/// `PublicImage`, `NotOwner` (visible through a share) or `NotFound` (invisible).
pub fn ensure_owner(
    image_owner: Option<&AccountId>,
    caller: &AccountId,
    shared_with_caller: bool,
) -> Result<(), ImageError> {
    match image_owner {
        None => Err(ImageError::PublicImage),
        Some(owner) if owner == caller => Ok(()),
        Some(_) if shared_with_caller => Err(ImageError::NotOwner),
        Some(_) => Err(ImageError::NotFound),
    }
}

/// An image may be deleted once its build has ended, nobody else can see it, and no
/// instance runs it.
///
/// # Errors
/// `WrongStatus` while building, `StillShared`, `InUse`.
pub fn ensure_deletable(image: &Image, share_count: u64, used_by: Option<&str>) -> Result<(), ImageError> {
    if image.status.is_building() {
        return Err(ImageError::WrongStatus(image.status));
    }
    if share_count > 0 {
        return Err(ImageError::StillShared(share_count));
    }
    if let Some(instance) = used_by {
        return Err(ImageError::InUse(instance.to_owned()));
    }
    Ok(())
}

/// Only a finished, usable image can be shared, never with its owner, and within the limit.
///
/// # Errors
/// `WrongStatus`, `ShareWithOwner`, `ShareLimit`.
pub fn ensure_shareable(image: &Image, targets: &[AccountId], shares_after: u64) -> Result<(), ImageError> {
    if image.status != ImageStatus::Available {
        return Err(ImageError::WrongStatus(image.status));
    }
    if targets.iter().any(|target| image.owner.as_ref() == Some(target)) {
        return Err(ImageError::ShareWithOwner);
    }
    if shares_after > MAX_SHARES_PER_IMAGE {
        return Err(ImageError::ShareLimit);
    }
    Ok(())
}

/// Only a finished image can be exported (its owner's: the caller checks ownership
/// first), and one export at a time, so two copies never race to the same object.
///
/// # Errors
/// `WrongStatus` unless `Available`; `ExportRunning` while an export is under way.
pub fn ensure_exportable(image: &Image, export_running: bool) -> Result<(), ImageError> {
    if image.status != ImageStatus::Available {
        return Err(ImageError::WrongStatus(image.status));
    }
    if export_running {
        return Err(ImageError::ExportRunning);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{ImageId, NodeId};
    use time::macros::datetime;

    fn account(id: &str) -> AccountId {
        AccountId::parse("AccountId", id).unwrap()
    }

    fn image(owner: Option<&str>, status: ImageStatus) -> Image {
        Image {
            id: ImageId::parse("m-1").unwrap(),
            name: "n1".into(),
            owner: owner.map(account),
            architecture: "x86_64".into(),
            platform: "centos".into(),
            os_type: "linux".into(),
            size_gib: 20,
            creation_time: datetime!(2026-01-01 0:00 UTC),
            snapshot_id: None,
            nodes: vec![NodeId::parse("n", "cn-a-1").unwrap()],
            disk_device_mappings: vec![],
            status,
            instance_id: None,
            compute_type: "ens_vm".into(),
            os_version: "7".into(),
            description: String::new(),
        }
    }

    #[test]
    fn only_the_owner_may_change_an_image() {
        let alice = account("1001");
        let bob = account("1002");
        let own = image(Some("1001"), ImageStatus::Available);
        assert_eq!(ensure_owner(own.owner.as_ref(), &alice, false), Ok(()));
        assert_eq!(
            ensure_owner(own.owner.as_ref(), &bob, true),
            Err(ImageError::NotOwner)
        );
        assert_eq!(
            ensure_owner(own.owner.as_ref(), &bob, false),
            Err(ImageError::NotFound)
        );
        let public = image(None, ImageStatus::Available);
        assert_eq!(
            ensure_owner(public.owner.as_ref(), &alice, false),
            Err(ImageError::PublicImage)
        );
    }

    #[test]
    fn deleting_waits_for_the_build_shares_and_instances() {
        let building = image(Some("1001"), ImageStatus::Packing);
        assert_eq!(
            ensure_deletable(&building, 0, None),
            Err(ImageError::WrongStatus(ImageStatus::Packing))
        );
        let failed = image(Some("1001"), ImageStatus::PackFailed);
        assert_eq!(ensure_deletable(&failed, 0, None), Ok(()));
        let ready = image(Some("1001"), ImageStatus::Available);
        assert_eq!(ensure_deletable(&ready, 2, None), Err(ImageError::StillShared(2)));
        assert_eq!(
            ensure_deletable(&ready, 0, Some("i-1")),
            Err(ImageError::InUse("i-1".into()))
        );
    }

    #[test]
    fn sharing_needs_an_available_image_other_targets_and_room() {
        let ready = image(Some("1001"), ImageStatus::Available);
        assert_eq!(ensure_shareable(&ready, &[account("1002")], 1), Ok(()));
        assert_eq!(
            ensure_shareable(&ready, &[account("1001")], 1),
            Err(ImageError::ShareWithOwner)
        );
        assert_eq!(
            ensure_shareable(&ready, &[account("1002")], MAX_SHARES_PER_IMAGE + 1),
            Err(ImageError::ShareLimit)
        );
        let building = image(Some("1001"), ImageStatus::Creating);
        assert!(ensure_shareable(&building, &[account("1002")], 1).is_err());
    }

    #[test]
    fn builds_step_through_the_documented_statuses() {
        use crate::image::BuildFailure;
        let mut status = ImageStatus::Creating;
        let mut seen = vec![status];
        while let Some(next) = status.after_build_step(None) {
            status = next;
            seen.push(status);
        }
        assert_eq!(
            seen,
            [
                ImageStatus::Creating,
                ImageStatus::Packing,
                ImageStatus::Uploading,
                ImageStatus::Available
            ]
        );
        assert_eq!(
            ImageStatus::Packing.after_build_step(Some(BuildFailure::Pack)),
            Some(ImageStatus::PackFailed)
        );
        assert_eq!(
            ImageStatus::Uploading.after_build_step(Some(BuildFailure::Upload)),
            Some(ImageStatus::UploadFailed)
        );
        for status in ImageStatus::ALL {
            assert_eq!(ImageStatus::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn only_an_available_image_not_being_exported_can_be_exported() {
        let own = image(Some("1001"), ImageStatus::Available);
        assert_eq!(ensure_exportable(&own, false), Ok(()));
        assert_eq!(ensure_exportable(&own, true), Err(ImageError::ExportRunning));
        for status in [ImageStatus::Creating, ImageStatus::UploadFailed] {
            assert_eq!(
                ensure_exportable(&image(Some("1001"), status), false),
                Err(ImageError::WrongStatus(status))
            );
        }
    }
}
