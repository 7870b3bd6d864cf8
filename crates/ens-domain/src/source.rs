//! The sources custom images are made from: a small registry of instances and snapshots.
//!
//! The service does not run instances; operators register them (`ens-images admin instance
//! add`, `admin snapshot add`) so that `CreateImage` can take an image's platform, size, disks
//! and node from a realistic source, and `DeleteImage` can refuse images still in use.

use crate::account::AccountId;
use crate::image::{BuildFailure, ImageId, NodeId};

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
