//! Starting a real `ens-images serve` on a generated catalog, in a scratch data directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The line the server prints once it accepts connections.
const READY_PREFIX: &str = "ens-images listening on ";

/// A running ens-images process; killed when dropped.
pub struct Server {
    child: Child,
    /// `http://ADDR` as the server printed it.
    pub endpoint: String,
    /// From spawn to the ready line: store creation, migrations and the catalog load.
    pub startup: Duration,
    /// Where the server's stderr (its log) goes.
    pub log: PathBuf,
}

/// What to start.
pub struct Launch<'a> {
    /// The ens-images binary.
    pub binary: &'a Path,
    /// A fresh, empty data directory.
    pub data_dir: &'a Path,
    /// The catalog file.
    pub catalog: &'a Path,
    /// The owner AccessKey to create on first start.
    pub access_key_id: &'a str,
    /// Its secret.
    pub access_key_secret: &'a str,
    /// `ENS_IMAGES_LOG` for the server, `None` for its default.
    pub log_filter: Option<&'a str>,
    /// How long the start (catalog load included) may take.
    pub timeout: Duration,
}

impl Server {
    /// Spawns the server and waits for its ready line.
    pub async fn start(launch: &Launch<'_>) -> anyhow::Result<Self> {
        let log = launch.data_dir.with_extension("log");
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut command = Command::new(launch.binary);
        command
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(launch.data_dir)
            .arg("--catalog")
            .arg(launch.catalog)
            .arg("--rate-limit")
            .arg("0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true);
        // Only our settings: a stray ENS_IMAGES_TLS_CERT or ENS_IMAGES_RATE_LIMIT in the
        // caller's environment would silently change what is measured.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ENS_IMAGES_") {
                command.env_remove(name);
            }
        }
        command
            .env("ENS_IMAGES_ROOT_ACCESS_KEY_ID", launch.access_key_id)
            .env("ENS_IMAGES_ROOT_ACCESS_KEY_SECRET", launch.access_key_secret);
        if let Some(filter) = launch.log_filter {
            command.env("ENS_IMAGES_LOG", filter);
        }
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot run {}", launch.binary.display()))?;
        let stdout = child.stdout.take().context("the server's stdout is not piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(launch.timeout, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(address) = line.strip_prefix(READY_PREFIX) {
                    return Ok::<_, std::io::Error>(Some(address.trim().to_owned()));
                }
            }
            Ok(None)
        })
        .await;
        let startup = started.elapsed();
        let endpoint = match ready {
            Ok(Ok(Some(endpoint))) => endpoint,
            Ok(Ok(None)) | Ok(Err(_)) => {
                bail!("ens-images exited before it was ready; its log:\n{}", tail(&log))
            }
            Err(_) => bail!(
                "ens-images was not ready after {:?}; its log:\n{}",
                launch.timeout,
                tail(&log)
            ),
        };
        // Keep draining stdout so the server can never block on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            endpoint,
            startup,
            log,
        })
    }

    /// The server's peak resident memory so far (Linux `VmHWM`), to show what a catalog costs
    /// in RAM; `None` where /proc is unavailable.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()?)).ok()?;
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

    /// Stops the server (SIGKILL: the scratch store is thrown away anyway).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await.context("cannot stop ens-images")
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
