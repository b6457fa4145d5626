//! The accept loop: socketserver's `serve_forever`, with a connection cap and graceful
//! shutdown.

use std::any::Any;
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::BytesMut;
use futures::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::net::Listener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::address::{Address, Transport};
use crate::config::{AtCapacity, Config, ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN};
use crate::connection::Connection;
use crate::handle::{ConnectionShared, ServerHandle, Shared};
use crate::listen::BoundListener;
use crate::proxy::{read_header, Front, ProxyError};
use crate::stats::{bump, Counters, Stats};
use crate::warn::WarnLimit;

/// What a connection handler does: socketserver's `BaseRequestHandler.handle()`.
///
/// The server calls [`handle`](Handler::handle) once per accepted connection, in its own
/// tokio task. When the returned future completes, the connection is closed. An error result
/// is logged (in the connection's `tracing` span, with the peer address) and counted in
/// [`ErrorStats::handler`](crate::ErrorStats::handler); a panic is caught, logged and counted
/// in [`ErrorStats::panic`](crate::ErrorStats::panic). Neither affects other connections.
///
/// Any `Fn(Connection<S>) -> impl Future` closure is a handler, so an async closure works.
/// Name the parameter's type (`Connection`, or `Connection<MyState>` with shared state): Rust
/// cannot infer a closure's argument type through a trait bound other than `Fn`.
///
/// ```no_run
/// use framewire_server::{Connection, Server, ServerError};
///
/// # async fn run() -> Result<(), ServerError> {
/// let server = Server::bind("127.0.0.1:9999").await?;
/// server
///     .serve(|mut conn: Connection| async move {
///         while let Some(frame) = conn.recv().await? {
///             conn.send(&frame).await?;
///         }
///         Ok::<_, ServerError>(())
///     })
///     .await;
/// # Ok(())
/// # }
/// ```
///
/// A type implements it directly to carry its own configuration:
///
/// ```
/// use framewire_server::{Connection, Handler, ServerError};
///
/// struct Prefix(&'static str);
///
/// impl Handler for Prefix {
///     type Output = Result<(), ServerError>;
///
///     async fn handle(&self, mut conn: Connection) -> Self::Output {
///         while let Some(frame) = conn.recv().await? {
///             conn.send([self.0.as_bytes(), &frame].concat()).await?;
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Handler<S = ()>: Send + Sync + 'static {
    /// What the handler returns: `()` or `Result<(), E>` with a displayable `E`.
    type Output: HandlerOutput;

    /// Serves one connection, start to finish.
    fn handle(&self, conn: Connection<S>) -> impl Future<Output = Self::Output> + Send;
}

impl<S, F, Fut> Handler<S> for F
where
    S: Send + Sync + 'static,
    F: Fn(Connection<S>) -> Fut + Send + Sync + 'static,
    Fut: Future + Send,
    Fut::Output: HandlerOutput,
{
    type Output = Fut::Output;

    fn handle(&self, conn: Connection<S>) -> impl Future<Output = Self::Output> + Send {
        self(conn)
    }
}

/// The result of a handler: `()` (always success) or `Result<(), E>` where `E` is logged with
/// its `Display` form.
pub trait HandlerOutput: Send {
    /// The error type.
    type Error: fmt::Display;

    /// Converts into a `Result`.
    fn into_result(self) -> Result<(), Self::Error>;
}

impl HandlerOutput for () {
    type Error = Infallible;

    fn into_result(self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl<E: fmt::Display + Send> HandlerOutput for Result<(), E> {
    type Error = E;

    fn into_result(self) -> Result<(), E> {
        self
    }
}

/// What a graceful shutdown did, returned by [`Server::serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Connections still running when shutdown began that finished within the grace period.
    pub finished: u64,
    /// Connections aborted because their handler was still running when the grace period ran
    /// out.
    pub aborted: u64,
    /// The counters after the last connection ended.
    pub stats: Stats,
}

/// A framed TCP (or Unix-socket) server: socketserver's `ThreadingTCPServer`, in async Rust.
///
/// Build one with [`Server::bind`] or [`Server::builder`], then [`serve`](Server::serve) a
/// [`Handler`]. Each accepted connection runs the handler in its own tokio task, at most
/// [`max_connections`](crate::ServerBuilder::max_connections) at a time.
///
/// ```no_run
/// use framewire_server::{Connection, Server, ServerError};
///
/// #[tokio::main]
/// async fn main() -> Result<(), ServerError> {
///     let server = Server::bind("127.0.0.1:9999").await?;
///     println!("listening on {}", server.local_addr());
///     let report = server
///         .serve_until(
///             |mut conn: Connection| async move {
///                 while let Some(frame) = conn.recv().await? {
///                     conn.send(&frame).await?;
///                 }
///                 Ok::<_, ServerError>(())
///             },
///             tokio::signal::ctrl_c(),
///         )
///         .await;
///     println!("{} aborted", report.aborted);
///     Ok(())
/// }
/// ```
pub struct Server<S = (), L = BoundListener> {
    listener: L,
    shared: Arc<Shared<S>>,
}

impl<S, L> fmt::Debug for Server<S, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.shared.local_addr)
            .field("config", &self.shared.config)
            .field("connection_config", &self.shared.conn.config)
            .finish_non_exhaustive()
    }
}

/// Holds a connection's slot (cap, per-IP count, `active` counter) until its task ends.
struct Slot<S> {
    shared: Arc<Shared<S>>,
    ip: Option<IpAddr>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<S> Drop for Slot<S> {
    fn drop(&mut self) {
        self.shared
            .conn
            .counters
            .active
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(ip) = self.ip {
            let mut map = self
                .shared
                .per_ip
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = map.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

/// Runs the handler on `conn`. Its error, if any, is the one WARN line about the connection,
/// with the peer's address in it (the connection itself logs its errors at DEBUG only), and
/// goes through the server's [`WarnLimit`](crate::warn::WarnLimit).
///
/// Every idle connection's task holds this future, so its size is memory per connection.
/// The arguments of an `async fn` keep their own slots in its future for its whole life, even
/// once moved out, so `conn` comes boxed: moved into the handler's future it would otherwise
/// be held twice (408 bytes more per connection, measured with `size_of_val`). The box lives
/// only until the handler starts. `peer` is passed in rather than read from `conn` for the
/// same reason (borrowing `conn` here before the handler takes it would keep a copy too).
async fn run_connection<S, H: Handler<S>>(
    handler: Arc<H>,
    mut conn: Box<Connection<S>>,
    peer: Address,
    slot: Slot<S>,
) {
    let shared = &slot.shared;
    if conn.is_ack_mode() {
        conn.ack_accept().await;
    }
    match AssertUnwindSafe(handler.handle(*conn)).catch_unwind().await {
        Ok(output) => match output.into_result() {
            Ok(()) => tracing::debug!("connection closed"),
            Err(e) => {
                bump(&shared.conn.counters.err_handler, 1);
                if shared.warn_limit.allow() {
                    tracing::warn!(%peer, error = %e, "handler failed");
                }
            }
        },
        Err(payload) => {
            bump(&shared.conn.counters.err_panic, 1);
            let panic = panic_message(payload.as_ref());
            tracing::error!(%peer, panic, "handler panicked");
        }
    }
    drop(slot);
}

/// TLS: the handshake (within its timeout, abandoned at shutdown), then the handler. A failed
/// handshake is logged and counted, and the connection closed (its slot freed).
#[cfg(feature = "tls")]
async fn tls_then_run<S, H, T>(
    acceptor: tokio_rustls::TlsAcceptor,
    io: T,
    peer: Address,
    proxied_by: Option<Address>,
    server: ServerHandle<S>,
    handler: Arc<H>,
    slot: Slot<S>,
) where
    S: Send + Sync + 'static,
    H: Handler<S>,
    T: Transport,
{
    let shared = &slot.shared;
    let timeout = shared.config.tls_handshake_timeout;
    let handshake = crate::tls::accept(&acceptor, io, timeout);
    let (io, info) = tokio::select! {
        done = handshake => match done {
            Ok(done) => done,
            Err(e) => {
                let kind = e.kind();
                shared.conn.counters.count_error(kind);
                if kind == crate::ErrorKind::Proxy {
                    // A direct client that sent a PROXY header: the sniffer refused it.
                    if shared.warn_limit.allow() {
                        tracing::warn!(%peer, error = %e, "PROXY header refused; closing");
                    }
                } else {
                    // Counted in the stats; logged at DEBUG like every other connection
                    // error, so a port scanner on a TLS port cannot flood the log.
                    tracing::debug!(%peer, error = %e, "TLS handshake failed; connection closed");
                }
                return;
            }
        },
        () = shared.conn.shutdown.cancelled() => {
            tracing::debug!("shutdown during the TLS handshake; connection closed");
            return;
        }
    };
    tracing::debug!(tls = ?info, "TLS handshake done");
    let mut conn = Connection::new(Box::new(io), peer.clone(), server);
    if let Some(balancer) = proxied_by {
        conn.set_proxied_by(balancer);
    }
    conn.set_tls(info);
    conn.start();
    run_connection(handler, Box::new(conn), peer, slot).await;
}

impl<S, L> Server<S, L>
where
    S: Send + Sync + 'static,
    L: Listener + Send + 'static,
    L::Io: Transport,
    L::Addr: Into<Address>,
{
    pub(crate) fn new(listener: L, local_addr: Address, state: S, config: Config) -> Self {
        let Config { server, connection } = config;
        let mut store = framewire_codec::ack::SessionStore::new();
        let (linger, max_sessions, max_bytes) = server.sessions;
        store
            .set_linger(linger)
            .set_max_sessions(max_sessions)
            .set_max_bytes(max_bytes);
        Server {
            listener,
            shared: Arc::new(Shared {
                state,
                conn: ConnectionShared {
                    config: connection,
                    counters: Counters::default(),
                    shutdown: CancellationToken::new(),
                    aborting: std::sync::atomic::AtomicBool::new(false),
                    sessions: framewire_codec::ack::SessionHub::new(store),
                },
                config: server,
                local_addr,
                stopped: CancellationToken::new(),
                per_ip: Mutex::new(HashMap::new()),
                warn_limit: WarnLimit::default(),
            }),
        }
    }

    /// A handle for shutting the server down and reading its stats from elsewhere.
    pub fn handle(&self) -> ServerHandle<S> {
        ServerHandle::new(Arc::clone(&self.shared))
    }

    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> &Address {
        &self.shared.local_addr
    }

    /// socketserver's `serve_forever`: accepts connections and runs `handler` for each, until
    /// [`ServerHandle::shutdown`] is called; then shuts down gracefully (see
    /// [`serve_until`](Server::serve_until)).
    pub async fn serve<H: Handler<S>>(self, handler: H) -> ShutdownReport {
        self.serve_until(handler, std::future::pending::<()>())
            .await
    }

    /// Serves until `signal` completes (for example `tokio::signal::ctrl_c()`; its output,
    /// whatever its type, is ignored) or [`ServerHandle::shutdown`] is called, whichever comes
    /// first, then shuts down gracefully:
    ///
    /// 1. the listener is closed: no new connections;
    /// 2. handlers are signalled ([`Connection::shutdown_signal`] completes, `recv` ends
    ///    between frames);
    /// 3. up to the [grace period](crate::ServerBuilder::grace_period) is given for them to finish;
    /// 4. the rest are aborted, counted in the report and in
    ///    [`ErrorStats::aborted`](crate::ErrorStats::aborted), and logged.
    ///
    /// Accept errors (for example too many open files) are logged and counted, and the loop
    /// backs off (from [`ACCEPT_BACKOFF_MIN`] doubling to [`ACCEPT_BACKOFF_MAX`]); they never
    /// end serving.
    pub async fn serve_until<H, F>(self, handler: H, signal: F) -> ShutdownReport
    where
        H: Handler<S>,
        F: Future + Send,
    {
        let Server {
            mut listener,
            shared,
        } = self;
        let config = &shared.config;
        let handler = Arc::new(handler);
        let token = shared.conn.shutdown.clone();
        let limit = Arc::new(Semaphore::new(config.max_connections));
        let wait_at_cap = config.at_capacity == AtCapacity::Wait;
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut held: Option<OwnedSemaphorePermit> = None;
        let mut backoff = ACCEPT_BACKOFF_MIN;
        let pause = tokio::time::sleep(std::time::Duration::ZERO);
        tokio::pin!(pause, signal);
        let mut paused = false;
        tracing::info!(addr = %shared.local_addr, "listening");
        #[cfg(feature = "metrics")]
        let metrics = tokio::spawn(crate::metrics_export::publish_every_interval(Arc::clone(
            &shared,
        )));

        loop {
            let may_accept = !paused && (!wait_at_cap || held.is_some());
            tokio::select! {
                biased;
                () = token.cancelled() => break,
                _ = &mut signal => {
                    tracing::info!("shutdown signal received");
                    token.cancel();
                    break;
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                permit = Arc::clone(&limit).acquire_owned(), if wait_at_cap && held.is_none() => {
                    // The semaphore is never closed, so this is always Ok.
                    held = permit.ok();
                }
                () = &mut pause, if paused => paused = false,
                accepted = listener.accept(), if may_accept => match accepted {
                    Ok((io, addr)) => {
                        backoff = ACCEPT_BACKOFF_MIN;
                        let peer: Address = addr.into();
                        if let Err(e) = io.set_nodelay() {
                            tracing::debug!(peer = %peer, error = %e, "could not set TCP_NODELAY");
                        }
                        let permit = if wait_at_cap {
                            held.take()
                        } else {
                            Arc::clone(&limit).try_acquire_owned().ok()
                        };
                        let proxy = config.proxy.as_ref();
                        let trusted = proxy
                            .is_some_and(|p| peer.ip().is_some_and(|ip| p.is_trusted(ip)));
                        if trusted {
                            // The header is read in the connection's own task; the cap
                            // counts it from now on.
                            if permit.is_none() && !wait_at_cap {
                                refuse_at_capacity(&shared, &peer);
                                continue;
                            }
                            let span = tracing::info_span!("proxy_header", balancer = %peer);
                            let fut = run_proxied(
                                Arc::clone(&handler),
                                io,
                                peer,
                                Arc::clone(&shared),
                                permit,
                            );
                            tasks.spawn(fut.instrument(span));
                            continue;
                        }
                        match admit(&shared, &peer, permit, wait_at_cap) {
                            Admission::Admit(slot) => {
                                let span = tracing::info_span!("connection", peer = %peer);
                                let io: Box<dyn Transport> = if proxy.is_some() {
                                    Box::new(Front::sniffing(io))
                                } else {
                                    Box::new(io)
                                };
                                let server = ServerHandle::new(Arc::clone(&shared));
                                let handler = Arc::clone(&handler);
                                #[cfg(feature = "tls")]
                                if let Some(acceptor) = &config.tls {
                                    // The handshake runs in the connection's own task, with
                                    // its own timeout: a stalled one never holds up accepting.
                                    let fut = tls_then_run(
                                        acceptor.clone(),
                                        io,
                                        peer,
                                        None,
                                        server,
                                        handler,
                                        slot,
                                    );
                                    tasks.spawn(fut.instrument(span));
                                    continue;
                                }
                                let mut conn = Connection::new(io, peer.clone(), server);
                                // Ack mode: the HELLO goes out before the handler runs. Done
                                // here, not in the task: a connection borrowed inside the
                                // task's future before being moved into the handler keeps a
                                // second slot in that future (a few hundred bytes per idle
                                // connection).
                                conn.start();
                                let fut = run_connection(handler, Box::new(conn), peer, slot);
                                tasks.spawn(fut.instrument(span));
                            }
                            Admission::Refuse(permit) => {
                                // Keep an unused permit for the next connection.
                                if wait_at_cap {
                                    held = permit;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        bump(&shared.conn.counters.err_accept, 1);
                        if shared.warn_limit.allow() {
                            tracing::warn!(
                                error = %e,
                                backoff_ms = backoff.as_millis() as u64,
                                "accept failed; backing off",
                            );
                        }
                        pause.as_mut().reset(Instant::now() + backoff);
                        paused = true;
                        backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    }
                },
            }
        }

        // Graceful shutdown.
        drop(listener);
        drop(held);
        token.cancel();
        let running = tasks.len();
        tracing::info!(
            running,
            grace_ms = config.grace_period.as_millis() as u64,
            "shutting down"
        );
        let grace = tokio::time::sleep(config.grace_period);
        tokio::pin!(grace);
        let mut finished = 0u64;
        while !tasks.is_empty() {
            tokio::select! {
                biased;
                Some(_) = tasks.join_next() => finished += 1,
                () = &mut grace => break,
            }
        }
        let mut aborted = 0u64;
        if !tasks.is_empty() {
            shared
                .conn
                .aborting
                .store(true, std::sync::atomic::Ordering::SeqCst);
            tasks.abort_all();
            while let Some(res) = tasks.join_next().await {
                match res {
                    Err(e) if e.is_cancelled() => aborted += 1,
                    _ => finished += 1,
                }
            }
            bump(&shared.conn.counters.err_aborted, aborted);
            tracing::warn!(
                aborted,
                grace_ms = config.grace_period.as_millis() as u64,
                "aborted connections still running after the grace period",
            );
        }
        shared.warn_limit.flush();
        tracing::info!(finished, aborted, "server stopped");
        #[cfg(feature = "metrics")]
        {
            // Stopped first, so that no older snapshot lands after the last one.
            metrics.abort();
            let _ = metrics.await;
            crate::metrics_export::publish(
                &shared.conn.counters.snapshot(),
                &shared.local_addr.to_string(),
            );
        }
        shared.stopped.cancel();
        ShutdownReport {
            finished,
            aborted,
            stats: shared.conn.counters.snapshot(),
        }
    }
}

fn refuse_at_capacity<S>(shared: &Shared<S>, peer: &Address) {
    bump(&shared.conn.counters.refused_at_capacity, 1);
    let max = shared.config.max_connections;
    tracing::debug!(%peer, max, "refused: at max_connections");
}

/// A connection from a trusted load balancer: reads its PROXY header (bounded in time and
/// size), then admits and serves the original client it names.
async fn run_proxied<S, H, T>(
    handler: Arc<H>,
    mut io: T,
    balancer: Address,
    shared: Arc<Shared<S>>,
    permit: Option<OwnedSemaphorePermit>,
) where
    S: Send + Sync + 'static,
    H: Handler<S>,
    T: Transport,
{
    let Some(proxy) = shared.config.proxy.as_ref() else {
        return;
    };
    let timeout = proxy.timeout();
    let mut buf = BytesMut::new();
    let read = tokio::select! {
        read = tokio::time::timeout(timeout, read_header(&mut io, &mut buf, proxy.max_len())) => {
            read.unwrap_or_else(|_| Err(ProxyError::Timeout {
                timeout,
                received: buf.len(),
            }))
        }
        () = shared.conn.shutdown.cancelled() => return,
    };
    let (header, rest) = match read {
        Ok(read) => read,
        Err(e) => {
            bump(&shared.conn.counters.err_proxy, 1);
            if shared.warn_limit.allow() {
                tracing::warn!(%balancer, error = %e, "PROXY header refused; closing");
            }
            return;
        }
    };
    let (peer, proxied_by) = match header.source {
        Some(client) => (Address::Tcp(client), Some(balancer)),
        None => (balancer, None),
    };
    // A permit was taken (refuse mode) or is held (wait mode): the cap check passes.
    let Admission::Admit(slot) = admit(&shared, &peer, permit, true) else {
        return;
    };
    let span = match &proxied_by {
        Some(balancer) => tracing::info_span!("connection", peer = %peer, via = %balancer),
        None => tracing::info_span!("connection", peer = %peer),
    };
    let io: Box<dyn Transport> = if rest.is_empty() {
        Box::new(io)
    } else {
        Box::new(Front::prefixed(rest, io))
    };
    #[cfg(feature = "tls")]
    let tls = shared.config.tls.clone();
    let server = ServerHandle::new(shared);
    #[cfg(feature = "tls")]
    if let Some(acceptor) = tls {
        // PROXY header first, then the TLS handshake (the balancer relays TLS untouched).
        let fut = tls_then_run(acceptor, io, peer, proxied_by, server, handler, slot);
        return fut.instrument(span).await;
    }
    let mut conn = Connection::new(io, peer.clone(), server);
    if let Some(balancer) = proxied_by {
        conn.set_proxied_by(balancer);
    }
    conn.start();
    run_connection(handler, Box::new(conn), peer, slot)
        .instrument(span)
        .await;
}

enum Admission<S> {
    Admit(Slot<S>),
    Refuse(Option<OwnedSemaphorePermit>),
}

/// Applies the accept filter, the per-IP cap and (in refuse mode) the connection cap.
fn admit<S>(
    shared: &Arc<Shared<S>>,
    peer: &Address,
    permit: Option<OwnedSemaphorePermit>,
    wait_at_cap: bool,
) -> Admission<S> {
    let config = &shared.config;
    let counters = &shared.conn.counters;
    if let Some(filter) = &config.filter {
        if !filter(peer) {
            bump(&counters.refused_by_filter, 1);
            tracing::debug!(%peer, "refused by the accept filter");
            return Admission::Refuse(permit);
        }
    }
    if permit.is_none() && !wait_at_cap {
        refuse_at_capacity(shared, peer);
        return Admission::Refuse(None);
    }
    let ip = match (config.max_connections_per_ip, peer.ip()) {
        (Some(max), Some(ip)) => {
            let mut map = shared.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
            let n = map.entry(ip).or_insert(0);
            if *n >= max {
                drop(map);
                bump(&counters.refused_per_ip, 1);
                tracing::debug!(%peer, max, "refused: at max_connections_per_ip");
                return Admission::Refuse(permit);
            }
            *n += 1;
            Some(ip)
        }
        _ => None,
    };
    bump(&counters.accepted, 1);
    bump(&counters.active, 1);
    Admission::Admit(Slot {
        shared: Arc::clone(shared),
        ip,
        _permit: permit,
    })
}
