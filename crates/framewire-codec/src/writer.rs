//! framewire's one plain write path: a queue of frames waiting for the socket, shared by the
//! server's connections and the client's sender (as tokio-util's `framed_impl.rs` serves
//! `Framed`, `FramedWrite` and `FramedRead`).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::AsyncWrite;

use crate::{FrameCodec, FrameError, FrameRun, HEADER_LEN};

/// Default write buffer limit of the server and the client (64 KiB): once this much is
/// queued, the next frame first waits until the queue is written out, so a long batch's
/// writes carry up to this much (tokio-util's `FramedWrite` writes every 8 KiB).
pub const DEFAULT_WRITE_BUFFER_LIMIT: usize = 64 * 1024;

/// [`Bytes`] payloads of at least this many bytes (1 KiB) are queued by reference
/// ([`FrameWriter::feed_bytes`]) and written with vectored writes; smaller ones are copied
/// into the write buffer, where many small frames go out in one write.
///
/// Measured with `bench/compare.sh` (pipelined echo, the mirror forwarding received frames):
/// see the README's Performance section.
pub const ZERO_COPY_MIN: usize = 1024;

/// The least a fresh write buffer holds (8 KiB, `FramedWrite`'s initial capacity), so a batch
/// of small frames does not grow it from one frame's size by reallocation.
const MIN_BUFFER: usize = 8 * 1024;

/// Most parts one vectored write carries (Linux takes up to 1024; tokio's own vectored
/// writes use 64).
const MAX_PARTS: usize = 64;

/// Frames waiting to be written: encoded small frames in one buffer, large [`Bytes`] payloads
/// by reference behind their headers, written in order with vectored writes where the
/// transport supports them. It holds no transport: every write method takes the writer
/// (`Pin<&mut W>` for any [`AsyncWrite`]) and a task context, and none of them waits, so a
/// caller owning its own transport and timers (framewire's server connection, the client's
/// sender, an ack-mode driver) drives it from its own `poll` functions.
///
/// Guarantees:
///
/// * A frame is queued whole or not at all (a payload over the codec's limit queues nothing),
///   and bytes leave in the order they were queued.
/// * Nothing here waits: after any call, each queued byte was either written or is still
///   queued, so a future dropped between two calls leaves no half frame behind it; the next
///   drain writes the rest.
/// * The memory is released only when asked ([`release`](Self::release)): callers decide when
///   their connection is idle.
///
/// ```
/// use bytes::Bytes;
/// use framewire_codec::{FrameCodec, FrameWriter};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), framewire_codec::FrameError> {
/// let codec = FrameCodec::new();
/// let mut out = FrameWriter::new();
/// out.feed(&codec, b"hi")?; // copied into the buffer
/// out.feed_bytes(&codec, Bytes::from(vec![7u8; 4096]))?; // queued by reference
/// assert_eq!(out.len(), 4 + 2 + 4 + 4096);
///
/// let mut wire = Vec::new();
/// std::future::poll_fn(|cx| out.poll_drain(std::pin::Pin::new(&mut wire), cx)).await?;
/// assert_eq!(out.take_written(), 4 + 2 + 4 + 4096);
/// assert_eq!(&wire[..6], b"\x00\x00\x00\x02hi");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct FrameWriter {
    /// Encoded frames (and headers of parted payloads) behind `parts`.
    buf: BytesMut,
    /// Everything else, boxed and allocated only while the writer is in use: every idle
    /// connection holds its writer, which is then as small as a `BytesMut` and a pointer
    /// (40 bytes instead of 80).
    parts: Option<Box<Parts>>,
}

/// The writer's state besides its buffer.
#[derive(Debug, Default)]
struct Parts {
    /// Payloads queued by reference, going out before the buffer; oldest first, never an
    /// empty one.
    queue: VecDeque<Bytes>,
    /// Bytes in `queue`.
    len: usize,
    /// Bytes written since the last `take_written`.
    written: usize,
}

impl FrameWriter {
    /// An empty writer; it allocates when the first frame is queued.
    pub fn new() -> Self {
        FrameWriter::default()
    }

    /// Bytes queued and not yet written.
    #[inline]
    pub fn len(&self) -> usize {
        self.parted() + self.buf.len()
    }

    /// Bytes queued by reference.
    #[inline]
    fn parted(&self) -> usize {
        self.parts.as_ref().map_or(0, |p| p.len)
    }

    /// Parts queued by reference.
    fn part_count(&self) -> usize {
        self.parts.as_ref().map_or(0, |p| p.queue.len())
    }

    /// `true` if nothing is queued.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.parted() == 0 && self.buf.is_empty()
    }

    /// `true` if the writer holds memory (a buffer or queued payloads).
    pub fn holds_memory(&self) -> bool {
        self.buf.capacity() > 0 || self.parts.is_some()
    }

    /// Queues one frame, copying `payload` into the write buffer.
    ///
    /// # Errors
    ///
    /// [`FrameError::OutgoingTooLong`] if `payload` is over `codec`'s maximum frame length;
    /// nothing is queued.
    #[inline]
    pub fn feed(&mut self, codec: &FrameCodec, payload: &[u8]) -> Result<(), FrameError> {
        self.feed_headed(codec, &[], payload)
    }

    /// Queues one frame whose payload is `head` followed by `payload` (a protocol header of
    /// its own, such as an ack-mode DATA header, then the application's bytes), both copied
    /// into the write buffer: one frame, one length prefix, no intermediate buffer.
    ///
    /// # Errors
    ///
    /// [`FrameError::OutgoingTooLong`] if `head` and `payload` together are over `codec`'s
    /// maximum frame length; nothing is queued.
    #[inline]
    pub fn feed_headed(
        &mut self,
        codec: &FrameCodec,
        head: &[u8],
        payload: &[u8],
    ) -> Result<(), FrameError> {
        let len = head.len().saturating_add(payload.len());
        let header = codec.header(len)?;
        self.reserve(HEADER_LEN + len);
        self.buf.put_slice(&header);
        self.buf.put_slice(head);
        self.buf.put_slice(payload);
        Ok(())
    }

    /// Queues one frame whose payload is already in a [`Bytes`] (for example a frame received
    /// and forwarded): a payload of at least [`ZERO_COPY_MIN`] bytes is not copied, it is
    /// written from its own memory with vectored writes (and kept alive, with whatever buffer
    /// it points into, until then); a smaller one is copied as with [`feed`](Self::feed).
    ///
    /// # Errors
    ///
    /// As [`feed`](Self::feed).
    pub fn feed_bytes(&mut self, codec: &FrameCodec, payload: Bytes) -> Result<(), FrameError> {
        self.feed_bytes_headed(codec, &[], payload)
    }

    /// [`feed_bytes`](Self::feed_bytes) with `head` (copied) before `payload` in the frame, as
    /// [`feed_headed`](Self::feed_headed): a payload of at least [`ZERO_COPY_MIN`] bytes is
    /// written from its own memory (an ack-mode driver's DATA payload, which its engine keeps
    /// until acknowledged anyway), a smaller one is copied.
    ///
    /// # Errors
    ///
    /// As [`feed_headed`](Self::feed_headed).
    pub fn feed_bytes_headed(
        &mut self,
        codec: &FrameCodec,
        head: &[u8],
        payload: Bytes,
    ) -> Result<(), FrameError> {
        if payload.len() < ZERO_COPY_MIN {
            return self.feed_headed(codec, head, &payload);
        }
        let header = codec.header(head.len().saturating_add(payload.len()))?;
        self.reserve(HEADER_LEN + head.len());
        self.buf.put_slice(&header);
        self.buf.put_slice(head);
        self.queue_by_reference(payload);
        Ok(())
    }

    /// Queues a run of whole frames as they are (see [`FrameRun`]): a run of at least
    /// [`ZERO_COPY_MIN`] bytes by reference, a smaller one copied, in one piece either way.
    ///
    /// # Errors
    ///
    /// [`FrameError::OutgoingTooLong`] if a frame of the run is over `codec`'s maximum frame
    /// length; nothing is queued. A run read with the other byte order is re-encoded frame
    /// by frame.
    pub fn feed_run(&mut self, codec: &FrameCodec, run: FrameRun) -> Result<(), FrameError> {
        codec.header(run.max_payload_len())?;
        match run.as_wire() {
            Ok((wire, order)) if order == codec.byte_order() => {
                if wire.len() < ZERO_COPY_MIN {
                    self.reserve(wire.len());
                    self.buf.put_slice(wire);
                } else {
                    self.queue_by_reference(wire.clone());
                }
            }
            Ok(_) => {
                for payload in &run {
                    self.feed(codec, payload)?;
                }
            }
            Err(payload) => self.feed_bytes(codec, payload.clone())?,
        }
        Ok(())
    }

    /// Queues `bytes` by reference, behind everything encoded so far.
    fn queue_by_reference(&mut self, bytes: Bytes) {
        let parts = self.parts.get_or_insert_with(Box::default);
        if !self.buf.is_empty() {
            let head = self.buf.split().freeze();
            parts.len += head.len();
            parts.queue.push_back(head);
        }
        parts.len += bytes.len();
        parts.queue.push_back(bytes);
    }

    /// The write buffer, for a caller that encodes its own frames: bytes appended to it go
    /// out after everything queued before. Append only whole frames.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Takes everything queued and not yet written out of the writer, in order, as one buffer
    /// (payloads queued by reference are copied into it): for a caller handing the connection
    /// over to another writer, as an ack-mode driver's `into_parts` does.
    pub fn take_queued(&mut self) -> BytesMut {
        let Some(parts) = self.parts.as_mut().filter(|p| p.len > 0) else {
            return std::mem::take(&mut self.buf);
        };
        let mut all = BytesMut::with_capacity(parts.len + self.buf.len());
        for part in parts.queue.drain(..) {
            all.extend_from_slice(&part);
        }
        parts.len = 0;
        all.extend_from_slice(&self.buf);
        self.buf = BytesMut::new();
        all
    }

    /// Makes room for `additional` more bytes in the buffer, copying only the bytes still
    /// queued in it (`BytesMut::reserve` would reallocate the whole allocation, the part
    /// already written included).
    fn reserve(&mut self, additional: usize) {
        let len = self.buf.len();
        if self.buf.capacity() - len >= additional {
            return;
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve(additional.max(MIN_BUFFER));
            return;
        }
        if self.buf.try_reclaim(additional) {
            return;
        }
        let capacity = len
            .saturating_add(additional)
            .max(len.saturating_mul(2))
            .max(MIN_BUFFER);
        let mut grown = BytesMut::with_capacity(capacity);
        grown.extend_from_slice(&self.buf);
        self.buf = grown;
    }

    /// Bytes written since the last call (for counters, and to restart a write timeout when
    /// the socket made progress).
    pub fn take_written(&mut self) -> usize {
        self.parts
            .as_mut()
            .map_or(0, |p| std::mem::take(&mut p.written))
    }

    /// Counts `n` bytes written.
    fn count_written(&mut self, n: usize) {
        self.parts.get_or_insert_with(Box::default).written += n;
    }

    /// Releases the memory if nothing is queued (for a caller whose connection went idle);
    /// the count of bytes written not yet taken with [`take_written`](Self::take_written)
    /// goes with it.
    pub fn release(&mut self) {
        if self.is_empty() && self.holds_memory() {
            self.buf = BytesMut::new();
            self.parts = None;
        }
    }

    /// Drops everything queued and the memory (the connection is closing because writing
    /// failed).
    pub fn clear(&mut self) {
        let written = self.take_written();
        *self = FrameWriter::default();
        if written > 0 {
            self.count_written(written);
        }
    }

    /// One write (a vectored one if several parts are queued and `io` supports it) of what is
    /// queued; returns how many bytes `io` took, 0 if nothing is queued.
    ///
    /// # Errors
    ///
    /// `io`'s error, or [`io::ErrorKind::WriteZero`] if it took 0 bytes.
    pub fn poll_write_once<W: AsyncWrite + ?Sized>(
        &mut self,
        io: Pin<&mut W>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        if self.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let first = self.parts.as_ref().and_then(|p| p.queue.front());
        let n = match first {
            None => ready!(io.poll_write(cx, &self.buf))?,
            Some(_) if io.is_write_vectored() => {
                let mut slices = [IoSlice::new(&[]); MAX_PARTS];
                let k = self.gather(&mut slices);
                ready!(io.poll_write_vectored(cx, &slices[..k]))?
            }
            Some(first) => ready!(io.poll_write(cx, first))?,
        };
        Poll::Ready(self.wrote(n))
    }

    /// Fills `slices` with the queued parts, oldest first; returns how many.
    fn gather<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut k = 0;
        for part in self.parts.iter().flat_map(|p| p.queue.iter()) {
            if k == slices.len() {
                return k;
            }
            slices[k] = IoSlice::new(part);
            k += 1;
        }
        if k < slices.len() && !self.buf.is_empty() {
            slices[k] = IoSlice::new(&self.buf);
            k += 1;
        }
        k
    }

    /// Accounts for `n` bytes taken by the transport (at most what is queued: a transport
    /// claiming more than it was given is not believed).
    fn wrote(&mut self, n: usize) -> io::Result<usize> {
        let n = n.min(self.len());
        if n == 0 {
            return Err(write_zero());
        }
        self.advance(n);
        self.count_written(n);
        Ok(n)
    }

    fn advance(&mut self, mut n: usize) {
        if let Some(parts) = self.parts.as_mut() {
            while n > 0 {
                let Some(front) = parts.queue.front_mut() else {
                    break;
                };
                if n >= front.len() {
                    n -= front.len();
                    parts.len -= front.len();
                    parts.queue.pop_front();
                } else {
                    front.advance(n);
                    parts.len -= n;
                    return;
                }
            }
        }
        self.buf.advance(n);
    }

    /// Writes until nothing is queued (does not flush `io`).
    ///
    /// # Errors
    ///
    /// As [`poll_write_once`](Self::poll_write_once); what was not written stays queued.
    pub fn poll_drain<W: AsyncWrite + ?Sized>(
        &mut self,
        mut io: Pin<&mut W>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            ready!(self.poll_write_once(io.as_mut(), cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes what `io` takes without waiting; the rest stays queued.
    ///
    /// # Errors
    ///
    /// As [`poll_write_once`](Self::poll_write_once).
    pub fn write_now<W: AsyncWrite + ?Sized>(
        &mut self,
        mut io: Pin<&mut W>,
        cx: &mut Context<'_>,
    ) -> io::Result<()> {
        while !self.is_empty() {
            match self.poll_write_once(io.as_mut(), cx) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => break,
            }
        }
        Ok(())
    }

    /// Writes one frame from `payload` behind what is queued, with vectored writes, as far as
    /// `io` takes it without waiting, and copies only the rest into the queue: for a large
    /// payload the caller cannot hand over as [`Bytes`] (see also [`crate::VectoredFrame`]).
    /// Never waits; afterwards the frame is written or queued whole. Without vectored writes
    /// (`io.is_write_vectored()` is false) it is [`feed`](Self::feed).
    ///
    /// # Errors
    ///
    /// [`FrameError::OutgoingTooLong`] (nothing queued or written), or [`FrameError::Io`] if
    /// writing failed: the connection is then broken and the rest of the frame is dropped
    /// (the caller stops sending).
    pub fn write_or_feed<W: AsyncWrite + ?Sized>(
        &mut self,
        codec: &FrameCodec,
        payload: &[u8],
        mut io: Pin<&mut W>,
        cx: &mut Context<'_>,
    ) -> Result<(), FrameError> {
        let header = codec.header(payload.len())?;
        if !io.is_write_vectored() {
            return self.feed(codec, payload);
        }
        let frame_len = HEADER_LEN + payload.len();
        // Bytes of the frame written so far.
        let mut done = 0;
        while done < frame_len {
            let parts = self.part_count() + usize::from(!self.buf.is_empty());
            if parts > MAX_PARTS - 2 {
                // Too many parts queued to add the frame's two: write some first.
                match self.poll_write_once(io.as_mut(), cx) {
                    Poll::Ready(Ok(_)) => continue,
                    Poll::Ready(Err(e)) => return Err(FrameError::Io(e)),
                    Poll::Pending => break,
                }
            }
            let queued = self.len();
            let mut slices = [IoSlice::new(&[]); MAX_PARTS];
            let mut k = self.gather(&mut slices);
            if let Some(rest) = header.get(done..).filter(|r| !r.is_empty()) {
                slices[k] = IoSlice::new(rest);
                k += 1;
            }
            slices[k] = IoSlice::new(
                payload
                    .get(done.saturating_sub(HEADER_LEN)..)
                    .unwrap_or_default(),
            );
            k += 1;
            let n = match io.as_mut().poll_write_vectored(cx, &slices[..k]) {
                Poll::Pending => break,
                Poll::Ready(Err(e)) => return Err(FrameError::Io(e)),
                Poll::Ready(Ok(n)) => n.min(queued + frame_len - done),
            };
            if n == 0 {
                return Err(FrameError::Io(write_zero()));
            }
            let from_queue = n.min(queued);
            if from_queue > 0 {
                self.advance(from_queue);
            }
            done += n - from_queue;
            self.count_written(n);
        }
        if done < frame_len {
            self.reserve(frame_len - done);
            if let Some(rest) = header.get(done..) {
                self.buf.put_slice(rest);
            }
            if let Some(rest) = payload.get(done.saturating_sub(HEADER_LEN)..) {
                self.buf.put_slice(rest);
            }
        }
        Ok(())
    }
}

fn write_zero() -> io::Error {
    io::Error::new(io::ErrorKind::WriteZero, "the socket accepted 0 bytes")
}
