//! `serve --control-listen`: the control API's listener and token (the API itself is
//! `ens_server::control`).

use std::net::SocketAddr;

use anyhow::Context;
use ens_server::control::{ControlState, ControlToken};
use ens_server::AppState;
use ens_store::{ResetPoint, Store};

/// Where the control API listens and the token it requires.
#[derive(clap::Args, Clone)]
pub struct ControlArgs {
    /// Serve the control API (JSON: accounts, AccessKeys, resets, the request journal, fault
    /// injection) on this address, e.g. 127.0.0.1:0; off when absent. Keep it on loopback:
    /// whoever holds the token controls the service.
    #[arg(long, env = "ENS_IMAGES_CONTROL_LISTEN")]
    control_listen: Option<SocketAddr>,
    /// Bearer token the control API requires; generated and printed on stdout when absent.
    /// Prefer the environment variable: a command line is visible to other local users.
    #[arg(long, env = "ENS_IMAGES_CONTROL_TOKEN", hide_env_values = true)]
    control_token: Option<String>,
}

/// A bound control listener, not serving yet.
pub struct Control {
    listener: tokio::net::TcpListener,
    token: ControlToken,
    generated: bool,
}

impl Control {
    /// Binds the control listener when one was asked for.
    ///
    /// # Errors
    /// When the token is malformed or the address cannot be bound.
    pub async fn bind(args: &ControlArgs) -> anyhow::Result<Option<Self>> {
        let Some(address) = args.control_listen else {
            if args.control_token.is_some() {
                tracing::warn!("a control token is set but no --control-listen: the control API is off");
            }
            return Ok(None);
        };
        let (token, generated) = match &args.control_token {
            Some(text) => (
                ControlToken::parse(text).context("invalid --control-token / ENS_IMAGES_CONTROL_TOKEN")?,
                false,
            ),
            None => (ControlToken::generate(), true),
        };
        if !address.ip().is_loopback() {
            tracing::warn!(%address, "the control API listens beyond loopback: guard its token");
        }
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen for the control API on {address}"))?;
        Ok(Some(Self {
            listener,
            token,
            generated,
        }))
    }

    /// Prints the control address (and a generated token) on stdout, before the service's
    /// `listening on` line, so whoever waits for that line has them.
    pub fn announce(&self) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if let Ok(address) = self.listener.local_addr() {
            let _ = writeln!(out, "ens-images control on http://{address}");
        }
        if self.generated {
            let _ = writeln!(out, "ens-images control token {}", self.token.expose());
        }
    }

    /// Serves the control API until the returned task is aborted; `reset_point` is the
    /// private store's first start, for fast resets.
    pub fn spawn(
        self,
        app: AppState,
        store: Store,
        reset_point: Option<ResetPoint>,
    ) -> tokio::task::JoinHandle<()> {
        let state = ControlState::new(app, store, self.token).with_reset_point(reset_point);
        tokio::spawn(async move {
            if let Err(error) =
                ens_server::control::serve_control(self.listener, state, std::future::pending()).await
            {
                tracing::error!(%error, "the control API stopped");
            }
        })
    }
}
