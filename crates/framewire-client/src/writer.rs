//! The plain client's write path: frames are encoded into one buffer that is written in large
//! batches, and large payloads are written straight from the caller's memory.
//!
//! `FramedWrite` writes whenever 8 KiB are buffered and copies every payload into its buffer.
//! Here a batch's first write goes out at 16 KiB and each further one waits for twice as much,
//! up to [`ClientBuilder::write_buffer_limit`](crate::ClientBuilder::write_buffer_limit)
//! (64 KiB by default: an eighth of the system calls for small frames), and a payload of at
//! least [`VECTORED_WRITE_MIN`] bytes is written behind the buffered bytes with one vectored
//! write ([`VectoredFrame`]) as far as the socket takes it at once; only the rest is copied.
//! The buffer is released by every flush, so an idle connection holds none.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use framewire_codec::{FrameCodec, FrameError, VectoredFrame, HEADER_LEN, VECTORED_WRITE_MIN};
use tokio::io::AsyncWrite;
use tokio_util::codec::Encoder;

use crate::transport::WriteHalf;

/// Default [`ClientBuilder::write_buffer_limit`](crate::ClientBuilder::write_buffer_limit):
/// 64 KiB. Once this much is queued, the next frame fed first waits until the buffer is
/// written out, so a long batch's writes carry up to this much (tokio-util's `FramedWrite`
/// writes every 8 KiB).
pub const DEFAULT_WRITE_BUFFER_LIMIT: usize = 64 * 1024;

/// The first write of a batch (frames fed since the last flush) goes out once 16 KiB are
/// buffered, so the peer can start on a burst early; each further write of the same batch
/// waits for twice as much, up to the write buffer limit, so a long stream costs few system
/// calls. These writes take what the socket takes at once; only a buffer at the limit waits.
/// (Measured with `cargo bench -p framewire-client --bench client` and `bench/compare.sh`: a
/// fixed 64 KiB batch streamed 64 B frames about 7% faster but answered a 1000-frame echo
/// burst 0.87x as fast as `FramedWrite`'s 8 KiB writes; this schedule, 1.07x-1.15x.)
const FIRST_BATCH: usize = 16 * 1024;

/// Why writing failed: the codec refused the frame (nothing was queued) or the socket failed.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// The payload is over the maximum frame length.
    Frame(FrameError),
    /// Writing to the socket failed.
    Io(io::Error),
}

/// Encodes frames into a buffer and writes it to the socket.
#[derive(Debug)]
pub(crate) struct FrameWriter {
    io: WriteHalf,
    codec: FrameCodec,
    buf: BytesMut,
    limit: usize,
    /// How much may be buffered before the next `feed` writes: starts at [`FIRST_BATCH`]
    /// after every flush and doubles each time it is reached, up to `limit`.
    batch: usize,
}

impl FrameWriter {
    pub(crate) fn new(io: WriteHalf, codec: FrameCodec, limit: usize) -> Self {
        FrameWriter {
            io,
            codec,
            buf: BytesMut::new(),
            limit: limit.max(1),
            batch: FIRST_BATCH.min(limit.max(1)),
        }
    }

    /// Queues one frame, writing the buffer first if it is at its limit. A payload of at
    /// least [`VECTORED_WRITE_MIN`] bytes is written at once from `payload` (behind the
    /// buffered bytes, one vectored write) as far as the socket takes it without waiting;
    /// only the rest is copied into the buffer.
    ///
    /// Cancellation safety: the only wait is for the buffer to drain before the frame is
    /// touched, so if dropped early the frame was not queued at all.
    pub(crate) async fn feed(&mut self, payload: &[u8]) -> Result<(), WriteError> {
        if self.buf.len() >= self.batch {
            if self.buf.len() >= self.limit {
                // Full: wait until the socket has taken everything.
                self.write_buffered().await.map_err(WriteError::Io)?;
            } else {
                // Due, not full: write what the socket takes now, keep the rest, never wait.
                let (io, buf) = (&mut self.io, &mut self.buf);
                poll_fn(|cx| Poll::Ready(write_now(io, buf, cx)))
                    .await
                    .map_err(WriteError::Io)?;
            }
            // A long batch: write less often as it goes on.
            self.batch = self.batch.saturating_mul(2).min(self.limit);
        }
        if payload.len() >= VECTORED_WRITE_MIN && self.io.is_write_vectored() {
            let mut frame = VectoredFrame::new(&self.codec, payload, &mut self.buf)
                .map_err(WriteError::Frame)?;
            let io = &mut self.io;
            let result =
                poll_fn(|cx| Poll::Ready(frame.write_or_queue(Pin::new(&mut *io), cx))).await;
            if let Err(e) = result {
                // The connection is lost: no use queueing the rest of the frame.
                frame.abandon();
                return Err(WriteError::Io(e));
            }
            return Ok(());
        }
        let needed = HEADER_LEN + payload.len();
        if !self.buf.is_empty() && self.buf.capacity() - self.buf.len() < needed {
            // A batch is building up: grow to the next write's size at once rather than by
            // doubling. (A lone frame per flush gets a buffer of its own size.)
            self.buf
                .reserve(self.batch.saturating_sub(self.buf.len()).max(needed));
        }
        self.codec
            .encode(payload, &mut self.buf)
            .map_err(WriteError::Frame)
    }

    /// Writes everything queued and flushes the socket.
    ///
    /// Cancellation safety: cancellation safe; what is not written yet stays queued.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        self.write_buffered().await?;
        // A flush ends a batch: an idle connection holds no write buffer, and the next batch
        // starts with a small first write.
        self.buf = BytesMut::new();
        self.batch = FIRST_BATCH.min(self.limit);
        poll_fn(|cx| Pin::new(&mut self.io).poll_flush(cx)).await
    }

    /// Flushes, then shuts the write direction down (the peer reads end of stream).
    pub(crate) async fn close(&mut self) -> io::Result<()> {
        self.flush().await?;
        poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx)).await
    }

    async fn write_buffered(&mut self) -> io::Result<()> {
        poll_fn(|cx| poll_write_buf(&mut self.io, &mut self.buf, cx)).await
    }
}

/// Writes as much of `buf` as the socket takes without waiting, advancing it.
fn write_now(io: &mut WriteHalf, buf: &mut BytesMut, cx: &mut Context<'_>) -> io::Result<()> {
    match poll_write_buf(io, buf, cx) {
        Poll::Ready(result) => result,
        Poll::Pending => Ok(()),
    }
}

/// Writes `buf` until it is empty, advancing it by what was written.
fn poll_write_buf(
    io: &mut WriteHalf,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while !buf.is_empty() {
        let n = ready!(Pin::new(&mut *io).poll_write(cx, buf))?;
        if n == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the socket accepted 0 bytes",
            )));
        }
        buf.advance(n);
    }
    Poll::Ready(Ok(()))
}
