//! The handler's send API: `send`, `feed` and their typed, `Bytes` and run forms, `flush`,
//! `wait_acked`, `take_unacked` and `close`. The plain-mode write path under them is in
//! `write.rs`; ack mode goes through `ack.rs`.

use std::future::{poll_fn, Future};
use std::task::{ready, Poll};

use bytes::Bytes;
use framewire_codec::typed::{self, Bincode, Format};
use framewire_codec::{FrameRun, VECTORED_WRITE_MIN};
use serde::Serialize;

use super::Connection;
use crate::error::ServerError;

/// What [`Connection::feed_run`] has left to write.
enum FeedRun<I> {
    /// Plain mode: the whole run, written in one piece.
    Whole(FrameRun),
    /// Ack mode: the frames still to queue (how many, and the iterator over them).
    Frames(usize, I),
    /// Written.
    Done,
}

impl<S> Connection<S> {
    /// Sends one message and flushes it (and anything queued before it) to the socket.
    ///
    /// In ack mode it first waits for room in the peer's window (reading the peer's ACKs
    /// meanwhile); it does not wait for this message's ACK (see
    /// [`wait_acked`](Connection::wait_acked)).
    ///
    /// # Errors
    ///
    /// [`ServerError::Frame`] (or [`ServerError::Ack`] in ack mode) if the payload is over
    /// the limit (nothing is sent; the connection stays usable), [`ServerError::Io`],
    /// [`ServerError::WriteTimeout`] (in ack mode also when the peer's window stays full for
    /// the write timeout), [`ServerError::Closed`] after an earlier send error or
    /// [`close`](Connection::close).
    ///
    /// # Cancellation safety
    ///
    /// Not cancellation safe: if dropped early the message may be queued but not yet written;
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

    /// Queues one message without flushing. Writes first if
    /// [`write_buffer_limit`](crate::ServerBuilder::write_buffer_limit) bytes are already
    /// queued; in ack mode, waits for room in the peer's window. Use it to send many messages
    /// with one write, then [`flush`](Connection::flush).
    ///
    /// In plain mode a payload of at least
    /// [`VECTORED_WRITE_MIN`](framewire_codec::VECTORED_WRITE_MIN) bytes (16 KiB) is written
    /// at once from `frame`, behind what was queued before it, with vectored writes, as far as
    /// the socket takes it without waiting; only the rest is copied into the write buffer,
    /// where it counts toward the limit (so the next `feed` or `flush` waits for it). The
    /// `Sink` interface always copies (its `start_send` cannot write).
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send).
    ///
    /// # Cancellation safety
    ///
    /// If dropped before completing, the message was not queued (the only wait is for room
    /// before the message is touched).
    pub async fn feed(&mut self, frame: impl AsRef<[u8]>) -> Result<(), ServerError> {
        let frame = frame.as_ref();
        poll_fn(|cx| self.poll_send_ready(cx)).await?;
        if frame.len() >= VECTORED_WRITE_MIN && self.ack.is_none() && self.io.is_write_vectored() {
            return poll_fn(|cx| Poll::Ready(self.write_or_queue(frame, cx))).await;
        }
        self.queue(frame)
    }

    /// Queues one message held in [`Bytes`] without flushing, without copying it if it is at
    /// least [`ZERO_COPY_MIN`](framewire_codec::ZERO_COPY_MIN) bytes (1 KiB): the payload is
    /// written from its own memory, behind its header, with vectored writes, when the queue
    /// is written. For forwarding what [`recv`](Connection::recv) returned (a mirror, a
    /// proxy): such a frame points into the connection's read buffer, which then stays
    /// allocated until the frame is written, so flush before waiting for more. Smaller
    /// payloads are copied, as with [`feed`](Connection::feed), since one write of many small
    /// frames costs less than gathering them.
    ///
    /// Otherwise as [`feed`](Connection::feed): writes first if the write buffer limit is
    /// reached (queued payloads count toward it), waits for window room in ack mode (where
    /// the message is copied).
    ///
    /// ```no_run
    /// # async fn mirror(mut conn: framewire_server::Connection) -> Result<(), framewire_server::ServerError> {
    /// while let Some(frame) = conn.recv().await? {
    ///     conn.feed_bytes(frame).await?;
    ///     while let Some(more) = conn.try_recv()? {
    ///         conn.feed_bytes(more).await?;
    ///     }
    ///     conn.flush().await?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send).
    ///
    /// # Cancellation safety
    ///
    /// As [`feed`](Connection::feed).
    pub async fn feed_bytes(&mut self, frame: Bytes) -> Result<(), ServerError> {
        poll_fn(|cx| self.poll_send_ready(cx)).await?;
        if self.ack.is_some() {
            return self.queue(&frame);
        }
        self.feed_plain(1, |out, codec| out.feed_bytes(codec, frame))
    }

    /// Sends one message held in [`Bytes`] (without copying it, see
    /// [`feed_bytes`](Connection::feed_bytes)) and flushes it.
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send).
    ///
    /// # Cancellation safety
    ///
    /// As [`send`](Connection::send).
    pub async fn send_bytes(&mut self, frame: Bytes) -> Result<(), ServerError> {
        self.feed_bytes(frame).await?;
        self.flush().await
    }

    /// Queues a run of frames (from [`recv_run`](Connection::recv_run), on this connection or
    /// another) without flushing, as it is: copied in one piece if it is smaller than
    /// [`ZERO_COPY_MIN`](framewire_codec::ZERO_COPY_MIN), else written from its own memory.
    /// Writes first if the write buffer limit is reached. In ack mode each frame of the run
    /// is sent as one message, as with [`feed_bytes`](Connection::feed_bytes).
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send): a frame of the run over this connection's maximum
    /// frame length queues nothing of the run (plain mode).
    ///
    /// # Cancellation safety
    ///
    /// In plain mode the run is queued whole or not at all. In ack mode, if dropped while it
    /// waits for window room, the frames before the one waiting were queued and the others
    /// were not.
    pub fn feed_run(
        &mut self,
        run: FrameRun,
    ) -> impl Future<Output = Result<(), ServerError>> + '_ {
        // A poll_fn over a small state rather than an `async fn`: an async fn keeps its
        // argument twice (the parameter and its binding) and the futures it awaits on top,
        // and every handler future that holds a `feed_run` pays for that, so every idle
        // connection of a mirror does. Measured (size_of the future of
        // `framewire_examples::mirror`, release): 1,224 bytes as an async fn, 1,032 so.
        let mut feed = if self.ack.is_some() {
            // Ack mode numbers and tracks every message: queued one at a time.
            FeedRun::Frames(run.len(), run.into_frames())
        } else {
            FeedRun::Whole(run)
        };
        poll_fn(move |cx| loop {
            if let FeedRun::Frames(0, _) | FeedRun::Done = feed {
                return Poll::Ready(Ok(()));
            }
            ready!(self.poll_send_ready(cx))?;
            match std::mem::replace(&mut feed, FeedRun::Done) {
                FeedRun::Whole(run) => {
                    let frames = run.len() as u64;
                    let fed = self.feed_plain(frames, |out, codec| out.feed_run(codec, run));
                    return Poll::Ready(fed);
                }
                FeedRun::Frames(left, mut frames) => {
                    let Some(frame) = frames.next() else {
                        return Poll::Ready(Ok(()));
                    };
                    self.queue(&frame)?;
                    feed = FeedRun::Frames(left - 1, frames);
                }
                FeedRun::Done => return Poll::Ready(Ok(())),
            }
        })
    }

    /// Writes every queued message (and, in ack mode, pending ACKs) to the socket. In ack
    /// mode this does not wait for the peer's ACKs; see [`wait_acked`](Connection::wait_acked).
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

    /// Ack mode: acknowledges every message `recv` returned so far (the handler is done with
    /// them), flushes, then waits until the peer's application is done with (acknowledged)
    /// every message sent so far. Returns at once in plain mode.
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send); [`ServerError::Closed`] if the peer closed the
    /// connection first (the unacknowledged messages are in
    /// [`take_unacked`](Connection::take_unacked)).
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe: messages read meanwhile stay buffered for `recv`.
    pub async fn wait_acked(&mut self) -> Result<(), ServerError> {
        // Waiting for the peer's acks while holding back ours could deadlock two peers doing
        // request/response: the messages received so far count as done.
        self.ack_release_now();
        self.flush().await?;
        poll_fn(|cx| self.poll_ack_all_acked(cx)).await
    }

    /// Ack mode: removes and returns the messages sent but not acknowledged, oldest first
    /// (for example after the peer disconnected), so that nothing is silently lost. Empty in
    /// plain mode. Do not send on the connection afterwards.
    pub fn take_unacked(&mut self) -> Vec<Bytes> {
        self.ack
            .as_mut()
            .map(|a| a.driver.take_unacked())
            .unwrap_or_default()
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
}
