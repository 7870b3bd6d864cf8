//! The HTTP front of ens-images.
//!
//! Every request runs one pipeline, top to bottom: parse the call (cheap, no secrets), look up
//! the AccessKey, verify the signature, the clock and the nonce, then dispatch the operation
//! and render the result or the error in the caller's format. Errors of every layer meet in
//! [`error::ServerError`], which maps them to the wire once.

mod auth;
pub mod error;
mod handler;
mod ops;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ens_store::Store;
use time::OffsetDateTime;
use tokio::net::TcpListener;

pub use handler::router;

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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host_id: "ens.aliyuncs.com".into(),
            body_limit: 1024 * 1024,
            nonce_window: Duration::from_secs(30 * 60),
            image_build_step: Duration::from_secs(2),
        }
    }
}

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The one store.
    pub store: Arc<dyn Store>,
    /// Settings.
    pub config: Arc<ServerConfig>,
    /// The clock.
    pub clock: Clock,
}

impl AppState {
    /// State with the system clock.
    #[must_use]
    pub fn new(store: Arc<dyn Store>, config: ServerConfig) -> Self {
        Self {
            store,
            config: Arc::new(config),
            clock: Arc::new(OffsetDateTime::now_utc),
        }
    }
}

/// Serves on `listener` until `shutdown` completes, then lets in-flight requests finish.
///
/// While serving, also advances image builds and prunes expired nonces in the background.
///
/// # Errors
/// When accepting connections fails.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let pruner = tokio::spawn(prune_nonces(state.clone()));
    let builder = tokio::spawn(advance_builds(state.clone()));
    let result = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    pruner.abort();
    builder.abort();
    result
}

/// Moves images through their build steps; each transition is a store transaction, so
/// progress survives restarts and happens once whoever runs it.
async fn advance_builds(state: AppState) {
    let step = state.config.image_build_step;
    let mut ticker =
        tokio::time::interval(step.clamp(Duration::from_millis(100), Duration::from_millis(500)));
    loop {
        ticker.tick().await;
        if let Err(error) = state.store.advance_image_builds((state.clock)(), step).await {
            tracing::warn!(%error, "advancing image builds failed");
        }
    }
}

async fn prune_nonces(state: AppState) {
    let mut ticker = tokio::time::interval(Duration::from_secs(60));
    loop {
        ticker.tick().await;
        if let Err(error) = state.store.prune_nonces((state.clock)()).await {
            tracing::warn!(%error, "pruning expired nonces failed");
        }
    }
}
