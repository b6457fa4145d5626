//! Writing one large frame straight from the caller's memory, behind bytes already queued.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWrite;

use crate::{FrameCodec, FrameError, HEADER_LEN};

/// Payloads of at least this many bytes (16 KiB) are worth writing with [`VectoredFrame`]
/// instead of being copied into a write buffer: below it, the copy costs less than a
/// system call of its own.
pub const VECTORED_WRITE_MIN: usize = 16 * 1024;

/// One frame written with vectored writes of `[queued bytes][header][payload]`, so a large
/// payload reaches the socket without being copied into the write buffer first.
///
/// `queue` is the connection's write buffer: whatever is in it goes out first, in the same
/// system calls. If the `VectoredFrame` is dropped before the whole frame was written (the
/// future driving it was cancelled, or the write failed), the part of the frame not yet
/// written is appended to `queue`, so a later flush completes it and the stream never carries
/// half a frame. If nothing of the frame was written, nothing is appended: the frame was
/// simply not sent.
///
/// ```
/// use bytes::BytesMut;
/// use framewire_codec::{FrameCodec, VectoredFrame};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (mut client, mut server) = tokio::io::duplex(1 << 20);
/// let codec = FrameCodec::new();
/// let mut queued = BytesMut::from(&b"\x00\x00\x00\x02hi"[..]);
/// let payload = vec![7u8; 32 * 1024];
/// let mut frame = VectoredFrame::new(&codec, &payload, &mut queued)?;
/// std::future::poll_fn(|cx| {
///     while !frame.is_written() {
///         std::task::ready!(frame.poll_write(std::pin::Pin::new(&mut client), cx))?;
///     }
///     std::task::Poll::Ready(Ok::<(), std::io::Error>(()))
/// })
/// .await?;
/// drop(frame);
/// assert!(queued.is_empty());
///
/// use tokio::io::AsyncReadExt;
/// let mut wire = vec![0u8; 6 + 4 + payload.len()];
/// server.read_exact(&mut wire).await?;
/// assert_eq!(&wire[..10], b"\x00\x00\x00\x02hi\x00\x00\x80\x00");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct VectoredFrame<'a> {
    header: [u8; HEADER_LEN],
    payload: &'a [u8],
    /// Bytes of header + payload written so far.
    written: usize,
    queue: &'a mut BytesMut,
}

impl<'a> VectoredFrame<'a> {
    /// A frame of `payload` to be written after whatever `queue` holds.
    ///
    /// # Errors
    ///
    /// [`FrameError::OutgoingTooLong`] if `payload` is over `codec`'s maximum frame length
    /// (nothing is queued or written).
    pub fn new(
        codec: &FrameCodec,
        payload: &'a [u8],
        queue: &'a mut BytesMut,
    ) -> Result<Self, FrameError> {
        Ok(VectoredFrame {
            header: codec.header(payload.len())?,
            payload,
            written: 0,
            queue,
        })
    }

    /// `true` once the queued bytes and the whole frame are written.
    pub fn is_written(&self) -> bool {
        self.queue.is_empty() && self.written == HEADER_LEN + self.payload.len()
    }

    /// Bytes not yet written: queued bytes plus the rest of the frame.
    pub fn unwritten(&self) -> usize {
        self.queue.len() + (HEADER_LEN + self.payload.len() - self.written)
    }

    /// One vectored write of what is left (queued bytes first); returns how many bytes the
    /// socket took. Call it until [`is_written`](Self::is_written).
    ///
    /// # Errors
    ///
    /// The socket's error, or [`io::ErrorKind::WriteZero`] if it took 0 bytes.
    pub fn poll_write<W: AsyncWrite + ?Sized>(
        &mut self,
        io: Pin<&mut W>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        let header = self.header.get(self.written..).unwrap_or_default();
        let payload = self
            .payload
            .get(self.written.saturating_sub(HEADER_LEN)..)
            .unwrap_or_default();
        let slices = [
            IoSlice::new(&self.queue[..]),
            IoSlice::new(header),
            IoSlice::new(payload),
        ];
        let n = ready!(io.poll_write_vectored(cx, &slices))?;
        if n == 0 && !self.is_written() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the socket accepted 0 bytes",
            )));
        }
        let queued = n.min(self.queue.len());
        self.queue.advance(queued);
        self.written += n - queued;
        Poll::Ready(Ok(n))
    }
}

impl Drop for VectoredFrame<'_> {
    fn drop(&mut self) {
        // Abandoned half way: queue the rest so the next flush completes the frame.
        if self.written > 0 && self.written < HEADER_LEN + self.payload.len() {
            if let Some(rest) = self.header.get(self.written..) {
                self.queue.extend_from_slice(rest);
            }
            if let Some(rest) = self.payload.get(self.written.saturating_sub(HEADER_LEN)..) {
                self.queue.extend_from_slice(rest);
            }
        }
    }
}
