//! Accepting connections (plain HTTP or TLS) within limits, so that cheap clients cannot hold
//! the service:
//!
//! * a new connection must send a whole request head within the header-read timeout (the
//!   TLS handshake included), and so must a kept-alive one, counted from the first byte of
//!   its next head;
//! * a kept-alive connection may wait for that first byte only for the idle timeout;
//! * a request head may not exceed a byte bound (hyper's read buffer stops there: `431`);
//! * one source address may hold only so many connections at once (more are closed as
//!   soon as they are accepted), within a cap for all.
//!
//! At the cap for all, a new connection takes the place of the one that has waited longest
//! for a request, rather than being refused: otherwise a few addresses full of idle or slow
//! connections would lock every other client out until the timeouts. A connection that is
//! being answered is never displaced; a new one is displaced only after every older waiting
//! connection was, and a real client's head arrives within a round trip, so only clients
//! that send nothing lose their place. When every connection is being answered, the new one
//! is closed at once. A displaced connection holds its descriptor until its task ends, so it
//! still counts until then: the process holds at most the cap plus [`CLOSING_SLACK`].
//!
//! Hyper's own header-read timer is not used: it runs from the end of the previous answer,
//! so it cannot tell an idle keep-alive connection from a slow sender. A watchdog per
//! connection enforces both deadlines instead, from what the connection's reads and its
//! answers record.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::ConnectInfo;
use axum::Router;
use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tower::ServiceExt;

/// How long in-flight requests may take to finish once a stop is asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed accept (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait of a new connection for a displaced one to close (it takes microseconds).
const CLOSING_WAIT: Duration = Duration::from_secs(1);
/// Displaced connections that may still be closing while new ones are admitted in their
/// place: the accept loop does not wait for each close (at the cap it would then accept
/// slower than a burst of clients connects, and the listen queue would overflow), yet the
/// process never holds more than the cap plus this many connections.
const CLOSING_SLACK: usize = 64;

/// Connection limits; each has an option of `ens-images serve`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest wait for a complete request head: from a connection's start (TLS handshake
    /// included), or from the first byte of a later head. Closes slow senders.
    pub header_read_timeout: Duration,
    /// Longest wait, after an answer, for the first byte of the next request: closes idle
    /// keep-alive connections.
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers), in bytes: bounds the memory a
    /// connection holds before it is authenticated.
    pub max_header_bytes: usize,
    /// Most connections open at once (keep it under the open-file limit).
    pub max_connections: usize,
    /// Most connections one source address may hold at once, so that one client cannot take
    /// every slot.
    pub max_connections_per_ip: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            max_connections: 900,
            max_connections_per_ip: 256,
        }
    }
}

/// Where a connection is in its request cycle, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request head: since the connection's start, or the head's first byte.
    Head(Instant),
    /// Waiting, after an answer, for the first byte of the next request.
    Idle(Instant),
    /// A request is being answered: no deadline.
    Busy,
}

/// A connection's [`Phase`], written by its reads and its service, read by its watchdog and
/// by the accept loop when it looks for a connection to displace.
#[derive(Debug)]
struct Activity(Mutex<Phase>);

impl Activity {
    fn new(started: Instant) -> Self {
        Self(Mutex::new(Phase::Head(started)))
    }

    fn set(&self, update: impl FnOnce(Phase) -> Phase) {
        // A phase is a plain value: a panic elsewhere cannot leave it half-written.
        let mut phase = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *phase = update(*phase);
    }

    fn get(&self) -> Phase {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes arrived: an idle connection starts a head (and its header-read timeout).
    fn received(&self) {
        self.set(|phase| match phase {
            Phase::Idle(_) => Phase::Head(Instant::now()),
            other => other,
        });
    }

    /// A whole head arrived and the request went to the service.
    fn started(&self) {
        self.set(|_| Phase::Busy);
    }

    /// The answer was sent (its body ended or was dropped).
    fn answered(&self) {
        self.set(|_| Phase::Idle(Instant::now()));
    }

    /// When the connection is to be closed unless its phase moves on; `None` while busy.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        match self.get() {
            Phase::Head(since) => Some(since + limits.header_read_timeout),
            Phase::Idle(since) => Some(since + limits.idle_timeout),
            Phase::Busy => None,
        }
    }

    /// Since when the connection has waited for a request; `None` while busy.
    fn waiting_since(&self) -> Option<Instant> {
        match self.get() {
            Phase::Head(since) | Phase::Idle(since) => Some(since),
            Phase::Busy => None,
        }
    }
}

/// Resolves once `activity` has passed its deadline, i.e. when the connection must close.
async fn watchdog(activity: &Activity, limits: &ConnectionLimits) {
    loop {
        match activity.deadline(limits) {
            Some(deadline) if deadline <= Instant::now() => return,
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            // Busy: look again later (deadlines only ever move later, so none is missed).
            None => tokio::time::sleep(limits.header_read_timeout.min(limits.idle_timeout)).await,
        }
    }
}

/// One open connection, as the accept loop knows it.
struct Entry {
    ip: IpAddr,
    activity: Arc<Activity>,
    /// Tells the connection's task to close it; `None` once it was told (it still holds
    /// its descriptor until its task ends, so it still counts).
    displace: Option<oneshot::Sender<()>>,
}

/// Open connections, in all and per source address.
#[derive(Default)]
struct Open {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    by_ip: HashMap<IpAddr, usize>,
    /// Entries told to close whose task has not ended yet.
    closing: usize,
}

impl Open {
    /// Forgets connection `id`; whether it was still counted.
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        if entry.displace.is_none() {
            self.closing = self.closing.saturating_sub(1);
        }
        if let Some(here) = self.by_ip.get_mut(&entry.ip) {
            *here = here.saturating_sub(1);
            if *here == 0 {
                self.by_ip.remove(&entry.ip);
            }
        }
        Some(entry)
    }

    /// The connection that has waited longest for a request, among those not yet told to
    /// close.
    fn longest_waiting(&mut self) -> Option<&mut Entry> {
        self.entries
            .values_mut()
            .filter(|entry| entry.displace.is_some())
            .filter_map(|entry| entry.activity.waiting_since().map(|since| (since, entry)))
            .min_by_key(|(since, _)| *since)
            .map(|(_, entry)| entry)
    }
}

/// A connection's place in [`Open`], given back when it ends.
struct Slot {
    open: Arc<Mutex<Open>>,
    /// Woken when a place is given back, for an admission waiting on a closing connection.
    released: Arc<Notify>,
    id: u64,
}

/// An admitted connection: its place, its phase, and the signal that it was displaced.
struct Admitted {
    slot: Slot,
    activity: Arc<Activity>,
    displaced: oneshot::Receiver<()>,
}

/// Why a connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// Its source address holds as many connections as it may.
    PerAddress,
    /// Every place is taken by a connection being answered.
    AllBusy,
    /// Every place is taken, and [`CLOSING_SLACK`] displaced connections are still closing:
    /// ask again once one has.
    Closing,
}

impl Slot {
    /// Takes a place for a connection from `ip` that started at `now`: refused when the
    /// address is at its cap. At the cap for all, tells the connection that has waited
    /// longest for a request to close and takes its place; refused when all are being
    /// answered. A displaced connection counts until its task ends (it holds a descriptor),
    /// so while [`CLOSING_SLACK`] of them are closing, answers [`Refusal::Closing`].
    fn take(
        open: &Arc<Mutex<Open>>,
        released: &Arc<Notify>,
        ip: IpAddr,
        now: Instant,
        limits: &ConnectionLimits,
    ) -> Result<Admitted, Refusal> {
        // The counts stay right even if a holder panicked: take them back from the poison.
        let mut counts = open.lock().unwrap_or_else(PoisonError::into_inner);
        let here = counts.by_ip.get(&ip).copied().unwrap_or(0);
        if here >= limits.max_connections_per_ip {
            return Err(Refusal::PerAddress);
        }
        if counts.entries.len() - counts.closing >= limits.max_connections {
            if counts.closing >= CLOSING_SLACK {
                return Err(Refusal::Closing);
            }
            let victim = counts.longest_waiting().ok_or(Refusal::AllBusy)?;
            if let Some(displace) = victim.displace.take() {
                // Its task may have ended already: then it is about to give its place back.
                let _ = displace.send(());
            }
            counts.closing += 1;
        }
        let id = counts.next_id;
        counts.next_id += 1;
        let activity = Arc::new(Activity::new(now));
        let (displace, displaced) = oneshot::channel();
        counts.entries.insert(
            id,
            Entry {
                ip,
                activity: Arc::clone(&activity),
                displace: Some(displace),
            },
        );
        *counts.by_ip.entry(ip).or_insert(0) += 1;
        Ok(Admitted {
            slot: Self {
                open: Arc::clone(open),
                released: Arc::clone(released),
                id,
            },
            activity,
            displaced,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = counts.remove(self.id);
        drop(counts);
        self.released.notify_waiters();
    }
}

/// Admits a connection from `remote`, waiting (at most [`CLOSING_WAIT`]) for a displaced
/// connection to close when [`CLOSING_SLACK`] of them are still closing.
async fn admit(
    open: &Arc<Mutex<Open>>,
    released: &Arc<Notify>,
    remote: SocketAddr,
    limits: &ConnectionLimits,
) -> Result<Admitted, Refusal> {
    let started = Instant::now();
    loop {
        // Registered before looking, so a place freed in between is not missed.
        let freed = released.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        match Slot::take(open, released, remote.ip(), started, limits) {
            Err(Refusal::Closing) => {
                let waited = started.elapsed();
                if waited >= CLOSING_WAIT || tokio::time::timeout(CLOSING_WAIT - waited, freed).await.is_err()
                {
                    return Err(Refusal::Closing);
                }
            }
            taken => return taken,
        }
    }
}

/// A connection's byte stream, recording in its [`Activity`] when bytes arrive.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.received();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// An answer's body, recording in its connection's [`Activity`] when it is done with.
struct Answer {
    inner: Body,
    activity: Arc<Activity>,
}

impl HttpBody for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        // Hyper drops the body once its last frame is written (or the connection ends).
        self.activity.answered();
    }
}

/// Serves `router` on `listener` over plain HTTP/1.1 within `limits` until `shutdown` ends,
/// then lets in-flight requests finish (for at most [`DRAIN_TIMEOUT`]).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, router, limits, None, shutdown).await;
}

/// Like [`serve`], over TLS: the handshake counts towards the header-read timeout, and the
/// connection caps apply as they do to plain HTTP.
pub(crate) async fn serve_tls(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    config: RustlsConfig,
    shutdown: impl Future<Output = ()>,
) {
    // The watchdog bounds the handshake; the acceptor's own timeout is only a backstop.
    let acceptor = RustlsAcceptor::new(config).handshake_timeout(limits.header_read_timeout);
    serve_with(listener, router, limits, Some(acceptor), shutdown).await;
}

async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<RustlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let http = Arc::new(http);
    let open = Arc::new(Mutex::new(Open::default()));
    let released = Arc::new(Notify::new());
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
        // Refused connections are closed at once: waiting ones would only hold more
        // descriptors, and a refused client can retry.
        let admitted = match admit(&open, &released, remote, &limits).await {
            Ok(admitted) => admitted,
            Err(refusal) => {
                tracing::debug!(%remote, ?refusal, "connection refused");
                continue;
            }
        };
        let connection = Connection {
            http: Arc::clone(&http),
            router: router.clone(),
            tls: tls.clone(),
            remote,
            limits,
        };
        tokio::spawn(connection.run(stream, admitted, graceful.watcher()));
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("stopped with requests still in flight after {DRAIN_TIMEOUT:?}");
    }
}

/// What one connection's task needs.
struct Connection {
    http: Arc<hyper::server::conn::http1::Builder>,
    router: Router,
    tls: Option<RustlsAcceptor>,
    remote: SocketAddr,
    limits: ConnectionLimits,
}

impl Connection {
    /// Runs the connection until it ends, passes a deadline, or is displaced; its place is
    /// given back when this returns.
    async fn run(
        self,
        stream: TcpStream,
        admitted: Admitted,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let Admitted {
            slot,
            activity,
            displaced,
        } = admitted;
        let remote = self.remote;
        let limits = self.limits;
        let served = self.serve(stream, Arc::clone(&activity), watcher);
        tokio::select! {
            result = served => {
                if let Err(error) = result {
                    tracing::debug!(%remote, %error, "connection ended");
                }
            }
            () = watchdog(&activity, &limits) => {
                tracing::debug!(%remote, phase = ?activity.get(), "connection closed: timed out");
            }
            _ = displaced => {
                tracing::debug!(%remote, "connection closed: displaced by a new one at the cap");
            }
        }
        drop(slot);
    }

    async fn serve(
        self,
        stream: TcpStream,
        activity: Arc<Activity>,
        watcher: hyper_util::server::graceful::Watcher,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let service = service(self.router, self.remote, Arc::clone(&activity));
        match self.tls {
            None => {
                let io = TokioIo::new(Watched {
                    inner: stream,
                    activity,
                });
                watcher.watch(self.http.serve_connection(io, service)).await?;
            }
            Some(acceptor) => {
                let (stream, _) = acceptor.accept(stream, ()).await?;
                let io = TokioIo::new(Watched {
                    inner: stream,
                    activity,
                });
                watcher.watch(self.http.serve_connection(io, service)).await?;
            }
        }
        Ok(())
    }
}

/// The router as hyper calls it, with the peer's address where axum's `ConnectInfo` finds it,
/// recording in `activity` when a request starts and when its answer is done with.
fn service(
    router: Router,
    remote: SocketAddr,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    http::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        activity.started();
        request.extensions_mut().insert(ConnectInfo(remote));
        let activity = Arc::clone(&activity);
        let answered = router.clone().oneshot(request.map(Body::new));
        async move {
            let response = answered.await?;
            Ok(response.map(|inner| Body::new(Answer { inner, activity })))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize, max_connections_per_ip: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections,
            max_connections_per_ip,
            ..ConnectionLimits::default()
        }
    }

    fn take(
        open: &Arc<Mutex<Open>>,
        ip: IpAddr,
        at: Instant,
        limits: &ConnectionLimits,
    ) -> Result<Admitted, Refusal> {
        Slot::take(open, &Arc::new(Notify::new()), ip, at, limits)
    }

    fn counts(open: &Arc<Mutex<Open>>) -> (usize, usize) {
        let counts = open.lock().unwrap_or_else(PoisonError::into_inner);
        (counts.entries.len(), counts.by_ip.values().sum())
    }

    #[test]
    fn the_per_address_cap_refuses_and_closed_connections_give_their_place_back() {
        let limits = limits(10, 2);
        let open = Arc::new(Mutex::new(Open::default()));
        let (one, two) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let now = Instant::now();
        let first = take(&open, one, now, &limits).unwrap();
        let second = take(&open, one, now, &limits).unwrap();
        assert_eq!(take(&open, one, now, &limits).err(), Some(Refusal::PerAddress));
        let third = take(&open, two, now, &limits).unwrap();
        drop(first);
        assert!(
            take(&open, one, now, &limits).is_ok(),
            "a closed connection gives its place back"
        );
        drop((second, third));
        assert_eq!(counts(&open), (0, 0));
    }

    #[test]
    fn at_the_cap_the_longest_waiting_connection_is_told_to_close_never_a_busy_one() {
        let limits = limits(3, 10);
        let open = Arc::new(Mutex::new(Open::default()));
        let ip = IpAddr::from([10, 0, 0, 1]);
        let start = Instant::now();
        let mut oldest = take(&open, ip, start, &limits).unwrap();
        let busy = take(&open, ip, start, &limits).unwrap();
        busy.activity.started();
        let mut newer = take(&open, ip, start + Duration::from_secs(1), &limits).unwrap();

        // At the cap, a newcomer takes the place of the oldest waiting one, told to close.
        let later = start + Duration::from_secs(2);
        let mut newest = take(&open, ip, later, &limits).unwrap();
        assert!(
            oldest.displaced.try_recv().is_ok(),
            "the oldest waiting one is told"
        );
        assert!(newer.displaced.try_recv().is_err());
        assert_eq!(counts(&open), (4, 4), "a closing connection counts until it ends");
        drop(oldest.slot);
        assert_eq!(counts(&open), (3, 3));

        // Once the older one is being answered, the newest waiting one is next.
        newer.activity.started();
        let last = take(&open, ip, later, &limits).unwrap();
        assert!(newest.displaced.try_recv().is_ok());
        assert!(newer.displaced.try_recv().is_err());
        drop(newest.slot);

        last.activity.started();
        assert_eq!(
            take(&open, ip, Instant::now(), &limits).err(),
            Some(Refusal::AllBusy),
            "busy connections are never displaced"
        );
        drop((busy, newer, last));
        assert_eq!(counts(&open), (0, 0));
    }

    #[test]
    fn no_more_than_the_slack_of_displaced_connections_may_be_closing() {
        let limits = limits(CLOSING_SLACK, 1000);
        let open = Arc::new(Mutex::new(Open::default()));
        let ip = IpAddr::from([10, 0, 0, 1]);
        let start = Instant::now();
        let mut held: Vec<Admitted> = (0..2 * CLOSING_SLACK)
            .map(|_| take(&open, ip, start, &limits).unwrap())
            .collect();
        assert_eq!(counts(&open).0, 2 * CLOSING_SLACK);
        assert_eq!(
            take(&open, ip, start, &limits).err(),
            Some(Refusal::Closing),
            "the cap plus the slack is the most ever held"
        );
        // One closes: one more may come.
        let first = held.remove(0);
        drop(first.slot);
        assert!(take(&open, ip, start, &limits).is_ok());
    }

    #[tokio::test]
    async fn an_admission_waits_for_a_displaced_connection_to_close_past_the_slack() {
        let limits = limits(1, 1000);
        let open = Arc::new(Mutex::new(Open::default()));
        let released = Arc::new(Notify::new());
        let remote = SocketAddr::from(([10, 0, 0, 1], 1));
        let mut closing = Vec::new();
        for _ in 0..=CLOSING_SLACK {
            closing.push(admit(&open, &released, remote, &limits).await.unwrap());
        }
        // Every admitted one but the last was displaced and has not closed yet.
        let oldest = closing.remove(0);
        let closer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(oldest.slot);
        });
        let admitted = admit(&open, &released, remote, &limits).await;
        assert!(admitted.is_ok(), "admitted once a displaced one closed");
        closer.await.unwrap();
        assert_eq!(counts(&open).0, CLOSING_SLACK + 1);
    }

    #[test]
    fn each_phase_has_its_own_deadline() {
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(7),
            ..ConnectionLimits::default()
        };
        let start = Instant::now();
        let activity = Activity::new(start);
        assert_eq!(activity.deadline(&limits), Some(start + Duration::from_secs(3)));
        activity.received();
        assert_eq!(
            activity.deadline(&limits),
            Some(start + Duration::from_secs(3)),
            "more bytes of the same head do not extend it"
        );
        activity.started();
        assert_eq!(activity.deadline(&limits), None);
        assert_eq!(activity.waiting_since(), None);
        activity.answered();
        let Some(idle_until) = activity.deadline(&limits) else {
            panic!("an idle connection has a deadline");
        };
        assert!(idle_until >= start + Duration::from_secs(7));
        activity.received();
        let Some(head_until) = activity.deadline(&limits) else {
            panic!("a head has a deadline");
        };
        assert!(
            head_until < idle_until,
            "a started head has the header-read timeout"
        );
    }
}
