//! The load generator: C workers, each with its own client (so exactly one keep-alive
//! connection each), sending freshly signed requests back to back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ens_client::Client;

/// How hard and how long to drive a target.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Concurrent keep-alive connections, one request in flight on each.
    pub connections: usize,
    /// Measured time; ignored when `requests` is set.
    pub duration: Duration,
    /// Measured request count instead of a duration.
    pub requests: Option<u64>,
    /// Unmeasured time first, so connections, caches and the allocator settle.
    pub warmup: Duration,
}

/// What one measured run saw.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Requests answered in the measured window (any status).
    pub requests: u64,
    /// The measured window.
    pub elapsed: Duration,
    /// Answers with a non-2xx status.
    pub non_2xx: u64,
    /// Requests that got no answer (connection errors).
    pub transport_errors: u64,
    /// The first transport error, to say what went wrong.
    pub first_error: Option<String>,
    /// Latency of every measured answered request, sorted, in microseconds.
    latencies_us: Vec<u32>,
}

impl Stats {
    /// Answered requests per second over the measured window.
    pub fn throughput(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.requests as f64 / seconds
        } else {
            0.0
        }
    }

    /// The `q` quantile (0..=1) of latency, nearest-rank.
    pub fn percentile(&self, q: f64) -> Duration {
        if self.latencies_us.is_empty() {
            return Duration::ZERO;
        }
        let rank = (q * self.latencies_us.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.latencies_us.len()) - 1;
        Duration::from_micros(u64::from(self.latencies_us[index]))
    }

    /// The slowest measured request.
    pub fn max(&self) -> Duration {
        self.latencies_us
            .last()
            .map_or(Duration::ZERO, |us| Duration::from_micros(u64::from(*us)))
    }
}

#[derive(Default)]
struct WorkerStats {
    latencies_us: Vec<u32>,
    non_2xx: u64,
    transport_errors: u64,
    first_error: Option<String>,
    last_finish: Option<Instant>,
}

/// Drives `action` with `params` through clients made by `make_client`, one per connection.
pub async fn drive(
    make_client: &dyn Fn() -> anyhow::Result<Client>,
    action: &str,
    params: &[(String, String)],
    load: Load,
) -> anyhow::Result<Stats> {
    anyhow::ensure!(load.connections > 0, "--connections must be at least 1");
    let start = Instant::now();
    let measure_from = start + load.warmup;
    // In duration mode every request started before `stop` counts; in count mode the shared
    // budget decides and `stop` is only a guard against a hung target.
    let stop = match load.requests {
        Some(_) => measure_from + Duration::from_secs(24 * 3600),
        None => measure_from + load.duration,
    };
    let budget = Arc::new(AtomicU64::new(load.requests.unwrap_or(u64::MAX)));
    let action: Arc<str> = Arc::from(action);
    let params: Arc<[(String, String)]> = Arc::from(params);
    let mut workers = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        let client = make_client()?;
        let (action, params, budget) = (Arc::clone(&action), Arc::clone(&params), Arc::clone(&budget));
        workers.push(tokio::spawn(async move {
            let mut stats = WorkerStats::default();
            loop {
                let sent = Instant::now();
                if sent >= stop {
                    break;
                }
                let measured = sent >= measure_from;
                if measured
                    && budget
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(1))
                        .is_err()
                {
                    break;
                }
                let outcome = client.send(&action, &params).await;
                let finished = Instant::now();
                if !measured {
                    continue;
                }
                match outcome {
                    Ok(response) => {
                        let micros = finished.duration_since(sent).as_micros();
                        stats.latencies_us.push(u32::try_from(micros).unwrap_or(u32::MAX));
                        if !response.is_success() {
                            stats.non_2xx += 1;
                        }
                        stats.last_finish = Some(finished);
                    }
                    Err(error) => {
                        stats.transport_errors += 1;
                        stats.first_error.get_or_insert_with(|| error.to_string());
                        // Do not spin on a dead target.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            stats
        }));
    }
    let mut latencies_us = Vec::new();
    let mut non_2xx = 0;
    let mut transport_errors = 0;
    let mut first_error = None;
    let mut last_finish = measure_from;
    for worker in workers {
        let stats = worker.await.context("a load worker failed")?;
        latencies_us.extend(stats.latencies_us);
        non_2xx += stats.non_2xx;
        transport_errors += stats.transport_errors;
        first_error = first_error.or(stats.first_error);
        last_finish = last_finish.max(stats.last_finish.unwrap_or(measure_from));
    }
    latencies_us.sort_unstable();
    Ok(Stats {
        requests: latencies_us.len() as u64,
        elapsed: last_finish.saturating_duration_since(measure_from),
        non_2xx,
        transport_errors,
        first_error,
        latencies_us,
    })
}
