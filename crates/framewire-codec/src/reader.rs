//! framewire's one plain read path: a read buffer and its policy (how much room each read
//! gets, when the buffer grows, when it is given back), shared by the server's connections
//! and the client's receiver (as tokio-util's `framed_impl.rs` serves `Framed`, `FramedRead`
//! and `FramedWrite`).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::AsyncRead;

use crate::{FrameCodec, FrameError, FrameRun, HEADER_LEN};

/// Default room of a read ([`FrameReader::new`]): 8 KiB, what tokio-util's `Framed` starts
/// with.
pub const DEFAULT_READ_SIZE: usize = 8 * 1024;

/// The most room one read asks for once a fast sender has made reads grow (64 KiB), unless
/// the reader's own read size is larger.
pub const MAX_READ_SIZE: usize = 64 * 1024;

/// Inside a frame of at least this many bytes (16 KiB), a read takes no more than the rest
/// of the frame (see [`FrameReader::poll_fill`]).
const LIMITED_READ_MIN: usize = 16 * 1024;

/// A transport that can tell whether a read would find something without reading, so that a
/// reader can wait for bytes without holding a buffer ([`FrameReader::poll_fill_ready`]).
///
/// Contract: returns `Pending` (and wakes `cx` later) only when no read could make progress.
/// A transport that cannot tell (a TLS stream may hold decrypted bytes the socket does not
/// show) returns `Ready` at once; the reader then tries a read, which registers the wake-up
/// if it finds nothing.
pub trait ReadReady {
    /// Polls until a read may find bytes (or end of stream, or an error).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ReadReady for tokio::net::TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::TcpStream::poll_read_ready(self, cx)
    }
}

impl ReadReady for tokio::net::tcp::OwnedReadHalf {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let stream: &tokio::net::TcpStream = self.as_ref();
        stream.poll_read_ready(cx)
    }
}

#[cfg(unix)]
impl ReadReady for tokio::net::UnixStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::UnixStream::poll_read_ready(self, cx)
    }
}

#[cfg(unix)]
impl ReadReady for tokio::net::unix::OwnedReadHalf {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let stream: &tokio::net::UnixStream = self.as_ref();
        stream.poll_read_ready(cx)
    }
}

/// Bytes read and not yet taken as frames, and the policy that reads them. It holds no
/// transport and no codec: [`poll_fill`](Self::poll_fill) takes the reader (`Pin<&mut R>` for
/// any [`AsyncRead`]) and a task context, the decoding methods take the [`FrameCodec`] (the
/// same one on every call: it holds the state of a frame whose header was read), and none of
/// them waits, so a caller owning its own transport, timers and counters (framewire's server
/// connection, the client's receiver) drives it from its own `poll` functions.
///
/// Policy:
///
/// * **Memory follows bytes.** The buffer is allocated when a read is made and released when
///   a read finds nothing while no part of a frame is buffered. With
///   [`poll_fill_ready`](Self::poll_fill_ready) and a transport that can tell readiness
///   ([`ReadReady`]), an idle connection waits for bytes without any buffer.
/// * **Reads grow with a fast peer.** Each read gets room for at least half the current read
///   size (reading into a few leftover bytes would cost a system call per sliver). The read
///   size starts at the configured size, doubles each time a read fills all the room it was
///   given (up to [`MAX_READ_SIZE`], or the configured size if larger), and halves again,
///   down to the configured size, after a read into an empty buffer that used less than a
///   quarter of it. It is kept when the buffer is released, so a peer that pipelines bursts
///   larger than the configured size gets each burst in one read, as a raw TCP loop reading
///   into 64 KiB does.
/// * **Large frames are not copied as they grow.** Inside a large frame from a fast peer,
///   the buffer gets room for the rest of the frame at once (bounded by the largest read
///   size), and a read inside a frame of 16 KiB or more stops at the frame's end, so the next
///   frame starts on an empty buffer. Growth copies only the bytes still buffered (never the
///   part already handed out as frames). A peer that stalls inside a frame never fills a
///   read, so its connection keeps the small buffer, whatever length its header announced.
///
/// ```
/// use framewire_codec::{FrameCodec, FrameReader};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), framewire_codec::FrameError> {
/// let mut codec = FrameCodec::new();
/// let mut reader = FrameReader::new();
/// let mut wire: &[u8] = b"\x00\x00\x00\x02hi\x00\x00\x00\x00";
/// let mut frames = Vec::new();
/// loop {
///     if let Some(frame) = reader.next_frame(&mut codec)? {
///         frames.push(frame);
///         continue;
///     }
///     let n = std::future::poll_fn(|cx| reader.poll_fill(&codec, std::pin::Pin::new(&mut wire), cx))
///         .await?;
///     if n == 0 {
///         // End of stream: a frame cut short is an error.
///         assert_eq!(reader.next_frame_at_eof(&mut codec)?, None);
///         break;
///     }
/// }
/// assert_eq!(frames, [&b"hi"[..], &b""[..]]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct FrameReader {
    buf: BytesMut,
    /// How much room the next read asks for (see the type's docs); `u32` so that the reader
    /// is as small as a `BytesMut` and a `usize` (every idle server connection holds one).
    read_size: u32,
    /// The configured read size: the least `read_size` shrinks back to.
    min_read_size: u32,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader::new()
    }
}

impl FrameReader {
    /// A reader whose reads start at [`DEFAULT_READ_SIZE`]; it allocates at the first read.
    pub fn new() -> Self {
        FrameReader::with_read_size(DEFAULT_READ_SIZE)
    }

    /// A reader whose reads start at `size` bytes (at least 1, at most `u32::MAX`) and
    /// never shrink below it.
    pub fn with_read_size(size: usize) -> Self {
        let size = u32::try_from(size).unwrap_or(u32::MAX).max(1);
        FrameReader {
            buf: BytesMut::new(),
            read_size: size,
            min_read_size: size,
        }
    }

    /// The room the next read asks for (at least half of it; see the type's docs).
    pub fn read_size(&self) -> usize {
        self.read_size as usize
    }

    /// Bytes read and not yet taken as frames.
    #[inline]
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// `true` if no byte is buffered.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// `true` if the reader holds a buffer.
    #[inline]
    pub fn holds_memory(&self) -> bool {
        self.buf.capacity() > 0
    }

    /// `true` if nothing of a frame is buffered or half-decoded: the peer is between frames
    /// (idle, as opposed to stalled inside a frame).
    #[inline]
    pub fn is_between_frames(&self, codec: &FrameCodec) -> bool {
        self.buf.is_empty() && codec.is_between_frames()
    }

    /// The buffered bytes, for a caller that decodes them itself (an ack-mode driver).
    /// Take only whole frames from the front; bytes appended go behind what was read.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The next frame if it is whole in the buffer, the codec is between frames and the
    /// frame is within its limit; otherwise `None`, and nothing changed
    /// ([`FrameCodec::decode_buffered`]). The common case on its own, small enough to inline
    /// in a caller's hot loop; [`next_frame`](Self::next_frame) handles the rest.
    #[inline]
    pub fn next_buffered(&mut self, codec: &mut FrameCodec) -> Option<Bytes> {
        codec.decode_buffered(&mut self.buf)
    }

    /// The next frame whole in the buffer, not taken yet: its payload length and its first
    /// `N` bytes (`None` as for [`next_buffered`](Self::next_buffered), or if it is shorter
    /// than `N`). For a caller that decides from a frame's head whether to take it.
    #[inline]
    pub(crate) fn peek_buffered<const N: usize>(
        &self,
        codec: &FrameCodec,
    ) -> Option<(usize, &[u8; N])> {
        let len = codec
            .buffered_frame_len(&self.buf)
            .filter(|&len| len >= N)?;
        let head = self.buf.get(HEADER_LEN..HEADER_LEN + N)?.try_into().ok()?;
        Some((len, head))
    }

    /// Takes the frame [`peek_buffered`](Self::peek_buffered) saw (payload length `len`),
    /// without its first `skip` payload bytes.
    #[inline(always)]
    pub(crate) fn take_peeked(&mut self, len: usize, skip: usize) -> Bytes {
        crate::frame::split_frame_skipping(&mut self.buf, len, skip)
    }

    /// `true` if [`next_buffered`](Self::next_buffered) would return a frame.
    #[inline]
    pub fn has_buffered_frame(&self, codec: &FrameCodec) -> bool {
        codec.has_buffered_frame(&self.buf)
    }

    /// The whole frames at the front of the buffer, at most `max_frames` of them, as one
    /// [`FrameRun`] ([`FrameCodec::decode_run`]); `None` unless at least the first is whole.
    pub fn next_run(&mut self, codec: &mut FrameCodec, max_frames: usize) -> Option<FrameRun> {
        codec.decode_run(&mut self.buf, max_frames)
    }

    /// Decodes the next frame from the buffer: `Ok(None)` if it is not whole yet (read more
    /// with [`poll_fill`](Self::poll_fill)). Never makes room in the buffer: that is the
    /// read's business ([`FrameCodec::decode_without_reserve`]).
    ///
    /// # Errors
    ///
    /// The codec's: [`FrameError::IncomingTooLong`] for a header over the limit (the stream
    /// cannot be resynchronised: stop reading).
    #[inline]
    pub fn next_frame(&mut self, codec: &mut FrameCodec) -> Result<Option<Bytes>, FrameError> {
        codec.decode_without_reserve(&mut self.buf)
    }

    /// After the transport reported end of stream (a read of 0 bytes): the next frame still
    /// whole in the buffer, or `Ok(None)` once it is used up; the buffer is released then.
    ///
    /// # Errors
    ///
    /// As [`next_frame`](Self::next_frame), and [`FrameError::TruncatedHeader`] /
    /// [`FrameError::TruncatedFrame`] if the stream ended inside a frame.
    pub fn next_frame_at_eof(
        &mut self,
        codec: &mut FrameCodec,
    ) -> Result<Option<Bytes>, FrameError> {
        if let Some(frame) = codec.decode_without_reserve(&mut self.buf)? {
            return Ok(Some(frame));
        }
        let end = tokio_util::codec::Decoder::decode_eof(codec, &mut self.buf);
        if !matches!(end, Ok(Some(_))) {
            self.clear();
        }
        end
    }

    /// [`next_frame_at_eof`](Self::next_frame_at_eof) once the transport reported end of
    /// stream (`at_eof`), else [`next_frame`](Self::next_frame): the decode step of a read
    /// loop.
    ///
    /// # Errors
    ///
    /// As those two.
    #[inline]
    pub fn next_frame_or_end(
        &mut self,
        codec: &mut FrameCodec,
        at_eof: bool,
    ) -> Result<Option<Bytes>, FrameError> {
        if at_eof {
            self.next_frame_at_eof(codec)
        } else {
            self.next_frame(codec)
        }
    }

    /// Releases the buffer if nothing is buffered (the read size learned so far is kept).
    pub fn release(&mut self) {
        if self.buf.is_empty() && self.holds_memory() {
            self.buf = BytesMut::new();
        }
    }

    /// Drops whatever is buffered and the buffer (reading is over).
    pub fn clear(&mut self) {
        self.buf = BytesMut::new();
    }

    /// Makes one read from `io` into the buffer and returns how many bytes it took; `Ok(0)`
    /// is end of stream. `Pending` if nothing can be read now (`cx` is woken when something
    /// can): the buffer is then released if nothing of a frame is in it.
    ///
    /// `codec` is the one decoding the buffer: the read is sized by the frame it is inside
    /// (see the type's docs).
    ///
    /// # Errors
    ///
    /// `io`'s.
    pub fn poll_fill<R: AsyncRead + ?Sized>(
        &mut self,
        codec: &FrameCodec,
        io: Pin<&mut R>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        let room = self.reserve_for_read(codec);
        let into_empty = self.buf.is_empty();
        let mut into = (&mut self.buf).limit(room);
        match tokio_util::io::poll_read_buf(io, cx, &mut into) {
            Poll::Pending => {
                if self.is_between_frames(codec) {
                    // Nothing of a frame is buffered: give the memory back while we wait
                    // (the learned read size stays).
                    self.buf = BytesMut::new();
                }
                Poll::Pending
            }
            Poll::Ready(Ok(n)) => {
                self.adapt_read_size(n, room, into_empty);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }

    /// As [`poll_fill`](Self::poll_fill), but while the reader holds no buffer it first
    /// waits for `io` to be readable ([`ReadReady`]), so an idle connection holds no buffer
    /// at all.
    ///
    /// # Errors
    ///
    /// `io`'s.
    pub fn poll_fill_ready<R: AsyncRead + ReadReady + ?Sized>(
        &mut self,
        codec: &FrameCodec,
        io: Pin<&mut R>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        if !self.holds_memory() {
            ready!(io.poll_read_ready(cx))?;
        }
        self.poll_fill(codec, io, cx)
    }

    /// After a read of `n` bytes into `room`: a peer that filled the room sends faster than
    /// we read (larger reads, fewer calls); one whose burst used less than a quarter of an
    /// empty buffer's room slowed down (smaller buffers again). Judged on a read into an
    /// empty buffer only: the tail of a large burst, read after a full read, says nothing
    /// about the next burst.
    fn adapt_read_size(&mut self, n: usize, room: usize, into_empty: bool) {
        if n == 0 {
            return;
        }
        if n == room {
            let max = (MAX_READ_SIZE as u32).max(self.min_read_size);
            self.read_size = self.read_size.saturating_mul(2).min(max);
        } else if into_empty && n < room / 4 && self.read_size > self.min_read_size {
            self.read_size = (self.read_size / 2).max(self.min_read_size);
        }
    }

    /// Makes room for the next read and returns how much it may take: at least half of
    /// `read_size`; and, inside a large frame from a peer that fills our reads (`read_size`
    /// has grown), room for the rest of the frame at once, up to the largest read size.
    /// Growing in smaller steps would copy the part of the frame already received at every
    /// step (measured with TLS, where reads return one 16 KiB record: about 3.5x the bytes
    /// `Framed` copies, which reserves the announced frame). A peer that stalls inside a frame
    /// never fills a read, so its connection keeps the small buffer; one that sends fast
    /// could make reads grow to the largest read size anyway.
    ///
    /// Inside a frame of at least [`LIMITED_READ_MIN`] bytes, the read takes no more than the
    /// rest of the frame: the frame then ends where the read ends, nothing of the next frame
    /// is left behind it, and the next read starts on an empty buffer, which is reused as a
    /// whole (or, while the frame is still held, replaced) without copying. Reading past the
    /// frame's end instead leaves the start of the next frame to be copied to a new buffer
    /// whenever that frame needs more room (measured with callgrind, TLS pipelined echo of
    /// 64 KiB frames: about 10% of the server's instructions went to such copies and to
    /// `realloc`).
    fn reserve_for_read(&mut self, codec: &FrameCodec) -> usize {
        let read_size = self.read_size as usize;
        let room = self.buf.capacity() - self.buf.len();
        let fast = self.read_size > self.min_read_size;
        let mut additional = if fast && self.buf.is_empty() {
            // A fast peer, nothing buffered (making room copies nothing): room for a frame of
            // the read size whole, header included, so that it is not left 4 bytes short.
            let whole = read_size.saturating_add(HEADER_LEN);
            if room < whole {
                whole
            } else {
                0
            }
        } else if room == 0 || room < read_size / 2 {
            read_size
        } else {
            0
        };
        let missing = codec.missing(self.buf.len());
        if fast {
            let max = MAX_READ_SIZE.max(self.min_read_size as usize);
            if let Some(missing) = missing {
                if missing > room {
                    // And the next frame's header: a buffer reused for the next frame of the
                    // same size then takes all of it in one read, rather than all but its
                    // last 4 bytes (which would make it grow, copying the frame).
                    additional = additional.max(missing.min(max).saturating_add(HEADER_LEN));
                }
            }
        }
        if additional > 0 {
            self.grow(additional);
        }
        let room = self.buf.capacity() - self.buf.len();
        match (missing, codec.missing(0)) {
            (Some(missing), Some(frame)) if frame >= LIMITED_READ_MIN && missing > 0 => {
                room.min(missing)
            }
            // Between frames, a fast peer's read takes at most a read-size frame and its
            // header, even if the buffer has more room (a reclaimed one may): reading further
            // would leave the start of the next frame to be moved when it needs room.
            (None, _) if fast && self.buf.is_empty() => {
                room.min(read_size.saturating_add(HEADER_LEN))
            }
            _ => room,
        }
    }

    /// Makes room for `additional` more bytes, copying only the bytes still buffered.
    /// `BytesMut::reserve` would grow the allocation with `realloc`, which copies all of the
    /// old allocation (the part already handed out as frames and the unused tail too), or,
    /// while a frame handed out still shares the buffer, does the same in a new one.
    /// Measured (callgrind, TLS pipelined echo of 64 KiB frames, where each frame overflows
    /// a 64 KiB read by its header): `realloc` copies were 5% of the server's instructions.
    fn grow(&mut self, additional: usize) {
        let len = self.buf.len();
        if self.buf.capacity() - len >= additional {
            return;
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve(additional);
            return;
        }
        // Reuses the buffer if nothing else points into it and the bytes left move to its
        // front cheaply.
        if self.buf.try_reclaim(additional) {
            return;
        }
        // Room for exactly what was asked (the rest of a frame, see `reserve_for_read`), but
        // at least double what is buffered, so a frame larger than the largest read, arriving
        // in many reads, is copied O(its size) times in total, not once per read.
        let capacity = len.saturating_add(additional).max(len.saturating_mul(2));
        let mut grown = BytesMut::with_capacity(capacity);
        grown.extend_from_slice(&self.buf);
        self.buf = grown;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::task::Waker;

    use tokio::io::ReadBuf;
    use tokio_util::codec::Encoder;

    use super::*;

    /// What the scripted transport does at a read.
    enum Step {
        /// Hands out these bytes (as many as the read has room for; the rest stays next).
        Bytes(Vec<u8>),
        /// Nothing to read now.
        Pending,
    }

    /// A transport that follows a script, then reports end of stream; it records the room
    /// each read offered.
    #[derive(Default)]
    struct Script {
        steps: VecDeque<Step>,
        rooms: Vec<usize>,
    }

    impl Script {
        fn chunks(wire: &[u8], sizes: impl IntoIterator<Item = usize>) -> Script {
            let mut script = Script::default();
            let mut at = 0;
            for size in sizes {
                // (An empty chunk would read as end of stream.)
                let end = (at + size).min(wire.len());
                if end > at {
                    script.steps.push_back(Step::Bytes(wire[at..end].to_vec()));
                    script.steps.push_back(Step::Pending);
                }
                at = end;
            }
            if at < wire.len() {
                script.steps.push_back(Step::Bytes(wire[at..].to_vec()));
            }
            script
        }
    }

    impl AsyncRead for Script {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            this.rooms.push(buf.remaining());
            match this.steps.pop_front() {
                None => Poll::Ready(Ok(())),
                Some(Step::Pending) => Poll::Pending,
                Some(Step::Bytes(bytes)) => {
                    let n = bytes.len().min(buf.remaining());
                    buf.put_slice(&bytes[..n]);
                    if n < bytes.len() {
                        this.steps.push_front(Step::Bytes(bytes[n..].to_vec()));
                    }
                    Poll::Ready(Ok(()))
                }
            }
        }
    }

    impl ReadReady for Script {
        fn poll_read_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            match self.steps.front() {
                Some(Step::Pending) => Poll::Pending,
                _ => Poll::Ready(Ok(())),
            }
        }
    }

    fn wire(codec: &mut FrameCodec, payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = BytesMut::new();
        for p in payloads {
            codec
                .encode(bytes::Bytes::copy_from_slice(p), &mut buf)
                .unwrap();
        }
        buf.to_vec()
    }

    fn fill(reader: &mut FrameReader, codec: &FrameCodec, io: &mut Script) -> Poll<usize> {
        let mut cx = Context::from_waker(Waker::noop());
        reader
            .poll_fill(codec, Pin::new(io), &mut cx)
            .map(|r| r.unwrap())
    }

    /// Reads the whole script: every frame, in order, then the end (`Ok`) or the error.
    fn read_all(
        reader: &mut FrameReader,
        codec: &mut FrameCodec,
        io: &mut Script,
    ) -> (Vec<Bytes>, Result<(), FrameError>) {
        let mut frames = Vec::new();
        loop {
            match reader.next_frame(codec) {
                Ok(Some(frame)) => {
                    frames.push(frame);
                    continue;
                }
                Ok(None) => {}
                Err(e) => return (frames, Err(e)),
            }
            match fill(reader, codec, io) {
                Poll::Pending => {}
                Poll::Ready(0) => loop {
                    match reader.next_frame_at_eof(codec) {
                        Ok(Some(frame)) => frames.push(frame),
                        Ok(None) => return (frames, Ok(())),
                        Err(e) => return (frames, Err(e)),
                    }
                },
                Poll::Ready(_) => {}
            }
        }
    }

    #[test]
    fn frames_split_at_every_byte_boundary_come_out_whole_and_in_order() {
        let mut codec = FrameCodec::new();
        let payloads: [&[u8]; 4] = [b"hello", b"", b"x", &[7; 300]];
        let bytes = wire(&mut codec, &payloads);
        for cut in 0..=bytes.len() {
            let mut io = Script::chunks(&bytes, [cut]);
            let mut reader = FrameReader::with_read_size(64);
            let (frames, end) = read_all(&mut reader, &mut codec, &mut io);
            assert!(end.is_ok(), "cut at {cut}: {end:?}");
            assert_eq!(frames, payloads, "cut at {cut}");
            assert!(
                !reader.holds_memory(),
                "cut at {cut}: the buffer outlived the stream"
            );
        }
        for step in 1..=bytes.len() {
            let mut io = Script::chunks(&bytes, std::iter::repeat_n(step, bytes.len()));
            let mut reader = FrameReader::with_read_size(64);
            let (frames, end) = read_all(&mut reader, &mut codec, &mut io);
            assert!(end.is_ok(), "reads of {step} bytes: {end:?}");
            assert_eq!(frames, payloads, "reads of {step} bytes");
        }
    }

    #[test]
    fn a_frame_larger_than_any_read_spans_many_reads_and_the_next_starts_on_an_empty_buffer() {
        let mut codec = FrameCodec::new();
        let big = vec![0xAB; 200 * 1024];
        let payloads: [&[u8]; 3] = [&big, b"after", &big];
        let bytes = wire(&mut codec, &payloads);
        // A fast peer: everything is there at once.
        let mut io = Script::chunks(&bytes, []);
        let mut reader = FrameReader::new();
        let (frames, end) = read_all(&mut reader, &mut codec, &mut io);
        assert!(end.is_ok(), "{end:?}");
        assert_eq!(frames, payloads);
        // Reads grew to the largest read size.
        assert_eq!(reader.read_size(), MAX_READ_SIZE);
        // Inside the large frame, the read that ends it stops at its end: the bytes of
        // `after` are read by a read of their own, not behind the frame.
        let mut at = 0;
        let mut ends = Vec::new();
        let mut reads = io.rooms.iter();
        let first_end = HEADER_LEN + big.len();
        while at < bytes.len() {
            let room = *reads.next().unwrap();
            at += room.min(bytes.len() - at);
            ends.push(at);
        }
        assert!(
            ends.contains(&first_end),
            "no read ended at the frame's end: {ends:?}"
        );
    }

    #[test]
    fn a_header_over_the_limit_is_an_error_before_any_payload_is_buffered() {
        let mut codec = FrameCodec::builder().max_frame_len(1024).build();
        let mut bytes = wire(&mut codec, &[b"ok"]);
        bytes.extend_from_slice(&[0, 0, 4, 1]); // 1025
        bytes.extend_from_slice(&[0; 100]);
        let mut io = Script::chunks(&bytes, [3, 4]);
        let mut reader = FrameReader::with_read_size(64);
        let (frames, end) = read_all(&mut reader, &mut codec, &mut io);
        assert_eq!(frames, [&b"ok"[..]]);
        assert!(
            matches!(
                end,
                Err(FrameError::IncomingTooLong {
                    len: 1025,
                    max: 1024
                })
            ),
            "{end:?}"
        );
    }

    #[test]
    fn a_stream_ending_inside_a_frame_is_an_error_and_releases_the_buffer() {
        let mut codec = FrameCodec::new();
        let bytes = wire(&mut codec, &[b"whole", b"cut short"]);
        // Inside the second frame's payload, then inside its header.
        for (keep, payload_cut) in [(bytes.len() - 3, true), (4 + 5 + 2, false)] {
            let mut io = Script::chunks(&bytes[..keep], [1]);
            let mut reader = FrameReader::with_read_size(64);
            let (frames, end) = read_all(&mut reader, &mut codec, &mut io);
            assert_eq!(frames, [&b"whole"[..]]);
            match end {
                Err(FrameError::TruncatedFrame { received, expected }) if payload_cut => {
                    assert_eq!((received, expected), (6, 9));
                }
                Err(FrameError::TruncatedHeader { received }) if !payload_cut => {
                    assert_eq!(received, 2);
                }
                other => panic!("cut at {keep}: {other:?}"),
            }
            assert!(!reader.holds_memory());
            codec = FrameCodec::new();
        }
    }

    #[test]
    fn the_buffer_is_released_when_a_read_finds_nothing_between_frames_only() {
        let mut codec = FrameCodec::new();
        let bytes = wire(&mut codec, &[b"one", b"two"]);
        // The first frame and 2 bytes of the second, then nothing for now.
        let mut io = Script::chunks(&bytes, [4 + 3 + 2]);
        let mut reader = FrameReader::new();
        assert_eq!(fill(&mut reader, &codec, &mut io), Poll::Ready(9));
        assert_eq!(reader.next_frame(&mut codec).unwrap().unwrap(), &b"one"[..]);
        assert_eq!(reader.next_frame(&mut codec).unwrap(), None);
        // A partial frame is kept while waiting.
        assert_eq!(fill(&mut reader, &codec, &mut io), Poll::Pending);
        assert!(reader.holds_memory());
        assert_eq!(reader.len(), 2);
        assert_eq!(fill(&mut reader, &codec, &mut io), Poll::Ready(5));
        assert_eq!(reader.next_frame(&mut codec).unwrap().unwrap(), &b"two"[..]);
        // Nothing of a frame left: the wait holds no buffer.
        io.steps.push_back(Step::Pending);
        assert_eq!(fill(&mut reader, &codec, &mut io), Poll::Pending);
        assert!(!reader.holds_memory());
        // With readiness, an idle wait does not even allocate one.
        io.steps.push_back(Step::Pending);
        let mut cx = Context::from_waker(Waker::noop());
        let polled = reader.poll_fill_ready(&codec, Pin::new(&mut io), &mut cx);
        assert!(polled.is_pending());
        assert!(!reader.holds_memory());
        assert_eq!(io.steps.len(), 1, "the wait did not read");
    }

    #[test]
    fn a_peer_stalling_inside_a_huge_frame_keeps_the_small_buffer() {
        let mut codec = FrameCodec::new();
        let mut io = Script::default();
        // Announces 8 MiB, then drips.
        let mut bytes = vec![0, 0x80, 0, 0];
        bytes.extend_from_slice(&[1; 10]);
        for b in bytes {
            io.steps.push_back(Step::Bytes(vec![b]));
            io.steps.push_back(Step::Pending);
        }
        let mut reader = FrameReader::with_read_size(512);
        for _ in 0..28 {
            if let Poll::Ready(n) = fill(&mut reader, &codec, &mut io) {
                assert_eq!(n, 1);
            }
            assert_eq!(reader.next_frame(&mut codec).unwrap(), None);
        }
        assert_eq!(reader.read_size(), 512);
        assert!(
            reader.buffer_mut().capacity() <= 512,
            "{}",
            reader.buffer_mut().capacity()
        );
    }

    #[test]
    fn a_fast_peer_announcing_a_huge_frame_gets_room_in_bounded_steps() {
        let codec = FrameCodec::new();
        let announced = 8 * 1024 * 1024 - 1;
        let mut bytes = u32::try_from(announced).unwrap().to_be_bytes().to_vec();
        bytes.extend_from_slice(&vec![5; 300 * 1024]);
        let mut io = Script::chunks(&bytes, [bytes.len()]);
        let mut codec = codec;
        let mut reader = FrameReader::new();
        while let Poll::Ready(n) = fill(&mut reader, &codec, &mut io) {
            assert!(n > 0);
            assert_eq!(reader.next_frame(&mut codec).unwrap(), None);
            // Memory follows the bytes that arrived: at most twice them and one largest read,
            // never the announced 8 MiB.
            let (len, capacity) = (reader.len(), reader.buffer_mut().capacity());
            assert!(
                capacity <= 2 * len + MAX_READ_SIZE + 2 * HEADER_LEN,
                "{capacity} bytes of room for {len} bytes received"
            );
        }
        assert_eq!(reader.len(), 300 * 1024);
        assert!(reader.holds_memory(), "a stalled frame is kept");
    }

    #[test]
    fn the_reader_is_as_small_as_a_buffer_and_a_word() {
        // Every idle server connection holds one, and `Connection` sits at an allocation
        // size step: 8 bytes more in it cost ~110 B per idle connection.
        assert_eq!(
            std::mem::size_of::<FrameReader>(),
            std::mem::size_of::<BytesMut>() + std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn reads_grow_while_the_peer_fills_them_and_shrink_when_its_bursts_get_small() {
        let codec = FrameCodec::new();
        let mut io = Script::default();
        io.steps.push_back(Step::Bytes(vec![0; 1 << 20]));
        let mut reader = FrameReader::with_read_size(1024);
        let mut sizes = vec![reader.read_size()];
        while reader.read_size() < MAX_READ_SIZE {
            assert!(fill(&mut reader, &codec, &mut io).is_ready());
            reader.buffer_mut().clear();
            sizes.push(reader.read_size());
        }
        assert_eq!(sizes, [1024, 2048, 4096, 8192, 16384, 32768, 65536]);
        // Full reads at the top stay there.
        assert!(fill(&mut reader, &codec, &mut io).is_ready());
        assert_eq!(reader.read_size(), MAX_READ_SIZE);
        // Small bursts into an empty buffer: back down, to the configured size only.
        io.steps.clear();
        for _ in 0..10 {
            reader.buffer_mut().clear();
            io.steps.push_back(Step::Bytes(vec![0; 8]));
            assert_eq!(fill(&mut reader, &codec, &mut io), Poll::Ready(8));
        }
        assert_eq!(reader.read_size(), 1024);
    }
}
