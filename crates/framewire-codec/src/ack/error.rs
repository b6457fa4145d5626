//! The ack-mode error type.

use std::fmt;

use crate::{Cause, EarlierError, FrameError};

use super::wire::FrameKind;

/// Everything that can go wrong in ack mode: protocol violations by the peer, misuse of the
/// state machine by the local application, transport errors and the peer timeout, told apart
/// by [`AckError::cause`].
///
/// Every message says what happened in numbers. Local misuse refuses one call and leaves the
/// connection usable ([`AckError::is_connection_usable`]); after anything else the connection
/// should be closed; the messages that were sent but not acknowledged can still be taken back from the state machine
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
    /// The connection already failed; this is every call after the first error. It classifies
    /// as that first error did (but is never usable).
    #[error("connection already failed: {first}")]
    Failed {
        /// The error that broke the connection: its message and classification.
        first: EarlierError,
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

impl From<&AckError> for EarlierError {
    /// The error's message and classification, for [`AckError::Failed`] of every later call.
    fn from(e: &AckError) -> Self {
        EarlierError::new(e, e.cause(), e.is_retryable())
    }
}

/// How many leading bytes [`AckError::ExpectedHello`] keeps of the frame that arrived instead.
pub const ERROR_PREFIX_LEN: usize = 8;

impl AckError {
    /// Whose doing this is:
    ///
    /// * a protocol violation (every variant not listed below) is [`Cause::Peer`], as are the
    ///   framing layer's peer errors;
    /// * misuse that refuses one call ([`SinkClosed`](Self::SinkClosed),
    ///   [`WindowFull`](Self::WindowFull), [`PayloadTooLong`](Self::PayloadTooLong),
    ///   [`TakenNotReceived`](Self::TakenNotReceived)) is [`Cause::Local`];
    /// * I/O, a close before the HELLO or with messages unacknowledged, and
    ///   [`SessionTakenOver`](Self::SessionTakenOver) (the connection was replaced) are
    ///   [`Cause::Transport`];
    /// * [`PeerSilent`](Self::PeerSilent) is [`Cause::Timeout`];
    /// * [`Failed`](Self::Failed) has the first error's cause.
    pub fn cause(&self) -> Cause {
        match self {
            AckError::Frame(e) => e.cause(),
            AckError::Failed { first } => first.cause(),
            AckError::SinkClosed
            | AckError::WindowFull { .. }
            | AckError::PayloadTooLong { .. }
            | AckError::TakenNotReceived { .. } => Cause::Local,
            AckError::ClosedBeforeHello
            | AckError::ClosedWithUnacked { .. }
            | AckError::SessionTakenOver => Cause::Transport,
            AckError::PeerSilent { .. } => Cause::Timeout,
            AckError::ExpectedHello { .. }
            | AckError::VersionMismatch { .. }
            | AckError::SecondHello { .. }
            | AckError::ZeroWindow { .. }
            | AckError::UnknownHelloFlags { .. }
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
            | AckError::DataBeyondByteWindow { .. }
            | AckError::ResumeBeyondSent { .. }
            | AckError::ResumeBehindAck { .. }
            | AckError::ResumeSeqTooLarge { .. } => Cause::Peer,
        }
    }

    /// `true` when [`cause`](Self::cause) is [`Cause::Peer`].
    pub fn is_peer_fault(&self) -> bool {
        self.cause() == Cause::Peer
    }

    /// `true` for local misuse ([`Cause::Local`]: a send after `close`, no room in the window,
    /// a payload too long, taking what has not arrived): the call was refused and the
    /// connection goes on. Every other error ends the connection.
    pub fn is_connection_usable(&self) -> bool {
        match self {
            AckError::Frame(e) => e.is_connection_usable(),
            AckError::Failed { .. } => false,
            e => e.cause() == Cause::Local,
        }
    }

    /// `true` when the same operation may succeed if tried again: a send refused for lack of
    /// room ([`WindowFull`](Self::WindowFull), once the window opens), and transport failures
    /// and the peer timeout (on a new connection; ack-mode clients resend what was not
    /// acknowledged). `false` for protocol violations, other misuse and
    /// [`SessionTakenOver`](Self::SessionTakenOver) (the session lives on another connection).
    pub fn is_retryable(&self) -> bool {
        match self {
            AckError::Frame(e) => e.is_retryable(),
            AckError::Failed { first } => first.is_retryable(),
            AckError::WindowFull { .. } => true,
            AckError::SessionTakenOver => false,
            e => matches!(e.cause(), Cause::Transport | Cause::Timeout),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Exhaustive: a new variant does not compile until it has a position and a row.
    fn ordinal(e: &AckError) -> usize {
        match e {
            AckError::Frame(_) => 0,
            AckError::ExpectedHello { .. } => 1,
            AckError::VersionMismatch { .. } => 2,
            AckError::SecondHello { .. } => 3,
            AckError::ZeroWindow { .. } => 4,
            AckError::UnknownHelloFlags { .. } => 5,
            AckError::PeerMaxTooSmall { .. } => 6,
            AckError::EmptyFrame => 7,
            AckError::UnknownKind { .. } => 8,
            AckError::BadLength { .. } => 9,
            AckError::BadMagic { .. } => 10,
            AckError::UnknownFlags { .. } => 11,
            AckError::AckForUnsent { .. } => 12,
            AckError::AckBackwards { .. } => 13,
            AckError::DataOutOfSequence { .. } => 14,
            AckError::DataBeyondWindow { .. } => 15,
            AckError::DataBeyondByteWindow { .. } => 16,
            AckError::PeerSilent { .. } => 17,
            AckError::ClosedBeforeHello => 18,
            AckError::ClosedWithUnacked { .. } => 19,
            AckError::Failed { .. } => 20,
            AckError::SinkClosed => 21,
            AckError::WindowFull { .. } => 22,
            AckError::PayloadTooLong { .. } => 23,
            AckError::ResumeBeyondSent { .. } => 24,
            AckError::ResumeBehindAck { .. } => 25,
            AckError::ResumeSeqTooLarge { .. } => 26,
            AckError::SessionTakenOver => 27,
            AckError::TakenNotReceived { .. } => 28,
        }
    }
    const VARIANTS: usize = 29;

    /// Every variant with its documented answers: cause, usable, retryable. `Frame` and
    /// `Failed` answer as the error inside (`Failed` is never usable).
    #[test]
    fn every_variant_classifies_as_documented() {
        use Cause::*;
        let io = || FrameError::Io(std::io::ErrorKind::ConnectionReset.into());
        let silent = AckError::PeerSilent {
            silent_ms: 3000,
            timeout_ms: 3000,
        };
        let table = [
            (AckError::Frame(io()), Transport, false, true),
            (
                AckError::Frame(FrameError::IncomingTooLong { len: 9, max: 8 }),
                Peer,
                false,
                false,
            ),
            (
                AckError::Frame(FrameError::OutgoingTooLong { len: 9, max: 8 }),
                Local,
                true,
                false,
            ),
            (AckError::expected_hello(b"hello"), Peer, false, false),
            (
                AckError::VersionMismatch { ours: 1, theirs: 2 },
                Peer,
                false,
                false,
            ),
            (
                AckError::SecondHello {
                    window: 1,
                    max_frame_len: 64,
                },
                Peer,
                false,
                false,
            ),
            (AckError::ZeroWindow { unit: "bytes" }, Peer, false, false),
            (
                AckError::UnknownHelloFlags { flags: 0x80 },
                Peer,
                false,
                false,
            ),
            (
                AckError::PeerMaxTooSmall {
                    max_frame_len: 3,
                    min: 14,
                },
                Peer,
                false,
                false,
            ),
            (AckError::EmptyFrame, Peer, false, false),
            (
                AckError::UnknownKind { kind: 9, len: 1 },
                Peer,
                false,
                false,
            ),
            (
                AckError::BadLength {
                    kind: FrameKind::Ack,
                    len: 3,
                    expected: 9,
                },
                Peer,
                false,
                false,
            ),
            (AckError::BadMagic { magic: *b"XXXX" }, Peer, false, false),
            (
                AckError::UnknownFlags {
                    seq: 1,
                    flags: 0x80,
                },
                Peer,
                false,
                false,
            ),
            (
                AckError::AckForUnsent { ack: 5, sent: 4 },
                Peer,
                false,
                false,
            ),
            (
                AckError::AckBackwards {
                    ack: 3,
                    previous: 4,
                },
                Peer,
                false,
                false,
            ),
            (
                AckError::DataOutOfSequence {
                    expected: 2,
                    got: 3,
                },
                Peer,
                false,
                false,
            ),
            (
                AckError::DataBeyondWindow {
                    seq: 9,
                    window: 4,
                    acked: 1,
                },
                Peer,
                false,
                false,
            ),
            (
                AckError::DataBeyondByteWindow {
                    seq: 9,
                    len: 5,
                    unacked_bytes: 64,
                    window_bytes: 64,
                },
                Peer,
                false,
                false,
            ),
            (
                AckError::PeerSilent {
                    silent_ms: 3000,
                    timeout_ms: 3000,
                },
                Timeout,
                false,
                true,
            ),
            (AckError::ClosedBeforeHello, Transport, false, true),
            (
                AckError::ClosedWithUnacked {
                    unacked: 2,
                    acked: 5,
                },
                Transport,
                false,
                true,
            ),
            (
                AckError::Failed {
                    first: EarlierError::from(&silent),
                },
                Timeout,
                false,
                true,
            ),
            (
                AckError::Failed {
                    first: EarlierError::from(&AckError::EmptyFrame),
                },
                Peer,
                false,
                false,
            ),
            (AckError::SinkClosed, Local, true, false),
            (
                AckError::WindowFull {
                    in_flight: 1,
                    in_flight_bytes: 1,
                    window: 1,
                    window_bytes: 64,
                },
                Local,
                true,
                true,
            ),
            (
                AckError::PayloadTooLong { len: 9, max: 8 },
                Local,
                true,
                false,
            ),
            (
                AckError::ResumeBeyondSent {
                    delivered: 9,
                    sent: 8,
                },
                Peer,
                false,
                false,
            ),
            (
                AckError::ResumeBehindAck {
                    delivered: 3,
                    acked: 4,
                },
                Peer,
                false,
                false,
            ),
            (
                AckError::ResumeSeqTooLarge {
                    delivered: u64::MAX,
                    max: 1 << 62,
                },
                Peer,
                false,
                false,
            ),
            (AckError::SessionTakenOver, Transport, false, false),
            (
                AckError::TakenNotReceived {
                    seq: 3,
                    received: 2,
                },
                Local,
                true,
                false,
            ),
        ];
        crate::error::assert_classified!(table, ordinal, VARIANTS);
    }

    #[test]
    fn failed_carries_the_first_errors_message() {
        let first = EarlierError::from(&AckError::DataOutOfSequence {
            expected: 2,
            got: 3,
        });
        let e = AckError::Failed { first };
        assert_eq!(
            e.to_string(),
            "connection already failed: DATA 3 out of sequence: expected 2"
        );
    }
}
