//! The client's error type.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use framewire_codec::ack::AckError;
use framewire_codec::typed::TypedError;
use framewire_codec::{Cause, EarlierError, FrameError};

/// What a plain-mode client knows about the traffic when its connection ended.
///
/// Plain mode has no acknowledgements, so the client cannot know which of the frames it wrote
/// the peer actually processed. What it can say honestly is how many frames it wrote in total,
/// how many it received, and how many it wrote *since the last frame it received*: for
/// request/response traffic (one reply per request) those are the requests whose replies never
/// came. Use ack mode when that is not good enough.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InFlight {
    /// Frames fed to the connection in total (written, or queued for writing: up to 64 KiB of
    /// frames may wait in the client's write buffer).
    pub frames_sent: u64,
    /// Payload bytes of those frames.
    pub bytes_sent: u64,
    /// Frames received in total.
    pub frames_received: u64,
    /// Frames fed since the last frame was received (all of them if none was received).
    pub sent_since_last_reply: u64,
    /// Payload bytes of those frames.
    pub bytes_since_last_reply: u64,
}

/// `"a; b; c"`: the errors of a failover attempt on one line.
fn list_errors(errors: &[ClientError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Everything that can go wrong in the client.
///
/// Every message carries the numbers needed to diagnose it from a log line.
/// [`cause`](ClientError::cause), [`is_peer_fault`](ClientError::is_peer_fault),
/// [`is_connection_usable`](ClientError::is_connection_usable) and
/// [`is_retryable`](ClientError::is_retryable) answer as every framewire error does (see
/// [`Cause`]): a retry loop needs nothing else.
///
/// ```
/// use std::time::Duration;
///
/// use bytes::Bytes;
/// use framewire_client::{Client, ClientError};
///
/// /// One request, retried on a new connection while the failure is transient (refused,
/// /// reset, timed out); a peer that breaks the protocol or a request over the limit fails at
/// /// once.
/// async fn call_with_retry(addr: &str, request: &[u8]) -> Result<Bytes, ClientError> {
///     let mut attempt = 0;
///     loop {
///         let result = match Client::connect(addr).await {
///             Ok(mut client) => client.call(request).await,
///             Err(e) => Err(e),
///         };
///         match result {
///             Err(e) if e.is_retryable() && attempt < 3 => {
///                 attempt += 1;
///                 tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
///             }
///             result => return result,
///         }
///     }
/// }
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// // "localhost" has no port: a bad address, refused at once, not retried.
/// let err = call_with_retry("localhost", b"ping").await.unwrap_err();
/// assert!(!err.is_retryable(), "a bad address is not retried: {err}");
/// # });
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// An address string could not be parsed into an [`Endpoint`](crate::Endpoint) (for
    /// example `"localhost"`, with no port), or a list of endpoints was empty. Nothing was
    /// attempted.
    #[error("invalid address {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The string that was given.
        endpoint: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Connecting failed (refused, unreachable, name not resolved, ...).
    #[error("could not connect to {endpoint}: {source}")]
    Connect {
        /// Where the client tried to connect.
        endpoint: String,
        /// The operating system's reason.
        source: io::Error,
    },
    /// None of several endpoints answered (failover); each one's error, in the order tried.
    #[error("none of {} endpoints answered: {}", errors.len(), list_errors(errors))]
    NoEndpoint {
        /// What each endpoint's attempt ended with.
        errors: Vec<ClientError>,
    },
    /// The TLS handshake failed (feature `tls`): the server's certificate is not trusted,
    /// expired or not valid for the configured server name, the server does not speak TLS
    /// or rejected this client's certificate, ... `source` carries rustls' reason (a
    /// `rustls::Error` inside an `io::Error` of kind `InvalidData`).
    #[error("TLS handshake with {endpoint} failed: {source}")]
    Tls {
        /// Where the client connected.
        endpoint: String,
        /// What rustls or the socket said.
        source: io::Error,
    },
    /// Connecting (including the TLS handshake, with TLS) took longer than the configured
    /// timeout.
    #[error("connecting to {endpoint} timed out after {} ms", .timeout.as_millis())]
    ConnectTimeout {
        /// Where the client tried to connect.
        endpoint: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The connection failed abruptly (reset, broken pipe, closed in the middle of a frame).
    ///
    /// `in_flight` says what was sent and not answered; see [`InFlight`] for what plain mode
    /// can and cannot know.
    #[error(
        "connection lost with {} frames ({} bytes) sent since the last frame received \
         ({} sent and {} received in total; plain mode cannot tell which the peer processed): {source}",
        in_flight.sent_since_last_reply,
        in_flight.bytes_since_last_reply,
        in_flight.frames_sent,
        in_flight.frames_received
    )]
    ConnectionLost {
        /// The traffic counters at the moment of the failure.
        in_flight: InFlight,
        /// The underlying failure.
        source: FrameError,
    },
    /// [`Client::call_timeout`](crate::Client::call_timeout): no reply within `timeout`. The
    /// reply may still come, so the client no longer pairs requests with replies: every later
    /// `call` or `recv` fails with [`ClientError::CallAbandoned`]. Connect again.
    #[error("no reply within {timeout:?}; the connection can no longer pair requests with replies, connect again")]
    CallTimeout {
        /// The deadline that passed.
        timeout: Duration,
    },
    /// An earlier [`Client::call`](crate::Client::call) was cancelled (a timeout wrapped
    /// around it, a `select!` that took another branch) or timed out after sending, before its
    /// reply arrived. That reply may arrive at any later `recv`, so rather than return it as
    /// the answer to a different request, this client refuses `call` and `recv`: connect
    /// again.
    #[error("an earlier call was cancelled or timed out before its reply arrived; its reply could be taken for the answer to a later request, so this connection no longer serves call or recv: connect again")]
    CallAbandoned,
    /// A plain-mode client connected to an ack-mode server: the first frame received is an
    /// ack-mode HELLO (kind byte, magic `FWAK`), not an application message. Connect with
    /// [`ClientBuilder::connect_ack`](crate::ClientBuilder::connect_ack), or serve plain mode.
    #[error("the server speaks ack mode (its first frame is an ack-mode HELLO, protocol version {version}); a plain client cannot talk to it: connect with ClientBuilder::connect_ack")]
    PeerSpeaksAckMode {
        /// The ack-mode protocol version in the server's HELLO.
        version: u8,
    },
    /// The peer closed the connection cleanly while a reply was awaited (for example in
    /// [`Client::call`](crate::Client::call)).
    #[error(
        "peer closed the connection with {} frames ({} bytes) sent since the last frame received \
         ({} sent and {} received in total)",
        in_flight.sent_since_last_reply,
        in_flight.bytes_since_last_reply,
        in_flight.frames_sent,
        in_flight.frames_received
    )]
    ClosedByPeer {
        /// The traffic counters when the peer closed.
        in_flight: InFlight,
    },
    /// [`Client::close`](crate::Client::close) could not flush its buffered frames and shut
    /// down the sending direction within the close timeout: the peer is not reading. Some of
    /// the frames counted in `in_flight` may never have been written; the connection is
    /// dropped.
    #[error(
        "close timed out after {} ms while flushing and shutting down \
         (the peer is not reading), with {} frames ({} bytes) sent since the last frame \
         received ({} sent and {} received in total)",
        timeout.as_millis(),
        in_flight.sent_since_last_reply,
        in_flight.bytes_since_last_reply,
        in_flight.frames_sent,
        in_flight.frames_received
    )]
    CloseTimeout {
        /// The close timeout that expired.
        timeout: Duration,
        /// The traffic counters when the timeout expired.
        in_flight: InFlight,
    },
    /// A frame could not be encoded (it is longer than the configured maximum). The
    /// connection is still usable: nothing was written.
    #[error(transparent)]
    Frame(FrameError),
    /// A typed message could not be encoded (nothing was sent) or a received frame did not
    /// decode as the expected type (that message is consumed; the connection is intact and
    /// the next message decodes normally).
    #[error(transparent)]
    Typed(TypedError),
    /// Ack mode: the peer did not complete the HELLO exchange (a plain-mode peer, another
    /// protocol version, a peer that closed first).
    #[error("ack-mode handshake with {endpoint} failed: {source}")]
    Handshake {
        /// Where the client connected.
        endpoint: String,
        /// What the peer sent instead, in numbers.
        source: AckError,
    },
    /// Ack mode: the peer sent no HELLO within the connect timeout.
    #[error("no ack-mode HELLO from {endpoint} within {} ms", .timeout.as_millis())]
    HandshakeTimeout {
        /// Where the client connected.
        endpoint: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// Ack mode: a local, per-message error (a payload longer than the peer accepts). The
    /// message was not accepted; the connection is unaffected.
    #[error(transparent)]
    Ack(AckError),
    /// Ack mode: the connection dropped and the reconnect policy gave up. `unacked` holds
    /// exactly the messages accepted by `send` and never acknowledged, oldest first; they may
    /// or may not have reached the peer's application.
    #[error(
        "reconnect gave up after {attempts} attempts in {} ms, \
         {} messages unacknowledged (handed back): {last_error}",
        elapsed.as_millis(),
        unacked.len()
    )]
    GaveUp {
        /// Reconnect attempts made after the last drop.
        attempts: u32,
        /// Time spent since the last drop.
        elapsed: Duration,
        /// Why the last attempt (or the drop itself) failed: its message and classification.
        last_error: EarlierError,
        /// The unacknowledged messages, oldest first.
        unacked: Vec<Bytes>,
    },
    /// Ack mode: the peer broke the protocol (a stray or backwards ack, an oversized frame,
    /// data out of sequence, ...). The client does not reconnect to a peer that misbehaves.
    /// `unacked` holds exactly the messages never acknowledged, oldest first.
    #[error(
        "peer violated the ack-mode protocol, {} messages unacknowledged (handed back): {source}",
        unacked.len()
    )]
    Protocol {
        /// The violation, in numbers.
        source: Arc<AckError>,
        /// The unacknowledged messages, oldest first.
        unacked: Vec<Bytes>,
    },
    /// Ack mode: a `send` that was never accepted because the client has stopped. The payload
    /// comes back.
    #[error("message of {} bytes not sent: {reason}", payload.len())]
    NotSent {
        /// The message that was not sent.
        payload: Bytes,
        /// Why the client stopped (its message and classification).
        reason: EarlierError,
    },
    /// Ack mode: a receipt whose message will never be acknowledged (the client stopped; the
    /// message is among the `unacked` of [`ClientError::GaveUp`] or
    /// [`ClientError::Protocol`]).
    #[error("message {id} will not be acknowledged: {reason}")]
    Undelivered {
        /// The message's id ([`Receipt::id`](crate::Receipt::id)).
        id: u64,
        /// Why the client stopped (its message and classification).
        reason: EarlierError,
    },
    /// Ack mode: `send` or `flush` waited the
    /// [deadlock grace](crate::ClientBuilder::ack_deadlock_grace) (by default
    /// [`DEFAULT_DEADLOCK_GRACE`](crate::DEFAULT_DEADLOCK_GRACE)) with no
    /// acknowledgement while the peer's messages filled this client's receive window and
    /// nothing called `recv`. The peer cannot send more, so (an echo server, a
    /// request/response peer) it has most likely stopped taking this client's messages until
    /// its replies are read: both sides would wait forever. The connection is unaffected;
    /// receive concurrently (split the client and call `recv` in another task) and retry.
    #[error(
        "{op} blocked for {} ms with no acknowledgement: the peer's window is full, \
         and {unread} of the peer's messages ({unread_bytes} bytes) fill this client's receive \
         window of {window} messages ({window_bytes} bytes) while nothing calls recv, so the \
         peer cannot send more and likely waits too. Receive concurrently: split the client \
         (AckClient::split) and call recv in another task",
        waited.as_millis()
    )]
    Deadlock {
        /// `"send"` or `"flush"`.
        op: &'static str,
        /// The message `send` did not accept (`None` for `flush`).
        payload: Option<Bytes>,
        /// How long it waited.
        waited: Duration,
        /// The peer's messages received and not yet acknowledged.
        unread: u64,
        /// Their payload bytes.
        unread_bytes: u64,
        /// The window this client granted, in messages.
        window: u32,
        /// The window this client granted, in bytes.
        window_bytes: u32,
    },
    /// Ack mode: the client has already stopped (closed, or its background task ended).
    #[error("client stopped: {reason}")]
    Stopped {
        /// Why (its message and classification).
        reason: EarlierError,
    },
}

impl ClientError {
    /// The traffic counters, for the errors that end a plain-mode connection.
    pub fn in_flight(&self) -> Option<InFlight> {
        match self {
            ClientError::ConnectionLost { in_flight, .. }
            | ClientError::ClosedByPeer { in_flight }
            | ClientError::CloseTimeout { in_flight, .. } => Some(*in_flight),
            _ => None,
        }
    }
}

impl ClientError {
    /// Whose doing this is. [`Cause::Peer`]: a TLS handshake refused over its content (an
    /// `io::Error` of kind `InvalidData`), a server speaking ack mode to a plain client,
    /// protocol violations, messages that do not decode. [`Cause::Local`]: a bad address, an
    /// abandoned call, misuse and values over the limit, a [`Deadlock`](Self::Deadlock) (the
    /// application does not receive). [`Cause::Transport`]: connecting, a lost or closed
    /// connection, [`GaveUp`](Self::GaveUp). [`Cause::Timeout`]: the connect, call, close and
    /// handshake timeouts. Wrapped errors answer as the error inside; `NotSent`,
    /// `Undelivered` and `Stopped` as their reason; [`NoEndpoint`](Self::NoEndpoint) as its
    /// errors if they agree, else [`Cause::Transport`].
    pub fn cause(&self) -> Cause {
        match self {
            ClientError::InvalidEndpoint { .. }
            | ClientError::CallAbandoned
            | ClientError::Deadlock { .. } => Cause::Local,
            ClientError::Tls { source, .. } if source.kind() == io::ErrorKind::InvalidData => {
                Cause::Peer
            }
            ClientError::Connect { .. }
            | ClientError::Tls { .. }
            | ClientError::ClosedByPeer { .. }
            | ClientError::GaveUp { .. } => Cause::Transport,
            ClientError::NoEndpoint { errors } => {
                let mut causes = errors.iter().map(ClientError::cause);
                let first = causes.next().unwrap_or(Cause::Transport);
                if causes.all(|c| c == first) {
                    first
                } else {
                    Cause::Transport
                }
            }
            ClientError::ConnectTimeout { .. }
            | ClientError::CallTimeout { .. }
            | ClientError::CloseTimeout { .. }
            | ClientError::HandshakeTimeout { .. } => Cause::Timeout,
            ClientError::PeerSpeaksAckMode { .. } => Cause::Peer,
            ClientError::ConnectionLost { source, .. } => source.cause(),
            ClientError::Frame(e) => e.cause(),
            ClientError::Typed(e) => e.cause(),
            ClientError::Handshake { source, .. } | ClientError::Ack(source) => source.cause(),
            ClientError::Protocol { source, .. } => source.cause(),
            ClientError::NotSent { reason, .. }
            | ClientError::Undelivered { reason, .. }
            | ClientError::Stopped { reason } => reason.cause(),
        }
    }

    /// `true` when [`cause`](Self::cause) is [`Cause::Peer`].
    pub fn is_peer_fault(&self) -> bool {
        self.cause() == Cause::Peer
    }

    /// `true` when the same client can still be used: a value over the limit or that does not
    /// encode, a message that did not decode (nothing else is lost), an ack-mode payload over
    /// the peer's limit, a [`Deadlock`](Self::Deadlock) (receive concurrently, then go on).
    /// Everything else ended the connection (or there was none).
    pub fn is_connection_usable(&self) -> bool {
        match self {
            ClientError::Frame(e) => e.is_connection_usable(),
            ClientError::Typed(e) => e.is_connection_usable(),
            ClientError::Ack(e) => e.is_connection_usable(),
            ClientError::Deadlock { .. } => true,
            _ => false,
        }
    }

    /// `true` when the same operation may succeed if tried again, on a new connection when
    /// this one is over: connecting failed or timed out, the connection was lost or closed, a
    /// call timed out or was abandoned, the reconnect policy gave up (a later attempt may
    /// work), a [`Deadlock`](Self::Deadlock) (once something receives). `false` for a bad
    /// address, the peer's faults, values over the limit and [`CloseTimeout`](Self::CloseTimeout)
    /// (the connection is dropped: nothing is left to retry). Wrapped errors and reasons answer
    /// as themselves; [`NoEndpoint`](Self::NoEndpoint) if any endpoint's error is retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::CallAbandoned | ClientError::Deadlock { .. } => true,
            ClientError::CloseTimeout { .. } => false,
            ClientError::NoEndpoint { errors } => errors.iter().any(ClientError::is_retryable),
            ClientError::ConnectionLost { source, .. } => source.is_retryable(),
            ClientError::Frame(e) => e.is_retryable(),
            ClientError::Typed(e) => e.is_retryable(),
            ClientError::Handshake { source, .. } | ClientError::Ack(source) => {
                source.is_retryable()
            }
            ClientError::Protocol { source, .. } => source.is_retryable(),
            ClientError::NotSent { reason, .. }
            | ClientError::Undelivered { reason, .. }
            | ClientError::Stopped { reason } => reason.is_retryable(),
            e => matches!(e.cause(), Cause::Transport | Cause::Timeout),
        }
    }
}

impl From<&ClientError> for EarlierError {
    /// The error's message and classification, for the `reason` of later errors.
    fn from(e: &ClientError) -> Self {
        EarlierError::new(e, e.cause(), e.is_retryable())
    }
}

impl From<framewire_codec::EndpointError> for ClientError {
    fn from(e: framewire_codec::EndpointError) -> Self {
        ClientError::InvalidEndpoint {
            endpoint: e.endpoint().to_string(),
            reason: e.reason(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Arc;
    use std::time::Duration;

    use framewire_codec::ack::AckError;
    use framewire_codec::typed::TypedError;
    use framewire_codec::{Cause, EarlierError, FrameError};

    use super::{ClientError, InFlight};

    /// Exhaustive: a new variant does not compile until it has a position and a row.
    fn ordinal(e: &ClientError) -> usize {
        match e {
            ClientError::InvalidEndpoint { .. } => 0,
            ClientError::Connect { .. } => 1,
            ClientError::NoEndpoint { .. } => 2,
            ClientError::Tls { .. } => 3,
            ClientError::ConnectTimeout { .. } => 4,
            ClientError::ConnectionLost { .. } => 5,
            ClientError::CallTimeout { .. } => 6,
            ClientError::CallAbandoned => 7,
            ClientError::PeerSpeaksAckMode { .. } => 8,
            ClientError::ClosedByPeer { .. } => 9,
            ClientError::CloseTimeout { .. } => 10,
            ClientError::Frame(_) => 11,
            ClientError::Typed(_) => 12,
            ClientError::Handshake { .. } => 13,
            ClientError::HandshakeTimeout { .. } => 14,
            ClientError::Ack(_) => 15,
            ClientError::GaveUp { .. } => 16,
            ClientError::Protocol { .. } => 17,
            ClientError::NotSent { .. } => 18,
            ClientError::Undelivered { .. } => 19,
            ClientError::Deadlock { .. } => 20,
            ClientError::Stopped { .. } => 21,
        }
    }
    const VARIANTS: usize = 22;

    /// Every variant with its documented answers: cause, usable, retryable (wrapped errors and
    /// reasons answer as themselves). Fails if a classification is flipped.
    #[test]
    fn every_variant_classifies_as_documented() {
        use Cause::*;
        let t = Duration::from_millis(250);
        let ep = || "127.0.0.1:9".to_string();
        let io = |k: io::ErrorKind| io::Error::from(k);
        let refused = || ClientError::Connect {
            endpoint: ep(),
            source: io(io::ErrorKind::ConnectionRefused),
        };
        let plain = || ClientError::PeerSpeaksAckMode { version: 1 };
        let flight = InFlight::default();
        let peer_closed = EarlierError::new("the peer closed the connection", Transport, true);
        let closed = EarlierError::new("the client was closed", Local, false);
        let table = [
            (
                ClientError::InvalidEndpoint {
                    endpoint: "x".into(),
                    reason: "no port",
                },
                Local,
                false,
                false,
            ),
            (refused(), Transport, false, true),
            (
                ClientError::NoEndpoint {
                    errors: vec![refused(), plain()],
                },
                Transport,
                false,
                true,
            ),
            (
                ClientError::NoEndpoint {
                    errors: vec![plain(), plain()],
                },
                Peer,
                false,
                false,
            ),
            (
                ClientError::Tls {
                    endpoint: ep(),
                    source: io::Error::new(io::ErrorKind::InvalidData, "cert"),
                },
                Peer,
                false,
                false,
            ),
            (
                ClientError::Tls {
                    endpoint: ep(),
                    source: io(io::ErrorKind::UnexpectedEof),
                },
                Transport,
                false,
                true,
            ),
            (
                ClientError::ConnectTimeout {
                    endpoint: ep(),
                    timeout: t,
                },
                Timeout,
                false,
                true,
            ),
            (
                ClientError::ConnectionLost {
                    in_flight: flight,
                    source: FrameError::Io(io(io::ErrorKind::ConnectionReset)),
                },
                Transport,
                false,
                true,
            ),
            (
                ClientError::ConnectionLost {
                    in_flight: flight,
                    source: FrameError::IncomingTooLong { len: 9, max: 8 },
                },
                Peer,
                false,
                false,
            ),
            (
                ClientError::CallTimeout { timeout: t },
                Timeout,
                false,
                true,
            ),
            (ClientError::CallAbandoned, Local, false, true),
            (plain(), Peer, false, false),
            (
                ClientError::ClosedByPeer { in_flight: flight },
                Transport,
                false,
                true,
            ),
            (
                ClientError::CloseTimeout {
                    timeout: t,
                    in_flight: flight,
                },
                Timeout,
                false,
                false,
            ),
            (
                ClientError::Frame(FrameError::OutgoingTooLong { len: 9, max: 8 }),
                Local,
                true,
                false,
            ),
            (
                ClientError::Typed(TypedError::Decode {
                    len: 1,
                    format: "bincode",
                    reason: "x".into(),
                }),
                Peer,
                true,
                false,
            ),
            (
                ClientError::Handshake {
                    endpoint: ep(),
                    source: AckError::VersionMismatch { ours: 1, theirs: 2 },
                },
                Peer,
                false,
                false,
            ),
            (
                ClientError::Handshake {
                    endpoint: ep(),
                    source: AckError::ClosedBeforeHello,
                },
                Transport,
                false,
                true,
            ),
            (
                ClientError::HandshakeTimeout {
                    endpoint: ep(),
                    timeout: t,
                },
                Timeout,
                false,
                true,
            ),
            (
                ClientError::Ack(AckError::PayloadTooLong { len: 9, max: 8 }),
                Local,
                true,
                false,
            ),
            (
                ClientError::GaveUp {
                    attempts: 3,
                    elapsed: t,
                    last_error: EarlierError::new("refused", Transport, true),
                    unacked: vec![],
                },
                Transport,
                false,
                true,
            ),
            (
                ClientError::Protocol {
                    source: Arc::new(AckError::AckBackwards {
                        ack: 1,
                        previous: 2,
                    }),
                    unacked: vec![],
                },
                Peer,
                false,
                false,
            ),
            (
                ClientError::NotSent {
                    payload: "x".into(),
                    reason: peer_closed.clone(),
                },
                Transport,
                false,
                true,
            ),
            (
                ClientError::Undelivered {
                    id: 1,
                    reason: closed.clone(),
                },
                Local,
                false,
                false,
            ),
            (
                ClientError::Deadlock {
                    op: "send",
                    payload: None,
                    waited: t,
                    unread: 8,
                    unread_bytes: 8,
                    window: 8,
                    window_bytes: 1024,
                },
                Local,
                true,
                true,
            ),
            (
                ClientError::Stopped {
                    reason: peer_closed,
                },
                Transport,
                false,
                true,
            ),
            (ClientError::Stopped { reason: closed }, Local, false, false),
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
    fn durations_are_reported_in_milliseconds() {
        let e = ClientError::ConnectTimeout {
            endpoint: "127.0.0.1:9".into(),
            timeout: Duration::from_secs(5),
        };
        assert_eq!(
            e.to_string(),
            "connecting to 127.0.0.1:9 timed out after 5000 ms"
        );
    }
}
