//! One client connection: socketserver's `self.request`, framed.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use framewire_codec::typed::{self, Bincode, Format};
use framewire_codec::FrameCodec;
use futures::{Sink, Stream};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep};
use tokio_util::codec::{Decoder, Encoder};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::address::{Address, Transport};
use crate::error::{ErrorKind, ServerError};
use crate::handle::{ServerHandle, ShutdownSignal};
use crate::stats::bump;

/// One client connection, handed to the [`Handler`](crate::Handler): a [`Stream`] of incoming
/// frames and a [`Sink`] of outgoing ones, with [`recv`](Connection::recv) and
/// [`send`](Connection::send) helpers.
///
/// `S` is the server's shared state type (see [`state`](Connection::state)).
///
/// # Memory
///
/// The connection owns its read and write paths instead of wrapping a tokio-util `Framed`, so
/// that an idle connection holds no buffers: it waits for read readiness without a read
/// buffer, allocates [`read_buffer_size`](crate::ServerBuilder::read_buffer_size) bytes when
/// bytes arrive, and releases the buffer when a read would block with no unfinished frame in
/// it. The write buffer is allocated when a frame is queued and released once it has been
/// written. Decoding is [`FrameCodec`]'s, so the wire format and its limits are the codec's.
///
/// # Timeouts
///
/// * Idle timeout: while the handler waits in `recv` with no unfinished frame, the clock
///   starts when the wait starts and stops when a frame is returned. A handler busy
///   elsewhere is never timed out for its own slowness.
/// * Stall timeout: once bytes of a frame have arrived and the handler waits in `recv` for
///   the rest, the frame must be finished within the stall timeout. Dripping one byte at a
///   time does not reset it.
/// * Write timeout: a flush that cannot write a single byte for this long fails.
///
/// A timeout is an error from `recv`/`send`; it closes that direction and is counted in
/// [`Stats::errors`](crate::Stats::errors).
///
/// # Shutdown
///
/// Once the server's shutdown is requested, `recv` still returns frames already buffered or
/// in progress, then returns `Ok(None)` (end of stream) between frames, so a plain
/// `while let Some(frame) = conn.recv().await?` loop ends by itself. Sending keeps working
/// until the handler returns or is aborted at the end of the grace period.
///
/// When the connection is dropped (the handler returned), the socket is closed; frames queued
/// with [`feed`](Connection::feed) and not flushed are lost, as with `Framed`.
pub struct Connection<S = ()> {
    io: Box<dyn Transport>,
    codec: FrameCodec,
    rbuf: BytesMut,
    wbuf: BytesMut,
    peer: Address,
    server: ServerHandle<S>,
    eof: bool,
    read_closed: bool,
    write_closed: bool,
    idle_since: Option<Instant>,
    frame_since: Option<Instant>,
    write_since: Option<Instant>,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
    shutdown: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl<S> fmt::Debug for Connection<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("buffered_in", &self.rbuf.len())
            .field("buffered_out", &self.wbuf.len())
            .field("read_closed", &self.read_closed)
            .field("write_closed", &self.write_closed)
            .finish_non_exhaustive()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Arms (or re-arms) `timer` for `deadline` and polls it.
fn poll_deadline(
    timer: &mut Option<Pin<Box<Sleep>>>,
    deadline: Instant,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    if timer.deadline() != deadline {
        timer.as_mut().reset(deadline);
    }
    timer.as_mut().poll(cx)
}

impl<S> Connection<S> {
    pub(crate) fn new(io: Box<dyn Transport>, peer: Address, server: ServerHandle<S>) -> Self {
        let codec = server.shared.config.new_codec();
        Connection {
            io,
            codec,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            peer,
            server,
            eof: false,
            read_closed: false,
            write_closed: false,
            idle_since: None,
            frame_since: None,
            write_since: None,
            read_timer: None,
            write_timer: None,
            shutdown: None,
        }
    }

    /// The peer's address: socketserver's `self.client_address`.
    pub fn peer_addr(&self) -> &Address {
        &self.peer
    }

    /// The server handle: socketserver's `self.server` (shutdown, stats, local address,
    /// shared state). Clone it to keep it beyond the connection.
    pub fn server(&self) -> &ServerHandle<S> {
        &self.server
    }

    /// The server's shared application state; shorthand for `self.server().state()`.
    pub fn state(&self) -> &S {
        &self.server.shared.state
    }

    /// A future that completes when the server's shutdown is requested, for use in
    /// `select!` next to [`recv`](Connection::recv) or any other work.
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe: it owns no data and can be re-created at any time.
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        self.server.shutdown_requested()
    }

    /// `true` once the server's shutdown has been requested.
    pub fn is_shutting_down(&self) -> bool {
        self.server.is_shutting_down()
    }

    /// The codec (for its limit and byte order).
    pub fn codec(&self) -> &FrameCodec {
        &self.codec
    }

    /// Receives the next frame's payload.
    ///
    /// Returns `Ok(None)` when the peer closed the connection between frames, or, once the
    /// server is shutting down, between frames (see [Shutdown](#shutdown)).
    ///
    /// # Errors
    ///
    /// [`ServerError::Frame`] for invalid framing (a header over the limit, end of stream
    /// inside a frame), [`ServerError::Io`], [`ServerError::IdleTimeout`],
    /// [`ServerError::StallTimeout`]. After an error, `recv` returns `Ok(None)`.
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe: if it is dropped before completing (for example the other branch of
    /// a `select!` won), no frame is lost; bytes already read stay buffered for the next call,
    /// and the idle and stall clocks keep running from where they started.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, ServerError> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Receives the next message and decodes it as a `T` with bincode (the default
    /// [`Format`]); see [`recv_typed_with`](Connection::recv_typed_with).
    ///
    /// # Errors
    ///
    /// As [`recv_typed_with`](Connection::recv_typed_with).
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe, as [`recv`](Connection::recv).
    pub async fn recv_typed<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ServerError> {
        self.recv_typed_with::<Bincode, T>().await
    }

    /// Receives the next message and decodes it as a `T` with format `F`.
    ///
    /// # Errors
    ///
    /// Everything [`recv`](Connection::recv) returns, and [`ServerError::Typed`] for a message
    /// that does not decode as a `T`. That error is for that message only (counted in
    /// [`ErrorStats::decode`](crate::ErrorStats::decode)): the connection stays usable and the
    /// next call receives the next message.
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe, as [`recv`](Connection::recv).
    pub async fn recv_typed_with<F: Format, T: DeserializeOwned>(
        &mut self,
    ) -> Result<Option<T>, ServerError> {
        let Some(frame) = self.recv().await? else {
            return Ok(None);
        };
        typed::decode::<F, T>(&frame).map(Some).map_err(|e| {
            let err = ServerError::Typed(e);
            self.count_and_log(&err, "decode");
            err
        })
    }

    /// Returns the next frame if it is already complete in the read buffer, without reading
    /// from the socket or waiting. `Ok(None)` means "nothing complete buffered" (not end of
    /// stream). Lets a handler answer a burst of pipelined frames with one flush:
    ///
    /// ```no_run
    /// # async fn mirror(mut conn: framewire_server::Connection) -> Result<(), framewire_server::ServerError> {
    /// while let Some(frame) = conn.recv().await? {
    ///     conn.feed(&frame).await?;
    ///     while let Some(more) = conn.try_recv()? {
    ///         conn.feed(&more).await?;
    ///     }
    ///     conn.flush().await?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ServerError::Frame`] if the buffered bytes are invalid framing; the receive side is
    /// then closed, as with [`recv`](Connection::recv).
    pub fn try_recv(&mut self) -> Result<Option<Bytes>, ServerError> {
        if self.read_closed || self.rbuf.is_empty() {
            return Ok(None);
        }
        match self.codec.decode(&mut self.rbuf) {
            Ok(Some(frame)) => {
                bump(&self.server.shared.counters.frames_in, 1);
                self.idle_since = None;
                self.frame_since = None;
                Ok(Some(frame))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(self.read_failed(e.into())),
        }
    }

    /// Sends one frame and flushes it (and anything queued before it) to the socket.
    ///
    /// # Errors
    ///
    /// [`ServerError::Frame`] if the payload is over the limit (nothing is sent; the
    /// connection stays usable), [`ServerError::Io`], [`ServerError::WriteTimeout`],
    /// [`ServerError::Closed`] after an earlier send error or [`close`](Connection::close).
    ///
    /// # Cancellation safety
    ///
    /// Not cancellation safe: if dropped early the frame may be queued but not yet written;
    /// the next `send` or `flush` writes it.
    pub async fn send(&mut self, frame: impl AsRef<[u8]>) -> Result<(), ServerError> {
        self.feed(frame).await?;
        self.flush().await
    }

    /// Encodes `value` with bincode (the default [`Format`]) and sends it as one message.
    ///
    /// # Errors
    ///
    /// As [`send_typed_with`](Connection::send_typed_with).
    pub async fn send_typed<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), ServerError> {
        self.send_typed_with::<Bincode, T>(value).await
    }

    /// Encodes `value` with format `F` and sends it as one message.
    ///
    /// # Errors
    ///
    /// [`ServerError::Typed`] if the value cannot be encoded (nothing is sent; counted in
    /// [`ErrorStats::encode`](crate::ErrorStats::encode)), and everything
    /// [`send`](Connection::send) returns.
    ///
    /// # Cancellation safety
    ///
    /// As [`send`](Connection::send).
    pub async fn send_typed_with<F: Format, T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), ServerError> {
        let payload = typed::encode::<F, T>(value).map_err(|e| {
            let err = ServerError::Typed(e);
            self.count_and_log(&err, "encode");
            err
        })?;
        self.send(payload).await
    }

    /// Queues one frame without flushing. Writes first if
    /// [`write_buffer_limit`](crate::ServerBuilder::write_buffer_limit) bytes are already
    /// queued. Use it to send many frames with one write, then [`flush`](Connection::flush).
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send).
    ///
    /// # Cancellation safety
    ///
    /// If dropped before completing, the frame was not queued.
    pub async fn feed(&mut self, frame: impl AsRef<[u8]>) -> Result<(), ServerError> {
        poll_fn(|cx| self.poll_send_ready(cx)).await?;
        self.queue(frame.as_ref())
    }

    /// Writes every queued frame to the socket.
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send).
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe: unwritten bytes stay queued for the next flush.
    pub async fn flush(&mut self) -> Result<(), ServerError> {
        poll_fn(|cx| self.poll_flush_all(cx)).await
    }

    /// Flushes, then shuts down the sending direction (the peer sees end of stream). Later
    /// sends fail with [`ServerError::Closed`].
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send).
    pub async fn close(&mut self) -> Result<(), ServerError> {
        poll_fn(|cx| self.poll_close_write(cx)).await
    }

    /// Polls for the next frame; the poll form of [`recv`](Connection::recv).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, ServerError>> {
        if self.read_closed {
            return Poll::Ready(Ok(None));
        }
        loop {
            if !self.rbuf.is_empty() || self.eof {
                let decoded = if self.eof {
                    self.codec.decode_eof(&mut self.rbuf)
                } else {
                    self.codec.decode(&mut self.rbuf)
                };
                match decoded {
                    Ok(Some(frame)) => {
                        bump(&self.server.shared.counters.frames_in, 1);
                        self.idle_since = None;
                        self.frame_since = None;
                        return Poll::Ready(Ok(Some(frame)));
                    }
                    Ok(None) if self.eof => {
                        tracing::debug!("peer closed the connection");
                        self.read_closed = true;
                        self.rbuf = BytesMut::new();
                        return Poll::Ready(Ok(None));
                    }
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Err(self.read_failed(e.into()))),
                }
            }
            if self.between_frames() && self.poll_shutdown_requested(cx) {
                tracing::debug!("shutdown requested; ending the incoming stream");
                self.read_closed = true;
                self.rbuf = BytesMut::new();
                return Poll::Ready(Ok(None));
            }
            if self.rbuf.capacity() == 0 {
                // Idle: wait for bytes without holding a buffer.
                match self.io.poll_read_ready(cx) {
                    Poll::Pending => return self.poll_read_timeout(cx),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(self.read_failed(e.into()))),
                    Poll::Ready(Ok(())) => {}
                }
            }
            if self.rbuf.len() == self.rbuf.capacity() {
                self.rbuf
                    .reserve(self.server.shared.config.read_buffer_size);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf) {
                Poll::Pending => {
                    if self.between_frames() {
                        // Nothing of a frame is buffered: give the memory back while we wait.
                        self.rbuf = BytesMut::new();
                    }
                    return self.poll_read_timeout(cx);
                }
                Poll::Ready(Ok(0)) => self.eof = true,
                Poll::Ready(Ok(n)) => bump(&self.server.shared.counters.bytes_in, n as u64),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(self.read_failed(e.into()))),
            }
        }
    }

    fn between_frames(&self) -> bool {
        self.rbuf.is_empty() && self.codec.is_between_frames()
    }

    fn poll_shutdown_requested(&mut self, cx: &mut Context<'_>) -> bool {
        let token = &self.server.shared.shutdown;
        if token.is_cancelled() {
            return true;
        }
        let signal = self
            .shutdown
            .get_or_insert_with(|| Box::pin(token.clone().cancelled_owned()));
        signal.as_mut().poll(cx).is_ready()
    }

    /// Called when a read returned `Pending`: checks the idle or stall deadline.
    fn poll_read_timeout(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, ServerError>> {
        let config = &self.server.shared.config;
        let now = Instant::now();
        let (deadline, err) = if self.between_frames() {
            self.frame_since = None;
            let Some(t) = config.idle_timeout else {
                return Poll::Pending;
            };
            let since = *self.idle_since.get_or_insert(now);
            (since + t, ServerError::IdleTimeout { idle_ms: millis(t) })
        } else {
            let Some(t) = config.stall_timeout else {
                return Poll::Pending;
            };
            let since = *self.frame_since.get_or_insert(now);
            let err = ServerError::StallTimeout {
                stall_ms: millis(t),
                buffered: self.rbuf.len(),
            };
            (since + t, err)
        };
        ready!(poll_deadline(&mut self.read_timer, deadline, cx));
        Poll::Ready(Err(self.read_failed(err)))
    }

    fn read_failed(&mut self, err: ServerError) -> ServerError {
        self.read_closed = true;
        self.rbuf = BytesMut::new();
        self.read_timer = None;
        self.count_and_log(&err, "receive");
        err
    }

    fn write_failed(&mut self, err: ServerError) -> ServerError {
        self.write_closed = true;
        self.wbuf = BytesMut::new();
        self.write_timer = None;
        self.count_and_log(&err, "send");
        err
    }

    fn count_and_log(&self, err: &ServerError, what: &str) {
        self.server.shared.counters.count_error(err.kind());
        match err.kind() {
            ErrorKind::Io => tracing::info!(error = %err, "{what} failed"),
            _ => tracing::warn!(error = %err, "{what} failed"),
        }
    }

    fn closed_for_sending() -> ServerError {
        ServerError::Closed {
            direction: "sending",
        }
    }

    fn poll_send_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
        if self.write_closed {
            return Poll::Ready(Err(Self::closed_for_sending()));
        }
        if self.wbuf.len() >= self.server.shared.config.write_buffer_limit {
            ready!(self.poll_write_buf(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn queue(&mut self, frame: &[u8]) -> Result<(), ServerError> {
        if self.write_closed {
            return Err(Self::closed_for_sending());
        }
        match self.codec.encode(frame, &mut self.wbuf) {
            Ok(()) => {
                bump(&self.server.shared.counters.frames_out, 1);
                Ok(())
            }
            Err(e) => {
                // Nothing was queued; the stream is still in sync.
                let err = ServerError::from(e);
                self.count_and_log(&err, "send");
                Err(err)
            }
        }
    }

    /// Writes the queued bytes; releases the buffer once it is empty.
    fn poll_write_buf(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
        while !self.wbuf.is_empty() {
            match Pin::new(&mut self.io).poll_write(cx, &self.wbuf) {
                Poll::Pending => return self.poll_write_timeout(cx),
                Poll::Ready(Ok(0)) => {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "the socket accepted 0 bytes");
                    return Poll::Ready(Err(self.write_failed(e.into())));
                }
                Poll::Ready(Ok(n)) => {
                    self.wbuf.advance(n);
                    self.write_since = None;
                    bump(&self.server.shared.counters.bytes_out, n as u64);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(self.write_failed(e.into()))),
            }
        }
        if self.wbuf.capacity() > 0 {
            self.wbuf = BytesMut::new();
        }
        self.write_since = None;
        Poll::Ready(Ok(()))
    }

    fn poll_write_timeout(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
        let Some(t) = self.server.shared.config.write_timeout else {
            return Poll::Pending;
        };
        let since = *self.write_since.get_or_insert_with(Instant::now);
        ready!(poll_deadline(&mut self.write_timer, since + t, cx));
        let err = ServerError::WriteTimeout {
            timeout_ms: millis(t),
            pending: self.wbuf.len(),
        };
        Poll::Ready(Err(self.write_failed(err)))
    }

    fn poll_flush_all(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
        if self.write_closed {
            return Poll::Ready(Err(Self::closed_for_sending()));
        }
        ready!(self.poll_write_buf(cx))?;
        match ready!(Pin::new(&mut self.io).poll_flush(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(self.write_failed(e.into()))),
        }
    }

    fn poll_close_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
        ready!(self.poll_flush_all(cx))?;
        let res = ready!(Pin::new(&mut self.io).poll_shutdown(cx));
        self.write_closed = true;
        self.write_timer = None;
        Poll::Ready(res.map_err(ServerError::from))
    }
}

impl<S> Stream for Connection<S> {
    type Item = Result<Bytes, ServerError>;

    /// Same as [`Connection::poll_recv`], with `Ok(None)` as the end of the stream.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx).map(Result::transpose)
    }
}

impl<S, T: AsRef<[u8]>> Sink<T> for Connection<S> {
    type Error = ServerError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
        self.get_mut().poll_send_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: T) -> Result<(), ServerError> {
        self.get_mut().queue(item.as_ref())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
        self.get_mut().poll_flush_all(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
        self.get_mut().poll_close_write(cx)
    }
}
