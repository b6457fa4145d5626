//! The server's error type.

use std::io;

use framewire_codec::ack::AckError;
use framewire_codec::typed::TypedError;
use framewire_codec::FrameError;

use crate::proxy::ProxyError;

/// Everything that can go wrong while binding, accepting, or serving a connection.
///
/// Every variant says what happened in numbers, so a log line is enough to diagnose it. After
/// any error returned by [`Connection::recv`](crate::Connection::recv) or
/// [`Connection::send`](crate::Connection::send) that direction of the connection is closed:
/// later calls return `Ok(None)` (receive side) or [`ServerError::Closed`] (send side).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listening socket could not be created, bound or put into listening state.
    #[error("cannot listen on {addr} (backlog {backlog}): {source}")]
    Bind {
        /// The address that was asked for.
        addr: String,
        /// The listen backlog that was asked for.
        backlog: u32,
        /// What the operating system said.
        source: io::Error,
    },
    /// The transport failed (connection reset, broken pipe, ...). A direct client that sent
    /// a PROXY header to a server speaking the PROXY protocol also ends here, with a
    /// [`ProxyError::Untrusted`] inside (its [`kind`](ServerError::kind) is
    /// [`ErrorKind::Proxy`]).
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The peer sent bytes that are not valid framing (oversized header, end of stream inside
    /// a frame), or the handler tried to send an oversized frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Ack mode: the peer broke the ack-mode protocol (first frame not a HELLO, a DATA out of
    /// sequence or beyond the window, an ACK for a message never sent, ...), or the handler
    /// sent a payload too long for one DATA frame.
    #[error(transparent)]
    Ack(AckError),
    /// A typed message could not be decoded (that message only; the connection stays usable)
    /// or a value could not be encoded (nothing was sent).
    #[error(transparent)]
    Typed(TypedError),
    /// No frame arrived for the configured idle timeout while the handler waited in `recv`.
    #[error("idle timeout: no frame arrived for {idle_ms} ms")]
    IdleTimeout {
        /// The configured idle timeout, in milliseconds.
        idle_ms: u64,
    },
    /// The peer kept the handler waiting inside unfinished frames for longer than the stall
    /// timeout allows (a slowloris peer, one dripping bytes below the minimum receive rate, or
    /// one that died mid-frame without closing); see
    /// [`ServerBuilder::min_receive_rate`](crate::ServerBuilder::min_receive_rate).
    #[error(
        "stall timeout: the peer used up the stall allowance of {stall_ms} ms waiting inside unfinished frames ({buffered} bytes of the current frame buffered)"
    )]
    StallTimeout {
        /// The configured stall timeout, in milliseconds.
        stall_ms: u64,
        /// Bytes of the unfinished frame buffered when the timeout fired (payload bytes after
        /// the header, or header bytes if the header itself is incomplete).
        buffered: usize,
    },
    /// Outgoing bytes could not be written for the configured write timeout: the peer stopped
    /// reading and the kernel's send buffer is full.
    #[error("write timeout: no outgoing byte could be written for {timeout_ms} ms ({pending} bytes waiting)")]
    WriteTimeout {
        /// The configured write timeout, in milliseconds.
        timeout_ms: u64,
        /// Bytes still waiting to be written when the timeout fired.
        pending: usize,
    },
    /// Ack mode: the peer's window stayed full for the configured write timeout: every
    /// message it allows in flight is unacknowledged, so its application is not taking
    /// messages (or is far too slow). Counted as a write timeout.
    #[error("write timeout: the peer's ack window stayed full for {timeout_ms} ms ({in_flight} messages, {in_flight_bytes} bytes unacknowledged); its application is not taking messages")]
    AckWindowFull {
        /// The configured write timeout, in milliseconds.
        timeout_ms: u64,
        /// Messages sent and not acknowledged.
        in_flight: u64,
        /// Their payload bytes.
        in_flight_bytes: u64,
    },
    /// The TLS handshake failed: the peer is not speaking TLS (a plain-TCP client, garbage
    /// instead of a ClientHello), offered nothing this server accepts, sent a client
    /// certificate the server does not trust, rejected the server's certificate, or went away.
    /// `source` carries rustls' reason. Counted in
    /// [`ErrorStats::tls_handshake`](crate::ErrorStats::tls_handshake); the handler never
    /// runs for that connection. When the cause is a PROXY header refused by the sniffer
    /// (a direct client on a port that accepts PROXY from trusted balancers), the error's
    /// [`kind`](ServerError::kind) is [`ErrorKind::Proxy`] and it counts in
    /// [`ErrorStats::proxy`](crate::ErrorStats::proxy) instead.
    #[error("TLS handshake failed: {source}")]
    TlsHandshake {
        /// What rustls or the socket said (for a TLS error, a `rustls::Error` inside an
        /// `io::Error` of kind `InvalidData`).
        source: io::Error,
    },
    /// The TLS handshake did not finish within the configured handshake timeout (a peer that
    /// connects and stalls). Counted in
    /// [`ErrorStats::tls_handshake_timeout`](crate::ErrorStats::tls_handshake_timeout).
    #[error("TLS handshake timeout: not finished within {timeout_ms} ms")]
    TlsHandshakeTimeout {
        /// The configured handshake timeout, in milliseconds.
        timeout_ms: u64,
    },
    /// The operation was attempted on a direction of the connection that an earlier error or
    /// a close had already shut; `earlier` says which.
    #[error("the connection is closed for {direction}, since: {earlier}")]
    Closed {
        /// `"sending"` or `"receiving"`.
        direction: &'static str,
        /// The earlier error's message, or that the handler closed the connection.
        earlier: String,
    },
}

/// The kind of an error, as counted in [`ErrorStats`](crate::ErrorStats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Binding the listener failed.
    Bind,
    /// A transport error.
    Io,
    /// Invalid framing from the peer.
    Protocol,
    /// The handler tried to send a frame over the limit.
    OutgoingTooLong,
    /// A typed message that did not decode.
    Decode,
    /// A value that could not be encoded as a typed message.
    Encode,
    /// Local misuse of the connection (for example `start_send` without `poll_ready` on a
    /// full ack-mode window). Not counted.
    Usage,
    /// The idle timeout fired.
    IdleTimeout,
    /// The stall timeout fired.
    StallTimeout,
    /// The write timeout fired.
    WriteTimeout,
    /// A TLS handshake failed.
    TlsHandshake,
    /// A TLS handshake did not finish in time.
    TlsHandshakeTimeout,
    /// Use after close.
    Closed,
    /// A PROXY protocol header refused (see [`ProxyError`](crate::ProxyError)).
    Proxy,
}

/// An I/O error that carries the PROXY sniffer's refusal.
fn is_proxy_refusal(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<ProxyError>())
}

impl ServerError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ServerError::Bind { .. } => ErrorKind::Bind,
            // The PROXY sniffer runs under the transport (and under TLS), so its refusal
            // arrives as an I/O error or as the cause of a failed TLS handshake.
            ServerError::Io(e) if is_proxy_refusal(e) => ErrorKind::Proxy,
            ServerError::TlsHandshake { source } if is_proxy_refusal(source) => ErrorKind::Proxy,
            ServerError::Io(_) => ErrorKind::Io,
            ServerError::Frame(e) if e.is_peer_error() => ErrorKind::Protocol,
            ServerError::Frame(FrameError::Io(_)) => ErrorKind::Io,
            ServerError::Frame(_) => ErrorKind::OutgoingTooLong,
            ServerError::Ack(AckError::Frame(e)) if e.is_peer_error() => ErrorKind::Protocol,
            ServerError::Ack(AckError::Frame(FrameError::Io(_))) => ErrorKind::Io,
            ServerError::Ack(e) if e.is_peer_error() => ErrorKind::Protocol,
            ServerError::Ack(AckError::PayloadTooLong { .. } | AckError::Frame(_)) => {
                ErrorKind::OutgoingTooLong
            }
            ServerError::Ack(_) => ErrorKind::Usage,
            ServerError::Typed(e) if e.is_decode() => ErrorKind::Decode,
            ServerError::Typed(TypedError::Frame(FrameError::Io(_))) => ErrorKind::Io,
            ServerError::Typed(TypedError::Frame(e)) if e.is_peer_error() => ErrorKind::Protocol,
            ServerError::Typed(TypedError::Frame(_)) => ErrorKind::OutgoingTooLong,
            ServerError::Typed(_) => ErrorKind::Encode,
            ServerError::IdleTimeout { .. } => ErrorKind::IdleTimeout,
            ServerError::StallTimeout { .. } => ErrorKind::StallTimeout,
            ServerError::WriteTimeout { .. } | ServerError::AckWindowFull { .. } => {
                ErrorKind::WriteTimeout
            }
            ServerError::TlsHandshake { .. } => ErrorKind::TlsHandshake,
            ServerError::TlsHandshakeTimeout { .. } => ErrorKind::TlsHandshakeTimeout,
            ServerError::Closed { .. } => ErrorKind::Closed,
        }
    }
}
