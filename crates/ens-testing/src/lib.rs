//! Test Rust code against ens-images in-process, as the Python `ens_images` fixture does for
//! Python code: [`EnsTestServer::start`] runs the real service on the caller's tokio runtime,
//! on `127.0.0.1:0`, over a fresh private store (what `ens-images serve --ephemeral` serves:
//! the built-in public catalog and a new owner account with a generated AccessKey), with its
//! control API on another `127.0.0.1:0` listener behind a generated token.
//!
//! The test gets the endpoint, the owner's key, a ready signed [`ens_client::Client`], and a
//! [`ControlClient`] to set the service up, reset it, read the journal of API calls and inject
//! faults. Nothing is shared between two servers (store, journal, fault rules, ports), so tests
//! that each start their own run in parallel; a start takes a few tens of milliseconds.
//!
//! In-process rather than a spawned binary because a Rust test then needs no build step and
//! no binary on the `PATH`, gets the service's own types, and the server stops with the test
//! (its tasks run on the test's runtime). The service is wired exactly as the binary wires
//! it: the store from `ens-store`, first-start setup from `ens_server::setup`, the API from
//! `ens_server::serve` and the control API from `ens_server::control`.

mod control;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ens_client::{AccessKeySecret, Client, ClientError, SignatureVersion};
use ens_objects::{BucketConfig, Buckets, ObjectError};
use ens_server::control::{ControlState, ControlToken};
use ens_server::secrets::{MasterKey, SecretError};
use ens_server::setup::{NewOwner, SetupError};
use ens_server::throttle::RateLimit;
use ens_server::transfers::{TransferSettings, Transfers};
use ens_server::{AppState, ServerConfig};
use ens_store::{Store, StoreError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use control::{
    AccountInfo, AccountResetSummary, ControlClient, ControlError, Credentials, Fault, FaultRule,
    JournalEntry, JournalFilter, NewAccessKey, NewAccount, RamUser, ResetSummary,
};
/// The signed client the server hands out, re-exported so that a test needs one dependency.
pub use ens_client;
pub use ens_server::faults::{FaultSpec, InjectedError, InjectedThrottle};

/// Why a test server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The directory that holds the private store could not be made.
    #[error("cannot create the store directory under {parent}: {source}")]
    Directory {
        /// Where it was to be made.
        parent: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be created.
    #[error("cannot create the ephemeral store: {0}")]
    Store(#[from] StoreError),
    /// The master key that seals AccessKey secrets was refused (a bug: it is generated).
    #[error("cannot make a master key: {0}")]
    MasterKey(#[from] SecretError),
    /// Loading the catalog or creating the owner account failed.
    #[error("first-start setup failed: {0}")]
    Setup(#[from] SetupError),
    /// The fresh store already had an owner, so the generated key would not work.
    #[error("the fresh store already had an owner account")]
    OwnerExists,
    /// A loopback port could not be bound.
    #[error("cannot listen on 127.0.0.1:0: {0}")]
    Bind(#[source] std::io::Error),
    /// The control client could not be built for the bound address.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The bucket configuration was refused.
    #[error("cannot open the buckets: {0}")]
    Buckets(#[from] ObjectError),
}

/// Why a test server did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    /// A listener failed while serving.
    #[error("the {listener} listener failed: {source}")]
    Serve {
        /// `API` or `control`.
        listener: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A server task panicked or was cancelled.
    #[error("the {listener} server task ended abnormally: {source}")]
    Task {
        /// `API` or `control`.
        listener: &'static str,
        /// The cause.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// How a test server is set up; [`EnsTestServer::start`] is `EnsTestServer::builder().start()`.
#[derive(Debug, Clone)]
#[must_use]
pub struct EnsTestServerBuilder {
    image_build_step: Duration,
    rate_limit: Option<RateLimit>,
    catalog: Option<String>,
    parent_dir: Option<PathBuf>,
    buckets: Option<PathBuf>,
}

impl Default for EnsTestServerBuilder {
    fn default() -> Self {
        Self {
            image_build_step: Duration::ZERO,
            rate_limit: None,
            catalog: None,
            parent_dir: None,
            buckets: None,
        }
    }
}

impl EnsTestServerBuilder {
    /// How long each build step of a new image (Creating, Packing, Uploading) lasts. Zero by
    /// default, so a created image is `Available` at once and tests need not wait; give a
    /// duration to test code that polls an image's status.
    pub fn image_build_step(mut self, step: Duration) -> Self {
        self.image_build_step = step;
        self
    }

    /// Throttle each AccessKey to `per_second` requests with bursts of `burst`, as
    /// `serve --rate-limit/--rate-burst` does. Off by default: a test that wants throttling
    /// at a chosen moment is better served by a [`Fault::throttle`].
    pub fn rate_limit(mut self, per_second: f64, burst: f64) -> Self {
        self.rate_limit = Some(RateLimit { per_second, burst });
        self
    }

    /// Serve this public catalog (a catalog document, as `serve --catalog` reads) instead of
    /// the built-in one; the built-in ENS nodes stay known.
    pub fn catalog(mut self, document: impl Into<String>) -> Self {
        self.catalog = Some(document.into());
        self
    }

    /// Read the buckets of `ImportImage` and `ExportImage` from this configuration file, as
    /// `serve --buckets` does. Without it, bucket `B` is the folder `B` under
    /// [`EnsTestServer::buckets_dir`], and image files stay in the server's own directory.
    pub fn buckets(mut self, config: impl Into<PathBuf>) -> Self {
        self.buckets = Some(config.into());
        self
    }

    /// Put the store's directory under `parent` instead of `/dev/shm` (or the temporary
    /// directory where there is no `/dev/shm`), e.g. to look at it after a failure.
    pub fn store_parent(mut self, parent: impl Into<PathBuf>) -> Self {
        self.parent_dir = Some(parent.into());
        self
    }

    /// Creates the store, loads the catalog, creates the owner account, binds both listeners
    /// and starts serving on the current tokio runtime. The server answers as soon as this
    /// returns: the listeners are bound, so no call can arrive too early.
    ///
    /// # Errors
    /// [`StartError`] says which step failed.
    pub async fn start(self) -> Result<EnsTestServer, StartError> {
        let parent = self.parent_dir.unwrap_or_else(Store::ephemeral_parent);
        let directory = tempfile::Builder::new()
            .prefix("ens-testing-")
            .tempdir_in(&parent)
            .map_err(|source| StartError::Directory { parent, source })?;
        let store = Store::temporary_in(directory.path()).await?;
        let master_key = MasterKey::parse(&MasterKey::generate())?;
        ens_server::setup::load_catalog(&store, self.catalog.as_deref()).await?;
        let owner = NewOwner::generate()?;
        if !owner.create_in(&store, &master_key).await? {
            return Err(StartError::OwnerExists);
        }
        let owner_account = owner.account_id().clone();
        let owner = Credentials::new(
            owner.account_id().as_str(),
            None,
            owner.access_key_id().as_str(),
            owner.expose_secret(),
        );

        let api_listener = bind_loopback().await?;
        let control_listener = bind_loopback().await?;
        let api_address = api_listener.local_addr().map_err(StartError::Bind)?;
        let control_address = control_listener.local_addr().map_err(StartError::Bind)?;
        let token = ControlToken::generate();
        let control = ControlClient::new(&format!("http://{control_address}"), token.expose())?;

        let config = ServerConfig {
            image_build_step: self.image_build_step,
            rate_limit: self.rate_limit,
            ..ServerConfig::default()
        };
        let buckets_dir = directory.path().join("buckets");
        std::fs::create_dir_all(&buckets_dir).map_err(|source| StartError::Directory {
            parent: directory.path().to_owned(),
            source,
        })?;
        let buckets =
            BucketConfig::load(self.buckets.as_deref(), directory.path()).and_then(Buckets::open)?;
        let state = AppState::new(Arc::new(store.clone()), master_key, config)
            .with_transfers(Transfers::new(buckets, TransferSettings::default()));
        // Built before the API serves: it turns the journal on, so the first call is recorded.
        // The store is at its first start: resets go back here in one page copy.
        let reset_point = store.reset_point(&owner_account).await?;
        let control_state =
            ControlState::new(state.clone(), store.clone(), token).with_reset_point(reset_point);
        let (stop, stopped) = watch::channel(());
        let control_task = tokio::spawn(ens_server::control::serve_control(
            control_listener,
            control_state,
            until_stopped(stopped.clone()),
        ));
        let api_task = tokio::spawn(ens_server::serve(
            api_listener,
            None,
            state,
            None,
            until_stopped(stopped),
        ));
        Ok(EnsTestServer {
            api_address,
            owner,
            control,
            stop: Some(stop),
            api_task: Some(api_task),
            control_task: Some(control_task),
            store,
            directory,
        })
    }
}

/// Binds `127.0.0.1:0`: a free port chosen by the system, so servers never collide.
async fn bind_loopback() -> Result<TcpListener, StartError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(StartError::Bind)
}

/// Ends when the server is told to stop: a send on the channel, or its sender dropped (so a
/// dropped [`EnsTestServer`] stops its listeners too).
async fn until_stopped(mut stopped: watch::Receiver<()>) {
    let _ = stopped.changed().await;
}

/// A running in-process ens-images: its endpoint, owner key, clients and control API.
///
/// Dropping it stops both listeners (in-flight calls finish) and removes the store's
/// directory at once; [`EnsTestServer::shutdown`] does the same and waits for the listeners
/// to stop, reporting a failure.
pub struct EnsTestServer {
    api_address: SocketAddr,
    owner: Credentials,
    control: ControlClient,
    stop: Option<watch::Sender<()>>,
    api_task: Option<JoinHandle<std::io::Result<()>>>,
    control_task: Option<JoinHandle<std::io::Result<()>>>,
    store: Store,
    /// Holds the store's own directory; removed when the server is dropped, whatever still
    /// holds a handle to the store.
    directory: tempfile::TempDir,
}

impl std::fmt::Debug for EnsTestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnsTestServer")
            .field("url", &self.url())
            .field("owner", &self.owner)
            .field("control", &self.control)
            .field("store_dir", &self.directory.path())
            .finish_non_exhaustive()
    }
}

impl EnsTestServer {
    /// Starts a server with the defaults: built-in catalog, images `Available` at once, no
    /// rate limit. See [`EnsTestServerBuilder::start`].
    ///
    /// # Errors
    /// [`StartError`] says which step failed.
    pub async fn start() -> Result<Self, StartError> {
        Self::builder().start().await
    }

    /// A builder, to change the defaults before starting.
    pub fn builder() -> EnsTestServerBuilder {
        EnsTestServerBuilder::default()
    }

    /// The API's `host:port` (`127.0.0.1:PORT`), as SDK configurations take an endpoint.
    #[must_use]
    pub fn endpoint(&self) -> String {
        self.api_address.to_string()
    }

    /// The API's URL, `http://127.0.0.1:PORT`, as [`ens_client::Client::new`] takes it.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.api_address)
    }

    /// The API's socket address.
    #[must_use]
    pub fn address(&self) -> SocketAddr {
        self.api_address
    }

    /// Where buckets live when no configuration names them: bucket `B` of any region is the
    /// folder `B` here, once a test makes it (no bucket exists until then).
    #[must_use]
    pub fn buckets_dir(&self) -> PathBuf {
        self.directory.path().join("buckets")
    }

    /// The owner account's ID and AccessKey: the account a first start creates.
    #[must_use]
    pub fn owner(&self) -> &Credentials {
        &self.owner
    }

    /// The owner account's ID.
    #[must_use]
    pub fn account_id(&self) -> &str {
        &self.owner.account_id
    }

    /// The owner's AccessKey ID.
    #[must_use]
    pub fn access_key_id(&self) -> &str {
        &self.owner.access_key_id
    }

    /// The owner's AccessKey secret, for clients built by hand (e.g. another SDK).
    #[must_use]
    pub fn access_key_secret(&self) -> &str {
        self.owner.access_key_secret()
    }

    /// A client of the API signed with the owner's key (V3, the Tea SDK's default).
    ///
    /// # Errors
    /// Never in practice: the endpoint is always a valid URL.
    pub fn client(&self) -> Result<Client, ClientError> {
        self.client_with(&self.owner, SignatureVersion::V3)
    }

    /// A client of the API signed (V3) with another key, e.g. one from
    /// [`ControlClient::create_account`] or [`ControlClient::create_access_key`].
    ///
    /// # Errors
    /// Never in practice: the endpoint is always a valid URL.
    pub fn client_for(&self, credentials: &Credentials) -> Result<Client, ClientError> {
        self.client_with(credentials, SignatureVersion::V3)
    }

    /// A client of the API signed with `credentials` and the chosen signature version (V1 is
    /// what the core SDK signs).
    ///
    /// # Errors
    /// Never in practice: the endpoint is always a valid URL.
    pub fn client_with(
        &self,
        credentials: &Credentials,
        version: SignatureVersion,
    ) -> Result<Client, ClientError> {
        Client::new(
            &self.url(),
            credentials.access_key_id.clone(),
            AccessKeySecret::new(credentials.access_key_secret().to_owned()),
            version,
        )
    }

    /// The control API's client: accounts, keys, resets, the journal, faults.
    #[must_use]
    pub fn control(&self) -> &ControlClient {
        &self.control
    }

    /// The control API's URL, `http://127.0.0.1:PORT`, for tools other than [`ControlClient`].
    #[must_use]
    pub fn control_url(&self) -> &str {
        self.control.url()
    }

    /// The control API's bearer token, for tools other than [`ControlClient`] (e.g. `curl`
    /// while debugging a test).
    #[must_use]
    pub fn control_token(&self) -> &str {
        self.control.token()
    }

    /// The store, for what the control API does not offer (the same store the service and
    /// `ens-images admin` work on).
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The directory that holds the store (under `/dev/shm` where there is one); it is
    /// removed when the server stops.
    #[must_use]
    pub fn store_dir(&self) -> &Path {
        self.directory.path()
    }

    /// Stops both listeners, waits for in-flight calls to finish (at most the service's
    /// drain timeout) and closes the store; the store's directory is gone when this returns.
    ///
    /// # Errors
    /// When a listener failed while serving or a server task panicked; the server is stopped
    /// and its directory removed all the same.
    pub async fn shutdown(mut self) -> Result<(), ShutdownError> {
        drop(self.stop.take());
        let api = join("API", self.api_task.take()).await;
        let control = join("control", self.control_task.take()).await;
        self.store.close().await;
        api.and(control)
    }
}

/// Waits for a server task and turns its end into a [`ShutdownError`] when it failed.
async fn join(
    listener: &'static str,
    task: Option<JoinHandle<std::io::Result<()>>>,
) -> Result<(), ShutdownError> {
    let Some(task) = task else {
        return Ok(());
    };
    match task.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(ShutdownError::Serve { listener, source }),
        Err(source) => Err(ShutdownError::Task { listener, source }),
    }
}

impl Drop for EnsTestServer {
    fn drop(&mut self) {
        // Dropping the sender ends both listeners' shutdown futures; the tasks then finish
        // on their own (or with the runtime). The directory goes with `self.directory`.
        drop(self.stop.take());
    }
}
