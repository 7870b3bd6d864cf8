//! Dispatch of authenticated calls to the operations.

use ens_domain::ImageQuery;
use ens_protocol::ops::describe_images::{self, DescribeImagesRequest};
use ens_protocol::{Action, ApiError, Body, Call};

use crate::auth::Caller;
use crate::error::ServerError;
use crate::AppState;

/// Runs `call` for `caller`.
pub async fn dispatch(
    state: &AppState,
    caller: &Caller,
    call: &Call,
    request_id: &str,
) -> Result<Body, ServerError> {
    match call.action {
        Action::DescribeImages => describe(state, caller, call, request_id).await,
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
        viewer: caller.account.clone(),
        node: request.node,
        image_id: request.image_id,
        image_name: request.image_name,
        snapshot_id: request.snapshot_id,
        page: request.page,
    };
    let page = state.store.describe_images(&query).await?;
    Ok(describe_images::response(request_id, &page))
}
