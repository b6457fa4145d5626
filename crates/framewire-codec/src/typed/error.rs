//! The typed layer's error type.

use crate::FrameError;

/// Everything that can go wrong while sending or receiving typed messages.
///
/// The variants split into two kinds, told apart by [`TypedError::is_fatal`]:
///
/// * **Per message** ([`Decode`](TypedError::Decode), [`TrailingBytes`](TypedError::TrailingBytes),
///   [`Encode`](TypedError::Encode), and [`Frame`](TypedError::Frame) holding
///   [`FrameError::OutgoingTooLong`]): one value could not be turned into a frame or one frame
///   into a value. The framing is intact; the next message is unaffected.
/// * **Fatal** (every other [`Frame`](TypedError::Frame)): the transport failed or the peer
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
    /// `true` if the connection can no longer be used: the transport failed or the peer broke
    /// the framing. `false` for errors that concern one message only (a frame that does not
    /// decode, an unencodable value, an outgoing value over the size limit); after those the
    /// stream or sink can be used as before.
    ///
    /// ```
    /// use framewire_codec::{typed::TypedError, FrameError};
    ///
    /// let bad_message = TypedError::Decode { len: 3, format: "bincode", reason: "eof".into() };
    /// assert!(!bad_message.is_fatal());
    /// let broken = TypedError::Frame(FrameError::TruncatedHeader { received: 2 });
    /// assert!(broken.is_fatal());
    /// ```
    pub fn is_fatal(&self) -> bool {
        match self {
            TypedError::Decode { .. } | TypedError::TrailingBytes { .. } => false,
            TypedError::Encode { .. } => false,
            TypedError::Frame(FrameError::OutgoingTooLong { .. }) => false,
            TypedError::Frame(_) => true,
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
