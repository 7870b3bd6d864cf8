//! The HTTP front of ens-images.
//!
//! Every request runs one pipeline, top to bottom: parse the call (cheap, no secrets) and read
//! its operation's parameters once (the `operation` module), look up the AccessKey, verify
//! the signature, the clock and the nonce, authorize the operation, then dispatch it and
//! render the result or the error in the caller's format. A parameter error waits in the
//! operation until dispatch, so it is answered only to an authenticated, authorized caller,
//! as the cloud orders its checks. Errors of every layer meet in [`error::ServerError`],
//! which maps them to the wire once.

mod audit;
mod auth;
mod authz;
pub mod batch;
pub mod build_clock;
pub mod catalog;
mod connections;
pub mod control;
pub mod error;
pub mod faults;
mod handler;
pub mod journal;
pub mod metrics;
pub mod nonces;
mod operation;
mod ops;
pub mod secrets;
pub mod setup;
pub mod throttle;
pub mod transfers;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ens_store::{AdminStore, RequestStore};
use time::OffsetDateTime;
use tokio::net::TcpListener;

pub use connections::ConnectionLimits;
pub use handler::router;
use secrets::MasterKey;
use throttle::{RateLimit, Throttle};

/// Reads the current time; injected so tests can pin the clock.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// Settings of the HTTP front.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Reported as `HostId` in error bodies.
    pub host_id: String,
    /// Largest accepted request body, in bytes; bounds memory per request.
    pub body_limit: usize,
    /// How long a used SignatureNonce is remembered; at least twice the 15-minute clock window.
    pub nonce_window: Duration,
    /// How long each build step of a new image (Creating, Packing, Uploading) lasts; zero
    /// makes images `Available` at once.
    pub image_build_step: Duration,
    /// Per-AccessKey request rate; `None` serves every request.
    pub rate_limit: Option<RateLimit>,
    /// Serve `/bench/ceiling`, the fixed answer benchmarks compare the API with; off in
    /// production, as it answers without authentication.
    pub bench_ceiling: bool,
    /// Timeouts and caps that keep cheap clients from holding the service.
    pub connections: ConnectionLimits,
    /// Refusals before authentication (unknown key, bad signature, stale timestamp) allowed
    /// per source address; past it, that address is answered `Throttling.User` before any
    /// key lookup until its bucket refills.
    pub refusal_limit: RateLimit,
    /// Refusals before authentication recorded one by one in each 10-second period; the
    /// rest are counted per source address, action and outcome, one row per count.
    pub audit_refusals_per_period: u32,
    /// How long audit records are kept; `None` keeps them forever.
    pub audit_retention: Option<Duration>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host_id: "ens.aliyuncs.com".into(),
            body_limit: 1024 * 1024,
            nonce_window: Duration::from_secs(30 * 60),
            image_build_step: Duration::from_secs(2),
            rate_limit: None,
            bench_ceiling: false,
            connections: ConnectionLimits::default(),
            refusal_limit: RateLimit {
                per_second: 20.0,
                burst: 200.0,
            },
            audit_refusals_per_period: 20,
            audit_retention: Some(Duration::from_secs(90 * 24 * 3600)),
        }
    }
}

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The one store.
    pub store: Arc<dyn RequestStore>,
    /// Settings.
    pub config: Arc<ServerConfig>,
    /// The clock.
    pub clock: Clock,
    /// Opens the AccessKey secrets the store keeps sealed.
    pub master_key: Arc<MasterKey>,
    /// Per-key rate limiting, when configured.
    pub throttle: Option<Arc<Throttle>>,
    /// Unauthenticated refusals per source address.
    pub refusals: Arc<Throttle>,
    /// Whether requests arrive over TLS (`acs:SecureTransport`).
    pub secure_transport: bool,
    /// Whether `/metrics` has a listener of its own, away from the API's clients.
    pub metrics_apart: bool,
    /// When the store lost its record of used nonces at open: the moment requests must be
    /// signed after, so none answered before can be replayed.
    pub replay_guard_since: Option<OffsetDateTime>,
    /// Request and store metrics for `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// Records used SignatureNonces, many requests per store write.
    pub nonces: Arc<nonces::NonceLedger>,
    /// Records audit entries, many requests per store write.
    pub audit: Arc<audit::AuditLog>,
    /// The calls answered, for the control API (recording only while it is served).
    pub journal: Arc<journal::Journal>,
    /// Fault rules set through the control API.
    pub faults: Arc<faults::Faults>,
    /// RAM policy documents parsed once each.
    pub parsed_policies: Arc<authz::ParsedPolicies>,
    /// Whether image builds move on by themselves (per process; see [`build_clock`]).
    pub build_clock: Arc<build_clock::BuildClock>,
    /// Object storage for image bytes and the transfer worker's settings; without it,
    /// `ImportImage` and `ExportImage` are refused (see [`AppState::with_transfers`]).
    pub transfers: Option<Arc<transfers::Transfers>>,
}

impl AppState {
    /// State with the system clock.
    #[must_use]
    pub fn new(store: Arc<dyn RequestStore>, master_key: MasterKey, config: ServerConfig) -> Self {
        let replay_guard_since = store.nonce_history_lost().then(OffsetDateTime::now_utc);
        let keep_mark_until = replay_guard_since.map(|since| since + config.nonce_window);
        Self {
            nonces: Arc::new(nonces::NonceLedger::new(Arc::clone(&store), keep_mark_until)),
            audit: Arc::new(audit::AuditLog::new(
                Arc::clone(&store),
                config.audit_refusals_per_period,
            )),
            store,
            throttle: config.rate_limit.map(|limit| Arc::new(Throttle::new(limit))),
            refusals: Arc::new(Throttle::new(config.refusal_limit)),
            config: Arc::new(config),
            clock: Arc::new(OffsetDateTime::now_utc),
            master_key: Arc::new(master_key),
            secure_transport: false,
            metrics_apart: false,
            replay_guard_since,
            metrics: Arc::new(metrics::Metrics::new()),
            journal: Arc::new(journal::Journal::default()),
            faults: Arc::new(faults::Faults::default()),
            parsed_policies: Arc::default(),
            build_clock: Arc::new(build_clock::BuildClock::default()),
            transfers: None,
        }
    }

    /// The same state with image bytes kept in `transfers`' object storage.
    #[must_use]
    pub fn with_transfers(mut self, transfers: transfers::Transfers) -> Self {
        self.transfers = Some(Arc::new(transfers));
        self
    }
}

/// Seals any secret the store still keeps in clear (stores made before sealing existed) and
/// checks that every sealed one opens with `master_key`, so a wrong key fails at start, not
/// on each request. Returns how many secrets were sealed.
///
/// # Errors
/// When the store fails or a sealed secret belongs to another master key.
pub async fn prepare_secrets(
    store: &dyn AdminStore,
    master_key: &MasterKey,
) -> Result<u64, error::StartupError> {
    let mut sealed = 0;
    for (key, stored) in store.access_key_secrets().await? {
        if MasterKey::is_sealed(&stored) {
            master_key
                .open(&stored)
                .map_err(|_| error::StartupError::WrongMasterKey(key.to_string()))?;
        } else {
            store
                .replace_access_key_secret(&key, &master_key.seal(&stored))
                .await?;
            sealed += 1;
        }
    }
    Ok(sealed)
}

/// Certificate and private key files (PEM) for HTTPS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// The certificate's private key.
    pub key: PathBuf,
}

/// Serves on `listener` until `shutdown` completes, then lets in-flight requests finish.
///
/// While serving, also advances image builds and prunes expired nonces in the background.
///
/// # Errors
/// When accepting connections fails.
pub async fn serve(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    mut state: AppState,
    tls: Option<TlsFiles>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    state.secure_transport = tls.is_some();
    state.metrics_apart = metrics_listener.is_some();
    let pruner = tokio::spawn(keep_nonce_record(state.clone()));
    let builder = tokio::spawn(advance_builds(state.clone()));
    let heart = tokio::spawn(heartbeat(state.clone()));
    let auditor = tokio::spawn(keep_audit(state.clone()));
    let mover = tokio::spawn(transfers::run(state.clone()));
    // Scrapes need no graceful end: the listener stops with the API.
    let metrics = metrics_listener.map(|listener| {
        let app = handler::metrics_router(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await })
    });
    let limits = state.config.connections;
    let state_nonces = Arc::clone(&state.nonces);
    let state_audit = Arc::clone(&state.audit);
    let result = match tls {
        None => {
            connections::serve(listener, router(state), limits, shutdown).await;
            Ok(())
        }
        Some(files) => {
            let config =
                axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key).await?;
            connections::serve_tls(listener, router(state), limits, config, shutdown).await;
            Ok(())
        }
    };
    pruner.abort();
    state_nonces.flush().await;
    let held = state_nonces.settle(OffsetDateTime::now_utc()).await;
    if held > 0 {
        tracing::error!(
            held,
            "stopping with accepted nonces the record could not take: the next start refuses requests signed \
             before it until the clock window has passed"
        );
    }
    builder.abort();
    heart.abort();
    auditor.abort();
    mover.abort();
    state_audit.flush_refusals().await;
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    result
}

/// How often a replica announces itself, and how long an announcement counts.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
const HEARTBEAT_WINDOW: Duration = Duration::from_secs(15);

/// Announces this replica and adjusts its share of the rate limit to the live replicas.
async fn heartbeat(state: AppState) {
    let replica = uuid::Uuid::new_v4().to_string();
    let mut ticker = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        ticker.tick().await;
        match state
            .store
            .heartbeat(&replica, (state.clock)(), HEARTBEAT_WINDOW)
            .await
        {
            Ok(live) => {
                if let Some(throttle) = &state.throttle {
                    throttle.set_replicas(live);
                }
            }
            Err(error) => tracing::warn!(%error, "replica heartbeat failed"),
        }
    }
}

/// Moves images through their build steps; each transition is a store transaction, so
/// progress survives restarts and happens once whoever runs it. Idle while this process's
/// [`build_clock::BuildClock`] is frozen.
async fn advance_builds(state: AppState) {
    let step = state.config.image_build_step;
    let mut ticker =
        tokio::time::interval(step.clamp(Duration::from_millis(100), Duration::from_millis(500)));
    loop {
        ticker.tick().await;
        let Some(_turn) = state.build_clock.advancer_turn().await else {
            continue;
        };
        if let Err(error) = state.store.advance_image_builds((state.clock)(), step).await {
            tracing::warn!(%error, "advancing image builds failed");
        }
    }
}

/// How long unauthenticated refusals are counted before their counts are written.
const REFUSAL_COUNT_PERIOD: Duration = Duration::from_secs(10);
/// How often audit records past their retention are removed.
const AUDIT_PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Writes the counts of unauthenticated refusals each period, and removes audit records
/// past their retention (at start, then hourly).
async fn keep_audit(state: AppState) {
    let mut ticker = tokio::time::interval(REFUSAL_COUNT_PERIOD);
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        ticker.tick().await;
        state.audit.flush_refusals().await;
        let Some(retention) = state.config.audit_retention else {
            continue;
        };
        if last_prune.is_some_and(|at| at.elapsed() < AUDIT_PRUNE_EVERY) {
            continue;
        }
        last_prune = Some(tokio::time::Instant::now());
        match state.store.prune_audit((state.clock)() - retention).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "audit records past their retention removed"),
            Err(error) => tracing::warn!(%error, "removing audit records past their retention failed"),
        }
    }
}

/// How often claims held in memory are offered to the nonce record again.
const SETTLE_NONCES_EVERY: Duration = Duration::from_secs(1);
/// How many settle periods between two prunings of expired nonces.
const PRUNE_NONCES_EVERY: u32 = 60;

/// Loads the nonce index first (so that the first requests do not wait for it), then writes
/// nonce claims held in memory once the record takes them, and forgets expired ones.
async fn keep_nonce_record(state: AppState) {
    if let Err(error) = state.nonces.preload((state.clock)()).await {
        tracing::warn!(%error, "loading the nonce index failed; the first signed request loads it");
    }
    let mut ticker = tokio::time::interval(SETTLE_NONCES_EVERY);
    for tick in 0_u32.. {
        ticker.tick().await;
        state.nonces.settle((state.clock)()).await;
        if tick % PRUNE_NONCES_EVERY == 0 {
            if let Err(error) = state.store.prune_nonces((state.clock)()).await {
                tracing::warn!(%error, "pruning expired nonces failed");
            }
        }
    }
}
