//! The control API: JSON over HTTP on a listener of its own, for tests and CI to set the
//! service up and look into it without shelling out to `ens-images admin`: accounts and
//! AccessKeys (chosen or generated), RAM users, instances and snapshots, resets, the request
//! journal, and fault injection.
//!
//! Every route needs `Authorization: Bearer TOKEN`, compared in constant time; without it
//! the answer is 401 and nothing else is read. Every answer, errors included, is a JSON
//! object; an error is `{"Code": ..., "Message": ...}` with a 4xx or 5xx status.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use ens_domain::validation::{validate_compute_type, validate_short_name, validate_text, InvalidField};
use ens_domain::{
    AccessKeyId, AccountId, BuildFailure, ImageId, Instance, NodeId, Principal, RamUserName, Snapshot,
};
use ens_store::{AdminStore, ResetPoint, Store, StoreError};
use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::faults::FaultSpec;
use crate::journal::{JournalQuery, JOURNAL_CAPACITY};
use crate::AppState;

mod clock;
mod policies;
pub use policies::policy_json;
pub mod state;
mod transfers;

/// The bearer token of the control API. Never printed by `Debug`; compared in constant time.
pub struct ControlToken(zeroize::Zeroizing<String>);

impl ControlToken {
    /// The token `text`; refused when empty, so a blank variable cannot open the API.
    ///
    /// # Errors
    /// When `text` is empty or has characters a header cannot carry.
    pub fn parse(text: &str) -> Result<Self, InvalidField> {
        if text.is_empty() || text.len() > 256 || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidField::new(
                "control token",
                "1 to 256 printable ASCII characters without spaces",
            ));
        }
        Ok(Self(zeroize::Zeroizing::new(text.to_owned())))
    }

    /// A random 32-character token, for when the operator gives none.
    #[must_use]
    pub fn generate() -> Self {
        Self(zeroize::Zeroizing::new(
            Alphanumeric.sample_string(&mut rand::thread_rng(), 32),
        ))
    }

    /// The token, to print once at start when it was generated.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is the token; the time taken does not depend on where they differ.
    #[must_use]
    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

impl std::fmt::Debug for ControlToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlToken(<redacted>)")
    }
}

/// What the control routes share: the API's state (journal, faults, master key) and the
/// store as operators see it.
#[derive(Clone)]
pub struct ControlState {
    app: AppState,
    store: Store,
    token: Arc<ControlToken>,
    snapshots: Arc<state::Snapshots>,
    reset_point: Option<Arc<ResetPoint>>,
}

impl ControlState {
    /// Control over the service whose request state is `app` and store is `store`; turns
    /// the journal on.
    #[must_use]
    pub fn new(app: AppState, store: Store, token: ControlToken) -> Self {
        app.journal.enable();
        Self {
            app,
            store,
            token: Arc::new(token),
            snapshots: Arc::default(),
            reset_point: None,
        }
    }

    /// Makes `POST /reset` put the store back to `point` (see [`Store::reset_point`]) in one
    /// page copy, in milliseconds at any size, rather than delete what tests made. For a
    /// private store whose first start is `point` (`--ephemeral`, the test crate): on a store
    /// that held data before this process, or was seeded, a reset must delete.
    #[must_use]
    pub fn with_reset_point(mut self, point: Option<ResetPoint>) -> Self {
        self.reset_point = point.map(Arc::new);
        self
    }
}

/// A refused control call; its `Code` says which kind, its message what to change.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No token, or another one.
    #[error("send the control token as `Authorization: Bearer TOKEN`")]
    Unauthorized,
    /// The input is malformed or out of range.
    #[error("{0}")]
    InvalidInput(String),
    /// No such route, account, user, key or rule.
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not with this method.
    #[error("this route does not take this method")]
    MethodNotAllowed,
    /// The ID is taken, or the change conflicts with the state (a policy still attached).
    #[error("{0}")]
    Conflict(String),
    /// A bound the control API keeps (how many snapshots, how much memory they hold).
    #[error("{0}")]
    LimitExceeded(String),
    /// The store cannot answer now; retry later.
    #[error("the store is unavailable; retry later")]
    Unavailable,
    /// A bug or an unexpected failure; the log has the cause.
    #[error("internal error; the server log has the cause")]
    Internal,
}

impl ControlError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            Self::InvalidInput(_) => (StatusCode::BAD_REQUEST, "InvalidInput"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
            Self::LimitExceeded(_) => (StatusCode::CONFLICT, "LimitExceeded"),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable"),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        }
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut response = (
            status,
            json_body(&json!({"Code": code, "Message": self.to_string()})),
        )
            .into_response();
        if matches!(self, Self::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<InvalidField> for ControlError {
    fn from(error: InvalidField) -> Self {
        Self::InvalidInput(error.to_string())
    }
}

impl From<StoreError> for ControlError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => Self::NotFound(format!("no such {what}")),
            StoreError::Conflict(what) => Self::Conflict(format!("{what} already exists")),
            StoreError::Invalid(why) => Self::InvalidInput(why),
            StoreError::Image(error) => Self::InvalidInput(error.to_string()),
            error if error.is_unavailable() => {
                tracing::warn!(%error, "control call: store unavailable");
                Self::Unavailable
            }
            error => {
                tracing::error!(%error, "control call failed");
                Self::Internal
            }
        }
    }
}

type Answer = Result<Response, ControlError>;

fn json_body(value: &Value) -> ([(header::HeaderName, &'static str); 1], String) {
    ([(header::CONTENT_TYPE, "application/json")], value.to_string())
}

fn ok(status: StatusCode, value: &Value) -> Answer {
    Ok((status, json_body(value)).into_response())
}

/// Reads a JSON body into `T`; an empty body counts as `{}`.
fn body<T: DeserializeOwned>(bytes: Result<Bytes, BytesRejection>) -> Result<T, ControlError> {
    let bytes = bytes.map_err(|rejection| ControlError::InvalidInput(rejection.body_text()))?;
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    serde_json::from_slice(text).map_err(|error| ControlError::InvalidInput(format!("request body: {error}")))
}

/// The query parameters, refusing any name not in `known` (a typo must not widen a query).
fn query(
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
    known: &[&str],
) -> Result<HashMap<String, String>, ControlError> {
    let Query(params) = params.map_err(|rejection| ControlError::InvalidInput(rejection.body_text()))?;
    if let Some(unknown) = params.keys().find(|name| !known.contains(&name.as_str())) {
        return Err(ControlError::InvalidInput(format!(
            "unknown query parameter {unknown:?}; known: {}",
            known.join(", ")
        )));
    }
    Ok(params)
}

/// The control routes, behind the token check.
pub fn control_router(state: ControlState) -> Router {
    Router::new()
        .route("/accounts", get(list_accounts).post(create_account))
        .route("/accounts/{account}/access-keys", post(create_key))
        .route("/accounts/{account}/users", post(create_user))
        .route("/accounts/{account}/instances", post(add_instance))
        .route("/accounts/{account}/snapshots", post(add_snapshot))
        .route("/accounts/{account}/reset", post(reset_account))
        .route(
            "/accounts/{account}/policies",
            get(policies::list_policies).post(policies::create_policy),
        )
        .route(
            "/accounts/{account}/policies/{name}",
            delete(policies::delete_policy),
        )
        .route(
            "/accounts/{account}/users/{user}/policies",
            post(policies::attach_policy),
        )
        .route(
            "/accounts/{account}/users/{user}/policies/{name}",
            delete(policies::detach_policy),
        )
        .route("/accounts/{account}/images", post(state::add_image))
        .route(
            "/state",
            get(state::export_state)
                .put(state::import_state)
                .layer(DefaultBodyLimit::max(state::MAX_DOCUMENT_BYTES)),
        )
        .route(
            "/snapshots",
            get(state::list_snapshots).post(state::take_snapshot),
        )
        .route("/snapshots/{name}", delete(state::delete_snapshot))
        .route("/snapshots/{name}/restore", post(state::restore_snapshot))
        .route("/reset", post(reset_all))
        .route("/journal", get(read_journal).delete(clear_journal))
        .route("/faults", get(list_faults).post(add_fault).delete(clear_faults))
        .route("/faults/{id}", delete(remove_fault))
        .route("/clock", get(clock::read_clock).put(clock::set_clock))
        .route("/clock/steps", post(clock::step_builds))
        .route(
            "/images/{image}/build",
            axum::routing::put(clock::set_build_outcome),
        )
        .route("/images/{image}/transfers", get(transfers::image_transfers))
        .fallback(|| async { ControlError::NotFound("no such control route".into()) })
        .method_not_allowed_fallback(|| async { ControlError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Serves the control API on `listener` until `shutdown` completes.
///
/// # Errors
/// When accepting connections fails.
pub async fn serve_control(
    listener: tokio::net::TcpListener,
    state: ControlState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, control_router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn require_token(State(state): State<ControlState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(token) if state.token.matches(token.trim()) => next.run(request).await,
        _ => ControlError::Unauthorized.into_response(),
    }
}

fn account(value: &str) -> Result<AccountId, ControlError> {
    AccountId::parse("AccountId", value)
        .map_err(|error| ControlError::NotFound(format!("no such account: {error}")))
}

/// A random 16-digit account ID, as the cloud issues them.
///
/// # Errors
/// Never in practice: the digits are always a valid ID.
pub fn new_account_id() -> Result<AccountId, InvalidField> {
    let mut rng = rand::thread_rng();
    let digits: String = std::iter::once(char::from(b'1' + rng.gen_range(0..9u8)))
        .chain((0..15).map(|_| char::from(b'0' + rng.gen_range(0..10u8))))
        .collect();
    AccountId::parse("AccountId", &digits)
}

/// A fresh AccessKey pair in the cloud's style (`LTAI` + 20 characters, 30-character secret).
///
/// # Errors
/// Never in practice: the ID always has a key's shape.
pub fn new_key_pair() -> Result<(AccessKeyId, String), InvalidField> {
    let id = AccessKeyId::parse(&format!(
        "LTAI{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 20)
    ))?;
    Ok((id, Alphanumeric.sample_string(&mut rand::thread_rng(), 30)))
}

/// An AccessKey pair as a control call asks for it: either part chosen or generated.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct KeyRequest {
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    user_name: Option<String>,
    #[serde(default)]
    access_key_id: Option<String>,
    #[serde(default)]
    access_key_secret: Option<String>,
}

impl KeyRequest {
    /// The key ID and secret asked for, generated where not given.
    fn pair(&self) -> Result<(AccessKeyId, String), ControlError> {
        let (generated_id, generated_secret) = new_key_pair()?;
        let id = match &self.access_key_id {
            Some(id) => AccessKeyId::parse(id)?,
            None => generated_id,
        };
        let secret = match &self.access_key_secret {
            Some(secret)
                if secret.is_empty()
                    || secret.len() > 128
                    || !secret.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                return Err(ControlError::InvalidInput(
                    "AccessKeySecret: 1 to 128 printable ASCII characters without spaces".into(),
                ))
            }
            Some(secret) => secret.clone(),
            None => generated_secret,
        };
        Ok((id, secret))
    }
}

async fn list_accounts(State(state): State<ControlState>) -> Answer {
    let keys = state.store.access_keys(None).await?;
    let accounts: Vec<Value> = state
        .store
        .accounts()
        .await?
        .iter()
        .map(|summary| {
            json!({
                "AccountId": summary.id.as_str(),
                "AccessKeyIds": keys.iter()
                    .filter(|key| key.principal.account == summary.id && key.principal.user.is_none())
                    .map(|key| key.id.as_str()).collect::<Vec<_>>(),
            })
        })
        .collect();
    ok(StatusCode::OK, &json!({"Accounts": accounts}))
}

async fn create_account(State(state): State<ControlState>, bytes: Result<Bytes, BytesRejection>) -> Answer {
    let request: KeyRequest = body(bytes)?;
    if request.user_name.is_some() {
        return Err(ControlError::InvalidInput(
            "UserName: a new account has no users yet; create one with POST /accounts/{id}/users".into(),
        ));
    }
    let id = match &request.account_id {
        Some(id) => AccountId::parse("AccountId", id)?,
        None => new_account_id()?,
    };
    let (key, secret) = request.pair()?;
    let sealed = state.app.master_key.seal(&secret);
    state
        .store
        .create_account_with_key(&id, &key, &sealed, OffsetDateTime::now_utc())
        .await?;
    tracing::info!(account = %id, access_key_id = %key, "control: account created");
    ok(
        StatusCode::CREATED,
        &json!({"AccountId": id.as_str(), "AccessKeyId": key.as_str(), "AccessKeySecret": secret}),
    )
}

async fn create_key(
    State(state): State<ControlState>,
    Path(owner): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Answer {
    let request: KeyRequest = body(bytes)?;
    if request.account_id.is_some() {
        return Err(ControlError::InvalidInput(
            "AccountId: the account is in the path".into(),
        ));
    }
    let principal = Principal {
        account: account(&owner)?,
        user: request
            .user_name
            .as_deref()
            .map(|name| RamUserName::parse("UserName", name))
            .transpose()?,
    };
    let (key, secret) = request.pair()?;
    let sealed = state.app.master_key.seal(&secret);
    state
        .store
        .create_access_key(&principal, &key, &sealed, OffsetDateTime::now_utc())
        .await?;
    ok(
        StatusCode::CREATED,
        &json!({
            "AccountId": principal.account.as_str(),
            "UserName": principal.user.as_ref().map(RamUserName::as_str),
            "AccessKeyId": key.as_str(),
            "AccessKeySecret": secret,
        }),
    )
}

/// `POST /accounts/{id}/users`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct UserRequest {
    user_name: String,
}

async fn create_user(
    State(state): State<ControlState>,
    Path(owner): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Answer {
    let request: UserRequest = body(bytes)?;
    let name = RamUserName::parse("UserName", &request.user_name)?;
    let user = state
        .store
        .create_ram_user(&account(&owner)?, &name, OffsetDateTime::now_utc())
        .await?;
    ok(
        StatusCode::CREATED,
        &json!({"AccountId": user.account.as_str(), "UserName": user.name.as_str(), "UserId": user.user_id}),
    )
}

/// What every instance or snapshot carries into the images made from it, with the admin
/// command's defaults.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SourceFields {
    ens_region_id: String,
    #[serde(default = "default_platform")]
    platform: String,
    #[serde(default = "default_os_type", rename = "OSType")]
    os_type: String,
    #[serde(default = "default_os_version", rename = "OSVersion")]
    os_version: String,
    #[serde(default = "default_architecture")]
    architecture: String,
    #[serde(default)]
    fail_build: Option<String>,
}

fn default_platform() -> String {
    "centos".into()
}
fn default_os_type() -> String {
    "linux".into()
}
fn default_os_version() -> String {
    "7.9".into()
}
fn default_architecture() -> String {
    "x86_64".into()
}
fn default_disk() -> u64 {
    40
}
fn default_compute_type() -> String {
    "ens_vm".into()
}

impl SourceFields {
    /// The API's own rules for what every image made from this source will carry.
    fn validate(&self) -> Result<(NodeId, Option<BuildFailure>), ControlError> {
        validate_short_name("Platform", &self.platform)?;
        validate_short_name("Architecture", &self.architecture)?;
        validate_text("OSVersion", &self.os_version)?;
        if self.os_type != "linux" && self.os_type != "windows" {
            return Err(ControlError::InvalidInput(format!(
                "OSType must be linux or windows, got {:?}",
                self.os_type
            )));
        }
        let failure = match self.fail_build.as_deref() {
            Some(text) => Some(BuildFailure::parse(text).ok_or_else(|| {
                ControlError::InvalidInput(format!("FailBuild must be pack or upload, got {text:?}"))
            })?),
            None => None,
        };
        Ok((NodeId::parse("EnsRegionId", &self.ens_region_id)?, failure))
    }
}

/// An ID as asked for, or the prefix and 25 random lower-case alphanumerics.
fn resource_id(field: &'static str, value: Option<String>, prefix: &str) -> Result<String, ControlError> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let id = value.unwrap_or_else(|| {
        let mut rng = rand::thread_rng();
        let suffix: String = (0..25)
            .map(|_| {
                char::from(
                    ALPHABET
                        .get(rng.gen_range(0..ALPHABET.len()))
                        .copied()
                        .unwrap_or(b'0'),
                )
            })
            .collect();
        format!("{prefix}{suffix}")
    });
    ens_domain::image::validate_resource_id(field, &id)?;
    Ok(id)
}

/// `POST /accounts/{id}/instances`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct InstanceRequest {
    #[serde(flatten)]
    source: SourceFields,
    #[serde(default)]
    instance_id: Option<String>,
    #[serde(default)]
    image_id: Option<String>,
    #[serde(default = "default_compute_type")]
    compute_type: String,
    #[serde(default = "default_disk")]
    system_disk_size: u64,
    #[serde(default)]
    data_disk_sizes: Vec<u64>,
}

async fn add_instance(
    State(state): State<ControlState>,
    Path(owner): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Answer {
    let request: InstanceRequest = body(bytes)?;
    let (node, build_failure) = request.source.validate()?;
    validate_compute_type("ComputeType", &request.compute_type)?;
    let instance = Instance {
        id: resource_id("InstanceId", request.instance_id, "i-")?,
        owner: account(&owner)?,
        node,
        image_id: request.image_id.as_deref().map(ImageId::parse).transpose()?,
        platform: request.source.platform,
        os_type: request.source.os_type,
        os_version: request.source.os_version,
        architecture: request.source.architecture,
        compute_type: request.compute_type,
        system_disk_gib: request.system_disk_size,
        data_disks_gib: request.data_disk_sizes,
        build_failure,
    };
    state.store.add_instance(&instance).await?;
    ok(
        StatusCode::CREATED,
        &json!({"InstanceId": instance.id, "AccountId": instance.owner.as_str(), "EnsRegionId": instance.node.as_str()}),
    )
}

/// `POST /accounts/{id}/snapshots`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SnapshotRequest {
    #[serde(flatten)]
    source: SourceFields,
    #[serde(default)]
    snapshot_id: Option<String>,
    #[serde(default)]
    instance_id: Option<String>,
    #[serde(default = "default_disk")]
    size: u64,
}

async fn add_snapshot(
    State(state): State<ControlState>,
    Path(owner): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Answer {
    let request: SnapshotRequest = body(bytes)?;
    let (node, build_failure) = request.source.validate()?;
    let snapshot = Snapshot {
        id: resource_id("SnapshotId", request.snapshot_id, "sp-")?,
        owner: account(&owner)?,
        node,
        instance_id: request.instance_id,
        platform: request.source.platform,
        os_type: request.source.os_type,
        os_version: request.source.os_version,
        architecture: request.source.architecture,
        size_gib: request.size,
        build_failure,
    };
    state.store.add_snapshot(&snapshot).await?;
    ok(
        StatusCode::CREATED,
        &json!({"SnapshotId": snapshot.id, "AccountId": snapshot.owner.as_str(), "EnsRegionId": snapshot.node.as_str()}),
    )
}

fn elapsed_us(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

async fn reset_all(State(state): State<ControlState>) -> Answer {
    let started = Instant::now();
    // The owner account is the first one made (at first start); it and its owner keys stay.
    let owner = state
        .store
        .accounts()
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ControlError::NotFound("no account: the store has no owner account".into()))?;
    // Back to the first start in one page copy when the store kept it and everything a reset
    // keeps is as it was then; otherwise by deleting.
    let copied = match &state.reset_point {
        Some(point) => state.store.reset_to(point).await?,
        None => None,
    };
    let summary = match copied {
        Some(summary) => summary,
        None => state.store.reset_all(&owner.id).await?,
    };
    let journal = state.app.journal.clear(None);
    let faults = state.app.faults.clear(None);
    state.app.build_clock.unfreeze(); // no build is left to restart: every custom image went
    tracing::info!(
        images = summary.images,
        accounts = summary.accounts,
        "control: store reset"
    );
    ok(
        StatusCode::OK,
        &json!({
            "OwnerAccountId": owner.id.as_str(),
            "ImagesRemoved": summary.images,
            "AccountsRemoved": summary.accounts,
            "JournalEntriesRemoved": journal,
            "FaultsRemoved": faults,
            "FromFirstStartCopy": copied.is_some(),
            "ElapsedUs": elapsed_us(started),
        }),
    )
}

async fn reset_account(State(state): State<ControlState>, Path(owner): Path<String>) -> Answer {
    let started = Instant::now();
    let id = account(&owner)?;
    let summary = state.store.reset_account(&id).await?;
    let journal = state.app.journal.clear(Some(id.as_str()));
    let faults = state.app.faults.clear(Some(id.as_str()));
    tracing::info!(account = %id, images = summary.images, "control: account reset");
    ok(
        StatusCode::OK,
        &json!({
            "AccountId": id.as_str(),
            "ImagesRemoved": summary.images,
            "JournalEntriesRemoved": journal,
            "FaultsRemoved": faults,
            "ElapsedUs": elapsed_us(started),
        }),
    )
}

async fn read_journal(
    State(state): State<ControlState>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Answer {
    let mut params = query(
        params,
        &["Action", "AccountId", "Outcome", "RequestId", "Since", "Limit"],
    )?;
    let since = params
        .remove("Since")
        .map(|text| {
            OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).map_err(|_| {
                ControlError::InvalidInput(format!("Since must be an RFC 3339 time, got {text:?}"))
            })
        })
        .transpose()?;
    let limit = match params.remove("Limit") {
        None => 100,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=JOURNAL_CAPACITY).contains(limit))
            .ok_or_else(|| {
                ControlError::InvalidInput(format!(
                    "Limit must be from 1 to {JOURNAL_CAPACITY}, got {text:?}"
                ))
            })?,
    };
    let entries = state.app.journal.query(&JournalQuery {
        action: params.remove("Action"),
        account_id: params.remove("AccountId"),
        outcome: params.remove("Outcome"),
        request_id: params.remove("RequestId"),
        since,
        limit,
    });
    ok(
        StatusCode::OK,
        &json!({"Entries": entries, "Capacity": JOURNAL_CAPACITY}),
    )
}

/// Answers a clear of the journal or of the fault rules, of one account (`AccountId`) or all.
fn clear_scoped(
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
    clear: impl FnOnce(Option<&str>) -> usize,
) -> Answer {
    let params = query(params, &["AccountId"])?;
    let removed = clear(params.get("AccountId").map(String::as_str));
    ok(StatusCode::OK, &json!({"Removed": removed}))
}

async fn clear_journal(
    State(state): State<ControlState>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Answer {
    clear_scoped(params, |account| state.app.journal.clear(account))
}

async fn list_faults(State(state): State<ControlState>) -> Answer {
    ok(StatusCode::OK, &json!({"Faults": state.app.faults.list()}))
}

async fn add_fault(State(state): State<ControlState>, bytes: Result<Bytes, BytesRejection>) -> Answer {
    let spec: FaultSpec = body(bytes)?;
    let rule = state
        .app
        .faults
        .add(spec)
        .map_err(|error| ControlError::InvalidInput(error.to_string()))?;
    tracing::info!(fault_id = rule.fault_id, action = %rule.spec.action, "control: fault rule added");
    let value = serde_json::to_value(&rule).map_err(|_| ControlError::Internal)?;
    ok(StatusCode::CREATED, &value)
}

async fn clear_faults(
    State(state): State<ControlState>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Answer {
    clear_scoped(params, |account| state.app.faults.clear(account))
}

async fn remove_fault(State(state): State<ControlState>, Path(id): Path<String>) -> Answer {
    let id: u64 = id
        .parse()
        .map_err(|_| ControlError::InvalidInput(format!("a fault ID is a number, got {id:?}")))?;
    if state.app.faults.remove(id) {
        ok(StatusCode::OK, &json!({"Removed": 1}))
    } else {
        Err(ControlError::NotFound(format!("no fault rule {id}")))
    }
}
