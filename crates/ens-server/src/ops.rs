//! Dispatch of authenticated, authorized operations to the store.

use ens_domain::{CustomImagePlan, CustomImageSource, ImageQuery, NewCustomImage};
use ens_protocol::ops::acknowledgement;
use ens_protocol::ops::create_image::{self, CreateImageRequest, ImageSource};
use ens_protocol::ops::describe_image_infos;
use ens_protocol::ops::describe_image_share_permission;
use ens_protocol::ops::describe_images::{self, DescribeImagesRequest};
use ens_protocol::ops::describe_self_images;
use ens_protocol::ops::modify_image_share_permission;
use ens_protocol::{ApiError, Body};
use ens_store::{NewImage, SelfImageQuery};
use time::OffsetDateTime;

use crate::auth::Caller;
use crate::error::ServerError;
use crate::operation::Operation;
use crate::AppState;

/// Runs `operation` for `caller`. An operation whose parameters were invalid is answered
/// with its validation error here, after authentication and authorization, as the cloud
/// orders the checks.
pub async fn dispatch(
    state: &AppState,
    caller: &Caller,
    operation: &Operation,
    request_id: &str,
    now: OffsetDateTime,
) -> Result<Body, ServerError> {
    let store = state.store.as_ref();
    let account = &caller.principal.account;
    match operation {
        Operation::Invalid(invalid) => Err(invalid.error().clone().into()),
        Operation::DescribeImages(request) => describe(state, caller, request, request_id).await,
        Operation::CreateImage(request) => create(state, caller, request, request_id, now).await,
        Operation::DeleteImage(request) => {
            store.delete_image(account, &request.image_id).await?;
            Ok(acknowledgement("DeleteImage", request_id))
        }
        Operation::ModifyImageAttribute(request) => {
            store
                .rename_image(account, &request.image_id, &request.image_name)
                .await?;
            Ok(acknowledgement("ModifyImageAttribute", request_id))
        }
        Operation::DescribeImageInfos(request) => {
            let images = store.public_images(request.os_type.as_deref()).await?;
            Ok(describe_image_infos::response(request_id, &images))
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
            Ok(describe_self_images::response(request_id, &page))
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
            Ok(describe_image_share_permission::response(
                request_id,
                &request.image_id,
                &accounts,
            ))
        }
        Operation::ModifyImageSharePermission(request) => {
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
    request: &DescribeImagesRequest,
    request_id: &str,
) -> Result<Body, ServerError> {
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
    Ok(describe_images::response(request_id, &page))
}

/// Looks the source up, lets the domain decide what the image takes from it
/// ([`NewCustomImage::from_source`]), and stores the result.
async fn create(
    state: &AppState,
    caller: &Caller,
    request: &CreateImageRequest,
    request_id: &str,
    now: OffsetDateTime,
) -> Result<Body, ServerError> {
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
    Ok(create_image::response(request_id, created.id.as_str()))
}
