//! Per-AccessKey request rate limits: a token bucket per key, in this process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A request rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second per AccessKey.
    pub per_second: f64,
    /// How many requests may arrive at once after a quiet period.
    pub burst: f64,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets keyed by AccessKey ID. Idle buckets are dropped when the map grows, so
/// memory stays bounded by the number of keys active within a refill period.
///
/// With several replicas, each enforces its share of the limit (rate and burst divided by
/// the number of live replicas), so a key's total across replicas stays within the limit
/// when the load balancer spreads its requests evenly.
pub struct Throttle {
    limit: RateLimit,
    replicas: std::sync::atomic::AtomicU32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// How long a caller should wait before retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl Throttle {
    /// Buckets for `limit`.
    #[must_use]
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            replicas: std::sync::atomic::AtomicU32::new(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Sets how many replicas share the limit (at least one).
    pub fn set_replicas(&self, count: u32) {
        self.replicas
            .store(count.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// This replica's share of the limit.
    fn share(&self) -> RateLimit {
        let replicas = f64::from(self.replicas.load(std::sync::atomic::Ordering::Relaxed).max(1));
        RateLimit {
            per_second: self.limit.per_second / replicas,
            burst: (self.limit.burst / replicas).max(1.0),
        }
    }

    /// Whether `key` has a token at `now`, without taking it: a gate for requests that only
    /// cost a token when they turn out to be refused.
    ///
    /// # Errors
    /// `RetryAfter` with the time until a token is available.
    pub fn peek(&self, key: &str, now: Instant) -> Result<(), RetryAfter> {
        let limit = self.share();
        let buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(bucket) = buckets.get(key) else {
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        let tokens = (bucket.tokens + elapsed * limit.per_second).min(limit.burst);
        if tokens >= 1.0 {
            Ok(())
        } else {
            let wait = (1.0 - tokens) / limit.per_second.max(f64::EPSILON);
            Err(RetryAfter(Duration::from_secs_f64(wait.min(3600.0))))
        }
    }

    /// Takes one token for `key` at `now`.
    ///
    /// # Errors
    /// `RetryAfter` with the time until a token is available.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), RetryAfter> {
        let limit = self.share();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > 10_000 {
            let full_after =
                Duration::from_secs_f64(self.limit.burst / self.limit.per_second.max(f64::EPSILON));
            buckets.retain(|_, bucket| now.duration_since(bucket.updated) < full_after);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: limit.burst,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(limit.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / limit.per_second.max(f64::EPSILON);
            Err(RetryAfter(Duration::from_secs_f64(wait.min(3600.0))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_served_then_the_rate_applies_per_key() {
        let throttle = Throttle::new(RateLimit {
            per_second: 10.0,
            burst: 3.0,
        });
        let start = Instant::now();
        for _ in 0..3 {
            assert!(throttle.take("a", start).is_ok());
        }
        let wait = throttle.take("a", start).unwrap_err();
        assert!(
            wait.0 > Duration::ZERO && wait.0 <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Looking does not take: the bucket is still empty, and a key never seen is full.
        assert!(throttle.peek("a", start).is_err());
        assert!(throttle.peek("c", start).is_ok());
        // Another key has its own bucket.
        assert!(throttle.take("b", start).is_ok());
        // A tenth of a second later one more token has dripped in.
        assert!(throttle.peek("a", start + Duration::from_millis(100)).is_ok());
        assert!(throttle.take("a", start + Duration::from_millis(100)).is_ok());
        assert!(throttle.take("a", start + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn replicas_split_the_limit_between_them() {
        let throttle = Throttle::new(RateLimit {
            per_second: 10.0,
            burst: 4.0,
        });
        throttle.set_replicas(2);
        let start = Instant::now();
        assert!(throttle.take("a", start).is_ok());
        assert!(throttle.take("a", start).is_ok());
        assert!(throttle.take("a", start).is_err());
        // Half the rate: one token per 200 ms.
        assert!(throttle.take("a", start + Duration::from_millis(100)).is_err());
        assert!(throttle.take("a", start + Duration::from_millis(200)).is_ok());
    }
}
