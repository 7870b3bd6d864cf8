//! `ens-images`: serve the ENS image API, or administer its store.

mod admin;
mod call;
mod control;
mod database;
mod setup;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use ens_objects::{BucketConfig, Buckets, ImportLimits};
use ens_server::throttle::RateLimit;
use ens_server::transfers::{TransferSettings, Transfers};
use ens_server::{AppState, ConnectionLimits, ServerConfig, TlsFiles};

/// jemalloc keeps per-thread caches: a request allocates and frees many small strings, and
/// the system allocator's shared arenas cost more than the request's own work. Unlike
/// mimalloc (used before, as fast here), its background threads give freed memory back to
/// the system while the service is idle, e.g. after a burst of connections (BENCHMARKS.md,
/// "Hostile connections").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A self-hostable implementation of the Alibaba Cloud ENS (2017-11-10) image API.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API until SIGTERM or Ctrl-C; in-flight requests finish first.
    Serve(Box<ServeArgs>),
    /// Administer the store: accounts, RAM users, AccessKeys, policies, the audit log,
    /// instances and snapshots.
    Admin(admin::AdminArgs),
    /// Call one API operation, signed with an AccessKey (V3 or V1).
    Call(call::CallArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the chosen address is printed).
    #[arg(long, env = "ENS_IMAGES_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Serve `/metrics` (and the probes) on this address instead of the API's, so that
    /// Prometheus need not face the API's clients; port 0 picks a free port (printed).
    #[arg(long, env = "ENS_IMAGES_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Directory of the embedded store (SQLite), created on first start; with
    /// --database-url it still holds root-credentials.json and master.key.
    #[arg(long, env = "ENS_IMAGES_DATA_DIR", default_value = "./ens-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    database: database::DatabaseArgs,
    /// Public image catalog (JSON) to load instead of the built-in one; replaces the public
    /// images of an existing store.
    #[arg(long, env = "ENS_IMAGES_CATALOG")]
    catalog: Option<PathBuf>,
    /// Seconds each build step of a new image (Creating, Packing, Uploading) lasts; 0 makes
    /// new images Available at once.
    #[arg(long, env = "ENS_IMAGES_IMAGE_BUILD_SECONDS", default_value_t = 2.0)]
    image_build_seconds: f64,
    /// Sustained requests per second allowed per AccessKey (token bucket); 0 disables the
    /// limit. Over it, calls get Throttling.User.
    #[arg(long, env = "ENS_IMAGES_RATE_LIMIT", default_value_t = 1000.0)]
    rate_limit: f64,
    /// Requests an AccessKey may send at once above the rate (bucket size).
    #[arg(long, env = "ENS_IMAGES_RATE_BURST", default_value_t = 2000.0)]
    rate_burst: f64,
    /// Refused requests per second one source address may send before authentication
    /// succeeds (unknown key, bad signature, stale timestamp); past the burst, that address
    /// gets Throttling.User without any lookup until its allowance refills.
    #[arg(long, env = "ENS_IMAGES_REFUSAL_RATE", default_value_t = 20.0)]
    refusal_rate: f64,
    /// Refused requests one source address may send at once before the rate applies.
    #[arg(long, env = "ENS_IMAGES_REFUSAL_BURST", default_value_t = 200.0)]
    refusal_burst: f64,
    /// Refused requests of unauthenticated callers recorded one by one in the audit per
    /// 10-second period; the rest are counted per source address, action and outcome.
    #[arg(long, env = "ENS_IMAGES_AUDIT_REFUSALS_PER_PERIOD", default_value_t = 20)]
    audit_refusals_per_period: u32,
    /// Days audit records are kept (removed at start and hourly); 0 keeps them forever.
    #[arg(long, env = "ENS_IMAGES_AUDIT_RETENTION_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u64).range(0..=36_500))]
    audit_retention_days: u64,
    /// Seconds a connection has to send a whole request head, from its start (TLS handshake
    /// included) or from the first byte of a later head; slow senders are closed after it.
    #[arg(long, env = "ENS_IMAGES_HEADER_READ_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_read_timeout: u64,
    /// Seconds a kept-alive connection may wait after an answer for the next request's first
    /// byte; idle connections are closed after it.
    #[arg(long, env = "ENS_IMAGES_IDLE_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    idle_timeout: u64,
    /// Largest request head (request line and headers) in bytes, at least 8192.
    #[arg(long, env = "ENS_IMAGES_MAX_HEADER_BYTES", default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(8192..=1_048_576))]
    max_header_bytes: u64,
    /// Most connections open at once; at the cap a new one displaces the connection that has
    /// waited longest for a request (or is closed at once if every one is being answered).
    #[arg(long, env = "ENS_IMAGES_MAX_CONNECTIONS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// Most connections one source address may hold at once.
    #[arg(long, env = "ENS_IMAGES_MAX_CONNECTIONS_PER_IP", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections_per_ip: u64,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "ENS_IMAGES_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "ENS_IMAGES_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    #[command(flatten)]
    master_key: setup::MasterKeyArgs,
    /// Log line format on stderr.
    #[arg(long, env = "ENS_IMAGES_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Also serve `/bench/ceiling?Bytes=N`: a fixed N-byte answer with no signature check
    /// and no store access, the ceiling the benchmark compares the API with. For benchmarks
    /// only: it answers anyone.
    #[arg(long, env = "ENS_IMAGES_BENCH_CEILING")]
    bench_ceiling: bool,
    /// Serve a fresh private store (the built-in catalog, a new owner account) kept in memory
    /// where the system allows (/dev/shm) and removed at exit: nothing written to
    /// --data-dir, no master key or credentials file; generated owner credentials are
    /// printed on stdout. For tests and CI. Refuses --database-url.
    #[arg(long, env = "ENS_IMAGES_EPHEMERAL")]
    ephemeral: bool,
    /// Load a state document (the control API's `GET /state` format) at start, replacing
    /// every account but the owner's, as `PUT /state` does. Refused whole if any part is.
    #[arg(long, env = "ENS_IMAGES_SEED")]
    seed: Option<PathBuf>,
    /// Bucket configuration (JSON; README "Image files and buckets"): which store each OSS
    /// region and bucket of ImportImage and ExportImage means, and where image files live.
    /// Without it, bucket B is the folder <data-dir>/buckets/B if it exists, and image files
    /// live in <data-dir>/image-files (a private temporary folder with --ephemeral).
    #[arg(long, env = "ENS_IMAGES_BUCKETS")]
    buckets: Option<PathBuf>,
    /// Seconds a replica holds an import or export without renewing its claim; after it
    /// was killed, its transfers start again elsewhere (or after its restart) this long later.
    #[arg(long, env = "ENS_IMAGES_TRANSFER_LEASE_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    transfer_lease_seconds: u64,
    /// Largest object ImportImage accepts, in GiB.
    #[arg(long, env = "ENS_IMAGES_MAX_IMPORT_GIB", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    max_import_gib: u64,
    #[command(flatten)]
    control: control::ControlArgs,
}

/// Logs to stderr from a thread of its own, so that a request formats its line and moves on
/// instead of waiting for the write; the lines waiting are written together, in order, once
/// the queue is empty. Nothing is dropped: a request waits when 128 000 lines are queued.
/// The returned guard writes what is queued when dropped, at the end of `serve`.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ENS_IMAGES_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("ens-images-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    // Colour codes only for a terminal: in a log file they are noise, and writing them is
    // part of every request's cost.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    guard
}

/// Watches SIGTERM and SIGINT (Ctrl-C) from the moment it is called, and returns a future
/// that ends at the first of them. Called before the service says it is listening: a signal
/// sent right after that line must stop it cleanly, not kill it (the default action).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
            tracing::info!("shutting down: finishing in-flight requests");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down: finishing in-flight requests");
        })
    }
}

/// Connections the kernel queues for the API before the service accepts them. A burst of
/// connects (a reconnect storm, a flood) overflows a short queue, and a dropped connect waits
/// the kernel's one-second retry, good clients' included; the kernel caps this at
/// `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds the API's listener with [`LISTEN_BACKLOG`] (tokio's default is 1 024).
fn bind_api_listener(address: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As tokio's own bind does: a restart need not wait for the old connections' TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let _log_writer = init_logging(args.log_format);
    if !args.ephemeral {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    }
    let catalog_text = match &args.catalog {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read catalog {}", path.display()))?,
        ),
        None => None,
    };
    let (store, master_key, credentials) = if args.ephemeral {
        let store = database::open_ephemeral(&args.database).await?;
        let key = ens_server::secrets::MasterKey::parse(&ens_server::secrets::MasterKey::generate())?;
        (store, key, setup::OwnerCredentials::Stdout)
    } else {
        let store = database::open_for_serve(&args.database, &args.data_dir).await?;
        let key = setup::master_key(&args.master_key, &args.data_dir, true)?;
        (store, key, setup::OwnerCredentials::File(&args.data_dir))
    };
    let sealed = ens_server::prepare_secrets(&store, &master_key).await?;
    if sealed > 0 {
        tracing::info!(
            sealed,
            "sealed AccessKey secrets stored in clear by an older version"
        );
    }
    setup::load_catalog(&store, catalog_text.as_deref()).await?;
    setup::ensure_owner_account(&store, credentials, &master_key).await?;
    // A private store is at its first start now: resets go back here in one page copy. A
    // seeded one is not (a reset removes the seeded accounts), nor a durable one.
    let reset_point = if args.ephemeral && args.seed.is_none() {
        setup::reset_point(&store).await?
    } else {
        None
    };
    if let Some(path) = &args.seed {
        setup::load_seed(&store, &master_key, path).await?;
    }
    // An ephemeral server keeps image files in a folder of its own, removed at exit.
    let private_files = if args.ephemeral {
        Some(tempfile::Builder::new().prefix("ens-images-files-").tempdir()?)
    } else {
        None
    };
    let objects_dir = private_files
        .as_ref()
        .map_or(args.data_dir.as_path(), tempfile::TempDir::path);
    let buckets = BucketConfig::load(args.buckets.as_deref(), objects_dir)
        .and_then(Buckets::open)
        .context("cannot open the buckets")?;
    let transfer_settings = TransferSettings {
        lease: Duration::from_secs(args.transfer_lease_seconds),
        import_limits: ImportLimits {
            max_bytes: args.max_import_gib.saturating_mul(1 << 30),
        },
        ..TransferSettings::default()
    };
    let control = control::Control::bind(&args.control).await?;

    let listener =
        bind_api_listener(args.listen).with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    let shutdown = shutdown_signal()?;
    let metrics_listener = match args.metrics_listen {
        Some(metrics_address) => Some(
            tokio::net::TcpListener::bind(metrics_address)
                .await
                .with_context(|| format!("cannot listen for metrics on {metrics_address}"))?,
        ),
        None => None,
    };
    tracing::info!(%address, "ready");
    if let Some(control) = &control {
        control.announce();
    }
    // Scripts and tests wait for this line instead of sleeping.
    let scheme = if args.tls_cert.is_some() { "https" } else { "http" };
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        // The metrics line comes first: whoever waits for "listening on" has both. A reader
        // that already went away must not stop the server.
        if let Some(metrics) = metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
        {
            let _ = writeln!(out, "ens-images metrics on http://{metrics}/metrics");
        }
        let _ = writeln!(out, "ens-images listening on {scheme}://{address}").and_then(|()| out.flush());
    }
    let image_build_step = Duration::try_from_secs_f64(args.image_build_seconds)
        .ok()
        .filter(|step| *step <= Duration::from_secs(3600))
        .context("--image-build-seconds must be from 0 to 3600")?;
    let rate_limit = if args.rate_limit > 0.0 {
        if !(args.rate_burst >= 1.0 && args.rate_limit.is_finite() && args.rate_burst.is_finite()) {
            anyhow::bail!("--rate-burst must be at least 1");
        }
        Some(RateLimit {
            per_second: args.rate_limit,
            burst: args.rate_burst,
        })
    } else {
        None
    };
    let finite_positive = |value: f64| value.is_finite() && value > 0.0;
    if !(finite_positive(args.refusal_rate) && args.refusal_burst.is_finite() && args.refusal_burst >= 1.0) {
        anyhow::bail!("--refusal-rate must be above 0 and --refusal-burst at least 1");
    }
    let config = ServerConfig {
        image_build_step,
        rate_limit,
        refusal_limit: RateLimit {
            per_second: args.refusal_rate,
            burst: args.refusal_burst,
        },
        audit_refusals_per_period: args.audit_refusals_per_period,
        audit_retention: (args.audit_retention_days > 0)
            .then(|| Duration::from_secs(args.audit_retention_days.saturating_mul(24 * 3600))),
        bench_ceiling: args.bench_ceiling,
        connections: ConnectionLimits {
            header_read_timeout: Duration::from_secs(args.header_read_timeout),
            idle_timeout: Duration::from_secs(args.idle_timeout),
            max_header_bytes: usize::try_from(args.max_header_bytes)?,
            max_connections: usize::try_from(args.max_connections)?,
            max_connections_per_ip: usize::try_from(args.max_connections_per_ip)?,
        },
        ..ServerConfig::default()
    };
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    if config.bench_ceiling {
        tracing::warn!("serving /bench/ceiling: an unauthenticated benchmark route");
    }
    let state = AppState::new(Arc::new(store.clone()), master_key, config)
        .with_transfers(Transfers::new(buckets, transfer_settings));
    let control = control.map(|control| control.spawn(state.clone(), store.clone(), reset_point));
    let served = ens_server::serve(listener, metrics_listener, state, tls, shutdown).await;
    if let Some(control) = control {
        control.abort();
    }
    // Also after a failure: the store is left self-contained (SQLite: the WAL checkpointed).
    store.close().await;
    drop(private_files);
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// Prints one JSON document on stdout. A reader that went away (`| head`) is not an error.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(value)?;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Purge freed pages in the background (after jemalloc's decay time, 10 s), not only when
    // a thread next allocates; without it, nothing is given back while the service is idle.
    if let Err(error) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("ens-images: jemalloc background threads not started: {error}");
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Admin(args) => admin::run(args).await,
        Command::Call(args) => call::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ens-images: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
