//! The server builder and its defaults.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use framewire_codec::ack::AckConfig;
use framewire_codec::{Endpoint, IntoEndpoint};
use framewire_codec::{FrameCodec, FrameCodecBuilder};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpSocket;
use tokio_util::net::Listener;

use crate::address::Address;
use crate::error::ServerError;
use crate::incoming::Incoming;
use crate::listen::BoundListener;
use crate::proxy::ProxyProtocol;
use crate::server::Server;

/// Default [`ServerBuilder::max_connections`]: 10,000.
///
/// The scale framewire's memory goal is set at (at most a few KiB per idle connection), so the
/// cap costs tens of MiB at most. Above the common 1024 open-files soft limit: raise the limit
/// (`ulimit -n`) or lower the cap; if the process runs out of descriptors first, the accept
/// loop logs, backs off and carries on.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Default [`ServerBuilder::stall_timeout`]: 30 seconds.
///
/// A real peer that has begun a frame finishes it in well under a second unless the frame is
/// huge or the network is dying; a slowloris peer drips bytes to hold a connection forever.
/// 30 s is generous to the first and still bounds the second. The time counts across frames,
/// less what the bytes received earn back at [`DEFAULT_MIN_RECEIVE_RATE`] (see
/// [`ServerBuilder::min_receive_rate`]).
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Default [`ServerBuilder::min_receive_rate`]: 500 bytes per second.
///
/// Apache's `mod_reqtimeout` default (`MinRate=500` for headers and bodies). Any live link
/// moves a frame that is under way far faster (a 2G mobile link does 5 KB/s or more), so only
/// a peer that drips bytes on purpose stays below it; one dripping complete 5-byte frames at
/// 1 byte/s spends 4 s of every 5 inside a frame and is closed after about 37 s.
pub const DEFAULT_MIN_RECEIVE_RATE: u32 = 500;

/// Default [`ServerBuilder::idle_timeout`]: 60 seconds.
///
/// nginx closes a connection that has not sent a request header within
/// `client_header_timeout` (60 s) and a kept-alive connection after `keepalive_timeout` (75 s)
/// of silence; Netty's `IdleStateHandler` leaves the value to the application, which usually
/// pings well within a minute. A server on a network must close silent connections by
/// default, or idle sockets accumulate until the connection cap locks everyone out; an
/// application with quieter peers raises it or has them send a heartbeat frame.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Default [`ServerBuilder::max_connections_per_ip`]: 64.
///
/// One address may hold at most 64 of the [`DEFAULT_MAX_CONNECTIONS`] (10,000), so it takes
/// over 150 addresses to fill the server, and a newcomer from another address is served
/// while one address opens thousands. 64 still leaves room for a NAT gateway or a proxy in
/// front of a few dozen users (behind a PROXY-protocol balancer the cap applies to the
/// original clients). Raise or lift it (`None`) for known heavy clients, benchmarks or tests.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 64;

/// Default [`ServerBuilder::write_timeout`]: 30 seconds.
///
/// How long a connection may sit with outgoing bytes that the peer does not read (full send
/// buffer, no progress) before it is closed. Same reasoning as [`DEFAULT_STALL_TIMEOUT`].
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default [`ServerBuilder::grace_period`]: 5 seconds.
///
/// Long enough for a handler to finish the reply it is working on; short enough that a
/// service restart does not hang on a handler that ignores the shutdown signal.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(5);

/// Default [`ServerBuilder::backlog`]: 1024, the value tokio's `TcpListener::bind` uses (the
/// kernel caps it at `net.core.somaxconn`).
pub const DEFAULT_BACKLOG: u32 = 1024;

/// Default [`ServerBuilder::read_buffer_size`]: 8 KiB, what tokio-util's `Framed` starts with.
///
/// A connection only holds a read buffer while bytes are arriving; an idle connection holds
/// none (see [`Connection`](crate::Connection)).
pub const DEFAULT_READ_BUFFER_SIZE: usize = 8 * 1024;

/// Default [`ServerBuilder::write_buffer_limit`]: 64 KiB, the codec's
/// [`DEFAULT_WRITE_BUFFER_LIMIT`](framewire_codec::DEFAULT_WRITE_BUFFER_LIMIT) (the server and
/// the client share one write path, [`FrameWriter`](framewire_codec::FrameWriter)).
///
/// Frames queued with `feed` are written in one go once this much is buffered (or on
/// `flush`); 64 KiB amortises the system call over many small frames while bounding what a
/// handler can queue in front of a slow peer.
pub use framewire_codec::DEFAULT_WRITE_BUFFER_LIMIT;

/// Default [`ServerBuilder::tls_handshake_timeout`]: 10 seconds.
///
/// A TLS handshake is one or two round trips and a few signature checks: well under a second
/// on a working network, a few seconds on a satellite or congested mobile link. 10 s covers
/// those, and bounds how long a peer that connects and stalls mid-handshake (slowloris on the
/// handshake) holds a connection slot and rustls' handshake buffers.
#[cfg(feature = "tls")]
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// First pause after a failed `accept` (10 ms); doubled on each further failure.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);

/// Longest pause between `accept` retries (1 s). A server out of file descriptors retries
/// once a second instead of spinning a core, and recovers within a second once one frees.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What the accept loop does when `max_connections` handlers are running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AtCapacity {
    /// Stop accepting until a connection ends. New peers wait in the listen backlog (the
    /// kernel completes their handshake; they see no reply, and once the backlog is full their
    /// SYNs are dropped and retried for seconds). As in mini-redis: no peer is turned away by
    /// a short burst, but a server held at capacity answers newcomers with silence.
    Wait,
    /// Accept and close at once, counting the connection in
    /// [`Stats::refused_at_capacity`](crate::Stats::refused_at_capacity). Peers learn at once
    /// that the server is full and can retry later or elsewhere. The default: a server on a
    /// network cannot tell a burst from a flood, and a prompt refusal is an answer where a
    /// wait in the backlog is none.
    #[default]
    Refuse,
}

pub(crate) type AcceptFilter = Arc<dyn Fn(&Address) -> bool + Send + Sync>;

/// Per-connection and accept-loop settings, shared by every connection of a server.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) codec: FrameCodecBuilder,
    pub(crate) max_connections: usize,
    pub(crate) at_capacity: AtCapacity,
    pub(crate) max_connections_per_ip: Option<usize>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) stall_timeout: Option<Duration>,
    pub(crate) min_receive_rate: Option<u32>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) grace_period: Duration,
    pub(crate) read_buffer_size: usize,
    pub(crate) write_buffer_limit: usize,
    pub(crate) filter: Option<AcceptFilter>,
    pub(crate) ack: Option<AckConfig>,
    /// Ack mode's session store: linger, cap on sessions, cap on their bytes.
    pub(crate) sessions: (Duration, usize, u64),
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    #[cfg(feature = "tls")]
    pub(crate) tls_handshake_timeout: Duration,
    pub(crate) proxy: Option<ProxyProtocol>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("Config");
        f.field("codec", &self.codec)
            .field("max_connections", &self.max_connections)
            .field("at_capacity", &self.at_capacity)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("idle_timeout", &self.idle_timeout)
            .field("stall_timeout", &self.stall_timeout)
            .field("min_receive_rate", &self.min_receive_rate)
            .field("write_timeout", &self.write_timeout)
            .field("grace_period", &self.grace_period)
            .field("read_buffer_size", &self.read_buffer_size)
            .field("write_buffer_limit", &self.write_buffer_limit)
            .field("filter", &self.filter.as_ref().map(|_| "<fn>"))
            .field("ack", &self.ack)
            .field("sessions", &self.sessions)
            .field("proxy", &self.proxy);
        #[cfg(feature = "tls")]
        f.field("tls", &self.tls.is_some())
            .field("tls_handshake_timeout", &self.tls_handshake_timeout);
        f.finish()
    }
}

impl Config {
    /// The codec for one connection. In ack mode the frame limit is at least
    /// [`HELLO_LEN`](framewire_codec::ack::HELLO_LEN): a smaller one could not carry the
    /// HELLO every connection opens with.
    pub(crate) fn new_codec(&self) -> FrameCodec {
        let codec = self.codec.build();
        let hello = framewire_codec::ack::HELLO_LEN;
        if self.ack.is_some() && codec.max_frame_len() < hello {
            let mut builder = self.codec;
            return builder.max_frame_len(hello).build();
        }
        codec
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
            config: Config {
                codec: FrameCodecBuilder::new(),
                max_connections: DEFAULT_MAX_CONNECTIONS,
                at_capacity: AtCapacity::Refuse,
                max_connections_per_ip: Some(DEFAULT_MAX_CONNECTIONS_PER_IP),
                idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
                stall_timeout: Some(DEFAULT_STALL_TIMEOUT),
                min_receive_rate: Some(DEFAULT_MIN_RECEIVE_RATE),
                write_timeout: Some(DEFAULT_WRITE_TIMEOUT),
                grace_period: DEFAULT_GRACE_PERIOD,
                read_buffer_size: DEFAULT_READ_BUFFER_SIZE,
                write_buffer_limit: DEFAULT_WRITE_BUFFER_LIMIT,
                filter: None,
                ack: None,
                sessions: (
                    framewire_codec::ack::DEFAULT_SESSION_LINGER,
                    framewire_codec::ack::DEFAULT_MAX_SESSIONS,
                    framewire_codec::ack::DEFAULT_MAX_SESSION_BYTES,
                ),
                #[cfg(feature = "tls")]
                tls: None,
                #[cfg(feature = "tls")]
                tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
                proxy: None,
            },
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

    /// The most connections holding a slot at once (default [`DEFAULT_MAX_CONNECTIONS`]): a
    /// slot is taken when a connection is admitted and kept through the PROXY header read,
    /// the TLS handshake and the handler.
    /// Values below 1 act as 1, values above tokio's `Semaphore::MAX_PERMITS` as that.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.config.max_connections = max.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        self
    }

    /// What happens at the cap (default [`AtCapacity::Refuse`]).
    pub fn at_capacity(mut self, policy: AtCapacity) -> Self {
        self.config.at_capacity = policy;
        self
    }

    /// The most concurrent connections from one IP address (default
    /// [`DEFAULT_MAX_CONNECTIONS_PER_IP`]; `None`: no limit). Behind a
    /// [PROXY protocol](ServerBuilder::proxy_protocol) balancer the address is the original
    /// client's, not the balancer's. Further
    /// connections from that address are accepted and closed at once and counted in
    /// [`Stats::refused_per_ip`](crate::Stats::refused_per_ip). Does not apply to Unix
    /// sockets. Values below 1 act as 1.
    pub fn max_connections_per_ip(mut self, max: impl Into<Option<usize>>) -> Self {
        self.config.max_connections_per_ip = max.into().map(|max| max.max(1));
        self
    }

    /// Close a connection whose handler waited in `recv` for this long without a frame
    /// arriving (default [`DEFAULT_IDLE_TIMEOUT`]; `None` disables it). See
    /// [`Connection`](crate::Connection) for exactly when the clock runs.
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.idle_timeout = timeout.into();
        self
    }

    /// Close a connection whose peer keeps the handler waiting inside unfinished frames for
    /// this long in total (default [`DEFAULT_STALL_TIMEOUT`]). `None` disables it. The time
    /// counts across frames, and every byte received earns back `1 / min_receive_rate`
    /// seconds, up to this much (see [`min_receive_rate`](ServerBuilder::min_receive_rate)).
    pub fn stall_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.stall_timeout = timeout;
        self
    }

    /// The slowest rate, in bytes per second, at which a peer may send frames that are under
    /// way without using up the [stall timeout](ServerBuilder::stall_timeout) (default
    /// [`DEFAULT_MIN_RECEIVE_RATE`]; 0 acts as 1).
    ///
    /// The stall timeout is an allowance: time the handler spends waiting in `recv` for the
    /// rest of a frame is taken from it, every byte received adds `1 / rate` seconds back,
    /// and it never holds more than the stall timeout. A peer whose frames arrive whole (the
    /// normal case: small frames in one segment) or at least `rate` bytes per second never
    /// runs out; a peer dripping bytes, even complete 5-byte frames at 1 byte per second,
    /// does, and gets [`ServerError::StallTimeout`]. `None`: bytes earn nothing back, and the
    /// allowance starts over with each frame (the stall timeout bounds each frame alone).
    pub fn min_receive_rate(mut self, rate: Option<u32>) -> Self {
        self.config.min_receive_rate = rate.map(|r| r.max(1));
        self
    }

    /// Fail a send when no outgoing byte could be written for this long (default
    /// [`DEFAULT_WRITE_TIMEOUT`]). `None` disables it.
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.write_timeout = timeout;
        self
    }

    /// How long a graceful shutdown waits for running handlers before aborting them (default
    /// [`DEFAULT_GRACE_PERIOD`]).
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.config.grace_period = grace;
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
        self.config.codec.max_frame_len(max);
        self
    }

    /// Uses a fully configured codec builder (byte order, oversized-frame policy, limit).
    pub fn codec(mut self, codec: FrameCodecBuilder) -> Self {
        self.config.codec = codec;
        self
    }

    /// Size of the read buffer a connection allocates when bytes arrive (default
    /// [`DEFAULT_READ_BUFFER_SIZE`]). Values below 64 act as 64, above 64 MiB as 64 MiB.
    /// Reads from a peer that keeps them full grow from this size up to 64 KiB (or this size,
    /// if larger).
    pub fn read_buffer_size(mut self, size: usize) -> Self {
        self.config.read_buffer_size = size.clamp(64, 64 << 20);
        self
    }

    /// How many queued outgoing bytes make `feed` write before accepting more (default
    /// [`DEFAULT_WRITE_BUFFER_LIMIT`]).
    pub fn write_buffer_limit(mut self, limit: usize) -> Self {
        self.config.write_buffer_limit = limit.max(1);
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
        self.config.filter = Some(Arc::new(filter));
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
        let mut config = AckConfig::new();
        config.window(window);
        self.ack_config(config)
    }

    /// Ack mode with every setting given: the windows granted to each peer (messages and
    /// bytes), the caps on what a connection keeps unacknowledged whatever the peer grants,
    /// keepalive and peer timeout. Memory per connection is bounded by these settings, plus
    /// one frame each way, whatever the peer does.
    pub fn ack_config(mut self, config: AckConfig) -> Self {
        self.config.ack = Some(config);
        self
    }

    /// Ack mode: how long the session of a client whose connection dropped is kept for it to
    /// resume (exactly-once delivery across the reconnect). Default
    /// [`DEFAULT_SESSION_LINGER`](framewire_codec::ack::DEFAULT_SESSION_LINGER) (60 s). A
    /// client that resumes later gets at-least-once delivery with stable message ids (see
    /// [Sessions](crate::Connection#sessions)).
    pub fn session_linger(mut self, linger: Duration) -> Self {
        self.config.sessions.0 = linger;
        self
    }

    /// Ack mode: the most sessions kept at once for clients to resume (0 keeps none). Past
    /// it, sessions that hold nothing give way first, then those whose client never resumed,
    /// each the one that dropped longest ago first; a session is never evicted for one of a
    /// lower rank (see [`SessionStore`](framewire_codec::ack::SessionStore#eviction)). Default
    /// [`DEFAULT_MAX_SESSIONS`](framewire_codec::ack::DEFAULT_MAX_SESSIONS) (10,000).
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.config.sessions.1 = max;
        self
    }

    /// Ack mode: the most unacknowledged payload bytes the kept sessions hold together.
    /// Default [`DEFAULT_MAX_SESSION_BYTES`](framewire_codec::ack::DEFAULT_MAX_SESSION_BYTES)
    /// (64 MiB).
    pub fn max_session_bytes(mut self, max: u64) -> Self {
        self.config.sessions.2 = max;
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
        self.config.tls = Some(tokio_rustls::TlsAcceptor::from(config.into()));
        self
    }

    /// How long a TLS handshake may take (default [`DEFAULT_TLS_HANDSHAKE_TIMEOUT`]). Only
    /// used with [`tls`](ServerBuilder::tls); needs the cargo feature `tls`.
    #[cfg(feature = "tls")]
    pub fn tls_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.tls_handshake_timeout = timeout;
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
        self.config.proxy = Some(proxy);
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
