//! [`ServerBuilder`]: fills in the server's [`Config`] and builds the [`Server`]; also
//! [`Server::builder`] and [`Server::bind`], the two ways in.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use framewire_codec::ack::AckConfig;
use framewire_codec::FrameCodecBuilder;
use framewire_codec::{Endpoint, IntoEndpoint};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpSocket;
use tokio_util::net::Listener;

use crate::address::Address;
use crate::config::{AtCapacity, Config, DEFAULT_BACKLOG};
use crate::error::ServerError;
use crate::incoming::Incoming;
use crate::listen::BoundListener;
use crate::proxy::ProxyProtocol;
use crate::server::Server;

impl Server {
    /// A builder with the defaults.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::new()
    }

    /// Binds a listener with the defaults; shorthand for `Server::builder().bind(addr)`:
    /// `"host:port"`, a `SocketAddr`, a `("host", port)` pair, or `"unix:/path"` (see
    /// [`ServerBuilder::bind`]).
    ///
    /// ```
    /// use framewire_server::Server;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), framewire_server::ServerError> {
    /// let server = Server::bind(("127.0.0.1", 0)).await?;
    /// println!("listening on {}", server.local_addr());
    /// # #[cfg(unix)]
    /// # {
    /// let path = std::env::temp_dir().join(format!("framewire-doc-{}.sock", std::process::id()));
    /// let unix = Server::bind(format!("unix:{}", path.display())).await?;
    /// assert_eq!(unix.local_addr().to_string(), format!("unix:{}", path.display()));
    /// drop(unix); // the socket file goes with the listener
    /// assert!(!path.exists());
    /// # }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ServerError::Bind`] if `addr` is not an address or cannot be bound.
    pub async fn bind(addr: impl IntoEndpoint) -> Result<Server, ServerError> {
        ServerBuilder::new().bind(addr).await
    }
}

/// Configures and builds a [`Server`].
///
/// `S` is the shared application state every handler can reach through
/// [`Connection::state`](crate::Connection::state); `()` unless set with
/// [`state`](ServerBuilder::state).
///
/// ```no_run
/// use std::time::Duration;
/// use framewire_server::{AtCapacity, Server};
///
/// # async fn run() -> Result<(), framewire_server::ServerError> {
/// let server = Server::builder()
///     .max_connections(1000)
///     .at_capacity(AtCapacity::Refuse)
///     .max_connections_per_ip(20)
///     .idle_timeout(Duration::from_secs(300))
///     .max_frame_len(64 * 1024)
///     .bind("127.0.0.1:9999")
///     .await?;
/// # Ok(())
/// # }
/// ```
///
/// # Timeouts and limits
///
/// One rule across framewire's builders: a timeout or limit that can be turned off takes
/// `impl Into<Option<_>>`, so pass the value itself (`Duration::from_secs(5)`, `100`) or
/// `None` for off; one that cannot be off (a connect, close, handshake or grace timeout)
/// takes the plain `Duration`.
pub struct ServerBuilder<S = ()> {
    state: S,
    config: Config,
    backlog: u32,
}

impl<S> fmt::Debug for ServerBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("config", &self.config)
            .field("backlog", &self.backlog)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder<()> {
    pub(crate) fn new() -> Self {
        ServerBuilder {
            state: (),
            config: Config::default(),
            backlog: DEFAULT_BACKLOG,
        }
    }
}

impl<S: Send + Sync + 'static> ServerBuilder<S> {
    /// Sets the shared application state, reachable from every handler through
    /// [`Connection::state`](crate::Connection::state) and
    /// [`ServerHandle::state`](crate::ServerHandle::state). Use atomics, a `Mutex` or channels
    /// inside it for anything handlers change.
    pub fn state<T: Send + Sync + 'static>(self, state: T) -> ServerBuilder<T> {
        ServerBuilder {
            state,
            config: self.config,
            backlog: self.backlog,
        }
    }

    /// The most connections holding a slot at once (default [`DEFAULT_MAX_CONNECTIONS`](crate::DEFAULT_MAX_CONNECTIONS)): a
    /// slot is taken when a connection is admitted and kept through the PROXY header read,
    /// the TLS handshake and the handler.
    /// Values below 1 act as 1, values above tokio's `Semaphore::MAX_PERMITS` as that.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.config.server.max_connections = max.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        self
    }

    /// What happens at the cap (default [`AtCapacity::Refuse`]).
    pub fn at_capacity(mut self, policy: AtCapacity) -> Self {
        self.config.server.at_capacity = policy;
        self
    }

    /// The most concurrent connections from one IP address (default
    /// [`DEFAULT_MAX_CONNECTIONS_PER_IP`](crate::DEFAULT_MAX_CONNECTIONS_PER_IP); `None`: no limit). Behind a
    /// [PROXY protocol](ServerBuilder::proxy_protocol) balancer the address is the original
    /// client's, not the balancer's. Further
    /// connections from that address are accepted and closed at once and counted in
    /// [`Stats::refused_per_ip`](crate::Stats::refused_per_ip). Does not apply to Unix
    /// sockets. Values below 1 act as 1.
    pub fn max_connections_per_ip(mut self, max: impl Into<Option<usize>>) -> Self {
        self.config.server.max_connections_per_ip = max.into().map(|max| max.max(1));
        self
    }

    /// Close a connection whose handler waited in `recv` for this long without a frame
    /// arriving (default [`DEFAULT_IDLE_TIMEOUT`](crate::DEFAULT_IDLE_TIMEOUT); `None` disables it). See
    /// [`Connection`](crate::Connection) for exactly when the clock runs.
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.connection.idle_timeout = timeout.into();
        self
    }

    /// Close a connection whose peer keeps the handler waiting inside unfinished frames for
    /// this long in total (default [`DEFAULT_STALL_TIMEOUT`](crate::DEFAULT_STALL_TIMEOUT)). `None` disables it. The time
    /// counts across frames, and every byte received earns back `1 / min_receive_rate`
    /// seconds, up to this much (see [`min_receive_rate`](ServerBuilder::min_receive_rate)).
    pub fn stall_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.connection.stall_timeout = timeout.into();
        self
    }

    /// The slowest rate, in bytes per second, at which a peer may send frames that are under
    /// way without using up the [stall timeout](ServerBuilder::stall_timeout) (default
    /// [`DEFAULT_MIN_RECEIVE_RATE`](crate::DEFAULT_MIN_RECEIVE_RATE); 0 acts as 1).
    ///
    /// The stall timeout is an allowance: time the handler spends waiting in `recv` for the
    /// rest of a frame is taken from it, every byte received adds `1 / rate` seconds back,
    /// and it never holds more than the stall timeout. A peer whose frames arrive whole (the
    /// normal case: small frames in one segment) or at least `rate` bytes per second never
    /// runs out; a peer dripping bytes, even complete 5-byte frames at 1 byte per second,
    /// does, and gets [`ServerError::StallTimeout`]. `None`: bytes earn nothing back, and the
    /// allowance starts over with each frame (the stall timeout bounds each frame alone).
    pub fn min_receive_rate(mut self, rate: impl Into<Option<u32>>) -> Self {
        self.config.connection.min_receive_rate = rate.into().map(|r| r.max(1));
        self
    }

    /// Fail a send when no outgoing byte could be written for this long (default
    /// [`DEFAULT_WRITE_TIMEOUT`](crate::DEFAULT_WRITE_TIMEOUT)). `None` disables it.
    pub fn write_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.connection.write_timeout = timeout.into();
        self
    }

    /// How long a graceful shutdown waits for running handlers before aborting them (default
    /// [`DEFAULT_GRACE_PERIOD`](crate::DEFAULT_GRACE_PERIOD)).
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.config.server.grace_period = grace;
        self
    }

    /// The listen backlog used by [`bind`](ServerBuilder::bind) (default [`DEFAULT_BACKLOG`]):
    /// socketserver's `request_queue_size`.
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Maximum frame payload length, both directions (default
    /// [`framewire_codec::DEFAULT_MAX_FRAME_LEN`], 8 MiB). A peer that announces more is
    /// disconnected with [`ServerError::Frame`]. In ack mode the limit is at least
    /// [`HELLO_LEN`](framewire_codec::ack::HELLO_LEN) bytes.
    pub fn max_frame_len(mut self, max: usize) -> Self {
        self.config.connection.codec = self.config.connection.codec.max_frame_len(max);
        self
    }

    /// Uses a fully configured codec builder (byte order, oversized-frame policy, limit).
    pub fn codec(mut self, codec: FrameCodecBuilder) -> Self {
        self.config.connection.codec = codec;
        self
    }

    /// Size of the read buffer a connection allocates when bytes arrive (default
    /// [`DEFAULT_READ_BUFFER_SIZE`](crate::DEFAULT_READ_BUFFER_SIZE)). Values below 64 act as 64, above 64 MiB as 64 MiB.
    /// Reads from a peer that keeps them full grow from this size up to 64 KiB (or this size,
    /// if larger).
    pub fn read_buffer_size(mut self, size: usize) -> Self {
        self.config.connection.read_buffer_size = size.clamp(64, 64 << 20);
        self
    }

    /// How many queued outgoing bytes make `feed` write before accepting more (default
    /// [`DEFAULT_WRITE_BUFFER_LIMIT`](crate::DEFAULT_WRITE_BUFFER_LIMIT)).
    pub fn write_buffer_limit(mut self, limit: usize) -> Self {
        self.config.connection.write_buffer_limit = limit.max(1);
        self
    }

    /// socketserver's `verify_request`: called with each new peer's address (the original
    /// client's, behind a [PROXY protocol](ServerBuilder::proxy_protocol) balancer); a connection
    /// for which it returns `false` is closed at once and counted in
    /// [`Stats::refused_by_filter`](crate::Stats::refused_by_filter).
    ///
    /// ```
    /// use framewire_server::Server;
    ///
    /// let builder = Server::builder().accept_filter(|peer| {
    ///     peer.ip().is_some_and(|ip| ip.is_loopback())
    /// });
    /// ```
    pub fn accept_filter<F>(mut self, filter: F) -> Self
    where
        F: Fn(&Address) -> bool + Send + Sync + 'static,
    {
        self.config.server.filter = Some(Arc::new(filter));
        self
    }

    /// Ack mode: every connection speaks framewire's ack mode (see
    /// [`framewire_codec::ack`]) with the [`AckConfig`] defaults, granting each peer a window
    /// of `window` unacknowledged messages (0 acts as 1;
    /// [`framewire_codec::ack::DEFAULT_WINDOW`] is a good default). Shorthand for
    /// [`ack_config`](Self::ack_config). Handlers use the same `recv`/`send` API: `recv`
    /// yields messages and acknowledges each once the handler asks for the next one, `send`
    /// waits for room in the peer's window. See [`Connection`](crate::Connection#ack-mode).
    pub fn ack_mode(self, window: u32) -> Self {
        let config = AckConfig::new().window(window);
        self.ack_config(config)
    }

    /// Ack mode with every setting given: the windows granted to each peer (messages and
    /// bytes), the caps on what a connection keeps unacknowledged whatever the peer grants,
    /// keepalive and peer timeout. Memory per connection is bounded by these settings, plus
    /// one frame each way, whatever the peer does.
    pub fn ack_config(mut self, config: AckConfig) -> Self {
        self.config.connection.ack = Some(config);
        self
    }

    /// Ack mode: how long the session of a client whose connection dropped is kept for it to
    /// resume (exactly-once delivery across the reconnect). Default
    /// [`DEFAULT_SESSION_LINGER`](framewire_codec::ack::DEFAULT_SESSION_LINGER) (60 s). A
    /// client that resumes later gets at-least-once delivery with stable message ids (see
    /// [Sessions](crate::Connection#sessions)).
    pub fn session_linger(mut self, linger: Duration) -> Self {
        self.config.server.sessions.0 = linger;
        self
    }

    /// Ack mode: the most sessions kept at once for clients to resume (0 keeps none). Past
    /// it, sessions that hold nothing give way first, then those whose client never resumed,
    /// each the one that dropped longest ago first; a session is never evicted for one of a
    /// lower rank (see [`SessionStore`](framewire_codec::ack::SessionStore#eviction)). Default
    /// [`DEFAULT_MAX_SESSIONS`](framewire_codec::ack::DEFAULT_MAX_SESSIONS) (10,000).
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.config.server.sessions.1 = max;
        self
    }

    /// Ack mode: the most unacknowledged payload bytes the kept sessions hold together.
    /// Default [`DEFAULT_MAX_SESSION_BYTES`](framewire_codec::ack::DEFAULT_MAX_SESSION_BYTES)
    /// (64 MiB).
    pub fn max_session_bytes(mut self, max: u64) -> Self {
        self.config.server.sessions.2 = max;
        self
    }

    /// TLS (feature `tls`): every connection, whatever the listener, runs a TLS handshake with
    /// this rustls configuration in its own task (within the
    /// [handshake timeout](ServerBuilder::tls_handshake_timeout)) before its handler runs.
    /// Ask the config for client certificates (mTLS) with a client-certificate verifier and
    /// for ALPN with its `alpn_protocols`; the handler sees the outcome in
    /// [`Connection::tls`](crate::Connection::tls). A failed handshake closes the connection
    /// and is counted in [`ErrorStats::tls_handshake`](crate::ErrorStats::tls_handshake) (or
    /// `tls_handshake_timeout`); everyone else is served as before.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use framewire_server::Server;
    /// use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    ///
    /// # async fn run(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<(), Box<dyn std::error::Error>> {
    /// let provider = Arc::new(rustls::crypto::ring::default_provider());
    /// let config = rustls::ServerConfig::builder_with_provider(provider)
    ///     .with_safe_default_protocol_versions()?
    ///     .with_no_client_auth()
    ///     .with_single_cert(chain, key)?;
    /// let server = Server::builder().tls(config).bind("127.0.0.1:9443").await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: impl Into<Arc<rustls::ServerConfig>>) -> Self {
        self.config.server.tls = Some(tokio_rustls::TlsAcceptor::from(config.into()));
        self
    }

    /// How long a TLS handshake may take (default [`DEFAULT_TLS_HANDSHAKE_TIMEOUT`](crate::DEFAULT_TLS_HANDSHAKE_TIMEOUT)). Only
    /// used with [`tls`](ServerBuilder::tls); needs the cargo feature `tls`.
    #[cfg(feature = "tls")]
    pub fn tls_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.server.tls_handshake_timeout = timeout;
        self
    }

    /// Serves the application's own connections: a `Stream` of byte streams (anything
    /// `AsyncRead + AsyncWrite + Unpin + Send`: an SSH channel, an in-memory
    /// `tokio::io::duplex`, a socket type tokio does not know), each with the peer's
    /// [`Address`] (often [`Address::Other`]). `local` is what
    /// [`Server::local_addr`] reports.
    ///
    /// Everything else applies as with a TCP listener: caps, the accept filter, timeouts, ack
    /// mode, TLS over the stream. Such a stream cannot report read readiness, so the
    /// connection reads to find out whether bytes arrived; it still holds no read buffer while
    /// idle (see [`Transport`](crate::Transport) for what each kind of stream costs). An
    /// `Err` item counts as an accept error; when the stream ends the server accepts nothing
    /// more and keeps serving until it is shut down.
    ///
    /// One connection (for example one end of a duplex pipe) is a stream of one:
    ///
    /// ```
    /// use framewire_server::{Address, Connection, Server, ServerError};
    ///
    /// # async fn run() {
    /// let (ours, theirs) = tokio::io::duplex(64 * 1024);
    /// # drop(theirs);
    /// let one = futures::stream::iter([Ok((ours, Address::Other("pipe".into())))]);
    /// let server = Server::builder().incoming(one, Address::Other("pipes".into()));
    /// # let _ = server.handle();
    /// # }
    /// ```
    pub fn incoming<St, T>(self, streams: St, local: Address) -> Server<S, Incoming<St>>
    where
        St: futures::Stream<Item = io::Result<(T, Address)>> + Send + Unpin + 'static,
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Server::new(
            Incoming::new(streams, local.clone()),
            local,
            self.state,
            self.config,
        )
    }

    /// Speak the PROXY protocol (v1 and v2) with the load balancers in `proxy`'s trusted
    /// networks (default: off; every peer is a direct client).
    ///
    /// A connection from a trusted address must begin with a PROXY header naming the client it
    /// relays; the header is read in the connection's own task (never in the accept loop),
    /// within [`ProxyProtocol::header_timeout`] and [`ProxyProtocol::max_header_len`]. Then
    /// [`Connection::peer_addr`](crate::Connection::peer_addr), the
    /// [accept filter](ServerBuilder::accept_filter), the
    /// [per-IP cap](ServerBuilder::max_connections_per_ip) and the connection's tracing span
    /// see the original client, and [`Connection::proxied_by`](crate::Connection::proxied_by)
    /// the balancer. Connections from other addresses are served as direct clients, and
    /// refused if they send a header. Refusals are counted in
    /// [`ErrorStats::proxy`](crate::ErrorStats::proxy). The connection cap
    /// ([`max_connections`](ServerBuilder::max_connections)) counts a connection from accept
    /// on, header included. See [`ProxyProtocol`] for the rules.
    pub fn proxy_protocol(mut self, proxy: ProxyProtocol) -> Self {
        self.config.server.proxy = Some(proxy);
        self
    }

    /// Binds a listener to `addr` and returns the server, ready to [`serve`](Server::serve).
    ///
    /// `addr` is anything a client connects to ([`IntoEndpoint`]): `"host:port"`, a
    /// `SocketAddr`, a `("host", port)` pair, or `"unix:/path"` for a Unix socket (on Unix).
    /// TCP gets `SO_REUSEADDR` and the configured [`backlog`](ServerBuilder::backlog); port 0
    /// picks a free port (ask [`Server::local_addr`] which). A Unix socket gets the backlog
    /// too, and its file is removed when serving ends (see [`BoundListener`]); a file already
    /// at that path (a live server's, or one left by a crashed process) is an error, not
    /// replaced.
    ///
    /// # Errors
    ///
    /// [`ServerError::Bind`] if `addr` is not an address (for example `"localhost"` with no
    /// port, an `InvalidInput` error saying so) or if no resolved address could be bound.
    pub async fn bind(self, addr: impl IntoEndpoint) -> Result<Server<S>, ServerError> {
        let backlog = self.backlog;
        let endpoint = addr.into_endpoint().map_err(|e| ServerError::Bind {
            addr: e.endpoint().to_string(),
            backlog,
            source: io::Error::new(io::ErrorKind::InvalidInput, e),
        })?;
        let bind_err = |source: io::Error| ServerError::Bind {
            addr: endpoint.to_string(),
            backlog,
            source,
        };
        let listener = match &endpoint {
            Endpoint::Tcp(addr) => bind_tcp(addr, backlog).await.map_err(bind_err)?,
            #[cfg(unix)]
            Endpoint::Unix(path) => BoundListener::unix(path.clone(), backlog).map_err(bind_err)?,
            _ => {
                return Err(bind_err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a server listens on host:port or unix:/path",
                )))
            }
        };
        self.listener(listener)
    }

    /// Serves connections from an already-bound listener: a `TcpListener`, a `UnixListener`,
    /// or anything implementing tokio-util's [`Listener`] whose streams implement
    /// [`Transport`](crate::Transport).
    ///
    /// A server on a Unix socket (a client connects with `"unix:/tmp/echo.sock"`):
    ///
    /// ```no_run
    /// use framewire_server::{Connection, Server, ServerError};
    ///
    /// # async fn run() -> Result<(), ServerError> {
    /// let listener = tokio::net::UnixListener::bind("/tmp/echo.sock")?;
    /// let server = Server::builder().listener(listener)?;
    /// println!("listening on {}", server.local_addr()); // unix:/tmp/echo.sock
    /// server
    ///     .serve(|mut conn: Connection| async move {
    ///         while let Some(frame) = conn.recv().await? {
    ///             conn.send(frame).await?;
    ///         }
    ///         Ok::<_, ServerError>(())
    ///     })
    ///     .await;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ServerError::Io`] if the listener cannot report its local address.
    pub fn listener<L>(self, listener: L) -> Result<Server<S, L>, ServerError>
    where
        L: Listener + Send + 'static,
        L::Io: crate::Transport,
        L::Addr: Into<Address>,
    {
        let local: Address = listener.local_addr()?.into();
        Ok(Server::new(listener, local, self.state, self.config))
    }
}

/// Binds the first address `addr` resolves to that can be bound, with `SO_REUSEADDR`.
async fn bind_tcp(addr: &str, backlog: u32) -> io::Result<BoundListener> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing");
    for resolved in tokio::net::lookup_host(addr).await? {
        let socket = if resolved.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        };
        let attempt = socket.and_then(|s| {
            s.set_reuseaddr(true)?;
            s.bind(resolved)?;
            s.listen(backlog)
        });
        match attempt {
            Ok(listener) => return Ok(BoundListener::tcp(listener)),
            Err(e) => last = e,
        }
    }
    Err(last)
}
