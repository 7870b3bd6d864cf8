//! What a run may target and how big it may be.
//!
//! A load generator is a traffic cannon: pointed at someone else's host by a typo, it is an
//! attack. So every run drives loopback addresses only, and every run is bounded in time,
//! request count and connections, whatever the flags say.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};

/// Longest measured time of one run.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Longest warm-up before one run.
pub const MAX_WARMUP: Duration = Duration::from_secs(60);
/// Most requests one run may send.
pub const MAX_REQUESTS: u64 = 10_000_000;
/// Most concurrent connections of one run.
pub const MAX_CONCURRENCY: usize = 1024;

/// How hard and how long one run drives its target, within the bounds above.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Concurrent keep-alive connections, one request in flight on each.
    pub concurrency: usize,
    /// Measured time; the run ends at this point even if `requests` is not reached.
    pub duration: Duration,
    /// Measured request count; the run ends once it is reached even before `duration`.
    pub requests: Option<u64>,
    /// Unmeasured time first, so connections, caches and the allocator settle.
    pub warmup: Duration,
}

impl Shape {
    /// Checks the flags against the bounds; refuses rather than clamps, so a run never
    /// silently measures something else than what was asked.
    ///
    /// # Errors
    /// When a value is out of bounds or not a number of seconds.
    pub fn new(
        concurrency: usize,
        duration_seconds: f64,
        requests: Option<u64>,
        warmup_seconds: f64,
    ) -> anyhow::Result<Self> {
        if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
            bail!("--concurrency must be from 1 to {MAX_CONCURRENCY}, not {concurrency}");
        }
        let duration = Duration::try_from_secs_f64(duration_seconds)
            .ok()
            .filter(|duration| !duration.is_zero() && *duration <= MAX_DURATION)
            .with_context(|| {
                format!(
                    "--duration must be more than 0 and at most {} seconds, not {duration_seconds}",
                    MAX_DURATION.as_secs()
                )
            })?;
        if let Some(count) = requests {
            if !(1..=MAX_REQUESTS).contains(&count) {
                bail!("--requests must be from 1 to {MAX_REQUESTS}, not {count}");
            }
        }
        let warmup = Duration::try_from_secs_f64(warmup_seconds)
            .ok()
            .filter(|warmup| *warmup <= MAX_WARMUP)
            .with_context(|| {
                format!(
                    "--warmup must be from 0 to {} seconds, not {warmup_seconds}",
                    MAX_WARMUP.as_secs()
                )
            })?;
        Ok(Self {
            concurrency,
            duration,
            requests,
            warmup,
        })
    }
}

/// Whether `address` is a loopback address: 127.0.0.0/8, `::1`, or `::ffff:127.x.y.z` (the
/// same IPv4 loopback written as IPv6).
#[must_use]
pub fn is_loopback(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// Picks the address to connect to among what `host` resolved to: all of them must be
/// loopback, so a name that resolves to both cannot be used to slip out.
///
/// # Errors
/// When nothing was resolved or any address is not loopback.
pub fn pick_loopback(host: &str, resolved: &[SocketAddr]) -> anyhow::Result<SocketAddr> {
    let Some(first) = resolved.first() else {
        bail!("{host} resolves to no address");
    };
    if let Some(outside) = resolved.iter().find(|address| !is_loopback(address.ip())) {
        let what = if host.parse::<IpAddr>().is_ok() {
            format!("{host} is not one")
        } else {
            format!("{host} resolves to {}", outside.ip())
        };
        bail!("ens-bench only drives loopback addresses (127.0.0.0/8 or ::1): {what}");
    }
    Ok(*first)
}

/// Checks that `endpoint` (`http://host[:port][/]`) is on this machine and returns it
/// rewritten to the checked address, so the connections go exactly where the check looked
/// (a name resolved twice could answer differently the second time).
///
/// # Errors
/// When the endpoint is not such a URL, its host does not resolve, or it is not loopback.
pub async fn loopback_endpoint(endpoint: &str) -> anyhow::Result<String> {
    let uri: http::Uri = endpoint
        .parse()
        .with_context(|| format!("{endpoint:?} is not a URL (expected http://127.0.0.1:PORT)"))?;
    if uri.scheme_str() != Some("http") {
        bail!("{endpoint:?}: only http:// endpoints are supported");
    }
    let host = uri
        .host()
        .with_context(|| format!("{endpoint:?} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let resolved: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(address) => vec![SocketAddr::new(address, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .collect(),
    };
    let address = pick_loopback(host, &resolved)?;
    Ok(format!("http://{address}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_endpoints_are_accepted_and_pinned_to_the_checked_address() {
        assert_eq!(
            loopback_endpoint("http://127.0.0.1:8080").await.unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            loopback_endpoint("http://127.3.4.5:9/").await.unwrap(),
            "http://127.3.4.5:9"
        );
        assert_eq!(
            loopback_endpoint("http://[::1]:8080").await.unwrap(),
            "http://[::1]:8080"
        );
        let local = loopback_endpoint("http://localhost:8080").await.unwrap();
        assert!(
            local == "http://127.0.0.1:8080" || local == "http://[::1]:8080",
            "{local}"
        );
    }

    #[tokio::test]
    async fn other_hosts_are_refused() {
        for endpoint in [
            "http://10.0.0.1:8080",
            "http://192.168.1.1",
            "http://[2001:db8::1]:80",
            "http://0.0.0.0:8080",
            "http://example.com:8080",
            "https://127.0.0.1:8443",
            "127.0.0.1:8080",
        ] {
            assert!(loopback_endpoint(endpoint).await.is_err(), "{endpoint}");
        }
        let error = loopback_endpoint("http://10.0.0.1:8080").await.unwrap_err();
        assert!(error.to_string().contains("only drives loopback"), "{error}");
    }

    #[test]
    fn a_name_resolving_to_any_outside_address_is_refused() {
        let inside: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let outside: SocketAddr = "93.184.216.34:80".parse().unwrap();
        assert_eq!(pick_loopback("h", &[inside]).unwrap(), inside);
        assert!(pick_loopback("h", &[inside, outside]).is_err());
        assert!(pick_loopback("h", &[outside]).is_err());
        assert!(pick_loopback("h", &[]).is_err());
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!is_loopback("::".parse().unwrap()));
    }

    #[test]
    fn bounds_are_enforced_not_clamped() {
        let shape = Shape::new(64, 10.0, Some(1000), 1.0).unwrap();
        assert_eq!(shape.concurrency, 64);
        assert_eq!(shape.duration, Duration::from_secs(10));
        assert!(Shape::new(1024, 600.0, Some(MAX_REQUESTS), 60.0).is_ok());
        assert!(Shape::new(1025, 10.0, None, 1.0).is_err());
        assert!(Shape::new(0, 10.0, None, 1.0).is_err());
        assert!(Shape::new(64, 600.5, None, 1.0).is_err());
        assert!(Shape::new(64, 0.0, None, 1.0).is_err());
        assert!(Shape::new(64, -1.0, None, 1.0).is_err());
        assert!(Shape::new(64, f64::NAN, None, 1.0).is_err());
        assert!(Shape::new(64, 10.0, Some(MAX_REQUESTS + 1), 1.0).is_err());
        assert!(Shape::new(64, 10.0, Some(0), 1.0).is_err());
        assert!(Shape::new(64, 10.0, None, 61.0).is_err());
    }
}
