//! Dispatch of authenticated, authorized operations to the store.

use ens_domain::transfer::export_key;
use ens_domain::{
    CustomImagePlan, CustomImageSource, Image, ImageId, ImageQuery, ImageStatus, NewCustomImage, ObjectName,
};
use ens_objects::Bucket;
use ens_protocol::ops::acknowledgement;
use ens_protocol::ops::create_image::{self, CreateImageRequest, ImageSource};
use ens_protocol::ops::describe_export_image_info;
use ens_protocol::ops::describe_export_image_status;
use ens_protocol::ops::describe_image_infos;
use ens_protocol::ops::describe_image_share_permission;
use ens_protocol::ops::describe_images::{self, DescribeImagesRequest};
use ens_protocol::ops::describe_self_images;
use ens_protocol::ops::export_image::{self, ExportImageRequest};
use ens_protocol::ops::import_image::{self, ImportImageRequest};
use ens_protocol::ops::modify_image_share_permission;
use ens_protocol::render::render_success;
use ens_protocol::{ApiError, ErrorCode, Format};
use ens_store::{NewImage, SelfImageQuery};
use time::OffsetDateTime;

use crate::auth::Caller;
use crate::error::ServerError;
use crate::operation::Operation;
use crate::transfers::Transfers;
use crate::AppState;

/// Runs `operation` for `caller` and renders its answer in `format`, while the body can
/// still borrow what the store returned. An operation whose parameters were invalid is
/// answered with its validation error here, after authentication and authorization, as the
/// cloud orders the checks.
pub async fn dispatch(
    state: &AppState,
    caller: &Caller,
    operation: &Operation,
    request_id: &str,
    format: Format,
    now: OffsetDateTime,
) -> Result<String, ServerError> {
    let store = state.store.as_ref();
    let account = &caller.principal.account;
    match operation {
        Operation::Invalid(invalid) => Err(invalid.error().clone().into()),
        Operation::DescribeImages(request) => describe(state, caller, request, request_id, format).await,
        Operation::CreateImage(request) => create(state, caller, request, request_id, format, now).await,
        Operation::DeleteImage(request) => {
            store.delete_image(account, &request.image_id).await?;
            Ok(render_success(acknowledgement("DeleteImage", request_id), format))
        }
        Operation::ModifyImageAttribute(request) => {
            store
                .rename_image(account, &request.image_id, &request.image_name)
                .await?;
            Ok(render_success(
                acknowledgement("ModifyImageAttribute", request_id),
                format,
            ))
        }
        Operation::DescribeImageInfos(request) => {
            let images = store.public_images(request.os_type.as_deref()).await?;
            Ok(render_success(
                describe_image_infos::response(request_id, &images),
                format,
            ))
        }
        Operation::DescribeSelfImages(request) => {
            let page = store
                .describe_self_images(&SelfImageQuery {
                    viewer: account.clone(),
                    image_id_contains: request.image_id.clone(),
                    image_name_contains: request.image_name.clone(),
                    snapshot_id: request.snapshot_id.clone(),
                    page: request.page,
                })
                .await?;
            Ok(render_success(
                describe_self_images::response(request_id, &page),
                format,
            ))
        }
        Operation::DescribeImageSharePermission(request) => {
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
            Ok(render_success(
                describe_image_share_permission::response(request_id, &request.image_id, &accounts),
                format,
            ))
        }
        Operation::ModifyImageSharePermission(request) => {
            store
                .modify_image_shares(account, &request.image_id, &request.add, &request.remove, now)
                .await?;
            Ok(render_success(
                modify_image_share_permission::response(request_id),
                format,
            ))
        }
        Operation::ImportImage(request) => import(state, caller, request, request_id, format, now).await,
        Operation::ExportImage(request) => export(state, caller, request, request_id, format, now).await,
        Operation::DescribeExportImageStatus(request) => {
            let status = store.export_status(account, &request.image_id).await?;
            Ok(render_success(
                describe_export_image_status::response(request_id, status),
                format,
            ))
        }
        Operation::DescribeExportImageInfo(request) => {
            let page = store
                .export_infos(
                    account,
                    request.image_id.as_ref(),
                    request.image_name.as_deref(),
                    request.page,
                )
                .await?;
            Ok(render_success(
                describe_export_image_info::response(request_id, &page),
                format,
            ))
        }
    }
}

/// The object storage, or the error that says this server keeps no image bytes.
fn transfers(state: &AppState) -> Result<&Transfers, ServerError> {
    state.transfers.as_deref().ok_or_else(|| {
        ApiError::with_message(
            ErrorCode::ServiceUnavailable,
            "This server keeps no image files: it was started without object storage.",
        )
        .into()
    })
}

/// The configured bucket `object` names, or `InvalidParameter.<field>` naming it.
fn bucket(transfers: &Transfers, object: &ObjectName, field: &'static str) -> Result<Bucket, ServerError> {
    transfers
        .buckets
        .resolve(&object.region, &object.bucket)
        .map_err(|error| ApiError::invalid_parameter(field, &error.to_string()).into())
}

/// Records the image as `Creating` with its import, and wakes the transfer worker; the
/// bytes are copied after the answer (see [`crate::transfers`]).
async fn import(
    state: &AppState,
    caller: &Caller,
    request: &ImportImageRequest,
    request_id: &str,
    format: Format,
    now: OffsetDateTime,
) -> Result<String, ServerError> {
    let transfers = transfers(state)?;
    // A bucket nobody configured is refused now, not after the answer.
    let field = if request.disks.len() > 1 {
        "DiskDeviceMapping"
    } else {
        "OSSBucket"
    };
    for disk in &request.disks {
        bucket(transfers, disk, field)?;
    }
    let image = Image {
        id: ImageId::pending(),
        name: request.image_name.clone(),
        owner: Some(caller.principal.account.clone()),
        architecture: request.architecture.clone(),
        platform: request
            .platform
            .clone()
            .unwrap_or_else(|| IMPORTED_PLATFORM.to_owned()),
        os_type: request.os_type.clone(),
        size_gib: 0,
        creation_time: now,
        snapshot_id: None,
        nodes: Vec::new(),
        disk_device_mappings: Vec::new(),
        status: ImageStatus::Creating,
        instance_id: None,
        compute_type: request.compute_type.clone(),
        os_version: request
            .os_version
            .clone()
            .unwrap_or_else(|| IMPORTED_OS_VERSION.to_owned()),
        description: String::new(),
    };
    let new = NewImage {
        image,
        build_due_at: None,
        build_failure: None,
        release_instance: None,
    };
    let id = state
        .store
        .start_import(&new, &request.disks, request_id, now)
        .await?;
    transfers.wake();
    Ok(render_success(
        import_image::response(request_id, id.as_str()),
        format,
    ))
}

/// `Platform` of an import that named none: the OS family, as the older API pages list it.
const IMPORTED_PLATFORM: &str = "linux";

/// `OsVersion` of an import that named none: the listings always give one.
const IMPORTED_OS_VERSION: &str = "unknown";

/// Records the export of the caller's image and answers the URL its object will have.
async fn export(
    state: &AppState,
    caller: &Caller,
    request: &ExportImageRequest,
    request_id: &str,
    format: Format,
    now: OffsetDateTime,
) -> Result<String, ServerError> {
    let transfers = transfers(state)?;
    let target = ObjectName {
        region: request.region.clone(),
        bucket: request.bucket.clone(),
        key: export_key(request.prefix.as_deref(), &request.image_id),
    };
    let url = bucket(transfers, &target, "OSSBucket")?.url(&target.key);
    state
        .store
        .start_export(
            &caller.principal.account,
            &request.image_id,
            &target,
            &url,
            request_id,
            now,
        )
        .await?;
    transfers.wake();
    Ok(render_success(export_image::response(request_id, &url), format))
}

async fn describe(
    state: &AppState,
    caller: &Caller,
    request: &DescribeImagesRequest,
    request_id: &str,
    format: Format,
) -> Result<String, ServerError> {
    if let Some(node) = &request.node {
        if !state.store.node_exists(node).await? {
            return Err(
                ApiError::invalid_parameter("EnsRegionId", &format!("node {node} does not exist")).into(),
            );
        }
    }
    let query = ImageQuery {
        viewer: caller.principal.account.clone(),
        node: request.node.clone(),
        image_id: request.image_id.clone(),
        image_name: request.image_name.clone(),
        snapshot_id: request.snapshot_id.clone(),
        page: request.page,
    };
    let page = state.store.describe_images(&query).await?;
    Ok(render_success(
        describe_images::response(request_id, &page),
        format,
    ))
}

/// Looks the source up, lets the domain decide what the image takes from it
/// ([`NewCustomImage::from_source`]), and stores the result.
async fn create(
    state: &AppState,
    caller: &Caller,
    request: &CreateImageRequest,
    request_id: &str,
    format: Format,
    now: OffsetDateTime,
) -> Result<String, ServerError> {
    let store = state.store.as_ref();
    let account = &caller.principal.account;
    let not_found = |name: &'static str, id: &str| {
        ApiError::invalid_parameter(
            name,
            &format!("{} {id} does not exist", name.trim_end_matches("Id")),
        )
    };
    // Sources of other accounts look exactly like missing ones: no existence leaks.
    let source = match &request.source {
        ImageSource::Instance(id) => CustomImageSource::Instance {
            instance: store
                .instance(id)
                .await?
                .filter(|instance| &instance.owner == account)
                .ok_or_else(|| not_found("InstanceId", id))?,
            with_data_disks: request.with_data_disks,
            release_after_upload: request.delete_after_upload,
        },
        ImageSource::Snapshot(id) => CustomImageSource::Snapshot(
            store
                .snapshot(id)
                .await?
                .filter(|snapshot| &snapshot.owner == account)
                .ok_or_else(|| not_found("SnapshotId", id))?,
        ),
    };
    let new = NewCustomImage::from_source(
        source,
        CustomImagePlan {
            name: request.image_name.clone(),
            owner: account.clone(),
            requested_at: now,
            build_step: state.config.image_build_step,
        },
    );
    let new = state.build_clock.hold(new, now);
    let created = store
        .create_image(NewImage {
            image: new.image,
            build_due_at: new.build_due_at,
            build_failure: new.build_failure,
            release_instance: new.release_instance,
        })
        .await?;
    Ok(render_success(
        create_image::response(request_id, created.id.as_str()),
        format,
    ))
}
