//! Imports and exports through the control API.
//!
//! - `GET /images/{id}/transfers`: the image's import and latest export as recorded, with
//!   their state, attempts, objects and, for a failure, the reason.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use ens_domain::ImageId;
use ens_store::RequestStore;
use serde_json::{json, Value};

use super::state::time_text;
use super::{ok, Answer, ControlError, ControlState};

/// `GET /images/{id}/transfers`: the image's import and latest export, with how they ended
/// and why. A failed import leaves its image `Upload_failed`; the reason has no field in any
/// API response model, so this is where the owner (a test) reads it.
pub(super) async fn image_transfers(State(state): State<ControlState>, Path(id): Path<String>) -> Answer {
    let id =
        ImageId::parse(&id).map_err(|error| ControlError::NotFound(format!("no such image: {error}")))?;
    let transfers: Vec<Value> = state
        .store
        .image_transfers(&id)
        .await?
        .into_iter()
        .map(|record| {
            let objects: Vec<Value> = record
                .objects
                .iter()
                .map(|object| json!({"Region": object.region, "Bucket": object.bucket, "Key": object.key}))
                .collect();
            json!({
                "Kind": record.kind.as_str(),
                "State": record.state,
                "Reason": record.reason,
                "ExportedImageURL": record.url,
                "Attempts": record.attempts,
                "Objects": objects,
                "CreatedAt": time_text(record.created_at),
                "FinishedAt": record.finished_at.map(time_text),
            })
        })
        .collect();
    ok(
        StatusCode::OK,
        &json!({"ImageId": id.as_str(), "Transfers": transfers}),
    )
}
