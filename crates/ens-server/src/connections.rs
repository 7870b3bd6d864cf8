//! Accepting plain-HTTP connections within limits, so that cheap clients cannot hold the
//! service: a connection must send a whole request head within the header-read timeout
//! (which also bounds how long an idle keep-alive connection is kept), a head may not
//! exceed a byte bound, and one source address may hold only so many connections at once,
//! within a cap for all.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// How long in-flight requests may take to finish once a stop is asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed accept (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Connection limits; each has an option of `ens-images serve`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest wait for a complete request head, from the connection's start or the end of
    /// the previous answer: it closes slow senders and idle keep-alive connections alike.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers), in bytes: bounds the memory a
    /// connection holds before it is authenticated.
    pub max_header_bytes: usize,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections one source address may hold at once, so that one client cannot take
    /// every slot.
    pub max_connections_per_ip: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_connections: 900,
            max_connections_per_ip: 256,
        }
    }
}

/// Open connections, in all and per source address.
#[derive(Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// A connection's place in [`Open`], given back when it ends.
struct Slot {
    open: Arc<Mutex<Open>>,
    ip: IpAddr,
}

impl Slot {
    /// Takes a place for `ip`, unless the limits are reached.
    fn take(open: &Arc<Mutex<Open>>, ip: IpAddr, limits: &ConnectionLimits) -> Option<Self> {
        // The counts stay right even if a holder panicked: take them back from the poison.
        let mut counts = open.lock().unwrap_or_else(PoisonError::into_inner);
        let here = counts.by_ip.get(&ip).copied().unwrap_or(0);
        if counts.total >= limits.max_connections || here >= limits.max_connections_per_ip {
            return None;
        }
        counts.total += 1;
        counts.by_ip.insert(ip, here + 1);
        Some(Self {
            open: Arc::clone(open),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        if let Some(here) = counts.by_ip.get_mut(&self.ip) {
            *here = here.saturating_sub(1);
            if *here == 0 {
                counts.by_ip.remove(&self.ip);
            }
        }
    }
}

/// Serves `router` on `listener` over HTTP/1.1 within `limits` until `shutdown` ends, then
/// lets in-flight requests finish (for at most [`DRAIN_TIMEOUT`]).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let open = Arc::new(Mutex::new(Open::default()));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Over a limit, the connection is closed at once: waiting clients would only hold
        // more descriptors, and a refused one can retry.
        let Some(slot) = Slot::take(&open, remote.ip(), &limits) else {
            tracing::debug!(%remote, "connection refused: connection limit reached");
            continue;
        };
        let connection = http.serve_connection(TokioIo::new(stream), service(router.clone(), remote));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%remote, %error, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("stopped with requests still in flight after {DRAIN_TIMEOUT:?}");
    }
}

/// The router as hyper calls it, with the peer's address where axum's `ConnectInfo` finds it.
fn service(
    router: Router,
    remote: SocketAddr,
) -> impl hyper::service::Service<
    http::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        router.clone().oneshot(request.map(axum::body::Body::new))
    })
}

/// Applies the same header limits to the TLS listener's connections (its connection caps
/// are not enforced: TLS serving keeps its own accept loop).
pub(crate) fn tune_tls(
    server: &mut axum_server::Server<SocketAddr, axum_server::tls_rustls::RustlsAcceptor>,
    limits: &ConnectionLimits,
) {
    server
        .http_builder()
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_in_all_and_per_address_and_given_back() {
        let limits = ConnectionLimits {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..ConnectionLimits::default()
        };
        let open = Arc::new(Mutex::new(Open::default()));
        let (one, two) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let first = Slot::take(&open, one, &limits);
        let second = Slot::take(&open, one, &limits);
        assert!(first.is_some() && second.is_some());
        assert!(Slot::take(&open, one, &limits).is_none(), "per-address cap");
        let third = Slot::take(&open, two, &limits);
        assert!(third.is_some());
        assert!(
            Slot::take(&open, IpAddr::from([10, 0, 0, 3]), &limits).is_none(),
            "total cap"
        );
        drop(first);
        assert!(
            Slot::take(&open, one, &limits).is_some(),
            "a closed connection gives its slot back"
        );
        drop((second, third));
        let counts = open.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!((counts.total, counts.by_ip.len()), (0, 0));
    }
}
