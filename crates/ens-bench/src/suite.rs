//! `ens-bench suite`: the whole results table, regenerated from nothing.
//!
//! For each backend and catalog size: a scratch store (and database), initialised by a first
//! `serve` (migrations), filled by `admin generate`, then served again — that second start
//! is the cold start the target is about — and measured: the ceiling first, then every
//! scenario, each checked before it is measured.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::postgres::ScratchDatabase;
use crate::report::{Backend, Footprint, Report, Row};
use crate::scenario::{Plan, Scenario};
use crate::server::{Account, Server, Store};
use crate::stats::Stats;
use crate::{check_scenario, client, first_page_bytes, guard, load, report, server, Signature, SuiteArgs};

/// Runs the suite and prints (and maybe writes) the report.
///
/// # Errors
/// When a store cannot be made, a server cannot start, or a checked answer is wrong.
pub async fn run(args: SuiteArgs) -> anyhow::Result<()> {
    let shape = args.shape.shape()?;
    if args.sizes.is_empty() || args.sizes.contains(&0) {
        bail!("--sizes must list catalog sizes of at least 1 image");
    }
    let binary = args.server.clone().unwrap_or_else(default_server_binary);
    if !binary.is_file() {
        bail!(
            "ens-images binary not found at {}; build it with `cargo build --release -p ens-images` \
             or pass --server",
            binary.display()
        );
    }
    let mut backends = vec![Backend::Sqlite];
    if let Some(url) = args.database_url.as_deref().filter(|url| !url.is_empty()) {
        let host = crate::postgres::host_port(url)?;
        guard::loopback_endpoint(&format!("http://{host}"))
            .await
            .context("the PostgreSQL server must be on this machine")?;
        backends.push(Backend::Postgres);
    }
    let scratch = tempfile::Builder::new()
        .prefix("ens-bench-")
        .tempdir()
        .context("cannot create a scratch directory")?;
    let machine = crate::machine();
    eprintln!(
        "machine: {machine}\nserver: {}\nscratch: {}",
        binary.display(),
        scratch.path().display()
    );

    let mut report = Report {
        machine,
        commands: commands(&binary),
        concurrency: shape.concurrency,
        load_notes: format!(
            "{} keep-alive connections, {:.0} s per scenario{} after {:.1} s warm-up, {} \
             signatures with a fresh nonce and timestamp each; the load generator and the server \
             share the machine's cores",
            shape.concurrency,
            shape.duration.as_secs_f64(),
            shape
                .requests
                .map_or_else(String::new, |count| format!(" (at most {count} requests)")),
            shape.warmup.as_secs_f64(),
            args.shape.signature.name(),
        ),
        rows: Vec::new(),
        footprints: Vec::new(),
    };
    for backend in backends {
        for &k in &args.sizes {
            let run = Run {
                args: &args,
                binary: &binary,
                shape,
                backend,
                k,
                dir: scratch
                    .path()
                    .join(format!("{}-{k}", backend.name().to_lowercase())),
            };
            run.execute(&mut report).await?;
        }
    }
    let markdown = report::render(&report);
    print!("{markdown}");
    if let Some(path) = &args.report {
        std::fs::write(path, &markdown).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.keep {
        let kept = scratch.keep();
        eprintln!("scratch directory kept: {}", kept.display());
    }
    Ok(())
}

/// How the suite ran, for the report: this command and the ones it ran for each store.
fn commands(binary: &Path) -> Vec<String> {
    let invocation: Vec<String> = std::env::args().map(|arg| redact_password(&arg)).collect();
    let binary = binary.display();
    vec![
        invocation.join(" "),
        "# per backend and K, on a fresh DIR (and, for PostgreSQL, a fresh database passed as \
         ENS_IMAGES_DATABASE_URL):"
            .to_owned(),
        format!(
            "{binary} {} --data-dir DIR   # once, to apply migrations; stopped",
            server::SERVE_ARGS.join(" ")
        ),
        format!(
            "{binary} admin generate --images K --accounts max(2,K/100) --heavy-images K/10 \
             --data-dir DIR"
        ),
        format!(
            "{binary} {} --data-dir DIR   # measured: cold start, then the scenarios",
            server::SERVE_ARGS.join(" ")
        ),
    ]
}

/// `text` with the password of a `scheme://user:password@host` URL in it replaced by `***`,
/// so a `--database-url` given on the command line does not end up in a published report.
fn redact_password(text: &str) -> String {
    let Some(scheme_end) = text.find("://").map(|at| at + 3) else {
        return text.to_owned();
    };
    let rest = &text[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rsplit_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split_once(':').map_or(user_info, |(user, _)| user);
            format!(
                "{}{user}:***@{host}{}",
                &text[..scheme_end],
                &rest[authority_end..]
            )
        }
        _ => text.to_owned(),
    }
}

/// One (backend, K) of the suite.
struct Run<'a> {
    args: &'a SuiteArgs,
    binary: &'a Path,
    shape: guard::Shape,
    backend: Backend,
    k: u64,
    dir: PathBuf,
}

impl Run<'_> {
    fn label(&self) -> String {
        format!("{} K={}", self.backend.name(), self.k)
    }

    /// Makes the store, measures it, and always removes the scratch database.
    async fn execute(&self, report: &mut Report) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let database = match (self.backend, self.args.database_url.as_deref()) {
            (Backend::Postgres, Some(url)) => {
                let name = format!("ens_bench_{}_{}", std::process::id(), self.k);
                Some(ScratchDatabase::create(url, &name).await?)
            }
            _ => None,
        };
        let outcome = self.measure(database.as_ref(), report).await;
        let dropped = match database {
            Some(database) => database.drop_database().await,
            None => Ok(()),
        };
        // The stores are large; keep only what was asked for.
        if !self.args.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        outcome.with_context(|| self.label())?;
        dropped
    }

    async fn measure(&self, database: Option<&ScratchDatabase>, report: &mut Report) -> anyhow::Result<()> {
        let data_dir = self.dir.join("data");
        let store = Store {
            data_dir: &data_dir,
            database_url: database.map(|database| database.url.as_str()),
        };
        let timeout = Duration::from_secs(self.args.start_timeout);
        let log_filter = self.args.server_log.as_deref();
        let label = self.label();

        let first = Server::start(self.binary, store, log_filter, self.dir.join("init.log"), timeout).await?;
        eprintln!(
            "{label}: store initialised, first start {:.2} s",
            first.ready.as_secs_f64()
        );
        first.stop().await?;

        eprintln!("{label}: generating ...");
        let (generated, generation) = tokio::time::timeout(
            timeout,
            server::generate(self.binary, store, self.k, &self.dir.join("generate.log")),
        )
        .await
        .with_context(|| format!("admin generate took longer than {timeout:?}"))??;
        eprintln!(
            "{label}: generated {} images, {} accounts, {} heavy images, {} shares in {:.2} s",
            generated.images,
            generated.accounts,
            generated.heavy_images,
            generated.shares,
            generation.as_secs_f64()
        );
        if let Some(database) = database {
            database.analyze().await?;
        }

        let server = Server::start(
            self.binary,
            store,
            log_filter,
            self.dir.join("serve.log"),
            timeout,
        )
        .await?;
        eprintln!(
            "{label}: cold start {:.2} s to listening, {:.2} s to ready",
            server.listening.as_secs_f64(),
            server.ready.as_secs_f64()
        );
        let endpoint = guard::loopback_endpoint(&server.endpoint).await?;
        let signature = self.args.shape.signature;

        let ordinary = client(&endpoint, &generated.ordinary, signature)?;
        let bytes = first_page_bytes(&ordinary, &[]).await?;
        let ceiling = self
            .scenario(
                &endpoint,
                &generated.ordinary,
                Scenario::Ceiling,
                &[],
                bytes,
                signature,
            )
            .await?;
        let ceiling_rate = ceiling.throughput();
        report
            .rows
            .push(self.row(Scenario::Ceiling, ceiling, ceiling_rate));
        for scenario in Scenario::MEASURED {
            let account = if scenario.uses_heavy_account() {
                &generated.heavy
            } else {
                &generated.ordinary
            };
            let extra = if scenario == Scenario::DeepPage {
                deep_page_at(generated.heavy_images)
            } else {
                Vec::new()
            };
            let stats = self
                .scenario(&endpoint, account, scenario, &extra, bytes, signature)
                .await?;
            report.rows.push(self.row(scenario, stats, ceiling_rate));
        }

        let peak_rss = server.peak_rss_bytes();
        let (listening, ready) = (server.listening, server.ready);
        server.stop().await?;
        let store_bytes = match database {
            Some(database) => database.size_bytes().await.ok(),
            None => Some(directory_size(&data_dir)),
        };
        report.footprints.push(Footprint {
            backend: self.backend,
            k: self.k,
            generated: [
                generated.images,
                generated.accounts,
                generated.heavy_images,
                generated.shares,
            ],
            generation,
            listening,
            ready,
            peak_rss,
            store_bytes,
        });
        Ok(())
    }

    async fn scenario(
        &self,
        endpoint: &str,
        account: &Account,
        scenario: Scenario,
        extra: &[(String, String)],
        ceiling_bytes: usize,
        signature: Signature,
    ) -> anyhow::Result<Stats> {
        let plan = Arc::new(Plan::new(scenario, &account.fixture, extra, ceiling_bytes)?);
        let checker = client(endpoint, account, signature)?;
        check_scenario(&checker, scenario, &plan, &account.fixture).await?;
        let make = || client(endpoint, account, signature);
        let stats = load::run(&make, plan, self.shape).await?;
        eprintln!(
            "{}",
            report::summary(&format!("{} {}", self.label(), scenario.name()), &stats)
        );
        Ok(stats)
    }

    fn row(&self, scenario: Scenario, stats: Stats, ceiling: f64) -> Row {
        Row {
            backend: self.backend,
            k: self.k,
            scenario,
            stats,
            ceiling,
        }
    }
}

/// Bytes of the files under `path`, recursively.
fn directory_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(metadata) if metadata.is_dir() => directory_size(&entry.path()),
            Ok(metadata) => metadata.len(),
            Err(_) => 0,
        })
        .sum()
}

fn default_server_binary() -> PathBuf {
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("ens-images")))
        .filter(|path| path.is_file());
    sibling.unwrap_or_else(|| PathBuf::from("target/release/ens-images"))
}

/// The page `deep-page` asks the heavy account for: page 2000 of 50 (images 99 951 to 100 000)
/// when it owns that many, else its deepest full page. A page past the end would come back
/// empty and cheap, and comparing it with a full one says nothing about the catalog's size.
fn deep_page_at(heavy_images: u64) -> Vec<(String, String)> {
    let page = (heavy_images / 50).clamp(1, 2000);
    vec![("PageNumber".to_owned(), page.to_string())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deep_page_is_page_2000_or_the_deepest_full_one() {
        let page = |heavy| deep_page_at(heavy)[0].1.clone();
        assert_eq!(page(100_000), "2000");
        assert_eq!(page(1_000_000), "2000");
        assert_eq!(page(100), "2");
        assert_eq!(page(10), "1");
    }

    #[test]
    fn passwords_in_urls_are_redacted_and_the_rest_kept() {
        assert_eq!(
            redact_password("--database-url=postgres://bench:s3cr:et@127.0.0.1:5432/db?x=1"),
            "--database-url=postgres://bench:***@127.0.0.1:5432/db?x=1"
        );
        assert_eq!(
            redact_password("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
        assert_eq!(redact_password("--sizes"), "--sizes");
    }
}
