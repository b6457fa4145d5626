//! The codec's error type.

use std::io;

/// Everything that can go wrong while framing or unframing bytes.
///
/// Every variant says what happened in numbers, so a log line is enough to diagnose a peer that
/// speaks the wrong protocol. After any error other than [`FrameError::Io`] the byte stream can
/// no longer be trusted to be in sync (unless the codec was built with
/// [`OversizedFrame::Discard`](crate::OversizedFrame::Discard)), and the connection should be
/// closed.
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
    /// `true` for errors caused by what the peer sent (as opposed to a local I/O failure or a
    /// local attempt to send an oversized frame). Servers count these as protocol errors.
    pub fn is_peer_error(&self) -> bool {
        matches!(
            self,
            FrameError::IncomingTooLong { .. }
                | FrameError::TruncatedHeader { .. }
                | FrameError::TruncatedFrame { .. }
        )
    }
}
