//! The lifecycle clock through the control API: freeze the build schedule, move builds on
//! when the test says so, and choose how one image's build ends.
//!
//! - `GET /clock`, `PUT /clock` `{"Frozen": bool}`: whether builds move by themselves (see
//!   [`crate::build_clock`]). Unfreezing starts the current step of every build afresh, so
//!   builds held while frozen go on at their normal pace.
//! - `POST /clock/steps` `{"Steps", "AccountId", "ImageId"}`: every image still building in
//!   the scope moves `Steps` steps now, by the very transition the background advancer makes
//!   (`RequestStore::step_image_builds`), whatever its due time and whether or not frozen.
//! - `PUT /images/{id}/build` `{"FailAt": "pack" | "upload" | null}`: the outcome of one
//!   image's build, overriding its source's `FailBuild`.
//!
//! The clock is this process's: with replicas over one store, each has its own, and a
//! running replica goes on advancing every build in the store.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ens_domain::{AccountId, BuildFailure, ImageId};
use ens_store::RequestStore;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::{body, ok, Answer, ControlError, ControlState};

/// Most steps one call takes: a build has three, so more only guards against typos.
const MAX_STEPS: i64 = 100;

/// The clock as `GET /clock` and `PUT /clock` answer it.
fn clock_answer(state: &ControlState) -> Value {
    let step_ms = u64::try_from(state.app.config.image_build_step.as_millis()).unwrap_or(u64::MAX);
    json!({"Frozen": state.app.build_clock.is_frozen(), "BuildStepMs": step_ms})
}

/// `GET /clock`.
pub(super) async fn read_clock(State(state): State<ControlState>) -> Answer {
    ok(StatusCode::OK, &clock_answer(&state))
}

/// `PUT /clock`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ClockRequest {
    frozen: bool,
}

/// `PUT /clock`: freezes (returning once no advance is under way, so nothing moves by
/// itself afterwards) or unfreezes (after giving every build a fresh step, so held builds
/// do not all move at the advancer's next tick).
pub(super) async fn set_clock(
    State(state): State<ControlState>,
    bytes: Result<Bytes, BytesRejection>,
) -> Answer {
    let request: ClockRequest = body(bytes)?;
    let clock = &state.app.build_clock;
    if request.frozen {
        if !clock.freeze().await {
            tracing::info!("control: build clock frozen");
        }
    } else if clock.is_frozen() {
        // Rescheduled first: if the store fails, the clock stays frozen and the call can be
        // repeated.
        let restarted = state
            .store
            .restart_image_builds((state.app.clock)(), state.app.config.image_build_step)
            .await?;
        clock.unfreeze();
        tracing::info!(restarted, "control: build clock running");
    }
    ok(StatusCode::OK, &clock_answer(&state))
}

/// `POST /clock/steps`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct StepRequest {
    #[serde(default)]
    steps: Option<i64>,
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    image_id: Option<String>,
}

/// `POST /clock/steps`: moves the builds in scope on now; answers each image that moved with
/// its status now, oldest first.
pub(super) async fn step_builds(
    State(state): State<ControlState>,
    bytes: Result<Bytes, BytesRejection>,
) -> Answer {
    let request: StepRequest = body(bytes)?;
    let steps = request.steps.unwrap_or(1);
    let steps = u32::try_from(steps)
        .ok()
        .filter(|_| (1..=MAX_STEPS).contains(&steps))
        .ok_or_else(|| {
            ControlError::InvalidInput(format!("Steps must be from 1 to {MAX_STEPS}, got {steps}"))
        })?;
    let account = request
        .account_id
        .as_deref()
        .map(|id| AccountId::parse("AccountId", id))
        .transpose()?;
    let image = request.image_id.as_deref().map(ImageId::parse).transpose()?;
    let moved = state
        .store
        .step_image_builds(
            account.as_ref(),
            image.as_ref(),
            steps,
            (state.app.clock)(),
            state.app.config.image_build_step,
        )
        .await?;
    tracing::info!(
        steps,
        images = moved.len(),
        account = account.as_ref().map(AccountId::as_str),
        image = image.as_ref().map(ImageId::as_str),
        "control: builds stepped"
    );
    let images: Vec<Value> = moved
        .iter()
        .map(|(id, status)| json!({"ImageId": id.as_str(), "Status": status.as_str()}))
        .collect();
    ok(StatusCode::OK, &json!({"Images": images}))
}

/// `PUT /images/{id}/build`. `FailAt` must be present (`null` clears), so an empty body
/// cannot clear a failure by accident.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct OutcomeRequest {
    #[serde(deserialize_with = "present")]
    fail_at: Option<String>,
}

/// Reads an optional value that must be written out, `null` included.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Option::deserialize(deserializer)
}

/// `PUT /images/{id}/build`: sets or clears where one image's build fails.
pub(super) async fn set_build_outcome(
    State(state): State<ControlState>,
    Path(id): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Answer {
    let request: OutcomeRequest = body(bytes)?;
    let id =
        ImageId::parse(&id).map_err(|error| ControlError::NotFound(format!("no such image: {error}")))?;
    let failure = request
        .fail_at
        .as_deref()
        .map(|text| {
            BuildFailure::parse(text).ok_or_else(|| {
                ControlError::InvalidInput(format!("FailAt must be pack, upload or null, got {text:?}"))
            })
        })
        .transpose()?;
    let status = state.store.set_image_build_failure(&id, failure).await?;
    tracing::info!(image = %id, fail_at = failure.map(BuildFailure::as_str), "control: build outcome chosen");
    ok(
        StatusCode::OK,
        &json!({
            "ImageId": id.as_str(),
            "Status": status.as_str(),
            "FailAt": failure.map(BuildFailure::as_str),
        }),
    )
}
