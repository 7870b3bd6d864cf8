//! Running the real `ens-images` binary: `serve` on a scratch store (timing the cold start)
//! and `admin generate` to fill that store.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ens_client::{AccessKeySecret, Client, SignatureVersion};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::scenario::Fixture;

/// The line the server prints once it accepts connections.
const READY_PREFIX: &str = "ens-images listening on ";
/// How often `/readyz` is polled after the listening line.
const READY_POLL: Duration = Duration::from_millis(1);
/// How long a stopping server may take to drain before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Where a store lives: the data directory, plus a PostgreSQL database when set.
#[derive(Clone, Copy)]
pub struct Store<'a> {
    /// `--data-dir`: the SQLite file, or the master key and credentials next to PostgreSQL.
    pub data_dir: &'a Path,
    /// `--database-url`, passed as `ENS_IMAGES_DATABASE_URL` so a password stays out of `ps`.
    pub database_url: Option<&'a str>,
}

/// An `ens-images` command with only our settings: a stray `ENS_IMAGES_RATE_LIMIT` or
/// `ENS_IMAGES_TLS_CERT` in the caller's environment would silently change what is measured.
fn command(binary: &Path, store: Store<'_>) -> Command {
    let mut command = Command::new(binary);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ENS_IMAGES_") {
            command.env_remove(name);
        }
    }
    if let Some(url) = store.database_url {
        command.env("ENS_IMAGES_DATABASE_URL", url);
    }
    command.stdin(Stdio::null()).kill_on_drop(true);
    command
}

/// The serve arguments every benchmark server gets, besides its `--data-dir`.
pub const SERVE_ARGS: [&str; 8] = [
    "serve",
    "--listen",
    "127.0.0.1:0",
    "--rate-limit",
    "0",
    "--image-build-seconds",
    "0",
    "--bench-ceiling",
];

/// A running `ens-images serve`; killed if dropped without [`Server::stop`].
pub struct Server {
    child: Child,
    /// `http://ADDR` as the server printed it.
    pub endpoint: String,
    /// From spawn to the listening line.
    pub listening: Duration,
    /// From spawn to the first 200 from `/readyz`.
    pub ready: Duration,
}

impl Server {
    /// Spawns the server on `store` and waits until it is listening and `/readyz` says 200.
    ///
    /// # Errors
    /// When it cannot start, exits, or is not ready within `timeout`.
    pub async fn start(
        binary: &Path,
        store: Store<'_>,
        log_filter: Option<&str>,
        log: PathBuf,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut command = command(binary, store);
        command
            .args(SERVE_ARGS)
            .arg("--data-dir")
            .arg(store.data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file));
        if let Some(filter) = log_filter {
            command.env("ENS_IMAGES_LOG", filter);
        }
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        let stdout = child.stdout.take().context("the server's stdout is not piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready_line = tokio::time::timeout(timeout, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(address) = line.strip_prefix(READY_PREFIX) {
                    return Ok::<_, std::io::Error>(Some(address.trim().to_owned()));
                }
            }
            Ok(None)
        })
        .await;
        let listening = started.elapsed();
        let endpoint = match ready_line {
            Ok(Ok(Some(endpoint))) => endpoint,
            Ok(Ok(None) | Err(_)) => {
                bail!("ens-images exited before it was ready; its log:\n{}", tail(&log))
            }
            Err(_) => bail!(
                "ens-images was not listening after {timeout:?}; its log:\n{}",
                tail(&log)
            ),
        };
        // Keep draining stdout so the server can never block on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let probe = Client::new(
            &endpoint,
            "",
            AccessKeySecret::new(String::new()),
            SignatureVersion::V3,
        )
        .context("the server printed an endpoint the client cannot use")?;
        let deadline = started + timeout;
        loop {
            if let Ok(response) = probe.get("/readyz").await {
                if response.status == 200 {
                    break;
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "ens-images was not ready after {timeout:?}; its log:\n{}",
                    tail(&log)
                );
            }
            tokio::time::sleep(READY_POLL).await;
        }
        let ready = started.elapsed();
        Ok(Self {
            child,
            endpoint,
            listening,
            ready,
        })
    }

    /// The server's peak resident memory so far (Linux `VmHWM`); `None` where /proc is
    /// unavailable.
    #[must_use]
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()?)).ok()?;
        vm_hwm_bytes(&status)
    }

    /// Stops the server the way an operator would (SIGTERM, so it drains and closes its
    /// store cleanly: the next start must not pay for a crash recovery), and kills it if it
    /// has not exited within a grace period.
    ///
    /// # Errors
    /// When it cannot be signalled or waited for.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let status = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await
                .context("cannot run kill")?;
            if status.success() {
                if let Ok(exit) = tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
                    exit.context("cannot wait for ens-images")?;
                    return Ok(());
                }
            }
        }
        self.child.kill().await.context("cannot stop ens-images")
    }
}

/// `VmHWM` of a `/proc/PID/status` text, in bytes.
fn vm_hwm_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// One sample account of a generated store, as `admin generate` prints it (an account
/// without an image or instance gets `null` there).
#[derive(Deserialize)]
struct GeneratedAccount {
    access_key_id: String,
    access_key_secret: String,
    instance_id: Option<String>,
    image_id: Option<String>,
    image_name: Option<String>,
}

/// What `admin generate` prints on stdout.
#[derive(Deserialize)]
struct GeneratedJson {
    images: u64,
    accounts: u64,
    heavy_images: u64,
    shares: u64,
    heavy: GeneratedAccount,
    ordinary: Option<GeneratedAccount>,
    node: Option<String>,
}

/// A sample account to call with, and the values its scenarios use.
#[derive(Clone)]
pub struct Account {
    /// Its AccessKey ID.
    pub access_key_id: String,
    /// Its AccessKey secret.
    pub access_key_secret: AccessKeySecret,
    /// Its image, image name, instance, and a node its image is on.
    pub fixture: Fixture,
}

/// A generated store's sample accounts and sizes.
pub struct Generated {
    /// Images in the store.
    pub images: u64,
    /// Accounts in the store.
    pub accounts: u64,
    /// Own images of the heavy account.
    pub heavy_images: u64,
    /// Share grants in the store.
    pub shares: u64,
    /// The account with many own images (`deep-page`).
    pub heavy: Account,
    /// An ordinary account (every other scenario).
    pub ordinary: Account,
}

impl Generated {
    /// Reads `admin generate`'s JSON (the last JSON object on its stdout, should anything
    /// else be printed before it).
    ///
    /// # Errors
    /// When there is no such object or a field is missing.
    pub fn parse(stdout: &str) -> anyhow::Result<Self> {
        let json: GeneratedJson = match serde_json::from_str(stdout) {
            Ok(json) => json,
            Err(whole) => {
                let line = stdout
                    .lines()
                    .rev()
                    .find(|line| line.trim_start().starts_with('{'))
                    .with_context(|| format!("admin generate printed no JSON: {whole}"))?;
                serde_json::from_str(line).context("admin generate printed unexpected JSON")?
            }
        };
        let account = |sample: GeneratedAccount, region: Option<String>| Account {
            access_key_id: sample.access_key_id,
            access_key_secret: AccessKeySecret::new(sample.access_key_secret),
            fixture: Fixture {
                image_id: sample.image_id,
                image_name: sample.image_name,
                region,
                instance_id: sample.instance_id,
            },
        };
        let ordinary = json
            .ordinary
            .context("admin generate made no ordinary account (give it --accounts 1 or more)")?;
        Ok(Self {
            images: json.images,
            accounts: json.accounts,
            heavy_images: json.heavy_images,
            shares: json.shares,
            heavy: account(json.heavy, None),
            ordinary: account(ordinary, json.node),
        })
    }

    /// Reads a file holding `admin generate`'s output.
    ///
    /// # Errors
    /// When it cannot be read or parsed.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("{} is not admin generate output", path.display()))
    }
}

/// The arguments of `admin generate` for a catalog of `images` images: one account per
/// hundred images (at least 2), a tenth of the images on the heavy account.
#[must_use]
pub fn generate_args(images: u64) -> Vec<String> {
    vec![
        "admin".into(),
        "generate".into(),
        "--images".into(),
        images.to_string(),
        "--accounts".into(),
        (images / 100).max(2).to_string(),
        "--heavy-images".into(),
        (images / 10).to_string(),
    ]
}

/// Runs `admin generate` on `store`; returns its result and how long it took.
///
/// # Errors
/// When it fails or prints something else than its JSON.
pub async fn generate(
    binary: &Path,
    store: Store<'_>,
    images: u64,
    log: &Path,
) -> anyhow::Result<(Generated, Duration)> {
    let log_file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut command = command(binary, store);
    command
        .args(generate_args(images))
        .arg("--data-dir")
        .arg(store.data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file));
    let started = Instant::now();
    let output = command
        .output()
        .await
        .with_context(|| format!("cannot run {} admin generate", binary.display()))?;
    let elapsed = started.elapsed();
    if !output.status.success() {
        bail!(
            "admin generate failed ({}); its log:\n{}",
            output.status,
            tail(log)
        );
    }
    let generated = Generated::parse(&String::from_utf8_lossy(&output.stdout))?;
    Ok((generated, elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_is_read_from_vm_hwm() {
        let status = "Name:\tens-images\nVmPeak:\t  200000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(vm_hwm_bytes(status), Some(20 * 1024 * 1024));
        assert_eq!(vm_hwm_bytes("Name:\tx\n"), None);
    }

    #[test]
    fn generate_output_gives_both_accounts_and_the_node() {
        let sample = |name: &str| {
            serde_json::json!({
                "account": 1_000_000_001_u64, "access_key_id": format!("{name}-key"),
                "access_key_secret": "s", "instance_id": format!("i-{name}"),
                "image_id": format!("m-{name}"), "image_name": format!("{name}-image"),
            })
        };
        let json = serde_json::json!({
            "images": 1000, "accounts": 10, "heavy_images": 100, "shares": 5, "elapsed_ms": 12,
            "heavy": sample("heavy"), "ordinary": sample("ordinary"), "node": "cn-dalian-unicom",
        });
        let text = format!("some note\n{json}\n");
        let generated = Generated::parse(&text).unwrap();
        assert_eq!(generated.images, 1000);
        assert_eq!(generated.heavy.access_key_id, "heavy-key");
        assert_eq!(
            generated.ordinary.fixture.region.as_deref(),
            Some("cn-dalian-unicom")
        );
        assert_eq!(generated.heavy.fixture.region, None);
        assert_eq!(
            generated.ordinary.fixture.instance_id.as_deref(),
            Some("i-ordinary")
        );
        assert!(Generated::parse("nothing").is_err());
        let mut lean = json.clone();
        lean["heavy"]["image_id"] = serde_json::Value::Null;
        lean["node"] = serde_json::Value::Null;
        let generated = Generated::parse(&lean.to_string()).unwrap();
        assert_eq!(generated.heavy.fixture.image_id, None);
        assert_eq!(generated.ordinary.fixture.region, None);
        lean["ordinary"] = serde_json::Value::Null;
        assert!(Generated::parse(&lean.to_string()).is_err());
    }

    #[test]
    fn generate_sizes_follow_the_catalog() {
        assert_eq!(
            generate_args(1000)[2..],
            ["--images", "1000", "--accounts", "10", "--heavy-images", "100"]
        );
        assert_eq!(generate_args(50)[5], "2");
    }
}
