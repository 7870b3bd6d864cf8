//! The Markdown report of a suite run, and the project's performance targets evaluated on
//! it, so a regenerated table says PASS or MISS by itself instead of leaving it to a reader.

use std::fmt::Write as _;
use std::time::Duration;

use crate::scenario::Scenario;
use crate::stats::Stats;

/// The first-page target: at least this share of the ceiling's throughput ...
const FIRST_PAGE_MIN_RATIO: f64 = 0.5;
/// ... with a p99 under this ...
const FIRST_PAGE_MAX_P99: Duration = Duration::from_millis(5);
/// ... at this many connections.
const FIRST_PAGE_CONNECTIONS: usize = 64;
/// A scenario at the largest K keeps at least this share of its smallest-K throughput.
const SCALING_MIN_RATIO: f64 = 0.8;
/// Peak server memory at the largest K.
const MAX_PEAK_RSS: u64 = 512 * 1024 * 1024;
/// Spawn to ready at the largest K.
const MAX_COLD_START: Duration = Duration::from_secs(2);
/// Acknowledged (2xx) writes per second on SQLite.
const MIN_SQLITE_WRITES: f64 = 2000.0;

/// A storage engine of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Backend {
    /// The embedded store.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// The name in the report.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }
}

/// One measured scenario.
pub struct Row {
    /// The store.
    pub backend: Backend,
    /// Images in the catalog.
    pub k: u64,
    /// What was sent.
    pub scenario: Scenario,
    /// What was seen.
    pub stats: Stats,
    /// The ceiling's throughput in the same (backend, K) run, the reference of the ratio.
    pub ceiling: f64,
}

impl Row {
    /// Throughput as a share of the ceiling's.
    #[must_use]
    pub fn ratio(&self) -> Option<f64> {
        (self.ceiling > 0.0).then(|| self.stats.throughput() / self.ceiling)
    }
}

/// The cost of one (backend, K) store outside the request path.
pub struct Footprint {
    /// The store.
    pub backend: Backend,
    /// Images asked of the generator.
    pub k: u64,
    /// Images, accounts, heavy account's images and shares the generator reported.
    pub generated: [u64; 4],
    /// Wall time of `admin generate`.
    pub generation: Duration,
    /// Spawn to the listening line, on the generated store.
    pub listening: Duration,
    /// Spawn to the first 200 from `/readyz`, on the generated store.
    pub ready: Duration,
    /// The server's VmHWM at the end of the run.
    pub peak_rss: Option<u64>,
    /// The store's size on disk at the end of the run.
    pub store_bytes: Option<u64>,
}

/// Everything a suite run produced.
pub struct Report {
    /// Cores, CPU model, memory.
    pub machine: String,
    /// How the run was made, one command a line.
    pub commands: Vec<String>,
    /// Connections per scenario.
    pub concurrency: usize,
    /// How long, after which warm-up, which signature.
    pub load_notes: String,
    /// The measured scenarios, ceilings included.
    pub rows: Vec<Row>,
    /// One per (backend, K).
    pub footprints: Vec<Footprint>,
}

/// A Markdown table: a header, per-column alignment, rows of cells.
pub struct Table {
    header: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns; names starting with `>` are right-aligned (numbers).
    #[must_use]
    pub fn new(columns: &[&'static str]) -> Self {
        Self {
            header: columns.iter().map(|c| c.trim_start_matches('>')).collect(),
            right: columns.iter().map(|c| c.starts_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells render empty, extra ones are dropped).
    pub fn push(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table in GitHub-flavoured Markdown; `|` in a cell is escaped.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = format!("| {} |\n|", self.header.join(" | "));
        for right in &self.right {
            out.push_str(if *right { "---:|" } else { "---|" });
        }
        out.push('\n');
        for row in &self.rows {
            out.push('|');
            for index in 0..self.header.len() {
                let cell = row.get(index).map_or("", String::as_str);
                let _ = write!(out, " {} |", cell.replace('|', "\\|"));
            }
            out.push('\n');
        }
        out
    }
}

/// Milliseconds with two decimals.
#[must_use]
pub fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

/// Seconds with two decimals.
fn seconds(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

/// A byte count in GiB, MiB or KiB, whichever keeps the number readable.
#[must_use]
pub fn size(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    const GIB: f64 = 1024.0 * MIB;
    if bytes as f64 >= GIB {
        format!("{:.2} GiB", bytes as f64 / GIB)
    } else if bytes as f64 >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

fn ratio_text(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.2}"))
}

/// One line of a single run's figures, for progress output and `ens-bench load`.
#[must_use]
pub fn summary(label: &str, stats: &Stats) -> String {
    let mut line = format!(
        "{label}: {} requests, {:.0} req/s, p50 {}, p90 {}, p99 {}, max {}, errors {}",
        stats.requests,
        stats.throughput(),
        millis(stats.latency.percentile(0.50)),
        millis(stats.latency.percentile(0.90)),
        millis(stats.latency.percentile(0.99)),
        millis(stats.latency.max()),
        stats.errors.render(),
    );
    if let Some(error) = &stats.first_transport_error {
        let _ = write!(line, " (first transport error: {error})");
    }
    line
}

/// The scenario table.
fn scenario_table(rows: &[Row]) -> Table {
    let mut table = Table::new(&[
        "backend",
        ">K",
        "scenario",
        ">requests",
        ">req/s",
        ">vs ceiling",
        ">p50",
        ">p90",
        ">p99",
        ">max",
        "errors by code",
    ]);
    for row in rows {
        let stats = &row.stats;
        table.push(vec![
            row.backend.name().to_owned(),
            row.k.to_string(),
            row.scenario.name().to_owned(),
            stats.requests.to_string(),
            format!("{:.0}", stats.throughput()),
            ratio_text(row.ratio()),
            millis(stats.latency.percentile(0.50)),
            millis(stats.latency.percentile(0.90)),
            millis(stats.latency.percentile(0.99)),
            millis(stats.latency.max()),
            stats.errors.render(),
        ]);
    }
    table
}

fn footprint_table(footprints: &[Footprint]) -> Table {
    let mut table = Table::new(&[
        "backend",
        ">K",
        ">images / accounts / heavy / shares",
        ">generation",
        ">cold start: listening",
        ">cold start: ready",
        ">peak RSS",
        ">store on disk",
    ]);
    for footprint in footprints {
        let [images, accounts, heavy, shares] = footprint.generated;
        table.push(vec![
            footprint.backend.name().to_owned(),
            footprint.k.to_string(),
            format!("{images} / {accounts} / {heavy} / {shares}"),
            seconds(footprint.generation),
            seconds(footprint.listening),
            seconds(footprint.ready),
            footprint.peak_rss.map_or_else(|| "-".to_owned(), size),
            footprint.store_bytes.map_or_else(|| "-".to_owned(), size),
        ]);
    }
    table
}

/// One evaluated target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// What is required.
    pub requirement: String,
    /// The store it was measured on.
    pub backend: Backend,
    /// The measured figure.
    pub figure: String,
    /// Whether the figure meets the requirement.
    pub pass: bool,
}

fn find(rows: &[Row], backend: Backend, k: u64, scenario: Scenario) -> Option<&Row> {
    rows.iter()
        .find(|row| row.backend == backend && row.k == k && row.scenario == scenario)
}

/// Evaluates the project's targets on a run, per backend, at its largest (and smallest) K.
#[must_use]
pub fn targets(report: &Report) -> Vec<Target> {
    let mut backends: Vec<Backend> = report.rows.iter().map(|row| row.backend).collect();
    backends.sort_unstable();
    backends.dedup();
    let mut targets = Vec::new();
    let missing = |requirement: String, backend| Target {
        requirement,
        backend,
        figure: "not measured".to_owned(),
        pass: false,
    };
    for backend in backends {
        let sizes = report
            .rows
            .iter()
            .filter(|row| row.backend == backend)
            .map(|row| row.k);
        let (Some(smallest), Some(largest)) = (sizes.clone().min(), sizes.max()) else {
            continue;
        };

        let requirement = format!(
            "first-page at K={largest}: ≥ {FIRST_PAGE_MIN_RATIO} of ceiling and p99 < {} at \
             {FIRST_PAGE_CONNECTIONS} connections",
            millis(FIRST_PAGE_MAX_P99)
        );
        targets.push(match find(&report.rows, backend, largest, Scenario::FirstPage) {
            Some(row) => {
                let p99 = row.stats.latency.percentile(0.99);
                let ratio = row.ratio().unwrap_or(0.0);
                let mut figure = format!(
                    "{ratio:.2} of ceiling, p99 {} at {} connections",
                    millis(p99),
                    report.concurrency
                );
                let at_target_load = report.concurrency == FIRST_PAGE_CONNECTIONS;
                if !at_target_load {
                    let _ = write!(figure, " (the target is at {FIRST_PAGE_CONNECTIONS})");
                }
                Target {
                    requirement,
                    backend,
                    figure,
                    pass: at_target_load && ratio >= FIRST_PAGE_MIN_RATIO && p99 < FIRST_PAGE_MAX_P99,
                }
            }
            None => missing(requirement, backend),
        });

        if largest > smallest {
            for scenario in Scenario::MEASURED {
                let requirement = format!(
                    "{} req/s at K={largest} ≥ {:.0} % of K={smallest}",
                    scenario.name(),
                    SCALING_MIN_RATIO * 100.0
                );
                let small = find(&report.rows, backend, smallest, scenario);
                let large = find(&report.rows, backend, largest, scenario);
                targets.push(match (small, large) {
                    (Some(small), Some(large)) => {
                        let (before, after) = (small.stats.throughput(), large.stats.throughput());
                        let ratio = if before > 0.0 { after / before } else { 0.0 };
                        Target {
                            requirement,
                            backend,
                            figure: format!(
                                "{before:.0} → {after:.0} req/s ({:+.0} %)",
                                (ratio - 1.0) * 100.0
                            ),
                            pass: ratio >= SCALING_MIN_RATIO,
                        }
                    }
                    _ => missing(requirement, backend),
                });
            }
        }

        let footprint = report
            .footprints
            .iter()
            .find(|footprint| footprint.backend == backend && footprint.k == largest);
        let requirement = format!("peak RSS at K={largest} < {}", size(MAX_PEAK_RSS));
        targets.push(match footprint.and_then(|footprint| footprint.peak_rss) {
            Some(peak) => Target {
                requirement,
                backend,
                figure: size(peak),
                pass: peak < MAX_PEAK_RSS,
            },
            None => missing(requirement, backend),
        });
        let requirement = format!("cold start to ready at K={largest} < {}", seconds(MAX_COLD_START));
        targets.push(match footprint {
            Some(footprint) => Target {
                requirement,
                backend,
                figure: seconds(footprint.ready),
                pass: footprint.ready < MAX_COLD_START,
            },
            None => missing(requirement, backend),
        });

        if backend == Backend::Sqlite {
            let mut sizes: Vec<u64> = report
                .rows
                .iter()
                .filter(|row| row.backend == backend)
                .map(|row| row.k)
                .collect();
            sizes.sort_unstable();
            sizes.dedup();
            for k in sizes {
                let requirement =
                    format!("writes at K={k} ≥ {MIN_SQLITE_WRITES:.0} acknowledged (2xx) req/s");
                targets.push(match find(&report.rows, backend, k, Scenario::Writes) {
                    Some(row) => {
                        let acknowledged = row.stats.acknowledged_throughput();
                        Target {
                            requirement,
                            backend,
                            figure: format!("{acknowledged:.0} req/s"),
                            pass: acknowledged >= MIN_SQLITE_WRITES,
                        }
                    }
                    None => missing(requirement, backend),
                });
            }
        }
    }
    targets
}

/// The whole report in Markdown.
#[must_use]
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Machine: {}.\n", report.machine);
    let _ = writeln!(out, "Load: {}.\n", report.load_notes);
    let _ = writeln!(out, "### Scenarios\n\n{}", scenario_table(&report.rows).render());
    let _ = writeln!(
        out,
        "### Store and start-up\n\n{}",
        footprint_table(&report.footprints).render()
    );
    let mut table = Table::new(&["target", "backend", "figure", "result"]);
    for target in targets(report) {
        table.push(vec![
            target.requirement,
            target.backend.name().to_owned(),
            target.figure,
            if target.pass { "PASS" } else { "MISS" }.to_owned(),
        ]);
    }
    let _ = writeln!(out, "### Targets\n\n{}", table.render());
    let _ = writeln!(out, "### Commands\n\n```sh");
    for command in &report.commands {
        let _ = writeln!(out, "{command}");
    }
    out.push_str("```\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Histogram;

    fn stats(answers: u64, ok: u64, latency_us: u64) -> Stats {
        let mut latency = Histogram::default();
        for _ in 0..answers {
            latency.record(Duration::from_micros(latency_us));
        }
        Stats {
            requests: answers,
            ok,
            elapsed: Duration::from_secs(1),
            latency,
            ..Stats::default()
        }
    }

    fn row(backend: Backend, k: u64, scenario: Scenario, rate: u64, latency_us: u64) -> Row {
        Row {
            backend,
            k,
            scenario,
            stats: stats(rate, rate, latency_us),
            ceiling: 10_000.0,
        }
    }

    fn footprint(k: u64, peak_mib: u64, ready_ms: u64) -> Footprint {
        Footprint {
            backend: Backend::Sqlite,
            k,
            generated: [k, 10, k / 10, 5],
            generation: Duration::from_secs(1),
            listening: Duration::from_millis(ready_ms / 2),
            ready: Duration::from_millis(ready_ms),
            peak_rss: Some(peak_mib * 1024 * 1024),
            store_bytes: Some(1024),
        }
    }

    fn report(rows: Vec<Row>, footprints: Vec<Footprint>, concurrency: usize) -> Report {
        Report {
            machine: "2 cores".into(),
            commands: vec!["ens-bench suite".into()],
            concurrency,
            load_notes: "64 connections".into(),
            rows,
            footprints,
        }
    }

    fn result<'a>(targets: &'a [Target], prefix: &str) -> &'a Target {
        targets
            .iter()
            .find(|target| target.requirement.starts_with(prefix))
            .unwrap_or_else(|| panic!("no target {prefix}: {targets:?}"))
    }

    #[test]
    fn sizes_pick_a_readable_unit() {
        assert_eq!(size(512), "0.5 KiB");
        assert_eq!(size(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(size(3 * 1024 * 1024 * 1024 / 2), "1.50 GiB");
    }

    #[test]
    fn a_small_table_renders_as_markdown_with_alignment_and_escapes() {
        let mut table = Table::new(&["name", ">value"]);
        table.push(vec!["a|b".into(), "1".into()]);
        table.push(vec!["short".into()]);
        assert_eq!(
            table.render(),
            "| name | value |\n|---|---:|\n| a\\|b | 1 |\n| short |  |\n"
        );
    }

    #[test]
    fn targets_pass_and_miss_on_their_thresholds() {
        let sqlite = Backend::Sqlite;
        let mut rows = vec![
            row(sqlite, 1000, Scenario::FirstPage, 6000, 2_000),
            row(sqlite, 1_000_000, Scenario::FirstPage, 5000, 4_900),
            row(sqlite, 1000, Scenario::DeepPage, 3000, 1_000),
            row(sqlite, 1_000_000, Scenario::DeepPage, 2000, 1_000),
            row(sqlite, 1000, Scenario::Writes, 2500, 1_000),
        ];
        let mut writes = row(sqlite, 1_000_000, Scenario::Writes, 2500, 1_000);
        writes.stats.ok = 1500;
        rows.push(writes);
        let report = report(
            rows,
            vec![footprint(1000, 40, 300), footprint(1_000_000, 600, 1_500)],
            64,
        );
        let targets = targets(&report);

        let first = result(&targets, "first-page at K=1000000");
        assert!(first.pass, "{first:?}");
        assert_eq!(first.figure, "0.50 of ceiling, p99 4.90 ms at 64 connections");
        assert!(result(&targets, "first-page req/s").pass);
        let deep = result(&targets, "deep-page req/s");
        assert!(!deep.pass);
        assert_eq!(deep.figure, "3000 → 2000 req/s (-33 %)");
        assert!(
            !result(&targets, "image-id req/s").pass,
            "a missing row is a miss"
        );
        assert_eq!(result(&targets, "image-id req/s").figure, "not measured");
        let rss = result(&targets, "peak RSS");
        assert!(!rss.pass);
        assert_eq!(rss.figure, "600.0 MiB");
        assert!(result(&targets, "cold start").pass);
        assert!(result(&targets, "writes at K=1000 ").pass);
        let writes = result(&targets, "writes at K=1000000");
        assert!(!writes.pass, "only 2xx answers count");
        assert_eq!(writes.figure, "1500 req/s");
        assert!(render(&report).contains("| MISS |"));
    }

    #[test]
    fn the_first_page_target_needs_its_latency_ratio_and_connection_count() {
        let slow = report(
            vec![row(Backend::Postgres, 1000, Scenario::FirstPage, 6000, 5_000)],
            Vec::new(),
            64,
        );
        let targets = targets(&slow);
        assert!(!result(&targets, "first-page").pass, "p99 of exactly 5 ms misses");
        assert!(
            !targets
                .iter()
                .any(|target| target.requirement.starts_with("writes")),
            "the writes target is for SQLite"
        );
        let few = report(
            vec![row(Backend::Sqlite, 1000, Scenario::FirstPage, 9000, 100)],
            Vec::new(),
            8,
        );
        let target = targets_of(&few, "first-page");
        assert!(!target.pass);
        assert!(
            target.figure.ends_with("(the target is at 64)"),
            "{}",
            target.figure
        );
    }

    fn targets_of(report: &Report, prefix: &str) -> Target {
        result(&targets(report), prefix).clone()
    }
}
