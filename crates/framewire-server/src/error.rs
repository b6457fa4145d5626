//! The server's error type.

use std::io;
use std::time::Duration;

use framewire_codec::ack::AckError;
use framewire_codec::typed::TypedError;
use framewire_codec::{Cause, EarlierError, FrameError};

use crate::proxy::ProxyError;

/// Everything that can go wrong while binding, accepting, or serving a connection.
///
/// Every variant says what happened in numbers, so a log line is enough to diagnose it.
/// [`cause`](ServerError::cause), [`is_peer_fault`](ServerError::is_peer_fault),
/// [`is_connection_usable`](ServerError::is_connection_usable) and
/// [`is_retryable`](ServerError::is_retryable) answer as every framewire error does (see
/// [`Cause`]); [`kind`](ServerError::kind) is the finer kind the server counts. After an error
/// that is not [`is_connection_usable`](ServerError::is_connection_usable), returned by
/// [`Connection::recv`](crate::Connection::recv) or [`Connection::send`](crate::Connection::send),
/// that direction of the connection is closed: later calls return `Ok(None)` (receive side) or
/// [`ServerError::Closed`] (send side).
///
/// ```
/// use framewire_server::{Cause, Connection, ServerError};
///
/// /// Ends the handler on errors that end the connection; skips a message that does not decode.
/// async fn handle(conn: &mut Connection) -> Result<(), ServerError> {
///     loop {
///         match conn.recv_typed::<String>().await {
///             Ok(Some(line)) => conn.send_typed(&line.to_uppercase()).await?,
///             Ok(None) => return Ok(()),
///             Err(e) if e.is_connection_usable() => tracing::debug!("skipped: {e}"),
///             Err(e) if e.cause() == Cause::Timeout => return Ok(()), // an idle peer
///             Err(e) => return Err(e),
///         }
///     }
/// }
/// ```
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
    #[error("idle timeout: no frame arrived for {} ms", .timeout.as_millis())]
    IdleTimeout {
        /// The configured idle timeout.
        timeout: Duration,
    },
    /// The peer kept the handler waiting inside unfinished frames for longer than the stall
    /// timeout allows (a slowloris peer, one dripping bytes below the minimum receive rate, or
    /// one that died mid-frame without closing); see
    /// [`ServerBuilder::min_receive_rate`](crate::ServerBuilder::min_receive_rate).
    #[error(
        "stall timeout: the peer used up the stall allowance of {} ms waiting inside unfinished frames ({buffered} bytes of the current frame buffered)",
        .timeout.as_millis()
    )]
    StallTimeout {
        /// The configured stall timeout.
        timeout: Duration,
        /// Bytes of the unfinished frame buffered when the timeout fired (payload bytes after
        /// the header, or header bytes if the header itself is incomplete).
        buffered: usize,
    },
    /// Outgoing bytes could not be written for the configured write timeout: the peer stopped
    /// reading and the kernel's send buffer is full.
    #[error("write timeout: no outgoing byte could be written for {} ms ({pending} bytes waiting)", .timeout.as_millis())]
    WriteTimeout {
        /// The configured write timeout.
        timeout: Duration,
        /// Bytes still waiting to be written when the timeout fired.
        pending: usize,
    },
    /// Ack mode: the peer's window stayed full for the configured write timeout: every
    /// message it allows in flight is unacknowledged, so its application is not taking
    /// messages (or is far too slow). Counted as a write timeout.
    #[error("write timeout: the peer's ack window stayed full for {} ms ({in_flight} messages, {in_flight_bytes} bytes unacknowledged); its application is not taking messages", .timeout.as_millis())]
    AckWindowFull {
        /// The configured write timeout.
        timeout: Duration,
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
    #[error("TLS handshake timeout: not finished within {} ms", .timeout.as_millis())]
    TlsHandshakeTimeout {
        /// The configured handshake timeout.
        timeout: Duration,
    },
    /// A send on a connection whose sending direction an earlier error or a close had already
    /// shut; `earlier` says which, and this error classifies as it did.
    #[error("the connection is closed for sending, since: {earlier}")]
    Closed {
        /// The earlier error (its message and classification), or that the handler closed the
        /// connection ([`Cause::Local`]).
        earlier: EarlierError,
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
            ServerError::Frame(e) if e.is_peer_fault() => ErrorKind::Protocol,
            ServerError::Frame(FrameError::Io(_)) => ErrorKind::Io,
            ServerError::Frame(_) => ErrorKind::OutgoingTooLong,
            ServerError::Ack(AckError::Frame(e)) if e.is_peer_fault() => ErrorKind::Protocol,
            ServerError::Ack(AckError::Frame(FrameError::Io(_))) => ErrorKind::Io,
            ServerError::Ack(e) if e.is_peer_fault() => ErrorKind::Protocol,
            ServerError::Ack(AckError::PayloadTooLong { .. } | AckError::Frame(_)) => {
                ErrorKind::OutgoingTooLong
            }
            ServerError::Ack(_) => ErrorKind::Usage,
            ServerError::Typed(e) if e.is_decode() => ErrorKind::Decode,
            ServerError::Typed(TypedError::Frame(FrameError::Io(_))) => ErrorKind::Io,
            ServerError::Typed(TypedError::Frame(e)) if e.is_peer_fault() => ErrorKind::Protocol,
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
    /// Whose doing this is. [`Cause::Peer`]: what [`kind`](Self::kind) counts as
    /// [`ErrorKind::Protocol`], [`Decode`](ErrorKind::Decode) or
    /// [`Proxy`](ErrorKind::Proxy), and a TLS handshake refused over its content (an
    /// `io::Error` of kind `InvalidData`: not TLS, a certificate not trusted).
    /// [`Cause::Local`]: an outgoing frame over the limit, a value that does not encode,
    /// misuse. [`Cause::Transport`]: binding, I/O, a TLS handshake cut off.
    /// [`Cause::Timeout`]: the idle, stall, write and handshake timeouts (including
    /// [`AckWindowFull`](Self::AckWindowFull)). Wrapped codec errors answer as themselves,
    /// [`Closed`](Self::Closed) as its earlier error.
    pub fn cause(&self) -> Cause {
        match self {
            ServerError::Io(e) if is_proxy_refusal(e) => Cause::Peer,
            ServerError::TlsHandshake { source } if tls_refused(source) => Cause::Peer,
            ServerError::Bind { .. } | ServerError::Io(_) | ServerError::TlsHandshake { .. } => {
                Cause::Transport
            }
            ServerError::Frame(e) => e.cause(),
            ServerError::Ack(e) => e.cause(),
            ServerError::Typed(e) => e.cause(),
            ServerError::IdleTimeout { .. }
            | ServerError::StallTimeout { .. }
            | ServerError::WriteTimeout { .. }
            | ServerError::AckWindowFull { .. }
            | ServerError::TlsHandshakeTimeout { .. } => Cause::Timeout,
            ServerError::Closed { earlier } => earlier.cause(),
        }
    }

    /// `true` when [`cause`](Self::cause) is [`Cause::Peer`].
    pub fn is_peer_fault(&self) -> bool {
        self.cause() == Cause::Peer
    }

    /// `true` when the connection can still be used in the direction that failed: a message
    /// that did not decode, a value that did not encode or an outgoing frame over the limit
    /// (nothing was sent), ack-mode misuse. Every other error closed that direction (a receive
    /// error the receiving side, a send error both in ack mode and the sending side in plain
    /// mode).
    pub fn is_connection_usable(&self) -> bool {
        match self {
            ServerError::Frame(e) => e.is_connection_usable(),
            ServerError::Ack(e) => e.is_connection_usable(),
            ServerError::Typed(e) => e.is_connection_usable(),
            _ => false,
        }
    }

    /// `true` when the failure may be transient: binding and I/O errors, a TLS handshake cut
    /// off, the timeouts, and wrapped codec errors that say so. A server cannot retry on a new
    /// connection itself; this tells a handler (or a supervisor restarting a failed bind)
    /// whether the same thing may work later. `false` for the peer's faults and local misuse.
    pub fn is_retryable(&self) -> bool {
        match self {
            ServerError::Frame(e) => e.is_retryable(),
            ServerError::Ack(e) => e.is_retryable(),
            ServerError::Typed(e) => e.is_retryable(),
            ServerError::Closed { earlier } => earlier.is_retryable(),
            e => matches!(e.cause(), Cause::Transport | Cause::Timeout),
        }
    }
}

/// A TLS handshake refused over what the peer sent (rustls reports its errors as
/// `InvalidData`), as opposed to one cut off by the transport.
fn tls_refused(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidData
}

impl From<&ServerError> for EarlierError {
    /// The error's message and classification, for [`ServerError::Closed`] of every later send.
    fn from(e: &ServerError) -> Self {
        EarlierError::new(e, e.cause(), e.is_retryable())
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::time::Duration;

    use framewire_codec::ack::AckError;
    use framewire_codec::typed::TypedError;
    use framewire_codec::{Cause, EarlierError, FrameError};

    use super::ServerError;
    use crate::proxy::ProxyError;

    /// Exhaustive: a new variant does not compile until it has a position and a row.
    fn ordinal(e: &ServerError) -> usize {
        match e {
            ServerError::Bind { .. } => 0,
            ServerError::Io(_) => 1,
            ServerError::Frame(_) => 2,
            ServerError::Ack(_) => 3,
            ServerError::Typed(_) => 4,
            ServerError::IdleTimeout { .. } => 5,
            ServerError::StallTimeout { .. } => 6,
            ServerError::WriteTimeout { .. } => 7,
            ServerError::AckWindowFull { .. } => 8,
            ServerError::TlsHandshake { .. } => 9,
            ServerError::TlsHandshakeTimeout { .. } => 10,
            ServerError::Closed { .. } => 11,
        }
    }
    const VARIANTS: usize = 12;

    /// Every variant with its documented answers: cause, usable, retryable (wrapped codec
    /// errors answer as themselves, `Closed` as its earlier error). Fails if a classification
    /// is flipped.
    #[test]
    fn every_variant_classifies_as_documented() {
        use Cause::*;
        let t = Duration::from_millis(250);
        let io = |k: io::ErrorKind| io::Error::from(k);
        let proxy = || io::Error::new(io::ErrorKind::InvalidData, ProxyError::Untrusted);
        let bind = ServerError::Bind {
            addr: "127.0.0.1:1".into(),
            backlog: 1024,
            source: io(io::ErrorKind::AddrInUse),
        };
        let rustls = io::Error::new(io::ErrorKind::InvalidData, "bad certificate");
        let table = [
            (bind, Transport, false, true),
            (
                ServerError::Io(io(io::ErrorKind::ConnectionReset)),
                Transport,
                false,
                true,
            ),
            (ServerError::Io(proxy()), Peer, false, false),
            (
                ServerError::Frame(FrameError::IncomingTooLong { len: 9, max: 8 }),
                Peer,
                false,
                false,
            ),
            (
                ServerError::Frame(FrameError::OutgoingTooLong { len: 9, max: 8 }),
                Local,
                true,
                false,
            ),
            (ServerError::Ack(AckError::EmptyFrame), Peer, false, false),
            (
                ServerError::Ack(AckError::PayloadTooLong { len: 9, max: 8 }),
                Local,
                true,
                false,
            ),
            (
                ServerError::Typed(TypedError::Decode {
                    len: 1,
                    format: "bincode",
                    reason: "x".into(),
                }),
                Peer,
                true,
                false,
            ),
            (
                ServerError::Typed(TypedError::Encode {
                    format: "bincode",
                    reason: "x".into(),
                }),
                Local,
                true,
                false,
            ),
            (
                ServerError::IdleTimeout { timeout: t },
                Timeout,
                false,
                true,
            ),
            (
                ServerError::StallTimeout {
                    timeout: t,
                    buffered: 3,
                },
                Timeout,
                false,
                true,
            ),
            (
                ServerError::WriteTimeout {
                    timeout: t,
                    pending: 9,
                },
                Timeout,
                false,
                true,
            ),
            (
                ServerError::AckWindowFull {
                    timeout: t,
                    in_flight: 1,
                    in_flight_bytes: 2,
                },
                Timeout,
                false,
                true,
            ),
            (
                ServerError::TlsHandshake { source: rustls },
                Peer,
                false,
                false,
            ),
            (
                ServerError::TlsHandshake {
                    source: io(io::ErrorKind::UnexpectedEof),
                },
                Transport,
                false,
                true,
            ),
            (
                ServerError::TlsHandshake { source: proxy() },
                Peer,
                false,
                false,
            ),
            (
                ServerError::TlsHandshakeTimeout { timeout: t },
                Timeout,
                false,
                true,
            ),
            (
                ServerError::Closed {
                    earlier: EarlierError::new("closed", Local, false),
                },
                Local,
                false,
                false,
            ),
            (
                ServerError::Closed {
                    earlier: EarlierError::from(&ServerError::IdleTimeout { timeout: t }),
                },
                Timeout,
                false,
                true,
            ),
        ];
        let mut seen = [false; VARIANTS];
        for (e, cause, usable, retryable) in table {
            seen[ordinal(&e)] = true;
            let got = (
                e.cause(),
                e.is_peer_fault(),
                e.is_connection_usable(),
                e.is_retryable(),
            );
            assert_eq!(got, (cause, cause == Peer, usable, retryable), "{e:?}");
        }
        assert!(seen.iter().all(|s| *s), "a variant has no row: {seen:?}");
    }

    /// The numbers stay in the messages, in milliseconds.
    #[test]
    fn timeouts_say_their_milliseconds() {
        let e = ServerError::StallTimeout {
            timeout: Duration::from_millis(1500),
            buffered: 7,
        };
        assert_eq!(
            e.to_string(),
            "stall timeout: the peer used up the stall allowance of 1500 ms waiting inside \
             unfinished frames (7 bytes of the current frame buffered)"
        );
    }
}
