//! The client's error type.

use std::io;

use std::sync::Arc;

use bytes::Bytes;
use framewire_codec::ack::AckError;
use framewire_codec::typed::TypedError;
use framewire_codec::FrameError;

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
    #[error("connecting to {endpoint} timed out after {timeout_ms} ms")]
    ConnectTimeout {
        /// Where the client tried to connect.
        endpoint: String,
        /// The timeout that expired, in milliseconds.
        timeout_ms: u128,
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
        "close timed out after {timeout_ms} ms while flushing and shutting down \
         (the peer is not reading), with {} frames ({} bytes) sent since the last frame \
         received ({} sent and {} received in total)",
        in_flight.sent_since_last_reply,
        in_flight.bytes_since_last_reply,
        in_flight.frames_sent,
        in_flight.frames_received
    )]
    CloseTimeout {
        /// The close timeout that expired, in milliseconds.
        timeout_ms: u128,
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
    #[error("no ack-mode HELLO from {endpoint} within {timeout_ms} ms")]
    HandshakeTimeout {
        /// Where the client connected.
        endpoint: String,
        /// The timeout that expired, in milliseconds.
        timeout_ms: u128,
    },
    /// Ack mode: a local, per-message error (a payload longer than the peer accepts). The
    /// message was not accepted; the connection is unaffected.
    #[error(transparent)]
    Ack(AckError),
    /// Ack mode: the connection dropped and the reconnect policy gave up. `unacked` holds
    /// exactly the messages accepted by `send` and never acknowledged, oldest first; they may
    /// or may not have reached the peer's application.
    #[error(
        "reconnect gave up after {attempts} attempts in {elapsed_ms} ms, \
         {} messages unacknowledged (handed back): {last_error}",
        unacked.len()
    )]
    GaveUp {
        /// Reconnect attempts made after the last drop.
        attempts: u32,
        /// Time spent since the last drop, in milliseconds.
        elapsed_ms: u128,
        /// Why the last attempt (or the drop itself) failed.
        last_error: String,
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
        /// Why the client stopped.
        reason: String,
    },
    /// Ack mode: a receipt whose message will never be acknowledged (the client stopped; the
    /// message is among the `unacked` of [`ClientError::GaveUp`] or
    /// [`ClientError::Protocol`]).
    #[error("message {id} will not be acknowledged: {reason}")]
    Undelivered {
        /// The message's id ([`Receipt::id`](crate::Receipt::id)).
        id: u64,
        /// Why the client stopped.
        reason: String,
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
        "{op} blocked for {waited_ms} ms with no acknowledgement: the peer's window is full, \
         and {unread} of the peer's messages ({unread_bytes} bytes) fill this client's receive \
         window of {window} messages ({window_bytes} bytes) while nothing calls recv, so the \
         peer cannot send more and likely waits too. Receive concurrently: split the client \
         (AckClient::split) and call recv in another task"
    )]
    Deadlock {
        /// `"send"` or `"flush"`.
        op: &'static str,
        /// The message `send` did not accept (`None` for `flush`).
        payload: Option<Bytes>,
        /// How long it waited, in milliseconds.
        waited_ms: u64,
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
        /// Why.
        reason: String,
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

impl From<framewire_codec::EndpointError> for ClientError {
    fn from(e: framewire_codec::EndpointError) -> Self {
        ClientError::InvalidEndpoint {
            endpoint: e.endpoint().to_string(),
            reason: e.reason(),
        }
    }
}
