//! The load generator: N workers, each with its own client (so exactly one keep-alive
//! connection each, one request in flight), sending the plan's calls back to back. Every
//! call is signed afresh by `ens-client` (new nonce, current time), so the server does all
//! of its work, replay protection included.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ens_client::Client;
use tokio::time::Instant;

use crate::guard::Shape;
use crate::scenario::Plan;
use crate::stats::{error_code, ErrorTally, Histogram, Stats, TIMEOUT, TRANSPORT};

/// How long a request may still take after the measured window closed before it is given
/// up and counted as a [`TIMEOUT`]: this bounds a run against a server that hangs.
const GRACE: Duration = Duration::from_secs(5);

/// Pause after a transport error, so a dead server is not hammered in a tight loop.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

#[derive(Default)]
struct WorkerStats {
    requests: u64,
    ok: u64,
    latency: Histogram,
    errors: ErrorTally,
    first_transport_error: Option<String>,
    last_finish: Option<Instant>,
}

/// Drives `plan` with `shape.concurrency` clients made by `make_client`: warm-up first
/// (unmeasured), then until `shape.duration` has passed or `shape.requests` were sent,
/// whichever comes first.
///
/// # Errors
/// When a client cannot be made or a worker dies.
pub async fn run(
    make_client: &dyn Fn() -> anyhow::Result<Client>,
    plan: Arc<Plan>,
    shape: Shape,
) -> anyhow::Result<Stats> {
    let start = Instant::now();
    let measure_from = start + shape.warmup;
    let stop = measure_from + shape.duration;
    let budget = Arc::new(AtomicU64::new(shape.requests.unwrap_or(u64::MAX)));
    let mut workers = Vec::with_capacity(shape.concurrency);
    for _ in 0..shape.concurrency {
        let client = make_client()?;
        let (plan, budget) = (Arc::clone(&plan), Arc::clone(&budget));
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
                let call = plan.next_call();
                let outcome = tokio::time::timeout_at(
                    stop + GRACE,
                    client.send_to(call.path, call.action, &call.params),
                )
                .await;
                let finished = Instant::now();
                if !measured {
                    if !matches!(outcome, Ok(Ok(_))) {
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                    continue;
                }
                stats.requests += 1;
                match outcome {
                    Ok(Ok(response)) => {
                        stats.latency.record(finished.duration_since(sent));
                        stats.last_finish = Some(finished);
                        match error_code(response.status, &response.body) {
                            None => stats.ok += 1,
                            Some(code) => stats.errors.record(&code),
                        }
                    }
                    Ok(Err(error)) => {
                        stats.errors.record(TRANSPORT);
                        stats
                            .first_transport_error
                            .get_or_insert_with(|| error.to_string());
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                    Err(_) => {
                        stats.errors.record(TIMEOUT);
                        break;
                    }
                }
            }
            stats
        }));
    }
    let mut total = Stats::default();
    let mut last_finish = measure_from;
    for worker in workers {
        let stats = worker.await.context("a load worker failed")?;
        total.requests += stats.requests;
        total.ok += stats.ok;
        total.latency.merge(&stats.latency);
        total.errors.merge(&stats.errors);
        if total.first_transport_error.is_none() {
            total.first_transport_error = stats.first_transport_error;
        }
        last_finish = last_finish.max(stats.last_finish.unwrap_or(measure_from));
    }
    total.elapsed = last_finish.saturating_duration_since(measure_from);
    Ok(total)
}
