//! Connections from an untrusted network: limits for a poem server, and HTTPS.
//!
//! poem 3's `Server` has no request-header read timeout and no cap on connections (hyper's
//! `header_read_timeout` needs a timer poem does not give it). [`LimitedAcceptor`] wraps any
//! poem [`Acceptor`] and adds, per [`ConnectionLimits`]:
//!
//! - a **request-header deadline**: a client that has not sent a request's complete headers
//!   within `header_read_timeout` (10 s) of connecting — or, on a keep-alive connection, of
//!   the first byte of its next request — is closed. A TLS handshake counts as part of the
//!   first request's headers;
//! - a **keep-alive idle timeout**: a connection with no request in progress and nothing
//!   written for `idle_timeout` (30 s) is closed (also a client that stops reading a
//!   response);
//! - a **cap** of `max_connections` live connections. At the cap, a new connection takes
//!   the place of the oldest *idle* one: one still sending a request's headers, else a
//!   keep-alive one with nothing written for a second; a connection with a request in
//!   progress is never cut.
//!   When every connection is busy, the new one waits up to `queue_timeout` (1 s) for a
//!   place and is then closed unanswered.
//!
//! It watches the bytes, not the protocol: a request's headers end at the first empty line
//! (HTTP/1.x), the response's first write ends the request, the next bytes read start the
//! next one. An HTTP/2 connection (its preface) gets the idle timeout only. A client that
//! sends `Expect: 100-continue` and then a body slower than the header deadline is cut.
//!
//! [`TlsAcceptor`] serves HTTPS with rustls (the ring provider, HTTP/1.1 by ALPN); put it
//! *inside* the limits so the handshake is under the header deadline:
//!
//! ```no_run
//! # async fn run(app: impl poem::Endpoint + 'static) -> std::io::Result<()> {
//! use poem::listener::TcpAcceptor;
//! use joblog_web::listener::{ConnectionLimits, LimitedAcceptor, TlsAcceptor, load_tls_config};
//!
//! let tls = load_tls_config("cert.pem".as_ref(), "key.pem".as_ref()).expect("TLS files");
//! let tcp = TcpAcceptor::from_tokio(tokio::net::TcpListener::bind("0.0.0.0:3443").await?)?;
//! let acceptor = LimitedAcceptor::new(TlsAcceptor::new(tcp, tls), ConnectionLimits::default());
//! poem::Server::new_with_acceptor(acceptor).run(app).await
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::task::AtomicWaker;
use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// `header_read_timeout` unless set: a client has this long to send a request's headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// `idle_timeout` unless set: a keep-alive connection with nothing to do is closed after this.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// `queue_timeout` unless set: how long a connection beyond the cap waits for a place.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(1);
/// A keep-alive connection counts as idle (and may be closed to make room) once nothing has
/// been written to it for this long: its last response is out.
const EVICT_AFTER_LAST_WRITE: Duration = Duration::from_secs(1);
/// The pause after a failed `accept` (out of file descriptors, …) before the next one.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// How many connections, and for how long, a server keeps open; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionLimits {
    /// A request's headers must be complete this long after the connection opened (first
    /// request) or after its first byte (later requests). Default 10 s.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress is closed after this long. Default 30 s.
    pub idle_timeout: Duration,
    /// Live connections at most. Default [`default_max_connections`].
    pub max_connections: usize,
    /// How long a connection beyond the cap, with every place busy, waits. Default 1 s.
    pub queue_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: default_max_connections(),
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
        }
    }
}

/// The connection cap sized for this machine: half the process's open-file limit (the
/// other half for the database pool, the ERP, logs), between 64 and 4,096; 512 where the
/// limit cannot be read (it is read from `/proc/self/limits` on Linux).
#[must_use]
pub fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<u64>().ok())
        });
    match soft {
        Some(n) => usize::try_from(n / 2).unwrap_or(usize::MAX).clamp(64, 4_096),
        None => 512,
    }
}

/// What a connection is doing, as far as its bytes tell.
const HEAD: u8 = 0;
const BUSY: u8 = 1;
const RESPONDING: u8 = 2;
const HTTP2: u8 = 3;

/// One live connection as the registry sees it.
#[derive(Debug, Default)]
struct Slot {
    phase: AtomicU8,
    /// Milliseconds since the registry's epoch of the last write.
    last_write_ms: AtomicU64,
    write_pending: AtomicBool,
    evicted: AtomicBool,
    waker: AtomicWaker,
}

#[derive(Debug, Default)]
struct Slots {
    next_id: u64,
    live: BTreeMap<u64, Arc<Slot>>,
    /// Evicted, their streams not dropped yet.
    evicted: usize,
}

#[derive(Debug)]
struct Registry {
    limits: ConnectionLimits,
    epoch: Instant,
    slots: Mutex<Slots>,
    released: Notify,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        // The lock guards plain bookkeeping: a panic elsewhere leaves it consistent.
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn evictable(&self, slot: &Slot, now_ms: u64) -> bool {
        match slot.phase.load(Ordering::Acquire) {
            HEAD => true,
            RESPONDING => {
                !slot.write_pending.load(Ordering::Acquire)
                    && now_ms.saturating_sub(slot.last_write_ms.load(Ordering::Acquire))
                        >= EVICT_AFTER_LAST_WRITE.as_millis() as u64
            }
            _ => false,
        }
    }

    /// A place for a new connection: free, or taken from the oldest idle one; `None` when
    /// none came free within `queue_timeout`.
    async fn admit(&self) -> Option<(u64, Arc<Slot>)> {
        let deadline = Instant::now() + self.limits.queue_timeout;
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                let mut slots = self.lock();
                let active = slots.live.len() - slots.evicted;
                if active >= self.limits.max_connections.max(1) {
                    let now = self.now_ms();
                    // Connections still sending their headers go first (a slow-header
                    // flood), idle keep-alive ones (a user between two clicks) after them.
                    let candidates = || slots.live.values().filter(|s| !s.evicted.load(Ordering::Acquire));
                    let victim = candidates()
                        .find(|s| s.phase.load(Ordering::Acquire) == HEAD)
                        .or_else(|| candidates().find(|s| self.evictable(s, now)))
                        .cloned();
                    if let Some(victim) = victim {
                        victim.evicted.store(true, Ordering::Release);
                        victim.waker.wake();
                        slots.evicted += 1;
                        tracing::debug!("MAX_CONNECTIONS reached: closing the oldest idle connection");
                    }
                }
                let active = slots.live.len() - slots.evicted;
                if active < self.limits.max_connections.max(1) {
                    let id = slots.next_id;
                    slots.next_id += 1;
                    let slot = Arc::new(Slot::default());
                    slots.live.insert(id, slot.clone());
                    return Some((id, slot));
                }
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return None;
            }
        }
    }

    fn release(&self, id: u64) {
        let mut slots = self.lock();
        if let Some(slot) = slots.live.remove(&id)
            && slot.evicted.load(Ordering::Acquire)
        {
            slots.evicted = slots.evicted.saturating_sub(1);
        }
        drop(slots);
        self.released.notify_one();
    }
}

/// A poem [`Acceptor`] with [`ConnectionLimits`]: wraps `A`'s connections in
/// [`LimitedStream`]s; see the [module docs](self).
#[derive(Debug)]
pub struct LimitedAcceptor<A> {
    inner: A,
    registry: Arc<Registry>,
}

impl<A: Acceptor> LimitedAcceptor<A> {
    /// `inner`'s connections, limited.
    #[must_use]
    pub fn new(inner: A, limits: ConnectionLimits) -> Self {
        Self {
            inner,
            registry: Arc::new(Registry {
                limits,
                epoch: Instant::now(),
                slots: Mutex::new(Slots::default()),
                released: Notify::new(),
            }),
        }
    }

    /// A handle that counts the live connections (for logs, metrics and tests).
    #[must_use]
    pub fn live_connections(&self) -> LiveConnections {
        LiveConnections(self.registry.clone())
    }
}

/// Counts a [`LimitedAcceptor`]'s live connections.
#[derive(Debug, Clone)]
pub struct LiveConnections(Arc<Registry>);

impl LiveConnections {
    /// Connections open now (closed ones leave when their stream is dropped).
    #[must_use]
    pub fn count(&self) -> usize {
        self.0.lock().live.len()
    }
}

impl<A: Acceptor> Acceptor for LimitedAcceptor<A> {
    type Io = LimitedStream<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        loop {
            let (io, local, remote, scheme) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, a connection reset before it was accepted:
                    // poem would call again at once, in a hot loop.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            };
            match self.registry.admit().await {
                Some((id, slot)) => {
                    let stream = LimitedStream::new(io, self.registry.clone(), id, slot);
                    return Ok((stream, local, remote, scheme));
                }
                None => {
                    tracing::warn!(
                        remote = %remote,
                        max_connections = self.registry.limits.max_connections,
                        "connection refused: MAX_CONNECTIONS reached and every connection is busy"
                    );
                }
            }
        }
    }
}

/// The HTTP/2 connection preface's first line.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// A connection under [`ConnectionLimits`]: reads fail with `TimedOut` past a deadline, and
/// with `ConnectionAborted` when it was closed to make room. Its place is freed on drop.
pub struct LimitedStream<S> {
    inner: S,
    registry: Arc<Registry>,
    id: u64,
    slot: Arc<Slot>,
    /// Progress through the empty line that ends the headers: 0 none, 1 after `\n`,
    /// 2 after `\n\r`.
    line_state: u8,
    /// Bytes of [`H2_PREFACE`] matched while it still may be HTTP/2.
    preface: Option<usize>,
    deadline: Pin<Box<Sleep>>,
}

impl<S> fmt::Debug for LimitedStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitedStream")
            .field("id", &self.id)
            .field("phase", &self.slot.phase.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<S> LimitedStream<S> {
    fn new(inner: S, registry: Arc<Registry>, id: u64, slot: Arc<Slot>) -> Self {
        let deadline = Box::pin(tokio::time::sleep(registry.limits.header_read_timeout));
        Self {
            inner,
            registry,
            id,
            slot,
            line_state: 0,
            preface: Some(0),
            deadline,
        }
    }

    fn phase(&self) -> u8 {
        self.slot.phase.load(Ordering::Acquire)
    }

    fn set_phase(&mut self, phase: u8, deadline_in: Option<Duration>) {
        self.slot.phase.store(phase, Ordering::Release);
        if let Some(d) = deadline_in {
            self.deadline.as_mut().reset(Instant::now() + d);
        }
    }

    /// Follows the request from the bytes just read.
    fn on_read(&mut self, bytes: &[u8]) {
        let limits = self.registry.limits;
        match self.phase() {
            RESPONDING => {
                // The next request's first bytes.
                self.line_state = 0;
                self.set_phase(HEAD, Some(limits.header_read_timeout));
            }
            HTTP2 => {
                self.deadline.as_mut().reset(Instant::now() + limits.idle_timeout);
                return;
            }
            BUSY => return,
            _ => {}
        }
        for &b in bytes {
            if let Some(matched) = self.preface {
                self.preface = (H2_PREFACE.get(matched) == Some(&b)).then_some(matched + 1);
                if self.preface == Some(H2_PREFACE.len()) {
                    self.preface = None;
                    self.set_phase(HTTP2, Some(limits.idle_timeout));
                    return;
                }
            }
            self.line_state = match (self.line_state, b) {
                (1 | 2, b'\n') => {
                    self.preface = None;
                    self.line_state = 0;
                    self.set_phase(BUSY, None);
                    return;
                }
                (1, b'\r') => 2,
                (_, b'\n') => 1,
                _ => 0,
            };
        }
    }

    fn on_write(&mut self) {
        self.slot.write_pending.store(false, Ordering::Release);
        self.slot
            .last_write_ms
            .store(self.registry.now_ms(), Ordering::Release);
        let idle = self.registry.limits.idle_timeout;
        match self.phase() {
            HTTP2 => self.deadline.as_mut().reset(Instant::now() + idle),
            RESPONDING => self.deadline.as_mut().reset(Instant::now() + idle),
            _ => {
                self.set_phase(RESPONDING, Some(idle));
                // hyper does not read again after a response until woken (its last read
                // was pending): wake it, so that its next read arms the idle deadline.
                self.slot.waker.wake();
            }
        }
    }

    fn after_write<T>(&mut self, result: &Poll<io::Result<T>>, wrote: impl Fn(&T) -> bool) {
        match result {
            Poll::Ready(Ok(n)) if wrote(n) => self.on_write(),
            Poll::Pending => self.slot.write_pending.store(true, Ordering::Release),
            _ => {}
        }
    }
}

impl<S> Drop for LimitedStream<S> {
    fn drop(&mut self) {
        self.registry.release(self.id);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LimitedStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.slot.waker.register(cx.waker());
        if this.slot.evicted.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room for a new connection (MAX_CONNECTIONS)",
            )));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if !new.is_empty() {
                    this.on_read(new);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let phase = this.phase();
                if phase != BUSY && this.deadline.as_mut().poll(cx).is_ready() {
                    let what = if phase == HEAD {
                        "no complete request headers within the header read timeout"
                    } else {
                        "idle longer than the keep-alive timeout"
                    };
                    tracing::debug!(connection = this.id, "closing a connection: {what}");
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LimitedStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(&result, |n| *n > 0);
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(&result, |n| *n > 0);
        result
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

/// A TLS certificate or key file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFileError {
    /// `TLS_CERT` or `TLS_KEY`.
    pub variable: &'static str,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for TlsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.message)
    }
}

impl std::error::Error for TlsFileError {}

/// A rustls server configuration (ring; TLS 1.2 and 1.3; ALPN `http/1.1`) from a PEM
/// certificate chain and its PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsFileError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert_error = |message: String| TlsFileError {
        variable: "TLS_CERT",
        message,
    };
    let key_error = |message: String| TlsFileError {
        variable: "TLS_KEY",
        message,
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            cert_error(format!(
                "a PEM certificate file; {} cannot be used ({e})",
                cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(cert_error(format!(
            "a PEM certificate file; {} holds no certificate",
            cert.display()
        )));
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        key_error(format!(
            "a PEM private key file; {} cannot be used ({e})",
            key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| cert_error(format!("TLS setup failed ({e})")))?
        .with_no_client_auth()
        .with_single_cert(certs, private_key)
        .map_err(|e| {
            key_error(format!(
                "the private key of the certificate in TLS_CERT; {} does not fit it ({e})",
                key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A poem [`Acceptor`] serving TLS (rustls) on `A`'s connections. The handshake runs on the
/// connection's first read, in its own task, never in the accept loop.
pub struct TlsAcceptor<A> {
    inner: A,
    tls: tokio_rustls::TlsAcceptor,
}

impl<A> fmt::Debug for TlsAcceptor<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor").finish_non_exhaustive()
    }
}

impl<A: Acceptor> TlsAcceptor<A> {
    /// `inner`'s connections over TLS with `config` (see [`load_tls_config`]).
    #[must_use]
    pub fn new(inner: A, config: Arc<rustls::ServerConfig>) -> Self {
        Self {
            inner,
            tls: tokio_rustls::TlsAcceptor::from(config),
        }
    }
}

impl<A: Acceptor> Acceptor for TlsAcceptor<A> {
    type Io = TlsStream<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, _) = self.inner.accept().await?;
        let stream = TlsStream(TlsState::Handshaking(Box::new(self.tls.accept(io))));
        Ok((stream, local, remote, Scheme::HTTPS))
    }
}

/// A server-side TLS connection whose handshake completes on first use.
pub struct TlsStream<S>(TlsState<S>);

enum TlsState<S> {
    Handshaking(Box<tokio_rustls::Accept<S>>),
    Ready(Box<tokio_rustls::server::TlsStream<S>>),
    Failed,
}

impl<S> fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.0 {
            TlsState::Handshaking(_) => "handshaking",
            TlsState::Ready(_) => "ready",
            TlsState::Failed => "failed",
        };
        f.debug_tuple("TlsStream").field(&state).finish()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream<S> {
    fn poll_handshake(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<&mut tokio_rustls::server::TlsStream<S>>> {
        if let TlsState::Handshaking(accept) = &mut self.0 {
            match ready!(Pin::new(accept.as_mut()).poll(cx)) {
                Ok(stream) => self.0 = TlsState::Ready(Box::new(stream)),
                Err(e) => {
                    self.0 = TlsState::Failed;
                    return Poll::Ready(Err(e));
                }
            }
        }
        match &mut self.0 {
            TlsState::Ready(stream) => Poll::Ready(Ok(stream)),
            _ => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the TLS handshake failed",
            ))),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let stream = ready!(self.get_mut().poll_handshake(cx))?;
        Pin::new(stream).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let stream = ready!(self.get_mut().poll_handshake(cx))?;
        Pin::new(stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let stream = ready!(self.get_mut().poll_handshake(cx))?;
        Pin::new(stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.0 {
            TlsState::Ready(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
            // Nothing was said yet: no close_notify to send.
            _ => Poll::Ready(Ok(())),
        }
    }
}
