//! Prometheus metrics: requests by action and code, latency, store errors, pool usage.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of a finished request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    action: String,
    code: String,
}

/// Labels of a latency observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: String,
}

/// The service's metrics and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<ActionLabels, Histogram>,
    store_errors: Counter,
    pool_size: Gauge,
    pool_idle: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ens_images");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "API requests answered, by action and code (Success or the error code)",
            requests.clone(),
        );
        let latency = Family::<ActionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
        });
        registry.register(
            "request_duration_seconds",
            "Time to answer an API request, by action",
            latency.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "store_errors",
            "Requests that failed because the store failed or was unreachable",
            store_errors.clone(),
        );
        let pool_size = Gauge::default();
        registry.register(
            "store_pool_connections",
            "Open store connections",
            pool_size.clone(),
        );
        let pool_idle = Gauge::default();
        registry.register(
            "store_pool_idle_connections",
            "Idle store connections",
            pool_idle.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            store_errors,
            pool_size,
            pool_idle,
        }
    }

    /// Counts one answered request.
    pub fn observe(&self, action: &str, code: &str, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                action: action.to_owned(),
                code: code.to_owned(),
            })
            .inc();
        self.latency
            .get_or_create(&ActionLabels {
                action: action.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a request that failed in the store.
    pub fn store_error(&self) {
        self.store_errors.inc();
    }

    /// Renders the text exposition format, with the pool gauges as of now.
    #[must_use]
    pub fn render(&self, pool: Option<ens_store::PoolStats>) -> String {
        if let Some(pool) = pool {
            self.pool_size.set(i64::from(pool.size));
            self.pool_idle.set(i64::try_from(pool.idle).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_action_and_code() {
        let metrics = Metrics::new();
        metrics.observe("DescribeImages", "Success", Duration::from_millis(2));
        metrics.observe("DescribeImages", "Success", Duration::from_millis(3));
        metrics.observe("DeleteImage", "NoPermission", Duration::from_millis(1));
        metrics.store_error();
        let text = metrics.render(Some(ens_store::PoolStats { size: 4, idle: 3 }));
        assert!(
            text.contains(r#"ens_images_requests_total{action="DescribeImages",code="Success"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"ens_images_requests_total{action="DeleteImage",code="NoPermission"} 1"#));
        assert!(text.contains(r#"ens_images_request_duration_seconds_count{action="DescribeImages"} 2"#));
        assert!(text.contains("ens_images_store_errors_total 1"));
        assert!(text.contains("ens_images_store_pool_connections 4"));
    }
}
