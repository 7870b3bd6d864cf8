//! `ens-bench`: the ens-images read path against a bare HTTP server on the same machine.
//!
//! The project's rule is that the read path is compared with a bare HTTP server and that its
//! cost must not grow with the catalog. This binary measures exactly that: the same client
//! (freshly signed requests over keep-alive connections) drives a canned-answer hyper server,
//! then ens-images loaded with catalogs of growing size.

mod bare;
mod catalog;
mod load;
mod server;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ens_client::{AccessKeySecret, Client, SignatureVersion};
use load::{Load, Stats};
use serde_json::Value;

/// Measure the ens-images read path (DescribeImages) against a bare HTTP server.
///
/// Without a subcommand it runs the whole suite: the bare baseline, then ens-images on
/// generated catalogs of each `--sizes`, four DescribeImages scenarios each.
#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    suite: SuiteArgs,
}

#[derive(Subcommand)]
enum Command {
    /// The full suite (the default).
    Suite(SuiteArgs),
    /// Only the bare baseline: what the client and HTTP alone reach on this machine.
    Bare(LoadArgs),
    /// Drive one call against a server that is already running.
    Drive(DriveArgs),
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// Concurrent keep-alive connections (one request in flight on each).
    #[arg(long, short = 'c', default_value_t = 8)]
    connections: usize,
    /// Measured seconds per scenario.
    #[arg(long, short = 'd', default_value_t = 5.0)]
    duration: f64,
    /// Measure this many requests per scenario instead of a duration.
    #[arg(long, short = 'n')]
    requests: Option<u64>,
    /// Unmeasured seconds before each measurement.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Signature version of every request.
    #[arg(long, value_enum, default_value = "v3")]
    signature: Signature,
}

#[derive(Args, Clone)]
struct SuiteArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Catalog sizes K (public images) to load, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    sizes: Vec<u64>,
    /// The ens-images binary (default: next to this one, else target/release/ens-images).
    #[arg(long)]
    server: Option<PathBuf>,
    /// ENS_IMAGES_LOG for the server (default: its own, `info,sqlx=warn`, one line per request).
    #[arg(long)]
    server_log: Option<String>,
    /// Longest wait for a server to load its catalog and start, in seconds.
    #[arg(long, default_value_t = 1800)]
    start_timeout: u64,
    /// Keep the scratch directory (catalogs, stores, server logs) and print its path.
    #[arg(long)]
    keep: bool,
}

#[derive(Args)]
struct DriveArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// `http://host:port` of the running server.
    #[arg(long)]
    endpoint: String,
    /// AccessKey ID to sign with.
    #[arg(long, env = "ENS_BENCH_ACCESS_KEY_ID")]
    access_key_id: String,
    /// Its secret (prefer the environment variable to keep it out of `ps`).
    #[arg(long, env = "ENS_BENCH_ACCESS_KEY_SECRET", hide_env_values = true)]
    access_key_secret: String,
    /// The action to call.
    #[arg(long, default_value = "DescribeImages")]
    action: String,
    /// A business parameter `Name=Value`; repeatable.
    #[arg(long = "param", short = 'p', value_parser = parse_param)]
    params: Vec<(String, String)>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Signature {
    V3,
    V1,
}

impl From<Signature> for SignatureVersion {
    fn from(value: Signature) -> Self {
        match value {
            Signature::V3 => Self::V3,
            Signature::V1 => Self::V1,
        }
    }
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("expected Name=Value, got {text:?}"))
}

impl LoadArgs {
    fn load(&self) -> anyhow::Result<Load> {
        let seconds = |value: f64, name: &str| {
            Duration::try_from_secs_f64(value)
                .with_context(|| format!("--{name} must be a number of seconds"))
        };
        Ok(Load {
            connections: self.connections,
            duration: seconds(self.duration, "duration")?,
            requests: self.requests,
            warmup: seconds(self.warmup, "warmup")?,
        })
    }
}

/// One row of the results table.
struct Row {
    scenario: String,
    catalog: Option<u64>,
    stats: Stats,
}

/// One catalog size's start-up cost.
struct Startup {
    catalog: u64,
    catalog_bytes: u64,
    generate: Duration,
    startup: Duration,
    store_bytes: u64,
    peak_rss_bytes: Option<u64>,
}

const BENCH_KEY_ID: &str = "ens-bench-owner";

fn bench_client(endpoint: &str, key_id: &str, secret: &str, signature: Signature) -> anyhow::Result<Client> {
    Client::new(
        endpoint,
        key_id,
        AccessKeySecret::new(secret.to_owned()),
        signature.into(),
    )
    .context("cannot create the client")
}

fn describe(row: &Row) -> String {
    let stats = &row.stats;
    let mut line = format!(
        "{:<14} K={:<9} {:>9.0} req/s  p50 {}  p99 {}  max {}  non-2xx {}",
        row.scenario,
        row.catalog.map_or_else(|| "-".to_owned(), |k| k.to_string()),
        stats.throughput(),
        millis(stats.percentile(0.50)),
        millis(stats.percentile(0.99)),
        millis(stats.max()),
        stats.non_2xx,
    );
    if stats.transport_errors > 0 {
        let _ = write!(
            line,
            "  transport errors {} (first: {})",
            stats.transport_errors,
            stats.first_error.as_deref().unwrap_or("?")
        );
    }
    line
}

fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

fn size(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes as f64 >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

fn table(rows: &[Row], baseline: f64) -> String {
    let mut out = String::from(
        "| scenario | K | requests | req/s | p50 | p90 | p99 | max | non-2xx | req/s vs bare |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let stats = &row.stats;
        let errors = if stats.transport_errors > 0 {
            format!("{} (+{} transport)", stats.non_2xx, stats.transport_errors)
        } else {
            stats.non_2xx.to_string()
        };
        let ratio = if baseline > 0.0 {
            format!("{:.0}%", 100.0 * stats.throughput() / baseline)
        } else {
            "-".to_owned()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
            row.scenario,
            row.catalog.map_or_else(|| "-".to_owned(), |k| k.to_string()),
            stats.requests,
            stats.throughput(),
            millis(stats.percentile(0.50)),
            millis(stats.percentile(0.90)),
            millis(stats.percentile(0.99)),
            millis(stats.max()),
            errors,
            ratio,
        );
    }
    out
}

fn startup_table(startups: &[Startup]) -> String {
    let mut out = String::from(
        "| K | catalog file | generate | server start (catalog load) | store on disk | server peak RSS |\n\
         |---:|---:|---:|---:|---:|---:|\n",
    );
    for startup in startups {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} s | {:.1} s | {} | {} |",
            startup.catalog,
            size(startup.catalog_bytes),
            startup.generate.as_secs_f64(),
            startup.startup.as_secs_f64(),
            size(startup.store_bytes),
            startup.peak_rss_bytes.map_or_else(|| "-".to_owned(), size),
        );
    }
    out
}

fn directory_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|metadata| metadata.len())
                .sum()
        })
        .unwrap_or(0)
}

fn default_server_binary() -> PathBuf {
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("ens-images")))
        .filter(|path| path.is_file());
    sibling.unwrap_or_else(|| PathBuf::from("target/release/ens-images"))
}

fn machine_notes(load: &Load) -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let mode = match load.requests {
        Some(count) => format!("{count} requests"),
        None => format!("{:.0} s", load.duration.as_secs_f64()),
    };
    format!(
        "{cores} cores ({cpu}), shared by the load generator and the server; {} keep-alive connections, \
         {mode} per scenario after {:.1} s warm-up, every request freshly signed",
        load.connections,
        load.warmup.as_secs_f64(),
    )
}

/// A DescribeImages scenario and the answer it must give.
struct Scenario {
    name: &'static str,
    params: Vec<(String, String)>,
    total_count: u64,
    first_image: Option<String>,
    items: u64,
}

fn scenarios(count: u64) -> Vec<Scenario> {
    let page = |number: u64| count.saturating_sub((number - 1) * 10).min(10);
    let last_page = count.div_ceil(10).max(1);
    let middle = count / 2;
    let on_node = catalog::images_on_filter_node(count);
    vec![
        Scenario {
            name: "first page",
            params: Vec::new(),
            total_count: count,
            first_image: (count > 0).then(|| catalog::image_id(0)),
            items: page(1),
        },
        Scenario {
            name: "node filter",
            params: vec![("EnsRegionId".into(), catalog::FILTER_NODE.into())],
            total_count: on_node,
            first_image: None,
            items: on_node.min(10),
        },
        Scenario {
            name: "deep page",
            params: vec![("PageNumber".into(), last_page.to_string())],
            total_count: count,
            first_image: (count > 0).then(|| catalog::image_id((last_page - 1) * 10)),
            items: page(last_page),
        },
        Scenario {
            name: "name filter",
            params: vec![("ImageName".into(), catalog::image_name(middle))],
            total_count: u64::from(count > 0),
            first_image: (count > 0).then(|| catalog::image_id(middle)),
            items: u64::from(count > 0),
        },
    ]
}

/// Checks one answer before measuring: a fast wrong answer is not a result.
fn check_answer(scenario: &Scenario, answer: &Value) -> anyhow::Result<()> {
    let total = answer["TotalCount"].as_u64();
    let images = answer["Images"]["Image"].as_array().map_or(0, Vec::len) as u64;
    let first = answer["Images"]["Image"][0]["ImageId"].as_str();
    if total != Some(scenario.total_count) || images != scenario.items {
        bail!(
            "{}: expected TotalCount {} and {} images, got {total:?} and {images}",
            scenario.name,
            scenario.total_count,
            scenario.items
        );
    }
    if let Some(expected) = &scenario.first_image {
        if first != Some(expected.as_str()) {
            bail!(
                "{}: expected first image {expected}, got {first:?}",
                scenario.name
            );
        }
    }
    Ok(())
}

/// The in-process baseline server, started once and reused by every bare run.
struct Bare {
    endpoint: String,
    body_len: usize,
}

impl Bare {
    fn start() -> anyhow::Result<Self> {
        let body = bare::canned_page();
        let body_len = body.len();
        // As many workers as ens-images' runtime gets (tokio's default: one per core).
        let threads = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        let address = bare::start(threads, body)?;
        Ok(Self {
            endpoint: format!("http://{address}"),
            body_len,
        })
    }

    async fn run(&self, load: Load, signature: Signature) -> anyhow::Result<Row> {
        let make = || bench_client(&self.endpoint, BENCH_KEY_ID, "bare-server-ignores-it", signature);
        let stats = load::drive(&make, "DescribeImages", &[], load).await?;
        let row = Row {
            scenario: "bare".to_owned(),
            catalog: None,
            stats,
        };
        eprintln!("{}", describe(&row));
        Ok(row)
    }
}

async fn suite(args: SuiteArgs) -> anyhow::Result<()> {
    let load = args.load.load()?;
    let binary = args.server.clone().unwrap_or_else(default_server_binary);
    if !binary.is_file() {
        bail!(
            "ens-images binary not found at {}; build it with `cargo build --release -p ens-images` \
             or pass --server",
            binary.display()
        );
    }
    let scratch = tempfile::Builder::new()
        .prefix("ens-bench-")
        .tempdir()
        .context("cannot create a scratch directory")?;
    eprintln!("machine: {}", machine_notes(&load));
    eprintln!("server: {}", binary.display());

    // The bare baseline runs before the first catalog and after each one: on a shared
    // machine it drifts, and the spread of these runs says how much to trust small ratios.
    let mut rows = Vec::new();
    let bare_server = Bare::start()?;
    rows.push(bare_server.run(load, args.load.signature).await?);

    let secret = format!("bench-{}", std::process::id());
    let mut startups = Vec::new();
    let mut page_bytes = None;
    for &count in &args.sizes {
        let catalog_path = scratch.path().join(format!("catalog-{count}.json"));
        let generating = Instant::now();
        catalog::write(&catalog_path, count)?;
        let generate = generating.elapsed();
        let catalog_bytes = std::fs::metadata(&catalog_path).map_or(0, |m| m.len());
        eprintln!(
            "K={count}: catalog of {} written in {:.1} s; starting ens-images ...",
            size(catalog_bytes),
            generate.as_secs_f64()
        );
        let data_dir = scratch.path().join(format!("data-{count}"));
        let server = server::Server::start(&server::Launch {
            binary: &binary,
            data_dir: &data_dir,
            catalog: &catalog_path,
            access_key_id: BENCH_KEY_ID,
            access_key_secret: &secret,
            log_filter: args.server_log.as_deref(),
            timeout: Duration::from_secs(args.start_timeout),
        })
        .await?;
        eprintln!(
            "K={count}: ready at {} after {:.1} s (log: {})",
            server.endpoint,
            server.startup.as_secs_f64(),
            server.log.display()
        );
        let make = || bench_client(&server.endpoint, BENCH_KEY_ID, &secret, args.load.signature);
        let checker = make()?;
        for scenario in scenarios(count) {
            let raw = checker
                .send("DescribeImages", &scenario.params)
                .await
                .with_context(|| format!("{}: no answer", scenario.name))?;
            if !raw.is_success() {
                bail!(
                    "{}: HTTP {}: {}",
                    scenario.name,
                    raw.status,
                    String::from_utf8_lossy(&raw.body)
                );
            }
            let answer: Value = serde_json::from_slice(&raw.body)
                .with_context(|| format!("{}: the answer is not JSON", scenario.name))?;
            check_answer(&scenario, &answer).with_context(|| format!("K={count}"))?;
            if scenario.name == "first page" && page_bytes.is_none() {
                page_bytes = Some(raw.body.len());
            }
            let stats = load::drive(&make, "DescribeImages", &scenario.params, load).await?;
            let row = Row {
                scenario: scenario.name.to_owned(),
                catalog: Some(count),
                stats,
            };
            eprintln!("{}", describe(&row));
            rows.push(row);
        }
        startups.push(Startup {
            catalog: count,
            catalog_bytes,
            generate,
            startup: server.startup,
            store_bytes: directory_size(&data_dir),
            peak_rss_bytes: server.peak_rss_bytes(),
        });
        server.stop().await?;
        // The stores are large; keep only what was asked for.
        if !args.keep {
            let _ = std::fs::remove_dir_all(&data_dir);
            let _ = std::fs::remove_file(&catalog_path);
        }
        rows.push(bare_server.run(load, args.load.signature).await?);
    }
    let bare: Vec<f64> = rows
        .iter()
        .filter(|row| row.catalog.is_none())
        .map(|row| row.stats.throughput())
        .collect();
    let baseline = bare.iter().sum::<f64>() / bare.len().max(1) as f64;
    let lowest = bare.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = bare.iter().copied().fold(0.0, f64::max);

    println!("Machine: {}.", machine_notes(&load));
    println!(
        "Bare server body: {} bytes; ens-images first page: {} bytes.\n",
        bare_server.body_len,
        page_bytes.map_or_else(|| "-".to_owned(), |bytes| bytes.to_string())
    );
    println!(
        "Ratios are against the mean of the {} bare runs: {baseline:.0} req/s (range {lowest:.0}–{highest:.0}).\n",
        bare.len()
    );
    println!("{}", table(&rows, baseline));
    println!("{}", startup_table(&startups));
    if args.keep {
        let kept = scratch.keep();
        println!("Scratch directory kept: {}", kept.display());
    }
    Ok(())
}

async fn drive_one(args: DriveArgs) -> anyhow::Result<()> {
    let load = args.load.load()?;
    let make = || {
        bench_client(
            &args.endpoint,
            &args.access_key_id,
            &args.access_key_secret,
            args.load.signature,
        )
    };
    // One checked call first, so a wrong key or parameter fails loudly instead of being
    // measured as a fast stream of errors.
    make()?
        .call(&args.action, &args.params)
        .await
        .context("the first call failed")?;
    let stats = load::drive(&make, &args.action, &args.params, load).await?;
    println!("Machine: {}.\n", machine_notes(&load));
    let row = Row {
        scenario: args.action.clone(),
        catalog: None,
        stats,
    };
    println!("{}", table(&[row], 0.0));
    Ok(())
}

async fn bare_only(args: LoadArgs) -> anyhow::Result<()> {
    let load = args.load()?;
    let bare_server = Bare::start()?;
    let row = bare_server.run(load, args.signature).await?;
    println!(
        "Machine: {}.\nBare server body: {} bytes.\n",
        machine_notes(&load),
        bare_server.body_len
    );
    let baseline = row.stats.throughput();
    println!("{}", table(&[row], baseline));
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => suite(cli.suite).await,
        Some(Command::Suite(args)) => suite(args).await,
        Some(Command::Bare(args)) => bare_only(args).await,
        Some(Command::Drive(args)) => drive_one(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ens-bench: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
