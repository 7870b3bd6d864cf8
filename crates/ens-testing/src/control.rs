//! A client of the control API (JSON over HTTP, bearer token): typed methods for the calls
//! tests make most (accounts, keys, resets, the journal, faults) and [`ControlClient::call`]
//! for any other route.
//!
//! Fault rules are sent as the server's own [`FaultSpec`], so the client cannot write a rule
//! the server reads differently. Answers are read tolerantly (a field the server adds later
//! is ignored) but every field a type names must be there, so a renamed field fails loudly.

use std::time::Duration;

use bytes::Bytes;
use ens_client::AccessKeySecret;
pub use ens_server::faults::FaultRule;
use ens_server::faults::{FaultSpec, InjectedError, InjectedThrottle};
pub use ens_server::journal::JournalEntry;
use http::{header, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use zeroize::Zeroizing;

/// How long one control call may take before it is given up: long enough for a reset of a
/// large store, short enough that a hung server fails the test instead of hanging it.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The control URL is not `http://host:port`.
    #[error("invalid control URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The control API refused the call (its `Code` and `Message`).
    #[error("the control API answered HTTP {status} {code}: {message}")]
    Refused {
        /// The HTTP status, e.g. 401 or 404.
        status: u16,
        /// The `Code`: `Unauthorized`, `InvalidInput`, `NotFound`, `Conflict`, ...
        code: String,
        /// What to change.
        message: String,
    },
    /// The request could not be built (e.g. a token with characters a header cannot carry).
    #[error("cannot build the control request: {0}")]
    Request(#[from] http::Error),
    /// Connecting or sending failed.
    #[error("control API transport error: {0}")]
    Transport(#[from] hyper_util::client::legacy::Error),
    /// The connection failed while the answer was being read.
    #[error("error reading the control answer: {0}")]
    Body(#[from] hyper::Error),
    /// The call took longer than its timeout (30 s).
    #[error("the control call took longer than {0:?}")]
    Timeout(Duration),
    /// The request body could not be written as JSON.
    #[error("cannot write the control request body: {0}")]
    Encode(#[source] serde_json::Error),
    /// A successful answer that does not have the expected shape.
    #[error("unexpected control answer (HTTP {status}): {source}")]
    Decode {
        /// The HTTP status.
        status: u16,
        /// What did not match.
        #[source]
        source: serde_json::Error,
    },
}

impl ControlError {
    /// The HTTP status when the control API answered with an error.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } | Self::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The control API's error `Code` (e.g. `NotFound`) when it refused the call.
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// An AccessKey with the account (and RAM user) it belongs to, as the control API returns a
/// new one. `Debug` never shows the secret; [`Credentials::access_key_secret`] reads it.
#[derive(Clone, Deserialize)]
#[serde(from = "CredentialsWire")]
pub struct Credentials {
    /// The account.
    pub account_id: String,
    /// The RAM user the key belongs to; `None` for the account's own (owner) key.
    pub user_name: Option<String>,
    /// The AccessKey ID.
    pub access_key_id: String,
    access_key_secret: Zeroizing<String>,
}

/// [`Credentials`] as the wire has them, before the secret is wrapped.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CredentialsWire {
    account_id: String,
    #[serde(default)]
    user_name: Option<String>,
    access_key_id: String,
    access_key_secret: String,
}

impl From<CredentialsWire> for Credentials {
    fn from(wire: CredentialsWire) -> Self {
        Self {
            account_id: wire.account_id,
            user_name: wire.user_name,
            access_key_id: wire.access_key_id,
            access_key_secret: Zeroizing::new(wire.access_key_secret),
        }
    }
}

impl Credentials {
    /// Credentials from their parts, e.g. for a key the test chose itself.
    #[must_use]
    pub fn new(
        account_id: impl Into<String>,
        user_name: Option<String>,
        access_key_id: impl Into<String>,
        access_key_secret: impl Into<String>,
    ) -> Self {
        Self {
            account_id: account_id.into(),
            user_name,
            access_key_id: access_key_id.into(),
            access_key_secret: Zeroizing::new(access_key_secret.into()),
        }
    }

    /// The AccessKey secret: the one reader, so every use is easy to find.
    #[must_use]
    pub fn access_key_secret(&self) -> &str {
        &self.access_key_secret
    }

    /// The secret as `ens-client` signs with it.
    #[must_use]
    pub fn secret(&self) -> AccessKeySecret {
        AccessKeySecret::new(self.access_key_secret.to_string())
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("account_id", &self.account_id)
            .field("user_name", &self.user_name)
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .finish()
    }
}

/// What [`ControlClient::create_account`] asks for; every field left `None` is generated.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NewAccount {
    /// A 16-digit account ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The owner AccessKey's ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// The owner AccessKey's secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_secret: Option<String>,
}

/// What [`ControlClient::create_access_key`] asks for; every field left `None` is generated,
/// and without `user_name` the key is the account owner's.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NewAccessKey {
    /// A RAM user of the account (made with [`ControlClient::create_user`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// The AccessKey's ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// The AccessKey's secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_secret: Option<String>,
}

/// An account as `GET /accounts` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountInfo {
    /// The account.
    pub account_id: String,
    /// Its owner AccessKeys (not its RAM users').
    pub access_key_ids: Vec<String>,
}

/// A RAM user as `POST /accounts/ID/users` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RamUser {
    /// The account it belongs to.
    pub account_id: String,
    /// Its name.
    pub user_name: String,
    /// Its numeric ID.
    pub user_id: String,
}

/// What `POST /reset` removed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResetSummary {
    /// The account kept, with its owner keys.
    pub owner_account_id: String,
    /// Custom images removed.
    pub images_removed: u64,
    /// Accounts removed.
    pub accounts_removed: u64,
    /// Journal entries forgotten.
    pub journal_entries_removed: u64,
    /// Fault rules removed.
    pub faults_removed: u64,
    /// Time the reset took on the server, in microseconds.
    pub elapsed_us: u64,
}

/// What `POST /accounts/ID/reset` removed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountResetSummary {
    /// The account emptied.
    pub account_id: String,
    /// Its custom images removed.
    pub images_removed: u64,
    /// Its journal entries forgotten.
    pub journal_entries_removed: u64,
    /// The fault rules scoped to it removed.
    pub faults_removed: u64,
    /// Time the reset took on the server, in microseconds.
    pub elapsed_us: u64,
}

/// Which journal entries [`ControlClient::journal`] returns; every filter set must match.
/// With none, the latest 100 calls.
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use]
pub struct JournalFilter {
    action: Option<String>,
    account_id: Option<String>,
    outcome: Option<String>,
    request_id: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

impl JournalFilter {
    /// No filter: the latest 100 calls.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only calls of this action (e.g. `DescribeImages`).
    pub fn action(mut self, action: impl Into<String>) -> Self {
        self.action = Some(action.into());
        self
    }

    /// Only calls authenticated in this account.
    pub fn account_id(mut self, account_id: impl Into<String>) -> Self {
        self.account_id = Some(account_id.into());
        self
    }

    /// Only calls with this outcome: `Success` or an error code.
    pub fn outcome(mut self, outcome: impl Into<String>) -> Self {
        self.outcome = Some(outcome.into());
        self
    }

    /// Only the call answered with this RequestId.
    pub fn request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// Only calls answered at or after this time (RFC 3339).
    pub fn since(mut self, since: impl Into<String>) -> Self {
        self.since = Some(since.into());
        self
    }

    /// At most this many (1 to 10 000; the latest ones, still oldest first).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    fn query(&self) -> Vec<(&'static str, String)> {
        [
            ("Action", self.action.clone()),
            ("AccountId", self.account_id.clone()),
            ("Outcome", self.outcome.clone()),
            ("RequestId", self.request_id.clone()),
            ("Since", self.since.clone()),
            ("Limit", self.limit.map(|limit| limit.to_string())),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|value| (name, value)))
        .collect()
    }
}

/// A fault rule to add: what it answers, then which calls it acts on. Built from one of
/// [`Fault::error`], [`Fault::throttle`] or [`Fault::latency`]; without
/// [`count`](Fault::count) or [`probability`](Fault::probability) it acts on every matching
/// call until removed.
#[derive(Debug, Clone)]
#[must_use]
pub struct Fault(FaultSpec);

/// Milliseconds of `duration`, saturating (the server refuses what is out of range).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Fault {
    fn on(action: &str) -> FaultSpec {
        FaultSpec {
            action: action.to_owned(),
            account_id: None,
            access_key_id: None,
            image_id: None,
            error: None,
            throttle: None,
            latency_ms: None,
            count: None,
            probability: None,
        }
    }

    /// Calls of `action` (or `*`) are answered with the cloud error `code` and `http_status`
    /// (400 to 599), as ENS itself would answer them.
    pub fn error(action: &str, code: &str, http_status: u16) -> Self {
        Self(FaultSpec {
            error: Some(InjectedError {
                code: code.to_owned(),
                http_status,
                message: None,
            }),
            ..Self::on(action)
        })
    }

    /// Like [`Fault::error`], with this `Message` instead of the default one.
    pub fn error_with_message(action: &str, code: &str, http_status: u16, message: &str) -> Self {
        Self(FaultSpec {
            error: Some(InjectedError {
                code: code.to_owned(),
                http_status,
                message: Some(message.to_owned()),
            }),
            ..Self::on(action)
        })
    }

    /// Calls of `action` (or `*`) are answered `Throttling.User`, asking to retry after
    /// `retry_after` (whole milliseconds, at least 1).
    pub fn throttle(action: &str, retry_after: Duration) -> Self {
        Self(FaultSpec {
            throttle: Some(InjectedThrottle {
                retry_after_ms: millis(retry_after),
            }),
            ..Self::on(action)
        })
    }

    /// Calls of `action` (or `*`) wait `latency` (at most 60 s), then go on as usual.
    pub fn latency(action: &str, latency: Duration) -> Self {
        Self(FaultSpec {
            latency_ms: Some(millis(latency)),
            ..Self::on(action)
        })
    }

    /// Also wait `latency` before answering the error or throttling.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.0.latency_ms = Some(millis(latency));
        self
    }

    /// Act on the next `count` matching calls, then go away.
    pub fn count(mut self, count: u64) -> Self {
        self.0.count = Some(count);
        self
    }

    /// Act on each matching call with this probability (above 0, at most 1).
    pub fn probability(mut self, probability: f64) -> Self {
        self.0.probability = Some(probability);
        self
    }

    /// Only calls authenticated in this account.
    pub fn account_id(mut self, account_id: impl Into<String>) -> Self {
        self.0.account_id = Some(account_id.into());
        self
    }

    /// Only calls signed with this AccessKey.
    pub fn access_key_id(mut self, access_key_id: impl Into<String>) -> Self {
        self.0.access_key_id = Some(access_key_id.into());
        self
    }

    /// Only calls whose `ImageId` parameter is this image.
    pub fn image_id(mut self, image_id: impl Into<String>) -> Self {
        self.0.image_id = Some(image_id.into());
        self
    }

    /// The rule as the control API takes it.
    #[must_use]
    pub fn spec(&self) -> &FaultSpec {
        &self.0
    }
}

impl From<Fault> for FaultSpec {
    fn from(fault: Fault) -> Self {
        fault.0
    }
}

/// A client of one server's control API. Cheap to clone (clones share the connection pool);
/// `Debug` never shows the token.
#[derive(Clone)]
pub struct ControlClient {
    http: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
    url: String,
    token: Zeroizing<String>,
}

impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlClient")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The JSON bodies of answers that are a list or a count under one field.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Accounts {
    accounts: Vec<AccountInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entries {
    entries: Vec<JournalEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Faults {
    faults: Vec<FaultRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Removed {
    removed: u64,
}

/// Percent-encodes one path segment (an account ID or a user name chosen by a test), so it
/// cannot change the route.
fn segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// `?name=value&...` for the filters that are set, or nothing.
fn query_string(params: &[(&str, String)]) -> String {
    if params.is_empty() {
        return String::new();
    }
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        query.append_pair(name, value);
    }
    format!("?{}", query.finish())
}

impl ControlClient {
    /// A client of the control API at `url` (`http://host:port`, as `ens-images serve`
    /// prints it on its `control on` line) with `token`. Works as well with a server in
    /// another process.
    ///
    /// # Errors
    /// [`ControlError::InvalidUrl`] when `url` is not such a URL.
    pub fn new(url: &str, token: &str) -> Result<Self, ControlError> {
        let invalid = |reason| ControlError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let trimmed = url.trim_end_matches('/');
        let uri: Uri = trimmed
            .parse()
            .map_err(|_| invalid("not a URL (expected http://host:port)"))?;
        if uri.scheme_str() != Some("http") {
            return Err(invalid("only http:// is supported"));
        }
        if uri.authority().is_none() {
            return Err(invalid("no host"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(invalid(
                "the control API lives at the root: give no path or query",
            ));
        }
        let http =
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        Ok(Self {
            http,
            url: trimmed.to_owned(),
            token: Zeroizing::new(token.to_owned()),
        })
    }

    /// The control API's URL, without a trailing `/`.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bearer token this client sends.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// One call to any route (`path` with its query, e.g. `/journal?Limit=5`), for routes
    /// without a typed method; returns the JSON answer.
    ///
    /// # Errors
    /// [`ControlError::Refused`] with the API's `Code` and `Message`; a transport failure or
    /// timeout; an answer that is not JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ControlError> {
        self.request(method, path, body).await
    }

    async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, ControlError> {
        let bytes = match body {
            Some(value) => Bytes::from(serde_json::to_vec(value).map_err(ControlError::Encode)?),
            None => Bytes::new(),
        };
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token.as_str()))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(bytes))?;
        let exchange = async {
            let response = self.http.request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, ControlError>((status, body))
        };
        let (status, body) = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| ControlError::Timeout(CALL_TIMEOUT))??;
        if !(200..300).contains(&status) {
            return Err(refusal(status, &body));
        }
        serde_json::from_slice(&body).map_err(|source| ControlError::Decode { status, source })
    }

    /// Every account with its owner AccessKey IDs (the owner account first).
    ///
    /// # Errors
    /// See [`ControlClient::call`].
    pub async fn accounts(&self) -> Result<Vec<AccountInfo>, ControlError> {
        let answer: Accounts = self.request(Method::GET, "/accounts", None).await?;
        Ok(answer.accounts)
    }

    /// A new account with one owner AccessKey; IDs and the secret not given are generated.
    ///
    /// # Errors
    /// `Conflict` when a chosen ID is taken, `InvalidInput` for a malformed one; see
    /// [`ControlClient::call`].
    pub async fn create_account(&self, account: &NewAccount) -> Result<Credentials, ControlError> {
        let body = serde_json::to_value(account).map_err(ControlError::Encode)?;
        self.request(Method::POST, "/accounts", Some(&body)).await
    }

    /// A new AccessKey for the account's owner, or for one of its RAM users.
    ///
    /// # Errors
    /// `NotFound` for an unknown account or user; see [`ControlClient::call`].
    pub async fn create_access_key(
        &self,
        account_id: &str,
        key: &NewAccessKey,
    ) -> Result<Credentials, ControlError> {
        let body = serde_json::to_value(key).map_err(ControlError::Encode)?;
        let path = format!("/accounts/{}/access-keys", segment(account_id));
        self.request(Method::POST, &path, Some(&body)).await
    }

    /// A RAM user of the account (with no rights until a policy is attached).
    ///
    /// # Errors
    /// `NotFound` for an unknown account, `Conflict` for a taken name; see
    /// [`ControlClient::call`].
    pub async fn create_user(&self, account_id: &str, user_name: &str) -> Result<RamUser, ControlError> {
        let path = format!("/accounts/{}/users", segment(account_id));
        let body = json!({ "UserName": user_name });
        self.request(Method::POST, &path, Some(&body)).await
    }

    /// Registers an instance CreateImage can capture; `instance` holds the fields the README
    /// lists (`EnsRegionId` required; `InstanceId`, `ImageId`, `Platform`, ...). Returns the
    /// answer, whose `InstanceId` is the instance's.
    ///
    /// # Errors
    /// `InvalidInput` for a field out of its rules; see [`ControlClient::call`].
    pub async fn add_instance(&self, account_id: &str, instance: &Value) -> Result<Value, ControlError> {
        let path = format!("/accounts/{}/instances", segment(account_id));
        self.request(Method::POST, &path, Some(instance)).await
    }

    /// Registers a snapshot CreateImage can turn into an image; `snapshot` holds the fields
    /// the README lists (`EnsRegionId` required). Returns the answer with its `SnapshotId`.
    ///
    /// # Errors
    /// `InvalidInput` for a field out of its rules; see [`ControlClient::call`].
    pub async fn add_snapshot(&self, account_id: &str, snapshot: &Value) -> Result<Value, ControlError> {
        let path = format!("/accounts/{}/snapshots", segment(account_id));
        self.request(Method::POST, &path, Some(snapshot)).await
    }

    /// Everything back to a first start: the catalog and the owner account with its owner
    /// keys stay; every other account, custom image, share, instance, snapshot, RAM user and
    /// policy goes, and the journal and fault rules are cleared.
    ///
    /// # Errors
    /// See [`ControlClient::call`].
    pub async fn reset(&self) -> Result<ResetSummary, ControlError> {
        self.request(Method::POST, "/reset", None).await
    }

    /// Empties one account (its images, shares, instances, snapshots, RAM users, policies,
    /// journal entries and scoped fault rules); the account and its owner keys stay, and other
    /// accounts are untouched.
    ///
    /// # Errors
    /// `NotFound` for an unknown account; see [`ControlClient::call`].
    pub async fn reset_account(&self, account_id: &str) -> Result<AccountResetSummary, ControlError> {
        let path = format!("/accounts/{}/reset", segment(account_id));
        self.request(Method::POST, &path, None).await
    }

    /// The answered API calls that match `filter`, oldest first.
    ///
    /// # Errors
    /// `InvalidInput` for a malformed `since` or a `limit` out of range; see
    /// [`ControlClient::call`].
    pub async fn journal(&self, filter: JournalFilter) -> Result<Vec<JournalEntry>, ControlError> {
        let path = format!("/journal{}", query_string(&filter.query()));
        let answer: Entries = self.request(Method::GET, &path, None).await?;
        Ok(answer.entries)
    }

    /// Forgets the journal, or one account's entries; returns how many went.
    ///
    /// # Errors
    /// See [`ControlClient::call`].
    pub async fn clear_journal(&self, account_id: Option<&str>) -> Result<u64, ControlError> {
        self.remove_scoped("/journal", account_id).await
    }

    /// Adds a fault rule (a [`Fault`], or a raw [`FaultSpec`]); returns it with its
    /// `FaultId`.
    ///
    /// # Errors
    /// `InvalidInput` naming the field when the server refuses the rule; see
    /// [`ControlClient::call`].
    pub async fn add_fault(&self, fault: impl Into<FaultSpec>) -> Result<FaultRule, ControlError> {
        let body = serde_json::to_value(fault.into()).map_err(ControlError::Encode)?;
        self.request(Method::POST, "/faults", Some(&body)).await
    }

    /// The rules set, in the order they are checked, with how often each acted.
    ///
    /// # Errors
    /// See [`ControlClient::call`].
    pub async fn faults(&self) -> Result<Vec<FaultRule>, ControlError> {
        let answer: Faults = self.request(Method::GET, "/faults", None).await?;
        Ok(answer.faults)
    }

    /// Removes every rule, or those scoped to one account; returns how many went.
    ///
    /// # Errors
    /// See [`ControlClient::call`].
    pub async fn clear_faults(&self, account_id: Option<&str>) -> Result<u64, ControlError> {
        self.remove_scoped("/faults", account_id).await
    }

    /// Removes one rule.
    ///
    /// # Errors
    /// `NotFound` when no rule has this ID; see [`ControlClient::call`].
    pub async fn remove_fault(&self, fault_id: u64) -> Result<(), ControlError> {
        let _: Removed = self
            .request(Method::DELETE, &format!("/faults/{fault_id}"), None)
            .await?;
        Ok(())
    }

    /// Puts a custom image of `account_id` straight into the store, in any `Status`
    /// (`ImageName` and `EnsRegionIds` required; the other fields as README lists them).
    ///
    /// # Errors
    /// `InvalidInput` for a field the API's rules refuse, `NotFound` for an unknown account
    /// or node; see [`ControlClient::call`].
    pub async fn add_image(&self, account_id: &str, image: &Value) -> Result<Value, ControlError> {
        let path = format!("/accounts/{}/images", segment(account_id));
        self.request(Method::POST, &path, Some(image)).await
    }

    /// The state document of everything, or of one account (the `--seed` format). It holds
    /// AccessKey secrets in clear.
    ///
    /// # Errors
    /// `NotFound` for an unknown account; see [`ControlClient::call`].
    pub async fn export_state(&self, account_id: Option<&str>) -> Result<Value, ControlError> {
        let params: Vec<(&str, String)> = account_id
            .map(|account| ("AccountId", account.to_owned()))
            .into_iter()
            .collect();
        self.request(Method::GET, &format!("/state{}", query_string(&params)), None)
            .await
    }

    /// Replaces everything (or one account) with the state `document`, all or nothing.
    ///
    /// # Errors
    /// `InvalidInput`, `NotFound` or `Conflict` for a document the store refuses (then
    /// nothing changed); see [`ControlClient::call`].
    pub async fn import_state(
        &self,
        document: &Value,
        account_id: Option<&str>,
    ) -> Result<Value, ControlError> {
        let params: Vec<(&str, String)> = account_id
            .map(|account| ("AccountId", account.to_owned()))
            .into_iter()
            .collect();
        self.request(
            Method::PUT,
            &format!("/state{}", query_string(&params)),
            Some(document),
        )
        .await
    }

    /// Keeps the state of everything (or of one account) in the server as `name`, to roll
    /// back to after each test.
    ///
    /// # Errors
    /// `InvalidInput` for a bad name, `Conflict` when 64 snapshots are kept; see
    /// [`ControlClient::call`].
    pub async fn take_snapshot(&self, name: &str, account_id: Option<&str>) -> Result<Value, ControlError> {
        let mut body = serde_json::json!({"Name": name});
        if let (Some(account), Some(fields)) = (account_id, body.as_object_mut()) {
            fields.insert("AccountId".into(), Value::String(account.to_owned()));
        }
        self.request(Method::POST, "/snapshots", Some(&body)).await
    }

    /// The image's import and latest export as recorded (`Kind`, `State`, `Reason`,
    /// `Attempts`, `Objects`, ...): where a test reads why an import failed, which no API
    /// response model has a field for.
    ///
    /// # Errors
    /// `NotFound` for an ID that cannot be an image's; see [`ControlClient::call`].
    pub async fn image_transfers(&self, image_id: &str) -> Result<Value, ControlError> {
        let path = format!("/images/{}/transfers", segment(image_id));
        self.request(Method::GET, &path, None).await
    }

    /// Puts the store (or the snapshot's account) back as it was when `name` was taken.
    ///
    /// # Errors
    /// `NotFound` for an unknown snapshot; see [`ControlClient::call`].
    pub async fn restore_snapshot(&self, name: &str) -> Result<Value, ControlError> {
        let path = format!("/snapshots/{}/restore", segment(name));
        self.request(Method::POST, &path, None).await
    }

    async fn remove_scoped(&self, route: &str, account_id: Option<&str>) -> Result<u64, ControlError> {
        let params: Vec<(&str, String)> = account_id
            .map(|account| ("AccountId", account.to_owned()))
            .into_iter()
            .collect();
        let path = format!("{route}{}", query_string(&params));
        let answer: Removed = self.request(Method::DELETE, &path, None).await?;
        Ok(answer.removed)
    }
}

/// The error of a refused call, from the API's `{"Code", "Message"}` body (or the raw body
/// when it is not one).
fn refusal(status: u16, body: &[u8]) -> ControlError {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Envelope {
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(envelope) => ControlError::Refused {
            status,
            code: envelope.code,
            message: envelope.message,
        },
        Err(_) => ControlError::Refused {
            status,
            code: String::new(),
            message: String::from_utf8_lossy(body).chars().take(512).collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_plain_http_at_the_root() {
        for good in ["http://127.0.0.1:1", "http://127.0.0.1:1/", "http://localhost"] {
            assert!(ControlClient::new(good, "t").is_ok(), "{good}");
        }
        for bad in [
            "127.0.0.1:1",
            "https://127.0.0.1:1",
            "http://127.0.0.1:1/x",
            "",
            "http://h/?a=b",
        ] {
            assert!(
                matches!(ControlClient::new(bad, "t"), Err(ControlError::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn filters_become_the_query_and_values_are_encoded() {
        assert_eq!(query_string(&JournalFilter::new().query()), "");
        let filter = JournalFilter::new()
            .action("DescribeImages")
            .since("2024-01-01T00:00:00+08:00")
            .limit(5);
        assert_eq!(
            query_string(&filter.query()),
            "?Action=DescribeImages&Since=2024-01-01T00%3A00%3A00%2B08%3A00&Limit=5"
        );
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn a_fault_is_the_rule_the_server_reads() {
        let fault = Fault::error("DescribeImages", "ServiceUnavailable", 503)
            .with_latency(Duration::from_millis(20))
            .count(2)
            .account_id("1234567890123456");
        let sent = serde_json::to_value(FaultSpec::from(fault)).unwrap();
        let read: FaultSpec = serde_json::from_value(sent).unwrap();
        read.validate().unwrap();
        let error = read.error.unwrap();
        assert_eq!(
            (error.code.as_str(), error.http_status),
            ("ServiceUnavailable", 503)
        );
        assert_eq!(read.latency_ms, Some(20));
        assert_eq!(read.count, Some(2));
        assert_eq!(read.account_id.as_deref(), Some("1234567890123456"));

        let throttle = Fault::throttle("*", Duration::from_secs(2)).probability(0.5);
        assert_eq!(
            throttle.spec().throttle.as_ref().map(|t| t.retry_after_ms),
            Some(2000)
        );
        assert_eq!(throttle.spec().probability, Some(0.5));
    }

    #[test]
    fn credentials_never_show_their_secret() {
        let credentials = Credentials::new("1", None, "LTAIabc", "s3cret-value");
        let printed = format!("{credentials:?}");
        assert!(
            !printed.contains("s3cret-value") && printed.contains("LTAIabc"),
            "{printed}"
        );
        assert_eq!(credentials.access_key_secret(), "s3cret-value");
        let client = ControlClient::new("http://127.0.0.1:1", "tok3n-value").unwrap();
        assert!(!format!("{client:?}").contains("tok3n-value"));
    }

    #[test]
    fn refusals_keep_the_code_and_message_or_the_raw_body() {
        let error = refusal(401, br#"{"Code": "Unauthorized", "Message": "send the token"}"#);
        assert_eq!(error.status(), Some(401));
        assert_eq!(error.code(), Some("Unauthorized"));
        assert!(error.to_string().contains("send the token"));
        let raw = refusal(502, b"bad gateway");
        assert_eq!(raw.code(), Some(""));
        assert!(raw.to_string().contains("bad gateway"));
    }
}
