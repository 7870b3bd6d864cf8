//! What a run measured: latencies in a histogram of bounded size (a 600 s run at tens of
//! thousands of requests per second must not need gigabytes), and failures by error code.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// The bucket of requests that got no HTTP answer at all (refused, reset, closed).
pub const TRANSPORT: &str = "transport";
/// The bucket of requests still unanswered when the run's deadline passed.
pub const TIMEOUT: &str = "timeout";

/// Sub-buckets per power of two: bucket widths are under 1/64 (1.6 %) of their values.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for every `u64`.
const BUCKETS: usize = ((64 - SUB_BITS + 1) as usize) << SUB_BITS;

/// A log-linear latency histogram in microseconds: exact below 128 µs, then within 1.6 %.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

fn bucket_of(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros();
    let shift = exponent - SUB_BITS;
    let sub = (value >> shift) - SUB;
    (((u64::from(shift) + 1) << SUB_BITS) + sub) as usize
}

/// The largest value that falls in bucket `index`.
fn bucket_high(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB {
        return index;
    }
    let shift = (index >> SUB_BITS) - 1;
    let sub = index & (SUB - 1);
    ((SUB + sub) << shift) | ((1 << shift) - 1)
}

impl Histogram {
    /// Counts one latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if let Some(count) = self.counts.get_mut(bucket_of(micros)) {
            *count += 1;
        }
        self.total += 1;
        self.max = self.max.max(micros);
    }

    /// Adds another worker's counts.
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// How many latencies were recorded.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The `q` quantile (0..=1), nearest rank: the smallest recorded latency with at least
    /// `q` of all at or below it, rounded up to its bucket's top (never above the maximum).
    #[must_use]
    pub fn percentile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Duration::from_micros(bucket_high(index).min(self.max));
            }
        }
        Duration::from_micros(self.max)
    }

    /// The slowest recorded latency, exactly.
    #[must_use]
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max)
    }
}

/// The error bucket of one HTTP answer: `None` for 2xx; otherwise the `Code` of the cloud's
/// JSON error envelope, or `HTTP <status>` when the body carries none (a proxy page, a
/// crash), so that every failure lands somewhere visible.
#[must_use]
pub fn error_code(status: u16, body: &[u8]) -> Option<String> {
    if (200..300).contains(&status) {
        return None;
    }
    let code = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|json| {
            json.get("Code")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        })
        .filter(|code| !code.is_empty());
    Some(code.unwrap_or_else(|| format!("HTTP {status}")))
}

/// Failures counted by bucket (error code, [`TRANSPORT`], [`TIMEOUT`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorTally(BTreeMap<String, u64>);

impl ErrorTally {
    /// Counts one failure in `bucket`.
    pub fn record(&mut self, bucket: &str) {
        *self.0.entry(bucket.to_owned()).or_default() += 1;
    }

    /// Adds another worker's counts.
    pub fn merge(&mut self, other: &Self) {
        for (bucket, count) in &other.0 {
            *self.0.entry(bucket.clone()).or_default() += count;
        }
    }

    /// `0`, or `Code: n` pairs, most frequent first, for a table cell.
    #[must_use]
    pub fn render(&self) -> String {
        if self.0.is_empty() {
            return "0".to_owned();
        }
        let mut buckets: Vec<(&String, &u64)> = self.0.iter().collect();
        buckets.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let mut out = String::new();
        for (bucket, count) in buckets {
            if !out.is_empty() {
                out.push_str(", ");
            }
            let _ = write!(out, "{bucket}: {count}");
        }
        out
    }
}

/// What one measured run saw.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Measured requests that ended, answered or not.
    pub requests: u64,
    /// Of those, answered with a 2xx status.
    pub ok: u64,
    /// The measured window, from its start to the last measured answer.
    pub elapsed: Duration,
    /// Latency of every answered measured request (any status).
    pub latency: Histogram,
    /// Failures by bucket.
    pub errors: ErrorTally,
    /// The first transport error, to say what went wrong.
    pub first_transport_error: Option<String>,
}

impl Stats {
    /// Answered requests (any status) per second: what the server got through.
    #[must_use]
    pub fn throughput(&self) -> f64 {
        per_second(self.latency.count(), self.elapsed)
    }

    /// 2xx answers per second: for writes, the rate of acknowledged changes.
    #[must_use]
    pub fn acknowledged_throughput(&self) -> f64 {
        per_second(self.ok, self.elapsed)
    }
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(values: impl IntoIterator<Item = u64>) -> Histogram {
        let mut histogram = Histogram::default();
        for value in values {
            histogram.record(Duration::from_micros(value));
        }
        histogram
    }

    #[test]
    fn percentiles_are_nearest_rank_and_exact_for_small_values() {
        let histogram = micros(1..=100);
        assert_eq!(histogram.count(), 100);
        assert_eq!(histogram.percentile(0.50), Duration::from_micros(50));
        assert_eq!(histogram.percentile(0.90), Duration::from_micros(90));
        assert_eq!(histogram.percentile(0.99), Duration::from_micros(99));
        assert_eq!(histogram.percentile(1.0), Duration::from_micros(100));
        assert_eq!(histogram.percentile(0.0), Duration::from_micros(1));
        assert_eq!(histogram.max(), Duration::from_micros(100));
    }

    #[test]
    fn large_values_are_within_the_bucket_precision_and_never_above_the_max() {
        let histogram = micros([1_000, 2_000, 3_000, 4_000, 5_000_123]);
        let p80 = histogram.percentile(0.80).as_micros() as f64;
        assert!((4_000.0..=4_000.0 * (1.0 + 1.0 / 64.0)).contains(&p80), "{p80}");
        assert_eq!(histogram.percentile(1.0), Duration::from_micros(5_000_123));
        assert_eq!(histogram.max(), Duration::from_micros(5_000_123));
    }

    #[test]
    fn buckets_cover_every_value_and_their_tops_belong_to_them() {
        for value in [0, 1, 63, 64, 127, 128, 129, 1_000, 65_535, 1 << 40, u64::MAX] {
            let index = bucket_of(value);
            assert!(index < BUCKETS, "{value}");
            assert!(bucket_high(index) >= value, "{value}");
            assert_eq!(bucket_of(bucket_high(index)), index, "{value}");
        }
    }

    #[test]
    fn an_empty_histogram_reports_zero_and_merging_adds_counts() {
        let mut histogram = Histogram::default();
        assert_eq!(histogram.percentile(0.99), Duration::ZERO);
        histogram.merge(&micros([10, 20]));
        histogram.merge(&micros([30]));
        assert_eq!(histogram.count(), 3);
        assert_eq!(histogram.percentile(0.5), Duration::from_micros(20));
        assert_eq!(histogram.max(), Duration::from_micros(30));
    }

    #[test]
    fn error_bodies_are_tallied_by_their_code() {
        let envelope = br#"{"RequestId":"R","HostId":"ens.aliyuncs.com","Code":"InvalidParameter.ImageName","Message":"bad"}"#;
        assert_eq!(
            error_code(400, envelope).as_deref(),
            Some("InvalidParameter.ImageName")
        );
        assert_eq!(error_code(200, br#"{"Code":0}"#), None);
        assert_eq!(error_code(204, b""), None);
        assert_eq!(
            error_code(502, b"<html>bad gateway</html>").as_deref(),
            Some("HTTP 502")
        );
        assert_eq!(error_code(500, br#"{"Code":""}"#).as_deref(), Some("HTTP 500"));
        assert_eq!(error_code(400, br#"{"Code":7}"#).as_deref(), Some("HTTP 400"));

        let mut tally = ErrorTally::default();
        assert_eq!(tally.render(), "0");
        tally.record("Throttling.User");
        tally.record(TRANSPORT);
        tally.record("Throttling.User");
        let mut other = ErrorTally::default();
        other.record(TRANSPORT);
        other.record(TRANSPORT);
        tally.merge(&other);
        assert_eq!(tally.render(), "transport: 3, Throttling.User: 2");
    }

    #[test]
    fn throughput_counts_answers_and_acknowledged_counts_2xx() {
        let stats = Stats {
            requests: 12,
            ok: 5,
            elapsed: Duration::from_secs(2),
            latency: micros([100; 10]),
            ..Stats::default()
        };
        assert!((stats.throughput() - 5.0).abs() < f64::EPSILON);
        assert!((stats.acknowledged_throughput() - 2.5).abs() < f64::EPSILON);
        assert!(Stats::default().throughput().abs() < f64::EPSILON);
    }
}
