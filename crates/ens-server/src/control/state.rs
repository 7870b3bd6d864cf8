//! The control API's state routes: the state as a readable JSON document (export and
//! import, the format `serve --seed` reads), images set up in any status, and named
//! snapshots that a test suite rolls back to between tests.
//!
//! The document holds AccessKey secrets in clear (sealed again on import), so whoever reads
//! an export can sign as every account in it: the control token guards it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use ens_domain::image::{validate_image_name, validate_resource_id};
use ens_domain::validation::{validate_compute_type, validate_short_name, validate_text};
use ens_domain::{
    AccessKeyId, AccessKeyStatus, AccountId, BuildFailure, DiskDeviceMapping, Image, ImageId, ImageStatus,
    Instance, NodeId, RamUserName, Snapshot,
};
use ens_policy::PolicyDocument;
use ens_store::{
    AccountState, ImageShare, ImportScope, NewImage, RamUser, StateImage, StateKey, StateSnapshot,
    StoreError, StoreState, StoredPolicy,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{account, body, elapsed_us, ok, query, resource_id, Answer, ControlError, ControlState};
use crate::secrets::MasterKey;

/// The `Format` every state document carries, so a later version can tell what it reads.
pub const STATE_FORMAT: &str = "ens-images/state/1";
/// Largest state document `PUT /state` reads (other control calls keep axum's 2 MiB): about
/// 400 000 images.
pub const MAX_DOCUMENT_BYTES: usize = 64 << 20;
/// Most named snapshots kept at once; each holds a copy of the state in memory.
pub const MAX_SNAPSHOTS: usize = 64;
/// Most memory the snapshots kept may hold together (a whole SQLite snapshot is the size of
/// the database: about 5 MiB at 10 000 images).
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 30;

/// Named snapshots of the state, kept in memory by the process that took them.
#[derive(Default)]
pub struct Snapshots(Mutex<BTreeMap<String, Arc<SavedState>>>);

/// One named snapshot: the state of everything or of one account, as of `taken_at`.
pub struct SavedState {
    account: Option<AccountId>,
    snapshot: StateSnapshot,
    taken_at: OffsetDateTime,
}

impl Snapshots {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<SavedState>>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A whole state document.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct StateDocument {
    format: String,
    accounts: Vec<AccountDocument>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct AccountDocument {
    account_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    creation_time: Option<String>,
    #[serde(default)]
    access_keys: Vec<KeyDocument>,
    #[serde(default)]
    users: Vec<UserDocument>,
    #[serde(default)]
    policies: Vec<PolicyDocumentEntry>,
    #[serde(default)]
    instances: Vec<InstanceDocument>,
    #[serde(default)]
    snapshots: Vec<SnapshotDocument>,
    #[serde(default)]
    images: Vec<ImageDocument>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    shared_in: Vec<SharedInDocument>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct KeyDocument {
    access_key_id: String,
    access_key_secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_name: Option<String>,
    #[serde(default = "active")]
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    creation_time: Option<String>,
}

fn active() -> String {
    AccessKeyStatus::Active.as_str().to_owned()
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct UserDocument {
    user_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    creation_time: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct PolicyDocumentEntry {
    policy_name: String,
    /// The document as a JSON object (or its text).
    policy_document: Value,
    #[serde(default)]
    attached_to: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    creation_time: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct InstanceDocument {
    instance_id: String,
    ens_region_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image_id: Option<String>,
    platform: String,
    #[serde(rename = "OSType")]
    os_type: String,
    #[serde(rename = "OSVersion")]
    os_version: String,
    architecture: String,
    compute_type: String,
    system_disk_size: u64,
    #[serde(default)]
    data_disk_sizes: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fail_build: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SnapshotDocument {
    snapshot_id: String,
    ens_region_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance_id: Option<String>,
    platform: String,
    #[serde(rename = "OSType")]
    os_type: String,
    #[serde(rename = "OSVersion")]
    os_version: String,
    architecture: String,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fail_build: Option<String>,
}

/// A custom image in any status; also the body of `POST /accounts/{id}/images`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ImageDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image_id: Option<String>,
    image_name: String,
    #[serde(default = "available")]
    status: String,
    #[serde(default = "x86_64")]
    architecture: String,
    #[serde(default = "centos")]
    platform: String,
    #[serde(default = "linux", rename = "OSType")]
    os_type: String,
    #[serde(default = "os_version", rename = "OSVersion")]
    os_version: String,
    #[serde(default = "image_size")]
    image_size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    creation_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    snapshot_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance_id: Option<String>,
    #[serde(default = "ens_vm")]
    compute_type: String,
    #[serde(default)]
    description: String,
    /// The nodes it is on, the first being the one DescribeImages names.
    ens_region_ids: Vec<String>,
    /// Its disks; one system disk of `ImageSize` when absent.
    #[serde(default)]
    disk_device_mappings: Vec<DiskDocument>,
    #[serde(default)]
    shared_with: Vec<ShareDocument>,
    /// While it builds: when its next step is due and where it is set to fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    build: Option<BuildDocument>,
}

fn available() -> String {
    ImageStatus::Available.as_str().to_owned()
}
fn x86_64() -> String {
    "x86_64".into()
}
fn centos() -> String {
    "centos".into()
}
fn linux() -> String {
    "linux".into()
}
fn os_version() -> String {
    "7.9".into()
}
fn image_size() -> u64 {
    20
}
fn ens_vm() -> String {
    "ens_vm".into()
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct DiskDocument {
    #[serde(rename = "Type")]
    disk_type: String,
    size: u64,
    #[serde(default = "qcow2")]
    format: String,
    /// The disk's image file; the image's own ID when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image_id: Option<String>,
}

fn qcow2() -> String {
    "qcow2".into()
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ShareDocument {
    account_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    creation_time: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct BuildDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fail_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    release_instance: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SharedInDocument {
    image_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    creation_time: Option<String>,
}

fn invalid(message: impl Into<String>) -> ControlError {
    ControlError::InvalidInput(message.into())
}

/// Now, in whole seconds: the precision the API shows creation times in.
fn whole_seconds_now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// A time as the control API writes it (RFC 3339).
pub(super) fn time_text(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

/// An RFC 3339 time of the document, or `now` when absent.
fn time_or(field: &str, text: Option<&str>, now: OffsetDateTime) -> Result<OffsetDateTime, ControlError> {
    match text {
        None => Ok(now),
        Some(text) => OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|_| invalid(format!("{field} must be an RFC 3339 time, got {text:?}"))),
    }
}

fn failure(text: Option<&str>) -> Result<Option<BuildFailure>, ControlError> {
    text.map(|text| {
        BuildFailure::parse(text)
            .ok_or_else(|| invalid(format!("FailBuild must be pack or upload, got {text:?}")))
    })
    .transpose()
}

fn source_fields(
    platform: &str,
    os_type: &str,
    os_version: &str,
    architecture: &str,
) -> Result<(), ControlError> {
    validate_short_name("Platform", platform)?;
    validate_short_name("Architecture", architecture)?;
    validate_text("OSVersion", os_version)?;
    if os_type != "linux" && os_type != "windows" {
        return Err(invalid(format!(
            "OSType must be linux or windows, got {os_type:?}"
        )));
    }
    Ok(())
}

/// The document of `state`, secrets opened with `key`.
fn to_document(state: &StoreState, key: &MasterKey) -> Result<StateDocument, ControlError> {
    let accounts = state
        .accounts
        .iter()
        .map(|account| account_document(account, key))
        .collect::<Result<_, _>>()?;
    Ok(StateDocument {
        format: STATE_FORMAT.to_owned(),
        accounts,
    })
}

fn account_document(account: &AccountState, key: &MasterKey) -> Result<AccountDocument, ControlError> {
    let access_keys = account
        .keys
        .iter()
        .map(|stored| {
            let secret = key.open(&stored.sealed_secret).map_err(|error| {
                tracing::error!(access_key_id = %stored.id, %error, "export: a stored secret cannot be opened");
                ControlError::Internal
            })?;
            Ok(KeyDocument {
                access_key_id: stored.id.as_str().to_owned(),
                access_key_secret: secret.expose().to_owned(),
                user_name: stored.user.as_ref().map(|user| user.as_str().to_owned()),
                status: stored.status.as_str().to_owned(),
                creation_time: Some(time_text(stored.created_at)),
            })
        })
        .collect::<Result<_, ControlError>>()?;
    Ok(AccountDocument {
        account_id: account.id.as_str().to_owned(),
        creation_time: Some(time_text(account.created_at)),
        access_keys,
        users: account
            .users
            .iter()
            .map(|user| UserDocument {
                user_name: user.name.as_str().to_owned(),
                user_id: Some(user.user_id.clone()),
                creation_time: Some(time_text(user.created_at)),
            })
            .collect(),
        policies: account
            .policies
            .iter()
            .map(|policy| PolicyDocumentEntry {
                policy_name: policy.name.clone(),
                policy_document: serde_json::from_str(&policy.document)
                    .unwrap_or_else(|_| Value::String(policy.document.clone())),
                attached_to: policy
                    .attached_to
                    .iter()
                    .map(|user| user.as_str().to_owned())
                    .collect(),
                creation_time: Some(time_text(policy.created_at)),
            })
            .collect(),
        instances: account.instances.iter().map(instance_document).collect(),
        snapshots: account.snapshots.iter().map(snapshot_document).collect(),
        images: account.images.iter().map(image_document).collect(),
        shared_in: account
            .shared_in
            .iter()
            .map(|(image, share)| SharedInDocument {
                image_id: image.as_str().to_owned(),
                creation_time: Some(time_text(share.created_at)),
            })
            .collect(),
    })
}

fn instance_document(instance: &Instance) -> InstanceDocument {
    InstanceDocument {
        instance_id: instance.id.clone(),
        ens_region_id: instance.node.as_str().to_owned(),
        image_id: instance.image_id.as_ref().map(|id| id.as_str().to_owned()),
        platform: instance.platform.clone(),
        os_type: instance.os_type.clone(),
        os_version: instance.os_version.clone(),
        architecture: instance.architecture.clone(),
        compute_type: instance.compute_type.clone(),
        system_disk_size: instance.system_disk_gib,
        data_disk_sizes: instance.data_disks_gib.clone(),
        fail_build: instance.build_failure.map(|failure| failure.as_str().to_owned()),
    }
}

fn snapshot_document(snapshot: &Snapshot) -> SnapshotDocument {
    SnapshotDocument {
        snapshot_id: snapshot.id.clone(),
        ens_region_id: snapshot.node.as_str().to_owned(),
        instance_id: snapshot.instance_id.clone(),
        platform: snapshot.platform.clone(),
        os_type: snapshot.os_type.clone(),
        os_version: snapshot.os_version.clone(),
        architecture: snapshot.architecture.clone(),
        size: snapshot.size_gib,
        fail_build: snapshot.build_failure.map(|failure| failure.as_str().to_owned()),
    }
}

fn image_document(state: &StateImage) -> ImageDocument {
    let image = &state.new.image;
    let building = state.new.build_due_at.is_some()
        || state.new.build_failure.is_some()
        || state.new.release_instance.is_some();
    ImageDocument {
        image_id: Some(image.id.as_str().to_owned()),
        image_name: image.name.clone(),
        status: image.status.as_str().to_owned(),
        architecture: image.architecture.clone(),
        platform: image.platform.clone(),
        os_type: image.os_type.clone(),
        os_version: image.os_version.clone(),
        image_size: image.size_gib,
        creation_time: Some(time_text(image.creation_time)),
        snapshot_id: image.snapshot_id.clone(),
        instance_id: image.instance_id.clone(),
        compute_type: image.compute_type.clone(),
        description: image.description.clone(),
        ens_region_ids: image.nodes.iter().map(|node| node.as_str().to_owned()).collect(),
        disk_device_mappings: image
            .disk_device_mappings
            .iter()
            .map(|disk| DiskDocument {
                disk_type: disk.disk_type.clone(),
                size: disk.size_gib,
                format: disk.format.clone(),
                image_id: Some(disk.image_id.clone()),
            })
            .collect(),
        shared_with: state
            .shares
            .iter()
            .map(|share| ShareDocument {
                account_id: share.account.as_str().to_owned(),
                creation_time: Some(time_text(share.created_at)),
            })
            .collect(),
        build: building.then(|| BuildDocument {
            due_at: state.new.build_due_at.map(time_text),
            fail_at: state.new.build_failure.map(|failure| failure.as_str().to_owned()),
            release_instance: state.new.release_instance.clone(),
        }),
    }
}

/// The state `document` describes, validated by the API's own rules, secrets sealed with
/// `key`; absent times are `now`, absent IDs generated.
fn from_document(
    document: StateDocument,
    key: &MasterKey,
    now: OffsetDateTime,
) -> Result<StoreState, ControlError> {
    if document.format != STATE_FORMAT {
        return Err(invalid(format!(
            "Format must be {STATE_FORMAT:?}, got {:?}",
            document.format
        )));
    }
    let accounts = document
        .accounts
        .into_iter()
        .map(|account| account_state(account, key, now))
        .collect::<Result<_, _>>()?;
    Ok(StoreState { accounts })
}

fn account_state(
    document: AccountDocument,
    key: &MasterKey,
    now: OffsetDateTime,
) -> Result<AccountState, ControlError> {
    let id = AccountId::parse("AccountId", &document.account_id)?;
    let users = document
        .users
        .into_iter()
        .map(|user| {
            let user_id = match user.user_id {
                Some(user_id)
                    if !user_id.is_empty()
                        && user_id.len() <= 64
                        && user_id.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    user_id
                }
                Some(user_id) => return Err(invalid(format!("UserId is 1 to 64 digits, got {user_id:?}"))),
                None => ens_store::new_user_id(),
            };
            Ok(RamUser {
                account: id.clone(),
                name: RamUserName::parse("UserName", &user.user_name)?,
                user_id,
                created_at: time_or("CreationTime", user.creation_time.as_deref(), now)?,
            })
        })
        .collect::<Result<Vec<_>, ControlError>>()?;
    let keys = document
        .access_keys
        .into_iter()
        .map(|stored| {
            let secret = stored.access_key_secret;
            if secret.is_empty() || secret.len() > 128 || !secret.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(
                    "AccessKeySecret: 1 to 128 printable ASCII characters without spaces",
                ));
            }
            let status = match stored.status.as_str() {
                "Active" => AccessKeyStatus::Active,
                "Inactive" => AccessKeyStatus::Inactive,
                other => {
                    return Err(invalid(format!(
                        "Status must be Active or Inactive, got {other:?}"
                    )))
                }
            };
            Ok(StateKey {
                id: AccessKeyId::parse(&stored.access_key_id)?,
                user: stored
                    .user_name
                    .as_deref()
                    .map(|name| RamUserName::parse("UserName", name))
                    .transpose()?,
                sealed_secret: key.seal(&secret),
                status,
                created_at: time_or("CreationTime", stored.creation_time.as_deref(), now)?,
            })
        })
        .collect::<Result<Vec<_>, ControlError>>()?;
    let policies = document
        .policies
        .into_iter()
        .map(|policy| policy_state(&id, policy, now))
        .collect::<Result<Vec<_>, _>>()?;
    let instances = document
        .instances
        .into_iter()
        .map(|instance| {
            source_fields(
                &instance.platform,
                &instance.os_type,
                &instance.os_version,
                &instance.architecture,
            )?;
            validate_compute_type("ComputeType", &instance.compute_type)?;
            validate_resource_id("InstanceId", &instance.instance_id)?;
            Ok(Instance {
                owner: id.clone(),
                node: NodeId::parse("EnsRegionId", &instance.ens_region_id)?,
                image_id: instance.image_id.as_deref().map(ImageId::parse).transpose()?,
                build_failure: failure(instance.fail_build.as_deref())?,
                id: instance.instance_id,
                platform: instance.platform,
                os_type: instance.os_type,
                os_version: instance.os_version,
                architecture: instance.architecture,
                compute_type: instance.compute_type,
                system_disk_gib: instance.system_disk_size,
                data_disks_gib: instance.data_disk_sizes,
            })
        })
        .collect::<Result<Vec<_>, ControlError>>()?;
    let snapshots = document
        .snapshots
        .into_iter()
        .map(|snapshot| {
            source_fields(
                &snapshot.platform,
                &snapshot.os_type,
                &snapshot.os_version,
                &snapshot.architecture,
            )?;
            validate_resource_id("SnapshotId", &snapshot.snapshot_id)?;
            Ok(Snapshot {
                owner: id.clone(),
                node: NodeId::parse("EnsRegionId", &snapshot.ens_region_id)?,
                build_failure: failure(snapshot.fail_build.as_deref())?,
                id: snapshot.snapshot_id,
                instance_id: snapshot.instance_id,
                platform: snapshot.platform,
                os_type: snapshot.os_type,
                os_version: snapshot.os_version,
                architecture: snapshot.architecture,
                size_gib: snapshot.size,
            })
        })
        .collect::<Result<Vec<_>, ControlError>>()?;
    let images = document
        .images
        .into_iter()
        .map(|image| image_state(&id, image, now))
        .collect::<Result<Vec<_>, _>>()?;
    let shared_in = document
        .shared_in
        .into_iter()
        .map(|share| {
            Ok((
                ImageId::parse(&share.image_id)?,
                ImageShare {
                    account: id.clone(),
                    created_at: time_or("CreationTime", share.creation_time.as_deref(), now)?,
                },
            ))
        })
        .collect::<Result<Vec<_>, ControlError>>()?;
    Ok(AccountState {
        created_at: time_or("CreationTime", document.creation_time.as_deref(), now)?,
        id,
        keys,
        users,
        policies,
        instances,
        snapshots,
        images,
        shared_in,
    })
}

fn policy_state(
    account: &AccountId,
    policy: PolicyDocumentEntry,
    now: OffsetDateTime,
) -> Result<StoredPolicy, ControlError> {
    let name = policy.policy_name;
    ens_domain::validation::validate_policy_name("PolicyName", &name)?;
    let text = match policy.policy_document {
        Value::String(text) => text,
        other => other.to_string(),
    };
    let document =
        PolicyDocument::parse(&text).map_err(|error| invalid(format!("policy {name}: {error}")))?;
    Ok(StoredPolicy {
        account: account.clone(),
        document: document.source().to_owned(),
        attached_to: policy
            .attached_to
            .iter()
            .map(|user| RamUserName::parse("AttachedTo", user))
            .collect::<Result<_, _>>()?,
        created_at: time_or("CreationTime", policy.creation_time.as_deref(), now)?,
        name,
    })
}

/// A custom image of `owner` as the document describes it, by the rules images are made by.
fn image_state(
    owner: &AccountId,
    document: ImageDocument,
    now: OffsetDateTime,
) -> Result<StateImage, ControlError> {
    let id = ImageId::parse(&resource_id("ImageId", document.image_id, "m-")?)?;
    validate_image_name("ImageName", &document.image_name)?;
    source_fields(
        &document.platform,
        &document.os_type,
        &document.os_version,
        &document.architecture,
    )?;
    validate_compute_type("ComputeType", &document.compute_type)?;
    validate_text("Description", &document.description)?;
    let status = ImageStatus::parse(&document.status)
        .ok_or_else(|| invalid(format!("Status {:?} is not an image status", document.status)))?;
    if document.ens_region_ids.is_empty() {
        return Err(invalid("EnsRegionIds: an image is on at least one node"));
    }
    let nodes = document
        .ens_region_ids
        .iter()
        .map(|node| NodeId::parse("EnsRegionIds", node))
        .collect::<Result<Vec<_>, _>>()?;
    let disks = if document.disk_device_mappings.is_empty() {
        vec![DiskDeviceMapping {
            disk_type: "system".into(),
            size_gib: document.image_size,
            format: "qcow2".into(),
            image_id: id.as_str().to_owned(),
        }]
    } else {
        document
            .disk_device_mappings
            .into_iter()
            .map(|disk| {
                if disk.disk_type != "system" && disk.disk_type != "data" {
                    return Err(invalid(format!(
                        "a disk's Type is system or data, got {:?}",
                        disk.disk_type
                    )));
                }
                if disk.format != "qcow2" && disk.format != "raw" {
                    return Err(invalid(format!(
                        "a disk's Format is qcow2 or raw, got {:?}",
                        disk.format
                    )));
                }
                let file = disk.image_id.unwrap_or_else(|| id.as_str().to_owned());
                validate_resource_id("ImageId", &file)?;
                Ok(DiskDeviceMapping {
                    disk_type: disk.disk_type,
                    size_gib: disk.size,
                    format: disk.format,
                    image_id: file,
                })
            })
            .collect::<Result<_, ControlError>>()?
    };
    let shares = document
        .shared_with
        .iter()
        .map(|share| {
            Ok(ImageShare {
                account: AccountId::parse("SharedWith", &share.account_id)?,
                created_at: time_or("CreationTime", share.creation_time.as_deref(), now)?,
            })
        })
        .collect::<Result<Vec<_>, ControlError>>()?;
    if !shares.is_empty() && status != ImageStatus::Available {
        return Err(invalid("SharedWith: only an Available image can be shared"));
    }
    if shares.iter().any(|share| &share.account == owner) {
        return Err(invalid("SharedWith: an image is not shared with its owner"));
    }
    let build = document.build.unwrap_or(BuildDocument {
        due_at: None,
        fail_at: None,
        release_instance: None,
    });
    let building = matches!(
        status,
        ImageStatus::Creating | ImageStatus::Packing | ImageStatus::Uploading
    );
    let due = match (building, build.due_at.as_deref()) {
        // A building image moves on at the next step unless the document says when.
        (true, due) => Some(time_or("Build.DueAt", due, now)?),
        (false, None) => None,
        (false, Some(_)) => {
            return Err(invalid(
                "Build.DueAt: only an image still building has a next step",
            ))
        }
    };
    Ok(StateImage {
        new: NewImage {
            image: Image {
                id,
                name: document.image_name,
                owner: Some(owner.clone()),
                architecture: document.architecture,
                platform: document.platform,
                os_type: document.os_type,
                size_gib: document.image_size,
                creation_time: time_or("CreationTime", document.creation_time.as_deref(), now)?,
                snapshot_id: document.snapshot_id,
                nodes,
                disk_device_mappings: disks,
                status,
                instance_id: document.instance_id,
                compute_type: document.compute_type,
                os_version: document.os_version,
                description: document.description,
            },
            build_due_at: due,
            build_failure: failure(build.fail_at.as_deref())?,
            release_instance: build.release_instance,
        },
        shares,
        place: None,
    })
}

/// The account an `AccountId` query parameter scopes a call to, if any.
fn scope_of(params: &HashMap<String, String>) -> Result<Option<AccountId>, ControlError> {
    params.get("AccountId").map(|text| account(text)).transpose()
}

/// The server's owner account: the first one made, which a whole import keeps.
async fn owner_account(state: &ControlState) -> Result<AccountId, ControlError> {
    use ens_store::AdminStore;
    state
        .store
        .accounts()
        .await?
        .into_iter()
        .next()
        .map(|summary| summary.id)
        .ok_or_else(|| ControlError::NotFound("no account: the store has no owner account".into()))
}

/// Writes `imported` over the whole store or over `account`, and clears what a reset
/// clears beside the store (the journal and fault rules stay: they record the run).
async fn import(
    state: &ControlState,
    imported: &mut StoreState,
    account: Option<&AccountId>,
) -> Result<u64, ControlError> {
    keep_sealed_secrets(&state.store, &state.app.master_key, imported).await?;
    let imported = &*imported;
    match account {
        Some(account) => Ok(state
            .store
            .import_state(imported, ImportScope::Account(account))
            .await?),
        None => {
            let keep = owner_account(state).await?;
            Ok(state
                .store
                .import_state(imported, ImportScope::Whole { keep: &keep })
                .await?)
        }
    }
}

/// Gives each key of `imported` that the store holds with the same secret the sealed text
/// it has already: sealing again would give other bytes for the same secret, and the store
/// would look changed where nothing did (a fast reset checks the owner's keys that way).
async fn keep_sealed_secrets(
    store: &ens_store::Store,
    key: &MasterKey,
    imported: &mut StoreState,
) -> Result<(), ControlError> {
    use ens_store::AdminStore;
    let held: HashMap<String, String> = store
        .access_key_secrets()
        .await?
        .into_iter()
        .map(|(id, sealed)| (id.as_str().to_owned(), sealed))
        .collect();
    for new in imported
        .accounts
        .iter_mut()
        .flat_map(|account| account.keys.iter_mut())
    {
        let Some(sealed) = held.get(new.id.as_str()) else {
            continue;
        };
        let same = match (key.open(sealed), key.open(&new.sealed_secret)) {
            (Ok(old), Ok(fresh)) => old.expose() == fresh.expose(),
            _ => false,
        };
        if same {
            new.sealed_secret.clone_from(sealed);
        }
    }
    Ok(())
}

/// Loads a state document (`serve --seed`) into `store` with its owner account `keep`.
///
/// # Errors
/// When the document is malformed or refused by the store's rules; nothing is written then.
pub async fn seed(
    store: &ens_store::Store,
    key: &MasterKey,
    keep: &AccountId,
    text: &str,
) -> Result<u64, ControlError> {
    let document: StateDocument =
        serde_json::from_str(text).map_err(|error| invalid(format!("seed: {error}")))?;
    let imported = from_document(document, key, whole_seconds_now())?;
    Ok(store.import_state(&imported, ImportScope::Whole { keep }).await?)
}

/// `GET /state`: the state document of everything, or of the account `AccountId`.
pub(super) async fn export_state(
    State(state): State<ControlState>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Answer {
    let params = query(params, &["AccountId"])?;
    let exported = state.store.export_state(scope_of(&params)?.as_ref()).await?;
    let document = to_document(&exported, &state.app.master_key)?;
    // Pretty and in the document's own field order: made to be read and diffed.
    let mut text = serde_json::to_string_pretty(&document).map_err(|_| ControlError::Internal)?;
    text.push('\n');
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], text).into_response())
}

/// `PUT /state`: replaces everything (or the account `AccountId`) with the document.
pub(super) async fn import_state(
    State(state): State<ControlState>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
    bytes: Result<Bytes, BytesRejection>,
) -> Answer {
    let started = Instant::now();
    let params = query(params, &["AccountId"])?;
    let scope = scope_of(&params)?;
    let document: StateDocument = body(bytes)?;
    let mut imported = from_document(document, &state.app.master_key, whole_seconds_now())?;
    let images = import(&state, &mut imported, scope.as_ref()).await?;
    tracing::info!(
        images,
        account = scope.as_ref().map(AccountId::as_str),
        "control: state imported"
    );
    ok(
        StatusCode::OK,
        &json!({"Accounts": imported.accounts.len(), "Images": images, "ElapsedUs": elapsed_us(started)}),
    )
}

/// `POST /accounts/{id}/images`: one custom image in any status, for setting up a scene.
pub(super) async fn add_image(
    State(state): State<ControlState>,
    Path(owner): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Answer {
    let owner = account(&owner)?;
    let document: ImageDocument = body(bytes)?;
    let image = image_state(&owner, document, whole_seconds_now())?;
    state.store.add_state_image(&image).await?;
    let value = serde_json::to_value(image_document(&image)).map_err(|_| ControlError::Internal)?;
    ok(StatusCode::CREATED, &value)
}

/// `POST /snapshots`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SnapshotRequest {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    account_id: Option<String>,
}

fn snapshot_name(name: &str) -> Result<(), ControlError> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(invalid(format!(
            "a snapshot name is 1 to 128 letters, digits, '-', '_' or '.', got {name:?}"
        )));
    }
    Ok(())
}

fn describe(name: &str, saved: &SavedState) -> Value {
    json!({
        "Name": name,
        "AccountId": saved.account.as_ref().map(AccountId::as_str),
        "Accounts": saved.snapshot.accounts,
        "Images": saved.snapshot.images,
        "Bytes": saved.snapshot.bytes,
        "TakenAt": time_text(saved.taken_at),
    })
}

/// `POST /snapshots`: keeps the state of everything (or of one account) under a name,
/// replacing a snapshot of that name.
pub(super) async fn take_snapshot(
    State(state): State<ControlState>,
    bytes: Result<Bytes, BytesRejection>,
) -> Answer {
    let started = Instant::now();
    let request: SnapshotRequest = body(bytes)?;
    snapshot_name(&request.name)?;
    let scope = request.account_id.as_deref().map(account).transpose()?;
    // What the snapshots kept hold, the one this name replaces aside: the new one may take
    // the rest of the budget.
    let budget = {
        let snapshots = state.snapshots.lock();
        if snapshots.len() >= MAX_SNAPSHOTS && !snapshots.contains_key(&request.name) {
            return Err(ControlError::LimitExceeded(format!(
                "{MAX_SNAPSHOTS} snapshots are kept, the most at once; delete one first"
            )));
        }
        let held: u64 = snapshots
            .iter()
            .filter(|(name, _)| **name != request.name)
            .map(|(_, saved)| saved.snapshot.bytes)
            .sum();
        MAX_SNAPSHOT_BYTES.saturating_sub(held)
    };
    let snapshot = state
        .store
        .snapshot(scope.as_ref(), budget)
        .await
        .map_err(|error| match error {
            StoreError::Invalid(why) => ControlError::LimitExceeded(why),
            other => other.into(),
        })?;
    let saved = Arc::new(SavedState {
        snapshot,
        account: scope,
        taken_at: OffsetDateTime::now_utc(),
    });
    let mut answer = describe(&request.name, &saved);
    state.snapshots.lock().insert(request.name, saved);
    if let Some(fields) = answer.as_object_mut() {
        fields.insert("ElapsedUs".into(), json!(elapsed_us(started)));
    }
    ok(StatusCode::CREATED, &answer)
}

/// `GET /snapshots`.
pub(super) async fn list_snapshots(State(state): State<ControlState>) -> Answer {
    let listed: Vec<Value> = state
        .snapshots
        .lock()
        .iter()
        .map(|(name, saved)| describe(name, saved))
        .collect();
    ok(
        StatusCode::OK,
        &json!({"Snapshots": listed, "Capacity": MAX_SNAPSHOTS}),
    )
}

fn saved(state: &ControlState, name: &str) -> Result<Arc<SavedState>, ControlError> {
    state
        .snapshots
        .lock()
        .get(name)
        .cloned()
        .ok_or_else(|| ControlError::NotFound(format!("no snapshot {name:?}")))
}

/// `POST /snapshots/{name}/restore`: the store as it was when the snapshot was taken (the
/// account alone, for an account's snapshot). The journal and fault rules are not rolled back.
pub(super) async fn restore_snapshot(State(state): State<ControlState>, Path(name): Path<String>) -> Answer {
    let started = Instant::now();
    let saved = saved(&state, &name)?;
    match &saved.account {
        Some(account) => {
            state
                .store
                .restore_snapshot(&saved.snapshot, ImportScope::Account(account))
                .await?;
        }
        None => {
            let keep = owner_account(&state).await?;
            state
                .store
                .restore_snapshot(&saved.snapshot, ImportScope::Whole { keep: &keep })
                .await?;
        }
    }
    tracing::info!(snapshot = %name, images = saved.snapshot.images, "control: snapshot restored");
    let mut answer = describe(&name, &saved);
    if let Some(fields) = answer.as_object_mut() {
        fields.insert("ElapsedUs".into(), json!(elapsed_us(started)));
    }
    ok(StatusCode::OK, &answer)
}

/// `DELETE /snapshots/{name}`.
pub(super) async fn delete_snapshot(State(state): State<ControlState>, Path(name): Path<String>) -> Answer {
    match state.snapshots.lock().remove(&name) {
        Some(_) => ok(StatusCode::OK, &json!({"Removed": 1})),
        None => Err(ControlError::NotFound(format!("no snapshot {name:?}"))),
    }
}
