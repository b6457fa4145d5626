//! The ack-mode error type.

use std::fmt;

use crate::FrameError;

use super::wire::FrameKind;

/// Everything that can go wrong in ack mode: protocol violations by the peer, misuse of the
/// state machine by the local application, and transport errors.
///
/// Every message says what happened in numbers. After a peer violation
/// ([`AckError::is_peer_error`]) or a transport error the connection should be closed; the
/// messages that were sent but not acknowledged can still be taken back from the state machine
/// ([`AckState::take_unacked`](super::AckState::take_unacked)) or the adapter
/// ([`AckFramed::into_unacked`](super::AckFramed::into_unacked)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The plain-mode transport failed (I/O error, oversized or truncated frame).
    #[error(transparent)]
    Frame(#[from] FrameError),

    /// The peer's first frame was not a HELLO: a plain-mode peer, or another protocol.
    #[error("expected HELLO, got {}", describe_frame(*.len, .start))]
    ExpectedHello {
        /// Length of the frame that arrived instead (payload bytes, without the length prefix).
        len: usize,
        /// Its first bytes (at most [`ERROR_PREFIX_LEN`]).
        start: Vec<u8>,
    },
    /// The peer's HELLO names another protocol version.
    #[error("peer speaks ack-mode version {theirs}, this side speaks version {ours}")]
    VersionMismatch {
        /// The version this side speaks ([`VERSION`](super::VERSION)).
        ours: u8,
        /// The version the peer's HELLO announced.
        theirs: u8,
    },
    /// The peer sent HELLO a second time.
    #[error(
        "second HELLO (window {window}, max frame length {max_frame_len}) after the handshake"
    )]
    SecondHello {
        /// The window the second HELLO announced.
        window: u32,
        /// The max frame length the second HELLO announced.
        max_frame_len: u32,
    },
    /// The peer granted a window of 0 messages or 0 bytes: nothing could ever be sent to it.
    #[error("peer granted a window of 0 {unit}")]
    ZeroWindow {
        /// `"messages"` or `"bytes"`.
        unit: &'static str,
    },
    /// The peer's HELLO sets flag bits this version does not define.
    #[error("HELLO with unknown flag bits 0x{flags:02x} (this version defines 0x01 only)")]
    UnknownHelloFlags {
        /// The whole flags byte.
        flags: u8,
    },
    /// The peer's maximum frame length cannot even carry an ACK frame.
    #[error(
        "peer's max frame length of {max_frame_len} bytes is below the {min} bytes ack mode needs"
    )]
    PeerMaxTooSmall {
        /// The max frame length the peer's HELLO announced.
        max_frame_len: u32,
        /// The smallest acceptable value ([`HELLO_LEN`](super::HELLO_LEN)).
        min: usize,
    },
    /// A frame with no bytes at all (ack-mode frames start with a kind byte).
    #[error("empty frame: every ack-mode frame starts with a kind byte")]
    EmptyFrame,
    /// A frame whose kind byte is none of HELLO, DATA, ACK, GOAWAY, PING, PONG.
    #[error("unknown ack-mode frame kind 0x{kind:02x} in a frame of {len} bytes")]
    UnknownKind {
        /// The kind byte.
        kind: u8,
        /// Length of the frame (payload bytes, without the length prefix).
        len: usize,
    },
    /// A frame of the wrong length for its kind.
    #[error("{kind} frame of {len} bytes, expected {}{expected} bytes", if *.kind == FrameKind::Data { "at least " } else { "" })]
    BadLength {
        /// The frame's kind.
        kind: FrameKind,
        /// Its length (payload bytes, without the length prefix).
        len: usize,
        /// The required length (DATA: the minimum).
        expected: usize,
    },
    /// A HELLO-kind frame whose magic bytes are not `FWAK`.
    #[error("HELLO frame with magic {:02x} {:02x} {:02x} {:02x}, expected 46 57 41 4b (\"FWAK\")", .magic[0], .magic[1], .magic[2], .magic[3])]
    BadMagic {
        /// The four bytes found where the magic belongs.
        magic: [u8; 4],
    },
    /// A DATA frame with flag bits this version does not define.
    #[error("DATA {seq} has unknown flag bits 0x{flags:02x} (this version knows 0x01)")]
    UnknownFlags {
        /// The DATA frame's sequence number.
        seq: u64,
        /// The whole flags byte.
        flags: u8,
    },
    /// The peer acknowledged a sequence number this side never transmitted.
    #[error("ACK {ack} for a message never sent: only {sent} DATA frames were transmitted")]
    AckForUnsent {
        /// The cumulative sequence number the ACK carried.
        ack: u64,
        /// The highest sequence number transmitted so far.
        sent: u64,
    },
    /// The peer's cumulative ACK went backwards.
    #[error("ACK went backwards from {previous} to {ack}")]
    AckBackwards {
        /// The ACK that just arrived.
        ack: u64,
        /// The highest ACK received before it.
        previous: u64,
    },
    /// A DATA frame whose sequence number is not the next one.
    #[error("DATA {got} out of sequence: expected {expected}")]
    DataOutOfSequence {
        /// The next sequence number this side expected.
        expected: u64,
        /// The sequence number that arrived.
        got: u64,
    },
    /// A DATA frame beyond the window this side granted.
    #[error(
        "DATA {seq} exceeds the granted window of {window} (acknowledged through {acked}, \
         so at most {} was allowed)", .acked.saturating_add(u64::from(*.window))
    )]
    DataBeyondWindow {
        /// The sequence number that arrived.
        seq: u64,
        /// The window this side granted in its HELLO.
        window: u32,
        /// The highest cumulative ACK this side has transmitted.
        acked: u64,
    },
    /// A DATA frame beyond the byte window this side granted: the peer sent it while at least
    /// the whole byte window was already unacknowledged.
    #[error(
        "DATA {seq} of {len} bytes exceeds the granted window of {window_bytes} bytes: \
         {unacked_bytes} bytes were already unacknowledged"
    )]
    DataBeyondByteWindow {
        /// The sequence number that arrived.
        seq: u64,
        /// Its payload length.
        len: usize,
        /// Payload bytes received and not yet covered by an ACK this side transmitted.
        unacked_bytes: u64,
        /// The byte window this side granted in its HELLO.
        window_bytes: u32,
    },
    /// Nothing arrived from the peer for the peer timeout, although keepalive PINGs were
    /// sent: the peer (or the path to it) is gone without closing.
    #[error("peer silent for {silent_ms} ms (timeout {timeout_ms} ms; keepalive PING unanswered)")]
    PeerSilent {
        /// How long nothing arrived, in milliseconds.
        silent_ms: u64,
        /// The configured peer timeout, in milliseconds.
        timeout_ms: u64,
    },
    /// The peer closed the connection before sending its HELLO.
    #[error("connection closed before the peer's HELLO arrived")]
    ClosedBeforeHello,
    /// The connection closed while messages were still unacknowledged.
    #[error(
        "connection closed with {unacked} messages unacknowledged (acknowledged through {acked})"
    )]
    ClosedWithUnacked {
        /// How many sent messages were never acknowledged.
        unacked: usize,
        /// The highest cumulative ACK received.
        acked: u64,
    },
    /// The connection already failed; this is every call after the first error.
    #[error("connection already failed: {first}")]
    Failed {
        /// The message of the error that broke the connection.
        first: String,
    },

    /// Local misuse: a send after `close`.
    #[error("cannot send: this side already closed its sending half")]
    SinkClosed,
    /// Local misuse: a send while the window has no room (or before the peer's HELLO).
    #[error(
        "no room to send: {in_flight} messages ({in_flight_bytes} bytes) unacknowledged, \
         the window is {window} messages ({window_bytes} bytes)"
    )]
    WindowFull {
        /// Messages sent and not yet acknowledged.
        in_flight: u64,
        /// Their payload bytes.
        in_flight_bytes: u64,
        /// The window in messages: the peer's grant clamped to this side's cap (0 before the
        /// peer's HELLO arrived).
        window: u32,
        /// The window in bytes, likewise.
        window_bytes: u32,
    },
    /// Local misuse: a payload too long for the peer's (or this side's) maximum frame length.
    #[error("payload of {len} bytes exceeds the limit of {max} bytes for one DATA frame")]
    PayloadTooLong {
        /// The payload's length.
        len: usize,
        /// The longest payload that fits (max frame length minus the DATA header).
        max: usize,
    },
    /// A resuming peer's HELLO says it delivered more of the session than this side ever sent.
    #[error(
        "peer resumes the session saying it delivered through message {delivered}, but only {sent} were sent"
    )]
    ResumeBeyondSent {
        /// The peer's `delivered through`.
        delivered: u64,
        /// The highest seq this side sent in the session.
        sent: u64,
    },
    /// A resuming peer's HELLO says it delivered less of the session than it had already
    /// acknowledged: it lost state it had confirmed.
    #[error(
        "peer resumes the session saying it delivered through message {delivered}, below its earlier ack of {acked}"
    )]
    ResumeBehindAck {
        /// The peer's `delivered through`.
        delivered: u64,
        /// The highest cumulative ACK the peer sent earlier in the session.
        acked: u64,
    },
    /// A peer resuming a session this side does not have names a `delivered through` so
    /// large that continuing the numbering after it could overflow.
    #[error("peer resumes a session at message {delivered}, above the limit of {max}")]
    ResumeSeqTooLarge {
        /// The peer's `delivered through`.
        delivered: u64,
        /// [`MAX_RESUME_SEQ`](super::MAX_RESUME_SEQ).
        max: u64,
    },
    /// A newer connection resumed this connection's session (the client reconnected before
    /// this side noticed the old connection was gone): this connection ends and its session
    /// moves to the new one.
    #[error("session taken over by a newer connection of the same client")]
    SessionTakenOver,
    /// Local misuse: the application reported taking a message that has not arrived.
    #[error("application took message {seq} but only {received} have been received")]
    TakenNotReceived {
        /// The sequence number reported as taken.
        seq: u64,
        /// The highest sequence number received.
        received: u64,
    },
}

/// How many leading bytes [`AckError::ExpectedHello`] keeps of the frame that arrived instead.
pub const ERROR_PREFIX_LEN: usize = 8;

impl AckError {
    /// `true` for errors caused by what the peer sent (protocol violations, including those
    /// of the framing layer), as opposed to local I/O failures or local misuse.
    pub fn is_peer_error(&self) -> bool {
        match self {
            AckError::Frame(e) => e.is_peer_error(),
            AckError::ExpectedHello { .. }
            | AckError::VersionMismatch { .. }
            | AckError::SecondHello { .. }
            | AckError::ZeroWindow { .. }
            | AckError::UnknownHelloFlags { .. }
            | AckError::DataBeyondByteWindow { .. }
            | AckError::PeerMaxTooSmall { .. }
            | AckError::EmptyFrame
            | AckError::UnknownKind { .. }
            | AckError::BadLength { .. }
            | AckError::BadMagic { .. }
            | AckError::UnknownFlags { .. }
            | AckError::AckForUnsent { .. }
            | AckError::AckBackwards { .. }
            | AckError::DataOutOfSequence { .. }
            | AckError::DataBeyondWindow { .. }
            | AckError::ResumeBeyondSent { .. }
            | AckError::ResumeBehindAck { .. }
            | AckError::ResumeSeqTooLarge { .. } => true,
            AckError::ClosedBeforeHello
            | AckError::PeerSilent { .. }
            | AckError::ClosedWithUnacked { .. }
            | AckError::Failed { .. }
            | AckError::SinkClosed
            | AckError::WindowFull { .. }
            | AckError::PayloadTooLong { .. }
            | AckError::SessionTakenOver
            | AckError::TakenNotReceived { .. } => false,
        }
    }

    /// `true` for errors that refuse one local call (send after close, no room, payload too
    /// long, taking what has not arrived) and leave the connection usable.
    pub fn is_local_misuse(&self) -> bool {
        matches!(
            self,
            AckError::SinkClosed
                | AckError::WindowFull { .. }
                | AckError::PayloadTooLong { .. }
                | AckError::TakenNotReceived { .. }
        )
    }

    pub(crate) fn expected_hello(frame: &[u8]) -> AckError {
        AckError::ExpectedHello {
            len: frame.len(),
            start: frame[..frame.len().min(ERROR_PREFIX_LEN)].to_vec(),
        }
    }
}

fn describe_frame(len: usize, start: &[u8]) -> DescribeFrame<'_> {
    DescribeFrame { len, start }
}

/// Formats "a frame of 5 bytes starting 68 65 6c 6c 6f".
struct DescribeFrame<'a> {
    len: usize,
    start: &'a [u8],
}

impl fmt::Display for DescribeFrame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a frame of {} bytes", self.len)?;
        if self.start.is_empty() {
            return Ok(());
        }
        f.write_str(" starting")?;
        for b in self.start {
            write!(f, " {b:02x}")?;
        }
        if self.len > self.start.len() {
            f.write_str(" ...")?;
        }
        Ok(())
    }
}
