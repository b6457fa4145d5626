//! The codec's error type, and the classification every framewire error shares.
//!
//! Every public error type of the workspace ([`FrameError`], [`AckError`](crate::ack::AckError),
//! [`TypedError`](crate::typed::TypedError), the server's `ServerError` and the client's
//! `ClientError`) answers the same three questions with the same four methods:
//!
//! * [`cause`](FrameError::cause) / `is_peer_fault()`: whose doing is it (a [`Cause`])?
//! * `is_connection_usable()`: can the same connection (stream, sink, client) still be used?
//! * `is_retryable()`: may the same operation succeed if tried again, on this connection when
//!   it is still usable, else on a new one?
//!
//! An error that wraps another (a `ServerError` holding an `AckError` holding a `FrameError`)
//! answers as the error inside it, unless the wrapper knows better (a client's
//! `ConnectionLost` is never usable, whatever ended it).

use std::fmt;
use std::io;
use std::sync::Arc;

/// Whose doing an error is: the coarse answer to "is it the peer's fault?".
///
/// Finer questions have their own methods (`is_connection_usable`, `is_retryable`); the
/// server's `ErrorKind` is finer still (what the server counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// The peer sent something this side refuses: a protocol violation, a frame over the
    /// limit, a stream that ends inside a frame, a message that does not decode, a TLS
    /// handshake this side cannot accept. Trying again with the same peer fails the same way
    /// (except a stream cut inside a frame, which a peer that crashed mid-frame produces).
    Peer,
    /// This application's call was refused: misuse (a send after close, a send with no room
    /// in the window), a value too large or that does not encode, an address that does not
    /// parse. Nothing the peer did.
    Local,
    /// The network, the operating system or the peer's process: refused, reset, closed. Often
    /// transient.
    Transport,
    /// A configured time limit passed (idle, stall, write, handshake, peer silence, a call's
    /// deadline). Not counted as the peer's fault: a slow peer and a slow network look the
    /// same.
    Timeout,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cause::Peer => "the peer",
            Cause::Local => "local",
            Cause::Transport => "transport",
            Cause::Timeout => "timeout",
        })
    }
}

/// The error that closed a connection, as every later call on it reports it: the earlier
/// error's message and its classification. (The earlier error itself was returned to the call
/// that met it; errors hold I/O errors, which cannot be cloned.)
///
/// Carried by [`AckError::Failed`](crate::ack::AckError::Failed) and the server's
/// `ServerError::Closed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierError {
    message: Arc<str>,
    cause: Cause,
    retryable: bool,
}

impl EarlierError {
    /// An earlier error with this message and classification. Crates layering on the codec use
    /// it to remember their own errors; `From<&AckError>` does it for ack mode.
    pub fn new(message: impl fmt::Display, cause: Cause, retryable: bool) -> Self {
        EarlierError {
            message: message.to_string().into(),
            cause,
            retryable,
        }
    }

    /// The earlier error's message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The earlier error's [`Cause`].
    pub fn cause(&self) -> Cause {
        self.cause
    }

    /// Whether the earlier error was retryable (on a new connection: this one is over).
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl fmt::Display for EarlierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Everything that can go wrong while framing or unframing bytes.
///
/// Every variant says what happened in numbers, so a log line is enough to diagnose a peer that
/// speaks the wrong protocol. Only after [`FrameError::OutgoingTooLong`] is the stream still in
/// sync ([`is_connection_usable`](FrameError::is_connection_usable)); after any other error
/// the connection should be closed. (A codec built with
/// [`OversizedFrame::Discard`](crate::OversizedFrame::Discard) skips oversized incoming frames
/// instead of returning [`FrameError::IncomingTooLong`].)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A peer announced a frame longer than this side accepts.
    #[error("incoming frame of {len} bytes exceeds the limit of {max} bytes")]
    IncomingTooLong {
        /// The length the frame header announced.
        len: u64,
        /// The configured maximum frame length.
        max: usize,
    },
    /// The application tried to send a frame longer than the configured maximum (or longer
    /// than the 4-byte length field can express).
    #[error("outgoing frame of {len} bytes exceeds the limit of {max} bytes")]
    OutgoingTooLong {
        /// The length of the payload that was to be sent.
        len: usize,
        /// The configured maximum frame length.
        max: usize,
    },
    /// The stream ended inside a frame header.
    #[error("connection closed inside a frame header: {received} of 4 header bytes arrived")]
    TruncatedHeader {
        /// How many header bytes arrived before end of stream.
        received: usize,
    },
    /// The stream ended inside a frame's payload.
    #[error("connection closed inside a frame: {received} of {expected} payload bytes arrived")]
    TruncatedFrame {
        /// How many payload bytes arrived before end of stream.
        received: usize,
        /// How many payload bytes the header announced.
        expected: usize,
    },
    /// The underlying transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl FrameError {
    /// Whose doing this is: [`Cause::Peer`] for what the peer sent (a frame over the limit, a
    /// stream cut inside a frame; servers count these as protocol errors),
    /// [`Cause::Local`] for an oversized outgoing frame, [`Cause::Transport`] for I/O.
    pub fn cause(&self) -> Cause {
        match self {
            FrameError::IncomingTooLong { .. }
            | FrameError::TruncatedHeader { .. }
            | FrameError::TruncatedFrame { .. } => Cause::Peer,
            FrameError::OutgoingTooLong { .. } => Cause::Local,
            FrameError::Io(_) => Cause::Transport,
        }
    }

    /// `true` when [`cause`](Self::cause) is [`Cause::Peer`].
    pub fn is_peer_fault(&self) -> bool {
        self.cause() == Cause::Peer
    }

    /// `true` only for [`FrameError::OutgoingTooLong`]: nothing was written and the stream is
    /// in sync. After every other error the byte stream cannot be trusted; close it.
    pub fn is_connection_usable(&self) -> bool {
        matches!(self, FrameError::OutgoingTooLong { .. })
    }

    /// `true` for I/O errors and a stream cut inside a frame (a new connection may work);
    /// `false` for frames over a limit, which fail the same way again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            FrameError::Io(_)
                | FrameError::TruncatedHeader { .. }
                | FrameError::TruncatedFrame { .. }
        )
    }
}

/// Test helper: checks a table of `(error, cause, usable, retryable)` rows against the four
/// classification methods, and that every variant (by `ordinal`, `0..variants`) has a row.
#[cfg(test)]
macro_rules! assert_classified {
    ($table:expr, $ordinal:expr, $variants:expr) => {{
        let mut seen = vec![false; $variants];
        for (e, cause, usable, retryable) in $table {
            seen[$ordinal(&e)] = true;
            assert_eq!(
                (
                    e.cause(),
                    e.is_peer_fault(),
                    e.is_connection_usable(),
                    e.is_retryable()
                ),
                (cause, cause == $crate::Cause::Peer, usable, retryable),
                "{e:?}"
            );
        }
        assert!(seen.iter().all(|s| *s), "a variant has no row: {seen:?}");
    }};
}
#[cfg(test)]
pub(crate) use assert_classified;

#[cfg(test)]
mod tests {
    use super::*;

    /// Position of each variant; the match is exhaustive, so a new variant does not compile
    /// until it is given a position here and a row in the table.
    fn ordinal(e: &FrameError) -> usize {
        match e {
            FrameError::IncomingTooLong { .. } => 0,
            FrameError::OutgoingTooLong { .. } => 1,
            FrameError::TruncatedHeader { .. } => 2,
            FrameError::TruncatedFrame { .. } => 3,
            FrameError::Io(_) => 4,
        }
    }
    const VARIANTS: usize = 5;

    /// Every variant with its documented answers: cause, usable, retryable.
    #[test]
    fn every_variant_classifies_as_documented() {
        use Cause::*;
        let table = [
            (
                FrameError::IncomingTooLong { len: 9, max: 8 },
                Peer,
                false,
                false,
            ),
            (
                FrameError::OutgoingTooLong { len: 9, max: 8 },
                Local,
                true,
                false,
            ),
            (
                FrameError::TruncatedHeader { received: 2 },
                Peer,
                false,
                true,
            ),
            (
                FrameError::TruncatedFrame {
                    received: 1,
                    expected: 5,
                },
                Peer,
                false,
                true,
            ),
            (
                FrameError::Io(io::ErrorKind::ConnectionReset.into()),
                Transport,
                false,
                true,
            ),
        ];
        assert_classified!(table, ordinal, VARIANTS);
    }

    #[test]
    fn earlier_error_keeps_message_and_classification() {
        let e = EarlierError::new("peer silent for 3 ms", Cause::Timeout, true);
        assert_eq!(e.to_string(), "peer silent for 3 ms");
        assert_eq!((e.cause(), e.is_retryable()), (Cause::Timeout, true));
    }
}
