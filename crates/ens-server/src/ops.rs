//! Dispatch of authenticated calls to the operations.

use ens_domain::{Image, ImageQuery, ImageStatus, NodeId};
use ens_protocol::ops::acknowledgement;
use ens_protocol::ops::create_image::{self, CreateImageRequest, ImageSource};
use ens_protocol::ops::delete_image::DeleteImageRequest;
use ens_protocol::ops::describe_image_infos::{self, DescribeImageInfosRequest};
use ens_protocol::ops::describe_image_share_permission::{self, DescribeImageSharePermissionRequest};
use ens_protocol::ops::describe_images::{self, DescribeImagesRequest};
use ens_protocol::ops::describe_self_images::{self, DescribeSelfImagesRequest};
use ens_protocol::ops::modify_image_attribute::ModifyImageAttributeRequest;
use ens_protocol::ops::modify_image_share_permission::{self, ModifyImageSharePermissionRequest};
use ens_protocol::{Action, ApiError, Body, Call};
use ens_store::{NewImage, SelfImageQuery};
use time::OffsetDateTime;

use crate::auth::Caller;
use crate::error::ServerError;
use crate::AppState;

/// Runs `call` for `caller`.
pub async fn dispatch(
    state: &AppState,
    caller: &Caller,
    call: &Call,
    request_id: &str,
    now: OffsetDateTime,
) -> Result<Body, ServerError> {
    let store = state.store.as_ref();
    let account = &caller.principal.account;
    match call.action {
        Action::DescribeImages => describe(state, caller, call, request_id).await,
        Action::CreateImage => create(state, caller, call, request_id, now).await,
        Action::DeleteImage => {
            let request = DeleteImageRequest::from_params(&call.params)?;
            store.delete_image(account, &request.image_id).await?;
            Ok(acknowledgement("DeleteImage", request_id))
        }
        Action::ModifyImageAttribute => {
            let request = ModifyImageAttributeRequest::from_params(&call.params)?;
            store
                .rename_image(account, &request.image_id, &request.image_name)
                .await?;
            Ok(acknowledgement("ModifyImageAttribute", request_id))
        }
        Action::DescribeImageInfos => {
            let request = DescribeImageInfosRequest::from_params(&call.params)?;
            let images = store.public_images(request.os_type.as_deref()).await?;
            Ok(describe_image_infos::response(request_id, &images))
        }
        Action::DescribeSelfImages => {
            let request = DescribeSelfImagesRequest::from_params(&call.params)?;
            let page = store
                .describe_self_images(&SelfImageQuery {
                    viewer: account.clone(),
                    image_id_contains: request.image_id,
                    image_name_contains: request.image_name,
                    snapshot_id: request.snapshot_id,
                    page: request.page,
                })
                .await?;
            Ok(describe_self_images::response(request_id, &page))
        }
        Action::DescribeImageSharePermission => {
            let request = DescribeImageSharePermissionRequest::from_params(&call.params)?;
            let shares = store
                .image_shares(
                    account,
                    &request.image_id,
                    request.aliyun_id.as_ref(),
                    request.page,
                )
                .await?;
            let accounts = ens_domain::Page {
                items: shares.items.into_iter().map(|share| share.account).collect(),
                total_count: shares.total_count,
                request: shares.request,
            };
            Ok(describe_image_share_permission::response(
                request_id,
                &request.image_id,
                &accounts,
            ))
        }
        Action::ModifyImageSharePermission => {
            let request = ModifyImageSharePermissionRequest::from_params(&call.params)?;
            store
                .modify_image_shares(account, &request.image_id, &request.add, &request.remove, now)
                .await?;
            Ok(modify_image_share_permission::response(request_id))
        }
    }
}

async fn describe(
    state: &AppState,
    caller: &Caller,
    call: &Call,
    request_id: &str,
) -> Result<Body, ServerError> {
    let request = DescribeImagesRequest::from_params(&call.params)?;
    if let Some(node) = &request.node {
        if !state.store.node_exists(node).await? {
            return Err(
                ApiError::invalid_parameter("EnsRegionId", &format!("node {node} does not exist")).into(),
            );
        }
    }
    let query = ImageQuery {
        viewer: caller.principal.account.clone(),
        node: request.node,
        image_id: request.image_id,
        image_name: request.image_name,
        snapshot_id: request.snapshot_id,
        page: request.page,
    };
    let page = state.store.describe_images(&query).await?;
    Ok(describe_images::response(request_id, &page))
}

/// One disk of a new image, its file named after the image by the store.
fn disk(disk_type: &str, size_gib: u64) -> ens_domain::DiskDeviceMapping {
    ens_domain::DiskDeviceMapping {
        disk_type: disk_type.into(),
        size_gib,
        format: "qcow2".into(),
        image_id: String::new(),
    }
}

async fn create(
    state: &AppState,
    caller: &Caller,
    call: &Call,
    request_id: &str,
    now: OffsetDateTime,
) -> Result<Body, ServerError> {
    let request = CreateImageRequest::from_params(&call.params)?;
    let store = state.store.as_ref();
    let not_found = |name: &'static str, id: &str| {
        ApiError::invalid_parameter(
            name,
            &format!("{} {id} does not exist", name.trim_end_matches("Id")),
        )
    };
    // Sources of other accounts look exactly like missing ones: no existence leaks.
    let (template, failure, release_instance) = match &request.source {
        ImageSource::Instance(id) => {
            let instance = store
                .instance(id)
                .await?
                .filter(|instance| instance.owner == caller.principal.account)
                .ok_or_else(|| not_found("InstanceId", id))?;
            let mut disks = vec![disk("system", instance.system_disk_gib)];
            if request.with_data_disks {
                disks.extend(instance.data_disks_gib.iter().map(|size| disk("data", *size)));
            }
            let template = Template {
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
            };
            let release = request.delete_after_upload.then_some(instance.id);
            (template, instance.build_failure, release)
        }
        ImageSource::Snapshot(id) => {
            let snapshot = store
                .snapshot(id)
                .await?
                .filter(|snapshot| snapshot.owner == caller.principal.account)
                .ok_or_else(|| not_found("SnapshotId", id))?;
            let template = Template {
                platform: snapshot.platform,
                os_type: snapshot.os_type,
                os_version: snapshot.os_version,
                architecture: snapshot.architecture,
                compute_type: "ens_vm".into(),
                size_gib: snapshot.size_gib,
                node: snapshot.node,
                instance_id: snapshot.instance_id,
                snapshot_id: Some(snapshot.id),
                disks: vec![disk("system", snapshot.size_gib)],
            };
            (template, snapshot.build_failure, None)
        }
    };
    let step = state.config.image_build_step;
    let immediate = step.is_zero();
    let creation_time = now.replace_nanosecond(0).unwrap_or(now);
    let image = Image {
        id: ens_domain::ImageId::pending(),
        name: request.image_name,
        owner: Some(caller.principal.account.clone()),
        architecture: template.architecture,
        platform: template.platform,
        os_type: template.os_type,
        size_gib: template.size_gib,
        creation_time,
        snapshot_id: template.snapshot_id,
        nodes: vec![template.node],
        disk_device_mappings: template.disks,
        status: if immediate && failure.is_none() {
            ImageStatus::Available
        } else {
            ImageStatus::Creating
        },
        instance_id: template.instance_id,
        compute_type: template.compute_type,
        os_version: template.os_version,
        description: String::new(),
    };
    let created = store
        .create_image(NewImage {
            build_due_at: (image.status != ImageStatus::Available).then_some(now + step),
            image,
            build_failure: failure,
            release_instance,
        })
        .await?;
    Ok(create_image::response(request_id, created.id.as_str()))
}

/// What a new image takes from its source.
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
    disks: Vec<ens_domain::DiskDeviceMapping>,
}
