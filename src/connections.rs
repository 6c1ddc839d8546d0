//! The accept loop (in place of `axum::serve`), so that no client can hold the server with slow,
//! half-sent or idle connections. HTTP/1 only, through hyper:
//! - at most `[server] max_connections` connections at once. When all are taken doorman stops
//!   accepting until one closes: new connections wait in the kernel's listen queue and are
//!   served a moment later, rather than being accepted only to be closed (which would turn a
//!   burst into errors for everyone and cost an accept and a close per attempt). The timeouts
//!   below guarantee that a taken slot frees within `idle_timeout` at most.
//! - a request's headers must arrive within `header_read_timeout`, counted from the connection's
//!   opening for its first request and from the first byte of each later one;
//! - a kept-alive connection that waits for its next request is closed after `idle_timeout`;
//! - a connection that receives nothing for `idle_timeout + header_read_timeout` is closed,
//!   whatever it is doing (a request body sent a byte a minute, a response never read).
//!
//! hyper has one timer for both waits: it arms its header-read timer as soon as it starts
//! waiting for the next request head, idle or not. [`HeadTimer`] is the timer doorman gives it:
//! it knows (from [`Tracked`], the socket wrapper) whether a byte of that head has arrived yet,
//! so the wait lasts `idle_timeout` until the first byte and `header_read_timeout` from then on.
//!
//! Handlers keep getting `ConnectInfo<SocketAddr>`: the client-IP extractor reads it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::config::ServerConfig;

/// After a stop, requests in progress get this long to finish before their connections drop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often a server out of connection slots says so.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);
/// Request heads (start line and headers) beyond this get 431; hyper's default allows ~400 KiB.
const MAX_HEAD: usize = 64 * 1024;
/// What hyper buffers per connection at most, which bounds what a half-sent head can cost.
const MAX_BUFFER: usize = 64 * 1024;

/// Serves `app` on `listener` until `stop` turns true, then lets requests in progress finish
/// (for at most [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerConfig,
    mut stop: watch::Receiver<bool>,
) {
    let max = usize::try_from(limits.max_connections).unwrap_or(usize::MAX);
    let slots = Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS)));
    let graceful = GracefulShutdown::new();
    let (drop_all, dropped) = watch::channel(false);
    let surge = Arc::new(Surge::default());
    let mut last_full_warning = None;
    // Timeouts cover the waits for request heads; this covers the rest (a request body sent a
    // byte a minute, a client that never reads the response).
    let silence_limit = limits
        .idle_timeout
        .saturating_add(limits.header_read_timeout);
    loop {
        // Said at most once a minute: under a flood the slots fill again at every accept.
        if slots.available_permits() == 0
            && last_full_warning.is_none_or(|t: Instant| t.elapsed() >= FULL_WARNING_EVERY)
        {
            tracing::warn!(
                max_connections = limits.max_connections,
                "all connection slots are taken: new connections wait until one closes \
                 ([server] max_connections)"
            );
            last_full_warning = Some(Instant::now());
        }
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            // The client gave up before we got to it.
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors, typically: wait rather than spin.
                tracing::error!(error = %e, "cannot accept connections");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        };
        let activity = Arc::new(Activity::new());
        let watched = activity.clone();
        let io = TokioIo::new(Tracked {
            stream,
            activity: activity.clone(),
        });
        let service =
            app.clone()
                .map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(remote));
                    req
                });
        let mut http = http1::Builder::new();
        http.timer(HeadTimer::new(activity, &limits))
            .header_read_timeout(limits.header_read_timeout)
            .max_header_size(MAX_HEAD)
            .max_buf_size(MAX_BUFFER);
        let conn = graceful.watch(
            http.serve_connection(io, hyper_util::service::TowerToHyperService::new(service)),
        );
        let mut dropped = dropped.clone();
        let surge = surge.clone();
        surge.opened();
        tokio::spawn(async move {
            tokio::select! {
                result = conn => if let Err(e) = result {
                    if e.is_timeout() {
                        tracing::debug!(peer = %remote, "connection closed: no complete request in time");
                    } else {
                        tracing::debug!(peer = %remote, error = %e, "connection closed");
                    }
                },
                _ = silence(&watched, silence_limit) => {
                    tracing::debug!(peer = %remote, "connection closed: nothing received for too long");
                }
                _ = dropped.wait_for(|d| *d) => {}
            }
            drop(permit);
            surge.closed();
        });
    }
    drop(listener);
    let shutdown = graceful.shutdown();
    tokio::pin!(shutdown);
    if tokio::time::timeout(SHUTDOWN_GRACE, &mut shutdown)
        .await
        .is_err()
    {
        tracing::info!(
            grace = SHUTDOWN_GRACE.as_secs(),
            "closing the connections still open after the shutdown grace period"
        );
        let _ = drop_all.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(1), shutdown).await;
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Open connections, and the most open since memory was last handed back.
#[derive(Default)]
struct Surge {
    open: AtomicUsize,
    peak: AtomicUsize,
}

/// A surge worth handing memory back after: each connection costs ~16 KiB while open.
const SURGE: usize = 256;

impl Surge {
    fn opened(&self) {
        let open = self.open.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        self.peak.fetch_max(open, Ordering::Relaxed);
    }

    /// glibc keeps the small blocks freed by closed connections in its heap (2,000 of them
    /// left ~30 MiB resident): once a surge has mostly drained, hand them back to the OS.
    fn closed(&self) {
        let open = self.open.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        let peak = self.peak.load(Ordering::Relaxed);
        if peak >= SURGE
            && open <= peak / 4
            && self
                .peak
                .compare_exchange(peak, open, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tokio::task::spawn_blocking(release_free_memory);
        }
    }
}

fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the OS; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resolves once the connection has received nothing for `limit`.
async fn silence(activity: &Activity, limit: Duration) {
    loop {
        let last = activity.last_read().unwrap_or(activity.origin);
        let deadline = later(last, limit);
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
    }
}

/// `t + d`, saturating far in the future instead of overflowing.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(t)
}

/// When a connection last received bytes.
struct Activity {
    origin: Instant,
    /// Nanoseconds after `origin`, plus one; 0: nothing received yet.
    last_read: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            origin: Instant::now(),
            last_read: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.last_read
            .store(nanos.saturating_add(1), Ordering::Relaxed);
    }

    fn last_read(&self) -> Option<Instant> {
        match self.last_read.load(Ordering::Relaxed) {
            0 => None,
            n => Some(later(self.origin, Duration::from_nanos(n - 1))),
        }
    }
}

/// The socket, noting when bytes arrive.
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The timer hyper's HTTP/1 server uses, one per connection. hyper (1.x) uses it for one thing:
/// the wait for a request head, armed (`sleep_until`) each time it starts waiting for one; any
/// other use (`sleep`) gets a plain sleep.
struct HeadTimer {
    activity: Arc<Activity>,
    header: Duration,
    idle: Duration,
    /// Whether a head wait was armed before: the first is the connection's first request.
    armed_before: AtomicBool,
}

impl HeadTimer {
    fn new(activity: Arc<Activity>, limits: &ServerConfig) -> HeadTimer {
        HeadTimer {
            activity,
            header: limits.header_read_timeout,
            idle: limits.idle_timeout,
            armed_before: AtomicBool::new(false),
        }
    }
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HeadWait::plain(later(Instant::now(), duration)))
    }

    /// A head wait (hyper asks for `now + header_read_timeout`; the deadline is recomputed).
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let first = !self.armed_before.swap(true, Ordering::Relaxed);
        Box::pin(HeadWait {
            armed: Instant::now(),
            first,
            started: None,
            activity: Some(self.activity.clone()),
            header: self.header,
            idle: self.idle,
            sleep: Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
                deadline,
            ))),
        })
    }
}

/// One wait for a request head: `header` from the connection's opening for the first request;
/// for a later one, `idle` until its first byte arrives and `header` from then on.
struct HeadWait {
    armed: Instant,
    first: bool,
    /// When the first byte of this head arrived (after `armed`).
    started: Option<Instant>,
    /// None: a plain sleep until the deadline `sleep` was created with.
    activity: Option<Arc<Activity>>,
    header: Duration,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl HeadWait {
    fn plain(deadline: Instant) -> HeadWait {
        HeadWait {
            armed: Instant::now(),
            first: false,
            started: None,
            activity: None,
            header: Duration::ZERO,
            idle: Duration::ZERO,
            sleep: Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
                deadline,
            ))),
        }
    }

    fn deadline(&mut self) -> Option<Instant> {
        let activity = self.activity.as_ref()?;
        if self.first {
            return Some(later(self.armed, self.header));
        }
        if self.started.is_none() {
            // hyper polls this after every read that leaves the head incomplete, so the first
            // read after arming is seen here (a pipelined head already buffered counts as idle).
            self.started = activity.last_read().filter(|t| *t > self.armed);
        }
        Some(match self.started {
            Some(t) => later(t, self.header),
            None => later(self.armed, self.idle),
        })
    }
}

impl Future for HeadWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some(deadline) = this.deadline() {
            let deadline = tokio::time::Instant::from_std(deadline);
            if this.sleep.deadline() != deadline {
                this.sleep.as_mut().reset(deadline);
            }
        }
        this.sleep.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for HeadWait {}
