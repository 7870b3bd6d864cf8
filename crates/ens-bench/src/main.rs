//! `ens-bench`: measures ens-images against the ceiling of its own HTTP stack.
//!
//! `load` drives one scenario against a server that is already running, signing every
//! request like a real client (fresh nonce, current time: replay protection stays on).
//! `suite` (the default) regenerates the whole results table: it fills scratch stores with
//! `ens-images admin generate`, starts `ens-images serve --bench-ceiling` on them, measures
//! the ceiling route and every scenario, and renders a Markdown report with the project's
//! targets marked PASS or MISS. Runs are bounded and drive loopback addresses only.

mod guard;
mod load;
mod postgres;
mod report;
mod scenario;
mod server;
mod stats;
mod suite;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ens_client::{AccessKeySecret, Client, SignatureVersion};
use guard::Shape;
use report::{millis, Table};
use scenario::{Expect, Fixture, Plan, Scenario};
use server::{Account, Generated};

/// Benchmark ens-images: `load` drives a running server, `suite` (the default) regenerates
/// the whole results table.
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
    /// Generate stores, start servers, measure every scenario, print the report (default).
    Suite(SuiteArgs),
    /// Drive one scenario against a server that is already running on this machine.
    Load(LoadArgs),
}

/// How hard and how long each measurement runs.
#[derive(Args, Clone)]
struct ShapeArgs {
    /// Concurrent keep-alive connections, one request in flight on each (at most 1024).
    #[arg(long, short = 'c', default_value_t = 64)]
    concurrency: usize,
    /// Measured seconds (at most 600).
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many measured requests, if that comes before --duration (at most
    /// 10,000,000).
    #[arg(long, short = 'n')]
    requests: Option<u64>,
    /// Unmeasured seconds before each measurement (at most 60).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Signature of every request.
    #[arg(long, value_enum, default_value = "v3")]
    signature: Signature,
}

impl ShapeArgs {
    fn shape(&self) -> anyhow::Result<Shape> {
        Shape::new(self.concurrency, self.duration, self.requests, self.warmup)
    }
}

#[derive(Args, Clone)]
struct SuiteArgs {
    #[command(flatten)]
    shape: ShapeArgs,
    /// Catalog sizes K (images) to generate, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,1000000")]
    sizes: Vec<u64>,
    /// Also measure PostgreSQL: a server (on this machine) where a scratch database is
    /// created per size through its `postgres` database, and dropped afterwards.
    #[arg(long, env = "ENS_BENCH_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The ens-images binary (default: next to this one, else target/release/ens-images).
    #[arg(long)]
    server: Option<PathBuf>,
    /// ENS_IMAGES_LOG for the servers (default: theirs, one info line per request).
    #[arg(long)]
    server_log: Option<String>,
    /// Also write the Markdown report to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Longest wait for a server to start, and for `admin generate` to finish, in seconds.
    #[arg(long, default_value_t = 1800)]
    start_timeout: u64,
    /// Keep the scratch directory (stores, server and generator logs) and print its path.
    #[arg(long)]
    keep: bool,
}

#[derive(Args)]
struct LoadArgs {
    #[command(flatten)]
    shape: ShapeArgs,
    /// `http://host:port` of the running server; must be a loopback address.
    #[arg(long)]
    endpoint: String,
    /// The scenario to run.
    #[arg(long, value_enum, default_value = "first-page")]
    scenario: Scenario,
    /// AccessKey ID to sign with (default: the generated account the scenario uses).
    #[arg(long, env = "ENS_BENCH_ACCESS_KEY_ID")]
    access_key_id: Option<String>,
    /// Its secret (prefer the environment variable, which stays out of `ps`).
    #[arg(long, env = "ENS_BENCH_ACCESS_KEY_SECRET", hide_env_values = true)]
    access_key_secret: Option<String>,
    /// The JSON `ens-images admin generate` printed: accounts, keys, images and node to use.
    #[arg(long)]
    generated: Option<PathBuf>,
    /// An image of the account (image-id, and the image the writes rename).
    #[arg(long)]
    image_id: Option<String>,
    /// The exact name of an image of the account (name-filter).
    #[arg(long)]
    image_name: Option<String>,
    /// A node with images of the account (region-filter).
    #[arg(long)]
    region: Option<String>,
    /// An instance of the account (CreateImage in mixed and writes).
    #[arg(long)]
    instance_id: Option<String>,
    /// An extra DescribeImages parameter `Name=Value` for every read; repeatable.
    #[arg(long = "param", short = 'p', value_parser = parse_param)]
    params: Vec<(String, String)>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Signature {
    /// ACS3-HMAC-SHA256 (the Tea SDK's default).
    V3,
    /// RPC HMAC-SHA1 (the core SDK).
    V1,
}

impl Signature {
    fn version(self) -> SignatureVersion {
        match self {
            Self::V3 => SignatureVersion::V3,
            Self::V1 => SignatureVersion::V1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::V3 => "V3 (ACS3-HMAC-SHA256)",
            Self::V1 => "V1 (HMAC-SHA1)",
        }
    }
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("expected Name=Value, got {text:?}"))
}

/// A client for `account` on `endpoint`: one per worker, so one connection each.
fn client(endpoint: &str, account: &Account, signature: Signature) -> anyhow::Result<Client> {
    Client::new(
        endpoint,
        account.access_key_id.clone(),
        account.access_key_secret.clone(),
        signature.version(),
    )
    .context("cannot create the client")
}

/// The body size of the account's first page: the size the ceiling answers with, so both
/// move the same bytes.
async fn first_page_bytes(client: &Client, extra: &[(String, String)]) -> anyhow::Result<usize> {
    let response = client
        .send("DescribeImages", extra)
        .await
        .context("the first page got no answer")?;
    scenario::page_of(&response).context("the first page failed")?;
    Ok(response.body.len())
}

/// Checks one answer of `scenario` before it is measured: a read must be right, the
/// ceiling must answer with its size, writes must be acknowledged.
async fn check_scenario(
    client: &Client,
    scenario: Scenario,
    plan: &Plan,
    fixture: &Fixture,
) -> anyhow::Result<()> {
    let context = || format!("checking {}", scenario.name());
    match scenario {
        Scenario::Ceiling => {
            let call = plan.next_call();
            let response = client
                .send_to(call.path, call.action, &call.params)
                .await
                .with_context(context)?;
            let bytes = plan
                .ceiling_bytes()
                .context("the ceiling plan has no body size")?;
            scenario::check_ceiling(&response, bytes).with_context(context)
        }
        Scenario::Mixed | Scenario::Writes => {
            let writes = Plan::new(Scenario::Writes, fixture, &[], scenario::DEFAULT_CEILING_BYTES)?;
            for _ in 0..2 {
                let call = writes.next_call();
                client
                    .call(call.action, &call.params)
                    .await
                    .with_context(|| format!("{} failed", call.action))
                    .with_context(context)?;
            }
            Ok(())
        }
        _ => {
            let deep_total = if scenario == Scenario::DeepPage {
                let response = client
                    .send("DescribeImages", &[("PageSize".to_owned(), "50".to_owned())])
                    .await
                    .with_context(context)?;
                Some(scenario::page_of(&response).with_context(context)?.0)
            } else {
                None
            };
            let response = client
                .send("DescribeImages", plan.read_params())
                .await
                .with_context(context)?;
            let expect = Expect::of(scenario, fixture, deep_total);
            scenario::check_read(plan.read_params(), &response, &expect).with_context(context)
        }
    }
}

/// The cores, CPU model and memory of this machine, for the report.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let field = |file: &str, name: &str| {
        std::fs::read_to_string(file).ok().and_then(|text| {
            text.lines()
                .find(|line| line.starts_with(name))
                .and_then(|line| line.split_once(':'))
                .map(|(_, value)| value.trim().to_owned())
        })
    };
    let cpu = field("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown CPU".to_owned());
    let memory = field("/proc/meminfo", "MemTotal")
        .and_then(|kib| kib.trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or_else(|| "unknown".to_owned(), |kib| report::size(kib * 1024));
    format!("{cores} cores ({cpu}), {memory} RAM")
}

/// The account `load` signs with: from the flags, else the generated account the scenario
/// uses (heavy for deep-page, ordinary otherwise); its fixture from the generated account
/// with that key, overridden by the flags.
fn load_account(args: &LoadArgs) -> anyhow::Result<Account> {
    let generated = args.generated.as_deref().map(Generated::from_file).transpose()?;
    let by_scenario = generated.as_ref().map(|generated| {
        if args.scenario.uses_heavy_account() {
            &generated.heavy
        } else {
            &generated.ordinary
        }
    });
    let known = match &args.access_key_id {
        Some(id) => generated.as_ref().and_then(|generated| {
            [&generated.heavy, &generated.ordinary]
                .into_iter()
                .find(|account| &account.access_key_id == id)
        }),
        None => by_scenario,
    };
    let access_key_id = args
        .access_key_id
        .clone()
        .or_else(|| known.map(|account| account.access_key_id.clone()))
        .context("give --access-key-id (or --generated FILE)")?;
    let access_key_secret = match (&args.access_key_secret, known) {
        (Some(secret), _) => AccessKeySecret::new(secret.clone()),
        (None, Some(account)) => account.access_key_secret.clone(),
        (None, None) => bail!("give the secret in ENS_BENCH_ACCESS_KEY_SECRET or --access-key-secret"),
    };
    // Another key's images or instance would only produce errors: the generated values are
    // used for the generated key they belong to, and nothing else.
    let mut fixture = known.map(|account| account.fixture.clone()).unwrap_or_default();
    let flags = [
        (&mut fixture.image_id, &args.image_id),
        (&mut fixture.image_name, &args.image_name),
        (&mut fixture.region, &args.region),
        (&mut fixture.instance_id, &args.instance_id),
    ];
    for (value, flag) in flags {
        if flag.is_some() {
            value.clone_from(flag);
        }
    }
    Ok(Account {
        access_key_id,
        access_key_secret,
        fixture,
    })
}

async fn load_command(args: LoadArgs) -> anyhow::Result<()> {
    let shape = args.shape.shape()?;
    let endpoint = guard::loopback_endpoint(&args.endpoint).await?;
    let account = load_account(&args)?;
    let signature = args.shape.signature;
    let checker = client(&endpoint, &account, signature)?;
    let ceiling_bytes = if args.scenario == Scenario::Ceiling {
        first_page_bytes(&checker, &args.params).await?
    } else {
        scenario::DEFAULT_CEILING_BYTES
    };
    let plan = Arc::new(Plan::new(
        args.scenario,
        &account.fixture,
        &args.params,
        ceiling_bytes,
    )?);
    check_scenario(&checker, args.scenario, &plan, &account.fixture).await?;
    let make = || client(&endpoint, &account, signature);
    let stats = load::run(&make, Arc::clone(&plan), shape).await?;
    eprintln!("{}", report::summary(args.scenario.name(), &stats));
    println!(
        "Machine: {}.\nLoad: {} on {endpoint}, {} connections, measured {:.1} s after {:.1} s \
         warm-up{}, {} signatures, every request signed afresh.\n",
        machine(),
        args.scenario.name(),
        shape.concurrency,
        stats.elapsed.as_secs_f64(),
        shape.warmup.as_secs_f64(),
        shape
            .requests
            .map_or_else(String::new, |count| format!(", at most {count} requests")),
        signature.name(),
    );
    let mut table = Table::new(&[
        "scenario",
        ">requests",
        ">req/s",
        ">2xx/s",
        ">p50",
        ">p90",
        ">p99",
        ">max",
        "errors by code",
    ]);
    table.push(vec![
        args.scenario.name().to_owned(),
        stats.requests.to_string(),
        format!("{:.0}", stats.throughput()),
        format!("{:.0}", stats.acknowledged_throughput()),
        millis(stats.latency.percentile(0.50)),
        millis(stats.latency.percentile(0.90)),
        millis(stats.latency.percentile(0.99)),
        millis(stats.latency.max()),
        stats.errors.render(),
    ]);
    print!("{}", table.render());
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => suite::run(cli.suite).await,
        Some(Command::Suite(args)) => suite::run(args).await,
        Some(Command::Load(args)) => load_command(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ens-bench: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
