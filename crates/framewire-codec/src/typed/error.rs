//! The typed layer's error type.

use crate::{Cause, FrameError};

/// Everything that can go wrong while sending or receiving typed messages.
///
/// The variants split into two kinds, told apart by [`TypedError::is_connection_usable`]:
///
/// * **Per message** ([`Decode`](TypedError::Decode), [`TrailingBytes`](TypedError::TrailingBytes),
///   [`Encode`](TypedError::Encode), and [`Frame`](TypedError::Frame) holding
///   [`FrameError::OutgoingTooLong`]): one value could not be turned into a frame or one frame
///   into a value. The framing is intact; the next message is unaffected.
/// * **Connection over** (every other [`Frame`](TypedError::Frame)): the transport failed or the peer
///   broke the framing. The connection should be closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TypedError {
    /// A whole frame arrived but its payload is not a valid encoding of the expected type
    /// (truncated value, bad enum tag, invalid UTF-8, a length prefix inside the payload that
    /// claims more than the frame can hold, ...). Recoverable: only this message is lost.
    #[error("frame of {len} bytes does not decode as {format}: {reason}")]
    Decode {
        /// Payload length of the offending frame, in bytes.
        len: usize,
        /// The format that was decoding ([`Format::NAME`](super::Format::NAME)).
        format: &'static str,
        /// The format's own description of the failure.
        reason: String,
    },
    /// A value decoded from the start of a frame, but bytes were left over after it.
    /// Recoverable: only this message is lost.
    #[error(
        "frame of {len} bytes holds a {consumed}-byte {format} value followed by {} trailing bytes",
        len.saturating_sub(*consumed)
    )]
    TrailingBytes {
        /// Payload length of the offending frame, in bytes.
        len: usize,
        /// How many bytes the value used.
        consumed: usize,
        /// The format that was decoding ([`Format::NAME`](super::Format::NAME)).
        format: &'static str,
    },
    /// A value could not be serialized (for example a `Serialize` impl returned an error, or a
    /// sequence without a known length was given to a format that needs one). Nothing was sent.
    #[error("cannot encode value as {format}: {reason}")]
    Encode {
        /// The format that was encoding ([`Format::NAME`](super::Format::NAME)).
        format: &'static str,
        /// The format's own description of the failure.
        reason: String,
    },
    /// The frame layer below failed: I/O, a broken frame header, or an outgoing value whose
    /// encoding exceeds the maximum frame length.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl TypedError {
    /// Whose doing this is: [`Cause::Peer`] for a frame that does not decode,
    /// [`Cause::Local`] for a value that does not encode, and the frame layer's answer for
    /// [`TypedError::Frame`].
    pub fn cause(&self) -> Cause {
        match self {
            TypedError::Decode { .. } | TypedError::TrailingBytes { .. } => Cause::Peer,
            TypedError::Encode { .. } => Cause::Local,
            TypedError::Frame(e) => e.cause(),
        }
    }

    /// `true` when [`cause`](Self::cause) is [`Cause::Peer`].
    pub fn is_peer_fault(&self) -> bool {
        self.cause() == Cause::Peer
    }

    /// `false` if the connection can no longer be used: the transport failed or the peer broke
    /// the framing. `true` for errors that concern one message only (a frame that does not
    /// decode, an unencodable value, an outgoing value over the size limit); after those the
    /// stream or sink can be used as before.
    ///
    /// ```
    /// use framewire_codec::{typed::TypedError, FrameError};
    ///
    /// let bad_message = TypedError::Decode { len: 3, format: "bincode", reason: "eof".into() };
    /// assert!(bad_message.is_connection_usable());
    /// let broken = TypedError::Frame(FrameError::TruncatedHeader { received: 2 });
    /// assert!(!broken.is_connection_usable());
    /// ```
    pub fn is_connection_usable(&self) -> bool {
        match self {
            TypedError::Decode { .. } | TypedError::TrailingBytes { .. } => true,
            TypedError::Encode { .. } => true,
            TypedError::Frame(e) => e.is_connection_usable(),
        }
    }

    /// `false` for a message that does not decode or a value that does not encode (sending
    /// the same value again fails the same way); the frame layer's answer for
    /// [`TypedError::Frame`].
    pub fn is_retryable(&self) -> bool {
        match self {
            TypedError::Decode { .. } | TypedError::TrailingBytes { .. } => false,
            TypedError::Encode { .. } => false,
            TypedError::Frame(e) => e.is_retryable(),
        }
    }

    /// `true` for an incoming frame that did not decode ([`TypedError::Decode`] or
    /// [`TypedError::TrailingBytes`]): the peer sent something this side does not understand,
    /// but the framing is intact. Servers count these per connection.
    pub fn is_decode(&self) -> bool {
        matches!(
            self,
            TypedError::Decode { .. } | TypedError::TrailingBytes { .. }
        )
    }

    /// The payload length of the frame that failed to decode, if this is a decode error.
    pub fn frame_len(&self) -> Option<usize> {
        match self {
            TypedError::Decode { len, .. } | TypedError::TrailingBytes { len, .. } => Some(*len),
            _ => None,
        }
    }
}

impl From<std::io::Error> for TypedError {
    /// An I/O error from the transport, as [`TypedError::Frame`]`(`[`FrameError::Io`]`)`. Lets
    /// [`TypedFramed`](super::TypedFramed) sit on streams whose error is `io::Error` (such as
    /// tokio-util's `LengthDelimitedCodec`).
    fn from(e: std::io::Error) -> Self {
        TypedError::Frame(FrameError::Io(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exhaustive: a new variant does not compile until it has a position and a row.
    fn ordinal(e: &TypedError) -> usize {
        match e {
            TypedError::Decode { .. } => 0,
            TypedError::TrailingBytes { .. } => 1,
            TypedError::Encode { .. } => 2,
            TypedError::Frame(_) => 3,
        }
    }
    const VARIANTS: usize = 4;

    /// Every variant with its documented answers: cause, usable, retryable. `Frame` answers as
    /// the frame error inside.
    #[test]
    fn every_variant_classifies_as_documented() {
        use Cause::*;
        let decode = TypedError::Decode {
            len: 3,
            format: "bincode",
            reason: "eof".into(),
        };
        let trailing = TypedError::TrailingBytes {
            len: 3,
            consumed: 1,
            format: "bincode",
        };
        let encode = TypedError::Encode {
            format: "bincode",
            reason: "no length".into(),
        };
        let too_long = TypedError::Frame(FrameError::OutgoingTooLong { len: 9, max: 8 });
        let cut = TypedError::Frame(FrameError::TruncatedHeader { received: 1 });
        let io = TypedError::Frame(FrameError::Io(std::io::ErrorKind::BrokenPipe.into()));
        let table = [
            (decode, Peer, true, false),
            (trailing, Peer, true, false),
            (encode, Local, true, false),
            (too_long, Local, true, false),
            (cut, Peer, false, true),
            (io, Transport, false, true),
        ];
        crate::error::assert_classified!(table, ordinal, VARIANTS);
    }
}
