//! Images, where they are available, and who sees them.

use std::fmt;

use time::OffsetDateTime;

use crate::account::AccountId;
use crate::page::PageRequest;
use crate::validation::{is_identifier, InvalidField};

/// An image ID: `m-` plus 25 lower-case alphanumerics for custom images, a descriptive name
/// (`centos_6_08_64_20G_alibase_20171208`) for public ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageId(String);

impl ImageId {
    /// Accepts 1 to 128 characters of `[A-Za-z0-9._-]`, the alphabet of both ID styles.
    ///
    /// # Errors
    /// `InvalidField("ImageId")` for anything else.
    pub fn parse(value: &str) -> Result<Self, InvalidField> {
        if is_identifier(value, 128) {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidField::new(
                "ImageId",
                "an image ID is 1 to 128 letters, digits, '.', '_' or '-'",
            ))
        }
    }

    /// The ID of an image the store has not yet named; `Store::create_image` replaces it
    /// with a fresh one.
    #[must_use]
    pub fn pending() -> Self {
        Self(String::new())
    }

    /// The ID as the wire and the store spell it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An ENS node (the API calls it `EnsRegionId`), e.g. `cn-dalian-unicom`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

impl NodeId {
    /// Accepts 1 to 64 characters of `[A-Za-z0-9._-]` (node IDs such as
    /// `cn-chenzhou-telecom_unicom_cmcc`); whether the node exists is the store's question.
    ///
    /// # Errors
    /// `InvalidField` naming `field` for anything else.
    pub fn parse(field: &'static str, value: &str) -> Result<Self, InvalidField> {
        if is_identifier(value, 64) {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidField::new(
                field,
                "a node ID is 1 to 64 letters, digits, '.', '_' or '-'",
            ))
        }
    }

    /// The ID as the wire and the store spell it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks an image name against the documented rules: 2 to 128 characters, starting with a
/// letter, made of letters, digits, `.`, `:`, `_` and `-`, not starting with `acs:` or
/// `aliyun`, and not containing `http://` or `https://`.
///
/// "Letter" includes non-Latin letters (the console accepts Chinese names).
///
/// # Errors
/// `InvalidField` naming `field` with the rule that was broken.
pub fn validate_image_name(field: &'static str, name: &str) -> Result<(), InvalidField> {
    let length = name.chars().count();
    if !(2..=128).contains(&length) {
        return Err(InvalidField::new(field, "must be 2 to 128 characters long"));
    }
    if !name.chars().next().is_some_and(char::is_alphabetic) {
        return Err(InvalidField::new(field, "must start with a letter"));
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("acs:") || lower.starts_with("aliyun") {
        return Err(InvalidField::new(field, "must not start with acs: or aliyun"));
    }
    if lower.contains("http://") || lower.contains("https://") {
        return Err(InvalidField::new(field, "must not contain http:// or https://"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '.' | ':' | '_' | '-')))
    {
        return Err(InvalidField::new(
            field,
            format!("must not contain {bad:?}: only letters, digits, '.', ':', '_' and '-'"),
        ));
    }
    Ok(())
}

/// Checks a snapshot or instance ID filter: the identifier alphabet, at most 128 characters.
///
/// # Errors
/// `InvalidField` naming `field`.
pub fn validate_resource_id(field: &'static str, value: &str) -> Result<(), InvalidField> {
    if is_identifier(value, 128) {
        Ok(())
    } else {
        Err(InvalidField::new(
            field,
            "an ID is 1 to 128 letters, digits, '.', '_' or '-'",
        ))
    }
}

/// One disk of an image, as `DiskDeviceMappings.DiskDeviceMapping[]` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskDeviceMapping {
    /// `system` or `data`.
    pub disk_type: String,
    /// Size in GiB.
    pub size_gib: u64,
    /// `raw` or `qcow2`.
    pub format: String,
    /// The image file of this disk (the wire key is lower-case `imageId`).
    pub image_id: String,
}

/// Where a custom image is in its life, as `DescribeSelfImages` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageStatus {
    /// Accepted; the source is being captured.
    Creating,
    /// The disks are being packed into image files.
    Packing,
    /// The image files are being uploaded to storage.
    Uploading,
    /// Packing failed; the image cannot be used and may be deleted.
    PackFailed,
    /// Uploading failed; the image cannot be used and may be deleted.
    UploadFailed,
    /// Ready; the only status other operations accept.
    Available,
    /// Withdrawn by the operator.
    Unavailable,
    /// Being copied to another node.
    Copying,
}

impl ImageStatus {
    /// Every status, for parsing.
    pub const ALL: [Self; 8] = [
        Self::Creating,
        Self::Packing,
        Self::Uploading,
        Self::PackFailed,
        Self::UploadFailed,
        Self::Available,
        Self::Unavailable,
        Self::Copying,
    ];

    /// The cloud's spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "Creating",
            Self::Packing => "Packing",
            Self::Uploading => "Uploading",
            Self::PackFailed => "Pack_failed",
            Self::UploadFailed => "Upload_failed",
            Self::Available => "Available",
            Self::Unavailable => "Unavailable",
            Self::Copying => "Copying",
        }
    }

    /// Reads the cloud's spelling back.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == value)
    }

    /// Whether the image is still being built (and so may not be deleted yet).
    #[must_use]
    pub fn is_building(self) -> bool {
        matches!(
            self,
            Self::Creating | Self::Packing | Self::Uploading | Self::Copying
        )
    }

    /// The status after the current build step ends, given where (if anywhere) the build is
    /// set to fail. `None` when the image is not being built.
    #[must_use]
    pub fn after_build_step(self, failure: Option<BuildFailure>) -> Option<Self> {
        match (self, failure) {
            (Self::Creating, _) => Some(Self::Packing),
            (Self::Packing, Some(BuildFailure::Pack)) => Some(Self::PackFailed),
            (Self::Packing, _) => Some(Self::Uploading),
            (Self::Uploading, Some(BuildFailure::Upload)) => Some(Self::UploadFailed),
            (Self::Uploading, _) => Some(Self::Available),
            _ => None,
        }
    }
}

/// Where the build of an image from a given source fails: a registry setting that lets tests
/// and demonstrations reach the failure statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildFailure {
    /// Packing fails (`Pack_failed`).
    Pack,
    /// Uploading fails (`Upload_failed`).
    Upload,
}

impl BuildFailure {
    /// The spelling used by the admin command and the store.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pack => "pack",
            Self::Upload => "upload",
        }
    }

    /// Reads the spelling back.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pack" => Some(Self::Pack),
            "upload" => Some(Self::Upload),
            _ => None,
        }
    }
}

/// An image as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The image's ID.
    pub id: ImageId,
    /// Its display name.
    pub name: String,
    /// `None` for public (system) images, else the account that made it.
    pub owner: Option<AccountId>,
    /// e.g. `x86_64`.
    pub architecture: String,
    /// Distribution, e.g. `centos`, `ubuntu`, `windows`.
    pub platform: String,
    /// `linux` or `windows`.
    pub os_type: String,
    /// Size in GiB.
    pub size_gib: u64,
    /// When the image was made.
    pub creation_time: OffsetDateTime,
    /// The snapshot the image was made from, if any.
    pub snapshot_id: Option<String>,
    /// Nodes where the image can be used, the first being its home node. Never empty.
    pub nodes: Vec<NodeId>,
    /// The image's disks.
    pub disk_device_mappings: Vec<DiskDeviceMapping>,
    /// Life-cycle status; public images are always `Available`.
    pub status: ImageStatus,
    /// The instance the image was made from, if any.
    pub instance_id: Option<String>,
    /// Instance family it runs on: `ens_vm`, `arm_vm`, `bare_metal`, ...
    pub compute_type: String,
    /// Version of the operating system, e.g. `7.9`.
    pub os_version: String,
    /// Free text shown by `DescribeImageInfos`.
    pub description: String,
}

impl Image {
    /// Storage footprint in GiB: the sum of its disks, as `ImageStorageSize` reports it.
    #[must_use]
    pub fn storage_size_gib(&self) -> u64 {
        self.disk_device_mappings.iter().map(|disk| disk.size_gib).sum()
    }
}

/// How an image relates to the caller, as `ImageOwnerAlias` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageOwnerAlias {
    /// A public image, visible to everyone.
    System,
    /// The caller's own custom image.
    SelfOwned,
    /// A custom image another account shared with the caller.
    Others,
}

impl ImageOwnerAlias {
    /// Relation of an image owned by `owner` to `viewer`.
    #[must_use]
    pub fn of(owner: Option<&AccountId>, viewer: &AccountId) -> Self {
        match owner {
            None => Self::System,
            Some(owner) if owner == viewer => Self::SelfOwned,
            Some(_) => Self::Others,
        }
    }

    /// The cloud's spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::SelfOwned => "self",
            Self::Others => "others",
        }
    }
}

/// An image as one caller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageView {
    /// The image, shared with the listing held in memory it was read from, so that a page
    /// costs no copy of its images.
    pub image: std::sync::Arc<Image>,
    /// Its relation to the caller.
    pub alias: ImageOwnerAlias,
    /// The node reported as `RegionId`: the node the caller filtered on, else the home node.
    pub region: NodeId,
}

/// A validated `DescribeImages` query, asked by `viewer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageQuery {
    /// The caller; decides visibility and `ImageOwnerAlias`.
    pub viewer: AccountId,
    /// Only images available on this node.
    pub node: Option<NodeId>,
    /// Only this image.
    pub image_id: Option<ImageId>,
    /// Only images with exactly this name.
    pub image_name: Option<String>,
    /// Only images made from this snapshot.
    pub snapshot_id: Option<String>,
    /// Which page.
    pub page: PageRequest,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn documented_example_names_are_valid() {
        for name in ["Ubuntu_16.04", "centos_6_08_64_20G_a", "my:image-1", "镜像01"] {
            assert!(validate_image_name("ImageName", name).is_ok(), "{name}");
        }
    }

    #[test]
    fn names_breaking_a_rule_are_refused_with_the_field_name() {
        for name in [
            "a",
            "1abc",
            "_abc",
            "acs:thing",
            "aliyun-image",
            "AliYunImage",
            "ahttp://x",
            "has space",
            "slash/name",
            &"a".repeat(129),
        ] {
            let error = validate_image_name("ImageName", name).unwrap_err();
            assert_eq!(error.field, "ImageName", "{name}");
        }
    }

    #[test]
    fn owner_alias_is_relative_to_the_viewer() {
        let alice = AccountId::parse("AliyunId", "1000000000000001").unwrap();
        let bob = AccountId::parse("AliyunId", "1000000000000002").unwrap();
        assert_eq!(ImageOwnerAlias::of(None, &alice), ImageOwnerAlias::System);
        assert_eq!(
            ImageOwnerAlias::of(Some(&alice), &alice),
            ImageOwnerAlias::SelfOwned
        );
        assert_eq!(ImageOwnerAlias::of(Some(&alice), &bob), ImageOwnerAlias::Others);
    }

    #[test]
    fn image_ids_accept_both_styles_and_refuse_others() {
        assert!(ImageId::parse("m-5t4xwkfkbs0uxv0kymdb6uip7").is_ok());
        assert!(ImageId::parse("centos_6_08_64_20G_alibase_20171208").is_ok());
        assert!(ImageId::parse("").is_err());
        assert!(ImageId::parse("m-1 2").is_err());
        assert!(ImageId::parse(&"m".repeat(129)).is_err());
    }

    proptest! {
        #[test]
        fn name_validation_never_panics(name in ".*") {
            let _ = validate_image_name("ImageName", &name);
        }

        #[test]
        fn names_from_the_allowed_alphabet_are_valid(name in "[A-Za-z][A-Za-z0-9.:_-]{1,127}") {
            let lower = name.to_ascii_lowercase();
            prop_assume!(!lower.starts_with("acs:") && !lower.starts_with("aliyun"));
            prop_assert!(validate_image_name("ImageName", &name).is_ok());
        }
    }
}
