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
/// system calls. [`write_or_queue`](Self::write_or_queue) writes while the socket takes bytes
/// and appends what is left of the frame to `queue` when it would block, so it never waits
/// and only the part the socket could not take right away is copied. If a `VectoredFrame` is
/// dropped after part of the frame was written (an error, or a caller driving
/// [`poll_write`](Self::poll_write) that gave up), the rest is appended to `queue` too: once
/// the queue is flushed, the peer has the whole frame, never half of it. If nothing of the
/// frame was written, nothing is appended.
///
/// ```
/// use bytes::BytesMut;
/// use framewire_codec::{FrameCodec, VectoredFrame};
/// use tokio::io::AsyncReadExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A socket pair whose buffer takes only 16 KiB before a read.
/// let (mut client, mut server) = tokio::io::duplex(16 * 1024);
/// let codec = FrameCodec::new();
/// let mut queue = BytesMut::from(&b"\x00\x00\x00\x02hi"[..]);
/// let payload = vec![7u8; 32 * 1024];
/// let written = {
///     let mut frame = VectoredFrame::new(&codec, &payload, &mut queue)?;
///     std::future::poll_fn(|cx| {
///         std::task::Poll::Ready(frame.write_or_queue(std::pin::Pin::new(&mut client), cx))
///     })
///     .await?
/// };
/// // What the socket took went out without a copy; the rest waits in the queue.
/// assert_eq!(written, 16 * 1024);
/// assert_eq!(queue.len(), 6 + 4 + payload.len() - written);
///
/// let mut wire = vec![0u8; written];
/// server.read_exact(&mut wire).await?;
/// assert_eq!(&wire[..10], b"\x00\x00\x00\x02hi\x00\x00\x80\x00");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct VectoredFrame<'a> {
    header: [u8; HEADER_LEN],
    payload: &'a [u8],
    /// Bytes of header + payload written or handed to the queue so far.
    done: usize,
    /// Bytes written through this frame so far, queued bytes included.
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
            done: 0,
            written: 0,
            queue,
        })
    }

    fn frame_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// `true` once the queued bytes and the whole frame are written.
    pub fn is_written(&self) -> bool {
        self.queue.is_empty() && self.done == self.frame_len()
    }

    /// Bytes written through this frame so far (queued bytes included), also after an error.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Drops the frame without appending its unwritten rest to the queue: for a connection
    /// that is being closed because writing failed, where the copy would be thrown away.
    pub fn abandon(mut self) {
        self.done = self.frame_len();
    }

    /// Bytes not yet written: queued bytes plus the rest of the frame.
    pub fn unwritten(&self) -> usize {
        self.queue.len() + self.frame_len().saturating_sub(self.done)
    }

    /// Writes while the socket takes bytes, then appends what is left of the frame to the
    /// queue (the queued bytes before it stay queued too). Never waits: afterwards the frame
    /// is entirely written or queued. Returns the bytes written (queued bytes included).
    ///
    /// # Errors
    ///
    /// The socket's error, or [`io::ErrorKind::WriteZero`] if it took 0 bytes; if part of the
    /// frame was already written, its rest is queued when the `VectoredFrame` drops (see
    /// [`abandon`](Self::abandon) for a connection that is closing anyway).
    pub fn write_or_queue<W: AsyncWrite + ?Sized>(
        &mut self,
        mut io: Pin<&mut W>,
        cx: &mut Context<'_>,
    ) -> io::Result<usize> {
        let mut written = 0;
        while !self.is_written() {
            match self.poll_write(io.as_mut(), cx) {
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => break,
            }
        }
        self.queue_rest();
        Ok(written)
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
        if self.is_written() {
            return Poll::Ready(Ok(0));
        }
        let header = self.header.get(self.done..).unwrap_or_default();
        let payload = self
            .payload
            .get(self.done.saturating_sub(HEADER_LEN)..)
            .unwrap_or_default();
        let slices = [
            IoSlice::new(&self.queue[..]),
            IoSlice::new(header),
            IoSlice::new(payload),
        ];
        // A writer claiming more than it was given is not believed.
        let n = ready!(io.poll_write_vectored(cx, &slices))?.min(self.unwritten());
        if n == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the socket accepted 0 bytes",
            )));
        }
        let queued = n.min(self.queue.len());
        self.queue.advance(queued);
        self.done += n - queued;
        self.written += n;
        Poll::Ready(Ok(n))
    }

    /// Appends the part of the frame not yet written to the queue.
    fn queue_rest(&mut self) {
        if let Some(rest) = self.header.get(self.done..) {
            self.queue.extend_from_slice(rest);
        }
        if let Some(rest) = self.payload.get(self.done.saturating_sub(HEADER_LEN)..) {
            self.queue.extend_from_slice(rest);
        }
        self.done = self.frame_len();
    }
}

impl Drop for VectoredFrame<'_> {
    fn drop(&mut self) {
        // Abandoned half way: queue the rest so the next flush completes the frame.
        if self.done > 0 && self.done < self.frame_len() {
            self.queue_rest();
        }
    }
}
