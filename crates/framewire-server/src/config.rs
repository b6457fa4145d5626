//! The server's settings as plain data, and their defaults. [`ServerBuilder`](crate::ServerBuilder)
//! (in `builder.rs`) fills them in; the accept loop reads [`ServerConfig`], each connection
//! [`ConnectionConfig`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use framewire_codec::ack::AckConfig;
use framewire_codec::{FrameCodec, FrameCodecBuilder};

use crate::address::Address;
use crate::proxy::ProxyProtocol;

/// Default [`ServerBuilder::max_connections`](crate::ServerBuilder::max_connections): 10,000.
///
/// The scale framewire's memory goal is set at (at most a few KiB per idle connection), so the
/// cap costs tens of MiB at most. Above the common 1024 open-files soft limit: raise the limit
/// (`ulimit -n`) or lower the cap; if the process runs out of descriptors first, the accept
/// loop logs, backs off and carries on.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Default [`ServerBuilder::stall_timeout`](crate::ServerBuilder::stall_timeout): 30 seconds.
///
/// A real peer that has begun a frame finishes it in well under a second unless the frame is
/// huge or the network is dying; a slowloris peer drips bytes to hold a connection forever.
/// 30 s is generous to the first and still bounds the second. The time counts across frames,
/// less what the bytes received earn back at [`DEFAULT_MIN_RECEIVE_RATE`] (see
/// [`ServerBuilder::min_receive_rate`](crate::ServerBuilder::min_receive_rate)).
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Default [`ServerBuilder::min_receive_rate`](crate::ServerBuilder::min_receive_rate): 500 bytes per second.
///
/// Apache's `mod_reqtimeout` default (`MinRate=500` for headers and bodies). Any live link
/// moves a frame that is under way far faster (a 2G mobile link does 5 KB/s or more), so only
/// a peer that drips bytes on purpose stays below it; one dripping complete 5-byte frames at
/// 1 byte/s spends 4 s of every 5 inside a frame and is closed after about 37 s.
pub const DEFAULT_MIN_RECEIVE_RATE: u32 = 500;

/// Default [`ServerBuilder::idle_timeout`](crate::ServerBuilder::idle_timeout): 60 seconds.
///
/// nginx closes a connection that has not sent a request header within
/// `client_header_timeout` (60 s) and a kept-alive connection after `keepalive_timeout` (75 s)
/// of silence; Netty's `IdleStateHandler` leaves the value to the application, which usually
/// pings well within a minute. A server on a network must close silent connections by
/// default, or idle sockets accumulate until the connection cap locks everyone out; an
/// application with quieter peers raises it or has them send a heartbeat frame.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Default [`ServerBuilder::max_connections_per_ip`](crate::ServerBuilder::max_connections_per_ip): 64.
///
/// One address may hold at most 64 of the [`DEFAULT_MAX_CONNECTIONS`] (10,000), so it takes
/// over 150 addresses to fill the server, and a newcomer from another address is served
/// while one address opens thousands. 64 still leaves room for a NAT gateway or a proxy in
/// front of a few dozen users (behind a PROXY-protocol balancer the cap applies to the
/// original clients). Raise or lift it (`None`) for known heavy clients, benchmarks or tests.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 64;

/// Default [`ServerBuilder::write_timeout`](crate::ServerBuilder::write_timeout): 30 seconds.
///
/// How long a connection may sit with outgoing bytes that the peer does not read (full send
/// buffer, no progress) before it is closed. Same reasoning as [`DEFAULT_STALL_TIMEOUT`].
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default [`ServerBuilder::grace_period`](crate::ServerBuilder::grace_period): 5 seconds.
///
/// Long enough for a handler to finish the reply it is working on; short enough that a
/// service restart does not hang on a handler that ignores the shutdown signal.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(5);

/// Default [`ServerBuilder::backlog`](crate::ServerBuilder::backlog): 1024, the value tokio's `TcpListener::bind` uses (the
/// kernel caps it at `net.core.somaxconn`).
pub const DEFAULT_BACKLOG: u32 = 1024;

/// Default [`ServerBuilder::read_buffer_size`](crate::ServerBuilder::read_buffer_size): 8 KiB, what tokio-util's `Framed` starts with.
///
/// A connection only holds a read buffer while bytes are arriving; an idle connection holds
/// none (see [`Connection`](crate::Connection)).
pub const DEFAULT_READ_BUFFER_SIZE: usize = 8 * 1024;

/// Default [`ServerBuilder::write_buffer_limit`](crate::ServerBuilder::write_buffer_limit): 64 KiB, the codec's
/// [`DEFAULT_WRITE_BUFFER_LIMIT`](framewire_codec::DEFAULT_WRITE_BUFFER_LIMIT) (the server and
/// the client share one write path, [`FrameWriter`](framewire_codec::FrameWriter)).
///
/// Frames queued with `feed` are written in one go once this much is buffered (or on
/// `flush`); 64 KiB amortises the system call over many small frames while bounding what a
/// handler can queue in front of a slow peer.
pub use framewire_codec::DEFAULT_WRITE_BUFFER_LIMIT;

/// Default [`ServerBuilder::tls_handshake_timeout`](crate::ServerBuilder::tls_handshake_timeout): 10 seconds.
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

/// Everything a [`ServerBuilder`](crate::ServerBuilder) configures but the listen backlog.
#[derive(Clone, Debug, Default)]
pub(crate) struct Config {
    pub(crate) server: ServerConfig,
    pub(crate) connection: ConnectionConfig,
}

/// The accept loop's settings: admission, shutdown, TLS, PROXY protocol, ack-mode sessions.
#[derive(Clone)]
pub(crate) struct ServerConfig {
    pub(crate) max_connections: usize,
    pub(crate) at_capacity: AtCapacity,
    pub(crate) max_connections_per_ip: Option<usize>,
    pub(crate) grace_period: Duration,
    pub(crate) filter: Option<AcceptFilter>,
    /// Ack mode's session store: linger, cap on sessions, cap on their bytes.
    pub(crate) sessions: (Duration, usize, u64),
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    #[cfg(feature = "tls")]
    pub(crate) tls_handshake_timeout: Duration,
    pub(crate) proxy: Option<ProxyProtocol>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            at_capacity: AtCapacity::Refuse,
            max_connections_per_ip: Some(DEFAULT_MAX_CONNECTIONS_PER_IP),
            grace_period: DEFAULT_GRACE_PERIOD,
            filter: None,
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
        }
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("ServerConfig");
        f.field("max_connections", &self.max_connections)
            .field("at_capacity", &self.at_capacity)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("grace_period", &self.grace_period)
            .field("filter", &self.filter.as_ref().map(|_| "<fn>"))
            .field("sessions", &self.sessions)
            .field("proxy", &self.proxy);
        #[cfg(feature = "tls")]
        f.field("tls", &self.tls.is_some())
            .field("tls_handshake_timeout", &self.tls_handshake_timeout);
        f.finish()
    }
}

/// One connection's settings: framing, buffers, timeouts, ack mode.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionConfig {
    pub(crate) codec: FrameCodecBuilder,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) stall_timeout: Option<Duration>,
    pub(crate) min_receive_rate: Option<u32>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) read_buffer_size: usize,
    pub(crate) write_buffer_limit: usize,
    pub(crate) ack: Option<AckConfig>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            codec: FrameCodecBuilder::new(),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            stall_timeout: Some(DEFAULT_STALL_TIMEOUT),
            min_receive_rate: Some(DEFAULT_MIN_RECEIVE_RATE),
            write_timeout: Some(DEFAULT_WRITE_TIMEOUT),
            read_buffer_size: DEFAULT_READ_BUFFER_SIZE,
            write_buffer_limit: DEFAULT_WRITE_BUFFER_LIMIT,
            ack: None,
        }
    }
}

impl ConnectionConfig {
    /// The codec for one connection. In ack mode the frame limit is at least
    /// [`HELLO_LEN`](framewire_codec::ack::HELLO_LEN): a smaller one could not carry the
    /// HELLO every connection opens with.
    pub(crate) fn new_codec(&self) -> FrameCodec {
        let codec = self.codec.build();
        let hello = framewire_codec::ack::HELLO_LEN;
        if self.ack.is_some() && codec.max_frame_len() < hello {
            return self.codec.max_frame_len(hello).build();
        }
        codec
    }
}
