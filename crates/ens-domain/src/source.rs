//! The sources custom images are made from: a small registry of instances and snapshots.
//!
//! The service does not run instances; operators register them (`ens-images admin instance
//! add`, `admin snapshot add`) so that `CreateImage` can take an image's platform, size, disks
//! and node from a realistic source, and `DeleteImage` can refuse images still in use.
//!
//! What a new custom image takes from its source is decided here too
//! ([`NewCustomImage::from_source`]), so the rule is written once, tested without a store or
//! a server, and the server only looks the source up and stores the result.

use std::time::Duration;

use time::OffsetDateTime;

use crate::account::AccountId;
use crate::image::{BuildFailure, DiskDeviceMapping, Image, ImageId, ImageStatus, NodeId};

/// An ENS instance, as far as images are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `i-` plus lower-case alphanumerics.
    pub id: String,
    /// The account that owns it.
    pub owner: AccountId,
    /// The node it runs on; images made from it live there.
    pub node: NodeId,
    /// The image it runs, which therefore cannot be deleted.
    pub image_id: Option<ImageId>,
    /// e.g. `centos`.
    pub platform: String,
    /// `linux` or `windows`.
    pub os_type: String,
    /// e.g. `7.9`.
    pub os_version: String,
    /// e.g. `x86_64`.
    pub architecture: String,
    /// e.g. `ens_vm`.
    pub compute_type: String,
    /// System disk size in GiB.
    pub system_disk_gib: u64,
    /// Data disk sizes in GiB, in attachment order.
    pub data_disks_gib: Vec<u64>,
    /// Makes builds from this source fail at a given step (tests, demonstrations).
    pub build_failure: Option<BuildFailure>,
}

/// A disk snapshot, as far as images are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// `sp-` plus lower-case alphanumerics.
    pub id: String,
    /// The account that owns it.
    pub owner: AccountId,
    /// The node it is stored on.
    pub node: NodeId,
    /// The instance whose disk it captured, if known.
    pub instance_id: Option<String>,
    /// e.g. `centos`.
    pub platform: String,
    /// `linux` or `windows`.
    pub os_type: String,
    /// e.g. `7.9`.
    pub os_version: String,
    /// e.g. `x86_64`.
    pub architecture: String,
    /// Size in GiB.
    pub size_gib: u64,
    /// Makes builds from this source fail at a given step (tests, demonstrations).
    pub build_failure: Option<BuildFailure>,
}

/// The source a new custom image is made from, with the choices `CreateImage` offers for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomImageSource {
    /// One of the caller's instances: its system disk and, when asked, its data disks.
    Instance {
        /// The instance, already known to belong to the caller.
        instance: Instance,
        /// Include the instance's data disks as data disks of the image.
        with_data_disks: bool,
        /// Release the instance once the image is uploaded.
        release_after_upload: bool,
    },
    /// One of the caller's disk snapshots: it becomes the image's only (system) disk.
    Snapshot(Snapshot),
}

/// What `CreateImage` settles besides the source: kept apart so the same source rules serve
/// every caller and every clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomImagePlan {
    /// The new image's name, already validated against the naming rules.
    pub name: String,
    /// The account creating the image; it becomes the owner.
    pub owner: AccountId,
    /// When the image was asked for; its creation time, to the second (as the cloud prints it).
    pub requested_at: OffsetDateTime,
    /// How long each build step (Creating, Packing, Uploading) lasts; zero makes an image
    /// whose source is not set to fail `Available` at once.
    pub build_step: Duration,
}

/// A custom image ready to be stored: the image (its ID still [`ImageId::pending`], for the
/// store to assign) and how its build goes. A plain value, so storage adds nothing but an ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCustomImage {
    /// The image; its disks' `image_id` are empty, to be named after the new image.
    pub image: Image,
    /// When the first build step ends; `None` when the image is created `Available`.
    pub build_due_at: Option<OffsetDateTime>,
    /// Where the build is set to fail, copied from the source.
    pub build_failure: Option<BuildFailure>,
    /// The instance to release once the image is uploaded.
    pub release_instance: Option<String>,
}

/// What a new image takes from its source, whichever kind it is.
struct Template {
    platform: String,
    os_type: String,
    os_version: String,
    architecture: String,
    compute_type: String,
    size_gib: u64,
    node: NodeId,
    instance_id: Option<String>,
    snapshot_id: Option<String>,
    disks: Vec<DiskDeviceMapping>,
    build_failure: Option<BuildFailure>,
    release_instance: Option<String>,
}

/// One disk of a new image; its file is named after the image by the store.
fn new_disk(disk_type: &str, size_gib: u64) -> DiskDeviceMapping {
    DiskDeviceMapping {
        disk_type: disk_type.into(),
        size_gib,
        format: "qcow2".into(),
        image_id: String::new(),
    }
}

impl Template {
    fn of(source: CustomImageSource) -> Self {
        match source {
            CustomImageSource::Instance {
                instance,
                with_data_disks,
                release_after_upload,
            } => {
                let mut disks = vec![new_disk("system", instance.system_disk_gib)];
                if with_data_disks {
                    disks.extend(instance.data_disks_gib.iter().map(|size| new_disk("data", *size)));
                }
                Self {
                    platform: instance.platform,
                    os_type: instance.os_type,
                    os_version: instance.os_version,
                    architecture: instance.architecture,
                    compute_type: instance.compute_type,
                    size_gib: instance.system_disk_gib,
                    node: instance.node,
                    instance_id: Some(instance.id.clone()),
                    snapshot_id: None,
                    disks,
                    build_failure: instance.build_failure,
                    release_instance: release_after_upload.then_some(instance.id),
                }
            }
            CustomImageSource::Snapshot(snapshot) => Self {
                platform: snapshot.platform,
                os_type: snapshot.os_type,
                os_version: snapshot.os_version,
                architecture: snapshot.architecture,
                // A snapshot does not record the instance family; images from snapshots are VMs.
                compute_type: "ens_vm".into(),
                size_gib: snapshot.size_gib,
                node: snapshot.node,
                instance_id: snapshot.instance_id,
                snapshot_id: Some(snapshot.id),
                disks: vec![new_disk("system", snapshot.size_gib)],
                build_failure: snapshot.build_failure,
                release_instance: None,
            },
        }
    }
}

impl NewCustomImage {
    /// The custom image `plan` makes from `source`: platform, OS, architecture, size, node and
    /// disks come from the source; the image starts `Creating` and moves one status per
    /// build step, unless steps take no time and the source is not set to fail, in which
    /// case it is `Available` at once.
    #[must_use]
    pub fn from_source(source: CustomImageSource, plan: CustomImagePlan) -> Self {
        let template = Template::of(source);
        let now = plan.requested_at;
        let immediate = plan.build_step.is_zero() && template.build_failure.is_none();
        let status = if immediate {
            ImageStatus::Available
        } else {
            ImageStatus::Creating
        };
        let image = Image {
            id: ImageId::pending(),
            name: plan.name,
            owner: Some(plan.owner),
            architecture: template.architecture,
            platform: template.platform,
            os_type: template.os_type,
            size_gib: template.size_gib,
            creation_time: now.replace_nanosecond(0).unwrap_or(now),
            snapshot_id: template.snapshot_id,
            nodes: vec![template.node],
            disk_device_mappings: template.disks,
            status,
            instance_id: template.instance_id,
            compute_type: template.compute_type,
            os_version: template.os_version,
            description: String::new(),
        };
        Self {
            build_due_at: (!immediate).then(|| now + plan.build_step),
            image,
            build_failure: template.build_failure,
            release_instance: template.release_instance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const ASKED_AT: OffsetDateTime = datetime!(2026-03-04 05:06:07.890 UTC);

    fn owner() -> AccountId {
        AccountId::parse("AccountId", "1000000000000001").unwrap()
    }

    fn node() -> NodeId {
        NodeId::parse("EnsRegionId", "cn-dalian-unicom").unwrap()
    }

    fn instance() -> Instance {
        Instance {
            id: "i-web1".into(),
            owner: owner(),
            node: node(),
            image_id: Some(ImageId::parse("centos_7").unwrap()),
            platform: "centos".into(),
            os_type: "linux".into(),
            os_version: "7.9".into(),
            architecture: "x86_64".into(),
            compute_type: "bare_metal".into(),
            system_disk_gib: 40,
            data_disks_gib: vec![100, 200],
            build_failure: None,
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            id: "sp-db1".into(),
            owner: owner(),
            node: node(),
            instance_id: Some("i-db".into()),
            platform: "ubuntu".into(),
            os_type: "linux".into(),
            os_version: "22.04".into(),
            architecture: "arm64".into(),
            size_gib: 60,
            build_failure: None,
        }
    }

    fn plan(build_step: Duration) -> CustomImagePlan {
        CustomImagePlan {
            name: "web-1".into(),
            owner: owner(),
            requested_at: ASKED_AT,
            build_step,
        }
    }

    fn from_instance(with_data_disks: bool, release_after_upload: bool) -> NewCustomImage {
        NewCustomImage::from_source(
            CustomImageSource::Instance {
                instance: instance(),
                with_data_disks,
                release_after_upload,
            },
            plan(Duration::from_secs(2)),
        )
    }

    fn disks(new: &NewCustomImage) -> Vec<(&str, u64)> {
        new.image
            .disk_device_mappings
            .iter()
            .map(|disk| (disk.disk_type.as_str(), disk.size_gib))
            .collect()
    }

    #[test]
    fn an_image_from_an_instance_takes_its_system_and_platform() {
        let new = from_instance(false, false);
        let image = &new.image;
        assert_eq!(image.id, ImageId::pending());
        assert_eq!(image.name, "web-1");
        assert_eq!(image.owner, Some(owner()));
        assert_eq!(
            (
                image.platform.as_str(),
                image.os_type.as_str(),
                image.os_version.as_str()
            ),
            ("centos", "linux", "7.9")
        );
        assert_eq!(image.architecture, "x86_64");
        assert_eq!(image.compute_type, "bare_metal");
        assert_eq!(image.size_gib, 40);
        assert_eq!(image.nodes, vec![node()]);
        assert_eq!(image.instance_id.as_deref(), Some("i-web1"));
        assert_eq!(image.snapshot_id, None);
        assert_eq!(image.description, "");
        assert_eq!(disks(&new), vec![("system", 40)]);
        assert!(image
            .disk_device_mappings
            .iter()
            .all(|disk| disk.format == "qcow2" && disk.image_id.is_empty()));
        assert_eq!(new.release_instance, None);
    }

    #[test]
    fn data_disks_and_release_follow_the_callers_choices() {
        let new = from_instance(true, true);
        assert_eq!(disks(&new), vec![("system", 40), ("data", 100), ("data", 200)]);
        assert_eq!(new.image.storage_size_gib(), 340);
        // The image size stays the system disk's, as the cloud reports it.
        assert_eq!(new.image.size_gib, 40);
        assert_eq!(new.release_instance.as_deref(), Some("i-web1"));
    }

    #[test]
    fn an_image_from_a_snapshot_is_one_system_disk_on_a_vm() {
        let new = NewCustomImage::from_source(
            CustomImageSource::Snapshot(snapshot()),
            plan(Duration::from_secs(2)),
        );
        let image = &new.image;
        assert_eq!(image.compute_type, "ens_vm");
        assert_eq!(image.size_gib, 60);
        assert_eq!(image.architecture, "arm64");
        assert_eq!(image.snapshot_id.as_deref(), Some("sp-db1"));
        assert_eq!(image.instance_id.as_deref(), Some("i-db"));
        assert_eq!(disks(&new), vec![("system", 60)]);
        assert_eq!(new.release_instance, None);
    }

    #[test]
    fn a_build_starts_creating_and_its_first_step_ends_one_step_later() {
        let new = from_instance(false, false);
        assert_eq!(new.image.status, ImageStatus::Creating);
        assert_eq!(new.build_due_at, Some(ASKED_AT + Duration::from_secs(2)));
        assert_eq!(new.build_failure, None);
        assert_eq!(new.image.creation_time, datetime!(2026-03-04 05:06:07 UTC));
    }

    #[test]
    fn instant_builds_are_available_at_once_unless_set_to_fail() {
        let instant =
            NewCustomImage::from_source(CustomImageSource::Snapshot(snapshot()), plan(Duration::ZERO));
        assert_eq!(instant.image.status, ImageStatus::Available);
        assert_eq!(instant.build_due_at, None);

        let failing = NewCustomImage::from_source(
            CustomImageSource::Snapshot(Snapshot {
                build_failure: Some(BuildFailure::Pack),
                ..snapshot()
            }),
            plan(Duration::ZERO),
        );
        assert_eq!(failing.image.status, ImageStatus::Creating);
        assert_eq!(failing.build_due_at, Some(ASKED_AT));
        assert_eq!(failing.build_failure, Some(BuildFailure::Pack));
    }
}
